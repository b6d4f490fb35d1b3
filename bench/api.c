/* SPDX-License-Identifier: MIT */
/*
 * api.c - `spate bench api`: the Kinesis API front under load, against
 * kinesalite in the same run with the same generator.
 *
 * The bench starts `spate run` (this executable, /proc/self/exe) on a free
 * loopback port with a temporary state dir, one access key (secret file
 * mode 0600, signatures on) and a stream "bench" of --shards shards
 * (default 2) with --ring-size rings; and, when it is installed, kinesalite
 * (npm; bench/kinesalite, --kinesalite PATH or $SPATE_KINESALITE, started
 * with its artificial delays set to 0, stream created by CreateStream). It
 * says so when kinesalite is not installed and runs the spate cases alone.
 *
 * The generator is the same for both: --connections threads (default 4),
 * each with one keep-alive HTTP/1.1 connection on a raw socket (a tiny
 * request writer, writev; responses read by Content-Length), sending
 * PutRecords of --records (500) records of --record-size (64) random bytes
 * under random partition keys, each request signed with SigV4
 * (spate_api_sigv4_sign(): SHA-256 of the body, HMAC chain) as an SDK does,
 * for --seconds (default 3) or until the run has put what the rings hold
 * (--max-records; 3/4 of --ring-size x --shards by default, so that no
 * record is overwritten before it is read). Then GetRecords drains every shard (one
 * connection per shard, Limit 10,000) from a LATEST iterator taken before
 * the puts, until a call returns no record and MillisBehindLatest 0:
 * exactly the records of this run.
 *
 * Figures per case {impl, op}: records_per_sec and requests_per_sec (the
 * phase's records or requests over its wall time), p50_ns / p99_ns of the
 * request round trip (write to last byte of the answer), failed_records
 * (PutRecords entries answered with an ErrorCode, e.g. a full shard). The
 * cases are run --runs times (default 3), spate and kinesalite alternating;
 * figures are medians over the runs, and ratio_vs_kinesalite is the
 * same-run ratio spate / kinesalite of the medians.
 *
 * Limits: client and server share the machine (on 2 cores the generator's
 * signing and base64 take CPU the server would use; the figures are what a
 * client on the same box gets). No TLS. The responses are checked by their
 * status and counted by scanning for the fields the bench needs, not parsed
 * as JSON (a malformed answer shows as a zero count, and fails the run).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/api/sigv4.h"

extern char **environ;

#define API_MAX_RUNS 15u
#define API_MAX_CONNS 64u
#define API_MAX_SHARDS 64u
#define API_BODIES 8u          /* distinct PutRecords bodies per connection */
#define API_GET_LIMIT 10000
#define API_KEY_ID "AKIDSPATEBENCH"
#define API_STREAM "bench"

enum { IMPL_SPATE, IMPL_KINESALITE, IMPL_N };
enum { OP_PUT, OP_GET, OP_N };
static const char *const impl_names[IMPL_N] = {"spate", "kinesalite"};
static const char *const op_names[OP_N] = {"PutRecords", "GetRecords"};

struct api_opts {
	unsigned conns, records, record_size, shards, runs;
	double seconds;
	uint64_t max_records; /* per run: what the rings hold (GetRecords reads all) */
	const char *ring_size;
	const char *kinesalite;
	bool json;
};

/* One server under test. */
struct api_target {
	const char *impl;
	int port;
	char host[32]; /* "127.0.0.1:PORT", the Host header */
	pid_t pid;
};

/* One run of one op on one impl. */
struct api_result {
	double secs;
	uint64_t records, requests, failed;
	double p50_ns, p99_ns;
};

static struct spate_api_sigv4_key api_key = {API_KEY_ID, NULL};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- a keep-alive HTTP/1.1 client connection on a raw socket ---- */

struct hc {
	int fd;
	char *buf; /* the last answer: headers then body */
	size_t cap, len;
	const char *body;
	size_t body_len;
	int status;
};

static int hc_open(struct hc *c, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int rc = -errno;

		close(c->fd);
		c->fd = -1;
		return rc;
	}
	return 0;
}

static void hc_close(struct hc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->cap = c->len = 0;
}

static int hc_reserve(struct hc *c, size_t n)
{
	if (n <= c->cap)
		return 0;
	size_t cap = c->cap ? c->cap : 65536;

	while (cap < n)
		cap *= 2;
	char *p = realloc(c->buf, cap);

	if (!p)
		return -ENOMEM;
	c->buf = p;
	c->cap = cap;
	return 0;
}

static int hc_writev(struct hc *c, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(c->fd, iov, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EPIPE;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Read one answer (Content-Length framed) into c->buf; status and body. */
static int hc_read(struct hc *c)
{
	size_t hdr_end = 0, need = 0;

	c->len = 0;
	for (;;) {
		if (hc_reserve(c, c->len + 65536 + 1) < 0)
			return -ENOMEM;
		ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len - 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -ECONNRESET;
		c->len += (size_t)r;
		c->buf[c->len] = '\0';
		if (!hdr_end) {
			char *e = strstr(c->buf, "\r\n\r\n"), *cl;

			if (!e)
				continue;
			hdr_end = (size_t)(e - c->buf) + 4;
			if (sscanf(c->buf, "HTTP/1.%*d %d", &c->status) != 1)
				return -EPROTO;
			cl = strcasestr(c->buf, "\r\ncontent-length:");
			if (!cl || cl > e)
				return -EPROTO; /* the bench needs Content-Length */
			need = hdr_end + strtoull(cl + 17, NULL, 10);
			if (hc_reserve(c, need + 1) < 0)
				return -ENOMEM;
		}
		if (c->len >= need) {
			c->body = c->buf + hdr_end;
			c->body_len = need - hdr_end;
			c->buf[need] = '\0';
			return 0;
		}
	}
}

/* One signed Kinesis call: POST /, X-Amz-Target Kinesis_20131202.<op>. */
static int hc_call(struct hc *c, const struct api_target *t, const char *op, const char *body,
		   size_t len)
{
	char target[80], date[SPATE_API_SIGV4_DATE_LEN + 1], authz[512], head[1024];
	struct spate_api_sigv4_header h[] = {
		{"Host", t->host},
		{"Content-Type", "application/x-amz-json-1.1"},
		{"X-Amz-Date", date},
		{"X-Amz-Target", target},
	};
	struct spate_api_sigv4_request r = {
		.method = "POST", .path = "/", .headers = h, .n_headers = 4,
		.body = body, .body_len = len, .region = "us-east-1", .service = "kinesis",
	};
	int n, rc;

	snprintf(target, sizeof(target), "Kinesis_20131202.%s", op);
	spate_api_sigv4_date((int64_t)time(NULL), date);
	rc = spate_api_sigv4_sign(&api_key, &r, NULL, authz, sizeof(authz));
	if (rc < 0)
		return rc;
	n = snprintf(head, sizeof(head),
		     "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.1\r\n"
		     "X-Amz-Date: %s\r\nX-Amz-Target: %s\r\nAuthorization: %s\r\n"
		     "Content-Length: %zu\r\n\r\n", t->host, date, target, authz, len);
	struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, len}};

	rc = hc_writev(c, iov, len ? 2 : 1);
	return rc < 0 ? rc : hc_read(c);
}

/* The integer after "key": in a JSON answer, or -1. */
static int64_t json_int(const char *body, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(body, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	return strtoll(p, NULL, 10);
}

/* The string value of "key" copied into out, or -ENOENT. */
static int json_str(const char *body, const char *key, char *out, size_t n)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(body, pat);
	if (!p)
		return -ENOENT;
	p = strchr(p + strlen(pat), '"');
	if (!p)
		return -ENOENT;
	e = strchr(++p, '"');
	if (!e || (size_t)(e - p) >= n)
		return -ENOENT;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return 0;
}

/* Occurrences of @p pat in @p s; *after: just past the last one (@p s if none). */
static size_t count_of(const char *s, const char *pat, const char **after)
{
	size_t n = 0, l = strlen(pat);

	*after = s;
	while ((s = strstr(s, pat))) {
		n++;
		s += l;
		*after = s;
	}
	return n;
}

/* ---- latencies ---- */

struct lat {
	uint64_t *v;
	size_t n, cap;
};

static void lat_add(struct lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4096;
		uint64_t *p = realloc(l->v, cap * sizeof(*p));

		if (!p)
			return; /* a sample lost, not the run */
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n++] = ns;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double lat_pct(struct lat *l, double p)
{
	if (!l->n)
		return 0;
	qsort(l->v, l->n, sizeof(*l->v), u64_cmp);
	size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);

	return (double)l->v[i];
}

/* ---- the PutRecords phase ---- */

struct put_thr {
	pthread_t t;
	const struct api_opts *o;
	const struct api_target *tg;
	uint64_t deadline;
	/* Records the run may still put, shared by the threads (relaxed: a
	 * budget, not a synchronisation; the joins publish the counts). */
	_Atomic int64_t *budget;
	unsigned seed;
	char *bodies[API_BODIES];
	size_t lens[API_BODIES];
	uint64_t requests, records, failed;
	struct lat lat;
	int rc;
	char err[160];
};

static uint64_t xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A PutRecords body: --records records of random bytes, random keys. */
static char *put_body(const struct api_opts *o, uint64_t *s, size_t *len)
{
	size_t b64 = 4 * ((o->record_size + 2) / 3);
	size_t cap = 64 + (size_t)o->records * (b64 + 64);
	char *body = malloc(cap), *p;
	unsigned char raw[4096];

	if (!body)
		return NULL;
	p = body + sprintf(body, "{\"StreamName\":\"" API_STREAM "\",\"Records\":[");
	for (unsigned i = 0; i < o->records; i++) {
		for (unsigned k = 0; k < o->record_size; k++)
			raw[k] = (unsigned char)xs(s);
		p += sprintf(p, "%s{\"Data\":\"", i ? "," : "");
		p += EVP_EncodeBlock((unsigned char *)p, raw, (int)o->record_size);
		p += sprintf(p, "\",\"PartitionKey\":\"pk-%016" PRIx64 "\"}", xs(s));
	}
	p += sprintf(p, "]}");
	*len = (size_t)(p - body);
	return body;
}

static void *put_main(void *arg)
{
	struct put_thr *t = arg;
	struct hc c = {.fd = -1};
	unsigned i = 0;

	t->rc = hc_open(&c, t->tg->port);
	if (t->rc < 0) {
		snprintf(t->err, sizeof(t->err), "connect: %s", strerror(-t->rc));
		return NULL;
	}
	while (now_ns() < t->deadline &&
	       atomic_fetch_sub_explicit(t->budget, t->o->records, memory_order_relaxed) >=
		       (int64_t)t->o->records) {
		uint64_t t0 = now_ns();
		int rc = hc_call(&c, t->tg, "PutRecords", t->bodies[i], t->lens[i]);

		if (rc < 0 || c.status != 200) {
			t->rc = rc < 0 ? rc : -EIO;
			snprintf(t->err, sizeof(t->err), "PutRecords: %s",
				 rc < 0 ? strerror(-rc) : c.body ? c.body : "?");
			break;
		}
		lat_add(&t->lat, now_ns() - t0);
		int64_t f = json_int(c.body, "FailedRecordCount");

		if (f < 0) {
			t->rc = -EPROTO;
			snprintf(t->err, sizeof(t->err), "PutRecords: no FailedRecordCount in %.80s", c.body);
			break;
		}
		t->requests++;
		t->records += t->o->records - (uint64_t)f;
		t->failed += (uint64_t)f;
		i = (i + 1) % API_BODIES;
	}
	hc_close(&c);
	return NULL;
}

/* ---- the GetRecords phase: one thread per shard ---- */

struct get_thr {
	pthread_t t;
	const struct api_target *tg;
	unsigned shard;
	char it[2048];
	uint64_t requests, records;
	uint64_t deadline;
	struct lat lat;
	int rc;
	char err[160];
};

/* A LATEST iterator of each shard (taken before the puts). */
static int latest_iterator(struct hc *c, const struct api_target *tg, unsigned shard, char *it,
			   size_t n)
{
	char body[256];
	int rc;

	snprintf(body, sizeof(body),
		 "{\"StreamName\":\"" API_STREAM "\",\"ShardId\":\"shardId-%012u\","
		 "\"ShardIteratorType\":\"LATEST\"}", shard);
	rc = hc_call(c, tg, "GetShardIterator", body, strlen(body));
	if (rc < 0)
		return rc;
	if (c->status != 200 || json_str(c->body, "ShardIterator", it, n) < 0)
		return -EPROTO;
	return 0;
}

static void *get_main(void *arg)
{
	struct get_thr *t = arg;
	struct hc c = {.fd = -1};
	char body[2200];
	unsigned empty = 0;

	t->rc = hc_open(&c, t->tg->port);
	if (t->rc < 0) {
		snprintf(t->err, sizeof(t->err), "connect: %s", strerror(-t->rc));
		return NULL;
	}
	while (now_ns() < t->deadline) {
		uint64_t t0 = now_ns();
		int rc;

		snprintf(body, sizeof(body), "{\"ShardIterator\":\"%s\",\"Limit\":%d}", t->it,
			 API_GET_LIMIT);
		rc = hc_call(&c, t->tg, "GetRecords", body, strlen(body));
		if (rc < 0 || c.status != 200) {
			t->rc = rc < 0 ? rc : -EIO;
			snprintf(t->err, sizeof(t->err), "GetRecords: %s",
				 rc < 0 ? strerror(-rc) : c.body ? c.body : "?");
			break;
		}
		lat_add(&t->lat, now_ns() - t0);
		/* One pass over the records (a key in quotes cannot occur inside
		 * a JSON string, where quotes are escaped); the answer's other
		 * fields are looked for after the last record first (spate writes
		 * them there), then from the start (kinesalite writes them first). */
		const char *tail;
		size_t n = count_of(c.body, "\"SequenceNumber\"", &tail);

		t->requests++;
		t->records += n;
		if (json_str(tail, "NextShardIterator", t->it, sizeof(t->it)) < 0 &&
		    json_str(c.body, "NextShardIterator", t->it, sizeof(t->it)) < 0) {
			t->rc = -EPROTO;
			snprintf(t->err, sizeof(t->err), "GetRecords: no NextShardIterator");
			break;
		}
		/* Drained: no record and nothing behind (twice, for an answer
		 * that raced the last put's arrival). */
		if (n == 0 && json_int(c.body, "MillisBehindLatest") <= 0) {
			if (++empty == 2)
				break;
		} else {
			empty = 0;
		}
	}
	hc_close(&c);
	return NULL;
}

/* ---- one run of both phases against one target ---- */

static int run_target(const struct api_opts *o, const struct api_target *tg, uint64_t seed,
		      struct api_result res[OP_N])
{
	struct put_thr *pt = calloc(o->conns, sizeof(*pt));
	struct get_thr *gt = calloc(o->shards, sizeof(*gt));
	struct lat all = {0};
	struct hc c = {.fd = -1};
	uint64_t t0, t1;
	int rc = 0;

	if (!pt || !gt) {
		rc = -ENOMEM;
		goto out;
	}
	rc = hc_open(&c, tg->port);
	for (unsigned s = 0; rc == 0 && s < o->shards; s++) {
		gt[s].tg = tg;
		gt[s].shard = s;
		rc = latest_iterator(&c, tg, s, gt[s].it, sizeof(gt[s].it));
		if (rc < 0)
			fprintf(stderr, "spate bench api: %s: GetShardIterator shard %u: %s\n", tg->impl, s,
				c.body ? c.body : strerror(-rc));
	}
	hc_close(&c);
	if (rc < 0)
		goto out;

	/* PutRecords for --seconds over --connections connections. */
	for (unsigned i = 0; i < o->conns && rc == 0; i++) {
		uint64_t s = seed * 0x9e3779b97f4a7c15ull + i + 1;

		pt[i].o = o;
		pt[i].tg = tg;
		for (unsigned b = 0; b < API_BODIES; b++) {
			pt[i].bodies[b] = put_body(o, &s, &pt[i].lens[b]);
			if (!pt[i].bodies[b])
				rc = -ENOMEM;
		}
	}
	if (rc < 0)
		goto out;
	_Atomic int64_t budget = (int64_t)o->max_records;

	t0 = now_ns();
	for (unsigned i = 0; i < o->conns; i++) {
		pt[i].budget = &budget;
		pt[i].deadline = t0 + (uint64_t)(o->seconds * 1e9);
		pthread_create(&pt[i].t, NULL, put_main, &pt[i]);
	}
	memset(&res[OP_PUT], 0, sizeof(res[OP_PUT]));
	for (unsigned i = 0; i < o->conns; i++) {
		pthread_join(pt[i].t, NULL);
		if (pt[i].rc < 0 && rc == 0) {
			rc = pt[i].rc;
			fprintf(stderr, "spate bench api: %s: %s\n", tg->impl, pt[i].err);
		}
		res[OP_PUT].requests += pt[i].requests;
		res[OP_PUT].records += pt[i].records;
		res[OP_PUT].failed += pt[i].failed;
		for (size_t k = 0; k < pt[i].lat.n; k++)
			lat_add(&all, pt[i].lat.v[k]);
	}
	t1 = now_ns();
	res[OP_PUT].secs = (double)(t1 - t0) / 1e9;
	res[OP_PUT].p50_ns = lat_pct(&all, 0.50);
	res[OP_PUT].p99_ns = lat_pct(&all, 0.99);
	if (rc < 0)
		goto out;

	/* GetRecords: every shard drained from its LATEST-before-puts iterator. */
	all.n = 0;
	t0 = now_ns();
	for (unsigned s = 0; s < o->shards; s++) {
		gt[s].deadline = t0 + (uint64_t)(o->seconds * 20e9) + 60000000000ull;
		pthread_create(&gt[s].t, NULL, get_main, &gt[s]);
	}
	memset(&res[OP_GET], 0, sizeof(res[OP_GET]));
	for (unsigned s = 0; s < o->shards; s++) {
		pthread_join(gt[s].t, NULL);
		if (gt[s].rc < 0 && rc == 0) {
			rc = gt[s].rc;
			fprintf(stderr, "spate bench api: %s: shard %u: %s\n", tg->impl, s, gt[s].err);
		}
		res[OP_GET].requests += gt[s].requests;
		res[OP_GET].records += gt[s].records;
		for (size_t k = 0; k < gt[s].lat.n; k++)
			lat_add(&all, gt[s].lat.v[k]);
	}
	t1 = now_ns();
	res[OP_GET].secs = (double)(t1 - t0) / 1e9;
	res[OP_GET].p50_ns = lat_pct(&all, 0.50);
	res[OP_GET].p99_ns = lat_pct(&all, 0.99);
	if (rc == 0 && res[OP_GET].records != res[OP_PUT].records) {
		fprintf(stderr, "spate bench api: %s: GetRecords read %" PRIu64 " records, PutRecords "
			"stored %" PRIu64 "\n", tg->impl, res[OP_GET].records, res[OP_PUT].records);
		rc = -EIO;
	}
out:
	for (unsigned i = 0; pt && i < o->conns; i++) {
		for (unsigned b = 0; b < API_BODIES; b++)
			free(pt[i].bodies[b]);
		free(pt[i].lat.v);
	}
	for (unsigned s = 0; gt && s < o->shards; s++)
		free(gt[s].lat.v);
	free(all.v);
	free(pt);
	free(gt);
	return rc;
}

/* ---- servers: spate run and kinesalite ---- */

static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t l = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &l) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port > 0 ? port : -EADDRNOTAVAIL;
}

/* posix_spawn's argv is char *const[] for history; it does not write it. */
static pid_t spawn_logged(const char *const argv[], const char *log)
{
	posix_spawn_file_actions_t fa;
	pid_t pid = -1;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	if (posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) != 0)
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

/* Wait until tg answers a signed ListStreams (200), up to 30 s, or it exits. */
static int wait_ready(const struct api_target *tg)
{
	for (int i = 0; i < 300; i++) {
		struct hc c = {.fd = -1};
		int st;

		if (waitpid(tg->pid, &st, WNOHANG) == tg->pid)
			return -ECHILD;
		if (hc_open(&c, tg->port) == 0 && hc_call(&c, tg, "ListStreams", "{}", 2) == 0 &&
		    c.status == 200) {
			hc_close(&c);
			return 0;
		}
		hc_close(&c);
		usleep(100000);
	}
	return -ETIMEDOUT;
}

static void stop(struct api_target *tg, int sig)
{
	if (tg->pid <= 0)
		return;
	kill(tg->pid, sig);
	for (int i = 0; i < 100; i++) {
		if (waitpid(tg->pid, NULL, WNOHANG) == tg->pid) {
			tg->pid = 0;
			return;
		}
		usleep(100000);
	}
	kill(tg->pid, SIGKILL);
	waitpid(tg->pid, NULL, 0);
	tg->pid = 0;
}

static int start_spate(const struct api_opts *o, const char *dir, struct api_target *tg)
{
	char cfg[600], log[600], secret[600];
	FILE *f;

	snprintf(secret, sizeof(secret), "%s/secret", dir);
	snprintf(cfg, sizeof(cfg), "%s/bus.yaml", dir);
	snprintf(log, sizeof(log), "%s/spate.log", dir);
	f = fopen(cfg, "w");
	if (!f)
		return -errno;
	fprintf(f, "bus: bench-api-%d\nstate_dir: %s/state\nstreams:\n"
		"  - name: " API_STREAM "\n    shards: %u\n    ring_size: %s\n    huge_pages: off\n"
		"api:\n  listen: 127.0.0.1:%d\n  region: us-east-1\n  auth:\n    keys:\n"
		"      - { id: " API_KEY_ID ", secret_file: %s }\n",
		(int)getpid(), dir, o->shards, o->ring_size, tg->port, secret);
	if (fclose(f) != 0)
		return -EIO;
	const char *argv[] = {"/proc/self/exe", "run", cfg, "--interval", "0", NULL};

	tg->pid = spawn_logged(argv, log);
	if (tg->pid < 0)
		return -errno;
	int rc = wait_ready(tg);

	if (rc < 0) {
		fprintf(stderr, "spate bench api: spate run did not answer on %s (%s); its log:\n",
			tg->host, strerror(-rc));
		char cmd[700];

		snprintf(cmd, sizeof(cmd), "cat %s >&2", log);
		if (system(cmd) != 0)
			fprintf(stderr, "  (cannot print %s)\n", log);
	}
	return rc;
}

static void rm_spate(const char *dir)
{
	char cfg[600], log[600];

	snprintf(cfg, sizeof(cfg), "%s/bus.yaml", dir);
	snprintf(log, sizeof(log), "%s/rm.log", dir);
	const char *argv[] = {"/proc/self/exe", "rm", cfg, NULL};
	pid_t pid = spawn_logged(argv, log);

	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/* Where kinesalite is: --kinesalite, $SPATE_KINESALITE, the source tree's
 * bench/kinesalite (npm ci), then PATH. NULL if none. */
static const char *find_kinesalite(const struct api_opts *o, char *buf, size_t n)
{
	const char *env = getenv("SPATE_KINESALITE"), *path = getenv("PATH");

	if (o->kinesalite)
		return access(o->kinesalite, X_OK) == 0 ? o->kinesalite : NULL;
	if (env && *env)
		return access(env, X_OK) == 0 ? env : NULL;
#ifdef SPATE_BENCH_KINESALITE
	if (access(SPATE_BENCH_KINESALITE, X_OK) == 0)
		return SPATE_BENCH_KINESALITE;
#endif
	while (path && *path) {
		const char *e = strchr(path, ':');
		size_t l = e ? (size_t)(e - path) : strlen(path);

		snprintf(buf, n, "%.*s/kinesalite", (int)l, path);
		if (l && access(buf, X_OK) == 0)
			return buf;
		path = e ? e + 1 : NULL;
	}
	return NULL;
}

static int start_kinesalite(const struct api_opts *o, const char *exe, const char *dir,
			    struct api_target *tg)
{
	char port[16], log[600], body[128];
	struct hc c = {.fd = -1};
	int rc;

	snprintf(port, sizeof(port), "%d", tg->port);
	snprintf(log, sizeof(log), "%s/kinesalite.log", dir);
	const char *argv[] = {exe, "--port", port, "--createStreamMs", "0", "--deleteStreamMs",
			"0", "--updateStreamMs", "0", "--shardLimit", "100", NULL};

	tg->pid = spawn_logged(argv, log);
	if (tg->pid < 0)
		return -errno;
	rc = wait_ready(tg);
	if (rc < 0)
		return rc;
	snprintf(body, sizeof(body), "{\"StreamName\":\"" API_STREAM "\",\"ShardCount\":%u}",
		 o->shards);
	rc = hc_open(&c, tg->port);
	if (rc == 0)
		rc = hc_call(&c, tg, "CreateStream", body, strlen(body));
	for (int i = 0; rc == 0 && i < 100; i++) {
		rc = hc_call(&c, tg, "DescribeStreamSummary", "{\"StreamName\":\"" API_STREAM "\"}",
			     strlen("{\"StreamName\":\"" API_STREAM "\"}"));
		if (rc == 0 && c.status == 200 && strstr(c.body, "\"ACTIVE\""))
			break;
		usleep(50000);
	}
	if (rc == 0 && !(c.status == 200 && strstr(c.body, "\"ACTIVE\"")))
		rc = -ETIMEDOUT;
	hc_close(&c);
	return rc;
}

/* ---- main ---- */

/* "256MiB", "4 KiB", "65536": bytes, or 0 if not a size. */
static uint64_t parse_size(const char *s)
{
	char *e;
	uint64_t v = strtoull(s, &e, 10);

	while (*e == ' ')
		e++;
	if (!*e || !strcasecmp(e, "B"))
		return v;
	if (!strcasecmp(e, "KiB"))
		return v << 10;
	if (!strcasecmp(e, "MiB"))
		return v << 20;
	if (!strcasecmp(e, "GiB"))
		return v << 30;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: spate bench api [--seconds S (3)] [--connections N (4)] [--records N (500)]\n"
		   "                       [--record-size B (64)] [--shards N (2)] [--ring-size SIZE (256MiB)]\n"
		   "                       [--runs N (3)] [--max-records N (what the rings hold)]\n"
		   "                       [--kinesalite PATH | --no-kinesalite] [--json]\n");
}

int spate_bench_api_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"seconds", required_argument, 0, 's'},   {"connections", required_argument, 0, 'c'},
		{"records", required_argument, 0, 'n'},   {"record-size", required_argument, 0, 'r'},
		{"shards", required_argument, 0, 'S'},    {"ring-size", required_argument, 0, 'R'},
		{"runs", required_argument, 0, 'u'},      {"kinesalite", required_argument, 0, 'k'},
		{"no-kinesalite", no_argument, 0, 'K'},   {"json", no_argument, 0, 'j'},
		{"max-records", required_argument, 0, 'm'},
		{"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
	};
	struct api_opts o = {.conns = 4, .records = 500, .record_size = 64, .shards = 2, .runs = 3,
			     .seconds = 3, .ring_size = "256MiB"};
	struct api_result res[API_MAX_RUNS][IMPL_N][OP_N];
	struct api_target tg[IMPL_N] = {{.impl = "spate"}, {.impl = "kinesalite"}};
	char dir[] = "/tmp/spate-bench-api-XXXXXX", kbuf[4096], secret[600], why[4400] = "";
	const char *kexe;
	bool no_k = false, have_k = false;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's': o.seconds = atof(optarg); break;
		case 'c': o.conns = (unsigned)atoi(optarg); break;
		case 'n': o.records = (unsigned)atoi(optarg); break;
		case 'r': o.record_size = (unsigned)atoi(optarg); break;
		case 'S': o.shards = (unsigned)atoi(optarg); break;
		case 'R': o.ring_size = optarg; break;
		case 'u': o.runs = (unsigned)atoi(optarg); break;
		case 'k': o.kinesalite = optarg; break;
		case 'K': no_k = true; break;
		case 'm': o.max_records = strtoull(optarg, NULL, 10); break;
		case 'j': o.json = true; break;
		default:
			usage(c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (!(o.seconds > 0) || o.conns < 1 || o.conns > API_MAX_CONNS || o.records < 1 ||
	    o.records > 500 || o.record_size < 1 || o.record_size > 4096 || o.shards < 1 ||
	    o.shards > API_MAX_SHARDS || o.runs < 1 || o.runs > API_MAX_RUNS) {
		fprintf(stderr, "spate bench api: bad option (--records 1-500, --record-size 1-4096, "
			"--connections 1-%u, --shards 1-%u, --runs 1-%u)\n", API_MAX_CONNS,
			API_MAX_SHARDS, API_MAX_RUNS);
		usage(stderr);
		return -EINVAL;
	}
	/* What the rings hold: a record takes its 8-byte header, the keyed
	 * envelope (2 + 19-byte key + data) rounded to 8, and a share of its
	 * batch header; 3/4 of the rings leaves room for uneven keys. Puts stop
	 * there, so GetRecords can read back every record. */
	uint64_t ring = parse_size(o.ring_size);
	uint64_t rec = 8 + ((2 + 19 + (uint64_t)o.record_size + 7) & ~7ull) + 8;

	if (ring == 0) {
		fprintf(stderr, "spate bench api: --ring-size %s: not a size\n", o.ring_size);
		return -EINVAL;
	}
	if (!o.max_records)
		o.max_records = ring / rec * o.shards * 3 / 4;
	if (!mkdtemp(dir))
		return -errno;
	/* The access key both servers are called with. */
	{
		unsigned char r[30];
		char s[64];
		FILE *f;

		snprintf(secret, sizeof(secret), "%s/secret", dir);
		f = fopen("/dev/urandom", "r");
		if (!f || fread(r, 1, sizeof(r), f) != sizeof(r)) {
			if (f)
				fclose(f);
			rc = -EIO;
			goto out;
		}
		fclose(f);
		EVP_EncodeBlock((unsigned char *)s, r, sizeof(r));
		int fd = open(secret, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

		if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t)strlen(s)) {
			rc = -EIO;
			if (fd >= 0)
				close(fd);
			goto out;
		}
		close(fd);
		api_key.secret = strdup(s);
	}
	for (int i = 0; i < IMPL_N; i++) {
		tg[i].port = free_port();
		snprintf(tg[i].host, sizeof(tg[i].host), "127.0.0.1:%d", tg[i].port);
	}
	rc = start_spate(&o, dir, &tg[IMPL_SPATE]);
	if (rc < 0)
		goto out;
	kexe = no_k ? NULL : find_kinesalite(&o, kbuf, sizeof(kbuf));
	if (no_k) {
		snprintf(why, sizeof(why), "not run (--no-kinesalite)");
	} else if (!kexe) {
		snprintf(why, sizeof(why), "not installed (npm ci in bench/kinesalite, or --kinesalite PATH)");
	} else if ((rc = start_kinesalite(&o, kexe, dir, &tg[IMPL_KINESALITE])) < 0) {
		snprintf(why, sizeof(why), "%s did not start: %s (see its log above)", kexe, strerror(-rc));
		snprintf(kbuf, sizeof(kbuf), "cat %s/kinesalite.log >&2", dir);
		if (system(kbuf) != 0)
			fprintf(stderr, "spate bench api: no kinesalite log\n");
		stop(&tg[IMPL_KINESALITE], SIGTERM);
		rc = 0;
	} else {
		have_k = true;
		snprintf(why, sizeof(why), "started: %s", kexe);
	}
	fprintf(stderr, "spate bench api: kinesalite %s\n", why);

	for (unsigned r = 0; r < o.runs && rc == 0; r++) {
		for (int i = 0; i < IMPL_N && rc == 0; i++) {
			if (i == IMPL_KINESALITE && !have_k)
				continue;
			rc = run_target(&o, &tg[i], r * 2 + (unsigned)i + 1, res[r][i]);
			if (!o.json && rc == 0)
				fprintf(stderr, "run %u %-10s PutRecords %10.0f rec/s  GetRecords %10.0f rec/s\n",
					r + 1, impl_names[i], res[r][i][OP_PUT].records / res[r][i][OP_PUT].secs,
					res[r][i][OP_GET].records / res[r][i][OP_GET].secs);
		}
	}
	if (rc < 0)
		goto out;

	/* Medians over the runs; the machine's cross-core round trip, for
	 * reading figures from different machines side by side. */
	double med[IMPL_N][OP_N][4];
	double rtt = spate_bench_c2c_rtt_ns(-1, -1);

	for (int i = 0; i < IMPL_N; i++)
		for (int p = 0; p < OP_N; p++) {
			double v[4][API_MAX_RUNS];

			for (unsigned r = 0; r < o.runs; r++) {
				struct api_result *x = &res[r][i][p];

				v[0][r] = x->secs > 0 ? (double)x->records / x->secs : 0;
				v[1][r] = x->secs > 0 ? (double)x->requests / x->secs : 0;
				v[2][r] = x->p50_ns;
				v[3][r] = x->p99_ns;
			}
			for (int k = 0; k < 4; k++)
				med[i][p][k] = spate_bench_median(v[k], o.runs);
		}
	if (o.json) {
		json_object *root = json_object_new_object(), *arr = json_object_new_array();

		json_object_object_add(root, "bench", json_object_new_string("api"));
		json_object_object_add(root, "connections", json_object_new_int((int)o.conns));
		json_object_object_add(root, "records_per_request", json_object_new_int((int)o.records));
		json_object_object_add(root, "record_size", json_object_new_int((int)o.record_size));
		json_object_object_add(root, "shards", json_object_new_int((int)o.shards));
		json_object_object_add(root, "seconds", json_object_new_double(o.seconds));
		json_object_object_add(root, "max_records", json_object_new_int64((int64_t)o.max_records));
		json_object_object_add(root, "ring_size", json_object_new_string(o.ring_size));
		json_object_object_add(root, "runs", json_object_new_int((int)o.runs));
		json_object_object_add(root, "cpus", json_object_new_int((int)sysconf(_SC_NPROCESSORS_ONLN)));
		json_object_object_add(root, "signed", json_object_new_boolean(1));
		json_object_object_add(root, "kinesalite", json_object_new_string(why));
		json_object_object_add(root, "cross_core_rtt_ns", json_object_new_double(rtt));
		for (int i = 0; i < IMPL_N; i++) {
			if (i == IMPL_KINESALITE && !have_k)
				continue;
			for (int p = 0; p < OP_N; p++) {
				json_object *x = json_object_new_object(), *rs = json_object_new_array();
				uint64_t recs = 0, reqs = 0, failed = 0;

				for (unsigned r = 0; r < o.runs; r++) {
					recs += res[r][i][p].records;
					reqs += res[r][i][p].requests;
					failed += res[r][i][p].failed;
					json_object_array_add(rs, json_object_new_double(
						res[r][i][p].records / res[r][i][p].secs));
				}
				json_object_object_add(x, "impl", json_object_new_string(impl_names[i]));
				json_object_object_add(x, "op", json_object_new_string(op_names[p]));
				json_object_object_add(x, "records_per_sec", json_object_new_double(med[i][p][0]));
				json_object_object_add(x, "requests_per_sec", json_object_new_double(med[i][p][1]));
				json_object_object_add(x, "p50_ns", json_object_new_double(med[i][p][2]));
				json_object_object_add(x, "p99_ns", json_object_new_double(med[i][p][3]));
				json_object_object_add(x, "records", json_object_new_int64((int64_t)recs));
				json_object_object_add(x, "requests", json_object_new_int64((int64_t)reqs));
				json_object_object_add(x, "failed_records", json_object_new_int64((int64_t)failed));
				json_object_object_add(x, "runs_records_per_sec", rs);
				if (i == IMPL_SPATE && have_k && med[IMPL_KINESALITE][p][0] > 0)
					json_object_object_add(x, "ratio_vs_kinesalite", json_object_new_double(
						med[IMPL_SPATE][p][0] / med[IMPL_KINESALITE][p][0]));
				json_object_array_add(arr, x);
			}
		}
		json_object_object_add(root, "cases", arr);
		printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(root);
	} else {
		printf("spate bench api: %u x %u-byte records per signed PutRecords, %u connections, "
		       "%u shards, %.1f s, median of %u runs\n", o.records, o.record_size, o.conns,
		       o.shards, o.seconds, o.runs);
		printf("%-11s %-11s %14s %12s %12s %12s %10s\n", "impl", "op", "records/s", "requests/s",
		       "p50 us", "p99 us", "vs kl");
		for (int i = 0; i < IMPL_N; i++) {
			if (i == IMPL_KINESALITE && !have_k)
				continue;
			for (int p = 0; p < OP_N; p++) {
				char ratio[32] = "";

				if (i == IMPL_SPATE && have_k && med[IMPL_KINESALITE][p][0] > 0)
					snprintf(ratio, sizeof(ratio), "%.1fx",
						 med[IMPL_SPATE][p][0] / med[IMPL_KINESALITE][p][0]);
				printf("%-11s %-11s %14.0f %12.0f %12.1f %12.1f %10s\n", impl_names[i],
				       op_names[p], med[i][p][0], med[i][p][1], med[i][p][2] / 1e3,
				       med[i][p][3] / 1e3, ratio);
			}
		}
		printf("kinesalite: %s\ncross-core round trip %.0f ns\n", why, rtt);
	}
out:
	stop(&tg[IMPL_KINESALITE], SIGTERM);
	if (tg[IMPL_SPATE].pid > 0) {
		stop(&tg[IMPL_SPATE], SIGINT);
		rm_spate(dir);
	}
	snprintf(kbuf, sizeof(kbuf), "rm -rf %s", dir);
	if (system(kbuf) != 0)
		fprintf(stderr, "spate bench api: could not remove %s\n", dir);
	free((char *)api_key.secret);
	api_key.secret = NULL;
	return rc;
}
