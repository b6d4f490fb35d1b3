/* SPDX-License-Identifier: MIT */
/**
 * @file spate/provider.h
 * @brief Plugin providers: how a consumer gets its plugin from a door (a
 *        function process, an isolated child) instead of dlopen().
 *
 * The consumer runtime (batching, retries, bisection, partial batch failure,
 * max age, on_failure, checkpoints, the watchdog) only ever calls a plugin
 * descriptor (spate/plugin.h). A consumer whose configuration says
 * `function:` or `isolation: process` gets that descriptor from a provider:
 * a door registers one before the engine opens (`spate run` registers the
 * functions door and the isolation door), and spate_engine_open() asks the
 * first provider whose serves() says yes for an instance per consumer:
 *
 *     static const struct spate_plugin_provider fn_provider = {
 *             .struct_size = sizeof(fn_provider),
 *             .version = SPATE_PROVIDER_VERSION,
 *             .name = "functions",
 *             .serves = fn_serves,    // k->function != NULL
 *             .open = fn_open,        // start the processes, fill *out
 *             .close = fn_close,      // after every state's fini
 *     };
 *     spate_engine_register_provider(&fn_provider);
 *
 * The descriptor an instance gives (out->plugin) is called exactly as a
 * loaded plugin's: init per (consumer, shard, lane) on the control thread,
 * process on that task's worker, fini, flush. Its init finds the instance
 * in ctx->provided (SPATE_PLUGIN_HAS(ctx, provided): plugin ABI 1 revision
 * 2). A process() that fails returns RETRY (or PARTIAL with failed_index)
 * like any plugin, and the consumer's rules do the rest; a process() that
 * never returns meets the engine's watchdog after out->watchdog_ns.
 *
 * A consumer that needs a provider (a function, or isolation: process) when
 * none serves it fails spate_engine_open() with -ENOPROTOOPT, naming the
 * configuration line: an embedding program that wants functions registers
 * the door itself.
 *
 * Versioning: struct_size first; the engine reads no field past a
 * provider's struct_size (later fields read as NULL / 0) and refuses a
 * version it does not know.
 */
#ifndef SPATE_PROVIDER_H
#define SPATE_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spate/config.h"
#include "spate/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Version of struct spate_plugin_provider's contract. */
#define SPATE_PROVIDER_VERSION 1u
/** Most providers registered at once. */
#define SPATE_PROVIDER_MAX 8u

struct spate_stream;

/** What the engine tells a provider about the consumer it asks for. */
struct spate_provider_ctx {
	uint32_t struct_size;                    /**< sizeof of the engine's */
	uint32_t tasks;                          /**< plugin states it will init: shards x lanes */
	const struct spate_config *cfg;          /**< the whole configuration */
	const struct spate_config_consumer *k;   /**< the consumer's entry */
	struct spate_stream *stream;             /**< the stream it reads (open) */
	/** A hot deploy's path (spate_engine_deploy), or NULL at open: the
	 *  provider takes what the configuration says. */
	const char *spec;
};

/** Flags of struct spate_provided. */
/** The plugin's memory is not the engine's: the engine does not charge its
 *  own RSS growth to this consumer (memory_limit is the provider's job). */
#define SPATE_PROVIDED_F_OWN_MEMORY 0x1u

/**
 * A pipelined hand-over (struct spate_provided.pipe), for a plugin that runs
 * elsewhere (an isolated child): the consumer runtime calls submit() instead
 * of process() to hand a batch over, may then peek the batch after it and
 * give it to prepare() (made ready, NOT handed over: a batch is handed over
 * only once the one before it is acknowledged, so order, retries and
 * checkpoints are as with process()), and then calls complete() for the
 * submitted batch's result, which counts exactly as process()'s. The next
 * submit() may be of the prepared batch (its records, same views) or of
 * any other (a retry, a bisected half): the provider checks. Same thread
 * as process(); one batch submitted at a time.
 */
struct spate_provided_pipe {
	/** Hand @p b over. 0, or -errno: counts as a process() that returned
	 *  it, and complete() is not called. */
	int (*submit)(void *state, const struct spate_batch *b);
	/** Get ready for @p b (likely the next batch) while the submitted one
	 *  runs. A hint: 0 or -errno, both ignored. May be NULL. */
	int (*prepare)(void *state, const struct spate_batch *b);
	/** The submitted batch's result, as process() gives it. */
	int (*complete)(void *state, const struct spate_batch *b, struct spate_batch_result *res);
};

/** What a provider's open() fills: one instance serving one consumer. */
struct spate_provided {
	uint32_t struct_size;           /**< set by the engine before open() */
	uint32_t flags;                 /**< SPATE_PROVIDED_F_* */
	/** The descriptor the consumer runtime calls; it must stay valid
	 *  until close(). Checked like a loaded one: name, init, process. */
	const struct spate_plugin *plugin;
	/** Shown where the engine names a plugin's file (messages, crash
	 *  lines, `spate stat`): the function's command, the isolated .so. */
	char path[256];
	/** The engine's watchdog on process(): 0 = the consumer's timeout. A
	 *  provider that enforces its own deadline gives some margin. */
	uint64_t watchdog_ns;
	/** The provider's; passed to init as ctx->provided and to close(). */
	void *inst;
	/** A pipelined hand-over, or NULL (process() only). An engine that
	 *  knows this field sets struct_size past it before open(). */
	const struct spate_provided_pipe *pipe;
};

/** A door that provides consumers' plugins. */
struct spate_plugin_provider {
	uint32_t struct_size; /**< sizeof(struct spate_plugin_provider) of the door */
	uint32_t version;     /**< SPATE_PROVIDER_VERSION */
	const char *name;     /**< "functions", "isolation": in messages */
	/** Whether this provider runs consumer @p k. Required. */
	bool (*serves)(const struct spate_config_consumer *k);
	/**
	 * Make the instance for @p ctx->k: fill @p out (its struct_size is
	 * set). Runs on the engine's control thread, before the consumer's
	 * states are initialised (at open and at a hot deploy).
	 * @return 0, or -errno with a one-line reason in @p err (the engine
	 *         adds file, line and consumer).
	 */
	int (*open)(void *arg, const struct spate_provider_ctx *ctx, struct spate_provided *out,
		    char *err, size_t errlen);
	/** Free an instance, after every state's fini. May be NULL. */
	void (*close)(void *arg, void *inst);
	void *arg; /**< passed to open and close */
};

/**
 * Register @p p (copied, up to its struct_size) for the engines this
 * process opens from now on. Not while an engine opens. Thread-safe.
 * @return 0, -EINVAL (NULL, struct_size too small, no name, serves or
 *         open), -EPROTO (a version this library does not know), -EEXIST
 *         (a provider of that name), -ENOSPC (SPATE_PROVIDER_MAX).
 */
int spate_engine_register_provider(const struct spate_plugin_provider *p);

/** Remove the provider called @p name. @return 0 or -ENOENT. */
int spate_engine_unregister_provider(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_PROVIDER_H */
