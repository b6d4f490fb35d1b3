/* SPDX-License-Identifier: MIT */
/*
 * ring.c - setup and slow paths of the record ring (hot paths are inline in
 * include/spate/ring.h).
 *
 * Design. A ring is a control block (struct spate_ring_shared) followed by a
 * power-of-two data area. Positions are free-running 64-bit byte counts,
 * masked on access. Batches never wrap: a batch that does not fit before the
 * end is preceded by a PAD batch. Three positions matter:
 *
 *   trim <= reader positions <= tail <= head
 *
 * tail is what readers may read (one release store per published batch);
 * head is what writers have claimed; trim is the oldest batch boundary still
 * intact, where OLDEST readers start. A writer may write below
 * min(trim, reader positions) + capacity, and caches that limit so it looks
 * at the readers' lines only when the cache runs out. Before it raises the
 * limit it advances trim over whole batches (reading their headers), then
 * re-reads the reader slots: a Dekker pair with a reader that registers,
 * then re-reads trim.
 *
 * Multi-writer rings claim with a CAS on head after recording the intended
 * claim in the writer's slot; the batch header gets its claimed length at
 * once and its COMMITTED bit when the records are written. Whoever holds the
 * publisher token then walks committed batches from tail, stamps their
 * sequence numbers (so numbers are contiguous in ring order, assigned at
 * publication) and stores tail once. A writer that commits while another
 * holds the token leaves the work to it; the holder re-checks after giving
 * the token back (Dekker again), so no commit is left unpublished.
 *
 * Trade-offs and limits. A preempted publisher delays publication of the
 * batches behind it (never their claims); a dead claimant stops publication
 * at its batch until the recovery pass (later work) turns its claim, known
 * from the header or from its slot's intent, into an empty batch. Readers
 * never block on it: peek returns 0 and waits time out. At most
 * SPATE_RING_MAX_READERS readers and SPATE_RING_MAX_WRITERS writers.
 */
#include "spate_config.h"

#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "spate/ring.h"
#include "spate/shm.h"
#include "rings/proc.h"

static long futex_op(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

/* The low 32 bits of a 64-bit atomic, for futex waits on tail. */
static _Atomic uint32_t *low_half(_Atomic uint64_t *p)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (_Atomic uint32_t *)(void *)p;
#else
	return (_Atomic uint32_t *)(void *)((char *)p + 4);
#endif
}

static uint64_t deadline_of(uint64_t timeout_ns)
{
	uint64_t now = spate_mono_ns();
	return timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
}

/* Sleep on @p word while it holds @p val, at most until @p deadline. */
static void futex_sleep(_Atomic uint32_t *word, uint32_t val, uint64_t deadline)
{
	struct timespec ts, *tsp = NULL;

	if (deadline != UINT64_MAX) {
		uint64_t now = spate_mono_ns();
		uint64_t d = deadline > now ? deadline - now : 0;
		ts.tv_sec = (time_t)(d / 1000000000ull);
		ts.tv_nsec = (long)(d % 1000000000ull);
		tsp = &ts;
	}
	/* Shared futex (no PRIVATE flag): waiters may be in other processes. */
	futex_op(word, FUTEX_WAIT, val, tsp);
}

/* Spin iterations before a YIELD or BLOCK waiter yields or sleeps. */
#define SPIN_BEFORE_SLEEP 2048u

/* A slot's owner (pid, start time): written by the owner after it claims
 * the slot, read by reapers in other threads and processes. Relaxed: a
 * liveness hint; the slot's state word decides, and a reaper that reads a
 * half-written owner only takes a live owner for a dead one in the window
 * between the claim and these stores (see spate_ring_reap). */
static void owner_set(uint32_t *pid, uint64_t *start)
{
	__atomic_store_n(pid, (uint32_t)getpid(), __ATOMIC_RELAXED);
	__atomic_store_n(start, spate_proc_start_time(getpid()), __ATOMIC_RELAXED);
}

static int owner_alive(const uint32_t *pid, const uint64_t *start)
{
	return spate_proc_alive((pid_t)__atomic_load_n(pid, __ATOMIC_RELAXED),
				__atomic_load_n(start, __ATOMIC_RELAXED));
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */
/* ------------------------------------------------------------------------ */

static uint64_t data_offset(void)
{
	return (sizeof(struct spate_ring_shared) + 4095u) & ~(uint64_t)4095u;
}

/* Largest payload that fits: one record in a batch of half the ring. */
static uint64_t max_payload(uint64_t cap)
{
	return (cap >> 1) - SPATE_RING_BHDR_SIZE - sizeof(struct spate_ring_rhdr) - 8u;
}

static int check_params(const struct spate_ring_params *p)
{
	if (!p || p->capacity < SPATE_RING_MIN_CAPACITY || p->capacity > SPATE_RING_MAX_CAPACITY ||
	    (p->capacity & (p->capacity - 1)) || (p->flags & ~SPATE_RING_F_ALL_) ||
	    p->max_record > max_payload(p->capacity) || p->first_seq >= (1ull << 62))
		return -EINVAL;
	return 0;
}

size_t spate_ring_memsize(const struct spate_ring_params *p)
{
	if (check_params(p) < 0)
		return 0;
	return (size_t)(data_offset() + p->capacity);
}

int spate_ring_format(void *mem, size_t size, const struct spate_ring_params *p)
{
	struct spate_ring_shared *sh = mem;

	if (check_params(p) < 0 || !mem || ((uintptr_t)mem & (SPATE_RING_LINE - 1)))
		return -EINVAL;
	if (size < spate_ring_memsize(p))
		return -ENOSPC;
	memset(sh, 0, sizeof(*sh));
	sh->meta.magic = SPATE_RING_MAGIC;
	sh->meta.layout_version = SPATE_RING_LAYOUT_VERSION;
	sh->meta.shared_size = (uint32_t)sizeof(*sh);
	sh->meta.total_size = data_offset() + p->capacity;
	sh->meta.capacity = p->capacity;
	sh->meta.data_off = data_offset();
	sh->meta.max_record = p->max_record ? p->max_record : max_payload(p->capacity);
	sh->meta.flags = p->flags;
	sh->meta.cap_shift = (uint32_t)__builtin_ctzll(p->capacity);
	/* Relaxed: nobody can see the ring before the release of ready below. */
	atomic_store_explicit(&sh->pub.tail_seq, p->first_seq, memory_order_relaxed);
	/* Release: pairs with the acquire load of ready in spate_ring_open_mem(). */
	__atomic_store_n(&sh->meta.ready, SPATE_RING_READY, __ATOMIC_RELEASE);
	return 0;
}

int spate_ring_open_mem(void *mem, size_t size, struct spate_ring **out)
{
	struct spate_ring_shared *sh = mem;
	struct spate_ring *r;

	if (!mem || !out || ((uintptr_t)mem & (SPATE_RING_LINE - 1)))
		return -EINVAL;
	if (size < sizeof(*sh))
		return -EBADMSG;
	/* Acquire: pairs with the release store in spate_ring_format(). */
	if (__atomic_load_n(&sh->meta.ready, __ATOMIC_ACQUIRE) != SPATE_RING_READY)
		return sh->meta.magic == SPATE_RING_MAGIC ? -EAGAIN : -EBADMSG;
	if (sh->meta.magic != SPATE_RING_MAGIC)
		return -EBADMSG;
	if (sh->meta.layout_version != SPATE_RING_LAYOUT_VERSION)
		return -EPROTO;

	/* Copy once: a hostile peer may change the block under us. */
	struct spate_ring_meta m;
	memcpy(&m, &sh->meta, sizeof(m));
	uint64_t cap = m.capacity;
	if (m.shared_size != sizeof(*sh) || cap < SPATE_RING_MIN_CAPACITY ||
	    cap > SPATE_RING_MAX_CAPACITY || (cap & (cap - 1)) || m.cap_shift >= 64 ||
	    (1ull << m.cap_shift) != cap || m.data_off != data_offset() ||
	    m.total_size != m.data_off + cap || m.total_size > size ||
	    (m.flags & ~SPATE_RING_F_ALL_) || m.max_record == 0 || m.max_record > max_payload(cap))
		return -EBADMSG;

	/* Relaxed: a consistency check of positions; writers re-validate. */
	uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed);
	uint64_t trim = atomic_load_explicit(&sh->prod.trim, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&sh->prod.head, memory_order_relaxed);
	if (trim > tail || tail - trim > cap || (tail & 7) || (trim & 7) ||
	    ((m.flags & SPATE_RING_F_MULTI_WRITER) && (head < tail || head - tail > cap)))
		return -EBADMSG;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->sh = sh;
	r->data = (uint8_t *)mem + m.data_off;
	r->cap = cap;
	r->mask = cap - 1;
	r->max_record = m.max_record;
	r->flags = m.flags;
	*out = r;
	return 0;
}

int spate_ring_create(const char *name, const struct spate_ring_params *p,
		      const struct spate_shm_opts *opts, struct spate_ring **out)
{
	struct spate_shm *shm;
	size_t sz = spate_ring_memsize(p);
	int rc;

	if (!sz || !out)
		return -EINVAL;
	rc = spate_shm_create(name, sz, opts, &shm);
	if (rc < 0)
		return rc;
	rc = spate_ring_format(spate_shm_user(shm), spate_shm_user_size(shm), p);
	if (rc < 0)
		goto err_shm;
	rc = spate_ring_open_mem(spate_shm_user(shm), spate_shm_user_size(shm), out);
	if (rc < 0)
		goto err_shm;
	(*out)->shm = shm;
	return 0;
err_shm:
	spate_shm_detach(shm);
	spate_shm_unlink(name);
	return rc;
}

int spate_ring_attach(const char *name, struct spate_ring **out)
{
	struct spate_shm *shm;
	int rc;

	if (!out)
		return -EINVAL;
	rc = spate_shm_attach(name, 0, &shm);
	if (rc < 0)
		return rc;
	rc = spate_ring_open_mem(spate_shm_user(shm), spate_shm_user_size(shm), out);
	if (rc < 0) {
		spate_shm_detach(shm);
		return rc;
	}
	(*out)->shm = shm;
	return 0;
}

void spate_ring_close(struct spate_ring *r)
{
	if (!r)
		return;
	spate_shm_detach(r->shm);
	free(r);
}

struct spate_shm *spate_ring_shm(const struct spate_ring *r)
{
	return r->shm;
}

/* ------------------------------------------------------------------------ */
/* Writers                                                                  */
/* ------------------------------------------------------------------------ */

int spate_ring_writer_open(struct spate_ring *r, enum spate_ring_wait wait,
			   struct spate_ring_writer **out)
{
	struct spate_ring_shared *sh = r->sh;
	uint32_t nslots = (r->flags & SPATE_RING_F_MULTI_WRITER) ? SPATE_RING_MAX_WRITERS : 1;
	struct spate_ring_writer *w;
	uint32_t i;

	if (wait > SPATE_RING_WAIT_BLOCK)
		return -EINVAL;
	if (wait == SPATE_RING_WAIT_BLOCK && (r->flags & SPATE_RING_F_NO_BLOCKING))
		return -ENOTSUP;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	for (i = 0; i < nslots; i++) {
		uint32_t expect = SPATE_RING_SLOT_FREE;
		/* Acquire: pairs with the release store of FREE in writer_close,
		 * so the previous owner's use of the slot is over. */
		if (atomic_compare_exchange_strong_explicit(&sh->writers[i].state, &expect,
							    SPATE_RING_SLOT_ACTIVE,
							    memory_order_acquire,
							    memory_order_relaxed))
			break;
	}
	if (i == nslots) {
		free(w);
		return -EBUSY;
	}
	owner_set(&sh->writers[i].pid, &sh->writers[i].start_time);
	/* Relaxed: recovery data only, read long after. */
	atomic_store_explicit(&sh->writers[i].intent_len, 0, memory_order_relaxed);
	/* Relaxed: no batch of ours is pending; UINT64_MAX matches no position. */
	atomic_store_explicit(&sh->writers[i].pub_pos, UINT64_MAX, memory_order_relaxed);

	w->ring = r;
	w->data = r->data;
	w->mask = r->mask;
	w->cap = r->cap;
	w->flags = r->flags;
	w->slot = i;
	w->wait = wait;
	w->timeout_ns = UINT64_MAX;
	w->retired = &sh->meta.retired;
	/* Acquire: pairs with the release store of tail by the previous writer
	 * (single-writer rings continue where it stopped). */
	w->head = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
	/* Relaxed: written before tail by the previous writer. */
	w->seq = atomic_load_explicit(&sh->pub.tail_seq, memory_order_relaxed);
	w->limit = 0; /* forces a refresh on the first reserve */
	*out = w;
	return 0;
}

void spate_ring_writer_close(struct spate_ring_writer *w)
{
	if (!w)
		return;
	/* Release: pairs with the acquire CAS in writer_open. */
	atomic_store_explicit(&w->ring->sh->writers[w->slot].state, SPATE_RING_SLOT_FREE,
			      memory_order_release);
	free(w);
}

/* Minimum released position of the active readers, at most @p bound. */
static uint64_t min_reader_pos(struct spate_ring_shared *sh, uint64_t bound)
{
	/* Seq_cst: the second half of the Dekker pair with reader registration
	 * (it stores its slot and mask bit, then reads trim; we store trim,
	 * then read the mask and slots). */
	uint64_t mask = atomic_load_explicit(&sh->pub.reader_mask, memory_order_seq_cst);
	uint64_t min = bound;

	while (mask) {
		unsigned i = (unsigned)__builtin_ctzll(mask);
		mask &= mask - 1;
		/* Seq_cst (acquire at least): pairs with the release store of pos in
		 * spate_ring_release(): the reader is done with bytes below it. */
		uint64_t p = atomic_load_explicit(&sh->readers[i].pos, memory_order_seq_cst);
		if (p < min)
			min = p;
	}
	return min;
}

/*
 * Advance trim over whole published batches until it is at least @p goal
 * (goal <= tail). Returns the new trim; stops early at a header that fails
 * validation (a corrupt ring: the writer then simply finds no space).
 *
 * Only one writer walks at a time (multi-writer rings take trim_lock; one
 * that finds it taken uses trim as it is). That is what makes the walk safe:
 * every writer's cached limit is at most trim + capacity as it was when the
 * limit was computed, and trim only grows, so no writer can be overwriting a
 * header at or above the trim the walker starts from.
 */
static uint64_t advance_trim(struct spate_ring *r, uint32_t slot, uint64_t goal, uint64_t tail)
{
	struct spate_ring_shared *sh = r->sh;
	int mp = !!(r->flags & SPATE_RING_F_MULTI_WRITER);

	if (mp) {
		uint32_t expect = 0;
		/* Acquire: pairs with the release of trim_lock by the previous
		 * walker, so we start from the trim it stored. */
		if (!atomic_compare_exchange_strong_explicit(&sh->prod.trim_lock, &expect, slot + 1,
							     memory_order_acquire,
							     memory_order_relaxed))
			return atomic_load_explicit(&sh->prod.trim, memory_order_seq_cst);
	}
	/* Relaxed: only the walker stores trim (single writer, or lock holder). */
	uint64_t t0 = atomic_load_explicit(&sh->prod.trim, memory_order_relaxed);
	uint64_t t = t0;

	while (t < goal && t < tail) {
		const struct spate_ring_bhdr *h =
			(const struct spate_ring_bhdr *)(const void *)(r->data + (t & r->mask));
		/* Relaxed: t < tail, which the caller loaded with acquire. */
		uint64_t c = atomic_load_explicit(&h->commit, memory_order_relaxed);
		uint64_t len = spate_ring_batch_len_(c, t, r->cap, tail);
		if (!len)
			break;
		t += len;
	}
	if (t != t0)
		/* Seq_cst: first half of the Dekker pair with reader registration
		 * (we store trim, then read the slots; it stores its slot, then
		 * reads trim). */
		atomic_store_explicit(&sh->prod.trim, t, memory_order_seq_cst);
	if (mp)
		/* Release: pairs with the acquire CAS of the next walker. */
		atomic_store_explicit(&sh->prod.trim_lock, 0, memory_order_release);
	return t;
}

/* The writable limit now: min(trim, readers) + capacity, after advancing trim
 * toward what @p need_end requires. */
/*
 * Single writer: a batch boundary in [lo, hi] from the marks the writer kept
 * at commit (the first batch at or after each 1/16 of the ring), so trim moves
 * without reading old headers, which by now are cache misses in a dependent
 * chain. Prefer the furthest one up to @p want. 0 if none.
 */
static uint64_t mark_in(const struct spate_ring_writer *w, uint64_t lo, uint64_t want, uint64_t hi)
{
	uint64_t best = 0, first = 0;

	for (unsigned i = 0; i < SPATE_RING_MARKS; i++) {
		uint64_t m = w->marks[i];
		if (m < lo || m > hi || m == 0)
			continue;
		if (m <= want && m > best)
			best = m;
		if (!first || m < first)
			first = m;
	}
	return best ? best : first;
}

static uint64_t compute_limit(struct spate_ring_writer *w, uint64_t need_end)
{
	struct spate_ring *r = w->ring;
	uint32_t slot = w->slot;
	struct spate_ring_shared *sh = r->sh;
	/* Acquire: pairs with the release store of tail by the publisher; the
	 * headers below it are complete, for advance_trim(). */
	uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
	uint64_t min = min_reader_pos(sh, tail);
	uint64_t goal = need_end > r->cap ? need_end - r->cap : 0;

	if (goal > min)
		return min + r->cap; /* full: a reader holds us back */
	/* Trim only as far as the space is needed, plus 1/16 of the ring so the
	 * walk and this refresh happen in bulk: everything else stays readable
	 * from OLDEST (the ring's retention is the ring). */
	/* Acquire: pairs with the walker's (seq_cst) store of trim in
	 * advance_trim(): its reads of the headers below happen before we
	 * write over them. */
	uint64_t trim = atomic_load_explicit(&sh->prod.trim, memory_order_acquire);
	if (trim < goal) {
		uint64_t aim = goal + (r->cap >> 4);
		uint64_t m = (r->flags & SPATE_RING_F_MULTI_WRITER) ? 0
			     : mark_in(w, goal, aim < min ? aim : min, min < tail ? min : tail);
		if (m) {
			trim = m;
			/* Seq_cst: first half of the Dekker pair with reader
			 * registration, as in advance_trim(). */
			atomic_store_explicit(&sh->prod.trim, trim, memory_order_seq_cst);
		} else {
			trim = advance_trim(r, slot, aim < min ? aim : min, tail);
		}
	}
	/* Re-read the readers after publishing trim (Dekker, see min_reader_pos). */
	min = min_reader_pos(sh, trim);
	return min + r->cap;
}

static void writer_sleep(struct spate_ring_writer *w, uint64_t need_end, uint64_t deadline,
			 unsigned *spins)
{
	struct spate_ring_shared *sh = w->ring->sh;

	if (w->wait == SPATE_RING_WAIT_BUSY || (*spins)++ < SPIN_BEFORE_SLEEP) {
		spate_cpu_relax();
		return;
	}
	if (w->wait == SPATE_RING_WAIT_YIELD) {
		sched_yield();
		return;
	}
	/* Seq_cst: Dekker pair with the seq_cst pos store and wr_waiters load
	 * in spate_ring_release(). */
	atomic_fetch_add_explicit(&sh->wake.wr_waiters, 1, memory_order_seq_cst);
	uint32_t v = atomic_load_explicit(&sh->wake.space_futex, memory_order_seq_cst);
	if (compute_limit(w, need_end) < need_end)
		futex_sleep(&sh->wake.space_futex, v, deadline);
	atomic_fetch_sub_explicit(&sh->wake.wr_waiters, 1, memory_order_relaxed);
}

int spate_ring_refresh_limit_(struct spate_ring_writer *w, uint64_t need_end)
{
	struct spate_ring_shared *sh = w->ring->sh;
	uint64_t deadline = 0;
	unsigned spins = 0;
	int rc;

	for (;;) {
		uint64_t lim = compute_limit(w, need_end);
		if (lim >= need_end) {
			w->limit = lim;
			rc = 0;
			break;
		}
		if (!deadline) {
			w->full_events++;
			if (!(w->flags & SPATE_RING_F_FULL_WAIT))
				return -EAGAIN;
			deadline = deadline_of(w->timeout_ns);
			/* Seq_cst: readers that see it give space back at once
			 * instead of in steps (see spate_ring_release). */
			atomic_fetch_add_explicit(&sh->wake.wr_waiting, 1, memory_order_seq_cst);
		}
		if (spate_mono_ns() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		/* Relaxed: a flag set once; spate_ring_retire() wakes us to see it. */
		if (atomic_load_explicit(&sh->meta.retired, memory_order_relaxed)) {
			rc = -ESTALE;
			break;
		}
		writer_sleep(w, need_end, deadline, &spins);
	}
	if (deadline)
		atomic_fetch_sub_explicit(&sh->wake.wr_waiting, 1, memory_order_relaxed);
	return rc;
}

int spate_ring_reserve_mp_(struct spate_ring_writer *w, uint64_t need, struct spate_ring_batch *b)
{
	struct spate_ring_shared *sh = w->ring->sh;
	struct spate_ring_wslot *ws = &sh->writers[w->slot];
	/* Relaxed: the CAS below validates the value. */
	uint64_t h = atomic_load_explicit(&sh->prod.head, memory_order_relaxed);
	uint64_t pad, end;

	for (;;) {
		uint64_t room = w->cap - (h & w->mask);
		pad = need > room ? room : 0;
		end = h + pad + need;
		if (end > w->limit) {
			int rc = spate_ring_refresh_limit_(w, end);
			if (rc < 0)
				return rc;
			h = atomic_load_explicit(&sh->prod.head, memory_order_relaxed);
			continue;
		}
		/* Relaxed: ordered before the claim by the CAS's release. Recovery
		 * reads the intent to learn the length of a claim whose owner
		 * died before writing its header. */
		atomic_store_explicit(&ws->intent_pos, h, memory_order_relaxed);
		atomic_store_explicit(&ws->intent_len, pad + need, memory_order_relaxed);
		/* Acq_rel: release publishes the intent; acquire orders our writes
		 * into the claimed space after the claim. */
		if (atomic_compare_exchange_weak_explicit(&sh->prod.head, &h, end,
							  memory_order_acq_rel,
							  memory_order_relaxed))
			break;
	}
	if (pad) {
		struct spate_ring_bhdr *ph = (struct spate_ring_bhdr *)(void *)(w->data + (h & w->mask));
		/* Release: pairs with the publisher's acquire load of commit. */
		atomic_store_explicit(&ph->commit, SPATE_RING_TAG(h) | pad | SPATE_RING_C_PAD |
				      SPATE_RING_C_COMMITTED, memory_order_release);
		h += pad;
	}
	struct spate_ring_bhdr *bh = (struct spate_ring_bhdr *)(void *)(w->data + (h & w->mask));
	/* Relaxed: claimed, not committed; recovery reads the length. */
	atomic_store_explicit(&bh->commit, SPATE_RING_TAG(h) | need, memory_order_relaxed);
	b->hdr = (uint8_t *)bh;
	b->cur = b->hdr + SPATE_RING_BHDR_SIZE;
	b->end = b->hdr + need;
	b->pos = h;
	b->count = 0;
	b->pad_ = (uint32_t)pad;
	return 0;
}

/* Walk committed batches from tail, stamp sequence numbers, publish. Only the
 * holder of the publisher token calls it. The walk reads only at or above the
 * current tail, where the next claim starts exactly: a header there is either
 * a claimant's (written with an atomic store) or untouched old data. */
static void publish_run(struct spate_ring *r)
{
	struct spate_ring_shared *sh = r->sh;
	/* Relaxed: only the token holder stores tail and tail_seq, and the
	 * token's acquire orders us after the previous holder's stores. */
	uint64_t t0 = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed);
	uint64_t s = atomic_load_explicit(&sh->pub.tail_seq, memory_order_relaxed);
	uint64_t t = t0;

	while (t - t0 < r->cap) {
		struct spate_ring_bhdr *h = (struct spate_ring_bhdr *)(void *)(r->data + (t & r->mask));
		/* Acquire: pairs with the committer's seq_cst store of commit. */
		uint64_t c = atomic_load_explicit(&h->commit, memory_order_acquire);
		/* No tail bound here: we are the one who moves it. */
		uint64_t len = spate_ring_batch_len_(c, t, r->cap, t + r->cap);
		if (!len)
			break;
		if (!(c & SPATE_RING_C_PAD)) {
			if (len < SPATE_RING_BHDR_SIZE)
				break;
			h->base_seq = s;
			uint32_t owner = h->owner;
			if (owner && owner <= SPATE_RING_MAX_WRITERS) {
				struct spate_ring_wslot *ws = &sh->writers[owner - 1];
				/* Relaxed, then release: pairs with the acquire load of
				 * pub_pos by the owner waiting for its sequence number. */
				atomic_store_explicit(&ws->pub_seq, s, memory_order_relaxed);
				atomic_store_explicit(&ws->pub_pos, t, memory_order_release);
			}
			s += h->count;
		}
		t += len;
	}
	if (t == t0)
		return;
	/* Relaxed: see spate_ring_commit(). */
	atomic_store_explicit(&sh->pub.tail_seq, s, memory_order_relaxed);
	/* Release: pairs with the readers' acquire load of tail; also carries
	 * the base_seq stamps above. Seq_cst where readers may sleep: the
	 * Dekker pair with their rd_waiters increment (see spate_ring_commit). */
	atomic_store_explicit(&sh->pub.tail, t,
			      (r->flags & SPATE_RING_F_NO_BLOCKING) ? memory_order_release
								    : memory_order_seq_cst);
}

uint32_t spate_ring_commit_mp_(struct spate_ring_writer *w, struct spate_ring_batch *b,
			       uint64_t ts, uint64_t *first_seq)
{
	struct spate_ring *r = w->ring;
	struct spate_ring_shared *sh = r->sh;
	struct spate_ring_bhdr *h = (struct spate_ring_bhdr *)(void *)b->hdr;
	uint64_t len = (uint64_t)(b->end - b->hdr);

	h->count = b->count;
	h->owner = first_seq ? w->slot + 1 : 0;
	h->ts = ts ? ts : spate_now_ns();
	/* Seq_cst (release at least): pairs with the publisher's acquire load. */
	atomic_store_explicit(&h->commit, SPATE_RING_TAG(b->pos) | len | SPATE_RING_C_COMMITTED,
			      memory_order_seq_cst);
	/* Relaxed: recovery data; the claim is complete. */
	atomic_store_explicit(&sh->writers[w->slot].intent_len, 0, memory_order_relaxed);
	/* Seq_cst: Dekker pair with the token holder, which gives the token
	 * back and then re-reads commits: either our CAS below finds the token
	 * free, or the holder sees this count move and walks again. */
	atomic_fetch_add_explicit(&sh->prod.commits, 1, memory_order_seq_cst);

	for (;;) {
		uint32_t expect = 0;
		/* Seq_cst: acquire orders us after the previous holder's tail
		 * store; seq_cst for the Dekker pair above. */
		if (!atomic_compare_exchange_strong_explicit(&sh->prod.pub_lock, &expect,
							     w->slot + 1, memory_order_seq_cst,
							     memory_order_seq_cst))
			break; /* the holder will publish our batch */
		uint64_t seen = atomic_load_explicit(&sh->prod.commits, memory_order_seq_cst);
		publish_run(r);
		/* Seq_cst: give the token back, then re-check (Dekker above). */
		atomic_store_explicit(&sh->prod.pub_lock, 0, memory_order_seq_cst);
		if (atomic_load_explicit(&sh->prod.commits, memory_order_seq_cst) == seen)
			break;
	}
	/* Seq_cst: after the seq_cst tail store of whoever published (us, or
	 * the holder, which checks too): see spate_ring_commit(). */
	if (!(r->flags & SPATE_RING_F_NO_BLOCKING) &&
	    atomic_load_explicit(&sh->pub.rd_waiters, memory_order_seq_cst))
		spate_ring_wake_readers_(r);
	if (first_seq) {
		struct spate_ring_wslot *ws = &sh->writers[w->slot];
		unsigned spins = 0;
		/* Acquire: pairs with the publisher's release store of pub_pos. */
		while (atomic_load_explicit(&ws->pub_pos, memory_order_acquire) != b->pos) {
			if (++spins > SPIN_BEFORE_SLEEP)
				sched_yield();
			else
				spate_cpu_relax();
		}
		*first_seq = atomic_load_explicit(&ws->pub_seq, memory_order_relaxed);
	}
	return b->count;
}

int spate_ring_put_batch(struct spate_ring_writer *w, const struct spate_ring_iov *v, unsigned n,
			 uint64_t *first_seq)
{
	uint64_t max_bytes = (w->cap >> 1) - SPATE_RING_BHDR_SIZE;
	unsigned i = 0, done = 0;

	while (i < n) {
		uint64_t bytes = 0;
		unsigned j = i;
		while (j < n && j - i < SPATE_RING_MAX_BATCH_RECORDS) {
			if (v[j].len > w->ring->max_record)
				break;
			uint64_t sz = spate_ring_rec_size(v[j].len);
			if (bytes + sz > max_bytes)
				break;
			bytes += sz;
			j++;
		}
		if (j == i)
			return done ? (int)done : -EMSGSIZE;
		struct spate_ring_batch b;
		int rc = spate_ring_reserve(w, bytes, &b);
		if (rc < 0)
			return done ? (int)done : rc;
		for (unsigned k = i; k < j; k++) {
			void *p = spate_ring_batch_add(&b, v[k].len, v[k].key_hash, v[k].type);
			if (v[k].len)
				memcpy(p, v[k].data, v[k].len);
		}
		spate_ring_commit(w, &b, 0, done ? NULL : first_seq);
		done += j - i;
		i = j;
	}
	return (int)done;
}

void spate_ring_wake_readers_(struct spate_ring *r)
{
	futex_op(low_half(&r->sh->pub.tail), FUTEX_WAKE, INT_MAX, NULL);
}

void spate_ring_wake_writers_(struct spate_ring *r)
{
	/* Relaxed: the futex word only needs to change; the kernel orders it. */
	atomic_fetch_add_explicit(&r->sh->wake.space_futex, 1, memory_order_relaxed);
	futex_op(&r->sh->wake.space_futex, FUTEX_WAKE, INT_MAX, NULL);
}

/* ------------------------------------------------------------------------ */
/* Readers                                                                  */
/* ------------------------------------------------------------------------ */

int spate_ring_reader_open(struct spate_ring *r, enum spate_ring_start start,
			   enum spate_ring_wait wait, struct spate_ring_reader **out)
{
	struct spate_ring_shared *sh = r->sh;
	struct spate_ring_reader *rd;
	uint32_t i;

	if (wait > SPATE_RING_WAIT_BLOCK || start > SPATE_RING_START_LATEST)
		return -EINVAL;
	if (wait == SPATE_RING_WAIT_BLOCK && (r->flags & SPATE_RING_F_NO_BLOCKING))
		return -ENOTSUP;
	rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	for (i = 0; i < SPATE_RING_MAX_READERS; i++) {
		uint32_t expect = SPATE_RING_SLOT_FREE;
		/* Acquire: pairs with the release store of FREE in reader_close. */
		if (atomic_compare_exchange_strong_explicit(&sh->readers[i].state, &expect,
							    SPATE_RING_SLOT_ACTIVE,
							    memory_order_acquire,
							    memory_order_relaxed))
			break;
	}
	if (i == SPATE_RING_MAX_READERS) {
		free(rd);
		return -EBUSY;
	}
	struct spate_ring_rslot *slot = &sh->readers[i];
	owner_set(&slot->pid, &slot->start_time);
	/* Relaxed: the slot is ours; a kept slot is never FREE (close clears
	 * the flag before it frees the slot). */
	atomic_store_explicit(&slot->flags, 0, memory_order_relaxed);
	/* Relaxed: a counter; the slot is ours. */
	rd->gen = atomic_fetch_add_explicit(&slot->gen, 1, memory_order_relaxed) + 1;

	/* Register at a candidate position, then check that trim has not passed
	 * it (Dekker with the writer: it stores trim, then reads slots). */
	uint64_t pos = start == SPATE_RING_START_OLDEST
		? atomic_load_explicit(&sh->prod.trim, memory_order_seq_cst)
		: atomic_load_explicit(&sh->pub.tail, memory_order_seq_cst);
	atomic_store_explicit(&slot->pos, pos, memory_order_seq_cst);
	atomic_fetch_or_explicit(&sh->pub.reader_mask, 1ull << i, memory_order_seq_cst);
	for (;;) {
		uint64_t trim = atomic_load_explicit(&sh->prod.trim, memory_order_seq_cst);
		if (trim <= pos)
			break;
		pos = start == SPATE_RING_START_OLDEST
			? trim
			: atomic_load_explicit(&sh->pub.tail, memory_order_seq_cst);
		atomic_store_explicit(&slot->pos, pos, memory_order_seq_cst);
	}
	/* Relaxed: informational until the first release. */
	atomic_store_explicit(&slot->seq, UINT64_MAX, memory_order_relaxed);

	rd->ring = r;
	rd->data = r->data;
	rd->mask = r->mask;
	rd->cap = r->cap;
	rd->slot = slot;
	rd->flags = r->flags;
	rd->index = i;
	rd->wait = wait;
	rd->pos = pos;
	rd->published = pos;
	rd->tail = pos;
	rd->seq = UINT64_MAX; /* learnt from the first batch header */
	rd->left = 0;
	spate_ring_reader_resolve_seq(rd);
	*out = rd;
	return 0;
}

int spate_ring_peek_batches(struct spate_ring_reader *rd, struct spate_ring_span *out,
			    unsigned max, uint64_t max_bytes)
{
	/* Relaxed: our own slot's state, written only by us and an evicter. */
	if (atomic_load_explicit(&rd->slot->state, memory_order_relaxed) != SPATE_RING_SLOT_ACTIVE)
		return -EPIPE;
	if (rd->left)
		return -EINVAL;
	/* Acquire: pairs with the release store of tail by the publisher. */
	uint64_t tail = atomic_load_explicit(&rd->ring->sh->pub.tail, memory_order_acquire);
	uint64_t pos = rd->pos, seq = rd->seq, bytes = 0, records = 0, bts = rd->bts;
	unsigned n = 0;

	if (tail - pos > rd->cap)
		return spate_ring_peek_slow_(rd, -EBADMSG);
	while (n < max && pos < tail) {
		const struct spate_ring_bhdr *h =
			(const struct spate_ring_bhdr *)(const void *)(rd->data + (pos & rd->mask));
		/* Relaxed: ordered by the acquire of tail (pos < tail). */
		uint64_t c = atomic_load_explicit(&h->commit, memory_order_relaxed);
		uint64_t len = spate_ring_batch_len_(c, pos, rd->cap, tail);
		if (!len)
			return spate_ring_peek_slow_(rd, -EBADMSG);
		if (c & SPATE_RING_C_PAD) {
			pos += len;
			continue;
		}
		if (len < SPATE_RING_BHDR_SIZE)
			return spate_ring_peek_slow_(rd, -EBADMSG);
		uint64_t base = h->base_seq;
		uint32_t count = h->count;
		if (seq != UINT64_MAX && base != seq)
			return spate_ring_peek_slow_(rd, -EBADMSG);
		if (n && bytes + len > max_bytes)
			break;
		out[n].hdr = h;
		out[n].len = (uint32_t)len;
		out[n].count = count;
		out[n].base_seq = base;
		n++;
		bytes += len;
		records += count;
		seq = base + count;
		bts = h->ts;
		pos += len;
	}
	rd->tail = tail;
	if (records == 0) {
		/* Only padding or empty batches: move past them, nothing to release. */
		rd->pos = pos;
		rd->bend = pos;
		rd->seq = seq;
	}
	rd->p_pos = pos;
	rd->p_seq = seq;
	rd->p_bend = pos;
	rd->p_bts = bts;
	rd->p_left = 0;
	rd->p_count = (uint32_t)records;
	return (int)n;
}

int spate_ring_reader_resolve_seq(struct spate_ring_reader *rd)
{
	if (rd->seq != UINT64_MAX)
		return 0;
	/* Acquire: pairs with the release store of tail; the headers below it
	 * are complete, and ours to read since our slot holds writers back. */
	uint64_t tail = atomic_load_explicit(&rd->ring->sh->pub.tail, memory_order_acquire);
	uint64_t pos = rd->pos;

	while (pos < tail) {
		const struct spate_ring_bhdr *h =
			(const struct spate_ring_bhdr *)(const void *)(rd->data + (pos & rd->mask));
		/* Relaxed: ordered by the acquire of tail. */
		uint64_t c = atomic_load_explicit(&h->commit, memory_order_relaxed);
		uint64_t len = spate_ring_batch_len_(c, pos, rd->cap, tail);
		if (!len)
			return -EBADMSG;
		if (!(c & SPATE_RING_C_PAD)) {
			if (len < SPATE_RING_BHDR_SIZE)
				return -EBADMSG;
			rd->seq = h->base_seq;
			return 0;
		}
		pos += len;
	}
	return -EAGAIN;
}

void spate_ring_reader_close(struct spate_ring_reader *rd)
{
	if (!rd)
		return;
	struct spate_ring_shared *sh = rd->ring->sh;

	/* Seq_cst: writers stop counting us before the slot can be reused. The
	 * bit is ours until the slot is FREE (an evicter clears it too). */
	atomic_fetch_and_explicit(&sh->pub.reader_mask, ~(1ull << rd->index),
				  memory_order_seq_cst);
	/* Relaxed: ordered before the slot is reused by the release below. */
	atomic_store_explicit(&rd->slot->flags, 0, memory_order_relaxed);
	/* Release: pairs with the acquire CAS in reader_open. */
	atomic_store_explicit(&rd->slot->state, SPATE_RING_SLOT_FREE, memory_order_release);
	if (!(rd->flags & SPATE_RING_F_NO_BLOCKING))
		spate_ring_wake_writers_(rd->ring);
	free(rd);
}

int spate_ring_reader_evict(struct spate_ring *r, uint32_t index)
{
	struct spate_ring_shared *sh = r->sh;
	uint32_t expect = SPATE_RING_SLOT_ACTIVE;

	if (index >= SPATE_RING_MAX_READERS)
		return -EINVAL;
	/* Relaxed: set by the owner while it is active; a kept gate protects
	 * records not yet persisted and is never evicted. */
	if (atomic_load_explicit(&sh->readers[index].flags, memory_order_relaxed) &
	    SPATE_RING_RSLOT_F_KEEP)
		return -EPERM;
	/* Seq_cst: ordered with the owner's close and the writers' scans. */
	if (!atomic_compare_exchange_strong_explicit(&sh->readers[index].state, &expect,
						     SPATE_RING_SLOT_EVICTED, memory_order_seq_cst,
						     memory_order_seq_cst))
		return -ENOENT;
	atomic_fetch_and_explicit(&sh->pub.reader_mask, ~(1ull << index), memory_order_seq_cst);
	if (!(r->flags & SPATE_RING_F_NO_BLOCKING))
		spate_ring_wake_writers_(r);
	return 0;
}

int spate_ring_reap(struct spate_ring *r, uint32_t *readers, uint32_t *writers)
{
	struct spate_ring_shared *sh = r->sh;
	uint32_t nr = 0, nw = 0, live_writers = 0;

	for (uint32_t i = 0; i < SPATE_RING_MAX_READERS; i++) {
		struct spate_ring_rslot *s = &sh->readers[i];
		/* Relaxed: the slot's state word is all we decide on; the CAS
		 * below settles races with its owner. */
		uint32_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
		if (st == SPATE_RING_SLOT_FREE || owner_alive(&s->pid, &s->start_time))
			continue;
		/* Relaxed: as above. A kept gate outlives its owner by design. */
		if (atomic_load_explicit(&s->flags, memory_order_relaxed) & SPATE_RING_RSLOT_F_KEEP)
			continue;
		/* Seq_cst: writers stop counting the slot before it is freed,
		 * as in reader_close (which its dead owner cannot run). */
		atomic_fetch_and_explicit(&sh->pub.reader_mask, ~(1ull << i), memory_order_seq_cst);
		/* Release: pairs with the acquire CAS in reader_open. */
		if (atomic_compare_exchange_strong_explicit(&s->state, &st, SPATE_RING_SLOT_FREE,
							    memory_order_release,
							    memory_order_relaxed))
			nr++;
	}
	for (uint32_t i = 0; i < SPATE_RING_MAX_WRITERS; i++) {
		struct spate_ring_wslot *s = &sh->writers[i];
		/* Relaxed: as above. */
		uint32_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
		if (st == SPATE_RING_SLOT_FREE)
			continue;
		if (owner_alive(&s->pid, &s->start_time)) {
			live_writers++;
			continue;
		}
		/* Release: pairs with the acquire CAS in writer_open. */
		if (atomic_compare_exchange_strong_explicit(&s->state, &st, SPATE_RING_SLOT_FREE,
							    memory_order_release,
							    memory_order_relaxed))
			nw++;
	}
	if (nr || nw)
		spate_ring_wake_writers_(r);
	if (readers)
		*readers = nr;
	if (writers)
		*writers = nw;
	if (!(r->flags & SPATE_RING_F_MULTI_WRITER))
		return 0;
	/* Seq_cst: ordered with the claimants' CAS on head and the publisher's
	 * tail store. */
	uint64_t head = atomic_load_explicit(&sh->prod.head, memory_order_seq_cst);
	uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_seq_cst);
	if (head == tail)
		return 0;
	if (live_writers)
		return -EBUSY;
	/* Every claimant is dead: what lies between tail and head was claimed
	 * and never published, so no reader ever saw it and no put returned
	 * it. Give the space back. Seq_cst: a writer opening now CASes head. */
	if (!atomic_compare_exchange_strong_explicit(&sh->prod.head, &head, tail,
						     memory_order_seq_cst, memory_order_seq_cst))
		return -EBUSY;
	/* Seq_cst: the publisher token of a dead publisher, and the trim
	 * walker's, are free again. */
	atomic_store_explicit(&sh->prod.pub_lock, 0, memory_order_seq_cst);
	atomic_store_explicit(&sh->prod.trim_lock, 0, memory_order_seq_cst);
	return 1;
}

int spate_ring_peek_slow_(struct spate_ring_reader *rd, int err)
{
	/* An evicted reader may have read over-written garbage: say evicted. */
	if (atomic_load_explicit(&rd->slot->state, memory_order_relaxed) != SPATE_RING_SLOT_ACTIVE)
		return -EPIPE;
	rd->p_count = 0;
	return err;
}

int spate_ring_release_partial_(struct spate_ring_reader *rd, unsigned n)
{
	/* Walk n records from the released position, as peek did (the headers
	 * were validated by that peek and are still ours). */
	uint64_t pos = rd->pos, seq = rd->seq, bend = rd->bend, bts = rd->bts;
	uint32_t left = rd->left;

	for (unsigned k = 0; k < n;) {
		if (left == 0) {
			const struct spate_ring_bhdr *h =
				(const struct spate_ring_bhdr *)(const void *)(rd->data + (pos & rd->mask));
			uint64_t c = atomic_load_explicit(&h->commit, memory_order_relaxed);
			uint64_t len = c & SPATE_RING_C_LEN_MASK;
			if (c & SPATE_RING_C_PAD) {
				pos += len;
				continue;
			}
			left = h->count;
			bts = h->ts;
			seq = h->base_seq;
			bend = pos + len;
			pos += SPATE_RING_BHDR_SIZE;
			if (left == 0) {
				pos = bend;
				continue;
			}
		}
		const struct spate_ring_rhdr *rh =
			(const struct spate_ring_rhdr *)(const void *)(rd->data + (pos & rd->mask));
		uint64_t len = rh->len_type & SPATE_RING_LONG;
		if (len == SPATE_RING_LONG)
			memcpy(&len, rh + 1, sizeof(len));
		pos += spate_ring_rec_size(len);
		seq++;
		k++;
		if (--left == 0)
			pos = bend;
	}
	rd->p_pos = pos;
	rd->p_seq = seq;
	rd->p_bend = bend;
	rd->p_bts = bts;
	rd->p_left = left;
	rd->p_count = n;
	return spate_ring_release(rd, n);
}

int spate_ring_reader_wait(struct spate_ring_reader *rd, uint64_t timeout_ns)
{
	struct spate_ring_shared *sh = rd->ring->sh;
	uint64_t deadline = 0;
	unsigned spins = 0;

	if (rd->left)
		return 0;
	for (;;) {
		/* Acquire: pairs with the release store of tail (data visible). */
		uint64_t t = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
		if (t != rd->pos)
			return 0;
		if (atomic_load_explicit(&rd->slot->state, memory_order_relaxed) !=
		    SPATE_RING_SLOT_ACTIVE)
			return -EPIPE;
		/* Relaxed: a flag set once; nothing more will be published. */
		if (atomic_load_explicit(&sh->meta.retired, memory_order_relaxed))
			return -ESTALE;
		if (!deadline)
			deadline = deadline_of(timeout_ns);
		else if (spate_mono_ns() >= deadline)
			return -ETIMEDOUT;
		if (rd->wait == SPATE_RING_WAIT_BUSY || spins++ < SPIN_BEFORE_SLEEP) {
			spate_cpu_relax();
			continue;
		}
		if (rd->wait == SPATE_RING_WAIT_YIELD) {
			sched_yield();
			continue;
		}
		/* Seq_cst: Dekker pair with the seq_cst tail store and rd_waiters
		 * load in commit: either the writer sees us, or we see its tail. */
		atomic_fetch_add_explicit(&sh->pub.rd_waiters, 1, memory_order_seq_cst);
		t = atomic_load_explicit(&sh->pub.tail, memory_order_seq_cst);
		if (t == rd->pos)
			futex_sleep(low_half(&sh->pub.tail), (uint32_t)t, deadline);
		atomic_fetch_sub_explicit(&sh->pub.rd_waiters, 1, memory_order_relaxed);
	}
}

/* ------------------------------------------------------------------------ */
/* Kept gating readers and retired rings (restart branch; see ring.h)       */
/* ------------------------------------------------------------------------ */

int spate_ring_reader_keep(struct spate_ring_reader *rd)
{
	/* Relaxed: our own slot; reap and evict read it with the slot's state. */
	if (atomic_load_explicit(&rd->slot->state, memory_order_relaxed) != SPATE_RING_SLOT_ACTIVE)
		return -EPIPE;
	/* Seq_cst: before any later reap or eviction looks at the slot. */
	atomic_fetch_or_explicit(&rd->slot->flags, SPATE_RING_RSLOT_F_KEEP, memory_order_seq_cst);
	return 0;
}

void spate_ring_reader_detach(struct spate_ring_reader *rd)
{
	if (!rd)
		return;
	/* Relaxed: informational, read by an adopter after the pos below. */
	atomic_store_explicit(&rd->slot->seq, rd->seq, memory_order_relaxed);
	/* Release: pairs with the acquire load of pos in find_kept/adopt (the
	 * seq above goes with it) and, as in spate_ring_release(), with the
	 * writers' acquire of reader positions. */
	atomic_store_explicit(&rd->slot->pos, rd->pos, memory_order_seq_cst);
	if (!(rd->flags & SPATE_RING_F_NO_BLOCKING))
		spate_ring_wake_writers_(rd->ring);
	free(rd);
}

/* A kept, non-free slot's released position and sequence number. */
static int kept_slot(struct spate_ring_shared *sh, uint32_t i, uint64_t *pos, uint64_t *seq)
{
	struct spate_ring_rslot *s = &sh->readers[i];
	/* Relaxed: the state and flag decide; the CAS in adopt settles races. */
	if (atomic_load_explicit(&s->state, memory_order_relaxed) == SPATE_RING_SLOT_FREE ||
	    !(atomic_load_explicit(&s->flags, memory_order_relaxed) & SPATE_RING_RSLOT_F_KEEP))
		return 0;
	/* Acquire: pairs with the release store of pos in detach/release. */
	*pos = atomic_load_explicit(&s->pos, memory_order_acquire);
	/* Relaxed: stored before pos. */
	*seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
	return 1;
}

int spate_ring_reader_find_kept(struct spate_ring *r, uint32_t *index, uint64_t *pos,
				uint64_t *seq)
{
	for (uint32_t i = 0; i < SPATE_RING_MAX_READERS; i++)
		if (kept_slot(r->sh, i, pos, seq)) {
			*index = i;
			return 0;
		}
	return -ENOENT;
}

int spate_ring_reader_adopt(struct spate_ring *r, uint32_t index, enum spate_ring_wait wait,
			    struct spate_ring_reader **out)
{
	struct spate_ring_shared *sh = r->sh;
	uint64_t pos, seq;

	if (index >= SPATE_RING_MAX_READERS || wait > SPATE_RING_WAIT_BLOCK || !out)
		return -EINVAL;
	if (wait == SPATE_RING_WAIT_BLOCK && (r->flags & SPATE_RING_F_NO_BLOCKING))
		return -ENOTSUP;
	struct spate_ring_rslot *slot = &sh->readers[index];
	/* Relaxed: a counter; the CAS below elects one adopter. */
	uint64_t gen = atomic_load_explicit(&slot->gen, memory_order_relaxed);
	if (!kept_slot(sh, index, &pos, &seq))
		return -ENOENT;
	if (__atomic_load_n(&slot->pid, __ATOMIC_RELAXED) != (uint32_t)getpid() &&
	    owner_alive(&slot->pid, &slot->start_time))
		return -EBUSY;
	/* Acquire: pairs with the release store of tail; the slot held writers
	 * back, so everything from pos to tail is intact. */
	uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
	if (pos > tail || tail - pos > r->cap || (pos & 7))
		return -EBADMSG;
	struct spate_ring_reader *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	/* Acq_rel: one adopter wins; ours is the slot from here on. */
	if (!atomic_compare_exchange_strong_explicit(&slot->gen, &gen, gen + 1,
						     memory_order_acq_rel, memory_order_relaxed)) {
		free(rd);
		return -EBUSY;
	}
	owner_set(&slot->pid, &slot->start_time);
	/* Seq_cst: the slot gates writers again if a reaper of an older
	 * version cleared the bit (ours keeps it). */
	atomic_fetch_or_explicit(&sh->pub.reader_mask, 1ull << index, memory_order_seq_cst);
	rd->ring = r;
	rd->data = r->data;
	rd->mask = r->mask;
	rd->cap = r->cap;
	rd->slot = slot;
	rd->flags = r->flags;
	rd->index = index;
	rd->gen = gen + 1;
	rd->wait = wait;
	rd->pos = pos;
	rd->published = pos;
	rd->tail = pos;
	rd->bend = pos;
	rd->seq = seq;
	rd->left = 0;
	if (seq == UINT64_MAX)
		spate_ring_reader_resolve_seq(rd);
	*out = rd;
	return 0;
}

void spate_ring_retire(struct spate_ring *r)
{
	/* Seq_cst: before the wake-ups below; writers and readers load it
	 * relaxed and are woken (or time out) to see it. */
	atomic_store_explicit(&r->sh->meta.retired, 1, memory_order_seq_cst);
	spate_ring_wake_writers_(r);
	spate_ring_wake_readers_(r);
}

int spate_ring_release_batches(struct spate_ring_reader *rd, unsigned nbatches)
{
	uint64_t pos = rd->pos, seq = rd->seq, bts = rd->bts, records = 0;

	if (rd->left)
		return -EINVAL;
	for (unsigned k = 0; k < nbatches;) {
		const struct spate_ring_bhdr *h =
			(const struct spate_ring_bhdr *)(const void *)(rd->data + (pos & rd->mask));
		/* Relaxed: validated by the peek that returned these batches, and
		 * ours until released. */
		uint64_t c = atomic_load_explicit(&h->commit, memory_order_relaxed);
		uint64_t len = c & SPATE_RING_C_LEN_MASK;
		if (!len || pos + len > rd->p_pos)
			return -EINVAL;
		pos += len;
		if (c & SPATE_RING_C_PAD)
			continue;
		records += h->count;
		seq = h->base_seq + h->count;
		bts = h->ts;
		k++;
	}
	if (records > rd->p_count)
		return -EINVAL;
	rd->p_pos = pos;
	rd->p_seq = seq;
	rd->p_bend = pos;
	rd->p_bts = bts;
	rd->p_left = 0;
	rd->p_count = (uint32_t)records;
	return spate_ring_release(rd, (unsigned)records);
}

int spate_ring_dead_slots(struct spate_ring *r, struct spate_ring_dead *out, unsigned max)
{
	struct spate_ring_shared *sh = r->sh;
	uint32_t self = (uint32_t)getpid();
	uint64_t self_start = 0;
	unsigned n = 0;

	for (uint32_t i = 0; i < SPATE_RING_MAX_READERS + SPATE_RING_MAX_WRITERS; i++) {
		int wr = i >= SPATE_RING_MAX_READERS;
		uint32_t k = wr ? i - SPATE_RING_MAX_READERS : i, pid;
		uint64_t start;
		/* Relaxed: a snapshot for a decision reap makes again. */
		if (wr) {
			struct spate_ring_wslot *s = &sh->writers[k];
			if (atomic_load_explicit(&s->state, memory_order_relaxed) == SPATE_RING_SLOT_FREE)
				continue;
			pid = __atomic_load_n(&s->pid, __ATOMIC_RELAXED);
			start = __atomic_load_n(&s->start_time, __ATOMIC_RELAXED);
		} else {
			struct spate_ring_rslot *s = &sh->readers[k];
			if (atomic_load_explicit(&s->state, memory_order_relaxed) == SPATE_RING_SLOT_FREE ||
			    (atomic_load_explicit(&s->flags, memory_order_relaxed) & SPATE_RING_RSLOT_F_KEEP))
				continue;
			pid = __atomic_load_n(&s->pid, __ATOMIC_RELAXED);
			start = __atomic_load_n(&s->start_time, __ATOMIC_RELAXED);
		}
		if (pid == self && !self_start)
			self_start = spate_proc_start_time((pid_t)self);
		if ((pid == self && start == self_start) || spate_proc_alive((pid_t)pid, start))
			continue;
		if (n < max)
			out[n] = (struct spate_ring_dead){ .index = k, .pid = pid, .writer = (uint32_t)wr };
		n++;
	}
	return (int)n;
}
