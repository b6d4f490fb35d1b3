/* SPDX-License-Identifier: MIT */
/*
 * sum.c - a minimal spate consumer plugin: adds up payloads that are decimal
 * integers ("42", "-7") and writes the total of each shard to a file.
 *
 * It shows the parts every plugin has: options read in init, one state per
 * (consumer, shard, lane), a process() that is safe under at-least-once
 * delivery (it skips sequence numbers it has already added), a per-record
 * failure (SPATE_BATCH_PARTIAL at a payload that is not a number, so the
 * engine retries it and, in the end, sends it to the on-failure destination
 * with the error), and fini.
 *
 * Build:  cc -shared -fPIC $(pkg-config --cflags spate) -o sum.so sum.c
 * Use:    consumers: [{ name: totals, stream: numbers, plugin: ./sum.so,
 *                      options: { out: /tmp/sum-%s.txt } }]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spate/plugin.h>

struct sum_state {
	const struct spate_plugin_host *host;
	char out[4096];     /* output file, "" for none */
	long long total;
	uint64_t next_seq;  /* first sequence number not yet added */
	int started;
};

static int sum_init(const struct spate_plugin_ctx *ctx, void **state)
{
	const char *out = spate_plugin_opt(ctx, "out", "");
	const char *pc = strstr(out, "%s");
	struct sum_state *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->host = ctx->host;
	/* "%s" in the path is the shard, so shards do not share a file. */
	if (pc)
		snprintf(s->out, sizeof(s->out), "%.*s%u%s", (int)(pc - out), out, ctx->shard,
			 pc + 2);
	else
		snprintf(s->out, sizeof(s->out), "%s", out);
	*state = s;
	return 0;
}

static int sum_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct sum_state *s = state;

	for (uint32_t i = 0; i < b->count; i++) {
		const struct spate_ring_rec *r = &b->recs[i];
		char num[32];
		char *end;

		if (s->started && r->seq < s->next_seq)
			continue; /* delivered again after a retry: already added */
		if (r->len == 0 || r->len >= sizeof(num))
			goto bad;
		memcpy(num, r->data, r->len);
		num[r->len] = 0;
		long long v = strtoll(num, &end, 10);
		if (*end)
			goto bad;
		s->total += v;
		s->next_seq = r->seq + 1;
		s->started = 1;
		continue;
bad:
		/* Records before i are done; retry from i. */
		res->status = SPATE_BATCH_PARTIAL;
		res->failed_index = i;
		snprintf(res->error, sizeof(res->error), "sum: record %" PRIu64 " is not a number",
			 r->seq);
		return 0;
	}
	res->status = SPATE_BATCH_OK;
	return 0;
}

static void sum_fini(void *state)
{
	struct sum_state *s = state;

	if (s->host && s->host->log)
		s->host->log(s->host, SPATE_LOG_INFO, "sum: total %lld", s->total);
	if (s->out[0]) {
		FILE *f = fopen(s->out, "w");
		if (f) {
			fprintf(f, "%lld\n", s->total);
			fclose(f);
		}
	}
	free(s);
}

SPATE_PLUGIN_DEFINE(.name = "sum", .version = "1.0", .init = sum_init, .process = sum_process,
		    .fini = sum_fini);
