/* SPDX-License-Identifier: MIT */
/**
 * @file spate/log.h
 * @brief The durable log of one shard: segment files written with io_uring,
 *        a sparse index, crash recovery, history reads.
 *
 * A shard's log is a directory of segments `<base_seq, 20 digits>.seg`, each
 * with an index `<base_seq>.idx`. A segment is a 4 KiB header followed by
 * frames; a frame is a 16-byte frame header (magic, length, CRC-32C of the
 * rest, flags) followed by one ring batch exactly as the ring holds it
 * (struct spate_ring_bhdr, then records), so a batch goes from shared memory
 * to disk without being re-encoded. docs/format.md is the versioned
 * specification.
 *
 * Threads: one thread appends and syncs a struct spate_log at a time (best
 * always the same one: with IORING_SETUP_SINGLE_ISSUER the io_uring ring is
 * recreated when another thread syncs); any number of readers (struct
 * spate_log_reader) may read concurrently, from this process or others, up
 * to the written position.
 */
#ifndef SPATE_LOG_H
#define SPATE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "spate/durability.h"
#include "spate/ring.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SPATE_LOG_SEG_MAGIC 0x47455345544150ULL /* "PATESEG" */
/** Version written; readers accept 1 and 2 (2 = 1 plus zero padding after
 *  the last frame, docs/format.md). */
#define SPATE_LOG_FORMAT_VERSION 2u
#define SPATE_LOG_FORMAT_MIN_VERSION 1u
#define SPATE_LOG_FRAME_MAGIC 0x46525053u /* "SPRF" */

/** Parameters of a log. Zero-initialise; 0 means the default. */
struct spate_log_params {
	uint64_t segment_bytes;   /**< roll a segment past this size (default 64 MiB) */
	/** When appended data is made durable: NONE (fdatasync only at close
	 *  and when a segment rolls), INTERVAL (a group commit every
	 *  interval_ns), ALWAYS (every spate_log_sync() is a group commit).
	 *  OFF (0, the zero value) is taken as NONE: a log is open. */
	enum spate_durability durability;
	uint64_t interval_ns;     /**< with INTERVAL (default 10 ms) */
	uint64_t retention_ns;    /**< delete segments whose newest record is older (0 = keep) */
	uint64_t retention_bytes; /**< keep at most this many bytes of segments (0 = no limit) */
	uint32_t index_every;     /**< index one frame per this many bytes (default 64 KiB) */
	uint32_t flags;           /**< SPATE_LOG_F_* */
};

#define SPATE_LOG_F_NO_URING (1u << 0) /**< use pwrite + fdatasync, not io_uring */
#define SPATE_LOG_F_DIRECT (1u << 1)   /**< O_DIRECT where the file system reports an
					    alignment (statx STATX_DIOALIGN); the default
					    unless SPATE_LOG_F_BUFFERED. Frames are copied
					    into two 2 MiB aligned staging buffers per open
					    log, registered with io_uring (WRITE_FIXED):
					    one is written while the other fills, also
					    across spate_log_sync() calls; segments may end
					    with < 4096 zero bytes while written (format
					    version 2) */
#define SPATE_LOG_F_REPAIR (1u << 2)   /**< open: cut at mid-segment corruption instead of refusing */
#define SPATE_LOG_F_GROUP_WRITE (1u << 4) /**< files 0660 in 0770 directories instead of
					       0640 in 0750 (whatever the umask) */
#define SPATE_LOG_F_BUFFERED (1u << 3) /**< write through the page cache even where O_DIRECT works
					    (straight from the caller's batches, no copy) */

/** What opening a log found and did. */
struct spate_log_recovery {
	uint32_t segments;        /**< segments found */
	int clean;                /**< 1: a clean-shutdown marker, and the scan ended where it says */
	uint64_t first_seq;       /**< oldest retained sequence number (UINT64_MAX: empty) */
	uint64_t next_seq;        /**< the sequence number the next append must carry */
	uint64_t truncated_bytes; /**< bytes cut from a torn or corrupt tail */
	uint64_t truncated_at;    /**< file offset of the cut in the last segment */
	char message[256];        /**< what was cut and why, or "" */
	int io_uring;             /**< 1 if writes go through io_uring, 0 pwrite (and why in message) */
	int direct;               /**< 1 if segments are written with O_DIRECT, 0 page cache (why in message) */
	uint32_t dio_align;       /**< with direct: file offset and length alignment (statx STATX_DIOALIGN) */
	int fixed_buffers;        /**< with direct and io_uring: staging buffers registered (WRITE_FIXED) */
	uint64_t repaired;        /**< records skipped per the repair journal (operator decisions;
				       the message says where) */
};

struct spate_log;
struct spate_log_reader;

/**
 * Open (creating if absent) the log in @p dir, recovering it: read and
 * CRC-check every frame of every segment, truncate a torn or corrupt tail
 * of the last segment and report it
 * (zero padding after the last frame, left by an O_DIRECT writer, is the
 * end of the log and is dropped silently),
 * rebuild missing or stale indexes, restore the next sequence number. A
 * corrupt frame before the last segment's tail, or any other damage
 * (struct spate_log_damage), is refused (-EBADMSG, the message says where)
 * unless the repair journal skips it (then reported in rep->repaired and
 * the message) or SPATE_LOG_F_REPAIR (cut there, drop what follows).
 * @p rep (may be NULL) says what was found and cut, and whether writes go
 * through io_uring. The directory is created if missing.
 * @return 0, -EBADMSG, -EPROTO (format version), -EINVAL, -ENOMEM,
 *         -EACCES/-errno.
 */
int spate_log_open(const char *dir, const struct spate_log_params *p, struct spate_log **out,
		   struct spate_log_recovery *rep);

/**
 * Write and fdatasync everything queued or staged (and the write in
 * flight), write the clean-shutdown marker (only if that all succeeded),
 * free @p l. NULL-safe.
 * @return 0 or -errno (-ENOSPC: queued or staged batches were lost; no
 *         marker).
 */
int spate_log_close(struct spate_log *l);

/** Sequence number the next appended batch must start with (everything
 *  below it was appended; not necessarily written yet, see
 *  spate_log_written_seq()). */
uint64_t spate_log_next_seq(const struct spate_log *l);
/**
 * Everything below this sequence number is written to the segment files
 * (readers can read it; it survives the death of this process, not a power
 * loss unless durable). With O_DIRECT, spate_log_sync() without an
 * fdatasync due returns once the batches are copied into the staging
 * buffers, with up to 7 writes of 1 MiB in flight and a last partial buffer
 * possibly held back while they are: then this lags spate_log_next_seq()
 * until a later spate_log_sync() (one with nothing appended since writes
 * and waits for everything) or spate_log_close(). It only ever covers a
 * prefix of the log with no gap (writes completing out of order are
 * booked in file order). Otherwise it
 * equals spate_log_next_seq() after a successful spate_log_sync().
 */
uint64_t spate_log_written_seq(const struct spate_log *l);
/** Change the log's retention age (0 = keep) from any thread: the writer
 *  applies it at its next segment roll or retention pass. */
void spate_log_set_retention(struct spate_log *l, uint64_t retention_ns);
/** Everything below this sequence number is durable (an fdatasync
 *  completed after it was written); never more than spate_log_written_seq(). */
uint64_t spate_log_durable_seq(const struct spate_log *l);
/** Oldest retained sequence number (UINT64_MAX if the log is empty). */
uint64_t spate_log_first_seq(const struct spate_log *l);

/**
 * Append one ring batch (struct spate_ring_bhdr + records, @p len bytes, as
 * found in the ring between two batch boundaries; PAD batches are refused).
 * Its base_seq must equal spate_log_next_seq(), except for the first batch
 * of a log that has no segment yet, which sets the log's first sequence
 * number. The bytes are queued for
 * writing; through the page cache they are written straight from @p batch
 * (with O_DIRECT they are copied into staging during the sync), so it must
 * stay unchanged until the next spate_log_sync() returns 0 (ring memory
 * that a gating reader has not released qualifies); after that it may be
 * reused even if the log has not written it yet (spate_log_written_seq()).
 * Nothing is written here (spate_log_sync() writes), so a full disk is
 * reported by spate_log_sync().
 * @return 0, -EINVAL (not a data batch, bad length, NULL), -ERANGE (base_seq
 *         is not next_seq), -ENOMEM.
 */
int spate_log_append(struct spate_log *l, const void *batch, size_t len);

/**
 * Write what was appended and, per the durability policy, make it durable
 * (ALWAYS: always; INTERVAL: when interval_ns has passed since the last
 * commit; NONE: never here). Rolls segments (a segment is always made
 * durable before the next is started), applies retention.
 *
 * With O_DIRECT and no fdatasync due, returns once every appended batch is
 * copied into the staging buffers and every full buffer submitted (up to 7
 * writes in flight; the disk writes them while the caller gathers the
 * next group; a last partial buffer is held back while writes are in
 * flight and filled further by the next call): the appended memory may be
 * reused, spate_log_written_seq() tells what reached the file. The next
 * call reaps completed writes first (and reports a failure); a call with
 * nothing appended since writes everything and waits for it. When an fdatasync is due, returns
 * only once it completed, after every appended batch was written.
 * @param durable if not NULL, receives spate_log_durable_seq() on success.
 * @return 0, -ENOSPC (disk full, now or for the write left in flight by the
 *         previous call: the segment is cut back to its last whole frame,
 *         staged batches stay staged and unstaged ones queued, none lost;
 *         call again once there is space), -EIO (an fdatasync failed: what it
 *         covered is written again by the next call if every frame since
 *         the durable point is still appended and held, else the log stays
 *         failed and every later call returns -EIO; docs/format.md),
 *         -EINVAL (NULL), -errno.
 */
int spate_log_sync(struct spate_log *l, uint64_t *durable);

/** Where a reader starts. */
enum spate_log_from {
	SPATE_LOG_FROM_OLDEST = 0,
	SPATE_LOG_FROM_SEQ = 1,  /**< first record with seq >= arg */
	SPATE_LOG_FROM_TIME = 2, /**< first record with ts >= arg (ns) */
};

/**
 * Open a reader on the log in @p dir (read-only; works beside a writer in
 * another process). Seeks through the sparse index in O(log n).
 * @return 0, -ENOENT, -EBADMSG, -errno.
 */
int spate_log_reader_open(const char *dir, enum spate_log_from from, uint64_t arg,
			  struct spate_log_reader **out);
/**
 * Up to @p max records from the current position, from one batch at most;
 * views point into the reader's buffer and stay valid until the next call. A reader whose position was deleted by retention moves to the
 * oldest retained record and reports the gap in @p skipped (may be NULL).
 * Damage (a bad frame, a sequence jump or repeat, bytes that are not a
 * frame in a completed segment, a gap between segments) is never skipped
 * nor reported as retention: the read returns -EBADMSG, stays there, and
 * spate_log_reader_damage() says where; ranges the repair journal skips are
 * passed and counted in @p skipped and spate_log_reader_repaired().
 * @return the number of records (0: at the end of what is written),
 *         -EBADMSG (damage), -errno.
 */
int spate_log_read(struct spate_log_reader *rd, struct spate_ring_rec *out, unsigned max,
		   uint64_t *skipped);

#define SPATE_LOG_RD_F_PREAD (1u << 0)     /**< read ahead with pread, on demand, not io_uring */
#define SPATE_LOG_RD_F_PER_FRAME (1u << 1) /**< no read-ahead: two preads per frame and an fstat
					        per batch (the reader before io_uring; kept as the
					        baseline of `spate bench replay`) */

/**
 * spate_log_reader_open() with SPATE_LOG_RD_F_* @p flags. By default the
 * reader keeps its own io_uring (plain setup, created at the first read)
 * with 4 reads of 512 KiB in flight ahead of the parse position, and
 * parses frames out of those chunks (a frame across chunks is copied);
 * where io_uring is refused it reads the same chunks with pread
 * (spate_log_reader_uring() says so). It checks whether its segment was
 * deleted at the end of the data and every 16 MiB, not per batch.
 * @return 0, -ENOENT, -EBADMSG, -EINVAL (unknown flag), -errno.
 */
int spate_log_reader_open_flags(const char *dir, enum spate_log_from from, uint64_t arg, uint32_t flags,
				struct spate_log_reader **out);
/**
 * How @p rd reads (sets its io_uring up if not done yet).
 * @param err if not NULL, receives the -errno of io_uring_queue_init (or of
 *        a refused submit) when io_uring was refused, else 0.
 * @return 1 io_uring with read-ahead, 0 pread (asked for, or refused),
 *         -EINVAL (NULL).
 */
int spate_log_reader_uring(struct spate_log_reader *rd, int *err);
void spate_log_reader_close(struct spate_log_reader *rd);

/**
 * A damaged range of a log: where reading must stop, and the next frame
 * that continues the log. Damage is a frame that fails its checks (CRC,
 * layout), bytes that are not frames before the end of a completed
 * segment, a frame whose sequence number does not continue the previous
 * one (dropped, duplicated or swapped frames), a bad segment header, or a
 * segment that does not start where the previous one ended. Never
 * retention: retention deletes whole segments, oldest first.
 */
struct spate_log_damage {
	uint64_t segment;        /**< base_seq of the segment (its file name) */
	uint64_t offset;         /**< file offset where the damage starts */
	uint64_t seq;            /**< the sequence number expected there */
	uint64_t resume_segment; /**< segment of the next frame that continues the log
				      (its base_seq >= seq), UINT64_MAX: none */
	uint64_t resume_offset;  /**< its offset */
	uint64_t resume_seq;     /**< its base_seq: [seq, resume_seq) is lost */
	int repaired;            /**< 1: the repair journal skips it (an operator decision) */
	char why[96];            /**< what is wrong there */
};

/**
 * Why the last spate_log_read() on @p rd returned -EBADMSG.
 * @return 1 (@p d filled: the reader stays at the damage, and reports it
 *         again until `spate log repair` records a skip over it), 0 (no
 *         damage), -EINVAL.
 */
int spate_log_reader_damage(const struct spate_log_reader *rd, struct spate_log_damage *d);
/** Records @p rd skipped over ranges the repair journal skips (they are
 *  also counted in spate_log_read()'s @p skipped). */
uint64_t spate_log_reader_repaired(const struct spate_log_reader *rd);

/** What spate_log_verify() read. */
struct spate_log_verify {
	uint32_t segments;
	uint64_t frames, records, bytes; /**< valid, in sequence (payload bytes) */
	uint64_t first_seq, next_seq;    /**< first record, sequence after the last (UINT64_MAX: none) */
	uint32_t damaged;                /**< damaged ranges no repair skips */
	uint32_t repaired;               /**< damaged ranges the repair journal skips */
	uint64_t lost;                   /**< records in the damaged ranges (both kinds) */
};

/**
 * Read every frame of every segment of the log in @p dir (read-only) and
 * check it: CRC-32C, layout, sequence continuity within and across
 * segments. Calls @p cb (may be NULL) for every damaged range, in log
 * order, then goes on at the range's resume point.
 * @return 0 (no damage outside repaired ranges), the number of damaged
 *         ranges that are not repaired (> 0), -errno.
 */
int spate_log_verify(const char *dir, struct spate_log_verify *v,
		     void (*cb)(const struct spate_log_damage *d, void *arg), void *arg);

/**
 * Record in the log's repair journal (`REPAIR` in @p dir, docs/format.md)
 * that the damaged range @p d (as reported by spate_log_verify() or
 * spate_log_reader_damage()) is skipped: readers and recovery go on at its
 * resume point, reporting the records skipped; verify reports it as
 * repaired. @p note (may be NULL) is kept with it.
 * @return 0, -EINVAL (@p d has no resume point), -EEXIST (already
 *         recorded), -errno.
 */
int spate_log_repair(const char *dir, const struct spate_log_damage *d, const char *note);

/** Counts for `spate log stats`. */
struct spate_log_stats {
	uint32_t segments;
	uint64_t bytes;
	uint64_t first_seq, next_seq;
	uint64_t first_ts, last_ts;
};
/** Scan @p dir (read-only) and fill @p st. @return 0 or -errno. */
int spate_log_stat(const char *dir, struct spate_log_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_LOG_H */
