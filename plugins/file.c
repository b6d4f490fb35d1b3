/* SPDX-License-Identifier: MIT */
/*
 * file.c - the `file` plugin: appends records to a file, one file per state.
 *
 * Design. Records are copied into a per-state buffer and written with one
 * write() per buffer, never one per record. When the buffer is written is the
 * durability choice:
 *   flush: batch     (default) at the end of every process() call, so a
 *                    record the engine checkpoints is in the kernel: it
 *                    survives a crash of the host (not of the machine);
 *   flush: interval  when the buffer fills, on the flush hook (every 100 ms)
 *                    and at fini: fewest system calls, but a host crash loses
 *                    up to ~100 ms of records already checkpointed.
 * `sync: true` adds an fdatasync() after each of those writes (per batch, or
 * per tick), so a checkpointed record survives power loss with flush: batch.
 *
 * Options:
 *   path: PATH        required; "%s" is the shard number, else ".shard<N>" is
 *                     appended; lanes > 0 append ".lane<L>"
 *   format: lines|raw lines (default): payload then '\n'; raw: a 4-byte
 *                     little-endian length then the payload
 *   prefix: none|seq  seq: lines start "<seq> "; raw records start with the
 *                     8-byte little-endian sequence number
 *   flush: batch|interval   see above (default batch)
 *   sync: true|false  fdatasync after writing (default false)
 *   append: true|false  keep what the file holds (default true) or truncate
 *                     it at init
 *   buffer: BYTES     buffer size (default 262144, at least 4096)
 *
 * Errors. A failed write() or fdatasync() in process() returns
 * SPATE_BATCH_RETRY with "write PATH: reason"; the unwritten part of the
 * batch is dropped from the buffer (the retry brings it again) while data of
 * earlier, completed batches stays buffered until written. Records of the
 * failed batch that did reach the file are written again by the retry, and a
 * torn last record is possible: at-least-once, as everywhere in spate. In
 * interval mode a failed flush hook is logged and returns -errno; the data
 * stays buffered.
 *
 * Limits. Payloads are written as they are: a payload holding '\n' breaks the
 * line format (use raw). One file descriptor and one buffer per state.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "spate/plugin.h"
#include "plugins/plugin_util.h"

enum file_format { FMT_LINES = 0, FMT_RAW = 1 };
enum file_flush { FLUSH_BATCH = 0, FLUSH_INTERVAL = 1 };

struct file_state {
	int fd;
	enum file_format format;
	int prefix_seq;
	enum file_flush flush;
	int sync;
	size_t cap;     /* buffer size */
	size_t pending; /* bytes in buf not yet written */
	size_t pre;     /* of pending, bytes of completed batches */
	const struct spate_plugin_host *host;
	char *buf;
	char path[];
};

/* Write pending bytes; on error keep the unwritten rest at the front. */
static int file_write_pending(struct file_state *s)
{
	size_t off = 0;
	int rc = 0;

	while (off < s->pending) {
		ssize_t w = write(s->fd, s->buf + off, s->pending - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		off += (size_t)w;
	}
	if (off) {
		memmove(s->buf, s->buf + off, s->pending - off);
		s->pending -= off;
		s->pre = s->pre > off ? s->pre - off : 0;
	}
	return rc;
}

/* Write iov entirely, bypassing the buffer (records larger than it). */
static int file_write_direct(struct file_state *s, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(s->fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static size_t u64_dec(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

static void put_le(char *out, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		out[i] = (char)(v >> (8 * i));
}

/* Frame and buffer one record. 0 or -errno of a write. */
static int file_add(struct file_state *s, const struct spate_ring_rec *r)
{
	char head[32], tail = '\n';
	size_t hn = 0, tn = 0, need;

	if (s->format == FMT_LINES) {
		if (s->prefix_seq) {
			hn = u64_dec(head, r->seq);
			head[hn++] = ' ';
		}
		tn = 1;
	} else {
		if (s->prefix_seq) {
			put_le(head, r->seq, 8);
			hn = 8;
		}
		put_le(head + hn, r->len, 4);
		hn += 4;
	}
	need = hn + r->len + tn;
	if (s->pending + need > s->cap) {
		int rc = file_write_pending(s);
		if (rc < 0)
			return rc;
	}
	if (need > s->cap) {
		struct iovec iov[3] = { { head, hn }, { (void *)(uintptr_t)r->data, r->len },
					{ &tail, tn } };
		return file_write_direct(s, iov, tn ? 3 : 2);
	}
	memcpy(s->buf + s->pending, head, hn);
	memcpy(s->buf + s->pending + hn, r->data, r->len);
	if (tn)
		s->buf[s->pending + hn + r->len] = tail;
	s->pending += need;
	return 0;
}

static int file_sync(struct file_state *s)
{
	if (s->sync && fdatasync(s->fd) < 0)
		return -errno;
	return 0;
}

static int file_init(const struct spate_plugin_ctx *ctx, void **state)
{
	static const char *const formats[] = { "lines", "raw", NULL };
	static const char *const prefixes[] = { "none", "seq", NULL };
	static const char *const flushes[] = { "batch", "interval", NULL };
	const char *tmpl = spate_plugin_opt(ctx, "path", NULL);
	int format, prefix, flush, sync, append, rc;
	char path[PATH_MAX];
	struct file_state *s;
	uint64_t cap;

	if (!tmpl || !tmpl[0]) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "file: option path is required");
		return -EINVAL;
	}
	if ((rc = pu_opt_enum(ctx, "file", "format", formats, FMT_LINES, &format)) < 0 ||
	    (rc = pu_opt_enum(ctx, "file", "prefix", prefixes, 0, &prefix)) < 0 ||
	    (rc = pu_opt_enum(ctx, "file", "flush", flushes, FLUSH_BATCH, &flush)) < 0 ||
	    (rc = pu_opt_bool(ctx, "file", "sync", 0, &sync)) < 0 ||
	    (rc = pu_opt_bool(ctx, "file", "append", 1, &append)) < 0 ||
	    (rc = pu_opt_u64(ctx, "file", "buffer", 262144, &cap)) < 0)
		return rc;
	if (cap < 4096 || cap > (1ull << 30)) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "file: buffer must be 4096..1073741824 bytes");
		return -EINVAL;
	}
	if (pu_state_path(tmpl, ctx->shard, ctx->lane, path, sizeof(path)) < 0) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "file: path too long");
		return -ENAMETOOLONG;
	}
	s = calloc(1, sizeof(*s) + strlen(path) + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s->path, path, strlen(path) + 1);
	s->format = (enum file_format)format;
	s->prefix_seq = prefix == 1;
	s->flush = (enum file_flush)flush;
	s->sync = sync;
	s->cap = cap;
	s->host = ctx->host;
	s->buf = malloc(cap);
	if (!s->buf) {
		rc = -ENOMEM;
		goto err_free;
	}
	s->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
	if (s->fd < 0) {
		rc = -errno;
		pu_log(ctx->host, SPATE_LOG_ERROR, "file: open %s: %s", path, strerror(-rc));
		goto err_buf;
	}
	*state = s;
	return 0;

err_buf:
	free(s->buf);
err_free:
	free(s);
	return rc;
}

static int file_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct file_state *s = state;
	int rc = 0;

	s->pre = s->pending;
	for (uint32_t i = 0; i < b->count && rc == 0; i++)
		rc = file_add(s, &b->recs[i]);
	if (rc == 0 && s->flush == FLUSH_BATCH) {
		rc = file_write_pending(s);
		if (rc == 0)
			rc = file_sync(s);
	}
	if (rc < 0) {
		s->pending = s->pre; /* drop this batch's unwritten bytes */
		res->status = SPATE_BATCH_RETRY;
		snprintf(res->error, sizeof(res->error), "write %s: %s", s->path, strerror(-rc));
		return 0;
	}
	s->pre = s->pending;
	res->status = SPATE_BATCH_OK;
	return 0;
}

static int file_flush(void *state, uint64_t now_ns)
{
	struct file_state *s = state;
	int rc;

	if (!s->pending)
		return 0;
	rc = file_write_pending(s);
	if (rc == 0)
		rc = file_sync(s);
	if (rc < 0)
		pu_log(s->host, SPATE_LOG_ERROR, "file: write %s: %s", s->path, strerror(-rc));
	return rc;
}

static void file_fini(void *state)
{
	struct file_state *s = state;

	if (file_flush(s, 0) < 0)
		pu_log(s->host, SPATE_LOG_ERROR, "file: %zu bytes not written to %s", s->pending,
		       s->path);
	if (close(s->fd) < 0)
		pu_log(s->host, SPATE_LOG_ERROR, "file: close %s: %s", s->path, strerror(errno));
	free(s->buf);
	free(s);
}

SPATE_PLUGIN_DEFINE(.name = "file", .version = "1.0", .init = file_init,
		    .process = file_process, .fini = file_fini, .flush = file_flush,
		    .flush_interval_ns = 100000000u);
