# Sourced by the shell tests that run an engine (cli.sh, persist_cli.sh, api_*.sh,
# obs_bus.sh): a temporary directory $dir, a cleanup that stops the engine
# and removes the bus, fail(), and start_engine. Before sourcing: spate (the
# binary) and name (for messages); a test may redefine cleanup_extra.
dir=$(mktemp -d "/tmp/spate-$name-XXXXXX")
pid=
cleanup_extra() { :; }
cleanup() {
	cleanup_extra
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	"$spate" rm "$dir/bus.yaml" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
fail() {
	echo "$name: FAIL: $*" >&2
	for f in "$dir/screen.txt" "$dir/run.log"; do [ -f "$f" ] && cat "$f" >&2; done
	exit 1
}
# so=the test plugin crashy.so of the build whose plugins folder is $1.
find_crashy() {
	so="$1/../tests/crashy.so"
	[ -f "$so" ] || so=$(find "$1/.." -name crashy.so | head -1)
	[ -f "$so" ] || fail "crashy.so not built"
}
# `spate run $dir/bus.yaml` in the background ($pid); returns once it runs.
# It stops by itself after $engine_seconds (default 60; a test whose clients
# are slow, like the AWS CLI on a loaded machine, sets more).
start_engine() {
	rm -f "$dir/state/engine.pid"
	"$spate" run "$dir/bus.yaml" --seconds "${engine_seconds:-60}" --interval 0 > "$dir/run.log" 2>&1 &
	pid=$!
	i=0
	while [ ! -f "$dir/state/engine.pid" ]; do
		i=$((i + 1)); [ $i -lt 100 ] || fail "engine did not start"; sleep 0.1
	done
}
# Once start_engine returned: wait until the engine's Kinesis API front
# (api: in bus.yaml) says it listens.
wait_api() {
	i=0
	while ! grep -qs "api: Kinesis API" "$dir/run.log"; do
		i=$((i + 1)); [ $i -lt 150 ] || fail "engine did not start its api"; sleep 0.1
	done
}
