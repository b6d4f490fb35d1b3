/* SPDX-License-Identifier: MIT */
/*
 * supervisor.h - the process supervisor of the functions door: the child
 * processes of one consumer (function processes, isolated C plugins),
 * started, watched, killed at a deadline and restarted with back-off.
 * Internal to the doors (engine/functions/); not installed.
 *
 * A supervisor runs `procs` copies of one command (the consumer's
 * `concurrency`), each in a slot 0..procs-1. Slot life:
 *
 *   STARTING --ready()--> READY --begin()--> BUSY --end()--> READY ...
 *      |                    |                  |
 *      +--init deadline-----+--exit/crash------+--invoke deadline--> (killed)
 *                           v
 *                        BACKOFF --after back-off--> STARTING (cold start)
 *
 * - spawn: fork + execve of argv (argv[0] looked up in PATH before the
 *   fork), env (NULL: the engine's), cwd; stdin /dev/null, stdout and
 *   stderr pipes read line by line into the engine's log (spate/slog.h)
 *   with the consumer, stream and slot in context; with opts.socket a
 *   socketpair whose child end is fd 3 ($SPATE_SUP_FD=3) and whose parent
 *   end is spate_sup_socket(). The child dies with the supervisor thread
 *   (PR_SET_PDEATHSIG) and gets a pidfd where the kernel has them.
 * - memory_limit: a cgroup v2 sub-cgroup per slot (memory.max, swap 0,
 *   oom.group) when the engine's own cgroup v2 delegates the memory
 *   controller to a writable child; otherwise RLIMIT_AS (address space,
 *   not RSS: runtimes that reserve address space, V8's, need headroom).
 *   spate_sup_mem_mode() says which, and the start line logs it.
 * - cold start: spawn to ready() (what the child calls its init is the
 *   caller's: the isolated host's hello after the plugin's init, a
 *   function's first GET /next): counted, timed (histogram `init`), like
 *   Lambda's Init Duration. Not ready within init_timeout: killed.
 * - invocation: begin() sets a deadline, end() counts it (histogram
 *   `invoke`, errors); past the deadline the supervisor thread kills the
 *   process (SIGKILL) and counts a timeout.
 * - restart: a slot whose process ended is restarted after a back-off that
 *   doubles from backoff_min to backoff_max with each consecutive failure
 *   (exit before ready, crash, kill), back to backoff_min after an
 *   invocation that succeeded.
 *
 * Threads: one supervisor thread per supervisor spawns, reaps, kills at
 * deadlines, restarts and copies output into the log (poll() on pidfds,
 * pipes and an eventfd; a 100 ms tick where there is no pidfd). Every
 * spate_sup_* function may be called from any thread; slot calls from
 * several threads on one slot are the caller's to order (one lane, one
 * slot).
 *
 * Counters go to a struct spate_stats_sup slot and two histograms
 * (spate/stats.h: the counters region's, or the supervisor's own when the
 * region is off), multi-writer: relaxed fetch_adds.
 */
#ifndef SPATE_FN_SUPERVISOR_H
#define SPATE_FN_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spate/hist.h"
#include "spate/stats.h"

/** Environment variable the child finds its control socket's fd in. */
#define SPATE_SUP_FD_ENV "SPATE_SUP_FD"
/** The control socket's fd in the child (opts.socket). */
#define SPATE_SUP_CHILD_FD 3

/** How memory_limit is enforced (enum spate_stats_sup_mem in spate/stats.h). */
#define SPATE_SUP_MEM_NONE SPATE_STATS_SUP_MEM_NONE
#define SPATE_SUP_MEM_CGROUP SPATE_STATS_SUP_MEM_CGROUP
#define SPATE_SUP_MEM_RLIMIT SPATE_STATS_SUP_MEM_RLIMIT

/** A slot's state (spate_sup_state()). */
enum spate_sup_slot_state {
	SPATE_SUP_IDLE = 0,     /**< never started, or stopped */
	SPATE_SUP_STARTING = 1, /**< spawned, not ready yet (cold start) */
	SPATE_SUP_READY = 2,    /**< ready, no invocation */
	SPATE_SUP_BUSY = 3,     /**< inside an invocation (begin .. end) */
	SPATE_SUP_BACKOFF = 4,  /**< ended; restarts at its back-off's end */
};

/** What to run. Strings are copied by spate_sup_create(). */
struct spate_sup_opts {
	uint32_t struct_size;        /**< sizeof(struct spate_sup_opts) */
	const char *consumer;        /**< log context, cgroup name (required) */
	const char *stream;          /**< log context (may be NULL) */
	const char *const *argv;     /**< command, NULL-terminated; argv[0] searched in PATH */
	const char *const *env;      /**< full environment, NULL-terminated (NULL: the engine's) */
	const char *cwd;             /**< working directory (NULL: the engine's) */
	uint32_t procs;              /**< processes (concurrency), >= 1 */
	uint64_t memory_limit;       /**< bytes per process (0: none) */
	uint64_t init_timeout_ns;    /**< spawn -> ready() (0: 10 s) */
	uint64_t backoff_min_ns;     /**< first restart delay (0: 100 ms) */
	uint64_t backoff_max_ns;     /**< longest (0: 30 s) */
	bool socket;                 /**< a control socketpair per process (fd 3 in the child) */
	/** Environment added for each spawn of slot @p slot (NULL-terminated
	 *  "K=V" strings the callback writes into @p buf of @p len bytes, at
	 *  most @p max of them): e.g. AWS_LAMBDA_RUNTIME_API per slot. Runs on
	 *  the supervisor thread before the fork. May be NULL. */
	int (*slot_env)(void *arg, uint32_t slot, char **out, unsigned max, char *buf, size_t len);
	void *arg;                   /**< for slot_env */
	/** Counters: a slot of the counters region and its two histograms
	 *  (NULL: the supervisor's own, readable with spate_sup_counters()). */
	struct spate_stats_sup *stats;
	struct spate_hist *init_hist;   /**< spawn -> ready, ns */
	struct spate_hist *invoke_hist; /**< begin -> end, ns */
	/** Start a slot's first process only when spate_sup_gen() or
	 *  spate_sup_acquire() asks for it (restarts stay eager), so a cold
	 *  start's time is the process's own, not the caller's delay. */
	bool lazy;
};

struct spate_sup;

/**
 * Create a supervisor and its thread; spawns every slot at once (with
 * opts.lazy: when first asked for).
 * @return 0, -EINVAL (no argv, consumer or procs; procs > 1024), -ENOENT
 *   (argv[0] not found in PATH: @p err names it), -ENOMEM, or the -errno of
 *   starting the thread. @p err (may be NULL) says why.
 */
int spate_sup_create(const struct spate_sup_opts *o, struct spate_sup **out, char *err,
		     size_t errlen);

/**
 * Stop every process (SIGTERM, SIGKILL after @p grace_ns), reap them, join
 * the thread, remove the cgroups, free. NULL is a no-op.
 */
void spate_sup_destroy(struct spate_sup *s, uint64_t grace_ns);

/**
 * Move the counters into consumer opts.consumer's slot of the sup area of
 * bus @p bus's counters region (what was counted so far is added there),
 * when the supervisor was created without opts.stats (the region is made
 * after the doors open their consumers). Idempotent.
 * @return 0, -ENOENT (no region, or no sup slot for the consumer), or the
 *   errors of spate_stats_attach_rw().
 */
int spate_sup_bind_stats(struct spate_sup *s, const char *bus);

/** Number of slots. */
uint32_t spate_sup_procs(const struct spate_sup *s);
/** How memory_limit is enforced: SPATE_SUP_MEM_*. */
int spate_sup_mem_mode(const struct spate_sup *s);
/** The counters (the region's slot or the supervisor's own). */
struct spate_stats_sup *spate_sup_counters(struct spate_sup *s);

/**
 * Wait until slot @p slot is READY (it may be starting or backing off), at
 * most @p wait_ns.
 * @return its generation (> 0: the spawn number, for the calls below), or
 *   -ETIMEDOUT, -ESHUTDOWN (being destroyed), -EINVAL.
 */
int64_t spate_sup_acquire(struct spate_sup *s, uint32_t slot, uint64_t wait_ns);

/**
 * Wait at most @p wait_ns until slot @p slot has a live process (starting,
 * ready or busy, not being killed).
 * @return its generation, or -ETIMEDOUT, -ESHUTDOWN, -EINVAL.
 */
int64_t spate_sup_gen(struct spate_sup *s, uint32_t slot, uint64_t wait_ns);

/**
 * Generation @p gen of slot @p slot finished its init: READY, the cold
 * start is counted and timed.
 * @return 0, -ESTALE (that process is gone), -EINVAL.
 */
int spate_sup_ready(struct spate_sup *s, uint32_t slot, int64_t gen);

/**
 * An invocation starts on generation @p gen of @p slot: BUSY, killed if
 * still BUSY at monotonic time @p deadline_ns (0: no deadline).
 * @return 0, -ESTALE, -EBUSY (already BUSY), -EINVAL.
 */
int spate_sup_begin(struct spate_sup *s, uint32_t slot, int64_t gen, uint64_t deadline_ns);

/**
 * The invocation ended: counted (and an error if !@p ok), timed, READY
 * again; a success resets the slot's back-off.
 * @return 0, -ESTALE (the process died or was killed meanwhile: nothing
 *   counted here, the supervisor counted the timeout or crash), -EINVAL.
 */
int spate_sup_end(struct spate_sup *s, uint32_t slot, int64_t gen, bool ok);

/**
 * The caller found generation @p gen broken (protocol error, init error):
 * kill it (SIGKILL) and restart it after back-off; @p why is logged.
 * @return 0, -ESTALE, -EINVAL.
 */
int spate_sup_fail(struct spate_sup *s, uint32_t slot, int64_t gen, const char *why);

/**
 * Wait at most @p wait_ns until generation @p gen of @p slot is reaped and
 * describe how it ended into @p buf: "killed at its deadline (timeout)
 * after 1.000 s", "killed by signal 11 (Segmentation fault)", "exited with
 * status 3", "killed by the OOM killer at memory_limit (cgroup)", ...
 * @return 1 (it ended: @p buf says how), 0 (still running: @p buf empty),
 *   -EINVAL.
 */
int spate_sup_exit_reason(struct spate_sup *s, uint32_t slot, int64_t gen, uint64_t wait_ns,
			  char *buf, size_t len);

/** The parent end of generation @p gen's control socket (opts.socket), or
 *  -ESTALE / -EINVAL. Open until the slot's process after next is spawned
 *  (a caller still polling it after the death sees EOF); do not close. */
int spate_sup_socket(struct spate_sup *s, uint32_t slot, int64_t gen);
/** The pid of @p slot's process, or 0 (none). */
pid_t spate_sup_pid(struct spate_sup *s, uint32_t slot);
/** @p slot's state (enum spate_sup_slot_state). */
int spate_sup_state(struct spate_sup *s, uint32_t slot);

#endif
