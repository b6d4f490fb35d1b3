/* SPDX-License-Identifier: MIT */
/*
 * crashy_plugin.c - a consumer plugin that fails the way real code does,
 * for the tests of `isolation: process` (tests/isolate.sh) and the crash
 * loop (bench/soak): it dies inside process() by
 *   fault: segv    a NULL write (SIGSEGV)
 *   fault: abort   abort() (SIGABRT)
 *   fault: exit    exit(3) (a library that exits)
 *   fault: hang    never returns (sleeps)
 *   fault: write   writes into the record it was given (the ring is
 *                  read-only in an isolated child: SIGSEGV)
 *   fault: leak    allocates `leak` bytes per batch (default 16 MiB),
 *                  touched, never freed, until the memory limit ends it
 * when the batch is
 *   every: N       the Nth, 2Nth, ... batch this process delivers (a fresh
 *                  process starts counting again: the retried batch passes)
 *   contains: STR  one holding a record whose payload contains STR (every
 *                  time: a poison record, for the failure destination)
 * Otherwise the batch succeeds (after `delay_us` microseconds, default 0:
 * a slow plugin, so a test can kill its process mid-batch), and with
 * `out: PATH` it appends one line
 * "shard first-seq last-seq count" per batch to PATH (one O_APPEND write),
 * so a test can check that every record was delivered at least once
 * (batches of one lane hold consecutive sequence numbers).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spate/plugin.h"

struct crashy {
	const char *fault, *contains;
	unsigned long every, batches, delay_us;
	size_t leak;
	int out;
};

static int c_init(const struct spate_plugin_ctx *ctx, void **state)
{
	struct crashy *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->fault = spate_plugin_opt(ctx, "fault", "segv");
	c->contains = spate_plugin_opt(ctx, "contains", NULL);
	c->every = strtoul(spate_plugin_opt(ctx, "every", "0"), NULL, 10);
	c->delay_us = strtoul(spate_plugin_opt(ctx, "delay_us", "0"), NULL, 10);
	c->leak = strtoull(spate_plugin_opt(ctx, "leak", "16777216"), NULL, 10);
	const char *out = spate_plugin_opt(ctx, "out", NULL);
	c->out = out ? open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
	if (out && c->out < 0) {
		free(c);
		return -errno;
	}
	*state = c;
	return 0;
}

static int has(const struct spate_ring_rec *r, const char *s)
{
	size_t n = strlen(s);
	const char *p = r->data;

	for (size_t i = 0; n && i + n <= r->len; i++)
		if (memcmp(p + i, s, n) == 0)
			return 1;
	return 0;
}

static void die(struct crashy *c, const struct spate_batch *b)
{
	if (!strcmp(c->fault, "abort"))
		abort();
	if (!strcmp(c->fault, "exit"))
		exit(3);
	if (!strcmp(c->fault, "hang"))
		for (;;)
			pause();
	if (!strcmp(c->fault, "write"))
		*(volatile char *)b->recs[0].data = 'X';
	if (!strcmp(c->fault, "leak")) {
		for (;;) {
			char *p = malloc(c->leak);
			if (!p)
				abort(); /* what most code does when malloc fails */
			memset(p, 1, c->leak);
		}
	}
	*(volatile int *)NULL = 1; /* segv */
}

static int c_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct crashy *c = state;

	c->batches++;
	if (c->every && c->batches % c->every == 0)
		die(c, b);
	for (uint32_t i = 0; c->contains && i < b->count; i++)
		if (has(&b->recs[i], c->contains))
			die(c, b);
	if (c->delay_us)
		usleep((useconds_t)c->delay_us);
	if (c->out >= 0) {
		char line[96];
		int n = snprintf(line, sizeof(line), "%u %llu %llu %u\n", b->shard,
				 (unsigned long long)b->recs[0].seq,
				 (unsigned long long)b->recs[b->count - 1].seq, b->count);
		if (write(c->out, line, (size_t)n) != n)
			return -EIO;
	}
	res->status = SPATE_BATCH_OK;
	return 0;
}

static void c_fini(void *state)
{
	struct crashy *c = state;

	if (c->out >= 0)
		close(c->out);
	free(c);
}

SPATE_PLUGIN_DEFINE(.name = "crashy", .version = "1", .init = c_init, .process = c_process,
		    .fini = c_fini);
