/* SPDX-License-Identifier: MIT */
/*
 * Tests for the reading side of spate/log.h (suite log_read): the reader's
 * io_uring read-ahead against its pread fallback (SPATE_LOG_RD_F_PREAD) and
 * the per-frame reader (SPATE_LOG_RD_F_PER_FRAME), on logs whose frames
 * straddle the 512 KiB read-ahead chunks or are larger than a chunk: a
 * multi-segment log read back exactly (and seeks by sequence and time), a
 * reader following a writer in another thread (records appear only whole,
 * none lost or doubled), retention deleting segments under the reader, a
 * corrupted frame in the middle (-EBADMSG), a torn tail that is completed
 * later and zero padding after the last frame.
 *
 * Every record's length, payload, type and key hash are functions of its
 * sequence number (some records are 0.6-1.2 MiB, so some batches are larger
 * than a chunk), so any record read back is checked on its own.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spate/log.h"

#include "log_testlib.h"

/* ------------------------------------------------------------------------ */
/* Records and batches                                                      */
/* ------------------------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Mostly small records, one in 1000 of 0.6-1.2 MiB (> a read-ahead chunk). */
static uint32_t rlen(uint64_t s)
{
	uint64_t h = mix(s);

	if (h % 1000 == 7)
		return (uint32_t)(600000 + (h >> 20) % 600000);
	return (uint32_t)((h >> 12) % 8 < 6 ? (h >> 16) % 300 : (h >> 16) % 9000);
}

static uint8_t pbyte(uint64_t s, uint32_t k)
{
	return (uint8_t)((s * 0x9e37u) >> 3) ^ (uint8_t)(k * 31u + (k >> 9));
}

/* Records in the batch starting at @p base: 1-200. */
static unsigned bcount(uint64_t base)
{
	return (unsigned)(1 + mix(base ^ 0x5555) % 200);
}

static size_t batch_bytes(uint64_t base, unsigned count)
{
	size_t n = SPATE_RING_BHDR_SIZE;

	for (unsigned i = 0; i < count; i++)
		n += spate_ring_rec_size(rlen(base + i));
	return n;
}

/* Build the batch of @p count records from @p base into @p buf. */
static size_t make_batch(void *buf, uint64_t base, unsigned count, uint64_t ts)
{
	return tl_log_make_batch(buf, base, count, ts, rlen, pbyte);
}

/* 0 if @p r is record @p want, else a description in @p why. */
static int rec_ok(const struct spate_ring_rec *r, uint64_t want, char *why, size_t wsz)
{
	if (r->seq != want) {
		snprintf(why, wsz, "seq %" PRIu64 ", want %" PRIu64, r->seq, want);
		return -1;
	}
	if (r->len != rlen(want) || r->type != (uint8_t)(want & 0x7f) ||
	    r->key_hash != (uint32_t)(want * 2654435761u)) {
		snprintf(why, wsz, "record %" PRIu64 ": len %u (want %u), type or key hash differ", want, r->len,
			 rlen(want));
		return -1;
	}
	const uint8_t *d = r->data;
	for (uint32_t k = 0; k < r->len; k++)
		if (d[k] != pbyte(want, k)) {
			snprintf(why, wsz, "record %" PRIu64 ": payload byte %u differs", want, k);
			return -1;
		}
	return 0;
}

static void check_rec(const struct spate_ring_rec *r, uint64_t want)
{
	char why[160];

	cr_assert_eq(rec_ok(r, want, why, sizeof(why)), 0, "%s", why);
}

/* Batch timestamps: 1000 + 10 * base_seq (never decreasing). */
static uint64_t ts_of(uint64_t base)
{
	return 1000 + 10 * base;
}

/* Append batches until @p bytes of frames were appended, syncing each.
 * @return the next sequence number. */
static uint64_t write_log(struct spate_log *l, uint64_t bytes)
{
	uint64_t done = 0;
	size_t cap = 0;
	void *buf = NULL;

	while (done < bytes) {
		uint64_t base = spate_log_next_seq(l);
		unsigned cnt = bcount(base);
		size_t need = batch_bytes(base, cnt);
		if (need > cap) {
			free(buf);
			cap = need * 2;
			buf = aligned_alloc(64, (cap + 63) & ~(size_t)63);
			cr_assert_not_null(buf, "alloc");
		}
		size_t len = make_batch(buf, base, cnt, ts_of(base));
		cr_assert_eq(spate_log_append(l, buf, len), 0, "append %" PRIu64, base);
		cr_assert_eq(spate_log_sync(l, NULL), 0, "sync");
		done += len + 16;
	}
	free(buf);
	return spate_log_next_seq(l);
}

static char *make_dir(void)
{
	char *d = strdup("/tmp/spate-log-read-XXXXXX");
	cr_assert_not_null(d, "strdup");
	cr_assert_not_null(mkdtemp(d), "mkdtemp: %s", strerror(errno));
	return d;
}

static void rm_dir(char *d)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", d);
	free(d);
}

static struct spate_log *open_log(const char *dir, const struct spate_log_params *p)
{
	struct spate_log *l = NULL;
	struct spate_log_recovery rep;
	int rc = spate_log_open(dir, p, &l, &rep);

	cr_assert_eq(rc, 0, "log_open %s: %d (%s)", dir, rc, rep.message);
	return l;
}

static struct spate_log_reader *open_reader(const char *dir, enum spate_log_from from, uint64_t arg,
					    uint32_t flags)
{
	struct spate_log_reader *rd = NULL;
	int rc = spate_log_reader_open_flags(dir, from, arg, flags, &rd);

	cr_assert_eq(rc, 0, "reader_open: %d", rc);
	int err = 0;
	int u = spate_log_reader_uring(rd, &err);
	if (flags)
		cr_assert_eq(u, 0, "flags %#x: pread", flags);
	else if (!u)
		cr_log_info("io_uring refused (%d): this run reads with pread", err);
	return rd;
}

/* Read from @p rd until it has nothing; check every record from *next on.
 * @return records read. */
static uint64_t drain(struct spate_log_reader *rd, uint64_t *next, unsigned max)
{
	struct spate_ring_rec recs[64];
	uint64_t n = 0;

	for (;;) {
		uint64_t skipped = 0;
		int got = spate_log_read(rd, recs, max, &skipped);
		cr_assert_geq(got, 0, "read at %" PRIu64 ": %d", *next, got);
		cr_assert_eq(skipped, 0, "nothing skipped");
		if (!got)
			return n;
		for (int i = 0; i < got; i++)
			check_rec(&recs[i], (*next)++);
		n += (uint64_t)got;
	}
}

static void seg_path(const char *dir, int nth, char *out, size_t sz)
{
	char cmd[600];
	FILE *f;

	if (nth < 0)
		snprintf(cmd, sizeof(cmd), "ls %s/*.seg | tail -n 1", dir);
	else
		snprintf(cmd, sizeof(cmd), "ls %s/*.seg | sed -n %dp", dir, nth + 1);
	f = popen(cmd, "r");
	cr_assert_not_null(f, "popen");
	cr_assert_not_null(fgets(out, (int)sz, f), "segment %d", nth);
	pclose(f);
	out[strcspn(out, "\n")] = 0;
}

/* ------------------------------------------------------------------------ */
/* A large log read back                                                    */
/* ------------------------------------------------------------------------ */

static void big_log(uint32_t flags)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 6u << 20};
	struct spate_log *l = open_log(dir, &p);
	uint64_t end = write_log(l, 40u << 20);
	cr_assert_eq(spate_log_close(l), 0, "close");
	struct spate_log_stats st;
	cr_assert_eq(spate_log_stat(dir, &st), 0, "stat");
	cr_assert_geq(st.segments, 5, "several segments (%u)", st.segments);

	/* All of it, with the caller asking for 1, 7 and 64 records at a time. */
	unsigned maxes[] = {64, 7, 1};
	for (unsigned m = 0; m < 3; m++) {
		struct spate_log_reader *rd = open_reader(dir, SPATE_LOG_FROM_OLDEST, 0, flags);
		uint64_t next = 0;
		drain(rd, &next, maxes[m]);
		cr_assert_eq(next, end, "max %u: read up to %" PRIu64 ", want %" PRIu64, maxes[m], next, end);
		spate_log_reader_close(rd);
	}
	/* Seeks into the middle of later segments, by sequence and by time. */
	for (int i = 1; i <= 3; i++) {
		uint64_t at = end * (uint64_t)i / 4;
		struct spate_log_reader *rd = open_reader(dir, SPATE_LOG_FROM_SEQ, at, flags);
		uint64_t next = at;
		drain(rd, &next, 64);
		cr_assert_eq(next, end, "from seq %" PRIu64 ": to the end", at);
		spate_log_reader_close(rd);
		/* The first batch with ts >= ts_of(at) starts at or after at
		 * (ts grows with base_seq); records before it are skipped. */
		rd = open_reader(dir, SPATE_LOG_FROM_TIME, ts_of(at), flags);
		struct spate_ring_rec r;
		cr_assert_eq(spate_log_read(rd, &r, 1, NULL), 1, "from time");
		cr_assert_geq(r.ts, ts_of(at), "ts %" PRIu64, r.ts);
		cr_assert_geq(r.seq, at, "from time: seq %" PRIu64 " >= %" PRIu64, r.seq, at);
		cr_assert_lt(r.seq, at + 200, "from time: the batch at or after %" PRIu64, at);
		next = r.seq;
		check_rec(&r, next++);
		drain(rd, &next, 64);
		cr_assert_eq(next, end, "from time: to the end");
		spate_log_reader_close(rd);
	}
	rm_dir(dir);
}

Test(log_read, big_log_io_uring, .timeout = 300)
{
	big_log(0);
}

Test(log_read, big_log_pread, .timeout = 300)
{
	big_log(SPATE_LOG_RD_F_PREAD);
}

Test(log_read, big_log_per_frame, .timeout = 300)
{
	big_log(SPATE_LOG_RD_F_PER_FRAME);
}

Test(log_read, flags_and_query, .timeout = 30)
{
	char *dir = make_dir();
	struct spate_log_reader *rd = NULL;

	cr_assert_eq(spate_log_reader_open_flags(dir, SPATE_LOG_FROM_OLDEST, 0, 1u << 7, &rd), -EINVAL,
		     "unknown flag");
	cr_assert_eq(spate_log_reader_uring(NULL, NULL), -EINVAL, "NULL");
	cr_assert_eq(spate_log_reader_open_flags(dir, SPATE_LOG_FROM_OLDEST, 0, 0, &rd), 0, "open");
	int err = 1;
	int u = spate_log_reader_uring(rd, &err);
	cr_assert(u == 1 || u == 0, "0 or 1: %d", u);
	if (u)
		cr_assert_eq(err, 0, "no error with io_uring");
	else
		cr_assert_lt(err, 0, "refused: its errno (%d)", err);
	struct spate_ring_rec r;
	cr_assert_eq(spate_log_read(rd, &r, 1, NULL), 0, "empty log");
	spate_log_reader_close(rd);
	cr_assert_eq(spate_log_reader_open_flags(dir, SPATE_LOG_FROM_OLDEST, 0, SPATE_LOG_RD_F_PREAD, &rd), 0,
		     "open pread");
	cr_assert_eq(spate_log_reader_uring(rd, &err), 0, "pread asked for");
	cr_assert_eq(err, 0, "not refused");
	spate_log_reader_close(rd);
	rm_dir(dir);
}

/* ------------------------------------------------------------------------ */
/* Following a live writer                                                  */
/* ------------------------------------------------------------------------ */

struct live {
	const char *dir;
	uint64_t target;       /* bytes to write */
	_Atomic uint64_t end;  /* next_seq once done, UINT64_MAX before */
	_Atomic uint64_t synced; /* next_seq after the last sync */
};

static void *live_writer(void *arg)
{
	struct live *lv = arg;
	struct spate_log_params p = {.segment_bytes = 3u << 20};
	struct spate_log *l = NULL;
	struct spate_log_recovery rep;
	if (spate_log_open(lv->dir, &p, &l, &rep) < 0)
		return (void *)1;
	uint64_t done = 0;
	size_t cap = 4u << 20;
	uint8_t *buf = aligned_alloc(64, cap);
	if (!buf)
		return (void *)1;
	unsigned n = 0;
	while (done < lv->target) {
		uint64_t base = spate_log_next_seq(l);
		unsigned cnt = bcount(base);
		if (batch_bytes(base, cnt) > cap)
			cnt = 1;
		size_t len = make_batch(buf, base, cnt, ts_of(base));
		if (spate_log_append(l, buf, len) < 0 || spate_log_sync(l, NULL) < 0)
			return (void *)1;
		/* Release: pairs with the reader's acquire load; the records
		 * below this reached the file (with O_DIRECT a sync may return
		 * with its last write in flight: written, not appended, is the
		 * bound). */
		atomic_store_explicit(&lv->synced, spate_log_written_seq(l), memory_order_release);
		done += len + 16;
		if (++n % 8 == 0) {
			struct timespec ts = {0, 200000};
			nanosleep(&ts, NULL);
		}
	}
	free(buf);
	uint64_t end = spate_log_next_seq(l);
	int rc = spate_log_close(l);
	/* Release: pairs with the reader's acquire load of end. */
	atomic_store_explicit(&lv->end, end, memory_order_release);
	return (void *)(intptr_t)(rc < 0);
}

static void live(uint32_t flags)
{
	char *dir = make_dir();
	struct live lv = {.dir = dir, .target = 24u << 20};
	atomic_init(&lv.end, UINT64_MAX);
	atomic_init(&lv.synced, 0);
	/* An empty log first: the reader opens before any segment exists. */
	struct spate_log *l = open_log(dir, NULL);
	cr_assert_eq(spate_log_close(l), 0, "close");
	struct spate_log_reader *rd = open_reader(dir, SPATE_LOG_FROM_OLDEST, 0, flags);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, live_writer, &lv), 0, "thread");
	uint64_t next = 0, empty_reads = 0;
	for (;;) {
		/* Acquire: pairs with the writer's release stores. */
		uint64_t end = atomic_load_explicit(&lv.end, memory_order_acquire);
		uint64_t synced = atomic_load_explicit(&lv.synced, memory_order_acquire);
		uint64_t got = drain(rd, &next, 64);
		cr_assert_leq(next, end == UINT64_MAX ? UINT64_MAX : end, "past the end");
		if (!got)
			empty_reads++;
		/* Everything synced before the drain started was seen. */
		if (!got)
			cr_assert_geq(next, synced, "at the end of what is written: %" PRIu64 " < %" PRIu64, next,
				      synced);
		if (end != UINT64_MAX && next == end && !got)
			break;
		if (!got)
			sched_yield();
	}
	void *ret;
	pthread_join(th, &ret);
	cr_assert_null(ret, "writer");
	cr_log_info("live: %" PRIu64 " records, %" PRIu64 " empty reads", next, empty_reads);
	spate_log_reader_close(rd);
	rm_dir(dir);
}

Test(log_read, follows_live_writer_io_uring, .timeout = 300)
{
	live(0);
}

Test(log_read, follows_live_writer_pread, .timeout = 300)
{
	live(SPATE_LOG_RD_F_PREAD);
}

/* ------------------------------------------------------------------------ */
/* Retention under the reader                                               */
/* ------------------------------------------------------------------------ */

static void retention(uint32_t flags)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 2u << 20, .retention_bytes = 6u << 20};
	struct spate_log *l = open_log(dir, &p);
	write_log(l, 3u << 20);
	struct spate_log_reader *rd = open_reader(dir, SPATE_LOG_FROM_OLDEST, 0, flags);
	struct spate_ring_rec recs[8];
	uint64_t skipped = 0;
	int got = spate_log_read(rd, recs, 8, &skipped);
	cr_assert_gt(got, 0, "read");
	for (int i = 0; i < got; i++)
		check_rec(&recs[i], (uint64_t)i);
	uint64_t next = (uint64_t)got;
	/* Much more: the reader's segment and several after it go. */
	uint64_t end = write_log(l, 30u << 20);
	cr_assert_gt(spate_log_first_seq(l), next, "old segments deleted");
	uint64_t total = tl_log_read_gaps(rd, &next, 8, check_rec);
	cr_assert_gt(total, 0, "gap reported");
	cr_assert_eq(next, end, "read to the end");
	spate_log_reader_close(rd);
	cr_assert_eq(spate_log_close(l), 0, "close");
	rm_dir(dir);
}

Test(log_read, retention_moves_reader_io_uring, .timeout = 300)
{
	retention(0);
}

Test(log_read, retention_moves_reader_pread, .timeout = 300)
{
	retention(SPATE_LOG_RD_F_PREAD);
}

/* ------------------------------------------------------------------------ */
/* Corruption, torn tails, padding                                          */
/* ------------------------------------------------------------------------ */

/* Offsets of the frames of a closed single-segment log (start at 4096). */
static size_t frame_offsets(const char *seg, uint64_t *off, size_t max, uint64_t *fsz)
{
	int fd = open(seg, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s", seg);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0, "fstat");
	*fsz = (uint64_t)st.st_size;
	size_t n = 0;
	for (uint64_t o = 4096; o + 16 <= *fsz && n < max;) {
		uint32_t h[2];
		cr_assert_eq(pread(fd, h, sizeof(h), (off_t)o), (ssize_t)sizeof(h), "frame header");
		off[n++] = o;
		o += 16 + h[1];
	}
	close(fd);
	return n;
}

static void corrupt_mid(uint32_t flags)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 64u << 20, .flags = SPATE_LOG_F_BUFFERED};
	struct spate_log *l = open_log(dir, &p);
	uint64_t end = write_log(l, 4u << 20);
	cr_assert_eq(spate_log_close(l), 0, "close");
	char seg[512];
	seg_path(dir, 0, seg, sizeof(seg));
	uint64_t off[20000], fsz;
	size_t n = frame_offsets(seg, off, 20000, &fsz);
	/* The first frame starting past 1.3 MiB (beyond the first chunks). */
	size_t k = 0;
	while (k < n && off[k] < (13u << 20) / 10)
		k++;
	cr_assert_lt(k + 1, n, "a frame in the middle");
	int fd = open(seg, O_RDWR);
	cr_assert_geq(fd, 0, "open");
	uint8_t b;
	uint64_t at = off[k] + 16 + 40; /* in the batch: records */
	cr_assert_eq(pread(fd, &b, 1, (off_t)at), 1, "read");
	b ^= 0x5a;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)at), 1, "flip");
	close(fd);
	/* Records up to that frame, then -EBADMSG; never a bad record. */
	struct spate_log_reader *rd = open_reader(dir, SPATE_LOG_FROM_OLDEST, 0, flags);
	struct spate_ring_rec recs[64];
	uint64_t next = 0;
	int got;
	while ((got = spate_log_read(rd, recs, 64, NULL)) > 0)
		for (int i = 0; i < got; i++)
			check_rec(&recs[i], next++);
	cr_assert_eq(got, -EBADMSG, "corruption reported: %d", got);
	cr_assert_lt(next, end, "stopped before the end");
	/* Exactly at the corrupt frame: its base_seq. */
	int rfd = open(seg, O_RDONLY);
	struct spate_ring_bhdr bh;
	cr_assert_eq(pread(rfd, &bh, sizeof(bh), (off_t)(off[k] + 16)), (ssize_t)sizeof(bh), "bhdr");
	close(rfd);
	cr_assert_eq(next, bh.base_seq, "stopped at %" PRIu64 ", the bad frame holds %" PRIu64, next,
		     bh.base_seq);
	spate_log_reader_close(rd);
	rm_dir(dir);
}

Test(log_read, corrupt_frame_in_the_middle_io_uring, .timeout = 60)
{
	corrupt_mid(0);
}

Test(log_read, corrupt_frame_in_the_middle_pread, .timeout = 60)
{
	corrupt_mid(SPATE_LOG_RD_F_PREAD);
}

static void file_put(const char *path, const uint8_t *b, uint64_t len, uint64_t at)
{
	int fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0, "open");
	cr_assert_eq(pwrite(fd, b, len, (off_t)at), (ssize_t)len, "pwrite");
	close(fd);
}

/*
 * The last frame torn (half written), then zero padding in its place, then
 * written whole: the same reader, sitting at the end with its window read
 * ahead, returns nothing (no error) until the frame is whole, then it.
 */
static void torn_tail(uint32_t flags)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 64u << 20, .flags = SPATE_LOG_F_BUFFERED};
	struct spate_log *l = open_log(dir, &p);
	uint64_t end = write_log(l, 1600u << 10);
	cr_assert_eq(spate_log_close(l), 0, "close");
	char seg[512];
	seg_path(dir, 0, seg, sizeof(seg));
	uint64_t off[20000], fsz;
	size_t n = frame_offsets(seg, off, 20000, &fsz);
	cr_assert_gt(n, 2, "frames");
	uint64_t last = off[n - 1], flen = fsz - last;
	uint8_t *frame = malloc(flen);
	cr_assert_not_null(frame, "malloc");
	int fd = open(seg, O_RDONLY);
	cr_assert_eq(pread(fd, frame, flen, (off_t)last), (ssize_t)flen, "last frame");
	close(fd);
	struct spate_ring_bhdr bh;
	memcpy(&bh, frame + 16, sizeof(bh));
	uint64_t last_base = bh.base_seq;

	/* Torn: header and half the batch. */
	cr_assert_eq(truncate(seg, (off_t)(last + 16 + flen / 2)), 0, "truncate");
	struct spate_log_reader *rd = open_reader(dir, SPATE_LOG_FROM_OLDEST, 0, flags);
	uint64_t next = 0;
	drain(rd, &next, 64);
	cr_assert_eq(next, last_base, "up to the torn frame: %" PRIu64 " want %" PRIu64, next, last_base);
	drain(rd, &next, 64);
	cr_assert_eq(next, last_base, "still nothing");

	/* Zero padding (< 4096 bytes) instead: the end, no error. */
	cr_assert_eq(truncate(seg, (off_t)last), 0, "truncate");
	cr_assert_eq(truncate(seg, (off_t)(last + 3000)), 0, "zero padding");
	drain(rd, &next, 64);
	cr_assert_eq(next, last_base, "padding is the end");

	/* Half the frame over the padding, then all of it. */
	file_put(seg, frame, flen / 2, last);
	drain(rd, &next, 64);
	cr_assert_eq(next, last_base, "half a frame is not a frame");
	file_put(seg, frame, flen, last);
	drain(rd, &next, 64);
	cr_assert_eq(next, end, "the completed frame read: %" PRIu64 " want %" PRIu64, next, end);
	spate_log_reader_close(rd);
	free(frame);
	rm_dir(dir);
}

Test(log_read, torn_tail_then_completed_io_uring, .timeout = 60)
{
	torn_tail(0);
}

Test(log_read, torn_tail_then_completed_pread, .timeout = 60)
{
	torn_tail(SPATE_LOG_RD_F_PREAD);
}
