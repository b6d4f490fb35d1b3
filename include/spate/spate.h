/* SPDX-License-Identifier: MIT */
/**
 * @file spate/spate.h
 * @brief Umbrella header of libspate.
 */
#ifndef SPATE_SPATE_H
#define SPATE_SPATE_H

#define SPATE_VERSION_MAJOR 0
#define SPATE_VERSION_MINOR 1
#define SPATE_VERSION_PATCH 0

#include "spate/ring.h"
#include "spate/shm.h"
#include "spate/topo.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Version of the library actually loaded, "MAJOR.MINOR.PATCH". */
const char *spate_version(void);

#ifdef __cplusplus
}
#endif
#endif
