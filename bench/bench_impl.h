/* SPDX-License-Identifier: MIT */
/**
 * @file bench_impl.h
 * @brief Private interface between the ring benchmark driver and the rings
 * it measures (spate, DPDK rte_ring, concurrencykit ck_ring).
 *
 * Every implementation runs the same work, from the inline helpers below:
 *  - a writer fills each record with its sequence word (writer id << 48 |
 *    counter) in every 8-byte word, and publishes batches of c->batch
 *    records; one clock read per batch gives the publication timestamp;
 *  - a reader takes up to c->batch records at a time, samples one latency
 *    per take (its clock minus the oldest record's timestamp), checks each
 *    record's sequence word against the writer's next expected counter and
 *    sums every 8-byte word of the payload (spate_bench_touch()).
 * Each ring's worker functions are specialised for the usual record sizes
 * (SPATE_BENCH_SIZE_DISPATCH) so no implementation pays for a run-time size.
 *
 * Not installed; only the bench/ translation units include it.
 */
#ifndef SPATE_BENCH_IMPL_H
#define SPATE_BENCH_IMPL_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "spate/ring.h"
#include "spate/hist.h"

#define SPATE_BENCH_MAX_THREADS 8u
/** Sequence word: writer id in the top 16 bits, counter below. */
#define SPATE_BENCH_SEQ_BITS 48u
#define SPATE_BENCH_SEQ_MASK ((1ull << SPATE_BENCH_SEQ_BITS) - 1u)
/** Smallest record: the sequence word and a timestamp word. */
#define SPATE_BENCH_MIN_SIZE 16u

enum spate_bench_mode {
	SPATE_BENCH_1TO1 = 0,
	SPATE_BENCH_4TO1 = 1,
	SPATE_BENCH_1TO3 = 2,
	SPATE_BENCH_NMODES
};

enum spate_bench_phase {
	SPATE_BENCH_INIT = 0,    /**< threads starting */
	SPATE_BENCH_WARMUP = 1,  /**< running, not measured */
	SPATE_BENCH_MEASURE = 2, /**< running, measured */
	SPATE_BENCH_STOP = 3,    /**< every thread returns */
};

/** One case to run. */
struct spate_bench_case {
	enum spate_bench_mode mode;
	unsigned size;       /**< payload bytes: a multiple of 8, >= 16 */
	unsigned batch;      /**< records per publish and per take */
	uint64_t ring_bytes; /**< data bytes of each ring (a power of two) */
	unsigned nwriters;
	unsigned nreaders;
	int yield;           /**< back off with sched_yield() (oversubscribed) */
	uint64_t rate;       /**< offered records/s over all writers; 0: unpaced */
	int huge;            /**< ask for transparent huge pages */
	int dpdk_sync;       /**< rte_ring multi-writer sync: 0 MP, 1 RTS, 2 HTS */
};

/** A reader's result; written by the reader, read after pthread_join(). */
struct spate_bench_rres {
	_Alignas(128) uint64_t records; /**< records taken while measuring */
	uint64_t ns;                    /**< length of the measured interval */
	uint64_t errors;                /**< sequence words out of order */
	uint64_t checksum;              /**< sum of the touched words (kept live) */
	char err[112];                  /**< first failure, "" if none */
	struct spate_hist hist;         /**< publish -> take latency, one per take */
};

/** Everything the threads of one run share. */
struct spate_bench_ctx {
	/** enum spate_bench_phase; written by the driver, polled by all. */
	_Alignas(128) _Atomic unsigned phase;
	_Alignas(128) _Atomic unsigned ready; /**< threads at the start line */
	_Atomic int failed;                   /**< a thread gave up */
	const struct spate_bench_case *c;
	void *ring;                                   /**< the ring's own state */
	void *wh[SPATE_BENCH_MAX_THREADS];            /**< per-writer handle */
	void *rh[SPATE_BENCH_MAX_THREADS];            /**< per-reader handle */
	void *buf[2 * SPATE_BENCH_MAX_THREADS];       /**< per-thread scratch */
	struct spate_bench_rres *rres;                /**< c->nreaders of them */
	uint64_t wrecords[SPATE_BENCH_MAX_THREADS];   /**< records each writer wrote */
	char err[128];                                /**< setup or writer failure */
};

/** A ring under test. */
struct spate_bench_impl {
	const char *name; /**< "spate", "rte_ring", "ck_ring" */
	/** NULL if the ring can run case @p c, else the reason it cannot. */
	const char *(*unsupported)(const struct spate_bench_case *c);
	/** Create the ring and the handles of every thread. 0 or -errno
	 *  (with a message in x->err). */
	int (*setup)(struct spate_bench_ctx *x);
	/** Free what setup made (also after a failed setup). */
	void (*teardown)(struct spate_bench_ctx *x);
	/** Thread bodies: run until the phase is SPATE_BENCH_STOP. */
	void (*writer)(struct spate_bench_ctx *x, unsigned id);
	void (*reader)(struct spate_bench_ctx *x, unsigned id);
};

extern const struct spate_bench_impl spate_bench_impl_spate;
extern const struct spate_bench_impl spate_bench_impl_rte_ring;
extern const struct spate_bench_impl spate_bench_impl_ck_ring;
/** The least any ring carrying rte_ring's bytes does (base_bound.c). */
extern const struct spate_bench_impl spate_bench_impl_bound;
/** The same with non-temporal full-line stores (x86-64). */
extern const struct spate_bench_impl spate_bench_impl_bound_nt;

/* ------------------------------------------------------------------------ */
/* Shared helpers (bench_util.c)                                            */
/* ------------------------------------------------------------------------ */

/** CLOCK_MONOTONIC in ns. */
uint64_t spate_bench_mono_ns(void);
/** Zeroed memory of @p size bytes, 2 MiB aligned (huge pages if @p huge);
 *  NULL on failure. Free with spate_bench_free(). */
void *spate_bench_alloc(size_t size, int huge);
void spate_bench_free(void *p, size_t size);
/** Per-thread scratch of @p size bytes on its own 128-byte line pairs (no
 *  false sharing with anything another thread writes); free() it. */
void *spate_bench_scratch(size_t size);
/** Free the per-thread scratch buffers x->buf[] (teardown of every impl). */
void spate_bench_free_bufs(struct spate_bench_ctx *x);
/** Record the first failure of a run (thread-safe); later ones are dropped. */
void spate_bench_fail(struct spate_bench_ctx *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------------ */
/* Inline hot-path helpers, identical for every ring                        */
/* ------------------------------------------------------------------------ */

#define SPATE_BENCH_INLINE static inline __attribute__((always_inline))

/** Call @p fn(size, ...) with a compile-time size for the common sizes. */
#define SPATE_BENCH_SIZE_DISPATCH(fn, size, ...)                          \
	do {                                                              \
		switch (size) {                                           \
		case 16: fn(16u, __VA_ARGS__); break;                     \
		case 64: fn(64u, __VA_ARGS__); break;                     \
		case 256: fn(256u, __VA_ARGS__); break;                   \
		case 1024: fn(1024u, __VA_ARGS__); break;                 \
		case 4096: fn(4096u, __VA_ARGS__); break;                 \
		default: fn((size), __VA_ARGS__); break;                  \
		}                                                         \
	} while (0)

/** Relaxed: the phase is a flag; results are handed over by pthread_join(). */
SPATE_BENCH_INLINE unsigned spate_bench_phase(const struct spate_bench_ctx *x)
{
	return atomic_load_explicit(&x->phase, memory_order_relaxed);
}

SPATE_BENCH_INLINE int spate_bench_stopped(const struct spate_bench_ctx *x)
{
	return spate_bench_phase(x) == SPATE_BENCH_STOP;
}

/** Wait a little for data or space: pause, or yield when oversubscribed. */
SPATE_BENCH_INLINE void spate_bench_backoff(const struct spate_bench_ctx *x, unsigned *spins)
{
	if (x->c->yield && ++*spins > 16u) {
		*spins = 0;
		sched_yield();
		return;
	}
	spate_cpu_relax();
}

/** Fill one payload: every 8-byte word holds the sequence word. */
SPATE_BENCH_INLINE void spate_bench_fill(void *p, unsigned size, uint64_t seqw)
{
	uint64_t *w = (uint64_t *)p;
	for (unsigned k = 0; k < size / 8u; k++)
		w[k] = seqw;
}

/** Read every 8-byte word of a payload; return their sum. */
SPATE_BENCH_INLINE uint64_t spate_bench_touch(const void *p, unsigned size)
{
	const uint64_t *w = (const uint64_t *)p;
	uint64_t s = 0;
	for (unsigned k = 0; k < size / 8u; k++)
		s += w[k];
	return s;
}

/** Reader-side state: counts, expected sequences, the phase it last saw. */
struct spate_bench_rstate {
	struct spate_bench_ctx *x;
	struct spate_bench_rres *res;
	uint64_t n;  /**< records taken since start */
	uint64_t n0; /**< n when measurement began */
	uint64_t t0; /**< when measurement began, 0 before */
	uint64_t sum;
	unsigned phase;
	unsigned nw;
	uint64_t expect[SPATE_BENCH_MAX_THREADS];
};

void spate_bench_rstate_init(struct spate_bench_rstate *s, struct spate_bench_ctx *x, unsigned id);
/** Handle a phase change; returns 1 when the reader must stop. */
int spate_bench_rphase_(struct spate_bench_rstate *s, unsigned phase);
/** Count a sequence word that is not the expected one. */
void spate_bench_bad_seq_(struct spate_bench_rstate *s, uint64_t seqw);

/** Poll the phase after a take or an empty poll; 1 = stop. */
SPATE_BENCH_INLINE int spate_bench_rtick(struct spate_bench_rstate *s)
{
	unsigned ph = spate_bench_phase(s->x);
	if (__builtin_expect(ph == s->phase, 1))
		return 0;
	return spate_bench_rphase_(s, ph);
}

/** Check a record's sequence word and touch its payload. */
SPATE_BENCH_INLINE void spate_bench_consume(struct spate_bench_rstate *s, const void *p,
					    unsigned size)
{
	uint64_t w0 = *(const uint64_t *)p;
	uint64_t id = w0 >> SPATE_BENCH_SEQ_BITS;
	if (__builtin_expect(id < s->nw && (w0 & SPATE_BENCH_SEQ_MASK) == s->expect[id], 1))
		s->expect[id]++;
	else
		spate_bench_bad_seq_(s, w0);
	s->sum += spate_bench_touch(p, size);
}

/** One latency sample: now minus a publication timestamp (CLOCK_REALTIME). */
SPATE_BENCH_INLINE void spate_bench_latency(struct spate_bench_rstate *s, uint64_t ts)
{
	uint64_t now = spate_now_ns();
	spate_hist_record(&s->res->hist, now > ts ? now - ts : 0);
}

/** Pacing of a writer for --rate: wait until the next batch is due. */
struct spate_bench_pace {
	uint64_t next; /**< CLOCK_MONOTONIC ns of the next batch, 0: unpaced */
	uint64_t step; /**< ns between batches */
};

void spate_bench_pace_init(struct spate_bench_pace *p, const struct spate_bench_ctx *x);

SPATE_BENCH_INLINE void spate_bench_pace_wait(struct spate_bench_pace *p,
					      const struct spate_bench_ctx *x)
{
	if (!p->next)
		return;
	p->next += p->step;
	unsigned spins = 0;
	while (spate_bench_mono_ns() < p->next && !spate_bench_stopped(x))
		spate_bench_backoff(x, &spins);
}

#endif
