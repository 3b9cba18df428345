"""A small fault-injecting HTTP proxy on loopback, for tests against a real model server.

It forwards every request to ``upstream`` and can, on demand: answer the next N requests with an error
status (5xx, 429 with ``Retry-After``) without forwarding them, or hold requests for a while before
forwarding them (a slow server). It counts what the upstream answered with 200 per request body, so a test
can check that no completion was paid twice.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: FaultProxy

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._forward(None)

    def do_POST(self) -> None:  # noqa: N802
        self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def _forward(self, body: bytes | None) -> None:
        proxy = self.server
        with proxy.lock:
            proxy.requests += 1
            fail = proxy.fail_next > 0
            proxy.fail_next -= fail
            slow = proxy.slow_next > 0
            proxy.slow_next -= slow
        if fail:
            extra = {"Retry-After": str(proxy.retry_after)} if proxy.fail_code in (429, 503) else {}
            return self._send(proxy.fail_code, json.dumps({"error": "injected fault"}).encode(), extra)
        if slow:
            proxy.release.wait(proxy.slow_for)  # a test may release held requests early
        with proxy.lock:
            proxy.inflight += 1
            proxy.max_inflight = max(proxy.max_inflight, proxy.inflight)
        try:
            self._relay(body)
        finally:
            with proxy.lock:
                proxy.inflight -= 1

    def _relay(self, body: bytes | None) -> None:
        proxy = self.server
        req = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=proxy.upstream_timeout) as resp:
                code, data = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            code, data = err.code, err.read()
        except OSError as err:  # upstream down: a gateway error, as a reverse proxy would answer
            code, data = 502, json.dumps({"error": f"upstream unreachable: {err}"}).encode()
        if code == 200 and body is not None:
            with proxy.lock:
                proxy.paid[hashlib.sha256(body).hexdigest()] += 1
        self._send(code, data, {})

    def _send(self, code: int, data: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timed out) meanwhile
            pass

    def log_message(self, *args) -> None:
        pass


class FaultProxy(ThreadingHTTPServer):
    """The proxy on ``127.0.0.1:<free port>`` in front of ``upstream``; a context manager that stops it.

    Set ``fail_next``/``fail_code``/``retry_after`` to inject error answers, ``slow_next``/``slow_for`` to
    hold requests. ``paid`` counts 200 answers per request body, ``requests`` every request received,
    ``max_inflight`` the most requests forwarded at once.
    """

    daemon_threads = True

    def __init__(self, upstream: str, upstream_timeout: float = 120.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream.rstrip("/")
        self.upstream_timeout = upstream_timeout
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.requests = self.inflight = self.max_inflight = 0
        self.fail_next, self.fail_code, self.retry_after = 0, 503, 0
        self.slow_next, self.slow_for = 0, 0.0
        self.paid: Counter[str] = Counter()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)

    def wait_for(self, condition, timeout: float = 60.0) -> bool:
        """Poll ``condition()`` until true (at most ``timeout`` seconds, a failsafe)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True
