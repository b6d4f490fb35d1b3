/* SPDX-License-Identifier: MIT */
/*
 * engine_testlib.h - helpers shared by the engine-level suites (test_engine,
 * test_persist): a bus in a temporary directory, bundled plugins by path,
 * producers of checkable payloads, the count plugin's JSON summaries,
 * checkpoint files.
 */
#ifndef SPATE_TESTS_ENGINE_TESTLIB_H
#define SPATE_TESTS_ENGINE_TESTLIB_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "plugins/plugin_util.h" /* pu_payload_sum: the count plugin's checksum */
#include "spate/checkpoint.h"
#include "spate/config.h"
#include "spate/engine.h"
#include "spate/ring.h"
#include "spate/stream.h"

#define MS (1000000ull)

#if defined(__SANITIZE_THREAD__)
#define SCALE 8u /* ThreadSanitizer is much slower: fewer records */
#else
#define SCALE 1u
#endif

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static inline uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void nap_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Path of bundled plugin @p name: <first dir of SPATE_PLUGIN_PATH>/<name>.so. */
static inline void plugin_so(const char *name, char *out, size_t len)
{
	const char *env = getenv("SPATE_PLUGIN_PATH");

	cr_assert(env && *env, "SPATE_PLUGIN_PATH is not set (tests/meson.build sets it)");
	size_t n = strcspn(env, ":");
	int w = snprintf(out, len, "%.*s/%s.so", (int)n, env, name);
	cr_assert(w > 0 && (size_t)w < len);
	cr_assert_eq(access(out, R_OK), 0, "plugin %s: %s", out, strerror(errno));
}

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* One test's bus: config, state_dir, engine, and the streams to remove. */
struct bus {
	char name[SPATE_CONFIG_NAME_MAX + 1];
	char dir[256];
	struct spate_config *cfg;
	struct spate_engine *e;
	char streams[4][SPATE_CONFIG_NAME_MAX + 1];
	unsigned nstreams;
};

static inline void bus_init(struct bus *b, const char *tag)
{
	memset(b, 0, sizeof(*b));
	snprintf(b->name, sizeof(b->name), "eng%d-%s", (int)getpid(), tag);
	snprintf(b->dir, sizeof(b->dir), "/tmp/spate-test-engine-XXXXXX");
	cr_assert_not_null(mkdtemp(b->dir), "mkdtemp: %s", strerror(errno));
	cr_assert_eq(spate_config_new_default(b->name, &b->cfg), 0);
	snprintf(b->cfg->state_dir, sizeof(b->cfg->state_dir), "%s/state", b->dir);
}

static inline struct spate_config_stream *bus_stream(struct bus *b, const char *name, uint32_t shards,
					      uint64_t ring_size)
{
	struct spate_config_stream *s = NULL;

	cr_assert_eq(spate_config_add_stream(b->cfg, name, &s), 0);
	s->shards = shards;
	s->ring_size = ring_size;
	s->huge_pages = SPATE_CONFIG_HUGE_OFF;
	cr_assert_lt(b->nstreams, 4u);
	snprintf(b->streams[b->nstreams++], sizeof(b->streams[0]), "%s", name);
	return s;
}

/* A consumer of @p stream running bundled plugin @p plugin, loaded by path;
 * starting at trim_horizon. The pointer is valid until the next add. */
static inline struct spate_config_consumer *bus_consumer(struct bus *b, const char *name,
						  const char *stream, const char *plugin)
{
	struct spate_config_consumer *k = NULL;
	char path[PATH_MAX];

	plugin_so(plugin, path, sizeof(path));
	cr_assert_eq(spate_config_add_consumer(b->cfg, name, stream, path, &k), 0);
	k->starting_position = SPATE_CONFIG_START_TRIM_HORIZON;
	k->wait = SPATE_RING_WAIT_BLOCK;
	return k;
}

static inline void opt(struct spate_config_consumer *k, const char *key, const char *value)
{
	cr_assert_eq(spate_config_consumer_set_option(k, key, value), 0);
}

/* "<dir>/<file>" */
static inline void in_dir(const struct bus *b, const char *file, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s", b->dir, file);
	cr_assert(n > 0 && (size_t)n < len);
}

static inline void bus_open(struct bus *b)
{
	char err[512] = "";
	int rc = spate_engine_open(b->cfg, &b->e, err, sizeof(err));

	cr_assert_eq(rc, 0, "engine open: %d: %s", rc, err);
	cr_assert_not_null(b->e);
}

/* Close the engine (stopping it), remove the streams, the config and the
 * directory. */
static inline void bus_done(struct bus *b)
{
	spate_engine_close(b->e);
	b->e = NULL;
	for (unsigned i = 0; i < b->nstreams; i++)
		cr_expect_eq(spate_stream_unlink(b->name, b->streams[i]), 0, "unlink %s",
			     b->streams[i]);
	spate_config_free(b->cfg);
	b->cfg = NULL;
	nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline struct spate_producer *producer_of(struct spate_stream *s)
{
	struct spate_producer *p = NULL;
	int rc;

	cr_assert_not_null(s);
	rc = spate_producer_open(s, SPATE_RING_WAIT_YIELD, 0, &p);
	cr_assert_eq(rc, 0, "producer_open: %d", rc);
	return p;
}

/* Record i's payload: "rec-<i>-" then 0..22 filler bytes (varying lengths). */
static inline size_t payload_of(uint64_t i, char *buf, size_t len)
{
	int n = snprintf(buf, len, "rec-%06" PRIu64 "-", i);
	size_t m = (size_t)n + (size_t)(i % 23);

	cr_assert_lt(m, len);
	for (size_t j = (size_t)n; j < m; j++)
		buf[j] = (char)('a' + (i + j) % 26);
	buf[m] = 0;
	return m;
}

static inline void key_of(unsigned k, char *buf, size_t len)
{
	snprintf(buf, len, "key-%u", k);
}

/* Put records [from, to) with payload_of() under keys key-(i % nkeys); the
 * count plugin's checksum of them is added to *sum (if not NULL). */
static inline void produce(struct spate_producer *p, uint64_t from, uint64_t to, unsigned nkeys,
		    uint64_t *sum)
{
	char buf[64], key[32];

	for (uint64_t i = from; i < to; i++) {
		size_t n = payload_of(i, buf, sizeof(buf));
		key_of((unsigned)(i % nkeys), key, sizeof(key));
		int rc = spate_put(p, key, strlen(key), buf, n, NULL);
		cr_assert_eq(rc, 0, "put %" PRIu64 ": %d", i, rc);
		if (sum)
			*sum += pu_payload_sum(buf, (uint32_t)n, PU_TOUCH_ALL);
	}
}

static inline struct spate_consumer_stats stats_of(struct spate_engine *e, const char *name)
{
	struct spate_consumer_stats st;
	int rc = spate_engine_consumer_stats(e, name, &st);

	cr_assert_eq(rc, 0, "stats of %s: %d", name, rc);
	return st;
}

/* Poll consumer @p name's stats (into @p st) until @p cond, or fail after
 * @p ms milliseconds. */
#define WAIT_FOR(e, name, st, cond, ms)                                                        \
	do {                                                                                   \
		uint64_t deadline_ = mono_ns() + (uint64_t)(ms) * MS;                          \
		for (;;) {                                                                     \
			(st) = stats_of((e), (name));                                          \
			if (cond)                                                              \
				break;                                                         \
			cr_assert_lt(mono_ns(), deadline_,                                     \
				     "%s: timed out waiting for %s: records %" PRIu64            \
				     " failed %" PRIu64 " batches %" PRIu64 " lag %" PRIu64      \
				     " state %u error '%s'",                                     \
				     (name), #cond, (st).records, (st).failed, (st).batches,     \
				     (st).lag_records, (st).state, (st).error);                  \
			nap_ms(1);                                                             \
		}                                                                              \
	} while (0)

/* A count/fail JSON summary (plugins/plugin_util.h, pu_summary_write). */
struct summary {
	uint64_t records, bytes, checksum, gaps, duplicates, delivered, batches;
	uint64_t failed_batches, failed_records;
	int64_t first_seq, last_seq; /* -1: null */
	char text[1024];
};

static inline uint64_t js_num(const char *text, const char *key, int base, bool *null)
{
	char pat[64];
	const char *at;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	at = strstr(text, pat);
	cr_assert_not_null(at, "summary has no %s: %s", key, text);
	at += strlen(pat);
	if (null)
		*null = !strncmp(at, "null", 4);
	if (*at == '"')
		at++;
	return strtoull(at, NULL, base);
}

static inline bool read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, len - 1, f);
	buf[n] = 0;
	fclose(f);
	return true;
}

static inline struct summary read_summary(const char *path);

/* Summary template "<dir>/<name>-%s.json" (the plugins put the shard at %s). */
static inline void sum_tmpl(const struct bus *b, const char *name, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s-%%s.json", b->dir, name);
	cr_assert(n > 0 && (size_t)n < len);
}

/* The summary of shard @p shard (lane 0) written under sum_tmpl(name). */
static inline struct summary summary_of(const struct bus *b, const char *name, uint32_t shard)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s-%u.json", b->dir, name, shard);
	return read_summary(path);
}

static inline struct summary read_summary(const char *path)
{
	struct summary s;
	bool null;

	memset(&s, 0, sizeof(s));
	cr_assert(read_file(path, s.text, sizeof(s.text)), "summary %s: %s", path,
		  strerror(errno));
	s.records = js_num(s.text, "records", 10, NULL);
	s.bytes = js_num(s.text, "bytes", 10, NULL);
	s.checksum = js_num(s.text, "checksum", 16, NULL);
	s.gaps = js_num(s.text, "gaps", 10, NULL);
	s.duplicates = js_num(s.text, "duplicates", 10, NULL);
	s.delivered = js_num(s.text, "delivered", 10, NULL);
	s.batches = js_num(s.text, "batches", 10, NULL);
	s.failed_batches = js_num(s.text, "failed_batches", 10, NULL);
	s.failed_records = js_num(s.text, "failed_records", 10, NULL);
	s.first_seq = (int64_t)js_num(s.text, "first_seq", 10, &null);
	if (null)
		s.first_seq = -1;
	s.last_seq = (int64_t)js_num(s.text, "last_seq", 10, &null);
	if (null)
		s.last_seq = -1;
	return s;
}

/* The checkpoint file <state_dir>/<stream>.<consumer>.ckpt of the one
 * stream @p consumer reads: shard's next sequence number, UINT64_MAX when
 * the file or the shard's line is absent. */
static inline uint64_t ckpt_file(const char *state_dir, const char *consumer, uint32_t shard)
{
	char path[PATH_MAX + 64], text[4096], suffix[128];
	uint64_t v = UINT64_MAX;
	struct dirent *de;
	DIR *d = opendir(state_dir);
	bool found = false;

	snprintf(suffix, sizeof(suffix), ".%s.ckpt", consumer);
	while (d && !found && (de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name), k = strlen(suffix);
		const char *dot = strchr(de->d_name, '.');
		/* <stream> has no dot: the suffix starts at the first one. */
		if (n > k && dot && !strcmp(dot, suffix)) {
			snprintf(path, sizeof(path), "%s/%s", state_dir, de->d_name);
			found = true;
		}
	}
	if (d)
		closedir(d);
	if (!found || !read_file(path, text, sizeof(text)))
		return UINT64_MAX;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned s;
		unsigned long long seq;
		if (line[0] != '#' && sscanf(line, "%u %llu", &s, &seq) == 2 && s == shard)
			v = seq;
	}
	return v;
}

/* The stream's shared checkpoint of @p consumer for @p shard. */
static inline uint64_t ckpt_shared(struct spate_stream *s, const char *consumer, uint32_t shard)
{
	struct spate_stream_ckpt *c = NULL;

	cr_assert_eq(spate_stream_ckpt_open(s, consumer, &c), 0);
	return spate_stream_ckpt_get(c, shard);
}

/* One record read back from a failure destination. */
struct failed {
	struct spate_failed_record h;
	uint64_t seq_in_dlq;
	uint32_t len; /* bytes after the header */
	char payload[256];
};

/* Read every record of every shard of stream @p s (the engine stopped or
 * not) into @p out; returns how many (at most @p max are kept, each with the
 * first 256 bytes of its payload). */
static inline unsigned read_failures(struct spate_stream *s, struct failed *out, unsigned max)
{
	struct spate_ring_rec rec[256];
	unsigned total = 0;

	cr_assert_not_null(s);
	for (uint32_t sh = 0; sh < spate_stream_shards(s); sh++) {
		struct spate_ring_reader *rd = NULL;
		int rc = spate_ring_reader_open(spate_stream_ring(s, sh), SPATE_RING_START_OLDEST,
						SPATE_RING_WAIT_YIELD, &rd);
		cr_assert_eq(rc, 0, "reader on the failure stream: %d", rc);
		for (;;) {
			int n = spate_ring_peek(rd, rec, 256, UINT64_MAX);
			cr_assert_geq(n, 0, "peek: %d", n);
			if (n == 0)
				break;
			for (int i = 0; i < n; i++, total++) {
				if (total >= max)
					continue;
				struct failed *f = &out[total];
				memset(f, 0, sizeof(*f));
				cr_assert_geq(rec[i].len, sizeof(f->h), "failure record too short");
				memcpy(&f->h, rec[i].data, sizeof(f->h));
				f->seq_in_dlq = rec[i].seq;
				f->len = rec[i].len - (uint32_t)sizeof(f->h);
				/* The first bytes of a longer one (len says how long). */
				size_t keep = f->len < sizeof(f->payload) ? f->len : sizeof(f->payload);
				memcpy(f->payload, (const char *)rec[i].data + sizeof(f->h), keep);
			}
			cr_assert_eq(spate_ring_release(rd, (unsigned)n), 0);
		}
		spate_ring_reader_close(rd);
	}
	return total;
}

#endif
