/* SPDX-License-Identifier: MIT */
/*
 * Internal (never installed): packet records (spate/packet.h) written to a
 * pcapng file with DPDK's librte_pcapng (engine/sources/pcapng_out.c), for
 * `spate log export --pcapng` and plugins/pcapng.c.
 *
 * Threads: a writer belongs to one thread at a time.
 */
#ifndef SPATE_PCAPNG_OUT_H
#define SPATE_PCAPNG_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "spate/record.h"

struct spate_pcapng_out;

/** Figures of a writer. */
struct spate_pcapng_out_stats {
	uint64_t packets;  /**< packet records written */
	uint64_t skipped;  /**< records of other types, or malformed packet records */
	uint64_t bytes;    /**< file bytes written */
};

/**
 * Create (truncate) @p path (mode 0640). The EAL and the pcapng section
 * are set up at the first packet (so an engine's dpdk source, started
 * after its consumers, chooses the EAL's arguments), or at close if none
 * came (an empty but valid capture).
 * @return 0, or -errno with @p err saying why.
 */
int spate_pcapng_out_open(const char *path, const char *comment, struct spate_pcapng_out **out,
			  char *err, size_t errlen);
/**
 * Write record @p r if it is a packet record: its frame, RX time (ns), the
 * wire length, and its queue (EPB options); its port is the interface when
 * that port exists in this process, else the capture's first interface.
 * Buffered: up to 32 records before a write(2).
 * @return 1 (written), 0 (not a packet record: skipped, counted), -errno
 *         (@p err says why).
 */
int spate_pcapng_out_write(struct spate_pcapng_out *o, const struct spate_ring_rec *r, char *err,
			   size_t errlen);
/** Write what is buffered. @return 0 or -errno. */
int spate_pcapng_out_flush(struct spate_pcapng_out *o, char *err, size_t errlen);
/** Its figures. */
void spate_pcapng_out_stats(const struct spate_pcapng_out *o, struct spate_pcapng_out_stats *st);
/** Flush, close the file, free everything. @return 0 or the -errno of the
 *  last write or of close(2). NULL-safe. */
int spate_pcapng_out_close(struct spate_pcapng_out *o, char *err, size_t errlen);

#endif
