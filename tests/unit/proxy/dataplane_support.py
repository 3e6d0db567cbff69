"""Test support for the data plane: a real origin on loopback, an in-test control plane
(Router/Service/Target implementing dockyard.proxy.contract), and a raw HTTP client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httptools
import uvloop

from dockyard.proxy.contract import Match, ServiceOptions, ServiceState
from dockyard.proxy.dataplane import ProxyServer, serve_http

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 20.0, *, plain_asyncio: bool = False) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(coro, timeout)

    factory = None if plain_asyncio else uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(guarded())


# --- origin ---------------------------------------------------------------------------------


class OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Origin

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.conn_id = self.server.connections

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, ctype: str = "application/json", **hdrs: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self.do_GET()

    def do_PUT(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        route = url.path
        self.server.requests.append((self.command, self.path))
        if route.endswith("/echo") or route == "/":
            body = self._body()
            info = {
                "method": self.command,
                "path": self.path,
                "headers": list(self.headers.items()),
                "body_len": len(body),
                "body_sha": hashlib.sha256(body).hexdigest(),
                "conn": self.conn_id,
            }
            self._send(200, json.dumps(info).encode(), X_Origin="yes")
        elif route == "/up":
            self._send(200, b"ok", "text/plain")
        elif route == "/status":
            self._send(int(q["c"]), b"origin says " + q["c"].encode(), "text/plain")
        elif route == "/big":
            n = int(q.get("n", "100000"))
            self._send(200, bytes(i % 251 for i in range(n)), "application/octet-stream")
        elif route == "/upload":
            body = self._body()
            info = {"len": len(body), "sha": hashlib.sha256(body).hexdigest()}
            self._send(200, json.dumps(info).encode())
        elif route == "/slow":
            time.sleep(float(q.get("d", "1")))
            self._send(200, b"slow done", "text/plain")
        elif route == "/gated":  # held until the test opens the gate (up to 30 s)
            with self.server.lock:
                self.server.gated += 1
            try:
                opened = self.server.gate.wait(30)
            finally:
                with self.server.lock:
                    self.server.gated -= 1
            self._send(200, b"gate open" if opened else b"gate timed out", "text/plain")
        elif route == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif route == "/nolength":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
        elif route == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"data: first\n\n")
            self.wfile.flush()
            self.server.sse_gate.wait(10)
            self.wfile.write(b"data: second\n\n")
            self.wfile.flush()
            self.close_connection = True
        elif route == "/ws":
            self._body()
            self.send_response(101)
            self.send_header("Upgrade", self.headers.get("Upgrade", "websocket"))
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:  # echo, upper-cased, until the peer closes
                data = self.connection.recv(65536)
                if not data:
                    break
                self.connection.sendall(data.upper())
            self.close_connection = True
        elif route.endswith("/cookie"):
            self._body()
            self.send_response(200)
            self.send_header("Set-Cookie", "a=1; Path=/x")
            self.send_header("Set-Cookie", "b=2; Domain=other.test; Path=/")
            self.send_header("Set-Cookie", "c=3")
            if "optout" in q:
                self.send_header("X-Writer-Affinity", "false")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "/continue":
            # Reads the body only after the client got 100 Continue (sent by handle_expect_100)
            body = self._body()
            self._send(200, json.dumps({"len": len(body)}).encode())
        else:
            self._send(404, b"origin 404", "text/plain")


class Origin(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), OriginHandler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[tuple[str, str]] = []
        self.sse_gate = threading.Event()
        #: `/gated` requests wait for this; `gated` counts those waiting now.
        self.gate = threading.Event()
        self.gated = 0

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        # the proxy closing an upstream connection mid-response (a timeout, a client that went
        # away) is what several tests do on purpose; anything else is still printed
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def origin_server() -> Iterator[Origin]:
    origin = Origin()
    thread = threading.Thread(target=origin.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield origin
    finally:
        origin.sse_gate.set()
        origin.gate.set()
        origin.shutdown()
        origin.server_close()


def free_port() -> int:
    """A loopback port with nothing listening (for 502 tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- in-test control plane ------------------------------------------------------------------


@dataclass
class FakeHandle:
    target: FakeTarget
    cancel: Callable[[], None]
    is_hijacked: bool = False
    is_done: bool = False

    def hijacked(self) -> None:
        self.is_hijacked = True

    def done(self) -> None:
        self.is_done = True
        if self in self.target.inflight:
            self.target.inflight.remove(self)


@dataclass(eq=False)
class FakeTarget:
    host: str
    port: int
    draining: bool = False
    inflight: list[FakeHandle] = field(default_factory=list)
    handles: list[FakeHandle] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def begin_request(self, cancel: Callable[[], None]) -> FakeHandle | None:
        if self.draining:
            return None
        handle = FakeHandle(self, cancel)
        self.inflight.append(handle)
        self.handles.append(handle)
        return handle


@dataclass(eq=False)
class FakeService:
    name: str
    targets: list[FakeTarget]
    options: ServiceOptions = field(default_factory=ServiceOptions)
    state: ServiceState = "running"
    stop_message: str = ""
    max_pause: float = 5.0
    picks: list[tuple[bool, str | None]] = field(default_factory=list)
    _rr: int = 0
    _changed: asyncio.Event | None = None

    def set_state(self, state: ServiceState, message: str = "") -> None:
        self.state = state
        self.stop_message = message
        if self._changed is not None:
            self._changed.set()

    async def wait_until_running(self) -> ServiceState:
        deadline = time.monotonic() + self.max_pause
        while self.state == "paused":
            self._changed = asyncio.Event()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "paused"
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return "paused"
        return self.state

    def pick_target(self, *, read: bool, cookies: str | None) -> FakeTarget | None:
        self.picks.append((read, cookies))
        if not self.targets:
            return None
        self._rr += 1
        return self.targets[self._rr % len(self.targets)]


class FakeRouter:
    """Exact host, then catch-all; longest prefix on segment boundaries (enough for tests)."""

    def __init__(self) -> None:
        self.bindings: list[tuple[str, str, FakeService]] = []

    def add(self, service: FakeService, host: str = "", prefix: str = "/") -> FakeService:
        self.bindings.append((host, prefix, service))
        self.bindings.sort(key=lambda b: -len(b[1]))
        return service

    def match(self, host: str, path: str) -> Match | None:
        hosts = {h for h, _, _ in self.bindings}
        chosen = host if host in hosts else ("" if "" in hosts else None)
        if chosen is None:
            return None
        for h, prefix, service in self.bindings:
            if h != chosen:
                continue
            if prefix == "/" or (path + "/").startswith(prefix.rstrip("/") + "/"):
                return Match(service=service, prefix=prefix)
        return None


# --- raw client -----------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    interim: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class _Collector:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.done = False
        self.heads_done = 0
        self.interim: list[int] = []
        self.parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode(), value.decode()))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        code = self.parser.get_status_code()
        if 100 <= code < 200 and code != 101:
            self.interim.append(code)
            self.headers = []
            return
        self.status = code

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.status:
            self.done = True


async def read_response(
    reader: asyncio.StreamReader, *, head_request: bool = False, until_headers: bool = False
) -> Response:
    c = _Collector()
    parser = httptools.HttpResponseParser(c)
    c.parser = parser
    while not c.done:
        data = await reader.read(65536)
        if not data:
            break
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            break
        if (head_request or until_headers) and c.status:
            break
    return Response(c.status, c.headers, b"".join(c.body), c.interim)


async def request(
    port: int, raw: bytes, *, head_request: bool = False, timeout: float = 10.0
) -> Response:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader, head_request=head_request), timeout)
    finally:
        writer.close()


def get(path: str = "/echo", host: str = "app.test", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


@contextmanager
def noop() -> Iterator[None]:
    yield


async def start_proxy(router: FakeRouter, **kwargs: Any) -> tuple[ProxyServer, list[str]]:
    lines: list[str] = []
    kwargs.setdefault("tune_gc", False)  # keep the test process's collector as it is
    if kwargs.get("ssl") is None and "sock" not in kwargs:
        # as `dockyard-proxy run` does: its own listening socket, accepted in batches
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(2048)
        kwargs["sock"] = sock
    else:
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
    server = await serve_http(router, access_log=lines.append, log_port=80, **kwargs)
    return server, lines


def simple_setup(origin: Origin, **opts: Any) -> tuple[FakeRouter, FakeService, FakeTarget]:
    router = FakeRouter()
    target = FakeTarget("127.0.0.1", origin.port)
    service = router.add(FakeService("app", [target], ServiceOptions(**opts)))
    return router, service, target
