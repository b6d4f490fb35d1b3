/* SPDX-License-Identifier: MIT */
/*
 * functions_fn.c - the function cases of `spate bench functions` (impl
 * function, runtime node and python), the functions door's part of
 * bench/functions.c (which calls spate_bench_functions_fn, bench.h).
 *
 * Method. As bench/functions.c: an embedded engine, one stream of one
 * shard holding --records records of --size bytes before the start, one
 * consumer (batch_size --batch, trim_horizon), here a function with an
 * empty handler (it answers {"batchItemFailures": []}) run by spate's
 * bundled runtime loop of each runtime, concurrency 1. Per runtime and run:
 *   records_per_sec, invocations_per_sec  the drain rate: records (and
 *       batches) over the start-to-done time less the cold start;
 *   cold_start_p50_ns  spawn -> the runtime's first /next (the
 *       supervisor's init histogram), median over the runs;
 * and one more run with batch_size 1 (--records / 100 single-record
 * invocations, at least 2,000) for the invocation overhead:
 *   invoke_p50_ns, invoke_p99_ns  the engine's side of an invocation:
 *       process() less the function's own time (event handed over ->
 *       answer received), i.e. event building, the hand-over to and from
 *       the Runtime API's connection thread, the answer's parsing
 *       (spate_fn_overhead_take) - the "next -> response round
 *       trip, engine side";
 *   roundtrip_p50_ns, roundtrip_p99_ns  the whole invocation as the
 *       supervisor times it (begin -> end), runtime included.
 * records_vs_inprocess is records_per_sec over the same run's in-process
 * median. A runtime whose program is missing (node, python3) is left out,
 * said on stderr.
 *
 * With --fn-concurrency N (> 1) the node case runs once more on N shards
 * and N processes of the one function (records spread over the shards by
 * key), as Lambda runs a Kinesis mapping (one invocation per shard at a
 * time): keys concurrency and shards say which, and
 * node_json_parse_concurrent_records_per_sec is what N node processes
 * doing nothing but JSON.parse of the event reach together on this
 * machine, the ceiling of that case.
 *
 * Limits. The handler does nothing:
 * the figures are the transport's and the runtime's (JSON and base64 of
 * every record), the upper bound of a real function.
 */
#include "spate_config.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_impl.h"
#include "engine/functions/event.h"
#include "engine/functions/functions.h"
#include "spate/engine.h"
#include "spate/hist.h"
#include "spate/provider.h"
#include "spate/stats.h"

struct fnb_result {
	double records_per_sec, invocations_per_sec;
	uint64_t cold_p50, rt_p50, rt_p99;
	char why[300];
};

static const char *const node_handler =
	"export const handler = async (event) => ({ batchItemFailures: [] });\n";
static const char *const python_handler =
	"def handler(event, context):\n    return {\"batchItemFailures\": []}\n";

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fputs(text, f);
	return fclose(f) == 0 ? 0 : -EIO;
}

/* One run of runtime @p rt ("node" or "python") with @p records records
 * in batches of @p batch, on @p conc shards served by @p conc processes
 * (one function; Lambda runs one invocation per shard at a time). */
static int fnb_run(const char *rt, uint32_t records, uint32_t size, uint32_t batch, unsigned conc,
		   struct fnb_result *r)
{
	char bus[32], dir[64], path[128], err[512];
	struct spate_config *cfg = NULL;
	struct spate_config_stream *cs;
	struct spate_config_consumer *cc;
	struct spate_config_function *fn;
	struct spate_engine *e = NULL;
	struct spate_producer *p = NULL;
	struct spate_stats_view *v = NULL;
	bool node = rt[0] == 'n';
	int rc;

	memset(r, 0, sizeof(*r));
	snprintf(bus, sizeof(bus), "fnb%d%c", (int)getpid(), node ? 'n' : 'y');
	snprintf(dir, sizeof(dir), "/tmp/spate-%s-XXXXXX", bus);
	if (!mkdtemp(dir))
		return -errno;
	snprintf(path, sizeof(path), "%s/%s", dir, node ? "index.mjs" : "app.py");
	rc = write_file(path, node ? node_handler : python_handler);
	if (rc < 0)
		goto out;
	rc = spate_config_new_default(bus, &cfg);
	if (rc < 0)
		goto out;
	snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s/state", dir);
	if ((rc = spate_config_add_stream(cfg, "events", &cs)) < 0)
		goto out;
	cs->shards = conc;
	uint64_t need = (uint64_t)(records / conc + 1) * ((size + 7) / 8 * 8 + 64) * 5 / 4,
		 ring = 1ull << 20;
	while (ring < need && ring < (1ull << 30))
		ring <<= 1;
	cs->ring_size = ring;
	if ((rc = spate_config_add_consumer(cfg, "fn", "events", NULL, &cc)) < 0)
		goto out;
	cc->batch_size = batch;
	cc->starting_position = SPATE_CONFIG_START_TRIM_HORIZON;
	const char *client[] = { node ? "node" : "python" };
	if ((rc = spate_config_consumer_function(cc, &fn)) < 0 ||
	    (rc = spate_config_function_set_argv(fn, 1, client, 1)) < 0)
		goto out;
	snprintf(fn->handler, sizeof(fn->handler), "%s", node ? "index.handler" : "app.handler");
	snprintf(fn->cwd, sizeof(fn->cwd), "%s", dir);
	fn->concurrency = conc;
	rc = spate_engine_open(cfg, &e, err, sizeof(err));
	if (rc < 0) {
		snprintf(r->why, sizeof(r->why), "%.299s", err);
		goto out;
	}
	rc = spate_producer_open(spate_engine_stream(e, "events"), SPATE_RING_WAIT_BLOCK, 0, &p);
	if (rc < 0)
		goto out;
	char *buf = calloc(1, size ? size : 1);
	uint32_t key = 0;
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < records && rc >= 0; i++) {
		memcpy(buf, &i, size < 4 ? size : 4);
		key = conc > 1 ? i : 0; /* spread over the shards by key hash */
		rc = spate_put(p, &key, sizeof(key), buf, size, NULL);
	}
	free(buf);
	if (rc < 0)
		goto out;
	struct spate_hist drop;
	spate_hist_init(&drop);
	spate_fn_overhead_take(&drop); /* start from zero */
	uint64_t t0 = spate_bench_mono_ns(), t1 = 0;
	rc = spate_engine_start(e);
	if (rc < 0)
		goto out;
	struct spate_consumer_stats st;
	t1 = spate_bench_wait_consumer(e, "fn", records, t0, &st);
	if (!t1) {
		snprintf(r->why, sizeof(r->why), "the function handled %" PRIu64 " of %u records%s%.200s",
			 st.records, records, st.error[0] ? ": " : "", st.error);
		rc = -EIO;
		goto out_stop;
	}
	rc = spate_stats_view_take(bus, &v);
	if (rc == 0 && v->consumers[0].sup) {
		const struct spate_stats_view_sup *s = v->consumers[0].sup;
		r->cold_p50 = spate_hist_percentile(s->init, 50);
		r->rt_p50 = spate_hist_percentile(s->invoke, 50);
		r->rt_p99 = spate_hist_percentile(s->invoke, 99);
	}
	spate_stats_view_free(v);
	/* The cold start (spawn -> first /next) is its own figure. */
	uint64_t cold = r->cold_p50 < t1 - t0 ? r->cold_p50 : 0;
	double secs = (double)(t1 - t0 - cold) / 1e9;
	r->records_per_sec = records / secs;
	r->invocations_per_sec = (double)st.batches / secs;
	rc = 0;
out_stop:
	spate_engine_stop(e);
out:
	if (rc < 0 && !r->why[0])
		snprintf(r->why, sizeof(r->why), "%s", strerror(-rc));
	spate_producer_close(p);
	spate_engine_close(e);
	spate_stream_unlink(bus, "events");
	spate_stats_unlink(bus);
	spate_config_free(cfg);
	char rm[160];
	snprintf(rm, sizeof(rm), "rm -rf '%s'", dir);
	if (system(rm) != 0)
		fprintf(stderr, "spate bench functions: could not remove %s\n", dir);
	return rc;
}

/* What bounds one function process, measured apart (the node case's
 * extra keys): the engine's building of the exact event of one batch
 * (records/s of spate_fn_event_build, the C side), its size, and Node's
 * JSON.parse of that very event, the first thing any Node runtime client
 * does with it: median of 50 parses after 5 warm-ups in a fresh `node`
 * (parse_ms), and with @p conc > 1 the machine's ceiling for @p conc such
 * processes at once (conc_rps: each parses for 2 s, started together; the
 * sum of their parses/s times the batch). */
struct fnb_event {
	double build_rps;
	size_t bytes;
	double parse_ms;
	double conc_rps;
};

static int fnb_event(uint32_t batch, uint32_t size, unsigned conc, struct fnb_event *ev)
{
	struct spate_ring_rec *recs = calloc(batch, sizeof(*recs));
	uint8_t *data = calloc(batch, (size + 7) / 8 * 8 + 8);
	struct spate_fn_buf out = { 0 };
	struct spate_fn_ident id;
	int rc = -ENOMEM;

	memset(ev, 0, sizeof(*ev));
	if (!recs || !data)
		goto out;
	/* The bench's records: unkeyed payloads of --size bytes, as put. */
	for (uint32_t i = 0; i < batch; i++) {
		uint8_t *d = data + (size_t)i * ((size + 7) / 8 * 8 + 8);
		memcpy(d, &i, size < 4 ? size : 4);
		recs[i] = (struct spate_ring_rec){ .data = d, .seq = 1000 + i, .len = size,
						   .ts = 1764800000000000000ull + i * 1000ull };
	}
	rc = spate_fn_ident_init(&id, "events", 1, 0, "us-east-1", "000000000000", "fn");
	if (rc < 0)
		goto out;
	uint64_t t0 = spate_bench_mono_ns(), t1;
	unsigned reps = 0;
	do {
		rc = spate_fn_event_build(&out, recs, batch, &id);
		if (rc < 0)
			goto out;
		reps++;
		t1 = spate_bench_mono_ns();
	} while (t1 - t0 < 200000000ull);
	ev->build_rps = (double)reps * batch / ((double)(t1 - t0) / 1e9);
	ev->bytes = out.len;
	char path[] = "/tmp/spate-fnb-event-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	bool ok = write(fd, out.p, out.len) == (ssize_t)out.len;
	close(fd);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "node -e 'const s=require(\"fs\").readFileSync(process.argv[1],\"latin1\");"
		 "const t=[];for(let i=0;i<55;i++){const a=process.hrtime.bigint();JSON.parse(s);"
		 "const b=process.hrtime.bigint();if(i>=5)t.push(Number(b-a)/1e6);}"
		 "t.sort((x,y)=>x-y);console.log(t[t.length>>1]);' %s 2>/dev/null",
		 path);
	FILE *f = ok ? popen(cmd, "r") : NULL;
	if (f) {
		if (fscanf(f, "%lf", &ev->parse_ms) != 1)
			ev->parse_ms = 0;
		pclose(f);
	}
	/* conc parsers at once: a shell starts them together and waits. */
	if (ok && conc > 1) {
		int n = snprintf(cmd, sizeof(cmd), "for i in $(seq %u); do node -e '"
				 "const s=require(\"fs\").readFileSync(process.argv[1],\"latin1\");"
				 "for(let i=0;i<5;i++)JSON.parse(s);let n=0;const a=Date.now();"
				 "while(Date.now()-a<2000){JSON.parse(s);n++;}"
				 "console.log(n*1000/(Date.now()-a));' %s 2>/dev/null & done; wait",
				 conc, path);
		f = n < (int)sizeof(cmd) ? popen(cmd, "r") : NULL;
		double x, sum = 0;
		unsigned got = 0;
		while (f && fscanf(f, "%lf", &x) == 1) {
			sum += x;
			got++;
		}
		if (f)
			pclose(f);
		ev->conc_rps = got == conc ? sum * batch : 0;
	}
	unlink(path);
	rc = 0;
out:
	spate_fn_buf_free(&out);
	free(recs);
	free(data);
	return rc;
}

static bool have(const char *prog)
{
	char cmd[96];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

/* One case: runtime @p rt on @p conc shards and processes, p->runs runs,
 * then (concurrency 1 only) the single-record invocations. */
static int fnb_case(const struct spate_bench_fn_params *p, const char *rt, unsigned conc,
		    struct json_object *cases)
{
	double rps[100], ips[100], cold[100];
	struct fnb_result r;
	unsigned n = 0;
	int rc;

	for (unsigned i = 0; i < p->runs && i < 100; i++) {
		rc = fnb_run(rt, p->records, p->size, p->batch, conc, &r);
		if (rc < 0) {
			fprintf(stderr, "spate bench functions: function %s (concurrency %u) run %u: %s\n",
				rt, conc, i + 1, r.why);
			break;
		}
		rps[n] = r.records_per_sec;
		ips[n] = r.invocations_per_sec;
		cold[n++] = (double)r.cold_p50;
	}
	if (!n)
		return 0;
	struct spate_hist *h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	spate_hist_init(h);
	rc = -ENOENT;
	if (conc == 1) {
		/* The invocation overhead: single-record invocations. */
		uint32_t small = p->records / 100 > 2000 ? p->records / 100 : 2000;
		rc = fnb_run(rt, small, p->size, 1, 1, &r);
		spate_fn_overhead_take(h);
		if (rc < 0)
			fprintf(stderr, "spate bench functions: function %s, batch 1: %s\n", rt, r.why);
	}
	json_object *c = json_object_new_object();
	double med = spate_bench_median(rps, n);
	json_object_object_add(c, "impl", json_object_new_string("function"));
	json_object_object_add(c, "runtime", json_object_new_string(rt));
	json_object_object_add(c, "concurrency", json_object_new_int64(conc));
	json_object_object_add(c, "shards", json_object_new_int64(conc));
	json_object_object_add(c, "records_per_sec", json_object_new_double(med));
	json_object_object_add(c, "invocations_per_sec",
			       json_object_new_double(spate_bench_median(ips, n)));
	json_object_object_add(c, "invoke_p50_ns",
			       json_object_new_int64(rc < 0 ? 0 : (int64_t)spate_hist_percentile(h, 50)));
	json_object_object_add(c, "invoke_p99_ns",
			       json_object_new_int64(rc < 0 ? 0 : (int64_t)spate_hist_percentile(h, 99)));
	json_object_object_add(c, "cold_start_p50_ns",
			       json_object_new_int64((int64_t)spate_bench_median(cold, n)));
	if (conc == 1) {
		json_object_object_add(c, "roundtrip_p50_ns", json_object_new_int64((int64_t)r.rt_p50));
		json_object_object_add(c, "roundtrip_p99_ns", json_object_new_int64((int64_t)r.rt_p99));
		json_object_object_add(c, "overhead_invocations",
				       json_object_new_int64((int64_t)spate_hist_count(h)));
	}
	json_object_object_add(c, "records_vs_inprocess",
			       json_object_new_double(p->inprocess_records_per_sec > 0
							      ? med / p->inprocess_records_per_sec
							      : 0));
	struct fnb_event ev;
	if (rt[0] == 'n' && fnb_event(p->batch, p->size, conc, &ev) == 0) {
		if (conc == 1) {
			json_object_object_add(c, "event_build_records_per_sec",
					       json_object_new_double(ev.build_rps));
			json_object_object_add(c, "event_bytes", json_object_new_int64((int64_t)ev.bytes));
			json_object_object_add(c, "node_json_parse_ms_p50",
					       json_object_new_double(ev.parse_ms));
			json_object_object_add(c, "node_json_parse_records_per_sec",
					       json_object_new_double(ev.parse_ms > 0
									      ? p->batch / (ev.parse_ms / 1e3)
									      : 0));
		} else {
			/* The bound: conc processes doing nothing but JSON.parse. */
			json_object_object_add(c, "node_json_parse_concurrent_records_per_sec",
					       json_object_new_double(ev.conc_rps));
		}
	}
	json_object_array_add(cases, c);
	free(h);
	return 0;
}

int spate_bench_functions_fn(const struct spate_bench_fn_params *p, struct json_object *cases)
{
	int rc = spate_engine_register_provider(&spate_fn_provider);

	if (rc < 0 && rc != -EEXIST)
		return rc;
	for (unsigned k = 0; k < 3; k++) {
		const char *rt = k == 1 ? "python" : "node", *prog = k == 1 ? "python3" : "node";
		unsigned conc = k == 2 ? p->fn_concurrency : 1;

		if (k == 2 && conc <= 1)
			break;
		if (!have(prog)) {
			fprintf(stderr, "spate bench functions: no %s: runtime %s left out\n", prog, rt);
			continue;
		}
		rc = fnb_case(p, rt, conc, cases);
		if (rc < 0)
			return rc;
	}
	return 0;
}
