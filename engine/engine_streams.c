/* SPDX-License-Identifier: MIT */
/*
 * engine_streams.c - the engine's stream registry: the configuration's
 * streams and the ones created and deleted while it runs (spate/engine.h,
 * "Streams created and deleted while the engine runs": the Kinesis door's
 * CreateStream and DeleteStream), their definition files, and opening a
 * stream's shared memory and log (for open and for adds).
 *
 * Design. One registry per engine, an array of entries under st_lock: the
 * YAML streams first (never removed), then run-time ones in creation order.
 * An entry is listed from the moment its name is taken (CREATING) until its
 * removal's last step (DELETING), so a name is never used twice at once.
 * The lock guards the registry, statuses, references, tags, retention and
 * the counters region's stream slots; it is never held while a stream is
 * created or its files are removed, only while a definition file is
 * rewritten (tag and retention changes: rare, one fsync) and while a
 * persister thread is stopped.
 *
 * Nobody sees a half-made stream: spate_engine_stream_get() hands out
 * ACTIVE streams only, with a reference; the engine's own threads only know
 * run-time streams through those references (the control thread's liveness
 * watch) and through their own persister. A removal marks the entry
 * DELETING, retires the rings (producers anywhere get -ESTALE, readers
 * waiting -ESTALE), stops its persister, and the last reference put does
 * the rest: persister fini, counters slot freed, mapping closed, region
 * name unlinked (other processes keep their mapping valid until they close
 * it), log shard directories deleted (or set aside with
 * SPATE_ENGINE_REMOVE_KEEP_LOG), definition file unlinked, entry freed.
 *
 * Definitions: <state_dir>/streams/<name>.json, written tmp + fsync +
 * rename + directory fsync before the stream is created (so a crash after
 * creation always finds it) and rewritten with "status": "DELETING" before
 * a removal starts (so a crash in the middle finishes it at the next open).
 * Each run-time stream with a log has a persister of its own (one thread,
 * unpinned), started and stopped with the engine; its counters are a
 * reserved slot of the counters region (spate_stats_stream_claim).
 *
 * Limits: SPATE_ENGINE_RUNTIME_STREAMS_MAX streams and _SHARDS_MAX shards
 * at once (DELETING ones count until their last reference goes);
 * consumers of the configuration file read YAML streams only; a YAML
 * stream's retention change is not persisted; a run-time stream cannot be
 * an on_failure destination. Callers must be done before
 * spate_engine_close().
 */
#include "spate_config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/persist.h"
#include "engine/util.h"
#include "spate/engine.h"
#include "spate/slog.h"
#include "spate/stats.h"

#include "engine/engine_pvt.h"

static const char *const status_names[] = { "CREATING", "ACTIVE", "DELETING" };

/* ------------------------------------------------------------------------ */
/* Opening a stream (the configuration's at open, run-time ones at add)     */
/* ------------------------------------------------------------------------ */

int spate_engine_open_stream(struct spate_engine *e, struct spate_persister *pp,
			     const struct spate_config_stream *cs, struct spate_stream **out,
			     char *err, size_t errlen)
{
	struct spate_stream_params p = {
		.shards = cs->shards,
		.ring_size = cs->ring_size,
		.max_record = cs->max_record_size,
		.ring_flags = (cs->producers == SPATE_CONFIG_PRODUCERS_MULTI ? SPATE_RING_F_MULTI_WRITER : 0) |
			      (cs->full == SPATE_CONFIG_FULL_WAIT ? SPATE_RING_F_FULL_WAIT : 0),
		.shm_flags = cs->huge_pages == SPATE_CONFIG_HUGE_REQUIRE ? SPATE_SHM_F_REQUIRE_HUGE
			     : cs->huge_pages == SPATE_CONFIG_HUGE_OFF ? SPATE_SHM_F_NO_HUGE : 0,
	};
	if (cs->durability != SPATE_DURABILITY_OFF)
		return spate_persist_open_stream(pp, e->cfg, cs, out, err, errlen);
	int rc = spate_stream_attach(e->cfg->bus, cs->name, out);

	if (rc == 0) {
		struct spate_ring *r0 = spate_stream_ring(*out, 0);
		/* A region persisted before keeps its persister's gates: used
		 * memory-only, nothing would ever move them. */
		if (spate_stream_shards(*out) == cs->shards && r0->cap == cs->ring_size &&
		    r0->flags == p.ring_flags && spate_stream_durability(*out) == SPATE_DURABILITY_OFF)
			return 0; /* dead peers: reaped at start (ctl_main) */
		snprintf(err, errlen,
			 "%s:%u: stream %s exists with %u shard(s) of %" PRIu64 " bytes (flags %#x, "
			 "durability %u), the configuration asks for %u of %" PRIu64 " (flags %#x, "
			 "durability off): remove it first (spate rm %s %s)",
			 e->cfg->source, cs->line, cs->name, spate_stream_shards(*out), r0->cap,
			 r0->flags, spate_stream_durability(*out), cs->shards, cs->ring_size,
			 p.ring_flags, e->cfg->bus, cs->name);
		spate_stream_close(*out);
		*out = NULL;
		return -EEXIST;
	}
	if (rc == -EBADMSG || rc == -EPROTO) {
		/* Stale: corrupt, or left by an engine of an earlier layout. We
		 * hold the bus's lock, so no engine serves it; a memory-only
		 * stream has nothing else to recover it from. */
		spate_slog(SPATE_LOG_WARN, NULL, "stream %s: its shared memory is unreadable (%s): "
			   "removed and created anew", cs->name, strerror(-rc));
		spate_stream_unlink(e->cfg->bus, cs->name);
	} else if (rc != -ENOENT) {
		snprintf(err, errlen, "stream %s: attach: %s", cs->name, strerror(-rc));
		return rc;
	}
	rc = spate_stream_create(e->cfg->bus, cs->name, &p, out);
	if (rc < 0)
		snprintf(err, errlen, "%s:%u: stream %s: create: %s", e->cfg->source, cs->line,
			 cs->name, strerror(-rc));
	return rc;
}

/* The stream's region names its engine: refuse one that another live
 * engine serves (one bus, two state_dirs), else mark it ours. */
int spate_engine_claim_stream(struct spate_engine *e, struct spate_stream *s, char *err,
			      size_t errlen)
{
	pid_t other = 0;

	if (spate_stream_engine(s, &other) == 1 && other != getpid()) {
		snprintf(err, errlen,
			 "stream %s of bus %s is served by another live engine (pid %ld, another state_dir "
			 "than %s?)",
			 spate_stream_name(s), e->cfg->bus, (long)other, e->cfg->state_dir);
		return -EBUSY;
	}
	spate_stream_engine_claim(s);
	return 0;
}

int spate_engine_stream_index(const struct spate_engine *e, const char *name)
{
	for (uint32_t i = 0; i < e->nstreams; i++)
		if (!strcmp(spate_stream_name(e->streams[i]), name))
			return (int)i;
	return -1;
}

/* ------------------------------------------------------------------------ */
/* The registry                                                             */
/* ------------------------------------------------------------------------ */

static struct spate_sentry *find_locked(struct spate_engine *e, const char *name)
{
	for (uint32_t i = 0; i < e->nents; i++)
		if (!strcmp(e->ents[i]->cs.name, name))
			return e->ents[i];
	return NULL;
}

static void unlist_locked(struct spate_engine *e, struct spate_sentry *x)
{
	for (uint32_t i = 0; i < e->nents; i++)
		if (e->ents[i] == x) {
			memmove(&e->ents[i], &e->ents[i + 1], (e->nents - i - 1) * sizeof(*e->ents));
			e->nents--;
			break;
		}
	if (x->runtime) {
		e->rt_streams--;
		e->rt_shards -= x->cs.shards;
	}
}

static void entry_free(struct spate_sentry *x)
{
	if (!x)
		return;
	free(x->tags);
	free(x);
}

struct spate_stream *spate_engine_stream(struct spate_engine *e, const char *name)
{
	int i = spate_engine_stream_index(e, name);
	struct spate_sentry *x;

	if (i >= 0)
		return e->streams[i]; /* YAML: lives until close, no lock needed */
	pthread_mutex_lock(&e->st_lock);
	x = find_locked(e, name);
	struct spate_stream *s = x && x->status == SPATE_ENGINE_STREAM_ACTIVE ? x->s : NULL;
	pthread_mutex_unlock(&e->st_lock);
	return s;
}

/* ------------------------------------------------------------------------ */
/* Definition files                                                         */
/* ------------------------------------------------------------------------ */

static int path_of(const struct spate_engine *e, const char *name, const char *suffix, char *buf,
		   size_t len)
{
	int n = name ? snprintf(buf, len, "%s/%s/%s.json%s", e->cfg->state_dir,
				SPATE_ENGINE_STREAMS_DIR, name, suffix)
		     : snprintf(buf, len, "%s/%s", e->cfg->state_dir, SPATE_ENGINE_STREAMS_DIR);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static json_object *def_json(const struct spate_sentry *x, const char *status)
{
	const struct spate_config_stream *cs = &x->cs;
	json_object *o = json_object_new_object(), *s = json_object_new_object();
	json_object *t = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(cs->name));
	json_object_object_add(o, "origin", json_object_new_string(x->runtime ? "api" : "config"));
	json_object_object_add(o, "status", json_object_new_string(status));
	json_object_object_add(o, "keep_log",
			       json_object_new_boolean(!!(x->remove_flags & SPATE_ENGINE_REMOVE_KEEP_LOG)));
	json_object_object_add(o, "created_ns", json_object_new_uint64(x->created_ns));
	json_object_object_add(o, "retention_ns", json_object_new_uint64(x->retention_ns));
	for (uint32_t i = 0; i < x->ntags; i++)
		json_object_object_add(t, x->tags[i].key, json_object_new_string(x->tags[i].value));
	json_object_object_add(o, "tags", t);
	json_object_object_add(s, "shards", json_object_new_uint64(cs->shards));
	json_object_object_add(s, "ring_size", json_object_new_uint64(cs->ring_size));
	json_object_object_add(s, "max_record_size", json_object_new_uint64(cs->max_record_size));
	json_object_object_add(s, "producers", json_object_new_int((int)cs->producers));
	json_object_object_add(s, "huge_pages", json_object_new_int((int)cs->huge_pages));
	json_object_object_add(s, "full", json_object_new_int((int)cs->full));
	json_object_object_add(s, "durability", json_object_new_int((int)cs->durability));
	json_object_object_add(s, "durability_interval_ns",
			       json_object_new_uint64(cs->durability_interval_ns));
	json_object_object_add(s, "segment_size", json_object_new_uint64(cs->segment_size));
	json_object_object_add(s, "retention_bytes", json_object_new_uint64(cs->retention_bytes));
	json_object_object_add(s, "direct_io", json_object_new_boolean(cs->direct_io));
	json_object_object_add(s, "log_dir", json_object_new_string(cs->log_dir));
	json_object_object_add(o, "stream", s);
	return o;
}

/* Write @p x's definition atomically: tmp + fsync + rename + dir fsync. */
static int def_write(struct spate_engine *e, const struct spate_sentry *x, const char *status)
{
	char path[SPATE_CONFIG_PATH_MAX + 64], tmp[SPATE_CONFIG_PATH_MAX + 64];
	char dir[SPATE_CONFIG_PATH_MAX + 16];
	int rc, fd;

	if (path_of(e, x->cs.name, "", path, sizeof(path)) < 0 ||
	    path_of(e, x->cs.name, ".tmp", tmp, sizeof(tmp)) < 0 ||
	    path_of(e, NULL, "", dir, sizeof(dir)) < 0)
		return -ENAMETOOLONG;
	rc = spate_util_mkdir_p(dir, 0700);
	if (rc < 0)
		return rc;
	json_object *o = def_json(x, status);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	size_t len = strlen(text), off = 0;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = w < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)w;
	}
	if (rc == 0 && write(fd, "\n", 1) != 1)
		rc = -EIO;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	else
		rc = fsync_dir(dir); /* the rename is durable once the directory is */
out:
	json_object_put(o);
	return rc;
}

static void def_unlink(struct spate_engine *e, const char *name)
{
	char path[SPATE_CONFIG_PATH_MAX + 64], dir[SPATE_CONFIG_PATH_MAX + 16];

	if (path_of(e, name, "", path, sizeof(path)) < 0 || path_of(e, NULL, "", dir, sizeof(dir)) < 0)
		return;
	if (unlink(path) == 0)
		fsync_dir(dir);
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb, (void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* The stream's log: its shard directories (<log_dir>/NNNN) are deleted, or
 * with @p keep the whole stream directory is renamed
 * <dir>.deleted-<realtime ns> (for `spate log`); then the stream's
 * directory itself, if empty. */
static void log_remove(struct spate_engine *e, const struct spate_config_stream *cs, bool keep)
{
	char dir[SPATE_CONFIG_PATH_MAX + 64], shard[SPATE_CONFIG_PATH_MAX + 32];

	if (cs->log_dir[0])
		snprintf(dir, sizeof(dir), "%s", cs->log_dir);
	else
		snprintf(dir, sizeof(dir), "%s/log/%s", e->cfg->state_dir, cs->name);
	if (keep) {
		char to[sizeof(dir) + 48];
		snprintf(to, sizeof(to), "%s.deleted-%" PRIu64, dir, spate_now_ns());
		if (rename(dir, to) == 0)
			spate_slog(SPATE_LOG_INFO, NULL, "stream %s: its log is kept in %s", cs->name, to);
		return;
	}
	for (uint32_t k = 0; k < SPATE_CONFIG_MAX_SHARDS; k++) {
		if (spate_config_stream_log_dir(e->cfg, cs, k, shard, sizeof(shard)) < 0)
			break;
		if (access(shard, F_OK) == 0)
			nftw(shard, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	}
	rmdir(dir); /* fails if something else is in it: left alone */
}

/* ------------------------------------------------------------------------ */
/* Making and unmaking a run-time stream                                    */
/* ------------------------------------------------------------------------ */

/* Check @p cs as a YAML stream of this bus would be checked. */
static int check_stream(struct spate_engine *e, struct spate_config_stream *cs, char *err,
			size_t errlen)
{
	struct spate_config *c = malloc(sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	*c = *e->cfg;
	c->streams = cs;
	c->n_streams = 1;
	c->consumers = NULL;
	c->n_consumers = 0;
	snprintf(c->source, sizeof(c->source), "stream %s", cs->name);
	if (!cs->max_record_size)
		cs->max_record_size = spate_config_stream_max_record(cs);
	rc = spate_config_validate(c, err, errlen);
	free(c);
	return rc;
}

/* Counters slot for @p x (st_lock held: one writer of the slots). */
static void stats_claim_locked(struct spate_engine *e, struct spate_sentry *x)
{
	uint64_t seq[SPATE_STREAM_MAX_SHARDS], pos[SPATE_STREAM_MAX_SHARDS];
	uint32_t n = spate_stream_shards(x->s);

	if (!e->stats || x->stats_slot >= 0)
		return;
	for (uint32_t k = 0; k < n; k++)
		spate_ring_tail(spate_stream_ring(x->s, k), &pos[k], &seq[k]);
	int slot = spate_stats_stream_claim(e->stats, x->cs.name, n, seq, pos);
	if (slot < 0) {
		spate_slog(SPATE_LOG_WARN, NULL, "stream %s: no room in the counters region (%s): "
			   "spate stat will not show it", x->cs.name, strerror(-slot));
		return;
	}
	x->stats_slot = slot;
	for (uint32_t i = 0; i < x->persist.n; i++)
		spate_stats_shard_ref(e->stats, (uint32_t)slot, x->persist.sh[i].shard,
				      &x->persist.sh[i].st);
}

static void persister_start_locked(struct spate_engine *e, struct spate_sentry *x)
{
	if (!x->persist.n || x->persisting || !e->st_running)
		return;
	x->persist.nthreads = 1;
	x->persist.t[0].cpu = -1; /* unpinned: it shares the CPUs with everyone */
	int rc = spate_persister_start(&x->persist, e->topo);
	if (rc < 0)
		spate_slog(SPATE_LOG_ERROR, NULL, "stream %s: no persister thread: %s", x->cs.name,
			   strerror(-rc));
	else
		x->persisting = true;
}

static void persister_stop_locked(struct spate_sentry *x)
{
	if (x->persisting)
		spate_persister_stop(&x->persist);
	x->persisting = false;
}

/* Shared memory and log of run-time stream @p x (open, or add). */
static int make(struct spate_engine *e, struct spate_sentry *x, char *err, size_t errlen)
{
	int rc = spate_engine_open_stream(e, &x->persist, &x->cs, &x->s, err, errlen);

	if (rc < 0)
		return rc;
	rc = spate_engine_claim_stream(e, x->s, err, errlen);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < x->persist.n; i++)
		spate_log_set_retention(x->persist.sh[i].log, x->retention_ns);
	uint64_t inc = spate_stream_incarnation(x->s);
	pthread_mutex_lock(&e->st_lock); /* listed: lists read it */
	x->incarnation = inc;
	pthread_mutex_unlock(&e->st_lock);
	return 0;
}

/* Undo make() (a failed add): nothing of it stays. */
static void unmake(struct spate_engine *e, struct spate_sentry *x)
{
	spate_persister_fini(&x->persist);
	if (x->s) {
		spate_stream_close(x->s);
		spate_stream_unlink(e->cfg->bus, x->cs.name);
		x->s = NULL;
	}
	if (x->cs.durability != SPATE_DURABILITY_OFF)
		log_remove(e, &x->cs, false);
}

/* The removal's last step (tearing set by the caller, under the lock). */
static void teardown(struct spate_engine *e, struct spate_sentry *x)
{
	pthread_mutex_lock(&e->st_lock);
	persister_stop_locked(x);
	if (e->stats && x->stats_slot >= 0)
		spate_stats_stream_release(e->stats, (uint32_t)x->stats_slot);
	x->stats_slot = -1;
	pthread_mutex_unlock(&e->st_lock);
	spate_persister_fini(&x->persist); /* logs closed, gates detached */
	/* x->s stays as it is (others compare it under the lock) until x is
	 * unlisted; with no references left, nobody uses it. */
	spate_stream_close(x->s);
	spate_stream_unlink(e->cfg->bus, x->cs.name);
	if (x->cs.durability != SPATE_DURABILITY_OFF)
		log_remove(e, &x->cs, x->remove_flags & SPATE_ENGINE_REMOVE_KEEP_LOG);
	def_unlink(e, x->cs.name);
	spate_slog(SPATE_LOG_INFO, NULL, "stream %s: removed", x->cs.name);
	pthread_mutex_lock(&e->st_lock);
	unlist_locked(e, x);
	pthread_mutex_unlock(&e->st_lock);
	entry_free(x);
}

/* Tear @p x down now if it is DELETING and nobody holds it. */
static void maybe_teardown(struct spate_engine *e, struct spate_sentry *x)
{
	bool go;

	pthread_mutex_lock(&e->st_lock);
	go = x->status == SPATE_ENGINE_STREAM_DELETING && !x->refs && !x->tearing;
	if (go)
		x->tearing = true;
	pthread_mutex_unlock(&e->st_lock);
	if (go)
		teardown(e, x);
}

static struct spate_sentry *entry_new(const struct spate_config_stream *cs, bool runtime)
{
	struct spate_sentry *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->cs = *cs;
	x->runtime = runtime;
	x->status = SPATE_ENGINE_STREAM_CREATING;
	x->stats_slot = -1;
	x->created_ns = spate_now_ns();
	x->retention_ns = cs->retention_ns;
	return x;
}

/* ------------------------------------------------------------------------ */
/* Public: add, remove, get, put                                            */
/* ------------------------------------------------------------------------ */

int spate_engine_stream_add(struct spate_engine *e, const struct spate_config_stream *cs_in,
			    char *err, size_t errlen)
{
	char dummy[8];
	struct spate_config_stream cs;
	struct spate_sentry *x;
	int rc;

	if (!err)
		err = dummy, errlen = sizeof(dummy);
	if (!e || !cs_in) {
		snprintf(err, errlen, "no engine or stream");
		return -EINVAL;
	}
	cs = *cs_in;
	cs.line = 0;
	rc = check_stream(e, &cs, err, errlen);
	if (rc < 0)
		return rc;
	x = entry_new(&cs, true);
	if (!x) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_lock(&e->st_lock);
	if (e->st_closing)
		rc = -ESHUTDOWN;
	else if (find_locked(e, cs.name))
		rc = -EEXIST;
	else if (e->rt_streams >= SPATE_ENGINE_RUNTIME_STREAMS_MAX ||
		 e->rt_shards + cs.shards > SPATE_ENGINE_RUNTIME_SHARDS_MAX || e->nents >= e->ents_cap)
		rc = -ENOSPC;
	if (rc == 0) {
		e->ents[e->nents++] = x;
		e->rt_streams++;
		e->rt_shards += cs.shards;
	}
	pthread_mutex_unlock(&e->st_lock);
	if (rc < 0) {
		snprintf(err, errlen, "stream %s: %s", cs.name,
			 rc == -EEXIST ? "a stream of that name exists"
			 : rc == -ENOSPC ? "the engine holds as many run-time streams or shards as it can"
					 : "the engine is closing");
		free(x);
		return rc;
	}
	/* The name is ours (CREATING): nothing of the bus names it, so what
	 * lies under it (a region or log of a stream removed before a crash,
	 * or of a YAML stream that is no longer configured) is an orphan. */
	spate_stream_unlink(e->cfg->bus, cs.name);
	if (cs.durability != SPATE_DURABILITY_OFF)
		log_remove(e, &cs, false);
	rc = def_write(e, x, status_names[SPATE_ENGINE_STREAM_ACTIVE]);
	if (rc < 0) {
		snprintf(err, errlen, "stream %s: writing its definition in %s/%s: %s", cs.name,
			 e->cfg->state_dir, SPATE_ENGINE_STREAMS_DIR, strerror(-rc));
		goto fail;
	}
	rc = make(e, x, err, errlen);
	if (rc < 0) {
		def_unlink(e, cs.name);
		goto fail;
	}
	pthread_mutex_lock(&e->st_lock);
	stats_claim_locked(e, x);
	persister_start_locked(e, x);
	x->status = SPATE_ENGINE_STREAM_ACTIVE;
	pthread_mutex_unlock(&e->st_lock);
	spate_slog(SPATE_LOG_INFO, NULL, "stream %s: created (%u shard(s), durability %u)", cs.name,
		   cs.shards, (unsigned)cs.durability);
	return 0;
fail:
	unmake(e, x);
	pthread_mutex_lock(&e->st_lock);
	unlist_locked(e, x);
	pthread_mutex_unlock(&e->st_lock);
	entry_free(x);
	return rc;
}

int spate_engine_stream_remove(struct spate_engine *e, const char *name, unsigned flags)
{
	struct spate_sentry *x;
	int rc = 0;

	if (!e || !name || (flags & ~SPATE_ENGINE_REMOVE_KEEP_LOG))
		return -EINVAL;
	pthread_mutex_lock(&e->st_lock);
	x = find_locked(e, name);
	if (!x || x->status == SPATE_ENGINE_STREAM_DELETING)
		rc = -ENOENT;
	else if (!x->runtime)
		rc = -EPERM;
	else if (x->status != SPATE_ENGINE_STREAM_ACTIVE)
		rc = -EBUSY;
	if (rc == 0) {
		x->status = SPATE_ENGINE_STREAM_DELETING;
		x->remove_flags = flags;
		x->refs++; /* ours, until the end of this call: x stays */
		/* A crash from here on finishes the removal at the next open. */
		int w = def_write(e, x, status_names[SPATE_ENGINE_STREAM_DELETING]);
		if (w < 0)
			spate_slog(SPATE_LOG_WARN, NULL, "stream %s: marking its definition deleted: %s",
				   name, strerror(-w));
	}
	pthread_mutex_unlock(&e->st_lock);
	if (rc < 0)
		return rc;
	/* Producers anywhere learn it at their next reserve (-ESTALE). */
	for (uint32_t k = 0; k < spate_stream_shards(x->s); k++)
		spate_ring_retire(spate_stream_ring(x->s, k));
	pthread_mutex_lock(&e->st_lock);
	persister_stop_locked(x);
	x->refs--;
	pthread_mutex_unlock(&e->st_lock);
	maybe_teardown(e, x);
	return 0;
}

struct spate_stream *spate_engine_stream_get(struct spate_engine *e, const char *name)
{
	struct spate_stream *s = NULL;

	if (!e || !name)
		return NULL;
	pthread_mutex_lock(&e->st_lock);
	struct spate_sentry *x = find_locked(e, name);
	if (x && x->status == SPATE_ENGINE_STREAM_ACTIVE) {
		x->refs++;
		s = x->s;
	}
	pthread_mutex_unlock(&e->st_lock);
	return s;
}

void spate_engine_stream_put(struct spate_engine *e, struct spate_stream *s)
{
	struct spate_sentry *x = NULL;

	if (!e || !s)
		return;
	pthread_mutex_lock(&e->st_lock);
	for (uint32_t i = 0; i < e->nents && !x; i++)
		/* refs first: an entry without references may be being
		 * made or torn down, its s written outside the lock. */
		if (e->ents[i]->refs && e->ents[i]->s == s)
			x = e->ents[i];
	if (x)
		x->refs--;
	pthread_mutex_unlock(&e->st_lock);
	if (x)
		maybe_teardown(e, x);
}

/* ------------------------------------------------------------------------ */
/* Public: info, list, retention, tags                                      */
/* ------------------------------------------------------------------------ */

static void info_of(const struct spate_sentry *x, struct spate_engine_stream_info *o)
{
	memset(o, 0, sizeof(*o));
	snprintf(o->name, sizeof(o->name), "%s", x->cs.name);
	o->shards = x->cs.shards;
	o->status = x->status;
	o->runtime = x->runtime;
	o->durability = x->cs.durability;
	o->retention_ns = x->retention_ns;
	o->created_ns = x->created_ns;
	o->n_tags = x->ntags;
	o->incarnation = x->incarnation; /* not x->s: a teardown may be closing it */
}

int spate_engine_stream_info(struct spate_engine *e, const char *name,
			     struct spate_engine_stream_info *out)
{
	int rc = -ENOENT;

	if (!e || !name || !out)
		return -EINVAL;
	pthread_mutex_lock(&e->st_lock);
	struct spate_sentry *x = find_locked(e, name);
	if (x) {
		info_of(x, out);
		rc = 0;
	}
	pthread_mutex_unlock(&e->st_lock);
	return rc;
}

int spate_engine_stream_config(struct spate_engine *e, const char *name,
			       struct spate_config_stream *out)
{
	int rc = -ENOENT;

	if (!e || !name || !out)
		return -EINVAL;
	pthread_mutex_lock(&e->st_lock);
	struct spate_sentry *x = find_locked(e, name);
	if (x) {
		*out = x->cs;
		out->retention_ns = x->retention_ns;
		rc = 0;
	}
	pthread_mutex_unlock(&e->st_lock);
	return rc;
}

int spate_engine_stream_list(struct spate_engine *e, struct spate_engine_stream_info *out,
			     uint32_t max)
{
	int n;

	if (!e || (max && !out))
		return -EINVAL;
	pthread_mutex_lock(&e->st_lock);
	for (uint32_t i = 0; i < e->nents && i < max; i++)
		info_of(e->ents[i], &out[i]);
	n = (int)e->nents;
	pthread_mutex_unlock(&e->st_lock);
	return n;
}

/* Find an ACTIVE stream for a change: 0, -ENOENT or -EBUSY. */
static int active_locked(struct spate_engine *e, const char *name, struct spate_sentry **out)
{
	struct spate_sentry *x = find_locked(e, name);

	*out = x;
	if (!x || x->status == SPATE_ENGINE_STREAM_DELETING)
		return -ENOENT;
	return x->status == SPATE_ENGINE_STREAM_ACTIVE ? 0 : -EBUSY;
}

int spate_engine_stream_set_retention(struct spate_engine *e, const char *name,
				      uint64_t retention_ns)
{
	struct spate_sentry *x;
	int rc;

	if (!e || !name || retention_ns < 1000000ull)
		return -EINVAL;
	pthread_mutex_lock(&e->st_lock);
	rc = active_locked(e, name, &x);
	if (rc == 0 && x->runtime) {
		uint64_t old = x->retention_ns;
		x->retention_ns = retention_ns;
		rc = def_write(e, x, status_names[x->status]);
		if (rc < 0)
			x->retention_ns = old;
	} else if (rc == 0) {
		x->retention_ns = retention_ns; /* YAML: until close (the file wins again) */
	}
	if (rc == 0) {
		/* The logs' writers pick it up at their next retention pass. */
		struct spate_persister *p = x->runtime ? &x->persist : &e->persist;
		for (uint32_t i = 0; i < p->n; i++)
			if (p->sh[i].s == x->s)
				spate_log_set_retention(p->sh[i].log, retention_ns);
	}
	pthread_mutex_unlock(&e->st_lock);
	return rc;
}

static int tag_cmp(const void *a, const void *b)
{
	return strcmp(((const struct spate_engine_tag *)a)->key,
		      ((const struct spate_engine_tag *)b)->key);
}

static int tag_find(const struct spate_engine_tag *t, uint32_t n, const char *key)
{
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp(t[i].key, key))
			return (int)i;
	return -1;
}

/* Swap in the tag set @p t (sorted here) and persist it; on failure the
 * old one stays and @p t is freed. */
static int tags_commit_locked(struct spate_engine *e, struct spate_sentry *x,
			      struct spate_engine_tag *t, uint32_t n)
{
	struct spate_engine_tag *old = x->tags;
	uint32_t oldn = x->ntags;

	qsort(t, n, sizeof(*t), tag_cmp);
	x->tags = t;
	x->ntags = n;
	int rc = def_write(e, x, status_names[x->status]);
	if (rc < 0) {
		x->tags = old;
		x->ntags = oldn;
		free(t);
		return rc;
	}
	free(old);
	return 0;
}

int spate_engine_stream_tag(struct spate_engine *e, const char *name,
			    const struct spate_engine_tag *tags, uint32_t n, char *err,
			    size_t errlen)
{
	char dummy[8];
	struct spate_sentry *x;
	int rc;

	if (!err)
		err = dummy, errlen = sizeof(dummy);
	if (!e || !name || (n && !tags)) {
		snprintf(err, errlen, "no engine, name or tags");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++) {
		size_t kl = strnlen(tags[i].key, sizeof(tags[i].key));
		size_t vl = strnlen(tags[i].value, sizeof(tags[i].value));
		if (!kl || kl > SPATE_ENGINE_TAG_KEY_MAX || vl > SPATE_ENGINE_TAG_VALUE_MAX) {
			snprintf(err, errlen, "tag %u: %s", i,
				 !kl ? "empty key" : kl > SPATE_ENGINE_TAG_KEY_MAX
							 ? "key longer than 128 characters"
							 : "value longer than 256 characters");
			return -EINVAL;
		}
	}
	pthread_mutex_lock(&e->st_lock);
	rc = active_locked(e, name, &x);
	if (rc < 0) {
		pthread_mutex_unlock(&e->st_lock);
		snprintf(err, errlen, "stream %s: %s", name,
			 rc == -ENOENT ? "not found" : "not active");
		return rc;
	}
	struct spate_engine_tag *t = malloc((x->ntags + n + 1) * sizeof(*t));
	uint32_t m = x->ntags;
	if (!t) {
		pthread_mutex_unlock(&e->st_lock);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (m)
		memcpy(t, x->tags, m * sizeof(*t));
	for (uint32_t i = 0; i < n; i++) {
		int j = tag_find(t, m, tags[i].key);
		if (j < 0)
			j = (int)m++;
		t[j] = tags[i];
		t[j].key[SPATE_ENGINE_TAG_KEY_MAX] = '\0';
		t[j].value[SPATE_ENGINE_TAG_VALUE_MAX] = '\0';
	}
	if (m > SPATE_ENGINE_TAGS_MAX) {
		free(t);
		rc = -ENOSPC;
		snprintf(err, errlen, "stream %s: more than %u tags", name, SPATE_ENGINE_TAGS_MAX);
	} else {
		rc = tags_commit_locked(e, x, t, m);
		if (rc < 0)
			snprintf(err, errlen, "stream %s: writing its definition: %s", name,
				 strerror(-rc));
	}
	pthread_mutex_unlock(&e->st_lock);
	return rc;
}

int spate_engine_stream_untag(struct spate_engine *e, const char *name, const char *const *keys,
			      uint32_t n)
{
	struct spate_sentry *x;
	int rc;

	if (!e || !name || (n && !keys))
		return -EINVAL;
	pthread_mutex_lock(&e->st_lock);
	rc = active_locked(e, name, &x);
	if (rc == 0) {
		struct spate_engine_tag *t = malloc((x->ntags + 1) * sizeof(*t));
		uint32_t m = 0;
		if (!t) {
			rc = -ENOMEM;
		} else {
			for (uint32_t i = 0; i < x->ntags; i++) {
				bool drop = false;
				for (uint32_t j = 0; j < n && !drop; j++)
					drop = keys[j] && !strcmp(keys[j], x->tags[i].key);
				if (!drop)
					t[m++] = x->tags[i];
			}
			if (m == x->ntags)
				free(t); /* nothing to change */
			else
				rc = tags_commit_locked(e, x, t, m);
		}
	}
	pthread_mutex_unlock(&e->st_lock);
	return rc;
}

int spate_engine_stream_tags(struct spate_engine *e, const char *name,
			     struct spate_engine_tag *out, uint32_t max)
{
	int rc = -ENOENT;

	if (!e || !name || (max && !out))
		return -EINVAL;
	pthread_mutex_lock(&e->st_lock);
	struct spate_sentry *x = find_locked(e, name);
	if (x) {
		for (uint32_t i = 0; i < x->ntags && i < max; i++)
			out[i] = x->tags[i];
		rc = (int)x->ntags;
	}
	pthread_mutex_unlock(&e->st_lock);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* The engine's life cycle                                                  */
/* ------------------------------------------------------------------------ */

int spate_engine_streams_init(struct spate_engine *e)
{
	pthread_mutex_init(&e->st_lock, NULL);
	e->ents_cap = e->cfg->n_streams + SPATE_ENGINE_RUNTIME_STREAMS_MAX;
	e->ents = calloc(e->ents_cap, sizeof(*e->ents));
	return e->ents ? 0 : -ENOMEM;
}

/* One definition file, parsed. */
struct def {
	struct spate_sentry *x;
	bool deleting, keep_log, api;
	char file[NAME_MAX + 1];
};

static uint64_t j_u64(json_object *o, const char *key, uint64_t dflt)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : dflt;
}

static int j_int(json_object *o, const char *key, int dflt)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_int(v) : dflt;
}

/* Parse definition @p path; -EBADMSG (said why in @p why) if it is not one. */
static int def_read(struct spate_engine *e, const char *path, const char *file, struct def *d,
		    char *why, size_t wlen)
{
	json_object *o = json_object_from_file(path), *v, *s, *t;
	struct spate_config_stream cs;
	int rc = -EBADMSG;

	memset(d, 0, sizeof(*d));
	snprintf(d->file, sizeof(d->file), "%s", file);
	if (!o || !json_object_is_type(o, json_type_object)) {
		snprintf(why, wlen, "not a JSON object");
		goto out;
	}
	if (!json_object_object_get_ex(o, "name", &v) || !json_object_is_type(v, json_type_string) ||
	    strlen(json_object_get_string(v)) > SPATE_CONFIG_NAME_MAX ||
	    strlen(file) != strlen(json_object_get_string(v)) + 5 ||
	    strncmp(file, json_object_get_string(v), strlen(file) - 5)) {
		snprintf(why, wlen, "its name is missing or is not the file's");
		goto out;
	}
	spate_config_stream_defaults(&cs);
	snprintf(cs.name, sizeof(cs.name), "%s", json_object_get_string(v));
	d->api = json_object_object_get_ex(o, "origin", &v) &&
		 !strcmp(json_object_get_string(v), "api");
	d->deleting = json_object_object_get_ex(o, "status", &v) &&
		      !strcmp(json_object_get_string(v), "DELETING");
	d->keep_log = json_object_object_get_ex(o, "keep_log", &v) && json_object_get_boolean(v);
	if (json_object_object_get_ex(o, "stream", &s) && json_object_is_type(s, json_type_object)) {
		cs.shards = (uint32_t)j_u64(s, "shards", cs.shards);
		cs.ring_size = j_u64(s, "ring_size", cs.ring_size);
		cs.max_record_size = j_u64(s, "max_record_size", cs.max_record_size);
		cs.producers = (enum spate_config_producers)j_int(s, "producers", (int)cs.producers);
		cs.huge_pages = (enum spate_config_huge)j_int(s, "huge_pages", (int)cs.huge_pages);
		cs.full = (enum spate_config_full)j_int(s, "full", (int)cs.full);
		cs.durability = (enum spate_durability)j_int(s, "durability", (int)cs.durability);
		cs.durability_interval_ns = j_u64(s, "durability_interval_ns", cs.durability_interval_ns);
		cs.segment_size = j_u64(s, "segment_size", cs.segment_size);
		cs.retention_bytes = j_u64(s, "retention_bytes", cs.retention_bytes);
		if (json_object_object_get_ex(s, "direct_io", &v))
			cs.direct_io = json_object_get_boolean(v);
		if (json_object_object_get_ex(s, "log_dir", &v))
			snprintf(cs.log_dir, sizeof(cs.log_dir), "%s", json_object_get_string(v));
	} else if (d->api) {
		snprintf(why, wlen, "no \"stream\" object");
		goto out;
	}
	cs.retention_ns = j_u64(o, "retention_ns", cs.retention_ns);
	if (d->api && check_stream(e, &cs, why, wlen) < 0)
		goto out;
	d->x = entry_new(&cs, d->api);
	if (!d->x) {
		rc = -ENOMEM;
		goto out;
	}
	d->x->created_ns = j_u64(o, "created_ns", d->x->created_ns);
	d->x->remove_flags = d->keep_log ? SPATE_ENGINE_REMOVE_KEEP_LOG : 0;
	if (json_object_object_get_ex(o, "tags", &t) && json_object_is_type(t, json_type_object)) {
		size_t n = (size_t)json_object_object_length(t);
		d->x->tags = calloc(n + 1, sizeof(*d->x->tags));
		if (!d->x->tags) {
			rc = -ENOMEM;
			goto out;
		}
		json_object_object_foreach(t, key, val) {
			if (d->x->ntags >= SPATE_ENGINE_TAGS_MAX || !key[0] ||
			    strlen(key) > SPATE_ENGINE_TAG_KEY_MAX)
				continue;
			struct spate_engine_tag *g = &d->x->tags[d->x->ntags++];
			snprintf(g->key, sizeof(g->key), "%s", key);
			snprintf(g->value, sizeof(g->value), "%s", json_object_get_string(val));
		}
		qsort(d->x->tags, d->x->ntags, sizeof(*d->x->tags), tag_cmp);
	}
	rc = 0;
out:
	if (rc < 0 && d->x) {
		entry_free(d->x);
		d->x = NULL;
	}
	json_object_put(o);
	return rc;
}

static int def_cmp(const void *a, const void *b)
{
	const struct def *x = a, *y = b;
	uint64_t p = x->x->created_ns, q = y->x->created_ns;
	return p < q ? -1 : p > q ? 1 : strcmp(x->file, y->file);
}

/* Apply one definition at open (see spate_engine_streams_load). */
static void def_apply(struct spate_engine *e, struct def *d)
{
	char path[SPATE_CONFIG_PATH_MAX + 64], to[SPATE_CONFIG_PATH_MAX + 80], err[512];
	struct spate_sentry *x = d->x, *y = find_locked(e, x->cs.name);

	d->x = NULL;
	if (!x->runtime) {
		/* A YAML stream's tags and creation time. */
		if (y && !y->runtime) {
			free(y->tags);
			y->tags = x->tags;
			y->ntags = x->ntags;
			y->created_ns = x->created_ns;
			x->tags = NULL;
		}
		entry_free(x);
		return;
	}
	if (y) {
		/* The configuration file wins a name clash. */
		path_of(e, x->cs.name, "", path, sizeof(path));
		path_of(e, x->cs.name, ".shadowed", to, sizeof(to));
		rename(path, to);
		spate_slog(SPATE_LOG_WARN, NULL,
			   "stream %s is defined by %s and by a run-time definition: the configuration "
			   "wins; the definition is set aside as %s",
			   x->cs.name, e->cfg->source[0] ? e->cfg->source : "the configuration", to);
		entry_free(x);
		return;
	}
	if (d->deleting) {
		/* A removal a crash interrupted: finish it. */
		spate_stream_unlink(e->cfg->bus, x->cs.name);
		if (x->cs.durability != SPATE_DURABILITY_OFF)
			log_remove(e, &x->cs, d->keep_log);
		def_unlink(e, x->cs.name);
		spate_slog(SPATE_LOG_INFO, NULL, "stream %s: its interrupted removal is finished",
			   x->cs.name);
		entry_free(x);
		return;
	}
	if (e->rt_streams >= SPATE_ENGINE_RUNTIME_STREAMS_MAX ||
	    e->rt_shards + x->cs.shards > SPATE_ENGINE_RUNTIME_SHARDS_MAX ||
	    e->nents >= e->ents_cap) {
		spate_slog(SPATE_LOG_ERROR, NULL, "stream %s: beyond the engine's run-time stream "
			   "limits: not opened (its definition stays)", x->cs.name);
		entry_free(x);
		return;
	}
	int rc = make(e, x, err, sizeof(err));
	if (rc < 0) {
		spate_slog(SPATE_LOG_ERROR, NULL, "stream %s: not opened (its definition stays): %s",
			   x->cs.name, err);
		spate_persister_fini(&x->persist);
		spate_stream_close(x->s);
		entry_free(x);
		return;
	}
	x->status = SPATE_ENGINE_STREAM_ACTIVE;
	e->ents[e->nents++] = x;
	e->rt_streams++;
	e->rt_shards += x->cs.shards;
}

int spate_engine_streams_load(struct spate_engine *e, char *err, size_t errlen)
{
	char dir[SPATE_CONFIG_PATH_MAX + 16], path[SPATE_CONFIG_PATH_MAX + 300], why[512];
	struct def *defs = NULL;
	uint32_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	for (uint32_t i = 0; i < e->nstreams; i++) {
		struct spate_sentry *x = entry_new(&e->cfg->streams[i], false);
		if (!x)
			return -ENOMEM;
		x->s = e->streams[i];
		x->incarnation = spate_stream_incarnation(x->s);
		x->status = SPATE_ENGINE_STREAM_ACTIVE;
		e->ents[e->nents++] = x;
	}
	if (path_of(e, NULL, "", dir, sizeof(dir)) < 0)
		return 0;
	d = opendir(dir);
	if (!d)
		return 0; /* none yet */
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l < 6 || strcmp(de->d_name + l - 5, ".json"))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
			continue;
		if (n == cap) {
			struct def *m = realloc(defs, (cap ? cap * 2 : 8) * sizeof(*defs));
			if (!m) {
				rc = -ENOMEM;
				break;
			}
			defs = m;
			cap = cap ? cap * 2 : 8;
		}
		int r = def_read(e, path, de->d_name, &defs[n], why, sizeof(why));
		if (r == -ENOMEM) {
			rc = r;
			break;
		}
		if (r < 0)
			spate_slog(SPATE_LOG_ERROR, NULL, "%s: not a stream definition (%s): ignored",
				   path, why);
		else
			n++;
	}
	closedir(d);
	if (rc == 0) {
		/* Creation order, as the registry lists them. */
		qsort(defs, n, sizeof(*defs), def_cmp);
		for (uint32_t i = 0; i < n; i++)
			def_apply(e, &defs[i]);
	}
	for (uint32_t i = 0; i < n; i++)
		entry_free(defs[i].x);
	free(defs);
	if (rc < 0)
		snprintf(err, errlen, "stream definitions in %s: %s", dir, strerror(-rc));
	return rc;
}

void spate_engine_streams_stats(struct spate_engine *e)
{
	pthread_mutex_lock(&e->st_lock);
	for (uint32_t i = 0; i < e->nents; i++)
		if (e->ents[i]->runtime && e->ents[i]->s)
			stats_claim_locked(e, e->ents[i]);
	pthread_mutex_unlock(&e->st_lock);
}

void spate_engine_streams_start(struct spate_engine *e)
{
	pthread_mutex_lock(&e->st_lock);
	e->st_running = true;
	for (uint32_t i = 0; i < e->nents; i++)
		if (e->ents[i]->status == SPATE_ENGINE_STREAM_ACTIVE)
			persister_start_locked(e, e->ents[i]);
	pthread_mutex_unlock(&e->st_lock);
}

void spate_engine_streams_stop(struct spate_engine *e)
{
	if (!e->ents)
		return;
	pthread_mutex_lock(&e->st_lock);
	e->st_running = false;
	for (uint32_t i = 0; i < e->nents; i++)
		persister_stop_locked(e->ents[i]);
	pthread_mutex_unlock(&e->st_lock);
}

void spate_engine_streams_close(struct spate_engine *e)
{
	if (!e->ents)
		return;
	pthread_mutex_lock(&e->st_lock);
	e->st_closing = true;
	pthread_mutex_unlock(&e->st_lock);
	spate_engine_streams_stop(e);
	/* Nobody else calls in now (the callers' part of the contract). */
	while (e->nents) {
		struct spate_sentry *x = e->ents[e->nents - 1];
		if (x->runtime && x->status == SPATE_ENGINE_STREAM_DELETING && !x->tearing) {
			x->tearing = true;
			x->refs = 0;
			teardown(e, x); /* unlists and frees it */
			continue;
		}
		if (x->runtime) {
			spate_persister_fini(&x->persist);
			spate_stream_close(x->s);
		}
		e->nents--;
		entry_free(x);
	}
	free(e->ents);
	e->ents = NULL;
	pthread_mutex_destroy(&e->st_lock);
}

uint32_t spate_engine_streams_hold(struct spate_engine *e, struct spate_stream **out, uint32_t max)
{
	uint32_t n = 0;

	pthread_mutex_lock(&e->st_lock);
	for (uint32_t i = 0; i < e->nents && n < max; i++) {
		struct spate_sentry *x = e->ents[i];
		if (x->runtime && x->status == SPATE_ENGINE_STREAM_ACTIVE) {
			x->refs++;
			out[n++] = x->s;
		}
	}
	pthread_mutex_unlock(&e->st_lock);
	return n;
}

void spate_engine_streams_release(struct spate_engine *e, struct spate_stream **held, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		spate_engine_stream_put(e, held[i]);
}
