/* SPDX-License-Identifier: MIT */
/*
 * Internal: the source types built into the spate command (one door per
 * file of engine/sources/), registered by `spate run`. Not installed; the
 * core (libspate) never includes it.
 */
#ifndef SPATE_SOURCES_BUILTIN_H
#define SPATE_SOURCES_BUILTIN_H

#include <stddef.h>

#include "spate/sources.h"

/* The doors' types (each defined by its door when it is built). */
extern const struct spate_source_type spate_nats_source_type;
extern const struct spate_source_type spate_dpdk_source_type;

/**
 * Register every built-in source type with engine @p e (between open and
 * start), checking the configuration's entries of each.
 * @return 0 or the first error of spate_engine_register_source_type()
 *         (@p err says which entry and why).
 */
int spate_sources_register_builtin(struct spate_engine *e, char *err, size_t errlen);

#endif
