/* SPDX-License-Identifier: MIT */
/**
 * @file engine/api/sigv4.h
 * @brief AWS Signature Version 4 for the Kinesis front: verify a request
 *        against configured keys (the server), sign one (the bench, tests).
 *
 * Internal to the api door (engine/api/); never installed.
 *
 * The canonical request is AWS's:
 *
 *     METHOD \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n
 *     SignedHeaders \n hex(SHA-256(body))
 *
 * - CanonicalURI: the path with dot segments and repeated slashes removed,
 *   each byte outside A-Z a-z 0-9 - . _ ~ / percent-encoded (so a path the
 *   client percent-encoded is encoded a second time, as AWS does for every
 *   service but S3).
 * - CanonicalQuery: every name=value pair percent-decoded, then encoded with
 *   the same unreserved set ('/' encoded too), sorted by name then value.
 * - CanonicalHeaders: each name of SignedHeaders, lowercase, ':', the
 *   request's values of that header in arrival order, each trimmed with
 *   inner runs of spaces made one, joined by ','; one line each.
 * - The payload hash is always computed from the body; an
 *   x-amz-content-sha256 header, when sent, must agree with it.
 *
 * The string to sign is `AWS4-HMAC-SHA256 \n <X-Amz-Date> \n
 * <yyyymmdd>/<region>/<service>/aws4_request \n hex(SHA-256(canonical))`, the
 * key HMAC-SHA256 chained over "AWS4"+secret, date, region, service,
 * "aws4_request". SHA-256 and HMAC are OpenSSL's libcrypto; the signature
 * is compared in constant time (CRYPTO_memcmp).
 *
 * The request time is X-Amz-Date (ISO 8601 basic, 20150830T123600Z) or,
 * without it, Date (RFC 1123); it must be within SPATE_API_SIGV4_SKEW_S of
 * the server's clock and its day must be the credential scope's.
 *
 * Errors carry the AWS `__type` a client branches on and a message in
 * AWS's words (all answered with HTTP 400, as AWS's JSON services and
 * kinesalite do):
 * - MissingAuthenticationTokenException: no Authorization header.
 * - IncompleteSignatureException: the header or the date is malformed or
 *   lacks a part (Credential, SignedHeaders, Signature, X-Amz-Date/Date).
 * - UnrecognizedClientException: the access key id is not configured, or
 *   the request carries a session token (spate has long-term keys only).
 * - InvalidSignatureException: wrong signature, wrong scope (region,
 *   service, day), x-amz-content-sha256 not the body's, or "Signature
 *   expired" / "Signature not yet current" outside the 5-minute window.
 *
 * Not supported: presigned URLs (X-Amz-Signature in the query), chunked
 * (streaming) payload signing, SigV4a. Kinesis clients use neither.
 *
 * Thread safety: every function is reentrant (no shared state); keys are
 * read only.
 */
#ifndef SPATE_API_SIGV4_H
#define SPATE_API_SIGV4_H

#include <stddef.h>
#include <stdint.h>

/** Largest difference between request time and server time, seconds. */
#define SPATE_API_SIGV4_SKEW_S 300
/** Characters of an X-Amz-Date value, NUL excluded (20150830T123600Z). */
#define SPATE_API_SIGV4_DATE_LEN 16u
/** Characters of a hex signature, NUL excluded. */
#define SPATE_API_SIGV4_SIG_LEN 64u

/** An access key: the id a client names and its secret. */
struct spate_api_sigv4_key {
	const char *id;     /**< access key id, e.g. "AKIDEXAMPLE" */
	const char *secret; /**< secret access key */
};

/** One header (or one decoded query argument) as received: NUL-terminated
 *  name and value, any case, repeated names allowed, arrival order. */
struct spate_api_sigv4_header {
	const char *name;
	const char *value;
};

/** What verify and sign look at in a request. */
struct spate_api_sigv4_request {
	const char *method; /**< "POST" */
	const char *path;   /**< "/" (no query); NULL or "" means "/" */
	/** The raw query after '?' ("a=1&b=%20x"), NULL or "" for none... */
	const char *query;
	/** ...or, when the server has already split and decoded it (as
	 *  libmicrohttpd does), the decoded arguments (used if query is NULL). */
	const struct spate_api_sigv4_header *query_args;
	size_t n_query_args;
	const struct spate_api_sigv4_header *headers;
	size_t n_headers;
	const void *body;
	size_t body_len;
	int64_t now;         /**< verify: the server's clock, Unix seconds */
	const char *region;  /**< the scope's region: verify refuses another
	                      *   (NULL: any); sign uses it (required) */
	const char *service; /**< likewise, "kinesis" */
};

/** Why verify refused a request. */
struct spate_api_sigv4_error {
	const char *type; /**< AWS __type, a string literal */
	int status;       /**< HTTP status to answer with */
	char message[512];
};

/**
 * Verify a request's signature against keys.
 *
 * @param keys   the configured keys (ids unique)
 * @param n_keys how many
 * @param req    the request; headers must include the Authorization header
 * @param err    filled when the request is refused (type, status, message)
 * @return the index of the key that signed it (>= 0), or
 *         -EACCES (refused: err says why),
 *         -ENOMEM (err: InternalFailure, 500).
 */
int spate_api_sigv4_verify(const struct spate_api_sigv4_key *keys, size_t n_keys,
			   const struct spate_api_sigv4_request *req,
			   struct spate_api_sigv4_error *err);

/**
 * Sign a request (a client's side): compute the Authorization header value.
 *
 * The request's headers must include Host and X-Amz-Date (make one with
 * spate_api_sigv4_date()) or Date; req->region and req->service name the
 * scope.
 *
 * @param key            the key to sign with
 * @param req            the request (now is not used)
 * @param signed_headers lowercase names joined by ';' in sorted order, or
 *                       NULL for every header of req except Authorization
 * @param out            receives "AWS4-HMAC-SHA256 Credential=..., ..."
 * @param size           size of out
 * @return the length written (NUL excluded), -EINVAL (no or a malformed
 *         X-Amz-Date or Date, no region/service, a signed header absent),
 *         -ENOSPC, -ENOMEM.
 */
int spate_api_sigv4_sign(const struct spate_api_sigv4_key *key,
			 const struct spate_api_sigv4_request *req, const char *signed_headers,
			 char *out, size_t size);

/**
 * Format a Unix time as an X-Amz-Date value (ISO 8601 basic, UTC).
 * @param t   seconds since the epoch
 * @param out SPATE_API_SIGV4_DATE_LEN + 1 bytes
 */
void spate_api_sigv4_date(int64_t t, char *out);

/**
 * The canonical request (tests and debugging): what verify and sign hash.
 *
 * @param req            the request
 * @param signed_headers lowercase names joined by ';'
 * @param out            receives a malloc'd NUL-terminated string (free())
 * @return its length, -EINVAL (a signed header absent), -ENOMEM.
 */
int spate_api_sigv4_canonical(const struct spate_api_sigv4_request *req,
			      const char *signed_headers, char **out);

#endif /* SPATE_API_SIGV4_H */
