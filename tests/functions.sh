#!/bin/sh
# SPDX-License-Identifier: MIT
# Functions end to end (issue 12 item 6): `spate run` with consumers whose
# configuration says `function:`, running real Lambda handlers in Node and
# Python through the Lambda Runtime API.
#
# usage: functions.sh SPATE SOURCE_ROOT CASE
#   node      a handler on @aws-lambda-powertools/batch (npm, unchanged:
#             processPartialResponse, EventType.KinesisDataStreams) fails the
#             records whose data starts with "bad": exactly those reach the
#             on_failure stream, every other record is handled, per-key order
#             holds (2 shards x 2 lanes on 2 processes), the checkpoints are at
#             the tails (a restart delivers nothing again). Runtime client:
#             aws-lambda-ric when it runs here (tests/functions/node/ric.sh
#             says), else spate's bundled Node loop: the test prints which.
#   nodeloop  the same Powertools handler under spate's bundled Node loop
#             (whatever aws-lambda-ric does here), 1 shard, batches of up to
#             1,000 records (events of ~600 KB: many socket reads, and the
#             loop's Latin-1 decoding of an all-ASCII event, parsed in pieces
#             cut between records), half the keys in other scripts (UTF-8:
#             Latin-1, Cyrillic, Japanese, an emoji outside the BMP), one that
#             holds the text the pieces are cut at: each partition key reaches
#             the handler exactly as put (through the Kinesis API, boto3).
#   python    the same with a Python handler (the bundled few-line loop).
#   crash     a record that segfaults its process: only it reaches
#             on_failure (bisection), the rest is handled, the process restarts.
#   timeout   a record that sleeps past the function's timeout: killed,
#             restarted, only it reaches on_failure ("Task timed out").
#   init      a module that fails at import: every record reaches on_failure
#             with the init error after its retries.
#   memory    a record that allocates past memory_limit: only it fails.
# In every case a second consumer (the count plugin) on the same stream
# takes every record: the bus keeps going.
# Exit 77 (skip) without node / python3 / the npm packages (./quickstart
# runs npm ci in tests/functions/node).
set -eu
spate=${1:?usage: functions.sh SPATE SOURCE_ROOT CASE}
src=${2:?}
case=${3:?}
spate=$(cd "$(dirname "$spate")" && pwd)/$(basename "$spate")
src=$(cd "$src" && pwd)
name="functions-$case"
. "$src/tests/engine_lib.sh"
export SPATE_FUNCTIONS_RUNTIME_DIR="$src/engine/functions/runtime"
bus="fn$$$(echo "$case" | cut -c1-4)"
skip() { echo "$name: SKIP: $*"; exit 77; }

# wait_stat JQ_CONDITION SECONDS: poll `spate stat` until the condition on
# its JSON holds.
wait_stat() {
	i=0
	while :; do
		if "$spate" stat "$bus" --json > "$dir/stat.json" 2>/dev/null &&
			[ "$(jq -r "$1" "$dir/stat.json")" = true ]; then
			return 0
		fi
		i=$((i + 1))
		[ $i -lt $(($2 * 10)) ] || { cat "$dir/stat.json" >&2 || true; fail "timed out waiting for $1"; }
		sleep 0.1
	done
}
consumer() { jq -r ".consumers[] | select(.name == \"$1\") | .$2" "$dir/stat.json"; }

# bus_yaml SHARDS LANES CONCURRENCY RETRIES BISECT BATCH FUNCTION_YAML
bus_yaml() {
	cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: in
    shards: $1
    ring_size: ${RING_SIZE:-1MiB}
    huge_pages: off
  - name: dlq
    ring_size: 1MiB
    huge_pages: off
consumers:
  - name: f
    stream: in
    starting_position: trim_horizon
    batch_size: $6
    parallelization: $2
    batch_window: ${BATCH_WINDOW:-0}
    max_retry_attempts: $4
    bisect_on_error: $5
    retry_backoff: 1ms
    retry_backoff_max: 10ms
    on_failure: dlq
    function:
$7
      concurrency: $3
  - name: all
    stream: in
    plugin: count
    starting_position: trim_horizon
YAML
}

# put_records N BAD_EVERY BAD_AT PREFIX: records i = 0..N-1 under keys
# k0..k7 (each after $KEYP<key> when set: key_of), data "k<key>:<i>", or
# "<PREFIX>-k<key>:<i>" when i % BAD_EVERY == BAD_AT; the poison ones listed
# in $dir/bad.txt, the others in good.txt.
KEYP0= KEYP1= KEYP2= KEYP3= KEYP4= KEYP5= KEYP6= KEYP7=
# The key a record of key number $1 is put under (k<N> for spate put, whose
# records carry the key's hash: checked only when API_PORT is set).
key_of() { eval "echo \"\${KEYP$1}k$1\""; }
put_records() {
	: > "$dir/bad.txt"
	: > "$dir/good.txt"
	for k in 0 1 2 3 4 5 6 7; do
		i=$k
		while [ $i -lt "$1" ]; do
			if [ $((i % $2)) -eq "$3" ]; then d="$4-k$k:$i"; echo "$d" >> "$dir/bad.txt"
			else d="k$k:$i"; echo "$d" >> "$dir/good.txt"; fi
			echo "$d"
			i=$((i + 8))
		done > "$dir/put.$k"
		if [ -n "${API_PORT:-}" ]; then
			key_of $k > "$dir/key.$k"
			python3 - "$API_PORT" "$dir/key.$k" "$dir/put.$k" <<'PY' || fail "PutRecords k$k"
# A keyed put through the Kinesis API front with boto3 (AWS's SDK): the
# partition key is stored with the record, as Kinesis keeps it.
import sys, boto3, botocore.config
port, keyf, dataf = sys.argv[1:4]
key = open(keyf, encoding="utf-8").read().rstrip("\n")
data = [l.rstrip("\n").encode() for l in open(dataf, encoding="utf-8")]
kin = boto3.client("kinesis", endpoint_url="http://127.0.0.1:" + port, region_name="us-east-1",
                   aws_access_key_id="x", aws_secret_access_key="x",
                   config=botocore.config.Config(retries={"max_attempts": 1}))
for i in range(0, len(data), 500):
    r = kin.put_records(StreamName="in", Records=[{"PartitionKey": key, "Data": d}
                                                  for d in data[i:i + 500]])
    if r.get("FailedRecordCount"):
        sys.exit("PutRecords failed %d records" % r["FailedRecordCount"])
PY
		else
			"$spate" put "$dir/bus.yaml" in -k "k$k" -q < "$dir/put.$k" || fail "put k$k"
		fi
	done
}

# check N: all N records taken by `all`; every good record handled by the
# function at least once and no poison one; exactly the poison ones in dlq,
# once each, their error containing $ERR; per key, records handled for the
# first time in put order.
check() {
	[ "$(consumer all records)" = "$1" ] || fail "count consumer: $(consumer all records) of $1"
	[ "$(consumer f lag_records)" = 0 ] || fail "function consumer lag $(consumer f lag_records)"
	cut -d' ' -f3 "$dir/out.txt" | sort -u > "$dir/handled.txt"
	sort "$dir/good.txt" | comm -23 - "$dir/handled.txt" > "$dir/lost.txt"
	[ ! -s "$dir/lost.txt" ] || fail "records never handled: $(head -5 "$dir/lost.txt" | tr '\n' ' ')"
	if [ -s "$dir/bad.txt" ]; then
		sort "$dir/bad.txt" | comm -12 - "$dir/handled.txt" > "$dir/wrong.txt"
		[ ! -s "$dir/wrong.txt" ] || fail "poison records handled: $(cat "$dir/wrong.txt")"
	fi
	nbad=$(wc -l < "$dir/bad.txt")
	"$spate" tail "$dir/bus.yaml" dlq -n "$nbad" > "$dir/dlq.txt" 2>&1 || fail "tail dlq"
	sed 's/.*): //' "$dir/dlq.txt" | sort > "$dir/dlq_data.txt"
	# Records put through the Kinesis API are kept with their key (the
	# keyed envelope, printed before the data): the data is the tail.
	[ -z "${API_PORT:-}" ] ||
		sed -i 's/^.*[^a-z]\([a-z]*-k[0-9]*:[0-9]*\)$/\1/' "$dir/dlq_data.txt"
	sort "$dir/bad.txt" | cmp -s - "$dir/dlq_data.txt" ||
		fail "on_failure holds $(tr '\n' ' ' < "$dir/dlq_data.txt"), expected $(sort "$dir/bad.txt" | tr '\n' ' ')"
	[ "$(consumer f failed)" = "$nbad" ] || fail "failed $(consumer f failed), expected $nbad"
	if [ "$nbad" -gt 0 ]; then
		grep -q -- "$ERR" "$dir/dlq.txt" || fail "dlq errors lack '$ERR': $(head -2 "$dir/dlq.txt")"
	fi
	awk '{ split($3, a, ":"); k = a[1]; sub(/^[a-z]+-/, "", k); i = a[2] + 0;
	       if (!(i in seen)) { seen[i] = 1; if (k in last && i < last[k]) { print "key " k ": " i " after " last[k]; bad = 1 } last[k] = i } }
	     END { exit bad }' "$dir/out.txt" > "$dir/order.txt" ||
		fail "per-key order: $(head -3 "$dir/order.txt")"
	# Each partition key as put, byte for byte (UTF-8 ones included).
	for k in $([ -n "${API_PORT:-}" ] && echo 0 1 2 3 4 5 6 7); do
		awk -v want="$(key_of $k)" -v k="k$k" '{ split($3, a, ":"); d = a[1]; sub(/^[a-z]+-/, "", d)
			if (d == k && $1 != want) { print $1 " for " $3 ", put under " want; exit 1 } }' \
			"$dir/out.txt" > "$dir/keys.txt" || fail "partition key changed: $(cat "$dir/keys.txt")"
	done
	# Lambda's shapes, as the handler saw them: 42-digit sequence numbers.
	awk 'length($2) != 42 || $2 !~ /^49[0-9]+$/ { exit 1 }' "$dir/out.txt" ||
		fail "sequence numbers not Kinesis': $(head -1 "$dir/out.txt")"
}

stop_engine() {
	kill -INT "$pid"
	wait "$pid" || fail "spate run exited with $?"
	pid=
}

command -v jq > /dev/null || skip "no jq"
: > "$dir/out.txt"
ERR=
case $case in
node)
	command -v node > /dev/null || skip "no node"
	nm="$src/tests/functions/node/node_modules"
	[ -d "$nm/@aws-lambda-powertools/batch" ] ||
		skip "no npm packages in tests/functions/node (./quickstart runs npm ci there)"
	client="node"
	# aws-lambda-ric is an optional npm dependency: present when its native
	# part (rapid-client.node) built here.
	if [ -x "$nm/.bin/aws-lambda-ric" ] && [ -f "$nm/aws-lambda-ric/dist/rapid-client.node" ]; then
		client="[$nm/.bin/aws-lambda-ric]"
		echo "$name: runtime client: aws-lambda-ric $(jq -r .version "$nm/aws-lambda-ric/package.json") (npm)"
	else
		echo "$name: runtime client: spate's bundled Node loop (aws-lambda-ric's native part did not build here)"
	fi
	bus_yaml 2 2 2 2 false 50 "      handler: index.handler
      runtime_client: $client
      cwd: $src/tests/functions/node
      timeout: 30s
      env: { OUT: $dir/out.txt }"
	start_engine
	put_records 400 50 7 bad
	ERR="batchItemFailures"
	wait_stat '.consumers[] | select(.name == "f") | (.records + .failed == 392 + 8 and .lag_records == 0)' 90
	;;
nodeloop)
	command -v node > /dev/null || skip "no node"
	nm="$src/tests/functions/node/node_modules"
	[ -d "$nm/@aws-lambda-powertools/batch" ] ||
		skip "no npm packages in tests/functions/node (./quickstart runs npm ci there)"
	# Keys 0-3 in UTF-8 beyond ASCII, 4-7 ASCII: batches of keys 4-7 are
	# all-ASCII events, the others not. Key 4 holds the text the loop cuts
	# large events at (between records), which must not cut it there.
	KEYP0='clé-' KEYP1='ключ-' KEYP2='キー-' KEYP3='😀-' KEYP4='},{"kinesis":{"x":-'
	python3 -c 'import boto3' 2> /dev/null || skip "no boto3 (python3-boto3)"
	API_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	RING_SIZE=16MiB BATCH_WINDOW=1s bus_yaml 1 1 1 2 false 1000 "      handler: index.handler
      runtime_client: node
      cwd: $src/tests/functions/node
      timeout: 30s
      env: { OUT: $dir/out.txt }"
	printf 'api:\n  listen: 127.0.0.1:%s\n  auth: none\n' "$API_PORT" >> "$dir/bus.yaml"
	start_engine
	wait_api
	put_records 8000 1000 777 bad
	ERR="batchItemFailures"
	wait_stat '.consumers[] | select(.name == "f") | (.records + .failed == 8000 and .lag_records == 0)' 90
	# The bundled loop runs with the engine's glibc tunables (docs/config.md).
	fpid=$(pgrep -P "$pid" -x node | head -1)
	[ -n "$fpid" ] || fail "no node process under the engine"
	tr '\0' '\n' < "/proc/$fpid/environ" | grep -q '^GLIBC_TUNABLES=glibc.malloc.trim_threshold=' ||
		fail "the bundled Node loop runs without the engine's GLIBC_TUNABLES"
	;;
python)
	command -v python3 > /dev/null || skip "no python3"
	bus_yaml 1 1 1 2 false 25 "      handler: app.handler
      runtime_client: python
      cwd: $src/tests/functions/python
      timeout: 30s
      env: { OUT: $dir/out.txt, MODE: ok }"
	start_engine
	put_records 200 40 3 bad
	ERR="batchItemFailures"
	wait_stat '.consumers[] | select(.name == "f") | (.records + .failed == 200 and .lag_records == 0)' 60
	;;
crash | timeout | memory)
	command -v python3 > /dev/null || skip "no python3"
	case $case in
	crash) mode=crash; extra="timeout: 30s"; ERR="signal 11" ;;
	timeout) mode=slow; extra="timeout: 1s"; ERR="Task timed out after 1.00 seconds" ;;
	memory) mode=hog; extra="timeout: 30s
      memory_limit: 200MiB"; ERR="memory\|Memory" ;;
	esac
	bus_yaml 1 1 1 0 true 10 "      handler: app.handler
      runtime_client: python
      cwd: $src/tests/functions/python
      $extra
      env: { OUT: $dir/out.txt, MODE: $mode }"
	start_engine
	put_records 64 32 13 "$mode"
	wait_stat '.consumers[] | select(.name == "f") | (.records + .failed == 64 and .lag_records == 0)' 100
	;;
init)
	command -v python3 > /dev/null || skip "no python3"
	bus_yaml 1 1 1 1 false 100 "      handler: app.handler
      runtime_client: python
      cwd: $src/tests/functions/python
      timeout: 2s
      env: { OUT: $dir/out.txt, MODE: init }"
	start_engine
	put_records 24 1 0 init
	ERR="cannot reach the database"
	wait_stat '.consumers[] | select(.name == "f") | (.failed == 24 and .lag_records == 0)' 60
	;;
*) fail "unknown case $case" ;;
esac
wait_stat '.consumers[] | select(.name == "all") | (.lag_records == 0)' 20
n=$(cat "$dir/good.txt" "$dir/bad.txt" | wc -l)
check "$n"
stop_engine

# The checkpoints are at the tails: a restart hands the function nothing.
lines=$(wc -l < "$dir/out.txt")
start_engine
wait_stat '.consumers[] | select(.name == "f") | (.state == "running" and .lag_records == 0)' 30
sleep 1
"$spate" stat "$bus" --json > "$dir/stat.json"
[ "$(consumer f records)" = 0 ] || fail "after a restart the function got $(consumer f records) records again"
[ "$(wc -l < "$dir/out.txt")" = "$lines" ] || fail "after a restart records were handled again"
stop_engine
echo "$name: OK ($n records, $(wc -l < "$dir/bad.txt") to on_failure, $(wc -l < "$dir/out.txt") handled lines)"
[ ! -s "$dir/dlq.txt" ] || echo "$name: on_failure: $(head -1 "$dir/dlq.txt" | sed 's/.*(consumer/(consumer/')"
