/* SPDX-License-Identifier: MIT */
/*
 * bridge.c - `spate bench bridge`: records/s through the NATS JetStream
 * bridge (bus A -> JetStream -> bus B) against a plain libnats publisher and
 * pull subscriber on the same cluster, same record size, same run.
 *
 * The cluster: --servers URLS, or (default) three nats-server processes
 * started here on loopback (file storage in a temporary directory,
 * replicas 3 for every stream), stopped at the end. For each record size
 * (64 B and 1 KiB by default), --records N (default 60000: seconds of
 * steady state) records per case:
 *
 *   libnats export   an async JetStream publisher (js_PublishMsgAsync, at
 *                    most --window acks pending, default 4096) publishes N
 *                    messages with the export's two headers (Nats-Msg-Id
 *                    through jsPubOptions.MsgId, and Spate-Record: the
 *                    same bytes on the wire) and waits for every ack.
 *   libnats import   a pull subscriber (MSG.NEXT requests of --batch, 256,
 *                    that wait at most 5 ms to fill: the nats source's
 *                    policy, plugins/nats_conn.h) reads those N back with
 *                    the source's ack policy: AckAll, one ack per fetch.
 *   libnats through  publisher and subscriber at once; then the round trip
 *                    at 10% of that rate, the same consumer going on (as
 *                    B's source does): p50/p99 of publish -> fetched (the
 *                    payload carries its send time).
 *   spate export     bus A (1 shard) with the nats plugin as a consumer, the
 *                    same window: --lanes L (parallelization, default 2)
 *                    of batches of window/L records, batch_window 2 ms; a
 *                    producer puts N records (64 keys) flat out (a full
 *                    ring waits);
 *                    until JetStream acknowledged all of them.
 *   spate import     bus B with a `nats` source (same fetch size and wait)
 *                    reading them back; until the last is in B's ring
 *                    (its tail polled every 1 ms, no reader: the work ends
 *                    in the ring; A is stopped meanwhile, started again
 *                    for `through`).
 *   spate through    A and B at once: put into A, read from B's ring; then
 *                    at 10% of that rate, p50/p99 of put into A -> in B's
 *                    ring.
 *
 * A case's rate is its steady state: its last 90% of records, from the
 * moment the first tenth was done to the last one (connects, consumer
 * creation and the pipeline's filling are out of it, on both sides).
 * --runs R (default 3) interleaved runs, the side that goes first
 * alternating; figures are medians, the ratios the median of the R
 * same-run ratios spate / libnats. The cross-core round trip and the load
 * average before and after are printed with them.
 *
 * Cases {impl: spate|libnats, direction: export|import|through,
 * record_size, records_per_sec, p99_ns, p50_ns, runs_records_per_sec}.
 *
 * Limits: one shard (a single-stream bridge; more shards export in
 * parallel, one connection each); the export's lanes are one connection
 * each, the plain publisher has one. --lanes defaults to 2: on this
 * 2-core machine the engine runs 2 workers, and a lane holds its worker
 * while it waits for its batch's acks, so more lanes would not add to the
 * window in flight. The clocks are one machine's CLOCK_REALTIME.
 */
#include "spate_config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bench/bench.h"
#include "spate/config.h"
#include "spate/engine.h"
#include "spate/hist.h"
#include "spate/kinesis.h"
#include "spate/ring.h"
#include "spate/sources.h"
#include "spate/stream.h"

#include "engine/sources/builtin.h"
#include "plugins/nats_conn.h"

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nap_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------ */
/* The cluster                                                              */
/* ------------------------------------------------------------------------ */

struct cluster {
	char dir[128];
	pid_t pid[3];
	char servers[512];
};

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), p = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		p = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return p;
}

static int cluster_start(struct cluster *c)
{
	int cp[3], rp[3];

	snprintf(c->dir, sizeof(c->dir), "/tmp/spate-bench-bridge-XXXXXX");
	if (!mkdtemp(c->dir))
		return -errno;
	for (int i = 0; i < 3; i++) {
		cp[i] = free_port();
		rp[i] = free_port();
	}
	c->servers[0] = '\0';
	for (int i = 0; i < 3; i++) {
		char conf[256], routes[256] = "";
		size_t pos = 0;
		for (int j = 0; j < 3; j++)
			if (j != i)
				pos += (size_t)snprintf(routes + pos, sizeof(routes) - pos, "%snats-route://127.0.0.1:%d",
							pos ? ", " : "", rp[j]);
		snprintf(conf, sizeof(conf), "%s/n%d.conf", c->dir, i);
		FILE *f = fopen(conf, "w");
		if (!f)
			return -errno;
		fprintf(f, "server_name: n%d\nlisten: 127.0.0.1:%d\njetstream { store_dir: \"%s/n%d\" }\n"
			   "cluster { name: bench, listen: 127.0.0.1:%d, routes: [%s] }\n",
			i, cp[i], c->dir, i, rp[i], routes);
		fclose(f);
		size_t l = strlen(c->servers);
		snprintf(c->servers + l, sizeof(c->servers) - l, "%snats://127.0.0.1:%d", i ? "," : "",
			 cp[i]);
		c->pid[i] = fork();
		if (c->pid[i] == 0) {
			char logf[256];
			/* The servers die with the bench, even if it crashes. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			snprintf(logf, sizeof(logf), "%s/n%d.log", c->dir, i);
			if (!freopen(logf, "w", stdout) || !freopen(logf, "w", stderr))
				_exit(127);
			execlp("nats-server", "nats-server", "-c", conf, (char *)NULL);
			_exit(127);
		}
		if (c->pid[i] < 0)
			return -errno;
	}
	return 0;
}

static void cluster_stop(struct cluster *c)
{
	char cmd[200];

	for (int i = 0; i < 3; i++)
		if (c->pid[i] > 0) {
			kill(c->pid[i], SIGTERM);
			waitpid(c->pid[i], NULL, 0);
		}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench bridge: could not remove %s\n", c->dir);
}

/* ------------------------------------------------------------------------ */
/* What every case shares                                                   */
/* ------------------------------------------------------------------------ */

struct opts {
	uint64_t n;          /* records per case */
	unsigned runs;       /* interleaved runs (medians) */
	uint32_t window;     /* acks pending at most, both sides */
	uint32_t lanes;      /* the export's parallelization (window / lanes per batch) */
	uint32_t batch;      /* most messages per fetch, both sides */
	uint32_t fetch_ms;   /* how long a fetch waits to fill, both sides */
	int format;          /* SPATE_NATS_FORMAT_*: the payload, both sides */
};

/* Steady state: a case's rate is that of its last 90% of records, from the
 * moment the first tenth was done to the last record (connecting, creating
 * consumers and filling pipelines are not in it, on either side). */
struct steady {
	uint64_t n, mark;        /* records, and the first tenth of them */
	_Atomic uint64_t t_mark; /* monotonic ns when mark was reached (0: not yet) */
	uint64_t t_end;
};

static void steady_init(struct steady *s, uint64_t n)
{
	s->n = n;
	s->mark = n / 10 ? n / 10 : 1;
	atomic_store_explicit(&s->t_mark, 0, memory_order_relaxed); /* before any thread */
	s->t_end = 0;
}

/* @p done records are done now (called as they progress). */
static void steady_at(struct steady *s, uint64_t done)
{
	/* Relaxed: one writer per case; read after the case's threads joined. */
	if (done >= s->mark && !atomic_load_explicit(&s->t_mark, memory_order_relaxed))
		atomic_store_explicit(&s->t_mark, mono_ns(), memory_order_relaxed);
}

static double steady_rate(const struct steady *s)
{
	/* Relaxed: the writer's thread was joined (or is this one). */
	uint64_t tm = atomic_load_explicit(&s->t_mark, memory_order_relaxed);

	if (!tm || s->t_end <= tm)
		return 0;
	return (double)(s->n - s->mark) / ((double)(s->t_end - tm) / 1e9);
}

/* ------------------------------------------------------------------------ */
/* Plain libnats                                                            */
/* ------------------------------------------------------------------------ */

struct conn {
	struct spate_nats_conn_cfg cc;
	natsConnection *nc;
	jsCtx *js;
	/* Publisher's acks. */
	_Atomic uint64_t acked, failed;
	struct steady *st;       /* the export case's progress, or NULL */
	int format;              /* SPATE_NATS_FORMAT_* of what it publishes */
	pthread_mutex_t hl;
	struct spate_hist *hist; /* publish -> ack (ns) */
};

/* The send time in the first 8 bytes of a payload's data (past the key of
 * an envelope); 0 if it has none. */
static uint64_t payload_t0(const char *p, int len, int format)
{
	uint64_t t0 = 0;
	int off = 0;

	if (format == SPATE_NATS_FORMAT_ENVELOPE && len >= 2)
		off = 2 + ((uint8_t)p[0] | (uint8_t)p[1] << 8);
	if (len >= off + 8)
		memcpy(&t0, p + off, 8);
	return t0;
}

static void pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct conn *c = closure;
	uint64_t t0 = payload_t0(natsMsg_GetData(msg), natsMsg_GetDataLength(msg), c->format);

	(void)js;
	if (pa) {
		pthread_mutex_lock(&c->hl);
		if (c->hist)
			spate_hist_record(c->hist, real_ns() - t0);
		pthread_mutex_unlock(&c->hl);
		/* Relaxed: counts read after js_PublishAsyncComplete. */
		uint64_t a = atomic_fetch_add_explicit(&c->acked, 1, memory_order_relaxed) + 1;
		if (c->st)
			steady_at(c->st, a);
	} else {
		(void)pae;
		/* Relaxed: as above. */
		atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
	}
	natsMsg_Destroy(msg);
}

static int conn_open(struct conn *c, const char *servers, struct spate_hist *h, uint32_t window,
		     int format)
{
	natsOptions *o = NULL;
	jsOptions jo;
	char err[256];

	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->hl, NULL);
	c->hist = h;
	c->format = format;
	c->cc.servers = servers;
	c->cc.timeout_ms = 2000;
	if (spate_nats_options(&c->cc, NULL, NULL, NULL, NULL, &o, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench bridge: %s\n", err);
		return -EINVAL;
	}
	natsStatus s = natsConnection_Connect(&c->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED)
		return -EIO;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = window;
	jo.PublishAsync.AckHandler = pub_ack;
	jo.PublishAsync.AckHandlerClosure = c;
	jo.Wait = 10000;
	return natsConnection_JetStream(&c->js, c->nc, &jo) == NATS_OK ? 0 : -EIO;
}

static void conn_close(struct conn *c)
{
	if (c->js)
		jsCtx_Destroy(c->js);
	if (c->nc) {
		natsConnection_Close(c->nc);
		natsConnection_Destroy(c->nc);
	}
	pthread_mutex_destroy(&c->hl);
}

/* Publish @p n messages of @p size bytes (send time in the first 8) at
 * @p rate a second (0: as fast as the window allows), each with the headers
 * the export writes (nats_conn.h: Nats-Msg-Id through jsPubOptions.MsgId,
 * and Spate-Record with a sequence number, shard id, timestamp and one of
 * 64 keys): the same bytes on the wire as the bridge's. */
static int lib_publish(struct conn *c, const char *subject, const char *idp, uint64_t n,
		       size_t size, double rate)
{
	char *buf = calloc(1, (size < 8 ? 8 : size) + 16), id[96], seq[SPATE_KINESIS_SEQ_LEN + 1];
	char shard[SPATE_KINESIS_SHARD_ID_LEN + 1], key[16], rec[SPATE_NATS_RECORD_MAX];
	uint64_t t0 = mono_ns();

	if (!buf)
		return -ENOMEM;
	spate_kinesis_shard_id(0, shard);
	for (uint64_t i = 0; i < n; i++) {
		if (rate > 0) {
			uint64_t due = t0 + (uint64_t)((double)i * 1e9 / rate), now = mono_ns();
			if (due > now)
				nap_ns(due - now);
		}
		uint64_t t = real_ns();
		natsMsg *m = NULL;
		jsPubOptions po;
		int kl = snprintf(key, sizeof(key), "k%u", (unsigned)(i % 64));
		if (c->format == SPATE_NATS_FORMAT_ENVELOPE) {
			/* What the export sends in this format: the key before
			 * the data (spate/kinesis.h's keyed envelope). */
			buf[0] = (char)kl;
			buf[1] = 0;
			memcpy(buf + 2, key, (size_t)kl);
			memcpy(buf + 2 + kl, &t, 8);
			natsMsg_Create(&m, subject, NULL, buf, (int)size + 2 + kl);
		} else {
			memcpy(buf, &t, 8);
			natsMsg_Create(&m, subject, NULL, buf, (int)size);
		}
		snprintf(id, sizeof(id), "%s/%" PRIu64, idp, i);
		spate_kinesis_seq_format(1, i, seq);
		spate_nats_record_value(rec, seq, shard, t, key, (size_t)kl);
		natsMsgHeader_Set(m, SPATE_NATS_H_RECORD, rec);
		jsPubOptions_Init(&po);
		po.MsgId = id;
		while (js_PublishMsgAsync(c->js, &m, &po) != NATS_OK)
			nap_ns(1000000);
	}
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = 60000;
	js_PublishAsyncComplete(c->js, &po);
	free(buf);
	return 0;
}

struct subarg {
	struct conn *c;
	const struct opts *o;
	const char *stream, *durable;
	uint64_t n, got;
	struct spate_hist *hist; /* publish -> fetched (ns), or NULL */
	struct spate_producer *prod; /* the floor: each message's key read and
					 the message put into this stream */
	struct spate_put_entry ent[256];
	struct spate_put_result res[256];
	struct steady st;
	int rc;
};

/* The floor of an import: what any importer must do with a fetched
 * message besides what the plain subscriber does: find its partition key
 * (the Spate-Record header through libnats, or the payload's envelope) and
 * put it into a spate stream by that key (one spate_put_batch per fetch).
 * No origin, no redelivery check, no envelope: less than the import. */
static void floor_put(struct subarg *a, natsMsg **msgs, int k)
{
	for (int i = 0; i < k; i++) {
		const char *d = natsMsg_GetData(msgs[i]), *key = NULL, *hv = NULL;
		size_t dl = (size_t)natsMsg_GetDataLength(msgs[i]), kl = 0;
		if (a->o->format == SPATE_NATS_FORMAT_ENVELOPE && dl >= 2) {
			kl = (size_t)(uint8_t)d[0] | (size_t)(uint8_t)d[1] << 8;
			if (kl && 2 + kl <= dl) {
				key = d + 2;
				d += 2 + kl;
				dl -= 2 + kl;
			}
		} else if (natsMsgHeader_Get(msgs[i], SPATE_NATS_H_RECORD, &hv) == NATS_OK && hv) {
			key = spate_nats_record_key(hv);
			kl = key ? strlen(key) : 0;
		}
		a->ent[i] = (struct spate_put_entry){ .key = key ? key : "", .key_len = kl,
						      .data = d, .len = dl };
	}
	spate_put_batch(a->prod, a->ent, (unsigned)k, a->res);
}

static void *lib_subscribe(void *arg)
{
	struct subarg *a = arg;
	struct spate_nats_pull p;
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	natsMsg *msgs[256];
	int max = (int)a->o->batch;

	steady_init(&a->st, a->n);
	jsConsumerConfig_Init(&cc);
	cc.Durable = a->durable;
	/* The nats source's ack policy: AckAll, one ack per fetch (its last
	 * message), after the fetch is handled. */
	cc.AckPolicy = js_AckAll;
	cc.MaxAckPending = 20000;
	if (js_AddConsumer(&ci, a->c->js, a->stream, &cc, NULL, NULL) != NATS_OK) {
		a->rc = -EIO;
		return NULL;
	}
	jsConsumerInfo_Destroy(ci);
	if (spate_nats_pull_open(&p, a->c->nc, a->stream, a->durable) < 0) {
		a->rc = -EIO;
		return NULL;
	}
	uint64_t deadline = mono_ns() + 120ull * 1000000000ull;
	while (a->got < a->n && mono_ns() < deadline) {
		/* The fetch policy of the nats source: requests of up to
		 * `batch` that wait at most `fetch_wait` to fill. */
		int k = spate_nats_pull_fetch(&p, msgs, max, a->o->fetch_ms);
		if (k <= 0)
			continue;
		uint64_t now = real_ns();
		for (int i = 0; i < k; i++) {
			if (a->hist)
				spate_hist_record(a->hist, now - payload_t0(natsMsg_GetData(msgs[i]),
									natsMsg_GetDataLength(msgs[i]),
									a->o->format));
		}
		if (a->prod)
			floor_put(a, msgs, k);
		spate_nats_ack(a->c->nc, msgs[k - 1]);
		for (int i = 0; i < k; i++)
			natsMsg_Destroy(msgs[i]);
		a->got += (uint64_t)k;
		steady_at(&a->st, a->got);
	}
	a->st.t_end = mono_ns();
	spate_nats_pull_close(&p);
	a->rc = a->got == a->n ? 0 : -ETIMEDOUT;
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* spate                                                                    */
/* ------------------------------------------------------------------------ */

struct bus {
	char name[48], dir[200];
	struct spate_config *cfg;
	struct spate_engine *e;
};

/* A bus named bb<role><pid><tag> in its own state directory, with the one
 * stream "s" (64 MiB ring, no huge pages) every bus of the bench has. */
static int bus_config(struct bus *b, char role, const char *tag, struct spate_config_stream **s)
{
	snprintf(b->name, sizeof(b->name), "bb%c%d%s", role, (int)getpid(), tag);
	snprintf(b->dir, sizeof(b->dir), "/tmp/spate-bench-bridge-%s", b->name);
	if (spate_config_new_default(b->name, &b->cfg) < 0)
		return -ENOMEM;
	snprintf(b->cfg->state_dir, sizeof(b->cfg->state_dir), "%s", b->dir);
	spate_config_add_stream(b->cfg, "s", s);
	(*s)->ring_size = 64u << 20;
	(*s)->huge_pages = SPATE_CONFIG_HUGE_OFF;
	return 0;
}

static int bus_open_a(struct bus *b, const struct opts *o, const char *servers,
		      const char *jstream, const char *tag)
{
	struct spate_config_stream *s;
	struct spate_config_consumer *k;
	char err[512], win[24];

	if (bus_config(b, 'A', tag, &s) < 0)
		return -ENOMEM;
	spate_config_add_consumer(b->cfg, "export", "s", "nats", &k);
	k->starting_position = SPATE_CONFIG_START_TRIM_HORIZON;
	/* The same window of pending acks as the plain publisher's: `lanes`
	 * batches in flight (each key stays on its lane, so per-key order
	 * holds), each of window / lanes records at most, each done once
	 * JetStream acked all of it. */
	k->batch_size = o->window / o->lanes;
	k->batch_window_ns = 2000000; /* a trickle waits at most 2 ms to batch */
	k->parallelization = o->lanes;
	k->retry_backoff_ns = 10000000;
	snprintf(win, sizeof(win), "%u", o->window / o->lanes);
	spate_config_consumer_set_option(k, "servers", servers);
	spate_config_consumer_set_option(k, "bus", b->name);
	spate_config_consumer_set_option(k, "jetstream_stream", jstream);
	spate_config_consumer_set_option(k, "subject", "bb.{bus}.{stream}");
	spate_config_consumer_set_option(k, "window", win);
	spate_config_consumer_set_option(k, "format", spate_nats_format_names[o->format]);
	int rc = spate_engine_open(b->cfg, &b->e, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "bench bridge: bus A: %s\n", err);
	return rc;
}

/* A bus with one stream and nothing else, for the floor (floor_put). */
static int bus_open_floor(struct bus *b, const char *tag)
{
	struct spate_config_stream *s;
	char err[512];

	if (bus_config(b, 'F', tag, &s) < 0)
		return -ENOMEM;
	int rc = spate_engine_open(b->cfg, &b->e, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "bench bridge: floor bus: %s\n", err);
	return rc;
}

static int bus_open_b(struct bus *b, const struct opts *o, const char *servers,
		      const char *jstream, const char *tag)
{
	struct spate_config_stream *s;
	struct spate_config_source *src;
	char err[512], v[24];

	if (bus_config(b, 'B', tag, &s) < 0)
		return -ENOMEM;
	spate_config_add_source(b->cfg, "imp", "nats", "s", &src);
	spate_config_source_set(src, "servers", servers);
	spate_config_source_set(src, "jetstream_stream", jstream);
	snprintf(v, sizeof(v), "%u", o->batch);
	spate_config_source_set(src, "batch", v); /* as the libnats subscriber's */
	snprintf(v, sizeof(v), "%ums", o->fetch_ms);
	spate_config_source_set(src, "fetch_wait", v);
	spate_config_source_set(src, "format", spate_nats_format_names[o->format]);
	int rc = spate_engine_open(b->cfg, &b->e, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "bench bridge: bus B: %s\n", err);
		return rc;
	}
	rc = spate_sources_register_builtin(b->e, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "bench bridge: bus B: %s\n", err);
	return rc;
}

static void bus_close(struct bus *b)
{
	char cmd[300];

	spate_engine_close(b->e);
	spate_stream_unlink(b->name, "s");
	spate_config_free(b->cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench bridge: could not remove %s\n", b->dir);
}

/* Put n records of size bytes (send time in the first 8) at rate a second
 * (0: flat out; a full ring waits). */
struct prodarg {
	struct spate_engine *e;
	uint64_t n;
	size_t size;
	double rate;
	int rc;
};

static void *spate_produce(void *arg)
{
	struct prodarg *a = arg;
	struct spate_producer *p = NULL;
	char *buf = calloc(1, a->size < 8 ? 8 : a->size);
	uint64_t t0 = mono_ns();

	a->rc = -EIO;
	/* A full ring blocks (a futex wait, woken when the export releases):
	 * a producer spinning on it would take the CPU the export and the
	 * servers need (at 1 KiB the records outgrow A's ring). */
	if (!buf || spate_producer_open(spate_engine_stream(a->e, "s"), SPATE_RING_WAIT_BLOCK,
					SPATE_PRODUCER_F_WAIT_FULL, &p) < 0) {
		free(buf);
		return NULL;
	}
	for (uint64_t i = 0; i < a->n; i++) {
		if (a->rate > 0) {
			uint64_t due = t0 + (uint64_t)((double)i * 1e9 / a->rate), now = mono_ns();
			if (due > now)
				nap_ns(due - now);
		}
		uint64_t t = real_ns();
		memcpy(buf, &t, 8);
		char key[8];
		snprintf(key, sizeof(key), "k%u", (unsigned)(i % 64));
		if (spate_put(p, key, strlen(key), buf, a->size, NULL) < 0)
			break;
	}
	spate_producer_close(p);
	free(buf);
	a->rc = 0;
	return NULL;
}

/* Wait until consumer "export" of A has processed @p n records more than
 * @p base, tracking @p st. */
static int wait_exported(struct spate_engine *e, uint64_t base, struct steady *st)
{
	uint64_t deadline = mono_ns() + 120ull * 1000000000ull;
	struct spate_consumer_stats cs;

	while (mono_ns() < deadline) {
		if (spate_engine_consumer_stats(e, "export", &cs) == 0) {
			steady_at(st, cs.records - base);
			if (cs.records - base >= st->n) {
				st->t_end = mono_ns();
				return 0;
			}
		}
		/* 1 ms: a finer poll would take CPU from the cores the export
		 * and the servers share (the plain side counts in its ack
		 * handler, for free); 1 ms in seconds of steady state. */
		nap_ns(1000000);
	}
	return -ETIMEDOUT;
}

/* Wait until B's ring (shard 0) holds @p n records more than @p base,
 * tracking @p st: polled every 1 ms, as wait_exported() polls A's consumer
 * (the plain subscriber counts as it fetches). No reader: the import's
 * work ends in the ring, and a reader waking on every commit would take
 * CPU from the cores the source and the servers share, which the plain
 * subscriber's side does not pay. */
static int wait_imported(struct spate_ring *ring, uint64_t base, struct steady *st)
{
	uint64_t deadline = mono_ns() + 120ull * 1000000000ull, seq;

	while (mono_ns() < deadline) {
		spate_ring_tail(ring, NULL, &seq);
		steady_at(st, seq - base);
		if (seq - base >= st->n) {
			st->t_end = mono_ns();
			return 0;
		}
		nap_ns(1000000);
	}
	return -ETIMEDOUT;
}

/* Read B's ring (opened before the run) until @p n records arrived. */
struct ringarg {
	struct spate_ring_reader *rd;
	uint64_t n, got;
	struct spate_hist *hist;
	struct steady st;
};

static void *ring_read(void *arg)
{
	struct ringarg *a = arg;
	struct spate_ring_rec r[256];
	uint64_t deadline = mono_ns() + 120ull * 1000000000ull;

	steady_init(&a->st, a->n);
	while (a->got < a->n && mono_ns() < deadline) {
		int k = spate_ring_peek(a->rd, r, 256, UINT64_MAX);
		if (k <= 0) {
			/* Asleep until B's source commits (a futex wake), as a
			 * consumer of B would be: no CPU taken from the cores
			 * the bridge and the servers share. */
			spate_ring_reader_wait(a->rd, 1000000);
			continue;
		}
		uint64_t now = real_ns();
		for (int i = 0; a->hist && i < k; i++) {
			struct spate_kinesis_view v;
			uint64_t t0;
			if (spate_kinesis_view(&r[i], &v) == 0 && v.len >= 8) {
				memcpy(&t0, v.data, 8);
				spate_hist_record(a->hist, now - t0);
			}
		}
		a->got += (uint64_t)k;
		steady_at(&a->st, a->got);
		spate_ring_release(a->rd, (unsigned)k);
	}
	a->st.t_end = mono_ns();
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Cases                                                                    */
/* ------------------------------------------------------------------------ */

enum { X_EXPORT, X_IMPORT, X_THROUGH, X_N };
static const char *const dir_names[X_N] = { "export", "import", "through" };

/* One implementation's three cases at one size, one run. */
struct result {
	double rps[X_N];
	uint64_t p99, p50; /* through at 10% */
	double floor_rps;  /* libnats import + key + put into a stream (floor_put) */
};

static struct spate_hist *hist_new(void)
{
	struct spate_hist *h = malloc(sizeof(*h));

	if (h)
		spate_hist_init(h);
	return h;
}

/* Records of the latency phase: ~1.5 s at 10% of @p rate, 1000 at least
 * (a p99 of 10 samples above it), @p n at most. */
static uint64_t lat_records(double rate, uint64_t n)
{
	uint64_t k = (uint64_t)(rate * 0.1 * 1.5);

	k = k < 1000 ? 1000 : k;
	return k > n ? n : k;
}

/* Before an import case, both sides: wait (up to 10 s) until every replica
 * of JetStream stream @p name is current with no lag, then 200 ms more: the
 * export that just filled it leaves a replica catching up, which would
 * take the servers' CPU from whichever import went first after it. */
static void settle(struct conn *c, const char *name)
{
	uint64_t deadline = mono_ns() + 10ull * 1000000000ull;

	while (mono_ns() < deadline) {
		jsStreamInfo *si = NULL;
		bool done = false;
		if (js_GetStreamInfo(&si, c->js, name, NULL, NULL) == NATS_OK && si) {
			done = true;
			for (int i = 0; si->Cluster && i < si->Cluster->ReplicasLen; i++)
				if (!si->Cluster->Replicas[i]->Current || si->Cluster->Replicas[i]->Lag)
					done = false;
			jsStreamInfo_Destroy(si);
		}
		if (done)
			break;
		nap_ns(50000000);
	}
	nap_ns(200000000);
}

static void drop_stream(struct conn *c, const char *name)
{
	js_DeleteStream(c->js, name, NULL, NULL);
}

/* Plain libnats: export, then import of the same messages, then through
 * (publisher and subscriber at once), then the round trip at 10%. */
static int run_lib(const char *servers, const struct opts *o, size_t size, unsigned run,
		   struct result *out)
{
	struct conn c;
	struct spate_hist *hl = hist_new(), *hp = hist_new();
	char js1[64], js2[64], subj[64], idp[64], err[512];
	struct steady st;
	int rc = -EIO;
	pthread_t th;

	memset(out, 0, sizeof(*out));
	if (!hl || !hp || conn_open(&c, servers, hp, o->window, o->format) < 0)
		goto out;
	snprintf(js1, sizeof(js1), "BBL%zu_%d_%u", size, (int)getpid(), run);
	snprintf(subj, sizeof(subj), "bl.%zu.%d.%u", size, (int)getpid(), run);
	if (spate_nats_ensure_stream(c.js, js1, subj, 3, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench bridge: %s\n", err);
		goto conn;
	}
	steady_init(&st, o->n);
	c.st = &st;
	snprintf(idp, sizeof(idp), "l%zu.%u", size, run);
	lib_publish(&c, subj, idp, o->n, size, 0);
	st.t_end = mono_ns();
	c.st = NULL;
	/* Relaxed: the ack handlers ran before js_PublishAsyncComplete returned. */
	if (atomic_load_explicit(&c.acked, memory_order_relaxed) == o->n)
		out->rps[X_EXPORT] = steady_rate(&st);
	/* The import, and its floor (floor_put: the same messages again,
	 * another consumer): which reads the stream first alternates with the
	 * run (a second read may find the servers' caches warm). */
	for (int turn = 0; turn < 2; turn++) {
		if ((turn == 0) == (run % 2 == 0)) {
			struct subarg sa = { .c = &c, .o = o, .stream = js1, .durable = "bench",
					     .n = o->n };
			settle(&c, js1);
			lib_subscribe(&sa);
			out->rps[X_IMPORT] = sa.rc == 0 ? steady_rate(&sa.st) : 0;
			continue;
		}
		struct bus f = { 0 };
		char tag[24];
		snprintf(tag, sizeof(tag), "x%zur%u", size, run);
		struct subarg *sf = calloc(1, sizeof(*sf));
		struct spate_producer *fp = NULL;
		if (sf && bus_open_floor(&f, tag) == 0 &&
		    spate_producer_open(spate_engine_stream(f.e, "s"), SPATE_RING_WAIT_BLOCK, 0,
					&fp) == 0) {
			*sf = (struct subarg){ .c = &c, .o = o, .stream = js1, .durable = "floor",
					       .n = o->n, .prod = fp };
			settle(&c, js1);
			lib_subscribe(sf);
			out->floor_rps = sf->rc == 0 ? steady_rate(&sf->st) : 0;
			spate_producer_close(fp);
		}
		if (f.e)
			bus_close(&f);
		free(sf);
	}
	drop_stream(&c, js1);

	snprintf(js2, sizeof(js2), "BBT%zu_%d_%u", size, (int)getpid(), run);
	snprintf(subj, sizeof(subj), "bt.%zu.%d.%u", size, (int)getpid(), run);
	if (spate_nats_ensure_stream(c.js, js2, subj, 3, 0, err, sizeof(err)) < 0)
		goto conn;
	struct subarg sb = { .c = &c, .o = o, .stream = js2, .durable = "sat", .n = o->n };
	pthread_create(&th, NULL, lib_subscribe, &sb);
	snprintf(idp, sizeof(idp), "t%zu.%u", size, run);
	lib_publish(&c, subj, idp, o->n, size, 0);
	pthread_join(th, NULL);
	out->rps[X_THROUGH] = sb.rc == 0 ? steady_rate(&sb.st) : 0;
	uint64_t nl = lat_records(out->rps[X_THROUGH], o->n);
	/* The same consumer goes on (as B's source does on the spate side):
	 * no consumer creation inside the latency window. */
	struct subarg sl = { .c = &c, .o = o, .stream = js2, .durable = "sat", .n = nl, .hist = hl };
	pthread_create(&th, NULL, lib_subscribe, &sl);
	snprintf(idp, sizeof(idp), "u%zu.%u", size, run);
	nap_ns(200000000);
	if (out->rps[X_THROUGH] > 0)
		lib_publish(&c, subj, idp, nl, size, out->rps[X_THROUGH] * 0.1);
	pthread_join(th, NULL);
	if (sl.rc == 0) {
		out->p99 = spate_hist_percentile(hl, 99);
		out->p50 = spate_hist_percentile(hl, 50);
	}
	drop_stream(&c, js2);
	rc = 0;
conn:
	conn_close(&c);
out:
	free(hl);
	free(hp);
	return rc;
}

/* The bridge: bus A exports (a producer puts flat out), bus B imports what
 * A exported, then both at once, then the round trip at 10%. */
static int run_spate(const char *servers, const struct opts *o, size_t size, unsigned run,
		     struct result *out)
{
	struct conn c;
	struct spate_hist *h = hist_new();
	struct bus a = { 0 }, b = { 0 };
	char js[64], subj[96], tag[24], err[512];
	struct steady st;
	pthread_t th;
	int rc = -EIO;

	memset(out, 0, sizeof(*out));
	if (!h || conn_open(&c, servers, NULL, o->window, o->format) < 0)
		goto out;
	snprintf(js, sizeof(js), "BBS%zu_%d_%u", size, (int)getpid(), run);
	snprintf(tag, sizeof(tag), "x%zur%u", size, run);
	snprintf(subj, sizeof(subj), "bb.bbA%d%s.>", (int)getpid(), tag);
	if (spate_nats_ensure_stream(c.js, js, subj, 3, 0, err, sizeof(err)) < 0)
		goto conn;
	if (bus_open_a(&a, o, servers, js, tag) < 0 || spate_engine_start(a.e) < 0)
		goto buses;
	/* Export: the producer fills A's ring (waiting when full) while the
	 * export drains it. */
	struct prodarg pa = { .e = a.e, .n = o->n, .size = size };
	steady_init(&st, o->n);
	pthread_create(&th, NULL, spate_produce, &pa);
	int w = wait_exported(a.e, 0, &st);
	pthread_join(th, NULL);
	if (w < 0)
		goto buses;
	out->rps[X_EXPORT] = steady_rate(&st);
	/* Import: B reads back what A exported. A is stopped meanwhile (its
	 * idle workers are not the import's work; the plain subscriber's
	 * case runs alone too) and started again for `through`. */
	spate_engine_stop(a.e);
	if (bus_open_b(&b, o, servers, js, tag) < 0)
		goto buses;
	settle(&c, js);
	struct spate_ring *ringb = spate_stream_ring(spate_engine_stream(b.e, "s"), 0);
	struct steady si;
	steady_init(&si, o->n);
	if (spate_engine_start(b.e) < 0)
		goto buses;
	if (wait_imported(ringb, 0, &si) < 0)
		goto buses;
	out->rps[X_IMPORT] = steady_rate(&si);
	/* Through: both running, a reader of B from here on. */
	struct ringarg ra = { .n = o->n };
	if (spate_ring_reader_open(ringb, SPATE_RING_START_LATEST, SPATE_RING_WAIT_BLOCK,
				   &ra.rd) < 0)
		goto buses;
	if (spate_engine_start(a.e) < 0)
		goto reader;
	pthread_create(&th, NULL, ring_read, &ra);
	pa = (struct prodarg){ .e = a.e, .n = o->n, .size = size };
	spate_produce(&pa);
	pthread_join(th, NULL);
	out->rps[X_THROUGH] = ra.got == o->n ? steady_rate(&ra.st) : 0;
	uint64_t nl = lat_records(out->rps[X_THROUGH], o->n);
	ra.n = nl;
	ra.got = 0;
	ra.hist = h;
	pthread_create(&th, NULL, ring_read, &ra);
	pa = (struct prodarg){ .e = a.e, .n = nl, .size = size, .rate = out->rps[X_THROUGH] * 0.1 };
	if (pa.rate > 0)
		spate_produce(&pa);
	pthread_join(th, NULL);
	if (ra.got == nl) {
		out->p99 = spate_hist_percentile(h, 99);
		out->p50 = spate_hist_percentile(h, 50);
	}
	rc = 0;
reader:
	spate_ring_reader_close(ra.rd);
buses:
	if (a.e)
		bus_close(&a);
	if (b.e)
		bus_close(&b);
	drop_stream(&c, js);
conn:
	conn_close(&c);
out:
	free(h);
	return rc;
}

int spate_bench_bridge_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, 0, 'j' },      { "servers", required_argument, 0, 's' },
		{ "records", required_argument, 0, 'n' }, { "sizes", required_argument, 0, 'z' },
		{ "runs", required_argument, 0, 'r' },  { "window", required_argument, 0, 'w' },
		{ "batch", required_argument, 0, 'b' },  { "lanes", required_argument, 0, 'l' },
		{ "format", required_argument, 0, 'f' }, { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *servers = NULL;
	char sizes[64] = "64,1024";
	struct opts o = { .n = 60000, .runs = 3, .window = 4096, .lanes = 2, .batch = 256,
			  .fetch_ms = 5 };
	int json = 0, c, rc = 0;
	struct cluster cl = { 0 };

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'j')
			json = 1;
		else if (c == 's')
			servers = optarg;
		else if (c == 'n')
			o.n = strtoull(optarg, NULL, 10);
		else if (c == 'z')
			snprintf(sizes, sizeof(sizes), "%s", optarg);
		else if (c == 'r')
			o.runs = (unsigned)strtoul(optarg, NULL, 10);
		else if (c == 'w')
			o.window = (uint32_t)strtoul(optarg, NULL, 10);
		else if (c == 'b')
			o.batch = (uint32_t)strtoul(optarg, NULL, 10);
		else if (c == 'l')
			o.lanes = (uint32_t)strtoul(optarg, NULL, 10);
		else if (c == 'f' && !strcmp(optarg, "envelope"))
			o.format = SPATE_NATS_FORMAT_ENVELOPE;
		else if (c == 'f' && !strcmp(optarg, "headers"))
			o.format = SPATE_NATS_FORMAT_HEADERS;
		else {
			fprintf(c == 'h' ? stdout : stderr,
				"usage: spate bench bridge [--json] [--servers URLS] [--records N] "
				"[--sizes 64,1024]\n"
				"       [--runs R] [--window ACKS] [--lanes L] [--batch FETCH]\n"
				"       [--format headers|envelope]\n"
				"  bus A -> NATS JetStream -> bus B against a plain libnats publisher\n"
				"  and pull subscriber; without --servers, starts a 3-node nats-server\n"
				"  cluster on loopback (replicas 3). Each of R interleaved runs does\n"
				"  every case with N records (default 60000); figures are medians,\n"
				"  ratios the median of the runs' same-run ratios. Both sides get the\n"
				"  same window of pending acks (default 4096; the export: L lanes,\n"
				"  default 2, of window/L) and the same fetch (default 256 messages, 5 ms);\n"
				"  --format: the bridge's payload format, the plain publisher sending the\n"
				"  same bytes (default headers)\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (o.n < 100 || o.runs < 1 || o.runs > 15 || o.lanes < 1 || o.lanes > 64 ||
	    o.window < o.lanes || o.window > 1000000 || o.batch < 1 || o.batch > 256) {
		fprintf(stderr, "bench bridge: --records >= 100, --runs 1..15, --lanes 1..64, "
				"--window lanes..1000000, --batch 1..256\n");
		return -EINVAL;
	}
	if (!servers) {
		rc = cluster_start(&cl);
		if (rc < 0) {
			fprintf(stderr, "bench bridge: cannot start nats-server: %s\n", strerror(-rc));
			return rc;
		}
		servers = cl.servers;
	}
	/* Wait for the cluster's JetStream (a stream with 3 replicas). */
	{
		struct conn w;
		char err[256] = "";
		int ok = 0;
		if (conn_open(&w, servers, NULL, o.window, o.format) == 0) {
			for (int i = 0; i < 300 && !ok; i++) {
				ok = spate_nats_ensure_stream(w.js, "BBWARM", "bbwarm", 3, 0, err,
							      sizeof(err)) == 0;
				if (!ok)
					nap_ns(100000000);
			}
			if (ok)
				js_DeleteStream(w.js, "BBWARM", NULL, NULL);
		}
		conn_close(&w);
		if (!ok) {
			fprintf(stderr, "bench bridge: no JetStream cluster at %s: %s\n", servers, err);
			if (cl.pid[0])
				cluster_stop(&cl);
			return -EIO;
		}
	}
	double rtt = spate_bench_c2c_rtt_ns(-1, -1), load[3] = { 0 };
	size_t szs[8];
	unsigned nsz = 0;
	char *save = NULL;
	for (char *t = strtok_r(sizes, ",", &save); t && nsz < 8; t = strtok_r(NULL, ",", &save)) {
		szs[nsz] = strtoull(t, NULL, 10);
		if (szs[nsz] < 8 || szs[nsz] > 1 << 20) {
			fprintf(stderr, "bench bridge: record size %zu: 8 .. 1 MiB\n", szs[nsz]);
			if (cl.pid[0])
				cluster_stop(&cl);
			return -EINVAL;
		}
		nsz++;
	}
	struct result (*res)[2] = calloc((size_t)nsz * o.runs, sizeof(*res)); /* [run*nsz+size][lib, spate] */
	if (!res) {
		if (cl.pid[0])
			cluster_stop(&cl);
		return -ENOMEM;
	}
	if (getloadavg(load, 3) < 0)
		load[0] = -1;
	/* Interleaved: every run does every size, libnats and spate, the one
	 * that goes first alternating, so a drift of the machine's load over
	 * the minutes of a bench lands on both sides. */
	for (unsigned r = 0; r < o.runs; r++)
		for (unsigned z = 0; z < nsz; z++) {
			struct result *x = res[r * nsz + z];
			for (int k = 0; k < 2; k++) {
				int spate_side = (int)((r + z + (unsigned)k) % 2);
				int e = spate_side ? run_spate(servers, &o, szs[z], r, &x[1])
						   : run_lib(servers, &o, szs[z], r, &x[0]);
				if (e < 0) {
					fprintf(stderr, "bench bridge: %s, %zu B, run %u: failed\n",
						spate_side ? "spate" : "libnats", szs[z], r + 1);
					rc = -EIO;
				}
			}
			if (!json)
				fprintf(stderr, "bench bridge: run %u, %zu B: export %.0f / %.0f, import "
						"%.0f / %.0f, through %.0f / %.0f rec/s (spate / libnats)\n",
					r + 1, szs[z], x[1].rps[0], x[0].rps[0], x[1].rps[1], x[0].rps[1],
					x[1].rps[2], x[0].rps[2]);
		}
	double load_after[3] = { 0 };
	if (getloadavg(load_after, 3) < 0)
		load_after[0] = -1;
	json_object *root = json_object_new_object(), *cases = json_object_new_array(),
		    *ratios = json_object_new_array();
	double *v = calloc(o.runs, sizeof(*v)), *q = calloc(o.runs, sizeof(*q));
	for (unsigned z = 0; v && q && z < nsz; z++) {
		double med[2][X_N];
		uint64_t p99[2], p50[2];
		for (int side = 0; side < 2; side++) {
			for (int d = 0; d < X_N; d++) {
				json_object *c1 = json_object_new_object(), *runs = json_object_new_array();
				for (unsigned r = 0; r < o.runs; r++) {
					v[r] = res[r * nsz + z][side].rps[d];
					json_object_array_add(runs, json_object_new_double(v[r]));
				}
				med[side][d] = spate_bench_median(v, o.runs);
				for (unsigned r = 0; r < o.runs; r++)
					v[r] = (double)res[r * nsz + z][side].p99;
				p99[side] = (uint64_t)spate_bench_median(v, o.runs);
				for (unsigned r = 0; r < o.runs; r++)
					v[r] = (double)res[r * nsz + z][side].p50;
				p50[side] = (uint64_t)spate_bench_median(v, o.runs);
				json_object_object_add(c1, "impl",
						       json_object_new_string(side ? "spate" : "libnats"));
				json_object_object_add(c1, "direction", json_object_new_string(dir_names[d]));
				json_object_object_add(c1, "record_size", json_object_new_int((int)szs[z]));
				json_object_object_add(c1, "records_per_sec", json_object_new_double(med[side][d]));
				json_object_object_add(c1, "p99_ns",
						       json_object_new_int64(d == X_THROUGH ? (int64_t)p99[side] : 0));
				json_object_object_add(c1, "p50_ns",
						       json_object_new_int64(d == X_THROUGH ? (int64_t)p50[side] : 0));
				json_object_object_add(c1, "runs_records_per_sec", runs);
				json_object_array_add(cases, c1);
				if (!json)
					printf("%-8s %-8s %6zu B  %12.0f records/s%s", side ? "spate" : "libnats",
					       dir_names[d], szs[z], med[side][d], d == X_THROUGH ? "" : "\n");
				if (!json && d == X_THROUGH)
					printf("  at 10%%: p50 %8.1f us  p99 %8.1f us\n", (double)p50[side] / 1e3,
					       (double)p99[side] / 1e3);
			}
		}
		for (int d = 0; d < X_N; d++) {
			unsigned k = 0, kp = 0;
			for (unsigned r = 0; r < o.runs; r++) {
				const struct result *x = res[r * nsz + z];
				if (x[0].rps[d] > 0 && x[1].rps[d] > 0)
					v[k++] = x[1].rps[d] / x[0].rps[d];
				if (d == X_THROUGH && x[0].p99 && x[1].p99)
					q[kp++] = (double)x[1].p99 / (double)x[0].p99;
			}
			if (!k)
				continue;
			json_object *r1 = json_object_new_object();
			double ratio = spate_bench_median(v, k);
			json_object_object_add(r1, "direction", json_object_new_string(dir_names[d]));
			json_object_object_add(r1, "record_size", json_object_new_int((int)szs[z]));
			json_object_object_add(r1, "spate_over_libnats", json_object_new_double(ratio));
			json_object_object_add(r1, "ratio_of_medians",
					       json_object_new_double(med[0][d] > 0 ? med[1][d] / med[0][d] : 0));
			if (kp)
				json_object_object_add(r1, "p99_spate_over_libnats_round_trip",
						       json_object_new_double(spate_bench_median(q, kp)));
			if (d == X_IMPORT) {
				/* The floor (floor_put): the plain subscriber that
				 * also reads each key and puts into a stream. */
				unsigned kf = 0, kr = 0;
				json_object *c1 = json_object_new_object(), *runs = json_object_new_array();
				for (unsigned r = 0; r < o.runs; r++) {
					const struct result *x = res[r * nsz + z];
					json_object_array_add(runs, json_object_new_double(x[0].floor_rps));
					if (x[0].floor_rps > 0) {
						q[kf++] = x[0].floor_rps;
						if (x[1].rps[d] > 0)
							v[kr++] = x[1].rps[d] / x[0].floor_rps;
					}
				}
				double fm = kf ? spate_bench_median(q, kf) : 0;
				json_object_object_add(c1, "impl", json_object_new_string("libnats_floor"));
				json_object_object_add(c1, "direction", json_object_new_string("import"));
				json_object_object_add(c1, "record_size", json_object_new_int((int)szs[z]));
				json_object_object_add(c1, "records_per_sec", json_object_new_double(fm));
				json_object_object_add(c1, "p99_ns", json_object_new_int64(0));
				json_object_object_add(c1, "p50_ns", json_object_new_int64(0));
				json_object_object_add(c1, "runs_records_per_sec", runs);
				json_object_array_add(cases, c1);
				if (kf)
					json_object_object_add(r1, "floor_over_libnats",
							       json_object_new_double(med[0][d] > 0 ? fm / med[0][d] : 0));
				if (kr)
					json_object_object_add(r1, "spate_over_floor",
							       json_object_new_double(spate_bench_median(v, kr)));
				if (!json && kf)
					printf("  import %zu B: floor (libnats + key + put) %.0f records/s, "
					       "spate / floor = %.2f\n",
					       szs[z], fm, kr ? spate_bench_median(v, kr) : 0);
			}
			json_object_array_add(ratios, r1);
			if (!json)
				printf("  %s %zu B: spate / libnats = %.2f (median of %u same-run ratios)\n",
				       dir_names[d], szs[z], ratio, k);
			if (!json && d == X_THROUGH && kp)
				printf("  through %zu B at 10%%: p99 spate / libnats round trip = %.2f\n",
				       szs[z], spate_bench_median(q, kp));
		}
	}
	free(v);
	free(q);
	free(res);
	json_object_object_add(root, "servers", json_object_new_string(servers));
	json_object_object_add(root, "records", json_object_new_int64((int64_t)o.n));
	json_object_object_add(root, "runs", json_object_new_int((int)o.runs));
	json_object_object_add(root, "window", json_object_new_int((int)o.window));
	json_object_object_add(root, "export_lanes", json_object_new_int((int)o.lanes));
	json_object_object_add(root, "fetch_batch", json_object_new_int((int)o.batch));
	json_object_object_add(root, "fetch_wait_ms", json_object_new_int((int)o.fetch_ms));
	json_object_object_add(root, "format", json_object_new_string(spate_nats_format_names[o.format]));
	json_object_object_add(root, "c2c_rtt_ns", json_object_new_double(rtt));
	json_object_object_add(root, "load_before", json_object_new_double(load[0]));
	json_object_object_add(root, "load_after", json_object_new_double(load_after[0]));
	json_object_object_add(root, "cases", cases);
	json_object_object_add(root, "ratios", ratios);
	if (json)
		printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	else
		printf("cross-core round trip %.0f ns, load %.2f -> %.2f\n", rtt, load[0], load_after[0]);
	json_object_put(root);
	if (cl.pid[0])
		cluster_stop(&cl);
	return rc;
}
