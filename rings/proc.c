/* SPDX-License-Identifier: MIT */
/*
 * proc.c - is the process that owns a slot or a region still the same one?
 * A pid alone can be reused; pid plus start time (clock ticks since boot,
 * field 22 of /proc/PID/stat) identifies a process for the life of the boot.
 * Limits: needs /proc; parsing skips the comm field by the last ')'.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rings/proc.h"

uint64_t spate_proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	/* After ')' come fields 3.. ; start time is field 22, i.e. the 20th. */
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return 0;
	}
	return strtoull(p + 1, NULL, 10);
}

int spate_proc_alive(pid_t pid, uint64_t start_time)
{
	if (pid <= 0)
		return 0;
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return 0;
	if (!start_time)
		return 1;
	return spate_proc_start_time(pid) == start_time;
}
