"""The asyncio glue for an HTTPS listener with on-demand certificates.

Python's ``sni_callback`` runs inside OpenSSL and cannot await, so a certificate that does not
exist yet cannot be fetched from it. Instead, for each accepted socket:

1. :func:`peek_client_hello` reads the ClientHello with ``MSG_PEEK``: the bytes stay in the
   kernel buffer, nothing is consumed;
2. :meth:`TlsSelector.prepare` picks the context, awaiting ``CertManager.ensure(host)`` when
   the host has no certificate yet (a TLS-ALPN-01 validator gets the challenge context);
3. ``loop.connect_accepted_socket(factory, sock, ssl=ctx)`` runs the real handshake from the
   start with that context (natively in uvloop), then hands the decrypted stream to the
   protocol for the ALPN protocol negotiated: ``h2`` gets the HTTP/2 protocol, anything else
   (``http/1.1``, no ALPN) the ordinary HTTP/1.1 one.

:class:`TlsAcceptor` does the three steps; ``serve(listen_sock)`` is a complete accept loop.

ALPN dispatch: the protocol made for the handshake is a small :class:`AlpnSwitch`; once the
handshake is done its ``connection_made`` looks at ``selected_alpn_protocol()``, builds the
protocol for it and hands it the transport (``transport.set_protocol``, asyncio and uvloop
alike). When the acceptor is given the data plane's ``ConnectionFactory`` and no explicit
``alpn_factories``, ``h2`` is served by :mod:`dockyard.proxy.dataplane.h2conn` on the same plane
(the one place this package reaches into the data plane; imported on the first h2 connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import select
import socket
from collections.abc import Callable, Mapping
from typing import Final

from dockyard.proxy.tls.clienthello import (
    MAX_CLIENT_HELLO,
    NEED_MORE,
    ClientHello,
    NeedMore,
    parse_client_hello,
)
from dockyard.proxy.tls.context import TlsSelector

__all__ = ["PLAIN_HTTP_RESPONSE", "AlpnSwitch", "LazyH2", "TlsAcceptor", "peek_client_hello"]

log = logging.getLogger("dockyard.proxy.tls")

_PEEK_LIMIT: Final = MAX_CLIENT_HELLO + 5 * 8  # the message plus a few record headers
_RETRY_DELAY: Final = 0.005
_ACCEPT_BATCH: Final = 64  # sockets taken from the backlog per wake-up of the accept loop


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    waiter: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not waiter.done():
            waiter.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await waiter
    finally:
        loop.remove_reader(sock.fileno())


def _peer_shut_down(sock: socket.socket) -> bool:
    """Whether the peer closed its sending side (Linux POLLRDHUP; elsewhere: unknown, False)."""
    rdhup = getattr(select, "POLLRDHUP", 0)
    if not rdhup:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), rdhup)
    return any(events & rdhup for _, events in poller.poll(0))


def _peek(sock: socket.socket) -> tuple[ClientHello | NeedMore | None, int]:
    """One look at what the peer sent so far: the parse and how many bytes it saw (-1: none yet,
    the socket would block). ``None`` for something that is not a ClientHello, or a closed or
    failed socket."""
    try:
        data = sock.recv(_PEEK_LIMIT, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return NEED_MORE, -1
    except OSError:
        return None, 0
    if not data:
        return None, 0
    return parse_client_hello(data), len(data)


async def peek_client_hello(sock: socket.socket, *, timeout: float = 10.0) -> ClientHello | None:
    """Peek at ``sock`` (non-blocking, freshly accepted) until a whole ClientHello is there.

    Returns ``None`` when the peer sends something that is not a ClientHello, closes, or does
    not complete it within ``timeout`` seconds. Nothing is consumed from the socket.
    """
    # Peek first: a client sends its ClientHello right after connecting, so it is usually
    # there already when the socket is accepted; that common case needs no reader on the fd,
    # no timer and no further loop round.
    result, size = _peek(sock)
    if result is not NEED_MORE:
        return result
    loop = asyncio.get_running_loop()
    seen = -1
    try:
        async with asyncio.timeout(timeout):
            while True:
                if size < 0:
                    await _readable(loop, sock)
                else:
                    if size == seen:
                        # The socket stays readable while unread bytes wait (level-triggered):
                        # give the rest of the ClientHello time to arrive, unless the peer has
                        # already closed its side (a peek never sees that EOF).
                        if _peer_shut_down(sock):
                            return None
                        await asyncio.sleep(_RETRY_DELAY)
                    seen = size
                result, size = _peek(sock)
                if result is not NEED_MORE:
                    return result
    except TimeoutError:
        return None


#: What Go's net/http (so kamal-proxy) answers to plain HTTP sent to its HTTPS port.
PLAIN_HTTP_RESPONSE: Final = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
_HTTP_METHOD: Final = re.compile(rb"[A-Z]{3,10} /")


def _answer_plain_http(sock: socket.socket) -> None:
    """Best effort: tell a plain-HTTP client that it spoke to the HTTPS port."""
    try:
        start = sock.recv(16, socket.MSG_PEEK)
        if _HTTP_METHOD.match(start):
            sock.send(PLAIN_HTTP_RESPONSE)
            # Read what is buffered, so that close() sends a FIN, not a RST that could
            # destroy the response before the client reads it.
            sock.recv(65536)
            sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class LazyH2:
    """The HTTP/2 protocol factory for a data plane ConnectionFactory, built on the first
    connection that negotiates ``h2`` (``h2``/``hpack``/``hyperframe`` and the HTTP/2 module,
    about 1 MiB, stay unloaded for listeners that never see one)."""

    __slots__ = ("_factory", "_h2")

    def __init__(self, factory: object) -> None:
        self._factory = factory
        self._h2: ProtocolFactory | None = None

    @property
    def h2(self) -> ProtocolFactory:
        if self._h2 is None:
            from dockyard.proxy.dataplane.h2conn import h2_factory_for

            made = h2_factory_for(self._factory)
            assert made is not None  # checked by default_alpn_factories
            self._h2 = made
        return self._h2

    def __call__(self) -> asyncio.BaseProtocol:
        return self.h2()


def default_alpn_factories(protocol_factory: object) -> dict[str, ProtocolFactory]:
    """``{"h2": ...}`` when `protocol_factory` is the data plane's ConnectionFactory (HTTP/2
    served on the same plane, see :class:`LazyH2`), else nothing."""
    from dockyard.proxy.dataplane.server import ConnectionFactory

    if isinstance(protocol_factory, ConnectionFactory):
        return {"h2": LazyH2(protocol_factory)}
    return {}


class AlpnSwitch(asyncio.Protocol):
    """The protocol of a TLS connection until its handshake is done: then it hands the
    transport to the protocol for the negotiated ALPN protocol (`default` when none matches)
    and steps aside."""

    __slots__ = ("_by_alpn", "_default", "chosen")

    def __init__(self, default: ProtocolFactory, by_alpn: Mapping[str, ProtocolFactory]) -> None:
        self._default = default
        self._by_alpn = by_alpn
        self.chosen: asyncio.BaseProtocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        factory = self._by_alpn.get(alpn, self._default) if alpn else self._default
        protocol = self.chosen = factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)

    # Only reached if a transport ignored set_protocol: forward to the chosen protocol.

    def data_received(self, data: bytes) -> None:
        if isinstance(self.chosen, asyncio.Protocol):
            self.chosen.data_received(data)

    def eof_received(self) -> bool | None:
        if isinstance(self.chosen, asyncio.Protocol):
            return self.chosen.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.chosen is not None:
            self.chosen.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.chosen is not None:
            self.chosen.pause_writing()

    def resume_writing(self) -> None:
        if self.chosen is not None:
            self.chosen.resume_writing()


class TlsAcceptor:
    """Accepts TLS connections, choosing the certificate after peeking at the ClientHello.

    `protocol_factory` serves HTTP/1.1 (and connections without ALPN); `alpn_factories` maps
    other negotiated ALPN protocols to their factories (None: :func:`default_alpn_factories`).
    """

    def __init__(
        self,
        selector: TlsSelector,
        protocol_factory: ProtocolFactory,
        *,
        alpn_factories: Mapping[str, ProtocolFactory] | None = None,
        hello_timeout: float = 10.0,
        handshake_timeout: float = 60.0,
    ) -> None:
        self.selector = selector
        self.protocol_factory = protocol_factory
        if alpn_factories is None:
            alpn_factories = default_alpn_factories(protocol_factory)
        self.alpn_factories = dict(alpn_factories)
        self.hello_timeout = hello_timeout
        self.handshake_timeout = handshake_timeout
        self._tasks: set[asyncio.Task[None]] = set()

    def _connection_protocol(self) -> asyncio.BaseProtocol:
        return AlpnSwitch(self.protocol_factory, self.alpn_factories)

    async def handle(self, sock: socket.socket) -> bool:
        """Serve one accepted socket; ``False`` when it was refused (and closed)."""
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            hello = await peek_client_hello(sock, timeout=self.hello_timeout)
            if hello is None:
                _answer_plain_http(sock)
                sock.close()
                return False
            ctx = await self.selector.prepare(hello)
            if ctx is None:
                sock.close()
                return False
            await loop.connect_accepted_socket(
                self._connection_protocol if self.alpn_factories else self.protocol_factory,
                sock,
                ssl=ctx,
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            log.debug("TLS connection refused: %s", exc)
            sock.close()
            return False
        except BaseException:
            sock.close()
            raise
        return True

    async def serve(self, listen_sock: socket.socket) -> None:
        """Accept forever (until cancelled); each connection is handled in its own task."""
        listen_sock.setblocking(False)
        loop = asyncio.get_running_loop()
        # The backlog is taken with the C-level accept and a socket object built from these
        # numbers: `socket.accept()` would convert family and type to enums per connection.
        family, kind, proto = int(listen_sock.family), int(listen_sock.type), listen_sock.proto
        try:
            while True:
                try:
                    sock, _ = await loop.sock_accept(listen_sock)
                except (ConnectionAbortedError, InterruptedError):
                    continue
                except OSError as exc:  # EMFILE, ENFILE, ENOBUFS...: wait, then go on
                    if listen_sock.fileno() == -1:
                        raise
                    log.error("accept failed on the TLS listener: %s", exc)
                    await asyncio.sleep(0.1)
                    continue
                self._start(loop, sock)
                # Take the rest of the backlog now, without a readiness wait per socket.
                for _ in range(_ACCEPT_BATCH):
                    try:
                        fd, _ = listen_sock._accept()  # type: ignore[attr-defined]
                    except OSError:  # EAGAIN: the backlog is empty (errors: the await above)
                        break
                    self._start(loop, socket.socket(family, kind, proto, fd))
        finally:
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        task = loop.create_task(self._handle_quietly(sock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_quietly(self, sock: socket.socket) -> None:
        try:
            await self.handle(sock)
        except Exception:
            log.exception("TLS accept failed")
