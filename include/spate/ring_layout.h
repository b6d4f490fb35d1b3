/* SPDX-License-Identifier: MIT */
/**
 * @file spate/ring_layout.h
 * @brief Layout internals of a spate ring: the bytes every process that maps
 * a ring agrees on. Not an API.
 *
 * Installed only because the inline hot paths of spate/ring.h read it, as
 * DPDK's rte_ring_core.h is. Users include spate/ring.h and go through its
 * functions and accessors (spate_ring_tail(), spate_ring_reader_info(), ...);
 * only the ring itself, the durable log (which stores batches byte for byte)
 * and tests that corrupt a ring on purpose touch these structs.
 *
 * Rules: offsets only, never pointers; state written by different parties
 * on separate SPATE_RING_LINE lines; every change bumps
 * SPATE_RING_LAYOUT_VERSION, and the _Static_asserts at the end pin sizes and
 * offsets so an accidental change fails to compile.
 */
#ifndef SPATE_RING_LAYOUT_H
#define SPATE_RING_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Readers a ring can register at once. */
#define SPATE_RING_MAX_READERS 64u
/** Writer slots of a multi-writer ring (a single-writer ring has one). */
#define SPATE_RING_MAX_WRITERS 64u
/** Separation of independently written state: two 64-byte lines, because
 *  the adjacent-line prefetcher pairs them. */
#define SPATE_RING_LINE 128u

#define SPATE_RING_MAGIC 0x474e524554415053ULL /* "SPATERNG" */
/** 2: leases (pid, start time, PID namespace, heartbeat) in every slot,
 *  generation-tagged slot words, claim checks (meta.key), SKIP batches,
 *  health counters, reader slot flags (kept gates), the meta's retired word. */
#define SPATE_RING_LAYOUT_VERSION 2u

/* ------------------------------------------------------------------------ */
/* Batches and records (in the data area)                                   */
/* ------------------------------------------------------------------------ */

/** Batch header commit word: bits 0..31 length | state, bits 32..63 tag. */
#define SPATE_RING_C_COMMITTED 0x1ull /**< the batch is complete */
#define SPATE_RING_C_PAD 0x2ull       /**< padding to the end of the ring */
/** Space a multi-writer claimant gave up (an empty batch, or the claim of a
 *  writer that died before committing): readers and the log skip it like
 *  padding; it carries no records and no sequence numbers. */
#define SPATE_RING_C_SKIP 0x4ull
/** Batches readers step over without looking inside. */
#define SPATE_RING_C_NODATA (SPATE_RING_C_PAD | SPATE_RING_C_SKIP)
#define SPATE_RING_C_LEN_MASK 0xfffffff8ull
/** The tag is the batch position / 8, truncated: it tells this lap's header
 *  from a stale one of a previous lap (rings are < 2^35 bytes). */
#define SPATE_RING_TAG(pos) ((uint64_t)(uint32_t)((pos) >> 3) << 32)

/** In-ring batch header. 32 bytes, 8-aligned. */
struct spate_ring_bhdr {
	_Atomic uint64_t commit; /**< len | state | tag; see SPATE_RING_C_* */
	uint32_t count;          /**< records in the batch */
	uint32_t owner;          /**< multi-writer: writer slot + 1; else 0 */
	uint64_t base_seq;       /**< sequence number of the first record;
				      multi-writer, until published: the
				      claim check (see struct spate_ring_meta) */
	uint64_t ts;             /**< commit time, CLOCK_REALTIME ns */
};

/** In-ring record header. 8 bytes; 8 more for lengths >= SPATE_RING_LONG. */
struct spate_ring_rhdr {
	uint32_t len_type; /**< length (bits 0..23, or SPATE_RING_LONG) | type << 24 */
	uint32_t key_hash;
};
#define SPATE_RING_LONG 0xffffffu
#define SPATE_RING_BHDR_SIZE ((uint32_t)sizeof(struct spate_ring_bhdr))

/* ------------------------------------------------------------------------ */
/* Control block                                                            */
/* ------------------------------------------------------------------------ */

/** Immutable description, written once by spate_ring_format(). */
struct spate_ring_meta {
	uint64_t magic;          /**< SPATE_RING_MAGIC */
	uint32_t layout_version; /**< SPATE_RING_LAYOUT_VERSION */
	uint32_t shared_size;    /**< sizeof(struct spate_ring_shared) */
	uint64_t total_size;     /**< bytes of the whole ring area */
	uint64_t capacity;       /**< data bytes, power of two */
	uint64_t data_off;       /**< offset of the data area from the ring start */
	uint64_t max_record;     /**< largest payload accepted */
	uint32_t flags;          /**< SPATE_RING_F_* */
	uint32_t cap_shift;      /**< log2(capacity) */
	uint32_t ready;          /**< SPATE_RING_READY once formatted (release) */
	/** The one mutable word of the meta: non-zero once the ring's region
	 *  was retired (see spate_ring_retire()). Read by writers on every
	 *  reserve; it shares a read-mostly line with the fields above. */
	_Atomic uint32_t retired;
	/** Random per ring, never in a payload's reach: a multi-writer claim's
	 *  header carries spate_ring_claim_check_(key, claim position) until it
	 *  is published, so bytes left by an earlier lap cannot pass for one. */
	uint64_t key;
	uint32_t reserved[10];
};
#define SPATE_RING_READY 0x59444552u

/** State of a reader or writer slot: the low 8 bits of its own word. */
enum spate_ring_slot_state {
	SPATE_RING_SLOT_FREE = 0,
	SPATE_RING_SLOT_ACTIVE = 1,
	SPATE_RING_SLOT_EVICTED = 2, /**< detached by someone else; owner sees -EPIPE */
};
/** A slot's own word: state in bits 0..7, a generation above it, bumped at
 *  every claim, so a compare-and-swap on it never frees or evicts the next
 *  owner of a slot by mistake (ABA). */
#define SPATE_RING_OWN_STATE(own) ((uint32_t)((own) & 0xffu))
#define SPATE_RING_OWN_GEN1 0x100ull

/**
 * Who holds a slot, so others can tell a dead holder from a live one.
 * The claimant writes beat_ns, start_time and pidns, then pid (release):
 * pid == 0 in an ACTIVE slot means "claimed, identity not yet written", which
 * counts as alive for SPATE_RING_CLAIM_NS. A holder in another PID namespace
 * than the observer cannot be looked up by pid; it counts as alive while its
 * heartbeat (beat_ns, CLOCK_MONOTONIC) is younger than SPATE_RING_LEASE_NS.
 */
struct spate_ring_lease {
	_Atomic uint32_t pid;        /**< in the holder's PID namespace; 0 while claiming */
	uint32_t pad_;
	_Atomic uint64_t start_time; /**< clock ticks since boot (/proc/PID/stat 22) */
	_Atomic uint64_t pidns;      /**< inode of the holder's /proc/self/ns/pid; 0 unknown */
	_Atomic uint64_t beat_ns;    /**< last heartbeat, CLOCK_MONOTONIC ns */
};

/** Reader slot flags (struct spate_ring_rslot.flags). */
/** Keep: the slot outlives its process on purpose (a gating reader whose
 *  position must survive an engine restart). spate_ring_reap() and a
 *  writer's eviction of dead gating readers skip it; only
 *  spate_ring_reader_evict() or its adopter frees it. */
#define SPATE_RING_RSLOT_F_KEEP 0x1u
/** Engine: the slot is a consumer reader of the bus's engine. A writer
 *  waiting for space never evicts it, even once its process is dead: while
 *  no engine runs, it holds the records its consumer has not processed
 *  (producers wait or fail by their policy, never overwrite them).
 *  spate_ring_reap() frees it as any dead slot; the engine calls that only
 *  once its own consumers' readers are in place. */
#define SPATE_RING_RSLOT_F_ENGINE 0x2u
/** Detached: an engine reader its engine closed (spate_ring_reader_detach()
 *  at stop). It keeps gating writers until the next engine's reap, which
 *  frees it whatever its holder's lease says (the holder may well live on:
 *  an embedding process that stops and reopens its engine). */
#define SPATE_RING_RSLOT_F_DETACHED 0x4u
/** An engine reader left for the next engine's reap. */
#define SPATE_RING_RSLOT_F_LEFT_ (SPATE_RING_RSLOT_F_ENGINE | SPATE_RING_RSLOT_F_DETACHED)

/** One reader's published state, on its own line. */
struct spate_ring_rslot {
	_Atomic uint64_t pos;   /**< released up to here (bytes) */
	_Atomic uint64_t seq;   /**< sequence number of the next record at pos */
	_Atomic uint64_t own;   /**< state | generation; see SPATE_RING_OWN_* */
	_Atomic uint32_t flags; /**< SPATE_RING_RSLOT_F_* */
	uint32_t pad0_;
	struct spate_ring_lease lease;
	uint8_t pad_[SPATE_RING_LINE - 64];
};

/** One writer's slot: liveness and the claim it is making (for recovery). */
struct spate_ring_wslot {
	_Atomic uint64_t own;        /**< state | generation; see SPATE_RING_OWN_* */
	_Atomic uint64_t intent_pos; /**< claim being made at this position ... */
	_Atomic uint64_t intent_len; /**< ... of this many bytes (0: none; bit 0:
					  its claim header is written) */
	_Atomic uint64_t pub_pos;    /**< last batch of ours the publisher stamped ... */
	struct spate_ring_lease lease;
	_Atomic uint64_t pub_seq;    /**< ... and its base sequence number */
	uint8_t pad_[SPATE_RING_LINE - 72];
};

/** The control block at the start of every ring. */
struct spate_ring_shared {
	struct spate_ring_meta meta;
	_Alignas(SPATE_RING_LINE) struct {
		/** Claim position (multi-writer CAS target; single writer: its head). */
		_Atomic uint64_t head;
		/** Oldest batch boundary that is still intact; new OLDEST readers start here. */
		_Atomic uint64_t trim;
		/** Multi-writer publisher token (0 free, else writer slot + 1);
		 *  taken over from a dead holder. */
		_Atomic uint32_t pub_lock;
		/** Multi-writer trim walker token (0 free, else writer slot + 1). */
		_Atomic uint32_t trim_lock;
		/** Multi-writer commits so far: the publisher re-checks it after
		 *  giving the token back, so no commit is left unpublished. */
		_Atomic uint64_t commits;
		uint8_t pad_[SPATE_RING_LINE - 32];
	} prod;
	_Alignas(SPATE_RING_LINE) struct {
		/** Writers sleeping for space, and the futex word they sleep on.
		 *  A line of its own: readers look at it on every release, and it
		 *  changes only when a writer starts or stops waiting. */
		_Atomic uint32_t wr_waiters;
		_Atomic uint32_t space_futex;
		/** Writers waiting for space in any way (FULL_WAIT rings). */
		_Atomic uint32_t wr_waiting;
		uint8_t pad_[SPATE_RING_LINE - 12];
	} wake;
	_Alignas(SPATE_RING_LINE) struct {
		/** Published position: every byte below it is a readable batch. */
		_Atomic uint64_t tail;
		/** Sequence number of the next record to be published. */
		_Atomic uint64_t tail_seq;
		/** Readers sleeping for data (they sleep on the low half of tail). */
		_Atomic uint32_t rd_waiters;
		uint32_t pad0_;
		/** Active reader slots, one bit each. */
		_Atomic uint64_t reader_mask;
		uint8_t pad_[SPATE_RING_LINE - 32];
	} pub;
	/** Recovery counters (monotonic; see struct spate_ring_health). */
	_Alignas(SPATE_RING_LINE) struct {
		_Atomic uint64_t evicted;       /**< dead gating readers evicted by writers */
		_Atomic uint64_t reaped_readers;
		_Atomic uint64_t reaped_writers;
		_Atomic uint64_t skipped;       /**< dead writers' claims turned into SKIP */
		_Atomic uint64_t takeovers;     /**< tokens taken from dead holders */
		_Atomic uint64_t corrupt;       /**< operations refused on corrupt state */
		uint8_t pad_[SPATE_RING_LINE - 48];
	} health;
	struct spate_ring_rslot readers[SPATE_RING_MAX_READERS];
	struct spate_ring_wslot writers[SPATE_RING_MAX_WRITERS];
};

/* The cross-process layout, pinned: changing any of these is a layout change
 * (bump SPATE_RING_LAYOUT_VERSION and update the figures). */
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4,
	       "atomics are plain-sized (lock-free, shareable across processes)");
_Static_assert(sizeof(struct spate_ring_bhdr) == 32, "batch header is 32 bytes");
_Static_assert(offsetof(struct spate_ring_bhdr, count) == 8 &&
	       offsetof(struct spate_ring_bhdr, owner) == 12 &&
	       offsetof(struct spate_ring_bhdr, base_seq) == 16 &&
	       offsetof(struct spate_ring_bhdr, ts) == 24, "batch header fields");
_Static_assert(sizeof(struct spate_ring_rhdr) == 8, "record header is 8 bytes");
_Static_assert(sizeof(struct spate_ring_meta) == 112, "meta block");
_Static_assert(offsetof(struct spate_ring_meta, layout_version) == 8 &&
	       offsetof(struct spate_ring_meta, capacity) == 24 &&
	       offsetof(struct spate_ring_meta, flags) == 48 &&
	       offsetof(struct spate_ring_meta, ready) == 56 &&
	       offsetof(struct spate_ring_meta, retired) == 60 &&
	       offsetof(struct spate_ring_meta, key) == 64, "meta fields");
_Static_assert(sizeof(struct spate_ring_lease) == 32, "lease");
_Static_assert(sizeof(struct spate_ring_rslot) == SPATE_RING_LINE &&
	       offsetof(struct spate_ring_rslot, own) == 16 &&
	       offsetof(struct spate_ring_rslot, flags) == 24 &&
	       offsetof(struct spate_ring_rslot, lease) == 32, "reader slot: one line");
_Static_assert(sizeof(struct spate_ring_wslot) == SPATE_RING_LINE &&
	       offsetof(struct spate_ring_wslot, intent_len) == 16 &&
	       offsetof(struct spate_ring_wslot, pub_pos) == 24 &&
	       offsetof(struct spate_ring_wslot, lease) == 32 &&
	       offsetof(struct spate_ring_wslot, pub_seq) == 64, "writer slot: one line");
_Static_assert(offsetof(struct spate_ring_shared, prod) == 1 * SPATE_RING_LINE &&
	       offsetof(struct spate_ring_shared, wake) == 2 * SPATE_RING_LINE &&
	       offsetof(struct spate_ring_shared, pub) == 3 * SPATE_RING_LINE &&
	       offsetof(struct spate_ring_shared, health) == 4 * SPATE_RING_LINE &&
	       offsetof(struct spate_ring_shared, readers) == 5 * SPATE_RING_LINE &&
	       offsetof(struct spate_ring_shared, writers) ==
		       (5 + SPATE_RING_MAX_READERS) * SPATE_RING_LINE,
	       "producer, wake-up, publication and counter state on separate lines");
_Static_assert(sizeof(struct spate_ring_shared) ==
		       (5 + SPATE_RING_MAX_READERS + SPATE_RING_MAX_WRITERS) * SPATE_RING_LINE,
	       "control block size");

#ifdef __cplusplus
}
#endif
#endif /* SPATE_RING_LAYOUT_H */
