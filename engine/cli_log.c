/* SPDX-License-Identifier: MIT */
/*
 * cli_log.c - `spate log verify|dump|stats|repair DIR`: look at a shard's
 * log on disk without changing it (read-only readers; recovery, which may
 * cut a torn tail, happens only when a writer opens the log), and record
 * an operator's decision to skip damaged ranges (`repair`, which appends
 * to the log's repair journal and changes no segment). `spate log export
 * --pcapng FILE` writes the packet records (spate/packet.h) of a shard's
 * log, or of a live stream's rings, as a pcapng capture (DPDK's
 * librte_pcapng, engine/sources/pcapng_out.c; DPDK builds only).
 */
#include "spate_config.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cli.h"
#include "spate/config.h"
#include "spate/log.h"
#include "spate/stream.h"
#if SPATE_HAVE_DPDK
#include "engine/sources/pcapng_out.h"
#endif

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

static void print_damage(FILE *f, const char *dir, const struct spate_log_damage *d)
{
	fprintf(f, "%s: %s: segment %020" PRIu64 ".seg offset %" PRIu64 ", expected seq %" PRIu64 ": %s",
		dir, d->repaired ? "REPAIRED (skipped by the repair journal)" : "DAMAGED", d->segment,
		d->offset, d->seq, d->why);
	if (d->resume_segment == UINT64_MAX)
		fprintf(f, "; nothing valid after it\n");
	else
		fprintf(f, "; resumes at segment %020" PRIu64 ".seg offset %" PRIu64 ", seq %" PRIu64
			   " (%" PRIu64 " record(s) lost)\n",
			d->resume_segment, d->resume_offset, d->resume_seq, d->resume_seq - d->seq);
}

static void verify_cb(const struct spate_log_damage *d, void *arg)
{
	print_damage(stdout, arg, d);
}

/* Every frame of every segment; every damaged range printed. Non-zero
 * exit on damage that no repair skips. */
static int log_verify(const char *dir)
{
	struct spate_log_verify v;
	int rc = spate_log_verify(dir, &v, verify_cb, (void *)(uintptr_t)dir);

	if (rc < 0) {
		fprintf(stderr, "spate log verify: %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	printf("%s: %s: %" PRIu64 " records, %u segment(s), %" PRIu64 " frames", dir,
	       rc ? "DAMAGED" : "OK", v.records, v.segments, v.frames);
	if (v.records)
		printf(" (sequence %" PRIu64 "..%" PRIu64 ")", v.first_seq, v.next_seq - 1);
	printf(", every frame's CRC-32C and sequence checked");
	if (v.damaged || v.repaired)
		printf("; %u damaged range(s), %u skipped by repair, %" PRIu64 " record(s) lost",
		       v.damaged, v.repaired, v.lost);
	printf("\n");
	if (rc)
		fprintf(stderr, "spate log verify: %s: %d damaged range(s); `spate log repair %s` "
				"skips them (recorded in the log)\n", dir, rc, dir);
	return rc ? -EBADMSG : 0;
}

struct repair_ctx {
	const char *dir, *note;
	int done, failed;
};

static void repair_cb(const struct spate_log_damage *d, void *arg)
{
	struct repair_ctx *c = arg;

	if (d->repaired)
		return;
	print_damage(stdout, c->dir, d);
	int rc = spate_log_repair(c->dir, d, c->note);
	if (rc == 0) {
		printf("  recorded: readers and recovery skip it\n");
		c->done++;
	} else {
		printf("  NOT recorded: %s\n", rc == -EINVAL ? "no valid frame after it to resume at "
			"(a damaged tail of the last segment is cut when `spate run` opens the log)"
			: strerror(-rc));
		c->failed++;
	}
}

/* Record a skip for every damaged range (walking again after each round:
 * a skip recorded can uncover the next range). */
static int log_repair(const char *dir, const char *note)
{
	struct repair_ctx c = { .dir = dir, .note = note };
	struct spate_log_verify v;
	int rc = 0;

	for (int round = 0; round < 1000; round++) {
		int before = c.done;
		rc = spate_log_verify(dir, &v, repair_cb, &c);
		if (rc <= 0 || c.done == before)
			break;
	}
	if (rc < 0) {
		fprintf(stderr, "spate log repair: %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	printf("%s: %d range(s) recorded as skipped, %d left damaged\n", dir, c.done, rc);
	return rc ? -EBADMSG : 0;
}

/* Print records from a position; stops at damage naming it (a duplicate
 * or any other damage is never passed over silently) and says when it
 * skips a range the repair journal skips or one retention deleted. */
static int log_dump(const char *dir, enum spate_log_from from, uint64_t arg, uint64_t count)
{
	struct spate_log_reader *rd;
	uint64_t n = 0;
	int rc = spate_log_reader_open(dir, from, arg, &rd);

	if (rc < 0) {
		fprintf(stderr, "spate log: %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	while (n < count) {
		struct spate_ring_rec v[256];
		uint64_t skipped = 0, rep0 = spate_log_reader_repaired(rd);
		int k = spate_log_read(rd, v, 256, &skipped);
		if (k < 0) {
			struct spate_log_damage d;
			if (k == -EBADMSG && spate_log_reader_damage(rd, &d) == 1)
				print_damage(stderr, dir, &d);
			else
				fprintf(stderr, "spate log: %s: after %" PRIu64 " records: %s\n", dir, n,
					strerror(-k));
			rc = k;
			break;
		}
		uint64_t repaired = spate_log_reader_repaired(rd) - rep0;
		if (repaired)
			fprintf(stderr, "spate log: %s: skipped %" PRIu64 " record(s) of a range the repair "
					"journal skips (an operator decision)\n", dir, repaired);
		if (skipped > repaired)
			fprintf(stderr, "spate log: %s: skipped %" PRIu64 " record(s) deleted by retention "
					"while reading\n", dir, skipped - repaired);
		if (k == 0)
			break;
		for (int i = 0; i < k && n < count; i++, n++) {
			printf("%" PRIu64 " ts=%" PRIu64 " key=%08x len=%u ", v[i].seq, v[i].ts,
			       v[i].key_hash, v[i].len);
			const unsigned char *p = v[i].data;
			for (uint32_t j = 0; j < v[i].len && j < 200; j++)
				putchar(p[j] >= 0x20 && p[j] < 0x7f ? p[j] : '.');
			putchar('\n');
		}
	}
	spate_log_reader_close(rd);
	return rc;
}

#if SPATE_HAVE_DPDK
static int export_report(struct spate_pcapng_out *o, const char *file, int rc)
{
	char err[512] = "";
	struct spate_pcapng_out_stats st;

	spate_pcapng_out_stats(o, &st);
	int rc2 = spate_pcapng_out_close(o, err, sizeof(err));
	if (rc2 < 0 && rc == 0) {
		fprintf(stderr, "spate log export: %s\n", err);
		rc = rc2;
	}
	if (rc == 0)
		printf("%s: %" PRIu64 " packet(s) written, %" PRIu64 " other record(s) skipped\n", file,
		       st.packets, st.skipped);
	return rc;
}

/* A shard's log from a position, to FILE. */
static int export_log(const char *dir, enum spate_log_from from, uint64_t arg, uint64_t count,
		      const char *file)
{
	struct spate_log_reader *rd;
	struct spate_pcapng_out *o;
	char err[512];
	uint64_t n = 0;
	int rc = spate_log_reader_open(dir, from, arg, &rd);

	if (rc < 0) {
		fprintf(stderr, "spate log export: %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	if ((rc = spate_pcapng_out_open(file, dir, &o, err, sizeof(err))) < 0) {
		fprintf(stderr, "spate log export: %s\n", err);
		spate_log_reader_close(rd);
		return rc;
	}
	while (n < count && rc == 0) {
		struct spate_ring_rec v[256];
		uint64_t skipped = 0;
		int k = spate_log_read(rd, v, 256, &skipped);
		if (k < 0) {
			fprintf(stderr, "spate log export: %s: after %" PRIu64 " records: %s\n", dir, n,
				strerror(-k));
			rc = k;
			break;
		}
		if (skipped)
			fprintf(stderr, "spate log export: %s: %" PRIu64 " record(s) skipped (retention or "
					"repair journal)\n", dir, skipped);
		if (k == 0)
			break;
		for (int i = 0; i < k && n < count && rc == 0; i++, n++) {
			int w = spate_pcapng_out_write(o, &v[i], err, sizeof(err));
			if (w < 0) {
				fprintf(stderr, "spate log export: %s\n", err);
				rc = w;
			}
		}
	}
	spate_log_reader_close(rd);
	return export_report(o, file, rc);
}

/* A live stream's rings (every shard, or one), from the oldest record each
 * holds (or sequence @p from_seq on) to where they were when the export
 * began, to FILE. */
static int export_stream(const char *config, const char *stream, long shard_only, uint64_t from_seq,
			 uint64_t count, const char *file)
{
	struct spate_config *cfg;
	struct spate_stream *s;
	struct spate_pcapng_out *o;
	char err[512];
	uint64_t n = 0;
	int rc = spate_config_load(config, &cfg, err, sizeof(err));

	if (rc < 0) {
		fprintf(stderr, "spate log export: %s\n", err);
		return rc;
	}
	rc = spate_stream_attach(cfg->bus, stream, &s);
	if (rc < 0) {
		fprintf(stderr, "spate log export: stream %s of bus %s: %s\n", stream, cfg->bus,
			strerror(-rc));
		spate_config_free(cfg);
		return rc;
	}
	if ((rc = spate_pcapng_out_open(file, stream, &o, err, sizeof(err))) < 0) {
		fprintf(stderr, "spate log export: %s\n", err);
		goto out;
	}
	for (uint32_t sh = 0; sh < spate_stream_shards(s) && rc == 0 && n < count; sh++) {
		if (shard_only >= 0 && (uint32_t)shard_only != sh)
			continue;
		struct spate_ring *r = spate_stream_ring(s, sh);
		uint64_t end = spate_ring_tail_seq(r);
		struct spate_ring_reader *rd;
		rc = spate_ring_reader_open(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD, &rd);
		if (rc < 0) {
			fprintf(stderr, "spate log export: reader on shard %u: %s\n", sh, strerror(-rc));
			break;
		}
		while (rc == 0 && n < count) {
			struct spate_ring_rec v[256];
			int k = spate_ring_peek(rd, v, 256, UINT64_MAX);
			if (k < 0) {
				fprintf(stderr, "spate log export: shard %u: %s\n", sh, strerror(-k));
				rc = k;
				break;
			}
			int i = 0;
			for (; i < k && n < count && rc == 0 && v[i].seq < end; i++) {
				if (v[i].seq < from_seq)
					continue;
				int w = spate_pcapng_out_write(o, &v[i], err, sizeof(err));
				if (w < 0) {
					fprintf(stderr, "spate log export: %s\n", err);
					rc = w;
				}
				n++;
			}
			spate_ring_release(rd, (unsigned)i);
			if (k == 0 || i < k)
				break;
		}
		spate_ring_reader_close(rd);
	}
	rc = export_report(o, file, rc);
out:
	spate_stream_close(s);
	spate_config_free(cfg);
	return rc;
}
#endif

static const char log_usage[] =
	"usage: spate log verify|dump|stats|repair DIR [--from SEQ|--at TIME] [-n N] [--note TEXT]\n"
	"       spate log export DIR --pcapng FILE [--from SEQ|--at TIME] [-n N]\n"
	"       spate log export CONFIG STREAM --pcapng FILE [--shard N] [--from SEQ] [-n N]\n";

int spate_cli_log(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "from", required_argument, 0, 'f' }, { "at", required_argument, 0, 'a' },
		{ "count", required_argument, 0, 'n' }, { "help", no_argument, 0, 'h' },
		{ "note", required_argument, 0, 'N' }, { "pcapng", required_argument, 0, 'P' },
		{ "shard", required_argument, 0, 'S' },
		{ 0, 0, 0, 0 },
	};
	const char *pcapng = NULL;
	long shard_only = -1;
	enum spate_log_from from = SPATE_LOG_FROM_OLDEST;
	uint64_t arg = 0, count = UINT64_MAX;
	const char *note = NULL;
	int c;

	if (argc < 3) {
		fputs(log_usage, stderr);
		return -EINVAL;
	}
	/* export CONFIG STREAM: options after the two operands. */
	const bool of_stream = !strcmp(argv[1], "export") && argc > 3 && argv[3][0] != '-';
	optind = of_stream ? 4 : 3;
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
		} else if (c == 'N') {
			note = optarg;
		} else if (c == 'P') {
			pcapng = optarg;
		} else if (c == 'S') {
			char *end;
			shard_only = strtol(optarg, &end, 10);
			if (*end || shard_only < 0) {
				fprintf(stderr, "spate log export: --shard takes a shard number\n");
				return -EINVAL;
			}
		} else if (c == 'n') {
			count = strtoull(optarg, NULL, 0);
		} else {
			fputs(log_usage, c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (!strcmp(argv[1], "stats"))
		return log_stats(argv[2]);
	if (!strcmp(argv[1], "verify"))
		return log_verify(argv[2]);
	if (!strcmp(argv[1], "repair"))
		return log_repair(argv[2], note);
	if (!strcmp(argv[1], "dump"))
		return log_dump(argv[2], from, arg, count);
	if (!strcmp(argv[1], "export")) {
		if (!pcapng) {
			fprintf(stderr, "spate log export: --pcapng FILE is required (the one format)\n");
			return -EINVAL;
		}
#if SPATE_HAVE_DPDK
		if (of_stream) {
			if (from == SPATE_LOG_FROM_TIME) {
				fprintf(stderr, "spate log export: --at reads a shard log (DIR), not the rings\n");
				return -EINVAL;
			}
			return export_stream(argv[2], argv[3], shard_only, arg, count, pcapng);
		}
		return export_log(argv[2], from, arg, count, pcapng);
#else
		fprintf(stderr, "spate log export: built without DPDK (librte_pcapng)\n");
		return -ENOTSUP;
#endif
	}
	fprintf(stderr, "spate log: unknown command '%s' (verify, dump, stats, repair, export)\n", argv[1]);
	return -EINVAL;
}
