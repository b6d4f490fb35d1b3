/* SPDX-License-Identifier: MIT */
/*
 * Tests for spate/ring.h: semantics (empty, full, wrap, limits, sequence
 * numbers, timestamps, peek/release), back pressure, readers and writers,
 * parameter and header validation, corrupt contents, rings across processes.
 * Long multi-threaded stress runs are in test_ring_stress.c.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spate/ring.h"
#include "spate/shm.h"

#include "ring_testlib.h"

#define MS (1000000ull)
#define SEC (1000000000ull)

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static void mem_ring(struct tl_mem *m, uint64_t cap, uint64_t max_record, uint32_t flags)
{
	int rc = tl_mem_ring(m, cap, max_record, flags);

	cr_assert_eq(rc, 0, "in-memory ring (cap %llu, flags %#x): %d", (unsigned long long)cap,
		     flags, rc);
}

static struct spate_ring_writer *open_writer(struct spate_ring *r, enum spate_ring_wait wait)
{
	struct spate_ring_writer *w = NULL;
	int rc = spate_ring_writer_open(r, wait, &w);

	cr_assert_eq(rc, 0, "writer_open: %d", rc);
	cr_assert_not_null(w);
	return w;
}

static struct spate_ring_reader *open_reader(struct spate_ring *r, enum spate_ring_start start,
					     enum spate_ring_wait wait)
{
	struct spate_ring_reader *rd = NULL;
	int rc = spate_ring_reader_open(r, start, wait, &rd);

	cr_assert_eq(rc, 0, "reader_open: %d", rc);
	cr_assert_not_null(rd);
	return rd;
}

/* Write record number @p ctr (writer id 0) with @p len payload bytes as a batch of one. */
static int put_num(struct spate_ring_writer *w, uint64_t len, uint64_t ctr, uint64_t *seq)
{
	uint8_t small[512];
	uint8_t *buf = len <= sizeof(small) ? small : malloc((size_t)len);
	int rc;

	if (!buf)
		return -ENOMEM;
	tl_pl_fill(buf, len, 0, ctr);
	rc = spate_ring_put(w, buf, len, tl_key(0, ctr), tl_type(0, ctr), seq);
	if (buf != small)
		free(buf);
	return rc;
}

/* Write records ctr0.. with lengths lens[] in one spate_ring_put_batch() call. */
static int put_nums(struct spate_ring_writer *w, const uint64_t *lens, unsigned n, uint64_t ctr0,
		    uint64_t *first_seq)
{
	struct spate_ring_iov *v = calloc(n ? n : 1, sizeof(*v));
	uint8_t **bufs = calloc(n ? n : 1, sizeof(*bufs));
	int rc;

	cr_assert(v && bufs);
	for (unsigned i = 0; i < n; i++) {
		uint64_t c = ctr0 + i;
		bufs[i] = malloc(lens[i] ? (size_t)lens[i] : 1);
		cr_assert_not_null(bufs[i]);
		tl_pl_fill(bufs[i], lens[i], 0, c);
		v[i].data = bufs[i];
		v[i].len = (uint32_t)lens[i];
		v[i].key_hash = tl_key(0, c);
		v[i].type = tl_type(0, c);
	}
	rc = spate_ring_put_batch(w, v, n, first_seq);
	for (unsigned i = 0; i < n; i++)
		free(bufs[i]);
	free(bufs);
	free(v);
	return rc;
}

/* Reserve, fill in place and commit records ctr0.. as one batch. Returns the
 * commit's count or a negative error of reserve. */
static int commit_nums(struct spate_ring_writer *w, const uint64_t *lens, unsigned n, uint64_t ctr0,
		       uint64_t ts, uint64_t *first_seq)
{
	struct spate_ring_batch b;
	uint64_t bytes = 0;
	int rc;

	for (unsigned i = 0; i < n; i++)
		bytes += spate_ring_rec_size(lens[i]);
	rc = spate_ring_reserve(w, bytes, &b);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < n; i++) {
		uint64_t c = ctr0 + i;
		void *p = spate_ring_batch_add(&b, lens[i], tl_key(0, c), tl_type(0, c));
		cr_assert_not_null(p, "batch_add %u of %u", i, n);
		tl_pl_fill(p, lens[i], 0, c);
	}
	return (int)spate_ring_commit(w, &b, ts, first_seq);
}

static void check_rec(const struct spate_ring_rec *rec, uint64_t ctr)
{
	cr_assert_eq(rec->seq, ctr, "seq %llu, expected %llu", (unsigned long long)rec->seq,
		     (unsigned long long)ctr);
	cr_assert_eq(rec->type, tl_type(0, ctr), "seq %llu: type %u", (unsigned long long)ctr,
		     rec->type);
	cr_assert_eq(rec->key_hash, tl_key(0, ctr), "seq %llu: key %08x", (unsigned long long)ctr,
		     rec->key_hash);
	cr_assert_eq(tl_pl_check(rec->data, rec->len, 0, ctr, NULL), 0,
		     "seq %llu (len %u): payload corrupt", (unsigned long long)ctr, rec->len);
}

/* Peek and release everything available, checking records *next, *next+1...
 * With @p g, releases random prefixes (exercising partial release).
 * Returns the number of records read. */
static uint64_t drain(struct spate_ring_reader *rd, uint64_t *next, struct tl_rng *g)
{
	struct spate_ring_rec recs[64];
	uint64_t total = 0;

	for (;;) {
		int n = spate_ring_peek(rd, recs, 64, UINT64_MAX);
		cr_assert_geq(n, 0, "peek: %d", n);
		if (n == 0)
			return total;
		unsigned k = g ? (unsigned)(1 + tl_rng_below(g, (uint64_t)n)) : (unsigned)n;
		for (unsigned i = 0; i < k; i++)
			check_rec(&recs[i], (*next)++);
		cr_assert_eq(spate_ring_release(rd, k), 0);
		total += k;
	}
}

static uint64_t head_of(struct spate_ring_writer *w)
{
	if (w->flags & SPATE_RING_F_MULTI_WRITER)
		return atomic_load(&w->ring->sh->prod.head);
	return w->head;
}

static const struct spate_ring_bhdr *bhdr_at(struct spate_ring *r, uint64_t off)
{
	return (const struct spate_ring_bhdr *)(const void *)(r->data + (off & r->mask));
}

static uint64_t bh_len(const struct spate_ring_bhdr *h)
{
	return atomic_load(&h->commit) & SPATE_RING_C_LEN_MASK;
}

static void uname_for(char *buf, size_t len, const char *tag)
{
	snprintf(buf, len, "tr-%d-%s", (int)getpid(), tag);
}

static struct spate_ring *shm_ring(const char *name, uint64_t cap, uint32_t flags, uint32_t shm_flags)
{
	struct spate_ring_params p = { .capacity = cap, .flags = flags };
	struct spate_shm_opts o = { .flags = shm_flags | SPATE_SHM_F_REPLACE };
	struct spate_ring *r = NULL;
	int rc = spate_ring_create(name, &p, &o, &r);

	cr_assert_eq(rc, 0, "spate_ring_create(%s): %d", name, rc);
	cr_assert_not_null(r);
	return r;
}

/* ------------------------------------------------------------------------ */
/* Parameters and setup                                                     */
/* ------------------------------------------------------------------------ */

Test(ring, format_params)
{
	struct spate_ring_params p = { .capacity = 64 * KIB };
	size_t sz = spate_ring_memsize(&p);
	struct spate_ring *r = NULL;

	cr_assert_geq(sz, 64 * KIB + sizeof(struct spate_ring_shared));
	void *mem = aligned_alloc(4096, sz + 4096);
	cr_assert_not_null(mem);
	cr_assert_eq(spate_ring_format(mem, sz, &p), 0);
	cr_assert_eq(spate_ring_open_mem(mem, sz, &r), 0);
	cr_assert_eq(r->cap, 64 * KIB);
	cr_assert_eq(spate_ring_max_record(r), 32 * KIB - 48);
	cr_assert_eq(r->flags, 0u);
	cr_assert_null(spate_ring_shm(r));
	spate_ring_close(r);

	static const struct {
		uint64_t cap, max_record;
		uint32_t flags;
	} bad[] = {
		{ 0, 0, 0 },
		{ 32 * KIB, 0, 0 },             /* too small */
		{ 64 * KIB - 8, 0, 0 },         /* too small, not a power of two */
		{ 96 * KIB, 0, 0 },             /* not a power of two */
		{ 64 * KIB + 8, 0, 0 },
		{ 3 * MIB, 0, 0 },
		{ 2 * GIB, 0, 0 },              /* too large */
		{ 1ull << 40, 0, 0 },
		{ UINT64_MAX, 0, 0 },
		{ 64 * KIB, 0, 1u << 3 },       /* unknown flags */
		{ 64 * KIB, 0, 0x80000000u },
		{ 64 * KIB, 32 * KIB - 47, 0 }, /* max_record over what the ring holds */
		{ 64 * KIB, 64 * KIB, 0 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct spate_ring_params b = { .capacity = bad[i].cap, .max_record = bad[i].max_record,
					       .flags = bad[i].flags };
		cr_assert_eq(spate_ring_memsize(&b), 0, "case %zu", i);
		cr_assert_eq(spate_ring_format(mem, sz, &b), -EINVAL, "case %zu", i);
	}
	cr_assert_eq(spate_ring_memsize(NULL), 0);
	cr_assert_eq(spate_ring_format(mem, sz, NULL), -EINVAL);
	cr_assert_eq(spate_ring_format(NULL, sz, &p), -EINVAL);
	cr_assert_eq(spate_ring_format((char *)mem + 8, sz, &p), -EINVAL, "misaligned memory");
	cr_assert_eq(spate_ring_format(mem, sz - 1, &p), -ENOSPC);
	cr_assert_eq(spate_ring_format(mem, 4096, &p), -ENOSPC);
	cr_assert_eq(spate_ring_format(mem, 0, &p), -ENOSPC);

	/* Limits that are fine. */
	struct spate_ring_params ok1 = { .capacity = 64 * KIB, .max_record = 32 * KIB - 48,
					 .flags = SPATE_RING_F_ALL_ };
	cr_assert_eq(spate_ring_format(mem, sz, &ok1), 0);
	cr_assert_eq(spate_ring_open_mem(mem, sz, &r), 0);
	cr_assert_eq(spate_ring_max_record(r), 32 * KIB - 48);
	cr_assert_eq(r->flags, SPATE_RING_F_ALL_);
	spate_ring_close(r);
	struct spate_ring_params ok2 = { .capacity = 1 * GIB };
	cr_assert_eq(spate_ring_memsize(&ok2), spate_ring_memsize(&p) - 64 * KIB + 1 * GIB);

	/* open_mem argument checks */
	cr_assert_eq(spate_ring_open_mem(NULL, sz, &r), -EINVAL);
	cr_assert_eq(spate_ring_open_mem(mem, sz, NULL), -EINVAL);
	cr_assert_eq(spate_ring_open_mem((char *)mem + 64, sz, &r), -EINVAL);
	free(mem);
}

/* Format a fresh 64 KiB ring in @p mem, apply @p mut, and open it. */
static int open_mutated(void *mem, size_t sz, uint32_t flags, void (*mut)(struct spate_ring_shared *),
			size_t open_size)
{
	struct spate_ring_params p = { .capacity = 64 * KIB, .flags = flags };
	struct spate_ring *r = NULL;
	int rc;

	cr_assert_eq(spate_ring_format(mem, sz, &p), 0);
	if (mut)
		mut(mem);
	rc = spate_ring_open_mem(mem, open_size, &r);
	if (rc == 0) {
		cr_assert_not_null(r);
		spate_ring_close(r);
	}
	return rc;
}

static void m_magic(struct spate_ring_shared *s) { s->meta.magic ^= 1; }
static void m_magic_zero(struct spate_ring_shared *s) { s->meta.magic = 0; }
static void m_version(struct spate_ring_shared *s) { s->meta.layout_version = SPATE_RING_LAYOUT_VERSION + 1; }
static void m_version0(struct spate_ring_shared *s) { s->meta.layout_version = 0; }
static void m_shared_size(struct spate_ring_shared *s) { s->meta.shared_size -= 128; }
static void m_cap_npot(struct spate_ring_shared *s) { s->meta.capacity += 4096; }
static void m_cap_double(struct spate_ring_shared *s) { s->meta.capacity *= 2; s->meta.cap_shift++; }
static void m_cap_half_min(struct spate_ring_shared *s)
{
	s->meta.capacity /= 2;
	s->meta.cap_shift--;
	s->meta.total_size = s->meta.data_off + s->meta.capacity;
	s->meta.max_record = s->meta.capacity / 2 - 48;
}
static void m_cap_small(struct spate_ring_shared *s)
{
	s->meta.capacity = 4096;
	s->meta.cap_shift = 12;
	s->meta.total_size = s->meta.data_off + 4096;
	s->meta.max_record = 1000;
}
static void m_cap_huge(struct spate_ring_shared *s)
{
	s->meta.capacity = 1ull << 62;
	s->meta.cap_shift = 62;
	s->meta.total_size = s->meta.data_off + s->meta.capacity;
}
static void m_cap_shift(struct spate_ring_shared *s) { s->meta.cap_shift = 17; }
static void m_cap_shift64(struct spate_ring_shared *s) { s->meta.cap_shift = 200; }
static void m_data_off(struct spate_ring_shared *s) { s->meta.data_off += 4096; }
static void m_data_off_small(struct spate_ring_shared *s)
{
	s->meta.data_off = 128;
	s->meta.total_size = 128 + s->meta.capacity;
}
static void m_total(struct spate_ring_shared *s) { s->meta.total_size += 4096; }
static void m_total_small(struct spate_ring_shared *s) { s->meta.total_size -= 8; }
static void m_max_record0(struct spate_ring_shared *s) { s->meta.max_record = 0; }
static void m_max_record_big(struct spate_ring_shared *s) { s->meta.max_record = 32 * KIB - 47; }
static void m_max_record_huge(struct spate_ring_shared *s) { s->meta.max_record = UINT64_MAX; }
static void m_flags(struct spate_ring_shared *s) { s->meta.flags |= 1u << 7; }
static void m_not_ready(struct spate_ring_shared *s) { s->meta.ready = 0; }
static void m_ready_garbage(struct spate_ring_shared *s) { s->meta.ready = 0x12345678; }
static void m_not_ready_bad_magic(struct spate_ring_shared *s)
{
	s->meta.ready = 0;
	s->meta.magic = 0x1122334455667788ull;
}
static void m_trim_gt_tail(struct spate_ring_shared *s)
{
	atomic_store(&s->pub.tail, 4096);
	atomic_store(&s->prod.head, 4096);
	atomic_store(&s->prod.trim, 4104);
}
static void m_tail_far(struct spate_ring_shared *s)
{
	atomic_store(&s->pub.tail, 64 * KIB + 8);
	atomic_store(&s->prod.head, 64 * KIB + 8);
}
static void m_tail_unaligned(struct spate_ring_shared *s)
{
	atomic_store(&s->pub.tail, 4100);
	atomic_store(&s->prod.head, 4100);
}
static void m_trim_unaligned(struct spate_ring_shared *s)
{
	atomic_store(&s->pub.tail, 4096);
	atomic_store(&s->prod.trim, 4092);
}
static void m_head_lt_tail(struct spate_ring_shared *s)
{
	atomic_store(&s->pub.tail, 4096);
	atomic_store(&s->prod.head, 4088);
}
static void m_head_far(struct spate_ring_shared *s)
{
	atomic_store(&s->pub.tail, 0);
	atomic_store(&s->prod.head, 64 * KIB + 8);
}
static void m_positions_ok(struct spate_ring_shared *s)
{
	/* Valid: a ring that has wrapped many times. */
	atomic_store(&s->pub.tail, 10 * 64 * KIB + 4096);
	atomic_store(&s->prod.head, 10 * 64 * KIB + 4096);
	atomic_store(&s->prod.trim, 9 * 64 * KIB + 8192);
}

Test(ring, open_mem_validates_control_block)
{
	struct spate_ring_params p = { .capacity = 64 * KIB };
	size_t sz = spate_ring_memsize(&p);
	void *mem = aligned_alloc(4096, sz);
	static const struct {
		const char *what;
		void (*mut)(struct spate_ring_shared *);
		int err;
	} cases[] = {
		{ "pristine", NULL, 0 },
		{ "magic bit flip", m_magic, -EBADMSG },
		{ "magic zero", m_magic_zero, -EBADMSG },
		{ "next layout version", m_version, -EPROTO },
		{ "layout version 0", m_version0, -EPROTO },
		{ "shared_size", m_shared_size, -EBADMSG },
		{ "capacity not a power of two", m_cap_npot, -EBADMSG },
		{ "capacity larger than the memory", m_cap_double, -EBADMSG },
		{ "capacity inconsistent with cap_shift", m_cap_shift, -EBADMSG },
		{ "cap_shift >= 64", m_cap_shift64, -EBADMSG },
		{ "capacity below the minimum", m_cap_small, -EBADMSG },
		{ "capacity absurd", m_cap_huge, -EBADMSG },
		{ "data_off", m_data_off, -EBADMSG },
		{ "data_off inside the control block", m_data_off_small, -EBADMSG },
		{ "total_size larger", m_total, -EBADMSG },
		{ "total_size smaller", m_total_small, -EBADMSG },
		{ "max_record 0", m_max_record0, -EBADMSG },
		{ "max_record too big", m_max_record_big, -EBADMSG },
		{ "max_record UINT64_MAX", m_max_record_huge, -EBADMSG },
		{ "unknown flags", m_flags, -EBADMSG },
		{ "not ready", m_not_ready, -EAGAIN },
		{ "ready garbage", m_ready_garbage, -EAGAIN },
		{ "not ready, bad magic", m_not_ready_bad_magic, -EBADMSG },
		{ "trim > tail", m_trim_gt_tail, -EBADMSG },
		{ "tail more than a ring ahead of trim", m_tail_far, -EBADMSG },
		{ "tail unaligned", m_tail_unaligned, -EBADMSG },
		{ "trim unaligned", m_trim_unaligned, -EBADMSG },
		{ "wrapped positions", m_positions_ok, 0 },
	};

	cr_assert_not_null(mem);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = open_mutated(mem, sz, 0, cases[i].mut, sz);
		cr_assert_eq(rc, cases[i].err, "%s: expected %d, got %d", cases[i].what, cases[i].err, rc);
	}
	/* Self-consistent but below the minimum capacity. */
	cr_assert_eq(open_mutated(mem, sz, 0, m_cap_half_min, sz), -EBADMSG);
	/* Multi-writer rings also check head against tail. */
	cr_assert_eq(open_mutated(mem, sz, SPATE_RING_F_MULTI_WRITER, NULL, sz), 0);
	cr_assert_eq(open_mutated(mem, sz, SPATE_RING_F_MULTI_WRITER, m_head_lt_tail, sz), -EBADMSG);
	cr_assert_eq(open_mutated(mem, sz, SPATE_RING_F_MULTI_WRITER, m_head_far, sz), -EBADMSG);
	/* Sizes: smaller than the control block, smaller than the ring. */
	cr_assert_eq(open_mutated(mem, sz, 0, NULL, sizeof(struct spate_ring_shared) - 1), -EBADMSG);
	cr_assert_eq(open_mutated(mem, sz, 0, NULL, 64), -EBADMSG);
	cr_assert_eq(open_mutated(mem, sz, 0, NULL, 0), -EBADMSG);
	cr_assert_eq(open_mutated(mem, sz, 0, NULL, sz - 1), -EBADMSG);
	cr_assert_eq(open_mutated(mem, sz, 0, NULL, sz - 64 * KIB / 2), -EBADMSG);
	/* All zeroes (never formatted). */
	memset(mem, 0, sz);
	struct spate_ring *r = NULL;
	cr_assert_eq(spate_ring_open_mem(mem, sz, &r), -EBADMSG);
	free(mem);
}

Test(ring, capacity_1gib)
{
	struct tl_mem m;
	struct spate_ring_rec rec;
	uint64_t next = 0;

	mem_ring(&m, 1 * GIB, 0, 0);
	cr_assert_eq(m.r->cap, 1 * GIB);
	cr_assert_eq(spate_ring_max_record(m.r), 512 * MIB - 48);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	for (uint64_t i = 0; i < 100; i++)
		cr_assert_eq(put_num(w, i * 37, i, NULL), 0);
	cr_assert_eq(drain(rd, &next, NULL), 100);
	cr_assert_eq(spate_ring_peek(rd, &rec, 1, UINT64_MAX), 0);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

/* ------------------------------------------------------------------------ */
/* Empty and full                                                           */
/* ------------------------------------------------------------------------ */

Test(ring, empty_ring, .timeout = 30)
{
	struct tl_mem m;
	struct spate_ring_rec recs[4];
	uint64_t lr = 99, lb = 99;

	mem_ring(&m, 64 * KIB, 0, 0);
	for (int wait = SPATE_RING_WAIT_BUSY; wait <= SPATE_RING_WAIT_BLOCK; wait++) {
		for (int start = SPATE_RING_START_OLDEST; start <= SPATE_RING_START_LATEST; start++) {
			struct spate_ring_reader *rd = open_reader(m.r, (enum spate_ring_start)start,
								   (enum spate_ring_wait)wait);
			cr_assert_eq(spate_ring_peek(rd, recs, 4, UINT64_MAX), 0);
			cr_assert_eq(spate_ring_peek(rd, recs, 0, UINT64_MAX), 0);
			spate_ring_lag(rd, &lr, &lb);
			cr_assert_eq(lr, 0);
			cr_assert_eq(lb, 0);
			uint64_t t0 = tl_mono_ns();
			cr_assert_eq(spate_ring_reader_wait(rd, 20 * MS), -ETIMEDOUT);
			uint64_t dt = tl_mono_ns() - t0;
			cr_assert_geq(dt, 20 * MS, "wait returned after %llu ns", (unsigned long long)dt);
			cr_assert_lt(dt, 2 * SEC, "wait returned after %llu ns", (unsigned long long)dt);
			cr_assert_eq(spate_ring_reader_wait(rd, 0), -ETIMEDOUT);
			cr_assert_eq(spate_ring_release(rd, 0), 0);
			cr_assert_eq(spate_ring_release(rd, 1), -EINVAL);
			spate_ring_reader_close(rd);
		}
	}
	/* Data makes wait return at once. */
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BLOCK);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_BLOCK);
	cr_assert_eq(put_num(w, 10, 0, NULL), 0);
	uint64_t t0 = tl_mono_ns();
	cr_assert_eq(spate_ring_reader_wait(rd, 5 * SEC), 0);
	cr_assert_lt(tl_mono_ns() - t0, 1 * SEC);
	cr_assert_eq(spate_ring_peek(rd, recs, 4, UINT64_MAX), 1);
	check_rec(&recs[0], 0);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

/* Fill a ring with 1000-byte records (1040 bytes each) until put fails. */
static uint64_t fill_1000(struct spate_ring_writer *w, uint64_t *ctr, int *last_rc, uint64_t *last_ns)
{
	uint64_t n = 0;

	for (;;) {
		uint64_t t0 = tl_mono_ns();
		int rc = put_num(w, 1000, *ctr, NULL);
		if (rc != 0) {
			*last_rc = rc;
			*last_ns = tl_mono_ns() - t0;
			return n;
		}
		(*ctr)++;
		n++;
		cr_assert_lt(n, 100000, "ring never fills");
	}
}

Test(ring, full_ring_eagain)
{
	for (int mw = 0; mw < 2; mw++) {
		struct tl_mem m;
		uint64_t ctr = 0, next = 0, ns = 0;
		int rc = 0;

		mem_ring(&m, 64 * KIB, 0, mw ? SPATE_RING_F_MULTI_WRITER : 0);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_BLOCK);
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		uint64_t n = fill_1000(w, &ctr, &rc, &ns);
		cr_assert_eq(rc, -EAGAIN, "mw=%d: %d", mw, rc);
		cr_assert_eq(n, 64 * KIB / 1040, "mw=%d: %llu records fit", mw, (unsigned long long)n);
		cr_assert_geq(w->full_events, 1);
		/* At once, every time, whatever the size. */
		for (uint64_t len = 0; len < 3000; len += 500) {
			uint64_t t0 = tl_mono_ns();
			cr_assert_eq(put_num(w, len, ctr, NULL), -EAGAIN);
			cr_assert_lt(tl_mono_ns() - t0, 200 * MS);
		}
		cr_assert_eq(drain(rd, &next, NULL), n);
		cr_assert_eq(put_num(w, 1000, ctr++, NULL), 0);
		cr_assert_eq(drain(rd, &next, NULL), 1);
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

Test(ring, full_ring_wait_times_out, .timeout = 30)
{
	for (int variant = 0; variant < 4; variant++) {
		struct tl_mem m;
		uint64_t ctr = 0, next = 0, ns = 0;
		int rc = 0;
		uint32_t flags = SPATE_RING_F_FULL_WAIT | ((variant & 1) ? SPATE_RING_F_MULTI_WRITER : 0);
		enum spate_ring_wait wait = (variant & 2) ? SPATE_RING_WAIT_BLOCK : SPATE_RING_WAIT_YIELD;

		mem_ring(&m, 64 * KIB, 0, flags);
		struct spate_ring_writer *w = open_writer(m.r, wait);
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		cr_assert_eq(w->timeout_ns, UINT64_MAX, "default: wait forever");
		w->timeout_ns = 30 * MS;
		uint64_t n = fill_1000(w, &ctr, &rc, &ns);
		cr_assert_eq(rc, -ETIMEDOUT, "variant %d: %d", variant, rc);
		cr_assert_eq(n, 64 * KIB / 1040);
		cr_assert_geq(ns, 30 * MS, "gave up after %llu ns", (unsigned long long)ns);
		cr_assert_lt(ns, 3 * SEC, "gave up after %llu ns", (unsigned long long)ns);
		w->timeout_ns = 0;
		cr_assert_eq(put_num(w, 1000, ctr, NULL), -ETIMEDOUT);
		cr_assert_eq(drain(rd, &next, NULL), n);
		cr_assert_eq(put_num(w, 1000, ctr++, NULL), 0);
		cr_assert_eq(drain(rd, &next, NULL), 1);
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

/* ------------------------------------------------------------------------ */
/* Back pressure                                                            */
/* ------------------------------------------------------------------------ */

static void back_pressure(uint32_t flags)
{
	struct tl_mem m;
	struct tl_rng g;
	uint64_t ctr = 0;
	int rc;

	tl_rng_seed(&g, 7);
	mem_ring(&m, 64 * KIB, 0, flags);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	/* A second reader that keeps up must not matter. */
	struct spate_ring_reader *fast = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	uint64_t fast_next = 0;

	while ((rc = put_num(w, tl_rng_below(&g, 700), ctr, NULL)) == 0) {
		ctr++;
		drain(fast, &fast_next, NULL);
	}
	cr_assert_eq(rc, -EAGAIN);
	uint64_t n = ctr;
	cr_assert_gt(n, 100);

	struct spate_ring_rec *recs = calloc(n + 8, sizeof(*recs));
	cr_assert_eq(spate_ring_peek(rd, recs, (unsigned)n + 8, UINT64_MAX), (int)n);
	for (uint64_t i = 0; i < n; i++)
		check_rec(&recs[i], i);
	uint64_t half = n / 2;
	cr_assert_eq(spate_ring_release(rd, (unsigned)half), 0);

	uint64_t more = 0;
	while ((rc = put_num(w, tl_rng_below(&g, 700), ctr, NULL)) == 0) {
		ctr++;
		more++;
		drain(fast, &fast_next, NULL);
		cr_assert_lt(more, 100000);
	}
	cr_assert_eq(rc, -EAGAIN);
	cr_assert_gt(more, 10, "only %llu writes after releasing half", (unsigned long long)more);
	cr_assert_eq(fast_next, ctr);

	/* What the reader had not released is intact, followed by the new records. */
	uint64_t next = half;
	cr_assert_eq(drain(rd, &next, NULL), n - half + more);
	cr_assert_eq(next, ctr);
	free(recs);
	spate_ring_reader_close(fast);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, back_pressure_single_writer)
{
	back_pressure(0);
}

Test(ring, back_pressure_multi_writer)
{
	back_pressure(SPATE_RING_F_MULTI_WRITER);
}

/* ------------------------------------------------------------------------ */
/* Wrap-around at every offset near the end                                  */
/* ------------------------------------------------------------------------ */

/* Write filler records (drained and checked at once) until the next batch
 * starts at ring offset @p target. */
static void advance_to(struct spate_ring_writer *w, struct spate_ring_reader *rd, uint64_t target,
		       uint64_t *wctr, uint64_t *rctr, struct tl_rng *g)
{
	uint64_t cap = w->cap;

	for (int guard = 0;; guard++) {
		cr_assert_lt(guard, 64, "advance_to(%llu) does not converge", (unsigned long long)target);
		uint64_t off = head_of(w) & (cap - 1);
		if (off == target)
			return;
		uint64_t room = cap - off;
		uint64_t want = target > off ? target - off : room;
		uint64_t len;
		if (want < 40)
			want = room;
		if (want < 40)
			len = 40; /* wraps: pad, then a batch at offset 0 */
		else if (want <= cap / 4)
			len = want;
		else if (want - cap / 4 >= 40)
			len = cap / 4;
		else
			len = want - 40;
		cr_assert_eq(put_num(w, len - 40, (*wctr)++, NULL), 0);
		drain(rd, rctr, g);
		cr_assert_eq(*rctr, *wctr);
	}
}

static void wrap_every_offset(uint32_t flags)
{
	struct tl_mem m;
	struct tl_rng g;
	uint64_t wctr = 0, rctr = 0, lens[8];
	const uint64_t cap = 64 * KIB;
	unsigned wraps = 0, fits = 0;

	tl_rng_seed(&g, 1234 + flags);
	mem_ring(&m, cap, 0, flags);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);

	for (uint64_t d = 0; d <= 100; d++) {
		uint64_t target = (cap - 8 * d) & (cap - 1);
		uint64_t room = cap - target;
		for (int variant = 0; variant < 5; variant++) {
			uint64_t len;
			switch (variant) {
			case 0: len = room; break;      /* fits exactly, ends at the ring's end */
			case 1: len = room + 8; break;  /* one word too many: pads */
			case 2: len = 40; break;        /* the smallest batch */
			case 3: len = room - 8; break;  /* leaves one word */
			default: len = 40 + 8 * tl_rng_below(&g, 120); break;
			}
			if (len < 40 || len > cap / 2)
				continue;
			advance_to(w, rd, target, &wctr, &rctr, &g);

			/* Split len - 32 bytes among k records (each a multiple of 8 in
			 * the ring, lengths not multiples of 8 where possible). */
			uint64_t body = len - 32;
			unsigned k = (unsigned)(1 + tl_rng_below(&g, 4));
			if (k > body / 8)
				k = (unsigned)(body / 8);
			uint64_t left = body;
			for (unsigned i = 0; i < k; i++) {
				uint64_t rs;
				if (i == k - 1) {
					rs = left;
				} else {
					uint64_t maxw = (left - 8 * (k - 1 - i)) / 8;
					rs = 8 * (1 + tl_rng_below(&g, maxw < 20 ? maxw : 20));
				}
				left -= rs;
				lens[i] = rs - 8;
				if (lens[i] >= 8)
					lens[i] -= tl_rng_below(&g, 8);
				cr_assert_eq(spate_ring_rec_size(lens[i]), rs);
			}
			uint64_t fs = UINT64_MAX;
			int rc = (variant + (int)d) % 2 ? put_nums(w, lens, k, wctr, &fs)
							: commit_nums(w, lens, k, wctr, 0, &fs);
			cr_assert_eq(rc, (int)k, "d=%llu variant %d: %d", (unsigned long long)d, variant, rc);
			cr_assert_eq(fs, wctr);
			wctr += k;

			uint64_t after = head_of(w) & (cap - 1);
			uint64_t c = atomic_load(&bhdr_at(m.r, target)->commit);
			if (len <= room) {
				fits++;
				cr_assert_eq(after, (target + len) & (cap - 1));
				cr_assert_eq(c & (SPATE_RING_C_PAD | SPATE_RING_C_COMMITTED),
					     SPATE_RING_C_COMMITTED);
				cr_assert_eq(c & SPATE_RING_C_LEN_MASK, len);
			} else {
				wraps++;
				cr_assert_eq(c & (SPATE_RING_C_PAD | SPATE_RING_C_COMMITTED),
					     SPATE_RING_C_PAD | SPATE_RING_C_COMMITTED,
					     "d=%llu: no PAD at the end (commit %#llx)",
					     (unsigned long long)d, (unsigned long long)c);
				cr_assert_eq(c & SPATE_RING_C_LEN_MASK, room);
				cr_assert_eq(after, len);
				cr_assert_eq(bh_len(bhdr_at(m.r, 0)), len);
			}
			uint64_t got = drain(rd, &rctr, &g);
			cr_assert_eq(got, k);
			cr_assert_eq(rctr, wctr);
			cr_assert_eq(rd->pos & (cap - 1), after, "reader at %llu, writer at %llu",
				     (unsigned long long)(rd->pos & (cap - 1)),
				     (unsigned long long)after);
		}
	}
	cr_assert_gt(wraps, 90);
	cr_assert_gt(fits, 200);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, wrap_every_offset_single_writer, .timeout = 60)
{
	wrap_every_offset(0);
}

Test(ring, wrap_every_offset_multi_writer, .timeout = 60)
{
	wrap_every_offset(SPATE_RING_F_MULTI_WRITER);
}

/* ------------------------------------------------------------------------ */
/* Record sizes                                                             */
/* ------------------------------------------------------------------------ */

Test(ring, max_record)
{
	struct tl_mem m;
	struct spate_ring_batch b;
	uint64_t next = 0, ctr = 0;
	const uint64_t cap = 64 * KIB;

	mem_ring(&m, cap, 0, 0);
	uint64_t max = spate_ring_max_record(m.r);
	cr_assert_eq(max, cap / 2 - 48);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);

	cr_assert_eq(put_num(w, max, ctr++, NULL), 0);
	cr_assert_eq(put_num(w, max + 1, ctr, NULL), -EMSGSIZE);
	cr_assert_eq(put_num(w, cap, ctr, NULL), -EMSGSIZE);
	cr_assert_eq(drain(rd, &next, NULL), 1);

	/* Reservations: half the ring at most, counting the batch header. */
	cr_assert_eq(spate_ring_reserve(w, cap / 2 - 32 + 1, &b), -EMSGSIZE);
	cr_assert_eq(spate_ring_reserve(w, cap / 2, &b), -EMSGSIZE);
	cr_assert_eq(spate_ring_reserve(w, cap, &b), -EMSGSIZE);
	cr_assert_eq(spate_ring_reserve(w, cap / 2 - 32, &b), 0);
	void *p = spate_ring_batch_add(&b, max, tl_key(0, ctr), tl_type(0, ctr));
	cr_assert_not_null(p);
	tl_pl_fill(p, max, 0, ctr);
	/* max_record leaves room for the long-length word: one empty record fits. */
	cr_assert_not_null(spate_ring_batch_add(&b, 0, tl_key(0, ctr + 1), tl_type(0, ctr + 1)));
	cr_assert_null(spate_ring_batch_add(&b, 0, 0, 0), "no room left in the reservation");
	cr_assert_eq(spate_ring_commit(w, &b, 0, NULL), 2);
	ctr += 2;
	cr_assert_eq(drain(rd, &next, NULL), 2);

	/* Several maximal records in a row (each wraps or fills half the ring). */
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(put_num(w, max, ctr++, NULL), 0);
		cr_assert_eq(drain(rd, &next, NULL), 1);
	}
	cr_assert_eq(next, ctr);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, reserve_absurd_size_is_emsgsize)
{
	struct tl_mem m;
	struct spate_ring_batch b;

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	/* Sizes near 2^64 must not wrap around in the size computation. */
	static const uint64_t sizes[] = { UINT64_MAX, UINT64_MAX - 3, UINT64_MAX - 7, 1ull << 63 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int rc = spate_ring_reserve(w, sizes[i], &b);
		if (rc == 0)
			spate_ring_abort(w, &b);
		cr_assert_eq(rc, -EMSGSIZE, "reserve(%#llx) returned %d",
			     (unsigned long long)sizes[i], rc);
	}
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, custom_max_record)
{
	struct tl_mem m;
	uint64_t next = 0, fs = 99;

	mem_ring(&m, 64 * KIB, 1000, 0);
	cr_assert_eq(spate_ring_max_record(m.r), 1000);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);

	cr_assert_eq(put_num(w, 1000, 0, NULL), 0);
	cr_assert_eq(put_num(w, 1001, 1, NULL), -EMSGSIZE);
	uint64_t l1[] = { 10, 1001, 20 };
	int rc = put_nums(w, l1, 3, 1, &fs);
	cr_assert(rc == 1 || rc == -EMSGSIZE, "put_batch with an oversized second record: %d", rc);
	uint64_t l2[] = { 1001, 5 };
	cr_assert_eq(put_nums(w, l2, 2, 2, NULL), -EMSGSIZE);
	/* Nothing from the oversized record on was written. */
	cr_assert_eq(drain(rd, &next, NULL), 2);
	cr_assert_eq(next, 2);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, zero_length_records)
{
	struct tl_mem m;
	struct spate_ring_rec recs[32];
	uint64_t seq = 99, fs = 99;

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);

	for (uint64_t i = 0; i < 3; i++) {
		cr_assert_eq(put_num(w, 0, i, &seq), 0);
		cr_assert_eq(seq, i);
	}
	cr_assert_eq(w->head, 3 * (32 + 8), "a zero-length record costs 8 bytes");
	uint64_t z5[] = { 0, 0, 0, 0, 0 };
	cr_assert_eq(put_nums(w, z5, 5, 3, &fs), 5);
	cr_assert_eq(fs, 3);
	cr_assert_eq(w->head, 3 * 40 + 32 + 5 * 8);
	uint64_t mix[] = { 0, 5, 0, 17, 0 };
	cr_assert_eq(commit_nums(w, mix, 5, 8, 0, &fs), 5);
	cr_assert_eq(fs, 8);

	cr_assert_eq(spate_ring_peek(rd, recs, 32, UINT64_MAX), 13);
	for (unsigned i = 0; i < 13; i++) {
		uint64_t want = i < 8 ? 0 : mix[i - 8];
		cr_assert_eq(recs[i].len, want, "record %u: len %u", i, recs[i].len);
		check_rec(&recs[i], i);
		cr_assert_not_null(recs[i].data);
	}
	/* max_bytes 0 still returns zero-length records (they add nothing). */
	cr_assert_eq(spate_ring_peek(rd, recs, 32, 0), 9);
	cr_assert_eq(spate_ring_release(rd, 10), -EINVAL);
	cr_assert_eq(spate_ring_release(rd, 9), 0);
	cr_assert_eq(spate_ring_peek(rd, recs, 32, UINT64_MAX), 4);
	cr_assert_eq(recs[0].seq, 9);
	cr_assert_eq(spate_ring_release(rd, 4), 0);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, long_records, .timeout = 120)
{
	struct tl_mem m;
	struct spate_ring_rec rec;
	uint64_t ctr = 0;
	const uint64_t cap = 64 * MIB;
	static const uint64_t lens[] = {
		SPATE_RING_LONG - 1,   /* 16 MiB - 2: the longest short encoding */
		SPATE_RING_LONG,       /* 16 MiB - 1: the shortest long encoding */
		16 * MIB,
		20000000,              /* 20 MB */
		20000001,
		0, 1, 20000003,
	};

	mem_ring(&m, cap, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(spate_ring_max_record(m.r), cap / 2 - 48);

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]) + 2; i++) {
		uint64_t len = i < sizeof(lens) / sizeof(lens[0]) ? lens[i] : spate_ring_max_record(m.r);
		uint64_t before = w->head;
		uint64_t need = 32 + spate_ring_rec_size(len);
		uint64_t bpos = (cap - (before & (cap - 1)) < need) ? before + (cap - (before & (cap - 1)))
								     : before;
		cr_assert_eq(spate_ring_rec_size(len),
			     8 + (len >= SPATE_RING_LONG ? 8 : 0) + ((len + 7) & ~7ull));
		cr_assert_eq(put_num(w, len, ctr, NULL), 0, "len %llu", (unsigned long long)len);
		cr_assert_eq(w->head, bpos + need);
		const struct spate_ring_rhdr *rh =
			(const void *)(m.r->data + ((bpos + 32) & (cap - 1)));
		if (len >= SPATE_RING_LONG) {
			uint64_t stored;
			memcpy(&stored, rh + 1, 8);
			cr_assert_eq(rh->len_type & SPATE_RING_LONG, SPATE_RING_LONG);
			cr_assert_eq(stored, len);
		} else {
			cr_assert_eq(rh->len_type & SPATE_RING_LONG, len);
		}
		cr_assert_eq(rh->len_type >> 24, tl_type(0, ctr));
		cr_assert_eq(spate_ring_peek(rd, &rec, 1, UINT64_MAX), 1);
		cr_assert_eq(rec.len, len);
		check_rec(&rec, ctr);
		cr_assert_eq(spate_ring_release(rd, 1), 0);
		ctr++;
	}
	cr_assert_gt(w->head, cap, "the test should have wrapped");
	cr_assert_eq(put_num(w, spate_ring_max_record(m.r) + 1, ctr, NULL), -EMSGSIZE);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

/* ------------------------------------------------------------------------ */
/* Sequence numbers, type, key, timestamps                                  */
/* ------------------------------------------------------------------------ */

Test(ring, sequence_numbers_single_writer)
{
	struct tl_mem m;
	struct spate_ring_batch b;
	uint64_t seq = 99, fs = 99, next = 0;
	uint64_t l3[] = { 1, 2, 3 }, l4[] = { 40, 0, 7, 300 };

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);

	cr_assert_eq(put_num(w, 5, 0, &seq), 0);
	cr_assert_eq(seq, 0);
	cr_assert_eq(put_num(w, 5, 1, &seq), 0);
	cr_assert_eq(seq, 1);
	cr_assert_eq(put_nums(w, l3, 3, 2, &fs), 3);
	cr_assert_eq(fs, 2);
	cr_assert_eq(commit_nums(w, l4, 4, 5, 0, &fs), 4);
	cr_assert_eq(fs, 5);
	cr_assert_eq(commit_nums(w, l4, 4, 9, 0, NULL), 4);
	/* An aborted reservation uses no sequence numbers. */
	cr_assert_eq(spate_ring_reserve(w, 100, &b), 0);
	cr_assert_not_null(spate_ring_batch_add(&b, 10, 0, 0));
	spate_ring_abort(w, &b);
	cr_assert_eq(put_num(w, 0, 13, &seq), 0);
	cr_assert_eq(seq, 13);
	cr_assert_eq(drain(rd, &next, NULL), 14);
	/* A new writer continues the numbering. */
	spate_ring_writer_close(w);
	w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(put_num(w, 3, 14, &seq), 0);
	cr_assert_eq(seq, 14);
	cr_assert_eq(put_nums(w, l3, 3, 15, &fs), 3);
	cr_assert_eq(fs, 15);
	cr_assert_eq(drain(rd, &next, NULL), 4);
	cr_assert_eq(next, 18);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

struct commit_arg {
	struct spate_ring_writer *w;
	struct spate_ring_batch *b;
	uint64_t seq;
	int rc;
};

static void *commit_main(void *p)
{
	struct commit_arg *a = p;
	a->rc = spate_ring_commit(a->w, a->b, 0, &a->seq);
	return NULL;
}

Test(ring, sequence_numbers_multi_writer, .timeout = 60)
{
	struct tl_mem m;
	struct spate_ring_batch ba, bb, bc;
	struct spate_ring_rec recs[16];
	uint64_t seq = 99, fs = 99, next = 0;
	uint64_t l2[] = { 11, 22 }, l3[] = { 0, 33, 8 };

	mem_ring(&m, 64 * KIB, 0, SPATE_RING_F_MULTI_WRITER);
	struct spate_ring_writer *w1 = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_writer *w2 = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	cr_assert_neq(w1->slot, w2->slot);

	cr_assert_eq(put_num(w1, 5, 0, &seq), 0);
	cr_assert_eq(seq, 0);

	/* w1 claims first, w2 second; w2 commits first (in another thread: a
	 * multi-writer commit waits for the batches claimed before it). Numbers
	 * follow ring order, and nothing is visible until w1's batch (earlier in
	 * the ring) commits. */
	uint64_t bytes_a = spate_ring_rec_size(l2[0]) + spate_ring_rec_size(l2[1]);
	uint64_t bytes_b = 0;
	for (int i = 0; i < 3; i++)
		bytes_b += spate_ring_rec_size(l3[i]);
	cr_assert_eq(spate_ring_reserve(w1, bytes_a, &ba), 0);
	cr_assert_eq(spate_ring_reserve(w2, bytes_b, &bb), 0);
	cr_assert_lt(ba.pos, bb.pos);
	for (unsigned i = 0; i < 3; i++) {
		void *p = spate_ring_batch_add(&bb, l3[i], tl_key(0, 3 + i), tl_type(0, 3 + i));
		tl_pl_fill(p, l3[i], 0, 3 + i);
	}
	struct commit_arg ca = {.w = w2, .b = &bb, .rc = -1};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, commit_main, &ca), 0);
	usleep(20000);
	cr_assert_eq(drain(rd, &next, NULL), 1, "only record 0 may be visible");
	cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 0);
	for (unsigned i = 0; i < 2; i++) {
		void *p = spate_ring_batch_add(&ba, l2[i], tl_key(0, 1 + i), tl_type(0, 1 + i));
		tl_pl_fill(p, l2[i], 0, 1 + i);
	}
	cr_assert_eq(spate_ring_commit(w1, &ba, 0, &fs), 2);
	cr_assert_eq(fs, 1);
	pthread_join(th, NULL);
	cr_assert_eq(ca.rc, 3);
	cr_assert_eq(ca.seq, 3);
	cr_assert_eq(drain(rd, &next, NULL), 5);

	/* An aborted multi-writer reservation becomes an empty batch: skipped. */
	cr_assert_eq(spate_ring_reserve(w1, 64, &bc), 0);
	spate_ring_abort(w1, &bc);
	cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 0);
	cr_assert_eq(put_num(w2, 9, 6, &seq), 0);
	cr_assert_eq(seq, 6);
	cr_assert_eq(put_nums(w1, l3, 3, 7, &fs), 3);
	cr_assert_eq(fs, 7);
	cr_assert_eq(commit_nums(w2, l2, 2, 10, 0, &fs), 2);
	cr_assert_eq(fs, 10);
	cr_assert_eq(drain(rd, &next, NULL), 6);
	cr_assert_eq(next, 12);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w1);
	spate_ring_writer_close(w2);
	tl_mem_free(&m);
}

/* A ring formatted with first_seq (recreated over a durable log) continues
 * that numbering, for single and multi writers and every reader start. */
static void first_seq_case(uint32_t flags)
{
	const uint64_t first = 123456789012ull;
	struct spate_ring_params p = { .capacity = 64 * KIB, .flags = flags, .first_seq = first };
	size_t sz = spate_ring_memsize(&p);
	cr_assert_gt(sz, 0);
	void *mem = aligned_alloc(4096, (sz + 4095) & ~(size_t)4095);
	cr_assert_not_null(mem);
	cr_assert_eq(spate_ring_format(mem, sz, &p), 0);
	struct spate_ring *r = NULL;
	cr_assert_eq(spate_ring_open_mem(mem, sz, &r), 0);
	struct spate_ring_reader *old = open_reader(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *late = open_reader(r, SPATE_RING_START_LATEST, SPATE_RING_WAIT_YIELD);
	struct spate_ring_writer *w = open_writer(r, SPATE_RING_WAIT_YIELD);
	uint64_t seq = 0, l3[] = { 8, 16, 24 }, fs = 0;

	cr_assert_eq(put_num(w, 5, 0, &seq), 0);
	cr_assert_eq(seq, first);
	cr_assert_eq(put_nums(w, l3, 3, 1, &fs), 3);
	cr_assert_eq(fs, first + 1);
	struct spate_ring_reader *rds[2] = { old, late };
	for (int k = 0; k < 2; k++) {
		struct spate_ring_rec recs[8];
		uint64_t got = 0;
		int n;
		while ((n = spate_ring_peek(rds[k], recs, 8, UINT64_MAX)) > 0) {
			for (int i = 0; i < n; i++) {
				cr_assert_eq(recs[i].seq, first + got, "reader %d record %llu: seq %llu",
					     k, (unsigned long long)got,
					     (unsigned long long)recs[i].seq);
				got++;
			}
			cr_assert_eq(spate_ring_release(rds[k], (unsigned)n), 0);
		}
		cr_assert_eq(n, 0);
		cr_assert_eq(got, 4);
	}
	spate_ring_reader_close(old);
	spate_ring_reader_close(late);
	spate_ring_writer_close(w);
	spate_ring_close(r);
	free(mem);
}

Test(ring, first_seq_single_writer, .timeout = 30)
{
	first_seq_case(0);
}

Test(ring, first_seq_multi_writer, .timeout = 30)
{
	first_seq_case(SPATE_RING_F_MULTI_WRITER);
}

Test(ring, first_seq_out_of_range)
{
	struct spate_ring_params p = { .capacity = 64 * KIB, .first_seq = 1ull << 62 };
	cr_assert_eq(spate_ring_memsize(&p), 0);
}

Test(ring, type_and_key_round_trip)
{
	for (int mw = 0; mw < 2; mw++) {
		struct tl_mem m;
		struct spate_ring_rec recs[8];
		static const uint32_t keys[] = { 0, 1, 0x7fffffffu, 0x80000000u, 0xffffffffu, 0xdeadbeefu };
		uint64_t expect = 0;

		mem_ring(&m, 64 * KIB, 0, mw ? SPATE_RING_F_MULTI_WRITER : 0);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		for (unsigned t = 0; t < 256; t++) {
			for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
				uint32_t key = keys[k] ^ (t * 0x01010101u * (k > 2));
				uint8_t payload[3] = { (uint8_t)t, (uint8_t)k, 0x5a };
				uint64_t len = (t + k) % 4;
				cr_assert_eq(spate_ring_put(w, payload, len, key, (uint8_t)t, NULL), 0);
				int n = spate_ring_peek(rd, recs, 8, UINT64_MAX);
				cr_assert_eq(n, 1);
				cr_assert_eq(recs[0].type, t);
				cr_assert_eq(recs[0].key_hash, key);
				cr_assert_eq(recs[0].len, len);
				cr_assert_eq(recs[0].seq, expect++);
				cr_assert_eq(memcmp(recs[0].data, payload, (size_t)len), 0);
				cr_assert_eq(spate_ring_release(rd, 1), 0);
			}
		}
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

Test(ring, timestamps)
{
	for (int mw = 0; mw < 2; mw++) {
		struct tl_mem m;
		struct spate_ring_rec recs[8];
		uint64_t l3[] = { 1, 20, 300 };

		mem_ring(&m, 64 * KIB, 0, mw ? SPATE_RING_F_MULTI_WRITER : 0);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		/* Given timestamps come back, the same for every record of a batch. */
		cr_assert_eq(commit_nums(w, l3, 3, 0, 123456789ull, NULL), 3);
		cr_assert_eq(commit_nums(w, l3, 3, 3, UINT64_MAX - 1, NULL), 3);
		cr_assert_eq(commit_nums(w, l3, 1, 6, 1, NULL), 1);
		cr_assert_eq(spate_ring_peek(rd, recs, 8, UINT64_MAX), 7);
		for (int i = 0; i < 3; i++) {
			cr_assert_eq(recs[i].ts, 123456789ull);
			cr_assert_eq(recs[3 + i].ts, UINT64_MAX - 1);
		}
		cr_assert_eq(recs[6].ts, 1);
		cr_assert_eq(spate_ring_release(rd, 7), 0);
		/* 0 means now: commit, put and put_batch. */
		uint64_t t0 = spate_now_ns();
		cr_assert_eq(commit_nums(w, l3, 3, 7, 0, NULL), 3);
		cr_assert_eq(put_num(w, 8, 10, NULL), 0);
		cr_assert_eq(put_nums(w, l3, 3, 11, NULL), 3);
		uint64_t t1 = spate_now_ns();
		cr_assert_eq(spate_ring_peek(rd, recs, 8, UINT64_MAX), 7);
		for (int i = 0; i < 7; i++) {
			check_rec(&recs[i], 7 + (uint64_t)i);
			cr_assert_geq(recs[i].ts + SEC, t0, "ts %llu vs now %llu",
				      (unsigned long long)recs[i].ts, (unsigned long long)t0);
			cr_assert_leq(recs[i].ts, t1 + SEC, "ts %llu vs now %llu",
				      (unsigned long long)recs[i].ts, (unsigned long long)t1);
		}
		cr_assert_eq(recs[0].ts, recs[2].ts, "one batch, one timestamp");
		cr_assert_eq(spate_ring_release(rd, 7), 0);
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

/* ------------------------------------------------------------------------ */
/* Peek and release                                                         */
/* ------------------------------------------------------------------------ */

Test(ring, partial_release)
{
	for (int mw = 0; mw < 2; mw++) {
		struct tl_mem m;
		struct spate_ring_rec recs[16];
		uint64_t l4[] = { 10, 20, 30, 40 }, l6[] = { 1, 2, 3, 4, 5, 6 };
		uint64_t lr, lb;

		mem_ring(&m, 64 * KIB, 0, mw ? SPATE_RING_F_MULTI_WRITER : 0);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		cr_assert_eq(put_nums(w, l4, 4, 0, NULL), 4);
		cr_assert_eq(put_nums(w, l6, 6, 4, NULL), 6);

		cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 10);
		cr_assert_eq(spate_ring_release(rd, 11), -EINVAL);
		cr_assert_eq(spate_ring_release(rd, 3), 0);
		spate_ring_lag(rd, &lr, &lb);
		cr_assert_eq(lr, 7);
		cr_assert_eq(spate_ring_release(rd, 1), -EINVAL, "release ends the peek");
		cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 7);
		for (int i = 0; i < 7; i++)
			check_rec(&recs[i], 3 + (uint64_t)i);
		cr_assert_eq(spate_ring_release(rd, 0), 0);
		cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 7);
		cr_assert_eq(recs[0].seq, 3);
		/* Across the batch boundary (records 3 and 4). */
		cr_assert_eq(spate_ring_release(rd, 2), 0);
		cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 5);
		cr_assert_eq(recs[0].seq, 5);
		check_rec(&recs[0], 5);
		cr_assert_eq(spate_ring_release(rd, 6), -EINVAL);
		cr_assert_eq(spate_ring_release(rd, 5), 0);
		spate_ring_lag(rd, &lr, &lb);
		cr_assert_eq(lr, 0);
		cr_assert_eq(lb, 0);
		cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 0);
		cr_assert_eq(spate_ring_release(rd, 1), -EINVAL);
		/* Partial release exactly at a batch end. */
		cr_assert_eq(put_nums(w, l4, 4, 10, NULL), 4);
		cr_assert_eq(put_nums(w, l6, 6, 14, NULL), 6);
		cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 10);
		cr_assert_eq(spate_ring_release(rd, 4), 0);
		cr_assert_eq(spate_ring_peek(rd, recs, 2, UINT64_MAX), 2);
		check_rec(&recs[0], 14);
		check_rec(&recs[1], 15);
		cr_assert_eq(spate_ring_release(rd, 1), 0);
		cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 5);
		check_rec(&recs[0], 15);
		cr_assert_eq(spate_ring_release(rd, 5), 0);
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

Test(ring, repeek_returns_same_records)
{
	struct tl_mem m;
	struct spate_ring_rec a[16], b[16];
	uint64_t l5[] = { 3, 30, 300, 0, 17 };

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(put_nums(w, l5, 3, 0, NULL), 3);
	cr_assert_eq(put_nums(w, l5 + 3, 2, 3, NULL), 2);
	cr_assert_eq(spate_ring_peek(rd, a, 16, UINT64_MAX), 5);
	for (int round = 0; round < 3; round++) {
		cr_assert_eq(spate_ring_peek(rd, b, 16, UINT64_MAX), 5);
		for (int i = 0; i < 5; i++) {
			cr_assert_eq(a[i].data, b[i].data);
			cr_assert_eq(a[i].seq, b[i].seq);
			cr_assert_eq(a[i].len, b[i].len);
			cr_assert_eq(a[i].ts, b[i].ts);
			cr_assert_eq(a[i].type, b[i].type);
			cr_assert_eq(a[i].key_hash, b[i].key_hash);
			check_rec(&b[i], (uint64_t)i);
		}
	}
	/* More published in between: the same first records, then the new ones. */
	cr_assert_eq(put_num(w, 9, 5, NULL), 0);
	cr_assert_eq(spate_ring_peek(rd, b, 16, UINT64_MAX), 6);
	cr_assert_eq(b[0].data, a[0].data);
	check_rec(&b[5], 5);
	cr_assert_eq(spate_ring_peek(rd, b, 2, UINT64_MAX), 2);
	cr_assert_eq(b[1].seq, 1);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, peek_max_bytes)
{
	struct tl_mem m;
	struct spate_ring_rec recs[16];
	uint64_t ctr = 0;

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	for (; ctr < 10; ctr++)
		cr_assert_eq(put_num(w, 100, ctr, NULL), 0);
	static const struct { uint64_t max_bytes; unsigned max; int n; } c[] = {
		{ 0, 16, 1 }, { 1, 16, 1 }, { 99, 16, 1 }, { 100, 16, 1 }, { 199, 16, 1 },
		{ 200, 16, 2 }, { 250, 16, 2 }, { 999, 16, 9 }, { 1000, 16, 10 },
		{ UINT64_MAX, 16, 10 }, { UINT64_MAX, 3, 3 }, { 250, 1, 1 }, { 1000, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		int n = spate_ring_peek(rd, recs, c[i].max, c[i].max_bytes);
		cr_assert_eq(n, c[i].n, "max_bytes %llu max %u: %d", (unsigned long long)c[i].max_bytes,
			     c[i].max, n);
		for (int k = 0; k < n; k++)
			check_rec(&recs[k], (uint64_t)k);
	}
	cr_assert_eq(spate_ring_peek(rd, recs, 16, 250), 2);
	cr_assert_eq(spate_ring_release(rd, 2), 0);
	cr_assert_eq(spate_ring_peek(rd, recs, 16, 250), 2);
	check_rec(&recs[0], 2);
	cr_assert_eq(spate_ring_release(rd, 2), 0);
	/* Zero-length records do not count against the limit. */
	uint64_t lz[] = { 0, 100, 0, 100, 0 };
	cr_assert_eq(put_nums(w, lz, 5, 10, NULL), 5);
	uint64_t next = 4;
	cr_assert_eq(drain(rd, &next, NULL), 11);
	cr_assert_eq(spate_ring_peek(rd, recs, 16, 100), 0);
	cr_assert_eq(put_nums(w, lz, 5, 15, NULL), 5);
	cr_assert_eq(spate_ring_peek(rd, recs, 16, 100), 3);
	cr_assert_eq(spate_ring_peek(rd, recs, 16, 199), 3);
	cr_assert_eq(spate_ring_peek(rd, recs, 16, 200), 5);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

/* ------------------------------------------------------------------------ */
/* put_batch splitting                                                      */
/* ------------------------------------------------------------------------ */

Test(ring, put_batch_splits_by_record_count, .timeout = 60)
{
	for (int mw = 0; mw < 2; mw++) {
		struct tl_mem m;
		const unsigned n = SPATE_RING_MAX_BATCH_RECORDS + 4466;
		uint64_t *lens = calloc(n, sizeof(*lens));
		uint64_t fs = 99, next = 0;

		mem_ring(&m, 4 * MIB, 0, mw ? SPATE_RING_F_MULTI_WRITER : 0);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		cr_assert_eq(put_nums(w, lens, n, 0, &fs), (int)n);
		cr_assert_eq(fs, 0);
		const struct spate_ring_bhdr *h0 = bhdr_at(m.r, 0);
		cr_assert_eq(h0->count, SPATE_RING_MAX_BATCH_RECORDS);
		cr_assert_eq(bh_len(h0), 32 + 8ull * SPATE_RING_MAX_BATCH_RECORDS);
		const struct spate_ring_bhdr *h1 = bhdr_at(m.r, bh_len(h0));
		cr_assert_eq(h1->count, 4466);
		cr_assert_eq(h1->base_seq, SPATE_RING_MAX_BATCH_RECORDS);
		cr_assert_eq(drain(rd, &next, NULL), n);
		/* reserve + batch_add refuses record 65536 of one batch. */
		struct spate_ring_batch b;
		cr_assert_eq(spate_ring_reserve(w, 8ull * (SPATE_RING_MAX_BATCH_RECORDS + 1), &b), 0);
		for (unsigned i = 0; i < SPATE_RING_MAX_BATCH_RECORDS; i++) {
			void *p = spate_ring_batch_add(&b, 0, tl_key(0, next + i), tl_type(0, next + i));
			cr_assert_not_null(p);
		}
		cr_assert_null(spate_ring_batch_add(&b, 0, 0, 0));
		cr_assert_eq(spate_ring_commit(w, &b, 0, &fs), SPATE_RING_MAX_BATCH_RECORDS);
		cr_assert_eq(fs, n);
		cr_assert_eq(drain(rd, &next, NULL), SPATE_RING_MAX_BATCH_RECORDS);
		free(lens);
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

Test(ring, put_batch_splits_by_bytes)
{
	for (int mw = 0; mw < 2; mw++) {
		struct tl_mem m;
		uint64_t lens[200], fs = 99, next = 0;

		for (int i = 0; i < 200; i++)
			lens[i] = 1000;
		mem_ring(&m, 256 * KIB, 0, mw ? SPATE_RING_F_MULTI_WRITER : 0);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		cr_assert_eq(put_nums(w, lens, 200, 0, &fs), 200);
		cr_assert_eq(fs, 0);
		/* (128 KiB - 32) / 1008 = 130 records fill the first batch exactly. */
		cr_assert_eq(bhdr_at(m.r, 0)->count, 130);
		cr_assert_eq(bh_len(bhdr_at(m.r, 0)), 128 * KIB);
		cr_assert_eq(bhdr_at(m.r, 128 * KIB)->count, 70);
		cr_assert_eq(bhdr_at(m.r, 128 * KIB)->base_seq, 130);
		cr_assert_eq(drain(rd, &next, NULL), 200);
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

Test(ring, put_batch_partial_when_full)
{
	for (int mw = 0; mw < 2; mw++) {
		struct tl_mem m;
		struct spate_ring_rec recs[8];
		uint64_t lens[100], fs = 99, next = 0;

		for (int i = 0; i < 100; i++)
			lens[i] = 1000;
		mem_ring(&m, 64 * KIB, 0, mw ? SPATE_RING_F_MULTI_WRITER : 0);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		/* Two batches of 32 fit; the third does not. */
		cr_assert_eq(put_nums(w, lens, 100, 0, &fs), 64);
		cr_assert_eq(fs, 0);
		cr_assert_eq(put_nums(w, lens, 5, 64, &fs), -EAGAIN);
		cr_assert_eq(drain(rd, &next, NULL), 64);
		/* A call that fits in one batch is all or nothing: 20 and 32 records
		 * fit (after a pad), 20 more do not. */
		cr_assert_eq(put_nums(w, lens, 20, 64, &fs), 20);
		cr_assert_eq(fs, 64);
		cr_assert_eq(put_nums(w, lens, 32, 84, &fs), 32);
		cr_assert_eq(fs, 84);
		cr_assert_eq(put_nums(w, lens, 20, 116, &fs), -EAGAIN);
		cr_assert_eq(drain(rd, &next, NULL), 52);
		cr_assert_eq(spate_ring_peek(rd, recs, 8, UINT64_MAX), 0);
		cr_assert_eq(put_nums(w, lens, 0, 116, &fs), 0);
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

/* ------------------------------------------------------------------------ */
/* Readers: start, lag, eviction, slots                                     */
/* ------------------------------------------------------------------------ */

Test(ring, reader_start_oldest_latest)
{
	for (int mw = 0; mw < 2; mw++) {
		struct tl_mem m;
		struct spate_ring_rec recs[8];
		uint64_t next_o = 0, next_l = 10;

		mem_ring(&m, 64 * KIB, 0, mw ? SPATE_RING_F_MULTI_WRITER : 0);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
		for (uint64_t i = 0; i < 10; i++)
			cr_assert_eq(put_num(w, i * 10, i, NULL), 0);
		struct spate_ring_reader *ro = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		struct spate_ring_reader *rl = open_reader(m.r, SPATE_RING_START_LATEST,
							   SPATE_RING_WAIT_YIELD);
		cr_assert_eq(spate_ring_peek(rl, recs, 8, UINT64_MAX), 0);
		cr_assert_eq(spate_ring_reader_wait(rl, 1 * MS), -ETIMEDOUT);
		cr_assert_eq(spate_ring_peek(ro, recs, 8, UINT64_MAX), 8);
		check_rec(&recs[0], 0);
		for (uint64_t i = 10; i < 15; i++)
			cr_assert_eq(put_num(w, i, i, NULL), 0);
		cr_assert_eq(drain(rl, &next_l, NULL), 5);
		cr_assert_eq(drain(ro, &next_o, NULL), 15);
		spate_ring_reader_close(ro);
		spate_ring_reader_close(rl);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

static void oldest_after_wraps(uint32_t flags)
{
	struct tl_mem m;
	struct tl_rng g;
	struct spate_ring_rec rec;
	const uint64_t cap = 64 * KIB;
	uint64_t ctr = 0, lens[16];
	const uint64_t total_bytes = 40 * cap;
	uint8_t *batch_start = calloc(1, 1 << 20);

	tl_rng_seed(&g, 99 + flags);
	mem_ring(&m, cap, 0, flags);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	while (head_of(w) < total_bytes) {
		unsigned k = (unsigned)(1 + tl_rng_below(&g, 16));
		uint64_t fs = UINT64_MAX;
		for (unsigned i = 0; i < k; i++)
			lens[i] = tl_rng_below(&g, 400);
		int rc = (k & 1) ? put_nums(w, lens, k, ctr, &fs) : commit_nums(w, lens, k, ctr, 0, &fs);
		cr_assert_eq(rc, (int)k);
		cr_assert_eq(fs, ctr);
		cr_assert_lt(ctr, 1 << 20);
		batch_start[ctr] = 1;
		ctr += k;
	}
	for (int round = 0; round < 3; round++) {
		struct spate_ring_reader *ro = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		struct spate_ring_reader *rl = open_reader(m.r, SPATE_RING_START_LATEST,
							   SPATE_RING_WAIT_YIELD);
		uint64_t tail = atomic_load(&m.r->sh->pub.tail);
		cr_assert_eq(ro->pos, atomic_load(&m.r->sh->prod.trim));
		const uint64_t history = tail - ro->pos;
		cr_assert_leq(history, cap);
		cr_assert_eq(spate_ring_peek(rl, &rec, 1, UINT64_MAX), 0);
		cr_assert_eq(spate_ring_peek(ro, &rec, 1, UINT64_MAX), 1);
		uint64_t first = rec.seq;
		cr_assert_gt(first, 0);
		cr_assert_lt(first, ctr);
		cr_assert(batch_start[first], "OLDEST starts at seq %llu, not a batch start",
			  (unsigned long long)first);
		check_rec(&rec, first);
		uint64_t next = first;
		cr_assert_eq(drain(ro, &next, NULL), ctr - first);
		/* Most of the ring stays readable history. */
		cr_assert_geq(history, cap / 4, "round %d: only %llu bytes of history", round,
			      (unsigned long long)history);
		/* Readers are now caught up; a few more records for both. */
		uint64_t next_l = ctr;
		for (int i = 0; i < 3; i++, ctr++) {
			cr_assert_eq(put_num(w, 50, ctr, NULL), 0);
			batch_start[ctr] = 1;
		}
		cr_assert_eq(drain(ro, &next, NULL), 3);
		cr_assert_eq(drain(rl, &next_l, NULL), 3);
		spate_ring_reader_close(ro);
		spate_ring_reader_close(rl);
		/* Wrap many more times with no reader. */
		uint64_t goal = head_of(w) + 7 * cap + 4096 * (uint64_t)round;
		while (head_of(w) < goal) {
			unsigned k = (unsigned)(1 + tl_rng_below(&g, 16));
			for (unsigned i = 0; i < k; i++)
				lens[i] = tl_rng_below(&g, 400);
			cr_assert_eq(put_nums(w, lens, k, ctr, NULL), (int)k);
			batch_start[ctr] = 1;
			ctr += k;
		}
	}
	free(batch_start);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, oldest_after_wraps_single_writer)
{
	oldest_after_wraps(0);
}

Test(ring, oldest_after_wraps_multi_writer)
{
	oldest_after_wraps(SPATE_RING_F_MULTI_WRITER);
}

Test(ring, lag)
{
	for (int mw = 0; mw < 2; mw++) {
		struct tl_mem m;
		struct spate_ring_rec recs[16];
		uint64_t lr = 99, lb = 99;

		mem_ring(&m, 64 * KIB, 0, mw ? SPATE_RING_F_MULTI_WRITER : 0);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		/* Each 100-byte record alone in a batch: 32 + 8 + 104 = 144 bytes. */
		cr_assert_eq(put_num(w, 100, 0, NULL), 0);
		cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 1);
		cr_assert_eq(spate_ring_release(rd, 1), 0);
		spate_ring_lag(rd, &lr, &lb);
		cr_assert_eq(lr, 0);
		cr_assert_eq(lb, 0);
		for (uint64_t i = 1; i <= 10; i++)
			cr_assert_eq(put_num(w, 100, i, NULL), 0);
		spate_ring_lag(rd, &lr, &lb);
		cr_assert_eq(lr, 10);
		cr_assert_eq(lb, 1440);
		spate_ring_lag(rd, NULL, &lb);
		spate_ring_lag(rd, &lr, NULL);
		cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 10);
		spate_ring_lag(rd, &lr, &lb);
		cr_assert_eq(lr, 10, "peeking releases nothing");
		cr_assert_eq(lb, 1440);
		cr_assert_eq(spate_ring_release(rd, 4), 0);
		spate_ring_lag(rd, &lr, &lb);
		cr_assert_eq(lr, 6);
		cr_assert_eq(lb, 6 * 144);
		/* Within a batch: 5 records of 100 = 32 + 5 * 112. */
		uint64_t l5[] = { 100, 100, 100, 100, 100 };
		cr_assert_eq(put_nums(w, l5, 5, 11, NULL), 5);
		spate_ring_lag(rd, &lr, &lb);
		cr_assert_eq(lr, 11);
		cr_assert_eq(lb, 6 * 144 + 32 + 5 * 112);
		cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), 11);
		cr_assert_eq(spate_ring_release(rd, 8), 0);
		spate_ring_lag(rd, &lr, &lb);
		cr_assert_eq(lr, 3);
		cr_assert_eq(lb, 3 * 112);
		uint64_t next = 13;
		cr_assert_eq(drain(rd, &next, NULL), 3);
		spate_ring_lag(rd, &lr, &lb);
		cr_assert_eq(lr, 0);
		cr_assert_eq(lb, 0);
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

/* The lag of a reader that has not peeked yet counts what it will read. */
Test(ring, lag_before_first_peek)
{
	struct tl_mem m;
	uint64_t lr = 99, lb = 99;

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *early = open_reader(m.r, SPATE_RING_START_OLDEST,
						      SPATE_RING_WAIT_YIELD);
	for (uint64_t i = 0; i < 10; i++)
		cr_assert_eq(put_num(w, 100, i, NULL), 0);
	struct spate_ring_reader *late = open_reader(m.r, SPATE_RING_START_OLDEST,
						     SPATE_RING_WAIT_YIELD);
	spate_ring_lag(early, &lr, &lb);
	cr_assert_eq(lb, 1440);
	cr_assert_eq(lr, 10, "reader opened on the empty ring: lag %llu records, %llu bytes",
		     (unsigned long long)lr, (unsigned long long)lb);
	spate_ring_lag(late, &lr, &lb);
	cr_assert_eq(lb, 1440);
	cr_assert_eq(lr, 10, "reader opened at OLDEST after 10 records: lag %llu records, %llu bytes",
		     (unsigned long long)lr, (unsigned long long)lb);
	spate_ring_reader_close(early);
	spate_ring_reader_close(late);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, evict_reader, .timeout = 30)
{
	struct tl_mem m;
	struct spate_ring_rec recs[8];
	uint64_t ctr = 0, ns, next_b = 0;
	int rc;

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *a = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *b = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *c = open_reader(m.r, SPATE_RING_START_LATEST, SPATE_RING_WAIT_BLOCK);
	uint64_t n = fill_1000(w, &ctr, &rc, &ns);
	cr_assert_eq(rc, -EAGAIN);
	cr_assert_eq(drain(b, &next_b, NULL), n);
	uint64_t next_c = 0;
	cr_assert_eq(drain(c, &next_c, NULL), n);
	cr_assert_eq(put_num(w, 1000, ctr, NULL), -EAGAIN, "a holds the writer back");

	cr_assert_eq(spate_ring_reader_evict(m.r, a->index), 0);
	cr_assert_eq(spate_ring_reader_evict(m.r, a->index), -ENOENT);
	cr_assert_eq(spate_ring_reader_evict(m.r, SPATE_RING_MAX_READERS), -EINVAL);
	cr_assert_eq(spate_ring_reader_evict(m.r, UINT32_MAX), -EINVAL);
	uint32_t unused = 0;
	while (unused == a->index || unused == b->index || unused == c->index)
		unused++;
	cr_assert_eq(spate_ring_reader_evict(m.r, unused), -ENOENT);

	/* The writer is free: a full ring's worth more while b and c keep up. */
	for (uint64_t i = 0; i < 2 * n; i++) {
		cr_assert_eq(put_num(w, 1000, ctr++, NULL), 0);
		cr_assert_eq(drain(b, &next_b, NULL), 1);
		cr_assert_eq(drain(c, &next_c, NULL), 1);
	}
	/* The evicted reader is told. */
	cr_assert_eq(spate_ring_peek(a, recs, 8, UINT64_MAX), -EPIPE);
	cr_assert_eq(spate_ring_peek(a, recs, 8, UINT64_MAX), -EPIPE);
	/* A caught-up reader that is evicted while waiting is told too. */
	cr_assert_eq(spate_ring_reader_evict(m.r, c->index), 0);
	uint64_t t0 = tl_mono_ns();
	cr_assert_eq(spate_ring_reader_wait(c, 5 * SEC), -EPIPE);
	cr_assert_lt(tl_mono_ns() - t0, 1 * SEC);
	cr_assert_eq(spate_ring_peek(c, recs, 8, UINT64_MAX), -EPIPE);
	/* Closing an evicted reader frees its slot. */
	uint32_t ia = a->index;
	spate_ring_reader_close(a);
	spate_ring_reader_close(c);
	struct spate_ring_reader *a2 = open_reader(m.r, SPATE_RING_START_LATEST, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(a2->index, ia);
	spate_ring_reader_close(a2);
	spate_ring_reader_close(b);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

/* reader_evict's contract: "The reader's next peek/release/wait returns -EPIPE",
 * also when the reader has records cached from an earlier look at tail. */
Test(ring, evict_reader_mid_stream)
{
	struct tl_mem m;
	struct spate_ring_rec recs[8];

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *a = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	for (uint64_t i = 0; i < 10; i++)
		cr_assert_eq(put_num(w, 100, i, NULL), 0);
	cr_assert_eq(spate_ring_peek(a, recs, 2, UINT64_MAX), 2);
	cr_assert_eq(spate_ring_release(a, 2), 0);
	cr_assert_eq(spate_ring_peek(a, recs, 2, UINT64_MAX), 2);
	cr_assert_eq(spate_ring_reader_evict(m.r, a->index), 0);
	cr_assert_eq(spate_ring_release(a, 2), -EPIPE);
	/* Records 4..9 are published; ask for fewer, so that peek does not reach
	 * its cached tail (and re-read the slot state on the way). */
	int n = spate_ring_peek(a, recs, 2, UINT64_MAX);
	cr_assert_eq(n, -EPIPE, "peek after eviction returned %d (records the writer may now "
		     "overwrite)", n);
	spate_ring_reader_close(a);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

struct blocked_put {
	struct spate_ring_writer *w;
	uint64_t ctr;
	_Atomic int done;
	int rc;
	uint64_t t_done;
};

static void *blocked_put_main(void *arg)
{
	struct blocked_put *bp = arg;

	bp->rc = put_num(bp->w, 1000, bp->ctr, NULL);
	bp->t_done = tl_mono_ns();
	atomic_store(&bp->done, 1);
	return NULL;
}

/* A writer sleeping on a full FULL_WAIT ring is woken by: 0 release,
 * 1 eviction of the reader holding it, 2 close of that reader. */
static void writer_woken_by(int how, uint32_t extra_flags, enum spate_ring_wait wait)
{
	struct tl_mem m;
	struct spate_ring_rec recs[64];
	uint64_t ctr = 0, ns;
	int rc;
	pthread_t th;

	mem_ring(&m, 64 * KIB, 0, SPATE_RING_F_FULL_WAIT | extra_flags);
	struct spate_ring_writer *w = open_writer(m.r, wait);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	w->timeout_ns = 1 * MS;
	uint64_t n = fill_1000(w, &ctr, &rc, &ns);
	cr_assert_eq(rc, -ETIMEDOUT);
	cr_assert_gt(n, 10);
	w->timeout_ns = 20 * SEC;

	struct blocked_put bp = { .w = w, .ctr = ctr };
	cr_assert_eq(pthread_create(&th, NULL, blocked_put_main, &bp), 0);
	usleep(100 * 1000);
	cr_assert_eq(atomic_load(&bp.done), 0, "the writer did not wait (rc %d)", bp.rc);
	uint64_t t0 = tl_mono_ns();
	switch (how) {
	case 0:
		cr_assert_eq(spate_ring_peek(rd, recs, 64, UINT64_MAX), (int)n);
		cr_assert_eq(spate_ring_release(rd, 2), 0);
		break;
	case 1:
		cr_assert_eq(spate_ring_reader_evict(m.r, rd->index), 0);
		break;
	default:
		spate_ring_reader_close(rd);
		rd = NULL;
		break;
	}
	pthread_join(th, NULL);
	cr_assert_eq(bp.rc, 0, "blocked put returned %d", bp.rc);
	cr_assert_lt(bp.t_done - t0, 5 * SEC, "woken after %llu ns", (unsigned long long)(bp.t_done - t0));
	if (how == 0) {
		uint64_t next = 2;
		cr_assert_eq(drain(rd, &next, NULL), n - 2 + 1);
	}
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, blocked_writer_woken_by_release, .timeout = 60)
{
	writer_woken_by(0, 0, SPATE_RING_WAIT_BLOCK);
	writer_woken_by(0, SPATE_RING_F_MULTI_WRITER, SPATE_RING_WAIT_BLOCK);
	writer_woken_by(0, 0, SPATE_RING_WAIT_YIELD);
}

Test(ring, blocked_writer_woken_by_evict, .timeout = 60)
{
	writer_woken_by(1, 0, SPATE_RING_WAIT_BLOCK);
	writer_woken_by(1, SPATE_RING_F_MULTI_WRITER, SPATE_RING_WAIT_BLOCK);
}

Test(ring, blocked_writer_woken_by_reader_close, .timeout = 60)
{
	writer_woken_by(2, 0, SPATE_RING_WAIT_BLOCK);
	writer_woken_by(2, SPATE_RING_F_MULTI_WRITER, SPATE_RING_WAIT_BLOCK);
}

struct waiting_reader {
	struct spate_ring_reader *rd;
	int rc;
	uint64_t t_done;
};

static void *waiting_reader_main(void *arg)
{
	struct waiting_reader *wr = arg;

	wr->rc = spate_ring_reader_wait(wr->rd, 20 * SEC);
	wr->t_done = tl_mono_ns();
	return NULL;
}

Test(ring, blocked_reader_woken_by_publish, .timeout = 60)
{
	for (int mw = 0; mw < 2; mw++) {
		struct tl_mem m;
		struct spate_ring_rec rec;
		pthread_t th;

		mem_ring(&m, 64 * KIB, 0, mw ? SPATE_RING_F_MULTI_WRITER : 0);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_BLOCK);
		struct waiting_reader wr = {
			.rd = open_reader(m.r, SPATE_RING_START_LATEST, SPATE_RING_WAIT_BLOCK),
		};
		cr_assert_eq(pthread_create(&th, NULL, waiting_reader_main, &wr), 0);
		usleep(100 * 1000);
		uint64_t t0 = tl_mono_ns();
		cr_assert_eq(put_num(w, 77, 0, NULL), 0);
		pthread_join(th, NULL);
		cr_assert_eq(wr.rc, 0);
		cr_assert_lt(wr.t_done - t0, 5 * SEC);
		cr_assert_eq(spate_ring_peek(wr.rd, &rec, 1, UINT64_MAX), 1);
		check_rec(&rec, 0);
		spate_ring_reader_close(wr.rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

Test(ring, reader_slots)
{
	struct tl_mem m;
	struct spate_ring_reader *rds[SPATE_RING_MAX_READERS + 1] = { 0 };
	struct spate_ring_reader *x = NULL;
	uint64_t seen = 0;

	mem_ring(&m, 64 * KIB, 0, 0);
	for (unsigned i = 0; i < SPATE_RING_MAX_READERS; i++) {
		rds[i] = open_reader(m.r, i % 2 ? SPATE_RING_START_LATEST : SPATE_RING_START_OLDEST,
				     SPATE_RING_WAIT_YIELD);
		cr_assert_lt(rds[i]->index, SPATE_RING_MAX_READERS);
		cr_assert_eq(seen & (1ull << rds[i]->index), 0, "slot %u given twice", rds[i]->index);
		seen |= 1ull << rds[i]->index;
	}
	cr_assert_eq(spate_ring_reader_open(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD, &x),
		     -EBUSY);
	cr_assert_eq(spate_ring_reader_open(m.r, SPATE_RING_START_LATEST, SPATE_RING_WAIT_BLOCK, &x),
		     -EBUSY);
	uint32_t freed = rds[10]->index;
	spate_ring_reader_close(rds[10]);
	rds[10] = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(rds[10]->index, freed);
	cr_assert_eq(spate_ring_reader_open(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD, &x),
		     -EBUSY);
	/* Evicted slots stay taken until their owner closes them. */
	cr_assert_eq(spate_ring_reader_evict(m.r, rds[20]->index), 0);
	cr_assert_eq(spate_ring_reader_open(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD, &x),
		     -EBUSY);
	for (unsigned i = 0; i < SPATE_RING_MAX_READERS; i++)
		spate_ring_reader_close(rds[i]);
	cr_assert_eq(atomic_load(&m.r->sh->pub.reader_mask), 0);
	/* All free again. */
	for (unsigned i = 0; i < SPATE_RING_MAX_READERS; i++)
		rds[i] = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	for (unsigned i = 0; i < SPATE_RING_MAX_READERS; i++)
		spate_ring_reader_close(rds[i]);
	tl_mem_free(&m);
}

Test(ring, reader_close_releases_back_pressure)
{
	struct tl_mem m;
	uint64_t ctr = 0, ns;
	int rc;

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	fill_1000(w, &ctr, &rc, &ns);
	cr_assert_eq(rc, -EAGAIN);
	spate_ring_reader_close(rd);
	for (int i = 0; i < 200; i++)
		cr_assert_eq(put_num(w, 1000, ctr++, NULL), 0);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, writer_slots)
{
	struct tl_mem m;
	struct spate_ring_writer *x = NULL;

	/* Single writer: one at a time. */
	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w1 = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(spate_ring_writer_open(m.r, SPATE_RING_WAIT_YIELD, &x), -EBUSY);
	cr_assert_eq(spate_ring_writer_open(m.r, SPATE_RING_WAIT_BLOCK, &x), -EBUSY);
	spate_ring_writer_close(w1);
	w1 = open_writer(m.r, SPATE_RING_WAIT_BUSY);
	spate_ring_writer_close(w1);
	spate_ring_writer_close(NULL);
	spate_ring_reader_close(NULL);
	tl_mem_free(&m);

	/* Multi-writer: up to SPATE_RING_MAX_WRITERS, each usable. */
	struct spate_ring_writer *ws[SPATE_RING_MAX_WRITERS];
	uint64_t next = 0;
	mem_ring(&m, 64 * KIB, 0, SPATE_RING_F_MULTI_WRITER);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	for (unsigned i = 0; i < SPATE_RING_MAX_WRITERS; i++)
		ws[i] = open_writer(m.r, i % 2 ? SPATE_RING_WAIT_YIELD : SPATE_RING_WAIT_BLOCK);
	cr_assert_eq(spate_ring_writer_open(m.r, SPATE_RING_WAIT_YIELD, &x), -EBUSY);
	for (unsigned i = 0; i < SPATE_RING_MAX_WRITERS; i++) {
		uint64_t seq = 99;
		cr_assert_eq(put_num(ws[i], i, i, &seq), 0);
		cr_assert_eq(seq, i);
	}
	cr_assert_eq(drain(rd, &next, NULL), SPATE_RING_MAX_WRITERS);
	spate_ring_writer_close(ws[5]);
	ws[5] = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(put_num(ws[5], 5, next, NULL), 0);
	cr_assert_eq(drain(rd, &next, NULL), 1);
	for (unsigned i = 0; i < SPATE_RING_MAX_WRITERS; i++)
		spate_ring_writer_close(ws[i]);
	spate_ring_reader_close(rd);
	tl_mem_free(&m);
}

/* An aborted multi-writer reservation is published as a SKIP batch. A
 * reader with nothing to read must still wait (and time out), not return
 * at once forever: peek() -> 0, wait() -> 0, peek() -> 0 ... is a busy loop. */
Test(ring, wait_after_aborted_multi_writer_batch, .timeout = 30)
{
	for (int wait = SPATE_RING_WAIT_YIELD; wait <= SPATE_RING_WAIT_BLOCK; wait++) {
		struct tl_mem m;
		struct spate_ring_batch b;
		struct spate_ring_rec rec;
		uint64_t next = 0;

		mem_ring(&m, 64 * KIB, 0, SPATE_RING_F_MULTI_WRITER);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   (enum spate_ring_wait)wait);
		cr_assert_eq(put_num(w, 10, 0, NULL), 0);
		cr_assert_eq(drain(rd, &next, NULL), 1);
		cr_assert_eq(spate_ring_reserve(w, 100, &b), 0);
		spate_ring_abort(w, &b);
		cr_assert_eq(spate_ring_peek(rd, &rec, 1, UINT64_MAX), 0);
		uint64_t t0 = tl_mono_ns();
		int rc = spate_ring_reader_wait(rd, 20 * MS);
		uint64_t dt = tl_mono_ns() - t0;
		cr_assert_eq(rc, -ETIMEDOUT, "wait=%d: wait returned %d after %llu ns with nothing to read",
			     wait, rc, (unsigned long long)dt);
		/* And the next record is read normally. */
		cr_assert_eq(put_num(w, 20, 1, NULL), 0);
		cr_assert_eq(drain(rd, &next, NULL), 1);
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
}

Test(ring, no_blocking_ring)
{
	struct tl_mem m;
	struct spate_ring_writer *w = NULL;
	struct spate_ring_reader *rd = NULL;
	uint64_t next = 0;

	mem_ring(&m, 64 * KIB, 0, SPATE_RING_F_NO_BLOCKING);
	cr_assert_eq(spate_ring_writer_open(m.r, SPATE_RING_WAIT_BLOCK, &w), -ENOTSUP);
	cr_assert_eq(spate_ring_reader_open(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BLOCK, &rd),
		     -ENOTSUP);
	cr_assert_eq(spate_ring_writer_open(m.r, (enum spate_ring_wait)3, &w), -EINVAL);
	cr_assert_eq(spate_ring_reader_open(m.r, SPATE_RING_START_OLDEST, (enum spate_ring_wait)3, &rd),
		     -EINVAL);
	cr_assert_eq(spate_ring_reader_open(m.r, (enum spate_ring_start)2, SPATE_RING_WAIT_YIELD, &rd),
		     -EINVAL);
	/* A failed open leaves no slot taken. */
	w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BUSY);
	cr_assert_eq(atomic_load(&m.r->sh->pub.reader_mask), 1ull << rd->index);
	for (uint64_t i = 0; i < 1000; i++) {
		cr_assert_eq(put_num(w, i % 500, i, NULL), 0);
		if (i % 7 == 0)
			drain(rd, &next, NULL);
	}
	drain(rd, &next, NULL);
	cr_assert_eq(next, 1000);
	cr_assert_eq(spate_ring_reader_wait(rd, 1 * MS), -ETIMEDOUT);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

/* ------------------------------------------------------------------------ */
/* Corrupt contents                                                         */
/* ------------------------------------------------------------------------ */

/* Read with a fresh OLDEST reader: at most @p good intact records, then
 * -EBADMSG (never 0 with data pending, never garbage). */
static void expect_badmsg(struct spate_ring *r, uint64_t good, const char *what)
{
	struct spate_ring_reader *rd = open_reader(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	struct spate_ring_rec recs[16];
	uint64_t total = 0;

	for (int guard = 0;; guard++) {
		cr_assert_lt(guard, 1000, "%s: no end", what);
		int n = spate_ring_peek(rd, recs, 16, UINT64_MAX);
		if (n == -EBADMSG)
			break;
		cr_assert_gt(n, 0, "%s: peek returned %d after %llu records, not -EBADMSG", what, n,
			     (unsigned long long)total);
		for (int i = 0; i < n; i++) {
			cr_assert_lt(total, good, "%s: more records than written", what);
			check_rec(&recs[i], total++);
		}
		cr_assert_eq(spate_ring_release(rd, (unsigned)n), 0);
	}
	/* It stays corrupt. */
	cr_assert_eq(spate_ring_peek(rd, recs, 16, UINT64_MAX), -EBADMSG, "%s", what);
	spate_ring_reader_close(rd);
}

Test(ring, corrupt_batch_header)
{
	struct tl_mem m;

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	/* Three batches of one 100-byte record: 144 bytes each, at 0, 144, 288. */
	for (uint64_t i = 0; i < 3; i++)
		cr_assert_eq(put_num(w, 100, i, NULL), 0);
	struct spate_ring_bhdr *h = (struct spate_ring_bhdr *)(void *)(m.r->data + 144);
	const uint64_t orig = atomic_load(&h->commit);
	const uint64_t tag = SPATE_RING_TAG(144);
	cr_assert_eq(orig, tag | 144 | SPATE_RING_C_COMMITTED);
	/* Tail is at 432. */
	static const struct {
		const char *what;
		uint64_t word;
		int tagged;
	} bad[] = {
		{ "zero", 0, 0 },
		{ "not committed", 144, 1 },
		{ "wrong tag", 144 | SPATE_RING_C_COMMITTED, 0 },
		{ "stale tag", SPATE_RING_TAG(144 + 64 * KIB) | 144 | SPATE_RING_C_COMMITTED, 0 },
		{ "length 0", SPATE_RING_C_COMMITTED, 1 },
		{ "length past the end of the ring", 0xfffffff8ull | SPATE_RING_C_COMMITTED, 1 },
		{ "length past tail", 296 | SPATE_RING_C_COMMITTED, 1 },
		{ "length below the header", 8 | SPATE_RING_C_COMMITTED, 1 },
		{ "PAD over the next batch", 144 | SPATE_RING_C_PAD | SPATE_RING_C_COMMITTED, 1 },
		{ "PAD past tail", 1024 | SPATE_RING_C_PAD | SPATE_RING_C_COMMITTED, 1 },
		{ "PAD past the end", 0x10000ull | SPATE_RING_C_PAD | SPATE_RING_C_COMMITTED, 1 },
		{ "all ones", UINT64_MAX, 0 },
		{ "garbage", 0x5a5a5a5aa5a5a5a5ull, 0 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		atomic_store(&h->commit, bad[i].word | (bad[i].tagged ? tag : 0));
		expect_badmsg(m.r, 1, bad[i].what);
	}
	/* Record count larger than the batch holds; base_seq out of sequence. */
	atomic_store(&h->commit, orig);
	h->count = 2;
	expect_badmsg(m.r, 1, "count 2");
	h->count = 0xffffffffu;
	expect_badmsg(m.r, 1, "count 2^32-1");
	h->count = 1;
	h->base_seq = 7;
	expect_badmsg(m.r, 1, "base_seq");
	h->base_seq = 1;
	uint64_t next = 0;
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(drain(rd, &next, NULL), 3, "restored");
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, corrupt_record_header)
{
	struct tl_mem m;
	uint64_t l3[] = { 100, 100, 100 };

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	/* One batch: header 32, records of 8 + 104 at 32, 144, 256; ends at 368. */
	cr_assert_eq(put_nums(w, l3, 3, 0, NULL), 3);
	struct spate_ring_rhdr *rh = (struct spate_ring_rhdr *)(void *)(m.r->data + 144);
	const uint32_t orig = rh->len_type;
	uint8_t orig_payload[8];
	memcpy(orig_payload, rh + 1, 8);
	cr_assert_eq(orig & SPATE_RING_LONG, 100);
	static const struct {
		const char *what;
		uint32_t len;   /* low 24 bits */
		uint64_t llen;  /* long length, when len == SPATE_RING_LONG */
	} bad[] = {
		{ "length past the batch", 300, 0 },
		{ "length 2^24-2", SPATE_RING_LONG - 1, 0 },
		{ "long length larger than the ring", SPATE_RING_LONG, 1ull << 40 },
		{ "long length 2^64-1", SPATE_RING_LONG, UINT64_MAX },
		{ "long length past the batch", SPATE_RING_LONG, 20000000 },
		{ "long length just past the batch", SPATE_RING_LONG, 209 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rh->len_type = (orig & 0xff000000u) | bad[i].len;
		if (bad[i].len == SPATE_RING_LONG)
			memcpy(rh + 1, &bad[i].llen, 8);
		expect_badmsg(m.r, 1, bad[i].what);
		rh->len_type = orig;
		memcpy(rh + 1, orig_payload, 8);
	}
	uint64_t next = 0;
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(drain(rd, &next, NULL), 3, "restored");
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

/* A long-length marker in the last 8 bytes of the ring: the 8-byte length
 * would lie past the end of the data area. Must be -EBADMSG, not a read past
 * the end (the guard page after the ring turns that into SIGSEGV). */
Test(ring, corrupt_long_length_at_ring_end)
{
	struct tl_mem m;
	uint64_t wctr = 0, rctr = 0;
	const uint64_t cap = 64 * KIB;

	mem_ring(&m, cap, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	advance_to(w, rd, cap - 40, &wctr, &rctr, NULL);
	/* A batch of one zero-length record: header at cap-40, record at cap-8. */
	cr_assert_eq(put_num(w, 0, wctr, NULL), 0);
	cr_assert_eq(w->head & (cap - 1), 0);
	struct spate_ring_rhdr *rh = (struct spate_ring_rhdr *)(void *)(m.r->data + cap - 8);
	cr_assert_eq(rh->len_type & SPATE_RING_LONG, 0);
	rh->len_type |= SPATE_RING_LONG;
	struct spate_ring_rec recs[4];
	int n = spate_ring_peek(rd, recs, 4, UINT64_MAX);
	cr_assert_eq(n, -EBADMSG, "peek returned %d", n);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

Test(ring, corrupt_tail)
{
	struct tl_mem m;
	struct spate_ring_rec recs[4];

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(put_num(w, 10, 0, NULL), 0);
	uint64_t t = atomic_load(&m.r->sh->pub.tail);
	/* More than a ring ahead of the reader. */
	atomic_store(&m.r->sh->pub.tail, t + 64 * KIB + 8);
	cr_assert_eq(spate_ring_peek(rd, recs, 4, UINT64_MAX), -EBADMSG);
	/* Behind the reader ("negative"). */
	atomic_store(&m.r->sh->pub.tail, t);
	cr_assert_eq(spate_ring_peek(rd, recs, 4, UINT64_MAX), 1);
	cr_assert_eq(spate_ring_release(rd, 1), 0);
	atomic_store(&m.r->sh->pub.tail, t - 8);
	cr_assert_eq(spate_ring_peek(rd, recs, 4, UINT64_MAX), -EBADMSG);
	/* Inside a batch. */
	atomic_store(&m.r->sh->pub.tail, t + 16);
	cr_assert_eq(spate_ring_peek(rd, recs, 4, UINT64_MAX), -EBADMSG);
	atomic_store(&m.r->sh->pub.tail, t);
	cr_assert_eq(spate_ring_peek(rd, recs, 4, UINT64_MAX), 0);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

/* Random corruption of published data: peek returns records (whose views lie
 * inside the ring) or -EBADMSG, never crashes or loops. */
Test(ring, corrupt_fuzz, .timeout = 120)
{
	struct tl_rng g;
	struct tl_mem m;
	struct spate_ring_rec recs[64];
	uint64_t lens[16];
	unsigned detected = 0, iters = 1500;
	const uint64_t cap = 64 * KIB;

	tl_rng_seed(&g, 4242);
	for (unsigned it = 0; it < iters; it++) {
		uint32_t flags = (it & 1) ? SPATE_RING_F_MULTI_WRITER : 0;
		mem_ring(&m, cap, 0, flags);
		struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
		uint64_t ctr = 0;
		uint64_t goal = tl_rng_below(&g, 3 * cap);
		while (head_of(w) < goal) {
			unsigned k = (unsigned)(1 + tl_rng_below(&g, 16));
			for (unsigned i = 0; i < k; i++)
				lens[i] = tl_rng_below(&g, 8) == 0 ? tl_rng_below(&g, 3000)
								   : tl_rng_below(&g, 200);
			cr_assert_eq(put_nums(w, lens, k, ctr, NULL), (int)k);
			ctr += k;
		}
		struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST,
							   SPATE_RING_WAIT_YIELD);
		/* Corrupt 1..4 spots: random words anywhere, or words in headers near
		 * the reader's start. */
		unsigned spots = (unsigned)(1 + tl_rng_below(&g, 4));
		uint64_t start = rd->pos, tail = atomic_load(&m.r->sh->pub.tail);
		for (unsigned s = 0; s < spots; s++) {
			uint64_t off;
			if (tail > start && tl_rng_below(&g, 2))
				off = (start + 8 * tl_rng_below(&g, (tail - start) / 8)) & (cap - 1);
			else
				off = 8 * tl_rng_below(&g, cap / 8);
			uint64_t v;
			switch (tl_rng_below(&g, 4)) {
			case 0: v = tl_rng_next(&g); break;
			case 1: v = 1ull << tl_rng_below(&g, 64); break;
			case 2: v = SPATE_RING_LONG | (tl_rng_next(&g) & 0xffffffff00000000ull); break;
			default: v = 0; break;
			}
			if (tl_rng_below(&g, 2)) {
				uint64_t cur;
				memcpy(&cur, m.r->data + off, 8);
				v ^= cur;
			}
			memcpy(m.r->data + off, &v, 8);
		}
		uint64_t got = 0;
		for (int guard = 0;; guard++) {
			cr_assert_lt(guard, 100000, "iteration %u: reader never finishes", it);
			int n = spate_ring_peek(rd, recs, 64, tl_rng_below(&g, 4) ? UINT64_MAX : 500);
			if (n == -EBADMSG) {
				detected++;
				break;
			}
			cr_assert_geq(n, 0, "iteration %u: peek %d", it, n);
			if (n == 0)
				break;
			for (int i = 0; i < n; i++) {
				const uint8_t *d = recs[i].data;
				cr_assert(d >= m.r->data && d <= m.r->data + cap &&
					  recs[i].len <= (uint64_t)(m.r->data + cap - d),
					  "iteration %u: view outside the ring", it);
				/* Touch every byte (ASan / guard page). */
				volatile uint8_t sink = 0;
				for (uint32_t b = 0; b < recs[i].len; b += 64)
					sink ^= d[b];
				if (recs[i].len)
					sink ^= d[recs[i].len - 1];
				(void)sink;
			}
			got += (uint64_t)n;
			cr_assert_leq(got, ctr + cap / 8, "iteration %u: too many records", it);
			unsigned k = (unsigned)(1 + tl_rng_below(&g, (uint64_t)n));
			cr_assert_eq(spate_ring_release(rd, k), 0);
		}
		spate_ring_reader_close(rd);
		spate_ring_writer_close(w);
		tl_mem_free(&m);
	}
	/* Most spots land in payloads (undetectable by design); enough must not. */
	cr_assert_gt(detected, iters / 50, "only %u of %u corruptions detected", detected, iters);
}

/* ------------------------------------------------------------------------ */
/* Rings in shared memory                                                   */
/* ------------------------------------------------------------------------ */

Test(ring, create_attach_by_name)
{
	char name[64];
	struct spate_ring *r2 = NULL, *x = NULL;
	struct spate_ring_params p = { .capacity = 128 * KIB, .flags = SPATE_RING_F_MULTI_WRITER };
	uint64_t next = 0;

	uname_for(name, sizeof(name), "byname");
	struct spate_ring *r1 = NULL;
	cr_assert_eq(spate_ring_create(name, &p, NULL, &r1), 0);
	cr_assert_not_null(spate_ring_shm(r1));
	cr_assert_eq(spate_ring_create(name, &p, NULL, &x), -EEXIST);
	struct spate_ring_params bad = { .capacity = 100000 };
	char name2[64];
	uname_for(name2, sizeof(name2), "byname-bad");
	cr_assert_eq(spate_ring_create(name2, &bad, NULL, &x), -EINVAL);
	cr_assert_eq(spate_ring_attach(name2, &x), -ENOENT);
	cr_assert_eq(spate_ring_attach(name, &r2), 0);
	cr_assert_not_null(spate_ring_shm(r2));
	cr_assert_eq(r2->cap, 128 * KIB);
	cr_assert_eq(r2->flags, SPATE_RING_F_MULTI_WRITER);
	cr_assert_eq(spate_ring_max_record(r2), spate_ring_max_record(r1));
	cr_assert_neq((void *)r1->sh, (void *)r2->sh, "two mappings");

	struct spate_ring_writer *w1 = open_writer(r1, SPATE_RING_WAIT_YIELD);
	struct spate_ring_writer *w2 = open_writer(r2, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(r2, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BLOCK);
	for (uint64_t i = 0; i < 1000; i++) {
		cr_assert_eq(put_num(i % 2 ? w1 : w2, i % 300, i, NULL), 0);
		if (i % 100 == 99)
			cr_assert_eq(drain(rd, &next, NULL), 100);
	}
	cr_assert_eq(next, 1000);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w1);
	spate_ring_writer_close(w2);
	spate_ring_close(r2);
	spate_ring_close(r1);
	cr_assert_eq(spate_shm_unlink(name), 0);
	cr_assert_eq(spate_ring_attach(name, &x), -ENOENT);
}

Test(ring, attach_scribbled_header)
{
	char name[64];
	struct spate_ring *x = NULL;

	uname_for(name, sizeof(name), "scribble");
	struct spate_ring *r = shm_ring(name, 64 * KIB, 0, SPATE_SHM_F_NO_HUGE);
	struct spate_ring_meta saved = r->sh->meta;
	struct {
		const char *what;
		size_t off;
		uint64_t val;
		int size;
		int err;
	} cases[] = {
		{ "magic", offsetof(struct spate_ring_meta, magic), 0x4141414141414141ull, 8, -EBADMSG },
		{ "layout_version", offsetof(struct spate_ring_meta, layout_version), 99, 4, -EPROTO },
		{ "capacity", offsetof(struct spate_ring_meta, capacity), 1 * GIB, 8, -EBADMSG },
		{ "total_size", offsetof(struct spate_ring_meta, total_size), 1 * GIB, 8, -EBADMSG },
		{ "data_off", offsetof(struct spate_ring_meta, data_off), 0, 8, -EBADMSG },
		{ "max_record", offsetof(struct spate_ring_meta, max_record), 1ull << 40, 8, -EBADMSG },
		{ "flags", offsetof(struct spate_ring_meta, flags), 0xffff, 4, -EBADMSG },
		{ "ready", offsetof(struct spate_ring_meta, ready), 0, 4, -EAGAIN },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *base = (uint8_t *)&r->sh->meta;
		if (cases[i].size == 8)
			memcpy(base + cases[i].off, &cases[i].val, 8);
		else {
			uint32_t v = (uint32_t)cases[i].val;
			memcpy(base + cases[i].off, &v, 4);
		}
		int rc = spate_ring_attach(name, &x);
		cr_assert_eq(rc, cases[i].err, "%s: %d", cases[i].what, rc);
		r->sh->meta = saved;
	}
	/* Positions. */
	atomic_store(&r->sh->prod.trim, 4096);
	cr_assert_eq(spate_ring_attach(name, &x), -EBADMSG, "trim > tail");
	atomic_store(&r->sh->prod.trim, 0);
	/* Whole control block garbage. */
	uint8_t keep[sizeof(struct spate_ring_shared)];
	memcpy(keep, r->sh, sizeof(keep));
	memset(r->sh, 0xa5, sizeof(keep));
	cr_assert_eq(spate_ring_attach(name, &x), -EBADMSG);
	memcpy(r->sh, keep, sizeof(keep));
	cr_assert_eq(spate_ring_attach(name, &x), 0);
	spate_ring_close(x);
	spate_ring_close(r);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(ring, attach_truncated_region)
{
	char name[64];
	struct spate_ring *x = NULL;
	struct stat st;

	uname_for(name, sizeof(name), "trunc");
	struct spate_ring *r = shm_ring(name, 256 * KIB, 0, SPATE_SHM_F_NO_HUGE);
	char *path = strdup(spate_shm_path(spate_ring_shm(r)));
	cr_assert_not_null(path);
	/* Unmap before truncating, so that nothing here touches lost pages. */
	spate_ring_close(r);
	cr_assert_eq(stat(path, &st), 0);
	const off_t sizes[] = { st.st_size - 4096, st.st_size / 2, 4096 + 8192, 4096 + 100, 4096, 100, 0 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		cr_assert_eq(truncate(path, sizes[i]), 0);
		int rc = spate_ring_attach(name, &x);
		cr_assert_lt(rc, 0, "attach of a file truncated to %lld bytes succeeded",
			     (long long)sizes[i]);
		cr_assert(rc == -EBADMSG || rc == -EAGAIN || rc == -EPROTO || rc == -EINVAL,
			  "truncated to %lld: unexpected error %d", (long long)sizes[i], rc);
	}
	free(path);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

/* A region whose user area is too small for the ring its header describes. */
Test(ring, attach_region_smaller_than_ring)
{
	char name[64];
	struct spate_ring_params p = { .capacity = 64 * KIB };
	size_t sz = spate_ring_memsize(&p);
	struct spate_ring *x = NULL;
	void *tmp = aligned_alloc(4096, sz);
	const size_t user_sizes[] = { sizeof(struct spate_ring_shared) + 4096, sz - 4096,
				      sizeof(struct spate_ring_shared) / 2 };

	cr_assert_not_null(tmp);
	cr_assert_eq(spate_ring_format(tmp, sz, &p), 0);
	uname_for(name, sizeof(name), "small");
	for (size_t i = 0; i < sizeof(user_sizes) / sizeof(user_sizes[0]); i++) {
		struct spate_shm_opts o = { .flags = SPATE_SHM_F_NO_HUGE | SPATE_SHM_F_REPLACE };
		struct spate_shm *s = NULL;
		size_t us = user_sizes[i];
		cr_assert_eq(spate_shm_create(name, us, &o, &s), 0);
		memcpy(spate_shm_user(s), tmp,
		       us < sizeof(struct spate_ring_shared) ? us : sizeof(struct spate_ring_shared));
		int rc = spate_ring_attach(name, &x);
		cr_assert_eq(rc, -EBADMSG, "user size %zu: %d", us, rc);
		spate_shm_detach(s);
	}
	cr_assert_eq(spate_shm_unlink(name), 0);
	free(tmp);
}

/* ------------------------------------------------------------------------ */
/* Across processes                                                         */
/* ------------------------------------------------------------------------ */

static uint64_t fork_records(void)
{
	uint64_t n = tl_stress_records() / 10;
	return n < 200000 ? 200000 : (n > 1000000 ? 1000000 : n);
}

/* Child: attach @p name, write @p n records as writer @p id; exit status 0 on success. */
static int child_write(const char *name, uint32_t id, uint64_t n, int single)
{
	struct spate_ring *r = NULL;
	struct spate_ring_writer *w = NULL;
	struct tl_stream_opts o = { .n = n, .id = id, .nids = 1, .seed = 11 + id, .max_len = 300,
				    .max_batch = 32, .single_writer = single };
	struct tl_stream_res res;

	if (spate_ring_attach(name, &r) != 0)
		return 10;
	if (spate_ring_writer_open(r, SPATE_RING_WAIT_YIELD, &w) != 0)
		return 11;
	w->timeout_ns = 60 * SEC;
	if (tl_write_stream(w, &o, &res) != 0) {
		fprintf(stderr, "child writer: %s\n", res.msg);
		return 20 + res.rc;
	}
	spate_ring_writer_close(w);
	spate_ring_close(r);
	return 0;
}

static void wait_child(pid_t pid, const char *what)
{
	int st = 0;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "%s: child did not exit normally (status %#x)", what, st);
	cr_assert_eq(WEXITSTATUS(st), 0, "%s: child exit status %d", what, WEXITSTATUS(st));
}

Test(ring, fork_child_writes_parent_reads, .timeout = 300)
{
	char name[64];
	uint64_t n = fork_records();
	struct tl_stream_opts o = { .n = n, .nids = 1, .seed = 5, .max_len = 300,
				    .wait_timeout_ns = 30 * SEC };
	struct tl_stream_res res;

	uname_for(name, sizeof(name), "fork-cw");
	struct spate_ring *r = shm_ring(name, 256 * KIB, SPATE_RING_F_FULL_WAIT, SPATE_SHM_F_NO_HUGE);
	struct spate_ring_reader *rd = open_reader(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(child_write(name, 0, n, 1));
	int rc = tl_read_stream(rd, &o, &res);
	spate_ring_reader_close(rd);
	if (rc != 0)
		kill(pid, SIGKILL);
	wait_child(pid, "writer");
	cr_assert_eq(rc, 0, "%s", res.msg);
	cr_assert_eq(res.count, n);
	cr_assert_eq(res.last_seq, n - 1);
	spate_ring_close(r);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(ring, fork_parent_writes_child_reads, .timeout = 300)
{
	char name[64];
	int pfd[2];
	char c;
	uint64_t n = fork_records();
	struct tl_stream_opts o = { .n = n, .id = 0, .nids = 1, .seed = 6, .max_len = 300,
				    .max_batch = 48, .single_writer = 1, .wait_timeout_ns = 30 * SEC };
	struct tl_stream_res res;

	uname_for(name, sizeof(name), "fork-pw");
	struct spate_ring *r = shm_ring(name, 256 * KIB, SPATE_RING_F_FULL_WAIT, SPATE_SHM_F_NO_HUGE);
	cr_assert_eq(pipe(pfd), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct spate_ring *cr = NULL;
		struct spate_ring_reader *crd = NULL;
		close(pfd[0]);
		if (spate_ring_attach(name, &cr) != 0)
			_exit(10);
		if (spate_ring_reader_open(cr, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BLOCK, &crd) != 0)
			_exit(11);
		if (write(pfd[1], "r", 1) != 1)
			_exit(12);
		if (tl_read_stream(crd, &o, &res) != 0) {
			fprintf(stderr, "child reader: %s\n", res.msg);
			_exit(20 + res.rc);
		}
		if (res.count != n || res.last_seq != n - 1)
			_exit(30);
		spate_ring_reader_close(crd);
		spate_ring_close(cr);
		_exit(0);
	}
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], &c, 1), 1, "child did not register its reader");
	close(pfd[0]);
	cr_assert_eq(atomic_load(&r->sh->pub.reader_mask) != 0, 1);
	struct spate_ring_writer *w = open_writer(r, SPATE_RING_WAIT_BLOCK);
	w->timeout_ns = 60 * SEC;
	int rc = tl_write_stream(w, &o, &res);
	spate_ring_writer_close(w);
	if (rc != 0)
		kill(pid, SIGKILL);
	cr_assert_eq(rc, 0, "%s", res.msg);
	wait_child(pid, "reader");
	spate_ring_close(r);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(ring, fork_two_writer_processes, .timeout = 300)
{
	char name[64];
	uint64_t n = fork_records() / 2;
	struct tl_stream_opts o = { .n = 2 * n, .nids = 2, .seed = 7, .max_len = 300,
				    .wait_timeout_ns = 30 * SEC };
	struct tl_stream_res res;
	pid_t pids[2];

	uname_for(name, sizeof(name), "fork-mw");
	struct spate_ring *r = shm_ring(name, 256 * KIB, SPATE_RING_F_FULL_WAIT | SPATE_RING_F_MULTI_WRITER,
					SPATE_SHM_F_NO_HUGE);
	struct spate_ring_reader *rd = open_reader(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BLOCK);
	fflush(NULL);
	for (uint32_t i = 0; i < 2; i++) {
		pids[i] = fork();
		cr_assert_geq(pids[i], 0);
		if (pids[i] == 0)
			_exit(child_write(name, i, n, 0));
	}
	int rc = tl_read_stream(rd, &o, &res);
	spate_ring_reader_close(rd);
	if (rc != 0) {
		kill(pids[0], SIGKILL);
		kill(pids[1], SIGKILL);
	}
	wait_child(pids[0], "writer 0");
	wait_child(pids[1], "writer 1");
	cr_assert_eq(rc, 0, "%s", res.msg);
	cr_assert_eq(res.next[0], n);
	cr_assert_eq(res.next[1], n);
	cr_assert_eq(res.last_seq, 2 * n - 1);
	spate_ring_close(r);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

/* Records that every reader has released stay readable from OLDEST until a
 * writer needs their space: a new writer handle must not trim eagerly. */
static void retention_case(uint32_t flags)
{
	struct tl_mem m;
	struct spate_ring_rec recs[16];

	mem_ring(&m, 64 * KIB, 0, flags);
	struct spate_ring_reader *c = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	struct spate_ring_writer *w1 = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	for (uint64_t i = 0; i < 3; i++)
		cr_assert_eq(put_num(w1, 100, i, NULL), 0);
	spate_ring_writer_close(w1);
	cr_assert_eq(spate_ring_peek(c, recs, 16, UINT64_MAX), 3);
	cr_assert_eq(spate_ring_release(c, 3), 0);
	struct spate_ring_writer *w2 = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(put_num(w2, 100, 3, NULL), 0);
	struct spate_ring_reader *late = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(spate_ring_peek(late, recs, 16, UINT64_MAX), 4,
		     "a late OLDEST reader must see the 4 records still in the ring");
	for (uint64_t i = 0; i < 4; i++)
		cr_assert_eq(recs[i].seq, i);
	spate_ring_reader_close(late);
	spate_ring_reader_close(c);
	spate_ring_writer_close(w2);
	tl_mem_free(&m);
}

Test(ring, released_records_stay_readable_from_oldest)
{
	retention_case(0);
	retention_case(SPATE_RING_F_MULTI_WRITER);
}

/* Batch-level peek: whole batches, byte for byte as committed, padding
 * skipped, released by their record counts; refused mid-batch. */
Test(ring, peek_batches_whole_batches)
{
	struct tl_mem m;
	struct spate_ring_span sp[64];
	struct spate_ring_rec recs[64];
	uint64_t ctr = 0, seq = 0;

	mem_ring(&m, 64 * KIB, 0, 0);
	struct spate_ring_writer *w = open_writer(m.r, SPATE_RING_WAIT_YIELD);
	struct spate_ring_reader *rd = open_reader(m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD);
	/* Laps of batches of 1..7 records of 200 bytes: padding appears. */
	for (int round = 0; round < 200; round++) {
		unsigned per = 1 + (unsigned)(round % 7);
		struct spate_ring_batch b;
		cr_assert_eq(spate_ring_reserve(w, per * spate_ring_rec_size(200), &b), 0);
		for (unsigned i = 0; i < per; i++) {
			void *p = spate_ring_batch_add(&b, 200, tl_key(0, ctr), tl_type(0, ctr));
			tl_pl_fill(p, 200, 0, ctr++);
		}
		uint64_t len = (uint64_t)(b.cur - b.hdr);
		spate_ring_commit(w, &b, 0, NULL);
		/* After the commit, hdr is the batch in the ring (a streamed
		 * batch was filled in the writer's staging buffer). */
		const void *hdr = b.hdr;
		cr_assert_eq((uint64_t)(b.cur - b.hdr), len);
		int n = spate_ring_peek_batches(rd, sp, 64, UINT64_MAX);
		cr_assert_eq(n, 1, "round %d: %d batches", round, n);
		cr_assert_eq(sp[0].hdr, hdr);
		cr_assert_eq(sp[0].len, len);
		cr_assert_eq(sp[0].count, per);
		cr_assert_eq(sp[0].base_seq, seq);
		seq += per;
		cr_assert_eq(spate_ring_release(rd, per), 0);
	}
	/* Several at once, bounded by bytes. */
	for (int i = 0; i < 5; i++)
		cr_assert_eq(put_num(w, 100, ctr++, NULL), 0);
	int n = spate_ring_peek_batches(rd, sp, 64, 1);
	cr_assert_eq(n, 1, "max_bytes 1 still returns one batch");
	n = spate_ring_peek_batches(rd, sp, 64, UINT64_MAX);
	cr_assert_eq(n, 5);
	cr_assert_eq(sp[4].base_seq, seq + 4);
	/* A record-level peek after a partial release leaves us mid-batch. */
	cr_assert_eq(spate_ring_release(rd, 5), 0);
	struct spate_ring_batch b;
	cr_assert_eq(spate_ring_reserve(w, 3 * spate_ring_rec_size(8), &b), 0);
	for (int i = 0; i < 3; i++)
		memset(spate_ring_batch_add(&b, 8, 0, 0), 0, 8);
	spate_ring_commit(w, &b, 0, NULL);
	cr_assert_eq(spate_ring_peek(rd, recs, 64, UINT64_MAX), 3);
	cr_assert_eq(spate_ring_release(rd, 1), 0);
	cr_assert_eq(spate_ring_peek_batches(rd, sp, 64, UINT64_MAX), -EINVAL);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	tl_mem_free(&m);
}

/* A process killed while holding a reader, a writer and an unpublished claim
 * leaves slots that gate the ring; spate_ring_reap() frees them and gives the
 * claim back, so the ring works again. */
static void reap_case(uint32_t flags)
{
	char name[64];
	uname_for(name, sizeof(name), flags ? "reap-mp" : "reap-sp");
	struct spate_ring *r = shm_ring(name, 64 * KIB, flags, SPATE_SHM_F_NO_HUGE);
	struct spate_ring_writer *w = open_writer(r, SPATE_RING_WAIT_YIELD);
	uint64_t seq;
	for (uint64_t i = 0; i < 10; i++)
		cr_assert_eq(put_num(w, 100, i, &seq), 0);
	spate_ring_writer_close(w);

	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct spate_ring *x = NULL;
		struct spate_ring_reader *rd = NULL;
		struct spate_ring_writer *cw = NULL;
		struct spate_ring_batch b;
		if (spate_ring_attach(name, &x) || spate_ring_reader_open(x, SPATE_RING_START_OLDEST,
									  SPATE_RING_WAIT_YIELD, &rd) ||
		    spate_ring_writer_open(x, SPATE_RING_WAIT_YIELD, &cw) ||
		    spate_ring_reserve(cw, 4096, &b))
			_exit(1);
		kill(getpid(), SIGKILL); /* dies holding all three */
		_exit(2);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child status %#x", st);
	cr_assert_neq(atomic_load(&r->sh->pub.reader_mask), 0, "the dead reader still gates");

	uint32_t nr = 9, nw = 9;
	int rc = spate_ring_reap(r, &nr, &nw);
	cr_assert_eq(rc, flags ? 1 : 0, "reap: %d", rc);
	cr_assert_eq(nr, 1);
	cr_assert_eq(nw, 1);
	cr_assert_eq(atomic_load(&r->sh->pub.reader_mask), 0);
	if (flags)
		cr_assert_eq(atomic_load(&r->sh->prod.head), atomic_load(&r->sh->pub.tail));
	cr_assert_eq(spate_ring_reap(r, &nr, &nw), 0, "nothing left to reap");
	cr_assert_eq(nr + nw, 0);

	/* The ring goes on: numbering continues, a full lap fits again. */
	struct spate_ring_reader *rd = open_reader(r, SPATE_RING_START_LATEST, SPATE_RING_WAIT_YIELD);
	w = open_writer(r, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(put_num(w, 100, 10, &seq), 0);
	cr_assert_eq(seq, 10);
	uint64_t next = 10;
	cr_assert_eq(drain(rd, &next, NULL), 1);
	for (uint64_t i = 11; i < 2000; i++) {
		cr_assert_eq(put_num(w, 100, i, &seq), 0, "record %llu", (unsigned long long)i);
		if (i % 64 == 0)
			drain(rd, &next, NULL);
	}
	drain(rd, &next, NULL);
	cr_assert_eq(next, 2000);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	spate_ring_close(r);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(ring, reap_dead_process_single_writer, .timeout = 30)
{
	reap_case(0);
}

Test(ring, reap_dead_process_multi_writer, .timeout = 30)
{
	reap_case(SPATE_RING_F_MULTI_WRITER);
}
