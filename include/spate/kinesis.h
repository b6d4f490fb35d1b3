/* SPDX-License-Identifier: MIT */
/**
 * @file spate/kinesis.h
 * @brief The Kinesis identity of spate records: shard ids, sequence numbers,
 *        128-bit hash keys and partition keys, one mapping for every door.
 *
 * The Kinesis API front (engine/api/), the Lambda event of functions
 * (engine/functions/) and the NATS bridge all name a record the same way, so
 * a record put through one door is recognised through every other:
 *
 * - **Shard id**: `shardId-` and the shard index in 12 decimal digits
 *   (`shardId-000000000003`).
 * - **Sequence number**: a decimal string, `49`, the stream's incarnation in
 *   20 digits, then the record's ring sequence number in 20 digits (42
 *   digits, no leading zero). Within a shard they sort in put order, as
 *   strings and as numbers; one from an earlier incarnation of a stream of
 *   the same name is recognised as such (SPATE_KINESIS_SEQ_LEN).
 * - **Hash key**: Kinesis hashes a partition key with MD5 into a 128-bit
 *   key, and each shard owns a contiguous HashKeyRange. spate routes on the
 *   high 32 bits of that key (spate_shard_of_hash()), and the ranges it
 *   publishes are aligned to 2^96, so the published range and the routing
 *   agree exactly: shard i of n owns the 32-bit hashes h with
 *   floor(h * n / 2^32) == i, i.e. 128-bit keys [lo_i * 2^96, lo_{i+1} * 2^96).
 * - **Partition key**: a record put with a partition key (Kinesis
 *   PutRecord(s), a NATS import) carries it in a keyed
 *   envelope: record type SPATE_RECORD_TYPE_KEYED and a payload of a 16-bit
 *   little-endian key length, the key, then the data. A record of any other
 *   type has no stored key; doors show its partition key as the 8 hex digits
 *   of its key_hash.
 *
 * Record types 0xF0..0xFF are reserved for spate; user producers use 0..0xEF.
 * Taken: 0xF1 keyed envelope, 0xF2 keyed envelope with an origin (below),
 * 0xF3 packet record (spate/packet.h: a frame received by a dpdk source).
 *
 * Thread safety: every function is pure (no shared state).
 */
#ifndef SPATE_KINESIS_H
#define SPATE_KINESIS_H

#include <stddef.h>
#include <stdint.h>

#include "spate/record.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Record type of a keyed envelope (see the file comment). */
#define SPATE_RECORD_TYPE_KEYED 0xF1u
/** First record type reserved for spate. */
#define SPATE_RECORD_TYPE_RESERVED 0xF0u

/** Longest partition key, bytes (Kinesis: 256 Unicode characters; spate
 *  counts UTF-8 bytes and accepts up to 1024). */
#define SPATE_KINESIS_KEY_MAX 1024u
/** Characters of a shard id, NUL excluded ("shardId-" + 12 digits). */
#define SPATE_KINESIS_SHARD_ID_LEN 20u
/** Characters of a sequence number, NUL excluded. */
#define SPATE_KINESIS_SEQ_LEN 42u
/** Longest decimal 128-bit hash key, NUL excluded (2^128 - 1 has 39 digits). */
#define SPATE_KINESIS_HASH_KEY_MAX 39u

/**
 * Write shard @p shard's id into @p buf (at least SPATE_KINESIS_SHARD_ID_LEN
 * + 1 bytes). @return SPATE_KINESIS_SHARD_ID_LEN.
 */
int spate_kinesis_shard_id(uint32_t shard, char *buf);

/**
 * Parse a shard id ("shardId-" then 1 to 12 digits; Kinesis clients also
 * pass bare digits, accepted too).
 * @return the shard index, or -EINVAL if @p s is not a shard id.
 */
int64_t spate_kinesis_shard_parse(const char *s);

/**
 * Write the sequence number of record @p seq of a stream of incarnation
 * @p incarnation into @p buf (at least SPATE_KINESIS_SEQ_LEN + 1 bytes).
 * @return SPATE_KINESIS_SEQ_LEN.
 */
int spate_kinesis_seq_format(uint64_t incarnation, uint64_t seq, char *buf);

/**
 * Parse a sequence number written by spate_kinesis_seq_format().
 * @param incarnation set to the incarnation it names (may be NULL)
 * @param seq set to the ring sequence number
 * @return 0; -EINVAL if @p s is not a spate sequence number (wrong length,
 *         not digits, wrong prefix, a part out of range).
 */
int spate_kinesis_seq_parse(const char *s, uint64_t *incarnation, uint64_t *seq);

/**
 * The 128-bit hash key of partition key @p key (MD5, big-endian, as
 * Kinesis computes it) and its high 32 bits, the spate hash that routes it
 * (spate_put_hash(), spate_shard_of_hash()).
 * @param md5 receives the 16 bytes of the hash key (may be NULL)
 * @return the high 32 bits.
 */
uint32_t spate_kinesis_key_hash(const void *key, size_t len, uint8_t md5[16]);

/**
 * Parse an ExplicitHashKey (decimal, 0 .. 2^128 - 1, no sign, at most 39
 * digits) and return the spate hash (its high 32 bits) in @p hash.
 * @return 0; -EINVAL if @p s is not such a number; -ERANGE if >= 2^128.
 */
int spate_kinesis_hash_parse(const char *s, uint32_t *hash);

/**
 * The HashKeyRange shard @p shard of @p shards owns, as decimal strings
 * (each buffer at least SPATE_KINESIS_HASH_KEY_MAX + 1 bytes). The ranges
 * of a stream's shards are contiguous, disjoint and cover 0 .. 2^128 - 1.
 * @return 0; -EINVAL if @p shard >= @p shards.
 */
int spate_kinesis_hash_range(uint32_t shard, uint32_t shards, char *start, char *end);

/**
 * Build a keyed envelope: write @p key_len, @p key and @p data into @p out
 * (SPATE_KINESIS_KEYED_LEN(key_len, len) bytes).
 * @return the envelope's length; -EINVAL if @p key_len is 0 or above
 *         SPATE_KINESIS_KEY_MAX; -ENOSPC if @p cap is too small.
 */
int64_t spate_kinesis_keyed_encode(void *out, size_t cap, const void *key, size_t key_len,
				   const void *data, size_t len);
/** Bytes of a keyed envelope around @p key_len key bytes and @p len data bytes. */
#define SPATE_KINESIS_KEYED_LEN(key_len, len) ((size_t)2 + (size_t)(key_len) + (size_t)(len))

/**
 * Record type of a keyed envelope with an origin: a record imported from
 * another system (a NATS JetStream message) that keeps where it came from,
 * so that a redelivery is recognised after a restart. Payload: a 16-bit
 * little-endian key length, the key, a 32-bit little-endian origin id (which
 * import wrote it), the 64-bit little-endian sequence number of the record
 * at its origin, then the data. spate_kinesis_view() shows its key and data
 * like a keyed envelope's; spate_kinesis_origin() reads the origin.
 */
#define SPATE_RECORD_TYPE_KEYED_ORIGIN 0xF2u
/** Bytes of a keyed envelope with an origin. */
#define SPATE_KINESIS_ORIGIN_LEN(key_len, len) ((size_t)14 + (size_t)(key_len) + (size_t)(len))

/**
 * Build a keyed envelope with an origin (SPATE_RECORD_TYPE_KEYED_ORIGIN)
 * into @p out (SPATE_KINESIS_ORIGIN_LEN(key_len, len) bytes).
 * @return the envelope's length; -EINVAL (key_len 0 or above
 *         SPATE_KINESIS_KEY_MAX), -ENOSPC (@p cap too small).
 */
int64_t spate_kinesis_origin_encode(void *out, size_t cap, const void *key, size_t key_len,
				    uint32_t origin_id, uint64_t origin_seq, const void *data,
				    size_t len);

/**
 * The origin of record @p r, if it is a keyed envelope with an origin.
 * @return 0 (and *origin_id, *origin_seq set; each may be NULL), -ENOENT
 *         (another record type), -EBADMSG (a malformed envelope).
 */
int spate_kinesis_origin(const struct spate_ring_rec *r, uint32_t *origin_id,
			 uint64_t *origin_seq);

/** A record seen through Kinesis eyes (views into the record; no copy). */
struct spate_kinesis_view {
	const void *key;   /**< partition key bytes */
	size_t key_len;
	const void *data;  /**< the data blob (the payload without the envelope) */
	size_t len;
	char hex_key[9];   /**< the key shown for an unkeyed record (8 hex digits + NUL) */
};

/**
 * Decode record @p r: for a keyed envelope (with or without an origin), its
 * key and data; for any other
 * record, the whole payload as data and its key_hash in hex as the key.
 * @return 0; -EBADMSG if @p r is typed SPATE_RECORD_TYPE_KEYED but its
 *         envelope is malformed (then the whole payload is the data and the
 *         hex key is used, so a reader can still show it).
 */
int spate_kinesis_view(const struct spate_ring_rec *r, struct spate_kinesis_view *v);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_KINESIS_H */
