/* SPDX-License-Identifier: MIT */
/*
 * hist.c - log-linear latency histogram (see hist.h for the bucket layout).
 *
 * Design: fixed-size array of counts, no allocation, recording is one
 * count-leading-zeros and an increment, so it can sit on a hot path.
 * Percentiles walk the array (1856 buckets) and report the upper edge of the
 * bucket that holds the rank: at most 1.6 % above the true value, never
 * below it, and clamped to the exact maximum.
 * Limits: values above 10 s are not told apart (the maximum still is); the
 * sum saturates at UINT64_MAX.
 */
#include "spate/hist.h"

#include <string.h>

void spate_hist_init(struct spate_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void spate_hist_record_n(struct spate_hist *h, uint64_t v, uint64_t n)
{
	if (!n)
		return;
	h->bucket[spate_hist_index_(v)] += n;
	h->count += n;
	if (v > h->max)
		h->max = v;
	if (v < h->min)
		h->min = v;
	uint64_t add = v && n > UINT64_MAX / v ? UINT64_MAX : v * n;
	h->sum = h->sum + add < h->sum ? UINT64_MAX : h->sum + add;
}

int spate_hist_merge(struct spate_hist *dst, const struct spate_hist *src)
{
	if (!src->count)
		return 0;
	for (unsigned i = 0; i < SPATE_HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
	if (src->max > dst->max)
		dst->max = src->max;
	if (src->min < dst->min)
		dst->min = src->min;
	dst->sum = dst->sum + src->sum < dst->sum ? UINT64_MAX : dst->sum + src->sum;
	return 0;
}

/* Largest value that falls into bucket @p i. */
static uint64_t bucket_upper(unsigned i)
{
	if (i < (1u << SPATE_HIST_SUB_BITS))
		return i;
	unsigned shift = i / SPATE_HIST_HALF - 1u;
	uint64_t sub = i % SPATE_HIST_HALF + SPATE_HIST_HALF;
	return ((sub + 1u) << shift) - 1u;
}

uint64_t spate_hist_percentile(const struct spate_hist *h, double pct)
{
	if (!h->count)
		return 0;
	if (pct <= 0.0)
		return h->min;
	if (pct >= 100.0)
		return h->max;
	/* Rank of the value wanted, 1-based, rounded up. */
	double r = pct / 100.0 * (double)h->count;
	uint64_t rank = (uint64_t)r;
	if ((double)rank < r)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < SPATE_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank) {
			uint64_t v = bucket_upper(i);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max;
}

uint64_t spate_hist_max(const struct spate_hist *h)
{
	return h->count ? h->max : 0;
}

uint64_t spate_hist_count(const struct spate_hist *h)
{
	return h->count;
}

double spate_hist_mean(const struct spate_hist *h)
{
	return h->count ? (double)h->sum / (double)h->count : 0.0;
}
