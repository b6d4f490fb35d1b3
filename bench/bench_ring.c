/* SPDX-License-Identifier: MIT */
/*
 * bench_ring.c - `spate bench ring`: the driver of the ring benchmark.
 *
 * Design. A case is (mode, record size, batch). For each case the driver
 * runs every selected ring R times, interleaved (spate, rte_ring, ck_ring, bound,
 * bound_nt, spate, ...), because this machine is shared and noisy: the figure reported
 * is the median records/s of the R runs, the latency percentiles come from
 * the R runs' histograms merged. Each run gets a fresh ring and fresh
 * threads, pinned by the topology module to distinct cores that share the
 * closest cache (or round-robin when there are more threads than cores).
 * Threads meet at a start line, run ~10 % of the duration as warm-up, then
 * the readers count what they take during the measured interval; throughput
 * is the slowest reader's records over its own measured time.
 *
 * What every ring does is the same (bench_impl.h): the writer fills every
 * 8-byte word of each record and publishes batches; the reader checks each
 * record's sequence word and reads every word. Waiting is the same busy
 * loop with the CPU's pause hint for every ring; when threads outnumber cores
 * (4to1 and 1to3 on a 2-core machine) every ring waits with sched_yield()
 * instead, and the output says so.
 *
 * Latency is measured inside the throughput run (one sample per take: the
 * reader's clock minus the oldest taken record's publication time). At
 * saturation that is mostly queueing: whoever is slower fills the ring.
 * --rate paces the writers to measure latency below saturation.
 *
 * Limits: at most 8 threads per case; the ring is raised for a case whose
 * batch would not fit in half of it (spate's largest batch), for all rings.
 */
#include "spate_config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "spate/ring.h"
#include "spate/topo.h"
#include "bench.h"
#include "bench_impl.h"
#include "plot.h"

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */
/* ------------------------------------------------------------------------ */

static const struct spate_bench_impl *const all_impls[] = {
	&spate_bench_impl_spate,
#if SPATE_HAVE_DPDK
	&spate_bench_impl_rte_ring,
#endif
#if SPATE_HAVE_CK
	&spate_bench_impl_ck_ring,
#endif
	&spate_bench_impl_bound,
	&spate_bench_impl_bound_nt,
};
#define NIMPLS (sizeof(all_impls) / sizeof(all_impls[0]))

static const struct {
	const char *name;
	unsigned nwriters, nreaders;
} modes[SPATE_BENCH_NMODES] = {
	[SPATE_BENCH_1TO1] = { "1to1", 1, 1 },
	[SPATE_BENCH_4TO1] = { "4to1", 4, 1 },
	[SPATE_BENCH_1TO3] = { "1to3", 1, 3 },
};

static const unsigned default_sizes[] = { 16, 64, 256, 1024, 4096 };
static const unsigned default_batches[] = { 1, 8, 32, 128 };

#define MAX_LIST 16u
#define MAX_REPEAT 99u

struct opts {
	unsigned modes; /* bit per enum spate_bench_mode */
	unsigned sizes[MAX_LIST], nsizes;
	unsigned batches[MAX_LIST], nbatches;
	unsigned impls; /* bit per all_impls[] entry */
	double seconds;
	unsigned repeat;
	uint64_t ring_bytes;
	int json;
	int wait; /* -1 auto, 0 busy, 1 yield */
	uint64_t rate;
	int pin;
	int huge;
	int dpdk_sync;
	const char *plot; /* --plot FILE.png, or NULL */
};

/* ------------------------------------------------------------------------ */
/* Placement                                                                */
/* ------------------------------------------------------------------------ */

struct place {
	int cpu[SPATE_BENCH_MAX_THREADS]; /* -1: not pinned */
	unsigned n;
	int distinct; /* 1 yes, 0 no, -1 unknown */
	int cache_level;
	unsigned cache_kib;
	char desc[300];
};

struct machine {
	struct spate_topo *topo; /* NULL without hwloc */
	unsigned cores;          /* cores (or CPUs, without hwloc) we may use */
	unsigned pus;
	int cpus[256];           /* allowed CPUs, for the fallback */
	unsigned ncpus;
	char model[128];
	char topo_desc[256];
};

static void read_model(char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10))
			continue;
		char *p = strchr(line, ':');
		if (!p)
			break;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		p[strcspn(p, "\n")] = 0;
		snprintf(buf, len, "%s", p);
		break;
	}
	fclose(f);
}

static void machine_open(struct machine *m)
{
	cpu_set_t set;

	memset(m, 0, sizeof(*m));
	read_model(m->model, sizeof(m->model));
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int c = 0; c < CPU_SETSIZE && m->ncpus < 256; c++)
			if (CPU_ISSET(c, &set))
				m->cpus[m->ncpus++] = c;
	}
	if (spate_topo_open(&m->topo) == 0) {
		m->cores = spate_topo_cores(m->topo);
		m->pus = spate_topo_pus(m->topo);
		spate_topo_describe(m->topo, m->topo_desc, sizeof(m->topo_desc));
	} else {
		m->topo = NULL;
		m->cores = m->pus = m->ncpus;
		snprintf(m->topo_desc, sizeof(m->topo_desc),
			 "%u CPUs (no hwloc: cores and caches unknown)", m->ncpus);
	}
}

static void place_threads(const struct machine *m, unsigned n, int pin, struct place *p)
{
	struct spate_topo_placement tp;

	memset(p, 0, sizeof(*p));
	p->n = n;
	for (unsigned i = 0; i < SPATE_BENCH_MAX_THREADS; i++)
		p->cpu[i] = -1;
	if (!pin) {
		p->distinct = -1;
		snprintf(p->desc, sizeof(p->desc), "%u threads, not pinned (--no-pin)", n);
		return;
	}
	if (m->topo && spate_topo_place(m->topo, n, &tp) == 0) {
		for (unsigned i = 0; i < n; i++)
			p->cpu[i] = tp.cpu[i];
		p->distinct = tp.distinct_cores;
		p->cache_level = tp.shared_cache_level;
		p->cache_kib = tp.shared_cache_kib;
		snprintf(p->desc, sizeof(p->desc), "%s", tp.desc);
		return;
	}
	/* Fallback: the allowed CPUs round-robin, cores unknown. */
	size_t off = 0;
	p->distinct = n <= m->ncpus ? -1 : 0;
	for (unsigned i = 0; i < n && m->ncpus; i++) {
		p->cpu[i] = m->cpus[i % m->ncpus];
		int r = snprintf(p->desc + off, sizeof(p->desc) - off, "%scpu%d", i ? " + " : "",
				 p->cpu[i]);
		if (r > 0 && off + (size_t)r < sizeof(p->desc))
			off += (size_t)r;
	}
	snprintf(p->desc + off, sizeof(p->desc) - off, " (no hwloc: cores unknown)%s",
		 n > m->ncpus ? "; CPUs are shared" : "");
}

static int pin_self(const struct machine *m, int cpu)
{
	if (cpu < 0)
		return 0;
	if (m->topo)
		return spate_topo_pin_self(m->topo, cpu);
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* ------------------------------------------------------------------------ */
/* One run                                                                  */
/* ------------------------------------------------------------------------ */

struct thr {
	struct spate_bench_ctx *x;
	const struct spate_bench_impl *impl;
	const struct machine *m;
	int writer;
	unsigned id;
	int cpu;
	int pin_rc;
	pthread_t tid;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	struct spate_bench_ctx *x = t->x;
	unsigned spins = 0;

	t->pin_rc = pin_self(t->m, t->cpu);
	/* Relaxed: a count; the setup it follows was handed over by
	 * pthread_create() and nothing else is published through it. */
	atomic_fetch_add_explicit(&x->ready, 1, memory_order_relaxed);
	while (spate_bench_phase(x) == SPATE_BENCH_INIT)
		spate_bench_backoff(x, &spins);
	if (t->writer)
		t->impl->writer(x, t->id);
	else
		t->impl->reader(x, t->id);
	return NULL;
}

struct run {
	double rps;       /* slowest reader's records/s */
	double seconds;   /* its measured time */
	uint64_t errors;
	struct spate_hist hist;
	char err[160];
};

static void sleep_s(double s)
{
	struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void set_phase(struct spate_bench_ctx *x, unsigned ph)
{
	/* Relaxed: a flag (see spate_bench_phase()). */
	atomic_store_explicit(&x->phase, ph, memory_order_relaxed);
}

/* Order of threads on the placement: writer 0, reader 0, then the rest, so
 * the first two always get distinct cores. */
static void thread_roles(const struct spate_bench_case *c, unsigned k, int *writer, unsigned *id)
{
	if (k == 0) {
		*writer = 1;
		*id = 0;
	} else if (k == 1) {
		*writer = 0;
		*id = 0;
	} else if (k < 1 + c->nwriters) {
		*writer = 1;
		*id = k - 1;
	} else {
		*writer = 0;
		*id = k - c->nwriters;
	}
}

static int run_one(const struct machine *m, const struct spate_bench_impl *impl,
		   const struct spate_bench_case *c, const struct place *pl, double seconds,
		   struct run *out)
{
	unsigned nthr = c->nwriters + c->nreaders;
	struct thr thr[SPATE_BENCH_MAX_THREADS];
	struct spate_bench_ctx *x;
	unsigned started = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	spate_hist_init(&out->hist);
	x = aligned_alloc(128, (sizeof(*x) + 127u) & ~(size_t)127u);
	if (!x)
		return -ENOMEM;
	memset(x, 0, sizeof(*x));
	x->c = c;
	size_t rsz = sizeof(struct spate_bench_rres) * c->nreaders;
	x->rres = aligned_alloc(128, (rsz + 127u) & ~(size_t)127u);
	if (!x->rres) {
		rc = -ENOMEM;
		goto out_ctx;
	}
	memset(x->rres, 0, rsz);
	rc = impl->setup(x);
	if (rc < 0) {
		snprintf(out->err, sizeof(out->err), "%s setup: %s", impl->name,
			 x->err[0] ? x->err : strerror(-rc));
		goto out_impl;
	}
	for (unsigned k = 0; k < nthr; k++) {
		struct thr *t = &thr[k];
		t->x = x;
		t->impl = impl;
		t->m = m;
		t->cpu = pl->cpu[k];
		t->pin_rc = 0;
		thread_roles(c, k, &t->writer, &t->id);
		rc = -pthread_create(&t->tid, NULL, thr_main, t);
		if (rc < 0) {
			snprintf(out->err, sizeof(out->err), "pthread_create: %s", strerror(-rc));
			set_phase(x, SPATE_BENCH_STOP);
			goto out_join;
		}
		started++;
	}
	/* Relaxed: a count (see thr_main()). */
	while (atomic_load_explicit(&x->ready, memory_order_relaxed) < nthr)
		sleep_s(0.0001);
	set_phase(x, SPATE_BENCH_WARMUP);
	sleep_s(seconds * 0.1);
	set_phase(x, SPATE_BENCH_MEASURE);
	sleep_s(seconds);
	set_phase(x, SPATE_BENCH_STOP);
out_join:
	for (unsigned k = 0; k < started; k++)
		pthread_join(thr[k].tid, NULL);
	if (rc == 0) {
		out->rps = -1;
		for (unsigned k = 0; k < started; k++)
			if (thr[k].pin_rc < 0)
				fprintf(stderr, "warning: could not pin a thread to cpu%d: %s\n",
					thr[k].cpu, strerror(-thr[k].pin_rc));
		for (unsigned i = 0; i < c->nreaders; i++) {
			struct spate_bench_rres *r = &x->rres[i];
			double rps = r->ns ? (double)r->records * 1e9 / (double)r->ns : 0.0;
			if (out->rps < 0 || rps < out->rps) {
				out->rps = rps;
				out->seconds = (double)r->ns / 1e9;
			}
			out->errors += r->errors;
			spate_hist_merge(&out->hist, &r->hist);
			if (r->errors && !out->err[0])
				snprintf(out->err, sizeof(out->err), "%s reader %u: %s", impl->name,
					 i, r->err);
		}
		if (out->rps < 0)
			out->rps = 0;
		/* Relaxed: read after pthread_join(). */
		if (atomic_load_explicit(&x->failed, memory_order_relaxed)) {
			snprintf(out->err, sizeof(out->err), "%s", x->err);
			rc = -EIO;
		} else if (out->errors) {
			rc = -EIO;
		}
	}
out_impl:
	impl->teardown(x);
	free(x->rres);
out_ctx:
	free(x);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Results                                                                  */
/* ------------------------------------------------------------------------ */

struct result {
	const struct spate_bench_impl *impl;
	struct spate_bench_case c;
	double runs[MAX_REPEAT];
	double secs[MAX_REPEAT];
	double rtt[MAX_REPEAT][2]; /* cross-core round trip just before and after each run */
	unsigned nruns;
	double rps; /* median */
	double seconds;
	uint64_t errors;
	int failed;
	struct spate_hist hist;
};

static void fmt_ns(char *buf, size_t len, uint64_t ns)
{
	if (ns < 10000)
		snprintf(buf, len, "%lluns", (unsigned long long)ns);
	else if (ns < 10000000)
		snprintf(buf, len, "%.1fus", (double)ns / 1e3);
	else if (ns < 10000000000ull)
		snprintf(buf, len, "%.1fms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.1fs", (double)ns / 1e9);
}

static void fmt_bytes(char *buf, size_t len, uint64_t b)
{
	if (b >= (1ull << 20) && !(b & ((1ull << 20) - 1)))
		snprintf(buf, len, "%llu MiB", (unsigned long long)(b >> 20));
	else
		snprintf(buf, len, "%llu KiB", (unsigned long long)(b >> 10));
}

static const struct result *find_result(const struct result *res, unsigned n,
					const struct result *like, const char *impl)
{
	for (unsigned i = 0; i < n; i++)
		if (res[i].nruns && !res[i].failed && !strcmp(res[i].impl->name, impl) &&
		    res[i].c.mode == like->c.mode && res[i].c.size == like->c.size &&
		    res[i].c.batch == like->c.batch)
			return &res[i];
	return NULL;
}

/*
 * Virtual machines of this kind move their vCPUs: within minutes the same
 * two CPUs read a cross-core round trip of ~30-170 ns (a shared cache) or
 * ~350-620 ns (none), sometimes in the middle of a run. Each run is tagged
 * with the round trip measured just before and just after it; a run whose
 * two readings fall on both sides of SPLIT_RTT_NS is "mixed". Same-run
 * ratios are then also given per regime, pairing the runs of the two rings
 * made back to back in the same round.
 */
#define SPLIT_RTT_NS 250.0
enum { REGIME_SHARED, REGIME_SPLIT, REGIME_MIXED, NREGIMES };
static const char *const regime_names[NREGIMES] = { "shared", "split", "mixed" };

static int run_regime(const struct result *r, unsigned i)
{
	int a = r->rtt[i][0] >= SPLIT_RTT_NS, b = r->rtt[i][1] >= SPLIT_RTT_NS;
	return a != b ? REGIME_MIXED : a ? REGIME_SPLIT : REGIME_SHARED;
}

/* Median ratio of @p r's runs to @p base's runs of the same round, over the
 * pairs where both runs are in @p regime; the number of pairs in *n. */
static double regime_ratio(const struct result *r, const struct result *base, int regime,
			   unsigned *n)
{
	double v[MAX_REPEAT];
	unsigned k = 0;

	for (unsigned i = 0; i < r->nruns && i < base->nruns; i++)
		if (run_regime(r, i) == regime && run_regime(base, i) == regime && base->runs[i] > 0)
			v[k++] = r->runs[i] / base->runs[i];
	*n = k;
	return k ? spate_bench_median(v, k) : 0;
}

static void print_regimes(const struct result *r, const struct result *rte)
{
	if (!rte || rte == r || r->failed || rte->failed)
		return;
	printf("#   %s/%s by cross-core regime (rtt before/after each run, split >= %.0f ns):",
	       r->impl->name, rte->impl->name, SPLIT_RTT_NS);
	for (int g = 0; g < NREGIMES; g++) {
		unsigned n;
		double q = regime_ratio(r, rte, g, &n);
		if (g == REGIME_MIXED)
			printf(" %s %u", regime_names[g], n);
		else if (n)
			printf(" %s %.2fx (%u)", regime_names[g], q, n);
		else
			printf(" %s - (0)", regime_names[g]);
	}
	printf("\n");
}

/* {shared: {pairs, median}, split: {...}, mixed: {pairs}}: @p r / @p base. */
static json_object *by_regime_json(const struct result *r, const struct result *base)
{
	json_object *by = json_object_new_object();

	for (int g = 0; g < NREGIMES; g++) {
		unsigned n;
		double q = regime_ratio(r, base, g, &n);
		json_object *e = json_object_new_object();
		json_object_object_add(e, "pairs", json_object_new_int64(n));
		if (n && g != REGIME_MIXED)
			json_object_object_add(e, "median", json_object_new_double(q));
		json_object_object_add(by, regime_names[g], e);
	}
	return by;
}

static void print_header(void)
{
	printf("%-9s %-5s %5s %5s %9s %8s %9s %9s %9s %9s %7s %6s\n", "impl", "mode", "size",
	       "batch", "Mrec/s", "GB/s", "p50", "p99", "p99.9", "max", "vs rte", "runs");
}

static void print_row(const struct result *r, const struct result *rte)
{
	char p50[16], p99[16], p999[16], mx[16], ratio[16] = "";

	if (r->failed) {
		printf("%-9s %-5s %5u %5u   FAILED\n", r->impl->name, modes[r->c.mode].name,
		       r->c.size, r->c.batch);
		return;
	}
	fmt_ns(p50, sizeof(p50), spate_hist_percentile(&r->hist, 50.0));
	fmt_ns(p99, sizeof(p99), spate_hist_percentile(&r->hist, 99.0));
	fmt_ns(p999, sizeof(p999), spate_hist_percentile(&r->hist, 99.9));
	fmt_ns(mx, sizeof(mx), spate_hist_max(&r->hist));
	if (rte && rte != r && rte->rps > 0)
		snprintf(ratio, sizeof(ratio), "%.2fx", r->rps / rte->rps);
	printf("%-9s %-5s %5u %5u %9.2f %8.2f %9s %9s %9s %9s %7s %6u\n", r->impl->name,
	       modes[r->c.mode].name, r->c.size, r->c.batch, r->rps / 1e6,
	       r->rps * r->c.size / 1e9, p50, p99, p999, mx, ratio, r->nruns);
}

static json_object *jstr(const char *s)
{
	return json_object_new_string(s);
}

static json_object *case_json(const struct result *r)
{
	json_object *o = json_object_new_object();
	json_object *runs = json_object_new_array();

	json_object_object_add(o, "impl", jstr(r->impl->name));
	json_object_object_add(o, "mode", jstr(modes[r->c.mode].name));
	json_object_object_add(o, "record_size", json_object_new_int64(r->c.size));
	json_object_object_add(o, "batch", json_object_new_int64(r->c.batch));
	json_object_object_add(o, "writers", json_object_new_int64(r->c.nwriters));
	json_object_object_add(o, "readers", json_object_new_int64(r->c.nreaders));
	json_object_object_add(o, "ring_bytes", json_object_new_int64((int64_t)r->c.ring_bytes));
	json_object_object_add(o, "wait", jstr(r->c.yield ? "yield" : "busy"));
	if (r->failed) {
		json_object_object_add(o, "failed", json_object_new_boolean(1));
		json_object_object_add(o, "errors", json_object_new_int64((int64_t)r->errors));
		json_object_put(runs);
		return o;
	}
	json_object_object_add(o, "records_per_sec", json_object_new_double(r->rps));
	json_object_object_add(o, "bytes_per_sec", json_object_new_double(r->rps * r->c.size));
	json_object_object_add(o, "p50_ns",
			       json_object_new_int64((int64_t)spate_hist_percentile(&r->hist, 50.0)));
	json_object_object_add(o, "p99_ns",
			       json_object_new_int64((int64_t)spate_hist_percentile(&r->hist, 99.0)));
	json_object_object_add(o, "p999_ns",
			       json_object_new_int64((int64_t)spate_hist_percentile(&r->hist, 99.9)));
	json_object_object_add(o, "max_ns", json_object_new_int64((int64_t)spate_hist_max(&r->hist)));
	json_object_object_add(o, "latency_samples",
			       json_object_new_int64((int64_t)spate_hist_count(&r->hist)));
	json_object_object_add(o, "seconds", json_object_new_double(r->seconds));
	for (unsigned i = 0; i < r->nruns; i++)
		json_object_array_add(runs, json_object_new_double(r->runs[i]));
	json_object_object_add(o, "runs_records_per_sec", runs);
	json_object *rt = json_object_new_array();
	for (unsigned i = 0; i < r->nruns; i++) {
		json_object *pair = json_object_new_array();
		json_object_array_add(pair, json_object_new_double(r->rtt[i][0]));
		json_object_array_add(pair, json_object_new_double(r->rtt[i][1]));
		json_object_array_add(rt, pair);
	}
	json_object_object_add(o, "runs_cross_core_rtt_ns", rt);
	json_object_object_add(o, "errors", json_object_new_int64((int64_t)r->errors));
	return o;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

void spate_bench_ring_usage(FILE *f)
{
	fprintf(f,
		"usage: spate bench ring [options]\n"
		"\n"
		"Cross-core throughput and publish->take latency of the spate record ring,\n"
		"against DPDK rte_ring (element rings) and ck_ring when built with them.\n"
		"Lists are comma-separated; the default runs every combination.\n"
		"\n"
		"  --mode M[,M]         1to1, 4to1 (4 writers), 1to3 (3 readers, spate only)\n"
		"  --record-size N[,N]  payload bytes, multiple of 8, >= 16 (16,64,256,1024,4096)\n"
		"  --batch N[,N]        records per publish and per take (1,8,32,128)\n"
		"  --impl I[,I]         spate, rte_ring, ck_ring, bound, bound_nt (all built;\n"
		"                       bound: the least any ring carrying rte_ring's bytes\n"
		"                       does; bound_nt: the same with non-temporal stores)\n"
		"  --seconds S          measured time per run (0.3; 1 for a single size and batch)\n"
		"  --repeat R           runs per ring and case, interleaved; median reported\n"
		"                       (3 for a single size and batch, else 1)\n"
		"  --ring-bytes B       ring capacity in bytes, K/M suffixes (1M); every ring\n"
		"                       gets the same bytes\n"
		"  --wait W             busy, yield or auto (yield when threads > cores)\n"
		"  --rate R             offered records/s over all writers (0: as fast as\n"
		"                       possible); for latency below saturation\n"
		"  --dpdk-sync S        rte_ring 4to1 producer mode: mp (classic, default),\n"
		"                       rts or hts (DPDK's modes for over-committed cores)\n"
		"  --no-pin             do not pin threads\n"
		"  --no-huge            do not ask for transparent huge pages\n"
		"  --json               print one JSON object instead of the table\n"
		"  --plot FILE.png      also draw throughput vs batch and record size, and the\n"
		"                       latency percentiles, with gnuplot (package gnuplot-nox)\n"
		"  -h, --help           this text\n");
}

static int parse_u64(const char *s, uint64_t *out, int suffixes)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	if (suffixes && *end) {
		unsigned shift = 0;
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		default: return -EINVAL;
		}
		end++;
		if (!strcmp(end, "iB") || !strcmp(end, "B") || !strcmp(end, "ib"))
			end += strlen(end);
		if (v > (UINT64_MAX >> shift))
			return -EINVAL;
		v <<= shift;
	}
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_list(const char *arg, unsigned *out, unsigned *n, unsigned lo, unsigned hi)
{
	char buf[256];
	char *save = NULL;

	snprintf(buf, sizeof(buf), "%s", arg);
	*n = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;
		if (*n == MAX_LIST || parse_u64(tok, &v, 0) < 0 || v < lo || v > hi)
			return -EINVAL;
		out[(*n)++] = (unsigned)v;
	}
	return *n ? 0 : -EINVAL;
}

static int parse_names(const char *arg, unsigned *mask, int is_mode)
{
	char buf[256];
	char *save = NULL;

	snprintf(buf, sizeof(buf), "%s", arg);
	*mask = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int found = 0;
		if (is_mode) {
			for (unsigned i = 0; i < SPATE_BENCH_NMODES; i++)
				if (!strcmp(tok, modes[i].name)) {
					*mask |= 1u << i;
					found = 1;
				}
		} else {
			for (unsigned i = 0; i < NIMPLS; i++)
				if (!strcmp(tok, all_impls[i]->name)) {
					*mask |= 1u << i;
					found = 1;
				}
			if (!found && (!strcmp(tok, "rte_ring") || !strcmp(tok, "ck_ring"))) {
				fprintf(stderr, "spate bench ring: %s: not built in (%s not found "
					"at configure time)\n", tok,
					tok[0] == 'r' ? "libdpdk" : "ck");
				return -ENOTSUP;
			}
		}
		if (!found) {
			fprintf(stderr, "spate bench ring: unknown %s '%s'\n",
				is_mode ? "mode" : "impl", tok);
			return -EINVAL;
		}
	}
	return *mask ? 0 : -EINVAL;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_MODE = 256, O_SIZE, O_BATCH, O_IMPL, O_SECONDS, O_REPEAT, O_RING, O_WAIT,
	       O_RATE, O_NOPIN, O_NOHUGE, O_JSON, O_DPDK_SYNC, O_PLOT };
	static const struct option lo[] = {
		{ "mode", required_argument, NULL, O_MODE },
		{ "record-size", required_argument, NULL, O_SIZE },
		{ "batch", required_argument, NULL, O_BATCH },
		{ "impl", required_argument, NULL, O_IMPL },
		{ "seconds", required_argument, NULL, O_SECONDS },
		{ "repeat", required_argument, NULL, O_REPEAT },
		{ "ring-bytes", required_argument, NULL, O_RING },
		{ "wait", required_argument, NULL, O_WAIT },
		{ "rate", required_argument, NULL, O_RATE },
		{ "no-pin", no_argument, NULL, O_NOPIN },
		{ "no-huge", no_argument, NULL, O_NOHUGE },
		{ "json", no_argument, NULL, O_JSON },
		{ "dpdk-sync", required_argument, NULL, O_DPDK_SYNC },
		{ "plot", required_argument, NULL, O_PLOT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c, rc;

	memset(o, 0, sizeof(*o));
	o->modes = (1u << SPATE_BENCH_NMODES) - 1u;
	o->impls = (1u << NIMPLS) - 1u;
	memcpy(o->sizes, default_sizes, sizeof(default_sizes));
	o->nsizes = sizeof(default_sizes) / sizeof(default_sizes[0]);
	memcpy(o->batches, default_batches, sizeof(default_batches));
	o->nbatches = sizeof(default_batches) / sizeof(default_batches[0]);
	o->ring_bytes = 1u << 20;
	o->wait = -1;
	o->pin = 1;
	o->huge = 1;

	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_MODE:
			if ((rc = parse_names(optarg, &o->modes, 1)) < 0)
				return rc;
			break;
		case O_IMPL:
			if ((rc = parse_names(optarg, &o->impls, 0)) < 0)
				return rc;
			break;
		case O_SIZE:
			if (parse_list(optarg, o->sizes, &o->nsizes, SPATE_BENCH_MIN_SIZE,
				       1u << 20) < 0)
				goto bad;
			for (unsigned i = 0; i < o->nsizes; i++)
				if (o->sizes[i] % 8u)
					goto bad;
			break;
		case O_BATCH:
			if (parse_list(optarg, o->batches, &o->nbatches, 1, 65535) < 0)
				goto bad;
			break;
		case O_SECONDS: {
			char *end;
			o->seconds = strtod(optarg, &end);
			if (*end || !(o->seconds > 0.0) || o->seconds > 3600.0)
				goto bad;
			break;
		}
		case O_REPEAT:
			if (parse_u64(optarg, &v, 0) < 0 || v < 1 || v > MAX_REPEAT)
				goto bad;
			o->repeat = (unsigned)v;
			break;
		case O_RING:
			if (parse_u64(optarg, &v, 1) < 0 || v < SPATE_RING_MIN_CAPACITY ||
			    v > SPATE_RING_MAX_CAPACITY || (v & (v - 1)))
				goto bad;
			o->ring_bytes = v;
			break;
		case O_WAIT:
			if (!strcmp(optarg, "busy"))
				o->wait = 0;
			else if (!strcmp(optarg, "yield"))
				o->wait = 1;
			else if (!strcmp(optarg, "auto"))
				o->wait = -1;
			else
				goto bad;
			break;
		case O_RATE:
			if (parse_u64(optarg, &v, 0) < 0)
				goto bad;
			o->rate = v;
			break;
		case O_NOPIN:
			o->pin = 0;
			break;
		case O_NOHUGE:
			o->huge = 0;
			break;
		case O_JSON:
			o->json = 1;
			break;
		case O_DPDK_SYNC:
			if (!strcmp(optarg, "mp"))
				o->dpdk_sync = 0;
			else if (!strcmp(optarg, "rts"))
				o->dpdk_sync = 1;
			else if (!strcmp(optarg, "hts"))
				o->dpdk_sync = 2;
			else
				goto bad;
			break;
		case O_PLOT:
			if (!*optarg)
				goto bad;
			o->plot = optarg;
			break;
		case 'h':
			spate_bench_ring_usage(stdout);
			return 1;
		default:
			goto usage;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "spate bench ring: unexpected argument '%s'\n", argv[optind]);
		goto usage;
	}
	if (o->plot) {
		/* Before the runs, not after: a long sweep must not end in this. */
		char err[256];
		rc = spate_plot_available(err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "spate bench ring: %s\n", err);
			return rc;
		}
	}
	int single = o->nsizes == 1 && o->nbatches == 1;
	if (!o->repeat)
		o->repeat = single ? 3 : 1;
	if (!(o->seconds > 0.0))
		o->seconds = single ? 1.0 : 0.3;
	return 0;
bad:
	fprintf(stderr, "spate bench ring: bad value '%s' for --%s (see --help)\n", optarg,
		lo[c - O_MODE].name);
	return -EINVAL;
usage:
	spate_bench_ring_usage(stderr);
	return -EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Plot                                                                     */
/* ------------------------------------------------------------------------ */

/* Records/s of impl @p ii, mode @p mo, size and batch, NAN if not run. */
static double case_rps(const struct result *res, unsigned nres, const struct spate_bench_impl *impl,
		       unsigned mo, unsigned size, unsigned batch, const struct result **r)
{
	for (unsigned k = 0; k < nres; k++)
		if (res[k].impl == impl && res[k].c.mode == mo && res[k].c.size == size &&
		    res[k].c.batch == batch) {
			if (r)
				*r = &res[k];
			return res[k].failed || !res[k].nruns ? NAN : res[k].rps;
		}
	if (r)
		*r = NULL;
	return NAN;
}

/* One row per mode run: throughput vs batch (a line per ring and record
 * size), vs record size (a line per ring and batch), and the latency
 * percentiles of the first record size (a line per ring and batch). A
 * sweep over a single batch or size leaves its panel out. */
static int plot_results(const struct opts *o, const struct machine *m, const struct result *res,
			unsigned nres)
{
	struct spate_plot *p;
	char err[512], title[512], name[96], date[32];
	double x[MAX_LIST], y[MAX_LIST];
	unsigned rows = 0;
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	for (unsigned mo = 0; mo < SPATE_BENCH_NMODES; mo++)
		if (o->modes & (1u << mo))
			rows++;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d", &tm);
	snprintf(title, sizeof(title), "spate bench ring, %s, %s; %.3g s x %u run%s per case%s",
		 m->model, date, o->seconds, o->repeat, o->repeat > 1 ? "s (median)" : "",
		 o->rate ? ", writers paced (--rate)" : "");
	/* A sweep of one value makes no line: leave its panel out. */
	int by_size = o->nsizes > 1, by_batch = o->nbatches > 1 || !by_size;
	rc = spate_plot_open(&p, o->plot, rows, 1u + (unsigned)by_batch + (unsigned)by_size, title,
			     err, sizeof(err));
	if (rc < 0)
		goto fail;
	for (unsigned mo = 0; mo < SPATE_BENCH_NMODES; mo++) {
		if (!(o->modes & (1u << mo)))
			continue;
		char t[128];
		snprintf(t, sizeof(t), "%s: throughput vs batch", modes[mo].name);
		if (by_batch)
			spate_plot_panel(p, t, "records per batch", "Mrec/s",
					 SPATE_PLOT_LOGX | SPATE_PLOT_LOGY);
		for (unsigned ii = 0; ii < NIMPLS && by_batch; ii++) {
			if (!(o->impls & (1u << ii)))
				continue;
			for (unsigned si = 0; si < o->nsizes; si++) {
				for (unsigned bi = 0; bi < o->nbatches; bi++) {
					x[bi] = o->batches[bi];
					y[bi] = case_rps(res, nres, all_impls[ii], mo, o->sizes[si],
							 o->batches[bi], NULL) / 1e6;
				}
				snprintf(name, sizeof(name), "%s %u B", all_impls[ii]->name, o->sizes[si]);
				spate_plot_style(p, si, ii);
				spate_plot_series(p, name, x, y, o->nbatches);
			}
		}
		snprintf(t, sizeof(t), "%s: throughput vs record size", modes[mo].name);
		if (by_size)
			spate_plot_panel(p, t, "record size (bytes)", "GB/s",
					 SPATE_PLOT_LOGX | SPATE_PLOT_LOGY);
		for (unsigned ii = 0; ii < NIMPLS && by_size; ii++) {
			if (!(o->impls & (1u << ii)))
				continue;
			for (unsigned bi = 0; bi < o->nbatches; bi++) {
				for (unsigned si = 0; si < o->nsizes; si++) {
					x[si] = o->sizes[si];
					y[si] = case_rps(res, nres, all_impls[ii], mo, o->sizes[si],
							 o->batches[bi], NULL) * o->sizes[si] / 1e9;
				}
				snprintf(name, sizeof(name), "%s batch %u", all_impls[ii]->name,
					 o->batches[bi]);
				spate_plot_style(p, bi, ii);
				spate_plot_series(p, name, x, y, o->nsizes);
			}
		}
		snprintf(t, sizeof(t), "%s: publish->take latency, %u B records", modes[mo].name,
			 o->sizes[0]);
		spate_plot_panel(p, t, "percentile", "microseconds", SPATE_PLOT_PCT_X | SPATE_PLOT_LOGY);
		for (unsigned ii = 0; ii < NIMPLS; ii++) {
			if (!(o->impls & (1u << ii)))
				continue;
			for (unsigned bi = 0; bi < o->nbatches; bi++) {
				const struct result *r;
				if (isnan(case_rps(res, nres, all_impls[ii], mo, o->sizes[0],
						   o->batches[bi], &r)))
					continue;
				snprintf(name, sizeof(name), "%s batch %u", all_impls[ii]->name,
					 o->batches[bi]);
				spate_plot_style(p, bi, ii);
				spate_plot_hist(p, name, &r->hist);
			}
		}
	}
	rc = spate_plot_close(p, err, sizeof(err));
	if (rc < 0)
		goto fail;
	if (!o->json)
		printf("# plot: %s\n", o->plot);
	return 0;
fail:
	fprintf(stderr, "spate bench ring: %s\n", err);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Main                                                                     */
/* ------------------------------------------------------------------------ */

static uint64_t pow2_ceil(uint64_t v)
{
	uint64_t p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

/* Ring bytes for a case: as asked, raised so that spate's batch fits in
 * half the ring (its largest reservation); the same for every ring. */
static uint64_t case_ring_bytes(const struct opts *o, unsigned size, unsigned batch)
{
	uint64_t need = SPATE_RING_BHDR_SIZE + (uint64_t)batch * spate_ring_rec_size(size);
	uint64_t min = pow2_ceil(2 * need);
	return o->ring_bytes >= min ? o->ring_bytes : min;
}

struct notes {
	json_object *arr; /* JSON mode */
	int json;
};

static void note(struct notes *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct notes *n, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n->json)
		json_object_array_add(n->arr, jstr(buf));
	else
		printf("# %s\n", buf);
}

int spate_bench_ring_main(int argc, char **argv)
{
	struct opts o;
	struct machine m;
	struct place pl[SPATE_BENCH_NMODES];
	int yield[SPATE_BENCH_NMODES];
	struct notes notes = { 0 };
	struct result *res = NULL;
	json_object *root = NULL, *jm = NULL, *jpl = NULL;
	unsigned nres = 0, failures = 0;
	int rc;

	rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc > 0 ? 0 : rc;
	machine_open(&m);
	notes.json = o.json;
	if (o.json)
		notes.arr = json_object_new_array();

	/* Machine, placement and wait strategy per mode. */
	double rtt = spate_bench_c2c_rtt_ns(-1, -1);
	if (o.json) {
		char date[64];
		time_t now = time(NULL);
		struct tm tm;
		struct utsname un;
		gmtime_r(&now, &tm);
		strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
		root = json_object_new_object();
		jm = json_object_new_object();
		jpl = json_object_new_object();
		json_object_object_add(jm, "cpu_model", jstr(m.model));
		json_object_object_add(jm, "cores", json_object_new_int64(m.cores));
		json_object_object_add(jm, "pus", json_object_new_int64(m.pus));
		json_object_object_add(jm, "topology", jstr(m.topo_desc));
		json_object_object_add(jm, "hwloc", json_object_new_boolean(m.topo != NULL));
		if (uname(&un) == 0)
			json_object_object_add(jm, "kernel", jstr(un.release));
		json_object_object_add(jm, "placement", jpl);
		json_object_object_add(jm, "cross_core_rtt_ns", json_object_new_double(rtt));
		json_object_object_add(root, "machine", jm);
		json_object_object_add(root, "date", jstr(date));
		json_object_object_add(root, "cross_core_rtt_ns", json_object_new_double(rtt));
	} else {
		printf("# spate bench ring: %s; %s\n# cross-core round trip %.0f ns (cache-line ping-pong, best of 5)\n",
		       m.model, m.topo_desc, rtt);
	}
	for (unsigned mo = 0; mo < SPATE_BENCH_NMODES; mo++) {
		if (!(o.modes & (1u << mo)))
			continue;
		unsigned nthr = modes[mo].nwriters + modes[mo].nreaders;
		place_threads(&m, nthr, o.pin, &pl[mo]);
		yield[mo] = o.wait >= 0 ? o.wait : nthr > m.cores;
		if (o.json) {
			json_object *p = json_object_new_object();
			json_object *cpus = json_object_new_array();
			for (unsigned i = 0; i < nthr; i++)
				json_object_array_add(cpus, json_object_new_int(pl[mo].cpu[i]));
			json_object_object_add(p, "desc", jstr(pl[mo].desc));
			json_object_object_add(p, "threads", json_object_new_int64(nthr));
			json_object_object_add(p, "cpus", cpus);
			if (pl[mo].distinct >= 0)
				json_object_object_add(p, "distinct_cores",
						       json_object_new_boolean(pl[mo].distinct));
			json_object_object_add(p, "shared_cache_level",
					       json_object_new_int(pl[mo].cache_level));
			json_object_object_add(p, "shared_cache_kib",
					       json_object_new_int64(pl[mo].cache_kib));
			json_object_object_add(p, "wait", jstr(yield[mo] ? "yield" : "busy"));
			json_object_object_add(jpl, modes[mo].name, p);
		} else {
			printf("# %s: %u writer%s, %u reader%s on %s\n", modes[mo].name,
			       modes[mo].nwriters, modes[mo].nwriters > 1 ? "s" : "",
			       modes[mo].nreaders, modes[mo].nreaders > 1 ? "s" : "", pl[mo].desc);
		}
		if (mo == SPATE_BENCH_4TO1 && nthr > m.cores)
			note(&notes, "4to1: rte_ring MP%s and ck_ring MPSC writers spin inside the "
			     "library until earlier claimants publish, so a preempted writer stalls "
			     "the others for a time slice; spate's multi-writer commit never waits "
			     "for other writers", o.dpdk_sync == 1 ? " (RTS)" : o.dpdk_sync == 2 ?
			     " (HTS)" : "");
		if (yield[mo] && o.wait < 0)
			note(&notes, "%s: %u threads on %u cores: oversubscribed, every ring waits "
			     "with sched_yield() (spate handles: SPATE_RING_WAIT_YIELD)",
			     modes[mo].name, nthr, m.cores);
		else if (!yield[mo] && nthr > m.cores)
			note(&notes, "%s: %u threads on %u cores busy-polling (--wait busy): "
			     "expect time-slice stalls", modes[mo].name, nthr, m.cores);
	}
	char rb[32];
	fmt_bytes(rb, sizeof(rb), o.ring_bytes);
	note(&notes, "ring %s for every ring (rte_ring/ck_ring: bytes / record size elements); "
	     "%.3g s measured after %.3g s warm-up, %u run%s per ring and case, median; "
	     "spate ring flags NO_BLOCKING; busy waits use the pause hint; %s",
	     rb, o.seconds, o.seconds * 0.1, o.repeat, o.repeat > 1 ? "s" : "",
	     o.huge ? "memory 2 MiB aligned, MADV_HUGEPAGE" : "no huge pages");
	note(&notes, "latency: one sample per take, reader clock minus the oldest record's "
	     "publication time (spate: commit time in the batch header; others: a stamp "
	     "in word 1 written just before the enqueue); %s",
	     o.rate ? "writers paced (--rate)" : "measured at saturation, so mostly queueing "
	     "in whichever ring side is slower");
#if SPATE_HAVE_CK
	if (o.impls & (1u << (NIMPLS - 3)))
		note(&notes, "ck_ring: typed rings (CK_RING_PROTOTYPE) copy records by value; "
		     "no burst API, a batch is a loop of single enqueues/dequeues");
#endif
	if (o.impls & (3u << (NIMPLS - 2)))
		note(&notes, "bound: the least any ring carrying rte_ring's bytes does (record-size "
		     "slots, line-aligned for 64 B; own-line indices, cached copies; writer fills "
		     "in place, one release store per batch; reader reads in place); a "
		     "yardstick, not a product ring; bound_nt: the same with non-temporal "
		     "full-line stores and an sfence per batch");
	if (!o.json)
		printf("#\n");

	/* The cases, each ring in turn, R rounds. */
	unsigned ncases = 0;
	for (unsigned mo = 0; mo < SPATE_BENCH_NMODES; mo++)
		if (o.modes & (1u << mo))
			ncases++;
	ncases *= o.nsizes * o.nbatches * (unsigned)NIMPLS;
	res = calloc(ncases ? ncases : 1, sizeof(*res));
	if (!res) {
		rc = -ENOMEM;
		goto out;
	}
	unsigned skipped_note = 0; /* bit per (impl, mode) already explained */
	int header = 0;
	for (unsigned mo = 0; mo < SPATE_BENCH_NMODES; mo++) {
		if (!(o.modes & (1u << mo)))
			continue;
		for (unsigned si = 0; si < o.nsizes; si++) {
			for (unsigned bi = 0; bi < o.nbatches; bi++) {
				struct spate_bench_case c = {
					.mode = (enum spate_bench_mode)mo,
					.size = o.sizes[si],
					.batch = o.batches[bi],
					.ring_bytes = case_ring_bytes(&o, o.sizes[si], o.batches[bi]),
					.nwriters = modes[mo].nwriters,
					.nreaders = modes[mo].nreaders,
					.yield = yield[mo],
					.rate = o.rate,
					.huge = o.huge,
					.dpdk_sync = o.dpdk_sync,
				};
				if (c.ring_bytes != o.ring_bytes) {
					fmt_bytes(rb, sizeof(rb), c.ring_bytes);
					note(&notes, "%s size %u batch %u: ring raised to %s for every "
					     "ring (a spate batch must fit in half the ring)",
					     modes[mo].name, c.size, c.batch, rb);
				}
				unsigned first = nres;
				for (unsigned ii = 0; ii < NIMPLS; ii++) {
					if (!(o.impls & (1u << ii)))
						continue;
					const char *why = all_impls[ii]->unsupported(&c);
					if (why) {
						unsigned bit = 1u << (ii * SPATE_BENCH_NMODES + mo);
						if (!(skipped_note & bit) || c.mode != SPATE_BENCH_1TO3) {
							if (c.mode == SPATE_BENCH_1TO3)
								skipped_note |= bit;
							note(&notes, "%s %s size %u batch %u: not run: %s",
							     all_impls[ii]->name, modes[mo].name, c.size,
							     c.batch, why);
						}
						continue;
					}
					res[nres].impl = all_impls[ii];
					res[nres].c = c;
					spate_hist_init(&res[nres].hist);
					nres++;
				}
				for (unsigned r = 0; r < o.repeat; r++) {
					for (unsigned k = first; k < nres; k++) {
						struct result *R = &res[k];
						struct run run;
						if (R->failed)
							continue;
						double rtt0 = spate_bench_c2c_rtt_ns(-1, -1);
						rc = run_one(&m, R->impl, &R->c, &pl[mo], o.seconds, &run);
						R->rtt[R->nruns][0] = rtt0;
						R->rtt[R->nruns][1] = spate_bench_c2c_rtt_ns(-1, -1);
						R->errors += run.errors;
						if (rc < 0) {
							fprintf(stderr, "spate bench ring: %s %s size %u "
								"batch %u: %s\n", R->impl->name,
								modes[mo].name, c.size, c.batch,
								run.err[0] ? run.err : strerror(-rc));
							R->failed = 1;
							failures++;
							continue;
						}
						R->runs[R->nruns] = run.rps;
						R->secs[R->nruns] = run.seconds;
						R->nruns++;
						spate_hist_merge(&R->hist, &run.hist);
					}
				}
				for (unsigned k = first; k < nres; k++) {
					res[k].rps = spate_bench_median(res[k].runs, res[k].nruns);
					res[k].seconds = spate_bench_median(res[k].secs, res[k].nruns);
				}
				if (!o.json) {
					if (!header++)
						print_header();
					for (unsigned k = first; k < nres; k++)
						print_row(&res[k], find_result(res, nres, &res[k],
									       "rte_ring"));
					for (unsigned k = first; k < nres; k++)
						print_regimes(&res[k], find_result(res, nres, &res[k],
										   "rte_ring"));
					/* How far spate is from what any ring could do. */
					for (unsigned k = first; k < nres; k++)
						if (!strcmp(res[k].impl->name, "spate"))
							print_regimes(&res[k],
								      find_result(res, nres, &res[k],
										  "bound"));
					fflush(stdout);
				}
			}
		}
	}

	if (o.json) {
		json_object *jc = json_object_new_array();
		json_object *jr = json_object_new_array();
		json_object *cfg = json_object_new_object();
		for (unsigned k = 0; k < nres; k++)
			json_object_array_add(jc, case_json(&res[k]));
		for (unsigned k = 0; k < nres; k++) {
			if (strcmp(res[k].impl->name, "spate") || res[k].failed || !res[k].nruns)
				continue;
			const struct result *rte = find_result(res, nres, &res[k], "rte_ring");
			const struct result *ck = find_result(res, nres, &res[k], "ck_ring");
			const struct result *bound = find_result(res, nres, &res[k], "bound");
			const struct result *bnt = find_result(res, nres, &res[k], "bound_nt");
			if (!rte && !ck && !bound && !bnt)
				continue;
			json_object *ro = json_object_new_object();
			json_object_object_add(ro, "record_size", json_object_new_int64(res[k].c.size));
			json_object_object_add(ro, "batch", json_object_new_int64(res[k].c.batch));
			json_object_object_add(ro, "mode", jstr(modes[res[k].c.mode].name));
			if (rte && rte->rps > 0)
				json_object_object_add(ro, "spate_vs_rte_ring",
						       json_object_new_double(res[k].rps / rte->rps));
			if (rte && !rte->failed)
				json_object_object_add(ro, "spate_vs_rte_ring_by_regime",
						       by_regime_json(&res[k], rte));
			if (bound && !bound->failed && bound->rps > 0) {
				json_object_object_add(ro, "spate_vs_bound",
						       json_object_new_double(res[k].rps / bound->rps));
				json_object_object_add(ro, "spate_vs_bound_by_regime",
						       by_regime_json(&res[k], bound));
				if (rte && !rte->failed && rte->rps > 0) {
					json_object_object_add(ro, "bound_vs_rte_ring",
							       json_object_new_double(bound->rps / rte->rps));
					json_object_object_add(ro, "bound_vs_rte_ring_by_regime",
							       by_regime_json(bound, rte));
				}
			}
			if (bnt && !bnt->failed && bnt->rps > 0 && rte && !rte->failed && rte->rps > 0) {
				json_object_object_add(ro, "bound_nt_vs_rte_ring",
						       json_object_new_double(bnt->rps / rte->rps));
				json_object_object_add(ro, "bound_nt_vs_rte_ring_by_regime",
						       by_regime_json(bnt, rte));
			}
			if (ck && ck->rps > 0)
				json_object_object_add(ro, "spate_vs_ck_ring",
						       json_object_new_double(res[k].rps / ck->rps));
			json_object_array_add(jr, ro);
		}
		json_object_object_add(cfg, "seconds", json_object_new_double(o.seconds));
		json_object_object_add(cfg, "warmup_seconds", json_object_new_double(o.seconds * 0.1));
		json_object_object_add(cfg, "repeat", json_object_new_int64(o.repeat));
		json_object_object_add(cfg, "split_rtt_ns", json_object_new_double(SPLIT_RTT_NS));
		json_object_object_add(cfg, "ring_bytes", json_object_new_int64((int64_t)o.ring_bytes));
		json_object_object_add(cfg, "rate", json_object_new_int64((int64_t)o.rate));
		json_object_object_add(cfg, "pinned", json_object_new_boolean(o.pin));
		json_object_object_add(cfg, "huge_pages", json_object_new_boolean(o.huge));
		json_object_object_add(cfg, "dpdk_sync",
				       jstr(o.dpdk_sync == 1 ? "rts" : o.dpdk_sync == 2 ? "hts" : "mp"));
		json_object_object_add(root, "config", cfg);
		json_object_object_add(root, "cases", jc);
		json_object_object_add(root, "ratios", jr);
		json_object_object_add(root, "notes", notes.arr);
		notes.arr = NULL;
		printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
								     JSON_C_TO_STRING_NOSLASHESCAPE));
	}
	rc = failures ? -EIO : 0;
	if (o.plot && nres) {
		int prc = plot_results(&o, &m, res, nres);
		if (prc < 0 && !rc)
			rc = prc;
	}
out:
	if (root)
		json_object_put(root);
	if (notes.arr)
		json_object_put(notes.arr);
	free(res);
	spate_topo_close(m.topo);
	return rc;
}
