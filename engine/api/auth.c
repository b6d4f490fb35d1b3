/* SPDX-License-Identifier: MIT */
/*
 * auth.c - who may call the Kinesis API front: the keys of api.auth and the
 * seam to the signature check (engine/api/sigv4.[ch]).
 *
 * Design. At start the secret of each api.auth.keys entry is read from its
 * file, which must be a regular file with no group or other access (mode
 * 0600 or 0400): a secret others can read is refused with the file, line
 * and field. Per request, the headers libmicrohttpd parsed are handed, in
 * arrival order, with the body to spate_api_sigv4_verify(), which answers
 * the AWS error type a client expects (MissingAuthenticationToken,
 * IncompleteSignature, InvalidSignature, UnrecognizedClient).
 *
 * `auth: none` (written out; config_check refuses an api: block without
 * auth) skips this file's check entirely.
 *
 * Limits: at most 64 headers are passed to the check (more is not a
 * Kinesis request); secrets stay in memory for the life of the front and
 * are wiped when it stops.
 */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "engine/api/api_pvt.h"
#if __has_include("engine/api/sigv4.h")
#include "engine/api/sigv4.h"
#define HAVE_SIGV4 1
#else
/* Until sigv4.[ch] lands (branch apiauth), a keys: config is refused at
 * start: the front never serves what it cannot check. */
#define HAVE_SIGV4 0
struct spate_api_sigv4_key {
	const char *id;
	const char *secret;
};
struct spate_api_sigv4_header {
	const char *name;
	const char *value;
};
#endif

#define MAX_HEADERS 64
#define SECRET_MAX 256

struct spate_api_auth {
	struct spate_api_sigv4_key *keys;
	char (*secrets)[SECRET_MAX + 1];
	size_t n;
	char region[SPATE_CONFIG_REGION_MAX + 1];
};

/* Read key @p i's secret: a regular file, no group/other access, one line. */
static int read_secret(const struct spate_config *cfg, uint32_t i, char *out, char *err,
		       size_t errlen)
{
	const struct spate_config_api_key *k = &cfg->api.keys[i];
	const char *src = cfg->source[0] ? cfg->source : "<config>";
	struct stat st;
	ssize_t n;
	int fd, r;
	unsigned line = k->secret_line ? k->secret_line : k->line;

	fd = open(k->secret_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s:%u: api.auth.keys[%u].secret_file: %s: %s", src, line, i,
			 k->secret_file, strerror(errno));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s:%u: api.auth.keys[%u].secret_file: %s: not a regular file",
			 src, line, i, k->secret_file);
		close(fd);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "%s:%u: api.auth.keys[%u].secret_file: %s: mode %04o lets "
			 "others read the secret; expected 0600 (chmod 600 %s)", src, line, i,
			 k->secret_file, (unsigned)(st.st_mode & 07777), k->secret_file);
		close(fd);
		return -EACCES;
	}
	n = read(fd, out, SECRET_MAX + 1);
	close(fd);
	if (n < 0 || n > SECRET_MAX) {
		snprintf(err, errlen, "%s:%u: api.auth.keys[%u].secret_file: %s: %s", src, line, i,
			 k->secret_file, n < 0 ? strerror(errno) : "longer than 256 bytes");
		return -EINVAL;
	}
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
		n--;
	out[n] = '\0';
	if (n == 0) {
		snprintf(err, errlen, "%s:%u: api.auth.keys[%u].secret_file: %s: empty", src, line,
			 i, k->secret_file);
		return -EINVAL;
	}
	return 0;
}

int spate_api_auth_open(const struct spate_config *cfg, struct spate_api_auth **out, char *err,
			size_t errlen)
{
	const struct spate_config_api *ac = &cfg->api;
	struct spate_api_auth *au;
	int r;

	*out = NULL;
	if (ac->auth == SPATE_CONFIG_API_AUTH_NONE)
		return 0;
	if (ac->auth != SPATE_CONFIG_API_AUTH_KEYS || !ac->n_keys) {
		snprintf(err, errlen, "%s:%u: api.auth: missing; write `auth: none` or auth: {keys: "
			 "[...]}", cfg->source[0] ? cfg->source : "<config>", ac->line);
		return -EINVAL;
	}
	if (!HAVE_SIGV4) {
		snprintf(err, errlen, "%s:%u: api.auth.keys: this build has no signature check "
			 "(engine/api/sigv4.c); use auth: none", cfg->source[0] ? cfg->source : "<config>",
			 ac->line);
		return -ENOTSUP;
	}
	au = calloc(1, sizeof(*au));
	if (!au)
		return -ENOMEM;
	au->keys = calloc(ac->n_keys, sizeof(*au->keys));
	au->secrets = calloc(ac->n_keys, sizeof(*au->secrets));
	if (!au->keys || !au->secrets) {
		r = -ENOMEM;
		goto fail;
	}
	snprintf(au->region, sizeof(au->region), "%s", ac->region);
	for (uint32_t i = 0; i < ac->n_keys; i++) {
		r = read_secret(cfg, i, au->secrets[i], err, errlen);
		if (r < 0)
			goto fail;
		au->keys[i].id = ac->keys[i].id;
		au->keys[i].secret = au->secrets[i];
	}
	au->n = ac->n_keys;
	*out = au;
	return 0;
fail:
	spate_api_auth_close(au);
	return r;
}

void spate_api_auth_close(struct spate_api_auth *au)
{
	if (!au)
		return;
	if (au->secrets)
		OPENSSL_cleanse(au->secrets, au->n ? au->n * sizeof(*au->secrets) : 0);
	free(au->secrets);
	free(au->keys);
	free(au);
}

struct hdrs {
	struct spate_api_sigv4_header h[MAX_HEADERS];
	size_t n;
};

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key,
			       const char *value)
{
	struct hdrs *hs = cls;

	(void)kind;
	if (hs->n == MAX_HEADERS)
		return MHD_NO;
	hs->h[hs->n].name = key;
	hs->h[hs->n].value = value ? value : "";
	hs->n++;
	return MHD_YES;
}

int spate_api_auth_check(struct spate_api_auth *au, const struct spate_api_http_req *r,
			 const char **type, unsigned *status, char *msg, size_t msglen)
{
	struct hdrs hs = { .n = 0 };

	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect, &hs);
#if HAVE_SIGV4
	struct spate_api_sigv4_error e = { 0 };
	struct spate_api_sigv4_request q = {
		.method = r->method,
		.path = r->path,
		.query = r->query,
		.headers = hs.h,
		.n_headers = hs.n,
		.body = r->body,
		.body_len = r->body_len,
		.now = (int64_t)(r->now_ns / 1000000000ull),
		.region = au->region,
		.service = "kinesis",
	};
	int rc = spate_api_sigv4_verify(au->keys, au->n, &q, &e);
	if (rc >= 0)
		return 0;
	*type = e.type ? e.type : "InternalFailure";
	*status = e.status ? (unsigned)e.status : 400;
	snprintf(msg, msglen, "%s", e.message);
	return -1;
#else
	(void)au;
	(void)r;
	*type = "InternalFailure";
	*status = 500;
	snprintf(msg, msglen, "no signature check in this build");
	return -1;
#endif
}
