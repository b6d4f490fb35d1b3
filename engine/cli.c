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

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/cli.h"
#include "engine/api/api.h"
#include "engine/functions/functions.h"
#include "engine/functions/isolate.h"
#include "engine/sources/builtin.h"
#include "engine/metrics_http.h"
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

/*
 * The state directory holds the checkpoints, the logs and the deploy
 * requests (a request names a plugin the engine then loads): whoever can
 * write it controls the engine. Refuse one that is not ours or that group or
 * others can write (docs/security.md). A missing one is created 0700.
 */
static int check_state_dir(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) != 0)
		return 0;
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "spate run: state_dir %s is not a directory\n", dir);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		fprintf(stderr, "spate run: refusing state_dir %s: owner uid %u, mode %04o (we are "
			"uid %u): it must be ours and writable by no one else, since a deploy "
			"request there makes the engine load code\n", dir, (unsigned)st.st_uid,
			(unsigned)(st.st_mode & 07777), (unsigned)geteuid());
		return -EPERM;
	}
	return 0;
}

/* `spate run`: options, config, state_dir check, signals, open, start,
 * the report loop, stop. One linear command, longer than 120 lines because
 * each step prints what it did; nothing in it is reused elsewhere. */
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
	struct spate_config *cfg = NULL;
	/* The engine owns its copy; read names and state_dir from a second load. */
	if (load_config(argv[optind], &cfg) < 0)
		return -EINVAL;
	rc = check_state_dir(cfg->state_dir);
	if (rc < 0) {
		spate_config_free(cfg);
		return rc;
	}
	/* Before the engine opens: opening may recover logs for seconds after a
	 * crash, and a SIGINT then must still end in a clean close, not be
	 * lost nor kill the recovery half-way. */
	struct sigaction sa = { .sa_handler = on_stop };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	/* For plugins that name the bus (the nats export's message ids). */
	setenv("SPATE_BUS", cfg->bus, 1);
	printf("spate run %s: opening bus %s (recovering its logs if it crashed)\n", argv[optind],
	       cfg->bus);
	fflush(stdout);
	/* The functions door provides the plugins of `function:` consumers. */
	rc = spate_engine_register_provider(&spate_fn_provider);
	if (rc < 0 && rc != -EEXIST) {
		fprintf(stderr, "spate: functions door: %s\n", strerror(-rc));
		spate_config_free(cfg);
		return rc;
	}
	/* The doors that provide consumers' plugins (spate/provider.h). */
	spate_iso_register();
	rc = spate_engine_open_file(argv[optind], &e, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "spate: %s\n", err);
		spate_config_free(cfg);
		return rc;
	}
	/* The doors' source types (engine/sources/), each checking its entries. */
	rc = spate_sources_register_builtin(e, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "spate: %s\n", err);
		spate_engine_close(e);
		spate_config_free(cfg);
		return rc;
	}
	if (got_stop) {
		printf("stopped while opening: closing\n");
		spate_engine_close(e);
		spate_config_free(cfg);
		return 0;
	}
	spate_engine_describe(e, desc, sizeof(desc));
	int all = spate_engine_stream_list(e, NULL, 0);
	printf("spate run %s: bus %s, %u stream(s) (+%d created at run time), %u consumer(s)\n%s",
	       argv[optind], cfg->bus, cfg->n_streams, all - (int)cfg->n_streams, cfg->n_consumers,
	       desc);
	for (uint32_t i = 0; i < cfg->n_streams; i++) {
		struct spate_stream *s = spate_engine_stream(e, cfg->streams[i].name);
		printf("  stream %s: %u shard(s), memory %s\n", cfg->streams[i].name,
		       spate_stream_shards(s), spate_shm_backing_str(spate_stream_shm(s)));
	}
	for (uint32_t i = 0; i < cfg->n_sources; i++)
		printf("  source %s: type %s into stream %s\n", cfg->sources[i].name,
		       cfg->sources[i].type, cfg->sources[i].stream);
	fflush(stdout);
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
	struct spate_api *api = NULL;
	if (cfg->api.enabled) {
		rc = spate_api_start(e, cfg, &api, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "spate: %s\n", err);
			spate_metrics_http_stop(metrics);
			spate_engine_stop(e);
			goto out;
		}
		printf("  api: Kinesis API at http%s://%s (region %s, auth %s)\n",
		       cfg->api.tls_cert[0] ? "s" : "", cfg->api.listen, cfg->api.region,
		       cfg->api.auth == SPATE_CONFIG_API_AUTH_NONE ? "none" : "SigV4");
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
	spate_api_stop(api);
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

/* A stream whose engine is dead: a memory-only one is refused (nothing
 * would consume the records until an engine takes the region over), a
 * persisted one is written with a warning (the next engine persists what
 * the region holds first). Never silently. */
static int put_engine_check(const struct spate_config *cfg, struct spate_stream *s)
{
	pid_t pid = 0;

	if (spate_stream_engine(s, &pid) != -ESRCH)
		return 0;
	if (spate_stream_durability(s) == SPATE_DURABILITY_OFF) {
		fprintf(stderr,
			"spate put: stream %s of bus %s: its engine (pid %ld) is not running; the "
			"region is left from it: start `spate run` (it takes the stream over) or "
			"remove it (`spate rm`)\n",
			spate_stream_name(s), cfg->bus, (long)pid);
		return -ENOTCONN;
	}
	fprintf(stderr,
		"spate put: warning: stream %s of bus %s: its engine (pid %ld) is not running; the "
		"records wait in memory until `spate run` persists them\n",
		spate_stream_name(s), cfg->bus, (long)pid);
	return 0;
}

/* Lines of standard input go out in batches of up to PUT_BATCH_RECORDS
 * records or PUT_BATCH_BYTES bytes, and a batch waits at most
 * PUT_LATENCY_MS for more input after its first line. */
#define PUT_BATCH_RECORDS 1024u
#define PUT_BATCH_BYTES ((size_t)256 << 10)
#define PUT_LATENCY_MS 10

/* A line reader over a file descriptor that can wait with a timeout. */
struct put_in {
	int fd;
	char *buf;
	size_t cap, start, end;
	bool eof;
};

/* The next line (without its newline) in *line / *len, valid until the next
 * call. @p timeout_ms < 0 waits for ever. @return 1, 0 (end of input),
 * -EAGAIN (no whole line within the timeout), -ENOMEM or -errno. */
static int put_next_line(struct put_in *in, int timeout_ms, const char **line, size_t *len)
{
	for (;;) {
		char *nl = in->end > in->start ? memchr(in->buf + in->start, '\n', in->end - in->start)
					       : NULL;
		if (nl || (in->eof && in->start < in->end)) {
			size_t n = nl ? (size_t)(nl - (in->buf + in->start)) : in->end - in->start;
			*line = in->buf + in->start;
			*len = n;
			in->start += n + (nl ? 1 : 0);
			return 1;
		}
		if (in->eof)
			return 0;
		if (timeout_ms >= 0) {
			struct pollfd pfd = { .fd = in->fd, .events = POLLIN };
			int r = poll(&pfd, 1, timeout_ms);
			if (r == 0)
				return -EAGAIN;
			if (r < 0 && errno != EINTR)
				return -errno;
		}
		if (in->start) {
			memmove(in->buf, in->buf + in->start, in->end - in->start);
			in->end -= in->start;
			in->start = 0;
		}
		if (in->end == in->cap) {
			size_t cap = in->cap ? in->cap * 2 : 64 * 1024;
			char *b = realloc(in->buf, cap);
			if (!b)
				return -ENOMEM;
			in->buf = b;
			in->cap = cap;
		}
		ssize_t n = read(in->fd, in->buf + in->end, in->cap - in->end);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n == 0)
			in->eof = true;
		else if (n > 0)
			in->end += (size_t)n;
	}
}

/* Records waiting to be put: payloads copied into one growing arena. */
struct put_batch {
	struct spate_put_entry e[PUT_BATCH_RECORDS];
	struct spate_put_result res[PUT_BATCH_RECORDS];
	size_t off[PUT_BATCH_RECORDS];
	unsigned n;
	char *arena;
	size_t used, cap;
	uint64_t records, batches, failed;
};

static int put_add(struct put_batch *b, const char *data, size_t len)
{
	if (b->used + len > b->cap) {
		size_t cap = b->cap ? b->cap : PUT_BATCH_BYTES;
		while (cap < b->used + len)
			cap *= 2;
		char *a = realloc(b->arena, cap);
		if (!a)
			return -ENOMEM;
		b->arena = a;
		b->cap = cap;
	}
	if (len)
		memcpy(b->arena + b->used, data, len);
	b->off[b->n] = b->used;
	b->e[b->n] = (struct spate_put_entry){ .len = len };
	b->used += len;
	b->n++;
	return 0;
}

static const char *put_errstr(int err)
{
	return err == -ENOTCONN ? "no engine is persisting the stream (start it with `spate run`)"
	       : err == -ENOSPC ? "the log's disk is full"
				: strerror(-err);
}

/* Put the batch; per record "shard S seq N" with @p print_seq. 0 or the
 * first record's error. */
static int put_flush(struct spate_producer *p, struct put_batch *b, const char *key,
		     bool print_seq)
{
	int rc = 0;

	if (!b->n)
		return 0;
	for (unsigned i = 0; i < b->n; i++) {
		b->e[i].data = b->arena + b->off[i];
		b->e[i].key = key ? key : b->e[i].data;
		b->e[i].key_len = key ? strlen(key) : b->e[i].len;
	}
	int failed = spate_put_batch(p, b->e, b->n, b->res);
	if (failed < 0) {
		fprintf(stderr, "spate put: %s\n", strerror(-failed));
		b->n = 0;
		b->used = 0;
		return failed;
	}
	for (unsigned i = 0; i < b->n; i++) {
		const struct spate_put_result *r = &b->res[i];
		if (r->error == 0) {
			if (print_seq)
				printf("shard %u seq %" PRIu64 "\n", r->shard, r->seq);
			continue;
		}
		b->failed++;
		if (!rc)
			rc = r->error;
		if (r->error == -ENOTCONN || r->error == -ENOSPC || r->error == -EIO)
			fprintf(stderr, "spate put: record appended as shard %u seq %" PRIu64
				" but not known to be durable: %s\n", r->shard, r->seq,
				put_errstr(r->error));
		else
			fprintf(stderr, "spate put: record %" PRIu64 " refused: %s\n",
				b->records + i + 1, strerror(-r->error));
	}
	b->records += b->n;
	b->batches++;
	b->n = 0;
	b->used = 0;
	return rc;
}

static uint64_t put_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Why stream @p name of @p cfg cannot be attached (-ENOENT): not in the
 * config, no engine running, or removed from under a running one. */
static void put_explain_missing(const struct spate_config *cfg, const char *config,
				const char *name)
{
	pid_t pid = 0;

	if (!spate_config_find_stream(cfg, name)) {
		fprintf(stderr, "spate put: stream %s does not exist: %s defines", name, config);
		for (uint32_t i = 0; i < cfg->n_streams; i++)
			fprintf(stderr, "%s %s", i ? "," : "", cfg->streams[i].name);
		fprintf(stderr, "%s\n", cfg->n_streams ? "" : " no stream");
		return;
	}
	/* The engine lock, not engine.pid: a stale pid file names whatever
	 * process has that pid now. */
	if (spate_engine_lock_holder(cfg->state_dir, &pid, NULL) == 1)
		fprintf(stderr, "spate put: stream %s does not exist in bus %s, although an engine "
			"(pid %ld) runs: was it removed (spate rm)? restart the engine\n",
			name, cfg->bus, (long)pid);
	else
		fprintf(stderr, "spate put: stream %s of bus %s does not exist: no engine runs it "
			"(start one with `spate run %s`)\n", name, cfg->bus, config);
}

static const char put_usage[] =
	"usage: spate put CONFIG STREAM [-k KEY] [-q] [-v] [DATA...]\n"
	"  without DATA, every line of standard input is a record; lines are put in\n"
	"  batches (up to 1024 records, 256 KiB or 10 ms) and a summary is printed\n"
	"  -k KEY           the partition key of every record (default: the record itself)\n"
	"  -v, --print-seq  print \"shard S seq N\" per record (the default with DATA)\n"
	"  -q, --quiet      print nothing but errors\n";

int spate_cli_put(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "key", required_argument, 0, 'k' }, { "quiet", no_argument, 0, 'q' },
		{ "print-seq", no_argument, 0, 'v' }, { "verbose", no_argument, 0, 'v' },
		{ "help", no_argument, 0, 'h' },      { 0, 0, 0, 0 },
	};
	const char *key = NULL;
	struct spate_config *cfg;
	struct spate_stream *s;
	struct spate_producer *p;
	int c, rc, quiet = 0, verbose = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "k:qvh", lo, NULL)) != -1) {
		if (c == 'k')
			key = optarg;
		else if (c == 'q')
			quiet = 1;
		else if (c == 'v')
			verbose = 1;
		else {
			fputs(put_usage, c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (argc - optind < 2) {
		fputs(put_usage, stderr);
		return -EINVAL;
	}
	const char *name = argv[optind + 1];
	const bool from_args = argc > optind + 2;
	const bool print_seq = !quiet && (verbose || from_args);
	if (load_config(argv[optind], &cfg) < 0)
		return -EINVAL;
	rc = spate_stream_attach(cfg->bus, name, &s);
	if (rc == -ENOENT) {
		put_explain_missing(cfg, argv[optind], name);
		spate_config_free(cfg);
		return rc;
	}
	if (rc < 0) {
		fprintf(stderr, "spate put: stream %s of bus %s: %s\n", name, cfg->bus, strerror(-rc));
		spate_config_free(cfg);
		return rc;
	}
	if (put_engine_check(cfg, s) < 0) {
		rc = -ENOTCONN;
		goto out;
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
		int si = spate_stats_stream_find(stats, name);
		struct spate_stats_stream_desc d;
		if (si >= 0 && spate_stats_stream_read(stats, (uint32_t)si, &d) == 1 &&
		    d.shards == spate_stream_shards(s))
			spate_producer_set_stats(p, spate_stats_shard_of(stats, (uint32_t)si, 0));
	}
	struct put_batch *b = calloc(1, sizeof(*b));
	struct put_in in = { .fd = STDIN_FILENO };
	if (!b) {
		rc = -ENOMEM;
		goto out_p;
	}
	if (from_args) {
		for (int i = optind + 2; i < argc && rc == 0; i++) {
			rc = put_add(b, argv[i], strlen(argv[i]));
			if (rc == 0 && (b->n == PUT_BATCH_RECORDS || i == argc - 1))
				rc = put_flush(p, b, key, print_seq);
		}
	} else {
		uint64_t deadline = 0;
		while (rc == 0) {
			int timeout = -1;
			if (b->n) {
				uint64_t now = put_now_ms();
				timeout = now >= deadline ? 0 : (int)(deadline - now);
			}
			const char *line = NULL;
			size_t len = 0;
			int r = put_next_line(&in, timeout, &line, &len);
			if (r == 1) {
				if (!b->n)
					deadline = put_now_ms() + PUT_LATENCY_MS;
				rc = put_add(b, line, len);
				if (rc == 0 && (b->n == PUT_BATCH_RECORDS || b->used >= PUT_BATCH_BYTES))
					rc = put_flush(p, b, key, print_seq);
			} else if (r == -EAGAIN) {
				rc = put_flush(p, b, key, print_seq);
			} else {
				if (r < 0)
					fprintf(stderr, "spate put: standard input: %s\n", strerror(-r));
				int f = put_flush(p, b, key, print_seq);
				rc = r < 0 ? r : f;
				break;
			}
		}
		if (!quiet)
			printf("spate put: %" PRIu64 " record(s) in %" PRIu64 " batch(es) to stream %s"
			       "%s%" PRIu64 " failed\n", b->records - b->failed, b->batches, name,
			       b->failed ? ", " : ", none ", b->failed);
	}
	free(in.buf);
	free(b->arena);
	free(b);
out_p:
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

/* Open shard @p shard's log at @p from_seq (0: its oldest record); *lr stays
 * NULL while the shard has no log yet. */
static int tail_log_open(const struct spate_config *cfg, const struct spate_config_stream *cs,
			 uint32_t shard, uint64_t from_seq, struct spate_log_reader **lr)
{
	char dir[SPATE_CONFIG_PATH_MAX + 16];
	int rc = spate_config_stream_log_dir(cfg, cs, shard, dir, sizeof(dir));

	*lr = NULL;
	if (rc == 0)
		rc = spate_log_reader_open(dir, from_seq ? SPATE_LOG_FROM_SEQ : SPATE_LOG_FROM_OLDEST,
					   from_seq, lr);
	if (rc == -ENOENT)
		return 0; /* nothing written yet */
	if (rc < 0)
		fprintf(stderr, "spate tail: log of shard %u (%s): %s\n", shard, dir, strerror(-rc));
	return rc;
}

/* Print from @p lr until the end of what is written or @p count lines in
 * all; *next is the sequence number after the last one printed. */
static int tail_log_drain(struct spate_log_reader *lr, uint32_t shard, uint64_t count,
			  uint64_t *shown, uint64_t *next)
{
	while (lr && *shown < count) {
		struct spate_ring_rec v[64];
		uint64_t skipped = 0;
		int k = spate_log_read(lr, v, 64, &skipped);
		if (k < 0) {
			fprintf(stderr, "spate tail: log of shard %u: %s\n", shard, strerror(-k));
			return k;
		}
		if (k == 0)
			break;
		for (int j = 0; j < k && *shown < count; j++) {
			if (v[j].seq < *next)
				continue;
			print_rec(shard, &v[j]);
			(*shown)++;
			*next = v[j].seq + 1;
		}
	}
	return 0;
}

/*
 * One shard of a persisted stream from @p *next on: its history from the log,
 * then the ring. The handover is where records can fall between the two: a
 * record written to the log after the log's end was read, then overwritten
 * in the ring before the ring reader exists, is in neither view. So the ring
 * reader (@p rd) is opened before the log is read to its end once more, and
 * holds the ring from there on: what the ring no longer holds then was
 * released by the persister, which gates the ring. The persister releases a
 * batch once it has copied it for writing, a little before the log file
 * shows it: tail_catch_up() waits for those. The first read holds no
 * reader, so a long history never holds the producers back.
 */
static int tail_history(const struct spate_config *cfg, const struct spate_config_stream *cs,
			struct spate_stream *s, uint32_t shard, uint64_t count, uint64_t *shown,
			uint64_t *next, struct spate_ring_reader **rd)
{
	struct spate_log_reader *lr;
	int rc = tail_log_open(cfg, cs, shard, *next, &lr);

	if (rc == 0)
		rc = tail_log_drain(lr, shard, count, shown, next);
	if (rc == 0 && s && *shown < count) {
		rc = spate_ring_reader_open(spate_stream_ring(s, shard), SPATE_RING_START_OLDEST,
					    SPATE_RING_WAIT_YIELD, rd);
		if (rc < 0)
			fprintf(stderr, "spate tail: reader on shard %u: %s\n", shard, strerror(-rc));
		else if (!lr)
			rc = tail_log_open(cfg, cs, shard, *next, &lr);
		if (rc == 0)
			rc = tail_log_drain(lr, shard, count, shown, next);
	}
	spate_log_reader_close(lr);
	return rc;
}

/*
 * The ring's first record for this tail is @p ring_seq, past *next: records
 * *next..ring_seq-1 left the ring before the reader held it, so the
 * persister has them and the log shows them once their write completes.
 * Print them from the log, waiting for it (up to 10 s: were the engine
 * gone, they would be lost, and the caller says so).
 */
static int tail_catch_up(const struct spate_config *cfg, const struct spate_config_stream *cs,
			 uint32_t shard, uint64_t ring_seq, uint64_t count, uint64_t *shown,
			 uint64_t *next)
{
	struct spate_log_reader *lr = NULL;
	int rc = 0;

	for (int waited_ms = 0; *next < ring_seq && *shown < count && waited_ms < 10000; waited_ms++) {
		if (!lr)
			rc = tail_log_open(cfg, cs, shard, *next, &lr);
		if (rc == 0)
			rc = tail_log_drain(lr, shard, count, shown, next);
		if (rc < 0 || *next >= ring_seq)
			break;
		struct timespec ts = { 0, 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	spate_log_reader_close(lr);
	return rc;
}

/* A sequence number, or trim_horizon / latest. 0 or -EINVAL. */
static int parse_from(const char *from, enum spate_ring_start *start, uint64_t *seq)
{
	char *end;

	*seq = 0;
	*start = SPATE_RING_START_OLDEST;
	if (!strcmp(from, "trim_horizon"))
		return 0;
	if (!strcmp(from, "latest")) {
		*start = SPATE_RING_START_LATEST;
		return 0;
	}
	errno = 0;
	if (from[0] < '0' || from[0] > '9')
		return -EINVAL;
	*seq = strtoull(from, &end, 0);
	return errno || *end ? -EINVAL : 0;
}

/* A count or shard number: digits only, no sign. 0 or -EINVAL. */
static int parse_u64(const char *arg, uint64_t max, uint64_t *v)
{
	char *end;

	if (arg[0] < '0' || arg[0] > '9')
		return -EINVAL;
	errno = 0;
	*v = strtoull(arg, &end, 10);
	return errno || *end || *v > max ? -EINVAL : 0;
}

static const char tail_usage[] =
	"usage: spate tail CONFIG STREAM [--from trim_horizon|latest|SEQ] [--shard N] [-n COUNT] [-f]\n"
	"  --from P    where to start: trim_horizon (the oldest record kept, the default),\n"
	"              latest (only new records) or a sequence number\n"
	"  --shard N   one shard only\n"
	"  -n COUNT    stop after COUNT records\n"
	"  -f          keep following new records (until SIGINT)\n"
	"  a persisted stream's history comes from its log, then the ring\n";

/* `spate tail`: options, then per shard the log history and the ring from
 * where it ended, then the follow loop; the hand-over bookkeeping (expect_of,
 * min_seq_of) is shared by the three phases, hence one function. */
int spate_cli_tail(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "from", required_argument, 0, 'F' }, { "shard", required_argument, 0, 'S' },
		{ "follow", no_argument, 0, 'f' },     { "count", required_argument, 0, 'n' },
		{ "help", no_argument, 0, 'h' },       { 0, 0, 0, 0 },
	};
	const char *from = "trim_horizon";
	long shard_only = -1;
	uint64_t count = UINT64_MAX, shown = 0, num;
	int follow = 0, c, rc;
	struct spate_config *cfg;
	struct spate_stream *s;

	optind = 1;
	while ((c = getopt_long(argc, argv, "fn:h", lo, NULL)) != -1) {
		switch (c) {
		case 'F': from = optarg; break;
		case 'S':
			if (parse_u64(optarg, SPATE_STREAM_MAX_SHARDS - 1, &num) < 0) {
				fprintf(stderr, "spate tail: --shard takes a shard number, not '%s'\n", optarg);
				return -EINVAL;
			}
			shard_only = (long)num;
			break;
		case 'f': follow = 1; break;
		case 'n':
			if (parse_u64(optarg, UINT64_MAX, &count) < 0) {
				fprintf(stderr, "spate tail: -n takes a count of records (0 or more), "
					"not '%s'\n", optarg);
				return -EINVAL;
			}
			break;
		default:
			fputs(tail_usage, c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (argc - optind != 2) {
		fputs(tail_usage, stderr);
		return -EINVAL;
	}
	enum spate_ring_start start;
	uint64_t min_seq;
	if (parse_from(from, &start, &min_seq) < 0) {
		fprintf(stderr, "spate tail: --from takes trim_horizon, latest or a sequence "
			"number, not '%s'\n", from);
		return -EINVAL;
	}
	if (load_config(argv[optind], &cfg) < 0)
		return -EINVAL;
	const struct spate_config_stream *cs = spate_config_find_stream(cfg, argv[optind + 1]);
	const bool persisted = cs && cs->durability != SPATE_DURABILITY_OFF;
	rc = spate_stream_attach(cfg->bus, argv[optind + 1], &s);
	if (rc == -ENOENT && persisted) {
		s = NULL; /* no shared memory (nothing runs): the logs alone */
	} else if (rc < 0) {
		fprintf(stderr, "spate tail: stream %s of bus %s: %s%s\n", argv[optind + 1], cfg->bus,
			strerror(-rc), rc == -ENOENT && !cs ? " (the config has no such stream)" : "");
		spate_config_free(cfg);
		return rc;
	}
	uint32_t n = s ? spate_stream_shards(s) : cs->shards;
	if (!s)
		follow = 0; /* nothing appends while no engine holds the stream */
	uint64_t min_seq_of[SPATE_STREAM_MAX_SHARDS];
	/* Where a shard's history ended: its ring must go on from there. */
	uint64_t expect_of[SPATE_STREAM_MAX_SHARDS];
	struct spate_ring_reader *rd[SPATE_STREAM_MAX_SHARDS] = { 0 };
	for (uint32_t i = 0; i < n; i++) {
		min_seq_of[i] = min_seq;
		expect_of[i] = UINT64_MAX;
		if (shard_only >= 0 && (uint32_t)shard_only != i)
			continue;
		if (persisted && start == SPATE_RING_START_OLDEST) {
			/* History from the log first, then the ring from where the
			 * log ended. */
			rc = tail_history(cfg, cs, s, i, count, &shown, &min_seq_of[i], &rd[i]);
			if (rc < 0)
				goto out;
			expect_of[i] = min_seq_of[i];
			continue;
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
				if (expect_of[i] != UINT64_MAX && v[j].seq > expect_of[i]) {
					rc = tail_catch_up(cfg, cs, i, v[j].seq, count, &shown, &min_seq_of[i]);
					if (rc < 0)
						goto out;
					if (min_seq_of[i] < v[j].seq && shown < count)
						fprintf(stderr, "spate tail: shard %u: records %" PRIu64 "..%"
							PRIu64 " are neither in the log nor in memory\n", i,
							min_seq_of[i], v[j].seq - 1);
				}
				expect_of[i] = UINT64_MAX;
				if (v[j].seq < min_seq_of[i] || shown >= count)
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
	char req[4200], tmp[4300], res[4300], path[PATH_MAX];
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
	unlink(res);
	FILE *f = fopen(tmp, "we");
	if (!f || fprintf(f, "%s\n", path) < 0 || fclose(f) != 0 || rename(tmp, req) < 0) {
		rc = -errno;
		fprintf(stderr, "spate deploy: %s: %s\n", req, strerror(errno));
		goto out;
	}
	/* The signal goes only to the lock's holder: with the lock held, its
	 * pid is the live engine's, never a recycled one (engine.pid may be
	 * stale after a crash). */
	pid_t pid = 0;
	if (spate_engine_lock_holder(cfg->state_dir, &pid, NULL) != 1 || pid <= 0 ||
	    kill(pid, SIGHUP) < 0) {
		fprintf(stderr, "spate deploy: no engine runs for %s (%s/%s is not held)\n", argv[1],
			cfg->state_dir, SPATE_ENGINE_LOCK_FILE);
		unlink(req);
		rc = -ESRCH;
		goto out;
	}
	for (int i = 0; i < 300; i++) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		f = fopen(res, "re");
		if (!f) {
			pid_t now = 0;
			if (spate_engine_lock_holder(cfg->state_dir, &now, NULL) != 1 || now != pid) {
				fprintf(stderr, "spate deploy: the engine (pid %ld) stopped before it "
						"answered\n", (long)pid);
				unlink(req);
				rc = -ESRCH;
				goto out;
			}
			continue;
		}
		char line[600] = "";
		if (fgets(line, sizeof(line), f))
			rc = atoi(line);
		fclose(f);
		unlink(res);
		printf("spate deploy %s: %s", argv[2], strchr(line, ' ') ? strchr(line, ' ') + 1 : line);
		goto out;
	}
	fprintf(stderr, "spate deploy: no answer from pid %ld in 30 s\n", (long)pid);
	rc = -ETIMEDOUT;
out:
	spate_config_free(cfg);
	return rc;
}

/* Unlink stream @p name's region (retired first, unless a live engine
 * serves it: then refused); *rc keeps the first error. */
static void rm_stream(const struct spate_config *cfg, const char *name, int *rc)
{
	struct spate_stream *s = NULL;
	pid_t epid = 0;

	if (spate_stream_attach(cfg->bus, name, &s) == 0) {
		int live = spate_stream_engine(s, &epid) == 1;
		/* Producers still mapping it learn it at their next put
		 * (or wait for space) instead of writing into nothing. */
		for (uint32_t k = 0; !live && k < spate_stream_shards(s); k++)
			spate_ring_retire(spate_stream_ring(s, k));
		spate_stream_close(s);
		if (live) {
			fprintf(stderr, "spate rm: stream %s is served by a live engine (pid %ld)\n",
				name, (long)epid);
			*rc = -EBUSY;
			return;
		}
	}
	int r = spate_stream_unlink(cfg->bus, name);
	printf("stream %s: %s\n", name, r == 0 ? "removed" : strerror(-r));
	if (r < 0 && r != -ENOENT && *rc == 0)
		*rc = r;
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
	/* A live bus is not removed: hold its engine lock while removing, so
	 * no engine starts half-way, and refuse a stream another live engine
	 * serves (a second state_dir). */
	struct spate_engine_lock *lock = NULL;
	pid_t holder = 0;
	int lr = spate_engine_lock(cfg->state_dir, &lock, &holder);
	if (lr == -EBUSY) {
		fprintf(stderr, "spate rm: bus %s is live: engine pid %ld holds %s/%s; stop it first\n",
			cfg->bus, (long)holder, cfg->state_dir, SPATE_ENGINE_LOCK_FILE);
		spate_config_free(cfg);
		return -EBUSY;
	}
	/* -ENOENT: no state_dir, so no engine ever ran from this configuration. */
	if (lr < 0 && lr != -ENOENT) {
		fprintf(stderr, "spate rm: %s/%s: %s\n", cfg->state_dir, SPATE_ENGINE_LOCK_FILE,
			strerror(-lr));
		spate_config_free(cfg);
		return lr;
	}
	for (uint32_t i = 0; i < cfg->n_streams; i++) {
		const char *name = cfg->streams[i].name;
		int want = argc == 2;
		for (int a = 2; a < argc; a++)
			if (!strcmp(argv[a], name))
				want = 1;
		if (want)
			rm_stream(cfg, name, &rc);
	}
	/* Streams created at run time (definitions in <state_dir>/streams):
	 * their memory too; the definitions stay, like the configuration. */
	char sdir[SPATE_CONFIG_PATH_MAX + 16];
	DIR *d = snprintf(sdir, sizeof(sdir), "%s/%s", cfg->state_dir, SPATE_ENGINE_STREAMS_DIR) <
			 (int)sizeof(sdir)
		 ? opendir(sdir)
		 : NULL;
	for (struct dirent *de; d && (de = readdir(d));) {
		char name[SPATE_CONFIG_NAME_MAX + 1];
		size_t l = strlen(de->d_name);
		if (l < 6 || l - 5 > SPATE_CONFIG_NAME_MAX || strcmp(de->d_name + l - 5, ".json"))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(l - 5), de->d_name);
		int want = argc == 2 && !spate_config_find_stream(cfg, name);
		for (int a = 2; a < argc; a++)
			if (!strcmp(argv[a], name))
				want = 1;
		if (want)
			rm_stream(cfg, name, &rc);
	}
	if (d)
		closedir(d);
	if (argc == 2 && rc == 0) { /* the whole bus: its counters region too */
		int r = spate_stats_unlink(cfg->bus);
		if (r == 0)
			printf("counters of bus %s: removed\n", cfg->bus);
	}
	spate_engine_unlock(lock);
	spate_config_free(cfg);
	return rc;
}
