"""A deployed service (implements `contract.Service`) and its pause/stop state machine."""

from __future__ import annotations

import asyncio
from typing import Literal

from dockyard.errors import ProxyError
from dockyard.proxy.contract import ServiceOptions, ServiceState
from dockyard.proxy.control.balancer import LoadBalancer
from dockyard.proxy.control.durations import seconds
from dockyard.proxy.control.options import DEFAULT_PAUSE_TIMEOUT, ServiceConfig
from dockyard.proxy.control.target import ProxyTarget

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


class ServiceNotFoundError(ProxyError):
    def __init__(self) -> None:
        super().__init__("service not found")


class ProxyService:
    """Implements `contract.Service`."""

    def __init__(self, name: str, config: ServiceConfig, active: LoadBalancer) -> None:
        self._name = name
        self.config = config
        self.active = active
        self._options = self._contract_options()
        self.pause = PauseController()

    def __repr__(self) -> str:
        return f"ProxyService({self._name!r}, {self.active.target_names})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def options(self) -> ServiceOptions:
        return self._options

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
        self._options = self._contract_options()
        return old

    def _contract_options(self) -> ServiceOptions:
        """The data plane's view; `extra["has_readers"]` tells it whether writer affinity
        (the `kamal-writer` cookie) applies."""
        options = self.config.to_contract()
        options.extra["has_readers"] = bool(self.active.readers)
        return options

    async def wait_until_running(self) -> ServiceState:
        return await self.pause.wait()

    def pick_target(self, *, read: bool, cookies: str | None) -> ProxyTarget | None:
        return self.active.pick(
            read=read, cookies=cookies, affinity_timeout_ns=self.config.writer_affinity_timeout
        )
