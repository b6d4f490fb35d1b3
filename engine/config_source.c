/* SPDX-License-Identifier: MIT */
/*
 * config_source.c - the `sources:` entries of a configuration: their checks
 * (names, stream references, well-formed node trees) and the accessors a
 * door reads its type-specific keys with (spate/sources.h).
 *
 * Design. config.c copies every key of an entry but name, type and stream
 * into a tree of struct spate_config_node, each node with its line and its
 * path ("sources[0].auth.user"). The accessors here read scalars of a
 * mapping through the same parsers the rest of the file uses (sizes,
 * durations, booleans) and word their errors like the core's: "<file>:
 * <line>: <path>: expected ..., got ...". A door never formats a location
 * itself, so its messages read like every other configuration error.
 *
 * Limits. Keys are matched exactly (case matters, as for every other key);
 * lookups are linear (a source has a handful of keys).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spate/config.h"
#include "spate/sources.h"

#include "config_pvt.h"

void spate_cfg_node_clear(struct spate_config_node *n)
{
	if (!n)
		return;
	for (uint32_t i = 0; n->items && i < n->n_items; i++)
		spate_cfg_node_clear(&n->items[i]);
	free(n->items);
	free(n->key);
	free(n->value);
	free(n->path);
	n->items = NULL;
	n->n_items = 0;
	n->key = n->value = n->path = NULL;
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

static const char *file_of(const struct spate_config_source *s)
{
	return s->file && *s->file ? s->file : NULL;
}

__attribute__((format(printf, 6, 7))) static int serr(char *err, size_t errlen, const char *file,
						       unsigned line, const char *path,
						       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	spate_cfg_vreport(err, errlen, file, line, path, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int check_tree(const struct spate_config_node *n, const char *file, char *err,
		      size_t errlen, unsigned depth)
{
	if (depth > 32)
		return serr(err, errlen, file, n->line, n->path, "nested more than 32 levels deep");
	switch (n->kind) {
	case SPATE_CONFIG_NODE_SCALAR:
		if (!n->value)
			return serr(err, errlen, file, n->line, n->path, "a scalar without a value");
		return 0;
	case SPATE_CONFIG_NODE_MAP:
	case SPATE_CONFIG_NODE_LIST:
		if (n->n_items && !n->items)
			return serr(err, errlen, file, n->line, n->path,
				    "n_items is %u but items is NULL", n->n_items);
		for (uint32_t i = 0; i < n->n_items; i++) {
			const struct spate_config_node *c = &n->items[i];
			int r;
			if (n->kind == SPATE_CONFIG_NODE_MAP && (!c->key || !*c->key))
				return serr(err, errlen, file, c->line, n->path,
					    "entry %u of a mapping has no key", i);
			r = check_tree(c, file, err, errlen, depth + 1);
			if (r < 0)
				return r;
		}
		return 0;
	}
	return serr(err, errlen, file, n->line, n->path, "unknown node kind %d", (int)n->kind);
}

int spate_cfg_check_sources(const struct spate_config *c, const char *file, char *err,
			    size_t errlen)
{
	char path[64];

	if (c->n_sources && !c->sources)
		return serr(err, errlen, file, 0, "sources", "n_sources is %u but sources is NULL",
			    c->n_sources);
	for (uint32_t i = 0; i < c->n_sources; i++) {
		const struct spate_config_source *s = &c->sources[i];
		const char *names[3] = { s->name, s->type, s->stream };
		const char *keys[3] = { "name", "type", "stream" };
		unsigned lines[3] = { s->line, s->type_line ? s->type_line : s->line,
				      s->stream_line ? s->stream_line : s->line };
		int r;

		for (int k = 0; k < 3; k++) {
			size_t len = spate_cfg_arr_len(names[k], SPATE_CONFIG_NAME_MAX + 1);
			snprintf(path, sizeof(path), "sources[%u].%s", i, keys[k]);
			if (len == 0)
				return serr(err, errlen, file, lines[k], path, "missing");
			if (len > SPATE_CONFIG_NAME_MAX || !spate_cfg_name_ok(names[k], len))
				return serr(err, errlen, file, lines[k], path,
					    "expected a name of 1 to %u characters from A-Z a-z "
					    "0-9 _ -", SPATE_CONFIG_NAME_MAX);
		}
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(c->sources[j].name, s->name)) {
				snprintf(path, sizeof(path), "sources[%u].name", i);
				return serr(err, errlen, file, s->line, path,
					    "duplicate source name \"%s\" (sources[%u], line %u)",
					    s->name, j, c->sources[j].line);
			}
		uint32_t si = 0;
		/* Not spate_config_find_stream(): config_check.c calls this file,
		 * never the other way round (tests/include_cycles.sh). */
		while (si < c->n_streams && strcmp(c->streams[si].name, s->stream))
			si++;
		if (si == c->n_streams) {
			snprintf(path, sizeof(path), "sources[%u].stream", i);
			return serr(err, errlen, file, lines[2], path, "no stream named \"%s\"",
				    s->stream);
		}
		if (s->keys.kind != SPATE_CONFIG_NODE_MAP) {
			snprintf(path, sizeof(path), "sources[%u]", i);
			return serr(err, errlen, file, s->line, path,
				    "keys must be a mapping node");
		}
		r = check_tree(&s->keys, file, err, errlen, 0);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Accessors (spate/sources.h)                                              */
/* ------------------------------------------------------------------------ */

const struct spate_config_node *spate_config_node_get(const struct spate_config_node *map,
						      const char *key)
{
	if (!map || !key || map->kind != SPATE_CONFIG_NODE_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->n_items; i++)
		if (map->items[i].key && !strcmp(map->items[i].key, key))
			return &map->items[i];
	return NULL;
}

const struct spate_config_node *spate_config_source_key(const struct spate_config_source *src,
							const char *key)
{
	return src ? spate_config_node_get(&src->keys, key) : NULL;
}

int spate_config_node_error(const struct spate_config_source *src, const struct spate_config_node *n,
			    char *err, size_t errlen, const char *fmt, ...)
{
	char path[32];
	va_list ap;

	if (!src)
		return -EINVAL;
	snprintf(path, sizeof(path), "sources[%u]", src->index);
	va_start(ap, fmt);
	spate_cfg_vreport(err, errlen, file_of(src), n && n->line ? n->line : src->line,
			  n && n->path ? n->path : path, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int spate_config_node_known(const struct spate_config_source *src,
			    const struct spate_config_node *map, const char *const *known,
			    char *err, size_t errlen)
{
	if (!src || !map || !known)
		return -EINVAL;
	if (map->kind != SPATE_CONFIG_NODE_MAP)
		return spate_config_node_error(src, map, err, errlen, "expected a mapping");
	for (uint32_t i = 0; i < map->n_items; i++) {
		const struct spate_config_node *n = &map->items[i];
		const char *best = NULL;
		unsigned bd = 99;
		size_t k;

		for (k = 0; known[k]; k++) {
			if (!strcmp(known[k], n->key))
				break;
			unsigned d = spate_cfg_closeness(n->key, strlen(n->key), known[k]);
			if (d < bd) {
				bd = d;
				best = known[k];
			}
		}
		if (known[k])
			continue;
		if (best)
			return spate_config_node_error(src, n, err, errlen,
						       "unknown key; did you mean \"%s\"?", best);
		char list[600];
		size_t pos = 0;
		list[0] = '\0';
		for (k = 0; known[k]; k++)
			spate_cfg_app(list, sizeof(list), &pos, "%s%s", k ? ", " : "", known[k]);
		if (map == &src->keys)
			spate_cfg_app(list, sizeof(list), &pos, "%sname, type, stream", k ? ", " : "");
		return spate_config_node_error(src, n, err, errlen, "unknown key; valid keys: %s", list);
	}
	return 0;
}

/* The scalar @p key of @p map: 1 and *out, 0 if absent or null, -EINVAL. */
static int scalar(const struct spate_config_source *src, const struct spate_config_node *map,
		  const char *key, const char *what, const struct spate_config_node **out,
		  char *err, size_t errlen)
{
	const struct spate_config_node *n;

	if (!src || !key)
		return -EINVAL;
	n = spate_config_node_get(map, key);
	*out = n;
	if (!n)
		return 0;
	if (n->kind != SPATE_CONFIG_NODE_SCALAR)
		return spate_config_node_error(src, n, err, errlen, "expected %s, got a %s", what,
					       n->kind == SPATE_CONFIG_NODE_MAP ? "mapping" : "list");
	return n->null ? 0 : 1;
}

static int bad_value(const struct spate_config_source *src, const struct spate_config_node *n,
		     const char *what, char *err, size_t errlen)
{
	char q[80];

	spate_cfg_quote(n->value, strlen(n->value), q, sizeof(q));
	return spate_config_node_error(src, n, err, errlen, "expected %s, got %s", what, q);
}

int spate_config_node_str(const struct spate_config_source *src,
			  const struct spate_config_node *map, const char *key, const char **out,
			  char *err, size_t errlen)
{
	const struct spate_config_node *n;
	int r = scalar(src, map, key, "a string", &n, err, errlen);

	if (r > 0)
		*out = n->value;
	return r < 0 ? r : 0;
}

int spate_config_node_u64(const struct spate_config_source *src,
			  const struct spate_config_node *map, const char *key, uint64_t lo,
			  uint64_t hi, uint64_t *out, char *err, size_t errlen)
{
	const struct spate_config_node *n;
	char what[96];
	uint64_t v;
	int r;

	snprintf(what, sizeof(what), "an integer from %llu to %llu", (unsigned long long)lo,
		 (unsigned long long)hi);
	r = scalar(src, map, key, what, &n, err, errlen);
	if (r <= 0)
		return r;
	if (spate_cfg_parse_dec(n->value, &v) < 0 || v < lo || v > hi)
		return bad_value(src, n, what, err, errlen);
	*out = v;
	return 0;
}

int spate_config_node_size(const struct spate_config_source *src,
			   const struct spate_config_node *map, const char *key, uint64_t lo,
			   uint64_t hi, uint64_t *out, char *err, size_t errlen)
{
	const struct spate_config_node *n;
	char what[128], a[32], b[32];
	uint64_t v;
	int r;

	snprintf(what, sizeof(what), "a size from %s to %s (like 64KiB)",
		 spate_cfg_fmt_size(lo, a, sizeof(a)), spate_cfg_fmt_size(hi, b, sizeof(b)));
	r = scalar(src, map, key, what, &n, err, errlen);
	if (r <= 0)
		return r;
	if (spate_config_parse_size(n->value, &v) < 0 || v < lo || v > hi)
		return bad_value(src, n, what, err, errlen);
	*out = v;
	return 0;
}

int spate_config_node_dur(const struct spate_config_source *src,
			  const struct spate_config_node *map, const char *key, uint64_t lo,
			  uint64_t hi, uint64_t *out, char *err, size_t errlen)
{
	const struct spate_config_node *n;
	char what[160], a[32], b[32];
	uint64_t v;
	int r;

	snprintf(what, sizeof(what), "a duration from %s to %s (like 500us, 10ms, 2s, 1m)",
		 spate_cfg_fmt_dur(lo, a, sizeof(a)), spate_cfg_fmt_dur(hi, b, sizeof(b)));
	r = scalar(src, map, key, what, &n, err, errlen);
	if (r <= 0)
		return r;
	if (spate_config_parse_duration(n->value, &v) < 0 || v < lo || v > hi)
		return bad_value(src, n, what, err, errlen);
	*out = v;
	return 0;
}

int spate_config_node_bool(const struct spate_config_source *src,
			   const struct spate_config_node *map, const char *key, bool *out,
			   char *err, size_t errlen)
{
	static const char what[] = "a boolean (true/false, yes/no, on/off)";
	const struct spate_config_node *n;
	bool v;
	int r;

	r = scalar(src, map, key, what, &n, err, errlen);
	if (r <= 0)
		return r;
	if (spate_cfg_parse_bool(n->value, strlen(n->value), &v) < 0)
		return bad_value(src, n, what, err, errlen);
	*out = v;
	return 0;
}

int spate_config_node_enum(const struct spate_config_source *src,
			   const struct spate_config_node *map, const char *key,
			   const char *const *names, int *out, char *err, size_t errlen)
{
	const struct spate_config_node *n;
	char what[400];
	size_t pos = 0;
	int r;

	if (!names)
		return -EINVAL;
	what[0] = '\0';
	spate_cfg_app(what, sizeof(what), &pos, "one of");
	for (int i = 0; names[i]; i++)
		spate_cfg_app(what, sizeof(what), &pos, "%s %s", i ? "," : "", names[i]);
	r = scalar(src, map, key, what, &n, err, errlen);
	if (r <= 0)
		return r;
	for (int i = 0; names[i]; i++)
		if (spate_cfg_eq_nocase(n->value, strlen(n->value), names[i])) {
			*out = i;
			return 0;
		}
	return bad_value(src, n, what, err, errlen);
}
