/* SPDX-License-Identifier: MIT */
/*
 * dpdk_ring.c - the DPDK door's RX queue (engine/sources/dpdk_rx.c) on a
 * net_ring port (suite dpdk_ring). A net_ring vdev created from devargs
 * alone loops each TX queue into the RX queue of the same number (one
 * rte_ring per queue pair), so frames this test transmits on queue 0 are
 * received by the source's queue 0 in the same process: a real PMD, no
 * root, no network.
 *
 *   frames: 1000 UDP/TCP frames of 60..1514 bytes, 50 flows in both
 *           directions, into a two-shard stream by the symmetric flow hash:
 *           every frame once, byte for byte, in its flow's shard (key hash
 *           = spate_packet_flow_hash of its frame), in send order per
 *           shard, with the port and queue in its header; no drop, the
 *           port's own ipackets equal.
 *   full:   a 64 KiB one-shard stream whose reader never reads, policy
 *           drop: what does not fit is dropped and counted (packets +
 *           drops = sent), the records that fit are intact.
 *
 * Runs without huge pages (the EAL then uses --no-huge); skips (Criterion
 * skip) if the EAL cannot start here.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "engine/sources/dpdk_port.h"
#include "engine/sources/dpdk_rx.h"
#include "spate/packet.h"
#include "spate/stream.h"

#define N_FRAMES 1000u

static char bus[64];
static struct spate_dpdk_port port;
static bool port_up;

/* Frame i: Ethernet/IPv4/UDP or TCP, flow i % 50, every other round the
 * reverse direction, length 60..1514, its index in the payload. */
static uint16_t make_frame(unsigned i, uint8_t *f)
{
	unsigned flow = i % 50, back = (i / 50) % 2;
	uint16_t len = (uint16_t)(60 + (i * 97) % (1514 - 60 + 1));
	uint8_t a[4] = { 10, 216, 0, (uint8_t)flow }, b[4] = { 10, 217, 0, (uint8_t)flow };
	uint16_t sp = (uint16_t)(20000 + flow), dp = 5201;

	memset(f, 0, len);
	memcpy(f, back ? "\x02\0\0\0\0\x02\x02\0\0\0\0\x01" : "\x02\0\0\0\0\x01\x02\0\0\0\0\x02", 12);
	f[12] = 0x08;
	uint8_t *ip = f + 14;
	ip[0] = 0x45;
	ip[2] = (uint8_t)((len - 14) >> 8), ip[3] = (uint8_t)(len - 14);
	ip[8] = 64;
	ip[9] = flow % 3 ? 17 : 6;
	memcpy(ip + 12, back ? b : a, 4);
	memcpy(ip + 16, back ? a : b, 4);
	uint8_t *l4 = ip + 20;
	uint16_t s = back ? dp : sp, d = back ? sp : dp;
	l4[0] = (uint8_t)(s >> 8), l4[1] = (uint8_t)s, l4[2] = (uint8_t)(d >> 8), l4[3] = (uint8_t)d;
	memcpy(f + 54, &i, sizeof(i)); /* the index, for the checks */
	for (unsigned k = 58; k < len; k++)
		f[k] = (uint8_t)(i + k);
	return len;
}

static void setup(void)
{
	char desc[256], err[512], dev[64];

	if (spate_dpdk_eal_init(NULL, 0, false, false, desc, sizeof(desc), err, sizeof(err)) < 0)
		cr_skip_test("the EAL cannot start here: %s", err);
	snprintf(dev, sizeof(dev), "net_ring_t%d", (int)getpid());
	struct spate_dpdk_port_cfg cfg = { .dev = dev, .queues = 1, .max_frame = 1518 };
	int rc = spate_dpdk_port_open(&cfg, &port, err, sizeof(err));
	cr_assert_eq(rc, 0, "net_ring port: %s", err);
	port_up = true;
	cr_assert_str_eq(port.driver, "net_ring");
	snprintf(bus, sizeof(bus), "tdpring%d", (int)getpid());
	spate_stream_unlink(bus, "packets");
}

static void teardown(void)
{
	spate_stream_unlink(bus, "packets");
	if (port_up)
		spate_dpdk_port_close(&port);
	port_up = false;
}

TestSuite(dpdk_ring, .timeout = 60);

/* Send frames [from, to) on TX queue 0 (it loops into RX queue 0). */
static void send_frames(unsigned from, unsigned to)
{
	for (unsigned i = from; i < to;) {
		struct rte_mbuf *m[32];
		unsigned k = 0;
		for (; k < 32 && i + k < to; k++) {
			m[k] = rte_pktmbuf_alloc(port.pool);
			cr_assert_not_null(m[k]);
			uint8_t f[1514];
			uint16_t len = make_frame(i + k, f);
			uint8_t *p = (uint8_t *)rte_pktmbuf_append(m[k], len);
			cr_assert_not_null(p);
			memcpy(p, f, len);
		}
		uint16_t sent = rte_eth_tx_burst(port.port, 0, m, (uint16_t)k);
		cr_assert_eq(sent, k, "net_ring took %u of %u frames", sent, k);
		i += k;
	}
}

static void open_stream(uint32_t shards, uint64_t ring, struct spate_stream **s,
			struct spate_producer **prod)
{
	struct spate_stream_params sp = { .shards = shards, .ring_size = ring, .max_record = 2048,
					  .shm_flags = SPATE_SHM_F_NO_HUGE };
	cr_assert_eq(spate_stream_create(bus, "packets", &sp, s), 0);
	cr_assert_eq(spate_producer_open(*s, SPATE_RING_WAIT_BUSY, SPATE_PRODUCER_F_FAIL_FULL, prod), 0);
}

Test(dpdk_ring, frames)
{
	struct spate_stream *s;
	struct spate_producer *prod;
	struct spate_dpdk_rxq q;
	struct spate_dpdk_rxq_stats st;
	_Atomic int stop = 0;

	setup();
	memset(&st, 0, sizeof(st));
	open_stream(2, 1u << 20, &s, &prod);
	cr_assert_eq(spate_dpdk_rxq_init(&q, &port, 0, prod, 2, 2048, 1u << 20, &st, &stop), 0);
	q.shard_by = SPATE_DPDK_SHARD_FLOW;
	unsigned got = 0;
	for (unsigned i = 0; i < N_FRAMES; i += 100) {
		send_frames(i, i + 100);
		for (int spins = 0; spins < 1000 && got < i + 100; spins++) {
			int k = spate_dpdk_rxq_poll(&q);
			cr_assert_geq(k, 0, "poll: %d", k);
			got += (unsigned)k;
		}
	}
	cr_assert_eq(got, N_FRAMES);
	cr_assert_eq(spate_dpdk_rxq_poll(&q), 0, "a frame nobody sent");
	/* Relaxed: this thread wrote them. */
	cr_assert_eq(atomic_load_explicit(&st.packets, memory_order_relaxed), N_FRAMES);
	cr_assert_eq(atomic_load_explicit(&st.drops, memory_order_relaxed), 0);
	cr_assert_eq(atomic_load_explicit(&st.errors, memory_order_relaxed), 0);
	struct spate_dpdk_port_stats ps;
	cr_assert_eq(spate_dpdk_port_stats(port.port, &ps), 0);
	cr_assert_eq(ps.ipackets, N_FRAMES, "port ipackets %lu", (unsigned long)ps.ipackets);

	static bool seen[N_FRAMES];
	memset(seen, 0, sizeof(seen));
	unsigned total = 0;
	for (uint32_t sh = 0; sh < 2; sh++) {
		struct spate_ring_reader *rd;
		cr_assert_eq(spate_ring_reader_open(spate_stream_ring(s, sh), SPATE_RING_START_OLDEST,
						    SPATE_RING_WAIT_BUSY, &rd), 0);
		struct spate_ring_rec v[64];
		int k;
		long last = -1;
		while ((k = spate_ring_peek(rd, v, 64, UINT64_MAX)) > 0) {
			for (int j = 0; j < k; j++) {
				struct spate_packet_view pv;
				cr_assert_eq(spate_packet_view(&v[j], &pv), 0);
				unsigned idx;
				cr_assert_geq(pv.cap_len, 58u);
				memcpy(&idx, pv.frame + 54, sizeof(idx));
				cr_assert_lt(idx, N_FRAMES);
				cr_assert(!seen[idx], "frame %u twice", idx);
				seen[idx] = true;
				cr_assert_gt((long)idx, last, "shard %u: frame %u after %ld", sh, idx, last);
				last = idx;
				uint8_t f[1514];
				uint16_t len = make_frame(idx, f);
				cr_assert_eq(pv.cap_len, len);
				cr_assert_eq(pv.hdr.wire_len, len);
				cr_assert_eq(memcmp(pv.frame, f, len), 0, "frame %u differs", idx);
				cr_assert_eq(pv.hdr.port, port.port);
				cr_assert_eq(pv.hdr.queue, 0);
				cr_assert_neq(pv.hdr.ts_ns, 0);
				struct spate_packet_flow fk;
				spate_packet_flow(f, len, &fk);
				uint32_t h = spate_packet_flow_hash(&fk);
				cr_assert_eq(v[j].key_hash, h, "frame %u: key hash", idx);
				cr_assert_eq(spate_shard_of_hash(h, 2), sh, "frame %u in shard %u", idx, sh);
				total++;
			}
			spate_ring_release(rd, (unsigned)k);
		}
		cr_assert_geq(k, 0);
		spate_ring_reader_close(rd);
	}
	cr_assert_eq(total, N_FRAMES);
	free(q.w);
	spate_producer_close(prod);
	spate_stream_close(s);
	teardown();
}

Test(dpdk_ring, full)
{
	struct spate_stream *s;
	struct spate_producer *prod;
	struct spate_ring_reader *rd;
	struct spate_dpdk_rxq q;
	struct spate_dpdk_rxq_stats st;
	_Atomic int stop = 0;

	setup();
	memset(&st, 0, sizeof(st));
	open_stream(1, 64u << 10, &s, &prod);
	/* A reader that never reads holds the ring's space. */
	cr_assert_eq(spate_ring_reader_open(spate_stream_ring(s, 0), SPATE_RING_START_OLDEST,
					    SPATE_RING_WAIT_BUSY, &rd), 0);
	cr_assert_eq(spate_dpdk_rxq_init(&q, &port, 0, prod, 1, 2048, 64u << 10, &st, &stop), 0);
	q.on_full = SPATE_DPDK_FULL_DROP;
	unsigned got = 0;
	for (unsigned i = 0; i < 400; i += 100) {
		send_frames(i, i + 100);
		for (int spins = 0; spins < 1000 && got < i + 100; spins++) {
			int k = spate_dpdk_rxq_poll(&q);
			cr_assert_geq(k, 0, "poll: %d", k);
			got += (unsigned)k;
		}
	}
	cr_assert_eq(got, 400u);
	/* Relaxed: this thread wrote them. */
	uint64_t pk = atomic_load_explicit(&st.packets, memory_order_relaxed);
	uint64_t dr = atomic_load_explicit(&st.drops, memory_order_relaxed);
	cr_assert_gt(dr, 0, "400 frames of ~800 bytes fit in 64 KiB?");
	cr_assert_gt(pk, 0);
	cr_assert_eq(pk + dr, 400u, "%lu appended + %lu dropped", (unsigned long)pk, (unsigned long)dr);
	struct spate_ring_rec v[64];
	int k;
	uint64_t n = 0;
	while ((k = spate_ring_peek(rd, v, 64, UINT64_MAX)) > 0) {
		for (int j = 0; j < k; j++) {
			struct spate_packet_view pv;
			cr_assert_eq(spate_packet_view(&v[j], &pv), 0);
			unsigned idx;
			memcpy(&idx, pv.frame + 54, sizeof(idx));
			uint8_t f[1514];
			uint16_t len = make_frame(idx, f);
			cr_assert_eq(pv.cap_len, len);
			cr_assert_eq(memcmp(pv.frame, f, len), 0, "frame %u differs", idx);
		}
		n += (uint64_t)k;
		spate_ring_release(rd, (unsigned)k);
	}
	cr_assert_eq(n, pk);
	spate_ring_reader_close(rd);
	free(q.w);
	spate_producer_close(prod);
	spate_stream_close(s);
	teardown();
}
