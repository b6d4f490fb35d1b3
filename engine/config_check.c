/* SPDX-License-Identifier: MIT */
/*
 * config_check.c - the schema tables (one per YAML mapping) and the checks
 * of a whole struct spate_config against them, split out of config.c:
 * spate_config_validate() for configs built in C and spate_cfg_validate()
 * for the YAML parser, one code path for both.
 *
 * Design. Each field is checked against its schema entry (range, syntax),
 * then the relations between fields (stream references, names unique,
 * placement against cores). When the parser supplies the lines of the keys
 * it met, an error points at the key's line; otherwise at the entry's.
 *
 * Limits. The first error stops the check: one precise message rather than
 * a cascade.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spate/config.h"

#include "config_pvt.h"

/* ------------------------------------------------------------------------ */
/* Schema                                                                   */
/* ------------------------------------------------------------------------ */

static const char *const producers_names[] = { "multi", "single", NULL };
static const char *const huge_names[] = { "auto", "require", "off", NULL };
static const char *const full_names[] = { "wait", "fail", NULL };
/* Indexed by enum spate_durability: the name of value i is durability_names[i]. */
static const char *const durability_names[] = { "off", "none", "interval", "always", NULL };
_Static_assert(SPATE_DURABILITY_OFF == 0 && SPATE_DURABILITY_NONE == 1 &&
		       SPATE_DURABILITY_INTERVAL == 2 && SPATE_DURABILITY_ALWAYS == 3 &&
		       SPATE_DURABILITY_COUNT_ == sizeof(durability_names) / sizeof(durability_names[0]) - 1,
	       "durability_names follows enum spate_durability");
static const char *const start_names[] = { "trim_horizon", "latest", "at_sequence",
					   "after_sequence", "at_timestamp", NULL };
static const char *const wait_names[] = { "busy", "yield", "block", NULL };
static const char *const isolation_names[] = { "in-process", "process", NULL };

const struct field spate_cfg_top_fields[TF_N] = {
	[TF_BUS] = { "bus", FT_NAME, F_REQ, offsetof(struct spate_config, bus), 0, 0, NULL, NULL },
	[TF_STATE_DIR] = { "state_dir", FT_DIR, 0, offsetof(struct spate_config, state_dir), 0, 0,
			   NULL, NULL },
	[TF_STREAMS] = { "streams", FT_STREAMS, F_REQ, 0, 0, 0, NULL, NULL },
	[TF_CONSUMERS] = { "consumers", FT_CONSUMERS, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[TF_PLACEMENT] = { "placement", FT_PLACEMENT, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[TF_METRICS] = { "metrics", FT_METRICS, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[TF_SOURCES] = { "sources", FT_SOURCES, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[TF_API] = { "api", FT_API, 0, 0, 0, 0, NULL, NULL },
};

const struct spate_config_stream *spate_config_find_stream(const struct spate_config *c,
							   const char *name)
{
	if (!c || !name || !c->streams)
		return NULL;
	for (uint32_t i = 0; i < c->n_streams; i++)
		if (strncmp(c->streams[i].name, name, sizeof(c->streams[i].name)) == 0 &&
		    strlen(name) < sizeof(c->streams[i].name))
			return &c->streams[i];
	return NULL;
}

const char *spate_config_start_str(enum spate_config_start s)
{
	return (unsigned)s < sizeof(start_names) / sizeof(start_names[0]) - 1 ? start_names[s]
									       : "?";
}

#define SOFF(m) offsetof(struct spate_config_stream, m)
const struct field spate_cfg_stream_fields[SF_N] = {
	[SF_NAME] = { "name", FT_NAME, F_REQ, SOFF(name), 0, 0, NULL, NULL },
	[SF_SHARDS] = { "shards", FT_U32, 0, SOFF(shards), 1, SPATE_CONFIG_MAX_SHARDS, NULL, NULL },
	[SF_RING_SIZE] = { "ring_size", FT_SIZE, F_POW2, SOFF(ring_size), SPATE_RING_MIN_CAPACITY,
			   SPATE_RING_MAX_CAPACITY, NULL, NULL },
	[SF_MAX_RECORD] = { "max_record_size", FT_SIZE, F_AUTO, SOFF(max_record_size), 1,
			    SPATE_RING_MAX_CAPACITY / 2 - SPATE_CONFIG_RECORD_OVERHEAD, NULL,
			    "a size from 1 byte to ring_size/2 - 48 bytes (like 1MiB)" },
	[SF_PRODUCERS] = { "producers", FT_ENUM, 0, SOFF(producers), 0, 0, producers_names, NULL },
	[SF_HUGE] = { "huge_pages", FT_ENUM, 0, SOFF(huge_pages), 0, 0, huge_names, NULL },
	[SF_RETENTION] = { "retention", FT_DUR, 0, SOFF(retention_ns), NS_MS, DUR_MAX, NULL, NULL },
	[SF_FULL] = { "full", FT_ENUM, 0, SOFF(full), 0, 0, full_names, NULL },
	[SF_DURABILITY] = { "durability", FT_ENUM, 0, SOFF(durability), 0, 0, durability_names,
			    NULL },
	[SF_DUR_INTERVAL] = { "durability_interval", FT_DUR, 0, SOFF(durability_interval_ns),
			      100 * 1000, 60 * NS_S, NULL, NULL },
	[SF_SEGMENT] = { "segment_size", FT_SIZE, 0, SOFF(segment_size), MIB, 64 * GIB, NULL,
			 NULL },
	[SF_RETENTION_BYTES] = { "retention_bytes", FT_SIZE, 0, SOFF(retention_bytes), 0,
				 UINT64_MAX, NULL, NULL },
	[SF_LOG_DIR] = { "log_dir", FT_DIR, F_NULL_OK, SOFF(log_dir), 0, 0, NULL, NULL },
	[SF_DIRECT_IO] = { "direct_io", FT_BOOL, 0, SOFF(direct_io), 0, 0, NULL, NULL },
};

#define COFF(m) offsetof(struct spate_config_consumer, m)
const struct field spate_cfg_consumer_fields[CF_N] = {
	[CF_NAME] = { "name", FT_NAME, F_REQ, COFF(name), 0, 0, NULL, NULL },
	[CF_STREAM] = { "stream", FT_REF, F_REQ, COFF(stream), 0, 0, NULL, NULL },
	[CF_PLUGIN] = { "plugin", FT_PLUGIN, F_NULL_OK, COFF(plugin), 0, 0, NULL, NULL },
	[CF_OPTIONS] = { "options", FT_OPTIONS, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[CF_BATCH_SIZE] = { "batch_size", FT_U32, 0, COFF(batch_size), 1,
			    SPATE_CONFIG_MAX_BATCH_SIZE, NULL, NULL },
	[CF_BATCH_BYTES] = { "batch_bytes", FT_SIZE, 0, COFF(batch_bytes), 1, UINT64_MAX, NULL,
			     NULL },
	[CF_BATCH_WINDOW] = { "batch_window", FT_DUR, 0, COFF(batch_window_ns), 0,
			      SPATE_CONFIG_MAX_BATCH_WINDOW_NS, NULL, NULL },
	[CF_START] = { "starting_position", FT_ENUM, 0, COFF(starting_position), 0, 0, start_names,
		       NULL },
	[CF_START_SEQ] = { "starting_sequence", FT_U64, 0, COFF(starting_sequence), 0, UINT64_MAX,
			   NULL, NULL },
	[CF_START_TS] = { "starting_timestamp", FT_TIME, 0, COFF(starting_timestamp_ns), 0, 0, NULL,
			  NULL },
	[CF_RETRIES] = { "max_retry_attempts", FT_RETRIES, 0, COFF(max_retry_attempts), 0,
			 SPATE_CONFIG_MAX_RETRY_ATTEMPTS, NULL, NULL },
	[CF_BACKOFF] = { "retry_backoff", FT_DUR, 0, COFF(retry_backoff_ns), 0, DUR_MAX, NULL,
			 NULL },
	[CF_BACKOFF_MAX] = { "retry_backoff_max", FT_DUR, 0, COFF(retry_backoff_max_ns), 0,
			     DUR_MAX, NULL, NULL },
	[CF_BISECT] = { "bisect_on_error", FT_BOOL, 0, COFF(bisect_on_error), 0, 0, NULL, NULL },
	[CF_MAX_AGE] = { "max_record_age", FT_DUR, F_NEVER, COFF(max_record_age_ns), NS_MS,
			 DUR_MAX, NULL, NULL },
	[CF_ON_FAILURE] = { "on_failure", FT_REF, F_NULL_OK, COFF(on_failure), 0, 0, NULL, NULL },
	[CF_PARALLEL] = { "parallelization", FT_U32, 0, COFF(parallelization), 1,
			  SPATE_CONFIG_MAX_PARALLELIZATION, NULL, NULL },
	[CF_CONCURRENCY] = { "concurrency", FT_U32, F_AUTO, COFF(concurrency), 1,
			     SPATE_CONFIG_MAX_CONCURRENCY, NULL, NULL },
	[CF_WAIT] = { "wait", FT_ENUM, 0, COFF(wait), 0, 0, wait_names, NULL },
	[CF_CKPT] = { "checkpoint_interval", FT_DUR, 0, COFF(checkpoint_interval_ns), 0, DUR_MAX,
		      NULL, NULL },
	[CF_ENABLED] = { "enabled", FT_BOOL, 0, COFF(enabled), 0, 0, NULL, NULL },
	[CF_TIMEOUT] = { "timeout", FT_DUR, 0, COFF(timeout_ns), NS_MS, 900 * NS_S, NULL, NULL },
	[CF_MEMORY] = { "memory_limit", FT_SIZE, 0, COFF(memory_limit), 0, UINT64_MAX, NULL,
			NULL },
	[CF_ISOLATION] = { "isolation", FT_ENUM, 0, COFF(isolation), 0, 0, isolation_names, NULL },
	[CF_FUNCTION] = { "function", FT_FUNCTION, 0, 0, 0, 0, NULL, NULL },
};

#define FOFF(m) offsetof(struct spate_config_function, m)
const struct field spate_cfg_function_fields[FN_N] = {
	[FN_COMMAND] = { "command", FT_ARGV, 0, FOFF(command), FOFF(n_command), 0, NULL, NULL },
	[FN_HANDLER] = { "handler", FT_STR, F_NULL_OK, FOFF(handler), 0, SPATE_CONFIG_HANDLER_MAX,
			 NULL, "a handler like index.handler (module.function, Lambda's Handler)" },
	[FN_RUNTIME] = { "runtime_client", FT_ARGV, 0, FOFF(runtime_client),
			 FOFF(n_runtime_client), 0, NULL, NULL },
	[FN_CWD] = { "cwd", FT_CWD, F_NULL_OK, FOFF(cwd), 0, 0, NULL, NULL },
	[FN_ENV] = { "env", FT_ENV, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[FN_TIMEOUT] = { "timeout", FT_DUR, F_AUTO, FOFF(timeout_ns), NS_MS, 900 * NS_S, NULL,
			 NULL },
	[FN_MEMORY] = { "memory_limit", FT_SIZE, 0, FOFF(memory_limit), 0, UINT64_MAX, NULL,
			NULL },
	[FN_CONCURRENCY] = { "concurrency", FT_U32, F_AUTO, FOFF(concurrency), 1,
			     SPATE_CONFIG_MAX_CONCURRENCY, NULL, NULL },
};

const struct field spate_cfg_placement_fields[PF_N] = {
	[PF_CORES] = { "cores", FT_CORES, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[PF_BUSY] = { "busy_threads_max", FT_U32, F_AUTO,
		      offsetof(struct spate_config_placement, busy_threads_max), 1,
		      SPATE_CONFIG_MAX_CPUS, NULL, NULL },
	[PF_PERSIST] = { "persist_threads", FT_U32, F_AUTO,
			 offsetof(struct spate_config_placement, persist_threads), 1, 64, NULL, NULL },
};

static const char *const counters_names[] = { "on", "off", NULL };
const struct field spate_cfg_metrics_fields[MF_N] = {
	[MF_LISTEN] = { "listen", FT_ADDR, F_NULL_OK, offsetof(struct spate_config_metrics, listen),
			0, 0, NULL, NULL },
	[MF_COUNTERS] = { "counters", FT_ENUM, 0, offsetof(struct spate_config_metrics, counters), 0,
			  0, counters_names, NULL },
};

#define API_OFF(m) offsetof(struct spate_config_api, m)
const struct field spate_cfg_api_fields[AF_N] = {
	[AF_LISTEN] = { "listen", FT_ADDR, 0, API_OFF(listen), 0, 0, NULL, NULL },
	[AF_REGION] = { "region", FT_REGION, 0, API_OFF(region), 0, 0, NULL, NULL },
	[AF_AUTH] = { "auth", FT_AUTH, 0, 0, 0, 0, NULL, NULL },
	[AF_TLS] = { "tls", FT_TLS, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[AF_THREADS] = { "threads", FT_U32, F_AUTO, API_OFF(threads), 1, 64, NULL, NULL },
	[AF_CREATE] = { "create", FT_CREATE, F_NULL_OK, 0, 0, 0, NULL, NULL },
};
const struct field spate_cfg_auth_fields[UF_N] = {
	[UF_KEYS] = { "keys", FT_KEYS, F_REQ, 0, 0, 0, NULL, NULL },
};
const struct field spate_cfg_key_fields[EF_N] = {
	[EF_ID] = { "id", FT_KEYID, F_REQ, offsetof(struct spate_config_api_key, id), 0, 0, NULL,
		    NULL },
	[EF_SECRET] = { "secret_file", FT_FILE, F_REQ,
			offsetof(struct spate_config_api_key, secret_file), 0, 0, NULL, NULL },
};
const struct field spate_cfg_tls_fields[LF_N] = {
	[LF_CERT] = { "cert", FT_FILE, F_REQ, API_OFF(tls_cert), 0, 0, NULL, NULL },
	[LF_KEY] = { "key", FT_FILE, F_REQ, API_OFF(tls_key), 0, 0, NULL, NULL },
};

/* ------------------------------------------------------------------------ */
/* Validation (structs; shared by the parser)                               */
/* ------------------------------------------------------------------------ */

struct vctx {
	const struct spate_config *c;
	const struct lines *ln; /* may be NULL */
	const char *file;       /* may be NULL */
	char *err;
	size_t errlen;
	char path[256];
};

__attribute__((format(printf, 3, 4))) static int verr(struct vctx *v, unsigned line,
						       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	spate_cfg_vreport(v->err, v->errlen, v->file, line, v->path, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

__attribute__((format(printf, 2, 3))) static void vpath(struct vctx *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->path, sizeof(v->path), fmt, ap);
	va_end(ap);
}

static unsigned sline(const struct vctx *v, uint32_t i, int f)
{
	if (v->ln && v->ln->stream && v->ln->stream[i][f])
		return v->ln->stream[i][f];
	return v->c->streams[i].line;
}

static unsigned cline(const struct vctx *v, uint32_t i, int f)
{
	if (v->ln && v->ln->consumer && v->ln->consumer[i][f])
		return v->ln->consumer[i][f];
	return v->c->consumers[i].line;
}

/* Range and syntax check of one scalar field of a struct. v->path names it. */
static int check_field(struct vctx *v, const struct field *f, const void *obj, unsigned line)
{
	char want[320], a[48];
	const char *s;
	size_t len;
	uint64_t u;

	switch ((enum ftype)f->type) {
	case FT_NAME:
	case FT_REF:
	case FT_DIR:
	case FT_PLUGIN: {
		size_t cap = (f->type == FT_NAME || f->type == FT_REF) ? SPATE_CONFIG_NAME_MAX + 1
								       : SPATE_CONFIG_PATH_MAX;
		s = CAT(obj, f, char);
		len = spate_cfg_arr_len(s, cap);
		if (len == cap)
			return verr(v, line, "expected %s, got a string that is not NUL-terminated",
				    spate_cfg_expected(f, want, sizeof(want)));
		if (len == 0) {
			if (f->flags & F_NULL_OK)
				return 0;
			return verr(v, line, "missing; expected %s", spate_cfg_expected(f, want, sizeof(want)));
		}
		if ((f->type == FT_NAME || f->type == FT_REF) ? spate_cfg_name_ok(s, len)
		    : f->type == FT_PLUGIN                    ? spate_cfg_plugin_ok(s, len)
							      : s[0] == '/')
			return 0;
		spate_cfg_quote(s, len, a, sizeof(a));
		return verr(v, line, "expected %s, got %s", spate_cfg_expected(f, want, sizeof(want)), a);
	}
	case FT_U32:
		u = *CAT(obj, f, uint32_t);
		if ((u == 0 && (f->flags & F_AUTO)) || (u >= f->lo && u <= f->hi))
			return 0;
		return verr(v, line, "expected %s, got %llu", spate_cfg_expected(f, want, sizeof(want)),
			    (unsigned long long)u);
	case FT_RETRIES: {
		int32_t r = *CAT(obj, f, int32_t);
		if (r == -1 || (r >= 0 && (uint64_t)r >= f->lo && (uint64_t)r <= f->hi))
			return 0;
		return verr(v, line, "expected %s, got %d", spate_cfg_expected(f, want, sizeof(want)), (int)r);
	}
	case FT_U64:
	case FT_TIME:
		return 0; /* every value is valid */
	case FT_SIZE:
		u = *CAT(obj, f, uint64_t);
		if ((u == 0 && (f->flags & F_AUTO)) ||
		    (u >= f->lo && u <= f->hi && (!(f->flags & F_POW2) || (u & (u - 1)) == 0)))
			return 0;
		return verr(v, line, "expected %s, got %s", spate_cfg_expected(f, want, sizeof(want)),
			    spate_cfg_fmt_size(u, a, sizeof(a)));
	case FT_DUR:
		u = *CAT(obj, f, uint64_t);
		if ((u == SPATE_CONFIG_NEVER && (f->flags & F_NEVER)) || (u == 0 && (f->flags & F_AUTO)) ||
		    (u >= f->lo && u <= f->hi))
			return 0;
		return verr(v, line, "expected %s, got %s", spate_cfg_expected(f, want, sizeof(want)),
			    u == SPATE_CONFIG_NEVER ? "-1" : spate_cfg_fmt_dur(u, a, sizeof(a)));
	case FT_BOOL:
		return 0;
	case FT_ENUM: {
		int e = *CAT(obj, f, int), n = 0;
		while (f->names[n])
			n++;
		if (e >= 0 && e < n)
			return 0;
		return verr(v, line, "expected %s, got the value %d", spate_cfg_expected(f, want, sizeof(want)),
			    e);
	}
	case FT_ADDR:
		s = CAT(obj, f, char);
		len = spate_cfg_arr_len(s, SPATE_CONFIG_ADDR_MAX);
		if (len == 0 || (len < SPATE_CONFIG_ADDR_MAX &&
				 spate_config_parse_listen(s, NULL, 0, NULL) == 0))
			return 0;
		spate_cfg_quote(s, len, a, sizeof(a));
		return verr(v, line, "expected %s, got %s", spate_cfg_expected(f, want, sizeof(want)), a);
	case FT_STR:
	case FT_CWD: {
		size_t cap = f->type == FT_STR ? f->hi + 1 : SPATE_CONFIG_PATH_MAX;
		s = CAT(obj, f, char);
		len = spate_cfg_arr_len(s, cap);
		if (len == cap)
			return verr(v, line, "expected %s, got a string that is not NUL-terminated",
				    spate_cfg_expected(f, want, sizeof(want)));
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
				return verr(v, line, "expected %s, got a control character",
					    spate_cfg_expected(f, want, sizeof(want)));
		return 0;
	}
	case FT_ARGV: {
		char *const *av = *(char *const *const *)(const void *)((const char *)obj + f->off);
		uint32_t n = *(const uint32_t *)(const void *)((const char *)obj + f->lo);
		if (n > SPATE_CONFIG_ARGV_MAX || (n && !av))
			return verr(v, line, "expected %s, got %u strings%s",
				    spate_cfg_expected(f, want, sizeof(want)), n, av ? "" : " (NULL)");
		for (uint32_t i = 0; i < n; i++)
			if (!av[i] || !av[i][0])
				return verr(v, line, "expected %s, got an empty string at [%u]",
					    spate_cfg_expected(f, want, sizeof(want)), i);
		return 0;
	}
	case FT_OPTIONS:
	case FT_CORES:
	case FT_STREAMS:
	case FT_CONSUMERS:
	case FT_PLACEMENT:
	case FT_METRICS:
	case FT_SOURCES:
	case FT_FUNCTION:
	case FT_ENV:
		break;
	case FT_API:
	case FT_REGION:
	case FT_AUTH:
	case FT_KEYS:
	case FT_KEYID:
	case FT_FILE:
	case FT_TLS:
	case FT_CREATE:
		break; /* checked by check_api() or their own walk */
	}
	return 0;
}

static int check_fields(struct vctx *v, const char *prefix, const struct field *tab, size_t nf,
			const void *obj, const uint32_t *lines, unsigned dflt_line)
{
	for (size_t i = 0; i < nf; i++) {
		int r;
		vpath(v, "%s%s%s", prefix, *prefix ? "." : "", tab[i].key);
		r = check_field(v, &tab[i], obj, lines && lines[i] ? lines[i] : dflt_line);
		if (r < 0)
			return r;
	}
	return 0;
}

/* " (did you mean "x"?)" or "; streams: a, b, c" for an unknown stream name. */
static void stream_hint(const struct spate_config *c, const char *name, char *buf, size_t len)
{
	unsigned best = 99;
	const char *cand = NULL;
	size_t pos = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < c->n_streams; i++) {
		unsigned d = spate_cfg_closeness(name, strlen(name), c->streams[i].name);
		if (d < best) {
			best = d;
			cand = c->streams[i].name;
		}
	}
	if (cand) {
		spate_cfg_app(buf, len, &pos, "; did you mean \"%s\"?", cand);
		return;
	}
	spate_cfg_app(buf, len, &pos, "; streams:");
	for (uint32_t i = 0; i < c->n_streams && i < 20; i++)
		spate_cfg_app(buf, len, &pos, "%s %s", i ? "," : "", c->streams[i].name);
	if (c->n_streams > 20)
		spate_cfg_app(buf, len, &pos, ", ...");
}

static int check_streams(struct vctx *v)
{
	const struct spate_config *c = v->c;
	size_t blen = spate_cfg_arr_len(c->bus, sizeof(c->bus));
	char a[32], b[32];
	int r;

	if (c->n_streams == 0 || !c->streams) {
		vpath(v, "streams");
		return verr(v, v->ln ? v->ln->top[TF_STREAMS] : 0,
			    "missing; expected a list of streams (at least one)");
	}
	for (uint32_t i = 0; i < c->n_streams; i++) {
		const struct spate_config_stream *s = &c->streams[i];
		char prefix[32];

		snprintf(prefix, sizeof(prefix), "streams[%u]", i);
		r = check_fields(v, prefix, spate_cfg_stream_fields, SF_N, s,
				 v->ln && v->ln->stream ? v->ln->stream[i] : NULL, s->line);
		if (r < 0)
			return r;
		size_t nlen = strlen(s->name);
		if (blen + 1 + nlen > SPATE_CONFIG_REGION_NAME_MAX) {
			vpath(v, "streams[%u].name", i);
			return verr(v, sline(v, i, SF_NAME),
				    "\"%s.%s\" (bus.stream, the name of the stream's shared memory) "
				    "is %zu characters; at most %u: shorten the bus or the stream name",
				    c->bus, s->name, blen + 1 + nlen, SPATE_CONFIG_REGION_NAME_MAX);
		}
		uint64_t cap = s->ring_size / 2 - SPATE_CONFIG_RECORD_OVERHEAD;
		if (s->max_record_size > cap) {
			vpath(v, "streams[%u].max_record_size", i);
			return verr(v, sline(v, i, SF_MAX_RECORD),
				    "%s does not fit streams[%u].ring_size %s: expected at most "
				    "ring_size/2 - 48 = %llu bytes (raise ring_size or lower "
				    "max_record_size)",
				    spate_cfg_fmt_size(s->max_record_size, a, sizeof(a)), i,
				    spate_cfg_fmt_size(s->ring_size, b, sizeof(b)), (unsigned long long)cap);
		}
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(c->streams[j].name, s->name) == 0) {
				vpath(v, "streams[%u].name", i);
				return verr(v, sline(v, i, SF_NAME),
					    "duplicate stream name \"%s\" (streams[%u], line %u)",
					    s->name, j, sline(v, j, SF_NAME));
			}
	}
	return 0;
}

static int check_options(struct vctx *v, uint32_t i, const struct spate_config_consumer *k)
{
	if (k->n_options && !k->options) {
		vpath(v, "consumers[%u].options", i);
		return verr(v, cline(v, i, CF_OPTIONS), "n_options is %u but options is NULL",
			    k->n_options);
	}
	for (uint32_t j = 0; j < k->n_options; j++) {
		const struct spate_config_opt *o = &k->options[j];
		if (!o->key || !*o->key || !o->value) {
			vpath(v, "consumers[%u].options[%u]", i, j);
			return verr(v, cline(v, i, CF_OPTIONS),
				    "expected a non-empty key and a value, got %s", !o->key ? "no key"
				    : !*o->key ? "an empty key" : "no value");
		}
		for (uint32_t m = 0; m < j; m++)
			if (strcmp(k->options[m].key, o->key) == 0) {
				vpath(v, "consumers[%u].options.%s", i, o->key);
				return verr(v, cline(v, i, CF_OPTIONS), "duplicate option");
			}
	}
	return 0;
}

/* Line of consumer i's `function:` key (f < 0) or of its key f. */
static unsigned fline(const struct vctx *v, uint32_t i, int f)
{
	if (f >= 0 && v->ln && v->ln->function && v->ln->function[i][f])
		return v->ln->function[i][f];
	if (v->c->consumers[i].function && v->c->consumers[i].function->line)
		return v->c->consumers[i].function->line;
	return cline(v, i, CF_FUNCTION);
}

/* A valid environment variable name: [A-Za-z_][A-Za-z0-9_]*. */
static int env_name_ok(const char *s)
{
	if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
		return 0;
	for (s++; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

/* Plugin or function (exactly one), isolation, and the function's keys. */
static int check_function(struct vctx *v, uint32_t i, const struct spate_config_consumer *k)
{
	const struct spate_config_function *fn = k->function;
	const uint32_t *fl = v->ln && v->ln->function ? v->ln->function[i] : NULL;
	char prefix[48];
	int r;

	if (!fn && !k->plugin[0]) {
		vpath(v, "consumers[%u]", i);
		return verr(v, k->line,
			    "expected a plugin (plugin: a bundled name or a path to a .so) or a "
			    "function (function: {command: [...]} or {handler: ..., "
			    "runtime_client: ...}), got neither");
	}
	if (fn && k->plugin[0]) {
		vpath(v, "consumers[%u].function", i);
		return verr(v, fline(v, i, -1),
			    "a consumer runs a plugin or a function, not both (plugin at line %u)",
			    cline(v, i, CF_PLUGIN));
	}
	if (!fn)
		return 0;
	if (v->ln && v->ln->consumer && v->ln->consumer[i][CF_ISOLATION] &&
	    k->isolation == SPATE_CONFIG_ISOLATION_IN_PROCESS) {
		vpath(v, "consumers[%u].isolation", i);
		return verr(v, cline(v, i, CF_ISOLATION),
			    "a function always runs in its own processes: expected process (or no "
			    "isolation key), got in-process");
	}
	snprintf(prefix, sizeof(prefix), "consumers[%u].function", i);
	r = check_fields(v, prefix, spate_cfg_function_fields, FN_N, fn, fl, fline(v, i, -1));
	if (r < 0)
		return r;
	if (!fn->n_command && !fn->handler[0]) {
		vpath(v, "consumers[%u].function", i);
		return verr(v, fline(v, i, -1),
			    "expected command (the program that runs the Runtime API loop, like "
			    "[node, index.mjs]) or handler (like index.handler) with runtime_client, "
			    "got neither");
	}
	if (!fn->n_command && !fn->n_runtime_client) {
		vpath(v, "consumers[%u].function.runtime_client", i);
		return verr(v, fline(v, i, FN_HANDLER),
			    "missing; a handler needs a runtime client to load it: node or python "
			    "(the loops bundled with spate) or the argv of one, like "
			    "[npx, aws-lambda-ric]");
	}
	if (fn->n_command && fn->n_runtime_client) {
		vpath(v, "consumers[%u].function.runtime_client", i);
		return verr(v, fline(v, i, FN_RUNTIME),
			    "with command the process is the runtime: expected command or "
			    "runtime_client, not both");
	}
	if (fn->n_env && !fn->env) {
		vpath(v, "consumers[%u].function.env", i);
		return verr(v, fline(v, i, FN_ENV), "n_env is %u but env is NULL", fn->n_env);
	}
	for (uint32_t j = 0; j < fn->n_env; j++) {
		const struct spate_config_opt *o = &fn->env[j];
		vpath(v, "consumers[%u].function.env.%s", i, o->key ? o->key : "?");
		if (!env_name_ok(o->key) || !o->value)
			return verr(v, fline(v, i, FN_ENV),
				    "expected a variable name ([A-Za-z_][A-Za-z0-9_]*) and a value");
		if (strncmp(o->key, "AWS_LAMBDA_RUNTIME_API", 23) == 0)
			return verr(v, fline(v, i, FN_ENV),
				    "set by the engine for each process (the Runtime API's address)");
		for (uint32_t m = 0; m < j; m++)
			if (strcmp(fn->env[m].key, o->key) == 0)
				return verr(v, fline(v, i, FN_ENV), "duplicate variable");
	}
	return 0;
}

static int check_consumers(struct vctx *v)
{
	const struct spate_config *c = v->c;
	char hint[600], a[32], b[32];
	int r;

	if (c->n_consumers && !c->consumers) {
		vpath(v, "consumers");
		return verr(v, 0, "n_consumers is %u but consumers is NULL", c->n_consumers);
	}
	for (uint32_t i = 0; i < c->n_consumers; i++) {
		const struct spate_config_consumer *k = &c->consumers[i];
		const uint32_t *ln = v->ln && v->ln->consumer ? v->ln->consumer[i] : NULL;
		char prefix[32];

		snprintf(prefix, sizeof(prefix), "consumers[%u]", i);
		r = check_fields(v, prefix, spate_cfg_consumer_fields, CF_N, k, ln, k->line);
		if (r < 0)
			return r;
		r = check_options(v, i, k);
		if (r < 0)
			return r;
		r = check_function(v, i, k);
		if (r < 0)
			return r;
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(c->consumers[j].name, k->name) == 0) {
				vpath(v, "consumers[%u].name", i);
				return verr(v, cline(v, i, CF_NAME),
					    "duplicate consumer name \"%s\" (consumers[%u], line %u)",
					    k->name, j, cline(v, j, CF_NAME));
			}
		if (!spate_config_find_stream(c, k->stream)) {
			vpath(v, "consumers[%u].stream", i);
			stream_hint(c, k->stream, hint, sizeof(hint));
			return verr(v, cline(v, i, CF_STREAM), "no stream named \"%s\"%s", k->stream,
				    hint);
		}
		if (k->on_failure[0]) {
			if (!spate_config_find_stream(c, k->on_failure)) {
				vpath(v, "consumers[%u].on_failure", i);
				stream_hint(c, k->on_failure, hint, sizeof(hint));
				return verr(v, cline(v, i, CF_ON_FAILURE), "no stream named \"%s\"%s",
					    k->on_failure, hint);
			}
			if (strcmp(k->on_failure, k->stream) == 0) {
				vpath(v, "consumers[%u].on_failure", i);
				return verr(v, cline(v, i, CF_ON_FAILURE),
					    "\"%s\" is the stream the consumer reads; failed records "
					    "must go to another stream",
					    k->on_failure);
			}
		}
		if (k->retry_backoff_ns > k->retry_backoff_max_ns) {
			vpath(v, "consumers[%u].retry_backoff", i);
			return verr(v, cline(v, i, CF_BACKOFF),
				    "%s is above retry_backoff_max %s; expected at most that",
				    spate_cfg_fmt_dur(k->retry_backoff_ns, a, sizeof(a)),
				    spate_cfg_fmt_dur(k->retry_backoff_max_ns, b, sizeof(b)));
		}
		/* Positions: only the file tells whether a key was written. */
		if (ln) {
			int seq = k->starting_position == SPATE_CONFIG_START_AT_SEQUENCE ||
				  k->starting_position == SPATE_CONFIG_START_AFTER_SEQUENCE;
			int ts = k->starting_position == SPATE_CONFIG_START_AT_TIMESTAMP;
			const char *pos = spate_config_start_str(k->starting_position);
			if (seq && !ln[CF_START_SEQ]) {
				vpath(v, "consumers[%u].starting_sequence", i);
				return verr(v, ln[CF_START] ? ln[CF_START] : k->line,
					    "missing; required with starting_position %s", pos);
			}
			if (!seq && ln[CF_START_SEQ]) {
				vpath(v, "consumers[%u].starting_sequence", i);
				return verr(v, ln[CF_START_SEQ],
					    "only allowed with starting_position at_sequence or "
					    "after_sequence, not %s",
					    pos);
			}
			if (ts && !ln[CF_START_TS]) {
				vpath(v, "consumers[%u].starting_timestamp", i);
				return verr(v, ln[CF_START] ? ln[CF_START] : k->line,
					    "missing; required with starting_position %s", pos);
			}
			if (!ts && ln[CF_START_TS]) {
				vpath(v, "consumers[%u].starting_timestamp", i);
				return verr(v, ln[CF_START_TS],
					    "only allowed with starting_position at_timestamp, not %s",
					    pos);
			}
		}
		uint32_t same = 0;
		for (uint32_t j = 0; j < i; j++)
			same += strcmp(c->consumers[j].stream, k->stream) == 0;
		if (same >= SPATE_CONFIG_MAX_CONSUMERS_PER_STREAM) {
			vpath(v, "consumers[%u].stream", i);
			return verr(v, cline(v, i, CF_STREAM),
				    "stream \"%s\" already has %u consumers, the most a stream serves",
				    k->stream, SPATE_CONFIG_MAX_CONSUMERS_PER_STREAM);
		}
	}
	return 0;
}

static int check_placement(struct vctx *v)
{
	const struct spate_config_placement *p = &v->c->placement;
	unsigned pl = v->ln ? v->ln->place[PF_CORES] : 0;
	uint8_t seen[SPATE_CONFIG_MAX_CPUS / 8];
	int r;

	memset(seen, 0, sizeof(seen));
	if (p->n_cores && !p->cores) {
		vpath(v, "placement.cores");
		return verr(v, pl, "n_cores is %u but cores is NULL", p->n_cores);
	}
	for (uint32_t i = 0; i < p->n_cores; i++) {
		uint32_t cpu = p->cores[i];
		vpath(v, "placement.cores");
		if (cpu >= SPATE_CONFIG_MAX_CPUS)
			return verr(v, pl, "expected CPU numbers from 0 to %u, got %u",
				    SPATE_CONFIG_MAX_CPUS - 1, cpu);
		if (seen[cpu / 8] & (1u << (cpu % 8)))
			return verr(v, pl, "CPU %u is listed twice", cpu);
		seen[cpu / 8] |= (uint8_t)(1u << (cpu % 8));
	}
	r = check_fields(v, "placement", spate_cfg_placement_fields, PF_N, p, v->ln ? v->ln->place : NULL, 0);
	if (r < 0)
		return r;
	if (p->n_cores && p->busy_threads_max > p->n_cores) {
		vpath(v, "placement.busy_threads_max");
		return verr(v, v->ln ? v->ln->place[PF_BUSY] : 0,
			    "expected an integer from 1 to %u (the number of placement.cores), got %u",
			    p->n_cores, p->busy_threads_max);
	}
	return 0;
}

/* Line of api key @p f (or of the block when unknown). */
static unsigned aline(const struct vctx *v, int f)
{
	if (v->ln && v->ln->api[f])
		return v->ln->api[f];
	return v->c->api.line;
}

int spate_cfg_region_ok(const char *s, size_t len)
{
	if (len == 0 || len > SPATE_CONFIG_REGION_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

int spate_cfg_key_id_ok(const char *s, size_t len)
{
	if (len == 0 || len > SPATE_CONFIG_KEY_ID_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return 0;
	return 1;
}

/* api.create: the stream keys CreateStream's streams take (not name,
 * shards, log_dir: the parser refuses them), checked as a stream's. */
static int check_api_create(struct vctx *v)
{
	const struct spate_config_stream *s = &v->c->api.create;
	const uint32_t *ln = v->ln ? v->ln->create : NULL;
	char a[32], b[32];
	int r;

	if (s->ring_size == 0)
		return 0; /* built in C and left zeroed: the defaults */
	for (size_t i = 0; i < SF_N; i++) {
		if (i == SF_NAME || i == SF_SHARDS || i == SF_LOG_DIR)
			continue;
		vpath(v, "api.create.%s", spate_cfg_stream_fields[i].key);
		r = check_field(v, &spate_cfg_stream_fields[i], s,
				ln && ln[i] ? ln[i] : s->line ? s->line : aline(v, AF_CREATE));
		if (r < 0)
			return r;
	}
	uint64_t cap = s->ring_size / 2 - SPATE_CONFIG_RECORD_OVERHEAD;
	if (s->max_record_size > cap) {
		vpath(v, "api.create.max_record_size");
		return verr(v, ln && ln[SF_MAX_RECORD] ? ln[SF_MAX_RECORD] : s->line,
			    "%s does not fit api.create.ring_size %s: expected at most ring_size/2 - "
			    "48 = %llu bytes (raise ring_size or lower max_record_size)",
			    spate_cfg_fmt_size(s->max_record_size, a, sizeof(a)),
			    spate_cfg_fmt_size(s->ring_size, b, sizeof(b)), (unsigned long long)cap);
	}
	return 0;
}

/* The api: block: an address, a region, auth written out (none, or keys
 * with distinct ids and a secret file each), tls with both files or none.
 * The secret files themselves (mode 0600, readable) are checked by the
 * front when it starts (engine/api/), which reads them. */
static int check_api(struct vctx *v)
{
	const struct spate_config_api *a = &v->c->api;
	char q[80];
	size_t len;
	int r;

	if (!a->enabled)
		return 0;
	r = check_fields(v, "api", spate_cfg_api_fields, AF_N, a, v->ln ? v->ln->api : NULL, a->line);
	if (r < 0)
		return r;
	len = spate_cfg_arr_len(a->listen, sizeof(a->listen));
	if (len == 0) {
		vpath(v, "api.listen");
		return verr(v, aline(v, AF_LISTEN), "missing; expected an address to listen on "
			    "(like 127.0.0.1:4567)");
	}
	len = spate_cfg_arr_len(a->region, sizeof(a->region));
	if (!spate_cfg_region_ok(a->region, len)) {
		vpath(v, "api.region");
		spate_cfg_quote(a->region, len, q, sizeof(q));
		return verr(v, aline(v, AF_REGION), "expected an AWS region name (1 to %u characters "
			    "from a-z 0-9 -, like us-east-1), got %s", SPATE_CONFIG_REGION_MAX, q);
	}
	vpath(v, "api.auth");
	switch (a->auth) {
	case SPATE_CONFIG_API_AUTH_NONE:
		break;
	case SPATE_CONFIG_API_AUTH_KEYS:
		if (a->n_keys == 0 || !a->keys)
			return verr(v, aline(v, AF_AUTH), "expected at least one entry in keys");
		if (a->n_keys > SPATE_CONFIG_API_MAX_KEYS)
			return verr(v, aline(v, AF_AUTH), "expected at most %u keys, got %u",
				    SPATE_CONFIG_API_MAX_KEYS, a->n_keys);
		for (uint32_t i = 0; i < a->n_keys; i++) {
			const struct spate_config_api_key *k = &a->keys[i];
			unsigned l = v->ln && v->ln->key[i][EF_ID] ? v->ln->key[i][EF_ID] : k->line;
			len = spate_cfg_arr_len(k->id, sizeof(k->id));
			vpath(v, "api.auth.keys[%u].id", i);
			if (!spate_cfg_key_id_ok(k->id, len))
				return verr(v, l, "expected an access key id of 1 to %u characters from "
					    "A-Z a-z 0-9 _ -", SPATE_CONFIG_KEY_ID_MAX);
			for (uint32_t j = 0; j < i; j++)
				if (strcmp(a->keys[j].id, k->id) == 0)
					return verr(v, l, "duplicate key id \"%s\" (keys[%u])", k->id, j);
			vpath(v, "api.auth.keys[%u].secret_file", i);
			len = spate_cfg_arr_len(k->secret_file, sizeof(k->secret_file));
			if (len == 0 || len == sizeof(k->secret_file))
				return verr(v, l, "missing; expected the path of a file (mode 0600) "
					    "holding the secret access key");
		}
		break;
	default:
		return verr(v, a->line, "missing; write `auth: none` to serve without signatures "
			    "(anyone who reaches %s may call), or auth: {keys: [{id, secret_file}]}",
			    a->listen);
	}
	if (!a->tls_cert[0] != !a->tls_key[0]) {
		vpath(v, a->tls_cert[0] ? "api.tls.key" : "api.tls.cert");
		return verr(v, aline(v, AF_TLS), "missing; api.tls needs both cert and key");
	}
	return check_api_create(v);
}

int spate_cfg_validate(const struct spate_config *c, const struct lines *ln, const char *file,
			 char *err, size_t errlen)
{
	struct vctx v = { .c = c, .ln = ln, .file = file, .err = err, .errlen = errlen };
	int r;

	r = check_fields(&v, "", spate_cfg_top_fields, TF_N, c, ln ? ln->top : NULL, 0);
	if (r < 0)
		return r;
	r = check_streams(&v);
	if (r < 0)
		return r;
	r = check_consumers(&v);
	if (r < 0)
		return r;
	r = check_placement(&v);
	if (r < 0)
		return r;
	r = check_fields(&v, "metrics", spate_cfg_metrics_fields, MF_N, &c->metrics, ln ? ln->metrics : NULL, 0);
	if (r < 0)
		return r;
	r = check_api(&v);
	if (r < 0)
		return r;
	return spate_cfg_check_sources(c, file, err, errlen);
}

int spate_config_validate(const struct spate_config *c, char *err, size_t errlen)
{
	if (!c)
		return spate_cfg_report(err, errlen, NULL, 0, "no configuration");
	size_t sl = spate_cfg_arr_len(c->source, sizeof(c->source));
	return spate_cfg_validate(c, NULL, sl && sl < sizeof(c->source) ? c->source : NULL, err, errlen);
}
