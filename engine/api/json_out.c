/* SPDX-License-Identifier: MIT */
/*
 * json_out.c - the answer side of the Kinesis API front: a growing output
 * buffer the operations write their JSON into directly, and base64 through
 * OpenSSL's EVP block functions.
 *
 * Design. Answers are generated, never parsed, and GetRecords writes up to
 * 10,000 records: building a json-c tree for them would cost several
 * allocations per record. So answers are appended to one buffer per call
 * (grown geometrically, reserved ahead for GetRecords), strings escaped
 * here (quotes, backslashes, control characters; bytes that are not UTF-8
 * become U+FFFD so a client's JSON parser never chokes on a record stored
 * by a non-Kinesis producer). Requests are parsed with json-c.
 *
 * Base64: EVP_EncodeBlock writes straight into the buffer; decoding checks
 * the alphabet and padding first (EVP_DecodeBlock alone skips whitespace
 * and reports padding as data), then calls EVP_DecodeBlock.
 *
 * Limits: after a failed allocation the buffer stays failed (oom) and the
 * caller answers 500; nothing is written past it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "engine/api/api_pvt.h"

int spate_api_buf_reserve(struct spate_api_buf *o, size_t more)
{
	if (o->oom)
		return -ENOMEM;
	if (o->cap - o->len > more)
		return 0;
	size_t cap = o->cap ? o->cap : 4096;
	while (cap - o->len <= more)
		cap *= 2;
	char *b = realloc(o->b, cap);
	if (!b) {
		o->oom = true;
		return -ENOMEM;
	}
	o->b = b;
	o->cap = cap;
	return 0;
}

void spate_api_buf_put(struct spate_api_buf *o, const void *p, size_t n)
{
	if (spate_api_buf_reserve(o, n) < 0)
		return;
	memcpy(o->b + o->len, p, n);
	o->len += n;
	o->b[o->len] = '\0';
}

void spate_api_buf_str(struct spate_api_buf *o, const char *s)
{
	spate_api_buf_put(o, s, strlen(s));
}

void spate_api_buf_fmt(struct spate_api_buf *o, const char *fmt, ...)
{
	va_list ap;

	if (spate_api_buf_reserve(o, 128) < 0)
		return;
	for (;;) {
		size_t room = o->cap - o->len;
		va_start(ap, fmt);
		int n = vsnprintf(o->b + o->len, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			o->len += (size_t)n;
			return;
		}
		if (spate_api_buf_reserve(o, (size_t)n + 1) < 0)
			return;
	}
}

/* Length of the UTF-8 sequence at @p s (at most @p n bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

bool spate_api_utf8_ok(const char *s, size_t n, size_t *chars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k = 0;

	while (i < n) {
		size_t l = utf8_seq(p + i, n - i);
		if (!l)
			return false;
		i += l;
		k++;
	}
	if (chars)
		*chars = k;
	return true;
}

void spate_api_buf_jstr(struct spate_api_buf *o, const void *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = s;

	/* Worst case: every byte becomes \ufffd (6 bytes) or \u00XX. */
	if (spate_api_buf_reserve(o, n * 6 + 3) < 0)
		return;
	char *w = o->b + o->len;
	*w++ = '"';
	for (size_t i = 0; i < n;) {
		unsigned char ch = p[i];
		if (ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\') {
			*w++ = (char)ch;
			i++;
		} else if (ch == '"' || ch == '\\') {
			*w++ = '\\';
			*w++ = (char)ch;
			i++;
		} else if (ch < 0x20 || ch == 0x7f) {
			memcpy(w, "\\u00", 4);
			w[4] = hex[ch >> 4];
			w[5] = hex[ch & 15];
			w += 6;
			i++;
		} else {
			size_t l = utf8_seq(p + i, n - i);
			if (l) {
				memcpy(w, p + i, l);
				w += l;
				i += l;
			} else {
				memcpy(w, "\\ufffd", 6);
				w += 6;
				i++;
			}
		}
	}
	*w++ = '"';
	*w = '\0';
	o->len = (size_t)(w - o->b);
}

void spate_api_buf_key(struct spate_api_buf *o, const char *key)
{
	size_t n = strlen(key);

	if (spate_api_buf_reserve(o, n + 3) < 0)
		return;
	char *w = o->b + o->len;
	*w++ = '"';
	memcpy(w, key, n);
	w += n;
	*w++ = '"';
	*w++ = ':';
	*w = '\0';
	o->len = (size_t)(w - o->b);
}

void spate_api_buf_b64(struct spate_api_buf *o, const void *p, size_t n)
{
	size_t need = 4 * ((n + 2) / 3);

	if (spate_api_buf_reserve(o, need + 3) < 0)
		return;
	o->b[o->len++] = '"';
	/* EVP_EncodeBlock takes an int length: records are at most 1 MiB. */
	int w = EVP_EncodeBlock((unsigned char *)o->b + o->len, p, (int)n);
	o->len += (size_t)(w > 0 ? w : 0);
	o->b[o->len++] = '"';
	o->b[o->len] = '\0';
}

/* Digits of @p v (at most 20) right-aligned ending at @p end; returns the start. */
static char *digits(char *end, uint64_t v)
{
	static const char two[] = "00010203040506070809101112131415161718192021222324252627282930"
				  "31323334353637383940414243444546474849505152535455565758596061"
				  "62636465666768697071727374757677787980818283848586878889909192"
				  "93949596979899";
	char *w = end;

	while (v >= 100) {
		w -= 2;
		memcpy(w, two + (v % 100) * 2, 2);
		v /= 100;
	}
	if (v >= 10) {
		w -= 2;
		memcpy(w, two + v * 2, 2);
	} else {
		*--w = (char)('0' + v);
	}
	return w;
}

void spate_api_buf_u64(struct spate_api_buf *o, uint64_t v)
{
	char tmp[24], *s = digits(tmp + sizeof(tmp), v);

	spate_api_buf_put(o, s, (size_t)(tmp + sizeof(tmp) - s));
}

void spate_api_buf_zpad(struct spate_api_buf *o, uint64_t v, unsigned width)
{
	char tmp[24], *end = tmp + sizeof(tmp), *s = digits(end, v);

	while ((unsigned)(end - s) < width)
		*--s = '0';
	spate_api_buf_put(o, s, (size_t)(end - s));
}

void spate_api_buf_time(struct spate_api_buf *o, uint64_t ns)
{
	uint64_t ms = ns / 1000000;

	spate_api_buf_u64(o, ms / 1000);
	spate_api_buf_put(o, ".", 1);
	spate_api_buf_zpad(o, ms % 1000, 3);
}

void spate_api_buf_free(struct spate_api_buf *o)
{
	free(o->b);
	*o = (struct spate_api_buf){ 0 };
}

static int b64_char(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '+' || ch == '/';
}

int64_t spate_api_b64_decode(const char *s, size_t n, void *out)
{
	size_t pad = 0;

	if (n % 4)
		return -EINVAL;
	if (n == 0)
		return 0;
	if (s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < n - pad; i++)
		if (!b64_char((unsigned char)s[i]))
			return -EINVAL;
	if (n > (size_t)INT32_MAX)
		return -EINVAL;
	int r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	if (r < 0 || (size_t)r < pad)
		return -EINVAL;
	return (int64_t)r - (int64_t)pad;
}
