/* SPDX-License-Identifier: MIT */
/*
 * Internal: a shard source, the records of one stream shard for one reader,
 * from the shard's ring or from its log, with the hand-over between them
 * kept inside. The consumer peeks and releases without knowing which one
 * it reads. Not installed.
 *
 * Threads: one poller at a time (the task's worker, or a helper holding the
 * task lock); the relaxed figures (log_records, ...) may be read by any
 * thread.
 */
#ifndef SPATE_ENGINE_SOURCE_H
#define SPATE_ENGINE_SOURCE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spate/log.h"
#include "spate/ring.h"
#include "spate/slog.h"
#include "spate/stats.h"
#include "spate/stream.h"

/** Where a source begins. */
struct spate_source_start {
	enum spate_ring_start ring;  /**< on the ring: oldest or latest */
	bool history;                /**< a persisted shard: begin in its log */
	enum spate_log_from from;    /**< in the log: where */
	uint64_t arg;                /**< its sequence number or time */
};

struct spate_source {
	/* Set by spate_source_open(), constant after. */
	struct spate_stream *stream;
	uint32_t shard;
	enum spate_ring_wait wait;
	uint32_t max;                  /**< the most records one peek returns */
	char *log_dir;                 /**< NULL: the stream has no log */
	uint64_t ring_cap;             /**< the shard ring's size (spill threshold) */
	const struct spate_slog_ctx *log; /**< context of its messages (the task's) */
	struct spate_stats_tref *st;   /**< the task's counters slot (slot never NULL) */

	/* The poller's. */
	struct spate_ring_reader *rd;  /**< non-NULL: on the ring */
	struct spate_log_reader *lrd;  /**< non-NULL: on the log (rd is NULL) */
	uint64_t skip_below;           /**< on the ring: records below were read from the log */
	uint8_t *dbuf;                 /**< payload copies of buffered log records */
	size_t dbuf_len, dbuf_cap;
	struct spate_ring_rec *drec;   /**< [max] buffered, not released (data: NULL) */
	uint64_t *doff;                /**< [max] their payload offsets in dbuf */
	uint32_t dhave;

	/* Figures: written by the poller (load + store), read by anyone
	 * (relaxed: statistics). */
	_Atomic uint64_t log_records;  /**< records read from the log */
	_Atomic uint64_t log_gaps;     /**< records retention deleted under the reader */
	_Atomic uint32_t spills;       /**< switches from the ring to the log */
	_Atomic uint32_t on_log;       /**< 1 while reading the log */
};

/**
 * Set @p s up for shard @p shard of @p stream (log directory @p log_dir, or
 * NULL), at most @p max records per peek, positioned at @p at.
 * @p log and @p st must outlive the source. @return 0 or -errno (-ENOMEM,
 * the errors of the ring and log readers).
 */
int spate_source_open(struct spate_source *s, struct spate_stream *stream, uint32_t shard,
		      const char *log_dir, enum spate_ring_wait wait, uint32_t max,
		      const struct spate_source_start *at, const struct spate_slog_ctx *log,
		      struct spate_stats_tref *st);
/**
 * Up to @p max records (and about @p max_bytes: always one at least) from
 * the first unreleased one, into @p out (views valid until they are
 * released). @p next is the reader's position (the next record it has to
 * handle, UINT64_MAX if unknown): a ring reader more than half a ring
 * behind moves to the log from there, and the log hands back to the ring at
 * its end, both inside this call and only when @p may_switch (nothing
 * peeked is held back for a batching window).
 * @return records (>= 0), or -errno (-EPIPE: the ring reader was evicted;
 *         the log reader's errors).
 */
int spate_source_peek(struct spate_source *s, struct spate_ring_rec *out, unsigned max,
		      uint64_t max_bytes, uint64_t next, bool may_switch);
/** Release the first @p n records peeked: done with them. */
void spate_source_release(struct spate_source *s, unsigned n);
/**
 * Up to @p max records (about @p max_bytes) after those of the last peek,
 * which stay unreleased: the batch after the one in use (a pipelined
 * hand-over). Only on the ring, and not when the reader is due to move to
 * the log (0: then the caller peeks as usual once it released).
 * @return records added (>= 0), or -errno as spate_source_peek().
 */
int spate_source_peek_more(struct spate_source *s, struct spate_ring_rec *out, unsigned max,
			   uint64_t max_bytes);
/** Release the first @p n records peeked and keep the rest peeked (the
 *  records of spate_source_peek_more()). */
void spate_source_release_head(struct spate_source *s, unsigned n);
/** Whether the source reads the log now. */
static inline bool spate_source_on_log(const struct spate_source *s)
{
	return s->lrd != NULL;
}
/** The ring reader's slot, UINT32_MAX while on the log. */
static inline uint32_t spate_source_reader_slot(const struct spate_source *s)
{
	return s->rd ? s->rd->index : UINT32_MAX;
}
/** Sleep up to @p ns for new records when on the ring (the shard's futex);
 *  on the log there is work until it catches up: no sleep.
 *  @return whether it slept. */
static inline bool spate_source_wait(struct spate_source *s, uint64_t ns)
{
	if (!s->rd)
		return false;
	spate_ring_reader_wait(s->rd, ns);
	return true;
}
/** Tell the counters slot where the source reads (after the slot moved). */
void spate_source_describe(struct spate_source *s, uint64_t next);
/**
 * A call still reading the records peeked will not return (timeout): give
 * the source a copy of its log buffer, pointing the @p n1 records of @p a
 * and @p n2 of @p b that were peeked from it at the copy, and return the
 * old buffer for the caller to hand to that call's thread (NULL: nothing to
 * hand over, e.g. on the ring, whose records stay mapped). On no memory the
 * buffer stays (NULL).
 */
void *spate_source_abandon(struct spate_source *s, struct spate_ring_rec *a, unsigned n1,
			   struct spate_ring_rec *b, unsigned n2);
/** Close the readers, free the buffers. NULL-safe fields; idempotent. */
void spate_source_close(struct spate_source *s);

#endif
