/* SPDX-License-Identifier: MIT */
/*
 * bench_util.c - helpers shared by every ring under test: memory, failure
 * reporting, and the reader's out-of-line bookkeeping (phase changes, bad
 * sequence words). The hot paths are inline in bench_impl.h.
 *
 * Memory for every ring comes from spate_bench_alloc(): 2 MiB aligned,
 * rounded up to 2 MiB, advised for transparent huge pages (when asked) and
 * pre-faulted, so no ring pays page faults or more TLB misses than another.
 */
#include "spate_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "bench_impl.h"

#define HUGE_2M (2u * 1024u * 1024u)

uint64_t spate_bench_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t round_2m(size_t size)
{
	return (size + HUGE_2M - 1) & ~(size_t)(HUGE_2M - 1);
}

void *spate_bench_alloc(size_t size, int huge)
{
	void *p = NULL;
	size_t sz = round_2m(size);

	if (posix_memalign(&p, HUGE_2M, sz))
		return NULL;
	if (huge)
		(void)madvise(p, sz, MADV_HUGEPAGE); /* advice only */
	memset(p, 0, sz);
	return p;
}

void spate_bench_free(void *p, size_t size)
{
	(void)size;
	free(p);
}

void spate_bench_free_bufs(struct spate_bench_ctx *x)
{
	for (unsigned i = 0; i < 2 * SPATE_BENCH_MAX_THREADS; i++) {
		free(x->buf[i]);
		x->buf[i] = NULL;
	}
}

void *spate_bench_scratch(size_t size)
{
	void *p = aligned_alloc(128, (size + 127u) & ~(size_t)127u);
	if (p)
		memset(p, 0, size);
	return p;
}

void spate_bench_fail(struct spate_bench_ctx *x, const char *fmt, ...)
{
	int expect = 0;
	/* Acq_rel: the winner writes x->err; the driver reads it after
	 * pthread_join() (which orders it anyway). */
	if (!atomic_compare_exchange_strong_explicit(&x->failed, &expect, 1, memory_order_acq_rel,
						     memory_order_relaxed))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->err, sizeof(x->err), fmt, ap);
	va_end(ap);
}

void spate_bench_rstate_init(struct spate_bench_rstate *s, struct spate_bench_ctx *x, unsigned id)
{
	memset(s, 0, sizeof(*s));
	s->x = x;
	s->res = &x->rres[id];
	s->phase = SPATE_BENCH_INIT;
	s->nw = x->c->nwriters;
	spate_hist_init(&s->res->hist);
}

int spate_bench_rphase_(struct spate_bench_rstate *s, unsigned phase)
{
	s->phase = phase;
	if (phase == SPATE_BENCH_MEASURE) {
		s->n0 = s->n;
		s->t0 = spate_bench_mono_ns();
		spate_hist_init(&s->res->hist);
		return 0;
	}
	if (phase != SPATE_BENCH_STOP)
		return 0;
	uint64_t now = spate_bench_mono_ns();
	if (s->t0) {
		s->res->records = s->n - s->n0;
		s->res->ns = now - s->t0;
	}
	s->res->checksum = s->sum;
	return 1;
}

void spate_bench_bad_seq_(struct spate_bench_rstate *s, uint64_t seqw)
{
	uint64_t id = seqw >> SPATE_BENCH_SEQ_BITS;

	if (!s->res->errors++)
		snprintf(s->res->err, sizeof(s->res->err),
			 "sequence word %#llx, expected writer %llu at %llu",
			 (unsigned long long)seqw, (unsigned long long)id,
			 (unsigned long long)(id < s->nw ? s->expect[id] : 0));
	if (id < s->nw) /* resynchronise on this writer */
		s->expect[id] = (seqw & SPATE_BENCH_SEQ_MASK) + 1u;
}

void spate_bench_pace_init(struct spate_bench_pace *p, const struct spate_bench_ctx *x)
{
	const struct spate_bench_case *c = x->c;

	p->next = 0;
	p->step = 0;
	if (!c->rate)
		return;
	/* Each writer offers rate / nwriters records per second. */
	p->step = (uint64_t)((double)c->batch * 1e9 * c->nwriters / (double)c->rate);
	p->next = spate_bench_mono_ns();
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double spate_bench_median(const double *v, unsigned n)
{
	double *c = n ? malloc(n * sizeof(*c)) : NULL;
	double m;

	if (!c)
		return 0;
	memcpy(c, v, n * sizeof(*c));
	qsort(c, n, sizeof(*c), cmp_double);
	m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
	free(c);
	return m;
}
