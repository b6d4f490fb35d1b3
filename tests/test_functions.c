/* SPDX-License-Identifier: MIT */
/*
 * The functions door's pure parts (engine/functions/event.c): a batch as
 * Lambda's Kinesis event, read back with json-c and checked field by field
 * against the shape Lambda sends (names, order, types, base64 data, the
 * Kinesis identities of spate/kinesis.h); and a function's answer read as
 * Lambda reads it with ReportBatchItemFailures. The processes, the Runtime
 * API and the failure cases run end to end with real Node and Python
 * runtimes in tests/functions.sh.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "engine/functions/event.h"
#include "spate/kinesis.h"
#include "spate/record.h"

#define INC 7ull

static struct spate_fn_ident ident(void)
{
	struct spate_fn_ident id;

	cr_assert_eq(spate_fn_ident_init(&id, "orders", INC, 3, "eu-west-1", "000000000000", "ship"),
		     0);
	return id;
}

static struct json_object *field(struct json_object *o, const char *k, enum json_type t)
{
	struct json_object *v = NULL;

	cr_assert(json_object_object_get_ex(o, k, &v), "no field %s in %s", k,
		  json_object_to_json_string(o));
	cr_assert(json_object_is_type(v, t), "field %s has type %s", k,
		  json_type_to_name(json_object_get_type(v)));
	return v;
}

static const char *str(struct json_object *o, const char *k)
{
	return json_object_get_string(field(o, k, json_type_string));
}

/* The names of @p o's fields, in order, comma-separated. */
static void keys_of(struct json_object *o, char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = 0;
	json_object_object_foreach(o, k, v)
	{
		(void)v;
		pos += (size_t)snprintf(buf + pos, len - pos, "%s%s", pos ? "," : "", k);
	}
}

/* Three records: a keyed envelope (as Kinesis PutRecord stores it) whose
 * key has a quote, a backslash and a control character; a plain record
 * (no stored key: its key hash in hex); binary data with every byte. */
Test(functions, event_is_lambdas_kinesis_event)
{
	static uint8_t keyed[512], bin[256];
	const char key[] = "k\"\\\x01y";
	const char data[] = "hello, world";
	int64_t kl = spate_kinesis_keyed_encode(keyed, sizeof(keyed), key, sizeof(key) - 1, data,
						sizeof(data) - 1);
	cr_assert_gt(kl, 0);
	for (int i = 0; i < 256; i++)
		bin[i] = (uint8_t)i;
	struct spate_ring_rec recs[3] = {
		{ .data = keyed, .seq = 41, .ts = 1545084650987654321ull, .len = (uint32_t)kl,
		  .key_hash = 1, .type = SPATE_RECORD_TYPE_KEYED },
		{ .data = "plain", .seq = 42, .ts = 1545084651000000000ull, .len = 5,
		  .key_hash = 0xdeadbeef, .type = 0 },
		{ .data = bin, .seq = 1000000, .ts = 1545084652001000000ull, .len = 256,
		  .key_hash = 0x0000abcd, .type = 0 },
	};
	struct spate_fn_ident id = ident();
	struct spate_fn_buf b = { 0 };
	char keys[512], seq[SPATE_KINESIS_SEQ_LEN + 1], want[128];

	cr_assert_eq(spate_fn_event_build(&b, recs, 3, &id), 0);
	cr_assert_eq(strlen(b.p), b.len);
	struct json_object *root = json_tokener_parse(b.p);
	cr_assert_not_null(root, "not JSON: %s", b.p);
	keys_of(root, keys, sizeof(keys));
	cr_assert_str_eq(keys, "Records");
	struct json_object *list = field(root, "Records", json_type_array);
	cr_assert_eq(json_object_array_length(list), 3);
	for (size_t i = 0; i < 3; i++) {
		struct json_object *r = json_object_array_get_idx(list, i);
		keys_of(r, keys, sizeof(keys));
		cr_assert_str_eq(keys,
				 "kinesis,eventSource,eventVersion,eventID,eventName,"
				 "invokeIdentityArn,awsRegion,eventSourceARN",
				 "record fields in Lambda's order: %s", keys);
		struct json_object *k = field(r, "kinesis", json_type_object);
		keys_of(k, keys, sizeof(keys));
		cr_assert_str_eq(keys,
				 "kinesisSchemaVersion,partitionKey,sequenceNumber,data,"
				 "approximateArrivalTimestamp");
		cr_assert_str_eq(str(k, "kinesisSchemaVersion"), "1.0");
		spate_kinesis_seq_format(INC, recs[i].seq, seq);
		cr_assert_str_eq(str(k, "sequenceNumber"), seq);
		cr_assert_str_eq(str(r, "eventSource"), "aws:kinesis");
		cr_assert_str_eq(str(r, "eventVersion"), "1.0");
		snprintf(want, sizeof(want), "shardId-000000000003:%s", seq);
		cr_assert_str_eq(str(r, "eventID"), want);
		cr_assert_str_eq(str(r, "eventName"), "aws:kinesis:record");
		cr_assert_str_eq(str(r, "invokeIdentityArn"), "arn:aws:iam::000000000000:role/spate-ship");
		cr_assert_str_eq(str(r, "awsRegion"), "eu-west-1");
		cr_assert_str_eq(str(r, "eventSourceARN"),
				 "arn:aws:kinesis:eu-west-1:000000000000:stream/orders");
		double ts = json_object_get_double(field(k, "approximateArrivalTimestamp",
							 json_type_double));
		double want_ts = (double)(recs[i].ts / 1000000) / 1e3;
		cr_assert(ts > want_ts - 1e-6 && ts < want_ts + 1e-6, "ts %f, expected %f", ts, want_ts);

		/* Data: base64 of the record's data (the envelope's, for a keyed one). */
		const char *d64 = str(k, "data");
		unsigned char raw[512];
		int n = EVP_DecodeBlock(raw, (const unsigned char *)d64, (int)strlen(d64));
		size_t pad = strlen(d64) >= 2 ? (d64[strlen(d64) - 1] == '=') +
							(d64[strlen(d64) - 2] == '=')
					      : 0;
		struct spate_kinesis_view v;
		spate_kinesis_view(&recs[i], &v);
		cr_assert_eq((size_t)n - pad, v.len);
		cr_assert_eq(memcmp(raw, v.data, v.len), 0);
	}
	struct json_object *k0 = field(json_object_array_get_idx(list, 0), "kinesis",
				       json_type_object);
	cr_assert_str_eq(str(k0, "partitionKey"), key, "the key, escaped and read back");
	struct json_object *k1 = field(json_object_array_get_idx(list, 1), "kinesis",
				       json_type_object);
	cr_assert_str_eq(str(k1, "partitionKey"), "deadbeef", "an unkeyed record: its hash in hex");
	/* approximateArrivalTimestamp is seconds with milliseconds, as Kinesis. */
	cr_assert(strstr(b.p, "\"approximateArrivalTimestamp\":1545084650.987}"), "%s", b.p);
	cr_assert(strstr(b.p, "\"approximateArrivalTimestamp\":1545084651.000}"));
	json_object_put(root);

	/* An empty batch is an empty list; the buffer is reused. */
	cr_assert_eq(spate_fn_event_build(&b, recs, 0, &id), 0);
	cr_assert_str_eq(b.p, "{\"Records\":[]}");
	spate_fn_buf_free(&b);
}

static int parse(const char *body, uint32_t *at, char *err, size_t errlen)
{
	static const struct spate_ring_rec recs[4] = {
		{ .seq = 10 }, { .seq = 11 }, { .seq = 15 }, { .seq = 20 },
	};
	struct spate_fn_ident id = ident();

	*at = 99;
	err[0] = 0;
	return spate_fn_response_parse(body, strlen(body), recs, 4, &id, at, err, errlen);
}

static const char *item(uint64_t seq, uint64_t inc)
{
	static char buf[4][128];
	static int n;
	char s[SPATE_KINESIS_SEQ_LEN + 1];

	spate_kinesis_seq_format(inc, seq, s);
	n = (n + 1) % 4;
	snprintf(buf[n], sizeof(buf[n]), "{\"itemIdentifier\":\"%s\"}", s);
	return buf[n];
}

/* Lambda's rules for a response with ReportBatchItemFailures. */
Test(functions, response_as_lambda_reads_it)
{
	char body[512], err[256];
	uint32_t at;

	/* Success: no answer, not an object, no list, an empty or null list. */
	const char *ok[] = { "", "null", "\"done\"", "42", "{}", "{\"statusCode\":200}",
			     "{\"batchItemFailures\":[]}", "{\"batchItemFailures\":null}",
			     " {\"batchItemFailures\": [ ] }\n" };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		cr_assert_eq(parse(ok[i], &at, err, sizeof(err)), 0, "%s: %s", ok[i], err);

	/* Partial: the lowest failed record is where delivery resumes. */
	snprintf(body, sizeof(body), "{\"batchItemFailures\":[%s,%s]}", item(20, INC),
		 item(11, INC));
	cr_assert_eq(parse(body, &at, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(at, 1, "record 11 is index 1, got %u", at);
	cr_assert(strstr(err, "2 records"), "%s", err);
	snprintf(body, sizeof(body), "{\"batchItemFailures\":[%s]}", item(10, INC));
	cr_assert_eq(parse(body, &at, err, sizeof(err)), 1);
	cr_assert_eq(at, 0);

	/* Whole-batch failures. */
	const char *bad[] = {
		"{\"batchItemFailures\":[{\"itemIdentifier\":\"\"}]}",
		"{\"batchItemFailures\":[{\"itemIdentifier\":null}]}",
		"{\"batchItemFailures\":[{\"itemidentifier\":\"x\"}]}",
		"{\"batchItemFailures\":[{}]}",
		"{\"batchItemFailures\":[\"x\"]}",
		"{\"batchItemFailures\":{}}",
		"{\"batchItemFailures\":[{\"itemIdentifier\":\"12\"}]}",
		"{\"batchItemFailures\":[",
		"{\"a\":1} trailing",
		"not json",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(parse(bad[i], &at, err, sizeof(err)), -EBADMSG, "%s", bad[i]);
		cr_assert_gt(strlen(err), 10, "a reason for %s", bad[i]);
		cr_assert_eq(at, 99, "no index for %s", bad[i]);
	}
	/* A sequence number of no record of the batch, or of another incarnation. */
	snprintf(body, sizeof(body), "{\"batchItemFailures\":[%s]}", item(12, INC));
	cr_assert_eq(parse(body, &at, err, sizeof(err)), -EBADMSG);
	cr_assert(strstr(err, "no sequence number of the batch"), "%s", err);
	snprintf(body, sizeof(body), "{\"batchItemFailures\":[%s]}", item(11, INC + 1));
	cr_assert_eq(parse(body, &at, err, sizeof(err)), -EBADMSG);
}
