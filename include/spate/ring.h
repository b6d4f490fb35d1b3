/* SPDX-License-Identifier: MIT */
/**
 * @file spate/ring.h
 * @brief Lock-free variable-length record ring in (shared) memory.
 *
 * A ring is a power-of-two byte area holding *batches* of *records*. Every
 * record carries its length, a type byte, a 64-bit per-ring sequence number,
 * a nanosecond timestamp and a 32-bit partition-key hash, encoded compactly:
 *
 *     batch header (32 B): commit word | count | kind | base_seq | timestamp
 *     record header (8 B): length:24 | type:8 | key hash:32   [+ 8 B long length]
 *     payload, padded to 8 bytes
 *
 * so a 64-byte payload costs 72 bytes plus 1/count of the batch header. The
 * sequence of record i of a batch is base_seq + i; its timestamp is the batch's.
 *
 * Writers: one writer (SP, the default) or many threads/processes
 * (SPATE_RING_F_MULTI_WRITER). Writers *reserve* space, write records in place
 * and *commit*; or copy with spate_ring_put() / spate_ring_put_batch(). A batch
 * becomes visible to readers with one release store of the ring's tail; on a
 * multi-writer ring whoever holds the publisher token publishes every
 * committed batch in claim order (a committer never waits for another).
 *
 * Liveness: every reader and writer slot holds a lease (pid, start time, PID
 * namespace, heartbeat; see spate/ring_layout.h). A writer waiting for space
 * evicts a gating reader whose process is dead; a writer waiting for space
 * or for its sequence number turns the claim of a writer that died before
 * committing into a SKIP batch readers never see;
 * a token held by a dead writer is taken over. Every such event is counted
 * (spate_ring_health()). No wait in the ring depends on a dead process.
 *
 * Readers: up to SPATE_RING_MAX_READERS independent readers per ring, each
 * seeing every record in order. spate_ring_peek() fills an array of zero-copy
 * record views; spate_ring_release() gives the space back. A writer never
 * overwrites what a registered reader has not released.
 *
 * Everything in the ring is position independent (offsets, never pointers), so
 * a ring placed in a spate_shm region is used by several processes at once.
 * The shared layout is in spate/ring_layout.h (internals; use the accessors).
 *
 * Concurrency contract (who may call what at the same time) is stated on each
 * function. "Handle" functions take a struct spate_ring_writer or
 * struct spate_ring_reader that belongs to one thread at a time.
 */
#ifndef SPATE_RING_H
#define SPATE_RING_H

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "spate/record.h"
#include "spate/ring_layout.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Constants                                                                */
/* ------------------------------------------------------------------------ */

/** Smallest and largest ring data capacity, in bytes (powers of two). */
#define SPATE_RING_MIN_CAPACITY (64u * 1024u)
#define SPATE_RING_MAX_CAPACITY (1024u * 1024u * 1024u)
/** Records in one ring batch (larger put_batch calls are split). */
#define SPATE_RING_MAX_BATCH_RECORDS 65535u

/* Ring flags (struct spate_ring_params.flags, fixed at format time). */
/** Many writers (threads or processes); otherwise exactly one. */
#define SPATE_RING_F_MULTI_WRITER (1u << 0)
/** A full ring makes writers wait (per their wait strategy and timeout)
 *  instead of failing at once with -EAGAIN. */
#define SPATE_RING_F_FULL_WAIT (1u << 1)
/** No futex wake-ups: publish and release skip the fence and the waiter
 *  check; SPATE_RING_WAIT_BLOCK is refused with -ENOTSUP. */
#define SPATE_RING_F_NO_BLOCKING (1u << 2)
#define SPATE_RING_F_ALL_ (SPATE_RING_F_MULTI_WRITER | SPATE_RING_F_FULL_WAIT | SPATE_RING_F_NO_BLOCKING)

/** How a handle waits for data (reader) or space (writer). */
enum spate_ring_wait {
	SPATE_RING_WAIT_BUSY = 0,  /**< spin with the CPU's pause hint */
	SPATE_RING_WAIT_YIELD = 1, /**< spin a little, then sched_yield() */
	SPATE_RING_WAIT_BLOCK = 2, /**< spin a little, then sleep on a futex */
};

/** Where a new reader starts. */
enum spate_ring_start {
	SPATE_RING_START_OLDEST = 0, /**< oldest batch still intact (trim horizon) */
	SPATE_RING_START_LATEST = 1, /**< only records published from now on */
};

/** Batch boundaries a single writer remembers, one per 1/16 of the ring. */
#define SPATE_RING_MARKS 16u
/** How far ahead a reader prefetches published data, in bytes. */
#define SPATE_RING_PREFETCH 1024u
/**
 * Streamed batches. A single writer's reservation of SPATE_RING_STREAM_MIN
 * to SPATE_RING_STREAM_MAX bytes is filled in a per-handle staging buffer
 * (in L1) and copied into the ring at commit with non-temporal full-line
 * stores: the writer never takes for ownership a line the reader still
 * holds, which costs a cross-core round trip per line when the two cores
 * share no cache (issue 15 item 4: 0.6x rte_ring at 1 MiB there; see
 * docs/bench.md). Smaller batches (one record, latency) are written in
 * place as before. x86-64 only; not under ThreadSanitizer (it cannot see
 * non-temporal stores). The bytes in the ring are the same either way.
 */
#define SPATE_RING_STREAM_MIN 1024u
#define SPATE_RING_STREAM_MAX 16384u
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define SPATE_RING_STREAM 1
#else
#define SPATE_RING_STREAM 0
#endif

/* Liveness bounds (see struct spate_ring_lease in spate/ring_layout.h). */
/** A holder that cannot be looked up (another PID namespace) is alive while
 *  its heartbeat is younger than this. Waiting handles beat on their own;
 *  a handle in another namespace that holds records longer calls
 *  spate_ring_reader_beat() / spate_ring_writer_beat(). */
#define SPATE_RING_LEASE_NS (10ull * 1000000000ull)
/** A slot claimed whose holder has not written its identity yet counts as
 *  alive this long after it was first seen so. */
#define SPATE_RING_CLAIM_NS (2ull * 1000000000ull)
/** How often a waiting writer looks for dead peers (a gating reader, a
 *  claimant before it, a token holder); also the longest futex sleep. */
#define SPATE_RING_CHECK_NS (20ull * 1000000ull)

/* ------------------------------------------------------------------------ */
/* Process-local handles                                                    */
/* ------------------------------------------------------------------------ */

/** A ring opened in this process (from memory or a shm region). */
struct spate_ring {
	struct spate_ring_shared *sh;
	uint8_t *data;
	uint64_t cap;
	uint64_t mask;
	uint64_t max_record;
	uint32_t flags;
	uint64_t key;          /**< meta.key, copied at open */
	struct spate_shm *shm; /**< owned region, or NULL */
};

/** A writer handle. One thread uses it at a time. */
struct spate_ring_writer {
	struct spate_ring *ring;
	uint8_t *data;
	uint64_t mask;
	uint64_t cap;
	uint64_t head;   /**< single writer: next free position */
	uint64_t limit;  /**< may write below this without looking at readers */
	uint64_t seq;    /**< single writer: next sequence number */
	uint32_t flags;  /**< the ring's flags, copied; SPATE_RING_F_FULL_WAIT may be
			      set or cleared per handle (full policy of this writer) */
	uint32_t slot;   /**< writer slot index */
	enum spate_ring_wait wait;
	uint64_t timeout_ns; /**< for FULL_WAIT rings; UINT64_MAX = forever */
	uint64_t full_events; /**< times a reserve found the ring full */
	const _Atomic uint32_t *retired; /**< the ring's meta.retired (checked per reserve) */
	uint64_t own;        /**< our slot's own word (state | generation) */
	uint64_t check_ns;   /**< next look for dead peers while waiting (mono ns) */
	uint64_t beat_ns;    /**< our last heartbeat (mono ns) */
	uint64_t mark_next;  /**< single writer: next 1/16-ring boundary to mark */
	uint64_t marks[SPATE_RING_MARKS]; /**< first batch at or after each boundary */
	/** Staging buffer of streamed batches (SPATE_RING_STREAM_MAX + 64 bytes,
	 *  64-aligned), or NULL: multi-writer rings, no SPATE_RING_STREAM. */
	uint8_t *stage;
};

/** A reader handle. One thread uses it at a time. */
struct spate_ring_reader {
	struct spate_ring *ring;
	const uint8_t *data;
	uint64_t mask;
	uint64_t cap;
	struct spate_ring_rslot *slot;
	uint32_t flags;
	uint32_t index;     /**< slot index */
	uint64_t own;       /**< our slot's own word (state | generation) */
	uint64_t beat_ns;   /**< our last heartbeat (mono ns) */
	uint64_t tail;      /**< cached published position */
	/* Position released so far, and the batch it is in. */
	uint64_t pos;       /**< next record (or batch header if left == 0) */
	uint64_t published; /**< position last stored in the slot */
	uint64_t seq;       /**< its sequence number */
	uint64_t bend;      /**< end of the current batch */
	uint64_t bts;       /**< timestamp of the current batch */
	uint32_t left;      /**< records left in the current batch */
	/* The same after the last peek. */
	uint32_t p_left;
	uint32_t p_count;
	uint64_t p_pos, p_seq, p_bend, p_bts;
	enum spate_ring_wait wait;
	/* Where the last peek ended before spate_ring_peek_more() extended
	 * it: m_count records from released position m_from (valid while pos
	 * is still m_from), so releasing them needs no walk. */
	uint32_t m_count, m_left;
	uint64_t m_from, m_pos, m_seq, m_bend, m_bts;
};

/* struct spate_ring_rec, the record view, is in spate/record.h. */

/** A batch being written; see spate_ring_reserve(). */
struct spate_ring_batch {
	/** Batch header: in the ring, or, while a streamed batch is filled,
	 *  in the writer's staging buffer (at the same offset modulo 64);
	 *  cur and end go with it. After the commit all three point into the
	 *  ring. */
	uint8_t *hdr;
	uint8_t *cur;  /**< where the next record goes */
	uint8_t *end;  /**< end of the reserved space */
	uint64_t pos;  /**< ring position of the batch header */
	uint32_t count;
	uint32_t pad_; /**< bytes of padding written before the batch */
	uint8_t *ring_; /**< streamed: the batch header in the ring; else NULL */
};

/** One record for spate_ring_put_batch(). */
struct spate_ring_iov {
	const void *data;
	uint32_t len;
	uint32_t key_hash;
	uint8_t type;
};

/** Parameters for spate_ring_format() / spate_ring_create(). */
struct spate_ring_params {
	uint64_t capacity;   /**< data bytes, a power of two in [MIN, MAX] */
	uint64_t max_record; /**< largest payload; 0 = the most the ring allows */
	uint32_t flags;      /**< SPATE_RING_F_* */
	uint32_t pad_;
	uint64_t first_seq;  /**< sequence number of the first record (a ring
				  recreated over a durable log continues its
				  numbering); 0 by default */
};

/* ------------------------------------------------------------------------ */
/* Setup (ring.c)                                                           */
/* ------------------------------------------------------------------------ */

/**
 * Bytes of memory a ring with these parameters needs (control block + data).
 * @return the size, or 0 if the parameters are invalid.
 */
size_t spate_ring_memsize(const struct spate_ring_params *p);

/**
 * Format a ring in caller memory of @p size bytes (128-byte aligned).
 * Not concurrent with anything else on that memory.
 * @return 0, -EINVAL (bad parameters or alignment), -ENOSPC (size too small).
 */
int spate_ring_format(void *mem, size_t size, const struct spate_ring_params *p);

/**
 * Open a formatted ring in memory of @p size bytes, validating every field of
 * the control block (a corrupt or hostile ring yields an error, never a crash).
 * Any thread, any time.
 * @return 0, -EBADMSG (bad magic or inconsistent fields), -EPROTO (layout
 *         version), -EAGAIN (not formatted yet), -ENOMEM.
 */
int spate_ring_open_mem(void *mem, size_t size, struct spate_ring **out);

struct spate_shm_opts;

/**
 * Create a shared-memory region named @p name holding one ring.
 * @p shm_opts (may be NULL) chooses huge pages, mlock, replace, file mode
 * and group: see struct spate_shm_opts.
 * @return 0 or the errors of spate_shm_create() and spate_ring_format().
 */
int spate_ring_create(const char *name, const struct spate_ring_params *p,
		      const struct spate_shm_opts *shm_opts, struct spate_ring **out);

/**
 * Attach the ring in region @p name created by spate_ring_create().
 * @return 0 or the errors of spate_shm_attach() and spate_ring_open_mem().
 */
int spate_ring_attach(const char *name, struct spate_ring **out);

/** Close a ring handle (and unmap its region if it owns one). NULL-safe.
 *  Readers and writers opened on it must be closed first. */
void spate_ring_close(struct spate_ring *r);

/** The region a ring lives in, or NULL for caller memory. */
struct spate_shm *spate_ring_shm(const struct spate_ring *r);

/**
 * Largest payload a single record may have in this ring.
 */
static inline uint64_t spate_ring_max_record(const struct spate_ring *r)
{
	return r->max_record;
}

/** Data capacity of the ring, in bytes. */
static inline uint64_t spate_ring_capacity(const struct spate_ring *r)
{
	return r->cap;
}

/**
 * The published position (bytes written and visible to readers since the
 * ring was formatted) and the sequence number of the next record to be
 * published. Either pointer may be NULL. Any thread, any time.
 */
static inline void spate_ring_tail(const struct spate_ring *r, uint64_t *pos, uint64_t *seq)
{
	/* Acquire: pairs with the release store of tail by the publisher;
	 * tail_seq is stored before it. */
	uint64_t t = atomic_load_explicit(&r->sh->pub.tail, memory_order_acquire);
	if (pos)
		*pos = t;
	if (seq)
		/* Relaxed: stored before tail by the publisher; a newer value only
		 * counts a batch being published now. */
		*seq = atomic_load_explicit(&r->sh->pub.tail_seq, memory_order_relaxed);
}

/** Sequence number of the next record to be published. Any thread. */
static inline uint64_t spate_ring_tail_seq(const struct spate_ring *r)
{
	uint64_t s;
	spate_ring_tail(r, NULL, &s);
	return s;
}

/**
 * Open a writer. Single-writer rings allow one at a time (-EBUSY otherwise).
 * Any thread; concurrent opens on one ring are safe.
 * @return 0, -EBUSY (no free writer slot), -ENOMEM, -ENOTSUP (BLOCK wait on a
 *         NO_BLOCKING ring).
 */
int spate_ring_writer_open(struct spate_ring *r, enum spate_ring_wait wait,
			   struct spate_ring_writer **out);
/** Close a writer, freeing its slot. A reservation in progress is abandoned
 *  (must be committed or aborted first). NULL-safe. */
void spate_ring_writer_close(struct spate_ring_writer *w);

/**
 * Open a reader starting at @p start. Any thread, concurrently with writers
 * and other readers.
 * @return 0, -EBUSY (all reader slots taken), -ENOMEM, -ENOTSUP.
 */
int spate_ring_reader_open(struct spate_ring *r, enum spate_ring_start start,
			   enum spate_ring_wait wait, struct spate_ring_reader **out);
/** Close a reader: its slot is freed and no longer holds writers back. */
void spate_ring_reader_close(struct spate_ring_reader *rd);

/**
 * Detach reader slot @p index from outside (a monitor, or the writer's side),
 * so that a stuck or dead reader cannot block writers forever. The reader's
 * next peek/release/wait returns -EPIPE. Any thread, any process.
 * @return 0, -ENOENT (slot not active), -EPERM (a kept slot: never
 *         evicted), -EINVAL.
 */
int spate_ring_reader_evict(struct spate_ring *r, uint32_t index);
/**
 * Free the slots of readers and writers whose processes have died (their
 * lease says so: pid and start time match no live process, or, for a holder
 * in another PID namespace, its heartbeat is older than SPATE_RING_LEASE_NS),
 * so a ring a crashed process used gates no writer and leaks no slot; and on
 * a multi-writer ring, turn the claim of a dead writer at the publication
 * point into a SKIP batch and free tokens dead writers hold. Reader slots
 * with SPATE_RING_RSLOT_F_KEEP are left alone; a slot whose holder is still
 * writing its identity counts as alive (SPATE_RING_CLAIM_NS). Safe at any
 * time, concurrently with live readers and writers (an engine calls it
 * periodically); every action is counted in spate_ring_health().
 * @param readers, writers if not NULL, the reader and writer slots freed.
 * @return 0, 1 (a dead claim was skipped), -EBADMSG (corrupt positions).
 */
int spate_ring_reap(struct spate_ring *r, uint32_t *readers, uint32_t *writers);

/** Recovery counters of a ring (monotonic since format; any process). */
struct spate_ring_health {
	uint64_t evicted;        /**< dead gating readers evicted by waiting writers */
	uint64_t reaped_readers; /**< reader slots freed by spate_ring_reap() */
	uint64_t reaped_writers; /**< writer slots freed by spate_ring_reap() */
	uint64_t skipped;        /**< claims of dead writers turned into SKIP batches */
	uint64_t takeovers;      /**< tokens taken over from dead writers */
	uint64_t corrupt;        /**< operations refused with -EBADMSG */
};
/** Read the recovery counters (relaxed snapshots). Any thread, any time. */
void spate_ring_health(const struct spate_ring *r, struct spate_ring_health *out);

/** What spate_ring_reader_info() tells about one reader slot. */
struct spate_ring_reader_info {
	uint64_t pos;   /**< released position (bytes) */
	uint64_t seq;   /**< sequence number at pos (UINT64_MAX: not known yet) */
	uint32_t state; /**< enum spate_ring_slot_state */
	uint32_t flags; /**< SPATE_RING_RSLOT_F_* */
	uint32_t pid;   /**< holder (in its PID namespace; 0 while claiming) */
};
/**
 * A monitor's view of reader slot @p index. Any thread, any time.
 * @return 0, -EINVAL (index out of range).
 */
int spate_ring_reader_info(const struct spate_ring *r, uint32_t index,
			   struct spate_ring_reader_info *out);

/**
 * Sequence number and timestamp of the oldest record still intact (the first
 * data batch at the trim point); if the ring holds no record, @p seq is the
 * next sequence number and @p ts 0. Any thread, any time.
 * @return 0, -EAGAIN (writers kept moving the trim point: *seq = UINT64_MAX).
 */
int spate_ring_oldest(const struct spate_ring *r, uint64_t *seq, uint64_t *ts);

/**
 * Renew the heartbeat of a reader or writer (only needed by a handle in
 * another PID namespace than the engine that holds records or a claim for
 * longer than SPATE_RING_LEASE_NS without waiting; waits beat on their own).
 * Thread: the handle's owner.
 */
void spate_ring_reader_beat(struct spate_ring_reader *rd);
void spate_ring_writer_beat(struct spate_ring_writer *w);

/* Kept gating readers and retired rings (restart branch)                   */
/*                                                                          */
/* A persisted shard's gate (the persister's reader) must outlive the       */
/* engine process: while no persister runs, writers block or fail on a      */
/* full ring, by their policy, but never overwrite records not yet in the   */
/* log. A *kept* reader slot does that: reap and eviction skip it, closing  */
/* its handle with spate_ring_reader_detach() leaves it gating, and the     */
/* next engine takes it over with spate_ring_reader_adopt(). A ring whose   */
/* region is being replaced is *retired* first, so writers still mapping   */
/* it learn it at their next reserve (-ESTALE) and reattach.                */
/* ------------------------------------------------------------------------ */

/* Reader slot flag SPATE_RING_RSLOT_F_KEEP: see spate/ring_layout.h. */

/**
 * Mark @p rd's slot kept. Thread: the reader handle's owner.
 * @return 0, -EPIPE (the slot was evicted).
 */
int spate_ring_reader_keep(struct spate_ring_reader *rd);
/**
 * Mark @p rd's slot as the bus engine's (SPATE_RING_RSLOT_F_ENGINE): a
 * writer waiting for space never evicts it when its process dies; only
 * spate_ring_reap() frees it then. Thread: the reader handle's owner.
 * @return 0, -EPIPE (the slot was evicted).
 */
int spate_ring_reader_engine(struct spate_ring_reader *rd);
/**
 * Free the handle of a kept reader but leave its slot gating writers at
 * exactly the position released so far (stored now, not in 1/16-ring
 * steps), for spate_ring_reader_adopt(). An engine reader
 * (spate_ring_reader_engine()) is marked detached instead: it gates until
 * the next spate_ring_reap(), which frees it whatever its holder's lease
 * says. An evicted reader is closed. NULL-safe. Thread: the reader
 * handle's owner. (spate_ring_reader_close() frees a kept slot.)
 */
void spate_ring_reader_detach(struct spate_ring_reader *rd);
/**
 * Find a kept reader slot: its index, released position and the sequence
 * number there (UINT64_MAX if the slot never released anything; the batch
 * header at the position tells). Any thread.
 * @return 0, -ENOENT (none).
 */
int spate_ring_reader_find_kept(struct spate_ring *r, uint32_t *index, uint64_t *pos,
				uint64_t *seq);
/**
 * Take over kept reader slot @p index, continuing at its released position.
 * The slot stays kept. Any thread; one adopter wins.
 * @return 0, -ENOENT (not a kept slot), -EBUSY (its owner lives, or another
 *         adopter won), -EBADMSG (its position is not in the ring),
 *         -EINVAL, -ENOTSUP, -ENOMEM.
 */
int spate_ring_reader_adopt(struct spate_ring *r, uint32_t index, enum spate_ring_wait wait,
			    struct spate_ring_reader **out);
/**
 * Retire the ring: every later reserve of any writer (and a writer waiting
 * for space) returns -ESTALE, and readers waiting for data return -ESTALE.
 * For a region about to be replaced. Any thread, any process. A put whose
 * reserve came just before may still commit into the retired ring.
 */
void spate_ring_retire(struct spate_ring *r);
/** Non-zero once the ring is retired. Any thread. */
static inline int spate_ring_retired(const struct spate_ring *r)
{
	/* Relaxed: a flag set once; nothing else is read on the strength of it. */
	return (int)atomic_load_explicit(&r->sh->meta.retired, memory_order_relaxed);
}
/**
 * Release the first @p nbatches data batches of the last
 * spate_ring_peek_batches() (a batch-level spate_ring_release()).
 * Thread: the reader handle's owner.
 * @return 0, -EINVAL (more than the last peek), -EPIPE (evicted).
 */
int spate_ring_release_batches(struct spate_ring_reader *rd, unsigned nbatches);

/** A reader or writer slot whose owner process is gone. */
struct spate_ring_dead {
	uint32_t index;  /**< slot index */
	uint32_t pid;    /**< its owner's pid */
	uint32_t writer; /**< 1: a writer slot, 0: a reader slot */
};
/**
 * List the reader and writer slots in use whose owner process has died
 * (kept gates excepted): what spate_ring_reap() would free now. Fills at
 * most @p max entries of @p out. Slots of the calling process are taken as
 * alive without a look at /proc. Any thread.
 * @return the number of such slots (may exceed @p max).
 */
int spate_ring_dead_slots(struct spate_ring *r, struct spate_ring_dead *out, unsigned max);

/* Slow paths, called by the inline functions below. */
int spate_ring_refresh_limit_(struct spate_ring_writer *w, uint64_t need_end);
void spate_ring_stream_(uint8_t *dst, const uint8_t *src, uint64_t len);
int spate_ring_reserve_mp_(struct spate_ring_writer *w, uint64_t need,
			   struct spate_ring_batch *b);
int spate_ring_commit_mp_(struct spate_ring_writer *w, struct spate_ring_batch *b, uint64_t ts,
			  uint64_t *first_seq);
int spate_ring_reader_evict_own_(struct spate_ring *r, uint32_t index, uint64_t own);
void spate_ring_wake_readers_(struct spate_ring *r);
void spate_ring_wake_writers_(struct spate_ring *r);
int spate_ring_reader_wait(struct spate_ring_reader *rd, uint64_t timeout_ns);

/* ------------------------------------------------------------------------ */
/* Hot paths                                                                */
/* ------------------------------------------------------------------------ */

/** CPU hint for spin loops. */
static inline void spate_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#else
	__asm__ volatile("" ::: "memory");
#endif
}

/** CLOCK_REALTIME in nanoseconds (vDSO; no system call). */
static inline uint64_t spate_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/** CLOCK_MONOTONIC in nanoseconds (vDSO; no system call), for timeouts. */
static inline uint64_t spate_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/** Bytes a record with @p len payload bytes takes in the ring. */
static inline uint64_t spate_ring_rec_size(uint64_t len)
{
	return sizeof(struct spate_ring_rhdr) + (len >= SPATE_RING_LONG ? 8u : 0u) +
	       ((len + 7u) & ~(uint64_t)7u);
}

/**
 * Internal: the length of the batch whose commit word @p c was read at
 * position @p pos, or 0 if @p c is not a committed header of this lap that
 * fits before the end of the ring and below @p limit (the tail). Every walk
 * over batch headers validates with it.
 */
static inline uint64_t spate_ring_batch_len_(uint64_t c, uint64_t pos, uint64_t cap,
					     uint64_t limit)
{
	uint64_t len = c & SPATE_RING_C_LEN_MASK;

	if ((c >> 32) != (uint32_t)(pos >> 3) || !(c & SPATE_RING_C_COMMITTED) || !len ||
	    len > cap - (pos & (cap - 1)) || len > limit - pos)
		return 0;
	return len;
}

/**
 * Reserve space for one batch of records whose spate_ring_rec_size() add up
 * to at most @p bytes. Fill it with spate_ring_batch_add(), then
 * spate_ring_commit() (or spate_ring_abort()). One reservation per writer
 * handle at a time. A single writer's reservation of SPATE_RING_STREAM_MIN
 * to SPATE_RING_STREAM_MAX bytes is staged and streamed into the ring at
 * the commit (b->hdr points into the ring only after it). Thread: the
 * writer handle's owner; multi-writer rings allow any number of writer
 * handles at once.
 *
 * A writer that finds the ring full looks for gating readers whose process
 * is dead and evicts them (at most every SPATE_RING_CHECK_NS; readers with
 * SPATE_RING_RSLOT_F_KEEP are left alone).
 *
 * @return 0, -EAGAIN (full and the ring fails at once), -ETIMEDOUT (full
 *         for longer than the writer's timeout), -EMSGSIZE (larger than the
 *         ring can ever hold: half its capacity), -EBADMSG (the ring's
 *         positions or headers are corrupt: an error, never a hang), -EPIPE
 *         (multi-writer: our writer slot was reaped as dead), -ESTALE (the
 *         ring was retired: its region is being replaced; reattach).
 */
static inline int spate_ring_reserve(struct spate_ring_writer *w, uint64_t bytes,
				     struct spate_ring_batch *b)
{
	/* Relaxed: a flag set once, on a line nobody writes otherwise (it
	 * stays shared in every cache); a reserve racing with the retirement
	 * may miss it (see spate_ring_retire). */
	if (__builtin_expect(atomic_load_explicit(w->retired, memory_order_relaxed) != 0, 0))
		return -ESTALE;
	if (bytes > (w->cap >> 1))
		return -EMSGSIZE;
	uint64_t need = SPATE_RING_BHDR_SIZE + ((bytes + 7u) & ~(uint64_t)7u);
	if (need > (w->cap >> 1))
		return -EMSGSIZE;
	if (w->flags & SPATE_RING_F_MULTI_WRITER)
		return spate_ring_reserve_mp_(w, need, b);

	uint64_t pos = w->head;
	uint64_t off = pos & w->mask;
	uint64_t room = w->cap - off;
	uint64_t pad = need > room ? room : 0;

	if (pos + pad + need > w->limit) {
		int rc = spate_ring_refresh_limit_(w, pos + pad + need);
		if (rc < 0)
			return rc;
	}
	if (pad) {
		struct spate_ring_bhdr *ph = (struct spate_ring_bhdr *)(void *)(w->data + off);
		/* Relaxed: published by the release store of tail in commit. */
		atomic_store_explicit(&ph->commit, SPATE_RING_TAG(pos) | pad |
				      SPATE_RING_C_PAD | SPATE_RING_C_COMMITTED,
				      memory_order_relaxed);
		pos += pad;
		off = 0;
	}
	b->hdr = w->data + off;
	b->ring_ = NULL;
	if (SPATE_RING_STREAM && w->stage && need >= SPATE_RING_STREAM_MIN &&
	    need <= SPATE_RING_STREAM_MAX) {
		b->ring_ = b->hdr;
		b->hdr = w->stage + (off & 63u);
	}
	b->cur = b->hdr + SPATE_RING_BHDR_SIZE;
	b->end = b->hdr + need;
	b->pos = pos;
	b->count = 0;
	b->pad_ = (uint32_t)pad;
	return 0;
}

/**
 * Append a record of @p len bytes to a reserved batch and return where its
 * payload goes (8-byte aligned; valid until the commit: a streamed batch is
 * filled in the writer's staging buffer), or NULL if the reservation has no room left
 * (or the batch already holds SPATE_RING_MAX_BATCH_RECORDS). Thread: the
 * batch's owner. Lengths above spate_ring_max_record() must be refused by
 * the caller (spate_ring_put* do it).
 */
static inline void *spate_ring_batch_add(struct spate_ring_batch *b, uint64_t len,
					 uint32_t key_hash, uint8_t type)
{
	uint64_t sz = spate_ring_rec_size(len);

	if ((uint64_t)(b->end - b->cur) < sz || b->count >= SPATE_RING_MAX_BATCH_RECORDS)
		return NULL;
	struct spate_ring_rhdr *rh = (struct spate_ring_rhdr *)(void *)b->cur;
	uint8_t *payload = b->cur + sizeof(*rh);
	if (len >= SPATE_RING_LONG) {
		rh->len_type = SPATE_RING_LONG | ((uint32_t)type << 24);
		memcpy(payload, &len, sizeof(len));
		payload += 8;
	} else {
		rh->len_type = (uint32_t)len | ((uint32_t)type << 24);
	}
	rh->key_hash = key_hash;
	b->cur += sz;
	b->count++;
	return payload;
}

/**
 * Publish a reserved batch: stamps the sequence numbers and @p ts (0 = now)
 * and makes it visible with one release store. If @p first_seq is not NULL,
 * stores the first record's sequence number there. On a multi-writer ring,
 * where sequence numbers are assigned at publication, in claim order, that
 * means waiting until the batch is published (normally at once; longer
 * while an earlier claimant is still writing; a claimant that died is
 * skipped, see spate_ring_health()). An empty batch is abandoned (a
 * multi-writer ring publishes it as a SKIP batch that no reader sees).
 * Thread: the batch's owner.
 * @return the number of records published, -EBADMSG (multi-writer: the
 *         ring's positions are corrupt while we wait for @p first_seq),
 *         -EPIPE (multi-writer: our claim was skipped, our writer having
 *         been judged dead; nothing of the batch is published).
 */
static inline int spate_ring_commit(struct spate_ring_writer *w, struct spate_ring_batch *b,
				    uint64_t ts, uint64_t *first_seq)
{
	struct spate_ring_bhdr *h = (struct spate_ring_bhdr *)(void *)b->hdr;
	uint64_t len = (uint64_t)(b->cur - b->hdr);
	uint32_t n = b->count;

	if (w->flags & SPATE_RING_F_MULTI_WRITER)
		return spate_ring_commit_mp_(w, b, ts, first_seq);
	if (n == 0) /* nothing to publish; any padding is simply rewritten later */
		return 0;
	h->count = n;
	h->owner = 0;
	h->base_seq = w->seq;
	h->ts = ts ? ts : spate_now_ns();
	/* Relaxed: ordered before readers by the release store of tail below
	 * (streamed: by the copy's sfence, then that store). */
	atomic_store_explicit(&h->commit, SPATE_RING_TAG(b->pos) | len | SPATE_RING_C_COMMITTED,
			      memory_order_relaxed);
	if (b->ring_) {
		spate_ring_stream_(b->ring_, b->hdr, len);
		b->end = b->ring_ + (b->end - b->hdr);
		b->cur = b->ring_ + len;
		b->hdr = b->ring_;
		b->ring_ = NULL;
	}
	if (first_seq)
		*first_seq = w->seq;
	w->seq += n;
	w->head = b->pos + len;
	if (b->pos >= w->mark_next) {
		/* Remember a batch boundary per 1/16 of the ring, so trim can move
		 * without walking old headers (see compute_limit in ring.c). */
		uint64_t seg = w->cap >> 4;
		w->marks[(b->pos / seg) % SPATE_RING_MARKS] = b->pos;
		w->mark_next = (b->pos / seg + 1) * seg;
	}

	struct spate_ring_shared *sh = w->ring->sh;
	/* Relaxed: tail_seq is read only after an acquire of tail (lag, open). */
	atomic_store_explicit(&sh->pub.tail_seq, w->seq, memory_order_relaxed);
	if (w->flags & SPATE_RING_F_NO_BLOCKING) {
		/* Release: pairs with the acquire load of tail in spate_ring_peek()
		 * and spate_ring_reader_wait(): every header and payload byte above
		 * is visible to a reader that sees this tail. */
		atomic_store_explicit(&sh->pub.tail, w->head, memory_order_release);
	} else {
		/* Seq_cst (release at least, as above): with the seq_cst load of
		 * rd_waiters it is the Dekker pair of the reader's seq_cst
		 * increment of rd_waiters and re-read of tail before it sleeps:
		 * either we see the waiter, or it sees this tail. */
		atomic_store_explicit(&sh->pub.tail, w->head, memory_order_seq_cst);
		if (atomic_load_explicit(&sh->pub.rd_waiters, memory_order_seq_cst))
			spate_ring_wake_readers_(w->ring);
	}
	return (int)n;
}

/** Abandon a reservation without publishing records. Thread: the batch's owner. */
static inline void spate_ring_abort(struct spate_ring_writer *w, struct spate_ring_batch *b)
{
	b->cur = b->hdr + SPATE_RING_BHDR_SIZE;
	b->count = 0;
	spate_ring_commit(w, b, 0, NULL);
}

/**
 * Copy one record into the ring as a batch of one.
 * Thread: the writer handle's owner.
 * @return 0 (and the sequence number in @p seq), -EMSGSIZE, -EAGAIN,
 *         -ETIMEDOUT, -EBADMSG (corrupt ring state), -EPIPE (our writer
 *         slot was reaped as dead).
 */
static inline int spate_ring_put(struct spate_ring_writer *w, const void *data, uint64_t len,
				 uint32_t key_hash, uint8_t type, uint64_t *seq)
{
	struct spate_ring_batch b;
	int rc;

	if (len > w->ring->max_record)
		return -EMSGSIZE;
	rc = spate_ring_reserve(w, spate_ring_rec_size(len), &b);
	if (rc < 0)
		return rc;
	void *p = spate_ring_batch_add(&b, len, key_hash, type);
	if (len)
		memcpy(p, data, len);
	rc = spate_ring_commit(w, &b, 0, seq);
	return rc < 0 ? rc : 0;
}

/**
 * Copy @p n records into the ring. Records go into as few batches as fit
 * (each batch at most half the ring and SPATE_RING_MAX_BATCH_RECORDS). A call
 * that fits in one batch is published all or nothing.
 * Thread: the writer handle's owner.
 * @return the number of records written (less than @p n only if the ring
 *         filled after the first batch), or -EMSGSIZE (a record is larger
 *         than spate_ring_max_record(); nothing from it on is written),
 *         -EAGAIN, -ETIMEDOUT, -EBADMSG or -EPIPE if nothing could be
 *         written.
 */
int spate_ring_put_batch(struct spate_ring_writer *w, const struct spate_ring_iov *v,
			 unsigned n, uint64_t *first_seq);

/* Reader ------------------------------------------------------------------ */

int spate_ring_peek_slow_(struct spate_ring_reader *rd, int err);
int spate_ring_release_partial_(struct spate_ring_reader *rd, unsigned n);

/**
 * Fill @p out with views of up to @p max records, stopping before a record
 * that would take the payload total past @p max_bytes (at least one record is
 * returned if any is available). The views stay valid until the records are
 * released. Peeking again without releasing returns the same records.
 * Thread: the reader handle's owner; concurrent with writers and other readers.
 *
 * @return the number of records (0: none available), -EPIPE (this reader
 *         was evicted), -EBADMSG (the ring's contents are corrupt: a header
 *         fails validation).
 */
static inline int spate_ring_peek(struct spate_ring_reader *rd, struct spate_ring_rec *out,
				  unsigned max, uint64_t max_bytes)
{
	const uint8_t *data = rd->data;
	const uint64_t mask = rd->mask;
	uint64_t pos = rd->pos, seq = rd->seq, bend = rd->bend, bts = rd->bts;
	uint64_t tail = rd->tail, bytes = 0;
	uint64_t pf = pos; /* prefetched up to here */
	uint32_t left = rd->left;
	unsigned n = 0;
	int refreshed = 0;

	/* Relaxed: our own slot's word, written only by us and an evicter;
	 * an evicted reader must not hand out records being overwritten. */
	if (atomic_load_explicit(&rd->slot->own, memory_order_relaxed) != rd->own)
		return spate_ring_peek_slow_(rd, -EPIPE);
	while (n < max) {
		if (left == 0) {
			if (pos == tail) {
				if (refreshed)
					break;
				refreshed = 1;
				/* Acquire: pairs with the release store of tail in
				 * spate_ring_commit() / the multi-writer publisher. */
				tail = atomic_load_explicit(&rd->ring->sh->pub.tail, memory_order_acquire);
				if (tail - pos > rd->cap)
					return spate_ring_peek_slow_(rd, -EBADMSG);
				if (pos == tail)
					break;
			}
			const struct spate_ring_bhdr *h =
				(const struct spate_ring_bhdr *)(const void *)(data + (pos & mask));
			/* Relaxed: ordered by the acquire of tail (pos < tail). */
			uint64_t c = atomic_load_explicit(&h->commit, memory_order_relaxed);
			uint64_t len = spate_ring_batch_len_(c, pos, rd->cap, tail);
			if (!len)
				return spate_ring_peek_slow_(rd, -EBADMSG);
			if (c & SPATE_RING_C_NODATA) { /* padding, or a skipped claim */
				pos += len;
				continue;
			}
			if (len < SPATE_RING_BHDR_SIZE)
				return spate_ring_peek_slow_(rd, -EBADMSG);
			if (__builtin_expect(h->base_seq != seq, 0)) {
				/* UINT64_MAX: a new reader adopts the first batch's. */
				if (seq != UINT64_MAX)
					return spate_ring_peek_slow_(rd, -EBADMSG);
				seq = h->base_seq;
			}
			left = h->count;
			bts = h->ts;
			bend = pos + len;
			pos += SPATE_RING_BHDR_SIZE;
			if (left == 0) {
				pos = bend;
				continue;
			}
		}
		/* Record positions depend on the lengths before them: without
		 * prefetching, every line is a dependent cross-core miss. Keep
		 * SPATE_RING_PREFETCH bytes of published data in flight. */
		if (pf < pos)
			pf = pos & ~(uint64_t)63;
		while (pf < pos + SPATE_RING_PREFETCH && pf < tail) {
			__builtin_prefetch(data + (pf & mask), 0, 3);
			pf += 64;
		}
		const struct spate_ring_rhdr *rh =
			(const struct spate_ring_rhdr *)(const void *)(data + (pos & mask));
		uint32_t lt = rh->len_type;
		uint64_t len = lt & SPATE_RING_LONG;
		const uint8_t *p = (const uint8_t *)(rh + 1);
		if (__builtin_expect(len == SPATE_RING_LONG, 0)) {
			if (bend - pos < 16)
				return spate_ring_peek_slow_(rd, -EBADMSG);
			memcpy(&len, p, sizeof(len));
			p += 8;
			if (len > rd->cap)
				return spate_ring_peek_slow_(rd, -EBADMSG);
		}
		uint64_t sz = spate_ring_rec_size(len);
		if (sz > bend - pos)
			return spate_ring_peek_slow_(rd, -EBADMSG);
		if (n && bytes + len > max_bytes)
			break;
		bytes += len;
		out[n].data = p;
		out[n].seq = seq;
		out[n].ts = bts;
		out[n].len = (uint32_t)len;
		out[n].key_hash = rh->key_hash;
		out[n].type = (uint8_t)(lt >> 24);
		n++;
		seq++;
		pos += sz;
		if (--left == 0)
			pos = bend;
	}
	rd->tail = tail;
	if (n == 0 && left == 0) {
		/* Only padding or empty batches were passed: nothing to release,
		 * but do not walk them again (a waiter would see data forever). */
		rd->pos = pos;
		rd->bend = bend;
		rd->seq = seq;
	}
	rd->p_pos = pos;
	rd->p_seq = seq;
	rd->p_bend = bend;
	rd->p_bts = bts;
	rd->p_left = left;
	rd->p_count = n;
	return (int)n;
}

/**
 * Release the first @p n records of the last peek, giving their space back to
 * writers. Ends that peek: peek again for the rest. The space reaches
 * writers at once when a writer is waiting for space (FULL_WAIT rings) or
 * the reader has consumed everything it has seen published, and otherwise
 * in steps of 1/16 of the ring (so a writer that fails at once on a full
 * ring sees space come back in such steps while the reader is busy).
 * Thread: the reader handle's owner.
 * @return 0, -EINVAL (n larger than the last peek), -EPIPE (evicted; the
 *         records may have been overwritten while in use).
 */
static inline int spate_ring_release(struct spate_ring_reader *rd, unsigned n)
{
	if (n > rd->p_count)
		return -EINVAL;
	if (n < rd->p_count)
		return spate_ring_release_partial_(rd, n);
	rd->pos = rd->p_pos;
	rd->seq = rd->p_seq;
	rd->bend = rd->p_bend;
	rd->bts = rd->p_bts;
	rd->left = rd->p_left;
	rd->p_count = 0;
	if (n == 0)
		return 0;
	/* Relaxed: our slot's word; only this reader and an evicter write it. */
	if (atomic_load_explicit(&rd->slot->own, memory_order_relaxed) != rd->own)
		return -EPIPE;
	/* Give space back in steps of 1/16 of the ring, at once when we have
	 * read all we know of, or when a writer waits for space: a writer
	 * held back by a busy reader then reads a line that rarely changes,
	 * instead of taking it from the reader every batch. Relaxed: a hint;
	 * a writer that starts waiting just after this load is served by our
	 * next release (or a step or catching up), within its timeout. */
	if (rd->pos - rd->published < (rd->cap >> 4) && rd->pos != rd->tail &&
	    !atomic_load_explicit(&rd->ring->sh->wake.wr_waiting, memory_order_relaxed))
		return 0;
	rd->published = rd->pos;
	/* Relaxed: informational (monitoring, lag of others). */
	atomic_store_explicit(&rd->slot->seq, rd->seq, memory_order_relaxed);
	if (rd->flags & SPATE_RING_F_NO_BLOCKING) {
		/* Release: pairs with the acquire load of reader positions in the
		 * writer's limit refresh: our reads of the released bytes happen
		 * before the writer reuses them. */
		atomic_store_explicit(&rd->slot->pos, rd->pos, memory_order_release);
	} else {
		/* Seq_cst (release at least, as above): with the seq_cst load of
		 * wr_waiters, the Dekker pair of a writer's seq_cst increment of
		 * wr_waiters and re-check of space before it sleeps. */
		atomic_store_explicit(&rd->slot->pos, rd->pos, memory_order_seq_cst);
		if (atomic_load_explicit(&rd->ring->sh->wake.wr_waiters, memory_order_seq_cst))
			spate_ring_wake_writers_(rd->ring);
	}
	return 0;
}

/**
 * Peek past the last peek without releasing it: up to @p max more records
 * after the ones it returned (stopping before @p max_bytes more, as
 * spate_ring_peek() does), into @p out. The last peek then spans both: a
 * pipelining consumer peeks its next batch while the current one is still
 * in use, and releases the current one alone with spate_ring_release_head().
 * With nothing peeked it is spate_ring_peek(). Thread: the reader handle's
 * owner.
 * @return the records added (0: none available), -EPIPE (evicted),
 *         -EBADMSG (corrupt; the records peeked before stay peeked).
 */
int spate_ring_peek_more(struct spate_ring_reader *rd, struct spate_ring_rec *out, unsigned max,
			 uint64_t max_bytes);

/**
 * Release the first @p n records of the last peek and keep the rest peeked
 * (spate_ring_release() ends the peek): their views stay valid, and they are
 * released later by count from their first one. At the boundary of a
 * spate_ring_peek_more() it moves there without walking the records.
 * Thread: the reader handle's owner.
 * @return 0, -EINVAL (more than the last peek), -EPIPE (evicted).
 */
int spate_ring_release_head(struct spate_ring_reader *rd, unsigned n);

/** A whole published batch, as spate_ring_peek_batches() returns it. */
struct spate_ring_span {
	const void *hdr;   /**< its struct spate_ring_bhdr, records after it */
	uint32_t len;      /**< bytes of the batch (header, records, any slack) */
	uint32_t count;    /**< records */
	uint64_t base_seq; /**< sequence number of its first record */
};

/**
 * Zero-copy batch-level peek, for consumers that move batches whole (the
 * durable log writes them to disk byte for byte): up to @p max published
 * data batches (padding skipped), stopping before one that would take the
 * total past @p max_bytes (at least one is returned if any is there). Release
 * them with spate_ring_release(rd, sum of their counts). The reader must be
 * at a batch boundary (it is, unless a record-level peek released part of a
 * batch). Thread: the reader handle's owner.
 * @return the number of batches (0: none), -EINVAL (mid-batch), -EPIPE
 *         (evicted), -EBADMSG (corrupt).
 */
int spate_ring_peek_batches(struct spate_ring_reader *rd, struct spate_ring_span *out,
			    unsigned max, uint64_t max_bytes);

/**
 * Learn the sequence number at the reader's position from the batch header
 * there, if it is not known yet (a new reader before its first peek).
 * Thread: the reader handle's owner.
 * @return 0, -EAGAIN (nothing published at the position yet), -EBADMSG.
 */
int spate_ring_reader_resolve_seq(struct spate_ring_reader *rd);

/**
 * Records and bytes published but not yet released by this reader.
 * Thread: the reader handle's owner.
 */
static inline void spate_ring_lag(struct spate_ring_reader *rd, uint64_t *records,
				  uint64_t *bytes)
{
	struct spate_ring_shared *sh = rd->ring->sh;
	if (rd->seq == UINT64_MAX)
		spate_ring_reader_resolve_seq(rd);
	/* Acquire: pairs with the release store of tail in commit/publish. */
	uint64_t t = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
	/* Relaxed: stored before tail (relaxed) by the single publisher; a
	 * slightly newer value only overstates the lag by a batch. */
	uint64_t s = atomic_load_explicit(&sh->pub.tail_seq, memory_order_relaxed);
	if (records)
		*records = rd->seq != UINT64_MAX && s > rd->seq ? s - rd->seq : 0;
	if (bytes)
		*bytes = t > rd->pos ? t - rd->pos : 0;
}

#ifdef __cplusplus
}
#endif
#endif /* SPATE_RING_H */
