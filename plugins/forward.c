/* SPDX-License-Identifier: MIT */
/*
 * forward.c - the `forward` plugin: appends (selected) records to another
 * stream through the host's put(), for pipelines of streams.
 *
 * Design. process() walks the batch in order; each record that passes the
 * filters is put() to the stream `to` with the same payload. Records that do
 * not pass are done (skipped). A
 * full destination (-EAGAIN) ends the call with SPATE_BATCH_PARTIAL at the
 * first record not forwarded, so the engine checkpoints what went through
 * and retries the rest after back-off: nothing forwarded twice by this call,
 * nothing lost. A record the destination refuses (-EMSGSIZE, or any other
 * error) also ends the call with PARTIAL at that record, so retries, bisection
 * and the on-failure destination deal with it; a missing stream (-ENOENT) is
 * a configuration error: SPATE_BATCH_FATAL.
 *
 * Filters. A record carries its payload, type byte and partition-key *hash*,
 * not the key itself, so the filters look at those. All filters given must
 * match (AND); `invert: true` forwards exactly the records that do not.
 *   prefix: STR      the payload starts with STR
 *   contains: STR    the payload contains STR
 *   type: N          the record's type byte is N (0..255)
 *   hash_mod: M      with hash_eq: R (default 0): key_hash % M == R; splits a
 *                    stream by key, e.g. M=2 R=0 and M=2 R=1 into two streams
 *   invert: true|false
 *
 * Key of the forwarded record:
 *   key: hash             (default) the original key hash as 4 little-endian
 *                         bytes: records of one original key land on one
 *                         destination shard, in order
 *   key: payload_prefix:N the first N payload bytes (fewer if shorter)
 *
 * Limits. The type byte and the timestamp are not carried over (put() takes
 * neither). Ordering across destination shards is not defined.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "spate/plugin.h"
#include "plugins/plugin_util.h"

struct fwd_state {
	const struct spate_plugin_host *host;
	char *prefix, *contains; /* copies; NULL: no such filter */
	size_t prefix_len, contains_len;
	int type;              /* -1: no type filter */
	uint64_t hash_mod;     /* 0: no hash filter */
	uint64_t hash_eq;
	int invert;
	uint32_t key_prefix;   /* 0: key is the hash */
	uint64_t forwarded, skipped;
	char to[];
};

static int fwd_init(const struct spate_plugin_ctx *ctx, void **state)
{
	static const char *const plugin = "forward";
	const char *to = spate_plugin_opt(ctx, "to", NULL);
	const char *key = spate_plugin_opt(ctx, "key", "hash");
	uint64_t type, n;
	struct fwd_state *s;
	int rc;

	if (!to || !to[0]) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "forward: option to (the stream) is required");
		return -EINVAL;
	}
	if (!SPATE_PLUGIN_HAS(ctx->host, put) || !ctx->host->put) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "forward: the host offers no put()");
		return -ENOTSUP;
	}
	s = calloc(1, sizeof(*s) + strlen(to) + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s->to, to, strlen(to) + 1);
	s->host = ctx->host;
	/* The ctx's strings are only promised for the duration of init. */
	if (spate_plugin_opt(ctx, "prefix", NULL)) {
		s->prefix = strdup(spate_plugin_opt(ctx, "prefix", NULL));
		if (!s->prefix)
			goto err_nomem;
		s->prefix_len = strlen(s->prefix);
	}
	if (spate_plugin_opt(ctx, "contains", NULL)) {
		s->contains = strdup(spate_plugin_opt(ctx, "contains", NULL));
		if (!s->contains)
			goto err_nomem;
		s->contains_len = strlen(s->contains);
	}
	s->type = -1;
	rc = pu_opt_u64(ctx, plugin, "type", 0, &type);
	if (rc < 0)
		goto err_free;
	if (spate_plugin_opt(ctx, "type", NULL)) {
		if (type > 255) {
			pu_log(ctx->host, SPATE_LOG_ERROR, "forward: type must be 0..255");
			rc = -EINVAL;
			goto err_free;
		}
		s->type = (int)type;
	}
	if ((rc = pu_opt_u64(ctx, plugin, "hash_mod", 0, &s->hash_mod)) < 0 ||
	    (rc = pu_opt_u64(ctx, plugin, "hash_eq", 0, &s->hash_eq)) < 0 ||
	    (rc = pu_opt_bool(ctx, plugin, "invert", 0, &s->invert)) < 0)
		goto err_free;
	if (s->hash_mod && s->hash_eq >= s->hash_mod) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "forward: hash_eq must be below hash_mod");
		rc = -EINVAL;
		goto err_free;
	}
	if (spate_plugin_opt(ctx, "hash_eq", NULL) && !s->hash_mod) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "forward: hash_eq needs hash_mod");
		rc = -EINVAL;
		goto err_free;
	}
	if (!strncmp(key, "payload_prefix:", 15)) {
		char *end;
		errno = 0;
		n = strtoull(key + 15, &end, 10);
		if (errno || end == key + 15 || *end || n == 0 || n > 65536) {
			pu_log(ctx->host, SPATE_LOG_ERROR,
			       "forward: key payload_prefix:N needs N in 1..65536");
			rc = -EINVAL;
			goto err_free;
		}
		s->key_prefix = (uint32_t)n;
	} else if (strcmp(key, "hash") != 0) {
		pu_log(ctx->host, SPATE_LOG_ERROR,
		       "forward: key must be hash or payload_prefix:N, not '%s'", key);
		rc = -EINVAL;
		goto err_free;
	}
	*state = s;
	return 0;

err_nomem:
	rc = -ENOMEM;
err_free:
	free(s->contains);
	free(s->prefix);
	free(s);
	return rc;
}

static int fwd_match(const struct fwd_state *s, const struct spate_ring_rec *r)
{
	int m = 1;

	if (s->type >= 0 && r->type != s->type)
		m = 0;
	else if (s->hash_mod && r->key_hash % s->hash_mod != s->hash_eq)
		m = 0;
	else if (s->prefix && (r->len < s->prefix_len || memcmp(r->data, s->prefix, s->prefix_len)))
		m = 0;
	else if (s->contains && s->contains_len &&
		 !memmem(r->data, r->len, s->contains, s->contains_len))
		m = 0;
	return m != s->invert;
}

static int fwd_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct fwd_state *s = state;
	const struct spate_plugin_host *h = b->host ? b->host : s->host;

	for (uint32_t i = 0; i < b->count; i++) {
		const struct spate_ring_rec *r = &b->recs[i];
		unsigned char hk[4];
		const void *key = hk;
		size_t klen = sizeof(hk);
		int rc;

		if (!fwd_match(s, r)) {
			s->skipped++;
			continue;
		}
		if (s->key_prefix) {
			key = r->data;
			klen = r->len < s->key_prefix ? r->len : s->key_prefix;
		} else {
			for (int k = 0; k < 4; k++)
				hk[k] = (unsigned char)(r->key_hash >> (8 * k));
		}
		rc = h->put(h, s->to, key, klen, r->data, r->len);
		if (rc == 0) {
			s->forwarded++;
			continue;
		}
		res->failed_index = i;
		if (rc == -ENOENT) {
			res->status = SPATE_BATCH_FATAL;
			snprintf(res->error, sizeof(res->error), "forward: no stream '%s'", s->to);
		} else {
			res->status = SPATE_BATCH_PARTIAL;
			snprintf(res->error, sizeof(res->error), "forward to '%s': seq %llu: %s",
				 s->to, (unsigned long long)r->seq,
				 rc == -EAGAIN ? "stream full" : strerror(-rc));
		}
		return 0;
	}
	res->status = SPATE_BATCH_OK;
	return 0;
}

static void fwd_fini(void *state)
{
	struct fwd_state *s = state;

	pu_log(s->host, SPATE_LOG_DEBUG, "forward: %llu records forwarded to '%s', %llu skipped",
	       (unsigned long long)s->forwarded, s->to, (unsigned long long)s->skipped);
	free(s->contains);
	free(s->prefix);
	free(s);
}

SPATE_PLUGIN_DEFINE(.name = "forward", .version = "1.0", .init = fwd_init,
		    .process = fwd_process, .fini = fwd_fini);
