/* SPDX-License-Identifier: MIT */
/*
 * recover.c - crash recovery when a writer opens a log.
 *
 * Recovery: open lists the segments, checks every header, checks each
 * earlier segment from its last index entry to its end (and that sequence
 * numbers continue across segments), and scans the last segment frame by
 * frame (skipped after a clean close: the CLEAN marker, which open removes).
 * A bad frame in the last segment is a torn tail and is cut, unless a valid
 * frame follows it (then it is mid-segment corruption: -EBADMSG, or with
 * SPATE_LOG_F_REPAIR a cut that also drops what follows).
 *
 * Limits:
 *  - After a power loss, unsynced pages may land out of order, so a hole
 *    followed by a valid frame in the unsynced tail is refused like
 *    mid-segment corruption (needs REPAIR); a process crash cannot do that.
 */
#include "log_pvt.h"

/* Delete segments [from, n) of @p bases. */
static void drop_later(int dirfd, const uint64_t *bases, size_t from, size_t n)
{
	for (size_t j = from; j < n; j++)
		spate_log_unlink_seg(dirfd, bases[j]);
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
int spate_log_recover(struct spate_log *l, struct spate_log_recovery *rep)
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
		rc = spate_log_fsync_dir(l->dirfd);
		if (rc < 0)
			return rc;
	}
	rc = spate_log_list_segs(l->dirfd, &bases, &n, 1);
	if (rc < 0)
		return rc;
	rep->segments = (uint32_t)n;

	for (size_t i = 0; i < n; i++) {
		int last = i + 1 == n;
		struct scan sc = {0};
		struct idx_ent *ents = NULL;
		size_t nents = 0;
		const char *why = NULL;

		spate_log_seg_name(name, sizeof(name), bases[i], ".seg");
		fd = openat(l->dirfd, name, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			goto out;
		}
		uint64_t fsize = spate_log_file_size(fd);
		uint32_t ver = 0;
		rc = spate_log_read_seg_hdr(fd, bases[i], &why, &ver);
		if (rc == -EPROTO) {
			spate_log_msg_add(rep->message, sizeof(rep->message), "%s: %s", name, why);
			goto out;
		}
		if (rc == -EBADMSG) {
			if (!repair) {
				spate_log_msg_add(rep->message, sizeof(rep->message), "%s: offset 0: %s", name, why);
				goto out;
			}
			spate_log_msg_add(rep->message, sizeof(rep->message),
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
				spate_log_msg_add(rep->message, sizeof(rep->message),
					"%s: sequence gap: previous segment ends at %" PRIu64
					", this one starts at %" PRIu64, name, l->segs[l->nsegs - 1].end_seq,
					bases[i]);
				rc = -EBADMSG;
				goto out;
			}
			spate_log_msg_add(rep->message, sizeof(rep->message),
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
			rc = spate_log_load_index(l->dirfd, bases[i], &ents, &nents);
			if (rc < 0)
				goto out;
			if (!spate_log_index_plausible(ents, nents, bases[i], fsize)) {
				full = 1;
				rebuild = 1;
			} else {
				/* Indexing the tail as the writer would: a second
				 * entry means the index stopped short. */
				rc = spate_log_scan_frames(fd, ents[nents - 1].off, ents[nents - 1].seq, fsize,
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
					rc = spate_log_write_index(l->dirfd, bases[i], ents, nents, spate_log_file_mode(&l->p));
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
			rc = spate_log_scan_frames(fd, SEG_HDR_SIZE, bases[i], fsize, l->p.index_every, &sc, &buf,
					 &cap);
			if (rc < 0)
				goto out_ents;
			if (sc.why) {
				rc = spate_log_valid_frame_after(fd, sc.off, fsize, &buf, &cap);
				if (rc < 0)
					goto out_ents;
				int mid = rc == 1 || !last;
				if (mid && !repair) {
					spate_log_msg_add(rep->message, sizeof(rep->message),
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
				spate_log_msg_add(rep->message, sizeof(rep->message),
					"%s%s: cut %" PRIu64 " bytes at offset %" PRIu64 " (%s)",
					mid ? "repair: " : "", name, fsize - sc.off, sc.off, sc.why);
				if (!last) {
					spate_log_msg_add(rep->message, sizeof(rep->message),
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
			rc = spate_log_write_index(l->dirfd, bases[i], sc.ents, sc.nents, spate_log_file_mode(&l->p));
			if (rc < 0)
				goto out_ents;
		}
		if (last && !clean && fdatasync(fd) < 0) {
			/* What a crashed writer left in the page cache is durable
			 * from here on: durable_seq starts at the end. */
			rc = -errno;
			goto out_ents;
		}
		rc = spate_log_segs_push(l, (struct seg_info){bases[i], sc.next_seq, fsize, sc.last_ts});
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
			spate_log_seg_name(name, sizeof(name), bases[i], ".idx");
			int ifd = spate_log_create_file(l->dirfd, name, O_WRONLY, spate_log_file_mode(&l->p));
			if (ifd < 0) {
				rc = ifd;
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
