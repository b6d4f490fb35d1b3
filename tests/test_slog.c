/* SPDX-License-Identifier: MIT */
/*
 * Tests for spate/slog.h, the diagnostic log: JSON lines parse (json-c) and
 * carry level, message, consumer, stream, shard and lane; text lines have
 * the documented shape; one call site's flood is cut to the burst and the
 * rest reported as one "suppressed K" line whose K adds up; other sites and
 * other shards are limited apart; debug is dropped by default. Last, a real
 * plugin (file.so with its required option missing) logs through the
 * host's log callback and the line comes out as JSON with its consumer and
 * shard.
 *
 * Lines go to a temporary file (spate_slog_set_fd) read back after. Each
 * test runs in its own process, so the logger's global state starts fresh;
 * each still sets what it relies on.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "spate/config.h"
#include "spate/engine.h"
#include "spate/slog.h"
#include "spate/stream.h"

static FILE *out_file;

/* Send the log to a fresh temporary file, in format @p f, burst @p burst. */
static void capture(enum spate_slog_format f, unsigned burst)
{
	out_file = tmpfile();
	cr_assert_not_null(out_file);
	cr_assert_eq(spate_slog_set_fd(fileno(out_file)), 0);
	spate_slog_set_format(f);
	spate_slog_set_burst(burst);
	spate_slog_set_level(SPATE_LOG_INFO);
}

/* Everything logged so far, one line per entry; returns the count. */
static unsigned lines(char ***out)
{
	static char *v[4096];
	static char buf[1 << 20];
	size_t n = (size_t)pread(fileno(out_file), buf, sizeof(buf) - 1, 0);
	cr_assert_lt(n, sizeof(buf) - 1);
	buf[n] = 0;
	cr_assert(n == 0 || buf[n - 1] == '\n', "the log ends mid-line");
	unsigned k = 0;
	for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		cr_assert_lt(k, 4096u);
		v[k++] = l;
	}
	*out = v;
	return k;
}

static json_object *parse(const char *line)
{
	json_object *o = json_tokener_parse(line);
	cr_assert_not_null(o, "not JSON: %s", line);
	cr_assert(json_object_is_type(o, json_type_object), "not an object: %s", line);
	return o;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	cr_assert(json_object_object_get_ex(o, key, &v), "no \"%s\" in %s", key,
		  json_object_to_json_string(o));
	return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *key)
{
	json_object *v;
	cr_assert(json_object_object_get_ex(o, key, &v), "no \"%s\" in %s", key,
		  json_object_to_json_string(o));
	cr_assert(json_object_is_type(v, json_type_int));
	return json_object_get_int64(v);
}

static int has(json_object *o, const char *key)
{
	return json_object_object_get_ex(o, key, NULL);
}

Test(slog, json_lines_parse_with_context)
{
	capture(SPATE_SLOG_JSON, 0);
	struct spate_slog_ctx ctx = { "orders-count", "orders", 3, 1 };
	spate_slog(SPATE_LOG_WARN, &ctx, "sink said \"%s\" (%d)\n\ttab \\ slash /", "no", 42);
	spate_slog(SPATE_LOG_ERROR, NULL, "no context %u", 7u);
	char **l;
	cr_assert_eq(lines(&l), 2);
	json_object *o = parse(l[0]);
	cr_assert_str_eq(jstr(o, "level"), "warn");
	cr_assert_str_eq(jstr(o, "msg"), "sink said \"no\" (42)\n\ttab \\ slash /");
	cr_assert_str_eq(jstr(o, "consumer"), "orders-count");
	cr_assert_str_eq(jstr(o, "stream"), "orders");
	cr_assert_eq(jint(o, "shard"), 3);
	cr_assert_eq(jint(o, "lane"), 1);
	cr_assert_eq(jint(o, "pid"), getpid());
	const char *ts = jstr(o, "ts");
	cr_assert_eq(strlen(ts), strlen("2026-11-27T02:10:11.123456Z"), "ts %s", ts);
	cr_assert_eq(ts[10], 'T');
	cr_assert_eq(ts[26], 'Z');
	json_object_put(o);
	o = parse(l[1]);
	cr_assert_str_eq(jstr(o, "level"), "error");
	cr_assert_str_eq(jstr(o, "msg"), "no context 7");
	cr_assert(!has(o, "consumer") && !has(o, "shard") && !has(o, "stream"));
	json_object_put(o);
}

Test(slog, text_lines)
{
	capture(SPATE_SLOG_TEXT, 0);
	struct spate_slog_ctx ctx = { "orders-count", "orders", 3, 0 };
	spate_slog(SPATE_LOG_WARN, &ctx, "hello %s %d", "x", 42);
	struct spate_slog_ctx only_stream = { NULL, "orders", -1, -1 };
	spate_slog(SPATE_LOG_INFO, &only_stream, "rolled");
	spate_slog(SPATE_LOG_ERROR, NULL, "bare");
	char **l;
	cr_assert_eq(lines(&l), 3);
	cr_assert_str_eq(l[0], "spate: warn: orders-count/3: hello x 42");
	cr_assert_str_eq(l[1], "spate: info: orders: rolled");
	cr_assert_str_eq(l[2], "spate: error: bare");
	cr_assert_eq(spate_slog_format(), SPATE_SLOG_TEXT);
	enum spate_slog_format f;
	cr_assert_eq(spate_slog_parse_format("json", &f), 0);
	cr_assert_eq(f, SPATE_SLOG_JSON);
	cr_assert_eq(spate_slog_parse_format("JSON", &f), -EINVAL);
	cr_assert_eq(spate_slog_set_fd(-1), -EBADF);
}

Test(slog, debug_needs_the_level)
{
	capture(SPATE_SLOG_TEXT, 0);
	spate_slog(SPATE_LOG_DEBUG, NULL, "hidden");
	spate_slog_set_level(SPATE_LOG_DEBUG);
	spate_slog(SPATE_LOG_DEBUG, NULL, "shown");
	char **l;
	cr_assert_eq(lines(&l), 1);
	cr_assert_str_eq(l[0], "spate: debug: shown");
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void flood(const struct spate_slog_ctx *ctx, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		spate_slog(SPATE_LOG_WARN, ctx, "flood %u", i); /* one call site */
}

Test(slog, rate_limit_suppresses_and_counts, .timeout = 30)
{
	capture(SPATE_SLOG_JSON, 5);
	struct spate_slog_ctx a = { "c", "s", 0, 0 }, b = { "c", "s", 1, 0 };
	uint64_t t0 = mono_ns();
	flood(&a, 1000);
	flood(&b, 3); /* same site, another shard: its own budget */
	spate_slog(SPATE_LOG_WARN, &a, "another site"); /* same shard, another site */
	uint64_t secs = (mono_ns() - t0) / 1000000000ull;
	cr_assert_geq(spate_slog_flush(), 1);
	cr_assert_eq(spate_slog_flush(), 0, "each count is reported once");
	char **l;
	unsigned n = lines(&l), passed_a = 0, passed_b = 0, reports = 0, other = 0;
	int64_t suppressed = 0;
	for (unsigned i = 0; i < n; i++) {
		json_object *o = parse(l[i]);
		const char *msg = jstr(o, "msg");
		if (has(o, "suppressed")) {
			reports++;
			suppressed += jint(o, "suppressed");
			cr_assert_str_eq(jstr(o, "site"), "flood %u");
			cr_assert_eq(jint(o, "shard"), 0);
			cr_assert_str_eq(jstr(o, "consumer"), "c");
			cr_assert(strstr(msg, "suppressed") && strstr(msg, "flood %u"), "%s", msg);
		} else if (!strcmp(msg, "another site")) {
			other++;
		} else if (jint(o, "shard") == 0) {
			passed_a++;
		} else {
			passed_b++;
		}
		json_object_put(o);
	}
	cr_log_info("%u lines passed, %lld suppressed in %u report(s), flood took %llu s", passed_a,
		    (long long)suppressed, reports, (unsigned long long)secs);
	cr_assert_eq(passed_a + (unsigned)suppressed, 1000u, "every message passed or counted");
	cr_assert_geq(passed_a, 5u);
	/* At most 5 a second: the flood spans secs + 1 windows at most, + 1. */
	cr_assert_leq(passed_a, 5u * ((unsigned)secs + 2u));
	cr_assert_geq(reports, 1u);
	cr_assert_eq(passed_b, 3u, "another shard is limited apart");
	cr_assert_eq(other, 1u, "another call site is limited apart");
}

Test(slog, unlimited_with_burst_zero)
{
	capture(SPATE_SLOG_TEXT, 0);
	flood(NULL, 200);
	cr_assert_eq(spate_slog_flush(), 0);
	char **l;
	cr_assert_eq(lines(&l), 200);
}

/* ------------------------------------------------------------------------ */
/* Through a real plugin                                                    */
/* ------------------------------------------------------------------------ */

Test(slog, plugin_logs_through_the_host, .timeout = 60)
{
	const char *env = getenv("SPATE_PLUGIN_PATH");
	char so[PATH_MAX], dir[] = "/tmp/spate-test-slog-XXXXXX", bus[64], err[512] = "";
	struct spate_config *cfg = NULL;
	struct spate_config_stream *s = NULL;
	struct spate_config_consumer *k = NULL;
	struct spate_engine *e = NULL;

	cr_assert(env && *env, "SPATE_PLUGIN_PATH is not set (tests/meson.build sets it)");
	snprintf(so, sizeof(so), "%.*s/file.so", (int)strcspn(env, ":"), env);
	cr_assert_eq(access(so, R_OK), 0, "%s: %s", so, strerror(errno));
	cr_assert_not_null(mkdtemp(dir));
	snprintf(bus, sizeof(bus), "slog%d", (int)getpid());
	capture(SPATE_SLOG_JSON, SPATE_SLOG_BURST);

	cr_assert_eq(spate_config_new_default(bus, &cfg), 0);
	snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s/state", dir);
	cr_assert_eq(spate_config_add_stream(cfg, "in", &s), 0);
	s->shards = 2;
	s->ring_size = 1u << 20;
	/* file.so refuses to start without its `path` option, and says so
	 * through host->log from init, per (consumer, shard). */
	cr_assert_eq(spate_config_add_consumer(cfg, "sink", "in", so, &k), 0);
	int rc = spate_engine_open(cfg, &e, err, sizeof(err));
	cr_assert_eq(rc, 0, "engine open: %d: %s", rc, err);
	cr_assert_lt(spate_engine_start(e), 0, "file.so started without a path");
	spate_engine_close(e);
	spate_stream_unlink(bus, "in");
	spate_config_free(cfg);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_expect_eq(system(cmd), 0);

	char **l;
	unsigned n = lines(&l), found = 0;
	for (unsigned i = 0; i < n; i++) {
		json_object *o = parse(l[i]);
		if (!strcmp(jstr(o, "msg"), "file: option path is required")) {
			cr_assert_str_eq(jstr(o, "level"), "error");
			cr_assert_str_eq(jstr(o, "consumer"), "sink");
			cr_assert_str_eq(jstr(o, "stream"), "in");
			int64_t shard = jint(o, "shard");
			cr_assert(shard == 0 || shard == 1, "shard %lld", (long long)shard);
			found++;
		}
		json_object_put(o);
	}
	cr_assert_geq(found, 1u, "the plugin's message is not in the log (%u lines)", n);
}
