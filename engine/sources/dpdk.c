/* SPDX-License-Identifier: MIT */
/*
 * dpdk.c - the `type: dpdk` source: a DPDK ethdev port's received frames
 * appended to a stream as packet records (spate/packet.h).
 *
 * Design. start() starts the EAL if the process has not (dpdk_port.c:
 * once per process; `eal:` replaces the defaults, which work with and
 * without huge pages, and the log says which were used), hot-plugs the
 * port (a PCI address or vdev devargs: net_pcap, net_af_packet, net_memif,
 * net_null, net_ring), and runs one RX thread per queue, each with its own
 * producer (so a stream fed by several queues must be multi-producer), each
 * pinned to a CPU: the ones in `cores:`, else the process's CPUs that no
 * busy-polling worker of the engine's placement plan holds (a CPU is
 * shared only when every one is taken, and the log says so). A thread polls
 * its queue (dpdk_rx.c: frames straight into shard reservations, one copy)
 * and, when idle, spins, yields or naps per `idle:`. A statistics thread
 * copies the queues' counters and the port's rte_eth_stats into the
 * source's slot of the counters region every 100 ms (`spate stat/top`,
 * Prometheus), so the RX threads only ever write their own lines.
 *
 * Limits: the EAL stays up until the process exits; one port per source;
 * at most SPATE_DPDK_MAX_QUEUES queues; the counters region holds 14
 * counters per source: totals, the port's, and packets, drops and errors of
 * the first two queues (every queue is in the totals, and in the log line
 * at stop).
 */
#include "spate_config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_lcore.h>

#include "engine/sources/dpdk_port.h"
#include "engine/sources/dpdk_rx.h"
#include "spate/engine.h"
#include "spate/slog.h"
#include "spate/sources.h"
#include "spate/stats.h"
#include "spate/topo.h"

/* Counters of the source's slot, in naming order. */
enum {
	C_PACKETS, C_BYTES, C_DROPS, C_ERRORS,
	C_PORT_IPACKETS, C_PORT_IMISSED, C_PORT_IERRORS, C_PORT_NOMBUF,
	C_Q0, /* q0_packets, q0_drops, q0_errors, then q1's */
	C_N = C_Q0 + 2 * 3,
};
#define QUEUES_COUNTED 2u
static const char *const counter_names[C_N] = {
	"rx_packets", "rx_bytes", "drops", "errors",
	"port_ipackets", "port_imissed", "port_ierrors", "port_rx_nombuf",
	"q0_packets", "q0_drops", "q0_errors", "q1_packets", "q1_drops", "q1_errors",
};
_Static_assert(C_N <= SPATE_STATS_SOURCE_COUNTERS, "source counters");

static const char *const known_keys[] = {
	"eal", "port", "queues", "cores", "shard_by", "shard", "on_full", "burst",
	"rx_desc", "mbufs", "max_frame", "timestamp", "idle", NULL,
};
static const char *const shard_by_names[] = { "auto", "flow", "fixed", NULL };
static const char *const on_full_names[] = { "drop", "wait", NULL };
static const char *const ts_names[] = { "hw", "tsc", NULL };
static const char *const idle_names[] = { "busy", "yield", "sleep", NULL };
enum { IDLE_BUSY, IDLE_YIELD, IDLE_SLEEP };

struct dpdk_opts {
	const char *eal[48];
	unsigned n_eal;
	const char *port;
	uint64_t queues, shard, burst, rx_desc, mbufs, max_frame;
	int cores[SPATE_DPDK_MAX_QUEUES];
	unsigned n_cores;
	int shard_by, on_full, ts, idle;
};

struct rx_thread {
	struct dpdk_source *src;
	pthread_t th;
	bool started;
	int cpu;
	struct spate_producer *prod;
	struct spate_dpdk_rxq q;
	int err;
	_Alignas(128) struct spate_dpdk_rxq_stats st;
};

struct dpdk_source {
	char name[SPATE_CONFIG_NAME_MAX + 1];
	struct dpdk_opts o;
	struct spate_dpdk_port port;
	bool port_open;
	struct spate_topo *topo;
	struct spate_stats_source_slot *slot;
	_Atomic int stop;
	struct rx_thread rx[SPATE_DPDK_MAX_QUEUES];
	pthread_t stats_th;
	bool stats_started;
};

/* Read and check every key; no side effect. */
static int parse_opts(const struct spate_config_source *src, struct dpdk_opts *o, char *err,
		      size_t errlen)
{
	const struct spate_config_node *k = &src->keys, *n;
	int rc;

	memset(o, 0, sizeof(*o));
	o->queues = 1;
	o->burst = 32;
	if ((rc = spate_config_node_known(src, k, known_keys, err, errlen)) < 0)
		return rc;
	if ((rc = spate_config_node_str(src, k, "port", &o->port, err, errlen)) < 0)
		return rc;
	if (!o->port || !o->port[0])
		return spate_config_node_error(src, NULL, err, errlen,
					       "sources[%u].port: a PCI address (0000:03:00.0) or vdev "
					       "devargs (net_pcap0,rx_pcap=FILE) is required", src->index);
	if ((rc = spate_config_node_u64(src, k, "queues", 1, SPATE_DPDK_MAX_QUEUES, &o->queues, err,
					errlen)) < 0 ||
	    (rc = spate_config_node_u64(src, k, "shard", 0, SPATE_CONFIG_MAX_SHARDS - 1, &o->shard, err,
					errlen)) < 0 ||
	    (rc = spate_config_node_u64(src, k, "burst", 1, SPATE_DPDK_MAX_BURST, &o->burst, err,
					errlen)) < 0 ||
	    (rc = spate_config_node_u64(src, k, "rx_desc", 64, 32768, &o->rx_desc, err, errlen)) < 0 ||
	    (rc = spate_config_node_u64(src, k, "mbufs", 1024, 16u << 20, &o->mbufs, err, errlen)) < 0 ||
	    (rc = spate_config_node_size(src, k, "max_frame", 64, 16384, &o->max_frame, err,
					 errlen)) < 0 ||
	    (rc = spate_config_node_enum(src, k, "shard_by", shard_by_names, &o->shard_by, err,
					 errlen)) < 0 ||
	    (rc = spate_config_node_enum(src, k, "on_full", on_full_names, &o->on_full, err,
					 errlen)) < 0 ||
	    (rc = spate_config_node_enum(src, k, "timestamp", ts_names, &o->ts, err, errlen)) < 0 ||
	    (rc = spate_config_node_enum(src, k, "idle", idle_names, &o->idle, err, errlen)) < 0)
		return rc;
	if (spate_config_source_key(src, "shard") && o->shard_by != SPATE_DPDK_SHARD_FIXED)
		return spate_config_node_error(src, spate_config_source_key(src, "shard"), err, errlen,
					       "a fixed shard goes with shard_by: fixed");
	if ((n = spate_config_source_key(src, "eal"))) {
		if (n->kind != SPATE_CONFIG_NODE_LIST)
			return spate_config_node_error(src, n, err, errlen,
						       "a list of EAL arguments, e.g. [--no-huge, -m, 256]");
		if (n->n_items > 48)
			return spate_config_node_error(src, n, err, errlen, "at most 48 arguments");
		for (uint32_t i = 0; i < n->n_items; i++) {
			if (n->items[i].kind != SPATE_CONFIG_NODE_SCALAR || !n->items[i].value[0])
				return spate_config_node_error(src, &n->items[i], err, errlen,
							       "an EAL argument (a string)");
			o->eal[o->n_eal++] = n->items[i].value;
		}
	}
	if ((n = spate_config_source_key(src, "cores"))) {
		if (n->kind != SPATE_CONFIG_NODE_LIST || n->n_items != o->queues)
			return spate_config_node_error(src, n, err, errlen,
						       "a list of %" PRIu64 " CPU number(s), one per queue",
						       o->queues);
		for (uint32_t i = 0; i < n->n_items; i++) {
			char *end;
			const char *v = n->items[i].value;
			long c = v ? strtol(v, &end, 10) : -1;
			if (!v || !v[0] || *end || c < 0 || c >= (long)SPATE_CONFIG_MAX_CPUS)
				return spate_config_node_error(src, &n->items[i], err, errlen,
							       "a CPU number below %u", SPATE_CONFIG_MAX_CPUS);
			o->cores[o->n_cores++] = (int)c;
		}
	}
	return 0;
}

static int dpdk_check(const struct spate_config_source *src, char *err, size_t errlen)
{
	struct dpdk_opts o;
	return parse_opts(src, &o, err, errlen);
}

/* CPUs for the RX threads: `cores:`, else the process's CPUs that no
 * busy-polling worker of the engine's plan holds, last ones first (workers
 * are dealt from the first). */
static void place(struct spate_engine *e, struct dpdk_source *s, bool *shared)
{
	char plan[8192];
	bool busy[1024] = { false };
	int cpus[1024];
	unsigned n = 0;

	*shared = false;
	if (s->o.n_cores) {
		for (unsigned q = 0; q < s->o.queues; q++)
			s->rx[q].cpu = s->o.cores[q];
		return;
	}
	spate_engine_describe(e, plan, sizeof(plan));
	for (const char *l = plan; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		int cpu;
		char wait[16];
		if (sscanf(l, " worker %*u -> cpu %d (%15[a-z])", &cpu, wait) == 2 && cpu >= 0 &&
		    cpu < 1024 && !strcmp(wait, "busy"))
			busy[cpu] = true;
	}
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		for (int c = 1023; c >= 0; c--)
			if (c < CPU_SETSIZE && CPU_ISSET(c, &set) && !busy[c])
				cpus[n++] = c;
	for (unsigned q = 0; q < s->o.queues; q++) {
		if (n) {
			s->rx[q].cpu = cpus[q % n];
			*shared |= q >= n;
		} else {
			s->rx[q].cpu = -1; /* every CPU polls already: unpinned */
			*shared = true;
		}
	}
}

static void nap(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
	nanosleep(&ts, NULL);
}

static void *rx_main(void *arg)
{
	struct rx_thread *t = arg;
	struct dpdk_source *s = t->src;
	unsigned empty = 0;

	if (t->cpu >= 0 && s->topo)
		spate_topo_pin_self(s->topo, t->cpu);
	rte_thread_register(); /* an lcore id: the mempool's per-core cache */
	/* Relaxed: a stop request; nothing is read on the strength of it. */
	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		int k = spate_dpdk_rxq_poll(&t->q);
		if (k < 0) {
			t->err = k;
			spate_slog(SPATE_LOG_ERROR, NULL, "source %s: RX queue %u stops: %s", s->name,
				   t->q.queue, strerror(-k));
			spate_stats_source_error(s->slot, "RX queue %u: %s", t->q.queue, strerror(-k));
			spate_stats_source_state(s->slot, SPATE_STATS_SOURCE_FAILED);
			break;
		}
		if (k) {
			empty = 0;
			continue;
		}
		empty++;
		if (s->o.idle == IDLE_BUSY || empty < 64)
			continue;
		if (s->o.idle == IDLE_YIELD)
			sched_yield();
		else
			nap(empty < 1024 ? 20000 : 200000);
	}
	rte_thread_unregister();
	return NULL;
}

static uint64_t ld(const _Atomic uint64_t *c)
{
	/* Relaxed: a figure written by one RX thread, read for display. */
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Copy the queues' counters and the port's into the slot. */
static void stats_update(struct dpdk_source *s)
{
	uint64_t v[C_N] = { 0 };
	if (!s->slot)
		return;
	for (unsigned q = 0; q < s->o.queues; q++) {
		const struct spate_dpdk_rxq_stats *st = &s->rx[q].st;
		v[C_PACKETS] += ld(&st->packets);
		v[C_BYTES] += ld(&st->bytes);
		v[C_DROPS] += ld(&st->drops);
		v[C_ERRORS] += ld(&st->errors);
		if (q < QUEUES_COUNTED) {
			v[C_Q0 + 3 * q] = ld(&st->packets);
			v[C_Q0 + 3 * q + 1] = ld(&st->drops);
			v[C_Q0 + 3 * q + 2] = ld(&st->errors);
		}
	}
	struct spate_dpdk_port_stats ps;
	if (spate_dpdk_port_stats(s->port.port, &ps) == 0) {
		v[C_PORT_IPACKETS] = ps.ipackets;
		v[C_PORT_IMISSED] = ps.imissed;
		v[C_PORT_IERRORS] = ps.ierrors;
		v[C_PORT_NOMBUF] = ps.rx_nombuf;
	}
	for (unsigned i = 0; i < C_N; i++)
		spate_stats_source_set(s->slot, i, v[i]);
}

static void *stats_main(void *arg)
{
	struct dpdk_source *s = arg;
	/* Relaxed: a stop request. */
	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		stats_update(s);
		nap(100 * 1000 * 1000);
	}
	return NULL;
}

static void dpdk_stop(void *state)
{
	struct dpdk_source *s = state;
	if (!s)
		return;
	/* Relaxed: the joins below order everything after it. */
	atomic_store_explicit(&s->stop, 1, memory_order_relaxed);
	for (unsigned q = 0; q < s->o.queues; q++)
		if (s->rx[q].started)
			pthread_join(s->rx[q].th, NULL);
	if (s->stats_started)
		pthread_join(s->stats_th, NULL);
	if (s->port_open) {
		stats_update(s);
		for (unsigned q = 0; q < s->o.queues; q++) {
			const struct spate_dpdk_rxq_stats *st = &s->rx[q].st;
			spate_slog(SPATE_LOG_INFO, NULL, "source %s: queue %u: %" PRIu64 " packets, %" PRIu64
				   " bytes, %" PRIu64 " dropped (stream full), %" PRIu64 " errors, %" PRIu64
				   " truncated, %" PRIu64 " waits for room", s->name, q, ld(&st->packets),
				   ld(&st->bytes), ld(&st->drops), ld(&st->errors), ld(&st->truncated),
				   ld(&st->full_waits));
		}
		spate_dpdk_port_close(&s->port);
	}
	for (unsigned q = 0; q < s->o.queues; q++) {
		free(s->rx[q].q.w);
		spate_producer_close(s->rx[q].prod);
	}
	if (s->slot)
		spate_stats_source_state(s->slot, SPATE_STATS_SOURCE_STOPPED);
	spate_topo_close(s->topo);
	free(s);
}

static int dpdk_start(struct spate_engine *e, const struct spate_config_source *src, void **state,
		      char *err, size_t errlen)
{
	struct dpdk_source *s = calloc(1, sizeof(*s));
	char eal_desc[256];
	int rc;

	if (!s)
		return -ENOMEM;
	snprintf(s->name, sizeof(s->name), "%s", src->name);
	if ((rc = parse_opts(src, &s->o, err, errlen)) < 0)
		goto err;
	s->slot = spate_engine_source_stats(e, src->name);
	if (!s->slot) {
		snprintf(err, errlen, "source %s: no counters slot", src->name);
		rc = -ENOENT;
		goto err;
	}
	for (unsigned i = 0; i < C_N; i++)
		spate_stats_source_counter(s->slot, i, counter_names[i]);
	spate_stats_source_state(s->slot, SPATE_STATS_SOURCE_STARTING);

	struct spate_stream *st = spate_engine_stream(e, src->stream);
	if (!st) {
		rc = spate_config_node_error(src, NULL, err, errlen, "sources[%u].stream: no stream %s",
					     src->index, src->stream);
		goto err;
	}
	uint32_t nshards = spate_stream_shards(st);
	struct spate_ring *r0 = spate_stream_ring(st, 0);
	if (s->o.shard_by == SPATE_DPDK_SHARD_FIXED && s->o.shard >= nshards) {
		rc = spate_config_node_error(src, spate_config_source_key(src, "shard"), err, errlen,
					     "stream %s has %u shard(s)", src->stream, nshards);
		goto err;
	}
	if (s->o.queues > 1 && !(r0->flags & SPATE_RING_F_MULTI_WRITER)) {
		rc = spate_config_node_error(src, spate_config_source_key(src, "queues"), err, errlen,
					     "%" PRIu64 " queues append to stream %s with a producer "
					     "each: it needs producers: multi", s->o.queues, src->stream);
		goto err;
	}
	bool pci = spate_dpdk_is_pci(s->o.port);
	bool mp = !strncmp(s->o.port, "net_memif", 9);
	rc = spate_dpdk_eal_init(s->o.eal, s->o.n_eal, pci, mp, eal_desc, sizeof(eal_desc), err, errlen);
	if (rc < 0)
		goto err;
	struct spate_dpdk_port_cfg pc = {
		.dev = s->o.port,
		.queues = (uint16_t)s->o.queues,
		.rx_desc = (uint16_t)s->o.rx_desc,
		.mbufs = (uint32_t)s->o.mbufs,
		.max_frame = (uint32_t)(s->o.max_frame ? s->o.max_frame : 0),
		.hw_timestamp = s->o.ts == 0,
	};
	rc = spate_dpdk_port_open(&pc, &s->port, err, errlen);
	if (rc < 0)
		goto err;
	s->port_open = true;
	if (spate_topo_open(&s->topo) < 0)
		s->topo = NULL;
	bool shared;
	place(e, s, &shared);

	char cpus[128];
	size_t off = 0;
	for (unsigned q = 0; q < s->o.queues; q++) {
		struct rx_thread *t = &s->rx[q];
		t->src = s;
		rc = spate_producer_open(st, SPATE_RING_WAIT_YIELD, SPATE_PRODUCER_F_FAIL_FULL, &t->prod);
		if (rc < 0) {
			snprintf(err, errlen, "source %s: producer on stream %s: %s", src->name, src->stream,
				 strerror(-rc));
			goto err;
		}
		rc = spate_dpdk_rxq_init(&t->q, &s->port, (uint16_t)q, t->prod, nshards,
					 spate_ring_max_record(r0), spate_ring_capacity(r0), &t->st,
					 &s->stop);
		if (rc < 0) {
			snprintf(err, errlen, "source %s: queue %u: %s", src->name, q, strerror(-rc));
			goto err;
		}
		t->q.burst = (uint16_t)s->o.burst;
		t->q.shard_by = (enum spate_dpdk_shard_by)s->o.shard_by;
		t->q.fixed_shard = (uint32_t)s->o.shard;
		t->q.on_full = (enum spate_dpdk_on_full)s->o.on_full;
		if (off < sizeof(cpus))
			off += (size_t)snprintf(cpus + off, sizeof(cpus) - off, "%s%d", q ? "," : "", t->cpu);
	}
	for (unsigned q = 0; q < s->o.queues; q++) {
		rc = -pthread_create(&s->rx[q].th, NULL, rx_main, &s->rx[q]);
		if (rc < 0) {
			snprintf(err, errlen, "source %s: RX thread: %s", src->name, strerror(-rc));
			goto err;
		}
		s->rx[q].started = true;
	}
	rc = -pthread_create(&s->stats_th, NULL, stats_main, s);
	if (rc < 0) {
		snprintf(err, errlen, "source %s: statistics thread: %s", src->name, strerror(-rc));
		goto err;
	}
	s->stats_started = true;
	spate_stats_source_state(s->slot, SPATE_STATS_SOURCE_UP);
	spate_slog(SPATE_LOG_INFO, NULL,
		   "source %s: dpdk port %s (%s, port %u) -> stream %s: %" PRIu64 " RX queue(s) on cpu %s%s; "
		   "shard by %s, on full %s, RSS %s, timestamps %s; EAL %s%s",
		   src->name, s->o.port, s->port.driver, s->port.port, src->stream, s->o.queues, cpus,
		   shared ? " (shared with busy-polling workers: the plan has no free CPU)" : "",
		   shard_by_names[s->o.shard_by], on_full_names[s->o.on_full], s->port.rss ? "on" : "off",
		   s->port.hw_ts ? "hardware" : "TSC", eal_desc,
		   s->port.stale ? "; frames of other interfaces queued before the socket was bound, "
				   "dropped" : "");
	*state = s;
	return 0;
err:
	if (s->slot) {
		spate_stats_source_error(s->slot, "%s", err);
		spate_stats_source_state(s->slot, SPATE_STATS_SOURCE_FAILED);
		s->slot = NULL; /* stop() would mark it stopped */
	}
	dpdk_stop(s);
	return rc < 0 ? rc : -EIO;
}

const struct spate_source_type spate_dpdk_source_type = {
	.struct_size = sizeof(struct spate_source_type),
	.name = "dpdk",
	.check = dpdk_check,
	.start = dpdk_start,
	.stop = dpdk_stop,
};
