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
 * claim (position, length) in the writer's slot; the batch header gets its
 * claimed length at once (then the intent's "header written" bit) and its
 * COMMITTED bit when the records are written, with a CAS from the claim
 * word. Whoever holds the publisher token then walks committed batches from
 * tail (below head), stamps their sequence numbers (contiguous in ring
 * order, assigned at publication) and stores tail once. A writer that
 * commits while another holds the token leaves the work to it; the holder
 * re-checks after giving the token back (Dekker again), so no commit is left
 * unpublished and no committer waits for another. Until it is published a
 * committed header carries, in base_seq, a check keyed by the ring's random
 * key and the claim's position; the walk trusts nothing else, so payload
 * bytes left from an earlier lap cannot pass for a batch (issue 9, item 11).
 *
 * Streamed batches. A single writer fills a batch of SPATE_RING_STREAM_MIN
 * to SPATE_RING_STREAM_MAX bytes in its handle's staging buffer, and the
 * commit copies it into the ring with non-temporal stores for whole lines
 * (spate_ring_stream_()): on cores that share no cache, a plain store to a
 * line the reader read one lap before waits a cross-core round trip to take
 * it back, in store order; streamed lines skip that (0.6x -> 3.7x rte_ring,
 * docs/bench.md). The bytes in the ring are the same either way.
 *
 * Liveness. Every slot holds a lease (struct spate_ring_lease): pid, start
 * time, PID namespace and a heartbeat, written after the claim; a claimed
 * slot without identity yet is alive for SPATE_RING_CLAIM_NS. Slot words
 * carry a generation, so freeing or evicting is a CAS that cannot hit the
 * next holder. A writer that cannot go on (full ring, or waiting for its
 * sequence number) looks for dead peers every SPATE_RING_CHECK_NS: it
 * evicts dead gating readers (not KEEP ones), takes tokens from dead
 * holders (finishing a dead publisher's walk), and turns the claim of a dead
 * writer at tail into a SKIP batch (unblock(), after Aeron's unblock).
 * Futex sleeps are capped at that period, so no wait depends on a dead
 * process.
 *
 * Trade-offs and limits. A preempted (or stopped) claimant delays the
 * publication of the batches claimed after it for as long as it lives. A
 * holder in another PID namespace is judged by its heartbeat, renewed while
 * it waits (and by spate_ring_*_beat()); CLOCK_MONOTONIC must not differ
 * between the namespaces (time namespaces). At most SPATE_RING_MAX_READERS
 * readers and SPATE_RING_MAX_WRITERS writers.
 */
#include "spate_config.h"

#include <limits.h>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/random.h>
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
	if (getrandom(&sh->meta.key, sizeof(sh->meta.key), GRND_NONBLOCK) != sizeof(sh->meta.key))
		sh->meta.key = spate_mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)mem;
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
	r->key = m.key;
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
/* Leases and slots                                                          */
/* ------------------------------------------------------------------------ */

static void count(_Atomic uint64_t *c)
{
	/* Relaxed: a statistic, read by spate_ring_health(). */
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void beat(struct spate_ring_lease *l, uint64_t now)
{
	/* Relaxed: a heartbeat is judged against a bound of seconds. */
	atomic_store_explicit(&l->beat_ns, now, memory_order_relaxed);
}

/* Write our identity into a slot we have just claimed. The slot counts as
 * "claimed, identity not yet written" (alive for SPATE_RING_CLAIM_NS) until
 * pid is stored. */
static void lease_write(struct spate_ring_lease *l)
{
	pid_t me = getpid();

	beat(l, spate_mono_ns());
	/* Relaxed: published by the release store of pid below. */
	atomic_store_explicit(&l->start_time, spate_proc_start_time(me), memory_order_relaxed);
	atomic_store_explicit(&l->pidns, spate_proc_pidns(), memory_order_relaxed);
	/* Release: pairs with the acquire load of pid in lease_alive(). */
	atomic_store_explicit(&l->pid, (uint32_t)me, memory_order_release);
}

/*
 * Is the holder of @p l alive, as far as anyone can tell? Definite for a
 * holder in our PID namespace (pid + start time); for one in another, its
 * heartbeat decides; a slot still being claimed is alive for a bound that
 * starts when it is first seen so (the first observer stamps beat_ns).
 */
static int lease_alive(struct spate_ring_lease *l, uint64_t myns, uint64_t now)
{
	/* Acquire: pairs with the release store of pid in lease_write(). */
	uint32_t pid = atomic_load_explicit(&l->pid, memory_order_acquire);
	/* Relaxed: a heartbeat, judged against a bound of seconds. */
	uint64_t b = atomic_load_explicit(&l->beat_ns, memory_order_relaxed);

	if (!pid) {
		if (!b) {
			/* Relaxed: a first-seen stamp; the claimant overwrites it. */
			atomic_compare_exchange_strong_explicit(&l->beat_ns, &b, now,
								memory_order_relaxed,
								memory_order_relaxed);
			return 1;
		}
		return now < b || now - b < SPATE_RING_CLAIM_NS;
	}
	/* Relaxed: ordered by the acquire of pid. */
	uint64_t ns = atomic_load_explicit(&l->pidns, memory_order_relaxed);
	if (ns && myns && ns != myns)
		return now < b || now - b < SPATE_RING_LEASE_NS;
	return spate_proc_alive((pid_t)pid,
				atomic_load_explicit(&l->start_time, memory_order_relaxed));
}

/* Busy state of a slot being freed: nobody claims it, nobody else frees it. */
#define SLOT_FREEING 3u

/* Claim a FREE slot among @p n own words (stride @p stride bytes): the
 * generation goes up, the state to ACTIVE. Returns the index or -EBUSY. */
static int slot_claim(_Atomic uint64_t *own0, size_t stride, uint32_t n, uint64_t *own_out)
{
	for (uint32_t i = 0; i < n; i++) {
		_Atomic uint64_t *o = (_Atomic uint64_t *)(void *)((char *)own0 + i * stride);
		/* Relaxed: the CAS below validates it. */
		uint64_t v = atomic_load_explicit(o, memory_order_relaxed);
		if (SPATE_RING_OWN_STATE(v) != SPATE_RING_SLOT_FREE)
			continue;
		uint64_t nv = (v & ~(uint64_t)0xff) + SPATE_RING_OWN_GEN1 + SPATE_RING_SLOT_ACTIVE;
		/* Acquire: pairs with the release store of FREE in slot_free(),
		 * so the previous holder's use of the slot (and the cleared lease)
		 * happen before ours. */
		if (atomic_compare_exchange_strong_explicit(o, &v, nv, memory_order_acquire,
							    memory_order_relaxed)) {
			*own_out = nv;
			return (int)i;
		}
	}
	return -EBUSY;
}

/* Free a slot whose own word is @p expect: park it in FREEING (so no other
 * freer races us), clear the lease, then FREE. 0, or -ESTALE if the word
 * changed (someone else freed or evicted it first). */
static int slot_free(_Atomic uint64_t *own, uint64_t expect, struct spate_ring_lease *l,
		     _Atomic uint32_t *flags)
{
	uint64_t parked = (expect & ~(uint64_t)0xff) | SLOT_FREEING;

	/* Seq_cst: ordered with the writers' scans and other freers. */
	if (!atomic_compare_exchange_strong_explicit(own, &expect, parked, memory_order_seq_cst,
						     memory_order_relaxed))
		return -ESTALE;
	/* Relaxed: published by the release store of FREE below. A reader
	 * slot's flags go with it: the next holder must never be seen with
	 * this one's (a KEEP or a detached engine reader's) before it resets
	 * them itself. */
	atomic_store_explicit(&l->pid, 0, memory_order_relaxed);
	atomic_store_explicit(&l->beat_ns, 0, memory_order_relaxed);
	if (flags)
		atomic_store_explicit(flags, 0, memory_order_relaxed);
	/* Release: pairs with the acquire CAS in slot_claim(). */
	atomic_store_explicit(own, parked & ~(uint64_t)0xff, memory_order_release);
	return 0;
}

/* Is writer slot @p i held by a live process? A free slot is not. */
static int writer_alive(struct spate_ring_shared *sh, uint32_t i, uint64_t myns, uint64_t now)
{
	/* Acquire: pairs with the release store of FREE in slot_free() (a
	 * claim after it then shows as a new generation); the lease's own
	 * pid acquire orders its fields. */
	uint64_t v = atomic_load_explicit(&sh->writers[i].own, memory_order_acquire);
	if (SPATE_RING_OWN_STATE(v) == SPATE_RING_SLOT_FREE)
		return 0;
	if (SPATE_RING_OWN_STATE(v) == SLOT_FREEING)
		return 1;
	return lease_alive(&sh->writers[i].lease, myns, now);
}

/*
 * Take token @p tok (0 free, else writer slot + 1) for @p me. If it is held
 * and @p check, a holder whose process is dead (or a value no writer can
 * hold: corrupt) loses it to us, counted. Returns 1 if we hold it, 2 if we
 * took it over (the holder may have left its work half done).
 */
static int token_take(struct spate_ring_shared *sh, _Atomic uint32_t *tok, uint32_t me, int check)
{
	uint32_t cur = 0;

	/* Acquire: pairs with the release store of 0 by the previous holder. */
	if (atomic_compare_exchange_strong_explicit(tok, &cur, me, memory_order_acquire,
						    memory_order_relaxed))
		return 1;
	if (!check)
		return 0;
	if (cur >= 1 && cur <= SPATE_RING_MAX_WRITERS &&
	    writer_alive(sh, cur - 1, spate_proc_pidns(), spate_mono_ns()))
		return 0;
	/* Acquire: as above; the dead holder's stores are what they are (the
	 * walkers keep the shared state consistent at every store). */
	if (!atomic_compare_exchange_strong_explicit(tok, &cur, me, memory_order_acquire,
						     memory_order_relaxed))
		return 0;
	count(&sh->health.takeovers);
	return 2;
}

static void token_give(_Atomic uint32_t *tok)
{
	/* Release: pairs with the acquire CAS in token_take(). */
	atomic_store_explicit(tok, 0, memory_order_release);
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
	uint64_t own;

	if (wait > SPATE_RING_WAIT_BLOCK)
		return -EINVAL;
	if (wait == SPATE_RING_WAIT_BLOCK && (r->flags & SPATE_RING_F_NO_BLOCKING))
		return -ENOTSUP;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	int i = slot_claim(&sh->writers[0].own, sizeof(sh->writers[0]), nslots, &own);
	if (i < 0) {
		free(w);
		return i;
	}
	struct spate_ring_wslot *ws = &sh->writers[i];
	/* Relaxed: recovery data, published by the lease's release below. */
	atomic_store_explicit(&ws->intent_len, 0, memory_order_relaxed);
	lease_write(&ws->lease);

	w->ring = r;
	w->data = r->data;
	w->mask = r->mask;
	w->cap = r->cap;
	w->flags = r->flags;
	w->slot = (uint32_t)i;
	w->own = own;
	w->wait = wait;
	w->timeout_ns = UINT64_MAX;
	w->retired = &sh->meta.retired;
	w->beat_ns = spate_mono_ns();
	/* Acquire: pairs with the release store of tail by the previous writer
	 * (single-writer rings continue where it stopped). */
	w->head = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
	/* Relaxed: written before tail by the previous writer. */
	w->seq = atomic_load_explicit(&sh->pub.tail_seq, memory_order_relaxed);
	w->limit = 0; /* forces a refresh on the first reserve */
	/* Streamed batches (see SPATE_RING_STREAM_MIN): single writer only; a
	 * handle without the buffer writes every batch in place. */
	if (SPATE_RING_STREAM && !(r->flags & SPATE_RING_F_MULTI_WRITER)) {
		w->stage = aligned_alloc(64, SPATE_RING_STREAM_MAX + 64u);
		/* Zeroed: the alignment slack after a payload is copied into the
		 * ring too, and must not carry this process's old heap bytes. */
		if (w->stage)
			memset(w->stage, 0, SPATE_RING_STREAM_MAX + 64u);
	}
	*out = w;
	return 0;
}

void spate_ring_writer_close(struct spate_ring_writer *w)
{
	if (!w)
		return;
	struct spate_ring_wslot *ws = &w->ring->sh->writers[w->slot];
	/* Relaxed: no claim of ours is in flight (committed or aborted). */
	if (atomic_load_explicit(&ws->own, memory_order_relaxed) == w->own)
		atomic_store_explicit(&ws->intent_len, 0, memory_order_relaxed);
	/* -ESTALE: reaped as dead (a lease misjudged); the slot is not ours. */
	(void)slot_free(&ws->own, w->own, &ws->lease, NULL);
	free(w->stage);
	free(w);
}

/*
 * Copy a staged batch of @p len bytes to the ring at @p dst (@p src is at the
 * same offset modulo 64): the partial lines at either end by plain stores
 * (they share a line with the batches before and after), every whole line
 * by non-temporal stores, then an sfence, so the release store of tail that
 * follows publishes them too (a release store does not order non-temporal
 * stores on x86).
 */
void spate_ring_stream_(uint8_t *dst, const uint8_t *src, uint64_t len)
{
#if SPATE_RING_STREAM
	uint64_t head = (uint64_t)(-(uintptr_t)dst & 63u);

	if (head > len)
		head = len;
	memcpy(dst, src, head);
	dst += head, src += head, len -= head;
	for (; len >= 64; dst += 64, src += 64, len -= 64) {
		__m128i a = _mm_load_si128((const __m128i *)(const void *)src);
		__m128i b = _mm_load_si128((const __m128i *)(const void *)(src + 16));
		__m128i c = _mm_load_si128((const __m128i *)(const void *)(src + 32));
		__m128i d = _mm_load_si128((const __m128i *)(const void *)(src + 48));
		_mm_stream_si128((__m128i *)(void *)dst, a);
		_mm_stream_si128((__m128i *)(void *)(dst + 16), b);
		_mm_stream_si128((__m128i *)(void *)(dst + 32), c);
		_mm_stream_si128((__m128i *)(void *)(dst + 48), d);
	}
	memcpy(dst, src, len);
	_mm_sfence();
#else
	memcpy(dst, src, len);
#endif
}

void spate_ring_writer_beat(struct spate_ring_writer *w)
{
	w->beat_ns = spate_mono_ns();
	beat(&w->ring->sh->writers[w->slot].lease, w->beat_ns);
}

/* Minimum released position of the active readers, at most @p bound (the
 * tail). A position no registered reader can hold (past the tail, or more
 * than a ring behind it: a corrupt slot, or a reader still registering)
 * gates nothing. */
static uint64_t min_reader_pos(struct spate_ring_shared *sh, uint64_t bound, uint64_t cap)
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
		if (p < min && bound - p <= cap)
			min = p;
	}
	return min;
}

/*
 * Advance trim over whole published batches until it is at least @p goal
 * (goal <= tail). Returns the new trim; stops early at a header that fails
 * validation, and then sets *@p bad (a corrupt ring: an error, not a wait).
 *
 * Only one writer walks at a time (multi-writer rings take trim_lock; one
 * that finds it taken uses trim as it is; a dead holder loses it to a
 * waiting writer's check_peers()). That is what makes the walk safe:
 * every writer's cached limit is at most trim + capacity as it was when the
 * limit was computed, and trim only grows, so no writer can be overwriting a
 * header at or above the trim the walker starts from.
 */
static uint64_t advance_trim(struct spate_ring *r, uint32_t slot, uint64_t goal, uint64_t tail,
			     int *bad)
{
	struct spate_ring_shared *sh = r->sh;
	int mp = !!(r->flags & SPATE_RING_F_MULTI_WRITER);

	if (mp && !token_take(sh, &sh->prod.trim_lock, slot + 1, 0))
		/* Seq_cst: as the walker's store. */
		return atomic_load_explicit(&sh->prod.trim, memory_order_seq_cst);
	/* Relaxed: only the walker stores trim (single writer, or token holder). */
	uint64_t t0 = atomic_load_explicit(&sh->prod.trim, memory_order_relaxed);
	uint64_t t = t0;

	while (t < goal && t < tail) {
		const struct spate_ring_bhdr *h =
			(const struct spate_ring_bhdr *)(const void *)(r->data + (t & r->mask));
		/* Relaxed: t < tail, which the caller loaded with acquire. */
		uint64_t c = atomic_load_explicit(&h->commit, memory_order_relaxed);
		uint64_t len = spate_ring_batch_len_(c, t, r->cap, tail);
		if (!len) {
			*bad = 1;
			break;
		}
		t += len;
	}
	if (t != t0)
		/* Seq_cst: first half of the Dekker pair with reader registration
		 * (we store trim, then read the slots; it stores its slot, then
		 * reads trim). */
		atomic_store_explicit(&sh->prod.trim, t, memory_order_seq_cst);
	if (mp)
		token_give(&sh->prod.trim_lock);
	return t;
}

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


/* The writable limit now, in *@p lim: min(trim, readers) + capacity, after
 * advancing trim toward what @p need_end requires. -EBADMSG if the shared
 * positions are inconsistent (a corrupt control block or header). */
static int compute_limit(struct spate_ring_writer *w, uint64_t need_end, uint64_t *lim)
{
	struct spate_ring *r = w->ring;
	struct spate_ring_shared *sh = r->sh;
	int bad = 0, mp = !!(r->flags & SPATE_RING_F_MULTI_WRITER);
	uint64_t tail, trim;

	/*
	 * A consistent snapshot of the positions, checked against the
	 * invariant trim <= tail <= head <= trim + capacity: a corrupt control
	 * block is an error, never a wait. Loads race with other writers, so a
	 * failed check counts only if tail did not move during it.
	 */
	for (unsigned bad_reads = 0;;) {
		/* Acquire (trims): pair with the walker's (seq_cst) store of
		 * trim in advance_trim(): its reads of the headers below happen
		 * before we write over them. */
		uint64_t t1 = atomic_load_explicit(&sh->prod.trim, memory_order_acquire);
		/* Acquire: pairs with the release store of tail by the
		 * publisher; the headers below it are complete, for
		 * advance_trim(). */
		tail = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
		/* Relaxed: a consistency check; claims re-validate by CAS. */
		uint64_t head = mp ? atomic_load_explicit(&sh->prod.head, memory_order_relaxed) : tail;
		trim = atomic_load_explicit(&sh->prod.trim, memory_order_acquire);
		if (!(t1 > tail || tail > trim + r->cap || (tail & 7) || head < tail ||
		      head > trim + r->cap || (head & 7) || (!mp && tail != w->head)))
			break;
		if (atomic_load_explicit(&sh->pub.tail, memory_order_acquire) == tail &&
		    ++bad_reads >= 3)
			return -EBADMSG;
	}
	uint64_t min = min_reader_pos(sh, tail, r->cap);
	uint64_t goal = need_end > r->cap ? need_end - r->cap : 0;

	if (goal > min) {
		*lim = min + r->cap; /* full: a reader holds us back */
		return 0;
	}
	/* Trim only as far as the space is needed, plus 1/16 of the ring so the
	 * walk and this refresh happen in bulk: everything else stays readable
	 * from OLDEST (the ring's retention is the ring). */
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
			trim = advance_trim(r, w->slot, aim < min ? aim : min, tail, &bad);
			if (bad && trim < goal)
				return -EBADMSG;
		}
	}
	/* Re-read the readers after publishing trim (Dekker, see min_reader_pos). */
	*lim = min_reader_pos(sh, trim, r->cap) + r->cap;
	return 0;
}

/*
 * Evict the readers that hold the ring below @p goal and whose process is
 * dead (not SPATE_RING_RSLOT_F_KEEP nor SPATE_RING_RSLOT_F_ENGINE ones: a
 * dead engine's readers are its successor's to free). Any writer, any time.
 */
static unsigned evict_dead_gaters(struct spate_ring *r, uint64_t goal)
{
	struct spate_ring_shared *sh = r->sh;
	uint64_t myns = spate_proc_pidns(), now = spate_mono_ns();
	/* Seq_cst: as in min_reader_pos(). */
	uint64_t mask = atomic_load_explicit(&sh->pub.reader_mask, memory_order_seq_cst);
	unsigned n = 0;

	while (mask) {
		unsigned i = (unsigned)__builtin_ctzll(mask);
		struct spate_ring_rslot *s = &sh->readers[i];
		mask &= mask - 1;
		/* Relaxed: which readers to look at; the CAS below decides. */
		if (atomic_load_explicit(&s->pos, memory_order_relaxed) >= goal ||
		    (atomic_load_explicit(&s->flags, memory_order_relaxed) &
		     (SPATE_RING_RSLOT_F_KEEP | SPATE_RING_RSLOT_F_ENGINE)))
			continue;
		/* Acquire: the lease we read next is this holder's (see writer_alive). */
		uint64_t v = atomic_load_explicit(&s->own, memory_order_acquire);
		if (SPATE_RING_OWN_STATE(v) != SPATE_RING_SLOT_ACTIVE ||
		    lease_alive(&s->lease, myns, now))
			continue;
		if (spate_ring_reader_evict_own_(r, i, v) == 0) {
			count(&sh->health.evicted);
			n++;
		}
	}
	return n;
}

static int unblock(struct spate_ring *r, uint32_t me);

/* A writer that cannot go on looks for dead peers: gating readers, a dead
 * claim at the publication point, a trim token held by the dead. */
static void check_peers(struct spate_ring_writer *w, uint64_t goal)
{
	struct spate_ring *r = w->ring;
	struct spate_ring_shared *sh = r->sh;
	uint64_t now = spate_mono_ns();

	if (now < w->check_ns)
		return;
	w->check_ns = now + SPATE_RING_CHECK_NS;
	spate_ring_writer_beat(w);
	evict_dead_gaters(r, goal);
	if (r->flags & SPATE_RING_F_MULTI_WRITER) {
		(void)unblock(r, w->slot + 1);
		if (token_take(sh, &sh->prod.trim_lock, w->slot + 1, 1))
			token_give(&sh->prod.trim_lock);
	}
}

static void writer_sleep(struct spate_ring_writer *w, uint64_t need_end, uint64_t deadline,
			 unsigned *spins)
{
	struct spate_ring_shared *sh = w->ring->sh;
	uint64_t lim;

	if (w->wait == SPATE_RING_WAIT_BUSY || (*spins)++ < SPIN_BEFORE_SLEEP) {
		spate_cpu_relax();
		return;
	}
	if (w->wait == SPATE_RING_WAIT_YIELD) {
		sched_yield();
		return;
	}
	/* Never sleep past the next look for dead peers: a dead reader wakes
	 * nobody. */
	uint64_t nap = spate_mono_ns() + SPATE_RING_CHECK_NS;
	/* Seq_cst: Dekker pair with the seq_cst pos store and wr_waiters load
	 * in spate_ring_release(). */
	atomic_fetch_add_explicit(&sh->wake.wr_waiters, 1, memory_order_seq_cst);
	uint32_t v = atomic_load_explicit(&sh->wake.space_futex, memory_order_seq_cst);
	if (compute_limit(w, need_end, &lim) == 0 && lim < need_end)
		futex_sleep(&sh->wake.space_futex, v, nap < deadline ? nap : deadline);
	atomic_fetch_sub_explicit(&sh->wake.wr_waiters, 1, memory_order_relaxed);
}

int spate_ring_refresh_limit_(struct spate_ring_writer *w, uint64_t need_end)
{
	struct spate_ring_shared *sh = w->ring->sh;
	uint64_t deadline = 0, lim = 0;
	uint64_t goal = need_end > w->cap ? need_end - w->cap : 0;
	unsigned spins = 0;
	int rc;

	for (;;) {
		rc = compute_limit(w, need_end, &lim);
		if (rc < 0) {
			count(&sh->health.corrupt);
			break;
		}
		if (lim >= need_end) {
			w->limit = lim;
			break;
		}
		if (!deadline) {
			w->full_events++;
			if (!(w->flags & SPATE_RING_F_FULL_WAIT)) {
				/* Failing at once; still evict the dead (rate-limited),
				 * so a later put finds space. */
				check_peers(w, goal);
				return -EAGAIN;
			}
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
		check_peers(w, goal);
		writer_sleep(w, need_end, deadline, &spins);
	}
	if (deadline)
		atomic_fetch_sub_explicit(&sh->wake.wr_waiting, 1, memory_order_relaxed);
	return rc;
}

/* Intent length bit: the claimant has written its claim header (so the
 * header at the claim is its, not stale bytes). Lengths are multiples of 8. */
#define INTENT_HDR 0x1ull

int spate_ring_reserve_mp_(struct spate_ring_writer *w, uint64_t need, struct spate_ring_batch *b)
{
	struct spate_ring_shared *sh = w->ring->sh;
	struct spate_ring_wslot *ws = &sh->writers[w->slot];
	uint64_t pad, end;

	/* Relaxed: our own slot word; only a reaper that judged us dead changes it. */
	if (atomic_load_explicit(&ws->own, memory_order_relaxed) != w->own)
		return -EPIPE;
	/* Relaxed: the CAS below validates the value. */
	uint64_t h = atomic_load_explicit(&sh->prod.head, memory_order_relaxed);
	for (;;) {
		uint64_t room = w->cap - (h & w->mask);
		pad = need > room ? room : 0;
		end = h + pad + need;
		/* Below limit - cap is impossible for a sane head: refresh, which
		 * validates the positions. */
		if (end > w->limit || h + w->cap < w->limit) {
			int rc = spate_ring_refresh_limit_(w, end);
			if (rc < 0) {
				/* Relaxed: a failed attempt leaves no intent behind
				 * (recovery must never attribute a claim to it). */
				atomic_store_explicit(&ws->intent_len, 0, memory_order_relaxed);
				return rc;
			}
			h = atomic_load_explicit(&sh->prod.head, memory_order_relaxed);
			if (h + w->cap < w->limit)
				return -EBADMSG;
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
		/* Relaxed: ordered before the publisher's reads by the seq_cst
		 * commit store of our batch, which it acquires before trusting
		 * this pad (and the pad's value is fixed by the claim). */
		atomic_store_explicit(&ph->commit, SPATE_RING_TAG(h) | pad | SPATE_RING_C_PAD |
				      SPATE_RING_C_COMMITTED, memory_order_relaxed);
	}
	struct spate_ring_bhdr *bh = (struct spate_ring_bhdr *)(void *)(w->data + ((h + pad) & w->mask));
	/* Relaxed: claimed, not committed; ordered before the intent's header
	 * bit by its release. */
	atomic_store_explicit(&bh->commit, SPATE_RING_TAG(h + pad) | need, memory_order_relaxed);
	/* Release: pairs with the acquire load of the intent in unblock(): a
	 * recoverer that sees the bit sees our claim header. */
	atomic_store_explicit(&ws->intent_len, (pad + need) | INTENT_HDR, memory_order_release);
	b->hdr = (uint8_t *)bh;
	b->ring_ = NULL; /* multi-writer batches are written in place */
	b->cur = b->hdr + SPATE_RING_BHDR_SIZE;
	b->end = b->hdr + need;
	b->pos = h + pad;
	b->count = 0;
	b->pad_ = (uint32_t)pad;
	return 0;
}

/* The check a multi-writer claim's header carries (in base_seq) from commit
 * until it is published: a keyed mix of the claim's position (the start of
 * its padding, if any). Without the ring's key, payload bytes cannot make
 * one. */
static uint64_t claim_check(uint64_t key, uint64_t pos)
{
	uint64_t x = key ^ (pos * 0x9e3779b97f4a7c15ull);
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return x;
}

/*
 * Walk committed batches from tail, stamp their sequence numbers, publish.
 * Only the holder of the publisher token calls it. The walk stays below
 * head (only claimed space) and trusts a header only if it carries the claim
 * check of its position: a claim whose header is not written yet holds old
 * bytes, and no payload can produce the check. A PAD is published only
 * together with the batch of the same claim after it. After a takeover
 * (@p recover), batches the dead holder stamped but did not publish are
 * accepted by their contiguous sequence numbers.
 */
static void publish_run(struct spate_ring *r, int recover)
{
	struct spate_ring_shared *sh = r->sh;
	/* Relaxed: only the token holder stores tail and tail_seq, and the
	 * token's acquire orders us after the previous holder's stores. */
	uint64_t t0 = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed);
	uint64_t s = atomic_load_explicit(&sh->pub.tail_seq, memory_order_relaxed);
	/* Acquire: pairs with the claimants' acq_rel CAS of head. */
	uint64_t head = atomic_load_explicit(&sh->prod.head, memory_order_acquire);
	uint64_t t = t0;

	if (head < t0 || head - t0 > r->cap)
		return; /* corrupt: writers see it at their next refresh */
	while (t < head) {
		uint64_t start = t, bpos = t;
		struct spate_ring_bhdr *h = (struct spate_ring_bhdr *)(void *)(r->data + (t & r->mask));
		/* Acquire: pairs with the committer's seq_cst store of commit. */
		uint64_t c = atomic_load_explicit(&h->commit, memory_order_acquire);
		uint64_t len = spate_ring_batch_len_(c, t, r->cap, head);
		if (!len)
			break;
		if (c & SPATE_RING_C_PAD) {
			/* Padding is the first part of a claim that runs to the
			 * end of the ring; its batch follows at the ring's start. */
			if (((t + len) & r->mask) != 0)
				break;
			bpos = t + len;
			h = (struct spate_ring_bhdr *)(void *)(r->data + (bpos & r->mask));
			c = atomic_load_explicit(&h->commit, memory_order_acquire);
			len = spate_ring_batch_len_(c, bpos, r->cap, head);
			if (!len || (c & SPATE_RING_C_PAD))
				break;
		}
		if (len < SPATE_RING_BHDR_SIZE)
			break;
		uint64_t bs = h->base_seq;
		if (bs != claim_check(r->key, start) &&
		    !(recover && !(c & SPATE_RING_C_SKIP) && (t == t0 ? bs <= s : bs == s)))
			break;
		if (!(c & SPATE_RING_C_SKIP)) {
			if (bs != claim_check(r->key, start))
				s = bs; /* stamped by a dead holder: keep its numbers */
			h->base_seq = s;
			uint32_t owner = h->owner;
			if (owner && owner <= SPATE_RING_MAX_WRITERS) {
				struct spate_ring_wslot *ws = &sh->writers[owner - 1];
				/* Relaxed, then release: pairs with the acquire load of
				 * pub_pos by the owner waiting for its sequence number. */
				atomic_store_explicit(&ws->pub_seq, s, memory_order_relaxed);
				atomic_store_explicit(&ws->pub_pos, bpos, memory_order_release);
			}
			s += h->count;
		}
		t = bpos + len;
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

/* Take the publisher token (from a dead holder too, if @p check) and publish
 * until no commit is left behind. */
static void publish(struct spate_ring *r, uint32_t me, int check)
{
	struct spate_ring_shared *sh = r->sh;

	for (;;) {
		int got = token_take(sh, &sh->prod.pub_lock, me, check);
		if (!got)
			return; /* the holder will publish our batch */
		/* Seq_cst: the Dekker pair with the committers' increment. */
		uint64_t seen = atomic_load_explicit(&sh->prod.commits, memory_order_seq_cst);
		publish_run(r, got == 2);
		/* Seq_cst: give the token back, then re-check (Dekker above). */
		atomic_store_explicit(&sh->prod.pub_lock, 0, memory_order_seq_cst);
		if (atomic_load_explicit(&sh->prod.commits, memory_order_seq_cst) == seen)
			return;
		check = 0;
	}
}

/*
 * Recovery of a multi-writer ring whose publication point (tail) is a claim
 * nobody will commit: its writer died between reserve and commit. Under the
 * publisher token (taken over from a dead holder, publishing what it left),
 * find the claimant from the writers' intents; if it is dead, turn its claim
 * into a SKIP batch carrying the claim check, counted, and publish on.
 * @return 1 (tail moved), 0 (nothing to do: tail moves, or the claimant
 * lives), -EBADMSG.
 */
static int unblock(struct spate_ring *r, uint32_t me)
{
	struct spate_ring_shared *sh = r->sh;
	int rc = 0;

	int got = token_take(sh, &sh->prod.pub_lock, me, 1);
	if (!got)
		return 0;
	/* Relaxed: we hold the token; only its holder moves tail. */
	uint64_t t = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed);
	publish_run(r, got == 2);
	if (atomic_load_explicit(&sh->pub.tail, memory_order_relaxed) != t) {
		rc = 1;
		goto out;
	}
	/* Acquire: pairs with the claimants' acq_rel CAS of head: the intents
	 * stored before their claims are visible. */
	uint64_t head = atomic_load_explicit(&sh->prod.head, memory_order_acquire);
	uint64_t myns = spate_proc_pidns(), now = spate_mono_ns();
	uint64_t ipos = 0, ilen = 0;
	int who = -1;

	if (head == t)
		goto out;
	if (head < t || head - t > r->cap) {
		rc = -EBADMSG;
		goto out;
	}
	for (uint32_t i = 0; i < SPATE_RING_MAX_WRITERS; i++) {
		struct spate_ring_wslot *ws = &sh->writers[i];
		/* Relaxed: a free slot's intent means nothing (writer_alive
		 * re-reads the word with acquire). */
		if (SPATE_RING_OWN_STATE(atomic_load_explicit(&ws->own, memory_order_relaxed)) !=
		    SPATE_RING_SLOT_ACTIVE)
			continue;
		/* Acquire: pairs with the release store of the header bit. */
		uint64_t l = atomic_load_explicit(&ws->intent_len, memory_order_acquire);
		/* Relaxed: stored before intent_len by the same writer. */
		uint64_t p = atomic_load_explicit(&ws->intent_pos, memory_order_relaxed);
		if (!(l & ~INTENT_HDR) || p > t || t - p >= (l & ~INTENT_HDR))
			continue;
		if (writer_alive(sh, i, myns, now))
			goto out; /* it will commit (or its claim attempt fails) */
		/* Of several dead intents at t, one is the claim; the others are
		 * intents whose CAS never happened. Prefer the one that wrote its
		 * header; then the longest covers the claim. */
		if (who < 0 || ((l & INTENT_HDR) && !(ilen & INTENT_HDR)) ||
		    ((l & INTENT_HDR) == (ilen & INTENT_HDR) && l > ilen)) {
			who = (int)i;
			ipos = p;
			ilen = l;
		}
	}
	if (who < 0)
		goto out; /* a claim in flight, its intent not visible yet */
	ilen &= ~INTENT_HDR;
	uint64_t end = ipos + ilen;
	if (ipos != t || ilen > r->cap || end > head) {
		rc = -EBADMSG;
		goto out;
	}
	uint64_t room = r->cap - (ipos & r->mask);
	uint64_t pad = ilen > room ? room : 0;
	uint64_t bpos = ipos + pad, need = end - bpos;
	if (pad) {
		struct spate_ring_bhdr *ph =
			(struct spate_ring_bhdr *)(void *)(r->data + (ipos & r->mask));
		/* Relaxed: published by the tail store of publish_run. */
		atomic_store_explicit(&ph->commit, SPATE_RING_TAG(ipos) | pad | SPATE_RING_C_PAD |
				      SPATE_RING_C_COMMITTED, memory_order_relaxed);
	}
	struct spate_ring_bhdr *h = (struct spate_ring_bhdr *)(void *)(r->data + (bpos & r->mask));
	/* Acquire: pairs with the committer's store (a batch committed since
	 * our walk is published by the next walk, never skipped). */
	uint64_t c0 = atomic_load_explicit(&h->commit, memory_order_acquire);
	if (c0 & SPATE_RING_C_COMMITTED)
		goto out;
	/* Seq_cst CAS: the claimant commits with a CAS from its claim word, so
	 * exactly one of us wins; if it was alive after all, its commit fails
	 * (-EPIPE) instead of writing into a published skip. */
	if (!atomic_compare_exchange_strong_explicit(&h->commit, &c0,
						     SPATE_RING_TAG(bpos) | need | SPATE_RING_C_SKIP |
							     SPATE_RING_C_COMMITTED,
						     memory_order_seq_cst, memory_order_relaxed))
		goto out;
	h->count = 0;
	h->owner = 0;
	h->ts = 0;
	h->base_seq = claim_check(r->key, ipos);
	/* Relaxed: the claim is settled. */
	atomic_store_explicit(&sh->writers[who].intent_len, 0, memory_order_relaxed);
	count(&sh->health.skipped);
	publish_run(r, 0);
	rc = 1;
out:
	/* Seq_cst: as in publish(); then publish what committers left us. */
	atomic_store_explicit(&sh->prod.pub_lock, 0, memory_order_seq_cst);
	publish(r, me, 0);
	if (rc == 1) {
		spate_ring_wake_readers_(r);
		spate_ring_wake_writers_(r);
	} else if (rc < 0) {
		count(&sh->health.corrupt);
	}
	return rc;
}

int spate_ring_commit_mp_(struct spate_ring_writer *w, struct spate_ring_batch *b, uint64_t ts,
			  uint64_t *first_seq)
{
	struct spate_ring *r = w->ring;
	struct spate_ring_shared *sh = r->sh;
	struct spate_ring_bhdr *h = (struct spate_ring_bhdr *)(void *)b->hdr;
	uint64_t len = (uint64_t)(b->end - b->hdr);
	uint32_t n = b->count;

	h->count = n;
	h->owner = w->slot + 1;
	h->ts = ts ? ts : spate_now_ns();
	h->base_seq = claim_check(r->key, b->pos - b->pad_);
	/* Seq_cst (release at least): pairs with the publisher's acquire load.
	 * An empty batch is a SKIP: no reader or log ever sees it. A CAS from
	 * our claim word: it fails only if a recoverer judged us dead and
	 * skipped the claim (see unblock). */
	uint64_t claim = SPATE_RING_TAG(b->pos) | len;
	if (!atomic_compare_exchange_strong_explicit(&h->commit, &claim,
						     claim | SPATE_RING_C_COMMITTED |
							     (n ? 0 : SPATE_RING_C_SKIP),
						     memory_order_seq_cst, memory_order_relaxed))
		return -EPIPE;
	/* Relaxed: recovery data; the claim is complete (its check proves it). */
	atomic_store_explicit(&sh->writers[w->slot].intent_len, 0, memory_order_relaxed);
	/* Seq_cst: Dekker pair with the token holder, which gives the token
	 * back and then re-reads commits: either our CAS finds the token free,
	 * or the holder sees this count move and walks again. */
	atomic_fetch_add_explicit(&sh->prod.commits, 1, memory_order_seq_cst);
	publish(r, w->slot + 1, 0);
	/* Seq_cst: after the seq_cst tail store of whoever published (us, or
	 * the holder, which checks too): see spate_ring_commit(). */
	if (!(r->flags & SPATE_RING_F_NO_BLOCKING) &&
	    atomic_load_explicit(&sh->pub.rd_waiters, memory_order_seq_cst))
		spate_ring_wake_readers_(r);
	if (first_seq && n == 0) {
		*first_seq = spate_ring_tail_seq(r);
	} else if (first_seq) {
		struct spate_ring_wslot *ws = &sh->writers[w->slot];
		unsigned spins = 0;
		/* Acquire: pairs with the publisher's release store of pub_pos. */
		while (atomic_load_explicit(&ws->pub_pos, memory_order_acquire) != b->pos) {
			if (spins++ < SPIN_BEFORE_SLEEP) {
				spate_cpu_relax();
				continue;
			}
			sched_yield();
			if (spins == SPIN_BEFORE_SLEEP + 1)
				w->check_ns = spate_mono_ns() + SPATE_RING_CHECK_NS;
			/* An earlier claimant, or the token holder, may be dead. */
			check_peers(w, 0);
			/* Acquire: as above, for a consistency check (tail may be
			 * far past us: we may have slept while others wrote). */
			uint64_t t = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
			if (t < b->pos && b->pos - t > w->cap) {
				count(&sh->health.corrupt);
				return -EBADMSG;
			}
		}
		*first_seq = atomic_load_explicit(&ws->pub_seq, memory_order_relaxed);
	}
	return (int)n;
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
		rc = spate_ring_commit(w, &b, 0, done ? NULL : first_seq);
		if (rc < 0)
			return done ? (int)done : rc;
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

/* A reader handle on slot @p index (owner word @p own), released up to
 * @p pos; the caller sets the sequence number (and the batch end). */
static void reader_handle_init(struct spate_ring_reader *rd, struct spate_ring *r, uint32_t index,
			       uint64_t own, enum spate_ring_wait wait, uint64_t pos)
{
	rd->ring = r;
	rd->data = r->data;
	rd->mask = r->mask;
	rd->cap = r->cap;
	rd->slot = &r->sh->readers[index];
	rd->flags = r->flags;
	rd->index = index;
	rd->own = own;
	rd->beat_ns = spate_mono_ns();
	rd->wait = wait;
	rd->pos = pos;
	rd->published = pos;
	rd->tail = pos;
	rd->left = 0;
}

int spate_ring_reader_open(struct spate_ring *r, enum spate_ring_start start,
			   enum spate_ring_wait wait, struct spate_ring_reader **out)
{
	struct spate_ring_shared *sh = r->sh;
	struct spate_ring_reader *rd;
	uint64_t own;

	if (wait > SPATE_RING_WAIT_BLOCK || start > SPATE_RING_START_LATEST)
		return -EINVAL;
	if (wait == SPATE_RING_WAIT_BLOCK && (r->flags & SPATE_RING_F_NO_BLOCKING))
		return -ENOTSUP;
	rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	int i = slot_claim(&sh->readers[0].own, sizeof(sh->readers[0]), SPATE_RING_MAX_READERS,
			   &own);
	if (i < 0) {
		free(rd);
		return i;
	}
	struct spate_ring_rslot *slot = &sh->readers[i];
	/* Relaxed: the slot is ours; flags are set by the holder only. */
	atomic_store_explicit(&slot->flags, 0, memory_order_relaxed);
	lease_write(&slot->lease);

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

	reader_handle_init(rd, r, (uint32_t)i, own, wait, pos);
	rd->seq = UINT64_MAX; /* learnt from the first batch header */
	spate_ring_reader_resolve_seq(rd);
	*out = rd;
	return 0;
}

void spate_ring_reader_beat(struct spate_ring_reader *rd)
{
	rd->beat_ns = spate_mono_ns();
	beat(&rd->slot->lease, rd->beat_ns);
}

int spate_ring_peek_batches(struct spate_ring_reader *rd, struct spate_ring_span *out,
			    unsigned max, uint64_t max_bytes)
{
	/* Relaxed: our own slot's word, written only by us and an evicter. */
	if (atomic_load_explicit(&rd->slot->own, memory_order_relaxed) != rd->own)
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
		if (c & SPATE_RING_C_NODATA) { /* padding, or a skipped claim */
			pos += len;
			continue;
		}
		if (len < SPATE_RING_BHDR_SIZE)
			return spate_ring_peek_slow_(rd, -EBADMSG);
		uint64_t base = h->base_seq;
		uint32_t count = h->count;
		if (seq != UINT64_MAX && base != seq)
			return spate_ring_peek_slow_(rd, -EBADMSG);
		if (count == 0) { /* carries nothing: never handed out */
			pos += len;
			continue;
		}
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
		/* Only padding or skipped batches: move past them, nothing to release. */
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
		if (!(c & SPATE_RING_C_NODATA)) {
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
	uint64_t evicted = (rd->own & ~(uint64_t)0xff) | SPATE_RING_SLOT_EVICTED;
	/* Relaxed: which of our two states the slot is in; slot_free's CAS decides. */
	uint64_t v = atomic_load_explicit(&rd->slot->own, memory_order_relaxed);

	if (v == rd->own || v == evicted)
		/* Relaxed: ordered before the slot is reused by slot_free's
		 * release; close frees a kept slot too. */
		atomic_store_explicit(&rd->slot->flags, 0, memory_order_relaxed);
	if (v == rd->own) {
		/* Seq_cst: writers stop counting us before the slot can be
		 * reused. The bit is ours until the slot is FREE. */
		atomic_fetch_and_explicit(&sh->pub.reader_mask, ~(1ull << rd->index),
					  memory_order_seq_cst);
		if (slot_free(&rd->slot->own, rd->own, &rd->slot->lease, &rd->slot->flags) < 0)
			v = evicted; /* evicted meanwhile: free it as such */
	}
	if (v == evicted)
		(void)slot_free(&rd->slot->own, evicted, &rd->slot->lease, &rd->slot->flags);
	/* Otherwise the slot was reaped (our lease misjudged): not ours. */
	if (!(rd->flags & SPATE_RING_F_NO_BLOCKING))
		spate_ring_wake_writers_(rd->ring);
	free(rd);
}

/* Evict reader slot @p index if its own word is still @p own. */
int spate_ring_reader_evict_own_(struct spate_ring *r, uint32_t index, uint64_t own)
{
	struct spate_ring_shared *sh = r->sh;
	uint64_t nv = (own & ~(uint64_t)0xff) | SPATE_RING_SLOT_EVICTED;

	/* Seq_cst: ordered with the owner's close and the writers' scans. */
	if (!atomic_compare_exchange_strong_explicit(&sh->readers[index].own, &own, nv,
						     memory_order_seq_cst, memory_order_relaxed))
		return -ENOENT;
	/* Seq_cst: writers stop counting the slot (as in reader_close). */
	atomic_fetch_and_explicit(&sh->pub.reader_mask, ~(1ull << index), memory_order_seq_cst);
	if (!(r->flags & SPATE_RING_F_NO_BLOCKING))
		spate_ring_wake_writers_(r);
	return 0;
}

int spate_ring_reader_evict(struct spate_ring *r, uint32_t index)
{
	if (index >= SPATE_RING_MAX_READERS)
		return -EINVAL;
	/* Relaxed: set by the holder while it is active; a kept gate protects
	 * records not yet persisted and is never evicted. */
	if (atomic_load_explicit(&r->sh->readers[index].flags, memory_order_relaxed) &
	    SPATE_RING_RSLOT_F_KEEP)
		return -EPERM;
	/* Relaxed: the CAS in evict_own_ validates it. */
	uint64_t v = atomic_load_explicit(&r->sh->readers[index].own, memory_order_relaxed);
	if (SPATE_RING_OWN_STATE(v) != SPATE_RING_SLOT_ACTIVE)
		return -ENOENT;
	return spate_ring_reader_evict_own_(r, index, v);
}

int spate_ring_reap(struct spate_ring *r, uint32_t *readers, uint32_t *writers)
{
	struct spate_ring_shared *sh = r->sh;
	uint64_t myns = spate_proc_pidns(), now = spate_mono_ns();
	uint32_t nr = 0, nw = 0;
	int rc = 0;

	for (uint32_t i = 0; i < SPATE_RING_MAX_READERS; i++) {
		struct spate_ring_rslot *s = &sh->readers[i];
		/* Acquire: the lease we read next is this holder's; the CAS in
		 * slot_free() settles races with it. */
		uint64_t v = atomic_load_explicit(&s->own, memory_order_acquire);
		uint32_t st = SPATE_RING_OWN_STATE(v);
		/* Relaxed: the holder sets the flags before it stops using the
		 * slot (keep: long before any reap; detached: seq_cst after its
		 * last position store, and nothing of ours reads past it). */
		uint32_t fl = atomic_load_explicit(&s->flags, memory_order_relaxed);
		if ((st != SPATE_RING_SLOT_ACTIVE && st != SPATE_RING_SLOT_EVICTED) ||
		    (fl & SPATE_RING_RSLOT_F_KEEP) ||
		    ((fl & SPATE_RING_RSLOT_F_LEFT_) != SPATE_RING_RSLOT_F_LEFT_ &&
		     lease_alive(&s->lease, myns, now)))
			continue;
		if (st == SPATE_RING_SLOT_ACTIVE && spate_ring_reader_evict_own_(r, i, v) < 0)
			continue;
		v = (v & ~(uint64_t)0xff) | SPATE_RING_SLOT_EVICTED;
		if (slot_free(&s->own, v, &s->lease, &s->flags) == 0) {
			count(&sh->health.reaped_readers);
			nr++;
		}
	}
	if (r->flags & SPATE_RING_F_MULTI_WRITER) {
		/* A dead claim at the publication point: recover it with a writer
		 * slot of our own (the recovery token names a writer). */
		struct spate_ring_writer *w;
		if (spate_ring_writer_open(r, SPATE_RING_WAIT_YIELD, &w) == 0) {
			int u;
			while ((u = unblock(r, w->slot + 1)) == 1)
				rc = 1;
			if (u < 0)
				rc = u;
			if (token_take(sh, &sh->prod.trim_lock, w->slot + 1, 1))
				token_give(&sh->prod.trim_lock);
			spate_ring_writer_close(w);
		}
	}
	/* Acquire (both): pair with the publisher's store of tail and the
	 * claimants' CAS of head; the intents read below are at least as new. */
	uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
	uint64_t head = atomic_load_explicit(&sh->prod.head, memory_order_acquire);
	for (uint32_t i = 0; i < SPATE_RING_MAX_WRITERS; i++) {
		struct spate_ring_wslot *s = &sh->writers[i];
		/* Acquire: as for readers. */
		uint64_t v = atomic_load_explicit(&s->own, memory_order_acquire);
		if (SPATE_RING_OWN_STATE(v) != SPATE_RING_SLOT_ACTIVE || lease_alive(&s->lease, myns, now))
			continue;
		/* A dead writer whose claim is still unpublished keeps its slot:
		 * its intent is what recovery needs (unblock above takes it once
		 * it reaches the publication point). */
		uint64_t l = atomic_load_explicit(&s->intent_len, memory_order_acquire) & ~INTENT_HDR;
		uint64_t p = atomic_load_explicit(&s->intent_pos, memory_order_relaxed);
		if ((r->flags & SPATE_RING_F_MULTI_WRITER) && l && p + l > tail && p < head)
			continue;
		/* A publisher token held by the dead stays for unblock() (above,
		 * or a waiting writer's), which finishes its walk. The trim
		 * walker's is taken back (compare-exchange only: a live holder's
		 * value differs; trim is consistent at every store). */
		if (atomic_load_explicit(&sh->prod.pub_lock, memory_order_relaxed) == i + 1)
			continue;
		uint32_t tok = i + 1;
		if (atomic_compare_exchange_strong_explicit(&sh->prod.trim_lock, &tok, 0,
							    memory_order_release, memory_order_relaxed))
			count(&sh->health.takeovers);
		if (slot_free(&s->own, v, &s->lease, NULL) == 0) {
			count(&sh->health.reaped_writers);
			nw++;
		}
	}
	if (nr || nw)
		spate_ring_wake_writers_(r);
	if (readers)
		*readers = nr;
	if (writers)
		*writers = nw;
	return rc;
}

void spate_ring_health(const struct spate_ring *r, struct spate_ring_health *out)
{
	const struct spate_ring_shared *sh = r->sh;
	struct spate_ring_shared *m = (struct spate_ring_shared *)(uintptr_t)sh;

	/* Relaxed: statistics. */
	out->evicted = atomic_load_explicit(&m->health.evicted, memory_order_relaxed);
	out->reaped_readers = atomic_load_explicit(&m->health.reaped_readers, memory_order_relaxed);
	out->reaped_writers = atomic_load_explicit(&m->health.reaped_writers, memory_order_relaxed);
	out->skipped = atomic_load_explicit(&m->health.skipped, memory_order_relaxed);
	out->takeovers = atomic_load_explicit(&m->health.takeovers, memory_order_relaxed);
	out->corrupt = atomic_load_explicit(&m->health.corrupt, memory_order_relaxed);
}

int spate_ring_reader_info(const struct spate_ring *r, uint32_t index,
			   struct spate_ring_reader_info *out)
{
	if (index >= SPATE_RING_MAX_READERS)
		return -EINVAL;
	struct spate_ring_rslot *s = &r->sh->readers[index];
	/* Relaxed: a monitor's reading; the fields may belong to successive
	 * holders. */
	out->pos = atomic_load_explicit(&s->pos, memory_order_relaxed);
	out->seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
	out->state = SPATE_RING_OWN_STATE(atomic_load_explicit(&s->own, memory_order_relaxed));
	if (out->state > SPATE_RING_SLOT_EVICTED)
		out->state = SPATE_RING_SLOT_FREE; /* being freed */
	out->flags = atomic_load_explicit(&s->flags, memory_order_relaxed);
	out->pid = atomic_load_explicit(&s->lease.pid, memory_order_relaxed);
	return 0;
}

int spate_ring_oldest(const struct spate_ring *r, uint64_t *seq, uint64_t *ts)
{
	struct spate_ring_shared *sh = r->sh;

	for (int tries = 0; tries < 4; tries++) {
		/* Acquire (both): pair with the writers' store of trim and the
		 * publisher's of tail; the header loads below are then of
		 * published batches. */
		uint64_t trim = atomic_load_explicit(&sh->prod.trim, memory_order_acquire);
		uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
		/* Relaxed: informational, read after tail. */
		uint64_t tseq = atomic_load_explicit(&sh->pub.tail_seq, memory_order_relaxed);
		uint64_t pos = trim;

		*seq = tseq;
		*ts = 0;
		for (int hop = 0; hop < 4 && pos < tail; hop++) {
			const struct spate_ring_bhdr *h =
				(const struct spate_ring_bhdr *)(const void *)(r->data + (pos & r->mask));
			/* Acquire: pairs with the commit word's release store. */
			uint64_t c = atomic_load_explicit(&h->commit, memory_order_acquire);
			uint64_t len = spate_ring_batch_len_(c, pos, r->cap, tail);
			if (!len)
				break;
			if (c & SPATE_RING_C_NODATA) {
				pos += len;
				continue;
			}
			uint64_t bs = __atomic_load_n(&h->base_seq, __ATOMIC_RELAXED);
			uint64_t bt = __atomic_load_n(&h->ts, __ATOMIC_RELAXED);
			/* Acquire: trim unchanged means no writer has been allowed
			 * over this header while we read it. */
			if (atomic_load_explicit(&sh->prod.trim, memory_order_acquire) == trim) {
				*seq = bs;
				*ts = bt;
				return 0;
			}
			break;
		}
		if (pos >= tail)
			return 0; /* empty */
	}
	*seq = UINT64_MAX;
	*ts = 0;
	return -EAGAIN;
}

int spate_ring_peek_slow_(struct spate_ring_reader *rd, int err)
{
	/* An evicted reader may have read over-written garbage: say evicted.
	 * Relaxed: our own slot's word. */
	if (atomic_load_explicit(&rd->slot->own, memory_order_relaxed) != rd->own)
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
			if (c & SPATE_RING_C_NODATA) {
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

/* The last peek ends where spate_ring_peek_more() marked it (the end of
 * the peek it extended). */
static void peek_end_at_mark(struct spate_ring_reader *rd)
{
	rd->p_pos = rd->m_pos;
	rd->p_seq = rd->m_seq;
	rd->p_bend = rd->m_bend;
	rd->p_bts = rd->m_bts;
	rd->p_left = rd->m_left;
}

int spate_ring_peek_more(struct spate_ring_reader *rd, struct spate_ring_rec *out, unsigned max,
			 uint64_t max_bytes)
{
	uint32_t have = rd->p_count;

	if (!have)
		return spate_ring_peek(rd, out, max, max_bytes);
	/* Mark where the last peek ended, peek from there as if it were the
	 * released position, then put the released position back. */
	uint64_t pos = rd->pos, seq = rd->seq, bend = rd->bend, bts = rd->bts;
	uint32_t left = rd->left;
	rd->m_count = have;
	rd->m_from = pos;
	rd->pos = rd->m_pos = rd->p_pos;
	rd->seq = rd->m_seq = rd->p_seq;
	rd->bend = rd->m_bend = rd->p_bend;
	rd->bts = rd->m_bts = rd->p_bts;
	rd->left = rd->m_left = rd->p_left;
	int n = spate_ring_peek(rd, out, max, max_bytes);
	rd->pos = pos;
	rd->seq = seq;
	rd->bend = bend;
	rd->bts = bts;
	rd->left = left;
	if (n < 0) { /* the records peeked before stay peeked */
		peek_end_at_mark(rd);
		rd->p_count = have;
		return n;
	}
	rd->p_count = have + (uint32_t)n;
	return n;
}

int spate_ring_release_head(struct spate_ring_reader *rd, unsigned n)
{
	uint32_t have = rd->p_count;
	int rc;

	if (n > have)
		return -EINVAL;
	if (n == 0)
		return 0;
	if (n == have) {
		rd->m_count = 0;
		return spate_ring_release(rd, n);
	}
	/* The end of the whole peek, kept for the records after the n. */
	uint64_t e_pos = rd->p_pos, e_seq = rd->p_seq, e_bend = rd->p_bend, e_bts = rd->p_bts;
	uint32_t e_left = rd->p_left;
	if (rd->m_count == n && rd->m_from == rd->pos) {
		peek_end_at_mark(rd);
		rd->p_count = n;
		rc = spate_ring_release(rd, n);
	} else {
		rc = spate_ring_release_partial_(rd, n); /* walks the n records */
	}
	rd->m_count = 0;
	if (rc < 0)
		return rc;
	rd->p_pos = e_pos;
	rd->p_seq = e_seq;
	rd->p_bend = e_bend;
	rd->p_bts = e_bts;
	rd->p_left = e_left;
	rd->p_count = have - n;
	return 0;
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
		/* Relaxed: our own slot's word, written only by us and an evicter. */
		if (atomic_load_explicit(&rd->slot->own, memory_order_relaxed) != rd->own)
			return -EPIPE;
		/* Relaxed: a flag set once; nothing more will be published. */
		if (atomic_load_explicit(&sh->meta.retired, memory_order_relaxed))
			return -ESTALE;
		uint64_t now = spate_mono_ns();
		if (!deadline)
			deadline = deadline_of(timeout_ns);
		else if (now >= deadline)
			return -ETIMEDOUT;
		/* Renew our lease while idle (it matters to observers in another
		 * PID namespace), well within its bound. */
		if (now - rd->beat_ns > SPATE_RING_LEASE_NS / 4)
			spate_ring_reader_beat(rd);
		if (rd->wait == SPATE_RING_WAIT_BUSY || spins++ < SPIN_BEFORE_SLEEP) {
			spate_cpu_relax();
			continue;
		}
		if (rd->wait == SPATE_RING_WAIT_YIELD) {
			sched_yield();
			continue;
		}
		/* Wake up to beat, at the latest. */
		uint64_t nap = now + SPATE_RING_LEASE_NS / 4;
		/* Seq_cst: Dekker pair with the seq_cst tail store and rd_waiters
		 * load in commit: either the writer sees us, or we see its tail. */
		atomic_fetch_add_explicit(&sh->pub.rd_waiters, 1, memory_order_seq_cst);
		t = atomic_load_explicit(&sh->pub.tail, memory_order_seq_cst);
		if (t == rd->pos)
			futex_sleep(low_half(&sh->pub.tail), (uint32_t)t, nap < deadline ? nap : deadline);
		atomic_fetch_sub_explicit(&sh->pub.rd_waiters, 1, memory_order_relaxed);
	}
}

/* ------------------------------------------------------------------------ */
/* Kept gating readers and retired rings (restart branch; see ring.h)       */
/* ------------------------------------------------------------------------ */

int spate_ring_reader_keep(struct spate_ring_reader *rd)
{
	/* Relaxed: our own slot; reap and evict read it with the slot's word. */
	if (atomic_load_explicit(&rd->slot->own, memory_order_relaxed) != rd->own)
		return -EPIPE;
	/* Seq_cst: before any later reap or eviction looks at the slot. */
	atomic_fetch_or_explicit(&rd->slot->flags, SPATE_RING_RSLOT_F_KEEP, memory_order_seq_cst);
	return 0;
}

int spate_ring_reader_engine(struct spate_ring_reader *rd)
{
	/* Relaxed: our own slot; evict reads it with the slot's word. */
	if (atomic_load_explicit(&rd->slot->own, memory_order_relaxed) != rd->own)
		return -EPIPE;
	/* Seq_cst: before any later eviction looks at the slot (as keep). */
	atomic_fetch_or_explicit(&rd->slot->flags, SPATE_RING_RSLOT_F_ENGINE, memory_order_seq_cst);
	return 0;
}

void spate_ring_reader_detach(struct spate_ring_reader *rd)
{
	if (!rd)
		return;
	/* Relaxed: our own slot's word; an eviction changed it (as in keep).
	 * An evicted slot gates nothing: closing it is all there is to do. */
	if (atomic_load_explicit(&rd->slot->own, memory_order_relaxed) != rd->own) {
		spate_ring_reader_close(rd);
		return;
	}
	/* Relaxed: informational, read by an adopter after the pos below. */
	atomic_store_explicit(&rd->slot->seq, rd->seq, memory_order_relaxed);
	/* Release: pairs with the acquire load of pos in find_kept/adopt (the
	 * seq above goes with it) and, as in spate_ring_release(), with the
	 * writers' acquire of reader positions. */
	atomic_store_explicit(&rd->slot->pos, rd->pos, memory_order_seq_cst);
	/* Seq_cst, after pos: a reap that sees the flag frees a slot whose
	 * position is final. Relaxed load: our own slot's flag, set by us. */
	if (atomic_load_explicit(&rd->slot->flags, memory_order_relaxed) & SPATE_RING_RSLOT_F_ENGINE)
		atomic_fetch_or_explicit(&rd->slot->flags, SPATE_RING_RSLOT_F_DETACHED,
					 memory_order_seq_cst);
	if (!(rd->flags & SPATE_RING_F_NO_BLOCKING))
		spate_ring_wake_writers_(rd->ring);
	free(rd);
}

/* A kept, active slot's own word, released position and sequence number. */
static int kept_slot(struct spate_ring_shared *sh, uint32_t i, uint64_t *own, uint64_t *pos,
		     uint64_t *seq)
{
	struct spate_ring_rslot *s = &sh->readers[i];
	/* Acquire: the lease read by the caller is this holder's. */
	*own = atomic_load_explicit(&s->own, memory_order_acquire);
	/* Relaxed: the word and flag decide; the CAS in adopt settles races. */
	if (SPATE_RING_OWN_STATE(*own) != SPATE_RING_SLOT_ACTIVE ||
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
	uint64_t own;

	for (uint32_t i = 0; i < SPATE_RING_MAX_READERS; i++)
		if (kept_slot(r->sh, i, &own, pos, seq)) {
			*index = i;
			return 0;
		}
	return -ENOENT;
}

int spate_ring_reader_adopt(struct spate_ring *r, uint32_t index, enum spate_ring_wait wait,
			    struct spate_ring_reader **out)
{
	struct spate_ring_shared *sh = r->sh;
	uint64_t pos, seq, own;

	if (index >= SPATE_RING_MAX_READERS || wait > SPATE_RING_WAIT_BLOCK || !out)
		return -EINVAL;
	if (wait == SPATE_RING_WAIT_BLOCK && (r->flags & SPATE_RING_F_NO_BLOCKING))
		return -ENOTSUP;
	struct spate_ring_rslot *slot = &sh->readers[index];
	if (!kept_slot(sh, index, &own, &pos, &seq))
		return -ENOENT;
	/* Acquire: pairs with the release store of pid in lease_write(). */
	if (atomic_load_explicit(&slot->lease.pid, memory_order_acquire) != (uint32_t)getpid() &&
	    lease_alive(&slot->lease, spate_proc_pidns(), spate_mono_ns()))
		return -EBUSY;
	/* Acquire: pairs with the release store of tail; the slot held writers
	 * back, so everything from pos to tail is intact. */
	uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_acquire);
	if (pos > tail || tail - pos > r->cap || (pos & 7))
		return -EBADMSG;
	struct spate_ring_reader *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	/* Acq_rel: one adopter wins (a new generation, still ACTIVE); ours is
	 * the slot from here on. */
	uint64_t nv = own + SPATE_RING_OWN_GEN1;
	if (!atomic_compare_exchange_strong_explicit(&slot->own, &own, nv, memory_order_acq_rel,
						     memory_order_relaxed)) {
		free(rd);
		return -EBUSY;
	}
	lease_write(&slot->lease);
	/* Seq_cst: the slot gates writers again if a reaper of an older
	 * version cleared the bit (ours keeps it). */
	atomic_fetch_or_explicit(&sh->pub.reader_mask, 1ull << index, memory_order_seq_cst);
	reader_handle_init(rd, r, index, nv, wait, pos);
	rd->bend = pos;
	rd->seq = seq;
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
		/* Padding and skipped claims: peek_batches never returned them. */
		if ((c & SPATE_RING_C_NODATA) || h->count == 0)
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
	uint64_t myns = spate_proc_pidns(), now = spate_mono_ns();
	unsigned n = 0;

	for (uint32_t i = 0; i < SPATE_RING_MAX_READERS + SPATE_RING_MAX_WRITERS; i++) {
		int wr = i >= SPATE_RING_MAX_READERS;
		uint32_t k = wr ? i - SPATE_RING_MAX_READERS : i;
		struct spate_ring_lease *l;
		uint32_t fl = 0;
		uint64_t v;
		/* Acquire: the lease read next is this holder's. A snapshot for
		 * a decision reap makes again. */
		if (wr) {
			v = atomic_load_explicit(&sh->writers[k].own, memory_order_acquire);
			l = &sh->writers[k].lease;
		} else {
			v = atomic_load_explicit(&sh->readers[k].own, memory_order_acquire);
			l = &sh->readers[k].lease;
			/* Relaxed: as reap reads it. */
			fl = atomic_load_explicit(&sh->readers[k].flags, memory_order_relaxed);
			if (fl & SPATE_RING_RSLOT_F_KEEP)
				continue;
		}
		uint32_t st = SPATE_RING_OWN_STATE(v);
		if (st != SPATE_RING_SLOT_ACTIVE && st != SPATE_RING_SLOT_EVICTED)
			continue;
		/* Acquire: pairs with the release store of pid in lease_write();
		 * a pid of ours is alive without a look at /proc. A reader an
		 * engine left behind is reapable whoever holds it. */
		uint32_t pid = atomic_load_explicit(&l->pid, memory_order_acquire);
		if ((fl & SPATE_RING_RSLOT_F_LEFT_) != SPATE_RING_RSLOT_F_LEFT_ &&
		    ((pid && pid == self) || lease_alive(l, myns, now)))
			continue;
		if (n < max)
			out[n] = (struct spate_ring_dead){ .index = k, .pid = pid, .writer = (uint32_t)wr };
		n++;
	}
	return (int)n;
}
