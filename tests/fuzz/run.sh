#!/bin/sh
# Build the libFuzzer harnesses of tests/fuzz in build-fuzz/ (clang,
# -fsanitize=fuzzer,address,undefined) and run each one for a bounded time.
#
#   tests/fuzz/run.sh [TOTAL_SECONDS [TARGET...]]
#
# TOTAL_SECONDS (default 100: CI's budget is 2 minutes) is shared equally by
# the targets (default: every fuzz_* built). Seeds and regression inputs come
# from tests/fuzz/corpus/<target>/ (read only); what a run discovers goes to
# build-fuzz/fuzz-corpus/<target>/, and a crashing input to
# build-fuzz/fuzz-artifacts/ (copy it into the corpus once fixed). Exits
# non-zero on the first target that finds a crash, leak, timeout or UB.
set -eu
cd "$(dirname "$0")/../.."
total=${1:-100}
[ $# -gt 0 ] && shift
b=build-fuzz
if [ ! -f $b/build.ninja ]; then
	CC=clang meson setup $b -Dfuzz=enabled -Dtests=disabled -Ddpdk=disabled -Dck=disabled \
		-Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized >/dev/null
fi
ninja -C $b >/dev/null
if [ $# -gt 0 ]; then
	targets="$*"
else
	targets=$(find $b/tests/fuzz -maxdepth 1 -type f -perm -u+x -name 'fuzz_*' | sed 's|.*/fuzz_||' | sort)
fi
n=$(echo $targets | wc -w)
[ "$n" -gt 0 ] || { echo "fuzz: no targets built in $b/tests/fuzz" >&2; exit 1; }
each=$((total / n))
[ $each -ge 1 ] || each=1
mkdir -p $b/fuzz-artifacts
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
for t in $targets; do
	work=$b/fuzz-corpus/$t
	seeds=tests/fuzz/corpus/$t
	mkdir -p "$work" "$seeds"
	echo "fuzz: $t for $each s (seeds: $(ls "$seeds" | wc -l))"
	if ! $b/tests/fuzz/fuzz_$t -max_total_time=$each -timeout=${FUZZ_TIMEOUT:-30} -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix=$b/fuzz-artifacts/$t- "$work" "$seeds" \
		> $b/fuzz-$t.log 2>&1; then
		tail -60 $b/fuzz-$t.log >&2
		echo "fuzz: $t FAILED; the input is in $b/fuzz-artifacts/ (log: $b/fuzz-$t.log)" >&2
		exit 1
	fi
	grep -E '^stat::number_of_executed_runs|^stat::new_units_added' $b/fuzz-$t.log | tr '\n' ' '
	echo
done
echo "fuzz: $n target(s), no crash"
