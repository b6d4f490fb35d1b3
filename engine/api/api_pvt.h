/* SPDX-License-Identifier: MIT */
/*
 * api_pvt.h - what the files of the Kinesis API front share (engine/api/):
 * the stream registry, per-thread producers, the call being answered, the
 * JSON output buffer, iterators and tokens. Internal: never installed,
 * included only by the .c files of engine/api/.
 */
#ifndef SPATE_API_PVT_H
#define SPATE_API_PVT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "spate/config.h"
#include "spate/engine.h"
#include "spate/kinesis.h"
#include "spate/stream.h"

#include "engine/api/put_parse.h"
#include "engine/api/tls.h"

struct spate_api_auth;

/** Largest request body (Kinesis: PutRecords is at most 5 MiB of records,
 *  10 MiB with the JSON and base64 around them). */
#define SPATE_API_BODY_MAX (10u << 20)
/** Largest record: data + partition key (Kinesis: 1 MiB). */
#define SPATE_API_RECORD_MAX (1u << 20)
/** PutRecords entries per call, GetRecords records per call. */
#define SPATE_API_PUT_MAX 500u
#define SPATE_API_GET_MAX 10000u
/** GetRecords data per answer (Kinesis: 10 MiB). */
#define SPATE_API_GET_BYTES (10u << 20)
/** Shard iterators and next tokens expire after this (Kinesis: 5 minutes). */
#define SPATE_API_ITER_TTL_MS (300ull * 1000)
/** Tags per stream (Kinesis: 50) and per AddTagsToStream call (10). */
#define SPATE_API_TAGS_MAX 50u
#define SPATE_API_TAGS_PER_CALL 10u
/** The account id shown in ARNs and messages. */
#define SPATE_API_ACCOUNT "000000000000"

/* ------------------------------------------------------------------------ */
/* Output buffer (json_out.c)                                               */
/* ------------------------------------------------------------------------ */

/** A growing byte buffer; after a failed growth it stays failed (oom). */
struct spate_api_buf {
	char *b;
	size_t len, cap;
	bool oom;
};

int spate_api_buf_reserve(struct spate_api_buf *o, size_t more);
void spate_api_buf_put(struct spate_api_buf *o, const void *p, size_t n);
void spate_api_buf_str(struct spate_api_buf *o, const char *s);
__attribute__((format(printf, 2, 3))) void spate_api_buf_fmt(struct spate_api_buf *o,
							     const char *fmt, ...);
/** A JSON string: quotes, escapes; bytes that are not UTF-8 become U+FFFD. */
void spate_api_buf_jstr(struct spate_api_buf *o, const void *s, size_t n);
/** "key": (with the quotes and colon; @p key is a literal, not escaped). */
void spate_api_buf_key(struct spate_api_buf *o, const char *key);
/** The base64 of @p n bytes, quoted (OpenSSL EVP_EncodeBlock). */
void spate_api_buf_b64(struct spate_api_buf *o, const void *p, size_t n);
/** @p v in decimal; zero-padded to @p width digits (at most 20). */
void spate_api_buf_u64(struct spate_api_buf *o, uint64_t v);
void spate_api_buf_zpad(struct spate_api_buf *o, uint64_t v, unsigned width);
/** An epoch timestamp in seconds with milliseconds (Kinesis' JSON form). */
void spate_api_buf_time(struct spate_api_buf *o, uint64_t ns);
void spate_api_buf_free(struct spate_api_buf *o);

/**
 * Strictly decode base64 @p s of @p n characters (the standard alphabet,
 * padded to a multiple of 4, '=' only at the end) into @p out (at least
 * 3 * n / 4 bytes).
 * @return the decoded length, or -EINVAL.
 */
int64_t spate_api_b64_decode(const char *s, size_t n, void *out);
/** Whether @p n bytes at @p s are valid UTF-8; *chars gets the code points. */
bool spate_api_utf8_ok(const char *s, size_t n, size_t *chars);

/* ------------------------------------------------------------------------ */
/* Streams (registry.c)                                                     */
/* ------------------------------------------------------------------------ */

/** A stream the front serves. Fields are fixed after registration except
 *  those marked (wrlock), changed under the registry's write lock. */
struct spate_api_stream {
	char name[SPATE_CONFIG_NAME_MAX + 1];
	uint64_t id;                /**< unique in this process: per-thread producers key */
	struct spate_stream *s;     /**< the engine's handle */
	struct spate_config_stream cs; /**< its definition (log dir, durability, limits) */
	uint32_t shards;
	uint64_t max_record;        /**< largest ring record (the keyed envelope) */
	uint64_t created_ns;
	bool has_log;
	uint32_t retention_hours;   /**< (wrlock) */
};

/** Per-thread state: producers (a producer belongs to one thread) and the
 *  scratch arrays of PutRecords. Owned by the thread while it holds the
 *  registry's read lock; by a DeleteStream holding the write lock. */
struct spate_api_tctx {
	struct spate_api_tctx *next;
	uint64_t api_serial;
	struct spate_api_prod {
		uint64_t stream_id;
		struct spate_producer *p;
	} *prods;
	uint32_t n_prods, cap_prods;
	struct spate_put_entry ents[SPATE_API_PUT_MAX];
	struct spate_put_result res[SPATE_API_PUT_MAX];
	struct spate_api_buf arena; /**< envelopes of the current put */
	struct spate_api_put_req req; /**< the current put, parsed */
	void *md5_ctx;              /**< EVP_MD_CTX reused for partition keys */
	void *md5;                  /**< EVP_MD (fetched once) */
};

struct spate_api {
	struct spate_engine *e;
	const struct spate_config *cfg;
	uint64_t serial;            /**< distinguishes fronts for thread contexts */
	/** One libmicrohttpd daemon per HTTP thread (struct MHD_Daemon *), fed
	 *  by the acceptor thread; conns[i]: daemon i's open connections
	 *  (relaxed: a balancing hint, counted up by the acceptor, down by the
	 *  daemon's close notification). */
	void **daemons;
	_Atomic uint32_t *conns;
	unsigned n_daemons;
	int listen_fd;
	pthread_t acceptor;
	bool accepting;             /**< the acceptor thread was started */
	_Atomic bool stopping;
	char region[SPATE_CONFIG_REGION_MAX + 1];
	uint8_t mac_key[32];        /**< iterators and tokens (the bus's key file) */
	uint64_t iter_ttl_ms;       /**< SPATE_API_ITER_TTL_MS (tests shorten it) */
	struct spate_api_auth *auth; /**< NULL: auth none */
	struct spate_api_tls tls;   /**< api.tls PEM text (libmicrohttpd keeps pointers) */
	/** Streams, sorted by name. The read lock is held by every call for its
	 *  duration (a handle stays valid); Create/Delete take the write lock. */
	pthread_rwlock_t lock;
	struct spate_api_stream **streams;
	uint32_t n_streams, cap_streams;
	uint64_t next_id;           /**< (wrlock) */
	pthread_mutex_t tctx_lock;  /**< the list below */
	struct spate_api_tctx *tctxs;
	uint64_t started_ns;
	/* Counters for `spate run`'s report (relaxed: statistics only). */
	_Atomic uint64_t n_requests, n_errors, n_put, n_get;
};

int spate_api_registry_init(struct spate_api *a, char *err, size_t errlen);
void spate_api_registry_fini(struct spate_api *a);
/** The stream called @p name (read or write lock held), or NULL. */
struct spate_api_stream *spate_api_stream_find(struct spate_api *a, const char *name);
/** This thread's context (created on first use). NULL on ENOMEM. */
struct spate_api_tctx *spate_api_tctx_get(struct spate_api *a);
/** This thread's producer on @p st (read lock held). @return 0 or -errno. */
int spate_api_producer(struct spate_api *a, struct spate_api_tctx *t, struct spate_api_stream *st,
		       struct spate_producer **out);
/**
 * Create stream @p name with @p shards shards on the running bus (write lock
 * taken inside). @return 0, -EEXIST, -EINVAL (@p err says why), -ENOTSUP
 * (this build's engine cannot add streams while it runs), -ENOMEM, or the
 * engine's error.
 */
int spate_api_stream_create(struct spate_api *a, const char *name, uint32_t shards, char *err,
			    size_t errlen);
/** Delete stream @p name. @return 0, -ENOENT, -EBUSY (consumers read it and
 *  @p force is false), -ENOTSUP, or the engine's error. */
int spate_api_stream_delete(struct spate_api *a, const char *name, bool force, char *err,
			    size_t errlen);
/** Set the retention of @p st (write lock held by the caller). */
int spate_api_stream_retention(struct spate_api *a, struct spate_api_stream *st, uint32_t hours);

/* ------------------------------------------------------------------------ */
/* Calls (server.c dispatches; ops_*.c answer)                              */
/* ------------------------------------------------------------------------ */

/** One request being answered. */
struct spate_api_call {
	struct spate_api *a;
	json_object *in;            /**< the parsed body (an object); NULL for puts */
	const char *body;           /**< the raw body (SPATE_API_PARSE_PADDING bytes after) */
	size_t body_len;
	struct spate_api_buf out;   /**< the 200 answer's body */
	const char *err_type;       /**< set by spate_api_fail */
	char err_msg[512];
	uint64_t now_ns;
};

/** Fail the call with AWS error @p type (HTTP 400). @return -1. */
__attribute__((format(printf, 3, 4))) int spate_api_fail(struct spate_api_call *c,
							 const char *type, const char *fmt, ...);

/* Typed field access: 1 found, 0 absent (or null), -1 wrong type (the call
 * has failed with SerializationException). */
int spate_api_get_str(struct spate_api_call *c, const char *key, const char **s, size_t *len);
int spate_api_get_int(struct spate_api_call *c, const char *key, int64_t *v);
int spate_api_get_num(struct spate_api_call *c, json_object *o, const char *key, double *v);
int spate_api_get_bool(struct spate_api_call *c, const char *key, bool *v);
/** The stream a call names (StreamName or StreamARN) with the read lock held;
 *  NULL after failing the call (ValidationException, ResourceNotFound). */
struct spate_api_stream *spate_api_call_stream(struct spate_api_call *c);
/** The stream named by @p name or, if NULL, @p arn (views, not
 *  NUL-terminated); NULL after failing the call. */
struct spate_api_stream *spate_api_stream_named(struct spate_api_call *c,
						const struct spate_api_str *name,
						const struct spate_api_str *arn);
/** Write the ARN of stream @p name. */
void spate_api_buf_arn(struct spate_api_call *c, const char *name);

typedef int (*spate_api_op_fn)(struct spate_api_call *c);
int spate_api_op_create_stream(struct spate_api_call *c);
int spate_api_op_delete_stream(struct spate_api_call *c);
int spate_api_op_list_streams(struct spate_api_call *c);
int spate_api_op_describe_stream(struct spate_api_call *c);
int spate_api_op_describe_stream_summary(struct spate_api_call *c);
int spate_api_op_list_shards(struct spate_api_call *c);
int spate_api_op_increase_retention(struct spate_api_call *c);
int spate_api_op_decrease_retention(struct spate_api_call *c);
int spate_api_op_add_tags(struct spate_api_call *c);
int spate_api_op_remove_tags(struct spate_api_call *c);
int spate_api_op_list_tags(struct spate_api_call *c);
int spate_api_op_describe_limits(struct spate_api_call *c);
int spate_api_op_put_record(struct spate_api_call *c);
int spate_api_op_put_records(struct spate_api_call *c);
int spate_api_op_get_shard_iterator(struct spate_api_call *c);
int spate_api_op_get_records(struct spate_api_call *c);

/* ------------------------------------------------------------------------ */
/* Iterators and tokens (iter.c)                                            */
/* ------------------------------------------------------------------------ */

enum spate_api_tok_kind {
	SPATE_API_TOK_SEQ = 1,  /**< shard iterator: first record with seq >= pos */
	SPATE_API_TOK_TIME = 2, /**< shard iterator: first record with ts >= pos (ns) */
	SPATE_API_TOK_LIST = 3, /**< ListShards/ListStreams NextToken: pos = next index */
};

/** What an iterator or token says. */
struct spate_api_tok {
	uint8_t kind;
	uint32_t shard;
	uint64_t pos;
	uint64_t incarnation;
	uint64_t issued_ms;
	char stream[SPATE_CONFIG_NAME_MAX + 1];
};

/** Longest encoded token, NUL included. */
#define SPATE_API_TOK_MAX 160u

/** The iterator key's file in the bus's state_dir. */
#define SPATE_API_ITER_KEY_FILE "api-iterator.key"

/**
 * Load the bus's iterator key into a->mac_key from <state_dir>/api-iterator.key,
 * creating it (random, mode 0600, atomically) if it does not exist.
 * @return 0, -EINVAL (the file's type, mode or size is wrong: @p err says
 *         which), or -errno of the file system or the random source.
 */
int spate_api_iter_key(struct spate_api *a, const struct spate_config *cfg, char *err,
		       size_t errlen);
/** Encode @p t (issued now) into @p out (SPATE_API_TOK_MAX), MAC'd. */
void spate_api_tok_encode(const struct spate_api *a, struct spate_api_tok *t, char *out);
/**
 * Decode and authenticate @p s. @return 0, -EINVAL (malformed or the MAC
 * does not match: tampered, or from another engine), -ETIME (older than
 * SPATE_API_ITER_TTL_MS; *t is filled).
 */
int spate_api_tok_decode(const struct spate_api *a, const char *s, size_t len,
			 struct spate_api_tok *t);

/* ------------------------------------------------------------------------ */
/* Signatures (the seam to engine/api/sigv4.[ch], auth.c)                   */
/* ------------------------------------------------------------------------ */

/** A request as the signature check sees it. */
struct spate_api_http_req {
	const char *method;
	const char *path;
	const char *query;
	void *conn;                 /**< struct MHD_Connection, for its headers */
	const void *body;
	size_t body_len;
	uint64_t now_ns;
};

/** Load the keys of api.auth (secret files: regular, mode 0600). NULL *out
 *  for auth none. @return 0 or -errno (@p err names file:line:field). */
int spate_api_auth_open(const struct spate_config *cfg, struct spate_api_auth **out, char *err,
			size_t errlen);
void spate_api_auth_close(struct spate_api_auth *au);
/** Check a request's signature. @return 0, or -1 with the AWS error type
 *  in *type (static) and a message in @p msg; *status is its HTTP status. */
int spate_api_auth_check(struct spate_api_auth *au, const struct spate_api_http_req *r,
			 const char **type, unsigned *status, char *msg, size_t msglen);

#endif
