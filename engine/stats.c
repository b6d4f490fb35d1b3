/* SPDX-License-Identifier: MIT */
/*
 * stats.c - the counters region of a bus (layout and rules in
 * include/spate/stats.h): creation by the engine, validated attach by
 * monitors, slot lookups.
 *
 * Design. One spate_shm region per bus, `<bus>..stats`, sized exactly for
 * the engine's configuration (streams, shards, consumers, tasks, workers)
 * and replaced when an engine opens the bus again; it lives as long as the
 * engine (spate_engine_close removes it; `spate rm` removes one that a
 * crashed engine left). Every block is a whole number of 128-byte lines at
 * an offset from the header; histograms are struct spate_hist at
 * hist_stride intervals, initialised here: one per stream (fsync) and three
 * per consumer (latency, process, batch size), recorded multi-writer.
 *
 * Size. The region is populated when created (spate_shm), so it must stay
 * small whatever the shape: a histogram is ~200 KiB, a shard slot 384 B, a
 * task slot 256 B. Histograms per shard or per task would make a stream of
 * 1024 shards with 2 consumers ~1.4 GB; per stream and consumer it is
 * ~1.4 MiB of histograms plus ~0.9 MiB of slots
 * (test_stats.c, size_independent_of_shards).
 *
 * Attach copies the header once, then checks magic, version, the histogram
 * size (a monitor built with another struct spate_hist would misread the
 * counts: -EPROTO), every count against a bound and every offset + count *
 * size against the user area, without overflow. Slot indexes stored in the
 * region (histogram indexes, stream and consumer indexes) are checked again
 * at every lookup, since the writer's memory may be scribbled on after
 * attach: a bad index yields NULL, never a wild pointer.
 *
 * Run-time streams: the shape reserves stream slots and shard slots beyond
 * the configuration's (the engine's SPATE_ENGINE_RUNTIME_STREAMS_MAX and
 * _SHARDS_MAX); spate_stats_stream_claim() fills a free one while the
 * region is published, spate_stats_stream_release() empties it. The slot's
 * sequence lock (odd while it changes) lets readers skip a slot that
 * changes under them; its fields are relaxed atomics, so a reader racing
 * with a reuse reads stale or new values, never torn ones. Shard runs are
 * first fit in the writer's private map of used shard slots.
 *
 * Limits: the layout is fixed when the engine opens; a deploy does not add
 * consumers. Readers see each counter untorn, but not a snapshot of all of
 * them at one instant.
 */
#include "spate_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spate/shm.h"
#include "spate/stats.h"

/* Bounds on a region's counts: a corrupt header must not make a reader
 * loop for ever or overflow its arithmetic. */
#define STATS_MAX_STREAMS 4096u
#define STATS_MAX_SHARDS (4096u * 1024u)
#define STATS_MAX_CONSUMERS 65536u
#define STATS_MAX_TASKS (16u * 1024u * 1024u)
#define STATS_MAX_WORKERS 4096u
#define STATS_MAX_SOURCES 4096u

struct spate_stats {
	struct spate_shm *shm;
	uint8_t *base;              /* user area */
	struct spate_stats_hdr h;   /* validated copy */
	uint32_t streams_added, consumers_added, tasks_added, sups_added;
	uint8_t *shard_used;        /* writer: shard slots taken (streams' runs) */
	bool writer;
	dev_t dev;                  /* the creator's file, to unlink only its own */
	ino_t ino;
};

static uint64_t round_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

static int region_name(const char *bus, char *buf)
{
	size_t n = bus ? strlen(bus) : 0;

	if (n == 0 || n > SPATE_STATS_NAME_MAX || n + 7 > SPATE_SHM_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = bus[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return -EINVAL;
	}
	snprintf(buf, SPATE_SHM_NAME_MAX + 1, "%s..stats", bus);
	return 0;
}

/* Offsets of every block for a shape; 0 on overflow of the bounds. */
static uint64_t layout(struct spate_stats_hdr *h)
{
	uint64_t off = round_up(sizeof(*h), SPATE_STATS_LINE);

	h->hist_size = (uint32_t)sizeof(struct spate_hist);
	h->hist_stride = (uint32_t)round_up(sizeof(struct spate_hist), SPATE_STATS_LINE);
	h->n_hists = h->n_streams + 3u * h->n_consumers;
	h->streams_off = off;
	off += (uint64_t)h->n_streams * sizeof(struct spate_stats_stream);
	h->shards_off = off;
	off += (uint64_t)h->n_shards * sizeof(struct spate_stats_shard);
	h->cons_off = off;
	off += (uint64_t)h->n_consumers * sizeof(struct spate_stats_consumer);
	h->tasks_off = off;
	off += (uint64_t)h->n_tasks * sizeof(struct spate_stats_task);
	h->workers_off = off;
	off += (uint64_t)h->n_workers * sizeof(struct spate_stats_worker);
	h->hists_off = off;
	off += (uint64_t)h->n_hists * h->hist_stride;
	h->total_size = off;
	/* Addition 1: the sup area, past total_size (readers without the addition never
	 * look there). */
	h->sup_version = h->n_sup ? SPATE_STATS_SUP_VERSION : 0;
	h->sup_off = h->sup_hists_off = h->ext_size = 0;
	if (h->n_sup) {
		h->sup_off = off;
		off += (uint64_t)h->n_sup * sizeof(struct spate_stats_sup);
		h->sup_hists_off = off;
		off += 2ull * h->n_sup * h->hist_stride;
		h->ext_size = off;
	}
	/* Addition 2: the source slots, past everything else. */
	h->sources_off = 0;
	if (h->n_sources) {
		h->sources_off = off;
		off += (uint64_t)h->n_sources * sizeof(struct spate_stats_source_slot);
	}
	return off;
}

/* Check a header copy against the user area size. */
static int check_hdr(const struct spate_stats_hdr *h, uint64_t user_size)
{
	struct spate_stats_hdr want;

	if (h->hdr_size != sizeof(*h) || !memchr(h->bus, '\0', sizeof(h->bus)))
		return -EBADMSG;
	if (h->hist_size != sizeof(struct spate_hist))
		return -EPROTO;
	if (h->n_streams > STATS_MAX_STREAMS || h->n_shards > STATS_MAX_SHARDS ||
	    h->n_consumers > STATS_MAX_CONSUMERS || h->n_tasks > STATS_MAX_TASKS ||
	    h->n_workers > STATS_MAX_WORKERS)
		return -EBADMSG;
	/* Every offset is what our own layout gives for these counts: that
	 * covers alignment, order, overlap and overflow in one comparison. */
	if (h->n_sup > STATS_MAX_CONSUMERS)
		return -EBADMSG;
	memset(&want, 0, sizeof(want));
	want.n_sup = h->sup_version ? h->n_sup : 0;
	want.n_sources = h->n_sources;
	want.n_streams = h->n_streams;
	want.n_shards = h->n_shards;
	want.n_consumers = h->n_consumers;
	want.n_tasks = h->n_tasks;
	want.n_workers = h->n_workers;
	layout(&want);
	if (h->hist_stride != want.hist_stride || h->n_hists != want.n_hists ||
	    h->streams_off != want.streams_off || h->shards_off != want.shards_off ||
	    h->cons_off != want.cons_off || h->tasks_off != want.tasks_off ||
	    h->workers_off != want.workers_off || h->hists_off != want.hists_off ||
	    h->total_size != want.total_size || h->total_size > user_size)
		return -EBADMSG;
	if (h->sup_version && (h->sup_off != want.sup_off || h->sup_hists_off != want.sup_hists_off ||
			       h->ext_size != want.ext_size || h->ext_size > user_size))
		return -EBADMSG;
	if (h->n_sources > STATS_MAX_SOURCES ||
	    (h->n_sources && (h->sources_off != want.sources_off ||
			      want.sources_off + (uint64_t)h->n_sources *
						 sizeof(struct spate_stats_source_slot) > user_size)))
		return -EBADMSG;
	return 0;
}

int spate_stats_create(const char *bus, const struct spate_stats_shape *shape,
		       struct spate_stats **out)
{
	char name[SPATE_SHM_NAME_MAX + 1];
	struct spate_stats *st;
	struct spate_stats_hdr h;
	int rc;

	if (!out || !shape)
		return -EINVAL;
	*out = NULL;
	rc = region_name(bus, name);
	if (rc < 0)
		return rc;
	memset(&h, 0, sizeof(h));
	h.magic = SPATE_STATS_MAGIC;
	h.layout_version = SPATE_STATS_LAYOUT_VERSION;
	h.hdr_size = sizeof(h);
	snprintf(h.bus, sizeof(h.bus), "%s", bus);
	h.n_streams = shape->n_streams;
	h.n_shards = shape->n_shards;
	h.n_consumers = shape->n_consumers;
	h.n_tasks = shape->n_tasks;
	h.n_workers = shape->n_workers;
	h.n_sup = shape->n_sup;
	h.n_sources = shape->n_sources;
	h.engine_pid = (uint32_t)getpid();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	h.started_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	uint64_t size = layout(&h);
	if (check_hdr(&h, size) < 0)
		return -EINVAL; /* a shape beyond the bounds */
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	/* No huge pages: the region is small and read by monitors; a 2 MiB
	 * page of a hugetlbfs pool would be wasted on it. */
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_REPLACE | SPATE_SHM_F_NO_HUGE,
				    .gid = (gid_t)-1 };
	rc = spate_shm_create(name, (size_t)size, &o, &st->shm);
	if (rc < 0) {
		free(st);
		return rc;
	}
	st->base = spate_shm_user(st->shm);
	st->h = h;
	st->writer = true;
	st->shard_used = calloc(h.n_shards + 1, 1);
	if (!st->shard_used) {
		spate_shm_detach(st->shm);
		spate_stats_unlink(bus);
		free(st);
		return -ENOMEM;
	}
	struct stat sb;
	if (stat(spate_shm_path(st->shm), &sb) == 0) {
		st->dev = sb.st_dev;
		st->ino = sb.st_ino;
	}
	memcpy(st->base, &h, sizeof(h));
	for (uint64_t i = 0; i < h.n_hists; i++)
		spate_hist_init(spate_stats_hist_at(st, i));
	/* Histogram indexes: stream i's fsync is i; consumer c's three follow
	 * the streams' (spate_stats_add_consumer). */
	for (uint32_t i = 0; i < h.n_streams; i++)
		spate_stats_stream_at(st, i)->fsync_hist = i;
	for (uint32_t i = 0; i < h.n_shards; i++) {
		struct spate_stats_shard *s = spate_stats_shard_at(st, i);
		atomic_store_explicit(&s->durable_seq, UINT64_MAX, memory_order_relaxed);
	}
	for (uint32_t i = 0; i < h.n_workers; i++)
		spate_stats_worker_at(st, i)->cpu = -1;
	for (uint32_t i = 0; i < h.n_sup; i++) {
		struct spate_stats_sup *x = spate_stats_sup_at(st, i);
		x->consumer = UINT32_MAX; /* unused until spate_stats_add_sup() */
		x->init_hist = 2ull * i;
		x->invoke_hist = 2ull * i + 1;
		spate_hist_init(spate_stats_sup_hist_at(st, x->init_hist));
		spate_hist_init(spate_stats_sup_hist_at(st, x->invoke_hist));
	}
	*out = st;
	return 0;
}

/* Relaxed atomic accessors of the stream and shard slots' plain fields:
 * run-time slots are rewritten while readers copy them (sequence lock). */
#define SET32(f, v) __atomic_store_n(&(f), (v), __ATOMIC_RELAXED)
#define SET64(f, v) __atomic_store_n(&(f), (v), __ATOMIC_RELAXED)
#define GET(f) __atomic_load_n(&(f), __ATOMIC_RELAXED)

/* Copy a NUL-terminated name into a slot byte by byte (relaxed stores). */
static void name_store(char *dst, const char *src)
{
	size_t n = strlen(src), i;

	for (i = 0; i < SPATE_STATS_NAME_MAX + 1; i++)
		__atomic_store_n(&dst[i], i < n ? src[i] : '\0', __ATOMIC_RELAXED);
}

/* Write stream slot @p i: @p name, @p shards from shard slot @p first. The
 * caller has bracketed it with the sequence lock (or not published yet). */
static void stream_fill(struct spate_stats *st, uint32_t i, const char *name, uint32_t shards,
			uint32_t first, const uint64_t *tail_seq, const uint64_t *tail)
{
	struct spate_stats_stream *s = spate_stats_stream_at(st, i);

	name_store(s->name, name);
	SET32(s->shards, shards);
	SET32(s->first_shard, first);
	SET64(s->fsync_hist, (uint64_t)i);
	for (uint32_t k = 0; k < shards; k++) {
		struct spate_stats_shard *sh = spate_stats_shard_at(st, first + k);
		st->shard_used[first + k] = 1;
		SET32(sh->stream, i);
		SET32(sh->shard, k);
		SET64(sh->base_seq, tail_seq ? tail_seq[k] : 0);
		SET64(sh->base_pos, tail ? tail[k] : 0);
		/* Relaxed (all): figures for display; a reused slot starts at 0. */
		atomic_store_explicit(&sh->backpressure, 0, memory_order_relaxed);
		atomic_store_explicit(&sh->put_failed, 0, memory_order_relaxed);
		atomic_store_explicit(&sh->put_batches, 0, memory_order_relaxed);
		atomic_store_explicit(&sh->persist_bytes, 0, memory_order_relaxed);
		atomic_store_explicit(&sh->persist_writes, 0, memory_order_relaxed);
		atomic_store_explicit(&sh->persist_fsyncs, 0, memory_order_relaxed);
		atomic_store_explicit(&sh->durable_seq, UINT64_MAX, memory_order_relaxed);
	}
	/* Relaxed: inside the sequence lock (or before publish). */
	atomic_store_explicit(&s->live, 1, memory_order_relaxed);
}

int spate_stats_add_stream(struct spate_stats *st, const char *name, uint32_t shards,
			   const uint64_t *tail_seq, const uint64_t *tail)
{
	uint32_t first = 0;

	if (!st || !st->writer || !name || strlen(name) > SPATE_STATS_NAME_MAX)
		return -EINVAL;
	if (st->streams_added >= st->h.n_streams)
		return -ENOSPC;
	for (uint32_t i = 0; i < st->streams_added; i++)
		first += spate_stats_stream_at(st, i)->shards;
	if ((uint64_t)first + shards > st->h.n_shards)
		return -ENOSPC;
	stream_fill(st, st->streams_added, name, shards, first, tail_seq, tail);
	/* Relaxed: before publish (whose release covers it). */
	atomic_store_explicit(&spate_stats_stream_at(st, st->streams_added)->seq, 2,
			      memory_order_relaxed);
	return (int)st->streams_added++;
}

int spate_stats_stream_claim(struct spate_stats *st, const char *name, uint32_t shards,
			     const uint64_t *tail_seq, const uint64_t *tail)
{
	uint32_t slot = UINT32_MAX, first = 0, run = 0;

	if (!st || !st->writer || !name || strlen(name) > SPATE_STATS_NAME_MAX || !shards)
		return -EINVAL;
	for (uint32_t i = st->streams_added; i < st->h.n_streams && slot == UINT32_MAX; i++)
		/* Relaxed: only this writer changes live. */
		if (!atomic_load_explicit(&spate_stats_stream_at(st, i)->live, memory_order_relaxed))
			slot = i;
	for (uint32_t k = 0; k < st->h.n_shards && run < shards; k++) {
		if (st->shard_used[k]) {
			run = 0;
			continue;
		}
		if (!run)
			first = k;
		run++;
	}
	if (slot == UINT32_MAX || run < shards)
		return -ENOSPC;
	struct spate_stats_stream *s = spate_stats_stream_at(st, slot);
	/* Relaxed: only this writer changes seq. */
	uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
	atomic_store_explicit(&s->seq, q + 1, memory_order_relaxed);
	/* Release fence: pairs with the reader's acquire fence before its
	 * second load of seq; a reader that copies any field written below
	 * sees the odd seq then and drops its copy. */
	atomic_thread_fence(memory_order_release);
	struct spate_hist *h = spate_stats_hist_at(st, (uint64_t)slot);
	if (h)
		spate_hist_reset(h); /* relaxed stores: readers may mix old and zero counts */
	stream_fill(st, slot, name, shards, first, tail_seq, tail);
	/* Release: pairs with the reader's acquire load of seq: a reader that
	 * sees q + 2 sees every field above. */
	atomic_store_explicit(&s->seq, q + 2, memory_order_release);
	return (int)slot;
}

void spate_stats_stream_release(struct spate_stats *st, uint32_t i)
{
	struct spate_stats_stream *s = spate_stats_stream_at(st, i);

	if (!s || !st->writer)
		return;
	/* Relaxed: only this writer changes seq and live. */
	uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
	atomic_store_explicit(&s->seq, q + 1, memory_order_relaxed);
	/* Release fence: as in spate_stats_stream_claim(). */
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&s->live, 0, memory_order_relaxed);
	uint32_t n = GET(s->shards), first = GET(s->first_shard);
	for (uint32_t k = 0; k < n && (uint64_t)first + k < st->h.n_shards; k++)
		st->shard_used[first + k] = 0;
	/* Release: pairs with the reader's acquire load of seq. */
	atomic_store_explicit(&s->seq, q + 2, memory_order_release);
}

int spate_stats_stream_read(const struct spate_stats *st, uint32_t i,
			    struct spate_stats_stream_desc *out)
{
	const struct spate_stats_stream *s = spate_stats_stream_at(st, i);

	if (!s || !out)
		return -EINVAL;
	/* Acquire: pairs with the writer's release store of an even seq. */
	uint32_t q = atomic_load_explicit(&s->seq, memory_order_acquire);
	/* Relaxed: checked against seq below. */
	if ((q & 1) || !atomic_load_explicit(&s->live, memory_order_relaxed))
		return 0;
	for (size_t k = 0; k < sizeof(out->name); k++)
		out->name[k] = GET(s->name[k]);
	out->name[SPATE_STATS_NAME_MAX] = '\0';
	out->shards = GET(s->shards);
	out->first_shard = GET(s->first_shard);
	out->fsync_hist = GET(s->fsync_hist);
	/* Acquire fence: pairs with the writer's release fence after it made
	 * seq odd: if we copied anything it wrote, we see the change here. */
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&s->seq, memory_order_relaxed) != q)
		return 0;
	if ((uint64_t)out->first_shard + out->shards > st->h.n_shards)
		return -EINVAL; /* scribbled */
	return 1;
}

int spate_stats_add_consumer(struct spate_stats *st, const char *name, const char *plugin,
			     uint32_t stream, uint32_t lanes, const uint32_t *reader_slots)
{
	if (!st || !st->writer || !name || strlen(name) > SPATE_STATS_NAME_MAX ||
	    stream >= st->streams_added || !lanes)
		return -EINVAL;
	if (st->consumers_added >= st->h.n_consumers)
		return -ENOSPC;
	uint32_t shards = spate_stats_stream_at(st, stream)->shards;
	uint64_t ntasks = (uint64_t)shards * lanes;
	if (st->tasks_added + ntasks > st->h.n_tasks)
		return -ENOSPC;
	uint32_t ci = st->consumers_added;
	struct spate_stats_consumer *c = spate_stats_consumer_at(st, ci);
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->plugin, sizeof(c->plugin), "%s", plugin ? plugin : "");
	c->stream = stream;
	c->shards = shards;
	c->lanes = lanes;
	c->first_task = st->tasks_added;
	c->hist_latency = st->h.n_streams + 3ull * ci;
	c->hist_process = c->hist_latency + 1;
	c->hist_batch = c->hist_latency + 2;
	atomic_store_explicit(&c->state, SPATE_STATS_STOPPED, memory_order_relaxed);
	for (uint32_t i = 0; i < ntasks; i++) {
		uint32_t ti = st->tasks_added + i;
		struct spate_stats_task *t = spate_stats_task_at(st, ti);
		t->consumer = ci;
		t->shard = i / lanes;
		t->lane = i % lanes;
		/* Relaxed: the region is published later (ready, release). */
		atomic_store_explicit(&t->reader_slot, reader_slots ? reader_slots[i] : UINT32_MAX,
				      memory_order_relaxed);
		atomic_store_explicit(&t->checkpoint, UINT64_MAX, memory_order_relaxed);
	}
	st->tasks_added += (uint32_t)ntasks;
	st->consumers_added++;
	return (int)ci;
}

int spate_stats_add_sup(struct spate_stats *st, uint32_t consumer, uint32_t procs)
{
	if (!st || !st->writer || consumer >= st->consumers_added)
		return -EINVAL;
	if (st->sups_added >= st->h.n_sup)
		return -ENOSPC;
	struct spate_stats_sup *x = spate_stats_sup_at(st, st->sups_added);
	x->consumer = consumer;
	x->procs = procs;
	return (int)st->sups_added++;
}

void spate_stats_publish(struct spate_stats *st)
{
	struct spate_stats_hdr *h = (struct spate_stats_hdr *)(void *)st->base;
	/* Release: pairs with the acquire load of ready in spate_stats_attach():
	 * every slot written above is visible to an attacher that sees ready. */
	__atomic_store_n(&h->ready, SPATE_STATS_READY, __ATOMIC_RELEASE);
}

int spate_stats_unlink(const char *bus)
{
	char name[SPATE_SHM_NAME_MAX + 1];
	int rc = region_name(bus, name);

	return rc < 0 ? rc : spate_shm_unlink(name);
}

static int attach_impl(const char *bus, uint32_t shm_flags, struct spate_stats **out)
{
	char name[SPATE_SHM_NAME_MAX + 1];
	struct spate_stats *st;
	const struct spate_stats_hdr *sh;
	uint32_t ready;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	rc = region_name(bus, name);
	if (rc < 0)
		return rc;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	rc = spate_shm_attach(name, shm_flags, &st->shm);
	if (rc < 0) {
		free(st);
		return rc;
	}
	if (spate_shm_user_size(st->shm) < sizeof(st->h)) {
		rc = -EBADMSG;
		goto err;
	}
	st->base = spate_shm_user(st->shm);
	sh = (const struct spate_stats_hdr *)(const void *)st->base;
	/* Acquire: pairs with the release store in spate_stats_publish(). */
	ready = __atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE);
	/* Copy once: checks and uses read the copy only. */
	memcpy(&st->h, sh, sizeof(st->h));
	if (st->h.magic != SPATE_STATS_MAGIC) {
		rc = st->h.magic == 0 ? -EAGAIN : -EBADMSG;
		goto err;
	}
	if (ready != SPATE_STATS_READY) {
		rc = -EAGAIN;
		goto err;
	}
	if (st->h.layout_version != SPATE_STATS_LAYOUT_VERSION) {
		rc = -EPROTO;
		goto err;
	}
	if (st->h.sup_version != SPATE_STATS_SUP_VERSION) {
		/* No sup area, or one of a later version: read as none. */
		st->h.sup_version = 0;
		st->h.n_sup = 0;
	}
	rc = check_hdr(&st->h, spate_shm_user_size(st->shm));
	if (rc < 0)
		goto err;
	if (strcmp(st->h.bus, bus) != 0) {
		rc = -EBADMSG;
		goto err;
	}
	*out = st;
	return 0;
err:
	spate_shm_detach(st->shm);
	free(st);
	return rc;
}

int spate_stats_attach(const char *bus, struct spate_stats **out)
{
	return attach_impl(bus, SPATE_SHM_F_RDONLY, out);
}

int spate_stats_attach_rw(const char *bus, struct spate_stats **out)
{
	return attach_impl(bus, 0, out);
}

void spate_stats_close(struct spate_stats *st)
{
	struct stat sb;

	if (!st)
		return;
	/* The creator removes its region, unless a newer engine of the bus
	 * has replaced it under the same name meanwhile. */
	if (st->writer && st->ino && stat(spate_shm_path(st->shm), &sb) == 0 &&
	    sb.st_dev == st->dev && sb.st_ino == st->ino)
		spate_stats_unlink(st->h.bus);
	spate_shm_detach(st->shm);
	free(st->shard_used);
	free(st);
}

const struct spate_stats_hdr *spate_stats_header(const struct spate_stats *st)
{
	return &st->h;
}

int spate_stats_engine_alive(const struct spate_stats *st)
{
	return spate_shm_creator_alive(st->shm);
}

struct spate_stats_stream *spate_stats_stream_at(const struct spate_stats *st, uint32_t i)
{
	if (!st || i >= st->h.n_streams)
		return NULL;
	return (struct spate_stats_stream *)(void *)(st->base + st->h.streams_off +
						     (uint64_t)i * sizeof(struct spate_stats_stream));
}

struct spate_stats_shard *spate_stats_shard_at(const struct spate_stats *st, uint32_t i)
{
	if (!st || i >= st->h.n_shards)
		return NULL;
	return (struct spate_stats_shard *)(void *)(st->base + st->h.shards_off +
						    (uint64_t)i * sizeof(struct spate_stats_shard));
}

struct spate_stats_consumer *spate_stats_consumer_at(const struct spate_stats *st, uint32_t i)
{
	if (!st || i >= st->h.n_consumers)
		return NULL;
	return (struct spate_stats_consumer *)(void *)(st->base + st->h.cons_off +
						       (uint64_t)i * sizeof(struct spate_stats_consumer));
}

struct spate_stats_task *spate_stats_task_at(const struct spate_stats *st, uint32_t i)
{
	if (!st || i >= st->h.n_tasks)
		return NULL;
	return (struct spate_stats_task *)(void *)(st->base + st->h.tasks_off +
						   (uint64_t)i * sizeof(struct spate_stats_task));
}

struct spate_stats_source_slot *spate_stats_source_at(const struct spate_stats *st, uint32_t i)
{
	if (!st || i >= st->h.n_sources)
		return NULL;
	return (struct spate_stats_source_slot *)(void *)(st->base + st->h.sources_off +
							   (uint64_t)i *
								   sizeof(struct spate_stats_source_slot));
}

struct spate_stats_worker *spate_stats_worker_at(const struct spate_stats *st, uint32_t i)
{
	if (!st || i >= st->h.n_workers)
		return NULL;
	return (struct spate_stats_worker *)(void *)(st->base + st->h.workers_off +
						     (uint64_t)i * sizeof(struct spate_stats_worker));
}

struct spate_stats_sup *spate_stats_sup_at(const struct spate_stats *st, uint32_t i)
{
	if (!st || !st->h.sup_version || i >= st->h.n_sup)
		return NULL;
	return (struct spate_stats_sup *)(void *)(st->base + st->h.sup_off +
						  (uint64_t)i * sizeof(struct spate_stats_sup));
}

struct spate_stats_sup *spate_stats_sup_of(const struct spate_stats *st, uint32_t consumer)
{
	for (uint32_t i = 0; st && st->h.sup_version && i < st->h.n_sup; i++) {
		struct spate_stats_sup *x = spate_stats_sup_at(st, i);
		if (x->consumer == consumer)
			return x;
	}
	return NULL;
}

struct spate_hist *spate_stats_sup_hist_at(const struct spate_stats *st, uint64_t i)
{
	if (!st || !st->h.sup_version || i >= 2ull * st->h.n_sup)
		return NULL;
	return (struct spate_hist *)(void *)(st->base + st->h.sup_hists_off + i * st->h.hist_stride);
}

struct spate_hist *spate_stats_hist_at(const struct spate_stats *st, uint64_t i)
{
	if (!st || i >= st->h.n_hists)
		return NULL;
	return (struct spate_hist *)(void *)(st->base + st->h.hists_off + i * st->h.hist_stride);
}

struct spate_stats_shard *spate_stats_shard_of(const struct spate_stats *st, uint32_t stream,
					       uint32_t shard)
{
	const struct spate_stats_stream *s = spate_stats_stream_at(st, stream);
	/* Copies: the slot may change under a reader. */
	uint32_t n = s ? GET(s->shards) : 0, first = s ? GET(s->first_shard) : 0;

	if (!s || shard >= n || (uint64_t)first + shard >= st->h.n_shards)
		return NULL;
	return spate_stats_shard_at(st, first + shard);
}

int spate_stats_consumer_find(const struct spate_stats *st, const char *name)
{
	for (uint32_t i = 0; st && i < st->h.n_consumers; i++) {
		const struct spate_stats_consumer *c = spate_stats_consumer_at(st, i);
		if (!strncmp(c->name, name, sizeof(c->name)))
			return (int)i;
	}
	return -ENOENT;
}

int spate_stats_stream_find(const struct spate_stats *st, const char *name)
{
	struct spate_stats_stream_desc d;

	for (uint32_t i = 0; st && i < st->h.n_streams; i++)
		if (spate_stats_stream_read(st, i, &d) == 1 && !strncmp(d.name, name, sizeof(d.name)))
			return (int)i;
	return -ENOENT;
}

int spate_stats_hist_copy(const struct spate_stats *st, uint64_t i, struct spate_hist *out)
{
	const struct spate_hist *h = spate_stats_hist_at(st, i);

	if (!h || !out)
		return -EINVAL;
	/* A consistent copy while writers record (count from the buckets). */
	return spate_hist_snapshot(out, h) < 0 ? -EINVAL : 0;
}

int spate_stats_task_ref(const struct spate_stats *st, uint32_t i, struct spate_stats_tref *out)
{
	struct spate_stats_task *t = spate_stats_task_at(st, i);

	memset(out, 0, sizeof(*out));
	if (!t)
		return -EINVAL;
	/* Indexes re-checked: the slots may have been scribbled on. */
	const struct spate_stats_consumer *k = spate_stats_consumer_at(st, t->consumer);
	if (!k)
		return -EINVAL;
	struct spate_hist *a = spate_stats_hist_at(st, k->hist_latency);
	struct spate_hist *b = spate_stats_hist_at(st, k->hist_process);
	struct spate_hist *c = spate_stats_hist_at(st, k->hist_batch);
	if (!a || !b || !c)
		return -EINVAL;
	out->slot = t;
	out->latency = a;
	out->process = b;
	out->batch = c;
	return 0;
}

int spate_stats_shard_ref(const struct spate_stats *st, uint32_t stream, uint32_t shard,
			  struct spate_stats_sref *out)
{
	struct spate_stats_shard *s = spate_stats_shard_of(st, stream, shard);
	const struct spate_stats_stream *m = spate_stats_stream_at(st, stream);

	memset(out, 0, sizeof(*out));
	if (!s || !m)
		return -EINVAL;
	struct spate_hist *h = spate_stats_hist_at(st, GET(m->fsync_hist));
	if (!h)
		return -EINVAL;
	out->slot = s;
	out->fsync = h;
	return 0;
}
