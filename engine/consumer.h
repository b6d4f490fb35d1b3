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
#include "spate/stats.h"
#include "spate/stream.h"

struct spate_plugin_lib;

enum spate_start_pos {
	SPATE_START_TRIM_HORIZON = 0,
	SPATE_START_LATEST,
	SPATE_START_AT_SEQUENCE,
	SPATE_START_AFTER_SEQUENCE,
	SPATE_START_AT_TIMESTAMP,
};

/** What a consumer does, resolved from the configuration. */
struct spate_consumer_params {
	char name[SPATE_CONFIG_NAME_MAX + 1];
	uint32_t batch_size;
	uint64_t batch_bytes;
	uint64_t batch_window_ns;
	enum spate_start_pos start;
	uint64_t start_seq;
	uint64_t start_ts;
	int64_t max_retry_attempts;  /**< -1: until the record is older than max_age */
	uint64_t backoff_ns;
	uint64_t backoff_max_ns;
	bool bisect;
	uint64_t max_age_ns;         /**< UINT64_MAX: never (then retention applies) */
	uint32_t parallelization;
	uint32_t concurrency;          /**< most workers serving it; 0 = any */
	uint64_t checkpoint_interval_ns; /**< 0: after every batch */
	enum spate_ring_wait wait;
	const struct spate_plugin_opt *opts;
	uint32_t n_opts;
};

struct spate_consumer;

/** One (consumer, shard, lane): a ring reader, a plugin state, a batch. */
struct spate_task {
	struct spate_consumer *c;
	uint32_t shard, lane;
	struct spate_ring_reader *rd;
	const struct spate_plugin *pl;
	void *state;
	struct spate_plugin_ctx ctx;
	struct spate_plugin_host host;

	struct spate_ring_rec *raw;   /* peeked records */
	struct spate_ring_rec *views; /* this lane's (== raw when one lane) */
	uint32_t n_raw, n;
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

	/* History from the shard's log (persisted streams only). */
	char *log_dir;                /* NULL: the stream has no log */
	struct spate_log_reader *lrd; /* non-NULL: reading the log (rd is NULL) */
	uint8_t *dbuf;                /* payload copies of buffered log records */
	size_t dbuf_len, dbuf_cap;
	struct spate_ring_rec *drec;  /* [batch_size] buffered, not released (data: NULL) */
	uint64_t *doff;               /* [batch_size] their payload offsets in dbuf */
	uint32_t dhave;
	uint64_t ring_cap;            /* the shard ring's size, for the spill threshold */
	_Atomic uint64_t disk_records; /* records read from the log (stats) */
	_Atomic uint64_t disk_gaps;   /* records retention deleted under the reader */
	_Atomic uint32_t spills;      /* switches from the ring to the log */
	_Atomic uint32_t on_log;      /* 1 while lrd is open (for monitors) */
	struct spate_stats_tref st;   /* counters region slot (engine.c stats_open); slot NULL: off */
};

struct spate_consumer {
	struct spate_consumer_params p;
	const struct spate_config *cfg;
	const struct spate_config_stream *log_cs; /* the stream's, if it has a log; else NULL */
	struct spate_producers *producers; /* the engine's, for the plugins' puts */
	struct spate_stream *stream;
	struct spate_stream_ckpt *ckpt;
	struct spate_plugin_lib *lib;
	struct spate_shared_producer *dlq; /* NULL: failures are logged and dropped */
	struct spate_task *tasks;
	uint32_t ntasks;
	uint64_t started_ns;
	uint64_t ckpt_file_ns;        /* last checkpoint file write (engine's ckpt_lock) */
	_Atomic uint32_t paused;
	_Atomic uint32_t state;
	pthread_mutex_t lock; /* error text, cold start */
	char error[200];
	_Atomic uint64_t records, bytes, batches, retries, failed, expired;
	_Atomic uint64_t cold_start_ns, first_batch_ns;
	_Atomic uint64_t helped;      /* polls by a worker other than the owner that did work */
	/* Sampled commit -> delivery latency (ns) when the counters region is
	 * off (engine.c allocates it then; NULL otherwise: the region's
	 * consumer histogram has it). Every worker polling a task of the
	 * consumer records into it: multi-writer (spate_hist_record_mw). */
	struct spate_hist *lat;
};

/**
 * Set up the tasks of @p c (readers at the checkpoint or starting position,
 * plugin states). @p resume_next[shard] is the checkpointed next sequence
 * number, UINT64_MAX where none.
 * @return 0 or -errno (@p err says why).
 */
int spate_consumer_init(struct spate_consumer *c, const uint64_t *resume_next, char *err,
			size_t errlen);
/** Create the plugin states of every task (cold start is timed). */
int spate_consumer_start_plugins(struct spate_consumer *c, char *err, size_t errlen);
/** Tell the counters region the task reads the log (its catch-up range). */
void spate_consumer_task_catchup(struct spate_task *t);
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
/** Nanoseconds until the task needs polling again on its own (window,
 *  back-off), UINT64_MAX if only new data wakes it. */
uint64_t spate_task_deadline(const struct spate_task *t, uint64_t now_mono_ns);


#endif
