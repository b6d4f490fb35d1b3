/* SPDX-License-Identifier: MIT */
/*
 * flowmon.c - the appliance example's flow monitor: a consumer plugin that
 * keeps per-flow packet and byte counts of a stream of packet records
 * (spate/packet.h, as a `type: dpdk` source appends them) and publishes one
 * flow record per active flow to a second stream every second.
 *
 * A flow is the IP 5-tuple, both directions together (the endpoints in a
 * canonical order: the smaller address/port first), so a TCP connection is
 * one flow; a non-IP frame's flow is its two MAC addresses and EtherType.
 * The source puts both directions of a flow in one shard (symmetric hash),
 * so one state sees all of a flow's packets.
 *
 * Every flush (each second) the flows that saw packets since the last one
 * are published to the stream named by option `publish` (default `flows`)
 * through the host's put(), keyed by the flow, as one JSON line each:
 *
 *   {"flow":"udp 10.0.0.1:5201 10.0.0.2:40000","packets":12,"bytes":12000,
 *    "new_packets":3,"new_bytes":3000,"first_ns":...,"last_ns":...}
 *
 * Flows idle for `idle_timeout` seconds (default 60) are forgotten.
 * Redelivered records (sequence numbers already counted) are not counted
 * twice. Options: publish, idle_timeout, max_flows (default 65536; past it
 * new flows are counted in `flows_dropped` of the log line at fini).
 *
 * Build: make (pkg-config --cflags spate), or as the tests do.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spate/packet.h>
#include <spate/plugin.h>

struct flow {
	struct spate_packet_flow key; /* canonical: endpoint a <= endpoint b */
	uint64_t packets, bytes, new_packets, new_bytes, first_ns, last_ns;
	uint32_t hash;
	int used;
};

struct flowmon {
	const struct spate_plugin_host *host;
	char publish[64];
	uint64_t idle_ns;
	struct flow *t; /* open addressing, power-of-two size */
	uint32_t cap, n, max;
	uint64_t next_seq, dropped, published, put_failed;
};

static void canon(struct spate_packet_flow *k)
{
	int c = memcmp(k->src, k->dst, sizeof(k->src));
	if (c > 0 || (c == 0 && k->sport > k->dport)) {
		uint8_t a[16];
		memcpy(a, k->src, 16);
		memcpy(k->src, k->dst, 16);
		memcpy(k->dst, a, 16);
		uint16_t p = k->sport;
		k->sport = k->dport;
		k->dport = p;
	}
}

static int same(const struct spate_packet_flow *a, const struct spate_packet_flow *b)
{
	return !memcmp(a->src, b->src, 16) && !memcmp(a->dst, b->dst, 16) && a->sport == b->sport &&
	       a->dport == b->dport && a->proto == b->proto && a->ethertype == b->ethertype;
}

static int fm_init(const struct spate_plugin_ctx *ctx, void **state)
{
	struct flowmon *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->host = ctx->host;
	snprintf(s->publish, sizeof(s->publish), "%s", spate_plugin_opt(ctx, "publish", "flows"));
	s->idle_ns = strtoull(spate_plugin_opt(ctx, "idle_timeout", "60"), NULL, 10) * 1000000000ull;
	s->max = (uint32_t)strtoul(spate_plugin_opt(ctx, "max_flows", "65536"), NULL, 10);
	if (!s->max || s->max > (1u << 24))
		s->max = 65536;
	s->cap = 1024;
	while (s->cap < 2 * s->max)
		s->cap *= 2;
	s->t = calloc(s->cap, sizeof(*s->t));
	if (!s->t) {
		free(s);
		return -ENOMEM;
	}
	s->next_seq = UINT64_MAX;
	*state = s;
	return 0;
}

static struct flow *lookup(struct flowmon *s, const struct spate_packet_flow *k, uint32_t h)
{
	for (uint32_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		struct flow *f = &s->t[i];
		if (!f->used) {
			if (s->n >= s->max)
				return NULL;
			f->used = 1;
			f->key = *k;
			f->hash = h;
			s->n++;
			return f;
		}
		if (f->hash == h && same(&f->key, k))
			return f;
	}
}

static int fm_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct flowmon *s = state;

	for (uint32_t i = 0; i < b->count; i++) {
		const struct spate_ring_rec *r = &b->recs[i];
		struct spate_packet_view v;
		struct spate_packet_flow k;
		if (s->next_seq != UINT64_MAX && r->seq < s->next_seq)
			continue; /* counted already (a redelivery) */
		s->next_seq = r->seq + 1;
		if (spate_packet_view(r, &v) < 0)
			continue;
		spate_packet_flow(v.frame, v.cap_len, &k);
		canon(&k);
		struct flow *f = lookup(s, &k, spate_packet_flow_hash(&k));
		if (!f) {
			s->dropped++;
			continue;
		}
		if (!f->packets)
			f->first_ns = v.hdr.ts_ns;
		f->packets++;
		f->bytes += v.hdr.wire_len;
		f->new_packets++;
		f->new_bytes += v.hdr.wire_len;
		f->last_ns = v.hdr.ts_ns;
	}
	res->status = SPATE_BATCH_OK;
	return 0;
}

static void endpoint(char *out, size_t len, const struct spate_packet_flow *k, const uint8_t *a,
		     uint16_t port)
{
	if (k->af == 4)
		snprintf(out, len, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], port);
	else if (k->af == 6)
		snprintf(out, len, "[%x:%x:%x:%x:%x:%x:%x:%x]:%u", a[0] << 8 | a[1], a[2] << 8 | a[3],
			 a[4] << 8 | a[5], a[6] << 8 | a[7], a[8] << 8 | a[9], a[10] << 8 | a[11],
			 a[12] << 8 | a[13], a[14] << 8 | a[15], port);
	else
		snprintf(out, len, "%02x:%02x:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3], a[4], a[5]);
}

static const char *proto_name(const struct spate_packet_flow *k, char *buf, size_t len)
{
	if (!k->af)
		snprintf(buf, len, "eth-%04x", k->ethertype);
	else if (k->proto == 6)
		return "tcp";
	else if (k->proto == 17)
		return "udp";
	else if (k->proto == 1 || k->proto == 58)
		return "icmp";
	else
		snprintf(buf, len, "ip-%u", k->proto);
	return buf;
}

/* Every second: publish the flows that moved, forget the idle ones. */
static int fm_flush(void *state, uint64_t now_ns)
{
	struct flowmon *s = state;
	char line[512], a[64], b[64], name[160], pbuf[16];
	int rc = 0;

	for (uint32_t i = 0; i < s->cap; i++) {
		struct flow *f = &s->t[i];
		if (!f->used)
			continue;
		if (f->new_packets) {
			endpoint(a, sizeof(a), &f->key, f->key.src, f->key.sport);
			endpoint(b, sizeof(b), &f->key, f->key.dst, f->key.dport);
			snprintf(name, sizeof(name), "%s %s %s", proto_name(&f->key, pbuf, sizeof(pbuf)), a, b);
			int n = snprintf(line, sizeof(line),
					 "{\"flow\":\"%s\",\"packets\":%" PRIu64 ",\"bytes\":%" PRIu64
					 ",\"new_packets\":%" PRIu64 ",\"new_bytes\":%" PRIu64
					 ",\"first_ns\":%" PRIu64 ",\"last_ns\":%" PRIu64 "}",
					 name, f->packets, f->bytes, f->new_packets, f->new_bytes, f->first_ns,
					 f->last_ns);
			int r = SPATE_PLUGIN_HAS(s->host, put) && s->host->put
					? s->host->put(s->host, s->publish, name, strlen(name), line, (size_t)n)
					: -ENOTSUP;
			if (r < 0) {
				s->put_failed++;
				rc = r; /* kept: published at the next flush */
				continue;
			}
			s->published++;
			f->new_packets = f->new_bytes = 0;
		} else if (f->last_ns && now_ns > f->last_ns + s->idle_ns) {
			f->used = 2; /* idle: forgotten by the rebuild below */
		}
	}
	/* Forget idle flows: rebuild the table without them (open addressing
	 * has no delete that keeps the other flows' probe chains). */
	uint32_t forgotten = 0;
	for (uint32_t i = 0; i < s->cap; i++)
		forgotten += s->t[i].used == 2;
	if (forgotten) {
		struct flow *old = s->t;
		struct flow *t = calloc(s->cap, sizeof(*t));
		if (t) {
			s->t = t;
			s->n = 0;
			for (uint32_t i = 0; i < s->cap; i++) {
				if (old[i].used != 1)
					continue;
				struct flow *f = lookup(s, &old[i].key, old[i].hash);
				*f = old[i];
			}
			free(old);
		} else {
			for (uint32_t i = 0; i < s->cap; i++)
				if (old[i].used == 2)
					old[i].used = 1; /* no memory: keep them */
		}
	}
	return rc;
}

static void fm_fini(void *state)
{
	struct flowmon *s = state;
	if (s->host && s->host->log)
		s->host->log(s->host, SPATE_LOG_INFO,
			     "flowmon: %u flow(s), %" PRIu64 " flow record(s) published, %" PRIu64
			     " put(s) failed, %" PRIu64 " packet(s) of flows past max_flows",
			     s->n, s->published, s->put_failed, s->dropped);
	free(s->t);
	free(s);
}

SPATE_PLUGIN_DEFINE(.name = "flowmon", .version = "1.0", .init = fm_init, .process = fm_process,
		    .fini = fm_fini, .flush = fm_flush, .flush_interval_ns = 1000000000ull);
