#!/bin/sh
# `meson install` into a staging directory: the installed spate must run
# with no LD_LIBRARY_PATH (it finds libspate.so.0 by its relative rpath),
# and the man page, bash completion, licence, headers and pkg-config file
# must be there. Usage: install.sh BUILD_DIR
set -eu
build=$1
dest=$(mktemp -d /tmp/spate-install-XXXXXX)
trap 'rm -rf "$dest"' EXIT
fail() { echo "install.sh: FAIL: $*" >&2; exit 1; }

meson install -C "$build" --no-rebuild --destdir "$dest" > "$dest.log" 2>&1 ||
	{ cat "$dest.log" >&2; rm -f "$dest.log"; fail "meson install"; }
rm -f "$dest.log"
opt() { meson introspect "$build" --buildoptions |
	python3 -c "import json,sys; print([o['value'] for o in json.load(sys.stdin) if o['name']=='$1'][0])"; }
prefix=$(opt prefix)
root="$dest$prefix"
bin="$root/$(opt bindir)/spate"
[ -x "$bin" ] || fail "no $bin"
# Not the build tree's library: move the build's copy out of reach by
# running from an unrelated directory with a clean environment.
out=$(cd / && env -u LD_LIBRARY_PATH "$bin" --version) || fail "installed spate --version: $out"
echo "$out" | grep -q "^spate [0-9]" || fail "version: $out"
env -u LD_LIBRARY_PATH ldd "$bin" | grep libspate.so.0 | grep -q "$root/" ||
	fail "libspate.so.0 not from the install: $(env -u LD_LIBRARY_PATH ldd "$bin" | grep libspate)"
(cd / && env -u LD_LIBRARY_PATH "$bin" put --help) | grep -q "usage: spate put" || fail "put --help"
[ -f "$root/$(opt mandir)/man1/spate.1" ] || fail "no man page"
comp="$root/$(opt datadir)/bash-completion/completions/spate"
[ -f "$comp" ] || fail "no bash completion at $comp"
bash -n "$comp" || fail "bash completion does not parse"
[ -f "$root/$(opt datadir)/doc/spate/LICENSE" ] || fail "no LICENSE"
[ -f "$root/$(opt includedir)/spate/engine.h" ] || fail "no headers"
ls "$root/$(opt libdir)/pkgconfig/spate.pc" > /dev/null || fail "no pkg-config file"
echo "install.sh: installed spate runs without LD_LIBRARY_PATH; man page, completion, licence installed"
