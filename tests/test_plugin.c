/* SPDX-License-Identifier: MIT */
/*
 * Tests for the plugin host (engine/plugin.c) and the bundled plugins
 * (plugins/): lookup by name and path, refusals of bad plugins with their
 * messages, hot reload from a path rewritten in place, and each plugin driven
 * through init/process/flush/fini with hand-built batches and a test host.
 *
 * The bundled plugins are found through SPATE_PLUGIN_PATH (set by meson to
 * <build>/plugins, or here from TEST_PLUGIN_DIR), the bad ones in
 * TEST_BUILD_DIR (bad_plugin.c).
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spate_config.h"
#include "engine/plugin_host.h"
#include "plugins/plugin_util.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static const char *plugin_dir(void)
{
	const char *p = getenv(SPATE_PLUGIN_PATH_ENV);

	if (!p || !p[0]) {
		setenv(SPATE_PLUGIN_PATH_ENV, TEST_PLUGIN_DIR, 1);
		p = TEST_PLUGIN_DIR;
	}
	return p;
}

/* A fresh directory for one test's files. */
static void tmpdir_for(char *buf, size_t len, const char *tag)
{
	snprintf(buf, len, "/tmp/spate-test-plugin-%s-XXXXXX", tag);
	cr_assert_not_null(mkdtemp(buf), "mkdtemp: %s", strerror(errno));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Contents of a file, NUL-terminated, in buf; its length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = 0;

	if (fd < 0)
		return -1;
	while ((size_t)n < len - 1) {
		ssize_t r = read(fd, buf + n, len - 1 - (size_t)n);
		if (r <= 0)
			break;
		n += r;
	}
	close(fd);
	buf[n] = 0;
	return n;
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	ssize_t r;

	cr_assert(in >= 0 && out >= 0, "copy %s -> %s: %s", from, to, strerror(errno));
	while ((r = read(in, buf, sizeof(buf))) > 0)
		cr_assert_eq(write(out, buf, (size_t)r), r);
	close(in);
	close(out);
}

/* Entries in a directory (not . and ..), or -1. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

/* Load by spec; assert success. */
static struct spate_plugin_lib *load_ok(const char *spec)
{
	struct spate_plugin_lib *lib = NULL;
	char err[1024];
	int rc = spate_plugin_load(spec, &lib, err, sizeof(err));

	cr_assert_eq(rc, 0, "load %s: %d (%s)", spec, rc, err);
	cr_assert_not_null(lib);
	return lib;
}

/* Load by spec; assert the error and that the message holds each of the
 * NULL-terminated strings. */
static void load_fails(const char *spec, int want, ...)
{
	struct spate_plugin_lib *lib = (void *)1;
	char err[1024];
	const char *s;
	va_list ap;
	int rc = spate_plugin_load(spec, &lib, err, sizeof(err));

	cr_assert_eq(rc, want, "load %s: %d (%s), wanted %d", spec, rc, err, want);
	cr_assert_null(lib);
	va_start(ap, want);
	while ((s = va_arg(ap, const char *)))
		cr_assert_not_null(strstr(err, s), "message '%s' lacks '%s'", err, s);
	va_end(ap);
}

/* A host recording log lines and put() calls. */
struct put_call {
	char stream[64];
	unsigned char key[16];
	size_t key_len;
	char data[128];
	size_t len;
};

struct test_host {
	struct spate_plugin_host h;
	char last_log[512];
	int nlog;
	int nput;            /* put() calls, failed ones included */
	int fail_at;         /* 1-based call that fails, 0: none */
	int fail_rc;
	int ok;              /* successful calls */
	struct put_call calls[64];
};

__attribute__((format(printf, 3, 4))) static void th_log(const struct spate_plugin_host *h,
							  enum spate_log_level lvl,
							  const char *fmt, ...)
{
	struct test_host *t = h->host_private;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->last_log, sizeof(t->last_log), fmt, ap);
	va_end(ap);
	t->nlog++;
}

static int th_put(const struct spate_plugin_host *h, const char *stream, const void *key,
		  size_t key_len, const void *data, size_t len)
{
	struct test_host *t = h->host_private;
	struct put_call *c;

	t->nput++;
	if (t->fail_at && t->nput >= t->fail_at)
		return t->fail_rc;
	cr_assert_lt(t->ok, 64);
	c = &t->calls[t->ok++];
	snprintf(c->stream, sizeof(c->stream), "%s", stream);
	cr_assert_leq(key_len, sizeof(c->key));
	memcpy(c->key, key, key_len);
	c->key_len = key_len;
	cr_assert_lt(len, sizeof(c->data));
	memcpy(c->data, data, len);
	c->data[len] = 0;
	c->len = len;
	return 0;
}

static void host_init(struct test_host *t)
{
	memset(t, 0, sizeof(*t));
	t->h.struct_size = sizeof(t->h);
	t->h.log = th_log;
	t->h.put = th_put;
	t->h.host_private = t;
}

/* A plugin instance under test: its library, descriptor, one state. */
struct inst {
	struct spate_plugin_lib *lib;
	const struct spate_plugin *p;
	void *state;
	struct test_host host;
	uint32_t shard;
};

static int inst_open(struct inst *in, const char *spec, uint32_t shard, uint32_t lane,
		     const struct spate_plugin_opt *opts, uint32_t n_opts)
{
	struct spate_plugin_ctx ctx = {
		.struct_size = sizeof(ctx), .consumer = "c1", .stream = "s1", .shard = shard,
		.lane = lane, .opts = opts, .n_opts = n_opts,
	};

	memset(in, 0, sizeof(*in));
	host_init(&in->host);
	ctx.host = &in->host.h;
	in->shard = shard;
	in->lib = load_ok(spec);
	in->p = spate_plugin_lib_desc(in->lib);
	return in->p->init(&ctx, &in->state);
}

static void inst_close(struct inst *in)
{
	if (in->state && in->p->flush)
		in->p->flush(in->state, 0);
	if (in->state && in->p->fini)
		in->p->fini(in->state);
	in->state = NULL;
	spate_plugin_unload(in->lib);
	in->lib = NULL;
}

/* Records with the given payloads and sequence numbers seq0, seq0+1, ... */
struct recs {
	struct spate_ring_rec r[64];
	uint32_t n;
};

static void recs_add(struct recs *rs, uint64_t seq, const char *payload, uint8_t type,
		     uint32_t key_hash)
{
	cr_assert_lt(rs->n, 64);
	rs->r[rs->n++] = (struct spate_ring_rec){ .data = payload, .seq = seq, .ts = 1,
						  .len = (uint32_t)strlen(payload),
						  .key_hash = key_hash, .type = type };
}

static void recs_seq(struct recs *rs, uint64_t seq0, uint32_t n, const char *const *payloads)
{
	rs->n = 0;
	for (uint32_t i = 0; i < n; i++)
		recs_add(rs, seq0 + i, payloads[i], 0, 0);
}

static struct spate_batch_result run(struct inst *in, const struct recs *rs, uint32_t attempt)
{
	struct spate_batch b = { .recs = rs->r, .count = rs->n, .shard = in->shard,
				 .attempt = attempt, .consumer = "c1", .stream = "s1",
				 .host = &in->host.h, .struct_size = sizeof(b) };
	struct spate_batch_result res;
	int rc;

	memset(&res, 0, sizeof(res));
	res.struct_size = sizeof(res);
	rc = in->p->process(in->state, &b, &res);
	cr_assert_eq(rc, 0, "process: %d", rc);
	return res;
}

static const char *const P10[] = { "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9",
				   "r10", "r11", "r12", "r13", "r14", "r15" };

static json_object *summary(const char *path)
{
	json_object *j = json_object_from_file(path);

	cr_assert_not_null(j, "summary %s: %s", path, json_util_get_last_err());
	return j;
}

static uint64_t jget(json_object *j, const char *key)
{
	json_object *v;

	cr_assert(json_object_object_get_ex(j, key, &v), "summary lacks %s", key);
	cr_assert(json_object_is_type(v, json_type_int), "summary %s is not an integer", key);
	return json_object_get_uint64(v);
}

static uint64_t expected_sum(const struct recs *rs, uint32_t from, uint32_t to)
{
	uint64_t s = 0;

	for (uint32_t i = from; i < to; i++)
		s += pu_payload_sum(rs->r[i].data, rs->r[i].len, PU_TOUCH_ALL);
	return s;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

static const char *const bundled[] = { "count", "file", "forward", "fail" };

Test(plugin, load_bundled_by_name)
{
	plugin_dir();
	for (size_t i = 0; i < 4; i++) {
		struct spate_plugin_lib *lib = load_ok(bundled[i]);
		const struct spate_plugin *d = spate_plugin_lib_desc(lib);
		const char *path = spate_plugin_lib_path(lib);
		char want[64];

		cr_assert_str_eq(spate_plugin_lib_name(lib), bundled[i]);
		cr_assert_str_eq(spate_plugin_lib_version(lib), "1.0");
		cr_assert_eq(d->abi_version, SPATE_PLUGIN_ABI_VERSION);
		cr_assert_eq(d->struct_size, sizeof(struct spate_plugin));
		cr_assert_not_null(d->init);
		cr_assert_not_null(d->process);
		cr_assert_eq(path[0], '/', "path %s is not absolute", path);
		snprintf(want, sizeof(want), "/%s.so", bundled[i]);
		cr_assert_str_eq(path + strlen(path) - strlen(want), want);
		spate_plugin_unload(lib);
	}
	spate_plugin_unload(NULL);
}

Test(plugin, load_bundled_by_path)
{
	plugin_dir();
	for (size_t i = 0; i < 4; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s.so", TEST_PLUGIN_DIR, bundled[i]);
		struct spate_plugin_lib *lib = load_ok(path);
		cr_assert_str_eq(spate_plugin_lib_name(lib), bundled[i]);
		spate_plugin_unload(lib);
	}
	/* Relative paths work too (anything with a '/'). */
	cr_assert_eq(chdir(TEST_PLUGIN_DIR), 0);
	struct spate_plugin_lib *lib = load_ok("./count.so");
	cr_assert_str_eq(spate_plugin_lib_name(lib), "count");
	spate_plugin_unload(lib);
}

Test(plugin, search_path_order)
{
	char a[256], b[256], path[512], env[600];

	tmpdir_for(a, sizeof(a), "pa");
	tmpdir_for(b, sizeof(b), "pb");
	/* a/count.so is really fail.so; b/count.so is count. Empty elements
	 * and missing directories are skipped. */
	snprintf(path, sizeof(path), "%s/count.so", a);
	copy_file(TEST_PLUGIN_DIR "/fail.so", path);
	snprintf(path, sizeof(path), "%s/count.so", b);
	copy_file(TEST_PLUGIN_DIR "/count.so", path);
	snprintf(env, sizeof(env), "::/nonexistent-spate:%s:%s", a, b);
	setenv(SPATE_PLUGIN_PATH_ENV, env, 1);
	struct spate_plugin_lib *lib = load_ok("count");
	cr_assert_str_eq(spate_plugin_lib_name(lib), "fail");
	spate_plugin_unload(lib);
	snprintf(env, sizeof(env), "%s:%s", b, a);
	setenv(SPATE_PLUGIN_PATH_ENV, env, 1);
	lib = load_ok("count");
	cr_assert_str_eq(spate_plugin_lib_name(lib), "count");
	spate_plugin_unload(lib);
	rm_tree(a);
	rm_tree(b);
}

Test(plugin, refuses_other_abi)
{
	plugin_dir();
	load_fails(TEST_BUILD_DIR "/bad_abi.so", -EPROTO, "bad_abi.so", "built for plugin ABI 999",
		   "this host speaks ABI 1", "a newer spate", NULL);
	/* A future ABI exports another symbol; the message still says which. */
	load_fails(TEST_BUILD_DIR "/bad_v2.so", -EPROTO, "bad_v2.so", "built for plugin ABI 2",
		   "this host speaks ABI 1", "a newer spate", NULL);
}

Test(plugin, refuses_wrong_struct_size)
{
	char want[96];

	snprintf(want, sizeof(want), "has a %u-byte descriptor, not one of plugin ABI 1 (%u bytes",
		 SPATE_PLUGIN_DESC_MIN_SIZE - 8, SPATE_PLUGIN_DESC_MIN_SIZE);
	load_fails(TEST_BUILD_DIR "/bad_size.so", -EPROTO, "bad_size.so", want, NULL);
}

/* ------------------------------------------------------------------------ */
/* ABI growth (docs/plugins.md)                                             */
/* ------------------------------------------------------------------------ */

/* A newer revision's descriptor that sets a hook this host does not know:
 * refused (the host could not call it), naming both sizes. */
Test(plugin, abi_refuses_unknown_newer_hook)
{
	char want[96], rev[32];

	snprintf(want, sizeof(want), "sets a field at byte %zu, past the %zu bytes",
		 sizeof(struct spate_plugin), sizeof(struct spate_plugin));
	snprintf(rev, sizeof(rev), "ABI 1 revision %u", SPATE_PLUGIN_ABI_REVISION);
	load_fails(TEST_BUILD_DIR "/bad_tail.so", -EPROTO, "bad_tail.so", want, rev, NULL);
}

/* The same newer descriptor with nothing set past this host's size runs. */
Test(plugin, abi_newer_descriptor_with_zeros_loads)
{
	struct spate_plugin_lib *lib = load_ok(TEST_BUILD_DIR "/newer_plugin.so");
	const struct spate_plugin *d = spate_plugin_lib_desc(lib);

	cr_assert_str_eq(spate_plugin_lib_name(lib), "newer");
	cr_assert_eq(d->struct_size, sizeof(struct spate_plugin) + sizeof(void (*)(void)));
	cr_assert_null(d->load);
	cr_assert_null(d->unload);
	spate_plugin_unload(lib);
}

/* A plugin built against the frozen header of ABI 1 revision 0
 * (tests/abi/plugin_v1.h: 64-byte descriptor, no batch or result sizes)
 * loads and processes batches; the hooks it cannot have read as NULL,
 * although its object continues with function pointers where they would be
 * (old_plugin.c): a host reading past its struct_size fails the load or
 * aborts at unload. */
Test(plugin, abi_old_descriptor_runs)
{
	static const char *const pl[] = { "a", "b", "c" };
	static const char *const pl2[] = { "d", "bad", "e" };
	struct recs rs;
	struct inst in;

	cr_assert_eq(inst_open(&in, TEST_BUILD_DIR "/old_plugin.so", 2, 0, NULL, 0), 0);
	cr_assert_str_eq(spate_plugin_lib_name(in.lib), "abi_old");
	cr_assert_eq(in.p->struct_size, SPATE_PLUGIN_DESC_MIN_SIZE);
	cr_assert_null(in.p->load);
	cr_assert_null(in.p->unload);
	cr_assert_null(in.p->fini);
	cr_assert_null(in.p->flush);

	recs_seq(&rs, 10, 3, pl);
	struct spate_batch_result res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_OK);
	cr_assert_str_eq(in.host.last_log, "abi: 3 records, seq 10..12, sizes 0/0");
	/* The old plugin never writes the result's size: the host's stays. */
	cr_assert_eq(res.struct_size, sizeof(res));

	recs_seq(&rs, 13, 3, pl2);
	res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_PARTIAL);
	cr_assert_eq(res.failed_index, 1);
	cr_assert_str_eq(res.error, "abi: record 1 is bad");
	cr_assert_str_eq(in.host.last_log, "abi: 3 records, seq 13..15, sizes 0/0");
	inst_close(&in);
}

/* Today's revision: load runs once per image with the host's revision,
 * unload once at spate_plugin_unload(); process sees the host's sizes of the
 * batch and the result; a failing load refuses the plugin with its reason
 * and without an unload. */
Test(plugin, abi_current_hooks_and_sizes)
{
	char dir[PATH_MAX], trace[PATH_MAX + 16], buf[256], want[64];
	static const char *const pl[] = { "x", "y" };
	struct recs rs;
	struct inst in;

	tmpdir_for(dir, sizeof(dir), "abi");
	snprintf(trace, sizeof(trace), "%s/trace", dir);
	setenv("SPATE_TEST_ABI_TRACE", trace, 1);
	cr_assert_eq(inst_open(&in, TEST_BUILD_DIR "/cur_plugin.so", 0, 0, NULL, 0), 0);
	cr_assert_eq(in.p->struct_size, sizeof(struct spate_plugin));
	cr_assert_not_null(in.p->load);
	snprintf(want, sizeof(want), "load %u\n", SPATE_PLUGIN_ABI_REVISION);
	cr_assert_gt(slurp(trace, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, want);

	recs_seq(&rs, 0, 2, pl);
	struct spate_batch_result res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_OK);
	snprintf(want, sizeof(want), "abi: 2 records, seq 0..1, sizes %zu/%zu",
		 sizeof(struct spate_batch), sizeof(struct spate_batch_result));
	cr_assert_str_eq(in.host.last_log, want);
	inst_close(&in);
	snprintf(want, sizeof(want), "load %u\nunload\n", SPATE_PLUGIN_ABI_REVISION);
	cr_assert_gt(slurp(trace, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, want);

	setenv("SPATE_TEST_ABI_LOAD_FAIL", "1", 1);
	load_fails(TEST_BUILD_DIR "/cur_plugin.so", -EPERM, "cur_plugin.so",
		   "its load hook failed: refused on request", NULL);
	unsetenv("SPATE_TEST_ABI_LOAD_FAIL");
	unsetenv("SPATE_TEST_ABI_TRACE");
	cr_assert_gt(slurp(trace, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, want, "no unload after a failed load");
	rm_tree(dir);
}

Test(plugin, refuses_missing_symbol)
{
	load_fails(TEST_BUILD_DIR "/bad_nosym.so", -ELIBBAD, "bad_nosym.so", SPATE_PLUGIN_SYMBOL,
		   "undefined symbol", NULL);
}

Test(plugin, refuses_incomplete_descriptor)
{
	load_fails(TEST_BUILD_DIR "/bad_desc.so", -EINVAL, "bad_desc.so", "no process", NULL);
}

Test(plugin, refuses_non_library)
{
	char dir[256], path[512];

	tmpdir_for(dir, sizeof(dir), "nl");
	snprintf(path, sizeof(path), "%s/text.so", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("not an ELF file\n", f);
	fclose(f);
	load_fails(path, -ELIBBAD, "cannot load plugin", "text.so", NULL);
	/* A directory is not a plugin either. */
	load_fails(dir, -EINVAL, dir, "not a regular file", NULL);
	rm_tree(dir);
}

Test(plugin, not_found_lists_search_path)
{
	setenv(SPATE_PLUGIN_PATH_ENV, "/nonexistent-a:/nonexistent-b", 1);
	load_fails("nosuch", -ENOENT, "plugin 'nosuch' not found", "nosuch.so", "/nonexistent-a",
		   "/nonexistent-b", SPATE_PLUGIN_DIR, NULL);
	unsetenv(SPATE_PLUGIN_PATH_ENV);
	load_fails("nosuch", -ENOENT, SPATE_PLUGIN_DIR, NULL);
	load_fails("/nonexistent-spate/x.so", -ENOENT, "/nonexistent-spate/x.so", NULL);
}

Test(plugin, bad_spec)
{
	struct spate_plugin_lib *lib;
	char err[256];

	load_fails("Count", -EINVAL, "'Count'", "[a-z0-9_]+", NULL);
	load_fails("count.so", -EINVAL, "./count.so", NULL);
	load_fails("", -EINVAL, NULL);
	cr_assert_eq(spate_plugin_load(NULL, &lib, err, sizeof(err)), -EINVAL);
	cr_assert_eq(spate_plugin_load("count", NULL, err, sizeof(err)), -EINVAL);
	/* No error buffer is fine. */
	cr_assert_eq(spate_plugin_load("nosuch", &lib, NULL, 0), -ENOENT);
}

Test(plugin, resolve)
{
	char path[4096], err[1024];

	plugin_dir();
	cr_assert_eq(spate_plugin_resolve("count", path, sizeof(path), err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_str_eq(path, TEST_PLUGIN_DIR "/count.so");
	cr_assert_eq(spate_plugin_resolve("/a/b.so", path, 4, err, sizeof(err)), -ENAMETOOLONG);
}

/* A new build at the same path loads as a new image; the old one stays. */
Test(plugin, hot_reload_same_path)
{
	char dir[256], path[512];

	tmpdir_for(dir, sizeof(dir), "hot");
	snprintf(path, sizeof(path), "%s/mine.so", dir);
	copy_file(TEST_PLUGIN_DIR "/count.so", path);
	struct spate_plugin_lib *a = load_ok(path);
	cr_assert_str_eq(spate_plugin_lib_name(a), "count");
	struct spate_plugin_lib *a2 = load_ok(path);
	cr_assert_neq(spate_plugin_lib_desc(a)->process, spate_plugin_lib_desc(a2)->process,
		      "two loads share an image");
	spate_plugin_unload(a2);

	copy_file(TEST_PLUGIN_DIR "/fail.so", path); /* overwrite in place */
	struct spate_plugin_lib *b = load_ok(path);
	cr_assert_str_eq(spate_plugin_lib_name(b), "fail");
	/* The old image is still mapped and usable. */
	cr_assert_str_eq(spate_plugin_lib_name(a), "count");
	void *st = NULL;
	struct spate_plugin_ctx ctx = { .struct_size = sizeof(ctx), .consumer = "c", .stream = "s" };
	cr_assert_eq(spate_plugin_lib_desc(a)->init(&ctx, &st), 0);
	spate_plugin_lib_desc(a)->fini(st);
	spate_plugin_unload(a);
	spate_plugin_unload(b);
	rm_tree(dir);
}

/* Debug mode loads in place: glibc hands back the image already loaded. */
Test(plugin, debug_loads_in_place)
{
	char dir[256], path[512];

	tmpdir_for(dir, sizeof(dir), "debug");
	snprintf(path, sizeof(path), "%s/mine.so", dir);
	copy_file(TEST_PLUGIN_DIR "/count.so", path);
	setenv(SPATE_PLUGIN_DEBUG_ENV, "1", 1);
	struct spate_plugin_lib *a = load_ok(path);
	struct spate_plugin_lib *b = load_ok(path);
	/* One image: the same functions (the descriptors are the host's copies). */
	cr_assert_eq(spate_plugin_lib_desc(a)->process, spate_plugin_lib_desc(b)->process);
	spate_plugin_unload(b);
	spate_plugin_unload(a);
	unsetenv(SPATE_PLUGIN_DEBUG_ENV);
	rm_tree(dir);
}

/* The private copies leave nothing behind; an unusable copy directory is
 * skipped for the next candidate. */
Test(plugin, copies_cleaned_up)
{
	char dir[256];

	plugin_dir();
	tmpdir_for(dir, sizeof(dir), "copies");
	setenv(SPATE_PLUGIN_TMPDIR_ENV, dir, 1);
	struct spate_plugin_lib *a = load_ok("count");
	struct spate_plugin_lib *b = load_ok("fail");
	cr_assert_eq(count_entries(dir), 0, "copies left in %s", dir);
	spate_plugin_unload(a);
	spate_plugin_unload(b);
	setenv(SPATE_PLUGIN_TMPDIR_ENV, "/nonexistent-spate-tmp", 1);
	a = load_ok("count");
	spate_plugin_unload(a);
	unsetenv(SPATE_PLUGIN_TMPDIR_ENV);
	rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* count                                                                    */
/* ------------------------------------------------------------------------ */

Test(plugin, count_summary)
{
	char dir[256], tmpl[512], path[512];
	struct inst in;
	struct recs rs;

	plugin_dir();
	tmpdir_for(dir, sizeof(dir), "count");
	snprintf(tmpl, sizeof(tmpl), "%s/count-%%s.json", dir);
	struct spate_plugin_opt o[] = { { "summary", tmpl } };
	cr_assert_eq(inst_open(&in, "count", 3, 0, o, 1), 0);
	recs_seq(&rs, 100, 10, P10);
	struct spate_batch_result res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_OK);
	uint64_t want_sum = expected_sum(&rs, 0, 10);
	recs_seq(&rs, 110, 6, P10 + 10);
	run(&in, &rs, 1);
	want_sum += expected_sum(&rs, 0, 6);
	inst_close(&in);

	snprintf(path, sizeof(path), "%s/count-3.json", dir);
	json_object *j = summary(path);
	cr_assert_eq(jget(j, "records"), 16);
	cr_assert_eq(jget(j, "bytes"), 10 * 2 + 6 * 3);
	cr_assert_eq(jget(j, "gaps"), 0);
	cr_assert_eq(jget(j, "duplicates"), 0);
	cr_assert_eq(jget(j, "delivered"), 16);
	cr_assert_eq(jget(j, "first_seq"), 100);
	cr_assert_eq(jget(j, "last_seq"), 115);
	cr_assert_eq(jget(j, "batches"), 2);
	cr_assert_eq(jget(j, "shard"), 3);
	json_object *cs;
	cr_assert(json_object_object_get_ex(j, "checksum", &cs));
	char want[32];
	snprintf(want, sizeof(want), "%016llx", (unsigned long long)want_sum);
	cr_assert_str_eq(json_object_get_string(cs), want);
	json_object_put(j);
	rm_tree(dir);
}

Test(plugin, count_gaps_and_duplicates)
{
	char dir[256], tmpl[512], path[512];
	struct inst in;
	struct recs rs;

	plugin_dir();
	tmpdir_for(dir, sizeof(dir), "countgd");
	snprintf(tmpl, sizeof(tmpl), "%s/c.json", dir);
	struct spate_plugin_opt o[] = { { "summary", tmpl } };
	cr_assert_eq(inst_open(&in, "count", 1, 0, o, 1), 0);
	recs_seq(&rs, 0, 5, P10);              /* 0..4 */
	run(&in, &rs, 1);
	run(&in, &rs, 2);                      /* redelivered: 5 duplicates */
	recs_seq(&rs, 8, 2, P10 + 8);          /* 8, 9: 5..7 missing */
	run(&in, &rs, 1);
	rs.n = 0;
	recs_add(&rs, 4, "r4", 0, 0);          /* overlap: 4 duplicate, 10 new */
	recs_add(&rs, 10, "r10", 0, 0);
	run(&in, &rs, 1);
	inst_close(&in);

	snprintf(path, sizeof(path), "%s/c.json.shard1", dir); /* no %s: appended */
	json_object *j = summary(path);
	cr_assert_eq(jget(j, "records"), 8);
	cr_assert_eq(jget(j, "duplicates"), 6);
	cr_assert_eq(jget(j, "gaps"), 3);
	cr_assert_eq(jget(j, "delivered"), 14);
	cr_assert_eq(jget(j, "first_seq"), 0);
	cr_assert_eq(jget(j, "last_seq"), 10);
	cr_assert_eq(jget(j, "batches"), 4);
	json_object_put(j);
	rm_tree(dir);
}

Test(plugin, count_touch_and_lanes)
{
	char dir[256], tmpl[512], path[512];
	const char *touches[] = { "all", "first", "none" };
	char sums[3][32];
	struct inst in;
	struct recs rs;
	const char *long_payloads[] = { "0123456789abcdefXYZ", "0123456789abcdefxyz" };

	plugin_dir();
	tmpdir_for(dir, sizeof(dir), "touch");
	for (int t = 0; t < 3; t++) {
		snprintf(tmpl, sizeof(tmpl), "%s/t%d-%%s.json", dir, t);
		struct spate_plugin_opt o[] = { { "touch", touches[t] }, { "summary", tmpl } };
		cr_assert_eq(inst_open(&in, "count", 2, 1, o, 2), 0);
		recs_seq(&rs, 0, 2, long_payloads);
		run(&in, &rs, 1);
		inst_close(&in);
		snprintf(path, sizeof(path), "%s/t%d-2.json.lane1", dir, t);
		json_object *j = summary(path), *cs;
		cr_assert_eq(jget(j, "records"), 2);
		cr_assert_eq(jget(j, "lane"), 1);
		cr_assert(json_object_object_get_ex(j, "checksum", &cs));
		snprintf(sums[t], sizeof(sums[t]), "%s", json_object_get_string(cs));
		json_object_put(j);
	}
	/* all reads the differing tail; first and none do not. */
	cr_assert(strcmp(sums[0], sums[1]) != 0);
	uint64_t first2 = 2 * pu_payload_sum(long_payloads[0], 19, PU_TOUCH_FIRST);
	char want[32];
	snprintf(want, sizeof(want), "%016llx", (unsigned long long)first2);
	cr_assert_str_eq(sums[1], want);

	struct spate_plugin_opt bad[] = { { "touch", "some" } };
	cr_assert_eq(inst_open(&in, "count", 0, 0, bad, 1), -EINVAL);
	cr_assert_not_null(strstr(in.host.last_log, "touch"), "log: %s", in.host.last_log);
	spate_plugin_unload(in.lib);
	rm_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* file                                                                     */
/* ------------------------------------------------------------------------ */

Test(plugin, file_lines)
{
	char dir[256], tmpl[512], path[512], buf[4096];
	struct inst in;
	struct recs rs;
	const char *p[] = { "a", "bb", "ccc" };

	plugin_dir();
	tmpdir_for(dir, sizeof(dir), "file");
	snprintf(tmpl, sizeof(tmpl), "%s/out-%%s.txt", dir);
	struct spate_plugin_opt o[] = { { "path", tmpl } };
	cr_assert_eq(inst_open(&in, "file", 0, 0, o, 1), 0);
	cr_assert_eq(in.p->flush_interval_ns, 100000000u);
	recs_seq(&rs, 7, 3, p);
	struct spate_batch_result res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_OK);
	snprintf(path, sizeof(path), "%s/out-0.txt", dir);
	/* flush: batch (default) has written before process() returned. */
	cr_assert_eq(slurp(path, buf, sizeof(buf)), 9);
	cr_assert_str_eq(buf, "a\nbb\nccc\n");
	inst_close(&in);

	/* prefix: seq, appended to what is there */
	struct spate_plugin_opt o2[] = { { "path", tmpl }, { "prefix", "seq" } };
	cr_assert_eq(inst_open(&in, "file", 0, 0, o2, 2), 0);
	run(&in, &rs, 1);
	inst_close(&in);
	slurp(path, buf, sizeof(buf));
	cr_assert_str_eq(buf, "a\nbb\nccc\n7 a\n8 bb\n9 ccc\n");

	/* append: false truncates */
	struct spate_plugin_opt o3[] = { { "path", tmpl }, { "append", "false" },
					 { "sync", "true" } };
	cr_assert_eq(inst_open(&in, "file", 0, 0, o3, 3), 0);
	rs.n = 1;
	run(&in, &rs, 1);
	inst_close(&in);
	slurp(path, buf, sizeof(buf));
	cr_assert_str_eq(buf, "a\n");
	rm_tree(dir);
}

Test(plugin, file_raw)
{
	char dir[256], tmpl[512], path[512];
	unsigned char buf[256];
	struct inst in;
	struct recs rs;
	const char *p[] = { "xy", "" };

	plugin_dir();
	tmpdir_for(dir, sizeof(dir), "raw");
	snprintf(tmpl, sizeof(tmpl), "%s/raw.bin", dir);
	struct spate_plugin_opt o[] = { { "path", tmpl }, { "format", "raw" }, { "prefix", "seq" } };
	cr_assert_eq(inst_open(&in, "file", 5, 0, o, 3), 0);
	recs_seq(&rs, 0x0102, 2, p);
	run(&in, &rs, 1);
	inst_close(&in);
	snprintf(path, sizeof(path), "%s/raw.bin.shard5", dir);
	cr_assert_eq(slurp(path, (char *)buf, sizeof(buf)), 8 + 4 + 2 + 8 + 4);
	static const unsigned char want[] = { 0x02, 0x01, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 'x', 'y',
					      0x03, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	cr_assert_eq(memcmp(buf, want, sizeof(want)), 0);
	rm_tree(dir);
}

Test(plugin, file_interval_and_big_records)
{
	char dir[256], tmpl[512], path[512];
	static char big[10000], buf[32768];
	struct inst in;
	struct recs rs;
	const char *p[] = { "one", "two" };

	plugin_dir();
	tmpdir_for(dir, sizeof(dir), "interval");
	snprintf(tmpl, sizeof(tmpl), "%s/o%%s", dir);
	snprintf(path, sizeof(path), "%s/o0", dir);
	struct spate_plugin_opt o[] = { { "path", tmpl }, { "flush", "interval" },
					{ "buffer", "4096" } };
	cr_assert_eq(inst_open(&in, "file", 0, 0, o, 3), 0);
	recs_seq(&rs, 0, 2, p);
	run(&in, &rs, 1);
	cr_assert_eq(slurp(path, buf, sizeof(buf)), 0, "interval mode wrote before the tick");
	cr_assert_eq(in.p->flush(in.state, 1), 0);
	slurp(path, buf, sizeof(buf));
	cr_assert_str_eq(buf, "one\ntwo\n");

	/* A record larger than the buffer goes straight to the file, in order. */
	memset(big, 'b', sizeof(big) - 1);
	rs.n = 0;
	recs_add(&rs, 2, "three", 0, 0);
	recs_add(&rs, 3, big, 0, 0);
	recs_add(&rs, 4, "four", 0, 0);
	run(&in, &rs, 1);
	inst_close(&in); /* fini writes the rest */
	ssize_t n = slurp(path, buf, sizeof(buf));
	cr_assert_eq(n, 8 + 6 + (ssize_t)sizeof(big) + 5);
	cr_assert_eq(strncmp(buf, "one\ntwo\nthree\nbbb", 17), 0);
	cr_assert_str_eq(buf + n - 7, "b\nfour\n");
	rm_tree(dir);
}

/* A failing write() makes the batch RETRY with the error; nothing of the
 * failed batch stays buffered, so the retry does not duplicate it. */
Test(plugin, file_write_error_retries)
{
	char dir[256], tmpl[512], path[512], buf[256];
	struct inst in;
	struct recs rs;
	const char *p[] = { "0123456789", "abcdefghij" };

	plugin_dir();
	tmpdir_for(dir, sizeof(dir), "werr");
	snprintf(tmpl, sizeof(tmpl), "%s/w%%s", dir);
	snprintf(path, sizeof(path), "%s/w0", dir);
	struct spate_plugin_opt o[] = { { "path", tmpl } };
	cr_assert_eq(inst_open(&in, "file", 0, 0, o, 1), 0);
	recs_seq(&rs, 0, 1, p);
	cr_assert_eq(run(&in, &rs, 1).status, SPATE_BATCH_OK);

	signal(SIGXFSZ, SIG_IGN);
	struct rlimit rl, old;
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	rl = (struct rlimit){ 11, old.rlim_max }; /* soft limit only: raised again below */
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	recs_seq(&rs, 1, 2, p);
	struct spate_batch_result res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_RETRY);
	cr_assert_not_null(strstr(res.error, "write "), "error: %s", res.error);
	cr_assert_not_null(strstr(res.error, path), "error: %s", res.error);
	cr_assert_not_null(strstr(res.error, strerror(EFBIG)), "error: %s", res.error);
	/* The disk has room again: the retry writes the batch once. */
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	cr_assert_eq(run(&in, &rs, 2).status, SPATE_BATCH_OK);
	inst_close(&in);
	slurp(path, buf, sizeof(buf));
	cr_assert_str_eq(buf, "0123456789\n0123456789\nabcdefghij\n");
	rm_tree(dir);
}

Test(plugin, file_bad_options)
{
	struct inst in;

	plugin_dir();
	cr_assert_eq(inst_open(&in, "file", 0, 0, NULL, 0), -EINVAL);
	cr_assert_not_null(strstr(in.host.last_log, "path"), "log: %s", in.host.last_log);
	spate_plugin_unload(in.lib);
	struct spate_plugin_opt o[] = { { "path", "/tmp/x%s" }, { "format", "csv" } };
	cr_assert_eq(inst_open(&in, "file", 0, 0, o, 2), -EINVAL);
	spate_plugin_unload(in.lib);
	struct spate_plugin_opt o2[] = { { "path", "/nonexistent-spate/x%s" } };
	cr_assert_eq(inst_open(&in, "file", 0, 0, o2, 1), -ENOENT);
	cr_assert_not_null(strstr(in.host.last_log, "/nonexistent-spate/x0"), "log: %s",
			   in.host.last_log);
	spate_plugin_unload(in.lib);
}

/* ------------------------------------------------------------------------ */
/* forward                                                                  */
/* ------------------------------------------------------------------------ */

Test(plugin, forward_all_with_hash_key)
{
	struct inst in;
	struct recs rs = { .n = 0 };

	plugin_dir();
	struct spate_plugin_opt o[] = { { "to", "out" } };
	cr_assert_eq(inst_open(&in, "forward", 0, 0, o, 1), 0);
	recs_add(&rs, 0, "hello", 1, 0x04030201u);
	recs_add(&rs, 1, "world", 2, 0xa0b0c0d0u);
	struct spate_batch_result res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_OK);
	cr_assert_eq(in.host.ok, 2);
	cr_assert_str_eq(in.host.calls[0].stream, "out");
	cr_assert_str_eq(in.host.calls[0].data, "hello");
	cr_assert_eq(in.host.calls[0].key_len, 4);
	static const unsigned char k0[] = { 1, 2, 3, 4 }, k1[] = { 0xd0, 0xc0, 0xb0, 0xa0 };
	cr_assert_eq(memcmp(in.host.calls[0].key, k0, 4), 0);
	cr_assert_eq(memcmp(in.host.calls[1].key, k1, 4), 0);
	cr_assert_str_eq(in.host.calls[1].data, "world");
	inst_close(&in);
}

/* Each filter set, and the records it forwards out of this batch. */
Test(plugin, forward_filters)
{
	static const struct {
		struct spate_plugin_opt o[3];
		uint32_t n;
		const char *want; /* payloads forwarded, space-separated */
	} cases[] = {
		{ { { "to", "o" }, { "prefix", "ab" } }, 2, "abc abd" },
		{ { { "to", "o" }, { "contains", "b" } }, 2, "abc abd xbx" },
		{ { { "to", "o" }, { "type", "7" } }, 2, "abd" },
		{ { { "to", "o" }, { "hash_mod", "2" }, { "hash_eq", "1" } }, 3, "abc xbx" },
		{ { { "to", "o" }, { "hash_mod", "2" } }, 2, "abd zzz" },
		{ { { "to", "o" }, { "prefix", "ab" }, { "invert", "true" } }, 3, "xbx zzz" },
		{ { { "to", "o" }, { "contains", "b" }, { "type", "7" } }, 3, "abd" },
	};
	plugin_dir();
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct inst in;
		struct recs rs = { .n = 0 };
		char got[256] = "";

		cr_assert_eq(inst_open(&in, "forward", 0, 0, cases[c].o, cases[c].n), 0, "case %zu",
			     c);
		recs_add(&rs, 0, "abc", 0, 1);
		recs_add(&rs, 1, "abd", 7, 2);
		recs_add(&rs, 2, "xbx", 0, 3);
		recs_add(&rs, 3, "zzz", 0, 4);
		cr_assert_eq(run(&in, &rs, 1).status, SPATE_BATCH_OK);
		for (int i = 0; i < in.host.ok; i++) {
			if (i)
				strcat(got, " ");
			strcat(got, in.host.calls[i].data);
		}
		cr_assert_str_eq(got, cases[c].want, "case %zu", c);
		inst_close(&in);
	}
}

Test(plugin, forward_payload_prefix_key)
{
	struct inst in;
	struct recs rs = { .n = 0 };

	plugin_dir();
	struct spate_plugin_opt o[] = { { "to", "o" }, { "key", "payload_prefix:3" } };
	cr_assert_eq(inst_open(&in, "forward", 0, 0, o, 2), 0);
	recs_add(&rs, 0, "user42:login", 0, 9);
	recs_add(&rs, 1, "u", 0, 9);
	run(&in, &rs, 1);
	cr_assert_eq(in.host.calls[0].key_len, 3);
	cr_assert_eq(memcmp(in.host.calls[0].key, "use", 3), 0);
	cr_assert_eq(in.host.calls[1].key_len, 1);
	inst_close(&in);
}

/* A full destination: PARTIAL at the first record not forwarded. */
Test(plugin, forward_partial_on_eagain)
{
	struct inst in;
	struct recs rs = { .n = 0 };

	plugin_dir();
	struct spate_plugin_opt o[] = { { "to", "o" }, { "prefix", "y" } };
	cr_assert_eq(inst_open(&in, "forward", 0, 0, o, 2), 0);
	recs_add(&rs, 10, "y0", 0, 0);
	recs_add(&rs, 11, "n1", 0, 0); /* filtered out */
	recs_add(&rs, 12, "y2", 0, 0);
	recs_add(&rs, 13, "y3", 0, 0); /* the third put: -EAGAIN */
	recs_add(&rs, 14, "y4", 0, 0);
	in.host.fail_at = 3;
	in.host.fail_rc = -EAGAIN;
	struct spate_batch_result res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_PARTIAL);
	cr_assert_eq(res.failed_index, 3);
	cr_assert_eq(in.host.ok, 2);
	cr_assert_not_null(strstr(res.error, "full"), "error: %s", res.error);
	cr_assert_not_null(strstr(res.error, "13"), "error: %s", res.error);

	/* Too large for the destination: PARTIAL too (a poison record). */
	in.host.nput = 0;
	in.host.fail_at = 1;
	in.host.fail_rc = -EMSGSIZE;
	res = run(&in, &rs, 2);
	cr_assert_eq(res.status, SPATE_BATCH_PARTIAL);
	cr_assert_eq(res.failed_index, 0);
	/* No such stream: a configuration error. */
	in.host.nput = 0;
	in.host.fail_rc = -ENOENT;
	res = run(&in, &rs, 3);
	cr_assert_eq(res.status, SPATE_BATCH_FATAL);
	cr_assert_not_null(strstr(res.error, "'o'"), "error: %s", res.error);
	inst_close(&in);
}

Test(plugin, forward_bad_options)
{
	struct inst in;

	plugin_dir();
	cr_assert_eq(inst_open(&in, "forward", 0, 0, NULL, 0), -EINVAL);
	spate_plugin_unload(in.lib);
	const struct spate_plugin_opt bad[][2] = {
		{ { "to", "o" }, { "key", "payload_prefix:0" } },
		{ { "to", "o" }, { "key", "random" } },
		{ { "to", "o" }, { "type", "256" } },
		{ { "to", "o" }, { "hash_eq", "1" } },
		{ { "to", "o" }, { "invert", "maybe" } },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(inst_open(&in, "forward", 0, 0, bad[i], 2), -EINVAL, "case %zu", i);
		spate_plugin_unload(in.lib);
	}
	/* A host without put(): an older host struct. */
	struct spate_plugin_opt o[] = { { "to", "o" } };
	struct spate_plugin_lib *lib = load_ok("forward");
	struct test_host th;
	host_init(&th);
	th.h.struct_size = (uint32_t)offsetof(struct spate_plugin_host, put);
	struct spate_plugin_ctx ctx = { .struct_size = sizeof(ctx), .opts = o, .n_opts = 1,
					.host = &th.h };
	void *st = NULL;
	cr_assert_eq(spate_plugin_lib_desc(lib)->init(&ctx, &st), -ENOTSUP);
	spate_plugin_unload(lib);
}

/* ------------------------------------------------------------------------ */
/* fail                                                                     */
/* ------------------------------------------------------------------------ */

Test(plugin, fail_modes)
{
	static const struct {
		const char *mode;
		enum spate_batch_status st;
	} m[] = { { "retry", SPATE_BATCH_RETRY },
		  { "partial", SPATE_BATCH_PARTIAL },
		  { "fatal", SPATE_BATCH_FATAL } };
	struct recs rs;

	plugin_dir();
	for (size_t i = 0; i < 3; i++) {
		struct inst in;
		struct spate_plugin_opt o[] = { { "seqs", "13, 15,99" }, { "mode", m[i].mode } };

		cr_assert_eq(inst_open(&in, "fail", 0, 0, o, 2), 0);
		recs_seq(&rs, 10, 3, P10); /* 10..12: none fails */
		cr_assert_eq(run(&in, &rs, 1).status, SPATE_BATCH_OK);
		recs_seq(&rs, 11, 6, P10); /* 11..16: 13 and 15 fail */
		struct spate_batch_result res = run(&in, &rs, 1);
		cr_assert_eq(res.status, m[i].st, "mode %s", m[i].mode);
		if (m[i].st == SPATE_BATCH_PARTIAL)
			cr_assert_eq(res.failed_index, 2);
		cr_assert_not_null(strstr(res.error, "seq 13"), "error: %s", res.error);
		inst_close(&in);
	}
}

Test(plugin, fail_selectors)
{
	struct inst in;
	struct recs rs = { .n = 0 };
	struct spate_batch_result res;

	plugin_dir();
	struct spate_plugin_opt o[] = { { "every", "4" }, { "mode", "partial" } };
	cr_assert_eq(inst_open(&in, "fail", 0, 0, o, 2), 0);
	recs_seq(&rs, 5, 5, P10); /* 5..9: 8 fails */
	res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_PARTIAL);
	cr_assert_eq(res.failed_index, 3);
	inst_close(&in);

	struct spate_plugin_opt o2[] = { { "contains", "poison" }, { "mode", "partial" } };
	cr_assert_eq(inst_open(&in, "fail", 0, 0, o2, 2), 0);
	rs.n = 0;
	recs_add(&rs, 1, "fine", 0, 0);
	recs_add(&rs, 2, "a poisoned apple", 0, 0);
	res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_PARTIAL);
	cr_assert_eq(res.failed_index, 1);
	inst_close(&in);

	struct spate_plugin_opt bad[] = { { "seqs", "1,x" } };
	cr_assert_eq(inst_open(&in, "fail", 0, 0, bad, 1), -EINVAL);
	spate_plugin_unload(in.lib);
	struct spate_plugin_opt bad2[] = { { "mode", "explode" } };
	cr_assert_eq(inst_open(&in, "fail", 0, 0, bad2, 1), -EINVAL);
	spate_plugin_unload(in.lib);
}

/* times: N fails a record's first N deliveries, then lets it through; the
 * summary counts what succeeded. */
Test(plugin, fail_times_and_summary)
{
	char dir[256], tmpl[512], path[512];
	struct inst in;
	struct recs rs;
	struct spate_batch_result res;

	plugin_dir();
	tmpdir_for(dir, sizeof(dir), "failt");
	snprintf(tmpl, sizeof(tmpl), "%s/f-%%s.json", dir);
	struct spate_plugin_opt o[] = { { "seqs", "2,3" }, { "times", "2" }, { "summary", tmpl } };
	cr_assert_eq(inst_open(&in, "fail", 4, 0, o, 3), 0);
	recs_seq(&rs, 0, 5, P10);
	for (uint32_t a = 1; a <= 2; a++) {
		res = run(&in, &rs, a);
		cr_assert_eq(res.status, SPATE_BATCH_RETRY, "attempt %u", a);
		char want[64];
		snprintf(want, sizeof(want), "failure %u of 2", a);
		cr_assert_not_null(strstr(res.error, want), "error: %s", res.error);
	}
	cr_assert_eq(run(&in, &rs, 3).status, SPATE_BATCH_OK);
	cr_assert_eq(run(&in, &rs, 1).status, SPATE_BATCH_OK); /* stays healed */
	inst_close(&in);
	snprintf(path, sizeof(path), "%s/f-4.json", dir);
	json_object *j = summary(path);
	cr_assert_eq(jget(j, "records"), 5);
	cr_assert_eq(jget(j, "duplicates"), 5);
	cr_assert_eq(jget(j, "failed_batches"), 2);
	cr_assert_eq(jget(j, "failed_records"), 4);
	cr_assert_eq(jget(j, "batches"), 4);
	json_object_put(j);

	/* partial: each retry starts at the failing record, as the engine does. */
	struct spate_plugin_opt o2[] = { { "seqs", "2,3" }, { "times", "1" }, { "mode", "partial" },
					 { "summary", tmpl } };
	cr_assert_eq(inst_open(&in, "fail", 5, 0, o2, 4), 0);
	recs_seq(&rs, 0, 5, P10);
	res = run(&in, &rs, 1);
	cr_assert_eq(res.status, SPATE_BATCH_PARTIAL);
	cr_assert_eq(res.failed_index, 2);
	recs_seq(&rs, 2, 3, P10 + 2);
	res = run(&in, &rs, 2);
	cr_assert_eq(res.status, SPATE_BATCH_PARTIAL); /* 2 passes now, 3 fails once */
	cr_assert_eq(res.failed_index, 1);
	recs_seq(&rs, 3, 2, P10 + 3);
	cr_assert_eq(run(&in, &rs, 3).status, SPATE_BATCH_OK);
	inst_close(&in);
	snprintf(path, sizeof(path), "%s/f-5.json", dir);
	j = summary(path);
	cr_assert_eq(jget(j, "records"), 5);
	cr_assert_eq(jget(j, "duplicates"), 0);
	cr_assert_eq(jget(j, "gaps"), 0);
	cr_assert_eq(jget(j, "failed_records"), 2);
	json_object_put(j);
	rm_tree(dir);
}

/* mode: crash aborts the host: in a child. */
Test(plugin, fail_crash_kills_host)
{
	struct recs rs;

	plugin_dir();
	recs_seq(&rs, 0, 3, P10);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct inst in;
		struct spate_plugin_opt o[] = { { "seqs", "1" }, { "mode", "crash" } };
		if (inst_open(&in, "fail", 0, 0, o, 2) != 0)
			_exit(3);
		/* Keep the expected abort quiet. */
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		run(&in, &rs, 1);
		_exit(4);
	}
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x", st);
}
