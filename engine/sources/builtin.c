/* SPDX-License-Identifier: MIT */
/*
 * builtin.c - the table of source types built into the spate command.
 *
 * Design. One row per door, present when meson built that door (its
 * feature option and library found: SPATE_HAVE_<DOOR>_SOURCE in
 * spate_config.h). A door is a file of this folder defining a const struct
 * spate_source_type; it uses only the public API (spate/sources.h,
 * spate/stream.h, ...), and the core never includes it.
 *
 * Limits: the types are the ones compiled in; out-of-tree source types are
 * registered by programs that embed the engine (spate/sources.h).
 */
#include "spate_config.h"

#include <stdio.h>

#include "engine/sources/builtin.h"

static const struct spate_source_type *const builtin[] = {
#if SPATE_HAVE_NATS_SOURCE
	&spate_nats_source_type,
#endif
#if defined(SPATE_HAVE_DPDK_SOURCE) && SPATE_HAVE_DPDK_SOURCE
	&spate_dpdk_source_type,
#endif
	NULL,
};

int spate_sources_register_builtin(struct spate_engine *e, char *err, size_t errlen)
{
	for (size_t i = 0; builtin[i]; i++) {
		int rc = spate_engine_register_source_type(e, builtin[i], err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}
