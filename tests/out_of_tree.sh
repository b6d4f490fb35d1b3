#!/bin/sh
# SPDX-License-Identifier: MIT
# out_of_tree.sh SRC_ROOT BUILD_ROOT PLUGIN_LOAD
#
# Builds docs/examples/plugin the way a user does (make, pkg-config --cflags
# spate), against this build tree's meson-uninstalled/spate-uninstalled.pc,
# and loads the result with spate_plugin_load() (tests/plugin_load.c). Also
# checks that both .pc files give plugindir: the build's plugins/ when
# uninstalled, ${libdir}/spate/<abi> when installed. Exit 77 (skipped) when
# make, pkg-config or cc is missing.
set -eu
src=$1 build=$2 loader=$3

fail() { echo "out_of_tree: FAIL: $*" >&2; exit 1; }
for t in make pkg-config "${CC:-cc}"; do
	command -v "$t" >/dev/null 2>&1 || { echo "out_of_tree: no $t: skipped"; exit 77; }
done

pc=$build/meson-uninstalled/spate-uninstalled.pc
[ -f "$pc" ] || fail "$pc missing"
export PKG_CONFIG_PATH="$build/meson-uninstalled"
# pkg-config prefers spate-uninstalled.pc over spate.pc when it finds one;
# --uninstalled says whether it did.
pkg-config --uninstalled spate || fail "pkg-config did not pick $pc"
cflags=$(pkg-config --cflags spate) || fail "pkg-config --cflags spate"
case "$cflags" in *"$src/include"*) ;; *) fail "cflags '$cflags' lack $src/include" ;; esac
plugindir=$(pkg-config --variable=plugindir spate)
[ "$plugindir" = "$build/plugins" ] || fail "uninstalled plugindir '$plugindir', wanted $build/plugins"
inst=$(PKG_CONFIG_PATH="$build/meson-private" pkg-config --variable=plugindir spate)
case "$inst" in /*/spate/[0-9]*) ;; *) fail "installed plugindir '$inst'" ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/spate-oot-XXXXXX")
trap 'rm -rf "$work"' EXIT
work=$(cd "$work" && pwd -P)
cp "$src/docs/examples/plugin/sum.c" "$src/docs/examples/plugin/Makefile" "$work/"
# No sanitizer or project flags leak in: the plugin is built as a user would.
env -u CFLAGS -u LDFLAGS make -s -C "$work" CFLAGS="-O2 -Wall -Wextra -Werror" \
	|| fail "make in $work"
[ -f "$work/sum.so" ] || fail "no sum.so"

out=$(printf '1\n2\n39\n' | "$loader" "$work/sum.so" "out=$work/total-%s.txt") \
	|| fail "loading sum.so: $out"
echo "$out"
echo "$out" | grep -q "^loaded sum 1.0 $work/sum.so\$" || fail "loaded: $out"
echo "$out" | grep -q "^status OK 0" || fail "status: $out"
[ "$(cat "$work/total-0.txt")" = 42 ] || fail "total $(cat "$work/total-0.txt")"

out=$(printf '5\nfive\n6\n' | "$loader" "$work/sum.so") || fail "$out"
echo "$out" | grep -q "^status PARTIAL 1 sum: record 1 is not a number" || fail "partial: $out"

# The bundled plugins are found by name in plugindir.
out=$(SPATE_PLUGIN_PATH="$plugindir" "$loader" count </dev/null) || fail "$out"
echo "$out" | grep -q "^loaded count 1.0 $plugindir/count.so\$" || fail "by name: $out"
echo "out_of_tree: OK"
