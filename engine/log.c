/* SPDX-License-Identifier: MIT */
/*
 * log.c - the durable log of one shard (see spate/log.h, docs/format.md).
 *
 * Design: a directory of segment files, each a 4 KiB header then frames; a
 * frame is a 16-byte frame header and one ring batch byte for byte, so the
 * writer never re-encodes: spate_log_append() only queues a pointer to the
 * caller's batch, and spate_log_sync() writes the queue.
 *
 * O_DIRECT (the default where statx reports STATX_DIOALIGN): the page cache
 * costs more than the disk here (a buffered writer reached 0.26-0.66x of
 * the raw O_DIRECT bandwidth), so frames are copied (CRC-32C computed on the
 * way, while the disk writes the previous buffer) into two aligned 2 MiB
 * staging buffers registered with io_uring and written with WRITE_FIXED
 * through a registered file. One write is in flight while the other buffer
 * fills, also across spate_log_sync() calls: without an fdatasync due,
 * sync returns once the frames are copied and the last buffer submitted,
 * and the next call stages its frames while that write runs (reaping it
 * before submitting the next), so the disk does not wait for the caller.
 * Frames staged but not yet written are listed (l->stg) and booked
 * (written_seq, sizes, index) as their writes complete. ext4 runs direct
 * writes that extend a file one after another
 * anyway (appending 1 MiB writes: depth 1 = depth 16 here), and in-order
 * completion means a killed writer leaves a prefix on disk; with 8 in
 * flight, a SIGKILL left a hole followed by later frames, which recovery
 * must refuse as corruption. The run's last block is zero-padded to the
 * alignment and kept (l->tail): the next run starts by rewriting it. So a
 * segment may end with < 4096 zero bytes after its last frame (format
 * version 2), which readers and recovery take as the end. When the policy
 * asks for it, an fdatasync is linked (IOSQE_IO_LINK) behind the last write
 * in the same submit. A failed or short write: the written prefix is kept,
 * the segment cut back to its last whole frame, the partial block re-read,
 * the rest stays queued; a failed write whose frames were already staged
 * (and released by the caller) is written again from its staging buffer by
 * the next call (dio_settle), before anything after it.
 *
 * Page cache (BUFFERED, or no O_DIRECT): the queue goes out as iovecs (frame
 * header from the queue entry, batch straight from ring memory); with
 * io_uring, a run of up to SPATE_LOG_RUN frames goes out as linked writev
 * SQEs (64 frames each) in one submit, with IORING_OP_FSYNC (DATASYNC)
 * linked behind the last write when the durability policy asks for it; a
 * short write breaks the link, the written prefix is kept and the rest is
 * retried. Without io_uring, pwritev + fdatasync do the same (and with
 * O_DIRECT, pwrite of the staging buffers); the open report says which.
 * Each segment has a sparse index (<base>.idx, {seq, ts, offset} per
 * index_every bytes) that is written to the page cache only: it is an
 * accelerator, verified and rebuilt at open, never trusted for durability.
 *
 * Recovery: open lists the segments, checks every header, checks each
 * earlier segment from its last index entry to its end (and that sequence
 * numbers continue across segments), and scans the last segment frame by
 * frame (skipped after a clean close: the CLEAN marker, which open removes).
 * A bad frame in the last segment is a torn tail and is cut, unless a valid
 * frame follows it (then it is mid-segment corruption: -EBADMSG, or with
 * SPATE_LOG_F_REPAIR a cut that also drops what follows).
 *
 * Trade-offs and limits:
 *  - Rolling a segment always fdatasyncs the old one (even with durability
 *    NONE), so only the last segment can ever have a torn tail.
 *  - New segments are created as <base>.seg.tmp, header written, renamed:
 *    a crash never leaves a segment without a header.
 *  - With SINGLE_ISSUER the ring belongs to one thread; if spate_log_sync()
 *    is called from another thread than the last one, the write in flight
 *    is waited for and the ring recreated (cheap, and rare: one persistence
 *    thread per log). No DEFER_TASKRUN: it would forbid that wait.
 *  - After a power loss, unsynced pages may land out of order, so a hole
 *    followed by a valid frame in the unsynced tail is refused like
 *    mid-segment corruption (needs REPAIR); a process crash cannot do that.
 *  - O_DIRECT copies every byte once (memcpy, ~10 GB/s, beside the disk's
 *    ~1-2 GB/s). spate_log_sync() does not wait for its last write unless
 *    an fdatasync is due, so spate_log_written_seq() may lag next_seq by up
 *    to a staging buffer until the next call. One write in flight suits
 *    appending on ext4; a device or file system that gains from parallel
 *    appends would want more (and then ordered completion by other means).
 *    Alignments above 4096 (PAD_MAX) fall back to the page cache.
 *  - Readers see frames once they are written (buffered reads see completed
 *    O_DIRECT writes on ext4; a stale page left by a racing read is dropped
 *    with POSIX_FADV_DONTNEED); a frame being written while read fails its
 *    CRC and is re-read for up to ~50 ms first; a zero frame header means
 *    "not written yet".
 *  - FROM_TIME assumes batch timestamps do not decrease along the log.
 *  - Little-endian hosts only (the format is little-endian).
 */
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
/** O_DIRECT staging: STAGE_N buffers of STAGE_BYTES, written in turn, one
 *  write in flight while the next buffer fills (1 MiB buffers measured the
 *  same; 8 in flight too, see the file comment). */
#define STAGE_BYTES (2u << 20)
#define STAGE_N 2u
/** Largest O_DIRECT alignment used, and so the most zero padding a segment
 *  may carry after its last frame (docs/format.md). */
#define PAD_MAX 4096u
#define FSYNC_TAG UINT64_MAX
/** A neutralised SQE (its submit failed): its completion is ignored. */
#define NOP_TAG (UINT64_MAX - 1)
/** O_DIRECT unless SPATE_LOG_F_BUFFERED (measured: docs/bench.md). */
#define LOG_DEFAULT_DIRECT 1
#define CLEAN_NAME "CLEAN"

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
	struct frame_hdr fh;  /* crc filled by q_crc() */
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
};

/* O_DIRECT: a frame copied into staging, not yet known written. */
struct dio_frame {
	uint64_t off, base_seq, ts;
	uint32_t count, len;
};

struct spate_log {
	char *dir;
	int dirfd;
	struct spate_log_params p;
	struct seg_info *segs; /* sorted; the last one is the active one */
	size_t nsegs, segs_cap;
	int seg_fd, idx_fd;    /* active segment, or -1 */
	uint64_t idx_n;        /* entries in the active index */
	uint64_t idx_last_off; /* offset of the last indexed frame */
	struct log_q *q;
	size_t qn, qcap;
	uint64_t next_seq, written_seq, durable_seq;
	uint64_t last_commit_ns;
	int have_records; /* 0: empty log, the first append sets the sequence */
	int use_uring;
	unsigned uring_flags;
	pid_t uring_tid;
	struct io_uring ring;
	struct iovec iov[2 * SPATE_LOG_RUN];
	/* O_DIRECT: frames are copied into aligned staging buffers; the last
	 * partial block of the segment (tail) is rewritten by the next write. */
	int direct;           /* 1: new segments are written with O_DIRECT */
	int seg_direct;       /* 1: the active segment is (a version-1 one is not) */
	uint32_t dio_align;   /* offset/length alignment (STATX_DIOALIGN), <= PAD_MAX */
	uint8_t *stage;       /* STAGE_N * STAGE_BYTES, PAD_MAX-aligned */
	uint8_t *tail;        /* bytes [size - tail_len, size) of the active segment */
	uint32_t tail_len;    /* active segment size % dio_align */
	int bufs_fixed;       /* stage registered with io_uring: WRITE_FIXED */
	int files_fixed;      /* one-slot registered file table */
	uint32_t seg_ver;     /* format version of the active segment's header */
	uint64_t seg_gen;     /* bumped whenever seg_fd changes */
	uint64_t fixed_gen;   /* the registered slot holds the segment of this generation */
	struct idx_ent *idxq; /* index entries not yet written to the .idx */
	size_t idxq_n, idxq_cap;
	/* O_DIRECT pipeline: frames are copied into one slot while the other
	 * is written; spate_log_sync() may return with one write in flight. */
	struct dio_slot slot[STAGE_N];
	int fill_i, busy_i, fail_i; /* slot being filled / written / to write again, or -1 */
	int fsync_busy, fsync_done, fsync_res; /* the fdatasync linked behind a write */
	int io_err;                 /* why fail_i failed */
	uint64_t stage_end;         /* active segment offset after the last staged frame */
	uint64_t fill_next;         /* next slot's offset after a full one, or UINT64_MAX */
	uint64_t q_part;            /* bytes of q[0] already staged (an interrupted frame) */
	struct dio_frame *stg;      /* staged frames [stg_h, stg_n) not yet written */
	size_t stg_h, stg_n, stg_cap;
};

/* Reader read-ahead: RD_NCHUNK reads of RD_CHUNK bytes in flight ahead of
 * the parse position (measured: docs/bench.md, History replay). */
#define RD_CHUNK (512u << 10)
#define RD_NCHUNK 4u
/* Check whether the segment read was deleted once per this many chunks
 * (and at the end of its data), not per batch. */
#define RD_NLINK_EVERY 32u
#define RD_C_FREE 0
#define RD_C_BUSY 1
#define RD_C_DONE 2

struct spate_log_reader {
	char *dir;
	int dirfd;
	int fd;            /* current segment, or -1 */
	uint64_t seg_base; /* its base_seq */
	uint64_t off;      /* next frame */
	uint64_t next_seq; /* sequence of the next record to return */
	uint8_t *buf;      /* current batch */
	size_t buf_cap;
	uint32_t blen, bcount, bidx;
	uint64_t bseq, bts;
	const uint8_t *bcur; /* next record in buf (or in a read-ahead chunk) */
	uint64_t min_ts;     /* FROM_TIME: skip records older than this */
	/* Read-ahead (not with SPATE_LOG_RD_F_PER_FRAME): a window of up to
	 * RD_NCHUNK chunks of RD_CHUNK bytes, contiguous from ra_start, the
	 * first one holding the parse position (off); see "Reader" below. */
	uint32_t flags;      /* SPATE_LOG_RD_F_* */
	int uring;           /* 1: ring set up; 0: not yet; -1: refused (pread) */
	int uring_err;       /* -errno of io_uring_queue_init when refused */
	struct io_uring ring;
	uint8_t *ra_mem;     /* RD_NCHUNK * RD_CHUNK, allocated at the first read */
	struct rd_chunk {
		uint64_t off;    /* file offset of its first byte */
		uint32_t len;    /* bytes read (a short read: the end at read time) */
		int state;       /* RD_C_FREE, RD_C_BUSY (read in flight), RD_C_DONE */
		int err;         /* -errno of a failed read */
	} ra[RD_NCHUNK];
	unsigned ra_head, ra_n; /* window: ra[(ra_head + k) % RD_NCHUNK], k < ra_n */
	unsigned ra_busy;       /* reads in flight */
	uint64_t ra_start;      /* file offset of the window's first chunk */
	int ra_short;           /* a chunk in the window came back short */
	uint64_t ra_used;       /* chunks consumed: fstat for deletion every RD_NLINK_EVERY */
	int nlink_due;          /* check whether the segment was deleted */
};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* Standard CRC-32C (Castagnoli, reflected, ~init/~final) continued from @p crc. */
static uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len) {
		int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;
		crc = ~crc32_iscsi((unsigned char *)(uintptr_t)p, n, ~crc);
		p += n;
		len -= (size_t)n;
	}
	return crc;
}

static uint32_t frame_crc(uint32_t len, const void *batch)
{
	return crc32c(crc32c(0, &len, sizeof(len)), batch, len);
}

static void seg_name(char *buf, size_t sz, uint64_t base, const char *ext)
{
	snprintf(buf, sz, "%020" PRIu64 "%s", base, ext);
}

static void msg_add(char *msg, size_t sz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msg_add(char *msg, size_t sz, const char *fmt, ...)
{
	if (!msg)
		return;
	size_t used = strlen(msg);
	if (used + 1 >= sz)
		return;
	if (used && used + 3 < sz) {
		memcpy(msg + used, "; ", 3);
		used += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + used, sz - used, fmt, ap);
	va_end(ap);
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (int)(got == len);
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return 0;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Parse "<20 digits><ext>" exactly. */
static int parse_name(const char *name, const char *ext, uint64_t *base)
{
	size_t el = strlen(ext);

	if (strlen(name) != 20 + el || strcmp(name + 20, ext) != 0)
		return 0;
	uint64_t v = 0;
	for (int i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		uint64_t d = (uint64_t)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	*base = v;
	return 1;
}

/* Sorted base_seqs of the segments in @p dirfd; with @p clean_tmp, unlinks
 * leftover *.seg.tmp files (torn segment creation). */
static int list_segs(int dirfd, uint64_t **out, size_t *n, int clean_tmp)
{
	int fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	rewinddir(d);
	uint64_t *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		uint64_t base;
		if (clean_tmp && parse_name(de->d_name, ".seg.tmp", &base)) {
			unlinkat(dirfd, de->d_name, 0);
			continue;
		}
		if (!parse_name(de->d_name, ".seg", &base))
			continue;
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 16;
			uint64_t *nv = realloc(v, nc * sizeof(*v));
			if (!nv) {
				rc = -ENOMEM;
				goto out;
			}
			v = nv;
			cap = nc;
		}
		v[cnt++] = base;
	}
	if (cnt)
		qsort(v, cnt, sizeof(*v), u64_cmp);
out:
	closedir(d);
	if (rc < 0) {
		free(v);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

/*
 * Check a ring batch of @p len bytes: committed data batch whose length word
 * matches, records that exactly fill it. Fills count/base_seq/ts.
 * @return 0 or -EINVAL with @p why set.
 */
static int check_batch(const uint8_t *b, uint64_t len, uint32_t *count, uint64_t *base_seq,
		       uint64_t *ts, const char **why)
{
	if (len < SPATE_RING_BHDR_SIZE || (len & 7u) || len >= MAX_FRAME_LEN) {
		*why = "bad batch length";
		return -EINVAL;
	}
	uint64_t commit;
	uint32_t cnt;
	memcpy(&commit, b + offsetof(struct spate_ring_bhdr, commit), sizeof(commit));
	memcpy(&cnt, b + offsetof(struct spate_ring_bhdr, count), sizeof(cnt));
	if (!(commit & SPATE_RING_C_COMMITTED) || (commit & SPATE_RING_C_PAD)) {
		*why = "batch not committed or padding";
		return -EINVAL;
	}
	if ((commit & SPATE_RING_C_LEN_MASK) != len) {
		*why = "batch length word disagrees with the frame";
		return -EINVAL;
	}
	if (cnt == 0 || cnt > SPATE_RING_MAX_BATCH_RECORDS) {
		*why = "bad record count";
		return -EINVAL;
	}
	const uint8_t *p = b + SPATE_RING_BHDR_SIZE, *end = b + len;
	for (uint32_t i = 0; i < cnt; i++) {
		if ((size_t)(end - p) < sizeof(struct spate_ring_rhdr)) {
			*why = "records overrun the batch";
			return -EINVAL;
		}
		uint32_t lt;
		memcpy(&lt, p, sizeof(lt));
		uint64_t rl = lt & 0xffffffu;
		if (rl == SPATE_RING_LONG) {
			if ((size_t)(end - p) < sizeof(struct spate_ring_rhdr) + 8u) {
				*why = "records overrun the batch";
				return -EINVAL;
			}
			memcpy(&rl, p + sizeof(struct spate_ring_rhdr), sizeof(rl));
			if (rl < SPATE_RING_LONG) {
				*why = "bad long record length";
				return -EINVAL;
			}
		}
		uint64_t sz = spate_ring_rec_size(rl);
		if (sz > (uint64_t)(end - p)) {
			*why = "records overrun the batch";
			return -EINVAL;
		}
		p += sz;
	}
	if (p != end) {
		*why = "records do not fill the batch";
		return -EINVAL;
	}
	*count = cnt;
	memcpy(base_seq, b + offsetof(struct spate_ring_bhdr, base_seq), sizeof(*base_seq));
	memcpy(ts, b + offsetof(struct spate_ring_bhdr, ts), sizeof(*ts));
	return 0;
}

struct frame_info {
	uint32_t len, count;
	uint64_t base_seq, ts;
};

/*
 * Read and verify the frame at @p off of a file of @p fsize bytes into *buf.
 * @return 1 (frame), 0 (exactly at the end), -EBADMSG (with @p why), -errno.
 */
static int read_frame(int fd, uint64_t off, uint64_t fsize, uint8_t **buf, size_t *cap,
		      struct frame_info *fi, const char **why)
{
	struct frame_hdr fh;

	if (off == fsize)
		return 0;
	if (off > fsize || fsize - off < FRAME_HDR_SIZE) {
		*why = "incomplete frame header";
		return -EBADMSG;
	}
	int rc = pread_full(fd, &fh, sizeof(fh), off);
	if (rc < 0)
		return rc;
	if (!rc) {
		*why = "incomplete frame header";
		return -EBADMSG;
	}
	if (fh.magic != SPATE_LOG_FRAME_MAGIC) {
		*why = "bad frame magic";
		return -EBADMSG;
	}
	if (fh.flags != 0 || fh.len < SPATE_RING_BHDR_SIZE || (fh.len & 7u) || fh.len >= MAX_FRAME_LEN) {
		*why = "bad frame length or flags";
		return -EBADMSG;
	}
	if (fh.len > fsize - off - FRAME_HDR_SIZE) {
		*why = "frame runs past the end of the file";
		return -EBADMSG;
	}
	if (*cap < fh.len) {
		size_t nc = *cap ? *cap : 4096;
		while (nc < fh.len)
			nc *= 2;
		uint8_t *nb = realloc(*buf, nc);
		if (!nb)
			return -ENOMEM;
		*buf = nb;
		*cap = nc;
	}
	rc = pread_full(fd, *buf, fh.len, off + FRAME_HDR_SIZE);
	if (rc < 0)
		return rc;
	if (!rc) {
		*why = "frame runs past the end of the file";
		return -EBADMSG;
	}
	if (frame_crc(fh.len, *buf) != fh.crc) {
		*why = "CRC-32C mismatch";
		return -EBADMSG;
	}
	if (check_batch(*buf, fh.len, &fi->count, &fi->base_seq, &fi->ts, why) < 0)
		return -EBADMSG;
	fi->len = fh.len;
	return 1;
}

static uint64_t file_size(int fd)
{
	struct stat st;

	return fstat(fd, &st) < 0 ? 0 : (uint64_t)st.st_size;
}

/* Read and check a segment header; *ver (may be NULL) gets its version.
 * @return 0, -EBADMSG (why), -EPROTO, -errno. */
static int read_seg_hdr(int fd, uint64_t base, const char **why, uint32_t *ver)
{
	struct seg_hdr h;
	int rc = pread_full(fd, &h, sizeof(h), 0);

	if (rc < 0)
		return rc;
	if (!rc || file_size(fd) < SEG_HDR_SIZE) {
		*why = "segment shorter than its header";
		return -EBADMSG;
	}
	if (h.magic != SPATE_LOG_SEG_MAGIC) {
		*why = "bad segment magic";
		return -EBADMSG;
	}
	if (crc32c(0, &h, offsetof(struct seg_hdr, crc)) != h.crc) {
		*why = "segment header CRC-32C mismatch";
		return -EBADMSG;
	}
	if (h.version < SPATE_LOG_FORMAT_MIN_VERSION || h.version > SPATE_LOG_FORMAT_VERSION) {
		*why = "unsupported format version";
		return -EPROTO;
	}
	if (h.hdr_size != SEG_HDR_SIZE || h.base_seq != base) {
		*why = "segment header disagrees with its name";
		return -EBADMSG;
	}
	if (ver)
		*ver = h.version;
	return 0;
}

/*
 * Zero padding after the last frame (version 2): from @p off to the end of
 * the file, fewer than PAD_MAX bytes, all zero. An O_DIRECT writer leaves it
 * (its last block is padded); it marks the end of the frames, not a torn
 * tail. @return 1, 0, -errno.
 */
static int zero_tail(int fd, uint64_t off, uint64_t fsize)
{
	uint8_t b[PAD_MAX];

	if (off >= fsize || fsize - off >= PAD_MAX)
		return 0;
	int rc = pread_full(fd, b, (size_t)(fsize - off), off);
	if (rc <= 0)
		return rc;
	for (uint64_t i = 0; i < fsize - off; i++)
		if (b[i])
			return 0;
	return 1;
}

/* Scan state of one segment. */
struct scan {
	uint64_t off;      /* where the scan stopped (end of the last good frame) */
	uint64_t next_seq; /* sequence after the last good frame */
	uint64_t last_ts;
	const char *why;   /* why it stopped before the end, or NULL */
	struct idx_ent *ents; /* index entries built (if asked) */
	size_t nents, cap;
};

/*
 * Scan frames from @p off (expected first sequence @p seq, UINT64_MAX: any)
 * to the end or the first bad frame. With @p every, build index entries.
 * @return 0 (see sc->why for a stop), -errno.
 */
static int scan_frames(int fd, uint64_t off, uint64_t seq, uint64_t fsize, uint32_t every,
		       struct scan *sc, uint8_t **buf, size_t *cap)
{
	uint64_t last_idx = 0;
	int first = 1;

	sc->off = off;
	sc->next_seq = seq;
	sc->why = NULL;
	for (;;) {
		struct frame_info fi;
		const char *why = NULL;
		int rc = read_frame(fd, sc->off, fsize, buf, cap, &fi, &why);
		if (rc == 0)
			return 0;
		if (rc == -EBADMSG) {
			rc = zero_tail(fd, sc->off, fsize);
			if (rc < 0)
				return rc;
			if (!rc)
				sc->why = why; /* else: padding, the end (sc->off < fsize) */
			return 0;
		}
		if (rc < 0)
			return rc;
		if (sc->next_seq != UINT64_MAX && fi.base_seq != sc->next_seq) {
			sc->why = "sequence numbers do not continue";
			return 0;
		}
		if (every && (first || sc->off - last_idx >= every)) {
			if (sc->nents == sc->cap) {
				size_t nc = sc->cap ? sc->cap * 2 : 64;
				struct idx_ent *ne = realloc(sc->ents, nc * sizeof(*ne));
				if (!ne)
					return -ENOMEM;
				sc->ents = ne;
				sc->cap = nc;
			}
			sc->ents[sc->nents++] = (struct idx_ent){fi.base_seq, fi.ts, sc->off};
			last_idx = sc->off;
		}
		first = 0;
		sc->next_seq = fi.base_seq + fi.count;
		if (fi.ts > sc->last_ts)
			sc->last_ts = fi.ts;
		sc->off += FRAME_HDR_SIZE + fi.len;
	}
}

/* Is there a valid frame anywhere after @p off? (tells a torn tail from
 * mid-segment corruption). @return 1, 0, -errno. */
static int valid_frame_after(int fd, uint64_t off, uint64_t fsize, uint8_t **buf, size_t *cap)
{
	for (uint64_t o = (off + 8) & ~(uint64_t)7; o + FRAME_HDR_SIZE <= fsize; o += 8) {
		uint32_t magic;
		int rc = pread_full(fd, &magic, sizeof(magic), o);
		if (rc < 0)
			return rc;
		if (!rc)
			return 0;
		if (magic != SPATE_LOG_FRAME_MAGIC)
			continue;
		struct frame_info fi;
		const char *why;
		rc = read_frame(fd, o, fsize, buf, cap, &fi, &why);
		if (rc == 1)
			return 1;
		if (rc < 0 && rc != -EBADMSG)
			return rc;
	}
	return 0;
}

/* Load an index file; @return entries (0 if missing/unusable), -errno. */
static int load_index(int dirfd, uint64_t base, struct idx_ent **out, size_t *n)
{
	char name[64];

	*out = NULL;
	*n = 0;
	seg_name(name, sizeof(name), base, ".idx");
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	uint64_t sz = file_size(fd);
	size_t cnt = (size_t)(sz / IDX_ENT_SIZE);
	int rc = 0;
	if (!cnt)
		goto out;
	struct idx_ent *e = malloc(cnt * sizeof(*e));
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	rc = pread_full(fd, e, cnt * sizeof(*e), 0);
	if (rc <= 0) {
		free(e);
		rc = rc < 0 ? rc : 0;
		goto out;
	}
	rc = 0;
	*out = e;
	*n = cnt;
out:
	close(fd);
	return rc;
}

/* Entries sorted, the first at the first frame, all inside the segment. */
static int index_plausible(const struct idx_ent *e, size_t n, uint64_t base, uint64_t fsize)
{
	if (!n || e[0].off != SEG_HDR_SIZE || e[0].seq != base)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (e[i].off >= fsize || (e[i].off & 7u))
			return 0;
		if (i && (e[i].off <= e[i - 1].off || e[i].seq <= e[i - 1].seq))
			return 0;
	}
	return 1;
}

static int write_index(int dirfd, uint64_t base, const struct idx_ent *e, size_t n)
{
	char name[64];

	seg_name(name, sizeof(name), base, ".idx");
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = n ? pwrite_full(fd, e, n * sizeof(*e), 0) : 0;
	close(fd);
	return rc;
}

static int fsync_dir(int dirfd)
{
	return fsync(dirfd) < 0 ? -errno : 0;
}

static void unlink_seg(int dirfd, uint64_t base)
{
	char name[64];

	seg_name(name, sizeof(name), base, ".seg");
	unlinkat(dirfd, name, 0);
	seg_name(name, sizeof(name), base, ".idx");
	unlinkat(dirfd, name, 0);
}

/* ------------------------------------------------------------------------ */
/* Writer: io                                                               */
/* ------------------------------------------------------------------------ */

static pid_t my_tid(void)
{
	return gettid();
}

/* Register the staging buffers (WRITE_FIXED) and a one-slot file table;
 * either may be refused (RLIMIT_MEMLOCK, old kernel): then plain writes. */
static void uring_register(struct spate_log *l)
{
	l->bufs_fixed = l->files_fixed = 0;
	l->fixed_gen = 0;
	if (l->stage) {
		struct iovec iov[STAGE_N];
		for (unsigned i = 0; i < STAGE_N; i++)
			iov[i] = (struct iovec){l->stage + (size_t)i * STAGE_BYTES, STAGE_BYTES};
		l->bufs_fixed = io_uring_register_buffers(&l->ring, iov, STAGE_N) == 0;
	}
	l->files_fixed = io_uring_register_files_sparse(&l->ring, 1) == 0;
}

static int uring_setup(struct spate_log *l)
{
	static const unsigned tries[] = {
		/* Not DEFER_TASKRUN: a write may be in flight when
		 * spate_log_sync() returns, and another thread may have to
		 * wait for it (uring_own()). */
		IORING_SETUP_SINGLE_ISSUER,
		0,
	};
	int rc = -ENOSYS;

	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		rc = io_uring_queue_init(URING_ENTRIES, &l->ring, tries[i]);
		if (rc == 0) {
			l->uring_flags = tries[i];
			l->uring_tid = my_tid();
			uring_register(l);
			return 0;
		}
	}
	return rc;
}

static void dio_wait_busy(struct spate_log *l);

/* Make sure the ring may be used by the calling thread. */
static int uring_own(struct spate_log *l)
{
	if (!(l->uring_flags & IORING_SETUP_SINGLE_ISSUER) || l->uring_tid == my_tid())
		return 0;
	/* Reap a write still in flight first (allowed from any thread
	 * without DEFER_TASKRUN): its buffer must not be rewritten, nor the
	 * next write start, before it completed. */
	dio_wait_busy(l);
	io_uring_queue_exit(&l->ring);
	int rc = io_uring_queue_init(URING_ENTRIES, &l->ring, l->uring_flags);
	if (rc < 0) {
		l->use_uring = 0; /* fall back for good */
		return 0;
	}
	l->uring_tid = my_tid();
	uring_register(l);
	return 0;
}

/*
 * Write @p niov iovecs at @p off of the active segment, then (@p want_sync)
 * fdatasync it. Sets *written to the prefix of bytes known written and
 * *synced if the fdatasync completed after all of them.
 * @return 0 (maybe short: see *written), -errno (first error).
 */
static int io_write(struct spate_log *l, const struct iovec *iov, unsigned niov, uint64_t off,
		    int want_sync, uint64_t *written, int *synced)
{
	*written = 0;
	*synced = 0;
	if (!l->use_uring) {
		unsigned i = 0;
		uint64_t o = off;
		while (i < niov) {
			unsigned n = niov - i > IOV_MAX ? IOV_MAX : niov - i;
			ssize_t r = pwritev(l->seg_fd, iov + i, (int)n, (off_t)o);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			uint64_t want = 0;
			for (unsigned k = 0; k < n; k++)
				want += iov[i + k].iov_len;
			*written += (uint64_t)r;
			if ((uint64_t)r < want)
				return 0; /* short: the caller retries the rest */
			o += want;
			i += n;
		}
		if (want_sync) {
			if (fdatasync(l->seg_fd) < 0)
				return -errno;
			*synced = 1;
		}
		return 0;
	}

	int rc = uring_own(l);
	if (rc < 0)
		return rc;
	if (!l->use_uring)
		return io_write(l, iov, niov, off, want_sync, written, synced);

	unsigned per = 2 * FRAMES_PER_SQE, nsqe = 0;
	uint64_t want[URING_ENTRIES];
	uint64_t o = off;
	struct io_uring_sqe *lastsqe = NULL;
	for (unsigned i = 0; i < niov; i += per) {
		unsigned n = niov - i > per ? per : niov - i;
		struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
		if (!sqe)
			return -EBUSY; /* cannot happen: runs fit the ring */
		io_uring_prep_writev(sqe, l->seg_fd, iov + i, n, o);
		uint64_t w = 0;
		for (unsigned k = 0; k < n; k++)
			w += iov[i + k].iov_len;
		want[nsqe] = w;
		o += w;
		sqe->user_data = nsqe;
		/* Linked: in order, and a short write cancels what follows. */
		sqe->flags |= IOSQE_IO_LINK;
		lastsqe = sqe;
		nsqe++;
	}
	unsigned total = nsqe;
	if (want_sync) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
		if (!sqe)
			return -EBUSY;
		/* Linked behind the writes: runs only after all of them completed
		 * in full, so a successful completion covers every byte. */
		io_uring_prep_fsync(sqe, l->seg_fd, IORING_FSYNC_DATASYNC);
		sqe->user_data = total;
		lastsqe = sqe;
		total++;
	}
	if (lastsqe)
		lastsqe->flags &= (uint8_t)~IOSQE_IO_LINK; /* the chain ends here */
	rc = io_uring_submit_and_wait(&l->ring, total);
	while (rc == -EINTR)
		rc = io_uring_submit_and_wait(&l->ring, total);
	if (rc < 0)
		return rc;

	int res[URING_ENTRIES + 1];
	for (unsigned got = 0; got < total;) {
		struct io_uring_cqe *cqe;
		rc = io_uring_wait_cqe(&l->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0)
			return rc;
		if (cqe->user_data == NOP_TAG) {
			io_uring_cqe_seen(&l->ring, cqe);
			continue;
		}
		if (cqe->user_data <= URING_ENTRIES)
			res[cqe->user_data] = cqe->res;
		io_uring_cqe_seen(&l->ring, cqe);
		got++;
	}
	int err = 0;
	for (unsigned i = 0; i < nsqe; i++) {
		if (res[i] < 0) {
			if (res[i] != -ECANCELED)
				err = res[i];
			return err;
		}
		*written += (uint64_t)res[i];
		if ((uint64_t)res[i] < want[i])
			return 0;
	}
	if (want_sync) {
		if (res[nsqe] < 0 && res[nsqe] != -ECANCELED)
			return res[nsqe];
		*synced = res[nsqe] == 0;
	}
	return 0;
}

static int io_datasync(struct spate_log *l)
{
	uint64_t w;
	int synced;
	int rc = io_write(l, NULL, 0, 0, 1, &w, &synced);

	if (rc < 0)
		return rc;
	return synced ? 0 : -EIO;
}

/* ------------------------------------------------------------------------ */
/* Writer: O_DIRECT                                                         */
/* ------------------------------------------------------------------------ */

static void frame_written(struct spate_log *l, const struct log_q *q, uint64_t off);
static void idx_flush(struct spate_log *l);
static uint64_t file_size(int fd);

/* Fill the frame header's CRC if not done yet. */
static void q_crc(struct log_q *q)
{
	if (!q->crc_done) {
		q->fh.crc = frame_crc(q->fh.len, q->batch);
		q->crc_done = 1;
	}
}


/*
 * Alignment of the O_DIRECT writes to the file @p fd: the larger of the
 * O_DIRECT alignment (statx STATX_DIOALIGN) and the file system block
 * (stx_blksize) when that is at most PAD_MAX: ext4 serialises direct writes
 * that are not block-aligned (each waits for every write in flight), which
 * cost a third of the bandwidth here with 512-byte alignment.
 * @return 0 when the file system reports no O_DIRECT alignment, or needs
 * more than PAD_MAX.
 */
static uint32_t dio_align_of(int fd)
{
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN | STATX_BASIC_STATS, &sx) < 0 ||
	    !(sx.stx_mask & STATX_DIOALIGN))
		return 0;
	uint32_t a = sx.stx_dio_offset_align, m = sx.stx_dio_mem_align, b = sx.stx_blksize;
	if (!a || !m || a > PAD_MAX || m > PAD_MAX || (a & (a - 1)))
		return 0;
	if (b > a && b <= PAD_MAX && !(b & (b - 1)))
		a = b;
	return a;
}

static int dio_enable(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) < 0)
		return -errno;
	return 0;
}

/*
 * Can this directory's files be written with O_DIRECT? Probes an unnamed
 * file (O_TMPFILE) or the active segment; on success allocates the staging
 * buffers. @return 1 (direct), 0 (not: @p why says why), -ENOMEM.
 */
static int dio_setup(struct spate_log *l, char *why, size_t wsz)
{
	int fd = openat(l->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0) {
		snprintf(why, wsz, "cannot probe O_DIRECT (O_TMPFILE: %s)", strerror(errno));
		return 0;
	}
	uint32_t a = dio_align_of(fd);
	int rc = 0;
	if (!a)
		snprintf(why, wsz, "the file system reports no O_DIRECT alignment (statx STATX_DIOALIGN)");
	else if ((rc = dio_enable(fd)) < 0)
		snprintf(why, wsz, "O_DIRECT refused (%s)", strerror(-rc));
	close(fd);
	if (!a || rc < 0)
		return 0;
	void *stage = NULL, *tail = NULL;
	/* 2 MiB-aligned so transparent huge pages can back it (fewer pages to
	 * pin when it is registered). */
	if (posix_memalign(&stage, 2u << 20, (size_t)STAGE_N * STAGE_BYTES) ||
	    posix_memalign(&tail, PAD_MAX, PAD_MAX)) {
		free(stage);
		return -ENOMEM;
	}
	madvise(stage, (size_t)STAGE_N * STAGE_BYTES, MADV_HUGEPAGE);
	l->stage = stage;
	l->tail = tail;
	l->dio_align = a;
	l->direct = 1;
	return 1;
}

/* Load the active segment's last partial block into l->tail (O_DIRECT fd:
 * an aligned read of the whole block). @return 0, -errno. */
static int dio_load_tail(struct spate_log *l)
{
	const struct seg_info *s = &l->segs[l->nsegs - 1];

	l->tail_len = (uint32_t)(s->size % l->dio_align);
	l->stage_end = s->size;
	l->fill_next = UINT64_MAX;
	if (!l->tail_len)
		return 0;
	uint64_t at = s->size - l->tail_len;
	ssize_t r;
	do
		r = pread(l->seg_fd, l->stage, l->dio_align, (off_t)at);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if ((uint64_t)r < l->tail_len)
		return -EIO;
	memcpy(l->tail, l->stage, l->tail_len);
	return 0;
}

/* Slot states: a staging buffer is free, being filled, being written (at
 * most one at a time), or holds a write that failed or came up short and
 * must be written again before anything after it. */
enum { SLOT_FREE = 0, SLOT_FILL, SLOT_BUSY, SLOT_FAILED };

static uint8_t *slot_buf(struct spate_log *l, int i)
{
	return l->stage + (size_t)i * STAGE_BYTES;
}

/* Frames staged and now known written up to file offset @p end: book them
 * (sizes, sequence numbers, index entries). */
static void dio_frames_done(struct spate_log *l, uint64_t end)
{
	while (l->stg_h < l->stg_n) {
		const struct dio_frame *f = &l->stg[l->stg_h];
		if (f->off + FRAME_HDR_SIZE + f->len > end)
			break;
		struct log_q q = {.fh = {SPATE_LOG_FRAME_MAGIC, f->len, 0, 0},
				  .count = f->count, .base_seq = f->base_seq, .ts = f->ts};
		frame_written(l, &q, f->off);
		l->stg_h++;
	}
	if (l->stg_h == l->stg_n)
		l->stg_h = l->stg_n = 0;
}

/* The write in flight (or the linked fdatasync) completed with @p res. */
static void dio_complete(struct spate_log *l, uint64_t tag, int res)
{
	if (tag == NOP_TAG)
		return;
	if (tag == FSYNC_TAG) {
		l->fsync_busy = 0;
		l->fsync_done = 1;
		l->fsync_res = res;
		return;
	}
	if (l->busy_i < 0)
		return;
	struct dio_slot *s = &l->slot[l->busy_i];
	uint32_t want = s->len - s->from;
	uint64_t end = s->off + s->from + (res > 0 ? (uint64_t)res : 0);
	uint64_t data_end = s->off + s->fill;
	dio_frames_done(l, end < data_end ? end : data_end);
	if (res >= 0 && (uint32_t)res == want) {
		s->state = SLOT_FREE;
	} else {
		/* Failed or short (disk full): the bytes from the last whole
		 * block written on are still here; written again by the next
		 * dio_settle(). */
		s->state = SLOT_FAILED;
		s->from = (uint32_t)((end & ~(uint64_t)(l->dio_align - 1)) - s->off);
		l->fail_i = l->busy_i;
		l->io_err = res < 0 ? res : -ENOSPC;
	}
	l->busy_i = -1;
}

/* Reap completions; with @p wait, at least one. @return 0, -errno. */
static int dio_reap(struct spate_log *l, int wait)
{
	struct io_uring_cqe *cqe;
	int rc;

	if (l->busy_i < 0 && !l->fsync_busy)
		return 0;
	if (wait) {
		do
			rc = io_uring_wait_cqe(&l->ring, &cqe);
		while (rc == -EINTR);
		if (rc < 0)
			return rc;
	}
	unsigned head, n = 0;
	io_uring_for_each_cqe(&l->ring, head, cqe) {
		dio_complete(l, cqe->user_data, cqe->res);
		n++;
	}
	io_uring_cq_advance(&l->ring, n);
	return 0;
}

/*
 * Write bytes [from, len) of slot @p i at their place in the segment (the
 * caller made sure nothing is in flight); with @p sync_after, an fdatasync
 * linked behind it goes in the same submit. Without io_uring: pwrite (+
 * fdatasync), completed at once.
 */
static void dio_issue(struct spate_log *l, int i, int sync_after)
{
	struct dio_slot *s = &l->slot[i];
	uint8_t *buf = slot_buf(l, i) + s->from;
	uint32_t len = s->len - s->from;
	uint64_t off = s->off + s->from;

	s->state = SLOT_BUSY;
	l->busy_i = i;
	l->fsync_done = 0;
	if (!l->use_uring) {
		ssize_t w;
		do
			w = pwrite(l->seg_fd, buf, len, (off_t)off);
		while (w < 0 && errno == EINTR);
		dio_complete(l, (uint64_t)i, w < 0 ? -errno : (int)w);
		if (sync_after && l->fail_i < 0)
			dio_complete(l, FSYNC_TAG, fdatasync(l->seg_fd) < 0 ? -errno : 0);
		return;
	}
	int fixed_file = l->files_fixed && l->fixed_gen == l->seg_gen;
	int fd = fixed_file ? 0 : l->seg_fd;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring), *wsqe = sqe, *fsqe = NULL;
	/* Cannot fail: one write and one fsync at most are in flight. */
	if (l->bufs_fixed)
		io_uring_prep_write_fixed(sqe, fd, buf, len, off, i);
	else
		io_uring_prep_write(sqe, fd, buf, len, off);
	if (fixed_file)
		sqe->flags |= IOSQE_FIXED_FILE;
	sqe->user_data = (uint64_t)i;
	if (sync_after) {
		/* Linked: the fdatasync starts once this write completed in
		 * full (a short or failed write cancels it), and this write is
		 * the only one in flight, so its success covers every write
		 * before it. */
		sqe->flags |= IOSQE_IO_LINK;
		sqe = fsqe = io_uring_get_sqe(&l->ring);
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		if (fixed_file)
			sqe->flags |= IOSQE_FIXED_FILE;
		sqe->user_data = FSYNC_TAG;
		l->fsync_busy = 1;
	}
	int rc;
	do
		rc = io_uring_submit(&l->ring);
	while (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
	if (rc < 0) {
		/* Nothing submitted: the SQEs are still ours; make them no-ops
		 * (a later submit must not write stale data) and complete them
		 * as failed. */
		io_uring_prep_nop(wsqe);
		wsqe->user_data = NOP_TAG;
		if (fsqe) {
			io_uring_prep_nop(fsqe);
			fsqe->user_data = NOP_TAG;
		}
		dio_complete(l, (uint64_t)i, rc);
		if (fsqe)
			dio_complete(l, FSYNC_TAG, rc);
	}
}

/* Wait until neither a write nor an fdatasync is in flight. */
static void dio_wait_busy(struct spate_log *l)
{
	while (l->busy_i >= 0 || l->fsync_busy) {
		int rc = dio_reap(l, 1);
		if (rc < 0) {
			/* Cannot wait (should not happen): count the write as
			 * failed; dio_settle() writes it again. */
			if (l->busy_i >= 0)
				dio_complete(l, (uint64_t)l->busy_i, rc);
			l->fsync_busy = 0;
		}
	}
}

/*
 * Wait for the write in flight; if it (or an earlier one) failed, cut the
 * segment back to its last whole frame (or to where the failed write
 * starts, if that frame began before it) and write the rest again from the
 * staging buffer, as long as that makes progress. Writes are in order and
 * one at a time: a killed process leaves a prefix, never a hole followed
 * by frames.
 * @return 0 (nothing in flight, nothing failed), or the error (-ENOSPC...).
 */
static int dio_settle(struct spate_log *l)
{
	int tries = 0;
	uint64_t last_from = UINT64_MAX;

	for (;;) {
		dio_wait_busy(l);
		if (l->fail_i < 0)
			return 0;
		struct dio_slot *s = &l->slot[l->fail_i];
		uint64_t o = l->segs[l->nsegs - 1].size; /* end of the last whole frame */
		uint64_t a = l->dio_align;
		uint64_t from = s->off + s->from;
		if ((o & ~(a - 1)) > s->off && (o & ~(a - 1)) < from)
			from = o & ~(a - 1);
		if (from == last_from || tries++ > 64)
			return l->io_err ? l->io_err : -EIO; /* no progress */
		last_from = from;
		uint64_t cut = o > from ? o : from;
		if (file_size(l->seg_fd) > cut && ftruncate(l->seg_fd, (off_t)cut) < 0)
			return -errno;
		s->from = (uint32_t)(from - s->off);
		l->fail_i = -1;
		dio_issue(l, (int)(s - l->slot), 0);
	}
}

/*
 * Write the slot being filled (zero-padded to dio_align; its last partial
 * block is kept in l->tail for the next slot to start with), after the
 * write in flight completed. With @p sync_after, an fdatasync follows it.
 * @return 0, or an error from dio_settle() (the slot stays filled).
 */
static int dio_submit_fill(struct spate_log *l, int sync_after)
{
	int rc = dio_settle(l);
	if (rc < 0)
		return rc;
	int i = l->fill_i;
	struct dio_slot *s = &l->slot[i];
	uint32_t a = l->dio_align, fill = s->fill;
	uint32_t padded = (fill + a - 1) & ~(a - 1);
	uint8_t *buf = slot_buf(l, i);
	memset(buf + fill, 0, padded - fill);
	l->tail_len = fill & (a - 1);
	memcpy(l->tail, buf + (fill & ~(a - 1)), l->tail_len);
	s->from = 0;
	s->len = padded;
	l->fill_i = -1;
	l->fill_next = fill == STAGE_BYTES ? s->off + STAGE_BYTES : UINT64_MAX;
	dio_issue(l, i, sync_after);
	return 0;
}

/* Make sure a slot with room is being filled. @return 0, -errno. */
static int dio_need_space(struct spate_log *l)
{
	if (l->fill_i >= 0 && l->slot[l->fill_i].fill < STAGE_BYTES)
		return 0;
	if (l->fill_i >= 0) {
		int rc = dio_submit_fill(l, 0);
		if (rc < 0)
			return rc;
	}
	int i = 0;
	while (i < (int)STAGE_N && l->slot[i].state != SLOT_FREE)
		i++;
	if (i == (int)STAGE_N) {
		/* One slot is in flight or failed, and no slot fills: the
		 * other one is free. Not reached; settle to be safe. */
		int rc = dio_settle(l);
		if (rc < 0)
			return rc;
		i = 0;
		while (i < (int)STAGE_N && l->slot[i].state != SLOT_FREE)
			i++;
	}
	struct dio_slot *s = &l->slot[i];
	s->state = SLOT_FILL;
	if (l->fill_next != UINT64_MAX) {
		/* The previous slot ended full, mid-stream: go on after it. */
		s->off = l->fill_next;
		s->fill = 0;
	} else {
		/* Start with the last partial block, rewritten. */
		s->off = l->stage_end - l->tail_len;
		memcpy(slot_buf(l, i), l->tail, l->tail_len);
		s->fill = l->tail_len;
	}
	l->fill_i = i;
	return 0;
}

/*
 * O_DIRECT: copy frames q[*h, ...) of the active segment into the staging
 * buffers (CRC-32C on the way), writing each buffer as it fills while the
 * next one fills. Stops at the end of the queue or when the next frame
 * does not fit in the segment (@return 1: roll). A frame interrupted by an
 * error is resumed at l->q_part by the next call.
 * @return 0, 1, -errno.
 */
static int dio_stage(struct spate_log *l, size_t *h)
{
	while (*h < l->qn) {
		struct log_q *q = &l->q[*h];
		uint64_t fsz = FRAME_HDR_SIZE + q->fh.len;
		if (!l->q_part) {
			if (l->stage_end > SEG_HDR_SIZE && l->stage_end + fsz > l->p.segment_bytes)
				return 1;
			if (l->stg_n == l->stg_cap) {
				size_t nc = l->stg_cap ? l->stg_cap * 2 : 256;
				struct dio_frame *ns = realloc(l->stg, nc * sizeof(*ns));
				if (!ns)
					return -ENOMEM;
				l->stg = ns;
				l->stg_cap = nc;
			}
		}
		q_crc(q);
		while (l->q_part < fsz) {
			int rc = dio_need_space(l);
			if (rc < 0)
				return rc;
			struct dio_slot *s = &l->slot[l->fill_i];
			uint8_t *dst = slot_buf(l, l->fill_i) + s->fill;
			uint64_t p = l->q_part, n;
			if (p < FRAME_HDR_SIZE) {
				n = FRAME_HDR_SIZE - p;
				if (n > STAGE_BYTES - s->fill)
					n = STAGE_BYTES - s->fill;
				memcpy(dst, (const uint8_t *)&q->fh + p, n);
			} else {
				n = fsz - p;
				if (n > STAGE_BYTES - s->fill)
					n = STAGE_BYTES - s->fill;
				memcpy(dst, q->batch + (p - FRAME_HDR_SIZE), n);
			}
			s->fill += (uint32_t)n;
			l->q_part += n;
		}
		l->stg[l->stg_n++] = (struct dio_frame){l->stage_end, q->base_seq, q->ts, q->count, q->fh.len};
		l->stage_end += fsz;
		l->q_part = 0;
		(*h)++;
	}
	return 0;
}

/*
 * Write what is staged: the slot being filled goes out (after the write in
 * flight). With @p wait (or @p want_sync), wait until everything staged is
 * written; with @p want_sync, make it durable too (*synced = 1).
 * @return 0, -errno.
 */
static int dio_flush(struct spate_log *l, int wait, int want_sync, int *synced)
{
	int rc;

	*synced = 0;
	if (l->fill_i >= 0) {
		rc = dio_submit_fill(l, want_sync);
		if (rc < 0)
			return rc;
	}
	if (!wait && !want_sync)
		return 0;
	rc = dio_settle(l);
	if (rc < 0)
		return rc;
	if (!want_sync)
		return 0;
	/* Every write resets fsync_done: set, the last write was followed by
	 * a successful fdatasync (linked, or on its own without io_uring). */
	if (l->fsync_done && l->fsync_res == 0) {
		*synced = 1;
		return 0;
	}
	if (l->fsync_done && l->fsync_res < 0 && l->fsync_res != -ECANCELED)
		return l->fsync_res;
	return 0; /* not covered: the caller fdatasyncs */
}

/* ------------------------------------------------------------------------ */
/* Writer: segments                                                         */
/* ------------------------------------------------------------------------ */

static int segs_push(struct spate_log *l, struct seg_info si)
{
	if (l->nsegs == l->segs_cap) {
		size_t nc = l->segs_cap ? l->segs_cap * 2 : 16;
		struct seg_info *ns = realloc(l->segs, nc * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		l->segs = ns;
		l->segs_cap = nc;
	}
	l->segs[l->nsegs++] = si;
	return 0;
}

static void close_active(struct spate_log *l)
{
	idx_flush(l);
	l->idxq_n = 0;
	l->seg_gen++;
	l->seg_direct = 0;
	l->tail_len = 0;
	/* The pipeline is idle here (flushed before a roll or at close). */
	for (unsigned i = 0; i < STAGE_N; i++)
		l->slot[i].state = SLOT_FREE;
	l->fill_i = l->busy_i = l->fail_i = -1;
	l->fsync_busy = l->fsync_done = 0;
	l->stg_h = l->stg_n = 0;
	l->stage_end = 0;
	l->fill_next = UINT64_MAX;
	if (l->seg_fd >= 0)
		close(l->seg_fd);
	if (l->idx_fd >= 0)
		close(l->idx_fd);
	l->seg_fd = l->idx_fd = -1;
}

/* Create segment @p base (tmp file + rename) and make it active. */
static int create_segment(struct spate_log *l, uint64_t base)
{
	char tmp[64], name[64];
	uint8_t *blk = NULL;
	int fd = -1, ifd = -1, rc;

	seg_name(tmp, sizeof(tmp), base, ".seg.tmp");
	seg_name(name, sizeof(name), base, ".seg");
	fd = openat(l->dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	blk = calloc(1, SEG_HDR_SIZE);
	if (!blk) {
		rc = -ENOMEM;
		goto fail;
	}
	struct seg_hdr h = {
		.magic = SPATE_LOG_SEG_MAGIC,
		.version = SPATE_LOG_FORMAT_VERSION,
		.hdr_size = SEG_HDR_SIZE,
		.base_seq = base,
		.created_ns = spate_now_ns(),
		.segment_bytes = l->p.segment_bytes,
	};
	h.crc = crc32c(0, &h, offsetof(struct seg_hdr, crc));
	memcpy(blk, &h, sizeof(h));
	rc = pwrite_full(fd, blk, SEG_HDR_SIZE, 0);
	if (rc < 0)
		goto fail;
	if (l->p.durability != SPATE_LOG_DURABLE_NONE && fdatasync(fd) < 0) {
		rc = -errno;
		goto fail;
	}
	seg_name(name, sizeof(name), base, ".idx");
	ifd = openat(l->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (ifd < 0) {
		rc = -errno;
		goto fail;
	}
	seg_name(name, sizeof(name), base, ".seg");
	if (renameat(l->dirfd, tmp, l->dirfd, name) < 0) {
		rc = -errno;
		goto fail;
	}
	if (l->p.durability != SPATE_LOG_DURABLE_NONE) {
		rc = fsync_dir(l->dirfd);
		if (rc < 0)
			goto fail_renamed;
	}
	rc = segs_push(l, (struct seg_info){base, base, SEG_HDR_SIZE, 0});
	if (rc < 0)
		goto fail_renamed;
	free(blk);
	/* The header went through the page cache; frames go direct. A
	 * refusal here (the probe at open said yes) means buffered for good. */
	if (l->direct && dio_enable(fd) < 0)
		l->direct = 0;
	l->seg_direct = l->direct;
	l->tail_len = 0; /* SEG_HDR_SIZE is a multiple of any dio_align */
	l->stage_end = SEG_HDR_SIZE;
	l->fill_next = UINT64_MAX;
	l->seg_gen++;
	l->seg_ver = SPATE_LOG_FORMAT_VERSION;
	l->seg_fd = fd;
	l->idx_fd = ifd;
	l->idx_n = 0;
	l->idx_last_off = 0;
	return 0;

fail_renamed:
	unlinkat(l->dirfd, name, 0);
	seg_name(name, sizeof(name), base, ".idx");
	unlinkat(l->dirfd, name, 0);
	goto out;
fail:
	unlinkat(l->dirfd, tmp, 0);
	if (ifd >= 0) {
		seg_name(name, sizeof(name), base, ".idx");
		unlinkat(l->dirfd, name, 0);
	}
out:
	if (ifd >= 0)
		close(ifd);
	close(fd);
	free(blk);
	return rc;
}

/* Write the queued index entries of the active segment (one pwrite per
 * sync, to the page cache only: the index is rebuilt at open when stale;
 * on failure they stay queued and go with the next flush). */
static void idx_flush(struct spate_log *l)
{
	if (!l->idxq_n || l->idx_fd < 0)
		return;
	if (pwrite_full(l->idx_fd, l->idxq, l->idxq_n * IDX_ENT_SIZE, l->idx_n * IDX_ENT_SIZE) == 0) {
		l->idx_n += l->idxq_n;
		l->idxq_n = 0;
	}
}

/* Book-keeping after frame @p q was written at @p off of the active segment. */
static void frame_written(struct spate_log *l, const struct log_q *q, uint64_t off)
{
	struct seg_info *s = &l->segs[l->nsegs - 1];

	if ((l->idx_n == 0 && l->idxq_n == 0) || off - l->idx_last_off >= l->p.index_every) {
		if (l->idxq_n == l->idxq_cap) {
			size_t nc = l->idxq_cap ? l->idxq_cap * 2 : 64;
			struct idx_ent *ne = realloc(l->idxq, nc * sizeof(*ne));
			if (ne) {
				l->idxq = ne;
				l->idxq_cap = nc;
			}
		}
		/* On ENOMEM the entry is skipped: the index only gets sparser. */
		if (l->idxq_n < l->idxq_cap) {
			l->idxq[l->idxq_n++] = (struct idx_ent){q->base_seq, q->ts, off};
			l->idx_last_off = off;
		}
	}
	s->size = off + FRAME_HDR_SIZE + q->fh.len;
	s->end_seq = q->base_seq + q->count;
	if (q->ts > s->last_ts)
		s->last_ts = q->ts;
	l->written_seq = s->end_seq;
	l->have_records = 1;
}

/* Roll: the old segment is always made durable first, so only the last
 * segment can have a torn tail; without the O_DIRECT padding after its last
 * frame. Nothing may be in flight. */
static int roll_segment(struct spate_log *l)
{
	struct seg_info *s = &l->segs[l->nsegs - 1];

	if (l->seg_direct && file_size(l->seg_fd) > s->size && ftruncate(l->seg_fd, (off_t)s->size) < 0)
		return -errno;
	if (fdatasync(l->seg_fd) < 0)
		return -errno;
	l->durable_seq = s->end_seq;
	close_active(l);
	return 0;
}

/* O_DIRECT: make the ring usable by this thread, the active segment the
 * registered file. */
static int dio_prepare(struct spate_log *l)
{
	if (!l->use_uring)
		return 0;
	int rc = uring_own(l);
	if (rc < 0)
		return rc;
	if (l->use_uring && l->files_fixed && l->fixed_gen != l->seg_gen)
		l->fixed_gen = io_uring_register_files_update(&l->ring, 0, &l->seg_fd, 1) == 1 ? l->seg_gen : 0;
	return 0;
}

/*
 * Write the queue; with @p want_sync, make it durable (fdatasync linked
 * behind the last write). O_DIRECT: the queue is copied into staging and
 * the last write may still be in flight on return, unless @p wait or
 * @p want_sync. @return 0 or -errno (the unwritten batches stay queued or
 * staged; the segment is cut back to its last whole frame).
 */
static int write_queue(struct spate_log *l, int want_sync, int wait)
{
	size_t h = 0;
	uint64_t part = 0; /* bytes of frame h already written (short write) */
	int rc = 0, synced = 0;

	if (l->seg_direct) {
		rc = dio_prepare(l);
		if (rc < 0)
			return rc;
		if (l->use_uring)
			dio_reap(l, 0); /* book what completed meanwhile */
	}
	while (h < l->qn) {
		if (l->seg_fd < 0) {
			rc = create_segment(l, l->q[h].base_seq);
			if (rc < 0)
				goto out;
		}
		if (l->seg_direct) {
			rc = dio_prepare(l);
			if (rc < 0)
				goto out;
			rc = dio_stage(l, &h);
			if (rc < 0)
				goto out;
			if (rc == 1) {
				int dummy;
				rc = dio_flush(l, 1, 0, &dummy);
				if (rc == 0)
					rc = roll_segment(l);
				if (rc < 0)
					goto out;
			}
			continue;
		}
		struct seg_info *s = &l->segs[l->nsegs - 1];
		uint64_t off = s->size, end = off;
		size_t k = h;
		while (k < l->qn && k - h < SPATE_LOG_RUN) {
			uint64_t fsz = FRAME_HDR_SIZE + l->q[k].fh.len;
			if (end > SEG_HDR_SIZE && end + fsz > l->p.segment_bytes)
				break;
			end += fsz;
			k++;
		}
		if (k == h) {
			rc = roll_segment(l);
			if (rc < 0)
				goto out;
			continue;
		}
		int last_run = k == l->qn;
		uint64_t written = 0;
		int did_sync = 0;
		unsigned niov = 0;
		for (size_t i = h; i < k; i++) {
			q_crc(&l->q[i]);
			l->iov[niov++] = (struct iovec){&l->q[i].fh, FRAME_HDR_SIZE};
			l->iov[niov++] = (struct iovec){(void *)(uintptr_t)l->q[i].batch, l->q[i].fh.len};
		}
		/* After a short write, go on from where it stopped. */
		struct iovec *iov = l->iov;
		if (part >= FRAME_HDR_SIZE) {
			iov++;
			niov--;
			iov[0].iov_base = (uint8_t *)iov[0].iov_base + (part - FRAME_HDR_SIZE);
			iov[0].iov_len -= part - FRAME_HDR_SIZE;
		} else if (part) {
			iov[0].iov_base = (uint8_t *)iov[0].iov_base + part;
			iov[0].iov_len -= part;
		}
		rc = io_write(l, iov, niov, off + part, want_sync && last_run, &written, &did_sync);
		written += part;
		/* Account for the whole frames in the written prefix. */
		uint64_t o = off;
		while (h < k && o + FRAME_HDR_SIZE + l->q[h].fh.len <= off + written) {
			frame_written(l, &l->q[h], o);
			o += FRAME_HDR_SIZE + l->q[h].fh.len;
			h++;
		}
		uint64_t was = part;
		part = off + written - o;
		if (rc < 0) {
			/* Cut any partial frame so the segment stays valid. */
			if (part && ftruncate(l->seg_fd, (off_t)o) < 0)
				rc = -errno;
			part = 0;
			goto out;
		}
		if (written < end - off) {
			if (written == was) {
				/* No progress and no error: give up for now. */
				if (part && ftruncate(l->seg_fd, (off_t)o) < 0) {
					rc = -errno;
					goto out;
				}
				rc = -EIO;
				goto out;
			}
			continue; /* short write: retry the rest */
		}
		if (last_run && did_sync)
			synced = 1;
	}
	if (l->seg_direct) {
		rc = dio_flush(l, wait, want_sync, &synced);
		if (rc < 0)
			goto out;
	}
	if (want_sync && !synced && l->seg_fd >= 0 && l->durable_seq < l->written_seq) {
		rc = l->use_uring ? io_datasync(l) : (fdatasync(l->seg_fd) < 0 ? -errno : 0);
		if (rc < 0)
			goto out;
		synced = 1;
	}
	if (synced || (want_sync && l->seg_fd < 0))
		l->durable_seq = l->written_seq;
out:
	idx_flush(l);
	if (h) {
		memmove(l->q, l->q + h, (l->qn - h) * sizeof(*l->q));
		l->qn -= h;
	}
	return rc;
}

static void apply_retention(struct spate_log *l)
{
	if (!l->p.retention_bytes && !l->p.retention_ns)
		return;
	uint64_t total = 0, now = spate_now_ns();
	for (size_t i = 0; i < l->nsegs; i++)
		total += l->segs[i].size;
	size_t del = 0;
	/* Never the last (active) segment. */
	while (del + 1 < l->nsegs) {
		const struct seg_info *s = &l->segs[del];
		int too_big = l->p.retention_bytes && total > l->p.retention_bytes;
		int too_old = l->p.retention_ns && s->last_ts && now > s->last_ts &&
			      now - s->last_ts > l->p.retention_ns;
		if (!too_big && !too_old)
			break;
		unlink_seg(l->dirfd, s->base);
		total -= s->size;
		del++;
	}
	if (del) {
		memmove(l->segs, l->segs + del, (l->nsegs - del) * sizeof(*l->segs));
		l->nsegs -= del;
	}
}

/* ------------------------------------------------------------------------ */
/* Writer: open / recovery                                                  */
/* ------------------------------------------------------------------------ */

/* Delete segments [from, n) of @p bases. */
static void drop_later(int dirfd, const uint64_t *bases, size_t from, size_t n)
{
	for (size_t j = from; j < n; j++)
		unlink_seg(dirfd, bases[j]);
}

/* Read the clean marker: 1 and its next_seq, 0 if absent/unreadable. */
static int read_clean(int dirfd, uint64_t *next)
{
	char buf[96] = {0};
	int fd = openat(dirfd, CLEAN_NAME, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unsigned long long v;
	if (r <= 0 || sscanf(buf, "spate-log clean v1 next_seq=%llu", &v) != 1)
		return 0;
	*next = v;
	return 1;
}

/*
 * Recover the segments of l->dir into l->segs; the last becomes active.
 * @return 0, -EBADMSG, -EPROTO, -errno.
 */
static int recover(struct spate_log *l, struct spate_log_recovery *rep)
{
	uint64_t *bases = NULL, clean_next = 0;
	size_t n = 0;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc, fd = -1;
	int repair = !!(l->p.flags & SPATE_LOG_F_REPAIR);
	char name[64];

	int clean = read_clean(l->dirfd, &clean_next);
	if (unlinkat(l->dirfd, CLEAN_NAME, 0) == 0) {
		rc = fsync_dir(l->dirfd);
		if (rc < 0)
			return rc;
	}
	rc = list_segs(l->dirfd, &bases, &n, 1);
	if (rc < 0)
		return rc;
	rep->segments = (uint32_t)n;

	for (size_t i = 0; i < n; i++) {
		int last = i + 1 == n;
		struct scan sc = {0};
		struct idx_ent *ents = NULL;
		size_t nents = 0;
		const char *why = NULL;

		seg_name(name, sizeof(name), bases[i], ".seg");
		fd = openat(l->dirfd, name, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			goto out;
		}
		uint64_t fsize = file_size(fd);
		uint32_t ver = 0;
		rc = read_seg_hdr(fd, bases[i], &why, &ver);
		if (rc == -EPROTO) {
			msg_add(rep->message, sizeof(rep->message), "%s: %s", name, why);
			goto out;
		}
		if (rc == -EBADMSG) {
			if (!repair) {
				msg_add(rep->message, sizeof(rep->message), "%s: offset 0: %s", name, why);
				goto out;
			}
			msg_add(rep->message, sizeof(rep->message),
				"repair: %s: %s; dropped it and %zu later segment(s)", name, why, n - i - 1);
			close(fd);
			fd = -1;
			drop_later(l->dirfd, bases, i, n);
			rc = 0;
			break;
		}
		if (rc < 0)
			goto out;
		if (l->nsegs && l->segs[l->nsegs - 1].end_seq != bases[i]) {
			if (!repair) {
				msg_add(rep->message, sizeof(rep->message),
					"%s: sequence gap: previous segment ends at %" PRIu64
					", this one starts at %" PRIu64, name, l->segs[l->nsegs - 1].end_seq,
					bases[i]);
				rc = -EBADMSG;
				goto out;
			}
			msg_add(rep->message, sizeof(rep->message),
				"repair: sequence gap before %s; dropped it and %zu later segment(s)", name,
				n - i - 1);
			close(fd);
			fd = -1;
			drop_later(l->dirfd, bases, i, n);
			break;
		}

		/* Fast path: from the last index entry to the end. */
		int full = last && !clean;
		int rebuild = 0;
		if (!full) {
			rc = load_index(l->dirfd, bases[i], &ents, &nents);
			if (rc < 0)
				goto out;
			if (!index_plausible(ents, nents, bases[i], fsize)) {
				full = 1;
				rebuild = 1;
			} else {
				/* Indexing the tail as the writer would: a second
				 * entry means the index stopped short. */
				rc = scan_frames(fd, ents[nents - 1].off, ents[nents - 1].seq, fsize,
						 l->p.index_every, &sc, &buf, &cap);
				if (rc < 0)
					goto out_ents;
				if (sc.why || sc.off == ents[nents - 1].off ||
				    (last && clean && sc.next_seq != clean_next)) {
					/* Index points at garbage, a bad tail, or the
					 * marker disagrees: scan it all. */
					full = 1;
					rebuild = 1;
				} else if (sc.nents > 1) {
					struct idx_ent *ne = realloc(ents, (nents + sc.nents - 1) * sizeof(*ne));
					if (!ne) {
						rc = -ENOMEM;
						goto out_ents;
					}
					ents = ne;
					memcpy(ents + nents, sc.ents + 1, (sc.nents - 1) * sizeof(*ne));
					nents += sc.nents - 1;
					rc = write_index(l->dirfd, bases[i], ents, nents);
					if (rc < 0)
						goto out_ents;
				}
			}
		}
		if (full) {
			if (last && clean)
				clean = 0; /* the marker did not hold */
			free(sc.ents);
			memset(&sc, 0, sizeof(sc));
			rc = scan_frames(fd, SEG_HDR_SIZE, bases[i], fsize, l->p.index_every, &sc, &buf,
					 &cap);
			if (rc < 0)
				goto out_ents;
			if (sc.why) {
				rc = valid_frame_after(fd, sc.off, fsize, &buf, &cap);
				if (rc < 0)
					goto out_ents;
				int mid = rc == 1 || !last;
				if (mid && !repair) {
					msg_add(rep->message, sizeof(rep->message),
						"%s: corrupt frame at offset %" PRIu64 " (%s)%s", name, sc.off,
						sc.why, last ? " followed by valid frames" : " before the last segment");
					rc = -EBADMSG;
					goto out_ents;
				}
				if (ftruncate(fd, (off_t)sc.off) < 0 || fdatasync(fd) < 0) {
					rc = -errno;
					goto out_ents;
				}
				rep->truncated_bytes += fsize - sc.off;
				rep->truncated_at = sc.off;
				msg_add(rep->message, sizeof(rep->message),
					"%s%s: cut %" PRIu64 " bytes at offset %" PRIu64 " (%s)",
					mid ? "repair: " : "", name, fsize - sc.off, sc.off, sc.why);
				if (!last) {
					msg_add(rep->message, sizeof(rep->message),
						"dropped %zu later segment(s)", n - i - 1);
					drop_later(l->dirfd, bases, i + 1, n);
					n = i + 1;
					last = 1;
				}
				fsize = sc.off;
			}
			rebuild = 1;
		}
		if (!sc.why && sc.off < fsize) {
			/* Zero padding after the last frame (an O_DIRECT writer's
			 * last block): the end of the frames; cut, not reported. */
			if (ftruncate(fd, (off_t)sc.off) < 0) {
				rc = -errno;
				goto out_ents;
			}
			fsize = sc.off;
		}
		if (rebuild) {
			rc = write_index(l->dirfd, bases[i], sc.ents, sc.nents);
			if (rc < 0)
				goto out_ents;
		}
		if (last && !clean && fdatasync(fd) < 0) {
			/* What a crashed writer left in the page cache is durable
			 * from here on: durable_seq starts at the end. */
			rc = -errno;
			goto out_ents;
		}
		rc = segs_push(l, (struct seg_info){bases[i], sc.next_seq, fsize, sc.last_ts});
		if (rc < 0)
			goto out_ents;
		if (!last) {
			close(fd);
			fd = -1;
		} else {
			/* The last segment stays open for appending. */
			uint64_t idx_n = rebuild ? sc.nents : nents;
			uint64_t idx_last = rebuild ? (sc.nents ? sc.ents[sc.nents - 1].off : 0)
						    : ents[nents - 1].off;
			seg_name(name, sizeof(name), bases[i], ".idx");
			int ifd = openat(l->dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
			if (ifd < 0) {
				rc = -errno;
				goto out_ents;
			}
			if (ftruncate(ifd, (off_t)(idx_n * IDX_ENT_SIZE)) < 0) {
				rc = -errno;
				close(ifd);
				goto out_ents;
			}
			l->seg_fd = fd;
			l->seg_gen++;
			l->idx_fd = ifd;
			l->idx_n = idx_n;
			l->idx_last_off = idx_last;
			l->seg_ver = ver;
			fd = -1;
		}
		free(ents);
		free(sc.ents);
		continue;
out_ents:
		free(ents);
		free(sc.ents);
		goto out;
	}
	rc = 0;
	rep->clean = n && clean;
	if (!n && clean)
		rep->clean = 1;
out:
	if (fd >= 0)
		close(fd);
	free(bases);
	free(buf);
	return rc;
}

int spate_log_open(const char *dir, const struct spate_log_params *p, struct spate_log **out,
		   struct spate_log_recovery *rep)
{
	struct spate_log_recovery dummy;
	struct spate_log *l;
	int rc;

	if (!dir || !out)
		return -EINVAL;
	*out = NULL;
	if (!rep)
		rep = &dummy;
	memset(rep, 0, sizeof(*rep));
	rep->first_seq = UINT64_MAX;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->dirfd = l->seg_fd = l->idx_fd = -1;
	l->fill_i = l->busy_i = l->fail_i = -1;
	l->fill_next = UINT64_MAX;
	if (p)
		l->p = *p;
	if (!l->p.segment_bytes)
		l->p.segment_bytes = DEF_SEGMENT_BYTES;
	if (l->p.segment_bytes < MIN_SEGMENT_BYTES)
		l->p.segment_bytes = MIN_SEGMENT_BYTES;
	if (!l->p.interval_ns)
		l->p.interval_ns = DEF_INTERVAL_NS;
	if (!l->p.index_every)
		l->p.index_every = DEF_INDEX_EVERY;
	l->dir = strdup(dir);
	if (!l->dir) {
		rc = -ENOMEM;
		goto fail;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		goto fail;
	}
	l->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->dirfd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = recover(l, rep);
	if (rc < 0)
		goto fail;
	if (l->nsegs) {
		l->have_records = l->segs[l->nsegs - 1].end_seq > l->segs[0].base || l->nsegs > 1;
		l->next_seq = l->written_seq = l->durable_seq = l->segs[l->nsegs - 1].end_seq;
		if (l->have_records)
			rep->first_seq = l->segs[0].base;
	}
	rep->next_seq = l->next_seq;
	rep->segments = (uint32_t)l->nsegs;
	l->last_commit_ns = spate_mono_ns();

	/* O_DIRECT before io_uring: the staging buffers must exist to be
	 * registered. */
	if ((l->p.flags & SPATE_LOG_F_DIRECT) || (LOG_DEFAULT_DIRECT && !(l->p.flags & SPATE_LOG_F_BUFFERED))) {
		char why[160] = "";
		rc = dio_setup(l, why, sizeof(why));
		if (rc < 0)
			goto fail;
		if (!rc)
			msg_add(rep->message, sizeof(rep->message), "page cache: %s", why);
	} else {
		msg_add(rep->message, sizeof(rep->message), "page cache (BUFFERED)");
	}

	if (!(l->p.flags & SPATE_LOG_F_NO_URING)) {
		rc = uring_setup(l);
		if (rc == 0) {
			l->use_uring = 1;
			msg_add(rep->message, sizeof(rep->message), "io_uring%s%s",
				l->uring_flags & IORING_SETUP_SINGLE_ISSUER ? " SINGLE_ISSUER" : "",
				l->uring_flags & IORING_SETUP_DEFER_TASKRUN ? "|DEFER_TASKRUN" : "");
		} else {
			msg_add(rep->message, sizeof(rep->message),
				"io_uring refused (%s): pwrite + fdatasync", strerror(-rc));
		}
	} else {
		msg_add(rep->message, sizeof(rep->message), "pwrite + fdatasync (NO_URING)");
	}
	rep->io_uring = l->use_uring;
	if (l->direct && l->seg_fd >= 0) {
		if (l->seg_ver < 2) {
			/* Version 1 has no padding: continue it through the page
			 * cache; the next segment goes direct. */
			msg_add(rep->message, sizeof(rep->message),
				"version-1 segment continued through the page cache");
		} else if (dio_enable(l->seg_fd) < 0) {
			l->direct = 0;
		} else {
			l->seg_direct = 1;
			rc = dio_load_tail(l);
			if (rc < 0)
				goto fail;
		}
	}
	if (l->direct) {
		rep->direct = 1;
		rep->dio_align = l->dio_align;
		rep->fixed_buffers = l->use_uring && l->bufs_fixed;
		msg_add(rep->message, sizeof(rep->message), "O_DIRECT (align %u)%s%s", l->dio_align,
			l->use_uring && l->bufs_fixed ? ", registered buffers" : "",
			l->use_uring && l->files_fixed ? ", registered file" : "");
	}
	*out = l;
	return 0;
fail:
	if (l->use_uring)
		io_uring_queue_exit(&l->ring);
	free(l->stage);
	free(l->tail);
	close_active(l);
	if (l->dirfd >= 0)
		close(l->dirfd);
	free(l->segs);
	free(l->dir);
	free(l);
	return rc;
}

int spate_log_append(struct spate_log *l, const void *batch, size_t len)
{
	struct log_q q = {0};
	const char *why;

	if (!l || !batch)
		return -EINVAL;
	if (check_batch(batch, len, &q.count, &q.base_seq, &q.ts, &why) < 0)
		return -EINVAL;
	if (q.base_seq != l->next_seq && (l->nsegs || l->qn))
		return -ERANGE;
	if (l->qn == l->qcap) {
		size_t nc = l->qcap ? l->qcap * 2 : 64;
		struct log_q *nq = realloc(l->q, nc * sizeof(*nq));
		if (!nq)
			return -ENOMEM;
		l->q = nq;
		l->qcap = nc;
	}
	q.batch = batch;
	q.fh = (struct frame_hdr){SPATE_LOG_FRAME_MAGIC, (uint32_t)len, 0, 0};
	/* With O_DIRECT the CRC is computed as the frame is copied into a
	 * staging buffer, so it overlaps the disk writing earlier buffers. */
	if (!l->direct)
		q_crc(&q);
	if (!l->qn && !l->nsegs)
		l->written_seq = l->durable_seq = q.base_seq;
	l->q[l->qn++] = q;
	l->next_seq = q.base_seq + q.count;
	return 0;
}

int spate_log_sync(struct spate_log *l, uint64_t *durable)
{
	if (!l)
		return -EINVAL;
	int want = 0;
	uint64_t now = spate_mono_ns();
	if (l->p.durability == SPATE_LOG_DURABLE_ALWAYS)
		want = 1;
	else if (l->p.durability == SPATE_LOG_DURABLE_INTERVAL)
		want = now - l->last_commit_ns >= l->p.interval_ns;
	size_t had = l->qn;
	/* Nothing new: finish the write in flight (O_DIRECT), so that
	 * spate_log_written_seq() catches up with spate_log_next_seq(). */
	int rc = write_queue(l, want && (had || l->durable_seq < l->next_seq), had == 0);
	if (l->nsegs && l->segs[l->nsegs - 1].end_seq > l->segs[0].base)
		l->have_records = 1;
	if (rc < 0)
		return rc;
	if (want)
		l->last_commit_ns = now;
	apply_retention(l);
	if (durable)
		*durable = l->durable_seq;
	return 0;
}

int spate_log_close(struct spate_log *l)
{
	if (!l)
		return 0;
	int rc = write_queue(l, 1, 1);
	if (rc == 0 && l->seg_direct && file_size(l->seg_fd) > l->segs[l->nsegs - 1].size) {
		/* Drop the O_DIRECT padding: a closed segment ends at its last
		 * frame. */
		if (ftruncate(l->seg_fd, (off_t)l->segs[l->nsegs - 1].size) < 0 || fdatasync(l->seg_fd) < 0)
			rc = -errno;
	}
	if (rc == 0 && l->seg_fd >= 0 && l->durable_seq < l->written_seq) {
		if (fdatasync(l->seg_fd) < 0)
			rc = -errno;
	}
	if (rc == 0 && l->idx_fd >= 0 && fdatasync(l->idx_fd) < 0)
		rc = -errno;
	if (rc == 0 && l->qn == 0) {
		char buf[96];
		int n = snprintf(buf, sizeof(buf), "spate-log clean v1 next_seq=%" PRIu64 "\n", l->next_seq);
		int fd = openat(l->dirfd, CLEAN_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			rc = -errno;
		} else {
			rc = pwrite_full(fd, buf, (size_t)n, 0);
			if (rc == 0 && fdatasync(fd) < 0)
				rc = -errno;
			close(fd);
			if (rc == 0)
				rc = fsync_dir(l->dirfd);
		}
	}
	if (l->use_uring) {
		/* A write still in flight (after an error) must not outlive
		 * its buffers. */
		dio_wait_busy(l);
		/* Synchronous: the segment is no longer referenced once close
		 * returns (the ring itself is torn down asynchronously). */
		if (l->files_fixed)
			io_uring_unregister_files(&l->ring);
		if (l->bufs_fixed)
			io_uring_unregister_buffers(&l->ring);
		io_uring_queue_exit(&l->ring);
	}
	close_active(l);
	close(l->dirfd);
	free(l->stage);
	free(l->tail);
	free(l->idxq);
	free(l->stg);
	free(l->segs);
	free(l->q);
	free(l->dir);
	free(l);
	return rc;
}

uint64_t spate_log_next_seq(const struct spate_log *l)
{
	return l->next_seq;
}

uint64_t spate_log_written_seq(const struct spate_log *l)
{
	return l->written_seq;
}

uint64_t spate_log_durable_seq(const struct spate_log *l)
{
	return l->durable_seq;
}

uint64_t spate_log_first_seq(const struct spate_log *l)
{
	if (!l->nsegs || !l->have_records)
		return UINT64_MAX;
	return l->segs[0].base;
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                   */
/* ------------------------------------------------------------------------ */

static void rd_ra_reset(struct spate_log_reader *rd, uint64_t start);

static int rd_open_seg(struct spate_log_reader *rd, uint64_t base)
{
	char name[64];
	const char *why;

	seg_name(name, sizeof(name), base, ".seg");
	int fd = openat(rd->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = read_seg_hdr(fd, base, &why, NULL);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	rd_ra_reset(rd, SEG_HDR_SIZE); /* no read may land after the close */
	if (rd->fd >= 0)
		close(rd->fd);
	rd->fd = fd;
	rd->seg_base = base;
	rd->off = SEG_HDR_SIZE;
	rd->bidx = rd->bcount = 0;
	rd->nlink_due = 0;
	return 0;
}

/* ts of the first frame of a segment (UINT64_MAX: none). */
static uint64_t seg_first_ts(int dirfd, uint64_t base)
{
	char name[64];
	struct spate_ring_bhdr bh;

	seg_name(name, sizeof(name), base, ".seg");
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return UINT64_MAX;
	int rc = pread_full(fd, &bh, sizeof(bh), SEG_HDR_SIZE + FRAME_HDR_SIZE);
	close(fd);
	return rc == 1 ? bh.ts : UINT64_MAX;
}

/* Load the next frame at rd->off into the batch buffer. @return 1, 0 (end
 * of this segment for now), -EBADMSG, -errno. */
static int rd_load(struct spate_log_reader *rd)
{
	struct frame_info fi;
	const char *why;
	int rc = 0;

	for (int attempt = 0; attempt < 50; attempt++) {
		uint64_t fsize = file_size(rd->fd);
		if (rd->off >= fsize)
			return 0; /* nothing new (or cut by a recovery) */
		rc = read_frame(rd->fd, rd->off, fsize, &rd->buf, &rd->buf_cap, &fi, &why);
		if (rc == 1)
			break;
		if (rc == 0)
			return 0;
		if (rc != -EBADMSG)
			return rc;
		/* An O_DIRECT writer bypasses the page cache: if a racing read
		 * kept a stale page of the block it rewrote, drop it so the
		 * next look reads the disk. */
		posix_fadvise(rd->fd, (off_t)(rd->off & ~(uint64_t)(PAD_MAX - 1)), 0, POSIX_FADV_DONTNEED);
		/* Possibly a frame being written right now: the end of the file
		 * means "not yet", and so does a zero frame header (the padding
		 * after the last frame, or a block not yet written); elsewhere,
		 * look again shortly. */
		uint32_t magic = 0;
		if (fsize - rd->off < FRAME_HDR_SIZE || !strcmp(why, "frame runs past the end of the file") ||
		    (pread_full(rd->fd, &magic, sizeof(magic), rd->off) == 1 && magic == 0))
			return 0;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	if (rc != 1)
		return rc;
	rd->blen = fi.len;
	rd->bcount = fi.count;
	rd->bidx = 0;
	rd->bseq = fi.base_seq;
	rd->bts = fi.ts;
	rd->bcur = rd->buf + SPATE_RING_BHDR_SIZE;
	rd->off += FRAME_HDR_SIZE + fi.len;
	return 1;
}

/*
 * Read-ahead. The window is up to RD_NCHUNK chunks of the segment,
 * contiguous from ra_start; the first holds the parse position. With
 * io_uring, each chunk consumed is replaced by a read RD_NCHUNK chunks
 * ahead (one submit each), so the disk works while frames are parsed out of
 * the chunks; with pread (SPATE_LOG_RD_F_PREAD, or io_uring refused) a chunk
 * is read when the parser needs it. A frame inside one chunk is returned
 * in place; one straddling chunks (or larger than a chunk) is copied into
 * rd->buf. A read shorter than a chunk is the end of the data at the time
 * of the read: the parser stops there, and the window is dropped whenever
 * the parser finds no whole frame, so the next call reads that region again
 * (nothing past the file size seen by a read is ever assumed).
 */
static struct rd_chunk *rd_ck(struct spate_log_reader *rd, unsigned k)
{
	return &rd->ra[(rd->ra_head + k) % RD_NCHUNK];
}

static uint8_t *rd_ck_buf(struct spate_log_reader *rd, const struct rd_chunk *c)
{
	return rd->ra_mem + (size_t)(c - rd->ra) * RD_CHUNK;
}

/* Reap one completion, waiting for it. @return 0, -errno (-EINTR: again). */
static int rd_reap(struct spate_log_reader *rd)
{
	struct io_uring_cqe *cqe;
	int rc = io_uring_wait_cqe(&rd->ring, &cqe);

	if (rc < 0)
		return rc;
	uint64_t slot = io_uring_cqe_get_data64(cqe);
	if (slot < RD_NCHUNK) {
		struct rd_chunk *c = &rd->ra[slot];
		c->err = cqe->res < 0 ? cqe->res : 0;
		c->len = cqe->res < 0 ? 0 : (uint32_t)cqe->res;
		c->state = RD_C_DONE;
		if (c->len < RD_CHUNK)
			rd->ra_short = 1;
		rd->ra_busy--;
	}
	io_uring_cqe_seen(&rd->ring, cqe);
	return 0;
}

/* Wait for every read in flight, forget the window, start it at @p start. */
static void rd_ra_reset(struct spate_log_reader *rd, uint64_t start)
{
	while (rd->ra_busy) {
		int rc = rd_reap(rd);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
			/* Cannot happen with reads in flight; never reuse
			 * buffers the kernel may still fill. */
			rd->ra_busy = 0;
			rd->ra_mem = NULL; /* leaked on purpose */
			break;
		}
	}
	for (unsigned i = 0; i < RD_NCHUNK; i++)
		rd->ra[i].state = RD_C_FREE;
	rd->ra_head = rd->ra_n = 0;
	rd->ra_short = 0;
	rd->ra_start = start;
}

/* Read the window's next chunk: queue it (io_uring) or read it (pread).
 * @return 0, -errno. */
static int rd_issue(struct spate_log_reader *rd)
{
	struct rd_chunk *c = rd_ck(rd, rd->ra_n);
	uint8_t *b = rd_ck_buf(rd, c);

	c->off = rd->ra_start + (uint64_t)rd->ra_n * RD_CHUNK;
	c->len = 0;
	c->err = 0;
	rd->ra_n++;
	if (rd->uring == 1) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&rd->ring);
		if (sqe) {
			io_uring_prep_read(sqe, rd->fd, b, RD_CHUNK, c->off);
			io_uring_sqe_set_data64(sqe, (uint64_t)(c - rd->ra));
			int rc;
			do
				rc = io_uring_submit(&rd->ring);
			while (rc == -EINTR);
			if (rc == 1) {
				c->state = RD_C_BUSY;
				rd->ra_busy++;
				return 0;
			}
			/* Refused now: the SQE stays unsubmitted (we never submit
			 * again), reads in flight are still reaped; pread from now. */
			rd->uring_err = rc < 0 ? rc : -EIO;
			rd->uring = 2;
		}
	}
	while (c->len < RD_CHUNK) {
		ssize_t r = pread(rd->fd, b + c->len, RD_CHUNK - c->len, (off_t)(c->off + c->len));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			c->err = -errno;
			break;
		}
		if (r == 0)
			break;
		c->len += (uint32_t)r;
	}
	c->state = RD_C_DONE;
	if (c->len < RD_CHUNK)
		rd->ra_short = 1;
	return 0;
}

/* Free the chunks wholly before @p off (the parse position) and, with
 * io_uring, read ahead: up to RD_NCHUNK chunks once the first came back
 * whole (after a reset, at the live end of a log, one read first).
 * @return 0, -errno. */
static int rd_ra_advance(struct spate_log_reader *rd, uint64_t off)
{
	if (!rd->ra_n || off < rd->ra_start || off - rd->ra_start >= (uint64_t)rd->ra_n * RD_CHUNK) {
		rd_ra_reset(rd, off);
	} else {
		while (rd->ra_n && rd_ck(rd, 0)->off + RD_CHUNK <= off) {
			struct rd_chunk *c = rd_ck(rd, 0);
			while (c->state == RD_C_BUSY) {
				int rc = rd_reap(rd);
				if (rc < 0 && rc != -EINTR)
					return rc;
			}
			c->state = RD_C_FREE;
			rd->ra_head = (rd->ra_head + 1) % RD_NCHUNK;
			rd->ra_n--;
			rd->ra_start += RD_CHUNK;
			if (++rd->ra_used % RD_NLINK_EVERY == 0)
				rd->nlink_due = 1;
		}
	}
	if (rd->uring != 1)
		return 0;
	const struct rd_chunk *h = rd->ra_n ? rd_ck(rd, 0) : NULL;
	unsigned want = h && h->state == RD_C_DONE && h->len == RD_CHUNK ? RD_NCHUNK : 1;
	while (rd->ra_n < want && !rd->ra_short) {
		int rc = rd_issue(rd);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The window's chunk holding @p o, read. @return 1, -errno. */
static int rd_chunk_at(struct spate_log_reader *rd, uint64_t o, struct rd_chunk **out)
{
	if (!rd->ra_n || o < rd->ra_start || o - rd->ra_start >= (uint64_t)RD_NCHUNK * RD_CHUNK)
		rd_ra_reset(rd, o);
	unsigned k = (unsigned)((o - rd->ra_start) / RD_CHUNK);
	while (rd->ra_n <= k) {
		int rc = rd_issue(rd);
		if (rc < 0)
			return rc;
	}
	struct rd_chunk *c = rd_ck(rd, k);
	while (c->state == RD_C_BUSY) {
		int rc = rd_reap(rd);
		if (rc < 0 && rc != -EINTR)
			return rc;
	}
	if (c->err)
		return c->err;
	*out = c;
	return 1;
}

/* Bytes [o, o + n) of the segment: *view points into a chunk when they are
 * in one, else they are copied to @p dst (n bytes) and *view = dst.
 * @return 1, 0 (the data read ends before o + n), -errno. */
static int rd_get(struct spate_log_reader *rd, uint64_t o, size_t n, uint8_t *dst, const uint8_t **view)
{
	size_t done = 0;

	while (done < n) {
		struct rd_chunk *c = NULL;
		int rc = rd_chunk_at(rd, o + done, &c);
		if (rc < 0)
			return rc;
		uint64_t in = o + done - c->off;
		if (in >= c->len)
			return 0;
		size_t avail = (size_t)(c->len - in);
		if (!done && avail >= n) {
			*view = rd_ck_buf(rd, c) + in;
			return 1;
		}
		size_t k = avail < n - done ? avail : n - done;
		memcpy(dst + done, rd_ck_buf(rd, c) + in, k);
		done += k;
	}
	*view = dst;
	return 1;
}

/* Set the ring up at the first read (plain setup: no SQPOLL); refused ->
 * pread, and spate_log_reader_uring() says why. */
static void rd_uring_setup(struct spate_log_reader *rd)
{
	if (rd->uring)
		return;
	if (rd->flags & SPATE_LOG_RD_F_PREAD) {
		rd->uring = -1;
		return;
	}
	int rc = io_uring_queue_init(2 * RD_NCHUNK, &rd->ring, 0);
	if (rc < 0) {
		rd->uring = -1;
		rd->uring_err = rc;
		return;
	}
	rd->uring = 1;
}

/* rd_load() through the read-ahead window: the same checks and the same
 * answers (a zero frame header or a frame running past the data read: not
 * written yet; anything else wrong: drop cached pages, look again for ~50
 * ms, then -EBADMSG). @return 1, 0, -EBADMSG, -errno. */
static int rd_load_ra(struct spate_log_reader *rd)
{
	if (!rd->ra_mem) {
		void *m = mmap(NULL, (size_t)RD_NCHUNK * RD_CHUNK, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return -ENOMEM;
		rd->ra_mem = m;
		rd_ra_reset(rd, rd->off);
	}
	rd_uring_setup(rd);
	for (int attempt = 0; attempt < 50; attempt++) {
		struct frame_hdr fh;
		const uint8_t *v, *body;
		struct frame_info fi;
		const char *why;
		int rc = rd_ra_advance(rd, rd->off);
		if (rc < 0)
			return rc;
		rc = rd_get(rd, rd->off, sizeof(fh), (uint8_t *)&fh, &v);
		if (rc < 0)
			return rc;
		if (!rc)
			goto not_yet; /* fewer than 16 bytes: nothing new */
		if (v != (const uint8_t *)&fh)
			memcpy(&fh, v, sizeof(fh));
		if (fh.magic == 0)
			goto not_yet; /* padding after the last frame, or not written yet */
		if (fh.magic != SPATE_LOG_FRAME_MAGIC || fh.flags != 0 || fh.len < SPATE_RING_BHDR_SIZE ||
		    (fh.len & 7u) || fh.len >= MAX_FRAME_LEN)
			goto again;
		if (rd->buf_cap < fh.len) {
			size_t nc = rd->buf_cap ? rd->buf_cap : 4096;
			while (nc < fh.len)
				nc *= 2;
			uint8_t *nb = realloc(rd->buf, nc);
			if (!nb)
				return -ENOMEM;
			rd->buf = nb;
			rd->buf_cap = nc;
		}
		rc = rd_get(rd, rd->off + FRAME_HDR_SIZE, fh.len, rd->buf, &body);
		if (rc < 0)
			return rc;
		if (!rc)
			goto not_yet; /* runs past the end of what is written */
		if (frame_crc(fh.len, body) != fh.crc ||
		    check_batch(body, fh.len, &fi.count, &fi.base_seq, &fi.ts, &why) < 0)
			goto again;
		rd->blen = fh.len;
		rd->bcount = fi.count;
		rd->bidx = 0;
		rd->bseq = fi.base_seq;
		rd->bts = fi.ts;
		rd->bcur = body + SPATE_RING_BHDR_SIZE;
		rd->off += FRAME_HDR_SIZE + fh.len;
		return 1;
again:
		/* A frame being written, or a stale page kept by a racing read
		 * (see rd_load()): drop it, read again shortly. */
		rd_ra_reset(rd, rd->off);
		posix_fadvise(rd->fd, (off_t)(rd->off & ~(uint64_t)(PAD_MAX - 1)), 0, POSIX_FADV_DONTNEED);
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	return -EBADMSG;
not_yet:
	rd_ra_reset(rd, rd->off); /* read this region again next time */
	rd->nlink_due = 1;
	return 0;
}

/* The next frame, per frame (SPATE_LOG_RD_F_PER_FRAME) or read ahead. */
static int rd_next_frame(struct spate_log_reader *rd)
{
	return rd->flags & SPATE_LOG_RD_F_PER_FRAME ? rd_load(rd) : rd_load_ra(rd);
}

/* Decode the record at rd->bcur into @p r and advance. */
static void rd_next_rec(struct spate_log_reader *rd, struct spate_ring_rec *r)
{
	const uint8_t *p = rd->bcur;
	uint32_t lt;
	uint32_t kh;
	uint64_t len;

	memcpy(&lt, p, sizeof(lt));
	memcpy(&kh, p + 4, sizeof(kh));
	len = lt & 0xffffffu;
	const uint8_t *data = p + sizeof(struct spate_ring_rhdr);
	if (len == SPATE_RING_LONG) {
		memcpy(&len, data, sizeof(len));
		data += 8;
	}
	if (r) {
		r->data = data;
		r->seq = rd->bseq + rd->bidx;
		r->ts = rd->bts;
		r->len = (uint32_t)len;
		r->key_hash = kh;
		r->type = (uint8_t)(lt >> 24);
	}
	rd->bcur = p + spate_ring_rec_size(len);
	rd->bidx++;
}

/* Move to the oldest retained segment; @return 0, -ENOENT (none). */
static int rd_to_oldest(struct spate_log_reader *rd, uint64_t *skipped)
{
	uint64_t *bases = NULL;
	size_t n = 0;
	int rc = list_segs(rd->dirfd, &bases, &n, 0);

	if (rc < 0)
		return rc;
	/* Retention deletes oldest first: the oldest left is where to go. */
	rc = -ENOENT;
	for (size_t i = 0; i < n && rc == -ENOENT; i++)
		rc = rd_open_seg(rd, bases[i]); /* -ENOENT: deleted meanwhile */
	free(bases);
	if (rc < 0)
		return rc;
	if (rd->seg_base > rd->next_seq) {
		if (skipped)
			*skipped += rd->seg_base - rd->next_seq;
		rd->next_seq = rd->seg_base;
	}
	return 0;
}

/* If retention deleted the reader's segment, move to the oldest retained
 * record (the gap goes to *skipped). @return 1 (moved: read on), 0 (not
 * deleted), -ENOENT (nothing retained), -errno. */
static int rd_check_deleted(struct spate_log_reader *rd, uint64_t *skipped)
{
	struct stat st;

	rd->nlink_due = 0;
	if (fstat(rd->fd, &st) != 0 || st.st_nlink != 0)
		return 0;
	int rc = rd_to_oldest(rd, skipped);
	return rc < 0 ? rc : 1;
}

int spate_log_read(struct spate_log_reader *rd, struct spate_ring_rec *out, unsigned max,
		   uint64_t *skipped)
{
	if (skipped)
		*skipped = 0;
	if (!rd || (!out && max))
		return -EINVAL;
	if (!max)
		return 0;
	for (int guard = 0; guard < 1000000; guard++) {
		if (rd->bidx < rd->bcount) {
			unsigned n = 0;
			while (n < max && rd->bidx < rd->bcount) {
				uint64_t s = rd->bseq + rd->bidx;
				if (s < rd->next_seq) {
					rd_next_rec(rd, NULL);
					continue;
				}
				rd_next_rec(rd, &out[n]);
				rd->next_seq = s + 1;
				if (out[n].ts < rd->min_ts)
					continue;
				rd->min_ts = 0; /* once reached, every later record */
				n++;
			}
			if (n)
				return (int)n;
			continue;
		}
		/* Was our segment deleted by retention? Per batch when reading
		 * per frame; with read-ahead, at the end of its data and every
		 * RD_NLINK_EVERY chunks (what was read ahead stays readable). */
		int rc;
		if (rd->fd >= 0 && ((rd->flags & SPATE_LOG_RD_F_PER_FRAME) || rd->nlink_due)) {
			rc = rd_check_deleted(rd, skipped);
			if (rc == -ENOENT)
				return 0;
			if (rc < 0)
				return rc;
			if (rc)
				continue;
		}
		rc = rd->fd >= 0 ? rd_next_frame(rd) : 0;
		if (rc < 0)
			return rc;
		if (rc == 1) {
			if (rd->bseq + rd->bcount <= rd->next_seq)
				rd->bidx = rd->bcount; /* all before our position */
			continue;
		}
		if (rd->nlink_due && rd->fd >= 0) {
			/* At the end of the data (read ahead): deleted? */
			rc = rd_check_deleted(rd, skipped);
			if (rc == -ENOENT)
				return 0;
			if (rc < 0)
				return rc;
			if (rc)
				continue;
		}
		/* End of this segment: is there a next one? */
		uint64_t *bases = NULL;
		size_t n = 0;
		rc = list_segs(rd->dirfd, &bases, &n, 0);
		if (rc < 0)
			return rc;
		uint64_t nb = UINT64_MAX;
		for (size_t i = 0; i < n; i++) {
			if (bases[i] > rd->seg_base || rd->fd < 0) {
				nb = bases[i];
				break;
			}
		}
		free(bases);
		if (nb == UINT64_MAX)
			return 0;
		if (rd->fd >= 0) {
			/* The writer completes (and syncs) a segment before it
			 * creates the next: look once more for frames written
			 * since our end-of-file, then move on. Per frame here
			 * (fstat and pread), whatever the mode: a read ahead
			 * that came back short must not make us skip frames. */
			rc = rd_load(rd);
			if (rc < 0)
				return rc;
			if (rc == 1) {
				if (rd->bseq + rd->bcount <= rd->next_seq)
					rd->bidx = rd->bcount;
				continue;
			}
		}
		rc = rd_open_seg(rd, nb);
		if (rc == -ENOENT)
			continue;
		if (rc < 0)
			return rc;
		if (nb > rd->next_seq) {
			if (skipped)
				*skipped += nb - rd->next_seq;
			rd->next_seq = nb;
		}
	}
	return 0;
}

/* Seek within the open segment using its index. */
static void rd_seek_index(struct spate_log_reader *rd, int by_time, uint64_t arg)
{
	struct idx_ent *e = NULL;
	size_t n = 0;

	if (load_index(rd->dirfd, rd->seg_base, &e, &n) < 0 || !n ||
	    !index_plausible(e, n, rd->seg_base, file_size(rd->fd))) {
		free(e);
		return;
	}
	/* Last entry with key < arg (by time) or <= arg (by seq): O(log n). */
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int before = by_time ? e[mid].ts < arg : e[mid].seq <= arg;
		if (before)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0) {
		/* Trust the entry only if a frame of that sequence starts there
		 * (a stale index just means a longer scan). */
		struct {
			struct frame_hdr fh;
			struct spate_ring_bhdr bh;
		} fb;
		const struct idx_ent *t = &e[lo - 1];
		if (pread_full(rd->fd, &fb, sizeof(fb), t->off) == 1 &&
		    fb.fh.magic == SPATE_LOG_FRAME_MAGIC && fb.bh.base_seq == t->seq) {
			rd->off = t->off;
			if (by_time)
				rd->next_seq = t->seq;
		}
	}
	free(e);
}

int spate_log_reader_open(const char *dir, enum spate_log_from from, uint64_t arg,
			  struct spate_log_reader **out)
{
#if defined(__SANITIZE_THREAD__)
	/* liburing 2.3 maps and unmaps ring memory with raw system calls that
	 * ThreadSanitizer does not see: a short-lived reader ring whose
	 * address is reused by another thread's ring reads as a data race.
	 * Under TSan the default reader uses pread (the io_uring path is
	 * tested by tests/test_log_read.c, which asks for it). */
	return spate_log_reader_open_flags(dir, from, arg, SPATE_LOG_RD_F_PREAD, out);
#else
	return spate_log_reader_open_flags(dir, from, arg, 0, out);
#endif
}

int spate_log_reader_open_flags(const char *dir, enum spate_log_from from, uint64_t arg, uint32_t flags,
				struct spate_log_reader **out)
{
	struct spate_log_reader *rd;
	uint64_t *bases = NULL;
	size_t n = 0;
	int rc;

	if (!dir || !out || from > SPATE_LOG_FROM_TIME ||
	    (flags & ~(SPATE_LOG_RD_F_PREAD | SPATE_LOG_RD_F_PER_FRAME)))
		return -EINVAL;
	*out = NULL;
	rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->fd = -1;
	rd->flags = flags;
	rd->dir = strdup(dir);
	if (!rd->dir) {
		rc = -ENOMEM;
		goto fail;
	}
	rd->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rd->dirfd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = list_segs(rd->dirfd, &bases, &n, 0);
	if (rc < 0)
		goto fail;
	if (!n) {
		rd->next_seq = 0;
		goto done;
	}
	size_t pick = 0;
	if (from == SPATE_LOG_FROM_SEQ) {
		/* Last segment with base <= arg: O(log S). */
		size_t lo = 0, hi = n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (bases[mid] <= arg)
				lo = mid + 1;
			else
				hi = mid;
		}
		pick = lo ? lo - 1 : 0;
	} else if (from == SPATE_LOG_FROM_TIME) {
		/* Last segment whose first ts < arg: O(log S) header reads. */
		size_t lo = 0, hi = n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			uint64_t ts = seg_first_ts(rd->dirfd, bases[mid]);
			if (ts != UINT64_MAX && ts < arg)
				lo = mid + 1;
			else
				hi = mid;
		}
		pick = lo ? lo - 1 : 0;
	}
	for (; pick < n; pick++) {
		rc = rd_open_seg(rd, bases[pick]);
		if (rc != -ENOENT)
			break;
	}
	if (rc == -ENOENT) {
		rd->next_seq = 0;
		rc = 0;
		goto done;
	}
	if (rc < 0)
		goto fail;
	rd->next_seq = rd->seg_base;
	if (from == SPATE_LOG_FROM_SEQ && arg > rd->seg_base) {
		rd->next_seq = arg;
		rd_seek_index(rd, 0, arg);
	} else if (from == SPATE_LOG_FROM_TIME) {
		rd->min_ts = arg;
		rd_seek_index(rd, 1, arg);
	}
done:
	free(bases);
	*out = rd;
	return 0;
fail:
	free(bases);
	spate_log_reader_close(rd);
	return rc;
}

int spate_log_reader_uring(struct spate_log_reader *rd, int *err)
{
	if (err)
		*err = 0;
	if (!rd)
		return -EINVAL;
	if (rd->flags & SPATE_LOG_RD_F_PER_FRAME)
		return 0;
	rd_uring_setup(rd);
	if (err)
		*err = rd->uring_err;
	return rd->uring == 1;
}

void spate_log_reader_close(struct spate_log_reader *rd)
{
	if (!rd)
		return;
	rd_ra_reset(rd, 0);
	if (rd->uring > 0)
		io_uring_queue_exit(&rd->ring);
	if (rd->ra_mem)
		munmap(rd->ra_mem, (size_t)RD_NCHUNK * RD_CHUNK);
	if (rd->fd >= 0)
		close(rd->fd);
	if (rd->dirfd >= 0)
		close(rd->dirfd);
	free(rd->buf);
	free(rd->dir);
	free(rd);
}

/* ------------------------------------------------------------------------ */
/* Stats                                                                    */
/* ------------------------------------------------------------------------ */

int spate_log_stat(const char *dir, struct spate_log_stats *st)
{
	uint64_t *bases = NULL;
	size_t n = 0;
	uint8_t *buf = NULL;
	size_t cap = 0;
	char name[64];
	int rc;

	if (!dir || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	st->first_seq = UINT64_MAX;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	rc = list_segs(dfd, &bases, &n, 0);
	if (rc < 0)
		goto out;
	st->segments = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		seg_name(name, sizeof(name), bases[i], ".seg");
		int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		uint64_t fsize = file_size(fd);
		st->bytes += fsize;
		if (i == 0) {
			uint64_t ts = seg_first_ts(dfd, bases[i]);
			st->first_ts = ts == UINT64_MAX ? 0 : ts;
		}
		if (i + 1 == n) {
			struct idx_ent *e = NULL;
			size_t ne = 0;
			struct scan sc = {0};
			uint64_t from = SEG_HDR_SIZE, seq = bases[i];
			if (load_index(dfd, bases[i], &e, &ne) == 0 && index_plausible(e, ne, bases[i], fsize)) {
				from = e[ne - 1].off;
				seq = e[ne - 1].seq;
			}
			free(e);
			rc = scan_frames(fd, from, seq, fsize, 0, &sc, &buf, &cap);
			st->next_seq = sc.next_seq;
			st->last_ts = sc.last_ts;
			if (sc.next_seq > bases[0] || n > 1)
				st->first_seq = bases[0];
		}
		close(fd);
		if (rc < 0)
			goto out;
	}
out:
	free(bases);
	free(buf);
	close(dfd);
	return rc;
}
