#!/bin/sh
# The AWS CLI v2 (Debian awscli) against spate's Kinesis API front,
# signatures on: create-stream -> put-record / put-records -> list-shards
# (paged by hand) -> get-shard-iterator -> get-records (drained) ->
# delete-stream, checking payloads, order per partition key, one shard per
# key, and the error types the CLI prints.
# Usage: awscli.sh AWS ENDPOINT KEY_ID SECRET_FILE STREAM WORKDIR [CA_BUNDLE]
set -eu
aws=$1 endpoint=$2 key_id=$3 secret_file=$4 stream=$5 w=$6 ca=${7:-}
fail() { echo "awscli.sh: FAIL: $*" >&2; exit 1; }

AWS_ACCESS_KEY_ID=$key_id
AWS_SECRET_ACCESS_KEY=$(cat "$secret_file")
AWS_DEFAULT_REGION=us-east-1
AWS_CONFIG_FILE=$w/aws-config
AWS_SHARED_CREDENTIALS_FILE=$w/aws-credentials
AWS_PAGER=
AWS_MAX_ATTEMPTS=1
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION AWS_CONFIG_FILE \
	AWS_SHARED_CREDENTIALS_FILE AWS_PAGER AWS_MAX_ATTEMPTS
: > "$AWS_CONFIG_FILE"
: > "$AWS_SHARED_CREDENTIALS_FILE"
set -- --endpoint-url "$endpoint" --output json
[ -n "$ca" ] && set -- "$@" --ca-bundle "$ca"
k() { "$aws" kinesis "$@"; }

# An error the CLI reports as "An error occurred (<Type>) when calling ...".
expect_error() {
	type=$1; shift
	if "$aws" kinesis "$@" > "$w/err.out" 2>&1; then
		fail "$*: expected $type, succeeded"
	fi
	grep -q "($type)" "$w/err.out" || fail "$*: expected $type: $(cat "$w/err.out")"
}

k create-stream "$@" --stream-name "$stream" --shard-count 2
k wait stream-exists "$@" --stream-name "$stream"
expect_error ResourceInUseException create-stream "$@" --stream-name "$stream" --shard-count 2
expect_error ResourceNotFoundException describe-stream "$@" --stream-name "$stream-absent"
[ "$(k describe-stream-summary "$@" --stream-name "$stream" |
	jq -r '.StreamDescriptionSummary | "\(.StreamStatus) \(.OpenShardCount)"')" = "ACTIVE 2" ] ||
	fail "describe-stream-summary"

# put-record: 3 records of one key (raw text in, as a shell user writes it).
: > "$w/sent.txt"
i=0
while [ $i -lt 3 ]; do
	k put-record "$@" --stream-name "$stream" --partition-key alpha \
		--data "alpha-$i" --cli-binary-format raw-in-base64-out > "$w/put.json"
	jq -e '.ShardId | startswith("shardId-")' "$w/put.json" > /dev/null || fail "put-record"
	printf 'alpha\talpha-%d\n' $i >> "$w/sent.txt"
	i=$((i + 1))
done
# put-records: 2 x 500 records over 25 keys, given as a file.
for b in 0 1; do
	jq -n --argjson b $b '[range(500) | {PartitionKey: "key-\(. % 25)",
		Data: "key-\(. % 25)/\($b)/\(.)"}]' > "$w/recs.json"
	k put-records "$@" --stream-name "$stream" --records "file://$w/recs.json" \
		--cli-binary-format raw-in-base64-out > "$w/puts.json"
	[ "$(jq '.FailedRecordCount' "$w/puts.json")" = 0 ] || fail "put-records: some failed"
	[ "$(jq '.Records | length' "$w/puts.json")" = 500 ] || fail "put-records: not 500 answers"
	jq -r '.[] | "\(.PartitionKey)\t\(.Data)"' "$w/recs.json" >> "$w/sent.txt"
done

# list-shards one per page, by NextToken.
k list-shards "$@" --no-paginate --stream-name "$stream" --max-results 1 > "$w/ls1.json"
tok=$(jq -r '.NextToken // empty' "$w/ls1.json")
[ -n "$tok" ] || fail "list-shards --max-results 1 gave no NextToken"
k list-shards "$@" --no-paginate --next-token "$tok" --max-results 1 > "$w/ls2.json"
shards=$(jq -r '.Shards[].ShardId' "$w/ls1.json" "$w/ls2.json" | tr '\n' ' ')
[ "$shards" = "shardId-000000000000 shardId-000000000001 " ] || fail "list-shards: $shards"

# get-records from TRIM_HORIZON, each shard drained.
: > "$w/got.txt"
for s in $shards; do
	it=$(k get-shard-iterator "$@" --stream-name "$stream" --shard-id "$s" \
		--shard-iterator-type TRIM_HORIZON | jq -r .ShardIterator)
	n=0
	while :; do
		k get-records "$@" --shard-iterator "$it" --limit 10000 > "$w/gr.json"
		jq -r --arg s "$s" '.Records[] | "\(.PartitionKey)\t\(.Data | @base64d)\t\($s)\t\(.SequenceNumber)"' \
			"$w/gr.json" >> "$w/got.txt"
		it=$(jq -r .NextShardIterator "$w/gr.json")
		[ "$(jq '.Records | length' "$w/gr.json")" = 0 ] &&
			[ "$(jq '.MillisBehindLatest // 0' "$w/gr.json")" = 0 ] && break
		n=$((n + 1)); [ $n -lt 200 ] || fail "get-records never caught up on $s"
	done
done
# Every record once, in put order per key (a stable sort by key keeps each
# key's own order), each key in one shard, sequence numbers growing per shard.
sort -s -t "$(printf '\t')" -k1,1 "$w/sent.txt" > "$w/sent.sorted"
cut -f1,2 "$w/got.txt" | sort -s -t "$(printf '\t')" -k1,1 > "$w/got.sorted"
cmp -s "$w/sent.sorted" "$w/got.sorted" ||
	fail "records read differ from records put: $(diff "$w/sent.sorted" "$w/got.sorted" | head -5)"
[ "$(cut -f1,3 "$w/got.txt" | sort -u | cut -f1 | uniq -d | wc -l)" = 0 ] || fail "a key in two shards"
# (as strings: equal-length decimal strings sort as their numbers, which
# awk's doubles cannot hold at 42 digits)
awk -F '\t' '{ s = $4 ""; if (($3 in last) && length(s) == length(last[$3]) && s <= last[$3]) bad = 1
	last[$3] = s } END { exit bad }' "$w/got.txt" || fail "sequence numbers out of order within a shard"

expect_error InvalidArgumentException get-records "$@" --shard-iterator "AAAA$it"
expect_error ResourceNotFoundException put-record "$@" --stream-name "$stream-absent" \
	--partition-key k --data x --cli-binary-format raw-in-base64-out

k delete-stream "$@" --stream-name "$stream"
k wait stream-not-exists "$@" --stream-name "$stream"
expect_error ResourceNotFoundException describe-stream-summary "$@" --stream-name "$stream"
echo "$("$aws" --version 2>&1 | cut -d' ' -f1)${ca:+ over TLS}: create, $(wc -l < "$w/sent.txt") records by put-record(s), list-shards paged, get-records drained in order per key, error types, delete OK"
