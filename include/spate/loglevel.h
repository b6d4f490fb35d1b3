/* SPDX-License-Identifier: MIT */
/**
 * @file spate/loglevel.h
 * @brief Severity of a diagnostic message: shared by the engine's logger
 *        (spate/slog.h) and the plugin host's log service (spate/plugin.h),
 *        so that neither includes the other.
 *
 * Part of the plugin ABI (a plugin passes these values to the host's log):
 * the values are fixed.
 */
#ifndef SPATE_LOGLEVEL_H
#define SPATE_LOGLEVEL_H

#ifdef __cplusplus
extern "C" {
#endif

/** Severity for the host logger. */
enum spate_log_level {
	SPATE_LOG_ERROR = 0,
	SPATE_LOG_WARN = 1,
	SPATE_LOG_INFO = 2,
	SPATE_LOG_DEBUG = 3,
};

#ifdef __cplusplus
}
#endif
#endif /* SPATE_LOGLEVEL_H */
