/* SPDX-License-Identifier: MIT */
/*
 * config_parse.c - the configuration's text helpers, error messages and
 * scalar parsers (sizes, durations, timestamps, booleans, decimal numbers),
 * split out of config.c.
 *
 * Design. Every function here works on a string or a schema entry and knows
 * nothing of YAML or of a whole struct spate_config: config.c's walk and
 * config_check.c's checks both call them, through config_pvt.h. Messages are
 * built in the caller's bounded buffer ("<file>:<line>: <path>: <message>").
 *
 * Limits. Suffixes and boolean spellings are fixed lists; suggestions for
 * misspelt keys use an edit distance that gives up on long strings.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "spate/config.h"

#include "config_pvt.h"


/* ------------------------------------------------------------------------ */
/* Small helpers: text, formatting, suggestions                             */
/* ------------------------------------------------------------------------ */

/* Append to a bounded buffer; *pos may pass len (then nothing more fits). */
__attribute__((format(printf, 4, 0))) static void vapp(char *b, size_t len, size_t *pos,
							const char *fmt, va_list ap)
{
	if (!b || *pos >= len)
		return;
	int n = vsnprintf(b + *pos, len - *pos, fmt, ap);
	if (n > 0)
		*pos += (size_t)n;
}

__attribute__((format(printf, 4, 5))) void spate_cfg_app(char *b, size_t len, size_t *pos,
						       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vapp(b, len, pos, fmt, ap);
	va_end(ap);
}

static int is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static char lower(char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Equal ignoring ASCII case, @p a of length @p la, @p b NUL-terminated. */
int spate_cfg_eq_nocase(const char *a, size_t la, const char *b)
{
	for (size_t i = 0; i < la; i++)
		if (!b[i] || lower(a[i]) != lower(b[i]))
			return 0;
	return b[la] == '\0';
}

int spate_cfg_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > SPATE_CONFIG_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) ||
		      ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

int spate_cfg_plugin_ok(const char *s, size_t len)
{
	if (len == 0 || len >= SPATE_CONFIG_PATH_MAX)
		return 0;
	if (memchr(s, '/', len))
		return len > 3 && memcmp(s + len - 3, ".so", 3) == 0 && s[len - 4] != '/';
	if (len > SPATE_CONFIG_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || is_digit(s[i]) || s[i] == '_'))
			return 0;
	return 1;
}

/* Length of a NUL-terminated string in an array of @p cap, or cap if none. */
size_t spate_cfg_arr_len(const char *s, size_t cap)
{
	const char *z = memchr(s, '\0', cap);

	return z ? (size_t)(z - s) : cap;
}

/* "64KiB", "4MiB", "1GiB" when exact, else the byte count. */
const char *spate_cfg_fmt_size(uint64_t v, char *buf, size_t len)
{
	static const char *const u[] = { "TiB", "GiB", "MiB", "KiB" };
	static const uint64_t m[] = { 1024 * GIB, GIB, MIB, KIB };

	for (int i = 0; i < 4; i++)
		if (v && v % m[i] == 0) {
			snprintf(buf, len, "%llu%s", (unsigned long long)(v / m[i]), u[i]);
			return buf;
		}
	snprintf(buf, len, "%llu", (unsigned long long)v);
	return buf;
}

/* "0", "300s", "1ms", "24h": the largest unit that divides. */
const char *spate_cfg_fmt_dur(uint64_t ns, char *buf, size_t len)
{
	static const char *const u[] = { "d", "h", "m", "s", "ms", "us" };
	static const uint64_t m[] = { 86400 * NS_S, 3600 * NS_S, 60 * NS_S, NS_S, NS_MS, NS_US };

	if (ns == SPATE_CONFIG_NEVER) {
		snprintf(buf, len, "-1");
		return buf;
	}
	for (int i = 0; i < 6; i++)
		if (ns && ns % m[i] == 0) {
			snprintf(buf, len, "%llu%s", (unsigned long long)(ns / m[i]), u[i]);
			return buf;
		}
	snprintf(buf, len, "%llu%s", (unsigned long long)ns, ns ? "ns" : "");
	return buf;
}

/* Quote @p s for a message: at most 60 characters, non-printables as '?'. */
void spate_cfg_quote(const char *s, size_t len, char *buf, size_t blen)
{
	size_t o = 0, n = len > 60 ? 60 : len;

	if (blen < 8)
		return;
	buf[o++] = '"';
	for (size_t i = 0; i < n && o + 5 < blen; i++) {
		unsigned char ch = (unsigned char)s[i];
		buf[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	if (n < len && o + 4 < blen) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

/* Edit distance, case-insensitive, '-' equal to '_'; 99 for long strings. */
static unsigned edit_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b);
	unsigned row[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned prev = row[0];
		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			char ca = lower(a[i - 1]) == '-' ? '_' : lower(a[i - 1]);
			char cb = lower(b[j - 1]) == '-' ? '_' : lower(b[j - 1]);
			unsigned cur = row[j], best = prev + (ca != cb);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

/* Is @p cand close enough to @p s to suggest it? Returns the distance or 99. */
unsigned spate_cfg_closeness(const char *s, size_t len, const char *cand)
{
	unsigned d = edit_distance(s, len, cand);
	unsigned limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;

	return d <= limit && d < strlen(cand) ? d : 99;
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

/* "<file>:<line>: <path>: <message>", each part only when known. */
__attribute__((format(printf, 6, 0))) int spate_cfg_vreport(char *err, size_t errlen,
							  const char *file, unsigned line,
							  const char *path, const char *fmt,
							  va_list ap)
{
	size_t pos = 0;

	if (!err || errlen == 0)
		return -EINVAL;
	err[0] = '\0';
	if (file && line)
		spate_cfg_app(err, errlen, &pos, "%s:%u: ", file, line);
	else if (file)
		spate_cfg_app(err, errlen, &pos, "%s: ", file);
	if (path && *path)
		spate_cfg_app(err, errlen, &pos, "%s: ", path);
	vapp(err, errlen, &pos, fmt, ap);
	return -EINVAL;
}

__attribute__((format(printf, 5, 6))) int spate_cfg_report(char *err, size_t errlen,
							 const char *file, unsigned line,
							 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	spate_cfg_vreport(err, errlen, file, line, NULL, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* What a field expects, for "expected ..." */
const char *spate_cfg_expected(const struct field *f, char *buf, size_t len)
{
	char a[32], b[32];
	size_t pos = 0;

	if (f->what)
		return f->what;
	buf[0] = '\0';
	switch ((enum ftype)f->type) {
	case FT_NAME:
		spate_cfg_app(buf, len, &pos, "a name of 1 to %u characters from A-Z a-z 0-9 _ -",
		    SPATE_CONFIG_NAME_MAX);
		break;
	case FT_REF:
		spate_cfg_app(buf, len, &pos, "a stream name (1 to %u characters from A-Z a-z 0-9 _ -)",
		    SPATE_CONFIG_NAME_MAX);
		break;
	case FT_DIR:
		spate_cfg_app(buf, len, &pos, "an absolute path (below %u bytes)", SPATE_CONFIG_PATH_MAX);
		break;
	case FT_PLUGIN:
		spate_cfg_app(buf, len, &pos,
		    "a bundled plugin name ([a-z0-9_], at most %u characters) or a path to a "
		    ".so file (containing '/')",
		    SPATE_CONFIG_NAME_MAX);
		break;
	case FT_U32:
	case FT_U64:
		if (f->hi == UINT64_MAX)
			spate_cfg_app(buf, len, &pos, "a non-negative integer");
		else
			spate_cfg_app(buf, len, &pos, "an integer from %llu to %llu", (unsigned long long)f->lo,
			    (unsigned long long)f->hi);
		break;
	case FT_RETRIES:
		spate_cfg_app(buf, len, &pos, "-1 (retry until the record expires) or an integer from %llu to %llu",
		    (unsigned long long)f->lo, (unsigned long long)f->hi);
		break;
	case FT_SIZE:
		if (f->hi == UINT64_MAX)
			spate_cfg_app(buf, len, &pos, "a size of at least %s byte%s (like 6MiB)",
			    spate_cfg_fmt_size(f->lo, a, sizeof(a)), f->lo == 1 ? "" : "s");
		else
			spate_cfg_app(buf, len, &pos, "a %ssize from %s to %s (like 4MiB)",
			    (f->flags & F_POW2) ? "power-of-two " : "", spate_cfg_fmt_size(f->lo, a, sizeof(a)),
			    spate_cfg_fmt_size(f->hi, b, sizeof(b)));
		break;
	case FT_DUR:
		if (f->flags & F_NEVER)
			spate_cfg_app(buf, len, &pos, "-1 (never) or ");
		if (f->hi >= DUR_MAX && f->lo == 0)
			spate_cfg_app(buf, len, &pos, "a duration");
		else if (f->hi >= DUR_MAX)
			spate_cfg_app(buf, len, &pos, "a duration of at least %s", spate_cfg_fmt_dur(f->lo, a, sizeof(a)));
		else
			spate_cfg_app(buf, len, &pos, "a duration from %s to %s", spate_cfg_fmt_dur(f->lo, a, sizeof(a)),
			    spate_cfg_fmt_dur(f->hi, b, sizeof(b)));
		spate_cfg_app(buf, len, &pos, " (like 0, 500us, 10ms, 2s, 1m, 1h, 7d)");
		break;
	case FT_TIME:
		spate_cfg_app(buf, len, &pos,
		    "an RFC 3339 timestamp like 2026-11-27T10:00:00Z or "
		    "2026-11-27T10:00:00.123456789+01:00, or nanoseconds since the epoch");
		break;
	case FT_BOOL:
		spate_cfg_app(buf, len, &pos, "a boolean (true/false, yes/no, on/off)");
		break;
	case FT_ENUM:
		spate_cfg_app(buf, len, &pos, "one of");
		for (int i = 0; f->names[i]; i++)
			spate_cfg_app(buf, len, &pos, "%s %s", i ? "," : "", f->names[i]);
		break;
	case FT_OPTIONS:
		spate_cfg_app(buf, len, &pos, "a mapping of option names to scalar values");
		break;
	case FT_CORES:
		spate_cfg_app(buf, len, &pos, "a list of CPU numbers from 0 to %u (or ranges like 0-3)",
		    SPATE_CONFIG_MAX_CPUS - 1);
		break;
	case FT_STREAMS:
		spate_cfg_app(buf, len, &pos, "a list of streams (at least one)");
		break;
	case FT_CONSUMERS:
		spate_cfg_app(buf, len, &pos, "a list of consumers");
		break;
	case FT_PLACEMENT:
		spate_cfg_app(buf, len, &pos, "a mapping with keys cores, busy_threads_max, persist_threads");
		break;
	case FT_ADDR:
		spate_cfg_app(buf, len, &pos, "an address to listen on: PORT, HOST:PORT or [IPV6]:PORT "
		    "(like 127.0.0.1:9464)");
		break;
	case FT_METRICS:
		spate_cfg_app(buf, len, &pos, "a mapping with keys listen, counters");
		break;
	case FT_SOURCES:
		spate_cfg_app(buf, len, &pos, "a list of sources (mappings with keys name, type, stream "
		    "and the keys of their type)");
		break;
	case FT_FUNCTION:
		spate_cfg_app(buf, len, &pos,
			      "a mapping with keys command, handler, runtime_client, cwd, env, "
			      "timeout, memory_limit, concurrency");
		break;
	case FT_ARGV:
		spate_cfg_app(buf, len, &pos,
			      "a list of 1 to %u non-empty strings (like [node, index.mjs])",
			      SPATE_CONFIG_ARGV_MAX);
		break;
	case FT_STR:
		spate_cfg_app(buf, len, &pos, "a non-empty string of at most %llu characters",
			      (unsigned long long)f->hi);
		break;
	case FT_CWD:
		spate_cfg_app(buf, len, &pos, "a directory (relative to the configuration's)");
		break;
	case FT_ENV:
		spate_cfg_app(buf, len, &pos, "a mapping of variable names to scalar values");
		break;
	case FT_API:
		spate_cfg_app(buf, len, &pos, "a mapping with keys listen, region, auth, tls, threads");
		break;
	case FT_REGION:
		spate_cfg_app(buf, len, &pos, "an AWS region name (1 to %u characters from a-z 0-9 -, "
		    "like us-east-1)", SPATE_CONFIG_REGION_MAX);
		break;
	case FT_AUTH:
		spate_cfg_app(buf, len, &pos, "none (no signatures) or a mapping with keys");
		break;
	case FT_KEYS:
		spate_cfg_app(buf, len, &pos, "a list of {id, secret_file}");
		break;
	case FT_KEYID:
		spate_cfg_app(buf, len, &pos, "an access key id of 1 to %u characters from A-Z a-z "
		    "0-9 _ -", SPATE_CONFIG_KEY_ID_MAX);
		break;
	case FT_FILE:
		spate_cfg_app(buf, len, &pos, "a file path (below %u bytes)", SPATE_CONFIG_PATH_MAX);
		break;
	case FT_TLS:
		spate_cfg_app(buf, len, &pos, "a mapping with keys cert, key");
		break;
	case FT_CREATE:
		spate_cfg_app(buf, len, &pos, "a mapping of stream keys (durability, ring_size, ...)");
		break;
	}
	return buf;
}

void spate_cfg_key_list(const struct field *tab, size_t nf, char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < nf; i++)
		spate_cfg_app(buf, len, &pos, "%s%s", i ? ", " : "", tab[i].key);
}

/* ------------------------------------------------------------------------ */
/* Value parsers (public)                                                   */
/* ------------------------------------------------------------------------ */

/* Decimal digits at *p into *v; advances *p. -EINVAL if none, -ERANGE. */
int spate_cfg_digits(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;

	if (!is_digit(*s))
		return -EINVAL;
	for (; is_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -ERANGE;
		x = x * 10 + d;
	}
	*p = s;
	*v = x;
	return 0;
}

/* A whole string of decimal digits. */
int spate_cfg_parse_dec(const char *s, uint64_t *out)
{
	const char *p = s;
	int r = spate_cfg_digits(&p, out);

	if (r < 0)
		return r;
	return *p ? -EINVAL : 0;
}

int spate_config_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *u;
		uint64_t m;
	} units[] = {
		{ "b", 1 },          { "kib", KIB },      { "mib", MIB },
		{ "gib", GIB },      { "tib", 1024 * GIB }, { "kb", 1000 },
		{ "mb", 1000000 },   { "gb", 1000000000 }, { "tb", 1000000000000ull },
	};
	const char *p = s;
	uint64_t v;
	int r;

	if (!s || !out)
		return -EINVAL;
	r = spate_cfg_digits(&p, &v);
	if (r < 0)
		return r;
	if (*p == '\0') {
		*out = v;
		return 0;
	}
	if (*p == ' ')
		p++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (spate_cfg_eq_nocase(p, strlen(p), units[i].u)) {
			if (v > UINT64_MAX / units[i].m)
				return -ERANGE;
			*out = v * units[i].m;
			return 0;
		}
	return -EINVAL;
}

int spate_config_parse_duration(const char *s, uint64_t *out)
{
	static const struct {
		const char *u;
		uint64_t m;
	} units[] = {
		{ "ns", 1 },         { "us", NS_US },         { "\xc2\xb5s", NS_US },
		{ "ms", NS_MS },     { "s", NS_S },           { "m", 60 * NS_S },
		{ "h", 3600 * NS_S }, { "d", 86400 * NS_S },
	};
	const char *p = s;
	uint64_t total = 0, v;
	int r;

	if (!s || !out)
		return -EINVAL;
	r = spate_cfg_parse_dec(s, &v);
	if (r != -EINVAL) {
		/* a bare number: only 0 needs no unit */
		if (r == 0 && v != 0)
			return -EINVAL;
		if (r == 0)
			*out = 0;
		return r;
	}
	do {
		uint64_t m = 0;
		const char *u;

		r = spate_cfg_digits(&p, &v);
		if (r < 0)
			return r;
		u = p;
		while (*p && !is_digit(*p))
			p++;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strlen(units[i].u) == (size_t)(p - u) &&
			    memcmp(units[i].u, u, (size_t)(p - u)) == 0)
				m = units[i].m;
		if (!m)
			return -EINVAL;
		if (v > UINT64_MAX / m || v * m > DUR_MAX - total)
			return -ERANGE;
		total += v * m;
	} while (*p);
	*out = total;
	return 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

/* Exactly @p n digits at *p. */
static int fixed(const char **p, int n, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < n; i++) {
		if (!is_digit((*p)[i]))
			return -EINVAL;
		v = v * 10 + (unsigned)((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int spate_config_parse_timestamp(const char *s, uint64_t *out)
{
	static const unsigned dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned y, mo, d, h, mi, sec, oh = 0, om = 0;
	uint64_t frac = 0, ns;
	int sign = 0, r;
	const char *p = s;

	if (!s || !out)
		return -EINVAL;
	r = spate_cfg_parse_dec(s, &ns);
	if (r != -EINVAL) {
		if (r == 0)
			*out = ns;
		return r;
	}
	if (fixed(&p, 4, &y) || *p++ != '-' || fixed(&p, 2, &mo) || *p++ != '-' ||
	    fixed(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
		return -EINVAL;
	p++;
	if (fixed(&p, 2, &h) || *p++ != ':' || fixed(&p, 2, &mi) || *p++ != ':' ||
	    fixed(&p, 2, &sec))
		return -EINVAL;
	if (*p == '.') {
		int n = 0;
		for (p++; is_digit(*p); p++, n++) {
			if (n == 9)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*p - '0');
		}
		if (n == 0)
			return -EINVAL;
		for (; n < 9; n++)
			frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (fixed(&p, 2, &oh) || *p++ != ':' || fixed(&p, 2, &om))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo < 1 || mo > 12 || d < 1 || d > dim[mo - 1] + (mo == 2 && leap) || h > 23 ||
	    mi > 59 || sec > 59 || oh > 23 || om > 59)
		return -EINVAL;
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
		    (int64_t)sign * (oh * 3600 + om * 60);
	if (t < 0 || (uint64_t)t > (UINT64_MAX - frac) / NS_S)
		return -ERANGE;
	*out = (uint64_t)t * NS_S + frac;
	return 0;
}

int spate_cfg_parse_bool(const char *s, size_t len, bool *out)
{
	static const char *const t[] = { "true", "yes", "on" }, *const f[] = { "false", "no", "off" };

	for (int i = 0; i < 3; i++) {
		if (spate_cfg_eq_nocase(s, len, t[i])) {
			*out = true;
			return 0;
		}
		if (spate_cfg_eq_nocase(s, len, f[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int spate_config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = "127.0.0.1";
	size_t hl = 9;
	char hb[64], *end;
	unsigned long p;

	if (!s || !*s)
		return -EINVAL;
	colon = strrchr(s, ':');
	if (s[0] == '[') { /* [IPv6]:port */
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(rb - s - 1);
		colon = rb + 1;
	} else if (colon) {
		if (colon != s) {
			h = s;
			hl = (size_t)(colon - s);
		}
	} else {
		colon = s - 1; /* a bare port */
	}
	if (hl == 0 || hl >= sizeof(hb))
		return -EINVAL;
	memcpy(hb, h, hl);
	hb[hl] = '\0';
	if (!colon[1] || colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (*end || errno || p == 0 || p > 65535)
		return -EINVAL;
	unsigned char buf[16];
	if (strcmp(hb, "localhost") != 0 && inet_pton(AF_INET, hb, buf) != 1 &&
	    inet_pton(AF_INET6, hb, buf) != 1)
		return -EINVAL;
	if (host) {
		if (hostlen <= strlen(hb))
			return -EINVAL;
		snprintf(host, hostlen, "%s", strcmp(hb, "localhost") ? hb : "127.0.0.1");
	}
	if (port)
		*port = (uint16_t)p;
	return 0;
}
