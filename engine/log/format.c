/* SPDX-License-Identifier: MIT */
/*
 * format.c - the on-disk format (docs/format.md): CRC-32C, segment
 * headers, frames and the ring batches they carry, frame scans.
 *
 * Every check a reader, recovery or the writer makes on bytes from disk is
 * here, so that there is one definition of a valid frame.
 *  - Little-endian hosts only (the format is little-endian).
 */
#include "log_pvt.h"

/* Standard CRC-32C (Castagnoli, reflected, ~init/~final) continued from @p crc. */
uint32_t spate_log_crc32c(uint32_t crc, const void *buf, size_t len)
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

uint32_t spate_log_frame_crc(uint32_t len, const void *batch)
{
	return spate_log_crc32c(spate_log_crc32c(0, &len, sizeof(len)), batch, len);
}

void spate_log_seg_name(char *buf, size_t sz, uint64_t base, const char *ext)
{
	snprintf(buf, sz, "%020" PRIu64 "%s", base, ext);
}

void spate_log_msg_add(char *msg, size_t sz, const char *fmt, ...)
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

int spate_log_pread_full(int fd, void *buf, size_t len, uint64_t off)
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

int spate_log_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
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

/* Parse "<20 digits><ext>" exactly. */
int spate_log_parse_name(const char *name, const char *ext, uint64_t *base)
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

/*
 * Check a ring batch of @p len bytes: committed data batch whose length word
 * matches, records that exactly fill it. Fills count/base_seq/ts.
 * @return 0 or -EINVAL with @p why set.
 */
int spate_log_check_batch(const uint8_t *b, uint64_t len, uint32_t *count, uint64_t *base_seq,
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

/*
 * Read and verify the frame at @p off of a file of @p fsize bytes into *buf.
 * @return 1 (frame), 0 (exactly at the end), -EBADMSG (with @p why), -errno.
 */
int spate_log_read_frame(int fd, uint64_t off, uint64_t fsize, uint8_t **buf, size_t *cap,
		      struct frame_info *fi, const char **why)
{
	struct frame_hdr fh;

	if (off == fsize)
		return 0;
	if (off > fsize || fsize - off < FRAME_HDR_SIZE) {
		*why = "incomplete frame header";
		return -EBADMSG;
	}
	int rc = spate_log_pread_full(fd, &fh, sizeof(fh), off);
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
	rc = spate_log_pread_full(fd, *buf, fh.len, off + FRAME_HDR_SIZE);
	if (rc < 0)
		return rc;
	if (!rc) {
		*why = "frame runs past the end of the file";
		return -EBADMSG;
	}
	if (spate_log_frame_crc(fh.len, *buf) != fh.crc) {
		*why = "CRC-32C mismatch";
		return -EBADMSG;
	}
	if (spate_log_check_batch(*buf, fh.len, &fi->count, &fi->base_seq, &fi->ts, why) < 0)
		return -EBADMSG;
	fi->len = fh.len;
	return 1;
}

uint64_t spate_log_file_size(int fd)
{
	struct stat st;

	return fstat(fd, &st) < 0 ? 0 : (uint64_t)st.st_size;
}

/* Read and check a segment header; *ver (may be NULL) gets its version.
 * @return 0, -EBADMSG (why), -EPROTO, -errno. */
int spate_log_read_seg_hdr(int fd, uint64_t base, const char **why, uint32_t *ver)
{
	struct seg_hdr h;
	int rc = spate_log_pread_full(fd, &h, sizeof(h), 0);

	if (rc < 0)
		return rc;
	if (!rc || spate_log_file_size(fd) < SEG_HDR_SIZE) {
		*why = "segment shorter than its header";
		return -EBADMSG;
	}
	if (h.magic != SPATE_LOG_SEG_MAGIC) {
		*why = "bad segment magic";
		return -EBADMSG;
	}
	if (spate_log_crc32c(0, &h, offsetof(struct seg_hdr, crc)) != h.crc) {
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

/* The first byte at or after @p off that may hold data: holes and
 * unwritten (fallocated) extents read as zeros and are skipped (SEEK_DATA);
 * @p off itself where the file system cannot tell. */
static uint64_t data_from(int fd, uint64_t off, uint64_t fsize)
{
	off_t d = lseek(fd, (off_t)off, SEEK_DATA);

	if (d < 0)
		return errno == ENXIO ? fsize : off;
	return (uint64_t)d > off ? (uint64_t)d : off;
}

/*
 * The end of the frames: from @p off to the end of the file, every byte is
 * zero. A segment's file may be longer than its frames: the O_DIRECT
 * writer pads its last block (< PAD_MAX zeros, format version 2), and the
 * writer preallocates the active segment ahead of its writes (fallocate,
 * docs/format.md), which reads as zeros up to the end of the file. Holes
 * and unwritten extents are skipped without reading them.
 * @return 1, 0, -errno.
 */
int spate_log_zero_tail(int fd, uint64_t off, uint64_t fsize)
{
	static const uint8_t zero[65536];
	uint8_t b[65536];

	if (off >= fsize)
		return 0;
	while (off < fsize) {
		off = data_from(fd, off, fsize);
		if (off >= fsize)
			break;
		size_t n = fsize - off < sizeof(b) ? (size_t)(fsize - off) : sizeof(b);
		int rc = spate_log_pread_full(fd, b, n, off);
		if (rc <= 0)
			return rc;
		if (memcmp(b, zero, n))
			return 0;
		off += n;
	}
	return 1;
}

int spate_log_next_magic(int fd, uint64_t o, uint64_t fsize, uint64_t *at)
{
	static const uint32_t magic = SPATE_LOG_FRAME_MAGIC;
	uint8_t b[65536];

	o = (o + 7) & ~(uint64_t)7;
	while (o + FRAME_HDR_SIZE <= fsize) {
		uint64_t d = data_from(fd, o, fsize);
		if (d > o)
			o = d & ~(uint64_t)7; /* a hole: nothing to find in it */
		if (o + FRAME_HDR_SIZE > fsize)
			break;
		size_t n = fsize - o < sizeof(b) ? (size_t)(fsize - o) : sizeof(b);
		int rc = spate_log_pread_full(fd, b, n, o);
		if (rc <= 0)
			return rc;
		for (size_t k = 0; k + sizeof(magic) <= n; k += 8) {
			if (!memcmp(b + k, &magic, sizeof(magic))) {
				*at = o + k;
				return 1;
			}
		}
		o += n & ~(size_t)7;
		if (n < 8)
			break;
	}
	return 0;
}

/*
 * Scan frames from @p off (expected first sequence @p seq, UINT64_MAX: any)
 * to the end or the first bad frame. With @p every, build index entries.
 * @return 0 (see sc->why for a stop), -errno.
 */
int spate_log_scan_frames(int fd, uint64_t off, uint64_t seq, uint64_t fsize, uint32_t every,
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
		int rc = spate_log_read_frame(fd, sc->off, fsize, buf, cap, &fi, &why);
		if (rc == 0)
			return 0;
		if (rc == -EBADMSG) {
			rc = spate_log_zero_tail(fd, sc->off, fsize);
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

/* The first valid frame at or after @p off (8-aligned positions): 1 and
 * *@p at, 0 (none), -errno. */
int spate_log_valid_frame_from(int fd, uint64_t off, uint64_t fsize, uint8_t **buf, size_t *cap, uint64_t *at)
{
	for (uint64_t o = off;;) {
		uint64_t m;
		int rc = spate_log_next_magic(fd, o, fsize, &m);
		if (rc <= 0)
			return rc;
		struct frame_info fi;
		const char *why;
		rc = spate_log_read_frame(fd, m, fsize, buf, cap, &fi, &why);
		if (rc == 1) {
			*at = m;
			return 1;
		}
		if (rc < 0 && rc != -EBADMSG)
			return rc;
		o = m + 8;
	}
}

/* Is there a valid frame anywhere after @p off? (tells a torn tail from
 * mid-segment corruption). @return 1, 0, -errno. */
int spate_log_valid_frame_after(int fd, uint64_t off, uint64_t fsize, uint8_t **buf, size_t *cap)
{
	uint64_t at;

	return spate_log_valid_frame_from(fd, off + 8, fsize, buf, cap, &at);
}

/* Is any aligned 512-byte sector of [@p from, @p to) (or its part from a
 * sector boundary to @p to) all zeros? @return 1, 0, -errno. */
static int zero_sector_in(int fd, uint64_t from, uint64_t to)
{
	uint8_t b[65536];

	for (uint64_t o = from; o < to;) {
		/* Chunks end on sector boundaries (but the last, at @p to). */
		uint64_t n = sizeof(b) - (o & 511);
		if (n > to - o)
			n = to - o;
		int rc = spate_log_pread_full(fd, b, (size_t)n, o);
		if (rc <= 0)
			return rc;
		if (spate_log_zero_sector_mem(b, o, n))
			return 1;
		o += n;
	}
	return 0;
}

/*
 * The bad frame at @p g of the last segment is followed by valid frames:
 * is it the gap a crash with writes in flight leaves (recover.c, "Writes
 * in flight")? Its bytes are missing (zero header, or an all-zero sector
 * before the next valid frame), and no valid frame starts at or beyond
 * g + INFLIGHT_MAX. @return 1, 0, -errno.
 */
int spate_log_torn_in_flight(int fd, uint64_t g, uint64_t fsize, uint8_t **buf, size_t *cap)
{
	static const uint8_t zero[FRAME_HDR_SIZE];
	uint8_t h[FRAME_HDR_SIZE];
	uint64_t next, far;

	int rc = spate_log_valid_frame_from(fd, g + 8, fsize, buf, cap, &next);
	if (rc <= 0)
		return rc;
	rc = spate_log_pread_full(fd, h, sizeof(h), g);
	if (rc < 0)
		return rc;
	int missing = rc == 1 && !memcmp(h, zero, sizeof(h));
	if (!missing) {
		rc = zero_sector_in(fd, g, next);
		if (rc < 0)
			return rc;
		missing = rc;
	}
	if (!missing)
		return 0;
	if (g + INFLIGHT_MAX >= fsize)
		return 1;
	rc = spate_log_valid_frame_from(fd, g + INFLIGHT_MAX, fsize, buf, cap, &far);
	return rc < 0 ? rc : !rc;
}

int spate_log_frame_unlanded(const struct frame_hdr *fh, const uint8_t *body, uint64_t off)
{
	uint64_t b = (off + 511) & ~(uint64_t)511; /* first sector boundary at or after off */
	const uint8_t *h = (const uint8_t *)fh;

	if (spate_log_zero_sector_mem(body, off + FRAME_HDR_SIZE, fh->len))
		return 1;
	if (b <= off || b >= off + FRAME_HDR_SIZE)
		return 0; /* the header lies in one sector */
	for (uint64_t i = b - off; i < FRAME_HDR_SIZE; i++)
		if (h[i])
			return 0;
	/* A batch starts with its commit word, never zero: an intact frame
	 * cannot pass this. */
	uint64_t n = 512 - (FRAME_HDR_SIZE - (b - off));
	if (n > fh->len)
		n = fh->len;
	for (uint64_t i = 0; i < n; i++)
		if (body[i])
			return 0;
	return 1;
}

int spate_log_zero_sector_mem(const uint8_t *p, uint64_t off, uint64_t len)
{
	static const uint8_t zero[512];
	uint64_t k = ((off + 511) & ~(uint64_t)511) - off;

	for (; k < len; k += 512) {
		uint64_t n = len - k < 512 ? len - k : 512;
		if (!memcmp(p + k, zero, n))
			return 1;
	}
	return 0;
}
