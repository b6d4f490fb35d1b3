/* SPDX-License-Identifier: MIT */
/*
 * fuzz_log.c - libFuzzer harness for the log's frame reader and recovery:
 * the input becomes segment files of a log directory, which every reader
 * mode reads to its end or to damage, spate_log_verify() walks, and
 * spate_log_open() recovers (refusing, cutting a torn tail, or with
 * SPATE_LOG_F_REPAIR cutting at corruption). None of them may crash,
 * allocate a frame's claimed length before it is known to fit, or loop.
 *
 * Input layout: byte 0 selects the shape: bit 0 set: the bytes after it
 * are a whole segment file, header included; clear: a valid header
 * (base_seq 0) is written first and the bytes are its frames. Bit 1: the
 * input is cut in two at byte 1's position and the second part is a
 * second segment (with a valid header for base_seq = byte 2). Bit 2: a
 * repair journal line skipping damage at the first frame is added.
 *
 * Build (tests/fuzz/meson.build, or by hand):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude \
 *     tests/fuzz/fuzz_log.c engine/log/[a-z]*.c -luring -lisal -o fuzz_log
 *   ./fuzz_log tests/fuzz/corpus/log
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <isa-l/crc.h>

#include "spate/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void clear_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[512];

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
}

static uint32_t crc32c(const void *b, size_t n)
{
	return ~crc32_iscsi((unsigned char *)(uintptr_t)b, (int)n, ~0u);
}

/* A valid 4096-byte segment header for @p base, then @p n bytes. */
static void put_seg(uint64_t base, const uint8_t *p, size_t n, int raw)
{
	char path[512];
	uint8_t h[4096] = {0};

	snprintf(path, sizeof(path), "%s/%020llu.seg", dir, (unsigned long long)base);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (!raw) {
		uint64_t magic = SPATE_LOG_SEG_MAGIC, created = 1, segb = 1u << 20;
		uint32_t ver = SPATE_LOG_FORMAT_VERSION, hs = 4096, flags = 0;
		memcpy(h, &magic, 8);
		memcpy(h + 8, &ver, 4);
		memcpy(h + 12, &hs, 4);
		memcpy(h + 16, &base, 8);
		memcpy(h + 24, &created, 8);
		memcpy(h + 32, &segb, 8);
		memcpy(h + 40, &flags, 4);
		uint32_t c = crc32c(h, 44);
		memcpy(h + 44, &c, 4);
		if (write(fd, h, sizeof(h)) != (ssize_t)sizeof(h))
			abort();
	}
	if (n && write(fd, p, n) != (ssize_t)n)
		abort();
	close(fd);
}

static void read_all(uint32_t flags)
{
	struct spate_log_reader *rd;
	struct spate_ring_rec v[64];

	if (spate_log_reader_open_flags(dir, SPATE_LOG_FROM_OLDEST, 0, flags, &rd) < 0)
		return;
	for (int i = 0; i < 100000; i++) {
		uint64_t skipped;
		int n = spate_log_read(rd, v, 64, &skipped);
		if (n < 0) {
			struct spate_log_damage d;
			spate_log_reader_damage(rd, &d);
			break;
		}
		if (n == 0)
			break;
		for (int k = 0; k < n; k++) {
			volatile uint8_t x = 0;
			if (v[k].len)
				x = ((const uint8_t *)v[k].data)[v[k].len - 1];
			(void)x;
		}
	}
	spate_log_reader_close(rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/dev/shm/spate-fuzz-log-%d", (int)getpid());
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			snprintf(dir, sizeof(dir), "/tmp/spate-fuzz-log-%d", (int)getpid());
		mkdir(dir, 0700);
	}
	if (size < 3)
		return 0;
	uint8_t mode = data[0];
	size_t cut = size - 3;
	if (mode & 2)
		cut = (size_t)data[1] * 32u < size - 3 ? (size_t)data[1] * 32u : size - 3;
	clear_dir();
	put_seg(0, data + 3, cut, mode & 1);
	if (mode & 2)
		put_seg(data[2], data + 3 + cut, size - 3 - cut, 0);
	if (mode & 4) {
		char p[512];
		snprintf(p, sizeof(p), "%s/REPAIR", dir);
		FILE *f = fopen(p, "w");
		if (f) {
			fprintf(f, "skip segment=0 offset=4096 seq=0 resume_segment=%u resume_offset=4096 "
				   "resume_seq=%u\n", data[2], data[2]);
			fclose(f);
		}
	}
	read_all(SPATE_LOG_RD_F_PER_FRAME);
	read_all(SPATE_LOG_RD_F_PREAD);
	struct spate_log_verify v;
	spate_log_verify(dir, &v, NULL, NULL);
	struct spate_log_stats st;
	spate_log_stat(dir, &st);
	/* Recovery last: it may cut what the readers saw. */
	struct spate_log_params p = {.flags = SPATE_LOG_F_NO_URING | SPATE_LOG_F_BUFFERED,
				     .segment_bytes = 16384};
	struct spate_log *l;
	struct spate_log_recovery rep;
	if (spate_log_open(dir, &p, &l, &rep) == 0) {
		spate_log_close(l);
		read_all(SPATE_LOG_RD_F_PREAD);
	} else {
		p.flags |= SPATE_LOG_F_REPAIR;
		if (spate_log_open(dir, &p, &l, &rep) == 0)
			spate_log_close(l);
	}
	return 0;
}
