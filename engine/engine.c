/* SPDX-License-Identifier: MIT */
/*
 * engine.c - the embedded engine: streams from the configuration, consumers
 * and their tasks, worker threads pinned per a placement plan, a control
 * thread that persists checkpoints, and hot deploy.
 *
 * Design. Every (consumer, shard, lane) is a task (consumer.c). Tasks are
 * dealt round-robin to W workers, W = min(tasks, cores in the plan, and
 * placement.busy_threads_max), each pinned to its own core where there are
 * enough, so there are never more spinning threads than cores; on a 2-core
 * machine a worker simply polls many tasks in turn. A worker waits the way
 * the most eager of its consumers asks (busy > yield > block); a blocking
 * worker with one task sleeps on the shard's futex, one with several sleeps
 * in short growing naps bounded by its tasks' windows and back-offs.
 *
 * Checkpoints: tasks publish the next sequence number per shard in the
 * stream's shared checkpoint table after every batch; the control thread
 * writes changed ones to their files every 100 ms and at stop
 * (checkpoint.c: the table, the files and where a restart resumes). A
 * restart resumes from the file: at-least-once, replaying at most what was
 * handled in the last 100 ms before a crash.
 *
 * Liveness: the control thread also watches every shard of every stream
 * (as it starts, once the consumers' readers are in place, then every
 * WATCH_PERIOD_NS): the reader and
 * writer slots of processes that died (a `spate tail -f` killed, a producer
 * killed mid-claim) are freed with spate_ring_reap(), each one logged with
 * its pid and counted, so a dead peer never holds writers back for good.
 * Persisted shards' kept gates are not peers: reaping skips them.
 *
 * Hot deploy pauses the consumer's tasks (workers skip them, and every
 * worker's loop counter moving twice proves none is inside one), flushes and
 * finis the old states, loads the new image from a private copy, inits, and
 * resumes. A batch in flight is redelivered to the new build.
 *
 * The control thread also watches the workers (a process() call past its
 * consumer's timeout is given up and its thread replaced: watch_workers)
 * and the process's memory (memory_limit: watch_memory), and outlives the
 * workers at stop, so a stop waits for a stuck plugin at most its timeout.
 *
 * Sources (`sources:`, source_types.c) start last in spate_engine_start()
 * and stop first in spate_engine_stop().
 *
 * Limits: a plugin runs in the engine's process (a crash kills it, after a
 * line naming it); a stream targeted by forward/on_failure gets one
 * engine-side producer.
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
#include "engine/provider_pvt.h"
#include "engine/util.h"
#include "spate/engine.h"
#include "spate/slog.h"
#include "spate/stats.h"
#include "spate/topo.h"

#include "engine/engine_pvt.h"

static int stream_index(const struct spate_engine *e, const char *name)
{
	return spate_engine_stream_index(e, name);
}

static int cpu_list(struct spate_engine *e, int *cpus, uint32_t max)
{
	const struct spate_config_placement *pl = &e->cfg->placement;
	uint32_t n = 0;

	if (pl->n_cores) {
		for (uint32_t i = 0; i < pl->n_cores && n < max; i++)
			cpus[n++] = (int)pl->cores[i];
		return (int)n;
	}
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int c = 0; c < CPU_SETSIZE && n < max; c++)
			if (CPU_ISSET(c, &set))
				cpus[n++] = c;
	}
	if (!n)
		cpus[n++] = -1;
	return (int)n;
}

/* Persister threads go to the last CPUs of the plan (workers are dealt from
 * the first), sharing them with workers when there are fewer CPUs than
 * threads: they sleep in ring waits and naps when the disk keeps up. */
static size_t plan_persister(struct spate_engine *e, const int *cpus, uint32_t ncpu, char *buf,
			     size_t len)
{
	size_t off = 0;
	struct spate_persister *p = &e->persist;

	if (!p->n || !len)
		return 0;
	p->nthreads = e->cfg->placement.persist_threads ? e->cfg->placement.persist_threads : 1;
	if (p->nthreads > p->n)
		p->nthreads = p->n;
	if (p->nthreads > SPATE_PERSIST_MAX_THREADS)
		p->nthreads = SPATE_PERSIST_MAX_THREADS;
	for (uint32_t k = 0; k < p->nthreads && off < len; k++) {
		p->t[k].cpu = spate_persist_cpu(cpus, ncpu, k);
		off += (size_t)snprintf(buf + off, len - off, "  persister %u -> cpu %d:", k,
					p->t[k].cpu);
		for (uint32_t i = k; i < p->n && off < len; i += p->nthreads)
			off += (size_t)snprintf(buf + off, len - off, " %s/%u",
						spate_stream_name(p->sh[i].s), p->sh[i].shard);
		if (off < len)
			off += (size_t)snprintf(buf + off, len - off, "\n");
	}
	return off < len ? off : len - 1;
}

static int plan_workers(struct spate_engine *e)
{
	int cpus[MAX_WORKERS];
	uint32_t ncpu = (uint32_t)cpu_list(e, cpus, MAX_WORKERS);
	uint32_t ntasks = 0, max = e->cfg->placement.busy_threads_max;
	size_t off = 0;

	for (uint32_t i = 0; i < e->nconsumers; i++)
		ntasks += e->consumers[i].ntasks;
	if (!ntasks) {
		off = (size_t)snprintf(e->plan, sizeof(e->plan), "placement: no consumers\n");
		plan_persister(e, cpus, ncpu, e->plan + off, sizeof(e->plan) - off);
		return 0;
	}
	uint32_t nw = ntasks < ncpu ? ntasks : ncpu;
	if (max && nw > max)
		nw = max;
	if (!nw)
		nw = 1;
	e->workers = calloc(nw, sizeof(*e->workers));
	e->all = calloc(ntasks, sizeof(*e->all));
	if (!e->workers || !e->all)
		return -ENOMEM;
	e->nworkers = nw;
	for (uint32_t k = 0; k < nw; k++) {
		e->workers[k].e = e;
		e->workers[k].index = k;
		e->workers[k].help_from = k * (ntasks / nw);
		e->workers[k].cpu = cpus[k % ncpu];
		e->workers[k].wait = SPATE_RING_WAIT_BLOCK;
		e->workers[k].tasks = calloc(ntasks, sizeof(struct spate_task *));
		if (!e->workers[k].tasks)
			return -ENOMEM;
	}
	uint32_t base = 0;
	for (uint32_t i = 0; i < e->nconsumers; i++) {
		struct spate_consumer *c = &e->consumers[i];
		/* concurrency bounds how many workers serve this consumer. */
		uint32_t k = c->k->concurrency && c->k->concurrency < nw ? c->k->concurrency : nw;
		for (uint32_t t = 0; t < c->ntasks; t++) {
			struct worker *w = &e->workers[(base + t % k) % nw];
			c->tasks[t].owner = w->index;
			e->all[e->nall++] = &c->tasks[t];
			w->tasks[w->ntasks++] = &c->tasks[t];
			if (c->k->wait < w->wait)
				w->wait = c->k->wait; /* BUSY < YIELD < BLOCK: the most eager wins */
		}
		base += k;
	}
	static const char *waits[] = { "busy", "yield", "block" };
	off += (size_t)snprintf(e->plan + off, sizeof(e->plan) - off,
				"placement: %u worker(s) for %u task(s) on %u cpu(s)\n", nw, ntasks, ncpu);
	off += plan_persister(e, cpus, ncpu, e->plan + off, sizeof(e->plan) - off);
	for (uint32_t k = 0; k < nw && off < sizeof(e->plan); k++) {
		struct worker *w = &e->workers[k];
		off += (size_t)snprintf(e->plan + off, sizeof(e->plan) - off, "  worker %u -> cpu %d (%s):",
					k, w->cpu, waits[w->wait]);
		for (uint32_t i = 0; i < w->ntasks && off < sizeof(e->plan); i++) {
			struct spate_task *t = w->tasks[i];
			off += (size_t)snprintf(e->plan + off, sizeof(e->plan) - off, " %s[%s/%u%s]",
						t->c->k->name, spate_stream_name(t->c->stream), t->shard,
						t->c->lanes > 1 ? "+lane" : "");
		}
		if (off < sizeof(e->plan))
			off += (size_t)snprintf(e->plan + off, sizeof(e->plan) - off, "\n");
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Open / start / stop                                                      */
/* ------------------------------------------------------------------------ */

/* One engine per bus: the lock on <state_dir>/engine.lock. A second engine
 * is refused at once (within the lock's 10 ms retry), naming the holder. */
static int bus_lock(struct spate_engine *e, char *err, size_t errlen)
{
	pid_t holder = 0;
	int rc = spate_engine_lock(e->cfg->state_dir, &e->bus_lock, &holder);

	if (rc == -EBUSY)
		snprintf(err, errlen, "bus %s: another live engine runs (pid %ld holds %s/%s)", e->cfg->bus,
			 (long)holder, e->cfg->state_dir, SPATE_ENGINE_LOCK_FILE);
	else if (rc < 0)
		snprintf(err, errlen, "state_dir %s: %s: %s", e->cfg->state_dir,
			 SPATE_ENGINE_LOCK_FILE, strerror(-rc));
	return rc;
}

/*
 * The counters region <bus>..stats (spate/stats.h): one slot per stream
 * shard, consumer, task and worker. Off with metrics.counters: off or
 * SPATE_STATS=off in the environment; a failure to create it only turns it
 * off (said in the log): counters never stop a bus.
 */
/* Whether a consumer runs in supervised processes (a function, or a plugin
 * with isolation: process): it gets a sup slot in the counters region. */
static bool consumer_supervised(const struct spate_config_consumer *k)
{
	return k->function || k->isolation == SPATE_CONFIG_ISOLATION_PROCESS;
}

static void stats_open(struct spate_engine *e)
{
	/* Room for run-time streams too (spate_engine_stream_add), fixed now. */
	struct spate_stats_shape sh = { .n_streams = e->nstreams + SPATE_ENGINE_RUNTIME_STREAMS_MAX,
					.n_shards = SPATE_ENGINE_RUNTIME_SHARDS_MAX,
					.n_consumers = e->nconsumers, .n_workers = e->nworkers,
					.n_sources = e->nsources };
	const char *env = getenv("SPATE_STATS");
	uint64_t seq[SPATE_STREAM_MAX_SHARDS], pos[SPATE_STREAM_MAX_SHARDS];
	uint32_t *slots = NULL;
	int rc;

	if (e->cfg->metrics.counters == SPATE_CONFIG_COUNTERS_OFF || (env && !strcmp(env, "off")))
		return;
	for (uint32_t i = 0; i < e->nstreams; i++)
		sh.n_shards += spate_stream_shards(e->streams[i]);
	for (uint32_t i = 0; i < e->nconsumers; i++) {
		sh.n_tasks += e->consumers[i].ntasks;
		if (consumer_supervised(e->consumers[i].k))
			sh.n_sup++;
		else
			sh.n_sources++; /* its plugin's status slot (spate/plugin.h) */
	}
	rc = spate_stats_create(e->cfg->bus, &sh, &e->stats);
	if (rc < 0)
		goto fail;
	for (uint32_t i = 0; i < e->nstreams; i++) {
		uint32_t n = spate_stream_shards(e->streams[i]);
		for (uint32_t k = 0; k < n; k++) {
			spate_ring_tail(spate_stream_ring(e->streams[i], k), &pos[k], &seq[k]);
		}
		rc = spate_stats_add_stream(e->stats, spate_stream_name(e->streams[i]), n, seq, pos);
		if (rc < 0)
			goto fail;
	}
	for (uint32_t i = 0; i < e->nconsumers; i++) {
		struct spate_consumer *c = &e->consumers[i];
		free(slots);
		slots = calloc(c->ntasks ? c->ntasks : 1, sizeof(*slots));
		if (!slots) {
			rc = -ENOMEM;
			goto fail;
		}
		for (uint32_t t = 0; t < c->ntasks; t++)
			slots[t] = spate_source_reader_slot(&c->tasks[t].src);
		rc = spate_stats_add_consumer(e->stats, c->k->name, spate_plugin_lib_name(c->lib),
					      (uint32_t)stream_index(e, spate_stream_name(c->stream)),
					      c->lanes, slots);
		if (rc < 0)
			goto fail;
		/* A supervised consumer's processes: its door binds its
		 * supervisor to this slot (by the consumer's name). */
		if (consumer_supervised(c->k) && spate_stats_add_sup(e->stats, (uint32_t)rc, 0) < 0)
			goto fail;
		uint32_t first = spate_stats_consumer_at(e->stats, (uint32_t)rc)->first_task;
		for (uint32_t t = 0; t < c->ntasks; t++) {
			struct spate_stats_tref ref;
			spate_stats_task_ref(e->stats, first + t, &ref);
			spate_consumer_task_stats(c, t, &ref);
		}
	}
	for (uint32_t i = 0; i < e->persist.n; i++) {
		struct spate_persist_shard *x = &e->persist.sh[i];
		spate_stats_shard_ref(e->stats, (uint32_t)stream_index(e, spate_stream_name(x->s)),
				      x->shard, &x->st);
	}
	for (uint32_t k = 0; k < e->nworkers; k++) {
		struct worker *w = &e->workers[k];
		w->st = spate_stats_worker_at(e->stats, k);
		w->st->cpu = w->cpu;
		w->st->tasks = w->ntasks;
	}
	for (uint32_t i = 0; i < e->nsources; i++) { /* the region's slot replaces the own one */
		struct spate_stats_source_slot *slot = spate_stats_source_at(e->stats, i);
		memcpy(slot->name, e->sources[i].own->name, sizeof(slot->name));
		memcpy(slot->type, e->sources[i].own->type, sizeof(slot->type));
		slot->stream = e->sources[i].own->stream;
		e->sources[i].st = slot;
	}
	/* In-process plugins' status slots, after the sources; unused (out of
	 * every view) until the plugin names a figure or sets a state. Bound
	 * before the plugins' inits (spate_engine_start). */
	for (uint32_t i = 0, k = e->nsources; i < e->nconsumers; i++) {
		struct spate_consumer *c = &e->consumers[i];
		if (consumer_supervised(c->k))
			continue;
		struct spate_stats_source_slot *slot = spate_stats_source_at(e->stats, k++);
		snprintf(slot->name, sizeof(slot->name), "%s", c->k->name);
		snprintf(slot->type, sizeof(slot->type), "consumer:%s", spate_plugin_lib_name(c->lib));
		slot->stream = (uint32_t)stream_index(e, spate_stream_name(c->stream));
		slot->state = SPATE_STATS_SOURCE_UNUSED; /* before publish */
		c->status = slot;
	}
	spate_producers_set_stats(&e->producers, e->stats); /* on_failure ones are open already */
	spate_engine_streams_stats(e); /* run-time streams: reserved slots */
	free(slots);
	spate_engine_stats_consumers(e);
	spate_stats_publish(e->stats);
	return;
fail:
	free(slots);
	for (uint32_t i = 0; i < e->nconsumers; i++) /* back to their own counters */
		for (uint32_t t = 0; t < e->consumers[i].ntasks; t++)
			spate_consumer_task_stats(&e->consumers[i], t, NULL);
	for (uint32_t k = 0; k < e->nworkers; k++)
		e->workers[k].st = NULL;
	for (uint32_t i = 0; i < e->nsources; i++)
		e->sources[i].st = e->sources[i].own;
	for (uint32_t i = 0; i < e->nconsumers; i++)
		e->consumers[i].status = e->consumers[i].own_status;
	spate_stats_close(e->stats);
	e->stats = NULL;
	spate_slog(SPATE_LOG_WARN, NULL, "counters region of bus %s: %s; running without it",
		      e->cfg->bus, strerror(-rc));
}

/* The engine's constructor: each resource it acquires (the lock, streams,
 * the persister, consumers, workers, the counters region) is undone by the
 * goto labels at its end (the house pattern), hence its length. */
int spate_engine_open(const struct spate_config *cfg, struct spate_engine **out, char *err,
		      size_t errlen)
{
	struct spate_engine *e;
	int rc;

	if (!cfg || !out)
		return -EINVAL;
	rc = spate_config_validate(cfg, err, errlen);
	if (rc < 0)
		return rc;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&e->ckpt_lock, NULL);
	e->cfg = (struct spate_config *)cfg;
	if (spate_topo_open(&e->topo) < 0)
		e->topo = NULL; /* pinning falls back to none; said in the plan */
	if (spate_engine_streams_init(e) < 0) {
		free(e->ents);
		pthread_mutex_destroy(&e->lock);
		pthread_mutex_destroy(&e->ckpt_lock);
		pthread_mutex_destroy(&e->st_lock);
		free(e);
		return -ENOMEM;
	}
	rc = spate_util_mkdir_p(cfg->state_dir, 0700);
	if (rc < 0) {
		snprintf(err, errlen, "state_dir %s: %s", cfg->state_dir, strerror(-rc));
		goto err;
	}
	rc = bus_lock(e, err, errlen); /* before anything is mapped */
	if (rc < 0)
		goto err;
	e->streams = calloc(cfg->n_streams, sizeof(*e->streams));
	e->consumers = calloc(cfg->n_consumers ? cfg->n_consumers : 1, sizeof(*e->consumers));
	e->ckpt_written = calloc(cfg->n_consumers ? cfg->n_consumers : 1, sizeof(uint64_t *));
	if (!e->streams || !e->consumers || !e->ckpt_written) {
		rc = -ENOMEM;
		goto err;
	}
	for (uint32_t i = 0; i < cfg->n_streams; i++) {
		rc = spate_engine_open_stream(e, &e->persist, &cfg->streams[i], &e->streams[i], err,
					      errlen);
		if (rc < 0)
			goto err;
		e->nstreams++;
		rc = spate_engine_claim_stream(e, e->streams[i], err, errlen);
		if (rc < 0)
			goto err;
	}
	/* Run-time streams of earlier runs (definitions in state_dir). */
	rc = spate_engine_streams_load(e, err, errlen);
	if (rc < 0)
		goto err;
	rc = spate_producers_init(&e->producers, e->streams, e->nstreams);
	if (rc < 0)
		goto err;
	for (uint32_t i = 0; i < cfg->n_consumers; i++) {
		const struct spate_config_consumer *k = &cfg->consumers[i];
		const struct spate_config_stream *cs = spate_config_find_stream(cfg, k->stream);
		struct spate_consumer *c = &e->consumers[e->nconsumers];
		uint64_t resume[SPATE_STREAM_MAX_SHARDS];

		if (!k->enabled)
			continue;
		c->cfg = e->cfg;
		c->log_cs = cs->durability != SPATE_DURABILITY_OFF ? cs : NULL;
		c->producers = &e->producers;
		c->stream = spate_engine_stream(e, k->stream);
		if (k->on_failure[0]) {
			/* Open the failure destination's producer now: the
			 * workers use c->dlq->prod as it is, and a failure
			 * destination that cannot take records is a
			 * configuration error, not a surprise at the first
			 * failed record. */
			int di = stream_index(e, k->on_failure);
			rc = spate_producers_open(&e->producers, (uint32_t)di);
			if (rc < 0) {
				snprintf(err, errlen, "consumer %s: on_failure stream %s: %s",
					 k->name, k->on_failure, strerror(-rc));
				goto err;
			}
			c->dlq = &e->producers.sp[di];
		}
		rc = spate_provider_plugin(cfg, k, c->stream, NULL, &c->lib, err, errlen);
		if (rc < 0) {
			/* Name the config line and the consumer before the loader's words. */
			char why[512];
			snprintf(why, sizeof(why), "%s", err);
			snprintf(err, errlen, "%s:%u: consumer %s: %s", e->cfg->source, k->line, k->name, why);
			goto err;
		}
		uint64_t end[SPATE_STREAM_MAX_SHARDS];
		for (uint32_t s = 0; s < spate_stream_shards(c->stream); s++)
			end[s] = spate_persist_next_seq(&e->persist, c->stream, s);
		rc = spate_ckpt_resume(e->cfg->state_dir, c->stream, k->name, end, resume);
		if (rc < 0) {
			snprintf(err, errlen, "checkpoints of %s: %s", k->name, strerror(-rc));
			spate_plugin_unload(c->lib);
			goto err;
		}
		rc = spate_consumer_init(c, k, cs, resume, err, errlen);
		if (rc < 0) {
			spate_plugin_unload(c->lib);
			goto err;
		}
		e->ckpt_written[e->nconsumers] = malloc(SPATE_STREAM_MAX_SHARDS * sizeof(uint64_t));
		if (!e->ckpt_written[e->nconsumers]) {
			spate_consumer_fini(c);
			spate_plugin_unload(c->lib);
			rc = -ENOMEM;
			goto err;
		}
		memcpy(e->ckpt_written[e->nconsumers], resume, sizeof(resume));
		e->nconsumers++;
	}
	rc = spate_engine_sources_open(e);
	if (rc < 0)
		goto err;
	rc = plan_workers(e);
	if (rc < 0)
		goto err;
	stats_open(e);
	/* Counters off: each consumer's sampled latency goes to a histogram of
	 * its own in this process (spate_engine_consumer_latency), shared by
	 * the workers polling its tasks (multi-writer). */
	for (uint32_t i = 0; !e->stats && i < e->nconsumers; i++) {
		e->consumers[i].lat = malloc(sizeof(struct spate_hist));
		if (!e->consumers[i].lat) {
			rc = -ENOMEM;
			goto err;
		}
		spate_hist_init(e->consumers[i].lat);
		for (uint32_t t = 0; t < e->consumers[i].ntasks; t++)
			spate_consumer_task_stats(&e->consumers[i], t, NULL);
	}
	*out = e;
	return 0;
err:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	spate_engine_close(e);
	return rc;
}

int spate_engine_open_file(const char *path, struct spate_engine **out, char *err, size_t errlen)
{
	struct spate_config *cfg;
	int rc = spate_config_load(path, &cfg, err, errlen);

	if (rc < 0)
		return rc;
	rc = spate_engine_open(cfg, out, err, errlen);
	if (rc < 0) {
		spate_config_free(cfg);
		return rc;
	}
	(*out)->owned_cfg = cfg;
	return 0;
}

int spate_engine_start(struct spate_engine *e)
{
	char err[512];
	int rc;

	if (e->running)
		return -EALREADY;
	for (uint32_t i = 0; i < e->nconsumers; i++) {
		rc = spate_consumer_start_plugins(&e->consumers[i], err, sizeof(err));
		if (rc < 0) {
			spate_slog(SPATE_LOG_ERROR, NULL, "%s", err);
			while (i--)
				spate_consumer_stop_plugins(&e->consumers[i]);
			return rc;
		}
	}
	spate_engine_stats_consumers(e); /* counters region: running, before the control thread's first tick */
	atomic_store_explicit(&e->stop, 0, memory_order_relaxed);
	atomic_store_explicit(&e->ctl_stop, 0, memory_order_relaxed);
	spate_crash_handlers_install();
	for (uint32_t k = 0; k < e->nworkers; k++) {
		struct worker *w = &e->workers[k];
		/* Relaxed: no thread of this worker runs now. */
		if (!w->in || atomic_load_explicit(&w->abandoned, memory_order_relaxed))
			w->in = calloc(1, sizeof(*w->in)); /* an abandoned one is its thread's */
		if (!w->in) {
			rc = -ENOMEM;
			goto err;
		}
		atomic_store_explicit(&w->in->state, SPATE_INFLIGHT_IDLE, memory_order_relaxed);
		atomic_store_explicit(&w->abandoned, 0, memory_order_relaxed);
		rc = -pthread_create(&e->workers[k].th, NULL, spate_engine_worker_main, &e->workers[k]);
		if (rc < 0)
			goto err;
		e->workers[k].started = true;
	}
	rc = spate_persister_start(&e->persist, e->topo);
	if (rc < 0)
		goto err;
	spate_engine_streams_start(e); /* run-time streams' persisters */
	rc = -pthread_create(&e->ctl, NULL, spate_engine_ctl_main, e);
	if (rc < 0)
		goto err;
	e->ctl_started = true;
	e->running = true;
	/* Last: a source's first append finds its consumers and persister up. */
	rc = spate_engine_sources_start(e);
	if (rc < 0)
		goto err;
	return 0;
err:
	e->running = true;
	spate_engine_stop(e);
	return rc;
}

int spate_engine_stop(struct spate_engine *e)
{
	if (!e->running)
		return 0;
	/* First: what a source appended last is consumed and persisted below. */
	spate_engine_sources_stop(e);
	/* Under the lock: the watchdog replaces a stuck thread only while
	 * stop is not set, so w->th is stable once it is. */
	pthread_mutex_lock(&e->lock);
	atomic_store_explicit(&e->stop, 1, memory_order_relaxed);
	pthread_mutex_unlock(&e->lock);
	for (uint32_t k = 0; k < e->nworkers; k++) {
		struct worker *w = &e->workers[k];
		/* A thread stuck in a plugin is given up by the watchdog after
		 * its consumer's timeout: wait that long, not forever. */
		while (w->started) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 50 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			if (pthread_timedjoin_np(w->th, NULL, &ts) == 0)
				break;
			/* Acquire: pairs with the watchdog's release store. */
			if (atomic_load_explicit(&w->abandoned, memory_order_acquire)) {
				pthread_detach(w->th); /* w->in is the stuck thread's now */
				break;
			}
		}
		w->started = false;
	}
	atomic_store_explicit(&e->ctl_stop, 1, memory_order_relaxed);
	if (e->ctl_started)
		pthread_join(e->ctl, NULL);
	e->ctl_started = false;
	/* After the workers: what they forwarded is written too. */
	spate_persister_stop(&e->persist);
	spate_engine_streams_stop(e);
	for (uint32_t i = 0; i < e->nconsumers; i++)
		spate_consumer_stop_plugins(&e->consumers[i]);
	spate_engine_ckpt_flush_all(e, true);
	spate_engine_stats_consumers(e);
	e->running = false;
	return 0;
}

/* Plugins a thread given up by the watchdog may still run code of: loaded
 * until the process exits (and reachable, so a leak checker does not count
 * them). */
static struct spate_plugin_lib *kept_libs[64];
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

static void keep_lib(struct spate_plugin_lib *lib)
{
	pthread_mutex_lock(&kept_lock);
	for (unsigned i = 0; lib && i < 64; i++)
		if (!kept_libs[i] || kept_libs[i] == lib) {
			kept_libs[i] = lib;
			lib = NULL;
		}
	pthread_mutex_unlock(&kept_lock);
	/* More than 64: left as they are (loaded, unreachable). */
}

void spate_engine_close(struct spate_engine *e)
{
	if (!e)
		return;
	spate_engine_stop(e);
	/* Relaxed: the workers are joined or given up. */
	uint32_t lost = atomic_load_explicit(&e->lost, memory_order_relaxed);
	if (lost)
		spate_slog(SPATE_LOG_WARN, NULL,
			      "%u worker thread(s) never came back from a plugin's process(): the "
			      "plugins stay loaded until the process exits",
			      lost);
	for (uint32_t i = 0; i < e->nconsumers; i++) {
		struct spate_consumer *c = &e->consumers[i];
		spate_consumer_fini(c);
		if (!lost)
			spate_plugin_unload(c->lib);
		else
			keep_lib(c->lib);
		free(e->ckpt_written[i]);
	}
	for (uint32_t k = 0; k < e->nworkers; k++) {
		free(e->workers[k].tasks);
		/* Relaxed: the control thread is joined. An abandoned thread's
		 * record is its own (freed by it, if it returns). */
		if (!atomic_load_explicit(&e->workers[k].abandoned, memory_order_relaxed))
			free(e->workers[k].in);
	}
	free(e->workers);
	free(e->all);
	spate_persister_fini(&e->persist);
	spate_engine_sources_close(e);
	spate_engine_streams_close(e); /* run-time streams: persisters, mappings */
	spate_producers_fini(&e->producers);
	for (uint32_t i = 0; i < e->nstreams; i++)
		spate_stream_close(e->streams[i]);
	free(e->streams);
	free(e->consumers);
	free(e->ckpt_written);
	spate_topo_close(e->topo);
	spate_stats_close(e->stats);
	pthread_mutex_destroy(&e->lock);
	pthread_mutex_destroy(&e->ckpt_lock);
	spate_config_free(e->owned_cfg);
	spate_engine_unlock(e->bus_lock); /* last: everything is unmapped */
	free(e);
}

static struct spate_consumer *find_consumer(struct spate_engine *e, const char *name)
{
	for (uint32_t i = 0; i < e->nconsumers; i++)
		if (!strcmp(e->consumers[i].k->name, name))
			return &e->consumers[i];
	return NULL;
}

int spate_engine_consumer_stats(struct spate_engine *e, const char *name,
				struct spate_consumer_stats *st)
{
	struct spate_consumer *c = find_consumer(e, name);

	if (!c)
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	struct spate_consumer_counts n;
	spate_consumer_sum(c, &n); /* the tasks' counters: each delivery counted once */
	st->records = n.records;
	st->bytes = n.bytes;
	st->batches = n.batches;
	st->retries = n.retries;
	st->failed = n.failed;
	st->expired = n.expired;
	st->log_records = n.log_records;
	st->log_gaps = n.log_gaps;
	st->log_spills = n.log_spills;
	st->on_log = n.on_log;
	/* Relaxed: figures, read for display and tests after joins. */
	st->cold_start_ns = atomic_load_explicit(&c->cold_start_ns, memory_order_relaxed);
	st->first_batch_ns = atomic_load_explicit(&c->first_batch_ns, memory_order_relaxed);
	st->helped = atomic_load_explicit(&c->helped, memory_order_relaxed);
	st->state = atomic_load_explicit(&c->state, memory_order_relaxed);
	for (uint32_t s = 0; s < spate_stream_shards(c->stream); s++) {
		uint64_t tail = spate_ring_tail_seq(spate_stream_ring(c->stream, s));
		uint64_t next = spate_consumer_shard_next(c, s);
		if (next != UINT64_MAX && tail > next)
			st->lag_records += tail - next;
	}
	pthread_mutex_lock(&c->lock);
	snprintf(st->error, sizeof(st->error), "%s", c->error);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int spate_engine_consumer_latency(struct spate_engine *e, const char *name, struct spate_hist *out)
{
	struct spate_consumer *c = find_consumer(e, name);

	if (!c)
		return -ENOENT;
	if (e->running)
		return -EBUSY;
	/* The consumer's histogram: the counters region's (its index there is
	 * its index here, stats_open), else the process-local one. */
	const struct spate_stats_consumer *sc =
		e->stats ? spate_stats_consumer_at(e->stats, (uint32_t)(c - e->consumers)) : NULL;
	const struct spate_hist *h = sc ? spate_stats_hist_at(e->stats, sc->hist_latency) : c->lat;
	return h ? spate_hist_merge(out, h) : 0;
}

void spate_engine_describe(struct spate_engine *e, char *buf, size_t len)
{
	char topo[256] = "topology unknown (built without hwloc, or it failed): threads unpinned";

	if (e->topo)
		spate_topo_describe(e->topo, topo, sizeof(topo));
	snprintf(buf, len, "%s\n%s", topo, e->plan);
}

/* Wait until every worker that runs a task of @p c has gone round its loop
 * twice after we set paused: none can still be inside one of c's tasks. */
static void quiesce(struct spate_engine *e, struct spate_consumer *c)
{
	for (uint32_t k = 0; k < e->nworkers; k++) {
		struct worker *w = &e->workers[k];
		/* Every worker: a helper may be inside a task of c. */
		(void)c;
		if (!w->started)
			continue;
		/* Seq_cst: after our seq_cst store of paused (Dekker-style with
		 * the worker's seq_cst load of paused and increment of epoch). */
		uint64_t e0 = atomic_load_explicit(&w->epoch, memory_order_seq_cst);
		while (atomic_load_explicit(&w->epoch, memory_order_seq_cst) < e0 + 2)
			spate_engine_nap(100000);
	}
}

int spate_engine_deploy(struct spate_engine *e, const char *name, const char *path, char *err,
			size_t errlen)
{
	struct spate_consumer *c = find_consumer(e, name);
	struct spate_plugin_lib *lib, *old;
	int rc;

	if (!c) {
		snprintf(err, errlen, "no consumer named %s", name);
		return -ENOENT;
	}
	/* A consumer a provider runs asks it again (a function's new code, an
	 * isolated plugin's new build); others load the file. */
	rc = spate_provider_plugin(e->cfg, c->k, c->stream, path, &lib, err, errlen);
	if (rc < 0)
		return rc;
	atomic_store_explicit(&c->paused, 1, memory_order_seq_cst);
	if (e->running)
		quiesce(e, c);
	spate_consumer_stop_plugins(c); /* flush, fini: the old build drains */
	spate_engine_ckpt_flush_all(e, true);
	old = c->lib;
	pthread_mutex_lock(&c->lock); /* the control thread reads c->lib (watch_memory) */
	c->lib = lib;
	pthread_mutex_unlock(&c->lock);
	if (e->running) {
		rc = spate_consumer_start_plugins(c, err, errlen);
		if (rc < 0) {
			/* Keep serving with the old build. */
			pthread_mutex_lock(&c->lock);
			c->lib = old;
			pthread_mutex_unlock(&c->lock);
			old = lib;
			char err2[256];
			if (spate_consumer_start_plugins(c, err2, sizeof(err2)) < 0)
				spate_slog(SPATE_LOG_ERROR, NULL, "%s", err2);
		}
	}
	atomic_store_explicit(&c->paused, 0, memory_order_seq_cst);
	/* Relaxed: a count; a thread stuck in the old build keeps it loaded. */
	if (!atomic_load_explicit(&e->lost, memory_order_relaxed))
		spate_plugin_unload(old);
	else
		keep_lib(old);
	if (rc == 0)
		spate_slog(SPATE_LOG_INFO, NULL, "consumer %s now runs %s %s (%s)", name,
				  spate_plugin_lib_name(lib), spate_plugin_lib_version(lib), path);
	return rc;
}
