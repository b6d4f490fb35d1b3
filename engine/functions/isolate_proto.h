/* SPDX-License-Identifier: MIT */
/*
 * isolate_proto.h - what the engine (isolate.c) and an isolated plugin's
 * child (isolate_host.c, the spate-isolate program) exchange. Internal to
 * the functions door; both sides are built from one tree, so the version
 * is checked for equality.
 *
 * Two channels per task (one (consumer, shard, lane), one child):
 *   - the control socket (AF_UNIX SOCK_SEQPACKET, fd 3 in the child): one
 *     small message per step, struct spate_iso_msg, INIT carrying the
 *     control area's memfd (SCM_RIGHTS) and the parameters after it;
 *   - the control area (a memfd both map shared): struct spate_iso_ctl,
 *     then `cap` record descriptors, then the spill area.
 * The stream's region itself is mapped by the child READ-ONLY (its file,
 * spate_shm_path()), so a descriptor names a record by its payload's
 * offset in that file: the child's view points into its own mapping, no
 * payload is copied. Records the engine reads from the shard log (catch-up)
 * are not in the ring: their payloads are copied into the spill area and
 * their offsets flagged SPATE_ISO_SPILL.
 *
 * Ordering: the engine writes descriptors, then sends BATCH; the child
 * writes the result, then sends RESULT. send/recv on the socket order
 * those plain stores for the other process (the kernel's socket queue is
 * the release/acquire pair; each side reads only after its recv returned).
 */
#ifndef SPATE_FN_ISOLATE_PROTO_H
#define SPATE_FN_ISOLATE_PROTO_H

#include <stdint.h>

#define SPATE_ISO_VERSION 1u
#define SPATE_ISO_MAGIC 0x4f534953u /* "SISO" */
/** Offset flag: the payload is in the spill area (at offset & ~flag). */
#define SPATE_ISO_SPILL (1ull << 63)
/** Where the record descriptors start in the control area. */
#define SPATE_ISO_RECS_OFF 4096u

enum spate_iso_type {
	SPATE_ISO_INIT = 1,   /**< engine -> child: memfd + parameters; load, init */
	SPATE_ISO_HELLO = 2,  /**< child -> engine: rc of load + init, error text in ctl */
	SPATE_ISO_BATCH = 3,  /**< engine -> child: ctl->count descriptors ready */
	SPATE_ISO_RESULT = 4, /**< child -> engine: the result in ctl */
	SPATE_ISO_FLUSH = 5,  /**< engine -> child: flush (drain); answered by RESULT */
	SPATE_ISO_FINI = 6,   /**< engine -> child: fini, unload; answered by RESULT */
};

/** One message on the control socket. */
struct spate_iso_msg {
	uint32_t magic;   /**< SPATE_ISO_MAGIC */
	uint32_t type;    /**< enum spate_iso_type */
	uint64_t seq;     /**< the engine's step number, echoed back */
	int32_t rc;       /**< HELLO, RESULT: 0 or -errno */
	uint32_t len;     /**< INIT: bytes of struct spate_iso_init + strings after this */
};

/** INIT's parameters (after the message, then the strings). */
struct spate_iso_init {
	uint32_t version;       /**< SPATE_ISO_VERSION */
	uint32_t shard, lane, cap;
	uint64_t region_size;   /**< bytes of the stream's region file to map */
	uint64_t ctl_size;      /**< bytes of the control area */
	uint64_t spill_off, spill_size;
	uint32_t n_opts;
	uint32_t strings;       /**< bytes of strings after this struct */
	/* Strings, NUL-terminated, in order: plugin path, bus, stream,
	 * consumer, region file, then n_opts key/value pairs. */
};

/** The control area's head. */
struct spate_iso_ctl {
	uint32_t magic, version;
	/* Batch (the engine's). */
	uint32_t count, attempt, shard, lane;
	/* Result (the child's). */
	int32_t rc;
	uint32_t status;        /**< enum spate_batch_status */
	uint32_t failed_index;
	uint32_t pad_;
	char error[200];
	/* HELLO (the child's): the plugin's name and version. */
	char plugin_name[64];
	char plugin_version[32];
};

/** One record descriptor. */
struct spate_iso_rec {
	uint64_t off;      /**< payload offset in the region file, or SPATE_ISO_SPILL | spill offset */
	uint64_t seq, ts;
	uint32_t len, key_hash;
	uint8_t type;
	uint8_t pad_[7];
};

_Static_assert(sizeof(struct spate_iso_ctl) <= SPATE_ISO_RECS_OFF, "ctl head fits its page");
_Static_assert(sizeof(struct spate_iso_rec) == 40, "record descriptor");

#endif
