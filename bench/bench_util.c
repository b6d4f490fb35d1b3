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

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
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

/* The cross-core round trip: two threads pinned to two CPUs bounce one
 * cache line (each waits for the other's value, then writes its own). */
struct c2c {
	_Alignas(64) _Atomic uint64_t line;
	int cpu;
	unsigned rounds;
};

static void c2c_pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *c2c_pong(void *arg)
{
	struct c2c *c = arg;

	c2c_pin(c->cpu);
	for (uint64_t i = 1; i <= 2ull * c->rounds; i += 2) {
		/* Acquire: pairs with the ping's release of i. */
		while (atomic_load_explicit(&c->line, memory_order_acquire) != i)
			spate_cpu_relax();
		/* Release: pairs with the ping's acquire of i + 1. */
		atomic_store_explicit(&c->line, i + 1, memory_order_release);
	}
	return NULL;
}

double spate_bench_c2c_rtt_ns(int cpu_a, int cpu_b)
{
	enum { ROUNDS = 20000, REPS = 5 };
	double v[REPS];
	unsigned n = 0;
	cpu_set_t old;
	int have_old = pthread_getaffinity_np(pthread_self(), sizeof(old), &old) == 0;

	if (cpu_a < 0 || cpu_b < 0) {
		/* The first two CPUs this process may use. */
		cpu_a = cpu_b = -1;
		for (int i = 0; have_old && i < CPU_SETSIZE && cpu_b < 0; i++)
			if (CPU_ISSET(i, &old)) {
				if (cpu_a < 0)
					cpu_a = i;
				else
					cpu_b = i;
			}
		if (cpu_b < 0)
			return 0;
	}
	for (unsigned r = 0; r < REPS; r++) {
		struct c2c *c = aligned_alloc(64, sizeof(*c));
		pthread_t th;
		if (!c)
			break;
		atomic_init(&c->line, 0);
		c->cpu = cpu_b;
		c->rounds = ROUNDS;
		if (pthread_create(&th, NULL, c2c_pong, c)) {
			free(c);
			break;
		}
		c2c_pin(cpu_a);
		uint64_t t0 = spate_bench_mono_ns();
		for (uint64_t i = 0; i < 2ull * ROUNDS; i += 2) {
			/* Release: pairs with the pong's acquire of i + 1. */
			atomic_store_explicit(&c->line, i + 1, memory_order_release);
			/* Acquire: pairs with the pong's release of i + 2. */
			while (atomic_load_explicit(&c->line, memory_order_acquire) != i + 2)
				spate_cpu_relax();
		}
		uint64_t t1 = spate_bench_mono_ns();
		pthread_join(th, NULL);
		free(c);
		v[n++] = (double)(t1 - t0) / ROUNDS;
	}
	if (have_old)
		(void)pthread_setaffinity_np(pthread_self(), sizeof(old), &old);
	/* The fastest of the repeats: a preempted thread (a shared machine)
	 * only ever adds time. */
	double best = 0;
	for (unsigned i = 0; i < n; i++)
		if (!best || v[i] < best)
			best = v[i];
	return best;
}
