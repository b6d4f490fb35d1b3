/* SPDX-License-Identifier: MIT */
/*
 * Internal (never installed): one RX queue of a DPDK port feeding a stream
 * (engine/sources/dpdk_rx.c). The `type: dpdk` source runs one per RX
 * thread; `spate bench ingress` measures it.
 *
 * Threads: a struct spate_dpdk_rxq belongs to its RX thread; its counters
 * (struct spate_dpdk_rxq_stats) are written by that thread alone (relaxed
 * load + store) and read by anyone (relaxed: figures for display).
 */
#ifndef SPATE_DPDK_RX_H
#define SPATE_DPDK_RX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "spate/packet.h"
#include "spate/stream.h"

/** Most packets one receive burst takes. */
#define SPATE_DPDK_MAX_BURST 64u

/** How a packet picks its shard. */
enum spate_dpdk_shard_by {
	SPATE_DPDK_SHARD_AUTO = 0,  /**< the NIC's RSS hash when the mbuf has one, else FLOW */
	SPATE_DPDK_SHARD_FLOW = 1,  /**< symmetric 5-tuple hash (spate_packet_flow_hash()) */
	SPATE_DPDK_SHARD_FIXED = 2, /**< always one shard (fixed_shard) */
};

/** What a full shard does to the queue. */
enum spate_dpdk_on_full {
	SPATE_DPDK_FULL_DROP = 0, /**< drop the packets and count them (like a NIC's imissed) */
	SPATE_DPDK_FULL_WAIT = 1, /**< stop polling until there is room (the NIC then drops) */
};

/** Counters of one RX queue: 128 bytes, one writer (its RX thread). */
struct spate_dpdk_rxq_stats {
	_Atomic uint64_t packets;   /**< frames appended to the stream */
	_Atomic uint64_t bytes;     /**< their wire bytes */
	_Atomic uint64_t drops;     /**< frames dropped: shard full, policy drop */
	_Atomic uint64_t errors;    /**< frames refused: ring errors other than full */
	_Atomic uint64_t truncated; /**< frames cut to the stream's largest record */
	_Atomic uint64_t bursts;    /**< non-empty receive bursts */
	_Atomic uint64_t full_waits; /**< times the queue stopped polling for room (policy wait) */
	_Atomic uint64_t polls;     /**< rx_burst calls */
	uint8_t pad_[128 - 64];
};
_Static_assert(sizeof(struct spate_dpdk_rxq_stats) == 128, "one line pair per queue");

struct spate_dpdk_port;

/** One RX queue feeding a stream. */
struct spate_dpdk_rxq {
	uint16_t port, queue;
	uint16_t burst;                /**< 1..SPATE_DPDK_MAX_BURST */
	enum spate_dpdk_shard_by shard_by;
	uint32_t fixed_shard;
	enum spate_dpdk_on_full on_full;
	uint32_t nshards;
	uint64_t max_payload;          /**< the stream's largest record */
	uint64_t max_batch;            /**< most bytes reserved at once (a quarter of a ring) */
	struct spate_ring_writer **w;  /**< [nshards], the producer's writers */
	bool rss;                      /**< mbufs may carry an RSS hash */
	bool hw_ts;
	int ts_off;
	uint64_t ts_flag;
	uint64_t hw_base_ns, hw_base_ticks, hw_mult;
	/* TSC to ns since the epoch, re-based once a second. */
	uint64_t tsc_hz, tsc_base, tsc_base_ns, tsc_mult;
	const _Atomic int *stop;       /**< non-zero: return from waits */
	struct spate_dpdk_rxq_stats *st; /**< never NULL */
};

/**
 * Set up @p q for queue @p queue of port @p p, appending through producer
 * @p prod (its writers; the stream's @p nshards shards, @p max_payload its
 * largest record). @p st must outlive the queue; @p stop is read by waits.
 * @return 0, -EINVAL.
 */
int spate_dpdk_rxq_init(struct spate_dpdk_rxq *q, const struct spate_dpdk_port *p, uint16_t queue,
			struct spate_producer *prod, uint32_t nshards, uint64_t max_payload,
			uint64_t ring_cap, struct spate_dpdk_rxq_stats *st, const _Atomic int *stop);

/**
 * One receive burst: rte_eth_rx_burst() straight into the shards' reserved
 * space (one copy per frame, mbuf -> ring), one commit per shard touched,
 * every mbuf back to its pool before returning. Thread: the queue's owner.
 * @return frames received (appended or dropped), or -errno of a ring error
 *         that stops the queue (-ESTALE: the stream's region was replaced;
 *         -EPIPE: our writer was reaped).
 */
int spate_dpdk_rxq_poll(struct spate_dpdk_rxq *q);

#endif
