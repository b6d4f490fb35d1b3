/* SPDX-License-Identifier: MIT */
/*
 * plot.c - PNG charts of benchmark results, drawn by gnuplot.
 *
 * Design: the plot is built as one gnuplot script in memory (open_memstream):
 * a pngcairo terminal, a multiplot grid, and per panel its settings, its
 * data as inline datablocks ($dN << EOD) and one `plot` command gathering
 * the panel's series. spate_plot_close() pipes the script into a `gnuplot`
 * subprocess (popen) and checks its exit status and that the PNG exists.
 * No temporary files, no library to link: gnuplot is a Debian package
 * (gnuplot-nox) found on PATH, and its absence is reported before any
 * benchmark runs (spate_plot_available()).
 * Trade-offs: the data goes through text (fine for the hundreds of points a
 * benchmark makes); enhanced text is off, so names like rte_ring print as
 * they are. Limits: pngcairo is required (gnuplot-nox has it); SPATE_GNUPLOT
 * names another gnuplot binary.
 */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct spate_plot {
	char *png;
	unsigned rows, cols, npanels, nseries;
	unsigned flags; /* the current panel's */
	FILE *f;        /* the script */
	char *buf;
	size_t len;
	FILE *pl; /* the current panel's plot clauses */
	char *plbuf;
	size_t pllen;
	unsigned panel_series;
	int style_color, style_dash; /* for the next series; -1: automatic */
	int oom;
};

/* Colours a reader can tell apart (Okabe-Ito, then darker ones). */
static const char *const colors[] = { "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
				      "#56B4E9", "#000000", "#8C564B", "#7F7F7F", "#BCBD22" };
#define NCOLORS (sizeof(colors) / sizeof(colors[0]))

static const char *gnuplot_bin(void)
{
	const char *g = getenv("SPATE_GNUPLOT");
	return g && *g ? g : "gnuplot";
}

/* Whether @p name runs: a path, or a file found on PATH. */
static int find_exe(const char *name)
{
	if (strchr(name, '/'))
		return access(name, X_OK) == 0;
	const char *path = getenv("PATH");
	if (!path)
		return 0;
	char buf[4096];
	while (*path) {
		size_t n = strcspn(path, ":");
		if (n && n + strlen(name) + 2 < sizeof(buf)) {
			memcpy(buf, path, n);
			buf[n] = '/';
			strcpy(buf + n + 1, name);
			struct stat st;
			if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
				return 1;
		}
		path += n + (path[n] == ':');
	}
	return 0;
}

int spate_plot_available(char *err, size_t errlen)
{
	const char *g = gnuplot_bin();
	if (find_exe(g))
		return 0;
	snprintf(err, errlen,
		 "--plot needs gnuplot, and '%s' is not on PATH: install the Debian package "
		 "gnuplot-nox (apt-get install gnuplot-nox)", g);
	return -ENOENT;
}

/* @p s as a gnuplot double-quoted string. */
static void put_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

int spate_plot_open(struct spate_plot **out, const char *png, unsigned rows, unsigned cols,
		    const char *title, char *err, size_t errlen)
{
	struct spate_plot *p;
	int rc;

	*out = NULL;
	if (!png || !*png || !rows || !cols || rows > 16 || cols > 16) {
		snprintf(err, errlen, "plot: no file name, or a bad grid");
		return -EINVAL;
	}
	rc = spate_plot_available(err, errlen);
	if (rc < 0)
		return rc;
	p = calloc(1, sizeof(*p));
	if (!p)
		goto oom;
	p->png = strdup(png);
	p->f = open_memstream(&p->buf, &p->len);
	if (!p->png || !p->f)
		goto oom;
	p->rows = rows;
	p->cols = cols;
	fprintf(p->f, "set terminal pngcairo size %u,%u font 'sans,10' noenhanced\n",
		cols * 720u, rows * 440u + (title ? 30u : 0u));
	fputs("set output ", p->f);
	put_str(p->f, png);
	fputs("\nset encoding utf8\nset datafile missing 'nan'\n", p->f);
	fprintf(p->f, "set multiplot layout %u,%u", rows, cols);
	if (title) {
		fputs(" title ", p->f);
		put_str(p->f, title);
	}
	fputs("\nset grid\nset key outside right top font ',8' spacing 0.9\n"
	      "set format y '%g'\n", p->f);
	p->style_color = p->style_dash = -1;
	*out = p;
	return 0;
oom:
	if (p) {
		if (p->f)
			fclose(p->f);
		free(p->buf);
		free(p->png);
		free(p);
	}
	snprintf(err, errlen, "plot: out of memory");
	return -ENOMEM;
}

/* Write the current panel's plot command. */
static void end_panel(struct spate_plot *p)
{
	if (!p->pl)
		return;
	fclose(p->pl);
	p->pl = NULL;
	if (!p->panel_series) /* gnuplot fails on a plot without a point */
		fputs("unset logscale\nset xtics autofreq\nset xrange [0:1]\nset yrange [0:1]\n"
		      "set label 1 'no data' at graph 0.5,0.5 center\n"
		      "plot -1 notitle\nunset label 1\n", p->f);
	else
		fprintf(p->f, "plot %s\n", p->plbuf);
	free(p->plbuf);
	p->plbuf = NULL;
}

int spate_plot_panel(struct spate_plot *p, const char *title, const char *xlabel,
		     const char *ylabel, unsigned flags)
{
	if (p->npanels == p->rows * p->cols)
		return -ENOSPC;
	end_panel(p);
	p->pl = open_memstream(&p->plbuf, &p->pllen);
	if (!p->pl) {
		p->oom = 1;
		return -ENOMEM;
	}
	p->npanels++;
	p->panel_series = 0;
	p->flags = flags;
	fputs("unset logscale\nset xtics autofreq\nset format x '%g'\nset yrange [*:*]\n", p->f);
	if (flags & SPATE_PLOT_PCT_X) {
		/* x = 1 / (1 - p/100): the tail spreads out, one decade a nine. */
		fputs("set logscale x 10\nset xrange [1:*]\n"
		      "set xtics ('0' 1, '50' 2, '90' 10, '99' 100, '99.9' 1000, '99.99' 10000, "
		      "'99.999' 100000, '99.9999' 1000000)\n", p->f);
		} else {
		fputs("set xrange [*:*]\n", p->f);
		if (flags & SPATE_PLOT_LOGX)
			fputs("set logscale x 2\n", p->f);
	}
	if (flags & SPATE_PLOT_LOGY)
		fputs("set logscale y 10\n", p->f);
	fputs("set title ", p->f);
	put_str(p->f, title);
	fputs("\nset xlabel ", p->f);
	put_str(p->f, xlabel);
	fputs("\nset ylabel ", p->f);
	put_str(p->f, ylabel);
	fputc('\n', p->f);
	return 0;
}

static int point_ok(const struct spate_plot *p, double x, double y)
{
	if (!isfinite(x) || !isfinite(y))
		return 0;
	if ((p->flags & (SPATE_PLOT_LOGX | SPATE_PLOT_PCT_X)) && x <= 0)
		return 0;
	if ((p->flags & SPATE_PLOT_LOGY) && y <= 0)
		return 0;
	return 1;
}

int spate_plot_series(struct spate_plot *p, const char *name, const double *x, const double *y,
		      unsigned n)
{
	if (!p->pl)
		return -EINVAL;
	unsigned id = p->nseries, ok = 0;
	for (unsigned i = 0; i < n; i++)
		ok += (unsigned)point_ok(p, x[i], y[i]);
	if (!ok) /* gnuplot would stop on an empty series */
		return 0;
	p->nseries++;
	fprintf(p->f, "$d%u << EOD\n", id);
	for (unsigned i = 0; i < n; i++)
		if (point_ok(p, x[i], y[i]))
			fprintf(p->f, "%.17g %.17g\n", x[i], y[i]);
	fputs("EOD\n", p->f);
	unsigned color = p->style_color >= 0 ? (unsigned)p->style_color : p->panel_series;
	unsigned dash = p->style_dash >= 0 ? (unsigned)p->style_dash : 0;
	static const unsigned points[] = { 7, 5, 9, 11, 13 }; /* circle, square, triangles, diamond */
	fprintf(p->pl,
		"%s$d%u using 1:2 with linespoints lc rgb '%s' dt %u pt %u ps 0.6 lw 1.5 title ",
		p->panel_series ? ", " : "", id, colors[color % NCOLORS], dash % 5u + 1u,
		points[dash % 5u]);
	p->style_color = p->style_dash = -1;
	put_str(p->pl, name);
	p->panel_series++;
	return 0;
}

void spate_plot_style(struct spate_plot *p, unsigned color, unsigned dash)
{
	p->style_color = (int)color;
	p->style_dash = (int)dash;
}

int spate_plot_hist(struct spate_plot *p, const char *name, const struct spate_hist *h)
{
	uint64_t n = spate_hist_count(h);
	double x[128], y[128];
	unsigned k = 0;

	if (!p->pl)
		return -EINVAL;
	if (!n)
		return 0;
	/* Ten points a decade of 1/(1 - p), up to the resolution of n values. */
	for (unsigned i = 0; i < 120 && k < 127; i++) {
		double inv = pow(10.0, i / 10.0);
		if (inv > (double)n)
			break;
		double pct = 100.0 * (1.0 - 1.0 / inv);
		x[k] = inv;
		y[k] = (double)spate_hist_percentile(h, pct) / 1e3;
		k++;
	}
	x[k] = (double)n; /* the maximum, at the last rank */
	y[k] = (double)spate_hist_max(h) / 1e3;
	k++;
	return spate_plot_series(p, name, x, y, k);
}

void spate_plot_discard(struct spate_plot *p)
{
	if (!p)
		return;
	if (p->pl)
		fclose(p->pl);
	free(p->plbuf);
	if (p->f)
		fclose(p->f);
	free(p->buf);
	free(p->png);
	free(p);
}

int spate_plot_close(struct spate_plot *p, char *err, size_t errlen)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	int rc = 0;

	end_panel(p);
	fputs("unset multiplot\nset output\n", p->f);
	if (fflush(p->f) || p->oom) {
		snprintf(err, errlen, "plot: out of memory");
		spate_plot_discard(p);
		return -ENOMEM;
	}
	const char *g = gnuplot_bin();
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "exec '%s'", g); /* g: from the environment, quoted */
	if (strchr(g, '\'')) {
		snprintf(err, errlen, "plot: SPATE_GNUPLOT may not contain quotes");
		spate_plot_discard(p);
		return -EINVAL;
	}
	(void)unlink(p->png); /* so a stale file is not taken for success */
	/* A gnuplot that dies early must not kill us with SIGPIPE. */
	sigaction(SIGPIPE, &ign, &old);
	FILE *gp = popen(cmd, "w");
	if (!gp) {
		rc = -errno;
		snprintf(err, errlen, "plot: cannot run %s: %s", g, strerror(errno));
		goto out;
	}
	size_t wr = fwrite(p->buf, 1, p->len, gp);
	int st = pclose(gp);
	struct stat sb;
	if (wr != p->len || st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		snprintf(err, errlen, "plot: %s failed (exit status %d; its messages are above)",
			 g, st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		rc = -EIO;
	} else if (stat(p->png, &sb) < 0 || sb.st_size == 0) {
		snprintf(err, errlen, "plot: %s wrote no %s", g, p->png);
		rc = -EIO;
	}
out:
	sigaction(SIGPIPE, &old, NULL);
	spate_plot_discard(p);
	return rc;
}
