"""The asyncio glue for an HTTPS listener with on-demand certificates.

Python's ``sni_callback`` runs inside OpenSSL and cannot await, so a certificate that does not
exist yet cannot be fetched from it. Instead, for each accepted socket:

1. :func:`peek_client_hello` reads the ClientHello with ``MSG_PEEK``: the bytes stay in the
   kernel buffer, nothing is consumed;
2. :meth:`TlsSelector.prepare` picks the context, awaiting ``CertManager.ensure(host)`` when
   the host has no certificate yet (a TLS-ALPN-01 validator gets the challenge context);
3. ``loop.connect_accepted_socket(factory, sock, ssl=ctx)`` runs the real handshake from the
   start with that context (natively in uvloop), then hands the decrypted stream to the
   ordinary HTTP protocol.

:class:`TlsAcceptor` does the three steps; ``serve(listen_sock)`` is a complete accept loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import select
import socket
from collections.abc import Callable
from typing import Final

from dockyard.proxy.tls.clienthello import (
    MAX_CLIENT_HELLO,
    NEED_MORE,
    ClientHello,
    parse_client_hello,
)
from dockyard.proxy.tls.context import TlsSelector

__all__ = ["PLAIN_HTTP_RESPONSE", "TlsAcceptor", "peek_client_hello"]

log = logging.getLogger("dockyard.proxy.tls")

_PEEK_LIMIT: Final = MAX_CLIENT_HELLO + 5 * 8  # the message plus a few record headers
_RETRY_DELAY: Final = 0.005


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


async def peek_client_hello(sock: socket.socket, *, timeout: float = 10.0) -> ClientHello | None:
    """Peek at ``sock`` (non-blocking, freshly accepted) until a whole ClientHello is there.

    Returns ``None`` when the peer sends something that is not a ClientHello, closes, or does
    not complete it within ``timeout`` seconds. Nothing is consumed from the socket.
    """
    loop = asyncio.get_running_loop()
    seen = -1
    try:
        async with asyncio.timeout(timeout):
            while True:
                await _readable(loop, sock)
                try:
                    data = sock.recv(_PEEK_LIMIT, socket.MSG_PEEK)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return None
                if not data:
                    return None
                result = parse_client_hello(data)
                if result is not NEED_MORE:
                    return result  # a ClientHello or None (not TLS)
                if len(data) == seen:
                    # The socket stays readable while unread bytes wait (level-triggered):
                    # give the rest of the ClientHello time to arrive, unless the peer has
                    # already closed its side (a peek never sees that EOF).
                    if _peer_shut_down(sock):
                        return None
                    await asyncio.sleep(_RETRY_DELAY)
                seen = len(data)
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


class TlsAcceptor:
    """Accepts TLS connections, choosing the certificate after peeking at the ClientHello."""

    def __init__(
        self,
        selector: TlsSelector,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *,
        hello_timeout: float = 10.0,
        handshake_timeout: float = 60.0,
    ) -> None:
        self.selector = selector
        self.protocol_factory = protocol_factory
        self.hello_timeout = hello_timeout
        self.handshake_timeout = handshake_timeout
        self._tasks: set[asyncio.Task[None]] = set()

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
                self.protocol_factory,
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
                task = loop.create_task(self._handle_quietly(sock))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle_quietly(self, sock: socket.socket) -> None:
        try:
            await self.handle(sock)
        except Exception:
            log.exception("TLS accept failed")
