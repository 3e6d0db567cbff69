"""A deployed service (implements `contract.Service`) and its pause/stop state machine."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dockyard.errors import ProxyError
from dockyard.proxy.contract import Refusal, ServiceOptions, ServiceState
from dockyard.proxy.control.balancer import LoadBalancer, cookie_value
from dockyard.proxy.control.durations import seconds
from dockyard.proxy.control.log import event
from dockyard.proxy.control.options import DEFAULT_PAUSE_TIMEOUT, ServiceConfig
from dockyard.proxy.control.target import ProxyTarget

if TYPE_CHECKING:
    from dockyard.proxy.http.parser import RequestHead

logger = logging.getLogger("dockyard.proxy.control")

PauseCommand = Literal["pause", "stop", "resume"]

#: (state, command) -> state. Every command is legal in every state (kamal-proxy never refuses
#: one); the table documents the machine and is what `PauseController.apply` consults.
PAUSE_TRANSITIONS: dict[tuple[ServiceState, PauseCommand], ServiceState] = {
    ("running", "pause"): "paused",
    ("running", "stop"): "stopped",
    ("running", "resume"): "running",
    ("paused", "pause"): "paused",
    ("paused", "stop"): "stopped",
    ("paused", "resume"): "running",
    ("stopped", "pause"): "paused",
    ("stopped", "stop"): "stopped",
    ("stopped", "resume"): "running",
}
_STATE_CODES: dict[ServiceState, int] = {"running": 0, "paused": 1, "stopped": 2}
_CODE_STATES: dict[int, ServiceState] = {v: k for k, v in _STATE_CODES.items()}


class PauseController:
    """running | paused | stopped. Paused requests wait for resume, stop or `fail_after`."""

    def __init__(self) -> None:
        self.state: ServiceState = "running"
        self.stop_message = ""
        self.fail_after = DEFAULT_PAUSE_TIMEOUT
        self._released = asyncio.Event()

    def apply(self, command: PauseCommand, *, fail_after: int = 0, message: str = "") -> None:
        was = self.state
        self.state = PAUSE_TRANSITIONS[(was, command)]
        if command == "pause":
            self.fail_after = fail_after
            if was != "paused":
                self._released = asyncio.Event()
        elif command == "stop":
            self.stop_message = message
        if was == "paused" and self.state != "paused":
            self._released.set()

    async def wait(self) -> ServiceState:
        if self.state != "paused":
            return self.state
        released = self._released
        try:
            await asyncio.wait_for(released.wait(), seconds(self.fail_after))
        except TimeoutError:
            return "paused"
        return "stopped" if self._current() == "stopped" else "running"

    def _current(self) -> ServiceState:
        return self.state

    def to_json(self) -> dict[str, object]:
        return {
            "state": _STATE_CODES[self.state],
            "stop_message": self.stop_message,
            "fail_after": self.fail_after,
        }

    def restore(self, data: dict[str, object]) -> None:
        code = data.get("state", 0)
        state = _CODE_STATES.get(code if isinstance(code, int) else 0, "running")
        fail_after = data.get("fail_after", DEFAULT_PAUSE_TIMEOUT)
        message = data.get("stop_message", "")
        if state == "paused":
            self.apply("pause", fail_after=fail_after if isinstance(fail_after, int) else 0)
        elif state == "stopped":
            self.apply("stop", message=message if isinstance(message, str) else "")
        else:
            self.apply("resume")
        if isinstance(fail_after, int):
            self.fail_after = fail_after


ROLLOUT_COOKIE = "kamal-rollout"
_HASH_MAX = 0xFFFFFFFF


def fnv1a_32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


@dataclass(frozen=True, slots=True)
class RolloutSplit:
    """Which requests use the rollout slot: those whose `kamal-rollout` cookie value is in the
    allowlist, or hashes (FNV-1a 32) at or below `percentage`% of the hash space."""

    percentage: int
    allowlist: tuple[str, ...] = ()

    @property
    def split_point(self) -> float:
        return _HASH_MAX * (self.percentage / 100.0)

    def selects(self, value: str) -> bool:
        if value in self.allowlist:
            return True
        return self.percentage > 0 and fnv1a_32(value.encode()) <= self.split_point

    def to_json(self) -> dict[str, object]:
        return {
            "percentage": self.percentage,
            "percentage_split_point": self.split_point,
            "allowlist": list(self.allowlist),
        }

    @classmethod
    def from_json(cls, data: object) -> RolloutSplit | None:
        if not isinstance(data, dict):
            return None
        percentage = data.get("percentage", 0)
        allowlist = data.get("allowlist") or []
        return cls(
            percentage=percentage if isinstance(percentage, int) else 0,
            allowlist=tuple(str(v) for v in allowlist) if isinstance(allowlist, list) else (),
        )


class _DenyAll:
    """An `AccessGate` that refuses everything (a service whose access options are invalid)."""

    def client_ip(self, head: RequestHead, peer_ip: bytes) -> bytes:
        return peer_ip

    def check(self, head: RequestHead, client_ip: bytes) -> Refusal | None:
        return Refusal(403, b"", "This service's access rules are invalid")


class ServiceNotFoundError(ProxyError):
    def __init__(self) -> None:
        super().__init__("service not found")


class ProxyService:
    """Implements `contract.Service`."""

    def __init__(self, name: str, config: ServiceConfig, active: LoadBalancer) -> None:
        # Plain attributes, not properties: the data plane reads them per request.
        self.name = name
        self.config = config
        self.active = active
        #: The rollout slot (`rollout deploy`) and the split that sends requests there.
        self.rollout: LoadBalancer | None = None
        self.split: RolloutSplit | None = None
        self.options = self._contract_options()
        self.pause = PauseController()

    def __repr__(self) -> str:
        return f"ProxyService({self.name!r}, {self.active.target_names})"

    @property
    def state(self) -> ServiceState:
        return self.pause.state

    @property
    def stop_message(self) -> str:
        return self.pause.stop_message

    def update(self, config: ServiceConfig, active: LoadBalancer) -> LoadBalancer:
        """Install new options and targets at once; returns the load balancer replaced."""
        old = self.active
        self.config = config
        self.active = active
        self.options = self._contract_options()
        return old

    def _contract_options(self) -> ServiceOptions:
        """The data plane's view; `extra["has_readers"]` tells it whether writer affinity
        (the `kamal-writer` cookie) applies."""
        try:
            options = self.config.to_contract(self.name)
        except ProxyError as exc:
            # Only a hand-edited state file gets here (deploys validate first): fail closed.
            event(
                logger,
                "Invalid access options; refusing every request",
                level=logging.ERROR,
                service=self.name,
                error=exc.message,
            )
            options = self.config.to_contract(self.name, gate=_DenyAll())
        options.extra["has_readers"] = bool(self.active.readers)
        return options

    async def wait_until_running(self) -> ServiceState:
        return await self.pause.wait()

    def slot_for(self, cookies: str | None) -> LoadBalancer:
        """The rollout slot for requests the split selects, else the active one."""
        if self.split is not None and self.rollout is not None:
            value = cookie_value(cookies, ROLLOUT_COOKIE)
            if value and self.split.selects(value):
                return self.rollout
        return self.active

    def pick_target(self, *, read: bool, cookies: str | None) -> ProxyTarget | None:
        slot = self.active if self.split is None else self.slot_for(cookies)
        return slot.pick(
            read=read, cookies=cookies, affinity_timeout_ns=self.config.writer_affinity_timeout
        )
