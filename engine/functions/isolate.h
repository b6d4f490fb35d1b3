/* SPDX-License-Identifier: MIT */
/*
 * isolate.h - `isolation: process` for C plugins (isolate.c): the provider
 * a program registers so that consumers configured with it run their .so
 * in supervised child processes (spate-isolate). Internal to the doors.
 */
#ifndef SPATE_FN_ISOLATE_H
#define SPATE_FN_ISOLATE_H

#include <stddef.h>

/** Environment variable: the spate-isolate program to run (default: beside
 *  the running program, then the installed one). */
#define SPATE_ISO_HOST_ENV "SPATE_ISOLATE_HOST"

/**
 * Register the "isolation" plugin provider (spate/provider.h) for the
 * engines this process opens from now on. `spate run` calls it.
 * @return 0, or the errors of spate_engine_register_provider() (-EEXIST:
 *   registered already).
 */
int spate_iso_register(void);

/**
 * Find the spate-isolate program into @p buf ($SPATE_ISOLATE_HOST, beside
 * the running program, the installed one).
 * @return 0, or -ENOENT (none executable; @p buf holds the last candidate).
 */
int spate_iso_host_path(char *buf, size_t len);

#endif
