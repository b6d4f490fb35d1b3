/* SPDX-License-Identifier: MIT */
/**
 * @file spate/checkpoint.h
 * @brief A stream's shared checkpoint table: where each consumer is, per
 *        shard, readable by any process that attaches the stream.
 *
 * The table lives in the stream region (spate/stream.h lays it out: struct
 * spate_stream_ckpt entries at the header's ckpt_off). The engine's
 * consumers write it after every batch (or every checkpoint_interval); the
 * engine copies it to a checkpoint file per stream and consumer in its
 * state_dir, which is what a restart resumes from (engine/checkpoint.c).
 */
#ifndef SPATE_CHECKPOINT_H
#define SPATE_CHECKPOINT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct spate_stream;
struct spate_stream_ckpt;

/**
 * Find or create the checkpoint entry of consumer @p consumer
 * (1..SPATE_STREAM_NAME_MAX characters of [A-Za-z0-9._-]) in stream @p s.
 * Any thread, any process: concurrent opens of one name yield one entry. A
 * new entry has every next_seq at UINT64_MAX.
 * @return 0, -ENOSPC (table full), -EINVAL (bad name), -EBADMSG (corrupt
 *         entry), -EAGAIN (an entry stayed half-claimed for a second: its
 *         claimer died in the middle of a claim).
 */
int spate_stream_ckpt_open(struct spate_stream *s, const char *consumer,
			   struct spate_stream_ckpt **out);
/** Store shard @p shard's next sequence number (release). @p shard must be
 *  below spate_stream_shards(); not checked. Thread: the consumer's. */
void spate_stream_ckpt_set(struct spate_stream_ckpt *c, uint32_t shard, uint64_t next_seq);
/** Load it (acquire); UINT64_MAX if never set. Any thread. */
uint64_t spate_stream_ckpt_get(const struct spate_stream_ckpt *c, uint32_t shard);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_CHECKPOINT_H */
