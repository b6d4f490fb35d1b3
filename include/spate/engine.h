/* SPDX-License-Identifier: MIT */
/**
 * @file spate/engine.h
 * @brief The embedded engine: streams, consumers (event source mappings)
 *        and their workers, from a configuration file or struct.
 *
 * An appliance embeds spate like this:
 *
 *     struct spate_engine *e;
 *     char err[512];
 *     if (spate_engine_open_file("bus.yaml", &e, err, sizeof(err)) < 0)
 *             die(err);
 *     spate_engine_start(e);
 *     struct spate_producer *p;
 *     spate_producer_open(spate_engine_stream(e, "orders"), SPATE_RING_WAIT_YIELD, 0, &p);
 *     spate_put(p, "key", 3, "hello", 5, NULL);
 *     ...
 *     spate_engine_stop(e);    // drain, flush, checkpoint
 *     spate_engine_close(e);
 *
 * Threads: open/start/stop/close/deploy on one control thread; the stream
 * lookups and stats from any thread while the engine runs.
 */
#ifndef SPATE_ENGINE_H
#define SPATE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "spate/config.h"
#include "spate/consumer_types.h"
#include "spate/hist.h"
#include "spate/plugin.h"
#include "spate/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

struct spate_engine;

/** Counters of one consumer (summed over its shards and lanes). */
struct spate_consumer_stats {
	uint64_t records;        /**< processed successfully */
	uint64_t bytes;
	uint64_t batches;
	uint64_t retries;        /**< batch deliveries that were retries */
	uint64_t failed;         /**< records sent to the failure destination (or dropped) */
	uint64_t expired;        /**< of which for max_record_age */
	uint64_t lag_records;    /**< behind the shards' tails now */
	uint64_t cold_start_ns;  /**< longest plugin init */
	uint64_t first_batch_ns; /**< start to end of the first processed batch */
	uint64_t helped;         /**< steps done by a worker helping with a lagging shard */
	uint32_t state;          /**< enum spate_consumer_state */
	char error[200];         /**< why it stopped, if it did */
	uint64_t log_records;    /**< read from the stream's log (history, or after falling behind) */
	uint64_t log_gaps;       /**< records retention deleted before they were read */
	uint32_t log_spills;     /**< switches from the ring to the log (fell half a ring behind) */
	uint32_t on_log;         /**< tasks reading the log right now */
};


/**
 * Create an engine from a configuration, which must stay valid until
 * spate_engine_close(). Streams are created, or
 * attached if they exist with the same shape; plugins are loaded and their
 * ABI checked; checkpoints are read from state_dir.
 * @return 0, -EINVAL (bad config: @p err says why), -EPROTO/-ELIBBAD/-ENOENT
 *         (a plugin), or the errors of spate_stream_create/attach.
 */
int spate_engine_open(const struct spate_config *cfg, struct spate_engine **out, char *err,
		      size_t errlen);
/** spate_engine_open() from a YAML file; errors name file, line and field. */
int spate_engine_open_file(const char *path, struct spate_engine **out, char *err, size_t errlen);
/** Start the workers (pinned per the placement plan). @return 0 or -errno. */
int spate_engine_start(struct spate_engine *e);
/** Stop: finish in-flight batches, flush plugins, write checkpoints. */
int spate_engine_stop(struct spate_engine *e);
/** Free everything (stops first if running). NULL-safe. Streams stay. */
void spate_engine_close(struct spate_engine *e);

/** A stream of the engine by name, or NULL. */
struct spate_stream *spate_engine_stream(struct spate_engine *e, const char *name);
/** Counters of consumer @p name. @return 0 or -ENOENT. */
int spate_engine_consumer_stats(struct spate_engine *e, const char *name,
				struct spate_consumer_stats *st);
/**
 * Merge consumer @p name's sampled latency (a record's commit to its delivery
 * to the plugin, ns; 1 delivery in 8) into @p out (initialised by the
 * caller). The histogram is the consumer's in the counters region, or one
 * kept in this process when counters are off. Call after
 * spate_engine_stop(), when every delivery has been counted.
 * @return 0, -ENOENT, -EBUSY (still running), -EPROTO (@p out is not an
 *         initialised histogram).
 */
int spate_engine_consumer_latency(struct spate_engine *e, const char *name, struct spate_hist *out);

/** Print the placement plan (which core runs which worker and task). */
void spate_engine_describe(struct spate_engine *e, char *buf, size_t len);

/**
 * Hot deploy: replace consumer @p name's plugin with the build at @p path
 * while streams run: pause its tasks after their current batch, flush and
 * fini the old states, checkpoint, load the new image (a new copy, so the
 * same path loads a new build), init, resume. Nothing is lost; duplicates
 * only within at-least-once.
 * @return 0, -ENOENT (no such consumer), or the plugin load errors (the old
 *         plugin keeps running then).
 */
int spate_engine_deploy(struct spate_engine *e, const char *name, const char *path, char *err,
			size_t errlen);

/* One engine per bus ----------------------------------------------------- */

/** The file in state_dir whose flock(2) marks the running engine; it holds
 *  "<pid> <start time>" of the holder. */
#define SPATE_ENGINE_LOCK_FILE "engine.lock"

struct spate_engine_lock;

/**
 * Take the engine lock of @p state_dir (exclusive, created 0600), as
 * spate_engine_open() does before it maps anything, and `spate rm` while it
 * removes a bus. Retries for up to 10 ms (a probe holds it for a moment).
 * Any thread; the lock belongs to the returned handle.
 * @return 0, -EBUSY (held: @p holder, if not NULL, gets the holder's pid, 0
 *         if it has not written it yet), -ENAMETOOLONG, -ENOMEM, or the
 *         -errno of open(2)/flock(2).
 */
int spate_engine_lock(const char *state_dir, struct spate_engine_lock **out, pid_t *holder);
/** Release it. NULL-safe. */
void spate_engine_unlock(struct spate_engine_lock *l);
/**
 * Whether an engine holds @p state_dir's lock, without taking it. The pid of
 * a held lock is the live holder's (never a stale one: the kernel drops the
 * lock when its holder dies).
 * @return 1 (held: *pid, *start its pid and start time, each if not NULL;
 *         pid 0 if not written yet), 0 (free: no engine runs), or -errno.
 */
int spate_engine_lock_holder(const char *state_dir, pid_t *pid, uint64_t *start);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_ENGINE_H */
