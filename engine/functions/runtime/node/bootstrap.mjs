// SPDX-License-Identifier: MIT
// spate's Lambda Runtime API loop for Node (a consumer's `runtime_client:
// node`): load the handler named by argv[2] or _HANDLER ("index.handler":
// index.mjs, index.js or index.cjs in LAMBDA_TASK_ROOT), then loop GET
// /invocation/next -> handler(event, context) -> POST /response or /error,
// as AWS's runtime clients do. One keep-alive connection to the engine.
// A failing import posts /init/error and exits; an exception the handler
// throws (or rejects with) posts /error; an uncaught one ends the process
// (the engine restarts it), as on Lambda.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const base = '/2018-06-01/runtime';

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
for (;;) {
  const r = await call('GET', '/invocation/next');
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
  try {
    const event = JSON.parse(r.body);
    const out = handler.length >= 3
      ? await new Promise((ok, no) => {
        const p = handler(event, context, (err, v) => (err ? no(err) : ok(v)));
        if (p && typeof p.then === 'function') p.then(ok, no);
      })
      : await handler(event, context);
    await call('POST', `/invocation/${id}/response`, JSON.stringify(out === undefined ? null : out),
      { 'Content-Type': 'application/json' });
  } catch (e) {
    await call('POST', `/invocation/${id}/error`, errorBody(e),
      { 'Lambda-Runtime-Function-Error-Type': (e && e.name) || 'Error' });
  }
}
