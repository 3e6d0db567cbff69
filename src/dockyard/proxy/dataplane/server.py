"""The client-facing asyncio Protocol and the `serve_http` entry point."""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
from collections.abc import Callable

from dockyard.proxy.contract import Router


class ProxyServer:
    """A running listener of the data plane."""

    def __init__(self, server: asyncio.Server) -> None:
        self.server = server

    @property
    def port(self) -> int:
        sock = self.server.sockets[0]
        return int(sock.getsockname()[1])

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish for up to `grace` seconds, close."""
        raise NotImplementedError


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
) -> ProxyServer:
    """Start serving HTTP/1.1 (or HTTPS when `ssl` is given) and proxying through `router`.

    Returns once the listener is bound. See the package docstring for the arguments.
    """
    raise NotImplementedError
