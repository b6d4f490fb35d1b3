/* SPDX-License-Identifier: MIT */
/*
 * test_persist.c - persisted streams end to end: the engine's persister
 * writing shard rings to their logs, replay from every starting position
 * after a restart that lost the shared memory, consumers falling behind and
 * reading from the log, producers waiting for durability, a disk that
 * fills up, and a crash loop that SIGKILLs an engine under load.
 */
#include <criterion/criterion.h>

#include "engine_testlib.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include "spate/log.h"
#include "spate/stats.h"

/* Make stream @p name of bus @p b persisted with @p durability. */
static struct spate_config_stream *persisted(struct bus *b, const char *name, uint32_t shards,
					     uint64_t ring, enum spate_config_durability d)
{
	struct spate_config_stream *s = bus_stream(b, name, shards, ring);
	s->durability = d;
	s->segment_size = 1ull << 20;
	s->durability_interval_ns = 2 * MS;
	return s;
}

/* The log directory of shard @p shard of stream @p name (default log_dir). */
static void log_dir_of(const struct bus *b, const char *name, uint32_t shard, char *out,
		       size_t len)
{
	snprintf(out, len, "%s/log/%s/%04u", b->cfg->state_dir, name, shard);
}

/* Read the whole log of a shard, checking that records are numbered
 * contiguously from @p first and carry payload_of(seq); returns the count. */
static uint64_t check_log(const char *dir, uint64_t first, uint64_t *sum)
{
	struct spate_log_reader *rd = NULL;
	struct spate_ring_rec rec[64];
	uint64_t next = first, skipped = 0;
	char want[64];
	int n;

	cr_assert_eq(spate_log_reader_open(dir, SPATE_LOG_FROM_OLDEST, 0, &rd), 0, "%s", dir);
	while ((n = spate_log_read(rd, rec, 64, &skipped)) > 0) {
		for (int i = 0; i < n; i++, next++) {
			cr_assert_eq(rec[i].seq, next, "%s: record %" PRIu64 " has seq %" PRIu64, dir,
				     next, rec[i].seq);
			size_t wl = payload_of(rec[i].seq, want, sizeof(want));
			cr_assert_eq(rec[i].len, wl, "seq %" PRIu64 ": length %u, expected %zu",
				     rec[i].seq, rec[i].len, wl);
			cr_assert_eq(memcmp(rec[i].data, want, wl), 0, "seq %" PRIu64 ": payload",
				     rec[i].seq);
			if (sum)
				*sum += pu_payload_sum(rec[i].data, rec[i].len, PU_TOUCH_ALL);
		}
	}
	cr_assert_eq(n, 0, "%s: read: %d", dir, n);
	cr_assert_eq(skipped, 0);
	spate_log_reader_close(rd);
	return next - first;
}

/* Produce [from, to) on shard 0 with explicit hash 0 (so seq == i). */
static void produce0(struct spate_producer *p, uint64_t from, uint64_t to, uint64_t *sum)
{
	char buf[64];
	struct spate_put_result res;

	for (uint64_t i = from; i < to; i++) {
		size_t n = payload_of(i, buf, sizeof(buf));
		int rc = spate_put_hash(p, 0, buf, n, &res);
		cr_assert_eq(rc, 0, "put %" PRIu64 ": %d", i, rc);
		cr_assert_eq(res.seq, i, "put %" PRIu64 " got seq %" PRIu64, i, res.seq);
		if (sum)
			*sum += pu_payload_sum(buf, (uint32_t)n, PU_TOUCH_ALL);
	}
}

/* A slow count consumer "slow" of stream "in" starting at latest (on the
 * ring: only falling behind takes it to the log): batches of 50 records,
 * @p delay_us per batch, summary under sum_tmpl(b, "slow"). */
static void slow_consumer(struct bus *b, const char *delay_us, char *sp, size_t splen)
{
	struct spate_config_consumer *k = bus_consumer(b, "slow", "in", "count");
	sum_tmpl(b, "slow", sp, splen);
	opt(k, "summary", sp);
	opt(k, "delay_us", delay_us);
	k->batch_size = 50;
	k->starting_position = SPATE_CONFIG_START_LATEST;
}

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Replay                                                                   */
/* ------------------------------------------------------------------------ */

/* Engine 1 writes 20000 records (several segments) and stops; the shared
 * memory is removed (a reboot); engine 2's consumers replay from
 * trim_horizon, at_sequence, after_sequence and at_timestamp, all from the
 * log, then go on with new records from the ring, numbered on from the log. */
Test(persist, replay_after_reboot, .timeout = 60)
{
	struct bus b;
	char dir[PATH_MAX + 128], sp[4][PATH_MAX];
	uint64_t sum_all = 0, sum_from_12345 = 0, t_mid;
	const char *names[4] = { "th", "atseq", "afterseq", "atts" };

	bus_init(&b, "replay");
	persisted(&b, "in", 1, 256 * 1024, SPATE_CONFIG_DURABILITY_INTERVAL);
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce0(p, 0, 10000, &sum_all);
	nap_ms(3);
	t_mid = wall_ns();
	nap_ms(3);
	produce0(p, 10000, 20000, &sum_all);
	spate_producer_close(p);
	/* interval: with no new records, the group commit still comes. */
	const struct spate_stream_dur *d = spate_stream_dur(spate_engine_stream(b.e, "in"), 0);
	uint64_t until = mono_ns() + 5000 * MS;
	while (atomic_load(&d->durable_seq) < 20000) {
		cr_assert_lt(mono_ns(), until, "durable_seq stuck at %" PRIu64,
			     atomic_load(&d->durable_seq));
		nap_ms(1);
	}
	cr_assert_eq(atomic_load(&d->written_seq), 20000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	spate_engine_close(b.e);
	b.e = NULL;
	log_dir_of(&b, "in", 0, dir, sizeof(dir));
	uint64_t chk = 0;
	cr_assert_eq(check_log(dir, 0, &chk), 20000);
	cr_assert_eq(chk, sum_all);
	struct spate_log_stats ls;
	cr_assert_eq(spate_log_stat(dir, &ls), 0);
	cr_assert_gt(ls.segments, 1, "20000 records in 1 MiB segments: several");
	/* The reboot: memory is gone, the log stays. */
	cr_assert_eq(spate_stream_unlink(b.name, "in"), 0);

	for (int i = 0; i < 4; i++) {
		struct spate_config_consumer *k = bus_consumer(&b, names[i], "in", "count");
		sum_tmpl(&b, names[i], sp[i], sizeof(sp[i]));
		opt(k, "summary", sp[i]);
		k->batch_size = 500;
	}
	b.cfg->consumers[1].starting_position = SPATE_CONFIG_START_AT_SEQUENCE;
	b.cfg->consumers[1].starting_sequence = 12345;
	b.cfg->consumers[2].starting_position = SPATE_CONFIG_START_AFTER_SEQUENCE;
	b.cfg->consumers[2].starting_sequence = 12345;
	b.cfg->consumers[3].starting_position = SPATE_CONFIG_START_AT_TIMESTAMP;
	b.cfg->consumers[3].starting_timestamp_ns = t_mid;
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "th", st, st.records == 20000, 10000);
	/* New records continue the log's numbering (produce0 checks seq == i). */
	p = producer_of(spate_engine_stream(b.e, "in"));
	produce0(p, 20000, 20100, &sum_all);
	spate_producer_close(p);
	WAIT_FOR(b.e, "th", st, st.records == 20100 && st.lag_records == 0, 10000);
	WAIT_FOR(b.e, "atseq", st, st.records == 20100 - 12345, 10000);
	WAIT_FOR(b.e, "afterseq", st, st.records == 20100 - 12346, 10000);
	WAIT_FOR(b.e, "atts", st, st.records == 10100, 10000);
	cr_assert_eq(spate_engine_stop(b.e), 0);

	struct summary th = summary_of(&b, "th", 0);
	cr_assert_eq(th.first_seq, 0, "%s", th.text);
	cr_assert_eq(th.last_seq, 20099);
	cr_assert_eq(th.records, 20100);
	cr_assert_eq(th.gaps + th.duplicates, 0, "%s", th.text);
	cr_assert_eq(th.checksum, sum_all, "replayed payloads differ from what was written");
	struct summary as = summary_of(&b, "atseq", 0);
	cr_assert_eq(as.first_seq, 12345, "%s", as.text);
	cr_assert_eq(as.gaps + as.duplicates, 0, "%s", as.text);
	char buf[64];
	for (uint64_t i = 12345; i < 20100; i++)
		sum_from_12345 += pu_payload_sum(buf, (uint32_t)payload_of(i, buf, sizeof(buf)),
						 PU_TOUCH_ALL);
	cr_assert_eq(as.checksum, sum_from_12345);
	struct summary af = summary_of(&b, "afterseq", 0);
	cr_assert_eq(af.first_seq, 12346, "%s", af.text);
	struct summary at = summary_of(&b, "atts", 0);
	cr_assert_eq(at.first_seq, 10000, "%s", at.text);
	cr_assert_eq(at.last_seq, 20099);
	cr_assert_eq(at.gaps + at.duplicates, 0, "%s", at.text);
	/* Everything, old and new, is in the log exactly once. */
	cr_assert_eq(check_log(dir, 0, NULL), 20100);
	bus_done(&b);
}

/* A consumer more than half a ring behind goes on from the log, so the
 * producer is never held back by it (only by the persister), and catches up
 * with every record exactly once, in order. */
Test(persist, slow_consumer_reads_from_log, .timeout = 60)
{
	struct bus b;
	char sp[PATH_MAX];
	uint64_t sum = 0;
	const uint64_t n = 30000 / SCALE;

	bus_init(&b, "spill");
	persisted(&b, "in", 1, 64 * 1024, SPATE_CONFIG_DURABILITY_NONE);
	slow_consumer(&b, "5000", sp, sizeof(sp));
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	/* ~50 rings' worth of ~40-byte records; the consumer takes 50 records
	 * per 5 ms, far slower than the producer: it falls more than half a
	 * ring behind, whatever the machine's speed, and must go on from the
	 * log rather than hold the producer to its pace. */
	produce0(p, 0, n, &sum);
	spate_producer_close(p);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "slow", st, st.records == n && st.lag_records == 0 && st.on_log == 0, 60000);
	cr_assert_geq(st.log_spills, 1, "the consumer never switched to the log");
	cr_assert_gt(st.log_records, 0);
	cr_assert_eq(st.log_gaps, 0);
	/* The counters region recorded the catch-up and the return to the ring. */
	struct spate_stats *sts = NULL;
	cr_assert_eq(spate_stats_attach(b.name, &sts), 0);
	int ci = spate_stats_consumer_find(sts, "slow");
	cr_assert_geq(ci, 0);
	const struct spate_stats_task *ts =
		spate_stats_task_at(sts, spate_stats_consumer_at(sts, (uint32_t)ci)->first_task);
	cr_assert_eq(atomic_load(&ts->source), SPATE_STATS_SOURCE_RING);
	cr_assert_lt(atomic_load(&ts->reader_slot), SPATE_RING_MAX_READERS);
	cr_assert_gt(atomic_load(&ts->catchup_target), atomic_load(&ts->catchup_from),
		     "a catch-up range was published when it spilled");
	spate_stats_close(sts);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	struct summary s = summary_of(&b, "slow", 0);
	cr_assert_eq(s.first_seq, 0, "%s", s.text);
	cr_assert_eq(s.records, n);
	cr_assert_eq(s.gaps + s.duplicates, 0, "%s", s.text);
	cr_assert_eq(s.checksum, sum);
	bus_done(&b);
}

/* `always`: a put returns only once its record is durable (its sequence is
 * below the shard's durable sequence when it returns); producers in
 * another process see the same. */
Test(persist, always_put_returns_when_durable, .timeout = 60)
{
	struct bus b;
	char dir[PATH_MAX + 128];

	bus_init(&b, "always");
	persisted(&b, "in", 2, 256 * 1024, SPATE_CONFIG_DURABILITY_ALWAYS);
	b.cfg->placement.persist_threads = 2; /* a thread per shard */
	bus_open(&b);
	char desc[4096];
	spate_engine_describe(b.e, desc, sizeof(desc));
	cr_assert_not_null(strstr(desc, "persister 0 -> cpu"), "%s", desc);
	cr_assert_not_null(strstr(desc, "persister 1 -> cpu"), "%s", desc);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_stream *s = spate_engine_stream(b.e, "in");
	cr_assert_eq(spate_stream_durability(s), SPATE_STREAM_DUR_ALWAYS);
	struct spate_producer *p = producer_of(s);
	char buf[64];
	struct spate_put_result res;
	for (uint64_t i = 0; i < 300; i++) {
		size_t n = payload_of(i, buf, sizeof(buf));
		cr_assert_eq(spate_put_hash(p, (uint32_t)(i & 1) << 31, buf, n, &res), 0);
		const struct spate_stream_dur *d = spate_stream_dur(s, res.shard);
		cr_assert_gt(atomic_load(&d->durable_seq), res.seq,
			     "put of shard %u seq %" PRIu64 " returned before durability",
			     res.shard, res.seq);
	}
	spate_producer_close(p);
	/* The counters region shows what the persister did, per shard. */
	struct spate_stats *sts = NULL;
	cr_assert_eq(spate_stats_attach(b.name, &sts), 0);
	int si = spate_stats_stream_find(sts, "in");
	cr_assert_geq(si, 0);
	for (uint32_t sh = 0; sh < 2; sh++) {
		const struct spate_stats_shard *ss = spate_stats_shard_of(sts, (uint32_t)si, sh);
		cr_assert_not_null(ss);
		cr_assert_eq(atomic_load(&ss->durable_seq), 150, "shard %u: durable %" PRIu64, sh,
			     atomic_load(&ss->durable_seq));
		cr_assert_gt(atomic_load(&ss->persist_bytes), 150 * 16, "shard %u", sh);
		cr_assert_geq(atomic_load(&ss->persist_fsyncs), 1);
		cr_assert_geq(atomic_load(&ss->persist_writes), atomic_load(&ss->persist_fsyncs));
	}
	spate_stats_close(sts);
	/* A producer in another process. */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct spate_stream *x = NULL;
		struct spate_producer *q = NULL;
		if (spate_stream_attach(b.name, "in", &x) ||
		    spate_producer_open(x, SPATE_RING_WAIT_YIELD, 0, &q))
			_exit(1);
		for (int i = 0; i < 100; i++) {
			if (spate_put_hash(q, 0, "child", 5, &res) != 0)
				_exit(2);
			if (atomic_load(&spate_stream_dur(x, 0)->durable_seq) <= res.seq)
				_exit(3);
		}
		_exit(0);
	}
	int wst;
	cr_assert_eq(waitpid(pid, &wst, 0), pid);
	cr_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "child producer: status %#x", wst);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	spate_engine_close(b.e);
	b.e = NULL;
	/* Stopped engine: nobody persists, a put says so instead of hanging. */
	s = NULL;
	cr_assert_eq(spate_stream_attach(b.name, "in", &s), 0);
	p = producer_of(s);
	cr_assert_eq(spate_put_hash(p, 0, "late", 4, &res), -ENOTCONN);
	spate_producer_close(p);
	spate_stream_close(s);
	struct spate_log_stats ls;
	log_dir_of(&b, "in", 0, dir, sizeof(dir));
	cr_assert_eq(spate_log_stat(dir, &ls), 0);
	cr_assert_eq(ls.next_seq, 250, "shard 0: 150 + 100 records in its log");
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* Disk full                                                                */
/* ------------------------------------------------------------------------ */

/* The log on a 4 MiB tmpfs, filled up by a file: producers get -ENOSPC from
 * their durability wait, nothing is lost or torn, and once the file is
 * removed every appended record reaches the log, in order. */
Test(persist, disk_full_then_space_returns, .timeout = 60)
{
	struct bus b;
	char mnt[512], fill[600], dir[600];

	if (geteuid() != 0)
		cr_skip_test("needs root to mount a small tmpfs");
	bus_init(&b, "full");
	snprintf(mnt, sizeof(mnt), "%s/small", b.dir);
	cr_assert_eq(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0)
		cr_skip_test("cannot mount a tmpfs: %s", strerror(errno));
	struct spate_config_stream *cs = persisted(&b, "in", 1, 1ull << 20,
						   SPATE_CONFIG_DURABILITY_ALWAYS);
	snprintf(cs->log_dir, sizeof(cs->log_dir), "%s/log", mnt);
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	/* Fill the file system but for ~200 KiB. */
	snprintf(fill, sizeof(fill), "%s/filler", mnt);
	int fd = open(fill, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	static char chunk[64 * 1024];
	memset(chunk, 'z', sizeof(chunk));
	struct statvfs sv;
	for (;;) {
		cr_assert_eq(statvfs(mnt, &sv), 0);
		if ((uint64_t)sv.f_bavail * sv.f_bsize < 200 * 1024)
			break;
		cr_assert_eq(write(fd, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
	}
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	spate_producer_writer(p, 0)->timeout_ns = 5000 * MS;
	char buf[64], big[8192];
	struct spate_put_result res;
	uint64_t appended = 0;
	int rc = 0;
	memset(big, 'q', sizeof(big));
	/* 8 KiB records until the disk is full. */
	while (appended < 1000) {
		rc = spate_put_hash(p, 0, big, sizeof(big), &res);
		if (rc != 0)
			break;
		appended++;
	}
	cr_assert_eq(rc, -ENOSPC, "expected a clear disk-full error, got %d after %" PRIu64,
		     rc, appended);
	cr_assert_eq(res.seq, appended, "the failed put's record was appended (queued)");
	appended++;
	/* The log is valid as it stands: every frame checks. */
	snprintf(dir, sizeof(dir), "%s/log/0000", mnt);
	struct spate_log_stats ls;
	cr_assert_eq(spate_log_stat(dir, &ls), 0);
	cr_assert_lt(ls.next_seq, appended);
	/* Space returns. */
	close(fd);
	cr_assert_eq(unlink(fill), 0);
	/* The persister retries every 10 ms: the error clears, the queue drains. */
	const struct spate_stream_dur *d = spate_stream_dur(spate_engine_stream(b.e, "in"), 0);
	uint64_t until = mono_ns() + 5000 * MS;
	while (atomic_load(&d->error) != 0 || atomic_load(&d->durable_seq) < appended) {
		cr_assert_lt(mono_ns(), until, "the log did not resume: error %d durable %" PRIu64,
			     atomic_load(&d->error), atomic_load(&d->durable_seq));
		nap_ms(1);
	}
	size_t n = payload_of(appended, buf, sizeof(buf));
	rc = spate_put_hash(p, 0, buf, n, &res);
	cr_assert_eq(rc, 0, "after space returned: %d", rc);
	cr_assert_eq(res.seq, appended);
	spate_producer_close(p);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	spate_engine_close(b.e);
	b.e = NULL;
	/* Every record, the queued ones included, once and in order. */
	struct spate_log_reader *rd = NULL;
	struct spate_ring_rec rec[16];
	uint64_t next = 0, skipped = 0;
	int got;
	cr_assert_eq(spate_log_reader_open(dir, SPATE_LOG_FROM_OLDEST, 0, &rd), 0);
	while ((got = spate_log_read(rd, rec, 16, &skipped)) > 0)
		for (int i = 0; i < got; i++, next++) {
			cr_assert_eq(rec[i].seq, next);
			cr_assert_eq(rec[i].len, next == appended ? n : sizeof(big));
		}
	cr_assert_eq(got, 0);
	cr_assert_eq(next, appended + 1);
	spate_log_reader_close(rd);
	umount2(mnt, MNT_DETACH);
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* Crash loop                                                               */
/* ------------------------------------------------------------------------ */

/* What the child tells the parent, in shared memory. */
struct crash_share {
	_Atomic uint64_t acked; /* records below are acknowledged durable */
	_Atomic int ready;
};

/* The child: an engine with an `always` stream and a consumer; producers
 * put records payload_of(seq) until killed. */
static void crash_child(struct bus *b, struct crash_share *sh)
{
	char err[512];
	struct spate_engine *e = NULL;

	if (spate_engine_open(b->cfg, &e, err, sizeof(err)) != 0) {
		fprintf(stderr, "child: engine open: %s\n", err);
		_exit(10);
	}
	if (spate_engine_start(e) != 0)
		_exit(11);
	struct spate_stream *s = spate_engine_stream(e, "in");
	struct spate_producer *p = NULL;
	if (spate_producer_open(s, SPATE_RING_WAIT_YIELD, 0, &p) != 0)
		_exit(12);
	struct spate_ring *r = spate_stream_ring(s, 0);
	uint64_t i = atomic_load(&r->sh->pub.tail_seq); /* numbering goes on from the log */
	atomic_store(&sh->ready, 1);
	char buf[64];
	struct spate_put_entry ent[16];
	struct spate_put_result res[16];
	char bufs[16][64];
	for (;;) {
		/* Mix single puts and batches (a group commit takes either). */
		if (i % 3) {
			size_t n = payload_of(i, buf, sizeof(buf));
			struct spate_put_result one;
			int rc = spate_put_hash(p, 0, buf, n, &one);
			if (rc != 0 || one.seq != i)
				_exit(20);
			i++;
		} else {
			for (int k = 0; k < 16; k++) {
				size_t n = payload_of(i + (uint64_t)k, bufs[k], sizeof(bufs[k]));
				ent[k] = (struct spate_put_entry){ .data = bufs[k], .len = n,
								   .flags = SPATE_PUT_F_HASH };
			}
			if (spate_put_batch(p, ent, 16, res) != 0 || res[0].seq != i)
				_exit(21);
			i += 16;
		}
		atomic_store(&sh->acked, i);
	}
}

Test(persist, crash_loop_sigkill, .timeout = 180)
{
	struct bus b;
	char dir[PATH_MAX + 128], sp[PATH_MAX];
	const int rounds = 20;
	struct crash_share *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(sh, MAP_FAILED);
	uint64_t seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;

	bus_init(&b, "crash");
	persisted(&b, "in", 1, 256 * 1024, SPATE_CONFIG_DURABILITY_ALWAYS);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "count");
	sum_tmpl(&b, "c", sp, sizeof(sp));
	opt(k, "summary", sp);
	log_dir_of(&b, "in", 0, dir, sizeof(dir));
	uint64_t max_acked = 0, total = 0;
	for (int round = 0; round < rounds; round++) {
		atomic_store(&sh->acked, 0);
		atomic_store(&sh->ready, 0);
		/* Alternate O_DIRECT and the page cache: a log continues either way. */
		b.cfg->streams[0].direct_io = round % 2 == 0;
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0)
			crash_child(&b, sh);
		uint64_t until = mono_ns() + 10000 * MS;
		while (!atomic_load(&sh->ready)) {
			int st;
			cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "round %d: child exited early, status %#x",
				     round, st);
			cr_assert_lt(mono_ns(), until, "round %d: child never got ready", round);
			nap_ms(1);
		}
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		nap_ms(20 + (unsigned)((seed >> 33) % 180));
		kill(pid, SIGKILL);
		int st;
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
			  "round %d: the child died on its own, status %#x", round, st);
		uint64_t acked = atomic_load(&sh->acked);
		/* Every acknowledged record is in the log once, in order, with its
		 * payload; numbering has no gap across all restarts. */
		uint64_t have = check_log(dir, 0, NULL);
		cr_assert_geq(have, acked, "round %d: %" PRIu64 " acknowledged, %" PRIu64 " in the log",
			      round, acked, have);
		cr_assert_geq(have, max_acked);
		if (acked > max_acked)
			max_acked = acked;
		total = have;
		/* Every few rounds the machine "reboots": memory is gone too. */
		if (round % 4 == 3)
			spate_stream_unlink(b.name, "in");
	}
	cr_assert_gt(total, 0);
	/* A last, clean engine: its consumer (resuming from its checkpoint
	 * through the log) ends having seen everything; no record lost. */
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_stream *s = spate_engine_stream(b.e, "in");
	cr_assert_eq(spate_engine_stop(b.e), 0);
	uint64_t final = check_log(dir, 0, NULL);
	cr_assert_geq(final, total);
	cr_assert_eq(atomic_load(&spate_stream_ring(s, 0)->sh->pub.tail_seq), final,
		     "the ring and the log end at the same record");
	total = final;
	fprintf(stderr, "crash loop: %d rounds, %" PRIu64 " records in the log, %" PRIu64
		" acknowledged at most\n", rounds, total, max_acked);
	munmap(sh, sizeof(*sh));
	bus_done(&b);
}

/* A second engine on a stream another live engine persists is refused (two
 * writers would corrupt the log); once that engine is gone it opens. */
Test(persist, second_engine_is_refused, .timeout = 60)
{
	struct bus b;
	int go[2];

	bus_init(&b, "twice");
	persisted(&b, "in", 1, 64 * 1024, SPATE_CONFIG_DURABILITY_NONE);
	cr_assert_eq(pipe(go), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char err[512];
		struct spate_engine *e = NULL;
		if (spate_engine_open(b.cfg, &e, err, sizeof(err)) || spate_engine_start(e))
			_exit(1);
		if (write(go[1], "x", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	char c;
	cr_assert_eq(read(go[0], &c, 1), 1, "the first engine did not start");
	char err[512] = "";
	struct spate_engine *e = NULL;
	int rc = spate_engine_open(b.cfg, &e, err, sizeof(err));
	cr_assert_eq(rc, -EBUSY, "second engine: %d (%s)", rc, err);
	cr_assert_not_null(strstr(err, "another live engine"), "%s", err);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	bus_open(&b);
	bus_done(&b);
	close(go[0]);
	close(go[1]);
}

/* Retention deletes the segment a slow consumer is reading: no crash, the
 * consumer moves to the oldest retained record, the gap is counted and
 * logged, and every record it does get is delivered once, in order. */
Test(persist, retention_deletes_segment_under_reader, .timeout = 90)
{
	struct bus b;
	char sp[PATH_MAX];
	const uint64_t n = 200000;

	bus_init(&b, "ret");
	struct spate_config_stream *cs = persisted(&b, "in", 1, 64 * 1024,
						   SPATE_CONFIG_DURABILITY_NONE);
	cs->retention_bytes = 2ull << 20; /* two 1 MiB segments */
	slow_consumer(&b, "2000", sp, sizeof(sp));
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce0(p, 0, n, NULL);
	spate_producer_close(p);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "slow", st, st.lag_records == 0 && st.on_log == 0, 60000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	struct summary s = summary_of(&b, "slow", 0);
	cr_assert_gt(st.log_gaps, 0, "retention never overtook the reader: %s", s.text);
	cr_assert_eq(s.duplicates, 0, "%s", s.text);
	cr_assert_eq(s.first_seq, 0, "%s", s.text);
	cr_assert_eq(s.last_seq, (int64_t)n - 1, "%s", s.text);
	cr_assert_eq(s.records + st.log_gaps, n, "delivered %" PRIu64 " + skipped %" PRIu64
		     " != %" PRIu64 ": %s", s.records, st.log_gaps, n, s.text);
	bus_done(&b);
}

/* A checkpoint beyond the end of a persisted shard (the log lost its tail
 * in a machine crash, the checkpoint file did not) is clamped to the end,
 * so the records that reuse those numbers are not skipped. */
Test(persist, checkpoint_past_the_end_is_clamped, .timeout = 60)
{
	struct bus b;
	char sp[PATH_MAX], path[PATH_MAX + 64];

	bus_init(&b, "clamp");
	persisted(&b, "in", 1, 64 * 1024, SPATE_CONFIG_DURABILITY_INTERVAL);
	struct spate_config_consumer *k = bus_consumer(&b, "c", "in", "count");
	sum_tmpl(&b, "c", sp, sizeof(sp));
	opt(k, "summary", sp);
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce0(p, 0, 100, NULL);
	spate_producer_close(p);
	struct spate_consumer_stats st;
	WAIT_FOR(b.e, "c", st, st.records == 100 && st.lag_records == 0, 10000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	spate_engine_close(b.e);
	b.e = NULL;
	/* The checkpoint file claims 500 records were handled. */
	snprintf(path, sizeof(path), "%s/in.c.ckpt", b.cfg->state_dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "# forged\n0 500\n");
	fclose(f);
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	p = producer_of(spate_engine_stream(b.e, "in"));
	produce0(p, 100, 110, NULL);
	spate_producer_close(p);
	WAIT_FOR(b.e, "c", st, st.records == 10 && st.lag_records == 0, 10000);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	struct summary s = summary_of(&b, "c", 0);
	cr_assert_eq(s.first_seq, 100, "%s", s.text);
	cr_assert_eq(s.last_seq, 109, "%s", s.text);
	bus_done(&b);
}

/* ------------------------------------------------------------------------ */
/* Restarts with live producers in another process (issue 9 item 0)        */
/* ------------------------------------------------------------------------ */

/* What the producer and engine children share with the test. */
struct restart_share {
	_Atomic uint64_t acked; /* producer: payloads 0..acked-1 acknowledged */
	_Atomic uint64_t stale; /* producer: puts that found its region retired */
	_Atomic uint64_t full;  /* producer: puts refused or timed out on a full shard */
	_Atomic int stop;       /* test -> producer: stop putting */
	_Atomic int ready;      /* engine child: started */
	_Atomic int stop_engine; /* engine child: SIGINT received */
};

static struct restart_share *restart_sh;

static void restart_on_int(int sig)
{
	(void)sig;
	atomic_store(&restart_sh->stop_engine, 1);
}

/* The engine, as `spate run` runs it: until SIGINT (then a clean stop) or
 * SIGKILL. */
static void restart_engine_child(struct bus *b, struct restart_share *sh)
{
	char err[512];
	struct spate_engine *e = NULL;
	struct sigaction sa = { .sa_handler = restart_on_int };

	restart_sh = sh;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	if (spate_engine_open(b->cfg, &e, err, sizeof(err)) != 0) {
		fprintf(stderr, "engine child: open: %s\n", err);
		_exit(10);
	}
	if (spate_engine_start(e) != 0)
		_exit(11);
	atomic_store(&sh->ready, 1);
	while (!atomic_load(&sh->stop_engine))
		nap_ms(1);
	spate_engine_stop(e);
	spate_engine_close(e);
	_exit(0);
}

/* The producer: puts payload_of(i), i = 0, 1, ... to shard 0 across engine
 * restarts, retrying a refused put (full shard per its policy: @p wait
 * waits up to 20 ms, else fails at once) and reattaching when told its
 * region was retired. Exits 0 when told to stop. */
static void restart_producer_child(struct bus *b, struct restart_share *sh, bool wait)
{
	struct spate_stream *s = NULL;
	struct spate_producer *p = NULL;
	char buf[64];
	uint64_t i = 0;

	while (!atomic_load(&sh->stop)) {
		if (!s) {
			int rc = spate_stream_attach(b->name, "in", &s);
			if (rc == -ENOENT || rc == -EAGAIN) {
				s = NULL;
				nap_ms(1);
				continue;
			}
			if (rc != 0)
				_exit(20);
			if (spate_producer_open(s, SPATE_RING_WAIT_YIELD,
						wait ? SPATE_PRODUCER_F_WAIT_FULL
						     : SPATE_PRODUCER_F_FAIL_FULL,
						&p) != 0)
				_exit(21);
			spate_producer_writer(p, 0)->timeout_ns = 20 * MS;
		}
		size_t n = payload_of(i, buf, sizeof(buf));
		struct spate_put_result res;
		int rc = spate_put_hash(p, 0, buf, n, &res);
		if (rc == 0) {
			atomic_store(&sh->acked, ++i);
		} else if (rc == -EAGAIN || rc == -ETIMEDOUT) {
			atomic_fetch_add(&sh->full, 1);
			if (!wait)
				nap_ms(1);
		} else if (rc == -ESTALE) {
			atomic_fetch_add(&sh->stale, 1);
			spate_producer_close(p);
			spate_stream_close(s);
			p = NULL;
			s = NULL;
		} else {
			fprintf(stderr, "producer: put %" PRIu64 ": %s\n", i, strerror(-rc));
			_exit(22);
		}
	}
	spate_producer_close(p);
	spate_stream_close(s);
	_exit(0);
}

/* Read the log of shard 0: every acknowledged payload 0..acked-1 must be
 * there exactly once and in order. Returns the number missing (and counts
 * duplicates and order breaks) for the figures. */
static uint64_t restart_check(const char *dir, uint64_t acked, uint64_t *dups, uint64_t *disorder,
			      uint64_t *in_log)
{
	struct spate_log_reader *rd = NULL;
	struct spate_ring_rec rec[64];
	uint8_t *seen = calloc(acked + 1, 1);
	uint64_t skipped = 0, last = UINT64_MAX, missing = 0;
	int n;

	cr_assert_not_null(seen);
	*dups = *disorder = *in_log = 0;
	cr_assert_eq(spate_log_reader_open(dir, SPATE_LOG_FROM_OLDEST, 0, &rd), 0, "%s", dir);
	while ((n = spate_log_read(rd, rec, 64, &skipped)) > 0) {
		for (int k = 0; k < n; k++) {
			unsigned long long v;
			char head[32];
			size_t hl = rec[k].len < sizeof(head) - 1 ? rec[k].len : sizeof(head) - 1;
			memcpy(head, rec[k].data, hl);
			head[hl] = 0;
			cr_assert_eq(sscanf(head, "rec-%llu-", &v), 1, "seq %" PRIu64, rec[k].seq);
			char want[64];
			size_t wl = payload_of(v, want, sizeof(want));
			cr_assert(rec[k].len == wl && !memcmp(rec[k].data, want, wl),
				  "seq %" PRIu64 ": payload of %llu damaged", rec[k].seq, v);
			(*in_log)++;
			if (last != UINT64_MAX && v != last + 1)
				(*disorder)++;
			last = v;
			if (v < acked) {
				if (seen[v])
					(*dups)++;
				seen[v] = 1;
			}
		}
	}
	cr_assert_eq(n, 0, "%s: read: %d", dir, n);
	spate_log_reader_close(rd);
	for (uint64_t v = 0; v < acked; v++)
		missing += !seen[v];
	free(seen);
	return missing;
}

/*
 * Restart the engine @p rounds times (SIGINT + a pause, or SIGKILL) under a
 * producer in another process that never stops putting; at the end a clean
 * engine writes what memory still holds, and every acknowledged record must
 * be in the log exactly once, in order.
 */
static void restart_loop(enum spate_config_durability d, int sig, int rounds, bool wait,
			 const char *tag)
{
	struct bus b;
	char dir[PATH_MAX + 128];
	struct restart_share *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
					MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;

	cr_assert_neq(sh, MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	bus_init(&b, tag);
	persisted(&b, "in", 1, 4ull << 20, d);
	b.cfg->streams[0].segment_size = 8ull << 20;
	log_dir_of(&b, "in", 0, dir, sizeof(dir));
	pid_t prod = -1;
	for (int round = 0; round < rounds; round++) {
		/* Alternate O_DIRECT and the page cache. */
		b.cfg->streams[0].direct_io = round % 2 == 0;
		atomic_store(&sh->ready, 0);
		atomic_store(&sh->stop_engine, 0);
		pid_t eng = fork();
		cr_assert_geq(eng, 0);
		if (eng == 0)
			restart_engine_child(&b, sh);
		uint64_t until = mono_ns() + 20000 * MS;
		int st;
		while (!atomic_load(&sh->ready)) {
			cr_assert_eq(waitpid(eng, &st, WNOHANG), 0,
				     "round %d: engine exited early, status %#x", round, st);
			cr_assert_lt(mono_ns(), until, "round %d: engine never got ready", round);
			nap_ms(1);
		}
		if (prod < 0) {
			prod = fork();
			cr_assert_geq(prod, 0);
			if (prod == 0)
				restart_producer_child(&b, sh, wait);
		}
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		nap_ms(50 + (unsigned)((seed >> 33) % 150));
		cr_assert_eq(waitpid(prod, &st, WNOHANG), 0, "round %d: producer exited, status %#x",
			     round, st);
		kill(eng, sig);
		cr_assert_eq(waitpid(eng, &st, 0), eng);
		if (sig == SIGKILL)
			cr_assert(WIFSIGNALED(st), "round %d: engine status %#x", round, st);
		else
			cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: engine status %#x",
				  round, st);
		/* No engine: the producer keeps putting (and wraps the ring, if
		 * nothing holds it back). */
		nap_ms(sig == SIGKILL ? 20 : 1000);
	}
	atomic_store(&sh->stop, 1);
	int st;
	cr_assert_eq(waitpid(prod, &st, 0), prod);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer status %#x", st);
	uint64_t acked = atomic_load(&sh->acked);
	/* A last, clean engine persists what memory holds. */
	b.cfg->streams[0].direct_io = false;
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	cr_assert_eq(spate_engine_stop(b.e), 0);
	uint64_t dups, disorder, in_log;
	uint64_t missing = restart_check(dir, acked, &dups, &disorder, &in_log);
	fprintf(stderr,
		"restart %s: %d rounds (%s): %" PRIu64 " acknowledged, %" PRIu64 " in the log, %" PRIu64
		" missing, %" PRIu64 " duplicated, %" PRIu64 " out of order; producer: %" PRIu64
		" full, %" PRIu64 " stale\n",
		tag, rounds, sig == SIGKILL ? "SIGKILL" : "SIGINT", acked, in_log, missing, dups,
		disorder, atomic_load(&sh->full), atomic_load(&sh->stale));
	cr_assert_gt(acked, 0);
	cr_assert_eq(missing, 0, "%" PRIu64 " of %" PRIu64 " acknowledged records are not in the log",
		     missing, acked);
	cr_assert_eq(dups, 0, "%" PRIu64 " records are in the log twice", dups);
	cr_assert_eq(disorder, 0, "%" PRIu64 " records out of order", disorder);
	munmap(sh, sizeof(*sh));
	bus_done(&b);
}

Test(persist, restart_sigint_interval_producer_waits, .timeout = 120)
{
	restart_loop(SPATE_CONFIG_DURABILITY_INTERVAL, SIGINT, 4, true, "rsi");
}

Test(persist, restart_sigint_none_producer_fails, .timeout = 120)
{
	restart_loop(SPATE_CONFIG_DURABILITY_NONE, SIGINT, 4, false, "rsn");
}

Test(persist, restart_sigkill_loop_interval, .timeout = 180)
{
	restart_loop(SPATE_CONFIG_DURABILITY_INTERVAL, SIGKILL, 10, true, "rki");
}

Test(persist, restart_sigkill_loop_none, .timeout = 180)
{
	restart_loop(SPATE_CONFIG_DURABILITY_NONE, SIGKILL, 10, false, "rkn");
}

/* A region the engine must recreate (here: memory behind the log, as a
 * region made by hand over an existing log) is retired first: a producer
 * still holding it gets -ESTALE at its next put, even one waiting on a full
 * ring, and after reattaching puts into the new region, numbered after
 * the log. */
struct stale_waiter {
	struct spate_producer *p;
	int rc;
};

static void *stale_wait_main(void *arg)
{
	struct stale_waiter *w = arg;
	char buf[1024] = { 0 }; /* the 64 KiB ring fills below record 100 */
	int rc;

	do /* fill the ring, then wait for space that never comes */
		rc = spate_put_hash(w->p, 0, buf, sizeof(buf), NULL);
	while (rc == 0);
	w->rc = rc;
	return NULL;
}

Test(persist, recreated_region_is_retired, .timeout = 60)
{
	struct bus b;

	bus_init(&b, "stale");
	struct spate_config_stream *cs = persisted(&b, "in", 1, 64 * 1024,
						   SPATE_CONFIG_DURABILITY_NONE);
	bus_open(&b);
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_producer *p = producer_of(spate_engine_stream(b.e, "in"));
	produce0(p, 0, 100, NULL);
	spate_producer_close(p);
	spate_engine_close(b.e);
	b.e = NULL;
	/* Memory that is behind the log: the engine cannot continue it. */
	cr_assert_eq(spate_stream_unlink(b.name, "in"), 0);
	struct spate_stream_params sp = { .shards = 1, .ring_size = cs->ring_size,
					  .ring_flags = SPATE_RING_F_MULTI_WRITER | SPATE_RING_F_FULL_WAIT,
					  .shm_flags = SPATE_SHM_F_NO_HUGE,
					  .durability = SPATE_STREAM_DUR_NONE };
	struct spate_stream *old = NULL;
	cr_assert_eq(spate_stream_create(b.name, "in", &sp, &old), 0);
	struct spate_producer *op = producer_of(old), *wp = NULL;
	cr_assert_eq(spate_put_hash(op, 0, "x", 1, NULL), 0);
	/* Keep the old ring full with a gate of our own, and a producer
	 * waiting for space in it. */
	struct spate_ring_reader *gate = NULL;
	cr_assert_eq(spate_ring_reader_open(spate_stream_ring(old, 0), SPATE_RING_START_OLDEST,
					    SPATE_RING_WAIT_YIELD, &gate), 0);
	cr_assert_eq(spate_producer_open(old, SPATE_RING_WAIT_BLOCK, SPATE_PRODUCER_F_WAIT_FULL, &wp), 0);
	struct stale_waiter sw = { .p = wp };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, stale_wait_main, &sw), 0);
	nap_ms(50);
	bus_open(&b); /* recreates the stream: retires the old one first */
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(sw.rc, -ESTALE, "a producer waiting on the retired ring got %d", sw.rc);
	int rc = spate_put_hash(op, 0, "y", 1, NULL);
	cr_assert_eq(rc, -ESTALE, "a put to the retired region returned %d", rc);
	spate_ring_reader_close(gate);
	spate_producer_close(wp);
	spate_producer_close(op);
	spate_stream_close(old);
	/* Reattached: the new region continues the log's numbering. */
	cr_assert_eq(spate_engine_start(b.e), 0);
	struct spate_stream *s = NULL;
	cr_assert_eq(spate_stream_attach(b.name, "in", &s), 0);
	p = producer_of(s);
	struct spate_put_result res;
	cr_assert_eq(spate_put_hash(p, 0, "z", 1, &res), 0);
	cr_assert_eq(res.seq, 100);
	spate_producer_close(p);
	spate_stream_close(s);
	bus_done(&b);
}

/* The persister's gate, ring level: kept, it survives its owner's death
 * and reaping, refuses eviction, holds writers back (a writer that fails at
 * once gets -EAGAIN, never overwrites), and is adopted where it stopped. */
Test(persist, kept_gate_outlives_its_process, .timeout = 30)
{
	struct spate_ring_params rp = { .capacity = 64 * 1024, .flags = SPATE_RING_F_MULTI_WRITER };
	size_t sz = spate_ring_memsize(&rp);
	void *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct spate_ring *r = NULL;
	struct spate_ring_writer *w = NULL;
	char buf[256] = { 0 };

	cr_assert_neq(mem, MAP_FAILED);
	cr_assert_eq(spate_ring_format(mem, sz, &rp), 0);
	cr_assert_eq(spate_ring_open_mem(mem, sz, &r), 0);
	cr_assert_eq(spate_ring_writer_open(r, SPATE_RING_WAIT_YIELD, &w), 0);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(spate_ring_put(w, buf, sizeof(buf), 0, 0, NULL), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) { /* the "engine": reads 4 records, keeps its gate, dies */
		struct spate_ring *cr = NULL;
		struct spate_ring_reader *rd = NULL;
		struct spate_ring_rec rec[4];
		if (spate_ring_open_mem(mem, sz, &cr) || spate_ring_reader_open(cr, SPATE_RING_START_OLDEST,
										SPATE_RING_WAIT_YIELD, &rd) ||
		    spate_ring_reader_keep(rd) || spate_ring_peek(rd, rec, 4, UINT64_MAX) != 4 ||
		    spate_ring_release(rd, 4))
			_exit(1);
		spate_ring_reader_detach(rd);
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	uint32_t nr = 9, nw = 9, idx;
	cr_assert_geq(spate_ring_reap(r, &nr, &nw), 0);
	cr_assert_eq(nr, 0, "reap freed the kept gate");
	uint64_t pos, seq;
	cr_assert_eq(spate_ring_reader_find_kept(r, &idx, &pos, &seq), 0);
	cr_assert_eq(seq, 4);
	cr_assert_eq(spate_ring_reader_evict(r, idx), -EPERM);
	/* Writers fill the ring up to the gate and no further. */
	int rc, n = 0;
	while ((rc = spate_ring_put(w, buf, sizeof(buf), 0, 0, NULL)) == 0)
		n++;
	cr_assert_eq(rc, -EAGAIN);
	cr_assert_lt((uint64_t)(n + 6) * (sizeof(buf) + 40), rp.capacity + 1,
		     "%d records written past a gate that held 6", n);
	struct spate_ring_reader *rd = NULL;
	cr_assert_eq(spate_ring_reader_adopt(r, idx, SPATE_RING_WAIT_YIELD, &rd), 0);
	struct spate_ring_rec rec[8];
	cr_assert_eq(spate_ring_peek(rd, rec, 8, UINT64_MAX), 8);
	cr_assert_eq(rec[0].seq, 4);
	/* Retired: every writer is told. */
	spate_ring_retire(r);
	cr_assert_eq(spate_ring_put(w, buf, 8, 0, 0, NULL), -ESTALE);
	cr_assert_eq(spate_ring_reader_wait(rd, 0), 0); /* data remains readable */
	spate_ring_reader_close(rd);
	cr_assert_eq(spate_ring_reader_find_kept(r, &idx, &pos, &seq), -ENOENT);
	spate_ring_writer_close(w);
	spate_ring_close(r);
	munmap(mem, sz);
}
