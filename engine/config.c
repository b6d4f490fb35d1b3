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
 * Sources (`sources:`) are the one open schema: the core reads name, type
 * and stream, and copies every other key as a tree of nodes with their
 * lines and paths (struct spate_config_node), for the source type's own
 * check (spate/sources.h; config_source.c has the accessors).
 *
 * Trade-offs and limits. The first error stops the parse: one precise
 * message rather than a cascade. YAML types are not inferred from plain
 * scalars: each key says how to read its text, so `name: 123` is the name
 * "123" and `shards: "4"` is 4. Merge keys (<<) are not supported (they are
 * reported as unknown keys); anchors and aliases work, since the walk is
 * bounded by the schema's depth, not by the document's. Only the first YAML
 * document of the stream is allowed. Files are read whole, up to 64 MiB.
 *
 * Layout. This file holds the public API (defaults, construction, lookups)
 * and the YAML walk; the schema tables and the cross-field checks are in
 * config_check.c, the text helpers, messages and scalar parsers in
 * config_parse.c, what they share in config_pvt.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "spate/config.h"
#include "spate/shm.h"

#include "config_pvt.h"

_Static_assert(SPATE_CONFIG_REGION_NAME_MAX == SPATE_SHM_NAME_MAX,
	       "a stream's region name is a shm name");
_Static_assert(sizeof(enum spate_config_producers) == sizeof(int) &&
		       sizeof(enum spate_config_huge) == sizeof(int) &&
		       sizeof(enum spate_config_full) == sizeof(int) &&
		       sizeof(enum spate_config_start) == sizeof(int) &&
		       sizeof(enum spate_ring_wait) == sizeof(int),
	       "enums are stored as int");

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
	if (!bus || !spate_cfg_name_ok(bus, strlen(bus)))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	memcpy(c->bus, bus, strlen(bus) + 1);
	default_state_dir(c);
	*out = c;
	return 0;
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

int spate_config_add_stream(struct spate_config *c, const char *name,
			    struct spate_config_stream **out)
{
	struct spate_config_stream *a;

	if (out)
		*out = NULL;
	if (!c || !name || !spate_cfg_name_ok(name, strlen(name)) || c->n_streams >= UINT32_MAX - 1)
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
	if (!c || !name || !stream || !spate_cfg_name_ok(name, strlen(name)) ||
	    !spate_cfg_name_ok(stream, strlen(stream)) ||
	    (plugin && !spate_cfg_plugin_ok(plugin, strlen(plugin))) ||
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
	if (plugin) /* NULL: a function (spate_config_consumer_function) */
		memcpy(a->plugin, plugin, strlen(plugin) + 1);
	if (out)
		*out = a;
	return 0;
}

/* Set @p key to a copy of @p value in the array *arr of *n options (a
 * consumer's options, a function's env): replace it, or append it. */
static int opt_set(struct spate_config_opt **arr, uint32_t *n, const char *key, const char *value)
{
	struct spate_config_opt *a;
	char *kc, *vc;

	if (!key || !*key || !value)
		return -EINVAL;
	vc = strdup(value);
	if (!vc)
		return -ENOMEM;
	for (uint32_t i = 0; *arr && i < *n; i++)
		if ((*arr)[i].key && strcmp((*arr)[i].key, key) == 0) {
			free((*arr)[i].value);
			(*arr)[i].value = vc;
			return 0;
		}
	kc = strdup(key);
	if (!kc)
		goto fail_key;
	a = realloc(*arr, ((size_t)*n + 1) * sizeof(*a));
	if (!a)
		goto fail_arr;
	*arr = a;
	a[*n].key = kc;
	a[*n].value = vc;
	(*n)++;
	return 0;

fail_arr:
	free(kc);
fail_key:
	free(vc);
	return -ENOMEM;
}

int spate_config_consumer_set_option(struct spate_config_consumer *k, const char *key,
				     const char *value)
{
	if (!k)
		return -EINVAL;
	return opt_set(&k->options, &k->n_options, key, value);
}

const struct spate_config_source *spate_config_find_source(const struct spate_config *c,
							   const char *name)
{
	if (!c || !name || !c->sources)
		return NULL;
	for (uint32_t i = 0; i < c->n_sources; i++)
		if (strcmp(c->sources[i].name, name) == 0)
			return &c->sources[i];
	return NULL;
}

int spate_config_add_source(struct spate_config *c, const char *name, const char *type,
			    const char *stream, struct spate_config_source **out)
{
	struct spate_config_source *a;
	char path[32];

	if (out)
		*out = NULL;
	if (!c || !name || !type || !stream || !spate_cfg_name_ok(name, strlen(name)) ||
	    !spate_cfg_name_ok(type, strlen(type)) || !spate_cfg_name_ok(stream, strlen(stream)) ||
	    c->n_sources >= UINT32_MAX - 1)
		return -EINVAL;
	if (spate_config_find_source(c, name))
		return -EEXIST;
	snprintf(path, sizeof(path), "sources[%u]", c->n_sources);
	char *pc = strdup(path);
	if (!pc)
		return -ENOMEM;
	a = realloc(c->sources, ((size_t)c->n_sources + 1) * sizeof(*a));
	if (!a) {
		free(pc);
		return -ENOMEM;
	}
	c->sources = a;
	a += c->n_sources;
	memset(a, 0, sizeof(*a));
	memcpy(a->name, name, strlen(name) + 1);
	memcpy(a->type, type, strlen(type) + 1);
	memcpy(a->stream, stream, strlen(stream) + 1);
	a->keys.kind = SPATE_CONFIG_NODE_MAP;
	a->keys.path = pc;
	a->index = c->n_sources++;
	a->file = c->source;
	if (out)
		*out = a;
	return 0;
}

int spate_config_source_set(struct spate_config_source *s, const char *key, const char *value)
{
	struct spate_config_node *m, *a, *n;
	char *kc, *vc, *pc;
	size_t plen;

	if (!s || !key || !*key || !value || !strcmp(key, "name") || !strcmp(key, "type") ||
	    !strcmp(key, "stream") || s->keys.kind != SPATE_CONFIG_NODE_MAP)
		return -EINVAL;
	m = &s->keys;
	plen = strlen(m->path ? m->path : "") + 1 + strlen(key) + 1;
	kc = strdup(key);
	vc = strdup(value);
	pc = malloc(plen);
	if (!kc || !vc || !pc)
		goto fail;
	snprintf(pc, plen, "%s.%s", m->path ? m->path : "", key);
	for (uint32_t i = 0; i < m->n_items; i++)
		if (m->items[i].key && !strcmp(m->items[i].key, key)) {
			spate_cfg_node_clear(&m->items[i]);
			n = &m->items[i];
			goto fill;
		}
	a = realloc(m->items, ((size_t)m->n_items + 1) * sizeof(*a));
	if (!a)
		goto fail;
	m->items = a;
	n = &a[m->n_items++];
fill:
	memset(n, 0, sizeof(*n));
	n->kind = SPATE_CONFIG_NODE_SCALAR;
	n->key = kc;
	n->value = vc;
	n->path = pc;
	return 0;
fail:
	free(kc);
	free(vc);
	free(pc);
	return -ENOMEM;
}

static void free_argv(char **a, uint32_t n)
{
	for (uint32_t i = 0; a && i < n; i++)
		free(a[i]);
	free(a);
}

static void free_function(struct spate_config_function *fn)
{
	if (!fn)
		return;
	free_argv(fn->command, fn->n_command);
	free_argv(fn->runtime_client, fn->n_runtime_client);
	for (uint32_t j = 0; fn->env && j < fn->n_env; j++) {
		free(fn->env[j].key);
		free(fn->env[j].value);
	}
	free(fn->env);
	free(fn);
}

int spate_config_consumer_function(struct spate_config_consumer *k,
				   struct spate_config_function **out)
{
	if (out)
		*out = NULL;
	if (!k)
		return -EINVAL;
	if (!k->function) {
		k->function = calloc(1, sizeof(*k->function));
		if (!k->function)
			return -ENOMEM;
	}
	k->plugin[0] = '\0';
	if (out)
		*out = k->function;
	return 0;
}

int spate_config_function_set_argv(struct spate_config_function *fn, int which,
				   const char *const *argv, uint32_t n)
{
	char **a;

	if (!fn || (which != 0 && which != 1) || !argv || n == 0 || n > SPATE_CONFIG_ARGV_MAX)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (!argv[i] || !argv[i][0])
			return -EINVAL;
	a = calloc(n + 1, sizeof(*a)); /* NULL-terminated: an exec argv as it is */
	if (!a)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		a[i] = strdup(argv[i]);
		if (!a[i]) {
			free_argv(a, i);
			return -ENOMEM;
		}
	}
	if (which == 0) {
		free_argv(fn->command, fn->n_command);
		fn->command = a;
		fn->n_command = n;
	} else {
		free_argv(fn->runtime_client, fn->n_runtime_client);
		fn->runtime_client = a;
		fn->n_runtime_client = n;
	}
	return 0;
}

int spate_config_function_set_env(struct spate_config_function *fn, const char *name,
				  const char *value)
{
	if (!fn)
		return -EINVAL;
	return opt_set(&fn->env, &fn->n_env, name, value);
}

uint64_t spate_config_function_timeout(const struct spate_config_consumer *k)
{
	if (!k)
		return 0;
	return k->function && k->function->timeout_ns ? k->function->timeout_ns : k->timeout_ns;
}

static void free_consumer(struct spate_config_consumer *k)
{
	free_function(k->function);
	k->function = NULL;
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
	for (uint32_t i = 0; c->sources && i < c->n_sources; i++)
		spate_cfg_node_clear(&c->sources[i].keys);
	free(c->sources);
	for (uint32_t i = 0; c->consumers && i < c->n_consumers; i++)
		free_consumer(&c->consumers[i]);
	free(c->consumers);
	free(c->streams);
	free(c->placement.cores);
	free(c->api.keys);
	free(c);
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
	spate_cfg_vreport(x->err, x->errlen, x->file, line, x->path, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int nomem(struct pctx *x)
{
	spate_cfg_report(x->err, x->errlen, x->file, 0, "out of memory");
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
		spate_cfg_app(x->path, sizeof(x->path), &pos, ".");
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

	spate_cfg_app(x->path, sizeof(x->path), &pos, "[%zu]", i);
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
	spate_cfg_quote(sval(n), n->data.scalar.length, buf, len);
	return buf;
}

static int bad(struct pctx *x, const struct field *f, const yaml_node_t *n)
{
	char want[320], g[80];

	return perr(x, line_of(n), "expected %s, got %s", spate_cfg_expected(f, want, sizeof(want)),
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
		if (!spate_cfg_name_ok(s, len))
			return bad(x, f, n);
		memcpy(AT(obj, f, char), s, len + 1);
		return 0;
	case FT_DIR:
		if (s[0] != '/' || len >= SPATE_CONFIG_PATH_MAX)
			return bad(x, f, n);
		memcpy(AT(obj, f, char), s, len + 1);
		return 0;
	case FT_PLUGIN:
		if (!spate_cfg_plugin_ok(s, len))
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
		if (spate_cfg_parse_dec(s, &u) < 0 || u < f->lo || u > f->hi)
			return bad(x, f, n);
		*AT(obj, f, uint32_t) = (uint32_t)u;
		return 0;
	case FT_RETRIES:
		if (strcmp(s, "-1") == 0) {
			*AT(obj, f, int32_t) = -1;
			return 0;
		}
		if (spate_cfg_parse_dec(s, &u) < 0 || u < f->lo || u > f->hi)
			return bad(x, f, n);
		*AT(obj, f, int32_t) = (int32_t)u;
		return 0;
	case FT_U64:
		if (spate_cfg_parse_dec(s, &u) < 0 || u < f->lo || u > f->hi)
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
		r = spate_cfg_parse_bool(s, len, AT(obj, f, bool));
		return r < 0 ? bad(x, f, n) : 0;
	case FT_ENUM:
		for (int i = 0; f->names[i]; i++)
			if (spate_cfg_eq_nocase(s, len, f->names[i])) {
				*AT(obj, f, int) = i;
				return 0;
			}
		return bad(x, f, n);
	case FT_ADDR:
		if (len >= SPATE_CONFIG_ADDR_MAX || spate_config_parse_listen(s, NULL, 0, NULL) < 0)
			return bad(x, f, n);
		memcpy(AT(obj, f, char), s, len + 1);
		return 0;
	case FT_STR:
		if (len == 0 || len > f->hi)
			return bad(x, f, n);
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
				return bad(x, f, n);
		memcpy(AT(obj, f, char), s, len + 1);
		return 0;
	case FT_REGION:
		if (!spate_cfg_region_ok(s, len))
			return bad(x, f, n);
		memcpy(AT(obj, f, char), s, len + 1);
		return 0;
	case FT_KEYID:
		if (!spate_cfg_key_id_ok(s, len))
			return bad(x, f, n);
		memcpy(AT(obj, f, char), s, len + 1);
		return 0;
	case FT_CWD:
	case FT_FILE:
		if (len == 0 || len >= SPATE_CONFIG_PATH_MAX)
			return bad(x, f, n);
		if (x->base_dir && s[0] != '/') {
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
	case FT_OPTIONS:
	case FT_CORES:
	case FT_STREAMS:
	case FT_CONSUMERS:
	case FT_PLACEMENT:
	case FT_METRICS:
	case FT_SOURCES:
	case FT_FUNCTION:
	case FT_ARGV:
	case FT_ENV:
	case FT_API:
	case FT_AUTH:
	case FT_KEYS:
	case FT_TLS:
	case FT_CREATE:
		break;
	}
	return bad(x, f, n);
}

/* A list of non-empty strings (a scalar is a list of one) into a
 * NULL-terminated argv at f->off, its count at f->lo. */
static int parse_argv(struct pctx *x, const struct field *f, const yaml_node_t *n, void *obj)
{
	const yaml_node_item_t *it, *end;
	char **a;
	uint32_t cnt;
	yaml_node_item_t one;

	if (n->type == YAML_SCALAR_NODE && !is_null(n)) {
		one = (yaml_node_item_t)(n - x->doc->nodes.start + 1);
		it = &one;
		end = it + 1;
	} else if (n->type == YAML_SEQUENCE_NODE) {
		it = n->data.sequence.items.start;
		end = n->data.sequence.items.top;
	} else {
		return bad(x, f, n);
	}
	if (end - it < 1 || end - it > SPATE_CONFIG_ARGV_MAX)
		return bad(x, f, n);
	cnt = (uint32_t)(end - it);
	a = calloc(cnt + 1, sizeof(*a));
	if (!a)
		return nomem(x);
	*AT(obj, f, char **) = a;
	for (uint32_t i = 0; i < cnt; i++) {
		const yaml_node_t *e = node(x, it[i]);
		if (!e || e->type != YAML_SCALAR_NODE || is_null(e) || e->data.scalar.length == 0 ||
		    strlen(sval(e)) != e->data.scalar.length) {
			size_t old = path_idx(x, i);
			int r = bad(x, f, e ? e : n);
			path_pop(x, old);
			return r;
		}
		a[i] = strdup(sval(e));
		if (!a[i])
			return nomem(x);
		/* Counted as it fills: free_function() frees what is there. */
		*(uint32_t *)(void *)((char *)obj + f->lo) = i + 1;
	}
	return 0;
}

/*
 * A mapping of scalar keys to scalar values (a consumer's options, a
 * function's env), in file order, into a new array *out of *count entries.
 * @p what names a key in errors ("an option name", "a variable name").
 */
static int parse_scalar_map(struct pctx *x, const struct field *f, const yaml_node_t *n,
			    const char *what, struct spate_config_opt **out, uint32_t *count)
{
	size_t cnt;

	if (n->type != YAML_MAPPING_NODE)
		return bad(x, f, n);
	cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (cnt == 0)
		return 0;
	*out = calloc(cnt, sizeof(**out));
	if (!*out)
		return nomem(x);
	for (const yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *kn = node(x, p->key), *vn = node(x, p->value);
		char g[80];
		size_t old;

		if (!kn || !vn)
			continue;
		if (kn->type != YAML_SCALAR_NODE || is_null(kn) ||
		    strlen(sval(kn)) != kn->data.scalar.length)
			return perr(x, line_of(kn), "expected %s, got %s", what, got(kn, g, sizeof(g)));
		old = path_key(x, sval(kn), kn->data.scalar.length);
		for (uint32_t j = 0; j < *count; j++)
			if (strcmp((*out)[j].key, sval(kn)) == 0)
				return perr(x, line_of(kn), "duplicate key");
		if (vn->type != YAML_SCALAR_NODE || strlen(sval(vn)) != vn->data.scalar.length)
			return perr(x, line_of(vn), "expected a scalar value (a string or number), got %s",
				    got(vn, g, sizeof(g)));
		struct spate_config_opt *o = &(*out)[*count];
		o->key = strdup(sval(kn));
		o->value = strdup(is_null(vn) ? "" : sval(vn));
		if (!o->key || !o->value) {
			free(o->key);
			free(o->value);
			o->key = o->value = NULL;
			return nomem(x);
		}
		(*count)++;
		path_pop(x, old);
	}
	return 0;
}

/* function.env: NAME: value, in file order. */
static int parse_env(struct pctx *x, const struct field *f, const yaml_node_t *n,
		     struct spate_config_function *fn)
{
	return parse_scalar_map(x, f, n, "a variable name", &fn->env, &fn->n_env);
}

static int parse_function(struct pctx *x, const struct field *f, const yaml_node_t *n,
			  struct spate_config_consumer *k)
{
	size_t i = (size_t)(k - x->c->consumers);
	char want[320];

	if (n->type != YAML_MAPPING_NODE)
		return bad(x, f, n);
	k->function = calloc(1, sizeof(*k->function));
	if (!k->function)
		return nomem(x);
	k->function->line = x->ln.consumer[i][CF_FUNCTION]; /* the key's line */
	return parse_map(x, n, spate_cfg_function_fields, FN_N, k->function, x->ln.function[i],
			 spate_cfg_expected(f, want, sizeof(want)));
}

static int parse_options(struct pctx *x, const struct field *f, const yaml_node_t *n,
			 struct spate_config_consumer *k)
{
	return parse_scalar_map(x, f, n, "an option name", &k->options, &k->n_options);
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
		if (spate_cfg_digits(&p, &a) < 0)
			return bad(x, f, n);
		b = a;
		if (*p == '-') {
			p++;
			if (spate_cfg_digits(&p, &b) < 0)
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
		x->ln.function = calloc(cnt, sizeof(*x->ln.function));
		if (!x->ln.function)
			return nomem(x);
	}
	snprintf(what, sizeof(what), "a %s (a mapping with keys ", is_streams ? "stream" : "consumer");
	spate_cfg_key_list(is_streams ? spate_cfg_stream_fields : spate_cfg_consumer_fields, is_streams ? SF_N : CF_N,
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
			r = parse_map(x, e, spate_cfg_stream_fields, SF_N, s, x->ln.stream[i], what);
		} else {
			struct spate_config_consumer *k = &x->c->consumers[i];
			spate_config_consumer_defaults(k);
			k->line = line_of(e);
			x->c->n_consumers++;
			r = parse_map(x, e, spate_cfg_consumer_fields, CF_N, k, x->ln.consumer[i], what);
		}
		if (r < 0)
			return r;
		path_pop(x, old);
	}
	return 0;
}

/* Copy YAML node @p n into @p out (kind, line, text, children), path
 * x->path. Depth is bounded by the document (aliases could loop: a node met
 * again below itself is an error). */
static int copy_node(struct pctx *x, const yaml_node_t *n, struct spate_config_node *out,
		     unsigned depth)
{
	char g[80];

	out->line = line_of(n);
	out->path = strdup(x->path);
	if (!out->path)
		return nomem(x);
	if (depth > 32)
		return perr(x, line_of(n), "nested more than 32 levels deep");
	if (n->type == YAML_SCALAR_NODE) {
		if (strlen(sval(n)) != n->data.scalar.length)
			return perr(x, line_of(n), "a value with a NUL byte");
		out->kind = SPATE_CONFIG_NODE_SCALAR;
		out->null = is_null(n);
		out->value = strdup(out->null ? "" : sval(n));
		return out->value ? 0 : nomem(x);
	}
	if (n->type == YAML_SEQUENCE_NODE) {
		size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
		out->kind = SPATE_CONFIG_NODE_LIST;
		if (!cnt)
			return 0;
		out->items = calloc(cnt, sizeof(*out->items));
		if (!out->items)
			return nomem(x);
		for (size_t i = 0; i < cnt; i++) {
			const yaml_node_t *e = node(x, n->data.sequence.items.start[i]);
			size_t old = path_idx(x, i);
			int r;
			if (!e)
				return perr(x, line_of(n), "unreadable entry");
			out->n_items++;
			r = copy_node(x, e, &out->items[i], depth + 1);
			if (r < 0)
				return r;
			path_pop(x, old);
		}
		return 0;
	}
	if (n->type != YAML_MAPPING_NODE)
		return perr(x, line_of(n), "unreadable value, got %s", got(n, g, sizeof(g)));
	out->kind = SPATE_CONFIG_NODE_MAP;
	size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (!cnt)
		return 0;
	out->items = calloc(cnt, sizeof(*out->items));
	if (!out->items)
		return nomem(x);
	for (const yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
		struct spate_config_node *c;
		size_t old;
		int r;

		if (!k || !v)
			continue;
		if (k->type != YAML_SCALAR_NODE || is_null(k) ||
		    strlen(sval(k)) != k->data.scalar.length)
			return perr(x, line_of(k), "expected a key, got %s", got(k, g, sizeof(g)));
		old = path_key(x, sval(k), k->data.scalar.length);
		for (uint32_t j = 0; j < out->n_items; j++)
			if (!strcmp(out->items[j].key, sval(k)))
				return perr(x, line_of(k), "duplicate key (first at line %u)",
					    out->items[j].line);
		c = &out->items[out->n_items++];
		c->key = strdup(sval(k));
		if (!c->key)
			return nomem(x);
		r = copy_node(x, v, c, depth + 1);
		if (r < 0)
			return r;
		c->line = line_of(k); /* the key's line: where a reader looks */
		path_pop(x, old);
	}
	return 0;
}

/* One entry of `sources:`: name, type and stream into the struct, every
 * other key into its node tree. */
static int parse_source(struct pctx *x, const yaml_node_t *e, struct spate_config_source *src)
{
	static const struct field fname = { "name", FT_NAME, F_REQ, 0, 0, 0, NULL, NULL };
	static const struct field ftype = { "type", FT_NAME, F_REQ, 0, 0, 0, NULL,
					    "a source type name (like nats or dpdk)" };
	static const struct field fstream = { "stream", FT_REF, F_REQ, 0, 0, 0, NULL, NULL };
	const struct field *known[3] = { &fname, &ftype, &fstream };
	char *dst[3] = { src->name, src->type, src->stream };
	uint32_t seen[3] = { 0, 0, 0 };
	char g[80];
	int r;

	src->line = line_of(e);
	src->file = x->c->source;
	src->keys.kind = SPATE_CONFIG_NODE_MAP;
	src->keys.line = line_of(e);
	src->keys.path = strdup(x->path);
	if (!src->keys.path)
		return nomem(x);
	if (e->type != YAML_MAPPING_NODE)
		return perr(x, line_of(e), "expected a source (a mapping with keys name, type, stream "
			    "and the keys of its type), got %s", got(e, g, sizeof(g)));
	size_t cnt = (size_t)(e->data.mapping.pairs.top - e->data.mapping.pairs.start);
	src->keys.items = calloc(cnt ? cnt : 1, sizeof(*src->keys.items));
	if (!src->keys.items)
		return nomem(x);
	for (const yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
		size_t old, i;

		if (!k || !v)
			continue;
		if (k->type != YAML_SCALAR_NODE || is_null(k) ||
		    strlen(sval(k)) != k->data.scalar.length)
			return perr(x, line_of(k), "expected a key, got %s", got(k, g, sizeof(g)));
		old = path_key(x, sval(k), k->data.scalar.length);
		for (i = 0; i < 3; i++)
			if (!strcmp(known[i]->key, sval(k)))
				break;
		if (i < 3) {
			if (seen[i])
				return perr(x, line_of(k), "duplicate key (first at line %u)", seen[i]);
			seen[i] = line_of(k);
			if (v->type != YAML_SCALAR_NODE || is_null(v) ||
			    strlen(sval(v)) != v->data.scalar.length ||
			    !spate_cfg_name_ok(sval(v), v->data.scalar.length))
				return bad(x, known[i], v);
			memcpy(dst[i], sval(v), v->data.scalar.length + 1);
		} else {
			struct spate_config_node *c = &src->keys.items[src->keys.n_items];
			for (uint32_t j = 0; j < src->keys.n_items; j++)
				if (!strcmp(src->keys.items[j].key, sval(k)))
					return perr(x, line_of(k), "duplicate key (first at line %u)",
						    src->keys.items[j].line);
			src->keys.n_items++;
			c->key = strdup(sval(k));
			if (!c->key)
				return nomem(x);
			r = copy_node(x, v, c, 1);
			if (r < 0)
				return r;
			c->line = line_of(k);
		}
		path_pop(x, old);
	}
	src->type_line = seen[1];
	src->stream_line = seen[2];
	for (size_t i = 0; i < 3; i++)
		if (!seen[i]) {
			char want[320];
			path_key(x, known[i]->key, strlen(known[i]->key));
			return perr(x, line_of(e), "missing; expected %s",
				    spate_cfg_expected(known[i], want, sizeof(want)));
		}
	return 0;
}

static int parse_sources(struct pctx *x, const struct field *f, const yaml_node_t *n)
{
	size_t cnt;

	if (n->type != YAML_SEQUENCE_NODE)
		return bad(x, f, n);
	cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (cnt == 0)
		return 0;
	if (cnt >= UINT32_MAX)
		return perr(x, line_of(n), "too many entries");
	x->c->sources = calloc(cnt, sizeof(*x->c->sources));
	if (!x->c->sources)
		return nomem(x);
	for (size_t i = 0; i < cnt; i++) {
		const yaml_node_t *e = node(x, n->data.sequence.items.start[i]);
		size_t old = path_idx(x, i);
		int r;

		if (!e)
			return perr(x, line_of(n), "unreadable entry");
		x->c->sources[i].index = (uint32_t)i;
		x->c->n_sources++;
		r = parse_source(x, e, &x->c->sources[i]);
		if (r < 0)
			return r;
		path_pop(x, old);
	}
	return 0;
}

/* api.auth.keys: a list of {id, secret_file}. */
static int parse_keys(struct pctx *x, const struct field *f, const yaml_node_t *n)
{
	struct spate_config_api *a = &x->c->api;
	size_t cnt;

	if (n->type != YAML_SEQUENCE_NODE || n->data.sequence.items.top == n->data.sequence.items.start)
		return perr(x, line_of(n), "expected a list of {id, secret_file} (at least one)");
	cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (cnt > SPATE_CONFIG_API_MAX_KEYS)
		return perr(x, line_of(n), "expected at most %u keys, got %zu",
			    SPATE_CONFIG_API_MAX_KEYS, cnt);
	a->keys = calloc(cnt, sizeof(*a->keys));
	if (!a->keys)
		return nomem(x);
	for (size_t i = 0; i < cnt; i++) {
		const yaml_node_t *e = node(x, n->data.sequence.items.start[i]);
		size_t old = path_idx(x, i);
		int r;

		if (!e)
			continue;
		a->keys[i].line = line_of(e);
		a->n_keys++;
		r = parse_map(x, e, spate_cfg_key_fields, EF_N, &a->keys[i], x->ln.key[i],
			      "a mapping with keys id, secret_file");
		if (r < 0)
			return r;
		a->keys[i].secret_line = x->ln.key[i][EF_SECRET];
		path_pop(x, old);
	}
	(void)f;
	return 0;
}

/* api.auth: the word none, or {keys: [...]}. */
static int parse_auth(struct pctx *x, const yaml_node_t *n)
{
	if (n->type == YAML_SCALAR_NODE && !is_null(n) && strcmp(sval(n), "none") == 0) {
		x->c->api.auth = SPATE_CONFIG_API_AUTH_NONE;
		return 0;
	}
	if (n->type != YAML_MAPPING_NODE) {
		char g[80];
		return perr(x, line_of(n), "expected none (no signatures) or a mapping with keys "
			    "(a list of {id, secret_file}), got %s", got(n, g, sizeof(g)));
	}
	x->c->api.auth = SPATE_CONFIG_API_AUTH_KEYS;
	return parse_map(x, n, spate_cfg_auth_fields, UF_N, &x->c->api, x->ln.auth,
			 "a mapping with keys keys");
}

/* api.create: the keys of a stream, but those CreateStream gives (name,
 * shards) and log_dir (each created stream logs under its own name). */
static int parse_api_create(struct pctx *x, const yaml_node_t *n)
{
	struct spate_config_stream *s = &x->c->api.create;
	static const int refused[] = { SF_NAME, SF_SHARDS, SF_LOG_DIR };
	int r;

	struct field tab[SF_N];

	/* The stream table, with name not required (it is refused below). */
	memcpy(tab, spate_cfg_stream_fields, sizeof(tab));
	tab[SF_NAME].flags &= (uint8_t)~F_REQ;
	s->line = x->ln.api[AF_CREATE] ? x->ln.api[AF_CREATE] : line_of(n);
	r = parse_map(x, n, tab, SF_N, s, x->ln.create,
		      "a mapping of stream keys (durability, ring_size, retention, ...)");
	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (!x->ln.create[refused[i]])
			continue;
		size_t old = path_key(x, spate_cfg_stream_fields[refused[i]].key,
				      strlen(spate_cfg_stream_fields[refused[i]].key));
		r = perr(x, x->ln.create[refused[i]], "not allowed here: %s",
			 refused[i] == SF_LOG_DIR ? "each created stream logs to "
			 "<state_dir>/log/<its name>" : "CreateStream gives the name and the shard "
			 "count of each stream it makes");
		x->path[old] = '\0';
		return r;
	}
	return 0;
}

/* api: {listen, region, auth, tls, threads, create}; listen and region default. */
static int parse_api(struct pctx *x, const yaml_node_t *n)
{
	struct spate_config_api *a = &x->c->api;
	int r;

	a->enabled = true;
	a->line = x->ln.top[TF_API] ? x->ln.top[TF_API] : line_of(n); /* the key's line */
	spate_config_stream_defaults(&a->create);
	r = parse_map(x, n, spate_cfg_api_fields, AF_N, a, x->ln.api,
		      "a mapping with keys listen, region, auth, tls, threads, create");
	if (r < 0)
		return r;
	if (!a->listen[0])
		snprintf(a->listen, sizeof(a->listen), "127.0.0.1:4567");
	if (!a->region[0])
		snprintf(a->region, sizeof(a->region), "us-east-1");
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
		return parse_map(x, n, spate_cfg_placement_fields, PF_N, &x->c->placement, x->ln.place,
				 "a mapping with keys cores, busy_threads_max, persist_threads");
	case FT_METRICS:
		return parse_map(x, n, spate_cfg_metrics_fields, MF_N, &x->c->metrics, x->ln.metrics,
				 "a mapping with keys listen, counters");
	case FT_SOURCES:
		return parse_sources(x, f, n);
	case FT_FUNCTION:
		return parse_function(x, f, n, obj);
	case FT_ARGV:
		return parse_argv(x, f, n, obj);
	case FT_ENV:
		return parse_env(x, f, n, obj);
	case FT_API:
		if (is_null(n)) {
			char g[8];
			return perr(x, line_of(n), "expected a mapping with keys listen, region, "
				    "auth (required), tls, threads, create, got %s",
				    got(n, g, sizeof(g)));
		}
		return parse_api(x, n);
	case FT_AUTH:
		return parse_auth(x, n);
	case FT_KEYS:
		return parse_keys(x, f, n);
	case FT_TLS:
		return parse_map(x, n, spate_cfg_tls_fields, LF_N, &x->c->api, x->ln.tls,
				 "a mapping with keys cert, key");
	case FT_CREATE:
		return parse_api_create(x, n);
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
		unsigned d = spate_cfg_closeness(s, len, tab[i].key);
		if (d < bd) {
			bd = d;
			best = tab[i].key;
		}
	}
	if (best)
		return perr(x, line_of(k), "unknown key; did you mean \"%s\"?", best);
	spate_cfg_key_list(tab, nf, keys, sizeof(keys));
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
				    spate_cfg_expected(&tab[i], want, sizeof(want)));
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
		return spate_cfg_report(x->err, x->errlen, x->file, line_at(text, len, p->problem_offset),
			      "YAML syntax error at byte %zu: %s", p->problem_offset,
			      p->problem ? p->problem : "unreadable input");
	if (p->context)
		snprintf(ctx, sizeof(ctx), " (%s at line %zu, column %zu)", p->context,
			 p->context_mark.line + 1, p->context_mark.column + 1);
	return spate_cfg_report(x->err, x->errlen, x->file, (unsigned)p->problem_mark.line + 1,
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
		r = spate_cfg_report(err, errlen, file, 1,
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
		r = spate_cfg_report(err, errlen, file, (unsigned)extra.start_mark.line + 1,
			   "a second YAML document; expected only one");
		yaml_document_delete(&extra);
		goto fail_doc;
	}
	yaml_document_delete(&extra);
	if (root->type != YAML_MAPPING_NODE) {
		r = spate_cfg_report(err, errlen, file, line_of(root),
			   "expected a mapping with keys bus, streams (and optionally state_dir, "
			   "consumers, placement) at the top, got %s",
			   got(root, g, sizeof(g)));
		goto fail_doc;
	}
	r = parse_map(&x, root, spate_cfg_top_fields, TF_N, x.c, x.ln.top, "a mapping");
	if (r < 0)
		goto fail_doc;
	if (!x.c->state_dir[0])
		default_state_dir(x.c);
	r = spate_cfg_validate(x.c, &x.ln, file, err, errlen);
	if (r < 0)
		goto fail_doc;
	resolve(x.c);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	free(x.ln.stream);
	free(x.ln.consumer);
	free(x.ln.function);
	*out = x.c;
	return 0;

fail_doc:
	yaml_document_delete(&doc);
fail_parser:
	yaml_parser_delete(&parser);
fail_cfg:
	free(x.ln.stream);
	free(x.ln.consumer);
	free(x.ln.function);
	spate_config_free(x.c);
	return r;
}

int spate_config_parse(const char *text, size_t len, const char *name_for_errors,
		       struct spate_config **out, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!out)
		return spate_cfg_report(err, errlen, name_for_errors, 0, "no place for the result");
	*out = NULL;
	if (!text && len)
		return spate_cfg_report(err, errlen, name_for_errors, 0, "no text");
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
		return spate_cfg_report(err, errlen, path, 0, "no path or no place for the result");
	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		spate_cfg_report(err, errlen, path, 0, "cannot open: %s", strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		spate_cfg_report(err, errlen, path, 0, "cannot stat: %s", strerror(-r));
		goto fail_fd;
	}
	if (S_ISDIR(st.st_mode)) {
		r = -EISDIR;
		spate_cfg_report(err, errlen, path, 0, "is a directory; expected a YAML file");
		goto fail_fd;
	}
	if ((uint64_t)st.st_size > MAX_FILE) {
		r = -EFBIG;
		spate_cfg_report(err, errlen, path, 0, "is %lld bytes; a configuration is at most %llu",
		       (long long)st.st_size, (unsigned long long)MAX_FILE);
		goto fail_fd;
	}
	cap = (size_t)st.st_size + 1;
	if (cap < 4096)
		cap = 4096;
	buf = malloc(cap);
	if (!buf) {
		r = -ENOMEM;
		spate_cfg_report(err, errlen, path, 0, "out of memory");
		goto fail_fd;
	}
	for (;;) {
		ssize_t n;
		if (len == cap) {
			char *nb;
			if (cap >= MAX_FILE) {
				r = -EFBIG;
				spate_cfg_report(err, errlen, path, 0, "a configuration is at most %llu bytes",
				       (unsigned long long)MAX_FILE);
				goto fail_buf;
			}
			nb = realloc(buf, cap * 2);
			if (!nb) {
				r = -ENOMEM;
				spate_cfg_report(err, errlen, path, 0, "out of memory");
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
			spate_cfg_report(err, errlen, path, 0, "cannot read: %s", strerror(-r));
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
			spate_cfg_report(err, errlen, path, 0, "out of memory");
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
