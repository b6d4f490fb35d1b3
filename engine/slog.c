/* SPDX-License-Identifier: MIT */
/*
 * slog.c - the engine's diagnostic log (spate/slog.h): text or JSON lines,
 * consumer/stream/shard context, and per-call-site rate limiting.
 *
 * Design: one process-wide state behind one mutex. Logging is off every hot
 * path (errors, state changes, plugin messages), so a mutex is cheap enough
 * and makes the rate-limit table and whole-line writes trivially correct. A
 * line is formatted into a buffer and written with one write(2), so lines
 * from threads never interleave, and no stdio buffer is involved (a crash
 * loses nothing already logged). JSON is built with json-c, which does the
 * escaping.
 *
 * Rate limiting: a fixed table of SLOTS entries keyed by (format pointer,
 * consumer, shard, lane), each with a one-second window and counts of lines
 * passed and suppressed. The format's text (and the context) is copied into
 * the slot, because a plugin's format string dies with its .so (hot
 * deploy). When the probe finds no free slot the oldest window is evicted,
 * reporting what it had suppressed first. Suppressed counts are reported
 * by the site's next line after its second, by any other line once that
 * second is over, by spate_slog_flush(), and at exit.
 * Limits: a message is cut at 2 KiB; the format quoted in a suppression
 * line at 95 bytes; consumer and stream names at 63 (the config's maximum).
 */
#include "spate/slog.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#define SLOTS 256u
#define PROBE 8u
#define MSG_MAX 2048u
#define LINE_MAX_ (MSG_MAX * 2u + 512u) /* JSON may double a message's bytes */

struct slot {
	const char *fmt; /* key: the call site; NULL = free */
	uint64_t ctx_hash;
	uint64_t win;        /* window start, monotonic ns */
	uint64_t passed;     /* lines passed in the window */
	uint64_t suppressed; /* not yet reported */
	enum spate_log_level lvl;
	char site[96];
	char consumer[64], stream[64];
	int64_t shard, lane;
	bool has_consumer, has_stream;
};

static struct {
	pthread_mutex_t lock;
	bool configured;      /* environment read */
	bool format_set;      /* spate_slog_set_format() called */
	bool level_set;
	bool burst_set;
	bool atexit_done;
	enum spate_slog_format format;
	enum spate_log_level level;
	unsigned burst;
	int fd;
	struct slot slot[SLOTS];
} S = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.level = SPATE_LOG_INFO,
	.burst = SPATE_SLOG_BURST,
	.fd = 2,
};

static const char *const level_names[] = { "error", "warn", "info", "debug" };

static const char *level_name(enum spate_log_level l)
{
	return (unsigned)l <= SPATE_LOG_DEBUG ? level_names[l] : "error";
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int spate_slog_parse_format(const char *s, enum spate_slog_format *out)
{
	if (s && !strcmp(s, "text"))
		*out = SPATE_SLOG_TEXT;
	else if (s && !strcmp(s, "json"))
		*out = SPATE_SLOG_JSON;
	else
		return -EINVAL;
	return 0;
}

static void write_all(const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(S.fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere left to report it */
		buf += n;
		len -= (size_t)n;
	}
}

/* Read the environment once; the lock is held. */
static void configure(void)
{
	if (S.configured)
		return;
	S.configured = true;
	const char *f = getenv("SPATE_LOG_FORMAT");
	bool bad_format = false;
	if (!S.format_set && f && *f && spate_slog_parse_format(f, &S.format) < 0)
		bad_format = true;
	if (!S.level_set && getenv("SPATE_DEBUG"))
		S.level = SPATE_LOG_DEBUG;
	const char *r = getenv("SPATE_LOG_RATE");
	if (!S.burst_set && r && *r) {
		char *end;
		unsigned long v = strtoul(r, &end, 10);
		if (!*end && v <= 1000000)
			S.burst = (unsigned)v;
	}
	if (bad_format) {
		char line[256];
		int n = snprintf(line, sizeof(line),
				 "spate: warn: SPATE_LOG_FORMAT=%.64s: not text or json; using text\n", f);
		write_all(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
}

void spate_slog_set_format(enum spate_slog_format f)
{
	pthread_mutex_lock(&S.lock);
	S.format = f == SPATE_SLOG_JSON ? SPATE_SLOG_JSON : SPATE_SLOG_TEXT;
	S.format_set = true;
	pthread_mutex_unlock(&S.lock);
}

enum spate_slog_format spate_slog_format(void)
{
	pthread_mutex_lock(&S.lock);
	configure();
	enum spate_slog_format f = S.format;
	pthread_mutex_unlock(&S.lock);
	return f;
}

void spate_slog_set_level(enum spate_log_level max)
{
	pthread_mutex_lock(&S.lock);
	S.level = max;
	S.level_set = true;
	pthread_mutex_unlock(&S.lock);
}

int spate_slog_set_fd(int fd)
{
	if (fd < 0)
		return -EBADF;
	pthread_mutex_lock(&S.lock);
	S.fd = fd;
	pthread_mutex_unlock(&S.lock);
	return 0;
}

void spate_slog_set_burst(unsigned per_second)
{
	pthread_mutex_lock(&S.lock);
	S.burst = per_second;
	S.burst_set = true;
	pthread_mutex_unlock(&S.lock);
}

/* One line out, in the format in use; @p suppressed > 0 makes it a
 * suppression report for @p site. The lock is held. */
static void emit(enum spate_log_level lvl, const char *consumer, const char *stream, int64_t shard,
		 int64_t lane, const char *msg, uint64_t suppressed, const char *site)
{
	char line[LINE_MAX_];
	int n;

	if (S.format == SPATE_SLOG_JSON) {
		struct timespec ts;
		struct tm tm;
		char when[48];
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		size_t w = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(when + w, sizeof(when) - w, ".%06ldZ", ts.tv_nsec / 1000);
		json_object *o = json_object_new_object();
		if (!o)
			return;
		json_object_object_add(o, "ts", json_object_new_string(when));
		json_object_object_add(o, "level", json_object_new_string(level_name(lvl)));
		json_object_object_add(o, "msg", json_object_new_string(msg));
		if (consumer)
			json_object_object_add(o, "consumer", json_object_new_string(consumer));
		if (stream)
			json_object_object_add(o, "stream", json_object_new_string(stream));
		if (shard >= 0)
			json_object_object_add(o, "shard", json_object_new_int64(shard));
		if (lane >= 0)
			json_object_object_add(o, "lane", json_object_new_int64(lane));
		if (suppressed) {
			json_object_object_add(o, "suppressed", json_object_new_int64((int64_t)suppressed));
			json_object_object_add(o, "site", json_object_new_string(site));
		}
		json_object_object_add(o, "pid", json_object_new_int64(getpid()));
		const char *js = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								      JSON_C_TO_STRING_NOSLASHESCAPE);
		n = snprintf(line, sizeof(line), "%s\n", js ? js : "{}");
		json_object_put(o);
	} else {
		char who[160] = "";
		const char *name = consumer ? consumer : stream;
		if (name && shard >= 0)
			snprintf(who, sizeof(who), "%s/%lld: ", name, (long long)shard);
		else if (name)
			snprintf(who, sizeof(who), "%s: ", name);
		n = snprintf(line, sizeof(line), "spate: %s: %s%s\n", level_name(lvl), who, msg);
	}
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) { /* cut, but keep the line a line */
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	write_all(line, (size_t)n);
}

static void report(struct slot *s)
{
	char msg[160];
	if (!s->suppressed)
		return;
	snprintf(msg, sizeof(msg), "suppressed %llu message%s like \"%s\"",
		 (unsigned long long)s->suppressed, s->suppressed == 1 ? "" : "s", s->site);
	emit(s->lvl, s->has_consumer ? s->consumer : NULL, s->has_stream ? s->stream : NULL,
	     s->shard, s->lane, msg, s->suppressed, s->site);
	s->suppressed = 0;
}

static void flush_at_exit(void)
{
	spate_slog_flush();
}

static uint64_t hash_str(uint64_t h, const char *s)
{
	for (; s && *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

static uint64_t ctx_hash(const struct spate_slog_ctx *c)
{
	uint64_t h = 0xcbf29ce484222325ull;
	if (!c)
		return h;
	h = hash_str(h, c->consumer);
	h = (h ^ (uint64_t)c->shard) * 0x100000001b3ull;
	h = (h ^ (uint64_t)c->lane) * 0x100000001b3ull;
	return hash_str(h, c->stream);
}

/* The slot of (fmt, ctx): found, free, or the oldest of the probe evicted. */
static struct slot *slot_of(const char *fmt, const struct spate_slog_ctx *c, uint64_t ch,
			    enum spate_log_level lvl, uint64_t now)
{
	uint64_t h = ((uint64_t)(uintptr_t)fmt * 0x9e3779b97f4a7c15ull) ^ ch;
	struct slot *oldest = NULL;

	for (unsigned i = 0; i < PROBE; i++) {
		struct slot *s = &S.slot[(h + i) % SLOTS];
		if (s->fmt == fmt && s->ctx_hash == ch)
			return s;
		if (!s->fmt) {
			oldest = s;
			break;
		}
		if (!oldest || s->win < oldest->win)
			oldest = s;
	}
	report(oldest);
	memset(oldest, 0, sizeof(*oldest));
	oldest->fmt = fmt;
	oldest->ctx_hash = ch;
	oldest->win = now;
	oldest->lvl = lvl;
	snprintf(oldest->site, sizeof(oldest->site), "%s", fmt);
	oldest->shard = oldest->lane = -1;
	if (c) {
		if (c->consumer) {
			oldest->has_consumer = true;
			snprintf(oldest->consumer, sizeof(oldest->consumer), "%s", c->consumer);
		}
		if (c->stream) {
			oldest->has_stream = true;
			snprintf(oldest->stream, sizeof(oldest->stream), "%s", c->stream);
		}
		oldest->shard = c->shard;
		oldest->lane = c->lane;
	}
	return oldest;
}

void spate_slog_v(enum spate_log_level lvl, const struct spate_slog_ctx *ctx, const char *fmt,
		  va_list ap)
{
	char msg[MSG_MAX];

	if (!fmt)
		return;
	pthread_mutex_lock(&S.lock);
	configure();
	if (lvl > S.level)
		goto out;
	uint64_t now = mono_ns();
	if (S.burst) {
		struct slot *s = slot_of(fmt, ctx, ctx_hash(ctx), lvl, now);
		if (now - s->win >= 1000000000ull) {
			report(s);
			s->win = now;
			s->passed = 0;
		}
		if (s->passed >= S.burst) {
			s->suppressed++;
			if (!S.atexit_done) {
				S.atexit_done = true;
				atexit(flush_at_exit);
			}
			goto out;
		}
		s->passed++;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	emit(lvl, ctx ? ctx->consumer : NULL, ctx ? ctx->stream : NULL, ctx ? ctx->shard : -1,
	     ctx ? ctx->lane : -1, msg, 0, NULL);
	/* Any line out also reports the other sites whose second has ended
	 * with messages suppressed (lines are few: rate-limited). */
	if (S.burst && S.atexit_done)
		for (unsigned i = 0; i < SLOTS; i++)
			if (S.slot[i].suppressed && now - S.slot[i].win >= 1000000000ull)
				report(&S.slot[i]);
out:
	pthread_mutex_unlock(&S.lock);
}

void spate_slog(enum spate_log_level lvl, const struct spate_slog_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	spate_slog_v(lvl, ctx, fmt, ap);
	va_end(ap);
}

int spate_slog_flush(void)
{
	int n = 0;
	pthread_mutex_lock(&S.lock);
	configure();
	for (unsigned i = 0; i < SLOTS; i++) {
		if (S.slot[i].fmt && S.slot[i].suppressed) {
			report(&S.slot[i]);
			n++;
		}
	}
	pthread_mutex_unlock(&S.lock);
	return n;
}
