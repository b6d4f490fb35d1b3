/* SPDX-License-Identifier: MIT */
/*
 * Tests of the consumer runtime (engine/consumer.c, engine/source.c): the
 * failure rules after a partial batch failure (with and without bisection),
 * failure envelopes that do not fit the failure stream, a plugin whose
 * process() never returns (timeout), a plugin that crashes (the log line
 * and the attempt record that stops a crash loop), and memory_limit.
 *
 * Real engines, real producers and the bundled plugins by path, as in
 * test_engine.c (engine_testlib.h). Consumers wait with `block`: never more
 * spinning threads than this 2-core machine has.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spate/config.h"
#include "spate/engine.h"
#include "spate/ring.h"
#include "spate/stream.h"

#include "engine_testlib.h"

/* One record read back from a failure destination. */
struct failed {
	struct spate_failed_record h;
	uint32_t len; /* bytes after the header */
	char payload[256];
};

/* Every record of stream @p s into @p out (at most @p max kept); the count. */
static unsigned read_failures(struct spate_stream *s, struct failed *out, unsigned max)
{
	struct spate_ring_rec rec[256];
	unsigned total = 0;

	cr_assert_not_null(s);
	for (uint32_t sh = 0; sh < spate_stream_shards(s); sh++) {
		struct spate_ring_reader *rd = NULL;
		int rc = spate_ring_reader_open(spate_stream_ring(s, sh), SPATE_RING_START_OLDEST,
						SPATE_RING_WAIT_YIELD, &rd);
		cr_assert_eq(rc, 0, "reader on the failure stream: %d", rc);
		for (;;) {
			int n = spate_ring_peek(rd, rec, 256, UINT64_MAX);
			cr_assert_geq(n, 0, "peek: %d", n);
			if (n == 0)
				break;
			for (int i = 0; i < n; i++, total++) {
				if (total >= max)
					continue;
				struct failed *f = &out[total];
				memset(f, 0, sizeof(*f));
				cr_assert_geq(rec[i].len, sizeof(f->h), "failure record too short");
				memcpy(&f->h, rec[i].data, sizeof(f->h));
				f->len = rec[i].len - (uint32_t)sizeof(f->h);
				size_t keep = f->len < sizeof(f->payload) ? f->len : sizeof(f->payload);
				memcpy(f->payload, (const char *)rec[i].data + sizeof(f->h), keep);
			}
			cr_assert_eq(spate_ring_release(rd, (unsigned)n), 0);
		}
		spate_ring_reader_close(rd);
	}
	return total;
}

/* ------------------------------------------------------------------------ */
/* Partial batch failure, retries exhausted (issue 9 item 9)                */
/* ------------------------------------------------------------------------ */

/* A partial failure at records 30 and 60 (they always fail), retries
 * exhausted: only they reach the failure stream; the good records after each
 * are delivered, not given up with it. With bisect_on_error the batch is
 * split at the failed record (Lambda: "bisected at the returned sequence
 * number"), without it the records after it are retried afresh. */
static void partial_exhausted(bool bisect)
{
	struct bus b;
	char sum[PATH_MAX];
	struct failed got[128];
	const unsigned nkeys = 3;

	bus_init(&b, bisect ? "pbis" : "pexh");
	bus_stream(&b, "in", 1, 64 * 1024);
	bus_stream(&b, "dlq", 1, 256 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "partial");
	opt(k, "seqs", "30,60");
	sum_tmpl(&b, "fail", sum, sizeof(sum));
	opt(k, "summary", sum);
	k->batch_size = 100;
	k->max_retry_attempts = 2;
	k->bisect_on_error = bisect;
	k->retry_backoff_ns = 1 * MS;
	k->retry_backoff_max_ns = 4 * MS;
	snprintf(k->on_failure, sizeof(k->on_failure), "dlq");
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 100, nkeys, NULL);
	spate_producer_close(p);

	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records + st.failed >= 100 && st.lag_records == 0, 10000);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	st = stats_of(b.e, "c");
	unsigned n = read_failures(spate_engine_stream(b.e, "dlq"), got, 128);
	cr_assert_eq(n, 2, "%u records in the failure stream (expected only 30 and 60)", n);
	cr_assert_eq(got[0].h.seq, 30);
	cr_assert_eq(got[1].h.seq, 60);
	/* attempts: 1 + max_retry_attempts on its own, plus (bisecting) the
	 * deliveries of the larger ranges that held it: 30 was in [0, 100),
	 * 60 in [0, 100) and [31, 100). */
	for (unsigned i = 0; i < n; i++) {
		uint32_t want = bisect ? 3 + 1 + i : 3;
		cr_assert_eq(got[i].h.reason, SPATE_FAIL_RETRIES_EXHAUSTED);
		cr_assert_eq(got[i].h.attempts, want, "seq %" PRIu64 ": attempts %u, expected %u",
			     got[i].h.seq, got[i].h.attempts, want);
	}
	cr_assert_eq(st.failed, 2);
	cr_assert_eq(st.records, 98, "records %" PRIu64, st.records);
	struct summary s = summary_of(&b, "fail", 0);
	cr_assert_eq(s.records, 98, "%s", s.text);
	cr_assert_eq(s.gaps, 2, "%s", s.text);
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 100);
	bus_done(&b);
}

Test(consumer, partial_exhausted_gives_up_only_the_failed_record, .timeout = 30)
{
	partial_exhausted(false);
}

Test(consumer, partial_with_bisect_gives_up_only_the_failed_record, .timeout = 30)
{
	partial_exhausted(true);
}

Test(consumer, failure_reason_as_text, .timeout = 5)
{
	cr_assert_str_eq(spate_failure_reason_name(SPATE_FAIL_RETRIES_EXHAUSTED), "retries exhausted");
	cr_assert_str_eq(spate_failure_reason_name(SPATE_FAIL_RECORD_EXPIRED), "record expired");
	cr_assert_str_eq(spate_failure_reason_name(12345), "unknown");
}

/* ------------------------------------------------------------------------ */
/* A failed record larger than the failure stream takes (issue 9 item 7)    */
/* ------------------------------------------------------------------------ */

/* The source takes 10,000-byte records, the failure stream at most 8,192
 * bytes: the envelope (352 bytes) plus the payload does not fit. The record
 * (max_record_size 8 KiB) still reaches the failure stream, its payload cut to fit and its own
 * length in orig_len; the checkpoint moves past it only then. */
Test(consumer, oversized_failure_envelope_is_truncated_not_dropped, .timeout = 30)
{
	struct bus b;
	struct failed got[4];
	static char big[10000];

	bus_init(&b, "trunc");
	bus_stream(&b, "in", 1, 64 * 1024);
	bus_stream(&b, "dlq", 1, 64 * 1024)->max_record_size = 8192;
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "retry");
	opt(k, "seqs", "0");
	k->max_retry_attempts = 0;
	snprintf(k->on_failure, sizeof(k->on_failure), "dlq");
	bus_open(&b);

	uint64_t room = spate_ring_max_record(spate_stream_ring(spate_engine_stream(b.e, "dlq"), 0));
	cr_assert_lt(room, sizeof(big) + sizeof(struct spate_failed_record));
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	cr_assert_eq(spate_put(p, "k", 1, big, sizeof(big), NULL), 0);
	spate_producer_close(p);

	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.failed == 1 && st.lag_records == 0, 5000);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	unsigned n = read_failures(spate_engine_stream(b.e, "dlq"), got, 4);
	cr_assert_eq(n, 1, "%u records in the failure stream: the failed record was dropped", n);
	cr_assert_eq(got[0].h.seq, 0);
	cr_assert_eq(got[0].h.orig_len, sizeof(big));
	cr_assert_eq(got[0].h.payload_len, room - sizeof(struct spate_failed_record));
	cr_assert_eq(got[0].len, got[0].h.payload_len);
	cr_assert_eq(memcmp(got[0].payload, big, sizeof(got[0].payload)), 0);
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 1);
	bus_done(&b);
}
