/* SPDX-License-Identifier: MIT */
/*
 * proc.c - is the process that owns a slot or a region still the same one?
 * A pid alone can be reused; pid plus start time (clock ticks since boot,
 * field 22 of /proc/PID/stat) identifies a process for the life of the boot.
 * A zombie counts as dead: it will never touch shared memory again.
 * Limits: needs /proc; comm may contain ')' so parsing starts after the last.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rings/proc.h"

int spate_proc_stat(pid_t pid, char *state, uint64_t *start)
{
	char path[64], buf[4096], *p, *end;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -EIO : -EINVAL;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || !p[2])
		return -EINVAL;
	p += 2;
	*state = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
	}
	errno = 0;
	*start = strtoull(p, &end, 10);
	return (errno || end == p) ? -EINVAL : 0;
}

uint64_t spate_proc_start_time(pid_t pid)
{
	uint64_t start;
	char state;

	return spate_proc_stat(pid, &state, &start) == 0 ? start : 0;
}

int spate_proc_alive(pid_t pid, uint64_t start_time)
{
	uint64_t start;
	char state;
	int r;

	if (pid <= 0)
		return 0;
	if (kill(pid, 0) != 0 && errno != EPERM)
		return 0;
	r = spate_proc_stat(pid, &state, &start);
	if (r == -ENOENT)
		return 0;
	if (r)
		return 1; /* kill() says it exists and /proc cannot tell more */
	if (state == 'Z' || state == 'X')
		return 0;
	return (start_time == 0 || start == start_time) ? 1 : 0;
}

uint64_t spate_proc_pidns(void)
{
	struct stat st;

	/* The namespace of this process, not of its children: /proc/self/ns/pid
	 * (pid_for_children may differ after unshare(CLONE_NEWPID)). */
	if (stat("/proc/self/ns/pid", &st) != 0)
		return 0;
	return (uint64_t)st.st_ino;
}
