/* SPDX-License-Identifier: MIT */
/**
 * @file spate/topo.h
 * @brief Machine topology and thread pinning (hwloc).
 *
 * Thread safety: a struct spate_topo is read-only after spate_topo_open();
 * any thread may use it at once.
 */
#ifndef SPATE_TOPO_H
#define SPATE_TOPO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct spate_topo;

/** Where a set of threads was placed, for printing. */
struct spate_topo_placement {
	int cpu[8];          /**< OS cpu (PU) index per thread, -1 if unpinned */
	int core[8];         /**< core index per thread */
	unsigned n;          /**< threads placed */
	unsigned shared_cache_kib; /**< size of the smallest cache all share, 0 none */
	int shared_cache_level;    /**< its level (2, 3), 0 none */
	int distinct_cores;  /**< 1 if every thread has its own core */
	char desc[256];      /**< human-readable summary */
};

/**
 * Load the topology of this machine.
 * @return 0, -ENOTSUP (built without hwloc), -ENOMEM, -EIO (hwloc failed).
 */
int spate_topo_open(struct spate_topo **out);
/** Free it. NULL-safe. */
void spate_topo_close(struct spate_topo *t);

/** Physical cores the process may run on. */
unsigned spate_topo_cores(const struct spate_topo *t);
/** Logical CPUs (PUs) the process may run on. */
unsigned spate_topo_pus(const struct spate_topo *t);

/**
 * Choose @p n CPUs on distinct physical cores that share the closest cache,
 * where the machine has a choice (first PU of each core). If there are fewer
 * cores than @p n, cores are reused and distinct_cores is 0.
 * @return 0, -EINVAL (n is 0 or above 8), -ENOTSUP (built without hwloc).
 */
int spate_topo_place(const struct spate_topo *t, unsigned n, struct spate_topo_placement *p);

/**
 * Bind the calling thread to OS cpu @p cpu.
 * @return 0, -EINVAL (cpu not allowed), -ENOMEM, -ENOTSUP (built without
 *         hwloc), or the -errno of the failed binding.
 */
int spate_topo_pin_self(const struct spate_topo *t, int cpu);

/** Describe the machine in one line ("2 cores, 2 PUs, L3 32 MiB shared"). */
void spate_topo_describe(const struct spate_topo *t, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
