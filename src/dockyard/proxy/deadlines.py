"""Deadlines for many short-lived things, checked by one timer instead of one timer each.

The data plane gives every proxied request a target timeout, and the HTTPS listener every new
connection a hello and a handshake timeout. A timer handle per item costs an allocation and a
heap insert and removal on the hot path; most items finish long before their deadline. Here an
item is a dict entry (item -> loop time), and one timer, armed while any item waits, looks
every `tick` seconds for those whose time has passed. Expiry is thus up to `tick` late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

T = TypeVar("T")


class Deadlines(Generic[T]):
    """Items with a deadline; `on_expire(item)` runs for each whose deadline passed, after the
    item was removed."""

    __slots__ = ("items", "loop", "on_expire", "tick", "ticker")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, tick: float, on_expire: Callable[[T], object]
    ) -> None:
        self.loop = loop
        self.tick = tick
        self.on_expire = on_expire
        #: item -> loop time after which it expires
        self.items: dict[T, float] = {}
        self.ticker: asyncio.TimerHandle | None = None

    def add(self, item: T, timeout: float) -> None:
        """Expire `item` `timeout` seconds from now (replacing its deadline if it had one;
        ``math.inf``: never, but it stays listed for :meth:`close`)."""
        self.items[item] = self.loop.time() + timeout
        if self.ticker is None:
            self.ticker = self.loop.call_later(self.tick, self._check)

    def discard(self, item: T) -> None:
        self.items.pop(item, None)

    def _check(self) -> None:
        items = self.items
        if not items:
            self.ticker = None
            return
        now = self.loop.time()
        expired = [item for item, deadline in items.items() if deadline <= now]
        for item in expired:
            del items[item]
            self.on_expire(item)
        self.ticker = self.loop.call_later(self.tick, self._check)

    def close(self) -> list[T]:
        """Stop the timer; returns the items that were still waiting (now forgotten)."""
        if self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None
        left = list(self.items)
        self.items.clear()
        return left
