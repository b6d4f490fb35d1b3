/* SPDX-License-Identifier: MIT */
/*
 * iter.c - shard iterators and next tokens of the Kinesis API front:
 * opaque, tamper-evident, expiring.
 *
 * Design. A token is the base64 of a small binary record (version, kind,
 * shard, position, the stream's incarnation, the issue time in ms, the
 * stream name) followed by the first 16 bytes of its HMAC-SHA256 under a
 * key drawn from the kernel's random source when the front starts. A token
 * changed by one bit, made up, or issued by another engine (another key)
 * fails the MAC: InvalidArgumentException. One older than 5 minutes is
 * ExpiredIteratorException (ExpiredNextTokenException for list tokens),
 * as on Kinesis. The incarnation ties an iterator to one life of a stream:
 * a stream deleted and created again under the same name does not serve
 * its predecessor's iterators.
 *
 * Limits: tokens do not survive a restart of `spate run` (the key is new),
 * which clients see as expired-looking invalid iterators and answer by
 * asking for a new one, as after a Kinesis iterator expires.
 */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "engine/api/api_pvt.h"

#define TOK_VERSION 1u
#define TOK_MAC 16u
/* version, kind, shard, pos, incarnation, issued_ms, name length */
#define TOK_FIXED (1 + 1 + 4 + 8 + 8 + 8 + 1)

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void mac(const struct spate_api *a, const uint8_t *p, size_t n, uint8_t out[TOK_MAC])
{
	uint8_t full[EVP_MAX_MD_SIZE];
	unsigned fl = 0;

	HMAC(EVP_sha256(), a->mac_key, sizeof(a->mac_key), p, n, full, &fl);
	memcpy(out, full, TOK_MAC);
}

void spate_api_tok_encode(const struct spate_api *a, struct spate_api_tok *t, char *out)
{
	uint8_t raw[TOK_FIXED + SPATE_CONFIG_NAME_MAX + TOK_MAC];
	size_t nl = strnlen(t->stream, SPATE_CONFIG_NAME_MAX), n = 0;

	t->issued_ms = spate_now_ns() / 1000000;
	raw[n++] = TOK_VERSION;
	raw[n++] = t->kind;
	raw[n++] = (uint8_t)t->shard;
	raw[n++] = (uint8_t)(t->shard >> 8);
	raw[n++] = (uint8_t)(t->shard >> 16);
	raw[n++] = (uint8_t)(t->shard >> 24);
	put64(raw + n, t->pos);
	n += 8;
	put64(raw + n, t->incarnation);
	n += 8;
	put64(raw + n, t->issued_ms);
	n += 8;
	raw[n++] = (uint8_t)nl;
	memcpy(raw + n, t->stream, nl);
	n += nl;
	mac(a, raw, n, raw + n);
	n += TOK_MAC;
	/* 4 * ceil(n / 3) <= 4 * ceil(96 / 3) = 128 < SPATE_API_TOK_MAX */
	EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
}

int spate_api_tok_decode(const struct spate_api *a, const char *s, size_t len,
			 struct spate_api_tok *t)
{
	uint8_t raw[SPATE_API_TOK_MAX], m[TOK_MAC];
	int64_t n;

	if (len >= SPATE_API_TOK_MAX)
		return -EINVAL;
	n = spate_api_b64_decode(s, len, raw);
	if (n < (int64_t)(TOK_FIXED + TOK_MAC) || raw[0] != TOK_VERSION)
		return -EINVAL;
	size_t nl = raw[TOK_FIXED - 1];
	if (nl == 0 || nl > SPATE_CONFIG_NAME_MAX || (size_t)n != TOK_FIXED + nl + TOK_MAC)
		return -EINVAL;
	mac(a, raw, TOK_FIXED + nl, m);
	if (CRYPTO_memcmp(m, raw + TOK_FIXED + nl, TOK_MAC) != 0)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	t->kind = raw[1];
	t->shard = (uint32_t)raw[2] | (uint32_t)raw[3] << 8 | (uint32_t)raw[4] << 16 |
		   (uint32_t)raw[5] << 24;
	t->pos = get64(raw + 6);
	t->incarnation = get64(raw + 14);
	t->issued_ms = get64(raw + 22);
	memcpy(t->stream, raw + TOK_FIXED, nl);
	t->stream[nl] = '\0';
	uint64_t now_ms = spate_now_ns() / 1000000;
	if (now_ms > t->issued_ms && now_ms - t->issued_ms > a->iter_ttl_ms)
		return -ETIME;
	return 0;
}
