// SPDX-License-Identifier: MIT
/*
 * put_parse.cc - parsing PutRecords and PutRecord bodies with simdjson
 * (Debian's libsimdjson), for the Kinesis API front's hot path.
 *
 * Design. A 500-record PutRecords body is ~60 KB of JSON; json-c builds a
 * tree of 2,000 allocated objects for it (about 1.3 ms here), more than
 * everything else a put costs. simdjson's DOM parser validates the whole
 * document (like json-c: malformed JSON anywhere is refused) into a tape it
 * reuses: one parser per HTTP thread, no allocation once warm, strings
 * unescaped into its buffer. This file only walks the tape into plain C
 * views (put_parse.h); every Kinesis rule (lengths, base64, sizes) is
 * checked by the C side (ops_records.c) from those views.
 *
 * Limits: the body must be followed by SIMDJSON_PADDING readable bytes
 * (the server allocates them); a parser's buffers grow to the largest body
 * it has seen (10 MiB at most) and stay for the thread's life.
 */
#include <cstdio>
#include <cstring>

#include <simdjson.h>

#include "engine/api/put_parse.h"

static_assert(simdjson::SIMDJSON_PADDING <= SPATE_API_PARSE_PADDING, "padding the server allocates");

namespace {

thread_local simdjson::dom::parser tl_parser;

/* Field @p key of @p o as a string view: 0 absent/null, 1 found, -1 wrong type. */
int str_of(simdjson::dom::object o, const char *key, struct spate_api_str *out)
{
	simdjson::dom::element v;

	out->p = nullptr;
	out->n = 0;
	if (o.at_key(key).get(v) != simdjson::SUCCESS || v.is_null())
		return 0;
	std::string_view s;
	if (v.get_string().get(s) != simdjson::SUCCESS)
		return -1;
	out->p = s.data();
	out->n = s.size();
	return 1;
}

/* Record @p i (-1: PutRecord's top level); the message names the field. */
int rec_of(simdjson::dom::object o, struct spate_api_put_rec *r, long i, char *msg, size_t msglen)
{
	const char *bad = nullptr;

	if (str_of(o, "Data", &r->data) < 0)
		bad = "Data: expected a base64 string";
	else if (str_of(o, "PartitionKey", &r->key) < 0)
		bad = "PartitionKey: expected a string";
	else if (str_of(o, "ExplicitHashKey", &r->ehk) < 0)
		bad = "ExplicitHashKey: expected a string";
	if (!bad)
		return 0;
	if (i < 0)
		snprintf(msg, msglen, "%s", bad);
	else
		snprintf(msg, msglen, "Records[%ld].%s", i, bad);
	return -1;
}

} // namespace

extern "C" int spate_api_put_parse(const char *body, size_t len, int single,
				   struct spate_api_put_req *q, char *msg, size_t msglen)
{
	simdjson::dom::element doc;
	simdjson::dom::object top;
	simdjson::error_code e;

	q->n = 0;
	q->n_total = 0;
	q->has_records = false;
	e = tl_parser.parse(body, len, false).get(doc);
	if (e == simdjson::MEMALLOC)
		return -2;
	if (e != simdjson::SUCCESS) {
		snprintf(msg, msglen, "malformed JSON: %s", simdjson::error_message(e));
		return -1;
	}
	if (doc.get_object().get(top) != simdjson::SUCCESS) {
		snprintf(msg, msglen, "expected a JSON structure as the body");
		return -1;
	}
	if (str_of(top, "StreamName", &q->stream) < 0) {
		snprintf(msg, msglen, "StreamName: expected a string");
		return -1;
	}
	if (str_of(top, "StreamARN", &q->arn) < 0) {
		snprintf(msg, msglen, "StreamARN: expected a string");
		return -1;
	}
	if (single) {
		if (str_of(top, "SequenceNumberForOrdering", &q->son) < 0) {
			snprintf(msg, msglen, "SequenceNumberForOrdering: expected a string");
			return -1;
		}
		q->n = 1;
		q->n_total = 1;
		return rec_of(top, &q->recs[0], -1, msg, msglen);
	}
	simdjson::dom::element rv;
	if (top.at_key("Records").get(rv) != simdjson::SUCCESS || rv.is_null())
		return 0;
	simdjson::dom::array recs;
	if (rv.get_array().get(recs) != simdjson::SUCCESS) {
		snprintf(msg, msglen, "Records: expected a list");
		return -1;
	}
	q->has_records = true;
	q->n_total = recs.size();
	for (simdjson::dom::element r : recs) {
		simdjson::dom::object ro;
		if (q->n == SPATE_API_PARSE_MAX)
			break;
		if (r.get_object().get(ro) != simdjson::SUCCESS) {
			snprintf(msg, msglen, "Records[%u]: expected a structure", q->n);
			return -1;
		}
		if (rec_of(ro, &q->recs[q->n], (long)q->n, msg, msglen) < 0)
			return -1;
		q->n++;
	}
	return 0;
}
