/* SPDX-License-Identifier: MIT */
/*
 * plugin_util.h - helpers shared by the bundled plugins (count, file,
 * forward, fail): logging through the host, option parsing, per-state file
 * names, sequence continuity, the payload checksum and the JSON summary.
 * Internal: static inline, compiled into each plugin; never installed. Uses
 * only include/spate/plugin.h, like any out-of-tree plugin.
 */
#ifndef SPATE_PLUGINS_PLUGIN_UTIL_H
#define SPATE_PLUGINS_PLUGIN_UTIL_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spate/plugin.h"

/* ---- logging ----------------------------------------------------------- */

/* Log through the host when it offers a logger, else to stderr. */
__attribute__((format(printf, 3, 4))) static inline void pu_log(const struct spate_plugin_host *h,
								 enum spate_log_level lvl,
								 const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (SPATE_PLUGIN_HAS(h, log) && h->log)
		h->log(h, lvl, "%s", msg);
	else
		fprintf(stderr, "spate plugin: %s\n", msg);
}

/* ---- options ----------------------------------------------------------- */

/* Option @p key as an unsigned integer (decimal, 0x hex, 0 octal); @p dflt
 * when absent. 0, or -EINVAL (logged) when malformed. */
static inline int pu_opt_u64(const struct spate_plugin_ctx *ctx, const char *plugin,
			     const char *key, uint64_t dflt, uint64_t *out)
{
	const char *v = spate_plugin_opt(ctx, key, NULL);
	char *end;

	*out = dflt;
	if (!v)
		return 0;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 0);
	if (errno || end == v || *end || v[0] == '-') {
		pu_log(ctx->host, SPATE_LOG_ERROR, "%s: option %s: '%s' is not a number", plugin,
		       key, v);
		return -EINVAL;
	}
	*out = x;
	return 0;
}

/* Option @p key as a boolean (true/false, yes/no, on/off, 1/0). */
static inline int pu_opt_bool(const struct spate_plugin_ctx *ctx, const char *plugin,
			      const char *key, int dflt, int *out)
{
	const char *v = spate_plugin_opt(ctx, key, NULL);

	*out = dflt;
	if (!v)
		return 0;
	if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
		*out = 1;
	else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
		*out = 0;
	else {
		pu_log(ctx->host, SPATE_LOG_ERROR, "%s: option %s: '%s' is not true or false",
		       plugin, key, v);
		return -EINVAL;
	}
	return 0;
}

/* Option @p key as one of @p names (NULL-terminated); its index in @p out. */
static inline int pu_opt_enum(const struct spate_plugin_ctx *ctx, const char *plugin,
			      const char *key, const char *const *names, int dflt, int *out)
{
	const char *v = spate_plugin_opt(ctx, key, NULL);

	*out = dflt;
	if (!v)
		return 0;
	for (int i = 0; names[i]; i++) {
		if (!strcmp(v, names[i])) {
			*out = i;
			return 0;
		}
	}
	pu_log(ctx->host, SPATE_LOG_ERROR, "%s: option %s: '%s' is not one of the choices", plugin,
	       key, v);
	return -EINVAL;
}

/* ---- per-state file names ---------------------------------------------- */

/*
 * The file of one state from a template: the first "%s" becomes the shard
 * number; without "%s", ".shard<N>" is appended. Lane L > 0 (parallelization)
 * appends ".lane<L>". 0 or -ENAMETOOLONG.
 */
static inline int pu_state_path(const char *tmpl, uint32_t shard, uint32_t lane, char *out,
				size_t outlen)
{
	const char *pc = strstr(tmpl, "%s");
	int n;

	if (pc)
		n = snprintf(out, outlen, "%.*s%" PRIu32 "%s", (int)(pc - tmpl), tmpl, shard, pc + 2);
	else
		n = snprintf(out, outlen, "%s.shard%" PRIu32, tmpl, shard);
	if (n < 0 || (size_t)n >= outlen)
		return -ENAMETOOLONG;
	if (lane) {
		int m = snprintf(out + n, outlen - (size_t)n, ".lane%" PRIu32, lane);
		if (m < 0 || (size_t)m >= outlen - (size_t)n)
			return -ENAMETOOLONG;
	}
	return 0;
}

/* ---- sequence continuity ----------------------------------------------- */

/*
 * Per-state sequence tracker. Records arrive in sequence order per shard; a
 * sequence below the next expected one is a duplicate (a redelivery after a
 * retry or restart), one above it leaves a gap of the numbers in between.
 * With parallelization > 1 a lane sees a subset of the shard, so its gaps
 * are expected.
 */
struct pu_seq {
	uint64_t first;    /* first sequence seen */
	uint64_t last;     /* highest sequence seen */
	uint64_t next;     /* expected next */
	uint64_t gaps;     /* sequence numbers skipped */
	uint64_t dups;     /* records seen again */
	uint64_t distinct; /* records seen for the first time */
	int seen;
};

/* 1 if @p seq is new, 0 if a duplicate. */
static inline int pu_seq_see(struct pu_seq *t, uint64_t seq)
{
	if (__builtin_expect(t->seen && seq == t->next, 1)) {
		t->next = seq + 1;
		t->last = seq;
		t->distinct++;
		return 1;
	}
	if (!t->seen) {
		t->seen = 1;
		t->first = seq;
	} else if (seq < t->next) {
		t->dups++;
		return 0;
	} else {
		t->gaps += seq - t->next;
	}
	t->next = seq + 1;
	t->last = seq;
	t->distinct++;
	return 1;
}

/* ---- payload checksum -------------------------------------------------- */

static inline uint64_t pu_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* How much of a payload the checksum reads. */
enum pu_touch { PU_TOUCH_ALL = 0, PU_TOUCH_FIRST = 1, PU_TOUCH_NONE = 2 };

/*
 * Checksum of one payload: a Fletcher-style pair of 64-bit sums over its
 * native-endian 8-byte words (the last one zero-padded), finished with the
 * murmur3 mixer. TOUCH_FIRST reads only the first word, TOUCH_NONE only the
 * length. A data set's checksum is the wrapping sum over its records, so it
 * does not depend on order, batching or the split into shards.
 */
__attribute__((always_inline)) static inline uint64_t pu_payload_sum(const void *data,
								      uint32_t len,
								      enum pu_touch touch)
{
	const unsigned char *p = data;
	uint64_t a = len, s = 0, w;
	uint32_t n = touch == PU_TOUCH_ALL ? len : touch == PU_TOUCH_FIRST ? (len < 8 ? len : 8) : 0;
	uint32_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		a += w;
		s += a;
	}
	if (i < n) {
		w = 0;
		memcpy(&w, p + i, n - i);
		a += w;
		s += a;
	}
	return pu_mix64(a ^ (s << 29 | s >> 35));
}

/* ---- JSON summary ------------------------------------------------------ */

/* Counters of a state, written at fini as one JSON object. */
struct pu_summary {
	struct pu_seq seq;
	uint64_t bytes;    /* payload bytes of the distinct records */
	uint64_t checksum; /* sum of pu_payload_sum() of the distinct records */
	uint64_t batches;  /* process() calls */
	uint64_t failed_batches;
	uint64_t failed_records;
	uint32_t shard, lane;
	const char *plugin; /* a constant name: written unescaped */
};

/* Write @p s to @p path (via a temporary file and rename, so a reader sees
 * the whole object or nothing). 0 or -errno. */
static inline int pu_summary_write(const struct pu_summary *s, const char *path)
{
	char tmp[4096];
	FILE *f;
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());

	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f,
		"{\"plugin\":\"%s\",\"shard\":%" PRIu32 ",\"lane\":%" PRIu32
		",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"checksum\":\"%016" PRIx64
		"\",\"gaps\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"delivered\":%" PRIu64
		",\"batches\":%" PRIu64 ",\"failed_batches\":%" PRIu64
		",\"failed_records\":%" PRIu64,
		s->plugin, s->shard, s->lane, s->seq.distinct, s->bytes, s->checksum, s->seq.gaps,
		s->seq.dups, s->seq.distinct + s->seq.dups, s->batches, s->failed_batches,
		s->failed_records);
	if (s->seq.seen)
		fprintf(f, ",\"first_seq\":%" PRIu64 ",\"last_seq\":%" PRIu64 "}\n", s->seq.first,
			s->seq.last);
	else
		fprintf(f, ",\"first_seq\":null,\"last_seq\":null}\n");
	if (ferror(f) | fflush(f)) {
		int e = errno ? errno : EIO;
		fclose(f);
		unlink(tmp);
		return -e;
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		return -e;
	}
	return 0;
}

#endif
