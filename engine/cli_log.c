/* SPDX-License-Identifier: MIT */
/*
 * cli_log.c - `spate log verify|dump|stats DIR`: look at a shard's log on
 * disk without changing it (read-only readers; recovery, which may cut a
 * torn tail, happens only when a writer opens the log).
 */
#include "spate_config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cli.h"
#include "spate/config.h"
#include "spate/log.h"

static int log_stats(const char *dir)
{
	struct spate_log_stats st;
	int rc = spate_log_stat(dir, &st);

	if (rc < 0) {
		fprintf(stderr, "spate log stats: %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	printf("%s: %u segment(s), %" PRIu64 " bytes, sequence %" PRIu64 "..%" PRIu64
	       ", timestamps %" PRIu64 "..%" PRIu64 "\n",
	       dir, st.segments, st.bytes, st.first_seq,
	       st.next_seq ? st.next_seq - 1 : 0, st.first_ts, st.last_ts);
	return 0;
}

static int log_walk(const char *dir, enum spate_log_from from, uint64_t arg, uint64_t count,
		    int print)
{
	struct spate_log_reader *rd;
	struct spate_log_stats st = { 0 };
	uint64_t n = 0, bytes = 0, skipped_total = 0, next_report = 64ull << 20;
	int rc = spate_log_reader_open(dir, from, arg, &rd);

	if (rc < 0) {
		fprintf(stderr, "spate log: %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	spate_log_stat(dir, &st);
	for (;;) {
		struct spate_ring_rec v[256];
		uint64_t skipped = 0;
		int k = spate_log_read(rd, v, 256, &skipped);
		if (k < 0) {
			fprintf(stderr, "spate log: %s: after %" PRIu64 " records: %s\n", dir, n,
				k == -EBADMSG ? "a frame fails its CRC or layout check" : strerror(-k));
			rc = k;
			break;
		}
		skipped_total += skipped;
		if (k == 0)
			break;
		for (int i = 0; i < k && n < count; i++, n++) {
			bytes += v[i].len;
			if (!print)
				continue;
			printf("%" PRIu64 " ts=%" PRIu64 " key=%08x len=%u ", v[i].seq, v[i].ts,
			       v[i].key_hash, v[i].len);
			const unsigned char *p = v[i].data;
			for (uint32_t j = 0; j < v[i].len && j < 200; j++)
				putchar(p[j] >= 0x20 && p[j] < 0x7f ? p[j] : '.');
			putchar('\n');
		}
		if (n >= count)
			break;
		if (!print && bytes >= next_report) {
			/* Progress of a long scan: payload bytes against the
			 * segments' size (frames and headers make it a bit less
			 * than 100% at the end). */
			if (st.bytes)
				fprintf(stderr, "  %" PRIu64 " records, %" PRIu64 " MiB, ~%.0f%%\n", n,
					bytes >> 20, 100.0 * (double)bytes / (double)st.bytes);
			else
				fprintf(stderr, "  %" PRIu64 " records, %" PRIu64 " MiB\n", n,
					bytes >> 20);
			next_report += 64ull << 20;
		}
	}
	spate_log_reader_close(rd);
	if (!print && rc == 0)
		printf("%s: OK: %" PRIu64 " records, %" PRIu64 " payload bytes, every frame's "
		       "CRC-32C checked%s\n",
		       dir, n, bytes, skipped_total ? " (retention skipped some)" : "");
	return rc;
}

int spate_cli_log(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "from", required_argument, 0, 'f' }, { "at", required_argument, 0, 'a' },
		{ "count", required_argument, 0, 'n' }, { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	enum spate_log_from from = SPATE_LOG_FROM_OLDEST;
	uint64_t arg = 0, count = UINT64_MAX;
	int c;

	if (argc < 3) {
		fprintf(stderr, "usage: spate log verify|dump|stats DIR [--from SEQ|--at TIME] [-n N]\n");
		return -EINVAL;
	}
	optind = 3;
	while ((c = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
		if (c == 'f') {
			from = SPATE_LOG_FROM_SEQ;
			arg = strtoull(optarg, NULL, 0);
		} else if (c == 'a') {
			/* Nanoseconds since the epoch, or a timestamp as in the
			 * configuration (2026-11-27T10:00:00Z, ...). */
			from = SPATE_LOG_FROM_TIME;
			if (spate_config_parse_timestamp(optarg, &arg) < 0) {
				fprintf(stderr, "spate log: --at %s: expected nanoseconds since the "
						"epoch or a timestamp like 2026-11-27T10:00:00Z\n",
					optarg);
				return -EINVAL;
			}
		} else if (c == 'n') {
			count = strtoull(optarg, NULL, 0);
		} else {
			fprintf(stderr, "usage: spate log verify|dump|stats DIR [--from SEQ|--at TIME] [-n N]\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (!strcmp(argv[1], "stats"))
		return log_stats(argv[2]);
	if (!strcmp(argv[1], "verify"))
		return log_walk(argv[2], SPATE_LOG_FROM_OLDEST, 0, UINT64_MAX, 0);
	if (!strcmp(argv[1], "dump"))
		return log_walk(argv[2], from, arg, count, 1);
	fprintf(stderr, "spate log: unknown command '%s' (verify, dump, stats)\n", argv[1]);
	return -EINVAL;
}
