/* SPDX-License-Identifier: MIT */
/**
 * @file spate/stream.h
 * @brief Streams of shards, partition keys, producers and checkpoints.
 *
 * A stream is one shared-memory region named `<bus>.<stream>` (file
 * `spate.<bus>.<stream>`, see shm.h), holding N shard rings and a checkpoint
 * table. Bus and stream names are 1..SPATE_STREAM_NAME_MAX characters of
 * [A-Za-z0-9_-], and `<bus>.<stream>` must fit SPATE_SHM_NAME_MAX (63). Any process attaches it by bus and
 * stream name. A partition key maps to a shard through its 32-bit hash: the
 * high half of XXH3-64 of the key bytes (libxxhash). Shard i owns the
 * contiguous hash range [i * 2^32 / N, (i + 1) * 2^32 / N), as a Kinesis shard
 * owns a range of the MD5 space; an explicit hash or shard overrides the key.
 * The same key always maps to the same shard, and records of one shard keep
 * their order, so per-key order holds from one producer.
 *
 * Threads: a struct spate_stream handle is shared by any number of threads
 * after open. A struct spate_producer belongs to one thread at a time; open
 * one per producing thread (multi-producer streams) or exactly one
 * (single-producer streams, the fastest).
 */
#ifndef SPATE_STREAM_H
#define SPATE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "spate/durability.h"
#include "spate/ring.h"
#include "spate/shm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SPATE_STREAM_MAGIC 0x4d52545345544150ULL /* "PATESTRM" */
#define SPATE_STREAM_LAYOUT_VERSION 3u
#define SPATE_STREAM_MAX_SHARDS 1024u
#define SPATE_STREAM_NAME_MAX 40u
/** Consumers whose checkpoints a stream region keeps. */
#define SPATE_STREAM_MAX_CONSUMERS 64u
/** Value of spate_stream_hdr.ready once the creator has finished ("STRM"). */
#define SPATE_STREAM_READY 0x4d525453u

/** Parameters of a new stream. */
struct spate_stream_params {
	uint32_t shards;        /**< 1 .. SPATE_STREAM_MAX_SHARDS */
	uint64_t ring_size;     /**< data bytes of each shard ring, a power of two in
				     [SPATE_RING_MIN_CAPACITY, SPATE_RING_MAX_CAPACITY] */
	uint64_t max_record;    /**< largest payload; 0 = what the ring allows */
	uint32_t ring_flags;    /**< SPATE_RING_F_* (MULTI_WRITER for multi-producer) */
	uint32_t shm_flags;     /**< SPATE_SHM_F_* (huge pages, mlock, replace) */
	uint32_t mode;          /**< file mode; 0 = 0600 */
	/** Whether a persister writes the shards to a log, and when a put
	 *  counts as durable. */
	enum spate_durability durability;
	/** Sequence number of each shard's first record ([shards]), so a
	 *  stream recreated over its logs continues their numbering; NULL = 0. */
	const uint64_t *first_seq;
};

/* Earlier names of enum spate_durability's values, kept for existing users. */
#define SPATE_STREAM_DUR_OFF SPATE_DURABILITY_OFF
#define SPATE_STREAM_DUR_NONE SPATE_DURABILITY_NONE
#define SPATE_STREAM_DUR_INTERVAL SPATE_DURABILITY_INTERVAL
#define SPATE_STREAM_DUR_ALWAYS SPATE_DURABILITY_ALWAYS

/**
 * Shared header of a stream region, at the start of the user area. Ring i
 * lives at rings_off + i * ring_stride from the start of the user area
 * (4 KiB aligned); the checkpoint table at ckpt_off, max_consumers entries of
 * ckpt_stride bytes (128-byte aligned). Written once by the creator; `ready`
 * (SPATE_STREAM_READY) is stored last with release.
 */
struct spate_stream_hdr {
	uint64_t magic;
	uint32_t layout_version;
	uint32_t hdr_size;
	char bus[SPATE_STREAM_NAME_MAX + 1];
	char name[SPATE_STREAM_NAME_MAX + 1];
	uint8_t pad0_[6];
	uint32_t shards;
	uint32_t max_consumers;
	uint64_t rings_off;
	uint64_t ring_stride;
	uint64_t ckpt_off;
	uint64_t ckpt_stride;
	uint64_t total_size;
	uint32_t ready;
	uint32_t durability;     /**< enum spate_durability (fixed size: shared memory) */
	uint64_t dur_off;        /**< per-shard struct spate_stream_dur, 128 bytes each */
	/** Random and non-zero, new at every creation: a stream recreated (from
	 *  its log, or from 0 for a memory-only one) is another incarnation,
	 *  and checkpoints taken in an earlier one are not trusted blindly. */
	uint64_t incarnation;
	/** The engine serving the stream: pid and start time (for liveness);
	 *  0 = none has. Stored by the engine when it opens the stream
	 *  (spate_stream_engine_claim), read by producers and `spate rm`. */
	_Atomic uint32_t engine_pid;
	uint32_t reserved;
	_Atomic uint64_t engine_start;
};

/**
 * Persistence state of one shard, in the stream region (one 128-byte line
 * each, at dur_off). Written only by the shard's persister (the engine
 * thread that writes the ring to the log); read by producers waiting for
 * durability and by monitors.
 */
struct spate_stream_dur {
	_Atomic uint64_t written_seq;  /**< every record below is in the log (readable) */
	_Atomic uint64_t durable_seq;  /**< every record below is on stable storage */
	_Atomic uint32_t futex;        /**< bumped at every change; producers sleep on it */
	_Atomic uint32_t waiters;      /**< producers asleep on futex */
	_Atomic int32_t error;         /**< 0, or the persister's last error (-ENOSPC, -EIO)
					    while it lasts */
	_Atomic uint32_t persister_pid; /**< 0: no persister */
	_Atomic uint64_t persister_start; /**< its start time, for liveness */
	uint64_t first_seq;            /**< the shard's first sequence number in this
					    incarnation (set at creation, then fixed) */
	uint8_t pad_[128 - 48];
};

/**
 * One consumer's checkpoints in the stream region: for each shard, the
 * sequence number of the next record to process (all below are done).
 * UINT64_MAX = none yet. Written by the consumer (release), readable by any
 * monitor (acquire). Entries are claimed, never freed.
 */
struct spate_stream_ckpt {
	_Atomic uint32_t state;  /**< SPATE_STREAM_CKPT_* */
	char consumer[SPATE_STREAM_NAME_MAX + 4];
	uint32_t reserved;
	_Atomic uint64_t next_seq[]; /**< [shards] */
};

/* spate_stream_ckpt.state */
#define SPATE_STREAM_CKPT_FREE 0u
#define SPATE_STREAM_CKPT_USED 1u    /**< consumer name and next_seq[] valid */
#define SPATE_STREAM_CKPT_FILLING 2u /**< claimed, being initialised */

struct spate_stream;

/**
 * Create stream @p name of bus @p bus.
 * @return 0, -EINVAL (bad names or parameters), -EEXIST, -ENOMEM, or the
 *         errors of spate_shm_create() and spate_ring_format().
 */
int spate_stream_create(const char *bus, const char *name, const struct spate_stream_params *p,
			struct spate_stream **out);
/**
 * Attach an existing stream, validating its header and every ring.
 * @return 0, -EINVAL (bad names), -ENOENT, -EBADMSG (corrupt), -EPROTO
 *         (layout version), -EAGAIN (the creator has not finished), -ENOMEM,
 *         or the errors of spate_shm_attach() and spate_ring_open_mem().
 */
int spate_stream_attach(const char *bus, const char *name, struct spate_stream **out);
/** Close the handle (producers and readers on it must be closed). NULL-safe. */
void spate_stream_close(struct spate_stream *s);
/** Remove the stream's name; attached handles stay valid.
 *  @return 0, -EINVAL (bad names), -ENOENT, or another -errno. */
int spate_stream_unlink(const char *bus, const char *name);

/** Number of shards (fixed at creation). */
uint32_t spate_stream_shards(const struct spate_stream *s);
/** The stream's name (valid while the handle is open). */
const char *spate_stream_name(const struct spate_stream *s);
/** The stream's bus name (valid while the handle is open). */
const char *spate_stream_bus(const struct spate_stream *s);
/** The ring of shard @p shard, or NULL if @p shard >= the shard count. */
struct spate_ring *spate_stream_ring(const struct spate_stream *s, uint32_t shard);
/** The region, for its backing description. */
struct spate_shm *spate_stream_shm(const struct spate_stream *s);

/** 32-bit partition-key hash: the high half of XXH3-64 of the key. */
uint32_t spate_key_hash(const void *key, size_t len);

/** Shard owning @p hash in a stream of @p shards shards. */
static inline uint32_t spate_shard_of_hash(uint32_t hash, uint32_t shards)
{
	return (uint32_t)(((uint64_t)hash * shards) >> 32);
}

/** The stream's durability (fixed at creation). */
enum spate_durability spate_stream_durability(const struct spate_stream *s);
/** The stream's incarnation (spate_stream_hdr.incarnation; 0 only for
 *  regions of an earlier layout, which attach refuses anyway). */
uint64_t spate_stream_incarnation(const struct spate_stream *s);

/**
 * Mark this process as the engine serving @p s (pid and start time in the
 * region header). They stay after the engine stops: the region then reads
 * as left by a dead engine. Thread: the engine's.
 */
void spate_stream_engine_claim(struct spate_stream *s);
/**
 * Which engine serves @p s.
 * @return 1 (a live engine: *pid set, this process included), 0 (none ever
 *         claimed it: *pid 0), -ESRCH (the engine that claimed it is dead:
 *         *pid is its pid; the region is left from it).
 */
int spate_stream_engine(const struct spate_stream *s, pid_t *pid);

/** Persistence state of shard @p shard, or NULL if @p shard is out of range. */
struct spate_stream_dur *spate_stream_dur(const struct spate_stream *s, uint32_t shard);

/**
 * Persister side: claim shard @p shard's persistence state for this process
 * (pid and start time, so producers can tell a dead persister), or give it
 * up (@p claim 0). Thread: the engine's.
 */
void spate_stream_dur_claim(struct spate_stream *s, uint32_t shard, int claim);

/**
 * Persister side: publish what shard @p d has written and made durable, or an
 * error (0 clears it), and wake producers waiting for durability. Thread:
 * the shard's persister only.
 */
void spate_stream_dur_publish(struct spate_stream_dur *d, uint64_t written, uint64_t durable,
			      int error);

/**
 * Wait until record @p seq of shard @p shard is durable (in the log and, per
 * the stream's policy, on stable storage: for NONE written to the log,
 * for INTERVAL and ALWAYS fdatasync'ed). Spins briefly, then sleeps on a
 * futex. Any thread, any process.
 * @param timeout_ns UINT64_MAX: no limit.
 * @return 0, -ENOTSUP (the stream has no log), -ENOTCONN (no live persister:
 *         nothing would ever make it durable), -ETIMEDOUT, or the
 *         persister's error while it lasts (-ENOSPC: disk full; the record
 *         stays queued and is written once there is space), -EINVAL.
 */
int spate_stream_wait_durable(struct spate_stream *s, uint32_t shard, uint64_t seq,
			      uint64_t timeout_ns);

/* Checkpoints: the table's entries are read and written through
 * spate/checkpoint.h (spate_stream_ckpt_open, _set, _get). */

/* Producers ---------------------------------------------------------------- */

/** spate_producer_open() flags. */
#define SPATE_PRODUCER_F_FAIL_FULL (1u << 0) /**< -EAGAIN on a full shard, never wait */
#define SPATE_PRODUCER_F_WAIT_FULL (1u << 1) /**< wait on a full shard (default: the stream's
						  SPATE_RING_F_FULL_WAIT) */
#define SPATE_PRODUCER_F_NO_DURABLE_WAIT (1u << 2) /**< on `always` streams, return at
							publication, not durability */

struct spate_producer;

/**
 * Open a producer: a writer on every shard, waiting per @p wait. A waiting
 * writer waits forever; set spate_producer_writer(p, i)->timeout_ns for a
 * bound. Any thread.
 * @return 0, -EINVAL (unknown flags, or both FAIL_FULL and WAIT_FULL),
 *         -EBUSY (single-producer stream already has one, or all writer
 *         slots taken), -ENOTSUP (BLOCK wait on a NO_BLOCKING stream),
 *         -ENOMEM.
 */
int spate_producer_open(struct spate_stream *s, enum spate_ring_wait wait, uint32_t flags,
			struct spate_producer **out);
/** Close it. NULL-safe. */
void spate_producer_close(struct spate_producer *p);

/** Where a record went, or why not (PutRecords' per-entry result). */
struct spate_put_result {
	int error;      /**< 0, -EAGAIN (shard full), -EMSGSIZE (larger than the
			     ring's max record), -ETIMEDOUT, -EINVAL (bad entry) */
	uint32_t shard;
	uint64_t seq;   /**< sequence number within the shard (if error is 0, or
			     if the record was appended but its durability wait
			     failed: see spate_put()) */
};

/** One record for spate_put_batch(). */
struct spate_put_entry {
	const void *key;     /**< partition key bytes (ignored with SPATE_PUT_F_HASH) */
	size_t key_len;
	const void *data;
	size_t len;
	uint32_t hash;       /**< explicit hash with SPATE_PUT_F_HASH */
	uint32_t flags;      /**< SPATE_PUT_F_* */
	uint8_t type;
};
#define SPATE_PUT_F_HASH (1u << 0) /**< use .hash instead of hashing .key */

/**
 * Append one record (type 0) by partition key. Thread: the producer's owner.
 * @p res may be NULL. On a stream with durability `always`
 * (SPATE_DURABILITY_ALWAYS) it returns once the record is durable (see
 * spate_stream_wait_durable(); the shard writer's timeout_ns bounds the
 * wait), unless the producer was opened with SPATE_PRODUCER_F_NO_DURABLE_WAIT.
 * @return 0 (and @p res filled), or the error also stored in res->error:
 *         -EINVAL (NULL key or data with a non-zero length), -EMSGSIZE,
 *         -EAGAIN (shard full, producer does not wait), -ETIMEDOUT; after
 *         the record was appended, the errors of spate_stream_wait_durable()
 *         (-ENOSPC, -EIO, -ENOTCONN, -ETIMEDOUT: appended, res->seq set,
 *         not known to be durable).
 */
int spate_put(struct spate_producer *p, const void *key, size_t key_len, const void *data,
	      size_t len, struct spate_put_result *res);
/** Append one record with an explicit hash (shard = the hash's range).
 *  Same contract and errors as spate_put(). */
int spate_put_hash(struct spate_producer *p, uint32_t hash, const void *data, size_t len,
		   struct spate_put_result *res);
/**
 * Append @p n records, grouped per shard into ring batches (one publication
 * per shard touched), keeping request order within each shard. Every record
 * gets its own result, in request order (PutRecords). A shard's records are
 * split into several batches only beyond half its ring or
 * SPATE_RING_MAX_BATCH_RECORDS records. A record larger than the ring's max
 * record (-EMSGSIZE) or malformed (-EINVAL: NULL key/data with a length,
 * unknown flags) fails alone. Once a shard is full (-EAGAIN, -ETIMEDOUT), its
 * later records in the call fail with the same error, so a retry of the
 * failed records keeps per-key order. On an `always` stream the call
 * returns once every written record is durable (one wait per shard
 * touched); a failed wait becomes that shard's records' error (appended,
 * seq set, not known to be durable). Thread: the producer's owner.
 * @return the number of records that failed (FailedRecordCount; 0 = all
 *         written), or -EINVAL (NULL @p e or @p res with n > 0), -ENOMEM
 *         (nothing written).
 */
int spate_put_batch(struct spate_producer *p, const struct spate_put_entry *e, unsigned n,
		    struct spate_put_result *res);
/** The writer of shard @p shard, for zero-copy reserve/commit (ring.h), or
 *  NULL if @p shard >= the shard count. */
struct spate_ring_writer *spate_producer_writer(struct spate_producer *p, uint32_t shard);
struct spate_stats_shard;
/** Count this producer's batches, refused records and full-shard events in
 *  the counters region: @p shards is the stream's first shard slot
 *  (spate_stats_shard_of(st, stream, 0)); NULL stops counting. Thread: the
 *  producer's owner. */
void spate_producer_set_stats(struct spate_producer *p, struct spate_stats_shard *shards);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_STREAM_H */
