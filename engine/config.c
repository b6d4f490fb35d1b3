/* SPDX-License-Identifier: MIT */
/*
 * config.c - the bus configuration: YAML (libyaml) into struct spate_config,
 * and the checks shared with configs built in C.
 *
 * Design. libyaml loads the whole document into a node tree
 * (yaml_parser_load), so every node keeps its line. The schema is a set of
 * tables, one per mapping (top level, stream, consumer, placement): key,
 * type, flags, offset of the struct member, range. One walker goes over a
 * mapping with its table; every scalar goes through conv(), the one set of
 * typed conversions (name, path, integer, size, duration, timestamp, bool,
 * enum), which produces "<file>:<line>: <field path>: expected <what the
 * table says>, got <the text>". Unknown keys are errors with a suggestion
 * (edit distance) or the list of valid keys; duplicate keys are errors too
 * (libyaml keeps them). The walk records the line of every key it meets, so
 * that the cross-field checks, which run afterwards in validate_impl() (the
 * same code spate_config_validate() runs on configs built in C), can point
 * at the right line. Values a user leaves out get the defaults of
 * spate_config_stream_defaults()/consumer_defaults(); "automatic" values
 * (max_record_size, concurrency, busy_threads_max) are resolved after the
 * checks so the struct shows what will be used.
 *
 * Trade-offs and limits. The first error stops the parse: one precise
 * message rather than a cascade. YAML types are not inferred from plain
 * scalars: each key says how to read its text, so `name: 123` is the name
 * "123" and `shards: "4"` is 4. Merge keys (<<) are not supported (they are
 * reported as unknown keys); anchors and aliases work, since the walk is
 * bounded by the schema's depth, not by the document's. Only the first YAML
 * document of the stream is allowed. Files are read whole, up to 64 MiB.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <yaml.h>

#include "spate/config.h"
#include "spate/shm.h"

_Static_assert(SPATE_CONFIG_REGION_NAME_MAX == SPATE_SHM_NAME_MAX,
	       "a stream's region name is a shm name");
_Static_assert(sizeof(enum spate_config_producers) == sizeof(int) &&
		       sizeof(enum spate_config_huge) == sizeof(int) &&
		       sizeof(enum spate_config_full) == sizeof(int) &&
		       sizeof(enum spate_config_start) == sizeof(int) &&
		       sizeof(enum spate_ring_wait) == sizeof(int),
	       "enums are stored as int");

#define KIB (1024ull)
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define NS_US 1000ull
#define NS_MS 1000000ull
#define NS_S 1000000000ull
#define DUR_MAX (UINT64_MAX - 1) /* UINT64_MAX is "never" */
#define MAX_FILE (64ull * MIB)

/* ------------------------------------------------------------------------ */
/* Schema                                                                   */
/* ------------------------------------------------------------------------ */

enum ftype {
	FT_NAME,       /* char[NAME_MAX + 1], [A-Za-z0-9_-] */
	FT_REF,        /* the same, naming a stream */
	FT_DIR,        /* char[PATH_MAX], absolute path */
	FT_PLUGIN,     /* char[PATH_MAX], bundled name or .so path */
	FT_U32,        /* uint32_t in [lo, hi] */
	FT_RETRIES,    /* int32_t: -1 or [lo, hi] */
	FT_U64,        /* uint64_t in [lo, hi] */
	FT_SIZE,       /* uint64_t bytes in [lo, hi] */
	FT_DUR,        /* uint64_t ns in [lo, hi] */
	FT_TIME,       /* uint64_t ns since the epoch */
	FT_BOOL,       /* bool */
	FT_ENUM,       /* int: index in names */
	FT_OPTIONS,    /* consumer options */
	FT_CORES,      /* placement cores */
	FT_STREAMS,    /* top-level lists and maps */
	FT_CONSUMERS,
	FT_PLACEMENT,
	FT_ADDR,       /* char[SPATE_CONFIG_ADDR_MAX]: "host:port" (metrics.listen) */
	FT_METRICS,
};

#define F_REQ 0x01u     /* must be present */
#define F_POW2 0x02u    /* a power of two */
#define F_NEVER 0x04u   /* "-1" allowed: stored as UINT64_MAX */
#define F_AUTO 0x08u    /* 0 in the struct means "derive it" (not in YAML) */
#define F_NULL_OK 0x10u /* a null value keeps the default */

struct field {
	const char *key;
	uint8_t type;
	uint8_t flags;
	size_t off;
	uint64_t lo, hi;
	const char *const *names; /* FT_ENUM, NULL-terminated */
	const char *what;         /* overrides the generated "expected ..." */
};

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

enum { TF_BUS, TF_STATE_DIR, TF_STREAMS, TF_CONSUMERS, TF_PLACEMENT, TF_METRICS, TF_N };
static const struct field top_fields[TF_N] = {
	[TF_BUS] = { "bus", FT_NAME, F_REQ, offsetof(struct spate_config, bus), 0, 0, NULL, NULL },
	[TF_STATE_DIR] = { "state_dir", FT_DIR, 0, offsetof(struct spate_config, state_dir), 0, 0,
			   NULL, NULL },
	[TF_STREAMS] = { "streams", FT_STREAMS, F_REQ, 0, 0, 0, NULL, NULL },
	[TF_CONSUMERS] = { "consumers", FT_CONSUMERS, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[TF_PLACEMENT] = { "placement", FT_PLACEMENT, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[TF_METRICS] = { "metrics", FT_METRICS, F_NULL_OK, 0, 0, 0, NULL, NULL },
};

#define SOFF(m) offsetof(struct spate_config_stream, m)
enum { SF_NAME, SF_SHARDS, SF_RING_SIZE, SF_MAX_RECORD, SF_PRODUCERS, SF_HUGE, SF_RETENTION,
       SF_FULL, SF_DURABILITY, SF_DUR_INTERVAL, SF_SEGMENT, SF_RETENTION_BYTES, SF_LOG_DIR, SF_DIRECT_IO, SF_N };
static const struct field stream_fields[SF_N] = {
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
enum { CF_NAME, CF_STREAM, CF_PLUGIN, CF_OPTIONS, CF_BATCH_SIZE, CF_BATCH_BYTES, CF_BATCH_WINDOW,
       CF_START, CF_START_SEQ, CF_START_TS, CF_RETRIES, CF_BACKOFF, CF_BACKOFF_MAX, CF_BISECT,
       CF_MAX_AGE, CF_ON_FAILURE, CF_PARALLEL, CF_CONCURRENCY, CF_WAIT, CF_CKPT, CF_ENABLED,
       CF_TIMEOUT, CF_MEMORY, CF_N };
static const struct field consumer_fields[CF_N] = {
	[CF_NAME] = { "name", FT_NAME, F_REQ, COFF(name), 0, 0, NULL, NULL },
	[CF_STREAM] = { "stream", FT_REF, F_REQ, COFF(stream), 0, 0, NULL, NULL },
	[CF_PLUGIN] = { "plugin", FT_PLUGIN, F_REQ, COFF(plugin), 0, 0, NULL, NULL },
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
};

enum { PF_CORES, PF_BUSY, PF_PERSIST, PF_N };
static const struct field placement_fields[PF_N] = {
	[PF_CORES] = { "cores", FT_CORES, F_NULL_OK, 0, 0, 0, NULL, NULL },
	[PF_BUSY] = { "busy_threads_max", FT_U32, F_AUTO,
		      offsetof(struct spate_config_placement, busy_threads_max), 1,
		      SPATE_CONFIG_MAX_CPUS, NULL, NULL },
	[PF_PERSIST] = { "persist_threads", FT_U32, F_AUTO,
			 offsetof(struct spate_config_placement, persist_threads), 1, 64, NULL, NULL },
};

static const char *const counters_names[] = { "on", "off", NULL };
enum { MF_LISTEN, MF_COUNTERS, MF_N };
static const struct field metrics_fields[MF_N] = {
	[MF_LISTEN] = { "listen", FT_ADDR, F_NULL_OK, offsetof(struct spate_config_metrics, listen),
			0, 0, NULL, NULL },
	[MF_COUNTERS] = { "counters", FT_ENUM, 0, offsetof(struct spate_config_metrics, counters), 0,
			  0, counters_names, NULL },
};

#define AT(obj, f, T) ((T *)(void *)((char *)(obj) + (f)->off))
#define CAT(obj, f, T) ((const T *)(const void *)((const char *)(obj) + (f)->off))

/* ------------------------------------------------------------------------ */
/* Small helpers: text, formatting, suggestions                             */
/* ------------------------------------------------------------------------ */

/* Append to a bounded buffer; *pos may pass len (then nothing more fits). */
__attribute__((format(printf, 4, 0))) static void vapp(char *b, size_t len, size_t *pos,
							const char *fmt, va_list ap)
{
	if (!b || *pos >= len)
		return;
	int n = vsnprintf(b + *pos, len - *pos, fmt, ap);
	if (n > 0)
		*pos += (size_t)n;
}

__attribute__((format(printf, 4, 5))) static void app(char *b, size_t len, size_t *pos,
						       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vapp(b, len, pos, fmt, ap);
	va_end(ap);
}

static int is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static char lower(char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Equal ignoring ASCII case, @p a of length @p la, @p b NUL-terminated. */
static int eq_nocase(const char *a, size_t la, const char *b)
{
	for (size_t i = 0; i < la; i++)
		if (!b[i] || lower(a[i]) != lower(b[i]))
			return 0;
	return b[la] == '\0';
}

static int name_ok(const char *s, size_t len)
{
	if (len == 0 || len > SPATE_CONFIG_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) ||
		      ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

static int plugin_ok(const char *s, size_t len)
{
	if (len == 0 || len >= SPATE_CONFIG_PATH_MAX)
		return 0;
	if (memchr(s, '/', len))
		return len > 3 && memcmp(s + len - 3, ".so", 3) == 0 && s[len - 4] != '/';
	if (len > SPATE_CONFIG_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || is_digit(s[i]) || s[i] == '_'))
			return 0;
	return 1;
}

/* Length of a NUL-terminated string in an array of @p cap, or cap if none. */
static size_t arr_len(const char *s, size_t cap)
{
	const char *z = memchr(s, '\0', cap);

	return z ? (size_t)(z - s) : cap;
}

/* "64KiB", "4MiB", "1GiB" when exact, else the byte count. */
static const char *fmt_size(uint64_t v, char *buf, size_t len)
{
	static const char *const u[] = { "TiB", "GiB", "MiB", "KiB" };
	static const uint64_t m[] = { 1024 * GIB, GIB, MIB, KIB };

	for (int i = 0; i < 4; i++)
		if (v && v % m[i] == 0) {
			snprintf(buf, len, "%llu%s", (unsigned long long)(v / m[i]), u[i]);
			return buf;
		}
	snprintf(buf, len, "%llu", (unsigned long long)v);
	return buf;
}

/* "0", "300s", "1ms", "24h": the largest unit that divides. */
static const char *fmt_dur(uint64_t ns, char *buf, size_t len)
{
	static const char *const u[] = { "d", "h", "m", "s", "ms", "us" };
	static const uint64_t m[] = { 86400 * NS_S, 3600 * NS_S, 60 * NS_S, NS_S, NS_MS, NS_US };

	if (ns == SPATE_CONFIG_NEVER) {
		snprintf(buf, len, "-1");
		return buf;
	}
	for (int i = 0; i < 6; i++)
		if (ns && ns % m[i] == 0) {
			snprintf(buf, len, "%llu%s", (unsigned long long)(ns / m[i]), u[i]);
			return buf;
		}
	snprintf(buf, len, "%llu%s", (unsigned long long)ns, ns ? "ns" : "");
	return buf;
}

/* Quote @p s for a message: at most 60 characters, non-printables as '?'. */
static void quote(const char *s, size_t len, char *buf, size_t blen)
{
	size_t o = 0, n = len > 60 ? 60 : len;

	if (blen < 8)
		return;
	buf[o++] = '"';
	for (size_t i = 0; i < n && o + 5 < blen; i++) {
		unsigned char ch = (unsigned char)s[i];
		buf[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	if (n < len && o + 4 < blen) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

/* Edit distance, case-insensitive, '-' equal to '_'; 99 for long strings. */
static unsigned edit_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b);
	unsigned row[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned prev = row[0];
		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			char ca = lower(a[i - 1]) == '-' ? '_' : lower(a[i - 1]);
			char cb = lower(b[j - 1]) == '-' ? '_' : lower(b[j - 1]);
			unsigned cur = row[j], best = prev + (ca != cb);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

/* Is @p cand close enough to @p s to suggest it? Returns the distance or 99. */
static unsigned closeness(const char *s, size_t len, const char *cand)
{
	unsigned d = edit_distance(s, len, cand);
	unsigned limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;

	return d <= limit && d < strlen(cand) ? d : 99;
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

/* "<file>:<line>: <path>: <message>", each part only when known. */
__attribute__((format(printf, 6, 0))) static int vreport(char *err, size_t errlen,
							  const char *file, unsigned line,
							  const char *path, const char *fmt,
							  va_list ap)
{
	size_t pos = 0;

	if (!err || errlen == 0)
		return -EINVAL;
	err[0] = '\0';
	if (file && line)
		app(err, errlen, &pos, "%s:%u: ", file, line);
	else if (file)
		app(err, errlen, &pos, "%s: ", file);
	if (path && *path)
		app(err, errlen, &pos, "%s: ", path);
	vapp(err, errlen, &pos, fmt, ap);
	return -EINVAL;
}

__attribute__((format(printf, 5, 6))) static int report(char *err, size_t errlen,
							 const char *file, unsigned line,
							 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(err, errlen, file, line, NULL, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* What a field expects, for "expected ..." */
static const char *expected(const struct field *f, char *buf, size_t len)
{
	char a[32], b[32];
	size_t pos = 0;

	if (f->what)
		return f->what;
	buf[0] = '\0';
	switch ((enum ftype)f->type) {
	case FT_NAME:
		app(buf, len, &pos, "a name of 1 to %u characters from A-Z a-z 0-9 _ -",
		    SPATE_CONFIG_NAME_MAX);
		break;
	case FT_REF:
		app(buf, len, &pos, "a stream name (1 to %u characters from A-Z a-z 0-9 _ -)",
		    SPATE_CONFIG_NAME_MAX);
		break;
	case FT_DIR:
		app(buf, len, &pos, "an absolute path (below %u bytes)", SPATE_CONFIG_PATH_MAX);
		break;
	case FT_PLUGIN:
		app(buf, len, &pos,
		    "a bundled plugin name ([a-z0-9_], at most %u characters) or a path to a "
		    ".so file (containing '/')",
		    SPATE_CONFIG_NAME_MAX);
		break;
	case FT_U32:
	case FT_U64:
		if (f->hi == UINT64_MAX)
			app(buf, len, &pos, "a non-negative integer");
		else
			app(buf, len, &pos, "an integer from %llu to %llu", (unsigned long long)f->lo,
			    (unsigned long long)f->hi);
		break;
	case FT_RETRIES:
		app(buf, len, &pos, "-1 (retry until the record expires) or an integer from %llu to %llu",
		    (unsigned long long)f->lo, (unsigned long long)f->hi);
		break;
	case FT_SIZE:
		if (f->hi == UINT64_MAX)
			app(buf, len, &pos, "a size of at least %s byte%s (like 6MiB)",
			    fmt_size(f->lo, a, sizeof(a)), f->lo == 1 ? "" : "s");
		else
			app(buf, len, &pos, "a %ssize from %s to %s (like 4MiB)",
			    (f->flags & F_POW2) ? "power-of-two " : "", fmt_size(f->lo, a, sizeof(a)),
			    fmt_size(f->hi, b, sizeof(b)));
		break;
	case FT_DUR:
		if (f->flags & F_NEVER)
			app(buf, len, &pos, "-1 (never) or ");
		if (f->hi >= DUR_MAX && f->lo == 0)
			app(buf, len, &pos, "a duration");
		else if (f->hi >= DUR_MAX)
			app(buf, len, &pos, "a duration of at least %s", fmt_dur(f->lo, a, sizeof(a)));
		else
			app(buf, len, &pos, "a duration from %s to %s", fmt_dur(f->lo, a, sizeof(a)),
			    fmt_dur(f->hi, b, sizeof(b)));
		app(buf, len, &pos, " (like 0, 500us, 10ms, 2s, 1m, 1h, 7d)");
		break;
	case FT_TIME:
		app(buf, len, &pos,
		    "an RFC 3339 timestamp like 2026-11-27T10:00:00Z or "
		    "2026-11-27T10:00:00.123456789+01:00, or nanoseconds since the epoch");
		break;
	case FT_BOOL:
		app(buf, len, &pos, "a boolean (true/false, yes/no, on/off)");
		break;
	case FT_ENUM:
		app(buf, len, &pos, "one of");
		for (int i = 0; f->names[i]; i++)
			app(buf, len, &pos, "%s %s", i ? "," : "", f->names[i]);
		break;
	case FT_OPTIONS:
		app(buf, len, &pos, "a mapping of option names to scalar values");
		break;
	case FT_CORES:
		app(buf, len, &pos, "a list of CPU numbers from 0 to %u (or ranges like 0-3)",
		    SPATE_CONFIG_MAX_CPUS - 1);
		break;
	case FT_STREAMS:
		app(buf, len, &pos, "a list of streams (at least one)");
		break;
	case FT_CONSUMERS:
		app(buf, len, &pos, "a list of consumers");
		break;
	case FT_PLACEMENT:
		app(buf, len, &pos, "a mapping with keys cores, busy_threads_max, persist_threads");
		break;
	case FT_ADDR:
		app(buf, len, &pos, "an address to listen on: PORT, HOST:PORT or [IPV6]:PORT "
		    "(like 127.0.0.1:9464)");
		break;
	case FT_METRICS:
		app(buf, len, &pos, "a mapping with keys listen, counters");
		break;
	}
	return buf;
}

static void key_list(const struct field *tab, size_t nf, char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < nf; i++)
		app(buf, len, &pos, "%s%s", i ? ", " : "", tab[i].key);
}

/* ------------------------------------------------------------------------ */
/* Value parsers (public)                                                   */
/* ------------------------------------------------------------------------ */

/* Decimal digits at *p into *v; advances *p. -EINVAL if none, -ERANGE. */
static int digits(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;

	if (!is_digit(*s))
		return -EINVAL;
	for (; is_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -ERANGE;
		x = x * 10 + d;
	}
	*p = s;
	*v = x;
	return 0;
}

/* A whole string of decimal digits. */
static int parse_dec(const char *s, uint64_t *out)
{
	const char *p = s;
	int r = digits(&p, out);

	if (r < 0)
		return r;
	return *p ? -EINVAL : 0;
}

int spate_config_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *u;
		uint64_t m;
	} units[] = {
		{ "b", 1 },          { "kib", KIB },      { "mib", MIB },
		{ "gib", GIB },      { "tib", 1024 * GIB }, { "kb", 1000 },
		{ "mb", 1000000 },   { "gb", 1000000000 }, { "tb", 1000000000000ull },
	};
	const char *p = s;
	uint64_t v;
	int r;

	if (!s || !out)
		return -EINVAL;
	r = digits(&p, &v);
	if (r < 0)
		return r;
	if (*p == '\0') {
		*out = v;
		return 0;
	}
	if (*p == ' ')
		p++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (eq_nocase(p, strlen(p), units[i].u)) {
			if (v > UINT64_MAX / units[i].m)
				return -ERANGE;
			*out = v * units[i].m;
			return 0;
		}
	return -EINVAL;
}

int spate_config_parse_duration(const char *s, uint64_t *out)
{
	static const struct {
		const char *u;
		uint64_t m;
	} units[] = {
		{ "ns", 1 },         { "us", NS_US },         { "\xc2\xb5s", NS_US },
		{ "ms", NS_MS },     { "s", NS_S },           { "m", 60 * NS_S },
		{ "h", 3600 * NS_S }, { "d", 86400 * NS_S },
	};
	const char *p = s;
	uint64_t total = 0, v;
	int r;

	if (!s || !out)
		return -EINVAL;
	r = parse_dec(s, &v);
	if (r != -EINVAL) {
		/* a bare number: only 0 needs no unit */
		if (r == 0 && v != 0)
			return -EINVAL;
		if (r == 0)
			*out = 0;
		return r;
	}
	do {
		uint64_t m = 0;
		const char *u;

		r = digits(&p, &v);
		if (r < 0)
			return r;
		u = p;
		while (*p && !is_digit(*p))
			p++;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strlen(units[i].u) == (size_t)(p - u) &&
			    memcmp(units[i].u, u, (size_t)(p - u)) == 0)
				m = units[i].m;
		if (!m)
			return -EINVAL;
		if (v > UINT64_MAX / m || v * m > DUR_MAX - total)
			return -ERANGE;
		total += v * m;
	} while (*p);
	*out = total;
	return 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

/* Exactly @p n digits at *p. */
static int fixed(const char **p, int n, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < n; i++) {
		if (!is_digit((*p)[i]))
			return -EINVAL;
		v = v * 10 + (unsigned)((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int spate_config_parse_timestamp(const char *s, uint64_t *out)
{
	static const unsigned dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned y, mo, d, h, mi, sec, oh = 0, om = 0;
	uint64_t frac = 0, ns;
	int sign = 0, r;
	const char *p = s;

	if (!s || !out)
		return -EINVAL;
	r = parse_dec(s, &ns);
	if (r != -EINVAL) {
		if (r == 0)
			*out = ns;
		return r;
	}
	if (fixed(&p, 4, &y) || *p++ != '-' || fixed(&p, 2, &mo) || *p++ != '-' ||
	    fixed(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
		return -EINVAL;
	p++;
	if (fixed(&p, 2, &h) || *p++ != ':' || fixed(&p, 2, &mi) || *p++ != ':' ||
	    fixed(&p, 2, &sec))
		return -EINVAL;
	if (*p == '.') {
		int n = 0;
		for (p++; is_digit(*p); p++, n++) {
			if (n == 9)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*p - '0');
		}
		if (n == 0)
			return -EINVAL;
		for (; n < 9; n++)
			frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (fixed(&p, 2, &oh) || *p++ != ':' || fixed(&p, 2, &om))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo < 1 || mo > 12 || d < 1 || d > dim[mo - 1] + (mo == 2 && leap) || h > 23 ||
	    mi > 59 || sec > 59 || oh > 23 || om > 59)
		return -EINVAL;
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
		    (int64_t)sign * (oh * 3600 + om * 60);
	if (t < 0 || (uint64_t)t > (UINT64_MAX - frac) / NS_S)
		return -ERANGE;
	*out = (uint64_t)t * NS_S + frac;
	return 0;
}

static int parse_bool(const char *s, size_t len, bool *out)
{
	static const char *const t[] = { "true", "yes", "on" }, *const f[] = { "false", "no", "off" };

	for (int i = 0; i < 3; i++) {
		if (eq_nocase(s, len, t[i])) {
			*out = true;
			return 0;
		}
		if (eq_nocase(s, len, f[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Defaults, construction, lookups                                          */
/* ------------------------------------------------------------------------ */

void spate_config_stream_defaults(struct spate_config_stream *s)
{
	if (!s)
		return;
	memset(s, 0, sizeof(*s));
	s->shards = 1;
	s->ring_size = SPATE_CONFIG_DEFAULT_RING_SIZE;
	s->max_record_size = 0; /* automatic */
	s->producers = SPATE_CONFIG_PRODUCERS_MULTI;
	s->huge_pages = SPATE_CONFIG_HUGE_AUTO;
	s->retention_ns = 24 * 3600 * NS_S;
	s->full = SPATE_CONFIG_FULL_WAIT;
	s->durability = SPATE_DURABILITY_OFF;
	s->durability_interval_ns = SPATE_CONFIG_DEFAULT_DURABILITY_INTERVAL_NS;
	s->segment_size = SPATE_CONFIG_DEFAULT_SEGMENT_SIZE;
	s->direct_io = true;
}

void spate_config_consumer_defaults(struct spate_config_consumer *k)
{
	if (!k)
		return;
	memset(k, 0, sizeof(*k));
	k->batch_size = 100;
	k->batch_bytes = 6 * MIB;
	k->batch_window_ns = 0;
	k->starting_position = SPATE_CONFIG_START_LATEST;
	k->max_retry_attempts = SPATE_CONFIG_RETRY_FOREVER;
	k->retry_backoff_ns = NS_MS;
	k->retry_backoff_max_ns = NS_S;
	k->bisect_on_error = false;
	k->max_record_age_ns = SPATE_CONFIG_NEVER;
	k->parallelization = 1;
	k->concurrency = 0; /* automatic */
	k->wait = SPATE_RING_WAIT_BLOCK;
	k->checkpoint_interval_ns = 0;
	k->timeout_ns = 60 * NS_S;
	k->memory_limit = 0;
	k->enabled = true;
}

static void default_state_dir(struct spate_config *c)
{
	snprintf(c->state_dir, sizeof(c->state_dir), "/var/lib/spate/%s", c->bus);
}

int spate_config_new_default(const char *bus, struct spate_config **out)
{
	struct spate_config *c;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!bus || !name_ok(bus, strlen(bus)))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	memcpy(c->bus, bus, strlen(bus) + 1);
	default_state_dir(c);
	*out = c;
	return 0;
}

int spate_config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = "127.0.0.1";
	size_t hl = 9;
	char hb[64], *end;
	unsigned long p;

	if (!s || !*s)
		return -EINVAL;
	colon = strrchr(s, ':');
	if (s[0] == '[') { /* [IPv6]:port */
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(rb - s - 1);
		colon = rb + 1;
	} else if (colon) {
		if (colon != s) {
			h = s;
			hl = (size_t)(colon - s);
		}
	} else {
		colon = s - 1; /* a bare port */
	}
	if (hl == 0 || hl >= sizeof(hb))
		return -EINVAL;
	memcpy(hb, h, hl);
	hb[hl] = '\0';
	if (!colon[1] || colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (*end || errno || p == 0 || p > 65535)
		return -EINVAL;
	unsigned char buf[16];
	if (strcmp(hb, "localhost") != 0 && inet_pton(AF_INET, hb, buf) != 1 &&
	    inet_pton(AF_INET6, hb, buf) != 1)
		return -EINVAL;
	if (host) {
		if (hostlen <= strlen(hb))
			return -EINVAL;
		snprintf(host, hostlen, "%s", strcmp(hb, "localhost") ? hb : "127.0.0.1");
	}
	if (port)
		*port = (uint16_t)p;
	return 0;
}

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

const struct spate_config_consumer *spate_config_find_consumer(const struct spate_config *c,
							       const char *name)
{
	if (!c || !name || !c->consumers)
		return NULL;
	for (uint32_t i = 0; i < c->n_consumers; i++)
		if (strncmp(c->consumers[i].name, name, sizeof(c->consumers[i].name)) == 0 &&
		    strlen(name) < sizeof(c->consumers[i].name))
			return &c->consumers[i];
	return NULL;
}

const char *spate_config_consumer_option(const struct spate_config_consumer *k, const char *key,
					 const char *dflt)
{
	if (!k || !key || !k->options)
		return dflt;
	for (uint32_t i = 0; i < k->n_options; i++)
		if (k->options[i].key && strcmp(k->options[i].key, key) == 0)
			return k->options[i].value;
	return dflt;
}

uint64_t spate_config_stream_max_record(const struct spate_config_stream *s)
{
	uint64_t cap;

	if (!s)
		return 0;
	if (s->max_record_size)
		return s->max_record_size;
	cap = s->ring_size / 2 > SPATE_CONFIG_RECORD_OVERHEAD
		      ? s->ring_size / 2 - SPATE_CONFIG_RECORD_OVERHEAD
		      : 0;
	return cap < SPATE_CONFIG_DEFAULT_MAX_RECORD ? cap : SPATE_CONFIG_DEFAULT_MAX_RECORD;
}

uint32_t spate_config_consumer_concurrency(const struct spate_config *c,
					   const struct spate_config_consumer *k)
{
	const struct spate_config_stream *s;
	uint64_t n;

	if (!k)
		return 0;
	if (k->concurrency)
		return k->concurrency;
	s = spate_config_find_stream(c, k->stream);
	if (!s)
		return 0;
	n = (uint64_t)s->shards * (k->parallelization ? k->parallelization : 1);
	if (n > SPATE_CONFIG_MAX_CONCURRENCY)
		n = SPATE_CONFIG_MAX_CONCURRENCY;
	return (uint32_t)n;
}

const char *spate_config_start_str(enum spate_config_start s)
{
	return (unsigned)s < sizeof(start_names) / sizeof(start_names[0]) - 1 ? start_names[s]
									       : "?";
}

int spate_config_add_stream(struct spate_config *c, const char *name,
			    struct spate_config_stream **out)
{
	struct spate_config_stream *a;

	if (out)
		*out = NULL;
	if (!c || !name || !name_ok(name, strlen(name)) || c->n_streams >= UINT32_MAX - 1)
		return -EINVAL;
	if (spate_config_find_stream(c, name))
		return -EEXIST;
	a = realloc(c->streams, ((size_t)c->n_streams + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	c->streams = a;
	a += c->n_streams++;
	spate_config_stream_defaults(a);
	memcpy(a->name, name, strlen(name) + 1);
	if (out)
		*out = a;
	return 0;
}

int spate_config_add_consumer(struct spate_config *c, const char *name, const char *stream,
			      const char *plugin, struct spate_config_consumer **out)
{
	struct spate_config_consumer *a;

	if (out)
		*out = NULL;
	if (!c || !name || !stream || !plugin || !name_ok(name, strlen(name)) ||
	    !name_ok(stream, strlen(stream)) || !plugin_ok(plugin, strlen(plugin)) ||
	    c->n_consumers >= UINT32_MAX - 1)
		return -EINVAL;
	if (spate_config_find_consumer(c, name))
		return -EEXIST;
	a = realloc(c->consumers, ((size_t)c->n_consumers + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	c->consumers = a;
	a += c->n_consumers++;
	spate_config_consumer_defaults(a);
	memcpy(a->name, name, strlen(name) + 1);
	memcpy(a->stream, stream, strlen(stream) + 1);
	memcpy(a->plugin, plugin, strlen(plugin) + 1);
	if (out)
		*out = a;
	return 0;
}

int spate_config_consumer_set_option(struct spate_config_consumer *k, const char *key,
				     const char *value)
{
	struct spate_config_opt *a;
	char *kc, *vc;

	if (!k || !key || !*key || !value)
		return -EINVAL;
	vc = strdup(value);
	if (!vc)
		return -ENOMEM;
	for (uint32_t i = 0; k->options && i < k->n_options; i++)
		if (k->options[i].key && strcmp(k->options[i].key, key) == 0) {
			free(k->options[i].value);
			k->options[i].value = vc;
			return 0;
		}
	kc = strdup(key);
	if (!kc)
		goto fail_key;
	a = realloc(k->options, ((size_t)k->n_options + 1) * sizeof(*a));
	if (!a)
		goto fail_arr;
	k->options = a;
	a[k->n_options].key = kc;
	a[k->n_options].value = vc;
	k->n_options++;
	return 0;

fail_arr:
	free(kc);
fail_key:
	free(vc);
	return -ENOMEM;
}

static void free_consumer(struct spate_config_consumer *k)
{
	for (uint32_t j = 0; k->options && j < k->n_options; j++) {
		free(k->options[j].key);
		free(k->options[j].value);
	}
	free(k->options);
	k->options = NULL;
	k->n_options = 0;
}

void spate_config_free(struct spate_config *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; c->consumers && i < c->n_consumers; i++)
		free_consumer(&c->consumers[i]);
	free(c->consumers);
	free(c->streams);
	free(c->placement.cores);
	free(c);
}

/* ------------------------------------------------------------------------ */
/* Validation (structs; shared by the parser)                               */
/* ------------------------------------------------------------------------ */

/* Lines of the keys met while parsing; absent for configs built in C. */
struct lines {
	uint32_t top[TF_N];
	uint32_t place[PF_N];
	uint32_t metrics[MF_N];
	uint32_t (*stream)[SF_N];
	uint32_t (*consumer)[CF_N];
};

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
	vreport(v->err, v->errlen, v->file, line, v->path, fmt, ap);
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
		len = arr_len(s, cap);
		if (len == cap)
			return verr(v, line, "expected %s, got a string that is not NUL-terminated",
				    expected(f, want, sizeof(want)));
		if (len == 0) {
			if (f->flags & F_NULL_OK)
				return 0;
			return verr(v, line, "missing; expected %s", expected(f, want, sizeof(want)));
		}
		if ((f->type == FT_NAME || f->type == FT_REF) ? name_ok(s, len)
		    : f->type == FT_PLUGIN                    ? plugin_ok(s, len)
							      : s[0] == '/')
			return 0;
		quote(s, len, a, sizeof(a));
		return verr(v, line, "expected %s, got %s", expected(f, want, sizeof(want)), a);
	}
	case FT_U32:
		u = *CAT(obj, f, uint32_t);
		if ((u == 0 && (f->flags & F_AUTO)) || (u >= f->lo && u <= f->hi))
			return 0;
		return verr(v, line, "expected %s, got %llu", expected(f, want, sizeof(want)),
			    (unsigned long long)u);
	case FT_RETRIES: {
		int32_t r = *CAT(obj, f, int32_t);
		if (r == -1 || (r >= 0 && (uint64_t)r >= f->lo && (uint64_t)r <= f->hi))
			return 0;
		return verr(v, line, "expected %s, got %d", expected(f, want, sizeof(want)), (int)r);
	}
	case FT_U64:
	case FT_TIME:
		return 0; /* every value is valid */
	case FT_SIZE:
		u = *CAT(obj, f, uint64_t);
		if ((u == 0 && (f->flags & F_AUTO)) ||
		    (u >= f->lo && u <= f->hi && (!(f->flags & F_POW2) || (u & (u - 1)) == 0)))
			return 0;
		return verr(v, line, "expected %s, got %s", expected(f, want, sizeof(want)),
			    fmt_size(u, a, sizeof(a)));
	case FT_DUR:
		u = *CAT(obj, f, uint64_t);
		if ((u == SPATE_CONFIG_NEVER && (f->flags & F_NEVER)) || (u >= f->lo && u <= f->hi))
			return 0;
		return verr(v, line, "expected %s, got %s", expected(f, want, sizeof(want)),
			    u == SPATE_CONFIG_NEVER ? "-1" : fmt_dur(u, a, sizeof(a)));
	case FT_BOOL:
		return 0;
	case FT_ENUM: {
		int e = *CAT(obj, f, int), n = 0;
		while (f->names[n])
			n++;
		if (e >= 0 && e < n)
			return 0;
		return verr(v, line, "expected %s, got the value %d", expected(f, want, sizeof(want)),
			    e);
	}
	case FT_ADDR:
		s = CAT(obj, f, char);
		len = arr_len(s, SPATE_CONFIG_ADDR_MAX);
		if (len == 0 || (len < SPATE_CONFIG_ADDR_MAX &&
				 spate_config_parse_listen(s, NULL, 0, NULL) == 0))
			return 0;
		quote(s, len, a, sizeof(a));
		return verr(v, line, "expected %s, got %s", expected(f, want, sizeof(want)), a);
	case FT_OPTIONS:
	case FT_CORES:
	case FT_STREAMS:
	case FT_CONSUMERS:
	case FT_PLACEMENT:
	case FT_METRICS:
		break;
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
		unsigned d = closeness(name, strlen(name), c->streams[i].name);
		if (d < best) {
			best = d;
			cand = c->streams[i].name;
		}
	}
	if (cand) {
		app(buf, len, &pos, "; did you mean \"%s\"?", cand);
		return;
	}
	app(buf, len, &pos, "; streams:");
	for (uint32_t i = 0; i < c->n_streams && i < 20; i++)
		app(buf, len, &pos, "%s %s", i ? "," : "", c->streams[i].name);
	if (c->n_streams > 20)
		app(buf, len, &pos, ", ...");
}

static int check_streams(struct vctx *v)
{
	const struct spate_config *c = v->c;
	size_t blen = arr_len(c->bus, sizeof(c->bus));
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
		r = check_fields(v, prefix, stream_fields, SF_N, s,
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
				    fmt_size(s->max_record_size, a, sizeof(a)), i,
				    fmt_size(s->ring_size, b, sizeof(b)), (unsigned long long)cap);
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
		r = check_fields(v, prefix, consumer_fields, CF_N, k, ln, k->line);
		if (r < 0)
			return r;
		r = check_options(v, i, k);
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
				    fmt_dur(k->retry_backoff_ns, a, sizeof(a)),
				    fmt_dur(k->retry_backoff_max_ns, b, sizeof(b)));
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
	r = check_fields(v, "placement", placement_fields, PF_N, p, v->ln ? v->ln->place : NULL, 0);
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

static int validate_impl(const struct spate_config *c, const struct lines *ln, const char *file,
			 char *err, size_t errlen)
{
	struct vctx v = { .c = c, .ln = ln, .file = file, .err = err, .errlen = errlen };
	int r;

	r = check_fields(&v, "", top_fields, TF_N, c, ln ? ln->top : NULL, 0);
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
	r = check_fields(&v, "metrics", metrics_fields, MF_N, &c->metrics, ln ? ln->metrics : NULL, 0);
	if (r < 0)
		return r;
	return 0;
}

int spate_config_validate(const struct spate_config *c, char *err, size_t errlen)
{
	if (!c)
		return report(err, errlen, NULL, 0, "no configuration");
	size_t sl = arr_len(c->source, sizeof(c->source));
	return validate_impl(c, NULL, sl && sl < sizeof(c->source) ? c->source : NULL, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* YAML walk                                                                */
/* ------------------------------------------------------------------------ */

struct pctx {
	yaml_document_t *doc;
	const char *file;
	char *err;
	size_t errlen;
	struct spate_config *c;
	const char *base_dir; /* with trailing '/', for relative plugin paths; or NULL */
	size_t base_len;
	struct lines ln;
	char path[256];
};

__attribute__((format(printf, 3, 4))) static int perr(struct pctx *x, unsigned line,
						       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(x->err, x->errlen, x->file, line, x->path, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int nomem(struct pctx *x)
{
	report(x->err, x->errlen, x->file, 0, "out of memory");
	return -ENOMEM;
}

static unsigned line_of(const yaml_node_t *n)
{
	return (unsigned)n->start_mark.line + 1;
}

/* Append ".key" (or "key" at the top) or "[i]" to the path; returns the old length. */
static size_t path_key(struct pctx *x, const char *key, size_t klen)
{
	size_t old = strlen(x->path), pos = old;

	if (old)
		app(x->path, sizeof(x->path), &pos, ".");
	for (size_t i = 0; i < klen && pos + 1 < sizeof(x->path); i++) {
		unsigned char ch = (unsigned char)key[i];
		x->path[pos++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	if (pos < sizeof(x->path))
		x->path[pos] = '\0';
	return old;
}

static size_t path_idx(struct pctx *x, size_t i)
{
	size_t old = strlen(x->path), pos = old;

	app(x->path, sizeof(x->path), &pos, "[%zu]", i);
	return old;
}

static void path_pop(struct pctx *x, size_t old)
{
	x->path[old] = '\0';
}

static const char *sval(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar (or an explicit !!null). */
static int is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE)
		return 0;
	if (n->tag && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0)
		return 1;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	s = sval(n);
	return n->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	       strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* "a list", "a mapping", "nothing", or the quoted text. */
static const char *got(const yaml_node_t *n, char *buf, size_t len)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return n->data.sequence.items.top == n->data.sequence.items.start ? "an empty list"
										   : "a list";
	if (n->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (n->type != YAML_SCALAR_NODE)
		return "nothing";
	if (is_null(n))
		return n->data.scalar.length ? "null" : "nothing";
	quote(sval(n), n->data.scalar.length, buf, len);
	return buf;
}

static int bad(struct pctx *x, const struct field *f, const yaml_node_t *n)
{
	char want[320], g[80];

	return perr(x, line_of(n), "expected %s, got %s", expected(f, want, sizeof(want)),
		    got(n, g, sizeof(g)));
}

static yaml_node_t *node(struct pctx *x, int i)
{
	return yaml_document_get_node(x->doc, i);
}

static int parse_map(struct pctx *x, const yaml_node_t *n, const struct field *tab, size_t nf,
		     void *obj, uint32_t *lines, const char *what);

static int conv_scalar(struct pctx *x, const struct field *f, const yaml_node_t *n, void *obj)
{
	const char *s;
	size_t len;
	uint64_t u = 0;
	int r;

	if (n->type != YAML_SCALAR_NODE || is_null(n))
		return bad(x, f, n);
	s = sval(n);
	len = n->data.scalar.length;
	if (strlen(s) != len)
		return bad(x, f, n); /* an embedded NUL */
	switch ((enum ftype)f->type) {
	case FT_NAME:
	case FT_REF:
		if (!name_ok(s, len))
			return bad(x, f, n);
		memcpy(AT(obj, f, char), s, len + 1);
		return 0;
	case FT_DIR:
		if (s[0] != '/' || len >= SPATE_CONFIG_PATH_MAX)
			return bad(x, f, n);
		memcpy(AT(obj, f, char), s, len + 1);
		return 0;
	case FT_PLUGIN:
		if (!plugin_ok(s, len))
			return bad(x, f, n);
		if (x->base_dir && s[0] != '/' && memchr(s, '/', len)) {
			if (x->base_len + len >= SPATE_CONFIG_PATH_MAX)
				return perr(x, line_of(n),
					    "%s relative to the configuration's directory is longer "
					    "than %u bytes",
					    s, SPATE_CONFIG_PATH_MAX - 1);
			memcpy(AT(obj, f, char), x->base_dir, x->base_len);
			memcpy(AT(obj, f, char) + x->base_len, s, len + 1);
			return 0;
		}
		memcpy(AT(obj, f, char), s, len + 1);
		return 0;
	case FT_U32:
		if (parse_dec(s, &u) < 0 || u < f->lo || u > f->hi)
			return bad(x, f, n);
		*AT(obj, f, uint32_t) = (uint32_t)u;
		return 0;
	case FT_RETRIES:
		if (strcmp(s, "-1") == 0) {
			*AT(obj, f, int32_t) = -1;
			return 0;
		}
		if (parse_dec(s, &u) < 0 || u < f->lo || u > f->hi)
			return bad(x, f, n);
		*AT(obj, f, int32_t) = (int32_t)u;
		return 0;
	case FT_U64:
		if (parse_dec(s, &u) < 0 || u < f->lo || u > f->hi)
			return bad(x, f, n);
		*AT(obj, f, uint64_t) = u;
		return 0;
	case FT_SIZE:
		if (spate_config_parse_size(s, &u) < 0 || u < f->lo || u > f->hi ||
		    ((f->flags & F_POW2) && (u & (u - 1))))
			return bad(x, f, n);
		*AT(obj, f, uint64_t) = u;
		return 0;
	case FT_DUR:
		if ((f->flags & F_NEVER) && strcmp(s, "-1") == 0) {
			*AT(obj, f, uint64_t) = SPATE_CONFIG_NEVER;
			return 0;
		}
		if (spate_config_parse_duration(s, &u) < 0 || u < f->lo || u > f->hi)
			return bad(x, f, n);
		*AT(obj, f, uint64_t) = u;
		return 0;
	case FT_TIME:
		if (spate_config_parse_timestamp(s, &u) < 0)
			return bad(x, f, n);
		*AT(obj, f, uint64_t) = u;
		return 0;
	case FT_BOOL:
		r = parse_bool(s, len, AT(obj, f, bool));
		return r < 0 ? bad(x, f, n) : 0;
	case FT_ENUM:
		for (int i = 0; f->names[i]; i++)
			if (eq_nocase(s, len, f->names[i])) {
				*AT(obj, f, int) = i;
				return 0;
			}
		return bad(x, f, n);
	case FT_ADDR:
		if (len >= SPATE_CONFIG_ADDR_MAX || spate_config_parse_listen(s, NULL, 0, NULL) < 0)
			return bad(x, f, n);
		memcpy(AT(obj, f, char), s, len + 1);
		return 0;
	case FT_OPTIONS:
	case FT_CORES:
	case FT_STREAMS:
	case FT_CONSUMERS:
	case FT_PLACEMENT:
	case FT_METRICS:
		break;
	}
	return bad(x, f, n);
}

static int parse_options(struct pctx *x, const struct field *f, const yaml_node_t *n,
			 struct spate_config_consumer *k)
{
	const yaml_node_pair_t *p;
	size_t cnt;

	if (n->type != YAML_MAPPING_NODE)
		return bad(x, f, n);
	cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (cnt == 0)
		return 0;
	k->options = calloc(cnt, sizeof(*k->options));
	if (!k->options)
		return nomem(x);
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		const yaml_node_t *kn = node(x, p->key), *vn = node(x, p->value);
		char g[80];
		size_t old;

		if (!kn || !vn)
			continue;
		if (kn->type != YAML_SCALAR_NODE || is_null(kn) ||
		    strlen(sval(kn)) != kn->data.scalar.length)
			return perr(x, line_of(kn), "expected an option name, got %s",
				    got(kn, g, sizeof(g)));
		old = path_key(x, sval(kn), kn->data.scalar.length);
		for (uint32_t j = 0; j < k->n_options; j++)
			if (strcmp(k->options[j].key, sval(kn)) == 0)
				return perr(x, line_of(kn), "duplicate key");
		if (vn->type != YAML_SCALAR_NODE || strlen(sval(vn)) != vn->data.scalar.length)
			return perr(x, line_of(vn), "expected a scalar value (a string or number), got %s",
				    got(vn, g, sizeof(g)));
		struct spate_config_opt *o = &k->options[k->n_options];
		o->key = strdup(sval(kn));
		o->value = strdup(is_null(vn) ? "" : sval(vn));
		if (!o->key || !o->value) {
			free(o->key);
			free(o->value);
			o->key = o->value = NULL;
			return nomem(x);
		}
		k->n_options++;
		path_pop(x, old);
	}
	return 0;
}

/* One entry of placement.cores: "N" or "N-M", or a comma-separated list of those. */
static int add_cores(struct pctx *x, const struct field *f, const yaml_node_t *n, uint8_t *seen,
		     size_t *cap)
{
	struct spate_config_placement *pl = &x->c->placement;
	const char *p;

	if (n->type != YAML_SCALAR_NODE || is_null(n) || strlen(sval(n)) != n->data.scalar.length)
		return bad(x, f, n);
	p = sval(n);
	for (;;) {
		uint64_t a, b;
		while (*p == ' ')
			p++;
		if (digits(&p, &a) < 0)
			return bad(x, f, n);
		b = a;
		if (*p == '-') {
			p++;
			if (digits(&p, &b) < 0)
				return bad(x, f, n);
		}
		while (*p == ' ')
			p++;
		if (b < a || b >= SPATE_CONFIG_MAX_CPUS)
			return bad(x, f, n);
		for (uint64_t cpu = a; cpu <= b; cpu++) {
			if (seen[cpu / 8] & (1u << (cpu % 8)))
				return perr(x, line_of(n), "CPU %llu is listed twice",
					    (unsigned long long)cpu);
			seen[cpu / 8] |= (uint8_t)(1u << (cpu % 8));
			if (pl->n_cores == *cap) {
				size_t nc = *cap ? *cap * 2 : 16;
				uint32_t *arr = realloc(pl->cores, nc * sizeof(*arr));
				if (!arr)
					return nomem(x);
				pl->cores = arr;
				*cap = nc;
			}
			pl->cores[pl->n_cores++] = (uint32_t)cpu;
		}
		if (*p == '\0')
			return 0;
		if (*p++ != ',')
			return bad(x, f, n);
	}
}

static int parse_cores(struct pctx *x, const struct field *f, const yaml_node_t *n)
{
	uint8_t seen[SPATE_CONFIG_MAX_CPUS / 8];
	size_t cap = 0;
	int r;

	memset(seen, 0, sizeof(seen));
	if (n->type == YAML_SCALAR_NODE)
		return add_cores(x, f, n, seen, &cap);
	if (n->type != YAML_SEQUENCE_NODE)
		return bad(x, f, n);
	for (const yaml_node_item_t *it = n->data.sequence.items.start;
	     it < n->data.sequence.items.top; it++) {
		const yaml_node_t *e = node(x, *it);
		size_t old = path_idx(x, (size_t)(it - n->data.sequence.items.start));
		if (!e)
			continue;
		r = add_cores(x, f, e, seen, &cap);
		if (r < 0)
			return r;
		path_pop(x, old);
	}
	return 0;
}

static int parse_list(struct pctx *x, const struct field *f, const yaml_node_t *n)
{
	int is_streams = f->type == FT_STREAMS;
	size_t cnt, esz = is_streams ? sizeof(struct spate_config_stream)
				     : sizeof(struct spate_config_consumer);
	size_t lsz = is_streams ? sizeof(*x->ln.stream) : sizeof(*x->ln.consumer);
	void *arr, *lines;
	char what[700];

	if (n->type != YAML_SEQUENCE_NODE)
		return bad(x, f, n);
	cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (cnt == 0) {
		if (is_streams)
			return bad(x, f, n);
		return 0;
	}
	if (cnt >= UINT32_MAX)
		return perr(x, line_of(n), "too many entries");
	arr = calloc(cnt, esz);
	lines = calloc(cnt, lsz);
	if (!arr || !lines) {
		free(arr);
		free(lines);
		return nomem(x);
	}
	if (is_streams) {
		x->c->streams = arr;
		x->ln.stream = lines;
	} else {
		x->c->consumers = arr;
		x->ln.consumer = lines;
	}
	snprintf(what, sizeof(what), "a %s (a mapping with keys ", is_streams ? "stream" : "consumer");
	key_list(is_streams ? stream_fields : consumer_fields, is_streams ? SF_N : CF_N,
		 what + strlen(what), sizeof(what) - strlen(what) - 1);
	strcat(what, ")");
	for (size_t i = 0; i < cnt; i++) {
		const yaml_node_t *e = node(x, n->data.sequence.items.start[i]);
		size_t old = path_idx(x, i);
		int r;

		if (!e)
			return perr(x, line_of(n), "unreadable entry");
		if (is_streams) {
			struct spate_config_stream *s = &x->c->streams[i];
			spate_config_stream_defaults(s);
			s->line = line_of(e);
			x->c->n_streams++;
			r = parse_map(x, e, stream_fields, SF_N, s, x->ln.stream[i], what);
		} else {
			struct spate_config_consumer *k = &x->c->consumers[i];
			spate_config_consumer_defaults(k);
			k->line = line_of(e);
			x->c->n_consumers++;
			r = parse_map(x, e, consumer_fields, CF_N, k, x->ln.consumer[i], what);
		}
		if (r < 0)
			return r;
		path_pop(x, old);
	}
	return 0;
}

static int conv(struct pctx *x, const struct field *f, const yaml_node_t *n, void *obj)
{
	if ((f->flags & F_NULL_OK) && is_null(n))
		return 0;
	switch ((enum ftype)f->type) {
	case FT_OPTIONS:
		return parse_options(x, f, n, obj);
	case FT_CORES:
		return parse_cores(x, f, n);
	case FT_STREAMS:
	case FT_CONSUMERS:
		return parse_list(x, f, n);
	case FT_PLACEMENT:
		return parse_map(x, n, placement_fields, PF_N, &x->c->placement, x->ln.place,
				 "a mapping with keys cores, busy_threads_max, persist_threads");
	case FT_METRICS:
		return parse_map(x, n, metrics_fields, MF_N, &x->c->metrics, x->ln.metrics,
				 "a mapping with keys listen, counters");
	default:
		return conv_scalar(x, f, n, obj);
	}
}

static int unknown_key(struct pctx *x, const yaml_node_t *k, const struct field *tab, size_t nf)
{
	const char *s = sval(k), *best = NULL;
	size_t len = k->data.scalar.length;
	unsigned bd = 99;
	char keys[600];

	for (size_t i = 0; i < nf; i++) {
		unsigned d = closeness(s, len, tab[i].key);
		if (d < bd) {
			bd = d;
			best = tab[i].key;
		}
	}
	if (best)
		return perr(x, line_of(k), "unknown key; did you mean \"%s\"?", best);
	key_list(tab, nf, keys, sizeof(keys));
	return perr(x, line_of(k), "unknown key; valid keys: %s", keys);
}

static int parse_map(struct pctx *x, const yaml_node_t *n, const struct field *tab, size_t nf,
		     void *obj, uint32_t *lines, const char *what)
{
	char g[80];

	if (n->type != YAML_MAPPING_NODE)
		return perr(x, line_of(n), "expected %s, got %s", what, got(n, g, sizeof(g)));
	for (const yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
		size_t i, old, len;
		int r;

		if (!k || !v)
			continue;
		if (k->type != YAML_SCALAR_NODE || is_null(k))
			return perr(x, line_of(k), "expected a key, got %s", got(k, g, sizeof(g)));
		len = k->data.scalar.length;
		for (i = 0; i < nf; i++)
			if (strlen(tab[i].key) == len && memcmp(tab[i].key, sval(k), len) == 0)
				break;
		old = path_key(x, sval(k), len);
		if (i == nf)
			return unknown_key(x, k, tab, nf);
		if (lines[i])
			return perr(x, line_of(k), "duplicate key (first at line %u)", lines[i]);
		lines[i] = line_of(k);
		r = conv(x, &tab[i], v, obj);
		if (r < 0)
			return r;
		path_pop(x, old);
	}
	for (size_t i = 0; i < nf; i++)
		if ((tab[i].flags & F_REQ) && !lines[i]) {
			char want[320];
			path_key(x, tab[i].key, strlen(tab[i].key));
			return perr(x, line_of(n), "missing; expected %s",
				    expected(&tab[i], want, sizeof(want)));
		}
	return 0;
}

/* Line of byte @p off of the text (reader errors carry an offset, not a mark). */
static unsigned line_at(const char *text, size_t len, size_t off)
{
	unsigned line = 1;

	for (size_t i = 0; i < off && i < len; i++)
		line += text[i] == '\n';
	return line;
}

static int syntax_error(struct pctx *x, yaml_parser_t *p, const char *text, size_t len)
{
	char ctx[200] = "";

	if (p->error == YAML_MEMORY_ERROR)
		return nomem(x);
	if (p->error == YAML_READER_ERROR)
		return report(x->err, x->errlen, x->file, line_at(text, len, p->problem_offset),
			      "YAML syntax error at byte %zu: %s", p->problem_offset,
			      p->problem ? p->problem : "unreadable input");
	if (p->context)
		snprintf(ctx, sizeof(ctx), " (%s at line %zu, column %zu)", p->context,
			 p->context_mark.line + 1, p->context_mark.column + 1);
	return report(x->err, x->errlen, x->file, (unsigned)p->problem_mark.line + 1,
		      "YAML syntax error at column %zu: %s%s", p->problem_mark.column + 1,
		      p->problem ? p->problem : "invalid YAML", ctx);
}

/* Resolve the automatic values, after validation. */
static void resolve(struct spate_config *c)
{
	for (uint32_t i = 0; i < c->n_streams; i++)
		c->streams[i].max_record_size = spate_config_stream_max_record(&c->streams[i]);
	for (uint32_t i = 0; i < c->n_consumers; i++)
		c->consumers[i].concurrency = spate_config_consumer_concurrency(c, &c->consumers[i]);
	if (!c->placement.busy_threads_max)
		c->placement.busy_threads_max = c->placement.n_cores;
	if (!c->placement.persist_threads)
		c->placement.persist_threads = 1;
}

static int parse_impl(const char *text, size_t len, const char *file, const char *base_dir,
		      struct spate_config **out, char *err, size_t errlen)
{
	struct pctx x = { .file = file, .err = err, .errlen = errlen, .base_dir = base_dir };
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	const yaml_node_t *root;
	char g[80];
	int r;

	if (base_dir)
		x.base_len = strlen(base_dir);
	x.c = calloc(1, sizeof(*x.c));
	if (!x.c)
		return nomem(&x);
	snprintf(x.c->source, sizeof(x.c->source), "%s", file);
	if (!yaml_parser_initialize(&parser)) {
		r = nomem(&x);
		goto fail_cfg;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		r = syntax_error(&x, &parser, text, len);
		goto fail_parser;
	}
	x.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	if (!root) {
		r = report(err, errlen, file, 1,
			   "empty configuration; expected a mapping with keys bus, streams "
			   "(and optionally state_dir, consumers, placement)");
		goto fail_doc;
	}
	/* Only one document: a second one is most likely a mistake. */
	if (!yaml_parser_load(&parser, &extra)) {
		r = syntax_error(&x, &parser, text, len);
		goto fail_doc;
	}
	if (yaml_document_get_root_node(&extra)) {
		r = report(err, errlen, file, (unsigned)extra.start_mark.line + 1,
			   "a second YAML document; expected only one");
		yaml_document_delete(&extra);
		goto fail_doc;
	}
	yaml_document_delete(&extra);
	if (root->type != YAML_MAPPING_NODE) {
		r = report(err, errlen, file, line_of(root),
			   "expected a mapping with keys bus, streams (and optionally state_dir, "
			   "consumers, placement) at the top, got %s",
			   got(root, g, sizeof(g)));
		goto fail_doc;
	}
	r = parse_map(&x, root, top_fields, TF_N, x.c, x.ln.top, "a mapping");
	if (r < 0)
		goto fail_doc;
	if (!x.c->state_dir[0])
		default_state_dir(x.c);
	r = validate_impl(x.c, &x.ln, file, err, errlen);
	if (r < 0)
		goto fail_doc;
	resolve(x.c);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	free(x.ln.stream);
	free(x.ln.consumer);
	*out = x.c;
	return 0;

fail_doc:
	yaml_document_delete(&doc);
fail_parser:
	yaml_parser_delete(&parser);
fail_cfg:
	free(x.ln.stream);
	free(x.ln.consumer);
	spate_config_free(x.c);
	return r;
}

int spate_config_parse(const char *text, size_t len, const char *name_for_errors,
		       struct spate_config **out, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!out)
		return report(err, errlen, name_for_errors, 0, "no place for the result");
	*out = NULL;
	if (!text && len)
		return report(err, errlen, name_for_errors, 0, "no text");
	return parse_impl(text ? text : "", len, name_for_errors ? name_for_errors : "<config>",
			  NULL, out, err, errlen);
}

int spate_config_load(const char *path, struct spate_config **out, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL, *base = NULL;
	size_t len = 0, cap;
	int fd, r;

	if (err && errlen)
		err[0] = '\0';
	if (!out || !path || !*path)
		return report(err, errlen, path, 0, "no path or no place for the result");
	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		report(err, errlen, path, 0, "cannot open: %s", strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		report(err, errlen, path, 0, "cannot stat: %s", strerror(-r));
		goto fail_fd;
	}
	if (S_ISDIR(st.st_mode)) {
		r = -EISDIR;
		report(err, errlen, path, 0, "is a directory; expected a YAML file");
		goto fail_fd;
	}
	if ((uint64_t)st.st_size > MAX_FILE) {
		r = -EFBIG;
		report(err, errlen, path, 0, "is %lld bytes; a configuration is at most %llu",
		       (long long)st.st_size, (unsigned long long)MAX_FILE);
		goto fail_fd;
	}
	cap = (size_t)st.st_size + 1;
	if (cap < 4096)
		cap = 4096;
	buf = malloc(cap);
	if (!buf) {
		r = -ENOMEM;
		report(err, errlen, path, 0, "out of memory");
		goto fail_fd;
	}
	for (;;) {
		ssize_t n;
		if (len == cap) {
			char *nb;
			if (cap >= MAX_FILE) {
				r = -EFBIG;
				report(err, errlen, path, 0, "a configuration is at most %llu bytes",
				       (unsigned long long)MAX_FILE);
				goto fail_buf;
			}
			nb = realloc(buf, cap * 2);
			if (!nb) {
				r = -ENOMEM;
				report(err, errlen, path, 0, "out of memory");
				goto fail_buf;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			report(err, errlen, path, 0, "cannot read: %s", strerror(-r));
			goto fail_buf;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	fd = -1;
	const char *slash = strrchr(path, '/');
	if (slash) {
		base = strndup(path, (size_t)(slash - path) + 1);
		if (!base) {
			r = -ENOMEM;
			report(err, errlen, path, 0, "out of memory");
			goto fail_buf;
		}
	}
	r = parse_impl(buf, len, path, base, out, err, errlen);
	free(base);
fail_buf:
	free(buf);
fail_fd:
	if (fd >= 0)
		close(fd);
	return r;
}

int spate_config_stream_log_dir(const struct spate_config *c, const struct spate_config_stream *s,
				uint32_t shard, char *buf, size_t len)
{
	int n;

	if (!c || !s || !buf || !len)
		return -EINVAL;
	if (s->log_dir[0])
		n = snprintf(buf, len, "%s/%04u", s->log_dir, shard);
	else
		n = snprintf(buf, len, "%s/log/%s/%04u", c->state_dir, s->name, shard);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}
