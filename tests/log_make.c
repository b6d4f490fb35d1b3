/* SPDX-License-Identifier: MIT */
/* log_make DIR N [exit]: write N batches of 3 16-byte records
 * ("record-KK-I") to the shard log in DIR, each synced; with "exit", end
 * the process without closing the log (its active segment keeps its
 * preallocated tail, as after a crash). A fixture for tests/log_cli.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spate/log.h"

int main(int argc, char **argv)
{
	struct spate_ring_params rp = { .capacity = 1 << 20 };
	size_t sz = spate_ring_memsize(&rp);
	void *mem = aligned_alloc(4096, sz);
	struct spate_ring *r;
	struct spate_ring_writer *w;
	struct spate_log *l;
	struct spate_log_recovery rep;
	struct spate_log_params lp = { 0 };
	int n = argc > 2 ? atoi(argv[2]) : 10;

	if (argc < 2 || !mem || spate_ring_format(mem, sz, &rp) || spate_ring_open_mem(mem, sz, &r) ||
	    spate_ring_writer_open(r, SPATE_RING_WAIT_BUSY, &w))
		return 1;
	mkdir(argv[1], 0700);
	if (spate_log_open(argv[1], &lp, &l, &rep))
		return 2;
	for (int k = 0; k < n; k++) {
		struct spate_ring_batch b;
		uint64_t durable;
		if (spate_ring_reserve(w, 3 * spate_ring_rec_size(16), &b))
			return 3;
		for (int i = 0; i < 3; i++) {
			char *p = spate_ring_batch_add(&b, 16, 7, 0);
			char text[32];
			snprintf(text, sizeof(text), "record-%02d-%d.........", k % 100, i);
			memcpy(p, text, 16);
		}
		spate_ring_commit(w, &b, 0, NULL);
		if (spate_log_append(l, b.hdr, (size_t)(b.cur - b.hdr)) || spate_log_sync(l, &durable))
			return 4;
	}
	if (argc > 3 && !strcmp(argv[3], "exit")) {
		uint64_t durable;
		if (spate_log_sync(l, &durable)) /* nothing new: waits for every write */
			return 6;
		_exit(0);
	}
	spate_ring_writer_close(w);
	spate_ring_close(r);
	free(mem);
	return spate_log_close(l) ? 5 : 0;
}
