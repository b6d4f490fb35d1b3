/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the counters region reader (engine/stats.c attach and
 * accessors), the snapshot built on it (spate_stats_view_take() and its
 * accessors, engine/stats_view.c) and the Prometheus text of `spate run`'s
 * exporter (spate_metrics_prometheus). Each input
 * becomes bus "fz"'s counters region (see fuzz_region.h); a real stream
 * "fz.in" exists beside it, so the snapshot reads rings too. Bit 7 of the
 * first byte (the mode byte of fuzz_region.h) also renders the Prometheus
 * text. Contract: a
 * corrupt region yields an error, never a crash or an out-of-bounds access.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "spate/stats.h"
#include "spate/stream.h"
#include "engine/metrics_http.h"
#include "fuzz_region.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct spate_stream *fz_stream;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct spate_stream_params p = { .shards = 2, .ring_size = SPATE_RING_MIN_CAPACITY };
	struct spate_stats_shape shape = { .n_streams = 2, .n_shards = 3, .n_consumers = 2,
					   .n_tasks = 3, .n_workers = 2 };
	struct spate_stats *st;
	uint32_t slots[2] = { 0, 1 };

	(void)argc;
	(void)argv;
	fuzz_region_init();
	if (spate_stream_create("fz", "in", &p, &fz_stream) != 0)
		abort();
	if (spate_stats_create("fz", &shape, &st) != 0)
		abort();
	if (spate_stats_add_stream(st, "in", 2, NULL, NULL) < 0 ||
	    spate_stats_add_stream(st, "gone", 1, NULL, NULL) < 0 ||
	    spate_stats_add_consumer(st, "c", "count", 0, 1, slots) < 0 ||
	    spate_stats_add_consumer(st, "d", "fail", 1, 1, NULL) < 0)
		abort();
	spate_stats_publish(st);
	/* Some figures, so the template is not all zeros. */
	for (uint32_t i = 0; i < 3; i++) {
		struct spate_stats_task *t = spate_stats_task_at(st, i);
		if (t)
			spate_stats_set(&t->checkpoint, 10 + i);
	}
	struct spate_shm *shm = NULL;
	if (spate_shm_attach("fz..stats", SPATE_SHM_F_RDONLY, &shm) != 0)
		abort();
	fuzz_region_keep_template(shm);
	spate_shm_detach(shm);
	spate_stats_close(st);
	fuzz_region_dump("fz..stats");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spate_stats *st = NULL;
	struct spate_stats_view *v = NULL;

	if (fuzz_region_write("fz..stats", data, size) != 0)
		return -1;
	if (spate_stats_attach("fz", &st) == 0) {
		const struct spate_stats_hdr *h = spate_stats_header(st);
		for (uint32_t i = 0; i < h->n_streams; i++)
			(void)spate_stats_stream_at(st, i);
		for (uint32_t i = 0; i < h->n_shards; i++)
			(void)spate_stats_shard_at(st, i);
		for (uint32_t i = 0; i < h->n_consumers; i++)
			(void)spate_stats_consumer_at(st, i);
		for (uint32_t i = 0; i < h->n_tasks; i++)
			(void)spate_stats_task_at(st, i);
		for (uint32_t i = 0; i < h->n_workers; i++)
			(void)spate_stats_worker_at(st, i);
		(void)spate_stats_stream_find(st, "in");
		(void)spate_stats_consumer_find(st, "c");
		(void)spate_stats_engine_alive(st);
		spate_stats_close(st);
	}
	if (spate_stats_view_take("fz", &v) == 0) {
		uint64_t r, b, a;
		for (uint32_t c = 0; c < v->n_consumers; c++) {
			(void)spate_stats_view_hist(v, c, SPATE_STATS_HIST_LATENCY);
			spate_stats_view_lag(v, c, UINT32_MAX, &r, &b, &a);
			for (uint32_t k = 0; k < v->consumers[c].shards && k < 4; k++) {
				spate_stats_view_lag(v, c, k, &r, &b, &a);
				(void)spate_stats_view_checkpoint(v, c, k);
			}
			(void)spate_stats_state_name(v->consumers[c].state);
		}
		for (uint32_t t = 0; t < v->n_tasks; t++)
			(void)spate_stats_view_task_catchup(&v->tasks[t]);
		/* The exporter's text computes quantiles of every histogram,
		 * which dominates the time of a run: only when bit 7 of the
		 * mode byte asks for it. */
		if (data[0] & 0x80)
			free(spate_metrics_prometheus(v));
		spate_stats_view_free(v);
	}
	return 0;
}
