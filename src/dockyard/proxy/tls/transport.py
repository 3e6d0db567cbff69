"""TLS on top of a plain TCP transport, for the HTTPS listener.

The listener accepts plain TCP connections (:class:`~dockyard.proxy.listener.BatchListener`);
the event loop reads and writes them in C, and each connection's protocol is a
:class:`TlsConnection`, which

1. reads the ClientHello as it arrives (:func:`~dockyard.proxy.tls.clienthello.parse_client_hello`,
   fragments included) and asks its :class:`TlsEndpoint` for the ``ssl.SSLContext`` of that
   server name; when the certificate must be issued first, reading pauses while the endpoint's
   ``await_context`` obtains it, and :meth:`TlsConnection.context_ready` resumes;
2. runs the handshake with that context on an ``ssl.SSLObject`` over two ``ssl.MemoryBIO``
   (the ClientHello bytes read in step 1 are its first input: nothing is peeked, nothing is
   read twice);
3. then becomes the *transport* of the protocol chosen by the negotiated ALPN protocol
   (``h2`` or HTTP/1.1): ``write`` encrypts, ``data_received`` decrypts, ``close`` sends
   close_notify, flow control passes through both ways. What is encrypted in one turn of the
   loop leaves in one TCP write at its end (at once from 64 KiB): the session ticket OpenSSL
   issues after the client's Finished, the response and its close_notify reach the client as
   one segment, where they were three (Go's servers send two: they issue the ticket with
   their first flight).

Why not the event loop's own TLS (``create_server(ssl=...)``, ``start_tls``): the context must
be chosen, and possibly a certificate issued, after the ClientHello and before the handshake,
which an ``sni_callback`` cannot await. Doing TLS here also costs less. uvloop's TLS protocol
keeps a handshake timer, a shutdown timer and a waiter future per connection, and waits for the
client's close_notify before closing; here timeouts are :class:`~dockyard.proxy.deadlines.Deadlines`
(one timer per listener, as for the data plane's target timeouts), and ``close`` sends
close_notify and closes at once, as Go's servers do. Measured with wrk on loopback, one request
per connection: a bare responder served 9-33% more requests per second this way than on
uvloop's TLS; the proxy (with :class:`~dockyard.proxy.listener.BatchListener`) 3-22% more,
median 14%, than with uvloop's TLS behind its own accept loop.

Not supported, as with every TLS transport of asyncio: ``write_eof`` (TLS has no half-close),
renegotiation (disabled in the context).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final

from dockyard.proxy.deadlines import Deadlines
from dockyard.proxy.tls.clienthello import NEED_MORE, ClientHello, parse_client_hello

__all__ = ["PLAIN_HTTP_RESPONSE", "TlsConnection", "TlsEndpoint"]

log = logging.getLogger("dockyard.proxy.tls")

#: What Go's net/http (so kamal-proxy) answers to plain HTTP sent to its HTTPS port.
PLAIN_HTTP_RESPONSE: Final = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
_HTTP_METHOD: Final = re.compile(rb"[A-Z]{3,10} /")

#: Plaintext asked of OpenSSL per read: more than one record (16 KiB) holds.
READ_SIZE: Final = 65536
#: Encrypted bytes held for the end of the loop turn before they are written at once.
FLUSH_NOW: Final = 65536

# Connection states, in the order they are passed through.
HELLO: Final = 0  # reading the ClientHello
SELECTING: Final = 1  # waiting for a certificate; reading paused
HANDSHAKE: Final = 2
OPEN: Final = 3  # the application protocol has the connection
CLOSING: Final = 4  # closed or refused by us; waiting for the TCP transport to finish
CLOSED: Final = 5

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class TlsEndpoint:
    """What the connections of one HTTPS listener share: how to choose a context, which
    protocol serves which ALPN protocol, and the deadlines of connections not yet open."""

    __slots__ = (
        "alpn_factories",
        "await_context",
        "choose",
        "default_factory",
        "handshake_timeout",
        "hello_timeout",
        "loop",
        "pending",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        choose: Callable[[ClientHello], tuple[bool, ssl.SSLContext | None]],
        await_context: Callable[[TlsConnection, ClientHello], None],
        default_factory: ProtocolFactory,
        alpn_factories: Mapping[str, ProtocolFactory],
        hello_timeout: float,
        handshake_timeout: float,
    ) -> None:
        """`choose(hello)`: ``(True, context)`` when decided now (``None``: refuse the
        connection), ``(False, None)`` when a certificate must be obtained first; then
        `await_context(connection, hello)` is called, and must end by calling
        ``connection.context_ready(context or None)``."""
        self.loop = loop
        self.choose = choose
        self.await_context = await_context
        self.default_factory = default_factory
        self.alpn_factories = dict(alpn_factories)
        self.hello_timeout = hello_timeout
        self.handshake_timeout = handshake_timeout
        #: Connections before OPEN, dropped at their deadline (TlsConnection.expire).
        tick = max(0.01, min(1.0, hello_timeout / 4, handshake_timeout / 4))
        self.pending: Deadlines[TlsConnection] = Deadlines(loop, tick, TlsConnection.expire)

    def __call__(self) -> TlsConnection:
        """The protocol factory of the listener."""
        return TlsConnection(self)

    def close(self) -> None:
        """Drop every connection not yet open (the listener stops)."""
        for conn in self.pending.close():
            conn.abort()


class TlsConnection(asyncio.Protocol):
    """One HTTPS connection: the protocol of its TCP transport, and the transport of the
    HTTP protocol once the handshake is done (see the module docstring)."""

    __slots__ = (
        "app",
        "endpoint",
        "flushing",
        "hello",
        "incoming",
        "outgoing",
        "reading",
        "sslobj",
        "state",
        "tcp",
    )

    def __init__(self, endpoint: TlsEndpoint) -> None:
        self.endpoint = endpoint
        self.state = HELLO
        self.tcp: asyncio.Transport | None = None
        self.hello = b""
        self.incoming: ssl.MemoryBIO | None = None
        self.outgoing: ssl.MemoryBIO | None = None
        #: The ``_ssl`` object itself, not the ``ssl.SSLObject`` wrapping it (see `context_ready`).
        self.sslobj: Any = None
        self.app: asyncio.Protocol | None = None
        #: Whether the application wants data (pause_reading/resume_reading).
        self.reading = True
        #: Whether a flush of what `write` encrypted is scheduled for the end of the loop turn.
        self.flushing = False

    # Protocol of the TCP transport -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tcp = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.endpoint.pending.add(self, self.endpoint.hello_timeout)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == OPEN:
            incoming = self.incoming
            assert incoming is not None
            incoming.write(data)
            self._read()
        elif state == HANDSHAKE:
            incoming = self.incoming
            assert incoming is not None
            incoming.write(data)
            self._handshake()
        elif state == HELLO:
            self._hello(data)
        elif state == SELECTING:
            self.hello += data  # reading is paused: at most what was already read
        # CLOSING, CLOSED: dropped

    def eof_received(self) -> bool | None:
        app = self.app
        if self.state == OPEN and app is not None:
            # No close_notify came: the application sees a plain end of stream.
            return app.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.endpoint.pending.discard(self)
        app, self.app = self.app, None
        self.tcp = None
        self.hello = b""
        try:
            if app is not None:
                app.connection_lost(exc)
        finally:
            self.sslobj = None
            self.incoming = self.outgoing = None

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # Before OPEN ---------------------------------------------------------------------------------

    def _hello(self, data: bytes) -> None:
        buf = self.hello + data if self.hello else data
        hello = parse_client_hello(buf)
        if hello is NEED_MORE:
            self.hello = buf
            return
        if hello is None:
            self._refuse(buf)
            return
        self.hello = buf
        ready, ctx = self.endpoint.choose(hello)
        if ready:
            self.context_ready(ctx)
            return
        self.state = SELECTING
        # No deadline while a certificate is obtained (the CA's pace); shutdown still drops it.
        self.endpoint.pending.add(self, math.inf)
        tcp = self.tcp
        assert tcp is not None
        tcp.pause_reading()
        self.endpoint.await_context(self, hello)

    def context_ready(self, ctx: ssl.SSLContext | None) -> None:
        """Start the handshake with `ctx`, or refuse the connection (``None``)."""
        state = self.state
        tcp = self.tcp
        if (state != HELLO and state != SELECTING) or tcp is None:
            return  # gone meanwhile
        if ctx is None:
            self.state = CLOSING
            self.endpoint.pending.discard(self)
            tcp.close()
            return
        if state == SELECTING:
            tcp.resume_reading()
        self.state = HANDSHAKE
        self.endpoint.pending.add(self, self.endpoint.handshake_timeout)
        incoming = self.incoming = ssl.MemoryBIO()
        outgoing = self.outgoing = ssl.MemoryBIO()
        # What ssl.SSLContext.wrap_bio wraps: the same C methods without the ssl.SSLObject
        # layer of Python functions in front of each (8 calls per connection). The wrapper
        # is made only if the application asks for it (get_extra_info("ssl_object")).
        self.sslobj = ctx._wrap_bio(incoming, outgoing, server_side=True)  # type: ignore[attr-defined]
        incoming.write(self.hello)
        self.hello = b""
        self._handshake()

    def _refuse(self, data: bytes) -> None:
        """Not a ClientHello: Go's 400 to plain HTTP, then close; anything else: close."""
        tcp = self.tcp
        assert tcp is not None
        self.state = CLOSING
        if _HTTP_METHOD.match(data):
            tcp.write(PLAIN_HTTP_RESPONSE)
            if tcp.can_write_eof():
                # Half-close and let the client close: closing now, with its request still
                # unread, could reset the connection before the answer is read. The hello
                # deadline still bounds the wait.
                tcp.write_eof()
                return
        self.endpoint.pending.discard(self)
        tcp.close()

    def _handshake(self) -> None:
        sslobj = self.sslobj
        assert sslobj is not None
        try:
            sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ValueError) as exc:
            log.debug("TLS handshake failed: %s", exc)
            self._flush()  # the alert
            self.state = CLOSING
            self.endpoint.pending.discard(self)
            if self.tcp is not None:
                self.tcp.close()
            return
        self.endpoint.pending.discard(self)
        self.state = OPEN
        endpoint = self.endpoint
        alpn = sslobj.selected_alpn_protocol()
        factory = endpoint.alpn_factories.get(alpn, endpoint.default_factory) if alpn else None
        app = (factory or endpoint.default_factory)()
        if not isinstance(app, asyncio.Protocol):
            raise TypeError(f"{type(app).__name__} is not an asyncio.Protocol")
        self.app = app
        app.connection_made(self)  # type: ignore[arg-type]  # a transport by duck typing
        if self.state == OPEN:  # else the app closed (close flushed) or aborted
            self._read()  # the data that came with the client's Finished

    def expire(self) -> None:
        """The deadline passed before the connection opened (called by the endpoint)."""
        tcp = self.tcp
        if tcp is None:
            return
        if self.state == CLOSING:
            tcp.abort()  # refused, and the peer did not close
            return
        log.debug("TLS connection dropped: no %s in time", "handshake" if self.hello else "hello")
        self.state = CLOSING
        tcp.close()

    # OPEN --------------------------------------------------------------------------------------

    def _read(self) -> None:
        """Decrypt what came and hand it to the application, until OpenSSL needs more.

        What OpenSSL writes meanwhile is not flushed here: after the handshake that is the
        session ticket, which then goes out with the first response (or close_notify) in one
        segment, so the client is woken once rather than for the ticket and then the
        response. (A KeyUpdate's answer OpenSSL sends with the next write by itself.)"""
        sslobj = self.sslobj
        incoming = self.incoming
        app = self.app
        assert sslobj is not None and incoming is not None
        while self.reading and self.state == OPEN:
            try:
                data = sslobj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                data = b""
            except ssl.SSLError as exc:
                log.debug("TLS connection failed: %s", exc)
                self._flush()  # the alert
                self.abort()
                return
            if not data:  # the client's close_notify (mostly read as b"", else as the error)
                self._flush()
                if not (app is not None and app.eof_received()):
                    self.close()
                return
            if app is not None:
                app.data_received(data)
            if not incoming.pending and not sslobj.pending():
                break  # all in: another read would only raise SSLWantReadError

    def _read_later(self) -> None:
        if self.state == OPEN and self.reading:
            self._read()

    def _flush_soon(self) -> None:
        self.flushing = False
        self._flush()

    def _flush(self) -> None:
        outgoing = self.outgoing
        tcp = self.tcp
        if outgoing is not None and outgoing.pending and tcp is not None and not tcp.is_closing():
            tcp.write(outgoing.read())

    # Transport of the application ----------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt `data` now; write it to the socket at the end of the loop turn, with
        whatever else is written (or closed) by then, or now once `FLUSH_NOW` bytes wait.
        A response and the close_notify after it go out in one segment."""
        if self.state != OPEN or not data:
            return
        sslobj = self.sslobj
        outgoing = self.outgoing
        assert sslobj is not None and outgoing is not None
        sslobj.write(data)
        if outgoing.pending >= FLUSH_NOW:
            self._flush()
        elif not self.flushing:
            self.flushing = True
            self.endpoint.loop.call_soon(self._flush_soon)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS connections cannot be half-closed")

    def close(self) -> None:
        """Send close_notify after what was written, then close (without waiting for the
        client's close_notify, as Go's servers do)."""
        state = self.state
        tcp = self.tcp
        if state >= CLOSING or tcp is None:
            return
        self.state = CLOSING
        self.endpoint.pending.discard(self)
        sslobj = self.sslobj
        if state == OPEN and sslobj is not None:
            try:  # noqa: SIM105  (no context manager on the per-connection path)
                sslobj.shutdown()  # what ssl.SSLObject.unwrap calls
            except ssl.SSLError:
                pass  # SSLWantReadError: close_notify is out; the client's is not awaited
            self._flush()
        tcp.close()

    def abort(self) -> None:
        tcp = self.tcp
        if self.state < CLOSING:
            self.state = CLOSING
        if tcp is not None:
            tcp.abort()

    def is_closing(self) -> bool:
        tcp = self.tcp
        return self.state >= CLOSING or tcp is None or tcp.is_closing()

    def pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            tcp = self.tcp
            if tcp is not None and self.state == OPEN:
                tcp.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading:
            self.reading = True
            tcp = self.tcp
            if tcp is not None and self.state == OPEN:
                tcp.resume_reading()
                sslobj = self.sslobj
                incoming = self.incoming
                if (
                    sslobj is not None
                    and incoming is not None
                    and (incoming.pending or sslobj.pending())
                ):
                    # Records that came while paused: not from inside the caller's stack.
                    self.endpoint.loop.call_soon(self._read_later)

    def is_reading(self) -> bool:
        return self.reading and self.state == OPEN

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        sslobj = self.sslobj
        if name == "ssl_object":
            return _ssl_object(sslobj) if sslobj is not None else default
        if sslobj is not None:
            if name == "sslcontext":
                return sslobj.context
            if name == "cipher":
                return sslobj.cipher()
            if name == "peercert":
                return sslobj.getpeercert()
            if name == "compression":
                return sslobj.compression()
        tcp = self.tcp
        return tcp.get_extra_info(name, default) if tcp is not None else default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        if not isinstance(protocol, asyncio.Protocol):
            raise TypeError(f"{type(protocol).__name__} is not an asyncio.Protocol")
        self.app = protocol

    def get_protocol(self) -> asyncio.Protocol | None:
        return self.app

    def get_write_buffer_size(self) -> int:
        tcp = self.tcp
        outgoing = self.outgoing
        held = outgoing.pending if outgoing is not None else 0
        return tcp.get_write_buffer_size() + held if tcp is not None else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        tcp = self.tcp
        return tcp.get_write_buffer_limits() if tcp is not None else (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self.tcp is not None:
            self.tcp.set_write_buffer_limits(high, low)


def _ssl_object(sslobj: Any) -> ssl.SSLObject:
    """The ``ssl.SSLObject`` of an ``_ssl`` object (what ``ssl.SSLObject._create`` builds)."""
    owner = sslobj.owner
    if isinstance(owner, ssl.SSLObject):
        return owner
    obj = ssl.SSLObject.__new__(ssl.SSLObject)
    obj._sslobj = sslobj  # type: ignore[attr-defined]
    sslobj.owner = obj
    return obj
