/* SPDX-License-Identifier: MIT */
/*
 * base_bound.c - "bound": the least any ring can do carrying rte_ring's bytes.
 *
 * Not a product ring, a yardstick: what this machine lets a single-writer,
 * single-reader ring move when it carries exactly the bytes rte_ring_elem
 * carries (record-size slots back to back, so 64-byte records are 64-byte,
 * line-aligned slots: one line, one store per record) and does nothing else.
 * If bound / rte_ring is below a target ratio in some cross-core regime, no
 * ring that carries at least rte_ring's bytes can reach that ratio there.
 *
 * The minimum, and nothing more:
 *  - the writer's index and the reader's index each on their own 128-byte
 *    line pair (the adjacent-line prefetcher pairs lines);
 *  - each side keeps a cached copy of the other's index and reloads it only
 *    when the copy says full (writer) or empty (reader);
 *  - the writer fills every payload word in place (no staging copy),
 *    stamps the batch time into word 1 of each record as the DPDK baseline
 *    does, and publishes the batch with one release store;
 *  - the reader checks and reads every payload word in place and gives the
 *    space back with one release store per take.
 * No headers, lengths, sequence numbers, readers' registry, retention, trim,
 * blocking or crash recovery: everything spate carries beyond this is cost
 * this yardstick does not pay. 1to1 only.
 *
 * "bound_nt" is the same ring whose writer fills each slot with
 * non-temporal full-line stores (x86-64 SSE2 movntdq, record sizes that are
 * multiples of 64), then one sfence before the release store of tail (a
 * release store does not order non-temporal stores). The lines bypass the
 * writer's caches: no read for ownership of lines the reader still holds.
 * It shows what a ring could gain by streaming whole lines out, which a
 * ring whose records straddle lines (spate's 72-byte 64 B records) cannot.
 *
 * Capacity: count = ring bytes / record size (rounded down to a power of
 * two) slots, all usable (indices are free-running 64-bit counters).
 */
#include "spate_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_impl.h"

#if defined(__x86_64__)
#include <emmintrin.h>
#define SPATE_BOUND_NT 1
#else
#define SPATE_BOUND_NT 0
#endif

struct bound_ring {
	/** Records published: written by the writer only. */
	_Alignas(128) _Atomic uint64_t tail;
	/** Records released: written by the reader only. */
	_Alignas(128) _Atomic uint64_t head;
	_Alignas(128) uint8_t *slots;
	uint64_t mask; /**< count - 1 */
	int nt;        /**< bound_nt: non-temporal stores */
	size_t memsize;
};

static uint64_t bound_count(const struct spate_bench_case *c)
{
	uint64_t n = c->ring_bytes / c->size;
	while (n & (n - 1))
		n &= n - 1;
	return n;
}

static const char *bound_unsupported(const struct spate_bench_case *c)
{
	if (c->mode != SPATE_BENCH_1TO1)
		return "the bound is a single-writer, single-reader ring";
	if (bound_count(c) < 2u * c->batch)
		return "ring too small for the batch";
	return NULL;
}

static const char *bound_nt_unsupported(const struct spate_bench_case *c)
{
	if (!SPATE_BOUND_NT)
		return "non-temporal stores: x86-64 only";
	if (c->size % 64u)
		return "non-temporal full-line stores need record sizes that are multiples of 64";
	return bound_unsupported(c);
}

static void bound_teardown(struct spate_bench_ctx *x)
{
	struct bound_ring *b = x->ring;

	if (b) {
		spate_bench_free(b->slots, b->memsize);
		free(b);
	}
	x->ring = NULL;
}

static int bound_setup_(struct spate_bench_ctx *x, int nt)
{
	const struct spate_bench_case *c = x->c;
	struct bound_ring *b = aligned_alloc(128, sizeof(*b));

	if (!b)
		return -ENOMEM;
	memset(b, 0, sizeof(*b));
	x->ring = b;
	b->nt = nt;
	b->mask = bound_count(c) - 1u;
	b->memsize = (size_t)(b->mask + 1u) * c->size;
	b->slots = spate_bench_alloc(b->memsize, c->huge);
	if (!b->slots) {
		snprintf(x->err, sizeof(x->err), "bound: no memory for %zu bytes", b->memsize);
		return -ENOMEM;
	}
	return 0;
}

static int bound_setup(struct spate_bench_ctx *x)
{
	return bound_setup_(x, 0);
}

static int bound_nt_setup(struct spate_bench_ctx *x)
{
	return bound_setup_(x, 1);
}

/* One slot by non-temporal 16-byte stores: every word the sequence word,
 * word 1 the batch time. */
SPATE_BENCH_INLINE void bound_fill_nt(uint8_t *p, unsigned size, uint64_t seqw, uint64_t ts)
{
#if SPATE_BOUND_NT
	__m128i v = _mm_set1_epi64x((long long)seqw);
	_mm_stream_si128((__m128i *)(void *)p, _mm_set_epi64x((long long)ts, (long long)seqw));
	for (unsigned k = 16; k < size; k += 16)
		_mm_stream_si128((__m128i *)(void *)(p + k), v);
#else
	(void)p, (void)size, (void)seqw, (void)ts;
#endif
}

SPATE_BENCH_INLINE void bound_write_run(const unsigned size, struct spate_bench_ctx *x,
					unsigned id)
{
	struct bound_ring *b = x->ring;
	uint8_t *const slots = b->slots;
	const uint64_t mask = b->mask, count = mask + 1u;
	const unsigned batch = x->c->batch;
	uint64_t seqw = (uint64_t)id << SPATE_BENCH_SEQ_BITS;
	uint64_t tail = 0, head = 0; /* head: our cached copy of the reader's */
	struct spate_bench_pace pace;
	unsigned spins = 0;

	spate_bench_pace_init(&pace, x);
	for (;;) {
		if (__builtin_expect(tail + batch - head > count, 0)) {
			/* Acquire: pairs with the reader's release store of head:
			 * its reads of those slots happen before we overwrite them. */
			head = atomic_load_explicit(&b->head, memory_order_acquire);
			if (tail + batch - head > count) {
				if (spate_bench_stopped(x))
					break;
				spate_bench_backoff(x, &spins);
				continue;
			}
		}
		spins = 0;
		uint64_t ts = spate_now_ns();
		if (b->nt) {
			for (unsigned i = 0; i < batch; i++)
				bound_fill_nt(slots + ((tail + i) & mask) * size, size, seqw + i, ts);
#if SPATE_BOUND_NT
			/* Non-temporal stores are weakly ordered: fence them
			 * before the release store below publishes them. */
			_mm_sfence();
#endif
		} else {
			for (unsigned i = 0; i < batch; i++) {
				uint64_t *p = (uint64_t *)(void *)(slots + ((tail + i) & mask) * size);
				spate_bench_fill(p, size, seqw + i);
				p[1] = ts;
			}
		}
		tail += batch;
		seqw += batch;
		/* Release: pairs with the reader's acquire load of tail: the
		 * slots filled above are visible to a reader that sees it. */
		atomic_store_explicit(&b->tail, tail, memory_order_release);
		if (spate_bench_stopped(x))
			break;
		spate_bench_pace_wait(&pace, x);
	}
	x->wrecords[id] = seqw & SPATE_BENCH_SEQ_MASK;
}

SPATE_BENCH_INLINE void bound_read_run(const unsigned size, struct spate_bench_ctx *x,
				       unsigned id)
{
	struct bound_ring *b = x->ring;
	const uint8_t *const slots = b->slots;
	const uint64_t mask = b->mask;
	const unsigned batch = x->c->batch;
	uint64_t head = 0, tail = 0; /* tail: our cached copy of the writer's */
	struct spate_bench_rstate s;
	unsigned spins = 0;

	spate_bench_rstate_init(&s, x, id);
	for (;;) {
		if (head == tail) {
			/* Acquire: pairs with the writer's release store of tail. */
			tail = atomic_load_explicit(&b->tail, memory_order_acquire);
			if (head == tail) {
				if (spate_bench_rtick(&s))
					break;
				spate_bench_backoff(x, &spins);
				continue;
			}
		}
		spins = 0;
		unsigned n = tail - head < batch ? (unsigned)(tail - head) : batch;
		spate_bench_latency(&s, ((const uint64_t *)(const void *)(slots +
							(head & mask) * size))[1]);
		for (unsigned i = 0; i < n; i++)
			spate_bench_consume(&s, slots + ((head + i) & mask) * size, size);
		head += n;
		/* Release: pairs with the writer's acquire load of head: our reads
		 * of these slots happen before it reuses them. */
		atomic_store_explicit(&b->head, head, memory_order_release);
		s.n += n;
		if (spate_bench_rtick(&s))
			break;
	}
}

static void bound_writer(struct spate_bench_ctx *x, unsigned id)
{
	SPATE_BENCH_SIZE_DISPATCH(bound_write_run, x->c->size, x, id);
}

static void bound_reader(struct spate_bench_ctx *x, unsigned id)
{
	SPATE_BENCH_SIZE_DISPATCH(bound_read_run, x->c->size, x, id);
}

const struct spate_bench_impl spate_bench_impl_bound = {
	.name = "bound",
	.unsupported = bound_unsupported,
	.setup = bound_setup,
	.teardown = bound_teardown,
	.writer = bound_writer,
	.reader = bound_reader,
};

const struct spate_bench_impl spate_bench_impl_bound_nt = {
	.name = "bound_nt",
	.unsupported = bound_nt_unsupported,
	.setup = bound_nt_setup,
	.teardown = bound_teardown,
	.writer = bound_writer,
	.reader = bound_reader,
};
