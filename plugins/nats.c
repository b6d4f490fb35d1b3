/* SPDX-License-Identifier: MIT */
/*
 * nats.c - the `nats` plugin: exports a stream to NATS JetStream (the sink
 * half of the bridge; engine/sources/nats.c is the import).
 *
 * Design. One state per (consumer, shard, lane), each with its own
 * connection and JetStream context. process() turns every record of the
 * batch into a JetStream message on the subject the `subject` template
 * names ({bus}, {stream}, {shard}, {key}), with headers for the Kinesis
 * sequence number, shard id, partition key and commit time, and
 * Nats-Msg-Id = <bus>/<stream>/<shard>/<seq>, so that JetStream's duplicate
 * window drops what a retry or a restart publishes again. Messages go out
 * asynchronously (js_PublishMsgAsync) with at most `window` acks pending;
 * the call then waits for every ack (up to `ack_timeout`), and reports the
 * batch done only up to its first record JetStream did not acknowledge
 * (SPATE_BATCH_PARTIAL there, RETRY if the first): the engine's checkpoint
 * moves only past acknowledged records, and the rest is retried under the
 * consumer's retries/back-off/on_failure. A NATS outage is back pressure:
 * publishes fail or go unacknowledged, the batch is retried, nothing is
 * lost, and lag grows in the stream (which holds it, or its log does).
 *
 * Order per key. After the first failed publish of a batch, nothing more of
 * it is published (the rest could land before a lost record: out of
 * order); libnats's reconnect buffer is off (nats_conn.h) so a message is
 * never replayed after one that died in a broken socket. A record whose
 * fate is unknown (no ack) is published again from the retry in order, and
 * JetStream drops it as a duplicate if it had been stored. docs/scale-out.md
 * argues this step by step, and names the one window it leaves (a new
 * stream leader elected between two publishes of one batch while an
 * earlier message of it was lost in flight).
 *
 * Options (consumer `options:`):
 *   servers: LIST           nats://host:port,... (required)
 *   subject: TEMPLATE       default spate.{bus}.{stream}.{shard}
 *   bus: NAME               the bus in ids (default: $SPATE_BUS, set by spate run)
 *   jetstream_stream: NAME  expected stream (and created if create: true)
 *   create: BOOL            create jetstream_stream if absent (default false)
 *   replicas: N             its replicas when created (default 1)
 *   window: N               pending acks at most (default 4096)
 *   ack_timeout: MS         wait for the acks of a batch (default 5000)
 *   user, password, token, nkey, nkey_seed, creds, tls, tls_ca, tls_cert,
 *   tls_key, reconnect_wait_ms, reconnect_max_ms: nats_conn.h
 *
 * Limits. One connection per shard and lane (parallelization > 1 keeps
 * several batches of a shard in flight; each key stays on its lane). The Nats-Msg-Id names the
 * ring sequence: a stream deleted and re-created under the same name
 * within the duplicate window (2 min by default) would have its first
 * records dropped as duplicates; the Spate-Sequence header (with the
 * stream's incarnation) tells them apart for readers.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spate/kinesis.h"
#include "spate/plugin.h"
#include "spate/stream.h"

#include "plugins/nats_conn.h"
#include "plugins/plugin_util.h"

struct nstate {
	const struct spate_plugin_host *host;
	struct spate_nats_conn_cfg cc;
	char *opt_strs[24];        /* copies of option strings cc points at */
	unsigned nstrs;
	natsConnection *nc;
	jsCtx *js;
	char bus[64], stream[64];
	uint32_t shard;
	uint64_t incarnation;
	char *subject_tmpl;
	const char *js_stream;     /* expected stream, or NULL */
	int64_t ack_timeout_ms;
	/* The batch in flight (the ack handler's view): under lock. */
	pthread_mutex_t lock;
	uint64_t *seqs;            /* [count]: the batch's ring sequences, ascending (a
				      lane's records are not consecutive) */
	uint32_t count;
	uint8_t *acked;            /* [count]: 1 acked, 2 failed */
	uint32_t cap;
	bool failed;               /* a publish of this batch failed: stop */
	char error[160];
	_Atomic uint64_t downs;    /* disconnections seen */
};

static const char *keep(struct nstate *s, const char *v)
{
	if (!v || s->nstrs == sizeof(s->opt_strs) / sizeof(s->opt_strs[0]))
		return NULL;
	return s->opt_strs[s->nstrs++] = strdup(v);
}

static void on_down(natsConnection *nc, void *closure)
{
	struct nstate *s = closure;

	(void)nc;
	/* Relaxed: a counter for the log line. */
	atomic_fetch_add_explicit(&s->downs, 1, memory_order_relaxed);
	pu_log(s->host, SPATE_LOG_WARN, "nats: disconnected from the cluster: reconnecting");
}

static void on_up(natsConnection *nc, void *closure)
{
	struct nstate *s = closure;
	char url[256] = "";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	pu_log(s->host, SPATE_LOG_INFO, "nats: reconnected to %s", url);
}

/* Index of the record @p msg carries in the batch, from its Nats-Msg-Id
 * (".../<seq>"), or -1 (a late ack of an earlier batch). Under lock. */
static int64_t index_of(struct nstate *s, natsMsg *msg)
{
	const char *id = NULL, *slash;
	uint64_t seq;

	if (natsMsgHeader_Get(msg, SPATE_NATS_H_MSGID, &id) != NATS_OK || !id ||
	    !(slash = strrchr(id, '/')))
		return -1;
	seq = strtoull(slash + 1, NULL, 10);
	for (uint32_t lo = 0, hi = s->count; lo < hi;) { /* the batch is in seq order */
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->seqs[mid] == seq)
			return mid;
		if (s->seqs[mid] < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct nstate *s = closure;

	(void)js;
	pthread_mutex_lock(&s->lock);
	int64_t i = index_of(s, msg);
	if (i >= 0) {
		if (pa) {
			s->acked[i] = 1;
		} else {
			s->acked[i] = 2;
			s->failed = true;
			snprintf(s->error, sizeof(s->error), "publish: %s (JetStream error %d: %s)",
				 pae ? natsStatus_GetText(pae->Err) : "?", pae ? (int)pae->ErrCode : 0,
				 pae && pae->ErrText ? pae->ErrText : "");
		}
	}
	pthread_mutex_unlock(&s->lock);
	natsMsg_Destroy(msg);
}

/* Expand the subject template for record (key @p key). Keys are sanitised
 * to a subject token ('.', '*', '>', spaces and controls become '_'). */
static int subject_of(const struct nstate *s, const void *key, size_t klen, char *out, size_t len)
{
	size_t o = 0;

	for (const char *p = s->subject_tmpl; *p; p++) {
		char tmp[64];
		const char *v = NULL;
		size_t vl = 0;
		if (*p == '{') {
			const char *e = strchr(p, '}');
			if (!e)
				return -EINVAL;
			size_t n = (size_t)(e - p - 1);
			if (n == 3 && !memcmp(p + 1, "bus", 3))
				v = s->bus;
			else if (n == 6 && !memcmp(p + 1, "stream", 6))
				v = s->stream;
			else if (n == 5 && !memcmp(p + 1, "shard", 5)) {
				snprintf(tmp, sizeof(tmp), "%u", s->shard);
				v = tmp;
			} else if (n == 3 && !memcmp(p + 1, "key", 3)) {
				v = key;
				vl = klen;
			} else
				return -EINVAL;
			if (!vl)
				vl = strlen(v);
			for (size_t i = 0; i < vl && o + 1 < len; i++) {
				unsigned char c = (unsigned char)v[i];
				out[o++] = (c <= ' ' || c == '.' || c == '*' || c == '>' || c == 0x7f)
						   ? '_' : (char)c;
			}
			p = e;
			continue;
		}
		if (o + 1 < len)
			out[o++] = *p;
	}
	if (o + 1 >= len)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return 0;
}

static void nstate_free(struct nstate *s)
{
	if (s->js)
		jsCtx_Destroy(s->js);
	if (s->nc) {
		natsConnection_Close(s->nc);
		natsConnection_Destroy(s->nc);
	}
	for (unsigned i = 0; i < s->nstrs; i++)
		free(s->opt_strs[i]);
	free(s->subject_tmpl);
	free(s->acked);
	free(s->seqs);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int nats_init(const struct spate_plugin_ctx *ctx, void **state)
{
	struct nstate *s = calloc(1, sizeof(*s));
	natsOptions *o = NULL;
	jsOptions jo;
	natsStatus st;
	char err[400];
	uint64_t window, ackt, rw, rmax, replicas;
	int create, tls;
	const char *bus;

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->host = ctx->host;
	s->shard = ctx->shard;
	bus = spate_plugin_opt(ctx, "bus", getenv("SPATE_BUS"));
	if (!bus || !*bus) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "nats: option bus: missing (spate run sets $SPATE_BUS)");
		goto fail;
	}
	snprintf(s->bus, sizeof(s->bus), "%s", bus);
	snprintf(s->stream, sizeof(s->stream), "%s", ctx->stream);
	s->subject_tmpl = strdup(spate_plugin_opt(ctx, "subject", "spate.{bus}.{stream}.{shard}"));
	if (!s->subject_tmpl)
		goto fail;
	char probe[512];
	if (subject_of(s, "k", 1, probe, sizeof(probe)) < 0) {
		pu_log(ctx->host, SPATE_LOG_ERROR,
		       "nats: option subject: \"%s\" (placeholders: {bus} {stream} {shard} {key})",
		       s->subject_tmpl);
		goto fail;
	}
	if (pu_opt_u64(ctx, "nats", "window", 4096, &window) < 0 ||
	    pu_opt_u64(ctx, "nats", "ack_timeout", 5000, &ackt) < 0 ||
	    pu_opt_u64(ctx, "nats", "reconnect_wait_ms", 100, &rw) < 0 ||
	    pu_opt_u64(ctx, "nats", "reconnect_max_ms", 2000, &rmax) < 0 ||
	    pu_opt_u64(ctx, "nats", "replicas", 1, &replicas) < 0 ||
	    pu_opt_bool(ctx, "nats", "create", 0, &create) < 0 ||
	    pu_opt_bool(ctx, "nats", "tls", 0, &tls) < 0)
		goto fail;
	if (window < 1 || window > 1000000 || ackt < 1) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "nats: window must be 1..1000000, ack_timeout >= 1");
		goto fail;
	}
	s->ack_timeout_ms = (int64_t)ackt;
	s->cc.servers = keep(s, spate_plugin_opt(ctx, "servers", NULL));
	s->cc.user = keep(s, spate_plugin_opt(ctx, "user", NULL));
	s->cc.password = keep(s, spate_plugin_opt(ctx, "password", NULL));
	s->cc.token = keep(s, spate_plugin_opt(ctx, "token", NULL));
	s->cc.nkey = keep(s, spate_plugin_opt(ctx, "nkey", NULL));
	s->cc.nkey_seed = keep(s, spate_plugin_opt(ctx, "nkey_seed", NULL));
	s->cc.creds = keep(s, spate_plugin_opt(ctx, "creds", NULL));
	s->cc.tls_ca = keep(s, spate_plugin_opt(ctx, "tls_ca", NULL));
	s->cc.tls_cert = keep(s, spate_plugin_opt(ctx, "tls_cert", NULL));
	s->cc.tls_key = keep(s, spate_plugin_opt(ctx, "tls_key", NULL));
	s->js_stream = keep(s, spate_plugin_opt(ctx, "jetstream_stream", NULL));
	s->cc.tls = tls;
	s->cc.reconnect_wait_ms = (int64_t)rw;
	s->cc.reconnect_max_ms = (int64_t)rmax;
	s->cc.timeout_ms = 2000;
	char name[128];
	snprintf(name, sizeof(name), "spate-%s-%s-%s-%u", s->bus, ctx->consumer, ctx->stream,
		 ctx->shard);
	s->cc.name = keep(s, name);
	if (spate_nats_options(&s->cc, on_down, on_up, s, &o, err, sizeof(err)) < 0) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "nats: %s", err);
		goto fail;
	}
	st = natsConnection_Connect(&s->nc, o);
	natsOptions_Destroy(o);
	if (st != NATS_OK && st != NATS_NOT_YET_CONNECTED) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "nats: connect %s: %s", s->cc.servers,
		       natsStatus_GetText(st));
		goto fail;
	}
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = (int64_t)window;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.AckHandlerClosure = s;
	jo.PublishAsync.StallWait = 1000;
	jo.Wait = (int64_t)ackt;
	st = natsConnection_JetStream(&s->js, s->nc, &jo);
	if (st != NATS_OK) {
		pu_log(ctx->host, SPATE_LOG_ERROR, "nats: JetStream context: %s", natsStatus_GetText(st));
		goto fail;
	}
	if (create && s->js_stream) {
		char subj[512];
		/* The subjects the template can produce: its text up to the
		 * first placeholder's token, then ">". */
		const char *brace = strchr(s->subject_tmpl, '{');
		size_t pre = brace ? (size_t)(brace - s->subject_tmpl) : strlen(s->subject_tmpl);
		if (brace)
			snprintf(subj, sizeof(subj), "%.*s>", (int)pre, s->subject_tmpl);
		else
			snprintf(subj, sizeof(subj), "%s", s->subject_tmpl);
		if (spate_nats_ensure_stream(s->js, s->js_stream, subj, (int64_t)replicas, 0, err,
					     sizeof(err)) < 0) {
			pu_log(ctx->host, SPATE_LOG_ERROR, "nats: %s", err);
			goto fail;
		}
	}
	/* The stream's incarnation, for the 42-digit sequence numbers. */
	struct spate_stream *ss = NULL;
	if (spate_stream_attach(s->bus, ctx->stream, &ss) == 0) {
		s->incarnation = spate_stream_incarnation(ss);
		spate_stream_close(ss);
	}
	*state = s;
	return 0;
fail:
	nstate_free(s);
	return -EINVAL;
}

/* Make room for a batch of @p n records. */
static int batch_begin(struct nstate *s, const struct spate_batch *b)
{
	pthread_mutex_lock(&s->lock);
	if (b->count > s->cap) {
		uint8_t *a = realloc(s->acked, b->count);
		uint64_t *q = a ? realloc(s->seqs, b->count * sizeof(*q)) : NULL;
		if (a)
			s->acked = a;
		if (!q) {
			pthread_mutex_unlock(&s->lock);
			return -ENOMEM;
		}
		s->seqs = q;
		s->cap = b->count;
	}
	memset(s->acked, 0, b->count);
	for (uint32_t i = 0; i < b->count; i++)
		s->seqs[i] = b->recs[i].seq;
	s->count = b->count;
	s->failed = false;
	s->error[0] = '\0';
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static natsStatus publish_one(struct nstate *s, const struct spate_ring_rec *r)
{
	struct spate_kinesis_view v;
	char subj[512], id[160], seqs[SPATE_KINESIS_SEQ_LEN + 1], shard[SPATE_KINESIS_SHARD_ID_LEN + 1];
	char ts[24], keyh[2 * SPATE_KINESIS_KEY_MAX + 8];
	natsMsg *m = NULL;
	jsPubOptions po;
	natsStatus st;

	spate_kinesis_view(r, &v);
	if (subject_of(s, v.key, v.key_len, subj, sizeof(subj)) < 0)
		return NATS_INVALID_SUBJECT;
	st = natsMsg_Create(&m, subj, NULL, v.data, (int)v.len);
	if (st != NATS_OK)
		return st;
	snprintf(id, sizeof(id), "%s/%s/%u/%" PRIu64, s->bus, s->stream, s->shard, r->seq);
	spate_kinesis_seq_format(s->incarnation, r->seq, seqs);
	spate_kinesis_shard_id(s->shard, shard);
	snprintf(ts, sizeof(ts), "%" PRIu64, r->ts);
	/* A header value is one text line: a key with control bytes goes as
	 * "hex:" and its bytes in hex. */
	bool text = true;
	for (size_t i = 0; i < v.key_len; i++) {
		unsigned char c = ((const unsigned char *)v.key)[i];
		if (c < 0x20 || c == 0x7f)
			text = false;
	}
	if (text) {
		snprintf(keyh, sizeof(keyh), "%.*s", (int)v.key_len, (const char *)v.key);
	} else {
		size_t o = (size_t)snprintf(keyh, sizeof(keyh), "hex:");
		for (size_t i = 0; i < v.key_len && o + 3 < sizeof(keyh); i++)
			o += (size_t)snprintf(keyh + o, sizeof(keyh) - o, "%02x",
					      ((const unsigned char *)v.key)[i]);
	}
	if ((st = natsMsgHeader_Set(m, SPATE_NATS_H_MSGID, id)) != NATS_OK ||
	    (st = natsMsgHeader_Set(m, SPATE_NATS_H_SEQ, seqs)) != NATS_OK ||
	    (st = natsMsgHeader_Set(m, SPATE_NATS_H_SHARD, shard)) != NATS_OK ||
	    (st = natsMsgHeader_Set(m, SPATE_NATS_H_KEY, keyh)) != NATS_OK ||
	    (st = natsMsgHeader_Set(m, SPATE_NATS_H_TS, ts)) != NATS_OK) {
		natsMsg_Destroy(m);
		return st;
	}
	jsPubOptions_Init(&po);
	po.MsgId = id;
	po.ExpectStream = s->js_stream;
	st = js_PublishMsgAsync(s->js, &m, &po);
	if (st != NATS_OK)
		natsMsg_Destroy(m); /* NULL-safe: the library took it if it nulled m */
	return st;
}

static int nats_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	struct nstate *s = state;
	jsPubOptions po;
	natsStatus st = NATS_OK;
	uint32_t sent = 0, done = 0;

	if (b->count == 0) {
		res->status = SPATE_BATCH_OK;
		return 0;
	}
	if (batch_begin(s, b) < 0)
		return -ENOMEM;
	for (; sent < b->count; sent++) {
		pthread_mutex_lock(&s->lock);
		bool stop = s->failed;
		pthread_mutex_unlock(&s->lock);
		if (stop)
			break;
		st = publish_one(s, &b->recs[sent]);
		if (st != NATS_OK)
			break;
	}
	jsPubOptions_Init(&po);
	po.MaxWait = s->ack_timeout_ms;
	if (js_PublishAsyncComplete(s->js, &po) != NATS_OK) {
		/* Unacknowledged: given up (their fate is unknown; a retry
		 * publishes them again under the same ids). */
		natsMsgList pend = { 0 };
		if (js_PublishAsyncGetPendingList(&pend, s->js) == NATS_OK)
			natsMsgList_Destroy(&pend);
	}
	pthread_mutex_lock(&s->lock);
	while (done < sent && s->acked[done] == 1)
		done++;
	if (done < b->count && !s->error[0])
		snprintf(s->error, sizeof(s->error), "%s",
			 st != NATS_OK ? natsStatus_GetText(st)
				       : "JetStream did not acknowledge in time");
	s->count = 0; /* late acks of this batch are ignored from now on */
	snprintf(res->error, sizeof(res->error), "nats: %s", s->error);
	pthread_mutex_unlock(&s->lock);
	if (done == b->count) {
		res->status = SPATE_BATCH_OK;
		res->error[0] = '\0';
	} else if (done == 0) {
		res->status = SPATE_BATCH_RETRY;
	} else {
		res->status = SPATE_BATCH_PARTIAL;
		res->failed_index = done;
	}
	return 0;
}

static void nats_fini(void *state)
{
	nstate_free(state);
}

SPATE_PLUGIN_DEFINE(.name = "nats", .version = "1.0", .init = nats_init, .process = nats_process,
		    .fini = nats_fini);
