/* SPDX-License-Identifier: MIT */
/**
 * @file spate/hist.h
 * @brief Log-linear (HDR-style) histogram of nanosecond values, three
 *        significant digits, fit for shared memory.
 *
 * Layout: values 0..2047 are counted exactly; above, every power of two
 * [2^m, 2^(m+1)) is split into 1024 equal buckets, so a bucket is at most
 * 2^-10 (0.098 %) of its smallest value wide: three significant decimal
 * digits. Values up to SPATE_HIST_MAX_NS (2^34 - 1 ns, 17.18 s) are told
 * apart; larger ones are counted in the last bucket and in `clamped`, and
 * the exact maximum is kept apart. 25600 buckets, about 200 KiB, no
 * allocation and no pointers.
 *
 * Shared memory: a histogram may live in a region mapped by several
 * processes. The header (magic, version, size, geometry) is written once by
 * spate_hist_init() before the histogram is published; a reader in another
 * process checks it with spate_hist_check() before trusting anything else.
 * Counts are _Atomic uint64_t. Readers (other threads or processes) use
 * relaxed loads: each counter read is a value some writer stored (64-bit
 * atomics are lock-free), never torn; counters read at different instants
 * may disagree by the values recorded in between, which
 * spate_hist_snapshot() makes consistent by deriving the count from the
 * buckets. No reader writes to the histogram.
 *
 * Two ways of writing, chosen per histogram, never mixed on one histogram
 * while it is written:
 *   - single writer (spate_hist_record, spate_hist_record_n): ONE thread at
 *     a time (the owner) with relaxed loads and plain relaxed stores, no
 *     read-modify-write instruction: a clz, a few loads and adds, plain
 *     stores. For histograms that have one writing thread (a benchmark's
 *     reader, a private copy).
 *   - multi-writer (spate_hist_record_mw, spate_hist_record_n_mw): any
 *     number of threads (of any process mapping it) at once; count, sum,
 *     bucket and clamped are relaxed atomic fetch_adds (the sum put back
 *     to UINT64_MAX when an add wraps), min and max relaxed CAS loops that
 *     only write when the value widens them. Each is a locked instruction
 *     (~20 cycles uncontended, more when threads contend for the line): fine
 *     where it is sampled or once per batch, not per record.
 *
 * Thread safety: record/record_n: one writer at a time. record_mw/
 * record_n_mw: any number of writers at once. reset and merge INTO a
 * histogram: only while no one else writes it. Any number of concurrent
 * readers (snapshot, merge from it, percentile, iteration), in any process,
 * during either kind of writing.
 */
#ifndef SPATE_HIST_H
#define SPATE_HIST_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

#ifdef __cplusplus
extern "C" {
#endif

/** "SPHI": the first word of an initialised histogram. */
#define SPATE_HIST_MAGIC 0x53504849u
/** Bumped on any change to the layout below. */
#define SPATE_HIST_VERSION 2u
/** log2 of the exact range (0..2047); 2^(SUB_BITS-1) buckets per power of two above. */
#define SPATE_HIST_SUB_BITS 11u
#define SPATE_HIST_HALF (1u << (SPATE_HIST_SUB_BITS - 1)) /* 1024 */
/** Values below 2^TOP_BITS are told apart. */
#define SPATE_HIST_TOP_BITS 34u
/** Largest value told apart (2^34 - 1 ns, 17.18 s); larger ones are clamped to it. */
#define SPATE_HIST_MAX_NS ((1ull << SPATE_HIST_TOP_BITS) - 1u)
/** Buckets: exact 0..2047, then 1024 per power of two from 2^11 to 2^33. */
#define SPATE_HIST_BUCKETS (SPATE_HIST_HALF * (SPATE_HIST_TOP_BITS - SPATE_HIST_SUB_BITS + 2u))

/**
 * A histogram. Plain data (offsets-free, pointer-free), same layout in every
 * process built from this header; check with spate_hist_check() after
 * attaching. Fields are read through the functions below. The offsets are
 * fixed (header at 0, summary at 128, buckets at 256); the struct asks for
 * no more than 8-byte alignment, so it may sit anywhere (calloc, a member),
 * and on 128-byte aligned memory its parts get cache lines of their own.
 */
struct spate_hist {
	/* Header (bytes 0..127): written by spate_hist_init() only, before
	 * publication. */
	uint32_t magic;    /**< SPATE_HIST_MAGIC */
	uint32_t version;  /**< SPATE_HIST_VERSION */
	uint32_t size;     /**< sizeof(struct spate_hist) */
	uint32_t sub_bits; /**< SPATE_HIST_SUB_BITS */
	uint32_t top_bits; /**< SPATE_HIST_TOP_BITS */
	uint32_t nbuckets; /**< SPATE_HIST_BUCKETS */
	uint8_t pad0_[128 - 6 * 4];
	/* The writer's summary (bytes 128..255). */
	_Atomic uint64_t count;   /**< values recorded */
	_Atomic uint64_t min;     /**< exact; UINT64_MAX while empty */
	_Atomic uint64_t max;     /**< exact; 0 while empty */
	_Atomic uint64_t sum;     /**< saturating at UINT64_MAX */
	_Atomic uint64_t clamped; /**< values above SPATE_HIST_MAX_NS */
	uint8_t pad1_[128 - 5 * 8];
	/* Counts (from byte 256). */
	_Atomic uint64_t bucket[SPATE_HIST_BUCKETS];
};

/** One bucket, as spate_hist_next() reports it: values in [lo, hi]. */
struct spate_hist_bucket {
	uint64_t lo;    /**< smallest value counted here */
	uint64_t hi;    /**< largest value counted here (inclusive) */
	uint64_t count; /**< values counted here */
};

/** Bucket index of value @p v (clamped to SPATE_HIST_MAX_NS). */
static inline unsigned spate_hist_index_(uint64_t v)
{
	if (v > SPATE_HIST_MAX_NS)
		v = SPATE_HIST_MAX_NS;
	if (v < (1u << SPATE_HIST_SUB_BITS))
		return (unsigned)v;
	unsigned m = 63u - (unsigned)__builtin_clzll(v);         /* 11..33 */
	unsigned shift = m - (SPATE_HIST_SUB_BITS - 1u);         /* 1..23 */
	return SPATE_HIST_HALF * shift + (unsigned)(v >> shift); /* v >> shift in [1024, 2047] */
}

/* Writer-side add: relaxed load and store, no locked instruction. Relaxed is
 * enough: the single writer is the only one storing, so its own load sees
 * its last store; readers need each value whole, not ordered with others. */
static inline void spate_hist_add_(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* Writer-side summary update (count, min, max, saturating sum). Relaxed: as
 * spate_hist_add_(), one writer. */
static inline void spate_hist_sum_(struct spate_hist *h, uint64_t v, uint64_t n, uint64_t add)
{
	spate_hist_add_(&h->count, n);
	if (v > atomic_load_explicit(&h->max, memory_order_relaxed))
		atomic_store_explicit(&h->max, v, memory_order_relaxed);
	if (v < atomic_load_explicit(&h->min, memory_order_relaxed))
		atomic_store_explicit(&h->min, v, memory_order_relaxed);
	uint64_t s = atomic_load_explicit(&h->sum, memory_order_relaxed);
	atomic_store_explicit(&h->sum, s + add < s ? UINT64_MAX : s + add, memory_order_relaxed);
	if (v > SPATE_HIST_MAX_NS)
		spate_hist_add_(&h->clamped, n);
}

/** Empty @p h and write its header. Call before sharing it. */
void spate_hist_init(struct spate_hist *h);

/**
 * Empty the counts of @p h, keeping its header. The writer's call; a
 * concurrent reader may see a mix of old and zeroed counts.
 */
void spate_hist_reset(struct spate_hist *h);

/**
 * Whether @p h, of which @p avail bytes are mapped, is a histogram of this
 * layout (e.g. one found in another process's shared memory).
 * @return 0, -EINVAL (NULL, or fewer than sizeof(struct spate_hist) bytes),
 *         -EPROTO (bad magic, version, size or geometry).
 */
int spate_hist_check(const struct spate_hist *h, size_t avail);

/** Count value @p v once. Inline: it is on measurement hot paths. Single
 *  writer only: with other writers, use spate_hist_record_mw(). */
static inline void spate_hist_record(struct spate_hist *h, uint64_t v)
{
	spate_hist_add_(&h->bucket[spate_hist_index_(v)], 1);
	spate_hist_sum_(h, v, 1, v);
}

/** Count value @p v @p n times. Writer only. */
void spate_hist_record_n(struct spate_hist *h, uint64_t v, uint64_t n);

/* Multi-writer add: relaxed fetch_add. Relaxed is enough: every writer's
 * increment is kept by the atomic RMW; readers need each value whole, not
 * ordered with the others (a snapshot derives the count from the buckets). */
static inline void spate_hist_add_mw_(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/**
 * Count value @p v @p n times, with other threads possibly recording into
 * @p h at the same time (multi-writer: see the file comment). Every value is
 * counted exactly once whatever the interleaving; min and max are exact;
 * the sum saturates at UINT64_MAX. Inline: it is on measurement paths (the
 * engine calls it once per sampled delivery, not per record).
 */
static inline void spate_hist_record_n_mw(struct spate_hist *h, uint64_t v, uint64_t n)
{
	if (!n)
		return;
	uint64_t add = v && n > UINT64_MAX / v ? UINT64_MAX : v * n;
	spate_hist_add_mw_(&h->bucket[spate_hist_index_(v)], n);
	spate_hist_add_mw_(&h->count, n);
	if (v > SPATE_HIST_MAX_NS)
		spate_hist_add_mw_(&h->clamped, n);
	/* The sum saturates: a fetch_add that wrapped past 2^64 stores
	 * UINT64_MAX back (relaxed: as the adds). A later add wraps again and
	 * is put back the same way, so the sum ends at UINT64_MAX; a reader
	 * may glimpse a wrapped value in between (after 2^64 ns, 584 years of
	 * summed latency). One locked xadd, cheaper than a CAS loop. */
	uint64_t s = atomic_fetch_add_explicit(&h->sum, add, memory_order_relaxed);
	if (s + add < s)
		atomic_store_explicit(&h->sum, UINT64_MAX, memory_order_relaxed);
	/* Relaxed CAS loops: each only retries while another writer changed
	 * the word meanwhile; min and max are written only when v widens
	 * them (rare once a histogram has seen a few values: a plain load
	 * otherwise). Nothing else is published through them, so no ordering
	 * is needed. */
	uint64_t m = atomic_load_explicit(&h->max, memory_order_relaxed);
	while (v > m && !atomic_compare_exchange_weak_explicit(&h->max, &m, v, memory_order_relaxed,
								memory_order_relaxed))
		;
	m = atomic_load_explicit(&h->min, memory_order_relaxed);
	while (v < m && !atomic_compare_exchange_weak_explicit(&h->min, &m, v, memory_order_relaxed,
								memory_order_relaxed))
		;
}

/** Count value @p v once; any number of concurrent writers (multi-writer). */
static inline void spate_hist_record_mw(struct spate_hist *h, uint64_t v)
{
	spate_hist_record_n_mw(h, v, 1);
}

/**
 * Add the counts of @p src (which may be being written concurrently, by one
 * or several writers) to @p dst (the caller must be @p dst's only writer). The result is the
 * histogram of every value recorded in either.
 * @return 0, -EPROTO (@p src or @p dst fails spate_hist_check()).
 */
int spate_hist_merge(struct spate_hist *dst, const struct spate_hist *src);

/**
 * Copy @p src (which may be being written concurrently, by another process)
 * into @p dst (private to the caller) as a consistent histogram: the count
 * is the sum of the buckets read, min and max are widened to cover them.
 * @return 0, -EPROTO (@p src fails spate_hist_check()).
 */
int spate_hist_snapshot(struct spate_hist *dst, const struct spate_hist *src);

/**
 * Value at percentile @p pct (0..100): the upper edge of the bucket holding
 * that rank (at most 0.098 % above the true value, never below it), but
 * never above the exact maximum nor below the exact minimum. 0 if empty.
 */
uint64_t spate_hist_percentile(const struct spate_hist *h, double pct);

/** Exact largest value recorded, 0 if empty. */
uint64_t spate_hist_max(const struct spate_hist *h);

/** Exact smallest value recorded, 0 if empty. */
uint64_t spate_hist_min(const struct spate_hist *h);

/** Number of values recorded. */
uint64_t spate_hist_count(const struct spate_hist *h);

/** Number of values recorded above SPATE_HIST_MAX_NS (counted in the last bucket). */
uint64_t spate_hist_clamped(const struct spate_hist *h);

/** Sum of the values recorded (saturating at UINT64_MAX). */
uint64_t spate_hist_sum(const struct spate_hist *h);

/** Mean of the values recorded (0 if empty). */
double spate_hist_mean(const struct spate_hist *h);

/**
 * Iterate the non-empty buckets of @p h in increasing order. Start with
 * `*pos = 0`; each call fills @p b and advances @p pos.
 * @return 1 (a bucket in @p b), 0 (no more buckets).
 */
int spate_hist_next(const struct spate_hist *h, uint32_t *pos, struct spate_hist_bucket *b);

/**
 * Cumulative counts for Prometheus-style `le` buckets: @p out[i] = number
 * of values whose bucket lies wholly at or below @p le[i] (exact when
 * @p le[i] is a bucket's upper edge, e.g. below 2048 or a power of two
 * minus one; otherwise a lower bound short by at most one bucket). @p le
 * must be increasing. One pass over the buckets.
 * @return 0, -EINVAL (@p le not increasing).
 */
int spate_hist_cumulative(const struct spate_hist *h, const uint64_t *le, uint32_t n,
			  uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
