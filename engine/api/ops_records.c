/* SPDX-License-Identifier: MIT */
/*
 * ops_records.c - the data-plane operations of the Kinesis API front:
 * PutRecord, PutRecords, GetShardIterator, GetRecords.
 *
 * Puts. A request is checked whole before anything is written (every
 * record's partition key, data, explicit hash key and size): a malformed or
 * oversized record fails the request and changes nothing. Each record's
 * data is base64-decoded straight into a keyed envelope (spate/kinesis.h:
 * key length, partition key, data) in one arena per thread, and the
 * entries go to spate_put_batch() in one call with the MD5-derived hash
 * (or ExplicitHashKey's) as an explicit hash: one publication per shard
 * touched, no per-record allocation. The thread's producer fails at once
 * on a full shard, which answers that record (and the shard's later ones,
 * so a retry keeps per-key order) with ProvisionedThroughputExceeded.
 * On a `durability: always` stream spate_put_batch returns once the
 * records are durable, so a 200 means durable there and "in the ring"
 * (shared memory, which outlives a SIGKILL of `spate run`) elsewhere.
 *
 * Reads. An iterator names a shard and a position (a sequence number, or a
 * time for AT_TIMESTAMP until the first read resolves it). GetRecords
 * reads the shard's log (spate/log.h) for what the ring no longer holds,
 * then the ring through a short-lived reader: whole batches before the
 * position are skipped by their headers, records are written to the
 * answer straight from ring memory (base64 into the output buffer), and
 * the reader is closed before answering, so a client that never returns
 * holds no writer back. At most 10,000 records and 10 MiB of data.
 *
 * Limits: a ring reader slot per GetRecords in flight (64 per shard, less
 * the consumers'); beyond that the call answers LimitExceededException and
 * the client retries. A record whose envelope is malformed (written by
 * another door with the keyed type) is shown whole, with its hex key.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "spate/log.h"
#include "spate/ring_layout.h"

#include "engine/api/api_pvt.h"

/* ------------------------------------------------------------------------ */
/* Puts                                                                     */
/* ------------------------------------------------------------------------ */

/* The partition key's hash: the high 32 bits of its MD5 (as
 * spate_kinesis_key_hash() computes it), with this thread's reused MD5
 * context (a fresh EVP context per key costs 1 us; reused, 0.15 us). */
static uint32_t key_hash(struct spate_api_tctx *t, const void *key, size_t len)
{
	uint8_t d[EVP_MAX_MD_SIZE];
	unsigned dl = 0;

	if (!t->md5_ctx) {
		t->md5 = EVP_MD_fetch(NULL, "MD5", NULL);
		t->md5_ctx = EVP_MD_CTX_new();
	}
	if (!t->md5 || !t->md5_ctx || !EVP_DigestInit_ex(t->md5_ctx, t->md5, NULL) ||
	    !EVP_DigestUpdate(t->md5_ctx, key, len) || !EVP_DigestFinal_ex(t->md5_ctx, d, &dl) ||
	    dl != 16)
		return spate_kinesis_key_hash(key, len, NULL);
	return (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
}

/* Check record @p r (index @p i, -1 for PutRecord): fields, key length,
 * data length. @return 0 or -1 (the call has failed). */
static int check_rec(struct spate_api_call *c, const struct spate_api_put_rec *r, long i)
{
	char where[32] = "";
	size_t chars;
	uint32_t h;

	if (i >= 0)
		snprintf(where, sizeof(where), "Records[%ld].", i);
	if (!r->data.p)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "null at '%sdata' failed to satisfy constraint: Member must not "
				      "be null", where);
	if (!r->key.p)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "null at '%spartitionKey' failed to satisfy constraint: Member "
				      "must not be null", where);
	if (r->key.n > SPATE_KINESIS_KEY_MAX || !spate_api_utf8_ok(r->key.p, r->key.n, &chars) ||
	    chars < 1 || chars > 256)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "at '%spartitionKey' failed to satisfy constraint: Member must "
				      "have length between 1 and 256", where);
	if (r->ehk.p) {
		char e[SPATE_KINESIS_HASH_KEY_MAX + 2];
		size_t el = r->ehk.n < sizeof(e) - 1 ? r->ehk.n : sizeof(e) - 1;
		memcpy(e, r->ehk.p, el);
		e[el] = '\0';
		if (r->ehk.n >= sizeof(e) - 1 || spate_kinesis_hash_parse(e, &h) < 0)
			return spate_api_fail(c, "InvalidArgumentException", "Invalid ExplicitHashKey. "
					      "ExplicitHashKey must be in the range: [0, 2^128-1]. "
					      "Specified value was %.64s", e);
	}
	if (r->data.n % 4)
		return spate_api_fail(c, "SerializationException", "%sData: not valid base64 (length "
				      "%zu is not a multiple of 4)", where, r->data.n);
	if (r->data.n / 4 * 3 > SPATE_API_RECORD_MAX + 2) /* padding: an over-estimate by 2 */
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "at '%sdata' failed to satisfy constraint: Member must have "
				      "length less than or equal to 1048576", where);
	return 0;
}

/* Decode @p r into a keyed envelope at @p dst; fill @p e. @return 0 or -1. */
static int build_rec(struct spate_api_call *c, struct spate_api_tctx *t, struct spate_api_stream *st,
		     long i, const struct spate_api_put_rec *r, uint8_t *dst,
		     struct spate_put_entry *e)
{
	int64_t n = spate_api_b64_decode(r->data.p, r->data.n, dst + 2 + r->key.n);
	uint32_t hash;

	if (n < 0) {
		if (i < 0)
			return spate_api_fail(c, "SerializationException", "Data: not valid base64");
		return spate_api_fail(c, "SerializationException", "Records[%ld].Data: not valid "
				      "base64", i);
	}
	if ((uint64_t)n + r->key.n > SPATE_API_RECORD_MAX)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: the "
				      "data and partition key of record %ld are %llu bytes, more than "
				      "1048576", i < 0 ? 0 : i, (unsigned long long)n + r->key.n);
	size_t env = SPATE_KINESIS_KEYED_LEN(r->key.n, n);
	if (env > st->max_record)
		return spate_api_fail(c, "ValidationException", "record %ld: %zu bytes with its key "
				      "is larger than stream %s's max_record_size (%llu)",
				      i < 0 ? 0 : i, env, st->name, (unsigned long long)st->max_record);
	dst[0] = (uint8_t)r->key.n;
	dst[1] = (uint8_t)(r->key.n >> 8);
	memcpy(dst + 2, r->key.p, r->key.n);
	if (r->ehk.p) {
		char ek[SPATE_KINESIS_HASH_KEY_MAX + 1];
		memcpy(ek, r->ehk.p, r->ehk.n); /* checked: at most 39 digits */
		ek[r->ehk.n] = '\0';
		spate_kinesis_hash_parse(ek, &hash);
	} else {
		hash = key_hash(t, r->key.p, r->key.n);
	}
	*e = (struct spate_put_entry){ .data = dst, .len = env, .hash = hash,
				       .flags = SPATE_PUT_F_HASH, .type = SPATE_RECORD_TYPE_KEYED };
	return 0;
}

/* Parse the body of a put into t->req and find its stream; NULL after
 * failing the call. */
static struct spate_api_stream *put_parse(struct spate_api_call *c, struct spate_api_tctx *t,
					  bool single)
{
	struct spate_api_put_req *q = &t->req;
	int r = spate_api_put_parse(c->body, c->body_len, single, q, c->err_msg, sizeof(c->err_msg));

	if (r == -2) {
		spate_api_fail(c, "InternalFailure", "out of memory");
		return NULL;
	}
	if (r < 0) {
		c->err_type = "SerializationException";
		return NULL;
	}
	return spate_api_stream_named(c, q->stream.p ? &q->stream : NULL, q->arn.p ? &q->arn : NULL);
}

/* Check, build and put the parsed records. Results in t->res. @return the
 * failed count, or -1 (the call failed; nothing written). */
static int put(struct spate_api_call *c, struct spate_api_stream *st, struct spate_api_tctx *t,
	       bool single)
{
	const struct spate_api_put_req *q = &t->req;
	struct spate_producer *p;
	size_t total = 0, n = q->n;
	int rc;

	for (size_t i = 0; i < n; i++) {
		if (check_rec(c, &q->recs[i], single ? -1 : (long)i) < 0)
			return -1;
		total += 2 + q->recs[i].key.n + q->recs[i].data.n / 4 * 3 + 8;
	}
	t->arena.len = 0;
	if (spate_api_buf_reserve(&t->arena, total) < 0)
		return spate_api_fail(c, "InternalFailure", "out of memory");
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t *dst = (uint8_t *)t->arena.b + off;
		if (build_rec(c, t, st, single ? -1 : (long)i, &q->recs[i], dst, &t->ents[i]) < 0)
			return -1;
		off += (t->ents[i].len + 7) & ~(size_t)7;
	}
	rc = spate_api_producer(c->a, t, st, &p);
	if (rc < 0)
		return spate_api_fail(c, rc == -EBUSY ? "LimitExceededException" : "InternalFailure",
				      "no producer on stream %s: %s", st->name, strerror(-rc));
	rc = spate_put_batch(p, t->ents, (unsigned)n, t->res);
	if (rc < 0)
		return spate_api_fail(c, "InternalFailure", "put: %s", strerror(-rc));
	atomic_fetch_add_explicit(&c->a->n_put, n - (size_t)rc, memory_order_relaxed); /* stats */
	return rc;
}

/* The error code and message of a failed record. */
static const char *rec_error(const struct spate_put_result *res, const struct spate_api_stream *st,
			     char *msg, size_t len)
{
	char id[SPATE_KINESIS_SHARD_ID_LEN + 1];

	spate_kinesis_shard_id(res->shard, id);
	if (res->error == -EAGAIN) {
		snprintf(msg, len, "Rate exceeded for shard %s in stream %s under account "
			 SPATE_API_ACCOUNT ".", id, st->name);
		return "ProvisionedThroughputExceededException";
	}
	/* Appended, but the durability wait failed (-ETIMEDOUT, -ENOSPC,
	 * -EIO, -ENOTCONN): not answered as written; a retry may duplicate. */
	snprintf(msg, len, "Internal service failure: shard %s of stream %s: %s (the record may "
		 "have been written; not known to be durable)", id, st->name, strerror(-res->error));
	return "InternalFailure";
}

/* A sequence number (SPATE_KINESIS_SEQ_LEN digits) written without printf:
 * "49", the incarnation and the ring sequence in 20 digits each. */
static void put_seq(struct spate_api_buf *o, uint64_t inc, uint64_t seq)
{
	spate_api_buf_put(o, "49", 2);
	spate_api_buf_zpad(o, inc, 20);
	spate_api_buf_zpad(o, seq, 20);
}

/* "shardId-" and 12 digits, without printf. */
static void put_shard_id(struct spate_api_buf *o, uint32_t shard)
{
	char *w;

	if (spate_api_buf_reserve(o, SPATE_KINESIS_SHARD_ID_LEN + 1) < 0)
		return;
	w = o->b + o->len;
	memcpy(w, "shardId-", 8);
	for (int i = 19; i >= 8; i--, shard /= 10)
		w[i] = (char)('0' + shard % 10);
	o->len += SPATE_KINESIS_SHARD_ID_LEN;
	o->b[o->len] = '\0';
}

int spate_api_op_put_records(struct spate_api_call *c)
{
	struct spate_api_tctx *t = spate_api_tctx_get(c->a);
	struct spate_api_stream *st;
	char msg[256];

	if (!t)
		return spate_api_fail(c, "InternalFailure", "out of memory");
	st = put_parse(c, t, false);
	if (!st)
		return -1;
	if (!t->req.has_records)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "null at 'records' failed to satisfy constraint: Member must not "
				      "be null");
	size_t n = t->req.n;
	if (n < 1 || t->req.n_total > SPATE_API_PUT_MAX)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "at 'records' failed to satisfy constraint: Member must have "
				      "length less than or equal to 500 and greater than or equal to 1");
	int failed = put(c, st, t, false);
	if (failed < 0)
		return -1;
	uint64_t inc = spate_stream_incarnation(st->s);
	struct spate_api_buf *o = &c->out;
	if (spate_api_buf_reserve(o, 64 + n * 112) < 0)
		return -1;
	spate_api_buf_fmt(o, "{\"FailedRecordCount\":%d,\"Records\":[", failed);
	for (size_t i = 0; i < n; i++) {
		const struct spate_put_result *res = &t->res[i];
		if (i)
			spate_api_buf_put(o, ",", 1);
		if (res->error) {
			const char *code = rec_error(res, st, msg, sizeof(msg));
			spate_api_buf_fmt(o, "{\"ErrorCode\":\"%s\",\"ErrorMessage\":", code);
			spate_api_buf_jstr(o, msg, strlen(msg));
			spate_api_buf_put(o, "}", 1);
			continue;
		}
		spate_api_buf_put(o, "{\"SequenceNumber\":\"", 19);
		put_seq(o, inc, res->seq);
		spate_api_buf_put(o, "\",\"ShardId\":\"", 13);
		put_shard_id(o, res->shard);
		spate_api_buf_put(o, "\"}", 2);
	}
	spate_api_buf_str(o, "],\"EncryptionType\":\"NONE\"}");
	return 0;
}

int spate_api_op_put_record(struct spate_api_call *c)
{
	struct spate_api_tctx *t = spate_api_tctx_get(c->a);
	struct spate_api_stream *st;
	char msg[256];

	if (!t)
		return spate_api_fail(c, "InternalFailure", "out of memory");
	st = put_parse(c, t, true);
	if (!st)
		return -1;
	int failed = put(c, st, t, true);
	if (failed < 0)
		return -1;
	if (failed) {
		const char *code = rec_error(&t->res[0], st, msg, sizeof(msg));
		return spate_api_fail(c, code, "%s", msg);
	}
	spate_api_buf_str(&c->out, "{\"ShardId\":\"");
	put_shard_id(&c->out, t->res[0].shard);
	spate_api_buf_str(&c->out, "\",\"SequenceNumber\":\"");
	put_seq(&c->out, spate_stream_incarnation(st->s), t->res[0].seq);
	spate_api_buf_str(&c->out, "\",\"EncryptionType\":\"NONE\"}");
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Iterators                                                                */
/* ------------------------------------------------------------------------ */

/* The shard a call names (ShardId), or fail. */
static int call_shard(struct spate_api_call *c, struct spate_api_stream *st, uint32_t *shard)
{
	const char *s;
	size_t n;
	int r = spate_api_get_str(c, "ShardId", &s, &n);

	if (r < 0)
		return -1;
	if (r == 0)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "null at 'shardId' failed to satisfy constraint: Member must not "
				      "be null");
	int64_t i = spate_kinesis_shard_parse(s);
	if (i < 0 || (uint64_t)i >= st->shards)
		return spate_api_fail(c, "ResourceNotFoundException", "Shard %.64s in stream %s under "
				      "account " SPATE_API_ACCOUNT " does not exist", s, st->name);
	*shard = (uint32_t)i;
	return 0;
}

int spate_api_op_get_shard_iterator(struct spate_api_call *c)
{
	struct spate_api_stream *st = spate_api_call_stream(c);
	struct spate_api_tok t = { .kind = SPATE_API_TOK_SEQ };
	const char *type, *sn;
	size_t tl, snl;
	char out[SPATE_API_TOK_MAX];
	uint64_t inc, seq;
	int r;

	if (!st || call_shard(c, st, &t.shard) < 0)
		return -1;
	r = spate_api_get_str(c, "ShardIteratorType", &type, &tl);
	if (r < 0)
		return -1;
	if (r == 0)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "null at 'shardIteratorType' failed to satisfy constraint: Member "
				      "must not be null");
	inc = spate_stream_incarnation(st->s);
	bool at = strcmp(type, "AT_SEQUENCE_NUMBER") == 0;
	if (strcmp(type, "TRIM_HORIZON") == 0) {
		t.pos = 0; /* the first record still held, log or ring */
	} else if (strcmp(type, "LATEST") == 0) {
		t.pos = spate_ring_tail_seq(spate_stream_ring(st->s, t.shard));
	} else if (at || strcmp(type, "AFTER_SEQUENCE_NUMBER") == 0) {
		r = spate_api_get_str(c, "StartingSequenceNumber", &sn, &snl);
		if (r < 0)
			return -1;
		if (r == 0)
			return spate_api_fail(c, "InvalidArgumentException", "Must specify "
					      "StartingSequenceNumber for %s iterators", type);
		uint64_t sinc;
		if (spate_kinesis_seq_parse(sn, &sinc, &seq) < 0 || sinc != inc)
			return spate_api_fail(c, "InvalidArgumentException", "StartingSequenceNumber "
					      "%.64s used in GetShardIterator on shard %s in stream %s "
					      "under account " SPATE_API_ACCOUNT " is invalid because it "
					      "did not come from this stream.", sn,
					      json_object_get_string(json_object_object_get(c->in,
											    "ShardId")),
					      st->name);
		t.pos = at ? seq : seq + 1;
	} else if (strcmp(type, "AT_TIMESTAMP") == 0) {
		double ts;
		r = spate_api_get_num(c, c->in, "Timestamp", &ts);
		if (r < 0)
			return -1;
		if (r == 0)
			return spate_api_fail(c, "InvalidArgumentException", "Must specify timestampInMill"
					      "is parameter for iterator of type AT_TIMESTAMP. Current "
					      "request has no timestamp parameter.");
		if (ts < 0)
			ts = 0;
		t.kind = SPATE_API_TOK_TIME;
		t.pos = (uint64_t)(ts * 1e9);
	} else {
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "'%.64s' at 'shardIteratorType' failed to satisfy constraint: "
				      "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, "
				      "AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]", type);
	}
	t.incarnation = inc;
	snprintf(t.stream, sizeof(t.stream), "%s", st->name);
	spate_api_tok_encode(c->a, &t, out);
	spate_api_buf_fmt(&c->out, "{\"ShardIterator\":\"%s\"}", out);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* GetRecords                                                               */
/* ------------------------------------------------------------------------ */

struct rd {
	struct spate_api_call *c;
	uint64_t inc;
	uint32_t n, limit;
	uint64_t bytes;     /* data bytes answered */
	bool by_time;       /* still looking for the first record at or after ts */
	uint64_t ts;
	uint64_t next;      /* next sequence number to read */
	uint64_t last_ts;   /* of the last record answered */
	/* What every record of the answer starts with: the "SequenceNumber"
	 * key, "49" and the incarnation in 20 digits (fixed per call). */
	char head[64];
	size_t head_len;
	/* The last ApproximateArrivalTimestamp written (records of one batch
	 * share it): its millisecond and its text. */
	uint64_t ts_ms;
	char ts_txt[32];
	size_t ts_len;
};

static bool full(const struct rd *x)
{
	return x->n >= x->limit || x->bytes >= SPATE_API_GET_BYTES;
}

/* @p v in exactly 20 digits (zero-padded) at @p w. */
static void fmt20(char *w, uint64_t v)
{
	static const char two[] = "00010203040506070809101112131415161718192021222324252627282930"
				  "31323334353637383940414243444546474849505152535455565758596061"
				  "62636465666768697071727374757677787980818283848586878889909192"
				  "93949596979899";

	for (int i = 18; i >= 0; i -= 2) {
		memcpy(w + i, two + (v % 100) * 2, 2);
		v /= 100;
	}
}

static void rd_init(struct rd *x)
{
	static const char k[] = "{\"SequenceNumber\":\"49";

	memcpy(x->head, k, sizeof(k) - 1);
	fmt20(x->head + sizeof(k) - 1, x->inc);
	x->head_len = sizeof(k) - 1 + 20;
	x->ts_ms = UINT64_MAX;
}

/* Answer record @p r (it is at or after the position): written in place
 * after one reservation (the sequence number's fixed part, the timestamp
 * of the batch and the constant keys copied, not formatted per record);
 * the same text as the general spate_api_buf_* writers produce. */
static void emit(struct rd *x, const struct spate_ring_rec *r)
{
	static const char k_ts[] = "\",\"ApproximateArrivalTimestamp\":";
	static const char k_data[] = ",\"Data\":\"";
	static const char k_key[] = "\",\"PartitionKey\":";
	struct spate_api_buf *o = &x->c->out;
	struct spate_kinesis_view v;

	spate_kinesis_view(r, &v);
	if (spate_api_buf_reserve(o, v.len / 3 * 4 + v.key_len * 6 + 192) < 0)
		return;
	uint64_t ms = r->ts / 1000000;
	if (ms != x->ts_ms) {
		struct spate_api_buf t = { .b = x->ts_txt, .cap = sizeof(x->ts_txt) };
		spate_api_buf_time(&t, r->ts); /* fits: 20 + 1 + 3 digits */
		x->ts_len = t.len;
		x->ts_ms = ms;
	}
	char *w = o->b + o->len;
	if (x->n)
		*w++ = ',';
	memcpy(w, x->head, x->head_len);
	w += x->head_len;
	fmt20(w, r->seq);
	w += 20;
	memcpy(w, k_ts, sizeof(k_ts) - 1);
	w += sizeof(k_ts) - 1;
	memcpy(w, x->ts_txt, x->ts_len);
	w += x->ts_len;
	memcpy(w, k_data, sizeof(k_data) - 1);
	w += sizeof(k_data) - 1;
	/* EVP_EncodeBlock takes an int length: records are at most 1 MiB. */
	int bl = EVP_EncodeBlock((unsigned char *)w, v.data, (int)v.len);
	w += bl > 0 ? bl : 0;
	memcpy(w, k_key, sizeof(k_key) - 1);
	w += sizeof(k_key) - 1;
	o->len = (size_t)(w - o->b);
	spate_api_buf_jstr(o, v.key, v.key_len);
	o->b[o->len++] = '}';
	o->b[o->len] = '\0';
	x->n++;
	x->bytes += v.len;
	x->next = r->seq + 1;
	x->last_ts = r->ts;
	x->by_time = false;
}

/* Whether record @p r is before the position (to be skipped). */
static bool before(const struct rd *x, const struct spate_ring_rec *r)
{
	return x->by_time ? r->ts < x->ts : r->seq < x->next;
}

/* History from the shard's log, up to (not including) @p upto. */
static int read_log(struct rd *x, struct spate_api_stream *st, uint32_t shard, uint64_t upto)
{
	struct spate_log_reader *lr;
	struct spate_ring_rec recs[256];
	char dir[SPATE_CONFIG_PATH_MAX];
	int r;

	if (spate_config_stream_log_dir(x->c->a->cfg, &st->cs, shard, dir, sizeof(dir)) < 0)
		return 0;
	r = spate_log_reader_open(dir, x->by_time ? SPATE_LOG_FROM_TIME : SPATE_LOG_FROM_SEQ,
				  x->by_time ? x->ts : x->next, &lr);
	if (r == -ENOENT)
		return 0; /* nothing written yet */
	if (r < 0)
		return r;
	while (!full(x)) {
		uint64_t skipped = 0;
		unsigned want = x->limit - x->n < 256 ? x->limit - x->n : 256;
		r = spate_log_read(lr, recs, want, &skipped);
		if (r <= 0)
			break;
		for (int i = 0; i < r && !full(x); i++) {
			if (recs[i].seq >= upto)
				goto done;
			if (!before(x, &recs[i]))
				emit(x, &recs[i]);
		}
	}
done:
	spate_log_reader_close(lr);
	return r < 0 && r != -EBADMSG ? r : 0;
}

/* Records from the ring, at or after the position. */
static int read_ring(struct rd *x, struct spate_ring *ring)
{
	struct spate_ring_reader *rd;
	struct spate_ring_span span;
	struct spate_ring_rec recs[256];
	int r;

	r = spate_ring_reader_open(ring, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD, &rd);
	if (r < 0)
		return r;
	/* Skip whole batches before the position by their headers. */
	for (;;) {
		r = spate_ring_peek_batches(rd, &span, 1, UINT64_MAX);
		if (r <= 0)
			break;
		const struct spate_ring_bhdr *h = span.hdr;
		bool skip = x->by_time ? h->ts < x->ts : span.base_seq + span.count <= x->next;
		if (!skip)
			break;
		spate_ring_release(rd, span.count);
	}
	if (r < 0)
		goto out;
	/* Record level from the reader's position (a peek starts there,
	 * whatever the last batch peek left unreleased). */
	while (!full(x)) {
		unsigned want = x->limit - x->n < 256 ? x->limit - x->n : 256;
		r = spate_ring_peek(rd, recs, want, SPATE_API_GET_BYTES - x->bytes);
		if (r <= 0)
			break;
		int i;
		for (i = 0; i < r && !full(x); i++)
			if (!before(x, &recs[i]))
				emit(x, &recs[i]);
		spate_ring_release(rd, (unsigned)r);
		if (x->c->out.oom)
			break;
	}
out:
	spate_ring_reader_close(rd);
	return r < 0 ? r : 0;
}

int spate_api_op_get_records(struct spate_api_call *c)
{
	struct spate_api *a = c->a;
	struct spate_api_tok t;
	struct spate_api_stream *st;
	const char *it;
	size_t il;
	int64_t limit = SPATE_API_GET_MAX;
	char out[SPATE_API_TOK_MAX];
	int r = spate_api_get_str(c, "ShardIterator", &it, &il);

	if (r < 0 || spate_api_get_int(c, "Limit", &limit) < 0)
		return -1;
	if (r == 0)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "null at 'shardIterator' failed to satisfy constraint: Member "
				      "must not be null");
	if (limit < 1 || limit > SPATE_API_GET_MAX)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "'%lld' at 'limit' failed to satisfy constraint: Member must have "
				      "value between 1 and 10000", (long long)limit);
	r = spate_api_tok_decode(a, it, il, &t);
	if (r == -ETIME)
		return spate_api_fail(c, "ExpiredIteratorException", "Iterator expired. The iterator "
				      "was created at time %llu ms while right now it is %llu ms which "
				      "is further in the future than the tolerated delay of 300000 "
				      "milliseconds.", (unsigned long long)t.issued_ms,
				      (unsigned long long)(c->now_ns / 1000000));
	if (r < 0 || (t.kind != SPATE_API_TOK_SEQ && t.kind != SPATE_API_TOK_TIME))
		return spate_api_fail(c, "InvalidArgumentException", "Invalid ShardIterator.");
	st = spate_api_stream_find(a, t.stream);
	if (!st || spate_stream_incarnation(st->s) != t.incarnation || t.shard >= st->shards)
		return spate_api_fail(c, "ResourceNotFoundException", "Shard %u in stream %s under "
				      "account " SPATE_API_ACCOUNT " does not exist", t.shard, t.stream);

	struct spate_ring *ring = spate_stream_ring(st->s, t.shard);
	struct rd x = { .c = c, .inc = t.incarnation, .limit = (uint32_t)limit,
			.by_time = t.kind == SPATE_API_TOK_TIME, .ts = t.pos,
			.next = t.kind == SPATE_API_TOK_SEQ ? t.pos : 0 };
	rd_init(&x);
	uint64_t oldest = UINT64_MAX, oldest_ts = 0;
	spate_ring_oldest(ring, &oldest, &oldest_ts);
	if (spate_api_buf_reserve(&c->out, 64 * 1024) < 0)
		return -1;
	spate_api_buf_str(&c->out, "{\"Records\":[");
	/* History: what the ring no longer holds comes from the log. */
	if (st->has_log && oldest != UINT64_MAX &&
	    (x.by_time ? (oldest_ts == 0 || x.ts < oldest_ts) : x.next < oldest)) {
		r = read_log(&x, st, t.shard, oldest);
		if (r < 0)
			return spate_api_fail(c, "InternalFailure", "reading the log of shard %u of %s: "
					      "%s", t.shard, st->name, strerror(-r));
	}
	if (!full(&x)) {
		r = read_ring(&x, ring);
		if (r == -EBUSY)
			return spate_api_fail(c, "LimitExceededException", "Rate exceeded for shard %u "
					      "in stream %s: too many readers at once; retry", t.shard,
					      st->name);
		if (r < 0)
			return spate_api_fail(c, "InternalFailure", "reading shard %u of %s: %s",
					      t.shard, st->name, strerror(-r));
	}
	atomic_fetch_add_explicit(&a->n_get, x.n, memory_order_relaxed); /* statistics */
	/* Where the next call starts: after the last record answered; with
	 * nothing answered, the same position (a time one stays a time). */
	struct spate_api_tok nt = { .kind = x.by_time ? SPATE_API_TOK_TIME : SPATE_API_TOK_SEQ,
				    .shard = t.shard, .pos = x.by_time ? x.ts : x.next,
				    .incarnation = t.incarnation };
	snprintf(nt.stream, sizeof(nt.stream), "%s", st->name);
	spate_api_tok_encode(a, &nt, out);
	uint64_t tail = spate_ring_tail_seq(ring), behind = 0;
	if (x.n && x.next < tail && c->now_ns > x.last_ts)
		behind = (c->now_ns - x.last_ts) / 1000000;
	spate_api_buf_fmt(&c->out, "],\"NextShardIterator\":\"%s\",\"MillisBehindLatest\":%llu}", out,
			  (unsigned long long)behind);
	return 0;
}
