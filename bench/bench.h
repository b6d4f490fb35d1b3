/* SPDX-License-Identifier: MIT */
/**
 * @file bench.h
 * @brief Benchmarks behind `spate bench ...` (the spatebench library).
 */
#ifndef SPATE_BENCH_H
#define SPATE_BENCH_H

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * `spate bench ring [options]`: cross-core throughput and latency of the
 * spate record ring against DPDK rte_ring and ck_ring. @p argv[0] is "ring".
 * Results go to stdout (a table, or one JSON object with --json), errors and
 * warnings to stderr.
 * @return 0, -EINVAL (bad options; usage printed), -ENOMEM, -EIO (a run
 *         failed or a reader saw records out of sequence).
 */
/** Median of @p n values (of a sorted copy; @p v is not changed); 0 if
 *  none or out of memory. bench_util.c */
double spate_bench_median(const double *v, unsigned n);

int spate_bench_ring_main(int argc, char **argv);

/** The cross-core cache-line round trip, ns (the fastest of 5 ping-pongs of
 *  20000 rounds between threads pinned to @p cpu_a and @p cpu_b; -1, -1:
 *  the first two CPUs allowed), printed by every benchmark so figures from
 *  different machines can be read side by side; 0 if it cannot run.
 *  bench_util.c */
double spate_bench_c2c_rtt_ns(int cpu_a, int cpu_b);

/** `spate demo`: a producer -> stream -> count plugin pipeline with numbers. */
int spate_demo_main(int argc, char **argv);

/** `spate bench pipeline`: end-to-end throughput and latency, --json. */
int spate_bench_pipeline_main(int argc, char **argv);

/** `spate bench persist`: raw disk bandwidth vs the shard log, --json. */
int spate_bench_persist_main(int argc, char **argv);

/** `spate bench replay`: history reads from a shard log, per reader, --json. */
int spate_bench_replay_main(int argc, char **argv);

/** `spate bench api`: the Kinesis API front vs kinesalite, signed
 *  PutRecords and GetRecords over keep-alive connections, --json. api.c */
int spate_bench_api_main(int argc, char **argv);
/** `spate bench functions`: a consumer in-process vs isolated vs a
 *  function (issue 12), --json. bench/functions.c */
int spate_bench_functions_main(int argc, char **argv);

struct spate_engine;
struct spate_consumer_stats;
/**
 * Wait until consumer @p name of engine @p e has handled @p records records,
 * polling its stats every millisecond; give up when it stops running or
 * 120 s after @p t0 (monotonic ns). *st holds its last stats.
 * @return the monotonic time it got there, or 0 if it did not.
 */
uint64_t spate_bench_wait_consumer(struct spate_engine *e, const char *name, uint64_t records,
				   uint64_t t0, struct spate_consumer_stats *st);

/** What `spate bench functions` hands the function cases. */
struct spate_bench_fn_params {
	uint32_t records, size, batch; /**< per run: records, payload bytes, batch_size */
	unsigned runs;                 /**< runs per case (report medians) */
	double inprocess_records_per_sec; /**< the in-process case's median, same run */
	unsigned fn_concurrency;       /**< > 1: the node case also with this many shards and
					    processes (--fn-concurrency) */
};
struct json_object;
/**
 * The function cases of `spate bench functions` (impl "function", runtime
 * node|python), owned by the functions door (bench/functions_fn.c): append
 * one JSON object per case to array @p cases, with the keys impl, runtime,
 * records_per_sec, invocations_per_sec, invoke_p50_ns, invoke_p99_ns,
 * cold_start_p50_ns. Weak: without it the bench has no function cases.
 * @return 0 or -errno (a case that could not run is left out, said why on
 *         stderr).
 */
int spate_bench_functions_fn(const struct spate_bench_fn_params *p, struct json_object *cases)
	__attribute__((weak));
/** `spate bench bridge`: bus A -> NATS JetStream -> bus B vs plain libnats,
 *  --json (bridge.c; built with libnats). */
int spate_bench_bridge_main(int argc, char **argv);
/** `spate bench ingress`: packets/s from a DPDK port into a stream vs a
 *  bare rte_eth_rx_burst loop, --json (bench/ingress.c; DPDK builds only). */
int spate_bench_ingress_main(int argc, char **argv);

/** Print the options of `spate bench ring` to @p f. */
void spate_bench_ring_usage(FILE *f);

#ifdef __cplusplus
}
#endif
#endif
