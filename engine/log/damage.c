/* SPDX-License-Identifier: MIT */
/*
 * damage.c - damaged ranges of a log: finding where the log continues
 * after damage, the repair journal (`REPAIR`: ranges an operator chose to
 * skip) and spate_log_verify(), which reads every frame.
 *
 * One rule everywhere (reader, recovery, verify): the log is a sequence of
 * valid frames whose sequence numbers continue, within and across
 * segments. Whatever breaks that is damage, found at a (segment, offset)
 * with an expected sequence number; it is never taken for "not written
 * yet" in a completed segment, nor for retention (which deletes whole
 * segments, oldest first). After damage, the log resumes at the first
 * valid frame, at or after it, whose base_seq is at least the expected one
 * (a duplicate is passed over; a jump forward loses the records between).
 *
 * The journal is a text file of one line per skipped range (docs/format.md):
 * readers and recovery that meet damage at a (segment, offset, seq) the
 * journal lists go on at its resume point and say so; anything else stops
 * them. It is appended with O_APPEND and fdatasync'ed, never rewritten.
 *
 * Limits: finding the resume point scans 8-byte positions for the frame
 * magic (64 KiB reads), so damage early in a large segment costs a read of
 * the rest of it; only damage pays that.
 */
#include "log_pvt.h"

#define JOURNAL_FMT                                                                                        \
	"skip segment=%" SCNu64 " offset=%" SCNu64 " seq=%" SCNu64 " resume_segment=%" SCNu64                 \
	" resume_offset=%" SCNu64 " resume_seq=%" SCNu64

void spate_log_journal_free(struct spate_log_journal *j)
{
	free(j->v);
	j->v = NULL;
	j->n = 0;
}

/* Lines that do not parse are ignored (a torn last line after a crash);
 * docs/format.md. */
int spate_log_journal_load(int dirfd, struct spate_log_journal *j)
{
	j->v = NULL;
	j->n = 0;
	int fd = openat(dirfd, REPAIR_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	FILE *f = fdopen(fd, "r");
	if (!f) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	char line[512];
	size_t cap = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), f)) {
		struct spate_log_skip s;
		if (sscanf(line, JOURNAL_FMT, &s.seg, &s.off, &s.seq, &s.rseg, &s.roff, &s.rseq) != 6)
			continue;
		if (j->n == cap) {
			size_t nc = cap ? cap * 2 : 8;
			struct spate_log_skip *nv = realloc(j->v, nc * sizeof(*nv));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			j->v = nv;
			cap = nc;
		}
		j->v[j->n++] = s;
	}
	fclose(f);
	if (rc < 0)
		spate_log_journal_free(j);
	return rc;
}

const struct spate_log_skip *spate_log_journal_find(const struct spate_log_journal *j, uint64_t seg,
						     uint64_t off, uint64_t seq)
{
	for (size_t i = 0; i < j->n; i++)
		if (j->v[i].seg == seg && j->v[i].off == off && j->v[i].seq == seq)
			return &j->v[i];
	return NULL;
}

int spate_log_skip_forward(const struct spate_log_skip *s, const uint64_t *bases, size_t n)
{
	size_t i = n, k = n;

	for (size_t x = 0; x < n; x++) {
		if (bases[x] == s->seg)
			i = x;
		if (bases[x] == s->rseg)
			k = x;
	}
	if (i == n || k == n || s->rseq < s->seq)
		return 0;
	return k > i || (k == i && (s->roff > s->off || (s->roff == s->off && s->rseq > s->seq)));
}

/* The first valid frame at or after @p off in @p fd with base_seq >= @p seq.
 * @return 1 (*at, *base), 0, -errno. */
static int resume_in(int fd, uint64_t off, uint64_t seq, uint64_t *at, uint64_t *base, uint8_t **buf,
		     size_t *cap)
{
	uint64_t fsize = spate_log_file_size(fd);

	for (uint64_t o = off;;) {
		uint64_t m;
		int rc = spate_log_next_magic(fd, o, fsize, &m);
		if (rc <= 0)
			return rc;
		struct frame_info fi;
		const char *why;
		rc = spate_log_read_frame(fd, m, fsize, buf, cap, &fi, &why);
		if (rc < 0 && rc != -EBADMSG)
			return rc;
		if (rc == 1 && fi.base_seq >= seq) {
			*at = m;
			*base = fi.base_seq;
			return 1;
		}
		o = m + 8;
	}
}

int spate_log_find_resume(int dirfd, const uint64_t *bases, size_t n, size_t i, int fd, uint64_t off,
			  struct spate_log_damage *d, uint8_t **buf, size_t *cap)
{
	char name[64];

	d->resume_segment = d->resume_offset = d->resume_seq = UINT64_MAX;
	for (size_t k = i; k < n; k++) {
		int sfd = fd, rc;
		uint64_t from = off;
		if (k != i || fd < 0) {
			const char *why;
			spate_log_seg_name(name, sizeof(name), bases[k], ".seg");
			sfd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
			if (sfd < 0)
				continue;
			if (spate_log_read_seg_hdr(sfd, bases[k], &why, NULL) < 0) {
				close(sfd);
				continue;
			}
			from = SEG_HDR_SIZE;
		}
		uint64_t at, base;
		rc = resume_in(sfd, from, d->seq, &at, &base, buf, cap);
		if (sfd != fd)
			close(sfd);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			d->resume_segment = bases[k];
			d->resume_offset = at;
			d->resume_seq = base;
			return 1;
		}
	}
	return 0;
}

int spate_log_repair(const char *dir, const struct spate_log_damage *d, const char *note)
{
	struct spate_log_journal j;
	char line[512];

	if (!dir || !d || d->resume_segment == UINT64_MAX || d->resume_seq < d->seq)
		return -EINVAL;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int rc = spate_log_journal_load(dfd, &j);
	if (rc < 0)
		goto out;
	rc = spate_log_journal_find(&j, d->segment, d->offset, d->seq) ? -EEXIST : 0;
	spate_log_journal_free(&j);
	if (rc < 0)
		goto out;
	int n = snprintf(line, sizeof(line),
			 "skip segment=%" PRIu64 " offset=%" PRIu64 " seq=%" PRIu64 " resume_segment=%" PRIu64
			 " resume_offset=%" PRIu64 " resume_seq=%" PRIu64 " lost=%" PRIu64 " at=%" PRIu64
			 " why=%s note=%s\n",
			 d->segment, d->offset, d->seq, d->resume_segment, d->resume_offset, d->resume_seq,
			 d->resume_seq - d->seq, spate_now_ns(), d->why, note ? note : "");
	if (n <= 0 || (size_t)n >= sizeof(line)) {
		rc = -EINVAL;
		goto out;
	}
	for (char *p = line; p < line + n - 1; p++)
		if (*p == '\n')
			*p = ' ';
	struct stat st;
	mode_t mode = fstat(dfd, &st) == 0 && (st.st_mode & 0020) ? 0660 : 0640;
	int fd = spate_log_create_file(dfd, REPAIR_NAME, O_WRONLY | O_APPEND, mode);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	rc = spate_log_pwrite_full(fd, line, (size_t)n, spate_log_file_size(fd));
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0)
		rc = spate_log_fsync_dir(dfd);
out:
	close(dfd);
	return rc;
}

/* Walk state of spate_log_verify(). */
struct walk {
	int dirfd;
	uint64_t *bases;
	size_t n;
	struct spate_log_journal j;
	struct spate_log_verify *v;
	void (*cb)(const struct spate_log_damage *, void *);
	void *arg;
	uint8_t *buf;
	size_t cap;
	size_t i;         /* segment */
	uint64_t off;     /* position in it */
	uint64_t expected; /* sequence number the next frame must carry */
	int done;
};

/* Report damage at (segment i or @p seg, @p off) and move to its resume
 * point (or stop). @return 0, -errno. */
static int walk_damage(struct walk *w, uint64_t seg, int fd, size_t resume_from, uint64_t roff,
		       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int walk_damage(struct walk *w, uint64_t seg, int fd, size_t resume_from, uint64_t roff,
		       const char *fmt, ...)
{
	struct spate_log_damage d = {.segment = seg, .offset = w->off, .seq = w->expected};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d.why, sizeof(d.why), fmt, ap);
	va_end(ap);
	const struct spate_log_skip *s = spate_log_journal_find(&w->j, seg, w->off, w->expected);
	if (s && !spate_log_skip_forward(s, w->bases, w->n))
		s = NULL; /* a resume point before its damage: not honoured */
	if (s) {
		d.resume_segment = s->rseg;
		d.resume_offset = s->roff;
		d.resume_seq = s->rseq;
		d.repaired = 1;
	} else {
		int rc = spate_log_find_resume(w->dirfd, w->bases, w->n, resume_from,
					       resume_from == w->i ? fd : -1, roff, &d, &w->buf, &w->cap);
		if (rc < 0)
			return rc;
	}
	if (d.repaired)
		w->v->repaired++;
	else
		w->v->damaged++;
	if (d.resume_seq != UINT64_MAX)
		w->v->lost += d.resume_seq - d.seq;
	if (w->cb)
		w->cb(&d, w->arg);
	if (d.resume_segment == UINT64_MAX) {
		w->done = 1;
		return 0;
	}
	size_t k = 0;
	while (k < w->n && w->bases[k] != d.resume_segment)
		k++;
	if (k == w->n) {
		w->done = 1; /* a journal entry naming a segment that is gone */
		return 0;
	}
	w->i = k;
	w->off = d.resume_offset;
	w->expected = d.resume_seq;
	return 0;
}

/* Walk segment w->i from w->off; on return w->i/off point at what to walk
 * next (w->done at the end). @return 0, -errno. */
static int walk_segment(struct walk *w)
{
	char name[64];
	const char *why = NULL;
	uint64_t base = w->bases[w->i];
	size_t i = w->i;

	spate_log_seg_name(name, sizeof(name), base, ".seg");
	int fd = openat(w->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			return -errno;
		w->i++; /* deleted meanwhile (retention): the next one */
		w->off = SEG_HDR_SIZE;
		return 0;
	}
	int rc = spate_log_read_seg_hdr(fd, base, &why, NULL);
	if (rc == -EPROTO) {
		close(fd);
		return rc;
	}
	if (rc < 0) {
		w->off = 0;
		rc = walk_damage(w, base, -1, i + 1, SEG_HDR_SIZE, "%s", why);
		close(fd);
		return rc;
	}
	uint64_t fsize = spate_log_file_size(fd);
	for (;;) {
		struct frame_info fi;
		rc = spate_log_read_frame(fd, w->off, fsize, &w->buf, &w->cap, &fi, &why);
		if (rc == 0 || (rc == -EBADMSG && spate_log_zero_tail(fd, w->off, fsize) == 1))
			break; /* the end of this segment */
		if (rc == -EBADMSG) {
			rc = walk_damage(w, base, fd, i, w->off + 8, "%s", why);
			goto out;
		}
		if (rc < 0)
			goto out;
		if (fi.base_seq != w->expected) {
			uint64_t from = fi.base_seq > w->expected ? w->off : w->off + FRAME_HDR_SIZE + fi.len;
			rc = walk_damage(w, base, fd, i, from,
					 "frame holds %" PRIu64 "..%" PRIu64 ", expected %" PRIu64 " (%s)",
					 fi.base_seq, fi.base_seq + fi.count - 1, w->expected,
					 fi.base_seq > w->expected ? "frames missing or out of order"
								   : "frames repeated or out of order");
			goto out;
		}
		if (w->v->first_seq == UINT64_MAX)
			w->v->first_seq = fi.base_seq;
		w->v->frames++;
		w->v->records += fi.count;
		w->v->bytes += fi.len;
		w->expected = fi.base_seq + fi.count;
		w->v->next_seq = w->expected;
		w->off += FRAME_HDR_SIZE + fi.len;
	}
	/* End of segment i: the next must start where it ended. */
	rc = 0;
	if (i + 1 == w->n) {
		w->done = 1;
	} else if (w->bases[i + 1] != w->expected) {
		rc = walk_damage(w, base, fd, i + 1, SEG_HDR_SIZE,
				 "segment ends at %" PRIu64 ", the next one starts at %" PRIu64, w->expected,
				 w->bases[i + 1]);
	} else {
		w->i = i + 1;
		w->off = SEG_HDR_SIZE;
	}
out:
	close(fd);
	return rc;
}

int spate_log_verify(const char *dir, struct spate_log_verify *v,
		     void (*cb)(const struct spate_log_damage *d, void *arg), void *arg)
{
	struct spate_log_verify dummy;
	struct walk w = {.v = v ? v : &dummy, .cb = cb, .arg = arg, .off = SEG_HDR_SIZE};
	int rc;

	if (!dir)
		return -EINVAL;
	memset(w.v, 0, sizeof(*w.v));
	w.v->first_seq = w.v->next_seq = UINT64_MAX;
	w.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w.dirfd < 0)
		return -errno;
	rc = spate_log_list_segs(w.dirfd, &w.bases, &w.n, 0);
	if (rc < 0)
		goto out;
	rc = spate_log_journal_load(w.dirfd, &w.j);
	if (rc < 0)
		goto out;
	w.v->segments = (uint32_t)w.n;
	w.expected = w.n ? w.bases[0] : 0;
	/* Bounded: every step moves forward (a resume point lies after its
	 * damage), but a journal could loop; n segments * a frame per 24 bytes. */
	while (!w.done && w.i < w.n && rc == 0)
		rc = walk_segment(&w);
	if (rc == 0)
		rc = (int)(w.v->damaged > INT_MAX ? INT_MAX : w.v->damaged);
out:
	spate_log_journal_free(&w.j);
	free(w.bases);
	free(w.buf);
	close(w.dirfd);
	return rc;
}
