/* SPDX-License-Identifier: MIT */
/*
 * functions.c - the functions door's provider (spate/provider.h): a
 * consumer with `function:` gets a plugin descriptor whose process() hands
 * each batch, as Lambda's Kinesis event, to one of the consumer's function
 * processes through the Lambda Runtime API, and turns the answer back into
 * a batch result. The consumer runtime applies every Lambda rule to it
 * (retries, bisection, partial batch failure, max age, on_failure) as to
 * any plugin.
 *
 * Design. open() starts, per consumer: `concurrency` Runtime API servers
 * (runtime_api.c, one loopback port each) and one supervisor
 * (supervisor.c) running `concurrency` copies of the function's command,
 * each told its own port in AWS_LAMBDA_RUNTIME_API and the environment a
 * Lambda handler expects. init() gives task (shard s, lane l) the process
 * slot (s * lanes + l) mod concurrency, for good: a task's batches go to
 * one process in order, so per-key order holds; tasks sharing a slot take
 * turns (a per-slot mutex: one invocation per process, as on Lambda).
 * process(): build the event (event.c), wait for the slot's process to be
 * ready (a cold start included), begin the invocation with its deadline
 * (the supervisor kills the process there), hand the event over and wait
 * for the answer or the death. Outcomes:
 *   response                 OK, or PARTIAL at the lowest batchItemFailures
 *                            record, or RETRY for a malformed answer;
 *   error (POST .../error)   RETRY, the error type and message as reason;
 *   timeout, crash, OOM      RETRY, how the process ended as reason (the
 *                            supervisor restarts it after its back-off);
 *   not ready in time        RETRY (init errors, crash loops);
 * and the consumer's rules do the rest, exactly as for a failing .so. The
 * engine's watchdog stays as a backstop past the function's own deadline.
 *
 * Limits. One invocation per process at a time; concurrency is fixed at
 * open. Records arrive base64 in JSON: the event is about 4/3 of the
 * payload plus ~450 bytes per record.
 */
#include "spate_config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/functions/event.h"
#include "engine/functions/functions.h"
#include "engine/functions/runtime_api.h"
#include "engine/functions/supervisor.h"
#include "spate/config.h"
#include "spate/hist.h"
#include "spate/plugin.h"
#include "spate/slog.h"
#include "spate/stream.h"

extern char **environ;

#define FN_ENV_MAX 128u
/* glibc malloc for the bundled runtime loops (build_env). */
#define SPATE_FN_MALLOC_TUNABLES \
	"glibc.malloc.trim_threshold=33554432:glibc.malloc.mmap_threshold=4194304"
#define FN_GRACE_NS (2ull * 1000000000ull)   /* past the deadline: wait for the kill */
#define FN_INIT_TIMEOUT_NS (10ull * 1000000000ull) /* Lambda's init phase limit */
#define FN_BACKOFF_MIN_NS (50ull * 1000000ull)     /* first restart after a crash */
#define FN_BACKOFF_MAX_NS (5ull * 1000000000ull)   /* crash loops: at most this apart */

struct fn_slot {
	pthread_mutex_t lock; /* one invocation at a time */
	struct spate_fn_rapi *rapi;
};

struct fn_inst {
	char consumer[SPATE_CONFIG_NAME_MAX + 1];
	char stream[SPATE_CONFIG_NAME_MAX + 1];
	char bus[SPATE_CONFIG_NAME_MAX + 1];
	char region[64];
	uint64_t incarnation;
	uint64_t timeout_ns;
	uint32_t lanes, procs;
	struct spate_sup *sup;
	struct fn_slot *slots;
	char **argv; /* NULL-terminated, owned */
	char **env;  /* NULL-terminated, owned */
};

/* One task's state: its slot, its identity in events, its buffers. */
struct fn_state {
	struct fn_inst *in;
	uint32_t slot;
	struct spate_fn_ident id;
	struct spate_fn_buf ev;
	struct spate_fn_result res;
	uint64_t wait_ns; /* the last invocation's wait for a ready process */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void free_vec(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* ------------------------------------------------------------------------ */
/* The descriptor the consumer runtime calls                               */
/* ------------------------------------------------------------------------ */

static int fn_init(const struct spate_plugin_ctx *ctx, void **state)
{
	struct fn_inst *in = SPATE_PLUGIN_HAS(ctx, provided) ? ctx->provided : NULL;
	struct fn_state *st;
	int rc;

	if (!in)
		return -EINVAL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->in = in;
	st->slot = (ctx->shard * in->lanes + ctx->lane) % in->procs;
	rc = spate_fn_ident_init(&st->id, in->stream, in->incarnation, ctx->shard, in->region,
				 SPATE_FN_ACCOUNT, in->consumer);
	if (rc < 0) {
		free(st);
		return rc;
	}
	/* Counters into the region's sup slot (the region is made after the
	 * open; idempotent), and the slot's process started now, at the
	 * engine's start, not at the first batch. */
	spate_sup_bind_stats(in->sup, in->bus);
	spate_sup_gen(in->sup, st->slot, 0);
	*state = st;
	return 0;
}

static void fn_fini(void *state)
{
	struct fn_state *st = state;

	if (!st)
		return;
	spate_fn_buf_free(&st->ev);
	spate_fn_buf_free(&st->res.body);
	free(st);
}

__attribute__((format(printf, 2, 3))) static int fail(struct spate_batch_result *res,
						       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
	res->status = SPATE_BATCH_RETRY;
	return 0;
}

/*
 * Wait for the slot's process to be ready: a cold start (spawn, the
 * runtime's init, up to its first /next) or a restart after a crash and its
 * back-off. As on Lambda, a failed init fails the invocation at once, with
 * the init error: a process of the consumer that ends before it is ready
 * (the supervisor's init_fails moves; an init error posted, a crash in
 * init, a hang past the init timeout) ends the wait. Otherwise it lasts at
 * most the init timeout plus the longest back-off.
 * @return the generation, or -1 with @p res filled.
 */
static int64_t acquire(struct fn_inst *in, uint32_t slot, struct spate_batch_result *res)
{
	struct spate_stats_sup *c = spate_sup_counters(in->sup);
	/* Relaxed: a counter read to notice a change; no data depends on it. */
	uint64_t fails0 = atomic_load_explicit(&c->init_fails, memory_order_relaxed);
	uint64_t t0 = mono_ns(), limit = FN_INIT_TIMEOUT_NS + FN_BACKOFF_MAX_NS;
	char why[200];

	for (;;) {
		int64_t gen = spate_sup_acquire(in->sup, slot, 0);
		if (gen >= 0)
			return gen;
		if (gen == -ETIMEDOUT) {
			/* Not ready: its first /next comes through this slot's
			 * server, which this thread runs. */
			spate_fn_rapi_pump(in->slots[slot].rapi, 20);
			gen = spate_sup_acquire(in->sup, slot, 0);
			if (gen >= 0)
				return gen;
		}
		if (gen != -ETIMEDOUT) {
			fail(res, "function process %u: %s", slot, strerror((int)-gen));
			return -1;
		}
		bool failed = atomic_load_explicit(&c->init_fails, memory_order_relaxed) != fails0;
		if (failed || mono_ns() - t0 > limit) {
			spate_fn_rapi_init_error(in->slots[slot].rapi, why, sizeof(why));
			fail(res, "function init failed%s%s", why[0] ? ": " : "",
			     why[0] ? why
			     : failed ? " (its process ended before its first /next; see the log)"
				      : " (not ready in time)");
			return -1;
		}
	}
}

/* One invocation on the task's slot (its lock held). */
static int invoke(struct fn_state *st, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct fn_inst *in = st->in;
	struct fn_slot *sl = &in->slots[st->slot];
	int64_t gen;
	int rc;

	uint64_t w0 = mono_ns();
	gen = acquire(in, st->slot, res);
	st->wait_ns = mono_ns() - w0;
	if (gen < 0)
		return 0; /* res says why */
	uint64_t now = mono_ns(), deadline = now + in->timeout_ns;
	rc = spate_sup_begin(in->sup, st->slot, gen, deadline);
	if (rc < 0)
		return fail(res, "function process %u ended before the invocation", st->slot);
	rc = spate_fn_rapi_invoke(sl->rapi, gen, st->ev.p, st->ev.len,
				  real_ns() + in->timeout_ns, deadline + FN_GRACE_NS, &st->res);
	if (rc < 0) {
		spate_sup_end(in->sup, st->slot, gen, false);
		return fail(res, "function stopping");
	}
	switch (st->res.kind) {
	case SPATE_FN_RESPONSE: {
		uint32_t at = 0;
		rc = spate_fn_response_parse(st->res.body.p, st->res.body.len, b->recs, b->count,
					     &st->id, &at, res->error, sizeof(res->error));
		spate_sup_end(in->sup, st->slot, gen, rc >= 0);
		if (rc == 0) {
			res->status = SPATE_BATCH_OK;
		} else if (rc == 1) {
			res->status = SPATE_BATCH_PARTIAL;
			res->failed_index = at;
		} else {
			res->status = SPATE_BATCH_RETRY;
		}
		return 0;
	}
	case SPATE_FN_ERROR:
		spate_sup_end(in->sup, st->slot, gen, false);
		return fail(res, "%s", st->res.error);
	case SPATE_FN_DIED:
		/* The supervisor counted the timeout or the crash. */
		if (strstr(st->res.error, "deadline"))
			return fail(res, "Task timed out after %.2f seconds (%s)",
				    (double)in->timeout_ns / 1e9, st->res.error);
		return fail(res, "function process %s", st->res.error);
	case SPATE_FN_LOST:
	default:
		spate_sup_fail(in->sup, st->slot, gen, "no answer past the invocation's deadline");
		return fail(res, "Task timed out after %.2f seconds (no answer)",
			    (double)in->timeout_ns / 1e9);
	}
}

/* The engine's side of invocations, ns (spate_fn_overhead_take). */
static struct spate_hist *fn_overhead;
static pthread_once_t fn_overhead_once = PTHREAD_ONCE_INIT;

static void overhead_init(void)
{
	fn_overhead = malloc(sizeof(*fn_overhead));
	if (fn_overhead)
		spate_hist_init(fn_overhead);
}

int spate_fn_overhead_take(struct spate_hist *out)
{
	pthread_once(&fn_overhead_once, overhead_init);
	if (!fn_overhead)
		return -ENOMEM;
	int rc = spate_hist_merge(out, fn_overhead);
	spate_hist_reset(fn_overhead);
	return rc;
}

static int fn_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct fn_state *st = state;
	struct fn_slot *sl = &st->in->slots[st->slot];
	uint64_t t0 = mono_ns();
	int rc;

	rc = spate_fn_event_build(&st->ev, b->recs, b->count, &st->id);
	if (rc < 0)
		return fail(res, "building the event: %s", strerror(-rc));
	uint64_t t1 = mono_ns();
	pthread_mutex_lock(&sl->lock);
	st->wait_ns = 0;
	st->res.sent_ns = st->res.done_ns = 0;
	rc = invoke(st, b, res);
	pthread_mutex_unlock(&sl->lock);
	/* The engine's part of the invocation: building the event, from the
	 * runtime's GET /next (or the posting, if the GET waited) to the
	 * event handed over, and from the answer's arrival to here. Not the
	 * wait for a ready process, not the runtime's time between its answer
	 * and its next GET, not the function's. Multi-writer: every worker
	 * records here. */
	const struct spate_fn_result *x = &st->res;
	if (fn_overhead && x->done_ns > x->sent_ns && x->sent_ns) {
		uint64_t from = x->get_ns > x->start_ns ? x->get_ns : x->start_ns;
		uint64_t eng = (t1 - t0) + (x->sent_ns > from ? x->sent_ns - from : 0) +
			       (mono_ns() - x->done_ns);
		spate_hist_record_mw(fn_overhead, eng);
	}
	return rc;
}

static const struct spate_plugin fn_desc = {
	.abi_version = SPATE_PLUGIN_ABI_VERSION,
	.struct_size = sizeof(struct spate_plugin),
	.name = "function",
	.version = SPATE_VERSION_STRING,
	.init = fn_init,
	.process = fn_process,
	.fini = fn_fini,
};

/* ------------------------------------------------------------------------ */
/* The provider                                                             */
/* ------------------------------------------------------------------------ */

static bool fn_serves(const struct spate_config_consumer *k)
{
	return k->function != NULL;
}

/* The value of @p name in the function's env, or NULL. */
static const char *fn_env(const struct spate_config_function *fn, const char *name)
{
	for (uint32_t i = 0; i < fn->n_env; i++)
		if (strcmp(fn->env[i].key, name) == 0)
			return fn->env[i].value;
	return NULL;
}

/* argv: command as written, or runtime client + handler; a bare node or
 * python is the runtime loop bundled with spate. */
static int build_argv(const struct spate_config_function *fn, char ***out, char *err, size_t errlen)
{
	char **v = calloc(SPATE_CONFIG_ARGV_MAX + 4, sizeof(*v));
	size_t n = 0;

	if (!v)
		return -ENOMEM;
	if (fn->n_command) {
		for (uint32_t i = 0; i < fn->n_command; i++)
			if (!(v[n++] = strdup(fn->command[i])))
				goto nomem;
		*out = v;
		return 0;
	}
	const char *dir = getenv(SPATE_FN_RUNTIME_DIR_ENV);
	if (!dir || !*dir) /* installed, else (a build tree's spate) the sources' */
		dir = access(SPATE_FN_RUNTIME_DIR, R_OK) == 0 ? SPATE_FN_RUNTIME_DIR
							      : SPATE_FN_RUNTIME_SRC_DIR;
	if (fn->n_runtime_client == 1 && (strcmp(fn->runtime_client[0], "node") == 0 ||
					  strcmp(fn->runtime_client[0], "python") == 0)) {
		bool node = fn->runtime_client[0][0] == 'n';
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, node ? "node/bootstrap.mjs"
								 : "python/bootstrap.py");
		if (access(path, R_OK) < 0) {
			snprintf(err, errlen, "runtime_client %s: %s is missing (set %s)",
				 fn->runtime_client[0], path, SPATE_FN_RUNTIME_DIR_ENV);
			free_vec(v);
			return -ENOENT;
		}
		if (!(v[n++] = strdup(node ? "node" : "python3")) || !(v[n++] = strdup(path)))
			goto nomem;
	} else {
		for (uint32_t i = 0; i < fn->n_runtime_client; i++)
			if (!(v[n++] = strdup(fn->runtime_client[i])))
				goto nomem;
	}
	if (!(v[n++] = strdup(fn->handler)))
		goto nomem;
	*out = v;
	return 0;
nomem:
	free_vec(v);
	return -ENOMEM;
}

/* The engine's environment, Lambda's variables, then the function's env
 * (which may override them). */
static int build_env(const struct spate_provider_ctx *ctx, const struct fn_inst *in,
		     const char *cwd, uint64_t mem, char ***out)
{
	const struct spate_config_function *fn = ctx->k->function;
	size_t ne = 0;
	while (environ[ne])
		ne++;
	char **v = calloc(ne + FN_ENV_MAX + fn->n_env + 1, sizeof(*v));
	size_t n = 0;
	char mib[32];

	if (!v)
		return -ENOMEM;
	snprintf(mib, sizeof(mib), "%" PRIu64,
		 mem ? mem >> 20 : (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) >> 20);
	const char *lam[][2] = {
		{ "AWS_LAMBDA_FUNCTION_NAME", in->consumer },
		{ "AWS_LAMBDA_FUNCTION_VERSION", "$LATEST" },
		{ "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", mib },
		{ "AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand" },
		{ "AWS_REGION", in->region },
		{ "AWS_DEFAULT_REGION", in->region },
		{ "AWS_EXECUTION_ENV", "spate" },
		{ "LAMBDA_TASK_ROOT", cwd },
		{ "_HANDLER", fn->handler },
		{ "TZ", ":UTC" },
	};
	const size_t nl = sizeof(lam) / sizeof(lam[0]);
	for (size_t i = 0; i < ne; i++) {
		const char *e = environ[i];
		bool skip = strncmp(e, "AWS_LAMBDA_RUNTIME_API=", 23) == 0 ||
			    strncmp(e, "AWS_LAMBDA_LOG_", 15) == 0;
		for (size_t j = 0; j < nl && !skip; j++) {
			size_t kl = strlen(lam[j][0]);
			skip = strncmp(e, lam[j][0], kl) == 0 && e[kl] == '=';
		}
		for (uint32_t j = 0; j < fn->n_env && !skip; j++) {
			size_t kl = strlen(fn->env[j].key);
			skip = strncmp(e, fn->env[j].key, kl) == 0 && e[kl] == '=';
		}
		if (!skip && !(v[n++] = strdup(e)))
			goto nomem;
	}
	char lg[128];
	snprintf(lg, sizeof(lg), "/aws/lambda/%s", in->consumer);
	for (size_t j = 0; j < nl; j++) {
		if (!lam[j][1][0] || fn_env(fn, lam[j][0]))
			continue;
		if (asprintf(&v[n++], "%s=%s", lam[j][0], lam[j][1]) < 0) {
			v[--n] = NULL;
			goto nomem;
		}
	}
	if (asprintf(&v[n++], "AWS_LAMBDA_LOG_GROUP_NAME=%s", lg) < 0) {
		v[--n] = NULL;
		goto nomem;
	}
	/* spate's own runtime loops: glibc keeps freed heap up to 32 MiB and
	 * serves blocks under 4 MiB from it, instead of giving pages back and
	 * faulting them in again at every event (the socket reads and HTTP
	 * body copies of a 590 KB event: ~0.25 ms of page faults per event in
	 * Node on this class of machine). Not when the engine's environment
	 * or env: sets GLIBC_TUNABLES. */
	bool bundled = fn->n_runtime_client == 1 && (strcmp(fn->runtime_client[0], "node") == 0 ||
						     strcmp(fn->runtime_client[0], "python") == 0);
	if (bundled && !getenv("GLIBC_TUNABLES") && !fn_env(fn, "GLIBC_TUNABLES") &&
	    !(v[n++] = strdup("GLIBC_TUNABLES=" SPATE_FN_MALLOC_TUNABLES)))
		goto nomem;
	for (uint32_t j = 0; j < fn->n_env; j++)
		if (asprintf(&v[n++], "%s=%s", fn->env[j].key, fn->env[j].value) < 0) {
			v[--n] = NULL;
			goto nomem;
		}
	*out = v;
	return 0;
nomem:
	free_vec(v);
	return -ENOMEM;
}

/* Per slot: its Runtime API's address and its log stream. */
static int slot_env(void *arg, uint32_t slot, char **out, unsigned max, char *buf, size_t len)
{
	struct fn_inst *in = arg;
	time_t t = time(NULL);
	struct tm tm;
	int a, b;

	if (max < 3)
		return -ENOSPC;
	gmtime_r(&t, &tm);
	a = snprintf(buf, len, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%u",
		     spate_fn_rapi_port(in->slots[slot].rapi));
	if (a < 0 || (size_t)a + 1 >= len)
		return -ENOSPC;
	b = snprintf(buf + a + 1, len - (size_t)a - 1,
		     "AWS_LAMBDA_LOG_STREAM_NAME=%04d/%02d/%02d/[$LATEST]spate%04u",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, slot);
	if (b < 0 || (size_t)a + 1 + (size_t)b + 1 > len)
		return -ENOSPC;
	out[0] = buf;
	out[1] = buf + a + 1;
	out[2] = NULL;
	return 2;
}

static void fn_close(void *arg, void *inst)
{
	struct fn_inst *in = inst;

	(void)arg;
	if (!in)
		return;
	/* The processes first (their connections close), then the servers. */
	spate_sup_destroy(in->sup, 1000000000ull);
	for (uint32_t i = 0; in->slots && i < in->procs; i++) {
		spate_fn_rapi_stop(in->slots[i].rapi);
		pthread_mutex_destroy(&in->slots[i].lock);
	}
	free(in->slots);
	free_vec(in->argv);
	free_vec(in->env);
	free(in);
}

static int fn_open(void *arg, const struct spate_provider_ctx *ctx, struct spate_provided *out,
		   char *err, size_t errlen)
{
	pthread_once(&fn_overhead_once, overhead_init);
	const struct spate_config_consumer *k = ctx->k;
	const struct spate_config_function *fn = k->function;
	char cwd[SPATE_CONFIG_PATH_MAX];
	struct fn_inst *in;
	int rc;

	(void)arg;
	in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	snprintf(in->consumer, sizeof(in->consumer), "%s", k->name);
	snprintf(in->stream, sizeof(in->stream), "%s", k->stream);
	snprintf(in->bus, sizeof(in->bus), "%s", ctx->cfg->bus);
	/* The region: the function's AWS_REGION, else the Kinesis front's
	 * (api.region), else us-east-1, as the front's ARNs say. */
	const char *region = fn_env(fn, "AWS_REGION");
	if ((!region || !*region) && ctx->cfg->api.enabled && ctx->cfg->api.region[0])
		region = ctx->cfg->api.region;
	snprintf(in->region, sizeof(in->region), "%s", region && *region ? region : "us-east-1");
	in->incarnation = spate_stream_incarnation(ctx->stream);
	in->timeout_ns = spate_config_function_timeout(k);
	in->lanes = k->parallelization ? k->parallelization : 1;
	in->procs = fn->concurrency ? fn->concurrency : (ctx->tasks ? ctx->tasks : 1);
	uint64_t mem = fn->memory_limit ? fn->memory_limit : k->memory_limit;

	/* The directory: cwd, else the configuration file's. */
	if (fn->cwd[0]) {
		snprintf(cwd, sizeof(cwd), "%s", fn->cwd);
	} else {
		const char *slash = strrchr(ctx->cfg->source, '/');
		if (slash)
			snprintf(cwd, sizeof(cwd), "%.*s", (int)(slash - ctx->cfg->source),
				 ctx->cfg->source);
		else if (!getcwd(cwd, sizeof(cwd)))
			snprintf(cwd, sizeof(cwd), ".");
	}
	/* Absolute: LAMBDA_TASK_ROOT is read from inside that directory. */
	char real[PATH_MAX];
	if (!realpath(cwd, real)) {
		rc = -errno;
		snprintf(err, errlen, "function.cwd %s: %s", cwd, strerror(-rc));
		goto err;
	}
	snprintf(cwd, sizeof(cwd), "%s", real);
	rc = build_argv(fn, &in->argv, err, errlen);
	if (rc < 0)
		goto err;
	rc = build_env(ctx, in, cwd, mem, &in->env);
	if (rc < 0)
		goto err;
	in->slots = calloc(in->procs, sizeof(*in->slots));
	if (!in->slots) {
		rc = -ENOMEM;
		goto err;
	}
	char arn[256];
	snprintf(arn, sizeof(arn), "arn:aws:lambda:%s:%s:function:%s", in->region, SPATE_FN_ACCOUNT,
		 in->consumer);
	for (uint32_t i = 0; i < in->procs; i++) {
		struct spate_fn_rapi_opts ro = { .slot = i, .consumer = in->consumer,
						 .function_arn = arn };
		pthread_mutex_init(&in->slots[i].lock, NULL);
		rc = spate_fn_rapi_start(&ro, &in->slots[i].rapi, err, errlen);
		if (rc < 0) {
			pthread_mutex_destroy(&in->slots[i].lock);
			in->procs = i; /* fn_close frees those started */
			goto err;
		}
	}
	struct spate_sup_opts so = {
		.struct_size = sizeof(so),
		.consumer = in->consumer,
		.stream = in->stream,
		.argv = (const char *const *)in->argv,
		.env = (const char *const *)in->env,
		.cwd = cwd,
		.procs = in->procs,
		.memory_limit = mem,
		.init_timeout_ns = FN_INIT_TIMEOUT_NS,
		.backoff_min_ns = FN_BACKOFF_MIN_NS,
		.backoff_max_ns = FN_BACKOFF_MAX_NS,
		.slot_env = slot_env,
		.arg = in,
		.lazy = true, /* fn_init starts them: at the engine's start */
	};
	rc = spate_sup_create(&so, &in->sup, err, errlen);
	if (rc < 0)
		goto err;
	for (uint32_t i = 0; i < in->procs; i++)
		spate_fn_rapi_bind(in->slots[i].rapi, in->sup);
	out->plugin = &fn_desc;
	out->inst = in;
	out->flags = SPATE_PROVIDED_F_OWN_MEMORY;
	/* Backstop: waiting for readiness, the invocation, the kill. */
	out->watchdog_ns = in->timeout_ns + FN_INIT_TIMEOUT_NS + FN_BACKOFF_MAX_NS + 2 * FN_GRACE_NS;
	size_t o = (size_t)snprintf(out->path, sizeof(out->path), "function");
	for (size_t i = 0; in->argv[i] && o < sizeof(out->path); i++)
		o += (size_t)snprintf(out->path + o, sizeof(out->path) - o, " %s", in->argv[i]);
	spate_slog(SPATE_LOG_INFO, NULL,
		   "consumer %s: function %s: %u process%s in %s, timeout %.3f s, memory %s",
		   in->consumer, in->argv[0], in->procs, in->procs == 1 ? "" : "es", cwd,
		   (double)in->timeout_ns / 1e9,
		   spate_sup_mem_mode(in->sup) == SPATE_SUP_MEM_CGROUP   ? "cgroup v2"
		   : spate_sup_mem_mode(in->sup) == SPATE_SUP_MEM_RLIMIT ? "RLIMIT_AS"
									  : "unlimited");
	return 0;
err:
	fn_close(NULL, in);
	return rc;
}

const struct spate_plugin_provider spate_fn_provider = {
	.struct_size = sizeof(struct spate_plugin_provider),
	.version = SPATE_PROVIDER_VERSION,
	.name = "functions",
	.serves = fn_serves,
	.open = fn_open,
	.close = fn_close,
};
