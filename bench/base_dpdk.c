/* SPDX-License-Identifier: MIT */
/*
 * base_dpdk.c - DPDK rte_ring (element rings) as the benchmark's baseline.
 *
 * The only translation unit built with DPDK's compile flags (its pkg-config
 * cflags force "-include rte_config.h -march=corei7"), so the rest of the
 * project is unaffected. rte_ring_init() on plain memory needs no EAL.
 *
 * Used as DPDK users do: elements are the records themselves (esize = record
 * size, e.g. 64-byte elements for 64-byte records), the writer fills a local
 * array of batch elements, stamps the publication time into word 1 of each,
 * then rte_ring_sp_enqueue_burst_elem() copies them in (retrying the rest
 * of a partial burst); the reader rte_ring_sc_dequeue_burst_elem() copies up
 * to batch elements out into a local array and touches them there. 1to1 is
 * SP/SC; 4to1 uses the classic MP enqueue by default (a CAS on the producer
 * head, then an in-order spin to move the tail, so a preempted writer stalls
 * the others), or DPDK's RTS / HTS producer modes, made for over-committed
 * cores, with --dpdk-sync rts|hts (then through rte_ring_enqueue_burst_elem,
 * which dispatches on the ring's producer sync type).
 * DPDK rings have no broadcast: 1to3 is not run.
 *
 * Capacity: count = ring bytes / element size (a power of two), holding
 * count - 1 elements.
 */
#include "spate_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "bench_impl.h"

struct dpdk_state {
	struct rte_ring *r;
	size_t memsize;
};

static unsigned dpdk_count(const struct spate_bench_case *c)
{
	uint64_t n = c->ring_bytes / c->size;
	/* Round down to a power of two (sizes that are not one). */
	while (n & (n - 1))
		n &= n - 1;
	return (unsigned)n;
}

static const char *dpdk_unsupported(const struct spate_bench_case *c)
{
	if (c->mode == SPATE_BENCH_1TO3)
		return "rte_ring has no broadcast: each element goes to one consumer";
	if (c->size % 4u)
		return "rte_ring elements are multiples of 4 bytes";
	if (dpdk_count(c) <= c->batch)
		return "ring too small for the batch";
	return NULL;
}

static void dpdk_teardown(struct spate_bench_ctx *x)
{
	struct dpdk_state *st = x->ring;

	spate_bench_free_bufs(x);
	if (st) {
		spate_bench_free(st->r, st->memsize);
		free(st);
	}
	x->ring = NULL;
}

static int dpdk_setup(struct spate_bench_ctx *x)
{
	const struct spate_bench_case *c = x->c;
	unsigned count = dpdk_count(c);
	unsigned flags = RING_F_SC_DEQ;
	if (c->nwriters == 1)
		flags |= RING_F_SP_ENQ;
	else if (c->dpdk_sync == 1)
		flags |= RING_F_MP_RTS_ENQ;
	else if (c->dpdk_sync == 2)
		flags |= RING_F_MP_HTS_ENQ;
	struct dpdk_state *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	x->ring = st;
	ssize_t ms = rte_ring_get_memsize_elem(c->size, count);
	if (ms < 0) {
		snprintf(x->err, sizeof(x->err), "rte_ring_get_memsize_elem: %s",
			 strerror((int)-ms));
		return (int)ms;
	}
	st->memsize = (size_t)ms;
	st->r = spate_bench_alloc(st->memsize, c->huge);
	if (!st->r)
		return -ENOMEM;
	int rc = rte_ring_init(st->r, "spate_bench", count, flags);
	if (rc < 0) {
		snprintf(x->err, sizeof(x->err), "rte_ring_init: %s", strerror(-rc));
		return rc;
	}
	/* Local element arrays: writers' in buf[0..], readers' in buf[MAX..]. */
	for (unsigned i = 0; i < c->nwriters + c->nreaders; i++) {
		unsigned slot = i < c->nwriters ? i : SPATE_BENCH_MAX_THREADS + i - c->nwriters;
		x->buf[slot] = spate_bench_scratch((size_t)c->batch * c->size);
		if (!x->buf[slot])
			return -ENOMEM;
	}
	return 0;
}

SPATE_BENCH_INLINE void dpdk_write_run(const unsigned size, struct spate_bench_ctx *x,
				       unsigned id)
{
	struct rte_ring *r = ((struct dpdk_state *)x->ring)->r;
	uint8_t *e = x->buf[id];
	const unsigned batch = x->c->batch;
	/* 0: SP, 1: classic MP, 2: by the ring's sync type (RTS/HTS). */
	const int mp = x->c->nwriters == 1 ? 0 : x->c->dpdk_sync ? 2 : 1;
	uint64_t seqw = (uint64_t)id << SPATE_BENCH_SEQ_BITS;
	struct spate_bench_pace pace;
	unsigned spins = 0;

	spate_bench_pace_init(&pace, x);
	for (;;) {
		for (unsigned i = 0; i < batch; i++)
			spate_bench_fill(e + (size_t)i * size, size, seqw + i);
		uint64_t ts = spate_now_ns();
		for (unsigned i = 0; i < batch; i++)
			((uint64_t *)(void *)(e + (size_t)i * size))[1] = ts;
		unsigned done = 0;
		while (done < batch) {
			const void *src = e + (size_t)done * size;
			unsigned k = mp == 0 ? rte_ring_sp_enqueue_burst_elem(r, src, size, batch - done, NULL)
				: mp == 1 ? rte_ring_mp_enqueue_burst_elem(r, src, size, batch - done, NULL)
				: rte_ring_enqueue_burst_elem(r, src, size, batch - done, NULL);
			if (__builtin_expect(!k, 0)) {
				if (spate_bench_stopped(x))
					goto out;
				spate_bench_backoff(x, &spins);
				continue;
			}
			spins = 0;
			done += k;
		}
		seqw += batch;
		if (spate_bench_stopped(x))
			break;
		spate_bench_pace_wait(&pace, x);
	}
out:
	x->wrecords[id] = seqw & SPATE_BENCH_SEQ_MASK;
}

SPATE_BENCH_INLINE void dpdk_read_run(const unsigned size, struct spate_bench_ctx *x,
				      unsigned id)
{
	struct rte_ring *r = ((struct dpdk_state *)x->ring)->r;
	uint8_t *e = x->buf[SPATE_BENCH_MAX_THREADS + id];
	const unsigned batch = x->c->batch;
	struct spate_bench_rstate s;
	unsigned spins = 0;

	spate_bench_rstate_init(&s, x, id);
	for (;;) {
		unsigned n = rte_ring_sc_dequeue_burst_elem(r, e, size, batch, NULL);
		if (__builtin_expect(!n, 0)) {
			if (spate_bench_rtick(&s))
				break;
			spate_bench_backoff(x, &spins);
			continue;
		}
		spins = 0;
		spate_bench_latency(&s, ((const uint64_t *)(const void *)e)[1]);
		for (unsigned i = 0; i < n; i++)
			spate_bench_consume(&s, e + (size_t)i * size, size);
		s.n += n;
		if (spate_bench_rtick(&s))
			break;
	}
}

static void dpdk_writer(struct spate_bench_ctx *x, unsigned id)
{
	SPATE_BENCH_SIZE_DISPATCH(dpdk_write_run, x->c->size, x, id);
}

static void dpdk_reader(struct spate_bench_ctx *x, unsigned id)
{
	SPATE_BENCH_SIZE_DISPATCH(dpdk_read_run, x->c->size, x, id);
}

const struct spate_bench_impl spate_bench_impl_rte_ring = {
	.name = "rte_ring",
	.unsupported = dpdk_unsupported,
	.setup = dpdk_setup,
	.teardown = dpdk_teardown,
	.writer = dpdk_writer,
	.reader = dpdk_reader,
};
