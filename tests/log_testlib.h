/* SPDX-License-Identifier: MIT */
/*
 * log_testlib.h - shared by the log suites (test_log, test_log_read): build
 * a ring batch, exactly as a ring holds it, for spate_log_append().
 */
#ifndef SPATE_TESTS_LOG_TESTLIB_H
#define SPATE_TESTS_LOG_TESTLIB_H

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "spate/log.h"
#include "spate/ring.h"

/* The batch of @p count records from sequence @p base into @p buf
 * (8-aligned): record s has len_of(s) bytes byte_of(s, k), type s & 0x7f and
 * key hash s * 2654435761. @return the batch's bytes. */
static inline size_t tl_log_make_batch(void *buf, uint64_t base, unsigned count, uint64_t ts,
				       uint32_t (*len_of)(uint64_t),
				       uint8_t (*byte_of)(uint64_t, uint32_t))
{
	uint8_t *p = (uint8_t *)buf + SPATE_RING_BHDR_SIZE;

	for (unsigned i = 0; i < count; i++) {
		uint64_t s = base + i;
		uint32_t len = len_of(s);
		struct spate_ring_rhdr rh = {len | ((uint32_t)(s & 0x7f) << 24), (uint32_t)(s * 2654435761u)};
		memcpy(p, &rh, sizeof(rh));
		for (uint32_t k = 0; k < len; k++)
			p[sizeof(rh) + k] = byte_of(s, k);
		memset(p + sizeof(rh) + len, 0, spate_ring_rec_size(len) - sizeof(rh) - len);
		p += spate_ring_rec_size(len);
	}
	size_t len = (size_t)(p - (uint8_t *)buf);
	struct spate_ring_bhdr *h = buf;
	h->count = count;
	h->owner = 0;
	h->base_seq = base;
	h->ts = ts;
	/* Relaxed: the batch is handed over by a plain call, on this thread. */
	atomic_store_explicit(&h->commit, SPATE_RING_TAG(base * 64u) | len | SPATE_RING_C_COMMITTED,
			      memory_order_relaxed);
	return len;
}

/* Read @p rd to the end, @p max records at a time, from record *@p next:
 * every record is checked with @p check, and a gap (retention deleted what
 * the reader was on) must be reported exactly, the next record being the
 * first after it. *@p next ends past the last record read. @return the
 * records skipped. */
static inline uint64_t tl_log_read_gaps(struct spate_log_reader *rd, uint64_t *next, unsigned max,
					void (*check)(const struct spate_ring_rec *, uint64_t))
{
	struct spate_ring_rec recs[64];
	uint64_t total = 0, skipped = 0;
	int got;

	cr_assert_leq(max, 64u);
	for (;;) {
		got = spate_log_read(rd, recs, max, &skipped);
		cr_assert_geq(got, 0, "read: %d", got);
		total += skipped;
		if (!got)
			return total;
		if (skipped) {
			cr_assert_eq(recs[0].seq, *next + skipped, "gap reported exactly");
			*next += skipped;
		}
		for (int i = 0; i < got; i++)
			check(&recs[i], (*next)++);
	}
}

#endif
