/* SPDX-License-Identifier: MIT */
/* Internal: process liveness helpers shared by shm.c and ring.c. Not installed. */
#ifndef SPATE_RINGS_PROC_H
#define SPATE_RINGS_PROC_H

#include <stdint.h>
#include <sys/types.h>

/** Read state (field 3) and start time (field 22) of /proc/PID/stat.
 *  @return 0, -ENOENT (no such process), -EINVAL (unparsable), -errno. */
int spate_proc_stat(pid_t pid, char *state, uint64_t *start);

/** Start time of @p pid in clock ticks since boot (/proc/PID/stat field 22),
 *  or 0 if the process does not exist or the file cannot be parsed. */
uint64_t spate_proc_start_time(pid_t pid);

/** 1 if @p pid runs (not a zombie) and started at @p start_time (0 = any),
 *  else 0. */
int spate_proc_alive(pid_t pid, uint64_t start_time);

/** Identity of the calling process's PID namespace (the inode of
 *  /proc/self/ns/pid), or 0 if it cannot be read. Two processes whose values
 *  differ cannot look each other up by pid. */
uint64_t spate_proc_pidns(void);

#endif
