#!/bin/sh
# SPDX-License-Identifier: MIT
# No import cycle among the library's modules (issue 10, item 2).
#
# A module is a .c file with the headers named after it: engine/x.c,
# engine/x.h (internal), include/spate/x.h (public), and x_pvt.h,
# x_layout.h (private layout) and x_host.h (an internal side), unless they
# have a .c file of their own. Module A imports B when a file of A
# #includes a header of B. The module graph must be acyclic (tsort finds a
# loop, and the loop is printed).
#
# With a static libspate.a as the second argument, the same check runs on
# the link graph too: A imports B when an object of A uses a symbol defined
# in an object of B. That catches what #includes hide: a function declared
# in one module's header but defined in another's .c file.
#
# usage: include_cycles.sh SOURCE_ROOT [libspate.a]
set -eu
root=${1:?usage: include_cycles.sh SOURCE_ROOT [libspate.a]}
lib=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

module() { # path -> module name
	b=$(basename "$1")
	b=${b%.*}
	# A header with a .c of its own is that module's; else the suffixes
	# below name the module whose private part it is.
	if [ ! -f "$root/engine/$b.c" ] && [ ! -f "$root/rings/$b.c" ]; then
		b=${b%_pvt}
		b=${b%_layout}
		b=${b%_host} # plugin_host.h: the loader's side of plugin.c
	fi
	echo "$b"
}

# 1. #include graph.
: >"$tmp/inc"
for f in "$root"/engine/*.c "$root"/engine/*.h "$root"/rings/*.c "$root"/rings/*.h \
	"$root"/include/spate/*.h; do
	[ -f "$f" ] || continue
	m=$(module "$f")
	sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
		while read -r inc; do
			case $inc in
			spate/*) h="$root/include/$inc" ;;
			engine/* | rings/*) h="$root/$inc" ;;
			*) continue ;; # spate_config.h (generated), bench/, system headers
			esac
			[ -f "$h" ] || continue
			echo "$m $(module "$h")"
		done >>"$tmp/inc"
done
check() { # name edges-file
	if ! tsort "$2" >/dev/null 2>"$tmp/err"; then
		echo "include_cycles: a cycle in the $1 graph of the library's modules:" >&2
		sed -n 's/^tsort: //p' "$tmp/err" >&2
		echo "edges (importer imported):" >&2
		sort -u "$2" | awk '$1 != $2' >&2
		status=1
	else
		echo "include_cycles: $1 graph: $(sort -u "$2" | awk '$1 != $2' | wc -l) edges, no cycle"
	fi
}
check '#include' "$tmp/inc"

# 2. Link graph of the static library.
if [ -n "$lib" ]; then
	nm -A "$lib" 2>/dev/null | awk '
		{ n = split($1, p, ":"); o = p[n - 1]; sub(/\.c\.o$/, "", o);
		  sub(/^\.\._[a-z]+_/, "", o)
		  sub(/^log_[a-z_]+$/, "log", o) } # engine/log/*.c: one module (log_pvt.h)
		$2 == "U" { print o, $3 > "'"$tmp/use"'" }
		$2 ~ /^[TDBR]$/ { print $3, o > "'"$tmp/def"'" }' || true
	[ -s "$tmp/use" ] && [ -s "$tmp/def" ] || { echo "include_cycles: no symbols in $lib" >&2; exit 1; }
	awk 'NR == FNR { def[$1] = $2; next } ($2 in def) { print $1, def[$2] }' \
		"$tmp/def" "$tmp/use" >"$tmp/link"
	check 'link' "$tmp/link"
fi
exit $status
