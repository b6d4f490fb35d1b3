/* SPDX-License-Identifier: MIT */
/* Internal: persisted streams (logs under shared memory) and the persister
 * thread that writes them. Not installed. */
#ifndef SPATE_ENGINE_PERSIST_H
#define SPATE_ENGINE_PERSIST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "spate/config.h"
#include "spate/log.h"
#include "spate/stats.h"
#include "spate/stream.h"

struct spate_topo;

/** Batches a persister round takes from a shard's ring at most. */
#define SPATE_PERSIST_MAX_SPANS 64u

/** One persisted shard: its log, the gating reader that feeds it (a kept
 *  reader slot: it outlives the engine, see persist.c). */
struct spate_persist_shard {
	struct spate_stream *s;
	uint32_t shard;
	char dir[SPATE_CONFIG_PATH_MAX];
	struct spate_log *log;
	struct spate_ring_reader *rd;
	struct spate_stream_dur *dur;
	enum spate_durability durability;
	uint64_t skip_below;      /* records below are in the log already (reattach) */
	struct spate_ring_span sp[SPATE_PERSIST_MAX_SPANS]; /* the round's batches, unreleased */
	uint32_t nsp;
	uint64_t stop_seq;        /* at stop: write up to here, leave the rest gated */
	int err;                  /* last sync error, 0 once it clears */
	uint64_t retry_at;        /* mono ns: next sync attempt after an error */
	uint64_t err_logged_ns;   /* rate limit of the error message */
	bool dead;                /* a fatal error: the shard is no longer persisted */
	uint64_t round_bytes;     /* appended since the last sync (for the counters region) */
	struct spate_stats_sref st; /* counters region (engine.c stats_open); slot NULL: off */
};

#define SPATE_PERSIST_MAX_THREADS 64u

/** One persister thread: shards i with i % nthreads == index. */
struct spate_persist_thread {
	struct spate_persister *p;
	pthread_t th;
	int cpu;
	uint32_t index;
	bool started;
};

/** The persistence threads of an engine and their shards. */
struct spate_persister {
	struct spate_persist_shard *sh;
	uint32_t n, cap;
	struct spate_persist_thread t[SPATE_PERSIST_MAX_THREADS];
	uint32_t nthreads;
	_Atomic int stop;
	const struct spate_topo *topo;
};

/**
 * Open (recovering) the logs of persisted stream @p cs, then attach its
 * shared memory if it exists and agrees with the logs (freeing the slots of
 * dead processes, adopting each shard's kept gate), else retire it and
 * (re)create it so each shard continues its log's numbering. Writes what
 * memory holds past the logs' ends before returning. Registers the shards
 * with @p p.
 * @return 0 or -errno (@p err says why, naming the file and line for
 *         configuration mismatches).
 */
int spate_persist_open_stream(struct spate_persister *p, const struct spate_config *cfg,
			      const struct spate_config_stream *cs, struct spate_stream **out,
			      char *err, size_t errlen);

/** The next sequence number shard @p shard of @p s will hold (what its log
 *  and memory have, whichever is further), or UINT64_MAX if not persisted. */
uint64_t spate_persist_next_seq(const struct spate_persister *p, const struct spate_stream *s,
				uint32_t shard);

/** The CPU of persister thread @p k among @p nthreads, dealt from the end of
 *  the plan's @p cpus (workers are dealt from its start). */
static inline int spate_persist_cpu(const int *cpus, uint32_t ncpu, uint32_t k)
{
	return ncpu ? cpus[(ncpu - 1 - k % ncpu)] : -1;
}

/** Start min(persist threads set in p->nthreads, shards) threads, thread k
 *  pinned to p->t[k].cpu if >= 0. @return 0 or -errno. */
int spate_persister_start(struct spate_persister *p, const struct spate_topo *topo);
/** Stop it after writing everything the rings hold (the gates stay where
 *  the logs end). NULL-safe; idempotent. */
void spate_persister_stop(struct spate_persister *p);
/** Close the logs (clean-shutdown markers) and free everything (after
 *  stop); the streams stay open, and each shard's gate stays in its ring
 *  for the next engine (spate_ring_reader_detach). */
void spate_persister_fini(struct spate_persister *p);

#endif
