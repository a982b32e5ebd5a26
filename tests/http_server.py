"""A small local HTTP server for tests: in-memory files, scripted faults, request counts.

Serves ``dict[path, bytes]`` on ``127.0.0.1`` (port chosen by the OS) from a
background thread. Faults are scripted per path and consumed one per request,
in order:

- ``fail(path, status=500, times=1)``: answer with an error status;
- ``truncate(path, times=1)``: announce the full ``Content-Length`` but send only
  part of the body, then close the connection;
- ``delay(path, seconds, times=1)``: sleep before answering (client timeouts);
- ``ignore_range(path)``: always answer 200 with the whole body (a server
  without Range support).

Range requests (``bytes=N-`` and ``bytes=N-M``) get 206 with ``Content-Range``,
or 416 when ``N`` is past the end. Every request is counted (:attr:`counts`)
and its Range header recorded (:attr:`ranges`).

With ``tls=(certfile, keyfile)`` it serves HTTPS instead (:meth:`url` says
``https://``): each connection's handshake runs in its own handler thread,
and handshakes are counted (:attr:`tls_handshakes`, of which
:attr:`tls_failures` failed, e.g. because the client refused the certificate),
so a test can check that a certificate error was not retried.

Use it as a context manager (also from a pytest fixture)::

    with LocalHTTPServer({"/a.gz": data}) as srv:
        requests.get(srv.url("/a.gz"))
        assert srv.counts["/a.gz"] == 1

The server is bounded: it shuts itself down after ``max_lifetime_s`` even if
the test never leaves the ``with`` block, and handler sockets time out.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

FaultKind = Literal["status", "truncate", "delay"]


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by a single request."""

    kind: FaultKind
    status: int = 500
    seconds: float = 0.0
    keep_fraction: float = 0.5  # share of the body sent before a truncation


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # seconds a client may stall a handler thread

    def do_GET(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        range_header = self.headers.get("Range")
        fault = owner._record(path, range_header)
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "status":
            self._send_plain(fault.status, b"scripted failure\n")
            return
        body = owner.files.get(path)
        if body is None:
            self._send_plain(404, b"not found\n")
            return
        status, start, payload = 200, 0, body
        if range_header and path not in owner.no_range:
            parsed = _parse_range(range_header, len(body))
            if parsed is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = parsed
            status, payload = 206, body[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        if status == 206:
            last = start + len(payload) - 1
            self.send_header("Content-Range", f"bytes {start}-{last}/{len(body)}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if fault is not None and fault.kind == "truncate":
            self.wfile.write(payload[: int(len(payload) * fault.keep_fraction)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def _send_plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=N-`` or ``bytes=N-M`` -> (start, end) inclusive; None when unsatisfiable."""
    unit, _, spec = header.partition("=")
    first, _, last = spec.partition("-")
    if unit.strip() != "bytes" or not first.strip().isdigit():
        return None
    start = int(first)
    end = int(last) if last.strip().isdigit() else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalHTTPServer
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        # the handshake runs here, in the connection's own thread, so a client that
        # refuses the certificate (or stalls) never blocks the accepting loop
        request.settimeout(_Handler.timeout)
        with self.owner._lock:
            self.owner.tls_handshakes += 1
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            with self.owner._lock:
                self.owner.tls_failures += 1
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def shutdown_request(self, request: Any) -> None:
        if isinstance(request, socket.socket) and request.fileno() == -1:
            return  # wrapped for TLS: the SSL socket owned and closed the descriptor
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hung up (timeouts, truncation tests) is expected: stay quiet
        self.owner.errors += 1


class LocalHTTPServer:
    """An in-memory HTTP file server on 127.0.0.1 with scripted faults (see module docstring)."""

    def __init__(
        self,
        files: dict[str, bytes] | None = None,
        max_lifetime_s: float = 60.0,
        tls: tuple[str | Path, str | Path] | None = None,
    ):
        self.files: dict[str, bytes] = dict(files or {})
        self.counts: Counter[str] = Counter()
        self.ranges: dict[str, list[str | None]] = defaultdict(list)
        self.no_range: set[str] = set()
        self.errors = 0
        self.tls_handshakes = 0
        self.tls_failures = 0
        self.max_lifetime_s = max_lifetime_s
        self.tls = tls
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- content and faults --------------------------------------------------------------
    def add(self, path: str, data: bytes) -> None:
        self.files[path] = data

    def fail(self, path: str, status: int = 500, times: int = 1) -> None:
        self._script(path, Fault("status", status=status), times)

    def truncate(self, path: str, times: int = 1, keep_fraction: float = 0.5) -> None:
        self._script(path, Fault("truncate", keep_fraction=keep_fraction), times)

    def delay(self, path: str, seconds: float, times: int = 1) -> None:
        self._script(path, Fault("delay", seconds=seconds), times)

    def ignore_range(self, path: str) -> None:
        self.no_range.add(path)

    def _script(self, path: str, fault: Fault, times: int) -> None:
        with self._lock:
            self._faults[path].extend([fault] * times)

    def _record(self, path: str, range_header: str | None) -> Fault | None:
        with self._lock:
            self.counts[path] += 1
            self.ranges[path].append(range_header)
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    def url(self, path: str = "") -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> LocalHTTPServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            self._httpd.tls = context
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime_s, self._httpd.shutdown)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = self._timer = None

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
