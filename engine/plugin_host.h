/* SPDX-License-Identifier: MIT */
/*
 * plugin_host.h - the host side of the plugin ABI: find, load, check and
 * unload consumer plugins (include/spate/plugin.h). Internal to libspate and
 * the spate command; not installed.
 */
#ifndef SPATE_ENGINE_PLUGIN_HOST_H
#define SPATE_ENGINE_PLUGIN_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "spate/plugin.h"

/** Environment variable: colon-separated directories searched for bundled
 *  plugin names before SPATE_PLUGIN_DIR. */
#define SPATE_PLUGIN_PATH_ENV "SPATE_PLUGIN_PATH"
/** Environment variable: directory for the private copies dlopen()ed
 *  (default $XDG_RUNTIME_DIR, then $TMPDIR, then /tmp). */
#define SPATE_PLUGIN_TMPDIR_ENV "SPATE_PLUGIN_TMPDIR"
/** Environment variable: when set to 1, debug mode: dlopen() the resolved
 *  file in place, without a private copy, and never dlclose() it, so gdb,
 *  perf and sanitizers can read its symbols (also in leak reports at exit).
 *  Gives up hot reload: glibc returns the image already mapped for a path
 *  loaded before, even if the file was rebuilt since. */
#define SPATE_PLUGIN_DEBUG_ENV "SPATE_PLUGIN_DEBUG"

/** A loaded plugin image. Opaque. */
struct spate_plugin_lib;
struct spate_provided_pipe; /* spate/provider.h */

/**
 * Find, load and check a plugin.
 *
 * @p spec is either a bundled name (`[a-z0-9_]+`, looked up as `<name>.so`
 * in each directory of $SPATE_PLUGIN_PATH, then in SPATE_PLUGIN_DIR) or a
 * path (anything containing '/'). The file is copied to a unique private path
 * (a fresh 0700 directory under $SPATE_PLUGIN_TMPDIR, $XDG_RUNTIME_DIR,
 * $TMPDIR or /tmp), that copy is dlopen()ed with RTLD_NOW | RTLD_LOCAL and
 * unlinked at once. Every load is therefore a new image, even when the file
 * at @p spec was rebuilt in place (hot deploy); the old image stays valid
 * until its own spate_plugin_unload().
 *
 * The descriptor SPATE_PLUGIN_SYMBOL must be defined by the file itself, have
 * abi_version == SPATE_PLUGIN_ABI_VERSION, a struct_size of at least
 * SPATE_PLUGIN_DESC_MIN_SIZE and a multiple of 8 (an older plugin's smaller
 * descriptor is fine: the host's copy reads its missing hooks as NULL; a
 * larger one only with zeros past sizeof(struct spate_plugin)), and non-NULL
 * name, init and process (version and the rest may be NULL). Then the
 * plugin's load hook, if any, runs once for this image.
 *
 * Thread-safe. Not async-signal-safe.
 *
 * @param spec   plugin name or path
 * @param out    the loaded plugin, on success
 * @param err    buffer for a one-line reason, naming the file (may be NULL)
 * @param errlen size of @p err
 * @return 0 on success;
 *   -EINVAL  @p spec or @p out NULL, @p spec neither a name nor a path, or the
 *            descriptor has a NULL or empty name, or a NULL init or process;
 *   -ENOENT  no such file (the message lists every place looked in);
 *   -ELIBBAD dlopen() failed (the message includes dlerror()), or the file
 *            does not define SPATE_PLUGIN_SYMBOL;
 *   -EPROTO  built for another plugin ABI, with a descriptor size that is
 *            not one of this ABI, or setting fields this host does not know
 *            (the message gives both versions or sizes);
 *   -ENAMETOOLONG a path too long;
 *   -ENOMEM; the -errno of reading the file or writing its copy
 *            (-EACCES, -EIO, -ENOSPC, ...); or the negative value the
 *            plugin's load hook returned (the message gives its reason).
 */
int spate_plugin_load(const char *spec, struct spate_plugin_lib **out, char *err, size_t errlen);

/**
 * Unload a plugin: run its unload hook (if any), then dlclose() its image. Every state created by its init()
 * must have been passed to its fini() before, and no thread may be inside one
 * of its functions. The image may stay mapped after this (thread-local
 * storage with destructors, DF_1_NODELETE, or another handle to it); that is
 * harmless, since every load maps a fresh copy. In debug mode
 * ($SPATE_PLUGIN_DEBUG=1 at load) the image is deliberately kept. NULL is a
 * no-op.
 */
void spate_plugin_unload(struct spate_plugin_lib *lib);

/** The checked descriptor exported by @p lib, as the host's copy: every
 *  field the plugin's descriptor is too small for reads as NULL / 0 (its
 *  struct_size is the plugin's). */
const struct spate_plugin *spate_plugin_lib_desc(const struct spate_plugin_lib *lib);
/** The file @p lib was loaded from (absolute when it could be resolved), not
 *  the private copy. */
const char *spate_plugin_lib_path(const struct spate_plugin_lib *lib);
/** The plugin's name (its descriptor's `name`). */
const char *spate_plugin_lib_name(const struct spate_plugin_lib *lib);
/** The plugin's version string (its descriptor's `version`, "" if NULL). */
const char *spate_plugin_lib_version(const struct spate_plugin_lib *lib);

/** What a door provided for a consumer (provider.c fills it from struct
 *  spate_provided; plugin.c does not know providers). */
struct spate_plugin_given {
	const struct spate_plugin *desc;
	const char *path;             /* shown as the plugin's file */
	uint32_t flags;               /* SPATE_PROVIDED_F_* */
	uint64_t watchdog_ns;
	void *inst;
	void (*close)(void *arg, void *inst);
	void *arg;
	const struct spate_provided_pipe *pipe; /* NULL: process() only */
};

/**
 * Wrap what a provider gave (spate/provider.h) as a plugin image, so the
 * engine names, checks and unloads it as any other: the descriptor is
 * copied and checked like a loaded one (name, init, process). Unloading it
 * calls @p g->close(arg, inst) instead of dlclose().
 * @return 0, -EINVAL (a descriptor without name, init or process: @p err
 *         says which, naming @p g->path), -ENOMEM.
 */
int spate_plugin_lib_provided(const struct spate_plugin_given *g, struct spate_plugin_lib **out,
			      char *err, size_t errlen);
/** The provider's instance of @p lib (NULL for a loaded file). */
void *spate_plugin_lib_inst(const struct spate_plugin_lib *lib);
/** Its struct spate_provided.flags (0 for a loaded file). */
uint32_t spate_plugin_lib_flags(const struct spate_plugin_lib *lib);
/** Its pipelined hand-over (struct spate_provided.pipe; NULL for a file). */
const struct spate_provided_pipe *spate_plugin_lib_pipe(const struct spate_plugin_lib *lib);
/** Its watchdog (struct spate_provided.watchdog_ns; 0 for a file). */
uint64_t spate_plugin_lib_watchdog(const struct spate_plugin_lib *lib);

/**
 * Resolve @p spec to a file as spate_plugin_load() would, without loading.
 * @return 0 and the path in @p path; -EINVAL (bad spec or arguments, or
 *   not a regular file), -ENOENT (not found; @p err lists the places looked
 *   in; a candidate longer than @p pathlen counts as not found),
 *   -ENAMETOOLONG (@p spec is a path of @p pathlen bytes or more), or the
 *   -errno of stat() on a path (-EACCES ...).
 */
int spate_plugin_resolve(const char *spec, char *path, size_t pathlen, char *err, size_t errlen);

#endif
