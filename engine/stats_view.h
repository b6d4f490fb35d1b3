/* SPDX-License-Identifier: MIT */
/* Internal: a snapshot of a bus's counters region plus what the rings show
 * (engine/cli_stat.c), shared by `spate stat`, `spate top` and the
 * Prometheus endpoint (engine/metrics_http.c). Not installed. */
#ifndef SPATE_ENGINE_STATS_VIEW_H
#define SPATE_ENGINE_STATS_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "spate/hist.h"
#include "spate/stats.h"

struct spate_sv_shard {
	uint32_t stream, shard;
	bool ring_ok;                  /* the stream region could be read */
	uint64_t records_in, bytes_in; /* since the counters region was created */
	uint64_t head_seq;             /* next sequence number to be published */
	uint64_t oldest_seq, oldest_ts;/* oldest record still in the ring (ts 0: empty) */
	uint64_t backpressure, put_failed, put_batches;
	uint64_t persist_bytes, persist_writes, persist_fsyncs, durable_seq;
};

struct spate_sv_task {
	uint32_t consumer, shard, lane;
	uint64_t records, bytes, batches, errors, retries, bisections, failed, expired;
	uint64_t checkpoint, last_ts, process_ns;
	uint64_t lag_records, lag_bytes, age_ms;
	uint32_t source;
	uint64_t catchup_from, catchup_target;
	uint64_t batch_log2[SPATE_STATS_BATCH_BUCKETS]; /* deliveries by log2 size */
};

struct spate_sv_consumer {
	char name[SPATE_STATS_NAME_MAX + 1], plugin[SPATE_STATS_NAME_MAX + 1];
	char error[SPATE_STATS_LINE];
	uint32_t stream, shards, lanes, first_task, state;
	uint64_t cold_start_ns, first_batch_ns, helped;
	/* The consumer's histograms (every shard and lane of it). */
	struct spate_hist *latency, *process, *batch;
};

struct spate_sv_worker {
	uint64_t loops, busy_ns, parked_ns, since_ns;
	uint32_t state, tasks;
	int32_t cpu;
};

struct spate_sv {
	char bus[SPATE_STATS_NAME_MAX + 1];
	uint32_t engine_pid;
	bool alive;
	uint64_t started_ns, mono_ns, real_ns;
	uint32_t n_streams, n_shards, n_consumers, n_tasks, n_workers;
	char (*stream_names)[SPATE_STATS_NAME_MAX + 1];
	uint32_t *stream_shards, *stream_first;
	struct spate_hist **stream_fsync; /* [n_streams]: fdatasync latency of its shards */
	struct spate_sv_shard *shards;
	struct spate_sv_consumer *consumers;
	struct spate_sv_task *tasks;
	struct spate_sv_worker *workers;
};

/** Take a snapshot of bus @p bus. @return 0 or the errors of spate_stats_attach(), -ENOMEM. */
int spate_sv_take(const char *bus, struct spate_sv **out);
void spate_sv_free(struct spate_sv *v);
/** Histogram of consumer @p c (every shard and lane: histograms are per
 *  consumer, not per shard). which: 0 latency, 1 process, 2 batch. */
const struct spate_hist *spate_sv_hist(const struct spate_sv *v, uint32_t c, int which);
/** Lag of consumer @p c on @p shard (UINT32_MAX: summed over shards): the
 *  largest of its lanes'. */
void spate_sv_lag(const struct spate_sv *v, uint32_t c, uint32_t shard, uint64_t *records,
		  uint64_t *bytes, uint64_t *age_ms);
/** Catch-up progress of a task reading the log (0..1), -1 on the ring. */
double spate_sv_task_catchup(const struct spate_sv_task *x);
/** Checkpoint of consumer @p c on @p shard: the smallest of its lanes'
 *  (UINT64_MAX: unknown yet). */
uint64_t spate_sv_checkpoint(const struct spate_sv *v, uint32_t c, uint32_t shard);
/** Name of consumer state @p s. */
const char *spate_sv_state(uint32_t s);

/** `spate run` side: serve Prometheus text for bus @p bus on @p listen
 *  (metrics_http.c). @return 0 or -errno; *out is the server. */
struct spate_metrics_http;
int spate_metrics_http_start(const char *bus, const char *listen, struct spate_metrics_http **out,
			     char *err, size_t errlen);
void spate_metrics_http_stop(struct spate_metrics_http *m);
/** Render the Prometheus text exposition of @p v into a malloc'ed string. */
char *spate_sv_prometheus(const struct spate_sv *v);

#endif
