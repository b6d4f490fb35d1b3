/* SPDX-License-Identifier: MIT */
/*
 * stream.c - streams of shard rings in one named region, partition keys,
 * producers (PutRecord / PutRecords) and the checkpoint table.
 *
 * Design. A stream `<bus>.<stream>` is one spate_shm region whose user area
 * holds, at offsets recorded in a versioned header (never pointers):
 *
 *     0            struct spate_stream_hdr (magic, version, names, layout)
 *     rings_off    ring 0 | ring 1 | ... | ring N-1, ring_stride bytes each
 *     ckpt_off     SPATE_STREAM_MAX_CONSUMERS checkpoint entries,
 *                  ckpt_stride bytes each (128-byte aligned)
 *     dur_off      one struct spate_stream_dur line per shard: what the
 *                  persister has written and made durable
 *
 * The creator formats every ring (spate_ring_format), opens them, and stores
 * the header's `ready` last with release; an attacher loads it with acquire,
 * copies the header once into a local, validates every field of the copy
 * (sizes, offsets, strides, overflow, names) against the region's user size
 * and only then opens every ring with spate_ring_open_mem(), which validates
 * each ring's own control block. A corrupt region is an error code, never a
 * crash; the handle keeps only validated local copies of the layout.
 *
 * A key maps to a shard through the high 32 bits of XXH3-64 of its bytes;
 * shard i owns the hash range [i * 2^32 / N, (i + 1) * 2^32 / N). A producer
 * is one ring writer per shard; spate_put_batch() groups the request by
 * shard with a stable counting sort (request order kept within a shard) and
 * writes each shard's records as one reservation and one commit, split only
 * past half the ring or SPATE_RING_MAX_BATCH_RECORDS records.
 *
 * The checkpoint table is laid out here and used by checkpoint.c.
 *
 * Memory orders (each pair is also named at its code):
 *   - hdr.ready: release store in create / acquire load in attach.
 * *   - dur written_seq/durable_seq/error: relaxed stores by the one persister,
 *     then a seq_cst futex bump / seq_cst waiters load (Dekker pair with the
 *     waiter's seq_cst waiters increment and futex load); waiters load them
 *     with acquire, pairing with the persister's release store of durable_seq
 *     (the log write happened before).
 *   - Ring publication and space are the ring's (ring.h, architecture.md).
 *
 * Trade-offs. Rings are 4 KiB aligned and strided by spate_ring_memsize()
 * rounded to 4 KiB, even on hugetlbfs: rounding each ring to 2 MiB would
 * cost up to 32 times the memory of a 64 KiB ring, and packing loses
 * nothing, since the region is mapped with 2 MiB pages as a whole (the TLB
 * sees fewer pages when rings are packed) and each ring keeps its hot lines
 * 128 bytes apart inside its own control block. Producer scratch for
 * put_batch (per-shard counts, index array) lives in the producer, which
 * belongs to one thread: no allocation per call once it has grown to the
 * largest request.
 *
 * Limits. 1..SPATE_STREAM_MAX_SHARDS shards, SPATE_STREAM_MAX_CONSUMERS
 * checkpoint entries (never freed), `<bus>.<stream>` within
 * SPATE_SHM_NAME_MAX characters. The shard count is fixed at creation (no
 * resharding).
 */
#include "spate_config.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "rings/proc.h"
#include "spate/ring.h"
#include "spate/shm.h"
#include "spate/stats.h"
#include "spate/stream.h"
#include "engine/stream_pvt.h"

/* The header crosses processes and builds: its layout and the durability
 * values it stores are fixed (bump SPATE_STREAM_LAYOUT_VERSION to change
 * them). */
_Static_assert(sizeof(struct spate_stream_hdr) == 192, "stream header layout");
_Static_assert(offsetof(struct spate_stream_hdr, durability) == 156 &&
		       offsetof(struct spate_stream_hdr, incarnation) == 168 &&
		       offsetof(struct spate_stream_hdr, engine_pid) == 176 &&
		       offsetof(struct spate_stream_hdr, engine_start) == 184,
	       "stream header layout");
_Static_assert(sizeof(struct spate_stream_dur) == 128, "one line per shard");
_Static_assert(sizeof(struct spate_stream_ckpt) == 56, "checkpoint entry header");
_Static_assert(SPATE_DURABILITY_OFF == 0 && SPATE_DURABILITY_NONE == 1 &&
		       SPATE_DURABILITY_INTERVAL == 2 && SPATE_DURABILITY_ALWAYS == 3,
	       "durability values are stored in stream regions");

/* Alignment of the rings (and of their stride) and of checkpoint entries. */
#define STREAM_RING_ALIGN 4096u
#define STREAM_CKPT_ALIGN 128u

struct spate_stream {
	struct spate_shm *shm;
	uint8_t *base;               /* user area */
	uint32_t shards;
	uint32_t max_consumers;
	uint64_t ckpt_off;           /* validated copies of the header */
	uint64_t ckpt_stride;
	uint64_t dur_off;
	enum spate_durability durability;
	uint64_t incarnation;
	struct spate_stream_hdr *hdr; /* in the region: only its atomic engine fields are used */
	char bus[SPATE_STREAM_NAME_MAX + 1];
	char name[SPATE_STREAM_NAME_MAX + 1];
	struct spate_ring *rings[];  /* [shards], opened on the region's memory */
};

struct spate_producer {
	struct spate_stream *s;
	uint32_t shards;
	uint32_t *cnt;               /* [shards + 1] put_batch counting sort */
	bool durable_wait;           /* an `always` stream, and no NO_DURABLE_WAIT */
	uint32_t *order;             /* [order_cap] put_batch request indices */
	unsigned order_cap;
	struct spate_stats_shard *stats; /* [shards] producer lines in <bus>..stats, or NULL */
	struct spate_ring_writer *w[]; /* [shards] */
};

/* ------------------------------------------------------------------------ */
/* Names and layout                                                         */
/* ------------------------------------------------------------------------ */

int spate_stream_name_len(const char *s, int dot)
{
	size_t i;

	if (!s)
		return -EINVAL;
	for (i = 0; s[i]; i++) {
		char c = s[i];
		if (i >= SPATE_STREAM_NAME_MAX)
			return -EINVAL;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || (dot && c == '.')))
			return -EINVAL;
	}
	return i ? (int)i : -EINVAL;
}

/* The region name "<bus>.<stream>" into @p buf (SPATE_SHM_NAME_MAX + 1 bytes). */
static int region_name(const char *bus, const char *name, char *buf)
{
	int bl = spate_stream_name_len(bus, 0), nl = spate_stream_name_len(name, 0);

	if (bl < 0 || nl < 0 || bl + 1 + nl > SPATE_SHM_NAME_MAX)
		return -EINVAL;
	snprintf(buf, SPATE_SHM_NAME_MAX + 1, "%s.%s", bus, name);
	return 0;
}

/* A random, non-zero incarnation id: the kernel's CSPRNG, else clock and pid
 * mixed (two creations of one stream never share one in practice). */
static uint64_t new_incarnation(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		v = XXH3_64bits_withSeed(&ts, sizeof(ts), (uint64_t)getpid() << 32 ^ spate_mono_ns());
	}
	return v ? v : 1;
}

static uint64_t round_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

/* Bytes one checkpoint entry needs for @p shards shards. */
static uint64_t ckpt_bytes(uint32_t shards)
{
	return sizeof(struct spate_stream_ckpt) + (uint64_t)shards * sizeof(uint64_t);
}

/* Validate the layout fields of a header copy against the user area size. */
static int check_layout(const struct spate_stream_hdr *h, uint64_t user_size)
{
	uint64_t t, rings_end, ckpt_end;

	if (h->hdr_size != sizeof(*h))
		return -EBADMSG;
	if (!memchr(h->bus, '\0', sizeof(h->bus)) || !memchr(h->name, '\0', sizeof(h->name)) ||
	    spate_stream_name_len(h->bus, 0) < 0 || spate_stream_name_len(h->name, 0) < 0)
		return -EBADMSG;
	if (h->shards == 0 || h->shards > SPATE_STREAM_MAX_SHARDS || h->max_consumers == 0 ||
	    h->max_consumers > SPATE_STREAM_MAX_CONSUMERS)
		return -EBADMSG;
	if (h->rings_off < sizeof(*h) || h->rings_off % STREAM_RING_ALIGN ||
	    h->ring_stride < sizeof(struct spate_ring_shared) || h->ring_stride % STREAM_RING_ALIGN)
		return -EBADMSG;
	if (__builtin_mul_overflow(h->ring_stride, (uint64_t)h->shards, &t) ||
	    __builtin_add_overflow(t, h->rings_off, &rings_end))
		return -EBADMSG;
	if (h->ckpt_off < rings_end || h->ckpt_off % STREAM_CKPT_ALIGN ||
	    h->ckpt_stride < ckpt_bytes(h->shards) || h->ckpt_stride % STREAM_CKPT_ALIGN)
		return -EBADMSG;
	if (__builtin_mul_overflow(h->ckpt_stride, (uint64_t)h->max_consumers, &t) ||
	    __builtin_add_overflow(t, h->ckpt_off, &ckpt_end))
		return -EBADMSG;
	if (h->durability > SPATE_DURABILITY_ALWAYS || h->dur_off < ckpt_end ||
	    h->dur_off % STREAM_CKPT_ALIGN ||
	    h->dur_off + (uint64_t)h->shards * sizeof(struct spate_stream_dur) > h->total_size)
		return -EBADMSG;
	if (ckpt_end > h->total_size || h->total_size > user_size)
		return -EBADMSG;
	if (h->incarnation == 0)
		return -EBADMSG;
	return 0;
}

/*
 * Build a handle from a validated header copy @p h: open every ring on the
 * region's memory and check they agree with each other.
 */
static int stream_build(struct spate_shm *shm, const struct spate_stream_hdr *h,
			struct spate_stream **out)
{
	struct spate_stream *s;
	uint32_t i;
	int rc;

	s = calloc(1, sizeof(*s) + h->shards * sizeof(s->rings[0]));
	if (!s)
		return -ENOMEM;
	s->shm = shm;
	s->base = spate_shm_user(shm);
	s->shards = h->shards;
	s->max_consumers = h->max_consumers;
	s->ckpt_off = h->ckpt_off;
	s->ckpt_stride = h->ckpt_stride;
	s->dur_off = h->dur_off;
	s->durability = (enum spate_durability)h->durability; /* checked: check_layout */
	s->incarnation = h->incarnation;
	s->hdr = (struct spate_stream_hdr *)(void *)s->base;
	memcpy(s->bus, h->bus, sizeof(s->bus));
	memcpy(s->name, h->name, sizeof(s->name));
	for (i = 0; i < h->shards; i++) {
		rc = spate_ring_open_mem(s->base + h->rings_off + i * h->ring_stride,
					 (size_t)h->ring_stride, &s->rings[i]);
		if (rc < 0)
			goto err_rings;
		/* Every shard's ring was formatted with the same parameters. */
		if (i && (s->rings[i]->cap != s->rings[0]->cap ||
			  s->rings[i]->flags != s->rings[0]->flags ||
			  s->rings[i]->max_record != s->rings[0]->max_record)) {
			i++;
			rc = -EBADMSG;
			goto err_rings;
		}
	}
	*out = s;
	return 0;
err_rings:
	while (i--)
		spate_ring_close(s->rings[i]);
	free(s);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Streams                                                                  */
/* ------------------------------------------------------------------------ */

int spate_stream_create(const char *bus, const char *name, const struct spate_stream_params *p,
			struct spate_stream **out)
{
	char rname[SPATE_SHM_NAME_MAX + 1];
	struct spate_stream_hdr h, *sh;
	struct spate_shm *shm;
	struct spate_stream *s;
	size_t msz;
	uint32_t i;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	rc = region_name(bus, name, rname);
	if (rc < 0)
		return rc;
	if (!p || p->shards == 0 || p->shards > SPATE_STREAM_MAX_SHARDS ||
	    p->durability > SPATE_DURABILITY_ALWAYS)
		return -EINVAL;
	struct spate_ring_params rp = {
		.capacity = p->ring_size, .max_record = p->max_record, .flags = p->ring_flags,
	};
	msz = spate_ring_memsize(&rp);
	if (!msz)
		return -EINVAL;

	memset(&h, 0, sizeof(h));
	h.magic = SPATE_STREAM_MAGIC;
	h.layout_version = SPATE_STREAM_LAYOUT_VERSION;
	h.hdr_size = sizeof(h);
	strcpy(h.bus, bus);
	strcpy(h.name, name);
	h.shards = p->shards;
	h.max_consumers = SPATE_STREAM_MAX_CONSUMERS;
	h.rings_off = round_up(sizeof(h), STREAM_RING_ALIGN);
	h.ring_stride = round_up(msz, STREAM_RING_ALIGN);
	h.ckpt_off = round_up(h.rings_off + h.shards * h.ring_stride, STREAM_CKPT_ALIGN);
	h.ckpt_stride = round_up(ckpt_bytes(h.shards), STREAM_CKPT_ALIGN);
	h.durability = p->durability;
	h.dur_off = round_up(h.ckpt_off + h.max_consumers * h.ckpt_stride, STREAM_CKPT_ALIGN);
	h.total_size = h.dur_off + h.shards * sizeof(struct spate_stream_dur);
	h.incarnation = new_incarnation();

	struct spate_shm_opts o = { .flags = p->shm_flags, .mode = p->mode, .gid = (gid_t)-1 };
	rc = spate_shm_create(rname, (size_t)h.total_size, &o, &shm);
	if (rc < 0)
		return rc;
	rc = check_layout(&h, spate_shm_user_size(shm)); /* our own arithmetic, checked */
	if (rc < 0)
		goto err_shm;
	sh = spate_shm_user(shm);
	memcpy(sh, &h, sizeof(h));
	for (i = 0; i < h.shards; i++) {
		rp.first_seq = p->first_seq ? p->first_seq[i] : 0;
		rc = spate_ring_format((uint8_t *)sh + h.rings_off + i * h.ring_stride,
				       (size_t)h.ring_stride, &rp);
		if (rc < 0)
			goto err_shm;
		struct spate_stream_dur *d =
			(struct spate_stream_dur *)((uint8_t *)sh + h.dur_off) + i;
		/* Relaxed: nobody sees the region before the release of ready. */
		atomic_store_explicit(&d->written_seq, rp.first_seq, memory_order_relaxed);
		atomic_store_explicit(&d->durable_seq, rp.first_seq, memory_order_relaxed);
		d->first_seq = rp.first_seq;
	}
	/* The checkpoint table is all FREE: the region is created zeroed. */
	rc = stream_build(shm, &h, &s);
	if (rc < 0)
		goto err_shm;
	/* Release: pairs with the acquire load of ready in spate_stream_attach():
	 * the header, the formatted rings and the table are complete. */
	__atomic_store_n(&sh->ready, SPATE_STREAM_READY, __ATOMIC_RELEASE);
	*out = s;
	return 0;
err_shm:
	spate_shm_detach(shm);
	spate_shm_unlink(rname);
	return rc;
}

int spate_stream_attach(const char *bus, const char *name, struct spate_stream **out)
{
	char rname[SPATE_SHM_NAME_MAX + 1];
	struct spate_stream_hdr h;
	const struct spate_stream_hdr *sh;
	struct spate_shm *shm;
	uint32_t ready;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	rc = region_name(bus, name, rname);
	if (rc < 0)
		return rc;
	rc = spate_shm_attach(rname, 0, &shm);
	if (rc < 0)
		return rc;
	if (spate_shm_user_size(shm) < sizeof(h)) {
		rc = -EBADMSG;
		goto err_shm;
	}
	sh = spate_shm_user(shm);
	/* Acquire: pairs with the release store of ready in spate_stream_create(). */
	ready = __atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE);
	/* Copy once: every check and every later use reads the copy, so a
	 * peer scribbling on the header cannot change a value once checked. */
	memcpy(&h, sh, sizeof(h));
	if (ready != SPATE_STREAM_READY) {
		/* A zeroed header is a creator still at work. */
		rc = (h.magic == SPATE_STREAM_MAGIC || h.magic == 0) ? -EAGAIN : -EBADMSG;
		goto err_shm;
	}
	if (h.magic != SPATE_STREAM_MAGIC) {
		rc = -EBADMSG;
		goto err_shm;
	}
	if (h.layout_version != SPATE_STREAM_LAYOUT_VERSION) {
		rc = -EPROTO;
		goto err_shm;
	}
	rc = check_layout(&h, spate_shm_user_size(shm));
	if (rc < 0)
		goto err_shm;
	if (strcmp(h.bus, bus) != 0 || strcmp(h.name, name) != 0) {
		rc = -EBADMSG;
		goto err_shm;
	}
	rc = stream_build(shm, &h, out);
	if (rc < 0)
		goto err_shm;
	return 0;
err_shm:
	spate_shm_detach(shm);
	return rc;
}

void spate_stream_close(struct spate_stream *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; i < s->shards; i++)
		spate_ring_close(s->rings[i]); /* the rings do not own the region */
	spate_shm_detach(s->shm);
	free(s);
}

int spate_stream_unlink(const char *bus, const char *name)
{
	char rname[SPATE_SHM_NAME_MAX + 1];
	int rc = region_name(bus, name, rname);

	return rc < 0 ? rc : spate_shm_unlink(rname);
}

uint32_t spate_stream_shards(const struct spate_stream *s)
{
	return s->shards;
}

const char *spate_stream_name(const struct spate_stream *s)
{
	return s->name;
}

const char *spate_stream_bus(const struct spate_stream *s)
{
	return s->bus;
}

struct spate_ring *spate_stream_ring(const struct spate_stream *s, uint32_t shard)
{
	return shard < s->shards ? s->rings[shard] : NULL;
}

struct spate_shm *spate_stream_shm(const struct spate_stream *s)
{
	return s->shm;
}

/* ------------------------------------------------------------------------ */
/* Durability                                                               */
/* ------------------------------------------------------------------------ */

enum spate_durability spate_stream_durability(const struct spate_stream *s)
{
	return s->durability;
}

uint64_t spate_stream_incarnation(const struct spate_stream *s)
{
	return s->incarnation;
}

void spate_stream_engine_claim(struct spate_stream *s)
{
	pid_t me = getpid();

	/* Relaxed: liveness hints, like the persister's (dur_claim): readers
	 * check the pid against its start time, and a torn pair reads as a
	 * dead engine for one look at most. Start time first, pid last. An
	 * engine that stops leaves them: its region then reads as "the engine
	 * is gone", which is what a later producer must hear. */
	atomic_store_explicit(&s->hdr->engine_start, spate_proc_start_time(me), memory_order_relaxed);
	atomic_store_explicit(&s->hdr->engine_pid, (uint32_t)me, memory_order_relaxed);
}

int spate_stream_engine(const struct spate_stream *s, pid_t *pid)
{
	/* Relaxed: see spate_stream_engine_claim. */
	uint32_t p = atomic_load_explicit(&s->hdr->engine_pid, memory_order_relaxed);
	uint64_t start = atomic_load_explicit(&s->hdr->engine_start, memory_order_relaxed);

	if (pid)
		*pid = (pid_t)p;
	if (!p)
		return 0;
	return spate_proc_alive((pid_t)p, start) ? 1 : -ESRCH;
}

struct spate_stream_dur *spate_stream_dur(const struct spate_stream *s, uint32_t shard)
{
	if (shard >= s->shards)
		return NULL;
	return (struct spate_stream_dur *)(s->base + s->dur_off) + shard;
}

static long dur_futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	/* Shared futex (no PRIVATE flag): producers may be in other processes. */
	return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

void spate_stream_dur_claim(struct spate_stream *s, uint32_t shard, int claim)
{
	struct spate_stream_dur *d = spate_stream_dur(s, shard);

	if (!d)
		return;
	/* Relaxed: liveness hints for waiters, read with the futex protocol
	 * below (a waiter re-checks them every STREAM_DUR_POLL_NS). */
	atomic_store_explicit(&d->persister_start,
			      claim ? spate_proc_start_time(getpid()) : 0, memory_order_relaxed);
	atomic_store_explicit(&d->persister_pid, claim ? (uint32_t)getpid() : 0,
			      memory_order_relaxed);
	atomic_fetch_add_explicit(&d->futex, 1, memory_order_seq_cst);
	dur_futex(&d->futex, FUTEX_WAKE, INT32_MAX, NULL);
}

void spate_stream_dur_publish(struct spate_stream_dur *d, uint64_t written, uint64_t durable,
			      int error)
{
	/* Relaxed: only this persister writes them; readers that act on
	 * durable_seq load it with acquire, pairing with the release here. */
	atomic_store_explicit(&d->written_seq, written, memory_order_relaxed);
	atomic_store_explicit(&d->error, error, memory_order_relaxed);
	/* Release: pairs with the acquire load in spate_stream_wait_durable():
	 * the log writes and syncs happened before. */
	atomic_store_explicit(&d->durable_seq, durable, memory_order_release);
	/* Seq_cst: Dekker pair with the waiter's seq_cst waiters increment and
	 * futex load, so a waiter either sees the new value or is woken. */
	atomic_fetch_add_explicit(&d->futex, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&d->waiters, memory_order_seq_cst))
		dur_futex(&d->futex, FUTEX_WAKE, INT32_MAX, NULL);
}

/* How often a sleeping waiter re-checks that the persister lives. */
#define STREAM_DUR_POLL_NS 100000000ull

int spate_stream_wait_durable(struct spate_stream *s, uint32_t shard, uint64_t seq,
			      uint64_t timeout_ns)
{
	struct spate_stream_dur *d;
	uint64_t start = 0, deadline = UINT64_MAX;

	if (!s || shard >= s->shards)
		return -EINVAL;
	if (s->durability == SPATE_DURABILITY_OFF)
		return -ENOTSUP;
	d = spate_stream_dur(s, shard);
	for (unsigned spins = 0;; spins++) {
		/* Acquire: pairs with the release store in dur_publish(). */
		if (atomic_load_explicit(&d->durable_seq, memory_order_acquire) > seq)
			return 0;
		/* Relaxed: an error is a hint published with the futex bump;
		 * durable_seq (acquire, above) is what success rests on. */
		int err = atomic_load_explicit(&d->error, memory_order_relaxed);
		if (err)
			return err;
		if (spins < 64) {
			spate_cpu_relax();
			continue;
		}
		uint64_t now = spate_mono_ns();
		if (!start) {
			start = now;
			if (timeout_ns != UINT64_MAX)
				deadline = now + timeout_ns;
		}
		if (now >= deadline)
			return -ETIMEDOUT;
		/* Relaxed: liveness hint (see dur_claim). */
		uint32_t pid = atomic_load_explicit(&d->persister_pid, memory_order_relaxed);
		if (!pid ||
		    !spate_proc_alive((pid_t)pid, atomic_load_explicit(&d->persister_start,
								       memory_order_relaxed)))
			return -ENOTCONN;
		/* Seq_cst: Dekker pair with dur_publish (see there). */
		atomic_fetch_add_explicit(&d->waiters, 1, memory_order_seq_cst);
		uint32_t v = atomic_load_explicit(&d->futex, memory_order_seq_cst);
		if (atomic_load_explicit(&d->durable_seq, memory_order_seq_cst) <= seq &&
		    !atomic_load_explicit(&d->error, memory_order_seq_cst)) {
			uint64_t nap = deadline - now < STREAM_DUR_POLL_NS ? deadline - now
									    : STREAM_DUR_POLL_NS;
			struct timespec ts = { .tv_sec = (time_t)(nap / 1000000000ull),
					       .tv_nsec = (long)(nap % 1000000000ull) };
			dur_futex(&d->futex, FUTEX_WAIT, v, &ts);
		}
		atomic_fetch_sub_explicit(&d->waiters, 1, memory_order_seq_cst);
	}
}

uint32_t spate_key_hash(const void *key, size_t len)
{
	return (uint32_t)(XXH3_64bits(key, len) >> 32);
}

/* ------------------------------------------------------------------------ */
/* The checkpoint table's place (its entries belong to checkpoint.c)        */
/* ------------------------------------------------------------------------ */

void spate_stream_table_of(const struct spate_stream *s, struct spate_stream_table *t)
{
	t->base = s->base + s->ckpt_off;
	t->stride = s->ckpt_stride;
	t->entries = s->max_consumers;
	t->shards = s->shards;
}

/* ------------------------------------------------------------------------ */
/* Producers                                                                */
/* ------------------------------------------------------------------------ */

/* Initial put_batch index capacity: requests up to this size never allocate. */
#define PRODUCER_ORDER_INIT 512u

int spate_producer_open(struct spate_stream *s, enum spate_ring_wait wait, uint32_t flags,
			struct spate_producer **out)
{
	struct spate_producer *p;
	uint32_t i;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!s || (flags & ~(SPATE_PRODUCER_F_FAIL_FULL | SPATE_PRODUCER_F_WAIT_FULL |
			     SPATE_PRODUCER_F_NO_DURABLE_WAIT)) ||
	    ((flags & SPATE_PRODUCER_F_FAIL_FULL) && (flags & SPATE_PRODUCER_F_WAIT_FULL)))
		return -EINVAL;
	p = calloc(1, sizeof(*p) + s->shards * sizeof(p->w[0]));
	if (!p)
		return -ENOMEM;
	p->s = s;
	p->shards = s->shards;
	p->durable_wait = s->durability == SPATE_DURABILITY_ALWAYS &&
			  !(flags & SPATE_PRODUCER_F_NO_DURABLE_WAIT);
	p->cnt = calloc(s->shards + 1u, sizeof(*p->cnt));
	p->order = malloc(PRODUCER_ORDER_INIT * sizeof(*p->order));
	rc = -ENOMEM;
	if (!p->cnt || !p->order)
		goto err_free;
	p->order_cap = PRODUCER_ORDER_INIT;
	for (i = 0; i < s->shards; i++) {
		rc = spate_ring_writer_open(s->rings[i], wait, &p->w[i]);
		if (rc < 0)
			goto err_writers;
		/* The full policy is a per-handle copy of the ring's flag. */
		if (flags & SPATE_PRODUCER_F_FAIL_FULL)
			p->w[i]->flags &= ~SPATE_RING_F_FULL_WAIT;
		else if (flags & SPATE_PRODUCER_F_WAIT_FULL)
			p->w[i]->flags |= SPATE_RING_F_FULL_WAIT;
	}
	*out = p;
	return 0;
err_writers:
	while (i--)
		spate_ring_writer_close(p->w[i]);
err_free:
	free(p->order);
	free(p->cnt);
	free(p);
	return rc;
}

void spate_producer_close(struct spate_producer *p)
{
	if (!p)
		return;
	for (uint32_t i = 0; i < p->shards; i++)
		spate_ring_writer_close(p->w[i]);
	free(p->order);
	free(p->cnt);
	free(p);
}

struct spate_ring_writer *spate_producer_writer(struct spate_producer *p, uint32_t shard)
{
	return shard < p->shards ? p->w[shard] : NULL;
}

void spate_producer_set_stats(struct spate_producer *p, struct spate_stats_shard *shards)
{
	p->stats = shards;
}

int spate_put_hash(struct spate_producer *p, uint32_t hash, const void *data, size_t len,
		   struct spate_put_result *res)
{
	uint32_t shard = spate_shard_of_hash(hash, p->shards);
	uint64_t seq = 0, full0 = p->w[shard]->full_events;
	int rc = (!data && len) ? -EINVAL : spate_ring_put(p->w[shard], data, len, hash, 0, &seq);

	if (p->stats) /* counters region, once per batch */
		spate_stats_shard_put(&p->stats[shard], rc == -EAGAIN || rc == -ETIMEDOUT,
				      p->w[shard]->full_events - full0);
	bool appended = rc == 0;

	if (appended && p->durable_wait)
		rc = spate_stream_wait_durable(p->s, shard, seq, p->w[shard]->timeout_ns);
	if (res) {
		res->error = rc;
		res->shard = shard;
		res->seq = appended ? seq : 0;
	}
	return rc;
}

int spate_put(struct spate_producer *p, const void *key, size_t key_len, const void *data,
	      size_t len, struct spate_put_result *res)
{
	if (!key && key_len) {
		if (res) {
			res->error = -EINVAL;
			res->shard = 0;
			res->seq = 0;
		}
		return -EINVAL;
	}
	return spate_put_hash(p, spate_key_hash(key, key_len), data, len, res);
}

/*
 * Write the @p m records e[idx[0..m)] (all valid, all for writer @p w) in
 * order, as few batches as the ring allows. Their key hashes are in
 * res[].seq (see spate_put_batch). Returns the number that failed.
 */
static int put_shard(struct spate_ring_writer *w, const struct spate_put_entry *e,
		     const uint32_t *idx, unsigned m, struct spate_put_result *res)
{
	const uint64_t max_bytes = (w->cap >> 1) - SPATE_RING_BHDR_SIZE;
	unsigned k = 0;

	while (k < m) {
		uint64_t bytes = 0;
		unsigned j = k;
		while (j < m && j - k < SPATE_RING_MAX_BATCH_RECORDS) {
			uint64_t sz = spate_ring_rec_size(e[idx[j]].len);
			if (bytes + sz > max_bytes)
				break;
			bytes += sz;
			j++;
		}
		/* j > k: every record is at most max_record, which fits a batch
		 * of half the ring (ring.c, max_payload). */
		struct spate_ring_batch b;
		int rc = spate_ring_reserve(w, bytes, &b);
		if (rc < 0) {
			/* Fail the rest of this shard too: writing later records
			 * after a failed one would break per-key order on retry. */
			for (unsigned t = k; t < m; t++) {
				res[idx[t]].error = rc;
				res[idx[t]].seq = 0;
			}
			return (int)(m - k);
		}
		for (unsigned t = k; t < j; t++) {
			const struct spate_put_entry *x = &e[idx[t]];
			/* Cannot fail: the reservation is exactly their size. */
			void *dst = spate_ring_batch_add(&b, x->len, (uint32_t)res[idx[t]].seq, x->type);
			if (x->len)
				memcpy(dst, x->data, x->len);
		}
		uint64_t first = 0;
		spate_ring_commit(w, &b, 0, &first);
		for (unsigned t = k; t < j; t++)
			res[idx[t]].seq = first + (t - k);
		k = j;
	}
	return 0;
}

int spate_put_batch(struct spate_producer *p, const struct spate_put_entry *e, unsigned n,
		    struct spate_put_result *res)
{
	const uint32_t shards = p ? p->shards : 0;
	uint32_t *cnt, *order;
	int failed = 0;

	if (n == 0)
		return 0;
	if (!p || !e || !res)
		return -EINVAL;
	if (n > p->order_cap) {
		uint32_t *o = realloc(p->order, (size_t)n * sizeof(*o));
		if (!o)
			return -ENOMEM;
		p->order = o;
		p->order_cap = n;
	}
	cnt = p->cnt;
	order = p->order;
	memset(cnt, 0, (shards + 1u) * sizeof(*cnt));

	/* Pass 1: shard and validity of each record; count per shard. The key
	 * hash waits in res[i].seq until the record is written. */
	for (unsigned i = 0; i < n; i++) {
		const struct spate_put_entry *x = &e[i];
		uint32_t hash = 0, shard = 0;
		int err = 0;

		if ((x->flags & ~SPATE_PUT_F_HASH) || (!x->data && x->len) ||
		    (!(x->flags & SPATE_PUT_F_HASH) && !x->key && x->key_len)) {
			err = -EINVAL;
		} else {
			hash = (x->flags & SPATE_PUT_F_HASH) ? x->hash
							     : spate_key_hash(x->key, x->key_len);
			shard = spate_shard_of_hash(hash, shards);
			if (x->len > p->w[shard]->ring->max_record)
				err = -EMSGSIZE;
		}
		res[i].error = err;
		res[i].shard = shard;
		res[i].seq = err ? 0 : hash;
		if (err)
			failed++;
		else
			cnt[shard + 1]++;
	}
	/* Pass 2: stable counting sort of the valid records by shard. After
	 * the prefix sums cnt[s] is where shard s starts; after the scatter it
	 * is where shard s ends (= where s + 1 starts). */
	for (uint32_t s = 0; s < shards; s++)
		cnt[s + 1] += cnt[s];
	for (unsigned i = 0; i < n; i++)
		if (!res[i].error)
			order[cnt[res[i].shard]++] = i;
	/* Pass 3: one batch (or as few as fit) per shard touched. */
	uint32_t lo = 0;
	for (uint32_t s = 0; s < shards; s++) {
		uint32_t hi = cnt[s];
		if (hi > lo) {
			uint64_t full0 = p->w[s]->full_events;
			int f = put_shard(p->w[s], e, order + lo, hi - lo, res);
			failed += f;
			if (p->stats) /* counters region, once per shard batch */
				spate_stats_shard_put(&p->stats[s], (uint64_t)f,
						      p->w[s]->full_events - full0);
			/* Durability: the shard's last written record covers the
			 * ones before it (the log is written in order). */
			uint32_t written = hi - lo - (uint32_t)f;
			if (p->durable_wait && written) {
				uint64_t last = res[order[lo + written - 1]].seq;
				int rc = spate_stream_wait_durable(p->s, s, last,
								   p->w[s]->timeout_ns);
				if (rc < 0) {
					for (uint32_t k = lo; k < lo + written; k++)
						res[order[k]].error = rc;
					failed += (int)written;
				}
			}
		}
		lo = hi;
	}
	return failed;
}
