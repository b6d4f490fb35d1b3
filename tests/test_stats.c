/* SPDX-License-Identifier: MIT */
/*
 * Tests of the counters region (spate/stats.h): a real engine running the
 * bundled `fail` plugin on records whose outcome is known in advance, then
 * every counter of the region, read through a read-only attach as a monitor
 * in another process would, checked against the totals computed here and
 * against the engine's own stats; histograms merged in the region; the
 * switch that turns the counters off; a corrupt region refused.
 *
 * Every test has its own bus (name with the pid) and removes its regions.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
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
	cr_assert_eq(h->n_streams, 2);
	cr_assert_eq(h->n_shards, 3);
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

		/* Histograms: every delivery's size; latency and process() time
		 * sampled on the same 1 delivery in 8. */
		struct spate_hist hb, hp, hl;
		cr_assert_eq(spate_stats_hist_copy(m, t->hist_batch, &hb), 0);
		cr_assert_eq(spate_stats_hist_copy(m, t->hist_process, &hp), 0);
		cr_assert_eq(spate_stats_hist_copy(m, t->hist_latency, &hl), 0);
		cr_assert_eq(spate_hist_count(&hb), 3 + later);
		cr_assert_eq(spate_hist_max(&hb), 100);
		cr_assert_eq(spate_hist_count(&hp), (3 + later + 7) / 8, "process() timed 1 in 8");
		cr_assert_eq(spate_hist_count(&hl), (3 + later + 7) / 8);

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
		cr_assert_eq(atomic_load(&r->sh->pub.tail_seq) - ss->base_seq, n[sh]);
		cr_assert_eq(atomic_load(&r->sh->pub.tail) - ss->base_pos, ringbytes[sh],
			     "ring bytes of shard %u", sh);
	}
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
	cr_assert_eq(atomic_load(&dr->sh->pub.tail_seq) - dq->base_seq, failed);
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

	spate_stats_close(m);
	cr_assert_eq(spate_stats_attach(bus, &m), 0, "readable after stop, until close");
	spate_stats_close(m);
	spate_engine_close(e);
	cr_assert_eq(spate_stats_attach(bus, &m), -ENOENT, "the engine's close removes its region");
	bus_done(&b);
}

/* Histograms recorded by two tasks into the region merge into exactly what
 * one histogram of all the values holds. */
Test(stats, histograms_merge_in_region, .timeout = 30)
{
	char bus[48];
	struct spate_stats *st = NULL, *m = NULL;
	struct spate_stats_shape shape = { .n_streams = 1, .n_shards = 2, .n_consumers = 1,
					   .n_tasks = 2, .n_workers = 1 };
	struct spate_stats_tref a, b;
	struct spate_hist *all = malloc(sizeof(*all)), *merged = malloc(sizeof(*merged)),
			  *tmp = malloc(sizeof(*tmp));

	cr_assert(all && merged && tmp);
	snprintf(bus, sizeof(bus), "statsh%d", (int)getpid());
	cr_assert_eq(spate_stats_create(bus, &shape, &st), 0);
	cr_assert_eq(spate_stats_add_stream(st, "s", 2, NULL, NULL), 0);
	cr_assert_eq(spate_stats_add_consumer(st, "c", "count", 0, 1, NULL), 0);
	cr_assert_eq(spate_stats_add_consumer(st, "d", "count", 0, 1, NULL), -ENOSPC);
	cr_assert_eq(spate_stats_task_ref(st, 0, &a), 0);
	cr_assert_eq(spate_stats_task_ref(st, 1, &b), 0);
	cr_assert_eq(spate_stats_task_ref(st, 2, &b), -EINVAL);
	cr_assert_eq(spate_stats_task_ref(st, 1, &b), 0);
	spate_stats_publish(st);

	spate_hist_init(all);
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 200000; i++) {
		x ^= x << 13; /* xorshift: values over many decades */
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t v = (x % 1000000) * ((x >> 40) % 1000 + 1) / 100;
		spate_hist_record(i % 3 ? a.latency : b.latency, v);
		spate_hist_record(all, v);
	}
	cr_assert_eq(spate_stats_attach(bus, &m), 0);
	struct spate_stats_task *t0 = spate_stats_task_at(m, 0), *t1 = spate_stats_task_at(m, 1);
	spate_hist_init(merged);
	cr_assert_eq(spate_stats_hist_copy(m, t0->hist_latency, tmp), 0);
	spate_hist_merge(merged, tmp);
	cr_assert_eq(spate_stats_hist_copy(m, t1->hist_latency, tmp), 0);
	cr_assert_neq(spate_hist_count(tmp), 0);
	spate_hist_merge(merged, tmp);
	cr_assert_eq(spate_hist_count(merged), 200000);
	cr_assert_eq(spate_hist_max(merged), spate_hist_max(all));
	double dm = spate_hist_mean(merged) - spate_hist_mean(all);
	cr_assert(dm < 1e-6 && dm > -1e-6, "means differ by %g", dm);
	const double pcts[] = { 1, 10, 50, 90, 99, 99.9, 99.99 };
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
		cr_assert_eq(spate_hist_percentile(merged, pcts[i]), spate_hist_percentile(all, pcts[i]),
			     "p%g", pcts[i]);
	/* Out-of-range lookups are refused, not followed. */
	cr_assert_null(spate_stats_hist_at(m, 1u << 30));
	cr_assert_null(spate_stats_task_at(m, 2));
	cr_assert_null(spate_stats_shard_of(m, 0, 2));
	cr_assert_null(spate_stats_shard_of(m, 1, 0));
	spate_stats_close(m);
	spate_stats_close(st);
	cr_assert_eq(spate_stats_unlink(bus), -ENOENT, "the creator's close removed it");
	free(all);
	free(merged);
	free(tmp);
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
	t->hist_latency = UINT64_MAX / 2;
	struct spate_stats_tref r;
	cr_assert_eq(spate_stats_task_ref(m, 0, &r), -EINVAL);
	cr_assert_null(r.slot);
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
