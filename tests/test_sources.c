/* SPDX-License-Identifier: MIT */
/*
 * Tests for spate/sources.h: `sources:` in YAML (name, type, stream and a
 * tree of type-specific keys with lines and paths), the accessors' typed
 * reads and errors (file, line, field), registration (check() runs on the
 * entries of its type; duplicates, bad structs refused) and the lifecycle:
 * a source started after the consumers, whose appends are consumed, stopped
 * before them; an unregistered type fails the start.
 */
#include "engine_testlib.h"

#include "spate/sources.h"
#include "spate/stats.h"

static const char *const yaml_ok =
	"bus: srcs\n"                                  /* 1 */
	"streams:\n"                                   /* 2 */
	"  - name: in\n"                               /* 3 */
	"sources:\n"                                   /* 4 */
	"  - name: edge\n"                             /* 5 */
	"    type: fake\n"                             /* 6 */
	"    stream: in\n"                             /* 7 */
	"    servers: [a:1, b:2]\n"                    /* 8 */
	"    window: 64KiB\n"                          /* 9 */
	"    auth:\n"                                  /* 10 */
	"      user: u\n"                              /* 11 */
	"      timeout: 2s\n"                          /* 12 */
	"    tls: yes\n"                               /* 13 */
	"    empty:\n"                                 /* 14 */
	"  - name: other\n"                            /* 15 */
	"    type: fake\n"                             /* 16 */
	"    stream: in\n";                            /* 17 */

static struct spate_config *parse(const char *y, char *err, size_t errlen, int *rc)
{
	struct spate_config *c = NULL;

	*rc = spate_config_parse(y, strlen(y), "t.yaml", &c, err, errlen);
	return c;
}

Test(sources, yaml_tree_lines_paths)
{
	char err[512] = "";
	int rc;
	struct spate_config *c = parse(yaml_ok, err, sizeof(err), &rc);

	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(c->n_sources, 2u);
	const struct spate_config_source *s = spate_config_find_source(c, "edge");
	cr_assert_not_null(s);
	cr_assert_str_eq(s->type, "fake");
	cr_assert_str_eq(s->stream, "in");
	cr_assert_eq(s->line, 5u);
	cr_assert_eq(s->type_line, 6u);
	cr_assert_eq(s->keys.n_items, 5u, "name, type, stream are not among the keys");
	const struct spate_config_node *sv = spate_config_source_key(s, "servers");
	cr_assert_not_null(sv);
	cr_assert_eq(sv->kind, SPATE_CONFIG_NODE_LIST);
	cr_assert_eq(sv->n_items, 2u);
	cr_assert_str_eq(sv->items[1].value, "b:2");
	cr_assert_str_eq(sv->items[1].path, "sources[0].servers[1]");
	cr_assert_eq(sv->items[1].line, 8u);
	const struct spate_config_node *auth = spate_config_source_key(s, "auth");
	cr_assert_eq(auth->kind, SPATE_CONFIG_NODE_MAP);
	const struct spate_config_node *user = spate_config_node_get(auth, "user");
	cr_assert_str_eq(user->path, "sources[0].auth.user");
	cr_assert_eq(user->line, 11u);
	const struct spate_config_node *empty = spate_config_source_key(s, "empty");
	cr_assert(empty->null);

	/* Typed reads. */
	uint64_t w = 0, t = 0;
	bool tls = false;
	const char *u = NULL, *absent = "dflt";
	cr_assert_eq(spate_config_node_size(s, &s->keys, "window", 1, 1 << 20, &w, err, sizeof(err)), 0);
	cr_assert_eq(w, 65536u);
	cr_assert_eq(spate_config_node_dur(s, auth, "timeout", 1, 10 * 1000000000ull, &t, err,
					   sizeof(err)), 0);
	cr_assert_eq(t, 2000000000ull);
	cr_assert_eq(spate_config_node_bool(s, &s->keys, "tls", &tls, err, sizeof(err)), 0);
	cr_assert(tls);
	cr_assert_eq(spate_config_node_str(s, auth, "user", &u, err, sizeof(err)), 0);
	cr_assert_str_eq(u, "u");
	cr_assert_eq(spate_config_node_str(s, auth, "nope", &absent, err, sizeof(err)), 0);
	cr_assert_str_eq(absent, "dflt", "an absent key keeps the default");

	/* Typed errors name file, line and path. */
	cr_assert_eq(spate_config_node_size(s, &s->keys, "window", 1, 1024, &w, err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "t.yaml:9: sources[0].window: expected a size from 1 to 1KiB"),
		  "%s", err);
	cr_assert_eq(spate_config_node_u64(s, auth, "user", 0, 9, &w, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "t.yaml:11: sources[0].auth.user: expected an integer"), "%s", err);
	cr_assert_eq(spate_config_node_str(s, &s->keys, "auth", &u, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "t.yaml:10: sources[0].auth: expected a string, got a mapping"), "%s",
		  err);
	static const char *const known[] = { "servers", "window", "auth", "tls", NULL };
	cr_assert_eq(spate_config_node_known(s, &s->keys, known, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "t.yaml:14: sources[0].empty: unknown key; valid keys: servers"),
		  "%s", err);
	static const char *const known2[] = { "servers", "window", "auth", "tls", "emptyy", NULL };
	cr_assert_eq(spate_config_node_known(s, &s->keys, known2, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "did you mean \"emptyy\""), "%s", err);
	spate_config_free(c);
}

/* The core's own checks of an entry. */
Test(sources, yaml_errors)
{
	static const struct {
		const char *yaml, *want;
	} cases[] = {
		{ "bus: b\nstreams:\n  - name: in\nsources:\n  - name: x\n    stream: in\n",
		  "t.yaml:5: sources[0].type: missing" },
		{ "bus: b\nstreams:\n  - name: in\nsources:\n  - name: x\n    type: t\n    stream: nope\n",
		  "t.yaml:7: sources[0].stream: no stream named \"nope\"" },
		{ "bus: b\nstreams:\n  - name: in\nsources:\n  - name: x\n    type: a b\n    stream: in\n",
		  "t.yaml:6: sources[0].type: expected a source type name" },
		{ "bus: b\nstreams:\n  - name: in\nsources:\n  - {name: x, type: t, stream: in}\n"
		  "  - {name: x, type: t, stream: in}\n",
		  "t.yaml:6: sources[1].name: duplicate source name \"x\"" },
		{ "bus: b\nstreams:\n  - name: in\nsources:\n  - name: x\n    type: t\n    stream: in\n"
		  "    k: 1\n    k: 2\n",
		  "t.yaml:9: sources[0].k: duplicate key (first at line 8)" },
		{ "bus: b\nstreams:\n  - name: in\nsources: 3\n", "t.yaml:4: sources: expected a list of sources" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[512] = "";
		int rc;
		struct spate_config *c = parse(cases[i].yaml, err, sizeof(err), &rc);
		cr_assert_eq(rc, -EINVAL, "case %zu", i);
		cr_assert_null(c);
		cr_assert(strstr(err, cases[i].want), "case %zu: \"%s\" lacks \"%s\"", i, err,
			  cases[i].want);
		spate_config_free(c);
	}
}

/* ------------------------------------------------------------------------ */
/* A source type of the test: a thread appending keyed records              */
/* ------------------------------------------------------------------------ */

static _Atomic int checks, starts, stops;
static _Atomic int consumer_up_at_start = -1; /* the consumer ran when start() ran */
static _Atomic int consumer_up_at_stop = -1;
static struct spate_engine *the_engine;

struct fake {
	pthread_t th;
	struct spate_producer *p;
	uint64_t n;
	_Atomic int quit;
	struct spate_stats_source_slot *st;
};

static int fake_check(const struct spate_config_source *src, char *err, size_t errlen)
{
	static const char *const known[] = { "records", NULL };
	uint64_t n = 0;

	atomic_fetch_add(&checks, 1);
	if (spate_config_node_known(src, &src->keys, known, err, errlen) < 0)
		return -EINVAL;
	return spate_config_node_u64(src, &src->keys, "records", 1, 1000000, &n, err, errlen);
}

static int consumer_running(const char *name)
{
	struct spate_consumer_stats st;

	if (spate_engine_consumer_stats(the_engine, name, &st) < 0)
		return 0;
	return st.state == SPATE_CONSUMER_RUNNING;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	char key[16], data[32];

	for (uint64_t i = 0; i < f->n && !atomic_load(&f->quit); i++) {
		snprintf(key, sizeof(key), "k%u", (unsigned)(i % 7));
		int len = snprintf(data, sizeof(data), "rec-%" PRIu64, i);
		cr_assert_eq(spate_put(f->p, key, strlen(key), data, (size_t)len, NULL), 0);
		spate_stats_source_add(f->st, 0, 1);
	}
	return NULL;
}

static int fake_start(struct spate_engine *e, const struct spate_config_source *src, void **state,
		      char *err, size_t errlen)
{
	struct fake *f = calloc(1, sizeof(*f));

	atomic_fetch_add(&starts, 1);
	atomic_store(&consumer_up_at_start, consumer_running("count"));
	cr_assert_not_null(f);
	f->n = 1000;
	spate_config_node_u64(src, &src->keys, "records", 1, 1000000, &f->n, err, errlen);
	f->st = spate_engine_source_stats(e, src->name);
	cr_assert_not_null(f->st);
	cr_assert_eq(spate_stats_source_counter(f->st, 0, "appended"), 0);
	cr_assert_eq(spate_stats_source_counter(f->st, 2, "skipped"), -EINVAL,
		     "names are set in order");
	int rc = spate_producer_open(spate_engine_stream(e, src->stream), SPATE_RING_WAIT_YIELD, 0,
				     &f->p);
	if (rc < 0) {
		snprintf(err, errlen, "producer: %s", strerror(-rc));
		free(f);
		return rc;
	}
	cr_assert_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
	*state = f;
	return 0;
}

static void fake_stop(void *state)
{
	struct fake *f = state;

	atomic_fetch_add(&stops, 1);
	atomic_store(&f->quit, 1);
	pthread_join(f->th, NULL);
	atomic_store(&consumer_up_at_stop, consumer_running("count"));
	spate_producer_close(f->p);
	free(f);
}

static const struct spate_source_type fake_type = {
	.struct_size = sizeof(struct spate_source_type),
	.name = "fake",
	.check = fake_check,
	.start = fake_start,
	.stop = fake_stop,
};

static void reset(void)
{
	atomic_store(&checks, 0);
	atomic_store(&starts, 0);
	atomic_store(&stops, 0);
}

Test(sources, lifecycle, .timeout = 60)
{
	struct bus b;
	struct spate_config_source *src;
	char err[512] = "";

	reset();
	bus_init(&b, "life");
	bus_stream(&b, "in", 2, 1 << 20);
	bus_consumer(&b, "count", "in", "count");
	cr_assert_eq(spate_config_add_source(b.cfg, "gen", "fake", "in", &src), 0);
	cr_assert_eq(spate_config_source_set(src, "records", "5000"), 0);
	cr_assert_eq(spate_config_add_source(b.cfg, "gen", "fake", "in", NULL), -EEXIST);
	cr_assert_eq(spate_config_source_set(src, "stream", "x"), -EINVAL);
	bus_open(&b);
	the_engine = b.e;

	struct spate_source_type bad = fake_type;
	bad.struct_size = 8;
	cr_assert_eq(spate_engine_register_source_type(b.e, &bad, err, sizeof(err)), -EINVAL);
	cr_assert_eq(spate_engine_register_source_type(b.e, &fake_type, err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(atomic_load(&checks), 1, "check() ran on the entry");
	cr_assert_eq(spate_engine_register_source_type(b.e, &fake_type, err, sizeof(err)), -EEXIST);

	cr_assert_eq(spate_engine_start(b.e), 0);
	cr_assert_eq(atomic_load(&starts), 1);
	cr_assert_eq(atomic_load(&consumer_up_at_start), 1, "started after the consumers");
	struct spate_stats_source_slot *st = spate_engine_source_stats(b.e, "gen");
	cr_assert_not_null(st);
	cr_assert_str_eq(st->counter_names[0], "appended");
	uint64_t t0 = mono_ns();
	struct spate_consumer_stats cs = stats_of(b.e, "count");
	while (cs.records < 5000 && mono_ns() - t0 < 30000 * MS) {
		nap_ms(10);
		cs = stats_of(b.e, "count");
	}
	cr_assert_eq(cs.records, 5000u, "the consumer got every appended record");
	cr_assert_eq(atomic_load(&st->counters[0]), 5000u);
	cr_assert_eq(atomic_load(&st->state), SPATE_STATS_SOURCE_UP);
	cr_assert_eq(spate_engine_register_source_type(b.e, &bad, err, sizeof(err)), -EINVAL);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	cr_assert_eq(atomic_load(&stops), 1);
	cr_assert_eq(atomic_load(&consumer_up_at_stop), 1, "stopped before the consumers");
	cr_assert_eq(atomic_load(&st->state), SPATE_STATS_SOURCE_STOPPED);
	bus_done(&b);
}

/* check() refuses an entry: registering fails with its message. */
Test(sources, check_refuses, .timeout = 60)
{
	struct bus b;
	struct spate_config_source *src;
	char err[512] = "";

	reset();
	bus_init(&b, "chk");
	bus_stream(&b, "in", 1, 1 << 20);
	cr_assert_eq(spate_config_add_source(b.cfg, "gen", "fake", "in", &src), 0);
	cr_assert_eq(spate_config_source_set(src, "recordz", "5"), 0);
	bus_open(&b);
	cr_assert_eq(spate_engine_register_source_type(b.e, &fake_type, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "sources[0].recordz: unknown key; did you mean \"records\"?"), "%s",
		  err);
	bus_done(&b);
}

/* An entry whose type nobody registered: the start fails, nothing runs. */
Test(sources, unknown_type, .timeout = 60)
{
	struct bus b;

	reset();
	bus_init(&b, "unk");
	bus_stream(&b, "in", 1, 1 << 20);
	cr_assert_eq(spate_config_add_source(b.cfg, "gen", "nosuch", "in", NULL), 0);
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), -ENOENT);
	cr_assert_eq(atomic_load(&starts), 0);
	bus_done(&b);
}
