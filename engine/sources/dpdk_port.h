/* SPDX-License-Identifier: MIT */
/*
 * Internal (never installed): DPDK's EAL, started once per process, and
 * ethdev ports opened for receiving (engine/sources/dpdk_port.c). Used by
 * the `type: dpdk` source, `spate bench ingress`, the pcapng writer
 * (`spate log export --pcapng`, plugins/pcapng.c).
 *
 * Threads: every function takes a process-wide lock; call them from control
 * threads, never from a receive loop.
 */
#ifndef SPATE_DPDK_PORT_H
#define SPATE_DPDK_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Most RX queues of one port (one per RX thread). */
#define SPATE_DPDK_MAX_QUEUES 16u

/**
 * Start the EAL if this process has not yet. @p args (@p n of them; argv[0]
 * is supplied) replace the defaults: with 256 MiB of huge pages free
 * (HugePages_Free in /proc/meminfo), `--in-memory`; else `--no-huge -m 256
 * --no-shconf`;
 * both with `--no-pci` unless @p pci is true, `--no-telemetry` and a quiet
 * log level. @p mp (net_memif needs DPDK's multi-process channel, which
 * --in-memory and --no-shconf turn off): `--file-prefix=spate-PID` instead,
 * with `--huge-unlink` when huge pages are used. A second call (any arguments) returns at once with the first
 * one's description: EAL can be initialised once per process, and a
 * process that started it elsewhere (rte_eal_init() returning EALREADY) is
 * accepted too. The calling thread keeps its CPU affinity (EAL would pin
 * it to its main lcore).
 * @param desc receives "--no-huge --no-shconf -m 256 (no huge pages free)"
 *        or the like: what was used and why (may be NULL).
 * @return 0, or -errno with @p err saying why.
 */
int spate_dpdk_eal_init(const char *const *args, unsigned n, bool pci, bool mp, char *desc,
			size_t desclen, char *err, size_t errlen);

/** Whether @p dev names a PCI device ("0000:03:00.0" or "03:00.0"). */
bool spate_dpdk_is_pci(const char *dev);

struct rte_mempool;

/** What spate_dpdk_port_open() should set up. */
struct spate_dpdk_port_cfg {
	const char *dev;     /**< PCI address, or vdev devargs ("net_pcap0,rx_pcap=x.pcap") */
	uint16_t queues;     /**< RX queues, 1..SPATE_DPDK_MAX_QUEUES */
	uint16_t rx_desc;    /**< descriptors per RX queue (0: 1024) */
	uint32_t mbufs;      /**< mbufs in the pool (0: 8192 per queue) */
	uint32_t max_frame;  /**< largest frame expected (0: 1518); sets the mbuf size */
	bool hw_timestamp;   /**< ask the port for RX timestamps when it offers them */
};

/** An open port. */
struct spate_dpdk_port {
	uint16_t port;        /**< ethdev port id */
	uint16_t queues;
	bool rss;             /**< RSS hashing is on (the mbufs carry the hash) */
	bool hw_ts;           /**< RX timestamps are on (ts_off/ts_flag valid) */
	int ts_off;           /**< mbuf dynamic field of the timestamp */
	uint64_t ts_flag;     /**< mbuf flag saying it is set */
	/* Hardware clock to ns since the epoch: ns = ts_base_ns + (ticks -
	 * ts_base_ticks) * ts_mult >> 32; ts_mult 0: ticks are ns already. */
	uint64_t ts_base_ns, ts_base_ticks, ts_mult;
	struct rte_mempool *pool;
	char name[64];        /**< ethdev name */
	char driver[32];      /**< driver name (net_pcap, net_af_packet, ...) */
	uint64_t stale;       /**< net_af_packet: frames its socket queued before it was
				   bound to the interface, dropped at open */
};

/**
 * Probe the device (hot plug: vdevs and PCI devices need no EAL arguments),
 * configure @p cfg->queues RX queues (RSS with a symmetric key when the port
 * hashes and there are several queues or it offers the hash), one unused TX
 * queue (some ports need one to come up),
 * promiscuous mode, and start it. The EAL must be started.
 * @return 0, or -errno with @p err saying why (nothing left behind).
 */
int spate_dpdk_port_open(const struct spate_dpdk_port_cfg *cfg, struct spate_dpdk_port *out,
			 char *err, size_t errlen);
/** Stop and close the port, remove its device, free its pool. */
void spate_dpdk_port_close(struct spate_dpdk_port *p);

/** The port's own counters (rte_eth_stats), summed and per queue. */
struct spate_dpdk_port_stats {
	uint64_t ipackets, ibytes, imissed, ierrors, rx_nombuf;
	uint64_t q_ipackets[SPATE_DPDK_MAX_QUEUES], q_errors[SPATE_DPDK_MAX_QUEUES];
};
/** Read them. @return 0 or -errno. Any thread. */
int spate_dpdk_port_stats(uint16_t port, struct spate_dpdk_port_stats *st);

#endif
