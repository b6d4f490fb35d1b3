/* SPDX-License-Identifier: MIT */
/**
 * @file engine/api/tls.h
 * @brief Optional TLS for the Kinesis front: api.tls {cert, key} loaded,
 *        checked and handed to libmicrohttpd's HTTPS (GnuTLS) support.
 *
 * Internal to the api door (engine/api/); never installed.
 *
 * The server's start does:
 *
 *     struct spate_api_tls tls;
 *     struct MHD_OptionItem o[SPATE_API_TLS_OPTIONS];
 *     if (spate_api_tls_load(cfg->api.tls_cert, cfg->api.tls_key, &tls,
 *                            err, errlen) < 0) fail;
 *     MHD_start_daemon(flags | spate_api_tls_flags(&tls), port, ...,
 *                      MHD_OPTION_ARRAY, spate_api_tls_options(&tls, o), ...);
 *     ... after MHD_stop_daemon: spate_api_tls_free(&tls);
 *
 * With neither file configured everything is a no-op (plain HTTP).
 *
 * Thread safety: none needed (called once at start and once at stop).
 */
#ifndef SPATE_API_TLS_H
#define SPATE_API_TLS_H

#include <stddef.h>

#include <microhttpd.h>

/** Largest certificate chain or key file read, bytes. */
#define SPATE_API_TLS_FILE_MAX (1u << 20)
/** Entries spate_api_tls_options() may fill, MHD_OPTION_END included. */
#define SPATE_API_TLS_OPTIONS 3

/** The PEM text of the certificate chain and the private key, in memory
 *  for the life of the daemon (libmicrohttpd keeps the pointers). */
struct spate_api_tls {
	char *cert; /**< NULL: plain HTTP */
	char *key;
	size_t key_len;
};

/**
 * Read and check api.tls: the certificate chain (PEM, first certificate
 * parsed) and the private key (PEM, unencrypted; a regular file of this
 * user or root with no group/other access, i.e. mode 0600 or 0400), and
 * that the key is the certificate's. Both files or none.
 *
 * @param cert   api.tls.cert: the certificate file ("" or NULL: no TLS)
 * @param key    api.tls.key: the private key file ("" or NULL: no TLS)
 * @param out    filled; zeroed when TLS is not configured
 * @param err    receives "api.tls.key: <file>: why" on failure
 * @param errlen size of err
 * @return 0, -ENOTSUP (this libmicrohttpd has no TLS), -EACCES (key file
 *         mode or owner), -EINVAL (not PEM, not matching, encrypted key),
 *         -ENOMEM, or the -errno of open/read.
 */
int spate_api_tls_load(const char *cert, const char *key, struct spate_api_tls *out, char *err,
		       size_t errlen);

/** MHD_USE_TLS when TLS is loaded, else 0. */
unsigned int spate_api_tls_flags(const struct spate_api_tls *t);

/**
 * Fill @p o (SPATE_API_TLS_OPTIONS entries) with the certificate and key
 * options, MHD_OPTION_END terminated (just the end when TLS is off).
 * @return @p o, for MHD_OPTION_ARRAY.
 */
struct MHD_OptionItem *spate_api_tls_options(const struct spate_api_tls *t,
					     struct MHD_OptionItem *o);

/** Wipe the key from memory and free both. */
void spate_api_tls_free(struct spate_api_tls *t);

#endif /* SPATE_API_TLS_H */
