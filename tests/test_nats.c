/* SPDX-License-Identifier: MIT */
/*
 * test_nats.c - the bridge's Spate-Record header value (plugins/nats_conn.h):
 * what the export writes, the import must read back as the same key, for
 * keys that are plain text, hold spaces or control bytes, have leading or
 * trailing blanks (libnats trims a header value), or start with "hex:".
 * (The wire itself, libnats's parse of it, is tests/nats_bridge.sh's: B's
 * keys must map one to one onto the producer's.)
 */
#include <criterion/criterion.h>
#include <string.h>

#include "plugins/nats_conn.h"
#include "spate/kinesis.h"

/* Write the value for @p key, read the key back as the import does
 * (spate_nats_record_key, then spate_nats_key_unhex). */
static size_t roundtrip(const void *key, size_t klen, char *out)
{
	char seq[SPATE_KINESIS_SEQ_LEN + 1], shard[SPATE_KINESIS_SHARD_ID_LEN + 1];
	char v[SPATE_NATS_RECORD_MAX];

	spate_kinesis_seq_format(7, 12345, seq);
	spate_kinesis_shard_id(3, shard);
	size_t vl = spate_nats_record_value(v, seq, shard, 1733350000123456789ull, key, klen);
	cr_assert_eq(vl, strlen(v));
	/* One header line: no CR/LF, and nothing libnats would trim. */
	cr_assert_null(strpbrk(v, "\r\n"));
	cr_assert(v[vl - 1] != ' ' && v[vl - 1] != '\t');
	cr_assert(!strncmp(v, seq, SPATE_KINESIS_SEQ_LEN));
	cr_assert(!strncmp(v + SPATE_KINESIS_SEQ_LEN + 1, shard, SPATE_KINESIS_SHARD_ID_LEN));
	cr_assert(!strncmp(v + SPATE_KINESIS_SEQ_LEN + 1 + SPATE_KINESIS_SHARD_ID_LEN + 1,
			   "1733350000123456789 ", 20));
	const char *k = spate_nats_record_key(v);
	cr_assert_not_null(k);
	size_t n = strlen(k);
	ssize_t d = spate_nats_key_unhex(k, n, out);
	if (d < 0) {
		memcpy(out, k, n);
		d = (ssize_t)n;
	}
	return (size_t)d;
}

Test(nats, record_value_keys)
{
	static const struct {
		const char *key;
		size_t len;
		bool hex;
	} keys[] = {
		{ "k12", 3, false },
		{ "user 42 / eu", 12, false },    /* spaces inside: text */
		{ " lead", 5, true },             /* a header value is trimmed */
		{ "trail\t", 6, true },
		{ "a\nb\x01", 4, true },          /* control bytes */
		{ "hex:41", 6, true },            /* would decode to "A" */
		{ "\xff\xfe\x00z", 4, true },     /* any bytes */
	};
	char out[SPATE_KINESIS_KEY_MAX];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char v[SPATE_NATS_RECORD_MAX], seq[SPATE_KINESIS_SEQ_LEN + 1] = { 0 };
		memset(seq, '1', SPATE_KINESIS_SEQ_LEN);
		spate_nats_record_value(v, seq, "shardId-000000000000", 1, keys[i].key, keys[i].len);
		cr_assert_eq(!strncmp(spate_nats_record_key(v), "hex:", 4), keys[i].hex,
			     "key %zu: hex expected %d in \"%s\"", i, keys[i].hex, v);
		size_t n = roundtrip(keys[i].key, keys[i].len, out);
		cr_assert_eq(n, keys[i].len, "key %zu: length %zu, want %zu", i, n, keys[i].len);
		cr_assert(!memcmp(out, keys[i].key, n), "key %zu differs after the round trip", i);
	}
}

Test(nats, record_key_malformed)
{
	char out[8];

	cr_assert_null(spate_nats_record_key("no spaces"));
	cr_assert_null(spate_nats_record_key("two spaces only"));
	cr_assert_str_eq(spate_nats_record_key("a b c key with spaces"), "key with spaces");
	cr_assert_eq(spate_nats_key_unhex("hex:4", 5, out), -1);    /* odd */
	cr_assert_eq(spate_nats_key_unhex("hex:zz", 6, out), -1);   /* not hex */
	cr_assert_eq(spate_nats_key_unhex("plain", 5, out), -1);
	cr_assert_eq(spate_nats_key_unhex("hex:4142", 8, out), 2);
	cr_assert(!memcmp(out, "AB", 2));
}
