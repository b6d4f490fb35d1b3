// SPDX-License-Identifier: MIT
// spate's Lambda Runtime API loop for Node (a consumer's `runtime_client:
// node`): load the handler named by argv[2] or _HANDLER ("index.handler":
// index.mjs, index.js or index.cjs in LAMBDA_TASK_ROOT), then loop GET
// /invocation/next -> handler(event, context) -> POST /response or /error,
// as AWS's runtime clients do. One keep-alive connection to the engine.
// A failing import posts /init/error and exits; an exception the handler
// throws (or rejects with) posts /error; an uncaught one ends the process
// (the engine restarts it), as on Lambda.
//
// The event (Lambda's Kinesis event: ~590 bytes of JSON per small record,
// 590 KB for 1,000) is read into one buffer kept across invocations, sized
// by the response's Content-Length (no chunk list, no concatenation). It is
// decoded as Latin-1 when it is all ASCII (buffer.isAscii: base64 data and
// ASCII partition keys, the usual case), as UTF-8 otherwise (a partition key
// in another script). A large event of Kinesis records is parsed in pieces
// of about PIECE bytes cut between records ("},{"kinesis":" is found only
// there: a '"' inside a JSON string is always escaped), each piece parsed as
// an array of its records and the arrays joined: a string above 128 KB is
// a V8 large object in fresh pages, which the kernel faults in anew at every
// invocation (~0.3 ms of a 590 KB event on this class of machine), pieces
// are not. The result is what JSON.parse of the whole text gives: if a
// piece does not parse, the whole text is parsed instead (and any error is
// the whole text's).
// SPATE_NODE_TIMING=N prints the mean time of each phase of the last N
// invocations to stderr (the engine's log).
import buffer from 'node:buffer';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const base = '/2018-06-01/runtime';
const isAscii = buffer.isAscii ?? ((b) => !b.some((c) => c > 0x7f));

function call(method, url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: base + url, agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body); else req.end();
  });
}

// The event's buffer, reused: grown to the largest event seen (6 MiB at
// most, Lambda's payload limit).
let evbuf = Buffer.alloc(0);

// GET /invocation/next: { headers, body } with the event in body (a view
// of evbuf, valid until the next call).
function nextEvent(tm) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method: 'GET', path: base + '/invocation/next', agent },
      (res) => {
        if (tm) tm[0] = process.hrtime.bigint();
        const len = Number(res.headers['content-length']);
        if (!Number.isSafeInteger(len) || len < 0) { // no length: collect the chunks
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
          return;
        }
        if (evbuf.length < len) evbuf = Buffer.alloc(Math.max(len, evbuf.length * 2));
        let off = 0;
        res.on('data', (c) => {
          if (off + c.length <= len) c.copy(evbuf, off);
          off += c.length;
        });
        res.on('end', () => {
          if (off !== len) reject(new Error(`event of ${off} bytes, Content-Length ${len}`));
          else resolve({ headers: res.headers, body: evbuf.subarray(0, len) });
        });
      });
    req.on('error', reject);
    req.end();
  });
}

const PIECE = 64 << 10;
const HEAD = Buffer.from('{"Records":[');
const SEP = Buffer.from('},{"kinesis":');

function text(b, from, to, ascii) {
  return ascii ? b.latin1Slice(from, to) : b.utf8Slice(from, to);
}

// JSON.parse of the event in buffer b (which it may change).
function parseEvent(b) {
  const len = b.length, ascii = isAscii(b);
  if (len < 2 * PIECE || !b.subarray(0, HEAD.length).equals(HEAD) ||
      b[len - 2] !== 0x5d || b[len - 1] !== 0x7d) return JSON.parse(text(b, 0, len, ascii));
  const records = [];
  try {
    for (let start = HEAD.length - 1; ;) { // b[start]: the '[' or the comma before a piece
      const sep = start + PIECE < len - 2 ? b.indexOf(SEP, start + PIECE) : -1;
      const end = sep < 0 ? len - 2 : sep + 1; // the comma after it, or the final ']'
      const open = b[start], close = b[end];
      b[start] = 0x5b;
      b[end] = 0x5d;
      let part;
      try {
        part = JSON.parse(text(b, start, end + 1, ascii));
      } finally {
        b[start] = open;
        b[end] = close;
      }
      for (const r of part) records.push(r);
      if (sep < 0) return { Records: records };
      start = end;
    }
  } catch {
    return JSON.parse(text(b, 0, len, ascii));
  }
}

function errorBody(e) {
  const err = e instanceof Error ? e : new Error(String(e));
  return JSON.stringify({ errorType: err.name || 'Error', errorMessage: err.message,
    stackTrace: (err.stack || '').split('\n').slice(1).map((l) => l.trim()) });
}

async function load(spec) {
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const dot = spec.lastIndexOf('.');
  if (dot <= 0) throw Object.assign(new Error(`bad handler ${spec}: expected module.function`),
    { name: 'Runtime.MalformedHandlerName' });
  const mod = spec.slice(0, dot), fn = spec.slice(dot + 1);
  for (const ext of ['.mjs', '.js', '.cjs']) {
    const file = path.resolve(root, mod + ext);
    if (!fs.existsSync(file)) continue;
    const m = await import(pathToFileURL(file).href);
    const h = m[fn] ?? m.default?.[fn];
    if (typeof h !== 'function') break;
    return h;
  }
  throw Object.assign(new Error(`${mod}.${fn} is undefined or not exported`),
    { name: 'Runtime.HandlerNotFound' });
}

let handler;
try {
  handler = await load(process.argv[2] || process.env._HANDLER || '');
} catch (e) {
  await call('POST', '/init/error', errorBody(e),
    { 'Lambda-Runtime-Function-Error-Type': e.name || 'Runtime.ImportModuleError' });
  process.exit(1);
}

const env = process.env;
const timing = Number(env.SPATE_NODE_TIMING) || 0;
const phases = ['wait', 'body', 'parse', 'handler', 'answer'];
const sums = new Array(phases.length).fill(0n);
let timed = 0;
let cpu0 = process.cpuUsage();
for (;;) {
  const tm = timing ? [0n] : null;
  const t0 = timing ? process.hrtime.bigint() : 0n;
  const r = await nextEvent(tm);
  const t1 = timing ? process.hrtime.bigint() : 0n;
  const id = r.headers['lambda-runtime-aws-request-id'];
  const deadline = Number(r.headers['lambda-runtime-deadline-ms']);
  const context = {
    awsRequestId: id,
    invokedFunctionArn: r.headers['lambda-runtime-invoked-function-arn'],
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };
  process.env._X_AMZN_TRACE_ID = r.headers['lambda-runtime-trace-id'] || '';
  let t2 = 0n, t3 = 0n;
  try {
    const event = parseEvent(r.body);
    if (timing) t2 = process.hrtime.bigint();
    const out = handler.length >= 3
      ? await new Promise((ok, no) => {
        const p = handler(event, context, (err, v) => (err ? no(err) : ok(v)));
        if (p && typeof p.then === 'function') p.then(ok, no);
      })
      : await handler(event, context);
    if (timing) t3 = process.hrtime.bigint();
    await call('POST', `/invocation/${id}/response`, JSON.stringify(out === undefined ? null : out),
      { 'Content-Type': 'application/json' });
  } catch (e) {
    await call('POST', `/invocation/${id}/error`, errorBody(e),
      { 'Lambda-Runtime-Function-Error-Type': (e && e.name) || 'Error' });
  }
  if (timing && t3) {
    const t4 = process.hrtime.bigint();
    const d = [tm[0] - t0, t1 - tm[0], t2 - t1, t3 - t2, t4 - t3];
    for (let i = 0; i < d.length; i++) sums[i] += d[i];
    if (++timed === timing) {
      const cpu = process.cpuUsage(cpu0);
      cpu0 = process.cpuUsage();
      process.stderr.write(`spate node loop, mean of ${timed} invocations (us): ${
        phases.map((p, i) => `${p} ${(Number(sums[i]) / timed / 1e3).toFixed(1)}`).join(' ')
      } cpu user ${(cpu.user / timed).toFixed(1)} system ${(cpu.system / timed).toFixed(1)}\n`);
      sums.fill(0n);
      timed = 0;
    }
  }
}
