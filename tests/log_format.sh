#!/bin/sh
# `spate --log-format json run` and `spate run --log-format json` write the
# plugins' messages (here file.so refusing to start without its `path`) as
# JSON lines with consumer, stream and shard; SPATE_LOG_FORMAT=json does the
# same; text stays the default; a bad format is a usage error (exit 2).
# Usage: log_format.sh SPATE
set -eu
spate=$1
fail() { echo "log_format.sh: FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d)
bus=logfmt$$
trap '"$spate" rm "$dir/bus.yaml" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
cat >"$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: in
    shards: 1
    ring_size: 1MiB
consumers:
  - name: sink
    stream: in
    plugin: file
YAML
want='"msg":"file: option path is required","consumer":"sink","stream":"in","shard":0'

"$spate" --log-format json run "$dir/bus.yaml" --seconds 0.1 >/dev/null 2>"$dir/e1" &&
	fail "file.so started without a path"
grep -qF "$want" "$dir/e1" || fail "global --log-format json: $(cat "$dir/e1")"
line=$(grep -F "$want" "$dir/e1")
case $line in "{"*"}") ;; *) fail "not one JSON object a line: $line" ;; esac

"$spate" run --log-format json "$dir/bus.yaml" --seconds 0.1 >/dev/null 2>"$dir/e2" || true
grep -qF "$want" "$dir/e2" || fail "run --log-format json: $(cat "$dir/e2")"

SPATE_LOG_FORMAT=json "$spate" run "$dir/bus.yaml" --seconds 0.1 >/dev/null 2>"$dir/e3" || true
grep -qF "$want" "$dir/e3" || fail "SPATE_LOG_FORMAT=json: $(cat "$dir/e3")"

"$spate" run "$dir/bus.yaml" --seconds 0.1 >/dev/null 2>"$dir/e4" || true
grep -qx "spate: error: sink/0: file: option path is required" "$dir/e4" ||
	fail "text by default: $(cat "$dir/e4")"

rc=0
"$spate" --log-format xml version >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--log-format xml: exit $rc, not 2"
echo "log_format.sh: JSON and text logs OK"
