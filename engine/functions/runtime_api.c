/* SPDX-License-Identifier: MIT */
/*
 * runtime_api.c - the Lambda Runtime API, served by the engine to one
 * function process on 127.0.0.1:<its own port> (AWS_LAMBDA_RUNTIME_API).
 *
 * Design. One libmicrohttpd daemon per process slot, driven by the
 * engine's worker that invokes the slot (external event loop, epoll): a
 * runtime keeps one connection open and loops GET
 * /2018-06-01/runtime/invocation/next (long poll) -> POST
 * .../invocation/<id>/response (or /error). The worker that invokes holds
 * the slot (one invocation per process) and runs the daemon itself
 * (MHD_run_wait) until the answer arrives: the event goes out and the
 * answer comes in on that thread, woken by the kernel when the bytes
 * arrive, with no hand-over to another thread and back (on this 2-core
 * machine those wake-ups were most of the engine's part of an
 * invocation). A GET /next that finds no invocation is suspended (parked)
 * and resumed when the next one is posted; between invocations nobody
 * reads the slot's sockets, and a runtime's next GET waits in the socket
 * buffer. While a worker waits for the slot's process to be ready (a cold
 * start, a restart) it drives the daemon too (spate_fn_rapi_pump), so the
 * first GET /next is seen: that is the end of the process's init, timed by
 * the supervisor (spate_sup_ready), as Lambda counts Init Duration up to
 * the runtime's first /next. An invocation belongs to one generation of the
 * slot's process (the supervisor's spawn number): a new process never
 * takes the event of the one that died, and an answer naming another
 * request id is refused (400). POST /runtime/init/error logs the error and
 * has the supervisor restart the process after its back-off.
 *
 * The event is sent from the worker's buffer without a copy; the worker
 * drives the daemon until the answer or the process's death, and a
 * response still queued when it stops is for a dead process's socket.
 *
 * Limits. Answers above 6 MiB (Lambda's synchronous payload limit) are
 * refused with 413 and fail the invocation. Only one invocation per slot
 * at a time (Lambda runs one per execution environment), and only the
 * thread holding the slot may call spate_fn_rapi_invoke/pump. At most
 * RAPI_PARKED parked /next calls per slot (a runtime makes one). No
 * Runtime API extensions or telemetry API.
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
#define RAPI_PARKED 8

enum inv_state { INV_NONE = 0, INV_PENDING, INV_SENT, INV_DONE };

struct req;

struct spate_fn_rapi {
	struct MHD_Daemon *d;
	uint16_t port;
	uint32_t slot;
	struct spate_sup *sup;
	char consumer[64];
	char arn[256];
	pthread_mutex_t lock; /* sup and init_error: read by other threads */
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
	/* GET /next calls waiting for an invocation (suspended). */
	struct MHD_Connection *parked[RAPI_PARKED];
	struct req *parked_q[RAPI_PARKED];
	unsigned n_parked;
};

/* A request's state between libmicrohttpd's calls. */
struct req {
	struct spate_fn_buf body;
	bool too_big;
	bool next;    /* a GET /next seen once (its generation known) */
	bool parked;
	bool drop;    /* resumed to be closed (stale, or too many parked) */
	int64_t gen;  /* the process generation that called /next */
	uint64_t seen_ns; /* monotonic: its GET /next was read */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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

/* GET .../invocation/next: the first of a generation ends its init; it is
 * answered with this generation's invocation, or parked until there is one. */
static enum MHD_Result next(struct spate_fn_rapi *r, struct MHD_Connection *c, struct req *q)
{
	char deadline[24];

	if (q->drop || r->stopping)
		return MHD_NO; /* close it */
	if (!q->next) {
		q->next = true;
		q->seen_ns = mono_ns();
		q->gen = r->sup ? spate_sup_gen(r->sup, r->slot, 0) : -EINVAL;
		if (q->gen < 0)
			return reply_err(c, 500, "Runtime.NoProcess", "no live process in this slot");
		if (r->ready_gen != q->gen) {
			r->ready_gen = q->gen;
			pthread_mutex_lock(&r->lock);
			r->init_error[0] = 0;
			pthread_mutex_unlock(&r->lock);
			spate_sup_ready(r->sup, r->slot, q->gen); /* the cold start ends here */
		}
	}
	if (r->stopping)
		return MHD_NO;
	if (r->st != INV_PENDING || r->gen != q->gen) {
		if (r->st == INV_PENDING) /* another generation's: a dead process's call */
			return MHD_NO;
		if (r->n_parked == RAPI_PARKED) { /* drop the oldest */
			r->parked_q[0]->drop = true;
			r->parked_q[0]->parked = false;
			MHD_resume_connection(r->parked[0]);
			memmove(r->parked, r->parked + 1, (RAPI_PARKED - 1) * sizeof(r->parked[0]));
			memmove(r->parked_q, r->parked_q + 1, (RAPI_PARKED - 1) * sizeof(r->parked_q[0]));
			r->n_parked--;
		}
		r->parked[r->n_parked] = c;
		r->parked_q[r->n_parked++] = q;
		q->parked = true;
		MHD_suspend_connection(c);
		return MHD_YES;
	}
	r->st = INV_SENT;
	r->res->get_ns = q->seen_ns;
	r->res->sent_ns = mono_ns();
	snprintf(deadline, sizeof(deadline), "%" PRIu64, r->deadline_ms);
	/* Persistent: the worker keeps the event until the answer or the
	 * process's death (see the file comment). */
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		r->event_len, (void *)r->event, MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "application/json");
	MHD_add_response_header(resp, "Lambda-Runtime-Aws-Request-Id", r->id);
	MHD_add_response_header(resp, "Lambda-Runtime-Deadline-Ms", deadline);
	MHD_add_response_header(resp, "Lambda-Runtime-Invoked-Function-Arn", r->arn);
	MHD_add_response_header(resp, "Lambda-Runtime-Trace-Id", r->trace);
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
	if (r->st != INV_SENT || id_len != RAPI_ID_LEN || memcmp(id, r->id, RAPI_ID_LEN) != 0)
		return reply_err(c, 400, "InvalidRequestID", "no invocation in flight has this id");
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
	}
	r->st = INV_DONE;
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
	if (r->stopping)
		return MHD_NO; /* the supervisor is gone: close */
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
		return next(r, c, q);
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

	struct spate_fn_rapi *r = cls;

	(void)toe;
	for (unsigned i = 0; q && q->parked && i < r->n_parked; i++)
		if (r->parked[i] == c) {
			memmove(r->parked + i, r->parked + i + 1,
				(r->n_parked - i - 1) * sizeof(r->parked[0]));
			memmove(r->parked_q + i, r->parked_q + i + 1,
				(r->n_parked - i - 1) * sizeof(r->parked_q[0]));
			r->n_parked--;
			break;
		}
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
	struct sockaddr_in sa;

	if (!r)
		return -ENOMEM;
	r->slot = o->slot;
	r->sup = o->sup;
	snprintf(r->consumer, sizeof(r->consumer), "%s", o->consumer);
	snprintf(r->arn, sizeof(r->arn), "%s", o->function_arn);
	r->rnd = (uint32_t)(mono_ns() ^ (uintptr_t)r);
	pthread_mutex_init(&r->lock, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	/* No thread of its own: the invoking worker runs it (MHD_run_wait). */
	r->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO,
				0, NULL, NULL, handler, r, MHD_OPTION_SOCK_ADDR, &sa,
				MHD_OPTION_NOTIFY_COMPLETED, completed, r,
				MHD_OPTION_CONNECTION_TIMEOUT, 0u, MHD_OPTION_END);
	if (!r->d) {
		snprintf(err, errlen, "consumer %s: the Runtime API server of process %u did not start "
			 "on 127.0.0.1", o->consumer, o->slot);
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
	/* No worker drives it any more (the engine stopped): parked calls
	 * are resumed to be closed. */
	r->stopping = true;
	for (unsigned i = 0; i < r->n_parked; i++) {
		r->parked_q[i]->drop = true;
		MHD_resume_connection(r->parked[i]);
	}
	r->n_parked = 0;
	r->sup = NULL; /* destroyed already */
	MHD_stop_daemon(r->d);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void spate_fn_rapi_init_error(struct spate_fn_rapi *r, char *buf, size_t len)
{
	pthread_mutex_lock(&r->lock);
	snprintf(buf, len, "%s", r->init_error);
	pthread_mutex_unlock(&r->lock);
}

int spate_fn_rapi_pump(struct spate_fn_rapi *r, unsigned ms)
{
	return MHD_run_wait(r->d, (int32_t)ms) == MHD_YES ? 0 : -EIO;
}

int spate_fn_rapi_invoke(struct spate_fn_rapi *r, int64_t gen, const char *event, size_t len,
			 uint64_t deadline_ns, uint64_t give_up_mono, struct spate_fn_result *res)
{
	uint64_t checked = mono_ns();

	if (r->stopping)
		return -ESHUTDOWN;
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
	res->get_ns = res->sent_ns = res->done_ns = 0;
	res->start_ns = mono_ns();
	r->st = INV_PENDING;
	/* The parked /next calls (this generation's, or stale ones, which
	 * close) run again at the next MHD_run. */
	for (unsigned i = 0; i < r->n_parked; i++) {
		r->parked_q[i]->parked = false;
		MHD_resume_connection(r->parked[i]);
	}
	r->n_parked = 0;
	while (r->st != INV_DONE) {
		uint64_t now = mono_ns();
		if (now >= give_up_mono)
			break;
		uint64_t left = (give_up_mono - now) / 1000000ull + 1;
		MHD_run_wait(r->d, (int32_t)(left < 10 ? left : 10));
		if (r->st == INV_DONE)
			break;
		/* A process that dies sends nothing: ask the supervisor, every
		 * 10 ms at most (a few calls per invocation otherwise). */
		now = mono_ns();
		if (now - checked < 10000000ull)
			continue;
		checked = now;
		char why[200];
		if (r->sup && spate_sup_exit_reason(r->sup, r->slot, gen, 0, why, sizeof(why)) == 1) {
			res->kind = SPATE_FN_DIED;
			snprintf(res->error, sizeof(res->error), "%s", why);
			break;
		}
	}
	if (r->st == INV_DONE)
		MHD_run(r->d); /* the 202 to the answer, if still queued */
	r->st = INV_NONE;
	r->event = NULL;
	r->res = NULL;
	return 0;
}
