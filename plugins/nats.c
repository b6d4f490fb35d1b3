/* SPDX-License-Identifier: MIT */
/*
 * nats.c - the `nats` plugin: exports a stream to NATS JetStream (the sink
 * half of the bridge; engine/sources/nats.c is the import).
 *
 * Design. One state per (consumer, shard, lane), each with its own
 * connection and JetStream context. process() turns every record of the
 * batch into a JetStream message on the subject the `subject` template
 * names ({bus}, {stream}, {shard}, {key}), with two headers:
 * Nats-Msg-Id = <bus>/<stream>/<shard>/<seq>, so that JetStream's duplicate
 * window drops what a retry or a restart publishes again, and Spate-Record
 * = "<Kinesis sequence number> <shard id> <commit time> <partition key>"
 * (nats_conn.h; one header for the four: a reader's cost grows with the
 * number of headers, libnats parsing all of them on the first access). Messages go out
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
 * Cost per record. The headers and the message are libnats's (one natsMsg
 * per record, as any libnats publisher); what is the plugin's is kept out
 * of the loop: the subject is expanded once per state unless the template
 * has {key}, the id prefix and the shard id are formatted once, the
 * expected stream is checked on the ack (pa->Stream) rather than sent as a
 * Nats-Expected-Stream header with every message, and the publish loop
 * reads the batch's failure flag without a lock.
 *
 * State (the consumer's status slot, spate/plugin.h revision 3, shared by
 * its shards and lanes: `spate stat/top`, Prometheus spate_source_up /
 * spate_source_value{type="consumer:nats"}): up/down and the last error;
 * connected (connections up), published, acked, pending_acks, redeliveries
 * (records published again by a retry), duplicates (JetStream's duplicate
 * window dropped them), failed, unacked (given up at ack_timeout),
 * disconnects, lag (records of the stream past the last batch each
 * shard's lane 0 finished, summed over shards).
 *
 * Options (consumer `options:`):
 *   servers: LIST           nats://host:port,... (required)
 *   subject: TEMPLATE       default spate.{bus}.{stream}.{shard}
 *   bus: NAME               the bus in ids (default: $SPATE_BUS, set by spate run)
 *   jetstream_stream: NAME  expected stream, checked on every ack (and created
 *                           if create: true)
 *   create: BOOL            create jetstream_stream if absent (default false)
 *   replicas: N             its replicas when created (default 1)
 *   window: N               pending acks at most (default 4096)
 *   format: headers|envelope the payload: the record's data (default), or
 *                           the record as a keyed envelope, for a spate
 *                           import with the same format (nats_conn.h)
 *   ack_timeout: MS         wait for the acks of a batch (default 5000)
 *   user, password, token, nkey, nkey_seed, creds, tls, tls_ca, tls_cert,
 *   tls_key, reconnect_wait_ms, reconnect_max_ms: nats_conn.h
 *
 * Limits. One connection per shard and lane (parallelization > 1 keeps
 * several batches of a shard in flight; each key stays on its lane). The Nats-Msg-Id names the
 * ring sequence: a stream deleted and re-created under the same name
 * within the duplicate window (2 min by default) would have its first
 * records dropped as duplicates; the sequence number in Spate-Record
 * (with the stream's incarnation) tells them apart for readers.
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
#include "spate/ring.h"
#include "spate/stream.h"

#include "plugins/nats_conn.h"
#include "plugins/plugin_util.h"

/* Figures of the status slot. */
enum { G_CONNECTED, G_PUBLISHED, G_ACKED, G_PENDING, G_REDELIVERED, G_DUPLICATES, G_FAILED,
       G_UNACKED, G_DISCONNECTS, G_LAG, G_N };
static const char *const gauge_names[G_N] = {
	"connected", "published", "acked", "pending_acks", "redeliveries", "duplicates",
	"failed", "unacked", "disconnects", "lag",
};

struct nstate {
	const struct spate_plugin_host *host;
	struct spate_nats_conn_cfg cc;
	char *opt_strs[24];        /* copies of option strings cc points at */
	unsigned nstrs;
	natsConnection *nc;
	jsCtx *js;
	char bus[64], stream[64];
	uint32_t shard, lane;
	uint64_t incarnation;
	char *subject_tmpl;
	char *subject_fixed;       /* the subject, when the template has no {key} */
	char id_prefix[160];       /* "<bus>/<stream>/<shard>/" */
	size_t id_prefix_len;
	char shard_id[SPATE_KINESIS_SHARD_ID_LEN + 1];
	bool gauges;               /* the host has a status slot */
	bool up;                   /* counted in G_CONNECTED (under lock) */
	struct spate_stream *ss;   /* for the lag (lane 0), or NULL */
	uint64_t lag;              /* this state's part of G_LAG */
	const char *js_stream;     /* expected stream, or NULL */
	int64_t ack_timeout_ms;
	int64_t window;
	int format;                /* SPATE_NATS_FORMAT_* */
	uint8_t *env;              /* a keyed envelope being built (format envelope) */
	size_t env_cap;
	/* The batch in flight (the ack handler's view): under lock. */
	pthread_mutex_t lock;
	uint64_t *seqs;            /* [count]: the batch's ring sequences, ascending (a
				      lane's records are not consecutive) */
	uint32_t count;
	uint8_t *acked;            /* [count]: 1 acked, 2 failed */
	uint32_t cap;
	_Atomic bool failed;       /* a publish of this batch failed: stop (written
				      under lock; the publish loop reads it without) */
	char error[160];
	_Atomic uint64_t downs;    /* disconnections seen */
	_Atomic int closed;        /* the connection's closed callback ran */
	_Atomic int closing;       /* we close it (fini, reconnect): no error to show */
};

static const char *keep(struct nstate *s, const char *v)
{
	if (!v || s->nstrs == sizeof(s->opt_strs) / sizeof(s->opt_strs[0]))
		return NULL;
	return s->opt_strs[s->nstrs++] = strdup(v);
}

static void gauge_add(struct nstate *s, uint32_t i, int64_t d)
{
	if (s->gauges && d)
		s->host->gauge_add(s->host, i, d);
}

static void status(struct nstate *s, int state, const char *error)
{
	if (s->gauges)
		s->host->status(s->host, state, error);
}

/* Count this state's connection in or out of G_CONNECTED (once each way). */
static void set_up(struct nstate *s, bool up)
{
	pthread_mutex_lock(&s->lock);
	bool was = s->up;
	s->up = up;
	pthread_mutex_unlock(&s->lock);
	if (was != up)
		gauge_add(s, G_CONNECTED, up ? 1 : -1);
}

static void on_closed(natsConnection *nc, void *closure)
{
	struct nstate *s = closure;

	const char *why = NULL;
	natsStatus e = natsConnection_GetLastError(nc, &why);
	set_up(s, false);
	if (e != NATS_OK && !atomic_load_explicit(&s->closing, memory_order_relaxed)) {
		/* Given up by libnats (a refusal): its reason. Relaxed: a
		 * display choice; process() connects again. */
		char t[200];
		snprintf(t, sizeof(t), "connection closed: %s%s%s", natsStatus_GetText(e),
			 why && *why ? ": " : "", why ? why : "");
		status(s, SPATE_PLUGIN_STATUS_DOWN, t);
	}
	/* Release: pairs with spate_nats_close()'s acquire load. */
	atomic_store_explicit(&s->closed, 1, memory_order_release);
}

static void on_down(natsConnection *nc, void *closure)
{
	struct nstate *s = closure;

	if (natsConnection_IsClosed(nc))
		return; /* our own close */
	/* Relaxed: a counter for the log line. */
	atomic_fetch_add_explicit(&s->downs, 1, memory_order_relaxed);
	set_up(s, false);
	gauge_add(s, G_DISCONNECTS, 1);
	status(s, SPATE_PLUGIN_STATUS_DOWN, "disconnected: reconnecting");
	pu_log(s->host, SPATE_LOG_WARN, "nats: disconnected from the cluster: reconnecting");
}

static void on_up(natsConnection *nc, void *closure)
{
	struct nstate *s = closure;
	char url[256] = "";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	set_up(s, true);
	status(s, SPATE_PLUGIN_STATUS_UP, "");
	pu_log(s->host, SPATE_LOG_INFO, "nats: reconnected to %s", url);
}

/* Asynchronous errors (a refused reconnect, a permission): the last error. */
static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	struct nstate *s = closure;
	const char *text = NULL;
	char e[200];

	(void)sub;
	natsConnection_GetLastError(nc, &text);
	snprintf(e, sizeof(e), "%s%s%s", natsStatus_GetText(err), text && *text ? ": " : "",
		 text ? text : "");
	status(s, SPATE_PLUGIN_STATUS_KEEP, e);
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
	/* The expected stream, checked here rather than sent with every
	 * message (Nats-Expected-Stream): a publish stored elsewhere fails. */
	bool wrong = pa && s->js_stream && (!pa->Stream || strcmp(pa->Stream, s->js_stream));
	pthread_mutex_lock(&s->lock);
	int64_t i = index_of(s, msg);
	if (i >= 0) {
		if (pa && !wrong) {
			s->acked[i] = 1;
		} else {
			s->acked[i] = 2;
			/* Relaxed: the publish loop's stop hint; the lock orders
			 * the rest. */
			atomic_store_explicit(&s->failed, true, memory_order_relaxed);
			if (wrong)
				snprintf(s->error, sizeof(s->error),
					 "publish: stored in JetStream stream %s, not %s (subject %s)",
					 pa->Stream ? pa->Stream : "?", s->js_stream,
					 natsMsg_GetSubject(msg));
			else
				snprintf(s->error, sizeof(s->error),
					 "publish: %s (JetStream error %d: %s)",
					 pae ? natsStatus_GetText(pae->Err) : "?",
					 pae ? (int)pae->ErrCode : 0,
					 pae && pae->ErrText ? pae->ErrText : "");
		}
	}
	pthread_mutex_unlock(&s->lock);
	gauge_add(s, G_PENDING, -1);
	if (pa && !wrong) {
		gauge_add(s, G_ACKED, 1);
		if (pa->Duplicate)
			gauge_add(s, G_DUPLICATES, 1);
	} else {
		gauge_add(s, G_FAILED, 1);
	}
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
	/* Relaxed: read by the closed callback, which this close runs. */
	atomic_store_explicit(&s->closing, 1, memory_order_relaxed);
	spate_nats_close(s->nc, &s->closed);
	gauge_add(s, G_LAG, -(int64_t)s->lag);
	if (s->ss)
		spate_stream_close(s->ss);
	free(s->subject_fixed);
	for (unsigned i = 0; i < s->nstrs; i++)
		free(s->opt_strs[i]);
	free(s->subject_tmpl);
	free(s->env);
	free(s->acked);
	free(s->seqs);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Connect (or connect again, after libnats gave a connection up) and make
 * the JetStream context. A first connect that fails goes on in the
 * background (nats_conn.h): the state is down, with the reason. 0 or
 * -EINVAL (bad options, no memory; logged). */
static int connect_js(struct nstate *s)
{
	natsOptions *o = NULL;
	jsOptions jo;
	natsStatus st;
	char err[400];

	if (s->js)
		jsCtx_Destroy(s->js);
	s->js = NULL;
	if (s->nc) {
		/* Relaxed: read by the closed callback, which this close runs. */
		atomic_store_explicit(&s->closing, 1, memory_order_relaxed);
		spate_nats_close(s->nc, &s->closed);
		s->nc = NULL;
		atomic_store_explicit(&s->closing, 0, memory_order_relaxed);
	}
	/* Relaxed: no callback of the old connection runs any more (its
	 * closed callback ran), none of the new one yet. */
	atomic_store_explicit(&s->closed, 0, memory_order_relaxed);
	if (spate_nats_options(&s->cc, on_down, on_up, on_closed, s, &o, err, sizeof(err)) < 0) {
		pu_log(s->host, SPATE_LOG_ERROR, "nats: %s", err);
		return -EINVAL;
	}
	natsOptions_SetErrorHandler(o, on_error, s);
	st = natsConnection_Connect(&s->nc, o);
	natsOptions_Destroy(o);
	if (st != NATS_OK && st != NATS_NOT_YET_CONNECTED) {
		char e[200];
		snprintf(e, sizeof(e), "connect %s: %s", s->cc.servers, natsStatus_GetText(st));
		status(s, SPATE_PLUGIN_STATUS_FAILED, e);
		pu_log(s->host, SPATE_LOG_ERROR, "nats: %s", e);
		return -EINVAL;
	}
	if (st == NATS_OK) {
		set_up(s, true);
		status(s, SPATE_PLUGIN_STATUS_UP, "");
	} else {
		char e[200];
		const char *why = nats_GetLastError(NULL);
		snprintf(e, sizeof(e), "not connected (retrying)%s%s", why && *why ? ": " : "",
			 why ? why : "");
		status(s, SPATE_PLUGIN_STATUS_DOWN, why && *why ? e : NULL);
		pu_log(s->host, SPATE_LOG_WARN, "nats: %s", e);
	}
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = s->window;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.AckHandlerClosure = s;
	jo.PublishAsync.StallWait = 1000;
	jo.Wait = s->ack_timeout_ms;
	st = natsConnection_JetStream(&s->js, s->nc, &jo);
	if (st != NATS_OK) {
		pu_log(s->host, SPATE_LOG_ERROR, "nats: JetStream context: %s", natsStatus_GetText(st));
		return -EINVAL;
	}
	return 0;
}

static int nats_init(const struct spate_plugin_ctx *ctx, void **state)
{
	struct nstate *s = calloc(1, sizeof(*s));
	char err[400];
	uint64_t window, ackt, rw, rmax, replicas;
	int create, tls;
	const char *bus;

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->host = ctx->host;
	s->shard = ctx->shard;
	s->lane = ctx->lane;
	s->gauges = SPATE_PLUGIN_HAS(ctx->host, gauge_set) && ctx->host->status &&
		    ctx->host->gauge_name && ctx->host->gauge_add && ctx->host->gauge_set;
	for (uint32_t i = 0; s->gauges && i < G_N; i++)
		if (ctx->host->gauge_name(ctx->host, i, gauge_names[i]) < 0)
			s->gauges = false; /* the slot is another's: no figures */
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
	if (!strstr(s->subject_tmpl, "{key}") && !(s->subject_fixed = strdup(probe)))
		goto fail;
	s->id_prefix_len = (size_t)snprintf(s->id_prefix, sizeof(s->id_prefix), "%s/%s/%u/",
					    s->bus, s->stream, s->shard);
	spate_kinesis_shard_id(s->shard, s->shard_id);
	if (pu_opt_u64(ctx, "nats", "window", 4096, &window) < 0 ||
	    pu_opt_u64(ctx, "nats", "ack_timeout", 5000, &ackt) < 0 ||
	    pu_opt_u64(ctx, "nats", "reconnect_wait_ms", 100, &rw) < 0 ||
	    pu_opt_u64(ctx, "nats", "reconnect_max_ms", 2000, &rmax) < 0 ||
	    pu_opt_u64(ctx, "nats", "replicas", 1, &replicas) < 0 ||
	    pu_opt_bool(ctx, "nats", "create", 0, &create) < 0 ||
	    pu_opt_bool(ctx, "nats", "tls", 0, &tls) < 0 ||
	    pu_opt_enum(ctx, "nats", "format", spate_nats_format_names, SPATE_NATS_FORMAT_HEADERS,
			&s->format) < 0)
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
	s->window = (int64_t)window;
	status(s, SPATE_PLUGIN_STATUS_STARTING, NULL);
	if (connect_js(s) < 0)
		goto fail;
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
	if (spate_stream_attach(s->bus, ctx->stream, &s->ss) == 0) {
		s->incarnation = spate_stream_incarnation(s->ss);
		if (s->lane != 0 || !s->gauges) { /* lane 0 tells the shard's lag */
			spate_stream_close(s->ss);
			s->ss = NULL;
		}
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
	/* Relaxed: under lock; the publish loop runs after it on this thread. */
	atomic_store_explicit(&s->failed, false, memory_order_relaxed);
	s->error[0] = '\0';
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* @p v in decimal at @p out (at least 21 bytes), NUL-terminated. */
static void u64_text(uint64_t v, char *out)
{
	char tmp[21];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (int i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
}

static natsStatus publish_one(struct nstate *s, const struct spate_ring_rec *r)
{
	struct spate_kinesis_view v;
	char subj[512], id[200], seqs[SPATE_KINESIS_SEQ_LEN + 1], rec[SPATE_NATS_RECORD_MAX];
	const char *subject = s->subject_fixed;
	natsMsg *m = NULL;
	jsPubOptions po;
	natsStatus st;

	spate_kinesis_view(r, &v);
	if (!subject) {
		if (subject_of(s, v.key, v.key_len, subj, sizeof(subj)) < 0)
			return NATS_INVALID_SUBJECT;
		subject = subj;
	}
	const void *pl = v.data;
	size_t plen = v.len;
	if (s->format == SPATE_NATS_FORMAT_ENVELOPE) {
		if (r->type == SPATE_RECORD_TYPE_KEYED) {
			pl = r->data; /* already one, in the ring */
			plen = r->len;
		} else {
			size_t need = SPATE_KINESIS_KEYED_LEN(v.key_len, v.len);
			if (need > s->env_cap) {
				uint8_t *e = realloc(s->env, need);
				if (!e)
					return NATS_NO_MEMORY;
				s->env = e;
				s->env_cap = need;
			}
			int64_t el = spate_kinesis_keyed_encode(s->env, need, v.key, v.key_len, v.data,
								v.len);
			if (el < 0)
				return NATS_INVALID_ARG;
			pl = s->env;
			plen = (size_t)el;
		}
	}
	st = natsMsg_Create(&m, subject, NULL, pl, (int)plen);
	if (st != NATS_OK)
		return st;
	memcpy(id, s->id_prefix, s->id_prefix_len);
	u64_text(r->seq, id + s->id_prefix_len);
	spate_kinesis_seq_format(s->incarnation, r->seq, seqs);
	/* One header besides the id (nats_conn.h): what a reader pays for
	 * grows with the number of headers. */
	spate_nats_record_value(rec, seqs, s->shard_id, r->ts, v.key, v.key_len);
	if ((st = natsMsgHeader_Set(m, SPATE_NATS_H_RECORD, rec)) != NATS_OK) {
		natsMsg_Destroy(m);
		return st;
	}
	jsPubOptions_Init(&po);
	po.MsgId = id; /* libnats writes the Nats-Msg-Id header */
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
	/* libnats gives a connection up for good on some refusals (the same
	 * authorization error twice): connect again, with back-off from the
	 * retries of the batch. */
	if (natsConnection_IsClosed(s->nc) && connect_js(s) < 0)
		return -EIO;
	if (batch_begin(s, b) < 0)
		return -ENOMEM;
	for (; sent < b->count; sent++) {
		/* Relaxed: a stop hint from the ack handler; a publish that
		 * slips past it is only a record JetStream may store once more
		 * (the retry's duplicate), never a reordering (libnats sends in
		 * call order). */
		if (atomic_load_explicit(&s->failed, memory_order_relaxed))
			break;
		st = publish_one(s, &b->recs[sent]);
		if (st != NATS_OK)
			break;
		gauge_add(s, G_PENDING, 1);
	}
	gauge_add(s, G_PUBLISHED, sent);
	if (b->attempt > 1)
		gauge_add(s, G_REDELIVERED, sent);
	jsPubOptions_Init(&po);
	po.MaxWait = s->ack_timeout_ms;
	if (js_PublishAsyncComplete(s->js, &po) != NATS_OK) {
		/* Unacknowledged: given up (their fate is unknown; a retry
		 * publishes them again under the same ids). */
		natsMsgList pend = { 0 };
		if (js_PublishAsyncGetPendingList(&pend, s->js) == NATS_OK) {
			gauge_add(s, G_PENDING, -(int64_t)pend.Count);
			gauge_add(s, G_UNACKED, pend.Count);
			natsMsgList_Destroy(&pend);
		}
	}
	pthread_mutex_lock(&s->lock);
	while (done < sent && s->acked[done] == 1)
		done++;
	if (done < b->count && !s->error[0]) {
		const char *why = NULL;
		natsConnection_GetLastError(s->nc, &why); /* the connection's reason, if any */
		snprintf(s->error, sizeof(s->error), "%s%s%s",
			 st != NATS_OK ? natsStatus_GetText(st)
				       : "JetStream did not acknowledge in time",
			 why && *why ? ": " : "", why ? why : "");
	}
	s->count = 0; /* late acks of this batch are ignored from now on */
	snprintf(res->error, sizeof(res->error), "nats: %s", s->error);
	pthread_mutex_unlock(&s->lock);
	if (done < b->count)
		status(s, SPATE_PLUGIN_STATUS_KEEP, res->error);
	if (s->ss && done) { /* lane 0: the shard's records past this batch's done part */
		uint64_t tail = 0, next = b->recs[done - 1].seq + 1;
		spate_ring_tail(spate_stream_ring(s->ss, s->shard), NULL, &tail);
		uint64_t lag = tail > next ? tail - next : 0;
		gauge_add(s, G_LAG, (int64_t)lag - (int64_t)s->lag);
		s->lag = lag;
	}
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
