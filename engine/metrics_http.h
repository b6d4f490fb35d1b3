/* SPDX-License-Identifier: MIT */
/* metrics_http.h - internal to the spate command: the Prometheus exporter
 * of `spate run` (metrics_http.c), built on the library's snapshots
 * (spate/stats.h, spate_stats_view_take()), as `spate stat` and `spate top`
 * are. Not installed. */
#ifndef SPATE_ENGINE_METRICS_HTTP_H
#define SPATE_ENGINE_METRICS_HTTP_H

#include <stddef.h>

#include "spate/stats.h"

/** `spate run` side: serve Prometheus text for bus @p bus on @p listen
 *  (metrics_http.c). @return 0 or -errno; *out is the server. */
struct spate_metrics_http;
int spate_metrics_http_start(const char *bus, const char *listen, struct spate_metrics_http **out,
			     char *err, size_t errlen);
void spate_metrics_http_stop(struct spate_metrics_http *m);
/** Render the Prometheus text exposition of @p v into a malloc'ed string. */
char *spate_metrics_prometheus(const struct spate_stats_view *v);

#endif
