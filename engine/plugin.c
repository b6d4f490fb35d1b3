/* SPDX-License-Identifier: MIT */
/*
 * plugin.c - find, load, check and unload consumer plugins.
 *
 * Design. A plugin is a shared object exporting one descriptor,
 * SPATE_PLUGIN_SYMBOL (include/spate/plugin.h). spate_plugin_load() resolves
 * a spec (a bundled name searched in $SPATE_PLUGIN_PATH then SPATE_PLUGIN_DIR,
 * or a path), copies the file to a unique private path, dlopen()s the copy
 * with RTLD_NOW | RTLD_LOCAL and unlinks it right away (the mapping stays).
 * The copy is what makes hot deploy work: glibc identifies loaded objects by
 * name and by (device, inode), so dlopen() of a path already loaded returns
 * the old image, even if a new build was written there since. A fresh file
 * per load is always a fresh image, and the old one stays mapped, and valid,
 * until its own dlclose(). The descriptor is then checked before anything in
 * it is called: it must come from the file itself (not from a dependency),
 * carry SPATE_PLUGIN_ABI_VERSION, a size the host can read, and name init and
 * process. Every refusal names the file and, for mismatches, both versions
 * or sizes, as Snort 3, nginx and PostgreSQL do: a plugin built against
 * another ABI must never be called.
 *
 * ABI growth (PipeWire's SPA and Linux's extensible syscall structs, e.g.
 * openat2, are the models). Within ABI 1 the descriptor only gains fields at
 * its end. The host copies min(struct_size, sizeof) bytes of the plugin's
 * descriptor into a zeroed descriptor of its own size and the engine uses
 * that copy only, so a hook an older plugin does not have reads as NULL and
 * nothing past the plugin's object is ever read. A larger descriptor (a
 * plugin built against a newer header) is accepted when every byte past the
 * host's size is zero: it sets nothing this host would have to call. The
 * load hook runs once per image after the checks; unload before dlclose().
 *
 * Trade-offs. RTLD_NOW finds unresolved symbols at load, not at the first
 * batch. RTLD_LOCAL keeps two plugins (or two builds of one) from binding to
 * each other's symbols. The copy costs a file copy per load (plugins are
 * small, loads rare) and makes the mapped image appear as "(deleted)" in
 * /proc/PID/maps, so perf, gdb and sanitizers cannot open it to read symbols;
 * SPATE_PLUGIN_DEBUG=1 loads in place and never unloads, for debugging (and
 * gives up reloading a rebuilt file). Sizes must be multiples of 8 (every
 * descriptor layout is pointer-aligned) and at least ABI 1's first (64
 * bytes): anything else is not a descriptor of this ABI.
 *
 * Limits. A copy directory that is mounted noexec makes dlopen() fail (the
 * error says so and names SPATE_PLUGIN_TMPDIR). dlclose() may leave an image
 * mapped (TLS destructors, NODELETE); every reload leaks at most that
 * mapping. An in-process plugin that crashes takes the host with it.
 */
#include "spate_config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/plugin_host.h"

struct spate_plugin_lib {
	void *handle;             /* NULL: provided by a door */
	int keep; /* debug mode: never dlclose() */
	/* A provided plugin (spate/provider.h): its close hook and instance. */
	void (*close)(void *arg, void *inst);
	void *close_arg, *inst;
	uint32_t flags;
	uint64_t watchdog_ns;
	const struct spate_provided_pipe *pipe;
	/* The plugin's descriptor, copied to the host's size: fields past the
	 * plugin's struct_size are zero (hooks added since it was built). */
	struct spate_plugin desc;
	char path[]; /* the resolved file, not the private copy */
};

/* ABI 1 as first released (revision 0), which every later revision keeps:
 * these offsets are what plugins built then were compiled with
 * (tests/abi/plugin_v1.h). */
_Static_assert(offsetof(struct spate_plugin, load) == SPATE_PLUGIN_DESC_MIN_SIZE,
	       "revision 0 descriptor: 64 bytes");
_Static_assert(offsetof(struct spate_plugin, flush_interval_ns) == 56, "descriptor layout");
_Static_assert(offsetof(struct spate_batch, struct_size) == 48, "revision 0 batch: 48 bytes");
_Static_assert(offsetof(struct spate_batch, host) == 40, "batch layout");
_Static_assert(offsetof(struct spate_batch_result, struct_size) == 208,
	       "revision 0 result: 208 bytes");
_Static_assert(sizeof(struct spate_ring_rec) == 40 && offsetof(struct spate_ring_rec, type) == 32,
	       "record view layout");
_Static_assert(sizeof(struct spate_plugin) % 8 == 0, "descriptor sizes are multiples of 8");

/* Numbers the private copies of this process. */
static _Atomic unsigned long copy_counter;

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
							   const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Append to a message being built in err (truncating silently). */
__attribute__((format(printf, 3, 4))) static void add_err(char *err, size_t errlen,
							   const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (!err || !errlen)
		return;
	n = strnlen(err, errlen);
	if (n + 1 >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
}

/* dlerror() text @p de in @p out, with the private copy's path @p copy
 * replaced by the file's own @p shown: messages name the user's file. */
static void dl_msg(char *out, size_t len, const char *de, const char *copy, const char *shown)
{
	const char *at = de && copy && copy != shown ? strstr(de, copy) : NULL;

	if (!de)
		snprintf(out, len, "unknown dlopen error");
	else if (!at)
		snprintf(out, len, "%s", de);
	else
		snprintf(out, len, "%.*s%s%s", (int)(at - de), de, shown, at + strlen(copy));
}

/* A bundled plugin name: [a-z0-9_]+, short. */
static int is_plugin_name(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return 0;
	}
	return n > 0 && n <= 64;
}

static int is_regular(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Try dir/name.so; 1 and the path in out when it is a file. */
static int try_dir(const char *dir, size_t dirlen, const char *name, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%.*s/%s.so", (int)dirlen, dir, name);

	if (n < 0 || (size_t)n >= outlen)
		return 0;
	return is_regular(out);
}

int spate_plugin_resolve(const char *spec, char *path, size_t pathlen, char *err, size_t errlen)
{
	const char *env;

	set_err(err, errlen, "%s", "");
	if (!spec || !path || !pathlen) {
		set_err(err, errlen, "spate_plugin_resolve: NULL argument");
		return -EINVAL;
	}
	if (strchr(spec, '/')) {
		struct stat st;

		if (strlen(spec) >= pathlen) {
			set_err(err, errlen, "plugin path too long: %.64s...", spec);
			return -ENAMETOOLONG;
		}
		if (stat(spec, &st) < 0) {
			int e = errno;
			set_err(err, errlen, "plugin %s: %s", spec, strerror(e));
			return -e;
		}
		if (!S_ISREG(st.st_mode)) {
			set_err(err, errlen, "plugin %s: not a regular file", spec);
			return -EINVAL;
		}
		memcpy(path, spec, strlen(spec) + 1);
		return 0;
	}
	if (!is_plugin_name(spec)) {
		set_err(err, errlen,
			"plugin '%s': neither a bundled plugin name ([a-z0-9_]+, e.g. count) "
			"nor a path (containing '/', e.g. ./%s)",
			spec, spec);
		return -EINVAL;
	}

	env = getenv(SPATE_PLUGIN_PATH_ENV);
	for (const char *p = env; p && *p;) {
		const char *c = strchr(p, ':');
		size_t len = c ? (size_t)(c - p) : strlen(p);

		if (len && try_dir(p, len, spec, path, pathlen))
			return 0;
		p = c ? c + 1 : p + len;
	}
	if (try_dir(SPATE_PLUGIN_DIR, strlen(SPATE_PLUGIN_DIR), spec, path, pathlen))
		return 0;

	/* Not found: say everywhere we looked. */
	set_err(err, errlen, "plugin '%s' not found: looked for %s.so in", spec, spec);
	for (const char *p = env; p && *p;) {
		const char *c = strchr(p, ':');
		size_t len = c ? (size_t)(c - p) : strlen(p);

		if (len)
			add_err(err, errlen, " %.*s (%s),", (int)len, p, SPATE_PLUGIN_PATH_ENV);
		p = c ? c + 1 : p + len;
	}
	add_err(err, errlen, " %s (installed plugins); give a path to load another file",
		SPATE_PLUGIN_DIR);
	path[0] = 0;
	return -ENOENT;
}

/* Copy src to a fresh private file; its path in copy, its directory in dir. */
static int make_copy(const char *src, char *dir, size_t dirlen, char *copy, size_t copylen,
		     char *err, size_t errlen)
{
	const char *bases[] = { getenv(SPATE_PLUGIN_TMPDIR_ENV), getenv("XDG_RUNTIME_DIR"),
				getenv("TMPDIR"), "/tmp" };
	const char *base = strrchr(src, '/');
	char buf[16384];
	int in = -1, out = -1, rc, mk_errno = 0;
	int n;

	base = base ? base + 1 : src;
	dir[0] = 0;
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		rc = -errno;
		set_err(err, errlen, "plugin %s: %s", src, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		if (!bases[i] || bases[i][0] != '/')
			continue;
		n = snprintf(dir, dirlen, "%s/spate-plugin-XXXXXX", bases[i]);
		if (n < 0 || (size_t)n >= dirlen)
			continue;
		if (mkdtemp(dir)) /* mode 0700 */
			break;
		mk_errno = errno;
		dir[0] = 0;
	}
	if (!dir[0]) {
		rc = mk_errno ? -mk_errno : -ENOENT;
		set_err(err, errlen,
			"plugin %s: cannot create a private directory for its copy (%s); "
			"set %s to a writable directory",
			src, strerror(-rc), SPATE_PLUGIN_TMPDIR_ENV);
		goto err_in;
	}
	n = snprintf(copy, copylen, "%s/spate-plugin-%ld-%lu-%s", dir, (long)getpid(),
		     atomic_fetch_add_explicit(&copy_counter, 1, memory_order_relaxed), base);
	if (n < 0 || (size_t)n >= copylen) {
		rc = -ENAMETOOLONG;
		set_err(err, errlen, "plugin %s: path of its private copy too long", src);
		goto err_dir;
	}
	out = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
	if (out < 0) {
		rc = -errno;
		set_err(err, errlen, "plugin %s: cannot create its copy %s: %s", src, copy,
			strerror(-rc));
		goto err_dir;
	}
	for (;;) {
		ssize_t r = read(in, buf, sizeof(buf));

		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			set_err(err, errlen, "plugin %s: read: %s", src, strerror(-rc));
			goto err_out;
		}
		for (ssize_t off = 0; off < r;) {
			ssize_t w = write(out, buf + off, (size_t)(r - off));

			if (w < 0) {
				if (errno == EINTR)
					continue;
				rc = -errno;
				set_err(err, errlen, "plugin %s: writing its copy %s: %s", src, copy,
					strerror(-rc));
				goto err_out;
			}
			off += w;
		}
	}
	if (close(out) < 0) {
		out = -1;
		rc = -errno;
		set_err(err, errlen, "plugin %s: writing its copy %s: %s", src, copy,
			strerror(-rc));
		goto err_out;
	}
	close(in);
	return 0;

err_out:
	if (out >= 0)
		close(out);
	unlink(copy);
err_dir:
	rmdir(dir);
	dir[0] = 0;
err_in:
	close(in);
	return rc;
}

/* The descriptor came from the object behind handle, not a dependency. */
static int defined_by(void *handle, const void *sym)
{
	struct link_map *lm = NULL;
	Dl_info di;

	if (dlinfo(handle, RTLD_DI_LINKMAP, &lm) != 0 || !lm || !dladdr(sym, &di) ||
	    !di.dli_fname)
		return 1; /* cannot tell: trust dlsym */
	return strcmp(di.dli_fname, lm->l_name) == 0;
}

/* No SPATE_PLUGIN_SYMBOL: a plugin for another ABI exports another
 * spate_plugin_vN; its first two fields are fixed in every ABI. */
static int other_abi(void *handle, uint32_t *abi)
{
	for (unsigned v = 0; v <= 16; v++) {
		char sym[32];
		const uint32_t *d;

		if (v == SPATE_PLUGIN_ABI_VERSION)
			continue;
		snprintf(sym, sizeof(sym), "spate_plugin_v%u", v);
		d = dlsym(handle, sym);
		if (d && defined_by(handle, d)) {
			*abi = d[0] ? d[0] : v;
			return 1;
		}
	}
	return 0;
}

/* Refuse a plugin of ABI @p abi, naming the file and both ABIs. */
static int abi_mismatch(const char *path, uint32_t abi, char *err, size_t errlen)
{
	set_err(err, errlen, "plugin %s was built for plugin ABI %u, this host speaks ABI %u%s", path,
		abi, SPATE_PLUGIN_ABI_VERSION,
		abi > SPATE_PLUGIN_ABI_VERSION
			? " (made for a newer spate: upgrade spate, or rebuild the plugin against "
			  "this spate/plugin.h)"
			: " (rebuild the plugin against this spate/plugin.h)");
	return -EPROTO;
}

static int check_desc(void *handle, const char *path, const char *opened,
		      const struct spate_plugin **out, char *err, size_t errlen)
{
	const struct spate_plugin *d;
	const char *why;
	uint32_t abi;

	dlerror();
	d = dlsym(handle, SPATE_PLUGIN_SYMBOL);
	if (!d) {
		const char *de = dlerror();
		char dl_why[512];

		/* Copy: the next dlsym() frees dlerror()'s string. */
		dl_msg(dl_why, sizeof(dl_why), de ? de : "symbol is NULL", opened, path);
		if (other_abi(handle, &abi))
			return abi_mismatch(path, abi, err, errlen);
		set_err(err, errlen,
			"plugin %s does not define %s, so it is not a spate plugin "
			"(of plugin ABI %u): %s",
			path, SPATE_PLUGIN_SYMBOL, SPATE_PLUGIN_ABI_VERSION, dl_why);
		return -ELIBBAD;
	}
	if (!defined_by(handle, d)) {
		set_err(err, errlen,
			"plugin %s does not define %s itself (found in a library it depends on)",
			path, SPATE_PLUGIN_SYMBOL);
		return -ELIBBAD;
	}
	if (d->abi_version != SPATE_PLUGIN_ABI_VERSION)
		return abi_mismatch(path, d->abi_version, err, errlen);
	if (d->struct_size < SPATE_PLUGIN_DESC_MIN_SIZE || d->struct_size % 8) {
		set_err(err, errlen,
			"plugin %s has a %u-byte descriptor, not one of plugin ABI %u (%u bytes or "
			"more, a multiple of 8; this host's is %zu): built against another "
			"spate/plugin.h?",
			path, d->struct_size, SPATE_PLUGIN_ABI_VERSION, SPATE_PLUGIN_DESC_MIN_SIZE,
			sizeof(struct spate_plugin));
		return -EPROTO;
	}
	/* A newer header's descriptor: run it only if it sets nothing past
	 * what this host knows (the bytes are the plugin's: struct_size of them
	 * are its object). */
	for (uint32_t i = sizeof(struct spate_plugin); i < d->struct_size; i++) {
		if (((const unsigned char *)d)[i]) {
			set_err(err, errlen,
				"plugin %s has a %u-byte descriptor of plugin ABI %u that sets a field "
				"at byte %u, past the %zu bytes this host knows (ABI %u revision %u): "
				"it needs a newer spate, or a build against this spate/plugin.h",
				path, d->struct_size, SPATE_PLUGIN_ABI_VERSION, i,
				sizeof(struct spate_plugin), SPATE_PLUGIN_ABI_VERSION,
				SPATE_PLUGIN_ABI_REVISION);
			return -EPROTO;
		}
	}
	why = !d->name || !d->name[0] ? "no name" : !d->init ? "no init" : !d->process ? "no process" : NULL;
	if (why) {
		set_err(err, errlen, "plugin %s: invalid descriptor %s: %s", path,
			SPATE_PLUGIN_SYMBOL, why);
		return -EINVAL;
	}
	*out = d;
	return 0;
}

int spate_plugin_load(const char *spec, struct spate_plugin_lib **out, char *err, size_t errlen)
{
	char path[PATH_MAX], real[PATH_MAX], dir[PATH_MAX], copy[PATH_MAX];
	const struct spate_plugin *desc = NULL;
	const char *dbg = getenv(SPATE_PLUGIN_DEBUG_ENV);
	int debug = dbg && strcmp(dbg, "1") == 0;
	const char *shown, *open_path;
	struct spate_plugin_lib *lib;
	void *h;
	int rc;

	set_err(err, errlen, "%s", "");
	if (!spec || !out) {
		set_err(err, errlen, "spate_plugin_load: NULL argument");
		return -EINVAL;
	}
	*out = NULL;
	rc = spate_plugin_resolve(spec, path, sizeof(path), err, errlen);
	if (rc < 0)
		return rc;
	shown = realpath(path, real) ? real : path;

	dir[0] = 0;
	if (debug) {
		open_path = shown;
	} else {
		rc = make_copy(shown, dir, sizeof(dir), copy, sizeof(copy), err, errlen);
		if (rc < 0)
			return rc;
		open_path = copy;
	}

	h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
	if (dir[0]) {
		/* The mapping survives the unlink; nothing else may open it. */
		unlink(copy);
		rmdir(dir);
	}
	if (!h) {
		const char *de = dlerror();
		char msg[512];

		dl_msg(msg, sizeof(msg), de, open_path, shown);
		set_err(err, errlen, "cannot load plugin %s: %s", shown, msg);
		if (dir[0] && de && strstr(de, "map segment"))
			add_err(err, errlen,
				" (is the directory of its copy mounted noexec? set %s)",
				SPATE_PLUGIN_TMPDIR_ENV);
		return -ELIBBAD;
	}
	rc = check_desc(h, shown, open_path, &desc, err, errlen);
	if (rc < 0)
		goto err_close;

	lib = calloc(1, sizeof(*lib) + strlen(shown) + 1);
	if (!lib) {
		rc = -ENOMEM;
		set_err(err, errlen, "plugin %s: out of memory", shown);
		goto err_close;
	}
	lib->handle = h;
	lib->keep = debug;
	/* The host's copy: the plugin's bytes up to the smaller size, zeros
	 * after (lib is calloc()ed). check_desc() bounded struct_size. */
	memcpy(&lib->desc, desc,
	       desc->struct_size < sizeof(lib->desc) ? desc->struct_size : sizeof(lib->desc));
	memcpy(lib->path, shown, strlen(shown) + 1);
	if (lib->desc.load) {
		char why[256] = "";

		rc = lib->desc.load(SPATE_PLUGIN_ABI_REVISION, why, sizeof(why));
		if (rc < 0) {
			why[sizeof(why) - 1] = 0;
			set_err(err, errlen, "plugin %s: its load hook failed: %s (%s)", shown,
				why[0] ? why : "no reason given", strerror(-rc));
			free(lib);
			goto err_close;
		}
	}
	*out = lib;
	return 0;

err_close:
	dlclose(h);
	return rc;
}

int spate_plugin_lib_provided(const struct spate_plugin_given *g, struct spate_plugin_lib **out,
			      char *err, size_t errlen)
{
	const struct spate_plugin *d = g ? g->desc : NULL;
	const char *shown = g && g->path && g->path[0] ? g->path : "(provided)";
	struct spate_plugin_lib *lib;
	size_t plen = strnlen(shown, 255);

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!d || d->struct_size < SPATE_PLUGIN_DESC_MIN_SIZE || !d->name || !d->name[0] ||
	    !d->init || !d->process) {
		set_err(err, errlen, "%s: the provider gave %s", shown,
			!d ? "no plugin descriptor"
			: d->struct_size < SPATE_PLUGIN_DESC_MIN_SIZE ? "a descriptor too small"
			: !d->name || !d->name[0] ? "a descriptor without a name"
						  : "a descriptor without init or process");
		return -EINVAL;
	}
	lib = calloc(1, sizeof(*lib) + plen + 1);
	if (!lib) {
		set_err(err, errlen, "%s: out of memory", shown);
		return -ENOMEM;
	}
	memcpy(&lib->desc, d, d->struct_size < sizeof(lib->desc) ? d->struct_size : sizeof(lib->desc));
	/* load/unload are per image: a provider has none to run. */
	lib->desc.load = NULL;
	lib->desc.unload = NULL;
	memcpy(lib->path, shown, plen);
	lib->path[plen] = 0;
	lib->close = g->close;
	lib->close_arg = g->arg;
	lib->inst = g->inst;
	lib->flags = g->flags;
	lib->watchdog_ns = g->watchdog_ns;
	lib->pipe = g->pipe;
	*out = lib;
	return 0;
}

void *spate_plugin_lib_inst(const struct spate_plugin_lib *lib)
{
	return lib ? lib->inst : NULL;
}

uint32_t spate_plugin_lib_flags(const struct spate_plugin_lib *lib)
{
	return lib ? lib->flags : 0;
}

const struct spate_provided_pipe *spate_plugin_lib_pipe(const struct spate_plugin_lib *lib)
{
	return lib ? lib->pipe : NULL;
}

uint64_t spate_plugin_lib_watchdog(const struct spate_plugin_lib *lib)
{
	return lib ? lib->watchdog_ns : 0;
}

void spate_plugin_unload(struct spate_plugin_lib *lib)
{
	if (!lib)
		return;
	if (!lib->handle) { /* provided */
		if (lib->close)
			lib->close(lib->close_arg, lib->inst);
		free(lib);
		return;
	}
	if (lib->desc.unload)
		lib->desc.unload();
	if (!lib->keep)
		dlclose(lib->handle);
	free(lib);
}

const struct spate_plugin *spate_plugin_lib_desc(const struct spate_plugin_lib *lib)
{
	return &lib->desc;
}

const char *spate_plugin_lib_path(const struct spate_plugin_lib *lib)
{
	return lib->path;
}

const char *spate_plugin_lib_name(const struct spate_plugin_lib *lib)
{
	return lib->desc.name;
}

const char *spate_plugin_lib_version(const struct spate_plugin_lib *lib)
{
	return lib->desc.version ? lib->desc.version : "";
}
