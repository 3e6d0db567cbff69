"""The client-facing asyncio Protocol, the per-request exchange, and `serve_http`.

Hot path (keep-alive request to a running service, pooled upstream connection): no task, no
coroutine. `data_received` feeds the sans-I/O reader; its callbacks route the request, pick a
target, take an idle upstream connection and write the rewritten head in one `write`. The
upstream's `data_received` relays the response: head and body bytes of one upstream read go to
the client in one `write`. Back-pressure is cross-wired: a paused upstream write side pauses
reading from the client and a paused client write side pauses reading from the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import ssl as _ssl
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_to_bytes

from dockyard.proxy.contract import ServiceOptions
from dockyard.proxy.dataplane.accesslog import format_time
from dockyard.proxy.dataplane.accesslog import json_escape as json_str
from dockyard.proxy.dataplane.buffer import BufferTooLarge, SpillBuffer
from dockyard.proxy.dataplane.errorpages import ErrorPages
from dockyard.proxy.dataplane.upstream import UpstreamConnection, UpstreamPool
from dockyard.proxy.deadlines import Deadlines
from dockyard.proxy.http.forward import (
    DateCache,
    build_request_head,
    build_response_head,
    build_simple_response,
    rewrite_set_cookies,
    split_host_port,
    status_line,
    strip_prefix,
    writer_affinity,
)
from dockyard.proxy.http.parser import HttpError, RequestHead, RequestReader, ResponseHead
from dockyard.proxy.listener import BatchListener

if TYPE_CHECKING:
    from dockyard.proxy.contract import (
        RequestHandle,
        RequestMetrics,
        Router,
        Service,
        Target,
    )

log = logging.getLogger("dockyard.proxy")

_DEFAULT_OPTIONS: Final = ServiceOptions()

HTML: Final = b"text/html; charset=utf-8"
TEXT: Final = b"text/plain; charset=utf-8"
NOSNIFF: Final = b"X-Content-Type-Options: nosniff\r\n"
#: Pause reading from a client when this much request body waits for an upstream connection.
PENDING_LIMIT: Final = 64 * 1024

GC_GEN0_THRESHOLD: Final = 20_000
#: Access-log segments kept per listener (by the values they hold), for new connections.
LOG_SEGMENTS_KEPT: Final = 1024
#: Resolution of target timeouts.
TICK: Final = 0.05
#: Seconds a listener stays without clients before its `on_idle` runs (the heap's free pages
#: go back to the system after a burst; under steady traffic it never runs).
IDLE_DELAY: Final = 2.0

# Reasons to pause reading from a client (bit mask).
P_PIPELINE: Final = 1
P_PENDING: Final = 4


_ESCAPED: dict[bytes | str, str] = {b"": '""', "": '""'}


def _esc_bytes(value: bytes) -> str:
    """JSON string literal of header bytes (UTF-8, invalid bytes replaced), memoised for the
    small set of values that repeat (hosts, content types, agents)."""
    cached = _ESCAPED.get(value)
    if cached is None:
        cached = json_str(value.decode("utf-8", "replace"))
        if len(value) <= 128 and len(_ESCAPED) < 4096:
            _ESCAPED[value] = cached
    return cached


def _esc_str(value: str) -> str:
    cached = _ESCAPED.get(value)
    if cached is None:
        cached = json_str(value)
        if len(value) <= 128 and len(_ESCAPED) < 4096:
            _ESCAPED[value] = cached
    return cached


_EMPTY_JSON: Final = '""'
#: Each target's upstream pool key (its address); targets are few and long-lived.
_POOL_KEYS: dict[Target, tuple[str, int]] = {}
_TARGET_BYTES: dict[str, bytes] = {}


def _target_bytes(name: str) -> bytes:
    """A target's name as bytes for X-Kamal-Target (memoised; targets are few)."""
    raw = _TARGET_BYTES.get(name)
    if raw is None:
        raw = name.encode()
        if len(_TARGET_BYTES) < 4096:
            _TARGET_BYTES[name] = raw
    return raw


def event(level: int, msg: str, **attrs: object) -> None:
    """An operational log line with kamal-proxy's message and attribute names. The attributes
    travel as the `dockyard_attrs` record attribute, which `dockyard-proxy run`'s JSON formatter
    turns into slog-style keys."""
    if log.isEnabledFor(level):
        log.log(level, msg, extra={"dockyard_attrs": attrs})


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY on a transport's socket (plain asyncio does not always set it)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


#: Request ids are made in batches: per request that is a list pop instead of ~5 us of
#: random bits and string slicing.
_ID_BATCH: Final = 256
#: Where the 32 hex digits of a UUID go in its 36-character text form.
_ID_DIGITS: Final = tuple(i for i in range(36) if i not in (8, 13, 18, 23))
_ID_TEMPLATE: Final = (b"-" * 36 + b"\n") * _ID_BATCH
#: The variant digit (RFC 9562 "10xx"): any random hex digit mapped onto 8, 9, a, b.
_ID_VARIANT: Final = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")
_ids: list[bytes] = []


def _more_request_ids() -> None:
    count = _ID_BATCH
    digits = os.urandom(16 * count).hex().encode()  # 32 random hex digits per id
    out = bytearray(_ID_TEMPLATE)
    for digit, offset in enumerate(_ID_DIGITS):  # one strided copy per digit position
        out[offset::37] = digits[digit::32]
    out[14::37] = b"4" * count  # version 4
    out[19::37] = digits[16::32].translate(_ID_VARIANT)
    ids = bytes(out).split(b"\n")
    ids.pop()
    _ids.extend(ids)


def new_request_id() -> bytes:
    """A random (version 4) UUID in its canonical text form."""
    try:
        return _ids.pop()
    except IndexError:
        _more_request_ids()
        return _ids.pop()


#: Where ACME HTTP-01 challenge answers live (RFC 8555, section 8.3).
ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"


class Plane:
    """State shared by every connection of one listener."""

    __slots__ = (
        "access_log",
        "acme_http01",
        "clients",
        "date",
        "draining",
        "idle_check",
        "idle_delay",
        "log_port",
        "log_segments",
        "loop",
        "metrics",
        "on_idle",
        "pages",
        "pool",
        "router",
        "scheme",
        "tasks",
        "tls",
        "uvloop",
        "waiting",
    )

    def __init__(
        self,
        router: Router,
        loop: asyncio.AbstractEventLoop,
        *,
        tls: bool,
        log_port: int,
        access_log: Callable[[str], None] | None,
        acme_http01: Callable[[str, str], bytes | None] | None = None,
        metrics: RequestMetrics | None = None,
        on_idle: Callable[[], object] | None = None,
        idle_delay: float = IDLE_DELAY,
    ) -> None:
        self.router = router
        #: Run once the listener has had no client for `idle_delay` seconds; None: nothing.
        self.on_idle = on_idle
        self.idle_delay = idle_delay
        self.idle_check: asyncio.TimerHandle | None = None
        #: Per-request counters for --metrics-port; None: metrics off.
        self.metrics = metrics
        #: Answers ACME HTTP-01 challenges (host, path) before routing; None: no ACME.
        self.acme_http01 = acme_http01
        self.loop = loop
        self.tls = tls
        self.scheme = b"https" if tls else b"http"
        self.log_port = log_port
        self.access_log = access_log
        #: Access-log segments by the values they hold and the client address (write_log).
        self.log_segments: dict[object, tuple[str, str, str, str, str, str]] = {}
        self.pool = UpstreamPool()
        self.date = DateCache()
        self.pages = ErrorPages()
        self.clients: set[ClientConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        self.uvloop = type(loop).__module__.startswith("uvloop")
        #: Exchanges waiting for response headers (the target timeout).
        self.waiting: Deadlines[Exchange] = Deadlines(loop, TICK, Exchange.on_timeout)

    def await_headers(self, ex: Exchange, timeout: float) -> None:
        ex.timed = True
        self.waiting.add(ex, timeout)

    def client_left(self) -> None:
        """The last client connection ended: check again after `idle_delay`."""
        if self.on_idle is not None and self.idle_check is None:
            self.idle_check = self.loop.call_later(self.idle_delay, self.idle)

    def idle(self) -> None:
        self.idle_check = None
        if not self.clients and self.on_idle is not None:
            self.on_idle()

    def spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = self.loop.create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, runs exchanges in order, tunnels upgrades."""

    __slots__ = (
        "host_name",
        "host_raw",
        "log_addr",
        "log_key",
        "log_port",
        "log_segments",
        "paused",
        "peer_ip",
        "peer_port",
        "plane",
        "queue",
        "reader",
        "transport",
        "tunnel",
        "write_paused",
    )

    def __init__(self, plane: Plane) -> None:
        self.plane = plane
        self.transport: asyncio.Transport | None = None
        self.reader = RequestReader(self)
        self.queue: deque[Exchange] = deque()
        self.paused = 0
        self.write_paused = False
        self.tunnel: UpstreamConnection | None = None
        self.peer_ip = b""
        self.peer_port = ""
        self.log_addr = '""'
        self.log_port = '""'
        #: The last request's raw Host header and its name without the port.
        self.host_raw = b""
        self.host_name = ""
        #: Access-log segments preformatted for the last request's repeating fields.
        self.log_key: tuple[object, ...] | None = None
        self.log_segments = ("", "", "", "", "", "")

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.plane.clients.add(self)
        if not self.plane.uvloop:  # uvloop sets TCP_NODELAY on every TCP socket itself
            set_nodelay(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            address = str(peer[0])
            self.peer_ip = address.encode()
            self.peer_port = str(peer[1])
            self.log_addr = _esc_str(address)
            self.log_port = json_str(self.peer_port)

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            if tunnel.transport is not None:
                tunnel.transport.write(data)
            return
        try:
            rest = self.reader.feed(data)
        except HttpError as exc:
            self.protocol_error(exc)
            return
        queue = self.queue
        if rest is not None and queue:
            queue[-1].client_tunnel_data(rest)
        # Exchanges start only after the whole read parsed cleanly, so a request whose framing
        # turns out to be broken later in the same read is never forwarded.
        if queue and not queue[0].started:
            queue[0].start()

    def eof_received(self) -> bool | None:
        # Like Go's server, a client EOF cancels whatever is in flight (logged as 499).
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        plane = self.plane
        plane.clients.discard(self)
        if not plane.clients:
            plane.client_left()
        transport, self.transport = self.transport, None
        del transport
        self.reader.close()
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.tunnel_peer = None
            tunnel.close()
        while self.queue:
            self.queue.popleft().client_gone()

    def pause_writing(self) -> None:
        self.write_paused = True
        tunnel = self.tunnel
        if tunnel is not None:
            if tunnel.transport is not None:
                tunnel.transport.pause_reading()
        elif self.queue:
            up = self.queue[0].upstream
            if up is not None and up.transport is not None and not up.closed:
                up.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        tunnel = self.tunnel
        if tunnel is not None:
            if tunnel.transport is not None:
                tunnel.transport.resume_reading()
        elif self.queue:
            ex = self.queue[0]
            up = ex.upstream
            if up is not None and up.transport is not None and not up.closed:
                up.transport.resume_reading()
            ex.pump_response()

    # RequestHandler (called by the reader) ----------------------------------------------------

    def on_request(self, head: RequestHead) -> None:
        queue = self.queue
        queue.append(Exchange(self, head))
        if len(queue) > 1:
            self.pause(P_PIPELINE)

    def on_request_body(self, data: bytes) -> None:
        self.queue[-1].request_body(data)

    def on_request_end(self) -> None:
        self.queue[-1].request_end()

    # ------------------------------------------------------------------------------------------

    def pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None:
                self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def protocol_error(self, exc: HttpError) -> None:
        """Malformed input: answer with its status (if nothing is in flight) and close."""
        if self.transport is None:
            return
        current = self.queue[0] if self.queue else None
        if current is not None and current.resp_state != 0:
            current.abort()
            self.close()
            return
        if current is not None:
            current.abort()
        status = exc.status
        body = f"{status} {exc.reason}\n".encode()
        self.transport.write(
            build_simple_response(
                status, body, content_type=TEXT, date=self.plane.date.line(), close=True
            )
        )
        self.close()

    def exchange_finished(self, ex: Exchange) -> None:
        queue = self.queue
        if queue and queue[0] is ex:
            queue.popleft()
        if ex.close_after or not ex.head.keep_alive or self.plane.draining:
            self.close()
            return
        if queue:
            nxt = queue[0]
            if len(queue) == 1:
                self.resume(P_PIPELINE)
            if not nxt.started:
                nxt.started = True  # claimed; started on the next loop turn (bounded stack)
                self.plane.loop.call_soon(nxt.start)
        elif self.paused & P_PIPELINE:
            self.resume(P_PIPELINE)

    def tunnel_closed(self) -> None:
        self.tunnel = None
        if self.queue:
            self.queue[0].tunnel_ended()
        self.close()


class Exchange:
    """One request/response through the proxy."""

    __slots__ = (
        "affinity",
        "body_iter",
        "chunked_out",
        "client",
        "close_after",
        "expect_sent",
        "finished",
        "handle",
        "head",
        "opts",
        "out",
        "peer",
        "pending",
        "pending_size",
        "prefix",
        "req_done",
        "request_id",
        "resp_bytes",
        "resp_ctype",
        "resp_head",
        "resp_iter",
        "resp_spill",
        "resp_state",
        "retried",
        "service",
        "spill",
        "start_ns",
        "started",
        "status",
        "target",
        "timed",
        "tunnel_buf",
        "unquoted_path",
        "upstream",
        "upstream_chunked",
        "upstream_ready",
        "upstream_received",
    )

    def __init__(self, client: ClientConnection, head: RequestHead) -> None:
        self.client = client
        self.head = head
        self.start_ns = time.perf_counter_ns()
        # The path with %-escapes decoded, for routing and the access log. `find`, not `in`:
        # bytes.__contains__ first tries the operand as an int and builds (then drops) a
        # TypeError, several times the cost of the search.
        raw_path = head.path
        self.unquoted_path = unquote_to_bytes(raw_path) if raw_path.find(b"%") >= 0 else raw_path
        self.out: list[bytes] = []
        self.request_id = head.request_id or new_request_id()
        self.service: Service | None = None
        self.opts: ServiceOptions = _DEFAULT_OPTIONS
        #: The client address appended to X-Forwarded-For (a gate may trust a header instead).
        self.peer = client.peer_ip
        self.prefix = "/"
        self.target: Target | None = None
        self.handle: RequestHandle | None = None
        self.upstream: UpstreamConnection | None = None
        self.upstream_ready = False
        self.upstream_chunked = False
        self.upstream_received = False
        self.pending: list[bytes] | None = None
        self.pending_size = 0
        self.spill: SpillBuffer | None = None
        self.resp_spill: SpillBuffer | None = None
        self.body_iter: Iterator[bytes] | None = None
        self.resp_iter: Iterator[bytes] | None = None
        self.req_done = False
        self.resp_state = 0  # 0: nothing sent, 1: head sent, 2: complete
        self.resp_head: ResponseHead | None = None
        self.status = 0
        self.resp_bytes = 0
        self.resp_ctype = b""
        self.chunked_out = False
        self.close_after = False
        self.timed = False  # in plane.waiting (target timeout until response headers)
        self.finished = False
        self.retried = False
        self.expect_sent = False
        self.tunnel_buf: list[bytes] | None = None
        self.started = False
        self.affinity = 0.0

    # request side ----------------------------------------------------------------------------

    def start(self) -> None:
        """Route the request and run the per-service gates (redirects, pause/stop)."""
        self.started = True
        if self.finished:
            return
        client = self.client
        head = self.head
        plane = client.plane
        if head.host == client.host_raw:  # keep-alive requests repeat their Host
            host = client.host_name
        else:
            host = client.host_name = split_host_port(head.host)
            client.host_raw = head.host
        path = self.unquoted_path.decode("utf-8", "replace")
        if plane.acme_http01 is not None and path.startswith(ACME_CHALLENGE_PREFIX):
            answer = plane.acme_http01(host, path)
            if answer is not None:
                self.respond_simple(200, answer, b"application/octet-stream")
                return
        match = plane.router.match(host, path)
        if match is None:
            self.respond_error(404)
            return
        service = self.service = match.service
        if plane.metrics is not None:
            plane.metrics.started(service.name)
        self.prefix = match.prefix
        opts = self.opts = service.options
        # Redirects: TLS (plain HTTP to a TLS service) and canonical host, in one hop.
        to_tls = opts.tls and opts.tls_redirect and not plane.tls
        canonical = opts.canonical_host
        if to_tls or (canonical and host != canonical):
            scheme = "https" if (to_tls or plane.tls) else "http"
            target_host = canonical or host
            uri = head.path + (b"?" + head.query if head.query else b"")
            self.respond_redirect(f"{scheme}://{target_host}".encode() + uri)
            return
        if plane.tls and not opts.tls:
            self.respond_error(503)
            return
        state = service.state
        if state != "running":
            if head.method in ("GET", "HEAD") and path == opts.health_check_path:
                self.respond_simple(200, b"", b"")
                return
            if state == "stopped":
                self.respond_error(503, service.stop_message)
                return
            plane.spawn(self._hold(service))
            return
        self.proceed(service, opts)

    async def _hold(self, service: Service) -> None:
        state = await service.wait_until_running()
        if self.finished:
            return
        if state == "running":
            self.opts = service.options
            self.proceed(service, self.opts)
        elif state == "stopped":
            self.respond_error(503, service.stop_message)
        else:
            event(
                logging.WARNING,
                "Rejecting request due to expired pause",
                service=service.name,
                path=self.head.path.decode("latin-1"),
            )
            self.respond_error(504)

    def proceed(self, service: Service, opts: ServiceOptions) -> None:
        head = self.head
        gate = opts.gate
        if gate is not None:
            self.peer = peer = gate.client_ip(head, self.client.peer_ip)
            refusal = gate.check(head, peer)
            if refusal is not None:
                body = self.client.plane.pages.render(
                    refusal.status, opts.error_pages, refusal.message
                )
                self.respond_simple(refusal.status, body, HTML, refusal.headers)
                return
        method = head.method
        read = method == "GET" or method == "HEAD"
        extra = opts.extra
        if read and head.upgrade and not extra.get("read_targets_accept_websockets"):
            read = method != "GET" or head.upgrade.lower() != b"websocket"
        if not read and extra.get("has_readers"):
            timeout = extra.get("writer_affinity_timeout")
            if isinstance(timeout, int | float) and timeout > 0:
                self.affinity = float(timeout)
        cookies = head.cookie.decode("latin-1") if head.cookie is not None else None
        target = service.pick_target(read=read, cookies=cookies)
        if target is None:
            self.respond_error(503)
            return
        self.target = target
        handle = target.begin_request(self.cancel)
        if handle is None:
            self.respond_error(503)
            return
        self.handle = handle
        if opts.buffer_requests and head.has_body:
            limit = opts.max_request_body
            if limit and head.content_length > limit:
                self.respond_too_large()
                return
            spill = SpillBuffer(memory=opts.buffer_memory, maximum=limit)
            try:
                for chunk in self.pending or ():
                    spill.write(chunk)
            except BufferTooLarge:
                spill.close()
                self.respond_too_large()
                return
            self.pending = None
            self.pending_size = 0
            self.client.resume(P_PENDING)
            self.spill = spill
            if not self.req_done:
                if head.expect_continue and not self.expect_sent:
                    self.expect_sent = True
                    self.client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return  # request_end() connects
        self.connect()

    def request_body(self, data: bytes) -> None:
        if self.finished or self.resp_state == 2:
            return
        if self.upstream_ready:
            up = self.upstream
            if up is not None and up.transport is not None:
                if self.upstream_chunked:
                    up.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
                else:
                    up.transport.write(data)
            return
        spill = self.spill
        if spill is not None:
            try:
                spill.write(data)
            except BufferTooLarge:
                self.respond_too_large()
            return
        if self.pending is None:
            self.pending = []
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > PENDING_LIMIT:
            self.client.pause(P_PENDING)

    def request_end(self) -> None:
        self.req_done = True
        if self.finished:
            if self.resp_state == 2:
                self.client.exchange_finished(self)
            return
        if self.upstream_ready:
            up = self.upstream
            if self.upstream_chunked and up is not None and up.transport is not None:
                up.transport.write(b"0\r\n\r\n")
        elif self.spill is not None and self.target is not None:
            self.connect()

    def client_tunnel_data(self, data: bytes) -> None:
        """Bytes after an upgrade request head: for the upstream once it switched protocols."""
        if not data:
            return
        if self.tunnel_buf is None:
            self.tunnel_buf = []
        self.tunnel_buf.append(data)

    # upstream connection ---------------------------------------------------------------------

    def connect(self) -> None:
        target = self.target
        assert target is not None
        plane = self.client.plane
        opts = self.opts
        if opts.target_timeout > 0:
            plane.await_headers(self, opts.target_timeout)
        key = _POOL_KEYS.get(target)
        if key is None:
            if len(_POOL_KEYS) >= 4096:
                _POOL_KEYS.clear()
            key = _POOL_KEYS[target] = (target.host, target.port)
        conn = None if self.retried else plane.pool.get(key)
        if conn is not None:
            self.attach(conn)
        else:
            plane.spawn(self._connect(key))

    async def _connect(self, key: tuple[str, int]) -> None:
        plane = self.client.plane
        try:
            transport, conn = await plane.loop.create_connection(
                lambda: UpstreamConnection(plane.pool, key), key[0], key[1]
            )
            if not plane.uvloop:
                set_nodelay(transport)
        except (TimeoutError, OSError) as exc:
            if not self.finished:
                self.upstream_failed(str(exc) or type(exc).__name__)
            return
        if self.finished:
            plane.pool.put(conn)
            return
        self.attach(conn)

    def attach(self, up: UpstreamConnection) -> None:
        self.upstream = up
        up.exchange = self
        up.reader.handler = self
        up.requests += 1
        head = self.head
        up.reader.head_request = head.method == "HEAD"
        self.upstream_received = False
        target = self.target
        assert target is not None
        opts = self.opts
        spill = self.spill
        if spill is not None:
            framing = b"" if head.content_length >= 0 else b"Content-Length: %d\r\n" % spill.size
        elif head.content_length == -2:  # chunked
            framing = b"Transfer-Encoding: chunked\r\n"
            self.upstream_chunked = True
        else:
            framing = b""
        if head.expect_continue and spill is None and not self.req_done:
            framing += b"Expect: 100-continue\r\n"
        prefix = self.prefix
        if prefix != "/" and opts.strip_path_prefix:
            path = strip_prefix(head.path, prefix)
        else:
            path = head.path
        data = build_request_head(
            head,
            path=path,
            peer_ip=self.peer,
            scheme=self.client.plane.scheme,
            target=_target_bytes(target.name),
            forward_headers=opts.forward_headers,
            request_id=self.request_id,
            body_framing=framing,
        )
        transport = up.transport
        assert transport is not None
        if spill is not None:
            transport.write(data)
            self.upstream_ready = True
            self.body_iter = spill.chunks()
            self.pump()
            return
        pending = self.pending
        if pending:
            if self.upstream_chunked:
                chunks = [b"%x\r\n%s\r\n" % (len(c), c) for c in pending]
                data = b"".join([data, *chunks])
            else:
                data = b"".join([data, *pending])
            self.pending = None
            self.pending_size = 0
            self.client.resume(P_PENDING)
        if self.req_done and self.upstream_chunked:
            data += b"0\r\n\r\n"
        transport.write(data)
        self.upstream_ready = True
        if self.client.write_paused:
            transport.pause_reading()

    def pump(self) -> None:
        """Write a buffered request body to the upstream as its write side allows."""
        body_iter = self.body_iter
        up = self.upstream
        if body_iter is None or up is None or up.transport is None:
            return
        for chunk in body_iter:
            up.transport.write(chunk)
            if up.write_paused:
                return
        self.body_iter = None  # the spill itself stays for a retry on a stale connection

    def pump_response(self) -> None:
        """Write a buffered response body to the client as its write side allows."""
        resp_iter = self.resp_iter
        if resp_iter is None:
            return
        client = self.client
        for chunk in resp_iter:
            client.write(chunk)
            if client.write_paused:
                return
        self.resp_iter = None
        if self.resp_spill is not None:
            self.resp_spill.close()
            self.resp_spill = None
        self.response_complete()

    # response side ---------------------------------------------------------------------------

    def on_response(self, rh: ResponseHead) -> None:
        status = rh.status
        head = self.head
        if status < 200 and status != 101:
            if status != 100 or (head.expect_continue and not self.expect_sent):
                self.expect_sent = self.expect_sent or status == 100
                self.out.append(status_line(status, rh.reason) + rh.block + b"\r\n")
            return
        if self.timed:
            self.timed = False
            self.client.plane.waiting.discard(self)
        if self.affinity:
            rh.lines = writer_affinity(rh.lines, self.affinity, time.time())
        if rh.set_cookie and self.prefix != "/":
            opts = self.opts
            if opts.scope_cookie_paths:
                host = split_host_port(head.host)
                rh.lines = rewrite_set_cookies(rh.lines, self.prefix, host)
        self.resp_head = rh
        self.status = status
        self.resp_ctype = rh.content_type
        if status == 101:
            if not head.upgrade:
                self.upstream_failed("unexpected 101 Switching Protocols")
                return
            self.out.append(
                build_response_head(
                    rh, date=self.client.plane.date.line(), chunked=False, close=False
                )
            )
            self.resp_state = 1
            return
        if self.client.reader.upgraded:
            self.close_after = True  # the client's parser is in tunnel mode; cannot continue
        no_body = head.method == "HEAD" or status == 204 or status == 304
        opts = self.opts
        if (
            opts.buffer_responses
            and not no_body
            and not rh.te
            and not rh.content_type.startswith(b"text/event-stream")
        ):
            limit = opts.max_response_body
            if limit and rh.content_length > limit:
                self.response_too_large()
                return
            self.resp_spill = SpillBuffer(memory=opts.buffer_memory, maximum=limit)
            return
        close = (
            self.close_after
            or not head.keep_alive
            or not self.req_done
            or self.client.plane.draining
        )
        if not no_body and rh.content_length < 0:
            if head.version == "1.1":
                self.chunked_out = True
            else:
                close = True
        self.close_after = close
        self.out.append(
            build_response_head(
                rh,
                date=b"" if rh.has_date else self.client.plane.date.line(),
                chunked=self.chunked_out,
                close=close,
            )
        )
        self.resp_state = 1

    def on_response_body(self, data: bytes) -> None:
        spill = self.resp_spill
        if spill is not None:
            try:
                spill.write(data)
            except BufferTooLarge:
                self.response_too_large()
            return
        if self.resp_state != 1:
            return
        self.resp_bytes += len(data)
        if self.chunked_out:
            self.out.append(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.out.append(data)

    def on_response_end(self) -> None:
        if self.finished:
            return
        up = self.upstream
        self.upstream = None
        if up is not None:
            up.exchange = None
            rh = self.resp_head
            if (
                rh is not None
                and rh.keep_alive
                and self.req_done
                and self.body_iter is None
                and not up.closed
                and not self.client.plane.draining
            ):
                if up.reader.broken:
                    up.reader.close()
                    up.reader = type(up.reader)(up)
                if up.transport is not None and self.client.write_paused:
                    up.transport.resume_reading()
                self.client.plane.pool.put(up)
            else:
                up.close()
        spill = self.resp_spill
        if spill is not None:
            self.send_buffered_response(spill)
            return
        if self.chunked_out:
            self.out.append(b"0\r\n\r\n")
        self.flush()
        self.response_complete()

    def send_buffered_response(self, spill: SpillBuffer) -> None:
        rh = self.resp_head
        assert rh is not None
        self.resp_state = 1
        self.resp_bytes = spill.size
        close = (
            self.close_after
            or not self.head.keep_alive
            or not self.req_done
            or self.client.plane.draining
        )
        self.close_after = close
        extra = b"Content-Length: %d\r\n" % spill.size if rh.content_length < 0 else b""
        self.out.append(
            build_response_head(
                rh, date=self.client.plane.date.line(), chunked=False, close=close, extra=extra
            )
        )
        self.flush()
        self.resp_iter = spill.chunks()
        self.pump_response()

    def flush(self) -> None:
        out = self.out
        if out:
            transport = self.client.transport
            if transport is not None:
                transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def start_tunnel(self, rest: bytes) -> None:
        up = self.upstream
        client = self.client
        if self.status != 101 or up is None:
            self.flush()
            self.upstream_failed("upgrade without 101")
            return
        self.flush()
        up.exchange = None
        self.upstream = None
        if client.transport is None:
            up.close()
            return
        up.tunnel_peer = client
        client.tunnel = up
        if rest:
            client.write(rest)
        buf = self.tunnel_buf
        self.tunnel_buf = None
        if buf and up.transport is not None:
            up.transport.write(b"".join(buf))
        if self.handle is not None:
            self.handle.hijacked()

    def tunnel_ended(self) -> None:
        self.resp_state = 2
        self.finish()

    # endings ---------------------------------------------------------------------------------

    def response_complete(self) -> None:
        self.resp_state = 2
        self.finish()
        if not self.req_done:
            # Answered before the request body arrived: the rest of it cannot be framed away
            # cheaply, so this connection ends here.
            self.close_after = True
        self.client.exchange_finished(self)

    def finish(self) -> None:
        """Release everything and write the access-log line (once)."""
        if self.finished:
            return
        self.finished = True
        if self.timed:
            self.timed = False
            self.client.plane.waiting.discard(self)
        if self.spill is not None:
            self.spill.close()
            self.spill = None
        if self.resp_spill is not None:
            self.resp_spill.close()
            self.resp_spill = None
        handle = self.handle
        if handle is not None:
            self.handle = None
            handle.done()
        plane = self.client.plane
        if plane.metrics is not None and self.started:
            service = self.service
            plane.metrics.finished(
                service.name if service is not None else "",
                self.head.method,
                self.status or 200,
                (time.perf_counter_ns() - self.start_ns) / 1e9,
            )
        if plane.access_log is not None:
            self.write_log()

    def drop_upstream(self) -> None:
        up = self.upstream
        if up is not None:
            self.upstream = None
            up.exchange = None
            up.close()

    def abort(self) -> None:
        """The client connection is being closed under this exchange."""
        if not self.started:
            self.finished = True  # rejected before it was routed: nothing to log or release
            return
        self.drop_upstream()
        if not self.finished:
            if self.resp_state == 0:
                self.status = 400 if self.status == 0 else self.status
            self.finish()

    def client_gone(self) -> None:
        self.drop_upstream()
        if not self.finished and self.resp_state != 2 and (self.resp_state == 0 or not self.status):
            self.status = 499
        self.finish()

    def respond_simple(
        self,
        status: int,
        body: bytes,
        content_type: bytes,
        extra: bytes = b"",
        *,
        close: bool = False,
    ) -> None:
        """Answer from the proxy itself (the exchange then completes)."""
        if self.finished or self.resp_state != 0:
            return
        self.drop_upstream()
        self.body_iter = None
        self.resp_iter = None
        self.pending = None
        if self.pending_size:
            self.pending_size = 0
            self.client.resume(P_PENDING)
        head = self.head
        close = (
            close
            or not self.req_done
            or not head.keep_alive
            or self.client.reader.upgraded
            or self.client.plane.draining
        )
        self.close_after = close
        self.status = status
        self.resp_ctype = content_type
        self.resp_bytes = 0 if head.method == "HEAD" else len(body)
        self.client.write(
            build_simple_response(
                status,
                body,
                content_type=content_type,
                date=self.client.plane.date.line(),
                close=close,
                head_only=head.method == "HEAD",
                extra=extra,
            )
        )
        self.response_complete()

    def respond_error(self, status: int, message: str = "") -> None:
        service = self.service
        directory = service.options.error_pages if service is not None else None
        body = self.client.plane.pages.render(status, directory, message)
        self.respond_simple(status, body, HTML)

    def respond_redirect(self, location: bytes) -> None:
        body = b'<a href="' + location.replace(b'"', b"%22") + b'">Moved Permanently</a>.\n\n'
        self.req_done = self.req_done or not self.head.has_body
        self.respond_simple(301, body, HTML, b"Location: " + location + b"\r\n", close=True)

    def respond_too_large(self) -> None:
        service = self.service
        directory = service.options.error_pages if service is not None else None
        page = self.client.plane.pages.custom(413, directory)
        if page is not None:
            self.respond_simple(413, page, HTML)
        else:
            self.respond_simple(413, b"Request too large\n", TEXT, NOSNIFF)

    def response_too_large(self) -> None:
        event(
            logging.INFO,
            "Response exceeded max response limit",
            path=self.head.path.decode("latin-1"),
        )
        self.drop_upstream()
        if self.resp_spill is not None:
            self.resp_spill.close()
            self.resp_spill = None
        service = self.service
        directory = service.options.error_pages if service is not None else None
        page = self.client.plane.pages.custom(500, directory)
        if page is not None:
            self.respond_simple(500, page, HTML)
        else:
            self.respond_simple(500, b"Internal Server Error\n", TEXT, NOSNIFF)

    def upstream_failed(self, error: str) -> None:
        """The upstream could not be reached or answered garbage."""
        target = self.target.name if self.target is not None else ""
        metrics = self.client.plane.metrics
        if metrics is not None:
            metrics.upstream_error(self.service.name if self.service is not None else "")
        event(
            logging.ERROR,
            "Error while proxying",
            target=target,
            path=self.head.path.decode("latin-1"),
            error=error,
        )
        if self.resp_state == 0:
            self.respond_error(502)
        else:
            self.drop_upstream()
            self.status = self.status or 502
            self.finish()
            self.client.close()

    def upstream_lost(self, up: UpstreamConnection) -> None:
        """The upstream connection closed while this exchange used it."""
        self.upstream = None
        if self.finished:
            return
        if self.resp_state == 0 and self.resp_spill is None:
            retry = (
                up.requests > 1
                and not self.upstream_received
                and not self.retried
                and (not self.head.has_body or self.spill is not None)
            )
            if retry:
                self.retried = True
                self.upstream_ready = False
                self.upstream_chunked = False
                if self.timed:
                    self.timed = False
                    self.client.plane.waiting.discard(self)
                self.connect()
                return
            self.upstream_failed("upstream closed the connection")
            return
        if self.resp_spill is not None:
            self.resp_spill.close()
            self.resp_spill = None
            self.resp_state = 0
            self.upstream_failed("upstream closed the connection")
            return
        # Part of the response already went out: all we can do is close.
        self.flush()
        self.finish()
        self.client.close()

    def on_timeout(self) -> None:
        self.timed = False
        if self.finished or self.resp_state != 0:
            return
        self.drop_upstream()
        if self.resp_spill is not None:
            return
        self.respond_error(504)

    def cancel(self) -> None:
        """Called by the control plane when a drain gives up on this request."""
        if self.finished:
            return
        client = self.client
        tunnel = client.tunnel
        if tunnel is not None and client.queue and client.queue[0] is self:
            client.tunnel = None
            tunnel.tunnel_peer = None
            tunnel.close()
            self.resp_state = 2
            self.finish()
            client.close()
            return
        target = self.target.name if self.target is not None else ""
        event(
            logging.INFO,
            "Request cancelled due to draining",
            target=target,
            path=self.head.path.decode("latin-1"),
        )
        if self.resp_state == 0 and (self.resp_spill is None or self.resp_iter is None):
            self.drop_upstream()
            if self.resp_spill is not None:
                self.resp_spill.close()
                self.resp_spill = None
            self.respond_error(504)
            return
        self.drop_upstream()
        self.finish()
        client.close()

    def write_log(self) -> None:
        """One access-log line, field for field as kamal-proxy (Go slog JSON) writes it.

        The fields that repeat from request to request on a connection (host, service, target,
        method, content types, addresses, agent, protocol) are preformatted into segments and
        reused while they stay the same (and kept per listener for the next connections);
        only time, path, id, status, duration, lengths, query and the client port are formatted
        per request."""
        client = self.client
        plane = client.plane
        access_log = plane.access_log
        assert access_log is not None
        head = self.head
        service = self.service
        target = self.target
        xff = head.xff
        key = (
            head.host,
            service,
            target,
            head.method,
            head.content_type,
            self.resp_ctype,
            head.user_agent,
            head.version,
            # A gate trusting a client-IP header sets `peer`: that address is the remote one.
            (xff[0] if xff else None) if self.peer is client.peer_ip else self.peer,
        )
        if key == client.log_key:
            s1, s2, s3, s4, s5, s6 = client.log_segments
        else:
            # Shared by the plane's connections: a client that opens a connection per request
            # repeats them too.
            known = plane.log_segments
            shared = (key, client.log_addr)
            segments = known.get(shared)
            if segments is None:
                segments = self._log_segments(xff)
                if len(known) >= LOG_SEGMENTS_KEPT:
                    known.clear()
                known[shared] = segments
            s1, s2, s3, s4, s5, s6 = client.log_segments = segments
            client.log_key = key
        clen = head.content_length
        rid = (
            json_str(head.request_id.decode("utf-8", "replace"))
            if head.request_id
            else f'"{self.request_id.decode()}"'  # ours: hex digits and dashes only
        )
        opts = self.opts
        custom = (
            self._custom_log_fields()
            if (opts.log_request_headers or opts.log_response_headers) and target is not None
            else ""
        )
        access_log(
            f'{{"time":"{format_time(time.time_ns())}{s1}'
            f"{_esc_bytes(self.unquoted_path)}"
            f',"request_id":{rid}'
            f',"status":{self.status or 200}{s2}{time.perf_counter_ns() - self.start_ns}{s3}'
            f"{clen if clen >= 0 else (-1 if clen == -2 else 0)}{s4}{self.resp_bytes}{s5}"
            f"{client.log_port}{s6}"
            f"{json_str(head.query.decode('utf-8', 'replace')) if head.query else _EMPTY_JSON}"
            f"{custom}}}\n"
        )

    def _log_segments(self, xff: list[bytes] | None) -> tuple[str, str, str, str, str, str]:
        """The constant stretches of an access-log line between its per-request values (and
        the connection's client port)."""
        client = self.client
        plane = client.plane
        head = self.head
        service = self.service
        target = self.target
        addr = client.log_addr
        if self.peer is not client.peer_ip:  # the address a gate's client-IP header gave
            remote = json_str(self.peer.decode("utf-8", "replace"))
        else:
            remote = json_str(xff[0].decode("utf-8", "replace")) if xff else addr
        return (
            f'","level":"INFO","msg":"Request","host":{_esc_bytes(head.host)},'
            f'"port":{plane.log_port},"path":',
            f',"service":{_esc_str(service.name) if service is not None else _EMPTY_JSON}'
            f',"target":{_esc_str(target.name) if target is not None else _EMPTY_JSON}'
            ',"duration":',
            f',"method":{_esc_str(head.method)},"req_content_length":',
            f',"req_content_type":{_esc_bytes(head.content_type)},"resp_content_length":',
            f',"resp_content_type":{_esc_bytes(self.resp_ctype)},"client_addr":{addr}'
            ',"client_port":',
            f',"remote_addr":{remote}'
            f',"user_agent":{_esc_bytes(head.user_agent)},"proto":"HTTP/{head.version}"'
            f',"scheme":"{"https" if plane.tls else "http"}","query":',
        )

    def _custom_log_fields(self) -> str:
        service = self.service
        assert service is not None
        opts = service.options
        if not opts.log_request_headers and not opts.log_response_headers:
            return ""
        parts = []
        for name in opts.log_request_headers:
            key = "req_" + name.lower().replace("-", "_")
            parts.append(f",{json_str(key)}:{json_str(self._request_header(name))}")
        rh = self.resp_head
        for name in opts.log_response_headers:
            key = "resp_" + name.lower().replace("-", "_")
            value = rh.header(name) if rh is not None else ""
            parts.append(f",{json_str(key)}:{json_str(value)}")
        return "".join(parts)

    def _request_header(self, name: str) -> str:
        head = self.head
        lower = name.lower()
        if lower == "x-request-id":
            return self.request_id.decode("latin-1")
        if lower == "host":
            return head.host.decode("latin-1")
        if lower == "x-forwarded-for":
            return ",".join(v.decode("latin-1") for v in head.xff or ())
        return head.header(name)


class ConnectionFactory:
    """The client Protocol factory of one listener, for callers that make connections
    themselves (e.g. the TLS acceptor, once a connection's handshake is done)."""

    def __init__(self, plane: Plane) -> None:
        self.plane = plane

    def __call__(self) -> ClientConnection:
        return ClientConnection(self.plane)

    @property
    def pool(self) -> UpstreamPool:
        return self.plane.pool

    async def shutdown(self, grace: float = 10.0) -> None:
        """Let in-flight requests finish for up to `grace` seconds, then close everything."""
        plane = self.plane
        plane.draining = True
        deadline = plane.loop.time() + grace
        while True:
            for client in list(plane.clients):
                if not client.queue and client.tunnel is None:
                    client.close()
            if not plane.clients or plane.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for client in list(plane.clients):
            if client.transport is not None:
                client.transport.abort()
        plane.pool.close_all()
        plane.waiting.close()
        if plane.idle_check is not None:
            plane.idle_check.cancel()
            plane.idle_check = None
        for task in list(plane.tasks):
            task.cancel()
        await asyncio.sleep(0)


def connection_factory(
    router: Router,
    *,
    tls: bool,
    log_port: int,
    access_log: Callable[[str], None] | None = None,
    acme_http01: Callable[[str, str], bytes | None] | None = None,
    metrics: RequestMetrics | None = None,
    on_idle: Callable[[], object] | None = None,
    idle_delay: float = IDLE_DELAY,
) -> ConnectionFactory:
    """A client Protocol factory without a listener: `tls=True` marks its connections as HTTPS
    (X-Forwarded-Proto, access-log scheme, no TLS redirect, 503 for services without TLS).
    Must be called with the event loop running."""
    plane = Plane(
        router,
        asyncio.get_running_loop(),
        tls=tls,
        log_port=log_port,
        access_log=access_log,
        acme_http01=acme_http01,
        metrics=metrics,
        on_idle=on_idle,
        idle_delay=idle_delay,
    )
    return ConnectionFactory(plane)


class _Listening:
    """A BatchListener on its socket, with the part of asyncio.Server that ProxyServer uses."""

    def __init__(self, listener: BatchListener, sock: socket.socket) -> None:
        self.listener = listener
        self.sockets = [sock]

    def close(self) -> None:
        """Stop accepting and close the socket (as asyncio.Server.close does)."""
        self.listener.close()
        for sock in self.sockets:
            sock.close()


class ProxyServer:
    """A running listener of the data plane."""

    def __init__(self, server: asyncio.Server | _Listening, factory: ConnectionFactory) -> None:
        self.server = server
        self.factory = factory
        self.plane = factory.plane

    @property
    def port(self) -> int:
        # typeshed says `sockets` is a tuple, uvloop's is a list, and compiled code (mypyc)
        # checks declared types: read it untyped
        server: Any = self.server
        return int(server.sockets[0].getsockname()[1])

    @property
    def pool(self) -> UpstreamPool:
        return self.plane.pool

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish for up to `grace` seconds, close."""
        self.plane.draining = True
        self.server.close()
        await self.factory.shutdown(grace)


async def serve_http(
    router: Router,
    *,
    host: str | None = "0.0.0.0",
    port: int = 80,
    sock: socket.socket | None = None,
    ssl: _ssl.SSLContext | None = None,
    log_port: int | None = None,
    access_log: Callable[[str], None] | None = None,
    backlog: int = 2048,
    reuse_port: bool = False,
    tune_gc: bool = True,
    acme_http01: Callable[[str, str], bytes | None] | None = None,
    metrics: RequestMetrics | None = None,
    on_idle: Callable[[], object] | None = None,
    idle_delay: float = IDLE_DELAY,
) -> ProxyServer:
    """Start serving HTTP/1.1 (or HTTPS when `ssl` is given) and proxying through `router`.

    Returns once the listener is bound. See the package docstring for the arguments.
    `tune_gc` freezes the heap built so far and raises the garbage collector's young
    threshold (process-wide; worth ~7-10% CPU per request).
    """
    loop = asyncio.get_running_loop()
    if tune_gc:
        # Every request allocates short-lived objects; the cyclic collector mostly rescans the
        # long-lived startup heap. Freeze that heap and collect the young generation less often.
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)
    factory = connection_factory(
        router,
        tls=ssl is not None,
        log_port=port if log_port is None else log_port,
        access_log=access_log,
        acme_http01=acme_http01,
        metrics=metrics,
        on_idle=on_idle,
        idle_delay=idle_delay,
    )
    if sock is not None and ssl is None:
        # Accept in batches: libuv's create_server takes one connection per loop turn.
        listener = BatchListener(loop, sock, factory)
        listener.start()
        return ProxyServer(_Listening(listener, sock), factory)
    if sock is not None:
        server = await loop.create_server(factory, sock=sock, ssl=ssl, backlog=backlog)
    else:
        server = await loop.create_server(
            factory, host, port, ssl=ssl, backlog=backlog, reuse_port=reuse_port or None
        )
    return ProxyServer(server, factory)
