/* SPDX-License-Identifier: MIT */
/*
 * supervisor.c - child processes of one consumer, started, watched, killed
 * at deadlines and restarted with back-off (supervisor.h has the slot life).
 *
 * Design. One thread per supervisor owns every process event: it forks
 * (so PR_SET_PDEATHSIG, tied to the forking thread, lasts as long as the
 * supervisor), polls each process's pidfd and output pipes plus an eventfd
 * other threads kick, kills at deadlines, reaps, and respawns after the
 * back-off. Slot state sits behind one mutex; callers (workers, HTTP
 * threads) change it with short critical sections and wait on a condition
 * variable (CLOCK_MONOTONIC) for READY or a reap. The child is fork +
 * execve: between them only async-signal-safe calls (prctl, setsid,
 * setrlimit, write to cgroup.procs, dup2, chdir, execve), everything else
 * (path lookup, environment, cgroup files) prepared before the fork.
 * Each process leads its own session, so a kill reaches its own children
 * (a runtime's helpers) too.
 *
 * Output: each pipe is read as it fills, cut into lines (at most 1 KiB; a
 * longer line goes out in pieces) and logged at info (stdout) or warn
 * (stderr) with the consumer, the stream and the slot (as `lane`) in
 * context; slog's per-site rate limit applies (a flood is counted, not
 * written).
 *
 * Memory: a cgroup v2 directory per supervisor under the engine's own
 * cgroup, one child per slot with memory.max, when that cgroup delegates
 * the memory controller (the engine runs in a delegated cgroup or the
 * root); else RLIMIT_AS in the child. A slot whose memory.events oom_kill
 * grew was killed at its limit (counted as such).
 *
 * Limits: fork() of a large engine costs page-table copies (milliseconds,
 * part of the cold start); without pidfds (kernels before 5.3) reaping is
 * found by a 100 ms tick; a parent end of a control socket is closed one
 * death later (a caller may still poll it), so two per slot may be open.
 */
#include "engine/functions/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spate/slog.h"

#define SUP_MAX_PROCS 1024u
#define SUP_LINE_MAX 1024u
#define SUP_ENV_EXTRA 16u
#define SUP_TICK_MS 100

extern char **environ;

enum kill_kind { KILL_NONE = 0, KILL_TIMEOUT, KILL_INIT, KILL_FAIL, KILL_STOP };

struct sup_line {
	char buf[SUP_LINE_MAX];
	size_t n;
};

struct sup_slot {
	uint32_t idx;
	int state;            /* enum spate_sup_slot_state */
	int64_t gen;          /* spawn number of the current (or last) process */
	int64_t reaped_gen;   /* last generation reaped */
	pid_t pid;            /* 0: none */
	int pidfd, out_fd, err_fd, sock, stale_sock;
	struct sup_line out, err;
	uint64_t spawned_ns, begin_ns, deadline_ns, restart_at;
	uint32_t fails;       /* consecutive failures: back-off exponent */
	bool wanted;          /* lazy: someone waits for a process */
	int kill_kind;
	char kill_why[120];
	char reason[200];     /* how reaped_gen ended */
	char cg[PATH_MAX];    /* its cgroup directory ("" none) */
	uint64_t oom_seen;    /* memory.events oom_kill at spawn */
};

struct spate_sup {
	char *consumer, *stream, *cwd, *path;
	char **argv, **env;
	uint32_t n;
	uint64_t mem, init_timeout, bo_min, bo_max;
	bool socket;
	int (*slot_env)(void *, uint32_t, char **, unsigned, char *, size_t);
	void *arg;
	int mem_mode;
	char cg_base[PATH_MAX]; /* this supervisor's cgroup directory ("" none) */

	struct spate_stats_sup own;
	struct spate_hist *own_hists; /* [2] when the caller gave none */
	struct spate_stats_sup *st;
	struct spate_hist *hinit, *hinvoke;

	struct spate_stats *region; /* the counters region, once bound */

	pthread_t thr;
	bool thr_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int evfd;
	bool stopping;
	bool lazy;            /* spawn a slot's first process on demand */
	uint64_t stop_at;     /* SIGKILL after the grace */
	uint64_t planned_wake; /* when the thread's poll() ends at the latest (UINT64_MAX: never) */
	struct sup_slot *slots;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Counters: several writers (this thread, the callers of end()): relaxed
 * RMWs, figures for display that publish nothing. */
static void cnt(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static void kick(struct spate_sup *s)
{
	uint64_t one = 1;
	ssize_t r = write(s->evfd, &one, sizeof(one));
	(void)r; /* a full counter still wakes the thread */
}

/* ------------------------------------------------------------------------ */
/* Preparation (before any fork)                                            */
/* ------------------------------------------------------------------------ */

/* argv[0] as execve needs it: a path as is, else the first executable in PATH. */
static char *resolve_exe(const char *a0, const char *const *env)
{
	if (strchr(a0, '/'))
		return access(a0, X_OK) == 0 ? strdup(a0) : NULL;
	const char *path = NULL;
	for (const char *const *e = env; e && *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	if (!path)
		path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	char buf[PATH_MAX];
	for (const char *p = path; *p;) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		int k = snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, len ? p : ".", a0);
		if (k > 0 && (size_t)k < sizeof(buf) && access(buf, X_OK) == 0) {
			struct stat sb;
			if (stat(buf, &sb) == 0 && S_ISREG(sb.st_mode))
				return strdup(buf);
		}
		p += len;
		if (*p == ':')
			p++;
	}
	return NULL;
}

static char **dup_vec(const char *const *v)
{
	size_t n = 0;

	while (v[n])
		n++;
	char **o = calloc(n + 1, sizeof(*o));
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(o[i] = strdup(v[i]))) {
			while (i--)
				free(o[i]);
			free(o);
			return NULL;
		}
	return o;
}

static void free_vec(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static int write_file(const char *dir, const char *file, const char *val)
{
	char p[PATH_MAX];

	if (snprintf(p, sizeof(p), "%s/%s", dir, file) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, val, strlen(val));
	int rc = w == (ssize_t)strlen(val) ? 0 : -errno;
	close(fd);
	return rc;
}

static int read_file(const char *dir, const char *file, char *buf, size_t len)
{
	char p[PATH_MAX];

	if (snprintf(p, sizeof(p), "%s/%s", dir, file) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t r = read(fd, buf, len - 1);
	int rc = r < 0 ? -errno : 0;
	buf[r > 0 ? r : 0] = '\0';
	close(fd);
	return rc;
}

static bool has_word(const char *list, const char *w)
{
	size_t n = strlen(w);
	for (const char *p = list; (p = strstr(p, w)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ' || p[n] == '\n'))
			return true;
	return false;
}

/* The engine's cgroup v2 directory, if it can give the memory controller
 * to children: "" otherwise. */
static void cgroup_base(char *out, size_t len)
{
	char line[4096], mnt[PATH_MAX] = "", own[PATH_MAX] = "", ctl[512];
	FILE *f = fopen("/proc/self/mountinfo", "re");

	out[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		/* id parent maj:min root mountpoint opts ... - fstype src opts */
		char *dash = strstr(line, " - cgroup2 ");
		char root[PATH_MAX], mp[PATH_MAX];
		if (dash && sscanf(line, "%*s %*s %*s %4095s %4095s", root, mp) == 2 &&
		    strcmp(root, "/") == 0) {
			snprintf(mnt, sizeof(mnt), "%s", mp);
			break;
		}
	}
	fclose(f);
	if (!mnt[0] || !(f = fopen("/proc/self/cgroup", "re")))
		return;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(own, sizeof(own), "%s", line + 3);
		}
	fclose(f);
	if (!own[0])
		return;
	char dir[PATH_MAX];
	if (snprintf(dir, sizeof(dir), "%s%s", mnt, strcmp(own, "/") ? own : "") >= (int)sizeof(dir))
		return;
	if (read_file(dir, "cgroup.controllers", ctl, sizeof(ctl)) < 0 || !has_word(ctl, "memory"))
		return;
	if (read_file(dir, "cgroup.subtree_control", ctl, sizeof(ctl)) < 0)
		return;
	if (!has_word(ctl, "memory") && write_file(dir, "cgroup.subtree_control", "+memory") < 0)
		return; /* a cgroup with processes of its own cannot (EBUSY) */
	snprintf(out, len, "%s", dir);
}

/* This supervisor's cgroup and one child per slot with memory.max; on any
 * failure none (RLIMIT_AS then). */
static int cgroup_setup(struct spate_sup *s)
{
	char base[PATH_MAX], val[32];

	cgroup_base(base, sizeof(base));
	if (!base[0])
		return -ENOTSUP;
	static _Atomic unsigned serial; /* a hot deploy's supervisor lives beside the old one */
	/* Relaxed: a unique number, nothing published with it. */
	unsigned k = atomic_fetch_add_explicit(&serial, 1, memory_order_relaxed);
	if (snprintf(s->cg_base, sizeof(s->cg_base), "%s/spate-%d-%s-%u", base, (int)getpid(),
		     s->consumer, k) >= (int)sizeof(s->cg_base))
		goto fail;
	if (mkdir(s->cg_base, 0755) < 0 && errno != EEXIST)
		goto fail;
	if (write_file(s->cg_base, "cgroup.subtree_control", "+memory") < 0)
		goto fail_dir;
	snprintf(val, sizeof(val), "%" PRIu64, s->mem);
	for (uint32_t i = 0; i < s->n; i++) {
		struct sup_slot *sl = &s->slots[i];
		if (snprintf(sl->cg, sizeof(sl->cg), "%s/p%u", s->cg_base, i) >= (int)sizeof(sl->cg) ||
		    (mkdir(sl->cg, 0755) < 0 && errno != EEXIST) ||
		    write_file(sl->cg, "memory.max", val) < 0)
			goto fail_slots;
		write_file(sl->cg, "memory.swap.max", "0");   /* no swap: the limit is RAM */
		write_file(sl->cg, "memory.oom.group", "1");  /* the whole process at once */
	}
	return 0;
fail_slots:
	for (uint32_t i = 0; i < s->n; i++)
		if (s->slots[i].cg[0]) {
			rmdir(s->slots[i].cg);
			s->slots[i].cg[0] = '\0';
		}
fail_dir:
	rmdir(s->cg_base);
fail:
	s->cg_base[0] = '\0';
	return -ENOTSUP;
}

static uint64_t oom_kills(const struct sup_slot *sl)
{
	char buf[1024];

	if (!sl->cg[0] || read_file(sl->cg, "memory.events", buf, sizeof(buf)) < 0)
		return 0;
	const char *p = strstr(buf, "oom_kill ");
	return p ? strtoull(p + 9, NULL, 10) : 0;
}

/* ------------------------------------------------------------------------ */
/* Spawn (supervisor thread, lock held)                                     */
/* ------------------------------------------------------------------------ */

static void slog_sup(const struct spate_sup *s, int slot, enum spate_log_level lvl, const char *fmt,
		     ...) __attribute__((format(printf, 4, 5)));
static void slog_sup(const struct spate_sup *s, int slot, enum spate_log_level lvl, const char *fmt,
		     ...)
{
	struct spate_slog_ctx ctx = { s->consumer, s->stream, -1, slot };
	va_list ap;

	va_start(ap, fmt);
	spate_slog_v(lvl, &ctx, fmt, ap);
	va_end(ap);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* In the child, after fork: async-signal-safe calls only. */
static void __attribute__((noreturn)) child(const struct spate_sup *s, pid_t parent, int devnull,
					    int out_w, int err_w, int sock, int cg_procs,
					    char **envp)
{
	sigset_t all;

	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	signal(SIGPIPE, SIG_DFL); /* ignored dispositions survive execve */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127); /* the engine is already gone */
	setsid();
	if (cg_procs >= 0 && write(cg_procs, "0", 1) != 1)
		_exit(125);
	if (s->mem && cg_procs < 0) {
		struct rlimit rl = { s->mem, s->mem };
		setrlimit(RLIMIT_AS, &rl);
	}
	if (dup2(devnull, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
		_exit(126);
	if (sock >= 0) {
		if (sock == SPATE_SUP_CHILD_FD)
			fcntl(sock, F_SETFD, 0);
		else if (dup2(sock, SPATE_SUP_CHILD_FD) < 0)
			_exit(126);
	}
	if (s->cwd && chdir(s->cwd) < 0) {
		static const char m[] = "spate supervisor: cannot enter the working directory\n";
		ssize_t r = write(2, m, sizeof(m) - 1);
		(void)r;
		_exit(126);
	}
	execve(s->path, s->argv, envp);
	static const char m[] = "spate supervisor: execve failed\n";
	ssize_t r = write(2, m, sizeof(m) - 1);
	(void)r;
	_exit(127);
}

static int spawn(struct spate_sup *s, struct sup_slot *sl)
{
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, sp[2] = { -1, -1 };
	int devnull = -1, cg_procs = -1, rc;
	char *extra[SUP_ENV_EXTRA + 1] = { 0 };
	char extra_buf[4096], fd_env[32];
	char **envp = NULL;

	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
		goto err_errno;
	if (s->socket && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		goto err_errno;
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0)
		goto err_errno;
	if (sl->cg[0]) {
		char p[PATH_MAX + 16];
		snprintf(p, sizeof(p), "%s/cgroup.procs", sl->cg);
		cg_procs = open(p, O_WRONLY | O_CLOEXEC);
		if (cg_procs < 0)
			goto err_errno;
	}
	unsigned nx = 0;
	if (s->slot_env) {
		rc = s->slot_env(s->arg, sl->idx, extra, SUP_ENV_EXTRA - 1, extra_buf, sizeof(extra_buf));
		if (rc < 0)
			goto err;
		for (nx = 0; nx < SUP_ENV_EXTRA - 1 && extra[nx]; nx++)
			;
	}
	if (s->socket) {
		snprintf(fd_env, sizeof(fd_env), "%s=%d", SPATE_SUP_FD_ENV, SPATE_SUP_CHILD_FD);
		extra[nx++] = fd_env;
	}
	char **base = s->env ? s->env : environ;
	size_t nb = 0;
	while (base[nb])
		nb++;
	envp = calloc(nb + nx + 1, sizeof(*envp));
	if (!envp)
		goto err_nomem;
	for (size_t i = 0; i < nb; i++)
		envp[i] = base[i];
	for (unsigned i = 0; i < nx; i++)
		envp[nb + i] = extra[i];
	sl->oom_seen = oom_kills(sl);

	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		goto err_errno;
	if (pid == 0)
		child(s, parent, devnull, outp[1], errp[1], s->socket ? sp[1] : -1, cg_procs, envp);
	free(envp);
	close(devnull);
	close_fd(&cg_procs);
	close(outp[1]);
	close(errp[1]);
	if (s->socket)
		close(sp[1]);
	fcntl(outp[0], F_SETFL, O_NONBLOCK);
	fcntl(errp[0], F_SETFL, O_NONBLOCK);
	sl->pid = pid;
	sl->pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* -1 (ENOSYS): tick and waitpid */
	sl->out_fd = outp[0];
	sl->err_fd = errp[0];
	sl->out.n = sl->err.n = 0;
	close_fd(&sl->stale_sock);
	sl->stale_sock = sl->sock;
	sl->sock = s->socket ? sp[0] : -1;
	sl->gen++;
	sl->state = SPATE_SUP_STARTING;
	sl->spawned_ns = mono_ns();
	sl->deadline_ns = 0;
	sl->kill_kind = KILL_NONE;
	sl->kill_why[0] = '\0';
	cnt(&s->st->spawns, 1);
	pthread_cond_broadcast(&s->cond);
	/* Relaxed: a figure for display. */
	atomic_fetch_add_explicit(&s->st->alive, 1, memory_order_relaxed);
	return 0;
err_nomem:
	rc = -ENOMEM;
	goto err;
err_errno:
	rc = -errno;
err:
	free(envp);
	close_fd(&devnull);
	close_fd(&cg_procs);
	close_fd(&outp[0]);
	close_fd(&outp[1]);
	close_fd(&errp[0]);
	close_fd(&errp[1]);
	close_fd(&sp[0]);
	close_fd(&sp[1]);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* The supervisor thread                                                    */
/* ------------------------------------------------------------------------ */

static uint64_t backoff(const struct spate_sup *s, uint32_t fails)
{
	uint64_t d = s->bo_min;

	for (uint32_t i = 1; i < fails && d < s->bo_max; i++)
		d *= 2;
	return d < s->bo_max ? d : s->bo_max;
}

static void kill_slot(struct spate_sup *s, struct sup_slot *sl, int kind, int sig)
{
	(void)s;
	if (sl->pid <= 0)
		return;
	if (sl->kill_kind == KILL_NONE)
		sl->kill_kind = kind; /* the first reason stays (a timeout, then the stop) */
	kill(-sl->pid, sig); /* its session's group: helpers too */
	kill(sl->pid, sig);  /* in case setsid has not run yet */
}

static void emit_lines(struct spate_sup *s, struct sup_slot *sl, struct sup_line *lb, bool err,
		       bool flush)
{
	size_t start = 0;

	for (size_t i = 0; i < lb->n; i++)
		if (lb->buf[i] == '\n') {
			slog_sup(s, (int)sl->idx, err ? SPATE_LOG_WARN : SPATE_LOG_INFO,
				 "pid %d %s: %.*s", (int)sl->pid, err ? "stderr" : "stdout",
				 (int)(i - start), lb->buf + start);
			start = i + 1;
		}
	if (start == 0 && (lb->n == sizeof(lb->buf) || flush) && lb->n) {
		slog_sup(s, (int)sl->idx, err ? SPATE_LOG_WARN : SPATE_LOG_INFO, "pid %d %s: %.*s",
			 (int)sl->pid, err ? "stderr" : "stdout", (int)lb->n, lb->buf);
		start = lb->n;
	}
	memmove(lb->buf, lb->buf + start, lb->n - start);
	lb->n -= start;
}

static void drain(struct spate_sup *s, struct sup_slot *sl, int *fd, struct sup_line *lb, bool err)
{
	for (;;) {
		ssize_t r = read(*fd, lb->buf + lb->n, sizeof(lb->buf) - lb->n);
		if (r > 0) {
			lb->n += (size_t)r;
			emit_lines(s, sl, lb, err, false);
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		emit_lines(s, sl, lb, err, true); /* EOF or error: the last piece */
		close_fd(fd);
		return;
	}
}

static void describe(struct spate_sup *s, struct sup_slot *sl, int status, uint64_t ran)
{
	double secs = (double)ran / 1e9;
	bool oom = oom_kills(sl) > sl->oom_seen;

	if (oom) {
		cnt(&s->st->oom_kills, 1);
		snprintf(sl->reason, sizeof(sl->reason),
			 "killed by the OOM killer at memory_limit %" PRIu64 " MiB (cgroup) after %.3f s",
			 s->mem >> 20, secs);
	} else if (sl->kill_kind == KILL_TIMEOUT) {
		snprintf(sl->reason, sizeof(sl->reason),
			 "killed at its invocation deadline (timeout) after %.3f s in the invocation",
			 (double)(mono_ns() - sl->begin_ns) / 1e9);
	} else if (sl->kill_kind == KILL_INIT) {
		snprintf(sl->reason, sizeof(sl->reason), "killed: not ready within %.3f s (init timeout)",
			 (double)s->init_timeout / 1e9);
	} else if (sl->kill_kind == KILL_FAIL) {
		snprintf(sl->reason, sizeof(sl->reason), "killed: %s", sl->kill_why);
	} else if (sl->kill_kind == KILL_STOP) {
		snprintf(sl->reason, sizeof(sl->reason), "stopped");
	} else if (WIFSIGNALED(status)) {
		snprintf(sl->reason, sizeof(sl->reason), "killed by signal %d (%s) after %.3f s%s",
			 WTERMSIG(status), strsignal(WTERMSIG(status)), secs,
			 s->mem_mode == SPATE_SUP_MEM_RLIMIT
				 ? " (memory_limit is RLIMIT_AS: an allocation past it fails)"
				 : "");
	} else {
		snprintf(sl->reason, sizeof(sl->reason), "exited with status %d after %.3f s",
			 WEXITSTATUS(status), secs);
	}
}

/* Process of @p sl ended with @p status. */
static void reaped(struct spate_sup *s, struct sup_slot *sl, int status)
{
	uint64_t now = mono_ns();
	int was = sl->state;

	describe(s, sl, status, now - sl->spawned_ns);
	if (sl->out_fd >= 0)
		drain(s, sl, &sl->out_fd, &sl->out, false);
	if (sl->err_fd >= 0)
		drain(s, sl, &sl->err_fd, &sl->err, true);
	close_fd(&sl->pidfd);
	/* Relaxed: a figure for display. */
	atomic_fetch_sub_explicit(&s->st->alive, 1, memory_order_relaxed);
	if (sl->kill_kind == KILL_TIMEOUT) {
		cnt(&s->st->timeouts, 1);
	} else if (sl->kill_kind != KILL_STOP && sl->kill_kind != KILL_FAIL &&
		   sl->kill_kind != KILL_INIT) {
		cnt(&s->st->crashes, 1);
	}
	if (was == SPATE_SUP_STARTING && sl->kill_kind != KILL_STOP)
		cnt(&s->st->init_fails, 1);
	if (was == SPATE_SUP_BUSY) {
		/* The invocation in flight failed with the process. */
		cnt(&s->st->invocations, 1);
		cnt(&s->st->errors, 1);
		uint64_t d = now - sl->begin_ns;
		cnt(&s->st->invoke_ns, d);
		spate_hist_record_mw(s->hinvoke, d);
	}
	slog_sup(s, (int)sl->idx, sl->kill_kind == KILL_STOP ? SPATE_LOG_DEBUG : SPATE_LOG_WARN,
		 "process %d (%s) %s%s", (int)sl->pid, s->argv[0], sl->reason,
		 s->stopping ? "" : "; restarting after back-off");
	sl->pid = 0;
	sl->reaped_gen = sl->gen;
	sl->fails++;
	sl->state = s->stopping ? SPATE_SUP_IDLE : SPATE_SUP_BACKOFF;
	sl->restart_at = now + backoff(s, sl->fails);
	pthread_cond_broadcast(&s->cond);
}

static void check_deadlines(struct spate_sup *s, uint64_t now, uint64_t *next)
{
	for (uint32_t i = 0; i < s->n; i++) {
		struct sup_slot *sl = &s->slots[i];
		uint64_t at = 0;

		if (s->stopping) {
			if (sl->pid > 0 && now >= s->stop_at)
				kill_slot(s, sl, KILL_STOP, SIGKILL);
			else if (sl->pid > 0)
				at = s->stop_at;
		} else if (sl->state == SPATE_SUP_BACKOFF ||
			   (sl->state == SPATE_SUP_IDLE && (!s->lazy || sl->wanted))) {
			if (now >= sl->restart_at) {
				int rc = spawn(s, sl);
				if (rc < 0) {
					slog_sup(s, (int)i, SPATE_LOG_ERROR, "cannot start %s: %s",
						 s->argv[0], strerror(-rc));
					sl->fails++;
					sl->restart_at = now + backoff(s, sl->fails);
					at = sl->restart_at;
				}
			} else {
				at = sl->restart_at;
			}
		}
		if (!s->stopping && sl->pid > 0 && sl->kill_kind == KILL_NONE) {
			if (sl->state == SPATE_SUP_STARTING) {
				at = sl->spawned_ns + s->init_timeout;
				if (now >= at) {
					slog_sup(s, (int)i, SPATE_LOG_WARN,
						 "process %d not ready within %.3f s: killed",
						 (int)sl->pid, (double)s->init_timeout / 1e9);
					kill_slot(s, sl, KILL_INIT, SIGKILL);
					at = 0;
				}
			} else if (sl->state == SPATE_SUP_BUSY && sl->deadline_ns) {
				at = sl->deadline_ns;
				if (now >= at) {
					kill_slot(s, sl, KILL_TIMEOUT, SIGKILL);
					at = 0;
				}
			}
		}
		if (at && at < *next)
			*next = at;
	}
}

static void *sup_thread(void *arg)
{
	struct spate_sup *s = arg;
	struct pollfd *pf = calloc(1 + 3 * (size_t)s->n, sizeof(*pf));
	int *who = calloc(1 + 3 * (size_t)s->n, sizeof(*who));

	if (!pf || !who) {
		slog_sup(s, -1, SPATE_LOG_ERROR, "supervisor: out of memory");
		free(pf);
		free(who);
		return NULL;
	}
	pthread_mutex_lock(&s->lock);
	for (;;) {
		uint64_t now = mono_ns(), next = UINT64_MAX;
		bool any = false, tick = false;

		check_deadlines(s, now, &next);
		/* A wake-up planned for a deadline stays planned after its
		 * invocation ended (begin() relies on it to skip the kick). */
		if (s->planned_wake > now && s->planned_wake < next)
			next = s->planned_wake;
		nfds_t n = 0;
		pf[n] = (struct pollfd){ .fd = s->evfd, .events = POLLIN };
		who[n++] = -1;
		for (uint32_t i = 0; i < s->n; i++) {
			struct sup_slot *sl = &s->slots[i];
			if (sl->pid > 0) {
				any = true;
				if (sl->pidfd >= 0) {
					pf[n] = (struct pollfd){ .fd = sl->pidfd, .events = POLLIN };
					who[n++] = (int)(i * 3);
				} else {
					tick = true;
				}
			}
			if (sl->out_fd >= 0) {
				pf[n] = (struct pollfd){ .fd = sl->out_fd, .events = POLLIN };
				who[n++] = (int)(i * 3 + 1);
			}
			if (sl->err_fd >= 0) {
				pf[n] = (struct pollfd){ .fd = sl->err_fd, .events = POLLIN };
				who[n++] = (int)(i * 3 + 2);
			}
		}
		if (s->stopping && !any)
			break;
		int ms = -1;
		if (next != UINT64_MAX)
			ms = next <= now ? 0 : (int)((next - now + 999999) / 1000000);
		if (tick && (ms < 0 || ms > SUP_TICK_MS))
			ms = SUP_TICK_MS;
		/* A deadline set later than this needs no wake-up (begin()). */
		s->planned_wake = ms < 0 ? UINT64_MAX : now + (uint64_t)ms * 1000000ull;
		pthread_mutex_unlock(&s->lock);
		int r = poll(pf, n, ms);
		pthread_mutex_lock(&s->lock);
		if (r < 0 && errno != EINTR)
			slog_sup(s, -1, SPATE_LOG_ERROR, "supervisor: poll: %s", strerror(errno));
		for (nfds_t k = 0; r > 0 && k < n; k++) {
			if (!pf[k].revents)
				continue;
			if (who[k] < 0) {
				uint64_t v;
				ssize_t rr = read(s->evfd, &v, sizeof(v));
				(void)rr;
				continue;
			}
			struct sup_slot *sl = &s->slots[who[k] / 3];
			if (who[k] % 3 == 1 && sl->out_fd >= 0)
				drain(s, sl, &sl->out_fd, &sl->out, false);
			else if (who[k] % 3 == 2 && sl->err_fd >= 0)
				drain(s, sl, &sl->err_fd, &sl->err, true);
		}
		/* Reap whatever ended (pidfd readable, or the tick). */
		for (uint32_t i = 0; i < s->n; i++) {
			struct sup_slot *sl = &s->slots[i];
			int status;
			if (sl->pid > 0 && waitpid(sl->pid, &status, WNOHANG) == sl->pid)
				reaped(s, sl, status);
		}
	}
	for (uint32_t i = 0; i < s->n; i++) {
		close_fd(&s->slots[i].out_fd);
		close_fd(&s->slots[i].err_fd);
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	free(pf);
	free(who);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* API                                                                      */
/* ------------------------------------------------------------------------ */

int spate_sup_create(const struct spate_sup_opts *o, struct spate_sup **out, char *err,
		     size_t errlen)
{
	struct spate_sup *s;
	int rc = -ENOMEM;

	if (err && errlen)
		err[0] = '\0';
	if (!o || !out || o->struct_size < offsetof(struct spate_sup_opts, stats) || !o->consumer ||
	    !o->argv || !o->argv[0] || !o->procs || o->procs > SUP_MAX_PROCS) {
		if (err)
			snprintf(err, errlen, "supervisor: a command, a consumer and 1..%u processes",
				 SUP_MAX_PROCS);
		return -EINVAL;
	}
	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->evfd = -1;
	s->n = o->procs;
	s->mem = o->memory_limit;
	s->init_timeout = o->init_timeout_ns ? o->init_timeout_ns : 10000000000ull;
	s->bo_min = o->backoff_min_ns ? o->backoff_min_ns : 100000000ull;
	s->bo_max = o->backoff_max_ns ? o->backoff_max_ns : 30000000000ull;
	if (s->bo_max < s->bo_min)
		s->bo_max = s->bo_min;
	s->socket = o->socket;
	s->lazy = o->struct_size >= offsetof(struct spate_sup_opts, lazy) + sizeof(o->lazy) && o->lazy;
	s->planned_wake = UINT64_MAX;
	s->slot_env = o->slot_env;
	s->arg = o->arg;
	s->consumer = strdup(o->consumer);
	s->stream = o->stream ? strdup(o->stream) : NULL;
	s->cwd = o->cwd ? strdup(o->cwd) : NULL;
	s->argv = dup_vec(o->argv);
	s->env = o->env ? dup_vec(o->env) : NULL;
	s->slots = calloc(s->n, sizeof(*s->slots));
	if (!s->consumer || (o->stream && !s->stream) || (o->cwd && !s->cwd) || !s->argv ||
	    (o->env && !s->env) || !s->slots)
		goto err;
	s->path = resolve_exe(o->argv[0], o->env);
	if (!s->path) {
		rc = -ENOENT;
		if (err)
			snprintf(err, errlen, "consumer %s: command %s: not found or not executable",
				 o->consumer, o->argv[0]);
		goto err;
	}
	bool have_stats = o->struct_size >= offsetof(struct spate_sup_opts, invoke_hist) +
						    sizeof(o->invoke_hist) &&
			  o->stats && o->init_hist && o->invoke_hist;
	if (have_stats) {
		s->st = o->stats;
		s->hinit = o->init_hist;
		s->hinvoke = o->invoke_hist;
	} else {
		s->own_hists = calloc(2, sizeof(struct spate_hist));
		if (!s->own_hists)
			goto err;
		spate_hist_init(&s->own_hists[0]);
		spate_hist_init(&s->own_hists[1]);
		s->st = &s->own;
		s->hinit = &s->own_hists[0];
		s->hinvoke = &s->own_hists[1];
	}
	for (uint32_t i = 0; i < s->n; i++) {
		struct sup_slot *sl = &s->slots[i];
		sl->idx = i;
		sl->pidfd = sl->out_fd = sl->err_fd = sl->sock = sl->stale_sock = -1;
	}
	if (s->mem)
		s->mem_mode = cgroup_setup(s) == 0 ? SPATE_SUP_MEM_CGROUP : SPATE_SUP_MEM_RLIMIT;
	s->st->procs = s->n;
	s->st->mem_mode = (uint32_t)s->mem_mode;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&s->lock, NULL);
	s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->evfd < 0) {
		rc = -errno;
		goto err_sync;
	}
	rc = -pthread_create(&s->thr, NULL, sup_thread, s);
	if (rc < 0)
		goto err_sync;
	s->thr_started = true;
	slog_sup(s, -1, SPATE_LOG_INFO, "supervising %u process(es) of %s%s%s", s->n, s->path,
		 s->mem ? ", memory_limit by " : "",
		 !s->mem ? "" : s->mem_mode == SPATE_SUP_MEM_CGROUP ? "cgroup v2 memory.max"
								    : "RLIMIT_AS (no writable cgroup v2 memory controller)");
	*out = s;
	return 0;
err_sync:
	if (err)
		snprintf(err, errlen, "consumer %s: supervisor: %s", o->consumer, strerror(-rc));
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
err:
	if (s->evfd >= 0)
		close(s->evfd);
	for (uint32_t i = 0; s->slots && i < s->n; i++)
		if (s->slots[i].cg[0])
			rmdir(s->slots[i].cg);
	if (s->cg_base[0])
		rmdir(s->cg_base);
	free(s->own_hists);
	free(s->slots);
	free(s->path);
	free_vec(s->argv);
	free_vec(s->env);
	free(s->cwd);
	free(s->stream);
	free(s->consumer);
	free(s);
	return rc;
}

void spate_sup_destroy(struct spate_sup *s, uint64_t grace_ns)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	s->stop_at = mono_ns() + grace_ns;
	for (uint32_t i = 0; i < s->n; i++) {
		struct sup_slot *sl = &s->slots[i];
		sl->kill_kind = KILL_STOP;
		if (sl->pid > 0)
			kill_slot(s, sl, KILL_STOP, grace_ns ? SIGTERM : SIGKILL);
	}
	pthread_cond_broadcast(&s->cond);
	kick(s);
	pthread_mutex_unlock(&s->lock);
	if (s->thr_started)
		pthread_join(s->thr, NULL);
	for (uint32_t i = 0; i < s->n; i++) {
		struct sup_slot *sl = &s->slots[i];
		close_fd(&sl->sock);
		close_fd(&sl->stale_sock);
		close_fd(&sl->pidfd);
		if (sl->cg[0])
			rmdir(sl->cg);
	}
	if (s->cg_base[0])
		rmdir(s->cg_base);
	close(s->evfd);
	spate_stats_close(s->region);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->own_hists);
	free(s->slots);
	free(s->path);
	free_vec(s->argv);
	free_vec(s->env);
	free(s->cwd);
	free(s->stream);
	free(s->consumer);
	free(s);
}

int spate_sup_bind_stats(struct spate_sup *s, const char *bus)
{
	struct spate_stats *region = NULL;
	int rc;

	if (!s || !bus)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	bool bound = s->region != NULL;
	pthread_mutex_unlock(&s->lock);
	if (bound)
		return 0;
	rc = spate_stats_attach_rw(bus, &region);
	if (rc < 0)
		return rc;
	int ci = spate_stats_consumer_find(region, s->consumer);
	struct spate_stats_sup *x = ci < 0 ? NULL : spate_stats_sup_of(region, (uint32_t)ci);
	struct spate_hist *hi = x ? spate_stats_sup_hist_at(region, x->init_hist) : NULL;
	struct spate_hist *hv = x ? spate_stats_sup_hist_at(region, x->invoke_hist) : NULL;
	if (!x || !hi || !hv) {
		spate_stats_close(region);
		return -ENOENT;
	}
	pthread_mutex_lock(&s->lock);
	if (s->region || s->st != &s->own) { /* bound meanwhile, or the caller's slot */
		pthread_mutex_unlock(&s->lock);
		spate_stats_close(region);
		return 0;
	}
	/* What was counted so far moves into the region's slot: every writer
	 * of the counters holds the lock, but alive is also a gauge. */
	_Atomic uint64_t *from[] = { &s->own.invocations, &s->own.errors, &s->own.timeouts,
				     &s->own.crashes, &s->own.cold_starts, &s->own.init_fails,
				     &s->own.spawns, &s->own.oom_kills, &s->own.init_ns,
				     &s->own.invoke_ns };
	_Atomic uint64_t *to[] = { &x->invocations, &x->errors, &x->timeouts, &x->crashes,
				   &x->cold_starts, &x->init_fails, &x->spawns, &x->oom_kills,
				   &x->init_ns, &x->invoke_ns };
	for (unsigned i = 0; i < sizeof(from) / sizeof(from[0]); i++)
		cnt(to[i], atomic_load_explicit(from[i], memory_order_relaxed));
	/* Relaxed: a gauge for display. */
	atomic_store_explicit(&x->alive, atomic_load_explicit(&s->own.alive, memory_order_relaxed),
			      memory_order_relaxed);
	x->procs = s->n;
	x->mem_mode = (uint32_t)s->mem_mode;
	spate_hist_merge(hi, s->hinit);
	spate_hist_merge(hv, s->hinvoke);
	s->st = x;
	s->hinit = hi;
	s->hinvoke = hv;
	s->region = region;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

uint32_t spate_sup_procs(const struct spate_sup *s)
{
	return s->n;
}

int spate_sup_mem_mode(const struct spate_sup *s)
{
	return s->mem_mode;
}

struct spate_stats_sup *spate_sup_counters(struct spate_sup *s)
{
	return s->st;
}

static struct sup_slot *slot_of(struct spate_sup *s, uint32_t slot)
{
	return s && slot < s->n ? &s->slots[slot] : NULL;
}

static void deadline_ts(uint64_t at, struct timespec *ts)
{
	ts->tv_sec = (time_t)(at / 1000000000ull);
	ts->tv_nsec = (long)(at % 1000000000ull);
}

/* Lazy: the slot's first process is wanted now (lock held). */
static void want(struct spate_sup *s, struct sup_slot *sl)
{
	if (!sl->wanted) {
		sl->wanted = true;
		if (s->lazy)
			kick(s);
	}
}

int64_t spate_sup_acquire(struct spate_sup *s, uint32_t slot, uint64_t wait_ns)
{
	struct sup_slot *sl = slot_of(s, slot);
	struct timespec ts;
	int64_t rc;

	if (!sl)
		return -EINVAL;
	deadline_ts(mono_ns() + wait_ns, &ts);
	pthread_mutex_lock(&s->lock);
	want(s, sl);
	for (;;) {
		if (s->stopping) {
			rc = -ESHUTDOWN;
			break;
		}
		if (sl->state == SPATE_SUP_READY && sl->pid > 0) {
			rc = sl->gen;
			break;
		}
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT) {
			rc = sl->state == SPATE_SUP_READY && sl->pid > 0 ? sl->gen : -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int spate_sup_ready(struct spate_sup *s, uint32_t slot, int64_t gen)
{
	struct sup_slot *sl = slot_of(s, slot);
	int rc = 0;

	if (!sl)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (sl->gen != gen || sl->pid <= 0 || sl->kill_kind != KILL_NONE) {
		rc = -ESTALE;
	} else if (sl->state == SPATE_SUP_STARTING) {
		uint64_t d = mono_ns() - sl->spawned_ns;
		sl->state = SPATE_SUP_READY;
		cnt(&s->st->cold_starts, 1);
		cnt(&s->st->init_ns, d);
		spate_hist_record_mw(s->hinit, d);
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int spate_sup_begin(struct spate_sup *s, uint32_t slot, int64_t gen, uint64_t deadline_ns)
{
	struct sup_slot *sl = slot_of(s, slot);
	int rc = 0;

	if (!sl)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (sl->gen != gen || sl->pid <= 0 || sl->kill_kind != KILL_NONE ||
	    sl->state == SPATE_SUP_STARTING) {
		rc = -ESTALE;
	} else if (sl->state == SPATE_SUP_BUSY) {
		rc = -EBUSY;
	} else {
		sl->state = SPATE_SUP_BUSY;
		sl->begin_ns = mono_ns();
		sl->deadline_ns = deadline_ns;
		/* Wake the thread only if it would sleep past this deadline: it
		 * keeps its planned wake-up after the invocation ends, so in a
		 * steady flow of invocations it is woken about once a timeout,
		 * not once a batch. */
		if (deadline_ns && deadline_ns < s->planned_wake) {
			s->planned_wake = deadline_ns;
			kick(s);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int spate_sup_end(struct spate_sup *s, uint32_t slot, int64_t gen, bool ok)
{
	struct sup_slot *sl = slot_of(s, slot);
	int rc = 0;

	if (!sl)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (sl->gen != gen || sl->pid <= 0 || sl->state != SPATE_SUP_BUSY ||
	    sl->kill_kind != KILL_NONE) {
		rc = -ESTALE;
	} else {
		uint64_t d = mono_ns() - sl->begin_ns;
		sl->state = SPATE_SUP_READY;
		sl->deadline_ns = 0;
		cnt(&s->st->invocations, 1);
		if (!ok)
			cnt(&s->st->errors, 1);
		else
			sl->fails = 0;
		cnt(&s->st->invoke_ns, d);
		spate_hist_record_mw(s->hinvoke, d);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int spate_sup_fail(struct spate_sup *s, uint32_t slot, int64_t gen, const char *why)
{
	struct sup_slot *sl = slot_of(s, slot);
	int rc = 0;

	if (!sl)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (sl->gen != gen || sl->pid <= 0) {
		rc = -ESTALE;
	} else if (sl->kill_kind == KILL_NONE) {
		snprintf(sl->kill_why, sizeof(sl->kill_why), "%s", why ? why : "failed");
		kill_slot(s, sl, KILL_FAIL, SIGKILL);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int spate_sup_exit_reason(struct spate_sup *s, uint32_t slot, int64_t gen, uint64_t wait_ns,
			  char *buf, size_t len)
{
	struct sup_slot *sl = slot_of(s, slot);
	struct timespec ts;
	int rc;

	if (!sl || !buf || !len)
		return -EINVAL;
	buf[0] = '\0';
	deadline_ts(mono_ns() + wait_ns, &ts);
	pthread_mutex_lock(&s->lock);
	while (sl->reaped_gen < gen && !(s->stopping && sl->pid <= 0))
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
			break;
	rc = sl->reaped_gen >= gen;
	if (rc)
		snprintf(buf, len, "%s", sl->reaped_gen == gen ? sl->reason : "restarted since");
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int64_t spate_sup_gen(struct spate_sup *s, uint32_t slot, uint64_t wait_ns)
{
	struct sup_slot *sl = slot_of(s, slot);
	struct timespec ts;
	int64_t rc;

	if (!sl)
		return -EINVAL;
	deadline_ts(mono_ns() + wait_ns, &ts);
	pthread_mutex_lock(&s->lock);
	want(s, sl);
	for (;;) {
		if (s->stopping) {
			rc = -ESHUTDOWN;
			break;
		}
		if (sl->pid > 0 && sl->kill_kind == KILL_NONE) {
			rc = sl->gen;
			break;
		}
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int spate_sup_socket(struct spate_sup *s, uint32_t slot, int64_t gen)
{
	struct sup_slot *sl = slot_of(s, slot);
	int rc;

	if (!sl)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	rc = sl->gen == gen && sl->sock >= 0 ? sl->sock : -ESTALE;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

pid_t spate_sup_pid(struct spate_sup *s, uint32_t slot)
{
	struct sup_slot *sl = slot_of(s, slot);
	pid_t p;

	if (!sl)
		return 0;
	pthread_mutex_lock(&s->lock);
	p = sl->pid;
	pthread_mutex_unlock(&s->lock);
	return p;
}

int spate_sup_state(struct spate_sup *s, uint32_t slot)
{
	struct sup_slot *sl = slot_of(s, slot);
	int st;

	if (!sl)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	st = sl->state;
	pthread_mutex_unlock(&s->lock);
	return st;
}
