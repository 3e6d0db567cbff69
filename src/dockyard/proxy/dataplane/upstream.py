"""Connections from the proxy to targets, pooled per target (keep-alive, LIFO reuse)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from dockyard.proxy.http.parser import HttpError, ResponseHead, ResponseReader

if TYPE_CHECKING:
    from dockyard.proxy.dataplane.server import ClientConnection, Exchange

MAX_IDLE_PER_TARGET = 100

PoolKey = tuple[str, int]


class UpstreamPool:
    """Idle upstream connections per target address."""

    __slots__ = ("_idle",)

    def __init__(self) -> None:
        self._idle: dict[PoolKey, list[UpstreamConnection]] = {}

    def get(self, key: PoolKey) -> UpstreamConnection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            conn.idle = False
            if not conn.closed:
                return conn
        return None

    def put(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        if len(idle) >= MAX_IDLE_PER_TARGET:
            conn.close()
            return
        conn.idle = True
        conn.exchange = None
        idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]

    def idle_count(self, key: PoolKey | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(v) for v in self._idle.values())

    def close_all(self) -> None:
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.close()
        self._idle.clear()


class UpstreamConnection(asyncio.Protocol):
    """One HTTP/1.1 connection to a target; carries one exchange at a time, then a tunnel."""

    __slots__ = (
        "closed",
        "exchange",
        "idle",
        "key",
        "pool",
        "reader",
        "requests",
        "transport",
        "tunnel_peer",
        "write_paused",
    )

    def __init__(self, pool: UpstreamPool, key: PoolKey) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.reader = ResponseReader(self)
        self.exchange: Exchange | None = None
        self.tunnel_peer: ClientConnection | None = None
        self.idle = False
        self.closed = False
        self.write_paused = False
        self.requests = 0

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        peer = self.tunnel_peer
        if peer is not None:
            if peer.transport is not None:
                peer.transport.write(data)
            return
        ex = self.exchange
        if ex is None:
            self.close()  # bytes on an idle connection: unusable
            return
        ex.upstream_received = True
        try:
            rest = self.reader.feed(data)
        except HttpError as exc:
            ex.flush()
            ex.upstream_failed(exc.reason)
            return
        if rest is not None:
            ex.start_tunnel(rest)
        elif ex.out:
            ex.flush()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        try:
            if self.idle:
                self.idle = False
                self.pool.discard(self)
                return
            peer = self.tunnel_peer
            if peer is not None:
                self.tunnel_peer = None
                peer.tunnel_closed()
                return
            ex = self.exchange
            if ex is not None:
                if self.reader.feed_eof():
                    return  # that completed a close-delimited body; the exchange released us
                self.exchange = None
                ex.upstream_lost(self)
        finally:
            self.reader.close()  # no reference cycle left for the garbage collector

    def pause_writing(self) -> None:
        self.write_paused = True
        peer = self.tunnel_peer
        if peer is not None:
            peer.pause(2)
        elif self.exchange is not None:
            self.exchange.client.pause(2)

    def resume_writing(self) -> None:
        self.write_paused = False
        peer = self.tunnel_peer
        if peer is not None:
            peer.resume(2)
        elif self.exchange is not None:
            self.exchange.client.resume(2)
            self.exchange.pump()

    # ResponseHandler: relay to the current exchange --------------------------------------------

    def on_response(self, head: ResponseHead) -> None:
        ex = self.exchange
        if ex is not None:
            ex.on_response(head)

    def on_response_body(self, data: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            ex.on_response_body(data)

    def on_response_end(self) -> None:
        ex = self.exchange
        if ex is not None:
            ex.on_response_end()

    # ------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()
