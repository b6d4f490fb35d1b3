/* SPDX-License-Identifier: MIT */
/*
 * old_plugin.c - a plugin for the ABI-growth tests (test_plugin: abi_*).
 *
 * Built twice from this file:
 *   old_plugin.so  against tests/abi/plugin_v1.h, the frozen header of plugin
 *                  ABI 1 revision 0 (64-byte descriptor, no sizes on the
 *                  batch or the result): what a plugin built before the ABI
 *                  could grow looks like to today's host;
 *   cur_plugin.so  (-DABI_CURRENT) against today's spate/plugin.h, using the
 *                  revision 1 additions: load/unload hooks and the sizes of
 *                  the batch and the result.
 *
 * Both do the same with a batch: log "abi: N records, seq A..B, sizes
 * BATCH/RESULT" through the host (sizes 0/0 in the old build, which cannot
 * know them), and stop with PARTIAL at the first record whose payload is
 * "bad". The old build exports its descriptor followed by two function
 * pointers where revision 1 put load and unload: a host that read past the
 * plugin's struct_size would call them, and they make the load fail and the
 * process abort, so the test could not pass.
 *
 * The current build stops with FATAL when the host hands it a batch or a
 * result whose struct_size is smaller than its own (test_stats runs it in
 * an engine: the consumer must fill both). Its hooks append "load REV" and
 * "unload" to the file named by $SPATE_TEST_ABI_TRACE (if set), and its load fails with -EPERM when
 * $SPATE_TEST_ABI_LOAD_FAIL is set.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef ABI_CURRENT
#include "spate/plugin.h"
#else
#include "abi/plugin_v1.h"
#endif

static int abi_init(const struct spate_plugin_ctx *ctx, void **state)
{
	*state = NULL;
	return 0;
}

static int abi_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	unsigned batch_size = 0, result_size = 0;

#ifdef ABI_CURRENT
	/* Revision 1: readable without a test (docs/plugins.md). A host that
	 * does not fill them (hands over a zero) fails the consumer. */
	batch_size = b->struct_size;
	result_size = res->struct_size;
	if (batch_size < sizeof(*b) || result_size < sizeof(*res)) {
		res->status = SPATE_BATCH_FATAL;
		snprintf(res->error, sizeof(res->error), "abi: the host sizes are %u/%u", batch_size,
			 result_size);
		return 0;
	}
#endif
	if (b->host && b->host->log && b->count)
		b->host->log(b->host, SPATE_LOG_INFO, "abi: %u records, seq %llu..%llu, sizes %u/%u",
			     b->count, (unsigned long long)b->recs[0].seq,
			     (unsigned long long)b->recs[b->count - 1].seq, batch_size, result_size);
	for (uint32_t i = 0; i < b->count; i++) {
		if (b->recs[i].len == 3 && memcmp(b->recs[i].data, "bad", 3) == 0) {
			res->status = SPATE_BATCH_PARTIAL;
			res->failed_index = i;
			snprintf(res->error, sizeof(res->error), "abi: record %u is bad", i);
			return 0;
		}
	}
	res->status = SPATE_BATCH_OK;
	return 0;
}

#ifdef ABI_CURRENT
static void trace(const char *line)
{
	const char *path = getenv("SPATE_TEST_ABI_TRACE");
	FILE *f = path ? fopen(path, "a") : NULL;

	if (f) {
		fprintf(f, "%s\n", line);
		fclose(f);
	}
}

static int abi_load(uint32_t host_revision, char *err, size_t errlen)
{
	char line[32];

	if (getenv("SPATE_TEST_ABI_LOAD_FAIL")) {
		snprintf(err, errlen, "refused on request");
		return -EPERM;
	}
	snprintf(line, sizeof(line), "load %u", host_revision);
	trace(line);
	return 0;
}

static void abi_unload(void)
{
	trace("unload");
}

SPATE_PLUGIN_DEFINE(.name = "abi_cur", .version = "1.1", .init = abi_init,
		    .process = abi_process, .load = abi_load, .unload = abi_unload);
#else
/* What a host must never call: the bytes after the old descriptor. */
static int not_load(uint32_t rev, char *err, size_t errlen)
{
	snprintf(err, errlen, "the host read old_plugin's bytes past its descriptor as a hook");
	return -EILSEQ;
}

static void not_unload(void)
{
	abort();
}

/* The descriptor of revision 0, as SPATE_PLUGIN_DEFINE of the frozen header
 * makes it, and then the trap: one object, so the trap surely follows. */
struct old_export {
	struct spate_plugin d;
	int (*after_load)(uint32_t, char *, size_t);
	void (*after_unload)(void);
};

__attribute__((visibility("default"))) extern const struct old_export SPATE_PLUGIN_SYMBOL_ID;
const struct old_export SPATE_PLUGIN_SYMBOL_ID = {
	.d = { .abi_version = SPATE_PLUGIN_ABI_VERSION, .struct_size = sizeof(struct spate_plugin),
	       .name = "abi_old", .version = "1.0", .init = abi_init, .process = abi_process },
	.after_load = not_load,
	.after_unload = not_unload,
};
#endif
