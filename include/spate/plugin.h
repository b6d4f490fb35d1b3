/* SPDX-License-Identifier: MIT */
/**
 * @file spate/plugin.h
 * @brief The consumer plugin ABI: what a shared object exports so that the
 *        engine can hand it batches (the Lambda function of an event source
 *        mapping).
 *
 * A plugin exports exactly one symbol, SPATE_PLUGIN_SYMBOL, a
 * `const struct spate_plugin` whose first two fields are the ABI version and
 * the struct size. The host loads it with dlopen(RTLD_NOW | RTLD_LOCAL),
 * checks both, and refuses what it cannot run loudly, naming the file and
 * both versions or sizes. Write one with SPATE_PLUGIN_DEFINE():
 *
 *     static int my_init(const struct spate_plugin_ctx *ctx, void **state);
 *     static int my_process(void *state, const struct spate_batch *b,
 *                           struct spate_batch_result *res);
 *     static void my_fini(void *state);
 *     SPATE_PLUGIN_DEFINE(.name = "mine", .version = "1.0",
 *                         .init = my_init, .process = my_process, .fini = my_fini);
 *
 * Threads: load and unload run once per loaded image, on the thread that
 * loads or unloads it; init and fini run on the engine's control thread;
 * process and flush run on the worker that owns the (consumer, shard) pair,
 * one call at a time per state. With parallelization > 1 a plugin gets one
 * state per lane, so process calls for different states may run
 * concurrently.
 *
 * How the ABI grows (docs/plugins.md, "ABI growth"). SPATE_PLUGIN_ABI_VERSION
 * changes only when an existing field changes meaning or place; within one
 * ABI, every struct here that has a `struct_size` only ever gains fields at
 * its end, each addition numbered by SPATE_PLUGIN_ABI_REVISION. Who fills a
 * struct sets its struct_size to the size it knows, and the other side reads
 * no field past it:
 *   - struct spate_plugin (the plugin's): the host accepts any size from
 *     SPATE_PLUGIN_DESC_MIN_SIZE (ABI 1 as first released) up; fields past
 *     the plugin's struct_size read as NULL / 0 (an older plugin has none of
 *     the hooks added since). A descriptor larger than the host's is run
 *     only if every byte the host does not know is zero (a newer plugin that
 *     sets a hook this host cannot call is refused, never half-run).
 *   - struct spate_plugin_host, struct spate_plugin_ctx, struct spate_batch
 *     and struct spate_batch_result (the host's): test a field added after
 *     ABI 1 revision 0 with SPATE_PLUGIN_HAS() before using it. The
 *     struct_size fields of struct spate_batch and struct spate_batch_result
 *     (revision 1) may be read without a test: a host that does not fill
 *     them (revision 0) refuses every descriptor but the 64-byte one.
 *
 * This header includes only spate/record.h and spate/loglevel.h (no atomics,
 * no ring layout) and compiles as C++ (tests/plugin_cxx.sh); define a
 * descriptor in C++ with SPATE_PLUGIN_DEFINE (C++20 designated initializers,
 * in declaration order; C linkage is given).
 */
#ifndef SPATE_PLUGIN_H
#define SPATE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "spate/loglevel.h"
#include "spate/record.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bumped on any incompatible change to the structs in this header (a field
 *  changing meaning or place). A host runs plugins of its own ABI only. */
#define SPATE_PLUGIN_ABI_VERSION 1u
/** Additions to ABI 1 this header has, at the ends of its structs:
 *  0  first release: a 64-byte descriptor (SPATE_PLUGIN_DESC_MIN_SIZE);
 *  1  descriptor hooks load and unload; struct_size on struct spate_batch
 *     and struct spate_batch_result;
 *  2  struct spate_plugin_ctx.provided (plugins provided by a door,
 *     spate/provider.h);
 *  3  struct spate_plugin_host.status / gauge_name / gauge_add /
 *     gauge_set (a consumer's state and figures in the counters region). */
#define SPATE_PLUGIN_ABI_REVISION 3u
/** The one symbol a plugin exports. */
#define SPATE_PLUGIN_SYMBOL "spate_plugin_v1"
#define SPATE_PLUGIN_SYMBOL_ID spate_plugin_v1
/** Smallest struct_size of a struct spate_plugin the host accepts: the
 *  descriptor of ABI 1 revision 0 (offsetof(struct spate_plugin, load)). */
#define SPATE_PLUGIN_DESC_MIN_SIZE 64u

/** One `key: value` from the consumer's `options:` in the configuration. */
struct spate_plugin_opt {
	const char *key;
	const char *value;
};

/**
 * Whether struct @p p (one with a `uint32_t struct_size` field: struct
 * spate_plugin_host, struct spate_plugin_ctx, struct spate_batch, struct
 * spate_batch_result) is large enough to contain @p field. Check before using
 * a field added after the first release of ABI 1, e.g.
 * `if (SPATE_PLUGIN_HAS(h, put)) ...`.
 */
#define SPATE_PLUGIN_HAS(p, field)                                                  \
	((p) != NULL && (size_t)(p)->struct_size >= offsetof(__typeof__(*(p)), field) + \
				sizeof((p)->field))

/** Services the host offers a plugin. Valid from init to fini. */
struct spate_plugin_host {
	uint32_t struct_size; /**< sizeof(struct spate_plugin_host) of the host */
	/** printf-style logging, tagged with consumer and shard by the host. */
	void (*log)(const struct spate_plugin_host *h, enum spate_log_level lvl, const char *fmt,
		    ...) __attribute__((format(printf, 3, 4)));
	/**
	 * Append one record to stream @p stream (pipelines of streams). The
	 * shard comes from @p key, as for any producer. Thread: the calling
	 * worker. @return 0, -ENOENT (no such stream), -EAGAIN (full),
	 * -EMSGSIZE.
	 */
	int (*put)(const struct spate_plugin_host *h, const char *stream, const void *key,
		   size_t key_len, const void *data, size_t len);
	void *host_private; /**< the host's; do not touch */
	/* ---- ABI 1 revision 3: test SPATE_PLUGIN_HAS(h, gauge_set) AND that
	 * the pointer is not NULL (an isolated plugin's host has none) ---- */
	/**
	 * The consumer's status slot: what a plugin bridging to a peer (a
	 * connection, acks in flight) shows beside the engine's own figures, in
	 * `spate stat/top` and Prometheus (spate_source_up / _value, type
	 * "consumer:<plugin>"), like a source's. One slot per consumer, shared
	 * by all its states (shards and lanes) and any thread (libnats
	 * callbacks too). Set the state (SPATE_PLUGIN_STATUS_*, or
	 * SPATE_PLUGIN_STATUS_KEEP) and the last error (@p error: "" clears
	 * it, NULL keeps it; printf-free, truncated to a line).
	 */
	void (*status)(const struct spate_plugin_host *h, int state, const char *error);
	/** Name figure @p i (0..SPATE_PLUGIN_GAUGES-1, in order from 0; from
	 *  init; naming it again with the same name is a no-op).
	 *  @return @p i, or -EINVAL (out of order, or named otherwise). */
	int (*gauge_name)(const struct spate_plugin_host *h, uint32_t i, const char *name);
	/** Add @p delta (negative: subtract) to figure @p i: counters and
	 *  gauges several states share (relaxed read-modify-write). */
	void (*gauge_add)(const struct spate_plugin_host *h, uint32_t i, int64_t delta);
	/** Set figure @p i to @p v. */
	void (*gauge_set)(const struct spate_plugin_host *h, uint32_t i, uint64_t v);
};

/** Figures of a consumer's status slot (struct spate_plugin_host.gauge_name). */
#define SPATE_PLUGIN_GAUGES 14u
/** States for struct spate_plugin_host.status (the values of a source's). */
enum spate_plugin_status {
	SPATE_PLUGIN_STATUS_KEEP = -1,    /**< leave the state as it is */
	SPATE_PLUGIN_STATUS_STARTING = 1, /**< connecting the first time */
	SPATE_PLUGIN_STATUS_UP = 2,       /**< connected to its peer */
	SPATE_PLUGIN_STATUS_DOWN = 3,     /**< cut off from its peer (reconnecting) */
	SPATE_PLUGIN_STATUS_FAILED = 4,   /**< gave up; the error says why */
};

/** Context handed to init. */
struct spate_plugin_ctx {
	uint32_t struct_size;    /**< sizeof(struct spate_plugin_ctx) of the host */
	const char *consumer;    /**< consumer name from the configuration */
	const char *stream;      /**< the stream it consumes */
	uint32_t shard;          /**< shard this state serves */
	uint32_t lane;           /**< lane within the shard (parallelization) */
	const struct spate_plugin_opt *opts; /**< options from the configuration */
	uint32_t n_opts;
	const struct spate_plugin_host *host;
	/* ---- ABI 1 revision 2 (test with SPATE_PLUGIN_HAS(ctx, provided)) ---- */
	/** For a descriptor a provider gave (spate/provider.h): its instance
	 *  (struct spate_provided.inst); NULL for a plugin loaded from a file. */
	void *provided;
};

/** Value of option @p key in @p ctx, or @p dflt. */
static inline const char *spate_plugin_opt(const struct spate_plugin_ctx *ctx, const char *key,
					   const char *dflt)
{
	for (uint32_t i = 0; i < ctx->n_opts; i++) {
		const char *a = ctx->opts[i].key, *b = key;
		while (*a && *a == *b) {
			a++;
			b++;
		}
		if (*a == *b)
			return ctx->opts[i].value;
	}
	return dflt;
}

/**
 * A batch: zero-copy views of consecutive records of one shard. Filled by the
 * host; valid for the duration of process().
 */
struct spate_batch {
	const struct spate_ring_rec *recs; /**< records, in sequence order */
	uint32_t count;
	uint32_t shard;
	uint32_t attempt;        /**< 1 on first delivery, then 2, 3... */
	uint32_t lane;
	const char *consumer;
	const char *stream;
	const struct spate_plugin_host *host;
	/* ---- ABI 1 revision 1 ---- */
	/** sizeof(struct spate_batch) of the host: a field added after this one
	 *  exists when SPATE_PLUGIN_HAS(b, field). Its place is fixed for ABI 1. */
	uint32_t struct_size;
	uint32_t reserved_;      /**< 0 */
};

/**
 * What process() says about a batch. Delivery is at least once: a record may
 * be handed over again after a RETRY, a PARTIAL, a FATAL stop or a restart
 * from the last checkpoint, so process() must tolerate duplicates (compare
 * rec->seq with the last one it completed, or be idempotent).
 */
enum spate_batch_status {
	/** All records done: the engine checkpoints past the batch. */
	SPATE_BATCH_OK = 0,
	/** None done: the whole batch is delivered again (attempt + 1), after
	 *  back-off; with bisection the engine may split it to isolate a bad
	 *  record. After the consumer's maximum attempts (or maximum record
	 *  age) its records go to the on-failure destination and are skipped. */
	SPATE_BATCH_RETRY = 1,
	/** Records [0, failed_index) done (checkpointed); the engine retries
	 *  from record failed_index (which must be below count; 0 means none
	 *  done, like RETRY). Lambda's ReportBatchItemFailures. */
	SPATE_BATCH_PARTIAL = 2,
	/** Stop this consumer without checkpointing the batch; the error says
	 *  why. Meant for misconfiguration, not for one bad record. */
	SPATE_BATCH_FATAL = 3,
};

/**
 * Filled by process(). The host zeroes it and sets struct_size before each
 * call; process() writes only fields that SPATE_PLUGIN_HAS(res, field) says
 * exist, never struct_size (so: no memset of the whole struct).
 */
struct spate_batch_result {
	enum spate_batch_status status;
	uint32_t failed_index;   /**< with SPATE_BATCH_PARTIAL */
	char error[200];         /**< why, for RETRY/PARTIAL/FATAL (goes to the failure destination) */
	/* ---- ABI 1 revision 1 ---- */
	/** sizeof(struct spate_batch_result) of the host. Its place is fixed
	 *  for ABI 1. */
	uint32_t struct_size;
	uint32_t reserved_;      /**< 0 */
};

/**
 * The exported descriptor. The host reads it once, at load, into a copy of
 * its own size: fields past the plugin's struct_size read as NULL / 0.
 */
struct spate_plugin {
	uint32_t abi_version;    /**< SPATE_PLUGIN_ABI_VERSION the plugin was built with */
	uint32_t struct_size;    /**< sizeof(struct spate_plugin) the plugin was built with */
	const char *name;
	const char *version;
	/** Create a state for one (consumer, shard, lane); 0 or -errno. */
	int (*init)(const struct spate_plugin_ctx *ctx, void **state);
	/** Process a batch. Return 0 and fill @p res; a negative return is an
	 *  error counted like SPATE_BATCH_RETRY. */
	int (*process)(void *state, const struct spate_batch *b, struct spate_batch_result *res);
	/** Free the state (after a final flush). May be NULL. */
	void (*fini)(void *state);
	/** Optional timer hook, every flush_interval_ns while running, and once
	 *  before fini (drain). 0 or -errno. May be NULL. */
	int (*flush)(void *state, uint64_t now_ns);
	uint64_t flush_interval_ns;
	/* ---- ABI 1 revision 1 (hosts of revision 0 never call these) ---- */
	/**
	 * Once per loaded image, after the descriptor was checked and before any
	 * init: set up what the image's states share (a library's global init).
	 * @p host_revision is the host's SPATE_PLUGIN_ABI_REVISION. Return 0, or
	 * -errno with a reason in @p err (@p errlen bytes): the load fails,
	 * naming the file and the reason, and unload is not called. May be NULL.
	 * Every load of a plugin is a fresh image (hot deploy), so a process may
	 * run load several times, each paired with its own unload.
	 */
	int (*load)(uint32_t host_revision, char *err, size_t errlen);
	/** Once per loaded image that load accepted, after every state's fini,
	 *  just before the image is unloaded. May be NULL. */
	void (*unload)(void);
};

/* C linkage for the descriptor: in C++ a const object at namespace scope is
 * otherwise internal, and its name mangled. */
#ifdef __cplusplus
#define SPATE_PLUGIN_LINKAGE_ extern "C"
#else
#define SPATE_PLUGIN_LINKAGE_
#endif

/** Define the exported descriptor; arguments are designated initializers
 *  (in C++: C++20, in declaration order). */
#define SPATE_PLUGIN_DEFINE(...)                                                     \
	SPATE_PLUGIN_LINKAGE_ __attribute__((visibility("default"))) const struct spate_plugin \
		SPATE_PLUGIN_SYMBOL_ID = { .abi_version = SPATE_PLUGIN_ABI_VERSION,      \
					   .struct_size = sizeof(struct spate_plugin),    \
					   __VA_ARGS__ }

#ifdef __cplusplus
}
#endif
#endif /* SPATE_PLUGIN_H */
