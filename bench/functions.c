/* SPDX-License-Identifier: MIT */
/*
 * functions.c - `spate bench functions`: a consumer's throughput and
 * invocation overhead by where its code runs (issue 12, item 7):
 *   impl inprocess, runtime c  the bundled `count` plugin in the engine;
 *   impl isolated,  runtime c  the same .so with `isolation: process`
 *                              (a supervised spate-isolate child reading the
 *                              ring read-only, engine/functions/isolate.c);
 *   impl function, runtime ... added by the functions door through
 *                              spate_bench_functions_fn() (bench.h), when
 *                              it is linked in.
 *
 * Method. Each run opens an embedded engine with one stream (1 shard) and
 * one consumer (batch_size --batch, trim_horizon), starts it (the plugin's
 * init, for isolated the child's cold start, happens there) with --records
 * records of --size bytes already in the ring; the run's time is from the
 * start to the consumer having handled every record, minus the plugin's
 * init (the cold start, reported apart), so records_per_sec is the
 * consumer's drain rate. invocations_per_sec is its batches per
 * second. invoke_p50/p99: isolated, the supervisor's invocation histogram
 * (engine side: descriptors written, BATCH sent, RESULT received, plugin
 * included); in-process, the consumer's process() histogram (1 delivery in
 * 8 timed). cold_start_p50: isolated, spawn -> the plugin's init done in the
 * child (the supervisor's init histogram); in-process, the plugin's init
 * (the consumer's cold start). The impls alternate, --runs times each; the
 * figures are the medians, and isolated_vs_inprocess is the median of the
 * per-pair ratios (same run, same machine load).
 *
 * Limits: one shard, one lane; `count` does little per record, so this is
 * the worst case for the isolation's fixed cost per batch.
 */
#include "spate_config.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_impl.h"
#include "engine/functions/isolate.h"
#include "spate/engine.h"
#include "spate/stats.h"

struct fb_opts {
	uint32_t records, size, batch;
	unsigned runs;
	int json, c_only, fn_only;
};

struct fb_result {
	double records_per_sec, invocations_per_sec;
	uint64_t invoke_p50, invoke_p99, cold_p50;
	char why[256];
};

struct fb_producer {
	struct spate_producer *p;
	uint32_t n, size;
	int err;
};

static void *fb_produce(void *arg)
{
	struct fb_producer *x = arg;
	char *buf = calloc(1, x->size ? x->size : 1);
	uint32_t key = 0;

	if (!buf) {
		x->err = -ENOMEM;
		return NULL;
	}
	for (uint32_t i = 0; i < x->n; i++) {
		memcpy(buf, &i, x->size < 4 ? x->size : 4);
		int rc = spate_put(x->p, &key, sizeof(key), buf, x->size, NULL);
		if (rc < 0) {
			x->err = rc;
			break;
		}
	}
	free(buf);
	return NULL;
}

uint64_t spate_bench_wait_consumer(struct spate_engine *e, const char *name, uint64_t records,
				   uint64_t t0, struct spate_consumer_stats *st)
{
	const struct timespec ms = { 0, 1000000L };

	for (;;) {
		spate_engine_consumer_stats(e, name, st);
		if (st->records >= records)
			return spate_bench_mono_ns();
		if (st->state != SPATE_CONSUMER_RUNNING || spate_bench_mono_ns() - t0 > 120000000000ull)
			return 0;
		nanosleep(&ms, NULL);
	}
}

/* Remove the run's state directory: its files (lock, checkpoints,
 * attempts) and empty sub-directories, then itself. */
static void rm_state_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[PATH_MAX];

	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) < (int)sizeof(p) && unlink(p) < 0)
			rmdir(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static int fb_run(const struct fb_opts *o, int isolated, struct fb_result *r)
{
	char bus[32], dir[64], err[512];
	struct spate_config *cfg = NULL;
	struct spate_config_stream *cs;
	struct spate_config_consumer *cc;
	struct spate_engine *e = NULL;
	struct fb_producer pr = { .n = o->records, .size = o->size };
	struct spate_stats_view *v = NULL;
	int rc;

	memset(r, 0, sizeof(*r));
	snprintf(bus, sizeof(bus), "fnb%d%c", (int)getpid(), isolated ? 'i' : 'p');
	snprintf(dir, sizeof(dir), "/tmp/spate-%s-XXXXXX", bus);
	if (!mkdtemp(dir))
		return -errno;
	rc = spate_config_new_default(bus, &cfg);
	if (rc < 0)
		goto out;
	snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s", dir);
	if ((rc = spate_config_add_stream(cfg, "events", &cs)) < 0)
		goto out;
	cs->shards = 1;
	uint64_t need = (uint64_t)o->records * ((o->size + 7) / 8 * 8 + 64) * 5 / 4, ring = 1ull << 20;
	while (ring < need && ring < (1ull << 30))
		ring <<= 1;
	cs->ring_size = ring;
	cs->full = SPATE_CONFIG_FULL_WAIT;
	if ((rc = spate_config_add_consumer(cfg, "fn", "events", "count", &cc)) < 0)
		goto out;
	cc->batch_size = o->batch;
	cc->starting_position = SPATE_CONFIG_START_TRIM_HORIZON;
	cc->isolation = isolated ? SPATE_CONFIG_ISOLATION_PROCESS : SPATE_CONFIG_ISOLATION_IN_PROCESS;
	rc = spate_engine_open(cfg, &e, err, sizeof(err));
	if (rc < 0) {
		snprintf(r->why, sizeof(r->why), "%.255s", err);
		goto out;
	}
	rc = spate_producer_open(spate_engine_stream(e, "events"), SPATE_RING_WAIT_BLOCK, 0, &pr.p);
	if (rc < 0)
		goto out;
	/* The ring holds every record before the consumer starts: the run
	 * measures the consumer alone, not a race with the producer. */
	fb_produce(&pr);
	if (pr.err) {
		rc = pr.err;
		goto out;
	}
	uint64_t t0 = spate_bench_mono_ns(), t1 = 0;
	rc = spate_engine_start(e);
	if (rc < 0)
		goto out;
	struct spate_consumer_stats st;
	t1 = spate_bench_wait_consumer(e, "fn", o->records, t0, &st);
	if (!t1) {
		snprintf(r->why, sizeof(r->why), "the consumer handled %" PRIu64 " of %u records%s%s",
			 st.records, o->records, st.error[0] ? ": " : "", st.error);
		rc = -EIO;
		goto out_stop;
	}
	/* Not the start: the plugin's init (isolated: the child's cold start)
	 * is the cold start figure, not throughput. */
	uint64_t cold = st.cold_start_ns < t1 - t0 ? st.cold_start_ns : 0;
	double secs = (double)(t1 - t0 - cold) / 1e9;
	r->records_per_sec = o->records / secs;
	r->invocations_per_sec = (double)st.batches / secs;
	rc = spate_stats_view_take(bus, &v);
	if (rc == 0) {
		const struct spate_stats_view_consumer *k = &v->consumers[0];
		if (isolated && k->sup) {
			r->invoke_p50 = spate_hist_percentile(k->sup->invoke, 50);
			r->invoke_p99 = spate_hist_percentile(k->sup->invoke, 99);
			r->cold_p50 = spate_hist_percentile(k->sup->init, 50);
		} else {
			const struct spate_hist *h = spate_stats_view_hist(v, 0, SPATE_STATS_HIST_PROCESS);
			r->invoke_p50 = spate_hist_percentile(h, 50);
			r->invoke_p99 = spate_hist_percentile(h, 99);
			r->cold_p50 = k->cold_start_ns;
		}
		spate_stats_view_free(v);
	}
	rc = 0;
out_stop:
	spate_engine_stop(e);
out:
	if (rc < 0 && !r->why[0])
		snprintf(r->why, sizeof(r->why), "%s", strerror(-rc));
	spate_producer_close(pr.p);
	spate_engine_close(e);
	spate_stream_unlink(bus, "events");
	spate_stats_unlink(bus);
	spate_config_free(cfg);
	rm_state_dir(dir);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: spate bench functions [--records N] [--size BYTES] [--batch N] [--runs N] [--json]\n"
		   "  a consumer's drain rate and invocation overhead: the count plugin in-process\n"
		   "  vs isolated (isolation: process), and the functions door's cases when built in\n"
		   "  --records N   records per run (default 400000)\n"
		   "  --size B      payload bytes (default 64)\n"
		   "  --batch N     the consumer's batch_size (default 1000)\n"
		   "  --runs N      alternating runs per impl, medians reported (default 3)\n"
		   "  --c-only      the in-process and isolated C cases only (no function cases)\n"
		   "  --functions-only  the function cases only (no same-run in-process ratio)\n"
		   "  --fn-concurrency N  the node function case also with N shards and N processes\n"
		   "                (one function, one invocation per shard at a time, as Lambda)\n");
}

static json_object *fb_case(const char *impl, const char *runtime, double rps, double ips,
			    uint64_t p50, uint64_t p99, uint64_t cold)
{
	json_object *c = json_object_new_object();
	json_object_object_add(c, "impl", json_object_new_string(impl));
	json_object_object_add(c, "runtime", json_object_new_string(runtime));
	json_object_object_add(c, "records_per_sec", json_object_new_double(rps));
	json_object_object_add(c, "invocations_per_sec", json_object_new_double(ips));
	json_object_object_add(c, "invoke_p50_ns", json_object_new_int64((int64_t)p50));
	json_object_object_add(c, "invoke_p99_ns", json_object_new_int64((int64_t)p99));
	json_object_object_add(c, "cold_start_p50_ns", json_object_new_int64((int64_t)cold));
	return c;
}

int spate_bench_functions_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "records", required_argument, 0, 'n' }, { "size", required_argument, 0, 's' },
		{ "batch", required_argument, 0, 'b' },   { "runs", required_argument, 0, 'r' },
		{ "json", no_argument, 0, 'j' },          { "help", no_argument, 0, 'h' },
		{ "c-only", no_argument, 0, 'c' },        { "functions-only", no_argument, 0, 'f' },
		{ "fn-concurrency", required_argument, 0, 'C' },
		{ 0, 0, 0, 0 },
	};
	struct fb_opts o = { .records = 400000, .size = 64, .batch = 1000, .runs = 3 };
	unsigned fn_conc = 1;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'n': o.records = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 's': o.size = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'b': o.batch = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'r': o.runs = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'j': o.json = 1; break;
		case 'c': o.c_only = 1; break;
		case 'f': o.fn_only = 1; break;
		case 'C': fn_conc = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return -EINVAL;
		}
	}
	if (!o.records || !o.batch || o.batch > 100000 || !o.runs || o.runs > 100 || o.size > 65536 ||
	    !fn_conc || fn_conc > 64) {
		usage(stderr);
		return -EINVAL;
	}
	/* The isolation door, as `spate run` has it. */
	int rc = spate_iso_register();
	if (rc < 0 && rc != -EEXIST) {
		fprintf(stderr, "spate bench functions: isolation provider: %s\n", strerror(-rc));
		return rc;
	}
	/* The machine's cross-core round trip, printed with the figures. */
	double rtt = spate_bench_c2c_rtt_ns(-1, -1);
	double m[2][3][100];
	uint64_t q[2][3][100];
	double ratio[100];
	for (unsigned i = 0; i < o.runs && !o.fn_only; i++) {
		struct fb_result r[2];
		for (int iso = 0; iso < 2; iso++) {
			/* Alternate which goes first: a drift of the machine's load
			 * does not favour one. */
			int which = (int)(i & 1) ^ iso;
			rc = fb_run(&o, which, &r[which]);
			if (rc < 0) {
				fprintf(stderr, "spate bench functions: %s run %u: %s\n",
					which ? "isolated" : "inprocess", i + 1, r[which].why);
				return -EIO;
			}
		}
		for (int k = 0; k < 2; k++) {
			m[k][0][i] = r[k].records_per_sec;
			m[k][1][i] = r[k].invocations_per_sec;
			q[k][0][i] = r[k].invoke_p50;
			q[k][1][i] = r[k].invoke_p99;
			q[k][2][i] = r[k].cold_p50;
		}
		ratio[i] = r[1].records_per_sec / r[0].records_per_sec;
		if (!o.json)
			printf("run %u: inprocess %.0f rec/s, isolated %.0f rec/s (%.2fx)\n", i + 1,
			       r[0].records_per_sec, r[1].records_per_sec, ratio[i]);
	}
	json_object *root = json_object_new_object(), *cases = json_object_new_array();
	const char *impl[2] = { "inprocess", "isolated" };
	for (int k = 0; k < 2 && !o.fn_only; k++) {
		double d[3][100];
		for (int f = 0; f < 3; f++)
			for (unsigned i = 0; i < o.runs; i++)
				d[f][i] = (double)q[k][f][i];
		json_object_array_add(cases,
				      fb_case(impl[k], "c", spate_bench_median(m[k][0], o.runs),
					      spate_bench_median(m[k][1], o.runs),
					      (uint64_t)spate_bench_median(d[0], o.runs),
					      (uint64_t)spate_bench_median(d[1], o.runs),
					      (uint64_t)spate_bench_median(d[2], o.runs)));
	}
	if (o.fn_only)
		memset(m, 0, sizeof(m));
	if (spate_bench_functions_fn && !o.c_only) {
		struct spate_bench_fn_params fp = { .records = o.records, .size = o.size,
						    .batch = o.batch, .runs = o.runs,
						    .inprocess_records_per_sec =
							    spate_bench_median(m[0][0], o.runs),
						    .fn_concurrency = fn_conc };
		rc = spate_bench_functions_fn(&fp, cases);
		if (rc < 0)
			fprintf(stderr, "spate bench functions: function cases: %s\n", strerror(-rc));
	}
	double med = o.fn_only ? 0 : spate_bench_median(ratio, o.runs);
	json_object_object_add(root, "bench", json_object_new_string("functions"));
	json_object_object_add(root, "records", json_object_new_int64(o.records));
	json_object_object_add(root, "record_size", json_object_new_int64(o.size));
	json_object_object_add(root, "batch_size", json_object_new_int64(o.batch));
	json_object_object_add(root, "runs", json_object_new_int64(o.runs));
	json_object_object_add(root, "c2c_rtt_ns", json_object_new_double(rtt));
	json_object_object_add(root, "cases", cases);
	json_object_object_add(root, "isolated_vs_inprocess", json_object_new_double(med));
	json_object_object_add(root, "isolated_target_met", json_object_new_boolean(med >= 0.8));
	if (o.json) {
		printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	} else {
		size_t n = json_object_array_length(cases);
		printf("%-10s %-8s %14s %14s %12s %12s %14s\n", "impl", "runtime", "records/s",
		       "invocations/s", "invoke p50", "invoke p99", "cold start p50");
		for (size_t i = 0; i < n; i++) {
			json_object *x = json_object_array_get_idx(cases, i), *f;
			const char *keys[7] = { "impl", "runtime", "records_per_sec", "invocations_per_sec",
						"invoke_p50_ns", "invoke_p99_ns", "cold_start_p50_ns" };
			printf("%-10s %-8s", json_object_get_string(json_object_object_get_ex(x, keys[0], &f) ? f : NULL),
			       json_object_get_string(json_object_object_get_ex(x, keys[1], &f) ? f : NULL));
			for (int k = 2; k < 7; k++) {
				json_object_object_get_ex(x, keys[k], &f);
				printf(k < 4 ? " %14.0f" : " %10.1fus", k < 4 ? json_object_get_double(f)
									       : json_object_get_double(f) / 1e3);
			}
			printf("\n");
		}
		printf("isolated / inprocess records/s: %.2fx (median of %u same-run pairs; target >= 0.8)\n",
		       med, o.runs);
		printf("cross-core round trip: %.0f ns\n", rtt);
	}
	json_object_put(root);
	return 0;
}
