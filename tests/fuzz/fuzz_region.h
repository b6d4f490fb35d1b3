/* SPDX-License-Identifier: MIT */
/*
 * Shared by the shared-memory harnesses (fuzz_shm.c, fuzz_stat.c): every
 * region lives in a private directory (SPATE_SHM_DIR, set once at start);
 * each input becomes a region file built from a template region that the
 * library itself created, so mutations land on real layouts:
 *
 *   byte 0 % 3 == 0: the rest is the whole file, shared-memory header
 *                    included (attach must refuse or accept it, never crash);
 *   byte 0 % 3 == 1: the rest overlays the template's user area from offset
 *                    0 (the stream/stats header and what follows);
 *   byte 0 % 3 == 2: the rest is patches {u32 offset LE, u8 length, bytes},
 *                    offsets taken modulo the user area, reaching anywhere.
 *
 * Set SPATE_FUZZ_DUMP=FILE to write the unmodified template as a mode-0
 * input (how the seed corpus was made).
 */
#ifndef SPATE_FUZZ_REGION_H
#define SPATE_FUZZ_REGION_H

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spate/shm.h"

#define FUZZ_USER_OFF 4096u

static char fuzz_dir[PATH_MAX];
static uint8_t *fuzz_tmpl;    /* the template's user area */
static size_t fuzz_tmpl_len;
static uint8_t *fuzz_file;    /* the file being built */
static size_t fuzz_file_cap;

/* At exit: the region files and the directory go. */
static void fuzz_region_cleanup(void)
{
	static const char *const names[] = { "fz.s", "fz..stats", "fz.in" };
	char path[PATH_MAX + 80];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/spate.%s", fuzz_dir, names[i]);
		unlink(path);
	}
	rmdir(fuzz_dir);
}

/* A private region directory, on tmpfs when /dev/shm is there. */
static void fuzz_region_init(void)
{
	snprintf(fuzz_dir, sizeof(fuzz_dir), "/dev/shm/spate-fuzz-XXXXXX");
	if (!mkdtemp(fuzz_dir)) {
		snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/spate-fuzz-XXXXXX");
		if (!mkdtemp(fuzz_dir))
			abort();
	}
	setenv("SPATE_SHM_DIR", fuzz_dir, 1);
	atexit(fuzz_region_cleanup);
}

/* Keep the user area of region @p name (just created) as the template. */
static void fuzz_region_keep_template(const struct spate_shm *shm)
{
	fuzz_tmpl_len = spate_shm_user_size(shm);
	fuzz_tmpl = malloc(fuzz_tmpl_len);
	if (!fuzz_tmpl)
		abort();
	memcpy(fuzz_tmpl, spate_shm_user(shm), fuzz_tmpl_len);
}

static int fuzz_write(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return -1;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w <= 0) {
			close(fd);
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	close(fd);
	return 0;
}

/* A valid shared-memory header for a user area of @p user bytes. */
static void fuzz_shm_hdr(struct spate_shm_hdr *h, const char *name, size_t user, size_t total)
{
	memset(h, 0, sizeof(*h));
	h->magic = SPATE_SHM_MAGIC;
	h->layout_version = SPATE_SHM_LAYOUT_VERSION;
	h->hdr_size = sizeof(*h);
	h->total_size = total;
	h->user_off = FUZZ_USER_OFF;
	h->user_size = user;
	h->page_size = 4096;
	h->backing = SPATE_SHM_BACKING_SHM;
	h->creator_pid = 1;
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->ready = SPATE_SHM_READY;
}

/* Write region file spate.<name> for input @p data. 0, or -1 (skip it). */
static int fuzz_region_write(const char *name, const uint8_t *data, size_t size)
{
	char path[PATH_MAX + 80];
	size_t total = FUZZ_USER_OFF + ((fuzz_tmpl_len + 4095) & ~(size_t)4095);

	snprintf(path, sizeof(path), "%s/spate.%s", fuzz_dir, name);
	if (size < 1)
		return -1;
	if (data[0] % 3 == 0)
		return fuzz_write(path, data + 1, size - 1);
	if (fuzz_file_cap < total) {
		free(fuzz_file);
		fuzz_file = malloc(total);
		if (!fuzz_file)
			abort();
		fuzz_file_cap = total;
	}
	memset(fuzz_file, 0, total);
	fuzz_shm_hdr((struct spate_shm_hdr *)(void *)fuzz_file, name, fuzz_tmpl_len, total);
	uint8_t *user = fuzz_file + FUZZ_USER_OFF;
	memcpy(user, fuzz_tmpl, fuzz_tmpl_len);
	if (data[0] % 3 == 1) {
		size_t n = size - 1 < fuzz_tmpl_len ? size - 1 : fuzz_tmpl_len;
		memcpy(user, data + 1, n);
	} else {
		size_t i = 1;
		while (i + 5 <= size) {
			uint32_t off;
			memcpy(&off, data + i, 4);
			size_t len = data[i + 4];
			i += 5;
			if (len > size - i)
				len = size - i;
			off %= (uint32_t)fuzz_tmpl_len;
			if (len > fuzz_tmpl_len - off)
				len = fuzz_tmpl_len - off;
			memcpy(user + off, data + i, len);
			i += len;
		}
	}
	return fuzz_write(path, fuzz_file, total);
}

/* SPATE_FUZZ_DUMP=FILE: the template as a mode-0 input (a seed). */
static void fuzz_region_dump(const char *name)
{
	const char *to = getenv("SPATE_FUZZ_DUMP");
	uint8_t one = 1;

	if (!to)
		return;
	/* Build the unmodified file through mode 1 with an empty overlay. */
	if (fuzz_region_write(name, &one, 1) != 0)
		abort();
	size_t total = FUZZ_USER_OFF + ((fuzz_tmpl_len + 4095) & ~(size_t)4095);
	uint8_t *seed = malloc(total + 1);
	if (!seed)
		abort();
	seed[0] = 0;
	memcpy(seed + 1, fuzz_file, total);
	if (fuzz_write(to, seed, total + 1) != 0)
		abort();
	free(seed);
}

#endif
