/* SPDX-License-Identifier: MIT */
/* Internal: the engine's own producers, one per stream of the bus, opened
 * on first use and shared by every task that writes to that stream (failure
 * destinations, plugins' forwards). Created by the engine, handed to each
 * consumer at creation. Not installed. */
#ifndef SPATE_ENGINE_PRODUCERS_H
#define SPATE_ENGINE_PRODUCERS_H

#include <pthread.h>
#include <stdint.h>

struct spate_stream;
struct spate_stats;

/** A producer shared by the tasks that write to one stream; failures and
 *  forwards are rare next to deliveries, so a mutex is fine. */
struct spate_shared_producer {
	struct spate_stream *stream;
	struct spate_producer *prod; /* NULL until first use; then fixed */
	pthread_mutex_t lock;        /* held around every put on prod */
};

/** The bus's shared producers. */
struct spate_producers {
	struct spate_shared_producer *sp; /* [n], sp[i] writes streams[i] */
	uint32_t n;
	pthread_mutex_t lock;             /* opening */
	struct spate_stats *stats;        /* counters region, or NULL: producers count there */
};

/** Set up @p ps for the @p n streams @p streams (kept open by the caller
 *  until fini). Nothing is opened yet. @return 0 or -ENOMEM. */
int spate_producers_init(struct spate_producers *ps, struct spate_stream *const *streams,
			 uint32_t n);
/** Open stream @p i's producer unless it is open (waits on full shards,
 *  yields). Any thread. @return 0 or the errors of spate_producer_open(). */
int spate_producers_open(struct spate_producers *ps, uint32_t i);
/** Stream @p name's producer, opened on first use; NULL (and the reason
 *  logged) if the bus has no such stream or it cannot be opened. Any thread. */
struct spate_shared_producer *spate_producers_get(struct spate_producers *ps, const char *name);
/** Count in the counters region @p st from now on (NULL: stop); every open
 *  producer and every later one. Thread: the engine's control thread, with
 *  no put in flight. */
void spate_producers_set_stats(struct spate_producers *ps, struct spate_stats *st);
/** Close every producer, free. The streams stay open. NULL-safe fields. */
void spate_producers_fini(struct spate_producers *ps);

#endif
