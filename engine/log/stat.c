/* SPDX-License-Identifier: MIT */
/*
 * stat.c - spate_log_stat(): what `spate log stats` prints.
 */
#include "log_pvt.h"

int spate_log_stat(const char *dir, struct spate_log_stats *st)
{
	uint64_t *bases = NULL;
	size_t n = 0;
	uint8_t *buf = NULL;
	size_t cap = 0;
	char name[64];
	int rc;

	if (!dir || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	st->first_seq = UINT64_MAX;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	rc = spate_log_list_segs(dfd, &bases, &n, 0);
	if (rc < 0)
		goto out;
	st->segments = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		spate_log_seg_name(name, sizeof(name), bases[i], ".seg");
		int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		uint64_t fsize = spate_log_file_size(fd);
		if (i + 1 < n)
			st->bytes += fsize;
		if (i == 0) {
			uint64_t ts = spate_log_seg_first_ts(dfd, bases[i]);
			st->first_ts = ts == UINT64_MAX ? 0 : ts;
		}
		if (i + 1 == n) {
			struct idx_ent *e = NULL;
			size_t ne = 0;
			struct scan sc = {0};
			uint64_t from = SEG_HDR_SIZE, seq = bases[i];
			if (spate_log_load_index(dfd, bases[i], &e, &ne) == 0 && spate_log_index_plausible(e, ne, bases[i], fsize)) {
				from = e[ne - 1].off;
				seq = e[ne - 1].seq;
			}
			free(e);
			rc = spate_log_scan_frames(fd, from, seq, fsize, 0, &sc, &buf, &cap);
			/* The active segment's preallocated tail is not data. */
			st->bytes += sc.off;
			st->next_seq = sc.next_seq;
			st->last_ts = sc.last_ts;
			if (sc.next_seq > bases[0] || n > 1)
				st->first_seq = bases[0];
		}
		close(fd);
		if (rc < 0)
			goto out;
	}
out:
	free(bases);
	free(buf);
	close(dfd);
	return rc;
}
