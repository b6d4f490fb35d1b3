/* SPDX-License-Identifier: MIT */
/*
 * hist.c - log-linear latency histogram (see hist.h for the bucket layout
 * and the shared-memory rules).
 *
 * Design: a fixed array of 25600 atomic counts, no allocation; recording
 * is one count-leading-zeros and a few relaxed loads and stores (inline, in
 * hist.h; or, for histograms with several writers, relaxed fetch_adds and
 * CAS loops: spate_hist_record_mw), so it can sit on a hot path and in
 * shared memory read by other processes. Everything here walks the array: percentiles report the upper
 * edge of the bucket holding the rank (at most 2^-10 above the true value,
 * never below it), clamped to the exact minimum and maximum.
 * Trade-offs: three digits over 1 ns..17 s cost 200 KiB per histogram and a
 * 25600-entry walk per percentile; fine for per-consumer and per-stream counters
 * and benchmarks, too big for one per record. Limits: values above 17.18 s
 * share the last bucket (the maximum stays exact and `clamped` counts
 * them); the sum saturates at UINT64_MAX.
 */
#include "spate/hist.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* The layout other processes rely on (hist.h). */
_Static_assert(offsetof(struct spate_hist, count) == 128, "summary at byte 128");
_Static_assert(offsetof(struct spate_hist, bucket) == 256, "buckets at byte 256");
_Static_assert(sizeof(struct spate_hist) == 256 + 8 * SPATE_HIST_BUCKETS, "no hidden padding");

/* Every load below is relaxed: readers need whole values, and any order
 * among them is acceptable (hist.h); snapshot() repairs the disagreement. */
#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
/* Stores are the single writer's (hist.h): relaxed is enough. */
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

static void clear_counts(struct spate_hist *h)
{
	ST(h->count, 0);
	ST(h->min, UINT64_MAX);
	ST(h->max, 0);
	ST(h->sum, 0);
	ST(h->clamped, 0);
	for (unsigned i = 0; i < SPATE_HIST_BUCKETS; i++)
		ST(h->bucket[i], 0);
}

void spate_hist_init(struct spate_hist *h)
{
	memset(h, 0, sizeof(*h)); /* padding too: the struct may be copied to shm */
	h->magic = SPATE_HIST_MAGIC;
	h->version = SPATE_HIST_VERSION;
	h->size = (uint32_t)sizeof(*h);
	h->sub_bits = SPATE_HIST_SUB_BITS;
	h->top_bits = SPATE_HIST_TOP_BITS;
	h->nbuckets = SPATE_HIST_BUCKETS;
	clear_counts(h);
}

void spate_hist_reset(struct spate_hist *h)
{
	clear_counts(h);
}

int spate_hist_check(const struct spate_hist *h, size_t avail)
{
	if (!h || avail < sizeof(*h))
		return -EINVAL;
	if (h->magic != SPATE_HIST_MAGIC || h->version != SPATE_HIST_VERSION ||
	    h->size != sizeof(*h) || h->sub_bits != SPATE_HIST_SUB_BITS ||
	    h->top_bits != SPATE_HIST_TOP_BITS || h->nbuckets != SPATE_HIST_BUCKETS)
		return -EPROTO;
	return 0;
}

void spate_hist_record_n(struct spate_hist *h, uint64_t v, uint64_t n)
{
	if (!n)
		return;
	spate_hist_add_(&h->bucket[spate_hist_index_(v)], n);
	spate_hist_sum_(h, v, n, v && n > UINT64_MAX / v ? UINT64_MAX : v * n);
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a + b < a ? UINT64_MAX : a + b;
}

int spate_hist_merge(struct spate_hist *dst, const struct spate_hist *src)
{
	if (spate_hist_check(dst, sizeof(*dst)) < 0 || spate_hist_check(src, sizeof(*src)) < 0)
		return -EPROTO;
	uint64_t n = 0;
	for (unsigned i = 0; i < SPATE_HIST_BUCKETS; i++) {
		uint64_t b = LD(src->bucket[i]);
		if (b) {
			ST(dst->bucket[i], LD(dst->bucket[i]) + b);
			n += b;
		}
	}
	if (!n)
		return 0;
	/* Count what was added to the buckets, so dst stays consistent even
	 * when src is being written meanwhile. */
	ST(dst->count, LD(dst->count) + n);
	uint64_t mx = LD(src->max), mn = LD(src->min);
	if (mx > LD(dst->max))
		ST(dst->max, mx);
	if (mn < LD(dst->min))
		ST(dst->min, mn);
	ST(dst->sum, sat_add(LD(dst->sum), LD(src->sum)));
	ST(dst->clamped, LD(dst->clamped) + LD(src->clamped));
	return 0;
}

/* Smallest and largest values that fall into bucket @p i. */
static uint64_t bucket_lower(unsigned i)
{
	if (i < (1u << SPATE_HIST_SUB_BITS))
		return i;
	unsigned shift = i / SPATE_HIST_HALF - 1u;
	uint64_t sub = i % SPATE_HIST_HALF + SPATE_HIST_HALF;
	return sub << shift;
}

static uint64_t bucket_upper(unsigned i)
{
	if (i < (1u << SPATE_HIST_SUB_BITS))
		return i;
	unsigned shift = i / SPATE_HIST_HALF - 1u;
	uint64_t sub = i % SPATE_HIST_HALF + SPATE_HIST_HALF;
	return ((sub + 1u) << shift) - 1u;
}

int spate_hist_snapshot(struct spate_hist *dst, const struct spate_hist *src)
{
	if (spate_hist_check(src, sizeof(*src)) < 0)
		return -EPROTO;
	spate_hist_init(dst);
	uint64_t n = 0, first = UINT64_MAX, last = 0;
	for (unsigned i = 0; i < SPATE_HIST_BUCKETS; i++) {
		uint64_t b = LD(src->bucket[i]);
		if (!b)
			continue;
		ST(dst->bucket[i], b);
		n += b;
		if (first == UINT64_MAX)
			first = i;
		last = i;
	}
	if (!n)
		return 0;
	ST(dst->count, n);
	/* min and max were read at another instant than the buckets: keep
	 * them exact when they agree with the buckets, else widen them to the
	 * edges of the first and last non-empty buckets. */
	uint64_t mn = LD(src->min), mx = LD(src->max);
	unsigned f = (unsigned)first, l = (unsigned)last;
	if (mn < bucket_lower(f) || mn > bucket_upper(f))
		mn = bucket_lower(f);
	/* The last bucket also holds the clamped values, above its edge. */
	if (mx < bucket_lower(l) || (mx > bucket_upper(l) && l != SPATE_HIST_BUCKETS - 1u))
		mx = bucket_upper(l);
	ST(dst->min, mn);
	ST(dst->max, mx);
	ST(dst->sum, LD(src->sum));
	ST(dst->clamped, LD(src->clamped));
	return 0;
}

uint64_t spate_hist_percentile(const struct spate_hist *h, double pct)
{
	uint64_t count = LD(h->count);
	if (!count)
		return 0;
	uint64_t mn = LD(h->min), mx = LD(h->max);
	if (pct <= 0.0)
		return mn;
	if (pct >= 100.0)
		return mx;
	/* Rank of the value wanted, 1-based, rounded up. */
	double r = pct / 100.0 * (double)count;
	uint64_t rank = (uint64_t)r;
	if ((double)rank < r)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < SPATE_HIST_BUCKETS; i++) {
		seen += LD(h->bucket[i]);
		if (seen >= rank) {
			uint64_t v = bucket_upper(i);
			if (v > mx)
				v = mx;
			if (v < mn)
				v = mn;
			return v;
		}
	}
	return mx;
}

uint64_t spate_hist_max(const struct spate_hist *h)
{
	return LD(h->count) ? LD(h->max) : 0;
}

uint64_t spate_hist_min(const struct spate_hist *h)
{
	return LD(h->count) ? LD(h->min) : 0;
}

uint64_t spate_hist_count(const struct spate_hist *h)
{
	return LD(h->count);
}

uint64_t spate_hist_clamped(const struct spate_hist *h)
{
	return LD(h->clamped);
}

uint64_t spate_hist_sum(const struct spate_hist *h)
{
	return LD(h->sum);
}

double spate_hist_mean(const struct spate_hist *h)
{
	uint64_t n = LD(h->count);
	return n ? (double)LD(h->sum) / (double)n : 0.0;
}

int spate_hist_next(const struct spate_hist *h, uint32_t *pos, struct spate_hist_bucket *b)
{
	for (uint32_t i = *pos; i < SPATE_HIST_BUCKETS; i++) {
		uint64_t c = LD(h->bucket[i]);
		if (!c)
			continue;
		b->lo = bucket_lower(i);
		b->hi = bucket_upper(i);
		b->count = c;
		*pos = i + 1;
		return 1;
	}
	*pos = SPATE_HIST_BUCKETS;
	return 0;
}

int spate_hist_cumulative(const struct spate_hist *h, const uint64_t *le, uint32_t n,
			  uint64_t *out)
{
	for (uint32_t k = 1; k < n; k++)
		if (le[k] <= le[k - 1])
			return -EINVAL;
	uint64_t seen = 0;
	uint32_t k = 0;
	for (unsigned i = 0; i < SPATE_HIST_BUCKETS && k < n; i++) {
		uint64_t hi = bucket_upper(i);
		while (k < n && le[k] < hi)
			out[k++] = seen;
		seen += LD(h->bucket[i]);
	}
	while (k < n)
		out[k++] = seen;
	return 0;
}
