/* SPDX-License-Identifier: MIT */
/*
 * tests/abi/plugin_v1.h - FROZEN: spate/plugin.h as first released for
 * plugin ABI 1 (revision 0: a 64-byte descriptor, no sizes on the batch or
 * the result), copied from commit 0dcff69. Never edit it: tests/old_plugin.c
 * is built against it to show that a plugin built then still loads and runs
 * on today's host (test_plugin: old_descriptor_*). The only change from the
 * original is that the record view it took from spate/ring.h is copied in
 * below, frozen too, so that this file depends on no header that moves on.
 */
/**
 * @file spate/plugin.h
 * @brief The consumer plugin ABI: what a shared object exports so that the
 *        engine can hand it batches (the Lambda function of an event source
 *        mapping).
 *
 * A plugin exports exactly one symbol, SPATE_PLUGIN_SYMBOL, a
 * `const struct spate_plugin` whose first two fields are the ABI version and
 * the struct size. The host loads it with dlopen(RTLD_NOW | RTLD_LOCAL),
 * checks both, and refuses a mismatch loudly, naming the file and both
 * versions. Write one with SPATE_PLUGIN_DEFINE():
 *
 *     static int my_init(const struct spate_plugin_ctx *ctx, void **state);
 *     static int my_process(void *state, const struct spate_batch *b,
 *                           struct spate_batch_result *res);
 *     static void my_fini(void *state);
 *     SPATE_PLUGIN_DEFINE(.name = "mine", .version = "1.0",
 *                         .init = my_init, .process = my_process, .fini = my_fini);
 *
 * Threads: init and fini run on the engine's control thread; process and
 * flush run on the worker that owns the (consumer, shard) pair, one call at a
 * time per state. With parallelization > 1 a plugin gets one state per lane,
 * so process calls for different states may run concurrently.
 */
#ifndef SPATE_PLUGIN_H
#define SPATE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

/* Frozen copy of struct spate_ring_rec (then in spate/ring.h). */
struct spate_ring_rec {
	const void *data;
	uint64_t seq;
	uint64_t ts;
	uint32_t len;
	uint32_t key_hash;
	uint8_t type;
};

#ifdef __cplusplus
extern "C" {
#endif

/** Bumped on any incompatible change to the structs in this header. */
#define SPATE_PLUGIN_ABI_VERSION 1u
/** The one symbol a plugin exports. */
#define SPATE_PLUGIN_SYMBOL "spate_plugin_v1"
#define SPATE_PLUGIN_SYMBOL_ID spate_plugin_v1

/** Severity for the host logger. */
enum spate_log_level {
	SPATE_LOG_ERROR = 0,
	SPATE_LOG_WARN = 1,
	SPATE_LOG_INFO = 2,
	SPATE_LOG_DEBUG = 3,
};

/** One `key: value` from the consumer's `options:` in the configuration. */
struct spate_plugin_opt {
	const char *key;
	const char *value;
};

/**
 * Whether the host-provided struct @p p (one whose first field is
 * `uint32_t struct_size`: struct spate_plugin_host, struct spate_plugin_ctx)
 * is large enough to contain @p field. Check before using a field added after
 * the first release of ABI 1, e.g. `if (SPATE_PLUGIN_HAS(h, put)) ...`.
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

/** A batch: zero-copy views of consecutive records of one shard. */
struct spate_batch {
	const struct spate_ring_rec *recs; /**< records, in sequence order */
	uint32_t count;
	uint32_t shard;
	uint32_t attempt;        /**< 1 on first delivery, then 2, 3... */
	uint32_t lane;
	const char *consumer;
	const char *stream;
	const struct spate_plugin_host *host;
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

/** Filled by process(); the host zeroes it before each call. */
struct spate_batch_result {
	enum spate_batch_status status;
	uint32_t failed_index;   /**< with SPATE_BATCH_PARTIAL */
	char error[200];         /**< why, for RETRY/PARTIAL/FATAL (goes to the failure destination) */
};

/** The exported descriptor. */
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
};

/** Define the exported descriptor; arguments are designated initializers. */
#define SPATE_PLUGIN_DEFINE(...)                                                     \
	__attribute__((visibility("default"))) const struct spate_plugin                \
		SPATE_PLUGIN_SYMBOL_ID = { .abi_version = SPATE_PLUGIN_ABI_VERSION,      \
					   .struct_size = sizeof(struct spate_plugin),    \
					   __VA_ARGS__ }

#ifdef __cplusplus
}
#endif
#endif /* SPATE_PLUGIN_H */
