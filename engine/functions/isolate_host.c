/* SPDX-License-Identifier: MIT */
/*
 * isolate_host.c - spate-isolate, the child process of a consumer whose
 * configuration says `isolation: process`: it runs the consumer's plugin
 * (.so) for one task, fed by the engine (isolate.c) over the control
 * socket (fd 3) and area (isolate_proto.h).
 *
 * Design. Started by the supervisor; waits for INIT (the control area's
 * memfd and the parameters), maps the stream's region file READ-ONLY and
 * the control area, loads the plugin (engine/plugin.c: the same checks as
 * in the engine), runs its init, and answers HELLO. Then, one message at a
 * time: BATCH builds the batch's record views over its read-only mapping
 * (no payload copied; spilled records point into the control area) and
 * calls process(); FLUSH and FINI call flush, fini and unload. Steps come
 * through the control area's doorbell (isolate_proto.h): after each one
 * the child spins on req_seq for SPATE_ISO_SPIN_NS (yielding now and then,
 * in case the engine's worker shares its CPU), then sleeps in poll() on
 * the socket until a wake-up message. Between
 * batches it runs the plugin's flush timer itself (poll() timeout), so
 * process and flush never overlap, as in the engine. A plugin that writes
 * into a record crashes here (SIGSEGV on the read-only mapping), never the
 * bus. The host's log service writes "level: message" lines to stderr, which
 * the supervisor copies into the engine's log with the consumer in context;
 * put appends through a producer of the bus opened on first use. A batch's
 * descriptors are in one of the area's two descriptor areas (ctl->area):
 * the engine prepares the next batch in the other while this one runs.
 *
 * Limits: one task per process; the plugin runs on the main thread; an
 * EOF on the socket (the engine is gone) ends the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/functions/isolate_proto.h"
#include "engine/plugin_host.h"
#include "spate/plugin.h"
#include "spate/stream.h"

struct host {
	int sock;
	struct spate_iso_ctl *ctl;
	size_t ctl_size;
	const struct spate_iso_rec *descs;
	const uint8_t *spill;
	const uint8_t *region;
	size_t region_size;
	struct spate_iso_init in;
	const char *path, *bus, *stream, *consumer, *region_file;
	struct spate_plugin_opt *opts;
	struct spate_plugin_lib *lib;
	const struct spate_plugin *pl;
	void *state;
	bool inited;
	struct spate_plugin_host host;
	struct spate_plugin_ctx ctx;
	struct spate_ring_rec *views;
	bool same_addr; /* both mappings at the engine's addresses */
	uint64_t next_flush;
	/* put: streams of the bus opened on first use */
	struct {
		char name[64];
		struct spate_stream *s;
		struct spate_producer *p;
	} out[8];
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *const lvl_name[] = { "error", "warn", "info", "debug" };

static void host_log(const struct spate_plugin_host *h, enum spate_log_level lvl, const char *fmt,
		     ...)
{
	char buf[2048];
	va_list ap;
	(void)h;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	dprintf(2, "%s: %.*s", (unsigned)lvl < 4 ? lvl_name[lvl] : "info", n, buf);
}

static int host_put(const struct spate_plugin_host *h, const char *stream, const void *key,
		    size_t key_len, const void *data, size_t len)
{
	struct host *x = h->host_private;
	unsigned i;

	for (i = 0; i < 8 && x->out[i].s; i++)
		if (strcmp(x->out[i].name, stream) == 0)
			break;
	if (i == 8)
		return -ENOSPC;
	if (!x->out[i].s) {
		int rc = spate_stream_attach(x->bus, stream, &x->out[i].s);
		if (rc < 0)
			return rc;
		rc = spate_producer_open(x->out[i].s, SPATE_RING_WAIT_BLOCK, 0, &x->out[i].p);
		if (rc < 0) {
			spate_stream_close(x->out[i].s);
			x->out[i].s = NULL;
			return rc;
		}
		snprintf(x->out[i].name, sizeof(x->out[i].name), "%s", stream);
	}
	return spate_put(x->out[i].p, key, key_len, data, len, NULL);
}

static int send_msg(struct host *x, uint32_t type, uint64_t seq, int32_t rc)
{
	struct spate_iso_msg m = { .magic = SPATE_ISO_MAGIC, .type = type, .seq = seq, .rc = rc };

	return send(x->sock, &m, sizeof(m), MSG_NOSIGNAL) == sizeof(m) ? 0 : -errno;
}

/* INIT: map, load, init. Returns 0 or -errno with ctl->error filled where
 * there is a ctl. */
static int do_init(struct host *x, const uint8_t *buf, size_t n, int memfd)
{
	if (n < sizeof(struct spate_iso_msg) + sizeof(struct spate_iso_init) || memfd < 0)
		return -EPROTO;
	memcpy(&x->in, buf + sizeof(struct spate_iso_msg), sizeof(x->in));
	if (x->in.version != SPATE_ISO_VERSION)
		return -EPROTO;
	x->ctl_size = x->in.ctl_size;
	/* Two descriptor areas, then the spill area, inside the area. */
	if (x->in.spill_off < SPATE_ISO_RECS_OFF + 2ull * x->in.cap * sizeof(struct spate_iso_rec) ||
	    x->in.spill_off > x->ctl_size || x->in.spill_size > x->ctl_size - x->in.spill_off) {
		close(memfd);
		return -EPROTO;
	}
	/* At the engine's address where it is free: then the descriptors
	 * point into this mapping as they are (isolate_proto.h). */
	void *c = mmap((void *)(uintptr_t)x->in.ctl_addr, x->ctl_size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED_NOREPLACE, memfd, 0);
	if (c != MAP_FAILED && c != (void *)(uintptr_t)x->in.ctl_addr) {
		munmap(c, x->ctl_size); /* a kernel without MAP_FIXED_NOREPLACE: a hint */
		c = MAP_FAILED;
	}
	if (c == MAP_FAILED)
		c = mmap(NULL, x->ctl_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	close(memfd);
	if (c == MAP_FAILED)
		return -errno;
	x->ctl = c;
	x->descs = (const void *)((const uint8_t *)c + SPATE_ISO_RECS_OFF);
	x->spill = (const uint8_t *)c + x->in.spill_off;
	/* Strings. */
	const char *s = (const char *)buf + sizeof(struct spate_iso_msg) + sizeof(x->in);
	const char *end = s + x->in.strings;
	if ((const uint8_t *)end > buf + n)
		return -EPROTO;
	const char **str[] = { &x->path, &x->bus, &x->stream, &x->consumer, &x->region_file };
	for (unsigned i = 0; i < 5; i++) {
		*str[i] = s;
		s = memchr(s, '\0', (size_t)(end - s));
		if (!s++)
			return -EPROTO;
	}
	x->opts = calloc(x->in.n_opts + 1, sizeof(*x->opts));
	x->views = calloc(x->in.cap ? x->in.cap : 1, sizeof(*x->views));
	if (!x->opts || !x->views)
		return -ENOMEM;
	for (uint32_t i = 0; i < x->in.n_opts; i++) {
		const char **kv[] = { &x->opts[i].key, &x->opts[i].value };
		for (unsigned j = 0; j < 2; j++) {
			*kv[j] = s;
			s = memchr(s, '\0', (size_t)(end - s));
			if (!s++)
				return -EPROTO;
		}
	}
	/* The stream's region, read-only: records are read in place. */
	int fd = open(x->region_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(x->ctl->error, sizeof(x->ctl->error), "open %s: %s", x->region_file,
			 strerror(errno));
		return -errno;
	}
	void *r = mmap((void *)(uintptr_t)x->in.region_addr, x->in.region_size, PROT_READ,
		       MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	if (r != MAP_FAILED && r != (void *)(uintptr_t)x->in.region_addr) {
		munmap(r, x->in.region_size);
		r = MAP_FAILED;
	}
	if (r == MAP_FAILED)
		r = mmap(NULL, x->in.region_size, PROT_READ, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd);
	if (r == MAP_FAILED) {
		snprintf(x->ctl->error, sizeof(x->ctl->error), "map %s read-only: %s",
			 x->region_file, strerror(e));
		return -e;
	}
	x->region = r;
	x->region_size = x->in.region_size;
	x->same_addr = (uintptr_t)r == x->in.region_addr && (uintptr_t)c == x->in.ctl_addr;
	int rc = spate_plugin_load(x->path, &x->lib, x->ctl->error, sizeof(x->ctl->error));
	if (rc < 0)
		return rc;
	x->pl = spate_plugin_lib_desc(x->lib);
	snprintf(x->ctl->plugin_name, sizeof(x->ctl->plugin_name), "%s", x->pl->name);
	snprintf(x->ctl->plugin_version, sizeof(x->ctl->plugin_version), "%s", x->pl->version ? x->pl->version : "");
	x->host = (struct spate_plugin_host){ .struct_size = sizeof(x->host), .log = host_log,
					      .put = host_put, .host_private = x };
	x->ctx = (struct spate_plugin_ctx){ .struct_size = sizeof(x->ctx), .consumer = x->consumer,
					    .stream = x->stream, .shard = x->in.shard,
					    .lane = x->in.lane, .opts = x->opts,
					    .n_opts = x->in.n_opts, .host = &x->host };
	rc = x->pl->init(&x->ctx, &x->state);
	if (rc < 0) {
		snprintf(x->ctl->error, sizeof(x->ctl->error), "plugin %s init: %s", x->pl->name,
			 strerror(-rc));
		return rc;
	}
	x->inited = true;
	x->next_flush = mono_ns() + x->pl->flush_interval_ns;
	return 0;
}

static int do_batch(struct host *x)
{
	struct spate_iso_ctl *c = x->ctl;
	uint32_t n = c->count;

	if (!x->inited || n == 0 || n > x->in.cap || c->area > 1)
		return -EPROTO;
	const struct spate_iso_rec *descs = x->descs + (size_t)c->area * x->in.cap;
	const struct spate_ring_rec *recs = (const struct spate_ring_rec *)descs;
	/* Mapped where the engine has them: the descriptors are the views.
	 * Elsewhere: each address translated, and checked. */
	for (uint32_t i = 0; !x->same_addr && i < n; i++) {
		const struct spate_iso_rec *d = &descs[i];
		uint64_t a = d->addr, sp = x->in.ctl_addr + x->in.spill_off;
		const uint8_t *p;
		if (a >= x->in.region_addr && a - x->in.region_addr <= x->region_size &&
		    d->len <= x->region_size - (a - x->in.region_addr)) {
			p = x->region + (a - x->in.region_addr);
		} else if (a >= sp && a - sp <= x->in.spill_size &&
			   d->len <= x->in.spill_size - (a - sp)) {
			p = x->spill + (a - sp);
		} else {
			return -EPROTO;
		}
		x->views[i] = (struct spate_ring_rec){ .data = p, .seq = d->seq, .ts = d->ts,
						       .len = d->len, .key_hash = d->key_hash,
						       .type = d->type };
		recs = x->views;
	}
	struct spate_batch b = { .recs = recs, .count = n, .shard = c->shard,
				 .attempt = c->attempt, .lane = c->lane, .consumer = x->consumer,
				 .stream = x->stream, .host = &x->host, .struct_size = sizeof(b) };
	struct spate_batch_result res;
	memset(&res, 0, sizeof(res));
	res.struct_size = sizeof(res);
	int rc = x->pl->process(x->state, &b, &res);
	c->rc = rc;
	c->status = (uint32_t)res.status;
	c->failed_index = res.failed_index;
	memcpy(c->error, res.error, sizeof(c->error));
	c->error[sizeof(c->error) - 1] = '\0';
	return 0;
}

/* Run the step the engine rang for (@p seq), answer it: the result, then
 * resp_seq, then a wake-up message if the engine sleeps. 1: FINI ran. */
static int run_step(struct host *x, uint64_t seq)
{
	struct spate_iso_ctl *c = x->ctl;
	uint32_t type = c->req_type;
	int rc = 0;

	switch (type) {
	case SPATE_ISO_BATCH:
		rc = do_batch(x);
		break;
	case SPATE_ISO_FLUSH:
		if (x->inited && x->pl->flush)
			x->pl->flush(x->state, real_ns());
		break;
	case SPATE_ISO_FINI:
		if (x->inited) {
			if (x->pl->fini)
				x->pl->fini(x->state);
			x->inited = false;
			spate_plugin_unload(x->lib);
			x->lib = NULL;
		}
		for (unsigned i = 0; i < 8 && x->out[i].s; i++) {
			spate_producer_close(x->out[i].p);
			spate_stream_close(x->out[i].s);
			x->out[i].s = NULL;
		}
		break;
	default:
		rc = -EPROTO;
		break;
	}
	c->resp_rc = rc;
	/* Seq_cst (release at least): pairs with the engine's load of
	 * resp_seq (isolate.c, wait_result): the result written above is
	 * visible to it. With the seq_cst load of engine_waiting, the Dekker
	 * pair of the engine's seq_cst store of engine_waiting and load of
	 * resp_seq: either it sees resp_seq before it sleeps or we see its
	 * flag. (Atomics, not fences: TSan does not model them.) */
	atomic_store_explicit(&c->resp_seq, seq, memory_order_seq_cst);
	if (atomic_load_explicit(&c->engine_waiting, memory_order_seq_cst) &&
	    send_msg(x, SPATE_ISO_RESULT, seq, rc) < 0)
		return -EPIPE;
	return type == SPATE_ISO_FINI;
}

/* The engine's next step: its req_seq once it differs from @p done, after
 * spinning at most SPATE_ISO_SPIN_NS (0: none yet, sleep on the socket). */
static uint64_t spin_next(struct spate_iso_ctl *c, uint64_t done)
{
	uint64_t t0 = mono_ns();

	for (unsigned i = 1;; i++) {
		/* Pairs with the engine's release store of req_seq (isolate.c,
		 * exchange): the step's descriptors and head are visible. */
		uint64_t seq = atomic_load_explicit(&c->req_seq, memory_order_acquire);
		if (seq != done)
			return seq;
		spate_iso_relax();
		if ((i & 63) == 0) {
			if (mono_ns() - t0 >= SPATE_ISO_SPIN_NS)
				return 0;
			/* The engine's worker may share this CPU: let it run. */
			sched_yield();
		}
	}
}

int main(int argc, char **argv)
{
	struct host x;
	static uint8_t buf[65536];
	const char *fdenv = getenv("SPATE_SUP_FD");
	uint64_t done = 0; /* the last step run */

	(void)argc;
	(void)argv;
	memset(&x, 0, sizeof(x));
	x.sock = fdenv ? atoi(fdenv) : 3;
	for (;;) {
		int timeout = -1;
		if (x.inited && x.pl->flush && x.pl->flush_interval_ns) {
			uint64_t now = mono_ns();
			if (now >= x.next_flush) {
				x.pl->flush(x.state, real_ns());
				x.next_flush = now + x.pl->flush_interval_ns;
			}
			timeout = (int)((x.next_flush - now) / 1000000 + 1);
		}
		if (x.ctl) {
			uint64_t seq = spin_next(x.ctl, done);
			if (seq) {
				done = seq;
				int r = run_step(&x, seq);
				if (r < 0)
					return 2;
				continue;
			}
			/* Going to sleep: the flag, a last look. Seq_cst store and
			 * load: the Dekker pair of the engine's seq_cst store of
			 * req_seq and load of child_waiting (isolate.c). */
			atomic_store_explicit(&x.ctl->child_waiting, 1, memory_order_seq_cst);
			if (atomic_load_explicit(&x.ctl->req_seq, memory_order_seq_cst) != done) {
				atomic_store_explicit(&x.ctl->child_waiting, 0, memory_order_relaxed);
				continue;
			}
		}
		struct pollfd pf = { .fd = x.sock, .events = POLLIN };
		int pr = poll(&pf, 1, timeout);
		if (x.ctl) /* relaxed: a hint; a late clear costs one spare wake-up */
			atomic_store_explicit(&x.ctl->child_waiting, 0, memory_order_relaxed);
		if (pr < 0 && errno != EINTR)
			return 2;
		if (pr <= 0)
			continue;
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(x.sock, &mh, MSG_CMSG_CLOEXEC);
		if (n == 0)
			return 0; /* the engine closed: nothing more to do */
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return 2;
		}
		struct spate_iso_msg m;
		if ((size_t)n < sizeof(m))
			return 3;
		memcpy(&m, buf, sizeof(m));
		if (m.magic != SPATE_ISO_MAGIC)
			return 3;
		switch (m.type) {
		case SPATE_ISO_INIT: {
			int memfd = -1, rc;
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
				memcpy(&memfd, CMSG_DATA(cm), sizeof(int));
			if (x.ctl) {
				rc = -EALREADY;
			} else {
				rc = do_init(&x, buf, (size_t)n, memfd);
			}
			/* The steps rung for a child before this one are not
			 * ours: start after them. Acquire: pairs with the
			 * engine's release stores (nothing is rung until HELLO). */
			if (x.ctl)
				done = atomic_load_explicit(&x.ctl->req_seq, memory_order_acquire);
			send_msg(&x, SPATE_ISO_HELLO, m.seq, rc);
			if (rc < 0)
				return 4; /* the engine restarts a fresh one */
			break;
		}
		case SPATE_ISO_BATCH:
		case SPATE_ISO_FLUSH:
		case SPATE_ISO_FINI:
			break; /* a wake-up: the step is read from req_seq */
		default:
			return 3;
		}
	}
}
