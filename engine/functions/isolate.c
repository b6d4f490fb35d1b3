/* SPDX-License-Identifier: MIT */
/*
 * isolate.c - `isolation: process`: a consumer's C plugin run in supervised
 * child processes (spate-isolate, isolate_host.c), provided to the consumer
 * runtime as a plugin descriptor (spate/provider.h) whose process() hands
 * each batch to the task's child and returns its result.
 *
 * Design. One supervisor per consumer (supervisor.h), one slot per task
 * (shard x lane), so tasks run concurrently as in-process states do. A
 * task's control area (a memfd, isolate_proto.h) holds one descriptor per
 * record: the engine's own record view, whose payload address the child
 * finds in its read-only mapping of the stream's region (mapped at the
 * same address where it can); records the task reads from the shard log
 * are copied into the area's spill part. process() writes the
 * descriptors, rings the area's doorbell and spins a while on the answer
 * before it sleeps on the socket (a batch's round trip is then two cache
 * line transfers, not two wake-ups of sleeping processes); the batch's
 * records stay in the ring until then,
 * since the engine releases the task's reader only after the result.
 *
 * Pipelined hand-over (struct spate_provided_pipe): the consumer runtime
 * submits a batch (descriptors, doorbell) and, while the child runs it,
 * peeks the next batch and gives it to prepare(), which writes its
 * descriptors into the other of the area's two descriptor areas; then it
 * waits for the result (complete). When the next submit is that batch
 * (same views, count and sequence range) the doorbell is all that is left
 * on the worker's critical path; any other batch (a retry, a bisected
 * half) goes to the area not holding the prepared one. The worker's ring
 * reading thus overlaps the child's processing. Nothing is handed over
 * before the batch before it is answered: a crash retries exactly that
 * batch, and the prepared one (never seen by any child) follows it. The child's result (OK, PARTIAL with failed_index, RETRY,
 * FATAL, the error text) is the plugin's, passed through: every Lambda rule
 * of the consumer runtime applies unchanged.
 *
 * Failures. A child that crashes, aborts or exits inside a batch closes its
 * socket: process() returns RETRY with how it ended (the supervisor's exit
 * reason), and the next delivery waits for the restarted child (its cold
 * start: INIT, the plugin's init, HELLO). A batch past the consumer's
 * timeout is killed by the supervisor at that deadline (SIGKILL), with the
 * same RETRY; the engine's own watchdog is set later (timeout + 10 s) and
 * never has to abandon a worker thread. The bus, the other consumers and
 * the checkpoints are untouched: the child maps the ring read-only and the
 * checkpoint only moves on the results.
 *
 * Limits: a spilled batch larger than the spill area (batch_bytes, at most
 * 64 MiB) is delivered in parts, each a process() call of the child; the
 * plugin's periodic flush runs in the child on its own timer; put() from
 * the child goes through a producer of its own.
 */
#include "spate_config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/functions/isolate.h"
#include "engine/functions/isolate_proto.h"
#include "engine/functions/supervisor.h"
#include "spate/provider.h"
#include "spate/shm.h"
#include "spate/slog.h"
#include "spate/stream.h"

#define SEC 1000000000ull
#define ISO_INIT_TIMEOUT (30 * SEC)
#define ISO_SPILL_MAX (64ull << 20)

struct iso_inst {
	struct spate_sup *sup;
	const struct spate_config_consumer *k;
	char plugin[PATH_MAX];
	char bus[64], stream[64], consumer[64];
	char region_file[PATH_MAX];
	const uint8_t *base;
	uint64_t size;
	uint32_t lanes, cap;
	uint64_t spill_size, timeout_ns;
	struct spate_slog_ctx logctx;
	struct spate_stats_sup *stats;
	struct spate_hist *hinit, *hinvoke;
};

struct iso_task {
	struct iso_inst *in;
	uint32_t slot, shard, lane;
	int memfd;
	struct spate_iso_ctl *ctl;
	size_t ctl_size;
	struct spate_iso_rec *descs[2]; /* the two descriptor areas */
	uint8_t *spill;
	/* Pipelined hand-over: the batch prepared in area prep_area (its
	 * views, count, first and last sequence), while the child runs the
	 * one in the other; and the submitted batch's state. */
	bool prepped;
	uint32_t prep_area, prep_n;
	const struct spate_ring_rec *prep_recs;
	uint64_t prep_first, prep_last;
	bool sync;        /* submitted: complete() runs it as process() */
	bool started;     /* submitted: handed over (else res_early is its result) */
	int64_t run_gen;  /* the generation it was handed to */
	uint64_t run_seq; /* its step number */
	struct spate_batch_result res_early;
	int64_t gen;      /* generation handshaken (0: none) */
	uint64_t seq;     /* step number */
	uint8_t *init_msg;
	size_t init_len;
	struct spate_slog_ctx logctx;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

/* Where spate-isolate is: $SPATE_ISOLATE_HOST, beside the running program
 * (the build tree: engine/functions/), or the installed libexec one. */
int spate_iso_host_path(char *buf, size_t len)
{
	const char *e = getenv(SPATE_ISO_HOST_ENV);
	char self[PATH_MAX];

	if (e && *e) {
		snprintf(buf, len, "%s", e);
		return access(buf, X_OK) == 0 ? 0 : -ENOENT;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			/* The build tree's engine/, an installed bin/ (a moved
			 * prefix too), the same directory. */
			const char *cand[] = { "functions/spate-isolate", "../libexec/spate/spate-isolate",
					       "spate-isolate" };
			for (unsigned i = 0; i < 3; i++) {
				if (snprintf(buf, len, "%s/%s", self, cand[i]) < (int)len &&
				    access(buf, X_OK) == 0)
					return 0;
			}
		}
	}
	snprintf(buf, len, "%s/spate-isolate", SPATE_LIBEXEC_DIR);
	return access(buf, X_OK) == 0 ? 0 : -ENOENT;
}

/* ------------------------------------------------------------------------ */
/* One task's child                                                         */
/* ------------------------------------------------------------------------ */

/* Receive one protocol message on @p sock (recv @p flags) before @p deadline
 * (0: the supervisor's deadline kills the child first). 0, -ETIMEDOUT,
 * -EPIPE (the child is gone), -EPROTO (not a message of ours), -errno. */
static int recv_msg(int sock, uint64_t deadline, int flags, struct spate_iso_msg *m)
{
	for (;;) {
		int ms = -1;
		if (deadline) {
			uint64_t now = mono_ns();
			if (now >= deadline)
				return -ETIMEDOUT;
			ms = (int)((deadline - now) / 1000000 + 1);
		}
		struct pollfd pf = { .fd = sock, .events = POLLIN };
		int r = poll(&pf, 1, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			continue;
		ssize_t n = recv(sock, m, sizeof(*m), flags);
		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno == ECONNRESET ? -EPIPE : -errno;
		}
		if ((size_t)n != sizeof(*m) || m->magic != SPATE_ISO_MAGIC)
			return -EPROTO;
		return 0;
	}
}

/* Wait for a message of @p type and step @p seq until @p deadline (0: the
 * supervisor's deadline kills the child first). -EPIPE: the child is gone. */
static int wait_msg(int sock, uint32_t type, uint64_t seq, uint64_t deadline,
		    struct spate_iso_msg *m)
{
	for (;;) {
		int rc = recv_msg(sock, deadline, 0, m);
		if (rc < 0)
			return rc;
		if (m->type == type && m->seq == seq)
			return 0;
		/* A stale answer (a step given up before): skip it. */
	}
}

static int send_msg(int sock, uint32_t type, uint64_t seq, const void *extra, size_t len, int fd)
{
	struct spate_iso_msg m = { .magic = SPATE_ISO_MAGIC, .type = type, .seq = seq,
				   .len = (uint32_t)len };
	struct iovec iov[2] = { { &m, sizeof(m) }, { (void *)extra, len } };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };

	if (fd >= 0) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	if (n < 0)
		return errno == ECONNRESET || errno == EPIPE ? -EPIPE : -errno;
	return 0;
}

/* The child of @p t's slot is up and initialised: handshake a new
 * generation if needed. 0, or -errno with @p why filled. */
static int child_ready(struct iso_task *t, char *why, size_t wlen)
{
	struct iso_inst *in = t->in;
	int64_t gen = spate_sup_gen(in->sup, t->slot, ISO_INIT_TIMEOUT);

	if (gen < 0) {
		snprintf(why, wlen, "no isolated process for the plugin: %s", strerror((int)-gen));
		return (int)gen;
	}
	if (gen == t->gen)
		return 0;
	t->gen = 0;
	int sock = spate_sup_socket(in->sup, t->slot, gen);
	if (sock < 0) {
		snprintf(why, wlen, "isolated process restarted during its start");
		return -EAGAIN;
	}
	uint64_t seq = ++t->seq;
	struct spate_iso_msg m;
	int rc = send_msg(sock, SPATE_ISO_INIT, seq, t->init_msg, t->init_len, t->memfd);
	if (rc == 0)
		rc = wait_msg(sock, SPATE_ISO_HELLO, seq, mono_ns() + ISO_INIT_TIMEOUT, &m);
	if (rc == 0 && m.rc < 0) {
		snprintf(why, wlen, "isolated plugin %.80s: %.199s", in->plugin,
			 t->ctl->error[0] ? t->ctl->error : strerror(-m.rc));
		spate_sup_fail(in->sup, t->slot, gen, "its plugin failed to load or init");
		return m.rc;
	}
	if (rc < 0) {
		char r[200];
		spate_sup_fail(in->sup, t->slot, gen, "no answer to INIT");
		spate_sup_exit_reason(in->sup, t->slot, gen, 2 * SEC, r, sizeof(r));
		snprintf(why, wlen, "isolated plugin %.80s: process %.180s during init", in->plugin,
			 r[0] ? r : "gave no answer");
		return rc;
	}
	spate_sup_ready(in->sup, t->slot, gen);
	t->gen = gen;
	return 0;
}

static int iso_init(const struct spate_plugin_ctx *ctx, void **state)
{
	if (!SPATE_PLUGIN_HAS(ctx, provided) || !ctx->provided)
		return -EINVAL;
	struct iso_inst *in = ctx->provided;
	struct iso_task *t = calloc(1, sizeof(*t));
	int rc = -ENOMEM;

	if (!t)
		return -ENOMEM;
	t->in = in;
	t->memfd = -1;
	t->shard = ctx->shard;
	t->lane = ctx->lane;
	t->slot = ctx->shard * in->lanes + ctx->lane;
	t->logctx = (struct spate_slog_ctx){ in->consumer, in->stream, ctx->shard, ctx->lane };
	/* The control area: head, descriptors, spill. */
	uint64_t spill_off = SPATE_ISO_RECS_OFF + 2ull * in->cap * sizeof(struct spate_iso_rec);
	spill_off = (spill_off + 4095) & ~4095ull;
	t->ctl_size = (size_t)(spill_off + in->spill_size);
	char name[96];
	snprintf(name, sizeof(name), "spate-iso-%s-%u", in->consumer, t->slot);
	t->memfd = memfd_create(name, MFD_CLOEXEC);
	if (t->memfd < 0 || ftruncate(t->memfd, (off_t)t->ctl_size) < 0) {
		rc = -errno;
		goto err;
	}
	void *c = mmap(NULL, t->ctl_size, PROT_READ | PROT_WRITE, MAP_SHARED, t->memfd, 0);
	if (c == MAP_FAILED) {
		rc = -errno;
		goto err;
	}
	t->ctl = c;
	t->ctl->magic = SPATE_ISO_MAGIC;
	t->ctl->version = SPATE_ISO_VERSION;
	t->descs[0] = (void *)((uint8_t *)c + SPATE_ISO_RECS_OFF);
	t->descs[1] = t->descs[0] + in->cap;
	t->spill = (uint8_t *)c + spill_off;
	/* INIT's parameters. */
	size_t slen = strlen(in->plugin) + strlen(in->bus) + strlen(in->stream) +
		      strlen(in->consumer) + strlen(in->region_file) + 5;
	for (uint32_t i = 0; i < ctx->n_opts; i++)
		slen += strlen(ctx->opts[i].key) + strlen(ctx->opts[i].value) + 2;
	t->init_len = sizeof(struct spate_iso_init) + slen;
	if (t->init_len + sizeof(struct spate_iso_msg) > 65536) {
		rc = -E2BIG;
		goto err;
	}
	t->init_msg = malloc(t->init_len);
	if (!t->init_msg)
		goto err;
	struct spate_iso_init ii = { .version = SPATE_ISO_VERSION, .shard = t->shard, .lane = t->lane,
				     .cap = in->cap, .region_size = in->size,
				     .ctl_size = t->ctl_size, .spill_off = spill_off,
				     .spill_size = in->spill_size, .n_opts = ctx->n_opts,
				     .region_addr = (uint64_t)(uintptr_t)in->base,
				     .ctl_addr = (uint64_t)(uintptr_t)t->ctl,
				     .strings = (uint32_t)slen };
	memcpy(t->init_msg, &ii, sizeof(ii));
	char *p = (char *)t->init_msg + sizeof(ii);
	const char *strs[] = { in->plugin, in->bus, in->stream, in->consumer, in->region_file };
	for (unsigned i = 0; i < 5; i++)
		p = stpcpy(p, strs[i]) + 1;
	for (uint32_t i = 0; i < ctx->n_opts; i++) {
		p = stpcpy(p, ctx->opts[i].key) + 1;
		p = stpcpy(p, ctx->opts[i].value) + 1;
	}
	/* Counters into the region's sup slot (made after the open). */
	spate_sup_bind_stats(in->sup, in->bus);
	/* The first child's cold start now: a plugin that cannot load or
	 * init fails the consumer's start, as in-process. */
	char why[300];
	rc = child_ready(t, why, sizeof(why));
	if (rc < 0) {
		spate_slog(SPATE_LOG_ERROR, &t->logctx, "%s", why);
		goto err;
	}
	*state = t;
	return 0;
err:
	if (t->ctl)
		munmap(t->ctl, t->ctl_size);
	if (t->memfd >= 0)
		close(t->memfd);
	free(t->init_msg);
	free(t);
	return rc;
}

/* Wait for any message on @p sock (a wake-up) until @p deadline (0: the
 * supervisor's deadline kills the child first). -EPIPE: the child is gone. */
static int wait_wake(int sock, uint64_t deadline)
{
	struct spate_iso_msg m;

	return recv_msg(sock, deadline, MSG_DONTWAIT, &m);
}

/* Step @p seq's answer: spin on resp_seq for SPATE_ISO_SPIN_NS, then sleep
 * on the socket (isolate_proto.h: the doorbell). 0, or -EPIPE (the child is
 * gone), -ETIMEDOUT (past @p deadline), -EPROTO. */
static int wait_result(struct iso_task *t, int sock, uint64_t seq, uint64_t deadline)
{
	struct spate_iso_ctl *c = t->ctl;
	uint64_t t0 = mono_ns();
	int rc = 0;

	for (unsigned i = 1;; i++) {
		/* Pairs with the child's release store of resp_seq (isolate_host.c,
		 * run_step): its result in ctl is visible. */
		if (atomic_load_explicit(&c->resp_seq, memory_order_acquire) == seq)
			return 0;
		spate_iso_relax();
		if ((i & 63) == 0) {
			if (mono_ns() - t0 >= SPATE_ISO_SPIN_NS)
				break;
			/* The child may share this worker's CPU: let it run. */
			sched_yield();
		}
	}
	/* Going to sleep: the flag, then a look before each sleep. Seq_cst
	 * store here and seq_cst load of resp_seq below: the Dekker pair of
	 * the child's seq_cst store of resp_seq and load of engine_waiting
	 * (isolate_host.c, run_step): either it sees our flag and rings, or
	 * we see its answer. (Atomics, not fences: TSan does not model
	 * atomic_thread_fence.) Wake-ups left from steps seen without
	 * sleeping are read and dropped first. */
	atomic_store_explicit(&c->engine_waiting, 1, memory_order_seq_cst);
	struct spate_iso_msg m;
	ssize_t n;
	while ((n = recv(sock, &m, sizeof(m), MSG_DONTWAIT)) > 0)
		;
	if (n == 0)
		rc = -EPIPE;
	/* Seq_cst (acquire at least): pairs with the child's store of resp_seq
	 * (its result is visible), and the Dekker pair above. */
	while (rc == 0 && atomic_load_explicit(&c->resp_seq, memory_order_seq_cst) != seq)
		rc = wait_wake(sock, deadline);
	/* Relaxed: a hint the child reads after its fence. */
	atomic_store_explicit(&c->engine_waiting, 0, memory_order_relaxed);
	/* The child answered, then died: its answer stands. */
	if (rc == -EPIPE && atomic_load_explicit(&c->resp_seq, memory_order_acquire) == seq)
		rc = 0;
	return rc;
}

static int exchange_failed(struct iso_task *t, uint32_t n, int rc, struct spate_batch_result *res);

/* Ring for step @p type: @p n descriptors of area @p area are written. 0,
 * or the step is answered already in @p res (RETRY: no child, the child
 * gone) and 1 is returned. */
static int exchange_start(struct iso_task *t, uint32_t type, uint32_t n, uint32_t area,
			  const struct spate_batch *b, struct spate_batch_result *res)
{
	struct iso_inst *in = t->in;
	char why[300];
	int rc = child_ready(t, why, sizeof(why));

	if (rc < 0) {
		res->status = SPATE_BATCH_RETRY;
		snprintf(res->error, sizeof(res->error), "%.199s", why);
		return 1;
	}
	int64_t gen = t->gen;
	int sock = spate_sup_socket(in->sup, t->slot, gen);
	struct spate_iso_ctl *c = t->ctl;
	if (type == SPATE_ISO_BATCH) {
		c->count = n;
		c->area = area;
		c->attempt = b->attempt;
		c->shard = b->shard;
		c->lane = b->lane;
		spate_sup_begin(in->sup, t->slot, gen, mono_ns() + in->timeout_ns);
	}
	uint64_t seq = ++t->seq;
	c->req_type = type;
	t->run_gen = gen;
	t->run_seq = seq;
	if (sock < 0)
		return exchange_failed(t, n, -EPIPE, res);
	/* Seq_cst (release at least): pairs with the child's acquire load of
	 * req_seq (isolate_host.c, spin_next): the descriptors and the head
	 * above are visible. With the seq_cst load of child_waiting, the
	 * Dekker pair of the child's seq_cst store of child_waiting and load
	 * of req_seq before it sleeps. */
	atomic_store_explicit(&c->req_seq, seq, memory_order_seq_cst);
	if (atomic_load_explicit(&c->child_waiting, memory_order_seq_cst))
		rc = send_msg(sock, type, seq, NULL, 0, -1);
	return rc < 0 ? exchange_failed(t, n, rc, res) : 0;
}

/* The step handed over did not come back (@p rc): the child is gone or
 * broke the protocol. The result is RETRY, saying how it ended; 1. */
static int exchange_failed(struct iso_task *t, uint32_t n, int rc, struct spate_batch_result *res)
{
	struct iso_inst *in = t->in;
	char r[200] = "";

	if (rc != -EPIPE)
		spate_sup_fail(in->sup, t->slot, t->run_gen, "protocol error");
	spate_sup_exit_reason(in->sup, t->slot, t->run_gen, 5 * SEC, r, sizeof(r));
	t->gen = 0;
	res->status = SPATE_BATCH_RETRY;
	snprintf(res->error, sizeof(res->error), "isolated plugin process %.170s",
		 r[0] ? r : strerror(-rc));
	spate_slog(SPATE_LOG_WARN, &t->logctx, "batch of %u record(s): %s", n, res->error);
	return 1;
}

/* The answer to the step exchange_start() rang: the plugin's result for a
 * batch (or RETRY), the step's rc otherwise. */
static int exchange_finish(struct iso_task *t, uint32_t type, uint32_t n,
			   struct spate_batch_result *res)
{
	struct iso_inst *in = t->in;
	int sock = spate_sup_socket(in->sup, t->slot, t->run_gen);
	int rc = sock < 0 ? -EPIPE
			  : wait_result(t, sock, t->run_seq,
					type == SPATE_ISO_BATCH ? 0 : mono_ns() + in->timeout_ns);

	if (rc < 0) {
		exchange_failed(t, n, rc, res);
		return 0;
	}
	struct spate_iso_ctl *c = t->ctl;
	int32_t step_rc = c->resp_rc;
	if (type != SPATE_ISO_BATCH)
		return step_rc;
	/* The child's result, as its plugin's process() gave it. */
	rc = c->rc;
	res->status = (enum spate_batch_status)c->status;
	res->failed_index = c->failed_index;
	memcpy(res->error, c->error, sizeof(res->error));
	res->error[sizeof(res->error) - 1] = '\0';
	if (step_rc < 0) { /* the host refused the batch (a protocol error) */
		res->status = SPATE_BATCH_RETRY;
		snprintf(res->error, sizeof(res->error), "isolated host refused the batch: %s",
			 strerror(-step_rc));
		rc = 0;
	}
	spate_sup_end(in->sup, t->slot, t->run_gen, rc == 0 && res->status == SPATE_BATCH_OK);
	return rc;
}

/* One exchange with the child: @p n descriptors of area @p area written. */
static int exchange(struct iso_task *t, uint32_t type, uint32_t n, uint32_t area,
		    const struct spate_batch *b, struct spate_batch_result *res)
{
	if (exchange_start(t, type, n, area, b, res))
		return 0;
	return exchange_finish(t, type, n, res);
}

/* Whether every record of @p r[0..n) is in the ring (no spill needed). */
static bool in_ring(const struct iso_inst *in, const struct spate_ring_rec *r, uint32_t n)
{
	uintptr_t lo = (uintptr_t)in->base, hi = lo + in->size;

	for (uint32_t i = 0; i < n; i++) {
		uintptr_t p = (uintptr_t)r[i].data;
		if (p < lo || p >= hi || r[i].len > hi - p)
			return false;
	}
	return true;
}

/* The descriptors of ring records @p r[0..n) into area @p d: the engine's
 * own views, as they are (a struct spate_ring_rec each). */
static void put_descs(struct spate_iso_rec *d, const struct spate_ring_rec *r, uint32_t n)
{
	memcpy(d, r, (size_t)n * sizeof(*d));
}

static int iso_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct iso_task *t = state;
	struct iso_inst *in = t->in;
	uint32_t done = 0;
	/* Not the area of a prepared batch (it stays for its turn). */
	uint32_t area = t->prepped ? 1 - t->prep_area : 0;
	struct spate_iso_rec *descs = t->descs[area];

	while (done < b->count) {
		uint32_t n = 0;
		uint64_t spilled = 0;
		for (; done + n < b->count && n < in->cap; n++) {
			const struct spate_ring_rec *r = &b->recs[done + n];
			struct spate_iso_rec *d = &descs[n];
			const uint8_t *p = r->data;
			const uint8_t *addr;
			if (p >= in->base && p < in->base + in->size && r->len <= in->base + in->size - p) {
				addr = p; /* zero-copy: in the ring */
			} else {
				if (r->len > in->spill_size - spilled) {
					if (n == 0) {
						res->status = SPATE_BATCH_FATAL;
						snprintf(res->error, sizeof(res->error),
							 "record of %u bytes larger than the isolated spill area",
							 r->len);
						return 0;
					}
					break; /* the rest in the next part */
				}
				memcpy(t->spill + spilled, p, r->len);
				addr = t->spill + spilled;
				spilled += (r->len + 7) & ~7u;
				if (spilled > in->spill_size)
					spilled = in->spill_size;
			}
			/* The engine's own view, as it is: a struct spate_ring_rec. */
			d->addr = (uint64_t)(uintptr_t)addr;
			d->seq = r->seq;
			d->ts = r->ts;
			d->len = r->len;
			d->key_hash = r->key_hash;
			d->type = r->type;
		}
		struct spate_batch part = *b;
		part.recs = b->recs + done;
		part.count = n;
		int rc = exchange(t, SPATE_ISO_BATCH, n, area, &part, res);
		if (rc < 0 || res->status != SPATE_BATCH_OK) {
			if (res->status == SPATE_BATCH_PARTIAL)
				res->failed_index += done;
			else if (done && rc == 0 && res->status == SPATE_BATCH_RETRY) {
				res->status = SPATE_BATCH_PARTIAL; /* the parts before are done */
				res->failed_index = done;
			}
			return rc;
		}
		done += n;
		if (done < b->count)
			memset(res, 0, offsetof(struct spate_batch_result, struct_size));
	}
	return 0;
}

/* Pipelined hand-over (spate/provider.h, struct spate_provided_pipe): a
 * batch of ring records within one area is handed over at once, from its
 * prepared area when it is the batch prepared (no descriptor written on
 * the worker's critical path), and complete() waits for it; anything else
 * (a spilled batch, one in parts) runs as process() in complete(). */
static int iso_submit(void *state, const struct spate_batch *b)
{
	struct iso_task *t = state;
	struct iso_inst *in = t->in;
	uint32_t area;

	t->sync = false;
	t->started = false;
	if (t->prepped && b->recs == t->prep_recs && b->count == t->prep_n &&
	    b->recs[0].seq == t->prep_first && b->recs[b->count - 1].seq == t->prep_last) {
		area = t->prep_area; /* written while the batch before ran */
	} else if (b->count <= in->cap && in_ring(in, b->recs, b->count)) {
		area = t->prepped ? 1 - t->prep_area : 0;
		put_descs(t->descs[area], b->recs, b->count);
	} else {
		t->sync = true;
		return 0;
	}
	/* From here the area is the running batch's: a prepared batch in it
	 * (this one) is handed over; the other area is free for the next. */
	if (t->prepped && t->prep_area == area)
		t->prepped = false;
	memset(&t->res_early, 0, sizeof(t->res_early));
	t->res_early.struct_size = sizeof(t->res_early);
	t->started = exchange_start(t, SPATE_ISO_BATCH, b->count, area, b, &t->res_early) == 0;
	t->prep_area = 1 - area; /* where prepare() writes meanwhile */
	return 0;
}

static int iso_prepare(void *state, const struct spate_batch *b)
{
	struct iso_task *t = state;
	struct iso_inst *in = t->in;

	/* Only while a batch is in the child, in the other area. */
	if (t->sync || !t->started || t->prepped || b->count > in->cap || !b->count ||
	    !in_ring(in, b->recs, b->count))
		return 0;
	put_descs(t->descs[t->prep_area], b->recs, b->count);
	t->prep_recs = b->recs;
	t->prep_n = b->count;
	t->prep_first = b->recs[0].seq;
	t->prep_last = b->recs[b->count - 1].seq;
	t->prepped = true;
	return 0;
}

static int iso_complete(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct iso_task *t = state;

	if (t->sync)
		return iso_process(state, b, res);
	if (!t->started) { /* answered at submit: no child, or it was gone */
		memcpy(res->error, t->res_early.error, sizeof(res->error));
		res->status = t->res_early.status;
		return 0;
	}
	t->started = false;
	return exchange_finish(t, SPATE_ISO_BATCH, b->count, res);
}

static const struct spate_provided_pipe iso_pipe = {
	.submit = iso_submit,
	.prepare = iso_prepare,
	.complete = iso_complete,
};

/* Whether the child that has @p t's plugin state still runs: a fresh child
 * has nothing to flush or fini (and starting one for that is waste). */
static bool child_alive(struct iso_task *t)
{
	return t->gen && spate_sup_gen(t->in->sup, t->slot, 0) == t->gen;
}

static int iso_flush(void *state, uint64_t now_ns)
{
	struct spate_batch_result res;
	(void)now_ns;
	if (!child_alive(state))
		return 0;
	memset(&res, 0, sizeof(res));
	return exchange(state, SPATE_ISO_FLUSH, 0, 0, NULL, &res);
}

static void iso_fini(void *state)
{
	struct iso_task *t = state;
	struct spate_batch_result res;

	if (!t)
		return;
	if (child_alive(t)) {
		memset(&res, 0, sizeof(res));
		exchange(t, SPATE_ISO_FINI, 0, 0, NULL, &res);
	}
	munmap(t->ctl, t->ctl_size);
	close(t->memfd);
	free(t->init_msg);
	free(t);
}

static const struct spate_plugin iso_plugin = {
	.abi_version = SPATE_PLUGIN_ABI_VERSION,
	.struct_size = sizeof(struct spate_plugin),
	.name = "isolated",
	.version = "1",
	.init = iso_init,
	.process = iso_process,
	.fini = iso_fini,
	.flush = iso_flush,
	.flush_interval_ns = 0, /* the child runs the plugin's timer */
};

/* ------------------------------------------------------------------------ */
/* The provider                                                             */
/* ------------------------------------------------------------------------ */

static bool iso_serves(const struct spate_config_consumer *k)
{
	return k->isolation == SPATE_CONFIG_ISOLATION_PROCESS && !k->function;
}

static int iso_open(void *arg, const struct spate_provider_ctx *ctx, struct spate_provided *out,
		    char *err, size_t errlen)
{
	const struct spate_config_consumer *k = ctx->k;
	(void)arg;
	struct iso_inst *in = calloc(1, sizeof(*in));
	char host[PATH_MAX];
	int rc;

	if (!in)
		return -ENOMEM;
	rc = spate_iso_host_path(host, sizeof(host));
	if (rc < 0) {
		snprintf(err, errlen, "isolation: process needs spate-isolate (not found beside the "
				      "program, in %s, or at $%s)", SPATE_LIBEXEC_DIR, SPATE_ISO_HOST_ENV);
		free(in);
		return rc;
	}
	in->k = k;
	snprintf(in->plugin, sizeof(in->plugin), "%s", ctx->spec ? ctx->spec : k->plugin);
	snprintf(in->bus, sizeof(in->bus), "%s", spate_stream_bus(ctx->stream));
	snprintf(in->stream, sizeof(in->stream), "%s", spate_stream_name(ctx->stream));
	snprintf(in->consumer, sizeof(in->consumer), "%s", k->name);
	struct spate_shm *shm = spate_stream_shm(ctx->stream);
	in->base = (const uint8_t *)spate_shm_header(shm);
	in->size = spate_shm_header(shm)->total_size;
	snprintf(in->region_file, sizeof(in->region_file), "%s", spate_shm_path(shm));
	in->lanes = k->parallelization ? k->parallelization : 1;
	in->cap = k->batch_size ? k->batch_size : 100;
	in->spill_size = k->batch_bytes < ISO_SPILL_MAX ? k->batch_bytes : ISO_SPILL_MAX;
	in->spill_size = (in->spill_size + 4095) & ~4095ull;
	in->timeout_ns = k->timeout_ns ? k->timeout_ns : 60 * SEC;
	in->logctx = (struct spate_slog_ctx){ in->consumer, in->stream, -1, -1 };
	const char *argv[] = { host, NULL };
	struct spate_sup_opts o = {
		.struct_size = sizeof(o),
		.consumer = k->name,
		.stream = in->stream,
		.argv = argv,
		.procs = ctx->tasks ? ctx->tasks : 1,
		.memory_limit = k->memory_limit,
		.init_timeout_ns = ISO_INIT_TIMEOUT,
		.socket = true,
		.lazy = true, /* each task's init starts its child */
	};
	rc = spate_sup_create(&o, &in->sup, err, errlen);
	if (rc < 0) {
		free(in);
		return rc;
	}
	out->plugin = &iso_plugin;
	out->flags = SPATE_PROVIDED_F_OWN_MEMORY;
	snprintf(out->path, sizeof(out->path), "%.255s", in->plugin);
	out->watchdog_ns = in->timeout_ns + 10 * SEC;
	/* An engine that knows the pipelined hand-over sized out for it. */
	if (out->struct_size >= offsetof(struct spate_provided, pipe) + sizeof(out->pipe))
		out->pipe = &iso_pipe;
	out->inst = in;
	return 0;
}

static void iso_close(void *arg, void *inst)
{
	struct iso_inst *in = inst;
	(void)arg;
	if (!in)
		return;
	spate_sup_destroy(in->sup, 2 * SEC);
	free(in);
}

int spate_iso_register(void)
{
	static const struct spate_plugin_provider p = {
		.struct_size = sizeof(struct spate_plugin_provider),
		.version = SPATE_PROVIDER_VERSION,
		.name = "isolation",
		.serves = iso_serves,
		.open = iso_open,
		.close = iso_close,
	};

	return spate_engine_register_provider(&p);
}
