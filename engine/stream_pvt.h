/* SPDX-License-Identifier: MIT */
/* Internal: what the checkpoint module (checkpoint.c) needs of a stream
 * handle beyond the public API. Not installed. */
#ifndef SPATE_ENGINE_STREAM_PVT_H
#define SPATE_ENGINE_STREAM_PVT_H

#include <stdint.h>

struct spate_stream;

/* Internal to libspate: never exported, whatever libspate.map's patterns. */
#pragma GCC visibility push(hidden)

/** Where a stream region keeps its checkpoint table (validated copies of
 *  the header's fields, spate_stream_attach/create). */
struct spate_stream_table {
	uint8_t *base;     /**< first entry */
	uint64_t stride;   /**< bytes between entries (128-byte aligned) */
	uint32_t entries;  /**< SPATE_STREAM_MAX_CONSUMERS in regions of today */
	uint32_t shards;   /**< next_seq[] entries in each */
};

/** Fill @p t for stream @p s. Any thread. */
void spate_stream_table_of(const struct spate_stream *s, struct spate_stream_table *t);

/** Length of a valid bus or stream name ([A-Za-z0-9_-], 1..NAME_MAX) or,
 *  with @p dot, consumer name (also '.'); -EINVAL otherwise. Any thread. */
int spate_stream_name_len(const char *s, int dot);

#pragma GCC visibility pop

#endif
