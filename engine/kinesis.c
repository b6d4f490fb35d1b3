/* SPDX-License-Identifier: MIT */
/*
 * The Kinesis identity of records (spate/kinesis.h): shard ids, sequence
 * numbers, MD5 hash keys and their ranges, and the keyed envelope that
 * carries a partition key inside a record.
 *
 * Pure functions over their arguments. 128-bit hash keys are handled as
 * unsigned __int128 (gcc and clang on 64-bit targets). MD5 is OpenSSL's
 * libcrypto, as Kinesis defines the hash key by it (not for security).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "spate/kinesis.h"

__extension__ typedef unsigned __int128 u128_t; /* local shorthand, never in a header */

int spate_kinesis_shard_id(uint32_t shard, char *buf)
{
	snprintf(buf, SPATE_KINESIS_SHARD_ID_LEN + 1, "shardId-%012u", shard);
	return SPATE_KINESIS_SHARD_ID_LEN;
}

/* Parse 1..maxd decimal digits filling the whole of [s, s+n); -EINVAL otherwise. */
static int parse_digits(const char *s, size_t n, size_t maxd, u128_t *out)
{
	u128_t v = 0;

	if (n == 0 || n > maxd)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

int64_t spate_kinesis_shard_parse(const char *s)
{
	u128_t v;

	if (!s)
		return -EINVAL;
	if (strncmp(s, "shardId-", 8) == 0)
		s += 8;
	if (parse_digits(s, strlen(s), 12, &v) < 0 || v > UINT32_MAX)
		return -EINVAL;
	return (int64_t)v;
}

int spate_kinesis_seq_format(uint64_t incarnation, uint64_t seq, char *buf)
{
	snprintf(buf, SPATE_KINESIS_SEQ_LEN + 1, "49%020llu%020llu", (unsigned long long)incarnation,
		 (unsigned long long)seq);
	return SPATE_KINESIS_SEQ_LEN;
}

int spate_kinesis_seq_parse(const char *s, uint64_t *incarnation, uint64_t *seq)
{
	u128_t inc, sq;

	if (!s || strlen(s) != SPATE_KINESIS_SEQ_LEN || s[0] != '4' || s[1] != '9')
		return -EINVAL;
	if (parse_digits(s + 2, 20, 20, &inc) < 0 || inc > UINT64_MAX ||
	    parse_digits(s + 22, 20, 20, &sq) < 0 || sq > UINT64_MAX)
		return -EINVAL;
	if (incarnation)
		*incarnation = (uint64_t)inc;
	*seq = (uint64_t)sq;
	return 0;
}

uint32_t spate_kinesis_key_hash(const void *key, size_t len, uint8_t md5[16])
{
	uint8_t d[EVP_MAX_MD_SIZE];
	unsigned int dl = 0;

	/* EVP_Digest fails only without an MD5 implementation (a FIPS-only
	 * OpenSSL); the key then hashes as all zeroes, to shard 0. */
	if (!EVP_Digest(key, len, d, &dl, EVP_md5(), NULL) || dl != 16)
		memset(d, 0, 16);
	if (md5)
		memcpy(md5, d, 16);
	return (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
}

int spate_kinesis_hash_parse(const char *s, uint32_t *hash)
{
	u128_t v = 0;
	size_t n;

	if (!s)
		return -EINVAL;
	n = strlen(s);
	if (n == 0 || n > SPATE_KINESIS_HASH_KEY_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned dgt;

		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		dgt = (unsigned)(s[i] - '0');
		/* v * 10 + dgt must stay below 2^128 */
		if (v > (~(u128_t)0 - dgt) / 10)
			return -ERANGE;
		v = v * 10 + dgt;
	}
	*hash = (uint32_t)(v >> 96);
	return 0;
}

static void u128_dec(u128_t v, char *buf)
{
	char tmp[SPATE_KINESIS_HASH_KEY_MAX + 1];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + (unsigned)(v % 10));
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = '\0';
}

/* Lowest 32-bit hash of shard i of n: ceil(i * 2^32 / n); 2^32 for i == n. */
static uint64_t range_lo(uint32_t i, uint32_t n)
{
	return (((uint64_t)i << 32) + n - 1) / n;
}

int spate_kinesis_hash_range(uint32_t shard, uint32_t shards, char *start, char *end)
{
	u128_t lo, hi;

	if (shards == 0 || shard >= shards)
		return -EINVAL;
	lo = (u128_t)range_lo(shard, shards) << 96;
	hi = ((u128_t)range_lo(shard + 1, shards) << 96) - 1; /* 2^128 - 1 for the last */
	u128_dec(lo, start);
	u128_dec(hi, end);
	return 0;
}

int64_t spate_kinesis_keyed_encode(void *out, size_t cap, const void *key, size_t key_len,
				   const void *data, size_t len)
{
	uint8_t *o = out;
	size_t total;

	if (key_len == 0 || key_len > SPATE_KINESIS_KEY_MAX || (!key && key_len) || (!data && len))
		return -EINVAL;
	total = SPATE_KINESIS_KEYED_LEN(key_len, len);
	if (cap < total)
		return -ENOSPC;
	o[0] = (uint8_t)(key_len & 0xff);
	o[1] = (uint8_t)(key_len >> 8);
	memcpy(o + 2, key, key_len);
	if (len)
		memcpy(o + 2 + key_len, data, len);
	return (int64_t)total;
}

int64_t spate_kinesis_origin_encode(void *out, size_t cap, const void *key, size_t key_len,
				    uint32_t origin_id, uint64_t origin_seq, const void *data,
				    size_t len)
{
	uint8_t *o = out;
	size_t total;

	if (key_len == 0 || key_len > SPATE_KINESIS_KEY_MAX || (!key && key_len) || (!data && len))
		return -EINVAL;
	total = SPATE_KINESIS_ORIGIN_LEN(key_len, len);
	if (cap < total)
		return -ENOSPC;
	o[0] = (uint8_t)(key_len & 0xff);
	o[1] = (uint8_t)(key_len >> 8);
	memcpy(o + 2, key, key_len);
	o += 2 + key_len;
	for (int i = 0; i < 4; i++)
		o[i] = (uint8_t)(origin_id >> (8 * i));
	for (int i = 0; i < 8; i++)
		o[4 + i] = (uint8_t)(origin_seq >> (8 * i));
	if (len)
		memcpy(o + 12, data, len);
	return (int64_t)total;
}

/* Key length of an envelope of @p hdr extra bytes after the key, or 0 if
 * malformed. */
static size_t env_key_len(const struct spate_ring_rec *r, size_t hdr)
{
	const uint8_t *p = r->data;
	size_t kl;

	if (r->len < 2)
		return 0;
	kl = (size_t)p[0] | (size_t)p[1] << 8;
	if (kl == 0 || kl > SPATE_KINESIS_KEY_MAX || 2 + kl + hdr > r->len)
		return 0;
	return kl;
}

int spate_kinesis_origin(const struct spate_ring_rec *r, uint32_t *origin_id,
			 uint64_t *origin_seq)
{
	const uint8_t *p;
	size_t kl;
	uint32_t id = 0;
	uint64_t seq = 0;

	if (r->type != SPATE_RECORD_TYPE_KEYED_ORIGIN)
		return -ENOENT;
	kl = env_key_len(r, 12);
	if (!kl)
		return -EBADMSG;
	p = (const uint8_t *)r->data + 2 + kl;
	for (int i = 0; i < 4; i++)
		id |= (uint32_t)p[i] << (8 * i);
	for (int i = 0; i < 8; i++)
		seq |= (uint64_t)p[4 + i] << (8 * i);
	if (origin_id)
		*origin_id = id;
	if (origin_seq)
		*origin_seq = seq;
	return 0;
}

int spate_kinesis_view(const struct spate_ring_rec *r, struct spate_kinesis_view *v)
{
	const uint8_t *p = r->data;
	size_t kl, hdr;

	/* The hex key without printf: GetRecords views 10,000 records a call. */
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 8; i++)
		v->hex_key[i] = hex[(r->key_hash >> (28 - 4 * i)) & 15];
	v->hex_key[8] = '\0';
	v->key = v->hex_key;
	v->key_len = 8;
	v->data = r->data;
	v->len = r->len;
	if (r->type != SPATE_RECORD_TYPE_KEYED && r->type != SPATE_RECORD_TYPE_KEYED_ORIGIN)
		return 0;
	hdr = r->type == SPATE_RECORD_TYPE_KEYED_ORIGIN ? 12 : 0;
	kl = env_key_len(r, hdr);
	if (!kl)
		return -EBADMSG;
	v->key = p + 2;
	v->key_len = kl;
	v->data = p + 2 + kl + hdr;
	v->len = r->len - 2 - kl - hdr;
	return 0;
}
