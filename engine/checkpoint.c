/* SPDX-License-Identifier: MIT */
/*
 * checkpoint.c - where consumers are: the stream region's shared table, the
 * checkpoint files in state_dir, and where a restart resumes. One place,
 * one API (engine/checkpoint.h, spate/checkpoint.h) that the engine, the
 * consumer and the persister call.
 *
 * The shared table. Entries of struct spate_stream_ckpt (laid out by
 * stream.c at the region header's ckpt_off), one per consumer, each with
 * the next sequence number per shard. Consumers store it after every batch
 * (or every checkpoint_interval); any process may read it.
 * Entries are claimed, never freed. A consumer name probes the
 * table from a start index given by its hash (linear probing, the same
 * sequence in every process). Entry states go FREE -> FILLING (CAS, one
 * winner) -> USED (release, once the name and next_seq[] are written).
 * Openers of one name walk the same probe sequence; at the first entry that
 * is FREE for them exactly one wins the CAS and the others wait for USED and
 * find their name there, so concurrent opens yield one entry, across
 * processes too, with no lock.
 *
 * An opener that dies in the middle of a claim (a window of a few stores)
 * leaves an entry FILLING; openers of names that probe through it get
 * -EAGAIN after a second.
 *
 * The files. <state_dir>/<stream>.<consumer>.ckpt (keyed by both: a
 * consumer renamed to another stream never inherits a position). The
 * engine's control thread copies changed positions there every 100 ms (or
 * checkpoint_interval) and at stop: written to "<file>.tmp", an io_uring
 * write linked to its fdatasync, a rename, a directory fsync, so a crash
 * leaves the old file or the new one. Each holds the stream's incarnation
 * and, per shard, "<shard> <next> <stream's first> <stream's next>".
 *
 * Restart. A checkpoint is bound to the stream incarnation it was taken in
 * (a random id in the region header, new at every creation):
 *   - same incarnation: it wins over the consumer's starting position;
 *   - another incarnation of a persisted stream: the log kept the
 *     numbering, so it still holds; past the log's end (a machine crash
 *     took the log's tail) it resumes at the end, loudly;
 *   - another incarnation of a memory-only stream: numbering restarted, so
 *     the checkpoint would skip every new record below it; reported
 *     (consumer, stream, both incarnations) and resolved by the starting
 *     position, never by skipping.
 * A file of earlier versions (<consumer>.ckpt, no incarnation) is read
 * when there is no other, if it names the stream, and trusted only where
 * the stream still reaches it.
 *
 * Memory orders (each pair is also named at its code):
 *   - entry state USED: release store after filling / acquire loads in
 *     spate_stream_ckpt_open (the name and next_seq[] initial values are
 *     visible).
 *   - next_seq[i]: release store in spate_stream_ckpt_set / acquire load in
 *     spate_stream_ckpt_get (what the consumer did before checkpointing
 *     happens before a monitor that reads the checkpoint).
 */
#include "spate_config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <liburing.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/checkpoint.h"
#include "engine/stream_pvt.h"
#include "spate/config.h"
#include "spate/slog.h"
#include "spate/stream.h"

/* How long spate_stream_ckpt_open waits for an entry another opener is filling. */
#define CKPT_FILL_WAIT_NS 1000000000ull

/* ------------------------------------------------------------------------ */
/* The shared table                                                         */
/* ------------------------------------------------------------------------ */

static struct spate_stream_ckpt *ckpt_entry(const struct spate_stream_table *t, uint32_t i)
{
	return (struct spate_stream_ckpt *)(void *)(t->base + i * t->stride);
}

int spate_stream_ckpt_open(struct spate_stream *s, const char *consumer,
			   struct spate_stream_ckpt **out)
{
	struct spate_stream_table tb;
	int len = spate_stream_name_len(consumer, 1);

	if (!s || !out || len < 0)
		return -EINVAL;
	spate_stream_table_of(s, &tb);
	uint32_t start = spate_shard_of_hash(spate_key_hash(consumer, (size_t)len), tb.entries);

	for (uint32_t k = 0; k < tb.entries; k++) {
		struct spate_stream_ckpt *c = ckpt_entry(&tb, (start + k) % tb.entries);
		uint64_t deadline = 0;
		unsigned spins = 0;

		for (;;) {
			/* Acquire: pairs with the release store of USED below (by
			 * whoever claimed the entry): its name and initial
			 * next_seq[] are visible. */
			uint32_t st = atomic_load_explicit(&c->state, memory_order_acquire);

			if (st == SPATE_STREAM_CKPT_USED) {
				if (!memchr(c->consumer, '\0', sizeof(c->consumer)))
					return -EBADMSG;
				if (strcmp(c->consumer, consumer) != 0)
					break; /* someone else's: probe on */
				*out = c;
				return 0;
			}
			if (st == SPATE_STREAM_CKPT_FREE) {
				uint32_t expect = SPATE_STREAM_CKPT_FREE;
				/* Relaxed: the CAS only elects the one filler; the
				 * entry's contents are published by the release
				 * store of USED. On failure, re-read the state. */
				if (!atomic_compare_exchange_strong_explicit(
					    &c->state, &expect, SPATE_STREAM_CKPT_FILLING,
					    memory_order_relaxed, memory_order_relaxed))
					continue;
				memset(c->consumer, 0, sizeof(c->consumer));
				memcpy(c->consumer, consumer, (size_t)len);
				c->reserved = 0;
				for (uint32_t i = 0; i < tb.shards; i++)
					/* Relaxed: published by the release below. */
					atomic_store_explicit(&c->next_seq[i], UINT64_MAX,
							      memory_order_relaxed);
				/* Release: pairs with the acquire load of state by
				 * every other opener above. */
				atomic_store_explicit(&c->state, SPATE_STREAM_CKPT_USED,
						      memory_order_release);
				*out = c;
				return 0;
			}
			if (st != SPATE_STREAM_CKPT_FILLING)
				return -EBADMSG;
			/* Another opener is filling it, perhaps for our name:
			 * wait for USED (a few stores away, unless it died). */
			if (++spins < 1024) {
				spate_cpu_relax();
				continue;
			}
			if (!deadline)
				deadline = spate_mono_ns() + CKPT_FILL_WAIT_NS;
			else if (spate_mono_ns() > deadline)
				return -EAGAIN;
			sched_yield();
		}
	}
	return -ENOSPC;
}

void spate_stream_ckpt_set(struct spate_stream_ckpt *c, uint32_t shard, uint64_t next_seq)
{
	/* Release: pairs with the acquire load in spate_stream_ckpt_get(). */
	atomic_store_explicit(&c->next_seq[shard], next_seq, memory_order_release);
}

uint64_t spate_stream_ckpt_get(const struct spate_stream_ckpt *c, uint32_t shard)
{
	/* Acquire: pairs with the release store in spate_stream_ckpt_set(). */
	return atomic_load_explicit(&c->next_seq[shard], memory_order_acquire);
}

/* ------------------------------------------------------------------------ */
/* Checkpoint files                                                         */
/* ------------------------------------------------------------------------ */

/* Write and fdatasync @p fd's whole content through a one-shot io_uring
 * (write linked to fdatasync, one submission); pwrite + fdatasync where
 * io_uring is refused. */
static int write_sync(int fd, const void *buf, size_t len)
{
	struct io_uring ring;
	int rc = io_uring_queue_init(2, &ring, 0);

	if (rc == 0) {
		struct io_uring_sqe *w = io_uring_get_sqe(&ring);
		io_uring_prep_write(w, fd, buf, (unsigned)len, 0);
		io_uring_sqe_set_flags(w, IOSQE_IO_LINK);
		w->user_data = 1;
		struct io_uring_sqe *f = io_uring_get_sqe(&ring);
		io_uring_prep_fsync(f, fd, IORING_FSYNC_DATASYNC);
		f->user_data = 2;
		rc = io_uring_submit_and_wait(&ring, 2);
		for (int k = 0; rc >= 0 && k < 2; k++) {
			struct io_uring_cqe *cqe;
			rc = io_uring_wait_cqe(&ring, &cqe);
			if (rc < 0)
				break;
			if (cqe->res < 0)
				rc = cqe->res;
			else if (cqe->user_data == 1 && (size_t)cqe->res != len)
				rc = -EIO; /* a short write of a few hundred bytes: the disk is full */
			io_uring_cqe_seen(&ring, cqe);
		}
		io_uring_queue_exit(&ring);
		return rc < 0 ? rc : 0;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t n = pwrite(fd, (const char *)buf + off, len - off, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
	}
	return fdatasync(fd) < 0 ? -errno : 0;
}

int spate_ckpt_write_file(const char *path, const void *buf, size_t len)
{
	char tmp[SPATE_CONFIG_PATH_MAX + 8], dir[SPATE_CONFIG_PATH_MAX];
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) ||
	    snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = write_sync(fd, buf, len);
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	/* The rename itself is durable once the directory is. */
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	rc = fsync(dfd) < 0 ? -errno : 0;
	close(dfd);
	return rc;
}

/* <state_dir>/<stream>.<consumer>.ckpt (stream names have no dot, so the
 * name is unambiguous); with @p stream NULL the file of earlier versions,
 * <state_dir>/<consumer>.ckpt. */
static int ckpt_path(const char *state_dir, const char *stream, const char *consumer, char *buf,
		     size_t len)
{
	int n = stream ? snprintf(buf, len, "%s/%s.%s.ckpt", state_dir, stream, consumer)
		       : snprintf(buf, len, "%s/%s.ckpt", state_dir, consumer);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* What a checkpoint file holds. */
struct ckpt_file {
	uint64_t incarnation;  /* of the stream it was taken in; 0: unknown (earlier version) */
	char stream[SPATE_STREAM_NAME_MAX + 1]; /* from the comment line ("" if absent) */
	uint64_t *next;        /* [shards], UINT64_MAX: none */
};

/* Parse @p path: "incarnation <hex>" and "<shard> <next> [<first> <end>]"
 * lines, '#' comments (the first names consumer and stream). 1 = read,
 * 0 = absent, <0 = error. */
static int ckpt_read(const char *path, uint32_t shards, struct ckpt_file *cf)
{
	char line[256];
	FILE *f;

	cf->incarnation = 0;
	cf->stream[0] = '\0';
	for (uint32_t i = 0; i < shards; i++)
		cf->next[i] = UINT64_MAX;
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned shard;
		unsigned long long seq, inc;
		const char *st;
		if (line[0] == '#') {
			if ((st = strstr(line, ", stream ")) != NULL)
				sscanf(st + 9, "%40[A-Za-z0-9_-]", cf->stream);
			continue;
		}
		if (sscanf(line, "incarnation %llx", &inc) == 1)
			cf->incarnation = inc;
		else if (sscanf(line, "%u %llu", &shard, &seq) == 2 && shard < shards)
			cf->next[shard] = seq;
	}
	fclose(f);
	return 1;
}

/* The stream's next sequence number on @p shard (what a new record gets). */
static uint64_t stream_end(const struct spate_stream *s, uint32_t shard)
{
	return spate_ring_tail_seq(spate_stream_ring(s, shard));
}

int spate_ckpt_resume(const char *state_dir, const struct spate_stream *s, const char *consumer,
		      const uint64_t *log_end, uint64_t *resume)
{
	const uint32_t shards = spate_stream_shards(s);
	const uint64_t inc = spate_stream_incarnation(s);
	const char *name = spate_stream_name(s);
	char path[SPATE_CONFIG_PATH_MAX + 128];
	struct ckpt_file cf = { .next = resume };
	bool legacy = false;
	int rc = ckpt_path(state_dir, name, consumer, path, sizeof(path));

	if (rc == 0)
		rc = ckpt_read(path, shards, &cf);
	if (rc == 0) { /* none: the file of earlier versions, if it is this stream's */
		rc = ckpt_path(state_dir, NULL, consumer, path, sizeof(path));
		if (rc == 0)
			rc = ckpt_read(path, shards, &cf);
		if (rc > 0 && strcmp(cf.stream, name) != 0)
			for (uint32_t i = 0; i < shards; i++)
				resume[i] = UINT64_MAX;
		legacy = rc > 0;
	}
	if (rc <= 0)
		return rc;
	for (uint32_t i = 0; i < shards; i++) {
		const bool logged = log_end && log_end[i] != UINT64_MAX;
		if (resume[i] == UINT64_MAX)
			continue;
		if (!legacy && cf.incarnation != inc && !logged) {
			/* A memory-only stream recreated: it numbers from its
			 * first sequence again, and the old checkpoint would
			 * skip every new record below it. */
			spate_slog(SPATE_LOG_WARN, NULL,
				   "consumer %s: its checkpoint of %s/%u (%" PRIu64 ") was taken in "
				   "incarnation %016" PRIx64 " of the stream, which is now incarnation "
				   "%016" PRIx64 " (recreated, numbering from %" PRIu64
				   "): resuming at the consumer's starting position",
				   consumer, name, i, resume[i], cf.incarnation, inc,
				   spate_stream_dur(s, i)->first_seq);
			resume[i] = UINT64_MAX;
			continue;
		}
		if (legacy && !logged && resume[i] > stream_end(s, i)) {
			spate_slog(SPATE_LOG_WARN, NULL,
				   "consumer %s: its checkpoint of %s/%u (%" PRIu64 ", from %s, which "
				   "names no incarnation) is past the stream's end (%" PRIu64
				   "): resuming at the consumer's starting position",
				   consumer, name, i, resume[i], path, stream_end(s, i));
			resume[i] = UINT64_MAX;
			continue;
		}
		/* A persisted stream keeps its numbering across incarnations (its
		 * log's). A checkpoint past the end of the log (the machine
		 * crashed with durability none/interval: the log lost its tail
		 * but the checkpoint file survived) would skip the records that
		 * reuse those numbers: resume at the end instead, and say so. */
		if (logged && resume[i] > log_end[i]) {
			spate_slog(SPATE_LOG_WARN, NULL,
				   "consumer %s: checkpoint of %s/%u is %" PRIu64
				   " but the stream ends at %" PRIu64
				   " (records lost in a crash before they were durable): "
				   "resuming at %" PRIu64,
				   consumer, name, i, resume[i], log_end[i], log_end[i]);
			resume[i] = log_end[i];
		}
	}
	return 0;
}

int spate_ckpt_save(const char *state_dir, const struct spate_stream *s, const char *consumer,
		    const uint64_t *next)
{
	const uint32_t shards = spate_stream_shards(s);
	char path[SPATE_CONFIG_PATH_MAX + 128];
	size_t cap = 512 + (size_t)shards * 80, len;
	char *buf;
	int rc = ckpt_path(state_dir, spate_stream_name(s), consumer, path, sizeof(path));

	if (rc < 0)
		return rc;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	len = (size_t)snprintf(buf, cap,
			       "# spate checkpoints: consumer %.40s, stream %.40s; <shard> <next sequence "
			       "number> <stream's first> <stream's next>\nincarnation %016" PRIx64 "\n",
			       consumer, spate_stream_name(s), spate_stream_incarnation(s));
	for (uint32_t i = 0; i < shards; i++)
		if (next[i] != UINT64_MAX)
			len += (size_t)snprintf(buf + len, cap - len,
						"%u %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", i, next[i],
						spate_stream_dur(s, i)->first_seq, stream_end(s, i));
	rc = spate_ckpt_write_file(path, buf, len);
	free(buf);
	return rc;
}
