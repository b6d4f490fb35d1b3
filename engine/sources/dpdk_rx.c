/* SPDX-License-Identifier: MIT */
/*
 * dpdk_rx.c - one RX queue of a DPDK port feeding a stream: frames become
 * packet records (spate/packet.h) with one copy.
 *
 * Design. A poll is one rte_eth_rx_burst(); each frame's shard comes from
 * the NIC's RSS hash, the symmetric flow hash of its headers, or a fixed
 * shard. The frames of one shard go into one ring reservation (split only
 * past a quarter of the ring), each copied once from its mbuf into the
 * reserved space behind a 24-byte header, then committed with one release
 * store; every mbuf returns to its pool (rte_pktmbuf_free_bulk) before the
 * poll returns, so the queue never holds mbufs between polls. The RX time
 * is the TSC read once per burst (re-based on CLOCK_REALTIME once a
 * second, so it follows the wall clock), or the port's hardware timestamp
 * when it gives one; it is also the batch's commit time (no clock call on
 * the hot path).
 *
 * Back pressure: our writers never wait inside the ring (their FULL_WAIT
 * is cleared); a full shard either drops the frames meant for it and
 * counts them (policy drop, like a NIC's imissed), or makes the queue retry
 * until there is room or stop is set (policy wait: the port's own ring
 * fills meanwhile and the NIC drops, counted by rte_eth_stats imissed).
 *
 * Limits: a frame larger than the stream's largest record is cut to it
 * (SPATE_PACKET_F_TRUNCATED, counted); a burst holds at most
 * SPATE_DPDK_MAX_BURST frames.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>

#include "engine/sources/dpdk_port.h"
#include "engine/sources/dpdk_rx.h"

__extension__ typedef unsigned __int128 u128;
__extension__ typedef __int128 i128;

/* One writer per counter: relaxed load + store (see the header). */
static inline void st_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

static void tsc_rebase(struct spate_dpdk_rxq *q)
{
	struct timespec ts;
	uint64_t t0 = rte_rdtsc();
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t t1 = rte_rdtsc();
	q->tsc_base = t0 + (t1 - t0) / 2;
	q->tsc_base_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int spate_dpdk_rxq_init(struct spate_dpdk_rxq *q, const struct spate_dpdk_port *p, uint16_t queue,
			struct spate_producer *prod, uint32_t nshards, uint64_t max_payload,
			uint64_t ring_cap, struct spate_dpdk_rxq_stats *st, const _Atomic int *stop)
{
	if (!p || !prod || !st || !nshards || queue >= p->queues ||
	    max_payload <= sizeof(struct spate_packet_hdr))
		return -EINVAL;
	memset(q, 0, sizeof(*q));
	q->port = p->port;
	q->queue = queue;
	q->burst = 32;
	q->nshards = nshards;
	q->max_payload = max_payload;
	q->max_batch = ring_cap / 4;
	q->rss = p->rss;
	q->hw_ts = p->hw_ts;
	q->ts_off = p->ts_off;
	q->ts_flag = p->ts_flag;
	q->hw_base_ns = p->ts_base_ns;
	q->hw_base_ticks = p->ts_base_ticks;
	q->hw_mult = p->ts_mult;
	q->st = st;
	q->stop = stop;
	q->w = calloc(nshards, sizeof(*q->w));
	if (!q->w)
		return -ENOMEM;
	for (uint32_t s = 0; s < nshards; s++) {
		q->w[s] = spate_producer_writer(prod, s);
		if (!q->w[s]) {
			free(q->w);
			q->w = NULL;
			return -EINVAL;
		}
		/* We wait (or drop) ourselves: a waiting writer could not see stop. */
		q->w[s]->flags &= ~SPATE_RING_F_FULL_WAIT;
	}
	q->tsc_hz = rte_get_tsc_hz();
	if (!q->tsc_hz)
		q->tsc_hz = 1000000000ull;
	q->tsc_mult = (uint64_t)((1000000000ull << 32) / q->tsc_hz);
	tsc_rebase(q);
	return 0;
}

static inline uint64_t burst_ns(struct spate_dpdk_rxq *q)
{
	uint64_t t = rte_rdtsc();
	if (__builtin_expect(t - q->tsc_base >= q->tsc_hz, 0)) {
		tsc_rebase(q);
		t = q->tsc_base;
	}
	return q->tsc_base_ns + (uint64_t)(((u128)(t - q->tsc_base) * q->tsc_mult) >> 32);
}

static inline uint64_t hw_ns(const struct spate_dpdk_rxq *q, const struct rte_mbuf *m)
{
	uint64_t ticks = *RTE_MBUF_DYNFIELD(m, q->ts_off, const uint64_t *);
	if (!q->hw_mult)
		return ticks;
	int64_t d = (int64_t)(ticks - q->hw_base_ticks);
	int64_t ns = (int64_t)(((i128)d * (i128)q->hw_mult) >> 32);
	return (uint64_t)((int64_t)q->hw_base_ns + ns);
}

/* Bytes a frame takes in the ring as a packet record. */
static inline uint32_t cap_len(const struct spate_dpdk_rxq *q, const struct rte_mbuf *m)
{
	uint64_t room = q->max_payload - sizeof(struct spate_packet_hdr);
	return m->pkt_len <= room ? m->pkt_len : (uint32_t)room;
}

static inline void copy_frame(void *dst, const struct rte_mbuf *m, uint32_t len)
{
	if (__builtin_expect(m->nb_segs == 1 || m->data_len >= len, 1)) {
		rte_memcpy(dst, rte_pktmbuf_mtod(m, const void *), len);
		return;
	}
	/* Chained mbufs (scattered receive): segment by segment. */
	const void *p = rte_pktmbuf_read(m, 0, len, dst);
	if (p != dst)
		memcpy(dst, p, len);
}

/* Append frames idx[0..k) (all of shard @p s) in as few reservations as
 * fit. @return 0, or a ring error that stops the queue. */
static int append_shard(struct spate_dpdk_rxq *q, uint32_t s, struct rte_mbuf **m,
			const uint8_t *idx, unsigned k, const uint32_t *hash, uint64_t ts)
{
	struct spate_ring_writer *w = q->w[s];
	unsigned i = 0;

	while (i < k) {
		uint64_t bytes = 0;
		unsigned j = i;
		while (j < k) {
			uint64_t sz = spate_ring_rec_size(sizeof(struct spate_packet_hdr) +
							  cap_len(q, m[idx[j]]));
			if (j > i && bytes + sz > q->max_batch)
				break;
			bytes += sz;
			j++;
		}
		struct spate_ring_batch b;
		int rc = spate_ring_reserve(w, bytes, &b);
		if (rc == -EAGAIN && q->on_full == SPATE_DPDK_FULL_WAIT) {
			st_add(&q->st->full_waits, 1);
			for (unsigned spins = 0; rc == -EAGAIN; spins++) {
				/* Relaxed: a stop request; nothing is read on the strength of it. */
				if (q->stop && atomic_load_explicit(q->stop, memory_order_relaxed))
					break;
				if (spins < 64)
					rte_pause();
				else
					sched_yield();
				rc = spate_ring_reserve(w, bytes, &b);
			}
		}
		if (rc < 0) {
			if (rc == -EAGAIN || rc == -ETIMEDOUT) {
				st_add(&q->st->drops, j - i);
			} else {
				st_add(&q->st->errors, j - i);
				if (rc == -ESTALE || rc == -EPIPE || rc == -EBADMSG)
					return rc;
			}
			i = j;
			continue;
		}
		uint64_t wire = 0;
		for (; i < j; i++) {
			struct rte_mbuf *x = m[idx[i]];
			uint32_t len = cap_len(q, x);
			struct spate_packet_hdr h = {
				.hdr_size = sizeof(h),
				.port = q->port,
				.queue = q->queue,
				.wire_len = x->pkt_len,
				.ts_ns = ts,
			};
			if (q->rss && (x->ol_flags & RTE_MBUF_F_RX_RSS_HASH)) {
				h.flags |= SPATE_PACKET_F_RSS;
				h.rss_hash = x->hash.rss;
			}
			if (q->hw_ts && (x->ol_flags & q->ts_flag)) {
				h.flags |= SPATE_PACKET_F_HW_TS;
				h.ts_ns = hw_ns(q, x);
			}
			if (len < x->pkt_len) {
				h.flags |= SPATE_PACKET_F_TRUNCATED;
				st_add(&q->st->truncated, 1);
			}
			uint8_t *p = spate_ring_batch_add(&b, sizeof(h) + len, hash[idx[i]],
							  SPATE_RECORD_TYPE_PACKET);
			memcpy(p, &h, sizeof(h));
			copy_frame(p + sizeof(h), x, len);
			wire += x->pkt_len;
		}
		rc = spate_ring_commit(w, &b, ts, NULL);
		if (rc < 0) {
			st_add(&q->st->errors, b.count);
			return rc;
		}
		st_add(&q->st->packets, b.count);
		st_add(&q->st->bytes, wire);
	}
	return 0;
}

int spate_dpdk_rxq_poll(struct spate_dpdk_rxq *q)
{
	struct rte_mbuf *m[SPATE_DPDK_MAX_BURST];
	uint32_t hash[SPATE_DPDK_MAX_BURST];
	uint8_t idx[SPATE_DPDK_MAX_BURST];
	uint16_t n = rte_eth_rx_burst(q->port, q->queue, m, q->burst);
	int rc = 0;

	st_add(&q->st->polls, 1);
	if (!n)
		return 0;
	st_add(&q->st->bursts, 1);
	uint64_t ts = burst_ns(q);

	if (q->nshards == 1 && q->shard_by != SPATE_DPDK_SHARD_FLOW) {
		/* One shard: no choice to make; the key hash is the RSS hash, if any. */
		for (uint16_t i = 0; i < n; i++) {
			hash[i] = q->rss && (m[i]->ol_flags & RTE_MBUF_F_RX_RSS_HASH) ? m[i]->hash.rss : 0;
			idx[i] = (uint8_t)i;
		}
		rc = append_shard(q, 0, m, idx, n, hash, ts);
		rte_pktmbuf_free_bulk(m, n);
		return rc < 0 ? rc : n;
	}

	uint32_t shard[SPATE_DPDK_MAX_BURST];
	for (uint16_t i = 0; i < n; i++) {
		const struct rte_mbuf *x = m[i];
		if (q->shard_by != SPATE_DPDK_SHARD_FLOW && q->rss &&
		    (x->ol_flags & RTE_MBUF_F_RX_RSS_HASH)) {
			hash[i] = x->hash.rss;
		} else if (q->shard_by == SPATE_DPDK_SHARD_FIXED) {
			hash[i] = 0;
		} else {
			struct spate_packet_flow k;
			spate_packet_flow(rte_pktmbuf_mtod(x, const uint8_t *), x->data_len, &k);
			hash[i] = spate_packet_flow_hash(&k);
		}
		shard[i] = q->shard_by == SPATE_DPDK_SHARD_FIXED ? q->fixed_shard
								: spate_shard_of_hash(hash[i], q->nshards);
	}
	/* Group by shard, keeping arrival order within each. */
	uint64_t done = 0;
	for (uint16_t i = 0; i < n && rc == 0; i++) {
		if (done & (1ull << i))
			continue;
		unsigned k = 0;
		for (uint16_t j = i; j < n; j++) {
			if (!(done & (1ull << j)) && shard[j] == shard[i]) {
				idx[k++] = (uint8_t)j;
				done |= 1ull << j;
			}
		}
		rc = append_shard(q, shard[i], m, idx, k, hash, ts);
	}
	rte_pktmbuf_free_bulk(m, n);
	return rc < 0 ? rc : n;
}
