/* SPDX-License-Identifier: MIT */
/*
 * consumer.c - the event source mapping runtime: one task per (consumer,
 * shard, lane) turns ring records into plugin batches and applies the Lambda
 * rules to the results.
 *
 * Design. A task owns a shard source (source.c: the ring, or the shard's
 * log for history and for a task that fell behind, behind one peek/release
 * pair). spate_task_poll() peeks up to batch_size records / batch_bytes
 * (zero-copy views on the ring), waits up to batch_window for a fuller
 * batch, drops expired records to the failure destination, and delivers the
 * batch. Results:
 *   OK       the batch is done;
 *   PARTIAL  records before failed_index are done, delivery resumes at it;
 *            with bisect_on_error the batch is split at it (Lambda);
 *   RETRY    (or a negative return) the range is redelivered after an
 *            exponential back-off; with bisect_on_error it is first split in
 *            halves, down to the single poison record;
 *   FATAL    the consumer stops, its checkpoint stays at the last success.
 * A range whose records have been delivered more than max_retry_attempts
 * times goes to the on_failure stream, payload and all (cut to fit the
 * stream's max_record_size, its length kept), and the shard moves on; after
 * a PARTIAL only the record that failed. The source is released only when
 * the whole batch is handled, so a crash at any point redelivers it:
 * at-least-once.
 *
 * Deliveries that never return. Around each process() call a worker
 * publishes what it delivers in its thread's record (struct spate_inflight):
 * the engine's watchdog gives up a call past the consumer's timeout (a CAS
 * decides between it and the returning worker), and the crash handler names
 * the batch in its line. An attempt record per task in
 * <state_dir>/<consumer>.attempts (a shared file mapping) says which range
 * was being delivered when the process died: at the next start that
 * delivery counts as failed, so a crashing batch meets the failure rules
 * instead of crash-looping.
 *
 * Counters: each delivery is counted once, in the task's counters slot (the
 * counters region's, or the consumer's own array when the region is off),
 * by the task's one poller: plain relaxed load + store, no RMW. The
 * engine's stats API sums the slots (spate_consumer_sum).
 *
 * Parallelization: lane L of P reads the whole shard with its own reader and
 * takes the records whose key hash is L mod P, so per-key order holds and
 * lanes never wait for each other; the shard's checkpoint is the minimum of
 * its lanes' positions. The cost is that each lane walks every record header.
 *
 * Pipelined hand-over. A provided plugin with a pipe (spate/provider.h:
 * an isolated child) gets submit() instead of process(); while the batch
 * runs elsewhere the worker peeks the next one behind it (the source's
 * peek-ahead: ring only, no starting filter, window wait or crash record
 * pending) and gives it to prepare(), then waits for the result. The
 * next batch is delivered only after the current one's result, and the
 * current one is released alone (spate_source_release_head), so every
 * rule above and the checkpoints are as with process(); the peek-ahead
 * runs with the delivery off the watchdog's IN (the task is this
 * thread's meanwhile).
 *
 * Limits: one batch in flight per task (one more peeked ahead); the bisect stack holds 64 ranges
 * (enough for 2^64 records); a plugin that crashes takes the process down
 * (with a line naming it); a given-up thread may still read ring memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/consumer.h"
#include "engine/plugin_host.h"
#include "spate/slog.h"

#define BISECT_DEPTH 64u

static void task_log(const struct spate_plugin_host *h, enum spate_log_level lvl, const char *fmt,
		     ...)
{
	struct spate_task *t = h->host_private;
	va_list ap;

	va_start(ap, fmt);
	spate_slog_v(lvl, &t->logctx, fmt, ap); /* text or JSON, rate-limited per call site */
	va_end(ap);
}

/* The engine's own messages about a task: consumer, stream, shard and lane
 * go in the context (text: "consumer/shard: ", JSON: fields). */
__attribute__((format(printf, 3, 4))) static void task_msg(const struct spate_task *t,
							  enum spate_log_level lvl,
							  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	spate_slog_v(lvl, &t->logctx, fmt, ap);
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

/* The plugin's status slot (spate/plugin.h revision 3): the source slot
 * functions on the consumer's slot, shared by its tasks. */
_Static_assert((int)SPATE_PLUGIN_STATUS_UP == (int)SPATE_STATS_SOURCE_UP &&
		       (int)SPATE_PLUGIN_STATUS_DOWN == (int)SPATE_STATS_SOURCE_DOWN &&
		       (int)SPATE_PLUGIN_STATUS_STARTING == (int)SPATE_STATS_SOURCE_STARTING &&
		       (int)SPATE_PLUGIN_STATUS_FAILED == (int)SPATE_STATS_SOURCE_FAILED &&
		       SPATE_PLUGIN_GAUGES == SPATE_STATS_SOURCE_COUNTERS,
	       "plugin status values are the source slot's");

static void task_status(const struct spate_plugin_host *h, int state, const char *error)
{
	struct spate_task *t = h->host_private;
	struct spate_stats_source_slot *s = t->c->status;

	if (state >= SPATE_PLUGIN_STATUS_STARTING && state <= SPATE_PLUGIN_STATUS_FAILED)
		spate_stats_source_state(s, (uint32_t)state);
	if (error)
		spate_stats_source_error(s, "%s", error);
}

static int task_gauge_name(const struct spate_plugin_host *h, uint32_t i, const char *name)
{
	struct spate_task *t = h->host_private;
	struct spate_stats_source_slot *s = t->c->status;

	if (!name || i >= SPATE_STATS_SOURCE_COUNTERS)
		return -EINVAL;
	/* Acquire: pairs with spate_stats_source_counter()'s release (the
	 * name below the count is whole). Inits run one at a time (the
	 * engine's start, or a timed-out task's replacement). */
	if (i < atomic_load_explicit(&s->n_counters, memory_order_acquire))
		return strncmp(s->counter_names[i], name, SPATE_STATS_COUNTER_NAME_MAX) ? -EINVAL
											 : (int)i;
	int rc = spate_stats_source_counter(s, i, name);
	/* Relaxed: a display state. The slot comes into view (starting) with
	 * its first figure, unless the plugin set a state already. */
	uint32_t unused = SPATE_STATS_SOURCE_UNUSED;
	if (rc == 0)
		atomic_compare_exchange_strong_explicit(&s->state, &unused,
							SPATE_STATS_SOURCE_STARTING,
							memory_order_relaxed, memory_order_relaxed);
	return rc;
}

static void task_gauge_add(const struct spate_plugin_host *h, uint32_t i, int64_t delta)
{
	struct spate_task *t = h->host_private;

	if (i < SPATE_STATS_SOURCE_COUNTERS)
		spate_stats_source_add(t->c->status, i, (uint64_t)delta); /* wraps: a subtraction */
}

static void task_gauge_set(const struct spate_plugin_host *h, uint32_t i, uint64_t v)
{
	struct spate_task *t = h->host_private;

	if (i < SPATE_STATS_SOURCE_COUNTERS)
		spate_stats_source_set(t->c->status, i, v);
}

const char *spate_failure_reason_name(uint32_t reason)
{
	switch (reason) {
	case SPATE_FAIL_RETRIES_EXHAUSTED:
		return "retries exhausted";
	case SPATE_FAIL_RECORD_EXPIRED:
		return "record expired";
	default:
		return "unknown";
	}
}

/*
 * Send one record to the failure destination, payload included. A payload
 * that would make the envelope larger than the failure stream's
 * max_record_size is cut to fit, its own length kept in orig_len: a failed
 * record is never dropped for its size (the configuration check refuses a
 * failure stream too small for the source's records, so this is the
 * fallback for configurations built in C or streams attached as they are).
 */
static void send_failed(struct spate_task *t, const struct spate_ring_rec *r, uint32_t attempts,
			enum spate_failure_reason why, const char *error)
{
	struct spate_consumer *c = t->c;
	struct spate_failed_record h;
	struct spate_put_result res;
	uint8_t stackbuf[4096], *buf = stackbuf;
	uint32_t len = r->len;
	int rc;

	spate_stats_add(&t->st.slot->failed, 1);
	if (why == SPATE_FAIL_RECORD_EXPIRED)
		spate_stats_add(&t->st.slot->expired, 1);
	if (!c->dlq) {
		task_msg(t, SPATE_LOG_WARN,
			 "record %" PRIu64 " given up (%s: %s) and dropped: no on_failure destination",
			 r->seq, spate_failure_reason_name(why), error && *error ? error : "no reason");
		return;
	}
	uint64_t room = spate_ring_max_record(spate_stream_ring(c->dlq->stream, 0));
	if (sizeof(h) + (uint64_t)len > room) {
		len = room > sizeof(h) ? (uint32_t)(room - sizeof(h)) : 0;
		task_msg(t, SPATE_LOG_WARN,
			 "record %" PRIu64 " (%u bytes) does not fit on_failure stream %s with its "
			 "%zu-byte envelope (max_record_size %" PRIu64 "): payload cut to %u bytes",
			 r->seq, r->len, spate_stream_name(c->dlq->stream), sizeof(h), room, len);
	}
	size_t total = sizeof(h) + len;
	memset(&h, 0, sizeof(h));
	h.magic = SPATE_FAILED_MAGIC;
	h.hdr_size = sizeof(h);
	h.seq = r->seq;
	h.ts = r->ts;
	h.failed_ns = spate_now_ns();
	h.shard = t->shard;
	h.attempts = attempts;
	h.key_hash = r->key_hash;
	h.payload_len = len;
	h.orig_len = r->len;
	h.reason = why;
	snprintf(h.consumer, sizeof(h.consumer), "%s", c->k->name);
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
	memcpy(buf + sizeof(h), r->data, len);
	pthread_mutex_lock(&c->dlq->lock);
	rc = spate_put_hash(c->dlq->prod, r->key_hash, buf, total, &res);
	pthread_mutex_unlock(&c->dlq->lock);
	if (rc < 0)
		task_msg(t, SPATE_LOG_ERROR,
			 "record %" PRIu64 " (%s) could not reach on_failure stream %s: %s", r->seq,
			 spate_failure_reason_name(why), spate_stream_name(c->dlq->stream),
			 strerror(-rc));
	if (buf != stackbuf)
		free(buf);
}

static bool expired(const struct spate_task *t, const struct spate_ring_rec *r, uint64_t now_rt)
{
	uint64_t age = t->c->max_age_ns;
	return age != UINT64_MAX && now_rt > r->ts && now_rt - r->ts > age;
}

static uint64_t backoff(const struct spate_config_consumer *p, uint32_t attempt)
{
	uint64_t b = p->retry_backoff_ns ? p->retry_backoff_ns : 1;
	for (uint32_t i = 1; i < attempt && b < p->retry_backoff_max_ns; i++)
		b *= 2;
	return b < p->retry_backoff_max_ns ? b : p->retry_backoff_max_ns;
}

uint64_t spate_consumer_shard_next(const struct spate_consumer *c, uint32_t shard)
{
	uint32_t lanes = c->lanes;
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

/* A delivery of @p n records, counted once: in the task's slot (the
 * counters region's, or the consumer's own when it is off: then there are
 * no histograms for process time and batch size). */
static inline void count_delivery(struct spate_task *t, uint32_t n, uint64_t ns, bool retry)
{
	if (t->st.batch) {
		spate_stats_task_delivery(&t->st, n, ns, retry);
		return;
	}
	spate_stats_add(&t->st.slot->batches, 1);
	if (retry)
		spate_stats_add(&t->st.slot->retries, 1);
	if (ns)
		spate_stats_add(&t->st.slot->process_ns, ns);
}

static void batch_ready(struct spate_task *t);

static void batch_done(struct spate_task *t, uint64_t now)
{
	struct spate_consumer *c = t->c;
	uint64_t next = t->raw[t->n_raw - 1].seq + 1;

	/* With a batch peeked ahead, release this one alone: the next stays. */
	if (t->an_raw)
		spate_source_release_head(&t->src, t->n_raw);
	else
		spate_source_release(&t->src, t->n_raw);
	/* Release: pairs with the acquire in spate_consumer_shard_next(). */
	atomic_store_explicit(&t->next_seq, next, memory_order_release);
	spate_stats_set(&t->st.slot->checkpoint, next);
	if (c->ckpt && (!c->k->checkpoint_interval_ns ||
			now - t->ckpt_ns >= c->k->checkpoint_interval_ns)) {
		t->ckpt_ns = now;
		uint64_t shard_next = c->lanes == 1 ? next
								: spate_consumer_shard_next(c, t->shard);
		if (shard_next != UINT64_MAX)
			spate_stream_ckpt_set(c->ckpt, t->shard, shard_next);
	}
	t->n_raw = t->n = 0;
	t->lo = t->hi = t->depth = 0;
	t->attempt = 0;
	t->prior = 0;
	if (t->an_raw) { /* the batch peeked ahead is the current one now */
		struct spate_ring_rec *r = t->raw, *v = t->views;
		t->raw = t->araw;
		t->views = t->aviews;
		t->araw = r;
		t->aviews = v;
		t->n_raw = t->an_raw;
		t->n = t->an;
		t->an_raw = t->an = 0;
		batch_ready(t);
	}
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

/* Cut the batch at sequence @p end (exclusive): raw and views. */
static void cut_batch(struct spate_task *t, uint64_t end)
{
	while (t->n_raw > 1 && t->raw[t->n_raw - 1].seq >= end)
		t->n_raw--;
	while (t->n && t->views[t->n - 1].seq >= end)
		t->n--;
}

/*
 * The previous process crashed inside process() on [first, last] of this
 * task (its attempt record, read at start). When the batch reaches that
 * range, deliver the records before it on their own, then the range alone,
 * as a failed delivery (crash_pending): the failure rules bisect it or give
 * it up after max_retry_attempts deliveries across crashes, instead of
 * crash-looping on it.
 */
static void match_crashed(struct spate_task *t)
{
	uint64_t first = t->crashed.first_seq, last = t->crashed.last_seq;

	if (t->views[0].seq > first) { /* handled since (or not ours): forget it */
		t->crashed.magic = 0;
		return;
	}
	if (t->views[0].seq < first) {
		if (t->views[t->n - 1].seq >= first)
			cut_batch(t, first); /* up to the range, then the range */
		return;
	}
	cut_batch(t, last + 1);
	t->crash_pending = true;
}

/* Peek a new batch; apply starting-position filters, the window, lanes and
 * expiry. Returns >0 records consumed without delivery (skipped), 0 when a
 * batch is ready or nothing is there, <0 on a ring error. */
static int assemble(struct spate_task *t, uint64_t now, bool *ready)
{
	const struct spate_consumer *c = t->c;
	const struct spate_config_consumer *p = c->k;
	/* Relaxed: only this task's poller writes it. */
	uint64_t next = atomic_load_explicit(&t->next_seq, memory_order_relaxed);
	/* The source may move between ring and log unless records are held
	 * back for the batching window. */
	int got = spate_source_peek(&t->src, t->raw, p->batch_size, p->batch_bytes, next,
				    !t->window_start);

	*ready = false;
	if (got <= 0) {
		t->window_start = 0;
		return got;
	}
	/* The position becomes known at the first record seen: nothing below
	 * it is this task's to handle. Lanes of a shard checkpoint at their
	 * minimum, so a lane stuck on its first batch holds the shard back
	 * (and shows as lag) instead of being skipped over. */
	if (next == UINT64_MAX)
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
			spate_source_release(&t->src, (unsigned)k);
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
	if (c->lanes > 1) {
		uint32_t n = 0;
		for (int i = 0; i < got; i++)
			if (t->raw[i].key_hash % c->lanes == t->lane)
				t->views[n++] = t->raw[i];
		t->n = n;
	} else {
		t->n = (uint32_t)got;
	}
	batch_ready(t);
	*ready = true;
	return 0;
}

/* The batch in raw/views (n_raw, n) is the current one: drop its expired
 * records to the failure destination, then deliver it whole. */
static void batch_ready(struct spate_task *t)
{
	const struct spate_consumer *c = t->c;

	if (c->max_age_ns != UINT64_MAX) {
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
	if (t->crashed.magic && t->n)
		match_crashed(t);
	t->lo = 0;
	t->hi = t->n;
	t->depth = 0;
	t->attempt = 0;
	t->prior = 0;
}

/* Pipelined hand-over: while the current batch is submitted, peek the next
 * one after it (its records stay unreleased behind the current ones) and
 * let the provider prepare it. Only from the ring, with no starting filter,
 * window wait or crash record to apply (assemble does those). */
static void peek_ahead(struct spate_task *t)
{
	const struct spate_consumer *c = t->c;
	const struct spate_config_consumer *p = c->k;

	if (t->an_raw || t->skip_below_seq || t->skip_below_ts || t->window_start ||
	    t->crashed.magic)
		return;
	if (!t->araw) {
		t->araw = malloc(p->batch_size * sizeof(*t->araw));
		t->aviews = c->lanes > 1 ? malloc(p->batch_size * sizeof(*t->aviews)) : t->araw;
		if (!t->araw || !t->aviews) {
			if (t->aviews != t->araw)
				free(t->aviews);
			free(t->araw);
			t->araw = t->aviews = NULL;
			return;
		}
	}
	int got = spate_source_peek_more(&t->src, t->araw, p->batch_size, p->batch_bytes);
	/* Errors: the next peek of its own meets them again. A short batch
	 * with a window waits for it: peeked again after the release. */
	if (got <= 0 || ((uint32_t)got < p->batch_size && p->batch_window_ns))
		return;
	t->an_raw = (uint32_t)got;
	if (c->lanes > 1) {
		uint32_t n = 0;
		for (int i = 0; i < got; i++)
			if (t->araw[i].key_hash % c->lanes == t->lane)
				t->aviews[n++] = t->araw[i];
		t->an = n;
	} else {
		t->an = (uint32_t)got;
	}
	if (t->an && t->pipe->prepare) {
		struct spate_batch b = {
			.recs = t->aviews,
			.count = t->an,
			.shard = t->shard,
			.attempt = 1,
			.lane = t->lane,
			.consumer = c->k->name,
			.stream = spate_stream_name(c->stream),
			.host = &t->host,
			.struct_size = sizeof(b),
		};
		t->pipe->prepare(t->state, &b); /* a hint: its result changes nothing */
	}
}

static __thread struct spate_inflight *tl_inflight;

void spate_inflight_set(struct spate_inflight *in)
{
	tl_inflight = in;
}

/* The watchdog took the delivery over: this thread owns only @p in now. */
static int lost(struct spate_inflight *in)
{
	/* Acquire: pairs with the release store of LOST in
	 * spate_task_timed_out(): the watchdog has finished with the record
	 * (grave is filled) before this thread frees it. */
	while ((atomic_load_explicit(&in->state, memory_order_acquire) & 3) != SPATE_INFLIGHT_LOST)
		sched_yield();
	for (unsigned i = 0; i < 3; i++)
		free(in->grave[i]);
	free(in);
	tl_inflight = NULL;
	return SPATE_TASK_LOST;
}

/* This thread's delivery off IN, unless the watchdog took it over (false:
 * the task and the worker are someone else's now). */
static bool inflight_off(struct spate_inflight *in)
{
	uint64_t exp = in->gen << 2 | SPATE_INFLIGHT_IN;

	/* Acq_rel: pairs with the watchdog's CAS to LOST; whoever moves this
	 * delivery off IN owns it. */
	return atomic_compare_exchange_strong_explicit(&in->state, &exp,
						       in->gen << 2 | SPATE_INFLIGHT_IDLE,
						       memory_order_acq_rel, memory_order_acquire);
}

/* One call of process() on [lo, hi): the attempt record and the watchdog's
 * record around it, the counters after it. Returns process()'s value, or
 * SPATE_TASK_LOST. */
static int deliver(struct spate_task *t, uint64_t now, bool first, uint32_t cnt,
		   struct spate_batch_result *res)
{
	struct spate_consumer *c = t->c;
	struct spate_inflight *in = tl_inflight;
	struct spate_batch b = {
		.recs = t->views + t->lo,
		.count = cnt,
		.shard = t->shard,
		.attempt = t->attempt + 1,
		.lane = t->lane,
		.consumer = c->k->name,
		.stream = spate_stream_name(c->stream),
		.host = &t->host,
		.struct_size = sizeof(b),
	};
	res->struct_size = sizeof(*res); /* plugin ABI 1 revision 1 */
	/* Records read back from the log would measure their age, not
	 * the pipeline: sample only ring deliveries. */
	if ((t->lat_tick++ & 7) == 0 && !spate_source_on_log(&t->src)) {
		/* The oldest record's commit to its delivery: what the
		 * producer -> plugin latency is, sampled to stay cheap.
		 * Into the consumer's histogram (the region's, or the
		 * process-local one when counters are off), shared by
		 * every worker polling one of its tasks: a multi-writer
		 * record. Its few relaxed RMWs come once per sampled
		 * batch (1 delivery in 8), never per record: negligible. */
		uint64_t rt = spate_now_ns();
		spate_hist_record_mw(t->st.latency, rt > b.recs[0].ts ? rt - b.recs[0].ts : 0);
	}
	if (t->att) {
		/* Plain stores to a shared file mapping: they reach the page
		 * cache as they are made, so they survive a crash of the
		 * process inside process() (not of the machine: not needed). */
		t->att->done = 0;
		t->att->first_seq = b.recs[0].seq;
		t->att->last_seq = b.recs[cnt - 1].seq;
		t->att->attempt = t->attempt + 1;
		t->att->prior = t->prior;
		t->att->magic = SPATE_ATTEMPT_MAGIC;
	}
	if (in) {
		/* Relaxed: published by the release store of state below. */
		atomic_store_explicit(&in->task, t, memory_order_relaxed);
		in->first_seq = b.recs[0].seq;
		in->last_seq = b.recs[cnt - 1].seq;
		/* The poll's clock for its first delivery (no clock read on the
		 * common path); later ones (bisection) read it. Relaxed: the
		 * release store of phase publishes it. */
		atomic_store_explicit(&in->since, first ? now : spate_mono_ns(), memory_order_relaxed);
		in->gen++;
		/* Release: pairs with the watchdog's acquire load / CAS of state
		 * (engine.c watch_workers): task, range and since are visible
		 * to it once it sees this delivery IN. */
		atomic_store_explicit(&in->state, in->gen << 2 | SPATE_INFLIGHT_IN,
				      memory_order_release);
	}
	/* Counters region: time process() on the deliveries whose latency
	 * was just sampled (1 in 8), to keep clock reads off the others. */
	uint64_t pt0 = (t->lat_tick & 7) == 1 ? spate_mono_ns() : 0;
	int rc;
	if (!t->pipe) {
		rc = t->pl->process(t->state, &b, res);
	} else {
		/* Pipelined: hand the batch over, peek the next one while it
		 * runs (prepared, not handed over), then wait for its result. */
		rc = t->pipe->submit(t->state, &b);
		if (rc == 0 && !t->an_raw) {
			/* The task must be this thread's while it peeks: off IN
			 * first (the watchdog may have taken the delivery over
			 * during submit), back on after, same since, new number. */
			if (in && !inflight_off(in))
				return lost(in);
			peek_ahead(t);
			if (in) {
				in->gen++;
				/* Release: as the store of IN above. */
				atomic_store_explicit(&in->state, in->gen << 2 | SPATE_INFLIGHT_IN,
						      memory_order_release);
			}
		}
		if (rc == 0)
			rc = t->pipe->complete(t->state, &b, res);
	}
	if (in && !inflight_off(in))
		return lost(in);
	if (t->att)
		t->att->done = 1;
	t->attempt++;
	count_delivery(t, cnt, pt0 ? spate_mono_ns() - pt0 : 0, t->attempt > 1);
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
	return rc;
}

/* One poll of a task: the Lambda rules for the batch in flight (max age,
 * a timed-out or crashed delivery, deliver, OK/PARTIAL, bisect, give up,
 * back off) in the order Lambda applies them, in one loop. It is longer than
 * 120 lines on purpose: split up, that order would be spread over helpers
 * that each need the whole task state. */
int spate_task_poll(struct spate_task *t, uint64_t now)
{
	struct spate_consumer *c = t->c;
	const struct spate_config_consumer *p = c->k;
	int handled = 0;
	bool fresh = true; /* no delivery yet in this poll: now is the time */

	if (t->dead)
		return -1;
	/* Relaxed: a flag from the control thread; a poll late is fine. */
	uint64_t over = atomic_load_explicit(&c->over_memory, memory_order_relaxed);
	if (over) {
		char why[160];
		snprintf(why, sizeof(why),
			 "memory_limit %" PRIu64 " MiB exceeded: the engine grew by %" PRIu64
			 " MiB while its plugin ran",
			 p->memory_limit >> 20, over >> 20);
		task_die(t, why);
		return -1;
	}
	if (t->pl->flush && t->pl->flush_interval_ns && now >= t->next_flush) {
		t->pl->flush(t->state, spate_now_ns());
		t->next_flush = now + t->pl->flush_interval_ns;
	}
	if (t->n_raw == 0) {
		bool ready;
		int rc = assemble(t, now, &ready);
		if (rc < 0) {
			char why[120];
			snprintf(why, sizeof(why), "%s: %s",
				 spate_source_on_log(&t->src) ? "reading the log" : "reading the ring",
				 rc == -EPIPE ? "reader evicted" : strerror(-rc));
			task_die(t, why);
			return -1;
		}
		if (!ready)
			return rc;
	} else if (now < t->retry_at && !t->timed_out) {
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
		if (c->max_age_ns != UINT64_MAX && t->attempt) {
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
		struct spate_batch_result res;
		enum spate_batch_status st;
		memset(&res, 0, sizeof(res));
		if (t->timed_out || t->crash_pending) {
			/* The last delivery never returned (timeout, or a crash of
			 * the process): it counts as failed, and the rules below
			 * (bisect, retries, on_failure) apply to it. */
			st = SPATE_BATCH_RETRY;
			if (t->timed_out) {
				t->timed_out = false;
				t->attempt++;
				count_delivery(t, cnt, 0, t->attempt > 1);
				snprintf(res.error, sizeof(res.error),
					 "process() timed out after %.3f s (timeout)",
					 (double)c->timeout_ns / 1e9);
			} else {
				t->attempt = t->crashed.attempt;
				t->prior = t->crashed.prior;
				snprintf(res.error, sizeof(res.error),
					 "the engine crashed inside process() on records %" PRIu64
					 "..%" PRIu64 " (delivery %u)",
					 t->crashed.first_seq, t->crashed.last_seq,
					 t->crashed.prior + t->crashed.attempt);
				t->crashed.magic = 0;
				t->crash_pending = false;
			}
		} else {
			int rc = deliver(t, now, fresh, cnt, &res);
			fresh = false;
			if (rc == SPATE_TASK_LOST)
				return rc;
			st = rc < 0 ? SPATE_BATCH_RETRY : res.status;
			if (rc < 0 && !res.error[0])
				snprintf(res.error, sizeof(res.error), "process returned %d (%s)", rc,
					 strerror(-rc));
		}
		if (st == SPATE_BATCH_PARTIAL && res.failed_index >= cnt)
			st = SPATE_BATCH_OK; /* nothing failed after all */
		if (st == SPATE_BATCH_OK || st == SPATE_BATCH_PARTIAL) {
			uint32_t done = st == SPATE_BATCH_OK ? cnt : res.failed_index;
			uint64_t bytes = 0;
			for (uint32_t i = 0; i < done; i++)
				bytes += t->views[t->lo + i].len;
			if (done)
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
		spate_stats_add(&t->st.slot->errors, 1);
		if (p->bisect_on_error && t->hi - t->lo > 1 && t->depth < BISECT_DEPTH) {
			/* RETRY: split in halves. PARTIAL: split at the record
			 * that failed, as Lambda does with ReportBatchItemFailures
			 * and BisectBatchOnFunctionError ("bisected at the returned
			 * sequence number"): it is retried on its own, the records
			 * after it afterwards, so only records that fail on their
			 * own reach the failure destination. */
			uint32_t mid = st == SPATE_BATCH_PARTIAL ? t->lo + 1
								 : t->lo + (t->hi - t->lo) / 2;
			/* Both halves were in every delivery of [lo, hi): the
			 * failure envelope counts them (attempts). */
			t->prior += t->attempt;
			t->stack[t->depth][0] = mid;
			t->stack[t->depth][1] = t->hi;
			t->stack[t->depth][2] = t->prior;
			t->depth++;
			spate_stats_add(&t->st.slot->bisections, 1);
			t->hi = mid;
			t->attempt = 0;
			continue;
		}
		if (p->max_retry_attempts >= 0 && t->attempt > (uint64_t)p->max_retry_attempts) {
			/* PARTIAL: the plugin named the record that failed; only
			 * it is given up, the records after it are delivered
			 * afresh. RETRY: bisecting leaves a single poison record
			 * here; otherwise the whole range is given up, as Lambda
			 * does. */
			uint32_t end = st == SPATE_BATCH_PARTIAL ? t->lo + 1 : t->hi;
			for (uint32_t i = t->lo; i < end; i++)
				send_failed(t, &t->views[i], t->prior + t->attempt,
					    SPATE_FAIL_RETRIES_EXHAUSTED, res.error);
			handled += (int)(end - t->lo);
			t->lo = end;
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

void spate_consumer_over_memory(struct spate_consumer *c, uint64_t charged)
{
	/* Relaxed: a flag the pollers check (spate_task_poll). */
	atomic_store_explicit(&c->over_memory, charged ? charged : 1, memory_order_relaxed);
}

void spate_task_timed_out(struct spate_task *t, struct spate_inflight *in, uint64_t ran_ns,
			  bool stopping)
{
	struct spate_consumer *c = t->c;
	const struct spate_plugin *pl = t->pl;

	task_msg(t, SPATE_LOG_ERROR,
		 "plugin %s: process() on records %" PRIu64 "..%" PRIu64
		 " has run %.3f s, past the consumer's timeout (%.3f s): the delivery counts as "
		 "failed and its worker thread is abandoned%s",
		 spate_plugin_lib_path(c->lib), in->first_seq, in->last_seq, (double)ran_ns / 1e9,
		 (double)c->timeout_ns / 1e9,
		 stopping ? " (the engine stops without it)" : "; a new one takes over");
	/* The stuck call may still read the batch (views, and the log
	 * source's copies): those buffers go with its thread, which frees
	 * them if process() ever returns; the task gets copies. The ring's
	 * records stay mapped while the stream is open. */
	size_t sz = t->c->k->batch_size * sizeof(*t->raw);
	struct spate_ring_rec *raw = malloc(sz);
	struct spate_ring_rec *views = t->views != t->raw ? malloc(sz) : raw;
	if (raw && views) {
		memcpy(raw, t->raw, sz);
		if (views != raw)
			memcpy(views, t->views, sz);
		in->grave[0] = t->raw;
		in->grave[1] = t->views != t->raw ? t->views : NULL;
		t->raw = raw;
		t->views = views;
		in->grave[2] = spate_source_abandon(&t->src, t->raw, t->n_raw, t->views, t->n);
	} else { /* no memory: keep them (the stuck call may see them change) */
		if (views != raw)
			free(views);
		free(raw);
	}
	/* Release: pairs with the acquire load in lost(); `in` is the stuck
	 * thread's from here (it may free it at once). */
	atomic_store_explicit(&in->state,
			      (atomic_load_explicit(&in->state, memory_order_relaxed) & ~3ull) |
				      SPATE_INFLIGHT_LOST,
			      memory_order_release);
	in = NULL;
	t->timed_out = true;
	/* Its plugin state is the stuck call's: a fresh one for the task. */
	t->state = NULL;
	if (stopping) {
		t->pl = NULL; /* nothing to flush or fini at stop */
		return;
	}
	int rc = pl->init(&t->ctx, &t->state);
	if (rc < 0) {
		t->pl = NULL;
		char why[160];
		snprintf(why, sizeof(why), "plugin init after a timeout failed: %s", strerror(-rc));
		task_die(t, why);
	}
}

/* ------------------------------------------------------------------------ */
/* Crashes                                                                  */
/* ------------------------------------------------------------------------ */

/* Async-signal-safe appends into a fixed buffer. */
static size_t put_str(char *buf, size_t len, size_t off, const char *s)
{
	while (s && *s && off + 1 < len)
		buf[off++] = *s++;
	return off;
}

static size_t put_u64(char *buf, size_t len, size_t off, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n && off + 1 < len)
		buf[off++] = tmp[--n];
	return off;
}

static void crash_handler(int sig, siginfo_t *si, void *uc)
{
	struct spate_inflight *in = tl_inflight;
	char buf[1024];
	size_t o = 0;
	(void)si;
	(void)uc;

	o = put_str(buf, sizeof(buf), o, "spate: FATAL: signal ");
	o = put_u64(buf, sizeof(buf), o, (uint64_t)sig);
	o = put_str(buf, sizeof(buf), o, " (");
	o = put_str(buf, sizeof(buf), o, sigabbrev_np(sig));
	o = put_str(buf, sizeof(buf), o, ")");
	/* Relaxed: this thread's own record. */
	if (in && (atomic_load_explicit(&in->state, memory_order_relaxed) & 3) == SPATE_INFLIGHT_IN) {
		/* Relaxed: this thread's own record. */
		const struct spate_task *t = atomic_load_explicit(&in->task, memory_order_relaxed);
		o = put_str(buf, sizeof(buf), o, " in process() of consumer ");
		o = put_str(buf, sizeof(buf), o, t->c->k->name);
		o = put_str(buf, sizeof(buf), o, ", plugin ");
		o = put_str(buf, sizeof(buf), o, spate_plugin_lib_path(t->c->lib));
		o = put_str(buf, sizeof(buf), o, ", stream ");
		o = put_str(buf, sizeof(buf), o, t->logctx.stream);
		o = put_str(buf, sizeof(buf), o, " shard ");
		o = put_u64(buf, sizeof(buf), o, t->shard);
		o = put_str(buf, sizeof(buf), o, " lane ");
		o = put_u64(buf, sizeof(buf), o, t->lane);
		o = put_str(buf, sizeof(buf), o, ", records ");
		o = put_u64(buf, sizeof(buf), o, in->first_seq);
		o = put_str(buf, sizeof(buf), o, "..");
		o = put_u64(buf, sizeof(buf), o, in->last_seq);
		o = put_str(buf, sizeof(buf), o, " (delivery ");
		o = put_u64(buf, sizeof(buf), o, t->prior + t->attempt + 1);
		o = put_str(buf, sizeof(buf), o, "; counted at restart)");
	} else {
		o = put_str(buf, sizeof(buf), o, " outside any plugin call");
	}
	o = put_str(buf, sizeof(buf), o, "\n");
	ssize_t w = write(STDERR_FILENO, buf, o);
	(void)w;
	/* SA_RESETHAND made the action the default again: re-raise (blocked
	 * until we return; a fault re-executes and kills us the same way). */
	raise(sig);
}

void spate_crash_handlers_install(void)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };
	struct sigaction sa, old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = crash_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		/* An embedding program's own handler stays. */
		if (sigaction(sigs[i], NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
		    old.sa_handler == SIG_DFL)
			sigaction(sigs[i], &sa, NULL);
	}
}

void *spate_crash_altstack(void)
{
	stack_t ss = { .ss_size = 64 * 1024 };

	ss.ss_sp = malloc(ss.ss_size);
	if (ss.ss_sp && sigaltstack(&ss, NULL) < 0) {
		free(ss.ss_sp);
		ss.ss_sp = NULL;
	}
	return ss.ss_sp;
}

/* ------------------------------------------------------------------------ */
/* Attempt records                                                          */
/* ------------------------------------------------------------------------ */

struct att_hdr {
	uint32_t magic, ntasks;
	uint64_t reserved[3];
};

/* Map <state_dir>/<consumer>.attempts (one slot per task), taking the
 * records of deliveries that never returned. A failure only loses the
 * crash-loop protection: said, not fatal. */
static void attempts_open(struct spate_consumer *c)
{
	char path[SPATE_CONFIG_PATH_MAX + 64];
	size_t len = sizeof(struct att_hdr) + c->ntasks * sizeof(struct spate_attempt);
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/%s.attempts", c->cfg->state_dir, c->k->name);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &st) < 0 ||
	    ((size_t)st.st_size != len && ftruncate(fd, 0) < 0) || ftruncate(fd, (off_t)len) < 0)
		goto fail;
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		goto fail;
	close(fd);
	struct att_hdr *h = m;
	struct spate_attempt *a = (struct spate_attempt *)(h + 1);
	bool same = h->magic == SPATE_ATTEMPT_MAGIC && h->ntasks == c->ntasks;
	for (uint32_t i = 0; i < c->ntasks; i++) {
		struct spate_task *t = &c->tasks[i];
		if (same && a[i].magic == SPATE_ATTEMPT_MAGIC && !a[i].done && a[i].attempt &&
		    a[i].first_seq <= a[i].last_seq) {
			t->crashed = a[i];
			task_msg(t, SPATE_LOG_WARN,
				 "the previous run ended inside process() on records %" PRIu64
				 "..%" PRIu64 " (delivery %u): it counts as a failed delivery",
				 a[i].first_seq, a[i].last_seq, a[i].prior + a[i].attempt);
		}
		memset(&a[i], 0, sizeof(a[i]));
		t->att = &a[i];
	}
	h->magic = SPATE_ATTEMPT_MAGIC;
	h->ntasks = c->ntasks;
	c->att_map = m;
	c->att_len = len;
	return;
fail:
	spate_slog(SPATE_LOG_WARN, &c->tasks[0].logctx,
		   "attempt records %s: %s: a plugin that crashes the engine may do so again "
		   "on the same batch after a restart",
		   path, strerror(errno));
	if (fd >= 0)
		close(fd);
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
		uint64_t end = t->window_start + t->c->k->batch_window_ns;
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

/* A constructor: one linear sequence of allocations and opens, each undone
 * by the goto labels at its end (the house pattern), hence its length. */
int spate_consumer_init(struct spate_consumer *c, const struct spate_config_consumer *k,
			const struct spate_config_stream *cs, const uint64_t *resume_next,
			char *err, size_t errlen)
{
	uint32_t shards = spate_stream_shards(c->stream);
	uint32_t lanes = k->parallelization ? k->parallelization : 1;
	uint32_t i;
	int rc;

	c->k = k;
	c->lanes = lanes;
	c->timeout_ns = k->timeout_ns ? k->timeout_ns : 60ull * 1000000000ull;
	/* A provided plugin (a function) keeps its own deadline; the
	 * watchdog is its backstop. */
	if (spate_plugin_lib_watchdog(c->lib))
		c->timeout_ns = spate_plugin_lib_watchdog(c->lib);
	c->max_age_ns = k->max_record_age_ns;
	/* Retrying "until the record expires" with no max age: the stream's
	 * retention is the expiry, as in Kinesis, so a poison record never
	 * stalls its shard without bound. */
	if (k->max_retry_attempts < 0 && c->max_age_ns == SPATE_CONFIG_NEVER)
		c->max_age_ns = cs->retention_ns;
	c->ntasks = shards * lanes;
	c->tasks = calloc(c->ntasks, sizeof(*c->tasks));
	c->opts = calloc(k->n_options ? k->n_options : 1, sizeof(*c->opts));
	c->local_st = aligned_alloc(SPATE_STATS_LINE, c->ntasks * sizeof(*c->local_st));
	c->own_status = aligned_alloc(SPATE_STATS_LINE, sizeof(*c->own_status));
	pthread_mutex_init(&c->lock, NULL);
	if (!c->tasks || !c->opts || !c->local_st || !c->own_status) {
		rc = -ENOMEM;
		goto err;
	}
	memset(c->own_status, 0, sizeof(*c->own_status));
	c->own_status->state = SPATE_STATS_SOURCE_UNUSED; /* before any thread */
	c->status = c->own_status;
	memset(c->local_st, 0, c->ntasks * sizeof(*c->local_st));
	for (i = 0; i < k->n_options; i++) {
		c->opts[i].key = k->options[i].key;
		c->opts[i].value = k->options[i].value;
	}
	atomic_store_explicit(&c->state, SPATE_CONSUMER_STOPPED, memory_order_relaxed);
	rc = spate_stream_ckpt_open(c->stream, k->name, &c->ckpt);
	if (rc < 0) {
		snprintf(err, errlen, "consumer %s: checkpoint table of stream %s: %s", k->name,
			 spate_stream_name(c->stream), strerror(-rc));
		goto err;
	}
	for (i = 0; i < c->ntasks; i++) {
		struct spate_task *t = &c->tasks[i];
		uint32_t shard = i / lanes;
		uint64_t resume = resume_next ? resume_next[shard] : UINT64_MAX;
		struct spate_source_start at = { .ring = SPATE_RING_START_OLDEST,
						 .history = true,
						 .from = SPATE_LOG_FROM_OLDEST };

		t->c = c;
		t->shard = shard;
		t->lane = i % lanes;
		t->logctx = (struct spate_slog_ctx){ k->name, spate_stream_name(c->stream), shard,
						     t->lane };
		t->st.slot = &c->local_st[i];
		spate_stats_set(&t->st.slot->checkpoint, UINT64_MAX);
		t->raw = calloc(k->batch_size, sizeof(*t->raw));
		t->views = lanes > 1 ? calloc(k->batch_size, sizeof(*t->views)) : t->raw;
		t->stack = calloc(BISECT_DEPTH, sizeof(*t->stack));
		if (!t->raw || !t->views || !t->stack) {
			rc = -ENOMEM;
			goto err;
		}
		atomic_store_explicit(&t->next_seq, UINT64_MAX, memory_order_relaxed);
		/* Where to begin; on a persisted stream, history comes from the
		 * log (everything retained), then the ring once caught up. */
		if (resume != UINT64_MAX) {
			t->skip_below_seq = resume; /* the checkpoint wins over starting_position */
			atomic_store_explicit(&t->next_seq, resume, memory_order_relaxed);
			at.from = SPATE_LOG_FROM_SEQ;
			at.arg = resume;
		} else {
			switch (k->starting_position) {
			case SPATE_CONFIG_START_TRIM_HORIZON:
				break;
			case SPATE_CONFIG_START_LATEST:
				at.ring = SPATE_RING_START_LATEST;
				at.history = false;
				break;
			case SPATE_CONFIG_START_AT_SEQUENCE:
				t->skip_below_seq = k->starting_sequence;
				at.from = SPATE_LOG_FROM_SEQ;
				at.arg = k->starting_sequence;
				break;
			case SPATE_CONFIG_START_AFTER_SEQUENCE:
				t->skip_below_seq = k->starting_sequence + 1;
				at.from = SPATE_LOG_FROM_SEQ;
				at.arg = k->starting_sequence + 1;
				break;
			case SPATE_CONFIG_START_AT_TIMESTAMP:
				t->skip_below_ts = k->starting_timestamp_ns;
				at.from = SPATE_LOG_FROM_TIME;
				at.arg = k->starting_timestamp_ns;
				break;
			}
		}
		char dir[SPATE_CONFIG_PATH_MAX];
		bool has_log = c->log_cs && spate_config_stream_log_dir(c->cfg, c->log_cs, shard, dir,
									 sizeof(dir)) == 0;
		rc = spate_source_open(&t->src, c->stream, shard, has_log ? dir : NULL, k->wait,
				       k->batch_size, &at, &t->logctx, &t->st);
		if (rc < 0) {
			snprintf(err, errlen, "consumer %s: reader on %s/%u: %s", k->name,
				 spate_stream_name(c->stream), shard, strerror(-rc));
			goto err;
		}
		t->host.struct_size = sizeof(t->host);
		t->host.log = task_log;
		t->host.put = task_put;
		t->host.host_private = t;
		t->host.status = task_status;
		t->host.gauge_name = task_gauge_name;
		t->host.gauge_add = task_gauge_add;
		t->host.gauge_set = task_gauge_set;
		t->ctx.struct_size = sizeof(t->ctx);
		t->ctx.consumer = k->name;
		t->ctx.stream = spate_stream_name(c->stream);
		t->ctx.shard = shard;
		t->ctx.lane = t->lane;
		t->ctx.opts = c->opts;
		t->ctx.n_opts = k->n_options;
		t->ctx.host = &t->host;
	}
	attempts_open(c);
	return 0;
err:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "consumer %s: out of memory", k->name);
	spate_consumer_fini(c);
	return rc;
}

void spate_consumer_task_stats(struct spate_consumer *c, uint32_t i,
			       const struct spate_stats_tref *ref)
{
	struct spate_task *t = &c->tasks[i];

	if (ref && ref->slot) {
		t->st = *ref;
		/* Relaxed: the poller is not running yet (before the start). */
		spate_stats_set(&t->st.slot->checkpoint,
				atomic_load_explicit(&t->next_seq, memory_order_relaxed));
	} else {
		memset(&t->st, 0, sizeof(t->st));
		t->st.slot = &c->local_st[i];
		t->st.latency = c->lat;
	}
	spate_source_describe(&t->src, atomic_load_explicit(&t->next_seq, memory_order_relaxed));
}

void spate_consumer_sum(const struct spate_consumer *c, struct spate_consumer_counts *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < c->ntasks; i++) {
		const struct spate_task *t = &c->tasks[i];
		const struct spate_stats_task *x = t->st.slot;
		/* Relaxed: counters with one writer each, read for display
		 * (and by tests after the workers were joined). */
		out->records += atomic_load_explicit(&x->records, memory_order_relaxed);
		out->bytes += atomic_load_explicit(&x->bytes, memory_order_relaxed);
		out->batches += atomic_load_explicit(&x->batches, memory_order_relaxed);
		out->retries += atomic_load_explicit(&x->retries, memory_order_relaxed);
		out->failed += atomic_load_explicit(&x->failed, memory_order_relaxed);
		out->expired += atomic_load_explicit(&x->expired, memory_order_relaxed);
		out->log_records += atomic_load_explicit(&t->src.log_records, memory_order_relaxed);
		out->log_gaps += atomic_load_explicit(&t->src.log_gaps, memory_order_relaxed);
		out->log_spills += atomic_load_explicit(&t->src.spills, memory_order_relaxed);
		out->on_log += atomic_load_explicit(&t->src.on_log, memory_order_relaxed);
	}
}

int spate_consumer_start_plugins(struct spate_consumer *c, char *err, size_t errlen)
{
	const struct spate_plugin *pl = spate_plugin_lib_desc(c->lib);
	uint64_t worst = 0;

	for (uint32_t i = 0; i < c->ntasks; i++) {
		struct spate_task *t = &c->tasks[i];
		t->ctx.provided = spate_plugin_lib_inst(c->lib); /* NULL for a file */
		uint64_t t0 = spate_mono_ns();
		int rc = pl->init(&t->ctx, &t->state);
		uint64_t d = spate_mono_ns() - t0;

		if (d > worst)
			worst = d;
		if (rc < 0) {
			snprintf(err, errlen, "consumer %s: plugin %s init for shard %u failed: %s",
				 c->k->name, pl->name, t->shard, strerror(-rc));
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
		t->pipe = spate_plugin_lib_pipe(c->lib);
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
	free(c->opts);
	c->opts = NULL;
	if (c->tasks) {
		for (uint32_t i = 0; i < c->ntasks; i++) {
			struct spate_task *t = &c->tasks[i];
			spate_source_close(&t->src);
			if (t->views != t->raw)
				free(t->views);
			free(t->raw);
			if (t->aviews != t->araw)
				free(t->aviews);
			free(t->araw);
			free(t->stack);
		}
		free(c->tasks);
		c->tasks = NULL;
		pthread_mutex_destroy(&c->lock);
	}
	free(c->local_st);
	c->local_st = NULL;
	free(c->own_status);
	c->own_status = NULL;
	c->status = NULL;
	c->ntasks = 0;
	if (c->att_map)
		munmap(c->att_map, c->att_len);
	c->att_map = NULL;
}
