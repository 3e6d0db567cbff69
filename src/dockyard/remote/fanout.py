"""Running one coroutine per host, in parallel with a limit, and collecting per-host outcomes.

Whether one host's failure stops the others is decided here, once: ``fail_fast=False`` (the
default, like Kamal) waits for every host; ``fail_fast=True`` cancels the hosts still running
at the first failure and reports them as cancelled. Only ``DockyardError`` counts as a host
failure; any other exception is a bug and propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from dockyard.errors import DockyardError

__all__ = ["DEFAULT_LIMIT", "HostOutcome", "HostsFailedError", "raise_for_failures", "run_on_hosts"]

T = TypeVar("T")

#: Default parallelism across hosts (Kamal's sshkit max_concurrent_starts).
DEFAULT_LIMIT = 30


@dataclass(frozen=True, slots=True)
class HostOutcome(Generic[T]):
    """What happened on one host: a value, an error, or cancelled (fail-fast)."""

    host: str
    value: T | None = None
    error: DockyardError | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


class HostsFailedError(DockyardError):
    """Raised by :func:`raise_for_failures`: which hosts failed and why."""

    layer = "remote"

    def __init__(self, failures: list[tuple[str, DockyardError]], total: int) -> None:
        lines = [f"failed on {len(failures)} of {total} host(s):"]
        for host, error in failures:
            first, *rest = error.render().splitlines() or [""]
            lines.append(f"  {host}: {first}")
            lines.extend(f"    {line}" for line in rest)
        super().__init__("\n".join(lines))
        self.failures = failures
        self.exit_code = max((error.exit_code for _, error in failures), default=1)


class _FailFast(Exception):
    pass


async def run_on_hosts(
    hosts: Iterable[str],
    fn: Callable[[str], Awaitable[T]],
    *,
    limit: int = DEFAULT_LIMIT,
    fail_fast: bool = False,
) -> list[HostOutcome[T]]:
    """Run ``fn(host)`` for each host (duplicates dropped), at most ``limit`` at a time.

    Returns one outcome per host, in the order given.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    ordered = list(dict.fromkeys(hosts))
    gate = asyncio.Semaphore(limit)
    outcomes: dict[str, HostOutcome[T]] = {}

    async def one(host: str) -> None:
        async with gate:
            try:
                value = await fn(host)
            except DockyardError as exc:
                outcomes[host] = HostOutcome(host, error=exc)
                if fail_fast:
                    raise _FailFast from exc
                return
            outcomes[host] = HostOutcome(host, value=value)

    try:
        async with asyncio.TaskGroup() as group:
            for host in ordered:
                group.create_task(one(host))
    except BaseExceptionGroup as group_error:
        _, others = group_error.split(_FailFast)
        if others is not None:
            # A bug, not a host failure: surface the first one as itself.
            raise others.exceptions[0] from None
    return [outcomes.get(host) or HostOutcome(host, cancelled=True) for host in ordered]


def raise_for_failures(outcomes: Iterable[HostOutcome[T]]) -> None:
    """Raise one error naming every failed host, if any failed."""
    listed = list(outcomes)
    failures = [(o.host, o.error) for o in listed if o.error is not None]
    if failures:
        raise HostsFailedError(failures, len(listed))
