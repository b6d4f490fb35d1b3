# Sourced by stat_cli.sh, prom.sh and top_tmux.sh: a bus whose totals are
# known. Stream STREAM (2 shards); consumer C1 (count) takes every record;
# consumer C2 (fail plugin, bisection, no retries) gives up exactly the
# record with sequence 0 of each shard it sees. obs_put40 puts 40 records
# "r1".."r40" under one key (one shard): C1 handles 40 (9*2 + 31*3 = 111
# payload bytes), C2 39 and fails 1.
# Before sourcing: spate, name (for messages); then call
# obs_bus BUS STREAM C1 C2 [EXTRA_TOP_LEVEL_YAML].
. "$(dirname "$0")/engine_lib.sh"
obs_cleanup_extra() { :; }
cleanup_extra() { obs_cleanup_extra; }

obs_bus() {
	cat > "$dir/bus.yaml" <<YAML
bus: $1
state_dir: $dir/state
${5:-}
streams:
  - name: $2
    shards: 2
    ring_size: 64KiB
    huge_pages: off
consumers:
  - name: $3
    stream: $2
    plugin: count
    starting_position: trim_horizon
  - name: $4
    stream: $2
    plugin: fail
    options: { seqs: "0" }
    bisect_on_error: true
    max_retry_attempts: 0
    starting_position: trim_horizon
YAML
	start_engine
}

obs_put40() {
	seq 1 40 | sed 's/^/r/' | "$spate" put "$dir/bus.yaml" "$1" -k onekey -q || fail "put"
}

obs_stop() {
	kill -INT "$pid"
	wait "$pid" || fail "run exited with $?"
	pid=
}
