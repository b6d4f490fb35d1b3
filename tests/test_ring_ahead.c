/* SPDX-License-Identifier: MIT */
/*
 * Tests for the ring reader's peek-ahead (spate/ring.h:
 * spate_ring_peek_more, spate_ring_release_head), what a pipelining
 * consumer uses to peek its next batch while the current one is in use:
 * sequences and payloads across batch boundaries, releasing at the mark and
 * elsewhere, peeking again after a release, and a random walk against a
 * plain reader of the same ring.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "spate/ring.h"

#include "ring_testlib.h"

static int put_nums(struct spate_ring_writer *w, unsigned n, uint64_t ctr0, uint64_t len)
{
	struct spate_ring_iov v[64];
	uint8_t buf[64][96];

	cr_assert(n <= 64 && len <= 96);
	for (unsigned i = 0; i < n; i++) {
		tl_pl_fill(buf[i], len, 0, ctr0 + i);
		v[i] = (struct spate_ring_iov){ .data = buf[i], .len = (uint32_t)len,
						.key_hash = tl_key(0, ctr0 + i),
						.type = tl_type(0, ctr0 + i) };
	}
	return spate_ring_put_batch(w, v, n, NULL);
}

static void check_rec(const struct spate_ring_rec *rec, uint64_t ctr)
{
	cr_assert_eq(rec->seq, ctr, "seq %llu, expected %llu", (unsigned long long)rec->seq,
		     (unsigned long long)ctr);
	cr_assert_eq(rec->key_hash, tl_key(0, ctr));
	cr_assert_eq(tl_pl_check(rec->data, rec->len, 0, ctr, NULL), 0, "seq %llu: payload",
		     (unsigned long long)ctr);
}

struct fixture {
	struct tl_mem m;
	struct spate_ring_writer *w;
	struct spate_ring_reader *rd;
};

static void setup(struct fixture *f)
{
	cr_assert_eq(tl_mem_ring(&f->m, 64 * KIB, 0, 0), 0);
	cr_assert_eq(spate_ring_writer_open(f->m.r, SPATE_RING_WAIT_YIELD, &f->w), 0);
	cr_assert_eq(spate_ring_reader_open(f->m.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD,
					    &f->rd),
		     0);
}

static void teardown(struct fixture *f)
{
	spate_ring_reader_close(f->rd);
	spate_ring_writer_close(f->w);
	tl_mem_free(&f->m);
}

Test(ring_ahead, peek_more_then_release_head)
{
	struct fixture f;
	struct spate_ring_rec a[16], b[16];
	uint64_t lr;

	setup(&f);
	cr_assert_eq(put_nums(f.w, 5, 0, 40), 5);
	cr_assert_eq(put_nums(f.w, 7, 5, 40), 7);
	/* Nothing peeked: peek_more is a peek. */
	cr_assert_eq(spate_ring_peek_more(f.rd, a, 4, UINT64_MAX), 4);
	for (int i = 0; i < 4; i++)
		check_rec(&a[i], (uint64_t)i);
	/* Past the last peek, across the batch boundary (records 4 and 5). */
	cr_assert_eq(spate_ring_peek_more(f.rd, b, 6, UINT64_MAX), 6);
	for (int i = 0; i < 6; i++)
		check_rec(&b[i], 4 + (uint64_t)i);
	cr_assert_eq(spate_ring_release_head(f.rd, 11), -EINVAL);
	/* The first part only: the rest stays peeked. */
	cr_assert_eq(spate_ring_release_head(f.rd, 4), 0);
	spate_ring_lag(f.rd, &lr, NULL);
	cr_assert_eq(lr, 8);
	for (int i = 0; i < 6; i++) /* the views stay valid */
		check_rec(&b[i], 4 + (uint64_t)i);
	/* And again past it (the last two records). */
	cr_assert_eq(spate_ring_peek_more(f.rd, a, 16, UINT64_MAX), 2);
	check_rec(&a[0], 10);
	check_rec(&a[1], 11);
	cr_assert_eq(spate_ring_peek_more(f.rd, a, 16, UINT64_MAX), 0, "nothing more");
	cr_assert_eq(spate_ring_release_head(f.rd, 6), 0);
	cr_assert_eq(spate_ring_release(f.rd, 2), 0, "the rest, by count from its first");
	spate_ring_lag(f.rd, &lr, NULL);
	cr_assert_eq(lr, 0);
	cr_assert_eq(spate_ring_peek(f.rd, a, 16, UINT64_MAX), 0);
	teardown(&f);
}

Test(ring_ahead, release_head_off_the_mark_and_peek_again)
{
	struct fixture f;
	struct spate_ring_rec a[32];

	setup(&f);
	cr_assert_eq(put_nums(f.w, 10, 0, 24), 10);
	cr_assert_eq(spate_ring_peek(f.rd, a, 3, UINT64_MAX), 3);
	cr_assert_eq(spate_ring_peek_more(f.rd, a + 3, 4, UINT64_MAX), 4);
	/* Not at the mark (3): walks, keeps the rest. */
	cr_assert_eq(spate_ring_release_head(f.rd, 5), 0);
	cr_assert_eq(spate_ring_release_head(f.rd, 0), 0);
	/* A plain peek starts again at the released position. */
	cr_assert_eq(spate_ring_peek(f.rd, a, 32, UINT64_MAX), 5);
	for (int i = 0; i < 5; i++)
		check_rec(&a[i], 5 + (uint64_t)i);
	/* A stale mark (the position moved) is not used: 2 then 1. */
	cr_assert_eq(spate_ring_peek(f.rd, a, 2, UINT64_MAX), 2);
	cr_assert_eq(spate_ring_peek_more(f.rd, a + 2, 1, UINT64_MAX), 1);
	cr_assert_eq(spate_ring_release(f.rd, 3), 0);
	cr_assert_eq(put_nums(f.w, 4, 10, 24), 4);
	cr_assert_eq(spate_ring_peek(f.rd, a, 32, UINT64_MAX), 6);
	cr_assert_eq(spate_ring_release_head(f.rd, 2), 0);
	cr_assert_eq(spate_ring_peek(f.rd, a, 32, UINT64_MAX), 4);
	check_rec(&a[0], 10);
	teardown(&f);
}

/* max_bytes counts from the start of the extension, as a peek does. */
Test(ring_ahead, max_bytes)
{
	struct fixture f;
	struct spate_ring_rec a[16];

	setup(&f);
	cr_assert_eq(put_nums(f.w, 8, 0, 50), 8);
	cr_assert_eq(spate_ring_peek(f.rd, a, 16, 120), 2);
	cr_assert_eq(spate_ring_peek_more(f.rd, a, 16, 160), 3);
	check_rec(&a[0], 2);
	cr_assert_eq(spate_ring_peek_more(f.rd, a, 16, 10), 1, "at least one");
	check_rec(&a[0], 5);
	cr_assert_eq(spate_ring_release_head(f.rd, 5), 0);
	cr_assert_eq(spate_ring_release(f.rd, 1), 0);
	cr_assert_eq(spate_ring_peek(f.rd, a, 16, UINT64_MAX), 2);
	check_rec(&a[0], 6);
	teardown(&f);
}

/* A pipelining reader (peek a batch, peek the next one ahead, release the
 * first at the mark) over a wrapping ring reads every record once, in
 * order, as a plain reader does. */
Test(ring_ahead, pipelined_walk_wraps, .timeout = 60)
{
	struct fixture f;
	struct spate_ring_rec cur[64], next[64];
	struct tl_rng g;
	uint64_t written = 0, expect = 0;
	unsigned ncur = 0;

	setup(&f);
	tl_rng_seed(&g, 12);
	while (expect < 20000) {
		while (written < expect + 300) {
			int n = put_nums(f.w, 1 + (unsigned)tl_rng_below(&g, 20), written,
					 tl_rng_below(&g, 90));
			if (n == -EAGAIN)
				break;
			cr_assert_gt(n, 0, "put: %d", n);
			written += (uint64_t)n;
		}
		unsigned want = 1 + (unsigned)tl_rng_below(&g, 64);
		int k = spate_ring_peek_more(f.rd, next, want, UINT64_MAX);
		cr_assert_geq(k, 0);
		for (int i = 0; i < k; i++)
			check_rec(&next[i], expect + ncur + (uint64_t)i);
		/* The current batch is done: release it alone, the next one
		 * becomes current without a new peek. */
		for (unsigned i = 0; i < ncur; i++)
			check_rec(&cur[i], expect + i);
		cr_assert_eq(spate_ring_release_head(f.rd, ncur), 0);
		expect += ncur;
		memcpy(cur, next, (size_t)k * sizeof(*cur));
		ncur = (unsigned)k;
	}
	teardown(&f);
}
