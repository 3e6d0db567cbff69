"""The HTTPS listener: TLS connections whose certificate is chosen after the ClientHello.

Python's ``sni_callback`` runs inside OpenSSL and cannot await, so a certificate that does not
exist yet cannot be fetched from it. Instead the listener accepts plain TCP connections
(in batches, :class:`~dockyard.proxy.listener.BatchListener`) that do TLS themselves
(:class:`~dockyard.proxy.tls.transport.TlsConnection`):

1. the ClientHello is read and parsed as it arrives (fragments included);
2. :meth:`TlsSelector.choose` picks the context at once when it can (a custom certificate, an
   ACME certificate already held, a TLS-ALPN-01 challenge for a validator); otherwise reading
   pauses and :meth:`TlsSelector.prepare` awaits ``CertManager.ensure(host)`` in a task, so the
   first TLS request for a host waits for its certificate;
3. the handshake runs with that context, the ClientHello bytes first; then the decrypted
   stream goes to the protocol for the negotiated ALPN protocol: ``h2`` to the HTTP/2 protocol,
   anything else (``http/1.1``, no ALPN) to the ordinary HTTP/1.1 one.

Plain HTTP sent to the HTTPS port gets Go's ``400 Client sent an HTTP request to an HTTPS
server.``; anything else that is not a ClientHello, an unknown name, or a failed issuance
closes the connection. A client that sends no complete ClientHello within ``hello_timeout``, or
does not finish the handshake within ``handshake_timeout``, is dropped.

When the acceptor is given the data plane's ``ConnectionFactory`` and no explicit
``alpn_factories``, ``h2`` is served by :mod:`dockyard.proxy.dataplane.h2conn` on the same plane
(the one place this package reaches into the data plane; imported on the first h2 connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Mapping

from dockyard.proxy.listener import BatchListener
from dockyard.proxy.tls.clienthello import ClientHello
from dockyard.proxy.tls.context import TlsSelector
from dockyard.proxy.tls.transport import PLAIN_HTTP_RESPONSE, TlsConnection, TlsEndpoint

__all__ = ["PLAIN_HTTP_RESPONSE", "LazyH2", "TlsAcceptor", "default_alpn_factories"]

log = logging.getLogger("dockyard.proxy.tls")

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


class TlsAcceptor:
    """Serves TLS connections on a listening socket, choosing each certificate after the
    ClientHello (see the module docstring).

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

    async def serve(self, listen_sock: socket.socket) -> None:
        """Accept on `listen_sock` until cancelled; then stop accepting and drop the
        connections not yet handed to a protocol (those that were are the protocols')."""
        loop = asyncio.get_running_loop()
        endpoint = TlsEndpoint(
            loop,
            choose=self.selector.choose,
            await_context=self._await_context,
            default_factory=self.protocol_factory,
            alpn_factories=self.alpn_factories,
            hello_timeout=self.hello_timeout,
            handshake_timeout=self.handshake_timeout,
        )
        listener = BatchListener(loop, listen_sock, endpoint)
        listener.start()
        try:
            await loop.create_future()  # until cancelled
        finally:
            listener.close()
            endpoint.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _await_context(self, conn: TlsConnection, hello: ClientHello) -> None:
        task = asyncio.get_running_loop().create_task(self._prepare(conn, hello))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prepare(self, conn: TlsConnection, hello: ClientHello) -> None:
        ctx: ssl.SSLContext | None = None
        try:
            ctx = await self.selector.prepare(hello)
        except Exception:
            log.exception("choosing a certificate for %s failed", hello.sni)
        finally:
            conn.context_ready(ctx)
