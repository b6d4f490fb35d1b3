/* SPDX-License-Identifier: MIT */
/* Internal: checkpoints of consumers, in one place: the stream region's
 * shared table (spate/checkpoint.h), the files in state_dir, and where a
 * restart resumes. Called by the engine (restart, the control thread's
 * flush) and the consumer (the shared table). Not installed. */
#ifndef SPATE_ENGINE_CHECKPOINT_H
#define SPATE_ENGINE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "spate/checkpoint.h"

struct spate_stream;

/**
 * Restart: read the checkpoint file of @p consumer on stream @p s in
 * @p state_dir and decide where each shard resumes, into @p resume
 * ([shards]; UINT64_MAX: no checkpoint, the consumer's starting position
 * decides). @p log_end ([shards], or NULL) is each persisted shard's next
 * sequence number (UINT64_MAX: not persisted): a checkpoint past it (the
 * log lost its tail in a machine crash) resumes there, and says so.
 * @return 0 (an absent file is no checkpoint), or the -errno of reading it.
 */
int spate_ckpt_resume(const char *state_dir, const struct spate_stream *s, const char *consumer,
		      const uint64_t *log_end, uint64_t *resume);

/**
 * Write the checkpoint file of @p consumer on stream @p s: @p next
 * ([shards], UINT64_MAX: none) is each shard's next sequence number.
 * Durable (spate_ckpt_write_file). Callers serialize writes of one file.
 * @return 0, or the errors of spate_ckpt_write_file(), -ENOMEM.
 */
int spate_ckpt_save(const char *state_dir, const struct spate_stream *s, const char *consumer,
		    const uint64_t *next);

/**
 * Replace file @p path durably: write @p buf to "<path>.tmp" and fdatasync it
 * through io_uring (write linked to fdatasync; pwrite + fdatasync where
 * io_uring is refused), rename it over @p path, fsync the directory. A
 * crash leaves the old file or the new one, never a mix.
 * @return 0, -ENAMETOOLONG, -ENOSPC, -EIO, -errno.
 */
int spate_ckpt_write_file(const char *path, const void *buf, size_t len);

#endif
