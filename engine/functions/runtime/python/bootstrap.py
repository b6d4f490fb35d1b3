# SPDX-License-Identifier: MIT
# spate's Lambda Runtime API loop for Python (a consumer's `runtime_client:
# python`): import the handler named by argv[1] or _HANDLER ("app.handler":
# app.py in LAMBDA_TASK_ROOT), then loop GET /invocation/next ->
# handler(event, context) -> POST /response or /error, as AWS's runtime
# interface client does. One keep-alive connection to the engine. A failing
# import posts /init/error and exits; an exception posts /error.
import http.client
import importlib
import json
import os
import sys
import time
import traceback

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
base = "/2018-06-01/runtime"


def call(method, url, body=None, headers=None):
    conn.request(method, base + url, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.headers, r.read()


def error_body(e):
    return json.dumps({"errorType": type(e).__name__, "errorMessage": str(e),
                       "stackTrace": traceback.format_tb(e.__traceback__)})


class Context:
    def __init__(self, headers):
        env = os.environ
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self._deadline = int(headers.get("Lambda-Runtime-Deadline-Ms", "0"))

    def get_remaining_time_in_millis(self):
        return self._deadline - int(time.time() * 1000)


try:
    spec = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("_HANDLER", "")
    mod, _, fn = spec.rpartition(".")
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT", os.getcwd()))
    handler = getattr(importlib.import_module(mod), fn)
except Exception as e:  # noqa: BLE001 - any import failure is an init error
    call("POST", "/init/error", error_body(e),
         {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"})
    sys.exit(1)

while True:
    status, headers, body = call("GET", "/invocation/next")
    rid = headers.get("Lambda-Runtime-Aws-Request-Id")
    os.environ["_X_AMZN_TRACE_ID"] = headers.get("Lambda-Runtime-Trace-Id", "")
    try:
        out = handler(json.loads(body), Context(headers))
        call("POST", f"/invocation/{rid}/response", json.dumps(out),
             {"Content-Type": "application/json"})
    except Exception as e:  # noqa: BLE001 - reported to the engine as the invocation's error
        call("POST", f"/invocation/{rid}/error", error_body(e),
             {"Lambda-Runtime-Function-Error-Type": type(e).__name__})
