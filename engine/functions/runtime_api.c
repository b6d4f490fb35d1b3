/* SPDX-License-Identifier: MIT */
/*
 * runtime_api.c - the Lambda Runtime API, served by the engine to one
 * function process on 127.0.0.1:<its own port> (AWS_LAMBDA_RUNTIME_API).
 *
 * Design. One libmicrohttpd daemon per process slot, a thread per
 * connection: a runtime keeps one connection open and loops GET
 * /2018-06-01/runtime/invocation/next (long poll) -> POST
 * .../invocation/<id>/response (or /error). The long poll blocks in the
 * connection's thread on the slot's condition variable until a worker
 * posts an invocation (spate_fn_rapi_invoke); the worker then waits on
 * the same variable for the answer. An invocation belongs to one
 * generation of the slot's process (the supervisor's spawn number): a new
 * process never takes the event of the one that died, and an answer naming
 * another request id is refused (400), so a late answer cannot complete the
 * wrong batch. The first GET /next of a generation is its end of init: the
 * supervisor times and counts the cold start there (spate_sup_ready), as
 * Lambda counts Init Duration up to the runtime's first /next. POST
 * /runtime/init/error logs the error and has the supervisor restart the
 * process after its back-off; the waiting worker sees it die.
 *
 * The event is sent from the worker's buffer without a copy; the worker
 * waits for the answer or the process's death before it reuses it.
 *
 * Limits. Answers above 6 MiB (Lambda's synchronous payload limit) are
 * refused with 413 and fail the invocation. Only one invocation per slot
 * at a time (Lambda runs one per execution environment). No Runtime API
 * extensions or telemetry API.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "engine/functions/runtime_api.h"
#include "engine/functions/supervisor.h"
#include "spate/slog.h"

#define RAPI_PREFIX "/2018-06-01/runtime/"
#define RAPI_BODY_MAX (6u << 20)
#define RAPI_ID_LEN 36

enum inv_state { INV_NONE = 0, INV_PENDING, INV_SENT, INV_DONE };

struct spate_fn_rapi {
	struct MHD_Daemon *d;
	uint16_t port;
	uint32_t slot;
	struct spate_sup *sup;
	char consumer[64];
	char arn[256];
	pthread_mutex_t lock;
	pthread_cond_t cond;  /* CLOCK_MONOTONIC */
	bool stopping;
	int64_t ready_gen;    /* last generation whose first /next was seen */
	/* The invocation in flight (lock). */
	enum inv_state st;
	int64_t gen;
	char id[RAPI_ID_LEN + 1];
	const char *event;
	size_t event_len;
	uint64_t deadline_ms;
	struct spate_fn_result *res;
	uint64_t counter;
	uint32_t rnd;
	char init_error[240];
	char trace[64];
};

/* A request's state between libmicrohttpd's calls. */
struct req {
	struct spate_fn_buf body;
	bool too_big;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void abs_mono(struct timespec *ts, uint64_t ns)
{
	ts->tv_sec = (time_t)(ns / 1000000000ull);
	ts->tv_nsec = (long)(ns % 1000000000ull);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *json)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result reply_err(struct MHD_Connection *c, unsigned status, const char *type,
				 const char *msg)
{
	char buf[400];

	snprintf(buf, sizeof(buf), "{\"errorMessage\":\"%s\",\"errorType\":\"%s\"}", msg, type);
	return reply(c, status, buf);
}

/* GET .../invocation/next: the first of a generation ends its init; then
 * wait for this generation's invocation. */
static enum MHD_Result next(struct spate_fn_rapi *r, struct MHD_Connection *c)
{
	int64_t gen = r->sup ? spate_sup_gen(r->sup, r->slot, 0) : -EINVAL;
	char deadline[24];

	if (gen < 0)
		return reply_err(c, 500, "Runtime.NoProcess", "no live process in this slot");
	pthread_mutex_lock(&r->lock);
	if (r->ready_gen != gen) {
		r->ready_gen = gen;
		r->init_error[0] = 0;
		pthread_mutex_unlock(&r->lock);
		spate_sup_ready(r->sup, r->slot, gen); /* the cold start ends here */
		pthread_mutex_lock(&r->lock);
	}
	while (!r->stopping && !(r->st == INV_PENDING && r->gen == gen))
		pthread_cond_wait(&r->cond, &r->lock);
	if (r->stopping) {
		pthread_mutex_unlock(&r->lock);
		return MHD_NO; /* close the connection */
	}
	r->st = INV_SENT;
	r->res->sent_ns = mono_ns();
	snprintf(deadline, sizeof(deadline), "%" PRIu64, r->deadline_ms);
	/* Persistent: the worker keeps the event until the answer or the
	 * process's death (see the file comment). */
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		r->event_len, (void *)r->event, MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		pthread_mutex_unlock(&r->lock);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	MHD_add_response_header(resp, "Lambda-Runtime-Aws-Request-Id", r->id);
	MHD_add_response_header(resp, "Lambda-Runtime-Deadline-Ms", deadline);
	MHD_add_response_header(resp, "Lambda-Runtime-Invoked-Function-Arn", r->arn);
	MHD_add_response_header(resp, "Lambda-Runtime-Trace-Id", r->trace);
	pthread_mutex_unlock(&r->lock);
	enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* errorType: errorMessage of an error body (Lambda's shape), or the text. */
static void error_text(const char *body, size_t len, const char *hdr_type, char *out, size_t olen)
{
	struct json_object *o = len ? json_tokener_parse(body) : NULL, *t = NULL, *m = NULL;

	if (o && json_object_is_type(o, json_type_object)) {
		json_object_object_get_ex(o, "errorType", &t);
		json_object_object_get_ex(o, "errorMessage", &m);
	}
	if (t || m || hdr_type)
		snprintf(out, olen, "%s: %s",
			 t ? json_object_get_string(t) : hdr_type ? hdr_type : "Error",
			 m ? json_object_get_string(m) : "");
	else
		snprintf(out, olen, "%.*s", (int)(len > 200 ? 200 : len), body ? body : "");
	json_object_put(o);
}

/* POST .../invocation/<id>/response|error */
static enum MHD_Result answer(struct spate_fn_rapi *r, struct MHD_Connection *c, const char *id,
			      size_t id_len, bool error, struct req *q)
{
	pthread_mutex_lock(&r->lock);
	if (r->st != INV_SENT || id_len != RAPI_ID_LEN || memcmp(id, r->id, RAPI_ID_LEN) != 0) {
		pthread_mutex_unlock(&r->lock);
		return reply_err(c, 400, "InvalidRequestID", "no invocation in flight has this id");
	}
	struct spate_fn_result *res = r->res;
	res->done_ns = mono_ns();
	if (q->too_big) {
		res->kind = SPATE_FN_ERROR;
		snprintf(res->error, sizeof(res->error),
			 "Function.ResponseSizeTooLarge: the answer is above %u bytes", RAPI_BODY_MAX);
	} else if (error) {
		res->kind = SPATE_FN_ERROR;
		error_text(q->body.p, q->body.len,
			   MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						       "Lambda-Runtime-Function-Error-Type"),
			   res->error, sizeof(res->error));
	} else {
		struct spate_fn_buf t = res->body; /* swap: no copy of the answer */
		res->kind = SPATE_FN_RESPONSE;
		res->body = q->body;
		q->body = t;
		res->body.len = res->body.p ? res->body.len : 0;
	}
	r->st = INV_DONE;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (q->too_big)
		return reply_err(c, 413, "RequestEntityTooLarge", "answer above 6 MiB");
	return reply(c, MHD_HTTP_ACCEPTED, "{\"status\":\"OK\"}");
}

/* POST .../init/error: log, restart the process (after back-off). */
static enum MHD_Result init_error(struct spate_fn_rapi *r, struct MHD_Connection *c, struct req *q)
{
	char why[240];
	int64_t gen = r->sup ? spate_sup_gen(r->sup, r->slot, 0) : -EINVAL;

	error_text(q->body.p, q->body.len,
		   MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					       "Lambda-Runtime-Function-Error-Type"),
		   why, sizeof(why));
	pthread_mutex_lock(&r->lock);
	snprintf(r->init_error, sizeof(r->init_error), "%s", why);
	pthread_mutex_unlock(&r->lock);
	if (gen > 0) {
		char msg[300];
		snprintf(msg, sizeof(msg), "init error: %s", why);
		spate_sup_fail(r->sup, r->slot, gen, msg);
	}
	return reply(c, MHD_HTTP_ACCEPTED, "{\"status\":\"OK\"}");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct spate_fn_rapi *r = cls;
	struct req *q = *con_cls;
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;

	(void)version;
	if (!q) {
		q = calloc(1, sizeof(*q));
		if (!q)
			return MHD_NO;
		*con_cls = q;
		return MHD_YES;
	}
	if (*upload_size) { /* a body, in pieces */
		if (!q->too_big && q->body.len + *upload_size > RAPI_BODY_MAX)
			q->too_big = true;
		if (!q->too_big) {
			if (spate_fn_buf_reserve(&q->body, *upload_size + 1) < 0)
				return MHD_NO;
			memcpy(q->body.p + q->body.len, upload, *upload_size);
			q->body.len += *upload_size;
			q->body.p[q->body.len] = 0;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (strncmp(url, RAPI_PREFIX, sizeof(RAPI_PREFIX) - 1) != 0)
		return reply_err(c, 404, "NotFound", "not a Runtime API path");
	url += sizeof(RAPI_PREFIX) - 1;
	if (!post && strcmp(method, MHD_HTTP_METHOD_GET) == 0 && strcmp(url, "invocation/next") == 0)
		return next(r, c);
	if (post && strcmp(url, "init/error") == 0)
		return init_error(r, c, q);
	if (post && strncmp(url, "invocation/", 11) == 0) {
		const char *id = url + 11, *slash = strchr(id, '/');
		if (slash && strcmp(slash, "/response") == 0)
			return answer(r, c, id, (size_t)(slash - id), false, q);
		if (slash && strcmp(slash, "/error") == 0)
			return answer(r, c, id, (size_t)(slash - id), true, q);
	}
	return reply_err(c, 404, "NotFound", "not a Runtime API path");
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct req *q = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (q) {
		spate_fn_buf_free(&q->body);
		free(q);
		*con_cls = NULL;
	}
}

int spate_fn_rapi_start(const struct spate_fn_rapi_opts *o, struct spate_fn_rapi **out, char *err,
			size_t errlen)
{
	struct spate_fn_rapi *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;
	struct sockaddr_in sa;

	if (!r)
		return -ENOMEM;
	r->slot = o->slot;
	r->sup = o->sup;
	snprintf(r->consumer, sizeof(r->consumer), "%s", o->consumer);
	snprintf(r->arn, sizeof(r->arn), "%s", o->function_arn);
	r->rnd = (uint32_t)(mono_ns() ^ (uintptr_t)r);
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	r->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
					MHD_USE_TURBO,
				0, NULL, NULL, handler, r, MHD_OPTION_SOCK_ADDR, &sa,
				MHD_OPTION_NOTIFY_COMPLETED, completed, r,
				MHD_OPTION_CONNECTION_TIMEOUT, 0u, MHD_OPTION_END);
	if (!r->d) {
		snprintf(err, errlen, "consumer %s: the Runtime API server of process %u did not start "
			 "on 127.0.0.1", o->consumer, o->slot);
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return -EADDRNOTAVAIL;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(r->d, MHD_DAEMON_INFO_BIND_PORT);
	r->port = di ? di->port : 0;
	*out = r;
	return 0;
}

void spate_fn_rapi_bind(struct spate_fn_rapi *r, struct spate_sup *sup)
{
	pthread_mutex_lock(&r->lock);
	r->sup = sup;
	pthread_mutex_unlock(&r->lock);
}

uint16_t spate_fn_rapi_port(const struct spate_fn_rapi *r)
{
	return r->port;
}

void spate_fn_rapi_stop(struct spate_fn_rapi *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	MHD_stop_daemon(r->d);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void spate_fn_rapi_init_error(struct spate_fn_rapi *r, char *buf, size_t len)
{
	pthread_mutex_lock(&r->lock);
	snprintf(buf, len, "%s", r->init_error);
	pthread_mutex_unlock(&r->lock);
}

int spate_fn_rapi_invoke(struct spate_fn_rapi *r, int64_t gen, const char *event, size_t len,
			 uint64_t deadline_ns, uint64_t give_up_mono, struct spate_fn_result *res)
{
	struct timespec ts;
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	if (r->stopping) {
		pthread_mutex_unlock(&r->lock);
		return -ESHUTDOWN;
	}
	r->counter++;
	snprintf(r->id, sizeof(r->id), "%08x-%04x-4%03x-8%03x-%012" PRIx64, r->rnd,
		 (unsigned)(r->slot & 0xffff), (unsigned)(r->counter >> 48) & 0xfff,
		 (unsigned)(r->counter >> 36) & 0xfff, (uint64_t)(r->counter & 0xffffffffffffull));
	snprintf(r->trace, sizeof(r->trace), "Root=1-%08x-%08x%016" PRIx64 ";Sampled=0",
		 (unsigned)(deadline_ns / 1000000000ull), r->rnd, r->counter);
	r->gen = gen;
	r->event = event;
	r->event_len = len;
	r->deadline_ms = deadline_ns / 1000000ull;
	r->res = res;
	res->kind = SPATE_FN_LOST;
	res->error[0] = 0;
	res->body.len = 0;
	res->sent_ns = res->done_ns = 0;
	r->st = INV_PENDING;
	pthread_cond_broadcast(&r->cond);
	while (r->st != INV_DONE && !r->stopping) {
		/* A signal comes with every answer; the 10 ms slices are for
		 * a process that dies instead (no HTTP call tells that). */
		uint64_t now = mono_ns(), wake = now + 10000000ull;
		if (now >= give_up_mono)
			break;
		abs_mono(&ts, wake < give_up_mono ? wake : give_up_mono);
		if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == 0 || r->st == INV_DONE)
			continue;
		pthread_mutex_unlock(&r->lock);
		char why[200];
		int ended = r->sup ? spate_sup_exit_reason(r->sup, r->slot, gen, 0, why, sizeof(why))
				   : 0;
		pthread_mutex_lock(&r->lock);
		if (ended == 1 && r->st != INV_DONE) {
			res->kind = SPATE_FN_DIED;
			snprintf(res->error, sizeof(res->error), "%s", why);
			break;
		}
	}
	if (r->stopping && r->st != INV_DONE)
		rc = -ESHUTDOWN;
	r->st = INV_NONE;
	r->event = NULL;
	r->res = NULL;
	pthread_mutex_unlock(&r->lock);
	return rc;
}
