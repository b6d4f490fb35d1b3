/* SPDX-License-Identifier: MIT */
/*
 * AWS Signature Version 4 (sigv4.h): the canonical request, the string to
 * sign, the derived key and the signature, for the server (verify) and for
 * clients (sign, used by `spate bench api`).
 *
 * Design: one function builds the canonical request into a growing buffer
 * (struct sbuf; its first allocation failure sticks and is reported once);
 * one computes a signature from it with libcrypto (EVP SHA-256, one-shot
 * HMAC-SHA256). verify parses the Authorization header in place (no copy of
 * the request), checks it in AWS's order (present, complete, known key,
 * scope, clock, signature) and compares signatures with CRYPTO_memcmp.
 * Derived keys are wiped (OPENSSL_cleanse) before return.
 *
 * Cost per request: SHA-256 of the body (about 40 us for a 64 KiB
 * PutRecords at 1.7 GB/s), of the canonical request, and one HMAC; the
 * four HMACs deriving the signing key are done once per thread, key and day
 * (signing_key()). The algorithms are fetched once (algs_fetch()).
 *
 * Limits: the canonical request is built in memory (its size is the
 * headers' and query's, not the body's: the body is hashed in place).
 * Credential parts longer than 127 bytes are refused as malformed.
 */
#include <ctype.h>
#include <pthread.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sigv4.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"
#define PART_MAX 128 /* longest credential part + 1 */

static const char T_MISSING[] = "MissingAuthenticationTokenException";
static const char T_INCOMPLETE[] = "IncompleteSignatureException";
static const char T_UNRECOGNIZED[] = "UnrecognizedClientException";
static const char T_INVALID[] = "InvalidSignatureException";
static const char M_MISMATCH[] =
	"The request signature we calculated does not match the signature you provided. "
	"Check your AWS Secret Access Key and signing method. "
	"Consult the service documentation for details.";

/*
 * libcrypto's SHA-256 and HMAC, fetched once: OpenSSL 3 fetches an
 * algorithm implicitly on every EVP_sha256()/HMAC() call, which costs more
 * than hashing a short string. Read only after the once.
 */
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_MD *alg_sha256;
static EVP_MAC *alg_hmac;

static void algs_fetch(void)
{
	alg_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	alg_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

/* ---- a growing string; the first allocation failure sticks (err) ---- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool err;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_c(struct sbuf *b, char c)
{
	sb_add(b, &c, 1);
}

/* RFC 3986 unreserved: A-Z a-z 0-9 - . _ ~ (and '/' when keep_slash). */
static void sb_uri_encode(struct sbuf *b, const char *s, size_t n, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
		    (keep_slash && c == '/')) {
			sb_c(b, (char)c);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};

			sb_add(b, e, 3);
		}
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode [s, s+n) into out (n + 1 bytes); a '%' not followed by two
 * hex digits stays as it is. Returns the decoded length. */
static size_t pct_decode(const char *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int h, l;

		if (s[i] == '%' && i + 2 < n && (h = hexval(s[i + 1])) >= 0 &&
		    (l = hexval(s[i + 2])) >= 0) {
			out[o++] = (char)(h * 16 + l);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return o;
}

/* ---- canonical URI: dot segments and empty segments removed ---- */

static void canon_path(struct sbuf *b, const char *path)
{
	size_t n, nseg = 0, i = 0;
	size_t *start, *len;

	if (!path || !*path)
		path = "/";
	n = strlen(path);
	start = malloc((n + 1) * sizeof(*start));
	len = malloc((n + 1) * sizeof(*len));
	if (!start || !len) {
		free(start);
		free(len);
		b->err = true;
		return;
	}
	while (i < n) {
		size_t s = i;

		while (i < n && path[i] != '/')
			i++;
		if (i - s == 1 && path[s] == '.') {
			/* "." : nothing */
		} else if (i - s == 2 && path[s] == '.' && path[s + 1] == '.') {
			if (nseg)
				nseg--;
		} else if (i > s) {
			start[nseg] = s;
			len[nseg++] = i - s;
		}
		i++; /* the '/' */
	}
	sb_c(b, '/');
	for (i = 0; i < nseg; i++) {
		if (i)
			sb_c(b, '/');
		sb_uri_encode(b, path + start[i], len[i], false);
	}
	if (nseg && path[n - 1] == '/')
		sb_c(b, '/');
	free(start);
	free(len);
}

/* ---- canonical query: pairs decoded, encoded again, sorted ---- */

struct qpair {
	char *kv;    /* "name=value", encoded */
	size_t nlen; /* length of the encoded name */
};

static int qpair_cmp(const void *a, const void *b)
{
	const struct qpair *x = a, *y = b;
	size_t n = x->nlen < y->nlen ? x->nlen : y->nlen;
	int c = memcmp(x->kv, y->kv, n);

	if (c)
		return c;
	if (x->nlen != y->nlen)
		return x->nlen < y->nlen ? -1 : 1;
	return strcmp(x->kv + x->nlen, y->kv + y->nlen);
}

/* One encoded pair from decoded name and value. */
static int qpair_make(struct qpair *q, const char *name, size_t nn, const char *val, size_t vn)
{
	struct sbuf s = {0};

	sb_uri_encode(&s, name, nn, false);
	q->nlen = s.len;
	sb_c(&s, '=');
	sb_uri_encode(&s, val, vn, false);
	if (s.err) {
		free(s.p);
		return -ENOMEM;
	}
	q->kv = s.p;
	return 0;
}

static void canon_query(struct sbuf *b, const struct spate_api_sigv4_request *req)
{
	struct qpair *q = NULL;
	size_t nq = 0, cap = 0;
	char *tmp = NULL;

	if (req->query && *req->query) {
		const char *s = req->query;
		size_t n = strlen(s);

		cap = 1;
		for (size_t i = 0; i < n; i++)
			cap += s[i] == '&';
		q = calloc(cap, sizeof(*q));
		tmp = malloc(2 * n + 2);
		if (!q || !tmp)
			goto oom;
		for (size_t i = 0; i < n;) {
			size_t e = i, eq;

			while (e < n && s[e] != '&')
				e++;
			if (e > i) {
				size_t nn, vn;

				for (eq = i; eq < e && s[eq] != '='; eq++)
					;
				nn = pct_decode(s + i, eq - i, tmp);
				vn = eq < e ? pct_decode(s + eq + 1, e - eq - 1, tmp + nn + 1) : 0;
				if (eq >= e)
					tmp[nn + 1] = '\0';
				if (qpair_make(&q[nq], tmp, nn, tmp + nn + 1, vn) < 0)
					goto oom;
				nq++;
			}
			i = e + 1;
		}
	} else if (req->n_query_args) {
		cap = req->n_query_args;
		q = calloc(cap, sizeof(*q));
		if (!q)
			goto oom;
		for (size_t i = 0; i < cap; i++) {
			const char *nm = req->query_args[i].name ? req->query_args[i].name : "";
			const char *v = req->query_args[i].value ? req->query_args[i].value : "";

			if (qpair_make(&q[nq], nm, strlen(nm), v, strlen(v)) < 0)
				goto oom;
			nq++;
		}
	}
	if (nq)
		qsort(q, nq, sizeof(*q), qpair_cmp);
	for (size_t i = 0; i < nq; i++) {
		if (i)
			sb_c(b, '&');
		sb_str(b, q[i].kv);
	}
	goto out;
oom:
	b->err = true;
out:
	for (size_t i = 0; i < nq; i++)
		free(q[i].kv);
	free(q);
	free(tmp);
}

/* ---- canonical headers ---- */

/* Append value trimmed, inner runs of blanks made one space. */
static void sb_header_value(struct sbuf *b, const char *v)
{
	bool blank = false, any = false;

	for (; *v; v++) {
		if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n') {
			blank = any;
			continue;
		}
		if (blank)
			sb_c(b, ' ');
		blank = false;
		any = true;
		sb_c(b, *v);
	}
}

/* Each signed name's line; -EINVAL (name absent, reported in *missing) or 0. */
static int canon_headers(struct sbuf *b, const struct spate_api_sigv4_request *req,
			 const char *signed_headers, const char **missing, size_t *missing_len)
{
	const char *s = signed_headers;

	while (*s) {
		const char *e = strchr(s, ';');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		bool found = false;

		for (size_t i = 0; i < req->n_headers; i++) {
			const char *nm = req->headers[i].name;

			if (!nm || strlen(nm) != n || strncasecmp(nm, s, n) != 0)
				continue;
			if (!found) {
				for (size_t k = 0; k < n; k++)
					sb_c(b, (char)tolower((unsigned char)s[k]));
				sb_c(b, ':');
			} else {
				sb_c(b, ',');
			}
			found = true;
			sb_header_value(b, req->headers[i].value ? req->headers[i].value : "");
		}
		if (!found || n == 0) {
			*missing = s;
			*missing_len = n;
			return -EINVAL;
		}
		sb_c(b, '\n');
		s += n;
		if (*s == ';')
			s++;
	}
	return 0;
}

static void hex_encode(const unsigned char *d, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * n] = '\0';
}

/* hex(SHA-256(data)) into out (65 bytes); -ENOMEM if libcrypto fails. */
static int sha256_hex(const void *data, size_t n, char *out)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dl = 0;

	pthread_once(&algs_once, algs_fetch);
	if (!EVP_Digest(data ? data : "", n, d, &dl, alg_sha256 ? alg_sha256 : EVP_sha256(), NULL) ||
	    dl != 32)
		return -ENOMEM;
	hex_encode(d, 32, out);
	return 0;
}

/* The canonical request into b; -EINVAL (missing header), -ENOMEM. */
static int canonical(struct sbuf *b, const struct spate_api_sigv4_request *req,
		     const char *signed_headers, const char *body_hash, const char **missing,
		     size_t *missing_len)
{
	char hash[65];
	int rc;

	sb_str(b, req->method ? req->method : "");
	sb_c(b, '\n');
	canon_path(b, req->path);
	sb_c(b, '\n');
	canon_query(b, req);
	sb_c(b, '\n');
	rc = canon_headers(b, req, signed_headers, missing, missing_len);
	if (rc < 0)
		return rc;
	sb_c(b, '\n');
	sb_str(b, signed_headers);
	sb_c(b, '\n');
	if (!body_hash) {
		if (sha256_hex(req->body, req->body_len, hash) < 0)
			return -ENOMEM;
		body_hash = hash;
	}
	sb_str(b, body_hash);
	return b->err ? -ENOMEM : 0;
}

int spate_api_sigv4_canonical(const struct spate_api_sigv4_request *req,
			      const char *signed_headers, char **out)
{
	struct sbuf b = {0};
	const char *m;
	size_t ml;
	int rc = canonical(&b, req, signed_headers, NULL, &m, &ml);

	if (rc < 0) {
		free(b.p);
		return rc;
	}
	*out = b.p;
	return (int)b.len;
}

static bool hmac(const void *key, size_t kn, const void *d, size_t dn, unsigned char out[32])
{
	OSSL_PARAM p[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC_CTX *c;
	size_t ol = 0;
	bool ok;

	pthread_once(&algs_once, algs_fetch);
	if (!alg_hmac) {
		unsigned int l = 0;

		return HMAC(EVP_sha256(), key, (int)kn, d, dn, out, &l) && l == 32;
	}
	c = EVP_MAC_CTX_new(alg_hmac);
	ok = c && EVP_MAC_init(c, key, kn, p) && EVP_MAC_update(c, d, dn) &&
	     EVP_MAC_final(c, out, &ol, 32) && ol == 32;
	EVP_MAC_CTX_free(c);
	return ok;
}

/*
 * The signing key of (secret, day, region, service): four chained HMACs,
 * the same for every request of a key on a day, so each thread keeps the
 * last one it derived (a hit compares the secret and the scope: both this
 * process's own configuration, not the caller's input, so the comparison
 * needs no constant time). The cached key lives as long as the thread.
 */
struct kcache {
	bool valid;
	char secret[PART_MAX];
	char scope[3 * PART_MAX];
	unsigned char k[32];
};

static __thread struct kcache tl_kcache;

static bool signing_key(const char *secret, const char *day, const char *region,
			const char *service, unsigned char kk[32])
{
	struct kcache *c = &tl_kcache;
	unsigned char kd[32], kr[32], ks[32];
	char scope[3 * PART_MAX];
	struct sbuf k = {0};
	bool ok, cacheable;
	int n;

	n = snprintf(scope, sizeof(scope), "%s/%s/%s", day, region, service);
	cacheable = n > 0 && (size_t)n < sizeof(scope) && strlen(secret) < sizeof(c->secret);
	if (cacheable && c->valid && strcmp(c->scope, scope) == 0 && strcmp(c->secret, secret) == 0) {
		memcpy(kk, c->k, 32);
		return true;
	}
	sb_str(&k, "AWS4");
	sb_str(&k, secret);
	ok = !k.err && hmac(k.p, k.len, day, strlen(day), kd) &&
	     hmac(kd, 32, region, strlen(region), kr) &&
	     hmac(kr, 32, service, strlen(service), ks) &&
	     hmac(ks, 32, TERMINATOR, strlen(TERMINATOR), kk);
	if (ok && cacheable) {
		memcpy(c->secret, secret, strlen(secret) + 1);
		memcpy(c->scope, scope, (size_t)n + 1);
		memcpy(c->k, kk, 32);
		c->valid = true;
	}
	if (k.p)
		OPENSSL_cleanse(k.p, k.cap);
	free(k.p);
	OPENSSL_cleanse(kd, sizeof(kd));
	OPENSSL_cleanse(kr, sizeof(kr));
	OPENSSL_cleanse(ks, sizeof(ks));
	return ok;
}

/*
 * The signature of a canonical request: hex into sig (65 bytes).
 * scope is "<yyyymmdd>/<region>/<service>/aws4_request"; its parts are
 * passed apart for the key derivation. 0 or -ENOMEM.
 */
static int sign_canonical(const char *canon, size_t canon_len, const char *secret,
			  const char *amz_date, const char *day, const char *region,
			  const char *service, char *sig)
{
	struct sbuf sts = {0};
	unsigned char kk[32], s[32];
	char hash[65];
	int rc = -ENOMEM;

	if (sha256_hex(canon, canon_len, hash) < 0)
		return -ENOMEM;
	sb_str(&sts, ALGORITHM "\n");
	sb_str(&sts, amz_date);
	sb_c(&sts, '\n');
	sb_str(&sts, day);
	sb_c(&sts, '/');
	sb_str(&sts, region);
	sb_c(&sts, '/');
	sb_str(&sts, service);
	sb_str(&sts, "/" TERMINATOR "\n");
	sb_str(&sts, hash);
	if (sts.err || !signing_key(secret, day, region, service, kk) ||
	    !hmac(kk, 32, sts.p, sts.len, s))
		goto out;
	hex_encode(s, 32, sig);
	rc = 0;
out:
	OPENSSL_cleanse(kk, sizeof(kk));
	free(sts.p);
	return rc;
}

/* ---- dates ---- */

void spate_api_sigv4_date(int64_t t, char *out)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, SPATE_API_SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

static int digits(const char *s, size_t n)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* 20150830T123600Z -> Unix seconds; -EINVAL if not exactly that shape. */
static int parse_amz_date(const char *s, int64_t *t)
{
	struct tm tm = {0};

	if (strlen(s) != SPATE_API_SIGV4_DATE_LEN || s[8] != 'T' || s[15] != 'Z')
		return -EINVAL;
	tm.tm_year = digits(s, 4) - 1900;
	tm.tm_mon = digits(s + 4, 2) - 1;
	tm.tm_mday = digits(s + 6, 2);
	tm.tm_hour = digits(s + 9, 2);
	tm.tm_min = digits(s + 11, 2);
	tm.tm_sec = digits(s + 13, 2);
	if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
	    tm.tm_mday > 31 || tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 ||
	    tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
		return -EINVAL;
	*t = (int64_t)timegm(&tm);
	return 0;
}

/* RFC 1123 (Date: Sun, 30 Aug 2015 12:36:00 GMT) -> Unix seconds. */
static int parse_http_date(const char *s, int64_t *t)
{
	struct tm tm = {0};
	const char *e = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);

	if (!e)
		return -EINVAL;
	while (*e == ' ')
		e++;
	if (*e)
		return -EINVAL;
	*t = (int64_t)timegm(&tm);
	return 0;
}

/* ---- verify ---- */

static const char *header(const struct spate_api_sigv4_request *req, const char *name, int *count)
{
	const char *v = NULL;
	int n = 0;

	for (size_t i = 0; i < req->n_headers; i++)
		if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0) {
			if (!v)
				v = req->headers[i].value ? req->headers[i].value : "";
			n++;
		}
	if (count)
		*count = n;
	return v;
}

static int refuse(struct spate_api_sigv4_error *err, const char *type, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int refuse(struct spate_api_sigv4_error *err, const char *type, const char *fmt, ...)
{
	va_list ap;

	err->type = type;
	err->status = 400;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -EACCES;
}

static int nomem(struct spate_api_sigv4_error *err)
{
	err->type = "InternalFailure";
	err->status = 500;
	snprintf(err->message, sizeof(err->message), "out of memory verifying the signature");
	return -ENOMEM;
}

/* A view into the Authorization header. */
struct span {
	const char *p;
	size_t n;
};

struct authz {
	struct span alg, cred, signed_headers, sig;
};

static bool span_is(struct span s, const char *lit)
{
	return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

/* Split "ALG k=v, k=v, k=v" (commas and/or spaces between parameters). */
static void parse_authz(const char *h, struct authz *a)
{
	const char *s = h;

	memset(a, 0, sizeof(*a));
	while (*s == ' ')
		s++;
	a->alg.p = s;
	while (*s && *s != ' ' && *s != ',')
		s++;
	a->alg.n = (size_t)(s - a->alg.p);
	while (*s) {
		const char *k, *eq, *v;

		while (*s == ' ' || *s == ',')
			s++;
		if (!*s)
			break;
		k = s;
		while (*s && *s != ' ' && *s != ',' && *s != '=')
			s++;
		eq = s;
		if (*s != '=')
			continue;
		v = ++s;
		while (*s && *s != ' ' && *s != ',')
			s++;
		struct span val = {v, (size_t)(s - v)};
		struct span key = {k, (size_t)(eq - k)};

		if (span_is(key, "Credential"))
			a->cred = val;
		else if (span_is(key, "SignedHeaders"))
			a->signed_headers = val;
		else if (span_is(key, "Signature"))
			a->sig = val;
	}
}

/* Whether the ';'-separated list names name. */
static bool list_has(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *s = list; *s;) {
		const char *e = strchr(s, ';');
		size_t l = e ? (size_t)(e - s) : strlen(s);

		if (l == n && memcmp(s, name, n) == 0)
			return true;
		s += l;
		if (*s)
			s++;
	}
	return false;
}

/* Copy a '/'-delimited credential part into out (PART_MAX); false if too long. */
static bool cred_part(const char **s, const char *end, char *out, bool last)
{
	const char *p = *s;
	size_t n;

	while (p < end && (last || *p != '/'))
		p++;
	n = (size_t)(p - *s);
	if (n >= PART_MAX || (!last && p >= end))
		return false;
	memcpy(out, *s, n);
	out[n] = '\0';
	*s = p < end ? p + 1 : p;
	return true;
}

int spate_api_sigv4_verify(const struct spate_api_sigv4_key *keys, size_t n_keys,
			   const struct spate_api_sigv4_request *req,
			   struct spate_api_sigv4_error *err)
{
	char id[PART_MAX], day[PART_MAX], region[PART_MAX], service[PART_MAX], term[PART_MAX];
	char amz[SPATE_API_SIGV4_DATE_LEN + 1], sig[65], hash[65], t1[17], t2[17];
	const char *h, *xdate, *date, *cs, *ce, *missing = NULL, *signed_headers;
	struct sbuf canon = {0};
	size_t missing_len = 0;
	struct authz a;
	int nauth, key = -1, rc;
	int64_t t;

	h = header(req, "authorization", &nauth);
	if (!h || !*h)
		return refuse(err, T_MISSING, "Missing Authentication Token");
	if (nauth > 1)
		return refuse(err, T_INCOMPLETE, "Only one Authorization header is allowed.");
	parse_authz(h, &a);
	if (!span_is(a.alg, ALGORITHM))
		return refuse(err, T_INCOMPLETE, "Unsupported AWS 'algorithm': '%.*s'.",
			      (int)(a.alg.n > 64 ? 64 : a.alg.n), a.alg.p);
	xdate = header(req, "x-amz-date", NULL);
	date = header(req, "date", NULL);
	if (!a.cred.n || !a.signed_headers.n || !a.sig.n || (!xdate && !date))
		return refuse(err, T_INCOMPLETE, "%s%s%s%sAuthorization=%.200s",
			      a.cred.n ? "" : "Authorization header requires 'Credential' parameter. ",
			      a.sig.n ? "" : "Authorization header requires 'Signature' parameter. ",
			      a.signed_headers.n ? "" :
			      "Authorization header requires 'SignedHeaders' parameter. ",
			      xdate || date ? "" :
			      "Authorization header requires existence of either a 'X-Amz-Date' or "
			      "a 'Date' header. ",
			      h);

	/* Credential=<id>/<yyyymmdd>/<region>/<service>/aws4_request */
	cs = a.cred.p;
	ce = a.cred.p + a.cred.n;
	if (!cred_part(&cs, ce, id, false) || !cred_part(&cs, ce, day, false) ||
	    !cred_part(&cs, ce, region, false) || !cred_part(&cs, ce, service, false) ||
	    !cred_part(&cs, ce, term, true) || !*id)
		return refuse(err, T_INCOMPLETE,
			      "Credential should be scoped by <key>/<date>/<region>/<service>/"
			      "aws4_request: '%.*s'.", (int)(a.cred.n > 200 ? 200 : a.cred.n),
			      a.cred.p);
	for (size_t i = 0; i < n_keys; i++)
		if (keys[i].id && strcmp(keys[i].id, id) == 0) {
			key = (int)i;
			break;
		}
	if (key < 0 || header(req, "x-amz-security-token", NULL))
		return refuse(err, T_UNRECOGNIZED,
			      "The security token included in the request is invalid.");
	if (strcmp(term, TERMINATOR) != 0)
		return refuse(err, T_INVALID,
			      "Credential should be scoped with a valid terminator: '"
			      TERMINATOR "', not '%s'.", term);
	if (req->region && strcmp(region, req->region) != 0)
		return refuse(err, T_INVALID,
			      "Credential should be scoped to a valid region, not '%s'.", region);
	if (req->service && strcmp(service, req->service) != 0)
		return refuse(err, T_INVALID,
			      "Credential should be scoped to correct service: '%s'.", req->service);

	/* The request's time: X-Amz-Date, else Date. */
	if (xdate) {
		if (parse_amz_date(xdate, &t) < 0)
			return refuse(err, T_INCOMPLETE,
				      "Date must be in ISO-8601 'basic format'. Got '%.40s'. "
				      "See http://en.wikipedia.org/wiki/ISO_8601", xdate);
	} else if (parse_http_date(date, &t) < 0) {
		return refuse(err, T_INCOMPLETE,
			      "Date must be in RFC 1123 format. Got '%.40s'.", date);
	}
	spate_api_sigv4_date(t, amz);
	if (strlen(day) != 8 || memcmp(day, amz, 8) != 0)
		return refuse(err, T_INVALID,
			      "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
			      "version of date from HTTP: '%s' != '%.8s', from '%s'.", day, amz, amz);
	if (t < req->now - SPATE_API_SIGV4_SKEW_S) {
		spate_api_sigv4_date(req->now - SPATE_API_SIGV4_SKEW_S, t1);
		spate_api_sigv4_date(req->now, t2);
		return refuse(err, T_INVALID,
			      "Signature expired: %s is now earlier than %s (%s - 5 min.)",
			      amz, t1, t2);
	}
	if (t > req->now + SPATE_API_SIGV4_SKEW_S) {
		spate_api_sigv4_date(req->now + SPATE_API_SIGV4_SKEW_S, t1);
		spate_api_sigv4_date(req->now, t2);
		return refuse(err, T_INVALID,
			      "Signature not yet current: %s is still later than %s (%s + 5 min.)",
			      amz, t1, t2);
	}

	/* SignedHeaders: must name host; the payload hash header must agree. */
	signed_headers = strndup(a.signed_headers.p, a.signed_headers.n);
	if (!signed_headers)
		return nomem(err);
	if (!list_has(signed_headers, "host")) {
		rc = refuse(err, T_INVALID,
			    "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
		goto out;
	}
	h = header(req, "x-amz-content-sha256", NULL);
	if (h) {
		if (sha256_hex(req->body, req->body_len, hash) < 0) {
			rc = nomem(err);
			goto out;
		}
		if (strcasecmp(h, hash) != 0) {
			rc = refuse(err, T_INVALID,
				    "The provided 'x-amz-content-sha256' header does not match what "
				    "was computed.");
			goto out;
		}
	}
	rc = canonical(&canon, req, signed_headers, h ? hash : NULL, &missing, &missing_len);
	if (rc == -EINVAL) {
		rc = refuse(err, T_INVALID, "Signed header '%.*s' is not in the request.",
			    (int)(missing_len > 64 ? 64 : missing_len), missing);
		goto out;
	}
	if (rc < 0 || sign_canonical(canon.p, canon.len, keys[key].secret ? keys[key].secret : "",
				     amz, day, region, service, sig) < 0) {
		rc = nomem(err);
		goto out;
	}
	/* Constant time over the 64 characters; the length is public. */
	if (a.sig.n != SPATE_API_SIGV4_SIG_LEN ||
	    CRYPTO_memcmp(sig, a.sig.p, SPATE_API_SIGV4_SIG_LEN) != 0) {
		rc = refuse(err, T_INVALID, "%s", M_MISMATCH);
		goto out;
	}
	rc = key;
out:
	free(canon.p);
	free((char *)signed_headers);
	return rc;
}

/* ---- sign ---- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every header name of req but Authorization, lowercase, unique, sorted. */
static char *all_signed_headers(const struct spate_api_sigv4_request *req)
{
	char **names = calloc(req->n_headers + 1, sizeof(*names));
	struct sbuf b = {0};
	size_t n = 0;

	if (!names)
		return NULL;
	for (size_t i = 0; i < req->n_headers; i++) {
		const char *nm = req->headers[i].name;
		char *l;

		if (!nm || !*nm || strcasecmp(nm, "authorization") == 0)
			continue;
		l = strdup(nm);
		if (!l) {
			b.err = true;
			break;
		}
		for (char *c = l; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		names[n++] = l;
	}
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i && strcmp(names[i], names[i - 1]) == 0)
			continue;
		if (b.len)
			sb_c(&b, ';');
		sb_str(&b, names[i]);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (b.err || !b.p) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

int spate_api_sigv4_sign(const struct spate_api_sigv4_key *key,
			 const struct spate_api_sigv4_request *req, const char *signed_headers,
			 char *out, size_t size)
{
	const char *xdate = header(req, "x-amz-date", NULL), *date = header(req, "date", NULL), *m;
	char *list = NULL, sig[65], amz[SPATE_API_SIGV4_DATE_LEN + 1], day[9];
	struct sbuf canon = {0};
	size_t ml;
	int64_t t;
	int rc, n;

	if (!req->region || !req->service || !key || !key->id || !key->secret)
		return -EINVAL;
	if (xdate ? parse_amz_date(xdate, &t) < 0 : !date || parse_http_date(date, &t) < 0)
		return -EINVAL;
	spate_api_sigv4_date(t, amz);
	memcpy(day, amz, 8);
	day[8] = '\0';
	if (!signed_headers) {
		list = all_signed_headers(req);
		if (!list)
			return -ENOMEM;
		signed_headers = list;
	}
	rc = canonical(&canon, req, signed_headers, NULL, &m, &ml);
	if (rc == 0)
		rc = sign_canonical(canon.p, canon.len, key->secret, amz, day, req->region,
				    req->service, sig);
	if (rc == 0) {
		n = snprintf(out, size,
			     ALGORITHM " Credential=%s/%s/%s/%s/" TERMINATOR
			     ", SignedHeaders=%s, Signature=%s",
			     key->id, day, req->region, req->service, signed_headers, sig);
		rc = n < 0 || (size_t)n >= size ? -ENOSPC : n;
	}
	free(canon.p);
	free(list);
	return rc;
}
