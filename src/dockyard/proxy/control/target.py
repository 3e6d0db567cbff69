"""One backend target: its health state, its in-flight requests and how it drains.

The target lifecycle is a table (`TRANSITIONS`) so tests and docs can enumerate it:
`adding` (health gate pending) → `healthy` ⇄ `unhealthy`, and any state → `draining` → back to
the state it had (kamal-proxy restores the previous state once a drain ends).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import Enum

from dockyard.proxy.control.durations import seconds
from dockyard.proxy.control.log import event
from dockyard.proxy.control.options import TargetAddress

logger = logging.getLogger("dockyard.proxy.control")


class TargetState(Enum):
    ADDING = "adding"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"


class TargetEvent(Enum):
    PROBE_OK = "probe_ok"
    PROBE_FAILED = "probe_failed"
    TRUST = "trust"  # --force or restored state: healthy without a probe
    DRAIN = "drain"


#: (state, event) -> next state. A pair that is missing leaves the state unchanged.
TRANSITIONS: dict[tuple[TargetState, TargetEvent], TargetState] = {
    (TargetState.ADDING, TargetEvent.PROBE_OK): TargetState.HEALTHY,
    (TargetState.ADDING, TargetEvent.TRUST): TargetState.HEALTHY,
    # A failed probe never moves an `adding` target: it just is not healthy yet.
    (TargetState.HEALTHY, TargetEvent.PROBE_FAILED): TargetState.UNHEALTHY,
    (TargetState.UNHEALTHY, TargetEvent.PROBE_OK): TargetState.HEALTHY,
    (TargetState.UNHEALTHY, TargetEvent.TRUST): TargetState.HEALTHY,
    (TargetState.ADDING, TargetEvent.DRAIN): TargetState.DRAINING,
    (TargetState.HEALTHY, TargetEvent.DRAIN): TargetState.DRAINING,
    (TargetState.UNHEALTHY, TargetEvent.DRAIN): TargetState.DRAINING,
}


def next_state(state: TargetState, ev: TargetEvent) -> TargetState:
    return TRANSITIONS.get((state, ev), state)


class _Inflight:
    """A `contract.RequestHandle`: one request the target waits for when it drains."""

    __slots__ = ("_cancel", "_cancelled", "_target", "is_hijacked")

    def __init__(self, target: ProxyTarget, cancel: Callable[[], None]) -> None:
        self._target = target
        self._cancel = cancel
        self._cancelled = False
        self.is_hijacked = False

    def hijacked(self) -> None:
        self.is_hijacked = True
        if self._target.state is TargetState.DRAINING:
            self.cancel()

    def done(self) -> None:
        self._target._finished(self)

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            self._cancel()


class ProxyTarget:
    """Implements `contract.Target`."""

    __slots__ = ("_idle", "_inflight", "address", "host", "name", "port", "state")

    def __init__(self, address: TargetAddress) -> None:
        self.address = address
        # Plain attributes, not properties: the data plane reads them per request.
        self.name = address.name
        self.host = address.host
        self.port = address.port
        self.state = TargetState.ADDING
        self._inflight: dict[int, _Inflight] = {}
        self._idle: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"ProxyTarget({self.address.name!r}, {self.state.value})"

    @property
    def healthy(self) -> bool:
        return self.state is TargetState.HEALTHY

    @property
    def inflight_count(self) -> int:
        return len(self._inflight)

    def apply(self, ev: TargetEvent) -> tuple[TargetState, TargetState]:
        """Apply a lifecycle event; returns (was, now)."""
        was = self.state
        self.state = next_state(was, ev)
        return was, self.state

    def begin_request(self, cancel: Callable[[], None]) -> _Inflight | None:
        if self.state is TargetState.DRAINING:
            return None
        handle = _Inflight(self, cancel)
        self._inflight[id(handle)] = handle
        return handle

    def _finished(self, handle: _Inflight) -> None:
        self._inflight.pop(id(handle), None)
        if not self._inflight and self._idle is not None:
            self._idle.set()

    async def drain(self, timeout_ns: int, *, service: str = "", refuse_new: bool = True) -> None:
        """Refuse new requests, cancel upgraded connections at once, give the others up to
        `timeout_ns` to finish, cancel whatever is left, then restore the previous state.

        `refuse_new=False` (pause and stop, whose gate already holds new requests) keeps the
        state, so a resume during the drain is not answered with 503.
        """
        was = self.state
        if refuse_new:
            self.state = next_state(was, TargetEvent.DRAIN)
        try:
            for handle in list(self._inflight.values()):
                if handle.is_hijacked:
                    handle.cancel()
                    self._inflight.pop(id(handle), None)
            if self._inflight:
                self._idle = asyncio.Event()
                try:
                    await asyncio.wait_for(self._idle.wait(), seconds(max(timeout_ns, 0)))
                except TimeoutError:
                    pass
                finally:
                    self._idle = None
            for handle in list(self._inflight.values()):
                event(
                    logger,
                    "Cancelling request after drain timeout",
                    level=logging.DEBUG,
                    service=service,
                    target=self.name,
                )
                handle.cancel()
            self._inflight.clear()
        finally:
            if self.state is TargetState.DRAINING:
                self.state = was
