/* SPDX-License-Identifier: MIT */
/*
 * consumer.c - the event source mapping runtime: one task per (consumer,
 * shard, lane) turns ring records into plugin batches and applies the Lambda
 * rules to the results.
 *
 * Design. A task owns a ring reader on its shard. spate_task_poll() peeks up
 * to batch_size records / batch_bytes (zero-copy views), waits up to
 * batch_window for a fuller batch, drops expired records to the failure
 * destination, and delivers the batch. Results:
 *   OK       the batch is done;
 *   PARTIAL  records before failed_index are done, delivery resumes at it;
 *   RETRY    (or a negative return) the range is redelivered after an
 *            exponential back-off; with bisect_on_error it is first split in
 *            halves, down to the single poison record;
 *   FATAL    the consumer stops, its checkpoint stays at the last success.
 * A range whose records have been delivered more than max_retry_attempts
 * times goes to the on_failure stream, payload and all, and the shard moves
 * on. The ring is released only when the whole batch is handled, so a crash
 * at any point redelivers it: at-least-once.
 *
 * Parallelization: lane L of P reads the whole shard with its own reader and
 * takes the records whose key hash is L mod P, so per-key order holds and
 * lanes never wait for each other; the shard's checkpoint is the minimum of
 * its lanes' positions. The cost is that each lane walks every record header.
 *
 * Limits: one batch in flight per task; the bisect stack holds 64 ranges
 * (enough for 2^64 records); a plugin that crashes takes the process down.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/consumer.h"
#include "engine/plugin_host.h"
#include "spate/slog.h"

#define BISECT_DEPTH 64u

/* Several tasks of one consumer share a counter: they may run on
 * different workers, so these need an atomic add. */
static void add_shared(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static void task_log(const struct spate_plugin_host *h, enum spate_log_level lvl, const char *fmt,
		     ...)
{
	struct spate_task *t = h->host_private;
	struct spate_slog_ctx ctx = { t->c->p.name, t->ctx.stream, t->shard, t->lane };
	va_list ap;

	va_start(ap, fmt);
	spate_slog_v(lvl, &ctx, fmt, ap); /* text or JSON, rate-limited per call site */
	va_end(ap);
}

/* The engine's own messages about a task: consumer, stream, shard and lane
 * go in the context (text: "consumer/shard: ", JSON: fields). */
__attribute__((format(printf, 3, 4))) static void task_msg(const struct spate_task *t,
							  enum spate_log_level lvl,
							  const char *fmt, ...)
{
	struct spate_slog_ctx ctx = { t->c->p.name, spate_stream_name(t->c->stream), t->shard,
				      t->lane };
	va_list ap;

	va_start(ap, fmt);
	spate_slog_v(lvl, &ctx, fmt, ap);
	va_end(ap);
}

static int task_put(const struct spate_plugin_host *h, const char *stream, const void *key,
		    size_t key_len, const void *data, size_t len)
{
	struct spate_task *t = h->host_private;
	struct spate_shared_producer *sp = spate_producers_get(t->c->producers, stream);
	struct spate_put_result res;
	int rc;

	if (!sp)
		return -ENOENT;
	pthread_mutex_lock(&sp->lock);
	rc = spate_put(sp->prod, key, key_len, data, len, &res);
	pthread_mutex_unlock(&sp->lock);
	return rc;
}

/* Send one record to the failure destination, payload included. */
static void send_failed(struct spate_task *t, const struct spate_ring_rec *r, uint32_t attempts,
			enum spate_failure_reason why, const char *error)
{
	struct spate_consumer *c = t->c;
	struct spate_failed_record h;
	struct spate_put_result res;
	uint8_t stackbuf[4096], *buf = stackbuf;
	size_t total = sizeof(h) + r->len;
	int rc;

	add_shared(&c->failed, 1);
	if (why == SPATE_FAIL_RECORD_EXPIRED)
		add_shared(&c->expired, 1);
	if (t->st.slot) { /* counters region: this task's poller is the one writer */
		spate_stats_add(&t->st.slot->failed, 1);
		if (why == SPATE_FAIL_RECORD_EXPIRED)
			spate_stats_add(&t->st.slot->expired, 1);
	}
	if (!c->dlq) {
		task_msg(t, SPATE_LOG_WARN,
			 "record %" PRIu64 " given up (%s) and dropped: no on_failure destination",
			 r->seq, error && *error ? error : "no reason");
		return;
	}
	memset(&h, 0, sizeof(h));
	h.magic = SPATE_FAILED_MAGIC;
	h.hdr_size = sizeof(h);
	h.seq = r->seq;
	h.ts = r->ts;
	h.failed_ns = spate_now_ns();
	h.shard = t->shard;
	h.attempts = attempts;
	h.key_hash = r->key_hash;
	h.payload_len = r->len;
	h.reason = why;
	snprintf(h.consumer, sizeof(h.consumer), "%s", c->p.name);
	snprintf(h.stream, sizeof(h.stream), "%s", spate_stream_name(c->stream));
	snprintf(h.error, sizeof(h.error), "%s", error ? error : "");
	if (total > sizeof(stackbuf)) {
		buf = malloc(total);
		if (!buf) {
			task_msg(t, SPATE_LOG_ERROR,
				 "record %" PRIu64 " lost: no memory for the failure envelope", r->seq);
			return;
		}
	}
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), r->data, r->len);
	pthread_mutex_lock(&c->dlq->lock);
	rc = spate_put_hash(c->dlq->prod, r->key_hash, buf, total, &res);
	pthread_mutex_unlock(&c->dlq->lock);
	if (rc < 0)
		task_msg(t, SPATE_LOG_ERROR, "record %" PRIu64 " could not reach on_failure stream %s: %s",
			 r->seq, spate_stream_name(c->dlq->stream), strerror(-rc));
	if (buf != stackbuf)
		free(buf);
}

static bool expired(const struct spate_task *t, const struct spate_ring_rec *r, uint64_t now_rt)
{
	uint64_t age = t->c->p.max_age_ns;
	return age != UINT64_MAX && now_rt > r->ts && now_rt - r->ts > age;
}

static uint64_t backoff(const struct spate_consumer_params *p, uint32_t attempt)
{
	uint64_t b = p->backoff_ns;
	for (uint32_t i = 1; i < attempt && b < p->backoff_max_ns; i++)
		b *= 2;
	return b < p->backoff_max_ns ? b : p->backoff_max_ns;
}

uint64_t spate_consumer_shard_next(const struct spate_consumer *c, uint32_t shard)
{
	uint32_t lanes = c->p.parallelization;
	uint64_t min = UINT64_MAX;

	for (uint32_t l = 0; l < lanes; l++) {
		const struct spate_task *t = &c->tasks[shard * lanes + l];
		/* Acquire: pairs with the release store after a batch is done. */
		uint64_t v = atomic_load_explicit(&t->next_seq, memory_order_acquire);
		/* A lane whose position is still unknown has handled nothing:
		 * the shard's position is unknown too, not the other lanes'. */
		if (v == UINT64_MAX)
			return UINT64_MAX;
		if (v < min)
			min = v;
	}
	return min;
}

/* ------------------------------------------------------------------------ */
/* Sources: the shard's ring, or its log (history, or a consumer that fell   */
/* too far behind)                                                          */
/* ------------------------------------------------------------------------ */

static int open_ring_reader(struct spate_task *t, enum spate_ring_start start)
{
	struct spate_ring *r = spate_stream_ring(t->c->stream, t->shard);
	int rc = spate_ring_reader_open(r, start, t->c->p.wait, &t->rd);

	if (rc == -ENOTSUP) /* the ring has no futex wake-ups: yield instead */
		rc = spate_ring_reader_open(r, start, SPATE_RING_WAIT_YIELD, &t->rd);
	return rc;
}

void spate_consumer_task_catchup(struct spate_task *t)
{
	const struct spate_stream_dur *d = spate_stream_dur(t->c->stream, t->shard);
	/* Relaxed: display only. */
	uint64_t next = atomic_load_explicit(&t->next_seq, memory_order_relaxed);

	if (!t->st.slot)
		return;
	spate_stats_task_catchup(t->st.slot, next == UINT64_MAX ? 0 : next,
				 atomic_load_explicit(&d->written_seq, memory_order_relaxed));
}

/* Read the shard's log from @p from / @p arg; the ring reader (if any) is
 * closed, so this task no longer holds the writers back. */
static int to_disk(struct spate_task *t, enum spate_log_from from, uint64_t arg)
{
	struct spate_log_reader *lrd = NULL;
	int rc = spate_log_reader_open(t->log_dir, from, arg, &lrd);

	if (rc < 0)
		return rc;
	if (t->rd) {
		spate_ring_reader_close(t->rd);
		t->rd = NULL;
	}
	t->lrd = lrd;
	t->dhave = 0;
	t->dbuf_len = 0;
	/* Relaxed: a status for monitors. */
	atomic_store_explicit(&t->on_log, 1, memory_order_relaxed);
	spate_consumer_task_catchup(t);
	return 0;
}

/* At the end of the log: go on from the ring if it still holds the next
 * record (the persister gates the ring, so it does unless writers moved on
 * between the log's end and now, and then the log has those records).
 * Returns 1 (on the ring), 0 (stay on the log), <0. */
static int to_ring(struct spate_task *t)
{
	/* Relaxed: only this task's poller writes it. */
	uint64_t next = atomic_load_explicit(&t->next_seq, memory_order_relaxed);
	int rc = open_ring_reader(t, SPATE_RING_START_OLDEST);

	if (rc < 0)
		return rc;
	if (next != UINT64_MAX) {
		rc = spate_ring_reader_resolve_seq(t->rd);
		if (rc == 0 && t->rd->seq != UINT64_MAX && t->rd->seq > next) {
			spate_ring_reader_close(t->rd);
			t->rd = NULL;
			return 0;
		}
		/* Pass over the batches the log gave us already, headers only;
		 * the skip filter drops the rest of the batch holding next. */
		struct spate_ring_span sp[64];
		int n;
		while ((n = spate_ring_peek_batches(t->rd, sp, 64, UINT64_MAX)) > 0) {
			unsigned done = 0;
			int k = 0;
			while (k < n && sp[k].base_seq + sp[k].count <= next)
				done += sp[k++].count;
			if (done)
				spate_ring_release(t->rd, done);
			if (k < n)
				break;
		}
		if (next > t->skip_below_seq)
			t->skip_below_seq = next; /* the ring's older records are done */
	}
	spate_log_reader_close(t->lrd);
	t->lrd = NULL;
	atomic_store_explicit(&t->on_log, 0, memory_order_relaxed);
	if (t->st.slot)
		spate_stats_task_on_ring(t->st.slot, t->rd->index);
	return 1;
}

static int dbuf_reserve(struct spate_task *t, size_t more)
{
	if (t->dbuf_len + more <= t->dbuf_cap)
		return 0;
	size_t cap = t->dbuf_cap ? t->dbuf_cap : 64 * 1024;
	while (cap < t->dbuf_len + more)
		cap *= 2;
	uint8_t *b = realloc(t->dbuf, cap);
	if (!b)
		return -ENOMEM;
	t->dbuf = b;
	t->dbuf_cap = cap;
	return 0;
}

/* spate_ring_peek() for a task on the log: buffered records first, then
 * more from the log, copied (a log reader's views last only until its next
 * read; a batch must stay put until it is released). */
static int disk_peek(struct spate_task *t, unsigned max, uint64_t max_bytes)
{
	struct spate_consumer *c = t->c;
	uint64_t bytes = 0;

	for (uint32_t i = 0; i < t->dhave; i++)
		bytes += t->drec[i].len;
	while (t->dhave < max && bytes < max_bytes) {
		struct spate_ring_rec r[64];
		uint64_t skipped = 0;
		unsigned want = max - t->dhave < 64 ? max - t->dhave : 64;
		int n = spate_log_read(t->lrd, r, want, &skipped);
		if (skipped) {
			/* Relaxed: a statistic. */
			atomic_fetch_add_explicit(&t->disk_gaps, skipped, memory_order_relaxed);
			task_msg(t, SPATE_LOG_WARN,
				 "retention deleted %" PRIu64 " record(s) before they were read; going "
				 "on at the oldest retained record",
				 skipped);
		}
		if (n <= 0) {
			if (n < 0)
				return n;
			break;
		}
		for (int i = 0; i < n; i++) {
			size_t sz = ((size_t)r[i].len + 7) & ~(size_t)7;
			if (dbuf_reserve(t, sz) < 0)
				return -ENOMEM;
			if (r[i].len)
				memcpy(t->dbuf + t->dbuf_len, r[i].data, r[i].len);
			t->drec[t->dhave] = r[i];
			t->drec[t->dhave].data = NULL;
			t->doff[t->dhave] = t->dbuf_len;
			t->dbuf_len += sz;
			t->dhave++;
			bytes += r[i].len;
		}
		atomic_fetch_add_explicit(&t->disk_records, (uint64_t)n, memory_order_relaxed);
	}
	if (!t->dhave) {
		int rc = to_ring(t);
		return rc < 0 ? rc : 0;
	}
	/* The catch-up's end moves on while producers write: show the
	 * current one (where the ring will take over, at the latest). */
	if (t->st.slot)
		spate_stats_set(&t->st.slot->catchup_target,
				atomic_load_explicit(&spate_stream_dur(c->stream, t->shard)->written_seq,
						     memory_order_relaxed));
	/* As the ring does: stop before the record that passes max_bytes
	 * (but always at least one). */
	unsigned k = 0;
	bytes = 0;
	while (k < t->dhave && k < max && (k == 0 || bytes + t->drec[k].len <= max_bytes)) {
		bytes += t->drec[k].len;
		t->raw[k] = t->drec[k];
		t->raw[k].data = t->dbuf + t->doff[k];
		k++;
	}
	return (int)k;
}

static void disk_release(struct spate_task *t, unsigned k)
{
	if (k > t->dhave)
		k = t->dhave;
	t->dhave -= k;
	memmove(t->drec, t->drec + k, t->dhave * sizeof(*t->drec));
	memmove(t->doff, t->doff + k, t->dhave * sizeof(*t->doff));
	if (!t->dhave) {
		t->dbuf_len = 0;
	} else if (t->doff[0] > t->dbuf_cap / 2) {
		/* Payloads are in order: slide the live ones to the front. */
		size_t base = t->doff[0];
		memmove(t->dbuf, t->dbuf + base, t->dbuf_len - base);
		t->dbuf_len -= base;
		for (uint32_t i = 0; i < t->dhave; i++)
			t->doff[i] -= base;
	}
}

static int src_peek(struct spate_task *t, unsigned max, uint64_t max_bytes)
{
	return t->lrd ? disk_peek(t, max, max_bytes) : spate_ring_peek(t->rd, t->raw, max, max_bytes);
}

static void src_release(struct spate_task *t, unsigned k)
{
	if (t->lrd)
		disk_release(t, k);
	else
		spate_ring_release(t->rd, k);
}

/* A task on a persisted stream more than half a ring behind goes on from the
 * log, so it never holds the producers back (only the persister does), if
 * the log already has its next record. */
static void maybe_spill(struct spate_task *t)
{
	uint64_t lag_bytes = 0;

	spate_ring_lag(t->rd, NULL, &lag_bytes);
	if (lag_bytes <= t->ring_cap / 2 || t->rd->seq == UINT64_MAX)
		return;
	/* Relaxed: only this task's poller writes it. */
	uint64_t next = atomic_load_explicit(&t->next_seq, memory_order_relaxed);
	if (next == UINT64_MAX || next < t->rd->seq)
		next = t->rd->seq;
	const struct spate_stream_dur *d = spate_stream_dur(t->c->stream, t->shard);
	/* Relaxed: a hint. The log's contents are read through the file, not
	 * this memory; were the hint early, the log reader would find its end
	 * and the task would go back to the ring (to_ring). */
	uint64_t written = atomic_load_explicit(&d->written_seq, memory_order_relaxed);
	if (written <= next)
		return;
	if (to_disk(t, SPATE_LOG_FROM_SEQ, next) == 0) {
		atomic_fetch_add_explicit(&t->spills, 1, memory_order_relaxed);
		task_msg(t, SPATE_LOG_INFO,
			 "%" PRIu64 " bytes behind (more than half the ring): reading from the log "
			 "at %" PRIu64 " until caught up",
			 lag_bytes, next);
	}
}

static void batch_done(struct spate_task *t, uint64_t now)
{
	struct spate_consumer *c = t->c;
	uint64_t next = t->raw[t->n_raw - 1].seq + 1;

	src_release(t, t->n_raw);
	/* Release: pairs with the acquire in spate_consumer_shard_next(). */
	atomic_store_explicit(&t->next_seq, next, memory_order_release);
	if (t->st.slot)
		spate_stats_set(&t->st.slot->checkpoint, next);
	if (c->ckpt && (!c->p.checkpoint_interval_ns || now - t->ckpt_ns >= c->p.checkpoint_interval_ns)) {
		t->ckpt_ns = now;
		uint64_t shard_next = c->p.parallelization == 1 ? next
								: spate_consumer_shard_next(c, t->shard);
		if (shard_next != UINT64_MAX)
			spate_stream_ckpt_set(c->ckpt, t->shard, shard_next);
	}
	t->n_raw = t->n = 0;
	t->lo = t->hi = t->depth = 0;
	t->attempt = 0;
	t->prior = 0;
}

static void task_die(struct spate_task *t, const char *why)
{
	struct spate_consumer *c = t->c;

	t->dead = true;
	pthread_mutex_lock(&c->lock);
	if (!c->error[0])
		snprintf(c->error, sizeof(c->error), "shard %u: %.150s", t->shard, why);
	pthread_mutex_unlock(&c->lock);
	/* Relaxed: a status for readers of the stats. */
	atomic_store_explicit(&c->state, SPATE_CONSUMER_FAILED, memory_order_relaxed);
	task_msg(t, SPATE_LOG_ERROR, "consumer stopped: %s", why);
}

/* Peek a new batch; apply starting-position filters, the window, lanes and
 * expiry. Returns >0 records consumed without delivery (skipped), 0 when a
 * batch is ready or nothing is there, <0 on a ring error. */
static int assemble(struct spate_task *t, uint64_t now, bool *ready)
{
	const struct spate_consumer_params *p = &t->c->p;

	if (t->log_dir && t->rd && !t->window_start)
		maybe_spill(t);
	int got = src_peek(t, p->batch_size, p->batch_bytes);

	*ready = false;
	if (got <= 0) {
		t->window_start = 0;
		return got;
	}
	/* The position becomes known at the first record seen: nothing below
	 * it is this task's to handle. Lanes of a shard checkpoint at their
	 * minimum, so a lane stuck on its first batch holds the shard back
	 * (and shows as lag) instead of being skipped over. */
	if (atomic_load_explicit(&t->next_seq, memory_order_relaxed) == UINT64_MAX)
		atomic_store_explicit(&t->next_seq, t->raw[0].seq, memory_order_release);
	if (t->skip_below_seq || t->skip_below_ts) {
		int k = 0;
		while (k < got && (t->raw[k].seq < t->skip_below_seq || t->raw[k].ts < t->skip_below_ts))
			k++;
		if (k < got) {
			t->skip_below_seq = 0;
			t->skip_below_ts = 0;
		}
		if (k > 0) {
			src_release(t, (unsigned)k);
			atomic_store_explicit(&t->next_seq, t->raw[k - 1].seq + 1, memory_order_release);
			return k;
		}
	}
	if ((uint32_t)got < p->batch_size && p->batch_window_ns) {
		if (!t->window_start)
			t->window_start = now;
		if (now - t->window_start < p->batch_window_ns)
			return 0; /* peek again later: the records stay unreleased */
	}
	t->window_start = 0;
	t->n_raw = (uint32_t)got;
	if (p->parallelization > 1) {
		uint32_t n = 0;
		for (int i = 0; i < got; i++)
			if (t->raw[i].key_hash % p->parallelization == t->lane)
				t->views[n++] = t->raw[i];
		t->n = n;
	} else {
		t->n = (uint32_t)got;
	}
	if (p->max_age_ns != UINT64_MAX) {
		uint64_t rt = spate_now_ns();
		uint32_t i = 0, n;
		/* Find the first expired record; compact only from there (the
		 * common case, nothing expired, costs one load per view). */
		while (i < t->n && !expired(t, &t->views[i], rt))
			i++;
		for (n = i; i < t->n; i++) {
			if (expired(t, &t->views[i], rt))
				send_failed(t, &t->views[i], 0, SPATE_FAIL_RECORD_EXPIRED,
					    "older than max_record_age");
			else
				t->views[n++] = t->views[i];
		}
		t->n = n;
	}
	t->lo = 0;
	t->hi = t->n;
	t->depth = 0;
	t->attempt = 0;
	t->prior = 0;
	*ready = true;
	return 0;
}

int spate_task_poll(struct spate_task *t, uint64_t now)
{
	struct spate_consumer *c = t->c;
	const struct spate_consumer_params *p = &c->p;
	int handled = 0;

	if (t->dead)
		return -1;
	if (t->pl->flush && t->pl->flush_interval_ns && now >= t->next_flush) {
		t->pl->flush(t->state, spate_now_ns());
		t->next_flush = now + t->pl->flush_interval_ns;
	}
	if (t->n_raw == 0) {
		bool ready;
		int rc = assemble(t, now, &ready);
		if (rc < 0) {
			char why[120];
			snprintf(why, sizeof(why), "%s: %s", t->lrd ? "reading the log" : "reading the ring",
				 rc == -EPIPE ? "reader evicted" : strerror(-rc));
			task_die(t, why);
			return -1;
		}
		if (!ready)
			return rc;
	} else if (now < t->retry_at) {
		return 0;
	}

	for (;;) {
		if (t->lo >= t->hi) {
			if (!t->depth)
				break;
			t->depth--;
			t->lo = t->stack[t->depth][0];
			t->hi = t->stack[t->depth][1];
			t->prior = t->stack[t->depth][2];
			t->attempt = 0;
			continue;
		}
		if (p->max_age_ns != UINT64_MAX && t->attempt) {
			uint64_t rt = spate_now_ns();
			while (t->lo < t->hi && expired(t, &t->views[t->lo], rt)) {
				send_failed(t, &t->views[t->lo], t->prior + t->attempt,
					    SPATE_FAIL_RECORD_EXPIRED,
					    "older than max_record_age while retrying");
				t->lo++;
			}
			if (t->lo >= t->hi)
				continue;
		}

		uint32_t cnt = t->hi - t->lo;
		struct spate_batch b = {
			.recs = t->views + t->lo,
			.count = cnt,
			.shard = t->shard,
			.attempt = t->attempt + 1,
			.lane = t->lane,
			.consumer = p->name,
			.stream = spate_stream_name(c->stream),
			.host = &t->host,
			.struct_size = sizeof(b),
		};
		struct spate_batch_result res;
		memset(&res, 0, sizeof(res));
		res.struct_size = sizeof(res); /* plugin ABI 1 revision 1 */
		/* Records read back from the log would measure their age, not
		 * the pipeline: sample only ring deliveries. */
		if ((t->lat_tick++ & 7) == 0 && !t->lrd) {
			/* The oldest record's commit to its delivery: what the
			 * producer -> plugin latency is, sampled to stay cheap.
			 * Into the consumer's histogram (the region's, or the
			 * process-local one when counters are off), shared by
			 * every worker polling one of its tasks: a multi-writer
			 * record. Its few relaxed RMWs come once per sampled
			 * batch (1 delivery in 8), never per record: negligible. */
			uint64_t rt = spate_now_ns();
			struct spate_hist *lh = t->st.slot ? t->st.latency : c->lat;
			if (lh)
				spate_hist_record_mw(lh, rt > b.recs[0].ts ? rt - b.recs[0].ts : 0);
		}
		/* Counters region: time process() on the deliveries whose latency
		 * was just sampled (1 in 8), to keep clock reads off the others. */
		uint64_t pt0 = t->st.slot && (t->lat_tick & 7) == 1 ? spate_mono_ns() : 0;
		int rc = t->pl->process(t->state, &b, &res);
		t->attempt++;
		if (t->st.slot)
			spate_stats_task_delivery(&t->st, cnt, pt0 ? spate_mono_ns() - pt0 : 0,
						  t->attempt > 1);
		add_shared(&c->batches, 1);
		if (t->attempt > 1)
			add_shared(&c->retries, 1);
		if (!t->first_done) {
			t->first_done = true;
			uint64_t d = spate_mono_ns() - c->started_ns;
			uint64_t cur = atomic_load_explicit(&c->first_batch_ns, memory_order_relaxed);
			while ((cur == 0 || d < cur) &&
			       !atomic_compare_exchange_weak_explicit(&c->first_batch_ns, &cur, d,
								      memory_order_relaxed,
								      memory_order_relaxed))
				;
		}

		enum spate_batch_status st = rc < 0 ? SPATE_BATCH_RETRY : res.status;
		if (rc < 0 && !res.error[0])
			snprintf(res.error, sizeof(res.error), "process returned %d (%s)", rc,
				 strerror(-rc));
		if (st == SPATE_BATCH_PARTIAL && res.failed_index >= cnt)
			st = SPATE_BATCH_OK; /* nothing failed after all */
		if (st == SPATE_BATCH_OK || st == SPATE_BATCH_PARTIAL) {
			uint32_t done = st == SPATE_BATCH_OK ? cnt : res.failed_index;
			uint64_t bytes = 0;
			for (uint32_t i = 0; i < done; i++)
				bytes += t->views[t->lo + i].len;
			add_shared(&c->records, done);
			add_shared(&c->bytes, bytes);
			if (t->st.slot && done)
				spate_stats_task_done(t->st.slot, done, bytes, t->views[t->lo + done - 1].ts);
			handled += (int)done;
			t->lo += done;
			if (st == SPATE_BATCH_OK) {
				t->attempt = 0;
				continue;
			}
			if (done)
				t->attempt = 1; /* the failed record was delivered once, just now */
		} else if (st == SPATE_BATCH_FATAL) {
			task_die(t, res.error[0] ? res.error : "plugin returned FATAL");
			return -1;
		} else if (st != SPATE_BATCH_RETRY) {
			task_die(t, "plugin returned an unknown status");
			return -1;
		}
		/* Failure of [lo, hi): split, give up, or back off. */
		if (t->st.slot)
			spate_stats_add(&t->st.slot->errors, 1);
		if (p->bisect && t->hi - t->lo > 1 && st == SPATE_BATCH_RETRY &&
		    t->depth < BISECT_DEPTH) {
			uint32_t mid = t->lo + (t->hi - t->lo) / 2;
			/* Both halves were in every delivery of [lo, hi): the
			 * failure envelope counts them (attempts). */
			t->prior += t->attempt;
			t->stack[t->depth][0] = mid;
			t->stack[t->depth][1] = t->hi;
			t->stack[t->depth][2] = t->prior;
			t->depth++;
			if (t->st.slot)
				spate_stats_add(&t->st.slot->bisections, 1);
			t->hi = mid;
			t->attempt = 0;
			continue;
		}
		if (p->max_retry_attempts >= 0 && t->attempt > (uint64_t)p->max_retry_attempts) {
			/* Bisecting leaves a single poison record here; otherwise the
			 * whole range is given up, as Lambda does. */
			for (uint32_t i = t->lo; i < t->hi; i++)
				send_failed(t, &t->views[i], t->prior + t->attempt,
					    SPATE_FAIL_RETRIES_EXHAUSTED, res.error);
			handled += (int)(t->hi - t->lo);
			t->lo = t->hi;
			t->attempt = 0;
			continue;
		}
		t->retry_at = now + backoff(p, t->attempt);
		return handled;
	}
	handled += (int)(t->n_raw - t->n); /* other lanes' and expired records */
	batch_done(t, now);
	return handled ? handled : 1;
}

uint64_t spate_task_deadline(const struct spate_task *t, uint64_t now)
{
	uint64_t d = UINT64_MAX;

	if (t->dead)
		return UINT64_MAX;
	if (t->n_raw && t->retry_at > now)
		d = t->retry_at - now;
	else if (t->n_raw)
		d = 0;
	if (t->window_start) {
		uint64_t end = t->window_start + t->c->p.batch_window_ns;
		uint64_t w = end > now ? end - now : 0;
		if (w < d)
			d = w;
	}
	if (t->pl && t->pl->flush && t->pl->flush_interval_ns) {
		uint64_t f = t->next_flush > now ? t->next_flush - now : 0;
		if (f < d)
			d = f;
	}
	return d;
}

int spate_consumer_init(struct spate_consumer *c, const uint64_t *resume_next, char *err,
			size_t errlen)
{
	const struct spate_consumer_params *p = &c->p;
	uint32_t shards = spate_stream_shards(c->stream);
	uint32_t lanes = p->parallelization ? p->parallelization : 1;
	uint32_t i;
	int rc;

	c->ntasks = shards * lanes;
	c->tasks = calloc(c->ntasks, sizeof(*c->tasks));
	if (!c->tasks)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	atomic_store_explicit(&c->state, SPATE_CONSUMER_STOPPED, memory_order_relaxed);
	rc = spate_stream_ckpt_open(c->stream, p->name, &c->ckpt);
	if (rc < 0) {
		snprintf(err, errlen, "consumer %s: checkpoint table of stream %s: %s", p->name,
			 spate_stream_name(c->stream), strerror(-rc));
		goto err;
	}
	for (i = 0; i < c->ntasks; i++) {
		struct spate_task *t = &c->tasks[i];
		uint32_t shard = i / lanes;
		uint64_t resume = resume_next ? resume_next[shard] : UINT64_MAX;
		enum spate_ring_start start = SPATE_RING_START_OLDEST;

		t->c = c;
		t->shard = shard;
		t->lane = i % lanes;
		t->raw = calloc(p->batch_size, sizeof(*t->raw));
		t->views = lanes > 1 ? calloc(p->batch_size, sizeof(*t->views)) : t->raw;
		t->stack = calloc(BISECT_DEPTH, sizeof(*t->stack));
		if (!t->raw || !t->views || !t->stack) {
			rc = -ENOMEM;
			goto err;
		}
		atomic_store_explicit(&t->next_seq, UINT64_MAX, memory_order_relaxed);
		t->ring_cap = spate_stream_ring(c->stream, shard)->cap;
		char dir[SPATE_CONFIG_PATH_MAX];
		if (c->log_cs && spate_config_stream_log_dir(c->cfg, c->log_cs, shard, dir, sizeof(dir)) == 0) {
			t->log_dir = strdup(dir);
			t->drec = calloc(p->batch_size, sizeof(*t->drec));
			t->doff = calloc(p->batch_size, sizeof(*t->doff));
			if (!t->log_dir || !t->drec || !t->doff) {
				rc = -ENOMEM;
				goto err;
			}
		}
		/* Where to begin; on a persisted stream, history comes from the
		 * log (everything retained), then the ring once caught up. */
		enum spate_log_from from = SPATE_LOG_FROM_OLDEST;
		uint64_t arg = 0;
		bool history = true;
		if (resume != UINT64_MAX) {
			t->skip_below_seq = resume; /* the checkpoint wins over starting_position */
			atomic_store_explicit(&t->next_seq, resume, memory_order_relaxed);
			from = SPATE_LOG_FROM_SEQ;
			arg = resume;
		} else {
			switch (p->start) {
			case SPATE_START_TRIM_HORIZON:
				break;
			case SPATE_START_LATEST:
				start = SPATE_RING_START_LATEST;
				history = false;
				break;
			case SPATE_START_AT_SEQUENCE:
				t->skip_below_seq = p->start_seq;
				from = SPATE_LOG_FROM_SEQ;
				arg = p->start_seq;
				break;
			case SPATE_START_AFTER_SEQUENCE:
				t->skip_below_seq = p->start_seq + 1;
				from = SPATE_LOG_FROM_SEQ;
				arg = p->start_seq + 1;
				break;
			case SPATE_START_AT_TIMESTAMP:
				t->skip_below_ts = p->start_ts;
				from = SPATE_LOG_FROM_TIME;
				arg = p->start_ts;
				break;
			}
		}
		rc = -ENOENT;
		if (t->log_dir && history)
			rc = to_disk(t, from, arg);
		if (rc == -ENOENT) /* no log yet: the ring holds everything there is */
			rc = open_ring_reader(t, start);
		if (rc < 0) {
			snprintf(err, errlen, "consumer %s: reader on %s/%u: %s", p->name,
				 spate_stream_name(c->stream), shard, strerror(-rc));
			goto err;
		}
		t->host.struct_size = sizeof(t->host);
		t->host.log = task_log;
		t->host.put = task_put;
		t->host.host_private = t;
		t->ctx.struct_size = sizeof(t->ctx);
		t->ctx.consumer = p->name;
		t->ctx.stream = spate_stream_name(c->stream);
		t->ctx.shard = shard;
		t->ctx.lane = t->lane;
		t->ctx.opts = p->opts;
		t->ctx.n_opts = p->n_opts;
		t->ctx.host = &t->host;
	}
	return 0;
err:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "consumer %s: out of memory", p->name);
	spate_consumer_fini(c);
	return rc;
}

int spate_consumer_start_plugins(struct spate_consumer *c, char *err, size_t errlen)
{
	const struct spate_plugin *pl = spate_plugin_lib_desc(c->lib);
	uint64_t worst = 0;

	for (uint32_t i = 0; i < c->ntasks; i++) {
		struct spate_task *t = &c->tasks[i];
		uint64_t t0 = spate_mono_ns();
		int rc = pl->init(&t->ctx, &t->state);
		uint64_t d = spate_mono_ns() - t0;

		if (d > worst)
			worst = d;
		if (rc < 0) {
			snprintf(err, errlen, "consumer %s: plugin %s init for shard %u failed: %s",
				 c->p.name, pl->name, t->shard, strerror(-rc));
			while (i--) {
				struct spate_task *u = &c->tasks[i];
				if (u->pl->fini)
					u->pl->fini(u->state);
				u->pl = NULL;
				u->state = NULL;
			}
			return rc;
		}
		t->pl = pl;
		t->next_flush = spate_mono_ns() + pl->flush_interval_ns;
		t->first_done = false;
		t->dead = false;
	}
	atomic_store_explicit(&c->cold_start_ns, worst, memory_order_relaxed);
	c->started_ns = spate_mono_ns();
	atomic_store_explicit(&c->state, SPATE_CONSUMER_RUNNING, memory_order_relaxed);
	return 0;
}

void spate_consumer_stop_plugins(struct spate_consumer *c)
{
	for (uint32_t i = 0; i < c->ntasks; i++) {
		struct spate_task *t = &c->tasks[i];
		if (!t->pl)
			continue;
		if (t->pl->flush)
			t->pl->flush(t->state, spate_now_ns());
		if (t->pl->fini)
			t->pl->fini(t->state);
		t->pl = NULL;
		t->state = NULL;
	}
	/* With a checkpoint_interval the shared table may lag: bring it up to
	 * what was handled. */
	if (c->ckpt) {
		uint32_t shards = spate_stream_shards(c->stream);
		for (uint32_t s = 0; s < shards; s++) {
			uint64_t next = spate_consumer_shard_next(c, s);
			if (next != UINT64_MAX)
				spate_stream_ckpt_set(c->ckpt, s, next);
		}
	}
	if (atomic_load_explicit(&c->state, memory_order_relaxed) == SPATE_CONSUMER_RUNNING)
		atomic_store_explicit(&c->state, SPATE_CONSUMER_STOPPED, memory_order_relaxed);
}

void spate_consumer_fini(struct spate_consumer *c)
{
	free(c->lat);
	c->lat = NULL;
	if (!c->tasks)
		return;
	for (uint32_t i = 0; i < c->ntasks; i++) {
		struct spate_task *t = &c->tasks[i];
		spate_ring_reader_close(t->rd);
		spate_log_reader_close(t->lrd);
		free(t->log_dir);
		free(t->dbuf);
		free(t->drec);
		free(t->doff);
		if (t->views != t->raw)
			free(t->views);
		free(t->raw);
		free(t->stack);
	}
	free(c->tasks);
	c->tasks = NULL;
	c->ntasks = 0;
	pthread_mutex_destroy(&c->lock);
}
