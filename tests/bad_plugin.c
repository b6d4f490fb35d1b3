/* SPDX-License-Identifier: MIT */
/*
 * bad_plugin.c - plugins the loader must refuse (test_plugin), one per
 * -DBAD_* variant: ABI 999, a struct_size smaller than any descriptor of
 * ABI 1, no descriptor symbol, a descriptor of a future ABI under its own
 * symbol (spate_plugin_v2), a descriptor without process(), and a descriptor
 * from a newer revision of ABI 1 that sets a field this host does not know
 * (BAD_TAIL). -DNEWER_ZERO is the same newer descriptor with that field
 * left zero, which the host must accept (built as newer_plugin.so).
 */
#include "spate/plugin.h"

__attribute__((unused)) static int bad_init(const struct spate_plugin_ctx *ctx, void **state)
{
	*state = 0;
	return 0;
}

__attribute__((unused)) static int bad_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	res->status = SPATE_BATCH_OK;
	return 0;
}

#if defined(BAD_ABI)
__attribute__((visibility("default"))) const struct spate_plugin spate_plugin_v1 = {
	.abi_version = 999, .struct_size = sizeof(struct spate_plugin), .name = "bad_abi",
	.init = bad_init, .process = bad_process,
};
#elif defined(BAD_SIZE)
__attribute__((visibility("default"))) const struct spate_plugin spate_plugin_v1 = {
	.abi_version = SPATE_PLUGIN_ABI_VERSION, .struct_size = SPATE_PLUGIN_DESC_MIN_SIZE - 8,
	.name = "bad_size", .init = bad_init, .process = bad_process,
};
#elif defined(BAD_NOSYM)
/* Exports something, but not the descriptor. */
__attribute__((visibility("default"))) extern const int spate_not_a_plugin;
const int spate_not_a_plugin = 1;
#elif defined(BAD_V2)
__attribute__((visibility("default"))) const struct spate_plugin spate_plugin_v2 = {
	.abi_version = 2, .struct_size = sizeof(struct spate_plugin) + 16, .name = "bad_v2",
	.init = bad_init, .process = bad_process,
};
#elif defined(BAD_DESC)
SPATE_PLUGIN_DEFINE(.name = "bad_desc", .init = bad_init);
#elif defined(BAD_TAIL) || defined(NEWER_ZERO)
/* A descriptor of a later revision: one more hook after today's. */
struct newer_export {
	struct spate_plugin d;
	void (*next_hook)(void);
};

__attribute__((unused)) static void next_hook(void)
{
}

__attribute__((visibility("default"))) extern const struct newer_export spate_plugin_v1;
const struct newer_export spate_plugin_v1 = {
	.d = { .abi_version = SPATE_PLUGIN_ABI_VERSION, .struct_size = sizeof(struct newer_export),
	       .name = "newer", .init = bad_init, .process = bad_process },
#ifdef BAD_TAIL
	.next_hook = next_hook,
#endif
};
#else
#error "define one BAD_* variant"
#endif
