"""Test support for HTTP/2: the real HTTPS listener (TlsAcceptor + data plane) on loopback with
custom certificates, and a small HTTP/2 client built on the `h2` library."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from dataplane_support import FakeRouter
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.exceptions import ProtocolError

from dockyard.proxy.dataplane import connection_factory
from dockyard.proxy.dataplane.h2conn import H2Factory
from dockyard.proxy.dataplane.server import ConnectionFactory
from dockyard.proxy.tls.accept import LazyH2, TlsAcceptor
from dockyard.proxy.tls.certs import (
    certified_key_from_pem,
    generate_ec_key,
    private_key_pem,
    self_signed,
)
from dockyard.proxy.tls.context import TlsSelector

HOSTS = ("app.test", "other.test", "plain.test")


def selector_for(hosts: Sequence[str] = HOSTS) -> TlsSelector:
    """A selector serving a self-signed certificate per host (custom certificates)."""
    certificates = {}
    for host in hosts:
        key = generate_ec_key()
        cert = self_signed(host, key)
        certificates[host] = certified_key_from_pem(
            cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key)
        )
    selector = TlsSelector()
    selector.configure(certificates=certificates, default_host=hosts[0])
    return selector


@dataclass
class Proxy:
    port: int
    factory: ConnectionFactory
    lines: list[str]
    acceptor: TlsAcceptor


def h2_factory(proxy: Proxy) -> H2Factory:
    """The listener's HTTP/2 protocol factory (its sessions are the live h2 connections)."""
    lazy = proxy.acceptor.alpn_factories["h2"]
    assert isinstance(lazy, LazyH2)
    made = lazy.h2
    assert isinstance(made, H2Factory)
    return made


@contextlib.asynccontextmanager
async def https_proxy(router: FakeRouter, **kwargs: Any) -> AsyncIterator[Proxy]:
    """The HTTPS listener as `dockyard-proxy run` builds it: TlsAcceptor over the data plane's
    TLS ConnectionFactory (so ALPN h2 goes to the HTTP/2 protocol)."""
    lines: list[str] = []
    factory = connection_factory(router, tls=True, log_port=443, access_log=lines.append, **kwargs)
    acceptor = TlsAcceptor(selector_for(), factory, hello_timeout=5, handshake_timeout=5)
    listen = socket.socket()
    listen.bind(("127.0.0.1", 0))
    listen.listen(64)
    task = asyncio.create_task(acceptor.serve(listen))
    try:
        yield Proxy(listen.getsockname()[1], factory, lines, acceptor)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        listen.close()
        await factory.shutdown(1)


def client_context(alpn: Sequence[str] = ("h2", "http/1.1")) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    return ctx


@dataclass
class H2Response:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    interim: list[int] = field(default_factory=list)
    reset: int | None = None  # RST_STREAM error code
    ended: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class H2Client:
    """An HTTP/2 client over TLS (ALPN h2). `strict=False` turns off h2's own checks of what
    we send, for the malformed-request tests."""

    def __init__(self, *, strict: bool = True) -> None:
        config = H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=strict,
            normalize_outbound_headers=strict,
            validate_inbound_headers=True,
        )
        self.conn = H2Connection(config=config)
        self.responses: dict[int, H2Response] = {}
        self.terminated: int | None = None  # GOAWAY error code from the server
        self.goaway_last_stream: int | None = None
        self.closed = asyncio.Event()
        self.window_changed = asyncio.Event()
        self.alpn: str | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(
        self, port: int, host: str = "app.test", *, rcvbuf: int | None = None
    ) -> H2Client:
        """`rcvbuf`: a small kernel receive buffer, so that not reading shows at once."""
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=client_context(), server_hostname=host
        )
        self._reader, self._writer = reader, writer
        sslobj = writer.get_extra_info("ssl_object")
        self.alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        self.conn.initiate_connection()
        self.flush()
        self._task = asyncio.create_task(self._read())
        return self

    def flush(self) -> None:
        assert self._writer is not None
        data = self.conn.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    def write_raw(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                try:
                    events = self.conn.receive_data(data)
                except ProtocolError:
                    break
                for ev in events:
                    self._event(ev)
                self.flush()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.closed.set()
            for resp in self.responses.values():
                resp.done.set()
            self.window_changed.set()

    def _event(self, ev: object) -> None:
        if isinstance(ev, ResponseReceived):
            resp = self.responses[ev.stream_id or 0]
            for name, value in ev.headers or []:
                n, v = bytes(name).decode(), bytes(value).decode()
                if n == ":status":
                    resp.status = int(v)
                else:
                    resp.headers.append((n, v))
        elif isinstance(ev, InformationalResponseReceived):
            for name, value in ev.headers or []:
                if bytes(name) == b":status":
                    self.responses[ev.stream_id or 0].interim.append(int(bytes(value)))
        elif isinstance(ev, DataReceived):
            resp = self.responses[ev.stream_id or 0]
            resp.body += ev.data or b""
            self.conn.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id or 0)
        elif isinstance(ev, (StreamEnded, TrailersReceived)):
            resp = self.responses[ev.stream_id or 0]
            resp.ended = True
            resp.done.set()
        elif isinstance(ev, StreamReset):
            resp = self.responses[ev.stream_id or 0]
            resp.reset = int(ev.error_code or 0)
            resp.done.set()
        elif isinstance(ev, ConnectionTerminated):
            self.terminated = int(ev.error_code or 0)
            self.goaway_last_stream = ev.last_stream_id
            for sid, resp in self.responses.items():
                if self.goaway_last_stream is None or sid > self.goaway_last_stream:
                    resp.done.set()
        self.window_changed.set()

    def start(
        self,
        path: str = "/echo",
        *,
        method: str = "GET",
        authority: str = "app.test",
        headers: Sequence[tuple[str, str]] = (),
        end_stream: bool = True,
        raw: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        if raw is None:
            raw = [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                *((k.encode(), v.encode()) for k, v in headers),
            ]
        self.responses[sid] = H2Response()
        self.conn.send_headers(sid, raw, end_stream=end_stream)
        self.flush()
        return sid

    async def send_body(self, sid: int, body: bytes, *, end_stream: bool = True) -> None:
        view = memoryview(body)
        while view:
            window = self.conn.local_flow_control_window(sid)
            if window <= 0:
                self.window_changed.clear()
                if self.closed.is_set() or self.responses[sid].done.is_set():
                    return
                await self.window_changed.wait()
                continue
            size = min(window, len(view), self.conn.max_outbound_frame_size)
            self.conn.send_data(sid, bytes(view[:size]))
            view = view[size:]
            self.flush()
            assert self._writer is not None
            await self._writer.drain()
        if end_stream:
            self.conn.end_stream(sid)
            self.flush()

    async def response(self, sid: int, timeout: float = 10.0) -> H2Response:
        resp = self.responses[sid]
        await asyncio.wait_for(resp.done.wait(), timeout)
        return resp

    async def request(
        self, path: str = "/echo", *, body: bytes | None = None, **kwargs: Any
    ) -> H2Response:
        sid = self.start(path, end_stream=body is None, **kwargs)
        if body is not None:
            await self.send_body(sid, body)
        return await self.response(sid)

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(ProtocolError):
                self.conn.close_connection()
                self.flush()
            self._writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@contextlib.asynccontextmanager
async def h2_client(
    port: int, host: str = "app.test", *, strict: bool = True
) -> AsyncIterator[H2Client]:
    client = await H2Client(strict=strict).connect(port, host)
    try:
        yield client
    finally:
        await client.close()
