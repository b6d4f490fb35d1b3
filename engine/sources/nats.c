/* SPDX-License-Identifier: MIT */
/*
 * nats.c - the `nats` source: imports a JetStream stream into a spate
 * stream through a durable pull consumer (the source half of the bridge;
 * plugins/nats.c is the export).
 *
 * Design. One thread per source fetches batches from a durable pull
 * consumer and appends each message to the spate stream as a keyed
 * envelope with an origin (spate/kinesis.h, SPATE_RECORD_TYPE_KEYED_ORIGIN):
 * the partition key from the Spate-Record header (else the subject),
 * so records of one key land on one shard in JetStream order, and the
 * origin = (this source's id, the message's JetStream stream sequence).
 * A message is acknowledged only once its record is committed to the ring,
 * or durable when `ack: durable` (the default on a persisted stream:
 * spate_stream_wait_durable()). The consumer's ack policy is AckAll: one
 * ack, of a fetch's last message held, acknowledges the whole fetch.
 *
 * Exactly once into the stream. The stream itself says what was imported:
 * at start the source scans the tail of each shard (its ring, then its log
 * if the ring has none of its records) for the highest origin sequence M it
 * wrote, and (re)creates its durable consumer to deliver from M + 1. While
 * it runs, a message at or below M is a redelivery (an ack that was lost or
 * late) and is acknowledged without being appended; a gap in the
 * consumer's delivery sequence (messages delivered to a fetch that was
 * lost in a reconnect) recreates the consumer at M + 1 again, so no later
 * message is appended before an earlier one: the imported records are
 * always a prefix of the JetStream stream (or of its filtered subjects), in
 * order, without repeats, whatever crashes in between.
 *
 * Keys (sources: entry; every error names file and line):
 *   servers: LIST|STRING    nats://host:port,... (required)
 *   jetstream_stream: NAME  the JetStream stream (required)
 *   subject: FILTER         the consumer's filter subject (default: all)
 *   consumer: NAME          durable name (default spate-<bus>-<source>)
 *   create: BOOL            create jetstream_stream if absent (subjects:
 *                           subject or spate.>); replicas: N (default 1)
 *   ack: committed|durable  default durable on a persisted stream
 *   batch: N                most messages per fetch, 1..256 (default 256)
 *   fetch_wait: DURATION    how long a pull request waits to fill its
 *                           batch (default 5ms: the latency floor of a
 *                           trickle)
 *   ack_wait: DURATION      JetStream's redelivery timer (default 30s)
 *   max_ack_pending: N      default 20000
 *   format: headers|envelope  the payload: the data (default), or a keyed
 *                           envelope carrying the key (an export with the
 *                           same format: no header is read; a payload that
 *                           is not one is taken as data, keyed as below)
 *   key_header: NAME        a header whose whole value is the partition key
 *                           (messages of other publishers; default: the
 *                           key in the export's Spate-Record header)
 *   auth: {user, password, token, nkey, nkey_seed, creds}
 *   tls: {ca, cert, key} or true
 *   reconnect_wait, reconnect_max: DURATION (back-off from .. to)
 *
 * Counters (spate stat/top, Prometheus): state up/down, fetched, appended,
 * redeliveries, resyncs, acks, pending acks, lag (the consumer's pending
 * count), refused (larger than the stream's record size), last error.
 *
 * Limits. One fetch thread per source (JetStream serves one consumer's
 * messages in order anyway). A message larger than the stream's
 * max_record_size cannot be imported: it is counted (refused), logged and
 * acknowledged, not retried for ever. The scan at start reads each shard's
 * ring, then its log backwards in growing windows until it finds one of
 * this source's records (or the log's start).
 */
#include "spate_config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "spate/config.h"
#include "spate/engine.h"
#include "spate/kinesis.h"
#include "spate/log.h"
#include "spate/ring.h"
#include "spate/slog.h"
#include "spate/sources.h"
#include "spate/stats.h"
#include "spate/stream.h"

#include "engine/sources/builtin.h"
#include "plugins/nats_conn.h"

enum { C_FETCHED, C_APPENDED, C_REDELIVERED, C_RESYNCS, C_ACKS, C_PENDING_ACKS, C_LAG,
       C_REFUSED, C_DISCONNECTS, C_N };
static const char *const counter_names[C_N] = {
	"fetched", "appended", "redeliveries", "resyncs", "acks", "pending_acks", "lag",
	"refused", "disconnects",
};

static const char *const known_keys[] = {
	"servers", "jetstream_stream", "subject", "consumer", "create", "replicas", "ack",
	"batch", "fetch_wait", "ack_wait", "max_ack_pending", "key_header", "auth", "tls",
	"reconnect_wait", "reconnect_max", "format", NULL,
};
static const char *const auth_keys[] = { "user", "password", "token", "nkey", "nkey_seed",
					 "creds", NULL };
static const char *const tls_keys[] = { "ca", "cert", "key", NULL };
static const char *const ack_names[] = { "committed", "durable", NULL };

struct nsrc {
	struct spate_engine *e;
	const struct spate_config_source *src;
	struct spate_stream *stream;
	struct spate_producer *prod;
	struct spate_stats_source_slot *st;
	struct spate_nats_conn_cfg cc;
	char servers[2048];
	char durable[128];
	const char *js_stream, *subject, *key_header;
	bool create, ack_durable;
	int format;                /* SPATE_NATS_FORMAT_* */
	uint64_t replicas, batch, fetch_wait_ns, ack_wait_ns, max_ack_pending;
	uint32_t origin_id;
	uint64_t last;             /* highest origin sequence appended (M) */
	uint64_t last_dseq;        /* the consumer's last delivery sequence seen */
	natsConnection *nc;
	jsCtx *js;
	struct spate_nats_pull pull;  /* open: pull.sub != NULL */
	natsMsg *msgs[256];           /* one fetch's messages */
	natsMsg *acks[256];           /* those to acknowledge */
	pthread_t th;
	_Atomic int quit;
	_Atomic int closed;           /* the connection's closed callback ran */
	/* One fetch's records, reused. */
	struct spate_put_entry *ent;
	struct spate_put_result *res;
	uint8_t **buf;
	size_t *bufcap;
	uint32_t cap;
	uint32_t nshards;
	char keybuf[SPATE_KINESIS_KEY_MAX]; /* a "hex:" key, decoded */
	uint64_t *shard_max;       /* per shard: highest seq appended this fetch (durable wait) */
	/* The last keys' hashes (MD5, spate_kinesis_key_hash: ~0.3 us each),
	 * direct-mapped by a cheap hash of the key: keys repeat (that is what
	 * partition keys are for). 512 slots (16 KiB): 64 keys in 64 slots
	 * collided often enough to show MD5 in a profile. */
	struct {
		uint32_t hash;
		uint8_t len;   /* 0: empty */
		char key[27];
	} kcache[512];
};

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

/* Read every key (check() and start() share it; @p n may be NULL: check only). */
static int read_cfg(const struct spate_config_source *src, struct nsrc *n, char *err, size_t errlen)
{
	struct nsrc tmp;
	const struct spate_config_node *sv, *auth, *tls;
	uint64_t rw = 100 * 1000000ull, rmax = 2000 * 1000000ull;
	int ack = -1, format = SPATE_NATS_FORMAT_HEADERS, r;

	if (!n) {
		memset(&tmp, 0, sizeof(tmp));
		n = &tmp;
	}
	r = spate_config_node_known(src, &src->keys, known_keys, err, errlen);
	if (r < 0)
		return r;
	sv = spate_config_source_key(src, "servers");
	if (!sv)
		return spate_config_node_error(src, NULL, err, errlen,
					       "servers: missing (a list like [nats://127.0.0.1:4222])");
	n->servers[0] = '\0';
	if (sv->kind == SPATE_CONFIG_NODE_SCALAR) {
		snprintf(n->servers, sizeof(n->servers), "%s", sv->value);
	} else if (sv->kind == SPATE_CONFIG_NODE_LIST) {
		size_t pos = 0;
		for (uint32_t i = 0; i < sv->n_items; i++) {
			if (sv->items[i].kind != SPATE_CONFIG_NODE_SCALAR || !*sv->items[i].value)
				return spate_config_node_error(src, &sv->items[i], err, errlen,
							       "expected a server URL");
			pos += (size_t)snprintf(n->servers + pos,
						pos < sizeof(n->servers) ? sizeof(n->servers) - pos : 0,
						"%s%s", i ? "," : "", sv->items[i].value);
		}
	}
	if (!n->servers[0])
		return spate_config_node_error(src, sv, err, errlen,
					       "expected a server URL or a list of them");
	n->js_stream = NULL;
	if ((r = spate_config_node_str(src, &src->keys, "jetstream_stream", &n->js_stream, err,
				       errlen)) < 0)
		return r;
	if (!n->js_stream || !*n->js_stream)
		return spate_config_node_error(src, NULL, err, errlen,
					       "jetstream_stream: missing (the JetStream stream to import)");
	n->subject = NULL;
	n->key_header = NULL; /* the key in Spate-Record */
	const char *consumer = NULL;
	n->replicas = 1;
	n->batch = 256;
	n->fetch_wait_ns = 5 * 1000000ull;
	n->ack_wait_ns = 30 * 1000000000ull;
	n->max_ack_pending = 20000;
	if ((r = spate_config_node_str(src, &src->keys, "subject", &n->subject, err, errlen)) < 0 ||
	    (r = spate_config_node_str(src, &src->keys, "consumer", &consumer, err, errlen)) < 0 ||
	    (r = spate_config_node_str(src, &src->keys, "key_header", &n->key_header, err, errlen)) < 0 ||
	    (r = spate_config_node_bool(src, &src->keys, "create", &n->create, err, errlen)) < 0 ||
	    (r = spate_config_node_u64(src, &src->keys, "replicas", 1, 5, &n->replicas, err, errlen)) < 0 ||
	    (r = spate_config_node_u64(src, &src->keys, "batch", 1, 256, &n->batch, err, errlen)) < 0 ||
	    (r = spate_config_node_u64(src, &src->keys, "max_ack_pending", 1, 10000000,
				       &n->max_ack_pending, err, errlen)) < 0 ||
	    (r = spate_config_node_dur(src, &src->keys, "fetch_wait", 1000000ull, 10000000000ull,
				       &n->fetch_wait_ns, err, errlen)) < 0 ||
	    (r = spate_config_node_dur(src, &src->keys, "ack_wait", 1000000000ull,
				       3600000000000ull, &n->ack_wait_ns, err, errlen)) < 0 ||
	    (r = spate_config_node_dur(src, &src->keys, "reconnect_wait", 1000000ull,
				       60000000000ull, &rw, err, errlen)) < 0 ||
	    (r = spate_config_node_dur(src, &src->keys, "reconnect_max", 1000000ull,
				       600000000000ull, &rmax, err, errlen)) < 0 ||
	    (r = spate_config_node_enum(src, &src->keys, "ack", ack_names, &ack, err, errlen)) < 0 ||
	    (r = spate_config_node_enum(src, &src->keys, "format", spate_nats_format_names, &format,
					err, errlen)) < 0)
		return r;
	n->format = format;
	if (consumer && !*consumer)
		return spate_config_node_error(src, spate_config_source_key(src, "consumer"), err,
					       errlen, "expected a durable consumer name");
	snprintf(n->durable, sizeof(n->durable), "%s", consumer ? consumer : "");
	n->ack_durable = ack == 1;
	n->cc.reconnect_wait_ms = (int64_t)(rw / 1000000);
	n->cc.reconnect_max_ms = (int64_t)(rmax / 1000000);
	auth = spate_config_source_key(src, "auth");
	if (auth) {
		if ((r = spate_config_node_known(src, auth, auth_keys, err, errlen)) < 0 ||
		    (r = spate_config_node_str(src, auth, "user", &n->cc.user, err, errlen)) < 0 ||
		    (r = spate_config_node_str(src, auth, "password", &n->cc.password, err, errlen)) < 0 ||
		    (r = spate_config_node_str(src, auth, "token", &n->cc.token, err, errlen)) < 0 ||
		    (r = spate_config_node_str(src, auth, "nkey", &n->cc.nkey, err, errlen)) < 0 ||
		    (r = spate_config_node_str(src, auth, "nkey_seed", &n->cc.nkey_seed, err, errlen)) < 0 ||
		    (r = spate_config_node_str(src, auth, "creds", &n->cc.creds, err, errlen)) < 0)
			return r;
		if (!n->cc.nkey != !n->cc.nkey_seed)
			return spate_config_node_error(src, auth, err, errlen,
						       "nkey and nkey_seed go together");
	}
	tls = spate_config_source_key(src, "tls");
	if (tls && tls->kind == SPATE_CONFIG_NODE_MAP) {
		n->cc.tls = true;
		if ((r = spate_config_node_known(src, tls, tls_keys, err, errlen)) < 0 ||
		    (r = spate_config_node_str(src, tls, "ca", &n->cc.tls_ca, err, errlen)) < 0 ||
		    (r = spate_config_node_str(src, tls, "cert", &n->cc.tls_cert, err, errlen)) < 0 ||
		    (r = spate_config_node_str(src, tls, "key", &n->cc.tls_key, err, errlen)) < 0)
			return r;
	} else if (tls && (r = spate_config_node_bool(src, &src->keys, "tls", &n->cc.tls, err,
						      errlen)) < 0) {
		return r;
	}
	n->cc.servers = n->servers;
	n->cc.timeout_ms = 2000;
	return 0;
}

static int nats_check(const struct spate_config_source *src, char *err, size_t errlen)
{
	return read_cfg(src, NULL, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* Where the import stands: the stream's own records                        */
/* ------------------------------------------------------------------------ */

/* Highest origin sequence of ours among @p n records (0: none). */
static uint64_t scan_recs(const struct nsrc *n, const struct spate_ring_rec *r, int cnt, uint64_t best)
{
	for (int i = 0; i < cnt; i++) {
		uint32_t id;
		uint64_t seq;
		if (spate_kinesis_origin(&r[i], &id, &seq) == 0 && id == n->origin_id && seq > best)
			best = seq;
	}
	return best;
}

/* The ring of shard @p shard, oldest to the tail seen now. */
static uint64_t scan_ring(const struct nsrc *n, uint32_t shard)
{
	struct spate_ring *ring = spate_stream_ring(n->stream, shard);
	struct spate_ring_reader *rd = NULL;
	struct spate_ring_rec recs[256];
	uint64_t tail, best = 0;
	int cnt;

	spate_ring_tail(ring, NULL, &tail);
	if (spate_ring_reader_open(ring, SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD, &rd) < 0)
		return 0;
	while ((cnt = spate_ring_peek(rd, recs, 256, UINT64_MAX)) > 0) {
		best = scan_recs(n, recs, cnt, best);
		bool end = recs[cnt - 1].seq + 1 >= tail;
		spate_ring_release(rd, (unsigned)cnt);
		if (end)
			break;
	}
	spate_ring_reader_close(rd);
	return best;
}

/* The log of shard @p shard, backwards in growing windows from @p tail. */
static uint64_t scan_log(const struct nsrc *n, uint32_t shard, uint64_t tail)
{
	const struct spate_config *c = spate_engine_config(n->e);
	const struct spate_config_stream *cs = spate_config_find_stream(c, n->src->stream);
	struct spate_ring_rec recs[256];
	char dir[4200];
	uint64_t win = 4096, best = 0;

	if (!cs || cs->durability == SPATE_DURABILITY_OFF ||
	    spate_config_stream_log_dir(c, cs, shard, dir, sizeof(dir)) < 0)
		return 0;
	for (;;) {
		struct spate_log_reader *lr = NULL;
		uint64_t from = tail > win ? tail - win : 0;
		int cnt;
		if (spate_log_reader_open(dir, SPATE_LOG_FROM_SEQ, from, &lr) < 0)
			return 0;
		while ((cnt = spate_log_read(lr, recs, 256, NULL)) > 0)
			best = scan_recs(n, recs, cnt, best);
		spate_log_reader_close(lr);
		if (best || from == 0)
			return best;
		win *= 4;
	}
}

static uint64_t imported_upto(const struct nsrc *n)
{
	uint64_t m = 0;

	for (uint32_t s = 0; s < n->nshards; s++) {
		uint64_t b = scan_ring(n, s), tail;
		if (!b) {
			spate_ring_tail(spate_stream_ring(n->stream, s), NULL, &tail);
			b = scan_log(n, s, tail);
		}
		if (b > m)
			m = b;
	}
	return m;
}

/* ------------------------------------------------------------------------ */
/* JetStream                                                                */
/* ------------------------------------------------------------------------ */

static void on_closed(natsConnection *nc, void *closure)
{
	struct nsrc *n = closure;

	(void)nc;
	/* Release: pairs with spate_nats_close()'s acquire load. */
	atomic_store_explicit(&n->closed, 1, memory_order_release);
}

static void on_down(natsConnection *nc, void *closure)
{
	struct nsrc *n = closure;

	if (natsConnection_IsClosed(nc))
		return; /* our own close */
	spate_stats_source_state(n->st, SPATE_STATS_SOURCE_DOWN);
	spate_stats_source_add(n->st, C_DISCONNECTS, 1);
	spate_stats_source_error(n->st, "disconnected: reconnecting");
	spate_slog(SPATE_LOG_WARN, NULL, "source %s: disconnected from NATS: reconnecting",
		   n->src->name);
}

static void on_up(natsConnection *nc, void *closure)
{
	struct nsrc *n = closure;
	char url[256] = "";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	spate_stats_source_state(n->st, SPATE_STATS_SOURCE_UP);
	spate_slog(SPATE_LOG_INFO, NULL, "source %s: reconnected to %s", n->src->name, url);
}

static const char *last_error(void)
{
	const char *e = nats_GetLastError(NULL);
	return e ? e : "";
}

/* (Re)create the durable consumer to deliver from n->last + 1, and
 * subscribe to it. 0 or -EIO (the error is in the counters and the log). */
static int resync(struct nsrc *n)
{
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	if (n->pull.sub)
		spate_nats_pull_close(&n->pull);
	s = js_DeleteConsumer(n->js, n->js_stream, n->durable, NULL, &jerr);
	if (s != NATS_OK && jerr != JSConsumerNotFoundErr && s != NATS_NOT_FOUND) {
		spate_stats_source_error(n->st, "delete consumer %s: %s %s", n->durable,
					 natsStatus_GetText(s), last_error());
		return -EIO;
	}
	jsConsumerConfig_Init(&cc);
	cc.Durable = n->durable;
	cc.AckPolicy = js_AckAll; /* one ack per fetch: its last message (import_batch) */
	cc.AckWait = (int64_t)n->ack_wait_ns;
	cc.MaxAckPending = (int64_t)n->max_ack_pending;
	cc.FilterSubject = n->subject;
	if (n->last) {
		cc.DeliverPolicy = js_DeliverByStartSequence;
		cc.OptStartSeq = n->last + 1;
	} else {
		cc.DeliverPolicy = js_DeliverAll;
	}
	jerr = 0;
	s = js_AddConsumer(&ci, n->js, n->js_stream, &cc, NULL, &jerr);
	if (s != NATS_OK) {
		spate_stats_source_error(n->st, "create consumer %s: %s (%d) %s", n->durable,
					 natsStatus_GetText(s), (int)jerr, last_error());
		return -EIO;
	}
	jsConsumerInfo_Destroy(ci);
	if (spate_nats_pull_open(&n->pull, n->nc, n->js_stream, n->durable) < 0) {
		spate_stats_source_error(n->st, "subscribe to an inbox: %s", last_error());
		return -EIO;
	}
	n->last_dseq = 0;
	spate_stats_source_add(n->st, C_RESYNCS, 1);
	spate_slog(SPATE_LOG_INFO, NULL, "source %s: consumer %s of %s delivers from sequence %" PRIu64,
		   n->src->name, n->durable, n->js_stream, n->last + 1);
	return 0;
}

static int grow(struct nsrc *n, uint32_t want)
{
	if (want <= n->cap)
		return 0;
	struct spate_put_entry *e = realloc(n->ent, want * sizeof(*e));
	if (!e)
		return -ENOMEM;
	n->ent = e;
	struct spate_put_result *r = realloc(n->res, want * sizeof(*r));
	if (!r)
		return -ENOMEM;
	n->res = r;
	uint8_t **b = realloc(n->buf, want * sizeof(*b));
	if (!b)
		return -ENOMEM;
	n->buf = b;
	size_t *bc = realloc(n->bufcap, want * sizeof(*bc));
	if (!bc)
		return -ENOMEM;
	n->bufcap = bc;
	for (uint32_t i = n->cap; i < want; i++) {
		n->buf[i] = NULL;
		n->bufcap[i] = 0;
	}
	n->cap = want;
	return 0;
}

/* spate_kinesis_key_hash(@p key), through the cache. */
static uint32_t key_hash(struct nsrc *n, const char *key, size_t klen)
{
	uint32_t h = 2166136261u; /* FNV-1a, to pick the slot */

	if (!klen || klen >= sizeof(n->kcache[0].key))
		return spate_kinesis_key_hash(key, klen, NULL);
	for (size_t i = 0; i < klen; i++)
		h = (h ^ (uint8_t)key[i]) * 16777619u;
	h = (h ^ (h >> 16)) & 511;
	if (n->kcache[h].len == klen && !memcmp(n->kcache[h].key, key, klen))
		return n->kcache[h].hash;
	n->kcache[h].hash = spate_kinesis_key_hash(key, klen, NULL);
	n->kcache[h].len = (uint8_t)klen;
	memcpy(n->kcache[h].key, key, klen);
	return n->kcache[h].hash;
}

static void nap(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
	nanosleep(&ts, NULL);
}

/* Append the messages of one fetch, in order, then ack them. Returns 1 to
 * ask for a resync (a delivery gap), -1 when the source must stop (the
 * stream refused an append), else 0. */
static int import_batch(struct nsrc *n, natsMsg **msgs, int count)
{
	uint32_t cnt = 0;
	int want_resync = 0;
	uint64_t newlast = n->last, lag = 0;
	natsMsg **acks = n->acks;
	uint32_t nacks = 0;

	if (grow(n, (uint32_t)count) < 0)
		return 1;
	for (int i = 0; i < count; i++) {
		natsMsg *m = msgs[i];
		struct spate_nats_meta md;
		if (spate_nats_meta(m, &md) < 0) {
			want_resync = 1;
			break;
		}
		uint64_t sseq = md.sseq, dseq = md.dseq;
		lag = md.pending;
		if (dseq != n->last_dseq + 1) {
			/* Deliveries we never saw (a fetch lost in a
			 * reconnect): later ones must not go first. */
			want_resync = 1;
			break;
		}
		n->last_dseq = dseq;
		if (sseq <= newlast) {
			spate_stats_source_add(n->st, C_REDELIVERED, 1);
			acks[nacks++] = m;
			continue;
		}
		const char *key = NULL, *data = natsMsg_GetData(m);
		size_t klen = 0, dlen = (size_t)natsMsg_GetDataLength(m);
		if (n->format == SPATE_NATS_FORMAT_ENVELOPE && dlen >= 2) {
			/* The key in the payload: no header is touched. */
			klen = (size_t)(uint8_t)data[0] | (size_t)(uint8_t)data[1] << 8;
			if (klen && klen <= SPATE_KINESIS_KEY_MAX && 2 + klen <= dlen) {
				key = data + 2;
				data += 2 + klen;
				dlen -= 2 + klen;
			}
		}
		if (!key) {
			/* One header access (libnats parses the message's
			 * headers then, all of them): the key from Spate-Record
			 * (an export's message), or from key_header when set;
			 * else the subject. */
			const char *hv = NULL;
			if (natsMsgHeader_Get(m, n->key_header ? n->key_header : SPATE_NATS_H_RECORD,
					      &hv) == NATS_OK && hv)
				key = n->key_header ? hv : spate_nats_record_key(hv);
			if (!key || !*key)
				key = natsMsg_GetSubject(m);
			klen = strlen(key);
			if (klen > 4 && key[0] == 'h' && !n->key_header &&
			    (klen - 4) / 2 <= sizeof(n->keybuf)) {
				ssize_t kl = spate_nats_key_unhex(key, klen, n->keybuf);
				if (kl > 0) {
					key = n->keybuf;
					klen = (size_t)kl;
				}
			}
			if (klen > SPATE_KINESIS_KEY_MAX)
				klen = SPATE_KINESIS_KEY_MAX;
		}
		size_t need = SPATE_KINESIS_ORIGIN_LEN(klen, dlen);
		if (need > n->bufcap[cnt]) {
			uint8_t *b = realloc(n->buf[cnt], need);
			if (!b) {
				want_resync = 1;
				break;
			}
			n->buf[cnt] = b;
			n->bufcap[cnt] = need;
		}
		int64_t len = spate_kinesis_origin_encode(n->buf[cnt], need, key, klen, n->origin_id,
							  sseq, data, dlen);
		struct spate_put_entry *e = &n->ent[cnt];
		memset(e, 0, sizeof(*e));
		e->data = n->buf[cnt];
		e->len = (size_t)len;
		e->hash = key_hash(n, key, klen);
		e->flags = SPATE_PUT_F_HASH;
		e->type = SPATE_RECORD_TYPE_KEYED_ORIGIN;
		acks[nacks++] = m;
		newlast = sseq;
		cnt++;
	}
	spate_stats_source_add(n->st, C_FETCHED, (uint64_t)count);
	spate_stats_source_set(n->st, C_PENDING_ACKS, nacks); /* until they are acked below */
	spate_stats_source_set(n->st, C_LAG, lag);
	if (cnt) {
		int failed = spate_put_batch(n->prod, n->ent, cnt, n->res);
		for (uint32_t i = 0; failed > 0 && i < cnt; i++) {
			if (n->res[i].error == 0)
				continue;
			if (n->res[i].error == -EMSGSIZE) {
				/* Never appendable: counted, logged, acknowledged. */
				spate_stats_source_add(n->st, C_REFUSED, 1);
				spate_slog(SPATE_LOG_ERROR, NULL,
					   "source %s: a message of %zu bytes is larger than stream "
					   "%s's records: not imported",
					   n->src->name, n->ent[i].len, n->src->stream);
				continue;
			}
			/* A waiting producer fails only on a broken stream:
			 * stop here, acknowledging nothing (a restart rescans
			 * the stream). */
			spate_stats_source_state(n->st, SPATE_STATS_SOURCE_FAILED);
			spate_stats_source_error(n->st, "append: %s", strerror(-n->res[i].error));
			spate_slog(SPATE_LOG_ERROR, NULL, "source %s: append to %s: %s: stopped",
				   n->src->name, n->src->stream, strerror(-n->res[i].error));
			return -1;
		}
		spate_stats_source_add(n->st, C_APPENDED, cnt);
		if (n->ack_durable) {
			for (uint32_t s = 0; s < n->nshards; s++)
				n->shard_max[s] = UINT64_MAX;
			for (uint32_t i = 0; i < cnt; i++)
				if (n->res[i].error == 0)
					n->shard_max[n->res[i].shard] = n->res[i].seq;
			for (uint32_t s = 0; s < n->nshards; s++) {
				if (n->shard_max[s] == UINT64_MAX)
					continue;
				int rc = spate_stream_wait_durable(n->stream, s, n->shard_max[s],
								   10ull * 1000000000ull);
				if (rc < 0 && rc != -ENOTSUP) {
					/* Not known durable: no ack (JetStream
					 * redelivers; the stream recognises them). */
					spate_stats_source_error(n->st, "durable wait: %s",
								 strerror(-rc));
					nacks = 0;
					break;
				}
			}
		}
	}
	n->last = newlast;
	/* AckAll: acknowledging the fetch's last message we hold acknowledges
	 * every earlier one (appended, refused or a redelivery), none after
	 * it (a delivery gap stopped the loop before them): one ack message
	 * per fetch instead of one per message. */
	if (nacks && spate_nats_ack(n->nc, acks[nacks - 1]) == 0)
		spate_stats_source_add(n->st, C_ACKS, nacks);
	spate_stats_source_set(n->st, C_PENDING_ACKS, 0);
	return want_resync;
}

static void *fetch_main(void *arg)
{
	struct nsrc *n = arg;
	uint64_t backoff = 50 * 1000000ull;

	while (!atomic_load_explicit(&n->quit, memory_order_acquire)) {
		/* Acquire: pairs with stop()'s release store. */
		if (!n->pull.sub) {
			if (resync(n) < 0) {
				nap(backoff);
				backoff = backoff * 2 > 2000000000ull ? 2000000000ull : backoff * 2;
				continue;
			}
			backoff = 50 * 1000000ull;
		}
		/* A request for up to `batch`, answered within fetch_wait:
		 * a flood comes in full batches, a trickle within fetch_wait. */
		int got = spate_nats_pull_fetch(&n->pull, n->msgs, (int)n->batch,
						(int64_t)(n->fetch_wait_ns / 1000000));
		if (got < 0) {
			spate_stats_source_error(n->st, "fetch: %s", last_error());
			nap(100 * 1000000ull);
			continue;
		}
		if (got == 0)
			continue;
		spate_stats_source_state(n->st, SPATE_STATS_SOURCE_UP);
		int r = import_batch(n, n->msgs, got);
		for (int i = 0; i < got; i++)
			natsMsg_Destroy(n->msgs[i]);
		if (r < 0)
			break;
		if (r)
			spate_nats_pull_close(&n->pull); /* resync on the next round */
	}
	return NULL;
}

static void nsrc_free(struct nsrc *n)
{
	if (n->pull.sub)
		spate_nats_pull_close(&n->pull);
	if (n->js)
		jsCtx_Destroy(n->js);
	spate_nats_close(n->nc, &n->closed);
	spate_producer_close(n->prod);
	for (uint32_t i = 0; i < n->cap; i++)
		free(n->buf[i]);
	free(n->buf);
	free(n->bufcap);
	free(n->ent);
	free(n->res);
	free(n->shard_max);
	free(n);
}

static int nats_start(struct spate_engine *e, const struct spate_config_source *src, void **state,
		      char *err, size_t errlen)
{
	struct nsrc *n = calloc(1, sizeof(*n));
	natsOptions *o = NULL;
	natsStatus s;
	char id[256];
	int rc;

	if (!n)
		return -ENOMEM;
	n->e = e;
	n->src = src;
	rc = read_cfg(src, n, err, errlen);
	if (rc < 0)
		goto fail;
	const struct spate_config *cfg = spate_engine_config(e);
	if (!n->durable[0])
		snprintf(n->durable, sizeof(n->durable), "spate-%s-%s", cfg->bus, src->name);
	n->stream = spate_engine_stream(e, src->stream);
	n->st = spate_engine_source_stats(e, src->name);
	if (!n->stream || !n->st) {
		snprintf(err, errlen, "source %s: no stream %s", src->name, src->stream);
		rc = -ENOENT;
		goto fail;
	}
	for (uint32_t i = 0; i < C_N; i++)
		spate_stats_source_counter(n->st, i, counter_names[i]);
	n->nshards = spate_stream_shards(n->stream);
	n->shard_max = calloc(n->nshards, sizeof(*n->shard_max));
	if (!n->shard_max) {
		rc = -ENOMEM;
		goto fail;
	}
	/* ack: durable by default when the stream has a log. */
	if (!spate_config_source_key(src, "ack"))
		n->ack_durable = spate_stream_durability(n->stream) != SPATE_DURABILITY_OFF;
	snprintf(id, sizeof(id), "%s/%s", n->js_stream, src->name);
	n->origin_id = spate_kinesis_key_hash(id, strlen(id), NULL);
	/* A waiting producer: a full stream is back pressure on the fetches
	 * (asleep on the ring's futex, not spinning: the fetch thread shares
	 * the cores with B's consumers); the durable wait is the source's own
	 * (per fetch, not per record). */
	rc = spate_producer_open(n->stream, SPATE_RING_WAIT_BLOCK,
				 SPATE_PRODUCER_F_WAIT_FULL | SPATE_PRODUCER_F_NO_DURABLE_WAIT, &n->prod);
	if (rc == -ENOTSUP) /* a stream without futex wake-ups: wait by yielding */
		rc = spate_producer_open(n->stream, SPATE_RING_WAIT_YIELD,
					 SPATE_PRODUCER_F_WAIT_FULL | SPATE_PRODUCER_F_NO_DURABLE_WAIT,
					 &n->prod);
	if (rc < 0) {
		snprintf(err, errlen, "source %s: producer on %s: %s", src->name, src->stream,
			 strerror(-rc));
		goto fail;
	}
	n->last = imported_upto(n);
	snprintf(id, sizeof(id), "spate-%s-%s", cfg->bus, src->name);
	n->cc.name = id;
	rc = spate_nats_options(&n->cc, on_down, on_up, on_closed, n, &o, err, errlen);
	if (rc < 0)
		goto fail;
	s = natsConnection_Connect(&n->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
		snprintf(err, errlen, "source %s: connect %s: %s %s", src->name, n->servers,
			 natsStatus_GetText(s), last_error());
		rc = -ECONNREFUSED;
		goto fail;
	}
	n->cc.name = NULL; /* id goes out of scope; libnats copied it */
	s = natsConnection_JetStream(&n->js, n->nc, NULL);
	if (s != NATS_OK) {
		snprintf(err, errlen, "source %s: JetStream: %s", src->name, natsStatus_GetText(s));
		rc = -EIO;
		goto fail;
	}
	if (n->create) {
		rc = spate_nats_ensure_stream(n->js, n->js_stream, n->subject ? n->subject : "spate.>",
					      (int64_t)n->replicas, 0, err, errlen);
		if (rc < 0)
			goto fail;
	}
	spate_slog(SPATE_LOG_INFO, NULL,
		   "source %s: %s -> stream %s, imported up to JetStream sequence %" PRIu64
		   " (ack when %s)",
		   src->name, n->js_stream, src->stream, n->last,
		   n->ack_durable ? "durable" : "committed");
	rc = -pthread_create(&n->th, NULL, fetch_main, n);
	if (rc < 0) {
		snprintf(err, errlen, "source %s: thread: %s", src->name, strerror(-rc));
		goto fail;
	}
	*state = n;
	return 0;
fail:
	nsrc_free(n);
	return rc;
}

static void nats_stop(void *state)
{
	struct nsrc *n = state;

	/* Release: pairs with the fetch thread's acquire load. */
	atomic_store_explicit(&n->quit, 1, memory_order_release);
	pthread_join(n->th, NULL);
	nsrc_free(n);
}

const struct spate_source_type spate_nats_source_type = {
	.struct_size = sizeof(struct spate_source_type),
	.name = "nats",
	.check = nats_check,
	.start = nats_start,
	.stop = nats_stop,
};
