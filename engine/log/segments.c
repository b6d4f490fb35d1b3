/* SPDX-License-Identifier: MIT */
/*
 * segments.c - segment files and their indexes: listing, creation
 * (tmp + rename), rolling, the sparse index, retention.
 *
 * Each segment has a sparse index (<base>.idx, {seq, ts, offset} per
 * index_every bytes) that is written to the page cache only: it is an
 * accelerator, verified and rebuilt at open, never trusted for durability.
 *
 * Trade-offs and limits:
 *  - Rolling a segment always fdatasyncs the old one (even with durability
 *    NONE), so only the last segment can ever have a torn tail.
 *  - New segments are created as <base>.seg.tmp, header written, renamed:
 *    a crash never leaves a segment without a header.
 */
#include "log_pvt.h"

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorted base_seqs of the segments in @p dirfd; with @p clean_tmp, unlinks
 * leftover *.seg.tmp files (torn segment creation). */
int spate_log_list_segs(int dirfd, uint64_t **out, size_t *n, int clean_tmp)
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
		if (clean_tmp && spate_log_parse_name(de->d_name, ".seg.tmp", &base)) {
			unlinkat(dirfd, de->d_name, 0);
			continue;
		}
		if (!spate_log_parse_name(de->d_name, ".seg", &base))
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

/* Load an index file; @return entries (0 if missing/unusable), -errno. */
int spate_log_load_index(int dirfd, uint64_t base, struct idx_ent **out, size_t *n)
{
	char name[64];

	*out = NULL;
	*n = 0;
	spate_log_seg_name(name, sizeof(name), base, ".idx");
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	uint64_t sz = spate_log_file_size(fd);
	size_t cnt = (size_t)(sz / IDX_ENT_SIZE);
	int rc = 0;
	if (!cnt)
		goto out;
	struct idx_ent *e = malloc(cnt * sizeof(*e));
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	rc = spate_log_pread_full(fd, e, cnt * sizeof(*e), 0);
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
int spate_log_index_plausible(const struct idx_ent *e, size_t n, uint64_t base, uint64_t fsize)
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

/* Modes of what the log creates: 0640 files in a 0750 directory (group
 * may read), 0660/0770 with SPATE_LOG_F_GROUP_WRITE; docs/security.md. */
mode_t spate_log_file_mode(const struct spate_log_params *p)
{
	return p->flags & SPATE_LOG_F_GROUP_WRITE ? 0660 : 0640;
}

mode_t spate_log_dir_mode(const struct spate_log_params *p)
{
	return p->flags & SPATE_LOG_F_GROUP_WRITE ? 0770 : 0750;
}

/* openat(@p flags | O_CREAT) with exactly @p mode, whatever the umask.
 * @return the fd or -errno. */
int spate_log_create_file(int dirfd, const char *name, int flags, mode_t mode)
{
	int fd = openat(dirfd, name, flags | O_CREAT | O_CLOEXEC, mode);

	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int spate_log_write_index(int dirfd, uint64_t base, const struct idx_ent *e, size_t n, mode_t mode)
{
	char name[64];

	spate_log_seg_name(name, sizeof(name), base, ".idx");
	int fd = spate_log_create_file(dirfd, name, O_WRONLY | O_TRUNC, mode);
	if (fd < 0)
		return fd;
	int rc = n ? spate_log_pwrite_full(fd, e, n * sizeof(*e), 0) : 0;
	close(fd);
	return rc;
}

int spate_log_fsync_dir(int dirfd)
{
	return fsync(dirfd) < 0 ? -errno : 0;
}

void spate_log_unlink_seg(int dirfd, uint64_t base)
{
	char name[64];

	spate_log_seg_name(name, sizeof(name), base, ".seg");
	unlinkat(dirfd, name, 0);
	spate_log_seg_name(name, sizeof(name), base, ".idx");
	unlinkat(dirfd, name, 0);
}

int spate_log_segs_push(struct spate_log *l, struct seg_info si)
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

void spate_log_close_active(struct spate_log *l)
{
	spate_log_idx_flush(l);
	l->idxq_n = 0;
	l->seg_gen++;
	l->seg_direct = 0;
	l->dio.tail_len = 0;
	/* The pipeline is idle here (flushed before a roll or at close). */
	for (unsigned i = 0; i < STAGE_N; i++)
		l->dio.slot[i].state = SLOT_FREE;
	l->dio.fill_i = l->dio.fail_i = -1;
	l->dio.ord_h = l->dio.ord_n = l->dio.nbusy = 0;
	l->dio.issued_end = 0;
	l->dio.fsync_done = 0;
	l->prealloc_end = 0;
	l->dio.stg_h = l->dio.stg_n = 0;
	l->dio.stage_end = 0;
	l->dio.fill_next = UINT64_MAX;
	if (l->seg_fd >= 0)
		close(l->seg_fd);
	if (l->idx_fd >= 0)
		close(l->idx_fd);
	l->seg_fd = l->idx_fd = -1;
}

/* Create segment @p base (tmp file + rename) and make it active. */
int spate_log_create_segment(struct spate_log *l, uint64_t base)
{
	char tmp[64], name[64];
	uint8_t *blk = NULL;
	int fd = -1, ifd = -1, rc;

	spate_log_seg_name(tmp, sizeof(tmp), base, ".seg.tmp");
	spate_log_seg_name(name, sizeof(name), base, ".seg");
	fd = spate_log_create_file(l->dirfd, tmp, O_RDWR | O_TRUNC, spate_log_file_mode(&l->p));
	if (fd < 0)
		return fd;
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
	h.crc = spate_log_crc32c(0, &h, offsetof(struct seg_hdr, crc));
	memcpy(blk, &h, sizeof(h));
	rc = spate_log_pwrite_full(fd, blk, SEG_HDR_SIZE, 0);
	if (rc < 0)
		goto fail;
	/* Allocated ahead (before the header's sync, which covers the new
	 * size too): the writes that follow do not extend the file. */
	uint64_t pre = (l->p.segment_bytes + PAD_MAX - 1) & ~(uint64_t)(PAD_MAX - 1);
	if (pre > PREALLOC_BYTES)
		pre = PREALLOC_BYTES;
	uint64_t pre_end = fallocate(fd, 0, 0, (off_t)pre) == 0 ? pre : SEG_HDR_SIZE;
	if (l->p.durability > SPATE_DURABILITY_NONE && fdatasync(fd) < 0) {
		rc = -errno;
		goto fail;
	}
	spate_log_seg_name(name, sizeof(name), base, ".idx");
	ifd = spate_log_create_file(l->dirfd, name, O_WRONLY | O_TRUNC, spate_log_file_mode(&l->p));
	if (ifd < 0) {
		rc = ifd;
		goto fail;
	}
	spate_log_seg_name(name, sizeof(name), base, ".seg");
	if (renameat(l->dirfd, tmp, l->dirfd, name) < 0) {
		rc = -errno;
		goto fail;
	}
	if (l->p.durability > SPATE_DURABILITY_NONE) {
		rc = spate_log_fsync_dir(l->dirfd);
		if (rc < 0)
			goto fail_renamed;
	}
	rc = spate_log_segs_push(l, (struct seg_info){base, base, SEG_HDR_SIZE, 0});
	if (rc < 0)
		goto fail_renamed;
	free(blk);
	/* The header went through the page cache; frames go direct. A
	 * refusal here (the probe at open said yes) means buffered for good. */
	if (l->direct && spate_log_dio_enable(fd) < 0)
		l->direct = 0;
	l->seg_direct = l->direct;
	l->dio.tail_len = 0; /* SEG_HDR_SIZE is a multiple of any dio_align */
	l->dio.stage_end = SEG_HDR_SIZE;
	l->dio.fill_next = UINT64_MAX;
	l->seg_gen++;
	l->seg_ver = SPATE_LOG_FORMAT_VERSION;
	l->prealloc_end = pre_end;
	l->seg_fd = fd;
	l->idx_fd = ifd;
	l->idx_n = 0;
	l->idx_last_off = 0;
	if (l->durable_seq == base) {
		l->durable_off = SEG_HDR_SIZE;
		l->durable_gen = l->seg_gen;
	}
	return 0;

fail_renamed:
	unlinkat(l->dirfd, name, 0);
	spate_log_seg_name(name, sizeof(name), base, ".idx");
	unlinkat(l->dirfd, name, 0);
	goto out;
fail:
	unlinkat(l->dirfd, tmp, 0);
	if (ifd >= 0) {
		spate_log_seg_name(name, sizeof(name), base, ".idx");
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
void spate_log_idx_flush(struct spate_log *l)
{
	if (!l->idxq_n || l->idx_fd < 0)
		return;
	if (spate_log_pwrite_full(l->idx_fd, l->idxq, l->idxq_n * IDX_ENT_SIZE, l->idx_n * IDX_ENT_SIZE) == 0) {
		l->idx_n += l->idxq_n;
		l->idxq_n = 0;
	}
}

/* Book-keeping after frame @p q was written at @p off of the active segment. */
void spate_log_frame_written(struct spate_log *l, const struct log_q *q, uint64_t off)
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

/*
 * Make sure the active segment is allocated up to @p need (with a margin of
 * the in-flight window): writes inside the allocated range do not extend
 * the file, which ext4 would run one at a time (an extending direct write
 * waits for every write before it). Allocates up to the segment size, at
 * most PREALLOC_BYTES at a time, so this runs once per segment normally.
 * The file grows (not FALLOC_FL_KEEP_SIZE: a write past the size extends it
 * even into allocated blocks); what lies after the last frame reads as
 * zeros, which readers and recovery take as the end (docs/format.md). A
 * refusal (no space, no fallocate) only costs speed: writes then extend.
 */
void spate_log_prealloc(struct spate_log *l, uint64_t need)
{
	if (l->seg_fd < 0 || need <= l->prealloc_end)
		return;
	uint64_t seg = (l->p.segment_bytes + PAD_MAX - 1) & ~(uint64_t)(PAD_MAX - 1);
	uint64_t to = l->prealloc_end + PREALLOC_BYTES;
	if (to > seg)
		to = seg;
	if (to < need)
		to = (need + STAGE_BYTES - 1) & ~(uint64_t)(STAGE_BYTES - 1); /* a frame larger than the segment */
	uint64_t from = l->prealloc_end;
	if (fallocate(l->seg_fd, 0, (off_t)from, (off_t)(to - from)) == 0)
		l->prealloc_end = to;
	else
		l->prealloc_end = UINT64_MAX; /* refused: do not ask again */
}

/* Cut the active segment's file back to its last frame (the O_DIRECT
 * padding and the preallocated tail go). Nothing may be in flight.
 * @return 0, -errno. */
int spate_log_trim_active(struct spate_log *l)
{
	const struct seg_info *s = &l->segs[l->nsegs - 1];

	if (spate_log_file_size(l->seg_fd) > s->size && ftruncate(l->seg_fd, (off_t)s->size) < 0)
		return -errno;
	l->prealloc_end = s->size;
	return 0;
}

/* Roll: the old segment is always made durable first, so only the last
 * segment can have a torn tail; it ends at its last frame (no padding, no
 * preallocated tail). Nothing may be in flight. */
int spate_log_roll_segment(struct spate_log *l)
{
	struct seg_info *s = &l->segs[l->nsegs - 1];

	int rc = spate_log_trim_active(l);
	if (rc < 0)
		return rc;
	rc = spate_log_datasync(l->seg_fd);
	if (rc < 0)
		return l->sync_err = rc;
	l->durable_seq = s->end_seq;
	spate_log_close_active(l);
	return 0;
}

void spate_log_set_retention(struct spate_log *l, uint64_t retention_ns)
{
	/* Relaxed: a setting the writer picks up at its next round; nothing
	 * else is published through it. */
	__atomic_store_n(&l->p.retention_ns, retention_ns, __ATOMIC_RELAXED);
}

void spate_log_apply_retention(struct spate_log *l)
{
	/* Relaxed: spate_log_set_retention() may change it from another
	 * thread; any recent value is right. */
	uint64_t keep_ns = __atomic_load_n(&l->p.retention_ns, __ATOMIC_RELAXED);

	if (!l->p.retention_bytes && !keep_ns)
		return;
	uint64_t total = 0, now = spate_now_ns();
	for (size_t i = 0; i < l->nsegs; i++)
		total += l->segs[i].size;
	size_t del = 0;
	/* Never the last (active) segment. */
	while (del + 1 < l->nsegs) {
		const struct seg_info *s = &l->segs[del];
		int too_big = l->p.retention_bytes && total > l->p.retention_bytes;
		int too_old = keep_ns && s->last_ts && now > s->last_ts &&
			      now - s->last_ts > keep_ns;
		if (!too_big && !too_old)
			break;
		spate_log_unlink_seg(l->dirfd, s->base);
		total -= s->size;
		del++;
	}
	if (del) {
		memmove(l->segs, l->segs + del, (l->nsegs - del) * sizeof(*l->segs));
		l->nsegs -= del;
	}
}
