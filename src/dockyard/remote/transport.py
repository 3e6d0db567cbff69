"""The one interface every backend (SSH, local, fake) implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from dockyard.remote.argv import ArgvLike
from dockyard.remote.engine import EngineCall
from dockyard.remote.fanout import HostOutcome
from dockyard.remote.result import OutputCallback, Result, Stdin

__all__ = ["CliOnly", "HostPool", "Transport"]

T = TypeVar("T")


class Transport(Protocol):
    """Runs argv on one host and uploads files to it.

    ``run`` returns a :class:`Result` whatever the exit status; it raises only when the command
    could not be run or finish (``ConnectError``, ``CommandTimeoutError``). Output is streamed
    line by line to ``on_output`` when given; a transport never prints.
    """

    @property
    def host(self) -> str: ...

    async def run(
        self,
        argv: ArgvLike,
        *,
        stdin: Stdin | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        on_output: OutputCallback | None = None,
    ) -> Result: ...

    async def put(self, data: bytes, path: str, *, mode: int = 0o600) -> None: ...

    async def get(self, path: str, local: Path) -> None:
        """Download the host's file ``path`` into the local file ``local``."""
        ...

    async def engine(
        self, call: EngineCall, *, timeout: float | None = None
    ) -> tuple[int, bytes] | None:
        """The host's Docker Engine API answer (status, body) to ``call``; None when this
        transport cannot ask it (then the CLI runs: :mod:`dockyard.remote.engine`)."""
        ...

    async def unix_call(
        self, path: str, data: bytes, *, timeout: float | None = None
    ) -> bytes | None:
        """``data`` sent to the host's Unix socket ``path``, and all it answered until it
        closed; None when this transport cannot reach that socket."""
        ...

    async def close(self) -> None: ...


class CliOnly:
    """The Engine API and socket calls of a transport that runs everything as commands."""

    async def engine(
        self, call: EngineCall, *, timeout: float | None = None
    ) -> tuple[int, bytes] | None:
        return None

    async def unix_call(
        self, path: str, data: bytes, *, timeout: float | None = None
    ) -> bytes | None:
        return None


class HostPool(Protocol):
    """Transports for many hosts, as a flow sees them: :class:`~dockyard.remote.ssh.SshPool`
    for real runs, :class:`~dockyard.remote.fake.FakePool` in flow unit tests."""

    def transport(self, host: str) -> Transport: ...

    async def connect_all(self, hosts: Sequence[str]) -> list[HostOutcome[None]]: ...

    async def on(
        self,
        hosts: Sequence[str],
        fn: Callable[[Transport], Awaitable[T]],
        *,
        fail_fast: bool = False,
    ) -> list[HostOutcome[T]]: ...

    async def close(self) -> None: ...
