"""Accepting connections in batches, for listeners that see many new connections.

libuv (so uvloop's ``create_server``) accepts one connection per turn of the event loop: a
turn that also runs every other ready callback. Under a burst of new connections, such as
HTTPS clients that open one connection per request, the backlog then drains at one
connection per turn, and the work of each turn is spread over fewer connections. Measured
on bench/proxy.py's handshake-per-request scenario, a TLS listener on ``create_server`` served
about 20% fewer requests per second than one that accepts like this module does.

:class:`BatchListener` watches the listening socket itself and, each time it is readable,
accepts up to `batch` connections, handing each to the loop as an accepted socket
(``loop.connect_accepted_socket``, a plain TCP transport, TCP_NODELAY set by uvloop). Errors
such as EMFILE pause accepting for a moment instead of spinning.
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any, Final

__all__ = ["BatchListener"]

log = logging.getLogger("dockyard.proxy")

#: Connections accepted per readiness of the listening socket.
BATCH: Final = 64
#: How long accepting pauses after an error such as EMFILE (out of file descriptors).
ERROR_PAUSE: Final = 0.1

_RETRY: Final = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNABORTED, errno.EPROTO)


class BatchListener:
    """Accepts on `sock` (listening, owned by the caller) and gives each connection a protocol
    from `protocol_factory` on a TCP transport of `loop`. :meth:`start` and :meth:`close`."""

    __slots__ = ("_fd", "_kind", "_paused", "batch", "factory", "loop", "sock")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *,
        batch: int = BATCH,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = protocol_factory
        self.batch = batch
        self._fd = -1
        # socket.accept() converts family and type to enums per connection: keep the numbers.
        self._kind = (int(sock.family), int(sock.type), sock.proto)
        self._paused: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.sock.setblocking(False)
        self._fd = self.sock.fileno()
        self.loop.add_reader(self._fd, self._accept)

    def close(self) -> None:
        """Stop accepting (the socket stays open: it is the caller's)."""
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
            self._fd = -1

    def _resume(self) -> None:
        self._paused = None
        if self._fd >= 0:
            self.loop.add_reader(self._fd, self._accept)

    def _accept(self) -> None:
        family, kind, proto = self._kind
        accept = self.sock._accept  # type: ignore[attr-defined]  # the fd, without enum work
        for _ in range(self.batch):
            try:
                fd, _ = accept()
            except OSError as exc:
                if exc.errno in _RETRY:
                    return
                # EMFILE, ENFILE, ENOBUFS, ENOMEM: wait, then go on.
                log.error("accept failed on port %s: %s", self._port(), exc)
                self.loop.remove_reader(self._fd)
                self._paused = self.loop.call_later(ERROR_PAUSE, self._resume)
                return
            # The C socket type: socket.socket adds an __init__ in Python and converts family
            # and type to enums each time the loop reads them (3 times per connection).
            self._adopt(_socket.socket(family, kind, proto, fd))

    def _port(self) -> object:
        try:
            return self.sock.getsockname()[1]
        except (OSError, IndexError, TypeError):
            return "?"

    def _adopt(self, conn: _socket.socket) -> None:
        try:
            # uvloop and asyncio use only what _socket.socket has (fileno, type, family...)
            coro = self.loop.connect_accepted_socket(self.factory, conn)  # type: ignore[arg-type]
        except Exception as exc:
            log.error("cannot serve an accepted connection: %s", exc)
            conn.close()
            return
        _drive(coro)


def _drive(coro: Coroutine[Any, Any, Any]) -> None:
    """Run `coro` to its end as a Task would, without a Task: a step now, then one each time
    the future it waits for is done. ``connect_accepted_socket`` makes the transport in its
    first step and then only waits for the protocol's ``connection_made`` (next loop turn)."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return
    except Exception as exc:  # the transport could not be made; uvloop closed the socket
        log.error("cannot serve an accepted connection: %s", exc)
        return
    if waiting is None:  # a bare yield: step again on the next turn
        asyncio.get_running_loop().call_soon(_drive, coro)
    else:
        waiting.add_done_callback(lambda _done: _drive(coro))
