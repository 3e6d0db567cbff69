"""The SSH transport against the lab's servers (real sshd + Docker engine in containers)."""

from __future__ import annotations

import asyncio
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

    # Each command waits (up to 15 s) until 10 of them run at once on the server, then prints
    # how many it saw: 10 proves they run in parallel (two waves of 10 channels), by structure
    # rather than by a clock.
    probe = (
        'd=/tmp/dockyard-remote-test/probe; mkdir -p "$d"; touch "$d/$$"; '
        'n=$(ls "$d" | wc -l); i=0; while [ "$n" -lt 10 ] && [ $i -lt 300 ]; do sleep 0.05; '
        'i=$((i+1)); n=$(ls "$d" | wc -l); done; echo "$n"; sleep 0.2; rm "$d/$$"'
    )

    async def body(pool: SshPool) -> tuple[Result, list[Result]]:
        ssh = pool.transport(host)
        await ssh.put(b"SECRET=1\n", path, mode=0o600)
        stat = await ssh.run(["stat", "-c", "%a %U %s", path])
        probes = await asyncio.gather(*(ssh.run(["sh", "-c", probe]) for _ in range(20)))
        (await ssh.run(["rm", "-rf", "/tmp/dockyard-remote-test"])).check(host, ["rm"])
        return stat, list(probes)

    stat, probes = with_pool(lab, body)
    assert stat.stdout == f"600 {lab.ssh.user} 9\n"
    assert all(r.ok for r in probes)
    assert [int(r.stdout) >= 10 for r in probes] == [True] * 20, [r.stdout for r in probes]
