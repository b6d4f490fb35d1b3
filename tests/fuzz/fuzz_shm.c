/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: attaching a stream's shared memory (rings/shm.c,
 * engine/stream.c, the ring headers of rings/ring.c). Each input becomes the
 * region file of stream "fz.s" (see fuzz_region.h for the three ways); the
 * stream is attached and, if that succeeds, every shard is read a little.
 * Contract (house style): a corrupt region yields an error, never a crash,
 * a hang or an out-of-bounds access.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "spate/ring.h"
#include "spate/stream.h"
#include "fuzz_region.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct spate_stream_params p = { .shards = 2, .ring_size = SPATE_RING_MIN_CAPACITY,
					 .ring_flags = SPATE_RING_F_MULTI_WRITER };
	struct spate_stream *s;
	struct spate_producer *pr;
	struct spate_put_result r;

	(void)argc;
	(void)argv;
	fuzz_region_init();
	if (spate_stream_create("fz", "s", &p, &s) != 0)
		abort();
	/* A few records in both shards, so the template's rings hold batches. */
	if (spate_producer_open(s, SPATE_RING_WAIT_YIELD, 0, &pr) != 0)
		abort();
	for (int i = 0; i < 40; i++) {
		char rec[32];
		int n = snprintf(rec, sizeof(rec), "record %d", i);
		if (spate_put(pr, rec, (size_t)n, rec, (size_t)n, &r) != 0)
			abort();
	}
	spate_producer_close(pr);
	fuzz_region_keep_template(spate_stream_shm(s));
	spate_stream_close(s);
	spate_stream_unlink("fz", "s");
	fuzz_region_dump("fz.s");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spate_stream *s = NULL;

	if (fuzz_region_write("fz.s", data, size) != 0)
		return -1;
	if (spate_stream_attach("fz", "s", &s) != 0)
		return 0;
	for (uint32_t i = 0; i < spate_stream_shards(s); i++) {
		struct spate_ring_reader *rd = NULL;
		struct spate_ring_rec v[16];
		if (spate_ring_reader_open(spate_stream_ring(s, i), SPATE_RING_START_OLDEST,
					   SPATE_RING_WAIT_YIELD, &rd) != 0)
			continue;
		for (int round = 0; round < 8; round++) {
			int k = spate_ring_peek(rd, v, 16, UINT64_MAX);
			if (k <= 0)
				break;
			volatile uint8_t sink = 0;
			for (int j = 0; j < k; j++)
				for (uint32_t b = 0; b < v[j].len; b++)
					sink ^= ((const uint8_t *)v[j].data)[b];
			(void)sink;
			spate_ring_release(rd, (unsigned)k);
		}
		spate_ring_reader_close(rd);
	}
	spate_stream_close(s);
	return 0;
}
