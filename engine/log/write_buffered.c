/* SPDX-License-Identifier: MIT */
/*
 * write_buffered.c - the page-cache write pipeline.
 *
 * Page cache (BUFFERED, or no O_DIRECT): the queue goes out as iovecs (frame
 * header from the queue entry, batch straight from ring memory); with
 * io_uring, a run of up to SPATE_LOG_RUN frames goes out as linked writev
 * SQEs (64 frames each) in one submit, with IORING_OP_FSYNC (DATASYNC)
 * linked behind the last write when the durability policy asks for it; a
 * short write breaks the link, the written prefix is kept and the rest is
 * retried. Without io_uring, pwritev + fdatasync do the same (and with
 * O_DIRECT, pwrite of the staging buffers); the open report says which.
 */
#include "log_pvt.h"

/*
 * Write @p niov iovecs at @p off of the active segment, then (@p want_sync)
 * fdatasync it. Sets *written to the prefix of bytes known written and
 * *synced if the fdatasync completed after all of them.
 * @return 0 (maybe short: see *written), -errno (first error).
 */
int spate_log_io_write(struct spate_log *l, const struct iovec *iov, unsigned niov, uint64_t off,
		    int want_sync, uint64_t *written, int *synced)
{
	*written = 0;
	*synced = 0;
	if (!l->uring.on) {
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
			int rc = spate_log_datasync(l->seg_fd);
			if (rc < 0)
				return l->sync_err = rc;
			*synced = 1;
		}
		return 0;
	}

	int rc = spate_log_uring_own(l);
	if (rc < 0)
		return rc;
	if (!l->uring.on)
		return spate_log_io_write(l, iov, niov, off, want_sync, written, synced);

	unsigned per = 2 * FRAMES_PER_SQE, nsqe = 0;
	uint64_t want[URING_ENTRIES];
	uint64_t o = off;
	struct io_uring_sqe *lastsqe = NULL;
	for (unsigned i = 0; i < niov; i += per) {
		unsigned n = niov - i > per ? per : niov - i;
		struct io_uring_sqe *sqe = io_uring_get_sqe(&l->uring.ring);
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
		struct io_uring_sqe *sqe = io_uring_get_sqe(&l->uring.ring);
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
	rc = io_uring_submit_and_wait(&l->uring.ring, total);
	while (rc == -EINTR)
		rc = io_uring_submit_and_wait(&l->uring.ring, total);
	if (rc < 0)
		return rc;

	int res[URING_ENTRIES + 1];
	for (unsigned got = 0; got < total;) {
		struct io_uring_cqe *cqe;
		rc = io_uring_wait_cqe(&l->uring.ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0)
			return rc;
		if (cqe->user_data == NOP_TAG) {
			io_uring_cqe_seen(&l->uring.ring, cqe);
			continue;
		}
		if (cqe->user_data <= URING_ENTRIES)
			res[cqe->user_data] = cqe->res;
		io_uring_cqe_seen(&l->uring.ring, cqe);
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
		if (res[nsqe] != -ECANCELED)
			res[nsqe] = LOG_SYNC(res[nsqe]);
		if (res[nsqe] < 0 && res[nsqe] != -ECANCELED)
			return l->sync_err = res[nsqe];
		*synced = res[nsqe] == 0;
	}
	return 0;
}

int spate_log_io_datasync(struct spate_log *l)
{
	uint64_t w;
	int synced;
	int rc = spate_log_io_write(l, NULL, 0, 0, 1, &w, &synced);

	if (rc < 0)
		return rc;
	return synced ? 0 : -EIO;
}

/*
 * Page cache: write one run of queued frames q[*h, ...) (up to
 * SPATE_LOG_RUN, as many as fit in the active segment) with
 * spate_log_io_write(), from *@p part bytes into frame *h (a short write
 * before). Advances *h past the frames written whole; *@p synced = 1 if
 * this was the last run and its linked fdatasync (@p want_sync) completed.
 * @return 0 (call again while frames are queued), 1 (the next frame does
 * not fit: roll), -errno (a partial frame is cut off the segment).
 */
int spate_log_pc_run(struct spate_log *l, size_t *h, uint64_t *part, int want_sync, int *synced)
{
	struct seg_info *s = &l->segs[l->nsegs - 1];
	uint64_t off = s->size, end = off;
	size_t k = *h;
	while (k < l->qn && k - *h < SPATE_LOG_RUN) {
		uint64_t fsz = FRAME_HDR_SIZE + l->q[k].fh.len;
		if (end > SEG_HDR_SIZE && end + fsz > l->p.segment_bytes)
			break;
		end += fsz;
		k++;
	}
	if (k == *h)
		return 1;
	int last_run = k == l->qn;
	uint64_t written = 0;
	int did_sync = 0;
	unsigned niov = 0;
	for (size_t i = *h; i < k; i++) {
		spate_log_q_crc(&l->q[i]);
		l->pc.iov[niov++] = (struct iovec){&l->q[i].fh, FRAME_HDR_SIZE};
		l->pc.iov[niov++] = (struct iovec){(void *)(uintptr_t)l->q[i].batch, l->q[i].fh.len};
	}
	/* After a short write, go on from where it stopped. */
	struct iovec *iov = l->pc.iov;
	if (*part >= FRAME_HDR_SIZE) {
		iov++;
		niov--;
		iov[0].iov_base = (uint8_t *)iov[0].iov_base + (*part - FRAME_HDR_SIZE);
		iov[0].iov_len -= *part - FRAME_HDR_SIZE;
	} else if (*part) {
		iov[0].iov_base = (uint8_t *)iov[0].iov_base + *part;
		iov[0].iov_len -= *part;
	}
	int rc = spate_log_io_write(l, iov, niov, off + *part, want_sync && last_run, &written, &did_sync);
	written += *part;
	/* Account for the whole frames in the written prefix. */
	uint64_t o = off;
	while (*h < k && o + FRAME_HDR_SIZE + l->q[*h].fh.len <= off + written) {
		spate_log_frame_written(l, &l->q[*h], o);
		o += FRAME_HDR_SIZE + l->q[*h].fh.len;
		(*h)++;
	}
	uint64_t was = *part;
	*part = off + written - o;
	if (rc < 0) {
		/* Cut any partial frame so the segment stays valid. */
		if (*part && ftruncate(l->seg_fd, (off_t)o) < 0)
			rc = -errno;
		*part = 0;
		return rc;
	}
	if (written < end - off) {
		if (written == was) {
			/* No progress and no error: give up for now. */
			if (*part && ftruncate(l->seg_fd, (off_t)o) < 0)
				return -errno;
			return -EIO;
		}
		return 0; /* short write: the caller calls again for the rest */
	}
	if (last_run && did_sync)
		*synced = 1;
	return 0;
}
