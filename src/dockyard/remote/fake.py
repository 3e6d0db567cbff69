"""A scripted transport for flow unit tests: records every call, replays chosen results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from dockyard.errors import ConnectError, RemoteCommandError
from dockyard.remote._stream import stdin_chunks
from dockyard.remote.argv import (
    ArgvLike,
    command_line,
    command_stdin,
    display_args,
    local_args,
)
from dockyard.remote.fanout import DEFAULT_LIMIT, HostOutcome, run_on_hosts
from dockyard.remote.result import OutputCallback, OutputLine, Result, Stdin
from dockyard.remote.transport import CliOnly

__all__ = ["FakeCall", "FakePool", "FakeTransport", "FakeUpload"]

T = TypeVar("T")

Responder = Callable[[list[str]], Result | None]


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One recorded call: ``argv`` as a local exec would get it, ``line`` as SSH would send it
    (quoted once), ``display`` masked."""

    argv: list[str]
    line: str
    display: list[str]
    stdin: bytes | None
    timeout: float | None
    env: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class FakeUpload:
    path: str
    data: bytes
    mode: int


@dataclass
class _Rule:
    prefix: list[str]
    results: list[Result]
    sticky: Result | None


@dataclass
class FakeTransport(CliOnly):
    """Records argv and answers from rules.

    ``on(prefix, *results)`` answers calls whose argv starts with ``prefix``: the given results
    in order, then the last one again. Rules are tried newest first; ``responder`` (a function
    of the argv) is asked when no rule matches; then ``default`` is used, and when ``default``
    is None an unmatched call raises ``LookupError`` so a test notices an unexpected command.
    Scripted stdout/stderr are also streamed to ``on_output`` line by line.
    """

    #: run_batch hands a fake its commands one by one, so flow tests see each argv.
    batch_one_by_one: ClassVar[bool] = True

    host: str = "fake"
    default: Result | None = field(default_factory=lambda: Result(0, "", ""))
    responder: Responder | None = None
    calls: list[FakeCall] = field(default_factory=list)
    uploads: list[FakeUpload] = field(default_factory=list)
    #: Remote files ``get`` can download (path -> content), and the paths it downloaded.
    files: dict[str, bytes] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)
    closed: bool = False
    _rules: list[_Rule] = field(default_factory=list)

    def on(self, prefix: Sequence[str], *results: Result) -> FakeTransport:
        if not results:
            raise ValueError("on() needs at least one Result")
        self._rules.append(_Rule(list(prefix), list(results[:-1]), results[-1]))
        return self

    @property
    def commands(self) -> list[list[str]]:
        """The raw argv of every call, in order."""
        return [call.argv for call in self.calls]

    def _answer(self, args: list[str]) -> Result:
        for rule in reversed(self._rules):
            if args[: len(rule.prefix)] == rule.prefix:
                if rule.results:
                    return rule.results.pop(0)
                assert rule.sticky is not None
                return rule.sticky
        if self.responder is not None:
            answer = self.responder(args)
            if answer is not None:
                return answer
        if self.default is None:
            raise LookupError(f"FakeTransport({self.host}): no scripted result for {args}")
        return self.default

    async def run(
        self,
        argv: ArgvLike,
        *,
        stdin: Stdin | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        on_output: OutputCallback | None = None,
    ) -> Result:
        if self.closed:
            raise RuntimeError(f"FakeTransport({self.host}) used after close()")
        args = local_args(argv)
        if stdin is None:
            stdin = command_stdin(argv)
        data = None if stdin is None else b"".join([c async for c in stdin_chunks(stdin)])
        self.calls.append(
            FakeCall(
                args,
                command_line(argv),
                display_args(argv),
                data,
                timeout,
                None if env is None else dict(env),
            )
        )
        result = self._answer(args)
        if on_output is not None:
            for line in result.stdout.splitlines():
                on_output(OutputLine(self.host, "stdout", line))
            for line in result.stderr.splitlines():
                on_output(OutputLine(self.host, "stderr", line))
        return result

    async def put(self, data: bytes, path: str, *, mode: int = 0o600) -> None:
        if self.closed:
            raise RuntimeError(f"FakeTransport({self.host}) used after close()")
        self.uploads.append(FakeUpload(path, data, mode))

    async def get(self, path: str, local: Path) -> None:
        """Writes ``files[path]`` (scripted by the test) to ``local``; a missing one raises
        RemoteCommandError as a missing remote file would."""
        if self.closed:
            raise RuntimeError(f"FakeTransport({self.host}) used after close()")
        if path not in self.files:
            raise RemoteCommandError(f"remote: cannot download {path} from {self.host}")
        self.downloads.append(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(self.files[path])

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakePool:
    """A :class:`~dockyard.remote.transport.HostPool` of :class:`FakeTransport`, one per host.

    ``setup`` (if given) is called with each new FakeTransport to script it; hosts listed in
    ``unreachable`` fail to connect with a ConnectError, as a dead server would.
    """

    setup: Callable[[FakeTransport], object] | None = None
    unreachable: set[str] = field(default_factory=set)
    limit: int = DEFAULT_LIMIT
    transports: dict[str, FakeTransport] = field(default_factory=dict)
    closed: bool = False

    def transport(self, host: str) -> FakeTransport:
        fake = self.transports.get(host)
        if fake is None:
            fake = FakeTransport(host=host)
            if self.setup is not None:
                self.setup(fake)
            self.transports[host] = fake
        return fake

    def _check(self, host: str) -> None:
        if host in self.unreachable:
            raise ConnectError(f"ssh: cannot reach root@{host}:22: connection refused (fake)")

    async def connect_all(self, hosts: Sequence[str]) -> list[HostOutcome[None]]:
        async def one(host: str) -> None:
            self._check(host)
            self.transport(host)

        return await run_on_hosts(hosts, one, limit=len(hosts) or 1)

    async def on(
        self,
        hosts: Sequence[str],
        fn: Callable[[FakeTransport], Awaitable[T]],
        *,
        fail_fast: bool = False,
    ) -> list[HostOutcome[T]]:
        async def one(host: str) -> T:
            self._check(host)
            return await fn(self.transport(host))

        return await run_on_hosts(hosts, one, limit=self.limit, fail_fast=fail_fast)

    async def close(self) -> None:
        self.closed = True
        for fake in self.transports.values():
            await fake.close()
