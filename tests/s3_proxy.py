"""A fault-injecting HTTP proxy in front of the test S3 server (moto), for the S3 fault tests.

`FaultyS3Proxy(upstream)` listens on 127.0.0.1 (a free port) and speaks real HTTP/1.1 over a
real socket: each request is read in full (Content-Length or chunked body) and either answered
with an S3 error, as AWS does when it throttles (503 `SlowDown`, 429/400 `Throttling`, ...),
or forwarded unchanged to the upstream server and its answer relayed back. Point a client at
`proxy.endpoint` instead of the server's.

- `proxy.fail_next(n, status=503, code="SlowDown")`: the next `n` requests fail, then all pass;
- `proxy.fail_always(status=503, code="SlowDown")`: every request fails until `proxy.heal()`;
- `proxy.requests`, `proxy.failed`: how many requests arrived / were answered with an error.

Only a test double at the network boundary: nothing of Carve is patched, and the client under
test (pyarrow's S3 filesystem) sees exactly what a throttling S3 endpoint would send.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOST = "127.0.0.1"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "Throttling": "Rate exceeded",
    "ServiceUnavailable": "Service is unable to handle request.",
    "InternalError": "We encountered an internal error. Please try again.",
}


class FaultyS3Proxy:
    """An HTTP proxy on 127.0.0.1 that answers chosen requests with S3 throttling errors."""

    def __init__(self, upstream: str):
        up = urlsplit(upstream)
        if up.hostname != HOST:
            raise RuntimeError(f"the proxy only forwards to {HOST}, not {up.hostname}")
        self.upstream = (up.hostname, int(up.port or 80))
        self._lock = threading.Lock()
        self._fail_left = 0
        self._always = False
        self._status, self._code = 503, "SlowDown"
        self.requests = 0
        self.failed = 0
        self.methods: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                body = self._body()
                status, code = proxy._decide(self.command)
                if status:
                    self._fail(status, code)
                else:
                    self._forward(body)

            def _fail(self, status: int, code: str) -> None:
                xml = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>{MESSAGES.get(code, code)}</Message>"
                    "<RequestId>carve-test-proxy</RequestId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("x-amz-request-id", "carve-test-proxy")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(xml)

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    if body or self.command in ("PUT", "POST"):
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    if self.command == "HEAD":
                        length = resp.getheader("Content-Length")
                        if length is not None:
                            self.send_header("Content-Length", length)
                    else:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.endpoint = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-proxy", daemon=True)
        self._thread.start()

    def _decide(self, method: str) -> tuple[int, str]:
        with self._lock:
            self.requests += 1
            self.methods.append(method)
            if self._always or self._fail_left > 0:
                self._fail_left = max(self._fail_left - 1, 0)
                self.failed += 1
                return self._status, self._code
            return 0, ""

    def fail_next(self, n: int, status: int = 503, code: str = "SlowDown") -> None:
        with self._lock:
            self._fail_left, self._always, self._status, self._code = n, False, status, code

    def fail_always(self, status: int = 503, code: str = "SlowDown") -> None:
        with self._lock:
            self._fail_left, self._always, self._status, self._code = 0, True, status, code

    def heal(self) -> None:
        with self._lock:
            self._fail_left, self._always = 0, False

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = self.failed = 0
            self.methods = []

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
