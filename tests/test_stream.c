/* SPDX-License-Identifier: MIT */
/*
 * Tests for spate/stream.h: create/attach/close/unlink, names, key -> shard
 * mapping (stability, distribution, explicit hashes), per-shard sequence
 * numbers, per-key order with concurrent producers, put_batch results, full
 * shards, producer exclusivity, checkpoints (including concurrent opens),
 * corrupt headers, and a producer in another process.
 *
 * Every test uses its own bus name (with the pid) and unlinks its stream.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spate/checkpoint.h"
#include "spate/ring.h"
#include "spate/shm.h"
#include "spate/stream.h"

#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define MS (1000000ull)

#if defined(__SANITIZE_THREAD__)
#define SCALE 4u /* ThreadSanitizer is slower: fewer records */
#else
#define SCALE 1u
#endif

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* One record as the concurrent tests write it. */
struct trec {
	uint32_t producer;
	uint32_t key;
	uint64_t ctr;
};

/* A bus name unique to this process and test. */
static void bus_for(char *buf, size_t len, const char *tag)
{
	snprintf(buf, len, "sb-%d-%s", (int)getpid(), tag);
}

static void key_of(char *buf, size_t len, unsigned k)
{
	snprintf(buf, len, "key-%u", k);
}

static uint32_t key_hash_of(unsigned k)
{
	char key[32];

	key_of(key, sizeof(key), k);
	return spate_key_hash(key, strlen(key));
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64* with a fixed seed. */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static int create_stream(const char *bus, const char *name, uint32_t shards, uint64_t ring,
			 uint64_t max_record, uint32_t ring_flags, uint32_t shm_flags,
			 struct spate_stream **s)
{
	struct spate_stream_params p = {
		.shards = shards, .ring_size = ring, .max_record = max_record,
		.ring_flags = ring_flags, .shm_flags = shm_flags,
	};
	*s = NULL;
	return spate_stream_create(bus, name, &p, s);
}

static struct spate_stream *mk_stream(const char *bus, const char *name, uint32_t shards,
				      uint64_t ring, uint64_t max_record, uint32_t ring_flags)
{
	struct spate_stream *s = NULL;
	int rc = create_stream(bus, name, shards, ring, max_record, ring_flags,
			       SPATE_SHM_F_NO_HUGE, &s);

	cr_assert_eq(rc, 0, "create %s.%s: %d", bus, name, rc);
	cr_assert_not_null(s);
	return s;
}

static void rm_stream(struct spate_stream *s, const char *bus, const char *name)
{
	spate_stream_close(s);
	cr_assert_eq(spate_stream_unlink(bus, name), 0);
}

static struct spate_producer *mk_producer(struct spate_stream *s, enum spate_ring_wait wait,
					  uint32_t flags)
{
	struct spate_producer *p = NULL;
	int rc = spate_producer_open(s, wait, flags, &p);

	cr_assert_eq(rc, 0, "producer_open: %d", rc);
	cr_assert_not_null(p);
	return p;
}

static struct spate_ring_reader *mk_reader(struct spate_stream *s, uint32_t shard,
					   enum spate_ring_wait wait)
{
	struct spate_ring_reader *rd = NULL;
	int rc = spate_ring_reader_open(spate_stream_ring(s, shard), SPATE_RING_START_OLDEST, wait,
					&rd);

	cr_assert_eq(rc, 0, "reader_open(shard %u): %d", shard, rc);
	return rd;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle and names                                                      */
/* ------------------------------------------------------------------------ */

Test(stream, create_attach_close_unlink, .timeout = 30)
{
	char bus[48];
	struct spate_stream *s = NULL, *a = NULL, *x = NULL;
	struct spate_put_result res;

	bus_for(bus, sizeof(bus), "life");
	/* Default shm flags: hugetlbfs if it has pages, else /dev/shm. */
	int rc = create_stream(bus, "orders", 3, 64 * KIB, 0, 0, 0, &s);
	cr_assert_eq(rc, 0, "create: %d", rc);
	cr_assert_eq(spate_stream_shards(s), 3);
	cr_assert_str_eq(spate_stream_bus(s), bus);
	cr_assert_str_eq(spate_stream_name(s), "orders");
	cr_assert_not_null(spate_stream_shm(s));
	cr_assert_null(spate_stream_ring(s, 3));
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_not_null(spate_stream_ring(s, i));
		cr_assert_eq(spate_stream_ring(s, i)->cap, 64 * KIB);
		cr_assert_null(spate_ring_shm(spate_stream_ring(s, i)));
	}
	cr_assert_eq(create_stream(bus, "orders", 3, 64 * KIB, 0, 0, 0, &x), -EEXIST);
	cr_assert_null(x);

	/* The header's layout, as documented. */
	const struct spate_stream_hdr *h = spate_shm_user(spate_stream_shm(s));
	cr_assert_eq(h->magic, SPATE_STREAM_MAGIC);
	cr_assert_eq(h->layout_version, SPATE_STREAM_LAYOUT_VERSION);
	cr_assert_eq(h->hdr_size, sizeof(*h));
	cr_assert_eq(h->ready, SPATE_STREAM_READY);
	cr_assert_eq(h->max_consumers, SPATE_STREAM_MAX_CONSUMERS);
	cr_assert_eq(h->rings_off % 4096, 0);
	cr_assert_eq(h->ring_stride % 4096, 0);
	cr_assert_geq(h->ring_stride, 64 * KIB);
	cr_assert_eq(h->ckpt_off % 128, 0);
	cr_assert_eq(h->ckpt_stride % 128, 0);
	cr_assert_geq(h->ckpt_stride, sizeof(struct spate_stream_ckpt) + 3 * 8);
	cr_assert_geq(h->ckpt_off, h->rings_off + 3 * h->ring_stride);
	cr_assert_eq(h->dur_off % 128, 0);
	cr_assert_geq(h->dur_off, h->ckpt_off + SPATE_STREAM_MAX_CONSUMERS * h->ckpt_stride);
	cr_assert_eq(h->total_size, h->dur_off + 3 * sizeof(struct spate_stream_dur));
	cr_assert_eq(sizeof(struct spate_stream_dur), 128);
	cr_assert_eq(h->durability, SPATE_DURABILITY_OFF);
	cr_assert_leq(h->total_size, spate_shm_user_size(spate_stream_shm(s)));

	/* Attach: another mapping of the same rings. */
	rc = spate_stream_attach(bus, "orders", &a);
	cr_assert_eq(rc, 0, "attach: %d", rc);
	cr_assert_eq(spate_stream_shards(a), 3);
	cr_assert_str_eq(spate_stream_name(a), "orders");
	cr_assert_str_eq(spate_stream_bus(a), bus);
	struct spate_ring_reader *rd[3];
	for (uint32_t i = 0; i < 3; i++)
		rd[i] = mk_reader(a, i, SPATE_RING_WAIT_BUSY);

	struct spate_producer *p = mk_producer(s, SPATE_RING_WAIT_BUSY, 0);
	cr_assert_null(spate_producer_writer(p, 3));
	cr_assert_eq(spate_put(p, "hello", 5, "world", 5, &res), 0);
	cr_assert_eq(res.error, 0);
	cr_assert_eq(res.shard, spate_shard_of_hash(spate_key_hash("hello", 5), 3));
	cr_assert_eq(res.seq, 0);
	/* Zero-copy through the producer's writer of a shard. */
	struct spate_ring_writer *w = spate_producer_writer(p, 1);
	cr_assert_not_null(w);
	struct spate_ring_batch b;
	cr_assert_eq(spate_ring_reserve(w, spate_ring_rec_size(3), &b), 0);
	void *dst = spate_ring_batch_add(&b, 3, 77, 9);
	cr_assert_not_null(dst);
	memcpy(dst, "zcp", 3);
	spate_ring_commit(w, &b, 0, NULL);

	struct spate_ring_rec rec[4];
	cr_assert_eq(spate_ring_peek(rd[res.shard], rec, 4, UINT64_MAX), res.shard == 1 ? 2 : 1);
	cr_assert_eq(rec[0].len, 5);
	cr_assert_eq(memcmp(rec[0].data, "world", 5), 0);
	cr_assert_eq(rec[0].key_hash, spate_key_hash("hello", 5));
	cr_assert_eq(rec[0].type, 0);
	cr_assert_eq(spate_ring_peek(rd[1], rec, 4, UINT64_MAX), res.shard == 1 ? 2 : 1);
	const struct spate_ring_rec *z = &rec[res.shard == 1 ? 1 : 0];
	cr_assert_eq(z->len, 3);
	cr_assert_eq(memcmp(z->data, "zcp", 3), 0);
	cr_assert_eq(z->key_hash, 77);
	cr_assert_eq(z->type, 9);

	spate_producer_close(p);
	spate_producer_close(NULL);
	for (uint32_t i = 0; i < 3; i++)
		spate_ring_reader_close(rd[i]);
	spate_stream_close(a);
	spate_stream_close(s);
	spate_stream_close(NULL);

	cr_assert_eq(spate_stream_unlink(bus, "orders"), 0);
	cr_assert_eq(spate_stream_attach(bus, "orders", &x), -ENOENT);
	cr_assert_null(x);
	cr_assert_eq(spate_stream_unlink(bus, "orders"), -ENOENT);
}

Test(stream, unlink_keeps_attached_handles, .timeout = 30)
{
	char bus[48];
	struct spate_put_result res;

	bus_for(bus, sizeof(bus), "unl");
	struct spate_stream *s = mk_stream(bus, "s", 1, 64 * KIB, 0, 0);
	cr_assert_eq(spate_stream_unlink(bus, "s"), 0);
	struct spate_producer *p = mk_producer(s, SPATE_RING_WAIT_BUSY, 0);
	cr_assert_eq(spate_put(p, "k", 1, "v", 1, &res), 0);
	cr_assert_eq(res.seq, 0);
	spate_producer_close(p);
	spate_stream_close(s);
}

Test(stream, bad_names_and_params, .timeout = 30)
{
	char bus[48], n40[SPATE_STREAM_NAME_MAX + 1], n41[SPATE_STREAM_NAME_MAX + 2];
	struct spate_stream *s = NULL;
	struct spate_stream_params p = { .shards = 1, .ring_size = 64 * KIB,
					 .shm_flags = SPATE_SHM_F_NO_HUGE };
	const char *bad[] = { "", "a.b", "a/b", "a b", "..", "x\n", "é", n41 };

	bus_for(bus, sizeof(bus), "names");
	memset(n40, 'n', SPATE_STREAM_NAME_MAX);
	n40[SPATE_STREAM_NAME_MAX] = '\0';
	memset(n41, 'n', SPATE_STREAM_NAME_MAX + 1);
	n41[SPATE_STREAM_NAME_MAX + 1] = '\0';

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(spate_stream_create(bus, bad[i], &p, &s), -EINVAL, "name '%s'", bad[i]);
		cr_assert_null(s);
		cr_assert_eq(spate_stream_create(bad[i], "s", &p, &s), -EINVAL, "bus '%s'", bad[i]);
		cr_assert_eq(spate_stream_attach(bus, bad[i], &s), -EINVAL);
		cr_assert_eq(spate_stream_attach(bad[i], "s", &s), -EINVAL);
		cr_assert_eq(spate_stream_unlink(bus, bad[i]), -EINVAL);
	}
	cr_assert_eq(spate_stream_create(NULL, "s", &p, &s), -EINVAL);
	cr_assert_eq(spate_stream_create(bus, NULL, &p, &s), -EINVAL);
	cr_assert_eq(spate_stream_create(bus, "s", NULL, &s), -EINVAL);
	cr_assert_eq(spate_stream_create(bus, "s", &p, NULL), -EINVAL);
	cr_assert_eq(spate_stream_attach(bus, "s", NULL), -EINVAL);
	/* Each name valid, but "<bus>.<stream>" longer than a region name. */
	cr_assert_eq(spate_stream_create(n40, n40, &p, &s), -EINVAL);
	cr_assert_eq(spate_stream_attach(n40, n40, &s), -EINVAL);

	/* Parameters. */
	struct spate_stream_params q = p;
	q.shards = 0;
	cr_assert_eq(spate_stream_create(bus, "s", &q, &s), -EINVAL);
	q.shards = SPATE_STREAM_MAX_SHARDS + 1;
	cr_assert_eq(spate_stream_create(bus, "s", &q, &s), -EINVAL);
	q = p;
	q.ring_size = 96 * KIB;
	cr_assert_eq(spate_stream_create(bus, "s", &q, &s), -EINVAL);
	q.ring_size = 32 * KIB;
	cr_assert_eq(spate_stream_create(bus, "s", &q, &s), -EINVAL);
	q = p;
	q.ring_flags = 1u << 20;
	cr_assert_eq(spate_stream_create(bus, "s", &q, &s), -EINVAL);
	q = p;
	q.max_record = 64 * KIB;
	cr_assert_eq(spate_stream_create(bus, "s", &q, &s), -EINVAL);
	q = p;
	q.shm_flags = SPATE_SHM_F_NO_HUGE | SPATE_SHM_F_REQUIRE_HUGE;
	cr_assert_eq(spate_stream_create(bus, "s", &q, &s), -EINVAL);
	cr_assert_eq(spate_stream_attach(bus, "s", &s), -ENOENT, "nothing was left behind");

	/* The longest names that fit: 40 + '.' + 22 = 63. */
	char b22[23];
	snprintf(b22, sizeof(b22), "b%021d", (int)getpid());
	cr_assert_eq(spate_stream_create(b22, n40, &p, &s), 0);
	spate_stream_close(s);
	cr_assert_eq(spate_stream_attach(b22, n40, &s), 0);
	rm_stream(s, b22, n40);
	/* Names use the whole charset. */
	cr_assert_eq(spate_stream_create(bus, "Az09_-", &p, &s), 0);
	rm_stream(s, bus, "Az09_-");
}

/* ------------------------------------------------------------------------ */
/* Keys and shards                                                          */
/* ------------------------------------------------------------------------ */

Test(stream, key_hash_is_xxh3_high_half, .timeout = 30)
{
	/* Fixed values: the key -> shard mapping must never change between
	 * builds, or producers of two versions would disagree. */
	cr_assert_eq(spate_key_hash("partition-key", 13), 0xb51cdcf0u);
	cr_assert_eq(spate_key_hash("a", 1), 0xe6c632b6u);
	cr_assert_eq(spate_key_hash("user-42", 7), 0x50fe4b21u);
	cr_assert_eq(spate_key_hash("", 0), 0x2d068005u);
	cr_assert_eq(spate_key_hash(NULL, 0), 0x2d068005u);

	/* Shard ranges: contiguous, covering, the boundaries exact. */
	for (uint32_t n = 1; n <= 1024; n = n * 3 + 1) {
		cr_assert_eq(spate_shard_of_hash(0, n), 0);
		cr_assert_eq(spate_shard_of_hash(UINT32_MAX, n), n - 1);
		for (uint32_t i = 1; i < n; i++) {
			uint32_t lo = (uint32_t)((((uint64_t)i << 32) + n - 1) / n); /* first hash of i */
			cr_assert_eq(spate_shard_of_hash(lo, n), i, "n %u shard %u", n, i);
			cr_assert_eq(spate_shard_of_hash(lo - 1, n), i - 1, "n %u shard %u", n, i);
		}
	}
}

Test(stream, key_to_shard_stable_and_distributed, .timeout = 60)
{
	char bus[48];
	enum { NKEYS = 10000, SHARDS = 8 };
	unsigned per[SHARDS] = { 0 };
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	struct spate_put_result res;

	bus_for(bus, sizeof(bus), "dist");
	struct spate_stream *s = mk_stream(bus, "s", SHARDS, 64 * KIB, 0, 0);
	struct spate_producer *p = mk_producer(s, SPATE_RING_WAIT_BUSY, 0);

	for (unsigned i = 0; i < NKEYS; i++) {
		uint8_t key[32];
		size_t len = 1 + (size_t)(rng_next(&seed) % sizeof(key));
		for (size_t j = 0; j < len; j++)
			key[j] = (uint8_t)rng_next(&seed);
		uint32_t h = spate_key_hash(key, len);
		cr_assert_eq(spate_key_hash(key, len), h, "stable hash");
		uint32_t shard = spate_shard_of_hash(h, SHARDS);
		cr_assert_lt(shard, SHARDS);
		per[shard]++;
		/* The producer puts a key where the mapping says, twice alike. */
		if (i % 10 == 0) {
			cr_assert_eq(spate_put(p, key, len, &i, sizeof(i), &res), 0);
			cr_assert_eq(res.shard, shard);
			cr_assert_eq(spate_put(p, key, len, &i, sizeof(i), &res), 0);
			cr_assert_eq(res.shard, shard);
		}
	}
	for (unsigned i = 0; i < SHARDS; i++) {
		cr_log_info("shard %u: %u keys (%.1f%%)", i, per[i], 100.0 * per[i] / NKEYS);
		cr_assert_geq(per[i], NKEYS * 8 / 100, "shard %u has %u of %u keys", i, per[i], NKEYS);
		cr_assert_leq(per[i], NKEYS * 17 / 100, "shard %u has %u of %u keys", i, per[i], NKEYS);
	}
	spate_producer_close(p);
	rm_stream(s, bus, "s");
}

Test(stream, explicit_hash_overrides_key, .timeout = 30)
{
	char bus[48];
	struct spate_put_result res, r2[2];
	struct spate_ring_rec rec[4];
	enum { SHARDS = 8 };

	bus_for(bus, sizeof(bus), "hash");
	struct spate_stream *s = mk_stream(bus, "s", SHARDS, 64 * KIB, 0, 0);
	struct spate_ring_reader *rd[SHARDS];
	for (uint32_t i = 0; i < SHARDS; i++)
		rd[i] = mk_reader(s, i, SPATE_RING_WAIT_BUSY);
	struct spate_producer *p = mk_producer(s, SPATE_RING_WAIT_BUSY, 0);

	/* The first hash of shard 5's range, and the last one. */
	uint32_t h5 = (uint32_t)((5ull << 32) / SHARDS), h5e = (uint32_t)((6ull << 32) / SHARDS) - 1;
	cr_assert_eq(spate_put_hash(p, h5, "a", 1, &res), 0);
	cr_assert_eq(res.shard, 5);
	cr_assert_eq(res.seq, 0);
	cr_assert_eq(spate_put_hash(p, h5e, "b", 1, NULL), 0);

	/* In a batch: the key would go elsewhere, the hash wins. */
	const char *key = "user-42"; /* hash 0x50fe4b21: shard 2 of 8 */
	cr_assert_eq(spate_shard_of_hash(spate_key_hash(key, 7), SHARDS), 2);
	struct spate_put_entry e[2] = {
		{ .key = key, .key_len = 7, .data = "c", .len = 1, .hash = h5,
		  .flags = SPATE_PUT_F_HASH, .type = 3 },
		{ .key = key, .key_len = 7, .data = "d", .len = 1 },
	};
	cr_assert_eq(spate_put_batch(p, e, 2, r2), 0);
	cr_assert_eq(r2[0].shard, 5);
	cr_assert_eq(r2[0].seq, 2);
	cr_assert_eq(r2[1].shard, 2);
	cr_assert_eq(r2[1].seq, 0);

	cr_assert_eq(spate_ring_peek(rd[5], rec, 4, UINT64_MAX), 3);
	cr_assert_eq(rec[0].key_hash, h5);
	cr_assert_eq(rec[1].key_hash, h5e);
	cr_assert_eq(rec[2].key_hash, h5);
	cr_assert_eq(rec[2].type, 3);
	cr_assert_eq(memcmp(rec[2].data, "c", 1), 0);
	cr_assert_eq(spate_ring_peek(rd[2], rec, 4, UINT64_MAX), 1);
	cr_assert_eq(rec[0].key_hash, spate_key_hash(key, 7));
	for (uint32_t i = 0; i < SHARDS; i++)
		if (i != 5 && i != 2)
			cr_assert_eq(spate_ring_peek(rd[i], rec, 4, UINT64_MAX), 0);

	spate_producer_close(p);
	for (uint32_t i = 0; i < SHARDS; i++)
		spate_ring_reader_close(rd[i]);
	rm_stream(s, bus, "s");
}

/* ------------------------------------------------------------------------ */
/* Sequence numbers and batches                                             */
/* ------------------------------------------------------------------------ */

static void seq_contiguous(const char *tag, uint32_t ring_flags)
{
	char bus[48];
	enum { SHARDS = 4, N = 3000 };
	uint64_t next[SHARDS] = { 0 }, got[SHARDS] = { 0 };
	struct spate_put_result res[16];
	struct spate_put_entry e[16];
	char keys[16][16];

	bus_for(bus, sizeof(bus), tag);
	struct spate_stream *s = mk_stream(bus, "s", SHARDS, 256 * KIB, 0, ring_flags);
	struct spate_ring_reader *rd[SHARDS];
	for (uint32_t i = 0; i < SHARDS; i++)
		rd[i] = mk_reader(s, i, SPATE_RING_WAIT_BUSY);
	struct spate_producer *p = mk_producer(s, SPATE_RING_WAIT_BUSY, SPATE_PRODUCER_F_FAIL_FULL);

	for (unsigned i = 0; i < N;) {
		if (i % 3 == 0) {
			uint64_t v = i;
			char key[16];
			key_of(key, sizeof(key), i % 37);
			cr_assert_eq(spate_put(p, key, strlen(key), &v, sizeof(v), &res[0]), 0);
			cr_assert_eq(res[0].seq, next[res[0].shard]++, "record %u", i);
			i++;
			continue;
		}
		unsigned m = 0;
		uint64_t vals[16];
		for (; m < 16 && i < N; m++, i++) {
			key_of(keys[m], sizeof(keys[m]), i % 37);
			vals[m] = i;
			e[m] = (struct spate_put_entry){ .key = keys[m], .key_len = strlen(keys[m]),
							 .data = &vals[m], .len = sizeof(vals[m]) };
		}
		cr_assert_eq(spate_put_batch(p, e, m, res), 0);
		for (unsigned k = 0; k < m; k++) {
			cr_assert_eq(res[k].error, 0);
			cr_assert_eq(res[k].seq, next[res[k].shard]++);
		}
	}
	uint64_t total = 0;
	for (uint32_t i = 0; i < SHARDS; i++) {
		struct spate_ring_rec rec[64];
		int n;
		while ((n = spate_ring_peek(rd[i], rec, 64, UINT64_MAX)) > 0) {
			for (int k = 0; k < n; k++) {
				cr_assert_eq(rec[k].seq, got[i], "shard %u", i);
				got[i]++;
				cr_assert_eq(spate_shard_of_hash(rec[k].key_hash, SHARDS), i);
			}
			cr_assert_eq(spate_ring_release(rd[i], (unsigned)n), 0);
		}
		cr_assert_eq(n, 0);
		cr_assert_eq(got[i], next[i], "shard %u: read %llu, wrote %llu", i,
			     (unsigned long long)got[i], (unsigned long long)next[i]);
		cr_assert_gt(got[i], 0);
		total += got[i];
		spate_ring_reader_close(rd[i]);
	}
	cr_assert_eq(total, N);
	spate_producer_close(p);
	rm_stream(s, bus, "s");
}

Test(stream, per_shard_seq_contiguous_single_producer, .timeout = 60)
{
	seq_contiguous("seq-sp", 0);
}

Test(stream, per_shard_seq_contiguous_multi_producer, .timeout = 60)
{
	seq_contiguous("seq-mp", SPATE_RING_F_MULTI_WRITER);
}

Test(stream, put_batch_results_in_request_order, .timeout = 30)
{
	char bus[48];
	enum { SHARDS = 4, N = 40, BIG = 17 };
	struct spate_put_entry e[N];
	struct spate_put_result res[N];
	char keys[N][16];
	uint64_t vals[N][2];
	static uint8_t big[1000];
	uint64_t next[SHARDS] = { 0 };
	unsigned per[SHARDS] = { 0 };

	bus_for(bus, sizeof(bus), "batch");
	struct spate_stream *s = mk_stream(bus, "s", SHARDS, 64 * KIB, 256, 0);
	cr_assert_eq(spate_ring_max_record(spate_stream_ring(s, 0)), 256);
	struct spate_ring_reader *rd[SHARDS];
	for (uint32_t i = 0; i < SHARDS; i++)
		rd[i] = mk_reader(s, i, SPATE_RING_WAIT_BUSY);
	struct spate_producer *p = mk_producer(s, SPATE_RING_WAIT_BUSY, 0);

	for (unsigned i = 0; i < N; i++) {
		key_of(keys[i], sizeof(keys[i]), i % 7);
		vals[i][0] = i;
		vals[i][1] = ~(uint64_t)i;
		e[i] = (struct spate_put_entry){ .key = keys[i], .key_len = strlen(keys[i]),
						 .data = vals[i], .len = sizeof(vals[i]),
						 .type = (uint8_t)i };
	}
	e[BIG].data = big;
	e[BIG].len = sizeof(big);
	memset(res, 0x5a, sizeof(res));

	cr_assert_eq(spate_put_batch(p, e, N, res), 1, "FailedRecordCount");
	for (unsigned i = 0; i < N; i++) {
		uint32_t shard = spate_shard_of_hash(key_hash_of(i % 7), SHARDS);
		cr_assert_eq(res[i].shard, shard, "record %u", i);
		if (i == BIG) {
			cr_assert_eq(res[i].error, -EMSGSIZE);
			continue;
		}
		cr_assert_eq(res[i].error, 0, "record %u: %d", i, res[i].error);
		cr_assert_eq(res[i].seq, next[shard]++, "record %u: request order within the shard", i);
		per[shard]++;
	}
	/* Each shard got its records in request order, as one batch. */
	for (uint32_t sh = 0; sh < SHARDS; sh++) {
		struct spate_ring_rec rec[N];
		int n = spate_ring_peek(rd[sh], rec, N, UINT64_MAX);
		cr_assert_eq(n, (int)per[sh], "shard %u", sh);
		unsigned k = 0;
		for (unsigned i = 0; i < N; i++) {
			if (i == BIG || res[i].shard != sh)
				continue;
			cr_assert_eq(rec[k].seq, res[i].seq);
			cr_assert_eq(rec[k].len, 16);
			cr_assert_eq(memcmp(rec[k].data, vals[i], 16), 0, "shard %u record %u", sh, i);
			cr_assert_eq(rec[k].type, (uint8_t)i);
			cr_assert_eq(rec[k].key_hash, key_hash_of(i % 7));
			cr_assert_eq(rec[k].ts, rec[0].ts, "one publication per shard");
			k++;
		}
		cr_assert_eq(spate_ring_release(rd[sh], (unsigned)n), 0);
	}

	/* Malformed entries fail alone with -EINVAL. */
	uint64_t v = 7;
	struct spate_put_entry bad[5] = {
		{ .key = "x", .key_len = 1, .data = &v, .len = 8 },
		{ .key = "x", .key_len = 1, .data = NULL, .len = 5 },
		{ .key = "x", .key_len = 1, .data = &v, .len = 8, .flags = 0x80 },
		{ .data = &v, .len = 8, .hash = 0, .flags = SPATE_PUT_F_HASH },
		{ .key = NULL, .key_len = 3, .data = &v, .len = 8 },
	};
	cr_assert_eq(spate_put_batch(p, bad, 5, res), 3);
	cr_assert_eq(res[0].error, 0);
	cr_assert_eq(res[1].error, -EINVAL);
	cr_assert_eq(res[2].error, -EINVAL);
	cr_assert_eq(res[3].error, 0);
	cr_assert_eq(res[3].shard, 0);
	cr_assert_eq(res[4].error, -EINVAL);

	/* Arguments. */
	cr_assert_eq(spate_put_batch(p, e, 0, res), 0);
	cr_assert_eq(spate_put_batch(p, NULL, 1, res), -EINVAL);
	cr_assert_eq(spate_put_batch(p, e, 1, NULL), -EINVAL);
	cr_assert_eq(spate_put(p, NULL, 2, "v", 1, &res[0]), -EINVAL);
	cr_assert_eq(res[0].error, -EINVAL);
	cr_assert_eq(spate_put(p, "k", 1, NULL, 1, &res[0]), -EINVAL);
	cr_assert_eq(spate_put(p, "k", 1, big, sizeof(big), &res[0]), -EMSGSIZE);
	cr_assert_eq(res[0].error, -EMSGSIZE);
	cr_assert_eq(spate_put(p, "k", 1, NULL, 0, &res[0]), 0, "empty record");

	spate_producer_close(p);
	for (uint32_t i = 0; i < SHARDS; i++)
		spate_ring_reader_close(rd[i]);
	rm_stream(s, bus, "s");
}

Test(stream, put_batch_splits_large_requests, .timeout = 60)
{
	char bus[48];
	enum { N = 70000 }; /* > SPATE_RING_MAX_BATCH_RECORDS */
	struct spate_put_entry *e = calloc(N, sizeof(*e));
	struct spate_put_result *res = calloc(N, sizeof(*res));
	struct spate_ring_rec *rec = calloc(N, sizeof(*rec));

	cr_assert(e && res && rec);
	bus_for(bus, sizeof(bus), "split");
	/* By record count: 70,000 empty records fit half of a 4 MiB ring. */
	struct spate_stream *s = mk_stream(bus, "s", 1, 4 * MIB, 0, 0);
	struct spate_ring_reader *rd = mk_reader(s, 0, SPATE_RING_WAIT_BUSY);
	struct spate_producer *p = mk_producer(s, SPATE_RING_WAIT_BUSY, 0);
	for (unsigned i = 0; i < N; i++)
		e[i] = (struct spate_put_entry){ .hash = i, .flags = SPATE_PUT_F_HASH };
	cr_assert_eq(spate_put_batch(p, e, N, res), 0);
	for (unsigned i = 0; i < N; i++) {
		cr_assert_eq(res[i].error, 0);
		cr_assert_eq(res[i].seq, i);
	}
	cr_assert_eq(spate_ring_peek(rd, rec, N, UINT64_MAX), N);
	unsigned batches = 1;
	for (unsigned i = 0; i < N; i++) {
		cr_assert_eq(rec[i].seq, i);
		cr_assert_eq(rec[i].key_hash, i);
		cr_assert_eq(rec[i].len, 0);
	}
	cr_assert_eq(spate_ring_release(rd, N), 0);
	spate_producer_close(p);
	spate_ring_reader_close(rd);
	rm_stream(s, bus, "s");

	/* By bytes: 3,000 records of 24 bytes (32 in the ring) in a 64 KiB ring
	 * with no reader: several batches of at most half the ring. */
	s = mk_stream(bus, "t", 1, 64 * KIB, 0, 0);
	rd = mk_reader(s, 0, SPATE_RING_WAIT_BUSY);
	p = mk_producer(s, SPATE_RING_WAIT_BUSY, SPATE_PRODUCER_F_FAIL_FULL);
	static const uint8_t pay[24];
	for (unsigned i = 0; i < 1100; i++)
		e[i] = (struct spate_put_entry){ .key = "k", .key_len = 1, .data = pay, .len = 24 };
	/* 1,100 records = 35,200 bytes: more than a batch may hold (half the
	 * ring less its header: 32,736), less than the ring: two batches
	 * (1,023 + 77 records), both written. */
	cr_assert_eq(spate_put_batch(p, e, 1100, res), 0);
	int n = spate_ring_peek(rd, rec, N, UINT64_MAX);
	cr_assert_eq(n, 1100);
	for (int i = 1; i < n; i++) {
		cr_assert_eq(rec[i].seq, (uint64_t)i);
		if (rec[i].ts != rec[i - 1].ts)
			batches++;
	}
	cr_assert_leq(batches, 2);
	cr_assert_eq(res[1099].seq, 1099);
	/* As much again does not fit (the reader holds the space): the first
	 * batch fails, and with it the rest of the shard, with -EAGAIN. */
	cr_assert_eq(spate_put_batch(p, e, 1100, res), 1100);
	for (unsigned i = 0; i < 1100; i++)
		cr_assert_eq(res[i].error, -EAGAIN);
	cr_assert_eq(spate_ring_release(rd, (unsigned)n), 0);
	cr_assert_eq(spate_put_batch(p, e, 1100, res), 0);
	cr_assert_eq(res[0].seq, 1100);
	spate_producer_close(p);
	spate_ring_reader_close(rd);
	rm_stream(s, bus, "t");
	free(e);
	free(res);
	free(rec);
}

/* ------------------------------------------------------------------------ */
/* Full shards and producer exclusivity                                     */
/* ------------------------------------------------------------------------ */

Test(stream, full_shard_policies, .timeout = 60)
{
	char bus[48];
	static uint8_t pay[1000];
	struct spate_put_result res;
	struct spate_put_result r5[5];
	struct spate_ring_rec rec[256];

	bus_for(bus, sizeof(bus), "full");
	/* The stream's default is to wait on a full shard. */
	struct spate_stream *s = mk_stream(bus, "s", 1, 64 * KIB, 0, SPATE_RING_F_FULL_WAIT);
	struct spate_ring_reader *rd = mk_reader(s, 0, SPATE_RING_WAIT_BUSY);
	struct spate_producer *p = mk_producer(s, SPATE_RING_WAIT_YIELD, SPATE_PRODUCER_F_FAIL_FULL);
	unsigned written = 0;
	int rc;
	uint64_t t0 = 0, t1 = 0;
	for (;;) {
		t0 = mono_ns();
		rc = spate_put(p, "k", 1, pay, sizeof(pay), &res);
		t1 = mono_ns();
		if (rc)
			break;
		written++;
		cr_assert_lt(written, 100, "never full");
	}
	cr_assert_eq(rc, -EAGAIN);
	cr_assert_eq(res.error, -EAGAIN);
	cr_assert_eq(res.shard, 0);
	cr_assert_gt(written, 30);
	cr_assert_lt(t1 - t0, 100 * MS, "FAIL_FULL fails at once (took %llu ns)",
		     (unsigned long long)(t1 - t0));
	struct spate_put_entry e[5];
	for (unsigned i = 0; i < 5; i++)
		e[i] = (struct spate_put_entry){ .key = "k", .key_len = 1, .data = pay, .len = 8 };
	cr_assert_eq(spate_put_batch(p, e, 5, r5), 5);
	for (unsigned i = 0; i < 5; i++)
		cr_assert_eq(r5[i].error, -EAGAIN);
	spate_producer_close(p);

	/* Neither flag: the ring's FULL_WAIT, bounded by the writer's timeout. */
	p = mk_producer(s, SPATE_RING_WAIT_YIELD, 0);
	spate_producer_writer(p, 0)->timeout_ns = 20 * MS;
	t0 = mono_ns();
	cr_assert_eq(spate_put(p, "k", 1, pay, sizeof(pay), &res), -ETIMEDOUT);
	cr_assert_geq(mono_ns() - t0, 20 * MS);
	cr_assert_eq(res.error, -ETIMEDOUT);
	/* Space given back: the same producer writes again. */
	int n = spate_ring_peek(rd, rec, 256, UINT64_MAX);
	cr_assert_eq(n, (int)written);
	cr_assert_eq(spate_ring_release(rd, (unsigned)n), 0);
	cr_assert_eq(spate_put(p, "k", 1, pay, sizeof(pay), &res), 0);
	cr_assert_eq(res.seq, written);
	spate_producer_close(p);
	spate_ring_reader_close(rd);
	rm_stream(s, bus, "s");

	/* A stream that fails at once by default; WAIT_FULL makes a producer wait. */
	s = mk_stream(bus, "t", 1, 64 * KIB, 0, 0);
	rd = mk_reader(s, 0, SPATE_RING_WAIT_BUSY);
	p = mk_producer(s, SPATE_RING_WAIT_YIELD, 0);
	while ((rc = spate_put(p, "k", 1, pay, sizeof(pay), NULL)) == 0)
		;
	cr_assert_eq(rc, -EAGAIN);
	spate_producer_close(p);
	p = mk_producer(s, SPATE_RING_WAIT_YIELD, SPATE_PRODUCER_F_WAIT_FULL);
	spate_producer_writer(p, 0)->timeout_ns = 20 * MS;
	t0 = mono_ns();
	cr_assert_eq(spate_put(p, "k", 1, pay, sizeof(pay), NULL), -ETIMEDOUT);
	cr_assert_geq(mono_ns() - t0, 20 * MS);
	spate_producer_close(p);
	spate_ring_reader_close(rd);
	rm_stream(s, bus, "t");
}

Test(stream, single_producer_stream_refuses_a_second, .timeout = 30)
{
	char bus[48];
	struct spate_producer *p2 = NULL;

	bus_for(bus, sizeof(bus), "excl");
	struct spate_stream *s = mk_stream(bus, "s", 4, 64 * KIB, 0, 0);
	struct spate_stream *a = NULL;
	cr_assert_eq(spate_stream_attach(bus, "s", &a), 0);
	struct spate_producer *p = mk_producer(s, SPATE_RING_WAIT_BUSY, 0);
	cr_assert_eq(spate_producer_open(s, SPATE_RING_WAIT_BUSY, 0, &p2), -EBUSY);
	cr_assert_null(p2);
	cr_assert_eq(spate_producer_open(a, SPATE_RING_WAIT_BUSY, 0, &p2), -EBUSY,
		     "through another handle too");
	cr_assert_eq(spate_put(p, "k", 1, "v", 1, NULL), 0);
	spate_producer_close(p);
	/* Once closed, another may produce, continuing the sequence. */
	struct spate_put_result res;
	p2 = mk_producer(a, SPATE_RING_WAIT_BUSY, 0);
	cr_assert_eq(spate_put(p2, "k", 1, "v", 1, &res), 0);
	cr_assert_eq(res.seq, 1);
	spate_producer_close(p2);

	/* Flags. */
	cr_assert_eq(spate_producer_open(s, SPATE_RING_WAIT_BUSY,
					 SPATE_PRODUCER_F_FAIL_FULL | SPATE_PRODUCER_F_WAIT_FULL, &p2),
		     -EINVAL);
	cr_assert_eq(spate_producer_open(s, SPATE_RING_WAIT_BUSY, 1u << 7, &p2), -EINVAL);
	cr_assert_eq(spate_producer_open(s, SPATE_RING_WAIT_BUSY, 0, NULL), -EINVAL);
	spate_stream_close(a);
	rm_stream(s, bus, "s");

	/* Multi-producer streams take many; NO_BLOCKING refuses BLOCK waits. */
	s = mk_stream(bus, "m", 2, 64 * KIB, 0,
		      SPATE_RING_F_MULTI_WRITER | SPATE_RING_F_NO_BLOCKING);
	p = mk_producer(s, SPATE_RING_WAIT_BUSY, 0);
	p2 = mk_producer(s, SPATE_RING_WAIT_YIELD, 0);
	struct spate_producer *p3 = NULL;
	cr_assert_eq(spate_producer_open(s, SPATE_RING_WAIT_BLOCK, 0, &p3), -ENOTSUP);
	spate_producer_close(p);
	spate_producer_close(p2);
	rm_stream(s, bus, "m");
}

/* ------------------------------------------------------------------------ */
/* Per-key order with concurrent producers                                  */
/* ------------------------------------------------------------------------ */

enum { MP_PRODUCERS = 4, MP_KEYS = 16, MP_SHARDS = 4 };

struct mp_arg {
	struct spate_stream *s;
	unsigned id, n;
	int err;        /* first error, or 0 */
	atomic_int *done;
};

static void *mp_producer(void *arg)
{
	struct mp_arg *a = arg;
	struct spate_producer *p = NULL;
	uint64_t ctr[MP_KEYS] = { 0 };
	char keys[MP_KEYS][16];
	struct trec recs[32];
	struct spate_put_entry e[32];
	struct spate_put_result res[32];

	for (unsigned k = 0; k < MP_KEYS; k++)
		key_of(keys[k], sizeof(keys[k]), k);
	a->err = spate_producer_open(a->s, SPATE_RING_WAIT_YIELD, SPATE_PRODUCER_F_WAIT_FULL, &p);
	for (unsigned i = 0; !a->err && i < a->n;) {
		if (a->id < 2) { /* one record at a time */
			unsigned k = (i * 7 + a->id) % MP_KEYS;
			struct trec r = { a->id, k, ctr[k]++ };
			a->err = spate_put(p, keys[k], strlen(keys[k]), &r, sizeof(r), NULL);
			i++;
			continue;
		}
		unsigned m = 0; /* batches of up to 32 */
		for (; m < 32 && i < a->n; m++, i++) {
			unsigned k = (i * 5 + a->id) % MP_KEYS;
			recs[m] = (struct trec){ a->id, k, ctr[k]++ };
			e[m] = (struct spate_put_entry){ .key = keys[k], .key_len = strlen(keys[k]),
							 .data = &recs[m], .len = sizeof(recs[m]) };
		}
		int failed = spate_put_batch(p, e, m, res);
		if (failed)
			a->err = failed < 0 ? failed : res[0].error ? res[0].error : -EIO;
	}
	spate_producer_close(p);
	atomic_fetch_add_explicit(a->done, 1, memory_order_release);
	return NULL;
}

Test(stream, per_key_order_with_4_producers, .timeout = 240)
{
	char bus[48];
	const unsigned n = 100000 / SCALE;
	uint64_t expect[MP_PRODUCERS][MP_KEYS] = { { 0 } }, seq[MP_SHARDS] = { 0 };
	pthread_t t[MP_PRODUCERS];
	struct mp_arg a[MP_PRODUCERS];
	atomic_int done = 0;
	struct spate_ring_rec rec[128];

	bus_for(bus, sizeof(bus), "mp");
	struct spate_stream *s = mk_stream(bus, "s", MP_SHARDS, 64 * KIB, 0,
					   SPATE_RING_F_MULTI_WRITER);
	struct spate_ring_reader *rd[MP_SHARDS];
	for (uint32_t i = 0; i < MP_SHARDS; i++)
		rd[i] = mk_reader(s, i, SPATE_RING_WAIT_YIELD);
	for (unsigned i = 0; i < MP_PRODUCERS; i++) {
		a[i] = (struct mp_arg){ .s = s, .id = i, .n = n, .done = &done };
		cr_assert_eq(pthread_create(&t[i], NULL, mp_producer, &a[i]), 0);
	}
	uint64_t total = 0, want = (uint64_t)n * MP_PRODUCERS;
	int bad = 0;
	while (total < want && !bad) {
		int progress = 0;
		/* Acquire: pairs with the producers' release increment; read
		 * before the rings so a finished producer's records are seen. */
		int fin = atomic_load_explicit(&done, memory_order_acquire);
		for (uint32_t sh = 0; sh < MP_SHARDS && !bad; sh++) {
			int m = spate_ring_peek(rd[sh], rec, 128, UINT64_MAX);
			if (m < 0) {
				cr_log_info("peek shard %u: %d", sh, m);
				bad = 1;
				break;
			}
			for (int k = 0; k < m; k++) {
				struct trec r;
				if (rec[k].len != sizeof(r) || rec[k].seq != seq[sh]) {
					bad = 2;
					break;
				}
				seq[sh]++;
				memcpy(&r, rec[k].data, sizeof(r));
				if (r.producer >= MP_PRODUCERS || r.key >= MP_KEYS ||
				    rec[k].key_hash != key_hash_of(r.key) ||
				    spate_shard_of_hash(rec[k].key_hash, MP_SHARDS) != sh) {
					bad = 3;
					break;
				}
				if (r.ctr != expect[r.producer][r.key]) {
					cr_log_info("producer %u key %u: got %llu, want %llu", r.producer,
						    r.key, (unsigned long long)r.ctr,
						    (unsigned long long)expect[r.producer][r.key]);
					bad = 4;
					break;
				}
				expect[r.producer][r.key]++;
			}
			if (m > 0) {
				spate_ring_release(rd[sh], (unsigned)m);
				total += (unsigned)m;
				progress = 1;
			}
		}
		if (!progress) {
			if (fin == MP_PRODUCERS)
				break; /* all done and nothing left: short */
			sched_yield();
		}
	}
	for (unsigned i = 0; i < MP_PRODUCERS; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < MP_PRODUCERS; i++)
		cr_assert_eq(a[i].err, 0, "producer %u: %d", i, a[i].err);
	cr_assert_eq(bad, 0, "reader found a bad record (%d)", bad);
	cr_assert_eq(total, want);
	for (unsigned pr = 0; pr < MP_PRODUCERS; pr++) {
		uint64_t sum = 0;
		for (unsigned k = 0; k < MP_KEYS; k++)
			sum += expect[pr][k];
		cr_assert_eq(sum, n, "producer %u", pr);
	}
	for (uint32_t i = 0; i < MP_SHARDS; i++)
		spate_ring_reader_close(rd[i]);
	rm_stream(s, bus, "s");
}

/* ------------------------------------------------------------------------ */
/* A producer in another process                                            */
/* ------------------------------------------------------------------------ */

enum { FORK_KEYS = 64, FORK_SHARDS = 4 };

/* Child: attach, write records 0..n-1 (key i % FORK_KEYS), alternating single
 * puts and batches; the exit status says what failed. */
static int child_produce(const char *bus, unsigned n)
{
	struct spate_stream *s = NULL;
	struct spate_producer *p = NULL;
	struct spate_put_result res[50];
	struct spate_put_entry e[50];
	struct trec recs[50];
	char keys[FORK_KEYS][16];

	for (unsigned k = 0; k < FORK_KEYS; k++)
		key_of(keys[k], sizeof(keys[k]), k);
	if (spate_stream_attach(bus, "s", &s) != 0)
		return 10;
	if (spate_stream_shards(s) != FORK_SHARDS)
		return 11;
	if (spate_producer_open(s, SPATE_RING_WAIT_YIELD, SPATE_PRODUCER_F_WAIT_FULL, &p) != 0)
		return 12;
	for (unsigned i = 0; i < FORK_SHARDS; i++)
		spate_producer_writer(p, i)->timeout_ns = 60000 * MS;
	for (unsigned i = 0; i < n;) {
		if ((i / 100) % 2 == 0) {
			unsigned k = i % FORK_KEYS;
			struct trec r = { 0, k, i };
			if (spate_put(p, keys[k], strlen(keys[k]), &r, sizeof(r), &res[0]) != 0)
				return 13;
			if (res[0].shard != spate_shard_of_hash(key_hash_of(k), FORK_SHARDS))
				return 14;
			i++;
			continue;
		}
		unsigned m = 0;
		for (; m < 50 && i < n; m++, i++) {
			unsigned k = i % FORK_KEYS;
			recs[m] = (struct trec){ 0, k, i };
			e[m] = (struct spate_put_entry){ .key = keys[k], .key_len = strlen(keys[k]),
							 .data = &recs[m], .len = sizeof(recs[m]) };
		}
		if (spate_put_batch(p, e, m, res) != 0)
			return 15;
	}
	spate_producer_close(p);
	spate_stream_close(s);
	return 0;
}

Test(stream, forked_child_produces_parent_reads, .timeout = 240)
{
	char bus[48];
	const unsigned n = 200000 / SCALE;
	uint64_t next_ctr[FORK_KEYS], seq[FORK_SHARDS] = { 0 };
	struct spate_ring_rec rec[128];

	for (unsigned k = 0; k < FORK_KEYS; k++)
		next_ctr[k] = k;
	bus_for(bus, sizeof(bus), "fork");
	struct spate_stream *s = mk_stream(bus, "s", FORK_SHARDS, 64 * KIB, 0, 0);
	struct spate_ring_reader *rd[FORK_SHARDS];
	for (uint32_t i = 0; i < FORK_SHARDS; i++)
		rd[i] = mk_reader(s, i, SPATE_RING_WAIT_YIELD);

	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(child_produce(bus, n));

	uint64_t total = 0;
	int bad = 0, st = 0, exited = 0;
	while (total < n && !bad) {
		int progress = 0;
		for (uint32_t sh = 0; sh < FORK_SHARDS && !bad; sh++) {
			int m = spate_ring_peek(rd[sh], rec, 128, UINT64_MAX);
			if (m < 0) {
				bad = 1;
				break;
			}
			for (int k = 0; k < m; k++) {
				struct trec r;
				if (rec[k].len != sizeof(r) || rec[k].seq != seq[sh]++) {
					bad = 2;
					break;
				}
				memcpy(&r, rec[k].data, sizeof(r));
				if (r.key >= FORK_KEYS || rec[k].key_hash != key_hash_of(r.key) ||
				    spate_shard_of_hash(rec[k].key_hash, FORK_SHARDS) != sh) {
					bad = 3;
					break;
				}
				if (r.ctr != next_ctr[r.key]) { /* per-key order */
					bad = 4;
					break;
				}
				next_ctr[r.key] += FORK_KEYS;
			}
			if (m > 0) {
				spate_ring_release(rd[sh], (unsigned)m);
				total += (unsigned)m;
				progress = 1;
			}
		}
		if (!progress) {
			if (exited)
				break;
			/* Reap a child that failed, rather than wait forever. */
			if (waitpid(pid, &st, WNOHANG) == pid)
				exited = 1;
			sched_yield();
		}
	}
	if (bad)
		kill(pid, SIGKILL);
	if (!exited)
		cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert_eq(bad, 0, "parent found a bad record (%d)", bad);
	cr_assert(WIFEXITED(st), "child did not exit normally (status %#x)", st);
	cr_assert_eq(WEXITSTATUS(st), 0, "child exit status %d", WEXITSTATUS(st));
	cr_assert_eq(total, n);
	uint64_t sum = 0;
	for (uint32_t sh = 0; sh < FORK_SHARDS; sh++) {
		cr_assert_gt(seq[sh], 0, "shard %u got nothing", sh);
		sum += seq[sh];
		spate_ring_reader_close(rd[sh]);
	}
	cr_assert_eq(sum, n);
	rm_stream(s, bus, "s");
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                              */
/* ------------------------------------------------------------------------ */

/* Entries of the table in use with consumer name @p name. */
static unsigned ckpt_count(struct spate_stream *s, const char *name)
{
	const struct spate_stream_hdr *h = spate_shm_user(spate_stream_shm(s));
	unsigned n = 0;

	for (uint32_t i = 0; i < h->max_consumers; i++) {
		const struct spate_stream_ckpt *c = (const void *)((const uint8_t *)h + h->ckpt_off +
								   i * h->ckpt_stride);
		if (atomic_load(&c->state) == SPATE_STREAM_CKPT_USED &&
		    (!name || strcmp(c->consumer, name) == 0))
			n++;
	}
	return n;
}

Test(stream, checkpoints, .timeout = 30)
{
	char bus[48], name[32];
	struct spate_stream_ckpt *c = NULL, *c2 = NULL, *x = NULL;

	bus_for(bus, sizeof(bus), "ckpt");
	struct spate_stream *s = mk_stream(bus, "s", 5, 64 * KIB, 0, 0);
	cr_assert_eq(spate_stream_ckpt_open(s, "lambda.fn-1", &c), 0);
	cr_assert_not_null(c);
	cr_assert_eq(c->state, SPATE_STREAM_CKPT_USED);
	cr_assert_str_eq(c->consumer, "lambda.fn-1");
	for (uint32_t i = 0; i < 5; i++)
		cr_assert_eq(spate_stream_ckpt_get(c, i), UINT64_MAX);
	spate_stream_ckpt_set(c, 2, 42);
	spate_stream_ckpt_set(c, 4, 0);
	cr_assert_eq(spate_stream_ckpt_get(c, 2), 42);
	cr_assert_eq(spate_stream_ckpt_get(c, 4), 0);
	cr_assert_eq(spate_stream_ckpt_get(c, 3), UINT64_MAX);
	cr_assert_eq(spate_stream_ckpt_open(s, "lambda.fn-1", &c2), 0);
	cr_assert_eq(c2, c, "same name, same entry");

	/* Another handle (another mapping) finds the same entry and values. */
	struct spate_stream *a = NULL;
	cr_assert_eq(spate_stream_attach(bus, "s", &a), 0);
	cr_assert_eq(spate_stream_ckpt_open(a, "lambda.fn-1", &x), 0);
	cr_assert_neq((void *)x, (void *)c);
	cr_assert_eq(spate_stream_ckpt_get(x, 2), 42);
	spate_stream_ckpt_set(x, 2, 43);
	cr_assert_eq(spate_stream_ckpt_get(c, 2), 43);

	/* Names. */
	char n41[SPATE_STREAM_NAME_MAX + 2];
	memset(n41, 'c', sizeof(n41) - 1);
	n41[sizeof(n41) - 1] = '\0';
	cr_assert_eq(spate_stream_ckpt_open(s, "", &x), -EINVAL);
	cr_assert_eq(spate_stream_ckpt_open(s, NULL, &x), -EINVAL);
	cr_assert_eq(spate_stream_ckpt_open(s, "a/b", &x), -EINVAL);
	cr_assert_eq(spate_stream_ckpt_open(s, n41, &x), -EINVAL);
	n41[SPATE_STREAM_NAME_MAX] = '\0';
	cr_assert_eq(spate_stream_ckpt_open(s, n41, &x), 0, "40 characters fit");
	cr_assert_str_eq(x->consumer, n41);
	cr_assert_eq(spate_stream_ckpt_open(s, "c", NULL), -EINVAL);

	/* Fill the table: 2 used, 62 more, then -ENOSPC. */
	struct spate_stream_ckpt *all[SPATE_STREAM_MAX_CONSUMERS];
	for (unsigned i = 2; i < SPATE_STREAM_MAX_CONSUMERS; i++) {
		snprintf(name, sizeof(name), "consumer-%u", i);
		cr_assert_eq(spate_stream_ckpt_open(i % 2 ? s : a, name, &all[i]), 0, "%s", name);
		spate_stream_ckpt_set(all[i], 0, i);
	}
	cr_assert_eq(ckpt_count(s, NULL), SPATE_STREAM_MAX_CONSUMERS);
	cr_assert_eq(spate_stream_ckpt_open(s, "one-too-many", &x), -ENOSPC);
	cr_assert_eq(spate_stream_ckpt_open(a, "one-too-many", &x), -ENOSPC);
	/* Existing names still open, each to its own entry. */
	for (unsigned i = 2; i < SPATE_STREAM_MAX_CONSUMERS; i++) {
		snprintf(name, sizeof(name), "consumer-%u", i);
		cr_assert_eq(spate_stream_ckpt_open(s, name, &x), 0);
		cr_assert_eq(spate_stream_ckpt_get(x, 0), i);
		cr_assert_str_eq(x->consumer, name);
	}
	cr_assert_eq(spate_stream_ckpt_open(s, "lambda.fn-1", &x), 0);
	cr_assert_eq(x, c);
	spate_stream_close(a);
	rm_stream(s, bus, "s");
}

enum { CK_THREADS = 8, CK_ROUNDS = 32 };

struct ck_arg {
	struct spate_stream *s;
	pthread_barrier_t *bar;
	struct spate_stream_ckpt *got[CK_ROUNDS];
	int rc[CK_ROUNDS];
};

static void *ck_opener(void *arg)
{
	struct ck_arg *a = arg;
	char name[32];

	for (unsigned r = 0; r < CK_ROUNDS; r++) {
		snprintf(name, sizeof(name), "race-%u", r);
		pthread_barrier_wait(a->bar);
		a->rc[r] = spate_stream_ckpt_open(a->s, name, &a->got[r]);
		if (a->rc[r] == 0)
			spate_stream_ckpt_set(a->got[r], 0, r);
	}
	return NULL;
}

Test(stream, checkpoint_concurrent_open_one_entry, .timeout = 60)
{
	char bus[48], name[32];
	pthread_t t[CK_THREADS];
	struct ck_arg a[CK_THREADS];
	pthread_barrier_t bar;

	bus_for(bus, sizeof(bus), "ckrace");
	struct spate_stream *s = mk_stream(bus, "s", 2, 64 * KIB, 0, 0);
	struct spate_stream *h2 = NULL;
	cr_assert_eq(spate_stream_attach(bus, "s", &h2), 0);
	cr_assert_eq(pthread_barrier_init(&bar, NULL, CK_THREADS), 0);
	for (unsigned i = 0; i < CK_THREADS; i++) {
		/* Half the threads through another mapping of the region. */
		a[i] = (struct ck_arg){ .s = i % 2 ? h2 : s, .bar = &bar };
		cr_assert_eq(pthread_create(&t[i], NULL, ck_opener, &a[i]), 0);
	}
	for (unsigned i = 0; i < CK_THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&bar);
	const uint8_t *b0 = spate_shm_user(spate_stream_shm(s));
	const uint8_t *b1 = spate_shm_user(spate_stream_shm(h2));
	for (unsigned r = 0; r < CK_ROUNDS; r++) {
		snprintf(name, sizeof(name), "race-%u", r);
		for (unsigned i = 0; i < CK_THREADS; i++) {
			cr_assert_eq(a[i].rc[r], 0, "thread %u round %u: %d", i, r, a[i].rc[r]);
			/* Same offset in the region = same entry. */
			ptrdiff_t off0 = (const uint8_t *)a[0].got[r] - b0;
			ptrdiff_t offi = (const uint8_t *)a[i].got[r] - (i % 2 ? b1 : b0);
			cr_assert_eq(offi, off0, "thread %u round %u got another entry", i, r);
		}
		cr_assert_eq(ckpt_count(s, name), 1, "%s", name);
		cr_assert_eq(spate_stream_ckpt_get(a[0].got[r], 0), r);
	}
	cr_assert_eq(ckpt_count(s, NULL), CK_ROUNDS);
	spate_stream_close(h2);
	rm_stream(s, bus, "s");
}

/* ------------------------------------------------------------------------ */
/* Corrupt regions                                                          */
/* ------------------------------------------------------------------------ */

static void expect_attach(const char *bus, const char *name, int want, const char *what)
{
	struct spate_stream *s = (void *)1;
	int rc = spate_stream_attach(bus, name, &s);

	if (rc == 0)
		spate_stream_close(s);
	else
		cr_expect_null(s, "%s: handle left on failure", what);
	cr_expect_eq(rc, want, "%s: attach returned %d, want %d", what, rc, want);
}

/* Apply @p stmt to header copy... then restore: h is the live header. */
#define CORRUPT(h, want, what, stmt)                                                  \
	do {                                                                          \
		struct spate_stream_hdr saved_;                                       \
		memcpy(&saved_, (h), sizeof(saved_));                                 \
		stmt;                                                                 \
		expect_attach(bus, "s", (want), (what));                              \
		memcpy((h), &saved_, sizeof(saved_));                                 \
		expect_attach(bus, "s", 0, "restored after " what);                   \
	} while (0)

Test(stream, corrupt_header_is_a_clean_error, .timeout = 60)
{
	char bus[48], rname[64];
	struct spate_shm *raw = NULL;

	bus_for(bus, sizeof(bus), "bad");
	snprintf(rname, sizeof(rname), "%s.s", bus);
	struct spate_stream *s = mk_stream(bus, "s", 2, 64 * KIB, 0, 0);
	spate_stream_close(s);
	cr_assert_eq(spate_shm_attach(rname, 0, &raw), 0);
	struct spate_stream_hdr *h = spate_shm_user(raw);
	expect_attach(bus, "s", 0, "intact");

	CORRUPT(h, -EBADMSG, "bad magic", h->magic ^= 1);
	CORRUPT(h, -EPROTO, "layout version", h->layout_version = SPATE_STREAM_LAYOUT_VERSION + 1);
	CORRUPT(h, -EBADMSG, "hdr_size", h->hdr_size += 8);
	CORRUPT(h, -EBADMSG, "durability", h->durability = 7);
	CORRUPT(h, -EBADMSG, "dur_off inside the checkpoint table", h->dur_off = h->ckpt_off);
	CORRUPT(h, -EBADMSG, "dur_off past the end", h->dur_off = h->total_size);
	CORRUPT(h, -EBADMSG, "dur_off unaligned", h->dur_off += 8);
	CORRUPT(h, -EAGAIN, "not ready", h->ready = 0);
	CORRUPT(h, -EBADMSG, "garbage, not ready", (h->ready = 0, h->magic = 12345));
	CORRUPT(h, -EBADMSG, "shards = 0", h->shards = 0);
	CORRUPT(h, -EBADMSG, "shards huge", h->shards = 1u << 30);
	CORRUPT(h, -EBADMSG, "shards = max", h->shards = SPATE_STREAM_MAX_SHARDS);
	CORRUPT(h, -EBADMSG, "one shard more", h->shards = 3);
	CORRUPT(h, -EBADMSG, "max_consumers = 0", h->max_consumers = 0);
	CORRUPT(h, -EBADMSG, "max_consumers huge", h->max_consumers = 1000);
	CORRUPT(h, -EBADMSG, "ring offset out of range", h->rings_off = 1ull << 40);
	CORRUPT(h, -EBADMSG, "ring offset overflows", h->rings_off = UINT64_MAX - 4095);
	CORRUPT(h, -EBADMSG, "ring offset inside the header", h->rings_off = 0);
	CORRUPT(h, -EBADMSG, "ring offset unaligned", h->rings_off += 128);
	CORRUPT(h, -EBADMSG, "ring stride overflows", h->ring_stride = 1ull << 63);
	CORRUPT(h, -EBADMSG, "ring stride too small", h->ring_stride = 4096);
	CORRUPT(h, -EBADMSG, "checkpoint table overlaps rings", h->ckpt_off -= 4096);
	CORRUPT(h, -EBADMSG, "checkpoint table past the end", h->ckpt_off = h->total_size);
	CORRUPT(h, -EBADMSG, "checkpoint stride too small", h->ckpt_stride = 0);
	CORRUPT(h, -EBADMSG, "checkpoint stride overflows", h->ckpt_stride = 1ull << 62);
	CORRUPT(h, -EBADMSG, "total size past the region", h->total_size = 1ull << 50);
	CORRUPT(h, -EBADMSG, "other bus", h->bus[0] ^= 1);
	CORRUPT(h, -EBADMSG, "other name", h->name[0] = 't');
	struct spate_stream_hdr unterminated = *h;
	memset(unterminated.name, 'x', sizeof(unterminated.name));
	CORRUPT(h, -EBADMSG, "name without NUL", memcpy(h, &unterminated, sizeof(*h)));

	/* The rings themselves are validated too. */
	struct spate_ring_shared *r1 =
		(void *)((uint8_t *)h + h->rings_off + h->ring_stride);
	struct spate_ring_meta m1 = r1->meta;
	r1->meta.magic ^= 1;
	expect_attach(bus, "s", -EBADMSG, "ring 1 magic");
	r1->meta = m1;
	r1->meta.flags |= SPATE_RING_F_NO_BLOCKING; /* valid alone, unlike ring 0 */
	expect_attach(bus, "s", -EBADMSG, "ring 1 differs from ring 0");
	r1->meta = m1;
	r1->meta.capacity *= 2;
	expect_attach(bus, "s", -EBADMSG, "ring 1 capacity");
	r1->meta = m1;
	expect_attach(bus, "s", 0, "rings restored");

	/* Random bytes of the header and of ring 0's meta: never a crash. */
	uint64_t seed = 0x1234567;
	unsigned ok = 0;
	uint8_t *r0 = (uint8_t *)h + h->rings_off;
	struct spate_stream_hdr hs = *h;
	struct spate_ring_meta m0 = ((struct spate_ring_shared *)(void *)r0)->meta;
	for (unsigned it = 0; it < 2000 / SCALE; it++) {
		unsigned flips = 1 + (unsigned)(rng_next(&seed) % 3);
		for (unsigned f = 0; f < flips; f++) {
			uint64_t v = rng_next(&seed);
			if (v & 1)
				((uint8_t *)h)[(v >> 8) % sizeof(*h)] = (uint8_t)(v >> 32);
			else
				r0[(v >> 8) % sizeof(m0)] = (uint8_t)(v >> 32);
		}
		struct spate_stream *x = NULL;
		int rc = spate_stream_attach(bus, "s", &x);
		cr_assert_leq(rc, 0);
		if (rc == 0) {
			ok++;
			spate_stream_close(x);
		}
		*h = hs;
		((struct spate_ring_shared *)(void *)r0)->meta = m0;
	}
	cr_log_info("fuzz: %u of %u corrupted headers still attached (reserved bytes)", ok,
		    2000 / SCALE);
	expect_attach(bus, "s", 0, "restored after fuzzing");

	/* A truncated file: the region's header no longer matches (shm.c). */
	char path[4096];
	snprintf(path, sizeof(path), "%s", spate_shm_path(raw));
	spate_shm_detach(raw);
	cr_assert_eq(truncate(path, 1 << 20), 0);
	expect_attach(bus, "s", -EBADMSG, "truncated file");
	rm_stream(NULL, bus, "s");
}

Test(stream, truncated_region_is_a_clean_error, .timeout = 60)
{
	char bus[48], rname[64], path[4096];
	struct spate_shm *raw = NULL;

	bus_for(bus, sizeof(bus), "trunc");
	snprintf(rname, sizeof(rname), "%s.s", bus);
	/* 8 rings of 1 MiB: more than 4 MiB. */
	struct spate_stream *s = mk_stream(bus, "s", 8, MIB, 0, 0);
	spate_stream_close(s);
	cr_assert_eq(spate_shm_attach(rname, 0, &raw), 0);
	snprintf(path, sizeof(path), "%s", spate_shm_path(raw));
	uint64_t user_off = spate_shm_header(raw)->user_off;
	cr_assert_gt(spate_shm_header(raw)->total_size, 4 * MIB);
	spate_shm_detach(raw);

	/* Cut the file to 4 MiB and make the region header agree, so that
	 * the region attaches and only the stream's checks stand in the way. */
	cr_assert_eq(truncate(path, 4 * MIB), 0);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	struct spate_shm_hdr *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(sh, MAP_FAILED);
	close(fd);
	sh->total_size = 4 * MIB;
	sh->user_size = 4 * MIB - user_off;
	munmap(sh, 4096);
	cr_assert_eq(spate_shm_attach(rname, 0, &raw), 0, "the region itself is consistent");
	spate_shm_detach(raw);
	expect_attach(bus, "s", -EBADMSG, "stream larger than its region");
	cr_assert_eq(spate_stream_unlink(bus, "s"), 0);
}

/* ------------------------------------------------------------------------ */
/* Durability and first sequence numbers                                   */
/* ------------------------------------------------------------------------ */

Test(stream, first_seq_per_shard)
{
	char bus[48];
	uint64_t first[2] = { 1000, 777777 };
	struct spate_stream_params p = { .shards = 2, .ring_size = 64 * KIB,
					 .shm_flags = SPATE_SHM_F_NO_HUGE, .first_seq = first };
	struct spate_stream *s = NULL;
	struct spate_put_result res;

	bus_for(bus, sizeof(bus), "fseq");
	cr_assert_eq(spate_stream_create(bus, "fs", &p, &s), 0);
	struct spate_producer *pr = mk_producer(s, SPATE_RING_WAIT_BUSY, 0);
	for (uint32_t sh = 0; sh < 2; sh++) {
		uint32_t hash = sh ? 0xffffffffu : 0;
		cr_assert_eq(spate_put_hash(pr, hash, "x", 1, &res), 0);
		cr_assert_eq(res.shard, sh);
		cr_assert_eq(res.seq, first[sh]);
		cr_assert_eq(spate_put_hash(pr, hash, "y", 1, &res), 0);
		cr_assert_eq(res.seq, first[sh] + 1);
		cr_assert_eq(atomic_load(&spate_stream_dur(s, sh)->durable_seq), first[sh]);
	}
	cr_assert_null(spate_stream_dur(s, 2));
	spate_producer_close(pr);
	rm_stream(s, bus, "fs");
}

struct fake_persister {
	struct spate_stream *s;
	uint64_t delay_ns;
	_Atomic int go;
};

/* Plays the engine's persister for one shard: publishes durability late. */
static void *persist_later(void *arg)
{
	struct fake_persister *f = arg;
	struct spate_stream_dur *d = spate_stream_dur(f->s, 0);
	struct timespec ts = { 0, (long)f->delay_ns };

	while (!atomic_load(&f->go))
		sched_yield();
	nanosleep(&ts, NULL);
	struct spate_ring *r = spate_stream_ring(f->s, 0);
	uint64_t tail = atomic_load(&r->sh->pub.tail_seq);
	spate_stream_dur_publish(d, tail, tail, 0);
	return NULL;
}

Test(stream, put_waits_for_durability, .timeout = 30)
{
	char bus[48];
	struct spate_stream_params p = { .shards = 1, .ring_size = 64 * KIB,
					 .shm_flags = SPATE_SHM_F_NO_HUGE,
					 .durability = SPATE_DURABILITY_ALWAYS };
	struct spate_stream *s = NULL, *off = NULL;
	struct spate_put_result res;

	bus_for(bus, sizeof(bus), "dur");
	cr_assert_eq(spate_stream_create(bus, "dur", &p, &s), 0);
	cr_assert_eq(spate_stream_durability(s), SPATE_DURABILITY_ALWAYS);
	off = mk_stream(bus, "off", 1, 64 * KIB, 0, 0);
	cr_assert_eq(spate_stream_wait_durable(off, 0, 0, 0), -ENOTSUP);
	cr_assert_eq(spate_stream_wait_durable(s, 1, 0, 0), -EINVAL);

	struct spate_producer *pr = mk_producer(s, SPATE_RING_WAIT_BUSY, 0);
	/* Nobody persists: the put appends, then says nothing will make it durable. */
	cr_assert_eq(spate_put(pr, "k", 1, "v", 1, &res), -ENOTCONN);
	cr_assert_eq(res.error, -ENOTCONN);
	cr_assert_eq(res.seq, 0, "appended as record 0");

	/* A live persister that publishes 50 ms later: the put returns then. */
	spate_stream_dur_claim(s, 0, 1);
	struct fake_persister f = { .s = s, .delay_ns = 50000000 };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, persist_later, &f), 0);
	uint64_t t0 = spate_mono_ns();
	atomic_store(&f.go, 1);
	cr_assert_eq(spate_put(pr, "k", 1, "w", 1, &res), 0);
	uint64_t waited = spate_mono_ns() - t0;
	pthread_join(th, NULL);
	cr_assert_eq(res.seq, 1);
	cr_assert_geq(waited, 40000000ull, "returned after %llu ns, before durability",
		      (unsigned long long)waited);
	cr_assert_gt(atomic_load(&spate_stream_dur(s, 0)->durable_seq), 1);

	/* A persister error (disk full) reaches the producer as it is. */
	spate_stream_dur_publish(spate_stream_dur(s, 0), 2, 2, -ENOSPC);
	cr_assert_eq(spate_put(pr, "k", 1, "x", 1, &res), -ENOSPC);
	cr_assert_eq(res.seq, 2);
	struct spate_put_entry e[3] = {
		{ .key = "a", .key_len = 1, .data = "1", .len = 1 },
		{ .key = "b", .key_len = 1, .data = "2", .len = 1 },
		{ .key = "c", .key_len = 1, .data = "3", .len = 1 },
	};
	struct spate_put_result rs[3];
	cr_assert_eq(spate_put_batch(pr, e, 3, rs), 3);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(rs[i].error, -ENOSPC);
		cr_assert_eq(rs[i].seq, 3u + (unsigned)i);
	}
	/* Space is back and everything is durable: puts succeed again. */
	spate_stream_dur_publish(spate_stream_dur(s, 0), 6, 6, 0);
	cr_assert_eq(spate_stream_wait_durable(s, 0, 5, 0), 0);
	/* A bounded wait times out while the persister lags. */
	spate_producer_writer(pr, 0)->timeout_ns = 20000000;
	cr_assert_eq(spate_put(pr, "k", 1, "y", 1, &res), -ETIMEDOUT);
	cr_assert_eq(res.seq, 6);
	/* Opting out: the put returns at publication. */
	struct spate_producer *fast = NULL;
	spate_producer_close(pr);
	cr_assert_eq(spate_producer_open(s, SPATE_RING_WAIT_BUSY, SPATE_PRODUCER_F_NO_DURABLE_WAIT,
					 &fast), 0);
	cr_assert_eq(spate_put(fast, "k", 1, "z", 1, &res), 0);
	cr_assert_eq(res.seq, 7);
	/* The persister leaves: waiters are told at once. */
	spate_stream_dur_claim(s, 0, 0);
	cr_assert_eq(spate_stream_wait_durable(s, 0, 7, UINT64_MAX), -ENOTCONN);
	spate_producer_close(fast);
	rm_stream(off, bus, "off");
	rm_stream(s, bus, "dur");
}
