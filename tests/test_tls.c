/* SPDX-License-Identifier: MIT */
/*
 * api.tls loading (engine/api/tls.h): a self-signed certificate made here
 * with the openssl command loads and serves HTTPS through libmicrohttpd to
 * curl --cacert; a key readable by others, a key of another certificate,
 * an encrypted key, files that are not PEM and a lone cert are refused
 * with the file and the reason.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <microhttpd.h>

#include "engine/api/tls.h"


#define DIR_TEMPLATE "/tmp/spate_tls_XXXXXX"
static char dir[sizeof(DIR_TEMPLATE)];
static char cert[256], key[256], cert2[256], key2[256];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* A self-signed EC certificate for localhost / 127.0.0.1, key mode 0600. */
static void make_pair(const char *c, const char *k)
{
	cr_assert_eq(sh("umask 077; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
			"-nodes -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
			"-days 2 -keyout %s -out %s 2>/dev/null", k, c), 0);
}

static void teardown(void);

/* Each test runs in its own process (Criterion, tests/tsan): setup() at its
 * start, teardown() at that process's exit, even after a failed assert. */
static void setup(void)
{
	if (sh("command -v openssl >/dev/null") != 0)
		cr_skip_test("the openssl command is not installed: cannot make a certificate");
	memcpy(dir, DIR_TEMPLATE, sizeof(dir));
	cr_assert_not_null(mkdtemp(dir));
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(cert2, sizeof(cert2), "%s/cert2.pem", dir);
	snprintf(key2, sizeof(key2), "%s/key2.pem", dir);
	atexit(teardown);
	make_pair(cert, key);
	make_pair(cert2, key2);
}

static void teardown(void)
{
	if (dir[0] && strcmp(dir, DIR_TEMPLATE) != 0)
		sh("rm -rf %s", dir);
	dir[0] = '\0';
}

static void refused(const char *c, const char *k, int want, const char *msg)
{
	struct spate_api_tls t;
	char err[512] = "";
	int rc = spate_api_tls_load(c, k, &t, err, sizeof(err));

	cr_assert_eq(rc, want, "rc %d (%s), expected %d", rc, err, want);
	cr_assert_not_null(strstr(err, msg), "'%s' lacks '%s'", err, msg);
	cr_assert_null(t.cert);
	cr_assert_null(t.key);
}

Test(tls, none_is_plain_http, .timeout = 120)
{
	struct spate_api_tls t;
	struct MHD_OptionItem o[SPATE_API_TLS_OPTIONS];
	char err[256];

	cr_assert_eq(spate_api_tls_load("", NULL, &t, err, sizeof(err)), 0);
	cr_assert_eq(spate_api_tls_flags(&t), 0);
	cr_assert_eq(spate_api_tls_options(&t, o)[0].option, MHD_OPTION_END);
	spate_api_tls_free(&t);
}

Test(tls, refusals, .timeout = 120)
{
	char bad[300];

	setup();
	refused(cert, "", -EINVAL, "needs both");
	refused("", key, -EINVAL, "needs both");
	refused(cert, "/nonexistent/key.pem", -ENOENT, "api.tls.key: /nonexistent/key.pem");
	/* Others may read the key. */
	cr_assert_eq(chmod(key, 0640), 0);
	refused(cert, key, -EACCES, "mode 0640 lets others read the private key");
	cr_assert_eq(chmod(key, 0400), 0);
	struct spate_api_tls t;
	char err[512];

	cr_assert_eq(spate_api_tls_load(cert, key, &t, err, sizeof(err)), 0, "%s", err);
	spate_api_tls_free(&t);
	/* The key of another certificate. */
	refused(cert, key2, -EINVAL, "not the key of the certificate");
	/* Not PEM. */
	snprintf(bad, sizeof(bad), "%s/bad.pem", dir);
	cr_assert_eq(sh("umask 077; echo 'not a certificate' > %s", bad), 0);
	refused(bad, key, -EINVAL, "no PEM certificate");
	refused(cert, bad, -EINVAL, "no PEM private key");
	refused(cert, dir, -EINVAL, "not a regular file");
	/* An encrypted key. */
	snprintf(bad, sizeof(bad), "%s/enc.pem", dir);
	cr_assert_eq(sh("umask 077; openssl pkey -in %s -aes128 -passout pass:secret -out %s", key,
			bad), 0);
	refused(cert, bad, -EINVAL, "an encrypted key");
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *data,
			      size_t *size, void **state)
{
	static const char ok[] = "hello over tls\n";
	struct MHD_Response *r =
		MHD_create_response_from_buffer(sizeof(ok) - 1, (void *)ok, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_queue_response(c, 200, r);

	MHD_destroy_response(r);
	return ret;
}

Test(tls, curl_trusts_the_loaded_certificate, .timeout = 120)
{
	struct MHD_OptionItem o[SPATE_API_TLS_OPTIONS];
	const union MHD_DaemonInfo *info;
	struct spate_api_tls t;
	struct MHD_Daemon *d;
	char err[512], out[300];
	FILE *f;

	if (sh("command -v curl >/dev/null") != 0)
		cr_skip_test("curl is not installed");
	setup();
	cr_assert_eq(spate_api_tls_load(cert, key, &t, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spate_api_tls_flags(&t), MHD_USE_TLS);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | spate_api_tls_flags(&t), 0, NULL,
			     NULL, answer, NULL, MHD_OPTION_ARRAY, spate_api_tls_options(&t, o),
			     MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
	cr_assert_not_null(d, "MHD_start_daemon with TLS failed");
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	cr_assert_not_null(info);
	cr_assert_gt(info->port, 0);

	snprintf(out, sizeof(out), "%s/out", dir);
	cr_assert_eq(sh("curl -sS --max-time 20 --cacert %s https://127.0.0.1:%u/ > %s", cert,
			(unsigned)info->port, out), 0);
	f = fopen(out, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(err, sizeof(err), f));
	fclose(f);
	cr_assert_str_eq(err, "hello over tls\n");
	/* Without the CA, curl refuses the self-signed certificate (60);
	 * plain HTTP to the TLS port gets no answer. */
	cr_assert_eq(WEXITSTATUS(sh("curl -sS --max-time 20 https://127.0.0.1:%u/ 2>/dev/null",
				    (unsigned)info->port)), 60);
	cr_assert_neq(sh("curl -sS --max-time 20 http://127.0.0.1:%u/ >/dev/null 2>&1",
			 (unsigned)info->port), 0);
	MHD_stop_daemon(d);
	spate_api_tls_free(&t);
}
