/* SPDX-License-Identifier: MIT */
/*
 * soak_producer.c - a producer for the fault suite and the soak
 * (tests/soak.sh, tests/faults.sh) that records what it was promised.
 *
 * It attaches a running bus's stream by name, as `spate put` does, and puts
 * keyed records whose payload is "<key>,<seq>": keys are
 * "<tag>.<pid>.<k>" (k < --keys), so every process incarnation has keys of
 * its own and a restarted producer never reuses a key; seq counts up from 0
 * per key. After spate_put() RETURNED 0 (on an `always` stream: durable) it
 * appends "<key>,<seq> <shard> <shard-seq>" to the ack file with one
 * write(2): a line in the file is a record the bus acknowledged. A SIGKILL
 * between the put and the write loses the line, never adds one, so the
 * file may only under-state what was acknowledged. No fsync: the file has
 * to survive the producer process, not the machine.
 *
 * A failed put is never retried with the same (key, seq): the record may
 * have been appended (a durability wait that failed), so the next put of
 * that key takes the next seq; per-key order stays checkable. On an error
 * other than a full or timed-out shard (-EAGAIN, -ETIMEDOUT) the producer
 * detaches and attaches the stream again (the engine may have recreated
 * it), retrying every 20 ms while it is missing.
 *
 * Limits: one thread; --rate paces to about that many records a second;
 * the writer timeout (--timeout-ms) bounds each wait for ring space, so
 * SIGTERM/SIGINT end it within that bound plus one put.
 *
 * Usage: soak_producer BUS STREAM ACKFILE [--keys N] [--rate R] [--count N]
 *        [--timeout-ms T] [--tag TAG] [--size BYTES]
 * Prints one summary line on stderr at exit: acked, failed (per errno),
 * reattached.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spate/stream.h"

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nap_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

struct conn {
	struct spate_stream *s;
	struct spate_producer *p;
};

static void detach(struct conn *c)
{
	spate_producer_close(c->p);
	spate_stream_close(c->s);
	c->p = NULL;
	c->s = NULL;
}

/* Attach @p stream and open a producer, retrying while it is missing. */
static int attach(const char *bus, const char *stream, uint64_t timeout_ns, struct conn *c)
{
	int rc, last = 0;

	while (!stop) {
		rc = spate_stream_attach(bus, stream, &c->s);
		if (rc == 0) {
			rc = spate_producer_open(c->s, SPATE_RING_WAIT_YIELD, 0, &c->p);
			if (rc == 0) {
				for (uint32_t i = 0; i < spate_stream_shards(c->s); i++)
					spate_producer_writer(c->p, i)->timeout_ns = timeout_ns;
				return 0;
			}
			spate_stream_close(c->s);
			c->s = NULL;
		}
		if (rc != last)
			fprintf(stderr, "soak_producer %d: attach %s.%s: %s (retrying)\n",
				(int)getpid(), bus, stream, strerror(-rc));
		last = rc;
		nap_ms(20);
	}
	return -EINTR;
}

int main(int argc, char **argv)
{
	unsigned keys = 4, size = 0;
	double rate = 2000;
	uint64_t count = UINT64_MAX, timeout_ms = 2000;
	const char *tag = "p";

	if (argc < 4) {
		fprintf(stderr, "usage: soak_producer BUS STREAM ACKFILE [--keys N] [--rate R] "
				"[--count N] [--timeout-ms T] [--tag TAG] [--size BYTES]\n");
		return 2;
	}
	const char *bus = argv[1], *stream = argv[2], *ackpath = argv[3];
	for (int i = 4; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--keys"))
			keys = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--rate"))
			rate = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--count"))
			count = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--timeout-ms"))
			timeout_ms = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--tag"))
			tag = argv[i + 1];
		else if (!strcmp(argv[i], "--size"))
			size = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else {
			fprintf(stderr, "soak_producer: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (keys == 0 || keys > 100000 || size > 60000) {
		fprintf(stderr, "soak_producer: --keys 1..100000, --size <= 60000\n");
		return 2;
	}
	int ack = open(ackpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (ack < 0) {
		fprintf(stderr, "soak_producer: %s: %s\n", ackpath, strerror(errno));
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_stop };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	uint64_t *seq = calloc(keys, sizeof(*seq));
	char *buf = malloc(size + 128);
	if (!seq || !buf)
		return 1;
	struct conn c = { 0 };
	uint64_t acked = 0, failed = 0, reattached = 0, fails_by[8] = { 0 };
	const uint64_t t0 = now_ns(), tmo = timeout_ms * 1000000ull;
	int rc = attach(bus, stream, tmo, &c);
	for (uint64_t n = 0; rc == 0 && !stop && n < count; n++) {
		unsigned k = (unsigned)(n % keys);
		char key[96], line[256];
		int kl = snprintf(key, sizeof(key), "%s.%d.%u", tag, (int)getpid(), k);
		int len = snprintf(buf, 128, "%s,%" PRIu64, key, seq[k]);
		if (size > (unsigned)len) { /* pad after a separator the checker ignores */
			buf[len] = ' ';
			memset(buf + len + 1, 'x', size - (unsigned)len - 1);
			len = (int)size;
		}
		struct spate_put_result res;
		int r = spate_put(c.p, key, (size_t)kl, buf, (size_t)len, &res);
		if (r == 0) {
			int ll = snprintf(line, sizeof(line), "%s,%" PRIu64 " %u %" PRIu64 "\n", key,
					  seq[k], res.shard, res.seq);
			if (write(ack, line, (size_t)ll) != ll) {
				fprintf(stderr, "soak_producer: write %s: %s\n", ackpath,
					strerror(errno));
				break;
			}
			acked++;
		} else {
			failed++;
			fails_by[r == -EAGAIN ? 1 : r == -ETIMEDOUT ? 2 : r == -ENOTCONN ? 3
				 : r == -EIO ? 4 : r == -ENOSPC ? 5 : 0]++;
			if (failed <= 5 || failed % 1000 == 0)
				fprintf(stderr, "soak_producer %d: put %s,%" PRIu64 ": %s\n",
					(int)getpid(), key, seq[k], strerror(-r));
			if (r != -EAGAIN && r != -ETIMEDOUT) {
				detach(&c);
				reattached++;
				rc = attach(bus, stream, tmo, &c);
			}
		}
		seq[k]++; /* never the same (key, seq) twice, acknowledged or not */
		if (rate > 0) {
			uint64_t due = t0 + (uint64_t)((double)(n + 1) * 1e9 / rate);
			uint64_t t = now_ns();
			if (due > t + 1000000)
				nap_ms((unsigned)((due - t) / 1000000));
		}
	}
	detach(&c);
	close(ack);
	fprintf(stderr,
		"soak_producer %d: %s.%s acked %" PRIu64 " failed %" PRIu64 " (other %" PRIu64
		" EAGAIN %" PRIu64 " ETIMEDOUT %" PRIu64 " ENOTCONN %" PRIu64 " EIO %" PRIu64
		" ENOSPC %" PRIu64 ") reattached %" PRIu64 "\n",
		(int)getpid(), bus, stream, acked, failed, fails_by[0], fails_by[1], fails_by[2],
		fails_by[3], fails_by[4], fails_by[5], reattached);
	free(seq);
	free(buf);
	return 0;
}
