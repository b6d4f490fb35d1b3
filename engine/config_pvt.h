/* SPDX-License-Identifier: MIT */
/*
 * config_pvt.h - what the parts of the configuration code share (config.c:
 * the public API and the YAML walk; config_parse.c: text helpers, messages
 * and the scalar parsers; config_check.c: the schema tables and the checks
 * of a whole struct spate_config). Internal: never installed, included only
 * by engine/config*.c. The parts import each other one way only (config ->
 * config_check -> config_parse), as tests/include_cycles.sh requires.
 */
#ifndef SPATE_CONFIG_PVT_H
#define SPATE_CONFIG_PVT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spate/config.h"

#define KIB (1024ull)
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define NS_US 1000ull
#define NS_MS 1000000ull
#define NS_S 1000000000ull
#define DUR_MAX (UINT64_MAX - 1) /* UINT64_MAX is "never" */
#define MAX_FILE (64ull * MIB)

/* ------------------------------------------------------------------------ */
/* Schema (the tables are in config_check.c)                                    */
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
	FT_SOURCES,    /* sources: name, type, stream + any keys (a node tree) */
	FT_FUNCTION,   /* consumer function: a mapping (spate_cfg_function_fields) */
	FT_ARGV,       /* char ** at off, its uint32_t count at offset lo: a list of
			  non-empty strings (a scalar is a list of one) */
	FT_STR,        /* char[hi + 1], non-empty, printable */
	FT_CWD,        /* char[PATH_MAX], a directory; relative to the file's */
	FT_ENV,        /* function env: a mapping of NAME to scalar */
	FT_API,        /* the api: block (engine/api/ serves it) */
	FT_REGION,     /* char[SPATE_CONFIG_REGION_MAX + 1], [a-z0-9-] */
	FT_AUTH,       /* api.auth: the scalar none, or a mapping with keys */
	FT_KEYS,       /* api.auth.keys: a list of {id, secret_file} */
	FT_KEYID,      /* char[SPATE_CONFIG_KEY_ID_MAX + 1], [A-Za-z0-9_-] */
	FT_FILE,       /* char[PATH_MAX]: a file path; relative to the config's directory */
	FT_TLS,        /* api.tls: {cert, key} */
	FT_CREATE,     /* api.create: the keys of a stream but name, shards, log_dir */
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

enum { TF_BUS, TF_STATE_DIR, TF_STREAMS, TF_CONSUMERS, TF_PLACEMENT, TF_METRICS, TF_SOURCES,
       TF_API, TF_N };
enum { SF_NAME, SF_SHARDS, SF_RING_SIZE, SF_MAX_RECORD, SF_PRODUCERS, SF_HUGE, SF_RETENTION,
       SF_FULL, SF_DURABILITY, SF_DUR_INTERVAL, SF_SEGMENT, SF_RETENTION_BYTES, SF_LOG_DIR, SF_DIRECT_IO, SF_N };
enum { CF_NAME, CF_STREAM, CF_PLUGIN, CF_OPTIONS, CF_BATCH_SIZE, CF_BATCH_BYTES, CF_BATCH_WINDOW,
       CF_START, CF_START_SEQ, CF_START_TS, CF_RETRIES, CF_BACKOFF, CF_BACKOFF_MAX, CF_BISECT,
       CF_MAX_AGE, CF_ON_FAILURE, CF_PARALLEL, CF_CONCURRENCY, CF_WAIT, CF_CKPT, CF_ENABLED,
       CF_TIMEOUT, CF_MEMORY, CF_ISOLATION, CF_FUNCTION, CF_N };
enum { FN_COMMAND, FN_HANDLER, FN_RUNTIME, FN_CWD, FN_ENV, FN_TIMEOUT, FN_MEMORY, FN_CONCURRENCY,
       FN_N };
enum { PF_CORES, PF_BUSY, PF_PERSIST, PF_N };
enum { MF_LISTEN, MF_COUNTERS, MF_N };
/* api: its keys, api.auth's, one api.auth.keys entry's, api.tls's. */
enum { AF_LISTEN, AF_REGION, AF_AUTH, AF_TLS, AF_THREADS, AF_CREATE, AF_N };
enum { UF_KEYS, UF_N };
enum { EF_ID, EF_SECRET, EF_N };
enum { LF_CERT, LF_KEY, LF_N };
#define AT(obj, f, T) ((T *)(void *)((char *)(obj) + (f)->off))
#define CAT(obj, f, T) ((const T *)(const void *)((const char *)(obj) + (f)->off))
/* Lines of the keys met while parsing; absent for configs built in C. */
struct lines {
	uint32_t top[TF_N];
	uint32_t place[PF_N];
	uint32_t metrics[MF_N];
	uint32_t api[AF_N];
	uint32_t auth[UF_N];
	uint32_t tls[LF_N];
	uint32_t create[SF_N]; /* api.create: stream keys */
	uint32_t key[SPATE_CONFIG_API_MAX_KEYS][EF_N];
	uint32_t (*stream)[SF_N];
	uint32_t (*consumer)[CF_N];
	uint32_t (*function)[FN_N]; /* per consumer, its function's keys */
};


extern const struct field spate_cfg_top_fields[TF_N];
extern const struct field spate_cfg_stream_fields[SF_N];
extern const struct field spate_cfg_consumer_fields[CF_N];
extern const struct field spate_cfg_placement_fields[PF_N];
extern const struct field spate_cfg_metrics_fields[MF_N];
extern const struct field spate_cfg_function_fields[FN_N];
extern const struct field spate_cfg_api_fields[AF_N];
extern const struct field spate_cfg_auth_fields[UF_N];
extern const struct field spate_cfg_key_fields[EF_N];
extern const struct field spate_cfg_tls_fields[LF_N];

/* ------------------------------------------------------------------------ */
/* config_parse.c: text helpers, messages, scalar parsers                   */
/* ------------------------------------------------------------------------ */

__attribute__((format(printf, 4, 5))) void spate_cfg_app(char *b, size_t len, size_t *pos,
							  const char *fmt, ...);
int spate_cfg_eq_nocase(const char *a, size_t la, const char *b);
int spate_cfg_name_ok(const char *s, size_t len);
int spate_cfg_plugin_ok(const char *s, size_t len);
size_t spate_cfg_arr_len(const char *s, size_t cap);
const char *spate_cfg_fmt_size(uint64_t v, char *buf, size_t len);
const char *spate_cfg_fmt_dur(uint64_t ns, char *buf, size_t len);
void spate_cfg_quote(const char *s, size_t len, char *buf, size_t blen);
unsigned spate_cfg_closeness(const char *s, size_t len, const char *cand);
__attribute__((format(printf, 6, 0))) int spate_cfg_vreport(char *err, size_t errlen,
							     const char *file, unsigned line,
							     const char *path, const char *fmt,
							     va_list ap);
__attribute__((format(printf, 5, 6))) int spate_cfg_report(char *err, size_t errlen,
							    const char *file, unsigned line,
							    const char *fmt, ...);
const char *spate_cfg_expected(const struct field *f, char *buf, size_t len);
void spate_cfg_key_list(const struct field *tab, size_t nf, char *buf, size_t len);
int spate_cfg_digits(const char **p, uint64_t *v);
int spate_cfg_parse_dec(const char *s, uint64_t *out);
int spate_cfg_parse_bool(const char *s, size_t len, bool *out);
/* api.region and api.auth.keys[].id syntax (config_check.c). */
int spate_cfg_region_ok(const char *s, size_t len);
int spate_cfg_key_id_ok(const char *s, size_t len);

/* ------------------------------------------------------------------------ */
/* config_source.c: sources' node trees                                     */
/* ------------------------------------------------------------------------ */

/* Free the children, key, value and path of @p n (not @p n itself). */
void spate_cfg_node_clear(struct spate_config_node *n);
/* Checks of the sources of @p c (names, stream references, node trees);
 * messages carry @p file when not NULL. */
int spate_cfg_check_sources(const struct spate_config *c, const char *file, char *err,
			    size_t errlen);

/* ------------------------------------------------------------------------ */
/* config_check.c: cross-field validation                                   */
/* ------------------------------------------------------------------------ */

/* The checks of spate_config_validate(); @p ln and @p file may be NULL. */
int spate_cfg_validate(const struct spate_config *c, const struct lines *ln, const char *file,
		       char *err, size_t errlen);

#endif
