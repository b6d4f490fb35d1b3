#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# nats_auth.sh - issue 13 item 3: the bridge through a NATS server that
# wants TLS and a user/password (a real nats-server, certificates made here
# with openssl). Bus A exports a stream with the nats plugin (user, password,
# tls_ca), bus B imports it with a nats source (auth: {user, password},
# tls: {ca}); every record put into A must reach B's stream. Then the
# refusals: a wrong password and a client trusting another CA each leave
# the export down with a last error (spate stat), the server's log says
# why (authentication error, TLS handshake error), and nothing reaches
# JetStream.
#
# usage: nats_auth.sh SPATE NATS_JS
# Skips (77) without nats-server, openssl or python3.
set -uo pipefail
spate=${1:?usage: nats_auth.sh SPATE NATS_JS}
natsjs=${2:?}
command -v nats-server >/dev/null || { echo "SKIP: nats-server not installed"; exit 77; }
command -v openssl >/dev/null || { echo "SKIP: openssl not installed"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
export SPATE_PLUGIN_PATH=${SPATE_PLUGIN_PATH:?}

dir=$(mktemp -d /tmp/spate-nats-auth.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	for y in a b bad nca; do
		[ -f "$dir/$y.yaml" ] && "$spate" rm "$dir/$y.yaml" >/dev/null 2>&1
	done
	if [ "${keep:-0}" = 1 ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# A CA, and a server certificate it signed for localhost / 127.0.0.1.
(
	cd "$dir" &&
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=spate test CA" \
		-keyout ca.key -out ca.pem &&
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr &&
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext &&
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
		-extfile san.ext -out server.pem &&
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another CA" \
		-keyout other.key -out other.pem
) >"$dir/openssl.log" 2>&1 || { echo "FAIL: openssl"; cat "$dir/openssl.log"; exit 1; }

cat >"$dir/nats.conf" <<EOF
listen: 127.0.0.1:$port
jetstream { store_dir: "$dir/js" }
tls { cert_file: "$dir/server.pem", key_file: "$dir/server.key", timeout: 5 }
authorization { user: spate, password: "s3cret-pw" }
EOF
nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
pids+=("$!")
url="tls://localhost:$port"

# The admin client: plain libnats with the same credentials and CA.
export NATS_JS_USER=spate NATS_JS_PASSWORD=s3cret-pw NATS_JS_CA="$dir/ca.pem"
ok=0
for _ in $(seq 1 100); do
	if "$natsjs" "$url" create SECURE 'spate.>' 1 2>>"$dir/natsjs.log"; then
		ok=1
		break
	fi
	sleep 0.1
done
[ "$ok" = 1 ] || { echo "FAIL: no JetStream on the TLS server"; tail -n 5 "$dir/natsjs.log" "$dir/nats.log"; exit 1; }

busA="naA$$"
busB="naB$$"
yaml_a() { # file bus password ca
	cat >"$dir/$1" <<EOF
bus: $2
state_dir: $dir/state-$2
streams:
  - { name: orders, shards: 1, ring_size: 1MiB, huge_pages: off }
consumers:
  - name: export
    stream: orders
    plugin: nats
    starting_position: trim_horizon
    batch_size: 100
    retry_backoff: 50ms
    retry_backoff_max: 500ms
    options:
      servers: "$url"
      user: spate
      password: "$3"
      tls: "true"
      tls_ca: "$4"
      jetstream_stream: SECURE
      ack_timeout: "1000"
EOF
	mkdir -p "$dir/state-$2" && chmod 700 "$dir/state-$2"
}
yaml_a a.yaml "$busA" s3cret-pw "$dir/ca.pem"
cat >"$dir/b.yaml" <<EOF
bus: $busB
state_dir: $dir/state-$busB
streams:
  - { name: orders, shards: 1, ring_size: 1MiB, huge_pages: off }
sources:
  - name: imp
    type: nats
    stream: orders
    servers: [$url]
    jetstream_stream: SECURE
    auth: { user: spate, password: "s3cret-pw" }
    tls: { ca: "$dir/ca.pem" }
EOF
mkdir -p "$dir/state-$busB" && chmod 700 "$dir/state-$busB"

. "$(dirname "$0")/nats_lib.sh"
start_bus A a.yaml
start_bus B b.yaml

n=500
seq 1 "$n" | sed 's/^/record-/' >"$dir/in.txt"
"$spate" put "$dir/a.yaml" orders -q <"$dir/in.txt" >"$dir/put.log" 2>&1 ||
	{ echo "FAIL: spate put"; cat "$dir/put.log"; exit 1; }
got=0
for _ in $(seq 1 200); do
	got=$("$spate" tail "$dir/b.yaml" orders --from trim_horizon -n 100000 2>/dev/null | wc -l)
	[ "$got" -ge "$n" ] && break
	sleep 0.1
done
[ "$got" = "$n" ] || { echo "FAIL: $got of $n records through TLS + user/password"; tail -n 20 "$dir/A.log" "$dir/B.log"; keep=1; exit 1; }
echo "OK: $n records A -> JetStream (TLS, user/password) -> B"
"$spate" stat "$busB" --json >"$dir/b.stat.json" 2>&1
python3 -c '
import json, sys
s = [x for x in json.load(open(sys.argv[1]))["sources"] if x["name"] == "imp"][0]
sys.exit(0 if s["state"] == "up" and s["counters"]["appended"] == int(sys.argv[2]) else 1)' \
	"$dir/b.stat.json" "$n" || { echo "FAIL: the source's counters:"; cat "$dir/b.stat.json"; keep=1; exit 1; }
kill -TERM "$pid_A" "$pid_B"
wait "$pid_A" "$pid_B" 2>/dev/null

# Refusals: the export stays down with a last error (libnats says "no
# server available"; the server's log says why), and exports nothing.
refused() { # yaml bus what server-log-pattern
	local before after
	before=$("$natsjs" "$url" count SECURE)
	local lines
	lines=$(wc -l <"$dir/nats.log")
	"$spate" run "$dir/$1" >"$dir/$1.log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	for _ in $(seq 1 200); do
		grep -q "stream orders:" "$dir/$1.log" 2>/dev/null && break
		sleep 0.05
	done
	"$spate" put "$dir/$1" orders -q refused-record >/dev/null 2>&1
	local ok=0
	for _ in $(seq 1 100); do
		"$spate" stat "$2" --json >"$dir/$1.stat" 2>/dev/null &&
			python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
s = [x for x in v.get("sources", []) if x["name"] == "export"]
sys.exit(0 if s and s[0]["state"] == "down" and s[0]["error"] and s[0]["counters"]["acked"] == 0 else 1)' \
				"$dir/$1.stat" && tail -n +"$((lines + 1))" "$dir/nats.log" | grep -qiE "$4" && { ok=1; break; }
		sleep 0.1
	done
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	after=$("$natsjs" "$url" count SECURE)
	[ "$ok" = 1 ] || { echo "FAIL: $3: the export is not down with an error, or no \"$4\" in the server's log"; cat "$dir/$1.stat" 2>/dev/null; tail -n 10 "$dir/$1.log" "$dir/nats.log"; keep=1; exit 1; }
	[ "$before" = "$after" ] || { echo "FAIL: $3: JetStream went from $before to $after messages"; keep=1; exit 1; }
	echo "OK: $3 refused (server: $(tail -n +"$((lines + 1))" "$dir/nats.log" | grep -oiE "$4[^\"]{0,40}" | head -n 1); export: $(python3 -c 'import json,sys; print([x["error"] for x in json.load(open(sys.argv[1]))["sources"] if x["name"] == "export"][0])' "$dir/$1.stat")), nothing exported"
}
yaml_a bad.yaml "nbad$$" wrong-pw "$dir/ca.pem"
refused bad.yaml "nbad$$" "a wrong password" "authentication error|authorization violation"
yaml_a nca.yaml "nnca$$" s3cret-pw "$dir/other.pem"
refused nca.yaml "nnca$$" "a server certificate of another CA" "tls handshake error"
exit 0
