/* SPDX-License-Identifier: MIT */
/*
 * api.h - the Kinesis-compatible HTTP front (engine/api/), as `spate run`
 * starts it. Internal to the spate command: not installed; the core never
 * includes it.
 */
#ifndef SPATE_API_H
#define SPATE_API_H

#include <stddef.h>
#include <stdint.h>

#include "spate/config.h"
#include "spate/engine.h"

struct spate_api;

/**
 * Serve the Kinesis API of running engine @p e on cfg->api.listen. @p cfg
 * must stay valid until spate_api_stop(). Reads the secret files of
 * api.auth.keys (each must be a regular file of mode 0600).
 * @return 0, -EINVAL (bad address, key file; @p err names file:line:field),
 *         -EADDRINUSE or another -errno of listening, -ENOMEM.
 */
int spate_api_start(struct spate_engine *e, const struct spate_config *cfg, struct spate_api **out,
		    char *err, size_t errlen);
/** Stop serving (connections closed, producers closed). NULL-safe. */
void spate_api_stop(struct spate_api *a);
/** Requests answered and of them errors, since start. Any thread. */
void spate_api_counters(const struct spate_api *a, uint64_t *requests, uint64_t *errors);

#endif
