/* SPDX-License-Identifier: MIT */
/*
 * Tests for spate/hist.h: percentiles of known distributions within 0.1 %
 * of the exact order statistic, exact min/max/mean/count, merge equal to
 * one histogram fed everything, clamping above 17 s, reset, header checks,
 * bucket iteration and cumulative `le` counts, and a writer racing a
 * reader's snapshots (threads), plus a writer in another process over a
 * MAP_SHARED mapping; several writers at once (record_mw) losing nothing.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spate/hist.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static struct spate_hist *new_hist(void)
{
	struct spate_hist *h = aligned_alloc(128, sizeof(*h));
	cr_assert_not_null(h);
	spate_hist_init(h);
	return h;
}

/* Exact order statistic with the histogram's rank rule (1-based, rounded up). */
static uint64_t exact_pct(const uint64_t *sorted, size_t n, double pct)
{
	double r = pct / 100.0 * (double)n;
	size_t rank = (size_t)r;
	if ((double)rank < r)
		rank++;
	if (rank == 0)
		rank = 1;
	return sorted[rank - 1];
}

/* Record @p v (n values) and check p1..p99.99 against the exact values. */
static void check_distribution(uint64_t *v, size_t n, const char *what)
{
	struct spate_hist *h = new_hist();
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		spate_hist_record(h, v[i]);
		sum += v[i];
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	static const double pcts[] = { 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99 };
	for (size_t k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++) {
		uint64_t want = exact_pct(v, n, pcts[k]);
		uint64_t got = spate_hist_percentile(h, pcts[k]);
		cr_assert_geq(got, want, "%s p%g: %lu below exact %lu", what, pcts[k],
			      (unsigned long)got, (unsigned long)want);
		cr_assert_leq((double)(got - want), (double)want * 0.001,
			      "%s p%g: %lu vs exact %lu: more than 0.1 %% off", what, pcts[k],
			      (unsigned long)got, (unsigned long)want);
	}
	cr_assert_eq(spate_hist_count(h), n);
	cr_assert_eq(spate_hist_min(h), v[0]);
	cr_assert_eq(spate_hist_max(h), v[n - 1]);
	cr_assert_eq(spate_hist_percentile(h, 0), v[0]);
	cr_assert_eq(spate_hist_percentile(h, 100), v[n - 1]);
	cr_assert_eq(spate_hist_sum(h), sum);
	cr_assert_eq(spate_hist_clamped(h), 0);
	free(h);
}

Test(hist, uniform_within_a_tenth_of_a_percent)
{
	size_t n = 200000;
	uint64_t *v = malloc(n * sizeof(*v));
	cr_assert_not_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = 1000 + rnd() % 10000000u; /* 1 us .. 10 ms */
	check_distribution(v, n, "uniform");
	free(v);
}

Test(hist, log_uniform_ns_to_seconds)
{
	size_t n = 200000;
	uint64_t *v = malloc(n * sizeof(*v));
	cr_assert_not_null(v);
	/* 2^(0..33.9) ns: every octave of the range, exact and log-linear parts. */
	for (size_t i = 0; i < n; i++) {
		unsigned e = (unsigned)(rnd() % 34u);
		uint64_t base = 1ull << e;
		v[i] = base + rnd() % base;
		if (v[i] > SPATE_HIST_MAX_NS)
			v[i] = SPATE_HIST_MAX_NS;
	}
	check_distribution(v, n, "log-uniform");
	free(v);
}

Test(hist, every_value_has_a_narrow_bucket)
{
	/* The bucket holding v spans at most v / 1024: three digits. */
	for (int k = 0; k < 100000; k++) {
		uint64_t v = rnd() >> (rnd() % 64u);
		if (v > SPATE_HIST_MAX_NS)
			v %= SPATE_HIST_MAX_NS;
		unsigned i = spate_hist_index_(v);
		cr_assert_lt(i, SPATE_HIST_BUCKETS);
		if (v < 2048)
			cr_assert_eq(i, v, "small values are exact");
		if (v > 0)
			cr_assert_geq(spate_hist_index_(v), spate_hist_index_(v - 1), "monotonic");
	}
	struct spate_hist *h = new_hist();
	for (uint64_t v = 1; v <= SPATE_HIST_MAX_NS; v = v * 3 + 1)
		spate_hist_record(h, v);
	struct spate_hist_bucket b;
	uint32_t pos = 0;
	uint64_t prev_hi = 0, seen = 0;
	int first = 1;
	while (spate_hist_next(h, &pos, &b)) {
		cr_assert_leq(b.lo, b.hi);
		cr_assert(first || b.lo > prev_hi, "buckets in increasing order");
		cr_assert_leq((double)(b.hi - b.lo), (double)b.lo / 1024.0);
		prev_hi = b.hi;
		seen += b.count;
		first = 0;
	}
	cr_assert_eq(seen, spate_hist_count(h));
	free(h);
}

Test(hist, exact_summary)
{
	struct spate_hist *h = new_hist();
	cr_assert_eq(spate_hist_count(h), 0);
	cr_assert_eq(spate_hist_max(h), 0);
	cr_assert_eq(spate_hist_min(h), 0);
	cr_assert_eq(spate_hist_percentile(h, 50), 0);
	cr_assert_eq(spate_hist_mean(h), 0.0);
	spate_hist_record(h, 12345);
	spate_hist_record(h, 7);
	spate_hist_record_n(h, 1000003, 3);
	spate_hist_record_n(h, 99, 0); /* nothing */
	cr_assert_eq(spate_hist_count(h), 5);
	cr_assert_eq(spate_hist_min(h), 7);
	cr_assert_eq(spate_hist_max(h), 1000003);
	cr_assert_eq(spate_hist_sum(h), 12345 + 7 + 3 * 1000003ull);
	cr_assert_eq(spate_hist_mean(h), (12345 + 7 + 3 * 1000003.0) / 5);
	cr_assert_eq(spate_hist_percentile(h, 20), 7, "rank 1 of 5, exact below 2048");
	cr_assert_eq(spate_hist_percentile(h, 100), 1000003);
	cr_assert_eq(spate_hist_percentile(h, 60), 1000003, "clamped to the exact max");
	spate_hist_reset(h);
	cr_assert_eq(spate_hist_count(h), 0);
	cr_assert_eq(spate_hist_percentile(h, 50), 0);
	cr_assert_eq(spate_hist_check(h, sizeof(*h)), 0, "reset keeps the header");
	spate_hist_record(h, 5);
	cr_assert_eq(spate_hist_min(h), 5);
	cr_assert_eq(spate_hist_max(h), 5);
	free(h);
}

Test(hist, merge_equals_one_histogram)
{
	struct spate_hist *a = new_hist(), *b = new_hist(), *all = new_hist();
	for (int i = 0; i < 100000; i++) {
		uint64_t v = rnd() >> (rnd() % 40u + 24u);
		spate_hist_record(i % 3 ? a : b, v);
		spate_hist_record(all, v);
	}
	spate_hist_record(b, 30000000000ull); /* clamped */
	spate_hist_record(all, 30000000000ull);
	cr_assert_eq(spate_hist_merge(a, b), 0);
	cr_assert_eq(spate_hist_count(a), spate_hist_count(all));
	cr_assert_eq(spate_hist_min(a), spate_hist_min(all));
	cr_assert_eq(spate_hist_max(a), spate_hist_max(all));
	cr_assert_eq(spate_hist_sum(a), spate_hist_sum(all));
	cr_assert_geq(spate_hist_clamped(a), 1);
	cr_assert_eq(spate_hist_clamped(a), spate_hist_clamped(all));
	for (unsigned i = 0; i < SPATE_HIST_BUCKETS; i++)
		cr_assert_eq(atomic_load(&a->bucket[i]), atomic_load(&all->bucket[i]), "bucket %u", i);
	for (double p = 0; p <= 100; p += 0.5)
		cr_assert_eq(spate_hist_percentile(a, p), spate_hist_percentile(all, p));
	/* Merging an empty one changes nothing; a bad header is refused. */
	struct spate_hist *e = new_hist();
	cr_assert_eq(spate_hist_merge(a, e), 0);
	cr_assert_eq(spate_hist_count(a), spate_hist_count(all));
	e->version++;
	cr_assert_eq(spate_hist_merge(a, e), -EPROTO);
	free(a);
	free(b);
	free(all);
	free(e);
}

Test(hist, clamping_above_17_seconds)
{
	struct spate_hist *h = new_hist();
	spate_hist_record(h, 1000);
	spate_hist_record(h, SPATE_HIST_MAX_NS);    /* the edge: not clamped */
	spate_hist_record(h, SPATE_HIST_MAX_NS + 1);
	spate_hist_record_n(h, 600000000000ull, 2); /* 10 minutes */
	cr_assert_eq(spate_hist_count(h), 5);
	cr_assert_eq(spate_hist_clamped(h), 3);
	cr_assert_eq(spate_hist_max(h), 600000000000ull, "max stays exact");
	cr_assert_eq(spate_hist_percentile(h, 100), 600000000000ull);
	cr_assert_eq(spate_hist_percentile(h, 20), 1000);
	/* Rank 2..5 land in the last bucket, reported as its upper edge. */
	cr_assert_eq(spate_hist_percentile(h, 50), SPATE_HIST_MAX_NS);
	cr_assert_eq(spate_hist_index_(UINT64_MAX), SPATE_HIST_BUCKETS - 1);
	cr_assert_eq(spate_hist_sum(h), 1000 + 2 * SPATE_HIST_MAX_NS + 1 + 1200000000000ull);
	spate_hist_record(h, UINT64_MAX);
	cr_assert_eq(spate_hist_sum(h), UINT64_MAX, "the sum saturates");
	free(h);
}

Test(hist, header_check)
{
	struct spate_hist *h = new_hist();
	cr_assert_eq(spate_hist_check(h, sizeof(*h)), 0);
	cr_assert_eq(spate_hist_check(h, sizeof(*h) - 1), -EINVAL);
	cr_assert_eq(spate_hist_check(NULL, sizeof(*h)), -EINVAL);
	struct spate_hist *s = new_hist();
	cr_assert_eq(spate_hist_snapshot(s, h), 0);
	h->magic ^= 1;
	cr_assert_eq(spate_hist_check(h, sizeof(*h)), -EPROTO);
	cr_assert_eq(spate_hist_snapshot(s, h), -EPROTO);
	h->magic ^= 1;
	h->nbuckets--;
	cr_assert_eq(spate_hist_check(h, sizeof(*h)), -EPROTO);
	memset(h, 0, sizeof(*h));
	cr_assert_eq(spate_hist_check(h, sizeof(*h)), -EPROTO, "zeroed memory is not a histogram");
	free(h);
	free(s);
}

Test(hist, cumulative_le_buckets)
{
	struct spate_hist *h = new_hist();
	/* 10 values at 1..10 us, 5 at 1 ms, 1 clamped. */
	for (uint64_t v = 1; v <= 10; v++)
		spate_hist_record(h, v * 1000);
	spate_hist_record_n(h, 1000000, 5);
	spate_hist_record(h, 100000000000ull);
	/* Edges of the form 2^k - 1 are bucket upper edges: exact counts. */
	const uint64_t le[] = { 1023, 4095, 8191, 16383, (1u << 20) - 1, SPATE_HIST_MAX_NS,
				UINT64_MAX };
	uint64_t out[7];
	cr_assert_eq(spate_hist_cumulative(h, le, 7, out), 0);
	cr_assert_eq(out[0], 1);  /* 1000 */
	cr_assert_eq(out[1], 4);  /* 1000..4000 */
	cr_assert_eq(out[2], 8);  /* ..8000 */
	cr_assert_eq(out[3], 10);
	cr_assert_eq(out[4], 15);
	cr_assert_eq(out[5], 16, "clamped values sit in the last bucket");
	cr_assert_eq(out[6], 16);
	const uint64_t bad[] = { 10, 10 };
	cr_assert_eq(spate_hist_cumulative(h, bad, 2, out), -EINVAL);
	free(h);
}

/* ------------------------------------------------------------------------ */
/* One writer, concurrent readers                                           */
/* ------------------------------------------------------------------------ */

#define RACE_N 2000000u

static void *race_writer(void *arg)
{
	struct spate_hist *h = arg;
	for (uint64_t i = 1; i <= RACE_N; i++)
		spate_hist_record(h, i * 37u % 5000000u + 1u);
	return NULL;
}

/* Snapshot @p h until a snapshot holds @p n values; check each one. */
static void reader_checks(const struct spate_hist *h, uint64_t n, unsigned *snaps)
{
	struct spate_hist *s = new_hist();
	uint64_t prev = 0;
	*snaps = 0;
	for (;;) {
		cr_assert_eq(spate_hist_snapshot(s, h), 0);
		uint64_t c = spate_hist_count(s), sum = 0;
		cr_assert_geq(c, prev, "counts never go backwards");
		cr_assert_leq(c, n);
		struct spate_hist_bucket b;
		uint32_t pos = 0;
		while (spate_hist_next(s, &pos, &b))
			sum += b.count;
		cr_assert_eq(sum, c, "a snapshot is self-consistent");
		if (c) {
			uint64_t p50 = spate_hist_percentile(s, 50);
			cr_assert(p50 >= spate_hist_min(s) && p50 <= spate_hist_max(s));
		}
		prev = c;
		++*snaps;
		if (c == n)
			break;
	}
	free(s);
}

Test(hist, writer_and_reader_threads, .timeout = 60)
{
	struct spate_hist *h = new_hist();
	pthread_t w;
	unsigned snaps;
	cr_assert_eq(pthread_create(&w, NULL, race_writer, h), 0);
	reader_checks(h, RACE_N, &snaps);
	pthread_join(w, NULL);
	cr_log_info("%u snapshots during the race", snaps);
	cr_assert_eq(spate_hist_count(h), RACE_N);
	struct spate_hist *one = new_hist();
	race_writer(one);
	cr_assert_eq(spate_hist_min(h), spate_hist_min(one));
	cr_assert_eq(spate_hist_max(h), spate_hist_max(one));
	cr_assert_eq(spate_hist_sum(h), spate_hist_sum(one));
	free(one);
	free(h);
}

Test(hist, writer_in_another_process, .timeout = 60)
{
	size_t sz = sizeof(struct spate_hist);
	struct spate_hist *h = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(h, MAP_FAILED);
	spate_hist_init(h);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		race_writer(h);
		_exit(0);
	}
	cr_assert_eq(spate_hist_check(h, sz), 0);
	unsigned snaps;
	reader_checks(h, RACE_N, &snaps);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	struct spate_hist *one = new_hist();
	race_writer(one);
	struct spate_hist *s = new_hist();
	cr_assert_eq(spate_hist_snapshot(s, h), 0);
	for (double p = 1; p < 100; p += 7)
		cr_assert_eq(spate_hist_percentile(s, p), spate_hist_percentile(one, p));
	cr_assert_eq(spate_hist_sum(s), spate_hist_sum(one));
	munmap(h, sz);
	free(one);
	free(s);
}

/* ------------------------------------------------------------------------ */
/* Several writers at once (spate_hist_record_mw)                           */
/* ------------------------------------------------------------------------ */

#define MW_THREADS 4u
#define MW_N 500000u

struct mw_arg {
	struct spate_hist *h;
	unsigned id;
};

/* Writer @p id's known values: spread over every decade, with its own
 * minimum (id) and maximum (clamped, above 17 s), and runs of a value
 * counted at once (record_n_mw). */
static uint64_t mw_value(unsigned id, uint64_t i)
{
	return (i * 2654435761u + id * 977u) % 50000000u + 1000u;
}

static void mw_write(struct spate_hist *h, unsigned id, int mw)
{
	for (uint64_t i = 0; i < MW_N; i++) {
		uint64_t v = mw_value(id, i);
		if (mw)
			spate_hist_record_mw(h, v);
		else
			spate_hist_record(h, v);
	}
	uint64_t lo = id, hi = SPATE_HIST_MAX_NS + 1000u * (id + 1);
	if (mw) {
		spate_hist_record_mw(h, lo);
		spate_hist_record_n_mw(h, hi, 3);
		spate_hist_record_n_mw(h, 5000u + id, 1000);
	} else {
		spate_hist_record(h, lo);
		spate_hist_record_n(h, hi, 3);
		spate_hist_record_n(h, 5000u + id, 1000);
	}
}

static void *mw_writer(void *arg)
{
	struct mw_arg *a = arg;
	mw_write(a->h, a->id, 1);
	return NULL;
}

Test(hist, multi_writer_threads_exact, .timeout = 120)
{
	struct spate_hist *h = new_hist(), *one = new_hist();
	pthread_t th[MW_THREADS];
	struct mw_arg args[MW_THREADS];
	const uint64_t n = MW_THREADS * (MW_N + 1u + 3u + 1000u);
	unsigned snaps;

	for (unsigned i = 0; i < MW_THREADS; i++) {
		args[i] = (struct mw_arg){ h, i };
		cr_assert_eq(pthread_create(&th[i], NULL, mw_writer, &args[i]), 0);
	}
	/* Snapshots during the race are self-consistent and never go back. */
	reader_checks(h, n, &snaps);
	for (unsigned i = 0; i < MW_THREADS; i++)
		pthread_join(th[i], NULL);
	cr_log_info("%u snapshots during %u writers", snaps, MW_THREADS);
	/* The same values, one thread, single-writer records. */
	for (unsigned i = 0; i < MW_THREADS; i++)
		mw_write(one, i, 0);
	cr_assert_eq(spate_hist_count(h), n, "no value lost");
	cr_assert_eq(spate_hist_count(one), n);
	cr_assert_eq(spate_hist_sum(h), spate_hist_sum(one));
	cr_assert_eq(spate_hist_min(h), 0, "writer 0's minimum");
	cr_assert_eq(spate_hist_max(h), SPATE_HIST_MAX_NS + 1000u * MW_THREADS, "last writer's maximum");
	cr_assert_eq(spate_hist_clamped(h), 3u * MW_THREADS);
	uint32_t pa = 0, pb = 0;
	struct spate_hist_bucket a, b;
	unsigned buckets = 0;
	for (;;) {
		int ra = spate_hist_next(h, &pa, &a), rb = spate_hist_next(one, &pb, &b);
		cr_assert_eq(ra, rb, "as many buckets");
		if (!ra)
			break;
		cr_assert_eq(a.lo, b.lo);
		cr_assert_eq(a.count, b.count, "bucket %u", buckets);
		buckets++;
	}
	cr_assert_gt(buckets, 1000u);
	/* Merging a multi-writer histogram is the same as any other. */
	struct spate_hist *m = new_hist();
	cr_assert_eq(spate_hist_merge(m, h), 0);
	for (double p = 0.5; p < 100; p += 3.5)
		cr_assert_eq(spate_hist_percentile(m, p), spate_hist_percentile(one, p), "p%g", p);
	free(m);
	free(one);
	free(h);
}

/* The sum of a multi-writer histogram saturates like a single-writer one. */
Test(hist, multi_writer_sum_saturates)
{
	struct spate_hist *h = new_hist();
	spate_hist_record_n_mw(h, UINT64_MAX / 2, 2);
	cr_assert_eq(spate_hist_sum(h), UINT64_MAX - 1);
	spate_hist_record_mw(h, 5);
	cr_assert_eq(spate_hist_sum(h), UINT64_MAX);
	spate_hist_record_mw(h, 5);
	cr_assert_eq(spate_hist_sum(h), UINT64_MAX);
	spate_hist_record_n_mw(h, 7, 0);
	cr_assert_eq(spate_hist_count(h), 4);
	cr_assert_eq(spate_hist_min(h), 5);
	free(h);
}
