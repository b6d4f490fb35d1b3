/* SPDX-License-Identifier: MIT */
/*
 * pcapng.c - the `pcapng` plugin: a capture sink. Writes the packet records
 * (spate/packet.h, type 0xF3, as a `type: dpdk` source appends them) of the
 * stream it consumes to a pcapng file that tcpdump, tshark and Wireshark's
 * capinfos read unchanged; records of other types are skipped and counted.
 *
 * Design. One file per state (shard, lane), written through DPDK's
 * librte_pcapng (engine/sources/pcapng_out.c, compiled in): each record's
 * frame, RX time in ns, wire length and RX queue. EPBs are written 32 at a
 * time, and at the end of every process() call, so a checkpointed record is
 * in the kernel. A redelivered record (at-least-once) whose sequence number
 * is below the next one expected is not written again.
 *
 * Options:
 *   path: PATH   required; "%s" is the shard number, else ".shard<N>" is
 *                appended; lanes > 0 append ".lane<L>". Truncated at init.
 *   comment: TEXT  the capture's comment (default: consumer and stream)
 *
 * Limits. The EAL is started at the first packet, unless a dpdk source of
 * the same engine started it (its arguments win: sources start after the
 * consumers' init). Frames up to 16 KiB. A failed write fails the batch
 * (RETRY); the file may then hold part of it twice.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sources/pcapng_out.h"
#include "plugins/plugin_util.h"
#include "spate/plugin.h"

struct pcapng_state {
	struct spate_pcapng_out *out;
	const struct spate_plugin_host *host;
	uint64_t next_seq; /* UINT64_MAX: none written yet */
	char path[4096];
};

static int pcapng_init(const struct spate_plugin_ctx *ctx, void **state)
{
	const char *tmpl = spate_plugin_opt(ctx, "path", NULL);
	char err[512], comment[256];
	int rc;

	if (!tmpl || !tmpl[0]) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "pcapng: option path is required");
		return -EINVAL;
	}
	struct pcapng_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->host = ctx->host;
	s->next_seq = UINT64_MAX;
	if ((rc = pu_state_path(tmpl, ctx->shard, ctx->lane, s->path, sizeof(s->path))) < 0) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "pcapng: path %s: too long", tmpl);
		free(s);
		return rc;
	}
	snprintf(comment, sizeof(comment), "spate consumer %s of stream %s, shard %u", ctx->consumer,
		 ctx->stream, ctx->shard);
	rc = spate_pcapng_out_open(s->path, spate_plugin_opt(ctx, "comment", comment), &s->out, err,
				   sizeof(err));
	if (rc < 0) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "pcapng: %s", err);
		free(s);
		return rc;
	}
	*state = s;
	return 0;
}

static int pcapng_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct pcapng_state *s = state;
	char err[512];

	for (uint32_t i = 0; i < b->count; i++) {
		const struct spate_ring_rec *r = &b->recs[i];
		if (s->next_seq != UINT64_MAX && r->seq < s->next_seq)
			continue; /* a redelivery of what the file holds */
		int rc = spate_pcapng_out_write(s->out, r, err, sizeof(err));
		if (rc < 0) {
			res->status = SPATE_BATCH_RETRY;
			snprintf(res->error, sizeof(res->error), "%.80s: %.100s", s->path, err);
			return 0;
		}
		s->next_seq = r->seq + 1;
	}
	if (spate_pcapng_out_flush(s->out, err, sizeof(err)) < 0) {
		res->status = SPATE_BATCH_RETRY;
		snprintf(res->error, sizeof(res->error), "%.80s: %.100s", s->path, err);
		return 0;
	}
	res->status = SPATE_BATCH_OK;
	return 0;
}

static void pcapng_fini(void *state)
{
	struct pcapng_state *s = state;
	struct spate_pcapng_out_stats st;
	char err[512];

	spate_pcapng_out_stats(s->out, &st);
	if (spate_pcapng_out_close(s->out, err, sizeof(err)) < 0)
		pu_log(s->host, SPATE_LOG_ERROR, "pcapng: %s: %s", s->path, err);
	else
		pu_log(s->host, SPATE_LOG_INFO, "pcapng: %s: %llu packet(s), %llu other record(s) skipped",
		       s->path, (unsigned long long)st.packets, (unsigned long long)st.skipped);
	free(s);
}

SPATE_PLUGIN_DEFINE(.name = "pcapng", .version = "1.0", .init = pcapng_init,
		    .process = pcapng_process, .fini = pcapng_fini);
