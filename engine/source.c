/* SPDX-License-Identifier: MIT */
/*
 * source.c - a shard source: the records of one shard for one reader, from
 * the shard's ring or from its log, behind one peek/release pair.
 *
 * Design. On the ring, peek and release are the ring reader's (zero-copy
 * views). On the log (history at start, or a reader that fell more than
 * half a ring behind on a persisted stream), records are copied out of the
 * log reader into a buffer of the source's own, because a batch must stay
 * put until it is released while a log reader's views last only until its
 * next read. At the log's end the source opens a ring reader at the oldest
 * record and, if the ring still holds the next record (the persister gates
 * the ring, so it does unless writers moved on between the log's end and
 * now), passes over what the log already gave and goes on from the ring;
 * otherwise it stays on the log. Leaving the ring closes its reader, so a
 * source on the log never holds the writers back.
 *
 * Limits: the switches happen only inside a peek that the caller allows to
 * switch (nothing held back for a batching window); the log buffer grows to
 * the largest batch (doubling), and is compacted when half of it is done.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "engine/source.h"

/* The poller is the only writer of the source's figures: load + store. */
static void fig_add64(_Atomic uint64_t *c, uint64_t v)
{
	/* Relaxed: statistics, one writer. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

static int open_ring(struct spate_source *s, enum spate_ring_start start)
{
	struct spate_ring *r = spate_stream_ring(s->stream, s->shard);
	int rc = spate_ring_reader_open(r, start, s->wait, &s->rd);

	if (rc == -ENOTSUP) /* the ring has no futex wake-ups: yield instead */
		rc = spate_ring_reader_open(r, start, SPATE_RING_WAIT_YIELD, &s->rd);
	/* The engine's reader: if the engine dies, producers must not evict it
	 * and overwrite what this consumer has not processed; the next engine
	 * frees it once its own reader is in place (engine.c, watch_stream). */
	if (rc == 0 && (rc = spate_ring_reader_engine(s->rd)) < 0) {
		spate_ring_reader_close(s->rd);
		s->rd = NULL;
	}
	return rc;
}

void spate_source_describe(struct spate_source *s, uint64_t next)
{
	if (!s->lrd) {
		if (s->rd)
			spate_stats_task_on_ring(s->st->slot, s->rd->index);
		return;
	}
	const struct spate_stream_dur *d = spate_stream_dur(s->stream, s->shard);
	/* Relaxed: display only. */
	spate_stats_task_catchup(s->st->slot, next == UINT64_MAX ? 0 : next,
				 atomic_load_explicit(&d->written_seq, memory_order_relaxed));
}

/* Read the shard's log from @p from / @p arg; the ring reader (if any) is
 * closed, so this source no longer holds the writers back. */
static int to_log(struct spate_source *s, enum spate_log_from from, uint64_t arg, uint64_t next)
{
	struct spate_log_reader *lrd = NULL;
	int rc = spate_log_reader_open(s->log_dir, from, arg, &lrd);

	if (rc < 0)
		return rc;
	if (s->rd) {
		spate_ring_reader_close(s->rd);
		s->rd = NULL;
	}
	s->lrd = lrd;
	s->dhave = 0;
	s->dbuf_len = 0;
	/* Relaxed: a status for monitors. */
	atomic_store_explicit(&s->on_log, 1, memory_order_relaxed);
	spate_source_describe(s, next);
	return 0;
}

/* At the end of the log: go on from the ring if it still holds @p next.
 * Returns 1 (on the ring), 0 (stay on the log), <0. */
static int to_ring(struct spate_source *s, uint64_t next)
{
	int rc = open_ring(s, SPATE_RING_START_OLDEST);

	if (rc < 0)
		return rc;
	if (next != UINT64_MAX) {
		rc = spate_ring_reader_resolve_seq(s->rd);
		if (rc == 0 && s->rd->seq != UINT64_MAX && s->rd->seq > next) {
			spate_ring_reader_close(s->rd);
			s->rd = NULL;
			return 0;
		}
		/* Pass over the batches the log gave us already, headers only;
		 * peek drops the rest of the batch holding next. */
		struct spate_ring_span sp[64];
		int n;
		while ((n = spate_ring_peek_batches(s->rd, sp, 64, UINT64_MAX)) > 0) {
			unsigned done = 0;
			int k = 0;
			while (k < n && sp[k].base_seq + sp[k].count <= next)
				done += sp[k++].count;
			if (done)
				spate_ring_release(s->rd, done);
			if (k < n)
				break;
		}
		s->skip_below = next;
	}
	spate_log_reader_close(s->lrd);
	s->lrd = NULL;
	/* Relaxed: a status for monitors. */
	atomic_store_explicit(&s->on_log, 0, memory_order_relaxed);
	spate_source_describe(s, next);
	return 1;
}

static int dbuf_reserve(struct spate_source *s, size_t more)
{
	if (s->dbuf_len + more <= s->dbuf_cap)
		return 0;
	size_t cap = s->dbuf_cap ? s->dbuf_cap : 64 * 1024;
	while (cap < s->dbuf_len + more)
		cap *= 2;
	uint8_t *b = realloc(s->dbuf, cap);
	if (!b)
		return -ENOMEM;
	s->dbuf = b;
	s->dbuf_cap = cap;
	return 0;
}

static int log_peek(struct spate_source *s, struct spate_ring_rec *out, unsigned max,
		    uint64_t max_bytes, uint64_t next, bool may_switch)
{
	uint64_t bytes = 0;

	if (max > s->max)
		max = s->max;
	for (uint32_t i = 0; i < s->dhave; i++)
		bytes += s->drec[i].len;
	while (s->dhave < max && bytes < max_bytes) {
		struct spate_ring_rec r[64];
		uint64_t skipped = 0;
		unsigned want = max - s->dhave < 64 ? max - s->dhave : 64;
		int n = spate_log_read(s->lrd, r, want, &skipped);
		if (skipped) {
			fig_add64(&s->log_gaps, skipped);
			spate_slog(SPATE_LOG_WARN, s->log,
				   "retention deleted %" PRIu64 " record(s) before they were read; "
				   "going on at the oldest retained record",
				   skipped);
		}
		if (n <= 0) {
			if (n < 0)
				return n;
			break;
		}
		for (int i = 0; i < n; i++) {
			size_t sz = ((size_t)r[i].len + 7) & ~(size_t)7;
			if (dbuf_reserve(s, sz) < 0)
				return -ENOMEM;
			if (r[i].len)
				memcpy(s->dbuf + s->dbuf_len, r[i].data, r[i].len);
			s->drec[s->dhave] = r[i];
			s->drec[s->dhave].data = NULL;
			s->doff[s->dhave] = s->dbuf_len;
			s->dbuf_len += sz;
			s->dhave++;
			bytes += r[i].len;
		}
		fig_add64(&s->log_records, (uint64_t)n);
	}
	if (!s->dhave) {
		if (!may_switch)
			return 0;
		int rc = to_ring(s, next);
		return rc < 0 ? rc : 0; /* on the ring: the next peek reads it */
	}
	/* The catch-up's end moves on while producers write: show the
	 * current one (where the ring will take over, at the latest).
	 * Relaxed: a figure for display. */
	spate_stats_set(&s->st->slot->catchup_target,
			atomic_load_explicit(&spate_stream_dur(s->stream, s->shard)->written_seq,
					     memory_order_relaxed));
	/* As the ring does: stop before the record that passes max_bytes
	 * (but always at least one). */
	unsigned k = 0;
	bytes = 0;
	while (k < s->dhave && k < max && (k == 0 || bytes + s->drec[k].len <= max_bytes)) {
		bytes += s->drec[k].len;
		out[k] = s->drec[k];
		out[k].data = s->dbuf + s->doff[k];
		k++;
	}
	return (int)k;
}

static void log_release(struct spate_source *s, unsigned k)
{
	if (k > s->dhave)
		k = s->dhave;
	s->dhave -= k;
	memmove(s->drec, s->drec + k, s->dhave * sizeof(*s->drec));
	memmove(s->doff, s->doff + k, s->dhave * sizeof(*s->doff));
	if (!s->dhave) {
		s->dbuf_len = 0;
	} else if (s->doff[0] > s->dbuf_cap / 2) {
		/* Payloads are in order: slide the live ones to the front. */
		size_t base = s->doff[0];
		memmove(s->dbuf, s->dbuf + base, s->dbuf_len - base);
		s->dbuf_len -= base;
		for (uint32_t i = 0; i < s->dhave; i++)
			s->doff[i] -= base;
	}
}

/* A ring reader on a persisted stream more than half a ring behind goes on
 * from the log, so it never holds the producers back (only the persister
 * does), if the log already has its next record. */
static void maybe_spill(struct spate_source *s, uint64_t next)
{
	uint64_t lag_bytes = 0;

	spate_ring_lag(s->rd, NULL, &lag_bytes);
	if (lag_bytes <= s->ring_cap / 2 || s->rd->seq == UINT64_MAX)
		return;
	if (next == UINT64_MAX || next < s->rd->seq)
		next = s->rd->seq;
	const struct spate_stream_dur *d = spate_stream_dur(s->stream, s->shard);
	/* Relaxed: a hint. The log's contents are read through the file, not
	 * this memory; were the hint early, the log reader would find its end
	 * and the source would go back to the ring (to_ring). */
	uint64_t written = atomic_load_explicit(&d->written_seq, memory_order_relaxed);
	if (written <= next)
		return;
	if (to_log(s, SPATE_LOG_FROM_SEQ, next, next) == 0) {
		/* Relaxed: a statistic, one writer. */
		atomic_store_explicit(&s->spills,
				      atomic_load_explicit(&s->spills, memory_order_relaxed) + 1,
				      memory_order_relaxed);
		spate_slog(SPATE_LOG_INFO, s->log,
			   "%" PRIu64 " bytes behind (more than half the ring): reading from the "
			   "log at %" PRIu64 " until caught up",
			   lag_bytes, next);
	}
}

static int ring_peek(struct spate_source *s, struct spate_ring_rec *out, unsigned max,
		     uint64_t max_bytes)
{
	for (;;) {
		int n = spate_ring_peek(s->rd, out, max, max_bytes);
		if (n <= 0 || !s->skip_below)
			return n;
		/* After the hand-over from the log: the records of the first
		 * batch below skip_below were handled from the log. */
		unsigned k = 0;
		while (k < (unsigned)n && out[k].seq < s->skip_below)
			k++;
		if (k < (unsigned)n)
			s->skip_below = 0;
		if (!k)
			return n;
		spate_ring_release(s->rd, k);
	}
}

int spate_source_peek(struct spate_source *s, struct spate_ring_rec *out, unsigned max,
		      uint64_t max_bytes, uint64_t next, bool may_switch)
{
	if (s->lrd)
		return log_peek(s, out, max, max_bytes, next, may_switch);
	if (s->log_dir && may_switch) {
		maybe_spill(s, next);
		if (s->lrd)
			return log_peek(s, out, max, max_bytes, next, may_switch);
	}
	return ring_peek(s, out, max, max_bytes);
}

void spate_source_release(struct spate_source *s, unsigned n)
{
	if (s->lrd)
		log_release(s, n);
	else
		spate_ring_release(s->rd, n);
}

int spate_source_peek_more(struct spate_source *s, struct spate_ring_rec *out, unsigned max,
			   uint64_t max_bytes)
{
	/* On the ring only, past the hand-over from the log, and not when the
	 * reader is due to move to the log (the next spate_source_peek() does
	 * that, with nothing peeked ahead). */
	if (!s->rd || s->skip_below)
		return 0;
	if (s->log_dir) {
		uint64_t lag_bytes = 0;
		spate_ring_lag(s->rd, NULL, &lag_bytes);
		if (lag_bytes > s->ring_cap / 2)
			return 0;
	}
	return spate_ring_peek_more(s->rd, out, max, max_bytes);
}

void spate_source_release_head(struct spate_source *s, unsigned n)
{
	if (s->lrd)
		log_release(s, n); /* the log is never peeked ahead: the whole peek */
	else
		spate_ring_release_head(s->rd, n);
}

int spate_source_open(struct spate_source *s, struct spate_stream *stream, uint32_t shard,
		      const char *log_dir, enum spate_ring_wait wait, uint32_t max,
		      const struct spate_source_start *at, const struct spate_slog_ctx *log,
		      struct spate_stats_tref *st)
{
	int rc;

	memset(s, 0, sizeof(*s));
	s->stream = stream;
	s->shard = shard;
	s->wait = wait;
	s->max = max;
	s->log = log;
	s->st = st;
	s->ring_cap = spate_stream_ring(stream, shard)->cap;
	if (log_dir) {
		s->log_dir = strdup(log_dir);
		s->drec = calloc(max, sizeof(*s->drec));
		s->doff = calloc(max, sizeof(*s->doff));
		if (!s->log_dir || !s->drec || !s->doff) {
			rc = -ENOMEM;
			goto err;
		}
	}
	rc = -ENOENT;
	if (s->log_dir && at->history)
		rc = to_log(s, at->from, at->arg,
			    at->from == SPATE_LOG_FROM_SEQ ? at->arg : UINT64_MAX);
	if (rc == -ENOENT) /* no log yet: the ring holds everything there is */
		rc = open_ring(s, at->ring);
	if (rc < 0)
		goto err;
	return 0;
err:
	spate_source_close(s);
	return rc;
}

static void rebase(struct spate_ring_rec *r, unsigned n, const uint8_t *old, size_t len,
		   uint8_t *now)
{
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *d = r[i].data;
		if (d >= old && d < old + len)
			r[i].data = now + (d - old);
	}
}

void *spate_source_abandon(struct spate_source *s, struct spate_ring_rec *a, unsigned n1,
			   struct spate_ring_rec *b, unsigned n2)
{
	if (!s->dbuf)
		return NULL;
	uint8_t *copy = malloc(s->dbuf_cap);
	if (!copy)
		return NULL;
	uint8_t *old = s->dbuf;
	memcpy(copy, old, s->dbuf_len);
	rebase(a, n1, old, s->dbuf_cap, copy);
	if (b != a)
		rebase(b, n2, old, s->dbuf_cap, copy);
	s->dbuf = copy;
	return old;
}

void spate_source_close(struct spate_source *s)
{
	/* Detached, not freed: the slot keeps what this consumer has not
	 * processed from producers until the next engine, its own readers in
	 * place, reaps it (engine.c, watch_stream). */
	spate_ring_reader_detach(s->rd);
	s->rd = NULL;
	spate_log_reader_close(s->lrd);
	s->lrd = NULL;
	free(s->log_dir);
	s->log_dir = NULL;
	free(s->dbuf);
	s->dbuf = NULL;
	free(s->drec);
	s->drec = NULL;
	free(s->doff);
	s->doff = NULL;
	s->dhave = 0;
	s->dbuf_len = s->dbuf_cap = 0;
}
