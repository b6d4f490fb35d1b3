/* SPDX-License-Identifier: MIT */
/*
 * iter.c - shard iterators and next tokens of the Kinesis API front:
 * opaque, tamper-evident, expiring.
 *
 * Design. A token is the base64 of a small binary record (version, kind,
 * shard, position, the stream's incarnation, the issue time in ms, the
 * stream name) followed by the first 16 bytes of its HMAC-SHA256 under the
 * bus's iterator key: 32 bytes from the kernel's random source, kept in
 * <state_dir>/api-iterator.key (mode 0600, created once, atomically: a
 * temporary file linked into place), so an iterator a client holds keeps
 * working after `spate run` restarts, as long as the stream's incarnation
 * is the same (the core keeps it across restarts). A key file of another
 * mode, size or type is refused with an error naming it. A token
 * changed by one bit, made up, or issued by another engine (another key)
 * fails the MAC: InvalidArgumentException. One older than 5 minutes is
 * ExpiredIteratorException (ExpiredNextTokenException for list tokens),
 * as on Kinesis. The incarnation ties an iterator to one life of a stream:
 * a stream deleted and created again under the same name does not serve
 * its predecessor's iterators.
 *
 * Limits: anyone who can read the key file can make iterators for this
 * bus (they grant reads only, and the state_dir is the engine's); removing
 * the file invalidates every iterator at the next start.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "engine/api/api_pvt.h"

#define TOK_VERSION 1u
#define TOK_MAC 16u
/* version, kind, shard, pos, incarnation, issued_ms, name length */
#define TOK_FIXED (1 + 1 + 4 + 8 + 8 + 8 + 1)

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void mac(const struct spate_api *a, const uint8_t *p, size_t n, uint8_t out[TOK_MAC])
{
	uint8_t full[EVP_MAX_MD_SIZE];
	unsigned fl = 0;

	HMAC(EVP_sha256(), a->mac_key, sizeof(a->mac_key), p, n, full, &fl);
	memcpy(out, full, TOK_MAC);
}

void spate_api_tok_encode(const struct spate_api *a, struct spate_api_tok *t, char *out)
{
	uint8_t raw[TOK_FIXED + SPATE_CONFIG_NAME_MAX + TOK_MAC];
	size_t nl = strnlen(t->stream, SPATE_CONFIG_NAME_MAX), n = 0;

	t->issued_ms = spate_now_ns() / 1000000;
	raw[n++] = TOK_VERSION;
	raw[n++] = t->kind;
	raw[n++] = (uint8_t)t->shard;
	raw[n++] = (uint8_t)(t->shard >> 8);
	raw[n++] = (uint8_t)(t->shard >> 16);
	raw[n++] = (uint8_t)(t->shard >> 24);
	put64(raw + n, t->pos);
	n += 8;
	put64(raw + n, t->incarnation);
	n += 8;
	put64(raw + n, t->issued_ms);
	n += 8;
	raw[n++] = (uint8_t)nl;
	memcpy(raw + n, t->stream, nl);
	n += nl;
	mac(a, raw, n, raw + n);
	n += TOK_MAC;
	/* 4 * ceil(n / 3) <= 4 * ceil(96 / 3) = 128 < SPATE_API_TOK_MAX */
	EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
}

int spate_api_tok_decode(const struct spate_api *a, const char *s, size_t len,
			 struct spate_api_tok *t)
{
	uint8_t raw[SPATE_API_TOK_MAX], m[TOK_MAC];
	int64_t n;

	if (len >= SPATE_API_TOK_MAX)
		return -EINVAL;
	n = spate_api_b64_decode(s, len, raw);
	if (n < (int64_t)(TOK_FIXED + TOK_MAC) || raw[0] != TOK_VERSION)
		return -EINVAL;
	size_t nl = raw[TOK_FIXED - 1];
	if (nl == 0 || nl > SPATE_CONFIG_NAME_MAX || (size_t)n != TOK_FIXED + nl + TOK_MAC)
		return -EINVAL;
	mac(a, raw, TOK_FIXED + nl, m);
	if (CRYPTO_memcmp(m, raw + TOK_FIXED + nl, TOK_MAC) != 0)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	t->kind = raw[1];
	t->shard = (uint32_t)raw[2] | (uint32_t)raw[3] << 8 | (uint32_t)raw[4] << 16 |
		   (uint32_t)raw[5] << 24;
	t->pos = get64(raw + 6);
	t->incarnation = get64(raw + 14);
	t->issued_ms = get64(raw + 22);
	memcpy(t->stream, raw + TOK_FIXED, nl);
	t->stream[nl] = '\0';
	uint64_t now_ms = spate_now_ns() / 1000000;
	if (now_ms > t->issued_ms && now_ms - t->issued_ms > a->iter_ttl_ms)
		return -ETIME;
	return 0;
}

/* Read the key file open on @p fd into a->mac_key after checking it is a
 * regular file of mode 0600 and exactly the key's size. */
static int key_read(struct spate_api *a, int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "api: iterator key %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 07777) != 0600 ||
	    st.st_size != (off_t)sizeof(a->mac_key)) {
		snprintf(err, errlen, "api: iterator key %s: must be a regular file of mode 0600 and "
			 "%zu bytes (it is %s, mode %04o, %lld bytes); remove it to make a new key "
			 "(iterators held by clients then stop working)", path, sizeof(a->mac_key),
			 S_ISREG(st.st_mode) ? "a regular file" : "not a regular file",
			 (unsigned)(st.st_mode & 07777), (long long)st.st_size);
		return -EINVAL;
	}
	n = pread(fd, a->mac_key, sizeof(a->mac_key), 0);
	if (n != (ssize_t)sizeof(a->mac_key)) {
		snprintf(err, errlen, "api: iterator key %s: short read", path);
		return -EIO;
	}
	return 0;
}

/* Make the key file: random bytes into a temporary file (0600), synced,
 * then linked to @p path (fails if another process made it first: then
 * its key is used). @return 0, -EEXIST (made by another: read it), -errno. */
static int key_make(struct spate_api *a, const char *dir, const char *path, char *err,
		    size_t errlen)
{
	char tmp[SPATE_CONFIG_PATH_MAX + 48];
	int fd, r = 0;

	snprintf(tmp, sizeof(tmp), "%s/.api-iterator.key.%d", dir, (int)getpid());
	if (getrandom(a->mac_key, sizeof(a->mac_key), 0) != (ssize_t)sizeof(a->mac_key)) {
		r = -errno;
		snprintf(err, errlen, "api: no random key for iterators: %s", strerror(errno));
		return r;
	}
	unlink(tmp); /* a leftover of this pid's crash */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "api: iterator key %s: %s", tmp, strerror(errno));
		return r;
	}
	if (fchmod(fd, 0600) < 0 || /* whatever the umask */
	    write(fd, a->mac_key, sizeof(a->mac_key)) != (ssize_t)sizeof(a->mac_key) ||
	    fsync(fd) < 0)
		r = errno ? -errno : -EIO;
	close(fd);
	if (r == 0 && link(tmp, path) < 0)
		r = -errno;
	unlink(tmp);
	if (r == -EEXIST)
		return r;
	if (r < 0) {
		snprintf(err, errlen, "api: iterator key %s: %s", path, strerror(-r));
		return r;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd); /* the new name, durable */
		close(fd);
	}
	return 0;
}

int spate_api_iter_key(struct spate_api *a, const struct spate_config *cfg, char *err,
		       size_t errlen)
{
	char path[SPATE_CONFIG_PATH_MAX + 32];
	int r;

	if (!cfg->state_dir[0]) {
		/* A bus built in C without a state_dir: a key for this process. */
		if (getrandom(a->mac_key, sizeof(a->mac_key), 0) != (ssize_t)sizeof(a->mac_key)) {
			snprintf(err, errlen, "api: no random key for iterators: %s", strerror(errno));
			return -errno;
		}
		return 0;
	}
	snprintf(path, sizeof(path), "%s/" SPATE_API_ITER_KEY_FILE, cfg->state_dir);
	for (int tries = 0; tries < 2; tries++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0) {
			r = key_read(a, fd, path, err, errlen);
			close(fd);
			return r;
		}
		if (errno != ENOENT) {
			r = -errno;
			snprintf(err, errlen, "api: iterator key %s: %s%s", path, strerror(errno),
				 errno == ELOOP ? " (a symbolic link: refused)" : "");
			return r;
		}
		r = key_make(a, cfg->state_dir, path, err, errlen);
		if (r != -EEXIST)
			return r;
	}
	snprintf(err, errlen, "api: iterator key %s: made and removed while starting", path);
	return -EAGAIN;
}
