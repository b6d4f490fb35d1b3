/* SPDX-License-Identifier: MIT */
/*
 * functions.h - the functions door: consumers whose configuration says
 * `function:` run Lambda function code in processes of their own, fed
 * through the Lambda Runtime API (functions.c). Built into the spate
 * command, never into libspate.
 */
#ifndef SPATE_FN_FUNCTIONS_H
#define SPATE_FN_FUNCTIONS_H

#include "spate/provider.h"

/** Environment variable: directory of the bundled runtime loops
 *  (node/bootstrap.mjs, python/bootstrap.py); default SPATE_FN_RUNTIME_DIR. */
#define SPATE_FN_RUNTIME_DIR_ENV "SPATE_FUNCTIONS_RUNTIME_DIR"
/** Account id in the ARNs of the event (the Kinesis front shows the same). */
#define SPATE_FN_ACCOUNT "000000000000"

struct spate_hist;

/**
 * Merge into @p out (initialised) the engine's side of every invocation
 * since the last call, ns: process() less the wait for a ready process and
 * less the function's own time (the event handed over to its answer
 * received); then start over. For `spate bench functions`.
 * @return 0, -ENOMEM, -EPROTO.
 */
int spate_fn_overhead_take(struct spate_hist *out);

/** The provider `spate run` registers (spate_engine_register_provider). */
extern const struct spate_plugin_provider spate_fn_provider;

#endif
