/* SPDX-License-Identifier: MIT */
/*
 * Stress tests for spate/ring.h: millions of records with random sizes and
 * batch sizes, every payload checked, sequence numbers and per-writer order
 * verified, running checksums compared between writers and readers; and the
 * blocking wait strategy under random sleeps and stalls (no lost wake-up).
 *
 * SPATE_STRESS_RECORDS (default 10,000,000) sets the records per stress case.
 * Threads outnumber cores on small machines: every wait here yields or blocks.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spate/ring.h"

#include "ring_testlib.h"

#define SEC (1000000000ull)
#define MS (1000000ull)

struct wthread {
	struct spate_ring *r;
	enum spate_ring_wait wait;
	uint64_t timeout_ns;
	struct tl_stream_opts o;
	struct tl_stream_res res;
};

static void *writer_thread(void *arg)
{
	struct wthread *t = arg;
	struct spate_ring_writer *w = NULL;
	int rc = spate_ring_writer_open(t->r, t->wait, &w);

	if (rc != 0) {
		snprintf(t->res.msg, sizeof(t->res.msg), "writer %u: open: %d", t->o.id, rc);
		t->res.rc = 100;
		return NULL;
	}
	w->timeout_ns = t->timeout_ns;
	tl_write_stream(w, &t->o, &t->res);
	spate_ring_writer_close(w);
	return NULL;
}

struct rthread {
	struct spate_ring_reader *rd;
	struct tl_stream_opts o;
	struct tl_stream_res res;
};

static void *reader_thread(void *arg)
{
	struct rthread *t = arg;

	tl_read_stream(t->rd, &t->o, &t->res);
	/* Closing frees the writers even if we stopped early on an error. */
	spate_ring_reader_close(t->rd);
	t->rd = NULL;
	return NULL;
}

static void mem_ring(struct tl_mem *m, uint64_t cap, uint32_t flags)
{
	int rc = tl_mem_ring(m, cap, 0, flags);

	cr_assert_eq(rc, 0, "in-memory ring: %d", rc);
}

static struct spate_ring_reader *open_reader(struct spate_ring *r, enum spate_ring_wait wait)
{
	struct spate_ring_reader *rd = NULL;
	int rc = spate_ring_reader_open(r, SPATE_RING_START_OLDEST, wait, &rd);

	cr_assert_eq(rc, 0, "reader_open: %d", rc);
	return rd;
}

/*
 * Run @p nw writers and @p nr readers (all readers see all records) on @p r
 * and check the results. Writer i writes @p per_writer records (+1 for the
 * first total % nw writers).
 */
static void run(const char *what, struct spate_ring *r, unsigned nw, unsigned nr, uint64_t total,
		enum spate_ring_wait wwait, enum spate_ring_wait rwait,
		const struct tl_stream_opts *wopt, const struct tl_stream_opts *ropt,
		uint64_t wtimeout, uint64_t *max_wait_ns)
{
	struct wthread *wt = calloc(nw, sizeof(*wt));
	struct rthread *rt = calloc(nr, sizeof(*rt));
	pthread_t *wth = calloc(nw, sizeof(*wth)), *rth = calloc(nr, sizeof(*rth));
	uint64_t t0 = tl_mono_ns();

	cr_assert(wt && rt && wth && rth);
	cr_assert_leq(nw, TL_MAX_IDS);
	for (unsigned i = 0; i < nr; i++) {
		rt[i].rd = open_reader(r, rwait);
		rt[i].o = *ropt;
		rt[i].o.n = total;
		rt[i].o.nids = nw;
		rt[i].o.seed = ropt->seed + 1000 * i;
	}
	for (unsigned i = 0; i < nw; i++) {
		wt[i].r = r;
		wt[i].wait = wwait;
		wt[i].timeout_ns = wtimeout;
		wt[i].o = *wopt;
		wt[i].o.id = i;
		wt[i].o.n = total / nw + (i < total % nw);
		wt[i].o.single_writer = nw == 1;
	}
	for (unsigned i = 0; i < nr; i++)
		cr_assert_eq(pthread_create(&rth[i], NULL, reader_thread, &rt[i]), 0);
	for (unsigned i = 0; i < nw; i++)
		cr_assert_eq(pthread_create(&wth[i], NULL, writer_thread, &wt[i]), 0);
	for (unsigned i = 0; i < nw; i++)
		pthread_join(wth[i], NULL);
	for (unsigned i = 0; i < nr; i++)
		pthread_join(rth[i], NULL);
	double dt = (double)(tl_mono_ns() - t0) / 1e9;

	for (unsigned i = 0; i < nw; i++) {
		cr_assert_eq(wt[i].res.rc, 0, "%s: %s", what, wt[i].res.msg);
		cr_assert_eq(wt[i].res.count, wt[i].o.n, "%s: writer %u wrote %llu", what, i,
			     (unsigned long long)wt[i].res.count);
	}
	if (max_wait_ns)
		*max_wait_ns = 0;
	for (unsigned j = 0; j < nr; j++) {
		const struct tl_stream_res *res = &rt[j].res;
		cr_assert_eq(res->rc, 0, "%s: reader %u: %s", what, j, res->msg);
		cr_assert_eq(res->count, total, "%s: reader %u read %llu", what, j,
			     (unsigned long long)res->count);
		cr_assert_eq(res->last_seq, total - 1, "%s: reader %u: last seq %llu", what, j,
			     (unsigned long long)res->last_seq);
		for (unsigned i = 0; i < nw; i++) {
			cr_assert_eq(res->next[i], wt[i].o.n,
				     "%s: reader %u saw %llu records of writer %u, which wrote %llu",
				     what, j, (unsigned long long)res->next[i], i,
				     (unsigned long long)wt[i].o.n);
			cr_assert_eq(res->acc[i], wt[i].res.acc[i],
				     "%s: reader %u: checksum of writer %u's records differs", what, j, i);
		}
		if (max_wait_ns && res->max_wait_ns > *max_wait_ns)
			*max_wait_ns = res->max_wait_ns;
	}
	fprintf(stderr, "ring_stress %s: %llu records, %u writer(s), %u reader(s): %.2f s (%.2f M records/s)\n",
		what, (unsigned long long)total, nw, nr, dt, (double)total / dt / 1e6);
	free(wt);
	free(rt);
	free(wth);
	free(rth);
}

static const struct tl_stream_opts stress_w = { .seed = 0x5eed, .max_len = 300, .max_batch = 64 };
static const struct tl_stream_opts stress_r = { .seed = 0xbeef, .max_len = 300,
						.wait_timeout_ns = 30 * SEC };

Test(ring_stress, one_writer_one_reader, .timeout = 300)
{
	struct tl_mem m;

	mem_ring(&m, 256 * KIB, SPATE_RING_F_FULL_WAIT);
	run("1w1r", m.r, 1, 1, tl_stress_records(), SPATE_RING_WAIT_YIELD, SPATE_RING_WAIT_YIELD,
	    &stress_w, &stress_r, 60 * SEC, NULL);
	tl_mem_free(&m);
}

Test(ring_stress, four_writers_one_reader, .timeout = 300)
{
	struct tl_mem m;

	mem_ring(&m, 256 * KIB, SPATE_RING_F_FULL_WAIT | SPATE_RING_F_MULTI_WRITER);
	run("4w1r", m.r, 4, 1, tl_stress_records(), SPATE_RING_WAIT_YIELD, SPATE_RING_WAIT_YIELD,
	    &stress_w, &stress_r, 60 * SEC, NULL);
	tl_mem_free(&m);
}

Test(ring_stress, one_writer_three_readers, .timeout = 300)
{
	struct tl_mem m;

	mem_ring(&m, 256 * KIB, SPATE_RING_F_FULL_WAIT);
	run("1w3r", m.r, 1, 3, tl_stress_records(), SPATE_RING_WAIT_YIELD, SPATE_RING_WAIT_YIELD,
	    &stress_w, &stress_r, 60 * SEC, NULL);
	tl_mem_free(&m);
}

/* Blocking waits on both sides, a small ring so both sleep often, random
 * short naps: a reader wait that times out (5 s) or a writer that times out
 * on a full ring (5 s) is a lost wake-up. */
static const struct tl_stream_opts block_w = { .seed = 0xb10c, .max_len = 300, .max_batch = 16,
					       .nap_every = 500, .nap_us = 200 };
static const struct tl_stream_opts block_r = { .seed = 0xb10d, .max_len = 300, .nap_every = 400,
					       .nap_us = 200, .wait_timeout_ns = 5 * SEC };

static uint64_t block_records(void)
{
	uint64_t n = tl_stress_records() / 30;
	return n < 100000 ? 100000 : (n > 300000 ? 300000 : n);
}

Test(ring_stress, block_no_lost_wakeup, .timeout = 300)
{
	struct tl_mem m;

	mem_ring(&m, 64 * KIB, SPATE_RING_F_FULL_WAIT);
	run("block 1w1r", m.r, 1, 1, block_records(), SPATE_RING_WAIT_BLOCK, SPATE_RING_WAIT_BLOCK,
	    &block_w, &block_r, 5 * SEC, NULL);
	tl_mem_free(&m);
}

Test(ring_stress, block_no_lost_wakeup_multi_writer, .timeout = 300)
{
	struct tl_mem m;

	mem_ring(&m, 64 * KIB, SPATE_RING_F_FULL_WAIT | SPATE_RING_F_MULTI_WRITER);
	run("block 2w2r", m.r, 2, 2, block_records(), SPATE_RING_WAIT_BLOCK, SPATE_RING_WAIT_BLOCK,
	    &block_w, &block_r, 5 * SEC, NULL);
	tl_mem_free(&m);
}

/* The writer stalls 50 ms at random points while the reader blocks (and the
 * reader stalls while the writer blocks on the full ring). Waits are bounded
 * at 1 s: a stall is 50 ms, so anything longer is a missed wake-up. */
Test(ring_stress, block_stalls, .timeout = 300)
{
	struct tl_mem m;
	uint64_t n = 100000, max_wait = 0;
	struct tl_stream_opts w = block_w, r = block_r;

	w.nap_every = 0;
	r.nap_every = 0;
	w.stall_every = n / 6;
	w.stall_us = 50000;
	r.stall_every = n / 4;
	r.stall_us = 50000;
	r.wait_timeout_ns = 1 * SEC;
	mem_ring(&m, 64 * KIB, SPATE_RING_F_FULL_WAIT);
	run("block stalls", m.r, 1, 1, n, SPATE_RING_WAIT_BLOCK, SPATE_RING_WAIT_BLOCK, &w, &r,
	    1 * SEC, &max_wait);
	/* The reader did block through at least one writer stall. */
	cr_assert_geq(max_wait, 30 * MS, "longest reader wait %llu ns: no wait spanned a stall",
		      (unsigned long long)max_wait);
	cr_assert_lt(max_wait, 1 * SEC);
	tl_mem_free(&m);
}
