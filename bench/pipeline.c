/* SPDX-License-Identifier: MIT */
/*
 * pipeline.c - `spate demo` and `spate bench pipeline`: a real pipeline in
 * one process. An embedded engine runs stream `events` (single producer) and
 * a consumer with the bundled `count` plugin, which reads every payload and
 * checks sequence continuity; a producer thread appends 64-byte records with
 * zero-copy reserve/commit in batches.
 *
 * Placement: the producer is pinned to one core and the engine's one worker
 * to another (the engine's placement.cores), so the records cross cores.
 * Latency is the engine's own sample: a record's commit time to its delivery
 * to the plugin (every 8th batch), so it is producer -> plugin. Throughput is
 * measured at saturation; latency also at an offered load below it
 * (`--rate`), because at saturation it is mostly queueing.
 *
 * Correctness is checked, not assumed: after the run the count plugin's
 * summary must show every produced record, no gap, no duplicate.
 *
 * One meaning of saturated, for `spate demo` and `spate bench pipeline`
 * alike (run_pipeline() measures both): records *delivered to the plugin*
 * per second over the run after a warm-up (the first quarter, at most
 * 0.5 s: the ring filling, the threads migrating to their cores), the
 * producer flat out. Records produced into the ring are not delivered yet
 * (a full ring holds them), so they are only checked, not counted.
 *
 * The ring_only case (bench pipeline) is the same producer thread on the
 * same core writing into a bare ring of the same size, and a reader thread
 * pinned where the engine's worker is, doing what the worker and the count
 * plugin do (peek up to consumer-batch records, walk every payload with
 * the plugin's checksum and sequence check, release), measured the same
 * way: what the engine costs over the ring alone (target >= 0.9x).
 */
#include "spate_config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/plot.h"
#include "plugins/plugin_util.h"
#include "spate/engine.h"
#include "spate/stats.h"
#include "spate/topo.h"

struct pipe_opts {
	double seconds;
	uint32_t size;        /* payload bytes */
	uint32_t batch;       /* records per producer commit */
	uint32_t cbatch;      /* consumer batch_size */
	uint64_t ring;        /* bytes per shard */
	uint64_t rate;        /* offered records/s, 0 = saturate */
	enum spate_ring_wait wait;
	int progress;         /* print a line per second */
	int counters_off;     /* run the engine without its counters region */
	unsigned overhead_runs; /* bench: pairs of runs with and without counters */
	const char *plot;     /* bench: --plot FILE.png, or NULL */
};

struct pipe_result {
	uint64_t produced, consumed, gaps, duplicates;
	double rate;          /* delivered records/s after the warm-up */
	uint64_t deliveries;  /* batches handed to the plugin */
	double secs;
	struct spate_hist lat;
	char placement[512];
	char backing[160];
	int ok;
	char why[600];
};

struct producer {
	struct spate_ring_writer *w;
	const struct pipe_opts *o;
	int cpu;
	struct spate_topo *topo;
	_Atomic int stop;
	_Atomic uint64_t produced;
	int err;
};

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	const struct pipe_opts *o = p->o;
	uint64_t bytes = (uint64_t)o->batch * spate_ring_rec_size(o->size);
	uint64_t n = 0, t0 = spate_mono_ns();
	/* Paced: the time at which batch k may go is t0 + k * batch / rate. */
	double ns_per_batch = o->rate ? 1e9 * o->batch / (double)o->rate : 0;
	uint64_t k = 0;

	if (p->topo && p->cpu >= 0)
		spate_topo_pin_self(p->topo, p->cpu);
	/* Relaxed: a stop flag; the join orders the rest. */
	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		struct spate_ring_batch b;
		if (ns_per_batch) {
			uint64_t due = t0 + (uint64_t)(ns_per_batch * (double)k);
			while (spate_mono_ns() < due)
				if (atomic_load_explicit(&p->stop, memory_order_relaxed))
					goto out;
			k++;
		}
		int rc = spate_ring_reserve(p->w, bytes, &b);
		if (rc == -EAGAIN || rc == -ETIMEDOUT) {
			spate_cpu_relax();
			continue;
		}
		if (rc < 0) {
			p->err = rc;
			break;
		}
		for (uint32_t i = 0; i < o->batch; i++) {
			uint64_t *pl = spate_ring_batch_add(&b, o->size, (uint32_t)(n + i), 0);
			pl[0] = n + i;
			for (uint32_t j = 1; j < o->size / 8; j++)
				pl[j] = n + i + j;
		}
		spate_ring_commit(p->w, &b, 0, NULL);
		n += o->batch;
		/* Relaxed: a progress counter for the printing thread. */
		atomic_store_explicit(&p->produced, n, memory_order_relaxed);
	}
out:
	return NULL;
}

static int read_summary(const char *path, struct pipe_result *r)
{
	json_object *j = json_object_from_file(path), *v;

	if (!j)
		return -ENOENT;
	if (json_object_object_get_ex(j, "records", &v))
		r->consumed = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(j, "gaps", &v))
		r->gaps = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(j, "duplicates", &v))
		r->duplicates = (uint64_t)json_object_get_int64(v);
	json_object_put(j);
	return 0;
}

/* Not counted at the start of a run: the first quarter, at most 0.5 s. */
static uint64_t warm_of(double seconds)
{
	double w = seconds / 4 < 0.5 ? seconds / 4 : 0.5;
	return (uint64_t)(w * 1e9);
}

static int run_pipeline(const struct pipe_opts *o, struct pipe_result *r)
{
	char bus[32], dir[64], summary[128], sumfile[160], err[512];
	struct spate_config *cfg = NULL;
	struct spate_config_stream *cs;
	struct spate_config_consumer *cc;
	struct spate_engine *e = NULL;
	struct spate_producer *prod = NULL;
	struct spate_topo *topo = NULL;
	struct spate_topo_placement pl;
	struct producer p = { .o = o, .cpu = -1 };
	uint32_t worker_cpu;
	pthread_t th;
	int rc;

	memset(r, 0, sizeof(*r));
	spate_hist_init(&r->lat);
	snprintf(bus, sizeof(bus), "pipe%d", (int)getpid());
	snprintf(dir, sizeof(dir), "/tmp/spate-%s-XXXXXX", bus);
	if (!mkdtemp(dir))
		return -errno;
	snprintf(summary, sizeof(summary), "%s/count.json", dir);
	snprintf(sumfile, sizeof(sumfile), "%s.shard0", summary);

	rc = spate_config_new_default(bus, &cfg);
	if (rc < 0)
		goto out;
	snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s", dir);
	if ((rc = spate_config_add_stream(cfg, "events", &cs)) < 0)
		goto out;
	cs->shards = 1;
	cs->ring_size = o->ring;
	cs->producers = SPATE_CONFIG_PRODUCERS_SINGLE;
	cs->full = SPATE_CONFIG_FULL_WAIT;
	if ((rc = spate_config_add_consumer(cfg, "count", "events", "count", &cc)) < 0)
		goto out;
	cc->batch_size = o->cbatch;
	cc->wait = o->wait;
	cc->starting_position = SPATE_CONFIG_START_TRIM_HORIZON;
	if (o->counters_off)
		cfg->metrics.counters = SPATE_CONFIG_COUNTERS_OFF;
	if ((rc = spate_config_consumer_set_option(cc, "summary", summary)) < 0)
		goto out;

	/* Two cores sharing a cache: producer on one, the worker on the other. */
	if (spate_topo_open(&topo) == 0 && spate_topo_place(topo, 2, &pl) == 0) {
		p.cpu = pl.cpu[0];
		worker_cpu = (uint32_t)pl.cpu[1];
		snprintf(r->placement, sizeof(r->placement), "producer %s; worker on the other",
			 pl.desc);
		cfg->placement.cores = malloc(sizeof(uint32_t));
		if (cfg->placement.cores) {
			cfg->placement.cores[0] = worker_cpu;
			cfg->placement.n_cores = 1;
		}
	} else {
		snprintf(r->placement, sizeof(r->placement), "unpinned (no topology)");
	}
	p.topo = topo;

	rc = spate_engine_open(cfg, &e, err, sizeof(err));
	if (rc < 0) {
		snprintf(r->why, sizeof(r->why), "%s", err);
		goto out;
	}
	snprintf(r->backing, sizeof(r->backing), "%s",
		 spate_shm_backing_str(spate_stream_shm(spate_engine_stream(e, "events"))));
	rc = spate_producer_open(spate_engine_stream(e, "events"), o->wait, SPATE_PRODUCER_F_FAIL_FULL,
				 &prod);
	if (rc < 0)
		goto out;
	p.w = spate_producer_writer(prod, 0);
	rc = spate_engine_start(e);
	if (rc < 0)
		goto out;

	uint64_t t0 = spate_mono_ns();
	rc = -pthread_create(&th, NULL, producer_main, &p);
	if (rc < 0)
		goto out_stop;
	uint64_t last = 0, last_t = t0, warm_ns = warm_of(o->seconds), c0 = 0, tw0 = 0;
	int warmed = 0;
	while (spate_mono_ns() - t0 < (uint64_t)(o->seconds * 1e9)) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		uint64_t now = spate_mono_ns();
		if (!warmed && now - t0 >= warm_ns) {
			struct spate_consumer_stats st;
			spate_engine_consumer_stats(e, "count", &st);
			c0 = last = st.records;
			/* now, not a later clock read: the per-second line
			 * below computes now - last_t in this same round. */
			tw0 = last_t = now;
			warmed = 1;
		}
		if (warmed && o->progress && now - last_t >= 1000000000ull) {
			struct spate_consumer_stats st;
			spate_engine_consumer_stats(e, "count", &st);
			printf("  %5.1f s  delivered %7.1f M rec/s  %12" PRIu64 " records  lag %8" PRIu64 "\n",
			       (double)(now - t0) / 1e9,
			       (double)(st.records - last) / ((double)(now - last_t) / 1e9) / 1e6, st.records,
			       st.lag_records);
			fflush(stdout);
			last = st.records;
			last_t = now;
		}
	}
	{
		struct spate_consumer_stats st;
		spate_engine_consumer_stats(e, "count", &st);
		uint64_t tw1 = spate_mono_ns();
		if (warmed && tw1 > tw0)
			r->rate = (double)(st.records - c0) / ((double)(tw1 - tw0) / 1e9);
	}
	atomic_store_explicit(&p.stop, 1, memory_order_relaxed);
	pthread_join(th, NULL);
	r->secs = (double)(spate_mono_ns() - t0) / 1e9;
	r->produced = atomic_load_explicit(&p.produced, memory_order_relaxed);
	/* Let the consumer drain what is in the ring (at most 5 s). */
	for (int i = 0; i < 500; i++) {
		struct spate_consumer_stats st;
		spate_engine_consumer_stats(e, "count", &st);
		if (st.records >= r->produced || st.state != SPATE_CONSUMER_RUNNING)
			break;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (p.err)
		rc = p.err;
out_stop:
	spate_engine_stop(e);
	spate_engine_consumer_latency(e, "count", &r->lat);
	struct spate_consumer_stats cst;
	if (spate_engine_consumer_stats(e, "count", &cst) == 0)
		r->deliveries = cst.batches;
	if (rc == 0 && read_summary(sumfile, r) < 0)
		snprintf(r->why, sizeof(r->why), "no summary from the count plugin at %s", sumfile);
	else if (rc == 0 && (r->consumed != r->produced || r->gaps || r->duplicates))
		snprintf(r->why, sizeof(r->why),
			 "count saw %" PRIu64 " of %" PRIu64 " records, %" PRIu64 " gaps, %" PRIu64
			 " duplicates",
			 r->consumed, r->produced, r->gaps, r->duplicates);
	else if (rc == 0)
		r->ok = 1;
out:
	if (rc < 0 && !r->why[0])
		snprintf(r->why, sizeof(r->why), "%s", strerror(-rc));
	spate_producer_close(prod);
	spate_engine_close(e);
	spate_stream_unlink(bus, "events");
	spate_stats_unlink(bus);
	spate_config_free(cfg);
	spate_topo_close(topo);
	unlink(sumfile);
	char ck[160];
	snprintf(ck, sizeof(ck), "%s/events.count.ckpt", dir);
	unlink(ck);
	snprintf(ck, sizeof(ck), "%s/" SPATE_ENGINE_LOCK_FILE, dir);
	unlink(ck);
	rmdir(dir);
	return rc;
}

/* The ring_only reader: what the engine's worker and the count plugin do,
 * on a bare ring. */
struct ro_reader {
	struct spate_ring_reader *rd;
	const struct pipe_opts *o;
	struct spate_topo *topo;
	int cpu;
	_Atomic int stop;
	_Atomic uint64_t records;
	uint64_t gaps, checksum;
	struct spate_hist lat; /* commit -> read, every 8th take, as the worker samples */
	int err;
};

static void *ro_reader_main(void *arg)
{
	struct ro_reader *x = arg;
	struct spate_ring_rec *recs = calloc(x->o->cbatch, sizeof(*recs));
	struct pu_seq seq = { 0 };
	uint64_t n = 0, sum = 0, takes = 0;

	if (!recs) {
		x->err = -ENOMEM;
		return NULL;
	}
	if (x->topo && x->cpu >= 0)
		spate_topo_pin_self(x->topo, x->cpu);
	/* Relaxed: a stop flag; the join orders the rest. */
	while (!atomic_load_explicit(&x->stop, memory_order_relaxed)) {
		int got = spate_ring_peek(x->rd, recs, x->o->cbatch, UINT64_MAX);
		if (got == -EAGAIN || got == 0) {
			spate_cpu_relax();
			continue;
		}
		if (got < 0) {
			x->err = got;
			break;
		}
		if ((++takes & 7) == 0) {
			uint64_t now = spate_now_ns();
			spate_hist_record(&x->lat, now > recs[0].ts ? now - recs[0].ts : 0);
		}
		for (int i = 0; i < got; i++)
			if (pu_seq_see(&seq, recs[i].seq))
				sum += pu_payload_sum(recs[i].data, recs[i].len, PU_TOUCH_ALL);
		spate_ring_release(x->rd, (unsigned)got);
		n += (uint64_t)got;
		/* Relaxed: a progress counter read by the timing thread. */
		atomic_store_explicit(&x->records, n, memory_order_relaxed);
	}
	x->gaps = seq.gaps;
	x->checksum = sum;
	free(recs);
	return NULL;
}

/* The same producer into a bare ring of the same size, read as the worker
 * and the count plugin read, on the same two cores; measured as
 * run_pipeline() measures (delivered records/s after the warm-up). */
static int run_ring_only(const struct pipe_opts *o, struct pipe_result *r)
{
	struct spate_ring_params rp = { .capacity = o->ring };
	struct spate_ring *ring = NULL;
	struct spate_topo *topo = NULL;
	struct spate_topo_placement pl;
	struct producer p = { .o = o, .cpu = -1 };
	struct ro_reader x = { .o = o, .cpu = -1 };
	pthread_t tp, tr;
	int rc, started = 0;
	size_t msz = spate_ring_memsize(&rp);
	void *mem = NULL;

	memset(r, 0, sizeof(*r));
	spate_hist_init(&r->lat);
	spate_hist_init(&x.lat);
	if (posix_memalign(&mem, 1u << 21, msz))
		return -ENOMEM;
	(void)madvise(mem, msz, MADV_HUGEPAGE); /* as the stream's huge pages */
	memset(mem, 0, msz);
	if (spate_topo_open(&topo) == 0 && spate_topo_place(topo, 2, &pl) == 0) {
		p.cpu = pl.cpu[0];
		x.cpu = pl.cpu[1];
		snprintf(r->placement, sizeof(r->placement), "producer %s; reader on the other", pl.desc);
	}
	p.topo = x.topo = topo;
	if ((rc = spate_ring_format(mem, msz, &rp)) < 0 || (rc = spate_ring_open_mem(mem, msz, &ring)) < 0 ||
	    (rc = spate_ring_writer_open(ring, o->wait, &p.w)) < 0 ||
	    (rc = spate_ring_reader_open(ring, SPATE_RING_START_OLDEST, o->wait, &x.rd)) < 0)
		goto out;
	if ((rc = -pthread_create(&tr, NULL, ro_reader_main, &x)) < 0)
		goto out;
	if ((rc = -pthread_create(&tp, NULL, producer_main, &p)) < 0) {
		atomic_store_explicit(&x.stop, 1, memory_order_relaxed);
		pthread_join(tr, NULL);
		goto out;
	}
	started = 1;
	uint64_t t0 = spate_mono_ns(), warm = warm_of(o->seconds);
	struct timespec ts = { (time_t)(warm / 1000000000u), (long)(warm % 1000000000u) };
	nanosleep(&ts, NULL);
	uint64_t c0 = atomic_load_explicit(&x.records, memory_order_relaxed), tw0 = spate_mono_ns();
	uint64_t rest = (uint64_t)(o->seconds * 1e9) > warm ? (uint64_t)(o->seconds * 1e9) - warm : 0;
	ts = (struct timespec){ (time_t)(rest / 1000000000u), (long)(rest % 1000000000u) };
	nanosleep(&ts, NULL);
	uint64_t c1 = atomic_load_explicit(&x.records, memory_order_relaxed), tw1 = spate_mono_ns();
	r->rate = tw1 > tw0 ? (double)(c1 - c0) / ((double)(tw1 - tw0) / 1e9) : 0;
	atomic_store_explicit(&p.stop, 1, memory_order_relaxed);
	pthread_join(tp, NULL);
	r->produced = atomic_load_explicit(&p.produced, memory_order_relaxed);
	/* Drain (at most 5 s), then stop the reader. */
	for (int i = 0; i < 500 && atomic_load_explicit(&x.records, memory_order_relaxed) < r->produced; i++) {
		struct timespec d = { 0, 10 * 1000 * 1000 };
		nanosleep(&d, NULL);
	}
	atomic_store_explicit(&x.stop, 1, memory_order_relaxed);
	pthread_join(tr, NULL);
	r->secs = (double)(spate_mono_ns() - t0) / 1e9;
	r->consumed = atomic_load_explicit(&x.records, memory_order_relaxed);
	r->gaps = x.gaps;
	r->lat = x.lat;
	if (p.err || x.err)
		rc = p.err ? p.err : x.err;
	else if (r->consumed != r->produced || r->gaps)
		snprintf(r->why, sizeof(r->why), "reader saw %" PRIu64 " of %" PRIu64 " records, %" PRIu64 " gaps",
			 r->consumed, r->produced, r->gaps);
	else
		r->ok = 1;
out:
	(void)started;
	if (rc < 0 && !r->why[0])
		snprintf(r->why, sizeof(r->why), "%s", strerror(-rc));
	spate_ring_reader_close(x.rd);
	spate_ring_writer_close(p.w);
	spate_ring_close(ring);
	spate_topo_close(topo);
	free(mem);
	return rc;
}

/*
 * What the counters cost per delivery, measured in a tight loop on a real
 * region: everything the engine does per delivery (consumer.c, the worker
 * round), with the 1-in-8 sampled deliveries' two clock reads and latency
 * and process() records. The best of 5 repetitions of 2^20 deliveries, in
 * ns. Independent of the noise of a shared machine, unlike the A/B
 * throughput pairs.
 */
static double counters_ns_per_delivery(void)
{
	char bus[32];
	struct spate_stats *st = NULL;
	struct spate_stats_shape shape = { .n_streams = 1, .n_shards = 1, .n_consumers = 1,
					   .n_tasks = 1, .n_workers = 1 };
	struct spate_stats_tref r;
	struct spate_stats_wprev wp = { 0 };
	double best = 0;

	snprintf(bus, sizeof(bus), "pipecost%d", (int)getpid());
	if (spate_stats_create(bus, &shape, &st) < 0)
		return 0;
	if (spate_stats_add_stream(st, "events", 1, NULL, NULL) < 0 ||
	    spate_stats_add_consumer(st, "count", "count", 0, 1, NULL) < 0 ||
	    spate_stats_task_ref(st, 0, &r) < 0)
		goto out;
	struct spate_stats_worker *w = spate_stats_worker_at(st, 0);
	const uint64_t n = 1u << 20;
	for (int rep = 0; rep < 5; rep++) {
		uint64_t t0 = spate_mono_ns();
		for (uint64_t i = 0; i < n; i++) {
			uint64_t ns = 0;
			if ((i & 7) == 0) {
				uint64_t a = spate_now_ns();
				spate_hist_record_mw(r.latency, a & 0xffff); /* as consumer.c */
				uint64_t b = spate_mono_ns();
				ns = spate_mono_ns() - b + 1;
			}
			spate_stats_task_delivery(&r, 1024, ns, false);
			spate_stats_task_done(r.slot, 1024, 65536, i);
			spate_stats_set(&r.slot->checkpoint, i * 1024);
			spate_stats_worker_round(w, &wp, t0 + i, true);
		}
		double d = (double)(spate_mono_ns() - t0) / (double)n;
		if (rep == 0 || d < best)
			best = d;
	}
out:
	spate_stats_close(st);
	spate_stats_unlink(bus);
	return best;
}

static int parse_common(int argc, char **argv, struct pipe_opts *o, int *json, const char *cmd)
{
	static const struct option lo[] = {
		{ "seconds", required_argument, 0, 's' }, { "record-size", required_argument, 0, 'r' },
		{ "batch", required_argument, 0, 'b' },   { "consumer-batch", required_argument, 0, 'c' },
		{ "ring-bytes", required_argument, 0, 'R' }, { "rate", required_argument, 0, 'o' },
		{ "wait", required_argument, 0, 'w' },    { "json", no_argument, 0, 'j' },
		{ "overhead-runs", required_argument, 0, 'O' }, { "plot", required_argument, 0, 'P' },
		{ "help", no_argument, 0, 'h' },          { 0, 0, 0, 0 },
	};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's': o->seconds = atof(optarg); break;
		case 'r': o->size = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'b': o->batch = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'c': o->cbatch = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'R': o->ring = strtoull(optarg, NULL, 0); break;
		case 'o': o->rate = (uint64_t)atof(optarg); break;
		case 'w':
			o->wait = !strcmp(optarg, "busy") ? SPATE_RING_WAIT_BUSY
				  : !strcmp(optarg, "yield") ? SPATE_RING_WAIT_YIELD : SPATE_RING_WAIT_BLOCK;
			break;
		case 'j': if (json) *json = 1; break;
		case 'O': o->overhead_runs = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'P': o->plot = optarg; break;
		case 'h':
		default:
			printf("usage: spate %s [--seconds S] [--record-size N] [--batch N] "
			       "[--consumer-batch N] [--ring-bytes B] [--rate R] [--wait busy|yield|block]%s\n",
			       cmd, json ? " [--json] [--overhead-runs N] [--plot FILE.png]" : "");
			return c == 'h' ? 1 : -EINVAL;
		}
	}
	if (o->size < 8 || o->size % 8 || !o->batch || !o->cbatch || o->seconds <= 0 ||
	    o->ring < 65536 || (o->ring & (o->ring - 1))) {
		fprintf(stderr, "spate %s: record size must be a multiple of 8 (>= 8), batches >= 1, "
				"seconds > 0, ring a power of two >= 64 KiB\n", cmd);
		return -EINVAL;
	}
	return 0;
}

static void print_result(const char *what, const struct pipe_opts *o, const struct pipe_result *r)
{
	printf("%-22s %8.1f M rec/s %7.2f GB/s   p50 %7" PRIu64 " ns  p99 %8" PRIu64
	       " ns  p99.9 %9" PRIu64 " ns  max %9" PRIu64 " ns  %s\n",
	       what, r->rate / 1e6, r->rate * o->size / 1e9, spate_hist_percentile(&r->lat, 50),
	       spate_hist_percentile(&r->lat, 99), spate_hist_percentile(&r->lat, 99.9),
	       spate_hist_max(&r->lat), r->ok ? "checked: every record, in order" : r->why);
}

int spate_demo_main(int argc, char **argv)
{
	struct pipe_opts o = { .seconds = 10, .size = 64, .batch = 32, .cbatch = 1024,
			       .ring = 1u << 20, .wait = SPATE_RING_WAIT_BUSY, .progress = 1 };
	struct pipe_result r, low;
	int rc = parse_common(argc, argv, &o, NULL, "demo");

	if (rc)
		return rc > 0 ? 0 : rc;
	/* Most of the time flat out (throughput), the rest at a tenth of that
	 * rate (latency below saturation, where it is not queueing). */
	struct pipe_opts sat = o, lo = o;
	sat.seconds = o.seconds * 0.7;
	lo.seconds = o.seconds - sat.seconds;
	printf("spate demo: producer -> stream `events` (1 shard, %" PRIu64 " KiB ring) -> consumer "
	       "`count` (plugin count.so: reads every payload, checks sequence continuity)\n"
	       "  %u-byte records, producer batches of %u, consumer batches up to %u; "
	       "%.1f s flat out, then %.1f s at a tenth of that rate\n",
	       o.ring >> 10, o.size, o.batch, o.cbatch, sat.seconds, lo.seconds);
	rc = run_pipeline(&sat, &r);
	printf("  placement: %s\n  memory: %s\n", r.placement, r.backing);
	if (rc < 0 || !r.ok) {
		fprintf(stderr, "spate demo: FAILED: %s\n", r.why);
		return rc < 0 ? rc : -EIO;
	}
	lo.rate = (uint64_t)(r.rate * 0.1);
	lo.progress = 0;
	rc = run_pipeline(&lo, &low);
	if (rc < 0 || !low.ok) {
		fprintf(stderr, "spate demo: FAILED: %s\n", low.why);
		return rc < 0 ? rc : -EIO;
	}
	printf("\n");
	print_result("flat out:", &sat, &r);
	char what[64];
	snprintf(what, sizeof(what), "at %.1f M rec/s:", (double)lo.rate / 1e6);
	print_result(what, &lo, &low);
	printf("  latency: a record's commit to its delivery to the plugin (sampled); flat out it "
	       "is mostly time queued in the full ring\n");
	return 0;
}

/* --plot: the latency distributions (saturated and at the offered rate) and
 * the counters A/B pairs, through gnuplot. */
static int plot_pipeline(const char *png, const struct pipe_result *sat,
			 const struct pipe_result *low, uint64_t low_rate, const double *rw,
			 const double *rwo, unsigned nov)
{
	struct spate_plot *p = NULL;
	char err[256], name[64];
	int rc = spate_plot_open(&p, png, 1, nov ? 2 : 1,
				 "spate bench pipeline: producer -> stream -> count plugin", err,
				 sizeof(err));

	if (rc < 0)
		goto fail;
	spate_plot_panel(p, "commit -> plugin latency (sampled)", "percentile", "microseconds",
			 SPATE_PLOT_PCT_X | SPATE_PLOT_LOGY);
	spate_plot_hist(p, "saturated", &sat->lat);
	snprintf(name, sizeof(name), "offered %.1f M rec/s", (double)low_rate / 1e6);
	spate_plot_hist(p, name, &low->lat);
	if (nov) {
		double *x = calloc(nov, sizeof(double)), *yw = calloc(nov, sizeof(double)),
		       *ywo = calloc(nov, sizeof(double));
		if (!x || !yw || !ywo) {
			free(x);
			free(yw);
			free(ywo);
			spate_plot_discard(p);
			return -ENOMEM;
		}
		for (unsigned i = 0; i < nov; i++) {
			x[i] = i + 1;
			yw[i] = rw[i] / 1e6;
			ywo[i] = rwo[i] / 1e6;
		}
		spate_plot_panel(p, "saturated throughput, counters on/off pairs", "pair", "M rec/s",
				 0);
		spate_plot_series(p, "with counters", x, yw, nov);
		spate_plot_series(p, "without", x, ywo, nov);
		free(x);
		free(yw);
		free(ywo);
	}
	rc = spate_plot_close(p, err, sizeof(err));
	if (rc == 0)
		return 0;
fail:
	fprintf(stderr, "spate bench pipeline: --plot %s: %s\n", png, err);
	return rc;
}

int spate_bench_pipeline_main(int argc, char **argv)
{
	struct pipe_opts o = { .seconds = 3, .size = 64, .batch = 32, .cbatch = 1024,
			       .ring = 1u << 20, .wait = SPATE_RING_WAIT_BUSY, .overhead_runs = 3 };
	int json = 0, rc = parse_common(argc, argv, &o, &json, "bench pipeline");
	struct pipe_result sat, low;

	if (rc)
		return rc > 0 ? 0 : rc;
	if (o.plot) {
		char err[256];
		if (spate_plot_available(err, sizeof(err)) < 0) {
			fprintf(stderr, "spate bench pipeline: --plot: %s\n", err);
			return -ENOENT;
		}
	}
	double rtt = spate_bench_c2c_rtt_ns(-1, -1);
	rc = run_pipeline(&o, &sat);
	if (rc < 0 || !sat.ok) {
		fprintf(stderr, "spate bench pipeline: FAILED: %s\n", sat.why);
		return rc < 0 ? rc : -EIO;
	}
	/* ring_only interleaved with the saturated pipeline runs (the first,
	 * and the counters-on run of each pair below): medians of each. */
	double ro[16], pl_on[16];
	unsigned nro = 0, npl = 0;
	struct pipe_result ror;
	pl_on[npl++] = sat.rate;
	rc = run_ring_only(&o, &ror);
	if (rc < 0 || !ror.ok) {
		fprintf(stderr, "spate bench pipeline: FAILED (ring_only): %s\n", ror.why);
		return rc < 0 ? rc : -EIO;
	}
	ro[nro++] = ror.rate;
	/* The cost of the counters region: pairs of saturated runs without and
	 * with it, in alternating order so drift on a shared machine hits both
	 * sides alike; medians and the per-pair ratio's median. */
	unsigned nov = o.overhead_runs;
	double *rw = calloc(nov + 1, sizeof(double)), *rwo = calloc(nov + 1, sizeof(double));
	double *ratio = calloc(nov + 1, sizeof(double));
	if (!rw || !rwo || !ratio) {
		free(rw);
		free(rwo);
		free(ratio);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < nov; i++) {
		struct pipe_result a;
		for (int k = 0; k < 2; k++) {
			struct pipe_opts x = o;
			x.counters_off = (int)((i + (unsigned)k) % 2 == 0); /* off first on even pairs */
			rc = run_pipeline(&x, &a);
			if (rc < 0 || !a.ok) {
				fprintf(stderr, "spate bench pipeline: FAILED (counters %s): %s\n",
					x.counters_off ? "off" : "on", a.why);
				free(rw);
				free(rwo);
				free(ratio);
				return rc < 0 ? rc : -EIO;
			}
			(x.counters_off ? rwo : rw)[i] = a.rate;
		}
		ratio[i] = rw[i] / rwo[i];
		if (npl < 16)
			pl_on[npl++] = rw[i];
		if (nro < 16 && run_ring_only(&o, &ror) == 0 && ror.ok)
			ro[nro++] = ror.rate;
	}
	double med_ro = spate_bench_median(ro, nro), med_pl = spate_bench_median(pl_on, npl);
	double med_w = spate_bench_median(rw, nov), med_wo = spate_bench_median(rwo, nov);
	double med_ratio = spate_bench_median(ratio, nov);
	/* The precise figure: cost per delivery times deliveries per second of
	 * the saturated run, as a share of the worker's core. */
	double ns_del = counters_ns_per_delivery();
	double del_per_s = (double)sat.deliveries / sat.secs;
	double est_pct = ns_del * del_per_s / 1e9 * 100;

	/* Latency below saturation: offer 10% of what saturated, unless given. */
	struct pipe_opts lo = o;
	if (!lo.rate)
		lo.rate = (uint64_t)(sat.rate * 0.1);
	rc = run_pipeline(&lo, &low);
	if (rc < 0 || !low.ok) {
		fprintf(stderr, "spate bench pipeline: FAILED: %s\n", low.why);
		free(rw);
		free(rwo);
		free(ratio);
		return rc < 0 ? rc : -EIO;
	}
	if (o.plot && (rc = plot_pipeline(o.plot, &sat, &low, lo.rate, rw, rwo, nov)) < 0) {
		free(rw);
		free(rwo);
		free(ratio);
		return rc;
	}
	if (!json) {
		printf("spate bench pipeline: producer -> 1-shard stream -> count plugin (every payload "
		       "read, sequence continuity checked)\n  %s\n  memory: %s\n", sat.placement,
		       sat.backing);
		print_result("saturated", &o, &sat);
		char what[64];
		snprintf(what, sizeof(what), "offered %.1f M rec/s", (double)lo.rate / 1e6);
		print_result(what, &lo, &low);
		printf("ring_only (same producer, bare ring, reader as worker + count): median %.1f M rec/s of %u; "
		       "pipeline median %.1f M rec/s of %u: %.2fx (target 0.9x); cross-core round trip %.0f ns\n",
		       med_ro / 1e6, nro, med_pl / 1e6, npl, med_ro > 0 ? med_pl / med_ro : 0, rtt);
		if (nov)
			printf("counters region: %u pair(s) of saturated runs: median %.2f M rec/s with, "
			       "%.2f M rec/s without; per-pair ratio median %.3f (%.1f%% %s)\n",
			       nov, med_w / 1e6, med_wo / 1e6, med_ratio,
			       (med_ratio <= 1 ? 1 - med_ratio : med_ratio - 1) * 100,
			       med_ratio <= 1 ? "cost" : "faster with");
		printf("counters region: %.1f ns per delivery x %.0f deliveries/s (%.0f records each) "
		       "= %.3f%% of the worker's core\n",
		       ns_del, del_per_s, sat.deliveries ? (double)sat.produced / (double)sat.deliveries : 0,
		       est_pct);
		free(rw);
		free(rwo);
		free(ratio);
		return 0;
	}
	json_object *root = json_object_new_object(), *cases = json_object_new_array();
	const struct pipe_result *rs[2] = { &sat, &low };
	const struct pipe_opts *os[2] = { &o, &lo };
	for (int i = 0; i < 2; i++) {
		json_object *c = json_object_new_object();
		json_object_object_add(c, "impl", json_object_new_string("spate"));
		json_object_object_add(c, "load", json_object_new_string(i ? "offered" : "saturated"));
		json_object_object_add(c, "offered_records_per_sec", json_object_new_int64((int64_t)os[i]->rate));
		json_object_object_add(c, "record_size", json_object_new_int((int)o.size));
		json_object_object_add(c, "batch", json_object_new_int((int)o.batch));
		json_object_object_add(c, "consumer_batch", json_object_new_int((int)o.cbatch));
		json_object_object_add(c, "records", json_object_new_int64((int64_t)rs[i]->produced));
		json_object_object_add(c, "seconds", json_object_new_double(rs[i]->secs));
		json_object_object_add(c, "records_per_sec", json_object_new_double(rs[i]->rate));
		json_object_object_add(c, "p50_ns", json_object_new_int64((int64_t)spate_hist_percentile(&rs[i]->lat, 50)));
		json_object_object_add(c, "p99_ns", json_object_new_int64((int64_t)spate_hist_percentile(&rs[i]->lat, 99)));
		json_object_object_add(c, "p999_ns", json_object_new_int64((int64_t)spate_hist_percentile(&rs[i]->lat, 99.9)));
		json_object_object_add(c, "max_ns", json_object_new_int64((int64_t)spate_hist_max(&rs[i]->lat)));
		json_object_object_add(c, "checked", json_object_new_boolean(rs[i]->ok));
		json_object_array_add(cases, c);
	}
	{
		json_object *c = json_object_new_object(), *a = json_object_new_array();
		json_object_object_add(c, "impl", json_object_new_string("ring_only"));
		json_object_object_add(c, "load", json_object_new_string("saturated"));
		json_object_object_add(c, "record_size", json_object_new_int((int)o.size));
		json_object_object_add(c, "batch", json_object_new_int((int)o.batch));
		json_object_object_add(c, "consumer_batch", json_object_new_int((int)o.cbatch));
		json_object_object_add(c, "records_per_sec", json_object_new_double(med_ro));
		json_object_object_add(c, "p50_ns", json_object_new_int64((int64_t)spate_hist_percentile(&ror.lat, 50)));
		json_object_object_add(c, "p99_ns", json_object_new_int64((int64_t)spate_hist_percentile(&ror.lat, 99)));
		json_object_object_add(c, "p999_ns", json_object_new_int64((int64_t)spate_hist_percentile(&ror.lat, 99.9)));
		for (unsigned i = 0; i < nro; i++)
			json_object_array_add(a, json_object_new_double(ro[i]));
		json_object_object_add(c, "runs_records_per_sec", a);
		json_object_object_add(c, "checked", json_object_new_boolean(nro > 0));
		json_object_array_add(cases, c);
	}
	json_object_object_add(root, "pipeline_median_records_per_sec", json_object_new_double(med_pl));
	json_object_object_add(root, "ring_only_median_records_per_sec", json_object_new_double(med_ro));
	json_object_object_add(root, "pipeline_vs_ring_only", json_object_new_double(med_ro > 0 ? med_pl / med_ro : 0));
	json_object_object_add(root, "target_pipeline_vs_ring_only", json_object_new_double(0.9));
	json_object_object_add(root, "saturated", json_object_new_string("records delivered to the plugin (or read) per second after the warm-up, producer flat out"));
	json_object_object_add(root, "cross_core_rtt_ns", json_object_new_double(rtt));
	json_object_object_add(root, "placement", json_object_new_string(sat.placement));
	json_object_object_add(root, "memory", json_object_new_string(sat.backing));
	json_object_object_add(root, "cases", cases);
	json_object *ov = json_object_new_object(), *aw = json_object_new_array(),
		    *awo = json_object_new_array();
	for (unsigned i = 0; i < nov; i++) {
		json_object_array_add(aw, json_object_new_double(rw[i]));
		json_object_array_add(awo, json_object_new_double(rwo[i]));
	}
	json_object_object_add(ov, "pairs", json_object_new_int((int)nov));
	json_object_object_add(ov, "seconds_each", json_object_new_double(o.seconds));
	json_object_object_add(ov, "with_records_per_sec", aw);
	json_object_object_add(ov, "without_records_per_sec", awo);
	json_object_object_add(ov, "with_median", json_object_new_double(med_w));
	json_object_object_add(ov, "without_median", json_object_new_double(med_wo));
	json_object_object_add(ov, "ratio_median", json_object_new_double(med_ratio));
	json_object_object_add(ov, "overhead_pct", json_object_new_double((1 - med_ratio) * 100));
	json_object_object_add(ov, "ns_per_delivery", json_object_new_double(ns_del));
	json_object_object_add(ov, "deliveries_per_sec", json_object_new_double(del_per_s));
	json_object_object_add(ov, "records_per_delivery",
			       json_object_new_double(sat.deliveries ? (double)sat.produced /
								       (double)sat.deliveries : 0));
	json_object_object_add(ov, "estimated_overhead_pct", json_object_new_double(est_pct));
	json_object_object_add(root, "counters_overhead", ov);
	free(rw);
	free(rwo);
	free(ratio);
	printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	json_object_put(root);
	return 0;
}
