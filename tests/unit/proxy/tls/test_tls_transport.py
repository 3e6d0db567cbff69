"""The TLS transport of the HTTPS listener (tls/transport.py) and the batch listener under it,
on real loopback sockets, with a client that drives its TLS by hand (ssl.SSLObject over memory
BIOs) so that the tests control fragmentation, close_notify and pacing."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import socket
import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, cast

import pytest
from tls_support import MiniCA, loop_factories

from dockyard.proxy.listener import BatchListener
from dockyard.proxy.tls.accept import TlsAcceptor
from dockyard.proxy.tls.clienthello import ClientHello
from dockyard.proxy.tls.context import TlsSelector, make_server_context

HOST = "own.test"


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def run(loop_factory: LoopFactory, coro: Any) -> Any:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(asyncio.wait_for(coro, 60))


class App(asyncio.Protocol):
    """Records what the transport does to it; replies with `reply(data)` when set."""

    made: ClassVar[list[App]] = []

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.data: list[bytes] = []
        self.events: list[str] = []
        self.reply: Callable[[App, bytes], None] | None = None
        self.lost = asyncio.get_running_loop().create_future()
        App.made.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.data.append(data)
        if self.reply is not None:
            self.reply(self, data)

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return None

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


@contextlib.asynccontextmanager
async def serving(
    selector: TlsSelector, factory: Callable[[], asyncio.BaseProtocol] = App, **timeouts: float
) -> AsyncIterator[tuple[int, asyncio.Task[None]]]:
    App.made = []
    listen = socket.socket()
    listen.bind(("127.0.0.1", 0))
    listen.listen(128)
    acceptor = TlsAcceptor(selector, factory, **timeouts)
    task = asyncio.create_task(acceptor.serve(listen))
    try:
        yield listen.getsockname()[1], task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        listen.close()


async def the_app() -> App:
    """The one App made so far, once the server has the client's Finished (in TLS 1.3 the
    client is done first)."""
    for _ in range(500):
        if App.made:
            break
        await asyncio.sleep(0.01)
    [app] = App.made
    return app


@contextlib.asynccontextmanager
async def connected(
    ca: MiniCA, alpn: tuple[str, ...] = ("h2", "http/1.1")
) -> AsyncIterator[tuple[Client, App]]:
    """A client through its handshake with a served custom certificate, and the server's App;
    the client is closed afterwards and the App sees the connection lost."""
    async with serving(custom_selector(ca)) as (port, _):
        client = Client(ca.client_context(alpn))
        await client.handshake(port)
        app = await the_app()
        try:
            yield client, app
        finally:
            client.close()
            await asyncio.wait_for(app.lost, 5)


def custom_selector(ca: MiniCA) -> TlsSelector:
    selector = TlsSelector()
    selector.configure(certificates={HOST: ca.certified(HOST)})
    return selector


class Client:
    """A TLS client over a plain asyncio stream, its TLS driven by hand."""

    def __init__(self, ctx: ssl.SSLContext, host: str = HOST) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=host)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)

    def hello(self) -> bytes:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.do_handshake()
        return self.outgoing.read()

    async def send_raw(self, data: bytes, *, fragment: int = 0) -> None:
        assert self.writer is not None
        step = fragment or len(data) or 1
        for start in range(0, len(data), step):
            self.writer.write(data[start : start + step])
            await self.writer.drain()
            if fragment:
                await asyncio.sleep(0.02)

    async def handshake(self, port: int, *, fragment: int = 0) -> None:
        await self.connect(port)
        await self.send_raw(self.hello(), fragment=fragment)
        assert self.reader is not None
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            await self.flush()
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.incoming.write(chunk)
        await self.flush()

    async def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await self.send_raw(data)

    async def send(self, *records: bytes) -> None:
        """Each argument is one TLS record; all go out in one TCP write."""
        for record in records:
            self.obj.write(record)
        await self.flush()

    async def read_to_end(self) -> tuple[bytes, str]:
        """Everything the server sends, and how it ended: "close_notify" or "eof" (none)."""
        assert self.reader is not None
        got = bytearray()
        while True:
            try:
                while True:
                    data = self.obj.read(65536)
                    if not data:
                        return bytes(got), "close_notify"
                    got += data
            except ssl.SSLZeroReturnError:  # close_notify, after ours
                return bytes(got), "close_notify"
            except ssl.SSLWantReadError:
                pass
            await self.flush()
            chunk = await self.reader.read(65536)
            if not chunk:
                return bytes(got), "eof"
            self.incoming.write(chunk)

    async def read_some(self, size: int) -> bytes:
        """At least `size` bytes of plaintext."""
        assert self.reader is not None
        got = bytearray()
        while len(got) < size:
            try:
                got += self.obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            chunk = await self.reader.read(65536)
            if not chunk:
                break
            self.incoming.write(chunk)
        return bytes(got)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def echo(app: App, data: bytes) -> None:
    assert app.transport is not None
    app.transport.write(b"echo:" + data)


def answer_and_close(app: App, data: bytes) -> None:
    assert app.transport is not None
    app.transport.write(b"bye")
    app.transport.close()


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_a_hello_in_fragments_then_the_handshake(ca: MiniCA, loop_factory: LoopFactory) -> None:
    async def scenario() -> None:
        async with serving(custom_selector(ca)) as (port, _):
            client = Client(ca.client_context(("http/1.1",)))
            await client.handshake(port, fragment=40)  # the ClientHello in ~15 TCP segments
            app = await the_app()
            app.reply = echo
            await client.send(b"hi")
            assert await client.read_some(7) == b"echo:hi"
            assert client.obj.selected_alpn_protocol() == "http/1.1"
            assert app.transport is not None
            assert app.transport.get_extra_info("ssl_object").server_side
            assert app.transport.get_extra_info("peername")[0] == "127.0.0.1"
            assert app.transport.get_extra_info("cipher")[0] == "TLS_AES_128_GCM_SHA256"
            client.close()
            await asyncio.wait_for(app.lost, 5)

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_close_sends_close_notify_after_what_was_written(
    ca: MiniCA, loop_factory: LoopFactory
) -> None:
    async def scenario() -> tuple[bytes, str, list[str]]:
        async with serving(custom_selector(ca)) as (port, _):
            client = Client(ca.client_context())
            await client.handshake(port)
            app = await the_app()
            app.reply = answer_and_close
            await client.send(b"hi")
            data, end = await client.read_to_end()
            await asyncio.wait_for(app.lost, 5)
            client.close()
            return data, end, app.events

    data, end, events = run(loop_factory, scenario())
    assert (data, end) == (b"bye", "close_notify")
    assert events == ["made", "lost"]


class RecordingTcp:
    """Stands in for a TLS connection's TCP transport: records each write, passes all on."""

    def __init__(self, tcp: Any) -> None:
        self.tcp = tcp
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.tcp.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tcp, name)


def record_tcp(app: App) -> RecordingTcp:
    """Put a RecordingTcp under `app`'s TLS transport (a TlsConnection)."""
    conn: Any = app.transport
    recorder = RecordingTcp(conn.tcp)
    conn.tcp = recorder
    return recorder


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_the_ticket_the_answer_and_close_notify_go_out_in_one_write(
    ca: MiniCA, loop_factory: LoopFactory
) -> None:
    """After the client's Finished the server writes nothing until the app answers; then the
    session ticket, the answer and close_notify leave in one TCP write (one wakeup of the
    client, as Go's servers manage by sending the ticket with their first flight)."""

    async def scenario() -> None:
        async with connected(ca) as (client, app):
            recorder = record_tcp(app)
            assert client.reader is not None
            with pytest.raises(asyncio.TimeoutError):  # the ticket is held
                await asyncio.wait_for(client.reader.read(1), 0.2)
            app.reply = answer_and_close
            await client.send(b"hi")
            data, end = await client.read_to_end()
            assert (data, end) == (b"bye", "close_notify")
            assert len(recorder.writes) == 1
            session = client.obj.session
            assert session is not None and session.has_ticket  # the ticket came in that write

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_writes_of_one_loop_turn_go_out_in_one_tcp_write(
    ca: MiniCA, loop_factory: LoopFactory
) -> None:
    def three_writes(app: App, data: bytes) -> None:
        assert app.transport is not None
        for part in (b"one,", b"two,", b"three"):
            app.transport.write(part)
        # encrypted, not yet written: counted as buffered
        assert app.transport.get_write_buffer_size() > len(b"one,two,three")

    async def scenario() -> None:
        async with connected(ca) as (client, app):
            recorder = record_tcp(app)
            app.reply = three_writes
            await client.send(b"go")
            assert await client.read_some(13) == b"one,two,three"
            assert len(recorder.writes) == 1  # with the ticket held since the handshake
            app.reply = echo
            await client.send(b"again")
            assert await client.read_some(10) == b"echo:again"
            assert len(recorder.writes) == 2

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_a_write_of_64k_or_more_goes_out_at_once(ca: MiniCA, loop_factory: LoopFactory) -> None:
    async def scenario() -> None:
        async with connected(ca) as (client, app):
            recorder = record_tcp(app)
            assert app.transport is not None
            app.transport.write(b"small")
            assert recorder.writes == []  # until the end of the loop turn
            app.transport.write(b"x" * 65536)
            assert len(recorder.writes) == 1  # now, with what was held before it
            assert await client.read_some(5 + 65536) == b"small" + b"x" * 65536

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_ssl_object_is_an_sslobject_of_the_connection(
    ca: MiniCA, loop_factory: LoopFactory
) -> None:
    async def scenario() -> None:
        async with connected(ca, ("h2", "http/1.1")) as (client, app):
            assert app.transport is not None
            obj = app.transport.get_extra_info("ssl_object")
            assert isinstance(obj, ssl.SSLObject)
            assert obj.server_side
            assert obj.version() == "TLSv1.3"
            assert obj.selected_alpn_protocol() == "h2"
            assert obj.cipher() == client.obj.cipher()

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_the_client_s_close_notify_is_an_eof_for_the_app(
    ca: MiniCA, loop_factory: LoopFactory
) -> None:
    async def scenario() -> tuple[str, list[str]]:
        async with serving(custom_selector(ca)) as (port, _):
            client = Client(ca.client_context())
            await client.handshake(port)
            app = await the_app()
            with contextlib.suppress(ssl.SSLWantReadError):
                client.obj.unwrap()  # send close_notify
            await client.flush()
            _, end = await client.read_to_end()
            await asyncio.wait_for(app.lost, 5)
            client.close()
            return end, app.events

    end, events = run(loop_factory, scenario())
    # The app did not ask to stay open (eof_received returned None): the transport answers
    # with its own close_notify and closes.
    assert events == ["made", "eof", "lost"]
    assert end == "close_notify"


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_records_that_come_while_paused_wait_for_resume(
    ca: MiniCA, loop_factory: LoopFactory
) -> None:
    async def scenario() -> None:
        async with serving(custom_selector(ca)) as (port, _):
            client = Client(ca.client_context())
            await client.handshake(port)
            app = await the_app()
            assert app.transport is not None

            def pause_at_first(app: App, data: bytes) -> None:
                assert app.transport is not None
                if len(app.data) == 1:
                    app.transport.pause_reading()

            app.reply = pause_at_first
            await client.send(b"one", b"two", b"three")  # three records, one segment
            await asyncio.sleep(0.2)
            assert app.data == [b"one"]
            assert not app.transport.is_reading()
            await client.send(b"four")  # arrives while paused, too
            await asyncio.sleep(0.1)
            assert app.data == [b"one"]
            app.transport.resume_reading()
            for _ in range(100):
                if len(app.data) == 4:
                    break
                await asyncio.sleep(0.01)
            assert app.data == [b"one", b"two", b"three", b"four"]
            client.close()

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_a_large_write_to_a_slow_reader_pauses_the_app(
    ca: MiniCA, loop_factory: LoopFactory
) -> None:
    body = bytes(range(256)) * (4 * 4096)  # 4 MiB

    async def scenario() -> tuple[str, list[str]]:
        async with serving(custom_selector(ca)) as (port, _):
            client = Client(ca.client_context())
            await client.handshake(port)
            app = await the_app()
            assert app.transport is not None
            app.transport.write(body)
            assert "pause_writing" in app.events  # the TCP transport's buffer is over its limit
            await asyncio.sleep(0.3)  # the client reads nothing yet
            got = await client.read_some(len(body))
            for _ in range(100):
                if "resume_writing" in app.events:
                    break
                await asyncio.sleep(0.01)
            client.close()
            return hashlib.sha256(got).hexdigest(), app.events

    digest, events = run(loop_factory, scenario())
    assert digest == hashlib.sha256(body).hexdigest()
    assert events[:3] == ["made", "pause_writing", "resume_writing"]


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_a_client_that_stops_after_its_hello_is_dropped(
    ca: MiniCA, loop_factory: LoopFactory
) -> None:
    async def scenario() -> bytes:
        async with serving(custom_selector(ca), handshake_timeout=0.3) as (port, _):
            client = Client(ca.client_context())
            await client.connect(port)
            await client.send_raw(client.hello())
            assert client.reader is not None
            received = b""
            while chunk := await asyncio.wait_for(client.reader.read(65536), 10):
                received += chunk  # the server's flight, then nothing: dropped
            client.close()
            assert App.made == []
            return received

    assert run(loop_factory, scenario())  # it did answer the hello before giving up


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_a_failed_handshake_closes_and_makes_no_app(ca: MiniCA, loop_factory: LoopFactory) -> None:
    old = ca.client_context()
    with warnings.catch_warnings():  # the point: a protocol version we refuse
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):
        old.set_ciphers("DEFAULT:@SECLEVEL=0")

    async def scenario() -> None:
        async with serving(custom_selector(ca)) as (port, _):
            client = Client(old)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await client.handshake(port)
            client.close()
            assert App.made == []

    run(loop_factory, scenario())


class WaitingSelector(TlsSelector):
    """Has no certificate at once for any host; `prepare` hands out `ctx` once `ready`."""

    def __init__(self, ctx: ssl.SSLContext | None) -> None:
        super().__init__()
        self.ctx = ctx
        self.ready = asyncio.Event()
        self.asked: list[ClientHello] = []

    def choose(self, hello: ClientHello) -> tuple[bool, ssl.SSLContext | None]:
        return False, None

    async def prepare(self, hello: ClientHello) -> ssl.SSLContext | None:
        self.asked.append(hello)
        await self.ready.wait()
        return self.ctx


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_the_handshake_waits_for_the_certificate(ca: MiniCA, loop_factory: LoopFactory) -> None:
    async def scenario() -> None:
        selector = WaitingSelector(make_server_context(ca.certified(HOST)))
        # a short hello timeout: waiting for a certificate is not waiting for a hello
        async with serving(selector, hello_timeout=0.2) as (port, _):
            client = Client(ca.client_context())
            handshake = asyncio.create_task(client.handshake(port))
            await asyncio.sleep(0.5)
            assert not handshake.done()
            assert [h.sni for h in selector.asked] == [HOST]
            selector.ready.set()
            await asyncio.wait_for(handshake, 10)
            app = await the_app()
            app.reply = echo
            await client.send(b"late")
            assert await client.read_some(9) == b"echo:late"
            client.close()

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_no_certificate_after_waiting_closes(ca: MiniCA, loop_factory: LoopFactory) -> None:
    async def scenario() -> None:
        selector = WaitingSelector(None)
        selector.ready.set()
        async with serving(selector) as (port, _):
            client = Client(ca.client_context())
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await client.handshake(port)
            client.close()
            assert App.made == []

    run(loop_factory, scenario())


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_stopping_the_listener_drops_connections_still_in_their_hello(
    ca: MiniCA, loop_factory: LoopFactory
) -> None:
    async def scenario() -> bytes:
        async with serving(custom_selector(ca), hello_timeout=3600) as (port, task):
            client = Client(ca.client_context())
            await client.connect(port)
            await client.send_raw(client.hello()[:20])  # a hello that never completes
            await asyncio.sleep(0.1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert client.reader is not None
            try:
                data = await asyncio.wait_for(client.reader.read(), 10)
            except ConnectionResetError:
                data = b""
            client.close()
            return data

    assert run(loop_factory, scenario()) == b""


class Counted(asyncio.Protocol):
    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Counted.made += 1
        transport.close()


class BurstCountingSocket(socket.socket):
    """A listening socket that counts its bursts of accepts: accepts made without the event
    loop turning in between (one readiness callback) count as one burst."""

    bursts = 0
    accepted = 0
    _in_burst = False

    def _accept(self) -> tuple[int, Any]:
        cls = BurstCountingSocket
        if not cls._in_burst:
            cls.bursts += 1
            cls._in_burst = True
            asyncio.get_running_loop().call_soon(setattr, cls, "_in_burst", False)
        result = super()._accept()  # type: ignore[misc]
        cls.accepted += 1
        return cast(tuple[int, Any], result)


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_a_burst_of_connections_is_accepted_in_batches(loop_factory: LoopFactory) -> None:
    async def scenario() -> tuple[int, int]:
        Counted.made = 0
        BurstCountingSocket.bursts = BurstCountingSocket.accepted = 0
        listen = BurstCountingSocket()
        listen.bind(("127.0.0.1", 0))
        listen.listen(256)
        port = listen.getsockname()[1]
        # 100 connections wait in the backlog before the listener starts
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        listener = BatchListener(asyncio.get_running_loop(), listen, Counted, batch=64)
        listener.start()
        try:
            for _ in range(500):
                if Counted.made == 100:
                    break
                await asyncio.sleep(0.01)
        finally:
            listener.close()
            listen.close()
            for c in clients:
                c.close()
        return Counted.made, BurstCountingSocket.bursts

    made, bursts = run(loop_factory, scenario())
    assert made == 100
    assert bursts == 2  # 64, then 36 and the empty backlog; libuv accepts one per loop turn


class FlakyListenSocket(socket.socket):
    """A listening socket whose first accepts fail as if out of file descriptors."""

    failures = 0
    attempts = 0

    def _accept(self) -> tuple[int, Any]:
        FlakyListenSocket.attempts += 1
        if FlakyListenSocket.failures > 0:
            FlakyListenSocket.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super()._accept()  # type: ignore[misc]


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_accept_errors_pause_accepting_instead_of_spinning(
    loop_factory: LoopFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[int, int]:
        Counted.made = 0
        FlakyListenSocket.failures, FlakyListenSocket.attempts = 2, 0
        listen = FlakyListenSocket()
        listen.bind(("127.0.0.1", 0))
        listen.listen(16)
        client = socket.create_connection(("127.0.0.1", listen.getsockname()[1]))
        listener = BatchListener(asyncio.get_running_loop(), listen, Counted)
        listener.start()
        try:
            await asyncio.sleep(0.05)
            attempts_while_failing = FlakyListenSocket.attempts
            for _ in range(300):
                if Counted.made:
                    break
                await asyncio.sleep(0.01)
        finally:
            listener.close()
            listen.close()
            client.close()
        return attempts_while_failing, Counted.made

    with caplog.at_level(logging.ERROR, logger="dockyard.proxy"):
        attempts, made = run(loop_factory, scenario())
    assert attempts == 1  # one failure, then a pause: no busy loop on a readable socket
    assert made == 1  # served once accepting works again
    assert sum("Too many open files" in r.getMessage() for r in caplog.records) == 2
