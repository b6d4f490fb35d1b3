/* SPDX-License-Identifier: MIT */
/*
 * engine_lock.c - one engine per bus: an exclusive flock(2) on
 * <state_dir>/engine.lock, taken by spate_engine_open() before any region is
 * mapped and held until spate_engine_close().
 *
 * Design. The kernel drops a flock when its last file descriptor closes,
 * also when the holder is killed, so a crash never leaves a stale lock and
 * "the lock is free" means "no engine runs". The holder writes "<pid>
 * <start time>\n" into the file after it has the lock, for messages and for
 * `spate deploy` (which signals that pid: with the lock held, the pid is the
 * holder's, never a recycled one). Probes (spate_engine_lock_holder) take a
 * shared lock without waiting and drop it at once; an engine that collides
 * with a probe retries for up to 10 ms before it refuses.
 *
 * Limits: the lock guards a state_dir; engines of one bus with different
 * state_dirs are told apart by the engine pid in each stream region
 * (spate_stream_engine). flock is local: state_dir on NFS is not supported.
 */
#include "spate_config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "rings/proc.h"
#include "spate/engine.h"

/* How long a taker retries while a probe holds the lock shared. */
#define LOCK_RETRY_NS (10ull * 1000 * 1000)
#define LOCK_NAP_NS (1ull * 1000 * 1000)

struct spate_engine_lock {
	int fd;
};

static int lock_path(const char *state_dir, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", state_dir, SPATE_ENGINE_LOCK_FILE);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static void nap(uint64_t ns)
{
	struct timespec ts = { 0, (long)ns };
	nanosleep(&ts, NULL);
}

/* The holder's "<pid> <start>" from @p fd; 0 if not written yet. */
static pid_t read_holder(int fd, uint64_t *start)
{
	char buf[64];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	long pid = 0;
	unsigned long long st = 0;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%ld %llu", &pid, &st) < 1 || pid <= 0)
		return 0;
	if (start)
		*start = st;
	return (pid_t)pid;
}

/* A holder writes its pid right after flock: give it a few ms. */
static pid_t wait_holder(int fd, uint64_t *start)
{
	pid_t pid = 0;

	for (int i = 0; i < 10 && !(pid = read_holder(fd, start)); i++)
		nap(LOCK_NAP_NS);
	return pid;
}

int spate_engine_lock(const char *state_dir, struct spate_engine_lock **out, pid_t *holder)
{
	char path[4200], buf[64];
	struct spate_engine_lock *l;
	uint64_t waited = 0;
	int fd, rc;

	if (!state_dir || !out)
		return -EINVAL;
	*out = NULL;
	if (holder)
		*holder = 0;
	rc = lock_path(state_dir, path, sizeof(path));
	if (rc < 0)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		if (rc == -EINTR)
			continue;
		if (rc != -EWOULDBLOCK || waited >= LOCK_RETRY_NS) {
			if (rc == -EWOULDBLOCK) {
				rc = -EBUSY;
				if (holder)
					*holder = wait_holder(fd, NULL);
			}
			close(fd);
			return rc;
		}
		nap(LOCK_NAP_NS);
		waited += LOCK_NAP_NS;
	}
	int n = snprintf(buf, sizeof(buf), "%ld %" PRIu64 "\n", (long)getpid(),
			 spate_proc_start_time(getpid()));
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		rc = -errno;
		close(fd);
		return rc ? rc : -EIO;
	}
	l = malloc(sizeof(*l));
	if (!l) {
		close(fd);
		return -ENOMEM;
	}
	l->fd = fd;
	*out = l;
	return 0;
}

void spate_engine_unlock(struct spate_engine_lock *l)
{
	if (!l)
		return;
	/* Empty the file first: a reader that opens it after we let go
	 * finds no pid rather than ours. */
	if (ftruncate(l->fd, 0) < 0) {
		/* Nothing to do: the pid is only a hint once the lock is free. */
	}
	close(l->fd); /* drops the flock */
	free(l);
}

int spate_engine_lock_holder(const char *state_dir, pid_t *pid, uint64_t *start)
{
	char path[4200];
	int fd, rc;

	if (pid)
		*pid = 0;
	if (start)
		*start = 0;
	rc = lock_path(state_dir, path, sizeof(path));
	if (rc < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	while ((rc = flock(fd, LOCK_SH | LOCK_NB)) < 0 && errno == EINTR)
		;
	if (rc == 0) { /* free: nobody runs */
		flock(fd, LOCK_UN);
		close(fd);
		return 0;
	}
	if (errno != EWOULDBLOCK) {
		rc = -errno;
		close(fd);
		return rc;
	}
	pid_t p = wait_holder(fd, start);
	close(fd);
	if (pid)
		*pid = p;
	return 1;
}
