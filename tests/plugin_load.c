/* SPDX-License-Identifier: MIT */
/*
 * plugin_load.c - a tiny plugin driver for tests/out_of_tree.sh: load a
 * plugin with spate_plugin_load(), create one state (shard 0) with the
 * KEY=VALUE options given, hand it stdin's lines as one batch (sequence
 * numbers from 0), flush, fini, unload.
 *
 * Usage: plugin_load SPEC [KEY=VALUE...] < records
 * Prints "loaded NAME VERSION PATH" and "status OK|RETRY|PARTIAL|FATAL
 * FAILED_INDEX ERROR". Exit 0 when the plugin loaded and process() returned
 * 0, 1 otherwise, 2 on usage errors.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/plugin_host.h"

#define MAX_RECS 1024

__attribute__((format(printf, 3, 4))) static void host_log(const struct spate_plugin_host *h,
							    enum spate_log_level lvl,
							    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "plugin log %d: ", (int)lvl);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int host_put(const struct spate_plugin_host *h, const char *stream, const void *key,
		    size_t key_len, const void *data, size_t len)
{
	printf("put %s %.*s\n", stream, (int)len, (const char *)data);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const names[] = { "OK", "RETRY", "PARTIAL", "FATAL" };
	static struct spate_ring_rec recs[MAX_RECS];
	static char *lines[MAX_RECS];
	struct spate_plugin_opt opts[32];
	struct spate_plugin_host host = { .struct_size = sizeof(host), .log = host_log,
					  .put = host_put };
	struct spate_plugin_lib *lib;
	struct spate_batch_result res;
	const struct spate_plugin *p;
	char err[1024], *line = NULL;
	uint32_t n_opts = 0, n = 0;
	size_t cap = 0;
	void *state = NULL;
	ssize_t len;
	int rc, ret = 1;

	if (argc < 2 || argc - 2 > 32) {
		fprintf(stderr, "usage: plugin_load SPEC [KEY=VALUE...] < records\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq) {
			fprintf(stderr, "plugin_load: option %s is not KEY=VALUE\n", argv[i]);
			return 2;
		}
		*eq = 0;
		opts[n_opts++] = (struct spate_plugin_opt){ argv[i], eq + 1 };
	}
	rc = spate_plugin_load(argv[1], &lib, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "plugin_load: %s (%s)\n", err, strerror(-rc));
		return 1;
	}
	p = spate_plugin_lib_desc(lib);
	printf("loaded %s %s %s\n", spate_plugin_lib_name(lib), spate_plugin_lib_version(lib),
	       spate_plugin_lib_path(lib));

	while (n < MAX_RECS && (len = getline(&line, &cap, stdin)) >= 0) {
		if (len && line[len - 1] == '\n')
			line[--len] = 0;
		lines[n] = strdup(line);
		if (!lines[n])
			goto out_lines;
		recs[n] = (struct spate_ring_rec){ .data = lines[n], .seq = n, .len = (uint32_t)len };
		n++;
	}

	struct spate_plugin_ctx ctx = { .struct_size = sizeof(ctx), .consumer = "plugin_load",
					.stream = "stdin", .opts = opts, .n_opts = n_opts,
					.host = &host };
	rc = p->init(&ctx, &state);
	if (rc < 0) {
		fprintf(stderr, "plugin_load: init: %s\n", strerror(-rc));
		goto out_lines;
	}
	struct spate_batch b = { .recs = recs, .count = n, .attempt = 1, .consumer = "plugin_load",
				 .stream = "stdin", .host = &host, .struct_size = sizeof(b) };
	memset(&res, 0, sizeof(res));
	res.struct_size = sizeof(res);
	rc = p->process(state, &b, &res);
	if (rc < 0)
		fprintf(stderr, "plugin_load: process: %s\n", strerror(-rc));
	else if ((unsigned)res.status > 3)
		fprintf(stderr, "plugin_load: process: bad status %d\n", (int)res.status);
	else {
		printf("status %s %u %s\n", names[res.status], res.failed_index, res.error);
		ret = 0;
	}
	if (p->flush)
		p->flush(state, 0);
	if (p->fini)
		p->fini(state);
out_lines:
	for (uint32_t i = 0; i < n; i++)
		free(lines[i]);
	free(line);
	spate_plugin_unload(lib);
	return ret;
}
