/* SPDX-License-Identifier: MIT */
/*
 * The Kinesis identity of records (spate/kinesis.h): shard ids, sequence
 * numbers, MD5 hash keys against AWS's documented mapping, hash ranges that
 * agree with spate_shard_of_hash(), and the keyed envelope.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "spate/kinesis.h"
#include "spate/stream.h"

TestSuite(kinesis);

Test(kinesis, shard_ids)
{
	char b[SPATE_KINESIS_SHARD_ID_LEN + 1];

	cr_assert_eq(spate_kinesis_shard_id(3, b), 20);
	cr_assert_str_eq(b, "shardId-000000000003");
	cr_assert_eq(spate_kinesis_shard_parse(b), 3);
	cr_assert_eq(spate_kinesis_shard_parse("7"), 7);
	cr_assert_eq(spate_kinesis_shard_parse("shardId-"), -EINVAL);
	cr_assert_eq(spate_kinesis_shard_parse("shardId-00000000000x"), -EINVAL);
	cr_assert_eq(spate_kinesis_shard_parse("shardId-0000000000001"), -EINVAL); /* 13 digits */
	cr_assert_eq(spate_kinesis_shard_parse("shardId-999999999999"), -EINVAL);  /* > 2^32 */
}

Test(kinesis, sequence_numbers_sort_in_put_order)
{
	char a[SPATE_KINESIS_SEQ_LEN + 1], b[SPATE_KINESIS_SEQ_LEN + 1];
	uint64_t inc, seq;

	spate_kinesis_seq_format(0xdeadbeefcafef00dull, 9, a);
	spate_kinesis_seq_format(0xdeadbeefcafef00dull, 10, b);
	cr_assert_eq(strlen(a), SPATE_KINESIS_SEQ_LEN);
	cr_assert_neq(a[0], '0');
	cr_assert_lt(strcmp(a, b), 0);
	cr_assert_eq(spate_kinesis_seq_parse(b, &inc, &seq), 0);
	cr_assert_eq(inc, 0xdeadbeefcafef00dull);
	cr_assert_eq(seq, 10);
	spate_kinesis_seq_format(UINT64_MAX, UINT64_MAX, a);
	cr_assert_eq(spate_kinesis_seq_parse(a, &inc, &seq), 0);
	cr_assert_eq(seq, UINT64_MAX);
	a[5] = 'x';
	cr_assert_eq(spate_kinesis_seq_parse(a, &inc, &seq), -EINVAL);
	cr_assert_eq(spate_kinesis_seq_parse("49", &inc, &seq), -EINVAL);
	/* 2^64 in the seq part */
	cr_assert_eq(spate_kinesis_seq_parse("490000000000000000000118446744073709551616", &inc, &seq),
		     -EINVAL);
}

Test(kinesis, md5_hash_key)
{
	uint8_t md5[16];
	/* MD5("a") = 0cc175b9c0f1b6a831c399e269772661 */
	uint32_t h = spate_kinesis_key_hash("a", 1, md5);

	cr_assert_eq(h, 0x0cc175b9u);
	cr_assert_eq(md5[15], 0x61);
}

Test(kinesis, explicit_hash_keys)
{
	uint32_t h;

	cr_assert_eq(spate_kinesis_hash_parse("0", &h), 0);
	cr_assert_eq(h, 0);
	cr_assert_eq(spate_kinesis_hash_parse("340282366920938463463374607431768211455", &h), 0);
	cr_assert_eq(h, UINT32_MAX);
	cr_assert_eq(spate_kinesis_hash_parse("340282366920938463463374607431768211456", &h), -ERANGE);
	/* 2^127 */
	cr_assert_eq(spate_kinesis_hash_parse("170141183460469231731687303715884105728", &h), 0);
	cr_assert_eq(h, 0x80000000u);
	cr_assert_eq(spate_kinesis_hash_parse("-1", &h), -EINVAL);
	cr_assert_eq(spate_kinesis_hash_parse("", &h), -EINVAL);
}

/* Every published range routes exactly to its shard: both ends, and ranges tile 0 .. 2^128-1. */
Test(kinesis, ranges_agree_with_routing)
{
	static const uint32_t counts[] = {1, 2, 3, 5, 7, 64, 1000, 1024};
	char lo[40], hi[40], prev_hi[40];

	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		uint32_t n = counts[c];

		for (uint32_t i = 0; i < n; i++) {
			uint32_t hl, hh;

			cr_assert_eq(spate_kinesis_hash_range(i, n, lo, hi), 0);
			cr_assert_eq(spate_kinesis_hash_parse(lo, &hl), 0);
			cr_assert_eq(spate_kinesis_hash_parse(hi, &hh), 0);
			cr_assert_eq(spate_shard_of_hash(hl, n), i, "n=%u i=%u lo", n, i);
			cr_assert_eq(spate_shard_of_hash(hh, n), i, "n=%u i=%u hi", n, i);
			if (i == 0)
				cr_assert_str_eq(lo, "0");
			else
				cr_assert_eq(spate_shard_of_hash(hl - 1, n), i - 1);
			(void)prev_hi;
		}
		cr_assert_str_eq(hi, "340282366920938463463374607431768211455");
	}
	cr_assert_eq(spate_kinesis_hash_range(2, 2, lo, hi), -EINVAL);
}

Test(kinesis, keyed_envelope)
{
	uint8_t buf[64];
	struct spate_ring_rec r = {0};
	struct spate_kinesis_view v;
	int64_t n = spate_kinesis_keyed_encode(buf, sizeof(buf), "user-7", 6, "hello", 5);

	cr_assert_eq(n, (int64_t)SPATE_KINESIS_KEYED_LEN(6, 5));
	r.data = buf;
	r.len = (uint32_t)n;
	r.type = SPATE_RECORD_TYPE_KEYED;
	r.key_hash = 0xabcdef01u;
	cr_assert_eq(spate_kinesis_view(&r, &v), 0);
	cr_assert_eq(v.key_len, 6);
	cr_assert_eq(memcmp(v.key, "user-7", 6), 0);
	cr_assert_eq(v.len, 5);
	cr_assert_eq(memcmp(v.data, "hello", 5), 0);
	/* unkeyed: hex key, whole payload */
	r.type = 0;
	cr_assert_eq(spate_kinesis_view(&r, &v), 0);
	cr_assert_str_eq((const char *)v.key, "abcdef01");
	cr_assert_eq(v.len, (size_t)n);
	/* malformed: key longer than the record */
	buf[0] = 200;
	r.type = SPATE_RECORD_TYPE_KEYED;
	cr_assert_eq(spate_kinesis_view(&r, &v), -EBADMSG);
	cr_assert_eq(v.len, (size_t)n);
	cr_assert_eq(spate_kinesis_keyed_encode(buf, 4, "k", 1, "xyz", 3), -ENOSPC);
	cr_assert_eq(spate_kinesis_keyed_encode(buf, 64, "", 0, "xyz", 3), -EINVAL);
}

/* A keyed envelope with an origin (a NATS import): the same key and data
 * through spate_kinesis_view(), and the origin back. */
Test(kinesis, keyed_origin_envelope)
{
	uint8_t buf[64];
	struct spate_kinesis_view v;
	int64_t n = spate_kinesis_origin_encode(buf, sizeof(buf), "user-7", 6, 0xA1B2C3D4u,
						0x0102030405060708ull, "hello", 5);
	struct spate_ring_rec r = { .data = buf, .len = (uint32_t)n,
				    .type = SPATE_RECORD_TYPE_KEYED_ORIGIN };
	uint32_t id = 0;
	uint64_t seq = 0;

	cr_assert_eq(n, (int64_t)SPATE_KINESIS_ORIGIN_LEN(6, 5));
	cr_assert_eq(spate_kinesis_view(&r, &v), 0);
	cr_assert_eq(v.key_len, 6u);
	cr_assert_eq(memcmp(v.key, "user-7", 6), 0);
	cr_assert_eq(v.len, 5u);
	cr_assert_eq(memcmp(v.data, "hello", 5), 0);
	cr_assert_eq(spate_kinesis_origin(&r, &id, &seq), 0);
	cr_assert_eq(id, 0xA1B2C3D4u);
	cr_assert_eq(seq, 0x0102030405060708ull);
	r.len = 6 + 2 + 11; /* cut into the origin */
	cr_assert_eq(spate_kinesis_origin(&r, &id, &seq), -EBADMSG);
	cr_assert_eq(spate_kinesis_view(&r, &v), -EBADMSG);
	r.type = SPATE_RECORD_TYPE_KEYED;
	cr_assert_eq(spate_kinesis_origin(&r, NULL, NULL), -ENOENT);
	cr_assert_eq(spate_kinesis_origin_encode(buf, 8, "k", 1, 1, 1, "xyz", 3), -ENOSPC);
}
