/* SPDX-License-Identifier: MIT */
/**
 * @file spate/stats.h
 * @brief The counters region of a bus: what a running engine is doing,
 *        readable by any process that attaches it.
 *
 * A running engine keeps one shared-memory region, `<bus>..stats` (file
 * `spate.<bus>..stats`; the double dot cannot be a stream's name), laid out
 * at offsets recorded in a versioned header (never pointers):
 *
 *     0            struct spate_stats_hdr
 *     streams_off  struct spate_stats_stream   [n_streams]    immutable
 *     shards_off   struct spate_stats_shard    [n_shards]     every shard of every stream
 *     cons_off     struct spate_stats_consumer [n_consumers]
 *     tasks_off    struct spate_stats_task     [n_tasks]      (consumer, shard, lane)
 *     workers_off  struct spate_stats_worker   [n_workers]
 *     hists_off    struct spate_hist           [n_hists], hist_stride bytes apart
 *
 * Histograms (about 200 KiB each) are per stream (fsync latency: histogram
 * `fsync_hist` of the stream slot) and per consumer (latency, process time,
 * batch size: `hist_latency`, `hist_process`, `hist_batch` of the consumer
 * slot), never per shard or per task: n_hists = n_streams + 3 * n_consumers,
 * so the region's size grows with the number of shards and tasks only by
 * their small slots (384 and 256 bytes). Per-shard and per-task figures are
 * the scalar counters below.
 *
 * Writers and lines. Every block a thread writes starts on its own 128-byte
 * line and is written by exactly one thread at a time:
 *   - a task's slot by the worker polling that task (the owner, or a helper
 *     holding the task lock; the lock's acquire/release orders successive
 *     pollers), so its counters are a relaxed load plus a relaxed store,
 *     no read-modify-write, no lock prefix, no system call;
 *   - a worker's slot by that worker thread;
 *   - a consumer's state line by the engine's control thread;
 *   - a shard's persistence line by the shard's persister thread;
 *   - a consumer's three histograms by every worker polling one of its
 *     tasks: several at once (tasks are dealt to workers, idle workers help
 *     lagging tasks), so they are recorded with spate_hist_record_mw()
 *     (relaxed fetch_adds and CAS loops). Latency and process time are
 *     recorded on 1 delivery in 8 and the batch size once per delivery (a
 *     batch of up to batch_size records), never per record: the locked
 *     instructions cost a few ns per delivery;
 *   - a stream's fsync histogram by the persister thread(s) writing its
 *     shards: one thread today; recorded multi-writer too (once per
 *     fdatasync, nothing next to the fdatasync itself), so dealing a
 *     stream's shards to several persisters needs no change here;
 *   - a shard's producer line by the producers of that shard: there may be
 *     several (multi-producer streams, several processes), so those counters
 *     are relaxed fetch_adds, once per batch, never per record.
 * Relaxed is enough everywhere: each counter is a monotone (or last-value)
 * figure read for display; nothing else is published through it, and an
 * aligned 8-byte load never sees a torn value. Readers load each field once.
 *
 * What is not stored here because it is free to read from the rings (any
 * monitor attaches the stream regions): records and bytes appended (tail_seq
 * and tail), the head sequence, the oldest retained sequence and its time
 * (the batch at trim), and a reader's released position (lag in bytes).
 *
 * A reader attaches with spate_stats_attach(): the header is copied once and
 * every offset, count and stride is checked against the region's size before
 * anything is used; a corrupt region is -EBADMSG, never a crash.
 *
 * Threads: create/attach/close on any thread; the inline updaters on the
 * slot's one writer; the accessors on any thread of any process.
 */
#ifndef SPATE_STATS_H
#define SPATE_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spate/consumer_types.h"
#include "spate/hist.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SPATE_STATS_MAGIC 0x5354415453544150ULL /* "PATSTATS" */
#define SPATE_STATS_LAYOUT_VERSION 4u /* 4: run-time stream slots */
/** Log2 batch-size buckets per task (struct spate_stats_task.batch_log2). */
#define SPATE_STATS_BATCH_BUCKETS 16u
#define SPATE_STATS_READY 0x59444552u
/** Version of the sup area (struct spate_stats_hdr.sup_version). */
#define SPATE_STATS_SUP_VERSION 1u
/** Separation of state written by different threads (two 64-byte lines). */
#define SPATE_STATS_LINE 128u
/** Longest name stored (streams, consumers, plugins), without the NUL. */
#define SPATE_STATS_NAME_MAX 47u

/* Consumer states are enum spate_consumer_state (spate/consumer_types.h);
 * these names of its values are kept for existing readers. */
#define SPATE_STATS_RUNNING SPATE_CONSUMER_RUNNING
#define SPATE_STATS_STOPPED SPATE_CONSUMER_STOPPED
#define SPATE_STATS_FAILED SPATE_CONSUMER_FAILED

/** Worker states. */
enum spate_stats_worker_state {
	SPATE_STATS_WORKER_ACTIVE = 0, /**< polling its tasks */
	SPATE_STATS_WORKER_PARKED = 1, /**< nothing to do: napping, sleeping or yielding */
	SPATE_STATS_WORKER_STOPPED = 2,
};

/** Where a task reads from (filled by persistence: catching up from disk). */
enum spate_stats_source {
	SPATE_STATS_SOURCE_RING = 0,
	SPATE_STATS_SOURCE_LOG = 1, /**< behind the ring, reading the shard log */
};

/** Header at the start of the region's user area. */
struct spate_stats_hdr {
	uint64_t magic;           /**< SPATE_STATS_MAGIC */
	uint32_t layout_version;  /**< SPATE_STATS_LAYOUT_VERSION */
	uint32_t hdr_size;        /**< sizeof(struct spate_stats_hdr) */
	char bus[SPATE_STATS_NAME_MAX + 1];
	uint32_t hist_size;       /**< sizeof(struct spate_hist) of the writer */
	uint32_t hist_stride;     /**< bytes between histograms (128-byte multiple) */
	uint32_t n_streams, n_shards, n_consumers, n_tasks, n_workers, n_hists;
	uint64_t streams_off, shards_off, cons_off, tasks_off, workers_off, hists_off;
	uint64_t total_size;      /**< bytes of the layout (<= the user area) */
	uint32_t engine_pid;
	uint32_t reserved0;
	uint64_t started_ns;      /**< CLOCK_REALTIME when the engine opened */
	uint32_t ready;           /**< SPATE_STATS_READY, stored last (release) */
	/* ---- addition 1 (since layout 3; zero in a region without it) ---- */
	/** SPATE_STATS_SUP_VERSION when the region has a sup area (supervised
	 *  consumers' processes): n_sup struct spate_stats_sup at sup_off, then
	 *  2 * n_sup histograms (hist_stride apart) at sup_hists_off, ending at
	 *  ext_size; all past total_size, so a reader of this layout without the
	 *  addition still attaches. 0: no sup area. */
	uint32_t sup_version;
	uint32_t n_sup;
	/* ---- addition 2 (zero in a region without it) ---- */
	/** Source slots (spate/sources.h): n_sources struct
	 *  spate_stats_source_slot at sources_off, past everything above
	 *  (total_size, and the sup area's ext_size), so readers without the
	 *  addition still attach. 0: none. */
	uint32_t n_sources;
	uint64_t sup_off, sup_hists_off, ext_size;
	uint64_t sources_off;
};

/**
 * A stream. The slots of the configuration's streams are filled before the
 * region is published and never change. The region also reserves slots
 * (and shard slots) for streams created while the engine runs
 * (spate_engine_stream_add): such a slot is filled and emptied by the
 * engine's registry at run time, under a sequence lock (@p seq odd while it
 * changes; every field is then written and read with relaxed atomics). Read
 * slots with spate_stats_stream_read(), which skips empty and changing ones.
 */
struct spate_stats_stream {
	char name[SPATE_STATS_NAME_MAX + 1];
	uint32_t shards;
	uint32_t first_shard;     /**< its shards are shard slots [first_shard, +shards) */
	uint64_t fsync_hist;      /**< histogram index: fdatasync latency of its shard logs (ns) */
	_Atomic uint32_t seq;     /**< sequence lock: odd while the slot changes */
	_Atomic uint32_t live;    /**< 1: a stream is here; 0: an empty (reserved) slot */
	uint8_t pad_[SPATE_STATS_LINE - SPATE_STATS_NAME_MAX - 1 - 24];
};

/** One shard of one stream. */
struct spate_stats_shard {
	/* Line 0, immutable. */
	uint32_t stream;          /**< stream index */
	uint32_t shard;
	uint64_t base_seq;        /**< the ring's tail_seq when the region was created */
	uint64_t base_pos;        /**< the ring's tail (bytes) then */
	uint8_t pad0_[SPATE_STATS_LINE - 24];
	/* Line 1: producers (several writers: relaxed fetch_add per batch). */
	_Alignas(SPATE_STATS_LINE) _Atomic uint64_t backpressure; /**< reserves that found the shard full */
	_Atomic uint64_t put_failed;   /**< records refused (-EAGAIN, -ETIMEDOUT) */
	_Atomic uint64_t put_batches;  /**< batches written by counted producers */
	uint8_t pad1_[SPATE_STATS_LINE - 24];
	/* Line 2: persistence (one writer: the shard's persister). */
	_Alignas(SPATE_STATS_LINE) _Atomic uint64_t persist_bytes;  /**< bytes written to the log */
	_Atomic uint64_t persist_writes;   /**< write submissions */
	_Atomic uint64_t persist_fsyncs;
	_Atomic uint64_t durable_seq;      /**< every record below is on disk (UINT64_MAX: none / not persisted) */
	uint8_t pad2_[SPATE_STATS_LINE - 32];
};

/** A consumer. */
struct spate_stats_consumer {
	/* Lines 0-1, immutable. */
	char name[SPATE_STATS_NAME_MAX + 1];
	char plugin[SPATE_STATS_NAME_MAX + 1];
	uint32_t stream;          /**< stream index */
	uint32_t shards;
	uint32_t lanes;           /**< parallelization */
	uint32_t first_task;      /**< task (shard s, lane l) is first_task + s * lanes + l */
	uint64_t hist_latency;    /**< histogram index: commit -> delivery (ns, sampled 1/8) */
	uint64_t hist_process;    /**< histogram index: plugin process() time (ns, same 1/8) */
	uint64_t hist_batch;      /**< histogram index: records per delivery (every delivery) */
	uint8_t pad0_[SPATE_STATS_LINE - 2 * (SPATE_STATS_NAME_MAX + 1) - 40 + SPATE_STATS_LINE];
	/* Line 2: written by the engine's control thread (every 100 ms, at stop). */
	_Alignas(SPATE_STATS_LINE) _Atomic uint32_t state; /**< enum spate_consumer_state */
	uint32_t pad1_;
	_Atomic uint64_t cold_start_ns;
	_Atomic uint64_t first_batch_ns;
	_Atomic uint64_t helped;
	char error[SPATE_STATS_LINE - 32]; /**< why it stopped (relaxed byte copies; may tear) */
};

/** One (consumer, shard, lane): written only by the worker polling it. */
struct spate_stats_task {
	/* Line 0: per-batch counters. */
	_Atomic uint64_t records;     /**< handled successfully */
	_Atomic uint64_t bytes;       /**< payload bytes of those */
	_Atomic uint64_t batches;     /**< deliveries to the plugin */
	_Atomic uint64_t errors;      /**< deliveries that failed (RETRY, PARTIAL, error returns) */
	_Atomic uint64_t retries;     /**< deliveries that were retries */
	_Atomic uint64_t bisections;  /**< ranges split in halves */
	_Atomic uint64_t failed;      /**< records sent to the failure destination (or dropped) */
	_Atomic uint64_t expired;     /**< of which for max_record_age */
	_Atomic uint64_t checkpoint;  /**< next sequence to handle (UINT64_MAX: unknown yet) */
	_Atomic uint64_t last_ts;     /**< commit time of the last record handled (realtime ns) */
	_Atomic uint64_t process_ns;  /**< time inside the plugin, timed deliveries (1 in 8) */
	uint8_t pad0_[SPATE_STATS_LINE - 88];
	/* Line 1: immutable, and catch-up progress (written by the same poller). */
	_Alignas(SPATE_STATS_LINE) uint32_t consumer; /**< consumer index */
	uint32_t shard, lane;
	_Atomic uint32_t reader_slot; /**< the task's reader slot in the shard ring (lag in
					   bytes); UINT32_MAX while it reads the log. Written
					   by its poller when it switches (relaxed: a hint) */
	_Atomic uint32_t source;      /**< enum spate_stats_source (persistence fills it) */
	uint32_t pad1_;
	_Atomic uint64_t catchup_from;   /**< first sequence of the catch-up from disk */
	_Atomic uint64_t catchup_target; /**< sequence where the ring takes over */
	uint8_t pad2_[SPATE_STATS_LINE - 40];
	/* Line 2: this shard's (and lane's) batch sizes, log2 buckets: bucket k
	 * counts deliveries of [2^k, 2^(k+1)) records, the last one 2^15 and
	 * more. One writer (the task's poller), every delivery; the
	 * consumer's HDR batch-size histogram holds the exact distribution. */
	_Alignas(SPATE_STATS_LINE) _Atomic uint64_t batch_log2[SPATE_STATS_BATCH_BUCKETS];
};

/** A worker thread. */
struct spate_stats_worker {
	_Atomic uint64_t loops;       /**< polling rounds */
	_Atomic uint64_t busy_ns;     /**< time in rounds that handled records */
	_Atomic uint64_t parked_ns;   /**< time napping, sleeping or yielding */
	_Atomic uint64_t since_ns;    /**< monotonic time the counters start from */
	_Atomic uint32_t state;       /**< enum spate_stats_worker_state */
	int32_t cpu;                  /**< pinned CPU, -1 if none */
	uint32_t tasks;               /**< tasks dealt to it */
	uint8_t pad_[SPATE_STATS_LINE - 44];
};

/** Named counters of one source (spate/sources.h). */
#define SPATE_STATS_SOURCE_COUNTERS 14u
/** Longest name of a source counter, without the NUL. */
#define SPATE_STATS_COUNTER_NAME_MAX 23u

/** States of a source, as its door reports them. */
enum spate_stats_source_state {
	SPATE_STATS_SOURCE_STOPPED = 0,  /**< not started, or stopped */
	SPATE_STATS_SOURCE_STARTING = 1, /**< starting (connecting the first time) */
	SPATE_STATS_SOURCE_UP = 2,       /**< running: connected, appending */
	SPATE_STATS_SOURCE_DOWN = 3,     /**< running but cut off from its peer (reconnecting) */
	SPATE_STATS_SOURCE_FAILED = 4,   /**< gave up; error says why */
	/** A consumer's status slot (spate_plugin_host.status) its plugin
	 *  does not use: views leave it out. */
	SPATE_STATS_SOURCE_UNUSED = 5,
};

/**
 * A source (spate/sources.h): its door's state, last error and up to
 * SPATE_STATS_SOURCE_COUNTERS named counters (the door names them at start:
 * spate_stats_source_counter()). Written by the door's threads (several:
 * the adders are relaxed read-modify-writes), read by monitors. The same
 * slot is a consumer's status slot (after the sources: one per consumer
 * run in-process, type "consumer:<plugin>", written by its plugin through
 * spate_plugin_host.status / gauge_*; SPATE_STATS_SOURCE_UNUSED until it
 * does).
 */
struct spate_stats_source_slot {
	/* Lines 0-3: set once at start. */
	char name[SPATE_STATS_NAME_MAX + 1];
	char type[SPATE_STATS_NAME_MAX + 1];
	uint32_t stream;              /**< stream index */
	_Atomic uint32_t n_counters;  /**< names [0, n) are set (release after the name) */
	char counter_names[SPATE_STATS_SOURCE_COUNTERS][SPATE_STATS_COUNTER_NAME_MAX + 1];
	uint8_t pad0_[4 * SPATE_STATS_LINE - 2 * (SPATE_STATS_NAME_MAX + 1) - 8 -
		      SPATE_STATS_SOURCE_COUNTERS * (SPATE_STATS_COUNTER_NAME_MAX + 1)];
	/* Line 4: state and counters. */
	_Alignas(SPATE_STATS_LINE) _Atomic uint32_t state; /**< enum spate_stats_source_state */
	uint32_t pad1_;
	_Atomic uint64_t counters[SPATE_STATS_SOURCE_COUNTERS];
	/* Line 5: the last error ("" if none; relaxed byte copies, may tear). */
	_Alignas(SPATE_STATS_LINE) char error[SPATE_STATS_LINE];
};

_Static_assert(sizeof(struct spate_stats_source_slot) == 6 * SPATE_STATS_LINE, "source slot");
/** How a supervised consumer's memory_limit is enforced
 *  (struct spate_stats_sup.mem_mode). */
enum spate_stats_sup_mem {
	SPATE_STATS_SUP_MEM_NONE = 0,   /**< no limit */
	SPATE_STATS_SUP_MEM_CGROUP = 1, /**< cgroup v2 memory.max per process */
	SPATE_STATS_SUP_MEM_RLIMIT = 2, /**< RLIMIT_AS per process */
};

/**
 * Addition 1 (since layout 3; hdr.sup_version >= 1): a supervised consumer's
 * processes (function processes, isolated plugins; engine/functions/
 * supervisor.h). One slot per consumer, used when procs > 0. Several
 * writers (the supervisor thread, the workers ending invocations): relaxed
 * fetch_adds, once per invocation or process event, never per record.
 * Its histograms (init and invoke durations, ns) are in the sup area too.
 */
struct spate_stats_sup {
	_Atomic uint64_t invocations; /**< invocations ended (ok or error) */
	_Atomic uint64_t errors;      /**< of which failed (error result, crash, timeout) */
	_Atomic uint64_t timeouts;    /**< processes killed at an invocation's deadline */
	_Atomic uint64_t crashes;     /**< processes that died unasked (signal, exit) */
	_Atomic uint64_t cold_starts; /**< processes that became ready */
	_Atomic uint64_t init_fails;  /**< processes that ended (or hung) before ready */
	_Atomic uint64_t spawns;      /**< processes started */
	_Atomic uint64_t oom_kills;   /**< killed at memory_limit (cgroup: OOM killer) */
	_Atomic uint64_t init_ns;     /**< sum of cold-start durations */
	_Atomic uint64_t invoke_ns;   /**< sum of invocation durations */
	_Atomic uint32_t alive;       /**< processes running now */
	uint32_t procs;               /**< slots (concurrency; 0: slot unused) */
	uint32_t mem_mode;            /**< enum spate_stats_sup_mem */
	uint32_t consumer;            /**< consumer index */
	uint64_t init_hist;           /**< histogram index: spawn -> ready (ns) */
	uint64_t invoke_hist;         /**< histogram index: invocation (ns) */
	uint8_t pad_[2 * SPATE_STATS_LINE - 112];
};

_Static_assert(sizeof(struct spate_stats_stream) == SPATE_STATS_LINE, "stream slot");
_Static_assert(sizeof(struct spate_stats_hdr) == 216, "header size is fixed since layout 3");
_Static_assert(sizeof(struct spate_stats_shard) == 3 * SPATE_STATS_LINE, "shard slot");
_Static_assert(sizeof(struct spate_stats_consumer) == 3 * SPATE_STATS_LINE, "consumer slot");
_Static_assert(sizeof(struct spate_stats_task) == 3 * SPATE_STATS_LINE, "task slot");
_Static_assert(sizeof(struct spate_stats_worker) == SPATE_STATS_LINE, "worker slot");
_Static_assert(sizeof(struct spate_stats_sup) == 2 * SPATE_STATS_LINE, "sup slot");

struct spate_stats;

/* ------------------------------------------------------------------------ */
/* Creating (the engine)                                                    */
/* ------------------------------------------------------------------------ */

/** Shape of a new region: the engine fills it from its configuration. */
struct spate_stats_shape {
	uint32_t n_streams, n_shards, n_consumers, n_tasks, n_workers;
	/** Supervised consumers (their processes' slots: the sup area;
	 *  spate_stats_add_sup()); 0: none. */
	uint32_t n_sup;
	uint32_t n_sources; /**< sources (spate/sources.h): addition 2, then the
			       consumers' status slots */
};

/**
 * Create (or replace) the counters region of bus @p bus with room for
 * @p shape; nobody can attach it until spate_stats_publish().
 * Then describe it with spate_stats_add_stream() / _add_consumer() /
 * spate_stats_worker().
 * @return 0, -EINVAL (bad name or shape), -ENOMEM, or the errors of
 *         spate_shm_create().
 */
int spate_stats_create(const char *bus, const struct spate_stats_shape *shape,
		       struct spate_stats **out);
/**
 * Describe stream @p name (@p shards shards); @p tail_seq / @p tail are the
 * rings' current positions (per shard, may be NULL: 0), the base of the
 * records-in and bytes-in figures. Streams are added in index order.
 * @return the stream's index, or -ENOSPC (more than the shape), -EINVAL.
 */
int spate_stats_add_stream(struct spate_stats *st, const char *name, uint32_t shards,
			   const uint64_t *tail_seq, const uint64_t *tail);
/**
 * Describe a consumer of stream index @p stream with @p lanes lanes per
 * shard; its tasks are (shard s, lane l) at first_task + s * lanes + l, and
 * @p reader_slots[task] (may be NULL) is each task's ring reader slot.
 * @return the consumer's index, or -ENOSPC, -EINVAL.
 */
int spate_stats_add_consumer(struct spate_stats *st, const char *name, const char *plugin,
			     uint32_t stream, uint32_t lanes, const uint32_t *reader_slots);
/**
 * Give consumer index @p consumer a slot of the sup area (a supervised
 * consumer: function processes or isolated plugin processes) for
 * @p procs processes.
 * @return the sup slot's index, or -ENOSPC (n_sup of the shape), -EINVAL.
 */
int spate_stats_add_sup(struct spate_stats *st, uint32_t consumer, uint32_t procs);
/**
 * Fill a free stream slot at run time (after spate_stats_publish() too) with
 * stream @p name of @p shards shards, in the first free run of shard slots;
 * its counters and fsync histogram start from zero. Thread: one writer at a
 * time (the engine's stream registry lock); readers skip the slot while it
 * changes.
 * @return the stream's slot index, -ENOSPC (no free slot or run of shard
 *         slots), -EINVAL.
 */
int spate_stats_stream_claim(struct spate_stats *st, const char *name, uint32_t shards,
			     const uint64_t *tail_seq, const uint64_t *tail);
/** Empty stream slot @p i (and free its shard slots) for a later claim.
 *  Same thread rule as spate_stats_stream_claim(). */
void spate_stats_stream_release(struct spate_stats *st, uint32_t i);

/** A consistent copy of a stream slot (spate_stats_stream_read()). */
struct spate_stats_stream_desc {
	char name[SPATE_STATS_NAME_MAX + 1];
	uint32_t shards, first_shard;
	uint64_t fsync_hist;
};
/**
 * Copy stream slot @p i if a stream is there (any thread, any process).
 * @return 1 (copied), 0 (an empty slot, or one changing right now: retry
 *         later), -EINVAL (no such slot, or a scribbled one).
 */
int spate_stats_stream_read(const struct spate_stats *st, uint32_t i,
			    struct spate_stats_stream_desc *out);

/** Make the region visible to attachers (release). */
void spate_stats_publish(struct spate_stats *st);
/** Remove bus @p bus's region. @return 0, -ENOENT, -EINVAL. */
int spate_stats_unlink(const char *bus);

/* ------------------------------------------------------------------------ */
/* Attaching (monitors)                                                     */
/* ------------------------------------------------------------------------ */

/**
 * Attach bus @p bus's region read-only, validating every field of its
 * header against the region's size.
 * @return 0, -ENOENT (no engine has run this bus here), -EBADMSG (corrupt),
 *         -EPROTO (another layout version, or histograms of another size),
 *         -EAGAIN (being created), -EINVAL, -ENOMEM.
 */
int spate_stats_attach(const char *bus, struct spate_stats **out);
/**
 * Attach read-write, for a producer in another process that counts its
 * batches in the region (spate_producer_set_stats()). Same checks and
 * errors as spate_stats_attach().
 */
int spate_stats_attach_rw(const char *bus, struct spate_stats **out);
/** Detach; the creator's handle also removes the region (if it still is
 *  the one under its name). NULL-safe. */
void spate_stats_close(struct spate_stats *st);

/** A validated copy of the header. */
const struct spate_stats_hdr *spate_stats_header(const struct spate_stats *st);
/** Whether the engine that created the region still runs: 1 or 0. */
int spate_stats_engine_alive(const struct spate_stats *st);

/* Slots by index; NULL if out of range. Any thread, any process. */
struct spate_stats_stream *spate_stats_stream_at(const struct spate_stats *st, uint32_t i);
struct spate_stats_shard *spate_stats_shard_at(const struct spate_stats *st, uint32_t i);
struct spate_stats_consumer *spate_stats_consumer_at(const struct spate_stats *st, uint32_t i);
struct spate_stats_task *spate_stats_task_at(const struct spate_stats *st, uint32_t i);
struct spate_stats_worker *spate_stats_worker_at(const struct spate_stats *st, uint32_t i);
/** Source slot @p i (spate/sources.h), or NULL. */
struct spate_stats_source_slot *spate_stats_source_at(const struct spate_stats *st, uint32_t i);
/** Sup slot @p i, or NULL (out of range, or no sup area). */
struct spate_stats_sup *spate_stats_sup_at(const struct spate_stats *st, uint32_t i);
/** The sup slot of consumer index @p consumer, or NULL (not supervised). */
struct spate_stats_sup *spate_stats_sup_of(const struct spate_stats *st, uint32_t consumer);
/** Histogram @p i of the sup area (a struct spate_stats_sup's init_hist or
 *  invoke_hist), or NULL. */
struct spate_hist *spate_stats_sup_hist_at(const struct spate_stats *st, uint64_t i);
/** Histogram @p i (an index from a slot), or NULL. */
struct spate_hist *spate_stats_hist_at(const struct spate_stats *st, uint64_t i);
/** Shard slot of (stream @p stream, shard @p shard), or NULL. */
struct spate_stats_shard *spate_stats_shard_of(const struct spate_stats *st, uint32_t stream,
					       uint32_t shard);
/** Index of consumer @p name, or -ENOENT. */
int spate_stats_consumer_find(const struct spate_stats *st, const char *name);
/** Index of stream @p name, or -ENOENT. */
int spate_stats_stream_find(const struct spate_stats *st, const char *name);

/**
 * Copy histogram @p i into @p out (spate_hist_snapshot(): counts are copied
 * one by one while writers may add to them; the count is the sum of the
 * buckets copied, min and max cover them).
 * @return 0 or -EINVAL (no such histogram, or not a valid one).
 */
int spate_stats_hist_copy(const struct spate_stats *st, uint64_t i, struct spate_hist *out);

/* ------------------------------------------------------------------------ */
/* Snapshots (monitors)                                                     */
/* ------------------------------------------------------------------------ */

/*
 * A snapshot of a bus: every counter of its region copied once, plus what
 * the bus's rings show for free (records and bytes appended since the region
 * was made, the head sequence, the oldest record still in the ring, each
 * task's lag). `spate stat`, `spate top` and the Prometheus endpoint of
 * `spate run` are built on it; any monitor may be.
 *
 * spate_stats_view_take() attaches the region read-only and each stream's
 * region without taking a reader or writer slot (so the bus never waits for
 * a monitor), copies, and detaches. Counters are read one by one, not as
 * one atomic snapshot: a rate (the difference of two snapshots) can be off
 * by what happened during the copy (microseconds). Lag in bytes moves in the
 * reader's release steps. A snapshot is the caller's: read it from any
 * thread, free it with spate_stats_view_free().
 *
 * Compatibility: the structs below are allocated by the library only; a
 * later version may add fields at their ends, never move one.
 */

/** One shard of one stream. */
struct spate_stats_view_shard {
	uint32_t stream, shard;        /**< stream index, shard number */
	bool ring_ok;                  /**< the stream region could be read (else ring figures are 0) */
	uint64_t records_in, bytes_in; /**< appended since the counters region was created */
	uint64_t head_seq;             /**< next sequence number to be published */
	uint64_t oldest_seq;           /**< oldest record still in the ring (UINT64_MAX: unknown) */
	uint64_t oldest_ts;            /**< its commit time, realtime ns (0: ring empty) */
	uint64_t backpressure, put_failed, put_batches;          /**< producer line */
	uint64_t persist_bytes, persist_writes, persist_fsyncs;  /**< persister line */
	uint64_t durable_seq;          /**< every record below is on disk (UINT64_MAX: none) */
};

/** One (consumer, shard, lane). */
struct spate_stats_view_task {
	uint32_t consumer, shard, lane;
	uint64_t records, bytes, batches, errors, retries, bisections, failed, expired;
	uint64_t checkpoint;           /**< next sequence to handle (UINT64_MAX: unknown yet) */
	uint64_t last_ts;              /**< commit time of the last record handled */
	uint64_t process_ns;           /**< time in process(), timed deliveries (1 in 8) */
	uint64_t lag_records;          /**< published but not handled */
	uint64_t lag_bytes;            /**< ring bytes not released (0 when nothing waits) */
	uint64_t age_ms;               /**< iterator age: now minus last_ts, 0 when nothing waits */
	uint32_t source;               /**< enum spate_stats_source */
	uint64_t catchup_from, catchup_target; /**< catch-up from the log (source LOG) */
	uint64_t batch_log2[SPATE_STATS_BATCH_BUCKETS]; /**< deliveries by log2 size */
};

/** A consumer. Its tasks are tasks[first_task + s * lanes + l]. */
struct spate_stats_view_consumer {
	char name[SPATE_STATS_NAME_MAX + 1], plugin[SPATE_STATS_NAME_MAX + 1];
	char error[SPATE_STATS_LINE];  /**< why it stopped ("" if it did not) */
	uint32_t stream, shards, lanes, first_task;
	uint32_t state;                /**< enum spate_stats_state */
	uint64_t cold_start_ns, first_batch_ns, helped;
	/** Its histograms (every shard and lane of it); spate_stats_view_hist(). */
	struct spate_hist *latency, *process, *batch;
	/** Its processes when supervised (a function, isolation: process),
	 *  else NULL: counters copied once, histograms of init and invoke
	 *  durations (ns). */
	struct spate_stats_view_sup *sup;
};

/** A supervised consumer's processes (struct spate_stats_sup, copied). */
struct spate_stats_view_sup {
	uint64_t invocations, errors, timeouts, crashes, cold_starts, init_fails, spawns, oom_kills;
	uint64_t init_ns, invoke_ns;
	uint32_t alive, procs, mem_mode;
	struct spate_hist *init, *invoke; /**< init (cold start) and invocation durations, ns */
};

/** A worker thread. */
struct spate_stats_view_worker {
	uint64_t loops, busy_ns, parked_ns, since_ns;
	uint32_t state;                /**< enum spate_stats_worker_state */
	uint32_t tasks;
	int32_t cpu;                   /**< pinned CPU, -1 if none */
};

/** A source (spate/sources.h). */
struct spate_stats_view_source {
	char name[SPATE_STATS_NAME_MAX + 1], type[SPATE_STATS_NAME_MAX + 1];
	char error[SPATE_STATS_LINE];  /**< its last error ("" if none) */
	uint32_t stream;               /**< stream index */
	uint32_t state;                /**< enum spate_stats_source_state */
	uint32_t n_counters;
	char counter_names[SPATE_STATS_SOURCE_COUNTERS][SPATE_STATS_COUNTER_NAME_MAX + 1];
	uint64_t counters[SPATE_STATS_SOURCE_COUNTERS];
};

/** A bus. */
struct spate_stats_view {
	char bus[SPATE_STATS_NAME_MAX + 1];
	uint32_t engine_pid;
	bool alive;                    /**< the engine still runs */
	uint64_t started_ns;           /**< engine start, realtime ns */
	uint64_t mono_ns, real_ns;     /**< when the snapshot was taken */
	uint32_t n_streams, n_shards, n_consumers, n_tasks, n_workers;
	char (*stream_names)[SPATE_STATS_NAME_MAX + 1]; /**< [n_streams] */
	uint32_t *stream_shards;       /**< [n_streams] shards of each stream */
	uint32_t *stream_first;        /**< [n_streams] its first index in shards[] */
	struct spate_hist **stream_fsync; /**< [n_streams] fdatasync latency of its shards */
	struct spate_stats_view_shard *shards;       /**< [n_shards] */
	struct spate_stats_view_consumer *consumers; /**< [n_consumers] */
	struct spate_stats_view_task *tasks;         /**< [n_tasks] */
	struct spate_stats_view_worker *workers;     /**< [n_workers] */
	uint32_t n_sources;
	struct spate_stats_view_source *sources;     /**< [n_sources] */
};

/** Which histogram of a consumer (spate_stats_view_hist()). */
enum spate_stats_hist_kind {
	SPATE_STATS_HIST_LATENCY = 0, /**< commit -> delivery, ns (sampled 1 in 8) */
	SPATE_STATS_HIST_PROCESS = 1, /**< time in process(), ns (the same 1 in 8) */
	SPATE_STATS_HIST_BATCH = 2,   /**< records per delivery (every delivery) */
};

/**
 * Take a snapshot of bus @p bus (any thread, any process; writes nothing to
 * the bus).
 * @return 0 and the snapshot in @p out; or the errors of
 *   spate_stats_attach() (-ENOENT: no engine has run the bus here, -EBADMSG,
 *   -EPROTO, -EAGAIN, -EINVAL), -ENOMEM.
 */
int spate_stats_view_take(const char *bus, struct spate_stats_view **out);
/** Free a snapshot. NULL-safe. */
void spate_stats_view_free(struct spate_stats_view *v);
/** Histogram @p kind of consumer @p c (every shard and lane: histograms are
 *  per consumer, not per shard). */
const struct spate_hist *spate_stats_view_hist(const struct spate_stats_view *v, uint32_t c,
					       enum spate_stats_hist_kind kind);
/** Lag of consumer @p c on @p shard (UINT32_MAX: summed over shards): per
 *  shard the largest of its lanes'; the age is the largest. */
void spate_stats_view_lag(const struct spate_stats_view *v, uint32_t c, uint32_t shard,
			  uint64_t *records, uint64_t *bytes, uint64_t *age_ms);
/** Checkpoint of consumer @p c on @p shard: the smallest of its lanes'
 *  (UINT64_MAX: unknown yet). */
uint64_t spate_stats_view_checkpoint(const struct spate_stats_view *v, uint32_t c, uint32_t shard);
/** Catch-up progress of a task reading the log (0..1), -1 on the ring. */
double spate_stats_view_task_catchup(const struct spate_stats_view_task *x);
/** Name of consumer state @p s (enum spate_stats_state): "running", ... */
const char *spate_stats_state_name(uint32_t s);

/* ------------------------------------------------------------------------ */
/* Hot-path updaters (inline)                                               */
/* ------------------------------------------------------------------------ */

/** Add @p v to a counter that only the calling thread writes. Relaxed
 *  load + relaxed store: no other writer can interleave, and readers only
 *  need an untorn value. */
static inline void spate_stats_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

/** Set a last-value figure that only the calling thread writes (relaxed:
 *  informational, nothing is published through it). */
static inline void spate_stats_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

/** Add to a counter with several writers (producer line): relaxed RMW. */
static inline void spate_stats_add_shared(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/** Process-local references to a task's slot and its consumer's
 *  histograms, resolved once (spate_stats_task_ref()) so the hot path does
 *  no lookups. The histograms are shared by every task of the consumer:
 *  record into them with spate_hist_record_mw() only. */
struct spate_stats_tref {
	struct spate_stats_task *slot; /**< NULL: counters off */
	struct spate_hist *latency;    /**< consumer's: commit -> delivery (ns), sampled */
	struct spate_hist *process;    /**< consumer's: process() time (ns) */
	struct spate_hist *batch;      /**< consumer's: records per delivery */
};

/** The same for a shard (producers, persistence). */
struct spate_stats_sref {
	struct spate_stats_shard *slot; /**< NULL: counters off */
	struct spate_hist *fsync;       /**< the stream's fsync latency (ns; multi-writer) */
};

/** Resolve task @p i (its slot, its consumer's histograms).
 *  @return 0 or -EINVAL (out of range: @p out zeroed). */
int spate_stats_task_ref(const struct spate_stats *st, uint32_t i, struct spate_stats_tref *out);
/** Resolve the shard slot of (stream @p stream, shard @p shard) and its
 *  stream's fsync histogram. @return 0 or -EINVAL (@p out zeroed). */
int spate_stats_shard_ref(const struct spate_stats *st, uint32_t stream, uint32_t shard,
			  struct spate_stats_sref *out);

/* Sources (the door's threads). */
/**
 * Name counter @p i of source slot @p s (at start, before any other thread
 * reads it; names are set in index order, 0 first).
 * @return @p i, or -EINVAL (@p i beyond SPATE_STATS_SOURCE_COUNTERS or not
 *         the next one, or a NULL name).
 */
int spate_stats_source_counter(struct spate_stats_source_slot *s, uint32_t i, const char *name);
/** Set the source's state (enum spate_stats_source_state). */
static inline void spate_stats_source_state(struct spate_stats_source_slot *s, uint32_t state)
{
	/* Relaxed: a state for display; nothing is published through it. */
	atomic_store_explicit(&s->state, state, memory_order_relaxed);
}
/** Add @p v to counter @p i (several door threads may: relaxed RMW). */
static inline void spate_stats_source_add(struct spate_stats_source_slot *s, uint32_t i, uint64_t v)
{
	if (i < SPATE_STATS_SOURCE_COUNTERS)
		atomic_fetch_add_explicit(&s->counters[i], v, memory_order_relaxed);
}
/** Set gauge @p i to @p v (relaxed: a last value for display). */
static inline void spate_stats_source_set(struct spate_stats_source_slot *s, uint32_t i, uint64_t v)
{
	if (i < SPATE_STATS_SOURCE_COUNTERS)
		atomic_store_explicit(&s->counters[i], v, memory_order_relaxed);
}
/** Record the source's last error (printf-style; "" clears it). */
__attribute__((format(printf, 2, 3))) void spate_stats_source_error(struct spate_stats_source_slot *s,
								    const char *fmt, ...);
/** Name of source state @p s ("up", "down", ...). */
const char *spate_stats_source_state_name(uint32_t s);

/** The log2 bucket of a batch of @p n records (n >= 1). */
static inline unsigned spate_stats_batch_bucket(uint32_t n)
{
	unsigned k = n ? 31u - (unsigned)__builtin_clz(n) : 0;
	return k < SPATE_STATS_BATCH_BUCKETS ? k : SPATE_STATS_BATCH_BUCKETS - 1;
}

/** A delivery of @p n records to the plugin; @p retry if it was a
 *  redelivery; @p ns its time in process() if it was timed (the engine times
 *  1 delivery in 8, the ones whose latency it samples), else 0. Thread: the
 *  task's poller; the slot's counters are its own (load + store), the
 *  histograms are the consumer's, shared with the pollers of its other
 *  tasks (multi-writer records: a few locked instructions per delivery). */
static inline void spate_stats_task_delivery(const struct spate_stats_tref *r, uint32_t n,
					     uint64_t ns, bool retry)
{
	struct spate_stats_task *t = r->slot;

	spate_stats_add(&t->batches, 1);
	if (retry)
		spate_stats_add(&t->retries, 1);
	if (ns) {
		spate_stats_add(&t->process_ns, ns);
		spate_hist_record_mw(r->process, ns);
	}
	spate_hist_record_mw(r->batch, n);
	spate_stats_add(&t->batch_log2[spate_stats_batch_bucket(n)], 1);
}

/** @p n records of @p bytes payload bytes were handled, the last committed
 *  at @p last_ts. Thread: the task's poller. */
static inline void spate_stats_task_done(struct spate_stats_task *t, uint64_t n, uint64_t bytes,
					 uint64_t last_ts)
{
	spate_stats_add(&t->records, n);
	spate_stats_add(&t->bytes, bytes);
	spate_stats_set(&t->last_ts, last_ts);
}

/** Producer side: a batch went to shard @p s (@p failed records refused,
 *  @p full_events reserves found the shard full). Any producer thread. */
static inline void spate_stats_shard_put(struct spate_stats_shard *s, uint64_t failed,
					 uint64_t full_events)
{
	spate_stats_add_shared(&s->put_batches, 1);
	if (failed)
		spate_stats_add_shared(&s->put_failed, failed);
	if (full_events)
		spate_stats_add_shared(&s->backpressure, full_events);
}

/* Workers (the worker thread). */
/** A worker's process-local memory of its previous round. */
struct spate_stats_wprev {
	uint64_t at;    /**< monotonic start of the previous round (0: none) */
	uint32_t work;  /**< it handled records */
	uint32_t state; /**< state last stored */
};
/**
 * A polling round starts at monotonic time @p now (the time the worker reads
 * anyway); @p work: it handled records. The previous round's length, up to
 * now, is busy time if that round worked, else parked time (polling empty
 * tasks and waiting). No clock read of its own.
 */
static inline void spate_stats_worker_round(struct spate_stats_worker *w,
					    struct spate_stats_wprev *p, uint64_t now, bool work)
{
	uint32_t s = work ? SPATE_STATS_WORKER_ACTIVE : SPATE_STATS_WORKER_PARKED;

	spate_stats_add(&w->loops, 1);
	if (p->at && now > p->at)
		spate_stats_add(p->work ? &w->busy_ns : &w->parked_ns, now - p->at);
	p->at = now;
	p->work = work;
	if (s != p->state) {
		/* Relaxed: a state for display; stored only when it changes. */
		atomic_store_explicit(&w->state, s, memory_order_relaxed);
		p->state = s;
	}
}
/** The worker thread ends. */
static inline void spate_stats_worker_stopped(struct spate_stats_worker *w)
{
	/* Relaxed: a state for display. */
	atomic_store_explicit(&w->state, SPATE_STATS_WORKER_STOPPED, memory_order_relaxed);
}

/* Persistence (the shard's persister thread). */
/** @p bytes were submitted to the log in one write. */
static inline void spate_stats_persist_write(struct spate_stats_shard *s, uint64_t bytes)
{
	spate_stats_add(&s->persist_bytes, bytes);
	spate_stats_add(&s->persist_writes, 1);
}
/** An fsync (fdatasync) took @p ns and made every record below @p durable_seq
 *  durable. The histogram is the stream's (multi-writer record). */
static inline void spate_stats_persist_fsync(const struct spate_stats_sref *r, uint64_t ns,
					     uint64_t durable_seq)
{
	spate_stats_add(&r->slot->persist_fsyncs, 1);
	spate_hist_record_mw(r->fsync, ns);
	spate_stats_set(&r->slot->durable_seq, durable_seq);
}

/* Catch-up from disk (the task's poller). */
/** The task reads the log from @p from until @p target, where the ring takes over. */
static inline void spate_stats_task_catchup(struct spate_stats_task *t, uint64_t from,
					    uint64_t target)
{
	spate_stats_set(&t->catchup_from, from);
	spate_stats_set(&t->catchup_target, target);
	/* Relaxed: informational (no ring reader while on the log). */
	atomic_store_explicit(&t->reader_slot, UINT32_MAX, memory_order_relaxed);
	/* Relaxed: informational, like the counters. */
	atomic_store_explicit(&t->source, SPATE_STATS_SOURCE_LOG, memory_order_relaxed);
}
/** The task is back on the ring, reader slot @p reader_slot. */
static inline void spate_stats_task_on_ring(struct spate_stats_task *t, uint32_t reader_slot)
{
	/* Relaxed: informational. */
	atomic_store_explicit(&t->reader_slot, reader_slot, memory_order_relaxed);
	/* Relaxed: informational. */
	atomic_store_explicit(&t->source, SPATE_STATS_SOURCE_RING, memory_order_relaxed);
}

#ifdef __cplusplus
}
#endif
#endif /* SPATE_STATS_H */
