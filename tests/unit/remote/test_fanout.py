from __future__ import annotations

import asyncio

import pytest

from dockyard.errors import ConnectError, RemoteCommandError
from dockyard.remote.fanout import HostsFailedError, raise_for_failures, run_on_hosts


def test_limit_bounds_concurrency_and_keeps_order() -> None:
    running = 0
    peak = 0

    async def work(host: str) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return host.upper()

    hosts = [f"h{i}" for i in range(20)]
    outcomes = asyncio.run(run_on_hosts(hosts, work, limit=4))
    assert peak == 4
    assert [o.host for o in outcomes] == hosts
    assert [o.value for o in outcomes] == [h.upper() for h in hosts]
    assert all(o.ok for o in outcomes)


def test_keep_going_waits_for_every_host() -> None:
    finished: list[str] = []

    async def work(host: str) -> None:
        if host == "bad":
            raise ConnectError("ssh: cannot reach root@bad:22")
        await asyncio.sleep(0.05)
        finished.append(host)

    outcomes = asyncio.run(run_on_hosts(["a", "bad", "b"], work))
    assert sorted(finished) == ["a", "b"]
    bad = outcomes[1]
    assert isinstance(bad.error, ConnectError) and not bad.ok
    with pytest.raises(HostsFailedError) as info:
        raise_for_failures(outcomes)
    assert "failed on 1 of 3 host(s)" in info.value.render()
    assert "bad: ssh: cannot reach root@bad:22" in info.value.render()


def test_fail_fast_cancels_the_rest() -> None:
    finished: list[str] = []

    async def work(host: str) -> None:
        if host == "bad":
            await asyncio.sleep(0.01)
            raise RemoteCommandError("command failed")
        await asyncio.sleep(5)
        finished.append(host)

    outcomes = asyncio.run(
        asyncio.wait_for(run_on_hosts(["a", "bad", "b"], work, fail_fast=True), 2)
    )
    assert finished == []
    assert [o.cancelled for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, RemoteCommandError)


def test_bugs_propagate_as_themselves() -> None:
    async def work(host: str) -> None:
        raise KeyError(host)

    with pytest.raises(KeyError):
        asyncio.run(run_on_hosts(["a", "b"], work))


def test_duplicates_dropped_and_empty_ok() -> None:
    calls: list[str] = []

    async def work(host: str) -> None:
        calls.append(host)

    outcomes = asyncio.run(run_on_hosts(["a", "a", "b"], work))
    assert [o.host for o in outcomes] == ["a", "b"]
    assert sorted(calls) == ["a", "b"]
    assert asyncio.run(run_on_hosts([], work)) == []
    raise_for_failures([])
