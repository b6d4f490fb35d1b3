// SPDX-License-Identifier: MIT
// @aws-sdk/client-kinesis (AWS SDK for JavaScript v3, from npm) against
// spate's Kinesis API front, signatures on: create -> PutRecord / PutRecords
// -> ListShards (paged) -> GetShardIterator -> GetRecords (drained) ->
// delete, checking payloads, order per partition key, one shard per key and
// the error names (err.name) a JS program branches on.
//
// Usage: node client.mjs ENDPOINT KEY_ID SECRET_FILE STREAM
import { readFileSync } from 'node:fs';
import {
  KinesisClient, CreateStreamCommand, DeleteStreamCommand, DescribeStreamSummaryCommand,
  PutRecordCommand, PutRecordsCommand, ListShardsCommand, GetShardIteratorCommand,
  GetRecordsCommand, ListStreamsCommand, waitUntilStreamExists, waitUntilStreamNotExists,
} from '@aws-sdk/client-kinesis';
// The SDK's Kinesis client speaks HTTP/2 by default (for SubscribeToShard);
// spate's front is HTTP/1.1, as kinesalite: a program switches handlers.
import { NodeHttpHandler } from '@smithy/node-http-handler';

const [endpoint, keyId, secretFile, stream] = process.argv.slice(2);
const secret = readFileSync(secretFile, 'utf8').trim();
const kin = new KinesisClient({
  endpoint, region: 'us-east-1', maxAttempts: 1, requestHandler: new NodeHttpHandler(),
  credentials: { accessKeyId: keyId, secretAccessKey: secret },
});

function fail(msg) {
  console.error(`client.mjs: FAIL: ${msg}`);
  process.exit(1);
}

async function expectError(name, cmd) {
  try {
    await kin.send(cmd);
  } catch (e) {
    if (e.name !== name) fail(`${cmd.constructor.name}: expected ${name}, got ${e.name}: ${e.message}`);
    return e;
  }
  fail(`${cmd.constructor.name}: expected ${name}, succeeded`);
}

const enc = new TextEncoder();
const dec = new TextDecoder();

await kin.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 2 }));
await waitUntilStreamExists({ client: kin, maxWaitTime: 20, minDelay: 1 }, { StreamName: stream });
await expectError('ResourceInUseException', new CreateStreamCommand({ StreamName: stream, ShardCount: 2 }));
await expectError('ResourceNotFoundException',
  new DescribeStreamSummaryCommand({ StreamName: `${stream}-absent` }));

const sent = new Map(); // key -> [string, ...] in put order
const note = (k, d) => { if (!sent.has(k)) sent.set(k, []); sent.get(k).push(d); };
let last;
for (let i = 0; i < 25; i++) {
  const d = `single-${String(i).padStart(3, '0')}`;
  const r = await kin.send(new PutRecordCommand({ StreamName: stream, PartitionKey: 'single', Data: enc.encode(d) }));
  if (last && BigInt(r.SequenceNumber) <= BigInt(last.SequenceNumber)) fail('PutRecord sequence numbers do not grow');
  if (last && r.ShardId !== last.ShardId) fail('one key in two shards');
  last = r;
  note('single', d);
}
for (let b = 0; b < 3; b++) {
  const Records = [];
  for (let i = 0; i < 500; i++) {
    const k = `js-${i % 32}`;
    const d = `${k}/${b}/${i}/${'x'.repeat(i % 50)}`;
    Records.push({ PartitionKey: k, Data: enc.encode(d) });
    note(k, d);
  }
  const r = await kin.send(new PutRecordsCommand({ StreamName: stream, Records }));
  if (r.FailedRecordCount !== 0 || r.Records.length !== 500) fail(`PutRecords: ${r.FailedRecordCount} failed`);
}
const total = [...sent.values()].reduce((a, v) => a + v.length, 0);

const shards = [];
let tok;
do {
  const r = await kin.send(new ListShardsCommand(tok ? { NextToken: tok, MaxResults: 1 } : { StreamName: stream, MaxResults: 1 }));
  shards.push(...r.Shards);
  tok = r.NextToken;
} while (tok);
if (shards.map((s) => s.ShardId).join() !== 'shardId-000000000000,shardId-000000000001') fail(`ListShards: ${JSON.stringify(shards)}`);

const got = new Map();
const keyShard = new Map();
for (const s of shards) {
  let it = (await kin.send(new GetShardIteratorCommand({ StreamName: stream, ShardId: s.ShardId, ShardIteratorType: 'TRIM_HORIZON' }))).ShardIterator;
  let prev = -1n;
  for (let n = 0; n < 1000; n++) {
    const r = await kin.send(new GetRecordsCommand({ ShardIterator: it, Limit: 600 }));
    for (const x of r.Records) {
      if ((keyShard.get(x.PartitionKey) ?? s.ShardId) !== s.ShardId) fail(`key ${x.PartitionKey} in two shards`);
      keyShard.set(x.PartitionKey, s.ShardId);
      if (BigInt(x.SequenceNumber) <= prev) fail(`sequence numbers out of order in ${s.ShardId}`);
      prev = BigInt(x.SequenceNumber);
      if (!(x.ApproximateArrivalTimestamp instanceof Date)) fail('ApproximateArrivalTimestamp is not a date');
      if (!got.has(x.PartitionKey)) got.set(x.PartitionKey, []);
      got.get(x.PartitionKey).push(dec.decode(x.Data));
    }
    it = r.NextShardIterator;
    if (r.Records.length === 0 && (r.MillisBehindLatest ?? 0) === 0) break;
  }
}
for (const [k, v] of sent) {
  const g = got.get(k) ?? [];
  if (g.length !== v.length || g.some((d, i) => d !== v[i])) fail(`key ${k}: read ${g.length}, put ${v.length}, or out of order`);
}
const read = [...got.values()].reduce((a, v) => a + v.length, 0);
if (read !== total) fail(`read ${read} records, put ${total}`);

await expectError('ResourceNotFoundException', new PutRecordCommand({ StreamName: `${stream}-absent`, PartitionKey: 'k', Data: enc.encode('x') }));
await kin.send(new DeleteStreamCommand({ StreamName: stream }));
await waitUntilStreamNotExists({ client: kin, maxWaitTime: 20, minDelay: 1 }, { StreamName: stream });
const names = (await kin.send(new ListStreamsCommand({}))).StreamNames;
if (names.includes(stream)) fail(`${stream} still listed after delete`);

// A wrong secret is refused with the SDK's InvalidSignatureException.
const wrong = new KinesisClient({ endpoint, region: 'us-east-1', maxAttempts: 1, requestHandler: new NodeHttpHandler(), credentials: { accessKeyId: keyId, secretAccessKey: `${secret}x` } });
try {
  await wrong.send(new ListStreamsCommand({}));
  fail('a wrong secret was accepted');
} catch (e) {
  if (e.name !== 'InvalidSignatureException') fail(`wrong secret: ${e.name}: ${e.message}`);
}
const v = JSON.parse(readFileSync(new URL('./node_modules/@aws-sdk/client-kinesis/package.json', import.meta.url))).version;
console.log(`@aws-sdk/client-kinesis ${v}: create, ${total} records by PutRecord(s) over ${sent.size} keys, ListShards paged, GetRecords drained in order per key, error names, delete OK`);
