/* SPDX-License-Identifier: MIT */
/**
 * @file spate/engine.h
 * @brief The embedded engine: streams, consumers (event source mappings)
 *        and their workers, from a configuration file or struct.
 *
 * An appliance embeds spate like this:
 *
 *     struct spate_engine *e;
 *     char err[512];
 *     if (spate_engine_open_file("bus.yaml", &e, err, sizeof(err)) < 0)
 *             die(err);
 *     spate_engine_start(e);
 *     struct spate_producer *p;
 *     spate_producer_open(spate_engine_stream(e, "orders"), SPATE_RING_WAIT_YIELD, 0, &p);
 *     spate_put(p, "key", 3, "hello", 5, NULL);
 *     ...
 *     spate_engine_stop(e);    // drain, flush, checkpoint
 *     spate_engine_close(e);
 *
 * Threads: open/start/stop/close/deploy on one control thread; the stream
 * lookups, stats and the run-time stream functions (stream_add, _remove,
 * _get/_put, _info, _list, retention, tags) from any thread while the
 * engine exists.
 */
#ifndef SPATE_ENGINE_H
#define SPATE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "spate/config.h"
#include "spate/consumer_types.h"
#include "spate/hist.h"
#include "spate/plugin.h"
#include "spate/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

struct spate_engine;

/** Counters of one consumer (summed over its shards and lanes). */
struct spate_consumer_stats {
	uint64_t records;        /**< processed successfully */
	uint64_t bytes;
	uint64_t batches;
	uint64_t retries;        /**< batch deliveries that were retries */
	uint64_t failed;         /**< records sent to the failure destination (or dropped) */
	uint64_t expired;        /**< of which for max_record_age */
	uint64_t lag_records;    /**< behind the shards' tails now */
	uint64_t cold_start_ns;  /**< longest plugin init */
	uint64_t first_batch_ns; /**< start to end of the first processed batch */
	uint64_t helped;         /**< steps done by a worker helping with a lagging shard */
	uint32_t state;          /**< enum spate_consumer_state */
	char error[200];         /**< why it stopped, if it did */
	uint64_t log_records;    /**< read from the stream's log (history, or after falling behind) */
	uint64_t log_gaps;       /**< records retention deleted before they were read */
	uint32_t log_spills;     /**< switches from the ring to the log (fell half a ring behind) */
	uint32_t on_log;         /**< tasks reading the log right now */
};


/**
 * Create an engine from a configuration, which must stay valid until
 * spate_engine_close(). Streams are created, or
 * attached if they exist with the same shape; plugins are loaded and their
 * ABI checked; checkpoints are read from state_dir.
 * @return 0, -EINVAL (bad config: @p err says why), -EPROTO/-ELIBBAD/-ENOENT
 *         (a plugin), or the errors of spate_stream_create/attach.
 */
int spate_engine_open(const struct spate_config *cfg, struct spate_engine **out, char *err,
		      size_t errlen);
/** spate_engine_open() from a YAML file; errors name file, line and field. */
int spate_engine_open_file(const char *path, struct spate_engine **out, char *err, size_t errlen);
/** Start the workers (pinned per the placement plan). @return 0 or -errno. */
int spate_engine_start(struct spate_engine *e);
/** Stop: finish in-flight batches, flush plugins, write checkpoints. */
int spate_engine_stop(struct spate_engine *e);
/** Free everything (stops first if running). NULL-safe. Streams stay. */
void spate_engine_close(struct spate_engine *e);

/** A stream of the engine by name, or NULL. Without a reference: fine for
 *  YAML streams (they live until close); for a run-time stream that may be
 *  removed use spate_engine_stream_get(). */
struct spate_stream *spate_engine_stream(struct spate_engine *e, const char *name);
/** Counters of consumer @p name. @return 0 or -ENOENT. */
int spate_engine_consumer_stats(struct spate_engine *e, const char *name,
				struct spate_consumer_stats *st);
/**
 * Merge consumer @p name's sampled latency (a record's commit to its delivery
 * to the plugin, ns; 1 delivery in 8) into @p out (initialised by the
 * caller). The histogram is the consumer's in the counters region, or one
 * kept in this process when counters are off. Call after
 * spate_engine_stop(), when every delivery has been counted.
 * @return 0, -ENOENT, -EBUSY (still running), -EPROTO (@p out is not an
 *         initialised histogram).
 */
int spate_engine_consumer_latency(struct spate_engine *e, const char *name, struct spate_hist *out);

/** Print the placement plan (which core runs which worker and task). */
void spate_engine_describe(struct spate_engine *e, char *buf, size_t len);

/**
 * Hot deploy: replace consumer @p name's plugin with the build at @p path
 * while streams run: pause its tasks after their current batch, flush and
 * fini the old states, checkpoint, load the new image (a new copy, so the
 * same path loads a new build), init, resume. Nothing is lost; duplicates
 * only within at-least-once.
 * @return 0, -ENOENT (no such consumer), or the plugin load errors (the old
 *         plugin keeps running then).
 */
int spate_engine_deploy(struct spate_engine *e, const char *name, const char *path, char *err,
			size_t errlen);

/* Streams created and deleted while the engine runs ------------------- */

/*
 * Run-time streams (the Kinesis door's CreateStream / DeleteStream) live
 * next to the streams of the configuration file ("YAML streams"):
 *
 *   - Thread safety: every function of this section may be called from any
 *     thread, before or after spate_engine_start(), concurrently with each
 *     other and with the engine's own threads, until spate_engine_close().
 *     A stream is shown (ACTIVE) only once its shards, its log and its
 *     counters are complete: neither the engine's threads nor a caller of
 *     spate_engine_stream_get() ever see a half-made or half-removed stream.
 *   - Durability of the definition: spate_engine_stream_add() writes
 *     <state_dir>/streams/<name>.json (tmp + fsync + rename + directory
 *     fsync) before it creates anything; the next spate_engine_open() of the
 *     bus (after a stop, a crash or a SIGKILL) brings the stream back with
 *     its shared memory or its log, its retention and its tags.
 *   - Name clashes: a YAML stream always wins. A definition file whose name
 *     is also a YAML stream is set aside at open (renamed
 *     <name>.json.shadowed, with a warning naming both) and never applied.
 *   - YAML streams cannot be removed (-EPERM: the configuration file owns
 *     them); their tags and retention may be changed like a run-time
 *     stream's: tags are kept in <state_dir>/streams/<name>.json too, a
 *     retention change lasts until the engine closes (the file wins again).
 *   - Limits: SPATE_ENGINE_RUNTIME_STREAMS_MAX run-time streams of
 *     SPATE_ENGINE_RUNTIME_SHARDS_MAX shards in all (-ENOSPC beyond): the
 *     counters region reserves that room when the engine opens, so `spate
 *     stat`, `spate top` and the Prometheus endpoint show every stream.
 *   - Consumers of the configuration file read YAML streams only (as
 *     before); a run-time stream is read through its rings or its log
 *     (spate_engine_stream_get()).
 */

/** Run-time streams an engine holds at most at once. */
#define SPATE_ENGINE_RUNTIME_STREAMS_MAX 32u
/** Shards of all run-time streams at most at once. */
#define SPATE_ENGINE_RUNTIME_SHARDS_MAX 256u
/** Tags per stream (Kinesis: 50), longest key and value (128, 256). */
#define SPATE_ENGINE_TAGS_MAX 50u
#define SPATE_ENGINE_TAG_KEY_MAX 128u
#define SPATE_ENGINE_TAG_VALUE_MAX 256u
/** Directory of <state_dir> holding the run-time definitions. */
#define SPATE_ENGINE_STREAMS_DIR "streams"

/** Life of a stream (Kinesis StreamStatus). */
enum spate_engine_stream_status {
	SPATE_ENGINE_STREAM_CREATING = 0, /**< being made: not usable yet */
	SPATE_ENGINE_STREAM_ACTIVE = 1,
	SPATE_ENGINE_STREAM_DELETING = 2, /**< removed: its memory goes once unused */
};

/** What one stream is now (a copy: stays valid whatever happens next). */
struct spate_engine_stream_info {
	char name[SPATE_CONFIG_NAME_MAX + 1];
	uint32_t shards;
	uint32_t status;          /**< enum spate_engine_stream_status */
	bool runtime;             /**< created by spate_engine_stream_add() (else YAML) */
	enum spate_durability durability;
	uint64_t retention_ns;    /**< now (after any change) */
	uint64_t created_ns;      /**< CLOCK_REALTIME when it was first created (kept across restarts) */
	uint32_t n_tags;
	uint64_t incarnation;     /**< spate_stream_incarnation() (0 while CREATING) */
};

/** One tag (key non-empty). */
struct spate_engine_tag {
	char key[SPATE_ENGINE_TAG_KEY_MAX + 1];
	char value[SPATE_ENGINE_TAG_VALUE_MAX + 1];
};

/**
 * Create stream @p cs (a copy is kept; its line, log_dir "" and every field
 * are checked like a YAML stream's: spate_config_validate() rules) in the
 * running (or opened) engine: definition file, shared memory, log and
 * persister thread if durability is not off, counters. Returns once the
 * stream is ACTIVE.
 * @return 0; -EINVAL (@p err says which field and why), -EEXIST (a stream
 *         of that name exists, YAML or run-time, in any status), -ENOSPC
 *         (SPATE_ENGINE_RUNTIME_STREAMS_MAX or _SHARDS_MAX reached),
 *         -ESHUTDOWN (the engine is closing), -ENOMEM, or the errors of
 *         spate_stream_create() and of the log (@p err says which).
 */
int spate_engine_stream_add(struct spate_engine *e, const struct spate_config_stream *cs,
			    char *err, size_t errlen);

/** spate_engine_stream_remove(): keep the stream's log files on disk. */
#define SPATE_ENGINE_REMOVE_KEEP_LOG 1u

/**
 * Remove run-time stream @p name: DELETING at once (gets and adds of the
 * name fail), its definition is marked so a restart finishes the removal,
 * its rings are retired (producers anywhere get -ESTALE at their next
 * reserve, readers waiting for data -ESTALE), its persister stops, and when
 * the last spate_engine_stream_get() reference is put: its shared memory is
 * unlinked (processes that still map it keep a valid mapping until they
 * close it), its log is deleted (unless @p flags has
 * SPATE_ENGINE_REMOVE_KEEP_LOG), its counters slot is freed, the definition
 * file goes, and the name can be used again.
 * @return 0 (removed, or the removal is under way because references are
 *         held), -ENOENT (no such stream, or already DELETING), -EPERM (a
 *         YAML stream), -EBUSY (still CREATING), -EINVAL.
 */
int spate_engine_stream_remove(struct spate_engine *e, const char *name, unsigned flags);

/**
 * An ACTIVE stream (YAML or run-time) by name, with a reference that keeps
 * it mapped and usable until spate_engine_stream_put(), even if another
 * thread removes it meanwhile (its rings then say -ESTALE). Use this, not
 * spate_engine_stream(), for a stream that may be removed.
 * @return the stream, or NULL (no such ACTIVE stream).
 */
struct spate_stream *spate_engine_stream_get(struct spate_engine *e, const char *name);
/** Give back a reference of spate_engine_stream_get(). NULL-safe. */
void spate_engine_stream_put(struct spate_engine *e, struct spate_stream *s);

/**
 * What stream @p name is now, in any status.
 * @return 0 or -ENOENT.
 */
int spate_engine_stream_info(struct spate_engine *e, const char *name,
			     struct spate_engine_stream_info *out);

/**
 * The definition of stream @p name (YAML or run-time, any status): its keys
 * as checked at creation (max_record_size resolved), with its current
 * retention, e.g. for spate_config_stream_log_dir() to read its log.
 * @return 0 or -ENOENT.
 */
int spate_engine_stream_config(struct spate_engine *e, const char *name,
			       struct spate_config_stream *out);

/**
 * A consistent list of every stream (YAML ones first, in file order, then
 * run-time ones in creation order), taken at one moment while others add
 * and remove: up to @p max entries into @p out (may be NULL with 0).
 * @return the number of streams (may exceed @p max: call again larger).
 */
int spate_engine_stream_list(struct spate_engine *e, struct spate_engine_stream_info *out,
			     uint32_t max);

/**
 * Set stream @p name's retention (Kinesis Increase/DecreaseStreamRetentionPeriod):
 * its log deletes segments by the new age from its next round on, and the
 * value is persisted (run-time streams).
 * @return 0, -ENOENT, -EINVAL (below 1 ms), -EBUSY (not ACTIVE), or the
 *         -errno of writing the definition (nothing changed then).
 */
int spate_engine_stream_set_retention(struct spate_engine *e, const char *name,
				      uint64_t retention_ns);

/**
 * Add or replace tags of stream @p name (AddTagsToStream): all or nothing,
 * persisted before it returns.
 * @return 0, -ENOENT, -EINVAL (an empty or too long key or value: @p err
 *         says which), -ENOSPC (more than SPATE_ENGINE_TAGS_MAX tags would
 *         result), -EBUSY (not ACTIVE), or the -errno of writing the file.
 */
int spate_engine_stream_tag(struct spate_engine *e, const char *name,
			    const struct spate_engine_tag *tags, uint32_t n, char *err,
			    size_t errlen);

/**
 * Remove the tags named in @p keys (RemoveTagsFromStream; unknown keys are
 * ignored), persisted before it returns.
 * @return 0, -ENOENT, -EBUSY (not ACTIVE), or the -errno of writing.
 */
int spate_engine_stream_untag(struct spate_engine *e, const char *name, const char *const *keys,
			      uint32_t n);

/**
 * Tags of stream @p name, sorted by key: up to @p max into @p out.
 * @return the number of tags (may exceed @p max), or -ENOENT.
 */
int spate_engine_stream_tags(struct spate_engine *e, const char *name,
			     struct spate_engine_tag *out, uint32_t max);

/* One engine per bus ----------------------------------------------------- */

/** The file in state_dir whose flock(2) marks the running engine; it holds
 *  "<pid> <start time>" of the holder. */
#define SPATE_ENGINE_LOCK_FILE "engine.lock"

struct spate_engine_lock;

/**
 * Take the engine lock of @p state_dir (exclusive, created 0600), as
 * spate_engine_open() does before it maps anything, and `spate rm` while it
 * removes a bus. Retries for up to 10 ms (a probe holds it for a moment).
 * Any thread; the lock belongs to the returned handle.
 * @return 0, -EBUSY (held: @p holder, if not NULL, gets the holder's pid, 0
 *         if it has not written it yet), -ENAMETOOLONG, -ENOMEM, or the
 *         -errno of open(2)/flock(2).
 */
int spate_engine_lock(const char *state_dir, struct spate_engine_lock **out, pid_t *holder);
/** Release it. NULL-safe. */
void spate_engine_unlock(struct spate_engine_lock *l);
/**
 * Whether an engine holds @p state_dir's lock, without taking it. The pid of
 * a held lock is the live holder's (never a stale one: the kernel drops the
 * lock when its holder dies).
 * @return 1 (held: *pid, *start its pid and start time, each if not NULL;
 *         pid 0 if not written yet), 0 (free: no engine runs), or -errno.
 */
int spate_engine_lock_holder(const char *state_dir, pid_t *pid, uint64_t *start);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_ENGINE_H */
