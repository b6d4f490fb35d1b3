/* SPDX-License-Identifier: MIT */
/**
 * @file spate/slog.h
 * @brief The engine's diagnostic log: human-readable lines by default, JSON
 *        lines on request, with consumer, stream and shard in context, and
 *        repeated messages rate-limited.
 *
 * (Not to be confused with spate/log.h, the shard log on disk.)
 *
 * Text (default):
 *
 *     spate: warn: orders-count/3: cannot reach the sink: timeout
 *
 * JSON (`spate --log-format json ...`, `spate run --log-format json`, or
 * SPATE_LOG_FORMAT=json), one object a line:
 *
 *     {"ts":"2026-11-27T02:10:11.123456Z","level":"warn","msg":"cannot reach
 *      the sink: timeout","consumer":"orders-count","stream":"orders",
 *      "shard":3,"lane":0,"pid":4242}
 *
 * Rate limiting: messages of one call site (its format string) and one
 * context (consumer, shard) pass at most SPATE_SLOG_BURST times a second
 * (SPATE_LOG_RATE overrides); the rest are counted, and the next line of
 * that site after its second ends, or spate_slog_flush(), reports them:
 * `suppressed K messages like "FORMAT"` (JSON: "suppressed": K, "site":
 * FORMAT). Debug messages are dropped unless SPATE_DEBUG is set or the level
 * is raised with spate_slog_set_level().
 *
 * Thread safety: every function may be called from any thread; lines are
 * written whole with one write(2), so they never interleave.
 */
#ifndef SPATE_SLOG_H
#define SPATE_SLOG_H

#include <stdarg.h>
#include <stdint.h>

#include "spate/loglevel.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Messages a second a call site and context may log before suppression. */
#define SPATE_SLOG_BURST 10u

/** Output format. */
enum spate_slog_format {
	SPATE_SLOG_TEXT = 0, /**< `spate: LEVEL: [CONSUMER/SHARD: ]MESSAGE` */
	SPATE_SLOG_JSON = 1, /**< one JSON object a line */
};

/** Whom a message is about; any field may be absent (NULL / -1). */
struct spate_slog_ctx {
	const char *consumer; /**< consumer name, or NULL */
	const char *stream;   /**< stream name, or NULL */
	int64_t shard;        /**< shard, or -1 */
	int64_t lane;         /**< lane within the shard, or -1 */
};

/**
 * Parse "text" or "json".
 * @return 0, -EINVAL (anything else).
 */
int spate_slog_parse_format(const char *s, enum spate_slog_format *out);

/** Use format @p f from now on (overrides SPATE_LOG_FORMAT). */
void spate_slog_set_format(enum spate_slog_format f);

/** The format in use (SPATE_LOG_FORMAT decides until set). */
enum spate_slog_format spate_slog_format(void);

/** Log messages up to @p max (default INFO; DEBUG with SPATE_DEBUG set). */
void spate_slog_set_level(enum spate_log_level max);

/**
 * Write lines to file descriptor @p fd (default 2, stderr). The caller
 * keeps @p fd open while it is in use.
 * @return 0, -EBADF (@p fd negative).
 */
int spate_slog_set_fd(int fd);

/** Messages a second per call site and context (0: no limit). */
void spate_slog_set_burst(unsigned per_second);

/**
 * Log one printf-style message at @p lvl about @p ctx (NULL: none). The
 * format string's address identifies the call site for rate limiting.
 */
void spate_slog(enum spate_log_level lvl, const struct spate_slog_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** spate_slog() with a va_list. */
void spate_slog_v(enum spate_log_level lvl, const struct spate_slog_ctx *ctx, const char *fmt,
		  va_list ap) __attribute__((format(printf, 3, 0)));

/**
 * Report every count of suppressed messages not yet reported (also run at
 * exit once something was suppressed).
 * @return the number of suppression lines written.
 */
int spate_slog_flush(void);

#ifdef __cplusplus
}
#endif
#endif
