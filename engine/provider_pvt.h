/* SPDX-License-Identifier: MIT */
/* Internal: getting a consumer's plugin (provider.c). Not installed. */
#ifndef SPATE_ENGINE_PROVIDER_PVT_H
#define SPATE_ENGINE_PROVIDER_PVT_H

#include <stddef.h>

#include "spate/config.h"

struct spate_plugin_lib;
struct spate_stream;

/**
 * Consumer @p k's plugin: from the first registered provider that serves
 * it, else loaded from @p spec (a hot deploy's path) or k->plugin. @p s is
 * the stream it reads.
 * @return 0, -ENOPROTOOPT (a function or isolated consumer and no provider
 *         for it), the provider's open() error, or spate_plugin_load()'s.
 *         @p err says why (without file, line or consumer).
 */
int spate_provider_plugin(const struct spate_config *cfg, const struct spate_config_consumer *k,
			  struct spate_stream *s, const char *spec, struct spate_plugin_lib **out,
			  char *err, size_t errlen);

#endif
