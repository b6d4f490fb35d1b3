/* SPDX-License-Identifier: MIT */
/*
 * persist.c - `spate bench persist`: what the disk can do, and what spate's
 * log does with it, in the same run.
 *
 * Disk baselines (impl "raw" and "fio", JSON "case" names each):
 *  - raw_prealloc: 1 MiB aligned O_DIRECT writes, queue depth 16, io_uring,
 *    from 16 buffers in turn (as fio; one buffer written again and again
 *    stays in the caches, which a VM's disk rewards: raw_case()),
 *    sequentially into a file preallocated with fallocate (4 GiB, wrapping),
 *    as the log writes into its preallocated segments. Runs first and last
 *    (a shared VM's disk drifts): the spate cases are compared with the mean.
 *  - raw_extend: the same into a new file, every write extending it (what
 *    the log did before it preallocated): the cost of extending.
 *  - fio_prealloc (when fio is installed): the same job through fio's own
 *    io_uring engine on a file it lays out first (--fallocate=native), a
 *    cross-check from a tool others wrote.
 *  Each is steady state: --seconds per case (default 6), the first second
 *  not counted (ramp), bytes completed in the rest over its duration.
 *  - fdatasync_bare: the durable-ack floor: one O_DIRECT write of a group
 *    (the mean group of the always_10pct case) then fdatasync, one after the
 *    other, into space preallocated and written once, as a log segment's
 *    (fsync_case()): latency percentiles.
 *
 * spate cases: a producer thread fills a real ring with 64-byte or 1 KiB
 * records in 64 KiB batches, and a persister takes whole batches from it
 * (spate_ring_peek_batches, zero copy, up to --group-mib at a time), appends
 * them to a shard log, group-commits per durability policy and releases
 * them, as the engine does. `always` reports the ack latency: a batch's
 * commit (its ring timestamp) to its fdatasync done, per group (the oldest
 * batch of the group). always_10pct paces the producer at 10% of what the
 * saturated 64-byte `always` case moved, and compares its ack p99 with
 * fdatasync_bare's p99 (target <= 2x). log_only (none, 64 B and 1 KiB):
 * the log alone, no producer thread (log_only_case()). Ratios are spate bytes/s (frames:
 * 16-byte header + batch) over raw_prealloc (and fio_prealloc) of the same
 * run; the top-level medians are over the none and interval cases (the
 * issue's target: >= 0.85 of fio on a preallocated file).
 *
 * Limits: one file system (the --dir given, default /var/tmp); a VM's
 * virtio disk may acknowledge fdatasync before stable media; the producer
 * and the persister need the CPU that raw does not, so on a loaded 2-core
 * machine the spate cases lose more than raw does.
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
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "spate/hist.h"
#include "spate/log.h"

#define PERSIST_SPANS 1024

struct persist_case {
	const char *impl;
	const char *name; /* JSON "case" */
	const char *durability;
	uint32_t record_size;
	double secs;
	uint64_t records, bytes;
	struct spate_hist ack; /* always: append -> durable */
	int ok;
	double cpu;       /* persister CPU seconds per second */
	double prod_cpu;  /* producer CPU seconds per second */
	uint64_t full;    /* producer: reserve attempts that found the ring full */
	uint64_t starved; /* polls that found the ring empty */
	uint64_t groups;  /* spate: syncs that wrote something */
	double rate_bps;  /* spate: producer pacing (0: flat out) */
	char why[256];
};

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_tree(const char *dir)
{
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -EIO;
}

#define DISK_FILE_BYTES (4ull << 30)

/* Seconds not counted at the start of a disk case (ramp). */
static double ramp_of(double secs)
{
	return secs >= 2 ? 1.0 : secs / 5;
}

/*
 * Sequential 1 MiB writes, depth 16, O_DIRECT if possible, for @p secs
 * (the first ramp_of() not counted): into a file preallocated with
 * fallocate (@p prealloc, wrapping at DISK_FILE_BYTES) or a new file every
 * write extends.
 */
static int raw_case(const char *dir, double secs, int prealloc, struct persist_case *c)
{
	const size_t bs = 1u << 20;
	const unsigned depth = 16;
	char path[600];
	struct io_uring ring;
	void *buf = NULL;
	int fd, rc, direct = 1;

	memset(c, 0, sizeof(*c));
	c->impl = "raw";
	c->name = prealloc ? "raw_prealloc" : "raw_extend";
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
	if (prealloc && fallocate(fd, 0, 0, (off_t)DISK_FILE_BYTES) < 0) {
		rc = -errno;
		close(fd);
		unlink(path);
		return rc;
	}
	/* One buffer per write in flight, used in turn, as fio and the log
	 * (8 staging buffers) write: a single 1 MiB buffer written again and
	 * again stays hot in the caches, and this VM's virtio disk (the
	 * host's page cache) then ran 1.5x faster than with 16 (2.5-3.1
	 * against 1.65-2.06 GB/s, docs/bench.md session 5): a speed no
	 * writer of real data gets. */
	if (posix_memalign(&buf, 4096, bs * depth)) {
		close(fd);
		return -ENOMEM;
	}
	memset(buf, 0x5a, bs * depth);
	rc = io_uring_queue_init(depth, &ring, 0);
	if (rc < 0) {
		free(buf);
		close(fd);
		return rc;
	}
	uint64_t t0 = spate_mono_ns(), off = 0, end = t0 + (uint64_t)(secs * 1e9);
	uint64_t from = t0 + (uint64_t)(ramp_of(secs) * 1e9), t_last = from;
	unsigned inflight = 0, k = 0;
	while (spate_mono_ns() < end || inflight) {
		while (inflight < depth && spate_mono_ns() < end) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (!sqe)
				break;
			if (prealloc && off + bs > DISK_FILE_BYTES)
				off = 0;
			io_uring_prep_write(sqe, fd, (char *)buf + (size_t)(k++ % depth) * bs, (unsigned)bs, off);
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
		uint64_t now = spate_mono_ns();
		if (now >= from) {
			c->bytes += (uint64_t)cqe->res;
			t_last = now;
		}
		inflight--;
		io_uring_cqe_seen(&ring, cqe);
		rc = 0;
	}
	c->secs = (double)(t_last - from) / 1e9;
	io_uring_queue_exit(&ring);
	close(fd);
	unlink(path);
	free(buf);
	c->ok = rc == 0 && c->secs > 0;
	snprintf(c->why, sizeof(c->why), "%s, 16 buffers in turn, %s, first %.1f s not counted", direct ? "O_DIRECT" : "buffered (no O_DIRECT here)",
		 prealloc ? "preallocated file (fallocate)" : "extending writes to a new file", ramp_of(secs));
	return rc;
}

/*
 * The floor of a durable ack: write @p group bytes (O_DIRECT, one write)
 * then fdatasync, one after the other, for @p secs (at least 20 times);
 * latency of each write + fdatasync into c->ack. Into the same kind of
 * file the log writes: space preallocated with fallocate ahead of the
 * writer (256 MiB at a time, as the log does) and written once, never
 * overwritten (an O_DIRECT overwrite of written blocks needs no extent
 * conversion, so its fdatasync commits no journal: ~0.6x the latency
 * here, which no log segment ever gets); the file is cut back to empty
 * and preallocated again past 1 GiB.
 */
static int fsync_case(const char *dir, uint64_t group, double secs, struct persist_case *c)
{
	const uint64_t chunk = 256ull << 20, cap = 1ull << 30;
	char path[600];
	void *buf = NULL;
	int rc = 0;

	memset(c, 0, sizeof(*c));
	c->impl = "raw";
	c->name = "fdatasync_bare";
	c->durability = "always";
	spate_hist_init(&c->ack);
	group = (group + 4095) & ~(uint64_t)4095;
	if (group < 4096)
		group = 4096;
	if (group > (64u << 20))
		group = 64u << 20;
	snprintf(path, sizeof(path), "%s/fsync.bin", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (posix_memalign(&buf, 4096, group)) {
		close(fd);
		unlink(path);
		return -ENOMEM;
	}
	memset(buf, 0x5a, group);
	uint64_t t0 = spate_mono_ns(), end = t0 + (uint64_t)(secs * 1e9), off = 0, alloc = 0;
	while (spate_mono_ns() < end || c->records < 20) {
		if (off + group > cap) {
			/* Start again on fresh (unwritten) space; not timed. */
			if (ftruncate(fd, 0) < 0 || fdatasync(fd) < 0) {
				rc = -errno;
				break;
			}
			off = alloc = 0;
		}
		if (off + group > alloc) {
			/* As the log preallocates ahead of its writer (once
			 * per 256 MiB); not timed. */
			if (fallocate(fd, 0, (off_t)alloc, (off_t)chunk) < 0) {
				rc = -errno;
				break;
			}
			alloc += chunk;
		}
		uint64_t ta = spate_mono_ns();
		ssize_t w = pwrite(fd, buf, group, (off_t)off);
		if (w != (ssize_t)group || fdatasync(fd) < 0) {
			rc = w < 0 || w == (ssize_t)group ? -errno : -EIO;
			break;
		}
		spate_hist_record(&c->ack, spate_mono_ns() - ta);
		off += group;
		c->bytes += group;
		c->records++; /* here: syncs */
	}
	c->secs = (double)(spate_mono_ns() - t0) / 1e9;
	c->record_size = (uint32_t)group;
	close(fd);
	unlink(path);
	free(buf);
	c->ok = rc == 0;
	snprintf(c->why, sizeof(c->why),
		 "one O_DIRECT write of %" PRIu64 " bytes (the always_10pct mean group) + fdatasync, %" PRIu64
		 " times, into preallocated space written once (as a log segment)",
		 group, c->records);
	c->records = 0;
	return rc;
}

struct producer {
	struct spate_ring_writer *w;
	uint32_t size;
	unsigned per;
	_Atomic int stop;
	double cpu_s;      /* thread CPU seconds, set when it stops */
	uint64_t full;     /* reserve attempts that found the ring full */
	double rate_bps;   /* 0: flat out; else batches paced to this */
};

/* The producer: 64 KiB batches of records into the ring, as fast as the
 * persister frees space. */
static void *produce_main(void *arg)
{
	struct producer *p = arg;
	uint64_t n = 0, batches = 0, t0 = spate_mono_ns();
	double per_batch_ns = p->rate_bps > 0 ? (double)p->per * spate_ring_rec_size(p->size) * 1e9 / p->rate_bps : 0;

	/* Relaxed: a stop flag; the join orders the rest. */
	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		struct spate_ring_batch b;
		if (per_batch_ns > 0) {
			/* Paced: batch k is due at t0 + k * per_batch_ns. */
			uint64_t due = t0 + (uint64_t)(per_batch_ns * (double)batches), now = spate_mono_ns();
			if (now < due) {
				uint64_t d = due - now;
				struct timespec ts = { (time_t)(d / 1000000000u), (long)(d % 1000000000u) };
				nanosleep(&ts, NULL);
				continue;
			}
		}
		if (spate_ring_reserve(p->w, p->per * spate_ring_rec_size(p->size), &b) < 0) {
			/* Full: the persister frees a whole group at once, so
			 * nap instead of spinning (on 2 cores a spinning
			 * producer delays the persister's wake-ups, and with
			 * them the disk). */
			if (++p->full % 64 == 0) {
				struct timespec ts = { 0, 20000 };
				nanosleep(&ts, NULL);
			} else {
				spate_cpu_relax();
			}
			continue;
		}
		for (unsigned i = 0; i < p->per; i++) {
			uint64_t *q = spate_ring_batch_add(&b, p->size, (uint32_t)i, 0);
			q[0] = n++;
		}
		spate_ring_commit(p->w, &b, 0, NULL);
		batches++;
	}
	p->cpu_s = thread_cpu_s();
	return NULL;
}

/*
 * A producer thread fills a ring with @p size-byte records; this thread is
 * the persister: it takes whole batches from the ring (zero copy), appends
 * them to a shard log, group-commits per the durability policy, and
 * releases them, as the engine's persistence threads will.
 */
static int log_case(const char *dir, enum spate_durability d, uint32_t size, double secs,
		    uint32_t lflags, uint32_t group, double rate_bps, struct persist_case *c)
{
	static const char *names[] = { "none", "interval", "always" };
	/* The ring holds four groups: the producer fills while the persister
	 * writes. A ring the persister can sleep on, as a stream's. */
	struct spate_ring_params rp = { .capacity = 4 * group };
	struct spate_log_params lp = { .durability = d, .segment_bytes = 256u << 20, .flags = lflags };
	struct spate_log_recovery rep;
	struct spate_ring *r = NULL;
	struct spate_ring_reader *rd = NULL;
	struct spate_log *l = NULL;
	struct producer prod = { .size = size, .rate_bps = rate_bps };
	pthread_t th;
	bool started = false;
	char ldir[600];
	size_t msz = spate_ring_memsize(&rp);
	void *mem = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	c->impl = "spate";
	c->durability = names[d - SPATE_DURABILITY_NONE];
	c->name = rate_bps > 0 ? "always_10pct" : "spate";
	c->rate_bps = rate_bps;
	c->record_size = size;
	spate_hist_init(&c->ack);
	snprintf(ldir, sizeof(ldir), "%s/log-%s-%u", dir, c->durability, size);
	if (posix_memalign(&mem, 1u << 21, msz))
		return -ENOMEM;
	prod.per = (unsigned)((64u << 10) / spate_ring_rec_size(size));
	if ((rc = spate_ring_format(mem, msz, &rp)) < 0 || (rc = spate_ring_open_mem(mem, msz, &r)) < 0 ||
	    (rc = spate_ring_writer_open(r, SPATE_RING_WAIT_BUSY, &prod.w)) < 0 ||
	    (rc = spate_ring_reader_open(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BLOCK, &rd)) < 0)
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
	double cpu0 = thread_cpu_s();
	uint64_t idle = 0, last_work = 0;
	while (spate_mono_ns() < end) {
		struct spate_ring_span sp[PERSIST_SPANS];
		int n = spate_ring_peek_batches(rd, sp, PERSIST_SPANS, group);
		if (n < 0) {
			rc = n;
			break;
		}
		if (n == 0) {
			/* As the engine's persister with one shard
			 * (engine/persist.c): an `always` shard is polled for
			 * 0.3 ms after the last group (PERSIST_ALWAYS_SPIN_NS),
			 * then the thread sleeps on the ring until data comes,
			 * so an ack pays the wake-ups it pays there. */
			idle++;
			if (d == SPATE_DURABILITY_ALWAYS && spate_mono_ns() - last_work < 300000) {
				spate_cpu_relax();
				continue;
			}
			rc = spate_ring_reader_wait(rd, 1000000);
			if (rc == -ETIMEDOUT)
				rc = 0;
			if (rc < 0)
				break;
			continue;
		}
		uint64_t durable, recs = 0, oldest = UINT64_MAX;
		for (int i = 0; i < n && rc >= 0; i++) {
			const struct spate_ring_bhdr *bh = sp[i].hdr;
			if (bh->ts < oldest)
				oldest = bh->ts;
			rc = spate_log_append(l, sp[i].hdr, sp[i].len);
			recs += sp[i].count;
			c->bytes += sp[i].len + 16u;
		}
		if (rc == 0)
			rc = spate_log_sync(l, &durable);
		if (rc < 0)
			break;
		if (d == SPATE_DURABILITY_ALWAYS) {
			/* The ack: the group's oldest batch was committed to the
			 * ring at oldest (CLOCK_REALTIME); now it is durable. */
			uint64_t now = spate_now_ns();
			spate_hist_record(&c->ack, now > oldest ? now - oldest : 0);
		}
		c->groups++;
		c->records += recs;
		/* Written straight from the ring; now the space can be reused. */
		spate_ring_release(rd, (unsigned)recs);
		last_work = spate_mono_ns();
	}
	/* O_DIRECT: the last write may still be in flight; a sync with
	 * nothing new appended completes it, inside the timed window. */
	if (rc >= 0)
		rc = spate_log_sync(l, NULL);
	c->secs = (double)(spate_mono_ns() - t0) / 1e9;
	c->cpu = (thread_cpu_s() - cpu0) / c->secs;
	c->starved = idle;
	atomic_store_explicit(&prod.stop, 1, memory_order_relaxed);
	pthread_join(th, NULL);
	started = false;
	c->prod_cpu = prod.cpu_s / c->secs;
	c->full = prod.full;
	if (rc >= 0)
		rc = spate_log_close(l);
	else
		spate_log_close(l);
	l = NULL;
	c->ok = rc >= 0;
	snprintf(c->why, sizeof(c->why), "%s", rep.message);
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

/*
 * The log alone: no producer thread. One group of @p size-byte records in
 * 64 KiB batches is built once through a real ring and copied out; then
 * this thread appends it again and again (each batch's base_seq set to the
 * log's next), syncing after each group, for @p secs. What the log and the
 * disk do when no other thread needs the CPU (on a loaded shared machine
 * the producer/persister pair is scheduled, not the log, measured).
 */
static int log_only_case(const char *dir, enum spate_durability d, uint32_t size, double secs, uint32_t lflags,
			 uint32_t group, struct persist_case *c)
{
	static const char *names[] = { "none", "interval", "always" };
	struct spate_ring_params rp = { .capacity = 2 * group, .flags = SPATE_RING_F_NO_BLOCKING };
	struct spate_log_params lp = { .durability = d, .segment_bytes = 256u << 20, .flags = lflags };
	struct spate_log_recovery rep;
	struct spate_ring *r = NULL;
	struct spate_ring_writer *w = NULL;
	struct spate_ring_reader *rd = NULL;
	struct spate_log *l = NULL;
	struct spate_ring_span sp[PERSIST_SPANS];
	uint8_t *gbuf = NULL;
	uint32_t off[PERSIST_SPANS], len[PERSIST_SPANS], cnt[PERSIST_SPANS];
	char ldir[600];
	size_t msz = spate_ring_memsize(&rp);
	void *mem = NULL;
	int rc, nb = 0;

	memset(c, 0, sizeof(*c));
	c->impl = "spate";
	c->name = "log_only";
	c->durability = names[d - SPATE_DURABILITY_NONE];
	c->record_size = size;
	spate_hist_init(&c->ack);
	snprintf(ldir, sizeof(ldir), "%s/logonly-%s-%u", dir, c->durability, size);
	if (posix_memalign(&mem, 1u << 21, msz) || !(gbuf = malloc(group + (64u << 10)))) {
		free(mem);
		return -ENOMEM;
	}
	unsigned per = (unsigned)((64u << 10) / spate_ring_rec_size(size));
	if ((rc = spate_ring_format(mem, msz, &rp)) < 0 || (rc = spate_ring_open_mem(mem, msz, &r)) < 0 ||
	    (rc = spate_ring_writer_open(r, SPATE_RING_WAIT_BUSY, &w)) < 0 ||
	    (rc = spate_ring_reader_open(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_BUSY, &rd)) < 0)
		goto out;
	uint64_t n = 0, used = 0;
	while (used + (64u << 10) <= group && nb < PERSIST_SPANS) {
		struct spate_ring_batch b;
		if ((rc = spate_ring_reserve(w, per * spate_ring_rec_size(size), &b)) < 0)
			goto out;
		for (unsigned i = 0; i < per; i++) {
			uint64_t *q = spate_ring_batch_add(&b, size, (uint32_t)i, 0);
			q[0] = n++;
		}
		spate_ring_commit(w, &b, 0, NULL);
		int k = spate_ring_peek_batches(rd, sp, 1, UINT64_MAX);
		if (k != 1) {
			rc = k < 0 ? k : -EIO;
			goto out;
		}
		memcpy(gbuf + used, sp[0].hdr, sp[0].len);
		off[nb] = (uint32_t)used;
		len[nb] = sp[0].len;
		cnt[nb] = sp[0].count;
		used += (sp[0].len + 7u) & ~7u;
		nb++;
		spate_ring_release(rd, sp[0].count);
	}
	mkdir(ldir, 0700);
	if ((rc = spate_log_open(ldir, &lp, &l, &rep)) < 0)
		goto out;
	uint64_t t0 = spate_mono_ns(), end = t0 + (uint64_t)(secs * 1e9), seq = 0;
	double cpu0 = thread_cpu_s();
	while (spate_mono_ns() < end && rc >= 0) {
		for (int i = 0; i < nb && rc >= 0; i++) {
			struct spate_ring_bhdr *bh = (struct spate_ring_bhdr *)(void *)(gbuf + off[i]);
			bh->base_seq = seq;
			bh->ts = spate_now_ns();
			rc = spate_log_append(l, bh, len[i]);
			seq += cnt[i];
			c->records += cnt[i];
			c->bytes += len[i] + 16u;
		}
		uint64_t durable;
		if (rc >= 0)
			rc = spate_log_sync(l, &durable);
		c->groups++;
	}
	if (rc >= 0)
		rc = spate_log_sync(l, NULL);
	c->secs = (double)(spate_mono_ns() - t0) / 1e9;
	c->cpu = (thread_cpu_s() - cpu0) / c->secs;
	if (rc >= 0)
		rc = spate_log_close(l);
	else
		spate_log_close(l);
	l = NULL;
	c->ok = rc >= 0;
	snprintf(c->why, sizeof(c->why), "no producer thread: one prepared group appended again and again (%.100s)", rep.message);
out:
	if (rc < 0)
		snprintf(c->why, sizeof(c->why), "%s", strerror(-rc));
	spate_log_close(l);
	spate_ring_reader_close(rd);
	spate_ring_writer_close(w);
	spate_ring_close(r);
	free(mem);
	free(gbuf);
	rm_tree(ldir);
	return rc < 0 ? rc : 0;
}

/*
 * fio, when installed: the same sequential O_DIRECT 1 MiB writes at depth 16
 * through its io_uring engine, on a file it lays out first
 * (--fallocate=native, 4 GiB, wrapping), --ramp_time: the first ramp_of()
 * seconds not counted. @return 0, -ENOENT (no fio), -EIO.
 */
static int fio_case(const char *dir, double secs, struct persist_case *c)
{
	char cmd[1400], path[600];
	static char out[1 << 20];

	memset(c, 0, sizeof(*c));
	c->impl = "fio";
	c->name = "fio_prealloc";
	c->durability = "none";
	spate_hist_init(&c->ack);
	if (system("command -v fio >/dev/null 2>&1") != 0) {
		snprintf(c->why, sizeof(c->why), "fio not installed");
		return -ENOENT;
	}
	unsigned ramp = (unsigned)(ramp_of(secs) * 1000), run = (unsigned)(secs * 1000) - ramp;
	if (run < 50)
		run = 50;
	snprintf(path, sizeof(path), "%s/fio.bin", dir);
	snprintf(cmd, sizeof(cmd),
		 "fio --name=spate-raw --filename='%s' --ioengine=io_uring --direct=1 --rw=write "
		 "--bs=1M --iodepth=16 --size=%llu --fallocate=native --ramp_time=%ums --runtime=%ums "
		 "--time_based --output-format=json 2>/dev/null",
		 path, (unsigned long long)DISK_FILE_BYTES, ramp, run);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -errno;
	size_t n = fread(out, 1, sizeof(out) - 1, f);
	int st = pclose(f);
	unlink(path);
	out[n] = '\0';
	/* fio may print notes before the JSON object. */
	char *js = strchr(out, '{');
	json_object *root = js ? json_tokener_parse(js) : NULL, *jobs, *job, *w, *v;
	int rc = -EIO;
	if (st == 0 && root && json_object_object_get_ex(root, "jobs", &jobs) &&
	    json_object_array_length(jobs) > 0 && (job = json_object_array_get_idx(jobs, 0)) &&
	    json_object_object_get_ex(job, "write", &w) && json_object_object_get_ex(w, "io_bytes", &v)) {
		c->bytes = (uint64_t)json_object_get_int64(v);
		if (json_object_object_get_ex(w, "runtime", &v))
			c->secs = (double)json_object_get_int64(v) / 1e3;
		rc = c->secs > 0 && c->bytes ? 0 : -EIO;
	}
	json_object_put(root);
	c->ok = rc == 0;
	snprintf(c->why, sizeof(c->why), "%s",
		 rc == 0 ? "fio io_uring O_DIRECT 1 MiB depth 16, file laid out first (fallocate), ramp not counted"
			 : "fio failed or printed no result");
	return rc;
}

static double case_bps(const struct persist_case *k)
{
	return k->secs > 0 ? (double)k->bytes / k->secs : 0;
}

static void case_json(json_object *arr, const struct persist_case *k, double raw_bps, double fio_bps)
{
	json_object *o = json_object_new_object();
	double bps = case_bps(k);
	int spate = !strcmp(k->impl, "spate");

	json_object_object_add(o, "impl", json_object_new_string(k->impl));
	json_object_object_add(o, "case", json_object_new_string(k->name));
	json_object_object_add(o, "durability", json_object_new_string(k->durability));
	json_object_object_add(o, "record_size", json_object_new_int((int)k->record_size));
	json_object_object_add(o, "seconds", json_object_new_double(k->secs));
	json_object_object_add(o, "records_per_sec", json_object_new_double(k->secs > 0 ? (double)k->records / k->secs : 0));
	json_object_object_add(o, "bytes_per_sec", json_object_new_double(bps));
	if (spate || !strcmp(k->name, "raw_extend") || !strcmp(k->name, "fio_prealloc")) {
		json_object_object_add(o, "ratio_to_raw", json_object_new_double(raw_bps > 0 ? bps / raw_bps : 0));
		if (fio_bps > 0)
			json_object_object_add(o, "ratio_to_fio", json_object_new_double(bps / fio_bps));
	}
	if (spate_hist_count(&k->ack)) {
		json_object_object_add(o, "ack_p50_ns", json_object_new_int64((int64_t)spate_hist_percentile(&k->ack, 50)));
		json_object_object_add(o, "ack_p99_ns", json_object_new_int64((int64_t)spate_hist_percentile(&k->ack, 99)));
		json_object_object_add(o, "ack_samples", json_object_new_int64((int64_t)spate_hist_count(&k->ack)));
	}
	if (spate) {
		json_object_object_add(o, "groups", json_object_new_int64((int64_t)k->groups));
		json_object_object_add(o, "mean_group_bytes",
				       json_object_new_double(k->groups ? (double)k->bytes / (double)k->groups : 0));
		if (k->rate_bps > 0)
			json_object_object_add(o, "offered_bytes_per_sec", json_object_new_double(k->rate_bps));
		json_object_object_add(o, "persister_cpu", json_object_new_double(k->cpu));
		json_object_object_add(o, "ring_empty_polls", json_object_new_int64((int64_t)k->starved));
		json_object_object_add(o, "producer_cpu", json_object_new_double(k->prod_cpu));
		json_object_object_add(o, "ring_full_polls", json_object_new_int64((int64_t)k->full));
	}
	json_object_object_add(o, "note", json_object_new_string(k->why));
	json_object_array_add(arr, o);
}

int spate_bench_persist_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", required_argument, 0, 'd' },  { "seconds", required_argument, 0, 's' },
		{ "json", no_argument, 0, 'j' },       { "buffered", no_argument, 0, 'b' },
		{ "no-fio", no_argument, 0, 'F' },     { "group-mib", required_argument, 0, 'g' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *base = "/var/tmp";
	double secs = 6;
	int json = 0, c, use_fio = 1;
	uint32_t lflags = 0, group = 4;
	char dir[512];

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'd')
			base = optarg;
		else if (c == 's')
			secs = atof(optarg);
		else if (c == 'j')
			json = 1;
		else if (c == 'b')
			lflags |= SPATE_LOG_F_BUFFERED;
		else if (c == 'F')
			use_fio = 0;
		else if (c == 'g')
			group = (uint32_t)atoi(optarg);
		else {
			printf("usage: spate bench persist [--dir DIR] [--seconds S per case (6; the disk cases\n"
			       "                           do not count the first second)] [--buffered]\n"
			       "                           [--group-mib N (4)] [--no-fio] [--json]\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (!(secs > 0))
		secs = 6;
	if (group < 1 || group > 64)
		group = 4;
	group <<= 20;
	snprintf(dir, sizeof(dir), "%s/spate-bench-persist-XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "spate bench persist: %s: %s\n", base, strerror(errno));
		return -errno;
	}
	double rtt = spate_bench_c2c_rtt_ns(-1, -1);
	/* raw_prealloc first and last (the disk drifts on a shared VM: the
	 * spate cases are compared with the mean of both), raw_extend, fio,
	 * the log, always at 10% load, the bare fdatasync of its group. */
	struct persist_case cases[20];
	unsigned n = 0, i_fio = UINT32_MAX, i_always64 = UINT32_MAX, i_10 = UINT32_MAX, i_bare = UINT32_MAX;
	int rc = raw_case(dir, secs, 1, &cases[n++]);
	if (rc >= 0)
		rc = raw_case(dir, secs, 0, &cases[n++]);
	if (rc >= 0 && use_fio && fio_case(dir, secs, &cases[n]) == 0)
		i_fio = n++;
	static const uint32_t sizes[] = { 64, 1024 };
	for (unsigned s = 0; s < 2 && rc >= 0; s++)
		for (int d = SPATE_DURABILITY_NONE; d <= SPATE_DURABILITY_ALWAYS && rc >= 0; d++) {
			if (s == 0 && d == SPATE_DURABILITY_ALWAYS)
				i_always64 = n;
			rc = log_case(dir, (enum spate_durability)d, sizes[s], secs, lflags, group, 0, &cases[n++]);
		}
	for (unsigned s = 0; s < 2 && rc >= 0; s++)
		rc = log_only_case(dir, SPATE_DURABILITY_NONE, sizes[s], secs, lflags, group, &cases[n++]);
	if (rc >= 0 && i_always64 != UINT32_MAX && case_bps(&cases[i_always64]) > 0) {
		i_10 = n;
		rc = log_case(dir, SPATE_DURABILITY_ALWAYS, 64, secs, lflags, group, case_bps(&cases[i_always64]) / 10,
			      &cases[n++]);
	}
	if (rc >= 0 && i_10 != UINT32_MAX && cases[i_10].groups) {
		i_bare = n;
		rc = fsync_case(dir, cases[i_10].bytes / cases[i_10].groups, secs < 2 ? secs : 2, &cases[n++]);
	}
	if (rc >= 0)
		rc = raw_case(dir, secs, 1, &cases[n++]);
	rm_tree(dir);
	if (rc < 0) {
		fprintf(stderr, "spate bench persist: %s\n", strerror(-rc));
		return rc;
	}
	double raw_bps = (case_bps(&cases[0]) + case_bps(&cases[n - 1])) / 2;
	double fio_bps = i_fio != UINT32_MAX ? case_bps(&cases[i_fio]) : 0;
	double ratios[8], ratios_all[8], rf[8];
	unsigned nr = 0, na = 0, nf = 0;
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(cases[i].impl, "spate") || i == i_10)
			continue;
		ratios_all[na++] = case_bps(&cases[i]) / raw_bps;
		if (strcmp(cases[i].durability, "always")) {
			ratios[nr++] = case_bps(&cases[i]) / raw_bps;
			if (fio_bps > 0)
				rf[nf++] = case_bps(&cases[i]) / fio_bps;
		}
	}
	double med = spate_bench_median(ratios, nr), med_all = spate_bench_median(ratios_all, na);
	double med_fio = spate_bench_median(rf, nf);
	double p99_10 = i_10 != UINT32_MAX ? spate_hist_percentile(&cases[i_10].ack, 99) : 0;
	double p99_bare = i_bare != UINT32_MAX ? spate_hist_percentile(&cases[i_bare].ack, 99) : 0;
	if (!json) {
		printf("spate bench persist: %s, %.2f s per case; raw = mean of raw_prealloc first and last (%.0f MB/s); "
		       "cross-core round trip %.0f ns\n",
		       base, secs, raw_bps / 1e6, rtt);
		printf("%-14s %-9s %6s %10s %10s %8s %8s %10s %10s  %s\n", "case", "durable", "size", "Mrec/s", "MB/s",
		       "vs raw", "vs fio", "ack p50", "ack p99", "note");
		for (unsigned i = 0; i < n; i++) {
			const struct persist_case *k = &cases[i];
			double bps = case_bps(k);
			printf("%-14s %-9s %6u %10.2f %10.1f %7.2fx", k->name, k->durability, k->record_size,
			       k->secs > 0 ? (double)k->records / k->secs / 1e6 : 0, bps / 1e6, bps / raw_bps);
			if (fio_bps > 0)
				printf(" %7.2fx", bps / fio_bps);
			else
				printf(" %8s", "");
			if (spate_hist_count(&k->ack))
				printf(" %8.1fus %8.1fus", spate_hist_percentile(&k->ack, 50) / 1e3,
				       spate_hist_percentile(&k->ack, 99) / 1e3);
			else
				printf(" %10s %10s", "", "");
			printf("  %s\n", k->why);
		}
		printf("median ratio (none/interval): %.2fx raw_prealloc, %.2fx fio_prealloc (target 0.85x); all policies %.2fx raw\n",
		       med, med_fio, med_all);
		if (p99_bare > 0)
			printf("always at 10%% load: ack p99 %.1f us = %.2fx the bare write+fdatasync p99 %.1f us (target <= 2x)\n",
			       p99_10 / 1e3, p99_10 / p99_bare, p99_bare / 1e3);
		return 0;
	}
	json_object *root = json_object_new_object(), *arr = json_object_new_array();
	for (unsigned i = 0; i < n; i++)
		case_json(arr, &cases[i], raw_bps, fio_bps);
	json_object_object_add(root, "dir", json_object_new_string(base));
	json_object_object_add(root, "seconds_per_case", json_object_new_double(secs));
	json_object_object_add(root, "ramp_seconds_not_counted", json_object_new_double(ramp_of(secs)));
	json_object_object_add(root, "cross_core_rtt_ns", json_object_new_double(rtt));
	json_object_object_add(root, "baseline", json_object_new_string("raw_prealloc (mean of first and last)"));
	json_object_object_add(root, "raw_bytes_per_sec", json_object_new_double(raw_bps));
	if (fio_bps > 0) {
		json_object_object_add(root, "fio_bytes_per_sec", json_object_new_double(fio_bps));
		json_object_object_add(root, "median_ratio_to_fio", json_object_new_double(med_fio));
	}
	json_object_object_add(root, "median_ratio_to_raw", json_object_new_double(med));
	json_object_object_add(root, "median_ratio_to_raw_all", json_object_new_double(med_all));
	json_object_object_add(root, "target_ratio", json_object_new_double(0.85));
	if (p99_bare > 0) {
		json_object_object_add(root, "always_10pct_ack_p99_ns", json_object_new_double(p99_10));
		json_object_object_add(root, "fdatasync_bare_p99_ns", json_object_new_double(p99_bare));
		json_object_object_add(root, "always_10pct_vs_bare_p99", json_object_new_double(p99_10 / p99_bare));
		json_object_object_add(root, "target_always_vs_bare", json_object_new_double(2.0));
	}
	json_object_object_add(root, "cases", arr);
	printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	json_object_put(root);
	return 0;
}
