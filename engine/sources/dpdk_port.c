/* SPDX-License-Identifier: MIT */
/*
 * dpdk_port.c - DPDK's EAL once per process, and ports opened to receive.
 *
 * Design. The EAL can be initialised once per process, yet several users
 * may want it (a `type: dpdk` source, the pcapng sink plugin, `spate bench
 * ingress`): the first caller starts it with its arguments (or defaults
 * that work with and without huge pages), later callers get its
 * description, and rte_eal_init()'s EALREADY (someone else in the process
 * started it) counts as started. Devices are never EAL arguments: each
 * user hot-plugs its own with rte_dev_probe() (vdevs and PCI alike), so
 * users need not agree on one command line. EAL pins the thread that
 * starts it to its main lcore; we put the thread's affinity back.
 *
 * Ports: one mempool per port, sized for the largest frame; RSS on when
 * there are several queues (with the symmetric Toeplitz key 0x6d5a..., so
 * both directions of a flow get one hash and one queue) or the port offers
 * the hash anyway; hardware RX timestamps when asked and offered, their
 * ticks mapped to ns since the epoch by two rte_eth_read_clock() samples.
 *
 * Limits: the EAL stays up until the process exits (DPDK cannot clean it
 * up and start again); with huge pages the defaults use --in-memory, so
 * nothing is left in hugetlbfs; PCI devices are probed only if the EAL
 * was started without --no-pci (a source naming a PCI port asks for that).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_mempool.h>

#include "engine/sources/dpdk_port.h"

__extension__ typedef unsigned __int128 u128;

static pthread_mutex_t eal_lock = PTHREAD_MUTEX_INITIALIZER;
static int eal_state; /* 0 not started, 1 started (under eal_lock) */
static char eal_desc[256];
static unsigned port_serial; /* mempool names (under eal_lock) */

/* Free huge pages and their size (KiB), from /proc/meminfo. */
static uint64_t huge_pages_free(uint64_t *page_kib)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long long v = 0, kib = 2048, x;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "HugePages_Free: %llu", &x) == 1)
			v = x;
		else if (sscanf(line, "Hugepagesize: %llu kB", &x) == 1)
			kib = x;
	}
	fclose(f);
	*page_kib = kib;
	return v;
}

bool spate_dpdk_is_pci(const char *dev)
{
	unsigned a, b, c, d;
	char tail;

	if (sscanf(dev, "%x:%x:%x.%x%c", &a, &b, &c, &d, &tail) == 4)
		return true;
	return sscanf(dev, "%x:%x.%x%c", &b, &c, &d, &tail) == 3;
}

int spate_dpdk_eal_init(const char *const *args, unsigned n, bool pci, bool mp, char *desc, size_t desclen,
			char *err, size_t errlen)
{
	const char *argv[64];
	unsigned argc = 0;
	int rc = 0;

	pthread_mutex_lock(&eal_lock);
	if (eal_state)
		goto out;
	if (rte_lcore_count() > 0) {
		/* Another copy of this file (a plugin's) or the program started it. */
		snprintf(eal_desc, sizeof(eal_desc), "started elsewhere in this process");
		eal_state = 1;
		goto out;
	}
	if (n > 48) {
		snprintf(err, errlen, "eal: %u arguments, at most 48", n);
		rc = -E2BIG;
		goto out;
	}
	argv[argc++] = "spate";
	size_t off = 0;
	if (n) {
		for (unsigned i = 0; i < n; i++) {
			argv[argc++] = args[i];
			off += (size_t)snprintf(eal_desc + off, off < sizeof(eal_desc) ? sizeof(eal_desc) - off : 0,
						"%s%s", i ? " " : "", args[i]);
		}
		if (off < sizeof(eal_desc))
			snprintf(eal_desc + off, sizeof(eal_desc) - off, " (as configured)");
	} else {
		uint64_t page_kib, free_pages = huge_pages_free(&page_kib);
		/* Huge pages only when there are enough of them (256 MiB): a
		 * machine whose pages other programs took would fail our pools. */
		if (free_pages * page_kib < 256u * 1024u)
			free_pages = 0;
		static char prefix[48];
		snprintf(prefix, sizeof(prefix), "--file-prefix=spate-%d", (int)getpid());
		if (free_pages && !mp) {
			argv[argc++] = "--in-memory";
			snprintf(eal_desc, sizeof(eal_desc), "--in-memory (%" PRIu64 " huge pages free)",
				 free_pages);
		} else if (free_pages) {
			argv[argc++] = prefix;
			argv[argc++] = "--huge-unlink";
			snprintf(eal_desc, sizeof(eal_desc), "%s --huge-unlink (%" PRIu64 " huge pages "
				 "free; multi-process channel for memif)", prefix, free_pages);
		} else {
			argv[argc++] = "--no-huge";
			argv[argc++] = "-m";
			argv[argc++] = "256";
			argv[argc++] = mp ? prefix : "--no-shconf";
			snprintf(eal_desc, sizeof(eal_desc), "--no-huge -m 256 %s (under 256 MiB of huge pages free%s)",
				 argv[argc - 1], mp ? "; multi-process channel for memif" : "");
		}
		if (!pci)
			argv[argc++] = "--no-pci";
		argv[argc++] = "--no-telemetry";
		argv[argc++] = "--log-level=4";
	}
	argv[argc] = NULL;

	cpu_set_t set;
	int have_set = pthread_getaffinity_np(pthread_self(), sizeof(set), &set) == 0;
	/* rte_eal_init() takes char **, and does not write the strings. */
	int r = rte_eal_init((int)argc, (char **)(uintptr_t)argv);
	if (have_set)
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (r < 0 && rte_errno == EALREADY) {
		snprintf(eal_desc, sizeof(eal_desc), "started elsewhere in this process");
	} else if (r < 0) {
		rc = -(rte_errno ? rte_errno : EINVAL);
		snprintf(err, errlen, "eal: rte_eal_init(%s) failed: %s", eal_desc, rte_strerror(rte_errno));
		goto out;
	}
	eal_state = 1;
out:
	if (rc == 0 && desc)
		snprintf(desc, desclen, "%s", eal_desc);
	pthread_mutex_unlock(&eal_lock);
	return rc;
}

/* The ethdev name of @p dev: a vdev's name is what precedes the first
 * comma; a PCI device's is its address as the bus spells it. */
static void dev_name(const char *dev, char *name, size_t len)
{
	size_t k = strcspn(dev, ",");
	if (k >= len)
		k = len - 1;
	memcpy(name, dev, k);
	name[k] = '\0';
}

static uint64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Hardware RX timestamps in ns since the epoch: two samples of the port's
 * clock 10 ms apart give its rate. A clock that cannot be read is taken as
 * counting ns since the epoch already (ts_mult 0). */
static void hw_clock_calibrate(struct spate_dpdk_port *p)
{
	uint64_t c0, c1;
	if (rte_eth_read_clock(p->port, &c0) < 0)
		return;
	uint64_t t0 = real_ns();
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	if (rte_eth_read_clock(p->port, &c1) < 0 || c1 <= c0)
		return;
	uint64_t t1 = real_ns();
	p->ts_mult = (uint64_t)(((u128)(t1 - t0) << 32) / (c1 - c0));
	p->ts_base_ns = t1;
	p->ts_base_ticks = c1;
}

static const uint8_t symmetric_key[40] = {
	0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
	0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
	0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
};

int spate_dpdk_port_open(const struct spate_dpdk_port_cfg *cfg, struct spate_dpdk_port *out,
			 char *err, size_t errlen)
{
	struct rte_eth_dev_info di;
	struct rte_eth_conf conf;
	bool probed = false;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!cfg->dev || !cfg->dev[0] || cfg->queues < 1 || cfg->queues > SPATE_DPDK_MAX_QUEUES) {
		snprintf(err, errlen, "port: a device and 1..%u queues are needed", SPATE_DPDK_MAX_QUEUES);
		return -EINVAL;
	}
	dev_name(cfg->dev, out->name, sizeof(out->name));
	pthread_mutex_lock(&eal_lock);
	unsigned serial = port_serial++;
	pthread_mutex_unlock(&eal_lock);

	uint16_t pid;
	if (rte_eth_dev_get_port_by_name(out->name, &pid) != 0) {
		rc = rte_dev_probe(cfg->dev);
		if (rc < 0) {
			snprintf(err, errlen, "port %s: probe failed: %s%s", cfg->dev, rte_strerror(-rc),
				 spate_dpdk_is_pci(cfg->dev) ? " (a PCI device must be bound to vfio-pci or "
				 "uio, and the EAL started without --no-pci)" : "");
			return rc;
		}
		probed = true;
		if (rte_eth_dev_get_port_by_name(out->name, &pid) != 0) {
			snprintf(err, errlen, "port %s: probed, but no ethdev is named %s", cfg->dev, out->name);
			rc = -ENODEV;
			goto err_probe;
		}
	}
	out->port = pid;
	out->queues = cfg->queues;
	rc = rte_eth_dev_info_get(pid, &di);
	if (rc < 0) {
		snprintf(err, errlen, "port %s: info: %s", cfg->dev, rte_strerror(-rc));
		goto err_probe;
	}
	snprintf(out->driver, sizeof(out->driver), "%s", di.driver_name ? di.driver_name : "?");
	if (cfg->queues > di.max_rx_queues) {
		snprintf(err, errlen, "port %s (%s): %u RX queues asked, the port has %u", cfg->dev,
			 out->driver, cfg->queues, di.max_rx_queues);
		rc = -EINVAL;
		goto err_probe;
	}

	uint32_t frame = cfg->max_frame ? cfg->max_frame : 1518;
	uint32_t room = frame + RTE_PKTMBUF_HEADROOM;
	if (room < RTE_MBUF_DEFAULT_BUF_SIZE)
		room = RTE_MBUF_DEFAULT_BUF_SIZE;
	if (room > UINT16_MAX)
		room = UINT16_MAX;
	uint16_t desc = cfg->rx_desc ? cfg->rx_desc : 1024;
	uint32_t nmbufs = cfg->mbufs ? cfg->mbufs : 8192u * cfg->queues;
	if (nmbufs < (uint32_t)desc * cfg->queues + 1024)
		nmbufs = (uint32_t)desc * cfg->queues + 1024;
	char pname[RTE_MEMPOOL_NAMESIZE];
	snprintf(pname, sizeof(pname), "spate_rx%u", serial);
	out->pool = rte_pktmbuf_pool_create(pname, nmbufs, 256, 0, (uint16_t)room, (int)rte_socket_id());
	if (!out->pool) {
		snprintf(err, errlen, "port %s: mbuf pool of %u x %u bytes: %s", cfg->dev, nmbufs, room,
			 rte_strerror(rte_errno));
		rc = -ENOMEM;
		goto err_probe;
	}

	memset(&conf, 0, sizeof(conf));
	uint64_t rss_hf = di.flow_type_rss_offloads &
			  (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_SCTP);
	if (rss_hf && (cfg->queues > 1 || (di.rx_offload_capa & RTE_ETH_RX_OFFLOAD_RSS_HASH))) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
		if (di.hash_key_size == sizeof(symmetric_key)) {
			conf.rx_adv_conf.rss_conf.rss_key = (uint8_t *)(uintptr_t)symmetric_key;
			conf.rx_adv_conf.rss_conf.rss_key_len = sizeof(symmetric_key);
		}
		if (di.rx_offload_capa & RTE_ETH_RX_OFFLOAD_RSS_HASH)
			conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_RSS_HASH;
		out->rss = true;
	}
	if (cfg->hw_timestamp && (di.rx_offload_capa & RTE_ETH_RX_OFFLOAD_TIMESTAMP)) {
		if (rte_mbuf_dyn_rx_timestamp_register(&out->ts_off, &out->ts_flag) == 0) {
			conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_TIMESTAMP;
			out->hw_ts = true;
		}
	}
	if (frame > 1518 && (di.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER) &&
	    room < frame + RTE_PKTMBUF_HEADROOM)
		conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
	/* One TX queue where the port has one: some ports (net_memif) match
	 * their rings with the peer's and refuse a port without. Never used. */
	uint16_t ntx = di.max_tx_queues ? 1 : 0;
	rc = rte_eth_dev_configure(pid, cfg->queues, ntx, &conf);
	if (rc < 0) {
		snprintf(err, errlen, "port %s (%s): configure %u RX queue(s): %s", cfg->dev, out->driver,
			 cfg->queues, rte_strerror(-rc));
		goto err_pool;
	}
	for (uint16_t q = 0; q < cfg->queues; q++) {
		rc = rte_eth_rx_queue_setup(pid, q, desc, rte_eth_dev_socket_id(pid), NULL, out->pool);
		if (rc < 0) {
			snprintf(err, errlen, "port %s (%s): RX queue %u: %s", cfg->dev, out->driver, q,
				 rte_strerror(-rc));
			goto err_pool;
		}
	}
	if (ntx && (rc = rte_eth_tx_queue_setup(pid, 0, 512, rte_eth_dev_socket_id(pid), NULL)) < 0) {
		snprintf(err, errlen, "port %s (%s): TX queue: %s", cfg->dev, out->driver, rte_strerror(-rc));
		goto err_pool;
	}
	rc = rte_eth_dev_start(pid);
	if (rc < 0) {
		snprintf(err, errlen, "port %s (%s): start: %s", cfg->dev, out->driver, rte_strerror(-rc));
		goto err_pool;
	}
	rte_eth_promiscuous_enable(pid); /* not every port can; receiving works anyway */
	if (!strcmp(out->driver, "net_af_packet")) {
		/* The PMD's packet socket exists before it is bound to its
		 * interface: frames of every interface (loopback traffic, other
		 * ports) can sit in its ring from that moment. They were never
		 * received on this port: drop them once, before anyone polls. */
		struct rte_mbuf *m[32];
		for (uint16_t q = 0; q < cfg->queues; q++) {
			uint16_t k;
			while ((k = rte_eth_rx_burst(pid, q, m, 32)) > 0) {
				out->stale += k;
				rte_pktmbuf_free_bulk(m, k);
			}
		}
	}
	if (out->hw_ts)
		hw_clock_calibrate(out);
	rte_eth_stats_reset(pid);
	return 0;

err_pool:
	rte_mempool_free(out->pool);
	out->pool = NULL;
err_probe:
	if (probed)
		rte_eal_hotplug_remove(spate_dpdk_is_pci(cfg->dev) ? "pci" : "vdev", out->name);
	return rc < 0 ? rc : -EIO;
}

void spate_dpdk_port_close(struct spate_dpdk_port *p)
{
	if (!p->pool)
		return;
	struct rte_eth_dev_info di;
	rte_eth_dev_stop(p->port);
	struct rte_device *dev = rte_eth_dev_info_get(p->port, &di) == 0 ? di.device : NULL;
	rte_eth_dev_close(p->port);
	if (dev)
		rte_dev_remove(dev);
	rte_mempool_free(p->pool);
	p->pool = NULL;
}

int spate_dpdk_port_stats(uint16_t port, struct spate_dpdk_port_stats *st)
{
	struct rte_eth_stats s;
	int rc = rte_eth_stats_get(port, &s);

	memset(st, 0, sizeof(*st));
	if (rc < 0)
		return rc;
	st->ipackets = s.ipackets;
	st->ibytes = s.ibytes;
	st->imissed = s.imissed;
	st->ierrors = s.ierrors;
	st->rx_nombuf = s.rx_nombuf;
	for (unsigned q = 0; q < SPATE_DPDK_MAX_QUEUES && q < RTE_ETHDEV_QUEUE_STAT_CNTRS; q++) {
		st->q_ipackets[q] = s.q_ipackets[q];
		st->q_errors[q] = s.q_errors[q];
	}
	return 0;
}
