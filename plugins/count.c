/* SPDX-License-Identifier: MIT */
/*
 * count.c - the `count` plugin: counts records and bytes, checksums the
 * payloads and checks sequence continuity. The benchmark plugin, and the
 * reference for what a consumer received.
 *
 * Design. One state per (consumer, shard, lane) holds plain counters; process()
 * walks the batch once, with no allocation, locking or system call. Each
 * record is classified by its sequence number (plugins/plugin_util.h): new,
 * after a gap, or a duplicate of one already seen (a redelivery). Records,
 * bytes and the checksum count new records only, so after any number of
 * retries and restarts `records` equals what was produced iff nothing was
 * lost, and `checksum` equals the sum of pu_payload_sum() over the produced
 * payloads. At fini the counters go to a JSON file when `summary` is set.
 *
 * Options:
 *   summary: PATH   write {plugin, shard, lane, records, bytes, checksum, gaps,
 *                   duplicates, delivered, batches, failed_batches,
 *                   failed_records, first_seq, last_seq} at fini; "%s" in PATH
 *                   is the shard number, else ".shard<N>" is appended; lanes
 *                   > 0 append ".lane<L>".
 *   touch: all|first|none   how much of each payload the checksum reads
 *                   (default all: every 8-byte word; first: the first word;
 *                   none: only the length, which measures the engine alone).
 *   delay_us: N     sleep N microseconds per batch (default 0): a slow
 *                   consumer, for tests of lag and of reading from the log.
 *
 * Trade-offs and limits. The checksum is a cheap sum of mixed per-record
 * hashes, order-independent, not a cryptographic digest. Continuity is
 * judged per state: with parallelization > 1 each lane sees a subset of the
 * shard, so gaps are expected there; a skipped sequence delivered later
 * counts as a gap and then a duplicate. Always returns SPATE_BATCH_OK.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>

#include "spate/plugin.h"
#include "plugins/plugin_util.h"

struct count_state {
	struct pu_summary sum;
	enum pu_touch touch;
	uint64_t delay_us;
	char *summary_path; /* NULL: no summary */
	const struct spate_plugin_host *host;
};

static int count_init(const struct spate_plugin_ctx *ctx, void **state)
{
	static const char *const touches[] = { "all", "first", "none", NULL };
	const char *summary = spate_plugin_opt(ctx, "summary", NULL);
	struct count_state *s;
	int touch, rc;

	uint64_t delay_us = 0;
	rc = pu_opt_enum(ctx, "count", "touch", touches, PU_TOUCH_ALL, &touch);
	if (rc < 0)
		return rc;
	rc = pu_opt_u64(ctx, "count", "delay_us", 0, &delay_us);
	if (rc < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->touch = (enum pu_touch)touch;
	s->delay_us = delay_us;
	s->host = ctx->host;
	s->sum.plugin = "count";
	s->sum.shard = ctx->shard;
	s->sum.lane = ctx->lane;
	if (summary) {
		char path[PATH_MAX];

		rc = pu_state_path(summary, ctx->shard, ctx->lane, path, sizeof(path));
		if (rc < 0) {
			pu_log(ctx->host, SPATE_LOG_ERROR, "count: summary path too long");
			goto err_free;
		}
		s->summary_path = strdup(path);
		if (!s->summary_path) {
			rc = -ENOMEM;
			goto err_free;
		}
	}
	*state = s;
	return 0;

err_free:
	free(s);
	return rc;
}

/* The batch walk, specialised per touch mode by inlining. */
__attribute__((always_inline)) static inline void count_walk(struct count_state *s,
							      const struct spate_batch *b,
							      enum pu_touch touch)
{
	const struct spate_ring_rec *r = b->recs, *end = b->recs + b->count;
	/* A local copy: payload reads (char-typed) could alias the state, which
	 * would force every counter through memory on every record. */
	struct pu_seq seq = s->sum.seq;
	uint64_t bytes = 0, sum = 0;

	for (; r < end; r++) {
		if (pu_seq_see(&seq, r->seq)) {
			bytes += r->len;
			sum += pu_payload_sum(r->data, r->len, touch);
		}
	}
	s->sum.seq = seq;
	s->sum.bytes += bytes;
	s->sum.checksum += sum;
}

static int count_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct count_state *s = state;

	switch (s->touch) {
	case PU_TOUCH_ALL:
		count_walk(s, b, PU_TOUCH_ALL);
		break;
	case PU_TOUCH_FIRST:
		count_walk(s, b, PU_TOUCH_FIRST);
		break;
	default:
		count_walk(s, b, PU_TOUCH_NONE);
		break;
	}
	s->sum.batches++;
	if (s->delay_us) {
		struct timespec ts = { (time_t)(s->delay_us / 1000000),
				       (long)(s->delay_us % 1000000) * 1000 };
		nanosleep(&ts, NULL);
	}
	res->status = SPATE_BATCH_OK;
	return 0;
}

static void count_fini(void *state)
{
	struct count_state *s = state;

	if (s->summary_path) {
		int rc = pu_summary_write(&s->sum, s->summary_path);
		if (rc < 0)
			pu_log(s->host, SPATE_LOG_ERROR, "count: cannot write summary %s: %s",
			       s->summary_path, strerror(-rc));
		free(s->summary_path);
	}
	free(s);
}

SPATE_PLUGIN_DEFINE(.name = "count", .version = "1.0", .init = count_init,
		    .process = count_process, .fini = count_fini);
