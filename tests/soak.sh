#!/usr/bin/env bash
# soak.sh - issue 9's soak: mixed load on a real bus while a chaos loop
# SIGKILLs producers, `spate tail -f` readers and the engine at random, then
# a verdict: every acknowledged record present exactly once and in per-key
# order in the logs, delivered at least once and in per-key order to the
# consumers, and no process stuck.
#
# Usage: soak.sh SPATE SOAK_PRODUCER [--soak SECONDS] [--seed N] [--keep]
#   --soak    chaos duration (default 60, the CI run; 600 is the full soak)
#   --seed    RANDOM seed (default: the pid), printed so a run can be replayed
#   --keep    keep the work directory (logs, ack files, dumps, outputs)
# Environment: SPATE_PLUGIN_PATH (the built plugins); SPATE_SOAK_PENDING=1
# turns a failing verdict into exit 77 (meson: SKIP) while a fix it waits
# for has not landed; the summary still says FAIL and why.
#
# The bus (huge_pages off, 64 KiB rings so they wrap every few hundred ms):
#   s_off  durability off,      2 shards   -> c_off  (file)
#   s_none durability none,     2 shards   -> c_none (file), c_fail (fail -> s_dlq)
#   s_int  durability interval, 2 shards   -> c_int  (file, 2 lanes),
#                                             c_fwd  (forward -> s_fwd)
#   s_alw  durability always,   1 shard    -> c_alw  (count)
#   s_fwd  durability none,     2 shards   (what c_fwd forwarded)
#   s_dlq  durability off,      1 shard    (c_fail's failure destination)
# Producers (tests/soak_producer.c; multi-writer: two on s_int, two on s_none)
# write keyed records "<tag>.<pid>.<k>,<seq>" and log each acknowledged one.
#
# Verdict (exit 1 on any): for s_none/s_int/s_alw, every acknowledged record
# in `spate log dump` exactly once, per-key order, no duplicate at all; for
# c_off/c_none/c_int (file outputs) and s_fwd's log (through c_fwd): every
# acknowledged record at least once, first sightings in per-key order,
# duplicates only if the engine was killed; `spate tail` outputs in per-key
# order; every producer still acknowledging in the last 10 s of load (no
# wedged stream); every process gone within its bound after SIGTERM
# (producers 15 s, tails 10 s, engine 60 s); `spate log verify` OK.
# Limits: the chaos is random (the seed is printed); timings are bounds for
# a loaded 2-core machine, never margins a pass depends on.
set -u
spate=$(readlink -f "$1")
producer=$(readlink -f "$2")
shift 2
soak=60 seed=$$ keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--soak) soak=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	*) echo "usage: soak.sh SPATE SOAK_PRODUCER [--soak SECONDS] [--seed N] [--keep]" >&2; exit 2 ;;
	esac
done
RANDOM=$seed
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/spate-soak-XXXXXX)
bus="soak$$"
cfg=$dir/bus.yaml
mkdir -p "$dir/out" "$dir/ack" "$dir/tail" "$dir/logs"
declare -A kills=([producer]=0 [tail]=0 [engine_kill]=0 [engine_term]=0)
problems=()   # one line per failed check
stuck=()      # processes that outlived their bound
engine_pid= engine_runs=0

log() { printf '[%6.1fs] %s\n' "$(awk -v a="$start_s" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$*"; }
start_s=$(date +%s.%N)

# --- processes ----------------------------------------------------------------

# alive PID: running and not a zombie.
alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# stop_bounded PID SIGNAL SECONDS KIND: signal it, wait at most SECONDS for
# it to end; past that it is stuck (recorded, with its stack) and SIGKILLed.
stop_bounded() {
	local pid=$1 sig=$2 bound=$3 kind=$4 i=0
	[ -n "$pid" ] || return 0
	kill -s "$sig" "$pid" 2>/dev/null
	while alive "$pid"; do
		i=$((i + 1))
		if [ $i -gt $((bound * 10)) ]; then
			stuck+=("$kind pid $pid did not end within ${bound}s of SIG$sig (wchan $(cat /proc/$pid/wchan 2>/dev/null))")
			cat "/proc/$pid/stack" > "$dir/stuck.$pid.stack" 2>/dev/null
			kill -9 "$pid" 2>/dev/null
			break
		fi
		sleep 0.1
	done
	wait "$pid" 2>/dev/null
	return 0
}

start_engine() {
	local try
	for try in 1 2 3; do
		engine_runs=$((engine_runs + 1))
		"$spate" run "$cfg" --interval 0 > "$dir/logs/run.$engine_runs.log" 2>&1 &
		engine_pid=$!
		local i=0
		while [ $i -lt 600 ]; do   # 60 s: a restart after a crash may take long
			[ "$(cat "$dir/state/engine.pid" 2>/dev/null)" = "$engine_pid" ] && return 0
			alive "$engine_pid" || break
			sleep 0.1; i=$((i + 1))
		done
		if alive "$engine_pid"; then
			stuck+=("engine run $engine_runs did not start within 60 s")
			kill -9 "$engine_pid" 2>/dev/null
		else
			problems+=("engine run $engine_runs exited at start: $(tail -n 3 "$dir/logs/run.$engine_runs.log" | tr '\n' ' ')")
		fi
		wait "$engine_pid" 2>/dev/null
		engine_pid=
	done
	return 1
}

# Producers: slot i writes stream PSTREAM[i]; each (re)start is a new
# process with keys of its own and an ack file of its own.
PSTREAM=(s_off s_none s_none s_int s_int s_alw)
PRATE=(1500 3000 1500 3000 1500 500)
declare -a ppid pruns
start_producer() {
	local i=$1
	pruns[$i]=$(( ${pruns[$i]:-0} + 1 ))
	local tag="p$i"
	"$producer" "$bus" "${PSTREAM[$i]}" "$dir/ack/${PSTREAM[$i]}.$i.${pruns[$i]}" \
		--keys 8 --rate "${PRATE[$i]}" --tag "$tag" --timeout-ms 2000 \
		2>> "$dir/logs/producer.$i.log" &
	ppid[$i]=$!
}
# Tail readers (-f): one from the log's start on a persisted stream (the
# log-to-ring handover), one from latest on another and on the memory-only one.
TSTREAM=(s_int s_none s_off)
TFROM=(trim_horizon latest latest)
declare -a tpid truns
start_tail() {
	local j=$1
	truns[$j]=$(( ${truns[$j]:-0} + 1 ))
	"$spate" tail "$cfg" "${TSTREAM[$j]}" -f --from "${TFROM[$j]}" \
		> "$dir/tail/${TSTREAM[$j]}.$j.${truns[$j]}" 2>> "$dir/logs/tail.$j.log" &
	tpid[$j]=$!
}

cleanup() {
	local p
	for p in "${ppid[@]}" "${tpid[@]}" $engine_pid; do
		kill -9 "$p" 2>/dev/null
	done
	kill -TERM $watchdog 2>/dev/null
	wait 2>/dev/null
	"$spate" rm "$cfg" > /dev/null 2>&1
	if [ "$keep" = 1 ]; then echo "soak: work directory kept: $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT

# The script itself never hangs: a watchdog ends it well past every bound.
# (It holds no pipe open: its sleep dies with it.)
( exec > /dev/null; trap 'kill $sp 2>/dev/null; exit 0' TERM
  sleep $((soak + 600)) & sp=$!; wait $sp
  echo "soak: WATCHDOG: the script ran past $((soak + 600)) s" >&2; kill -TERM $$ ) &
watchdog=$!

cat > "$cfg" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - { name: s_off,  shards: 2, ring_size: 64KiB, huge_pages: off, durability: off }
  - { name: s_none, shards: 2, ring_size: 64KiB, huge_pages: off, durability: none, segment_size: 1MiB }
  - { name: s_int,  shards: 2, ring_size: 64KiB, huge_pages: off, durability: interval, durability_interval: 5ms, segment_size: 1MiB }
  - { name: s_alw,  shards: 1, ring_size: 64KiB, huge_pages: off, durability: always, segment_size: 1MiB }
  - { name: s_fwd,  shards: 2, ring_size: 64KiB, huge_pages: off, durability: none, segment_size: 1MiB }
  - { name: s_dlq,  shards: 1, ring_size: 64KiB, huge_pages: off }
consumers:
  - name: c_off
    stream: s_off
    plugin: file
    options: { path: "$dir/out/c_off.%s", prefix: seq }
    starting_position: trim_horizon
  - name: c_none
    stream: s_none
    plugin: file
    options: { path: "$dir/out/c_none.%s", prefix: seq }
    starting_position: trim_horizon
  - name: c_fail
    stream: s_none
    plugin: fail
    options: { every: "97", mode: partial }
    starting_position: trim_horizon
    max_retry_attempts: 1
    retry_backoff: 1ms
    bisect_on_error: true
    on_failure: s_dlq
  - name: c_int
    stream: s_int
    plugin: file
    options: { path: "$dir/out/c_int.%s", prefix: seq }
    starting_position: trim_horizon
    parallelization: 2
  - name: c_fwd
    stream: s_int
    plugin: forward
    options: { to: s_fwd, key: hash }
    starting_position: trim_horizon
  - name: c_alw
    stream: s_alw
    plugin: count
    starting_position: trim_horizon
YAML

echo "soak: ${soak}s of chaos, seed $seed, bus $bus, dir $dir"
start_engine || { echo "soak: FAIL: the engine does not start:"; cat "$dir"/logs/run.*.log; exit 1; }
for i in "${!PSTREAM[@]}"; do start_producer "$i"; done
for j in "${!TSTREAM[@]}"; do start_tail "$j"; done

# --- chaos --------------------------------------------------------------------
end=$(( $(date +%s) + soak ))
last_engine=$(date +%s)
while [ "$(date +%s)" -lt "$end" ]; do
	x=$((RANDOM % 15 + 3)); sleep "$((x / 10)).$((x % 10))"
	# Whatever ended on its own is restarted (and said).
	for i in "${!PSTREAM[@]}"; do
		alive "${ppid[$i]}" || { wait "${ppid[$i]}"; log "producer $i ended by itself (rc $?): restart"; start_producer "$i"; }
	done
	for j in "${!TSTREAM[@]}"; do
		alive "${tpid[$j]}" || { wait "${tpid[$j]}"; log "tail $j ended by itself (rc $?): restart"; start_tail "$j"; }
	done
	r=$((RANDOM % 10))
	now=$(date +%s)
	if [ $r -ge 7 ] && [ $((now - last_engine)) -lt 4 ]; then
		r=$((RANDOM % 7)) # the engine at most every 4 s: let the bus work in between
	fi
	if [ $r -le 3 ]; then
		i=$((RANDOM % ${#PSTREAM[@]}))
		kill -9 "${ppid[$i]}" 2>/dev/null; wait "${ppid[$i]}" 2>/dev/null
		kills[producer]=$((kills[producer] + 1))
		start_producer "$i"
	elif [ $r -le 6 ]; then
		j=$((RANDOM % ${#TSTREAM[@]}))
		kill -9 "${tpid[$j]}" 2>/dev/null; wait "${tpid[$j]}" 2>/dev/null
		kills[tail]=$((kills[tail] + 1))
		start_tail "$j"
	else
		if [ $r -le 8 ]; then
			kill -9 "$engine_pid" 2>/dev/null; wait "$engine_pid" 2>/dev/null
			kills[engine_kill]=$((kills[engine_kill] + 1))
			log "engine SIGKILL (run $engine_runs)"
		else
			stop_bounded "$engine_pid" TERM 60 engine
			kills[engine_term]=$((kills[engine_term] + 1))
			log "engine SIGTERM (run $engine_runs)"
		fi
		engine_pid=
		x=$((RANDOM % 20 + 5)); sleep "$((x / 10)).$((x % 10))" # producers run on alone
		start_engine || { problems+=("the engine does not restart"); break; }
		last_engine=$(date +%s)
	fi
done
log "chaos over: kills producer ${kills[producer]} tail ${kills[tail]} engine SIGKILL ${kills[engine_kill]} SIGTERM ${kills[engine_term]}"

# --- wind down ----------------------------------------------------------------
[ -n "$engine_pid" ] && alive "$engine_pid" || start_engine || problems+=("no engine for the final phase")
for i in "${!PSTREAM[@]}"; do alive "${ppid[$i]}" || start_producer "$i"; done
for j in "${!TSTREAM[@]}"; do alive "${tpid[$j]}" || start_tail "$j"; done
# Liveness: every producer must still get acknowledgements in a calm 10 s
# (after 5 s to settle: a ring may hold a little space before it wedges).
sleep 5
declare -a before
for i in "${!PSTREAM[@]}"; do before[$i]=$(cat "$dir/ack/${PSTREAM[$i]}.$i.${pruns[$i]}" 2>/dev/null | wc -l); done
sleep 10
for i in "${!PSTREAM[@]}"; do
	n=$(cat "$dir/ack/${PSTREAM[$i]}.$i.${pruns[$i]}" 2>/dev/null | wc -l)
	[ "$n" -gt "${before[$i]}" ] ||
		problems+=("wedged: producer $i on ${PSTREAM[$i]} got no acknowledgement in the last 10 s (stuck at $n; $(tail -n 1 "$dir/logs/producer.$i.log"))")
done
for i in "${!PSTREAM[@]}"; do stop_bounded "${ppid[$i]}" TERM 15 "producer $i (${PSTREAM[$i]})"; done
for j in "${!TSTREAM[@]}"; do stop_bounded "${tpid[$j]}" TERM 10 "tail $j (${TSTREAM[$j]})"; done
# Let the consumers catch up: until their outputs stop growing (at most 60 s).
prev=-1 same=0
for _ in $(seq 120); do
	cur=$(cat "$dir"/out/* 2>/dev/null | wc -l)
	[ "$cur" = "$prev" ] && same=$((same + 1)) || same=0
	prev=$cur
	[ $same -ge 6 ] && break
	sleep 0.5
done
stop_bounded "$engine_pid" TERM 60 engine
engine_pid=
log "stopped; verifying"

# --- verdict ------------------------------------------------------------------
check() { awk -f "$here/soak_check.awk" "$@"; }
results=()
acks_of() { ls "$dir"/ack/"$1".* 2>/dev/null; }
engine_kills=$((kills[engine_kill] + kills[engine_term]))
# judge LINE MODE: parse a soak_check.awk line; exact = no dup at all.
judge() {
	local line=$1 mode=$2
	results+=("$line")
	set -- $(echo "$line" | sed 's/^[^:]*: //')
	local acked=$2 missing=$6 dup=$8 misorder=${10}
	[ "$missing" = 0 ] || problems+=("lost: ${line%% |*}")
	[ "$misorder" = 0 ] || problems+=("misordered: ${line%% |*}")
	if [ "$dup" != 0 ] && { [ "$mode" = exact ] || [ "$engine_kills" = 0 ]; }; then
		problems+=("duplicated: ${line%% |*}")
	fi
	[ "$acked" -gt 0 ] || problems+=("nothing acknowledged: ${line%% |*}")
}
for s in s_none s_int s_alw s_fwd; do
	for d in "$dir"/state/log/$s/*/; do
		sh=$(basename "$d")
		timeout 120 "$spate" log verify "$d" > "$dir/logs/verify.$s.$sh" 2>&1 ||
			problems+=("log verify $s/$sh: $(tail -n 2 "$dir/logs/verify.$s.$sh" | tr '\n' ' ')")
		timeout 120 "$spate" log dump "$d" > "$dir/logs/dump.$s.$sh" 2> "$dir/logs/dump.$s.$sh.err" ||
			problems+=("log dump $s/$sh: $(tail -n 2 "$dir/logs/dump.$s.$sh.err" | tr '\n' ' ')")
	done
done
for s in s_none s_int s_alw; do
	judge "$(check label="log $s (exact)" kind=ack $(acks_of $s) kind=data fld=5 "$dir"/logs/dump.$s.[0-9]*[0-9])" exact
done
judge "$(check label="log s_fwd via c_fwd (at least once)" kind=ack $(acks_of s_int) kind=data fld=5 "$dir"/logs/dump.s_fwd.[0-9]*[0-9])" atleast
# A tail or engine SIGKILLed in the middle of a write leaves half a line
# last ("p2.7.6,287" for "p2.7.6,2875"): only complete lines are records.
for f in "$dir"/tail/* "$dir"/out/*; do
	if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then sed -i '$ d' "$f"; fi
done
for c in c_off:s_off c_none:s_none c_int:s_int; do
	judge "$(check label="consumer ${c%%:*} (at least once)" kind=ack $(acks_of ${c#*:}) kind=data fld=2 $(ls "$dir"/out/${c%%:*}.* 2>/dev/null))" atleast
done
for f in "$dir"/tail/*; do
	line=$(check label="tail $(basename "$f")" kind=data fld=5 "$f")
	results+=("$line")
	set -- $(echo "$line" | sed 's/^[^:]*: //')
	[ "${10}" = 0 ] || problems+=("tail misorder: $line")
done

echo "soak summary (seed $seed, ${soak}s): kills: producer ${kills[producer]}, tail ${kills[tail]}, engine SIGKILL ${kills[engine_kill]}, engine SIGTERM ${kills[engine_term]}; engine runs $engine_runs"
for r in "${results[@]}"; do
	case $r in tail*) ;; *) echo "  $r" ;; esac
done
echo "  tail outputs: $(ls "$dir"/tail | wc -l) files, $(for r in "${results[@]}"; do case $r in tail*) echo "$r"; esac; done | awk '{n += $14; m += $12} END {print n + 0 " records, " m + 0 " misordered"}')"
grep -h "acked" "$dir"/logs/producer.*.log | awk '{a += $5; f += $7} END {print "  producers: " NR " exits reported, acked " a + 0 ", failed puts " f + 0}'
grep -h "recreating\|lost\|freed" "$dir"/logs/run.*.log 2>/dev/null | sed "s/[0-9][0-9]*/N/g" | sort | uniq -c | sort -rn | head -n 5 | sed 's/^/  engine said: /'
for s in "${stuck[@]}"; do problems+=("stuck: $s"); done
if [ ${#problems[@]} -eq 0 ]; then
	echo "soak: PASS"
	exit 0
fi
for p in "${problems[@]}"; do echo "soak: FAIL: $p"; done
[ "$keep" = 1 ] || echo "soak: to look closer: soak.sh SPATE SOAK_PRODUCER --soak $soak --seed $seed --keep"
if [ "${SPATE_SOAK_PENDING:-0}" = 1 ]; then
	echo "soak: the failures above are PENDING (SPATE_SOAK_PENDING=1, set in tests/meson.build until the lead flips it); reported as SKIP"
	exit 77
fi
exit 1
