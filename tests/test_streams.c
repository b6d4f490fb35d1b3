/* SPDX-License-Identifier: MIT */
/*
 * test_streams.c - streams created and deleted while the engine runs
 * (spate_engine_stream_add / _remove / _get / _put / _info / _list,
 * retention, tags; engine/engine_streams.c): the registry's rules and
 * errors, definitions that survive a restart (the log continuing its
 * numbering), the configuration winning a name clash, producers in another
 * process told -ESTALE while YAML consumers keep running, a removal waiting
 * for references, the counters region's reserved slots reused, and
 * concurrent adds and removes from several threads (run under TSan in CI).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spate/config.h"
#include "spate/engine.h"
#include "spate/stats.h"
#include "spate/stream.h"

#define MS (1000000ull)

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nap_ms(unsigned ms)
{
	struct timespec ts = { 0, (long)ms * 1000000L };
	nanosleep(&ts, NULL);
}

/* A bus of its own: name with the pid and @p tag, a state dir, a config
 * with one YAML stream "in" and (with @p consumer) a count consumer on it. */
struct bus {
	char name[48], dir[64];
	struct spate_config *cfg;
};

static void bus_init(struct bus *b, const char *tag, bool consumer)
{
	struct spate_config_stream *s;

	snprintf(b->name, sizeof(b->name), "%s%d", tag, (int)getpid());
	snprintf(b->dir, sizeof(b->dir), "/tmp/spate-test-streams-XXXXXX");
	cr_assert_not_null(mkdtemp(b->dir));
	cr_assert_eq(spate_config_new_default(b->name, &b->cfg), 0);
	snprintf(b->cfg->state_dir, sizeof(b->cfg->state_dir), "%s/state", b->dir);
	cr_assert_eq(spate_config_add_stream(b->cfg, "in", &s), 0);
	s->ring_size = 1 << 20;
	s->huge_pages = SPATE_CONFIG_HUGE_OFF;
	if (consumer)
		cr_assert_eq(spate_config_add_consumer(b->cfg, "k", "in", "count", NULL), 0);
}

static void bus_done(struct bus *b, const char *const *more)
{
	char cmd[128];

	for (uint32_t i = 0; i < b->cfg->n_streams; i++)
		spate_stream_unlink(b->name, b->cfg->streams[i].name);
	for (; more && *more; more++)
		spate_stream_unlink(b->name, *more);
	spate_stats_unlink(b->name);
	spate_config_free(b->cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", b->dir);
	cr_assert_eq(system(cmd), 0);
}

static void rt_stream(struct spate_config_stream *s, const char *name, uint32_t shards,
		      enum spate_durability d)
{
	spate_config_stream_defaults(s);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->shards = shards;
	s->ring_size = 1 << 20;
	s->huge_pages = SPATE_CONFIG_HUGE_OFF;
	s->durability = d;
	s->segment_size = 1 << 20;
}

/* Streams with a log in the tests where other threads come and go with
 * io_uring rings too (persisters, the control thread's checkpoint writes):
 * not under ThreadSanitizer, which cannot see liburing map and unmap its
 * rings (raw system calls) and reads a ring address reused by another
 * thread's new ring as a race. The same paths run under TSan in the
 * single-threaded tests above, and under ASan here. */
#ifdef __SANITIZE_THREAD__
#define LOGGED(d) SPATE_DURABILITY_OFF
#else
#define LOGGED(d) (d)
#endif

static void put_n(struct spate_stream *s, uint32_t n)
{
	struct spate_producer *p;
	char key[16];

	cr_assert_eq(spate_producer_open(s, SPATE_RING_WAIT_YIELD, 0, &p), 0);
	for (uint32_t i = 0; i < n; i++) {
		int k = snprintf(key, sizeof(key), "k%u", i);
		cr_assert_eq(spate_put(p, key, (size_t)k, "payload", 7, NULL), 0);
	}
	spate_producer_close(p);
}

static uint64_t records_in(struct spate_stream *s)
{
	uint64_t n = 0;
	for (uint32_t k = 0; k < spate_stream_shards(s); k++)
		n += spate_ring_tail_seq(spate_stream_ring(s, k));
	return n;
}

static bool def_exists(const struct bus *b, const char *name, const char *suffix)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/state/streams/%s.json%s", b->dir, name, suffix);
	return access(p, F_OK) == 0;
}

static bool region_exists(const struct bus *b, const char *name)
{
	struct spate_stream *s = NULL;
	int rc = spate_stream_attach(b->name, name, &s);
	spate_stream_close(s);
	return rc == 0;
}

Test(streams, add_list_remove_and_errors, .timeout = 60)
{
	struct bus b;
	struct spate_engine *e;
	struct spate_config_stream cs;
	struct spate_engine_stream_info info[8];
	char err[512];

	bus_init(&b, "sta", false);
	cr_assert_eq(spate_engine_open(b.cfg, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_engine_start(e), 0);

	rt_stream(&cs, "orders", 2, SPATE_DURABILITY_OFF);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), 0, "%s", err);
	cr_assert(def_exists(&b, "orders", ""), "definition written");
	cr_assert(region_exists(&b, "orders"));
	/* Errors: names taken (run-time or YAML), bad fields, YAML removal. */
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), -EEXIST);
	rt_stream(&cs, "in", 1, SPATE_DURABILITY_OFF);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), -EEXIST);
	rt_stream(&cs, "bad name!", 1, SPATE_DURABILITY_OFF);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "name"), "%s", err);
	rt_stream(&cs, "zero", 0, SPATE_DURABILITY_OFF);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "shards"), "%s", err);
	cr_assert(!(def_exists(&b, "zero", "")));
	cr_assert_eq(spate_engine_stream_remove(e, "in", 0), -EPERM);
	cr_assert_eq(spate_engine_stream_remove(e, "nope", 0), -ENOENT);
	cr_assert_eq(spate_engine_stream_remove(e, "orders", 99), -EINVAL);

	/* Listed after the YAML stream, ACTIVE, with a creation time. */
	cr_assert_eq(spate_engine_stream_list(e, info, 8), 2);
	cr_assert_str_eq(info[0].name, "in");
	cr_assert(!(info[0].runtime));
	cr_assert_str_eq(info[1].name, "orders");
	cr_assert(info[1].runtime);
	cr_assert_eq(info[1].shards, 2);
	cr_assert_eq(info[1].status, SPATE_ENGINE_STREAM_ACTIVE);
	cr_assert_gt(info[1].created_ns, 0);
	cr_assert_eq(spate_engine_stream_list(e, NULL, 0), 2);

	/* Usable: records in, through a reference. */
	struct spate_stream *s = spate_engine_stream_get(e, "orders");
	cr_assert_not_null(s);
	put_n(s, 100);
	cr_assert_eq(records_in(s), 100);
	spate_engine_stream_put(e, s);

	/* Tags: Kinesis limits, all or nothing, sorted. */
	struct spate_engine_tag t[SPATE_ENGINE_TAGS_MAX + 1];
	memset(t, 0, sizeof(t));
	snprintf(t[0].key, sizeof(t[0].key), "team");
	snprintf(t[0].value, sizeof(t[0].value), "blue");
	snprintf(t[1].key, sizeof(t[1].key), "env");
	snprintf(t[1].value, sizeof(t[1].value), "test");
	cr_assert_eq(spate_engine_stream_tag(e, "orders", t, 2, err, sizeof(err)), 0, "%s", err);
	memset(t[2].key, 'x', SPATE_ENGINE_TAG_KEY_MAX);
	t[2].key[SPATE_ENGINE_TAG_KEY_MAX] = 'y'; /* 129 characters */
	cr_assert_eq(spate_engine_stream_tag(e, "orders", &t[2], 1, err, sizeof(err)), -EINVAL);
	for (uint32_t i = 0; i <= SPATE_ENGINE_TAGS_MAX; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		snprintf(t[i].key, sizeof(t[i].key), "k%02u", i);
	}
	cr_assert_eq(spate_engine_stream_tag(e, "orders", t, 49, err, sizeof(err)), -ENOSPC);
	struct spate_engine_tag got[SPATE_ENGINE_TAGS_MAX];
	cr_assert_eq(spate_engine_stream_tags(e, "orders", got, SPATE_ENGINE_TAGS_MAX), 2);
	cr_assert_str_eq(got[0].key, "env");
	cr_assert_str_eq(got[1].key, "team");
	cr_assert_str_eq(got[1].value, "blue");
	const char *drop[] = { "env", "absent" };
	cr_assert_eq(spate_engine_stream_untag(e, "orders", drop, 2), 0);
	cr_assert_eq(spate_engine_stream_tags(e, "orders", got, SPATE_ENGINE_TAGS_MAX), 1);
	cr_assert_eq(spate_engine_stream_set_retention(e, "orders", 48 * 3600 * 1000 * MS), 0);
	cr_assert_eq(spate_engine_stream_set_retention(e, "orders", 10), -EINVAL);
	cr_assert_eq(spate_engine_stream_info(e, "orders", &info[0]), 0);
	cr_assert_eq(info[0].retention_ns, 48 * 3600 * 1000 * MS);
	cr_assert_eq(info[0].n_tags, 1);
	struct spate_config_stream def;
	cr_assert_eq(spate_engine_stream_config(e, "orders", &def), 0);
	cr_assert_eq(def.shards, 2);
	cr_assert_eq(def.retention_ns, 48 * 3600 * 1000 * MS);
	cr_assert_gt(def.max_record_size, 0);
	cr_assert_eq(spate_engine_stream_config(e, "nope", &def), -ENOENT);

	/* Remove: gone from lookups, its memory and definition with it. */
	cr_assert_eq(spate_engine_stream_remove(e, "orders", 0), 0);
	cr_assert_null(spate_engine_stream_get(e, "orders"));
	cr_assert_eq(spate_engine_stream_info(e, "orders", &info[0]), -ENOENT);
	cr_assert_eq(spate_engine_stream_remove(e, "orders", 0), -ENOENT);
	cr_assert(!region_exists(&b, "orders"), "region unlinked");
	cr_assert(!def_exists(&b, "orders", ""), "definition removed");
	cr_assert_eq(spate_engine_stream_list(e, info, 8), 1);
	/* The name is free again, and the new stream starts empty. */
	rt_stream(&cs, "orders", 1, SPATE_DURABILITY_OFF);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), 0, "%s", err);
	s = spate_engine_stream_get(e, "orders");
	cr_assert_eq(records_in(s), 0);
	spate_engine_stream_put(e, s);

	/* The limit on run-time streams. */
	int added = 1, rc = 0;
	for (uint32_t i = 0; i < SPATE_ENGINE_RUNTIME_STREAMS_MAX + 1 && rc == 0; i++) {
		char n[16];
		snprintf(n, sizeof(n), "lim%u", i);
		rt_stream(&cs, n, 1, SPATE_DURABILITY_OFF);
		cs.ring_size = 64 << 10;
		rc = spate_engine_stream_add(e, &cs, err, sizeof(err));
		if (rc == 0)
			added++;
	}
	cr_assert_eq(rc, -ENOSPC, "%d: %s", rc, err);
	cr_assert_eq(added, (int)SPATE_ENGINE_RUNTIME_STREAMS_MAX);
	spate_engine_close(e);
	/* Run-time streams outlive the engine like YAML ones; their
	 * definitions stay. */
	cr_assert(region_exists(&b, "orders"));
	cr_assert(def_exists(&b, "orders", ""));
	const char *more[SPATE_ENGINE_RUNTIME_STREAMS_MAX + 2] = { "orders" };
	static char names[SPATE_ENGINE_RUNTIME_STREAMS_MAX][16];
	for (uint32_t i = 0; i < SPATE_ENGINE_RUNTIME_STREAMS_MAX; i++) {
		snprintf(names[i], sizeof(names[i]), "lim%u", i);
		more[i + 1] = names[i];
	}
	bus_done(&b, more);
}

Test(streams, restart_keeps_definitions_logs_retention_tags, .timeout = 120)
{
	struct bus b;
	struct spate_engine *e;
	struct spate_config_stream cs;
	struct spate_engine_stream_info info;
	struct spate_engine_tag t = { .key = "owner", .value = "ops" };
	char err[512];

	bus_init(&b, "str", false);
	cr_assert_eq(spate_engine_open(b.cfg, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_engine_start(e), 0);
	rt_stream(&cs, "dur", 2, SPATE_DURABILITY_ALWAYS);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), 0, "%s", err);
	rt_stream(&cs, "mem", 1, SPATE_DURABILITY_OFF);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_engine_stream_tag(e, "dur", &t, 1, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_engine_stream_set_retention(e, "dur", 72 * 3600 * 1000 * MS), 0);
	/* A YAML stream's tags are kept too. */
	cr_assert_eq(spate_engine_stream_tag(e, "in", &t, 1, err, sizeof(err)), 0, "%s", err);
	struct spate_stream *s = spate_engine_stream_get(e, "dur");
	put_n(s, 500);
	for (uint32_t k = 0; k < 2; k++) {
		uint64_t tail = spate_ring_tail_seq(spate_stream_ring(s, k));
		cr_assert_gt(tail, 0);
		cr_assert_eq(spate_stream_wait_durable(s, k, tail - 1, 10000 * MS), 0);
	}
	spate_engine_stream_put(e, s);
	s = spate_engine_stream_get(e, "mem");
	put_n(s, 30);
	spate_engine_stream_put(e, s);
	cr_assert_eq(spate_engine_stream_info(e, "dur", &info), 0);
	uint64_t created = info.created_ns;
	spate_engine_close(e);

	/* A reboot: shared memory gone; the durable stream comes back from
	 * its log, numbering continued; the memory-only one comes back empty. */
	spate_stream_unlink(b.name, "dur");
	spate_stream_unlink(b.name, "mem");
	cr_assert_eq(spate_engine_open(b.cfg, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_engine_start(e), 0);
	cr_assert_eq(spate_engine_stream_info(e, "dur", &info), 0);
	cr_assert(info.runtime);
	cr_assert_eq(info.status, SPATE_ENGINE_STREAM_ACTIVE);
	cr_assert_eq(info.shards, 2);
	cr_assert_eq(info.created_ns, created, "creation time kept");
	cr_assert_eq(info.retention_ns, 72 * 3600 * 1000 * MS);
	struct spate_engine_tag got[4];
	cr_assert_eq(spate_engine_stream_tags(e, "dur", got, 4), 1);
	cr_assert_str_eq(got[0].value, "ops");
	cr_assert_eq(spate_engine_stream_tags(e, "in", got, 4), 1);
	s = spate_engine_stream_get(e, "dur");
	cr_assert_not_null(s);
	cr_assert_eq(records_in(s), 500, "the log's numbering continues");
	put_n(s, 10);
	spate_engine_stream_put(e, s);
	s = spate_engine_stream_get(e, "mem");
	cr_assert_not_null(s);
	cr_assert_eq(records_in(s), 0);
	spate_engine_stream_put(e, s);

	/* Remove the durable one: its log goes too. */
	char logdir[128];
	snprintf(logdir, sizeof(logdir), "%s/state/log/dur/0000", b.dir);
	cr_assert_eq(access(logdir, F_OK), 0);
	cr_assert_eq(spate_engine_stream_remove(e, "dur", 0), 0);
	cr_assert_neq(access(logdir, F_OK), 0, "log removed");
	spate_engine_close(e);

	/* Reopen: "dur" stays removed, "mem" is back. */
	cr_assert_eq(spate_engine_open(b.cfg, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_engine_stream_info(e, "dur", &info), -ENOENT);
	cr_assert_eq(spate_engine_stream_info(e, "mem", &info), 0);
	spate_engine_close(e);
	const char *more[] = { "dur", "mem", NULL };
	bus_done(&b, more);
}

Test(streams, interrupted_removal_finished_and_yaml_wins, .timeout = 60)
{
	struct bus b;
	struct spate_engine *e;
	struct spate_config_stream cs, *ys;
	struct spate_engine_stream_info info;
	char err[512], path[256];

	bus_init(&b, "sty", false);
	cr_assert_eq(spate_engine_open(b.cfg, &e, err, sizeof(err)), 0, "%s", err);
	rt_stream(&cs, "clash", 1, SPATE_DURABILITY_OFF);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), 0, "%s", err);
	rt_stream(&cs, "gone", 1, SPATE_DURABILITY_OFF);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), 0, "%s", err);
	/* A removal waits for references: keep one across close, as a crash
	 * in the middle would (the definition says DELETING). */
	struct spate_stream *held = spate_engine_stream_get(e, "gone");
	cr_assert_eq(spate_engine_stream_remove(e, "gone", 0), 0);
	cr_assert_eq(spate_engine_stream_info(e, "gone", &info), 0);
	cr_assert_eq(info.status, SPATE_ENGINE_STREAM_DELETING);
	cr_assert_null(spate_engine_stream_get(e, "gone"));
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), -EEXIST);
	/* Its rings are retired: a producer is told. */
	struct spate_producer *p;
	cr_assert_eq(spate_producer_open(held, SPATE_RING_WAIT_YIELD, 0, &p), 0);
	cr_assert_eq(spate_put(p, "k", 1, "v", 1, NULL), -ESTALE);
	spate_producer_close(p);
	/* Simulate the crash: save the DELETING definition, let close finish. */
	snprintf(path, sizeof(path), "cp %s/state/streams/gone.json %s/gone.json", b.dir, b.dir);
	cr_assert_eq(system(path), 0);
	spate_engine_stream_put(e, held);
	cr_assert(!(def_exists(&b, "gone", "")));
	spate_engine_close(e);
	snprintf(path, sizeof(path), "cp %s/gone.json %s/state/streams/gone.json", b.dir, b.dir);
	cr_assert_eq(system(path), 0);
	struct spate_stream_params sp = { .shards = 1, .ring_size = 64 << 10,
					  .shm_flags = SPATE_SHM_F_NO_HUGE };
	struct spate_stream *orphan;
	cr_assert_eq(spate_stream_create(b.name, "gone", &sp, &orphan), 0);
	spate_stream_close(orphan);

	/* Next open: the removal is finished, and "clash", now also a YAML
	 * stream, is the YAML one (the definition set aside). */
	cr_assert_eq(spate_config_add_stream(b.cfg, "clash", &ys), 0);
	ys->ring_size = 1 << 20;
	ys->huge_pages = SPATE_CONFIG_HUGE_OFF;
	spate_stream_unlink(b.name, "clash");
	cr_assert_eq(spate_engine_open(b.cfg, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_engine_stream_info(e, "gone", &info), -ENOENT);
	cr_assert(!(def_exists(&b, "gone", "")));
	cr_assert(!region_exists(&b, "gone"), "region of the interrupted removal unlinked");
	cr_assert_eq(spate_engine_stream_info(e, "clash", &info), 0);
	cr_assert(!info.runtime, "the configuration wins");
	cr_assert(!(def_exists(&b, "clash", "")));
	cr_assert(def_exists(&b, "clash", ".shadowed"));
	cr_assert_eq(spate_engine_stream_remove(e, "clash", 0), -EPERM);
	spate_engine_close(e);
	bus_done(&b, NULL);
}

/* The child: attach the stream like any producer process, put until told
 * the stream is gone; exit 0 on -ESTALE, and read its ring afterwards (the
 * mapping stays valid). */
static int child_producer(const char *bus, const char *name, int ready_fd)
{
	struct spate_stream *s;
	struct spate_producer *p;
	uint64_t n = 0;
	int rc;

	if (spate_stream_attach(bus, name, &s) < 0 ||
	    spate_producer_open(s, SPATE_RING_WAIT_YIELD, SPATE_PRODUCER_F_FAIL_FULL, &p) < 0)
		return 10;
	for (;;) {
		rc = spate_put(p, "key", 3, "child-record", 12, NULL);
		if (rc == -EAGAIN) {
			nap_ms(1);
			continue;
		}
		if (rc < 0)
			break;
		if (++n == 100 && write(ready_fd, "r", 1) != 1)
			return 11;
	}
	spate_producer_close(p);
	/* Still mapped: the ring reads fine. */
	uint64_t tail = spate_ring_tail_seq(spate_stream_ring(s, 0));
	spate_stream_close(s);
	return rc == -ESTALE && tail >= 100 ? 0 : 12;
}

Test(streams, remove_with_producer_in_another_process_and_consumers_running, .timeout = 120)
{
	struct bus b;
	struct spate_engine *e;
	struct spate_config_stream cs;
	struct spate_consumer_stats st;
	char err[512];
	int fds[2];

	bus_init(&b, "stp", true);
	cr_assert_eq(spate_engine_open(b.cfg, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_engine_start(e), 0);
	rt_stream(&cs, "side", 1, LOGGED(SPATE_DURABILITY_INTERVAL));
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		_exit(child_producer(b.name, "side", fds[1]));
	}
	close(fds[1]);
	char c;
	cr_assert_eq(read(fds[0], &c, 1), 1, "the child put 100 records");
	/* The YAML consumer works meanwhile. */
	struct spate_stream *in = spate_engine_stream(e, "in");
	put_n(in, 1000);
	cr_assert_eq(spate_engine_stream_remove(e, "side", 0), 0);
	int status = 0;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	close(fds[0]);
	put_n(in, 1000);
	uint64_t deadline = mono_ns() + 30000 * MS;
	do {
		cr_assert_eq(spate_engine_consumer_stats(e, "k", &st), 0);
		if (st.records == 2000)
			break;
		nap_ms(5);
	} while (mono_ns() < deadline);
	cr_assert_eq(st.records, 2000, "the YAML consumer counted %" PRIu64, st.records);
	cr_assert(!(region_exists(&b, "side")));
	spate_engine_close(e);
	const char *more[] = { "side", NULL };
	bus_done(&b, more);
}

/* The counters region shows run-time streams (what spate stat, top and the
 * Prometheus endpoint read), and a removed stream's slot is reused. */
Test(streams, counters_region_shows_runtime_streams, .timeout = 60)
{
	struct bus b;
	struct spate_engine *e;
	struct spate_config_stream cs;
	struct spate_stats_view *v;
	char err[512];

	bus_init(&b, "stc", false);
	cr_assert_eq(spate_engine_open(b.cfg, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_engine_start(e), 0);
	rt_stream(&cs, "first", 3, SPATE_DURABILITY_OFF);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), 0, "%s", err);
	rt_stream(&cs, "second", 2, SPATE_DURABILITY_NONE);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), 0, "%s", err);
	struct spate_stream *s = spate_engine_stream_get(e, "second");
	put_n(s, 77);
	spate_engine_stream_put(e, s);
	cr_assert_eq(spate_stats_view_take(b.name, &v), 0);
	cr_assert_eq(v->n_streams, 3);
	cr_assert_str_eq(v->stream_names[0], "in");
	cr_assert_str_eq(v->stream_names[1], "first");
	cr_assert_str_eq(v->stream_names[2], "second");
	cr_assert_eq(v->n_shards, 1 + 3 + 2);
	uint64_t in2 = 0;
	for (uint32_t k = 0; k < v->stream_shards[2]; k++) {
		cr_assert_eq(v->shards[v->stream_first[2] + k].stream, 2);
		in2 += v->shards[v->stream_first[2] + k].records_in;
	}
	cr_assert_eq(in2, 77);
	spate_stats_view_free(v);
	/* Removed: gone from the view; a new stream takes the free slots. */
	cr_assert_eq(spate_engine_stream_remove(e, "first", 0), 0);
	cr_assert_eq(spate_stats_view_take(b.name, &v), 0);
	cr_assert_eq(v->n_streams, 2);
	cr_assert_str_eq(v->stream_names[1], "second");
	spate_stats_view_free(v);
	rt_stream(&cs, "third", 3, SPATE_DURABILITY_OFF);
	cr_assert_eq(spate_engine_stream_add(e, &cs, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_stats_view_take(b.name, &v), 0);
	cr_assert_eq(v->n_streams, 3);
	cr_assert_str_eq(v->stream_names[1], "third", "the freed slot is reused");
	cr_assert_eq(v->stream_shards[1], 3);
	for (uint32_t k = 0; k < 3; k++)
		cr_assert_eq(v->shards[v->stream_first[1] + k].records_in, 0);
	spate_stats_view_free(v);
	spate_engine_close(e);
	const char *more[] = { "first", "second", "third", NULL };
	bus_done(&b, more);
}

/* Several threads add, use and remove streams while another lists them,
 * takes counters views and holds references (TSan in CI). */
struct churn {
	struct spate_engine *e;
	const char *bus;
	unsigned id;
	_Atomic int *stop;
	int failures;
};

static void *churn_main(void *arg)
{
	struct churn *c = arg;
	struct spate_config_stream cs;
	char err[256], name[24];

	for (unsigned i = 0; i < 12; i++) {
		snprintf(name, sizeof(name), "c%u_%u", c->id, i % 3);
		rt_stream(&cs, name, 1 + i % 2, i % 4 == 3 ? LOGGED(SPATE_DURABILITY_NONE) : SPATE_DURABILITY_OFF);
		cs.ring_size = 64 << 10;
		int rc = spate_engine_stream_add(c->e, &cs, err, sizeof(err));
		if (rc < 0 && rc != -ENOSPC) {
			c->failures++;
			continue;
		}
		if (rc == -ENOSPC)
			continue;
		struct spate_stream *s = spate_engine_stream_get(c->e, name);
		if (!s) {
			c->failures++;
			continue;
		}
		struct spate_producer *p;
		if (spate_producer_open(s, SPATE_RING_WAIT_YIELD, 0, &p) == 0) {
			for (int k = 0; k < 50; k++)
				if (spate_put(p, "k", 1, "v", 1, NULL) < 0)
					c->failures++;
			spate_producer_close(p);
		}
		/* Remove with our reference held: the teardown is our put's. */
		if (spate_engine_stream_remove(c->e, name, 0) < 0)
			c->failures++;
		spate_engine_stream_put(c->e, s);
	}
	return NULL;
}

static void *watch_main(void *arg)
{
	struct churn *c = arg;
	struct spate_engine_stream_info info[64];

	/* Relaxed: a stop flag; the join orders the rest. */
	while (!atomic_load_explicit(c->stop, memory_order_relaxed)) {
		int n = spate_engine_stream_list(c->e, info, 64);
		for (int i = 0; i < n && i < 64; i++) {
			struct spate_stream *s = spate_engine_stream_get(c->e, info[i].name);
			if (s) {
				(void)records_in(s);
				spate_engine_stream_put(c->e, s);
			}
		}
		struct spate_stats_view *v;
		if (spate_stats_view_take(c->bus, &v) == 0)
			spate_stats_view_free(v);
		nap_ms(1);
	}
	return NULL;
}

Test(streams, concurrent_add_remove, .timeout = 240)
{
	struct bus b;
	struct spate_engine *e;
	char err[512];
	_Atomic int stop = 0;
	struct churn c[4], w;
	pthread_t th[4], wt;

	bus_init(&b, "stx", true);
	cr_assert_eq(spate_engine_open(b.cfg, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_engine_start(e), 0);
	w = (struct churn){ .e = e, .bus = b.name, .stop = &stop };
	cr_assert_eq(pthread_create(&wt, NULL, watch_main, &w), 0);
	for (unsigned i = 0; i < 4; i++) {
		c[i] = (struct churn){ .e = e, .bus = b.name, .id = i, .stop = &stop };
		cr_assert_eq(pthread_create(&th[i], NULL, churn_main, &c[i]), 0);
	}
	put_n(spate_engine_stream(e, "in"), 500);
	for (unsigned i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	atomic_store_explicit(&stop, 1, memory_order_relaxed);
	pthread_join(wt, NULL);
	for (unsigned i = 0; i < 4; i++)
		cr_assert_eq(c[i].failures, 0, "thread %u: %d failures", i, c[i].failures);
	/* Everything removed: only the YAML stream is left, no files. */
	cr_assert_eq(spate_engine_stream_list(e, NULL, 0), 1);
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/state/streams", b.dir);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s)\"", dir);
	cr_assert_eq(system(cmd), 0, "definitions left in %s", dir);
	struct spate_consumer_stats st;
	uint64_t deadline = mono_ns() + 30000 * MS;
	do {
		cr_assert_eq(spate_engine_consumer_stats(e, "k", &st), 0);
		if (st.records == 500)
			break;
		nap_ms(5);
	} while (mono_ns() < deadline);
	cr_assert_eq(st.records, 500);
	spate_engine_close(e);
	bus_done(&b, NULL);
}
