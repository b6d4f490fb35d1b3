/* SPDX-License-Identifier: MIT */
/*
 * streams_add.c - test helper for streams_restart.sh: run the engine of a
 * bus configuration (as `spate run` does) and, while it runs, create
 * run-time stream STREAM (1 shard, durability always) with a tag and a
 * 48 h retention, put N records (each acknowledged once durable), print
 * "ready" and wait to be killed.
 * Usage: streams_add CONFIG STREAM N
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spate/engine.h"

int main(int argc, char **argv)
{
	struct spate_engine *e;
	struct spate_config_stream cs;
	struct spate_engine_tag tag = { .key = "owner", .value = "restart-test" };
	struct spate_producer *p;
	char err[512], key[24];
	int rc;

	if (argc != 4) {
		fprintf(stderr, "usage: streams_add CONFIG STREAM N\n");
		return 2;
	}
	rc = spate_engine_open_file(argv[1], &e, err, sizeof(err));
	if (rc < 0 || (rc = spate_engine_start(e)) < 0) {
		fprintf(stderr, "streams_add: engine: %s\n", rc < 0 ? err : "start");
		return 1;
	}
	spate_config_stream_defaults(&cs);
	snprintf(cs.name, sizeof(cs.name), "%s", argv[2]);
	cs.ring_size = 1 << 20;
	cs.huge_pages = SPATE_CONFIG_HUGE_OFF;
	cs.durability = SPATE_DURABILITY_ALWAYS;
	cs.segment_size = 1 << 20;
	if ((rc = spate_engine_stream_add(e, &cs, err, sizeof(err))) < 0 ||
	    (rc = spate_engine_stream_tag(e, argv[2], &tag, 1, err, sizeof(err))) < 0 ||
	    (rc = spate_engine_stream_set_retention(e, argv[2], 48ull * 3600 * 1000000000ull)) < 0) {
		fprintf(stderr, "streams_add: %s (%d)\n", err, rc);
		return 1;
	}
	struct spate_stream *s = spate_engine_stream_get(e, argv[2]);
	if (!s || spate_producer_open(s, SPATE_RING_WAIT_YIELD, 0, &p) < 0) {
		fprintf(stderr, "streams_add: no producer\n");
		return 1;
	}
	long n = atol(argv[3]);
	for (long i = 0; i < n; i++) {
		int k = snprintf(key, sizeof(key), "k%ld", i);
		rc = spate_put(p, key, (size_t)k, "durable-record", 14, NULL);
		if (rc < 0) {
			fprintf(stderr, "streams_add: put %ld: %d\n", i, rc);
			return 1;
		}
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause(); /* SIGKILL is the test's point */
}
