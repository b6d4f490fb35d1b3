/* SPDX-License-Identifier: MIT */
/*
 * replay.c - `spate bench replay`: how fast a consumer behind the ring reads
 * a shard's history from disk (spate_log_read), per reader implementation,
 * cold and warm, in the same run.
 *
 * A log of --gib GiB (default 1) of --record-size byte records (default
 * 256) in 64 KiB batches is written once to a new directory under --dir
 * (default /var/tmp). Then, --runs times (default 3), for each cache state
 * and each reader: "cold" drops the segment files from the page cache first
 * (posix_fadvise DONTNEED on each; the rest of the machine's cache is left
 * alone), "warm" reads them once (plain 1 MiB preads) so they are cached.
 * The readers: "uring" (the default: io_uring, 4 x 512 KiB read ahead),
 * "pread" (the same chunks read with pread on demand: the fallback when
 * io_uring is refused), "per_frame" (two preads per frame and an fstat per
 * batch: the reader before read-ahead). Each read goes from the oldest
 * record to the end, 256 records per spate_log_read, hashing every payload
 * (XXH3, as a consumer touches its records); the record count and the hash
 * must match what was written, or the run fails. Figures are medians over
 * the runs; bytes are the segments' frame bytes. Reader CPU is the
 * thread's user+system time per second of wall time. For scale, each run
 * first reads the segments with O_DIRECT through io_uring, 4 x 1 MiB in
 * flight: the disk's sequential read bandwidth (raw_read_bytes_per_sec,
 * ratio_to_raw).
 *
 * Limits: one file system; a shared VM's disk and page cache drift between
 * runs (hence interleaved cases and medians); cold needs the file system to
 * honour DONTNEED (ext4 does for clean pages).
 */
#include "spate_config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "bench/bench.h"
#include "spate/log.h"

#define REPLAY_BATCH (64u << 10)
#define REPLAY_GROUP 64u /* batches per sync */
#define REPLAY_MAX_RUNS 15u

struct replay_impl {
	const char *name;
	uint32_t flags;
};

static const struct replay_impl replay_impls[] = {
	{ "uring", 0 },
	{ "pread", SPATE_LOG_RD_F_PREAD },
	{ "per_frame", SPATE_LOG_RD_F_PER_FRAME },
};
#define REPLAY_NIMPL (sizeof(replay_impls) / sizeof(replay_impls[0]))

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double thread_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* Write the log: @return 0 or -errno; *records, *hash (XOR of the payload
 * hashes), *bytes (frame bytes). */
static int replay_write(const char *dir, uint64_t target, uint32_t rsize, uint64_t *records,
			uint64_t *hash, uint64_t *bytes)
{
	struct spate_log *l = NULL;
	struct spate_log_recovery rep;
	struct spate_log_params p = {0};
	int rc = spate_log_open(dir, &p, &l, &rep);

	if (rc < 0) {
		fprintf(stderr, "spate bench replay: log open %s: %s (%s)\n", dir, strerror(-rc), rep.message);
		return rc;
	}
	uint32_t rec = (uint32_t)spate_ring_rec_size(rsize);
	unsigned cnt = (REPLAY_BATCH - SPATE_RING_BHDR_SIZE) / rec;
	size_t blen = SPATE_RING_BHDR_SIZE + (size_t)cnt * rec;
	uint8_t *mem = aligned_alloc(4096, blen * REPLAY_GROUP);
	if (!mem) {
		spate_log_close(l);
		return -ENOMEM;
	}
	uint64_t seq = 0, h = 0, done = 0;
	unsigned g = 0;
	while (done < target && rc == 0) {
		uint8_t *b = mem + (size_t)g * blen, *q = b + SPATE_RING_BHDR_SIZE;
		for (unsigned i = 0; i < cnt; i++) {
			uint64_t s = seq + i;
			struct spate_ring_rhdr rh = {rsize, (uint32_t)(s * 2654435761u)};
			memcpy(q, &rh, sizeof(rh));
			uint8_t *d = q + sizeof(rh);
			for (uint32_t k = 0; k < rsize; k += 8) {
				uint64_t v = s * 0x9e3779b97f4a7c15ull + k;
				memcpy(d + k, &v, rsize - k < 8 ? rsize - k : 8);
			}
			memset(d + rsize, 0, rec - sizeof(rh) - rsize);
			h ^= XXH3_64bits(d, rsize);
			q += rec;
		}
		struct spate_ring_bhdr *bh = (struct spate_ring_bhdr *)b;
		bh->count = cnt;
		bh->owner = 0;
		bh->base_seq = seq;
		bh->ts = now_ns();
		/* Relaxed: handed over by a plain call, on this thread. */
		atomic_store_explicit(&bh->commit, SPATE_RING_TAG(seq * 64u) | blen | SPATE_RING_C_COMMITTED,
				      memory_order_relaxed);
		rc = spate_log_append(l, b, blen);
		seq += cnt;
		done += blen + 16;
		if (++g == REPLAY_GROUP || done >= target) {
			if (rc == 0)
				rc = spate_log_sync(l, NULL);
			g = 0;
		}
	}
	int crc = spate_log_close(l);
	free(mem);
	if (rc == 0)
		rc = crc;
	if (rc < 0) {
		fprintf(stderr, "spate bench replay: writing %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	*records = seq;
	*hash = h;
	*bytes = done;
	return 0;
}

/* Drop the segments from the page cache (cold) or read them into it (warm). */
static int replay_cache(const char *dir, int warm)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	static uint8_t buf[1u << 20];

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		size_t nl = strlen(de->d_name);
		if (nl < 4 || strcmp(de->d_name + nl - 4, ".seg"))
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (warm) {
			off_t o = 0;
			ssize_t r;
			while ((r = pread(fd, buf, sizeof(buf), o)) > 0)
				o += r;
		} else {
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		}
		close(fd);
	}
	closedir(d);
	return 0;
}

/* The disk's sequential read bandwidth, for scale: every segment read with
 * O_DIRECT through io_uring, 4 reads of 1 MiB in flight (the page cache
 * plays no part). @return 0 or -errno; *secs, *bytes. */
static int replay_raw(const char *dir, double *secs, uint64_t *bytes)
{
	enum { RAW_QD = 4, RAW_BS = 1 << 20 };
	struct io_uring ring;
	DIR *d = opendir(dir);
	uint8_t *mem = aligned_alloc(4096, (size_t)RAW_QD * RAW_BS);
	int rc = d && mem ? io_uring_queue_init(2 * RAW_QD, &ring, 0) : -ENOMEM;
	struct dirent *de;

	*bytes = 0;
	if (rc < 0) {
		if (d)
			closedir(d);
		free(mem);
		return rc;
	}
	uint64_t t0 = now_ns();
	while (rc == 0 && (de = readdir(d))) {
		size_t nl = strlen(de->d_name);
		if (nl < 4 || strcmp(de->d_name + nl - 4, ".seg"))
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			break;
		}
		uint64_t next = 0;
		unsigned busy = 0;
		int eof = 0;
		for (unsigned i = 0; i < RAW_QD; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			io_uring_prep_read(sqe, fd, mem + (size_t)i * RAW_BS, RAW_BS, next);
			io_uring_sqe_set_data64(sqe, i);
			next += RAW_BS;
			busy++;
		}
		io_uring_submit(&ring);
		while (busy) {
			struct io_uring_cqe *cqe;
			if (io_uring_wait_cqe(&ring, &cqe) < 0)
				continue;
			uint64_t i = io_uring_cqe_get_data64(cqe);
			int res = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
			busy--;
			if (res < 0) {
				rc = res;
				eof = 1;
				continue;
			}
			*bytes += (uint64_t)res;
			if (res < RAW_BS)
				eof = 1;
			if (!eof) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
				io_uring_prep_read(sqe, fd, mem + i * RAW_BS, RAW_BS, next);
				io_uring_sqe_set_data64(sqe, i);
				next += RAW_BS;
				busy++;
				io_uring_submit(&ring);
			}
		}
		close(fd);
	}
	*secs = (double)(now_ns() - t0) / 1e9;
	io_uring_queue_exit(&ring);
	closedir(d);
	free(mem);
	return rc;
}

struct replay_run {
	double secs, cpu;
	uint64_t records, hash;
	int uring; /* the reader used io_uring */
};

static int replay_read(const char *dir, uint32_t flags, struct replay_run *r)
{
	struct spate_log_reader *rd = NULL;
	struct spate_ring_rec v[256];
	int rc = spate_log_reader_open_flags(dir, SPATE_LOG_FROM_OLDEST, 0, flags, &rd);

	if (rc < 0)
		return rc;
	r->uring = spate_log_reader_uring(rd, NULL) == 1;
	r->records = r->hash = 0;
	double c0 = thread_cpu();
	uint64_t t0 = now_ns();
	int n;
	while ((n = spate_log_read(rd, v, 256, NULL)) > 0) {
		for (int i = 0; i < n; i++)
			r->hash ^= XXH3_64bits(v[i].data, v[i].len);
		r->records += (uint64_t)n;
	}
	r->secs = (double)(now_ns() - t0) / 1e9;
	r->cpu = thread_cpu() - c0;
	spate_log_reader_close(rd);
	return n < 0 ? n : 0;
}

int spate_bench_replay_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", required_argument, 0, 'd' },  { "gib", required_argument, 0, 'g' },
		{ "record-size", required_argument, 0, 'r' }, { "runs", required_argument, 0, 'n' },
		{ "json", no_argument, 0, 'j' },       { "keep", no_argument, 0, 'k' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *base = "/var/tmp";
	double gib = 1;
	uint32_t rsize = 256;
	unsigned runs = 3;
	int json = 0, keep = 0, c;
	char dir[512];

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'd')
			base = optarg;
		else if (c == 'g')
			gib = atof(optarg);
		else if (c == 'r')
			rsize = (uint32_t)atoi(optarg);
		else if (c == 'n')
			runs = (unsigned)atoi(optarg);
		else if (c == 'j')
			json = 1;
		else if (c == 'k')
			keep = 1;
		else {
			printf("usage: spate bench replay [--dir DIR (/var/tmp)] [--gib G (1)] [--record-size B (256)]\n"
			       "                          [--runs N (3)] [--keep] [--json]\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (!(gib > 0) || rsize < 1 || rsize > 32768 || runs < 1 || runs > REPLAY_MAX_RUNS) {
		fprintf(stderr, "spate bench replay: bad --gib, --record-size (1-32768) or --runs (1-%u)\n",
			REPLAY_MAX_RUNS);
		return -EINVAL;
	}
	snprintf(dir, sizeof(dir), "%s/spate-bench-replay-XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "spate bench replay: %s: %s\n", base, strerror(errno));
		return -errno;
	}
	uint64_t records = 0, hash = 0, bytes = 0;
	uint64_t t0 = now_ns();
	int rc = replay_write(dir, (uint64_t)(gib * (double)(1ull << 30)), rsize, &records, &hash, &bytes);
	double wsecs = (double)(now_ns() - t0) / 1e9;
	if (!json && rc == 0)
		printf("wrote %.2f GB (%" PRIu64 " records of %u B) to %s in %.1f s\n", bytes / 1e9, records,
		       rsize, dir, wsecs);

	/* [cache][impl][run] */
	struct replay_run res[2][REPLAY_NIMPL][REPLAY_MAX_RUNS];
	double raw_secs[REPLAY_MAX_RUNS];
	for (unsigned r = 0; r < runs && rc == 0; r++) {
		uint64_t rb = 0;
		rc = replay_raw(dir, &raw_secs[r], &rb);
		if (rc < 0)
			fprintf(stderr, "spate bench replay: raw O_DIRECT reads: %s\n", strerror(-rc));
		else if (!json)
			fprintf(stderr, "  run %u raw  O_DIRECT  %.3f s\n", r + 1, raw_secs[r]);
		for (int warm = 0; warm < 2 && rc == 0; warm++) {
			for (unsigned i = 0; i < REPLAY_NIMPL && rc == 0; i++) {
				replay_cache(dir, warm);
				struct replay_run *x = &res[warm][i][r];
				rc = replay_read(dir, replay_impls[i].flags, x);
				if (rc == 0 && (x->records != records || x->hash != hash)) {
					fprintf(stderr,
						"spate bench replay: %s read %" PRIu64 " records (hash %016" PRIx64
						"), wrote %" PRIu64 " (hash %016" PRIx64 ")\n",
						replay_impls[i].name, x->records, x->hash, records, hash);
					rc = -EIO;
				}
				if (rc < 0)
					fprintf(stderr, "spate bench replay: %s: %s\n", replay_impls[i].name,
						strerror(-rc));
				else if (!json)
					fprintf(stderr, "  run %u %s %-9s %.3f s\n", r + 1, warm ? "warm" : "cold",
						replay_impls[i].name, x->secs);
			}
		}
	}
	if (!keep) {
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "spate bench replay: could not remove %s\n", dir);
	}
	if (rc < 0)
		return rc;

	double med_rps[2][REPLAY_NIMPL], med_bps[2][REPLAY_NIMPL], med_cpu[2][REPLAY_NIMPL];
	for (int w = 0; w < 2; w++)
		for (unsigned i = 0; i < REPLAY_NIMPL; i++) {
			double a[REPLAY_MAX_RUNS], b[REPLAY_MAX_RUNS], cc[REPLAY_MAX_RUNS];
			for (unsigned r = 0; r < runs; r++) {
				a[r] = (double)records / res[w][i][r].secs;
				b[r] = (double)bytes / res[w][i][r].secs;
				cc[r] = res[w][i][r].cpu / res[w][i][r].secs;
			}
			med_rps[w][i] = spate_bench_median(a, runs);
			med_bps[w][i] = spate_bench_median(b, runs);
			med_cpu[w][i] = spate_bench_median(cc, runs);
		}
	const unsigned base_i = REPLAY_NIMPL - 1; /* per_frame: the reader before */
	double raw_b[REPLAY_MAX_RUNS];
	for (unsigned r = 0; r < runs; r++)
		raw_b[r] = (double)bytes / raw_secs[r];
	double raw_bps = spate_bench_median(raw_b, runs);
	if (json) {
		json_object *root = json_object_new_object(), *arr = json_object_new_array();
		json_object_object_add(root, "bench", json_object_new_string("replay"));
		json_object_object_add(root, "dir", json_object_new_string(base));
		json_object_object_add(root, "log_bytes", json_object_new_int64((int64_t)bytes));
		json_object_object_add(root, "records", json_object_new_int64((int64_t)records));
		json_object_object_add(root, "record_size", json_object_new_int((int)rsize));
		json_object_object_add(root, "runs", json_object_new_int((int)runs));
		json_object_object_add(root, "raw_read_bytes_per_sec", json_object_new_double(raw_bps));
		for (int w = 0; w < 2; w++)
			for (unsigned i = 0; i < REPLAY_NIMPL; i++) {
				json_object *o = json_object_new_object(), *rs = json_object_new_array();
				json_object_object_add(o, "impl", json_object_new_string(replay_impls[i].name));
				json_object_object_add(o, "cache", json_object_new_string(w ? "warm" : "cold"));
				json_object_object_add(o, "io_uring", json_object_new_boolean(res[w][i][0].uring));
				json_object_object_add(o, "records_per_sec", json_object_new_double(med_rps[w][i]));
				json_object_object_add(o, "bytes_per_sec", json_object_new_double(med_bps[w][i]));
				json_object_object_add(o, "reader_cpu", json_object_new_double(med_cpu[w][i]));
				json_object_object_add(o, "ratio_to_raw", json_object_new_double(med_bps[w][i] / raw_bps));
				json_object_object_add(o, "ratio_to_per_frame",
						       json_object_new_double(med_bps[w][i] / med_bps[w][base_i]));
				for (unsigned r = 0; r < runs; r++)
					json_object_array_add(rs, json_object_new_double(res[w][i][r].secs));
				json_object_object_add(o, "seconds", rs);
				json_object_array_add(arr, o);
			}
		json_object_object_add(root, "cases", arr);
		printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
		json_object_put(root);
	} else {
		printf("%-6s %-10s %14s %10s %8s %10s\n", "cache", "reader", "records/s", "GB/s", "cpu", "x per_frame");
		for (int w = 0; w < 2; w++)
			for (unsigned i = 0; i < REPLAY_NIMPL; i++)
				printf("%-6s %-10s %14.0f %10.2f %8.2f %10.2f\n", w ? "warm" : "cold",
				       replay_impls[i].name, med_rps[w][i], med_bps[w][i] / 1e9, med_cpu[w][i],
				       med_bps[w][i] / med_bps[w][base_i]);
		printf("raw sequential reads (O_DIRECT, io_uring, 4 x 1 MiB): %.2f GB/s\n", raw_bps / 1e9);
		printf("medians of %u runs; %" PRIu64 " records of %u B, %.2f GB of frames\n", runs, records, rsize,
		       bytes / 1e9);
	}
	return 0;
}
