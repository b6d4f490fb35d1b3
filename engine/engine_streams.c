/* SPDX-License-Identifier: MIT */
/*
 * engine_streams.c - streams created and deleted while the engine runs
 * (spate/engine.h, "Streams created and deleted while the engine runs").
 * Interface commit: every function answers -ENOSYS until the
 * implementation lands.
 */
#include "spate_config.h"

#include <errno.h>
#include <stddef.h>

#include "spate/engine.h"

int spate_engine_stream_add(struct spate_engine *e, const struct spate_config_stream *cs,
			    char *err, size_t errlen)
{
	(void)e, (void)cs, (void)err, (void)errlen;
	return -ENOSYS;
}

int spate_engine_stream_remove(struct spate_engine *e, const char *name, unsigned flags)
{
	(void)e, (void)name, (void)flags;
	return -ENOSYS;
}

struct spate_stream *spate_engine_stream_get(struct spate_engine *e, const char *name)
{
	return spate_engine_stream(e, name);
}

void spate_engine_stream_put(struct spate_engine *e, struct spate_stream *s)
{
	(void)e, (void)s;
}

int spate_engine_stream_info(struct spate_engine *e, const char *name,
			     struct spate_engine_stream_info *out)
{
	(void)e, (void)name, (void)out;
	return -ENOSYS;
}

int spate_engine_stream_list(struct spate_engine *e, struct spate_engine_stream_info *out,
			     uint32_t max)
{
	(void)e, (void)out, (void)max;
	return -ENOSYS;
}

int spate_engine_stream_set_retention(struct spate_engine *e, const char *name,
				      uint64_t retention_ns)
{
	(void)e, (void)name, (void)retention_ns;
	return -ENOSYS;
}

int spate_engine_stream_tag(struct spate_engine *e, const char *name,
			    const struct spate_engine_tag *tags, uint32_t n, char *err,
			    size_t errlen)
{
	(void)e, (void)name, (void)tags, (void)n, (void)err, (void)errlen;
	return -ENOSYS;
}

int spate_engine_stream_untag(struct spate_engine *e, const char *name, const char *const *keys,
			      uint32_t n)
{
	(void)e, (void)name, (void)keys, (void)n;
	return -ENOSYS;
}

int spate_engine_stream_tags(struct spate_engine *e, const char *name,
			     struct spate_engine_tag *out, uint32_t max)
{
	(void)e, (void)name, (void)out, (void)max;
	return -ENOSYS;
}
