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

/* ------------------------------------------------------------------------ */
/* A plugin whose process() never returns (issue 9 item 4)                  */
/* ------------------------------------------------------------------------ */

/* Records 0..19, batches of 10, record 5 makes process() hang forever;
 * timeout 200 ms, max_retry_attempts 1: the batch [0, 10) is delivered
 * twice, each call given up after the timeout (its thread abandoned and
 * replaced), then goes to the failure stream with the reason; [10, 20) is
 * delivered by the replacement thread; stop returns at once. */
Test(consumer, timeout_gives_up_a_stuck_process_call, .timeout = 30)
{
	struct bus b;
	struct failed got[32];

	bus_init(&b, "tmo");
	bus_stream(&b, "in", 1, 64 * 1024);
	bus_stream(&b, "dlq", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "hang");
	opt(k, "seqs", "5");
	k->batch_size = 10;
	k->max_retry_attempts = 1;
	k->retry_backoff_ns = 1 * MS;
	k->timeout_ns = 200 * MS;
	snprintf(k->on_failure, sizeof(k->on_failure), "dlq");
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 20, 3, NULL);
	spate_producer_close(p);

	uint64_t t0 = mono_ns();
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.failed == 10 && st.records == 10 && st.lag_records == 0, 10000);
	cr_assert_geq(mono_ns() - t0, 2 * 200 * MS, "both calls ran their timeout");
	uint64_t t1 = mono_ns();
	cr_assert_eq(spate_engine_stop(b.e), 0);
	cr_assert_lt(mono_ns() - t1, 2000 * MS, "stop waited for the abandoned threads");

	st = stats_of(b.e, "c");
	cr_assert_eq(st.state, SPATE_CONSUMER_STOPPED);
	unsigned n = read_failures(spate_engine_stream(b.e, "dlq"), got, 32);
	cr_assert_eq(n, 10, "%u records in the failure stream", n);
	for (unsigned i = 0; i < n; i++) {
		cr_assert_eq(got[i].h.seq, i);
		cr_assert_eq(got[i].h.attempts, 2);
		cr_assert(strstr(got[i].h.error, "timed out"), "error '%s'", got[i].h.error);
	}
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 20);
	bus_done(&b);
}

/* A stop while process() hangs (timeout 300 ms) returns after about the
 * timeout, not never; the checkpoint stays at the last good position (before
 * the stuck record 15). */
Test(consumer, stop_is_bounded_by_the_timeout, .timeout = 30)
{
	struct bus b;

	bus_init(&b, "tmostop");
	bus_stream(&b, "in", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "hang");
	opt(k, "seqs", "15");
	k->batch_size = 10;
	k->timeout_ns = 300 * MS;
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce(p, 0, 10, 3, NULL);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records == 10, 5000);
	produce(p, 10, 20, 3, NULL); /* the batch holding 15 hangs */
	spate_producer_close(p);
	nap_ms(50);
	uint64_t t0 = mono_ns();
	cr_assert_eq(spate_engine_stop(b.e), 0);
	uint64_t dt = mono_ns() - t0;
	cr_assert_lt(dt, 3000 * MS, "stop took %" PRIu64 " ms", (uint64_t)(dt / MS));
	/* Records 10..14 may have made a batch of their own before 15 came. */
	uint64_t ck = ckpt_file(b.cfg->state_dir, "c", 0);
	cr_assert(ck >= 10 && ck <= 15, "checkpoint %" PRIu64 ": past the stuck record", ck);
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* A crashing plugin (issue 9 item 18)                                      */
/* ------------------------------------------------------------------------ */

/* One engine run in a child: start, wait until the consumer has no lag,
 * stop. The plugin's SIGSEGV kills it first if it reaches record 5. */
static int segv_child(struct spate_config *cfg, const char *errpath, bool produce)
{
	struct spate_engine *e = NULL;
	struct spate_consumer_stats st;
	char err[512];
	int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
		return 9;
	/* The test runner's handlers go: the engine installs its own only
	 * over the default action. */
	signal(SIGSEGV, SIG_DFL);
	if (spate_engine_open(cfg, &e, err, sizeof(err)) < 0) {
		fprintf(stderr, "child: open: %s\n", err);
		return 10;
	}
	if (produce) { /* the records stay in the stream's shared memory */
		struct spate_producer *p = NULL;
		char buf[64];
		if (spate_producer_open(spate_engine_stream(e, "in"), SPATE_RING_WAIT_YIELD, 0, &p) < 0)
			return 11;
		for (uint64_t i = 0; i < 20; i++)
			if (spate_put(p, "k", 1, buf, payload_of(i, buf, sizeof(buf)), NULL) < 0)
				return 12;
		spate_producer_close(p);
	}
	if (spate_engine_start(e) < 0)
		return 13;
	uint64_t deadline = mono_ns() + 10000 * MS;
	do {
		if (mono_ns() > deadline)
			return 14;
		nap_ms(1);
		if (spate_engine_consumer_stats(e, "c", &st) < 0)
			return 15;
	} while (st.records + st.failed < 20 || st.lag_records);
	spate_engine_close(e);
	return 0;
}

static int run_child(struct bus *b, const char *errpath, bool produce)
{
	int wst = 0;

	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(segv_child(b->cfg, errpath, produce));
	cr_assert_eq(waitpid(pid, &wst, 0), pid);
	return wst;
}

/* Record 5 crashes the engine (SIGSEGV in the plugin). Each crash leaves a
 * line naming consumer, plugin file, stream, shard and records; the restarts
 * count the crashed deliveries (attempt record), so with
 * max_retry_attempts 1 the third run gives the batch up to the failure
 * stream and goes on, instead of crashing on it forever. */
Test(consumer, crash_is_named_and_does_not_loop, .timeout = 60)
{
	struct bus b;
	struct failed got[32];
	char errpath[PATH_MAX], text[8192];

	bus_init(&b, "segv");
	bus_stream(&b, "in", 1, 64 * 1024);
	bus_stream(&b, "dlq", 1, 64 * 1024);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "mode", "segv");
	opt(k, "seqs", "5");
	k->batch_size = 10;
	k->max_retry_attempts = 1;
	k->retry_backoff_ns = 1 * MS;
	snprintf(k->on_failure, sizeof(k->on_failure), "dlq");
	in_dir(&b, "stderr", errpath, sizeof(errpath));

	/* Run 1 puts the records (they outlive it, in the streams' shared
	 * memory): every engine of this bus runs in a child. */
	for (int run = 1; run <= 2; run++) {
		int wst = run_child(&b, errpath, run == 1);
		cr_assert(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGSEGV,
			  "run %d: expected death by SIGSEGV, got status %#x", run, wst);
		cr_assert(read_file(errpath, text, sizeof(text)));
		cr_assert(strstr(text, "signal 11 (SEGV) in process() of consumer c, plugin "),
			  "run %d: no crash line naming the consumer: %s", run, text);
		cr_assert(strstr(text, "/fail.so, stream in shard 0 lane 0, records 0..9"),
			  "run %d: crash line lacks plugin, stream, shard or records: %s", run, text);
	}
	int wst = run_child(&b, errpath, false);
	cr_assert(read_file(errpath, text, sizeof(text)));
	cr_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0,
		  "run 3: the crash loop goes on (status %#x): %s", wst, text);

	bus_open(&b);
	unsigned n = read_failures(spate_engine_stream(b.e, "dlq"), got, 32);
	cr_assert_eq(n, 10, "%u records in the failure stream", n);
	for (unsigned i = 0; i < n; i++) {
		cr_assert_eq(got[i].h.seq, i);
		cr_assert_eq(got[i].h.attempts, 2);
		cr_assert(strstr(got[i].h.error, "crashed"), "error '%s'", got[i].h.error);
	}
	cr_assert_eq(ckpt_file(b.cfg->state_dir, "c", 0), 20);
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* A leaking plugin and memory_limit (issue 9 item 18)                      */
/* ------------------------------------------------------------------------ */

/* 1 MiB leaked per delivery (batch_size 1), records put every 2 ms,
 * memory_limit 48 MiB: the consumer stops (FAILED, the reason in its
 * error) long before the 400 records are all delivered. */
Test(consumer, memory_limit_stops_a_leaking_plugin, .timeout = 30)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	cr_skip_test("the sanitizers' allocators keep freed and leaked memory their own way: RSS "
		     "growth is not the plugin's here");
#endif
	struct bus b;
	char buf[64];

	bus_init(&b, "leak");
	bus_stream(&b, "in", 1, 1ull << 20);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "fail");
	opt(k, "leak", "1048576");
	k->batch_size = 1;
	k->memory_limit = 48ull << 20;
	bus_open(&b);

	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	for (uint64_t i = 0; i < 400; i++) {
		size_t n = payload_of(i, buf, sizeof(buf));
		cr_assert_eq(spate_put(p, "k", 1, buf, n, NULL), 0);
		nap_ms(2);
		st = stats_of(b.e, "c");
		if (st.state == SPATE_CONSUMER_FAILED)
			break;
	}
	spate_producer_close(p);
	WAIT_FOR(b.e, "c", st, st.state == SPATE_CONSUMER_FAILED, 5000);
	cr_assert(strstr(st.error, "memory_limit"), "error '%s'", st.error);
	cr_assert_lt(st.records, 300, "records %" PRIu64 ": the limit did not stop it", st.records);
	cr_assert_gt(st.records, 30, "records %" PRIu64 ": stopped before the limit", st.records);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	bus_done(&b);
}

/* The two keys: parsed, defaulted, and out-of-range values refused naming
 * file, line and field. */
Test(consumer, timeout_and_memory_limit_keys, .timeout = 10)
{
	static const char ok[] = "bus: b\nstreams:\n  - name: s\nconsumers:\n"
				 "  - name: c\n    stream: s\n    plugin: count\n"
				 "    timeout: 2s\n    memory_limit: 64MiB\n"
				 "  - name: d\n    stream: s\n    plugin: count\n";
	static const char bad[] = "bus: b\nstreams:\n  - name: s\nconsumers:\n"
				  "  - name: c\n    stream: s\n    plugin: count\n"
				  "    timeout: 901s\n";
	struct spate_config *c = NULL;
	char err[512] = "";

	cr_assert_eq(spate_config_parse(ok, sizeof(ok) - 1, "t.yaml", &c, err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(c->consumers[0].timeout_ns, 2000 * MS);
	cr_assert_eq(c->consumers[0].memory_limit, 64ull << 20);
	cr_assert_eq(c->consumers[1].timeout_ns, 60000 * MS, "default: 60 s");
	cr_assert_eq(c->consumers[1].memory_limit, 0, "default: no limit");
	spate_config_free(c);
	c = NULL;
	cr_assert_lt(spate_config_parse(bad, sizeof(bad) - 1, "t.yaml", &c, err, sizeof(err)), 0);
	cr_assert(strstr(err, "t.yaml:8") && strstr(err, "timeout"), "error: %s", err);
}
