/* SPDX-License-Identifier: MIT */
/*
 * util.c - small file-system helpers that more than one engine module needs
 * (the engine's state directory, the persister's log directories). Leaf
 * module: it includes nothing of spate, so anything may call it.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/util.h"

int spate_util_mkdir_p(const char *dir, mode_t mode)
{
	char buf[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, dir, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}
