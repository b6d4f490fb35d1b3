/* SPDX-License-Identifier: MIT */
/**
 * @file spate/sources.h
 * @brief Sources: doors that append to a stream from outside the bus (a
 *        NATS JetStream import, a DPDK port), declared under `sources:` in
 *        the bus configuration and run by the engine.
 *
 * A bus file lists its sources beside its streams and consumers:
 *
 *     sources:
 *       - name: from-edge
 *         type: nats                 # a registered source type
 *         stream: orders             # the stream it appends to
 *         servers: [nats://10.0.0.1:4222, nats://10.0.0.2:4222]
 *         auth: { user: spate, password_file: /etc/spate/nats.pw }
 *
 * The core knows `name`, `type` and `stream`; every other key is kept as
 * written (scalars, nested mappings and lists, each node with its line and
 * path: struct spate_config_node, spate/config.h) and belongs to the source
 * type. A door implements a type:
 *
 *     static int my_check(const struct spate_config_source *src, char *err, size_t errlen);
 *     static int my_start(struct spate_engine *e, const struct spate_config_source *src,
 *                         void **state, char *err, size_t errlen);
 *     static void my_stop(void *state);
 *     const struct spate_source_type my_type = {
 *             .struct_size = sizeof(struct spate_source_type),
 *             .name = "mine", .check = my_check, .start = my_start, .stop = my_stop,
 *     };
 *
 * and the program that runs the engine registers it between
 * spate_engine_open() and spate_engine_start() (`spate run` registers the
 * built-in types of engine/sources/). Registering runs check() on every
 * entry of that type; spate_engine_start() refuses an entry whose type no
 * one registered.
 *
 * Lifecycle. spate_engine_start() starts the sources last, once the streams
 * are open and the consumers' workers, the persister and the control
 * thread run, in file order, calling start() on the control thread; a
 * failing start() stops the sources already started and the engine, and
 * the start fails. spate_engine_stop() stops the sources first (stop(), in
 * reverse order), before the consumers and the persister, so a source's
 * last appends are consumed and written like any other. stop() must return
 * only when the source no longer touches the engine (threads joined).
 *
 * A source appends with the normal producer API on
 * spate_engine_stream(e, src->stream) (spate/stream.h), and may acknowledge
 * its peer only once a record is committed, or durable
 * (spate_stream_durability(), spate_stream_wait_durable()). Its state for
 * `spate stat`, `spate top` and Prometheus goes to its slot of the counters
 * region (spate_engine_source_stats(), spate/stats.h).
 *
 * Versioning: struct spate_source_type only ever gains fields at its end;
 * the engine reads no field past the type's struct_size and refuses a size
 * below SPATE_SOURCE_TYPE_MIN_SIZE.
 *
 * Threads: register on the control thread (as open/start/stop); the config
 * accessors are pure (any thread); check() and start() run on the control
 * thread; stop() too.
 */
#ifndef SPATE_SOURCES_H
#define SPATE_SOURCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spate/config.h"

#ifdef __cplusplus
extern "C" {
#endif

struct spate_engine;
struct spate_stats_source_slot;

/** A kind of source, provided by a door. */
struct spate_source_type {
	uint32_t struct_size; /**< sizeof(struct spate_source_type) the door was built with */
	uint32_t reserved_;   /**< 0 */
	/** The `type:` value it serves ([A-Za-z0-9_-], at most 40 characters). */
	const char *name;
	/**
	 * Check one entry's type-specific keys (unknown keys, values); no side
	 * effect. Write "<file>:<line>: <path>: <why>" to @p err
	 * (spate_config_node_error() does). May be NULL (nothing to check).
	 * @return 0 or -EINVAL.
	 */
	int (*check)(const struct spate_config_source *src, char *err, size_t errlen);
	/**
	 * Start the source: connect, start its threads, and store what stop()
	 * needs in @p *state. @p src stays valid until stop() returns. On
	 * failure nothing is left running and @p err says why.
	 * @return 0 or -errno.
	 */
	int (*start)(struct spate_engine *e, const struct spate_config_source *src, void **state,
		     char *err, size_t errlen);
	/** Stop it: no append after this returns; free @p state. */
	void (*stop)(void *state);
};

/** The smallest struct_size the engine accepts (the fields above). */
#define SPATE_SOURCE_TYPE_MIN_SIZE (offsetof(struct spate_source_type, stop) + sizeof(void (*)(void *)))
/** Source types one engine holds. */
#define SPATE_SOURCE_TYPES_MAX 16u

/**
 * Register source type @p t with engine @p e (@p t must outlive the engine),
 * and check every entry of `sources:` of that type with t->check().
 * Between spate_engine_open() and spate_engine_start().
 * @return 0; -EINVAL (a bad type struct, or an entry fails its check: @p err
 *         says where), -EEXIST (a type of that name is registered), -EBUSY
 *         (the engine runs), -ENOSPC (SPATE_SOURCE_TYPES_MAX reached).
 */
int spate_engine_register_source_type(struct spate_engine *e, const struct spate_source_type *t,
				      char *err, size_t errlen);

/**
 * The counters-region slot of source @p name (spate/stats.h: state, last
 * error, named counters), for the door to fill. With counters off, a slot
 * in this process's memory, so a door never checks. Valid until
 * spate_engine_close().
 * @return the slot, or NULL if the engine has no source of that name.
 */
struct spate_stats_source_slot *spate_engine_source_stats(struct spate_engine *e, const char *name);

/** The configuration engine @p e runs (its streams' settings, state_dir,
 *  spate_config_stream_log_dir()). Valid until spate_engine_close(). */
const struct spate_config *spate_engine_config(struct spate_engine *e);

/* ------------------------------------------------------------------------ */
/* Reading an entry's keys                                                  */
/* ------------------------------------------------------------------------ */

/** Type-specific key @p key of @p src (a top-level key of its entry), or NULL. */
const struct spate_config_node *spate_config_source_key(const struct spate_config_source *src,
							const char *key);
/** Entry @p key of mapping @p map, or NULL (also if @p map is not a MAP). */
const struct spate_config_node *spate_config_node_get(const struct spate_config_node *map,
						      const char *key);

/**
 * Write "<file>:<line>: <node's path>: <message>" to @p err (the entry's
 * line if @p n is NULL) and return -EINVAL, for a door's check() and
 * start(). @p fmt is printf-style.
 */
__attribute__((format(printf, 5, 6))) int
spate_config_node_error(const struct spate_config_source *src, const struct spate_config_node *n,
			char *err, size_t errlen, const char *fmt, ...);

/**
 * Refuse keys of mapping @p map (an entry's `keys`, or a nested mapping)
 * that are not in @p known (NULL-terminated): "unknown key; did you mean
 * ..." or the list of valid keys, with file and line.
 * @return 0 or -EINVAL.
 */
int spate_config_node_known(const struct spate_config_source *src,
			    const struct spate_config_node *map, const char *const *known,
			    char *err, size_t errlen);

/**
 * Typed reads of scalar @p key of mapping @p map (an entry's `keys` or a
 * nested mapping). An absent key (or a null value) leaves @p out at its
 * default and returns 0; a present one of the wrong shape or out of
 * [@p lo, @p hi] is -EINVAL with a message naming file, line and path.
 * Strings are views into the config (valid as long as it is).
 */
int spate_config_node_str(const struct spate_config_source *src,
			  const struct spate_config_node *map, const char *key, const char **out,
			  char *err, size_t errlen);
/** An integer in [lo, hi]. */
int spate_config_node_u64(const struct spate_config_source *src,
			  const struct spate_config_node *map, const char *key, uint64_t lo,
			  uint64_t hi, uint64_t *out, char *err, size_t errlen);
/** A size ("64KiB", spate_config_parse_size()) in [lo, hi] bytes. */
int spate_config_node_size(const struct spate_config_source *src,
			   const struct spate_config_node *map, const char *key, uint64_t lo,
			   uint64_t hi, uint64_t *out, char *err, size_t errlen);
/** A duration ("2s", spate_config_parse_duration()) in [lo, hi] ns. */
int spate_config_node_dur(const struct spate_config_source *src,
			  const struct spate_config_node *map, const char *key, uint64_t lo,
			  uint64_t hi, uint64_t *out, char *err, size_t errlen);
/** A boolean (true/false, yes/no, on/off). */
int spate_config_node_bool(const struct spate_config_source *src,
			   const struct spate_config_node *map, const char *key, bool *out,
			   char *err, size_t errlen);
/** One of @p names (NULL-terminated, case ignored): its index in @p out. */
int spate_config_node_enum(const struct spate_config_source *src,
			   const struct spate_config_node *map, const char *key,
			   const char *const *names, int *out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_SOURCES_H */
