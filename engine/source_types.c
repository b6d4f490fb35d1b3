/* SPDX-License-Identifier: MIT */
/*
 * source_types.c - the engine's side of `sources:` (spate/sources.h): the
 * registry of source types, each entry's counters slot, and the lifecycle
 * (start after everything else, stop before everything else).
 *
 * Design. The core knows no source type: a door (engine/sources/) provides
 * a struct spate_source_type and the program that runs the engine registers
 * it (`spate run` does for the built-in ones). The engine keeps a copy of
 * the door's struct, of the door's struct_size and zero beyond, so a door
 * built against an older header is read only as far as it wrote. At
 * registration every entry of that type is checked (its check()), so a bad
 * key fails before anything starts, with the file and line. Start runs the
 * entries in file order on the control thread once the consumers' workers,
 * the persister and the control thread run, so a source's first append is
 * consumed and persisted like any other; stop runs them in reverse order
 * before anything else stops, so a source's last appends are too.
 *
 * Counters: each entry has a slot (struct spate_stats_source_slot) in the
 * counters region, or, with counters off, one of its own in this process:
 * a door writes its state without asking which.
 *
 * Limits: at most SPATE_SOURCE_TYPES_MAX types per engine; types are
 * registered before start and stay until close.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spate/slog.h"
#include "spate/sources.h"
#include "spate/stats.h"

#include "engine/engine_pvt.h"

static const struct spate_source_type *find_type(const struct spate_engine *e, const char *name)
{
	for (uint32_t i = 0; i < e->nstypes; i++)
		if (!strcmp(e->stypes[i].name, name))
			return &e->stypes[i];
	return NULL;
}

static int name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > SPATE_CONFIG_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return 0;
	return 1;
}

int spate_engine_register_source_type(struct spate_engine *e, const struct spate_source_type *t,
				      char *err, size_t errlen)
{
	struct spate_source_type *c;

	if (err && errlen)
		err[0] = '\0';
	if (!e || !t) {
		snprintf(err, errlen, "register source type: no engine or no type");
		return -EINVAL;
	}
	if (t->struct_size < SPATE_SOURCE_TYPE_MIN_SIZE || !name_ok(t->name) || !t->start ||
	    !t->stop) {
		snprintf(err, errlen,
			 "source type %s: struct_size %u (at least %zu), a name of [A-Za-z0-9_-], "
			 "start and stop are required",
			 t->name && name_ok(t->name) ? t->name : "?", t->struct_size,
			 (size_t)SPATE_SOURCE_TYPE_MIN_SIZE);
		return -EINVAL;
	}
	if (e->running) {
		snprintf(err, errlen, "source type %s: register before the engine starts", t->name);
		return -EBUSY;
	}
	if (find_type(e, t->name)) {
		snprintf(err, errlen, "source type %s is registered already", t->name);
		return -EEXIST;
	}
	if (e->nstypes == SPATE_SOURCE_TYPES_MAX) {
		snprintf(err, errlen, "source type %s: %u types registered already, the most",
			 t->name, SPATE_SOURCE_TYPES_MAX);
		return -ENOSPC;
	}
	/* Check first: a type whose entries are wrong is not registered. */
	for (uint32_t i = 0; t->check && i < e->nsources; i++) {
		const struct spate_config_source *s = e->sources[i].cfg;
		if (strcmp(s->type, t->name))
			continue;
		int rc = t->check(s, err, errlen);
		if (rc < 0) {
			if (err && errlen && !err[0])
				spate_config_node_error(s, NULL, err, errlen, "refused by source type %s",
							t->name);
			return rc == -EINVAL ? rc : -EINVAL;
		}
	}
	c = &e->stypes[e->nstypes++];
	memset(c, 0, sizeof(*c));
	memcpy(c, t, t->struct_size < sizeof(*c) ? t->struct_size : sizeof(*c));
	c->struct_size = (uint32_t)sizeof(*c);
	return 0;
}

struct spate_stats_source_slot *spate_engine_source_stats(struct spate_engine *e, const char *name)
{
	for (uint32_t i = 0; e && name && i < e->nsources; i++)
		if (!strcmp(e->sources[i].cfg->name, name))
			return e->sources[i].st;
	return NULL;
}

const struct spate_config *spate_engine_config(struct spate_engine *e)
{
	return e ? e->cfg : NULL;
}

int spate_stats_source_counter(struct spate_stats_source_slot *s, uint32_t i, const char *name)
{
	uint32_t n;

	if (!s || !name || i >= SPATE_STATS_SOURCE_COUNTERS)
		return -EINVAL;
	/* Relaxed: the door's start thread is the only writer of the count. */
	n = atomic_load_explicit(&s->n_counters, memory_order_relaxed);
	if (i != n)
		return -EINVAL;
	snprintf(s->counter_names[i], sizeof(s->counter_names[i]), "%s", name);
	/* Release: pairs with the monitors' acquire load of n_counters, so a
	 * counted name is read whole. */
	atomic_store_explicit(&s->n_counters, n + 1, memory_order_release);
	return (int)i;
}

void spate_stats_source_error(struct spate_stats_source_slot *s, const char *fmt, ...)
{
	char buf[sizeof(s->error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* Byte copies a reader may see half-written (documented: may tear). */
	for (size_t i = 0; i < sizeof(buf); i++) {
		((volatile char *)s->error)[i] = buf[i];
		if (!buf[i])
			break;
	}
}

const char *spate_stats_source_state_name(uint32_t s)
{
	static const char *const n[] = { "stopped", "starting", "up", "down", "failed", "unused" };

	return s < sizeof(n) / sizeof(n[0]) ? n[s] : "?";
}

/* ------------------------------------------------------------------------ */
/* Lifecycle (engine.c)                                                     */
/* ------------------------------------------------------------------------ */

/* At open: one entry per `sources:`, each with a counters slot of its own
 * (the region's replaces it when there is one). */
int spate_engine_sources_open(struct spate_engine *e)
{
	const struct spate_config *c = e->cfg;

	if (!c->n_sources)
		return 0;
	e->sources = calloc(c->n_sources, sizeof(*e->sources));
	if (!e->sources)
		return -ENOMEM;
	for (uint32_t i = 0; i < c->n_sources; i++) {
		struct engine_source *s = &e->sources[i];
		s->cfg = &c->sources[i];
		s->own = calloc(1, sizeof(*s->own));
		if (!s->own)
			return -ENOMEM; /* close frees what was made */
		e->nsources++;
		snprintf(s->own->name, sizeof(s->own->name), "%s", s->cfg->name);
		snprintf(s->own->type, sizeof(s->own->type), "%s", s->cfg->type);
		for (uint32_t k = 0; k < c->n_streams; k++)
			if (!strcmp(c->streams[k].name, s->cfg->stream))
				s->own->stream = k;
		s->st = s->own;
	}
	return 0;
}

int spate_engine_sources_start(struct spate_engine *e)
{
	char err[512];

	for (uint32_t i = 0; i < e->nsources; i++) {
		struct engine_source *s = &e->sources[i];
		const struct spate_config_source *cs = s->cfg;
		int rc;

		s->type = find_type(e, cs->type);
		if (!s->type) {
			char known[400];
			size_t pos = 0;
			known[0] = '\0';
			for (uint32_t k = 0; k < e->nstypes; k++)
				pos += (size_t)snprintf(known + pos, pos < sizeof(known) ? sizeof(known) - pos : 0,
							"%s%s", k ? ", " : "", e->stypes[k].name);
			struct spate_config_node at = { .line = cs->type_line };
			char path[48];
			snprintf(path, sizeof(path), "sources[%u].type", cs->index);
			at.path = path;
			spate_config_node_error(cs, &at, err, sizeof(err),
						"no source type \"%s\" in this program (types: %s)",
						cs->type, e->nstypes ? known : "none registered");
			spate_slog(SPATE_LOG_ERROR, NULL, "%s", err);
			spate_engine_sources_stop(e);
			return -ENOENT;
		}
		err[0] = '\0';
		spate_stats_source_state(s->st, SPATE_STATS_SOURCE_STARTING);
		rc = s->type->start(e, cs, &s->state, err, sizeof(err));
		if (rc < 0) {
			spate_stats_source_state(s->st, SPATE_STATS_SOURCE_FAILED);
			spate_stats_source_error(s->st, "%s", err);
			spate_slog(SPATE_LOG_ERROR, NULL, "source %s (%s): %s", cs->name, cs->type,
				   err[0] ? err : strerror(-rc));
			spate_engine_sources_stop(e);
			return rc;
		}
		s->started = true;
		/* Relaxed: read for display; a door that set its own state keeps it. */
		if (atomic_load_explicit(&s->st->state, memory_order_relaxed) ==
		    SPATE_STATS_SOURCE_STARTING)
			spate_stats_source_state(s->st, SPATE_STATS_SOURCE_UP);
	}
	return 0;
}

void spate_engine_sources_stop(struct spate_engine *e)
{
	for (uint32_t i = e->nsources; i-- > 0;) {
		struct engine_source *s = &e->sources[i];
		if (!s->started)
			continue;
		s->type->stop(s->state);
		s->state = NULL;
		s->started = false;
		spate_stats_source_state(s->st, SPATE_STATS_SOURCE_STOPPED);
	}
}

void spate_engine_sources_close(struct spate_engine *e)
{
	for (uint32_t i = 0; e->sources && i < e->nsources; i++)
		free(e->sources[i].own);
	free(e->sources);
	e->sources = NULL;
	e->nsources = 0;
}
