/* SPDX-License-Identifier: MIT */
/**
 * @file spate/record.h
 * @brief The record view: what a reader (spate_ring_peek(), the log reader)
 *        and a consumer plugin (struct spate_batch) see of one record.
 *
 * Plain C, no atomics, no other spate header: spate/plugin.h includes it
 * instead of spate/ring.h, so a plugin (C or C++) sees the record and nothing
 * of the ring's shared layout. spate/ring.h includes it too, so the type is
 * one and the same for ring readers and plugins.
 *
 * Part of the plugin ABI (spate/plugin.h, ABI 1): the layout is frozen; a
 * field added later goes at the end and is announced by a plugin ABI
 * revision, never by changing what is here.
 */
#ifndef SPATE_RECORD_H
#define SPATE_RECORD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A zero-copy view of one record, filled by spate_ring_peek() (and the log
 *  reader); valid until the reader releases it (for a plugin: until
 *  process() returns). */
struct spate_ring_rec {
	const void *data;  /**< payload in the ring (8-byte aligned) */
	uint64_t seq;      /**< per-ring sequence number */
	uint64_t ts;       /**< publication (commit) time, CLOCK_REALTIME ns */
	uint32_t len;      /**< payload bytes */
	uint32_t key_hash; /**< partition-key hash given by the writer */
	uint8_t type;      /**< user type byte */
};

#ifdef __cplusplus
}
#endif
#endif /* SPATE_RECORD_H */
