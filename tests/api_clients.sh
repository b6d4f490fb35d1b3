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
#          with --ca-bundle puts and reads records over HTTPS, and refuses
#          the certificate without it; so does curl without --cacert.
# Every mode first calls through curl's own SigV4 signer (--aws-sigv4).
# Exit 77 (skipped) only when the client itself is not installed, or the
# engine cannot create streams at run time (the core's stream_add missing).
set -eu
mode=$1 spate=$2 src=$3
name="api_clients.sh-$mode" # (no space: it names the temporary directory)
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
command -v curl > /dev/null || skip "curl is not installed"
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
# The AWS CLI's flow (a Python start per call) outlives start_engine's
# default 60 s on a loaded machine.
engine_seconds=600
start_engine
endpoint=$scheme://127.0.0.1:$port
i=0
until curl -s -o /dev/null ${tls:+--cacert "$dir/cert.pem"} "$endpoint/"; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "the api front does not answer on $endpoint"; sleep 0.1
done

# curl's own SigV4 signer (--aws-sigv4), a client independent of the AWS
# SDKs: a signed call is answered. Then whether the core can create streams
# at run time (spate_engine_stream_add): every flow below starts with
# CreateStream, so an engine without it is a missing facility, said so.
signed() {
	curl -sS ${tls:+--cacert "$dir/cert.pem"} --aws-sigv4 "aws:amz:us-east-1:kinesis" \
		--user "$key_id:$(cat "$dir/secret")" -H 'Content-Type: application/x-amz-json-1.1' \
		-H "X-Amz-Target: Kinesis_20131202.$1" -d "$2" "$endpoint/"
}
signed ListStreams '{}' > "$dir/probe.json" || fail "curl --aws-sigv4 ListStreams"
grep -q '"StreamNames":\["configured"\]' "$dir/probe.json" ||
	fail "curl --aws-sigv4 ListStreams: $(cat "$dir/probe.json")"
signed CreateStream "{\"StreamName\":\"probe-$$\",\"ShardCount\":1}" > "$dir/probe.json" ||
	fail "curl --aws-sigv4 CreateStream"
if grep -q 'Function not implemented\|cannot add streams while it runs' "$dir/probe.json"; then
	# refused and tls use the YAML stream and need no run-time stream.
	[ "$mode" = refused ] || [ "$mode" = tls ] ||
		skip "this engine cannot create streams at run time yet: $(cat "$dir/probe.json")"
else
	[ "$(cat "$dir/probe.json")" = "" ] || [ "$(cat "$dir/probe.json")" = "{}" ] ||
		fail "CreateStream by curl --aws-sigv4: $(cat "$dir/probe.json")"
	signed DeleteStream "{\"StreamName\":\"probe-$$\"}" > "$dir/probe.json" ||
		fail "DeleteStream probe"
fi

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
	# The AWS CLI with --ca-bundle: put and read back records of the YAML
	# stream over HTTPS (CreateStream's flow runs in mode awscli).
	export AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="$(cat "$dir/secret")" \
		AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
		AWS_PAGER= AWS_MAX_ATTEMPTS=1
	k() { "$aws" kinesis --endpoint-url "$endpoint" --ca-bundle "$dir/cert.pem" --output json "$@"; }
	k list-streams | jq -e '.StreamNames == ["configured"]' > /dev/null || fail "list-streams over TLS"
	for i in 1 2 3; do
		k put-record --stream-name configured --partition-key tls --data "over-tls-$i" \
			--cli-binary-format raw-in-base64-out > /dev/null || fail "put-record over TLS"
	done
	it=$(k get-shard-iterator --stream-name configured --shard-id shardId-000000000000 \
		--shard-iterator-type TRIM_HORIZON | jq -r .ShardIterator) || fail "get-shard-iterator over TLS"
	got=$(k get-records --shard-iterator "$it" | jq -r '[.Records[].Data | @base64d] | join(" ")')
	[ "$got" = "over-tls-1 over-tls-2 over-tls-3" ] || fail "get-records over TLS: $got"
	# Without the CA the CLI refuses the certificate.
	if "$aws" kinesis --endpoint-url "$endpoint" list-streams > "$dir/nocert.out" 2>&1; then
		fail "the AWS CLI accepted a self-signed certificate without --ca-bundle"
	fi
	grep -qi "certificate" "$dir/nocert.out" || fail "AWS CLI without --ca-bundle: $(cat "$dir/nocert.out")"
	# curl trusting the certificate reaches the front (an unsigned call:
	# MissingAuthenticationToken); without it, curl refuses the certificate.
	curl -sS --cacert "$dir/cert.pem" -X POST -H 'Content-Type: application/x-amz-json-1.1' \
		-H 'X-Amz-Target: Kinesis_20131202.ListStreams' -d '{}' "$endpoint/" > "$dir/curl.out" ||
		fail "curl --cacert"
	grep -q MissingAuthenticationTokenException "$dir/curl.out" || fail "curl: $(cat "$dir/curl.out")"
	rc=0
	curl -sS -o /dev/null "$endpoint/" 2> /dev/null || rc=$?
	[ $rc = 60 ] || fail "curl without --cacert: status $rc, expected 60 (untrusted certificate)"
	out="$("$aws" --version 2>&1 | cut -d' ' -f1) --ca-bundle: put-record and get-records over TLS; without it the certificate is refused; curl --cacert (and --aws-sigv4) answered, curl without it refused the certificate"
	;;
esac
kill -INT "$pid"; wait "$pid" || fail "spate run exited with $?"; pid=
echo "$name: $out"
