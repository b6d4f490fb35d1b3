/* SPDX-License-Identifier: MIT */
/*
 * event.c - a batch as Lambda's Kinesis event, and the function's answer
 * (batchItemFailures) as a batch result.
 *
 * Design. The event is written straight into a reused buffer, record by
 * record, in the order and shape Lambda sends (docs/functions.md shows
 * one): the per-(consumer, shard) part of every record (eventName,
 * invokeIdentityArn, awsRegion, eventSourceARN) is formatted once into
 * spate_fn_ident.tail, the rest comes from the record: its partition key
 * and data through spate_kinesis_view() (the keyed envelope a Kinesis
 * PutRecord stored, or the key hash in hex for a record put without one),
 * its 42-digit sequence number and shard id from spate/kinesis.h, so they
 * are the ones the Kinesis API front shows. Data is base64 by libcrypto's
 * EVP_EncodeBlock; strings are JSON-escaped (", \ and control characters;
 * other bytes as they are). Writing it here rather than through json-c
 * objects saves an allocation per field: at 1,000 records per batch the
 * event is built at memory speed (bench functions measures it).
 *
 * The answer is parsed with json-c and read as Lambda reads a response
 * with ReportBatchItemFailures (event.h lists the cases). Sequence numbers
 * name records by (incarnation, ring sequence); the batch's records are in
 * ascending order, so each identifier is found by binary search.
 *
 * Limits. A partition key that is not valid UTF-8 is passed byte for byte
 * (a JSON reader may replace the bad bytes); Kinesis keys are Unicode.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "engine/functions/event.h"

int spate_fn_buf_reserve(struct spate_fn_buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

void spate_fn_buf_free(struct spate_fn_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

int spate_fn_ident_init(struct spate_fn_ident *id, const char *stream, uint64_t incarnation,
			uint32_t shard, const char *region, const char *account,
			const char *consumer)
{
	int n;

	memset(id, 0, sizeof(*id));
	id->incarnation = incarnation;
	id->shard = shard;
	spate_kinesis_shard_id(shard, id->shard_id);
	n = snprintf(id->tail, sizeof(id->tail),
		     "\",\"eventName\":\"aws:kinesis:record\","
		     "\"invokeIdentityArn\":\"arn:aws:iam::%s:role/spate-%s\","
		     "\"awsRegion\":\"%s\","
		     "\"eventSourceARN\":\"arn:aws:kinesis:%s:%s:stream/%s\"}",
		     account, consumer, region, region, account, stream);
	if (n < 0 || (size_t)n >= sizeof(id->tail))
		return -ENAMETOOLONG;
	id->tail_len = (size_t)n;
	return 0;
}

/* Append @p len bytes of @p s JSON-escaped (room reserved by the caller:
 * 6 bytes per input byte at most). */
static size_t put_escaped(char *o, const unsigned char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char *start = o;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			*o++ = '\\';
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	return (size_t)(o - start);
}

/* @p v in exactly @p width digits, zero-padded (its low digits if longer). */
static size_t put_u64_pad(char *o, uint64_t v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		o[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return (size_t)width;
}

/* @p v in decimal. */
static size_t put_u64(char *o, uint64_t v)
{
	char t[20];
	size_t n = 0;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		o[i] = t[n - 1 - i];
	return n;
}

static size_t put_lit(char *o, const char *lit, size_t n)
{
	memcpy(o, lit, n);
	return n;
}
#define LIT(o, s) put_lit((o), (s), sizeof(s) - 1)

int spate_fn_event_build(struct spate_fn_buf *out, const struct spate_ring_rec *recs, uint32_t n,
			 const struct spate_fn_ident *id)
{
	out->len = 0;
	if (spate_fn_buf_reserve(out, 16) < 0)
		return -ENOMEM;
	out->len += LIT(out->p + out->len, "{\"Records\":[");
	/* A sequence number is "49", the incarnation in 20 digits, the ring
	 * sequence in 20 (spate_kinesis_seq_format, here without printf: two
	 * printf calls a record were most of the event's cost). */
	char seq[SPATE_KINESIS_SEQ_LEN + 1];
	seq[0] = '4';
	seq[1] = '9';
	put_u64_pad(seq + 2, id->incarnation, 20);
	_Static_assert(SPATE_KINESIS_SEQ_LEN == 42, "49 + 20 + 20 digits");
	for (uint32_t i = 0; i < n; i++) {
		struct spate_kinesis_view v;

		spate_kinesis_view(&recs[i], &v); /* a malformed envelope: whole payload, hex key */
		put_u64_pad(seq + 22, recs[i].seq, 20);
		size_t need = 400 + v.key_len * 6 + (v.len + 2) / 3 * 4 + 2 * SPATE_KINESIS_SEQ_LEN +
			      id->tail_len;
		if (spate_fn_buf_reserve(out, need) < 0)
			return -ENOMEM;
		char *o = out->p + out->len, *o0 = o;
		if (i)
			*o++ = ',';
		o += LIT(o, "{\"kinesis\":{\"kinesisSchemaVersion\":\"1.0\",\"partitionKey\":\"");
		o += put_escaped(o, v.key, v.key_len);
		o += LIT(o, "\",\"sequenceNumber\":\"");
		o += put_lit(o, seq, SPATE_KINESIS_SEQ_LEN);
		o += LIT(o, "\",\"data\":\"");
		if (v.len)
			o += EVP_EncodeBlock((unsigned char *)o, v.data, (int)v.len);
		/* Seconds with milliseconds, as Kinesis stamps arrivals. */
		uint64_t ms = recs[i].ts / 1000000ull;
		o += LIT(o, "\",\"approximateArrivalTimestamp\":");
		o += put_u64(o, ms / 1000);
		*o++ = '.';
		o += put_u64_pad(o, ms % 1000, 3);
		o += LIT(o, "},");
		o += LIT(o, "\"eventSource\":\"aws:kinesis\",\"eventVersion\":\"1.0\",\"eventID\":\"");
		o += put_lit(o, id->shard_id, SPATE_KINESIS_SHARD_ID_LEN);
		*o++ = ':';
		o += put_lit(o, seq, SPATE_KINESIS_SEQ_LEN);
		o += put_lit(o, id->tail, id->tail_len);
		out->len += (size_t)(o - o0);
	}
	if (spate_fn_buf_reserve(out, 3) < 0)
		return -ENOMEM;
	out->len += LIT(out->p + out->len, "]}");
	out->p[out->len] = 0;
	return 0;
}

/* Index of the record of @p recs with ring sequence @p seq, or -1. */
static int64_t find_seq(const struct spate_ring_rec *recs, uint32_t n, uint64_t seq)
{
	uint32_t lo = 0, hi = n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (recs[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && recs[lo].seq == seq ? (int64_t)lo : -1;
}

int spate_fn_response_parse(const char *body, size_t len, const struct spate_ring_rec *recs,
			    uint32_t n, const struct spate_fn_ident *id, uint32_t *failed_index,
			    char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *root, *list;
	int rc = 0;

	if (len == 0)
		return 0; /* no response: success */
	tok = json_tokener_new();
	if (!tok) {
		snprintf(err, errlen, "out of memory reading the response");
		return -ENOMEM;
	}
	root = json_tokener_parse_ex(tok, body, (int)len);
	size_t end = json_tokener_get_parse_end(tok);
	if (!root && json_tokener_get_error(tok) == json_tokener_continue) {
		/* A bare number or literal ends only at the end of the text. */
		root = json_tokener_parse_ex(tok, "", 1);
		end = len;
	}
	if (!root && json_tokener_get_error(tok) != json_tokener_success) {
		snprintf(err, errlen, "the response is not valid JSON (%s)",
			 json_tokener_error_desc(json_tokener_get_error(tok)));
		json_tokener_free(tok);
		return -EBADMSG;
	}
	if (end < len) {
		while (end < len && (body[end] == ' ' || body[end] == '\n' || body[end] == '\r' ||
				     body[end] == '\t'))
			end++;
		if (end < len) {
			snprintf(err, errlen, "the response is not valid JSON (text after the value)");
			json_object_put(root);
			json_tokener_free(tok);
			return -EBADMSG;
		}
	}
	json_tokener_free(tok);
	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "batchItemFailures", &list) || !list)
		goto out; /* null, a string, {}...: success */
	if (!json_object_is_type(list, json_type_array)) {
		snprintf(err, errlen, "batchItemFailures is not a list");
		rc = -EBADMSG;
		goto out;
	}
	size_t cnt = json_object_array_length(list);
	int64_t lowest = -1;
	for (size_t i = 0; i < cnt; i++) {
		struct json_object *it = json_object_array_get_idx(list, i), *idv;
		const char *s;
		uint64_t inc, seq;
		int64_t at;

		if (!json_object_is_type(it, json_type_object) ||
		    !json_object_object_get_ex(it, "itemIdentifier", &idv) || !idv ||
		    !json_object_is_type(idv, json_type_string) ||
		    !*(s = json_object_get_string(idv))) {
			snprintf(err, errlen,
				 "batchItemFailures[%zu] has no itemIdentifier (or an empty or null "
				 "one): the whole batch failed",
				 i);
			rc = -EBADMSG;
			goto out;
		}
		if (spate_kinesis_seq_parse(s, &inc, &seq) < 0 || inc != id->incarnation ||
		    (at = find_seq(recs, n, seq)) < 0) {
			snprintf(err, errlen,
				 "batchItemFailures[%zu].itemIdentifier %.60s is no sequence number "
				 "of the batch: the whole batch failed",
				 i, s);
			rc = -EBADMSG;
			goto out;
		}
		if (lowest < 0 || at < lowest)
			lowest = at;
	}
	if (lowest >= 0) {
		*failed_index = (uint32_t)lowest;
		char seq[SPATE_KINESIS_SEQ_LEN + 1];
		spate_kinesis_seq_format(id->incarnation, recs[lowest].seq, seq);
		snprintf(err, errlen, "batchItemFailures: %zu record%s, from %s:%s", cnt,
			 cnt == 1 ? "" : "s", id->shard_id, seq);
		rc = 1;
	}
out:
	json_object_put(root);
	return rc;
}
