/* SPDX-License-Identifier: MIT */
/*
 * write_direct.c - the O_DIRECT write pipeline.
 *
 * O_DIRECT (the default where statx reports STATX_DIOALIGN): the page cache
 * costs more than the disk here (a buffered writer reached 0.26-0.66x of
 * the raw O_DIRECT bandwidth), so frames are copied (CRC-32C computed on the
 * way, while the disk writes earlier buffers) into STAGE_N aligned 1 MiB
 * staging buffers registered with io_uring and written with WRITE_FIXED
 * through a registered file, up to STAGE_N - 1 writes in flight while the
 * next buffer fills, also across spate_log_sync() calls. The segment is
 * preallocated (segments.c), so the writes do not extend the file and ext4
 * runs them in parallel (an extending direct write waits for every write
 * before it: with extending writes, depth 1 = depth 16 here).
 *
 * Order. Writes complete in any order; they are booked (written_seq, sizes,
 * index: l->dio.stg lists the staged frames) only in file order, from the
 * head of the issue order (ord), once a write and every write before it
 * completed (dio_advance). So spate_log_written_seq(), the ring release
 * that follows it and every durable ack cover a prefix with no gap; a
 * killed writer may leave a gap then frames of later writes, never
 * acknowledged, which recovery cuts (recover.c, "Writes in flight").
 *
 * The run's last block is zero-padded to the alignment and kept
 * (l->dio.tail): the next buffer starts by rewriting it. Two writes of one
 * block in flight could land in either order, so a buffer that starts with
 * the last block of a write still in flight waits for the writes in flight
 * first; to keep that rare, a partial buffer is held back (filled further
 * by the next call) while writes are in flight, unless a wait or an
 * fdatasync is due. When the policy asks for a sync and the last write is
 * the only one in flight, it is written and fdatasynced from the calling
 * thread (pwrite + fdatasync: no other thread to wake, dio_issue());
 * otherwise every write is waited for and the caller fdatasyncs. A failed or short write: the written prefix is kept, the segment
 * cut back to its last whole frame, the partial block re-read, and the
 * failed write then every write issued after it are written again, in
 * order, one at a time (dio_settle), at the next call, before anything else.
 *
 * Limits:
 *  - O_DIRECT copies every byte once (memcpy, ~10 GB/s, beside the disk's
 *    ~1-3 GB/s). spate_log_sync() does not wait for its writes unless an
 *    fdatasync is due, so spate_log_written_seq() may lag next_seq by up to
 *    the in-flight window plus a held partial buffer (8 MiB) until a later
 *    call; a call with nothing new appended writes and waits for all.
 *    Alignments above 4096 (PAD_MAX) fall back to the page cache.
 */
#include "log_pvt.h"

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

int spate_log_dio_enable(int fd)
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
int spate_log_dio_setup(struct spate_log *l, char *why, size_t wsz)
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
	else if ((rc = spate_log_dio_enable(fd)) < 0)
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
	l->dio.stage = stage;
	l->dio.tail = tail;
	l->dio.align = a;
	l->direct = 1;
	return 1;
}

/* Load the active segment's last partial block into l->dio.tail (O_DIRECT fd:
 * an aligned read of the whole block). @return 0, -errno. */
int spate_log_dio_load_tail(struct spate_log *l)
{
	const struct seg_info *s = &l->segs[l->nsegs - 1];

	l->dio.tail_len = (uint32_t)(s->size % l->dio.align);
	l->dio.stage_end = s->size;
	l->dio.fill_next = UINT64_MAX;
	if (!l->dio.tail_len)
		return 0;
	uint64_t at = s->size - l->dio.tail_len;
	ssize_t r;
	do
		r = pread(l->seg_fd, l->dio.stage, l->dio.align, (off_t)at);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if ((uint64_t)r < l->dio.tail_len)
		return -EIO;
	memcpy(l->dio.tail, l->dio.stage, l->dio.tail_len);
	return 0;
}

static uint8_t *slot_buf(struct spate_log *l, int i)
{
	return l->dio.stage + (size_t)i * STAGE_BYTES;
}

/* Frames staged and now known written up to file offset @p end: book them
 * (sizes, sequence numbers, index entries). */
static void dio_frames_done(struct spate_log *l, uint64_t end)
{
	while (l->dio.stg_h < l->dio.stg_n) {
		const struct dio_frame *f = &l->dio.stg[l->dio.stg_h];
		if (f->off + FRAME_HDR_SIZE + f->len > end)
			break;
		struct log_q q = {.fh = {SPATE_LOG_FRAME_MAGIC, f->len, 0, 0},
				  .count = f->count, .base_seq = f->base_seq, .ts = f->ts};
		spate_log_frame_written(l, &q, f->off);
		l->dio.stg_h++;
	}
	if (l->dio.stg_h == l->dio.stg_n)
		l->dio.stg_h = l->dio.stg_n = 0;
}

static int ord_head(const struct spate_log *l)
{
	return l->dio.ord_n ? l->dio.ord[l->dio.ord_h] : -1;
}

/* Book the completed writes at the head of the issue order, in file order:
 * a write that completed before an earlier one waits (DONE) until that one
 * did, so written_seq only ever covers a prefix of the segment with no
 * gap. Stops at a failed or short write (fail_i), which dio_settle()
 * writes again, with everything issued after it. */
static void dio_advance(struct spate_log *l)
{
	while (l->dio.ord_n && l->dio.fail_i < 0) {
		int i = ord_head(l);
		struct dio_slot *s = &l->dio.slot[i];
		if (s->state != SLOT_DONE)
			break;
		uint32_t want = s->len - s->from;
		uint64_t end = s->off + s->from + (s->res > 0 ? (uint64_t)s->res : 0);
		uint64_t data_end = s->off + s->fill;
		dio_frames_done(l, end < data_end ? end : data_end);
		if (s->res >= 0 && (uint32_t)s->res == want) {
			s->state = SLOT_FREE;
			l->dio.ord_h = (l->dio.ord_h + 1) % STAGE_N;
			l->dio.ord_n--;
			continue;
		}
		/* Failed or short (disk full): the bytes from the last whole
		 * block written on are still here; written again by the next
		 * dio_settle(). */
		s->state = SLOT_FAILED;
		s->from = (uint32_t)((end & ~(uint64_t)(l->dio.align - 1)) - s->off);
		l->dio.fail_i = i;
		l->dio.io_err = s->res < 0 ? s->res : -ENOSPC;
	}
}

/* A write (tag: its slot) or the fdatasync behind it completed with
 * @p res. */
static void dio_complete(struct spate_log *l, uint64_t tag, int res)
{
	if (tag == NOP_TAG)
		return;
	if (tag == FSYNC_TAG) {
		l->dio.fsync_done = 1;
		l->dio.fsync_res = LOG_SYNC(res);
		return;
	}
	if (tag >= STAGE_N || l->dio.slot[tag].state != SLOT_BUSY)
		return;
	l->dio.slot[tag].state = SLOT_DONE;
	l->dio.slot[tag].res = res;
	l->dio.nbusy--;
	dio_advance(l);
}

/* Reap completions; with @p wait, at least one. @return 0, -errno. */
int spate_log_dio_reap(struct spate_log *l, int wait)
{
	struct io_uring_cqe *cqe;
	int rc;

	if (!l->dio.nbusy)
		return 0;
	if (wait) {
		do
			rc = io_uring_wait_cqe(&l->uring.ring, &cqe);
		while (rc == -EINTR);
		if (rc < 0)
			return rc;
	}
	unsigned head, n = 0;
	io_uring_for_each_cqe(&l->uring.ring, head, cqe) {
		dio_complete(l, cqe->user_data, cqe->res);
		n++;
	}
	io_uring_cq_advance(&l->uring.ring, n);
	return 0;
}

/*
 * Write bytes [from, len) of slot @p i at their place in the segment; the
 * caller made sure no write in flight covers any of them. With
 * @p sync_after (only when nothing else is in flight, and the caller waits
 * for it), written then fdatasynced from this thread, as a bare pwrite +
 * fdatasync is: through io_uring (a write linked to an fsync) the same
 * pair took 0.29 ms instead of 0.22 at low load (docs/bench.md, session 5):
 * a direct write into preallocated (unwritten) space is punted to an io-wq
 * worker, its completion to a kworker that converts the extent, and the
 * fsync to io-wq again, each a wake-up of another thread on a busy core.
 * Without io_uring, every write goes that way, completed at once.
 */
static void dio_issue(struct spate_log *l, int i, int sync_after)
{
	struct dio_slot *s = &l->dio.slot[i];
	uint8_t *buf = slot_buf(l, i) + s->from;
	uint32_t len = s->len - s->from;
	uint64_t off = s->off + s->from;

	if (s->state == SLOT_FILL)
		l->dio.ord[(l->dio.ord_h + l->dio.ord_n++) % STAGE_N] = i; /* a retry keeps its place */
	s->state = SLOT_BUSY;
	l->dio.nbusy++;
	l->dio.issued_end = s->off + s->len;
	l->dio.fsync_done = 0;
	spate_log_prealloc(l, s->off + s->len);
	if (!l->uring.on || sync_after) {
		ssize_t w;
		do
			w = pwrite(l->seg_fd, buf, len, (off_t)off);
		while (w < 0 && errno == EINTR);
		dio_complete(l, (uint64_t)i, w < 0 ? -errno : (int)w);
		/* Only after the whole write: its success (and nothing else
		 * in flight) makes the fdatasync cover every write before. */
		if (sync_after && l->dio.fail_i < 0)
			dio_complete(l, FSYNC_TAG, fdatasync(l->seg_fd) < 0 ? -errno : 0);
		return;
	}
	int fixed_file = l->uring.files_fixed && l->uring.fixed_gen == l->seg_gen;
	int fd = fixed_file ? 0 : l->seg_fd;
	/* Cannot fail: STAGE_N - 1 writes at most are in flight, fewer than
	 * URING_ENTRIES. */
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->uring.ring);
	if (l->uring.bufs_fixed)
		io_uring_prep_write_fixed(sqe, fd, buf, len, off, i);
	else
		io_uring_prep_write(sqe, fd, buf, len, off);
	if (fixed_file)
		sqe->flags |= IOSQE_FIXED_FILE;
	sqe->user_data = (uint64_t)i;
	int rc;
	do
		rc = io_uring_submit(&l->uring.ring);
	while (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
	if (rc < 0) {
		/* Nothing submitted: the SQE is still ours; make it a no-op
		 * (a later submit must not write stale data) and complete the
		 * write as failed. */
		io_uring_prep_nop(sqe);
		sqe->user_data = NOP_TAG;
		dio_complete(l, (uint64_t)i, rc);
	}
}

/* Wait until no write is in flight. */
void spate_log_dio_wait_busy(struct spate_log *l)
{
	while (l->dio.nbusy) {
		int rc = spate_log_dio_reap(l, 1);
		if (rc < 0) {
			/* Cannot wait (should not happen): count the writes as
			 * failed; dio_settle() writes them again. */
			for (unsigned i = 0; i < STAGE_N; i++)
				if (l->dio.slot[i].state == SLOT_BUSY)
					dio_complete(l, i, rc);
		}
	}
}

/*
 * Wait for every write in flight; if one failed, cut the segment back to
 * its last whole frame (or to where the failed write starts, if that frame
 * began before it) and write it again from its staging buffer, then every
 * write issued after it, one at a time, in order, as long as that makes
 * progress. So the segment is always a prefix of frames plus, at a crash,
 * at most the in-flight window (< INFLIGHT_MAX) of writes that completed
 * out of order after a gap (recover.c cuts them).
 * @return 0 (nothing in flight, nothing failed), or the error (-ENOSPC...).
 */
static int dio_settle(struct spate_log *l)
{
	int tries = 0;
	uint64_t last_from = UINT64_MAX;

	for (;;) {
		spate_log_dio_wait_busy(l);
		if (l->dio.fail_i < 0) {
			int h = ord_head(l);
			if (h < 0 || l->dio.slot[h].state != SLOT_REDO)
				return 0;
			dio_issue(l, h, 0);
			continue;
		}
		struct dio_slot *s = &l->dio.slot[l->dio.fail_i];
		uint64_t o = l->segs[l->nsegs - 1].size; /* end of the last whole frame */
		uint64_t a = l->dio.align;
		uint64_t from = s->off + s->from;
		if ((o & ~(a - 1)) > s->off && (o & ~(a - 1)) < from)
			from = o & ~(a - 1);
		if (from == last_from || tries++ > 64)
			return l->dio.io_err ? l->dio.io_err : -EIO; /* no progress */
		last_from = from;
		/* What was issued after it is written again after it. */
		for (unsigned k = 1; k < l->dio.ord_n; k++) {
			struct dio_slot *t = &l->dio.slot[l->dio.ord[(l->dio.ord_h + k) % STAGE_N]];
			t->state = SLOT_REDO;
			t->from = 0;
		}
		uint64_t cut = o > from ? o : from;
		if (spate_log_file_size(l->seg_fd) > cut) {
			if (ftruncate(l->seg_fd, (off_t)cut) < 0)
				return -errno;
			l->prealloc_end = cut;
		}
		s->from = (uint32_t)(from - s->off);
		l->dio.fail_i = -1;
		dio_issue(l, (int)(s - l->dio.slot), 0);
	}
}

/*
 * Write the slot being filled (zero-padded to dio_align; its last partial
 * block is kept in l->dio.tail for the next slot to start with). Up to
 * STAGE_N - 1 writes are in flight; a slot whose first block is the last
 * block of a write still in flight (the partial block rewritten) waits for
 * the writes in flight first: two writes of one block in flight could land
 * in either order. With @p sync_after, an fdatasync follows it (linked when
 * it is the only write in flight; else spate_log_dio_flush() waits and the
 * caller syncs). @return 0, or an error from dio_settle() (the slot stays
 * filled).
 */
static int dio_submit_fill(struct spate_log *l, int sync_after)
{
	int i = l->dio.fill_i;
	struct dio_slot *s = &l->dio.slot[i];
	int h = ord_head(l);
	if (l->dio.fail_i >= 0 || (h >= 0 && l->dio.slot[h].state == SLOT_REDO) ||
	    (l->dio.nbusy && s->off < l->dio.issued_end)) {
		int rc = dio_settle(l);
		if (rc < 0)
			return rc;
	}
	uint32_t a = l->dio.align, fill = s->fill;
	uint32_t padded = (fill + a - 1) & ~(a - 1);
	uint8_t *buf = slot_buf(l, i);
	memset(buf + fill, 0, padded - fill);
	l->dio.tail_len = fill & (a - 1);
	memcpy(l->dio.tail, buf + (fill & ~(a - 1)), l->dio.tail_len);
	s->from = 0;
	s->len = padded;
	l->dio.fill_i = -1;
	l->dio.fill_next = fill == STAGE_BYTES ? s->off + STAGE_BYTES : UINT64_MAX;
	dio_issue(l, i, sync_after && !l->dio.nbusy);
	return 0;
}

/* Make sure a slot with room is being filled. @return 0, -errno. */
static int dio_need_space(struct spate_log *l)
{
	if (l->dio.fill_i >= 0 && l->dio.slot[l->dio.fill_i].fill < STAGE_BYTES)
		return 0;
	if (l->dio.fill_i >= 0) {
		int rc = dio_submit_fill(l, 0);
		if (rc < 0)
			return rc;
	}
	int i;
	for (;;) {
		i = 0;
		while (i < (int)STAGE_N && l->dio.slot[i].state != SLOT_FREE)
			i++;
		if (i < (int)STAGE_N)
			break;
		/* Every slot is written or waits to be: wait for the oldest
		 * (or write again what failed). */
		int h = ord_head(l);
		int rc = l->dio.fail_i < 0 && h >= 0 && l->dio.slot[h].state == SLOT_BUSY
				 ? spate_log_dio_reap(l, 1)
				 : dio_settle(l);
		if (rc < 0)
			return rc;
	}
	struct dio_slot *s = &l->dio.slot[i];
	s->state = SLOT_FILL;
	if (l->dio.fill_next != UINT64_MAX) {
		/* The previous slot ended full, mid-stream: go on after it. */
		s->off = l->dio.fill_next;
		s->fill = 0;
	} else {
		/* Start with the last partial block, rewritten. */
		s->off = l->dio.stage_end - l->dio.tail_len;
		memcpy(slot_buf(l, i), l->dio.tail, l->dio.tail_len);
		s->fill = l->dio.tail_len;
	}
	l->dio.fill_i = i;
	return 0;
}

/*
 * O_DIRECT: copy frames q[*h, ...) of the active segment into the staging
 * buffers (CRC-32C on the way), writing each buffer as it fills while the
 * next one fills. Stops at the end of the queue or when the next frame
 * does not fit in the segment (@return 1: roll). A frame interrupted by an
 * error is resumed at l->dio.q_part by the next call.
 * @return 0, 1, -errno.
 */
int spate_log_dio_stage(struct spate_log *l, size_t *h)
{
	while (*h < l->qn) {
		struct log_q *q = &l->q[*h];
		uint64_t fsz = FRAME_HDR_SIZE + q->fh.len;
		if (!l->dio.q_part) {
			if (l->dio.stage_end > SEG_HDR_SIZE && l->dio.stage_end + fsz > l->p.segment_bytes)
				return 1;
			if (l->dio.stg_n == l->dio.stg_cap) {
				size_t nc = l->dio.stg_cap ? l->dio.stg_cap * 2 : 256;
				struct dio_frame *ns = realloc(l->dio.stg, nc * sizeof(*ns));
				if (!ns)
					return -ENOMEM;
				l->dio.stg = ns;
				l->dio.stg_cap = nc;
			}
		}
		spate_log_q_crc(q);
		while (l->dio.q_part < fsz) {
			int rc = dio_need_space(l);
			if (rc < 0)
				return rc;
			struct dio_slot *s = &l->dio.slot[l->dio.fill_i];
			uint8_t *dst = slot_buf(l, l->dio.fill_i) + s->fill;
			uint64_t p = l->dio.q_part, n;
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
			l->dio.q_part += n;
		}
		l->dio.stg[l->dio.stg_n++] = (struct dio_frame){l->dio.stage_end, q->base_seq, q->ts, q->count, q->fh.len};
		l->dio.stage_end += fsz;
		l->dio.q_part = 0;
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
int spate_log_dio_flush(struct spate_log *l, int wait, int want_sync, int *synced)
{
	int rc;

	*synced = 0;
	/* A write that failed since the last call is written again (or its
	 * failure reported) now, not when a buffer next fills. */
	if (l->dio.fail_i >= 0) {
		rc = dio_settle(l);
		if (rc < 0)
			return rc;
	}
	/* Without a wait or a sync due, a partial slot is held back while
	 * writes are in flight: its last block would be written again by the
	 * next slot, which would then have to wait for it; the next call
	 * fills it further (or a call with nothing new writes it). */
	if (l->dio.fill_i >= 0 && (wait || want_sync || !l->dio.nbusy)) {
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
	 * an fdatasync (dio_issue). */
	if (l->dio.fsync_done && l->dio.fsync_res == 0) {
		*synced = 1;
		return 0;
	}
	if (l->dio.fsync_done)
		return l->sync_err = l->dio.fsync_res;
	return 0; /* not covered: the caller fdatasyncs */
}

/* O_DIRECT: make the ring usable by this thread, the active segment the
 * registered file. */
int spate_log_dio_prepare(struct spate_log *l)
{
	if (!l->uring.on)
		return 0;
	int rc = spate_log_uring_own(l);
	if (rc < 0)
		return rc;
	if (l->uring.on && l->uring.files_fixed && l->uring.fixed_gen != l->seg_gen)
		l->uring.fixed_gen = io_uring_register_files_update(&l->uring.ring, 0, &l->seg_fd, 1) == 1 ? l->seg_gen : 0;
	return 0;
}

/*
 * An fdatasync failed (writer.c, rewind): forget everything staged or
 * written after the durable point (the caller re-stages it from the queue)
 * and load the partial block at the new end. Nothing is in flight after
 * spate_log_dio_wait_busy().
 */
void spate_log_dio_rewind(struct spate_log *l)
{
	spate_log_dio_wait_busy(l);
	for (unsigned i = 0; i < STAGE_N; i++)
		l->dio.slot[i].state = SLOT_FREE;
	l->dio.fill_i = l->dio.fail_i = -1;
	l->dio.ord_h = l->dio.ord_n = l->dio.nbusy = 0;
	l->dio.issued_end = 0;
	l->dio.fsync_done = 0;
	l->dio.stg_h = l->dio.stg_n = 0;
	l->dio.q_part = 0;
	if (spate_log_dio_load_tail(l) < 0)
		l->failed = -EIO; /* cannot rebuild the block to rewrite */
}
