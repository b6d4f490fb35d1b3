/* SPDX-License-Identifier: MIT */
/*
 * Liveness and robustness of spate/ring.h against dead, stuck or lying
 * peers (issue 9): a SIGKILLed reader never stops writers, a producer killed
 * between reserve and commit never stops other producers, an empty batch is
 * never seen by readers, payload bytes cannot forge a batch, a slot being
 * claimed is not reaped, and a corrupt control block gives an error instead
 * of a hang. Peers are real processes (fork + SIGKILL) sharing a MAP_SHARED
 * mapping; every test has a timeout, so a hang fails it.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spate/ring.h"

#define KIB ((uint64_t)1024)

struct shared_ring {
	void *mem;
	size_t size;
	struct spate_ring *r;
};

/* A ring in anonymous shared memory, inherited by forked children. */
static void shared_ring(struct shared_ring *s, uint64_t cap, uint32_t flags)
{
	struct spate_ring_params p = {.capacity = cap, .flags = flags};

	s->size = spate_ring_memsize(&p);
	cr_assert_gt(s->size, 0);
	s->mem = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(s->mem, MAP_FAILED);
	cr_assert_eq(spate_ring_format(s->mem, s->size, &p), 0);
	cr_assert_eq(spate_ring_open_mem(s->mem, s->size, &s->r), 0);
}

static void shared_ring_free(struct shared_ring *s)
{
	spate_ring_close(s->r);
	munmap(s->mem, s->size);
}

/* Fork a child that runs @p fn on the ring, tells the parent through a pipe
 * that it is done, then waits to be killed. Returns the child's pid. */
static pid_t child_then_kill(struct shared_ring *s, void (*fn)(struct spate_ring *r))
{
	int fds[2];
	char c = 0;

	cr_assert_eq(pipe(fds), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		struct spate_ring *r;
		if (spate_ring_open_mem(s->mem, s->size, &r) != 0)
			_exit(2);
		fn(r);
		if (write(fds[1], &c, 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	close(fds[1]);
	cr_assert_eq(read(fds[0], &c, 1), 1, "child failed before its step");
	close(fds[0]);
	kill(pid, SIGKILL);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return pid;
}

static void open_reader_step(struct spate_ring *r)
{
	struct spate_ring_reader *rd;
	if (spate_ring_reader_open(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD, &rd) != 0)
		_exit(4);
}

/* Write @p n records of @p len bytes; returns the first failing rc or 0. */
static int put_n(struct spate_ring_writer *w, unsigned n, uint64_t len)
{
	uint8_t buf[512];

	memset(buf, 0x5a, sizeof(buf));
	for (unsigned i = 0; i < n; i++) {
		int rc = spate_ring_put(w, buf, len, i, 0, NULL);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Item 1: a SIGKILLed gating reader is evicted by a writer waiting for space */
/* ------------------------------------------------------------------------ */

static void dead_reader_case(enum spate_ring_wait wait, uint32_t flags)
{
	struct shared_ring s;
	struct spate_ring_writer *w;

	shared_ring(&s, 64 * KIB, SPATE_RING_F_FULL_WAIT | flags);
	child_then_kill(&s, open_reader_step);
	cr_assert_eq(spate_ring_writer_open(s.r, wait, &w), 0);
	/* Forever: only the eviction of the dead reader can let this finish. */
	w->timeout_ns = UINT64_MAX;
	/* Four times the ring: a reader that never releases gates after one. */
	cr_assert_eq(put_n(w, 4 * 1024, 256), 0);
	struct spate_ring_health hl;
	spate_ring_health(s.r, &hl);
	cr_assert_eq(hl.evicted, 1, "evictions counted: %llu", (unsigned long long)hl.evicted);
	struct spate_ring_reader_info ri;
	cr_assert_eq(spate_ring_reader_info(s.r, 0, &ri), 0);
	cr_assert_eq(ri.state, SPATE_RING_SLOT_EVICTED);
	/* The engine's periodic reap frees the evicted slot of the dead. */
	uint32_t nr = 0, nw = 0;
	cr_assert_eq(spate_ring_reap(s.r, &nr, &nw), 0);
	cr_assert_eq(nr, 1);
	cr_assert_eq(spate_ring_reader_info(s.r, 0, &ri), 0);
	cr_assert_eq(ri.state, SPATE_RING_SLOT_FREE);
	spate_ring_writer_close(w);
	shared_ring_free(&s);
}

Test(ring_live, dead_reader_evicted_block, .timeout = 60)
{
	dead_reader_case(SPATE_RING_WAIT_BLOCK, 0);
}

Test(ring_live, dead_reader_evicted_yield_multi_writer, .timeout = 60)
{
	dead_reader_case(SPATE_RING_WAIT_YIELD, SPATE_RING_F_MULTI_WRITER);
}

Test(ring_live, dead_reader_evicted_busy, .timeout = 60)
{
	dead_reader_case(SPATE_RING_WAIT_BUSY, SPATE_RING_F_NO_BLOCKING);
}

/* ------------------------------------------------------------------------ */
/* Item 2: a producer killed between reserve and commit                      */
/* ------------------------------------------------------------------------ */

static void reserve_step(struct spate_ring *r)
{
	struct spate_ring_writer *w;
	struct spate_ring_batch b;
	if (spate_ring_writer_open(r, SPATE_RING_WAIT_YIELD, &w) != 0 ||
	    spate_ring_reserve(w, spate_ring_rec_size(100), &b) != 0)
		_exit(4);
	memset(spate_ring_batch_add(&b, 100, 1, 1), 0xee, 100);
	/* ... and dies here, before spate_ring_commit(). */
}

static void dead_claimant_case(uint32_t flags)
{
	struct shared_ring s;
	struct spate_ring_writer *w;
	struct spate_ring_reader *rd;
	struct spate_ring_rec rec[64];
	uint64_t seq = 0, want = 0;

	shared_ring(&s, 64 * KIB, SPATE_RING_F_MULTI_WRITER | flags);
	cr_assert_eq(spate_ring_reader_open(s.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD,
					    &rd), 0);
	child_then_kill(&s, reserve_step);
	cr_assert_eq(spate_ring_writer_open(s.r, SPATE_RING_WAIT_YIELD, &w), 0);
	w->timeout_ns = UINT64_MAX;
	/* Several laps; each put waits for its sequence number, which needs the
	 * dead claim before it to be skipped. */
	for (unsigned i = 0; i < 2000; i++) {
		uint8_t buf[200];
		memset(buf, (int)(i & 0xff), sizeof(buf));
		cr_assert_eq(spate_ring_put(w, buf, sizeof(buf), i, 7, &seq), 0, "put %u", i);
		cr_assert_eq(seq, want, "put %u got seq %llu", i, (unsigned long long)seq);
		for (;;) {
			int n = spate_ring_peek(rd, rec, 64, UINT64_MAX);
			cr_assert_geq(n, 0, "peek: %d", n);
			if (n == 0)
				break;
			for (int k = 0; k < n; k++) {
				cr_assert_eq(rec[k].seq, want);
				cr_assert_eq(rec[k].len, 200, "a record of the dead claim was read");
				cr_assert_eq(rec[k].type, 7);
				want++;
			}
			cr_assert_eq(spate_ring_release(rd, (unsigned)n), 0);
		}
	}
	cr_assert_eq(want, 2000);
	struct spate_ring_health hl;
	spate_ring_health(s.r, &hl);
	cr_assert_eq(hl.skipped, 1, "skipped claims counted: %llu", (unsigned long long)hl.skipped);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	shared_ring_free(&s);
}

Test(ring_live, dead_claimant_is_skipped, .timeout = 60)
{
	dead_claimant_case(SPATE_RING_F_FULL_WAIT);
}

/* Fail-at-once writers too: their commit must not wait forever either. */
Test(ring_live, dead_claimant_is_skipped_fail_on_full, .timeout = 60)
{
	dead_claimant_case(SPATE_RING_F_NO_BLOCKING);
}

/* Reap (the engine's periodic pass) skips the dead claim on its own, with
 * no writer waiting, and frees the dead writer's slot afterwards. */
Test(ring_live, reap_skips_dead_claim, .timeout = 30)
{
	struct shared_ring s;
	struct spate_ring_writer *w;
	uint32_t nr = 9, nw = 9;
	uint64_t seq = 99;

	shared_ring(&s, 64 * KIB, SPATE_RING_F_MULTI_WRITER);
	child_then_kill(&s, reserve_step);
	cr_assert_eq(spate_ring_reap(s.r, &nr, &nw), 1);
	cr_assert_eq(nw, 1);
	uint64_t tail, head = atomic_load(&s.r->sh->prod.head);
	spate_ring_tail(s.r, &tail, NULL);
	cr_assert_eq(tail, head, "the dead claim is published as a skip");
	cr_assert_eq(spate_ring_writer_open(s.r, SPATE_RING_WAIT_YIELD, &w), 0);
	cr_assert_eq(spate_ring_put(w, "x", 1, 0, 0, &seq), 0);
	cr_assert_eq(seq, 0, "a skip uses no sequence number");
	spate_ring_writer_close(w);
	shared_ring_free(&s);
}

/* ------------------------------------------------------------------------ */
/* Item 3: an empty multi-writer batch is never seen                         */
/* ------------------------------------------------------------------------ */

Test(ring_live, empty_batch_is_invisible, .timeout = 30)
{
	struct shared_ring s;
	struct spate_ring_writer *w;
	struct spate_ring_reader *rd;
	struct spate_ring_batch b;
	struct spate_ring_span sp[8];
	struct spate_ring_rec rec[8];

	shared_ring(&s, 64 * KIB, SPATE_RING_F_MULTI_WRITER);
	cr_assert_eq(spate_ring_reader_open(s.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BUSY,
					    &rd), 0);
	cr_assert_eq(spate_ring_writer_open(s.r, SPATE_RING_WAIT_BUSY, &w), 0);
	cr_assert_eq(spate_ring_reserve(w, 64, &b), 0);
	spate_ring_abort(w, &b);
	cr_assert_eq(spate_ring_reserve(w, 64, &b), 0);
	cr_assert_eq(spate_ring_commit(w, &b, 0, NULL), 0);
	cr_assert_eq(put_n(w, 1, 8), 0);
	int n = spate_ring_peek_batches(rd, sp, 8, UINT64_MAX);
	cr_assert_eq(n, 1, "peek_batches returned %d batches (an empty one is visible)", n);
	cr_assert_eq(sp[0].count, 1);
	cr_assert_eq(spate_ring_release(rd, 1), 0);
	/* And record-level readers skip them too. */
	cr_assert_eq(spate_ring_reserve(w, 64, &b), 0);
	spate_ring_abort(w, &b);
	cr_assert_eq(put_n(w, 1, 8), 0);
	cr_assert_eq(spate_ring_peek(rd, rec, 8, UINT64_MAX), 1);
	cr_assert_eq(rec[0].seq, 1);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	shared_ring_free(&s);
}

/* ------------------------------------------------------------------------ */
/* Item 11: payload bytes cannot forge a batch                               */
/* ------------------------------------------------------------------------ */

Test(ring_live, payload_cannot_forge_a_batch, .timeout = 120)
{
	struct shared_ring s;
	struct spate_ring_writer *w;
	struct spate_ring_reader *rd;
	struct spate_ring_rec rec[64];
	uint64_t want = 0, rng = 0x9e3779b97f4a7c15ull;
	const uint64_t cap = 64 * KIB;

	shared_ring(&s, cap, SPATE_RING_F_MULTI_WRITER);
	cr_assert_eq(spate_ring_reader_open(s.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BUSY,
					    &rd), 0);
	cr_assert_eq(spate_ring_writer_open(s.r, SPATE_RING_WAIT_BUSY, &w), 0);
	for (unsigned i = 0; i < 100000; i++) {
		struct spate_ring_batch b;
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		uint64_t len = 8 * (1 + rng % 40);
		int rc = spate_ring_reserve(w, spate_ring_rec_size(len), &b);
		cr_assert_eq(rc, 0, "reserve %u: %d", i, rc);
		uint64_t *p = spate_ring_batch_add(&b, len, 0, 0);
		uint64_t at = b.pos + (uint64_t)((uint8_t *)p - b.hdr);
		/* Every word looks like a committed header of the next lap at its
		 * own offset: what a publisher trusting bytes past head accepts. */
		for (uint64_t k = 0; k < len / 8; k++) {
			uint64_t pos = at + 8 * k + cap;
			p[k] = SPATE_RING_TAG(pos) | 32u | SPATE_RING_C_COMMITTED;
		}
		spate_ring_commit(w, &b, 0, NULL);
		int n = spate_ring_peek(rd, rec, 64, UINT64_MAX);
		cr_assert_geq(n, 0, "put %u: peek %d (a forged batch was published)", i, n);
		for (int k = 0; k < n; k++)
			cr_assert_eq(rec[k].seq, want++);
		cr_assert_eq(spate_ring_release(rd, (unsigned)n), 0);
	}
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	shared_ring_free(&s);
}

/* ------------------------------------------------------------------------ */
/* Item 17: a corrupt byte in the control block gives an error, not a hang   */
/* ------------------------------------------------------------------------ */

static void corrupt_case(uint32_t flags, size_t field_off, unsigned byte)
{
	struct shared_ring s;
	struct spate_ring_writer *w;

	shared_ring(&s, 64 * KIB, flags | SPATE_RING_F_FULL_WAIT);
	cr_assert_eq(spate_ring_writer_open(s.r, SPATE_RING_WAIT_YIELD, &w), 0);
	cr_assert_eq(put_n(w, 100, 100), 0);
	spate_ring_writer_close(w);
	((uint8_t *)s.mem)[field_off + byte] = 0xff;
	int rc = spate_ring_writer_open(s.r, SPATE_RING_WAIT_YIELD, &w);
	if (rc == 0) {
		w->timeout_ns = UINT64_MAX;
		rc = put_n(w, 2000, 100);
		spate_ring_writer_close(w);
	}
	cr_assert(rc == -EBADMSG || rc == -EIO, "field at %zu byte %u: put gave %d", field_off,
		  byte, rc);
	shared_ring_free(&s);
}

Test(ring_live, corrupt_head_fails, .timeout = 60)
{
	for (unsigned byte = 3; byte < 8; byte++)
		corrupt_case(SPATE_RING_F_MULTI_WRITER, offsetof(struct spate_ring_shared, prod.head),
			     byte);
}

Test(ring_live, corrupt_trim_fails, .timeout = 60)
{
	for (unsigned byte = 3; byte < 8; byte++) {
		corrupt_case(0, offsetof(struct spate_ring_shared, prod.trim), byte);
		corrupt_case(SPATE_RING_F_MULTI_WRITER, offsetof(struct spate_ring_shared, prod.trim),
			     byte);
	}
}

Test(ring_live, corrupt_tail_fails, .timeout = 60)
{
	for (unsigned byte = 3; byte < 8; byte++) {
		corrupt_case(0, offsetof(struct spate_ring_shared, pub.tail), byte);
		corrupt_case(SPATE_RING_F_MULTI_WRITER, offsetof(struct spate_ring_shared, pub.tail),
			     byte);
	}
}

/* ------------------------------------------------------------------------ */
/* Item 13: a slot being claimed (identity not yet written) is not reaped    */
/* ------------------------------------------------------------------------ */

Test(ring_live, claimed_slot_without_identity_is_not_reaped, .timeout = 30)
{
	struct shared_ring s;
	uint32_t nr = 9, nw = 9;

	shared_ring(&s, 64 * KIB, 0);
	struct spate_ring_shared *sh = s.r->sh;
	/* What a claimant's CAS leaves before it writes its pid. */
	atomic_store(&sh->readers[0].own, SPATE_RING_OWN_GEN1 | SPATE_RING_SLOT_ACTIVE);
	cr_assert_eq(spate_ring_reap(s.r, &nr, &nw), 0);
	cr_assert_eq(nr, 0, "a slot being claimed was reaped");
	shared_ring_free(&s);
}

/* A KEEP reader outlives its process on purpose: writers wait for it (here
 * until their timeout) and reap leaves it alone. */
static void open_flagged_reader(struct spate_ring *r, uint32_t flag)
{
	struct spate_ring_reader *rd;
	if (spate_ring_reader_open(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD, &rd) != 0)
		_exit(4);
	if ((flag == SPATE_RING_RSLOT_F_KEEP ? spate_ring_reader_keep(rd)
					      : spate_ring_reader_engine(rd)) != 0)
		_exit(5);
}

static void open_keep_reader_step(struct spate_ring *r)
{
	open_flagged_reader(r, SPATE_RING_RSLOT_F_KEEP);
}

static void open_engine_reader_step(struct spate_ring *r)
{
	open_flagged_reader(r, SPATE_RING_RSLOT_F_ENGINE);
}

/* A reader of a SIGKILLed process that must outlive it gates a writer
 * waiting for space (until its timeout): no eviction. @return the reader
 * slots a reap then freed. */
static uint32_t dead_gate_case(struct shared_ring *s, void (*step)(struct spate_ring *),
			       struct spate_ring_writer **w)
{
	struct spate_ring_health hl;
	uint32_t nr = 99, nw = 99;

	shared_ring(s, 64 * KIB, SPATE_RING_F_FULL_WAIT);
	if (step)
		child_then_kill(s, step);
	cr_assert_eq(spate_ring_writer_open(s->r, SPATE_RING_WAIT_BLOCK, w), 0);
	(*w)->timeout_ns = 100 * 1000000ull;
	if (!step) { /* our own engine reader, detached as an engine stop does */
		struct spate_ring_reader *rd;
		cr_assert_eq(spate_ring_reader_open(s->r, SPATE_RING_START_OLDEST,
						    SPATE_RING_WAIT_YIELD, &rd), 0);
		cr_assert_eq(spate_ring_reader_engine(rd), 0);
		spate_ring_reader_detach(rd);
	}
	cr_assert_eq(put_n(*w, 4 * 1024, 256), -ETIMEDOUT);
	spate_ring_health(s->r, &hl);
	cr_assert_eq(hl.evicted, 0, "a writer evicted a reader that must outlive its process");
	cr_assert_eq(spate_ring_reap(s->r, &nr, &nw), 0);
	return nr;
}

Test(ring_live, keep_reader_is_not_evicted, .timeout = 60)
{
	struct shared_ring s;
	struct spate_ring_writer *w;

	cr_assert_eq(dead_gate_case(&s, open_keep_reader_step, &w), 0, "reap freed a KEEP slot");
	/* Nor can it be evicted by hand: only its adopter releases it. */
	cr_assert_eq(spate_ring_reader_evict(s.r, 0), -EPERM);
	spate_ring_writer_close(w);
	shared_ring_free(&s);
}

/* A dead engine's consumer reader holds what its consumer has not processed
 * until the next engine, its own readers in place, reaps it: a waiting
 * writer must not evict it (that lost records of memory-only streams across
 * an engine SIGKILL in the soak). */
Test(ring_live, engine_reader_is_not_evicted_but_reaped, .timeout = 60)
{
	struct shared_ring s;
	struct spate_ring_writer *w;

	cr_assert_eq(dead_gate_case(&s, open_engine_reader_step, &w), 1,
		     "reap did not free the dead engine's reader");
	cr_assert_eq(put_n(w, 4 * 1024, 256), 0);
	spate_ring_writer_close(w);
	shared_ring_free(&s);
}

/* An engine stopped in a process that lives on (an embedding application)
 * leaves its readers detached: they gate until the next engine's reap, which
 * frees them though their holder is alive (a clean stop lost a memory-only
 * consumer's records to live producers in the soak). */
Test(ring_live, detached_engine_reader_gates_until_reaped, .timeout = 60)
{
	struct shared_ring s;
	struct spate_ring_writer *w;

	cr_assert_eq(dead_gate_case(&s, NULL, &w), 1, "reap left a detached engine reader");
	/* Freed with its flags: the next holder of the slot must never be seen
	 * as a detached engine reader (a reap would free it under a live
	 * `spate tail`, which then read overwritten records in the soak). */
	struct spate_ring_reader_info ri;
	cr_assert_eq(spate_ring_reader_info(s.r, 0, &ri), 0);
	cr_assert_eq(ri.state, SPATE_RING_SLOT_FREE);
	cr_assert_eq(ri.flags, 0, "a freed slot kept flags %#x", ri.flags);
	cr_assert_eq(put_n(w, 4 * 1024, 256), 0);
	spate_ring_writer_close(w);
	shared_ring_free(&s);
}

/* A holder in another PID namespace cannot be looked up: its heartbeat
 * decides. Simulated by a lease naming another namespace. */
Test(ring_live, foreign_namespace_lease_uses_heartbeat, .timeout = 30)
{
	struct shared_ring s;
	struct spate_ring_reader *rd;
	struct timespec ts;
	uint32_t nr = 9, nw = 9;

	shared_ring(&s, 64 * KIB, 0);
	cr_assert_eq(spate_ring_reader_open(s.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD,
					    &rd), 0);
	struct spate_ring_lease *l = &s.r->sh->readers[rd->index].lease;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	/* A pid that is no process here, in a namespace that is not ours. */
	atomic_store(&l->pidns, atomic_load(&l->pidns) + 1);
	atomic_store(&l->pid, 0x3ffffff0u);
	atomic_store(&l->beat_ns, now);
	cr_assert_eq(spate_ring_reap(s.r, &nr, &nw), 0);
	cr_assert_eq(nr, 0, "a fresh foreign lease was judged dead");
	atomic_store(&l->beat_ns, now - 2 * SPATE_RING_LEASE_NS);
	cr_assert_eq(spate_ring_reap(s.r, &nr, &nw), 0);
	cr_assert_eq(nr, 1, "a stale foreign lease was judged alive");
	struct spate_ring_rec rec[1];
	cr_assert_eq(spate_ring_peek(rd, rec, 1, UINT64_MAX), -EPIPE);
	spate_ring_reader_close(rd);
	shared_ring_free(&s);
}

/* A claimed slot whose identity never comes is freed after the bound. */
Test(ring_live, claimed_slot_without_identity_expires, .timeout = 30)
{
	struct shared_ring s;
	uint32_t nr = 9, nw = 9;

	shared_ring(&s, 64 * KIB, 0);
	struct spate_ring_shared *sh = s.r->sh;
	atomic_store(&sh->readers[0].own, SPATE_RING_OWN_GEN1 | SPATE_RING_SLOT_ACTIVE);
	cr_assert_eq(spate_ring_reap(s.r, &nr, &nw), 0);
	cr_assert_eq(nr, 0);
	/* First seen "now": pretend that was longer ago than the bound. */
	cr_assert_neq(atomic_load(&sh->readers[0].lease.beat_ns), 0);
	atomic_fetch_sub(&sh->readers[0].lease.beat_ns, 2 * SPATE_RING_CLAIM_NS);
	cr_assert_eq(spate_ring_reap(s.r, &nr, &nw), 0);
	cr_assert_eq(nr, 1);
	shared_ring_free(&s);
}

/* Tokens held by a dead writer are taken over: the trim walker's (else no
 * writer finds space once the ring has wrapped) and the recovery token. */
static void writer_step(struct spate_ring *r)
{
	struct spate_ring_writer *w;
	if (spate_ring_writer_open(r, SPATE_RING_WAIT_YIELD, &w) != 0)
		_exit(4);
	/* Holds both tokens as if it died inside a walk. */
	atomic_store(&r->sh->prod.trim_lock, w->slot + 1);
	atomic_store(&r->sh->prod.pub_lock, w->slot + 1);
}

Test(ring_live, dead_token_holder_is_taken_over, .timeout = 60)
{
	struct shared_ring s;
	struct spate_ring_writer *w;
	struct spate_ring_health hl;

	shared_ring(&s, 64 * KIB, SPATE_RING_F_MULTI_WRITER | SPATE_RING_F_FULL_WAIT);
	child_then_kill(&s, writer_step);
	cr_assert_eq(spate_ring_writer_open(s.r, SPATE_RING_WAIT_YIELD, &w), 0);
	w->timeout_ns = UINT64_MAX;
	cr_assert_eq(put_n(w, 4 * 1024, 256), 0);
	spate_ring_health(s.r, &hl);
	cr_assert_geq(hl.takeovers, 1);
	uint32_t nr = 9, nw = 9;
	cr_assert_geq(spate_ring_reap(s.r, &nr, &nw), 0);
	cr_assert_eq(nw, 1, "the dead writer's slot is reaped");
	cr_assert_eq(atomic_load(&s.r->sh->prod.pub_lock), 0);
	spate_ring_writer_close(w);
	shared_ring_free(&s);
}

/* Reap is safe at run time: a thread reaping in a loop while writers and a
 * reader run never frees or evicts a live peer, and nothing is lost. */
struct reaper_arg {
	struct spate_ring *r;
	atomic_int stop;
	uint64_t rounds;
};

static void *reaper_main(void *p)
{
	struct reaper_arg *a = p;
	while (!atomic_load(&a->stop)) {
		uint32_t nr = 0, nw = 0;
		int rc = spate_ring_reap(a->r, &nr, &nw);
		if (rc < 0 || nr || nw)
			return (void *)1;
		a->rounds++;
	}
	return NULL;
}

struct live_writer_arg {
	struct spate_ring *r;
	unsigned id, n;
	int rc;
};

static void *live_writer_main(void *p)
{
	struct live_writer_arg *a = p;
	struct spate_ring_writer *w;
	a->rc = spate_ring_writer_open(a->r, SPATE_RING_WAIT_YIELD, &w);
	if (a->rc)
		return NULL;
	w->timeout_ns = UINT64_MAX;
	for (unsigned i = 0; i < a->n && !a->rc; i++) {
		uint64_t v[2] = {a->id, i};
		a->rc = spate_ring_put(w, v, sizeof(v), a->id, 0, NULL);
	}
	spate_ring_writer_close(w);
	return NULL;
}

Test(ring_live, reap_concurrent_with_live_peers, .timeout = 120)
{
	struct shared_ring s;
	struct spate_ring_reader *rd;
	struct spate_ring_rec rec[64];
	struct reaper_arg ra = {0};
	struct live_writer_arg wa[3];
	pthread_t rt, wt[3];
	uint64_t next[3] = {0}, got = 0;
	const unsigned per = 20000;

	shared_ring(&s, 64 * KIB, SPATE_RING_F_MULTI_WRITER | SPATE_RING_F_FULL_WAIT);
	cr_assert_eq(spate_ring_reader_open(s.r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD,
					    &rd), 0);
	ra.r = s.r;
	cr_assert_eq(pthread_create(&rt, NULL, reaper_main, &ra), 0);
	for (unsigned k = 0; k < 3; k++) {
		wa[k] = (struct live_writer_arg){.r = s.r, .id = k, .n = per};
		cr_assert_eq(pthread_create(&wt[k], NULL, live_writer_main, &wa[k]), 0);
	}
	while (got < 3ull * per) {
		int n = spate_ring_peek(rd, rec, 64, UINT64_MAX);
		cr_assert_geq(n, 0, "peek: %d", n);
		if (n == 0) {
			spate_ring_reader_wait(rd, 1000000);
			continue;
		}
		for (int i = 0; i < n; i++) {
			uint64_t v[2];
			cr_assert_eq(rec[i].len, sizeof(v));
			memcpy(v, rec[i].data, sizeof(v));
			cr_assert_lt(v[0], 3);
			cr_assert_eq(v[1], next[v[0]], "writer %llu: record %llu, expected %llu",
				     (unsigned long long)v[0], (unsigned long long)v[1],
				     (unsigned long long)next[v[0]]);
			next[v[0]]++;
		}
		got += (unsigned)n;
		cr_assert_eq(spate_ring_release(rd, (unsigned)n), 0);
	}
	for (unsigned k = 0; k < 3; k++) {
		pthread_join(wt[k], NULL);
		cr_assert_eq(wa[k].rc, 0, "writer %u: %d", k, wa[k].rc);
	}
	atomic_store(&ra.stop, 1);
	void *res;
	pthread_join(rt, &res);
	cr_assert_null(res, "reap freed a live peer or failed");
	cr_assert_gt(ra.rounds, 0);
	spate_ring_reader_close(rd);
	shared_ring_free(&s);
}
