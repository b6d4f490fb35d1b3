/* SPDX-License-Identifier: MIT */
/**
 * @file spate/config.h
 * @brief The bus configuration: streams, consumers (event source mappings),
 *        sources and placement, from one YAML file or built as structs in C.
 *
 * Load a file:
 *
 *     struct spate_config *c;
 *     char err[512];
 *     if (spate_config_load("bus.yaml", &c, err, sizeof(err)) < 0)
 *             die(err);   // "bus.yaml:12: consumers[0].batch_size: expected ..."
 *     ...
 *     spate_config_free(c);
 *
 * or build one in C:
 *
 *     struct spate_config *c;
 *     struct spate_config_stream *s;
 *     struct spate_config_consumer *k;
 *     spate_config_new_default("demo", &c);
 *     spate_config_add_stream(c, "orders", &s);
 *     s->shards = 4;
 *     spate_config_add_consumer(c, "count", "orders", "count", &k);
 *     k->batch_size = 500;
 *     if (spate_config_validate(c, err, sizeof(err)) < 0)
 *             die(err);
 *
 * Every key, its default, range and Kinesis/Lambda counterpart is described
 * in docs/config.md. Units: sizes are bytes, durations are nanoseconds.
 *
 * Ownership: a config from spate_config_load(), spate_config_parse() or
 * spate_config_new_default() owns its arrays (streams, consumers, options,
 * cores; all from malloc) and is freed with spate_config_free(). A config a
 * caller lays out itself (zero-initialised, spate_config_stream_defaults()
 * and spate_config_consumer_defaults() on each element, arrays anywhere) may
 * be checked with spate_config_validate() but must not be passed to
 * spate_config_free() unless its arrays come from malloc.
 *
 * "Automatic" values: a few fields take 0 to mean "derive it" (stream
 * max_record_size, consumer concurrency, placement busy_threads_max).
 * spate_config_load() and spate_config_parse() store the derived value;
 * spate_config_stream_max_record() and spate_config_consumer_concurrency()
 * derive it for configs built in C.
 *
 * Thread safety: none inside; a config is plain data. Concurrent readers of
 * a config nobody modifies are fine.
 */
#ifndef SPATE_CONFIG_H
#define SPATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spate/durability.h"
#include "spate/ring.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Limits and special values                                                */
/* ------------------------------------------------------------------------ */

/** Longest bus, stream or consumer name (characters [A-Za-z0-9_-]). */
#define SPATE_CONFIG_NAME_MAX 40u
/** Longest "<bus>.<stream>" (the stream's shared-memory region name). */
#define SPATE_CONFIG_REGION_NAME_MAX 63u
/** Size of the path buffers (state_dir, plugin, source), NUL included. */
#define SPATE_CONFIG_PATH_MAX 4096u
/** Shards per stream. */
#define SPATE_CONFIG_MAX_SHARDS 1024u
/** Consumers per stream (each keeps a checkpoint slot in the stream). */
#define SPATE_CONFIG_MAX_CONSUMERS_PER_STREAM 64u
/** Records per batch (Lambda: 10,000). */
#define SPATE_CONFIG_MAX_BATCH_SIZE 100000u
/** Longest batching window (Lambda: 300 s). */
#define SPATE_CONFIG_MAX_BATCH_WINDOW_NS (300ull * 1000000000ull)
/** Retry attempts, when not -1 (Lambda: 10,000). */
#define SPATE_CONFIG_MAX_RETRY_ATTEMPTS 10000
/** Parallelization factor (Lambda: 10). */
#define SPATE_CONFIG_MAX_PARALLELIZATION 64u
/** Workers of one consumer. */
#define SPATE_CONFIG_MAX_CONCURRENCY 1024u
/** CPU numbers in placement.cores are below this. */
#define SPATE_CONFIG_MAX_CPUS 4096u
/** Record framing in a ring: batch header 32 + record header 8 + long
 *  length 8. max_record_size must be <= ring_size / 2 - this. */
#define SPATE_CONFIG_RECORD_OVERHEAD 48u
/** Default stream ring size (per shard) and maximum record size. */
#define SPATE_CONFIG_DEFAULT_RING_SIZE (4ull << 20)
#define SPATE_CONFIG_DEFAULT_MAX_RECORD (1ull << 20)

/** A duration that means "never" / "unlimited" (max_record_age: -1). */
#define SPATE_CONFIG_NEVER UINT64_MAX
/** max_retry_attempts value meaning "until the record expires" (-1). */
#define SPATE_CONFIG_RETRY_FOREVER (-1)

/** Who appends to a stream's shards. */
enum spate_config_producers {
	SPATE_CONFIG_PRODUCERS_MULTI = 0,  /**< any number of threads/processes (default) */
	SPATE_CONFIG_PRODUCERS_SINGLE = 1, /**< exactly one producer per shard (fastest) */
};

/** Huge-page policy of a stream's memory (see spate/shm.h). */
enum spate_config_huge {
	SPATE_CONFIG_HUGE_AUTO = 0,    /**< hugetlbfs if possible, else /dev/shm + THP (default) */
	SPATE_CONFIG_HUGE_REQUIRE = 1, /**< hugetlbfs 2 MiB pages or fail (SPATE_SHM_F_REQUIRE_HUGE) */
	SPATE_CONFIG_HUGE_OFF = 2,     /**< never hugetlbfs (SPATE_SHM_F_NO_HUGE) */
};

/** What a producer sees on a full shard by default. */
enum spate_config_full {
	SPATE_CONFIG_FULL_WAIT = 0, /**< wait for space (SPATE_RING_F_FULL_WAIT) (default) */
	SPATE_CONFIG_FULL_FAIL = 1, /**< fail at once with -EAGAIN */
};

/* A stream's durability is enum spate_durability (spate/durability.h); the
 * names below are its values' earlier names, kept for existing users. */
#define spate_config_durability spate_durability
#define SPATE_CONFIG_DURABILITY_OFF SPATE_DURABILITY_OFF
#define SPATE_CONFIG_DURABILITY_NONE SPATE_DURABILITY_NONE
#define SPATE_CONFIG_DURABILITY_INTERVAL SPATE_DURABILITY_INTERVAL
#define SPATE_CONFIG_DURABILITY_ALWAYS SPATE_DURABILITY_ALWAYS

/** Default durability_interval and segment_size. */
#define SPATE_CONFIG_DEFAULT_DURABILITY_INTERVAL_NS (10ull * 1000 * 1000)
#define SPATE_CONFIG_DEFAULT_SEGMENT_SIZE (64ull << 20)

/** Where a consumer starts when it has no checkpoint (Kinesis iterator types).
 *  The first two have the values of enum spate_ring_start. */
enum spate_config_start {
	SPATE_CONFIG_START_TRIM_HORIZON = 0,   /**< oldest record still held */
	SPATE_CONFIG_START_LATEST = 1,         /**< only records appended from now on (default) */
	SPATE_CONFIG_START_AT_SEQUENCE = 2,    /**< at starting_sequence */
	SPATE_CONFIG_START_AFTER_SEQUENCE = 3, /**< just after starting_sequence */
	SPATE_CONFIG_START_AT_TIMESTAMP = 4,   /**< first record at or after starting_timestamp */
};

/* ------------------------------------------------------------------------ */
/* Structs                                                                  */
/* ------------------------------------------------------------------------ */

/** One `key: value` of a consumer's `options:`, passed to its plugin. */
struct spate_config_opt {
	char *key;   /**< non-empty, NUL-terminated */
	char *value; /**< NUL-terminated; "" for an empty/null YAML value */
};

/** A stream (Kinesis data stream). */
struct spate_config_stream {
	char name[SPATE_CONFIG_NAME_MAX + 1];
	uint32_t shards;          /**< 1..SPATE_CONFIG_MAX_SHARDS; default 1 */
	uint64_t ring_size;       /**< bytes per shard, power of two 64 KiB..1 GiB; default 4 MiB */
	/** Largest record payload, 1..ring_size/2-48; default 1 MiB, or the
	 *  most ring_size allows if that is less. 0 = that default. */
	uint64_t max_record_size;
	enum spate_config_producers producers; /**< default multi */
	enum spate_config_huge huge_pages;     /**< default auto */
	/** Records older than this are not served to new readers at
	 *  trim_horizon. Nanoseconds, >= 1 ms; default 24 h. */
	uint64_t retention_ns;
	enum spate_config_full full;           /**< default wait */
	/** Persistence: off (default), none, interval, always. With a log,
	 *  retention_ns and retention_bytes delete whole old segments. */
	enum spate_durability durability; /**< `durability:` (off, none, interval, always) */
	uint64_t durability_interval_ns; /**< group commit period with interval; 100 us..60 s, default 10 ms */
	uint64_t segment_size;    /**< roll segments past this, 1 MiB..64 GiB; default 64 MiB */
	uint64_t retention_bytes; /**< per shard log, 0 = no limit (then age only) */
	/** O_DIRECT for the logs: true (default) where the file system
	 *  supports it, through 4 MiB of registered staging buffers per shard;
	 *  false = through the page cache, straight from ring memory. */
	bool direct_io;
	/** Directory of the stream's logs (one sub-directory per shard),
	 *  absolute; "" = <state_dir>/log/<stream>. */
	char log_dir[SPATE_CONFIG_PATH_MAX];
	uint32_t line;            /**< line of its entry in the file; 0 if built in C */
};

/** Where a consumer's plugin runs (`isolation:`). */
enum spate_config_isolation {
	SPATE_CONFIG_ISOLATION_IN_PROCESS = 0, /**< in the engine's process (default; the fast path) */
	SPATE_CONFIG_ISOLATION_PROCESS = 1,    /**< in a supervised child process; a function always */
};

/** Longest `function.handler` (Lambda's `Handler`), NUL excluded. */
#define SPATE_CONFIG_HANDLER_MAX 127u
/** Most elements of `function.command` / `function.runtime_client`. */
#define SPATE_CONFIG_ARGV_MAX 64u

/**
 * A consumer's function (`function:`): Lambda function code run as its own
 * process, speaking the Lambda Runtime API to the engine. Either `command`
 * (a program that runs the Runtime API loop itself: a custom runtime's
 * `bootstrap`) or `handler` with `runtime_client` (a runtime client that
 * loads the handler, as a managed runtime does). The consumer's batching and
 * failure rules apply to it as to a plugin.
 */
struct spate_config_function {
	/** argv of the process (n_command strings, each non-empty), or NULL. */
	char **command;
	uint32_t n_command;
	/** argv prefix of the runtime client; the handler is appended. A single
	 *  `node` or `python` names the runtime loop bundled with spate. */
	char **runtime_client;
	uint32_t n_runtime_client;
	/** `module.function` (Lambda's Handler): _HANDLER; "" = none. */
	char handler[SPATE_CONFIG_HANDLER_MAX + 1];
	/** Working directory and LAMBDA_TASK_ROOT; "" = the configuration
	 *  file's directory. spate_config_load() makes a relative one relative
	 *  to that directory. */
	char cwd[SPATE_CONFIG_PATH_MAX];
	/** Extra environment (Lambda's Environment.Variables), in file order. */
	struct spate_config_opt *env;
	uint32_t n_env;
	/** Longest invocation, 1 ms..900 s; 0 = the consumer's `timeout`.
	 *  Past it the process is killed and restarted, the batch fails. */
	uint64_t timeout_ns;
	/** Memory of each process (Lambda's MemorySize); 0 = the consumer's
	 *  `memory_limit`, and none if that is 0. */
	uint64_t memory_limit;
	/** Processes, 1..1024; 0 = one per task (shards x parallelization). */
	uint32_t concurrency;
	uint32_t line; /**< line of `function:` in the file; 0 if built in C */
};

/** A consumer (Lambda event source mapping: a plugin fed batches of one stream). */
struct spate_config_consumer {
	char name[SPATE_CONFIG_NAME_MAX + 1];
	char stream[SPATE_CONFIG_NAME_MAX + 1];    /**< the stream it reads */
	/** A bundled plugin name ([a-z0-9_]+, at most SPATE_CONFIG_NAME_MAX) or a
	 *  path containing '/' and ending in ".so". spate_config_load() makes a
	 *  relative path relative to the configuration file's directory. ""
	 *  when the consumer is a function (exactly one of the two). */
	char plugin[SPATE_CONFIG_PATH_MAX];
	struct spate_config_opt *options; /**< plugin options, in file order */
	uint32_t n_options;
	uint32_t batch_size;      /**< records per batch, 1..100000; default 100 (BatchSize) */
	uint64_t batch_bytes;     /**< payload bytes per batch, >= 1; default 6 MiB */
	uint64_t batch_window_ns; /**< wait to fill a batch, 0..300 s; default 0
				       (MaximumBatchingWindowInSeconds) */
	enum spate_config_start starting_position; /**< default latest (StartingPosition) */
	uint64_t starting_sequence;     /**< with AT_SEQUENCE / AFTER_SEQUENCE */
	uint64_t starting_timestamp_ns; /**< with AT_TIMESTAMP; ns since the epoch (UTC) */
	/** -1 (SPATE_CONFIG_RETRY_FOREVER) = until the record expires, or
	 *  0..10000; default -1 (MaximumRetryAttempts). */
	int32_t max_retry_attempts;
	uint64_t retry_backoff_ns;     /**< first back-off; default 1 ms; <= retry_backoff_max_ns */
	uint64_t retry_backoff_max_ns; /**< back-off cap (doubling); default 1 s */
	bool bisect_on_error;          /**< default false (BisectBatchOnFunctionError) */
	bool enabled;                  /**< default true */
	/** Records older than this go to on_failure instead of the plugin;
	 *  SPATE_CONFIG_NEVER (-1 in YAML) or >= 1 ms; default never
	 *  (MaximumRecordAgeInSeconds). */
	uint64_t max_record_age_ns;
	/** Stream that receives failed records (with their payloads); "" = none
	 *  (DestinationConfig.OnFailure). Never the consumer's own stream. */
	char on_failure[SPATE_CONFIG_NAME_MAX + 1];
	uint32_t parallelization;      /**< lanes per shard, 1..64; default 1 (ParallelizationFactor) */
	/** Most workers for this consumer, 1..1024; 0 = shards x parallelization
	 *  (capped at 1024). */
	uint32_t concurrency;
	enum spate_ring_wait wait;     /**< how idle workers wait; default BLOCK */
	/** How often to checkpoint; 0 (default) = after every successful batch. */
	uint64_t checkpoint_interval_ns;
	/** Longest process() call, 1 ms..900 s; default 60 s (Lambda's function
	 *  Timeout). Past it the delivery counts as failed (retry rules apply)
	 *  and the stuck worker thread is abandoned and replaced. */
	uint64_t timeout_ns;
	/** Memory the plugin may grow the engine by, bytes; 0 (default) = no
	 *  limit (Lambda's MemorySize). See docs/config.md. */
	uint64_t memory_limit;
	uint32_t line;                 /**< line of its entry in the file; 0 if built in C */
	/** Where the plugin runs; default in-process. A function always runs
	 *  in its own processes (process, or left at the default). Consumers
	 *  run out of process get their plugin from a provider registered by
	 *  the program (spate/provider.h; `spate run` registers them). */
	enum spate_config_isolation isolation;
	/** The function this consumer runs instead of a plugin; NULL: none.
	 *  Owned by the config (spate_config_consumer_function()). */
	struct spate_config_function *function;
};

/** Where the workers run. */
struct spate_config_placement {
	uint32_t *cores;           /**< CPU numbers to use, distinct, < SPATE_CONFIG_MAX_CPUS */
	uint32_t n_cores;          /**< 0 = every CPU the process may use */
	/** Most threads that busy-poll (wait: busy), 1..n_cores (or 1..4096
	 *  without cores); 0 = one per core used. */
	uint32_t busy_threads_max;
	/** Persister threads (persisted streams' shards are dealt among them),
	 *  1..64; 0 (C) = 1. One per disk is the usual choice. */
	uint32_t persist_threads;
};

/** Size of metrics.listen, NUL included. */
#define SPATE_CONFIG_ADDR_MAX 64u

/** Whether the engine keeps the counters region (spate/stats.h). */
enum spate_config_counters {
	SPATE_CONFIG_COUNTERS_ON = 0,  /**< default */
	SPATE_CONFIG_COUNTERS_OFF = 1, /**< no region, no updates on the hot path */
};

/** Observability: the counters region and the Prometheus endpoint. */
struct spate_config_metrics {
	/** Where `spate run` serves Prometheus text (GET /metrics): "PORT"
	 *  (on 127.0.0.1), "HOST:PORT" or "[IPV6]:PORT"; "" = no endpoint. */
	char listen[SPATE_CONFIG_ADDR_MAX];
	enum spate_config_counters counters;
};

/** Kind of a node of a source's type-specific keys. */
enum spate_config_node_kind {
	SPATE_CONFIG_NODE_SCALAR = 0, /**< text (value); a YAML null is "" with null set */
	SPATE_CONFIG_NODE_MAP = 1,    /**< items are its entries, each with a key */
	SPATE_CONFIG_NODE_LIST = 2,   /**< items are its elements, without keys */
};

/**
 * One node of a source's type-specific keys, as the YAML had it: a scalar,
 * a mapping or a list, with the line it was on and its path in the file
 * ("sources[0].auth.user", "sources[1].servers[2]"), so that a door can
 * report an error precisely (spate_config_node_error(), spate/sources.h).
 * Everything is owned by the config (malloc); read it through the
 * accessors of spate/sources.h or walk it directly.
 */
struct spate_config_node {
	enum spate_config_node_kind kind;
	uint32_t line;                    /**< 1-based; 0 if built in C */
	char *key;                        /**< in a mapping: its key; else NULL */
	char *value;                      /**< SCALAR: the text ("" for null); else NULL */
	bool null;                        /**< SCALAR: it was a YAML null */
	struct spate_config_node *items;  /**< MAP / LIST: n_items children */
	uint32_t n_items;
	char *path;                       /**< for messages, e.g. "sources[0].auth.user" */
};

/**
 * A source (a door that appends to a stream from outside: `type: nats`
 * imports a JetStream subject, `type: dpdk` a port's packets). The engine
 * knows the keys name, type and stream; every other key of the entry is
 * kept as written, with its line, in @p keys, and checked by the source
 * type registered under @p type (spate/sources.h).
 */
struct spate_config_source {
	char name[SPATE_CONFIG_NAME_MAX + 1];   /**< unique among the sources */
	char type[SPATE_CONFIG_NAME_MAX + 1];   /**< a registered source type ([A-Za-z0-9_-]) */
	char stream[SPATE_CONFIG_NAME_MAX + 1]; /**< the stream it appends to */
	/** Every other key of the entry: a MAP node (path "sources[i]"). */
	struct spate_config_node keys;
	uint32_t line;        /**< line of its entry in the file; 0 if built in C */
	uint32_t type_line;   /**< line of its `type:` key; 0 if built in C */
	uint32_t stream_line; /**< line of its `stream:` key; 0 if built in C */
	uint32_t index;       /**< its place in spate_config.sources */
	/** The file it came from, for messages ("" if built in C); the
	 *  config's `source` member. */
	const char *file;
};

/** Longest api.region, characters [a-z0-9-]. */
#define SPATE_CONFIG_REGION_MAX 32u
/** Longest api.auth.keys[].id (an AWS access key id), characters [A-Za-z0-9_-]. */
#define SPATE_CONFIG_KEY_ID_MAX 128u
/** Most api.auth.keys entries. */
#define SPATE_CONFIG_API_MAX_KEYS 64u
/** Who may call the Kinesis API front (api.auth). */
enum spate_config_api_auth {
	SPATE_CONFIG_API_AUTH_UNSET = 0, /**< not written: refused when api is present */
	SPATE_CONFIG_API_AUTH_NONE = 1,  /**< `auth: none`, written out: anyone who reaches it */
	SPATE_CONFIG_API_AUTH_KEYS = 2,  /**< AWS Signature V4 with api.auth.keys */
};
/** One access key of api.auth.keys. */
struct spate_config_api_key {
	char id[SPATE_CONFIG_KEY_ID_MAX + 1];
	/** File holding the secret (mode 0600, checked when the front starts);
	 *  a relative path is made relative to the configuration's directory. */
	char secret_file[SPATE_CONFIG_PATH_MAX];
	uint32_t line;              /**< line of the entry; 0 if built in C */
	uint32_t secret_line;       /**< line of its secret_file; 0 if built in C */
};
/** The Kinesis-compatible HTTP front `spate run` serves (engine/api/). */
struct spate_config_api {
	bool enabled;  /**< an `api:` block is present */
	/** "PORT", "HOST:PORT" or "[IPV6]:PORT"; default 127.0.0.1:4567. */
	char listen[SPATE_CONFIG_ADDR_MAX];
	/** Region shown in ARNs and checked in signatures; default us-east-1. */
	char region[SPATE_CONFIG_REGION_MAX + 1];
	enum spate_config_api_auth auth;
	struct spate_config_api_key *keys; /**< from malloc; freed with the config */
	uint32_t n_keys;
	/** TLS certificate and key files (PEM); both "" = plain HTTP. */
	char tls_cert[SPATE_CONFIG_PATH_MAX];
	char tls_key[SPATE_CONFIG_PATH_MAX];
	/** HTTP worker threads, 1..64; 0 = one per CPU the process may use (at most 8). */
	uint32_t threads;
	/** What CreateStream makes (`api.create`): the keys of a stream of
	 *  `streams:` other than name, shards (CreateStream gives them) and
	 *  log_dir (<state_dir>/log/<name>). Its line is that of `create:`.
	 *  ring_size 0 (a config built in C that left it zeroed) means
	 *  spate_config_stream_defaults(): memory-only 4 MiB rings. */
	struct spate_config_stream create;
	uint32_t line; /**< line of `api:`; 0 if built in C */
};
/** A bus: everything one configuration file describes. */
struct spate_config {
	char bus[SPATE_CONFIG_NAME_MAX + 1];  /**< name of the bus (required) */
	/** Absolute directory for checkpoints and state; default
	 *  "/var/lib/spate/<bus>". */
	char state_dir[SPATE_CONFIG_PATH_MAX];
	struct spate_config_stream *streams;  /**< at least one */
	uint32_t n_streams;
	struct spate_config_consumer *consumers;
	uint32_t n_consumers;
	struct spate_config_placement placement;
	struct spate_config_metrics metrics; /**< metrics: listen, counters */
	/** File name given to load/parse, used in messages; "" if built in C. */
	char source[SPATE_CONFIG_PATH_MAX];
	/** `sources:`, in file order (spate/sources.h); NULL if none. */
	struct spate_config_source *sources;
	uint32_t n_sources;
	/** api: the Kinesis API front (added last: the fields above keep
	 *  their offsets). */
	struct spate_config_api api;
};

/* ------------------------------------------------------------------------ */
/* Loading, checking, freeing                                               */
/* ------------------------------------------------------------------------ */

/**
 * Parse a listen address ("PORT", "HOST:PORT", "[IPV6]:PORT"; HOST an IP
 * literal or localhost; a bare port listens on 127.0.0.1) into @p host
 * (may be NULL) and @p port (may be NULL).
 * @return 0 or -EINVAL.
 */
int spate_config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port);

/**
 * Read and parse the YAML file @p path, check it (spate_config_validate())
 * and return a new config in @p out (NULL on error). On error a message of
 * the form "<path>:<line>: <field>: <what was expected>, got <what>" is
 * written to @p err (may be NULL; truncated to @p errlen).
 *
 * @return 0, -EINVAL (bad arguments, or the content is wrong: @p err says
 *         where), -ENOENT, -EACCES, -EISDIR, -EFBIG (file above 64 MiB),
 *         -ENOMEM, or another -errno from open/read.
 */
int spate_config_load(const char *path, struct spate_config **out, char *err, size_t errlen);

/**
 * Parse @p len bytes of YAML at @p text (not necessarily NUL-terminated) as
 * a configuration and check it, like spate_config_load(). @p name_for_errors
 * (may be NULL: "<config>") is the file name used in messages and stored in
 * spate_config.source. Relative plugin paths are stored as written.
 *
 * @return 0, -EINVAL (bad arguments or content; @p err says why), -ENOMEM.
 */
int spate_config_parse(const char *text, size_t len, const char *name_for_errors,
		       struct spate_config **out, char *err, size_t errlen);

/** Free a config from load/parse/new_default (and everything it owns). NULL-safe. */
void spate_config_free(struct spate_config *c);

/**
 * Check a config's contents: every field in range, names well formed and
 * unique, every stream a consumer names (stream, on_failure) defined,
 * on_failure not the consumer's own stream, max_record_size within its
 * ring, retry_backoff <= retry_backoff_max, at most 64 consumers per stream,
 * "<bus>.<stream>" at most 63 characters, placement cores distinct. Messages
 * carry "<source>:<line>: " when the config came from a file.
 *
 * @return 0, -EINVAL (@p err says which field and why; also for c NULL).
 */
int spate_config_validate(const struct spate_config *c, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Building a config in C                                                   */
/* ------------------------------------------------------------------------ */

/** Fill @p s with the stream defaults (name empty, line 0). */
void spate_config_stream_defaults(struct spate_config_stream *s);
/** Fill @p k with the consumer defaults (names and plugin empty, no options). */
void spate_config_consumer_defaults(struct spate_config_consumer *k);

/**
 * A new config for bus @p bus with no streams or consumers, state_dir
 * "/var/lib/spate/<bus>" and default placement. Free with spate_config_free().
 * @return 0, -EINVAL (bad bus name), -ENOMEM.
 */
int spate_config_new_default(const char *bus, struct spate_config **out);

/**
 * Append a stream named @p name with the defaults; @p out (may be NULL)
 * points at it until the next append.
 * @return 0, -EINVAL (bad name), -EEXIST (name taken), -ENOMEM.
 */
int spate_config_add_stream(struct spate_config *c, const char *name,
			    struct spate_config_stream **out);

/**
 * Append a consumer with the defaults, reading @p stream with @p plugin (a
 * bundled name or a .so path); @p out (may be NULL) points at it until the
 * next append. The stream need not exist yet (validate checks it).
 * @return 0, -EINVAL (bad name, stream name or plugin), -EEXIST (name
 *         taken), -ENOMEM.
 */
int spate_config_add_consumer(struct spate_config *c, const char *name, const char *stream,
			      const char *plugin, struct spate_config_consumer **out);

/**
 * Set option @p key of consumer @p k to @p value (copied; replaces an
 * existing value). @p k must belong to a config that spate_config_free()
 * will free (its options array is reallocated).
 * @return 0, -EINVAL (key NULL or empty, value NULL), -ENOMEM.
 */
int spate_config_consumer_set_option(struct spate_config_consumer *k, const char *key,
				     const char *value);

/**
 * Append a source named @p name of type @p type appending to @p stream, with
 * no type-specific keys; @p out (may be NULL) points at it until the next
 * append. The stream need not exist yet and the type need not be
 * registered (validate checks the stream; the engine the type).
 * @return 0, -EINVAL (bad name, type or stream name), -EEXIST (name taken),
 *         -ENOMEM.
 */
int spate_config_add_source(struct spate_config *c, const char *name, const char *type,
			    const char *stream, struct spate_config_source **out);

/**
 * Set type-specific key @p key of source @p s to the scalar @p value
 * (copied; replaces a key of that name). Nested maps and lists come from
 * YAML only. @p s must belong to a config spate_config_free() will free.
 * @return 0, -EINVAL (key NULL, empty or one of name, type, stream; value
 *         NULL), -ENOMEM.
 */
int spate_config_source_set(struct spate_config_source *s, const char *key, const char *value);

/** The source called @p name, or NULL. */
const struct spate_config_source *spate_config_find_source(const struct spate_config *c,
							   const char *name);

/**
 * Make consumer @p k a function: allocate its `function:` with the defaults
 * (everything empty or 0) if it has none, and clear its plugin; @p out
 * points at it. Fill command (or handler and runtime_client) with
 * spate_config_function_set_argv(). @p k must belong to a config that
 * spate_config_free() will free.
 * @return 0, -EINVAL, -ENOMEM.
 */
int spate_config_consumer_function(struct spate_config_consumer *k,
				   struct spate_config_function **out);

/**
 * Set @p fn's command (@p which 0) or runtime_client (@p which 1) to the
 * @p n strings of @p argv (copied; replaces what was there).
 * @return 0, -EINVAL (n 0 or above SPATE_CONFIG_ARGV_MAX, a NULL or empty
 *         string), -ENOMEM.
 */
int spate_config_function_set_argv(struct spate_config_function *fn, int which,
				   const char *const *argv, uint32_t n);

/**
 * Add `NAME=value` to @p fn's environment (copied; replaces an existing
 * value of that name).
 * @return 0, -EINVAL, -ENOMEM.
 */
int spate_config_function_set_env(struct spate_config_function *fn, const char *name,
				  const char *value);

/** The function's effective invocation timeout (its own, else @p k's). */
uint64_t spate_config_function_timeout(const struct spate_config_consumer *k);

/* ------------------------------------------------------------------------ */
/* Lookups and derived values                                               */
/* ------------------------------------------------------------------------ */

/** The stream called @p name, or NULL. */
const struct spate_config_stream *spate_config_find_stream(const struct spate_config *c,
							   const char *name);
/** The consumer called @p name, or NULL. */
const struct spate_config_consumer *spate_config_find_consumer(const struct spate_config *c,
							       const char *name);
/** Value of option @p key of @p k, or @p dflt. */
const char *spate_config_consumer_option(const struct spate_config_consumer *k, const char *key,
					 const char *dflt);

/** Effective max_record_size of @p s (resolves 0 = default). */
uint64_t spate_config_stream_max_record(const struct spate_config_stream *s);
/** Effective concurrency of @p k in @p c (resolves 0 = shards x
 *  parallelization, capped at SPATE_CONFIG_MAX_CONCURRENCY); 0 if its
 *  stream does not exist. */
uint32_t spate_config_consumer_concurrency(const struct spate_config *c,
					   const struct spate_config_consumer *k);

/**
 * The log directory of shard @p shard of persisted stream @p s:
 * "<log_dir>/<shard, 4 digits>", log_dir defaulting to
 * "<state_dir>/log/<stream>". Written even if the stream is not persisted.
 * @return 0, -ENAMETOOLONG (@p buf too small), -EINVAL.
 */
int spate_config_stream_log_dir(const struct spate_config *c, const struct spate_config_stream *s,
				uint32_t shard, char *buf, size_t len);

/** Name of a starting position as written in YAML ("trim_horizon", ...), or "?". */
const char *spate_config_start_str(enum spate_config_start s);

/* ------------------------------------------------------------------------ */
/* Value syntax (the same parsers the YAML loader uses)                     */
/* ------------------------------------------------------------------------ */

/**
 * Parse a size: decimal bytes, optionally followed by a unit (one space
 * allowed before it, case ignored): B, KiB, MiB, GiB, TiB (powers of 1024)
 * or KB, MB, GB, TB (powers of 1000). "64KiB" = 65536, "64KB" = 64000.
 * @return 0, -EINVAL (syntax), -ERANGE (above UINT64_MAX).
 */
int spate_config_parse_size(const char *s, uint64_t *out);

/**
 * Parse a duration into nanoseconds: "0", or one or more <integer><unit>
 * with units ns, us, ms, s, m, h, d ("1h30m", "500us", "7d").
 * @return 0, -EINVAL (syntax, or a non-zero number without a unit),
 *         -ERANGE (above UINT64_MAX - 1 ns).
 */
int spate_config_parse_duration(const char *s, uint64_t *out);

/**
 * Parse a timestamp into nanoseconds since the epoch: RFC 3339
 * ("2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123456789+01:00"; 'T' or a
 * space; 'Z' or an offset; up to 9 fractional digits; 1970 and later) or a
 * plain integer of nanoseconds.
 * @return 0, -EINVAL (syntax or an impossible date), -ERANGE.
 */
int spate_config_parse_timestamp(const char *s, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_CONFIG_H */
