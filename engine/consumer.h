/* SPDX-License-Identifier: MIT */
/* Internal: the consumer (event source mapping) runtime. Not installed. */
#ifndef SPATE_ENGINE_CONSUMER_H
#define SPATE_ENGINE_CONSUMER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/checkpoint.h"
#include "spate/config.h"
#include "engine/producers.h"
#include "spate/consumer_types.h"
#include "spate/hist.h"
#include "spate/log.h"
#include "spate/plugin.h"
#include "spate/provider.h"
#include "spate/stats.h"
#include "spate/stream.h"

#include "engine/source.h"

struct spate_plugin_lib;

/** A consumer's delivery figures, summed over its tasks' counters slots
 *  (spate_consumer_sum). */
struct spate_consumer_counts {
	uint64_t records, bytes, batches, retries, failed, expired;
	uint64_t log_records, log_gaps;
	uint32_t log_spills, on_log;
};

struct spate_consumer;
struct spate_task;

/** Phases of a worker thread's delivery (struct spate_inflight.phase). */
enum spate_inflight_phase {
	SPATE_INFLIGHT_IDLE = 0, /**< not inside a plugin's process() */
	SPATE_INFLIGHT_IN = 1,   /**< inside process() since @c since */
	SPATE_INFLIGHT_LOST = 2, /**< the watchdog took the delivery over (timeout) and
				      is done with the record: the thread's alone */
	SPATE_INFLIGHT_CLAIMED = 3, /**< the watchdog is taking it over (fills grave) */
};

/**
 * What one worker thread is delivering: written by that thread around each
 * process() call, watched by the engine's control thread (timeouts), read
 * by the thread's own crash handler. Heap-allocated per thread: a thread
 * the watchdog gave up frees it (and @c grave) when process() returns, if
 * ever; nobody else touches it after the LOST transition.
 */
struct spate_inflight {
	/** (delivery number << 2) | enum spate_inflight_phase: the number
	 *  makes the watchdog's CAS fail on any later delivery than the one
	 *  it timed (no ABA). */
	_Atomic uint64_t state;
	uint64_t gen;                 /**< the thread's delivery number */
	_Atomic uint64_t since;       /**< monotonic ns process() was entered */
	struct spate_task *_Atomic task; /**< the task delivered (valid while IN) */
	uint64_t first_seq, last_seq; /**< the range delivered */
	void *grave[3];               /**< buffers the stuck call may still read (LOST) */
};

/** spate_task_poll(): the watchdog took this thread's delivery over; the
 *  thread must touch nothing (task, worker) and end. */
#define SPATE_TASK_LOST (-2)

/** Attempt record of one task, in <state_dir>/<consumer>.attempts (a shared
 *  file mapping, so it survives a crash of the process): written before
 *  every process() call, marked done after it returns. */
struct spate_attempt {
	uint64_t first_seq, last_seq; /**< the range delivered */
	uint32_t attempt, prior;      /**< its deliveries (this one included) */
	uint32_t done;                /**< process() returned */
	uint32_t magic;               /**< SPATE_ATTEMPT_MAGIC: the slot was written */
};
#define SPATE_ATTEMPT_MAGIC 0x31545441u /* "ATT1" */

/** One (consumer, shard, lane): a shard source, a plugin state, a batch. */
struct spate_task {
	struct spate_consumer *c;
	uint32_t shard, lane;
	struct spate_source src;      /* the shard's ring or log */
	const struct spate_plugin *pl;
	void *state;
	struct spate_plugin_ctx ctx;
	struct spate_plugin_host host;
	struct spate_slog_ctx logctx; /* consumer, stream, shard, lane of its messages */

	struct spate_ring_rec *raw;   /* peeked records */
	struct spate_ring_rec *views; /* this lane's (== raw when one lane) */
	uint32_t n_raw, n;
	/* A pipelined hand-over (pipe: the provider's, NULL for process()):
	 * the next batch, peeked ahead while the current one was submitted
	 * (its records unreleased, after raw's); it becomes the current batch
	 * when that one is done. Allocated on first use (views alias raw as
	 * above). */
	const struct spate_provided_pipe *pipe;
	struct spate_ring_rec *araw, *aviews;
	uint32_t an_raw, an;
	uint32_t lo, hi, depth;       /* range being delivered; bisect stack depth */
	uint32_t (*stack)[3];         /* ranges left by bisection: lo, hi, prior */
	uint32_t attempt;             /* deliveries of the record at lo */
	uint32_t prior;               /* failed deliveries of the larger ranges that
					 bisection split [lo, hi) from: each one
					 included every record of it */
	uint64_t retry_at, window_start, next_flush;
	uint64_t skip_below_seq, skip_below_ts; /* starting position filters */
	bool dead;
	bool first_done;
	_Atomic uint64_t next_seq;    /* everything below is handled (UINT64_MAX: unknown) */
	uint64_t ckpt_ns;             /* last shared-table checkpoint (checkpoint_interval) */
	_Atomic uint32_t busy;        /* polled by a worker right now (engine.c task_lock) */
	uint32_t owner;               /* index of the worker it is dealt to */
	uint32_t lat_tick;            /* every 8th delivery samples the latency */
	bool timed_out;               /* the watchdog gave up its last delivery */
	struct spate_attempt *att;    /* its attempt record slot (NULL: none) */
	struct spate_attempt crashed; /* the record found at start (magic 0: none) */
	bool crash_pending;           /* the batch is that range: deliver it as failed */
	/* Counters: the counters region's slot, or the consumer's own
	 * (local_st) when the region is off; written only by the task's
	 * poller, the one place a delivery is counted. */
	struct spate_stats_tref st;
};

/** A consumer: its configuration entry as it is (the configuration
 *  outlives the engine) and the few values derived from it. */
struct spate_consumer {
	const struct spate_config_consumer *k;
	uint32_t lanes;               /* parallelization, at least 1 */
	uint64_t max_age_ns;          /* max_record_age, or the stream's retention when
					 retrying forever; UINT64_MAX: never */
	struct spate_plugin_opt *opts; /* k->options as the plugin ABI has them */
	const struct spate_config *cfg;
	const struct spate_config_stream *log_cs; /* the stream's, if it has a log; else NULL */
	struct spate_producers *producers; /* the engine's, for the plugins' puts */
	struct spate_stream *stream;
	struct spate_stream_ckpt *ckpt;
	struct spate_plugin_lib *lib;
	struct spate_shared_producer *dlq; /* NULL: failures are logged and dropped */
	struct spate_task *tasks;
	uint32_t ntasks;
	struct spate_stats_task *local_st; /* [ntasks] counters when the region is off */
	struct spate_attempt *att_map; /* [ntasks] mapping of <consumer>.attempts, or NULL */
	size_t att_len;
	uint64_t timeout_ns;          /* k->timeout_ns, or the default */
	uint64_t mem_charged;         /* RSS growth charged to it (control thread) */
	uint64_t batches_seen;        /* its batches at the last memory tick (control thread) */
	bool mem_warned;
	_Atomic uint64_t over_memory; /* bytes charged past memory_limit (0: within) */
	uint64_t started_ns;
	uint64_t ckpt_file_ns;        /* last checkpoint file write (engine's ckpt_lock) */
	_Atomic uint32_t paused;
	_Atomic uint32_t state;
	pthread_mutex_t lock; /* error text, cold start */
	char error[200];
	_Atomic uint64_t cold_start_ns, first_batch_ns;
	_Atomic uint64_t helped;      /* polls by a worker other than the owner that did work */
	/* Sampled commit -> delivery latency (ns) when the counters region is
	 * off (engine.c allocates it then and points the tasks' st.latency at
	 * it; NULL otherwise: the region's consumer histogram has it). Every
	 * worker polling a task of the consumer records into it:
	 * multi-writer (spate_hist_record_mw). */
	struct spate_hist *lat;
	/* The plugin's status slot (spate_plugin_host.status, gauge_*): the
	 * counters region's (engine.c stats_open) or own_status when the
	 * region is off. Set before the plugin's first init. */
	struct spate_stats_source_slot *status;
	struct spate_stats_source_slot *own_status;
};

/**
 * Set up consumer @p c for configuration entry @p k of stream @p cs (c->cfg,
 * c->log_cs, c->producers, c->stream and c->dlq already set): its tasks with their
 * sources at the checkpoint or starting position, and its attempt records
 * (<state_dir>/<consumer>.attempts: deliveries a crash interrupted). @p resume_next[shard] is the
 * checkpointed next sequence number, UINT64_MAX where none.
 * @return 0 or -errno (@p err says why).
 */
int spate_consumer_init(struct spate_consumer *c, const struct spate_config_consumer *k,
			const struct spate_config_stream *cs, const uint64_t *resume_next,
			char *err, size_t errlen);
/** Point task @p i's counters at @p ref (the counters region's slot), or
 *  back at the consumer's own when @p ref is NULL. Before the start. */
void spate_consumer_task_stats(struct spate_consumer *c, uint32_t i,
			       const struct spate_stats_tref *ref);
/** Sum of the tasks' counters into @p out (records, bytes, batches,
 *  retries, failed, expired, log figures). Any thread (relaxed reads). */
void spate_consumer_sum(const struct spate_consumer *c, struct spate_consumer_counts *out);
/** Create the plugin states of every task (cold start is timed). */
int spate_consumer_start_plugins(struct spate_consumer *c, char *err, size_t errlen);
/** Flush and fini every task's plugin state. */
void spate_consumer_stop_plugins(struct spate_consumer *c);
/** Close readers, free tasks. */
void spate_consumer_fini(struct spate_consumer *c);
/**
 * Do one step of a task: peek, assemble, deliver, handle the result.
 * @return records handled (> 0), 0 (idle, waiting or backing off), -1 (the
 *         task is dead: FATAL or a ring error).
 */
int spate_task_poll(struct spate_task *t, uint64_t now_mono_ns);
/** The shard checkpoint implied by the task's lanes (min of next_seq). */
uint64_t spate_consumer_shard_next(const struct spate_consumer *c, uint32_t shard);
/** The calling worker thread's delivery record (NULL: not watched). */
void spate_inflight_set(struct spate_inflight *in);
/**
 * The watchdog took over task @p t's delivery, stuck in process() for
 * @p ran_ns (its thread's record @p in is LOST; @p t is the caller's now, its
 * poller gone; @p in is CLAIMED, and moved to LOST here once the watchdog
 * is done with it): abandon the plugin state and the buffers the stuck call may
 * still read (into @p in->grave, freed by the stuck thread if it returns),
 * make a fresh state, and leave the delivery to be counted as failed by the
 * next poll (retry rules). @p stopping: no fresh state (the engine stops).
 */
void spate_task_timed_out(struct spate_task *t, struct spate_inflight *in, uint64_t ran_ns,
			  bool stopping);
/** The control thread found @p c past its memory_limit (@p charged bytes):
 *  its tasks stop at their next poll (FAILED, checkpoint at the last
 *  success). */
void spate_consumer_over_memory(struct spate_consumer *c, uint64_t charged);
/** Install the crash handlers (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL) that
 *  name the consumer, plugin, shard and batch of the crashing thread, then
 *  re-raise. Idempotent. Each worker thread calls
 *  spate_crash_altstack() for stack overflows. */
void spate_crash_handlers_install(void);
/** An alternate signal stack for the calling thread (or NULL: none). */
void *spate_crash_altstack(void);
/** Nanoseconds until the task needs polling again on its own (window,
 *  back-off), UINT64_MAX if only new data wakes it. */
uint64_t spate_task_deadline(const struct spate_task *t, uint64_t now_mono_ns);


#endif
