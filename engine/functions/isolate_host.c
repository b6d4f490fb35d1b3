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
 * calls process(); FLUSH and FINI call flush, fini and unload. Between
 * batches it runs the plugin's flush timer itself (poll() timeout), so
 * process and flush never overlap, as in the engine. A plugin that writes
 * into a record crashes here (SIGSEGV on the read-only mapping), never the
 * bus. The host's log service writes "level: message" lines to stderr, which
 * the supervisor copies into the engine's log with the consumer in context;
 * put appends through a producer of the bus opened on first use.
 *
 * Limits: one task per process; the plugin runs on the main thread; an
 * EOF on the socket (the engine is gone) ends the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
	void *c = mmap(NULL, x->ctl_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
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
	void *r = mmap(NULL, x->in.region_size, PROT_READ, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd);
	if (r == MAP_FAILED) {
		snprintf(x->ctl->error, sizeof(x->ctl->error), "map %s read-only: %s",
			 x->region_file, strerror(e));
		return -e;
	}
	x->region = r;
	x->region_size = x->in.region_size;
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

	if (!x->inited || n == 0 || n > x->in.cap)
		return -EPROTO;
	for (uint32_t i = 0; i < n; i++) {
		const struct spate_iso_rec *d = &x->descs[i];
		const uint8_t *p;
		if (d->off & SPATE_ISO_SPILL) {
			uint64_t o = d->off & ~SPATE_ISO_SPILL;
			if (o > x->in.spill_size || d->len > x->in.spill_size - o)
				return -EPROTO;
			p = x->spill + o;
		} else {
			if (d->off > x->region_size || d->len > x->region_size - d->off)
				return -EPROTO;
			p = x->region + d->off;
		}
		x->views[i] = (struct spate_ring_rec){ .data = p, .seq = d->seq, .ts = d->ts,
						       .len = d->len, .key_hash = d->key_hash,
						       .type = d->type };
	}
	struct spate_batch b = { .recs = x->views, .count = n, .shard = c->shard,
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

int main(int argc, char **argv)
{
	struct host x;
	static uint8_t buf[65536];
	const char *fdenv = getenv("SPATE_SUP_FD");

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
		struct pollfd pf = { .fd = x.sock, .events = POLLIN };
		int pr = poll(&pf, 1, timeout);
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
		int rc;
		switch (m.type) {
		case SPATE_ISO_INIT: {
			int memfd = -1;
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
				memcpy(&memfd, CMSG_DATA(cm), sizeof(int));
			if (x.ctl) {
				rc = -EALREADY;
			} else {
				rc = do_init(&x, buf, (size_t)n, memfd);
			}
			send_msg(&x, SPATE_ISO_HELLO, m.seq, rc);
			if (rc < 0)
				return 4; /* the engine restarts a fresh one */
			break;
		}
		case SPATE_ISO_BATCH:
			rc = do_batch(&x);
			if (send_msg(&x, SPATE_ISO_RESULT, m.seq, rc) < 0)
				return 2;
			break;
		case SPATE_ISO_FLUSH:
			if (x.inited && x.pl->flush)
				x.pl->flush(x.state, real_ns());
			send_msg(&x, SPATE_ISO_RESULT, m.seq, 0);
			break;
		case SPATE_ISO_FINI:
			if (x.inited) {
				if (x.pl->fini)
					x.pl->fini(x.state);
				x.inited = false;
				spate_plugin_unload(x.lib);
				x.lib = NULL;
			}
			for (unsigned i = 0; i < 8 && x.out[i].s; i++) {
				spate_producer_close(x.out[i].p);
				spate_stream_close(x.out[i].s);
				x.out[i].s = NULL;
			}
			send_msg(&x, SPATE_ISO_RESULT, m.seq, 0);
			break;
		default:
			return 3;
		}
	}
}
