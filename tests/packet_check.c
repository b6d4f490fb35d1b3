/* SPDX-License-Identifier: MIT */
/*
 * packet_check - the verdict of the DPDK traffic tests (tests/dpdk_traffic.sh):
 * every packet of a capture, byte for byte, in a stream or in another
 * capture file.
 *
 *   packet_check stream BUS STREAM EXPECTED.pcap [--wait SECONDS] [--ordered]
 *   packet_check file GOT.pcapng EXPECTED.pcap [--ordered]
 *
 * stream: reads every shard's ring from its oldest record (packet records,
 * spate/packet.h), waiting up to --wait seconds for the last ones, and
 * checks that every frame of EXPECTED (read with libpcap) is there exactly
 * once, byte for byte, with its wire length; that each shard holds its
 * frames in capture order (per-flow order); that every record's key hash is
 * the symmetric flow hash of its frame (or its RSS hash) and that both
 * directions of every flow are in one shard. --ordered: a one-shard stream
 * whose records must be the capture, in order. file: the packets of another
 * capture (libpcap reads pcapng), each frame once, byte for byte; in
 * capture order with --ordered (an export of several shards interleaves
 * them: order is checked per shard in the stream).
 *
 * Exit 0 and a summary line, or 1 naming the first mismatch.
 */
#include <errno.h>
#include <inttypes.h>
#include <pcap/pcap.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spate/packet.h"
#include "spate/stream.h"

struct frame {
	uint8_t *data;
	uint32_t len, wire;
	int matched;     /* times seen */
	uint32_t shard;
};

static struct frame *load(const char *path, size_t *n)
{
	char eb[PCAP_ERRBUF_SIZE];
	pcap_t *p = pcap_open_offline(path, eb);
	struct frame *v = NULL;
	size_t cap = 0;
	struct pcap_pkthdr *h;
	const u_char *d;

	if (!p) {
		fprintf(stderr, "packet_check: %s: %s\n", path, eb);
		exit(1);
	}
	*n = 0;
	while (pcap_next_ex(p, &h, &d) == 1) {
		if (*n == cap) {
			cap = cap ? 2 * cap : 1024;
			v = realloc(v, cap * sizeof(*v));
			if (!v)
				exit(1);
		}
		v[*n].data = malloc(h->caplen ? h->caplen : 1);
		memcpy(v[*n].data, d, h->caplen);
		v[*n].len = h->caplen;
		v[*n].wire = h->len;
		v[*n].matched = 0;
		(*n)++;
	}
	pcap_close(p);
	return v;
}

/* The first unmatched expected frame equal to @p d from @p from on, or -1. */
static long find(struct frame *e, size_t n, size_t from, const uint8_t *d, uint32_t len)
{
	for (size_t i = from; i < n; i++)
		if (!e[i].matched && e[i].len == len && !memcmp(e[i].data, d, len))
			return (long)i;
	for (size_t i = 0; i < from && i < n; i++)
		if (!e[i].matched && e[i].len == len && !memcmp(e[i].data, d, len))
			return (long)i;
	return -1;
}

struct verdict {
	uint64_t seen;
	long last[SPATE_STREAM_MAX_SHARDS]; /* index of the shard's last frame */
	int bad;
	bool any_order; /* a file of several shards' records: order not checked */
};

static void see(struct frame *e, size_t n, struct verdict *v, uint32_t shard, const uint8_t *d,
		uint32_t len, uint32_t wire, bool ordered)
{
	long i = find(e, n, v->last[shard] < 0 ? 0 : (size_t)v->last[shard] + 1, d, len);
	v->seen++;
	if (i < 0) {
		fprintf(stderr, "packet_check: record %" PRIu64 " (shard %u, %u bytes) is no frame of the "
				"capture, or one seen twice:", v->seen, shard, len);
		for (uint32_t j = 0; j < len && j < 48; j++)
			fprintf(stderr, " %02x", d[j]);
		fprintf(stderr, "\n");
		v->bad++;
		return;
	}
	if (e[i].wire != wire) {
		fprintf(stderr, "packet_check: frame %ld: wire length %u, expected %u\n", i, wire, e[i].wire);
		v->bad++;
	}
	if (!v->any_order && (i <= v->last[shard] || (ordered && i != v->last[shard] + 1))) {
		fprintf(stderr, "packet_check: shard %u: frame %ld after frame %ld: out of capture order\n",
			shard, i, v->last[shard]);
		v->bad++;
	}
	e[i].matched++;
	e[i].shard = shard;
	v->last[shard] = i;
}

static void unload(struct frame *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].data);
	free(e);
}

static int report(struct frame *e, size_t n, struct verdict *v, const char *what)
{
	size_t missing = 0;
	for (size_t i = 0; i < n; i++)
		if (!e[i].matched) {
			if (!missing)
				fprintf(stderr, "packet_check: frame %zu of the capture (%u bytes) is missing\n",
					i, e[i].len);
			missing++;
		}
	/* Both directions of a flow in one shard: frames of equal flow hash. */
	size_t split = 0;
	for (size_t i = 0; i < n; i++) {
		struct spate_packet_flow a;
		spate_packet_flow(e[i].data, e[i].len, &a);
		uint32_t ha = spate_packet_flow_hash(&a);
		for (size_t j = i + 1; j < n && j < i + 64; j++) {
			struct spate_packet_flow b;
			spate_packet_flow(e[j].data, e[j].len, &b);
			if (spate_packet_flow_hash(&b) == ha && e[i].shard != e[j].shard && e[i].matched &&
			    e[j].matched)
				split++;
		}
	}
	if (split) {
		fprintf(stderr, "packet_check: %zu pair(s) of frames of one flow in different shards\n", split);
		v->bad++;
	}
	if (missing || v->bad || v->seen != n) {
		fprintf(stderr, "packet_check: %s: %zu frame(s) expected, %" PRIu64 " seen, %zu missing, "
				"%d problem(s)\n", what, n, v->seen, missing, v->bad);
		return 1;
	}
	printf("packet_check: %s: all %zu frames, byte for byte, each once, in capture order per "
	       "shard\n", what, n);
	return 0;
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int check_stream(const char *bus, const char *name, const char *pcap, double wait, bool ordered)
{
	size_t n;
	struct frame *e = load(pcap, &n);
	struct spate_stream *s;
	struct verdict v = { .bad = 0 };
	int rc = spate_stream_attach(bus, name, &s);

	if (rc < 0) {
		fprintf(stderr, "packet_check: stream %s.%s: %s\n", bus, name, strerror(-rc));
		return 1;
	}
	uint32_t shards = spate_stream_shards(s);
	struct spate_ring_reader *rd[SPATE_STREAM_MAX_SHARDS];
	for (uint32_t i = 0; i < shards; i++) {
		v.last[i] = -1;
		if (spate_ring_reader_open(spate_stream_ring(s, i), SPATE_RING_START_OLDEST,
					   SPATE_RING_WAIT_YIELD, &rd[i]) < 0) {
			fprintf(stderr, "packet_check: reader on shard %u failed\n", i);
			return 1;
		}
	}
	if (ordered && shards != 1) {
		fprintf(stderr, "packet_check: --ordered needs a one-shard stream\n");
		return 1;
	}
	double end = mono() + wait;
	while (v.seen < n && v.bad < 10) {
		bool any = false;
		for (uint32_t i = 0; i < shards; i++) {
			struct spate_ring_rec r[256];
			int k = spate_ring_peek(rd[i], r, 256, UINT64_MAX);
			if (k < 0) {
				fprintf(stderr, "packet_check: shard %u: %s\n", i, strerror(-k));
				return 1;
			}
			for (int j = 0; j < k; j++) {
				struct spate_packet_view pv;
				if (spate_packet_view(&r[j], &pv) < 0) {
					fprintf(stderr, "packet_check: shard %u seq %" PRIu64 ": not a packet record "
							"(type %#x)\n", i, r[j].seq, r[j].type);
					v.bad++;
					continue;
				}
				struct spate_packet_flow f;
				spate_packet_flow(pv.frame, pv.cap_len, &f);
				uint32_t want = (pv.hdr.flags & SPATE_PACKET_F_RSS) ? pv.hdr.rss_hash
										   : spate_packet_flow_hash(&f);
				if (shards > 1 && r[j].key_hash != want) {
					fprintf(stderr, "packet_check: shard %u seq %" PRIu64 ": key hash %08x, "
							"flow hash %08x\n", i, r[j].seq, r[j].key_hash, want);
					v.bad++;
				}
				if (shards > 1 && spate_shard_of_hash(r[j].key_hash, shards) != i) {
					fprintf(stderr, "packet_check: shard %u seq %" PRIu64 ": hash %08x belongs "
							"to shard %u\n", i, r[j].seq, r[j].key_hash,
						spate_shard_of_hash(r[j].key_hash, shards));
					v.bad++;
				}
				see(e, n, &v, i, pv.frame, pv.cap_len, pv.hdr.wire_len, ordered);
			}
			if (k) {
				any = true;
				spate_ring_release(rd[i], (unsigned)k);
			}
		}
		if (!any) {
			if (mono() > end)
				break;
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
	for (uint32_t i = 0; i < shards; i++)
		spate_ring_reader_close(rd[i]);
	spate_stream_close(s);
	char what[256];
	snprintf(what, sizeof(what), "stream %s (%u shard(s))", name, shards);
	rc = report(e, n, &v, what);
	unload(e, n);
	return rc;
}

static int check_file(const char *got, const char *pcap, bool ordered)
{
	size_t n, m;
	struct frame *e = load(pcap, &n), *g = load(got, &m);
	struct verdict v = { .bad = 0, .any_order = !ordered };

	v.last[0] = -1;
	for (size_t i = 0; i < m; i++)
		see(e, n, &v, 0, g[i].data, g[i].len, g[i].wire, ordered);
	int rc = report(e, n, &v, got);
	unload(e, n);
	unload(g, m);
	return rc;
}

int main(int argc, char **argv)
{
	bool ordered = false;
	double wait = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--ordered")) {
			ordered = true;
			memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof(*argv));
			argc--;
			i--;
		} else if (!strcmp(argv[i], "--wait") && i + 1 < argc) {
			wait = atof(argv[i + 1]);
			memmove(&argv[i], &argv[i + 2], (size_t)(argc - i - 1) * sizeof(*argv));
			argc -= 2;
			i--;
		}
	}
	if (argc == 5 && !strcmp(argv[1], "stream"))
		return check_stream(argv[2], argv[3], argv[4], wait, ordered);
	if (argc == 4 && !strcmp(argv[1], "file"))
		return check_file(argv[2], argv[3], ordered);
	fprintf(stderr, "usage: packet_check stream BUS STREAM EXPECTED.pcap [--wait S] [--ordered]\n"
			"       packet_check file GOT.pcapng EXPECTED.pcap [--ordered]\n");
	return 2;
}
