"""The SSH transport against the lab's servers (real sshd + Docker engine in containers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from dockyard.remote import (
    OutputLine,
    Result,
    SshPool,
    raise_for_failures,
    run_batch,
    run_on_hosts,
)
from lab.state import LabDoc
from tests.integration.support import lab_options

pytestmark = pytest.mark.integration

T = TypeVar("T")


def with_pool(lab: LabDoc, body: Callable[[SshPool], Awaitable[T]]) -> T:
    async def go() -> T:
        async with SshPool(lab_options(lab)) as pool:
            return await asyncio.wait_for(body(pool), 120)

    return asyncio.run(go())


def test_connects_to_every_server_and_runs_docker(lab: LabDoc) -> None:
    hosts = [server.address for server in lab.servers]
    seen: list[OutputLine] = []

    async def body(pool: SshPool) -> list[tuple[str, str]]:
        connected = await pool.connect_all(hosts)
        raise_for_failures(connected)

        async def on_host(host: str) -> tuple[str, str]:
            results = await run_batch(
                pool.transport(host),
                [["hostname"], ["docker", "version", "--format", "{{.Server.Version}}"]],
                on_output=seen.append,
            )
            for result in results:
                result.check(host, ["batch"])
            return results[0].stdout.strip(), results[1].stdout.strip()

        outcomes = await run_on_hosts(hosts, on_host)
        raise_for_failures(outcomes)
        return [o.value for o in outcomes if o.value is not None]

    answers = with_pool(lab, body)
    assert len(answers) == len(hosts)
    assert len({hostname for hostname, _ in answers}) == len(hosts)  # really different servers
    assert all(version for _, version in answers)
    assert {line.host for line in seen} == set(hosts)


def test_upload_and_parallel_commands_on_a_server(lab: LabDoc) -> None:
    host = lab.servers[0].address
    path = "/tmp/dockyard-remote-test/env/app.env"

    async def body(pool: SshPool) -> tuple[Result, list[Result], float]:
        ssh = pool.transport(host)
        await ssh.put(b"SECRET=1\n", path, mode=0o600)
        stat = await ssh.run(["stat", "-c", "%a %U %s", path])
        started = time.monotonic()
        sleeps = await asyncio.gather(*(ssh.run(["sleep", "0.5"]) for _ in range(20)))
        elapsed = time.monotonic() - started
        (await ssh.run(["rm", "-rf", "/tmp/dockyard-remote-test"])).check(host, ["rm"])
        return stat, sleeps, elapsed

    stat, sleeps, elapsed = with_pool(lab, body)
    assert stat.stdout == f"600 {lab.ssh.user} 9\n"
    assert all(r.ok for r in sleeps)
    assert elapsed < 10 * 0.5  # in parallel (two waves of 10 channels), not one by one
