#!/bin/sh
# SPDX-License-Identifier: MIT
# plugin_cxx.sh SRC_ROOT PLUGIN_LOAD
#
# The plugin ABI's headers are C++-clean (issue 10 item 7): spate/record.h,
# spate/loglevel.h and spate/plugin.h pass `g++ -fsyntax-only -x c++` with
# -Wall -Wextra -Werror in C++11 and C++20, without pulling in spate/ring.h
# (C11 _Atomic); and a plugin written in C++20 with SPATE_PLUGIN_DEFINE
# builds as a shared object that exports an unmangled descriptor and loads
# and runs in the host (tests/plugin_load.c). Exit 77 (skipped) without g++.
set -eu
src=$1 loader=$2
CXX=${CXX:-g++}
command -v "$CXX" >/dev/null 2>&1 || { echo "plugin_cxx: no $CXX: skipped"; exit 77; }
fail() { echo "plugin_cxx: FAIL: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/spate-cxx-XXXXXX")
trap 'rm -rf "$work"' EXIT

cat >"$work/headers.cc" <<'CC'
#include "spate/record.h"
#include "spate/loglevel.h"
#include "spate/plugin.h"
#include "spate/slog.h"
#ifdef SPATE_RING_H
#error "spate/plugin.h pulls in spate/ring.h"
#endif
#ifdef __STDC_VERSION_STDATOMIC_H__
#error "spate/plugin.h pulls in <stdatomic.h>"
#endif
static_assert(sizeof(struct spate_ring_rec) == 40, "record view");
static_assert(SPATE_LOG_DEBUG == 3, "log levels");
int probe(const struct spate_batch *b, const struct spate_plugin_ctx *ctx);
int probe(const struct spate_batch *b, const struct spate_plugin_ctx *ctx)
{
	return SPATE_PLUGIN_HAS(b, struct_size) && spate_plugin_opt(ctx, "k", "d") != nullptr;
}
CC
for std in c++11 c++20; do
	"$CXX" -std=$std -fsyntax-only -x c++ -Wall -Wextra -Werror -I"$src/include" \
		"$work/headers.cc" || fail "spate/plugin.h as $std"
done

cat >"$work/cxx_plugin.cc" <<'CC'
#include <string>
#include "spate/plugin.h"

namespace {
struct sum_state {
	std::string out;
	unsigned long long total = 0;
};

int cxx_init(const struct spate_plugin_ctx *, void **state)
{
	*state = new sum_state;
	return 0;
}

int cxx_process(void *state, const struct spate_batch *b, struct spate_batch_result *res)
{
	auto *s = static_cast<sum_state *>(state);
	for (uint32_t i = 0; i < b->count; i++)
		s->total += std::stoull(std::string(static_cast<const char *>(b->recs[i].data),
						     b->recs[i].len));
	res->status = b->struct_size >= sizeof(*b) ? SPATE_BATCH_OK : SPATE_BATCH_FATAL;
	return 0;
}

void cxx_fini(void *state)
{
	delete static_cast<sum_state *>(state);
}
} // namespace

SPATE_PLUGIN_DEFINE(.name = "cxx", .version = "1.0", .init = cxx_init, .process = cxx_process,
		    .fini = cxx_fini);
CC
# -Wextra in C++ also warns of members a designated initializer leaves out.
"$CXX" -std=c++20 -shared -fPIC -fvisibility=hidden -Wall -Wextra -Wno-missing-field-initializers -Werror -I"$src/include" \
	-o "$work/cxx.so" "$work/cxx_plugin.cc" || fail "building a C++ plugin"
out=$(printf '1\n2\n39\n' | "$loader" "$work/cxx.so") || fail "loading cxx.so: $out"
echo "$out"
echo "$out" | grep -q "^loaded cxx 1.0 " || fail "loaded: $out"
echo "$out" | grep -q "^status OK 0" || fail "status: $out"
echo "plugin_cxx: OK"
