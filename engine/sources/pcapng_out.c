/* SPDX-License-Identifier: MIT */
/*
 * pcapng_out.c - packet records to a pcapng file through librte_pcapng.
 *
 * Design. librte_pcapng writes the section header and one interface block
 * per ethdev port present when the file is opened, and turns an mbuf into an
 * enhanced packet block (EPB: frame, flags, queue). A record is put into an
 * mbuf of our pool (one copy), rte_pcapng_copy() builds the EPB (a second
 * copy: the export is not a hot path), and we then set the EPB's timestamp
 * to the record's RX time in ns (the interface blocks say ns resolution;
 * rte_pcapng_copy() would take TSC cycles relative to its own time base)
 * and its original length to the wire length. Those fields are the pcapng
 * format's own (EPB offsets 12, 16 and 24), not DPDK internals. Thirty-two
 * EPBs go to the file in one writev (rte_pcapng_write_packets()).
 *
 * Interfaces: with no ethdev port in the process (`spate log export`), a
 * net_null vdev is created so that the file has one interface, and every
 * packet goes to it; in an engine with a dpdk source, a record's port is its
 * interface when that port existed at open.
 *
 * Limits: frames up to 16 KiB; librte_pcapng is experimental in DPDK 22.11.
 */
#include "spate_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_pcapng.h>

#include "engine/sources/dpdk_port.h"
#include "engine/sources/pcapng_out.h"
#include "spate/packet.h"

#define OUT_BURST 32u
#define OUT_MAX_FRAME 16384u

struct spate_pcapng_out {
	int fd;
	rte_pcapng_t *png;
	struct rte_mempool *in_pool, *out_pool;
	struct rte_mbuf *pending[OUT_BURST];
	unsigned npending;
	bool known[RTE_MAX_ETHPORTS]; /* ports with an interface block */
	uint16_t first_port;
	char null_name[64];           /* our net_null vdev, if we made one */
	char comment[256];
	struct spate_pcapng_out_stats st;
	int err;
};

int spate_pcapng_out_open(const char *path, const char *comment, struct spate_pcapng_out **out,
			  char *err, size_t errlen)
{
	struct spate_pcapng_out *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (o->fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(o);
		return rc;
	}
	snprintf(o->comment, sizeof(o->comment), "%s", comment ? comment : "");
	*out = o;
	return 0;
}

/* The EAL, a port if there is none, the pools, the section and interfaces. */
static int start(struct spate_pcapng_out *o, char *err, size_t errlen)
{
	static unsigned serial;
	char desc[256];
	int rc = spate_dpdk_eal_init(NULL, 0, false, false, desc, sizeof(desc), err, errlen);
	if (rc < 0)
		return rc;
	/* Relaxed: a number unique to this writer (names); nothing is published by it. */
	unsigned me = __atomic_fetch_add(&serial, 1, __ATOMIC_RELAXED);
	if (rte_eth_dev_count_avail() == 0) {
		snprintf(o->null_name, sizeof(o->null_name), "net_null_pcapng%d_%u", (int)getpid(), me);
		if ((rc = rte_dev_probe(o->null_name)) < 0) {
			snprintf(err, errlen, "pcapng: interface %s: %s", o->null_name, rte_strerror(-rc));
			o->null_name[0] = '\0';
			return rc;
		}
	}
	uint16_t p;
	bool first = true;
	RTE_ETH_FOREACH_DEV(p) {
		o->known[p] = true;
		if (first)
			o->first_port = p;
		first = false;
	}
	char name[RTE_MEMPOOL_NAMESIZE];
	snprintf(name, sizeof(name), "spng_in%d_%u", (int)getpid() % 100000, me);
	o->in_pool = rte_pktmbuf_pool_create(name, 2 * OUT_BURST + 63, 0, 0,
					     RTE_PKTMBUF_HEADROOM + OUT_MAX_FRAME, (int)rte_socket_id());
	snprintf(name, sizeof(name), "spng_out%d_%u", (int)getpid() % 100000, me);
	o->out_pool = rte_pktmbuf_pool_create(name, 2 * OUT_BURST + 63, 0, 0,
					      RTE_PKTMBUF_HEADROOM + rte_pcapng_mbuf_size(OUT_MAX_FRAME),
					      (int)rte_socket_id());
	if (!o->in_pool || !o->out_pool) {
		snprintf(err, errlen, "pcapng: mbuf pools: %s", rte_strerror(rte_errno));
		return -ENOMEM;
	}
	struct utsname u;
	char os[256] = "Linux";
	if (uname(&u) == 0)
		snprintf(os, sizeof(os), "%s %s", u.sysname, u.release);
	/* The writer takes a descriptor of its own: close() of ours stays ours. */
	int fd = dup(o->fd);
	if (fd < 0)
		return -errno;
	o->png = rte_pcapng_fdopen(fd, os, NULL, "spate " SPATE_VERSION_STRING,
				   o->comment[0] ? o->comment : NULL);
	if (!o->png) {
		close(fd);
		snprintf(err, errlen, "pcapng: header: %s", rte_strerror(rte_errno));
		return -EIO;
	}
	return 0;
}

int spate_pcapng_out_flush(struct spate_pcapng_out *o, char *err, size_t errlen)
{
	if (!o->npending)
		return o->err;
	ssize_t n = rte_pcapng_write_packets(o->png, o->pending, (uint16_t)o->npending);
	rte_pktmbuf_free_bulk(o->pending, o->npending);
	o->npending = 0;
	if (n < 0) {
		o->err = -(rte_errno ? rte_errno : EIO);
		snprintf(err, errlen, "pcapng: write: %s", strerror(-o->err));
		return o->err;
	}
	o->st.bytes += (uint64_t)n;
	return 0;
}

int spate_pcapng_out_write(struct spate_pcapng_out *o, const struct spate_ring_rec *r, char *err,
			   size_t errlen)
{
	struct spate_packet_view v;
	int rc;

	if (o->err)
		return o->err;
	if (spate_packet_view(r, &v) < 0 || v.cap_len > OUT_MAX_FRAME) {
		o->st.skipped++;
		return 0;
	}
	if (!o->png && (rc = start(o, err, errlen)) < 0)
		return o->err = rc;
	struct rte_mbuf *m = rte_pktmbuf_alloc(o->in_pool);
	if (!m) {
		snprintf(err, errlen, "pcapng: no mbuf");
		return -ENOMEM;
	}
	uint8_t *d = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)v.cap_len);
	if (!d && v.cap_len) {
		rte_pktmbuf_free(m);
		o->st.skipped++;
		return 0;
	}
	if (v.cap_len)
		memcpy(d, v.frame, v.cap_len);
	uint16_t port = v.hdr.port < RTE_MAX_ETHPORTS && o->known[v.hdr.port] ? v.hdr.port : o->first_port;
	struct rte_mbuf *mc = rte_pcapng_copy(port, v.hdr.queue, m, o->out_pool, UINT32_MAX, 0,
					      RTE_PCAPNG_DIRECTION_IN);
	rte_pktmbuf_free(m);
	if (!mc) {
		snprintf(err, errlen, "pcapng: copy: %s", rte_strerror(rte_errno));
		return -ENOMEM;
	}
	/* The EPB's timestamp (offsets 12, 16: high and low 32 bits, in the
	 * interface's ns resolution) and original length (offset 24). */
	uint8_t *epb = rte_pktmbuf_mtod(mc, uint8_t *);
	uint32_t hi = (uint32_t)(v.hdr.ts_ns >> 32), lo = (uint32_t)v.hdr.ts_ns;
	uint32_t wire = v.hdr.wire_len > v.cap_len ? v.hdr.wire_len : v.cap_len;
	memcpy(epb + 12, &hi, 4);
	memcpy(epb + 16, &lo, 4);
	memcpy(epb + 24, &wire, 4);
	o->pending[o->npending++] = mc;
	o->st.packets++;
	if (o->npending == OUT_BURST && (rc = spate_pcapng_out_flush(o, err, errlen)) < 0)
		return rc;
	return 1;
}

void spate_pcapng_out_stats(const struct spate_pcapng_out *o, struct spate_pcapng_out_stats *st)
{
	*st = o->st;
}

int spate_pcapng_out_close(struct spate_pcapng_out *o, char *err, size_t errlen)
{
	int rc = 0;

	if (!o)
		return 0;
	if (!o->png && !o->err)
		rc = start(o, err, errlen); /* no packet: still a valid, empty capture */
	if (o->png) {
		int r2 = spate_pcapng_out_flush(o, err, errlen);
		if (r2 < 0 && !rc)
			rc = r2;
		rte_pcapng_close(o->png); /* closes its dup of the descriptor */
	}
	if (close(o->fd) < 0 && !rc) {
		rc = -errno;
		snprintf(err, errlen, "pcapng: close: %s", strerror(errno));
	}
	rte_mempool_free(o->in_pool);
	rte_mempool_free(o->out_pool);
	if (o->null_name[0])
		rte_eal_hotplug_remove("vdev", o->null_name);
	if (!rc && o->err)
		rc = o->err;
	free(o);
	return rc;
}
