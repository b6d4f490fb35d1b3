/* SPDX-License-Identifier: MIT */
/*
 * fail.c - the `fail` plugin: fails chosen records, for tests of the
 * engine's error handling (retries, bisection, partial batch failures, the
 * on-failure destination, fatal stops, crashes).
 *
 * Design. A record is *failing* when it matches any selector (OR):
 *   seqs: 5,17,40    its sequence number is in the list
 *   every: N         its sequence number is a multiple of N (so 0 is one)
 *   contains: STR    its payload contains STR
 * and has not yet failed `times` times (default: it always fails). What a
 * batch holding a failing record returns is the mode:
 *   mode: retry      (default) SPATE_BATCH_RETRY for the whole batch; every
 *                    failing record of the batch counts one failure
 *   mode: partial    SPATE_BATCH_PARTIAL at the first failing record (which
 *                    counts one failure); the records before it succeed
 *   mode: fatal      SPATE_BATCH_FATAL at the first failing record
 *   mode: crash      abort() at the first failing record: this kills the
 *                    host process (in-process plugins share its fate)
 *   mode: segv       raise(SIGSEGV) there (a crash by a bad access)
 *   mode: hang       never return from process() at the first failing
 *                    record (sleeps until the process ends): the engine's
 *                    timeout gives up the call
 * and `leak: BYTES` allocates (and touches) that much per delivery, never
 * freed: a leaking plugin, for memory_limit.
 * Records that succeed are tracked like the count plugin does (distinct
 * records, bytes, checksum, gaps, duplicates), and `summary: PATH` writes
 * them at fini in count's format, with failed_batches (calls that did not
 * return OK) and failed_records (failures counted) filled in.
 *
 * Trade-offs and limits. Failures per record (for `times`) are kept in a
 * table of 4096 sequence numbers per state, allocated at init; when it is
 * full, further records fall back to the batch's attempt number (attempt > times
 * succeeds), which is what the table approximates when batches are not split.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "spate/plugin.h"
#include "plugins/plugin_util.h"

#define FAIL_TABLE 4096u /* power of two */

enum fail_mode {
	MODE_RETRY = 0,
	MODE_PARTIAL = 1,
	MODE_FATAL = 2,
	MODE_CRASH = 3,
	MODE_SEGV = 4,
	MODE_HANG = 5,
};

struct fail_slot {
	uint64_t seq_plus1; /* 0: free */
	uint64_t failures;
};

struct fail_state {
	struct pu_summary sum;
	enum fail_mode mode;
	uint64_t every;    /* 0: none */
	uint64_t times;    /* UINT64_MAX: forever */
	uint64_t leak;     /* bytes leaked per delivery */
	uint64_t *seqs;    /* sorted */
	size_t n_seqs;
	char *contains;    /* NULL: none */
	size_t contains_len;
	struct fail_slot *table; /* with a finite `times` */
	uint32_t table_used;
	char *summary_path;
	const struct spate_plugin_host *host;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Parse "5, 17,40" into a sorted array. */
static int parse_seqs(const struct spate_plugin_ctx *ctx, const char *v, struct fail_state *s)
{
	size_t n = 1;

	for (const char *p = v; *p; p++)
		n += *p == ',';
	s->seqs = calloc(n, sizeof(*s->seqs));
	if (!s->seqs)
		return -ENOMEM;
	for (const char *p = v; *p;) {
		char *end;

		while (*p == ' ' || *p == '\t')
			p++;
		errno = 0;
		unsigned long long x = strtoull(p, &end, 0);
		if (errno || end == p || *p == '-') {
			pu_log(ctx->host, SPATE_LOG_ERROR,
			       "fail: option seqs: '%s' is not a comma-separated list of numbers", v);
			return -EINVAL;
		}
		s->seqs[s->n_seqs++] = x;
		p = end;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == ',')
			p++;
		else if (*p) {
			pu_log(ctx->host, SPATE_LOG_ERROR,
			       "fail: option seqs: '%s' is not a comma-separated list of numbers", v);
			return -EINVAL;
		}
	}
	qsort(s->seqs, s->n_seqs, sizeof(*s->seqs), cmp_u64);
	return 0;
}

static void fail_free(struct fail_state *s)
{
	free(s->seqs);
	free(s->contains);
	free(s->table);
	free(s->summary_path);
	free(s);
}

static int fail_init(const struct spate_plugin_ctx *ctx, void **state)
{
	static const char *const modes[] = { "retry", "partial", "fatal", "crash",
					     "segv",  "hang",    NULL };
	const char *seqs = spate_plugin_opt(ctx, "seqs", NULL);
	const char *contains = spate_plugin_opt(ctx, "contains", NULL);
	const char *summary = spate_plugin_opt(ctx, "summary", NULL);
	struct fail_state *s;
	int mode, rc;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->host = ctx->host;
	s->sum.plugin = "fail";
	s->sum.shard = ctx->shard;
	s->sum.lane = ctx->lane;
	if ((rc = pu_opt_enum(ctx, "fail", "mode", modes, MODE_RETRY, &mode)) < 0 ||
	    (rc = pu_opt_u64(ctx, "fail", "every", 0, &s->every)) < 0 ||
	    (rc = pu_opt_u64(ctx, "fail", "times", UINT64_MAX, &s->times)) < 0 ||
	    (rc = pu_opt_u64(ctx, "fail", "leak", 0, &s->leak)) < 0)
		goto err;
	s->mode = (enum fail_mode)mode;
	if (seqs && (rc = parse_seqs(ctx, seqs, s)) < 0)
		goto err;
	if (contains && contains[0]) {
		s->contains = strdup(contains);
		if (!s->contains)
			goto err_nomem;
		s->contains_len = strlen(contains);
	}
	if (s->times != UINT64_MAX) {
		s->table = calloc(FAIL_TABLE, sizeof(*s->table));
		if (!s->table)
			goto err_nomem;
	}
	if (summary) {
		char path[PATH_MAX];

		if (pu_state_path(summary, ctx->shard, ctx->lane, path, sizeof(path)) < 0) {
			pu_log(ctx->host, SPATE_LOG_ERROR, "fail: summary path too long");
			rc = -ENAMETOOLONG;
			goto err;
		}
		s->summary_path = strdup(path);
		if (!s->summary_path)
			goto err_nomem;
	}
	*state = s;
	return 0;

err_nomem:
	rc = -ENOMEM;
err:
	fail_free(s);
	return rc;
}

static int selected(const struct fail_state *s, const struct spate_ring_rec *r)
{
	if (s->every && r->seq % s->every == 0)
		return 1;
	if (s->n_seqs && bsearch(&r->seq, s->seqs, s->n_seqs, sizeof(*s->seqs), cmp_u64))
		return 1;
	if (s->contains && memmem(r->data, r->len, s->contains, s->contains_len))
		return 1;
	return 0;
}

/* The failure counter of seq, or NULL when the table is full. */
static uint64_t *failures_of(struct fail_state *s, uint64_t seq)
{
	uint32_t i = (uint32_t)pu_mix64(seq) & (FAIL_TABLE - 1);

	for (uint32_t n = 0; n < FAIL_TABLE; n++, i = (i + 1) & (FAIL_TABLE - 1)) {
		struct fail_slot *sl = &s->table[i];

		if (sl->seq_plus1 == seq + 1)
			return &sl->failures;
		if (!sl->seq_plus1) {
			if (s->table_used >= FAIL_TABLE * 3 / 4)
				return NULL;
			s->table_used++;
			sl->seq_plus1 = seq + 1;
			return &sl->failures;
		}
	}
	return NULL;
}

/*
 * Whether r fails in this delivery, counting the failure (its ordinal in
 * @p nth). With a finite `times`, a selected record fails its first `times`
 * deliveries, then succeeds.
 */
static int failing(struct fail_state *s, const struct spate_ring_rec *r, uint32_t attempt,
		   uint64_t *nth)
{
	uint64_t *f;

	if (!selected(s, r))
		return 0;
	if (s->times == UINT64_MAX) {
		*nth = 0;
		return 1;
	}
	f = failures_of(s, r->seq);
	if (!f) { /* table full: approximate with the batch's attempt */
		*nth = attempt;
		return attempt <= s->times;
	}
	if (*f >= s->times)
		return 0;
	*nth = ++*f;
	return 1;
}

static void succeed(struct fail_state *s, const struct spate_batch *b, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct spate_ring_rec *r = &b->recs[i];

		if (pu_seq_see(&s->sum.seq, r->seq)) {
			s->sum.bytes += r->len;
			s->sum.checksum += pu_payload_sum(r->data, r->len, PU_TOUCH_ALL);
		}
	}
}

static void *volatile leak_sink;

static int fail_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct fail_state *s = state;
	uint32_t first = UINT32_MAX, nfail = 0;
	uint64_t nth = 0, first_nth = 0;

	s->sum.batches++;
	if (s->leak) {
		char *p = malloc(s->leak); /* never freed: that is the point */
		if (p)
			memset(p, 0xa5, s->leak);
		leak_sink = p; /* kept visible, so the compiler keeps the leak */
	}
	for (uint32_t i = 0; i < b->count; i++) {
		/* retry counts every failing record; the others stop at the first */
		if (failing(s, &b->recs[i], b->attempt, &nth)) {
			nfail++;
			if (first == UINT32_MAX) {
				first = i;
				first_nth = nth;
			}
			if (s->mode != MODE_RETRY)
				break;
		}
	}
	if (first == UINT32_MAX) {
		succeed(s, b, b->count);
		res->status = SPATE_BATCH_OK;
		return 0;
	}
	s->sum.failed_batches++;
	s->sum.failed_records += nfail;
	if (s->times == UINT64_MAX)
		snprintf(res->error, sizeof(res->error), "fail: record seq %llu fails (always)",
			 (unsigned long long)b->recs[first].seq);
	else
		snprintf(res->error, sizeof(res->error),
			 "fail: record seq %llu fails (failure %llu of %llu)",
			 (unsigned long long)b->recs[first].seq, (unsigned long long)first_nth,
			 (unsigned long long)s->times);
	switch (s->mode) {
	case MODE_RETRY:
		res->status = SPATE_BATCH_RETRY;
		break;
	case MODE_PARTIAL:
		succeed(s, b, first);
		res->status = SPATE_BATCH_PARTIAL;
		res->failed_index = first;
		break;
	case MODE_FATAL:
		res->status = SPATE_BATCH_FATAL;
		break;
	case MODE_CRASH:
		pu_log(s->host, SPATE_LOG_ERROR, "%s: crashing the host, as configured",
		       res->error);
		abort();
	case MODE_SEGV:
		pu_log(s->host, SPATE_LOG_ERROR, "%s: SIGSEGV, as configured", res->error);
		raise(SIGSEGV);
		break;
	case MODE_HANG:
		pu_log(s->host, SPATE_LOG_ERROR, "%s: never returning, as configured", res->error);
		for (;;)
			sleep(1);
	}
	return 0;
}

static void fail_fini(void *state)
{
	struct fail_state *s = state;

	if (s->summary_path) {
		int rc = pu_summary_write(&s->sum, s->summary_path);
		if (rc < 0)
			pu_log(s->host, SPATE_LOG_ERROR, "fail: cannot write summary %s: %s",
			       s->summary_path, strerror(-rc));
	}
	fail_free(s);
}

SPATE_PLUGIN_DEFINE(.name = "fail", .version = "1.0", .init = fail_init,
		    .process = fail_process, .fini = fail_fini);
