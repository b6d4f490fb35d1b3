/* SPDX-License-Identifier: MIT */
/*
 * writer.c - the log writer: open, append, sync, close (see spate/log.h,
 * docs/format.md), the io_uring ring both pipelines share, and the
 * write queue that hands frames to one of the two pipelines:
 * write_direct.c (O_DIRECT staging) or write_buffered.c (page cache).
 *
 * Design: a directory of segment files, each a 4 KiB header then frames; a
 * frame is a 16-byte frame header and one ring batch byte for byte, so the
 * writer never re-encodes: spate_log_append() only queues a pointer to the
 * caller's batch, and spate_log_sync() writes the queue.
 *
 * Limits:
 *  - With SINGLE_ISSUER the ring belongs to one thread; if spate_log_sync()
 *    is called from another thread than the last one, the write in flight
 *    is waited for and the ring recreated (cheap, and rare: one persistence
 *    thread per log). No DEFER_TASKRUN: it would forbid that wait.
 */
#include "log_pvt.h"

static pid_t my_tid(void)
{
	return gettid();
}

/* Register the staging buffers (WRITE_FIXED) and a one-slot file table;
 * either may be refused (RLIMIT_MEMLOCK, old kernel): then plain writes. */
static void uring_register(struct spate_log *l)
{
	l->uring.bufs_fixed = l->uring.files_fixed = 0;
	l->uring.fixed_gen = 0;
	if (l->dio.stage) {
		struct iovec iov[STAGE_N];
		for (unsigned i = 0; i < STAGE_N; i++)
			iov[i] = (struct iovec){l->dio.stage + (size_t)i * STAGE_BYTES, STAGE_BYTES};
		l->uring.bufs_fixed = io_uring_register_buffers(&l->uring.ring, iov, STAGE_N) == 0;
	}
	l->uring.files_fixed = io_uring_register_files_sparse(&l->uring.ring, 1) == 0;
}

static int uring_setup(struct spate_log *l)
{
	static const unsigned tries[] = {
		/* Not DEFER_TASKRUN: a write may be in flight when
		 * spate_log_sync() returns, and another thread may have to
		 * wait for it (spate_log_uring_own()). */
		IORING_SETUP_SINGLE_ISSUER,
		0,
	};
	int rc = -ENOSYS;

	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		rc = io_uring_queue_init(URING_ENTRIES, &l->uring.ring, tries[i]);
		if (rc == 0) {
			l->uring.flags = tries[i];
			l->uring.tid = my_tid();
			uring_register(l);
			return 0;
		}
	}
	return rc;
}

/* Make sure the ring may be used by the calling thread. */
int spate_log_uring_own(struct spate_log *l)
{
	if (!(l->uring.flags & IORING_SETUP_SINGLE_ISSUER) || l->uring.tid == my_tid())
		return 0;
	/* Reap a write still in flight first (allowed from any thread
	 * without DEFER_TASKRUN): its buffer must not be rewritten, nor the
	 * next write start, before it completed. */
	spate_log_dio_wait_busy(l);
	io_uring_queue_exit(&l->uring.ring);
	int rc = io_uring_queue_init(URING_ENTRIES, &l->uring.ring, l->uring.flags);
	if (rc < 0) {
		l->uring.on = 0; /* fall back for good */
		return 0;
	}
	l->uring.tid = my_tid();
	uring_register(l);
	return 0;
}

/* Fill the frame header's CRC if not done yet. */
void spate_log_q_crc(struct log_q *q)
{
	if (!q->crc_done) {
		q->fh.crc = spate_log_frame_crc(q->fh.len, q->batch);
		q->crc_done = 1;
	}
}

/* Index entries of the active segment from file offset @p off on are
 * dropped (queued ones, and those in the .idx). */
static void idx_cut(struct spate_log *l, uint64_t off)
{
	size_t k = 0;

	while (k < l->idxq_n && l->idxq[k].off < off)
		k++;
	l->idxq_n = k;
	while (l->idx_n) {
		struct idx_ent e;
		if (spate_log_pread_full(l->idx_fd, &e, sizeof(e), (l->idx_n - 1) * IDX_ENT_SIZE) != 1 ||
		    e.off < off)
			break;
		l->idx_n--;
	}
	if (ftruncate(l->idx_fd, (off_t)(l->idx_n * IDX_ENT_SIZE)) < 0)
		l->idx_n = 0; /* an index is an accelerator: rebuilt at open */
	l->idx_last_off = k ? l->idxq[k - 1].off : 0;
	if (!k && l->idx_n) {
		struct idx_ent e;
		if (spate_log_pread_full(l->idx_fd, &e, sizeof(e), (l->idx_n - 1) * IDX_ENT_SIZE) == 1)
			l->idx_last_off = e.off;
	}
}

/*
 * An fdatasync of the active segment failed: the pages it covered may
 * never reach the disk, and a second fdatasync would report success for
 * them (the PostgreSQL "fsyncgate" lesson). If every frame after the last
 * durable point is still queued (the caller holds them until a sync
 * returns 0: always so with durability ALWAYS), cut the segment back to
 * that point and keep them queued: the next sync writes them again, then
 * syncs. Otherwise the log fails for good (l->failed): nothing more is
 * acknowledged. *@p h (frames written by this call) becomes 0 or stays.
 */
static void sync_rewind(struct spate_log *l, size_t *h)
{
	size_t k = 0;

	l->sync_err = 0;
	/* Frames made durable by a roll in this call are done. */
	while (k < *h && l->q[k].base_seq + l->q[k].count <= l->durable_seq)
		k++;
	struct seg_info *s = l->nsegs ? &l->segs[l->nsegs - 1] : NULL;
	if (!s || l->seg_fd < 0 || l->durable_gen != l->seg_gen || k == l->qn ||
	    l->q[k].base_seq != l->durable_seq) {
		l->failed = -EIO;
		return;
	}
	if (k) {
		memmove(l->q, l->q + k, (l->qn - k) * sizeof(*l->q));
		l->qn -= k;
	}
	*h = 0;
	if (l->seg_direct)
		spate_log_dio_wait_busy(l);
	if (ftruncate(l->seg_fd, (off_t)l->durable_off) < 0) {
		l->failed = -EIO;
		return;
	}
	l->prealloc_end = l->durable_off;
	s->size = l->durable_off;
	s->end_seq = l->written_seq = l->durable_seq;
	idx_cut(l, l->durable_off);
	if (l->seg_direct)
		spate_log_dio_rewind(l);
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
		rc = spate_log_dio_prepare(l);
		if (rc < 0)
			return rc;
		if (l->uring.on)
			spate_log_dio_reap(l, 0); /* book what completed meanwhile */
	}
	while (h < l->qn) {
		if (l->seg_fd < 0) {
			rc = spate_log_create_segment(l, l->q[h].base_seq);
			if (rc < 0)
				goto out;
		}
		if (l->seg_direct) {
			rc = spate_log_dio_prepare(l);
			if (rc < 0)
				goto out;
			rc = spate_log_dio_stage(l, &h);
			if (rc < 0)
				goto out;
			if (rc == 1) {
				int dummy;
				rc = spate_log_dio_flush(l, 1, 0, &dummy);
				if (rc == 0)
					rc = spate_log_roll_segment(l);
				if (rc < 0)
					goto out;
			}
			continue;
		}
		rc = spate_log_pc_run(l, &h, &part, want_sync, &synced);
		if (rc < 0)
			goto out;
		if (rc == 1) {
			rc = spate_log_roll_segment(l);
			if (rc < 0)
				goto out;
		}
	}
	if (l->seg_direct) {
		rc = spate_log_dio_flush(l, wait, want_sync, &synced);
		if (rc < 0)
			goto out;
	}
	if (want_sync && !synced && l->seg_fd >= 0 && l->durable_seq < l->written_seq) {
		/* O_DIRECT: from this thread, which waits for it anyway (an
		 * io_uring fsync wakes an io-wq worker: dio_issue()). */
		rc = l->uring.on && !l->seg_direct ? spate_log_io_datasync(l) : spate_log_datasync(l->seg_fd);
		if (rc < 0) {
			l->sync_err = rc;
			goto out;
		}
		synced = 1;
	}
	if (synced || (want_sync && l->seg_fd < 0)) {
		l->durable_seq = l->written_seq;
		if (l->seg_fd >= 0) {
			l->durable_off = l->segs[l->nsegs - 1].size;
			l->durable_gen = l->seg_gen;
		}
	}
out:
	if (rc < 0 && l->sync_err)
		sync_rewind(l, &h);
	spate_log_idx_flush(l);
	if (h) {
		memmove(l->q, l->q + h, (l->qn - h) * sizeof(*l->q));
		l->qn -= h;
	}
	return rc;
}

/* Choose and set up the write pipeline (O_DIRECT staging or the page
 * cache) and the io_uring ring; @p rep says which and why.
 * @return 0, -errno. */
static int setup_pipelines(struct spate_log *l, struct spate_log_recovery *rep)
{
	int rc;

	/* O_DIRECT before io_uring: the staging buffers must exist to be
	 * registered. */
	if ((l->p.flags & SPATE_LOG_F_DIRECT) || (LOG_DEFAULT_DIRECT && !(l->p.flags & SPATE_LOG_F_BUFFERED))) {
		char why[160] = "";
		rc = spate_log_dio_setup(l, why, sizeof(why));
		if (rc < 0)
			return rc;
		if (!rc)
			spate_log_msg_add(rep->message, sizeof(rep->message), "page cache: %s", why);
	} else {
		spate_log_msg_add(rep->message, sizeof(rep->message), "page cache (BUFFERED)");
	}

	if (!(l->p.flags & SPATE_LOG_F_NO_URING)) {
		rc = uring_setup(l);
		if (rc == 0) {
			l->uring.on = 1;
			spate_log_msg_add(rep->message, sizeof(rep->message), "io_uring%s%s",
				l->uring.flags & IORING_SETUP_SINGLE_ISSUER ? " SINGLE_ISSUER" : "",
				l->uring.flags & IORING_SETUP_DEFER_TASKRUN ? "|DEFER_TASKRUN" : "");
		} else {
			spate_log_msg_add(rep->message, sizeof(rep->message),
				"io_uring refused (%s): pwrite + fdatasync", strerror(-rc));
		}
	} else {
		spate_log_msg_add(rep->message, sizeof(rep->message), "pwrite + fdatasync (NO_URING)");
	}
	rep->io_uring = l->uring.on;
	if (l->direct && l->seg_fd >= 0) {
		if (l->seg_ver < 2) {
			/* Version 1 has no padding: continue it through the page
			 * cache; the next segment goes direct. */
			spate_log_msg_add(rep->message, sizeof(rep->message),
				"version-1 segment continued through the page cache");
		} else if (spate_log_dio_enable(l->seg_fd) < 0) {
			l->direct = 0;
		} else {
			l->seg_direct = 1;
			rc = spate_log_dio_load_tail(l);
			if (rc < 0)
				return rc;
		}
	}
	if (l->seg_fd >= 0) {
		/* Recovery cut the active segment at its last frame: allocate
		 * ahead again. */
		l->prealloc_end = spate_log_file_size(l->seg_fd);
		spate_log_prealloc(l, l->prealloc_end + 1);
	}
	if (l->direct) {
		rep->direct = 1;
		rep->dio_align = l->dio.align;
		rep->fixed_buffers = l->uring.on && l->uring.bufs_fixed;
		spate_log_msg_add(rep->message, sizeof(rep->message), "O_DIRECT (align %u)%s%s", l->dio.align,
			l->uring.on && l->uring.bufs_fixed ? ", registered buffers" : "",
			l->uring.on && l->uring.files_fixed ? ", registered file" : "");
	}
	return 0;
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
	l->dio.fill_i = l->dio.fail_i = -1;
	l->dio.fill_next = UINT64_MAX;
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
	/* Created 0750 (0770), whatever the umask; an existing directory
	 * keeps its mode. */
	if (mkdir(dir, spate_log_dir_mode(&l->p)) == 0) {
		if (chmod(dir, spate_log_dir_mode(&l->p)) < 0) {
			rc = -errno;
			goto fail;
		}
	} else if (errno != EEXIST) {
		rc = -errno;
		goto fail;
	}
	l->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->dirfd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = spate_log_recover(l, rep);
	if (rc < 0)
		goto fail;
	if (l->nsegs) {
		l->have_records = l->segs[l->nsegs - 1].end_seq > l->segs[0].base || l->nsegs > 1;
		l->next_seq = l->written_seq = l->durable_seq = l->segs[l->nsegs - 1].end_seq;
		l->durable_off = l->segs[l->nsegs - 1].size;
		l->durable_gen = l->seg_gen;
		if (l->have_records)
			rep->first_seq = l->segs[0].base;
	}
	rep->next_seq = l->next_seq;
	rep->segments = (uint32_t)l->nsegs;
	l->last_commit_ns = spate_mono_ns();

	rc = setup_pipelines(l, rep);
	if (rc < 0)
		goto fail;
	*out = l;
	return 0;
fail:
	if (l->uring.on)
		io_uring_queue_exit(&l->uring.ring);
	free(l->dio.stage);
	free(l->dio.tail);
	spate_log_close_active(l);
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
	if (spate_log_check_batch(batch, len, &q.count, &q.base_seq, &q.ts, &why) < 0)
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
		spate_log_q_crc(&q);
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
	if (l->p.durability == SPATE_DURABILITY_ALWAYS)
		want = 1;
	else if (l->p.durability == SPATE_DURABILITY_INTERVAL)
		want = now - l->last_commit_ns >= l->p.interval_ns;
	if (l->failed)
		return l->failed;
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
	spate_log_apply_retention(l);
	if (durable)
		*durable = l->durable_seq;
	return 0;
}

int spate_log_close(struct spate_log *l)
{
	if (!l)
		return 0;
	int rc = l->failed ? l->failed : write_queue(l, 1, 1);
	if (rc == 0 && l->seg_fd >= 0 && spate_log_file_size(l->seg_fd) > l->segs[l->nsegs - 1].size) {
		/* Drop the O_DIRECT padding and the preallocated tail: a
		 * closed segment ends at its last frame. */
		rc = spate_log_trim_active(l);
		if (rc == 0 && fdatasync(l->seg_fd) < 0)
			rc = -errno;
	}
	if (rc == 0 && l->seg_fd >= 0 && l->durable_seq < l->written_seq)
		rc = spate_log_datasync(l->seg_fd);
	if (rc == 0 && l->idx_fd >= 0 && fdatasync(l->idx_fd) < 0)
		rc = -errno;
	if (rc == 0 && l->qn == 0) {
		char buf[96];
		int n = snprintf(buf, sizeof(buf), "spate-log clean v1 next_seq=%" PRIu64 "\n", l->next_seq);
		int fd = spate_log_create_file(l->dirfd, CLEAN_NAME, O_WRONLY | O_TRUNC,
						       spate_log_file_mode(&l->p));
		if (fd < 0) {
			rc = fd;
		} else {
			rc = spate_log_pwrite_full(fd, buf, (size_t)n, 0);
			if (rc == 0 && fdatasync(fd) < 0)
				rc = -errno;
			close(fd);
			if (rc == 0)
				rc = spate_log_fsync_dir(l->dirfd);
		}
	}
	if (l->uring.on) {
		/* A write still in flight (after an error) must not outlive
		 * its buffers. */
		spate_log_dio_wait_busy(l);
		/* Synchronous: the segment is no longer referenced once close
		 * returns (the ring itself is torn down asynchronously). */
		if (l->uring.files_fixed)
			io_uring_unregister_files(&l->uring.ring);
		if (l->uring.bufs_fixed)
			io_uring_unregister_buffers(&l->uring.ring);
		io_uring_queue_exit(&l->uring.ring);
	}
	spate_log_close_active(l);
	close(l->dirfd);
	free(l->dio.stage);
	free(l->dio.tail);
	free(l->idxq);
	free(l->dio.stg);
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
