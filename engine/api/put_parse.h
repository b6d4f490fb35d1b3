/* SPDX-License-Identifier: MIT */
/*
 * put_parse.h - the PutRecords/PutRecord body parser of the Kinesis API
 * front (put_parse.cc, over simdjson), callable from C. Plain C types only:
 * the C++ side includes no spate header. Internal to engine/api/.
 */
#ifndef SPATE_API_PUT_PARSE_H
#define SPATE_API_PUT_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes that must be readable (any value) after a body given to the
 *  parser (simdjson reads ahead in 64-byte blocks). */
#define SPATE_API_PARSE_PADDING 64u
/** Most records a put parses (PutRecords: 500; one more to tell "too many"). */
#define SPATE_API_PARSE_MAX 501u

/** A string of the body: NULL if absent (or JSON null). Views into the
 *  parser's buffer, valid until the thread's next parse. */
struct spate_api_str {
	const char *p;
	size_t n;
};

/** One record: its Data, PartitionKey and ExplicitHashKey. */
struct spate_api_put_rec {
	struct spate_api_str data, key, ehk;
};

/** A parsed put request. */
struct spate_api_put_req {
	struct spate_api_str stream, arn, son; /**< StreamName, StreamARN, SequenceNumberForOrdering */
	uint32_t n;          /**< records (PutRecords: how many the list had, up to
				  SPATE_API_PARSE_MAX; then n_total says more) */
	uint64_t n_total;    /**< records in the list */
	bool has_records;    /**< a Records list was present */
	struct spate_api_put_rec recs[SPATE_API_PARSE_MAX];
};

/**
 * Parse body @p body (@p len bytes, followed by SPATE_API_PARSE_PADDING
 * readable bytes) as a PutRecords request (@p single 0) or a PutRecord
 * request (@p single 1: the record's fields at the top) into @p q.
 * @return 0; -1 with @p msg set: the body is not JSON, or a field has the
 *         wrong type (both SerializationException); -2 out of memory.
 */
int spate_api_put_parse(const char *body, size_t len, int single, struct spate_api_put_req *q,
			char *msg, size_t msglen);

#ifdef __cplusplus
}
#endif
#endif
