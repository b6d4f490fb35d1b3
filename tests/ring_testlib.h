/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by test_ring.c and test_ring_stress.c (test-only, all static):
 * a fixed-seed PRNG, deterministic self-checking payloads, and in-memory
 * rings placed so that the data area ends right at a PROT_NONE guard page
 * (any read past the end of the ring faults in every build, not only ASan).
 *
 * Payload of record (id, ctr) with length len:
 *   len >= 16: bytes 0..7 = ctr, bytes 8..15 = hash of bytes 16..len-1 seeded
 *              with (id, ctr, len), bytes 16.. = a stream seeded the same way;
 *   len <  16: the first len bytes of a 16-byte function of (id, ctr, len).
 * A reader that knows which (id, ctr) it expects can thus verify any record;
 * the "digest" of a record feeds running checksums compared across threads.
 */
#ifndef SPATE_TESTS_RING_TESTLIB_H
#define SPATE_TESTS_RING_TESTLIB_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "spate/ring.h"

#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

static inline uint64_t tl_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static inline uint64_t tl_rotl(uint64_t x, unsigned r)
{
	return (x << r) | (x >> (64 - r));
}

/* xorshift64* */
struct tl_rng {
	uint64_t s;
};

static inline void tl_rng_seed(struct tl_rng *r, uint64_t seed)
{
	r->s = tl_mix64(seed ^ 0x2545f4914f6cdd1dULL) | 1;
}

static inline uint64_t tl_rng_next(struct tl_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ULL;
}

/* Uniform-ish in [0, n); 0 if n == 0. */
static inline uint64_t tl_rng_below(struct tl_rng *r, uint64_t n)
{
	return n ? (tl_rng_next(r) >> 11) % n : 0;
}

static inline uint64_t tl_hash(const uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = tl_rotl(h ^ w, 27) * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
	}
	if (i < n) {
		uint64_t w = 0;
		memcpy(&w, p + i, n - i);
		h = tl_rotl(h ^ w ^ 0xa5, 31) * 0xbf58476d1ce4e5b9ULL;
	}
	return tl_mix64(h);
}

static inline uint64_t tl_pl_seed(uint32_t id, uint64_t ctr, uint64_t len)
{
	return tl_mix64(((uint64_t)id << 48) ^ (ctr * 0x9e3779b97f4a7c15ULL) ^ (len << 29) ^
			0x5bd1e9955bd1e995ULL);
}

static inline void tl_pl_small(uint8_t out[16], uint64_t s)
{
	uint64_t a = tl_mix64(s + 1), b = tl_mix64(s + 2);
	memcpy(out, &a, 8);
	memcpy(out + 8, &b, 8);
}

/* Fill @p dst with the payload of (id, ctr); returns the record's digest. */
static inline uint64_t tl_pl_fill(void *dst, uint64_t len, uint32_t id, uint64_t ctr)
{
	uint8_t *p = dst;
	uint64_t s = tl_pl_seed(id, ctr, len);

	if (len < 16) {
		uint8_t tmp[16];
		tl_pl_small(tmp, s);
		memcpy(p, tmp, (size_t)len);
		return tl_mix64(s ^ 0x51);
	}
	memcpy(p, &ctr, 8);
	uint64_t x = s;
	uint64_t i = 16;
	for (; i + 8 <= len; i += 8) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t v = x ^ (x >> 29);
		memcpy(p + i, &v, 8);
	}
	if (i < len) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t v = x ^ (x >> 29);
		memcpy(p + i, &v, (size_t)(len - i));
	}
	uint64_t h = tl_hash(p + 16, (size_t)(len - 16), s);
	memcpy(p + 8, &h, 8);
	return h;
}

/* 0 if @p src holds the payload of (id, ctr) (and its digest in *digest);
 * 1 short payload differs, 2 wrong counter, 3 hash mismatch. */
static inline int tl_pl_check(const void *src, uint64_t len, uint32_t id, uint64_t ctr,
			      uint64_t *digest)
{
	const uint8_t *p = src;
	uint64_t s = tl_pl_seed(id, ctr, len);

	if (len < 16) {
		uint8_t tmp[16];
		tl_pl_small(tmp, s);
		if (len && memcmp(p, tmp, (size_t)len) != 0)
			return 1;
		if (digest)
			*digest = tl_mix64(s ^ 0x51);
		return 0;
	}
	uint64_t c, h;
	memcpy(&c, p, 8);
	memcpy(&h, p + 8, 8);
	if (c != ctr)
		return 2;
	if (tl_hash(p + 16, (size_t)(len - 16), s) != h)
		return 3;
	if (digest)
		*digest = h;
	return 0;
}

/* Type byte and key hash of record (id, ctr): the key carries the writer id. */
static inline uint8_t tl_type(uint32_t id, uint64_t ctr)
{
	return (uint8_t)(ctr * 131u + id * 7u + 3u);
}

static inline uint32_t tl_key(uint32_t id, uint64_t ctr)
{
	return (id << 24) | (uint32_t)(ctr & 0xffffffu);
}

/* Running checksum step over one record. */
static inline uint64_t tl_acc(uint64_t acc, uint64_t digest, uint64_t ctr, uint8_t type,
			      uint32_t key, uint64_t len)
{
	return tl_mix64(acc ^ digest ^ (ctr << 1) ^ ((uint64_t)type << 56) ^ ((uint64_t)key << 20) ^
			(len << 9)) + ctr;
}

static inline uint64_t tl_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* SPATE_STRESS_RECORDS, or 10M when unset or unparsable. */
static inline uint64_t tl_stress_records(void)
{
	const char *s = getenv("SPATE_STRESS_RECORDS");
	char *end = NULL;
	unsigned long long v;

	if (!s || !*s)
		return 10000000ull;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || !end || *end || v == 0)
		return 10000000ull;
	return (uint64_t)v;
}

/* ------------------------------------------------------------------------ */
/* In-memory rings with a guard page after the data area                    */
/* ------------------------------------------------------------------------ */

struct tl_mem {
	void *base;     /* mapping start (the ring's control block) */
	size_t map_len; /* including the guard page */
	size_t size;    /* spate_ring_memsize() */
	struct spate_ring *r;
};

/* Map, format and open a ring; returns 0 or a negative errno. */
static inline int tl_mem_ring(struct tl_mem *m, uint64_t cap, uint64_t max_record, uint32_t flags)
{
	struct spate_ring_params p = { .capacity = cap, .max_record = max_record, .flags = flags };
	size_t sz = spate_ring_memsize(&p);
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	int rc;

	memset(m, 0, sizeof(*m));
	if (!sz)
		return -EINVAL;
	size_t rounded = (sz + pg - 1) & ~(pg - 1);
	m->map_len = rounded + pg;
	m->base = mmap(NULL, m->map_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		return -errno;
	}
	if (mprotect((char *)m->base + rounded, pg, PROT_NONE) != 0)
		return -errno;
	/* Put the ring so that its data area ends at the guard page. */
	m->base = (char *)m->base + (rounded - sz);
	m->size = sz;
	rc = spate_ring_format(m->base, sz, &p);
	if (rc < 0)
		return rc;
	return spate_ring_open_mem(m->base, sz, &m->r);
}

static inline void tl_mem_free(struct tl_mem *m)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	spate_ring_close(m->r);
	m->r = NULL;
	if (m->base) {
		size_t rounded = (m->size + pg - 1) & ~(pg - 1);
		munmap((char *)m->base - (rounded - m->size), m->map_len);
	}
	m->base = NULL;
}


/* ------------------------------------------------------------------------ */
/* Streams: a writer of records (id, 0..n-1) and a verifying reader         */
/* ------------------------------------------------------------------------ */

#define TL_MAX_IDS 16

struct tl_stream_opts {
	uint64_t n;            /* records this writer writes / the reader reads in all */
	uint32_t id;           /* writer id (key_hash bits 24..31) */
	uint32_t nids;         /* reader: number of writers */
	uint64_t seed;         /* PRNG seed */
	uint32_t max_len;      /* payload lengths 0..max_len */
	uint32_t max_batch;    /* batch sizes 1..max_batch */
	int single_writer;     /* writer: the ring's only writer since empty (seq == ctr) */
	uint32_t nap_every;    /* sleep 0..nap_us µs after every 1..nap_every records */
	uint32_t nap_us;
	uint64_t stall_every;  /* stall stall_us µs after every 1..stall_every records */
	uint32_t stall_us;
	uint64_t wait_timeout_ns; /* reader: a wait longer than this is a failure */
};

struct tl_stream_res {
	int rc;               /* 0 or a small positive code; see msg */
	char msg[240];
	uint64_t count;       /* records written / read */
	uint64_t last_seq;    /* reader: sequence number of the last record */
	uint64_t acc[TL_MAX_IDS]; /* running checksum per writer id */
	uint64_t next[TL_MAX_IDS];
	uint64_t waits;       /* reader waits / writer naps and stalls */
	uint64_t max_wait_ns; /* longest reader wait that returned data */
};

static inline void tl_nap(struct tl_rng *g, uint64_t ctr, uint64_t *next_nap, uint64_t *next_stall,
			  const struct tl_stream_opts *o, struct tl_stream_res *res)
{
	if (o->nap_every && ctr >= *next_nap) {
		usleep((useconds_t)tl_rng_below(g, (uint64_t)o->nap_us + 1));
		*next_nap = ctr + 1 + tl_rng_below(g, o->nap_every);
		res->waits++;
	}
	if (o->stall_every && ctr >= *next_stall) {
		usleep(o->stall_us);
		*next_stall = ctr + 1 + tl_rng_below(g, o->stall_every);
		res->waits++;
	}
}

/*
 * Write records (o->id, 0..o->n-1) in random batches of 1..max_batch records
 * of 0..max_len bytes, mixing reserve/commit in place, put_batch and put.
 * Checks the first_seq out-parameters (single writer: equal to the counter;
 * multi-writer: strictly increasing). Returns 0 or a code with res->msg.
 */
static inline int tl_write_stream(struct spate_ring_writer *w, const struct tl_stream_opts *o,
				  struct tl_stream_res *res)
{
	struct tl_rng g;
	uint64_t lens[256];
	struct spate_ring_iov iov[256];
	uint32_t maxb = o->max_batch > 256 ? 256 : (o->max_batch ? o->max_batch : 1);
	uint8_t *stage = malloc((size_t)maxb * ((size_t)o->max_len + 1));
	uint64_t ctr = 0, acc = 0, last_fs = 0, next_nap = 0, next_stall = 0;
	int have_fs = 0;

	memset(res, 0, sizeof(*res));
	if (!stage) {
		snprintf(res->msg, sizeof(res->msg), "writer %u: out of memory", o->id);
		return res->rc = 1;
	}
	tl_rng_seed(&g, o->seed ^ ((uint64_t)o->id << 32));
	next_nap = o->nap_every ? 1 + tl_rng_below(&g, o->nap_every) : UINT64_MAX;
	next_stall = o->stall_every ? 1 + tl_rng_below(&g, o->stall_every) : UINT64_MAX;
	while (ctr < o->n) {
		unsigned k = (unsigned)(1 + tl_rng_below(&g, maxb));
		if (k > o->n - ctr)
			k = (unsigned)(o->n - ctr);
		uint64_t bytes = 0;
		for (unsigned i = 0; i < k; i++) {
			lens[i] = tl_rng_below(&g, (uint64_t)o->max_len + 1);
			bytes += spate_ring_rec_size(lens[i]);
		}
		unsigned mode = (unsigned)tl_rng_below(&g, 8);
		int want_fs = o->single_writer || (tl_rng_below(&g, 8) == 0);
		uint64_t fs = UINT64_MAX;
		int rc;
		if (mode == 0) {
			/* put_batch from a staging area */
			uint8_t *p = stage;
			for (unsigned i = 0; i < k; i++) {
				uint64_t c = ctr + i;
				acc = tl_acc(acc, tl_pl_fill(p, lens[i], o->id, c), c, tl_type(o->id, c),
					     tl_key(o->id, c), lens[i]);
				iov[i].data = p;
				iov[i].len = (uint32_t)lens[i];
				iov[i].key_hash = tl_key(o->id, c);
				iov[i].type = tl_type(o->id, c);
				p += lens[i];
			}
			rc = spate_ring_put_batch(w, iov, k, want_fs ? &fs : NULL);
			if (rc != (int)k) {
				snprintf(res->msg, sizeof(res->msg),
					 "writer %u: put_batch(%u) at %llu returned %d", o->id, k,
					 (unsigned long long)ctr, rc);
				free(stage);
				return res->rc = 2;
			}
		} else if (mode == 1 && k == 1) {
			acc = tl_acc(acc, tl_pl_fill(stage, lens[0], o->id, ctr), ctr,
				     tl_type(o->id, ctr), tl_key(o->id, ctr), lens[0]);
			rc = spate_ring_put(w, stage, lens[0], tl_key(o->id, ctr), tl_type(o->id, ctr),
					    want_fs ? &fs : NULL);
			if (rc != 0) {
				snprintf(res->msg, sizeof(res->msg), "writer %u: put at %llu returned %d",
					 o->id, (unsigned long long)ctr, rc);
				free(stage);
				return res->rc = 2;
			}
		} else {
			struct spate_ring_batch b;
			rc = spate_ring_reserve(w, bytes, &b);
			if (rc != 0) {
				snprintf(res->msg, sizeof(res->msg),
					 "writer %u: reserve(%llu) at %llu returned %d", o->id,
					 (unsigned long long)bytes, (unsigned long long)ctr, rc);
				free(stage);
				return res->rc = 2;
			}
			for (unsigned i = 0; i < k; i++) {
				uint64_t c = ctr + i;
				void *p = spate_ring_batch_add(&b, lens[i], tl_key(o->id, c), tl_type(o->id, c));
				if (!p) {
					spate_ring_abort(w, &b);
					snprintf(res->msg, sizeof(res->msg),
						 "writer %u: batch_add %u of %u failed", o->id, i, k);
					free(stage);
					return res->rc = 3;
				}
				acc = tl_acc(acc, tl_pl_fill(p, lens[i], o->id, c), c, tl_type(o->id, c),
					     tl_key(o->id, c), lens[i]);
			}
			uint32_t got = spate_ring_commit(w, &b, 0, want_fs ? &fs : NULL);
			if (got != k) {
				snprintf(res->msg, sizeof(res->msg), "writer %u: commit returned %u of %u",
					 o->id, got, k);
				free(stage);
				return res->rc = 3;
			}
		}
		if (want_fs) {
			if (o->single_writer ? fs != ctr : (have_fs && fs <= last_fs)) {
				snprintf(res->msg, sizeof(res->msg),
					 "writer %u: first_seq %llu at counter %llu (previous %llu)", o->id,
					 (unsigned long long)fs, (unsigned long long)ctr,
					 (unsigned long long)last_fs);
				free(stage);
				return res->rc = 4;
			}
			last_fs = fs;
			have_fs = 1;
		}
		ctr += k;
		tl_nap(&g, ctr, &next_nap, &next_stall, o, res);
	}
	free(stage);
	res->count = ctr;
	res->acc[o->id % TL_MAX_IDS] = acc;
	return res->rc = 0;
}

/*
 * Read o->n records in all from writers 0..o->nids-1, verifying the global
 * sequence (contiguous from 0), per-writer counters, key, type and payload, and keeping
 * a running checksum per writer. Releases random prefixes of what it peeks.
 */
static inline int tl_read_stream(struct spate_ring_reader *rd, const struct tl_stream_opts *o,
				 struct tl_stream_res *res)
{
	struct spate_ring_rec recs[256];
	struct tl_rng g;
	uint64_t expect_seq = 0; /* readers are opened before the first write */
	uint64_t next_nap, next_stall;
	uint64_t timeout = o->wait_timeout_ns ? o->wait_timeout_ns : 10000000000ull;

	memset(res, 0, sizeof(*res));
	tl_rng_seed(&g, o->seed ^ 0xfeedull);
	next_nap = o->nap_every ? 1 + tl_rng_below(&g, o->nap_every) : UINT64_MAX;
	next_stall = o->stall_every ? 1 + tl_rng_below(&g, o->stall_every) : UINT64_MAX;
	while (res->count < o->n) {
		int n = spate_ring_peek(rd, recs, 256, UINT64_MAX);
		if (n < 0) {
			snprintf(res->msg, sizeof(res->msg), "reader: peek returned %d after %llu records", n,
				 (unsigned long long)res->count);
			return res->rc = 1;
		}
		if (n == 0) {
			uint64_t t0 = tl_mono_ns();
			int rc = spate_ring_reader_wait(rd, timeout);
			uint64_t dt = tl_mono_ns() - t0;
			res->waits++;
			if (rc != 0) {
				snprintf(res->msg, sizeof(res->msg),
					 "reader: wait returned %d after %.3f s at record %llu "
					 "(lost wake-up or stall)", rc, (double)dt / 1e9,
					 (unsigned long long)res->count);
				return res->rc = 2;
			}
			if (dt > res->max_wait_ns)
				res->max_wait_ns = dt;
			continue;
		}
		unsigned k = (unsigned)n;
		if (tl_rng_below(&g, 8) == 0)
			k = (unsigned)(1 + tl_rng_below(&g, (uint64_t)n));
		if (k > o->n - res->count)
			k = (unsigned)(o->n - res->count);
		for (unsigned i = 0; i < k; i++) {
			const struct spate_ring_rec *rc = &recs[i];
			if (rc->seq != expect_seq) {
				snprintf(res->msg, sizeof(res->msg),
					 "reader: record %llu has seq %llu, expected %llu",
					 (unsigned long long)res->count, (unsigned long long)rc->seq,
					 (unsigned long long)expect_seq);
				return res->rc = 3;
			}
			expect_seq = rc->seq + 1;
			uint32_t id = rc->key_hash >> 24;
			if (id >= o->nids || id >= TL_MAX_IDS) {
				snprintf(res->msg, sizeof(res->msg), "reader: seq %llu has writer id %u",
					 (unsigned long long)rc->seq, id);
				return res->rc = 4;
			}
			uint64_t c = res->next[id];
			if (rc->key_hash != tl_key(id, c) || rc->type != tl_type(id, c)) {
				snprintf(res->msg, sizeof(res->msg),
					 "reader: seq %llu writer %u expected counter %llu: key %08x "
					 "type %u (want %08x %u)", (unsigned long long)rc->seq, id,
					 (unsigned long long)c, rc->key_hash, rc->type, tl_key(id, c),
					 tl_type(id, c));
				return res->rc = 5;
			}
			uint64_t d = 0;
			int bad = tl_pl_check(rc->data, rc->len, id, c, &d);
			if (bad || rc->len > o->max_len) {
				snprintf(res->msg, sizeof(res->msg),
					 "reader: seq %llu writer %u counter %llu len %u: payload check %d",
					 (unsigned long long)rc->seq, id, (unsigned long long)c, rc->len,
					 bad);
				return res->rc = 6;
			}
			res->acc[id] = tl_acc(res->acc[id], d, c, rc->type, rc->key_hash, rc->len);
			res->next[id] = c + 1;
			res->last_seq = rc->seq;
			res->count++;
		}
		int rr = spate_ring_release(rd, k);
		if (rr != 0) {
			snprintf(res->msg, sizeof(res->msg), "reader: release(%u) returned %d", k, rr);
			return res->rc = 7;
		}
		tl_nap(&g, res->count, &next_nap, &next_stall, o, res);
	}
	return res->rc = 0;
}

#endif
