/* SPDX-License-Identifier: MIT */
/**
 * @file spate/hist.h
 * @brief Log-linear (HDR-style) histogram of nanosecond values.
 *
 * Values below 128 are counted exactly; above, every power of two is split
 * into 64 equal buckets, so a bucket is at most 1/64 (1.6 %) of its values
 * wide: two significant digits. Values above SPATE_HIST_MAX_NS (10 s) share
 * the last bucket; the exact maximum is kept apart. A histogram is a plain
 * struct of about 15 KiB with no allocation: one per thread, merged after.
 *
 * Thread safety: none; one thread records into a histogram at a time.
 */
#ifndef SPATE_HIST_H
#define SPATE_HIST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Largest value told apart (10 s in ns); larger ones land in the last bucket. */
#define SPATE_HIST_MAX_NS 10000000000ull
/** log2 of the sub-buckets per power of two, plus one (exact range 0..127). */
#define SPATE_HIST_SUB_BITS 7u
#define SPATE_HIST_HALF (1u << (SPATE_HIST_SUB_BITS - 1)) /* 64 */
/** Buckets: exact 0..127, then 64 per power of two up to 2^34 > 10 s. */
#define SPATE_HIST_BUCKETS (SPATE_HIST_HALF * (34u - SPATE_HIST_SUB_BITS + 2u))

struct spate_hist {
	uint64_t count;
	uint64_t min;
	uint64_t max;
	uint64_t sum; /**< saturating */
	uint64_t bucket[SPATE_HIST_BUCKETS];
};

/** Bucket index of value @p v (clamped to SPATE_HIST_MAX_NS). */
static inline unsigned spate_hist_index_(uint64_t v)
{
	if (v > SPATE_HIST_MAX_NS)
		v = SPATE_HIST_MAX_NS;
	if (v < (1u << SPATE_HIST_SUB_BITS))
		return (unsigned)v;
	unsigned m = 63u - (unsigned)__builtin_clzll(v);       /* >= 7 */
	unsigned shift = m - (SPATE_HIST_SUB_BITS - 1u);         /* >= 1 */
	return SPATE_HIST_HALF * shift + (unsigned)(v >> shift); /* v >> shift in [64, 127] */
}

/** Empty @p h. */
void spate_hist_init(struct spate_hist *h);

/** Count value @p v once. Inline: it is on measurement hot paths. */
static inline void spate_hist_record(struct spate_hist *h, uint64_t v)
{
	h->bucket[spate_hist_index_(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
	if (v < h->min)
		h->min = v;
	h->sum = h->sum + v < h->sum ? UINT64_MAX : h->sum + v;
}

/** Count value @p v @p n times. */
void spate_hist_record_n(struct spate_hist *h, uint64_t v, uint64_t n);

/**
 * Add the counts of @p src to @p dst.
 * @return 0.
 */
int spate_hist_merge(struct spate_hist *dst, const struct spate_hist *src);

/**
 * Value at percentile @p pct (0..100): the upper edge of the bucket holding
 * that rank, but never above the exact maximum. 0 if the histogram is empty.
 */
uint64_t spate_hist_percentile(const struct spate_hist *h, double pct);

/** Exact largest value recorded, 0 if empty. */
uint64_t spate_hist_max(const struct spate_hist *h);

/** Number of values recorded. */
uint64_t spate_hist_count(const struct spate_hist *h);

/** Mean of the values recorded (0 if empty). */
double spate_hist_mean(const struct spate_hist *h);

#ifdef __cplusplus
}
#endif
#endif
