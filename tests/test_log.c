/* SPDX-License-Identifier: MIT */
/*
 * Tests for spate/log.h: round trips (io_uring and pwrite; O_DIRECT with
 * registered buffers, O_DIRECT through pwrite, the page cache), seeks by
 * sequence and time across segments, rolling and retention (with a reader
 * on a deleted segment), recovery of torn and corrupt tails, the O_DIRECT
 * zero padding after the last frame (end of log, not a tear; its 4096-byte
 * bound; a torn frame before it), refusal and repair of mid-log corruption,
 * the clean-shutdown marker, O_DIRECT syncs that return with the last
 * write in flight (written_seq behind next_seq, the caller's memory reused
 * at once, an empty sync or close completing it), a full disk (a 2 MiB
 * tmpfs, where O_DIRECT falls back to the page cache, and a loop-mounted
 * ext4 image with O_DIRECT, hit by a synchronous write or by one left in
 * flight and reported by the next sync) and SIGKILL crash loops (one with
 * O_DIRECT writes in flight across syncs, checking that what was reported
 * written survives).
 *
 * Batches are built by hand in the ring's layout (struct spate_ring_bhdr +
 * records): the log must need nothing from a ring but its layout. Every
 * record's payload, length, type and key hash are functions of its
 * sequence number, so any record read back can be checked on its own.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spate/log.h"

#include "log_testlib.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static uint32_t rec_len(uint64_t s)
{
	return (uint32_t)((s * 13u) % 100u + 1u);
}

static uint8_t rec_byte(uint64_t s, uint32_t i)
{
	return (uint8_t)(s * 7u + i);
}

static unsigned batch_count(uint64_t base)
{
	return (unsigned)(1u + base % 4u);
}

/* Build the batch starting at @p base into @p buf (8-aligned); @return its bytes. */
static size_t make_batch(void *buf, uint64_t base, unsigned count, uint64_t ts)
{
	return tl_log_make_batch(buf, base, count, ts, rec_len, rec_byte);
}

static void check_rec(const struct spate_ring_rec *r, uint64_t want_seq)
{
	cr_assert_eq(r->seq, want_seq, "seq %" PRIu64 ", want %" PRIu64, r->seq, want_seq);
	cr_assert_eq(r->len, rec_len(r->seq), "len of %" PRIu64, r->seq);
	cr_assert_eq(r->type, (uint8_t)(r->seq & 0x7f), "type of %" PRIu64, r->seq);
	cr_assert_eq(r->key_hash, (uint32_t)(r->seq * 2654435761u), "key hash of %" PRIu64, r->seq);
	const uint8_t *d = r->data;
	for (uint32_t k = 0; k < r->len; k++)
		cr_assert_eq(d[k], rec_byte(r->seq, k), "payload byte %u of %" PRIu64, k, r->seq);
}

static char *make_dir(void)
{
	char *d = strdup("/tmp/spate-log-test-XXXXXX");
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

static uint64_t fill(const char *dir, const struct spate_log_params *p, unsigned nb);

/* Arena of batches that must stay put until the next sync. */
struct arena {
	uint64_t *mem;
	size_t cap, used; /* bytes */
};

static void *arena_get(struct arena *a, size_t bytes)
{
	bytes = (bytes + 7u) & ~(size_t)7u;
	if (a->used + bytes > a->cap)
		return NULL;
	void *p = (uint8_t *)a->mem + a->used;
	a->used += bytes;
	return p;
}

/* Append @p nbatches batches (timestamps ts0 + i * dts) syncing every
 * @p sync_every; @return the next sequence number. */
static uint64_t write_batches(struct spate_log *l, unsigned nbatches, uint64_t ts0, uint64_t dts,
			      unsigned sync_every)
{
	struct arena a = {0};
	a.cap = (size_t)sync_every * (SPATE_RING_BHDR_SIZE + 4u * 128u);
	a.mem = malloc(a.cap);
	cr_assert_not_null(a.mem, "malloc");
	for (unsigned i = 0; i < nbatches; i++) {
		uint64_t base = spate_log_next_seq(l);
		void *b = arena_get(&a, SPATE_RING_BHDR_SIZE + 4u * 128u);
		cr_assert_not_null(b, "arena");
		size_t len = make_batch(b, base, batch_count(base), ts0 + i * dts);
		int rc = spate_log_append(l, b, len);
		cr_assert_eq(rc, 0, "append %" PRIu64 ": %d", base, rc);
		if ((i + 1) % sync_every == 0 || i + 1 == nbatches) {
			uint64_t dur = 0;
			rc = spate_log_sync(l, &dur);
			cr_assert_eq(rc, 0, "sync: %d", rc);
			a.used = 0;
		}
	}
	free(a.mem);
	return spate_log_next_seq(l);
}

/* Read everything from @p from; check each record; @return records read. */
static uint64_t read_all(const char *dir, enum spate_log_from from, uint64_t arg, uint64_t first,
			 uint64_t end)
{
	struct spate_log_reader *rd = NULL;
	struct spate_ring_rec recs[16];
	int rc = spate_log_reader_open(dir, from, arg, &rd);

	cr_assert_eq(rc, 0, "reader_open: %d", rc);
	uint64_t want = first, n = 0;
	for (;;) {
		uint64_t skipped = 0;
		int got = spate_log_read(rd, recs, 16, &skipped);
		cr_assert_geq(got, 0, "read: %d", got);
		cr_assert_eq(skipped, 0, "nothing skipped");
		if (got == 0)
			break;
		for (int i = 0; i < got; i++)
			check_rec(&recs[i], want++);
		n += (uint64_t)got;
	}
	cr_assert_eq(want, end, "read up to %" PRIu64 ", want %" PRIu64, want, end);
	spate_log_reader_close(rd);
	return n;
}

static struct spate_log *open_log(const char *dir, const struct spate_log_params *p,
				  struct spate_log_recovery *rep)
{
	struct spate_log *l = NULL;
	int rc = spate_log_open(dir, p, &l, rep);

	cr_assert_eq(rc, 0, "log_open %s: %d (%s)", dir, rc, rep->message);
	return l;
}

/* Path of the n-th (0-based; -1: last) segment. */
static void seg_path(const char *dir, int nth, char *out, size_t sz)
{
	char cmd[600];

	if (nth < 0)
		snprintf(cmd, sizeof(cmd), "ls %s/*.seg | tail -n 1", dir);
	else
		snprintf(cmd, sizeof(cmd), "ls %s/*.seg | sed -n %dp", dir, nth + 1);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f, "popen");
	cr_assert_not_null(fgets(out, (int)sz, f), "no segment %d in %s", nth, dir);
	out[strcspn(out, "\n")] = 0;
	pclose(f);
}

static uint64_t fsize(const char *path)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0, "stat %s", path);
	return (uint64_t)st.st_size;
}

static void flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	cr_assert_geq(fd, 0, "open %s", path);
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1, "pread");
	b ^= 0x5a;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1, "pwrite");
	close(fd);
}

/* Bytes of a segment holding the batches write_batches() makes for
 * sequence numbers [from, end): header, then 16-byte frame header + batch. */
static uint64_t seg_bytes(uint64_t from, uint64_t end)
{
	uint64_t n = 4096;

	for (uint64_t b = from; b < end; b += batch_count(b)) {
		n += 16 + SPATE_RING_BHDR_SIZE;
		for (uint64_t s = b; s < b + batch_count(b); s++)
			n += spate_ring_rec_size(rec_len(s));
	}
	return n;
}

static void remove_clean(const char *dir)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/CLEAN", dir);
	unlink(p);
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                              */
/* ------------------------------------------------------------------------ */

static void roundtrip(uint32_t flags)
{
	char *dir = make_dir();
	struct spate_log_params p = {.durability = SPATE_DURABILITY_ALWAYS, .flags = flags};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);

	cr_log_info("writer: %s", rep.message);
	if (flags & SPATE_LOG_F_NO_URING)
		cr_assert_eq(rep.io_uring, 0, "NO_URING honoured");
	if (flags & SPATE_LOG_F_BUFFERED) {
		cr_assert_eq(rep.direct, 0, "BUFFERED honoured");
		cr_assert(strstr(rep.message, "page cache") != NULL, "says so: %s", rep.message);
	}
	if (flags & SPATE_LOG_F_DIRECT) {
		if (!rep.direct) {
			spate_log_close(l);
			rm_dir(dir);
			cr_skip_test("no O_DIRECT on /tmp here: %s", rep.message);
		}
		cr_assert(rep.dio_align >= 1 && rep.dio_align <= 4096 && !(rep.dio_align & (rep.dio_align - 1)),
			  "alignment %u", rep.dio_align);
		cr_assert(strstr(rep.message, "O_DIRECT") != NULL, "says so: %s", rep.message);
		/* Registered buffers whenever io_uring is used (root: no
		 * RLIMIT_MEMLOCK trouble for 8 MiB). */
		if (rep.io_uring)
			cr_assert_eq(rep.fixed_buffers, 1, "registered buffers: %s", rep.message);
	}
	cr_assert_eq(rep.first_seq, UINT64_MAX, "empty log");
	cr_assert_eq(spate_log_next_seq(l), 0, "empty log starts at 0");
	uint64_t end = write_batches(l, 300, 1000, 10, 7);
	cr_assert_eq(spate_log_durable_seq(l), end, "all durable");
	cr_assert_eq(spate_log_close(l), 0, "close");

	l = open_log(dir, &p, &rep);
	cr_assert_eq(rep.clean, 1, "clean reopen");
	cr_assert_eq(rep.next_seq, end, "next_seq %" PRIu64 " want %" PRIu64, rep.next_seq, end);
	cr_assert_eq(rep.first_seq, 0, "first_seq");
	cr_assert_eq(rep.truncated_bytes, 0, "nothing cut");
	/* Appending continues the sequence. */
	end = write_batches(l, 50, 5000, 10, 50);
	cr_assert_eq(spate_log_close(l), 0, "close");

	cr_assert_eq(read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, end), end, "every record");
	struct spate_log_stats st;
	cr_assert_eq(spate_log_stat(dir, &st), 0, "stat");
	cr_assert_eq(st.first_seq, 0, "stat first");
	cr_assert_eq(st.next_seq, end, "stat next");
	cr_assert_eq(st.first_ts, 1000, "stat first ts");
	cr_assert_eq(st.last_ts, 5000 + 49 * 10, "stat last ts");
	cr_assert_eq(st.segments, 1, "one segment");
	/* A closed segment ends at its last frame: no O_DIRECT padding. */
	char seg[512];
	seg_path(dir, -1, seg, sizeof(seg));
	cr_assert_eq(fsize(seg), seg_bytes(0, end), "segment size %" PRIu64 " want %" PRIu64, fsize(seg),
		     seg_bytes(0, end));
	rm_dir(dir);
}

Test(log, roundtrip_io_uring, .timeout = 60)
{
	roundtrip(0);
}

Test(log, roundtrip_pwrite, .timeout = 60)
{
	roundtrip(SPATE_LOG_F_NO_URING);
}

Test(log, roundtrip_direct_registered_buffers, .timeout = 60)
{
	roundtrip(SPATE_LOG_F_DIRECT);
}

Test(log, roundtrip_direct_pwrite_fallback, .timeout = 60)
{
	roundtrip(SPATE_LOG_F_DIRECT | SPATE_LOG_F_NO_URING);
}

Test(log, roundtrip_buffered, .timeout = 60)
{
	roundtrip(SPATE_LOG_F_BUFFERED);
}

/*
 * O_DIRECT, durability none: spate_log_sync() returns once the batches are
 * staged, the last write still in flight (io_uring: its completion is only
 * seen by the next call), so the caller's memory may be reused at once; a
 * sync with nothing new completes the write; durable_seq never moves
 * without an fdatasync; close writes everything.
 */
static void sync_in_flight(uint32_t flags)
{
	char *dir = make_dir();
	struct spate_log_params p = {.durability = SPATE_DURABILITY_NONE, .flags = flags};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	if (!rep.direct) {
		spate_log_close(l);
		rm_dir(dir);
		cr_skip_test("no O_DIRECT here: %s", rep.message);
	}
	size_t bsz = SPATE_RING_BHDR_SIZE + 4u * 128u;
	const unsigned per = 3000; /* ~1.6 MiB a sync */
	uint8_t *mem = malloc(per * bsz);
	cr_assert_not_null(mem, "malloc");
	uint64_t prev_w = 0;
	for (int round = 0; round < 12; round++) {
		for (unsigned i = 0; i < per; i++) {
			uint64_t base = spate_log_next_seq(l);
			size_t len = make_batch(mem + i * bsz, base, batch_count(base), 1000 + base);
			cr_assert_eq(spate_log_append(l, mem + i * bsz, len), 0, "append");
		}
		uint64_t durable = 1;
		cr_assert_eq(spate_log_sync(l, &durable), 0, "sync");
		cr_assert_eq(durable, 0, "durable without an fdatasync: %" PRIu64, durable);
		uint64_t w = spate_log_written_seq(l), next = spate_log_next_seq(l);
		cr_assert_leq(w, next, "written <= appended");
		/* Several writes may be in flight (and a partial buffer held
		 * while they are): written_seq only moves forward. */
		cr_assert_geq(w, prev_w, "round %d: written_seq only moves forward", round);
		prev_w = w;
		if (!(flags & SPATE_LOG_F_NO_URING))
			cr_assert_lt(w, next, "round %d: the last write is still in flight", round);
		else
			cr_assert_eq(w, next, "pwrite: written at once");
		/* Staged: the batches may be overwritten now. */
		memset(mem, 0x5a, per * bsz);
		if (round % 4 == 3) {
			/* Nothing new: the sync completes the write in flight. */
			cr_assert_eq(spate_log_sync(l, NULL), 0, "empty sync");
			cr_assert_eq(spate_log_written_seq(l), next, "all written");
			cr_assert_eq(read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, next), next, "readable");
		}
	}
	cr_assert_eq(spate_log_durable_seq(l), 0, "never fdatasync'ed");
	uint64_t end = spate_log_next_seq(l);
	cr_assert_eq(spate_log_close(l), 0, "close");
	free(mem);
	l = open_log(dir, &p, &rep);
	cr_assert_eq(rep.clean, 1, "clean");
	cr_assert_eq(rep.next_seq, end, "all there");
	cr_assert_eq(spate_log_close(l), 0, "close");
	cr_assert_eq(read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, end), end, "every record");
	rm_dir(dir);
}

Test(log, direct_sync_returns_with_write_in_flight, .timeout = 60)
{
	sync_in_flight(SPATE_LOG_F_DIRECT);
}

Test(log, direct_sync_in_flight_pwrite, .timeout = 60)
{
	sync_in_flight(SPATE_LOG_F_DIRECT | SPATE_LOG_F_NO_URING);
}

Test(log, append_refuses_bad_batches, .timeout = 30)
{
	char *dir = make_dir();
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, NULL, &rep);
	uint64_t buf[128];

	size_t len = make_batch(buf, 0, 2, 1);
	cr_assert_eq(spate_log_append(l, buf, len - 8), -EINVAL, "length disagrees");
	struct spate_ring_bhdr *h = (struct spate_ring_bhdr *)buf;
	atomic_store_explicit(&h->commit, len | SPATE_RING_C_COMMITTED | SPATE_RING_C_PAD,
			      memory_order_relaxed);
	cr_assert_eq(spate_log_append(l, buf, len), -EINVAL, "pad batch");
	len = make_batch(buf, 0, 2, 1);
	cr_assert_eq(spate_log_append(l, buf, len), 0, "good batch");
	cr_assert_eq(spate_log_sync(l, NULL), 0, "sync");
	uint64_t other[128];
	size_t l2 = make_batch(other, 5, 1, 1);
	cr_assert_eq(spate_log_append(l, other, l2), -ERANGE, "gap");
	cr_assert_eq(spate_log_close(l), 0, "close");
	rm_dir(dir);
}

Test(log, long_record, .timeout = 60)
{
	char *dir = make_dir();
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, NULL, &rep);
	uint64_t plen = SPATE_RING_LONG + 5u;
	size_t len = SPATE_RING_BHDR_SIZE + spate_ring_rec_size(plen);
	uint64_t *b = calloc(1, len);
	cr_assert_not_null(b, "calloc");
	struct spate_ring_bhdr *h = (struct spate_ring_bhdr *)b;
	uint8_t *r = (uint8_t *)b + SPATE_RING_BHDR_SIZE;
	struct spate_ring_rhdr rh = {SPATE_RING_LONG | (9u << 24), 77};
	memcpy(r, &rh, sizeof(rh));
	memcpy(r + 8, &plen, 8);
	for (uint64_t i = 0; i < plen; i++)
		r[16 + i] = (uint8_t)(i * 31u);
	h->count = 1;
	h->base_seq = 0;
	h->ts = 42;
	atomic_store_explicit(&h->commit, len | SPATE_RING_C_COMMITTED, memory_order_relaxed);
	cr_assert_eq(spate_log_append(l, b, len), 0, "append long");
	cr_assert_eq(spate_log_sync(l, NULL), 0, "sync");
	cr_assert_eq(spate_log_close(l), 0, "close");
	free(b);

	struct spate_log_reader *rd = NULL;
	struct spate_ring_rec rec;
	cr_assert_eq(spate_log_reader_open(dir, SPATE_LOG_FROM_OLDEST, 0, &rd), 0, "reader");
	cr_assert_eq(spate_log_read(rd, &rec, 1, NULL), 1, "one record");
	cr_assert_eq(rec.len, plen, "long length");
	cr_assert_eq(rec.type, 9, "type");
	cr_assert_eq(rec.key_hash, 77, "key hash");
	cr_assert_eq(rec.ts, 42, "ts");
	const uint8_t *d = rec.data;
	for (uint64_t i = 0; i < plen; i += 4099)
		cr_assert_eq(d[i], (uint8_t)(i * 31u), "payload at %" PRIu64, i);
	cr_assert_eq(d[plen - 1], (uint8_t)((plen - 1) * 31u), "last byte");
	cr_assert_eq(spate_log_read(rd, &rec, 1, NULL), 0, "end");
	spate_log_reader_close(rd);
	rm_dir(dir);
}

Test(log, reader_follows_writer_across_rolls, .timeout = 60)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 8192};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	uint64_t end = write_batches(l, 3, 1000, 1, 3);
	struct spate_log_reader *rd = NULL;
	cr_assert_eq(spate_log_reader_open(dir, SPATE_LOG_FROM_OLDEST, 0, &rd), 0, "reader");
	struct spate_ring_rec recs[8];
	uint64_t next = 0;
	for (int round = 0; round < 40; round++) {
		/* O_DIRECT: the last write may still be in flight; a sync with
		 * nothing new appended completes it. */
		cr_assert_leq(spate_log_written_seq(l), end, "written <= appended");
		cr_assert_eq(spate_log_sync(l, NULL), 0, "sync");
		cr_assert_eq(spate_log_written_seq(l), end, "round %d: all written", round);
		for (;;) {
			uint64_t skipped = 0;
			int got = spate_log_read(rd, recs, 8, &skipped);
			cr_assert_geq(got, 0, "read: %d", got);
			cr_assert_eq(skipped, 0, "no gap");
			if (!got)
				break;
			for (int i = 0; i < got; i++)
				check_rec(&recs[i], next++);
		}
		cr_assert_eq(next, end, "round %d: caught up to %" PRIu64 " (at %" PRIu64 ")", round, end,
			     next);
		end = write_batches(l, 7, 2000, 1, 7);
	}
	struct spate_log_stats st;
	cr_assert_eq(spate_log_stat(dir, &st), 0, "stat");
	cr_assert_gt(st.segments, 5, "rolled (%u)", st.segments);
	spate_log_reader_close(rd);
	cr_assert_eq(spate_log_close(l), 0, "close");
	rm_dir(dir);
}

struct sync_arg {
	struct spate_log *l;
	int rc;
	uint64_t durable;
};

static void *sync_thread(void *arg)
{
	struct sync_arg *a = arg;

	a->rc = spate_log_sync(a->l, &a->durable);
	return NULL;
}

Test(log, interval_durability_and_sync_from_another_thread, .timeout = 60)
{
	char *dir = make_dir();
	struct spate_log_params p = {.durability = SPATE_DURABILITY_INTERVAL, .interval_ns = 50000000};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	uint64_t b1[64], b2[64];
	size_t len = make_batch(b1, 0, batch_count(0), 10);
	cr_assert_eq(spate_log_append(l, b1, len), 0, "append");
	uint64_t durable = 99;
	cr_assert_eq(spate_log_sync(l, &durable), 0, "sync");
	cr_assert_eq(durable, 0, "not yet a commit (interval not elapsed)");
	struct timespec ts = {0, 60000000};
	nanosleep(&ts, NULL);
	/* The group commit, from a thread that did not open the log (a
	 * SINGLE_ISSUER ring is recreated for it). */
	len = make_batch(b2, batch_count(0), batch_count(batch_count(0)), 11);
	cr_assert_eq(spate_log_append(l, b2, len), 0, "append");
	struct sync_arg a = {l, -1, 0};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, sync_thread, &a), 0, "thread");
	pthread_join(t, NULL);
	cr_assert_eq(a.rc, 0, "sync from a thread: %d", a.rc);
	cr_assert_eq(a.durable, spate_log_next_seq(l), "committed after the interval");
	cr_assert_eq(spate_log_durable_seq(l), spate_log_next_seq(l), "durable_seq");
	uint64_t end = spate_log_next_seq(l);
	cr_assert_eq(spate_log_close(l), 0, "close");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, end);
	rm_dir(dir);
}

/* O_DIRECT: a write left in flight by one thread's sync is waited for by
 * the next sync from another thread (the SINGLE_ISSUER ring is recreated
 * only after it completed), while the first thread blocks in a join. */
Test(log, direct_write_in_flight_then_sync_from_another_thread, .timeout = 60)
{
	char *dir = make_dir();
	struct spate_log_params p = {.durability = SPATE_DURABILITY_NONE, .flags = SPATE_LOG_F_DIRECT};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	if (!rep.direct || !rep.io_uring) {
		spate_log_close(l);
		rm_dir(dir);
		cr_skip_test("needs O_DIRECT and io_uring here: %s", rep.message);
	}
	size_t bsz = SPATE_RING_BHDR_SIZE + 4u * 128u;
	const unsigned per = 3000;
	uint8_t *mem = malloc(per * bsz);
	cr_assert_not_null(mem, "malloc");
	for (int round = 0; round < 6; round++) {
		for (unsigned i = 0; i < per; i++) {
			uint64_t base = spate_log_next_seq(l);
			size_t len = make_batch(mem + i * bsz, base, batch_count(base), 1000 + base);
			cr_assert_eq(spate_log_append(l, mem + i * bsz, len), 0, "append");
		}
		cr_assert_eq(spate_log_sync(l, NULL), 0, "sync");
		uint64_t next = spate_log_next_seq(l);
		cr_assert_lt(spate_log_written_seq(l), next, "round %d: a write in flight", round);
		struct sync_arg a = {l, -1, 0};
		pthread_t t;
		cr_assert_eq(pthread_create(&t, NULL, sync_thread, &a), 0, "thread");
		pthread_join(t, NULL);
		cr_assert_eq(a.rc, 0, "sync from a thread: %d", a.rc);
		cr_assert_eq(spate_log_written_seq(l), next, "round %d: written after the other thread's sync",
			     round);
	}
	uint64_t end = spate_log_next_seq(l);
	cr_assert_eq(spate_log_close(l), 0, "close");
	free(mem);
	cr_assert_eq(read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, end), end, "every record");
	rm_dir(dir);
}

Test(log, short_and_stale_indexes_repaired, .timeout = 60)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 65536, .index_every = 1024};
	uint64_t end = fill(dir, &p, 800);
	char seg[512], idx[512];
	seg_path(dir, 0, seg, sizeof(seg));
	snprintf(idx, sizeof(idx), "%.*s.idx", (int)(strlen(seg) - 4), seg);
	uint64_t full = fsize(idx);
	cr_assert_gt(full, 24 * 10, "index has entries");
	/* Short: only the first entry and half of the second. */
	cr_assert_eq(truncate(idx, 36), 0, "truncate idx");
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	cr_assert_eq(rep.next_seq, end, "next_seq");
	cr_assert_eq(spate_log_close(l), 0, "close");
	cr_assert_eq(fsize(idx), full, "short index completed");
	read_all(dir, SPATE_LOG_FROM_SEQ, 500, 500, end);
	/* Stale: plausible entries (sorted, inside the file) pointing 8 bytes
	 * into frames. */
	uint64_t n = full / 24;
	uint64_t *orig = malloc(full), *bad = malloc(full);
	cr_assert(orig && bad, "malloc");
	int fd = open(idx, O_RDWR);
	cr_assert_geq(fd, 0, "open idx");
	cr_assert_eq(pread(fd, orig, full, 0), (ssize_t)full, "read idx");
	memcpy(bad, orig, full);
	for (uint64_t i = 1; i < n; i++)
		bad[i * 3 + 2] += 8;
	cr_assert_eq(pwrite(fd, bad, full, 0), (ssize_t)full, "write idx");
	close(fd);
	/* Readers verify an entry before trusting it. */
	read_all(dir, SPATE_LOG_FROM_SEQ, 300, 300, end);
	uint64_t b150 = 0;
	for (int i = 0; i < 150; i++)
		b150 += batch_count(b150);
	read_all(dir, SPATE_LOG_FROM_TIME, 1000 + 150, b150, end);
	/* The writer's open finds the last entry wrong and rebuilds. */
	l = open_log(dir, &p, &rep);
	cr_assert_eq(rep.next_seq, end, "next_seq");
	cr_assert_eq(spate_log_close(l), 0, "close");
	fd = open(idx, O_RDONLY);
	cr_assert_geq(fd, 0, "open idx");
	cr_assert_eq(pread(fd, bad, full, 0), (ssize_t)full, "read idx");
	close(fd);
	cr_assert_eq(memcmp(orig, bad, full), 0, "index rebuilt as it was");
	free(orig);
	free(bad);
	rm_dir(dir);
}

/* ------------------------------------------------------------------------ */
/* Seeks                                                                    */
/* ------------------------------------------------------------------------ */

Test(log, seek_by_seq_and_time, .timeout = 120)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 16384, .index_every = 1024};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	/* Batch i has ts 1000 + 10 i. */
	uint64_t end = write_batches(l, 600, 1000, 10, 16);
	cr_assert_eq(spate_log_close(l), 0, "close");

	struct spate_log_stats st;
	cr_assert_eq(spate_log_stat(dir, &st), 0, "stat");
	cr_assert_gt(st.segments, 4, "several segments (%u)", st.segments);
	cr_assert_eq(st.next_seq, end, "stat next");

	/* Batch bases, to know the answers. */
	uint64_t bases[600];
	uint64_t s = 0;
	for (int i = 0; i < 600; i++) {
		bases[i] = s;
		s += batch_count(s);
	}
	for (uint64_t arg = 0; arg < end + 3; arg += 37)
		read_all(dir, SPATE_LOG_FROM_SEQ, arg, arg < end ? arg : end, end);
	read_all(dir, SPATE_LOG_FROM_SEQ, end - 1, end - 1, end);
	for (int i = 0; i < 600; i += 23) {
		/* Exactly a batch's ts, and just after the previous one's. */
		read_all(dir, SPATE_LOG_FROM_TIME, 1000 + 10u * (uint64_t)i, bases[i], end);
		read_all(dir, SPATE_LOG_FROM_TIME, 1000 + 10u * (uint64_t)i - 5, bases[i], end);
	}
	read_all(dir, SPATE_LOG_FROM_TIME, 0, 0, end);
	read_all(dir, SPATE_LOG_FROM_TIME, 1000000, end, end);

	/* Seeks still work with the indexes gone (rebuilt at open by the
	 * writer; readers scan without them). */
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -f %s/*.idx", dir);
	cr_assert_eq(system(cmd), 0, "rm idx");
	read_all(dir, SPATE_LOG_FROM_SEQ, 1234, 1234, end);
	read_all(dir, SPATE_LOG_FROM_TIME, 1000 + 10 * 300, bases[300], end);
	l = open_log(dir, &p, &rep);
	cr_assert_eq(rep.next_seq, end, "next_seq after index loss");
	cr_assert_eq(spate_log_close(l), 0, "close");
	snprintf(cmd, sizeof(cmd), "ls %s/*.idx | wc -l", dir);
	FILE *f = popen(cmd, "r");
	unsigned nidx = 0;
	cr_assert_eq(fscanf(f, "%u", &nidx), 1, "count idx");
	pclose(f);
	cr_assert_eq(nidx, st.segments, "indexes rebuilt");
	read_all(dir, SPATE_LOG_FROM_SEQ, 777, 777, end);
	rm_dir(dir);
}

/* ------------------------------------------------------------------------ */
/* Retention                                                                */
/* ------------------------------------------------------------------------ */

Test(log, retention_by_bytes_moves_reader, .timeout = 60)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 16384, .retention_bytes = 65536};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	uint64_t end = write_batches(l, 100, 1000, 1, 10);

	struct spate_log_reader *rd = NULL;
	cr_assert_eq(spate_log_reader_open(dir, SPATE_LOG_FROM_OLDEST, 0, &rd), 0, "reader");
	struct spate_ring_rec recs[4];
	uint64_t skipped = 0;
	int got = spate_log_read(rd, recs, 4, &skipped);
	cr_assert_gt(got, 0, "read");
	check_rec(&recs[0], 0);
	uint64_t next = recs[got - 1].seq + 1;

	/* Much more: the reader's segment and many after it go. */
	end = write_batches(l, 1500, 2000, 1, 10);
	struct spate_log_stats st;
	cr_assert_eq(spate_log_stat(dir, &st), 0, "stat");
	cr_assert_leq(st.bytes, 65536 + 16384, "retention bytes kept (%" PRIu64 ")", st.bytes);
	cr_assert_gt(st.first_seq, next, "old segments deleted");
	cr_assert_eq(spate_log_first_seq(l), st.first_seq, "first_seq");

	/* Nothing new: the writes still in flight complete. */
	cr_assert_eq(spate_log_sync(l, NULL), 0, "sync");
	uint64_t total_skipped = tl_log_read_gaps(rd, &next, 4, check_rec);
	cr_assert_gt(total_skipped, 0, "gap reported");
	cr_assert_eq(next, end, "read to the end");
	spate_log_reader_close(rd);
	cr_assert_eq(spate_log_close(l), 0, "close");
	rm_dir(dir);
}

Test(log, retention_by_age, .timeout = 60)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 16384};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	uint64_t now = spate_now_ns();
	/* An hour old, written without retention; then fresh, with it. */
	uint64_t mid = write_batches(l, 300, now - 3600ull * 1000000000ull, 1, 10);
	cr_assert_eq(spate_log_close(l), 0, "close");
	struct spate_log_stats st;
	cr_assert_eq(spate_log_stat(dir, &st), 0, "stat");
	uint32_t before = st.segments;
	cr_assert_gt(before, 2, "several old segments");
	p.retention_ns = 600ull * 1000000000ull;
	l = open_log(dir, &p, &rep);
	uint64_t end = write_batches(l, 300, now, 1, 10);
	cr_assert_eq(spate_log_stat(dir, &st), 0, "stat");
	cr_assert_geq(st.first_seq, mid - 400, "old segments deleted (first %" PRIu64 ")", st.first_seq);
	cr_assert_leq(st.first_seq, mid, "fresh data kept");
	cr_assert_eq(spate_log_close(l), 0, "close");
	read_all(dir, SPATE_LOG_FROM_SEQ, st.first_seq, st.first_seq, end);
	rm_dir(dir);
}

/* ------------------------------------------------------------------------ */
/* Recovery                                                                 */
/* ------------------------------------------------------------------------ */

/* A log of @p nb batches, closed; @return next_seq. */
static uint64_t fill(const char *dir, const struct spate_log_params *p, unsigned nb)
{
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, p, &rep);
	uint64_t end = write_batches(l, nb, 1000, 1, 8);

	cr_assert_eq(spate_log_close(l), 0, "close");
	return end;
}

static uint64_t last_batch_base(uint64_t end)
{
	uint64_t s = 0, last = 0;

	while (s < end) {
		last = s;
		s += batch_count(s);
	}
	return last;
}

Test(log, torn_tail_is_cut, .timeout = 60)
{
	char *dir = make_dir();
	uint64_t end = fill(dir, NULL, 100);
	char seg[512];
	seg_path(dir, -1, seg, sizeof(seg));
	uint64_t sz = fsize(seg);
	cr_assert_eq(truncate(seg, (off_t)(sz - 11)), 0, "truncate");
	remove_clean(dir);

	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, NULL, &rep);
	cr_log_info("recovery: %s", rep.message);
	uint64_t lb = last_batch_base(end);
	cr_assert_eq(rep.next_seq, lb, "next_seq %" PRIu64 " want %" PRIu64, rep.next_seq, lb);
	cr_assert_eq(rep.clean, 0, "not clean");
	cr_assert_gt(rep.truncated_bytes, 0, "cut reported");
	cr_assert_eq(rep.truncated_at + rep.truncated_bytes, sz - 11, "cut offset");
	cr_assert(strstr(rep.message, "cut") != NULL, "message: %s", rep.message);
	/* Writing continues. */
	uint64_t e2 = write_batches(l, 10, 5000, 1, 10);
	cr_assert_eq(spate_log_close(l), 0, "close");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, e2);
	rm_dir(dir);
}

Test(log, flipped_last_frame_is_cut, .timeout = 60)
{
	char *dir = make_dir();
	uint64_t end = fill(dir, NULL, 100);
	char seg[512];
	seg_path(dir, -1, seg, sizeof(seg));
	uint64_t sz = fsize(seg);
	flip_byte(seg, sz - 3);
	remove_clean(dir);

	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, NULL, &rep);
	cr_log_info("recovery: %s", rep.message);
	cr_assert_eq(rep.next_seq, last_batch_base(end), "next_seq");
	cr_assert(strstr(rep.message, "CRC") != NULL, "message: %s", rep.message);
	cr_assert_eq(spate_log_close(l), 0, "close");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, last_batch_base(end));
	rm_dir(dir);
}

Test(log, mid_segment_corruption_refused_unless_repair, .timeout = 60)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 16384};
	uint64_t end = fill(dir, &p, 400);
	char seg[512];
	seg_path(dir, 0, seg, sizeof(seg));
	flip_byte(seg, 4096 + 5000);
	remove_clean(dir);

	struct spate_log *l = NULL;
	struct spate_log_recovery rep;
	int rc = spate_log_open(dir, &p, &l, &rep);
	/* The first segment's tail past its last index entry is checked; a
	 * flip before it is found by readers (CRC) and by a full scan. With
	 * index_every at 64 KiB, the whole 16 KiB segment is checked. */
	cr_assert_eq(rc, -EBADMSG, "refused: %d (%s)", rc, rep.message);
	cr_assert(strstr(rep.message, "00000000000000000000.seg") != NULL, "message names the file: %s",
		  rep.message);
	cr_log_info("refusal: %s", rep.message);

	p.flags = SPATE_LOG_F_REPAIR;
	l = open_log(dir, &p, &rep);
	cr_log_info("repair: %s", rep.message);
	cr_assert(strstr(rep.message, "repair") != NULL, "repair reported: %s", rep.message);
	cr_assert_eq(rep.segments, 1, "later segments dropped");
	uint64_t cut = rep.next_seq;
	cr_assert_lt(cut, end, "cut");
	uint64_t e2 = write_batches(l, 5, 9000, 1, 5);
	cr_assert_eq(spate_log_close(l), 0, "close");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, e2);

	/* Corruption in the last segment followed by valid frames: refused. */
	char *d2 = make_dir();
	end = fill(d2, NULL, 200);
	seg_path(d2, -1, seg, sizeof(seg));
	flip_byte(seg, 4096 + 200);
	remove_clean(d2);
	p.flags = 0;
	rc = spate_log_open(d2, &p, &l, &rep);
	cr_assert_eq(rc, -EBADMSG, "mid last segment refused: %d (%s)", rc, rep.message);
	rm_dir(d2);
	rm_dir(dir);
}

Test(log, missing_segment_is_a_gap, .timeout = 60)
{
	char *dir = make_dir();
	struct spate_log_params p = {.segment_bytes = 16384};
	uint64_t end = fill(dir, &p, 400);
	char seg[512];
	seg_path(dir, 2, seg, sizeof(seg));
	cr_assert_eq(unlink(seg), 0, "unlink a middle segment");
	struct spate_log *l = NULL;
	struct spate_log_recovery rep;
	int rc = spate_log_open(dir, &p, &l, &rep);
	cr_assert_eq(rc, -EBADMSG, "gap refused: %d (%s)", rc, rep.message);
	cr_assert(strstr(rep.message, "gap") != NULL, "message: %s", rep.message);
	p.flags = SPATE_LOG_F_REPAIR;
	l = open_log(dir, &p, &rep);
	cr_log_info("gap repair: %s", rep.message);
	cr_assert_eq(rep.segments, 2, "segments after the gap dropped (%u)", rep.segments);
	cr_assert_lt(rep.next_seq, end, "cut at the gap");
	uint64_t e2 = write_batches(l, 30, 9000, 1, 10);
	cr_assert_eq(spate_log_close(l), 0, "close");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, e2);
	rm_dir(dir);
}

Test(log, clean_marker_skips_scan, .timeout = 60)
{
	char *dir = make_dir();
	uint64_t end = fill(dir, NULL, 50);
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, NULL, &rep);
	cr_assert_eq(rep.clean, 1, "clean after close");
	cr_assert_eq(rep.next_seq, end, "next_seq");
	cr_assert_eq(spate_log_close(l), 0, "close");

	/* A crash (no close) leaves no marker: the next open scans. */
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork");
	if (pid == 0) {
		struct spate_log_recovery r2;
		struct spate_log *l2 = NULL;
		if (spate_log_open(dir, NULL, &l2, &r2) != 0 || !r2.clean)
			_exit(2);
		uint64_t b[64];
		size_t len = make_batch(b, end, batch_count(end), 7000);
		if (spate_log_append(l2, b, len) != 0 || spate_log_sync(l2, NULL) != 0)
			_exit(3);
		_exit(0); /* no close */
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid, "waitpid");
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %d", status);
	l = open_log(dir, NULL, &rep);
	cr_assert_eq(rep.clean, 0, "not clean after a crash");
	cr_assert_eq(rep.next_seq, end + batch_count(end), "child's batch recovered");
	cr_assert_eq(spate_log_close(l), 0, "close");
	/* A stale marker (wrong next_seq) is not trusted. */
	char p[512];
	snprintf(p, sizeof(p), "%s/CLEAN", dir);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f, "marker");
	fprintf(f, "spate-log clean v1 next_seq=3\n");
	fclose(f);
	l = open_log(dir, NULL, &rep);
	cr_assert_eq(rep.clean, 0, "stale marker not trusted");
	cr_assert_eq(rep.next_seq, end + batch_count(end), "next_seq");
	cr_assert_eq(spate_log_close(l), 0, "close");
	rm_dir(dir);
}

/* ------------------------------------------------------------------------ */
/* O_DIRECT: zero padding after the last frame                              */
/* ------------------------------------------------------------------------ */

/*
 * A child writes @p nb batches with O_DIRECT (durability NONE), syncs and
 * dies without closing, leaving the zero-padded last block on disk.
 * @return its next_seq; *align gets the O_DIRECT alignment. Skips the test
 * when /tmp has no O_DIRECT.
 */
static uint64_t direct_crash(const char *dir, unsigned nb, uint32_t *align)
{
	int pfd[2];

	cr_assert_eq(pipe(pfd), 0, "pipe");
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork");
	if (pid == 0) {
		struct spate_log_params p = {.flags = SPATE_LOG_F_DIRECT};
		struct spate_log_recovery r;
		struct spate_log *l = NULL;
		size_t bsz = SPATE_RING_BHDR_SIZE + 4u * 128u;
		uint8_t *mem = malloc(nb * bsz);
		close(pfd[0]);
		if (!mem || spate_log_open(dir, &p, &l, &r) != 0)
			_exit(2);
		if (!r.direct)
			_exit(77);
		for (unsigned i = 0; i < nb; i++) {
			uint64_t base = spate_log_next_seq(l);
			size_t len = make_batch(mem + i * bsz, base, batch_count(base), 1000 + i);
			if (spate_log_append(l, mem + i * bsz, len) != 0)
				_exit(3);
			if (i % 5 == 4 && spate_log_sync(l, NULL) != 0)
				_exit(4);
		}
		/* Twice: the second (nothing appended) waits for the write the
		 * first left in flight, which could otherwise land after the
		 * caller's own writes to the file (seen: 1 run in ~20). */
		if (spate_log_sync(l, NULL) != 0 || spate_log_sync(l, NULL) != 0)
			_exit(4);
		uint64_t out[2] = {spate_log_next_seq(l), r.dio_align};
		if (write(pfd[1], out, sizeof(out)) != (ssize_t)sizeof(out))
			_exit(5);
		_exit(0); /* no close: the padding stays */
	}
	close(pfd[1]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid, "waitpid");
	cr_assert(WIFEXITED(status), "child: %d", status);
	if (WEXITSTATUS(status) == 77)
		cr_skip_test("no O_DIRECT on /tmp here");
	cr_assert_eq(WEXITSTATUS(status), 0, "child exit %d", WEXITSTATUS(status));
	uint64_t in[2];
	cr_assert_eq(read(pfd[0], in, sizeof(in)), (ssize_t)sizeof(in), "child's next_seq");
	close(pfd[0]);
	*align = (uint32_t)in[1];
	return in[0];
}

Test(log, direct_padding_is_the_end_not_a_tear, .timeout = 60)
{
	char *dir = make_dir();
	uint32_t align;
	uint64_t next = direct_crash(dir, 37, &align);
	char seg[512];
	seg_path(dir, -1, seg, sizeof(seg));
	uint64_t logical = seg_bytes(0, next), sz = fsize(seg);
	cr_assert_neq(logical % align, 0, "test setup: the log must end mid-block");
	/* Padded to the alignment, and preallocated further (zeros). */
	cr_assert_geq(sz, (logical + align - 1) / align * align,
		      "O_DIRECT file %" PRIu64 " bytes: frames end at %" PRIu64 ", padded to %u", sz, logical,
		      align);
	/* A reader on the crashed log stops at the padding, no error. */
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, next);

	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, NULL, &rep);
	cr_log_info("recovery: %s", rep.message);
	cr_assert_eq(rep.clean, 0, "no marker: scanned");
	cr_assert_eq(rep.next_seq, next, "next_seq %" PRIu64 " want %" PRIu64, rep.next_seq, next);
	cr_assert_eq(rep.truncated_bytes, 0, "padding is not a cut");
	cr_assert(strstr(rep.message, "cut") == NULL, "nothing reported cut: %s", rep.message);
	/* Padding dropped at open, then preallocated again (zeros). */
	cr_assert_geq(fsize(seg), logical, "file at least its frames");
	cr_assert_eq(spate_log_stat(dir, &(struct spate_log_stats){0}), 0, "stat");
	/* The next write rewrites the partial last block (read back at open). */
	uint64_t end = write_batches(l, 23, 5000, 1, 4);
	cr_assert_eq(spate_log_close(l), 0, "close");
	cr_assert_eq(fsize(seg), seg_bytes(0, end), "closed segment exact");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, end);
	rm_dir(dir);
}

Test(log, direct_torn_frame_before_padding_is_cut, .timeout = 60)
{
	char *dir = make_dir();
	uint32_t align;
	uint64_t next = direct_crash(dir, 41, &align);
	char seg[512];
	seg_path(dir, -1, seg, sizeof(seg));
	uint64_t logical = seg_bytes(0, next), sz = fsize(seg);
	uint64_t lb = last_batch_base(next);
	/* The last frame's last 24 bytes never reached the disk: zeros, then
	 * the padding. */
	int fd = open(seg, O_RDWR);
	cr_assert_geq(fd, 0, "open");
	static const uint8_t zeros[24];
	cr_assert_eq(pwrite(fd, zeros, sizeof(zeros), (off_t)(logical - sizeof(zeros))), (ssize_t)sizeof(zeros),
		     "pwrite");
	close(fd);

	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, NULL, &rep);
	cr_log_info("recovery: %s", rep.message);
	cr_assert_eq(rep.next_seq, lb, "next_seq %" PRIu64 " want %" PRIu64, rep.next_seq, lb);
	cr_assert_eq(rep.truncated_at, seg_bytes(0, lb), "cut at the last frame");
	cr_assert_eq(rep.truncated_bytes, sz - seg_bytes(0, lb), "cut to the end of the file");
	cr_assert(strstr(rep.message, "cut") != NULL, "reported: %s", rep.message);
	uint64_t end = write_batches(l, 9, 5000, 1, 9);
	cr_assert_eq(spate_log_close(l), 0, "close");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, end);
	rm_dir(dir);
}

Test(log, zero_tail_padding_bound, .timeout = 60)
{
	/* Zeros after the last frame, however many: the O_DIRECT padding or
	 * the preallocated tail of the active segment, the end; not a torn
	 * tail. Recovery cuts them unreported, the writer preallocates again,
	 * close leaves the file at its frames. */
	static const uint64_t extra[] = {8, 4095, 4096, 9000, 70u << 20};
	for (unsigned t = 0; t < 5; t++) {
		char *dir = make_dir();
		uint64_t end = fill(dir, NULL, 30);
		char seg[512];
		seg_path(dir, -1, seg, sizeof(seg));
		uint64_t sz = fsize(seg);
		cr_assert_eq(truncate(seg, (off_t)(sz + extra[t])), 0, "extend with zeros");
		remove_clean(dir);
		struct spate_log_recovery rep;
		struct spate_log *l = open_log(dir, NULL, &rep);
		cr_assert_eq(rep.next_seq, end, "%" PRIu64 " zeros: next_seq", extra[t]);
		cr_assert_eq(rep.truncated_bytes, 0, "%" PRIu64 " zeros: the end (%s)", extra[t], rep.message);
		read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, end);
		cr_assert_eq(spate_log_close(l), 0, "close");
		cr_assert_eq(fsize(seg), sz, "%" PRIu64 " zeros: file back to its frames", extra[t]);
		rm_dir(dir);
	}
}

/*
 * Where the frames of segment file @p path end (walking frame headers from
 * the segment header: the recovered log is a prefix of valid frames), and
 * whether any 8-aligned position after that holds the frame magic: after a
 * recovery nothing that looks like a frame may follow the end (a gap then
 * frames of writes in flight must have been cut). @return the end offset.
 */
static uint64_t frames_end_nothing_after(const char *path, const char *what)
{
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s", path);
	uint64_t sz = fsize(path), off = 4096;
	uint32_t h[4];
	while (off + 16 <= sz && pread(fd, h, 16, (off_t)off) == 16 && h[0] == SPATE_LOG_FRAME_MAGIC)
		off += 16 + h[1];
	static uint8_t b[1 << 16];
	for (uint64_t o = off & ~(uint64_t)7; o < sz;) {
		ssize_t n = pread(fd, b, sizeof(b), (off_t)o);
		cr_assert_gt(n, 0, "read %s", path);
		for (ssize_t k = 0; k + 4 <= n; k += 8) {
			uint32_t m;
			memcpy(&m, b + k, 4);
			cr_assert(m != SPATE_LOG_FRAME_MAGIC || o + (uint64_t)k < off,
				  "%s: a frame header at %" PRIu64 " after the end of the frames (%" PRIu64 ")", what,
				  o + (uint64_t)k, off);
		}
		o += (uint64_t)n & ~(uint64_t)7;
	}
	close(fd);
	return off;
}

/*
 * SIGKILL with several writes in flight, durability NONE, INTERVAL and
 * ALWAYS, O_DIRECT and the page cache (direct_io on and off) in turn,
 * ~2 MiB a sync (two to three staging buffers, several writes in flight):
 * every restart must recover without refusing (a gap followed by frames of
 * writes in flight is cut), keep everything the child was told was written
 * (and durable), re-read every record once, and leave nothing that looks
 * like a frame after the end of the recovered frames.
 */
static void group_child(const char *dir, int wfd, enum spate_durability d, uint32_t flags)
{
	struct spate_log_params p = {.durability = d, .interval_ns = 2000000, .segment_bytes = 16u << 20,
				     .flags = flags};
	struct spate_log_recovery rep;
	struct spate_log *l = NULL;
	const unsigned per = 4000; /* ~2 MiB a sync: 3 staging buffers */
	size_t bsz = SPATE_RING_BHDR_SIZE + 4u * 128u;
	uint8_t *mem = malloc(per * bsz);

	if (!mem || spate_log_open(dir, &p, &l, &rep) != 0)
		_exit(2);
	if ((flags & SPATE_LOG_F_DIRECT) && !rep.direct)
		_exit(77);
	for (;;) {
		for (unsigned i = 0; i < per; i++) {
			uint64_t base = spate_log_next_seq(l);
			size_t len = make_batch(mem + i * bsz, base, batch_count(base), spate_now_ns());
			if (spate_log_append(l, mem + i * bsz, len) != 0)
				_exit(3);
		}
		uint64_t durable = 0;
		if (spate_log_sync(l, &durable) != 0)
			_exit(4);
		/* Written (not only staged) survives the death of the process:
		 * report that, and the parent checks it is all there. */
		uint64_t w = spate_log_written_seq(l);
		if (w < durable || w > spate_log_next_seq(l) || (d == SPATE_DURABILITY_ALWAYS && durable != w))
			_exit(6);
		if (write(wfd, &w, sizeof(w)) != (ssize_t)sizeof(w))
			_exit(5);
	}
}

static void crash_in_flight(uint32_t flags, const char *mode)
{
	char *dir = NULL;
	unsigned seed = (unsigned)spate_now_ns();
	uint64_t max_written = 0, total = 0;
	unsigned torn = 0;

	cr_log_info("%s: seed %u", mode, seed);
	srand(seed);
	for (int round = 0; round < 21; round++) {
		if (round % 7 == 0) {
			/* A fresh log every 7 rounds keeps the re-reads short. */
			if (dir)
				rm_dir(dir);
			dir = make_dir();
			max_written = 0;
		}
		static const enum spate_durability pol[] = {SPATE_DURABILITY_NONE, SPATE_DURABILITY_INTERVAL,
							     SPATE_DURABILITY_ALWAYS};
		int pfd[2];
		cr_assert_eq(pipe(pfd), 0, "pipe");
		pid_t pid = fork();
		cr_assert_geq(pid, 0, "fork");
		if (pid == 0) {
			close(pfd[0]);
			group_child(dir, pfd[1], pol[round % 3], flags);
		}
		close(pfd[1]);
		struct timespec ts = {0, (long)(10 + rand() % 40) * 1000000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid, "waitpid");
		if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
			rm_dir(dir);
			cr_skip_test("no O_DIRECT on /tmp here");
		}
		cr_assert(WIFSIGNALED(status), "child killed, not exited (%d)", status);
		uint64_t d;
		while (read(pfd[0], &d, sizeof(d)) == (ssize_t)sizeof(d))
			if (d > max_written)
				max_written = d;
		close(pfd[0]);

		struct spate_log_recovery rep;
		struct spate_log *l = NULL;
		int rc = spate_log_open(dir, NULL, &l, &rep);
		cr_assert_eq(rc, 0, "%s round %d: open after SIGKILL: %d (%s)", mode, round, rc, rep.message);
		cr_assert_geq(rep.next_seq, max_written, "%s round %d: written %" PRIu64 " lost (next %" PRIu64 ")",
			      mode, round, max_written, rep.next_seq);
		if (strstr(rep.message, "writes in flight"))
			torn++;
		if (rep.segments) {
			char seg[512];
			seg_path(dir, -1, seg, sizeof(seg));
			frames_end_nothing_after(seg, mode);
		}
		uint64_t next = rep.next_seq;
		cr_assert_eq(spate_log_close(l), 0, "close");
		cr_assert_eq(read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, next), next, "every record once");
		total += next;
	}
	cr_log_info("%s: 21 rounds, %" PRIu64 " records re-read in all, %u gap(s) of writes in flight cut", mode,
		    total, torn);
	rm_dir(dir);
}

Test(log, direct_crash_with_writes_in_flight, .timeout = 300)
{
	crash_in_flight(SPATE_LOG_F_DIRECT, "O_DIRECT");
}

Test(log, buffered_crash_with_writes_in_flight, .timeout = 300)
{
	crash_in_flight(SPATE_LOG_F_BUFFERED, "page cache");
}

/*
 * The gap a crash with writes in flight leaves, made by hand: frames, then
 * zeros where an earlier write did not land, then frames of a later write
 * that did (within the in-flight window): recovery cuts at the gap, says
 * so, keeps everything before it, and leaves nothing after. The same gap
 * with a frame beyond the window (16 MiB on), or with bytes that are not
 * zeros (bit rot), is damage: refused.
 */
static void make_gap(const char *dir, uint64_t *gap_seq, uint64_t *gap_off, uint64_t *end)
{
	/* Buffered writer: the file is exactly its frames. */
	struct spate_log_params p = {.segment_bytes = 64u << 20, .flags = SPATE_LOG_F_BUFFERED};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	*end = write_batches(l, 3000, 1000, 1, 100);
	cr_assert_eq(spate_log_close(l), 0, "close");
	remove_clean(dir);
	/* The gap: from the frame of batch 2000 on, 8 KiB of zeros. */
	uint64_t seq = 0;
	for (unsigned b = 0; b < 2000; b++)
		seq += batch_count(seq);
	*gap_seq = seq;
	*gap_off = seg_bytes(0, seq);
	char seg[512];
	seg_path(dir, -1, seg, sizeof(seg));
	int fd = open(seg, O_RDWR);
	static const uint8_t zero[8192];
	cr_assert_eq(pwrite(fd, zero, sizeof(zero), (off_t)*gap_off), (ssize_t)sizeof(zero), "gap");
	close(fd);
}

Test(log, gap_of_writes_in_flight_is_cut, .timeout = 60)
{
	char *dir = make_dir();
	uint64_t gap_seq, gap_off, end;
	make_gap(dir, &gap_seq, &gap_off, &end);
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, NULL, &rep);
	cr_log_info("recovery: %s", rep.message);
	cr_assert_eq(rep.next_seq, gap_seq, "cut at the gap: next %" PRIu64 " want %" PRIu64, rep.next_seq, gap_seq);
	cr_assert_eq(rep.truncated_at, gap_off, "at the gap's offset");
	cr_assert(strstr(rep.message, "writes in flight") != NULL, "said: %s", rep.message);
	char seg[512];
	seg_path(dir, -1, seg, sizeof(seg));
	cr_assert_eq(frames_end_nothing_after(seg, "gap"), gap_off, "frames end at the gap");
	/* The writer goes on from the gap. */
	uint64_t e2 = write_batches(l, 50, 9000, 1, 10);
	cr_assert_eq(spate_log_close(l), 0, "close");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, e2);
	cr_assert_lt(gap_seq, end, "test setup");
	rm_dir(dir);
}

Test(log, gap_not_of_writes_in_flight_is_refused, .timeout = 60)
{
	for (int t = 0; t < 2; t++) {
		char *dir = make_dir();
		uint64_t gap_seq, gap_off, end;
		make_gap(dir, &gap_seq, &gap_off, &end);
		char seg[512];
		seg_path(dir, -1, seg, sizeof(seg));
		if (t == 0) {
			/* A valid frame beyond the window: copy the last frame
			 * 16 MiB after the gap (zeros between). */
			uint64_t lb = 0;
			while (lb + batch_count(lb) < end)
				lb += batch_count(lb);
			uint64_t sz = fsize(seg), last = seg_bytes(0, lb);
			int fd = open(seg, O_RDWR);
			static uint8_t b[1 << 16];
			cr_assert_lt(sz - last, sizeof(b), "test setup");
			cr_assert_eq(pread(fd, b, sz - last, (off_t)last), (ssize_t)(sz - last), "read");
			cr_assert_eq(pwrite(fd, b, sz - last, (off_t)(gap_off + (16u << 20) + 8)), (ssize_t)(sz - last),
				     "write");
			close(fd);
		} else {
			/* Bytes that are not zeros: bit rot, not a write that
			 * did not land. */
			int fd = open(seg, O_RDWR);
			static uint8_t junk[8192];
			memset(junk, 0x6b, sizeof(junk));
			cr_assert_eq(pwrite(fd, junk, sizeof(junk), (off_t)gap_off), (ssize_t)sizeof(junk), "junk");
			close(fd);
		}
		struct spate_log_recovery rep;
		struct spate_log *l = NULL;
		int rc = spate_log_open(dir, NULL, &l, &rep);
		cr_assert_eq(rc, -EBADMSG, "case %d: refused as damage: %d (%s)", t, rc, rep.message);
		rm_dir(dir);
	}
}

/* ------------------------------------------------------------------------ */
/* Disk full                                                                */
/* ------------------------------------------------------------------------ */

/*
 * A small file system at @p mnt: a 2 MiB tmpfs (no O_DIRECT there), or a
 * 16 MiB ext4 image on a loop device (<mnt>.img). Skips the test when it
 * cannot be made.
 */
static void mount_small(char *mnt, int ext4)
{
	if (!ext4) {
		if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m") != 0) {
			int e = errno;
			rm_dir(mnt);
			cr_skip_test("cannot mount a 2 MiB tmpfs (%s): needs root / CAP_SYS_ADMIN", strerror(e));
		}
		return;
	}
	char cmd[1400];
	snprintf(cmd, sizeof(cmd),
		 "command -v mkfs.ext4 >/dev/null && truncate -s 16M '%s.img' && "
		 "mkfs.ext4 -q -F -O ^has_journal '%s.img' >/dev/null 2>&1 && "
		 "mount -o loop '%s.img' '%s' 2>/dev/null",
		 mnt, mnt, mnt, mnt);
	if (system(cmd) != 0) {
		snprintf(cmd, sizeof(cmd), "rm -f '%s.img'", mnt);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s.img\n", mnt);
		rm_dir(mnt);
		cr_skip_test("cannot make and loop-mount a 16 MiB ext4 image (needs root, mkfs.ext4, loop)");
	}
}

static void disk_full(uint32_t flags, int ext4, enum spate_durability dur)
{
	char *mnt = make_dir();
	mount_small(mnt, ext4);
	char dir[600], filler[600];
	snprintf(dir, sizeof(dir), "%s/log", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	/* Most of the space goes to a filler file: about 512 KiB stay free. */
	struct statvfs vfs;
	cr_assert_eq(statvfs(mnt, &vfs), 0, "statvfs");
	/* f_bfree: as root, ext4's reserved blocks are usable too. */
	uint64_t avail = (uint64_t)vfs.f_bfree * vfs.f_frsize;
	int ffd = open(filler, O_WRONLY | O_CREAT, 0644);
	cr_assert_geq(ffd, 0, "filler");
	static uint8_t junk[65536];
	for (uint64_t i = 0; i + (512u << 10) < avail; i += sizeof(junk))
		cr_assert_eq(write(ffd, junk, sizeof(junk)), (ssize_t)sizeof(junk), "filler write");
	close(ffd);

	/* Durability none: one segment, so the full disk hits a data write
	 * (in flight), not a segment creation. */
	struct spate_log_params p = {.segment_bytes = dur == SPATE_DURABILITY_NONE ? 8u << 20 : 256 * 1024,
				     .durability = dur, .flags = flags};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	cr_log_info("%s: %s", ext4 ? "ext4" : "tmpfs", rep.message);
	uint64_t max_written = 0;
	if (!ext4 && !(flags & SPATE_LOG_F_BUFFERED)) {
		/* tmpfs reports no O_DIRECT alignment: buffered, and said. */
		cr_assert_eq(rep.direct, 0, "no O_DIRECT on tmpfs");
		cr_assert(strstr(rep.message, "page cache") != NULL, "fallback said: %s", rep.message);
	}
	if (ext4 && (flags & SPATE_LOG_F_DIRECT))
		cr_assert_eq(rep.direct, 1, "O_DIRECT on ext4: %s", rep.message);
	size_t bsz = SPATE_RING_BHDR_SIZE + 4u * 128u;
	size_t nmax = 4096;
	uint8_t *mem = malloc(nmax * bsz);
	cr_assert_not_null(mem, "malloc");
	int rc = 0;
	size_t i;
	uint64_t durable = 0;
	for (i = 0; i < nmax; i++) {
		uint64_t base = spate_log_next_seq(l);
		size_t len = make_batch(mem + i * bsz, base, batch_count(base), 1000 + i);
		cr_assert_eq(spate_log_append(l, mem + i * bsz, len), 0, "append");
		if (i % 8 == 7) {
			rc = spate_log_sync(l, &durable);
			if (rc < 0)
				break;
			cr_assert_geq(spate_log_written_seq(l), max_written, "written never goes back");
			max_written = spate_log_written_seq(l);
			/* The batches are staged (O_DIRECT) or written: the
			 * caller's memory may be reused at once. */
			memset(mem + (i - 7) * bsz, 0xa5, 8 * bsz);
		}
	}
	if (rc == 0) {
		/* Writes may still be in flight (several, with a partial
		 * buffer held back): a sync with nothing new waits for them
		 * and reports their failure. */
		rc = spate_log_sync(l, &durable);
	}
	cr_assert_eq(rc, -ENOSPC, "sync reports a full disk: %d", rc);
	cr_assert_geq(spate_log_durable_seq(l), durable, "durable not lost by the failure");
	cr_log_info("disk full after %zu batches, durable %" PRIu64, i, durable);
	/* The log on disk is valid: a reader sees exactly the written prefix. */
	struct spate_log_stats st;
	cr_assert_eq(spate_log_stat(dir, &st), 0, "stat");
	cr_assert_geq(st.next_seq, durable, "durable on disk");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, st.next_seq);
	cr_assert_geq(st.next_seq, max_written, "written on disk");
	cr_assert_eq(spate_log_sync(l, NULL), -ENOSPC, "still full");

	/* Space returns: the queued batches go out. */
	cr_assert_eq(unlink(filler), 0, "unlink filler");
	rc = spate_log_sync(l, &durable);
	cr_assert_eq(rc, 0, "sync after space returned: %d", rc);
	uint64_t end = spate_log_next_seq(l);
	if (dur == SPATE_DURABILITY_ALWAYS) {
		cr_assert_eq(durable, end, "all durable");
	} else {
		/* Nothing appended since: the sync waited for the last write. */
		cr_assert_eq(spate_log_sync(l, NULL), 0, "sync");
		cr_assert_eq(spate_log_written_seq(l), end, "all written");
		cr_assert_eq(spate_log_durable_seq(l), durable, "no fdatasync with durability none");
	}
	cr_assert_eq(spate_log_close(l), 0, "close");
	free(mem);

	l = open_log(dir, &p, &rep);
	cr_assert_eq(rep.next_seq, end, "reopened");
	end = write_batches(l, 20, 9000, 1, 5);
	cr_assert_eq(spate_log_close(l), 0, "close");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, end);

	/* An io_uring instance is torn down asynchronously after close: give
	 * it a moment to drop its last reference to the mount. */
	int urc = umount(mnt);
	for (int w = 0; w < 200 && urc != 0 && errno == EBUSY; w++) {
		struct timespec ts = {0, 10000000};
		nanosleep(&ts, NULL);
		urc = umount(mnt);
	}
	cr_assert_eq(urc, 0, "umount: %s", strerror(errno));
	if (ext4) {
		char img[700];
		snprintf(img, sizeof(img), "%s.img", mnt);
		unlink(img);
	}
	rm_dir(mnt);
}

Test(log, disk_full_then_resume_io_uring, .timeout = 120)
{
	disk_full(0, 0, SPATE_DURABILITY_ALWAYS);
}

Test(log, disk_full_then_resume_pwrite, .timeout = 120)
{
	disk_full(SPATE_LOG_F_NO_URING, 0, SPATE_DURABILITY_ALWAYS);
}

Test(log, disk_full_direct_ext4_io_uring, .timeout = 120)
{
	disk_full(SPATE_LOG_F_DIRECT, 1, SPATE_DURABILITY_ALWAYS);
}

Test(log, disk_full_direct_ext4_pwrite, .timeout = 120)
{
	disk_full(SPATE_LOG_F_DIRECT | SPATE_LOG_F_NO_URING, 1, SPATE_DURABILITY_ALWAYS);
}

/* Durability none: the write that hits the full disk is usually still in
 * flight when its sync returns; the next sync reports it, and nothing
 * staged is lost once space returns. */
Test(log, disk_full_direct_ext4_in_flight, .timeout = 120)
{
	disk_full(SPATE_LOG_F_DIRECT, 1, SPATE_DURABILITY_NONE);
}

Test(log, disk_full_direct_ext4_in_flight_pwrite, .timeout = 120)
{
	disk_full(SPATE_LOG_F_DIRECT | SPATE_LOG_F_NO_URING, 1, SPATE_DURABILITY_NONE);
}

/* ------------------------------------------------------------------------ */
/* Crash loop                                                               */
/* ------------------------------------------------------------------------ */

static void crash_child(const char *dir, int wfd, uint32_t flags)
{
	struct spate_log_params p = {.segment_bytes = 65536, .durability = SPATE_DURABILITY_ALWAYS,
				     .flags = flags};
	struct spate_log_recovery rep;
	struct spate_log *l = NULL;
	uint64_t buf[128];

	if (spate_log_open(dir, &p, &l, &rep) != 0)
		_exit(2);
	for (;;) {
		uint64_t base = spate_log_next_seq(l);
		size_t len = make_batch(buf, base, batch_count(base), spate_now_ns());
		if (spate_log_append(l, buf, len) != 0)
			_exit(3);
		uint64_t durable = 0;
		if (spate_log_sync(l, &durable) != 0)
			_exit(4);
		if (write(wfd, &durable, sizeof(durable)) != (ssize_t)sizeof(durable))
			_exit(5);
	}
}

Test(log, crash_loop, .timeout = 300)
{
	char *dir = make_dir();
	unsigned seed = (unsigned)spate_now_ns();
	uint64_t max_durable = 0;
	unsigned cut_rounds = 0;

	cr_log_info("crash loop seed %u", seed);
	srand(seed);
	for (int round = 0; round < 20; round++) {
		int pfd[2];
		cr_assert_eq(pipe(pfd), 0, "pipe");
		pid_t pid = fork();
		cr_assert_geq(pid, 0, "fork");
		if (pid == 0) {
			close(pfd[0]);
			/* Odd rounds without io_uring. */
			crash_child(dir, pfd[1], round % 2 ? SPATE_LOG_F_NO_URING : 0);
		}
		close(pfd[1]);
		struct timespec ts = {0, (long)(1 + rand() % 30) * 1000000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid, "waitpid");
		cr_assert(WIFSIGNALED(status), "child killed, not exited (%d)", status);
		uint64_t d;
		ssize_t r;
		while ((r = read(pfd[0], &d, sizeof(d))) == (ssize_t)sizeof(d))
			if (d > max_durable)
				max_durable = d;
		close(pfd[0]);

		struct spate_log_recovery rep;
		struct spate_log *l = open_log(dir, NULL, &rep);
		cr_assert_geq(rep.next_seq, max_durable,
			      "round %d: durable %" PRIu64 " lost (next %" PRIu64 ", %s)", round, max_durable,
			      rep.next_seq, rep.message);
		uint64_t next = rep.next_seq;
		if (rep.truncated_bytes)
			cut_rounds++;
		cr_assert_eq(spate_log_close(l), 0, "close");
		uint64_t n = read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, next);
		cr_assert_eq(n, next, "every record once, in order");
	}
	cr_log_info("crash loop: 20 rounds, %" PRIu64 " records durable, torn tail cut in %u rounds",
		    max_durable, cut_rounds);
	rm_dir(dir);
}

/* ------------------------------------------------------------------------ */
/* File modes                                                               */
/* ------------------------------------------------------------------------ */

static unsigned mode_of(const char *dir, const char *name)
{
	char p[600];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	cr_assert_eq(stat(p, &st), 0, "stat %s: %s", p, strerror(errno));
	return (unsigned)(st.st_mode & 07777);
}

/* Every file the log creates is 0640 in a 0750 directory (0660/0770 with
 * GROUP_WRITE), under a permissive and a strict umask alike. */
static void modes(mode_t um, uint32_t flags, unsigned fmode, unsigned dmode)
{
	char *top = make_dir(), dir[600], name[64];
	struct spate_log_params p = {.flags = flags};

	snprintf(dir, sizeof(dir), "%s/shard", top);
	mode_t old = umask(um);
	fill(dir, &p, 20);
	umask(old);
	cr_assert_eq(mode_of(top, "shard"), dmode, "directory mode %o", mode_of(top, "shard"));
	snprintf(name, sizeof(name), "%020d.seg", 0);
	cr_assert_eq(mode_of(dir, name), fmode, "segment mode %o", mode_of(dir, name));
	snprintf(name, sizeof(name), "%020d.idx", 0);
	cr_assert_eq(mode_of(dir, name), fmode, "index mode %o", mode_of(dir, name));
	cr_assert_eq(mode_of(dir, "CLEAN"), fmode, "marker mode %o", mode_of(dir, "CLEAN"));
	rm_dir(top);
}

Test(log, files_0640_in_0750_whatever_the_umask, .timeout = 30)
{
	modes(0, 0, 0640, 0750);
	modes(077, 0, 0640, 0750);
	modes(022, SPATE_LOG_F_GROUP_WRITE, 0660, 0770);
}

/* ------------------------------------------------------------------------ */
/* Damage: never an end, never retention; verify, repair                    */
/* ------------------------------------------------------------------------ */

/* Offsets of the frames of segment file @p path (at most @p max). */
static size_t frame_offsets(const char *path, uint64_t *off, size_t max)
{
	int fd = open(path, O_RDONLY);
	uint64_t o = 4096, sz = fsize(path);
	size_t n = 0;

	cr_assert_geq(fd, 0, "open %s", path);
	while (o + 16 <= sz && n < max) {
		uint32_t h[2];
		cr_assert_eq(pread(fd, h, sizeof(h), (off_t)o), (ssize_t)sizeof(h), "pread");
		if (h[0] != SPATE_LOG_FRAME_MAGIC)
			break;
		off[n++] = o;
		o += 16 + h[1];
	}
	close(fd);
	return n;
}

/* Read @p dir from the oldest record: every record checked, nothing
 * skipped; @return the read's final result (0 at the end, or an error),
 * *next the sequence after the last record read. */
static int read_until_error(const char *dir, uint32_t flags, uint64_t *next, uint64_t *skipped_total,
			    struct spate_log_damage *d)
{
	struct spate_log_reader *rd = NULL;
	struct spate_ring_rec recs[16];
	int rc = spate_log_reader_open_flags(dir, SPATE_LOG_FROM_OLDEST, 0, flags, &rd);

	cr_assert_eq(rc, 0, "reader_open: %d", rc);
	*next = 0;
	*skipped_total = 0;
	for (;;) {
		uint64_t skipped = 0;
		int got = spate_log_read(rd, recs, 16, &skipped);
		*skipped_total += skipped;
		*next += skipped;
		if (got <= 0) {
			if (got == -EBADMSG && d)
				cr_assert_eq(spate_log_reader_damage(rd, d), 1, "damage reported");
			spate_log_reader_close(rd);
			return got;
		}
		for (int i = 0; i < got; i++)
			check_rec(&recs[i], (*next)++);
	}
}

struct dmg_list {
	struct spate_log_damage d[16];
	unsigned n;
};

static void dmg_collect(const struct spate_log_damage *d, void *arg)
{
	struct dmg_list *l = arg;

	cr_log_info("damage: seg %" PRIu64 " off %" PRIu64 " seq %" PRIu64 " -> %" PRIu64 "/%" PRIu64 "/%" PRIu64
		    " repaired %d: %s",
		    d->segment, d->offset, d->seq, d->resume_segment, d->resume_offset, d->resume_seq,
		    d->repaired, d->why);
	if (l->n < 16)
		l->d[l->n++] = *d;
}

/* A log of several 16 KiB segments, closed; *seg0 = the first one's path. */
static uint64_t multi_seg(const char *dir, char *seg0, size_t sz)
{
	struct spate_log_params p = {.segment_bytes = 16384, .flags = SPATE_LOG_F_BUFFERED};
	uint64_t end = fill(dir, &p, 400);

	seg_path(dir, 0, seg0, sz);
	return end;
}

/* Damage in an older segment (here: a frame header zeroed, which a live
 * reader takes for "not written yet") stops readers and recovery at the
 * exact place, and is not retention; a repair lets both go on, saying so. */
static void older_segment_damage(int zero_header)
{
	char *dir = make_dir(), seg[512];
	uint64_t end = multi_seg(dir, seg, sizeof(seg)), offs[256];
	size_t nf = frame_offsets(seg, offs, 256);
	cr_assert_geq(nf, 6, "frames in segment 0: %zu", nf);
	uint64_t at = offs[nf / 2];
	if (zero_header) {
		uint8_t z[16] = {0};
		int fd = open(seg, O_RDWR);
		cr_assert_eq(pwrite(fd, z, 16, (off_t)at), 16, "zero a frame header");
		close(fd);
	} else {
		flip_byte(seg, at + 16 + 40);
	}
	/* The records before the damage, then -EBADMSG at it: nothing
	 * reported as skipped, with both reader modes. */
	uint32_t modes[] = {0, SPATE_LOG_RD_F_PREAD, SPATE_LOG_RD_F_PER_FRAME};
	uint64_t next = 0, skipped = 0;
	struct spate_log_damage d;
	for (unsigned m = 0; m < 3; m++) {
		int rc = read_until_error(dir, modes[m], &next, &skipped, &d);
		cr_assert_eq(rc, -EBADMSG, "mode %u: reader stops at the damage: %d (read to %" PRIu64 ")", m,
			     rc, next);
		cr_assert_eq(skipped, 0, "mode %u: damage is not retention (%" PRIu64 " skipped)", m, skipped);
		cr_assert_eq(d.segment, 0, "segment");
		cr_assert_eq(d.offset, at, "offset %" PRIu64 ", want %" PRIu64, d.offset, at);
		cr_assert_eq(d.seq, next, "expected seq %" PRIu64 ", want %" PRIu64, d.seq, next);
		cr_assert_neq(d.resume_segment, UINT64_MAX, "a resume point");
		cr_assert_gt(d.resume_seq, d.seq, "records lost");
	}
	/* Recovery refuses it (the damage is before the last index entry). */
	struct spate_log *l = NULL;
	struct spate_log_recovery rep;
	int rc = spate_log_open(dir, NULL, &l, &rep);
	cr_assert_eq(rc, -EBADMSG, "open refuses: %d (%s)", rc, rep.message);
	/* verify: exactly this range. */
	struct dmg_list dl = {0};
	struct spate_log_verify v;
	rc = spate_log_verify(dir, &v, dmg_collect, &dl);
	cr_assert_eq(rc, 1, "one damaged range: %d", rc);
	cr_assert_eq(dl.n, 1, "reported once");
	cr_assert_eq(dl.d[0].offset, at, "verify offset");
	cr_assert_eq(dl.d[0].seq, d.seq, "verify seq");
	cr_assert_eq(dl.d[0].resume_seq, d.resume_seq, "verify resume");
	/* Repair: recorded once, then readers and recovery go on past it. */
	cr_assert_eq(spate_log_repair(dir, &d, "test"), 0, "repair");
	cr_assert_eq(spate_log_repair(dir, &d, "test"), -EEXIST, "recorded once");
	rc = spate_log_verify(dir, &v, NULL, NULL);
	cr_assert_eq(rc, 0, "verify after repair: %d", rc);
	cr_assert_eq(v.repaired, 1, "reported as repaired");
	cr_assert_eq(v.lost, d.resume_seq - d.seq, "lost");
	for (unsigned m = 0; m < 3; m++) {
		rc = read_until_error(dir, modes[m], &next, &skipped, NULL);
		cr_assert_eq(rc, 0, "mode %u: reads to the end: %d", m, rc);
		cr_assert_eq(next, end, "mode %u: up to %" PRIu64 ", want %" PRIu64, m, next, end);
		cr_assert_eq(skipped, d.resume_seq - d.seq, "mode %u: the skip reported", m);
	}
	l = open_log(dir, NULL, &rep);
	cr_log_info("open after repair: %s", rep.message);
	cr_assert_eq(rep.repaired, d.resume_seq - d.seq, "recovery says what it skipped");
	cr_assert(strstr(rep.message, "repair journal") != NULL, "message: %s", rep.message);
	cr_assert_eq(rep.next_seq, end, "next_seq");
	uint64_t e2 = write_batches(l, 10, 9000, 1, 5);
	cr_assert_eq(spate_log_close(l), 0, "close");
	rc = read_until_error(dir, 0, &next, &skipped, NULL);
	cr_assert_eq(rc, 0, "read after append");
	cr_assert_eq(next, e2, "all of it");
	rm_dir(dir);
}

Test(log, older_segment_zeroed_frame_is_damage_not_retention, .timeout = 60)
{
	older_segment_damage(1);
}

Test(log, older_segment_bad_crc_stops_reader_precisely, .timeout = 60)
{
	older_segment_damage(0);
}

/* Rewrite segment @p path with its frames in the order @p order (indexes
 * into its frames, @p n of them; the rest of the frames dropped). */
static void reorder_frames(const char *path, const int *order, size_t n)
{
	uint64_t offs[512], sz = fsize(path);
	size_t nf = frame_offsets(path, offs, 512);
	int fd = open(path, O_RDWR);
	uint8_t *in = malloc(sz), *out = malloc(sz * 2);

	cr_assert(in && out && fd >= 0, "setup");
	cr_assert_eq(pread(fd, in, sz, 0), (ssize_t)sz, "read");
	memcpy(out, in, 4096);
	uint64_t o = 4096;
	for (size_t i = 0; i < n; i++) {
		cr_assert_lt((size_t)order[i], nf, "frame %d", order[i]);
		uint64_t a = offs[order[i]], b = (size_t)order[i] + 1 < nf ? offs[order[i] + 1] : sz;
		memcpy(out + o, in + a, b - a);
		o += b - a;
	}
	cr_assert_eq(ftruncate(fd, 0), 0, "truncate");
	cr_assert_eq(pwrite(fd, out, o, 0), (ssize_t)o, "write");
	close(fd);
	free(in);
	free(out);
}

/* Dropped, duplicated and swapped frames (all CRC-valid) are damage for
 * verify, the reader (a duplicate is never dropped silently) and recovery. */
Test(log, dropped_duplicated_swapped_frames, .timeout = 60)
{
	const char *what[] = {"dropped", "duplicated", "swapped"};
	for (int k = 0; k < 3; k++) {
		char *dir = make_dir(), seg[512];
		multi_seg(dir, seg, sizeof(seg));
		uint64_t offs[256];
		size_t nf = frame_offsets(seg, offs, 256);
		int order[256], n = 0;
		for (int i = 0; i < (int)nf; i++) {
			if (k == 0 && i == 3)
				continue; /* dropped */
			order[n++] = k == 2 && i == 3 ? 4 : k == 2 && i == 4 ? 3 : i;
			if (k == 1 && i == 3)
				order[n++] = 3; /* duplicated */
		}
		reorder_frames(seg, order, (size_t)n);
		struct dmg_list dl = {0};
		struct spate_log_verify v;
		int rc = spate_log_verify(dir, &v, dmg_collect, &dl);
		cr_assert_gt(rc, 0, "%s: verify reports damage: %d", what[k], rc);
		cr_assert_eq(dl.d[0].segment, 0, "%s: segment", what[k]);
		uint64_t next, skipped;
		struct spate_log_damage d;
		rc = read_until_error(dir, 0, &next, &skipped, &d);
		cr_assert_eq(rc, -EBADMSG, "%s: reader stops: %d at %" PRIu64, what[k], rc, next);
		cr_assert_eq(d.offset, dl.d[0].offset, "%s: reader and verify agree", what[k]);
		cr_assert_eq(skipped, 0, "%s: nothing skipped", what[k]);
		struct spate_log *l = NULL;
		struct spate_log_recovery rep;
		rc = spate_log_open(dir, NULL, &l, &rep);
		cr_assert_eq(rc, -EBADMSG, "%s: open refuses: %d", what[k], rc);
		rm_dir(dir);
	}
}

/* An earlier segment cut short (its last frames lost) is a gap before the
 * next segment: damage, not "retention skipped some". */
Test(log, truncated_earlier_segment_is_damage, .timeout = 60)
{
	char *dir = make_dir(), seg[512];
	uint64_t end = multi_seg(dir, seg, sizeof(seg)), offs[256];
	size_t nf = frame_offsets(seg, offs, 256);
	cr_assert_eq(truncate(seg, (off_t)offs[nf - 2]), 0, "truncate");
	struct dmg_list dl = {0};
	struct spate_log_verify v;
	int rc = spate_log_verify(dir, &v, dmg_collect, &dl);
	cr_assert_eq(rc, 1, "verify: one range: %d", rc);
	cr_assert_eq(dl.d[0].offset, offs[nf - 2], "at the cut");
	cr_assert_gt(dl.d[0].resume_segment, 0, "resumes in the next segment");
	uint64_t next, skipped;
	struct spate_log_damage d;
	rc = read_until_error(dir, 0, &next, &skipped, &d);
	cr_assert_eq(rc, -EBADMSG, "reader stops: %d", rc);
	cr_assert_eq(skipped, 0, "not retention");
	cr_assert_eq(spate_log_repair(dir, &d, NULL), 0, "repair");
	rc = read_until_error(dir, 0, &next, &skipped, NULL);
	cr_assert_eq(rc, 0, "read after repair");
	cr_assert_eq(next, end, "to the end");
	cr_assert_eq(skipped, d.resume_seq - d.seq, "the gap reported");
	rm_dir(dir);
}

/* A frame claiming 1 GiB in a 6 KB segment: the readers check that it fits
 * before allocating anything of that size (the child runs with a 256 MiB
 * address-space limit where the sanitizers allow one). */
Test(log, huge_frame_length_rejected_before_allocation, .timeout = 60)
{
	char *dir = make_dir(), seg[512];
	multi_seg(dir, seg, sizeof(seg));
	uint64_t offs[256];
	size_t nf = frame_offsets(seg, offs, 256);
	cr_assert_gt(nf, 3, "frames");
	cr_assert_eq(truncate(seg, 6000), 0, "a 6 KB segment");
	nf = frame_offsets(seg, offs, 256);
	uint32_t big = 1u << 30;
	int fd = open(seg, O_RDWR);
	cr_assert_eq(pwrite(fd, &big, 4, (off_t)offs[1] + 4), 4, "claim 1 GiB");
	close(fd);
	uint32_t modes[] = {0, SPATE_LOG_RD_F_PREAD, SPATE_LOG_RD_F_PER_FRAME};
	for (unsigned m = 0; m < 3; m++) {
		pid_t pid = fork();
		cr_assert_geq(pid, 0, "fork");
		if (pid == 0) {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
			struct rlimit lim = {256u << 20, 256u << 20};
			setrlimit(RLIMIT_AS, &lim);
#endif
			uint64_t next, skipped;
			struct spate_log_damage d;
			int rc = read_until_error(dir, modes[m], &next, &skipped, &d);
			_exit(rc == -EBADMSG && d.offset == offs[1] ? 0 : rc == -ENOMEM ? 3 : 4);
		}
		int st;
		cr_assert_eq(waitpid(pid, &st, 0), pid, "waitpid");
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mode %u: child: %d", m, st);
	}
	struct spate_log_verify v;
	cr_assert_geq(spate_log_verify(dir, &v, NULL, NULL), 1, "verify: damaged");
	rm_dir(dir);
}

/* ------------------------------------------------------------------------ */
/* fdatasync failures (fsyncgate)                                           */
/* ------------------------------------------------------------------------ */

/* The fault hook (tests/meson.build builds the log into this suite with
 * -DSPATE_LOG_FAULTS): the next fault_n fdatasync results of the writer
 * become fault_err. */
int spate_log_fault_sync(int res);
static atomic_int fault_n, fault_err;

int spate_log_fault_sync(int res)
{
	/* Relaxed: armed and hit on the test's own thread. */
	if (atomic_load_explicit(&fault_n, memory_order_relaxed) > 0) {
		atomic_fetch_sub_explicit(&fault_n, 1, memory_order_relaxed);
		return atomic_load_explicit(&fault_err, memory_order_relaxed);
	}
	return res;
}

static void fault_arm(int n, int err)
{
	atomic_store_explicit(&fault_err, err, memory_order_relaxed);
	atomic_store_explicit(&fault_n, n, memory_order_relaxed);
}

/*
 * Durability ALWAYS: a failed fdatasync acknowledges nothing; the segment
 * is cut back to its last durable frame (the pages the failed sync covered
 * are never trusted), and the next sync writes the frames again from the
 * caller's memory, which it still holds, before syncing; the log then reads
 * back whole, across a roll. Failing again keeps failing without losing.
 */
static void fsync_fails_always(uint32_t flags)
{
	char *dir = make_dir(), seg[512];
	struct spate_log_params p = {.durability = SPATE_DURABILITY_ALWAYS, .segment_bytes = 65536,
				     .flags = flags};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	static uint64_t held[40][80];
	uint64_t end = write_batches(l, 30, 1000, 1, 3);
	for (int round = 0; round < 40; round++) {
		seg_path(dir, -1, seg, sizeof(seg));
		uint64_t size0 = fsize(seg), d0 = spate_log_durable_seq(l);
		cr_assert_eq(d0, end, "durable before");
		unsigned nb = 1 + round % 5;
		for (unsigned i = 0; i < nb; i++) {
			uint64_t base = spate_log_next_seq(l);
			size_t len = make_batch(held[i], base, batch_count(base), 2000 + round);
			cr_assert_eq(spate_log_append(l, held[i], len), 0, "append");
		}
		uint64_t dur = 0;
		fault_arm(1 + round % 2, -EIO);
		int rc = spate_log_sync(l, &dur);
		cr_assert_eq(rc, -EIO, "round %d: the failure is reported: %d", round, rc);
		cr_assert_eq(spate_log_durable_seq(l), d0, "round %d: nothing acknowledged", round);
		char now[512];
		seg_path(dir, -1, now, sizeof(now));
		if (!strcmp(now, seg)) /* (O_DIRECT may keep a zero-padded block) */
			cr_assert_leq(fsize(seg), ((size0 + 4095) & ~(uint64_t)4095), "round %d: cut back to the durable end", round);
		cr_assert_eq(spate_log_written_seq(l), d0, "round %d: written rewound", round);
		fault_arm(0, 0);
		rc = spate_log_sync(l, &dur);
		if (rc == -EIO) /* two faults armed: the rewrite failed too */
			rc = spate_log_sync(l, &dur);
		cr_assert_eq(rc, 0, "round %d: written again and synced: %d", round, rc);
		end = spate_log_next_seq(l);
		cr_assert_eq(dur, end, "round %d: durable after the rewrite", round);
		memset(held, 0xa5, sizeof(held)); /* released: the log must not need it */
	}
	cr_assert_eq(spate_log_close(l), 0, "close");
	read_all(dir, SPATE_LOG_FROM_OLDEST, 0, 0, end);
	struct spate_log_verify v;
	cr_assert_eq(spate_log_verify(dir, &v, NULL, NULL), 0, "verify");
	rm_dir(dir);
}

Test(log, fsync_failure_rewrites_buffered_io_uring, .timeout = 60)
{
	fsync_fails_always(SPATE_LOG_F_BUFFERED);
}

Test(log, fsync_failure_rewrites_buffered_pwrite, .timeout = 60)
{
	fsync_fails_always(SPATE_LOG_F_BUFFERED | SPATE_LOG_F_NO_URING);
}

Test(log, fsync_failure_rewrites_direct_io_uring, .timeout = 60)
{
	fsync_fails_always(SPATE_LOG_F_DIRECT);
}

Test(log, fsync_failure_rewrites_direct_pwrite, .timeout = 60)
{
	fsync_fails_always(SPATE_LOG_F_DIRECT | SPATE_LOG_F_NO_URING);
}

/* Durability INTERVAL: frames written by syncs without an fdatasync were
 * released by the caller; when the next fdatasync fails they cannot be
 * written again, so the log fails loudly for good: every later sync
 * reports -EIO, durable_seq never moves, close writes no clean marker. */
Test(log, fsync_failure_after_released_frames_fails_the_log, .timeout = 60)
{
	char *dir = make_dir();
	struct spate_log_params p = {.durability = SPATE_DURABILITY_INTERVAL, .interval_ns = 200000000,
				     .flags = SPATE_LOG_F_BUFFERED};
	struct spate_log_recovery rep;
	struct spate_log *l = open_log(dir, &p, &rep);
	uint64_t end = write_batches(l, 20, 1000, 1, 2); /* within the interval: no fdatasync */
	uint64_t d0 = spate_log_durable_seq(l);
	cr_assert_lt(d0, end, "written, not durable yet");
	struct timespec ts = {0, 250000000};
	nanosleep(&ts, NULL);
	static uint64_t b[80];
	size_t len = make_batch(b, end, batch_count(end), 3000);
	cr_assert_eq(spate_log_append(l, b, len), 0, "append");
	fault_arm(1, -EIO);
	uint64_t dur = 0;
	cr_assert_eq(spate_log_sync(l, &dur), -EIO, "fdatasync failure reported");
	for (int i = 0; i < 3; i++) {
		nanosleep(&ts, NULL);
		cr_assert_eq(spate_log_sync(l, &dur), -EIO, "still failed (no retried fdatasync)");
	}
	cr_assert_eq(spate_log_durable_seq(l), d0, "nothing acknowledged");
	cr_assert_eq(spate_log_close(l), -EIO, "close reports it");
	char m[600];
	snprintf(m, sizeof(m), "%s/CLEAN", dir);
	cr_assert_neq(access(m, F_OK), 0, "no clean marker");
	rm_dir(dir);
}
