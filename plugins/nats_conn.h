/* SPDX-License-Identifier: MIT */
/*
 * nats_conn.h - what the NATS bridge's two halves share: connecting to a
 * NATS cluster with libnats (server list, reconnects with back-off and
 * jitter, credentials, TLS), making sure a JetStream stream exists, and the
 * headers the export writes and the import reads. Header-only (static
 * functions): the export is a consumer plugin (plugins/nats.c, built
 * against spate/plugin.h only) and the import a source door
 * (engine/sources/nats.c); neither links the other. Not installed.
 *
 * Limits: every option is a string (the plugin's options are); the caller
 * validates ranges. libnats does the TLS, credentials and reconnect logic;
 * nothing here re-implements any of it.
 */
#ifndef SPATE_PLUGINS_NATS_CONN_H
#define SPATE_PLUGINS_NATS_CONN_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <nats/nats.h>

/*
 * Headers of an exported record (docs/scale-out.md): two, because a reader
 * pays for every one (libnats parses all of a message's headers, a hash
 * entry and allocations each, on its first header access):
 *   Nats-Msg-Id   <bus>/<stream>/<shard>/<seq>: JetStream's duplicate
 *                 window (set through jsPubOptions.MsgId)
 *   Spate-Record  "<sequence> <shard id> <timestamp> <partition key>": the
 *                 42-digit Kinesis sequence number, shardId-000000000003,
 *                 the commit time (ns since the epoch), then the key (last:
 *                 it may hold spaces), as text, or "hex:" and its bytes in
 *                 hex if it has control bytes, leading or trailing blanks
 *                 (a header value is one trimmed line) or starts "hex:".
 */
#define SPATE_NATS_H_MSGID "Nats-Msg-Id"
#define SPATE_NATS_H_RECORD "Spate-Record"

/*
 * What a message's payload is (`format:` on both halves):
 *   headers   the record's data, as it was put (default: any reader)
 *   envelope  the record as a keyed envelope (spate/kinesis.h: 16-bit
 *             little-endian key length, the key, the data), for a bridge
 *             between spate buses: the import finds the key in the payload
 *             and never touches the headers, which libnats would parse (all
 *             of them, a hash entry and allocations each, and their freeing)
 *             for the key alone. The headers are the same in both formats.
 */
enum { SPATE_NATS_FORMAT_HEADERS, SPATE_NATS_FORMAT_ENVELOPE };
static const char *const spate_nats_format_names[] = { "headers", "envelope", NULL };
/* Longest Spate-Record value: 42 + 1 + 20 + 1 + 20 + 1 + "hex:" + 2 per key byte. */
#define SPATE_NATS_RECORD_MAX (SPATE_NATS_SEQ_LEN_ + 44 + 4 + 2 * 1024 + 1)
#define SPATE_NATS_SEQ_LEN_ 42

/* The Spate-Record value of a record into @p out (SPATE_NATS_RECORD_MAX
 * bytes): @p seq42 and @p shard_id as formatted by spate/kinesis.h, @p ts,
 * the key. Returns its length. */
static inline size_t spate_nats_record_value(char *out, const char *seq42, const char *shard_id,
					     uint64_t ts, const void *key, size_t klen)
{
	const unsigned char *k = (const unsigned char *)key;
	char tmp[21];
	size_t o = 0;
	int n = 0;
	bool text = klen > 0 && k[0] != ' ' && k[0] != '\t' && k[klen - 1] != ' ' &&
		    k[klen - 1] != '\t' && !(klen >= 4 && !memcmp(k, "hex:", 4));

	if (klen > 1024)
		klen = 1024;
	for (size_t i = 0; text && i < klen; i++)
		if (k[i] < 0x20 || k[i] == 0x7f)
			text = false;
	memcpy(out, seq42, SPATE_NATS_SEQ_LEN_);
	o = SPATE_NATS_SEQ_LEN_;
	out[o++] = ' ';
	for (const char *p = shard_id; *p; p++)
		out[o++] = *p;
	out[o++] = ' ';
	do {
		tmp[n++] = (char)('0' + ts % 10);
		ts /= 10;
	} while (ts);
	while (n)
		out[o++] = tmp[--n];
	out[o++] = ' ';
	if (text) {
		memcpy(out + o, k, klen);
		o += klen;
	} else {
		static const char hx[] = "0123456789abcdef";
		memcpy(out + o, "hex:", 4);
		o += 4;
		for (size_t i = 0; i < klen; i++) {
			out[o++] = hx[k[i] >> 4];
			out[o++] = hx[k[i] & 15];
		}
	}
	out[o] = '\0';
	return o;
}

/* The partition key in Spate-Record value @p v (after its third space),
 * or NULL if @p v is not one. */
static inline const char *spate_nats_record_key(const char *v)
{
	for (int sp = 0; sp < 3; sp++) {
		v = strchr(v, ' ');
		if (!v)
			return NULL;
		v++;
	}
	return v;
}

/* Decode a "hex:" key (as spate_nats_record_value() writes it) into @p out
 * (at least (@p len - 4) / 2 bytes): its length, or -1 if @p key is not one
 * (then it is the key as it is). */
static inline ssize_t spate_nats_key_unhex(const char *key, size_t len, char *out)
{
	size_t o = 0;

	if (len < 4 || memcmp(key, "hex:", 4) || (len - 4) % 2)
		return -1;
	for (size_t i = 4; i < len; i += 2) {
		int v = 0;
		for (int j = 0; j < 2; j++) {
			char c = key[i + (size_t)j];
			int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
			if (d < 0)
				return -1;
			v = v * 16 + d;
		}
		out[o++] = (char)v;
	}
	return (ssize_t)o;
}

/** Connection settings, every one a string as written (NULL = unset). */
struct spate_nats_conn_cfg {
	const char *servers;       /* "nats://h1:4222,nats://h2:4222" (required) */
	const char *name;          /* connection name shown by the server */
	const char *user, *password;
	const char *token;
	const char *nkey;          /* an nkey public key (U...), with nkey_seed */
	const char *nkey_seed;     /* file holding its seed */
	const char *creds;         /* a .creds file (JWT + seed) */
	bool tls;
	const char *tls_ca, *tls_cert, *tls_key;
	int64_t reconnect_wait_ms; /* first back-off; grows to reconnect_max_ms */
	int64_t reconnect_max_ms;
	int64_t timeout_ms;        /* connect timeout */
};

/* Parse "a, b ,c" servers into an array for natsOptions_SetServers. */
static inline int spate_nats_servers(const char *list, char ***out, int *n)
{
	char *copy = strdup(list), *save = NULL, *tok;
	char **arr = NULL;
	int cnt = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		char **a = realloc(arr, (size_t)(cnt + 1) * sizeof(*a));
		if (!a || !(a[cnt] = strdup(tok))) {
			if (a)
				arr = a;
			for (int i = 0; i < cnt; i++)
				free(arr[i]);
			free(arr);
			free(copy);
			return -ENOMEM;
		}
		arr = a;
		cnt++;
	}
	free(copy);
	*out = arr;
	*n = cnt;
	return cnt ? 0 : -EINVAL;
}

static inline void spate_nats_servers_free(char **arr, int n)
{
	for (int i = 0; i < n; i++)
		free(arr[i]);
	free(arr);
}

/* Back-off of reconnect attempt @p attempts: wait, doubling, capped. */
static inline int64_t spate_nats_reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
	const struct spate_nats_conn_cfg *c = closure;
	int64_t d = c->reconnect_wait_ms > 0 ? c->reconnect_wait_ms : 100;
	int64_t max = c->reconnect_max_ms > 0 ? c->reconnect_max_ms : 2000;

	(void)nc;
	for (int i = 1; i < attempts && d < max; i++)
		d *= 2;
	return d < max ? d : max;
}

static inline void spate_nats_noop_cb_(natsConnection *nc, void *closure)
{
	(void)nc;
	(void)closure;
}

/**
 * Build libnats options from @p c: servers, reconnect for ever with
 * back-off (doubling from reconnect_wait to reconnect_max, jitter), no
 * reconnect buffer (a publish while disconnected fails at once instead of
 * being replayed after messages that were lost in the dead socket: the
 * export keeps per-key order that way), credentials, TLS. @p c must outlive
 * the options (the delay callback reads it).
 * @return 0 or -EINVAL with @p err set.
 */
static inline int spate_nats_options(const struct spate_nats_conn_cfg *c, natsConnectionHandler on_down,
				     natsConnectionHandler on_up, natsConnectionHandler on_closed,
				     void *closure, natsOptions **out, char *err, size_t errlen)
{
	natsOptions *o = NULL;
	natsStatus s;
	char **srv = NULL;
	int nsrv = 0;

	if (!c->servers || !*c->servers) {
		snprintf(err, errlen, "servers: missing (a list like nats://127.0.0.1:4222)");
		return -EINVAL;
	}
	if (spate_nats_servers(c->servers, &srv, &nsrv) < 0) {
		snprintf(err, errlen, "servers: no server in \"%s\"", c->servers);
		return -EINVAL;
	}
	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetServers(o, (const char **)srv, nsrv);
	if (s == NATS_OK && c->name)
		s = natsOptions_SetName(o, c->name);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	/* With a connected callback, a first connect that fails (no server
	 * up, a refused login or certificate) returns NATS_NOT_YET_CONNECTED
	 * at once and goes on in the background; without one, libnats would
	 * retry inside natsConnection_Connect(), for ever (MaxReconnect -1). */
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(o, true, on_up ? on_up : spate_nats_noop_cb_,
							on_up ? closure : NULL);
	if (s == NATS_OK)
		s = natsOptions_SetCustomReconnectDelay(o, spate_nats_reconnect_delay, (void *)c);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectJitter(o, 100, 1000);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectBufSize(o, 1);
	if (s == NATS_OK && c->timeout_ms > 0)
		s = natsOptions_SetTimeout(o, c->timeout_ms);
	if (s == NATS_OK && (c->user || c->password))
		s = natsOptions_SetUserInfo(o, c->user, c->password);
	if (s == NATS_OK && c->token)
		s = natsOptions_SetToken(o, c->token);
	if (s == NATS_OK && c->creds)
		s = natsOptions_SetUserCredentialsFromFiles(o, c->creds, NULL);
	if (s == NATS_OK && (c->nkey || c->nkey_seed))
		s = c->nkey && c->nkey_seed ? natsOptions_SetNKeyFromSeed(o, c->nkey, c->nkey_seed)
					    : NATS_INVALID_ARG; /* both are needed */
	if (s == NATS_OK && (c->tls || c->tls_ca || c->tls_cert))
		s = natsOptions_SetSecure(o, true);
	if (s == NATS_OK && c->tls_ca)
		s = natsOptions_LoadCATrustedCertificates(o, c->tls_ca);
	if (s == NATS_OK && (c->tls_cert || c->tls_key))
		s = natsOptions_LoadCertificatesChain(o, c->tls_cert, c->tls_key);
	if (s == NATS_OK && on_down)
		s = natsOptions_SetDisconnectedCB(o, on_down, closure);
	if (s == NATS_OK && on_up)
		s = natsOptions_SetReconnectedCB(o, on_up, closure);
	if (s == NATS_OK && on_closed)
		s = natsOptions_SetClosedCB(o, on_closed, closure);
	spate_nats_servers_free(srv, nsrv);
	if (s != NATS_OK) {
		snprintf(err, errlen, "connection options: %s (%s)", natsStatus_GetText(s),
			 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
		natsOptions_Destroy(o);
		return -EINVAL;
	}
	*out = o;
	return 0;
}

/**
 * Close and destroy @p nc, waiting (up to 5 s) until @p closed is set by
 * the connection's closed callback: libnats runs its callbacks on a thread
 * of its own, after natsConnection_Close() returns, and the last one is the
 * closed callback, so once it ran no callback of this connection can touch
 * the caller's state any more (which the caller frees next).
 */
static inline void spate_nats_close(natsConnection *nc, _Atomic int *closed)
{
	if (!nc)
		return;
	natsConnection_Close(nc);
	for (int i = 0; closed && i < 5000; i++) {
		/* Acquire: pairs with the closed callback's release store. */
		if (atomic_load_explicit(closed, memory_order_acquire))
			break;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	natsConnection_Destroy(nc);
}

/**
 * Make sure JetStream stream @p stream exists, storing @p subject (file
 * storage, @p replicas replicas, @p dup_ms duplicate window): created if
 * absent, left as it is if present.
 * @return 0 or -EIO with @p err set.
 */
static inline int spate_nats_ensure_stream(jsCtx *js, const char *stream, const char *subject,
					   int64_t replicas, int64_t dup_ms, char *err,
					   size_t errlen)
{
	jsStreamInfo *si = NULL;
	jsStreamConfig cfg;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);

	if (s == NATS_OK) {
		jsStreamInfo_Destroy(si);
		return 0;
	}
	jsStreamConfig_Init(&cfg);
	cfg.Name = stream;
	cfg.Subjects = &subject;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	cfg.Replicas = replicas > 0 ? replicas : 1;
	if (dup_ms > 0)
		cfg.Duplicates = dup_ms * 1000000;
	jerr = 0;
	s = js_AddStream(&si, js, &cfg, NULL, &jerr);
	if (s != NATS_OK && js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK)
		s = NATS_OK; /* created meanwhile by another client */
	if (s != NATS_OK) {
		snprintf(err, errlen, "JetStream stream %s: create: %s (error %d: %s)", stream,
			 natsStatus_GetText(s), (int)jerr,
			 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
		return -EIO;
	}
	jsStreamInfo_Destroy(si);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Pulling from a JetStream consumer by hand                                */
/* ------------------------------------------------------------------------ */

/*
 * A pull subscriber on plain NATS requests: a synchronous subscription on an
 * inbox of its own, and `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`
 * requests ({"batch": B, "expires": E}) answered into it. Not libnats's
 * natsSubscription_Fetch(): in libnats 3.4.1 a fetch whose earlier request
 * expired with messages on the way reports more messages than the list it
 * allocated holds, and corrupts the heap (seen under ASan). Here every
 * message arrives through one inbox in delivery order, whatever request it
 * answers; a request that expires is just a status message.
 *
 * One request ahead: when a request is over (its batch came, or it ended),
 * the next one goes out before the caller handles what came, so the server
 * fills it while the caller appends and acks: at most two batches in
 * flight, each of the caller's size.
 */
struct spate_nats_pull {
	natsConnection *nc;
	natsSubscription *sub;
	natsInbox *inbox;
	char subj[300];
	int pending;      /* messages the outstanding request may still bring (0: none) */
	int64_t deadline; /* when it expires (nats_Now() ms, + 2 ms of slack) */
};

static inline int spate_nats_pull_open(struct spate_nats_pull *p, natsConnection *nc,
				       const char *stream, const char *consumer)
{
	memset(p, 0, sizeof(*p));
	p->nc = nc;
	snprintf(p->subj, sizeof(p->subj), "$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream, consumer);
	if (natsInbox_Create(&p->inbox) != NATS_OK)
		return -ENOMEM;
	if (natsConnection_SubscribeSync(&p->sub, nc, p->inbox) != NATS_OK) {
		natsInbox_Destroy(p->inbox);
		p->inbox = NULL;
		return -EIO;
	}
	natsSubscription_SetPendingLimits(p->sub, -1, -1);
	return 0;
}

/* Close the pull subscriber. libnats 3.4.1's reader thread looks a
 * message's subscription up, drops the lock, then uses it: destroyed in
 * between (an outstanding request still delivering), it crashes there
 * (nats-io/nats.c#637, fixed in later releases; seen under ASan). So:
 * unsubscribe, then a flush (a PING answered after every message the
 * server sent before it, handled by that same reader thread in order),
 * and only then destroy. */
static inline void spate_nats_pull_close(struct spate_nats_pull *p)
{
	if (p->sub) {
		natsSubscription_Unsubscribe(p->sub);
		natsConnection_FlushTimeout(p->nc, 2000);
		natsSubscription_Destroy(p->sub);
	}
	natsInbox_Destroy(p->inbox);
	memset(p, 0, sizeof(*p));
}

/* Where a message is in its stream and consumer, from its ack subject
 * ($JS.ACK.[<domain>.<account>.]<stream>.<consumer>.<delivered>.<sseq>.
 * <dseq>.<ts>.<pending>[.<token>]). 0, or -EINVAL (not a JetStream message). */
struct spate_nats_meta {
	uint64_t delivered, sseq, dseq, pending;
};

static inline int spate_nats_meta(const natsMsg *m, struct spate_nats_meta *md)
{
	const char *r = natsMsg_GetReply(m), *tok[16];
	int n = 0, off;

	if (!r || strncmp(r, "$JS.ACK.", 8))
		return -EINVAL;
	/* The tokens where they are (one pass, no copy): this runs for every
	 * imported message. */
	r += 8;
	tok[n++] = r;
	for (; *r && n < 16; r++)
		if (*r == '.')
			tok[n++] = r + 1;
	if (n == 7)
		off = 0;
	else if (n >= 9)
		off = 2;
	else
		return -EINVAL;
	md->delivered = strtoull(tok[off + 2], NULL, 10);
	md->sseq = strtoull(tok[off + 3], NULL, 10);
	md->dseq = strtoull(tok[off + 4], NULL, 10);
	md->pending = strtoull(tok[off + 6], NULL, 10);
	return 0;
}

/**
 * Collect up to @p batch messages into @p out from the outstanding request
 * (asking for up to @p batch, answered within @p expires_ms, if none is):
 * returns once its batch came, its end (a status message) came, or its
 * expiry + 2 ms passed; then asks for the next batch before returning.
 * @return the number of messages (0: none), or -EIO (the connection is
 *         down or closed).
 */
static inline int spate_nats_pull_request_(struct spate_nats_pull *p, int batch,
					   int64_t expires_ms)
{
	char req[96];

	snprintf(req, sizeof(req), "{\"batch\":%d,\"expires\":%lld}", batch,
		 (long long)expires_ms * 1000000ll);
	if (natsConnection_PublishRequestString(p->nc, p->subj, p->inbox, req) != NATS_OK) {
		p->pending = 0;
		return -EIO;
	}
	p->pending = batch;
	/* The server ends the request at its expiry, but does not always say
	 * so after a partial batch: stop waiting just after it. Anything it
	 * still sends arrives in the inbox, in order, for the next call. */
	p->deadline = nats_Now() + expires_ms + 2;
	return 0;
}

static inline int spate_nats_pull_fetch(struct spate_nats_pull *p, natsMsg **out, int batch,
					int64_t expires_ms)
{
	int n = 0;

	if (!p->pending && spate_nats_pull_request_(p, batch, expires_ms) < 0)
		return -EIO;
	while (n < batch) {
		natsMsg *m = NULL;
		int64_t left = p->deadline - nats_Now();
		if (left <= 0) {
			p->pending = 0;
			break;
		}
		natsStatus s = natsSubscription_NextMsg(&m, p->sub, left);
		if (s == NATS_TIMEOUT) {
			p->pending = 0;
			break;
		}
		if (s != NATS_OK) {
			p->pending = 0;
			return n ? n : -EIO;
		}
		if (!natsMsg_GetReply(m) || strncmp(natsMsg_GetReply(m), "$JS.ACK.", 8)) {
			/* A status (404 no messages, 408 expired, 409): the
			 * request is over. */
			natsMsg_Destroy(m);
			p->pending = 0;
			break;
		}
		out[n++] = m;
		if (--p->pending == 0)
			break; /* its batch came */
	}
	/* The next request now, answered while the caller handles these (a
	 * failure here shows at the next call, which asks again). */
	if (!p->pending)
		spate_nats_pull_request_(p, batch, expires_ms);
	return n;
}

/* Acknowledge @p m (fire and forget: a lost ack is a redelivery). */
static inline int spate_nats_ack(natsConnection *nc, const natsMsg *m)
{
	return natsConnection_PublishString(nc, natsMsg_GetReply(m), "+ACK") == NATS_OK ? 0 : -EIO;
}

#endif
