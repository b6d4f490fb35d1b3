/* SPDX-License-Identifier: MIT */
/*
 * stats_view.c - snapshots of a bus for monitors (spate/stats.h,
 * spate_stats_view_take()): the model under `spate stat`, `spate top`
 * (engine/cli_stat.c) and the Prometheus endpoint (engine/metrics_http.c).
 *
 * Design. A snapshot attaches the bus's counters region read-only
 * (stats.c), copies every counter once, and adds what the rings themselves
 * show for free: records and bytes appended (tail_seq and tail against the
 * bases the engine recorded), the head sequence, the oldest record still in
 * the ring (the batch header at trim, read and then trim re-checked, so a
 * header overwritten meanwhile is not reported), and each task reader's
 * released position (lag in bytes). Rates are left to the caller: the
 * difference of two snapshots over their mono_ns.
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
 * consumer handled, 0 when nothing is waiting. Slots the region's header
 * does not cover (a scribbled stream or consumer slot) are shown empty
 * rather than read out of bounds.
 */
#include "spate_config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spate/ring.h"
#include "spate/stats.h"
#include "spate/stream.h"

const char *spate_stats_state_name(uint32_t s)
{
	switch (s) {
	case SPATE_STATS_RUNNING: return "running";
	case SPATE_STATS_STOPPED: return "stopped";
	case SPATE_STATS_FAILED: return "failed";
	default: return "unknown";
	}
}

void spate_stats_view_free(struct spate_stats_view *v)
{
	if (!v)
		return;
	for (uint32_t i = 0; v->consumers && i < v->n_consumers; i++) {
		free(v->consumers[i].latency);
		free(v->consumers[i].process);
		free(v->consumers[i].batch);
		if (v->consumers[i].sup) {
			free(v->consumers[i].sup->init);
			free(v->consumers[i].sup->invoke);
			free(v->consumers[i].sup);
		}
	}
	for (uint32_t i = 0; v->stream_fsync && i < v->n_streams; i++)
		free(v->stream_fsync[i]);
	free(v->stream_fsync);
	free(v->sources);
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

static struct spate_hist *sup_hist_dup(const struct spate_stats *st, uint64_t i)
{
	struct spate_hist *h = malloc(sizeof(*h));
	const struct spate_hist *src = spate_stats_sup_hist_at(st, i);

	if (h && (!src || spate_hist_snapshot(h, src) < 0))
		spate_hist_init(h);
	return h;
}

/* Relaxed loads throughout: the region's counters are figures for display
 * (spate/stats.h); each is read once into the snapshot. */
#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* Copies the counters region section by section (engine, streams,
 * consumers, tasks, histograms) into one snapshot: a flat sequence whose
 * length is the region's (one goto label frees it all when memory runs out). */
int spate_stats_view_take(const char *bus, struct spate_stats_view **out)
{
	struct spate_stats *st;
	struct spate_stats_view *v;
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

	/* Streams and shards are listed compactly: a reserved run-time slot
	 * that is empty (or changing right now) is left out, so the view's
	 * stream j is not always slot j. The configuration's streams come
	 * first and are never empty: consumers' stream indexes stay right. */
	uint32_t nv = 0, nsh = 0;
	for (uint32_t i = 0; i < h->n_streams; i++) {
		struct spate_stats_stream_desc d;
		struct spate_stream *sm = NULL;
		if (spate_stats_stream_read(st, i, &d) != 1)
			continue;
		uint32_t j = nv++;
		memcpy(v->stream_names[j], d.name, sizeof(v->stream_names[j]));
		uint32_t n = d.shards, first = d.first_shard, vfirst = nsh;
		if ((uint64_t)nsh + n > v->n_shards)
			n = 0; /* a scribbled slot: show nothing rather than wrong shards */
		nsh += n;
		v->stream_shards[j] = n;
		v->stream_first[j] = vfirst;
		v->stream_fsync[j] = hist_dup(st, d.fsync_hist);
		if (!v->stream_fsync[j])
			goto nomem;
		if (spate_stream_attach(bus, v->stream_names[j], &sm) < 0)
			sm = NULL;
		for (uint32_t k = 0; k < n; k++) {
			const struct spate_stats_shard *ss = spate_stats_shard_at(st, first + k);
			struct spate_stats_view_shard *o = &v->shards[vfirst + k];
			uint64_t base_seq = __atomic_load_n(&ss->base_seq, __ATOMIC_RELAXED);
			uint64_t base_pos = __atomic_load_n(&ss->base_pos, __ATOMIC_RELAXED);
			o->stream = j;
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
				uint64_t tail, tseq;
				spate_ring_tail(r, &tail, &tseq);
				o->ring_ok = true;
				o->head_seq = tseq;
				o->records_in = tseq >= base_seq ? tseq - base_seq : 0;
				o->bytes_in = tail >= base_pos ? tail - base_pos : 0;
				(void)spate_ring_oldest(r, &o->oldest_seq, &o->oldest_ts);
			}
		}
		first = vfirst; /* below: the view's shards */
		/* Task lag needs the same rings: done here while attached. */
		for (uint32_t t = 0; t < v->n_tasks; t++) {
			const struct spate_stats_task *ts = spate_stats_task_at(st, t);
			const struct spate_stats_consumer *c = spate_stats_consumer_at(st, ts->consumer);
			if (!c || c->stream != i)
				continue;
			struct spate_stats_view_task *o = &v->tasks[t];
			uint32_t shard = ts->shard, slot = LD(ts->reader_slot);
			struct spate_ring *r = sm && shard < spate_stream_shards(sm)
						       ? spate_stream_ring(sm, shard) : NULL;
			if (!r)
				continue;
			uint64_t tail, tseq, ck = LD(ts->checkpoint);
			struct spate_ring_reader_info ri;
			spate_ring_tail(r, &tail, &tseq);
			if (spate_ring_reader_info(r, slot, &ri) == 0) {
				o->lag_bytes = tail > ri.pos ? tail - ri.pos : 0;
				if (ck == UINT64_MAX)
					ck = ri.seq;
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
	v->n_streams = nv;
	v->n_shards = nsh;
	for (uint32_t i = 0; i < v->n_consumers; i++) {
		const struct spate_stats_consumer *c = spate_stats_consumer_at(st, i);
		struct spate_stats_view_consumer *o = &v->consumers[i];
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
		const struct spate_stats_sup *x = spate_stats_sup_of(st, i);
		if (x) {
			struct spate_stats_view_sup *y = calloc(1, sizeof(*y));
			if (!y)
				goto nomem;
			o->sup = y;
			y->invocations = LD(x->invocations);
			y->errors = LD(x->errors);
			y->timeouts = LD(x->timeouts);
			y->crashes = LD(x->crashes);
			y->cold_starts = LD(x->cold_starts);
			y->init_fails = LD(x->init_fails);
			y->spawns = LD(x->spawns);
			y->oom_kills = LD(x->oom_kills);
			y->init_ns = LD(x->init_ns);
			y->invoke_ns = LD(x->invoke_ns);
			y->alive = LD(x->alive);
			y->procs = x->procs;
			y->mem_mode = x->mem_mode;
			y->init = sup_hist_dup(st, x->init_hist);
			y->invoke = sup_hist_dup(st, x->invoke_hist);
			if (!y->init || !y->invoke)
				goto nomem;
		}
	}
	for (uint32_t t = 0; t < v->n_tasks; t++) {
		const struct spate_stats_task *ts = spate_stats_task_at(st, t);
		struct spate_stats_view_task *o = &v->tasks[t];
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
		struct spate_stats_view_worker *o = &v->workers[k];
		o->loops = LD(w->loops);
		o->busy_ns = LD(w->busy_ns);
		o->parked_ns = LD(w->parked_ns);
		o->since_ns = LD(w->since_ns);
		o->state = atomic_load_explicit(&w->state, memory_order_relaxed);
		o->tasks = w->tasks;
		o->cpu = w->cpu;
	}
	v->sources = calloc(h->n_sources + 1, sizeof(*v->sources));
	if (!v->sources)
		goto nomem;
	v->n_sources = 0;
	for (uint32_t k = 0; k < h->n_sources; k++) {
		const struct spate_stats_source_slot *x = spate_stats_source_at(st, k);
		/* Relaxed: a display filter (a consumer's status slot its
		 * plugin does not use stays out of the view). */
		if (atomic_load_explicit(&x->state, memory_order_relaxed) == SPATE_STATS_SOURCE_UNUSED)
			continue;
		struct spate_stats_view_source *o = &v->sources[v->n_sources++];
		memcpy(o->name, x->name, sizeof(o->name));
		o->name[SPATE_STATS_NAME_MAX] = '\0';
		memcpy(o->type, x->type, sizeof(o->type));
		o->type[SPATE_STATS_NAME_MAX] = '\0';
		o->stream = x->stream;
		/* Relaxed: a state for display. */
		o->state = atomic_load_explicit(&x->state, memory_order_relaxed);
		/* Acquire: pairs with spate_stats_source_counter()'s release, so
		 * the names below it are whole. */
		o->n_counters = atomic_load_explicit(&x->n_counters, memory_order_acquire);
		if (o->n_counters > SPATE_STATS_SOURCE_COUNTERS)
			o->n_counters = SPATE_STATS_SOURCE_COUNTERS;
		for (uint32_t c = 0; c < o->n_counters; c++) {
			memcpy(o->counter_names[c], x->counter_names[c], sizeof(o->counter_names[c]));
			o->counter_names[c][SPATE_STATS_COUNTER_NAME_MAX] = '\0';
			o->counters[c] = LD(x->counters[c]);
		}
		for (size_t c = 0; c + 1 < sizeof(o->error); c++) {
			o->error[c] = ((const volatile char *)x->error)[c];
			if (!o->error[c])
				break;
		}
		o->error[sizeof(o->error) - 1] = '\0';
	}
	spate_stats_close(st);
	*out = v;
	return 0;
nomem:
	spate_stats_view_free(v);
	spate_stats_close(st);
	return -ENOMEM;
}

const struct spate_hist *spate_stats_view_hist(const struct spate_stats_view *v, uint32_t c,
					       enum spate_stats_hist_kind kind)
{
	const struct spate_stats_view_consumer *k = &v->consumers[c];
	return kind == SPATE_STATS_HIST_LATENCY	  ? k->latency
	       : kind == SPATE_STATS_HIST_PROCESS ? k->process
						  : k->batch;
}

void spate_stats_view_lag(const struct spate_stats_view *v, uint32_t c, uint32_t shard,
			  uint64_t *records, uint64_t *bytes, uint64_t *age_ms)
{
	const struct spate_stats_view_consumer *k = &v->consumers[c];

	*records = *bytes = *age_ms = 0;
	for (uint32_t s = 0; s < k->shards; s++) {
		uint64_t r = 0, b = 0, a = 0;
		if (shard != UINT32_MAX && s != shard)
			continue;
		for (uint32_t l = 0; l < k->lanes; l++) {
			const struct spate_stats_view_task *x = &v->tasks[k->first_task + s * k->lanes + l];
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

double spate_stats_view_task_catchup(const struct spate_stats_view_task *x)
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

uint64_t spate_stats_view_checkpoint(const struct spate_stats_view *v, uint32_t c, uint32_t shard)
{
	const struct spate_stats_view_consumer *k = &v->consumers[c];
	uint64_t ck = UINT64_MAX;

	for (uint32_t l = 0; l < k->lanes && shard < k->shards; l++) {
		uint64_t q = v->tasks[k->first_task + shard * k->lanes + l].checkpoint;
		ck = q < ck ? q : ck;
	}
	return ck;
}

