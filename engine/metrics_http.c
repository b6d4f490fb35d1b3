/* SPDX-License-Identifier: MIT */
/*
 * metrics_http.c - Prometheus text exposition of a bus's counters, served by
 * `spate run` when the configuration names metrics.listen.
 *
 * Design. libmicrohttpd (Debian's libmicrohttpd) runs one internal polling
 * thread bound to the configured address (127.0.0.1 unless told otherwise);
 * GET /metrics takes a snapshot exactly as `spate stat` does (spate/stats.h,
 * spate_stats_view_take():
 * the counters region attached read-only, plus the rings) and renders it in
 * the text format 0.0.4. The server never touches the engine's threads or
 * memory other than by reading the shared regions, so a slow scraper cannot
 * slow the bus.
 *
 * Names follow the Prometheus conventions: a spate_ prefix, base units
 * (seconds, bytes), counters ending in _total, labels bus, stream, shard,
 * consumer (and worker, cpu). Histograms are per consumer (labels bus,
 * stream, consumer) and per stream (fsync: bus, stream), as the counters
 * region keeps them; per-shard figures are counters and gauges. Latency
 * histograms are Prometheus histograms:
 * cumulative le buckets from 1 us to 10 s, _sum and _count. The bucket
 * counts come from the HDR histogram by rank: the count at or below a bound
 * is the largest rank whose value (spate_hist_percentile) is at or below it,
 * so a bucket boundary is exact to the histogram's resolution.
 *
 * Limits: one scrape at a time is served (the polling thread); a scrape of a
 * bus with thousands of tasks costs a few milliseconds of that thread.
 */
#include "spate_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/metrics_http.h"
#include "spate/config.h"

/* A growing output buffer. */
struct out {
	char *b;
	size_t len, cap;
	bool oom;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		if (o->oom)
			return;
		size_t room = o->cap - o->len;
		va_start(ap, fmt);
		int n = vsnprintf(o->b ? o->b + o->len : NULL, o->b ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->oom = true;
			return;
		}
		if (o->b && (size_t)n < room) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap ? o->cap * 2 : 65536;
		while (cap - o->len <= (size_t)n)
			cap *= 2;
		char *nb = realloc(o->b, cap);
		if (!nb) {
			o->oom = true;
			return;
		}
		o->b = nb;
		o->cap = cap;
	}
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Values at or below @p x in @p h: the largest rank whose value is <= x. */
static uint64_t count_le(const struct spate_hist *h, double x)
{
	uint64_t n = spate_hist_count(h), lo = 0, hi = n;

	if (!n)
		return 0;
	if ((double)spate_hist_max(h) <= x)
		return n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;
		/* Rank mid is the ceiling of pct / 100 * n: ask for mid - 0.5. */
		double pct = 100.0 * ((double)mid - 0.5) / (double)n;
		if ((double)spate_hist_percentile(h, pct) <= x)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

static const double sec_bounds[] = { 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4,
				     5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,
				     0.25, 0.5, 1, 2.5, 5, 10 };
static const double rec_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
				     8192, 16384, 32768, 65536 };

/* One histogram's samples; @p scale converts its values (ns -> s). */
static void hist_samples(struct out *o, const char *name, const char *labels,
			 const struct spate_hist *h, const double *bounds, size_t nb, double scale)
{
	for (size_t i = 0; i < nb; i++)
		put(o, "%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n", name, labels, bounds[i],
		    count_le(h, bounds[i] / scale));
	put(o, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, labels, spate_hist_count(h));
	put(o, "%s_sum{%s} %.9g\n", name, labels,
	    spate_hist_mean(h) * (double)spate_hist_count(h) * scale);
	put(o, "%s_count{%s} %" PRIu64 "\n", name, labels, spate_hist_count(h));
}

static void shard_labels(const struct spate_stats_view *v, uint32_t s, char *buf, size_t len)
{
	const struct spate_stats_view_shard *x = &v->shards[s];
	snprintf(buf, len, "bus=\"%s\",stream=\"%s\",shard=\"%u\"", v->bus, v->stream_names[x->stream],
		 x->shard);
}

static void task_labels(const struct spate_stats_view *v, uint32_t c, uint32_t s, char *buf, size_t len)
{
	const struct spate_stats_view_consumer *k = &v->consumers[c];
	snprintf(buf, len, "bus=\"%s\",stream=\"%s\",shard=\"%u\",consumer=\"%s\"", v->bus,
		 v->stream_names[k->stream], s, k->name);
}

/* A per-shard stream figure: one family. */
#define SHARD_FAMILY(o, v, name, type, help, expr)                                  \
	do {                                                                        \
		family((o), (name), (type), (help));                               \
		for (uint32_t s_ = 0; s_ < (v)->n_shards; s_++) {                  \
			const struct spate_stats_view_shard *x = &(v)->shards[s_];         \
			char l_[256];                                              \
			shard_labels((v), s_, l_, sizeof(l_));                     \
			put((o), "%s{%s} %.17g\n", (name), l_, (double)(expr));    \
		}                                                                  \
	} while (0)

/* A per-(consumer, shard) figure summed over lanes. */
static uint64_t task_sum(const struct spate_stats_view *v, uint32_t c, uint32_t s, size_t off)
{
	const struct spate_stats_view_consumer *k = &v->consumers[c];
	uint64_t sum = 0;
	for (uint32_t l = 0; l < k->lanes; l++)
		sum += *(const uint64_t *)(const void *)((const char *)&v->tasks[k->first_task +
										s * k->lanes + l] +
							 off);
	return sum;
}

#define CONSUMER_FAMILY(o, v, name, help, field)                                      \
	do {                                                                          \
		family((o), (name), "counter", (help));                               \
		for (uint32_t c_ = 0; c_ < (v)->n_consumers; c_++)                    \
			for (uint32_t s_ = 0; s_ < (v)->consumers[c_].shards; s_++) { \
				char l_[320];                                         \
				task_labels((v), c_, s_, l_, sizeof(l_));             \
				put((o), "%s{%s} %" PRIu64 "\n", (name), l_,          \
				    task_sum((v), c_, s_, offsetof(struct spate_stats_view_task, field))); \
			}                                                             \
	} while (0)

/* One metric family after another, in the order docs/observability.md
 * lists them: a flat list that is long because the metric set is. */
char *spate_metrics_prometheus(const struct spate_stats_view *v)
{
	struct out o = { 0 };
	char l[320];

	family(&o, "spate_engine_up", "gauge", "1 if the engine that owns the bus's counters runs.");
	put(&o, "spate_engine_up{bus=\"%s\"} %d\n", v->bus, v->alive ? 1 : 0);
	family(&o, "spate_engine_start_time_seconds", "gauge",
	       "When the engine opened the bus (Unix time).");
	put(&o, "spate_engine_start_time_seconds{bus=\"%s\"} %.3f\n", v->bus,
	    (double)v->started_ns / 1e9);

	SHARD_FAMILY(&o, v, "spate_stream_records_in_total", "counter",
		     "Records appended to the shard since the engine opened the bus.", x->records_in);
	SHARD_FAMILY(&o, v, "spate_stream_in_bytes_total", "counter",
		     "Ring bytes appended to the shard (payload, record and batch headers).",
		     x->bytes_in);
	SHARD_FAMILY(&o, v, "spate_stream_head_sequence", "gauge",
		     "Sequence number the next record of the shard gets.", x->head_seq);
	family(&o, "spate_stream_oldest_sequence", "gauge",
	       "Sequence number of the oldest record still in the shard ring.");
	for (uint32_t s = 0; s < v->n_shards; s++)
		if (v->shards[s].oldest_seq != UINT64_MAX && v->shards[s].ring_ok) {
			shard_labels(v, s, l, sizeof(l));
			put(&o, "spate_stream_oldest_sequence{%s} %" PRIu64 "\n", l,
			    v->shards[s].oldest_seq);
		}
	family(&o, "spate_stream_oldest_record_age_seconds", "gauge",
	       "Age of the oldest record still in the shard ring (0 if empty).");
	for (uint32_t s = 0; s < v->n_shards; s++) {
		const struct spate_stats_view_shard *x = &v->shards[s];
		shard_labels(v, s, l, sizeof(l));
		put(&o, "spate_stream_oldest_record_age_seconds{%s} %.6f\n", l,
		    x->oldest_ts && v->real_ns > x->oldest_ts ? (double)(v->real_ns - x->oldest_ts) / 1e9
							     : 0.0);
	}
	SHARD_FAMILY(&o, v, "spate_stream_backpressure_events_total", "counter",
		     "Times a counted producer found the shard full.", x->backpressure);
	SHARD_FAMILY(&o, v, "spate_stream_put_failed_records_total", "counter",
		     "Records refused to counted producers (shard full).", x->put_failed);
	SHARD_FAMILY(&o, v, "spate_stream_persisted_bytes_total", "counter",
		     "Bytes written to the shard's log.", x->persist_bytes);
	family(&o, "spate_stream_durable_sequence", "gauge",
	       "Every record of the shard below this sequence number is on disk.");
	for (uint32_t s = 0; s < v->n_shards; s++)
		if (v->shards[s].durable_seq != UINT64_MAX) {
			shard_labels(v, s, l, sizeof(l));
			put(&o, "spate_stream_durable_sequence{%s} %" PRIu64 "\n", l,
			    v->shards[s].durable_seq);
		}
	family(&o, "spate_stream_fsync_duration_seconds", "histogram",
	       "Time of the fdatasync calls of the stream's shard logs.");
	for (uint32_t i = 0; i < v->n_streams; i++) {
		snprintf(l, sizeof(l), "bus=\"%s\",stream=\"%s\"", v->bus, v->stream_names[i]);
		hist_samples(&o, "spate_stream_fsync_duration_seconds", l, v->stream_fsync[i],
			     sec_bounds, sizeof(sec_bounds) / sizeof(sec_bounds[0]), 1e-9);
	}

	family(&o, "spate_consumer_up", "gauge", "1 if the consumer runs, 0 if stopped or failed.");
	for (uint32_t c = 0; c < v->n_consumers; c++)
		put(&o, "spate_consumer_up{bus=\"%s\",stream=\"%s\",consumer=\"%s\"} %d\n", v->bus,
		    v->stream_names[v->consumers[c].stream], v->consumers[c].name,
		    v->consumers[c].state == SPATE_STATS_RUNNING);
	CONSUMER_FAMILY(&o, v, "spate_consumer_records_total", "Records the plugin handled successfully.", records);
	CONSUMER_FAMILY(&o, v, "spate_consumer_bytes_total", "Payload bytes of those records.", bytes);
	CONSUMER_FAMILY(&o, v, "spate_consumer_batches_total", "Deliveries of batches to the plugin.", batches);
	CONSUMER_FAMILY(&o, v, "spate_consumer_errors_total", "Deliveries that failed (retry, partial, error).", errors);
	CONSUMER_FAMILY(&o, v, "spate_consumer_retries_total", "Deliveries that were retries.", retries);
	CONSUMER_FAMILY(&o, v, "spate_consumer_bisections_total", "Failed ranges split in halves.", bisections);
	CONSUMER_FAMILY(&o, v, "spate_consumer_failed_records_total", "Records sent to the failure destination (or dropped).", failed);
	CONSUMER_FAMILY(&o, v, "spate_consumer_expired_records_total", "Of those, records older than max_record_age.", expired);
	family(&o, "spate_consumer_checkpoint_sequence", "gauge",
	       "Next sequence number the consumer handles on the shard.");
	for (uint32_t c = 0; c < v->n_consumers; c++)
		for (uint32_t s = 0; s < v->consumers[c].shards; s++) {
			uint64_t ck = spate_stats_view_checkpoint(v, c, s);
			if (ck == UINT64_MAX)
				continue;
			task_labels(v, c, s, l, sizeof(l));
			put(&o, "spate_consumer_checkpoint_sequence{%s} %" PRIu64 "\n", l, ck);
		}
	const char *lag_names[3] = { "spate_consumer_lag_records", "spate_consumer_lag_bytes",
				     "spate_consumer_iterator_age_seconds" };
	const char *lag_help[3] = { "Records published on the shard that the consumer has not handled.",
				    "Ring bytes not yet released by the consumer's reader.",
				    "Now minus the commit time of the last record handled, while records wait." };
	for (int m = 0; m < 3; m++) {
		family(&o, lag_names[m], "gauge", lag_help[m]);
		for (uint32_t c = 0; c < v->n_consumers; c++)
			for (uint32_t s = 0; s < v->consumers[c].shards; s++) {
				uint64_t lr, lb, age;
				spate_stats_view_lag(v, c, s, &lr, &lb, &age);
				task_labels(v, c, s, l, sizeof(l));
				if (m == 2)
					put(&o, "%s{%s} %.3f\n", lag_names[m], l, (double)age / 1e3);
				else
					put(&o, "%s{%s} %" PRIu64 "\n", lag_names[m], l, m ? lb : lr);
			}
	}
	const char *hn[3] = { "spate_consumer_latency_seconds", "spate_consumer_process_duration_seconds",
			      "spate_consumer_batch_records" };
	const char *hh[3] = { "Commit of a record to its delivery to the plugin (sampled, 1 batch in 8).",
			      "Time inside the plugin's process() per delivery.",
			      "Records per delivery to the plugin." };
	for (int m = 0; m < 3; m++) {
		family(&o, hn[m], "histogram", hh[m]);
		for (uint32_t c = 0; c < v->n_consumers; c++) {
			const struct spate_hist *h = spate_stats_view_hist(v, c, (enum spate_stats_hist_kind)m);
			snprintf(l, sizeof(l), "bus=\"%s\",stream=\"%s\",consumer=\"%s\"", v->bus,
				 v->stream_names[v->consumers[c].stream], v->consumers[c].name);
			if (m < 2)
				hist_samples(&o, hn[m], l, h, sec_bounds,
					     sizeof(sec_bounds) / sizeof(sec_bounds[0]), 1e-9);
			else
				hist_samples(&o, hn[m], l, h, rec_bounds,
					     sizeof(rec_bounds) / sizeof(rec_bounds[0]), 1.0);
		}
	}
	/* Supervised consumers' processes (functions, isolation: process). */
	struct {
		const char *name, *type, *help;
		size_t off;
	} sf[] = {
		{ "spate_function_invocations_total", "counter", "Invocations of the consumer's processes (ended ok or not).", offsetof(struct spate_stats_view_sup, invocations) },
		{ "spate_function_errors_total", "counter", "Invocations that failed (error result, crash, timeout).", offsetof(struct spate_stats_view_sup, errors) },
		{ "spate_function_timeouts_total", "counter", "Processes killed at an invocation's deadline.", offsetof(struct spate_stats_view_sup, timeouts) },
		{ "spate_function_crashes_total", "counter", "Processes that died unasked (signal or exit).", offsetof(struct spate_stats_view_sup, crashes) },
		{ "spate_function_oom_kills_total", "counter", "Processes killed at their memory_limit (cgroup).", offsetof(struct spate_stats_view_sup, oom_kills) },
		{ "spate_function_cold_starts_total", "counter", "Processes that started and became ready.", offsetof(struct spate_stats_view_sup, cold_starts) },
		{ "spate_function_init_failures_total", "counter", "Processes that ended or hung before ready.", offsetof(struct spate_stats_view_sup, init_fails) },
	};
	for (size_t m = 0; m < sizeof(sf) / sizeof(sf[0]); m++) {
		family(&o, sf[m].name, sf[m].type, sf[m].help);
		for (uint32_t c = 0; c < v->n_consumers; c++) {
			const struct spate_stats_view_sup *x = v->consumers[c].sup;
			if (!x)
				continue;
			uint64_t val;
			memcpy(&val, (const char *)x + sf[m].off, sizeof(val));
			put(&o, "%s{bus=\"%s\",stream=\"%s\",consumer=\"%s\"} %" PRIu64 "\n", sf[m].name,
			    v->bus, v->stream_names[v->consumers[c].stream], v->consumers[c].name, val);
		}
	}
	family(&o, "spate_function_processes", "gauge", "Processes of the consumer running now.");
	for (uint32_t c = 0; c < v->n_consumers; c++)
		if (v->consumers[c].sup)
			put(&o, "spate_function_processes{bus=\"%s\",stream=\"%s\",consumer=\"%s\"} %u\n",
			    v->bus, v->stream_names[v->consumers[c].stream], v->consumers[c].name,
			    v->consumers[c].sup->alive);
	const char *sn[2] = { "spate_function_init_duration_seconds",
			      "spate_function_invoke_duration_seconds" };
	const char *sh[2] = { "Cold start: process start to ready (Lambda's Init Duration).",
			      "Invocation: batch handed to the process to its result." };
	for (int m = 0; m < 2; m++) {
		family(&o, sn[m], "histogram", sh[m]);
		for (uint32_t c = 0; c < v->n_consumers; c++) {
			const struct spate_stats_view_sup *x = v->consumers[c].sup;
			if (!x)
				continue;
			snprintf(l, sizeof(l), "bus=\"%s\",stream=\"%s\",consumer=\"%s\"", v->bus,
				 v->stream_names[v->consumers[c].stream], v->consumers[c].name);
			hist_samples(&o, sn[m], l, m ? x->invoke : x->init, sec_bounds,
				     sizeof(sec_bounds) / sizeof(sec_bounds[0]), 1e-9);
		}
	}
	family(&o, "spate_consumer_catchup_ratio", "gauge",
	       "Progress of a consumer shard catching up from the log (0..1), while it does.");
	for (uint32_t c = 0; c < v->n_consumers; c++)
		for (uint32_t s = 0; s < v->consumers[c].shards; s++) {
			const struct spate_stats_view_consumer *k = &v->consumers[c];
			for (uint32_t ln = 0; ln < k->lanes; ln++) {
				double p = spate_stats_view_task_catchup(&v->tasks[k->first_task + s * k->lanes + ln]);
				if (p < 0)
					continue;
				task_labels(v, c, s, l, sizeof(l));
				put(&o, "spate_consumer_catchup_ratio{%s,lane=\"%u\"} %.4f\n", l, ln, p);
			}
		}

	const char *wn[3] = { "spate_worker_busy_seconds_total", "spate_worker_parked_seconds_total",
			      "spate_worker_loops_total" };
	const char *wh[3] = { "Time in polling rounds that handled records.",
			      "Time idle: napping, sleeping on a futex, yielding or spinning.",
			      "Polling rounds." };
	for (int m = 0; m < 3; m++) {
		family(&o, wn[m], "counter", wh[m]);
		for (uint32_t k = 0; k < v->n_workers; k++) {
			const struct spate_stats_view_worker *w = &v->workers[k];
			double val = m == 0 ? (double)w->busy_ns / 1e9
				     : m == 1 ? (double)w->parked_ns / 1e9 : (double)w->loops;
			put(&o, "%s{bus=\"%s\",worker=\"%u\",cpu=\"%d\"} %.9g\n", wn[m], v->bus, k,
			    w->cpu, val);
		}
	}
	family(&o, "spate_worker_parked", "gauge", "1 if the worker is idle right now.");
	for (uint32_t k = 0; k < v->n_workers; k++)
		put(&o, "spate_worker_parked{bus=\"%s\",worker=\"%u\",cpu=\"%d\"} %d\n", v->bus, k,
		    v->workers[k].cpu, v->workers[k].state != SPATE_STATS_WORKER_ACTIVE);
	if (v->n_sources) {
		family(&o, "spate_source_up", "gauge",
		       "1 while the source runs connected to its peer (state up).");
		for (uint32_t k = 0; k < v->n_sources; k++)
			put(&o, "spate_source_up{bus=\"%s\",source=\"%s\",type=\"%s\",state=\"%s\"} %d\n",
			    v->bus, v->sources[k].name, v->sources[k].type,
			    spate_stats_source_state_name(v->sources[k].state),
			    v->sources[k].state == SPATE_STATS_SOURCE_UP);
		family(&o, "spate_source_value", "gauge",
		       "A source's named figure (its door's counters and gauges: fetched, appended, "
		       "redeliveries, lag, pending_acks, ...).");
		for (uint32_t k = 0; k < v->n_sources; k++)
			for (uint32_t c = 0; c < v->sources[k].n_counters; c++)
				put(&o,
				    "spate_source_value{bus=\"%s\",source=\"%s\",type=\"%s\",name=\"%s\"} %" PRIu64
				    "\n",
				    v->bus, v->sources[k].name, v->sources[k].type,
				    v->sources[k].counter_names[c], v->sources[k].counters[c]);
	}
	if (o.oom) {
		free(o.b);
		return NULL;
	}
	return o.b;
}

/* ------------------------------------------------------------------------ */
/* HTTP                                                                     */
/* ------------------------------------------------------------------------ */

struct spate_metrics_http {
	struct MHD_Daemon *d;
	char bus[SPATE_STATS_NAME_MAX + 1];
};

static enum MHD_Result reply(struct MHD_Connection *con, unsigned status, char *body,
			     const char *type)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result rc = MHD_queue_response(con, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *con, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct spate_metrics_http *m = cls;
	struct spate_stats_view *v;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;

	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(con, MHD_HTTP_METHOD_NOT_ALLOWED, strdup("GET /metrics\n"),
			     "text/plain");
	if (strcmp(url, "/metrics")) {
		char *b = NULL;
		if (asprintf(&b, "spate: Prometheus metrics of bus %s at /metrics\n", m->bus) < 0)
			return MHD_NO;
		return reply(con, strcmp(url, "/") ? MHD_HTTP_NOT_FOUND : MHD_HTTP_OK, b,
			     "text/plain");
	}
	int rc = spate_stats_view_take(m->bus, &v);
	if (rc < 0) {
		char *b = NULL;
		if (asprintf(&b, "spate: no counters for bus %s: %s\n", m->bus, strerror(-rc)) < 0)
			return MHD_NO;
		return reply(con, MHD_HTTP_SERVICE_UNAVAILABLE, b, "text/plain");
	}
	char *text = spate_metrics_prometheus(v);
	spate_stats_view_free(v);
	if (!text)
		return MHD_NO;
	return reply(con, MHD_HTTP_OK, text, "text/plain; version=0.0.4; charset=utf-8");
}

int spate_metrics_http_start(const char *bus, const char *listen, struct spate_metrics_http **out,
			     char *err, size_t errlen)
{
	char host[64];
	uint16_t port;
	struct sockaddr_in a4;
	struct sockaddr_in6 a6;
	const struct sockaddr *sa;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	*out = NULL;
	if (spate_config_parse_listen(listen, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "metrics.listen %s: not HOST:PORT", listen);
		return -EINVAL;
	}
	memset(&a4, 0, sizeof(a4));
	memset(&a6, 0, sizeof(a6));
	if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
		a4.sin_family = AF_INET;
		a4.sin_port = htons(port);
		sa = (const struct sockaddr *)&a4;
	} else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
		a6.sin6_family = AF_INET6;
		a6.sin6_port = htons(port);
		sa = (const struct sockaddr *)&a6;
		flags |= MHD_USE_IPv6;
	} else {
		snprintf(err, errlen, "metrics.listen %s: not an IP address", listen);
		return -EINVAL;
	}
	struct spate_metrics_http *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	snprintf(m->bus, sizeof(m->bus), "%s", bus);
	m->d = MHD_start_daemon(flags, port, NULL, NULL, handle, m, MHD_OPTION_SOCK_ADDR, sa,
				MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	if (!m->d) {
		int e = errno ? errno : EADDRINUSE;
		snprintf(err, errlen, "metrics.listen %s: cannot listen: %s", listen, strerror(e));
		free(m);
		return -e;
	}
	*out = m;
	return 0;
}

void spate_metrics_http_stop(struct spate_metrics_http *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->d);
	free(m);
}
