/* SPDX-License-Identifier: MIT */
/*
 * api.tls (tls.h): the certificate chain and private key read into memory,
 * checked with OpenSSL's libcrypto (PEM parses, key matches certificate, key
 * file private to this user) so that a configuration mistake is named at
 * start with the file and the reason, rather than as a GnuTLS failure
 * inside libmicrohttpd. libmicrohttpd (GnuTLS) then serves HTTPS from the
 * PEM text (MHD_OPTION_HTTPS_MEM_CERT / _KEY).
 *
 * Limits: unencrypted keys only (a passphrase would have to live in the
 * configuration, which buys nothing over mode 0600); files up to
 * SPATE_API_TLS_FILE_MAX; the chain is checked by its first certificate.
 * Certificates are not re-read while running: restart to rotate.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tls.h"

/*
 * Read a whole file into a NUL-terminated buffer. With @p private_key, the
 * file must be a regular file owned by this user (or root) with no group or
 * other permission bits.
 */
static int read_file(const char *field, const char *path, bool private_key, char **out,
		     size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s: %s", field, path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s: %s", field, path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s: %s: not a regular file", field, path);
		goto fail;
	}
	if (private_key && (st.st_mode & 077)) {
		rc = -EACCES;
		snprintf(err, errlen,
			 "%s: %s: mode %04o lets others read the private key (chmod 600 it)",
			 field, path, (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (private_key && st.st_uid != geteuid() && st.st_uid != 0) {
		rc = -EACCES;
		snprintf(err, errlen, "%s: %s: owned by uid %u, neither this user nor root", field,
			 path, (unsigned)st.st_uid);
		goto fail;
	}
	if (st.st_size <= 0 || (uint64_t)st.st_size > SPATE_API_TLS_FILE_MAX) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s: %s: %s", field, path,
			 st.st_size <= 0 ? "empty" : "larger than 1 MiB");
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: %s: out of memory", field, path);
		goto fail;
	}
	while (n < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			snprintf(err, errlen, "%s: %s: %s", field, path,
				 r < 0 ? strerror(errno) : "shorter than its size");
			goto fail;
		}
		n += (size_t)r;
	}
	buf[n] = '\0';
	close(fd);
	*out = buf;
	*len = n;
	return 0;
fail:
	if (buf) {
		OPENSSL_cleanse(buf, (size_t)st.st_size + 1);
		free(buf);
	}
	close(fd);
	return rc;
}

/* Refuse encrypted keys: no passphrase is ever asked for. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(bool *)u = true;
	return -1;
}

/* The PEM certificate and key parse and belong together. */
static int check_pair(const char *cert_path, const char *cert, const char *key_path,
		      const char *key, size_t key_len, char *err, size_t errlen)
{
	BIO *cb = BIO_new_mem_buf(cert, -1), *kb = BIO_new_mem_buf(key, (int)key_len);
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;
	bool encrypted = false;
	int rc = -EINVAL;

	if (!cb || !kb) {
		rc = -ENOMEM;
		snprintf(err, errlen, "api.tls: out of memory");
		goto out;
	}
	x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
	if (!x) {
		snprintf(err, errlen, "api.tls.cert: %s: no PEM certificate in it", cert_path);
		goto out;
	}
	pk = PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, &encrypted);
	if (!pk) {
		snprintf(err, errlen, "api.tls.key: %s: %s", key_path,
			 encrypted ? "an encrypted key (spate takes unencrypted keys in a mode 0600 file)"
				   : "no PEM private key in it");
		goto out;
	}
	if (X509_check_private_key(x, pk) != 1) {
		snprintf(err, errlen, "api.tls.key: %s: not the key of the certificate in %s",
			 key_path, cert_path);
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(cb);
	BIO_free(kb);
	return rc;
}

int spate_api_tls_load(const char *cert, const char *key, struct spate_api_tls *out, char *err,
		       size_t errlen)
{
	size_t cert_len = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((!cert || !*cert) && (!key || !*key))
		return 0;
	if (!cert || !*cert || !key || !*key) {
		snprintf(err, errlen, "api.tls: needs both cert and key");
		return -EINVAL;
	}
	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		snprintf(err, errlen, "api.tls: this libmicrohttpd was built without TLS");
		return -ENOTSUP;
	}
	rc = read_file("api.tls.cert", cert, false, &out->cert, &cert_len, err, errlen);
	if (rc == 0)
		rc = read_file("api.tls.key", key, true, &out->key, &out->key_len, err, errlen);
	if (rc == 0)
		rc = check_pair(cert, out->cert, key, out->key, out->key_len, err, errlen);
	if (rc < 0)
		spate_api_tls_free(out);
	return rc;
}

unsigned int spate_api_tls_flags(const struct spate_api_tls *t)
{
	return t->cert ? MHD_USE_TLS : 0;
}

struct MHD_OptionItem *spate_api_tls_options(const struct spate_api_tls *t,
					     struct MHD_OptionItem *o)
{
	size_t n = 0;

	if (t->cert) {
		o[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, t->cert};
		o[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, t->key};
	}
	o[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	return o;
}

void spate_api_tls_free(struct spate_api_tls *t)
{
	if (t->key) {
		OPENSSL_cleanse(t->key, t->key_len);
		free(t->key);
	}
	free(t->cert);
	memset(t, 0, sizeof(*t));
}
