/* SPDX-License-Identifier: MIT */
/*
 * event.h - Lambda's Kinesis event for a batch, and the function's answer
 * read back as a batch result (event.c). Internal to the functions door.
 */
#ifndef SPATE_FN_EVENT_H
#define SPATE_FN_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "spate/kinesis.h"
#include "spate/plugin.h"

/** A growable byte buffer (malloc'd; reused across batches). */
struct spate_fn_buf {
	char *p;
	size_t len, cap;
};

/** Make room for @p more bytes. @return 0 or -ENOMEM. */
int spate_fn_buf_reserve(struct spate_fn_buf *b, size_t more);
void spate_fn_buf_free(struct spate_fn_buf *b);

/** What every record of one (consumer, shard) says besides its own data. */
struct spate_fn_ident {
	uint64_t incarnation;       /**< the stream's (spate_stream_incarnation) */
	uint32_t shard;
	char shard_id[SPATE_KINESIS_SHARD_ID_LEN + 1];
	/** `","eventName":"aws:kinesis:record","invokeIdentityArn":...,
	 *  "awsRegion":...,"eventSourceARN":..."}`: the record's tail after
	 *  its eventID, the same for every record (spate_fn_ident_init). */
	char tail[512];
	size_t tail_len;
};

/**
 * Fill @p id for shard @p shard of stream @p stream (incarnation
 * @p incarnation) in region @p region, consumer @p consumer (its role ARN
 * is invokeIdentityArn), account @p account.
 * @return 0, -ENAMETOOLONG.
 */
int spate_fn_ident_init(struct spate_fn_ident *id, const char *stream, uint64_t incarnation,
			uint32_t shard, const char *region, const char *account,
			const char *consumer);

/**
 * Write the Kinesis event of the @p n records @p recs into @p out
 * (replacing its contents): `{"Records":[...]}` shaped as Lambda's, field
 * for field and in Lambda's order.
 * @return 0 or -ENOMEM.
 */
int spate_fn_event_build(struct spate_fn_buf *out, const struct spate_ring_rec *recs, uint32_t n,
			 const struct spate_fn_ident *id);

/**
 * Read a function's response to the event of @p recs (@p n records) as
 * Lambda reads it with ReportBatchItemFailures:
 * - not a JSON object, no batchItemFailures, or an empty or null list:
 *   success (returns 0);
 * - batchItemFailures naming sequence numbers of the batch: the lowest one
 *   is the first record to retry (returns 1, its index in *failed_index);
 * - invalid JSON, an item without itemIdentifier, an empty or null one, or
 *   one that names no record of the batch: the whole batch failed (returns
 *   -EBADMSG, @p err says why).
 */
int spate_fn_response_parse(const char *body, size_t len, const struct spate_ring_rec *recs,
			    uint32_t n, const struct spate_fn_ident *id, uint32_t *failed_index,
			    char *err, size_t errlen);

#endif
