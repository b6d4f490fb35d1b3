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
int io_write(struct spate_log *l, const struct iovec *iov, unsigned niov, uint64_t off,
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

int io_datasync(struct spate_log *l)
{
	uint64_t w;
	int synced;
	int rc = io_write(l, NULL, 0, 0, 1, &w, &synced);

	if (rc < 0)
		return rc;
	return synced ? 0 : -EIO;
}
