/* SPDX-License-Identifier: MIT */
/**
 * @file spate/consumer_types.h
 * @brief The vocabulary of consumers shared by the engine API (engine.h),
 *        the counters region (stats.h) and the consumer runtime: a
 *        consumer's state, and the envelope of a record sent to its
 *        failure destination.
 *
 * Both cross processes (the counters region's consumer line; records in an
 * on_failure stream), so their values never change meaning: new states and
 * reasons take new numbers. No atomics, no other spate header: any module,
 * and C++, may include it.
 */
#ifndef SPATE_CONSUMER_TYPES_H
#define SPATE_CONSUMER_TYPES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A consumer's state (spate_consumer_stats.state, spate_stats_consumer.state). */
enum spate_consumer_state {
	SPATE_CONSUMER_RUNNING = 1,
	SPATE_CONSUMER_STOPPED = 2,
	SPATE_CONSUMER_FAILED = 3, /**< the plugin returned FATAL or failed to init */
};

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

#ifndef __cplusplus
/* Records of a failure stream are read by other processes and builds: the
 * envelope's layout and the values are fixed. */
_Static_assert(sizeof(struct spate_failed_record) == 352, "failure envelope layout");
_Static_assert(SPATE_CONSUMER_RUNNING == 1 && SPATE_CONSUMER_STOPPED == 2 &&
		       SPATE_CONSUMER_FAILED == 3,
	       "consumer states cross processes (counters region)");
#endif

#ifdef __cplusplus
}
#endif
#endif /* SPATE_CONSUMER_TYPES_H */
