/* SPDX-License-Identifier: MIT */
/**
 * @file plot.h
 * @brief Internal: PNG charts of benchmark results through gnuplot (bench/plot.c).
 *
 * A plot is a grid of panels, each with named series of (x, y) points,
 * written as one gnuplot script (data inline) and rendered by a `gnuplot`
 * subprocess into a PNG. Used by `spate bench ring --plot`; meant for the
 * other benchmarks too:
 *
 *     struct spate_plot *p;
 *     if (spate_plot_open(&p, "out.png", 2, 1, "title", err, sizeof(err)) < 0) ...
 *     spate_plot_panel(p, "Mrec/s vs batch", "batch", "Mrec/s", SPATE_PLOT_LOGX);
 *     spate_plot_series(p, "spate", xs, ys, n);
 *     spate_plot_hist(p, "p", &hist);     // a latency percentile curve
 *     rc = spate_plot_close(p, err, sizeof(err));
 */
#ifndef SPATE_BENCH_PLOT_H
#define SPATE_BENCH_PLOT_H

#include <stddef.h>

#include "spate/hist.h"

/** Panel flags. */
enum {
	SPATE_PLOT_LOGX = 1u << 0,
	SPATE_PLOT_LOGY = 1u << 1,
	/** x is a percentile axis (values 0..100, spread as 1/(1 - p)). */
	SPATE_PLOT_PCT_X = 1u << 2,
};

struct spate_plot;

/**
 * Whether gnuplot (Debian package gnuplot-nox) can be run, so that a long
 * benchmark fails before it starts rather than after. On failure @p err
 * says what to install.
 * @return 0, -ENOENT (no gnuplot on PATH).
 */
int spate_plot_available(char *err, size_t errlen);

/**
 * Start a plot of @p rows x @p cols panels into @p png.
 * @return 0, -ENOENT (no gnuplot; @p err names the package), -EINVAL
 *         (no file, no panels), -ENOMEM.
 */
int spate_plot_open(struct spate_plot **out, const char *png, unsigned rows, unsigned cols,
		    const char *title, char *err, size_t errlen);

/**
 * Start the next panel (left to right, top to bottom).
 * @return 0, -ENOSPC (more panels than rows x cols), -ENOMEM.
 */
int spate_plot_panel(struct spate_plot *p, const char *title, const char *xlabel,
		     const char *ylabel, unsigned flags);

/**
 * Add a line named @p name through the @p n points (@p x[i], @p y[i]) to
 * the current panel. Points with a non-finite coordinate, or not positive
 * on a log axis, are left out; a series left with no point is not drawn.
 * @return 0, -EINVAL (no panel yet), -ENOMEM.
 */
int spate_plot_series(struct spate_plot *p, const char *name, const double *x, const double *y,
		      unsigned n);

/**
 * Style the next series: colour @p color (an index into a fixed palette of
 * ten) and dash pattern and point shape @p dash (0 solid and circles, then
 * four others), e.g. colour by record size and dash by ring. Without it,
 * series of a panel take successive colours, solid.
 */
void spate_plot_style(struct spate_plot *p, unsigned color, unsigned dash);

/**
 * Add the percentile curve of @p h (x: percentile, y: microseconds) to the
 * current panel, which should have SPATE_PLOT_PCT_X. Nothing if @p h is
 * empty. @return as spate_plot_series().
 */
int spate_plot_hist(struct spate_plot *p, const char *name, const struct spate_hist *h);

/**
 * Render with gnuplot and free @p p (also on error).
 * @return 0, -EIO (gnuplot failed or wrote no file; @p err says why),
 *         -ENOMEM, or -errno of popen().
 */
int spate_plot_close(struct spate_plot *p, char *err, size_t errlen);

/** Free @p p without rendering. */
void spate_plot_discard(struct spate_plot *p);

#endif
