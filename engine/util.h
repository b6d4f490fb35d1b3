/* SPDX-License-Identifier: MIT */
/* Internal: small file-system helpers shared by engine modules. Not installed. */
#ifndef SPATE_ENGINE_UTIL_H
#define SPATE_ENGINE_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/**
 * mkdir -p @p dir: create it and every missing parent with @p mode.
 * @return 0 (created or present), -EINVAL (empty or longer than 4095),
 *         or the -errno of mkdir(2).
 */
int spate_util_mkdir_p(const char *dir, mode_t mode);

#endif
