/* SPDX-License-Identifier: MIT */
/*
 * server.c - the Kinesis-compatible HTTP front of `spate run`: AWS JSON 1.1
 * over HTTP/1.1 (POST /, X-Amz-Target: Kinesis_20131202.<Operation>).
 *
 * Design. libmicrohttpd serves the connections with api.threads daemons,
 * each one internal thread running its own epoll loop over the connections
 * it owns (MHD_USE_EPOLL_INTERNAL_THREAD, no listen socket of its own): a
 * connection's requests all run in one thread, so per-thread producers need
 * no lock, and keep-alive connections cost nothing between requests. One
 * acceptor thread owns the listen socket and hands each new connection to
 * the daemon with the fewest open connections (MHD_add_connection). With
 * libmicrohttpd's own thread pool every worker polls the listen socket and
 * whichever wakes first takes the connection: two keep-alive readers landed
 * on one thread half the time and GetRecords ran on one core of two. A
 * request's body is collected into one buffer sized from Content-Length
 * (over 10 MiB: refused before it is read), the signature is checked
 * (auth.c, the seam to sigv4), the body is parsed once with json-c, and
 * the operation writes its answer straight into an output buffer handed to
 * libmicrohttpd without a copy.
 *
 * Errors: every failure is HTTP 400 with {"__type": ..., "message": ...}
 * and the content type application/x-amz-json-1.1, as Kinesis answers:
 * malformed JSON or a field of the wrong type is SerializationException; a
 * constraint (length, range, count) ValidationException or
 * InvalidArgumentException; an unknown or unimplemented operation
 * UnknownOperationException. Only an allocation failure answers 500
 * (InternalFailure). A request that fails changes nothing.
 *
 * h2o (libh2o-dev) was the alternative; libmicrohttpd was kept: it is
 * already a dependency, its thread pool maps onto per-thread producers,
 * and the per-request cost is small next to JSON and base64 (see
 * docs/kinesis-api.md for the figures).
 *
 * Limits: HTTP/1.1 only (no HTTP/2, which the Kinesis JSON clients do not
 * need); a `durability: always` put holds its thread until durable.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/api/api.h"
#include "engine/api/api_pvt.h"

#define TARGET_PREFIX "Kinesis_20131202."
#define JSON_TYPE "application/x-amz-json-1.1"

static _Atomic uint64_t api_serials;

/* One request (libmicrohttpd's per-connection request state). */
struct req {
	char *body;
	size_t len, cap;
	bool too_big;
	bool bad_method;
};

/* How an operation holds the registry: for its whole run, shared (reads,
 * puts) or exclusive (setters); Create/Delete lock inside. */
enum { LK_READ, LK_WRITE, LK_NONE };
/* Puts parse their body themselves (simdjson, put_parse.cc). */
#define RAW 0x10

struct op {
	const char *name;
	spate_api_op_fn fn;
	int lock;
};

/* Sorted by name (binary search). */
static const struct op ops[] = {
	{ "AddTagsToStream", spate_api_op_add_tags, LK_WRITE },
	{ "CreateStream", spate_api_op_create_stream, LK_NONE },
	{ "DecreaseStreamRetentionPeriod", spate_api_op_decrease_retention, LK_WRITE },
	{ "DeleteStream", spate_api_op_delete_stream, LK_NONE },
	{ "DescribeLimits", spate_api_op_describe_limits, LK_READ },
	{ "DescribeStream", spate_api_op_describe_stream, LK_READ },
	{ "DescribeStreamSummary", spate_api_op_describe_stream_summary, LK_READ },
	{ "GetRecords", spate_api_op_get_records, LK_READ },
	{ "GetShardIterator", spate_api_op_get_shard_iterator, LK_READ },
	{ "IncreaseStreamRetentionPeriod", spate_api_op_increase_retention, LK_WRITE },
	{ "ListShards", spate_api_op_list_shards, LK_READ },
	{ "ListStreams", spate_api_op_list_streams, LK_READ },
	{ "ListTagsForStream", spate_api_op_list_tags, LK_READ },
	{ "PutRecord", spate_api_op_put_record, LK_READ | RAW },
	{ "PutRecords", spate_api_op_put_records, LK_READ | RAW },
	{ "RemoveTagsFromStream", spate_api_op_remove_tags, LK_WRITE },
};

/* Kinesis operations spate does not implement: named in the answer. */
static const char *const unsupported[] = {
	"DeleteResourcePolicy", "DeregisterStreamConsumer", "DescribeStreamConsumer",
	"DisableEnhancedMonitoring", "EnableEnhancedMonitoring", "GetResourcePolicy",
	"ListStreamConsumers", "MergeShards", "PutResourcePolicy", "RegisterStreamConsumer",
	"SplitShard", "StartStreamEncryption", "StopStreamEncryption", "SubscribeToShard",
	"UpdateShardCount", "UpdateStreamMode", "DescribeAccountSettings",
	"UpdateAccountSettings", "TagResource", "UntagResource", "ListTagsForResource",
	"UpdateMaxRecordSize", "UpdateStreamWarmThroughput",
};

int spate_api_fail(struct spate_api_call *c, const char *type, const char *fmt, ...)
{
	va_list ap;

	if (c->err_type)
		return -1; /* the first reason stands */
	c->err_type = type;
	va_start(ap, fmt);
	vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
	va_end(ap);
	return -1;
}

static const char *jtype(json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_object:
		return "a structure";
	case json_type_array:
		return "a list";
	case json_type_string:
		return "a string";
	case json_type_boolean:
		return "a boolean";
	case json_type_int:
	case json_type_double:
		return "a number";
	default:
		return "null";
	}
}

int spate_api_get_str(struct spate_api_call *c, const char *key, const char **s, size_t *len)
{
	json_object *v;

	if (!json_object_object_get_ex(c->in, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return spate_api_fail(c, "SerializationException", "%s: expected a string, got %s",
				      key, jtype(v));
	*s = json_object_get_string(v);
	*len = (size_t)json_object_get_string_len(v);
	return 1;
}

int spate_api_get_int(struct spate_api_call *c, const char *key, int64_t *out)
{
	json_object *v;

	if (!json_object_object_get_ex(c->in, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return spate_api_fail(c, "SerializationException", "%s: expected an integer, got %s",
				      key, jtype(v));
	errno = 0;
	*out = json_object_get_int64(v);
	if (errno == ERANGE)
		return spate_api_fail(c, "ValidationException", "%s: out of range", key);
	return 1;
}

int spate_api_get_num(struct spate_api_call *c, json_object *o, const char *key, double *out)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return spate_api_fail(c, "SerializationException", "%s: expected a number, got %s",
				      key, jtype(v));
	*out = json_object_get_double(v);
	return 1;
}

int spate_api_get_bool(struct spate_api_call *c, const char *key, bool *out)
{
	json_object *v;

	if (!json_object_object_get_ex(c->in, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return spate_api_fail(c, "SerializationException", "%s: expected a boolean, got %s",
				      key, jtype(v));
	*out = json_object_get_boolean(v);
	return 1;
}

void spate_api_buf_arn(struct spate_api_call *c, const char *name)
{
	spate_api_buf_fmt(&c->out, "\"arn:aws:kinesis:%s:" SPATE_API_ACCOUNT ":stream/%s\"",
			  c->a->region, name);
}

struct spate_api_stream *spate_api_stream_named(struct spate_api_call *c,
						const struct spate_api_str *nm,
						const struct spate_api_str *arn_s)
{
	const char *name = nm ? nm->p : NULL, *arn = arn_s ? arn_s->p : NULL;
	size_t nl = nm ? nm->n : 0, al = arn_s ? arn_s->n : 0;
	char buf[SPATE_CONFIG_NAME_MAX + 1];

	if (!name && arn) {
		/* arn:aws:kinesis:<region>:<account>:stream/<name> */
		const char *slash = memchr(arn, '/', al);
		if (al < 20 || memcmp(arn, "arn:", 4) != 0 || !slash || !memmem(arn, al, ":stream/", 8)) {
			spate_api_fail(c, "InvalidArgumentException", "StreamARN %.*s is not a "
				       "Kinesis stream ARN", (int)(al > 200 ? 200 : al), arn);
			return NULL;
		}
		name = slash + 1;
		nl = al - (size_t)(name - arn);
	} else if (!name) {
		spate_api_fail(c, "ValidationException", "1 validation error detected: Value null at "
			       "'streamName' failed to satisfy constraint: Member must not be null");
		return NULL;
	}
	if (nl == 0 || nl > 128) {
		spate_api_fail(c, "ValidationException", "1 validation error detected: Value at "
			       "'streamName' failed to satisfy constraint: Member must have length "
			       "between 1 and 128");
		return NULL;
	}
	if (nl > SPATE_CONFIG_NAME_MAX || memchr(name, '\0', nl)) {
		spate_api_fail(c, "ResourceNotFoundException", "Stream %.*s under account "
			       SPATE_API_ACCOUNT " not found.", (int)nl, name);
		return NULL;
	}
	memcpy(buf, name, nl);
	buf[nl] = '\0';
	struct spate_api_stream *st = spate_api_stream_find(c->a, buf);
	if (!st)
		spate_api_fail(c, "ResourceNotFoundException", "Stream %s under account "
			       SPATE_API_ACCOUNT " not found.", buf);
	return st;
}

struct spate_api_stream *spate_api_call_stream(struct spate_api_call *c)
{
	struct spate_api_str name = { 0 }, arn = { 0 };
	int r1 = spate_api_get_str(c, "StreamName", &name.p, &name.n);
	int r2 = spate_api_get_str(c, "StreamARN", &arn.p, &arn.n);

	if (r1 < 0 || r2 < 0)
		return NULL;
	return spate_api_stream_named(c, r1 ? &name : NULL, r2 ? &arn : NULL);
}

/* ------------------------------------------------------------------------ */
/* HTTP                                                                     */
/* ------------------------------------------------------------------------ */

static void free_body(void *p)
{
	free(p);
}

static enum MHD_Result send_body(struct MHD_Connection *con, unsigned status, char *body,
				 size_t len)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer_with_free_callback(len, body, free_body);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", JSON_TYPE);
	MHD_add_response_header(r, "x-amzn-RequestId", "00000000-0000-0000-0000-000000000000");
	enum MHD_Result rc = MHD_queue_response(con, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result send_error(struct spate_api *a, struct MHD_Connection *con,
				  unsigned status, const char *type, const char *msg)
{
	struct spate_api_buf o = { 0 };

	atomic_fetch_add_explicit(&a->n_errors, 1, memory_order_relaxed); /* statistics */
	spate_api_buf_str(&o, "{\"__type\":");
	spate_api_buf_jstr(&o, type, strlen(type));
	spate_api_buf_str(&o, ",\"message\":");
	spate_api_buf_jstr(&o, msg, strlen(msg));
	spate_api_buf_str(&o, "}");
	if (o.oom) {
		spate_api_buf_free(&o);
		return MHD_NO;
	}
	return send_body(con, status, o.b, o.len);
}

static const struct op *find_op(const char *name)
{
	size_t lo = 0, hi = sizeof(ops) / sizeof(ops[0]);

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(ops[mid].name, name);
		if (c == 0)
			return &ops[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The whole body is in: check, parse, run, answer. */
static enum MHD_Result answer(struct spate_api *a, struct MHD_Connection *con, struct req *q)
{
	const char *target = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Amz-Target");
	const char *ctype = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Type");
	struct spate_api_call c = { .a = a, .now_ns = spate_now_ns() };
	char msg[512];
	const char *etype;
	unsigned status = 400;
	enum MHD_Result rc;

	atomic_fetch_add_explicit(&a->n_requests, 1, memory_order_relaxed); /* statistics */
	if (q->bad_method)
		return send_error(a, con, 400, "UnknownOperationException",
				  "Kinesis takes POST / with X-Amz-Target");
	if (q->too_big)
		return send_error(a, con, 413, "ValidationException",
				  "request body larger than 10 MiB");
	if (a->auth) {
		struct spate_api_http_req hr = { .method = "POST", .path = "/", .query = "",
						 .conn = con, .body = q->body, .body_len = q->len,
						 .now_ns = c.now_ns };
		if (spate_api_auth_check(a->auth, &hr, &etype, &status, msg, sizeof(msg)) < 0)
			return send_error(a, con, status, etype, msg);
	}
	if (!target || strncmp(target, TARGET_PREFIX, strlen(TARGET_PREFIX)) != 0)
		return send_error(a, con, 400, "UnknownOperationException",
				  target ? "X-Amz-Target is not a Kinesis_20131202 operation"
					 : "missing X-Amz-Target");
	const char *opname = target + strlen(TARGET_PREFIX);
	const struct op *op = find_op(opname);
	if (!op) {
		for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++)
			if (strcmp(unsupported[i], opname) == 0) {
				snprintf(msg, sizeof(msg), "%s is a Kinesis operation spate does not "
					 "implement (docs/kinesis-api.md)", opname);
				return send_error(a, con, 400, "UnknownOperationException", msg);
			}
		return send_error(a, con, 400, "UnknownOperationException", "");
	}
	if (ctype && strstr(ctype, "cbor"))
		return send_error(a, con, 400, "SerializationException",
				  "CBOR is not supported: switch it off in the client "
				  "(Java SDK: aws.cborEnabled=false, AWS_CBOR_DISABLE=1)");
	static const char no_body[SPATE_API_PARSE_PADDING + 1];
	c.body = q->body ? q->body : no_body;
	c.body_len = q->len;
	if (op->lock & RAW)
		goto run;
	/* Parse the body once. An empty body is an empty structure. */
	struct json_tokener *tok = json_tokener_new_ex(64);
	if (!tok)
		return send_error(a, con, 500, "InternalFailure", "out of memory");
	c.in = q->len ? json_tokener_parse_ex(tok, q->body, (int)q->len) : json_object_new_object();
	if (q->len && (json_tokener_get_error(tok) != json_tokener_success ||
		       json_tokener_get_parse_end(tok) != q->len)) {
		enum json_tokener_error je = json_tokener_get_error(tok);
		snprintf(msg, sizeof(msg), "malformed JSON at byte %zu: %s",
			 json_tokener_get_parse_end(tok),
			 je == json_tokener_continue ? "unexpected end of the body"
			 : je == json_tokener_success ? "text after the JSON value"
						      : json_tokener_error_desc(je));
		json_object_put(c.in);
		json_tokener_free(tok);
		return send_error(a, con, 400, "SerializationException", msg);
	}
	json_tokener_free(tok);
	if (!c.in || !json_object_is_type(c.in, json_type_object)) {
		json_object_put(c.in);
		return send_error(a, con, 400, "SerializationException",
				  "expected a JSON structure as the body");
	}
run:;
	int lk = op->lock & ~RAW;
	if (lk == LK_READ)
		pthread_rwlock_rdlock(&a->lock);
	else if (lk == LK_WRITE)
		pthread_rwlock_wrlock(&a->lock);
	int r = op->fn(&c);
	if (lk != LK_NONE)
		pthread_rwlock_unlock(&a->lock);
	json_object_put(c.in);
	if (r < 0 || c.err_type || c.out.oom) {
		if (!c.err_type || c.out.oom) {
			c.err_type = "InternalFailure";
			snprintf(c.err_msg, sizeof(c.err_msg), "out of memory");
			status = 500;
		}
		spate_api_buf_free(&c.out);
		return send_error(a, con, status, c.err_type, c.err_msg);
	}
	if (!c.out.b)
		spate_api_buf_str(&c.out, "{}");
	if (c.out.oom) {
		spate_api_buf_free(&c.out);
		return send_error(a, con, 500, "InternalFailure", "out of memory");
	}
	rc = send_body(con, 200, c.out.b, c.out.len);
	return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *con, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **ptr)
{
	struct spate_api *a = cls;
	struct req *q = *ptr;

	(void)version;
	if (!q) {
		q = calloc(1, sizeof(*q));
		if (!q)
			return MHD_NO;
		*ptr = q;
		if (strcmp(method, "POST") != 0 || strcmp(url, "/") != 0)
			q->bad_method = true;
		const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl) {
			unsigned long long n = strtoull(cl, NULL, 10);
			if (n > SPATE_API_BODY_MAX) {
				/* Answer before reading it; libmicrohttpd closes the
				 * connection after this answer. */
				q->too_big = true;
				return answer(a, con, q);
			}
			/* Room for the parser's read-ahead after the body. */
			q->body = malloc(n + SPATE_API_PARSE_PADDING);
			if (!q->body)
				return MHD_NO;
			q->cap = n + SPATE_API_PARSE_PADDING;
		}
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (q->too_big || q->bad_method)
			return MHD_YES;
		if (q->len + n > SPATE_API_BODY_MAX) {
			q->too_big = true;
			return MHD_YES;
		}
		if (q->len + n + SPATE_API_PARSE_PADDING > q->cap) {
			size_t cap = q->cap ? q->cap : 65536;
			while (cap < q->len + n + SPATE_API_PARSE_PADDING)
				cap *= 2;
			char *b = realloc(q->body, cap);
			if (!b)
				return MHD_NO;
			q->body = b;
			q->cap = cap;
		}
		memcpy(q->body + q->len, upload, n);
		q->len += n;
		q->body[q->len] = '\0';
		return MHD_YES;
	}
	return answer(a, con, q);
}

static void completed(void *cls, struct MHD_Connection *con, void **ptr,
		      enum MHD_RequestTerminationCode toe)
{
	struct req *q = *ptr;

	(void)cls;
	(void)con;
	(void)toe;
	if (q) {
		free(q->body);
		free(q);
		*ptr = NULL;
	}
}

static unsigned threads_of(const struct spate_config_api *c)
{
	long n;

	if (c->threads)
		return c->threads;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 2 ? 2 : n > 8 ? 8 : (unsigned)n;
}

/* libmicrohttpd's connection notifications: count daemon *cls's closes. */
static void conn_note(void *cls, struct MHD_Connection *con, void **socket_ctx,
		      enum MHD_ConnectionNotificationCode toe)
{
	_Atomic uint32_t *n = cls;

	(void)con;
	(void)socket_ctx;
	/* Relaxed: a balancing hint; the acceptor counted the connection up. */
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
		atomic_fetch_sub_explicit(n, 1, memory_order_relaxed);
}

/* The acceptor: each new connection to the daemon with the fewest open
 * ones (the first of them on a tie), until spate_api_stop() shuts the
 * listen socket down. */
static void *acceptor_main(void *arg)
{
	struct spate_api *a = arg;
	struct sockaddr_storage ss;
	int one = 1;

	/* Relaxed: stopping is also signalled by the shutdown that ends accept. */
	while (!atomic_load_explicit(&a->stopping, memory_order_relaxed)) {
		socklen_t sl = sizeof(ss);
		int fd = accept4(a->listen_fd, (struct sockaddr *)&ss, &sl,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				usleep(10000); /* out of descriptors: let some close */
				continue;
			}
			break; /* EINVAL: shut down by spate_api_stop() */
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		unsigned best = 0;
		uint32_t least = UINT32_MAX;
		for (unsigned i = 0; i < a->n_daemons; i++) {
			/* Relaxed: a hint (see struct spate_api). */
			uint32_t n = atomic_load_explicit(&a->conns[i], memory_order_relaxed);
			if (n < least)
				least = n, best = i;
		}
		atomic_fetch_add_explicit(&a->conns[best], 1, memory_order_relaxed); /* hint */
		/* On failure libmicrohttpd closes the socket. */
		if (MHD_add_connection(a->daemons[best], fd, (struct sockaddr *)&ss, sl) != MHD_YES)
			atomic_fetch_sub_explicit(&a->conns[best], 1, memory_order_relaxed); /* hint */
	}
	return NULL;
}

/* The listen socket of @p sa (bound, listening). @return the fd or -errno. */
static int listen_on(const struct sockaddr *sa, socklen_t sl)
{
	int one = 1, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, sl) < 0 || listen(fd, 512) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* Stop and free what spate_api_start() started (any part of it). */
static void stop_serving(struct spate_api *a)
{
	/* Relaxed: the shutdown below is what wakes the acceptor. */
	atomic_store_explicit(&a->stopping, true, memory_order_relaxed);
	if (a->listen_fd >= 0)
		shutdown(a->listen_fd, SHUT_RDWR);
	if (a->accepting)
		pthread_join(a->acceptor, NULL);
	a->accepting = false;
	if (a->listen_fd >= 0)
		close(a->listen_fd);
	a->listen_fd = -1;
	for (unsigned i = 0; a->daemons && i < a->n_daemons; i++)
		if (a->daemons[i])
			MHD_stop_daemon(a->daemons[i]);
	free(a->daemons);
	free((void *)a->conns);
	a->daemons = NULL;
	a->conns = NULL;
	a->n_daemons = 0;
}

int spate_api_start(struct spate_engine *e, const struct spate_config *cfg, struct spate_api **out,
		    char *err, size_t errlen)
{
	const struct spate_config_api *ac = &cfg->api;
	char host[64];
	uint16_t port;
	struct sockaddr_in a4;
	struct sockaddr_in6 a6;
	const struct sockaddr *sa;
	socklen_t sl;
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET |
			 MHD_USE_ERROR_LOG;
	struct spate_api *a;
	int r;

	*out = NULL;
	if (spate_config_parse_listen(ac->listen, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "api.listen %s: not HOST:PORT", ac->listen);
		return -EINVAL;
	}
	memset(&a4, 0, sizeof(a4));
	memset(&a6, 0, sizeof(a6));
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
		a4.sin_family = AF_INET;
		a4.sin_port = htons(port);
		sa = (const struct sockaddr *)&a4;
		sl = sizeof(a4);
	} else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
		a6.sin6_family = AF_INET6;
		a6.sin6_port = htons(port);
		sa = (const struct sockaddr *)&a6;
		sl = sizeof(a6);
		flags |= MHD_USE_IPv6;
	} else {
		snprintf(err, errlen, "api.listen %s: not an IP address", ac->listen);
		return -EINVAL;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->e = e;
	a->cfg = cfg;
	a->listen_fd = -1;
	a->serial = atomic_fetch_add_explicit(&api_serials, 1, memory_order_relaxed) + 1;
	a->started_ns = spate_now_ns();
	/* Tests shorten the iterator lifetime to see it expire (documented in
	 * docs/kinesis-api.md); anything else keeps Kinesis' 5 minutes. */
	const char *ttl = getenv("SPATE_API_ITER_TTL_MS");
	a->iter_ttl_ms = ttl && atoll(ttl) > 0 ? (uint64_t)atoll(ttl) : SPATE_API_ITER_TTL_MS;
	snprintf(a->region, sizeof(a->region), "%s", ac->region[0] ? ac->region : "us-east-1");
	r = spate_api_iter_key(a, cfg, err, errlen);
	if (r < 0)
		goto fail_free;
	r = spate_api_auth_open(cfg, &a->auth, err, errlen);
	if (r < 0)
		goto fail_free;
	r = spate_api_tls_load(ac->tls_cert, ac->tls_key, &a->tls, err, errlen);
	if (r < 0)
		goto fail_auth;
	r = spate_api_registry_init(a, err, errlen);
	if (r < 0)
		goto fail_tls;
	a->n_daemons = threads_of(ac);
	a->daemons = calloc(a->n_daemons, sizeof(*a->daemons));
	a->conns = calloc(a->n_daemons, sizeof(*a->conns));
	if (!a->daemons || !a->conns) {
		r = -ENOMEM;
		snprintf(err, errlen, "api: out of memory");
		goto fail_serve;
	}
	r = listen_on(sa, sl);
	if (r < 0) {
		snprintf(err, errlen, "api.listen %s: cannot listen: %s", ac->listen, strerror(-r));
		goto fail_serve;
	}
	a->listen_fd = r;
	for (unsigned i = 0; i < a->n_daemons; i++) {
		struct MHD_OptionItem tlso[SPATE_API_TLS_OPTIONS];
		a->daemons[i] = MHD_start_daemon(flags | spate_api_tls_flags(&a->tls), 0, NULL, NULL,
						 handle, a, MHD_OPTION_ARRAY,
						 spate_api_tls_options(&a->tls, tlso),
						 MHD_OPTION_CONNECTION_TIMEOUT, 60u,
						 MHD_OPTION_NOTIFY_COMPLETED, completed, a,
						 MHD_OPTION_NOTIFY_CONNECTION, conn_note, &a->conns[i],
						 MHD_OPTION_END);
		if (!a->daemons[i]) {
			r = errno ? -errno : -ENOMEM;
			snprintf(err, errlen, "api: cannot start HTTP thread %u: %s", i, strerror(-r));
			goto fail_serve;
		}
	}
	r = pthread_create(&a->acceptor, NULL, acceptor_main, a);
	if (r) {
		r = -r;
		snprintf(err, errlen, "api: cannot start the acceptor thread: %s", strerror(-r));
		goto fail_serve;
	}
	a->accepting = true;
	*out = a;
	return 0;

fail_serve:
	stop_serving(a);
	spate_api_registry_fini(a);
fail_tls:
	spate_api_tls_free(&a->tls);
fail_auth:
	spate_api_auth_close(a->auth);
fail_free:
	free(a);
	return r;
}

void spate_api_stop(struct spate_api *a)
{
	if (!a)
		return;
	stop_serving(a);
	spate_api_registry_fini(a);
	spate_api_tls_free(&a->tls);
	spate_api_auth_close(a->auth);
	free(a);
}

void spate_api_counters(const struct spate_api *a, uint64_t *requests, uint64_t *errors)
{
	/* Relaxed: statistics. */
	*requests = atomic_load_explicit(&a->n_requests, memory_order_relaxed);
	*errors = atomic_load_explicit(&a->n_errors, memory_order_relaxed);
}
