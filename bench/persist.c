/* SPDX-License-Identifier: MIT */
/*
 * persist.c - `spate bench persist`: what the disk can do, and what spate's
 * log does with it, in the same run.
 *
 * The raw case writes large aligned buffers sequentially with io_uring
 * (O_DIRECT where the file system allows it, queue depth 16, one fdatasync at
 * the end): the bandwidth a log could hope for. In the spate cases a producer
 * thread fills a real ring with 64-byte or 1 KiB records in 64 KiB batches,
 * and a persister takes whole batches from it (spate_ring_peek_batches, zero
 * copy), appends them to a shard log, group-commits per durability policy
 * and releases them; `always` also reports the durable-acknowledgement
 * latency (batches taken to fdatasync done).
 * Ratios are spate bytes/s over raw bytes/s of the same run.
 *
 * Limits: one file system (the --dir given, default /var/tmp); a VM's
 * virtio disk may acknowledge fdatasync before stable media.
 */
#include "spate_config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "spate/hist.h"
#include "spate/log.h"

struct persist_case {
	const char *impl;
	const char *durability;
	uint32_t record_size;
	double secs;
	uint64_t records, bytes;
	struct spate_hist ack; /* always: append -> durable */
	int ok;
	char why[256];
};

static int rm_tree(const char *dir)
{
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -EIO;
}

/* Sequential 1 MiB writes, depth 16, O_DIRECT if possible, for @p secs. */
static int raw_case(const char *dir, double secs, struct persist_case *c)
{
	const size_t bs = 1u << 20;
	const unsigned depth = 16;
	char path[600];
	struct io_uring ring;
	void *buf = NULL;
	int fd, rc, direct = 1;

	memset(c, 0, sizeof(*c));
	c->impl = "raw";
	c->durability = "none";
	spate_hist_init(&c->ack);
	snprintf(path, sizeof(path), "%s/raw.bin", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0) {
		direct = 0;
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	}
	if (fd < 0)
		return -errno;
	if (posix_memalign(&buf, 4096, bs)) {
		close(fd);
		return -ENOMEM;
	}
	memset(buf, 0x5a, bs);
	rc = io_uring_queue_init(depth, &ring, 0);
	if (rc < 0) {
		free(buf);
		close(fd);
		return rc;
	}
	uint64_t t0 = spate_mono_ns(), off = 0, end = t0 + (uint64_t)(secs * 1e9);
	unsigned inflight = 0;
	while (spate_mono_ns() < end || inflight) {
		while (inflight < depth && spate_mono_ns() < end) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (!sqe)
				break;
			io_uring_prep_write(sqe, fd, buf, (unsigned)bs, off);
			off += bs;
			inflight++;
		}
		io_uring_submit(&ring);
		struct io_uring_cqe *cqe;
		rc = io_uring_wait_cqe(&ring, &cqe);
		if (rc < 0)
			break;
		if (cqe->res < 0) {
			rc = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
			break;
		}
		c->bytes += (uint64_t)cqe->res;
		inflight--;
		io_uring_cqe_seen(&ring, cqe);
		rc = 0;
	}
	fdatasync(fd);
	c->secs = (double)(spate_mono_ns() - t0) / 1e9;
	io_uring_queue_exit(&ring);
	close(fd);
	unlink(path);
	free(buf);
	c->ok = rc == 0;
	snprintf(c->why, sizeof(c->why), "%s", direct ? "O_DIRECT" : "buffered (no O_DIRECT here)");
	return rc;
}

struct producer {
	struct spate_ring_writer *w;
	uint32_t size;
	unsigned per;
	_Atomic int stop;
};

/* The producer: 64 KiB batches of records into the ring, as fast as the
 * persister frees space. */
static void *produce_main(void *arg)
{
	struct producer *p = arg;
	uint64_t n = 0;

	/* Relaxed: a stop flag; the join orders the rest. */
	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		struct spate_ring_batch b;
		if (spate_ring_reserve(p->w, p->per * spate_ring_rec_size(p->size), &b) < 0) {
			spate_cpu_relax();
			continue;
		}
		for (unsigned i = 0; i < p->per; i++) {
			uint64_t *q = spate_ring_batch_add(&b, p->size, (uint32_t)i, 0);
			q[0] = n++;
		}
		spate_ring_commit(p->w, &b, 0, NULL);
	}
	return NULL;
}

/*
 * A producer thread fills a ring with @p size-byte records; this thread is
 * the persister: it takes whole batches from the ring (zero copy), appends
 * them to a shard log, group-commits per the durability policy, and
 * releases them, as the engine's persistence threads will.
 */
static int log_case(const char *dir, enum spate_log_durability d, uint32_t size, double secs,
		    struct persist_case *c)
{
	static const char *names[] = { "none", "interval", "always" };
	struct spate_ring_params rp = { .capacity = 16u << 20, .flags = SPATE_RING_F_NO_BLOCKING };
	struct spate_log_params lp = { .durability = d, .segment_bytes = 256u << 20 };
	struct spate_log_recovery rep;
	struct spate_ring *r = NULL;
	struct spate_ring_reader *rd = NULL;
	struct spate_log *l = NULL;
	struct producer prod = { .size = size };
	pthread_t th;
	bool started = false;
	char ldir[600];
	size_t msz = spate_ring_memsize(&rp);
	void *mem = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	c->impl = "spate";
	c->durability = names[d];
	c->record_size = size;
	spate_hist_init(&c->ack);
	snprintf(ldir, sizeof(ldir), "%s/log-%s-%u", dir, names[d], size);
	if (posix_memalign(&mem, 1u << 21, msz))
		return -ENOMEM;
	prod.per = (unsigned)((64u << 10) / spate_ring_rec_size(size));
	if ((rc = spate_ring_format(mem, msz, &rp)) < 0 || (rc = spate_ring_open_mem(mem, msz, &r)) < 0 ||
	    (rc = spate_ring_writer_open(r, SPATE_RING_WAIT_BUSY, &prod.w)) < 0 ||
	    (rc = spate_ring_reader_open(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BUSY, &rd)) < 0)
		goto out;
	mkdir(ldir, 0700);
	rc = spate_log_open(ldir, &lp, &l, &rep);
	if (rc < 0)
		goto out;
	rc = -pthread_create(&th, NULL, produce_main, &prod);
	if (rc < 0)
		goto out;
	started = true;
	uint64_t t0 = spate_mono_ns(), end = t0 + (uint64_t)(secs * 1e9);
	while (spate_mono_ns() < end) {
		struct spate_ring_span sp[64];
		int n = spate_ring_peek_batches(rd, sp, 64, 4u << 20);
		if (n < 0) {
			rc = n;
			break;
		}
		if (n == 0) {
			spate_cpu_relax();
			continue;
		}
		uint64_t ta = spate_mono_ns(), durable, recs = 0;
		for (int i = 0; i < n && rc >= 0; i++) {
			rc = spate_log_append(l, sp[i].hdr, sp[i].len);
			recs += sp[i].count;
			c->bytes += sp[i].len + 16u;
		}
		if (rc == 0)
			rc = spate_log_sync(l, &durable);
		if (rc < 0)
			break;
		if (d == SPATE_LOG_DURABLE_ALWAYS)
			spate_hist_record(&c->ack, spate_mono_ns() - ta);
		c->records += recs;
		/* Written straight from the ring; now the space can be reused. */
		spate_ring_release(rd, (unsigned)recs);
	}
	c->secs = (double)(spate_mono_ns() - t0) / 1e9;
	atomic_store_explicit(&prod.stop, 1, memory_order_relaxed);
	pthread_join(th, NULL);
	started = false;
	if (rc >= 0)
		rc = spate_log_close(l);
	else
		spate_log_close(l);
	l = NULL;
	c->ok = rc >= 0;
	snprintf(c->why, sizeof(c->why), "%s", rep.io_uring ? "io_uring" : "pwrite");
out:
	if (started) {
		atomic_store_explicit(&prod.stop, 1, memory_order_relaxed);
		pthread_join(th, NULL);
	}
	if (rc < 0)
		snprintf(c->why, sizeof(c->why), "%s", strerror(-rc));
	spate_log_close(l);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(prod.w);
	spate_ring_close(r);
	free(mem);
	rm_tree(ldir);
	return rc < 0 ? rc : 0;
}

int spate_bench_persist_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", required_argument, 0, 'd' },  { "seconds", required_argument, 0, 's' },
		{ "json", no_argument, 0, 'j' },       { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *base = "/var/tmp";
	double secs = 2;
	int json = 0, c;
	char dir[512];

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'd')
			base = optarg;
		else if (c == 's')
			secs = atof(optarg);
		else if (c == 'j')
			json = 1;
		else {
			printf("usage: spate bench persist [--dir DIR] [--seconds S] [--json]\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	snprintf(dir, sizeof(dir), "%s/spate-bench-persist-XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "spate bench persist: %s: %s\n", base, strerror(errno));
		return -errno;
	}
	struct persist_case cases[7];
	unsigned n = 0;
	int rc = raw_case(dir, secs, &cases[n++]);
	static const uint32_t sizes[] = { 64, 1024 };
	for (unsigned s = 0; s < 2 && rc >= 0; s++)
		for (int d = SPATE_LOG_DURABLE_NONE; d <= SPATE_LOG_DURABLE_ALWAYS && rc >= 0; d++)
			rc = log_case(dir, (enum spate_log_durability)d, sizes[s], secs, &cases[n++]);
	rm_tree(dir);
	if (rc < 0) {
		fprintf(stderr, "spate bench persist: %s\n", strerror(-rc));
		return rc;
	}
	double raw_bps = (double)cases[0].bytes / cases[0].secs;
	if (!json) {
		printf("spate bench persist: %s (raw: %s)\n", base, cases[0].why);
		printf("%-6s %-9s %6s %12s %10s %8s %10s %10s\n", "impl", "durable", "size", "Mrec/s",
		       "MB/s", "vs raw", "ack p50", "ack p99");
		for (unsigned i = 0; i < n; i++) {
			const struct persist_case *k = &cases[i];
			double bps = (double)k->bytes / k->secs;
			printf("%-6s %-9s %6u %12.2f %10.1f %7.2fx", k->impl, k->durability,
			       k->record_size, (double)k->records / k->secs / 1e6, bps / 1e6,
			       bps / raw_bps);
			if (spate_hist_count(&k->ack))
				printf(" %8.1fus %8.1fus", spate_hist_percentile(&k->ack, 50) / 1e3,
				       spate_hist_percentile(&k->ack, 99) / 1e3);
			printf("\n");
		}
		return 0;
	}
	json_object *root = json_object_new_object(), *arr = json_object_new_array();
	for (unsigned i = 0; i < n; i++) {
		const struct persist_case *k = &cases[i];
		json_object *o = json_object_new_object();
		double bps = (double)k->bytes / k->secs;
		json_object_object_add(o, "impl", json_object_new_string(k->impl));
		json_object_object_add(o, "durability", json_object_new_string(k->durability));
		json_object_object_add(o, "record_size", json_object_new_int((int)k->record_size));
		json_object_object_add(o, "records_per_sec",
				       json_object_new_double((double)k->records / k->secs));
		json_object_object_add(o, "bytes_per_sec", json_object_new_double(bps));
		json_object_object_add(o, "vs_raw", json_object_new_double(bps / raw_bps));
		if (spate_hist_count(&k->ack)) {
			json_object_object_add(o, "ack_p50_ns", json_object_new_int64((int64_t)spate_hist_percentile(&k->ack, 50)));
			json_object_object_add(o, "ack_p99_ns", json_object_new_int64((int64_t)spate_hist_percentile(&k->ack, 99)));
		}
		json_object_object_add(o, "note", json_object_new_string(k->why));
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "dir", json_object_new_string(base));
	json_object_object_add(root, "cases", arr);
	printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	json_object_put(root);
	return 0;
}
