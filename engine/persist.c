/* SPDX-License-Identifier: MIT */
/*
 * persist.c - persisted streams: each shard's ring is written to its log
 * (engine/log.c) by a persister thread, and a stream recreated after a
 * restart continues its logs' numbering.
 *
 * Design. The persister holds one ring reader per persisted shard. A ring
 * reader gates the writers, so the ring never overwrites what is not yet in
 * the log. Each round it takes whole published batches zero-copy
 * (spate_ring_peek_batches), appends them to the shard's log (which copies
 * them into its O_DIRECT staging buffers, or writes them straight from ring
 * memory through the page cache), calls spate_log_sync() (write,
 * and fdatasync per the durability policy: none = never, interval = every
 * durability_interval, always = every round, i.e. group commit of whatever
 * arrived meanwhile), and only then releases the batches and publishes the
 * shard's written and durable sequence numbers in the stream region, waking
 * producers waiting for durability. A full disk keeps the batches queued in
 * the log and unreleased in the ring (producers see -ENOSPC from their
 * durability wait, then back pressure); the sync is retried every 10 ms and
 * writing resumes when space returns.
 *
 * The gate outlives the engine. The persister's reader slot is *kept*
 * (spate_ring_reader_keep): reaping never frees it, a stop leaves it in
 * place at exactly what reached the log (spate_ring_reader_detach), and a
 * SIGKILL leaves it where it last released. So while no engine runs,
 * producers block or fail on a full ring, per their own policy, and never
 * overwrite a record that is not in the log. Batches are released only
 * once they reached the file (spate_log_written_seq: with O_DIRECT the
 * last write may still be in flight after a sync), so the gate is never
 * ahead of the log.
 *
 * Start-up. Logs are opened first (recovery: torn tails cut and reported).
 * If the stream's shared memory survived (producers in other processes
 * keep it, or it simply outlives a stopped engine), the slots of dead
 * processes are freed (spate_ring_reap; not the kept gate) and each shard's
 * gate is adopted (spate_ring_reader_adopt): memory holds every record from
 * the gate to the tail, and the log must continue inside that range (gate
 * <= log end <= tail). The persister then skips what the log has and writes
 * the rest, before consumers start (persist_catch_up), so no record a
 * producer was told it put is lost across a restart. A region without a
 * gate (an older layout, a crash before the first reader) falls back to
 * the range memory holds (oldest <= log end <= newest). Otherwise (corrupt,
 * the log ahead of memory, or behind the gate: a damaged log) the old region
 * is retired (spate_ring_retire: producers still mapping it get -ESTALE at
 * their next put and reattach) and recreated with each ring's first
 * sequence number set to its log's next one.
 *
 * Threads: placement.persist_threads (default 1: one disk is kept busy by
 * one thread on this class of machine); shard i belongs to thread
 * i % threads, so every shard's log has exactly one writer.
 *
 * Limits: a shard whose log refuses an append (a sequence gap, which means
 * memory and log disagree) stops being persisted, loudly, and its gate
 * stays (producers then block or fail on a full ring). A put racing with a
 * retirement (reserved just before it) may land in the retired region.
 */
#include "spate_config.h"

#include <errno.h>
#include <inttypes.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/persist.h"
#include "engine/util.h"
#include "rings/proc.h"
#include "spate/slog.h"
#include "spate/topo.h"

#define PERSIST_MAX_BYTES (8ull << 20)
#define PERSIST_RETRY_NS (10ull * 1000 * 1000)
#define PERSIST_STOP_DRAIN_NS (5ull * 1000 * 1000 * 1000)
/* How long opening a stream spends persisting what memory holds, at most. */
#define PERSIST_CATCH_UP_NS (60ull * 1000 * 1000 * 1000)
/* A thread with an `always` shard polls its rings this long after its last
 * work before it sleeps: a durable ack then does not wait for the thread's
 * wake-up (a futex wake, or a nap of up to 0.5 ms with several shards),
 * which on a busy core can take longer than the fdatasync itself. At low
 * load the next batch comes within it (at 10% of saturation, a 64 KiB
 * batch every ~0.35 ms, each synced in ~0.25 ms); idle, the thread sleeps
 * as before. Costs up to this much CPU per group. */
#define PERSIST_ALWAYS_SPIN_NS (300ull * 1000)

static void log_params(const struct spate_config_stream *cs, struct spate_log_params *lp)
{
	memset(lp, 0, sizeof(*lp));
	lp->segment_bytes = cs->segment_size;
	lp->durability = cs->durability; /* one type: spate/durability.h */
	lp->interval_ns = cs->durability_interval_ns;
	lp->retention_ns = cs->retention_ns;
	lp->retention_bytes = cs->retention_bytes;
	lp->flags = cs->direct_io ? 0 : SPATE_LOG_F_BUFFERED;
}

static void persist_catch_up(struct spate_persist_shard *x);

static int grow(struct spate_persister *p, uint32_t more)
{
	if (p->n + more <= p->cap)
		return 0;
	uint32_t cap = p->cap ? p->cap * 2 : 8;
	while (cap < p->n + more)
		cap *= 2;
	struct spate_persist_shard *sh = realloc(p->sh, cap * sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	memset(sh + p->cap, 0, (cap - p->cap) * sizeof(*sh));
	p->sh = sh;
	p->cap = cap;
	return 0;
}

/* Oldest and next sequence numbers a ring holds (oldest == next: empty). */
static int ring_range(struct spate_ring *r, uint64_t *oldest, uint64_t *next)
{
	struct spate_ring_reader *rd = NULL;
	int rc = spate_ring_reader_open(r, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD, &rd);

	if (rc < 0)
		return rc;
	*next = spate_ring_tail_seq(r);
	rc = spate_ring_reader_resolve_seq(rd);
	*oldest = rc == 0 && rd->seq != UINT64_MAX ? rd->seq : *next;
	spate_ring_reader_close(rd);
	return rc == -EAGAIN ? 0 : rc;
}

/* Attach the existing region of @p cs if it matches the configuration and
 * the logs; 1 = attached, 0 = must be (re)created, <0 = error. */
/* Retire @p s (every ring: producers still mapping it learn it at their
 * next put) and close it, before its region is replaced. */
static void retire_stream(struct spate_stream *s, struct spate_ring_reader **rds)
{
	for (uint32_t i = 0; i < spate_stream_shards(s); i++) {
		spate_ring_reader_close(rds[i]);
		rds[i] = NULL;
		spate_ring_retire(spate_stream_ring(s, i));
	}
	spate_stream_close(s);
}

/* Shard @p i of @p s: adopt its kept gate into @p rd and check the log's
 * next sequence number @p want against what memory holds from the gate
 * (gate <= want <= tail). 1 = adopted, 0 = no gate (older region),
 * -ESTALE = the region must be recreated (said why), -EBUSY = a live
 * process holds the gate. */
static int adopt_gate(const struct spate_config_stream *cs, struct spate_stream *s, uint32_t i,
		      uint64_t want, bool empty, struct spate_ring_reader **rd, uint64_t *skip)
{
	struct spate_ring *r = spate_stream_ring(s, i);
	uint64_t gpos, gseq;
	uint32_t gi;
	int rc = spate_ring_reader_find_kept(r, &gi, &gpos, &gseq);

	if (rc == -ENOENT)
		return 0;
	rc = spate_ring_reader_adopt(r, gi, SPATE_RING_WAIT_BLOCK, rd);
	if (rc == -EBUSY)
		return rc;
	if (rc < 0) {
		spate_slog(SPATE_LOG_WARN, NULL, "stream %s/%u: its persister's gate is unusable (%s)",
			      cs->name, i, strerror(-rc));
		return -ESTALE;
	}
	/* Acquire: pairs with the publisher's release of tail (tail_seq is
	 * stored before it). */
	(void)atomic_load_explicit(&r->sh->pub.tail, memory_order_acquire);
	uint64_t nx = atomic_load_explicit(&r->sh->pub.tail_seq, memory_order_relaxed);
	uint64_t gate = (*rd)->seq == UINT64_MAX ? nx : (*rd)->seq; /* nothing past the gate */
	if (empty)
		want = gate;
	if (want < gate) {
		spate_slog(SPATE_LOG_ERROR, NULL,
			      "stream %s/%u: the log ends at %" PRIu64 " but memory holds records from %"
			      PRIu64 " on only: records %" PRIu64 "..%" PRIu64
			      " were lost from the log (damaged or cut); recreating the stream from its log",
			      cs->name, i, want, gate, want, gate - 1);
		return -ESTALE;
	}
	if (want > nx) {
		spate_slog(SPATE_LOG_WARN, NULL,
			      "stream %s/%u: memory holds records %" PRIu64 "..%" PRIu64
			      " but the log continues at %" PRIu64 ": recreating the stream from its log",
			      cs->name, i, gate, nx, want);
		return -ESTALE;
	}
	*skip = want;
	if (nx > want)
		spate_slog(SPATE_LOG_INFO, NULL,
			      "stream %s/%u: %" PRIu64
			      " record(s) in memory are not in the log yet: persisting them first",
			      cs->name, i, nx - want);
	return 1;
}

static int try_attach(const struct spate_config *cfg, const struct spate_config_stream *cs,
		      uint32_t want_flags, const uint64_t *next, const bool *empty,
		      struct spate_stream **out, uint64_t *skip, struct spate_ring_reader **rds,
		      char *err, size_t errlen)
{
	struct spate_stream *s = NULL;
	int rc = spate_stream_attach(cfg->bus, cs->name, &s);

	if (rc == -ENOENT)
		return 0;
	if (rc == -EBADMSG || rc == -EPROTO) {
		spate_slog(SPATE_LOG_WARN, NULL,
			      "stream %s: its shared memory is unreadable (%s): recreated from its log",
			      cs->name, strerror(-rc));
		return 0;
	}
	if (rc < 0) {
		snprintf(err, errlen, "stream %s: attach: %s", cs->name, strerror(-rc));
		return rc;
	}
	struct spate_ring *r0 = spate_stream_ring(s, 0);
	if (spate_stream_shards(s) != cs->shards || r0->cap != cs->ring_size ||
	    r0->flags != want_flags || spate_stream_durability(s) != cs->durability) {
		snprintf(err, errlen,
			 "%s:%u: stream %s exists with %u shard(s) of %" PRIu64
			 " bytes (flags %#x, durability %u), the configuration asks for %u of %" PRIu64
			 " (flags %#x, durability %u): remove it first (spate rm %s %s)",
			 cfg->source, cs->line, cs->name, spate_stream_shards(s), r0->cap, r0->flags,
			 spate_stream_durability(s), cs->shards, cs->ring_size, want_flags,
			 (unsigned)cs->durability, cfg->bus, cs->name);
		spate_stream_close(s);
		return -EEXIST;
	}
	for (uint32_t i = 0; i < cs->shards; i++) {
		const struct spate_stream_dur *d = spate_stream_dur(s, i);
		/* Relaxed: liveness hints (see spate_stream_dur_claim). */
		uint32_t pid = atomic_load_explicit(&d->persister_pid, memory_order_relaxed);
		if (pid && pid != (uint32_t)getpid() &&
		    spate_proc_alive((pid_t)pid, atomic_load_explicit(&d->persister_start,
								      memory_order_relaxed))) {
			snprintf(err, errlen,
				 "%s:%u: stream %s is persisted by another live engine (pid %u): two "
				 "writers would corrupt its log",
				 cfg->source, cs->line, cs->name, pid);
			spate_stream_close(s);
			return -EBUSY;
		}
	}
	for (uint32_t i = 0; i < cs->shards; i++) {
		struct spate_ring *r = spate_stream_ring(s, i);
		uint32_t nr = 0, nw = 0;
		int k = 0;
		/* Live writers may be finishing claims: give them a moment. */
		while ((rc = spate_ring_reap(r, &nr, &nw)) == -EBUSY && k++ < 100) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
		if (nr || nw || rc == 1)
			spate_slog(SPATE_LOG_WARN, NULL,
				      "stream %s/%u: freed %u reader and %u writer slot(s) of dead "
				      "processes%s",
				      cs->name, i, nr, nw,
				      rc == 1 ? "; gave back space claimed and never published" : "");
		rc = adopt_gate(cs, s, i, next[i], empty[i], &rds[i], &skip[i]);
		if (rc == -EBUSY) {
			snprintf(err, errlen,
				 "%s:%u: stream %s: the gate of shard %u is held by another live "
				 "process: another engine persists it",
				 cfg->source, cs->line, cs->name, i);
			for (uint32_t j = 0; j < i; j++) {
				spate_ring_reader_detach(rds[j]);
				rds[j] = NULL;
			}
			spate_stream_close(s);
			return rc;
		}
		if (rc < 0) {
			retire_stream(s, rds);
			return 0;
		}
		if (rc == 1)
			continue;
		/* No gate: an older region, or its creator died before it
		 * opened one. Memory must hold the log's next record. */
		uint64_t oldest, nx;
		rc = ring_range(r, &oldest, &nx);
		if (rc < 0) {
			spate_slog(SPATE_LOG_WARN, NULL, "stream %s/%u: unreadable ring (%s): recreating",
				      cs->name, i, strerror(-rc));
			retire_stream(s, rds);
			return 0;
		}
		uint64_t want = empty[i] ? oldest : next[i];
		if (want < oldest || want > nx) {
			spate_slog(SPATE_LOG_WARN, NULL,
				      "stream %s/%u: memory holds records %" PRIu64 "..%" PRIu64
				      " but the log continues at %" PRIu64
				      ": recreating the stream from its log",
				      cs->name, i, oldest, nx, next[i]);
			retire_stream(s, rds);
			return 0;
		}
		skip[i] = want;
		if (nx > want)
			spate_slog(SPATE_LOG_INFO, NULL,
				      "stream %s/%u: %" PRIu64
				      " record(s) in memory are not in the log yet: persisting them",
				      cs->name, i, nx - want);
	}
	*out = s;
	return 1;
}

/* Opens one stream's shards for persisting: recover each shard's log, then
 * take over the stream's memory (adopting each kept gate) or recreate it;
 * one sequence with goto unwinding, kept in one place because every step's
 * failure must undo the ones before. */
int spate_persist_open_stream(struct spate_persister *p, const struct spate_config *cfg,
			      const struct spate_config_stream *cs, struct spate_stream **out,
			      char *err, size_t errlen)
{
	uint32_t n = cs->shards, i;
	struct spate_log_params lp;
	uint64_t *next = NULL, *skip = NULL;
	bool *empty = NULL;
	struct spate_ring_reader **rds = NULL; /* adopted gates */
	struct spate_stream *s = NULL;
	int rc;

	*out = NULL;
	rc = grow(p, n);
	if (rc < 0)
		return rc;
	next = calloc(n, sizeof(*next));
	skip = calloc(n, sizeof(*skip));
	empty = calloc(n, sizeof(*empty));
	rds = calloc(n, sizeof(*rds));
	if (!next || !skip || !empty || !rds) {
		rc = -ENOMEM;
		goto out;
	}
	log_params(cs, &lp);
	for (i = 0; i < n; i++) {
		struct spate_persist_shard *x = &p->sh[p->n + i];
		struct spate_log_recovery rep;
		memset(x, 0, sizeof(*x));
		memset(&rep, 0, sizeof(rep));
		rc = spate_config_stream_log_dir(cfg, cs, i, x->dir, sizeof(x->dir));
		if (rc == 0)
			rc = spate_util_mkdir_p(x->dir, 0700);
		if (rc == 0)
			rc = spate_log_open(x->dir, &lp, &x->log, &rep);
		if (rc < 0) {
			snprintf(err, errlen, "%s:%u: stream %s shard %u: log %s: %s%s%s",
				 cfg->source, cs->line, cs->name, i, x->dir, strerror(-rc),
				 rep.message[0] ? ": " : "", rep.message);
			goto out_logs;
		}
		if (rep.truncated_bytes || !rep.io_uring)
			spate_slog(SPATE_LOG_WARN, NULL, "stream %s/%u: log %s: %s", cs->name, i,
				      x->dir, rep.message[0] ? rep.message : "recovered");
		if (i == 0)
			spate_slog(SPATE_LOG_INFO, NULL, "stream %s: log %s (%s%s%s)", cs->name,
				      x->dir, rep.io_uring ? "io_uring" : "pwrite",
				      rep.direct ? ", O_DIRECT" : ", page cache",
				      rep.fixed_buffers ? ", registered buffers" : "");
		next[i] = spate_log_next_seq(x->log);
		empty[i] = spate_log_first_seq(x->log) == UINT64_MAX;
	}
	uint32_t flags = (cs->producers == SPATE_CONFIG_PRODUCERS_MULTI ? SPATE_RING_F_MULTI_WRITER : 0) |
			 (cs->full == SPATE_CONFIG_FULL_WAIT ? SPATE_RING_F_FULL_WAIT : 0);
	rc = try_attach(cfg, cs, flags, next, empty, &s, skip, rds, err, errlen);
	if (rc < 0)
		goto out_logs;
	if (rc == 0) {
		struct spate_stream_params sp = {
			.shards = n,
			.ring_size = cs->ring_size,
			.max_record = cs->max_record_size,
			.ring_flags = flags,
			.shm_flags = cs->huge_pages == SPATE_CONFIG_HUGE_REQUIRE ? SPATE_SHM_F_REQUIRE_HUGE
				     : cs->huge_pages == SPATE_CONFIG_HUGE_OFF ? SPATE_SHM_F_NO_HUGE
									       : 0,
			.durability = cs->durability,
			.first_seq = next,
		};
		spate_stream_unlink(cfg->bus, cs->name); /* absent, or being replaced */
		rc = spate_stream_create(cfg->bus, cs->name, &sp, &s);
		if (rc < 0) {
			snprintf(err, errlen, "%s:%u: stream %s: create: %s", cfg->source, cs->line,
				 cs->name, strerror(-rc));
			goto out_logs;
		}
		for (i = 0; i < n; i++)
			skip[i] = next[i];
	}
	for (i = 0; i < n; i++) {
		struct spate_persist_shard *x = &p->sh[p->n + i];
		x->s = s;
		x->shard = i;
		x->durability = cs->durability;
		x->skip_below = skip[i];
		x->dur = spate_stream_dur(s, i);
		x->rd = rds[i];
		rds[i] = NULL;
		rc = 0;
		if (!x->rd) {
			/* A new gate: kept from the start, so it outlives us. */
			rc = spate_ring_reader_open(spate_stream_ring(s, i), SPATE_RING_START_OLDEST,
						    SPATE_RING_WAIT_BLOCK, &x->rd);
			if (rc == 0)
				rc = spate_ring_reader_keep(x->rd);
		}
		if (rc < 0) {
			snprintf(err, errlen, "stream %s shard %u: persister reader: %s", cs->name, i,
				 strerror(-rc));
			spate_ring_reader_close(x->rd);
			x->rd = NULL;
			while (i--)
				spate_ring_reader_detach(p->sh[p->n + i].rd);
			for (uint32_t k = 0; k < n; k++)
				spate_ring_reader_detach(rds[k]);
			spate_stream_close(s);
			i = n;
			goto out_logs;
		}
		uint64_t w = spate_log_next_seq(x->log);
		if (w < skip[i])
			w = skip[i];
		spate_stream_dur_publish(x->dur, w, w, 0);
		spate_stream_dur_claim(s, i, 1);
	}
	/* What memory holds goes to the log before anything else runs. */
	for (i = 0; i < n; i++)
		persist_catch_up(&p->sh[p->n + i]);
	p->n += n;
	*out = s;
	rc = 0;
	goto out;
out_logs:
	while (i--) {
		struct spate_persist_shard *x = &p->sh[p->n + i];
		spate_log_close(x->log);
		x->log = NULL;
	}
out:
	free(next);
	free(skip);
	free(empty);
	free(rds);
	return rc;
}

uint64_t spate_persist_next_seq(const struct spate_persister *p, const struct spate_stream *s,
				uint32_t shard)
{
	for (uint32_t i = 0; i < p->n; i++)
		if (p->sh[i].s == s && p->sh[i].shard == shard) {
			uint64_t n = spate_log_next_seq(p->sh[i].log);
			return n > p->sh[i].skip_below ? n : p->sh[i].skip_below;
		}
	return UINT64_MAX;
}

/* ------------------------------------------------------------------------ */
/* The persister thread                                                     */
/* ------------------------------------------------------------------------ */

static void shard_error(struct spate_persist_shard *x, int rc, uint64_t now)
{
	x->err = rc;
	x->retry_at = now + PERSIST_RETRY_NS;
	spate_stream_dur_publish(x->dur, spate_log_written_seq(x->log),
				 spate_log_durable_seq(x->log), rc);
	if (!x->err_logged_ns || now - x->err_logged_ns >= 1000000000ull) {
		x->err_logged_ns = now;
		spate_slog(SPATE_LOG_ERROR, NULL,
			      "persist %s/%u: %s%s", spate_stream_name(x->s), x->shard,
			      strerror(-rc),
			      rc == -ENOSPC ? " (disk full: records stay queued in memory; writing "
					      "resumes when space returns)"
					    : "");
	}
}

/* The sequence number the shard's ring will publish next. */
static uint64_t ring_tail_seq(const struct spate_persist_shard *x)
{
	struct spate_ring *r = spate_stream_ring(x->s, x->shard);
	/* Acquire: pairs with the publisher's release of tail (tail_seq is
	 * stored before it). */
	(void)atomic_load_explicit(&r->sh->pub.tail, memory_order_acquire);
	return atomic_load_explicit(&r->sh->pub.tail_seq, memory_order_relaxed);
}

/* One round for shard @p x: take what the ring has, write it, release what
 * reached the file. Returns records handled (> 0), 0 (nothing to do), or
 * -1 (backing off). */
static int shard_round(struct spate_persist_shard *x, uint64_t now, bool want_sync)
{
	uint32_t appended = 0, done = 0, k = 0;
	int rc;

	if (x->dead)
		return 0;
	if (x->err && now < x->retry_at)
		return -1;
	if (!x->err) {
		/* Batches the log has (from an earlier engine, or appended and
		 * still in flight) come again until released: skip them. */
		uint64_t have = spate_log_next_seq(x->log);
		if (have < x->skip_below)
			have = x->skip_below;
		int got = spate_ring_peek_batches(x->rd, x->sp, SPATE_PERSIST_MAX_SPANS,
						  PERSIST_MAX_BYTES);
		if (got < 0) {
			x->dead = true;
			x->nsp = 0;
			spate_slog(SPATE_LOG_ERROR, NULL,
				      "persist %s/%u: ring: %s: the shard is no longer persisted",
				      spate_stream_name(x->s), x->shard, strerror(-got));
			return 0;
		}
		x->nsp = (uint32_t)got;
		for (int j = 0; j < got; j++) {
			uint64_t end = x->sp[j].base_seq + x->sp[j].count;
			if (end <= have)
				continue;
			rc = spate_log_append(x->log, x->sp[j].hdr, x->sp[j].len);
			if (rc < 0) {
				x->dead = true;
				x->nsp = 0;
				spate_slog(SPATE_LOG_ERROR, NULL,
					      "persist %s/%u: append of records %" PRIu64 "..%" PRIu64
					      " refused (%s; the log expects %" PRIu64
					      "): the shard is no longer persisted",
					      spate_stream_name(x->s), x->shard, x->sp[j].base_seq,
					      end - 1, strerror(-rc), spate_log_next_seq(x->log));
				return 0;
			}
			have = end;
			appended += x->sp[j].count;
			x->round_bytes += x->sp[j].len;
		}
	}
	/* Idle: an interval shard still owes a sync once its period ends, and
	 * an O_DIRECT log may still have its last write in flight (a sync with
	 * nothing new appended completes it). */
	if (!x->nsp && !x->err && spate_log_written_seq(x->log) == spate_log_next_seq(x->log) &&
	    !(want_sync && x->durability == SPATE_DURABILITY_INTERVAL &&
	      spate_log_durable_seq(x->log) < spate_log_next_seq(x->log)))
		return 0;
	uint64_t durable = 0, before = spate_log_durable_seq(x->log), t0 = spate_mono_ns();
	rc = spate_log_sync(x->log, &durable);
	if (rc < 0) {
		shard_error(x, rc, now);
		return -1;
	}
	if (x->st.slot) {
		if (x->round_bytes)
			spate_stats_persist_write(x->st.slot, x->round_bytes);
		if (durable != before) /* an fdatasync happened */
			spate_stats_persist_fsync(&x->st, spate_mono_ns() - t0, durable);
	}
	x->round_bytes = 0;
	/* Release only what reached the file: with O_DIRECT the last write
	 * may still be in flight, and its batches stay gated until it lands
	 * (a crash now must not leave the gate ahead of the log). */
	uint64_t written = spate_log_written_seq(x->log);
	if (written < x->skip_below)
		written = x->skip_below;
	while (k < x->nsp && x->sp[k].base_seq + x->sp[k].count <= written)
		done += x->sp[k++].count;
	if (k == x->nsp)
		spate_ring_release(x->rd, done);
	else if (k)
		spate_ring_release_batches(x->rd, k);
	x->nsp = 0;
	if (x->err)
		spate_slog(SPATE_LOG_INFO, NULL, "persist %s/%u: writing again", spate_stream_name(x->s),
			      x->shard);
	x->err = 0;
	/* With durability none, "durable" means written to the log. */
	spate_stream_dur_publish(x->dur, written,
				 x->durability == SPATE_DURABILITY_NONE ? written : durable, 0);
	return done + appended ? (int)(done + appended) : 0;
}

/* At open: write what the ring holds past the log's end (up to its tail as
 * it is now) before consumers start, so the log ends where memory did. */
static void persist_catch_up(struct spate_persist_shard *x)
{
	uint64_t target = ring_tail_seq(x);
	uint64_t from = spate_log_written_seq(x->log), t0 = spate_mono_ns();

	if (from < x->skip_below)
		from = x->skip_below;
	if (target <= from)
		return;
	while (spate_log_written_seq(x->log) < target && !x->dead) {
		uint64_t now = spate_mono_ns();
		int rc = shard_round(x, now, true);
		if (rc <= 0 || now - t0 > PERSIST_CATCH_UP_NS) {
			spate_slog(SPATE_LOG_WARN, NULL,
				      "persist %s/%u: records %" PRIu64 "..%" PRIu64
				      " held in memory are not written yet (%s): the persister goes on",
				      spate_stream_name(x->s), x->shard, spate_log_written_seq(x->log),
				      target - 1, rc < 0 ? strerror(-x->err) : rc == 0 ? "the ring stopped short" : "taking too long");
			return;
		}
	}
	spate_slog(SPATE_LOG_INFO, NULL,
		      "persist %s/%u: wrote the %" PRIu64 " record(s) memory held in %.1f ms",
		      spate_stream_name(x->s), x->shard, target - from,
		      (double)(spate_mono_ns() - t0) / 1e6);
}

/* Every shard of thread @p index wrote what it had when the stop came (or
 * cannot). */
static bool drained(const struct spate_persister *p, uint32_t index)
{
	for (uint32_t i = index; i < p->n; i += p->nthreads) {
		const struct spate_persist_shard *x = &p->sh[i];
		if (!x->dead && !x->err && spate_log_written_seq(x->log) < x->stop_seq)
			return false;
	}
	return true;
}

static void *persister_main(void *arg)
{
	struct spate_persist_thread *th = arg;
	struct spate_persister *p = th->p;
	uint64_t idle_ns = 20000, last_sync = 0, drain_until = 0, last_work = 0;
	uint32_t mine = 0, only = 0;
	bool always = false;

	for (uint32_t i = th->index; i < p->n; i += p->nthreads, mine++) {
		only = i;
		always |= p->sh[i].durability == SPATE_DURABILITY_ALWAYS;
	}
	if (th->cpu >= 0 && p->topo)
		spate_topo_pin_self(p->topo, th->cpu);
	for (;;) {
		uint64_t now = spate_mono_ns();
		/* Relaxed: a flag; stop joins the thread afterwards. */
		bool stopping = atomic_load_explicit(&p->stop, memory_order_relaxed);
		/* Interval policies need a sync even when nothing new arrived. */
		bool want_sync = now - last_sync >= 1000000;
		int work = 0, backing_off = 0;

		if (stopping && !drain_until) {
			drain_until = now + PERSIST_STOP_DRAIN_NS;
			/* Write what was published when the stop came; what
			 * producers add afterwards waits behind the kept gate
			 * for the next engine. */
			for (uint32_t i = th->index; i < p->n; i += p->nthreads)
				p->sh[i].stop_seq = ring_tail_seq(&p->sh[i]);
		}
		for (uint32_t i = th->index; i < p->n; i += p->nthreads) {
			int r = shard_round(&p->sh[i], now, want_sync);
			if (r > 0)
				work += r;
			else if (r < 0)
				backing_off++;
		}
		if (want_sync)
			last_sync = now;
		if (stopping && ((!work && !backing_off) || now >= drain_until ||
				 drained(p, th->index)))
			break;
		if (work) {
			idle_ns = 20000;
			last_work = now;
			continue;
		}
		if (always && !backing_off && !stopping && now - last_work < PERSIST_ALWAYS_SPIN_NS) {
			spate_cpu_relax();
			continue;
		}
		if (mine == 1 && !backing_off) {
			/* One shard: sleep on its ring until data comes. */
			spate_ring_reader_wait(p->sh[only].rd, 1000000);
			continue;
		}
		struct timespec ts = { 0, (long)idle_ns };
		nanosleep(&ts, NULL);
		if (idle_ns < 500000)
			idle_ns *= 2;
	}
	return NULL;
}

int spate_persister_start(struct spate_persister *p, const struct spate_topo *topo)
{
	if (!p->n || p->t[0].started)
		return 0;
	if (!p->nthreads)
		p->nthreads = 1;
	if (p->nthreads > p->n)
		p->nthreads = p->n;
	p->topo = topo;
	atomic_store_explicit(&p->stop, 0, memory_order_relaxed);
	for (uint32_t k = 0; k < p->nthreads; k++) {
		p->t[k].p = p;
		p->t[k].index = k;
		int rc = -pthread_create(&p->t[k].th, NULL, persister_main, &p->t[k]);
		if (rc < 0) {
			spate_persister_stop(p);
			return rc;
		}
		p->t[k].started = true;
	}
	return 0;
}

void spate_persister_stop(struct spate_persister *p)
{
	if (!p)
		return;
	atomic_store_explicit(&p->stop, 1, memory_order_relaxed);
	for (uint32_t k = 0; k < SPATE_PERSIST_MAX_THREADS; k++) {
		if (p->t[k].started)
			pthread_join(p->t[k].th, NULL);
		p->t[k].started = false;
	}
}

void spate_persister_fini(struct spate_persister *p)
{
	if (!p)
		return;
	spate_persister_stop(p);
	for (uint32_t i = 0; i < p->n; i++) {
		struct spate_persist_shard *x = &p->sh[i];
		int rc = spate_log_close(x->log);
		if (rc < 0)
			spate_slog(SPATE_LOG_ERROR, NULL, "persist %s/%u: closing the log: %s",
				      spate_stream_name(x->s), x->shard, strerror(-rc));
		spate_ring_reader_detach(x->rd); /* the gate stays for the next engine */
		spate_stream_dur_claim(x->s, x->shard, 0);
	}
	free(p->sh);
	memset(p, 0, sizeof(*p));
}
