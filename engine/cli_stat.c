/* SPDX-License-Identifier: MIT */
/*
 * cli_stat.c - `spate stat BUS [--json] [--interval MS]` and `spate top BUS`:
 * what a running bus is doing, from any terminal, without touching it.
 *
 * Design. Both are views of the library's snapshot (spate/stats.h,
 * spate_stats_view_take(), engine/stats_view.c: the counters region plus
 * what the rings show), as the Prometheus endpoint of `spate run` is. This
 * file only renders: text or JSON for stat, a refreshing table for top.
 * Rates are the difference of two snapshots over the interval (stat:
 * --interval, 500 ms; top: its refresh, 1 s); a snapshot of another engine
 * start (or another layout) is not differenced.
 *
 * Limits: those of the snapshot (spate/stats.h): counters read one by one,
 * so a rate can be off by what happened during the copy.
 */
#include "spate_config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "engine/cli.h"
#include "spate/stats.h"

/* ------------------------------------------------------------------------ */
/* Sums over a snapshot                                                     */
/* ------------------------------------------------------------------------ */

static bool task_in(const struct spate_stats_view *v, uint32_t c, uint32_t t, uint32_t shard)
{
	const struct spate_stats_view_consumer *k = &v->consumers[c];
	if (t < k->first_task || t >= k->first_task + k->shards * k->lanes)
		return false;
	return shard == UINT32_MAX || v->tasks[t].shard == shard;
}

/* Sum of a task counter over consumer c (and shard). */
static uint64_t tsum(const struct spate_stats_view *v, uint32_t c, uint32_t shard, size_t off)
{
	uint64_t s = 0;
	for (uint32_t t = 0; t < v->n_tasks; t++)
		if (task_in(v, c, t, shard))
			s += *(const uint64_t *)(const void *)((const char *)&v->tasks[t] + off);
	return s;
}
#define TASK_SUM(v, c, shard, field) \
	tsum((v), (c), (shard), offsetof(struct spate_stats_view_task, field))

static double rate(uint64_t now, uint64_t then, double dt)
{
	return dt > 0 && now >= then ? (double)(now - then) / dt : 0.0;
}

/* The same consumer in the earlier snapshot (layouts match if the engine did not restart). */
static const struct spate_stats_view *same_layout(const struct spate_stats_view *v,
						  const struct spate_stats_view *p)
{
	if (!p || p->started_ns != v->started_ns || p->n_tasks != v->n_tasks ||
	    p->n_shards != v->n_shards || p->n_workers != v->n_workers ||
	    p->n_sources != v->n_sources)
		return NULL;
	return p;
}

static double worker_busy(const struct spate_stats_view_worker *w,
			  const struct spate_stats_view_worker *pw, uint64_t now, uint64_t then)
{
	if (pw && now > then)
		return (double)(w->busy_ns - pw->busy_ns) / (double)(now - then);
	if (w->since_ns && now > w->since_ns)
		return (double)w->busy_ns / (double)(now - w->since_ns);
	return 0.0;
}

static const char *worker_state(uint32_t s)
{
	return s == SPATE_STATS_WORKER_ACTIVE ? "active"
	       : s == SPATE_STATS_WORKER_PARKED ? "parked" : "stopped";
}

/* Catch-up progress of a consumer shard, 0..1 (its slowest lane), or -1 if
 * it reads the ring. */
static double catchup(const struct spate_stats_view *v, uint32_t c, uint32_t shard)
{
	double worst = -1;
	for (uint32_t t = 0; t < v->n_tasks; t++) {
		double p = task_in(v, c, t, shard) ? spate_stats_view_task_catchup(&v->tasks[t]) : -1;
		if (p >= 0 && (worst < 0 || p < worst))
			worst = p;
	}
	return worst;
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                     */
/* ------------------------------------------------------------------------ */

static json_object *j_u64(uint64_t x)
{
	return json_object_new_uint64(x);
}

static json_object *j_hist(const struct spate_hist *h, bool ns)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "count", j_u64(spate_hist_count(h)));
	json_object_object_add(o, "mean", json_object_new_double(spate_hist_mean(h)));
	json_object_object_add(o, ns ? "p50_ns" : "p50", j_u64(spate_hist_percentile(h, 50)));
	json_object_object_add(o, ns ? "p99_ns" : "p99", j_u64(spate_hist_percentile(h, 99)));
	json_object_object_add(o, ns ? "p999_ns" : "p999", j_u64(spate_hist_percentile(h, 99.9)));
	json_object_object_add(o, ns ? "max_ns" : "max", j_u64(spate_hist_max(h)));
	return o;
}

/* Counters of consumer c on shard (UINT32_MAX: all, with the consumer's
 * histograms) into object o. */
static void j_consumer_counters(json_object *o, const struct spate_stats_view *v,
				const struct spate_stats_view *p, uint32_t c, uint32_t shard, double dt)
{
	uint64_t lr, lb, age;

	json_object_object_add(o, "records", j_u64(TASK_SUM(v, c, shard, records)));
	json_object_object_add(o, "bytes", j_u64(TASK_SUM(v, c, shard, bytes)));
	json_object_object_add(o, "batches", j_u64(TASK_SUM(v, c, shard, batches)));
	json_object_object_add(o, "errors", j_u64(TASK_SUM(v, c, shard, errors)));
	json_object_object_add(o, "retries", j_u64(TASK_SUM(v, c, shard, retries)));
	json_object_object_add(o, "bisections", j_u64(TASK_SUM(v, c, shard, bisections)));
	json_object_object_add(o, "failed", j_u64(TASK_SUM(v, c, shard, failed)));
	json_object_object_add(o, "expired", j_u64(TASK_SUM(v, c, shard, expired)));
	json_object_object_add(o, "records_per_sec",
			       json_object_new_double(p ? rate(TASK_SUM(v, c, shard, records),
							       TASK_SUM(p, c, shard, records), dt)
							: 0.0));
	json_object_object_add(o, "bytes_per_sec",
			       json_object_new_double(p ? rate(TASK_SUM(v, c, shard, bytes),
							       TASK_SUM(p, c, shard, bytes), dt)
							: 0.0));
	spate_stats_view_lag(v, c, shard, &lr, &lb, &age);
	json_object_object_add(o, "lag_records", j_u64(lr));
	json_object_object_add(o, "lag_bytes", j_u64(lb));
	json_object_object_add(o, "age_ms", j_u64(age));
	double cu = catchup(v, c, shard);
	json_object_object_add(o, "catchup_progress", cu < 0 ? NULL : json_object_new_double(cu));
	/* Deliveries by batch size, log2 buckets: [1], [2,3], [4,7], ... */
	json_object *bl = json_object_new_array();
	for (unsigned b = 0; b < SPATE_STATS_BATCH_BUCKETS; b++) {
		uint64_t sum = 0;
		for (uint32_t t = 0; t < v->n_tasks; t++)
			if (task_in(v, c, t, shard))
				sum += v->tasks[t].batch_log2[b];
		json_object_array_add(bl, j_u64(sum));
	}
	json_object_object_add(o, "batch_size_log2", bl);
	if (shard == UINT32_MAX) { /* HDR histograms are per consumer, not per shard */
		json_object_object_add(
			o, "latency", j_hist(spate_stats_view_hist(v, c, SPATE_STATS_HIST_LATENCY), true));
		json_object_object_add(
			o, "process", j_hist(spate_stats_view_hist(v, c, SPATE_STATS_HIST_PROCESS), true));
		json_object_object_add(
			o, "batch_size", j_hist(spate_stats_view_hist(v, c, SPATE_STATS_HIST_BATCH), false));
	}
}

static const char *mem_mode_name(uint32_t m)
{
	return m == SPATE_STATS_SUP_MEM_CGROUP ? "cgroup" : m == SPATE_STATS_SUP_MEM_RLIMIT ? "rlimit"
											    : "none";
}

/* A supervised consumer's processes (functions, isolation: process). */
static json_object *j_sup(const struct spate_stats_view_sup *x)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "procs", j_u64(x->procs));
	json_object_object_add(o, "alive", j_u64(x->alive));
	json_object_object_add(o, "mem_mode", json_object_new_string(mem_mode_name(x->mem_mode)));
	json_object_object_add(o, "invocations", j_u64(x->invocations));
	json_object_object_add(o, "errors", j_u64(x->errors));
	json_object_object_add(o, "timeouts", j_u64(x->timeouts));
	json_object_object_add(o, "crashes", j_u64(x->crashes));
	json_object_object_add(o, "oom_kills", j_u64(x->oom_kills));
	json_object_object_add(o, "cold_starts", j_u64(x->cold_starts));
	json_object_object_add(o, "init_fails", j_u64(x->init_fails));
	json_object_object_add(o, "spawns", j_u64(x->spawns));
	json_object_object_add(o, "init_p50_ns", j_u64(spate_hist_percentile(x->init, 50)));
	json_object_object_add(o, "init", j_hist(x->init, true));
	json_object_object_add(o, "invoke", j_hist(x->invoke, true));
	return o;
}

static json_object *sv_json(const struct spate_stats_view *v, const struct spate_stats_view *prev)
{
	const struct spate_stats_view *p = same_layout(v, prev);
	double dt = p ? (double)(v->mono_ns - p->mono_ns) / 1e9 : 0;
	json_object *root = json_object_new_object(), *arr;

	json_object_object_add(root, "schema", json_object_new_string("spate.stat/2"));
	json_object_object_add(root, "bus", json_object_new_string(v->bus));
	json_object_object_add(root, "time_ns", j_u64(v->real_ns));
	json_object_object_add(root, "interval_ms", json_object_new_double(dt * 1e3));
	json_object *eng = json_object_new_object();
	json_object_object_add(eng, "pid", j_u64(v->engine_pid));
	json_object_object_add(eng, "alive", json_object_new_boolean(v->alive));
	json_object_object_add(eng, "started_ns", j_u64(v->started_ns));
	json_object_object_add(root, "engine", eng);

	arr = json_object_new_array();
	for (uint32_t i = 0; i < v->n_streams; i++) {
		json_object *s = json_object_new_object(), *sh = json_object_new_array();
		json_object_object_add(s, "name", json_object_new_string(v->stream_names[i]));
		json_object_object_add(s, "fsync", j_hist(v->stream_fsync[i], true));
		for (uint32_t k = 0; k < v->stream_shards[i]; k++) {
			const struct spate_stats_view_shard *x = &v->shards[v->stream_first[i] + k];
			const struct spate_stats_view_shard *px = p ? &p->shards[v->stream_first[i] + k] : NULL;
			json_object *o = json_object_new_object();
			json_object_object_add(o, "shard", j_u64(k));
			json_object_object_add(o, "ring_readable", json_object_new_boolean(x->ring_ok));
			json_object_object_add(o, "records_in", j_u64(x->records_in));
			json_object_object_add(o, "bytes_in", j_u64(x->bytes_in));
			json_object_object_add(o, "records_in_per_sec",
					       json_object_new_double(px ? rate(x->records_in, px->records_in, dt) : 0));
			json_object_object_add(o, "bytes_in_per_sec",
					       json_object_new_double(px ? rate(x->bytes_in, px->bytes_in, dt) : 0));
			json_object_object_add(o, "head_seq", j_u64(x->head_seq));
			json_object_object_add(o, "oldest_seq", x->oldest_seq == UINT64_MAX ? NULL : j_u64(x->oldest_seq));
			json_object_object_add(o, "oldest_ts_ns", j_u64(x->oldest_ts));
			json_object_object_add(o, "backpressure", j_u64(x->backpressure));
			json_object_object_add(o, "put_failed", j_u64(x->put_failed));
			json_object_object_add(o, "put_batches", j_u64(x->put_batches));
			json_object *ps = json_object_new_object();
			json_object_object_add(ps, "bytes_written", j_u64(x->persist_bytes));
			json_object_object_add(ps, "writes", j_u64(x->persist_writes));
			json_object_object_add(ps, "fsyncs", j_u64(x->persist_fsyncs));
			json_object_object_add(ps, "durable_seq", x->durable_seq == UINT64_MAX ? NULL : j_u64(x->durable_seq));
			json_object_object_add(o, "persist", ps);
			json_object_array_add(sh, o);
		}
		json_object_object_add(s, "shards", sh);
		json_object_array_add(arr, s);
	}
	json_object_object_add(root, "streams", arr);

	arr = json_object_new_array();
	for (uint32_t c = 0; c < v->n_consumers; c++) {
		const struct spate_stats_view_consumer *k = &v->consumers[c];
		json_object *o = json_object_new_object(), *sh = json_object_new_array();
		json_object_object_add(o, "name", json_object_new_string(k->name));
		json_object_object_add(o, "stream", json_object_new_string(v->stream_names[k->stream]));
		json_object_object_add(o, "plugin", json_object_new_string(k->plugin));
		json_object_object_add(o, "state", json_object_new_string(spate_stats_state_name(k->state)));
		json_object_object_add(o, "error", json_object_new_string(k->error));
		json_object_object_add(o, "lanes", j_u64(k->lanes));
		json_object_object_add(o, "cold_start_ns", j_u64(k->cold_start_ns));
		json_object_object_add(o, "first_batch_ns", j_u64(k->first_batch_ns));
		json_object_object_add(o, "helped", j_u64(k->helped));
		j_consumer_counters(o, v, p, c, UINT32_MAX, dt);
		if (k->sup)
			json_object_object_add(o, "supervisor", j_sup(k->sup));
		for (uint32_t s = 0; s < k->shards; s++) {
			json_object *x = json_object_new_object();
			json_object_object_add(x, "shard", j_u64(s));
			uint64_t ck = spate_stats_view_checkpoint(v, c, s);
			json_object_object_add(x, "checkpoint", ck == UINT64_MAX ? NULL : j_u64(ck));
			j_consumer_counters(x, v, p, c, s, dt);
			json_object_array_add(sh, x);
		}
		json_object_object_add(o, "shards", sh);
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "consumers", arr);

	arr = json_object_new_array();
	for (uint32_t k = 0; k < v->n_workers; k++) {
		const struct spate_stats_view_worker *w = &v->workers[k];
		json_object *o = json_object_new_object();
		json_object_object_add(o, "index", j_u64(k));
		json_object_object_add(o, "cpu", json_object_new_int(w->cpu));
		json_object_object_add(o, "tasks", j_u64(w->tasks));
		json_object_object_add(o, "state", json_object_new_string(worker_state(w->state)));
		json_object_object_add(o, "busy_fraction",
				       json_object_new_double(worker_busy(w, p ? &p->workers[k] : NULL,
									  v->mono_ns, p ? p->mono_ns : 0)));
		json_object_object_add(o, "loops", j_u64(w->loops));
		json_object_object_add(o, "busy_ns", j_u64(w->busy_ns));
		json_object_object_add(o, "parked_ns", j_u64(w->parked_ns));
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "workers", arr);

	arr = json_object_new_array();
	for (uint32_t k = 0; k < v->n_sources; k++) {
		const struct spate_stats_view_source *x = &v->sources[k];
		json_object *o = json_object_new_object(), *cn = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(x->name));
		json_object_object_add(o, "type", json_object_new_string(x->type));
		json_object_object_add(o, "stream", json_object_new_string(
			x->stream < v->n_streams ? v->stream_names[x->stream] : "?"));
		json_object_object_add(o, "state",
				       json_object_new_string(spate_stats_source_state_name(x->state)));
		json_object_object_add(o, "error", json_object_new_string(x->error));
		for (uint32_t c = 0; c < x->n_counters; c++)
			json_object_object_add(cn, x->counter_names[c], j_u64(x->counters[c]));
		json_object_object_add(o, "counters", cn);
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "sources", arr);
	return root;
}

/* ------------------------------------------------------------------------ */
/* Text (stat without --json, and top)                                      */
/* ------------------------------------------------------------------------ */

static const char *si(double x, char *buf, size_t len)
{
	if (x >= 1e9)
		snprintf(buf, len, "%.2fG", x / 1e9);
	else if (x >= 1e6)
		snprintf(buf, len, "%.2fM", x / 1e6);
	else if (x >= 1e4)
		snprintf(buf, len, "%.1fk", x / 1e3);
	else
		snprintf(buf, len, "%.0f", x);
	return buf;
}

static const char *dur(uint64_t ns, char *buf, size_t len)
{
	if (ns >= 1000000000ull)
		snprintf(buf, len, "%.2fs", (double)ns / 1e9);
	else if (ns >= 1000000ull)
		snprintf(buf, len, "%.2fms", (double)ns / 1e6);
	else if (ns >= 1000ull)
		snprintf(buf, len, "%.1fus", (double)ns / 1e3);
	else
		snprintf(buf, len, "%" PRIu64 "ns", ns);
	return buf;
}

static void consumer_row(FILE *f, const struct spate_stats_view *v, const struct spate_stats_view *p,
			 uint32_t c, uint32_t shard, double dt)
{
	const struct spate_stats_view_consumer *k = &v->consumers[c];
	char a[24], b[24], d[24], e[24], g[24], z[24], lbl[64];
	uint64_t lr, lb, age;

	spate_stats_view_lag(v, c, shard, &lr, &lb, &age);
	/* Latency is per consumer: shard rows show "-". */
	const struct spate_hist *h =
		shard == UINT32_MAX ? spate_stats_view_hist(v, c, SPATE_STATS_HIST_LATENCY) : NULL;
	if (shard == UINT32_MAX)
		snprintf(lbl, sizeof(lbl), "%.20s", k->name);
	else
		snprintf(lbl, sizeof(lbl), "  shard %u", shard);
	double cu = catchup(v, c, shard);
	char cus[24] = "-";
	if (cu >= 0)
		snprintf(cus, sizeof(cus), "disk %.0f%%", cu * 100);
	fprintf(f, "%-20s %9s %9s %9s %8" PRIu64 " %8s %8s %8s %7" PRIu64 " %6" PRIu64 " %6" PRIu64
		   " %-8s %s\n",
		lbl,
		si(p ? rate(TASK_SUM(v, c, shard, records), TASK_SUM(p, c, shard, records), dt) : 0, a,
		   sizeof(a)),
		si((double)lr, b, sizeof(b)), si((double)lb, g, sizeof(g)), age,
		h ? dur(spate_hist_percentile(h, 50), d, sizeof(d)) : "-",
		h ? dur(spate_hist_percentile(h, 99), e, sizeof(e)) : "-",
		h ? dur(spate_hist_percentile(h, 99.9), z, sizeof(z)) : "-", TASK_SUM(v, c, shard, errors),
		TASK_SUM(v, c, shard, retries), TASK_SUM(v, c, shard, failed),
		shard == UINT32_MAX ? spate_stats_state_name(k->state) : "", cus);
}

static void sv_text(FILE *f, const struct spate_stats_view *v, const struct spate_stats_view *prev,
		    bool clear)
{
	const struct spate_stats_view *p = same_layout(v, prev);
	double dt = p ? (double)(v->mono_ns - p->mono_ns) / 1e9 : 0;
	char a[24], b[24], c2[24];
	time_t now = (time_t)(v->real_ns / 1000000000ull);
	struct tm tm;

	gmtime_r(&now, &tm);
	if (clear)
		fputs("\033[H\033[2J", f);
	fprintf(f, "spate top - bus %s - engine pid %u %s - %04d-%02d-%02d %02d:%02d:%02d UTC%s\n\n",
		v->bus, v->engine_pid, v->alive ? "running" : "NOT RUNNING", tm.tm_year + 1900,
		tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		p ? "" : " (rates from the next refresh)");
	fprintf(f, "%-20s %5s %9s %9s %12s %12s %9s %8s\n", "STREAM", "SHARD", "IN rec/s",
		"IN B/s", "HEAD SEQ", "OLDEST SEQ", "OLDEST", "BACKPR");
	for (uint32_t i = 0; i < v->n_streams; i++) {
		for (uint32_t k = 0; k < v->stream_shards[i]; k++) {
			const struct spate_stats_view_shard *x = &v->shards[v->stream_first[i] + k];
			const struct spate_stats_view_shard *px = p ? &p->shards[v->stream_first[i] + k] : NULL;
			char old[24] = "-", os[24] = "-";
			if (x->oldest_ts && v->real_ns > x->oldest_ts)
				dur(v->real_ns - x->oldest_ts, old, sizeof(old));
			if (x->oldest_seq != UINT64_MAX)
				snprintf(os, sizeof(os), "%" PRIu64, x->oldest_seq);
			fprintf(f, "%-20.20s %5u %9s %9s %12" PRIu64 " %12s %9s %8" PRIu64 "\n",
				k ? "" : v->stream_names[i], k,
				si(px ? rate(x->records_in, px->records_in, dt) : 0, a, sizeof(a)),
				si(px ? rate(x->bytes_in, px->bytes_in, dt) : 0, b, sizeof(b)),
				x->head_seq, os, old, x->backpressure);
		}
	}
	fprintf(f, "\n%-20s %9s %9s %9s %8s %8s %8s %8s %7s %6s %6s %-8s %s\n", "CONSUMER", "rec/s",
		"LAG rec", "LAG B", "AGE ms", "p50", "p99", "p99.9", "ERRORS", "RETRY", "FAILED",
		"STATE", "CATCHUP");
	for (uint32_t c = 0; c < v->n_consumers; c++) {
		consumer_row(f, v, p, c, UINT32_MAX, dt);
		if (v->consumers[c].shards > 1 && v->consumers[c].shards <= 16)
			for (uint32_t s = 0; s < v->consumers[c].shards; s++)
				consumer_row(f, v, p, c, s, dt);
		if (v->consumers[c].error[0])
			fprintf(f, "  error: %s\n", v->consumers[c].error);
		const struct spate_stats_view_sup *x = v->consumers[c].sup;
		if (x) {
			char i50[24], v50[24], v99[24];
			fprintf(f, "  processes %u/%u (memory_limit: %s): %" PRIu64 " invocations, %" PRIu64
				   " errors, %" PRIu64 " timeouts, %" PRIu64 " crashes, %" PRIu64
				   " cold starts (init p50 %s), invoke p50 %s p99 %s\n",
				x->alive, x->procs, mem_mode_name(x->mem_mode), x->invocations, x->errors,
				x->timeouts, x->crashes + x->oom_kills, x->cold_starts,
				dur(spate_hist_percentile(x->init, 50), i50, sizeof(i50)),
				dur(spate_hist_percentile(x->invoke, 50), v50, sizeof(v50)),
				dur(spate_hist_percentile(x->invoke, 99), v99, sizeof(v99)));
		}
	}
	fprintf(f, "\n%-8s %5s %-8s %6s %6s %12s\n", "WORKER", "CPU", "STATE", "BUSY", "TASKS",
		"LOOPS/s");
	for (uint32_t k = 0; k < v->n_workers; k++) {
		const struct spate_stats_view_worker *w = &v->workers[k];
		const struct spate_stats_view_worker *pw = p ? &p->workers[k] : NULL;
		fprintf(f, "%-8u %5d %-8s %5.1f%% %6u %12s\n", k, w->cpu, worker_state(w->state),
			100.0 * worker_busy(w, pw, v->mono_ns, p ? p->mono_ns : 0), w->tasks,
			si(pw ? rate(w->loops, pw->loops, dt) : 0, c2, sizeof(c2)));
	}
	if (v->n_sources)
		fprintf(f, "\n%-16s %-6s %-16s %-8s %s\n", "SOURCE", "TYPE", "STREAM", "STATE",
			"COUNTERS");
	for (uint32_t k = 0; k < v->n_sources; k++) {
		const struct spate_stats_view_source *x = &v->sources[k];
		fprintf(f, "%-16s %-6s %-16s %-8s", x->name, x->type,
			x->stream < v->n_streams ? v->stream_names[x->stream] : "?",
			spate_stats_source_state_name(x->state));
		for (uint32_t c = 0; c < x->n_counters; c++)
			fprintf(f, " %s=%" PRIu64, x->counter_names[c], x->counters[c]);
		fputc('\n', f);
		if (x->error[0])
			fprintf(f, "  last error: %s\n", x->error);
	}
	fflush(f);
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                 */
/* ------------------------------------------------------------------------ */

static void nap_ms(double ms)
{
	struct timespec ts = { (time_t)(ms / 1e3), (long)(((uint64_t)(ms * 1e6)) % 1000000000ull) };
	nanosleep(&ts, NULL);
}

static int take_or_say(const char *bus, struct spate_stats_view **v)
{
	int rc = spate_stats_view_take(bus, v);
	if (rc == -ENOENT)
		fprintf(stderr, "spate: no counters for bus %s: no engine has run it here "
				"(or it runs with metrics.counters: off)\n", bus);
	else if (rc < 0)
		fprintf(stderr, "spate: counters of bus %s: %s\n", bus, strerror(-rc));
	return rc;
}

int spate_cli_stat(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, 0, 'j' },
		{ "interval", required_argument, 0, 'i' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	double interval = 500;
	int json = 0, c, rc;
	struct spate_stats_view *a = NULL, *b = NULL;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'j')
			json = 1;
		else if (c == 'i')
			interval = atof(optarg);
		else {
			fprintf(c == 'h' ? stdout : stderr,
				"usage: spate stat BUS [--json] [--interval MS]\n"
				"  one snapshot of a bus's counters; rates over MS (default 500, 0: none)\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (optind != argc - 1 || interval < 0) {
		fprintf(stderr, "usage: spate stat BUS [--json] [--interval MS]\n");
		return -EINVAL;
	}
	const char *bus = argv[optind];
	rc = take_or_say(bus, &a);
	if (rc < 0)
		return rc;
	if (interval > 0) {
		nap_ms(interval);
		rc = take_or_say(bus, &b);
		if (rc < 0) {
			spate_stats_view_free(a);
			return rc;
		}
	} else {
		b = a;
		a = NULL;
	}
	if (json) {
		json_object *j = sv_json(b, a);
		printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(j);
	} else {
		sv_text(stdout, b, a, false);
	}
	spate_stats_view_free(a);
	spate_stats_view_free(b);
	return 0;
}

static volatile sig_atomic_t top_stop;

static void top_on_signal(int sig)
{
	(void)sig;
	top_stop = 1;
}

int spate_cli_top(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "interval", required_argument, 0, 'i' },
		{ "iterations", required_argument, 0, 'n' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	double interval = 1000;
	long iterations = 0;
	int c, rc = 0;
	struct spate_stats_view *prev = NULL;
	struct termios saved;
	bool tty = isatty(STDIN_FILENO);

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'i')
			interval = atof(optarg);
		else if (c == 'n')
			iterations = atol(optarg);
		else {
			fprintf(c == 'h' ? stdout : stderr,
				"usage: spate top BUS [--interval MS] [--iterations N]\n"
				"  a live view of a bus, refreshed every MS (default 1000); q or Ctrl-C quits\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (optind != argc - 1 || interval < 50) {
		fprintf(stderr, "usage: spate top BUS [--interval MS >= 50] [--iterations N]\n");
		return -EINVAL;
	}
	const char *bus = argv[optind];
	struct sigaction sa = { .sa_handler = top_on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	} else {
		tty = false;
	}
	for (long n = 0; !top_stop && (!iterations || n < iterations); n++) {
		struct spate_stats_view *v = NULL;
		int r = spate_stats_view_take(bus, &v);
		if (r < 0) {
			printf("\033[H\033[2Jspate top - bus %s: %s; waiting for an engine\n", bus,
			       r == -ENOENT ? "no counters region" : strerror(-r));
			fflush(stdout);
		} else {
			sv_text(stdout, v, prev, true);
			spate_stats_view_free(prev);
			prev = v;
		}
		/* Wait for the next refresh, or q. */
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		if (tty && poll(&pfd, 1, (int)interval) > 0) {
			char ch;
			if (read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
				break;
		} else if (!tty) {
			nap_ms(interval);
		}
	}
	if (tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	spate_stats_view_free(prev);
	return rc;
}
