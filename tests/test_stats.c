/* SPDX-License-Identifier: MIT */
/*
 * Tests of the counters region (spate/stats.h): a real engine running the
 * bundled `fail` plugin on records whose outcome is known in advance, then
 * every counter of the region, read through a read-only attach as a monitor
 * in another process would, checked against the totals computed here and
 * against the engine's own stats; per-consumer histograms recorded by
 * several threads at once; a region whose size does not grow with the
 * shard count by histograms; the switch that turns the counters off; a
 * corrupt region refused.
 *
 * Every test has its own bus (name with the pid) and removes its regions.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spate/config.h"
#include "spate/engine.h"
#include "spate/shm.h"
#include "spate/stats.h"
#include "spate/stream.h"

#define MS (1000000ull)

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nap_ms(unsigned ms)
{
	struct timespec ts = { 0, (long)ms * 1000000L };
	nanosleep(&ts, NULL);
}

static void plugin_so(const char *name, char *out, size_t len)
{
	const char *pp = getenv("SPATE_PLUGIN_PATH");
	char dir[PATH_MAX - 64];

	cr_assert_not_null(pp, "SPATE_PLUGIN_PATH is not set (tests/meson.build sets it)");
	snprintf(dir, sizeof(dir), "%s", pp);
	dir[strcspn(dir, ":")] = '\0';
	snprintf(out, len, "%s/%s.so", dir, name);
}

/* A bus of its own: name with the pid and @p tag, a state dir, a config. */
struct bus {
	char name[48], dir[64];
	struct spate_config *cfg;
};

static void bus_init(struct bus *b, const char *tag)
{
	snprintf(b->name, sizeof(b->name), "%s%d", tag, (int)getpid());
	snprintf(b->dir, sizeof(b->dir), "/tmp/spate-test-stats-XXXXXX");
	cr_assert_not_null(mkdtemp(b->dir));
	cr_assert_eq(spate_config_new_default(b->name, &b->cfg), 0);
	snprintf(b->cfg->state_dir, sizeof(b->cfg->state_dir), "%s/state", b->dir);
}

static void bus_stream(struct bus *b, const char *name, uint32_t shards, uint64_t ring)
{
	struct spate_config_stream *s;

	cr_assert_eq(spate_config_add_stream(b->cfg, name, &s), 0);
	s->shards = shards;
	s->ring_size = ring;
	s->huge_pages = SPATE_CONFIG_HUGE_OFF;
}

/* Remove the streams, the config and the directory. */
static void bus_done(struct bus *b)
{
	char cmd[128];

	for (uint32_t i = 0; i < b->cfg->n_streams; i++)
		spate_stream_unlink(b->name, b->cfg->streams[i].name);
	spate_config_free(b->cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", b->dir);
	cr_assert_eq(system(cmd), 0);
}

static uint64_t rec_size(uint64_t len)
{
	return 8 + ((len + 7) & ~7ull); /* spate_ring_rec_size() below 16 MiB */
}

/*
 * The library's snapshot (spate_stats_view_take(), what `spate stat`, `spate
 * top` and the Prometheus endpoint show) of the bus of
 * counters_match_known_totals, after the engine stopped: the same totals,
 * and the ring figures (records and bytes in, head, oldest record, lag).
 */
static void check_view(const char *bus, const uint64_t n[2], const uint64_t ringbytes[2],
		       const uint64_t okcount[2], const uint64_t okbytes[2], uint64_t failed,
		       const struct spate_consumer_stats *st)
{
	struct spate_stats_view *v = NULL;
	int rc = spate_stats_view_take(bus, &v);

	cr_assert_eq(rc, 0, "view: %d", rc);
	cr_assert_str_eq(v->bus, bus);
	cr_assert_eq(v->engine_pid, (uint32_t)getpid());
	cr_assert(v->alive);
	cr_assert_eq(v->n_streams, 2);
	cr_assert_eq(v->n_shards, 3);
	cr_assert_eq(v->n_consumers, 1);
	cr_assert_eq(v->n_tasks, 2);
	cr_assert_str_eq(v->stream_names[0], "in");
	cr_assert_str_eq(v->stream_names[1], "dlq");
	cr_assert_eq(v->stream_shards[0], 2);
	const struct spate_stats_view_consumer *c = &v->consumers[0];
	cr_assert_str_eq(c->name, "c");
	cr_assert_str_eq(c->plugin, "fail");
	cr_assert_str_eq(spate_stats_state_name(c->state), "stopped");
	uint64_t records = 0, batches = 0;
	for (uint32_t sh = 0; sh < 2; sh++) {
		const struct spate_stats_view_shard *x = &v->shards[v->stream_first[0] + sh];
		cr_assert(x->ring_ok);
		cr_assert_eq(x->stream, 0);
		cr_assert_eq(x->shard, sh);
		cr_assert_eq(x->records_in, n[sh], "shard %u records in", sh);
		cr_assert_eq(x->bytes_in, ringbytes[sh], "shard %u bytes in", sh);
		cr_assert_eq(x->head_seq, n[sh]);
		cr_assert_eq(x->oldest_seq, 0, "shard %u: nothing trimmed yet", sh);
		cr_assert_gt(x->oldest_ts, 0);
		const struct spate_stats_view_task *t = &v->tasks[c->first_task + sh];
		cr_assert_eq(t->shard, sh);
		cr_assert_eq(t->records, okcount[sh]);
		cr_assert_eq(t->bytes, okbytes[sh]);
		cr_assert_eq(t->failed, 100);
		cr_assert_eq(t->checkpoint, n[sh]);
		cr_assert_eq(spate_stats_view_checkpoint(v, 0, sh), n[sh]);
		cr_assert_eq(spate_stats_view_task_catchup(t), -1, "read from the ring");
		uint64_t lr, lb, age;
		spate_stats_view_lag(v, 0, sh, &lr, &lb, &age);
		cr_assert_eq(lr, 0);
		cr_assert_eq(lb, 0);
		cr_assert_eq(age, 0);
		records += t->records;
		batches += t->batches;
	}
	cr_assert_eq(records, st->records);
	cr_assert_eq(batches, st->batches);
	cr_assert_eq(v->shards[v->stream_first[1]].records_in, failed, "the failure stream");
	cr_assert_eq(spate_hist_count(spate_stats_view_hist(v, 0, SPATE_STATS_HIST_BATCH)), batches);
	cr_assert_eq(spate_hist_max(spate_stats_view_hist(v, 0, SPATE_STATS_HIST_BATCH)), 100);
	spate_stats_view_free(v);
	cr_assert_eq(spate_stats_view_take("nosuchbus", &v), -ENOENT);
	cr_assert_null(v);
}

/*
 * 2 shards, 300 records put one by one before the start (so batches are
 * deterministic: the first holds min(100, n) records). The plugin fails
 * sequence 3 of each shard for ever; with max_retry_attempts 2 and no
 * bisection the first batch of each shard is delivered 3 times and then
 * sent, record by record, to the dlq stream; every later batch succeeds.
 */
Test(stats, counters_match_known_totals, .timeout = 60)
{
	char err[512], so[PATH_MAX];
	struct bus b;
	struct spate_config_consumer *k;
	struct spate_engine *e;
	const uint64_t total = 300;
	uint64_t n[2] = { 0, 0 }, ringbytes[2] = { 0, 0 }, okbytes[2] = { 0, 0 };
	uint64_t okcount[2] = { 0, 0 };

	bus_init(&b, "stats");
	const char *bus = b.name;
	bus_stream(&b, "in", 2, 64 * 1024);
	bus_stream(&b, "dlq", 1, 1024 * 1024);
	plugin_so("fail", so, sizeof(so));
	cr_assert_eq(spate_config_add_consumer(b.cfg, "c", "in", so, &k), 0);
	k->starting_position = SPATE_CONFIG_START_TRIM_HORIZON;
	k->wait = SPATE_RING_WAIT_BLOCK;
	k->batch_size = 100;
	k->max_retry_attempts = 2;
	k->bisect_on_error = false;
	k->retry_backoff_ns = 1 * MS;
	k->retry_backoff_max_ns = 4 * MS;
	snprintf(k->on_failure, sizeof(k->on_failure), "dlq");
	cr_assert_eq(spate_config_consumer_set_option(k, "mode", "retry"), 0);
	cr_assert_eq(spate_config_consumer_set_option(k, "seqs", "3"), 0);
	int rc = spate_engine_open(b.cfg, &e, err, sizeof(err));
	cr_assert_eq(rc, 0, "engine open: %d %s", rc, err);

	struct spate_producer *p = NULL;
	cr_assert_eq(spate_producer_open(spate_engine_stream(e, "in"), SPATE_RING_WAIT_YIELD, 0, &p), 0);
	for (uint64_t i = 0; i < total; i++) {
		char buf[64];
		struct spate_put_result res;
		int len = snprintf(buf, sizeof(buf), "record-%" PRIu64 "-%.*s", i, (int)(i % 13),
				   "abcdefghijklm");
		/* Explicit hashes: shard 0 owns the low half of the hash space. */
		cr_assert_eq(spate_put_hash(p, i % 2 ? 0xc0000000u : 0x10000000u, buf, (size_t)len, &res), 0);
		cr_assert_eq(res.seq, n[res.shard]);
		n[res.shard]++;
		ringbytes[res.shard] += 32 + rec_size((uint64_t)len); /* one batch per put */
		if (res.seq >= 100) {
			okbytes[res.shard] += (uint64_t)len;
			okcount[res.shard]++;
		}
	}
	spate_producer_close(p);
	cr_assert(n[0] > 100 && n[1] > 100, "keys spread badly: %" PRIu64 " / %" PRIu64, n[0], n[1]);
	const uint64_t failed = 200; /* the first 100 of each shard */

	cr_assert_eq(spate_engine_start(e), 0);
	struct spate_consumer_stats st;
	uint64_t deadline = mono_ns() + 20000 * MS;
	for (;;) {
		cr_assert_eq(spate_engine_consumer_stats(e, "c", &st), 0);
		if (st.failed == failed && st.records == total - failed && st.lag_records == 0)
			break;
		cr_assert_lt(mono_ns(), deadline, "records %" PRIu64 " failed %" PRIu64 " lag %" PRIu64,
			     st.records, st.failed, st.lag_records);
		nap_ms(2);
	}
	cr_assert_eq(spate_engine_stop(e), 0);
	cr_assert_eq(spate_engine_consumer_stats(e, "c", &st), 0);

	/* A monitor's view: read-only attach by bus name. */
	struct spate_stats *m = NULL;
	rc = spate_stats_attach(bus, &m);
	cr_assert_eq(rc, 0, "attach: %d", rc);
	const struct spate_stats_hdr *h = spate_stats_header(m);
	/* The configuration's streams and shards, and the room reserved for
	 * run-time ones (spate_engine_stream_add). */
	cr_assert_eq(h->n_streams, 2 + SPATE_ENGINE_RUNTIME_STREAMS_MAX);
	cr_assert_eq(h->n_shards, 3 + SPATE_ENGINE_RUNTIME_SHARDS_MAX);
	cr_assert_eq(h->n_consumers, 1);
	cr_assert_eq(h->n_tasks, 2);
	cr_assert_eq(h->engine_pid, (uint32_t)getpid());
	cr_assert_eq(spate_stats_engine_alive(m), 1);

	int ci = spate_stats_consumer_find(m, "c");
	cr_assert_eq(ci, 0);
	const struct spate_stats_consumer *sc = spate_stats_consumer_at(m, 0);
	cr_assert_str_eq(sc->plugin, "fail");
	cr_assert_eq(sc->shards, 2);
	cr_assert_eq(sc->lanes, 1);
	cr_assert_eq(atomic_load(&sc->state), SPATE_STATS_STOPPED);
	cr_assert_eq(atomic_load(&sc->cold_start_ns), st.cold_start_ns);

	uint64_t sum_records = 0, sum_bytes = 0, sum_batches = 0, sum_retries = 0, sum_failed = 0;
	uint64_t sampled = 0;
	for (uint32_t sh = 0; sh < 2; sh++) {
		struct spate_stats_task *t = spate_stats_task_at(m, sc->first_task + sh);
		cr_assert_not_null(t);
		cr_assert_eq(t->shard, sh);
		uint64_t later = (n[sh] - 100 + 99) / 100; /* successful batches after the first */
		cr_assert_eq(atomic_load(&t->records), okcount[sh], "shard %u records", sh);
		cr_assert_eq(atomic_load(&t->bytes), okbytes[sh], "shard %u bytes", sh);
		cr_assert_eq(atomic_load(&t->batches), 3 + later, "shard %u batches", sh);
		cr_assert_eq(atomic_load(&t->retries), 2, "shard %u retries", sh);
		cr_assert_eq(atomic_load(&t->errors), 3, "shard %u errors", sh);
		cr_assert_eq(atomic_load(&t->bisections), 0);
		cr_assert_eq(atomic_load(&t->failed), 100, "shard %u failed", sh);
		cr_assert_eq(atomic_load(&t->expired), 0);
		cr_assert_eq(atomic_load(&t->checkpoint), n[sh], "shard %u checkpoint", sh);
		cr_assert_gt(atomic_load(&t->last_ts), 0);
		/* Each task samples 1 delivery in 8 (its own tick). */
		sampled += (3 + later + 7) / 8;
		/* Every delivery in this shard's log2 batch-size buckets; the
		 * full batches of 100 in [64, 128). */
		uint64_t inb = 0;
		for (unsigned bk = 0; bk < SPATE_STATS_BATCH_BUCKETS; bk++)
			inb += atomic_load(&t->batch_log2[bk]);
		cr_assert_eq(inb, 3 + later, "shard %u: batch-size buckets", sh);
		cr_assert_eq(spate_stats_batch_bucket(100), 6);
		cr_assert_geq(atomic_load(&t->batch_log2[6]), 1, "shard %u: batches of 100", sh);

		sum_records += atomic_load(&t->records);
		sum_bytes += atomic_load(&t->bytes);
		sum_batches += atomic_load(&t->batches);
		sum_retries += atomic_load(&t->retries);
		sum_failed += atomic_load(&t->failed);

		/* Shard figures come from the ring against the base recorded at open. */
		struct spate_stats_shard *ss = spate_stats_shard_of(m, 0, sh);
		cr_assert_not_null(ss);
		cr_assert_eq(ss->base_seq, 0, "the ring was empty when the region was made");
		struct spate_ring *r = spate_stream_ring(spate_engine_stream(e, "in"), sh);
		cr_assert_eq(spate_ring_tail_seq(r) - ss->base_seq, n[sh]);
		uint64_t tpos;
		spate_ring_tail(r, &tpos, NULL);
		cr_assert_eq(tpos - ss->base_pos, ringbytes[sh],
			     "ring bytes of shard %u", sh);
	}
	/* Histograms are the consumer's (both shards): every delivery's
	 * size; latency and process() time sampled on the same 1 delivery in
	 * 8 of each task. */
	static struct spate_hist hb, hp, hl, he;
	cr_assert_eq(spate_stats_hist_copy(m, sc->hist_batch, &hb), 0);
	cr_assert_eq(spate_stats_hist_copy(m, sc->hist_process, &hp), 0);
	cr_assert_eq(spate_stats_hist_copy(m, sc->hist_latency, &hl), 0);
	cr_assert_eq(spate_hist_count(&hb), sum_batches, "batch sizes of both shards");
	cr_assert_eq(spate_hist_max(&hb), 100);
	cr_assert_eq(spate_hist_count(&hp), sampled, "process() timed 1 in 8");
	cr_assert_eq(spate_hist_count(&hl), sampled);
	/* The engine's API reads the same histogram. */
	spate_hist_init(&he);
	cr_assert_eq(spate_engine_consumer_latency(e, "c", &he), 0);
	cr_assert_eq(spate_hist_count(&he), sampled);
	cr_assert_eq(spate_hist_max(&he), spate_hist_max(&hl));
	/* Both streams' fsync histograms exist and are empty (not persisted). */
	for (uint32_t i = 0; i < 2; i++) {
		cr_assert_eq(spate_stats_hist_copy(m, spate_stats_stream_at(m, i)->fsync_hist, &he), 0);
		cr_assert_eq(spate_hist_count(&he), 0);
	}
	cr_assert_eq(h->n_hists, 2 + SPATE_ENGINE_RUNTIME_STREAMS_MAX + 3 * 1,
		     "one per stream slot (run-time ones reserved), three per consumer");

	/* The region agrees with the engine's own counters. */
	cr_assert_eq(sum_records, st.records);
	cr_assert_eq(sum_bytes, st.bytes);
	cr_assert_eq(sum_batches, st.batches);
	cr_assert_eq(sum_retries, st.retries);
	cr_assert_eq(sum_failed, st.failed);
	cr_assert_eq(sum_failed, failed);

	/* The failure destination: the engine's producer counted one batch per record. */
	int di = spate_stats_stream_find(m, "dlq");
	cr_assert_eq(di, 1);
	struct spate_stats_shard *dq = spate_stats_shard_of(m, (uint32_t)di, 0);
	cr_assert_eq(atomic_load(&dq->put_batches), failed);
	cr_assert_eq(atomic_load(&dq->put_failed), 0);
	struct spate_ring *dr = spate_stream_ring(spate_engine_stream(e, "dlq"), 0);
	cr_assert_eq(spate_ring_tail_seq(dr) - dq->base_seq, failed);
	cr_assert_eq(atomic_load(&dq->durable_seq), UINT64_MAX, "not persisted");

	/* Workers: placed, polled, and stopped. */
	cr_assert_geq(h->n_workers, 1);
	uint32_t tasks = 0;
	for (uint32_t w = 0; w < h->n_workers; w++) {
		struct spate_stats_worker *sw = spate_stats_worker_at(m, w);
		cr_assert_gt(atomic_load(&sw->loops), 0);
		cr_assert_gt(atomic_load(&sw->busy_ns), 0);
		cr_assert_eq(atomic_load(&sw->state), SPATE_STATS_WORKER_STOPPED);
		tasks += sw->tasks;
	}
	cr_assert_eq(tasks, 2);
	check_view(bus, n, ringbytes, okcount, okbytes, failed, &st);

	spate_stats_close(m);
	cr_assert_eq(spate_stats_attach(bus, &m), 0, "readable after stop, until close");
	spate_stats_close(m);
	spate_engine_close(e);
	cr_assert_eq(spate_stats_attach(bus, &m), -ENOENT, "the engine's close removes its region");
	bus_done(&b);
}

/*
 * The engine's consumer hands plugins the sizes of the batch and the result
 * (plugin ABI 1 revision 1): cur_plugin.so (tests/old_plugin.c) fails with
 * FATAL on a batch or result without them, so every record handled shows
 * that each delivery carried both.
 */
Test(stats, engine_fills_plugin_abi_sizes, .timeout = 60)
{
	char err[512];
	struct bus b;
	struct spate_config_consumer *k;
	struct spate_engine *e;
	struct spate_consumer_stats st;
	const uint64_t total = 250;

	bus_init(&b, "abisz");
	bus_stream(&b, "in", 1, 64 * 1024);
	cr_assert_eq(spate_config_add_consumer(b.cfg, "c", "in", TEST_BUILD_DIR "/cur_plugin.so",
					       &k), 0);
	k->starting_position = SPATE_CONFIG_START_TRIM_HORIZON;
	k->batch_size = 16;
	int rc = spate_engine_open(b.cfg, &e, err, sizeof(err));
	cr_assert_eq(rc, 0, "engine open: %d %s", rc, err);
	struct spate_producer *p = NULL;
	cr_assert_eq(spate_producer_open(spate_engine_stream(e, "in"), SPATE_RING_WAIT_YIELD, 0, &p), 0);
	for (uint64_t i = 0; i < total; i++) {
		struct spate_put_result res;
		cr_assert_eq(spate_put(p, "k", 1, "payload", 7, &res), 0);
	}
	spate_producer_close(p);
	cr_assert_eq(spate_engine_start(e), 0);
	uint64_t deadline = mono_ns() + 20000 * MS;
	for (;;) {
		cr_assert_eq(spate_engine_consumer_stats(e, "c", &st), 0);
		cr_assert_neq(st.state, SPATE_CONSUMER_FAILED, "consumer failed: %s", st.error);
		if (st.records == total)
			break;
		cr_assert_lt(mono_ns(), deadline, "records %" PRIu64, st.records);
		nap_ms(2);
	}
	cr_assert_eq(spate_engine_stop(e), 0);
	cr_assert_eq(spate_engine_consumer_stats(e, "c", &st), 0);
	cr_assert_eq(st.records, total);
	cr_assert_eq(st.failed, 0);
	spate_engine_close(e);
	bus_done(&b);
}

/* xorshift values over many decades, the same sequence for a given seed. */
static uint64_t hval(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return (*x % 1000000) * ((*x >> 40) % 1000 + 1) / 100;
}

#define HW_THREADS 4
#define HW_VALUES 50000

struct hw_arg {
	struct spate_stats_tref r; /* a task's reference: the consumer's histograms */
	uint64_t seed;
};

/* A worker polling one task: records into its consumer's histograms, as
 * spate_stats_task_delivery() and the latency sample do, while the other
 * tasks' pollers do the same. */
static void *hw_main(void *p)
{
	struct hw_arg *a = p;
	uint64_t x = a->seed;

	for (int i = 0; i < HW_VALUES; i++) {
		uint64_t v = hval(&x);
		spate_hist_record_mw(a->r.latency, v);
		spate_stats_task_delivery(&a->r, (uint32_t)(v % 100 + 1), v, false);
	}
	return NULL;
}

/* The tasks of a consumer share its histograms; several threads recording
 * into them at once lose nothing: the region's histogram equals one
 * recorded single-threaded with every value. */
Test(stats, consumer_histograms_multi_writer, .timeout = 60)
{
	char bus[48];
	struct spate_stats *st = NULL, *m = NULL;
	struct spate_stats_shape shape = { .n_streams = 1, .n_shards = 2, .n_consumers = 2,
					   .n_tasks = 2 * HW_THREADS, .n_workers = 1 };
	struct hw_arg args[HW_THREADS];
	pthread_t th[HW_THREADS];
	struct spate_stats_tref other;
	struct spate_hist *all = malloc(sizeof(*all)), *got = malloc(sizeof(*got)),
			  *bat = malloc(sizeof(*bat));

	cr_assert(all && got && bat);
	snprintf(bus, sizeof(bus), "statsh%d", (int)getpid());
	cr_assert_eq(spate_stats_create(bus, &shape, &st), 0);
	cr_assert_eq(spate_stats_add_stream(st, "s", 2, NULL, NULL), 0);
	/* c: 2 shards x 2 lanes = tasks 0..3; d: tasks 4..7. */
	cr_assert_eq(spate_stats_add_consumer(st, "c", "count", 0, 2, NULL), 0);
	cr_assert_eq(spate_stats_add_consumer(st, "d", "count", 0, 2, NULL), 1);
	cr_assert_eq(spate_stats_add_consumer(st, "e", "count", 0, 1, NULL), -ENOSPC);
	for (uint32_t i = 0; i < HW_THREADS; i++) {
		cr_assert_eq(spate_stats_task_ref(st, i, &args[i].r), 0);
		cr_assert_eq(args[i].r.latency, args[0].r.latency, "one latency histogram per consumer");
		cr_assert_eq(args[i].r.batch, args[0].r.batch);
		args[i].seed = 88172645463325252ull + 7919u * i;
	}
	cr_assert_eq(spate_stats_task_ref(st, 4, &other), 0);
	cr_assert_neq(other.latency, args[0].r.latency, "consumers do not share histograms");
	cr_assert_eq(spate_stats_task_ref(st, 8, &other), -EINVAL);
	/* Both shards of the stream resolve to the stream's fsync histogram. */
	struct spate_stats_sref s0, s1;
	cr_assert_eq(spate_stats_shard_ref(st, 0, 0, &s0), 0);
	cr_assert_eq(spate_stats_shard_ref(st, 0, 1, &s1), 0);
	cr_assert_neq(s0.slot, s1.slot);
	cr_assert_eq(s0.fsync, s1.fsync);
	spate_stats_publish(st);

	for (uint32_t i = 0; i < HW_THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, hw_main, &args[i]), 0);
	/* What they record, single-threaded. */
	spate_hist_init(all);
	spate_hist_init(bat);
	uint64_t bsum = 0;
	for (uint32_t i = 0; i < HW_THREADS; i++) {
		uint64_t x = args[i].seed;
		for (int k = 0; k < HW_VALUES; k++) {
			uint64_t v = hval(&x);
			spate_hist_record(all, v);
			spate_hist_record(bat, v % 100 + 1);
			bsum += v % 100 + 1;
		}
	}
	for (uint32_t i = 0; i < HW_THREADS; i++)
		pthread_join(th[i], NULL);

	cr_assert_eq(spate_stats_attach(bus, &m), 0);
	const struct spate_stats_consumer *c = spate_stats_consumer_at(m, 0);
	const uint64_t total = (uint64_t)HW_THREADS * HW_VALUES;
	for (int which = 0; which < 2; which++) {
		cr_assert_eq(spate_stats_hist_copy(m, which ? c->hist_process : c->hist_latency, got), 0);
		cr_assert_eq(spate_hist_count(got), total, "no record lost (%d)", which);
		cr_assert_eq(spate_hist_sum(got), spate_hist_sum(all));
		cr_assert_eq(spate_hist_max(got), spate_hist_max(all));
		cr_assert_eq(spate_hist_min(got), spate_hist_min(all));
		/* Bucket by bucket. */
		uint32_t pa = 0, pg = 0;
		struct spate_hist_bucket ba, bg;
		int ra, rg;
		while ((ra = spate_hist_next(all, &pa, &ba)) | (rg = spate_hist_next(got, &pg, &bg))) {
			cr_assert(ra && rg, "bucket lists differ in length");
			cr_assert_eq(ba.lo, bg.lo);
			cr_assert_eq(ba.count, bg.count, "bucket [%" PRIu64 "]", ba.lo);
		}
	}
	cr_assert_eq(spate_stats_hist_copy(m, c->hist_batch, got), 0);
	cr_assert_eq(spate_hist_count(got), total);
	cr_assert_eq(spate_hist_sum(got), bsum);
	for (int p = 1; p <= 100; p++)
		cr_assert_eq(spate_hist_percentile(got, p), spate_hist_percentile(bat, p), "p%d", p);
	/* The scalar counters stayed per task: each thread's own slot. */
	for (uint32_t i = 0; i < HW_THREADS; i++)
		cr_assert_eq(atomic_load(&spate_stats_task_at(m, i)->batches), HW_VALUES);
	/* Consumer d's histograms saw nothing. */
	cr_assert_eq(spate_stats_hist_copy(m, spate_stats_consumer_at(m, 1)->hist_latency, got), 0);
	cr_assert_eq(spate_hist_count(got), 0);
	/* Out-of-range lookups are refused, not followed. */
	cr_assert_null(spate_stats_hist_at(m, 1u << 30));
	cr_assert_null(spate_stats_hist_at(m, 1 + 3 * 2));
	cr_assert_null(spate_stats_task_at(m, 8));
	cr_assert_null(spate_stats_shard_of(m, 0, 2));
	cr_assert_null(spate_stats_shard_of(m, 1, 0));
	spate_stats_close(m);
	spate_stats_close(st);
	cr_assert_eq(spate_stats_unlink(bus), -ENOENT, "the creator's close removed it");
	free(all);
	free(got);
	free(bat);
}

/* Region size of a shape (created, measured from the header, removed). */
static uint64_t region_size(const char *bus, uint32_t shards, uint32_t consumers,
			    uint32_t *n_hists)
{
	struct spate_stats *st = NULL;
	struct spate_stats_shape shape = { .n_streams = 1, .n_shards = shards,
					   .n_consumers = consumers, .n_tasks = shards * consumers,
					   .n_workers = 2 };

	cr_assert_eq(spate_stats_create(bus, &shape, &st), 0);
	cr_assert_eq(spate_stats_add_stream(st, "s", shards, NULL, NULL), 0);
	for (uint32_t i = 0; i < consumers; i++) {
		char name[16];
		snprintf(name, sizeof(name), "c%u", i);
		cr_assert_eq(spate_stats_add_consumer(st, name, "count", 0, 1, NULL), (int)i);
	}
	uint64_t size = spate_stats_header(st)->total_size;
	*n_hists = spate_stats_header(st)->n_hists;
	spate_stats_close(st);
	return size;
}

/* Histograms are per stream and per consumer: 256 shards (and 512 tasks)
 * cost their small slots, far less than a histogram per shard. */
Test(stats, size_independent_of_shards, .timeout = 30)
{
	char bus[48];
	uint32_t h1, h256;

	snprintf(bus, sizeof(bus), "statsz%d", (int)getpid());
	uint64_t one = region_size(bus, 1, 2, &h1);
	uint64_t many = region_size(bus, 256, 2, &h256);
	cr_assert_eq(h1, 1 + 3 * 2);
	cr_assert_eq(h256, h1, "the histogram count does not depend on shards");
	cr_assert_gt(many, one);
	/* 255 shard slots (384 B) and 510 task slots (256 B): ~225 KiB, about
	 * one histogram in all, where one per shard would be 255. */
	cr_assert_lt(many - one, 2 * sizeof(struct spate_hist),
		     "1 shard: %" PRIu64 " B, 256 shards: %" PRIu64 " B", one, many);
	cr_assert_lt(many - one, 256 * sizeof(struct spate_hist) / 64);
	cr_assert_eq(many - one, 255ull * sizeof(struct spate_stats_shard) +
					 510ull * sizeof(struct spate_stats_task));
}

/* A scribbled header is an error on attach, never a crash. */
Test(stats, corrupt_region_refused, .timeout = 30)
{
	char bus[48], name[80];
	struct spate_stats *st = NULL, *m = NULL;
	struct spate_stats_shape shape = { .n_streams = 1, .n_shards = 1, .n_consumers = 1,
					   .n_tasks = 1, .n_workers = 1 };
	struct spate_shm *raw = NULL;

	snprintf(bus, sizeof(bus), "statsc%d", (int)getpid());
	snprintf(name, sizeof(name), "%s..stats", bus);
	cr_assert_eq(spate_stats_attach(bus, &m), -ENOENT);
	cr_assert_eq(spate_stats_create(bus, &shape, &st), 0);
	cr_assert_eq(spate_stats_attach(bus, &m), -EAGAIN, "not published yet");
	spate_stats_publish(st);
	cr_assert_eq(spate_stats_attach(bus, &m), 0);
	spate_stats_close(m);
	cr_assert_eq(spate_shm_attach(name, 0, &raw), 0);
	struct spate_stats_hdr *h = spate_shm_user(raw), save = *h;

	h->n_tasks = 1000000; /* beyond the region */
	cr_assert_eq(spate_stats_attach(bus, &m), -EBADMSG);
	*h = save;
	h->tasks_off += 8; /* misplaced block */
	cr_assert_eq(spate_stats_attach(bus, &m), -EBADMSG);
	*h = save;
	h->layout_version = 99;
	cr_assert_eq(spate_stats_attach(bus, &m), -EPROTO);
	*h = save;
	h->hist_size += 8; /* histograms of another build */
	cr_assert_eq(spate_stats_attach(bus, &m), -EPROTO);
	*h = save;
	h->magic ^= 1;
	cr_assert_eq(spate_stats_attach(bus, &m), -EBADMSG);
	*h = save;
	h->bus[0] ^= 1;
	cr_assert_eq(spate_stats_attach(bus, &m), -EBADMSG);
	*h = save;
	cr_assert_eq(spate_stats_attach(bus, &m), 0);
	/* A scribbled slot index yields NULL, not a wild pointer. */
	struct spate_stats_task *t = (struct spate_stats_task *)(void *)((uint8_t *)h + h->tasks_off);
	struct spate_stats_consumer *k =
		(struct spate_stats_consumer *)(void *)((uint8_t *)h + h->cons_off);
	struct spate_stats_stream *ss = (struct spate_stats_stream *)(void *)((uint8_t *)h + h->streams_off);
	struct spate_stats_tref r;
	struct spate_stats_sref sr;
	cr_assert_eq(spate_stats_add_stream(st, "s", 1, NULL, NULL), 0);
	cr_assert_eq(spate_stats_add_consumer(st, "c", "count", 0, 1, NULL), 0);
	cr_assert_eq(spate_stats_task_ref(m, 0, &r), 0);
	cr_assert_eq(spate_stats_shard_ref(m, 0, 0, &sr), 0);
	uint64_t saved = k->hist_latency;
	k->hist_latency = UINT64_MAX / 2;
	cr_assert_eq(spate_stats_task_ref(m, 0, &r), -EINVAL);
	cr_assert_null(r.slot);
	k->hist_latency = saved;
	t->consumer = 7;
	cr_assert_eq(spate_stats_task_ref(m, 0, &r), -EINVAL);
	ss->fsync_hist = 1u << 30;
	cr_assert_eq(spate_stats_shard_ref(m, 0, 0, &sr), -EINVAL);
	cr_assert_null(sr.slot);
	spate_stats_close(m);
	spate_shm_detach(raw);
	/* A newer region under the name is not the old creator's to remove. */
	struct spate_stats *st2 = NULL;
	cr_assert_eq(spate_stats_create(bus, &shape, &st2), 0);
	spate_stats_publish(st2);
	spate_stats_close(st);
	cr_assert_eq(spate_stats_attach(bus, &m), 0, "the newer region survives the old close");
	spate_stats_close(m);
	spate_stats_close(st2);
	cr_assert_eq(spate_stats_attach(bus, &m), -ENOENT);
	cr_assert_eq(spate_stats_create("bad.name", &shape, &st), -EINVAL);
}

/* metrics.counters: off -> no region, and the engine runs as before. */
Test(stats, counters_off, .timeout = 30)
{
	char err[512], so[PATH_MAX];
	struct bus b;
	struct spate_config_consumer *k;
	struct spate_engine *e;
	struct spate_stats *m = NULL;

	bus_init(&b, "statso");
	b.cfg->metrics.counters = SPATE_CONFIG_COUNTERS_OFF;
	bus_stream(&b, "in", 1, 64 * 1024);
	plugin_so("count", so, sizeof(so));
	cr_assert_eq(spate_config_add_consumer(b.cfg, "c", "in", so, &k), 0);
	k->wait = SPATE_RING_WAIT_BLOCK;
	cr_assert_eq(spate_engine_open(b.cfg, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_stats_attach(b.name, &m), -ENOENT);
	cr_assert_eq(spate_engine_start(e), 0);
	struct spate_producer *p = NULL;
	cr_assert_eq(spate_producer_open(spate_engine_stream(e, "in"), SPATE_RING_WAIT_YIELD, 0, &p), 0);
	cr_assert_eq(spate_put(p, "k", 1, "x", 1, NULL), 0);
	spate_producer_close(p);
	struct spate_consumer_stats st;
	uint64_t deadline = mono_ns() + 5000 * MS;
	do {
		cr_assert_lt(mono_ns(), deadline);
		nap_ms(1);
		cr_assert_eq(spate_engine_consumer_stats(e, "c", &st), 0);
	} while (st.records != 1);
	/* The latency API still works: a histogram kept in the process. */
	cr_assert_eq(spate_engine_stop(e), 0);
	static struct spate_hist lat;
	spate_hist_init(&lat);
	cr_assert_eq(spate_engine_consumer_latency(e, "c", &lat), 0);
	cr_assert_eq(spate_hist_count(&lat), 1, "one delivery, sampled (the first of 8)");
	spate_engine_close(e);
	bus_done(&b);
}

/* The metrics keys of the configuration: parsed, and errors naming
 * file:line: field like every other key. */
Test(stats, config_metrics_keys, .timeout = 30)
{
	static const char ok[] = "bus: b\nstreams:\n  - name: s\nmetrics:\n  listen: 9464\n"
				 "  counters: off\n";
	static const char bad_addr[] = "bus: b\nstreams:\n  - name: s\nmetrics:\n"
				       "  listen: \"example.com:80\"\n";
	static const char bad_port[] = "bus: b\nstreams:\n  - name: s\nmetrics:\n"
				       "  listen: 127.0.0.1:70000\n";
	static const char bad_key[] = "bus: b\nstreams:\n  - name: s\nmetrics:\n  lisen: 1\n";
	static const char bad_counters[] = "bus: b\nstreams:\n  - name: s\nmetrics:\n"
					   "  counters: maybe\n";
	struct spate_config *c = NULL;
	char err[512], host[64];
	uint16_t port = 0;

	cr_assert_eq(spate_config_parse(ok, sizeof(ok) - 1, "m.yaml", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c->metrics.listen, "9464");
	cr_assert_eq(c->metrics.counters, SPATE_CONFIG_COUNTERS_OFF);
	spate_config_free(c);
	cr_assert_eq(spate_config_parse(bad_addr, sizeof(bad_addr) - 1, "m.yaml", &c, err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "m.yaml:5: metrics.listen: expected an address to listen on"), "%s", err);
	cr_assert(strstr(err, "got \"example.com:80\""), "%s", err);
	cr_assert_eq(spate_config_parse(bad_port, sizeof(bad_port) - 1, "m.yaml", &c, err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "m.yaml:5: metrics.listen:"), "%s", err);
	cr_assert_eq(spate_config_parse(bad_key, sizeof(bad_key) - 1, "m.yaml", &c, err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "m.yaml:5: metrics.lisen: unknown key; did you mean \"listen\"?"), "%s", err);
	cr_assert_eq(spate_config_parse(bad_counters, sizeof(bad_counters) - 1, "m.yaml", &c, err,
				       sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "m.yaml:5: metrics.counters: expected one of on, off"), "%s", err);

	cr_assert_eq(spate_config_parse_listen("9464", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "127.0.0.1");
	cr_assert_eq(port, 9464);
	cr_assert_eq(spate_config_parse_listen("[::1]:80", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "::1");
	cr_assert_eq(spate_config_parse_listen("localhost:1", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "127.0.0.1");
	cr_assert_eq(spate_config_parse_listen("0.0.0.0:9464", host, sizeof(host), &port), 0);
	cr_assert_eq(spate_config_parse_listen("1.2.3.4:", NULL, 0, NULL), -EINVAL);
	cr_assert_eq(spate_config_parse_listen("1.2.3.4:0", NULL, 0, NULL), -EINVAL);
	cr_assert_eq(spate_config_parse_listen(":x", NULL, 0, NULL), -EINVAL);
	cr_assert_eq(spate_config_parse_listen("[::1]80", NULL, 0, NULL), -EINVAL);
	cr_assert_eq(spate_config_parse_listen("", NULL, 0, NULL), -EINVAL);
}

Test(stats, batch_bucket_bounds)
{
	cr_assert_eq(spate_stats_batch_bucket(1), 0);
	cr_assert_eq(spate_stats_batch_bucket(2), 1);
	cr_assert_eq(spate_stats_batch_bucket(3), 1);
	cr_assert_eq(spate_stats_batch_bucket(4), 2);
	cr_assert_eq(spate_stats_batch_bucket(32767), 14);
	cr_assert_eq(spate_stats_batch_bucket(32768), 15);
	cr_assert_eq(spate_stats_batch_bucket(100000), 15, "the last bucket holds the rest");
}
