/* SPDX-License-Identifier: MIT */
/*
 * producers.c - the engine's producers: one per stream of the bus, opened
 * when a task first writes to the stream (a failure destination is opened
 * at engine open instead, so a stream that cannot take records is a
 * configuration error, not a surprise at the first failed record).
 *
 * Design. Opening is serialized by one mutex; a producer, once open, is
 * never replaced until fini, so tasks keep the pointer. Puts on one shared
 * producer are serialized by its own mutex (the caller takes it): failures
 * and forwards are rare next to deliveries.
 *
 * Limits: one engine-side producer per stream; a single-producer stream
 * that something else already writes cannot be a failure destination.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/producers.h"
#include "spate/slog.h"
#include "spate/stats.h"
#include "spate/stream.h"

int spate_producers_init(struct spate_producers *ps, struct spate_stream *const *streams,
			 uint32_t n)
{
	memset(ps, 0, sizeof(*ps));
	ps->sp = calloc(n ? n : 1, sizeof(*ps->sp));
	if (!ps->sp)
		return -ENOMEM;
	pthread_mutex_init(&ps->lock, NULL);
	for (uint32_t i = 0; i < n; i++) {
		ps->sp[i].stream = streams[i];
		pthread_mutex_init(&ps->sp[i].lock, NULL);
	}
	ps->n = n;
	return 0;
}

int spate_producers_open(struct spate_producers *ps, uint32_t i)
{
	struct spate_shared_producer *sp = &ps->sp[i];
	int rc = 0;

	pthread_mutex_lock(&ps->lock);
	if (!sp->prod) {
		rc = spate_producer_open(sp->stream, SPATE_RING_WAIT_YIELD, SPATE_PRODUCER_F_WAIT_FULL,
					 &sp->prod);
		if (rc < 0)
			sp->prod = NULL;
		else if (ps->stats) /* counters region: this stream's producer line */
			spate_producer_set_stats(sp->prod, spate_stats_shard_of(ps->stats, i, 0));
	}
	pthread_mutex_unlock(&ps->lock);
	return rc;
}

struct spate_shared_producer *spate_producers_get(struct spate_producers *ps, const char *name)
{
	for (uint32_t i = 0; i < ps->n; i++) {
		if (strcmp(spate_stream_name(ps->sp[i].stream), name) != 0)
			continue;
		int rc = spate_producers_open(ps, i);
		if (rc < 0) {
			spate_slog(SPATE_LOG_ERROR, NULL, "cannot produce to stream %s: %s", name,
				   strerror(-rc));
			return NULL;
		}
		return &ps->sp[i];
	}
	return NULL;
}

void spate_producers_set_stats(struct spate_producers *ps, struct spate_stats *st)
{
	pthread_mutex_lock(&ps->lock);
	ps->stats = st;
	for (uint32_t i = 0; i < ps->n; i++)
		if (ps->sp[i].prod)
			spate_producer_set_stats(ps->sp[i].prod,
						 st ? spate_stats_shard_of(st, i, 0) : NULL);
	pthread_mutex_unlock(&ps->lock);
}

void spate_producers_fini(struct spate_producers *ps)
{
	if (!ps->sp)
		return;
	for (uint32_t i = 0; i < ps->n; i++) {
		spate_producer_close(ps->sp[i].prod);
		pthread_mutex_destroy(&ps->sp[i].lock);
	}
	pthread_mutex_destroy(&ps->lock);
	free(ps->sp);
	memset(ps, 0, sizeof(*ps));
}
