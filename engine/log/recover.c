/* SPDX-License-Identifier: MIT */
/*
 * recover.c - crash recovery when a writer opens a log.
 *
 * Recovery: open lists the segments, checks every header, and reads every
 * frame of every segment (CRC-32C, layout, sequence numbers continuing
 * within and across segments), rebuilding any index that disagrees with
 * the frames. Damage is never taken for an end: a bad frame in the last
 * segment is a torn tail and is cut, unless a valid frame follows it; any
 * other damage (mid-segment, an earlier segment, a gap between segments)
 * refuses the log (-EBADMSG, the message says where), unless the repair
 * journal skips that range (an operator's `spate log repair`: recovery goes
 * on at its resume point and says so) or SPATE_LOG_F_REPAIR (cut there and
 * drop what follows). The CLEAN marker no longer saves the scan: it only
 * tells a clean close (rep->clean) when the scan ends where it says.
 *
 * Writes in flight. The O_DIRECT writer keeps up to STAGE_N - 1 writes in
 * flight (write_direct.c), and they may complete in any order; a writer
 * killed (SIGKILL) with writes in flight may leave a later write on disk
 * and an earlier one not, or only part of it: a gap, then valid frames.
 * The active segment is preallocated, so a gap reads as zeros. The rule:
 * in the last segment, a first bad frame at offset g is the end of the log
 * (everything from g on is cut) when
 *   (a) its bytes are missing: its header is all zeros, or an aligned
 *       512-byte sector inside it is all zeros (a write that did not
 *       land leaves the zeros of the preallocation, sector by sector), and
 *   (b) no valid frame starts at or after g + INFLIGHT_MAX.
 * Why nothing acknowledged is lost: the writer books a write (written_seq,
 * and so the ring release and every "durable" answer, which also needs an
 * fdatasync after it) only once it and every write before it in the file
 * completed (dio_advance). So every acknowledged frame lies before the
 * first never-completed byte, i.e. before g; frames after g belong to
 * writes issued while the one covering g was in flight, none of them was
 * acknowledged, and cutting them loses only what was never acknowledged.
 * Why (b) bounds it: all writes in flight at once cover less than
 * INFLIGHT_MAX bytes from the oldest one's start, which is <= g; a valid
 * frame beyond that cannot come from the in-flight window. Why the cut is
 * needed: a valid frame left after a gap would be read after the writer
 * rewrote the gap (a later crash could leave old frames after new ones);
 * the cut (ftruncate, then preallocated zeros again) leaves none.
 * Anything else (bad bytes that are not missing ones: bit rot, a frame
 * from elsewhere; valid frames further on; an earlier segment) stays
 * damage: refused, or skipped per the repair journal, as before. A gap
 * that is real damage in the last INFLIGHT_MAX bytes and reads as zeros
 * is cut like a torn write (as a zeroed torn tail always was).
 *
 * Limits:
 *  - After a power loss, unsynced pages may land out of order; beyond the
 *    in-flight rule above, a hole followed by a valid frame is refused
 *    like mid-segment corruption (needs REPAIR).
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

/* Recovery state. */
struct rcv {
	struct spate_log *l;
	struct spate_log_recovery *rep;
	uint64_t *bases;
	size_t n;
	struct spate_log_journal j;
	uint8_t *buf;
	size_t cap;
	int clean, repair;
	uint64_t clean_next;
	const struct spate_log_skip *skip; /* a journal skip into a later segment */
};

/* A journal entry for damage at (@p seg, @p off, @p seq) that moves forward. */
static const struct spate_log_skip *rcv_skip(struct rcv *r, uint64_t seg, uint64_t off, uint64_t seq)
{
	const struct spate_log_skip *s = spate_log_journal_find(&r->j, seg, off, seq);

	return s && spate_log_skip_forward(s, r->bases, r->n) ? s : NULL;
}

static void rcv_say_skip(struct rcv *r, const char *name, const struct spate_log_skip *s)
{
	spate_log_msg_add(r->rep->message, sizeof(r->rep->message),
			  "repair journal: %s offset %" PRIu64 ": skipped %" PRIu64 " record(s) from seq %" PRIu64
			  " (an operator decision), resuming at %020" PRIu64 ".seg offset %" PRIu64,
			  name, s->off, s->rseq - s->seq, s->seq, s->rseg, s->roff);
	r->rep->repaired += s->rseq - s->seq;
}

/*
 * Segment i's header, and where its frames start: *start and *seq (the
 * first frame's offset and base_seq). @return 0, 1 (the segment is inside
 * a journal skip: nothing to read in it), 2 (REPAIR dropped it and every
 * later one: stop), -EBADMSG, -EPROTO, -errno.
 */
static int rcv_header(struct rcv *r, size_t i, int fd, const char *name, uint32_t *ver, uint64_t *start,
		      uint64_t *seq)
{
	struct spate_log *l = r->l;
	const char *why = NULL;
	uint64_t expected = l->nsegs ? l->segs[l->nsegs - 1].end_seq : r->bases[i];

	*start = SEG_HDR_SIZE;
	*seq = r->bases[i];
	if (r->skip && r->bases[i] < r->skip->rseg)
		return 1;
	int rc = spate_log_read_seg_hdr(fd, r->bases[i], &why, ver);
	if (rc == -EPROTO)
		spate_log_msg_add(r->rep->message, sizeof(r->rep->message), "%s: %s", name, why);
	if (rc == -EBADMSG) {
		const struct spate_log_skip *s = rcv_skip(r, r->bases[i], 0, expected);
		if (s) {
			rcv_say_skip(r, name, s);
			r->skip = s;
			return 1;
		}
		if (!r->repair) {
			spate_log_msg_add(r->rep->message, sizeof(r->rep->message), "%s: offset 0: %s", name, why);
			return rc;
		}
		spate_log_msg_add(r->rep->message, sizeof(r->rep->message),
				  "repair: %s: %s; dropped it and %zu later segment(s)", name, why, r->n - i - 1);
		return 2;
	}
	if (rc < 0)
		return rc;
	if (r->skip && r->bases[i] == r->skip->rseg) {
		*start = r->skip->roff;
		*seq = r->skip->rseq;
		r->skip = NULL;
		return 0;
	}
	if (!l->nsegs || expected == r->bases[i])
		return 0;
	const struct seg_info *prev = &l->segs[l->nsegs - 1];
	const struct spate_log_skip *s = rcv_skip(r, prev->base, prev->size, expected);
	if (s) {
		rcv_say_skip(r, name, s);
		if (s->rseg == r->bases[i]) {
			*start = s->roff;
			*seq = s->rseq;
			return 0;
		}
		r->skip = s;
		return 1;
	}
	if (!r->repair) {
		spate_log_msg_add(r->rep->message, sizeof(r->rep->message),
				  "%s: sequence gap: previous segment ends at %" PRIu64 ", this one starts at %" PRIu64,
				  name, expected, r->bases[i]);
		return -EBADMSG;
	}
	spate_log_msg_add(r->rep->message, sizeof(r->rep->message),
			  "repair: sequence gap before %s; dropped it and %zu later segment(s)", name, r->n - i - 1);
	return 2;
}

/*
 * Scan every frame of segment i from @p start (base_seq @p seq) into @p sc,
 * going on past ranges the journal skips. A skip into a later segment ends
 * this one there (r->skip). @return 0, -errno.
 */
static int rcv_scan(struct rcv *r, size_t i, int fd, const char *name, uint64_t fsize, uint64_t start,
		    uint64_t seq, struct scan *sc)
{
	for (;;) {
		int rc = spate_log_scan_frames(fd, start, seq, fsize, r->l->p.index_every, sc, &r->buf, &r->cap);
		if (rc < 0 || !sc->why)
			return rc;
		const struct spate_log_skip *s = rcv_skip(r, r->bases[i], sc->off, sc->next_seq);
		if (!s)
			return 0;
		rcv_say_skip(r, name, s);
		if (s->rseg != r->bases[i]) {
			r->skip = s;
			sc->why = NULL;
			return 0;
		}
		start = s->roff;
		seq = s->rseq;
	}
}

/*
 * A scan of segment i stopped at damage (sc->why) no journal entry skips:
 * cut a torn tail of the last segment; anything else is refused, or with
 * REPAIR cut there (and every later segment dropped: *last = 1).
 * @return 0 (*fsize updated), -EBADMSG, -errno.
 */
static int rcv_damage(struct rcv *r, size_t i, int fd, const char *name, uint64_t *fsize, int *last,
		      const struct scan *sc)
{
	struct spate_log_recovery *rep = r->rep;
	int rc = spate_log_valid_frame_after(fd, sc->off, *fsize, &r->buf, &r->cap);
	int torn = 0;

	if (rc < 0)
		return rc;
	if (rc == 1 && *last) {
		rc = spate_log_torn_in_flight(fd, sc->off, *fsize, &r->buf, &r->cap);
		if (rc < 0)
			return rc;
		torn = rc;
		rc = !torn;
	}
	int mid = rc == 1 || !*last;
	if (mid && !r->repair) {
		spate_log_msg_add(rep->message, sizeof(rep->message),
				  "%s: corrupt frame at offset %" PRIu64 " (%s)%s; `spate log verify` lists the "
				  "damage, `spate log repair` skips it",
				  name, sc->off, sc->why,
				  *last ? " followed by valid frames" : " before the last segment");
		return -EBADMSG;
	}
	if (ftruncate(fd, (off_t)sc->off) < 0 || fdatasync(fd) < 0)
		return -errno;
	rep->truncated_bytes += *fsize - sc->off;
	rep->truncated_at = sc->off;
	spate_log_msg_add(rep->message, sizeof(rep->message), "%s%s: cut %" PRIu64 " bytes at offset %" PRIu64 " (%s%s)",
			  mid ? "repair: " : "", name, *fsize - sc->off, sc->off, sc->why,
			  torn ? "; a gap then frames of writes in flight at a crash, never acknowledged" : "");
	if (!*last) {
		spate_log_msg_add(rep->message, sizeof(rep->message), "dropped %zu later segment(s)", r->n - i - 1);
		drop_later(r->l->dirfd, r->bases, i + 1, r->n);
		r->n = i + 1;
		*last = 1;
	}
	*fsize = sc->off;
	return 0;
}

/* Write the index of segment @p base unless it already holds @p sc's entries. */
static int rcv_index(struct rcv *r, uint64_t base, const struct scan *sc)
{
	struct idx_ent *e = NULL;
	size_t n = 0;
	int rc = spate_log_load_index(r->l->dirfd, base, &e, &n);

	if (rc == 0 && n == sc->nents && (!n || !memcmp(e, sc->ents, n * sizeof(*e)))) {
		free(e);
		return 0;
	}
	free(e);
	return spate_log_write_index(r->l->dirfd, base, sc->ents, sc->nents, spate_log_file_mode(&r->l->p));
}

/* The last segment stays open for appending. @return 0, -errno. */
static int rcv_activate(struct rcv *r, uint64_t base, int fd, const struct scan *sc, uint32_t ver)
{
	struct spate_log *l = r->l;
	char name[64];

	spate_log_seg_name(name, sizeof(name), base, ".idx");
	int ifd = spate_log_create_file(l->dirfd, name, O_WRONLY, spate_log_file_mode(&l->p));
	if (ifd < 0)
		return ifd;
	if (ftruncate(ifd, (off_t)(sc->nents * IDX_ENT_SIZE)) < 0) {
		int rc = -errno;
		close(ifd);
		return rc;
	}
	l->seg_fd = fd;
	l->seg_gen++;
	l->idx_fd = ifd;
	l->idx_n = sc->nents;
	l->idx_last_off = sc->nents ? sc->ents[sc->nents - 1].off : 0;
	l->seg_ver = ver;
	return 0;
}

/*
 * Recover segment i into l->segs (the last one stays open).
 * @return 0, 1 (stop: it and every later segment were dropped), -errno.
 */
static int rcv_segment(struct rcv *r, size_t i)
{
	struct spate_log *l = r->l;
	struct scan sc = {0};
	char name[64];
	int last = i + 1 == r->n, rc;
	uint64_t start, seq;
	uint32_t ver = 0;

	spate_log_seg_name(name, sizeof(name), r->bases[i], ".seg");
	int fd = openat(l->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint64_t fsize = spate_log_file_size(fd);
	rc = rcv_header(r, i, fd, name, &ver, &start, &seq);
	if (rc == 1) {
		/* Inside a skipped range: kept, holds nothing readable, the
		 * first to go by age. */
		rc = spate_log_segs_push(l, (struct seg_info){r->bases[i], r->bases[i], fsize, 1});
		goto out;
	}
	if (rc == 2) {
		drop_later(l->dirfd, r->bases, i, r->n);
		r->n = i;
		rc = 1;
		goto out;
	}
	if (rc < 0)
		goto out;
	rc = rcv_scan(r, i, fd, name, fsize, start, seq, &sc);
	if (rc == 0 && sc.why)
		rc = rcv_damage(r, i, fd, name, &fsize, &last, &sc);
	if (rc < 0)
		goto out;
	if (!r->skip && sc.off < fsize) {
		/* Zero padding after the last frame (an O_DIRECT writer's
		 * last block): the end of the frames; cut, not reported. */
		if (ftruncate(fd, (off_t)sc.off) < 0) {
			rc = -errno;
			goto out;
		}
		fsize = sc.off;
	}
	if (last && r->clean && sc.next_seq != r->clean_next)
		r->clean = 0; /* the marker did not hold */
	rc = rcv_index(r, r->bases[i], &sc);
	/* What a crashed writer left in the page cache is durable from here
	 * on: durable_seq starts at the end. */
	if (rc == 0 && last && !r->clean && fdatasync(fd) < 0)
		rc = -errno;
	if (rc == 0)
		rc = spate_log_segs_push(l, (struct seg_info){r->bases[i], sc.next_seq, fsize, sc.last_ts});
	if (rc == 0 && last) {
		rc = rcv_activate(r, r->bases[i], fd, &sc, ver);
		if (rc == 0)
			fd = -1;
	}
out:
	if (fd >= 0)
		close(fd);
	free(sc.ents);
	return rc;
}

/*
 * Recover the segments of l->dir into l->segs; the last becomes active.
 * @return 0, -EBADMSG, -EPROTO, -errno.
 */
int spate_log_recover(struct spate_log *l, struct spate_log_recovery *rep)
{
	struct rcv r = {.l = l, .rep = rep, .repair = !!(l->p.flags & SPATE_LOG_F_REPAIR)};
	int rc;

	r.clean = read_clean(l->dirfd, &r.clean_next);
	if (unlinkat(l->dirfd, CLEAN_NAME, 0) == 0) {
		rc = spate_log_fsync_dir(l->dirfd);
		if (rc < 0)
			return rc;
	}
	rc = spate_log_list_segs(l->dirfd, &r.bases, &r.n, 1);
	if (rc < 0)
		return rc;
	rep->segments = (uint32_t)r.n;
	rc = spate_log_journal_load(l->dirfd, &r.j);
	for (size_t i = 0; rc == 0 && i < r.n; i++) {
		rc = rcv_segment(&r, i);
		if (rc == 1) {
			rc = 0;
			break;
		}
	}
	rep->clean = rc == 0 && r.clean;
	spate_log_journal_free(&r.j);
	free(r.bases);
	free(r.buf);
	return rc;
}
