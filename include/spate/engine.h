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
#include "spate/hist.h"
#include "spate/plugin.h"
#include "spate/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

struct spate_engine;

/**
 * Binary envelope of a record sent to a consumer's on_failure stream: this
 * header, then the failed record's payload (Lambda sends only metadata; spate
 * sends the record itself). Little-endian, packed by construction.
 */
struct spate_failed_record {
	uint32_t magic;          /**< SPATE_FAILED_MAGIC */
	uint32_t hdr_size;       /**< sizeof(struct spate_failed_record) */
	uint64_t seq;            /**< sequence number in the source shard */
	uint64_t ts;             /**< the record's timestamp (ns) */
	uint64_t failed_ns;      /**< when it was given up (CLOCK_REALTIME ns) */
	uint32_t shard;
	uint32_t attempts;       /**< deliveries that included it */
	uint32_t key_hash;
	uint32_t payload_len;    /**< payload bytes after this header */
	uint32_t reason;         /**< enum spate_failure_reason (spate_failure_reason_name()) */
	/** The record's own length; above payload_len when the payload was
	 *  cut to fit the failure stream's max_record_size. */
	uint32_t orig_len;
	char consumer[48];
	char stream[48];
	char error[200];
};
#define SPATE_FAILED_MAGIC 0x31524653u /* "SFR1" */

/** Why a record went to the failure destination. */
enum spate_failure_reason {
	SPATE_FAIL_RETRIES_EXHAUSTED = 1,
	SPATE_FAIL_RECORD_EXPIRED = 2, /**< older than max_record_age */
};
/** The reason as text ("retries exhausted", "record expired", "unknown"). */
const char *spate_failure_reason_name(uint32_t reason);
/* A FATAL result sends nothing: the consumer stops with its checkpoint at
 * the last success, and the records stay in the stream for a restart. */

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

enum spate_consumer_state {
	SPATE_CONSUMER_RUNNING = 1,
	SPATE_CONSUMER_STOPPED = 2,
	SPATE_CONSUMER_FAILED = 3, /**< the plugin returned FATAL or failed to init */
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

#ifdef __cplusplus
}
#endif
#endif /* SPATE_ENGINE_H */
