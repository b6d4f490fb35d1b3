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
 *     then two descriptor areas of `cap` record descriptors each (the
 *     batch in the child, and the next one the engine prepares meanwhile:
 *     a pipelined hand-over, handed over only after the child answered the
 *     one before), then the spill area.
 * The stream's region itself is mapped by the child READ-ONLY (its file,
 * spate_shm_path()), and a descriptor is the engine's own record view
 * (struct spate_ring_rec's layout): the payload's address in the engine's
 * mapping of the region. The child maps the region and the control area
 * at the engine's addresses where its address space has them free
 * (MAP_FIXED_NOREPLACE): then the descriptors ARE its batch's views, no
 * pass over them, no payload copied; elsewhere it translates each address
 * into its own mappings (checked against both). Records the engine reads
 * from the shard log (catch-up) are not in the ring: their payloads are
 * copied into the spill area, and their addresses are the engine's of the
 * copy.
 *
 * Steps after INIT (BATCH, FLUSH, FINI) go through a doorbell in the
 * control area, not through the socket: a round trip through the socket
 * costs two wake-ups of a sleeping process (tens of microseconds on a
 * virtual machine's idle vCPU), more than a batch of 1,000 records takes
 * to process. The engine writes the step (descriptors, req_type), then
 * stores req_seq (release); the child, spinning on req_seq for a while
 * after each step (SPATE_ISO_SPIN_NS), loads it (acquire), runs the step,
 * writes the result and stores resp_seq (release), on which the engine
 * spins (acquire) for a while too. A side that stops spinning sets its
 * *_waiting flag, issues a seq_cst fence, loads the other's sequence
 * again and only then sleeps in poll() on the socket; the other side,
 * after its store, issues a seq_cst fence and loads that flag: set, it
 * also sends a message (BATCH or RESULT, the step's number in seq) that
 * only wakes the sleeper. The two fences make the pair a Dekker handshake:
 * either the sleeper sees the new sequence or the other side sees the flag
 * (never both miss). A wake-up message can come after its step was
 * already seen: both sides treat messages as wake-ups and read the
 * sequences, so a late one is harmless. The socket still carries INIT and
 * HELLO (the memfd), and its EOF tells the engine the child is gone (a
 * crash inside a step ends the engine's spin at the latest after
 * SPATE_ISO_SPIN_NS, then poll() sees the EOF).
 */
#ifndef SPATE_FN_ISOLATE_PROTO_H
#define SPATE_FN_ISOLATE_PROTO_H

#include <stdatomic.h>
#include <stdint.h>

#define SPATE_ISO_VERSION 3u
#define SPATE_ISO_MAGIC 0x4f534953u /* "SISO" */
/** How long a side spins on the other's sequence before it sleeps: a
 * little more than the engine's own work between two batches of 1,000
 * records, so a steady flow of batches never sleeps. */
#define SPATE_ISO_SPIN_NS 50000u
/** Where the record descriptors start in the control area. */
#define SPATE_ISO_RECS_OFF 4096u

enum spate_iso_type {
	SPATE_ISO_INIT = 1,   /**< engine -> child: memfd + parameters; load, init */
	SPATE_ISO_HELLO = 2,  /**< child -> engine: rc of load + init, error text in ctl */
	SPATE_ISO_BATCH = 3,  /**< engine -> child: ctl->count descriptors ready (a wake-up) */
	SPATE_ISO_RESULT = 4, /**< child -> engine: the result in ctl (a wake-up) */
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
	uint64_t region_addr;   /**< the engine's address of the region (descriptors' base) */
	uint64_t ctl_addr;      /**< the engine's address of the control area */
	uint32_t n_opts;
	uint32_t strings;       /**< bytes of strings after this struct */
	/* Strings, NUL-terminated, in order: plugin path, bus, stream,
	 * consumer, region file, then n_opts key/value pairs. */
};

/** The control area's head. */
struct spate_iso_ctl {
	uint32_t magic, version;
	/* The doorbell: the engine's line, then the child's (no false sharing
	 * between the two spinners). */
	_Alignas(64) _Atomic uint64_t req_seq;  /**< engine: the step to run (release) */
	uint32_t req_type;                      /**< engine: BATCH, FLUSH or FINI */
	_Atomic uint32_t engine_waiting;        /**< engine: asleep on the socket */
	_Alignas(64) _Atomic uint64_t resp_seq; /**< child: the step answered (release) */
	int32_t resp_rc;                        /**< child: 0, or -errno: the step refused */
	_Atomic uint32_t child_waiting;         /**< child: asleep on the socket */
	_Alignas(64) uint32_t pad_line_;
	/* Batch (the engine's): `count` descriptors in descriptor area
	 * `area` (0 or 1: the engine prepares the next batch in the other one
	 * while the child runs this one). */
	uint32_t count, attempt, shard, lane, area;
	/* Result (the child's). */
	int32_t rc;
	uint32_t status;        /**< enum spate_batch_status */
	uint32_t failed_index;
	char error[200];
	/* HELLO (the child's): the plugin's name and version. */
	char plugin_name[64];
	char plugin_version[32];
};

/** A spinner's pause (x86 PAUSE, or nothing). */
static inline void spate_iso_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/** One record descriptor. */
struct spate_iso_rec {
	uint64_t addr;     /**< the payload's address in the ENGINE's mapping (region or spill) */
	uint64_t seq, ts;
	uint32_t len, key_hash;
	uint8_t type;
	uint8_t pad_[7];
};

_Static_assert(sizeof(struct spate_iso_ctl) <= SPATE_ISO_RECS_OFF, "ctl head fits its page");
_Static_assert(sizeof(struct spate_iso_rec) == 40, "record descriptor");
/* A descriptor is a struct spate_ring_rec (spate/record.h) field for field,
 * so that the child can hand them to the plugin as they are. */
#include "spate/record.h"
#include <stddef.h>
_Static_assert(sizeof(struct spate_iso_rec) == sizeof(struct spate_ring_rec) &&
		       offsetof(struct spate_iso_rec, addr) == offsetof(struct spate_ring_rec, data) &&
		       offsetof(struct spate_iso_rec, seq) == offsetof(struct spate_ring_rec, seq) &&
		       offsetof(struct spate_iso_rec, ts) == offsetof(struct spate_ring_rec, ts) &&
		       offsetof(struct spate_iso_rec, len) == offsetof(struct spate_ring_rec, len) &&
		       offsetof(struct spate_iso_rec, key_hash) == offsetof(struct spate_ring_rec, key_hash) &&
		       offsetof(struct spate_iso_rec, type) == offsetof(struct spate_ring_rec, type),
	       "a descriptor is a record view");

#endif
