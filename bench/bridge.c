/* SPDX-License-Identifier: MIT */
/*
 * bridge.c - `spate bench bridge`: records/s through the NATS JetStream
 * bridge (bus A -> JetStream -> bus B) against a plain libnats publisher and
 * pull subscriber on the same cluster, same record size, same run.
 *
 * The cluster: --servers URLS, or (default) three nats-server processes
 * started here on loopback (file storage in a temporary directory,
 * replicas 3 for every stream), stopped at the end. For each record size
 * (64 B and 1 KiB by default), --records N (default 20000) records:
 *
 *   libnats export   an async JetStream publisher (js_PublishMsgAsync with
 *                    Nats-Msg-Id, 4096 acks pending at most) publishes N
 *                    messages and waits for every ack; p99 is publish ->
 *                    ack of each message.
 *   libnats import   a pull subscriber (consumer MSG.NEXT requests of 256,
 *                    ack each) reads those N messages back.
 *   libnats through  publisher and subscriber at once: N messages, time to
 *                    the last one fetched; then the round trip at 10% of
 *                    that rate: p99 of publish -> fetched (the payload
 *                    carries its send time). The subscriber pulls as the
 *                    nats source does (plugins/nats_conn.h): requests of
 *                    up to 256 messages that wait at most 5 ms to fill.
 *   spate export     bus A (1 shard) with the nats plugin as a consumer
 *                    (batch_window 10 ms, parallelization 4: four batches
 *                    in flight); a producer puts N records (64 keys);
 *                    time until JetStream acknowledged all of them.
 *   spate import     bus B with a `nats` source reading them back into its
 *                    stream; time until the last one is in B's ring.
 *   spate through    A and B at once: put into A, read from B's ring; then
 *                    at 10% of that rate, p99 of put into A -> in B's ring.
 *
 * Cases {impl: spate|libnats, direction: export|import|through,
 * record_size, records_per_sec, p99_ns}, plus the same-run ratios spate /
 * libnats. The machine's other work moves every figure: compare ratios of
 * one run, not figures of two.
 *
 * Limits: one shard, one connection per side (a single-stream bridge; more
 * shards export in parallel, one connection each). The clocks are one
 * machine's CLOCK_REALTIME.
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
/* Plain libnats                                                            */
/* ------------------------------------------------------------------------ */

struct conn {
	struct spate_nats_conn_cfg cc;
	natsConnection *nc;
	jsCtx *js;
	/* Publisher's acks. */
	_Atomic uint64_t acked, failed;
	pthread_mutex_t hl;
	struct spate_hist *hist; /* publish -> ack (ns) */
};

static void pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct conn *c = closure;
	uint64_t t0 = 0;

	(void)js;
	if (natsMsg_GetDataLength(msg) >= 8)
		memcpy(&t0, natsMsg_GetData(msg), 8);
	if (pa) {
		pthread_mutex_lock(&c->hl);
		spate_hist_record(c->hist, real_ns() - t0);
		pthread_mutex_unlock(&c->hl);
		/* Relaxed: counts read after js_PublishAsyncComplete. */
		atomic_fetch_add_explicit(&c->acked, 1, memory_order_relaxed);
	} else {
		(void)pae;
		/* Relaxed: as above. */
		atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
	}
	natsMsg_Destroy(msg);
}

static int conn_open(struct conn *c, const char *servers, struct spate_hist *h)
{
	natsOptions *o = NULL;
	jsOptions jo;
	char err[256];

	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->hl, NULL);
	c->hist = h;
	c->cc.servers = servers;
	c->cc.timeout_ms = 2000;
	if (spate_nats_options(&c->cc, NULL, NULL, NULL, &o, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench bridge: %s\n", err);
		return -EINVAL;
	}
	natsStatus s = natsConnection_Connect(&c->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED)
		return -EIO;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = 4096;
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
 * @p rate a second (0: as fast as the window allows). */
static int lib_publish(struct conn *c, const char *subject, const char *idp, uint64_t n,
		       size_t size, double rate)
{
	char *buf = calloc(1, size < 8 ? 8 : size), id[96];
	uint64_t t0 = mono_ns();

	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		if (rate > 0) {
			uint64_t due = t0 + (uint64_t)((double)i * 1e9 / rate), now = mono_ns();
			if (due > now)
				nap_ns(due - now);
		}
		uint64_t t = real_ns();
		memcpy(buf, &t, 8);
		natsMsg *m = NULL;
		jsPubOptions po;
		natsMsg_Create(&m, subject, NULL, buf, (int)size);
		snprintf(id, sizeof(id), "%s/%" PRIu64, idp, i);
		natsMsgHeader_Set(m, SPATE_NATS_H_MSGID, id);
		jsPubOptions_Init(&po);
		po.MsgId = id;
		while (js_PublishMsgAsync(c->js, &m, &po) != NATS_OK)
			nap_ns(1000000);
	}
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = 30000;
	js_PublishAsyncComplete(c->js, &po);
	free(buf);
	return 0;
}

struct subarg {
	struct conn *c;
	const char *stream, *durable;
	uint64_t n, got;
	struct spate_hist *hist; /* publish -> fetched (ns), or NULL */
	bool deliver_new;        /* only messages published from now on */
	int batch;               /* most messages per fetch (0: 256) */
	uint64_t t_end;
	int rc;
};

static void *lib_subscribe(void *arg)
{
	struct subarg *a = arg;
	struct spate_nats_pull p;
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	natsMsg *msgs[256];
	int max = a->batch ? a->batch : 256;

	jsConsumerConfig_Init(&cc);
	cc.Durable = a->durable;
	cc.AckPolicy = js_AckExplicit;
	cc.MaxAckPending = 20000;
	if (a->deliver_new)
		cc.DeliverPolicy = js_DeliverNew;
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
		/* The fetch policy of the nats source: requests of up to 256
		 * that wait at most 5 ms to fill. */
		int k = spate_nats_pull_fetch(&p, msgs, max, 5);
		if (k <= 0)
			continue;
		uint64_t now = real_ns();
		for (int i = 0; i < k; i++) {
			if (a->hist && natsMsg_GetDataLength(msgs[i]) >= 8) {
				uint64_t t0;
				memcpy(&t0, natsMsg_GetData(msgs[i]), 8);
				spate_hist_record(a->hist, now - t0);
			}
			spate_nats_ack(a->c->nc, msgs[i]);
			natsMsg_Destroy(msgs[i]);
		}
		a->got += (uint64_t)k;
	}
	a->t_end = mono_ns();
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

static int bus_open_a(struct bus *b, const char *servers, const char *jstream, const char *tag)
{
	struct spate_config_stream *s;
	struct spate_config_consumer *k;
	char err[512];

	snprintf(b->name, sizeof(b->name), "bbA%d%s", (int)getpid(), tag);
	snprintf(b->dir, sizeof(b->dir), "/tmp/spate-bench-bridge-%s", b->name);
	if (spate_config_new_default(b->name, &b->cfg) < 0)
		return -ENOMEM;
	snprintf(b->cfg->state_dir, sizeof(b->cfg->state_dir), "%s", b->dir);
	spate_config_add_stream(b->cfg, "s", &s);
	s->ring_size = 16u << 20;
	s->huge_pages = SPATE_CONFIG_HUGE_OFF;
	spate_config_add_consumer(b->cfg, "export", "s", "nats", &k);
	k->starting_position = SPATE_CONFIG_START_TRIM_HORIZON;
	k->batch_size = 2048;
	/* A batch is done once JetStream acked all of it: let batches fill
	 * for a moment rather than wait for an ack round trip per record,
	 * and keep several batches in flight (lanes: each key stays on one
	 * lane, so per-key order holds). */
	k->batch_window_ns = 10000000;
	k->parallelization = 4;
	k->retry_backoff_ns = 10000000;
	spate_config_consumer_set_option(k, "servers", servers);
	spate_config_consumer_set_option(k, "bus", b->name);
	spate_config_consumer_set_option(k, "jetstream_stream", jstream);
	spate_config_consumer_set_option(k, "subject", "bb.{bus}.{stream}");
	int rc = spate_engine_open(b->cfg, &b->e, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "bench bridge: bus A: %s\n", err);
	return rc;
}

static int bus_open_b(struct bus *b, const char *servers, const char *jstream, const char *tag)
{
	struct spate_config_stream *s;
	struct spate_config_source *src;
	char err[512];

	snprintf(b->name, sizeof(b->name), "bbB%d%s", (int)getpid(), tag);
	snprintf(b->dir, sizeof(b->dir), "/tmp/spate-bench-bridge-%s", b->name);
	if (spate_config_new_default(b->name, &b->cfg) < 0)
		return -ENOMEM;
	snprintf(b->cfg->state_dir, sizeof(b->cfg->state_dir), "%s", b->dir);
	spate_config_add_stream(b->cfg, "s", &s);
	s->ring_size = 16u << 20;
	s->huge_pages = SPATE_CONFIG_HUGE_OFF;
	spate_config_add_source(b->cfg, "imp", "nats", "s", &src);
	spate_config_source_set(src, "servers", servers);
	spate_config_source_set(src, "jetstream_stream", jstream);
	spate_config_source_set(src, "batch", "256");
	spate_config_source_set(src, "fetch_wait", "5ms"); /* as the libnats subscriber's */
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

/* Put @p n records of @p size bytes (send time in the first 8) at @p rate. */
static int spate_produce(struct spate_engine *e, uint64_t n, size_t size, double rate)
{
	struct spate_producer *p = NULL;
	char *buf = calloc(1, size < 8 ? 8 : size);
	uint64_t t0 = mono_ns();

	if (!buf || spate_producer_open(spate_engine_stream(e, "s"), SPATE_RING_WAIT_YIELD, 0, &p) < 0) {
		free(buf);
		return -EIO;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (rate > 0) {
			uint64_t due = t0 + (uint64_t)((double)i * 1e9 / rate), now = mono_ns();
			if (due > now)
				nap_ns(due - now);
		}
		uint64_t t = real_ns();
		memcpy(buf, &t, 8);
		char key[8];
		snprintf(key, sizeof(key), "k%u", (unsigned)(i % 64));
		if (spate_put(p, key, strlen(key), buf, size, NULL) < 0)
			break;
	}
	spate_producer_close(p);
	free(buf);
	return 0;
}

/* Wait until consumer "export" of A has processed @p n records. */
static int wait_exported(struct spate_engine *e, uint64_t n)
{
	uint64_t deadline = mono_ns() + 120ull * 1000000000ull;
	struct spate_consumer_stats st;

	while (mono_ns() < deadline) {
		if (spate_engine_consumer_stats(e, "export", &st) == 0 && st.records >= n)
			return 0;
		nap_ns(200000);
	}
	return -ETIMEDOUT;
}

/* Read B's ring (opened before the run) until @p n records arrived. */
struct ringarg {
	struct spate_ring_reader *rd;
	uint64_t n, got, t_end;
	struct spate_hist *hist;
};

static void *ring_read(void *arg)
{
	struct ringarg *a = arg;
	struct spate_ring_rec r[256];
	uint64_t deadline = mono_ns() + 120ull * 1000000000ull;

	while (a->got < a->n && mono_ns() < deadline) {
		int k = spate_ring_peek(a->rd, r, 256, UINT64_MAX);
		if (k <= 0) {
			nap_ns(20000);
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
		spate_ring_release(a->rd, (unsigned)k);
	}
	a->t_end = mono_ns();
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Cases                                                                    */
/* ------------------------------------------------------------------------ */

struct result {
	const char *impl, *dir;
	size_t size;
	double rps;
	uint64_t p99, p50;
};

static void add(json_object *cases, const struct result *r)
{
	json_object *c = json_object_new_object();

	json_object_object_add(c, "impl", json_object_new_string(r->impl));
	json_object_object_add(c, "direction", json_object_new_string(r->dir));
	json_object_object_add(c, "record_size", json_object_new_int((int)r->size));
	json_object_object_add(c, "records_per_sec", json_object_new_double(r->rps));
	json_object_object_add(c, "p99_ns", json_object_new_int64((int64_t)r->p99));
	json_object_object_add(c, "p50_ns", json_object_new_int64((int64_t)r->p50));
	json_object_array_add(cases, c);
}

static struct spate_hist *hist_new(void)
{
	struct spate_hist *h = malloc(sizeof(*h));

	if (h)
		spate_hist_init(h);
	return h;
}

/* One record size: the six cases. */
static int run_size(const char *servers, size_t size, uint64_t n, struct result out[6])
{
	struct conn c;
	struct spate_hist *h1 = hist_new(), *h2 = hist_new(), *h3 = hist_new(), *h4 = hist_new();
	char js1[64], js2[64], js3[64], subj[64], idp[64];
	char err[512];
	int rc = -EIO;
	pthread_t th;

	if (!h1 || !h2 || !h3 || !h4)
		goto out;
	if (conn_open(&c, servers, h1) < 0)
		goto out;
	/* libnats export, then import of the same messages. */
	snprintf(js1, sizeof(js1), "BBL%zu_%d", size, (int)getpid());
	snprintf(subj, sizeof(subj), "bl.%zu.%d", size, (int)getpid());
	if (spate_nats_ensure_stream(c.js, js1, subj, 3, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench bridge: %s\n", err);
		goto conn;
	}
	snprintf(idp, sizeof(idp), "l%zu", size);
	uint64_t t0 = mono_ns();
	lib_publish(&c, subj, idp, n, size, 0);
	double secs = (double)(mono_ns() - t0) / 1e9;
	out[0] = (struct result){ "libnats", "export", size, (double)n / secs,
				  spate_hist_percentile(h1, 99), spate_hist_percentile(h1, 50) };
	struct subarg sa = { .c = &c, .stream = js1, .durable = "bench", .n = n };
	t0 = mono_ns();
	lib_subscribe(&sa);
	out[1] = (struct result){ "libnats", "import", size,
				  sa.rc == 0 ? (double)n / ((double)(sa.t_end - t0) / 1e9) : 0, 0, 0 };
	/* libnats through: publisher and subscriber at once; then 10%. */
	snprintf(js2, sizeof(js2), "BBT%zu_%d", size, (int)getpid());
	snprintf(subj, sizeof(subj), "bt.%zu.%d", size, (int)getpid());
	if (spate_nats_ensure_stream(c.js, js2, subj, 3, 0, err, sizeof(err)) < 0)
		goto conn;
	struct subarg st = { .c = &c, .stream = js2, .durable = "sat", .n = n };
	t0 = mono_ns();
	pthread_create(&th, NULL, lib_subscribe, &st);
	snprintf(idp, sizeof(idp), "t%zu", size);
	lib_publish(&c, subj, idp, n, size, 0);
	pthread_join(th, NULL);
	double lib_through = st.rc == 0 ? (double)n / ((double)(st.t_end - t0) / 1e9) : 0;
	uint64_t nl = n / 4 < 2000 ? (n < 2000 ? n : 2000) : n / 4;
	struct subarg sl = { .c = &c, .stream = js2, .durable = "lat", .n = nl, .hist = h2,
			     .deliver_new = true };
	pthread_create(&th, NULL, lib_subscribe, &sl);
	snprintf(idp, sizeof(idp), "u%zu", size);
	nap_ns(200000000);
	lib_publish(&c, subj, idp, nl, size, lib_through * 0.1);
	pthread_join(th, NULL);
	out[2] = (struct result){ "libnats", "through", size, lib_through,
				  sl.rc == 0 ? spate_hist_percentile(h2, 99) : 0,
				  sl.rc == 0 ? spate_hist_percentile(h2, 50) : 0 };

	/* spate export, import, through. */
	struct bus a = { 0 }, b = { 0 };
	char tag[16];
	snprintf(js3, sizeof(js3), "BBS%zu_%d", size, (int)getpid());
	snprintf(tag, sizeof(tag), "x%zu", size);
	snprintf(subj, sizeof(subj), "bb.bbA%d%s.>", (int)getpid(), tag);
	if (spate_nats_ensure_stream(c.js, js3, subj, 3, 0, err, sizeof(err)) < 0)
		goto conn;
	if (bus_open_a(&a, servers, js3, tag) < 0 || spate_engine_start(a.e) < 0)
		goto buses;
	t0 = mono_ns();
	spate_produce(a.e, n, size, 0);
	if (wait_exported(a.e, n) < 0)
		goto buses;
	out[3] = (struct result){ "spate", "export", size,
				  (double)n / ((double)(mono_ns() - t0) / 1e9), 0, 0 };
	if (bus_open_b(&b, servers, js3, tag) < 0)
		goto buses;
	struct ringarg ra = { .n = n };
	if (spate_ring_reader_open(spate_stream_ring(spate_engine_stream(b.e, "s"), 0),
				   SPATE_RING_START_OLDEST, SPATE_RING_WAIT_YIELD, &ra.rd) < 0)
		goto buses;
	t0 = mono_ns();
	if (spate_engine_start(b.e) < 0)
		goto buses;
	ring_read(&ra);
	out[4] = (struct result){ "spate", "import", size,
				  ra.got == n ? (double)n / ((double)(ra.t_end - t0) / 1e9) : 0, 0, 0 };
	/* Through: both running; the reader continues where it is. */
	ra.n = n;
	ra.got = 0;
	t0 = mono_ns();
	pthread_create(&th, NULL, ring_read, &ra);
	spate_produce(a.e, n, size, 0);
	pthread_join(th, NULL);
	double sp_through = ra.got == n ? (double)n / ((double)(ra.t_end - t0) / 1e9) : 0;
	ra.n = nl;
	ra.got = 0;
	ra.hist = h4;
	pthread_create(&th, NULL, ring_read, &ra);
	spate_produce(a.e, nl, size, sp_through * 0.1);
	pthread_join(th, NULL);
	out[5] = (struct result){ "spate", "through", size, sp_through,
				  ra.got == nl ? spate_hist_percentile(h4, 99) : 0,
				  ra.got == nl ? spate_hist_percentile(h4, 50) : 0 };
	spate_ring_reader_close(ra.rd);
	rc = 0;
buses:
	if (a.e)
		bus_close(&a);
	if (b.e)
		bus_close(&b);
conn:
	conn_close(&c);
out:
	free(h1);
	free(h2);
	free(h3);
	free(h4);
	return rc;
}

int spate_bench_bridge_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, 0, 'j' },      { "servers", required_argument, 0, 's' },
		{ "records", required_argument, 0, 'n' }, { "sizes", required_argument, 0, 'z' },
		{ "help", no_argument, 0, 'h' },      { 0, 0, 0, 0 },
	};
	const char *servers = NULL;
	char sizes[64] = "64,1024";
	uint64_t n = 20000;
	int json = 0, c, rc = 0;
	struct cluster cl = { 0 };

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'j')
			json = 1;
		else if (c == 's')
			servers = optarg;
		else if (c == 'n')
			n = strtoull(optarg, NULL, 10);
		else if (c == 'z')
			snprintf(sizes, sizeof(sizes), "%s", optarg);
		else {
			fprintf(c == 'h' ? stdout : stderr,
				"usage: spate bench bridge [--json] [--servers URLS] [--records N] "
				"[--sizes 64,1024]\n"
				"  bus A -> NATS JetStream -> bus B against a plain libnats publisher\n"
				"  and pull subscriber; without --servers, starts a 3-node nats-server\n"
				"  cluster on loopback (replicas 3)\n");
			return c == 'h' ? 0 : -EINVAL;
		}
	}
	if (n < 100) {
		fprintf(stderr, "bench bridge: --records is at least 100\n");
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
		if (conn_open(&w, servers, NULL) == 0) {
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
	json_object *root = json_object_new_object(), *cases = json_object_new_array(),
		    *ratios = json_object_new_array();
	char *save = NULL;
	for (char *t = strtok_r(sizes, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t size = strtoull(t, NULL, 10);
		struct result r[6];
		memset(r, 0, sizeof(r));
		if (size < 8 || size > 1 << 20) {
			fprintf(stderr, "bench bridge: record size %zu: 8 .. 1 MiB\n", size);
			rc = -EINVAL;
			break;
		}
		if (run_size(servers, size, n, r) < 0) {
			fprintf(stderr, "bench bridge: record size %zu: a case failed\n", size);
			rc = -EIO;
		}
		for (int i = 0; i < 6; i++) {
			if (!r[i].impl)
				continue;
			add(cases, &r[i]);
			if (!json)
				printf("%-8s %-8s %6zu B  %12.0f records/s  p50 %10.1f us  p99 %10.1f us\n",
				       r[i].impl, r[i].dir, r[i].size, r[i].rps, (double)r[i].p50 / 1e3,
				       (double)r[i].p99 / 1e3);
		}
		for (int i = 0; i < 3; i++) {
			if (!r[i].impl || !r[i + 3].impl || r[i].rps <= 0)
				continue;
			json_object *o = json_object_new_object();
			json_object_object_add(o, "direction", json_object_new_string(r[i].dir));
			json_object_object_add(o, "record_size", json_object_new_int((int)size));
			json_object_object_add(o, "spate_over_libnats",
					       json_object_new_double(r[i + 3].rps / r[i].rps));
			if (i == 2 && r[2].p99)
				json_object_object_add(o, "p99_spate_over_libnats_round_trip",
						       json_object_new_double((double)r[5].p99 /
									      (double)r[2].p99));
			json_object_array_add(ratios, o);
			if (!json)
				printf("  %s %zu B: spate / libnats = %.2f%s\n", r[i].dir, size,
				       r[i + 3].rps / r[i].rps, i == 2 ? " (records/s)" : "");
		}
	}
	json_object_object_add(root, "servers", json_object_new_string(servers));
	json_object_object_add(root, "records", json_object_new_int64((int64_t)n));
	json_object_object_add(root, "cases", cases);
	json_object_object_add(root, "ratios", ratios);
	if (json)
		printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	json_object_put(root);
	if (cl.pid[0])
		cluster_stop(&cl);
	return rc;
}
