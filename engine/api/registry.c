/* SPDX-License-Identifier: MIT */
/*
 * registry.c - the streams the Kinesis API front serves, and the producers
 * its HTTP threads put with.
 *
 * Design. The registry is a sorted array of the bus's streams (those of the
 * configuration, then those created through CreateStream), under a
 * writer-preferring rwlock: every call holds the read lock for its whole
 * duration, so a stream handle it looked up stays valid until it answers;
 * CreateStream/DeleteStream and the setters take the write lock, so a
 * DeleteStream waits for the calls in flight on any stream and then runs
 * alone.
 *
 * A spate producer belongs to one thread. Each HTTP thread (libmicrohttpd
 * runs a connection's requests in one pool thread) keeps its own producer
 * per stream, opened on first use with SPATE_PRODUCER_F_FAIL_FULL: a full
 * shard answers ProvisionedThroughputExceededException at once and never
 * blocks the connection. A DeleteStream, holding the write lock (so no
 * thread is using one), closes every thread's producers on the stream
 * before the engine removes it. Thread contexts live until the front stops.
 *
 * A created stream takes the bus's `api.create` keys (durability, ring
 * size, retention, ...: those of a stream in `streams:`), with the name and
 * shard count of the CreateStream call.
 *
 * Run-time streams go through the core (spate_engine_stream_add/_remove,
 * engine/engine_streams.c), which creates the shards in shared memory,
 * persists the definition in state_dir (a restart brings them back: the
 * registry starts from spate_engine_stream_list()) and shows them to
 * stat/top/Prometheus. Each entry holds a spate_engine_stream_get()
 * reference, so a removal by another caller cannot unmap a stream under a
 * call; tags and retention are the core's (persisted there too).
 *
 * Limits: one front per process is the supported case (thread contexts are
 * matched to it by serial number, so a second one in tests is only slower).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "engine/api/api_pvt.h"

static __thread struct spate_api_tctx *tl_ctx;

static uint32_t hours_of(uint64_t ns)
{
	uint64_t h = (ns + 3599ull * 1000000000ull) / (3600ull * 1000000000ull);

	return h > 8760 ? 8760 : h < 1 ? 1 : (uint32_t)h;
}

/* Position of @p name in the sorted array (or where it goes); *found. */
static uint32_t find_pos(const struct spate_api *a, const char *name, bool *found)
{
	uint32_t lo = 0, hi = a->n_streams;

	*found = false;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(a->streams[mid]->name, name);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct spate_api_stream *spate_api_stream_find(struct spate_api *a, const char *name)
{
	bool found;
	uint32_t i = find_pos(a, name, &found);

	return found ? a->streams[i] : NULL;
}

/* Add @p st to the array (write lock held or not yet shared). */
static int insert(struct spate_api *a, struct spate_api_stream *st)
{
	bool found;
	uint32_t i = find_pos(a, st->name, &found);

	if (found)
		return -EEXIST;
	if (a->n_streams == a->cap_streams) {
		uint32_t cap = a->cap_streams ? a->cap_streams * 2 : 16;
		struct spate_api_stream **n = realloc(a->streams, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		a->streams = n;
		a->cap_streams = cap;
	}
	memmove(&a->streams[i + 1], &a->streams[i], (a->n_streams - i) * sizeof(*a->streams));
	a->streams[i] = st;
	a->n_streams++;
	return 0;
}

/* A registry entry for the engine's ACTIVE stream @p in, holding a
 * reference (spate_engine_stream_get) until it is freed. Its definition is
 * the YAML one, or the defaults with the run-time stream's shape (what
 * spate_engine_stream_add() was given: the log directory is the default
 * one). NULL if the stream is gone or out of memory. */
static struct spate_api_stream *entry_new(struct spate_api *a,
					  const struct spate_engine_stream_info *in)
{
	const struct spate_config_stream *ycs = spate_config_find_stream(a->cfg, in->name);
	struct spate_api_stream *st;
	struct spate_stream *s;

	if (in->status != SPATE_ENGINE_STREAM_ACTIVE)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	s = spate_engine_stream_get(a->e, in->name);
	if (!s) {
		free(st);
		return NULL;
	}
	if (ycs) {
		st->cs = *ycs;
	} else {
		spate_config_stream_defaults(&st->cs);
		snprintf(st->cs.name, sizeof(st->cs.name), "%s", in->name);
		st->cs.shards = in->shards;
		st->cs.durability = in->durability;
	}
	snprintf(st->name, sizeof(st->name), "%s", in->name);
	st->s = s;
	st->id = ++a->next_id;
	st->shards = spate_stream_shards(s);
	st->max_record = spate_ring_max_record(spate_stream_ring(s, 0));
	st->has_log = spate_stream_durability(s) != SPATE_DURABILITY_OFF;
	st->retention_hours = hours_of(in->retention_ns);
	st->created_ns = in->created_ns ? in->created_ns : a->started_ns;
	return st;
}

static void entry_free(struct spate_api *a, struct spate_api_stream *st)
{
	if (!st)
		return;
	spate_engine_stream_put(a->e, st->s);
	free(st);
}

int spate_api_registry_init(struct spate_api *a, char *err, size_t errlen)
{
	pthread_rwlockattr_t ra;

	pthread_rwlockattr_init(&ra);
	/* Writer-preferring: a DeleteStream is not starved by a steady stream
	 * of puts (each holds the read lock for one call). */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&a->lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&a->tctx_lock, NULL);
	/* Every stream of the engine now: the YAML ones and those created at
	 * run time before a restart (their definitions are in state_dir). */
	struct spate_engine_stream_info *in = NULL;
	int n = spate_engine_stream_list(a->e, NULL, 0), r = 0;
	if (n > 0) {
		in = calloc((size_t)n + SPATE_ENGINE_RUNTIME_STREAMS_MAX, sizeof(*in));
		if (!in)
			return -ENOMEM;
		n = spate_engine_stream_list(a->e, in, (uint32_t)n + SPATE_ENGINE_RUNTIME_STREAMS_MAX);
	}
	if (n < 0) {
		/* An engine without run-time streams: its YAML streams. */
		in = calloc(a->cfg->n_streams ? a->cfg->n_streams : 1, sizeof(*in));
		if (!in)
			return -ENOMEM;
		for (uint32_t i = 0; i < a->cfg->n_streams; i++) {
			snprintf(in[i].name, sizeof(in[i].name), "%s", a->cfg->streams[i].name);
			in[i].status = SPATE_ENGINE_STREAM_ACTIVE;
			in[i].retention_ns = a->cfg->streams[i].retention_ns;
		}
		n = (int)a->cfg->n_streams;
	}
	for (int i = 0; i < n; i++) {
		if (in[i].status != SPATE_ENGINE_STREAM_ACTIVE)
			continue;
		struct spate_api_stream *st = entry_new(a, &in[i]);
		if (!st || insert(a, st) < 0) {
			entry_free(a, st);
			snprintf(err, errlen, "api: stream %s: not open in the engine, or out of memory",
				 in[i].name);
			r = -ENOMEM;
			break;
		}
	}
	free(in);
	return r;
}

static void close_producers(struct spate_api *a, uint64_t stream_id)
{
	pthread_mutex_lock(&a->tctx_lock);
	for (struct spate_api_tctx *t = a->tctxs; t; t = t->next)
		for (uint32_t i = 0; i < t->n_prods; i++)
			if (stream_id == 0 || t->prods[i].stream_id == stream_id) {
				spate_producer_close(t->prods[i].p);
				t->prods[i] = t->prods[--t->n_prods];
				i--;
			}
	pthread_mutex_unlock(&a->tctx_lock);
}

void spate_api_registry_fini(struct spate_api *a)
{
	close_producers(a, 0);
	while (a->tctxs) {
		struct spate_api_tctx *t = a->tctxs;
		a->tctxs = t->next;
		free(t->prods);
		spate_api_buf_free(&t->arena);
		EVP_MD_CTX_free(t->md5_ctx);
		EVP_MD_free(t->md5);
		free(t);
	}
	for (uint32_t i = 0; i < a->n_streams; i++)
		entry_free(a, a->streams[i]);
	free(a->streams);
	pthread_rwlock_destroy(&a->lock);
	pthread_mutex_destroy(&a->tctx_lock);
}

struct spate_api_tctx *spate_api_tctx_get(struct spate_api *a)
{
	struct spate_api_tctx *t = tl_ctx;

	if (t && t->api_serial == a->serial)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->api_serial = a->serial;
	pthread_mutex_lock(&a->tctx_lock);
	t->next = a->tctxs;
	a->tctxs = t;
	pthread_mutex_unlock(&a->tctx_lock);
	tl_ctx = t;
	return t;
}

int spate_api_producer(struct spate_api *a, struct spate_api_tctx *t, struct spate_api_stream *st,
		       struct spate_producer **out)
{
	struct spate_producer *p;
	int r;

	for (uint32_t i = 0; i < t->n_prods; i++)
		if (t->prods[i].stream_id == st->id) {
			*out = t->prods[i].p;
			return 0;
		}
	if (t->n_prods == t->cap_prods) {
		uint32_t cap = t->cap_prods ? t->cap_prods * 2 : 8;
		struct spate_api_prod *n = realloc(t->prods, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		t->prods = n;
		t->cap_prods = cap;
	}
	r = spate_producer_open(st->s, SPATE_RING_WAIT_YIELD, SPATE_PRODUCER_F_FAIL_FULL, &p);
	if (r < 0)
		return r;
	/* Bound the durability wait of `always` streams (a put never waits
	 * for space: FAIL_FULL). */
	for (uint32_t i = 0; i < st->shards; i++)
		spate_producer_writer(p, i)->timeout_ns = 10ull * 1000000000ull;
	/* The list is read by close_producers() under tctx_lock. */
	pthread_mutex_lock(&a->tctx_lock);
	t->prods[t->n_prods].stream_id = st->id;
	t->prods[t->n_prods].p = p;
	t->n_prods++;
	pthread_mutex_unlock(&a->tctx_lock);
	*out = p;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Run-time streams: the seam to the core's spate_engine_stream_add/remove  */
/* ------------------------------------------------------------------------ */

int spate_api_stream_create(struct spate_api *a, const char *name, uint32_t shards, char *err,
			    size_t errlen)
{
	struct spate_config_stream cs;
	struct spate_engine_stream_info in;
	struct spate_api_stream *st;
	int r;

	/* api.create: what the bus's configuration says created streams are
	 * (durability, ring size, ...); zeroed in a config built in C: the
	 * defaults (memory only). */
	if (a->cfg->api.create.ring_size)
		cs = a->cfg->api.create;
	else
		spate_config_stream_defaults(&cs);
	snprintf(cs.name, sizeof(cs.name), "%s", name);
	cs.shards = shards;
	cs.log_dir[0] = '\0'; /* <state_dir>/log/<name> */
	cs.line = 0;
	pthread_rwlock_wrlock(&a->lock);
	if (spate_api_stream_find(a, name)) {
		r = -EEXIST;
		goto out;
	}
	/* The core creates the shards, persists the definition in state_dir
	 * and shows the stream to stat/top/Prometheus. */
	r = spate_engine_stream_add(a->e, &cs, err, errlen);
	if (r < 0)
		goto out;
	r = spate_engine_stream_info(a->e, name, &in);
	st = r == 0 ? entry_new(a, &in) : NULL;
	if (!st) {
		snprintf(err, errlen, "created, but not ACTIVE or out of memory");
		r = -ENOMEM;
		goto out;
	}
	r = insert(a, st);
	if (r < 0)
		entry_free(a, st);
out:
	pthread_rwlock_unlock(&a->lock);
	return r;
}

int spate_api_stream_delete(struct spate_api *a, const char *name, bool force, char *err,
			    size_t errlen)
{
	bool found;
	int r;

	pthread_rwlock_wrlock(&a->lock);
	uint32_t i = find_pos(a, name, &found);
	if (!found) {
		r = -ENOENT;
		goto out;
	}
	struct spate_api_stream *st = a->streams[i];
	/* No call is in flight (write lock): close every thread's producer
	 * on it before the engine unmaps it. */
	close_producers(a, st->id);
	(void)force; /* consumers read YAML streams only: nothing to enforce */
	r = spate_engine_stream_remove(a->e, name, 0);
	if (r < 0) {
		snprintf(err, errlen, "%s", strerror(-r));
		goto out;
	}
	/* Our reference was the last user: the core frees it on this put. */
	memmove(&a->streams[i], &a->streams[i + 1], (a->n_streams - i - 1) * sizeof(*a->streams));
	a->n_streams--;
	entry_free(a, st);
out:
	pthread_rwlock_unlock(&a->lock);
	return r;
}

int spate_api_stream_retention(struct spate_api *a, struct spate_api_stream *st, uint32_t hours)
{
	int r = spate_engine_stream_set_retention(a->e, st->name, hours * 3600ull * 1000000000ull);

	if (r == 0)
		st->retention_hours = hours;
	return r;
}
