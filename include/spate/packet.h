/* SPDX-License-Identifier: MIT */
/**
 * @file spate/packet.h
 * @brief Packet records: how a received frame is stored in a stream, and
 *        the flow key and symmetric flow hash that pick its shard.
 *
 * A packet source (engine/sources/dpdk.c, `type: dpdk`) appends one record
 * per received Ethernet frame, of type SPATE_RECORD_TYPE_PACKET (0xF3, in
 * the range kinesis.h reserves for spate). Its payload is a small header
 * and the frame's bytes, as they came off the wire:
 *
 *     offset  size  field
 *     0       2     hdr_size   bytes of this header (24 today; skip it to
 *                              reach the frame: later versions may grow it)
 *     2       2     flags      SPATE_PACKET_F_*
 *     4       2     port       DPDK port id it was received on
 *     6       2     queue      RX queue
 *     8       4     wire_len   the frame's length on the wire (>= captured)
 *     12      4     rss_hash   the NIC's RSS hash (if SPATE_PACKET_F_RSS)
 *     16      8     ts_ns      RX time, ns since the epoch (CLOCK_REALTIME
 *                              scale): the port's hardware timestamp when it
 *                              gives one (SPATE_PACKET_F_HW_TS), else the TSC
 *                              read once per receive burst, converted
 *     24      ...   frame      captured bytes: the record's length minus
 *                              hdr_size
 *
 * Little-endian host order (the fields are the writer's; spate runs on
 * little-endian machines only). The header is 8-byte aligned in the ring,
 * and so is the frame. The record's key_hash is the hash that chose its
 * shard (the RSS hash, or spate_packet_flow_hash() of the frame, or 0 for a
 * fixed shard), so a consumer sees which flow a record belongs to for free.
 *
 * The flow key (spate_packet_flow()) is the IP 5-tuple of a frame:
 * Ethernet, up to two VLAN tags (802.1Q, 802.1ad), IPv4 or IPv6 (extension
 * headers hop-by-hop, routing, destination options skipped), and the ports of
 * TCP, UDP, SCTP and UDP-Lite. Fragments keep their addresses and protocol
 * but carry ports 0 (only the first fragment has them), so every fragment of
 * a flow lands with its first one only if ports are not needed; a non-IP
 * frame is keyed by its two MAC addresses and EtherType. The hash is
 * symmetric: both directions of a flow (addresses and ports swapped) hash
 * alike, so they land in one shard and their records keep their order.
 *
 * Thread safety: every function is pure (no shared state). Bad input
 * (short, truncated or malformed frames) gives a shorter key, never a read
 * past @p len. Header-only (static inline), plain C that compiles as C++:
 * a plugin uses it without linking libspate.
 */
#ifndef SPATE_PACKET_H
#define SPATE_PACKET_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "spate/record.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Record type of a packet record (see the file comment). */
#define SPATE_RECORD_TYPE_PACKET 0xF3u

/** The header of a packet record's payload. */
struct spate_packet_hdr {
	uint16_t hdr_size; /**< sizeof(struct spate_packet_hdr) of the writer */
	uint16_t flags;    /**< SPATE_PACKET_F_* */
	uint16_t port;     /**< DPDK port id */
	uint16_t queue;    /**< RX queue */
	uint32_t wire_len; /**< length on the wire */
	uint32_t rss_hash; /**< NIC RSS hash, valid with SPATE_PACKET_F_RSS */
	uint64_t ts_ns;    /**< RX time, ns since the epoch */
};
#ifdef __cplusplus
static_assert(sizeof(struct spate_packet_hdr) == 24, "packet header layout");
#else
_Static_assert(sizeof(struct spate_packet_hdr) == 24, "packet header layout");
#endif

/** ts_ns is the port's hardware timestamp (else the TSC per burst). */
#define SPATE_PACKET_F_HW_TS (1u << 0)
/** rss_hash holds the NIC's RSS hash. */
#define SPATE_PACKET_F_RSS (1u << 1)
/** The frame was cut to the stream's largest record (wire_len says how long it was). */
#define SPATE_PACKET_F_TRUNCATED (1u << 2)

/** A packet record decoded (views into the record; no copy). */
struct spate_packet_view {
	struct spate_packet_hdr hdr; /**< a copy of the header */
	const uint8_t *frame;        /**< captured bytes */
	uint32_t cap_len;            /**< how many */
};

/**
 * Decode packet record @p r.
 * @return 0; -EPROTO if it is not of type SPATE_RECORD_TYPE_PACKET;
 *         -EBADMSG if its header is short or inconsistent.
 */
static inline int spate_packet_view(const struct spate_ring_rec *r, struct spate_packet_view *v)
{
	if (r->type != SPATE_RECORD_TYPE_PACKET)
		return -EPROTO;
	if (r->len < sizeof(v->hdr))
		return -EBADMSG;
	memcpy(&v->hdr, r->data, sizeof(v->hdr));
	if (v->hdr.hdr_size < sizeof(v->hdr) || v->hdr.hdr_size > r->len || (v->hdr.hdr_size & 7))
		return -EBADMSG;
	v->frame = (const uint8_t *)r->data + v->hdr.hdr_size;
	v->cap_len = r->len - v->hdr.hdr_size;
	return 0;
}

/** The flow of a frame (spate_packet_flow()). Addresses of IPv4 flows are
 *  in the first 4 bytes of src/dst, the rest zero. */
struct spate_packet_flow {
	uint8_t src[16], dst[16];
	uint16_t sport, dport; /**< host order; 0 for fragments and protocols without ports */
	uint16_t ethertype;    /**< 0x0800, 0x86DD, or the EtherType of a non-IP frame */
	uint8_t proto;         /**< IP protocol (6 TCP, 17 UDP, ...); 0 non-IP */
	uint8_t af;            /**< 4, 6, or 0 (non-IP: src/dst hold the MACs) */
};

static inline uint16_t spate_packet_be16_(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/**
 * Extract the flow key of Ethernet frame @p f (@p len captured bytes).
 * @return 0; -EBADMSG if the frame is shorter than an Ethernet header (the
 *         key is then all zero).
 */
static inline int spate_packet_flow(const uint8_t *f, uint32_t len, struct spate_packet_flow *k)
{
	memset(k, 0, sizeof(*k));
	if (len < 14)
		return -EBADMSG;
	uint32_t off = 12;
	uint16_t et = spate_packet_be16_(f + off);
	for (int tags = 0; tags < 2 && (et == 0x8100 || et == 0x88A8) && off + 6 <= len; tags++) {
		off += 4;
		et = spate_packet_be16_(f + off);
	}
	off += 2;
	k->ethertype = et;
	uint8_t proto;
	int frag = 0;
	if (et == 0x0800 && off + 20 <= len) {
		const uint8_t *ip = f + off;
		uint32_t ihl = (uint32_t)(ip[0] & 15) * 4;
		if ((ip[0] >> 4) != 4 || ihl < 20 || off + ihl > len)
			goto non_ip;
		k->af = 4;
		proto = ip[9];
		memcpy(k->src, ip + 12, 4);
		memcpy(k->dst, ip + 16, 4);
		frag = (spate_packet_be16_(ip + 6) & 0x3fff) != 0; /* MF or offset */
		off += ihl;
	} else if (et == 0x86DD && off + 40 <= len) {
		const uint8_t *ip = f + off;
		if ((ip[0] >> 4) != 6)
			goto non_ip;
		k->af = 6;
		proto = ip[6];
		memcpy(k->src, ip + 8, 16);
		memcpy(k->dst, ip + 24, 16);
		off += 40;
		/* Extension headers: hop-by-hop 0, routing 43, destination 60;
		 * fragment 44 (8 bytes). At most 8 of them. */
		for (int n = 0; n < 8 && off + 8 <= len; n++) {
			if (proto == 44) {
				frag = 1;
				proto = f[off];
				off += 8;
			} else if (proto == 0 || proto == 43 || proto == 60) {
				proto = f[off];
				off += ((uint32_t)f[off + 1] + 1) * 8;
			} else {
				break;
			}
		}
	} else {
		goto non_ip;
	}
	k->proto = proto;
	if (!frag && (proto == 6 || proto == 17 || proto == 132 || proto == 136) && off + 4 <= len) {
		k->sport = spate_packet_be16_(f + off);
		k->dport = spate_packet_be16_(f + off + 2);
	}
	return 0;
non_ip:
	memset(k, 0, sizeof(*k));
	k->ethertype = et;
	memcpy(k->dst, f, 6);
	memcpy(k->src, f + 6, 6);
	return 0;
}

/* 64-bit mix (the finaliser of SplitMix64): every input bit moves every
 * output bit. */
static inline uint64_t spate_packet_mix_(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/**
 * Symmetric 32-bit hash of flow @p k: the same for (src, sport, dst, dport)
 * and (dst, dport, src, sport). Endpoints are hashed each on its own and
 * combined with an addition (commutative), then mixed with the protocol.
 */
static inline uint32_t spate_packet_flow_hash(const struct spate_packet_flow *k)
{
	uint64_t a = 0, b = 0, w;
	for (int i = 0; i < 16; i += 8) {
		memcpy(&w, k->src + i, 8);
		a = spate_packet_mix_(a ^ w);
		memcpy(&w, k->dst + i, 8);
		b = spate_packet_mix_(b ^ w);
	}
	a = spate_packet_mix_(a ^ k->sport);
	b = spate_packet_mix_(b ^ k->dport);
	uint64_t h = spate_packet_mix_((a + b) ^ ((uint64_t)k->proto << 16 | k->ethertype));
	return (uint32_t)(h >> 32);
}

#ifdef __cplusplus
}
#endif
#endif /* SPATE_PACKET_H */
