/* SPDX-License-Identifier: MIT */
/*
 * ingress.c - `spate bench ingress`: packets per second from a DPDK port
 * into a stream (engine/sources/dpdk_rx.c, a consumer thread reading and
 * checking every record), against a bare rte_eth_rx_burst() loop that
 * frees the mbufs, on the same port in the same run.
 *
 * Ports: net_null (the PMD makes frames of the asked size out of mbufs,
 * nothing on the wire: what an RX core costs with an infinitely fast NIC)
 * and net_memif (a server port fed by a client port of the same process
 * through a shared-memory ring, a generator thread sending bursts: a real
 * PMD moving bytes). Each case runs --repeat times, alternating the
 * impls, and reports the medians; ratios are taken within the run.
 *
 * Impls: rx_burst (the bare loop freeing the mbufs: the baseline), spate
 * (dpdk_rx.c into a one-shard stream, a consumer on the other CPU reading
 * every record), and two bounds on any design that hands every packet to
 * a consumer on another core, measured in the same run: ring_only (the
 * spate ring alone at the packet record's size: records of a 24-byte
 * header and a frame written in bursts of 32 by the RX CPU, no port; the
 * same consumer) and rte_ring (the cheapest hand-off there is: the mbuf
 * pointers of each burst through a single-producer/single-consumer
 * rte_ring, no copy, the consumer reading each frame's first byte and
 * freeing the mbufs). The bounds run on net_null only (on net_memif the
 * generator would share their consumer's CPU).
 *
 * Threads: the RX loop on the first CPU of a two-CPU placement (hwloc),
 * the consumer (and the memif generator) on the second; on a machine with
 * two cores the memif generator shares the consumer's.
 *
 * Limits: one RX queue per port (one RX core: the per-core figure); a
 * stream of one shard, single producer, in memory (no log), a 16 MiB ring
 * by default (--ring-mib: a ring larger than the last-level cache makes
 * every record a DRAM round trip for both sides).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>
#include <rte_ring.h>

#include "bench/bench.h"
#include "engine/sources/dpdk_port.h"
#include "engine/sources/dpdk_rx.h"
#include "spate/stream.h"
#include "spate/topo.h"

struct ingress_case {
	const char *impl, *port;
	unsigned frame, base; /* base: index of the same group's rx_burst case */
	double pps, drops;
	double runs_pps[16];
};

static uint64_t consumer_min = 1024; /* records the consumer lets pile up before it reads */
static unsigned rx_burst_size = 32;   /* frames per rte_eth_rx_burst, every impl */

static const char *const impls[] = { "rx_burst", "spate", "ring_only", "rte_ring" };
#define N_IMPLS 4u

struct run_ctx {
	uint16_t port;
	int cpu;
	struct spate_topo *topo;
	double seconds;
	_Atomic int stop;
	uint64_t packets, drops;
	int err;
	/* spate impl */
	struct spate_stream *s;
	struct spate_producer *prod;
	const struct spate_dpdk_port *dp;
	/* consumer (its reader opened before the RX thread starts) */
	struct spate_ring_reader *rd;
	int ccpu;
	uint64_t consumed, misorder;
	/* rte_ring hand-off */
	struct rte_ring *handoff;
	/* memif generator */
	uint16_t tx_port;
	struct rte_mempool *tx_pool;
	unsigned frame;
};

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(struct spate_topo *t, int cpu)
{
	if (t && cpu >= 0)
		spate_topo_pin_self(t, cpu);
	rte_thread_register(); /* an lcore id: the mempool's per-core cache */
}

static void *bare_main(void *arg)
{
	struct run_ctx *c = arg;
	struct rte_mbuf *m[SPATE_DPDK_MAX_BURST];
	uint64_t n = 0;

	pin(c->topo, c->cpu);
	double end = mono_s() + c->seconds;
	while (1) {
		for (int i = 0; i < 1024; i++) {
			uint16_t k = rte_eth_rx_burst(c->port, 0, m, (uint16_t)rx_burst_size);
			if (k)
				rte_pktmbuf_free_bulk(m, k);
			n += k;
		}
		if (mono_s() >= end)
			break;
	}
	c->packets = n;
	rte_thread_unregister();
	return NULL;
}

static void *spate_main(void *arg)
{
	struct run_ctx *c = arg;
	struct spate_dpdk_rxq q;
	struct spate_dpdk_rxq_stats st;
	uint64_t n = 0;

	memset(&st, 0, sizeof(st));
	pin(c->topo, c->cpu);
	struct spate_ring *r = spate_stream_ring(c->s, 0);
	c->err = spate_dpdk_rxq_init(&q, c->dp, 0, c->prod, 1, spate_ring_max_record(r),
				     spate_ring_capacity(r), &st, &c->stop);
	if (c->err < 0)
		return NULL;
	q.on_full = SPATE_DPDK_FULL_DROP;
	q.burst = (uint16_t)rx_burst_size;
	double end = mono_s() + c->seconds;
	while (1) {
		for (int i = 0; i < 1024; i++) {
			int k = spate_dpdk_rxq_poll(&q);
			if (k < 0) {
				c->err = k;
				goto out;
			}
			n += (uint64_t)k;
		}
		if (mono_s() >= end)
			break;
	}
out:
	/* Relaxed: statistics, read after join. */
	c->packets = atomic_load_explicit(&st.packets, memory_order_relaxed);
	c->drops = atomic_load_explicit(&st.drops, memory_order_relaxed) +
		   atomic_load_explicit(&st.errors, memory_order_relaxed);
	free(q.w);
	rte_thread_unregister();
	return NULL;
}

/* ring_only: the spate ring alone, written as the source writes it (one
 * reservation per burst of 32 packet records, a 24-byte header and the
 * frame copied into each, one commit), from a frame in the cache: the
 * ring's own throughput at the packet record's size. Full: drop, as the
 * source's default policy. */
static void *ring_only_main(void *arg)
{
	struct run_ctx *c = arg;
	struct spate_ring_writer *w = spate_producer_writer(c->prod, 0);
	uint8_t frame[1536];
	uint64_t n = 0, drops = 0;

	pin(c->topo, c->cpu);
	memset(frame, 0x5a, sizeof(frame));
	w->flags &= ~SPATE_RING_F_FULL_WAIT; /* we drop ourselves, as the source */
	uint32_t len = (uint32_t)sizeof(struct spate_packet_hdr) + c->frame;
	uint64_t bytes = rx_burst_size * spate_ring_rec_size(len);
	double end = mono_s() + c->seconds;
	while (1) {
		for (int i = 0; i < 1024; i++) {
			struct spate_ring_batch b;
			int rc = spate_ring_reserve(w, bytes, &b);
			if (rc < 0) {
				if (rc != -EAGAIN) {
					c->err = rc;
					goto out;
				}
				drops += rx_burst_size;
				continue;
			}
			struct spate_packet_hdr h = { .hdr_size = sizeof(h), .wire_len = c->frame,
						      .ts_ns = (uint64_t)i };
			for (unsigned k = 0; k < rx_burst_size; k++) {
				uint8_t *p = spate_ring_batch_add(&b, len, 0, SPATE_RECORD_TYPE_PACKET);
				memcpy(p, &h, sizeof(h));
				rte_memcpy(p + sizeof(h), frame, c->frame); /* as dpdk_rx.c copies */
			}
			spate_ring_commit(w, &b, 1, NULL);
			n += rx_burst_size;
		}
		if (mono_s() >= end)
			break;
	}
out:
	c->packets = n;
	c->drops = drops;
	rte_thread_unregister();
	return NULL;
}

/* rte_ring: each burst's mbuf pointers to the consumer, no copy. */
static void *handoff_rx_main(void *arg)
{
	struct run_ctx *c = arg;
	struct rte_mbuf *m[SPATE_DPDK_MAX_BURST];
	uint64_t n = 0, drops = 0;

	pin(c->topo, c->cpu);
	double end = mono_s() + c->seconds;
	while (1) {
		for (int i = 0; i < 1024; i++) {
			uint16_t k = rte_eth_rx_burst(c->port, 0, m, (uint16_t)rx_burst_size);
			if (!k)
				continue;
			unsigned q = rte_ring_sp_enqueue_burst(c->handoff, (void **)m, k, NULL);
			if (q < k) {
				rte_pktmbuf_free_bulk(m + q, k - q);
				drops += k - q;
			}
			n += q;
		}
		if (mono_s() >= end)
			break;
	}
	c->packets = n;
	c->drops = drops;
	rte_thread_unregister();
	return NULL;
}

static void *handoff_consumer_main(void *arg)
{
	struct run_ctx *c = arg;
	struct rte_mbuf *m[256];
	uint64_t n = 0, sum = 0;

	pin(c->topo, c->ccpu);
	for (;;) {
		unsigned k = rte_ring_sc_dequeue_burst(c->handoff, (void **)m, 256, NULL);
		if (!k) {
			/* Acquire: pairs with the release store of stop after the RX thread ended. */
			if (atomic_load_explicit(&c->stop, memory_order_acquire) &&
			    rte_ring_empty(c->handoff))
				break;
			continue;
		}
		for (unsigned i = 0; i < k; i++)
			sum += *rte_pktmbuf_mtod(m[i], const uint8_t *);
		rte_pktmbuf_free_bulk(m, k);
		n += k;
	}
	c->consumed = n;
	c->misorder = sum & 0; /* sum: each frame's first byte is read */
	rte_thread_unregister();
	return NULL;
}

/* The consumer: every record, checked for sequence and type. */
static void *consumer_main(void *arg)
{
	struct run_ctx *c = arg;
	struct spate_ring_reader *rd = c->rd;
	struct spate_ring_rec v[256];
	uint64_t next = UINT64_MAX, n = 0, bad = 0, sum = 0;

	if (c->topo && c->ccpu >= 0)
		spate_topo_pin_self(c->topo, c->ccpu);
	struct spate_ring *ring = spate_stream_ring(c->s, 0);
	for (;;) {
		/* Read in batches of at least consumer_min records: a reader right
		 * behind the writer pulls (and its prefetcher pulls ahead) the
		 * lines the writer is still filling, and every store of the RX
		 * core then waits for a line taken back from this core. */
		if (consumer_min && next != UINT64_MAX &&
		    spate_ring_tail_seq(ring) - next < consumer_min &&
		    /* Relaxed: a stop flag; the acquire below decides. */
		    !atomic_load_explicit(&c->stop, memory_order_relaxed)) {
			spate_cpu_relax();
			continue;
		}
		int k = spate_ring_peek(rd, v, 256, UINT64_MAX);
		if (k < 0) {
			bad++;
			break;
		}
		if (k == 0) {
			/* Acquire: pairs with the release store of stop after the RX thread ended. */
			if (atomic_load_explicit(&c->stop, memory_order_acquire) &&
			    spate_ring_peek(rd, v, 1, UINT64_MAX) == 0)
				break;
			continue;
		}
		for (int i = 0; i < k; i++) {
			if ((next != UINT64_MAX && v[i].seq != next) || v[i].type != SPATE_RECORD_TYPE_PACKET)
				bad++;
			next = v[i].seq + 1;
			sum += ((const uint8_t *)v[i].data)[sizeof(struct spate_packet_hdr)];
		}
		n += (uint64_t)k;
		spate_ring_release(rd, (unsigned)k);
	}
	c->consumed = n;
	c->misorder = bad + (sum & 0); /* sum: the frame's first byte is read */
	return NULL;
}

/* The memif generator: bursts of frames of the case's size, as fast as
 * the client port takes them. */
static void *gen_main(void *arg)
{
	struct run_ctx *c = arg;
	struct rte_mbuf *m[32];

	pin(c->topo, c->ccpu);
	/* Relaxed: a stop flag; nothing is read on the strength of it. */
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		if (rte_pktmbuf_alloc_bulk(c->tx_pool, m, 32) < 0)
			continue;
		for (int i = 0; i < 32; i++) {
			uint8_t *p = (uint8_t *)rte_pktmbuf_append(m[i], (uint16_t)c->frame);
			if (p)
				memset(p, 0x5a, 14);
		}
		uint16_t k = rte_eth_tx_burst(c->tx_port, 0, m, 32);
		if (k < 32)
			rte_pktmbuf_free_bulk(m + k, 32u - k);
	}
	rte_thread_unregister();
	return NULL;
}

/* A port for @p kind and @p frame: net_null makes frames; net_memif needs
 * a client port and a generator. */
struct bench_port {
	struct spate_dpdk_port rx;
	uint16_t tx_port;
	struct rte_mempool *tx_pool;
	bool memif;
	char sock[128];
};

static int port_open(const char *kind, unsigned frame, unsigned serial, struct bench_port *bp,
		     char *err, size_t errlen)
{
	char dev[256];
	struct spate_dpdk_port_cfg cfg = { .dev = dev, .queues = 1, .max_frame = frame + 64 };

	memset(bp, 0, sizeof(*bp));
	if (!strcmp(kind, "net_null")) {
		snprintf(dev, sizeof(dev), "net_null_bi%u,size=%u", serial, frame);
		return spate_dpdk_port_open(&cfg, &bp->rx, err, errlen);
	}
	bp->memif = true;
	snprintf(bp->sock, sizeof(bp->sock), "/tmp/spate-bench-memif-%d-%u.sock", (int)getpid(), serial);
	snprintf(dev, sizeof(dev), "net_memif_bs%u,role=server,socket=%s,id=0,bsize=2048,rsize=11",
		 serial, bp->sock);
	int rc = spate_dpdk_port_open(&cfg, &bp->rx, err, errlen);
	if (rc < 0)
		return rc;
	/* The client: a port of its own with one TX queue. */
	char cdev[256], cname[64];
	snprintf(cdev, sizeof(cdev), "net_memif_bc%u,role=client,socket=%s,id=0,bsize=2048,rsize=11",
		 serial, bp->sock);
	snprintf(cname, sizeof(cname), "net_memif_bc%u", serial);
	if (rte_dev_probe(cdev) < 0 || rte_eth_dev_get_port_by_name(cname, &bp->tx_port) != 0) {
		snprintf(err, errlen, "memif client %s: probe failed", cdev);
		goto err;
	}
	char pname[32];
	snprintf(pname, sizeof(pname), "spate_bi_tx%u", serial);
	bp->tx_pool = rte_pktmbuf_pool_create(pname, 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					      (int)rte_socket_id());
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof(conf));
	if (!bp->tx_pool || rte_eth_dev_configure(bp->tx_port, 1, 1, &conf) < 0 ||
	    rte_eth_rx_queue_setup(bp->tx_port, 0, 1024, 0, NULL, bp->tx_pool) < 0 ||
	    rte_eth_tx_queue_setup(bp->tx_port, 0, 1024, 0, NULL) < 0 ||
	    rte_eth_dev_start(bp->tx_port) < 0) {
		snprintf(err, errlen, "memif client %s: set-up failed", cdev);
		goto err;
	}
	/* Wait for the two ends to connect (up to 5 s). */
	for (int i = 0; i < 500; i++) {
		struct rte_eth_link l;
		if (rte_eth_link_get_nowait(bp->rx.port, &l) == 0 && l.link_status)
			return 0;
		usleep(10000);
	}
	snprintf(err, errlen, "memif: the client never connected to %s", bp->sock);
err:
	spate_dpdk_port_close(&bp->rx);
	return -EIO;
}

static void port_close(struct bench_port *bp)
{
	if (bp->memif) {
		/* The two ends disconnect in the EAL's interrupt thread: stop the
		 * client and let the server see it go (link down) before anything
		 * is closed, or a disconnect handler may run on a closed port. */
		struct rte_eth_dev_info di;
		rte_eth_dev_stop(bp->tx_port);
		for (int i = 0; i < 200; i++) {
			struct rte_eth_link l;
			if (rte_eth_link_get_nowait(bp->rx.port, &l) == 0 && !l.link_status)
				break;
			usleep(5000);
		}
		usleep(20000);
		struct rte_device *d = rte_eth_dev_info_get(bp->tx_port, &di) == 0 ? di.device : NULL;
		rte_eth_dev_close(bp->tx_port);
		if (d)
			rte_dev_remove(d);
		rte_mempool_free(bp->tx_pool);
	}
	spate_dpdk_port_close(&bp->rx);
	if (bp->memif)
		unlink(bp->sock);
}

static void drain(uint16_t port)
{
	struct rte_mbuf *m[32];
	for (int i = 0; i < 4096; i++) {
		uint16_t k = rte_eth_rx_burst(port, 0, m, 32);
		if (!k)
			break;
		rte_pktmbuf_free_bulk(m, k);
	}
}

/* One run of one impl. @return 0 or -errno. */
static uint64_t ring_bytes = 16u << 20;

static int run_one(const char *impl, struct bench_port *bp, unsigned frame, double seconds,
		   struct spate_topo *topo, const int *cpus, double *pps, double *drops, char *err,
		   size_t errlen)
{
	struct run_ctx c;
	pthread_t th, cth, gth;
	char bus[32];
	int rc = 0;

	memset(&c, 0, sizeof(c));
	c.port = bp->rx.port;
	c.cpu = cpus[0];
	c.ccpu = cpus[1];
	c.topo = topo;
	c.seconds = seconds;
	c.dp = &bp->rx;
	c.tx_port = bp->tx_port;
	c.tx_pool = bp->tx_pool;
	c.frame = frame;
	bool ring_only = !strcmp(impl, "ring_only"), handoff = !strcmp(impl, "rte_ring");
	bool spate = !strcmp(impl, "spate") || ring_only;
	if (handoff) {
		char rn[32];
		snprintf(rn, sizeof(rn), "bingress%d", (int)getpid());
		c.handoff = rte_ring_create(rn, 1024, (int)rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
		if (!c.handoff) {
			snprintf(err, errlen, "rte_ring_create: %s", rte_strerror(rte_errno));
			return -ENOMEM;
		}
		pthread_create(&cth, NULL, handoff_consumer_main, &c);
	}
	if (spate) {
		struct spate_stream_params sp = { .shards = 1, .ring_size = ring_bytes,
						  .max_record = 9216 };
		snprintf(bus, sizeof(bus), "bingress%d", (int)getpid());
		spate_stream_unlink(bus, "packets");
		rc = spate_stream_create(bus, "packets", &sp, &c.s);
		if (rc == 0)
			rc = spate_producer_open(c.s, SPATE_RING_WAIT_BUSY, SPATE_PRODUCER_F_FAIL_FULL, &c.prod);
		if (rc == 0)
			rc = spate_ring_reader_open(spate_stream_ring(c.s, 0), SPATE_RING_START_OLDEST,
						    SPATE_RING_WAIT_BUSY, &c.rd);
		if (rc < 0) {
			snprintf(err, errlen, "stream: %s", strerror(-rc));
			goto out;
		}
		pthread_create(&cth, NULL, consumer_main, &c);
	}
	if (bp->memif)
		pthread_create(&gth, NULL, gen_main, &c);
	drain(c.port);
	double t0 = mono_s();
	pthread_create(&th, NULL,
		       ring_only ? ring_only_main : spate ? spate_main : handoff ? handoff_rx_main : bare_main,
		       &c);
	pthread_join(th, NULL);
	double t1 = mono_s();
	/* Release: pairs with the consumer's acquire: every record is published. */
	atomic_store_explicit(&c.stop, 1, memory_order_release);
	if (bp->memif)
		pthread_join(gth, NULL);
	if (handoff) {
		pthread_join(cth, NULL);
		rte_ring_free(c.handoff);
		if (c.consumed != c.packets) {
			snprintf(err, errlen, "consumer took %" PRIu64 " of %" PRIu64 " mbufs", c.consumed,
				 c.packets);
			rc = -EIO;
		}
	}
	if (spate) {
		pthread_join(cth, NULL);
		if (c.err < 0) {
			rc = c.err;
			snprintf(err, errlen, "rx: %s", strerror(-rc));
		} else if (c.misorder || c.consumed != c.packets) {
			snprintf(err, errlen, "consumer read %" PRIu64 " of %" PRIu64 " records, %" PRIu64
				 " out of order or mistyped", c.consumed, c.packets, c.misorder);
			rc = -EIO;
		}
	}
	*pps = (double)c.packets / (t1 - t0);
	*drops = (double)c.drops;
out:
	spate_ring_reader_close(c.rd);
	spate_producer_close(c.prod);
	if (c.s) {
		spate_stream_close(c.s);
		spate_stream_unlink(bus, "packets");
	}
	return rc;
}

/* Is @p impl in the comma-separated @p list? */
static bool impl_on(const char *list, const char *impl)
{
	size_t n = strlen(impl);
	for (const char *p = list; (p = strstr(p, impl)); p += n)
		if ((p == list || p[-1] == ',') && (p[n] == ',' || !p[n]))
			return true;
	return false;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: spate bench ingress [--seconds S] [--repeat N] [--ports net_null,net_memif]\n"
		   "                           [--sizes 64,1500] [--ring-mib 16] [--json]\n"
		   "                           [--impls rx_burst,spate,ring_only,rte_ring] [--burst 32]\n"
		   "                           [--consumer-min 1024]\n"
		   "  packets/s from a DPDK port into a stream (a consumer reading every record)\n"
		   "  against a bare rte_eth_rx_burst loop freeing the mbufs, same port, same run,\n"
		   "  with two bounds of any hand-off to another core: ring_only (the spate ring\n"
		   "  alone at the packet record's size) and rte_ring (mbuf pointers, no copy)\n");
}

int spate_bench_ingress_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seconds", required_argument, 0, 's' }, { "repeat", required_argument, 0, 'r' },
		{ "ports", required_argument, 0, 'p' },   { "sizes", required_argument, 0, 'z' },
		{ "json", no_argument, 0, 'j' },          { "help", no_argument, 0, 'h' },
		{ "ring-mib", required_argument, 0, 'R' }, { "impls", required_argument, 0, 'i' },
		{ "consumer-min", required_argument, 0, 'm' }, { "burst", required_argument, 0, 'b' },
		{ 0, 0, 0, 0 },
	};
	double seconds = 1.0;
	unsigned repeat = 3;
	bool json = false;
	char ports_arg[128] = "net_null,net_memif", sizes_arg[128] = "64,1500";
	char impls_arg[128] = "rx_burst,spate,ring_only,rte_ring";
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's': seconds = atof(optarg); break;
		case 'r': repeat = (unsigned)atoi(optarg); break;
		case 'p': snprintf(ports_arg, sizeof(ports_arg), "%s", optarg); break;
		case 'z': snprintf(sizes_arg, sizeof(sizes_arg), "%s", optarg); break;
		case 'j': json = true; break;
		case 'R': ring_bytes = (uint64_t)atoi(optarg) << 20; break;
		case 'm': consumer_min = strtoull(optarg, NULL, 10); break;
		case 'b': rx_burst_size = (unsigned)atoi(optarg); break;
		case 'i': snprintf(impls_arg, sizeof(impls_arg), "%s", optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return -EINVAL;
		}
	}
	if (seconds <= 0 || seconds > 60 || repeat < 1 || repeat > 16 || ring_bytes < (1u << 20) ||
	    ring_bytes > (1u << 30) || (ring_bytes & (ring_bytes - 1)) || rx_burst_size < 1 ||
	    rx_burst_size > SPATE_DPDK_MAX_BURST || consumer_min > (1u << 20)) {
		fprintf(stderr, "spate bench ingress: --seconds in (0, 60], --repeat in 1..16, "
				"--ring-mib a power of two in 1..1024, --burst 1..64, --consumer-min <= 1048576\n");
		return -EINVAL;
	}
	const char *ports[4];
	unsigned sizes[4], np = 0, ns = 0;
	for (char *save = NULL, *t = strtok_r(ports_arg, ",", &save); t && np < 4;
	     t = strtok_r(NULL, ",", &save)) {
		if (strcmp(t, "net_null") && strcmp(t, "net_memif")) {
			fprintf(stderr, "spate bench ingress: --ports takes net_null and net_memif, not %s\n", t);
			return -EINVAL;
		}
		ports[np++] = t;
	}
	for (char *save = NULL, *t = strtok_r(sizes_arg, ",", &save); t && ns < 4;
	     t = strtok_r(NULL, ",", &save)) {
		sizes[ns] = (unsigned)atoi(t);
		if (sizes[ns] < 60 || sizes[ns] > 1514) {
			fprintf(stderr, "spate bench ingress: frame sizes are 60..1514 bytes, not %s\n", t);
			return -EINVAL;
		}
		ns++;
	}
	char desc[256], err[512];
	bool memif = false;
	for (unsigned i = 0; i < np; i++)
		memif |= !strcmp(ports[i], "net_memif");
	if (spate_dpdk_eal_init(NULL, 0, false, memif, desc, sizeof(desc), err, sizeof(err)) < 0) {
		fprintf(stderr, "spate bench ingress: %s\n", err);
		return -EIO;
	}
	struct spate_topo *topo = NULL;
	struct spate_topo_placement pl;
	int cpus[2] = { -1, -1 };
	if (spate_topo_open(&topo) == 0 && spate_topo_place(topo, 2, &pl) == 0) {
		cpus[0] = pl.cpu[0];
		cpus[1] = pl.cpu[1];
	}
	/* The machine's cross-core cache-line round trip, between the two CPUs
	 * the cases use, so figures from different machines read side by side. */
	double rtt = spate_bench_c2c_rtt_ns(cpus[0], cpus[1]);
	static struct ingress_case cases[4 * 4 * N_IMPLS]; /* zeroed: skipped impls stay 0 */
	unsigned nc = 0, serial = 0;
	int rc = 0;
	for (unsigned pi = 0; pi < np && rc == 0; pi++) {
		for (unsigned si = 0; si < ns && rc == 0; si++) {
			struct bench_port bp;
			rc = port_open(ports[pi], sizes[si], serial++, &bp, err, sizeof(err));
			if (rc < 0) {
				fprintf(stderr, "spate bench ingress: %s\n", err);
				break;
			}
			struct ingress_case *k[N_IMPLS];
			unsigned base = nc;
			for (unsigned i = 0; i < N_IMPLS; i++) {
				k[i] = &cases[nc++];
				k[i]->impl = impls[i];
				k[i]->port = ports[pi];
				k[i]->frame = sizes[si];
				k[i]->base = base;
				k[i]->drops = 0;
			}
			for (unsigned r = 0; r < repeat && rc == 0; r++) {
				for (unsigned i = 0; i < N_IMPLS && rc == 0; i++) {
					double pps = 0, drops = 0;
					/* The bounds are port-free (ring_only) or the net_null
					 * target's (rte_ring): with memif the generator would
					 * share their consumer's CPU. */
					if (!impl_on(impls_arg, impls[i]) ||
					    (bp.memif && i >= 2))
						continue;
					rc = run_one(k[i]->impl, &bp, sizes[si], seconds, topo, cpus, &pps, &drops,
						     err, sizeof(err));
					if (rc < 0)
						fprintf(stderr, "spate bench ingress: %s %s %u: %s\n", k[i]->impl,
							ports[pi], sizes[si], err);
					k[i]->runs_pps[r] = pps;
					k[i]->drops += drops;
				}
			}
			for (unsigned i = 0; i < N_IMPLS; i++)
				k[i]->pps = spate_bench_median(k[i]->runs_pps, repeat);
			port_close(&bp);
		}
	}
	if (rc < 0) {
		spate_topo_close(topo);
		return rc;
	}
	if (!json) {
		printf("EAL: %s; RX on cpu %d, consumer%s on cpu %d; %u run(s) of %.1f s, medians; "
		       "burst %u, ring %" PRIu64 " MiB, consumer reads >= %" PRIu64 " records at once; "
		       "cross-core round trip %.0f ns\n", desc,
		       cpus[0], np && !strcmp(ports[np - 1], "net_memif") ? " (and memif generator)" : "",
		       cpus[1], repeat, seconds, rx_burst_size, ring_bytes >> 20, consumer_min, rtt);
		printf("%-9s %-10s %6s %14s %10s %8s\n", "impl", "port", "frame", "packets/s", "drops", "ratio");
		for (unsigned i = 0; i < nc; i++) {
			const struct ingress_case *k = &cases[i];
			double base = cases[k->base].pps;
			if (!impl_on(impls_arg, k->impl) || (strcmp(k->port, "net_null") && k - cases >= (long)k->base + 2))
				continue;
			printf("%-9s %-10s %6u %14.0f %10.0f %7.2fx\n", k->impl, k->port, k->frame, k->pps,
			       k->drops, base > 0 ? k->pps / base : 0);
			double ro = cases[k->base + 2].pps;
			if (!strcmp(k->impl, "spate") && base > 0 && ro > 0)
				printf("%-9s %-10s %6u %14.0f %10s %7.2fx  (1/(1/rx_burst + 1/ring_only))\n",
				       "1copy_max", k->port, k->frame, 1.0 / (1.0 / base + 1.0 / ro), "",
				       ro / (base + ro));
		}
		spate_topo_close(topo);
		return 0;
	}
	json_object *root = json_object_new_object(), *arr = json_object_new_array();
	for (unsigned i = 0; i < nc; i++) {
		const struct ingress_case *k = &cases[i];
		if (!impl_on(impls_arg, k->impl) || (strcmp(k->port, "net_null") && i >= k->base + 2))
			continue;
		json_object *o = json_object_new_object();
		json_object_object_add(o, "impl", json_object_new_string(k->impl));
		json_object_object_add(o, "port", json_object_new_string(k->port));
		json_object_object_add(o, "frame_size", json_object_new_int((int)k->frame));
		json_object_object_add(o, "packets_per_sec", json_object_new_double(k->pps));
		json_object_object_add(o, "drops", json_object_new_int64((int64_t)k->drops));
		double base = cases[k->base].pps;
		if (strcmp(k->impl, "rx_burst"))
			json_object_object_add(o, "ratio_to_rx_burst",
					       json_object_new_double(base > 0 ? k->pps / base : 0));
		/* The one-copy bound: the RX core does the bare loop's work and
		 * the ring's, one after the other, per packet: 1/(1/B + 1/R). */
		double ro = cases[k->base + 2].pps;
		if (!strcmp(k->impl, "spate") && base > 0 && ro > 0) {
			double bound = 1.0 / (1.0 / base + 1.0 / ro);
			json_object_object_add(o, "one_copy_bound_pps", json_object_new_double(bound));
			json_object_object_add(o, "one_copy_bound_ratio", json_object_new_double(bound / base));
		}
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "eal", json_object_new_string(desc));
	json_object_object_add(root, "rx_cpu", json_object_new_int(cpus[0]));
	json_object_object_add(root, "consumer_cpu", json_object_new_int(cpus[1]));
	json_object_object_add(root, "seconds_per_run", json_object_new_double(seconds));
	json_object_object_add(root, "ring_bytes", json_object_new_int64((int64_t)ring_bytes));
	json_object_object_add(root, "burst", json_object_new_int((int)rx_burst_size));
	json_object_object_add(root, "consumer_min_records", json_object_new_int64((int64_t)consumer_min));
	json_object_object_add(root, "cross_core_rtt_ns", json_object_new_double(rtt));
	json_object_object_add(root, "repeat", json_object_new_int((int)repeat));
	json_object_object_add(root, "target_ratio_64B_net_null", json_object_new_double(0.9));
	json_object_object_add(root, "target_packets_per_sec_per_core", json_object_new_double(14.88e6));
	json_object_object_add(root, "cases", arr);
	printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	json_object_put(root);
	spate_topo_close(topo);
	return 0;
}
