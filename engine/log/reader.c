/* SPDX-License-Identifier: MIT */
/*
 * reader.c - history reads (spate_log_reader_*): any number of readers,
 * in any process, beside one writer.
 *
 * Limits:
 *  - Readers see frames once they are written (buffered reads see completed
 *    O_DIRECT writes on ext4; a stale page left by a racing read is dropped
 *    with POSIX_FADV_DONTNEED); a frame being written while read fails its
 *    CRC and is re-read for up to ~50 ms first; a zero frame header means
 *    "not written yet".
 *  - FROM_TIME assumes batch timestamps do not decrease along the log.
 */
#include "log_pvt.h"

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
/* A frame that fails its checks is read again after this pause, 50 times
 * (a writer may be writing it); the fuzz harness builds with 0. */
#ifndef RD_REREAD_NS
#define RD_REREAD_NS 1000000
#endif

struct spate_log_reader {
	char *dir;
	int dirfd;
	int fd;            /* current segment, or -1 */
	uint64_t seg_base; /* its base_seq */
	uint64_t off;      /* next frame */
	uint64_t next_seq; /* sequence of the next record to return */
	uint64_t frame_seq; /* base_seq the next frame must carry */
	const char *why;    /* why the last frame load failed (-EBADMSG) */
	int dmg_set;        /* the last read stopped at dmg */
	struct spate_log_damage dmg;
	uint64_t repaired;  /* records skipped per the repair journal */
	uint8_t *buf_scan;  /* frames read while looking for a resume point */
	size_t buf_scan_cap;
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

static void rd_ra_reset(struct spate_log_reader *rd, uint64_t start);

static int rd_open_seg(struct spate_log_reader *rd, uint64_t base)
{
	char name[64];
	const char *why;

	spate_log_seg_name(name, sizeof(name), base, ".seg");
	int fd = openat(rd->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = spate_log_read_seg_hdr(fd, base, &why, NULL);
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
	rd->frame_seq = base;
	rd->bidx = rd->bcount = 0;
	rd->nlink_due = 0;
	return 0;
}

/* ts of the first frame of a segment (UINT64_MAX: none). */
uint64_t spate_log_seg_first_ts(int dirfd, uint64_t base)
{
	char name[64];
	struct spate_ring_bhdr bh;

	spate_log_seg_name(name, sizeof(name), base, ".seg");
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return UINT64_MAX;
	int rc = spate_log_pread_full(fd, &bh, sizeof(bh), SEG_HDR_SIZE + FRAME_HDR_SIZE);
	close(fd);
	return rc == 1 ? bh.ts : UINT64_MAX;
}

/* The frame just read (its batch at @p body, @p len bytes) becomes the
 * current batch; the next frame follows it. */
static void rd_enter_batch(struct spate_log_reader *rd, const uint8_t *body, uint32_t len,
			   uint32_t count, uint64_t base_seq, uint64_t ts)
{
	rd->blen = len;
	rd->bcount = count;
	rd->bidx = 0;
	rd->bseq = base_seq;
	rd->bts = ts;
	rd->bcur = body + SPATE_RING_BHDR_SIZE;
	rd->off += FRAME_HDR_SIZE + len;
}

/* Load the next frame at rd->off into the batch buffer. @return 1, 0 (end
 * of this segment for now), -EBADMSG, -errno. */
static int rd_load(struct spate_log_reader *rd)
{
	struct frame_info fi;
	const char *why;
	int rc = 0;

	for (int attempt = 0; attempt < 50; attempt++) {
		uint64_t fsize = spate_log_file_size(rd->fd);
		if (rd->off >= fsize)
			return 0; /* nothing new (or cut by a recovery) */
		rc = spate_log_read_frame(rd->fd, rd->off, fsize, &rd->buf, &rd->buf_cap, &fi, &why);
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
		    (spate_log_pread_full(rd->fd, &magic, sizeof(magic), rd->off) == 1 && magic == 0))
			return 0;
		/* Sectors of zeros in the batch read (or after a header cut at a
		 * sector boundary): a write of the
		 * preallocated segment has not landed (yet). */
		if (!strcmp(why, "CRC-32C mismatch")) {
			struct frame_hdr fh;
			if (spate_log_pread_full(rd->fd, &fh, sizeof(fh), rd->off) == 1 && fh.len <= rd->buf_cap &&
			    spate_log_frame_unlanded(&fh, rd->buf, rd->off))
				return 0;
		}
		struct timespec ts = {0, RD_REREAD_NS};
		nanosleep(&ts, NULL);
	}
	if (rc != 1) {
		rd->why = why;
		return rc;
	}
	rd_enter_batch(rd, rd->buf, fi.len, fi.count, fi.base_seq, fi.ts);
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
			/* Allocate only for a frame that fits in the file: a
			 * length field is not trusted before that. */
			if (fh.len > spate_log_file_size(rd->fd) - rd->off - FRAME_HDR_SIZE ||
			    spate_log_file_size(rd->fd) < rd->off + FRAME_HDR_SIZE)
				goto not_yet;
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
		if (spate_log_frame_crc(fh.len, body) != fh.crc ||
		    spate_log_check_batch(body, fh.len, &fi.count, &fi.base_seq, &fi.ts, &why) < 0) {
			/* Sectors of zeros: a write of the preallocated
			 * segment has not landed (yet): nothing new. */
			if (spate_log_frame_unlanded(&fh, body, rd->off))
				goto not_yet;
			goto again;
		}
		rd_enter_batch(rd, body, fh.len, fi.count, fi.base_seq, fi.ts);
		return 1;
again:
		/* A frame being written, or a stale page kept by a racing read
		 * (see rd_load()): drop it, read again shortly. */
		rd_ra_reset(rd, rd->off);
		posix_fadvise(rd->fd, (off_t)(rd->off & ~(uint64_t)(PAD_MAX - 1)), 0, POSIX_FADV_DONTNEED);
		struct timespec ts = {0, RD_REREAD_NS};
		nanosleep(&ts, NULL);
	}
	rd->why = "a frame fails its CRC-32C or layout check";
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
	int rc = spate_log_list_segs(rd->dirfd, &bases, &n, 0);

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

/* Go on at a repair journal entry's resume point, counting the records
 * it skips. @return 1, -errno. */
static int rd_skip_to(struct spate_log_reader *rd, const struct spate_log_skip *s, uint64_t *skipped)
{
	if (s->rseg != rd->seg_base) {
		int rc = rd_open_seg(rd, s->rseg);
		if (rc < 0)
			return rc;
	}
	rd->off = s->roff;
	rd->frame_seq = s->rseq;
	rd->bidx = rd->bcount = 0;
	if (s->rseq > rd->next_seq) {
		if (skipped)
			*skipped += s->rseq - rd->next_seq;
		rd->repaired += s->rseq - rd->next_seq;
		rd->next_seq = s->rseq;
	}
	return 1;
}

/*
 * The reader met damage at rd->off of its segment (@p why): unless
 * retention deleted the segment meanwhile (then: to the oldest retained),
 * go on where the repair journal says, or stop there with the damage and
 * its resume point recorded (spate_log_reader_damage()). The log resumes
 * at a frame at or after @p from in this segment (UINT64_MAX: at the end of
 * the segment, so in a later one).
 * @return 1 (moved: read on), -EBADMSG, -errno.
 */
static int rd_damage(struct spate_log_reader *rd, const char *why, uint64_t from, uint64_t *skipped)
{
	struct spate_log_journal j;
	uint64_t *bases = NULL;
	size_t n = 0;

	int rc = rd_check_deleted(rd, skipped);
	if (rc != 0)
		return rc == -ENOENT ? 0 : rc;
	rd->bidx = rd->bcount = 0;
	rd_ra_reset(rd, rd->off);
	rc = spate_log_list_segs(rd->dirfd, &bases, &n, 0);
	if (rc < 0)
		return rc;
	rc = spate_log_journal_load(rd->dirfd, &j);
	if (rc < 0)
		goto out;
	const struct spate_log_skip *s = spate_log_journal_find(&j, rd->seg_base, rd->off, rd->frame_seq);
	if (s && spate_log_skip_forward(s, bases, n)) {
		struct spate_log_skip copy = *s;
		rc = rd_skip_to(rd, &copy, skipped);
		goto out_j;
	}
	struct spate_log_damage *d = &rd->dmg;
	memset(d, 0, sizeof(*d));
	d->segment = rd->seg_base;
	d->offset = rd->off;
	d->seq = rd->frame_seq;
	snprintf(d->why, sizeof(d->why), "%s", why);
	size_t i = 0;
	while (i < n && bases[i] != rd->seg_base)
		i++;
	if (from == UINT64_MAX) {
		i++; /* a gap before the next segment */
		from = SEG_HDR_SIZE;
	}
	rc = spate_log_find_resume(rd->dirfd, bases, n, i, i < n && bases[i] == rd->seg_base ? rd->fd : -1,
				   from, d, &rd->buf_scan, &rd->buf_scan_cap);
	if (rc >= 0) {
		rd->dmg_set = 1;
		rc = -EBADMSG;
	}
out_j:
	spate_log_journal_free(&j);
out:
	free(bases);
	return rc;
}

/* A frame was loaded (the batch at rd->bseq, ending at rd->off): it must
 * continue the log. @return 1 (read on), -EBADMSG, -errno. */
static int rd_in_order(struct spate_log_reader *rd, uint64_t *skipped)
{
	if (rd->bseq != rd->frame_seq) {
		char why[96];
		uint64_t at = rd->off - FRAME_HDR_SIZE - rd->blen, bseq = rd->bseq;
		snprintf(why, sizeof(why), "frame holds %" PRIu64 "..%" PRIu64 ", expected %" PRIu64 " (%s)",
			 bseq, bseq + rd->bcount - 1, rd->frame_seq,
			 bseq > rd->frame_seq ? "frames missing or out of order"
					      : "frames repeated or out of order");
		uint64_t from = bseq > rd->frame_seq ? at : rd->off;
		rd->off = at;
		return rd_damage(rd, why, from, skipped);
	}
	rd->frame_seq = rd->bseq + rd->bcount;
	if (rd->bseq + rd->bcount <= rd->next_seq)
		rd->bidx = rd->bcount; /* all before our position */
	return 1;
}

/* The reader is at the end of what its segment holds and a later segment
 * (@p nb) exists, so this one is complete: what is left must be the zero
 * padding, and the next segment must start where this one ended.
 * @return 0 (go to the next), 1 (moved: read on), -EBADMSG, -errno. */
static int rd_segment_end(struct spate_log_reader *rd, uint64_t nb, uint64_t *skipped)
{
	uint64_t fsz = spate_log_file_size(rd->fd);

	if (rd->off < fsz) {
		/* Before calling it damage: drop cached pages that a read
		 * racing an O_DIRECT write may have kept, and look again. */
		posix_fadvise(rd->fd, (off_t)(rd->off & ~(uint64_t)(PAD_MAX - 1)), 0, POSIX_FADV_DONTNEED);
		int rc = rd_load(rd);
		if (rc == 1)
			return rd_in_order(rd, skipped);
		if (rc < 0 && rc != -EBADMSG)
			return rc;
	}
	if (rd->off < fsz && spate_log_zero_tail(rd->fd, rd->off, fsz) != 1)
		return rd_damage(rd, "bytes that are not a valid frame in a completed segment", rd->off + 8,
				 skipped);
	if (nb != rd->frame_seq) {
		char why[96];
		snprintf(why, sizeof(why), "segment ends at %" PRIu64 ", the next one starts at %" PRIu64,
			 rd->frame_seq, nb);
		return rd_damage(rd, why, UINT64_MAX, skipped);
	}
	return 0;
}

int spate_log_reader_damage(const struct spate_log_reader *rd, struct spate_log_damage *d)
{
	if (!rd || !d)
		return -EINVAL;
	if (!rd->dmg_set)
		return 0;
	*d = rd->dmg;
	return 1;
}

uint64_t spate_log_reader_repaired(const struct spate_log_reader *rd)
{
	return rd ? rd->repaired : 0;
}

int spate_log_read(struct spate_log_reader *rd, struct spate_ring_rec *out, unsigned max,
		   uint64_t *skipped)
{
	if (skipped)
		*skipped = 0;
	if (!rd || (!out && max))
		return -EINVAL;
	rd->dmg_set = 0;
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
		if (rc == -EBADMSG)
			rc = rd_damage(rd, rd->why, rd->off + 8, skipped);
		else if (rc == 1)
			rc = rd_in_order(rd, skipped);
		if (rc < 0)
			return rc;
		if (rc == 1)
			continue;
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
		rc = spate_log_list_segs(rd->dirfd, &bases, &n, 0);
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
			if (rc == -EBADMSG)
				rc = rd_damage(rd, rd->why, rd->off + 8, skipped);
			else if (rc == 1)
				rc = rd_in_order(rd, skipped);
			else
				rc = rd_segment_end(rd, nb, skipped);
			if (rc < 0)
				return rc;
			if (rc == 1)
				continue;
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

	if (spate_log_load_index(rd->dirfd, rd->seg_base, &e, &n) < 0 || !n ||
	    !spate_log_index_plausible(e, n, rd->seg_base, spate_log_file_size(rd->fd))) {
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
		if (spate_log_pread_full(rd->fd, &fb, sizeof(fb), t->off) == 1 &&
		    fb.fh.magic == SPATE_LOG_FRAME_MAGIC && fb.bh.base_seq == t->seq) {
			rd->off = t->off;
			rd->frame_seq = t->seq;
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
	rc = spate_log_list_segs(rd->dirfd, &bases, &n, 0);
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
			uint64_t ts = spate_log_seg_first_ts(rd->dirfd, bases[mid]);
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
	free(rd->buf_scan);
	free(rd->dir);
	free(rd);
}
