/* SPDX-License-Identifier: MIT */
/*
 * nats_js.c - a small JetStream admin client for tests/nats_bridge.sh,
 * built on libnats (the same client library a user's tools would use):
 *
 *   nats_js SERVERS create STREAM SUBJECT REPLICAS   create (or keep) a
 *            file-storage stream; retries for up to 60 s while the cluster
 *            elects its JetStream leaders
 *   nats_js SERVERS count STREAM                     print its message count
 *
 * NATS_JS_USER, NATS_JS_PASSWORD and NATS_JS_CA in the environment, when
 * set, are its credentials and the CA it trusts (TLS) (tests/nats_auth.sh).
 *
 * Exit status 0 on success, 1 with a message on stderr otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "plugins/nats_conn.h"

static int connect_js(const char *servers, natsConnection **nc, jsCtx **js)
{
	static struct spate_nats_conn_cfg cc;
	natsOptions *o = NULL;
	char err[256];

	cc.servers = servers;
	cc.timeout_ms = 2000;
	cc.user = getenv("NATS_JS_USER");
	cc.password = getenv("NATS_JS_PASSWORD");
	cc.tls_ca = getenv("NATS_JS_CA");
	cc.tls = cc.tls_ca != NULL;
	if (spate_nats_options(&cc, NULL, NULL, NULL, NULL, &o, err, sizeof(err)) < 0) {
		fprintf(stderr, "nats_js: %s\n", err);
		return -1;
	}
	natsStatus s = natsConnection_Connect(nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
		fprintf(stderr, "nats_js: connect %s: %s\n", servers, natsStatus_GetText(s));
		return -1;
	}
	if (natsConnection_JetStream(js, *nc, NULL) != NATS_OK) {
		fprintf(stderr, "nats_js: JetStream context failed\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	int rc = 1;

	if (argc < 4) {
		fprintf(stderr, "usage: nats_js SERVERS create STREAM SUBJECT REPLICAS | count STREAM\n");
		return 2;
	}
	if (connect_js(argv[1], &nc, &js) < 0)
		goto out;
	if (!strcmp(argv[2], "create") && argc == 6) {
		char err[512] = "";
		for (int i = 0; i < 600; i++) {
			if (spate_nats_ensure_stream(js, argv[3], argv[4], atoll(argv[5]), 0, err,
						     sizeof(err)) == 0) {
				rc = 0;
				goto out;
			}
			struct timespec ts = { 0, 100 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		fprintf(stderr, "nats_js: %s\n", err);
	} else if (!strcmp(argv[2], "count")) {
		jsStreamInfo *si = NULL;
		jsErrCode jerr = 0;
		if (js_GetStreamInfo(&si, js, argv[3], NULL, &jerr) == NATS_OK) {
			printf("%llu\n", (unsigned long long)si->State.Msgs);
			jsStreamInfo_Destroy(si);
			rc = 0;
		} else {
			fprintf(stderr, "nats_js: stream %s: error %d\n", argv[3], (int)jerr);
		}
	} else {
		fprintf(stderr, "nats_js: unknown command %s\n", argv[2]);
	}
out:
	if (js)
		jsCtx_Destroy(js);
	if (nc) {
		natsConnection_Close(nc);
		natsConnection_Destroy(nc);
	}
	nats_Close();
	return rc;
}
