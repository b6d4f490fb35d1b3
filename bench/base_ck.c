/* SPDX-License-Identifier: MIT */
/*
 * base_ck.c - concurrencykit ck_ring as a benchmark baseline.
 *
 * ck_ring's plain API moves pointers; CK_RING_PROTOTYPE(name, type) gives
 * the same ring with elements of a fixed struct type copied in and out by
 * value. We use that, so ck carries the records themselves in the ring just
 * like rte_ring_elem (no side pool of payload buffers): one typed ring per
 * record size, compiled for 16, 64, 256, 1024 and 4096 bytes only.
 *
 * ck_ring has no burst API: a "batch" is a loop of single enqueues (each
 * one loads the consumer index and stores the producer index) and, on the
 * reader, of single dequeues until batch elements or the ring is empty. The
 * writer fills and timestamps a local array of batch elements first, as for
 * DPDK. 1to1 uses the SPSC functions, 4to1 ck_ring_enqueue_mpsc_* (CAS on
 * the producer head, then an in-order wait to move the tail). No broadcast:
 * 1to3 is not run.
 *
 * Capacity: count = ring bytes / element size (a power of two), holding
 * count - 1 elements.
 */
#include "spate_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ck_ring.h>

#include "bench_impl.h"

#define CK_SIZES(X) X(16) X(64) X(256) X(1024) X(4096)

#define CK_DEFINE_TYPE(N)                                                      \
	struct spate_ck_r##N {                                                 \
		uint64_t w[(N) / 8];                                           \
	};                                                                     \
	CK_RING_PROTOTYPE(r##N, spate_ck_r##N)
CK_SIZES(CK_DEFINE_TYPE)

struct ck_state {
	struct ck_ring ring;
	void *buf;
	size_t bufsize;
};

static const char *ck_unsupported(const struct spate_bench_case *c)
{
	if (c->mode == SPATE_BENCH_1TO3)
		return "ck_ring has no broadcast: each element goes to one consumer";
	switch (c->size) {
	case 16: case 64: case 256: case 1024: case 4096:
		break;
	default:
		return "ck_ring typed rings are built for 16/64/256/1024/4096-byte records only";
	}
	if (c->ring_bytes / c->size <= c->batch)
		return "ring too small for the batch";
	return NULL;
}

static void ck_teardown(struct spate_bench_ctx *x)
{
	struct ck_state *st = x->ring;

	spate_bench_free_bufs(x);
	if (st) {
		spate_bench_free(st->buf, st->bufsize);
		free(st);
	}
	x->ring = NULL;
}

static int ck_setup(struct spate_bench_ctx *x)
{
	const struct spate_bench_case *c = x->c;
	unsigned count = (unsigned)(c->ring_bytes / c->size);
	struct ck_state *st = aligned_alloc(128, (sizeof(*st) + 127u) & ~(size_t)127u);

	if (!st)
		return -ENOMEM;
	memset(st, 0, sizeof(*st));
	x->ring = st;
	st->bufsize = (size_t)count * c->size;
	st->buf = spate_bench_alloc(st->bufsize, c->huge);
	if (!st->buf)
		return -ENOMEM;
	ck_ring_init(&st->ring, count);
	for (unsigned i = 0; i < c->nwriters + c->nreaders; i++) {
		unsigned slot = i < c->nwriters ? i : SPATE_BENCH_MAX_THREADS + i - c->nwriters;
		x->buf[slot] = spate_bench_scratch((size_t)c->batch * c->size);
		if (!x->buf[slot])
			return -ENOMEM;
	}
	return 0;
}

/* Per-size writer and reader bodies. */
#define CK_DEFINE_RUN(N)                                                                   \
	static void ck_write_##N(struct spate_bench_ctx *x, unsigned id)                   \
	{                                                                                  \
		struct ck_state *st = x->ring;                                             \
		struct spate_ck_r##N *ring_buf = st->buf;                                  \
		struct spate_ck_r##N *e = x->buf[id];                                      \
		const unsigned batch = x->c->batch;                                        \
		const int mp = x->c->nwriters > 1;                                         \
		uint64_t seqw = (uint64_t)id << SPATE_BENCH_SEQ_BITS;                      \
		struct spate_bench_pace pace;                                              \
		unsigned spins = 0;                                                        \
		spate_bench_pace_init(&pace, x);                                           \
		for (;;) {                                                                 \
			for (unsigned i = 0; i < batch; i++)                               \
				spate_bench_fill(&e[i], (N), seqw + i);                    \
			uint64_t ts = spate_now_ns();                                      \
			for (unsigned i = 0; i < batch; i++)                               \
				e[i].w[1] = ts;                                            \
			for (unsigned i = 0; i < batch; i++) {                             \
				while (!(mp ? ck_ring_enqueue_mpsc_r##N(&st->ring, ring_buf, &e[i]) \
					    : ck_ring_enqueue_spsc_r##N(&st->ring, ring_buf, &e[i]))) { \
					if (spate_bench_stopped(x))                        \
						goto out;                                  \
					spate_bench_backoff(x, &spins);                    \
				}                                                          \
			}                                                                  \
			spins = 0;                                                         \
			seqw += batch;                                                     \
			if (spate_bench_stopped(x))                                        \
				break;                                                     \
			spate_bench_pace_wait(&pace, x);                                   \
		}                                                                          \
	out:                                                                               \
		x->wrecords[id] = seqw & SPATE_BENCH_SEQ_MASK;                             \
	}                                                                                  \
	static void ck_read_##N(struct spate_bench_ctx *x, unsigned id)                    \
	{                                                                                  \
		struct ck_state *st = x->ring;                                             \
		struct spate_ck_r##N *ring_buf = st->buf;                                  \
		struct spate_ck_r##N *e = x->buf[SPATE_BENCH_MAX_THREADS + id];            \
		const unsigned batch = x->c->batch;                                        \
		const int mp = x->c->nwriters > 1;                                         \
		struct spate_bench_rstate s;                                               \
		unsigned spins = 0;                                                        \
		spate_bench_rstate_init(&s, x, id);                                        \
		for (;;) {                                                                 \
			unsigned n = 0;                                                    \
			while (n < batch &&                                                \
			       (mp ? ck_ring_dequeue_mpsc_r##N(&st->ring, ring_buf, &e[n])  \
				   : ck_ring_dequeue_spsc_r##N(&st->ring, ring_buf, &e[n])))  \
				n++;                                                       \
			if (__builtin_expect(!n, 0)) {                                     \
				if (spate_bench_rtick(&s))                                 \
					break;                                             \
				spate_bench_backoff(x, &spins);                            \
				continue;                                                  \
			}                                                                  \
			spins = 0;                                                         \
			spate_bench_latency(&s, e[0].w[1]);                                \
			for (unsigned i = 0; i < n; i++)                                   \
				spate_bench_consume(&s, &e[i], (N));                       \
			s.n += n;                                                          \
			if (spate_bench_rtick(&s))                                         \
				break;                                                     \
		}                                                                          \
	}
CK_SIZES(CK_DEFINE_RUN)

static void ck_writer(struct spate_bench_ctx *x, unsigned id)
{
	switch (x->c->size) {
#define CK_CASE_W(N) case N: ck_write_##N(x, id); break;
	CK_SIZES(CK_CASE_W)
#undef CK_CASE_W
	default: break;
	}
}

static void ck_reader(struct spate_bench_ctx *x, unsigned id)
{
	switch (x->c->size) {
#define CK_CASE_R(N) case N: ck_read_##N(x, id); break;
	CK_SIZES(CK_CASE_R)
#undef CK_CASE_R
	default: break;
	}
}

const struct spate_bench_impl spate_bench_impl_ck_ring = {
	.name = "ck_ring",
	.unsupported = ck_unsupported,
	.setup = ck_setup,
	.teardown = ck_teardown,
	.writer = ck_writer,
	.reader = ck_reader,
};
