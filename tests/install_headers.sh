#!/bin/sh
# SPDX-License-Identifier: MIT
# install_headers.sh MESON BUILD_ROOT
#
# An installed prefix is usable: `meson install --destdir` (headers and
# pkg-config file, tag devel) into a scratch directory, then every
# `#include "spate/..."` of every installed header must be installed too,
# each installed header must compile on its own (cc -fsyntax-only against
# the installed tree only), and spate/stats.h (the supported reading API)
# must be among them; spate/slog.h does not pull in spate/plugin.h, nor
# spate/plugin.h spate/ring.h. Exit 77 (skipped) without a C compiler.
set -eu
meson=$1 build=$2
CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || { echo "install_headers: no $CC: skipped"; exit 77; }
fail() { echo "install_headers: FAIL: $*" >&2; exit 1; }

dest=$(mktemp -d "${TMPDIR:-/tmp}/spate-inst-XXXXXX")
trap 'rm -rf "$dest"' EXIT
$meson install -C "$build" --no-rebuild --quiet --tags devel --destdir "$dest" >/dev/null \
	|| fail "meson install --destdir $dest"
inc=$(find "$dest" -type d -path '*/include/spate' | head -n 1)
[ -n "$inc" ] || fail "no include/spate under $dest"
[ -f "$inc/stats.h" ] || fail "spate/stats.h is not installed"
n=0
for h in "$inc"/*.h; do
	for dep in $(sed -n 's/^#[[:space:]]*include[[:space:]]*"\(spate\/[^"]*\)".*/\1/p' "$h"); do
		[ -f "$inc/../$dep" ] || fail "$(basename "$h") includes $dep, which is not installed"
	done
	printf '#include "spate/%s"\n' "$(basename "$h")" >"$dest/one.c"
	"$CC" -std=gnu11 -fsyntax-only -Wall -Werror -I"$inc/.." "$dest/one.c" \
		|| fail "installed $(basename "$h") does not compile on its own"
	n=$((n + 1))
done
# The logger is independent of the plugin ABI, and the plugin ABI of the
# ring (issue 10): neither pulls in the other.
printf '#include "spate/slog.h"\n#ifdef SPATE_PLUGIN_H\n#error slog.h includes plugin.h\n#endif\n' \
	>"$dest/one.c"
"$CC" -std=gnu11 -fsyntax-only -Werror -I"$inc/.." "$dest/one.c" || fail "spate/slog.h pulls in spate/plugin.h"
printf '#include "spate/plugin.h"\n#ifdef SPATE_RING_H\n#error plugin.h includes ring.h\n#endif\n' \
	>"$dest/one.c"
"$CC" -std=gnu11 -fsyntax-only -Werror -I"$inc/.." "$dest/one.c" || fail "spate/plugin.h pulls in spate/ring.h"
echo "install_headers: OK ($n headers)"
