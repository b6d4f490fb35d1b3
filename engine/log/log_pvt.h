/* SPDX-License-Identifier: MIT */
/*
 * log_pvt.h - internals of the log module (engine/log/, never installed):
 * constants of the on-disk format, the writer's state (struct spate_log)
 * and the functions the module's files share. The public API is
 * include/spate/log.h; the format is docs/format.md.
 *
 * Files:
 *   format.c          frames, batches, segment headers, CRC-32C, scans
 *   segments.c        segment files and indexes: list, create, roll, retention
 *   writer.c          open/append/sync/close, the io_uring ring, the write queue
 *   write_buffered.c  the page-cache pipeline (writev SQEs / pwritev + fdatasync)
 *   write_direct.c    the O_DIRECT pipeline (aligned staging buffers, WRITE_FIXED)
 *   recover.c         crash recovery at open
 *   reader.c          history reads with read-ahead
 *   stat.c            spate_log_stat()
 */
#ifndef SPATE_LOG_PVT_H
#define SPATE_LOG_PVT_H

#include "spate/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <isa-l/crc.h>
#include <liburing.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the spate log format is little-endian; big-endian hosts are not supported"
#endif

#define SEG_HDR_SIZE 4096u
#define FRAME_HDR_SIZE 16u
#define IDX_ENT_SIZE 24u
#define DEF_SEGMENT_BYTES (64ull << 20)
#define DEF_INTERVAL_NS (10ull * 1000000ull)
#define DEF_INDEX_EVERY (64u << 10)
#define MIN_SEGMENT_BYTES (SEG_HDR_SIZE + 4096u)
/** Largest batch a frame may carry (the ring's batches are < 2^31). */
#define MAX_FRAME_LEN (1u << 31)
/** Frames written per run (one submit / one pwritev series). */
#define SPATE_LOG_RUN 512u
/** Frames per writev SQE (2 iovecs each). */
#define FRAMES_PER_SQE 64u
#define URING_ENTRIES 16u
/** O_DIRECT staging: STAGE_N buffers of STAGE_BYTES; up to STAGE_N - 1
 *  writes in flight while the next buffer fills (write_direct.c). */
#define STAGE_BYTES (1u << 20)
#define STAGE_N 8u
/** The most bytes a writer may have in flight past its last completed
 *  write: recovery cuts a gap followed only by frames within this window
 *  of it (a crash with writes in flight; recover.c). */
#define INFLIGHT_MAX (16u << 20)
_Static_assert((uint64_t)STAGE_N * STAGE_BYTES <= INFLIGHT_MAX, "in-flight window");
/** The active segment is preallocated (fallocate) this far ahead of the
 *  writer, whole segments up to this size (segments.c). */
#define PREALLOC_BYTES (256ull << 20)
/** Largest O_DIRECT alignment used, and so the most zero padding a segment
 *  may carry after its last frame (docs/format.md). */
#define PAD_MAX 4096u
#define FSYNC_TAG UINT64_MAX
/** A neutralised SQE (its submit failed): its completion is ignored. */
#define NOP_TAG (UINT64_MAX - 1)
/** O_DIRECT unless SPATE_LOG_F_BUFFERED (measured: docs/bench.md). */
#define LOG_DEFAULT_DIRECT 1
#define CLEAN_NAME "CLEAN"
/** The repair journal (damage.c, docs/format.md). */
#define REPAIR_NAME "REPAIR"

/* On-disk segment header: the first 48 bytes of a 4 KiB block. */
struct seg_hdr {
	uint64_t magic;         /* SPATE_LOG_SEG_MAGIC */
	uint32_t version;       /* SPATE_LOG_FORMAT_VERSION */
	uint32_t hdr_size;      /* 4096 */
	uint64_t base_seq;
	uint64_t created_ns;
	uint64_t segment_bytes; /* roll size the writer used */
	uint32_t flags;         /* 0 */
	uint32_t crc;           /* CRC-32C of bytes 0..43 */
};
_Static_assert(sizeof(struct seg_hdr) == 48, "segment header layout");

struct frame_hdr {
	uint32_t magic; /* SPATE_LOG_FRAME_MAGIC */
	uint32_t len;   /* batch bytes */
	uint32_t crc;   /* CRC-32C of len (4 bytes LE) then the batch */
	uint32_t flags; /* 0 */
};
_Static_assert(sizeof(struct frame_hdr) == FRAME_HDR_SIZE, "frame header layout");

struct idx_ent {
	uint64_t seq, ts, off;
};
_Static_assert(sizeof(struct idx_ent) == IDX_ENT_SIZE, "index entry layout");

/* What a segment holds, as found at open or maintained by the writer. */
struct seg_info {
	uint64_t base;    /* base_seq (from the name and header) */
	uint64_t end_seq; /* sequence after its last record */
	uint64_t size;    /* bytes, header included */
	uint64_t last_ts; /* newest batch ts (0: no frame) */
};

/* One appended batch waiting to be written. */
struct log_q {
	const uint8_t *batch;
	struct frame_hdr fh;  /* crc filled by spate_log_q_crc() */
	uint32_t count;
	int crc_done;
	uint64_t base_seq, ts;
};

/* O_DIRECT: one staging buffer. */
struct dio_slot {
	uint64_t off;  /* file offset of its byte 0 (aligned) */
	uint32_t fill; /* bytes staged */
	uint32_t from; /* the write (or its retry) covers [from, len) */
	uint32_t len;  /* fill zero-padded to dio_align, once submitted */
	int state;     /* SLOT_* */
	int res;       /* SLOT_DONE: the write's result */
};

/* O_DIRECT: a frame copied into staging, not yet known written. */
struct dio_frame {
	uint64_t off, base_seq, ts;
	uint32_t count, len;
};

/* The io_uring ring both pipelines submit through (one per log). */
struct log_uring {
	int on;               /* 0: pwrite(v) + fdatasync */
	unsigned flags;       /* IORING_SETUP_* it was created with */
	pid_t tid;            /* SINGLE_ISSUER: the thread that owns it */
	struct io_uring ring;
	int bufs_fixed;       /* O_DIRECT staging registered: WRITE_FIXED */
	int files_fixed;      /* one-slot registered file table */
	uint64_t fixed_gen;   /* the registered slot holds the segment of this generation */
};

/* The page-cache pipeline (write_buffered.c): frames go out as iovecs
 * straight from the caller's batches. */
struct log_pc {
	struct iovec iov[2 * SPATE_LOG_RUN];
};

/* The O_DIRECT pipeline (write_direct.c): frames are copied into one
 * aligned staging slot while up to STAGE_N - 1 others are written;
 * spate_log_sync() may return with writes in flight. The last partial
 * block of the segment (tail) is rewritten by the next write. */
struct log_dio {
	uint32_t align;       /* offset/length alignment (STATX_DIOALIGN), <= PAD_MAX */
	uint8_t *stage;       /* STAGE_N * STAGE_BYTES, PAD_MAX-aligned */
	uint8_t *tail;        /* bytes [size - tail_len, size) of the active segment */
	uint32_t tail_len;    /* active segment size % align */
	struct dio_slot slot[STAGE_N];
	/* Slots written, in file order (issue order): BUSY, DONE (completed,
	 * waiting for an earlier one), FAILED or REDO; booked from the head. */
	int ord[STAGE_N];
	unsigned ord_h, ord_n;
	unsigned nbusy;             /* writes in flight */
	uint64_t issued_end;        /* end of the last write issued */
	int fill_i, fail_i;         /* slot being filled / the head that failed, or -1 */
	int fsync_done, fsync_res; /* the fdatasync behind the last write (dio_issue) */
	int io_err;                 /* why fail_i failed */
	uint64_t stage_end;         /* active segment offset after the last staged frame */
	uint64_t fill_next;         /* next slot's offset after a full one, or UINT64_MAX */
	uint64_t q_part;            /* bytes of q[0] already staged (an interrupted frame) */
	struct dio_frame *stg;      /* staged frames [stg_h, stg_n) not yet written */
	size_t stg_h, stg_n, stg_cap;
};

/* One open log: segments, the queue, the positions, and the state of the
 * pipeline that writes the active segment (dio when seg_direct, else pc). */
struct spate_log {
	char *dir;
	int dirfd;
	struct spate_log_params p;
	struct seg_info *segs; /* sorted; the last one is the active one */
	size_t nsegs, segs_cap;
	int seg_fd, idx_fd;    /* active segment, or -1 */
	uint32_t seg_ver;      /* format version of the active segment's header */
	uint64_t seg_gen;      /* bumped whenever seg_fd changes */
	uint64_t idx_n;        /* entries in the active index */
	uint64_t idx_last_off; /* offset of the last indexed frame */
	struct idx_ent *idxq;  /* index entries not yet written to the .idx */
	size_t idxq_n, idxq_cap;
	struct log_q *q;       /* appended, not yet written (or staged) */
	size_t qn, qcap;
	uint64_t next_seq, written_seq, durable_seq;
	uint64_t last_commit_ns;
	int have_records; /* 0: empty log, the first append sets the sequence */
	int direct;       /* 1: new segments are written with O_DIRECT */
	int seg_direct;   /* 1: the active segment is (a version-1 one is not) */
	struct log_uring uring;
	struct log_pc pc;
	struct log_dio dio;
	/* fsync failures (fsyncgate): an fdatasync that fails loses the
	 * pages it covered, so it is never retried as such. */
	int sync_err;          /* an fdatasync of the active segment failed in this call */
	int failed;            /* sticky: covered data no longer in memory (-EIO) */
	uint64_t durable_off;  /* active segment size at durable_seq ... */
	uint64_t durable_gen;  /* ... valid while seg_gen is this */
	uint64_t prealloc_end; /* the active segment is allocated up to here */
};

struct frame_info {
	uint32_t len, count;
	uint64_t base_seq, ts;
};

/* Scan state of one segment. */
struct scan {
	uint64_t off;      /* where the scan stopped (end of the last good frame) */
	uint64_t next_seq; /* sequence after the last good frame */
	uint64_t last_ts;
	const char *why;   /* why it stopped before the end, or NULL */
	struct idx_ent *ents; /* index entries built (if asked) */
	size_t nents, cap;
};

/* Slot states: a staging buffer is free, being filled, being written,
 * written (DONE: waiting for the writes before it to be booked), or holds a
 * write that failed or came up short (FAILED) or one issued after such a
 * write (REDO): both are written again, in order, before anything else. */
enum { SLOT_FREE = 0, SLOT_FILL, SLOT_BUSY, SLOT_DONE, SLOT_FAILED, SLOT_REDO };

/* One line of the repair journal: damage at (seg, off) where seq was
 * expected is skipped; the log goes on at (rseg, roff) with rseq. */
struct spate_log_skip {
	uint64_t seg, off, seq;
	uint64_t rseg, roff, rseq;
};

struct spate_log_journal {
	struct spate_log_skip *v;
	size_t n;
};

/* Every fdatasync result of the writer goes through LOG_SYNC(): a test
 * build (-DSPATE_LOG_FAULTS, tests/meson.build) can make them fail. */
#ifdef SPATE_LOG_FAULTS
int spate_log_fault_sync(int res);
#define LOG_SYNC(res) spate_log_fault_sync(res)
#else
#define LOG_SYNC(res) (res)
#endif

/* fdatasync(@p fd): 0 or -errno. */
static inline int spate_log_datasync(int fd)
{
	return LOG_SYNC(fdatasync(fd) < 0 ? -errno : 0);
}

/* Shared by the module's files; hidden from the library's users (the
 * version script exports only spate/log.h). */
#pragma GCC visibility push(hidden)

/* format.c */
uint32_t spate_log_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t spate_log_frame_crc(uint32_t len, const void *batch);
void spate_log_seg_name(char *buf, size_t sz, uint64_t base, const char *ext);
void spate_log_msg_add(char *msg, size_t sz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int spate_log_pread_full(int fd, void *buf, size_t len, uint64_t off);
int spate_log_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int spate_log_parse_name(const char *name, const char *ext, uint64_t *base);
int spate_log_check_batch(const uint8_t *b, uint64_t len, uint32_t *count, uint64_t *base_seq,
		       uint64_t *ts, const char **why);
int spate_log_read_frame(int fd, uint64_t off, uint64_t fsize, uint8_t **buf, size_t *cap,
		      struct frame_info *fi, const char **why);
uint64_t spate_log_file_size(int fd);
int spate_log_read_seg_hdr(int fd, uint64_t base, const char **why, uint32_t *ver);
int spate_log_scan_frames(int fd, uint64_t off, uint64_t seq, uint64_t fsize, uint32_t every,
		       struct scan *sc, uint8_t **buf, size_t *cap);
int spate_log_valid_frame_after(int fd, uint64_t off, uint64_t fsize, uint8_t **buf, size_t *cap);
int spate_log_valid_frame_from(int fd, uint64_t off, uint64_t fsize, uint8_t **buf, size_t *cap, uint64_t *at);
/* First 8-aligned position >= @p o holding the frame magic (holes skipped).
 * @return 1 (*at), 0 (none before the end), -errno. */
int spate_log_next_magic(int fd, uint64_t o, uint64_t fsize, uint64_t *at);
/* Does @p p (@p len bytes found at file offset @p off) hold an aligned
 * 512-byte sector, or the part of one it holds from a sector boundary on,
 * all zeros: bytes not written yet (a write in flight), or never (a crash;
 * recovery cuts them)? 1 or 0. */
int spate_log_zero_sector_mem(const uint8_t *p, uint64_t off, uint64_t len);
/* The frame at file offset @p off (header @p fh, batch @p body) has not
 * fully landed: a sector of zeros in its body, or its header straddles a
 * sector boundary and everything from that boundary to the next one is
 * zero (the block with the header's start was written, the next not: a
 * write cut short by a full disk, or still in flight). 1 or 0. */
int spate_log_frame_unlanded(const struct frame_hdr *fh, const uint8_t *body, uint64_t off);
int spate_log_torn_in_flight(int fd, uint64_t g, uint64_t fsize, uint8_t **buf, size_t *cap);

/* segments.c */
int spate_log_list_segs(int dirfd, uint64_t **out, size_t *n, int clean_tmp);
int spate_log_load_index(int dirfd, uint64_t base, struct idx_ent **out, size_t *n);
int spate_log_index_plausible(const struct idx_ent *e, size_t n, uint64_t base, uint64_t fsize);
int spate_log_write_index(int dirfd, uint64_t base, const struct idx_ent *e, size_t n, mode_t mode);
mode_t spate_log_file_mode(const struct spate_log_params *p);
mode_t spate_log_dir_mode(const struct spate_log_params *p);
int spate_log_create_file(int dirfd, const char *name, int flags, mode_t mode);
int spate_log_fsync_dir(int dirfd);
void spate_log_unlink_seg(int dirfd, uint64_t base);
int spate_log_segs_push(struct spate_log *l, struct seg_info si);
void spate_log_close_active(struct spate_log *l);
int spate_log_create_segment(struct spate_log *l, uint64_t base);
void spate_log_idx_flush(struct spate_log *l);
void spate_log_frame_written(struct spate_log *l, const struct log_q *q, uint64_t off);
void spate_log_prealloc(struct spate_log *l, uint64_t need);
int spate_log_trim_active(struct spate_log *l);
int spate_log_roll_segment(struct spate_log *l);
void spate_log_apply_retention(struct spate_log *l);

/* write_buffered.c */
int spate_log_io_write(struct spate_log *l, const struct iovec *iov, unsigned niov, uint64_t off,
		    int want_sync, uint64_t *written, int *synced);
int spate_log_io_datasync(struct spate_log *l);
int spate_log_pc_run(struct spate_log *l, size_t *h, uint64_t *part, int want_sync, int *synced);

/* write_direct.c */
int spate_log_dio_enable(int fd);
int spate_log_dio_setup(struct spate_log *l, char *why, size_t wsz);
int spate_log_dio_load_tail(struct spate_log *l);
int spate_log_dio_reap(struct spate_log *l, int wait);
void spate_log_dio_wait_busy(struct spate_log *l);
int spate_log_dio_stage(struct spate_log *l, size_t *h);
int spate_log_dio_flush(struct spate_log *l, int wait, int want_sync, int *synced);
int spate_log_dio_prepare(struct spate_log *l);
void spate_log_dio_rewind(struct spate_log *l);

/* writer.c */
int spate_log_uring_own(struct spate_log *l);
void spate_log_q_crc(struct log_q *q);

/* recover.c */
int spate_log_recover(struct spate_log *l, struct spate_log_recovery *rep);

/* reader.c */
uint64_t spate_log_seg_first_ts(int dirfd, uint64_t base);

/* stat.c */

/* damage.c */
int spate_log_zero_tail(int fd, uint64_t off, uint64_t fsize);
int spate_log_journal_load(int dirfd, struct spate_log_journal *j);
void spate_log_journal_free(struct spate_log_journal *j);
const struct spate_log_skip *spate_log_journal_find(const struct spate_log_journal *j, uint64_t seg,
						     uint64_t off, uint64_t seq);
/* 1 if @p s resumes after its damage (in @p bases): honouring it makes progress. */
int spate_log_skip_forward(const struct spate_log_skip *s, const uint64_t *bases, size_t n);
/* Fill d->resume_*: the first valid frame with base_seq >= d->seq at or
 * after @p off of segment @p i (open as @p fd, or -1), else in a later
 * segment (UINT64_MAX: none). @return 1, 0 (none), -errno. */
int spate_log_find_resume(int dirfd, const uint64_t *bases, size_t n, size_t i, int fd, uint64_t off,
			  struct spate_log_damage *d, uint8_t **buf, size_t *cap);

#pragma GCC visibility pop

#endif /* SPATE_LOG_PVT_H */
