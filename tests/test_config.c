/* SPDX-License-Identifier: MIT */
/* Tests for spate/config.h: YAML into structs, defaults, every error class
 * (with file, line and field in the message), configs built in C, the size,
 * duration and timestamp parsers, and the example files in docs/examples. */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spate/config.h"

#define KIB (1024ull)
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define MS 1000000ull
#define SEC 1000000000ull

static struct spate_config *parse_ok(const char *yaml)
{
	struct spate_config *c = NULL;
	char err[1024] = "";
	int r = spate_config_parse(yaml, strlen(yaml), "t.yaml", &c, err, sizeof(err));

	cr_assert_eq(r, 0, "parse failed (%d): %s", r, err);
	cr_assert_not_null(c);
	return c;
}

static void has(const char *err, const char *sub)
{
	cr_assert(strstr(err, sub) != NULL, "message \"%s\" lacks \"%s\"", err, sub);
}

/* The parse fails with -EINVAL and a message "t.yaml:<line>: <field>: ...<sub>...". */
static void parse_bad(const char *yaml, unsigned line, const char *field, const char *sub)
{
	struct spate_config *c = (struct spate_config *)1;
	char err[1024] = "", want[256];
	int r = spate_config_parse(yaml, strlen(yaml), "t.yaml", &c, err, sizeof(err));

	cr_assert_eq(r, -EINVAL, "expected -EINVAL, got %d (%s) for:\n%s", r, err, yaml);
	cr_assert_null(c);
	snprintf(want, sizeof(want), "t.yaml:%u: ", line);
	cr_assert(strncmp(err, want, strlen(want)) == 0, "message \"%s\" does not start with \"%s\"",
		  err, want);
	if (field) {
		snprintf(want, sizeof(want), "t.yaml:%u: %s: ", line, field);
		has(err, want);
	}
	if (sub)
		has(err, sub);
}

/* A minimal valid head: bus and one stream "s" (lines 1-3). */
#define HEAD "bus: b\nstreams:\n  - name: s\n"
/* HEAD plus a consumer c of s with the count plugin (lines 4-7). */
#define CONS HEAD "consumers:\n  - name: c\n    stream: s\n    plugin: count\n"

/* ------------------------------------------------------------------------ */
/* Round trip and defaults                                                  */
/* ------------------------------------------------------------------------ */

static const char full_yaml[] =
	"bus: full-bus_1\n"                                            /* 1 */
	"state_dir: /srv/spate/full\n"                                 /* 2 */
	"streams:\n"                                                   /* 3 */
	"  - name: orders\n"                                           /* 4 */
	"    shards: 16\n"                                             /* 5 */
	"    ring_size: 64MiB\n"                                       /* 6 */
	"    max_record_size: 10MiB\n"                                 /* 7 */
	"    producers: single\n"                                      /* 8 */
	"    huge_pages: require\n"                                    /* 9 */
	"    retention: 7d\n"                                          /* 10 */
	"    full: fail\n"                                             /* 11 */
	"  - name: failed\n"                                           /* 12 */
	"    huge_pages: off\n"                                        /* 13 */
	"consumers:\n"                                                 /* 14 */
	"  - name: ship\n"                                             /* 15 */
	"    stream: orders\n"                                         /* 16 */
	"    plugin: /opt/spate/plugins/ship.so\n"                     /* 17 */
	"    options:\n"                                               /* 18 */
	"      url: \"http://x:8080/p?q=1\"\n"                         /* 19 */
	"      retries: 5\n"                                           /* 20 */
	"      empty:\n"                                               /* 21 */
	"    batch_size: 100000\n"                                     /* 22 */
	"    batch_bytes: 64MB\n"                                      /* 23 */
	"    batch_window: 250ms\n"                                    /* 24 */
	"    starting_position: at_timestamp\n"                        /* 25 */
	"    starting_timestamp: 2026-11-27T10:00:00.123456789+01:00\n" /* 26 */
	"    max_retry_attempts: 10000\n"                              /* 27 */
	"    retry_backoff: 500us\n"                                   /* 28 */
	"    retry_backoff_max: 1m\n"                                  /* 29 */
	"    bisect_on_error: yes\n"                                   /* 30 */
	"    max_record_age: 1h30m\n"                                  /* 31 */
	"    on_failure: failed\n"                                     /* 32 */
	"    parallelization: 64\n"                                    /* 33 */
	"    concurrency: 8\n"                                         /* 34 */
	"    wait: busy\n"                                             /* 35 */
	"    checkpoint_interval: 2s\n"                                /* 36 */
	"    enabled: off\n"                                           /* 37 */
	"  - name: seq\n"                                              /* 38 */
	"    stream: failed\n"
	"    plugin: count\n"
	"    starting_position: after_sequence\n"
	"    starting_sequence: 18446744073709551615\n"
	"    wait: yield\n"
	"    max_record_age: -1\n"
	"    max_retry_attempts: -1\n"
	"  - name: at\n"
	"    stream: failed\n"
	"    plugin: my_plugin_2\n"
	"    starting_position: AT_SEQUENCE\n"
	"    starting_sequence: 0\n"
	"    starting_timestamp_unused_guard: 1\n";

static uint64_t utc_ns(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
			 .tm_min = mi, .tm_sec = s };

	return (uint64_t)timegm(&tm) * SEC;
}

Test(config, full_round_trip)
{
	/* Drop the guard line: it exists to check the unknown key below. */
	char yaml[sizeof(full_yaml)];
	struct spate_config *c;
	char err[512];

	memcpy(yaml, full_yaml, sizeof(full_yaml));
	*strstr(yaml, "    starting_timestamp_unused_guard") = '\0';
	c = parse_ok(yaml);

	cr_assert_str_eq(c->bus, "full-bus_1");
	cr_assert_str_eq(c->state_dir, "/srv/spate/full");
	cr_assert_str_eq(c->source, "t.yaml");
	cr_assert_eq(c->n_streams, 2);
	cr_assert_eq(c->n_consumers, 3);

	const struct spate_config_stream *s = &c->streams[0];
	cr_assert_str_eq(s->name, "orders");
	cr_assert_eq(s->shards, 16);
	cr_assert_eq(s->ring_size, 64 * MIB);
	cr_assert_eq(s->max_record_size, 10 * MIB);
	cr_assert_eq(s->producers, SPATE_CONFIG_PRODUCERS_SINGLE);
	cr_assert_eq(s->huge_pages, SPATE_CONFIG_HUGE_REQUIRE);
	cr_assert_eq(s->retention_ns, 7 * 86400 * SEC);
	cr_assert_eq(s->full, SPATE_CONFIG_FULL_FAIL);
	cr_assert_eq(s->line, 4);
	s = &c->streams[1];
	cr_assert_str_eq(s->name, "failed");
	cr_assert_eq(s->huge_pages, SPATE_CONFIG_HUGE_OFF);
	cr_assert_eq(s->line, 12);

	const struct spate_config_consumer *k = &c->consumers[0];
	cr_assert_str_eq(k->name, "ship");
	cr_assert_str_eq(k->stream, "orders");
	cr_assert_str_eq(k->plugin, "/opt/spate/plugins/ship.so");
	cr_assert_eq(k->n_options, 3);
	cr_assert_str_eq(k->options[0].key, "url");
	cr_assert_str_eq(k->options[0].value, "http://x:8080/p?q=1");
	cr_assert_str_eq(k->options[1].key, "retries");
	cr_assert_str_eq(k->options[1].value, "5");
	cr_assert_str_eq(k->options[2].key, "empty");
	cr_assert_str_eq(k->options[2].value, "");
	cr_assert_str_eq(spate_config_consumer_option(k, "retries", "x"), "5");
	cr_assert_str_eq(spate_config_consumer_option(k, "nope", "dflt"), "dflt");
	cr_assert_eq(k->batch_size, 100000);
	cr_assert_eq(k->batch_bytes, 64000000ull);
	cr_assert_eq(k->batch_window_ns, 250 * MS);
	cr_assert_eq(k->starting_position, SPATE_CONFIG_START_AT_TIMESTAMP);
	cr_assert_eq(k->starting_timestamp_ns, utc_ns(2026, 11, 27, 9, 0, 0) + 123456789ull);
	cr_assert_eq(k->max_retry_attempts, 10000);
	cr_assert_eq(k->retry_backoff_ns, 500000ull);
	cr_assert_eq(k->retry_backoff_max_ns, 60 * SEC);
	cr_assert_eq(k->bisect_on_error, true);
	cr_assert_eq(k->max_record_age_ns, 5400 * SEC);
	cr_assert_str_eq(k->on_failure, "failed");
	cr_assert_eq(k->parallelization, 64);
	cr_assert_eq(k->concurrency, 8);
	cr_assert_eq(k->wait, SPATE_RING_WAIT_BUSY);
	cr_assert_eq(k->checkpoint_interval_ns, 2 * SEC);
	cr_assert_eq(k->enabled, false);
	cr_assert_eq(k->line, 15);

	k = &c->consumers[1];
	cr_assert_str_eq(k->name, "seq");
	cr_assert_eq(k->starting_position, SPATE_CONFIG_START_AFTER_SEQUENCE);
	cr_assert_eq(k->starting_sequence, UINT64_MAX);
	cr_assert_eq(k->wait, SPATE_RING_WAIT_YIELD);
	cr_assert_eq(k->max_record_age_ns, SPATE_CONFIG_NEVER);
	cr_assert_eq(k->max_retry_attempts, SPATE_CONFIG_RETRY_FOREVER);
	cr_assert_eq(k->n_options, 0);
	cr_assert_null(k->options);
	cr_assert_eq(k->concurrency, 1, "shards 1 x parallelization 1");
	cr_assert_eq(k->line, 38);

	k = &c->consumers[2];
	cr_assert_str_eq(k->plugin, "my_plugin_2");
	cr_assert_eq(k->starting_position, SPATE_CONFIG_START_AT_SEQUENCE, "case ignored");
	cr_assert_eq(k->starting_sequence, 0);

	cr_assert_eq(c->placement.n_cores, 0);
	cr_assert_null(c->placement.cores);
	cr_assert_eq(c->placement.busy_threads_max, 0, "no cores: decided at run time");

	/* Lookups. */
	cr_assert_eq(spate_config_find_stream(c, "failed"), &c->streams[1]);
	cr_assert_null(spate_config_find_stream(c, "fail"));
	cr_assert_null(spate_config_find_stream(c, NULL));
	cr_assert_eq(spate_config_find_consumer(c, "seq"), &c->consumers[1]);
	cr_assert_null(spate_config_find_consumer(c, "orders"));

	/* What was parsed validates again. */
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), 0, "%s", err);
	spate_config_free(c);

	/* With the guard line: an unknown key in the third consumer, line 51. */
	parse_bad(full_yaml, 51, "consumers[2].starting_timestamp_unused_guard", "unknown key");
}

Test(config, defaults)
{
	struct spate_config *c = parse_ok(CONS);
	const struct spate_config_stream *s = &c->streams[0];
	const struct spate_config_consumer *k = &c->consumers[0];

	cr_assert_str_eq(c->bus, "b");
	cr_assert_str_eq(c->state_dir, "/var/lib/spate/b");
	cr_assert_eq(c->placement.n_cores, 0);
	cr_assert_eq(c->placement.busy_threads_max, 0);

	cr_assert_eq(s->shards, 1);
	cr_assert_eq(s->ring_size, 4 * MIB);
	cr_assert_eq(s->max_record_size, 1 * MIB);
	cr_assert_eq(s->producers, SPATE_CONFIG_PRODUCERS_MULTI);
	cr_assert_eq(s->huge_pages, SPATE_CONFIG_HUGE_AUTO);
	cr_assert_eq(s->retention_ns, 24 * 3600 * SEC);
	cr_assert_eq(s->full, SPATE_CONFIG_FULL_WAIT);
	cr_assert_eq(s->line, 3);

	cr_assert_str_eq(k->plugin, "count");
	cr_assert_eq(k->n_options, 0);
	cr_assert_eq(k->batch_size, 100);
	cr_assert_eq(k->batch_bytes, 6 * MIB);
	cr_assert_eq(k->batch_window_ns, 0);
	cr_assert_eq(k->starting_position, SPATE_CONFIG_START_LATEST);
	cr_assert_eq(k->max_retry_attempts, -1);
	cr_assert_eq(k->retry_backoff_ns, 1 * MS);
	cr_assert_eq(k->retry_backoff_max_ns, 1 * SEC);
	cr_assert_eq(k->bisect_on_error, false);
	cr_assert_eq(k->max_record_age_ns, SPATE_CONFIG_NEVER);
	cr_assert_str_eq(k->on_failure, "");
	cr_assert_eq(k->parallelization, 1);
	cr_assert_eq(k->concurrency, 1);
	cr_assert_eq(k->wait, SPATE_RING_WAIT_BLOCK);
	cr_assert_eq(k->checkpoint_interval_ns, 0);
	cr_assert_eq(k->enabled, true);
	cr_assert_eq(k->line, 5);
	spate_config_free(c);
}

Test(config, derived_values)
{
	/* max_record_size follows a small ring; concurrency is shards x
	 * parallelization, capped; busy_threads_max is the number of cores. */
	struct spate_config *c = parse_ok("bus: b\n"
					  "streams:\n"
					  "  - name: small\n"
					  "    ring_size: 64KiB\n"
					  "  - name: wide\n"
					  "    shards: 1024\n"
					  "consumers:\n"
					  "  - name: c\n"
					  "    stream: wide\n"
					  "    plugin: count\n"
					  "    parallelization: 3\n"
					  "  - name: d\n"
					  "    stream: small\n"
					  "    plugin: count\n"
					  "    parallelization: 5\n"
					  "placement:\n"
					  "  cores: [0, 2-4, \"7\"]\n");

	cr_assert_eq(c->streams[0].max_record_size, 32 * KIB - 48);
	cr_assert_eq(c->streams[1].max_record_size, 1 * MIB);
	cr_assert_eq(c->consumers[0].concurrency, SPATE_CONFIG_MAX_CONCURRENCY);
	cr_assert_eq(c->consumers[1].concurrency, 5);
	cr_assert_eq(c->placement.n_cores, 5);
	uint32_t want[] = { 0, 2, 3, 4, 7 };
	for (int i = 0; i < 5; i++)
		cr_assert_eq(c->placement.cores[i], want[i]);
	cr_assert_eq(c->placement.busy_threads_max, 5);
	spate_config_free(c);

	c = parse_ok(HEAD "placement:\n  cores: 0-1,6\n  busy_threads_max: 2\n");
	cr_assert_eq(c->placement.n_cores, 3);
	cr_assert_eq(c->placement.cores[2], 6);
	cr_assert_eq(c->placement.busy_threads_max, 2);
	spate_config_free(c);
}

Test(config, null_and_empty_optionals)
{
	struct spate_config *c = parse_ok(HEAD "consumers:\nplacement: ~\n");

	cr_assert_eq(c->n_consumers, 0);
	cr_assert_null(c->consumers);
	spate_config_free(c);
	c = parse_ok(HEAD "consumers: []\n");
	cr_assert_eq(c->n_consumers, 0);
	spate_config_free(c);
	c = parse_ok(CONS "    options: {}\n    on_failure: null\n");
	cr_assert_eq(c->consumers[0].n_options, 0);
	cr_assert_str_eq(c->consumers[0].on_failure, "");
	spate_config_free(c);
}

Test(config, booleans_and_scalars)
{
	static const char *const t[] = { "true", "yes", "on", "True", "YES", "On" };
	static const char *const f[] = { "false", "no", "off", "False", "NO", "Off" };
	char yaml[512];

	for (int i = 0; i < 6; i++) {
		snprintf(yaml, sizeof(yaml), CONS "    bisect_on_error: %s\n    enabled: %s\n", t[i],
			 f[i]);
		struct spate_config *c = parse_ok(yaml);
		cr_assert_eq(c->consumers[0].bisect_on_error, true, "%s", t[i]);
		cr_assert_eq(c->consumers[0].enabled, false, "%s", f[i]);
		spate_config_free(c);
	}
	/* Quoted numbers are read as numbers; plain numbers as names. */
	struct spate_config *c = parse_ok("bus: 123\nstreams:\n  - name: 2024\n    shards: \"4\"\n");
	cr_assert_str_eq(c->bus, "123");
	cr_assert_str_eq(c->streams[0].name, "2024");
	cr_assert_eq(c->streams[0].shards, 4);
	spate_config_free(c);
	/* Anchors and aliases work. */
	c = parse_ok("bus: b\n"
		     "streams:\n"
		     "  - &base\n"
		     "    name: s\n"
		     "    shards: 2\n"
		     "consumers:\n"
		     "  - name: c\n"
		     "    stream: s\n"
		     "    plugin: count\n"
		     "    options: &opts {a: 1}\n"
		     "  - name: d\n"
		     "    stream: s\n"
		     "    plugin: count\n"
		     "    options: *opts\n");
	cr_assert_str_eq(spate_config_consumer_option(&c->consumers[1], "a", ""), "1");
	spate_config_free(c);

	parse_bad(CONS "    enabled: maybe\n", 8, "consumers[0].enabled",
		  "expected a boolean (true/false, yes/no, on/off), got \"maybe\"");
}

/* ------------------------------------------------------------------------ */
/* Error classes                                                            */
/* ------------------------------------------------------------------------ */

Test(config, yaml_syntax_error)
{
	parse_bad("bus: b\nstreams:\n  - name: a\n   shards: 2\n", 4, NULL, "YAML syntax error");
	parse_bad("bus: b\nstreams:\n  - name: a\n    shards: *nope\n", 4, NULL, "undefined alias");
	parse_bad("bus: b\nstreams:\n  - name: a\n    shards: \xff\n", 4, NULL, "UTF-8");
	parse_bad("bus: b\nstreams: [a, b\n", 3, NULL, "while parsing a flow sequence at line 2");
	parse_bad("bus: b\nstreams:\n  - name: a\n---\nbus: c\n", 4, NULL, "second YAML document");
}

Test(config, empty_file)
{
	parse_bad("", 1, NULL, "empty configuration");
	parse_bad("# only a comment\n\n", 1, NULL, "empty configuration");

	char path[] = "/tmp/spate-test-config-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	struct spate_config *c = (struct spate_config *)1;
	char err[512];
	int r = spate_config_load(path, &c, err, sizeof(err));
	unlink(path);
	cr_assert_eq(r, -EINVAL);
	cr_assert_null(c);
	has(err, path);
	has(err, ":1: empty configuration");
}

Test(config, file_errors)
{
	struct spate_config *c = (struct spate_config *)1;
	char err[512];
	int r = spate_config_load("/nonexistent/spate/bus.yaml", &c, err, sizeof(err));

	cr_assert_eq(r, -ENOENT);
	cr_assert_null(c);
	has(err, "/nonexistent/spate/bus.yaml: cannot open");
	r = spate_config_load("/tmp", &c, err, sizeof(err));
	cr_assert_eq(r, -EISDIR);
	has(err, "/tmp: is a directory");
	cr_assert_eq(spate_config_load(NULL, &c, err, sizeof(err)), -EINVAL);
	cr_assert_eq(spate_config_load("x", NULL, NULL, 0), -EINVAL);
	cr_assert_eq(spate_config_parse("bus: b", 6, NULL, NULL, NULL, 0), -EINVAL);

	if (geteuid() != 0) {
		char path[] = "/tmp/spate-test-config-XXXXXX";
		int fd = mkstemp(path);
		cr_assert_geq(fd, 0);
		close(fd);
		chmod(path, 0);
		r = spate_config_load(path, &c, err, sizeof(err));
		unlink(path);
		cr_assert_eq(r, -EACCES);
		has(err, "cannot open: Permission denied");
	}
}

Test(config, unknown_keys)
{
	/* top level: nothing close, so the valid keys are listed */
	parse_bad(HEAD "colour: blue\n", 4, "colour",
		  "unknown key; valid keys: bus, state_dir, streams, consumers, placement");
	parse_bad("bus: b\nstream:\n  - name: s\n", 2, "stream", "did you mean \"streams\"?");
	/* stream */
	parse_bad(HEAD "    shard: 2\n", 4, "streams[0].shard", "did you mean \"shards\"?");
	parse_bad(HEAD "    colour: 2\n", 4, "streams[0].colour",
		  "valid keys: name, shards, ring_size, max_record_size, producers, huge_pages, "
		  "retention, full, durability, durability_interval, segment_size, "
		  "retention_bytes, log_dir, direct_io");
	/* consumer */
	parse_bad(CONS "    batchSize: 10\n", 8, "consumers[0].batchSize",
		  "did you mean \"batch_size\"?");
	parse_bad(CONS "    on-failure: s\n", 8, "consumers[0].on-failure",
		  "did you mean \"on_failure\"?");
	parse_bad(CONS "    xyzzy: 1\n", 8, "consumers[0].xyzzy", "valid keys: name, stream, plugin");
	/* placement */
	parse_bad(HEAD "placement:\n  core: [1]\n", 5, "placement.core", "did you mean \"cores\"?");
	parse_bad(HEAD "placement:\n  persist_threads: 0\n", 5, "placement.persist_threads",
		  "expected an integer from 1 to 64");
	/* a duplicated key */
	parse_bad(HEAD "    shards: 2\n    shards: 3\n", 5, "streams[0].shards",
		  "duplicate key (first at line 4)");
	/* a key that is not a scalar */
	parse_bad(HEAD "    [a]: 1\n", 4, "streams[0]", "expected a key, got a list");
}

Test(config, wrong_types)
{
	parse_bad("- bus: b\n", 1, NULL, "expected a mapping with keys bus, streams");
	parse_bad("bus: b\nstreams: orders\n", 2, "streams",
		  "expected a list of streams (at least one), got \"orders\"");
	parse_bad("bus: b\nstreams: []\n", 2, "streams", "got an empty list");
	parse_bad("bus: b\nstreams:\n  - orders\n", 3, "streams[0]",
		  "expected a stream (a mapping with keys name, shards");
	parse_bad(HEAD "    shards: [1, 2]\n", 4, "streams[0].shards",
		  "expected an integer from 1 to 1024, got a list");
	parse_bad(HEAD "    shards:\n", 4, "streams[0].shards", "got nothing");
	parse_bad("bus: {a: b}\nstreams:\n  - name: s\n", 1, "bus", "got a mapping");
	parse_bad(CONS "    options: [a, b]\n", 8, "consumers[0].options",
		  "expected a mapping of option names to scalar values, got a list");
	parse_bad(CONS "    options:\n      a: [1]\n", 9, "consumers[0].options.a",
		  "expected a scalar value");
	parse_bad(CONS "    options:\n      a: 1\n      a: 2\n", 10, "consumers[0].options.a",
		  "duplicate key");
	parse_bad(HEAD "placement: [1]\n", 4, "placement",
		  "expected a mapping with keys cores, busy_threads_max, persist_threads, got a list");
	parse_bad(HEAD "    producers: many\n", 4, "streams[0].producers",
		  "expected one of multi, single, got \"many\"");
	parse_bad(HEAD "    huge_pages: yes\n", 4, "streams[0].huge_pages",
		  "expected one of auto, require, off");
	parse_bad(HEAD "    full: block\n", 4, "streams[0].full", "expected one of wait, fail");
	parse_bad(CONS "    wait: spin\n", 8, "consumers[0].wait",
		  "expected one of busy, yield, block");
	parse_bad(CONS "    starting_position: oldest\n", 8, "consumers[0].starting_position",
		  "expected one of trim_horizon, latest, at_sequence, after_sequence, at_timestamp");
}

Test(config, bad_names)
{
	parse_bad("bus: my bus\nstreams:\n  - name: s\n", 1, "bus",
		  "expected a name of 1 to 40 characters from A-Z a-z 0-9 _ -, got \"my bus\"");
	parse_bad("bus: b\nstreams:\n  - name: a.b\n", 3, "streams[0].name", "got \"a.b\"");
	parse_bad("bus: b\nstreams:\n  - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 3,
		  "streams[0].name", "1 to 40 characters");
	parse_bad("bus: b\nstreams:\n  - name: ''\n", 3, "streams[0].name", "got \"\"");
	parse_bad(CONS "    name: c2\n", 8, "consumers[0].name", "duplicate key");
	parse_bad("bus: b\nstate_dir: var/lib\nstreams:\n  - name: s\n", 2, "state_dir",
		  "expected an absolute path");
	/* plugin: bundled name or .so path */
	parse_bad("bus: b\nstreams:\n  - name: s\nconsumers:\n  - name: c\n    stream: s\n"
		  "    plugin: Count\n",
		  7, "consumers[0].plugin", "a bundled plugin name");
	parse_bad("bus: b\nstreams:\n  - name: s\nconsumers:\n  - name: c\n    stream: s\n"
		  "    plugin: ./lib/count.dylib\n",
		  7, "consumers[0].plugin", "got \"./lib/count.dylib\"");
	/* bus.stream must fit a shared-memory name (63) */
	parse_bad("bus: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\nstreams:\n  - name: s\n  - name: "
		  "ssssssssssssssssssssssss\n",
		  4, "streams[1].name", "is 65 characters; at most 63");
}

Test(config, out_of_range)
{
	parse_bad(HEAD "    shards: 0\n", 4, "streams[0].shards",
		  "expected an integer from 1 to 1024, got \"0\"");
	parse_bad(HEAD "    shards: 1025\n", 4, "streams[0].shards", "got \"1025\"");
	parse_bad(HEAD "    shards: -1\n", 4, "streams[0].shards", "got \"-1\"");
	parse_bad(HEAD "    shards: 4x\n", 4, "streams[0].shards", "got \"4x\"");
	parse_bad(HEAD "    shards: 0x10\n", 4, "streams[0].shards", "got \"0x10\"");
	parse_bad(HEAD "    shards: 99999999999999999999999\n", 4, "streams[0].shards",
		  "an integer from 1 to 1024");
	parse_bad(CONS "    batch_size: lots\n", 8, "consumers[0].batch_size",
		  "expected an integer from 1 to 100000, got \"lots\"");
	parse_bad(CONS "    batch_size: 100001\n", 8, "consumers[0].batch_size", "got \"100001\"");
	parse_bad(CONS "    batch_bytes: 0\n", 8, "consumers[0].batch_bytes",
		  "expected a size of at least 1 byte");
	parse_bad(CONS "    batch_window: 301s\n", 8, "consumers[0].batch_window",
		  "expected a duration from 0 to 5m");
	parse_bad(CONS "    parallelization: 65\n", 8, "consumers[0].parallelization",
		  "expected an integer from 1 to 64");
	parse_bad(CONS "    concurrency: 0\n", 8, "consumers[0].concurrency",
		  "expected an integer from 1 to 1024, got \"0\"");
	parse_bad(CONS "    concurrency: 1025\n", 8, "consumers[0].concurrency", "got \"1025\"");
	parse_bad(CONS "    max_retry_attempts: -2\n", 8, "consumers[0].max_retry_attempts",
		  "expected -1 (retry until the record expires) or an integer from 0 to 10000");
	parse_bad(CONS "    max_retry_attempts: 10001\n", 8, "consumers[0].max_retry_attempts",
		  "got \"10001\"");
	parse_bad(CONS "    max_record_age: 999us\n", 8, "consumers[0].max_record_age",
		  "expected -1 (never) or a duration of at least 1ms");
	parse_bad(CONS "    starting_position: at_sequence\n    starting_sequence: -1\n", 9,
		  "consumers[0].starting_sequence", "expected a non-negative integer");
	parse_bad(CONS "    starting_position: at_sequence\n    starting_sequence: "
		       "18446744073709551616\n",
		  9, "consumers[0].starting_sequence", "got \"18446744073709551616\"");
	parse_bad(CONS "    retry_backoff: 2s\n", 8, "consumers[0].retry_backoff",
		  "2s is above retry_backoff_max 1s");
	parse_bad(HEAD "    retention: 0\n", 4, "streams[0].retention",
		  "a duration of at least 1ms");
	parse_bad(HEAD "placement:\n  cores: [0, 4096]\n", 5, "placement.cores[1]",
		  "expected a list of CPU numbers from 0 to 4095");
	parse_bad(HEAD "placement:\n  cores: [0, 3-1]\n", 5, "placement.cores[1]", "got \"3-1\"");
	parse_bad(HEAD "placement:\n  cores: [0-3, 2]\n", 5, "placement.cores[1]",
		  "CPU 2 is listed twice");
	parse_bad(HEAD "placement:\n  cores: [0, 1]\n  busy_threads_max: 3\n", 6,
		  "placement.busy_threads_max", "expected an integer from 1 to 2");
	parse_bad(HEAD "placement:\n  busy_threads_max: 0\n", 5, "placement.busy_threads_max",
		  "got \"0\"");
}

Test(config, bad_sizes)
{
	parse_bad(HEAD "    ring_size: 4XB\n", 4, "streams[0].ring_size",
		  "expected a power-of-two size from 64KiB to 1GiB (like 4MiB), got \"4XB\"");
	parse_bad(HEAD "    ring_size: 1.5MiB\n", 4, "streams[0].ring_size", "got \"1.5MiB\"");
	parse_bad(HEAD "    ring_size: MiB\n", 4, "streams[0].ring_size", "got \"MiB\"");
	parse_bad(HEAD "    ring_size: -4MiB\n", 4, "streams[0].ring_size", "got \"-4MiB\"");
	parse_bad(HEAD "    ring_size: 4  MiB\n", 4, "streams[0].ring_size", "got \"4  MiB\"");
	parse_bad(HEAD "    ring_size: 32KiB\n", 4, "streams[0].ring_size", "got \"32KiB\"");
	parse_bad(HEAD "    ring_size: 2GiB\n", 4, "streams[0].ring_size", "got \"2GiB\"");
	parse_bad(CONS "    batch_bytes: 99999999999TiB\n", 8, "consumers[0].batch_bytes",
		  "got \"99999999999TiB\"");
}

Test(config, ring_size_not_power_of_two)
{
	parse_bad(HEAD "    ring_size: 3MiB\n", 4, "streams[0].ring_size",
		  "expected a power-of-two size from 64KiB to 1GiB (like 4MiB), got \"3MiB\"");
	parse_bad(HEAD "    ring_size: 4MB\n", 4, "streams[0].ring_size", "got \"4MB\"");
	parse_bad(HEAD "    ring_size: 100000\n", 4, "streams[0].ring_size", "got \"100000\"");
}

Test(config, max_record_size_too_large)
{
	parse_bad(HEAD "    ring_size: 64KiB\n    max_record_size: 1MiB\n", 5,
		  "streams[0].max_record_size",
		  "1MiB does not fit streams[0].ring_size 64KiB: expected at most ring_size/2 - 48 "
		  "= 32720 bytes");
	/* The key order does not matter; the line is max_record_size's. */
	parse_bad(HEAD "    max_record_size: 3MiB\n    ring_size: 4MiB\n", 4,
		  "streams[0].max_record_size", "ring_size 4MiB");
	/* The largest that fits is fine. */
	struct spate_config *c = parse_ok(HEAD "    ring_size: 64KiB\n    max_record_size: 32720\n");
	cr_assert_eq(c->streams[0].max_record_size, 32720);
	spate_config_free(c);
	parse_bad(HEAD "    max_record_size: 0\n", 4, "streams[0].max_record_size",
		  "expected a size from 1 byte to ring_size/2 - 48 bytes");
}

Test(config, bad_durations)
{
	parse_bad(CONS "    batch_window: 10\n", 8, "consumers[0].batch_window",
		  "expected a duration from 0 to 5m (like 0, 500us, 10ms, 2s, 1m, 1h, 7d), got \"10\"");
	parse_bad(CONS "    batch_window: 1.5s\n", 8, "consumers[0].batch_window", "got \"1.5s\"");
	parse_bad(CONS "    batch_window: 5 ms\n", 8, "consumers[0].batch_window", "got \"5 ms\"");
	parse_bad(CONS "    batch_window: 5sec\n", 8, "consumers[0].batch_window", "got \"5sec\"");
	parse_bad(CONS "    batch_window: -1\n", 8, "consumers[0].batch_window", "got \"-1\"");
	parse_bad(CONS "    checkpoint_interval: soon\n", 8, "consumers[0].checkpoint_interval",
		  "expected a duration (like 0");
	parse_bad(CONS "    retry_backoff_max: 1h1\n", 8, "consumers[0].retry_backoff_max",
		  "got \"1h1\"");
}

Test(config, missing_required)
{
	parse_bad("streams:\n  - name: s\n", 1, "bus", "missing; expected a name");
	parse_bad("bus: b\n", 1, "streams", "missing; expected a list of streams");
	parse_bad("bus: b\nstreams:\n  - shards: 2\n", 3, "streams[0].name", "missing");
	parse_bad(HEAD "consumers:\n  - name: c\n    plugin: count\n", 5, "consumers[0].stream",
		  "missing; expected a stream name");
	parse_bad(HEAD "consumers:\n  - name: c\n    stream: s\n", 5, "consumers[0]",
		  "expected a plugin (plugin: a bundled name or a path to a .so) or a function");
	parse_bad(HEAD "consumers:\n  - stream: s\n    plugin: count\n", 5, "consumers[0].name",
		  "missing");
}

Test(config, duplicate_names)
{
	parse_bad("bus: b\nstreams:\n  - name: s\n  - name: t\n  - name: s\n", 5, "streams[2].name",
		  "duplicate stream name \"s\" (streams[0], line 3)");
	parse_bad(CONS "  - name: c\n    stream: s\n    plugin: count\n", 8, "consumers[1].name",
		  "duplicate consumer name \"c\" (consumers[0], line 5)");
	/* a consumer may share a stream's name */
	struct spate_config *c = parse_ok(HEAD "consumers:\n  - name: s\n    stream: s\n"
					       "    plugin: count\n");
	spate_config_free(c);
}

Test(config, stream_references)
{
	parse_bad(HEAD "  - name: orders\nconsumers:\n  - name: c\n    plugin: count\n"
		       "    stream: ordrs\n",
		  8, "consumers[0].stream", "no stream named \"ordrs\"; did you mean \"orders\"?");
	parse_bad(HEAD "  - name: orders\nconsumers:\n  - name: c\n    plugin: count\n"
		       "    stream: zzz\n",
		  8, "consumers[0].stream", "no stream named \"zzz\"; streams: s, orders");
	parse_bad(CONS "    on_failure: dlq\n", 8, "consumers[0].on_failure",
		  "no stream named \"dlq\"");
	parse_bad(CONS "    on_failure: s\n", 8, "consumers[0].on_failure",
		  "\"s\" is the stream the consumer reads; failed records must go to another stream");
}

Test(config, starting_positions)
{
	/* sequence: required with at/after_sequence, refused otherwise */
	parse_bad(CONS "    starting_position: at_sequence\n", 8, "consumers[0].starting_sequence",
		  "missing; required with starting_position at_sequence");
	parse_bad(CONS "    starting_position: after_sequence\n", 8,
		  "consumers[0].starting_sequence", "after_sequence");
	parse_bad(CONS "    starting_sequence: 5\n", 8, "consumers[0].starting_sequence",
		  "only allowed with starting_position at_sequence or after_sequence, not latest");
	parse_bad(CONS "    starting_sequence: 5\n    starting_position: trim_horizon\n", 8,
		  "consumers[0].starting_sequence", "not trim_horizon");
	/* timestamp */
	parse_bad(CONS "    starting_position: at_timestamp\n", 8, "consumers[0].starting_timestamp",
		  "missing; required with starting_position at_timestamp");
	parse_bad(CONS "    starting_timestamp: 2026-01-01T00:00:00Z\n", 8,
		  "consumers[0].starting_timestamp",
		  "only allowed with starting_position at_timestamp, not latest");
	parse_bad(CONS "    starting_position: at_sequence\n    starting_sequence: 1\n"
		       "    starting_timestamp: 1\n",
		  10, "consumers[0].starting_timestamp", "not at_sequence");

	struct spate_config *c = parse_ok(CONS "    starting_position: at_timestamp\n"
					       "    starting_timestamp: 1700000000000000000\n");
	cr_assert_eq(c->consumers[0].starting_timestamp_ns, 1700000000000000000ull);
	spate_config_free(c);
}

Test(config, bad_timestamps)
{
	static const char *const bad[] = {
		"2026-13-01T00:00:00Z",  "2026-02-29T00:00:00Z",   "2026-11-27T10:00:00",
		"2026-11-27 10:00",      "2026-11-27T24:00:00Z",   "2026-11-27T10:00:00.Z",
		"2026-11-27T10:00:00.1234567890Z", "1969-12-31T23:59:59Z", "tomorrow",
		"2026-11-27T10:00:00+1:00", "2026-11-27T10:00:60Z", "-5",
	};
	char yaml[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(yaml, sizeof(yaml),
			 CONS "    starting_position: at_timestamp\n    starting_timestamp: \"%s\"\n",
			 bad[i]);
		parse_bad(yaml, 9, "consumers[0].starting_timestamp",
			  "expected an RFC 3339 timestamp like 2026-11-27T10:00:00Z");
	}
}

Test(config, consumers_per_stream)
{
	size_t cap = 64 * 1024, pos = 0;
	char *yaml = malloc(cap);

	cr_assert_not_null(yaml);
	pos += (size_t)snprintf(yaml + pos, cap - pos, HEAD "consumers:\n");
	for (int i = 0; i < 65; i++)
		pos += (size_t)snprintf(yaml + pos, cap - pos,
					"  - name: c%d\n    stream: s\n    plugin: count\n", i);
	/* consumer 64 starts at line 5 + 64 * 3 = 197; its stream is line 198 */
	parse_bad(yaml, 198, "consumers[64].stream", "already has 64 consumers");
	free(yaml);
}

/* ------------------------------------------------------------------------ */
/* Value parsers                                                            */
/* ------------------------------------------------------------------------ */

Test(config, parse_size)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },           { "65536", 65536 },      { "64KiB", 64 * KIB },
		{ "16MiB", 16 * MIB }, { "1GiB", GIB },         { "2TiB", 2048 * GIB },
		{ "64KB", 64000 },    { "6MB", 6000000 },      { "1GB", 1000000000 },
		{ "1TB", 1000000000000ull }, { "64 KiB", 64 * KIB }, { "64kib", 64 * KIB },
		{ "12B", 12 },        { "18446744073709551615", UINT64_MAX },
	};
	static const char *const bad[] = { "", "KiB", "1.5MiB", "-1", "+1", "1 ", "1  KiB",
					   "1KiBs", "1K", "1Mi", "0x10", " 1" };
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_assert_eq(spate_config_parse_size(ok[i].s, &v), 0, "%s", ok[i].s);
		cr_assert_eq(v, ok[i].v, "%s", ok[i].s);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(spate_config_parse_size(bad[i], &v), -EINVAL, "%s", bad[i]);
	cr_assert_eq(spate_config_parse_size("18446744073709551616", &v), -ERANGE);
	cr_assert_eq(spate_config_parse_size("17179869184GiB", &v), -ERANGE);
	cr_assert_eq(spate_config_parse_size(NULL, &v), -EINVAL);
}

Test(config, parse_duration)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },          { "00", 0 },            { "0s", 0 },
		{ "17ns", 17 },      { "500us", 500000 },    { "500\xc2\xb5s", 500000 },
		{ "10ms", 10 * MS }, { "2s", 2 * SEC },      { "1m", 60 * SEC },
		{ "1h", 3600 * SEC }, { "7d", 7 * 86400 * SEC }, { "1h30m", 5400 * SEC },
		{ "1m30s500ms", 90 * SEC + 500 * MS },
	};
	static const char *const bad[] = { "", "10", "1.5s", "5 s", "s", "-1s", "1h30", "5sec",
					   "5S", "1w", "1s ", "ms10" };
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_assert_eq(spate_config_parse_duration(ok[i].s, &v), 0, "%s", ok[i].s);
		cr_assert_eq(v, ok[i].v, "%s", ok[i].s);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(spate_config_parse_duration(bad[i], &v), -EINVAL, "%s", bad[i]);
	cr_assert_eq(spate_config_parse_duration("213503d", &v), 0);
	cr_assert_eq(v, 213503ull * 86400 * SEC);
	cr_assert_eq(spate_config_parse_duration("213504d", &v), -ERANGE);
	cr_assert_eq(spate_config_parse_duration("106752d106752d", &v), -ERANGE);
	cr_assert_eq(spate_config_parse_duration("18446744073709551615ns", &v), -ERANGE,
		     "UINT64_MAX is reserved for never");
	cr_assert_eq(spate_config_parse_duration("99999999999999999999s", &v), -ERANGE);
}

Test(config, parse_timestamp)
{
	uint64_t v;

	cr_assert_eq(spate_config_parse_timestamp("2026-11-27T10:00:00Z", &v), 0);
	cr_assert_eq(v, utc_ns(2026, 11, 27, 10, 0, 0));
	cr_assert_eq(spate_config_parse_timestamp("2026-11-27t10:00:00z", &v), 0);
	cr_assert_eq(v, utc_ns(2026, 11, 27, 10, 0, 0));
	cr_assert_eq(spate_config_parse_timestamp("2026-11-27 10:00:00.5Z", &v), 0);
	cr_assert_eq(v, utc_ns(2026, 11, 27, 10, 0, 0) + 500 * MS);
	cr_assert_eq(spate_config_parse_timestamp("2026-11-27T10:00:00.123456789+01:00", &v), 0);
	cr_assert_eq(v, utc_ns(2026, 11, 27, 9, 0, 0) + 123456789);
	cr_assert_eq(spate_config_parse_timestamp("2026-11-27T00:30:00-05:30", &v), 0);
	cr_assert_eq(v, utc_ns(2026, 11, 27, 6, 0, 0));
	cr_assert_eq(spate_config_parse_timestamp("2024-02-29T00:00:00Z", &v), 0, "leap day");
	cr_assert_eq(v, utc_ns(2024, 2, 29, 0, 0, 0));
	cr_assert_eq(spate_config_parse_timestamp("2000-02-29T00:00:00Z", &v), 0);
	cr_assert_eq(spate_config_parse_timestamp("1900-02-29T00:00:00Z", &v), -EINVAL);
	cr_assert_eq(spate_config_parse_timestamp("1970-01-01T00:00:00Z", &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(spate_config_parse_timestamp("1970-01-01T00:30:00+01:00", &v), -ERANGE);
	cr_assert_eq(spate_config_parse_timestamp("2554-07-21T23:34:33.709551615Z", &v), 0);
	cr_assert_eq(v, UINT64_MAX);
	cr_assert_eq(spate_config_parse_timestamp("2554-07-21T23:34:34Z", &v), -ERANGE);
	cr_assert_eq(spate_config_parse_timestamp("123", &v), 0);
	cr_assert_eq(v, 123);
	cr_assert_eq(spate_config_parse_timestamp("2026-11-27T10:00:00Z junk", &v), -EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Configs built in C                                                       */
/* ------------------------------------------------------------------------ */

Test(config, build_in_c)
{
	struct spate_config *c;
	struct spate_config_stream *s;
	struct spate_config_consumer *k;
	char err[512];

	cr_assert_eq(spate_config_new_default("bad name", &c), -EINVAL);
	cr_assert_eq(spate_config_new_default("demo", &c), 0);
	cr_assert_str_eq(c->state_dir, "/var/lib/spate/demo");
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), -EINVAL);
	has(err, "streams: missing");

	cr_assert_eq(spate_config_add_stream(c, "orders", &s), 0);
	s->shards = 4;
	cr_assert_eq(spate_config_add_stream(c, "orders", NULL), -EEXIST);
	cr_assert_eq(spate_config_add_stream(c, "a.b", NULL), -EINVAL);
	cr_assert_eq(spate_config_add_stream(c, "dlq", NULL), 0);
	cr_assert_eq(spate_config_add_consumer(c, "count", "orders", "count", &k), 0);
	k->parallelization = 2;
	cr_assert_eq(spate_config_consumer_set_option(k, "touch", "first"), 0);
	cr_assert_eq(spate_config_consumer_set_option(k, "summary", "/tmp/x"), 0);
	cr_assert_eq(spate_config_consumer_set_option(k, "touch", "all"), 0);
	cr_assert_eq(spate_config_consumer_set_option(k, "", "x"), -EINVAL);
	cr_assert_eq(k->n_options, 2);
	cr_assert_str_eq(spate_config_consumer_option(k, "touch", NULL), "all");
	cr_assert_eq(spate_config_add_consumer(c, "count", "orders", "count", NULL), -EEXIST);
	cr_assert_eq(spate_config_add_consumer(c, "x", "orders", "Bad", NULL), -EINVAL);
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), 0, "%s", err);

	/* Derived values of a struct with 0 = automatic. */
	cr_assert_eq(spate_config_stream_max_record(&c->streams[0]), 1 * MIB);
	cr_assert_eq(spate_config_consumer_concurrency(c, &c->consumers[0]), 8);

	/* Semantic errors on structs: no file, no line; the field path. */
	c->consumers[0].on_failure[0] = '\0';
	strcpy(c->consumers[0].on_failure, "orders");
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "consumers[0].on_failure: \"orders\" is the stream the consumer "
			      "reads; failed records must go to another stream");
	strcpy(c->consumers[0].on_failure, "dlq");
	c->streams[1].shards = 0;
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "streams[1].shards: expected an integer from 1 to 1024, got 0");
	c->streams[1].shards = 1;
	c->streams[1].ring_size = 3 * MIB;
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), -EINVAL);
	has(err, "streams[1].ring_size: expected a power-of-two size");
	c->streams[1].ring_size = 64 * KIB;
	c->streams[1].max_record_size = 64 * KIB;
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), -EINVAL);
	has(err, "streams[1].max_record_size: 64KiB does not fit streams[1].ring_size 64KiB");
	c->streams[1].max_record_size = 0;
	cr_assert_eq(spate_config_stream_max_record(&c->streams[1]), 32 * KIB - 48);
	c->consumers[0].wait = (enum spate_ring_wait)7;
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), -EINVAL);
	has(err, "consumers[0].wait: expected one of busy, yield, block, got the value 7");
	c->consumers[0].wait = SPATE_RING_WAIT_BUSY;
	c->consumers[0].max_record_age_ns = 10;
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), -EINVAL);
	has(err, "consumers[0].max_record_age: expected -1 (never) or a duration of at least 1ms");
	c->consumers[0].max_record_age_ns = SPATE_CONFIG_NEVER;
	c->placement.cores = malloc(2 * sizeof(uint32_t));
	cr_assert_not_null(c->placement.cores);
	c->placement.cores[0] = 3;
	c->placement.cores[1] = 3;
	c->placement.n_cores = 2;
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), -EINVAL);
	has(err, "placement.cores: CPU 3 is listed twice");
	c->placement.cores[1] = 1;
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), 0, "%s", err);
	/* A parsed config remembers its file in messages. */
	strcpy(c->source, "mem.yaml");
	c->streams[0].line = 9;
	c->streams[0].shards = 2000;
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "mem.yaml:9: streams[0].shards: expected an integer from 1 to 1024, "
			      "got 2000");
	spate_config_free(c);

	cr_assert_eq(spate_config_validate(NULL, err, sizeof(err)), -EINVAL);
	spate_config_free(NULL);
}

Test(config, zero_init_with_defaults)
{
	struct spate_config_stream s[2];
	struct spate_config_consumer k;
	struct spate_config_opt o = { .key = (char *)"to", .value = (char *)"b" };
	static struct spate_config c; /* large: keep it off the stack */
	char err[512];

	memset(&c, 0, sizeof(c));
	strcpy(c.bus, "bus");
	strcpy(c.state_dir, "/tmp/x");
	spate_config_stream_defaults(&s[0]);
	spate_config_stream_defaults(&s[1]);
	strcpy(s[0].name, "a");
	strcpy(s[1].name, "b");
	spate_config_consumer_defaults(&k);
	strcpy(k.name, "fwd");
	strcpy(k.stream, "a");
	strcpy(k.plugin, "/usr/lib/spate/forward.so");
	k.options = &o;
	k.n_options = 1;
	c.streams = s;
	c.n_streams = 2;
	c.consumers = &k;
	c.n_consumers = 1;
	cr_assert_eq(spate_config_validate(&c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_config_consumer_concurrency(&c, &k), 1);
	cr_assert_str_eq(spate_config_start_str(k.starting_position), "latest");
	cr_assert_str_eq(spate_config_start_str((enum spate_config_start)42), "?");

	strcpy(k.stream, "c");
	cr_assert_eq(spate_config_validate(&c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "consumers[0].stream: no stream named \"c\"; streams: a, b");
	cr_assert_eq(spate_config_consumer_concurrency(&c, &k), 0);
	strcpy(k.stream, "a");
	c.state_dir[0] = '\0';
	cr_assert_eq(spate_config_validate(&c, err, sizeof(err)), -EINVAL);
	has(err, "state_dir: missing; expected an absolute path");
	strcpy(c.state_dir, "/tmp/x");
	memset(s[1].name, 'x', sizeof(s[1].name));
	cr_assert_eq(spate_config_validate(&c, err, sizeof(err)), -EINVAL);
	has(err, "streams[1].name: expected a name of 1 to 40 characters");
	has(err, "not NUL-terminated");
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

/* docs/examples/<name>, from SPATE_SOURCE_ROOT (meson) or this file's path. */
static void example_path(char *buf, size_t len, const char *name)
{
	const char *root = getenv("SPATE_SOURCE_ROOT");

	if (root && *root) {
		snprintf(buf, len, "%s/docs/examples/%s", root, name);
		return;
	}
	const char *f = __FILE__, *slash = strrchr(f, '/');
	int dir = slash ? (int)(slash - f) : 0;
	snprintf(buf, len, "%.*s%sdocs/examples/%s", dir, f, slash ? "/../" : "../", name);
}

Test(config, examples_load)
{
	char path[PATH_MAX], err[1024];
	struct spate_config *c;
	int r;

	example_path(path, sizeof(path), "demo.yaml");
	r = spate_config_load(path, &c, err, sizeof(err));
	cr_assert_eq(r, 0, "%s: %s", path, err);
	cr_assert_str_eq(c->bus, "demo");
	cr_assert_not_null(spate_config_find_stream(c, "orders"));
	cr_assert_geq(c->n_consumers, 1);
	for (uint32_t i = 0; i < c->n_consumers; i++)
		cr_assert_not_null(spate_config_find_stream(c, c->consumers[i].stream));
	spate_config_free(c);

	example_path(path, sizeof(path), "pipeline.yaml");
	r = spate_config_load(path, &c, err, sizeof(err));
	cr_assert_eq(r, 0, "%s: %s", path, err);
	cr_assert_geq(c->n_streams, 2);
	const struct spate_config_consumer *k = spate_config_find_consumer(c, "route");
	cr_assert_not_null(k);
	cr_assert_str_eq(k->plugin, "forward");
	const char *to = spate_config_consumer_option(k, "to", NULL);
	cr_assert_not_null(to);
	cr_assert_not_null(spate_config_find_stream(c, to), "forward target %s", to);
	cr_assert_neq(strcmp(to, k->stream), 0);
	spate_config_free(c);

	/* The complete file in docs/config.md parses too. */
	example_path(path, sizeof(path), "../config.md");
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	static char doc[256 * 1024];
	size_t n = fread(doc, 1, sizeof(doc) - 1, f);
	fclose(f);
	doc[n] = '\0';
	char *y = strstr(doc, "## A complete file");
	cr_assert_not_null(y);
	y = strstr(y, "```yaml\n");
	cr_assert_not_null(y);
	y += strlen("```yaml\n");
	char *end = strstr(y, "```");
	cr_assert_not_null(end);
	r = spate_config_parse(y, (size_t)(end - y), "config.md", &c, err, sizeof(err));
	cr_assert_eq(r, 0, "%s", err);
	cr_assert_eq(c->n_consumers, 3);
	spate_config_free(c);
}

Test(config, load_resolves_relative_plugin_paths)
{
	char dir[] = "/tmp/spate-test-cfgdir-XXXXXX", path[64], err[512], want[512];
	struct spate_config *c;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/bus.yaml", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(HEAD "consumers:\n"
		   "  - name: rel\n    stream: s\n    plugin: plugins/mine.so\n"
		   "  - name: abs\n    stream: s\n    plugin: /opt/mine.so\n"
		   "  - name: bundled\n    stream: s\n    plugin: count\n"
		   "    batch_size: 7\n",
	      f);
	fclose(f);
	int r = spate_config_load(path, &c, err, sizeof(err));
	cr_assert_eq(r, 0, "%s", err);
	snprintf(want, sizeof(want), "%s/plugins/mine.so", dir);
	cr_assert_str_eq(c->consumers[0].plugin, want);
	cr_assert_str_eq(c->consumers[1].plugin, "/opt/mine.so");
	cr_assert_str_eq(c->consumers[2].plugin, "count");
	cr_assert_str_eq(c->source, path);
	spate_config_free(c);

	/* An error in a file names the file as given. */
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(CONS "    batch_size: lots\n", f);
	fclose(f);
	r = spate_config_load(path, &c, err, sizeof(err));
	cr_assert_eq(r, -EINVAL);
	snprintf(want, sizeof(want),
		 "%s:8: consumers[0].batch_size: expected an integer from 1 to 100000, got \"lots\"",
		 path);
	cr_assert_str_eq(err, want);
	unlink(path);
	rmdir(dir);
}

Test(config, not_nul_terminated_text_and_small_err)
{
	/* The text need not end in NUL; err is truncated, never overrun. */
	const char yaml[] = CONS "    batch_size: 0\nGARBAGE";
	struct spate_config *c;
	char err[16];

	memset(err, 'z', sizeof(err));
	int r = spate_config_parse(yaml, strlen(yaml) - strlen("GARBAGE"), "t.yaml", &c, err, 10);
	cr_assert_eq(r, -EINVAL);
	cr_assert_eq(strlen(err), 9);
	cr_assert_eq(err[10], 'z');
	r = spate_config_parse(yaml, strlen(yaml) - strlen("GARBAGE"), NULL, &c, NULL, 0);
	cr_assert_eq(r, -EINVAL);
	r = spate_config_parse(yaml, strlen(yaml) - strlen("0\nGARBAGE"), NULL, &c, NULL, 0);
	cr_assert_eq(r, -EINVAL, "batch_size empty");
}

Test(config, persistence_keys)
{
	struct spate_config *c = parse_ok(HEAD "    durability: interval\n"
					  "    durability_interval: 5ms\n"
					  "    segment_size: 8MiB\n"
					  "    retention_bytes: 1GiB\n"
					  "    log_dir: /var/tmp/spate-log\n"
					  "    direct_io: false\n");
	cr_assert_eq(c->streams[0].durability, SPATE_DURABILITY_INTERVAL);
	cr_assert_eq(c->streams[0].durability_interval_ns, 5000000ull);
	cr_assert_eq(c->streams[0].segment_size, 8ull << 20);
	cr_assert_eq(c->streams[0].retention_bytes, 1ull << 30);
	cr_assert_str_eq(c->streams[0].log_dir, "/var/tmp/spate-log");
	cr_assert(!c->streams[0].direct_io);
	spate_config_free(c);

	c = parse_ok(HEAD "    durability: always\n");
	cr_assert_eq(c->streams[0].durability, SPATE_DURABILITY_ALWAYS);
	cr_assert_eq(c->streams[0].durability_interval_ns, 10000000ull, "default 10ms");
	cr_assert_eq(c->streams[0].segment_size, 64ull << 20, "default 64MiB");
	cr_assert_eq(c->streams[0].log_dir[0], 0, "default: under state_dir");
	cr_assert(c->streams[0].direct_io, "O_DIRECT by default");
	spate_config_free(c);
	c = parse_ok(HEAD);
	cr_assert_eq(c->streams[0].durability, SPATE_DURABILITY_OFF, "memory only by default");
	spate_config_free(c);

	parse_bad(HEAD "    durability: sometimes\n", 4, "streams[0].durability",
		  "expected one of off, none, interval, always, got \"sometimes\"");
	parse_bad(HEAD "    durability_interval: 10us\n", 4, "streams[0].durability_interval",
		  "got \"10us\"");
	parse_bad(HEAD "    segment_size: 4KiB\n", 4, "streams[0].segment_size", "got \"4KiB\"");
	parse_bad(HEAD "    log_dir: relative/dir\n", 4, "streams[0].log_dir",
		  "expected an absolute path");
	parse_bad(HEAD "    durabilty: none\n", 4, "streams[0].durabilty",
		  "did you mean \"durability\"?");
}

/* A consumer that is a function: command, or handler with runtime_client;
 * the keys land in struct spate_config_function. */
Test(config, function_keys)
{
	struct spate_config *c = parse_ok(HEAD "consumers:\n"
					       "  - name: f\n"
					       "    stream: s\n"
					       "    isolation: process\n"
					       "    function:\n"
					       "      command: [node, index.mjs]\n"
					       "      handler: index.handler\n"
					       "      cwd: /srv/fn\n"
					       "      env: {TABLE: orders, EMPTY: }\n"
					       "      timeout: 3s\n"
					       "      memory_limit: 256MiB\n"
					       "      concurrency: 2\n"
					       "  - name: g\n"
					       "    stream: s\n"
					       "    function:\n"
					       "      handler: app.lambda_handler\n"
					       "      runtime_client: python\n");
	const struct spate_config_consumer *f = &c->consumers[0], *g = &c->consumers[1];

	cr_assert_str_eq(f->plugin, "");
	cr_assert_not_null(f->function);
	cr_assert_eq(f->isolation, SPATE_CONFIG_ISOLATION_PROCESS);
	cr_assert_eq(f->function->n_command, 2);
	cr_assert_str_eq(f->function->command[0], "node");
	cr_assert_str_eq(f->function->command[1], "index.mjs");
	cr_assert_null(f->function->command[2], "argv is NULL-terminated");
	cr_assert_str_eq(f->function->handler, "index.handler");
	cr_assert_str_eq(f->function->cwd, "/srv/fn");
	cr_assert_eq(f->function->n_env, 2);
	cr_assert_str_eq(f->function->env[0].key, "TABLE");
	cr_assert_str_eq(f->function->env[0].value, "orders");
	cr_assert_str_eq(f->function->env[1].value, "");
	cr_assert_eq(f->function->timeout_ns, 3 * SEC);
	cr_assert_eq(spate_config_function_timeout(f), 3 * SEC);
	cr_assert_eq(f->function->memory_limit, 256 * MIB);
	cr_assert_eq(f->function->concurrency, 2);
	cr_assert_eq(f->function->line, 8);
	cr_assert_eq(g->function->n_runtime_client, 1);
	cr_assert_str_eq(g->function->runtime_client[0], "python");
	cr_assert_eq(g->function->timeout_ns, 0);
	cr_assert_eq(spate_config_function_timeout(g), 60 * SEC, "the consumer's timeout");
	cr_assert_eq(g->isolation, SPATE_CONFIG_ISOLATION_IN_PROCESS);
	spate_config_free(c);
}

/* Function mistakes name file, line and field. */
Test(config, function_errors)
{
#define FN HEAD "consumers:\n  - name: f\n    stream: s\n    function:\n"
	parse_bad(FN "      handler: index.handler\n", 8, "consumers[0].function.runtime_client",
		  "missing; a handler needs a runtime client");
	parse_bad(FN "      cwd: /x\n", 7, "consumers[0].function", "expected command");
	parse_bad(FN "      command: []\n", 8, "consumers[0].function.command",
		  "a list of 1 to 64 non-empty strings");
	parse_bad(FN "      command: [node, \"\"]\n", 8, "consumers[0].function.command[1]",
		  "non-empty strings");
	parse_bad(FN "      command: [node]\n      runtime_client: node\n", 9,
		  "consumers[0].function.runtime_client", "not both");
	parse_bad(FN "      command: [node]\n      timeout: 901s\n", 9,
		  "consumers[0].function.timeout", "a duration from 1ms to 15m");
	parse_bad(FN "      command: [node]\n      comand: x\n", 9, "consumers[0].function.comand",
		  "did you mean \"command\"");
	parse_bad(FN "      command: [node]\n      env: {1X: a}\n", 9,
		  "consumers[0].function.env.1X", "expected a variable name");
	parse_bad(FN "      command: [node]\n      env: {AWS_LAMBDA_RUNTIME_API: a}\n", 9,
		  "consumers[0].function.env.AWS_LAMBDA_RUNTIME_API", "set by the engine");
	parse_bad(FN "      command: [node]\n    plugin: count\n", 7, "consumers[0].function",
		  "a plugin or a function, not both (plugin at line 9)");
	parse_bad(FN "      command: [node]\n    isolation: in-process\n", 9,
		  "consumers[0].isolation", "a function always runs in its own processes");
	parse_bad(HEAD "consumers:\n  - name: f\n    stream: s\n    function: node\n", 7,
		  "consumers[0].function", "expected a mapping with keys command");
	parse_bad(CONS "    isolation: thread\n", 8, "consumers[0].isolation",
		  "one of in-process, process");
#undef FN
}

/* Built in C: spate_config_consumer_function() and its setters. */
Test(config, function_in_c)
{
	struct spate_config *c;
	struct spate_config_stream *s;
	struct spate_config_consumer *k;
	struct spate_config_function *fn;
	const char *argv[] = { "python3", "-u", "bootstrap.py" };
	char err[512];

	cr_assert_eq(spate_config_new_default("b", &c), 0);
	cr_assert_eq(spate_config_add_stream(c, "s", &s), 0);
	cr_assert_eq(spate_config_add_consumer(c, "f", "s", NULL, &k), 0);
	cr_assert_lt(spate_config_validate(c, err, sizeof(err)), 0, "neither plugin nor function");
	has(err, "got neither");
	cr_assert_eq(spate_config_consumer_function(k, &fn), 0);
	cr_assert_lt(spate_config_validate(c, err, sizeof(err)), 0);
	has(err, "expected command");
	cr_assert_eq(spate_config_function_set_argv(fn, 0, argv, 3), 0);
	cr_assert_eq(spate_config_function_set_argv(fn, 0, argv, 0), -EINVAL);
	cr_assert_eq(spate_config_function_set_env(fn, "A", "1"), 0);
	cr_assert_eq(spate_config_function_set_env(fn, "A", "2"), 0);
	cr_assert_eq(fn->n_env, 1);
	cr_assert_str_eq(fn->env[0].value, "2");
	cr_assert_eq(spate_config_validate(c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(fn->command[2], "bootstrap.py");
	spate_config_free(c);
}

/* ------------------------------------------------------------------------ */
/* api: the Kinesis API front                                               */
/* ------------------------------------------------------------------------ */

Test(config, api_block)
{
	struct spate_config *c = parse_ok(HEAD);
	cr_assert(!c->api.enabled, "no api: block, no front");
	spate_config_free(c);

	/* Defaults: loopback 4567, us-east-1; auth none written out. */
	c = parse_ok(HEAD "api:\n  auth: none\n");
	cr_assert(c->api.enabled);
	cr_assert_str_eq(c->api.listen, "127.0.0.1:4567");
	cr_assert_str_eq(c->api.region, "us-east-1");
	cr_assert_eq(c->api.auth, SPATE_CONFIG_API_AUTH_NONE);
	cr_assert_eq(c->api.line, 4);
	spate_config_free(c);

	c = parse_ok(HEAD "api:\n"                                  /* 4 */
		     "  listen: '[::1]:9000'\n"                     /* 5 */
		     "  region: eu-west-3\n"                        /* 6 */
		     "  threads: 3\n"                               /* 7 */
		     "  auth:\n"                                    /* 8 */
		     "    keys:\n"                                  /* 9 */
		     "      - { id: AKIDEXAMPLE, secret_file: /etc/spate/k1 }\n" /* 10 */
		     "      - id: second\n"                         /* 11 */
		     "        secret_file: k2\n"                    /* 12 */
		     "  tls: { cert: /etc/spate/c.pem, key: /etc/spate/k.pem }\n");
	cr_assert_str_eq(c->api.listen, "[::1]:9000");
	cr_assert_str_eq(c->api.region, "eu-west-3");
	cr_assert_eq(c->api.threads, 3);
	cr_assert_eq(c->api.auth, SPATE_CONFIG_API_AUTH_KEYS);
	cr_assert_eq(c->api.n_keys, 2);
	cr_assert_str_eq(c->api.keys[0].id, "AKIDEXAMPLE");
	cr_assert_str_eq(c->api.keys[0].secret_file, "/etc/spate/k1");
	cr_assert_eq(c->api.keys[0].line, 10);
	cr_assert_str_eq(c->api.keys[1].id, "second");
	cr_assert_str_eq(c->api.keys[1].secret_file, "k2"); /* parse(): no directory to join */
	cr_assert_eq(c->api.keys[1].line, 11);
	cr_assert_str_eq(c->api.tls_cert, "/etc/spate/c.pem");
	cr_assert_str_eq(c->api.tls_key, "/etc/spate/k.pem");
	spate_config_free(c);

	/* auth must be written out; errors name the line and the field. */
	parse_bad(HEAD "api:\n  listen: 127.0.0.1:4567\n", 4, "api.auth", "auth: none");
	parse_bad(HEAD "api:\n", 4, "api", "auth (required)");
	parse_bad(HEAD "api:\n  auth: nobody\n", 5, "api.auth", "expected none");
	parse_bad(HEAD "api:\n  auth: none\n  listen: nowhere\n", 6, "api.listen", "address");
	parse_bad(HEAD "api:\n  auth: none\n  region: Mars_1\n", 6, "api.region", "region");
	parse_bad(HEAD "api:\n  auth: none\n  threads: 0\n", 6, "api.threads", "from 1 to 64");
	parse_bad(HEAD "api:\n  auth: none\n  colour: red\n", 6, "api.colour", "unknown key");
	parse_bad(HEAD "api:\n  auth: { keys: [] }\n", 5, "api.auth.keys", "at least one");
	parse_bad(HEAD "api:\n  auth:\n    keys:\n      - { id: a }\n", 7, "api.auth.keys[0].secret_file",
		  "missing");
	parse_bad(HEAD "api:\n  auth:\n    keys:\n      - { id: 'a b', secret_file: /k }\n", 7,
		  "api.auth.keys[0].id", "access key id");
	parse_bad(HEAD "api:\n  auth:\n    keys:\n      - { id: a, secret_file: /k }\n"
		       "      - { id: a, secret_file: /j }\n", 8, "api.auth.keys[1].id", "duplicate");
	parse_bad(HEAD "api:\n  auth: none\n  tls: { cert: /c.pem }\n", 6, "api.tls.key", "missing");
	parse_bad(HEAD "api:\n  auth: none\n  auth: none\n", 6, "api.auth", "duplicate key");
}

Test(config, api_relative_files)
{
	char dir[] = "/tmp/spate-cfg-api-XXXXXX", path[256], err[1024] = "";
	struct spate_config *c = NULL;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/bus.yaml", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(HEAD "api:\n  auth: { keys: [{ id: k, secret_file: secrets/k }] }\n"
	      "  tls: { cert: c.pem, key: /abs/k.pem }\n", f);
	fclose(f);
	cr_assert_eq(spate_config_load(path, &c, err, sizeof(err)), 0, "%s", err);
	snprintf(path, sizeof(path), "%s/secrets/k", dir);
	cr_assert_str_eq(c->api.keys[0].secret_file, path);
	snprintf(path, sizeof(path), "%s/c.pem", dir);
	cr_assert_str_eq(c->api.tls_cert, path);
	cr_assert_str_eq(c->api.tls_key, "/abs/k.pem");
	spate_config_free(c);
	snprintf(path, sizeof(path), "%s/bus.yaml", dir);
	unlink(path);
	rmdir(dir);
}
