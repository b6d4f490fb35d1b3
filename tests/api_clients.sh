#!/bin/sh
# Real Kinesis clients against `spate run`'s Kinesis API front with
# signatures on (issue 11 items 5 and 6): the AWS CLI v2 (Debian awscli),
# boto3 (Debian python3-boto3) and @aws-sdk/client-kinesis (npm, installed
# by quickstart into tests/api/node). Each mode starts its own engine on a
# free port with a temporary state dir and an access key whose secret file
# the test writes (mode 0600), runs one client, and cleans up.
#
#   api_clients.sh MODE SPATE_BINARY SOURCE_ROOT
#   MODE: awscli | boto3 | js | refused | tls
#
# refused: unsigned, incomplete, unknown-key, wrong-secret, tampered,
#          expired requests are refused with AWS's error types.
# tls:     api.tls with a self-signed certificate made here: the AWS CLI
#          with --ca-bundle runs the whole flow over HTTPS; curl --cacert
#          is answered, curl without it refuses the certificate.
# Exit 77 (skipped) only when the client itself is not installed.
set -eu
mode=$1 spate=$2 src=$3
name="api_clients.sh $mode"
. "$(dirname "$0")/engine_lib.sh"
bus="api$$"
aws=/usr/bin/aws
py=/usr/bin/python3
skip() { echo "$name: SKIP: $*"; exit 77; }

case $mode in
awscli | tls)
	[ -x "$aws" ] || aws=$(command -v aws) || skip "the AWS CLI (Debian awscli) is not installed"
	command -v jq > /dev/null || skip "jq is not installed"
	;;
boto3 | refused)
	"$py" -c 'import boto3' 2> /dev/null || skip "boto3 (Debian python3-boto3) is not installed" ;;
js)
	command -v node > /dev/null || skip "node is not installed"
	[ -d "$src/tests/api/node/node_modules/@aws-sdk/client-kinesis" ] ||
		skip "@aws-sdk/client-kinesis is not installed (./quickstart runs npm ci in tests/api/node)" ;;
*) fail "unknown mode $mode" ;;
esac
[ "$mode" = tls ] && { command -v openssl > /dev/null || skip "openssl is not installed"; }

# A free port: bind 0, read it back, close (the engine binds it next).
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key_id=AKIDSPATETEST$$
(umask 077; "$py" -c 'import secrets; print(secrets.token_urlsafe(30))' > "$dir/secret")
scheme=http
tls=
if [ "$mode" = tls ]; then
	(umask 077; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 2 \
		-keyout "$dir/key.pem" -out "$dir/cert.pem" 2> /dev/null) || fail "openssl req"
	scheme=https
	tls="  tls: { cert: $dir/cert.pem, key: $dir/key.pem }"
fi
cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: configured
    shards: 1
    ring_size: 64KiB
    huge_pages: off
api:
  listen: 127.0.0.1:$port
  region: us-east-1
  auth:
    keys:
      - { id: $key_id, secret_file: $dir/secret }
$tls
YAML
start_engine
endpoint=$scheme://127.0.0.1:$port
i=0
until curl -s -o /dev/null ${tls:+--cacert "$dir/cert.pem"} "$endpoint/"; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "the api front does not answer on $endpoint"; sleep 0.1
done

case $mode in
awscli) out=$(sh "$src/tests/api/awscli.sh" "$aws" "$endpoint" "$key_id" "$dir/secret" cli-$$ "$dir") ||
	fail "$out" ;;
boto3) out=$("$py" "$src/tests/api/boto3_client.py" "$endpoint" "$key_id" "$dir/secret" boto-$$) ||
	fail "boto3_client.py" ;;
js) out=$(node "$src/tests/api/node/client.mjs" "$endpoint" "$key_id" "$dir/secret" js-$$) ||
	fail "client.mjs" ;;
refused) out=$("$py" "$src/tests/api/refused.py" "$endpoint" "$key_id" "$dir/secret") ||
	fail "refused.py" ;;
tls)
	out=$(sh "$src/tests/api/awscli.sh" "$aws" "$endpoint" "$key_id" "$dir/secret" tls-$$ "$dir" \
		"$dir/cert.pem") || fail "$out"
	# curl trusting the certificate reaches the front (an unsigned call:
	# MissingAuthenticationToken); without it, curl refuses the certificate.
	curl -sS --cacert "$dir/cert.pem" -X POST -H 'Content-Type: application/x-amz-json-1.1' \
		-H 'X-Amz-Target: Kinesis_20131202.ListStreams' -d '{}' "$endpoint/" > "$dir/curl.out" ||
		fail "curl --cacert"
	grep -q MissingAuthenticationTokenException "$dir/curl.out" || fail "curl: $(cat "$dir/curl.out")"
	rc=0
	curl -sS -o /dev/null "$endpoint/" 2> /dev/null || rc=$?
	[ $rc = 60 ] || fail "curl without --cacert: status $rc, expected 60 (untrusted certificate)"
	out="$out; curl --cacert answered, curl without it refused the certificate"
	;;
esac
kill -INT "$pid"; wait "$pid" || fail "spate run exited with $?"; pid=
echo "$name: $out"
