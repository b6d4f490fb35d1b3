/* SPDX-License-Identifier: MIT */
/*
 * engine_threads.c - the engine's threads, split out of engine.c: the
 * control thread (checkpoint flush every CKPT_PERIOD_NS, counters, the
 * liveness watch of streams, workers and memory: ctl_main and what only it
 * calls) and the worker threads (worker_main, task locking, help()).
 *
 * Design. engine.c owns the engine's life cycle and starts these threads;
 * this file only runs them, on the struct spate_engine laid out in
 * engine_pvt.h. It calls nothing back in engine.c, so the modules import
 * one way (engine -> engine_threads) as tests/include_cycles.sh requires.
 * The design notes on checkpoints, liveness and timeouts are at the top of
 * engine.c.
 */
#include "spate_config.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "engine/checkpoint.h"
#include "engine/consumer.h"
#include "engine/persist.h"
#include "engine/plugin_host.h"
#include "engine/util.h"
#include "spate/engine.h"
#include "spate/provider.h"
#include "spate/slog.h"
#include "spate/stats.h"
#include "spate/topo.h"

#include "engine/engine_pvt.h"

/* ------------------------------------------------------------------------ */
/* Checkpoint files                                                         */
/* ------------------------------------------------------------------------ */

/* Write every consumer whose shard positions moved since the last write.
 * Serialized: the checkpoint thread and a deploy call it at the same time,
 * and both would write the same temporary file and ckpt_written. */
void spate_engine_ckpt_flush_all(struct spate_engine *e, bool force)
{
	uint64_t now = spate_mono_ns();

	pthread_mutex_lock(&e->ckpt_lock);
	for (uint32_t i = 0; i < e->nconsumers; i++) {
		struct spate_consumer *c = &e->consumers[i];
		uint32_t shards = spate_stream_shards(c->stream);
		uint64_t next[SPATE_STREAM_MAX_SHARDS];
		bool changed = false;

		if (!c->tasks)
			continue;
		/* checkpoint_interval: the file at most that often (at stop always). */
		if (!force && c->k->checkpoint_interval_ns &&
		    now - c->ckpt_file_ns < c->k->checkpoint_interval_ns)
			continue;
		for (uint32_t s = 0; s < shards; s++) {
			next[s] = spate_consumer_shard_next(c, s);
			if (next[s] != e->ckpt_written[i][s])
				changed = true;
		}
		if (!changed)
			continue;
		int rc = spate_ckpt_save(e->cfg->state_dir, c->stream, c->k->name, next);
		if (rc < 0) {
			spate_slog(SPATE_LOG_ERROR, NULL, "checkpoint of %s: %s", c->k->name,
					  strerror(-rc));
			continue;
		}
		memcpy(e->ckpt_written[i], next, shards * sizeof(uint64_t));
		c->ckpt_file_ns = now;
	}
	pthread_mutex_unlock(&e->ckpt_lock);
}

/* Counters region: the consumer-level figures, written by the control
 * thread (every 100 ms) and by stop after it joined: one writer at a time. */
void spate_engine_stats_consumers(struct spate_engine *e)
{
	for (uint32_t i = 0; e->stats && i < e->nconsumers; i++) {
		struct spate_consumer *c = &e->consumers[i];
		struct spate_stats_consumer *sc = spate_stats_consumer_at(e->stats, i);
		/* Relaxed: figures for display, like every counter of the region. */
		atomic_store_explicit(&sc->state, atomic_load_explicit(&c->state, memory_order_relaxed),
				      memory_order_relaxed);
		spate_stats_set(&sc->cold_start_ns,
				atomic_load_explicit(&c->cold_start_ns, memory_order_relaxed));
		spate_stats_set(&sc->first_batch_ns,
				atomic_load_explicit(&c->first_batch_ns, memory_order_relaxed));
		spate_stats_set(&sc->helped, atomic_load_explicit(&c->helped, memory_order_relaxed));
		pthread_mutex_lock(&c->lock);
		snprintf(sc->error, sizeof(sc->error), "%.95s", c->error);
		pthread_mutex_unlock(&c->lock);
	}
}

static void task_unlock(struct spate_task *t);

/*
 * The watchdog (control thread, every tick): a worker thread inside a
 * plugin's process() for longer than its consumer's timeout is given up.
 * Its delivery record moves IN -> LOST (a CAS against the worker's own
 * IN -> IDLE when process() returns: exactly one of them wins). The task
 * is then the watchdog's: spate_task_timed_out() hands the buffers the
 * stuck call may read to that thread, makes a fresh plugin state and
 * leaves the failed delivery to the retry rules; a new thread takes the
 * worker's tasks over, and the task's lock is released for it. The stuck
 * thread is detached, never cancelled (it may hold locks in plugin code);
 * if process() ever returns it frees what it was given and ends. While
 * the engine stops nothing is replaced: stop stops waiting for that thread,
 * and close leaves the plugins loaded (code still runs in them).
 */
static void watch_workers(struct spate_engine *e)
{
	uint64_t now = spate_mono_ns();

	for (uint32_t k = 0; k < e->nworkers; k++) {
		struct worker *w = &e->workers[k];
		struct spate_inflight *in = w->in;

		if (!in) /* (w->started is the stop thread's: not read here) */
			continue;
		/* Acquire: pairs with the worker's release store of IN. */
		uint64_t st = atomic_load_explicit(&in->state, memory_order_acquire);
		if ((st & 3) != SPATE_INFLIGHT_IN)
			continue;
		/* Relaxed (both): published by the release store of state (acquired
		 * above); if the worker has moved on since, the CAS below fails. */
		struct spate_task *t = atomic_load_explicit(&in->task, memory_order_relaxed);
		uint64_t since = atomic_load_explicit(&in->since, memory_order_relaxed);
		if (now < since || now - since < t->c->timeout_ns)
			continue;
		/* Acq_rel: pairs with the worker's CAS IN -> IDLE of the same
		 * delivery (same number): exactly one of them wins. */
		if (!atomic_compare_exchange_strong_explicit(&in->state, &st,
							     (st & ~3ull) | SPATE_INFLIGHT_CLAIMED,
							     memory_order_acq_rel,
							     memory_order_relaxed))
			continue;
		/* From here the old thread touches only `in` (and waits until
		 * spate_task_timed_out() is done with it: LOST). */
		atomic_fetch_add_explicit(&e->lost, 1, memory_order_relaxed);
		pthread_mutex_lock(&e->lock);
		bool stopping = atomic_load_explicit(&e->stop, memory_order_relaxed);
		pthread_mutex_unlock(&e->lock);
		spate_task_timed_out(t, in, now - since, stopping);
		pthread_mutex_lock(&e->lock);
		stopping = atomic_load_explicit(&e->stop, memory_order_relaxed);
		struct spate_inflight *fresh = stopping ? NULL : calloc(1, sizeof(*fresh));
		w->in = fresh; /* the old record is the stuck thread's */
		if (!fresh) {
			/* Stopping (or no memory): stop stops waiting for it. */
			atomic_store_explicit(&w->abandoned, 1, memory_order_release);
		} else {
			pthread_t old = w->th;
			if (pthread_create(&w->th, NULL, spate_engine_worker_main, w) == 0) {
				pthread_detach(old);
			} else {
				w->th = old;
				w->in = NULL;
				free(fresh);
				atomic_store_explicit(&w->abandoned, 1, memory_order_release);
				spate_slog(SPATE_LOG_ERROR, NULL,
					      "worker %u: no thread to replace the stuck one: its "
					      "tasks stop until a restart",
					      k);
			}
		}
		pthread_mutex_unlock(&e->lock);
		task_unlock(t); /* held by the stuck thread's poll */
	}
}

/* The process's resident set size, bytes (0: unknown). */
static uint64_t rss_bytes(void)
{
	unsigned long long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	if (!f)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/*
 * Memory (control thread, every tick): the process's RSS growth since the
 * last tick is charged to the consumers that delivered batches in it, in
 * proportion to their deliveries (plugins share the engine's heap: this is
 * an estimate, exact when one consumer runs). A consumer warns once at 80%
 * of its memory_limit and stops (FAILED, checkpoint at its last success)
 * past it; without a limit it warns once past 1 GiB.
 */
static void watch_memory(struct spate_engine *e)
{
	uint64_t rss = rss_bytes(), total = 0;
	uint64_t delta[64];

	if (!rss)
		return;
	if (!e->rss_last || rss <= e->rss_last) {
		e->rss_last = rss;
		return;
	}
	uint64_t grow = rss - e->rss_last;
	e->rss_last = rss;
	for (uint32_t i = 0; i < e->nconsumers && i < 64; i++) {
		struct spate_consumer *c = &e->consumers[i];
		struct spate_consumer_counts st;
		spate_consumer_sum(c, &st);
		delta[i] = st.batches - c->batches_seen;
		c->batches_seen = st.batches;
		total += delta[i];
	}
	for (uint32_t i = 0; total && i < e->nconsumers && i < 64; i++) {
		struct spate_consumer *c = &e->consumers[i];
		uint64_t limit = c->k->memory_limit;
		/* A plugin in processes of its own (a function): its provider
		 * enforces its memory; the engine's growth is not its doing.
		 * c->lib under c->lock: a hot deploy swaps it meanwhile. */
		char path[256];
		pthread_mutex_lock(&c->lock);
		bool own = spate_plugin_lib_flags(c->lib) & SPATE_PROVIDED_F_OWN_MEMORY;
		snprintf(path, sizeof(path), "%s", spate_plugin_lib_path(c->lib));
		pthread_mutex_unlock(&c->lock);
		if (own)
			continue;
		c->mem_charged += (uint64_t)((double)grow * (double)delta[i] / (double)total);
		uint64_t warn_at = limit ? limit / 10 * 8 : 1ull << 30;
		if (!c->mem_warned && c->mem_charged > warn_at) {
			c->mem_warned = true;
			spate_slog(SPATE_LOG_WARN, NULL,
				      "consumer %s (plugin %s): the engine grew by %" PRIu64
				      " MiB while it ran (RSS %" PRIu64 " MiB)%s",
				      c->k->name, path, c->mem_charged >> 20,
				      rss >> 20, limit ? ", near its memory_limit" : "");
		}
		if (limit && c->mem_charged > limit)
			spate_consumer_over_memory(c, c->mem_charged);
	}
}

void spate_engine_nap(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
	nanosleep(&ts, NULL);
}

/* Free the slots of dead readers and writers on every shard of @p s,
 * logging each with its pid. Thread: the control thread, or open (before
 * it runs). */
static void watch_stream(struct spate_engine *e, struct spate_stream *s)
{
	for (uint32_t k = 0; k < spate_stream_shards(s); k++) {
		struct spate_ring *r = spate_stream_ring(s, k);
		struct spate_ring_dead d[8], d2[8];
		int n = spate_ring_dead_slots(r, d, 8);
		if (n <= 0)
			continue;
		/* Dead twice, 10 ms apart, with the same owner: not a slot
		 * being claimed right now whose new owner is not written yet. */
		spate_engine_nap(10 * 1000 * 1000);
		int n2 = spate_ring_dead_slots(r, d2, 8), same = 0;
		for (int j = 0; j < n && j < 8; j++)
			for (int m = 0; m < n2 && m < 8; m++)
				same |= d[j].index == d2[m].index && d[j].pid == d2[m].pid &&
					d[j].writer == d2[m].writer;
		if (!same)
			continue;
		uint32_t nr = 0, nw = 0;
		int rc = spate_ring_reap(r, &nr, &nw);
		e->reaped_readers += nr;
		e->reaped_writers += nw;
		for (int j = 0; j < n && j < 8; j++)
			spate_slog(SPATE_LOG_WARN, NULL,
				      "stream %s/%u: %s slot %u of dead process %u freed (%" PRIu64
				      " reader and %" PRIu64 " writer slot(s) freed so far)",
				      spate_stream_name(s), k, d[j].writer ? "writer" : "reader",
				      d[j].index, d[j].pid, e->reaped_readers, e->reaped_writers);
		if (rc == 1)
			spate_slog(SPATE_LOG_WARN, NULL,
				      "stream %s/%u: gave back space claimed by dead writers and never "
				      "published",
				      spate_stream_name(s), k);
	}
}

void *spate_engine_ctl_main(void *arg)
{
	struct spate_engine *e = arg;
	struct timespec ts = { 0, (long)CKPT_PERIOD_NS };
	uint64_t last_watch = spate_mono_ns();

	e->rss_last = rss_bytes();
	/* Dead peers of an earlier run first: only now, with our consumers'
	 * readers in place at their checkpoints, so freeing the dead engine's
	 * readers of a memory-only stream lets no writer past a record a
	 * consumer still needs. */
	for (uint32_t i = 0; i < e->nstreams; i++)
		watch_stream(e, e->streams[i]);
	struct spate_stream *held0[SPATE_ENGINE_RUNTIME_STREAMS_MAX];
	uint32_t n0 = spate_engine_streams_hold(e, held0, SPATE_ENGINE_RUNTIME_STREAMS_MAX);
	for (uint32_t i = 0; i < n0; i++)
		watch_stream(e, held0[i]);
	spate_engine_streams_release(e, held0, n0);
	/* Relaxed: a flag; the join in stop orders everything after it. The
	 * control thread outlives the workers: it watches them while stop
	 * waits for them. */
	while (!atomic_load_explicit(&e->ctl_stop, memory_order_relaxed)) {
		nanosleep(&ts, NULL);
		watch_workers(e);
		spate_engine_ckpt_flush_all(e, false);
		spate_engine_stats_consumers(e);
		watch_memory(e);
		uint64_t now = spate_mono_ns();
		if (now - last_watch >= WATCH_PERIOD_NS) {
			struct spate_stream *held[SPATE_ENGINE_RUNTIME_STREAMS_MAX];
			last_watch = now;
			for (uint32_t i = 0; i < e->nstreams; i++)
				watch_stream(e, e->streams[i]);
			/* Run-time streams: held (a removal waits for us). */
			uint32_t n = spate_engine_streams_hold(e, held, SPATE_ENGINE_RUNTIME_STREAMS_MAX);
			for (uint32_t i = 0; i < n; i++)
				watch_stream(e, held[i]);
			spate_engine_streams_release(e, held, n);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                  */
/* ------------------------------------------------------------------------ */


/* A task is polled by one worker at a time: its owner, or a helper. */
static bool task_lock(struct spate_task *t)
{
	uint32_t z = 0;
	/* Acquire: pairs with the release in task_unlock(): everything the
	 * previous poller did to the task is visible to us. */
	return atomic_compare_exchange_strong_explicit(&t->busy, &z, 1, memory_order_acquire,
						       memory_order_relaxed);
}

static void task_unlock(struct spate_task *t)
{
	/* Release: pairs with the acquire CAS in task_lock(). */
	atomic_store_explicit(&t->busy, 0, memory_order_release);
}

/* Records published on the task's shard that it has not handled yet. */
static uint64_t task_lag(const struct spate_task *t)
{
	/* Acquire: pairs with the release store after a batch (consumer.c). */
	uint64_t next = atomic_load_explicit(&t->next_seq, memory_order_acquire);
	uint64_t tail = spate_ring_tail_seq(spate_stream_ring(t->c->stream, t->shard));
	return next == UINT64_MAX || tail <= next ? 0 : tail - next;
}

/*
 * An idle worker helps: it polls a task of another worker whose lag has
 * grown past two batches, if its consumer's concurrency allows more workers.
 * So a worker that owns several hot shards is not the bottleneck while
 * another idles: the work spreads as lag grows and workers park again when
 * it is gone. Returns 1 if it handled records.
 */
static int help(struct spate_engine *e, struct worker *w, uint64_t now)
{
	for (uint32_t i = 0; i < e->nall; i++) {
		struct spate_task *t = e->all[(w->help_from + i) % e->nall];
		struct spate_consumer *c = t->c;

		if (t->owner == w->index || (c->k->concurrency && c->k->concurrency < e->nworkers) ||
		    atomic_load_explicit(&c->paused, memory_order_seq_cst) ||
		    task_lag(t) < 2ull * c->k->batch_size || !task_lock(t))
			continue;
		int r = t->pl ? spate_task_poll(t, now) : 0;
		if (r == SPATE_TASK_LOST)
			return r;
		task_unlock(t);
		if (r > 0) {
			atomic_fetch_add_explicit(&c->helped, 1, memory_order_relaxed);
			w->help_from = (w->help_from + i) % e->nall; /* stay on it */
			return 1;
		}
	}
	return 0;
}

void *spate_engine_worker_main(void *arg)
{
	struct worker *w = arg;
	struct spate_engine *e = w->e;
	uint64_t idle_ns = 1000;
	/* With one worker nobody helps: no task lock needed. */
	const bool shared = e->nworkers > 1;
	/* Its delivery record (set before the thread was created) and an
	 * alternate stack for the crash handler (a stack overflow in a plugin
	 * is still reported). */
	spate_inflight_set(w->in);
	void *altstack = spate_crash_altstack();

	if (w->cpu >= 0 && e->topo)
		spate_topo_pin_self(e->topo, w->cpu);
	if (w->st) {
		w->st_prev.at = spate_mono_ns();
		spate_stats_set(&w->st->since_ns, w->st_prev.at);
	}
	while (!atomic_load_explicit(&e->stop, memory_order_relaxed)) {
		uint64_t now = spate_mono_ns();
		uint64_t soonest = UINT64_MAX;
		int work = 0;

		for (uint32_t i = 0; i < w->ntasks; i++) {
			struct spate_task *t = w->tasks[i];
			/* Seq_cst: pairs with deploy's seq_cst store of paused and
			 * its reads of epoch (see spate_engine_deploy). */
			if (atomic_load_explicit(&t->c->paused, memory_order_seq_cst) ||
			    (shared && !task_lock(t)))
				continue;
			if (t->pl) {
				int r = spate_task_poll(t, now);
				if (r == SPATE_TASK_LOST)
					goto lost; /* the watchdog owns the task and worker */
				if (r > 0)
					work = 1;
				uint64_t d = spate_task_deadline(t, now);
				if (d < soonest)
					soonest = d;
			}
			if (shared)
				task_unlock(t);
		}
		if (!work && shared)
			work = help(e, w, now);
		if (work == SPATE_TASK_LOST)
			goto lost;
		atomic_fetch_add_explicit(&w->epoch, 1, memory_order_seq_cst);
		if (w->st) /* counters region: this worker is the slot's one writer */
			spate_stats_worker_round(w->st, &w->st_prev, now, work);
		if (work || soonest == 0) {
			idle_ns = 1000;
			continue;
		}
		switch (w->wait) {
		case SPATE_RING_WAIT_BUSY:
			spate_cpu_relax();
			break;
		case SPATE_RING_WAIT_YIELD:
			sched_yield();
			break;
		case SPATE_RING_WAIT_BLOCK: {
			uint64_t cap = soonest < 10000000ull ? soonest : 10000000ull;
			struct spate_task *t = w->tasks[0];
			bool slept = false;
			/* One task: sleep on its shard's futex, holding the task
			 * (nobody needs to help a task with nothing to do). paused
			 * first: deploy rewrites t->pl while it is set. */
			if (w->ntasks == 1 &&
			    !atomic_load_explicit(&t->c->paused, memory_order_seq_cst) &&
			    (!shared || task_lock(t))) {
				/* A task reading the log has work until it
				 * catches up: no sleep (spate_source_wait). */
				if (t->pl && !t->n_raw && !t->window_start)
					slept = spate_source_wait(&t->src, cap);
				if (shared)
					task_unlock(t);
			}
			if (!slept) {
				spate_engine_nap(idle_ns < cap ? idle_ns : cap);
				if (idle_ns < 1000000)
					idle_ns *= 2;
			}
			break;
		}
		}
	}
	if (w->st)
		spate_stats_worker_stopped(w->st);
lost: /* given up by the watchdog: w is another thread's; only our own stack */
	if (altstack) {
		stack_t off = { .ss_flags = SS_DISABLE };
		sigaltstack(&off, NULL);
		free(altstack);
	}
	return NULL;
}
