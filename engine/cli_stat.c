/* SPDX-License-Identifier: MIT */
/*
 * cli_stat.c - `spate stat BUS [--json] [--interval MS]` and `spate top BUS`:
 * what a running bus is doing, from any terminal, without touching it.
 *
 * Design. A snapshot (struct spate_sv, stats_view.h) attaches the bus's
 * counters region read-only (spate/stats.h) and the bus's stream regions,
 * copies every counter once, and adds what the rings themselves show for
 * free: records and bytes appended (tail_seq and tail against the bases the
 * engine recorded), the head sequence, the oldest record still in the ring
 * (the batch header at trim, read and then trim re-checked, so a header
 * overwritten meanwhile is not reported), and each task reader's released
 * position (lag in bytes). Rates are the difference of two snapshots over
 * the interval (stat: --interval, 500 ms; top: its refresh, 1 s).
 *
 * The monitor writes nothing to the bus: the stats region is mapped
 * read-only, and the stream regions are only read (attaching them maps them
 * read-write, since the stream API has no read-only attach; no reader or
 * writer slot is taken, so the bus's writers never wait for a monitor).
 *
 * Limits. Counters are read one by one, not as one atomic snapshot; a rate
 * can be off by what happened during the copy (microseconds). Lag in bytes
 * moves in the reader's release steps (1/16 of the ring at most). Age is the
 * iterator age of Kinesis: now minus the commit time of the last record the
 * consumer handled, 0 when nothing is waiting.
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
#include "engine/stats_view.h"
#include "spate/ring.h"
#include "spate/stream.h"

/* ------------------------------------------------------------------------ */
/* Snapshot                                                                 */
/* ------------------------------------------------------------------------ */

const char *spate_sv_state(uint32_t s)
{
	switch (s) {
	case SPATE_STATS_RUNNING: return "running";
	case SPATE_STATS_STOPPED: return "stopped";
	case SPATE_STATS_FAILED: return "failed";
	default: return "unknown";
	}
}

/* Oldest record still intact in ring @p r: the batch at trim. */
static void ring_oldest(const struct spate_ring *r, uint64_t *seq, uint64_t *ts)
{
	for (int tries = 0; tries < 4; tries++) {
		/* Acquire (both): pair with the writers' release of trim and the
		 * publisher's of tail; the header loads below are then of
		 * published batches. */
		uint64_t trim = atomic_load_explicit(&r->sh->prod.trim, memory_order_acquire);
		uint64_t tail = atomic_load_explicit(&r->sh->pub.tail, memory_order_acquire);
		/* Relaxed: informational, read after tail. */
		uint64_t tseq = atomic_load_explicit(&r->sh->pub.tail_seq, memory_order_relaxed);
		uint64_t pos = trim;

		*seq = tseq;
		*ts = 0;
		for (int hop = 0; hop < 2 && pos < tail; hop++) {
			const struct spate_ring_bhdr *h =
				(const struct spate_ring_bhdr *)(const void *)(r->data + (pos & r->mask));
			/* Acquire: pairs with the commit word's release store. */
			uint64_t c = atomic_load_explicit(&h->commit, memory_order_acquire);
			uint64_t len = spate_ring_batch_len_(c, pos, r->cap, tail);
			if (!len)
				break;
			if (c & SPATE_RING_C_PAD) {
				pos += len;
				continue;
			}
			uint64_t bs = __atomic_load_n(&h->base_seq, __ATOMIC_RELAXED);
			uint64_t bt = __atomic_load_n(&h->ts, __ATOMIC_RELAXED);
			/* Acquire: trim unchanged means no writer has been allowed
			 * over this header while we read it. */
			if (atomic_load_explicit(&r->sh->prod.trim, memory_order_acquire) == trim) {
				*seq = bs;
				*ts = bt;
				return;
			}
			break;
		}
		if (pos >= tail)
			return; /* empty */
	}
	*seq = UINT64_MAX;
	*ts = 0;
}

void spate_sv_free(struct spate_sv *v)
{
	if (!v)
		return;
	for (uint32_t i = 0; v->consumers && i < v->n_consumers; i++) {
		free(v->consumers[i].latency);
		free(v->consumers[i].process);
		free(v->consumers[i].batch);
	}
	for (uint32_t i = 0; v->stream_fsync && i < v->n_streams; i++)
		free(v->stream_fsync[i]);
	free(v->stream_fsync);
	free(v->stream_names);
	free(v->stream_shards);
	free(v->stream_first);
	free(v->shards);
	free(v->consumers);
	free(v->tasks);
	free(v->workers);
	free(v);
}

static struct spate_hist *hist_dup(const struct spate_stats *st, uint64_t i)
{
	struct spate_hist *h = malloc(sizeof(*h));

	if (h && spate_stats_hist_copy(st, i, h) < 0)
		spate_hist_init(h);
	return h;
}

/* Relaxed loads throughout: the region's counters are figures for display
 * (spate/stats.h); each is read once into the snapshot. */
#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

int spate_sv_take(const char *bus, struct spate_sv **out)
{
	struct spate_stats *st;
	struct spate_sv *v;
	int rc = spate_stats_attach(bus, &st);

	*out = NULL;
	if (rc < 0)
		return rc;
	const struct spate_stats_hdr *h = spate_stats_header(st);
	v = calloc(1, sizeof(*v));
	if (!v)
		goto nomem;
	snprintf(v->bus, sizeof(v->bus), "%s", h->bus);
	v->engine_pid = h->engine_pid;
	v->alive = spate_stats_engine_alive(st) == 1;
	v->started_ns = h->started_ns;
	v->mono_ns = spate_mono_ns();
	v->real_ns = spate_now_ns();
	v->n_streams = h->n_streams;
	v->n_shards = h->n_shards;
	v->n_consumers = h->n_consumers;
	v->n_tasks = h->n_tasks;
	v->n_workers = h->n_workers;
	v->stream_names = calloc(v->n_streams + 1, sizeof(*v->stream_names));
	v->stream_shards = calloc(v->n_streams + 1, sizeof(uint32_t));
	v->stream_first = calloc(v->n_streams + 1, sizeof(uint32_t));
	v->stream_fsync = calloc(v->n_streams + 1, sizeof(*v->stream_fsync));
	v->shards = calloc(v->n_shards + 1, sizeof(*v->shards));
	v->consumers = calloc(v->n_consumers + 1, sizeof(*v->consumers));
	v->tasks = calloc(v->n_tasks + 1, sizeof(*v->tasks));
	v->workers = calloc(v->n_workers + 1, sizeof(*v->workers));
	if (!v->stream_names || !v->stream_shards || !v->stream_first || !v->stream_fsync || !v->shards ||
	    !v->consumers || !v->tasks || !v->workers)
		goto nomem;

	for (uint32_t i = 0; i < v->n_streams; i++) {
		const struct spate_stats_stream *s = spate_stats_stream_at(st, i);
		struct spate_stream *sm = NULL;
		memcpy(v->stream_names[i], s->name, sizeof(v->stream_names[i]));
		v->stream_names[i][SPATE_STATS_NAME_MAX] = '\0';
		uint32_t n = s->shards, first = s->first_shard;
		if ((uint64_t)first + n > v->n_shards)
			n = 0; /* a scribbled slot: show nothing rather than wrong shards */
		v->stream_shards[i] = n;
		v->stream_first[i] = first;
		v->stream_fsync[i] = hist_dup(st, s->fsync_hist);
		if (!v->stream_fsync[i])
			goto nomem;
		if (spate_stream_attach(bus, v->stream_names[i], &sm) < 0)
			sm = NULL;
		for (uint32_t k = 0; k < n; k++) {
			const struct spate_stats_shard *ss = spate_stats_shard_at(st, first + k);
			struct spate_sv_shard *o = &v->shards[first + k];
			o->stream = i;
			o->shard = k;
			o->backpressure = LD(ss->backpressure);
			o->put_failed = LD(ss->put_failed);
			o->put_batches = LD(ss->put_batches);
			o->persist_bytes = LD(ss->persist_bytes);
			o->persist_writes = LD(ss->persist_writes);
			o->persist_fsyncs = LD(ss->persist_fsyncs);
			o->durable_seq = LD(ss->durable_seq);
			struct spate_ring *r = sm && k < spate_stream_shards(sm) ? spate_stream_ring(sm, k)
										 : NULL;
			if (r) {
				/* Acquire: pairs with the publisher's release of tail. */
				uint64_t tail = atomic_load_explicit(&r->sh->pub.tail, memory_order_acquire);
				uint64_t tseq = atomic_load_explicit(&r->sh->pub.tail_seq,
								     memory_order_relaxed);
				o->ring_ok = true;
				o->head_seq = tseq;
				o->records_in = tseq >= ss->base_seq ? tseq - ss->base_seq : 0;
				o->bytes_in = tail >= ss->base_pos ? tail - ss->base_pos : 0;
				ring_oldest(r, &o->oldest_seq, &o->oldest_ts);
			}
		}
		/* Task lag needs the same rings: done here while attached. */
		for (uint32_t t = 0; t < v->n_tasks; t++) {
			const struct spate_stats_task *ts = spate_stats_task_at(st, t);
			const struct spate_stats_consumer *c = spate_stats_consumer_at(st, ts->consumer);
			if (!c || c->stream != i)
				continue;
			struct spate_sv_task *o = &v->tasks[t];
			uint32_t shard = ts->shard, slot = LD(ts->reader_slot);
			struct spate_ring *r = sm && shard < spate_stream_shards(sm)
						       ? spate_stream_ring(sm, shard) : NULL;
			if (!r)
				continue;
			uint64_t tail = atomic_load_explicit(&r->sh->pub.tail, memory_order_acquire);
			uint64_t tseq = atomic_load_explicit(&r->sh->pub.tail_seq, memory_order_relaxed);
			uint64_t ck = LD(ts->checkpoint);
			if (slot < SPATE_RING_MAX_READERS) {
				const struct spate_ring_rslot *rs = &r->sh->readers[slot];
				/* Relaxed: a monitor's reading of a released position. */
				uint64_t pos = atomic_load_explicit(&rs->pos, memory_order_relaxed);
				uint64_t rseq = atomic_load_explicit(&rs->seq, memory_order_relaxed);
				o->lag_bytes = tail > pos ? tail - pos : 0;
				if (ck == UINT64_MAX)
					ck = rseq;
			}
			o->lag_records = ck != UINT64_MAX && tseq > ck ? tseq - ck : 0;
			if (o->lag_records) {
				uint64_t last = LD(ts->last_ts);
				if (!last && first + shard < v->n_shards)
					last = v->shards[first + shard].oldest_ts;
				o->age_ms = last && v->real_ns > last ? (v->real_ns - last) / 1000000u : 0;
			}
			if (!o->lag_records)
				o->lag_bytes = 0; /* released in steps: nothing waits */
		}
		spate_stream_close(sm);
	}
	for (uint32_t i = 0; i < v->n_consumers; i++) {
		const struct spate_stats_consumer *c = spate_stats_consumer_at(st, i);
		struct spate_sv_consumer *o = &v->consumers[i];
		memcpy(o->name, c->name, sizeof(o->name));
		o->name[SPATE_STATS_NAME_MAX] = '\0';
		memcpy(o->plugin, c->plugin, sizeof(o->plugin));
		o->plugin[SPATE_STATS_NAME_MAX] = '\0';
		memcpy(o->error, c->error, sizeof(c->error));
		o->error[sizeof(c->error) - 1] = '\0';
		o->stream = c->stream < v->n_streams ? c->stream : 0;
		o->shards = c->shards;
		o->lanes = c->lanes ? c->lanes : 1;
		o->first_task = c->first_task;
		if ((uint64_t)o->first_task + (uint64_t)o->shards * o->lanes > v->n_tasks)
			o->shards = 0; /* scribbled: no tasks */
		o->state = atomic_load_explicit(&c->state, memory_order_relaxed);
		o->cold_start_ns = LD(c->cold_start_ns);
		o->first_batch_ns = LD(c->first_batch_ns);
		o->helped = LD(c->helped);
		o->latency = hist_dup(st, c->hist_latency);
		o->process = hist_dup(st, c->hist_process);
		o->batch = hist_dup(st, c->hist_batch);
		if (!o->latency || !o->process || !o->batch)
			goto nomem;
	}
	for (uint32_t t = 0; t < v->n_tasks; t++) {
		const struct spate_stats_task *ts = spate_stats_task_at(st, t);
		struct spate_sv_task *o = &v->tasks[t];
		o->consumer = ts->consumer;
		o->shard = ts->shard;
		o->lane = ts->lane;
		o->records = LD(ts->records);
		o->bytes = LD(ts->bytes);
		o->batches = LD(ts->batches);
		o->errors = LD(ts->errors);
		o->retries = LD(ts->retries);
		o->bisections = LD(ts->bisections);
		o->failed = LD(ts->failed);
		o->expired = LD(ts->expired);
		o->checkpoint = LD(ts->checkpoint);
		o->last_ts = LD(ts->last_ts);
		o->process_ns = LD(ts->process_ns);
		o->source = atomic_load_explicit(&ts->source, memory_order_relaxed);
		o->catchup_from = LD(ts->catchup_from);
		o->catchup_target = LD(ts->catchup_target);
		for (unsigned b = 0; b < SPATE_STATS_BATCH_BUCKETS; b++)
			o->batch_log2[b] = LD(ts->batch_log2[b]);
	}
	for (uint32_t k = 0; k < v->n_workers; k++) {
		const struct spate_stats_worker *w = spate_stats_worker_at(st, k);
		struct spate_sv_worker *o = &v->workers[k];
		o->loops = LD(w->loops);
		o->busy_ns = LD(w->busy_ns);
		o->parked_ns = LD(w->parked_ns);
		o->since_ns = LD(w->since_ns);
		o->state = atomic_load_explicit(&w->state, memory_order_relaxed);
		o->tasks = w->tasks;
		o->cpu = w->cpu;
	}
	spate_stats_close(st);
	*out = v;
	return 0;
nomem:
	spate_sv_free(v);
	spate_stats_close(st);
	return -ENOMEM;
}

static bool task_in(const struct spate_sv *v, uint32_t c, uint32_t t, uint32_t shard)
{
	const struct spate_sv_consumer *k = &v->consumers[c];
	if (t < k->first_task || t >= k->first_task + k->shards * k->lanes)
		return false;
	return shard == UINT32_MAX || v->tasks[t].shard == shard;
}

const struct spate_hist *spate_sv_hist(const struct spate_sv *v, uint32_t c, int which)
{
	const struct spate_sv_consumer *k = &v->consumers[c];
	return which == 0 ? k->latency : which == 1 ? k->process : k->batch;
}

void spate_sv_lag(const struct spate_sv *v, uint32_t c, uint32_t shard, uint64_t *records,
		  uint64_t *bytes, uint64_t *age_ms)
{
	const struct spate_sv_consumer *k = &v->consumers[c];

	*records = *bytes = *age_ms = 0;
	for (uint32_t s = 0; s < k->shards; s++) {
		uint64_t r = 0, b = 0, a = 0;
		if (shard != UINT32_MAX && s != shard)
			continue;
		for (uint32_t l = 0; l < k->lanes; l++) {
			const struct spate_sv_task *x = &v->tasks[k->first_task + s * k->lanes + l];
			r = x->lag_records > r ? x->lag_records : r;
			b = x->lag_bytes > b ? x->lag_bytes : b;
			a = x->age_ms > a ? x->age_ms : a;
		}
		*records += r;
		*bytes += b;
		if (a > *age_ms)
			*age_ms = a;
	}
}

/* Sum of a task counter over consumer c (and shard). */
static uint64_t tsum(const struct spate_sv *v, uint32_t c, uint32_t shard, size_t off)
{
	uint64_t s = 0;
	for (uint32_t t = 0; t < v->n_tasks; t++)
		if (task_in(v, c, t, shard))
			s += *(const uint64_t *)(const void *)((const char *)&v->tasks[t] + off);
	return s;
}
#define TASK_SUM(v, c, shard, field) tsum((v), (c), (shard), offsetof(struct spate_sv_task, field))

static double rate(uint64_t now, uint64_t then, double dt)
{
	return dt > 0 && now >= then ? (double)(now - then) / dt : 0.0;
}

/* The same consumer in the earlier snapshot (layouts match if the engine did not restart). */
static const struct spate_sv *same_layout(const struct spate_sv *v, const struct spate_sv *p)
{
	if (!p || p->started_ns != v->started_ns || p->n_tasks != v->n_tasks ||
	    p->n_shards != v->n_shards || p->n_workers != v->n_workers)
		return NULL;
	return p;
}

static double worker_busy(const struct spate_sv_worker *w, const struct spate_sv_worker *pw,
			  uint64_t now, uint64_t then)
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

double spate_sv_task_catchup(const struct spate_sv_task *x)
{
	double p = 0;

	if (x->source != SPATE_STATS_SOURCE_LOG)
		return -1;
	if (x->catchup_target > x->catchup_from && x->checkpoint != UINT64_MAX &&
	    x->checkpoint >= x->catchup_from)
		p = (double)(x->checkpoint - x->catchup_from) /
		    (double)(x->catchup_target - x->catchup_from);
	return p > 1 ? 1 : p;
}

uint64_t spate_sv_checkpoint(const struct spate_sv *v, uint32_t c, uint32_t shard)
{
	const struct spate_sv_consumer *k = &v->consumers[c];
	uint64_t ck = UINT64_MAX;

	for (uint32_t l = 0; l < k->lanes && shard < k->shards; l++) {
		uint64_t q = v->tasks[k->first_task + shard * k->lanes + l].checkpoint;
		ck = q < ck ? q : ck;
	}
	return ck;
}

/* Catch-up progress of a consumer shard, 0..1 (its slowest lane), or -1 if
 * it reads the ring. */
static double catchup(const struct spate_sv *v, uint32_t c, uint32_t shard)
{
	double worst = -1;
	for (uint32_t t = 0; t < v->n_tasks; t++) {
		double p = task_in(v, c, t, shard) ? spate_sv_task_catchup(&v->tasks[t]) : -1;
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
static void j_consumer_counters(json_object *o, const struct spate_sv *v, const struct spate_sv *p,
				uint32_t c, uint32_t shard, double dt)
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
	spate_sv_lag(v, c, shard, &lr, &lb, &age);
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
		json_object_object_add(o, "latency", j_hist(spate_sv_hist(v, c, 0), true));
		json_object_object_add(o, "process", j_hist(spate_sv_hist(v, c, 1), true));
		json_object_object_add(o, "batch_size", j_hist(spate_sv_hist(v, c, 2), false));
	}
}

static json_object *sv_json(const struct spate_sv *v, const struct spate_sv *prev)
{
	const struct spate_sv *p = same_layout(v, prev);
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
			const struct spate_sv_shard *x = &v->shards[v->stream_first[i] + k];
			const struct spate_sv_shard *px = p ? &p->shards[v->stream_first[i] + k] : NULL;
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
		const struct spate_sv_consumer *k = &v->consumers[c];
		json_object *o = json_object_new_object(), *sh = json_object_new_array();
		json_object_object_add(o, "name", json_object_new_string(k->name));
		json_object_object_add(o, "stream", json_object_new_string(v->stream_names[k->stream]));
		json_object_object_add(o, "plugin", json_object_new_string(k->plugin));
		json_object_object_add(o, "state", json_object_new_string(spate_sv_state(k->state)));
		json_object_object_add(o, "error", json_object_new_string(k->error));
		json_object_object_add(o, "lanes", j_u64(k->lanes));
		json_object_object_add(o, "cold_start_ns", j_u64(k->cold_start_ns));
		json_object_object_add(o, "first_batch_ns", j_u64(k->first_batch_ns));
		json_object_object_add(o, "helped", j_u64(k->helped));
		j_consumer_counters(o, v, p, c, UINT32_MAX, dt);
		for (uint32_t s = 0; s < k->shards; s++) {
			json_object *x = json_object_new_object();
			json_object_object_add(x, "shard", j_u64(s));
			uint64_t ck = spate_sv_checkpoint(v, c, s);
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
		const struct spate_sv_worker *w = &v->workers[k];
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

static void consumer_row(FILE *f, const struct spate_sv *v, const struct spate_sv *p, uint32_t c,
			 uint32_t shard, double dt)
{
	const struct spate_sv_consumer *k = &v->consumers[c];
	char a[24], b[24], d[24], e[24], g[24], z[24], lbl[64];
	uint64_t lr, lb, age;

	spate_sv_lag(v, c, shard, &lr, &lb, &age);
	/* Latency is per consumer: shard rows show "-". */
	const struct spate_hist *h = shard == UINT32_MAX ? spate_sv_hist(v, c, 0) : NULL;
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
		shard == UINT32_MAX ? spate_sv_state(k->state) : "", cus);
}

static void sv_text(FILE *f, const struct spate_sv *v, const struct spate_sv *prev, bool clear)
{
	const struct spate_sv *p = same_layout(v, prev);
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
			const struct spate_sv_shard *x = &v->shards[v->stream_first[i] + k];
			const struct spate_sv_shard *px = p ? &p->shards[v->stream_first[i] + k] : NULL;
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
	}
	fprintf(f, "\n%-8s %5s %-8s %6s %6s %12s\n", "WORKER", "CPU", "STATE", "BUSY", "TASKS",
		"LOOPS/s");
	for (uint32_t k = 0; k < v->n_workers; k++) {
		const struct spate_sv_worker *w = &v->workers[k];
		const struct spate_sv_worker *pw = p ? &p->workers[k] : NULL;
		fprintf(f, "%-8u %5d %-8s %5.1f%% %6u %12s\n", k, w->cpu, worker_state(w->state),
			100.0 * worker_busy(w, pw, v->mono_ns, p ? p->mono_ns : 0), w->tasks,
			si(pw ? rate(w->loops, pw->loops, dt) : 0, c2, sizeof(c2)));
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

static int take_or_say(const char *bus, struct spate_sv **v)
{
	int rc = spate_sv_take(bus, v);
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
	struct spate_sv *a = NULL, *b = NULL;

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
			spate_sv_free(a);
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
	spate_sv_free(a);
	spate_sv_free(b);
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
	struct spate_sv *prev = NULL;
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
		struct spate_sv *v = NULL;
		int r = spate_sv_take(bus, &v);
		if (r < 0) {
			printf("\033[H\033[2Jspate top - bus %s: %s; waiting for an engine\n", bus,
			       r == -ENOENT ? "no counters region" : strerror(-r));
			fflush(stdout);
		} else {
			sv_text(stdout, v, prev, true);
			spate_sv_free(prev);
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
	spate_sv_free(prev);
	return rc;
}
