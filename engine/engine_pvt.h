/* SPDX-License-Identifier: MIT */
/*
 * engine_pvt.h - what engine.c (open, start, stop, close, deploy) and
 * engine_threads.c (the control thread and the worker threads) share: the
 * layout of struct spate_engine and its workers. Internal, never installed.
 */
#ifndef SPATE_ENGINE_PVT_H
#define SPATE_ENGINE_PVT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/checkpoint.h"
#include "engine/consumer.h"
#include "engine/persist.h"
#include "spate/engine.h"
#include "spate/sources.h"
#include "spate/stats.h"
#include "spate/topo.h"

#define CKPT_PERIOD_NS (100ull * 1000 * 1000)
/* How often the control thread looks for dead readers and writers. */
#define WATCH_PERIOD_NS (200ull * 1000 * 1000)
#define MAX_WORKERS 256u

struct worker {
	struct spate_engine *e;
	pthread_t th;
	int cpu;
	struct spate_task **tasks;
	uint32_t ntasks;
	enum spate_ring_wait wait;
	_Atomic uint64_t epoch; /* loop iterations, for deploy's quiescence */
	uint32_t index;
	uint32_t help_from;     /* where help() starts looking */
	bool started;
	struct spate_stats_worker *st; /* counters region slot (stats_open), or NULL */
	struct spate_stats_wprev st_prev; /* its previous round (worker-local) */
	/* The running thread's delivery record, set before it is created;
	 * replaced (with the thread) by the watchdog when a delivery times out. */
	struct spate_inflight *in;
	_Atomic uint32_t abandoned; /* the watchdog gave its thread up while stopping */
};

/* A `sources:` entry of the engine (source_types.c). */
struct engine_source {
	const struct spate_config_source *cfg;
	const struct spate_source_type *type; /* its registered type (a copy in stypes) */
	void *state;                          /* the type's, between start and stop */
	bool started;
	struct spate_stats_source_slot *st;        /* its counters slot: region or own */
	struct spate_stats_source_slot *own;       /* this process's slot (counters off) */
};

/*
 * One stream of the engine's registry (engine_streams.c): each YAML stream
 * (its stream is e->streams[i], living until close) and each run-time one.
 * Everything but the stream's own memory is guarded by spate_engine.st_lock.
 */
struct spate_sentry {
	struct spate_config_stream cs; /* its definition (a YAML one's copy) */
	struct spate_stream *s;        /* NULL until made (CREATING) */
	uint32_t status;               /* enum spate_engine_stream_status */
	bool runtime;                  /* made by spate_engine_stream_add() / a definition file */
	bool tearing;                  /* its removal's last step is under way */
	bool persisting;               /* its persister threads run */
	unsigned remove_flags;         /* SPATE_ENGINE_REMOVE_* */
	uint32_t refs;                 /* spate_engine_stream_get() references */
	uint64_t created_ns;           /* realtime */
	uint64_t retention_ns;         /* now */
	uint64_t incarnation;          /* spate_stream_incarnation(s), once made */
	struct spate_engine_tag *tags; /* [ntags], sorted by key */
	uint32_t ntags;
	int stats_slot;                /* its stream slot in the counters region, -1: none */
	struct spate_persister persist; /* run-time persisted streams: their own persister */
};

struct spate_engine {
	struct spate_config *cfg;
	struct spate_config *owned_cfg;
	struct spate_stream **streams;
	struct spate_producers producers; /* one per stream, opened on demand */
	uint32_t nstreams;
	struct spate_consumer *consumers;
	uint32_t nconsumers;
	struct worker *workers;
	uint32_t nworkers;
	struct spate_task **all; /* every task, for help() */
	uint32_t nall;
	struct spate_topo *topo;
	pthread_mutex_t lock;
	pthread_mutex_t ckpt_lock; /* ckpt_flush_all: the control thread, deploy, stop */
	pthread_t ctl;
	bool ctl_started;
	_Atomic int stop;      /* workers: end (set under lock) */
	_Atomic int ctl_stop;  /* control thread: end (after the workers) */
	_Atomic uint32_t lost; /* worker threads abandoned inside a plugin (timeouts) */
	uint64_t rss_last;     /* process RSS at the last memory tick (control thread) */
	bool rss_warned;
	bool running;
	uint64_t **ckpt_written; /* per consumer, per shard: last value written to file */
	struct spate_persister persist; /* persisted streams' logs and their threads */
	char plan[4096];
	struct spate_stats *stats; /* counters region <bus>..stats (stats_open), or NULL: off */
	uint64_t reaped_readers; /* slots of dead processes freed (control thread, open) */
	uint64_t reaped_writers;
	struct spate_engine_lock *bus_lock; /* <state_dir>/engine.lock, held from open to close */
	/* Sources (source_types.c): registered types (copies, struct_size
	 * bytes of the door's, the rest zero) and one entry per `sources:`. */
	struct spate_source_type stypes[SPATE_SOURCE_TYPES_MAX];
	uint32_t nstypes;
	struct engine_source *sources;
	uint32_t nsources;
	/* The stream registry (engine_streams.c): YAML streams first, then
	 * run-time ones in creation order; e->streams stays the YAML ones. */
	pthread_mutex_t st_lock;
	struct spate_sentry **ents;
	uint32_t nents, ents_cap;
	uint32_t rt_streams, rt_shards; /* run-time ones (DELETING included), their shards */
	bool st_closing;                /* close has begun: adds are refused */
	bool st_running;                /* between start and stop: run-time persisters run */
};

/* source_types.c */
int spate_engine_sources_open(struct spate_engine *e);
int spate_engine_sources_start(struct spate_engine *e);
void spate_engine_sources_stop(struct spate_engine *e);
void spate_engine_sources_close(struct spate_engine *e);

/* engine_streams.c (calls nothing in engine.c or engine_threads.c) */
int spate_engine_open_stream(struct spate_engine *e, struct spate_persister *p,
			     const struct spate_config_stream *cs, struct spate_stream **out,
			     char *err, size_t errlen);
int spate_engine_claim_stream(struct spate_engine *e, struct spate_stream *s, char *err,
			      size_t errlen);
int spate_engine_streams_init(struct spate_engine *e);
int spate_engine_streams_load(struct spate_engine *e, char *err, size_t errlen);
void spate_engine_streams_stats(struct spate_engine *e);
void spate_engine_streams_start(struct spate_engine *e);
void spate_engine_streams_stop(struct spate_engine *e);
void spate_engine_streams_close(struct spate_engine *e);
uint32_t spate_engine_streams_hold(struct spate_engine *e, struct spate_stream **out, uint32_t max);
void spate_engine_streams_release(struct spate_engine *e, struct spate_stream **held, uint32_t n);
int spate_engine_stream_index(const struct spate_engine *e, const char *name);

/* engine_threads.c */
void spate_engine_ckpt_flush_all(struct spate_engine *e, bool force);
void spate_engine_stats_consumers(struct spate_engine *e);
void spate_engine_nap(uint64_t ns);
void *spate_engine_ctl_main(void *arg);
void *spate_engine_worker_main(void *arg);

#endif
