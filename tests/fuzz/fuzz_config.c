/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the YAML configuration loader (engine/config.c) from
 * bytes, as spate_config_load() reads a file: parse, check, and on success
 * the accessors the engine and the CLI use. Contract: any input yields a
 * config or an error naming file, line and field, never a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "spate/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spate_config *c = NULL;
	char err[512];

	if (spate_config_parse((const char *)data, size, "fuzz.yaml", &c, err, sizeof(err)) != 0) {
		/* Errors are strings: they must be terminated. */
		if (strnlen(err, sizeof(err)) == sizeof(err))
			__builtin_trap();
		return 0;
	}
	if (spate_config_validate(c, err, sizeof(err)) != 0)
		__builtin_trap(); /* parse checks what validate checks */
	for (uint32_t i = 0; i < c->n_streams; i++) {
		char dir[SPATE_CONFIG_PATH_MAX + 16];
		(void)spate_config_find_stream(c, c->streams[i].name);
		(void)spate_config_stream_log_dir(c, &c->streams[i], 0, dir, sizeof(dir));
	}
	for (uint32_t i = 0; i < c->n_consumers; i++)
		(void)spate_config_find_consumer(c, c->consumers[i].name);
	spate_config_free(c);
	return 0;
}
