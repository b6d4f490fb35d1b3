/* SPDX-License-Identifier: MIT */
/*
 * ring_spate.c - the spate record ring under the ring benchmark.
 *
 * Zero copy on both sides, as spate is meant to be used: the writer reserves
 * one batch (spate_ring_reserve of batch * spate_ring_rec_size(size)), adds
 * records with spate_ring_batch_add() and fills each payload in place, then
 * spate_ring_commit() stamps sequence numbers and the commit time and
 * publishes with one release store. The reader peeks up to batch record
 * views, touches each payload where it lies in the ring, and releases them.
 *
 * The ring is formatted in plain memory (spate_bench_alloc, like the DPDK
 * baseline) with SPATE_RING_F_NO_BLOCKING, so publish and release skip the
 * futex bookkeeping; waiting for data or space is the benchmark's own busy
 * (or, oversubscribed, yielding) loop, the same for every ring. 4to1 uses a
 * SPATE_RING_F_MULTI_WRITER ring; 1to3 registers three readers that each see
 * every record.
 *
 * Latency is view.ts (CLOCK_REALTIME at commit) of the oldest record of a
 * peek against the reader's clock right after the peek.
 */
#include "spate_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_impl.h"

struct ring_state {
	void *mem;
	size_t memsize;
	struct spate_ring *ring;
};

static const char *spate_unsupported(const struct spate_bench_case *c)
{
	(void)c;
	return NULL;
}

static void spate_teardown(struct spate_bench_ctx *x)
{
	struct ring_state *st = x->ring;

	for (unsigned i = 0; i < SPATE_BENCH_MAX_THREADS; i++) {
		spate_ring_writer_close(x->wh[i]);
		x->wh[i] = NULL;
		spate_ring_reader_close(x->rh[i]);
		x->rh[i] = NULL;
	}
	spate_bench_free_bufs(x);
	if (st) {
		spate_ring_close(st->ring);
		spate_bench_free(st->mem, st->memsize);
		free(st);
	}
	x->ring = NULL;
}

static int spate_setup(struct spate_bench_ctx *x)
{
	const struct spate_bench_case *c = x->c;
	struct spate_ring_params p = {
		.capacity = c->ring_bytes,
		.flags = SPATE_RING_F_NO_BLOCKING |
			 (c->nwriters > 1 ? SPATE_RING_F_MULTI_WRITER : 0u),
	};
	enum spate_ring_wait wait = c->yield ? SPATE_RING_WAIT_YIELD : SPATE_RING_WAIT_BUSY;
	struct ring_state *st;
	int rc;

	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	x->ring = st;
	st->memsize = spate_ring_memsize(&p);
	if (!st->memsize) {
		snprintf(x->err, sizeof(x->err), "spate: bad ring size %llu",
			 (unsigned long long)c->ring_bytes);
		return -EINVAL;
	}
	st->mem = spate_bench_alloc(st->memsize, c->huge);
	if (!st->mem)
		return -ENOMEM;
	rc = spate_ring_format(st->mem, st->memsize, &p);
	if (rc < 0)
		goto fail;
	rc = spate_ring_open_mem(st->mem, st->memsize, &st->ring);
	if (rc < 0)
		goto fail;
	/* Readers first, at the oldest position, so none misses a record. */
	for (unsigned i = 0; i < c->nreaders; i++) {
		rc = spate_ring_reader_open(st->ring, SPATE_RING_START_OLDEST, wait,
					    (struct spate_ring_reader **)&x->rh[i]);
		if (rc < 0)
			goto fail;
		x->buf[i] = spate_bench_scratch((size_t)c->batch * sizeof(struct spate_ring_rec));
		if (!x->buf[i]) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	/* Writers open their handles in their own threads (spate_write_run):
	 * handles are malloc'ed, and one allocated next to a reader's state
	 * here would share cache lines with it. */
	return 0;
fail:
	snprintf(x->err, sizeof(x->err), "spate: ring setup failed: %s", strerror(-rc));
	return rc;
}

SPATE_BENCH_INLINE void spate_write_run(const unsigned size, struct spate_bench_ctx *x,
					unsigned id)
{
	struct spate_ring_writer *w;
	const unsigned batch = x->c->batch;
	const uint64_t need = (uint64_t)batch * spate_ring_rec_size(size);
	uint64_t seqw = (uint64_t)id << SPATE_BENCH_SEQ_BITS;
	struct spate_bench_pace pace;
	unsigned spins = 0;

	int rc = spate_ring_writer_open(((struct ring_state *)x->ring)->ring,
					x->c->yield ? SPATE_RING_WAIT_YIELD : SPATE_RING_WAIT_BUSY, &w);
	if (rc < 0) {
		spate_bench_fail(x, "spate: writer open: %s", strerror(-rc));
		return;
	}
	x->wh[id] = w; /* closed by teardown */
	spate_bench_pace_init(&pace, x);
	for (;;) {
		struct spate_ring_batch b;
		rc = spate_ring_reserve(w, need, &b);
		if (__builtin_expect(rc < 0, 0)) {
			if (rc != -EAGAIN) {
				spate_bench_fail(x, "spate: reserve: %s", strerror(-rc));
				break;
			}
			if (spate_bench_stopped(x))
				break;
			spate_bench_backoff(x, &spins);
			continue;
		}
		spins = 0;
		for (unsigned i = 0; i < batch; i++) {
			void *p = spate_ring_batch_add(&b, size, 0, 0);
			spate_bench_fill(p, size, seqw++);
		}
		spate_ring_commit(w, &b, 0, NULL);
		if (spate_bench_stopped(x))
			break;
		spate_bench_pace_wait(&pace, x);
	}
	x->wrecords[id] = seqw & SPATE_BENCH_SEQ_MASK;
}

SPATE_BENCH_INLINE void spate_read_run(const unsigned size, struct spate_bench_ctx *x,
				       unsigned id)
{
	struct spate_ring_reader *rd = x->rh[id];
	struct spate_ring_rec *v = x->buf[id];
	const unsigned batch = x->c->batch;
	struct spate_bench_rstate s;
	unsigned spins = 0;

	spate_bench_rstate_init(&s, x, id);
	for (;;) {
		int n = spate_ring_peek(rd, v, batch, UINT64_MAX);
		if (__builtin_expect(n <= 0, 0)) {
			if (n < 0) {
				spate_bench_fail(x, "spate: peek: %s", strerror(-n));
				break;
			}
			if (spate_bench_rtick(&s))
				break;
			spate_bench_backoff(x, &spins);
			continue;
		}
		spins = 0;
		spate_bench_latency(&s, v[0].ts);
		for (int i = 0; i < n; i++)
			spate_bench_consume(&s, v[i].data, size);
		spate_ring_release(rd, (unsigned)n);
		s.n += (unsigned)n;
		if (spate_bench_rtick(&s))
			break;
	}
}

static void spate_writer(struct spate_bench_ctx *x, unsigned id)
{
	SPATE_BENCH_SIZE_DISPATCH(spate_write_run, x->c->size, x, id);
}

static void spate_reader(struct spate_bench_ctx *x, unsigned id)
{
	SPATE_BENCH_SIZE_DISPATCH(spate_read_run, x->c->size, x, id);
}

const struct spate_bench_impl spate_bench_impl_spate = {
	.name = "spate",
	.unsupported = spate_unsupported,
	.setup = spate_setup,
	.teardown = spate_teardown,
	.writer = spate_writer,
	.reader = spate_reader,
};
