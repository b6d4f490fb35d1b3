/* SPDX-License-Identifier: MIT */
/*
 * cli.c - the engine commands of `spate`: run, put, tail, deploy, rm.
 *
 * `run` embeds the engine in the foreground: SIGINT/SIGTERM drain, flush and
 * checkpoint; SIGHUP applies hot-deploy requests. `deploy` talks to a running
 * `run` through its state_dir: it writes deploy.<consumer> (the plugin path,
 * written then renamed into place), sends SIGHUP to the pid in engine.pid,
 * and waits for deploy.<consumer>.result. No socket, no extra daemon; the
 * limit is one machine and a shared state_dir, which is the point.
 *
 * `put` and `tail` attach streams by the config's bus name, so they work
 * against a running engine from other processes.
 */
#include "spate_config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/cli.h"
#include "engine/stats_view.h"
#include "spate/engine.h"
#include "spate/log.h"
#include "spate/slog.h"

static volatile sig_atomic_t got_stop, got_hup;

static void on_stop(int sig)
{
	(void)sig;
	got_stop = 1;
}

static void on_hup(int sig)
{
	(void)sig;
	got_hup = 1;
}

void spate_cli_default_plugin_path(void)
{
	char exe[PATH_MAX], dir[PATH_MAX + 32];
	struct stat st;
	ssize_t n;

	if (getenv("SPATE_PLUGIN_PATH"))
		return;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (!slash)
		return;
	*slash = '\0';
	snprintf(dir, sizeof(dir), "%s/../plugins", exe);
	char probe[PATH_MAX + 64];
	snprintf(probe, sizeof(probe), "%s/count.so", dir);
	if (stat(probe, &st) == 0)
		setenv("SPATE_PLUGIN_PATH", dir, 0);
}

static int load_config(const char *path, struct spate_config **cfg)
{
	char err[512];
	int rc = spate_config_load(path, cfg, err, sizeof(err));

	if (rc < 0)
		fprintf(stderr, "spate: %s\n", err);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* run                                                                      */
/* ------------------------------------------------------------------------ */

static void apply_deploys(struct spate_engine *e, const struct spate_config *cfg)
{
	for (uint32_t i = 0; i < cfg->n_consumers; i++) {
		char req[4200], res[4300], path[PATH_MAX], err[512];
		const char *name = cfg->consumers[i].name;
		FILE *f;

		snprintf(req, sizeof(req), "%s/deploy.%s", cfg->state_dir, name);
		f = fopen(req, "re");
		if (!f)
			continue;
		if (!fgets(path, sizeof(path), f))
			path[0] = '\0';
		fclose(f);
		unlink(req);
		path[strcspn(path, "\n")] = '\0';
		int rc = spate_engine_deploy(e, name, path, err, sizeof(err));
		snprintf(res, sizeof(res), "%s.result", req);
		f = fopen(res, "we");
		if (f) {
			fprintf(f, "%d %s\n", rc, rc < 0 ? err : "deployed");
			fclose(f);
		}
		fprintf(stderr, "spate: deploy %s <- %s: %s\n", name, path, rc < 0 ? err : "done");
	}
}

static void print_stats(struct spate_engine *e, const struct spate_config *cfg, uint64_t *last,
			double dt)
{
	static const char *states[] = { "?", "running", "stopped", "FAILED" };

	for (uint32_t i = 0; i < cfg->n_consumers; i++) {
		struct spate_consumer_stats st;
		if (spate_engine_consumer_stats(e, cfg->consumers[i].name, &st) < 0)
			continue;
		printf("  %-20s %12" PRIu64 " records %10.0f rec/s  lag %10" PRIu64 "  retries %6" PRIu64
		       "  failed %6" PRIu64 "  %s%s%s\n",
		       cfg->consumers[i].name, st.records,
		       dt > 0 ? (double)(st.records - last[i]) / dt : 0.0, st.lag_records, st.retries,
		       st.failed, states[st.state <= 3 ? st.state : 0], st.error[0] ? ": " : "",
		       st.error);
		last[i] = st.records;
	}
	fflush(stdout);
}

int spate_cli_run(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seconds", required_argument, 0, 's' },
		{ "interval", required_argument, 0, 'i' },
		{ "log-format", required_argument, 0, 'L' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	double seconds = 0, interval = 1;
	enum spate_slog_format lf;
	struct spate_engine *e;
	char err[1024], desc[4096], pidfile[4200];
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 's')
			seconds = atof(optarg);
		else if (c == 'i')
			interval = atof(optarg);
		else if (c == 'L' && spate_slog_parse_format(optarg, &lf) == 0)
			spate_slog_set_format(lf);
		else {
			fprintf(c == 'h' ? stdout : stderr, "usage: spate run CONFIG [--seconds S] "
				"[--interval S] [--log-format text|json]\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: spate run CONFIG [--seconds S] [--interval S]\n");
		return -EINVAL;
	}
	rc = spate_engine_open_file(argv[optind], &e, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "spate: %s\n", err);
		return rc;
	}
	struct spate_config *cfg = NULL;
	/* The engine owns its copy; read names and state_dir from a second load. */
	if (load_config(argv[optind], &cfg) < 0) {
		spate_engine_close(e);
		return -EINVAL;
	}
	spate_engine_describe(e, desc, sizeof(desc));
	printf("spate run %s: bus %s, %u stream(s), %u consumer(s)\n%s", argv[optind], cfg->bus,
	       cfg->n_streams, cfg->n_consumers, desc);
	for (uint32_t i = 0; i < cfg->n_streams; i++) {
		struct spate_stream *s = spate_engine_stream(e, cfg->streams[i].name);
		printf("  stream %s: %u shard(s), memory %s\n", cfg->streams[i].name,
		       spate_stream_shards(s), spate_shm_backing_str(spate_stream_shm(s)));
	}
	fflush(stdout);
	struct sigaction sa = { .sa_handler = on_stop };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	snprintf(pidfile, sizeof(pidfile), "%s/engine.pid", cfg->state_dir);
	FILE *pf = fopen(pidfile, "we");
	if (pf) {
		fprintf(pf, "%d\n", (int)getpid());
		fclose(pf);
	}
	rc = spate_engine_start(e);
	if (rc < 0) {
		fprintf(stderr, "spate: start: %s\n", strerror(-rc));
		goto out;
	}
	struct spate_metrics_http *metrics = NULL;
	if (cfg->metrics.listen[0]) {
		rc = spate_metrics_http_start(cfg->bus, cfg->metrics.listen, &metrics, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "spate: %s\n", err);
			spate_engine_stop(e);
			goto out;
		}
		printf("  metrics: Prometheus text at http://%s/metrics\n", cfg->metrics.listen);
		fflush(stdout);
	}
	uint64_t *last = calloc(cfg->n_consumers + 1, sizeof(uint64_t));
	for (uint32_t i = 0; i < cfg->n_consumers; i++) {
		struct spate_consumer_stats st;
		if (spate_engine_consumer_stats(e, cfg->consumers[i].name, &st) == 0)
			printf("  consumer %s: plugin cold start (init) %.1f us\n",
			       cfg->consumers[i].name, (double)st.cold_start_ns / 1e3);
	}
	bool first_reported = false;
	struct timespec t0, tn, tl;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	tl = t0;
	while (!got_stop) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		if (got_hup) {
			got_hup = 0;
			apply_deploys(e, cfg);
		}
		clock_gettime(CLOCK_MONOTONIC, &tn);
		double el = (double)(tn.tv_sec - t0.tv_sec) + (double)(tn.tv_nsec - t0.tv_nsec) / 1e9;
		double dl = (double)(tn.tv_sec - tl.tv_sec) + (double)(tn.tv_nsec - tl.tv_nsec) / 1e9;
		if (!first_reported && last) {
			for (uint32_t i = 0; i < cfg->n_consumers; i++) {
				struct spate_consumer_stats st;
				if (spate_engine_consumer_stats(e, cfg->consumers[i].name, &st) == 0 &&
				    st.first_batch_ns) {
					printf("  consumer %s: first batch processed %.1f ms after start\n",
					       cfg->consumers[i].name, (double)st.first_batch_ns / 1e6);
					first_reported = true;
				}
			}
		}
		if (interval > 0 && dl >= interval && last) {
			printf("%.1f s\n", el);
			print_stats(e, cfg, last, dl);
			tl = tn;
		}
		if (seconds > 0 && el >= seconds)
			break;
	}
	printf("stopping: draining, flushing plugins, writing checkpoints\n");
	spate_metrics_http_stop(metrics);
	spate_engine_stop(e);
	if (last)
		print_stats(e, cfg, last, 0);
	free(last);
out:
	unlink(pidfile);
	spate_engine_close(e);
	spate_config_free(cfg);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* put                                                                      */
/* ------------------------------------------------------------------------ */

int spate_cli_put(int argc, char **argv)
{
	const char *key = NULL;
	struct spate_config *cfg;
	struct spate_stream *s;
	struct spate_producer *p;
	int c, rc, quiet = 0;

	optind = 1;
	while ((c = getopt(argc, argv, "k:qh")) != -1) {
		if (c == 'k')
			key = optarg;
		else if (c == 'q')
			quiet = 1;
		else {
			fprintf(c == 'h' ? stdout : stderr,
				"usage: spate put CONFIG STREAM [-k KEY] [-q] [DATA...]\n"
				"  without DATA, every line of standard input is a record\n"
				"  without -k, each record's own bytes are its partition key\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (argc - optind < 2) {
		fprintf(stderr, "usage: spate put CONFIG STREAM [-k KEY] [-q] [DATA...]\n");
		return -EINVAL;
	}
	if (load_config(argv[optind], &cfg) < 0)
		return -EINVAL;
	rc = spate_stream_attach(cfg->bus, argv[optind + 1], &s);
	if (rc < 0) {
		fprintf(stderr, "spate put: stream %s of bus %s: %s (is `spate run` up?)\n",
			argv[optind + 1], cfg->bus, strerror(-rc));
		spate_config_free(cfg);
		return rc;
	}
	rc = spate_producer_open(s, SPATE_RING_WAIT_YIELD, 0, &p);
	if (rc < 0) {
		fprintf(stderr, "spate put: producer: %s\n", strerror(-rc));
		goto out;
	}
	/* Count this producer's batches and full-shard events in the bus's
	 * counters region, when an engine keeps one. */
	struct spate_stats *stats = NULL;
	if (spate_stats_attach_rw(cfg->bus, &stats) == 0) {
		int si = spate_stats_stream_find(stats, argv[optind + 1]);
		if (si >= 0 && spate_stats_stream_at(stats, (uint32_t)si)->shards == spate_stream_shards(s))
			spate_producer_set_stats(p, spate_stats_shard_of(stats, (uint32_t)si, 0));
	}
	char *line = NULL;
	size_t cap = 0;
	int i = optind + 2;
	for (;;) {
		const char *data;
		size_t len;
		if (argc > optind + 2) {
			if (i >= argc)
				break;
			data = argv[i++];
			len = strlen(data);
		} else {
			ssize_t n = getline(&line, &cap, stdin);
			if (n < 0)
				break;
			if (n > 0 && line[n - 1] == '\n')
				n--;
			data = line;
			len = (size_t)n;
		}
		struct spate_put_result res;
		rc = spate_put(p, key ? key : data, key ? strlen(key) : len, data, len, &res);
		if (rc < 0) {
			if (rc == -ENOTCONN || rc == -ENOSPC || rc == -EIO)
				fprintf(stderr,
					"spate put: record appended as shard %u seq %" PRIu64
					" but not known to be durable: %s\n",
					res.shard, res.seq,
					rc == -ENOTCONN ? "no engine is persisting the stream (start it "
							  "with `spate run`)"
					: rc == -ENOSPC ? "the log's disk is full"
							: strerror(-rc));
			else
				fprintf(stderr, "spate put: %s\n", strerror(-rc));
			break;
		}
		if (!quiet)
			printf("shard %u seq %" PRIu64 "\n", res.shard, res.seq);
	}
	free(line);
	spate_producer_close(p);
	spate_stats_close(stats);
out:
	spate_stream_close(s);
	spate_config_free(cfg);
	return rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------------------ */
/* tail                                                                     */
/* ------------------------------------------------------------------------ */

static void print_payload(const uint8_t *p, uint32_t len)
{
	uint32_t shown = len < 200 ? len : 200;

	for (uint32_t i = 0; i < shown; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			putchar(p[i]);
		else
			printf("\\x%02x", p[i]);
	}
	if (shown < len)
		printf("... (%u bytes)", len);
}

static void print_rec(uint32_t shard, const struct spate_ring_rec *r)
{
	struct spate_failed_record h;

	printf("%u/%" PRIu64 " ts=%" PRIu64 " key=%08x len=%u ", shard, r->seq, r->ts, r->key_hash,
	       r->len);
	if (r->len >= sizeof(h)) {
		memcpy(&h, r->data, sizeof(h));
		if (h.magic == SPATE_FAILED_MAGIC && h.hdr_size == sizeof(h) &&
		    h.payload_len == r->len - sizeof(h)) {
			h.consumer[sizeof(h.consumer) - 1] = h.stream[sizeof(h.stream) - 1] = '\0';
			h.error[sizeof(h.error) - 1] = '\0';
			printf("FAILED record of %s/%u seq %" PRIu64 " (consumer %s, %u attempt(s), "
			       "%s: %s%s): ",
			       h.stream, h.shard, h.seq, h.consumer, h.attempts,
			       spate_failure_reason_name(h.reason), h.error,
			       h.orig_len > h.payload_len ? "; payload truncated" : "");
			print_payload((const uint8_t *)r->data + sizeof(h), h.payload_len);
			putchar('\n');
			return;
		}
	}
	print_payload(r->data, r->len);
	putchar('\n');
}

/* Print shard @p shard's history from its log, from @p from_seq, up to
 * @p count lines in all; *next is where the log ended (the ring goes on). */
static int tail_log(const struct spate_config *cfg, const struct spate_config_stream *cs,
		    uint32_t shard, uint64_t from_seq, uint64_t count, uint64_t *shown,
		    uint64_t *next)
{
	char dir[SPATE_CONFIG_PATH_MAX + 16];
	struct spate_log_reader *lr = NULL;
	int rc = spate_config_stream_log_dir(cfg, cs, shard, dir, sizeof(dir));

	if (rc == 0)
		rc = spate_log_reader_open(dir, from_seq ? SPATE_LOG_FROM_SEQ : SPATE_LOG_FROM_OLDEST,
					   from_seq, &lr);
	if (rc == -ENOENT)
		return 0; /* nothing written yet */
	if (rc < 0) {
		fprintf(stderr, "spate tail: log of shard %u (%s): %s\n", shard, dir, strerror(-rc));
		return rc;
	}
	while (*shown < count) {
		struct spate_ring_rec v[64];
		uint64_t skipped = 0;
		int k = spate_log_read(lr, v, 64, &skipped);
		if (k < 0) {
			fprintf(stderr, "spate tail: log of shard %u: %s\n", shard, strerror(-k));
			rc = k;
			break;
		}
		if (k == 0)
			break;
		for (int j = 0; j < k && *shown < count; j++) {
			print_rec(shard, &v[j]);
			(*shown)++;
			*next = v[j].seq + 1;
		}
	}
	spate_log_reader_close(lr);
	return rc < 0 ? rc : 0;
}

int spate_cli_tail(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "from", required_argument, 0, 'F' }, { "shard", required_argument, 0, 'S' },
		{ "follow", no_argument, 0, 'f' },     { "count", required_argument, 0, 'n' },
		{ "help", no_argument, 0, 'h' },       { 0, 0, 0, 0 },
	};
	const char *from = "trim_horizon";
	long shard_only = -1;
	uint64_t count = UINT64_MAX, shown = 0;
	int follow = 0, c, rc;
	struct spate_config *cfg;
	struct spate_stream *s;

	optind = 1;
	while ((c = getopt_long(argc, argv, "fn:h", lo, NULL)) != -1) {
		switch (c) {
		case 'F': from = optarg; break;
		case 'S': shard_only = strtol(optarg, NULL, 0); break;
		case 'f': follow = 1; break;
		case 'n': count = strtoull(optarg, NULL, 0); break;
		default:
			fprintf(c == 'h' ? stdout : stderr,
				"usage: spate tail CONFIG STREAM [--from trim_horizon|latest|SEQ] "
				"[--shard N] [-n COUNT] [-f]\n"
				"  a persisted stream's history comes from its log, then the ring\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: spate tail CONFIG STREAM [options]\n");
		return -EINVAL;
	}
	if (load_config(argv[optind], &cfg) < 0)
		return -EINVAL;
	const struct spate_config_stream *cs = spate_config_find_stream(cfg, argv[optind + 1]);
	const bool persisted = cs && cs->durability != SPATE_CONFIG_DURABILITY_OFF;
	rc = spate_stream_attach(cfg->bus, argv[optind + 1], &s);
	if (rc == -ENOENT && persisted) {
		s = NULL; /* no shared memory (nothing runs): the logs alone */
	} else if (rc < 0) {
		fprintf(stderr, "spate tail: stream %s of bus %s: %s\n", argv[optind + 1], cfg->bus,
			strerror(-rc));
		spate_config_free(cfg);
		return rc;
	}
	uint32_t n = s ? spate_stream_shards(s) : cs->shards;
	if (!s)
		follow = 0; /* nothing appends while no engine holds the stream */
	enum spate_ring_start start = strcmp(from, "latest") ? SPATE_RING_START_OLDEST
							      : SPATE_RING_START_LATEST;
	uint64_t min_seq = 0;
	if (strcmp(from, "latest") && strcmp(from, "trim_horizon"))
		min_seq = strtoull(from, NULL, 0);
	uint64_t min_seq_of[SPATE_STREAM_MAX_SHARDS];
	for (uint32_t i = 0; i < n; i++)
		min_seq_of[i] = min_seq;
	struct spate_ring_reader *rd[SPATE_STREAM_MAX_SHARDS] = { 0 };
	for (uint32_t i = 0; i < n; i++) {
		if (shard_only >= 0 && (uint32_t)shard_only != i)
			continue;
		/* A persisted stream: history from the log first, then the ring
		 * from where the log ended. */
		uint64_t next = 0;
		if (persisted && start == SPATE_RING_START_OLDEST) {
			rc = tail_log(cfg, cs, i, min_seq, count, &shown, &next);
			if (rc < 0)
				goto out;
			if (next > min_seq)
				min_seq_of[i] = next;
		}
		if (!s)
			continue;
		rc = spate_ring_reader_open(spate_stream_ring(s, i), start, SPATE_RING_WAIT_YIELD, &rd[i]);
		if (rc < 0) {
			fprintf(stderr, "spate tail: reader on shard %u: %s\n", i, strerror(-rc));
			goto out;
		}
	}
	signal(SIGINT, on_stop);
	while (!got_stop && shown < count) {
		int any = 0;
		for (uint32_t i = 0; i < n && shown < count; i++) {
			struct spate_ring_rec v[64];
			if (!rd[i])
				continue;
			int k = spate_ring_peek(rd[i], v, 64, UINT64_MAX);
			if (k < 0) {
				fprintf(stderr, "spate tail: shard %u: %s\n", i, strerror(-k));
				rc = k;
				goto out;
			}
			for (int j = 0; j < k && shown < count; j++) {
				if (v[j].seq < min_seq_of[i])
					continue;
				print_rec(i, &v[j]);
				shown++;
			}
			if (k) {
				any = 1;
				spate_ring_release(rd[i], (unsigned)k);
			}
		}
		if (!any) {
			if (!follow)
				break;
			struct timespec ts = { 0, 2 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
	rc = 0;
out:
	for (uint32_t i = 0; i < n; i++)
		spate_ring_reader_close(rd[i]);
	spate_stream_close(s);
	spate_config_free(cfg);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* deploy, rm                                                               */
/* ------------------------------------------------------------------------ */

int spate_cli_deploy(int argc, char **argv)
{
	struct spate_config *cfg;
	char req[4200], tmp[4300], res[4300], pidfile[4200], path[PATH_MAX];
	int rc = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: spate deploy CONFIG CONSUMER PLUGIN.so\n");
		return -EINVAL;
	}
	if (load_config(argv[1], &cfg) < 0)
		return -EINVAL;
	if (!spate_config_find_consumer(cfg, argv[2])) {
		fprintf(stderr, "spate deploy: %s has no consumer %s\n", argv[1], argv[2]);
		rc = -ENOENT;
		goto out;
	}
	if (!realpath(argv[3], path)) {
		fprintf(stderr, "spate deploy: %s: %s\n", argv[3], strerror(errno));
		rc = -errno;
		goto out;
	}
	snprintf(req, sizeof(req), "%s/deploy.%s", cfg->state_dir, argv[2]);
	snprintf(tmp, sizeof(tmp), "%s.tmp", req);
	snprintf(res, sizeof(res), "%s.result", req);
	snprintf(pidfile, sizeof(pidfile), "%s/engine.pid", cfg->state_dir);
	unlink(res);
	FILE *f = fopen(tmp, "we");
	if (!f || fprintf(f, "%s\n", path) < 0 || fclose(f) != 0 || rename(tmp, req) < 0) {
		rc = -errno;
		fprintf(stderr, "spate deploy: %s: %s\n", req, strerror(errno));
		goto out;
	}
	int pid = 0;
	f = fopen(pidfile, "re");
	if (!f || fscanf(f, "%d", &pid) != 1 || pid <= 0 || kill(pid, SIGHUP) < 0) {
		if (f)
			fclose(f);
		fprintf(stderr, "spate deploy: no running engine for %s (%s)\n", argv[1], pidfile);
		unlink(req);
		rc = -ESRCH;
		goto out;
	}
	fclose(f);
	for (int i = 0; i < 300; i++) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		f = fopen(res, "re");
		if (!f)
			continue;
		char line[600] = "";
		if (fgets(line, sizeof(line), f))
			rc = atoi(line);
		fclose(f);
		unlink(res);
		printf("spate deploy %s: %s", argv[2], strchr(line, ' ') ? strchr(line, ' ') + 1 : line);
		goto out;
	}
	fprintf(stderr, "spate deploy: no answer from pid %d in 30 s\n", pid);
	rc = -ETIMEDOUT;
out:
	spate_config_free(cfg);
	return rc;
}

int spate_cli_rm(int argc, char **argv)
{
	struct spate_config *cfg;
	int rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: spate rm CONFIG [STREAM...]\n");
		return -EINVAL;
	}
	if (load_config(argv[1], &cfg) < 0)
		return -EINVAL;
	for (uint32_t i = 0; i < cfg->n_streams; i++) {
		const char *name = cfg->streams[i].name;
		int want = argc == 2;
		for (int a = 2; a < argc; a++)
			if (!strcmp(argv[a], name))
				want = 1;
		if (!want)
			continue;
		int r = spate_stream_unlink(cfg->bus, name);
		printf("stream %s: %s\n", name, r == 0 ? "removed" : strerror(-r));
		if (r < 0 && r != -ENOENT)
			rc = r;
	}
	if (argc == 2) { /* the whole bus: its counters region too */
		int r = spate_stats_unlink(cfg->bus);
		if (r == 0)
			printf("counters of bus %s: removed\n", cfg->bus);
	}
	spate_config_free(cfg);
	return rc;
}
