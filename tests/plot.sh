#!/bin/sh
# `spate bench ring --plot FILE.png` draws a real PNG with gnuplot: the file
# exists, starts with the PNG signature and is more than a blank canvas;
# without gnuplot on PATH, --plot fails at once naming the package to install.
# Skipped (77) when gnuplot is missing. Usage: plot.sh SPATE
set -eu
spate=$1
fail() { echo "plot.sh: FAIL: $*" >&2; exit 1; }
command -v "${SPATE_GNUPLOT:-gnuplot}" >/dev/null 2>&1 ||
	{ echo "plot.sh: SKIP: gnuplot is not installed (Debian package gnuplot-nox)"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

png=$dir/ring.png
"$spate" bench ring --mode 1to1 --impl spate --record-size 16,64 --batch 1,8 \
	--seconds 0.05 --repeat 1 --plot "$png" >"$dir/out" || fail "bench ring --plot"
grep -q "^# plot: $png" "$dir/out" || fail "no '# plot:' line"
[ -f "$png" ] || fail "no $png"
sig=$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')
[ "$sig" = 89504e470d0a1a0a ] || fail "$png: not a PNG (starts $sig)"
size=$(wc -c <"$png")
# A 1860x470 chart with three panels of data; an empty canvas is ~10 KiB.
[ "$size" -gt 30000 ] || fail "$png: only $size bytes"

# bench pipeline: latency curves and the counters A/B pairs.
ppng=$dir/pipeline.png
"$spate" bench pipeline --seconds 0.2 --overhead-runs 2 --plot "$ppng" >"$dir/pout" ||
	fail "bench pipeline --plot"
[ "$(head -c 8 "$ppng" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$ppng: not a PNG"
[ "$(wc -c <"$ppng")" -gt 20000 ] || fail "$ppng: only $(wc -c <"$ppng") bytes"

# No gnuplot: refused before any run, naming the package.
if PATH=/nonexistent "$spate" bench ring --plot "$dir/no.png" 2>"$dir/err" >/dev/null; then
	fail "--plot without gnuplot succeeded"
fi
grep -q gnuplot-nox "$dir/err" || fail "the error does not name gnuplot-nox: $(cat "$dir/err")"
if PATH=/nonexistent "$spate" bench pipeline --plot "$dir/no.png" 2>"$dir/err" >/dev/null; then
	fail "pipeline --plot without gnuplot succeeded"
fi
grep -q gnuplot-nox "$dir/err" || fail "pipeline: the error does not name gnuplot-nox"
[ ! -e "$dir/no.png" ] || fail "a PNG without gnuplot"
echo "plot.sh: $png is a $size-byte PNG; a missing gnuplot is reported"
