/* SPDX-License-Identifier: MIT */
/*
 * End-to-end tests of the engine (spate/engine.h): real engines built from a
 * struct config, fed by real producers, running the bundled plugin .so files
 * loaded by path (the first directory of SPATE_PLUGIN_PATH, which
 * tests/meson.build points at <build>/plugins).
 *
 * Covered: batch size, batch bytes and the batching window; every
 * error-handling rule (retries with back-off, bisection isolating one poison
 * record out of 10,000, partial batch failures, max record age, the failure
 * destination carrying the payload, FATAL); per-key order with
 * parallelization and the lanes' shared checkpoint; restart from the
 * checkpoint; a plugin that crashes its host (forked child); hot deploy
 * under load; the embedding API from a YAML file.
 *
 * Every test has its own bus (name with the pid), state_dir (mkdtemp) and
 * removes both at the end. Consumers wait with `block` and producers with
 * SPATE_RING_WAIT_YIELD: never more spinning threads than this 2-core
 * machine has.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plugins/plugin_util.h" /* pu_payload_sum: the count plugin's checksum */
#include "spate/config.h"
#include "spate/engine.h"
#include "spate/provider.h"
#include "spate/ring.h"
#include "spate/stream.h"

#include "engine_testlib.h"


/* Check one envelope against the record it stands for. */
static void check_envelope(const struct failed *f, uint64_t seq, uint32_t shard,
			   uint32_t attempts, const char *consumer, const char *stream,
			   uint32_t reason, const char *error_part, unsigned nkeys)
{
	char buf[64], key[32];
	size_t n = payload_of(seq, buf, sizeof(buf));

	key_of((unsigned)(seq % nkeys), key, sizeof(key));
	cr_assert_eq(f->h.magic, SPATE_FAILED_MAGIC, "magic %#x", f->h.magic);
	cr_assert_eq(f->h.hdr_size, sizeof(struct spate_failed_record));
	cr_assert_eq(f->h.seq, seq, "seq %" PRIu64 ", expected %" PRIu64, f->h.seq, seq);
	cr_assert_eq(f->h.shard, shard);
	cr_assert_eq(f->h.attempts, attempts, "seq %" PRIu64 ": attempts %u, expected %u", seq,
		     f->h.attempts, attempts);
	cr_assert_eq(f->h.reason, reason, "reason %u, expected %u", f->h.reason, reason);
	cr_assert_eq(f->h.key_hash, spate_key_hash(key, strlen(key)));
	cr_assert_str_eq(f->h.consumer, consumer);
	cr_assert_str_eq(f->h.stream, stream);
	cr_assert(strstr(f->h.error, error_part), "error '%s' lacks '%s'", f->h.error,
		  error_part);
	cr_assert_gt(f->h.ts, 0);
	cr_assert_geq(f->h.failed_ns, f->h.ts);
	/* The payload itself, byte for byte. */
	cr_assert_eq(f->h.payload_len, n);
	cr_assert_eq(f->len, n, "payload of %" PRIu64 ": %u bytes, expected %zu", seq, f->len, n);
	cr_assert_eq(memcmp(f->payload, buf, n), 0, "payload of %" PRIu64 " differs", seq);
}

/* ------------------------------------------------------------------------ */
/* Batching                                                                 */
/* ------------------------------------------------------------------------ */

/* 95 records waiting at trim_horizon, batch_size 10: 9 full batches and one
 * of 5. A second consumer of the same stream is bounded by batch_bytes
 * instead (4 records of 16 bytes under 64 bytes): 24 batches. */
Test(engine, batch_size, .timeout = 30)
{
	struct bus b;
	char sum_c[PATH_MAX], sum_b[PATH_MAX];
	uint64_t expect_sum = 0;

	bus_init(&b, "bsize");
	bus_stream(&b, "in", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "count");
	k->batch_size = 10;
	sum_tmpl(&b, "c", sum_c, sizeof(sum_c));
	opt(k, "summary", sum_c);
	k = bus_consumer(&b, "bytes", "in", "count");
	k->batch_size = 1000;
	k->batch_bytes = 64;
	sum_tmpl(&b, "b", sum_b, sizeof(sum_b));
	opt(k, "summary", sum_b);
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	for (uint64_t i = 0; i < 95; i++) {
		char buf[16];
		memset(buf, 'x', sizeof(buf));
		memcpy(buf, &i, sizeof(i));
		cr_assert_eq(spate_put(p, "k", 1, buf, sizeof(buf), NULL), 0);
		expect_sum += pu_payload_sum(buf, sizeof(buf), PU_TOUCH_ALL);
	}
	spate_producer_close(p);

	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st, sb;
	WAIT_FOR(b.e, "c", st, st.records == 95 && st.lag_records == 0, 5000);
	WAIT_FOR(b.e, "bytes", sb, sb.records == 95 && sb.lag_records == 0, 5000);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	st = stats_of(b.e, "c");
	cr_assert_eq(st.batches, 10, "batches %" PRIu64, st.batches);
	cr_assert_eq(st.records, 95);
	cr_assert_eq(st.bytes, 95 * 16);
	cr_assert_eq(st.retries, 0);
	cr_assert_eq(st.failed, 0);
	cr_assert_eq(st.state, SPATE_CONSUMER_STOPPED);
	struct summary s = summary_of(&b, "c", 0);
	cr_assert_eq(s.batches, 10, "%s", s.text);
	cr_assert_eq(s.records, 95, "%s", s.text);
	cr_assert_eq(s.first_seq, 0);
	cr_assert_eq(s.last_seq, 94);
	cr_assert_eq(s.gaps, 0);
	cr_assert_eq(s.duplicates, 0);
	cr_assert_eq(s.checksum, expect_sum);

	sb = stats_of(b.e, "bytes");
	cr_assert_eq(sb.batches, 24, "batches %" PRIu64, sb.batches);
	s = summary_of(&b, "b", 0);
	cr_assert_eq(s.batches, 24, "%s", s.text);
	cr_assert_eq(s.records, 95);
	cr_assert_eq(s.checksum, expect_sum);

	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 95);
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "bytes", 0), 95);
	bus_done(&b);
}

/* batch_window: a consumer with batch_size 1000 and a 300 ms window gets 2
 * records at start and 3 more 100 ms later in ONE batch, no sooner than
 * 300 ms after start; with window 0 the first records are delivered at once;
 * a window never holds a full batch (batch_size 5, window 10 s). */
Test(engine, batch_window, .timeout = 30)
{
	struct bus b;

	bus_init(&b, "window");
	bus_stream(&b, "in", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "w", "in", "count");
	k->batch_size = 1000;
	k->batch_window_ns = 300 * MS;
	k = bus_consumer(&b, "z", "in", "count");
	k->batch_size = 1000;
	k->batch_window_ns = 0;
	k = bus_consumer(&b, "f", "in", "count");
	k->batch_size = 5;
	k->batch_window_ns = 10000 * MS;
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 2, 1, NULL);

	uint64_t t0 = mono_ns(), t_z = 0, t_w = 0, t_f = 0, t_more = 0;
	cr_assert_eq(spate_engine_start(b.e), 0);
	while (!t_w || !t_f || !t_z) {
		uint64_t now = mono_ns();
		struct spate_consumer_stats w = stats_of(b.e, "w"), z = stats_of(b.e, "z"),
					    f = stats_of(b.e, "f");
		if (!t_z && z.records >= 2)
			t_z = now;
		if (!t_w && w.records > 0)
			t_w = now;
		if (!t_f && f.records > 0)
			t_f = now;
		if (!t_more && now - t0 >= 100 * MS) {
			produce(p, 2, 5, 1, NULL);
			t_more = mono_ns();
		}
		cr_assert_lt(now - t0, 5000 * MS, "nothing delivered in 5 s");
		nap_ms(1);
	}
	spate_producer_close(p);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	struct spate_consumer_stats w = stats_of(b.e, "w"), z = stats_of(b.e, "z"),
				    f = stats_of(b.e, "f");
	cr_log_info("window: z after %.1f ms, f after %.1f ms (more at %.1f ms), w after %.1f ms",
		    (double)(t_z - t0) / 1e6, (double)(t_f - t0) / 1e6, (double)(t_more - t0) / 1e6,
		    (double)(t_w - t0) / 1e6);
	/* The window held all 5 records in one batch, for at least 300 ms. */
	cr_assert_eq(w.records, 5);
	cr_assert_eq(w.batches, 1, "w: %" PRIu64 " batches", w.batches);
	cr_assert_geq(t_w - t0, 300 * MS, "w delivered after %" PRIu64 " ns", t_w - t0);
	cr_assert_geq(w.first_batch_ns, 295 * MS);
	cr_assert_lt(t_w - t0, 1500 * MS);
	/* No window: the first two at once, then the next three. */
	cr_assert_lt(t_z - t0, 250 * MS, "z delivered after %" PRIu64 " ns", t_z - t0);
	cr_assert_lt(z.first_batch_ns, 250 * MS);
	cr_assert_eq(z.records, 5);
	cr_assert(z.batches >= 2 && z.batches <= 4, "z: %" PRIu64 " batches", z.batches);
	/* A full batch does not wait for the window. */
	cr_assert_geq(t_f, t_more);
	cr_assert_lt(t_f - t_more, 1000 * MS);
	cr_assert_eq(f.records, 5);
	cr_assert_eq(f.batches, 1);
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* Error handling                                                           */
/* ------------------------------------------------------------------------ */

/* max_retry_attempts 3 without bisection: the failing batch is delivered 4
 * times (back-off 20, 40, 80 ms in between), then every record of it goes
 * to the failure stream with attempts 4 and its payload. */
Test(engine, retries_then_failure_destination, .timeout = 30)
{
	struct bus b;
	char sum[PATH_MAX];
	struct failed got[16];
	const unsigned nkeys = 3;

	bus_init(&b, "retry");
	bus_stream(&b, "in", 1, 64 * 1024);
	bus_stream(&b, "dlq", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "retry");
	opt(k, "seqs", "3");
	sum_tmpl(&b, "fail", sum, sizeof(sum));
	opt(k, "summary", sum);
	k->batch_size = 100;
	k->max_retry_attempts = 3;
	k->bisect_on_error = false;
	k->retry_backoff_ns = 20 * MS;
	k->retry_backoff_max_ns = 1000 * MS;
	snprintf(k->on_failure, sizeof(k->on_failure), "dlq");
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 10, nkeys, NULL);
	spate_producer_close(p);

	uint64_t t0 = mono_ns();
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.failed == 10 && st.lag_records == 0, 5000);
	uint64_t dt = mono_ns() - t0;
	cr_assert_eq(spate_engine_stop(b.e), 0);

	st = stats_of(b.e, "c");
	cr_assert_eq(st.batches, 4, "batches %" PRIu64, st.batches);
	cr_assert_eq(st.retries, 3, "retries %" PRIu64, st.retries);
	cr_assert_eq(st.records, 0);
	cr_assert_eq(st.failed, 10);
	cr_assert_eq(st.expired, 0);
	cr_assert_geq(dt, (20 + 40 + 80) * MS, "back-off: all done after %" PRIu64 " ns", dt);
	struct summary s = summary_of(&b, "fail", 0);
	cr_assert_eq(s.batches, 4, "%s", s.text);
	cr_assert_eq(s.failed_batches, 4);
	cr_assert_eq(s.records, 0);

	unsigned n = read_failures(spate_engine_stream(b.e, "dlq"), got, 16);
	cr_assert_eq(n, 10, "%u records in the failure stream", n);
	for (unsigned i = 0; i < n; i++) {
		check_envelope(&got[i], i, 0, 4, "c", "in", SPATE_FAIL_RETRIES_EXHAUSTED,
			       "fail: record seq 3 fails", nkeys);
		cr_assert_geq(got[i].h.failed_ns - got[i].h.ts, (20 + 40 + 80) * MS);
	}
	/* Given up means done: the checkpoint moved past the batch. */
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 10);
	bus_done(&b);
}

/* Deliveries of the single poison record @p poison in batch [0, n) under
 * bisection before it is isolated (each split delivers the failing half
 * once), as the engine does it: split [lo, hi) at lo + (hi - lo) / 2. */
static uint32_t bisect_deliveries(uint32_t n, uint32_t poison)
{
	uint32_t lo = 0, hi = n, d = 0;

	while (hi - lo > 1) {
		d++; /* [lo, hi) delivered, failed, split */
		uint32_t mid = lo + (hi - lo) / 2;
		if (poison < mid)
			hi = mid;
		else
			lo = mid;
	}
	return d;
}

/* One poison record out of 10,000 with bisect_on_error and
 * max_retry_attempts 2: only it reaches the failure stream (with its
 * payload), the 9,999 others succeed exactly once, the shard moves on. */
Test(engine, bisect_isolates_poison, .timeout = 30)
{
	struct bus b;
	char sum[PATH_MAX];
	struct failed got[4];
	const uint64_t n = 10000, poison = 4321;
	const unsigned nkeys = 7;

	bus_init(&b, "bisect");
	bus_stream(&b, "in", 1, 4ull << 20);
	bus_stream(&b, "dlq", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "retry");
	opt(k, "seqs", "4321");
	sum_tmpl(&b, "fail", sum, sizeof(sum));
	opt(k, "summary", sum);
	k->batch_size = 1000;
	k->max_retry_attempts = 2;
	k->bisect_on_error = true;
	snprintf(k->on_failure, sizeof(k->on_failure), "dlq");
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, n, nkeys, NULL);
	spate_producer_close(p);

	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records + st.failed == n && st.lag_records == 0, 8000);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	st = stats_of(b.e, "c");
	cr_assert_eq(st.records, n - 1, "records %" PRIu64, st.records);
	cr_assert_eq(st.failed, 1);
	cr_assert_eq(st.lag_records, 0);
	struct summary s = summary_of(&b, "fail", 0);
	cr_assert_eq(s.records, n - 1, "%s", s.text);
	cr_assert_eq(s.duplicates, 0, "%s", s.text);
	cr_assert_eq(s.gaps, 1, "%s", s.text); /* the poison record */
	cr_assert_eq(s.first_seq, 0);
	cr_assert_eq(s.last_seq, (int64_t)n - 1);

	unsigned m = read_failures(spate_engine_stream(b.e, "dlq"), got, 4);
	cr_assert_eq(m, 1, "%u records in the failure stream", m);
	/* attempts: every delivery that included it, the halves while
	 * bisecting and then 1 + max_retry_attempts on its own. */
	uint32_t attempts = bisect_deliveries(1000, (uint32_t)(poison % 1000)) + 3;
	check_envelope(&got[0], poison, 0, attempts, "c", "in", SPATE_FAIL_RETRIES_EXHAUSTED,
		       "fail: record seq 4321 fails", nkeys);
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), n);
	bus_done(&b);
}

/* mode partial, times 1: record 50 fails once (PARTIAL at index 50), then
 * succeeds. Records 0..49 are not redelivered; one retry; checkpoint at the
 * end. */
Test(engine, partial_batch_failure, .timeout = 30)
{
	struct bus b;
	char sum[PATH_MAX];

	bus_init(&b, "partial");
	bus_stream(&b, "in", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "partial");
	opt(k, "seqs", "50");
	opt(k, "times", "1");
	sum_tmpl(&b, "fail", sum, sizeof(sum));
	opt(k, "summary", sum);
	k->batch_size = 100;
	k->max_retry_attempts = 3;
	bus_open(&b);

	uint64_t expect_sum = 0;
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 100, 5, &expect_sum);
	spate_producer_close(p);

	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records == 100 && st.lag_records == 0, 5000);
	/* The shared checkpoint moved with the batch, before any stop. */
	cr_assert_eq(ckpt_shared(spate_engine_stream(b.e, "in"), "c", 0), 100);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	st = stats_of(b.e, "c");
	cr_assert_eq(st.retries, 1, "retries %" PRIu64, st.retries);
	cr_assert_eq(st.batches, 2);
	cr_assert_eq(st.records, 100);
	cr_assert_eq(st.failed, 0);
	struct summary s = summary_of(&b, "fail", 0);
	cr_assert_eq(s.records, 100, "%s", s.text);
	cr_assert_eq(s.duplicates, 0, "%s", s.text);
	cr_assert_eq(s.delivered, 100, "%s", s.text); /* 0..49 once, 50..99 once */
	cr_assert_eq(s.gaps, 0);
	cr_assert_eq(s.failed_batches, 1);
	cr_assert_eq(s.failed_records, 1);
	cr_assert_eq(s.checksum, expect_sum);
	cr_assert_eq(ckpt_shared(spate_engine_stream(b.e, "in"), "c", 0), 100);
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 100);
	bus_done(&b);
}

/* max_record_age 50 ms: records 150 ms old at start are never delivered;
 * all go to the failure stream as expired, payload included. */
Test(engine, max_record_age, .timeout = 30)
{
	struct bus b;
	char sum[PATH_MAX];
	struct failed got[32];
	const unsigned nkeys = 4;

	bus_init(&b, "age");
	bus_stream(&b, "in", 1, 64 * 1024);
	bus_stream(&b, "dlq", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "count");
	sum_tmpl(&b, "count", sum, sizeof(sum));
	opt(k, "summary", sum);
	k->max_record_age_ns = 50 * MS;
	snprintf(k->on_failure, sizeof(k->on_failure), "dlq");
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 20, nkeys, NULL);
	spate_producer_close(p);
	nap_ms(150);

	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.failed == 20 && st.lag_records == 0, 5000);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	st = stats_of(b.e, "c");
	cr_assert_eq(st.expired, 20);
	cr_assert_eq(st.failed, 20);
	cr_assert_eq(st.records, 0);
	cr_assert_eq(st.batches, 0);
	struct summary s = summary_of(&b, "count", 0);
	cr_assert_eq(s.records, 0, "%s", s.text);
	cr_assert_eq(s.batches, 0, "%s", s.text);
	cr_assert_eq(s.first_seq, -1);

	unsigned n = read_failures(spate_engine_stream(b.e, "dlq"), got, 32);
	cr_assert_eq(n, 20);
	for (unsigned i = 0; i < n; i++) {
		check_envelope(&got[i], i, 0, 0, "c", "in", SPATE_FAIL_RECORD_EXPIRED,
			       "max_record_age", nkeys);
		cr_assert_geq(got[i].h.failed_ns - got[i].h.ts, 150 * MS);
	}
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 20);
	bus_done(&b);
}

/* FATAL stops the consumer: state FAILED with the plugin's error, the
 * checkpoint stays before the failing batch, a stop keeps it there, nothing
 * goes to on_failure; a new engine with a working plugin resumes at the
 * failing batch. */
Test(engine, fatal_stops_consumer, .timeout = 30)
{
	struct bus b;

	bus_init(&b, "fatal");
	bus_stream(&b, "in", 1, 64 * 1024);
	bus_stream(&b, "dlq", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "fatal");
	opt(k, "seqs", "250");
	k->batch_size = 100;
	snprintf(k->on_failure, sizeof(k->on_failure), "dlq");
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 500, 3, NULL);
	spate_producer_close(p);

	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.state == SPATE_CONSUMER_FAILED, 5000);
	nap_ms(250); /* give a (wrong) checkpoint write time to happen */
	cr_assert_eq(ckpt_shared(spate_engine_stream(b.e, "in"), "c", 0), 200);
	st = stats_of(b.e, "c");
	cr_assert_eq(st.records, 200);
	cr_assert_eq(st.lag_records, 300);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	st = stats_of(b.e, "c");
	cr_assert_eq(st.state, SPATE_CONSUMER_FAILED, "state %u after stop", st.state);
	cr_assert(strstr(st.error, "fail: record seq 250 fails"), "error '%s'", st.error);
	cr_assert(strstr(st.error, "shard 0"), "error '%s'", st.error);
	cr_assert_eq(st.batches, 3);
	cr_assert_eq(st.failed, 0); /* FATAL sends nothing to on_failure */
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 200);
	cr_assert_eq(ckpt_shared(spate_engine_stream(b.e, "in"), "c", 0), 200);
	struct failed got[1];
	cr_assert_eq(read_failures(spate_engine_stream(b.e, "dlq"), got, 1), 0);
	spate_engine_close(b.e);
	b.e = NULL;

	/* The fix: a new engine with a plugin that works resumes at the
	 * failing batch and finishes the shard. */
	char path[PATH_MAX], sum[PATH_MAX];
	plugin_so("count", path, sizeof(path));
	snprintf(b.cfg->consumers[0].plugin, sizeof(b.cfg->consumers[0].plugin), "%s", path);
	sum_tmpl(&b, "count", sum, sizeof(sum));
	opt(&b.cfg->consumers[0], "summary", sum);
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	WAIT_FOR(b.e, "c", st, st.records == 300 && st.lag_records == 0, 5000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	struct summary s = summary_of(&b, "count", 0);
	cr_assert_eq(s.first_seq, 200, "%s", s.text);
	cr_assert_eq(s.last_seq, 499, "%s", s.text);
	cr_assert_eq(s.gaps, 0);
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 500);
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* Parallelization                                                          */
/* ------------------------------------------------------------------------ */

#define ORDER_KEYS 32u
#define ORDER_SHARDS 2u
#define ORDER_LANES 4u

/* 20,000 records over 32 keys, 2 shards x parallelization 4, written by the
 * file plugin one file per (shard, lane): per key the counters are strictly
 * increasing and complete, every key is in exactly one file, the one of its
 * shard and of lane hash % 4, and nothing is missing or repeated. */
Test(engine, per_key_order_with_parallelization, .timeout = 40)
{
	struct bus b;
	char tmpl[PATH_MAX];
	const uint64_t n = 20000;
	uint64_t per_key[ORDER_KEYS] = { 0 }, rng = 0x9e3779b97f4a7c15ull;

	bus_init(&b, "order");
	bus_stream(&b, "in", ORDER_SHARDS, 1ull << 20);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "file");
	in_dir(&b, "out-%s.log", tmpl, sizeof(tmpl));
	opt(k, "path", tmpl);
	opt(k, "format", "lines");
	opt(k, "prefix", "seq");
	opt(k, "append", "false");
	k->batch_size = 100;
	k->parallelization = ORDER_LANES;
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	for (uint64_t i = 0; i < n; i++) {
		char key[32], buf[64];
		rng ^= rng >> 12;
		rng ^= rng << 25;
		rng ^= rng >> 27;
		unsigned kk = (unsigned)((rng * 0x2545f4914f6cdd1dull) >> 59); /* 0..31 */
		key_of(kk, key, sizeof(key));
		int len = snprintf(buf, sizeof(buf), "k%u %" PRIu64, kk, per_key[kk]++);
		cr_assert_eq(spate_put(p, key, strlen(key), buf, (size_t)len, NULL), 0);
	}
	spate_producer_close(p);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records == n && st.lag_records == 0, 20000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	st = stats_of(b.e, "c");
	cr_assert_eq(st.records, n);
	cr_assert_eq(st.failed, 0);

	int file_of_key[ORDER_KEYS];
	uint64_t seen[ORDER_KEYS] = { 0 }, total = 0;
	size_t cap = 1u << 20;
	char *text = malloc(cap);
	cr_assert_not_null(text);
	for (unsigned kk = 0; kk < ORDER_KEYS; kk++)
		file_of_key[kk] = -1;
	for (uint32_t sh = 0; sh < ORDER_SHARDS; sh++) {
		unsigned lanes_used = 0;
		for (uint32_t lane = 0; lane < ORDER_LANES; lane++) {
			char path[PATH_MAX + 32];
			int64_t last_ctr[ORDER_KEYS];
			int64_t last_seq = -1;
			uint64_t lines = 0;
			int fidx = (int)(sh * ORDER_LANES + lane);

			for (unsigned kk = 0; kk < ORDER_KEYS; kk++)
				last_ctr[kk] = -1;
			snprintf(path, sizeof(path), "%s/out-%u.log", b.dir, sh);
			if (lane)
				snprintf(path + strlen(path), sizeof(path) - strlen(path), ".lane%u",
					 lane);
			cr_assert(read_file(path, text, cap), "%s: %s", path, strerror(errno));
			cr_assert_lt(strlen(text), cap - 1, "%s larger than the test reads", path);
			for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
				unsigned long long seq, ctr;
				unsigned kk;
				cr_assert_eq(sscanf(line, "%llu k%u %llu", &seq, &kk, &ctr), 3,
					     "%s: bad line '%s'", path, line);
				cr_assert_lt(kk, ORDER_KEYS);
				/* Shard order within the lane, per-key order. */
				cr_assert_gt((int64_t)seq, last_seq, "%s: seq %llu after %" PRId64,
					     path, seq, last_seq);
				last_seq = (int64_t)seq;
				cr_assert_eq((int64_t)ctr, last_ctr[kk] + 1,
					     "%s: key %u counter %llu after %" PRId64, path, kk, ctr,
					     last_ctr[kk]);
				last_ctr[kk] = (int64_t)ctr;
				/* Each key in exactly one (shard, lane). */
				if (file_of_key[kk] < 0) {
					char key[32];
					key_of(kk, key, sizeof(key));
					uint32_t h = spate_key_hash(key, strlen(key));
					cr_assert_eq(spate_shard_of_hash(h, ORDER_SHARDS), sh);
					cr_assert_eq(h % ORDER_LANES, lane, "key %u in lane %u", kk,
						     lane);
					file_of_key[kk] = fidx;
				}
				cr_assert_eq(file_of_key[kk], fidx, "key %u in two files", kk);
				seen[kk]++;
				lines++;
			}
			total += lines;
			lanes_used += lines > 0;
		}
		cr_assert_geq(lanes_used, 2u, "shard %u: keys in %u lane(s) only", sh, lanes_used);
	}
	free(text);
	cr_assert_eq(total, n);
	for (unsigned kk = 0; kk < ORDER_KEYS; kk++)
		cr_assert_eq(seen[kk], per_key[kk], "key %u: %" PRIu64 " of %" PRIu64, kk, seen[kk],
			     per_key[kk]);
	for (uint32_t sh = 0; sh < ORDER_SHARDS; sh++)
		cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", sh),
			     ckpt_shared(spate_engine_stream(b.e, "in"), "c", sh));
	bus_done(&b);
}

/* The shard checkpoint of a consumer with lanes is the minimum of its lanes'
 * positions. A lane stuck on its very first batch (retrying a poison record
 * forever) must hold the checkpoint back even though the other lane has
 * handled everything: otherwise a restart would skip the stuck records. */
Test(engine, lanes_checkpoint_waits_for_slowest_lane, .timeout = 30)
{
	struct bus b;
	char key[32];
	unsigned poison_key = 0, ok_key = 0;

	/* A key of lane 0 and a key of lane 1 (parallelization 2). */
	for (unsigned i = 0; i < 64; i++) {
		key_of(i, key, sizeof(key));
		uint32_t lane = spate_key_hash(key, strlen(key)) % 2;
		if (lane == 0 && !poison_key)
			poison_key = i + 1;
		if (lane == 1 && !ok_key)
			ok_key = i + 1;
	}
	cr_assert(poison_key && ok_key);

	bus_init(&b, "lanes");
	bus_stream(&b, "in", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "retry");
	opt(k, "contains", "POISON");
	k->parallelization = 2;
	k->batch_size = 100;
	k->max_retry_attempts = SPATE_CONFIG_RETRY_FOREVER;
	k->retry_backoff_max_ns = 10 * MS;
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	key_of(poison_key - 1, key, sizeof(key));
	cr_assert_eq(spate_put(p, key, strlen(key), "POISON", 6, NULL), 0); /* seq 0, lane 0 */
	key_of(ok_key - 1, key, sizeof(key));
	for (unsigned i = 1; i < 100; i++)
		cr_assert_eq(spate_put(p, key, strlen(key), "fine", 4, NULL), 0); /* lane 1 */
	spate_producer_close(p);

	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records == 99 && st.retries >= 3, 5000);
	nap_ms(250); /* the control thread writes checkpoint files every 100 ms */
	uint64_t shared = ckpt_shared(spate_engine_stream(b.e, "in"), "c", 0);
	uint64_t file = ckpt_file(b.cfg->state_dir, "c", 0);
	st = stats_of(b.e, "c");
	cr_assert(shared == 0 || shared == UINT64_MAX,
		  "shared checkpoint %" PRIu64 " skips record 0, still being retried", shared);
	cr_assert(file == 0 || file == UINT64_MAX,
		  "checkpoint file %" PRIu64 " skips record 0, still being retried", file);
	cr_assert_eq(st.lag_records, 100, "lag %" PRIu64 " while record 0 is retried",
		     st.lag_records);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	file = ckpt_file(b.cfg->state_dir, "c", 0);
	cr_assert(file == 0 || file == UINT64_MAX, "checkpoint file %" PRIu64 " after stop", file);
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* Restart, crash                                                           */
/* ------------------------------------------------------------------------ */

/* Engine 1 counts 1000 records and stops; 1000 more are produced to the
 * stream while no engine runs; engine 2 (same state_dir and consumer)
 * resumes at 1000: nothing lost, nothing counted twice. */
Test(engine, restart_resumes_from_checkpoint, .timeout = 30)
{
	struct bus b;
	char sum1[PATH_MAX], sum2[PATH_MAX];
	uint64_t expect_sum = 0;

	bus_init(&b, "restart");
	bus_stream(&b, "in", 1, 1ull << 20);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "count");
	sum_tmpl(&b, "run1", sum1, sizeof(sum1));
	opt(k, "summary", sum1);
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 1000, 11, &expect_sum);
	spate_producer_close(p);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records == 1000 && st.lag_records == 0, 5000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	spate_engine_close(b.e);
	b.e = NULL;
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 1000);

	/* Another producer, on the stream as it stayed. */
	struct spate_stream *s = NULL;
	cr_assert_eq(spate_stream_attach(b.name, "in", &s), 0);
	p = producer_of(s);
	produce(p, 1000, 2000, 11, &expect_sum);
	spate_producer_close(p);
	spate_stream_close(s);

	/* Engine 2: same configuration but for the summary file. */
	sum_tmpl(&b, "run2", sum2, sizeof(sum2));
	opt(&b.cfg->consumers[0], "summary", sum2);
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	WAIT_FOR(b.e, "c", st, st.records == 1000 && st.lag_records == 0, 5000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	st = stats_of(b.e, "c");
	cr_assert_eq(st.records, 1000, "engine 2 processed %" PRIu64, st.records);

	struct summary s1 = summary_of(&b, "run1", 0);
	struct summary s2 = summary_of(&b, "run2", 0);
	cr_assert_eq(s1.first_seq, 0, "%s", s1.text);
	cr_assert_eq(s1.last_seq, 999);
	cr_assert_eq(s1.records, 1000);
	cr_assert_eq(s2.first_seq, 1000, "%s", s2.text);
	cr_assert_eq(s2.last_seq, 1999);
	cr_assert_eq(s2.records, 1000);
	cr_assert_eq(s1.gaps + s2.gaps, 0);
	cr_assert_eq(s1.duplicates + s2.duplicates, 0);
	cr_assert_eq(s1.checksum + s2.checksum, expect_sum, "payload checksum differs");
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 2000);
	bus_done(&b);
}

/* The crashing child: an engine whose plugin (fail, mode crash) aborts on
 * record 500. Records 0..499 are processed and their checkpoint reaches the
 * file first; then 500..999 arrive in one put_batch (one publication), so
 * the abort cannot catch the producer half-way. Exit codes other than death
 * by SIGABRT say what went wrong. */
static int crash_child(struct spate_config *cfg)
{
	struct spate_engine *e = NULL;
	struct spate_producer *p = NULL;
	struct spate_put_entry ent[500];
	struct spate_put_result res[500];
	char bufs[500][64], key[500][32];
	struct spate_consumer_stats st;
	char err[512];

	if (spate_engine_open(cfg, &e, err, sizeof(err)) < 0) {
		fprintf(stderr, "child: open: %s\n", err);
		return 10;
	}
	if (spate_producer_open(spate_engine_stream(e, "in"), SPATE_RING_WAIT_YIELD, 0, &p) < 0)
		return 11;
	for (uint64_t i = 0; i < 500; i++) {
		char buf[64], k[32];
		size_t n = payload_of(i, buf, sizeof(buf));
		key_of((unsigned)(i % 5), k, sizeof(k));
		if (spate_put(p, k, strlen(k), buf, n, NULL) < 0)
			return 12;
	}
	if (spate_engine_start(e) < 0)
		return 13;
	uint64_t deadline = mono_ns() + 5000 * MS;
	do {
		if (mono_ns() > deadline)
			return 14;
		nap_ms(1);
		if (spate_engine_consumer_stats(e, "c", &st) < 0)
			return 15;
	} while (st.records < 500 || ckpt_file(cfg->state_dir, "c", 0) != 500);
	for (unsigned i = 0; i < 500; i++) {
		key_of((i + 500) % 5, key[i], sizeof(key[i]));
		ent[i] = (struct spate_put_entry){
			.key = key[i], .key_len = strlen(key[i]), .data = bufs[i],
			.len = payload_of(i + 500, bufs[i], sizeof(bufs[i])),
		};
	}
	if (spate_put_batch(p, ent, 500, res) != 0)
		return 16;
	nap_ms(5000); /* the plugin aborts the process before this ends */
	return 17;
}

/*
 * A plugin that crashes kills its host: plugins run in the engine's process
 * (documented in consumer.c, engine.c and plugins/fail.c), so there is no
 * isolation to test, only that the data survives. The outcome, asserted here:
 * the process dies by SIGABRT; the checkpoint (file and the stream's shared
 * table) holds the progress made before the crash and nothing past the
 * crashing batch; a new engine with the same consumer name resumes there and
 * sees every record to the end (at-least-once: a crash may replay what was
 * handled in the last checkpoint period, never lose anything).
 */
Test(engine, crashing_plugin_kills_host_checkpoint_survives, .timeout = 40)
{
	struct bus b;
	char sum[PATH_MAX], path[1024];
	uint64_t expect_sum = 0;

	bus_init(&b, "crash");
	bus_stream(&b, "in", 1, 1ull << 20);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "crash");
	opt(k, "seqs", "500");
	k->batch_size = 100;

	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(crash_child(b.cfg));

	int wst = 0;
	uint64_t deadline = mono_ns() + 20000 * MS;
	pid_t w;
	while ((w = waitpid(pid, &wst, WNOHANG)) == 0) {
		if (mono_ns() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &wst, 0);
			cr_assert(0, "the crashing child is still alive after 20 s");
		}
		nap_ms(5);
	}
	cr_assert_eq(w, pid);
	cr_assert(WIFSIGNALED(wst), "child exited with %d instead of dying",
		  WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
	cr_assert_eq(WTERMSIG(wst), SIGABRT, "child died of signal %d", WTERMSIG(wst));

	/* Progress before the crash is kept, the crashing batch is not. */
	uint64_t file = ckpt_file(b.cfg->state_dir, "c", 0);
	struct spate_stream *s = NULL;
	cr_assert_eq(spate_stream_attach(b.name, "in", &s), 0);
	uint64_t shared = ckpt_shared(s, "c", 0);
	spate_stream_close(s);
	cr_assert(file > 0 && file <= 500, "checkpoint file %" PRIu64, file);
	cr_assert(shared > 0 && shared <= 500, "shared checkpoint %" PRIu64, shared);
	cr_assert_eq(file, 500); /* the child waited for it before record 500 */

	/* Engine 2: the same consumer, now with count. */
	plugin_so("count", path, sizeof(path));
	snprintf(k->plugin, sizeof(k->plugin), "%s", path);
	sum_tmpl(&b, "after", sum, sizeof(sum));
	opt(k, "summary", sum);
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records >= 1000 - file && st.lag_records == 0, 5000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	for (uint64_t i = file; i < 1000; i++) {
		char buf[64];
		size_t n = payload_of(i, buf, sizeof(buf));
		expect_sum += pu_payload_sum(buf, (uint32_t)n, PU_TOUCH_ALL);
	}
	struct summary s2 = summary_of(&b, "after", 0);
	cr_assert_eq(s2.first_seq, (int64_t)file, "%s", s2.text);
	cr_assert_eq(s2.last_seq, 999, "%s", s2.text);
	cr_assert_eq(s2.gaps, 0, "%s", s2.text);
	cr_assert_eq(s2.records, 1000 - file, "%s", s2.text);
	cr_assert_eq(s2.checksum, expect_sum, "payload checksum differs");
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 1000);
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* Hot deploy                                                               */
/* ------------------------------------------------------------------------ */

struct load {
	struct spate_stream *s;
	uint64_t target;
	_Atomic uint64_t produced;
	_Atomic int stop; /* set by the test once its deploys are done */
	int err;
};

/* Produce records 0, 1, ... (payload: the 8-byte index and 8 more bytes)
 * over 64 keys, pausing 1 ms every 1000 records, until at least target AND
 * told to stop: every deploy runs while records flow. */
static void *load_main(void *arg)
{
	struct load *l = arg;
	struct spate_producer *p = NULL;
	uint64_t i = 0;

	l->err = spate_producer_open(l->s, SPATE_RING_WAIT_YIELD, 0, &p);
	if (l->err < 0)
		return NULL;
	for (;; i++) {
		if (i >= l->target && atomic_load_explicit(&l->stop, memory_order_acquire))
			break;
		uint64_t buf[2] = { i, pu_mix64(i) };
		char key[16];
		snprintf(key, sizeof(key), "k%u", (unsigned)(i % 64));
		l->err = spate_put(p, key, strlen(key), buf, sizeof(buf), NULL);
		if (l->err < 0)
			break;
		atomic_store_explicit(&l->produced, i + 1, memory_order_release);
		if (i % 1000 == 999)
			nap_ms(1);
	}
	spate_producer_close(p);
	return NULL;
}

static void wait_produced(struct load *l, uint64_t n)
{
	uint64_t deadline = mono_ns() + 20000 * MS;

	while (atomic_load_explicit(&l->produced, memory_order_acquire) < n) {
		cr_assert_lt(mono_ns(), deadline, "producer stuck at %" PRIu64,
			     atomic_load_explicit(&l->produced, memory_order_relaxed));
		nap_ms(1);
	}
}

/* Wait until consumer "c" handled @p more records beyond what it had. */
static void wait_more(struct spate_engine *e, uint64_t more)
{
	struct spate_consumer_stats st = stats_of(e, "c");
	uint64_t from = st.records;

	WAIT_FOR(e, "c", st, st.records >= from + more, 10000);
	cr_assert_eq(st.state, SPATE_CONSUMER_RUNNING);
}

/*
 * Hot deploy while a producer thread keeps ~200,000 records flowing: a new
 * build of count (by path), then deploys that must fail and leave the old
 * build running (missing file, a file that is not a plugin, unknown
 * consumer, a plugin whose init fails). Each deploy that finis the states
 * leaves their summary; chained, the summaries cover every record with no
 * gap; the engine's count is at least what was produced; nothing failed.
 */
Test(engine, hot_deploy_under_load, .timeout = 60)
{
	struct bus b;
	char sum[PATH_MAX], sumfile[PATH_MAX + 16], count_so[PATH_MAX], file_so[PATH_MAX];
	char bad[PATH_MAX + 16], err[512];
	struct load l = { .target = 200000 / SCALE };
	pthread_t th;

	bus_init(&b, "deploy");
	bus_stream(&b, "in", 1, 1ull << 20);
	bus_stream(&b, "dlq", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "count");
	sum_tmpl(&b, "count", sum, sizeof(sum));
	opt(k, "summary", sum);
	k->batch_size = 500;
	snprintf(k->on_failure, sizeof(k->on_failure), "dlq");
	snprintf(sumfile, sizeof(sumfile), "%s/count-0.json", b.dir);
	plugin_so("count", count_so, sizeof(count_so));
	plugin_so("file", file_so, sizeof(file_so));
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);

	l.s = spate_engine_stream(b.e, "in");
	cr_assert_eq(pthread_create(&th, NULL, load_main, &l), 0);

	/* 1. A new build of count, mid-way. */
	wait_produced(&l, l.target / 3);
	uint64_t before = atomic_load_explicit(&l.produced, memory_order_acquire);
	int rc = spate_engine_deploy(b.e, "c", count_so, err, sizeof(err));
	cr_assert_eq(rc, 0, "deploy: %d: %s", rc, err);
	uint64_t after = atomic_load_explicit(&l.produced, memory_order_acquire);
	struct summary s1 = read_summary(sumfile); /* the first build's, written at its fini */
	cr_log_info("deploy 1 with %" PRIu64 "..%" PRIu64 " produced; first build saw %" PRIu64
		    "..%" PRId64,
		    before, after, s1.first_seq < 0 ? 0 : (uint64_t)s1.first_seq, s1.last_seq);
	cr_assert_eq(s1.first_seq, 0, "%s", s1.text);
	cr_assert_eq(s1.gaps, 0, "%s", s1.text);
	cr_assert_eq(s1.records, (uint64_t)s1.last_seq + 1, "%s", s1.text);
	wait_more(b.e, 1000);

	/* 2. Deploys that fail before touching anything. */
	in_dir(&b, "missing.so", bad, sizeof(bad));
	rc = spate_engine_deploy(b.e, "c", bad, err, sizeof(err));
	cr_assert_eq(rc, -ENOENT, "deploy of a missing file: %d", rc);
	cr_assert(strstr(err, "missing.so"), "error '%s'", err);
	in_dir(&b, "bogus.so", bad, sizeof(bad));
	FILE *f = fopen(bad, "we");
	cr_assert_not_null(f);
	fputs("not an ELF file\n", f);
	fclose(f);
	err[0] = 0;
	rc = spate_engine_deploy(b.e, "c", bad, err, sizeof(err));
	cr_assert_lt(rc, 0, "deploy of a non-plugin");
	cr_assert(err[0], "no error text");
	rc = spate_engine_deploy(b.e, "nope", count_so, err, sizeof(err));
	cr_assert_eq(rc, -ENOENT);
	struct summary same = read_summary(sumfile);
	cr_assert_str_eq(same.text, s1.text, "a failed load touched the running states");
	wait_more(b.e, 1000); /* still flowing, on the same build */

	/* 3. A plugin whose init fails (file without its path option): the
	 *    old build is started again. */
	wait_produced(&l, 2 * l.target / 3);
	rc = spate_engine_deploy(b.e, "c", file_so, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "deploy of a plugin that cannot init: %d (%s)", rc, err);
	struct summary s2 = read_summary(sumfile); /* the second build's */
	cr_assert_leq(s2.first_seq, s1.last_seq + 1, "gap across deploy 1: %s / %s", s1.text,
		      s2.text);
	cr_assert_eq(s2.gaps, 0, "%s", s2.text);
	wait_more(b.e, 1000);
	struct spate_consumer_stats st = stats_of(b.e, "c");
	cr_assert_eq(st.state, SPATE_CONSUMER_RUNNING);

	atomic_store_explicit(&l.stop, 1, memory_order_release);
	pthread_join(th, NULL);
	cr_assert_eq(l.err, 0, "producer: %d", l.err);
	uint64_t produced = atomic_load_explicit(&l.produced, memory_order_acquire);
	cr_assert_geq(produced, l.target);
	WAIT_FOR(b.e, "c", st, st.records >= produced && st.lag_records == 0, 20000);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	st = stats_of(b.e, "c");
	struct summary s3 = read_summary(sumfile); /* the third build's */
	cr_log_info("produced %" PRIu64 ", engine counted %" PRIu64 " (%" PRIu64
		    " redelivered); builds saw ..%" PRId64 ", %" PRId64 "..%" PRId64
		    ", %" PRId64 "..%" PRId64,
		    produced, st.records, st.records - produced, s1.last_seq, s2.first_seq,
		    s2.last_seq, s3.first_seq, s3.last_seq);
	cr_assert_geq(st.records, produced);
	cr_assert_eq(st.failed, 0);
	cr_assert_eq(st.retries, 0);
	cr_assert_leq(s3.first_seq, s2.last_seq + 1, "gap across deploy 3: %s / %s", s2.text,
		      s3.text);
	cr_assert_eq(s3.last_seq, (int64_t)produced - 1, "%s", s3.text);
	cr_assert_eq(s3.gaps, 0, "%s", s3.text);
	cr_assert_geq(s1.records + s2.records + s3.records, produced);
	struct failed got[1];
	cr_assert_eq(read_failures(spate_engine_stream(b.e, "dlq"), got, 1), 0);
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), produced);
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* Embedding API                                                            */
/* ------------------------------------------------------------------------ */

/* spate_engine_open_file() on a YAML file (plugin by bundled name, found
 * through SPATE_PLUGIN_PATH), then the lookups, stats, latency and
 * describe(); the shipped demo.yaml loads and opens (with its bus and
 * state_dir moved to this test's); a missing plugin is refused. */
Test(engine, embedding_api, .timeout = 30)
{
	struct bus b;
	char yaml[1024], text[2048], err[512] = "", desc[8192];
	struct spate_engine *e = NULL;

	bus_init(&b, "embed");
	in_dir(&b, "bus.yaml", yaml, sizeof(yaml));
	snprintf(text, sizeof(text),
		 "bus: %s\n"
		 "state_dir: %s/state\n"
		 "streams:\n"
		 "  - name: orders\n"
		 "    shards: 2\n"
		 "    ring_size: 64KiB\n"
		 "    huge_pages: off\n"
		 "consumers:\n"
		 "  - name: order-count\n"
		 "    stream: orders\n"
		 "    plugin: count\n"
		 "    starting_position: trim_horizon\n"
		 "    batch_size: 50\n",
		 b.name, b.dir);
	FILE *f = fopen(yaml, "we");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	snprintf(b.streams[b.nstreams++], sizeof(b.streams[0]), "orders");

	int rc = spate_engine_open_file(yaml, &e, err, sizeof(err));
	cr_assert_eq(rc, 0, "open_file: %d: %s", rc, err);
	b.e = e;
	struct spate_stream *s = spate_engine_stream(e, "orders");
	cr_assert_not_null(s);
	cr_assert_str_eq(spate_stream_name(s), "orders");
	cr_assert_str_eq(spate_stream_bus(s), b.name);
	cr_assert_eq(spate_stream_shards(s), 2);
	cr_assert_null(spate_engine_stream(e, "nope"));
	struct spate_consumer_stats st;
	cr_assert_eq(spate_engine_consumer_stats(e, "nope", &st), -ENOENT);
	st = stats_of(e, "order-count");
	cr_assert_eq(st.state, SPATE_CONSUMER_STOPPED);

	spate_engine_describe(e, desc, sizeof(desc));
	cr_assert(strstr(desc, "worker"), "describe: %s", desc);
	cr_assert(strstr(desc, "cpu"), "describe: %s", desc);
	cr_assert(strstr(desc, "order-count"), "describe: %s", desc);

	cr_assert_eq(spate_engine_start(e), 0);
	cr_assert_eq(spate_engine_start(e), -EALREADY);
	struct spate_hist h;
	spate_hist_init(&h);
	cr_assert_eq(spate_engine_consumer_latency(e, "order-count", &h), -EBUSY);
	struct spate_producer *p = producer_of(s);
	produce(p, 0, 300, 10, NULL);
	spate_producer_close(p);
	WAIT_FOR(e, "order-count", st, st.records == 300 && st.lag_records == 0, 5000);
	cr_assert_eq(st.state, SPATE_CONSUMER_RUNNING);
	cr_assert_gt(st.first_batch_ns, 0);
	cr_assert_eq(spate_engine_stop(e), 0);
	cr_assert_eq(spate_engine_stop(e), 0); /* idempotent */
	cr_assert_eq(spate_engine_consumer_latency(e, "order-count", &h), 0);
	cr_assert_gt(spate_hist_count(&h), 0);
	cr_assert_eq(spate_engine_consumer_latency(e, "nope", &h), -ENOENT);
	st = stats_of(e, "order-count");
	cr_assert_eq(st.state, SPATE_CONSUMER_STOPPED);
	spate_engine_close(e);
	b.e = NULL;

	/* The shipped example: it parses, and opens once moved to a bus and
	 * state_dir of this test's. */
	const char *root = getenv("SPATE_SOURCE_ROOT");
	cr_assert_not_null(root);
	snprintf(yaml, sizeof(yaml), "%s/docs/examples/demo.yaml", root);
	struct spate_config *demo = NULL;
	rc = spate_config_load(yaml, &demo, err, sizeof(err));
	cr_assert_eq(rc, 0, "demo.yaml: %s", err);
	snprintf(demo->bus, sizeof(demo->bus), "eng%d-demo", (int)getpid());
	snprintf(demo->state_dir, sizeof(demo->state_dir), "%s/demo", b.dir);
	for (uint32_t i = 0; i < demo->n_streams; i++)
		demo->streams[i].huge_pages = SPATE_CONFIG_HUGE_OFF;
	rc = spate_engine_open(demo, &e, err, sizeof(err));
	cr_assert_eq(rc, 0, "demo: %d: %s", rc, err);
	cr_assert_not_null(spate_engine_stream(e, "orders-failed"));
	spate_engine_describe(e, desc, sizeof(desc));
	cr_assert(strstr(desc, "order-count"), "describe: %s", desc);
	cr_assert_eq(spate_engine_start(e), 0);
	cr_assert_eq(spate_engine_stop(e), 0);
	spate_engine_close(e);
	/* An existing stream of another shape is refused, naming it. */
	demo->streams[0].shards = 3;
	rc = spate_engine_open(demo, &e, err, sizeof(err));
	cr_assert_eq(rc, -EEXIST, "reshaped stream: %d", rc);
	cr_assert(strstr(err, "orders"), "error '%s'", err);
	/* A missing plugin is refused, naming it. */
	demo->streams[0].shards = 4;
	snprintf(demo->consumers[0].plugin, sizeof(demo->consumers[0].plugin), "%s/none.so",
		 b.dir);
	rc = spate_engine_open(demo, &e, err, sizeof(err));
	cr_assert_eq(rc, -ENOENT, "missing plugin: %d", rc);
	cr_assert(strstr(err, "none.so"), "error '%s'", err);
	for (uint32_t i = 0; i < demo->n_streams; i++)
		cr_expect_eq(spate_stream_unlink(demo->bus, demo->streams[i].name), 0);
	spate_config_free(demo);
	bus_done(&b);
}

/* concurrency bounds the workers serving a consumer: with concurrency 1 all
 * four shards of `one` are polled by a single worker, while `any` spreads
 * over every worker of the plan. */
Test(engine, concurrency_bounds_workers, .timeout = 30)
{
	struct bus b;
	char desc[4096];
	uint32_t cores[2] = { 0, 1 };

	bus_init(&b, "conc");
	bus_stream(&b, "in", 4, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "one", "in", "count");
	k->concurrency = 1;
	bus_consumer(&b, "any", "in", "count");
	b.cfg->placement.cores = malloc(sizeof(cores));
	cr_assert_not_null(b.cfg->placement.cores);
	memcpy(b.cfg->placement.cores, cores, sizeof(cores));
	b.cfg->placement.n_cores = 2;
	bus_open(&b);
	spate_engine_describe(b.e, desc, sizeof(desc));
	/* Every task of `one` is on the same worker line. */
	unsigned lines_with_one = 0, lines_with_any = 0;
	for (char *line = strtok(desc, "\n"); line; line = strtok(NULL, "\n")) {
		if (!strstr(line, "worker "))
			continue;
		if (strstr(line, "one["))
			lines_with_one++;
		if (strstr(line, "any["))
			lines_with_any++;
	}
	cr_assert_eq(lines_with_one, 1, "consumer with concurrency 1 on %u workers", lines_with_one);
	cr_assert_eq(lines_with_any, 2, "unbounded consumer on %u workers", lines_with_any);

	/* And it still processes every shard. */
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 400, 16, NULL);
	spate_producer_close(p);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "one", st, st.records == 400 && st.lag_records == 0, 5000);
	bus_done(&b);
}

/* checkpoint_interval: the shared checkpoint moves at most that often while
 * running, and is brought up to date at stop. */
Test(engine, checkpoint_interval, .timeout = 30)
{
	struct bus b;

	bus_init(&b, "ckint");
	bus_stream(&b, "in", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "count");
	k->batch_size = 10;
	k->checkpoint_interval_ns = 30ull * 1000 * 1000 * 1000;
	bus_open(&b);
	struct spate_stream *s = spate_engine_stream(b.e, "in");
	struct spate_producer *p = producer_of(s);
	produce(p, 0, 10, 1, NULL);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records == 10, 5000);
	/* The first batch checkpoints (nothing was checkpointed yet). */
	cr_assert_eq(ckpt_shared(s, "c", 0), 10);
	produce(p, 10, 30, 1, NULL);
	WAIT_FOR(b.e, "c", st, st.records == 30 && st.lag_records == 0, 5000);
	cr_assert_eq(ckpt_shared(s, "c", 0), 10, "checkpointed before the interval passed");
	spate_producer_close(p);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	cr_assert_eq(ckpt_shared(s, "c", 0), 30);
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 30);
	bus_done(&b);
}

/* starting_position: 100 records are in the shard before the engine opens;
 * each consumer starts where its position says (Kinesis iterator types), and
 * `latest` sees only the 50 appended after start. */
Test(engine, starting_positions, .timeout = 30)
{
	struct bus b;
	char t[7][PATH_MAX];
	static const char *names[] = { "trim", "latest", "atseq", "afterseq", "atts", "late_ts", "early_ts" };

	bus_init(&b, "start");
	bus_stream(&b, "in", 1, 64 * 1024);
	for (unsigned i = 0; i < 7; i++)
		sum_tmpl(&b, names[i], t[i], sizeof(t[i]));
	/* The records exist before the consumers are configured... */
	struct spate_stream *s0 = NULL;
	{
		struct spate_stream_params sp = { .shards = 1, .ring_size = 64 * 1024,
						  .ring_flags = SPATE_RING_F_MULTI_WRITER |
								SPATE_RING_F_FULL_WAIT,
						  .shm_flags = SPATE_SHM_F_NO_HUGE };
		cr_assert_eq(spate_stream_create(b.name, "in", &sp, &s0), 0);
	}
	struct spate_producer *p = producer_of(s0);
	produce(p, 0, 60, 1, NULL);
	nap_ms(20);
	uint64_t mid_ts = spate_now_ns();
	nap_ms(20);
	produce(p, 60, 100, 1, NULL);

	struct spate_config_consumer *k;
	k = bus_consumer(&b, names[0], "in", "count");
	opt(k, "summary", t[0]);
	k = bus_consumer(&b, names[1], "in", "count");
	k->starting_position = SPATE_CONFIG_START_LATEST;
	opt(k, "summary", t[1]);
	k = bus_consumer(&b, names[2], "in", "count");
	k->starting_position = SPATE_CONFIG_START_AT_SEQUENCE;
	k->starting_sequence = 30;
	opt(k, "summary", t[2]);
	k = bus_consumer(&b, names[3], "in", "count");
	k->starting_position = SPATE_CONFIG_START_AFTER_SEQUENCE;
	k->starting_sequence = 30;
	opt(k, "summary", t[3]);
	k = bus_consumer(&b, names[4], "in", "count");
	k->starting_position = SPATE_CONFIG_START_AT_TIMESTAMP;
	k->starting_timestamp_ns = mid_ts;
	opt(k, "summary", t[4]);
	k = bus_consumer(&b, names[5], "in", "count");
	k->starting_position = SPATE_CONFIG_START_AT_TIMESTAMP;
	k->starting_timestamp_ns = spate_now_ns() + 3600ull * 1000000000ull; /* in an hour */
	opt(k, "summary", t[5]);
	k = bus_consumer(&b, names[6], "in", "count");
	k->starting_position = SPATE_CONFIG_START_AT_TIMESTAMP;
	k->starting_timestamp_ns = 1; /* before everything */
	opt(k, "summary", t[6]);
	bus_open(&b); /* attaches the existing stream: same shape */
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "trim", st, st.records == 100, 5000);
	WAIT_FOR(b.e, "atseq", st, st.records == 70, 5000);
	WAIT_FOR(b.e, "afterseq", st, st.records == 69, 5000);
	WAIT_FOR(b.e, "atts", st, st.records == 40, 5000);
	WAIT_FOR(b.e, "early_ts", st, st.records == 100, 5000);
	produce(p, 100, 150, 1, NULL);
	WAIT_FOR(b.e, "latest", st, st.records == 50, 5000);
	WAIT_FOR(b.e, "trim", st, st.records == 150, 5000);
	WAIT_FOR(b.e, "atseq", st, st.records == 120, 5000);
	WAIT_FOR(b.e, "late_ts", st, st.lag_records == 0 || st.records == 0, 5000);
	spate_producer_close(p);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	struct { const char *n; int64_t first; uint64_t records; } want[] = {
		{ "trim", 0, 150 },   { "latest", 100, 50 }, { "atseq", 30, 120 },
		{ "afterseq", 31, 119 }, { "atts", 60, 90 }, { "early_ts", 0, 150 },
	};
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct summary sm = summary_of(&b, want[i].n, 0);
		cr_assert_eq(sm.first_seq, want[i].first, "%s: %s", want[i].n, sm.text);
		cr_assert_eq(sm.records, want[i].records, "%s: %s", want[i].n, sm.text);
		cr_assert_eq(sm.gaps, 0, "%s: %s", want[i].n, sm.text);
	}
	/* A timestamp in the future: nothing yet, and waiting at the end. */
	st = stats_of(b.e, "late_ts");
	cr_assert_eq(st.records, 0);
	spate_stream_close(s0);
	bus_done(&b);
}

/* Helping: shards 0 and 2 are hot and both dealt to worker 0; worker 1 owns
 * the idle shards 1 and 3, and helps with the lagging ones. Every record is
 * processed once, in order per shard. */
Test(engine, idle_worker_helps_lagging_shards, .timeout = 30)
{
	struct bus b;
	char sum[PATH_MAX];
	uint32_t cores[2] = { 0, 1 };
	/* Small batches and a deep backlog: the hot shards stay behind for
	 * long enough (hundreds of ms) that the helper's naps (at most 1 ms)
	 * cannot miss them, however loaded the machine. */
	const uint64_t per_shard = 60000;

	bus_init(&b, "help");
	bus_stream(&b, "in", 4, 8 * 1024 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "count");
	k->batch_size = 4;
	sum_tmpl(&b, "c", sum, sizeof(sum));
	opt(k, "summary", sum);
	b.cfg->placement.cores = malloc(sizeof(cores));
	cr_assert_not_null(b.cfg->placement.cores);
	memcpy(b.cfg->placement.cores, cores, sizeof(cores));
	b.cfg->placement.n_cores = 2;
	bus_open(&b);
	char desc[4096];
	spate_engine_describe(b.e, desc, sizeof(desc));
	cr_assert_not_null(strstr(desc, "c[in/0] c[in/2]"), "plan: %s", desc);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	for (uint64_t i = 0; i < per_shard; i++) {
		char buf[64];
		size_t n = payload_of(i, buf, sizeof(buf));
		for (uint32_t shard = 0; shard < 4; shard += 2) {
			struct spate_put_result r;
			uint32_t hash = shard * (1u << 30) + 7;
			cr_assert_eq(spate_put_hash(p, hash, buf, n, &r), 0);
			cr_assert_eq(r.shard, shard);
		}
	}
	spate_producer_close(p);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records == 2 * per_shard && st.lag_records == 0, 15000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	st = stats_of(b.e, "c");
	cr_assert_gt(st.helped, 0, "the idle worker never helped");
	for (uint32_t shard = 0; shard < 4; shard += 2) {
		struct summary s = summary_of(&b, "c", shard);
		cr_assert_eq(s.records, per_shard, "shard %u: %s", shard, s.text);
		cr_assert_eq(s.gaps, 0, "shard %u: %s", shard, s.text);
		cr_assert_eq(s.duplicates, 0, "shard %u: %s", shard, s.text);
		cr_assert_eq(s.first_seq, 0);
		cr_assert_eq(s.last_seq, (int64_t)per_shard - 1);
	}
	cr_log_info("helped %" PRIu64 " times", st.helped);
	bus_done(&b);
}

/*
 * Issue 9, item 5: a checkpoint is bound to the stream incarnation it was
 * taken in. A memory-only stream is recreated (its region removed, as by
 * `spate rm` or a reboot): it numbers from 0 again, and the consumer's
 * checkpoint at 1000 belongs to the old incarnation. Every new record,
 * all below 1000, must be delivered; before incarnations they were all
 * skipped without a word. The old checkpoint file must name the old
 * incarnation and the stream's range.
 */
Test(engine, checkpoint_of_another_incarnation_skips_nothing, .timeout = 30)
{
	struct bus b;
	char sum1[PATH_MAX], sum2[PATH_MAX], path[PATH_MAX + 64], text[4096];
	struct spate_consumer_stats st;

	bus_init(&b, "incarn");
	bus_stream(&b, "in", 1, 1ull << 20);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "count");
	sum_tmpl(&b, "run1", sum1, sizeof(sum1));
	opt(k, "summary", sum1);
	bus_open(&b);
	uint64_t inc1 = spate_stream_incarnation(spate_engine_stream(b.e, "in"));
	cr_assert_neq(inc1, 0);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 1000, 3, NULL);
	spate_producer_close(p);
	WAIT_FOR(b.e, "c", st, st.records == 1000 && st.lag_records == 0, 5000);
	spate_engine_close(b.e);
	b.e = NULL;
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 1000);
	snprintf(path, sizeof(path), "%s/in.c.ckpt", b.cfg->state_dir);
	cr_assert(read_file(path, text, sizeof(text)), "no %s", path);
	char want[64];
	snprintf(want, sizeof(want), "incarnation %016" PRIx64 "\n", inc1);
	cr_assert_not_null(strstr(text, want), "%s", text);
	cr_assert_not_null(strstr(text, "\n0 1000 0 1000\n"), "%s", text);

	/* The region goes; the next engine creates the stream from 0. */
	cr_assert_eq(spate_stream_unlink(b.name, "in"), 0);
	sum_tmpl(&b, "run2", sum2, sizeof(sum2));
	opt(&b.cfg->consumers[0], "summary", sum2);
	bus_open(&b);
	uint64_t inc2 = spate_stream_incarnation(spate_engine_stream(b.e, "in"));
	cr_assert_neq(inc2, inc1, "a recreated stream is a new incarnation");
	cr_assert_eq(spate_engine_start(b.e), 0);
	p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 300, 3, NULL);
	spate_producer_close(p);
	WAIT_FOR(b.e, "c", st, st.records == 300 && st.lag_records == 0, 5000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	struct summary s2 = summary_of(&b, "run2", 0);
	cr_assert_eq(s2.records, 300, "%s", s2.text);
	cr_assert_eq(s2.first_seq, 0, "%s", s2.text);
	cr_assert_eq(s2.last_seq, 299, "%s", s2.text);
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 300);

	/* Same incarnation (the region stayed): the checkpoint holds. */
	spate_engine_close(b.e);
	bus_open(&b);
	cr_assert_eq(spate_stream_incarnation(spate_engine_stream(b.e, "in")), inc2);
	cr_assert_eq(spate_engine_start(b.e), 0);
	p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 300, 310, 3, NULL);
	spate_producer_close(p);
	WAIT_FOR(b.e, "c", st, st.records == 10 && st.lag_records == 0, 5000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	bus_done(&b);
}

/* The engine that holds a bus's lock, in a child: it opens, says so on
 * @p go, and waits to be killed. */
static void lock_child(struct spate_config *cfg, int go)
{
	struct spate_engine *e = NULL;
	char err[512];

	if (spate_engine_open(cfg, &e, err, sizeof(err)) < 0 || spate_engine_start(e) < 0)
		_exit(1);
	if (write(go, "x", 1) != 1)
		_exit(2);
	for (;;)
		pause();
}

/*
 * Issue 9, item 10: one engine per bus. A second engine on the same
 * memory-only configuration is refused within 100 ms, naming the first's
 * pid; the lock names it to probes too; once the first is killed (no clean
 * close: the kernel drops the lock), a new engine starts and the lock reads
 * free after it closes.
 */
Test(engine, second_engine_refused_naming_pid, .timeout = 30)
{
	struct bus b;
	int go[2];
	char c, err[512] = "", want[64];

	bus_init(&b, "lock");
	bus_stream(&b, "in", 1, 64 * 1024);
	bus_consumer(&b, "c", "in", "count");
	cr_assert_eq(pipe(go), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		lock_child(b.cfg, go[1]);
	if (read(go[0], &c, 1) != 1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		cr_assert(0, "the first engine did not start");
	}
	struct spate_engine *e = NULL;
	int rc = spate_engine_open(b.cfg, &e, err, sizeof(err));
	/* The refusal itself (what spate_engine_open does first) is bounded
	 * by the lock's retry, not by the machine's load. */
	struct spate_engine_lock *lk = NULL;
	pid_t h2 = 0;
	uint64_t t0 = mono_ns();
	int lrc = spate_engine_lock(b.cfg->state_dir, &lk, &h2);
	uint64_t took = mono_ns() - t0;
	pid_t holder = 0;
	int held = spate_engine_lock_holder(b.cfg->state_dir, &holder, NULL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_assert_eq(rc, -EBUSY, "second engine: %d (%s)", rc, err);
	cr_assert_null(e);
	snprintf(want, sizeof(want), "pid %ld", (long)pid);
	cr_assert_not_null(strstr(err, want), "%s", err);
	cr_assert_eq(lrc, -EBUSY);
	cr_assert_null(lk);
	cr_assert_eq(h2, pid);
	/* The refusal is a non-blocking flock taken before anything is mapped:
	 * it never waits for the holder beyond the lock's short retry (~20 ms; the
	 * issue asks for < 100 ms). The bound here only catches a wait; a
	 * tighter one would fail on a loaded CI machine, not on a regression. */
	cr_log_info("second engine refused after %" PRIu64 " us", (uint64_t)(took / 1000));
	cr_assert_lt(took, 2000 * MS, "refused after %" PRIu64 " ms", (uint64_t)(took / MS));
	cr_assert_eq(held, 1);
	cr_assert_eq(holder, pid);

	/* The holder died without closing: nothing stale is left to wait for. */
	cr_assert_eq(spate_engine_lock_holder(b.cfg->state_dir, &holder, NULL), 0);
	bus_open(&b);
	cr_assert_eq(spate_engine_lock_holder(b.cfg->state_dir, &holder, NULL), 1);
	cr_assert_eq(holder, getpid());
	pid_t served = 0;
	cr_assert_eq(spate_stream_engine(spate_engine_stream(b.e, "in"), &served), 1);
	cr_assert_eq(served, getpid());
	spate_engine_close(b.e);
	b.e = NULL;
	cr_assert_eq(spate_engine_lock_holder(b.cfg->state_dir, &holder, NULL), 0);
	close(go[0]);
	close(go[1]);
	bus_done(&b);
}

/* One bus, two state_dirs: the stream region names its live engine, and the
 * second engine is refused although its own lock is free. */
Test(engine, engine_of_another_state_dir_refused, .timeout = 30)
{
	struct bus b;
	int go[2];
	char c, err[512] = "", want[64];

	bus_init(&b, "lock2");
	bus_stream(&b, "in", 1, 64 * 1024);
	cr_assert_eq(pipe(go), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		lock_child(b.cfg, go[1]);
	int got = (int)read(go[0], &c, 1);
	snprintf(b.cfg->state_dir, sizeof(b.cfg->state_dir), "%s/state2", b.dir);
	struct spate_engine *e = NULL;
	int rc = got == 1 ? spate_engine_open(b.cfg, &e, err, sizeof(err)) : -1;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_assert_eq(got, 1, "the first engine did not start");
	cr_assert_eq(rc, -EBUSY, "%d (%s)", rc, err);
	snprintf(want, sizeof(want), "another live engine (pid %ld", (long)pid);
	cr_assert_not_null(strstr(err, want), "%s", err);
	/* Its engine is dead now: the region says so, and a new engine takes it. */
	struct spate_stream *s = NULL;
	pid_t gone = 0;
	cr_assert_eq(spate_stream_attach(b.name, "in", &s), 0);
	cr_assert_eq(spate_stream_engine(s, &gone), -ESRCH);
	cr_assert_eq(gone, pid);
	spate_stream_close(s);
	bus_open(&b);
	close(go[0]);
	close(go[1]);
	bus_done(&b);
}

/* A memory-only stream whose region is unreadable (here: an earlier layout
 * version, as an engine of an older build leaves it) is stale: the engine,
 * holding the bus's lock, removes it and creates the stream anew instead of
 * refusing to start. */
Test(engine, stale_unreadable_region_is_recreated, .timeout = 30)
{
	struct bus b;
	struct spate_stream *s = NULL;

	bus_init(&b, "stale");
	bus_stream(&b, "in", 1, 64 * 1024);
	struct spate_stream_params sp = { .shards = 1, .ring_size = 64 * 1024,
					  .ring_flags = SPATE_RING_F_MULTI_WRITER |
							SPATE_RING_F_FULL_WAIT,
					  .shm_flags = SPATE_SHM_F_NO_HUGE };
	cr_assert_eq(spate_stream_create(b.name, "in", &sp, &s), 0);
	uint64_t old = spate_stream_incarnation(s);
	struct spate_stream_hdr *h = spate_shm_user(spate_stream_shm(s));
	h->layout_version = SPATE_STREAM_LAYOUT_VERSION - 1;
	spate_stream_close(s);
	cr_assert_eq(spate_stream_attach(b.name, "in", &s), -EPROTO);
	bus_open(&b);
	struct spate_stream *in = spate_engine_stream(b.e, "in");
	cr_assert_neq(spate_stream_incarnation(in), old);
	struct spate_producer *p = producer_of(in);
	produce(p, 0, 10, 1, NULL);
	spate_producer_close(p);
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* Providers (spate/provider.h): a consumer's plugin from a door            */
/* ------------------------------------------------------------------------ */

/* A provider's instance: what the engine asked for, and what it ran. */
struct prov_inst {
	char consumer[64];
	uint32_t tasks, states;
	_Atomic uint64_t records, batches;
	_Atomic uint32_t fails_left; /* the next process() calls that return PARTIAL */
	bool closed;
};
static struct prov_inst *prov_last;

static int prov_init(const struct spate_plugin_ctx *ctx, void **state)
{
	cr_assert(SPATE_PLUGIN_HAS(ctx, provided));
	struct prov_inst *in = ctx->provided;
	cr_assert_not_null(in, "init gets the instance in ctx->provided");
	cr_assert_str_eq(ctx->consumer, in->consumer);
	in->states++;
	*state = in;
	return 0;
}

static int prov_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct prov_inst *in = state;
	uint32_t left = atomic_load_explicit(&in->fails_left, memory_order_relaxed);

	if (left && b->count > 1) {
		atomic_store_explicit(&in->fails_left, left - 1, memory_order_relaxed);
		res->status = SPATE_BATCH_PARTIAL;
		res->failed_index = 1;
		snprintf(res->error, sizeof(res->error), "provided plugin fails record 1");
		atomic_fetch_add_explicit(&in->records, 1, memory_order_relaxed);
		return 0;
	}
	atomic_fetch_add_explicit(&in->records, b->count, memory_order_relaxed);
	atomic_fetch_add_explicit(&in->batches, 1, memory_order_relaxed);
	res->status = SPATE_BATCH_OK;
	return 0;
}

static void prov_fini(void *state)
{
	struct prov_inst *in = state;
	in->states--;
}

static const struct spate_plugin prov_desc = {
	.abi_version = SPATE_PLUGIN_ABI_VERSION,
	.struct_size = sizeof(struct spate_plugin),
	.name = "provided",
	.version = "1",
	.init = prov_init,
	.process = prov_process,
	.fini = prov_fini,
};

static bool prov_serves(const struct spate_config_consumer *k)
{
	return k->function != NULL;
}

static int prov_open(void *arg, const struct spate_provider_ctx *ctx, struct spate_provided *out,
		     char *err, size_t errlen)
{
	cr_assert_eq(arg, &prov_desc);
	if (ctx->k->function->concurrency == 99) {
		snprintf(err, errlen, "cannot start %s", ctx->k->function->command[0]);
		return -ENOEXEC;
	}
	struct prov_inst *in = calloc(1, sizeof(*in));
	cr_assert_not_null(in);
	snprintf(in->consumer, sizeof(in->consumer), "%s", ctx->k->name);
	in->tasks = ctx->tasks;
	atomic_store(&in->fails_left, 1);
	cr_assert_gt(out->struct_size, 0);
	out->plugin = &prov_desc;
	out->inst = in;
	out->flags = SPATE_PROVIDED_F_OWN_MEMORY;
	snprintf(out->path, sizeof(out->path), "function %s", ctx->k->function->command[0]);
	prov_last = in;
	return 0;
}

static void prov_close(void *arg, void *inst)
{
	(void)arg;
	struct prov_inst *in = inst;
	cr_assert_eq(in->states, 0, "close after every state's fini");
	in->closed = true;
}

/* A function consumer runs through the registered provider: the engine
 * asks it for the instance (tasks = shards x lanes), the consumer rules
 * apply to its descriptor (a partial failure retried from the failed
 * record), the instance is closed after the states. Without a provider the
 * same configuration is refused at open, naming it. */
Test(engine, provider_runs_function_consumer, .timeout = 30)
{
	static const struct spate_plugin_provider prov = {
		.struct_size = sizeof(prov),
		.version = SPATE_PROVIDER_VERSION,
		.name = "test-functions",
		.serves = prov_serves,
		.open = prov_open,
		.close = prov_close,
		.arg = (void *)&prov_desc,
	};
	const char *argv[] = { "node", "index.mjs" };
	struct spate_config_function *fn;
	struct bus b;
	char err[512];

	bus_init(&b, "prov");
	bus_stream(&b, "in", 2, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "f", "in", "count");
	k->parallelization = 2;
	cr_assert_eq(spate_config_consumer_function(k, &fn), 0);
	cr_assert_eq(spate_config_function_set_argv(fn, 0, argv, 2), 0);

	/* No provider: refused, naming the consumer. */
	cr_assert_eq(spate_engine_open(b.cfg, &b.e, err, sizeof(err)), -ENOPROTOOPT);
	cr_assert(strstr(err, "consumer f: function: no provider"), "%s", err);

	cr_assert_eq(spate_engine_register_provider(&prov), 0);
	cr_assert_eq(spate_engine_register_provider(&prov), -EEXIST);
	fn->concurrency = 99; /* the provider fails: its reason, named */
	cr_assert_eq(spate_engine_open(b.cfg, &b.e, err, sizeof(err)), -ENOEXEC);
	cr_assert(strstr(err, "consumer f: test-functions: cannot start node"), "%s", err);
	fn->concurrency = 0;
	bus_open(&b);
	struct prov_inst *in = prov_last;
	cr_assert_eq(in->tasks, 4, "2 shards x 2 lanes");

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 200, 8, NULL);
	spate_producer_close(p);
	cr_assert_eq(spate_engine_start(b.e), 0);
	cr_assert_eq(in->states, 4);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "f", st, st.records == 200 && st.lag_records == 0, 5000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	st = stats_of(b.e, "f");
	cr_assert_eq(st.retries, 1, "the partial failure was retried: %" PRIu64, st.retries);
	cr_assert_eq(st.failed, 0);
	cr_assert_eq(atomic_load(&in->records), 200, "each record done once");
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "f", 0) + ckpt_file(b.cfg->state_dir, "f", 1),
		     200);
	cr_assert_eq(in->states, 0);
	bus_done(&b);
	cr_assert(in->closed);
	free(in);
	cr_assert_eq(spate_engine_unregister_provider("test-functions"), 0);
	cr_assert_eq(spate_engine_unregister_provider("test-functions"), -ENOENT);
}
