/* SPDX-License-Identifier: MIT */
/*
 * test_packet.c - packet records (spate/packet.h): the flow key of IPv4,
 * IPv6 (with extension headers), VLAN-tagged and fragmented frames, the
 * symmetric flow hash (both directions alike, other flows apart), the
 * record view, and short or malformed frames read without going past their
 * end (every prefix of every frame, under ASan).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "spate/packet.h"
#include "spate/stream.h"

/* Ethernet + IPv4 + TCP/UDP header, ports and addresses given. */
static size_t v4(uint8_t *f, uint8_t proto, const uint8_t src[4], const uint8_t dst[4], uint16_t sp,
		 uint16_t dp, int vlan, uint16_t frag)
{
	size_t o = 0;
	memset(f, 0, 128);
	memcpy(f, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02", 12);
	o = 12;
	if (vlan) {
		f[o] = 0x81, f[o + 1] = 0x00, f[o + 2] = 0, f[o + 3] = 7;
		o += 4;
	}
	f[o] = 0x08, f[o + 1] = 0x00;
	o += 2;
	uint8_t *ip = f + o;
	ip[0] = 0x45;
	ip[6] = (uint8_t)(frag >> 8), ip[7] = (uint8_t)frag;
	ip[9] = proto;
	memcpy(ip + 12, src, 4);
	memcpy(ip + 16, dst, 4);
	o += 20;
	f[o] = (uint8_t)(sp >> 8), f[o + 1] = (uint8_t)sp, f[o + 2] = (uint8_t)(dp >> 8), f[o + 3] = (uint8_t)dp;
	return o + 20;
}

static const uint8_t A[4] = { 10, 0, 0, 1 }, B[4] = { 10, 0, 0, 2 };

Test(packet, ipv4_tcp_key, .timeout = 10)
{
	uint8_t f[128];
	struct spate_packet_flow k;
	size_t n = v4(f, 6, A, B, 40000, 443, 0, 0);
	cr_assert_eq(spate_packet_flow(f, (uint32_t)n, &k), 0);
	cr_assert_eq(k.af, 4);
	cr_assert_eq(k.proto, 6);
	cr_assert_eq(k.sport, 40000);
	cr_assert_eq(k.dport, 443);
	cr_assert_eq(memcmp(k.src, A, 4), 0);
	cr_assert_eq(memcmp(k.dst, B, 4), 0);
}

Test(packet, symmetric_and_distinct, .timeout = 10)
{
	uint8_t f[128], g[128];
	struct spate_packet_flow a, b;
	spate_packet_flow(f, (uint32_t)v4(f, 17, A, B, 5000, 53, 0, 0), &a);
	spate_packet_flow(g, (uint32_t)v4(g, 17, B, A, 53, 5000, 0, 0), &b);
	cr_assert_eq(spate_packet_flow_hash(&a), spate_packet_flow_hash(&b), "both directions alike");
	spate_packet_flow(g, (uint32_t)v4(g, 17, A, B, 5001, 53, 0, 0), &b);
	cr_assert_neq(spate_packet_flow_hash(&a), spate_packet_flow_hash(&b), "another port");
	spate_packet_flow(g, (uint32_t)v4(g, 6, A, B, 5000, 53, 0, 0), &b);
	cr_assert_neq(spate_packet_flow_hash(&a), spate_packet_flow_hash(&b), "another protocol");
	/* Spread: 4096 flows over 4 shards, none with less than a fifth. */
	unsigned per[4] = { 0 };
	for (unsigned i = 0; i < 4096; i++) {
		spate_packet_flow(g, (uint32_t)v4(g, 6, A, B, (uint16_t)(1024 + i), 80, 0, 0), &b);
		per[spate_shard_of_hash(spate_packet_flow_hash(&b), 4)]++;
	}
	for (int s = 0; s < 4; s++)
		cr_assert_gt(per[s], 4096 / 5, "shard %d got %u of 4096 flows", s, per[s]);
}

Test(packet, vlan_and_fragments, .timeout = 10)
{
	uint8_t f[128];
	struct spate_packet_flow k;
	spate_packet_flow(f, (uint32_t)v4(f, 6, A, B, 1, 2, 1, 0), &k);
	cr_assert_eq(k.af, 4);
	cr_assert_eq(k.sport, 1, "ports found behind a VLAN tag");
	spate_packet_flow(f, (uint32_t)v4(f, 17, A, B, 1, 2, 0, 0x2000), &k); /* MF */
	cr_assert_eq(k.sport, 0, "a fragment has no ports");
	cr_assert_eq(k.proto, 17);
}

Test(packet, ipv6_extension_headers, .timeout = 10)
{
	uint8_t f[128] = { 0 };
	struct spate_packet_flow k;
	f[12] = 0x86, f[13] = 0xdd;
	uint8_t *ip = f + 14;
	ip[0] = 0x60;
	ip[6] = 0; /* hop-by-hop */
	ip[8 + 15] = 1;
	ip[24 + 15] = 2;
	uint8_t *hbh = ip + 40;
	hbh[0] = 17; /* then UDP */
	hbh[1] = 0;  /* 8 bytes */
	uint8_t *udp = hbh + 8;
	udp[0] = 0x13, udp[1] = 0x88, udp[2] = 0, udp[3] = 53;
	cr_assert_eq(spate_packet_flow(f, 14 + 40 + 8 + 8, &k), 0);
	cr_assert_eq(k.af, 6);
	cr_assert_eq(k.proto, 17);
	cr_assert_eq(k.sport, 5000);
	cr_assert_eq(k.dport, 53);
	cr_assert_eq(k.src[15], 1);
	cr_assert_eq(k.dst[15], 2);
}

Test(packet, non_ip_by_mac, .timeout = 10)
{
	uint8_t f[60] = { 0 }, g[60] = { 0 };
	struct spate_packet_flow a, b;
	memcpy(f, "\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x01\x08\x06", 14); /* ARP */
	memcpy(g, "\x02\x00\x00\x00\x00\x01\xff\xff\xff\xff\xff\xff\x08\x06", 14);
	spate_packet_flow(f, 60, &a);
	spate_packet_flow(g, 60, &b);
	cr_assert_eq(a.af, 0);
	cr_assert_eq(a.ethertype, 0x0806);
	cr_assert_eq(spate_packet_flow_hash(&a), spate_packet_flow_hash(&b));
}

Test(packet, every_prefix_and_garbage, .timeout = 30)
{
	uint8_t f[128];
	struct spate_packet_flow k;
	size_t n = v4(f, 6, A, B, 1, 2, 1, 0);
	/* Each prefix copied to a buffer of its exact size: ASan sees any overread. */
	for (size_t len = 0; len <= n; len++) {
		uint8_t *p = malloc(len ? len : 1);
		memcpy(p, f, len);
		int rc = spate_packet_flow(p, (uint32_t)len, &k);
		cr_assert(len < 14 ? rc == -EBADMSG : rc == 0);
		free(p);
	}
	srand(7);
	for (int i = 0; i < 20000; i++) {
		uint32_t len = (uint32_t)(rand() % 120);
		uint8_t *p = malloc(len ? len : 1);
		for (uint32_t j = 0; j < len; j++)
			p[j] = (uint8_t)rand();
		if (len > 13 && (i & 1))
			p[12] = (i & 2) ? 0x86 : 0x08, p[13] = (i & 2) ? 0xdd : 0x00;
		spate_packet_flow(p, len, &k);
		free(p);
	}
}

Test(packet, record_view, .timeout = 10)
{
	uint64_t buf[16] = { 0 };
	struct spate_packet_hdr h = { .hdr_size = sizeof(h), .flags = SPATE_PACKET_F_RSS, .port = 3,
				      .queue = 1, .wire_len = 100, .rss_hash = 7, .ts_ns = 42 };
	memcpy(buf, &h, sizeof(h));
	memcpy((uint8_t *)buf + sizeof(h), "frame", 5);
	struct spate_ring_rec r = { .data = buf, .len = sizeof(h) + 5, .type = SPATE_RECORD_TYPE_PACKET };
	struct spate_packet_view v;
	cr_assert_eq(spate_packet_view(&r, &v), 0);
	cr_assert_eq(v.cap_len, 5);
	cr_assert_eq(memcmp(v.frame, "frame", 5), 0);
	cr_assert_eq(v.hdr.port, 3);
	cr_assert_eq(v.hdr.ts_ns, 42);
	r.type = 0;
	cr_assert_eq(spate_packet_view(&r, &v), -EPROTO);
	r.type = SPATE_RECORD_TYPE_PACKET;
	r.len = 10;
	cr_assert_eq(spate_packet_view(&r, &v), -EBADMSG);
	h.hdr_size = 200;
	memcpy(buf, &h, sizeof(h));
	r.len = sizeof(h) + 5;
	cr_assert_eq(spate_packet_view(&r, &v), -EBADMSG, "a header longer than the record");
}
