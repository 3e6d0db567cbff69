"""The Engine API answers a lab server's docker queries exactly as its docker CLI does: each
recognized call is run both ways against the same daemon and the outputs compared (stdout,
stderr and status), over containers and images in the states a deploy meets (running, exited,
created, an image whose tag moved on, a docker.io name, an image known only by digest). Then
the fallback: an sshd refusing the socket, or no socket, gives the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dockyard.commands.argv import Argv
from dockyard.commands.prune import CONTAINER_LIST_FORMAT, IMAGE_LIST_FORMAT
from dockyard.flows.boot import PROXY_STATE_FORMAT
from dockyard.flows.build import PULL_CHECK_FORMAT
from dockyard.remote import SshOptions, SshPool, run_batch
from dockyard.remote.batch import perform
from dockyard.remote.engine import ProxyCall, answer, engine_call, shortcut
from dockyard.remote.result import Result
from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import (
    HELLO_IMAGE,
    PROXY_VERSION,
    build_proxy_image,
    lab_options,
    lab_pushes,
    login_on_server,
    push_images,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")
SURVEY = '{{.ID}}\t{{.State}}\t{{.Label "role"}}\t{{.Names}}'


def options(lab: LabDoc, socket: str | None = "/var/run/docker.sock") -> SshOptions:
    return lab_options(lab, docker_socket=socket)


def with_pool(lab: LabDoc, body: Callable[[SshPool], Awaitable[T]], **kw: str | None) -> T:
    async def go() -> T:
        async with SshPool(options(lab, **kw)) as pool:
            return await asyncio.wait_for(body(pool), 120)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def server(lab: LabDoc, lab_ssh: LabSsh, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Server 1 with the states above, made with its own docker CLI."""
    address = lab.servers[0].address
    reg = lab.registry.address
    root = tmp_path_factory.mktemp("engine")
    push_images(lab, root, lab_pushes(lab, ["v1", "v2"], proxy=None))
    login_on_server(lab, lab_ssh, address)
    # a tag pulled again after it moved: the old image keeps only its digest
    push_images(lab, root, [(f"{HELLO_IMAGE}:v1", f"{reg}/engd:again")])
    lab_ssh(address, "docker", "pull", "-q", f"{reg}/engd:again", timeout=300)
    push_images(lab, root, [(f"{HELLO_IMAGE}:v2", f"{reg}/engd:again")])
    lab_ssh(address, "docker", "pull", "-q", f"{reg}/engd:again", timeout=300)
    script = f"""
set -e
docker pull -q {reg}/hello:v1 >/dev/null
docker pull -q {reg}/hello:v2 >/dev/null
docker rm -f eng-web-v1 eng-web-v2 eng-workers-x eng-moved >/dev/null 2>&1 || true
docker tag {reg}/hello:v1 {reg}/eng:v1
docker tag {reg}/hello:v2 {reg}/eng:v2
docker tag {reg}/hello:v1 docker.io/library/eng:lib
docker tag {reg}/hello:v1 {reg}/eng:moving
L="--label service=eng --label destination="
docker run -d --name eng-web-v1 $L --label role=web {reg}/eng:v1 >/dev/null
docker run -d --name eng-web-v2 $L --label role=web {reg}/eng:v2 >/dev/null
docker stop eng-web-v2 >/dev/null
docker create --name eng-workers-x $L --label role=workers docker.io/library/eng:lib >/dev/null
docker create --name eng-moved $L {reg}/eng:moving >/dev/null
docker tag {reg}/eng:v2 {reg}/eng:moving
docker rmi {reg}/hello:v2 >/dev/null
"""
    lab_ssh(address, "sh", "-c", script, timeout=300)
    return address


async def both(pool: SshPool, host: str, argv: list[str]) -> tuple[Result, Result]:
    """The CLI's result and the API's rendering of the same call."""
    command = Argv(argv)
    call = engine_call(command)
    assert call is not None, argv
    transport = pool.transport(host)
    cli = await transport.run(command)
    answered = await transport.engine(call)
    assert answered is not None, "the lab's sshd forwards to the Docker socket"
    return cli, answer(call, *answered)


def test_queries_print_as_the_cli_prints_them(lab: LabDoc, server: str) -> None:
    reg = lab.registry.address
    queries = [
        ["docker", "ps", "--all", "--filter", "label=service=eng", "--filter",
         "label=destination=", "--format", SURVEY],
        ["docker", "ps", "-a", "--filter", "label=service=eng", "--format",
         CONTAINER_LIST_FORMAT],
        ["docker", "ps", "--filter", "label=service=eng", "--filter", "status=running",
         "--format", "{{.Names}}"],
        ["docker", "ps", "-a", "--filter", "label=service=none", "--format", "{{.ID}}"],
        ["docker", "ps", "-a", "--filter", "labl=x", "--format", "{{.ID}}"],
        ["docker", "inspect", "--format", PROXY_STATE_FORMAT, "eng-web-v1"],
        ["docker", "inspect", "--format", PROXY_STATE_FORMAT, "eng-web-v2"],
        ["docker", "inspect", "--format", PROXY_STATE_FORMAT, "kamal-proxy"],
        ["docker", "image", "inspect", "--format", PULL_CHECK_FORMAT, f"{reg}/eng:v1"],
        ["docker", "image", "inspect", "--format", PULL_CHECK_FORMAT, "docker.io/library/eng:lib"],
        ["docker", "image", "inspect", "--format", PULL_CHECK_FORMAT, f"{reg}/eng:nope"],
        ["docker", "inspect", "-f", "{{ .Config.Labels.service }}", f"{reg}/eng:v2"],
        ["docker", "inspect", "-f", "{{ .Config.Labels.service }}", f"{reg}/nope:v2"],
        ["docker", "stop", "no-such-container"],
        ["docker", "tag", f"{reg}/eng:nope", f"{reg}/eng:x"],
    ]  # fmt: skip

    async def body(pool: SshPool) -> list[tuple[list[str], Result, Result]]:
        return [(argv, *await both(pool, server, argv)) for argv in queries]

    compared = with_pool(lab, body)
    for argv, cli, api in compared:
        assert api == cli, argv
    listing = {r.stdout for _, r, _ in compared[:2]}
    assert any("eng-web-v1" in text for text in listing)  # the states are really there
    assert any("\texited\t" in r.stdout for _, r, _ in compared[1:2])
    assert compared[1][1].stdout.count(f"{reg}/eng:") >= 1
    assert "\tcreated\teng:lib" in compared[1][1].stdout  # the docker.io name, familiar
    moved = [line for line in compared[1][1].stdout.splitlines() if line.endswith(":moving")]
    assert not moved  # the moved container shows its image's short ID, both ways


def test_image_listing_rows_match(lab: LabDoc, server: str) -> None:
    """Docker lists an image's repositories in Go's random map order: the rows, not their
    order, must match."""
    argv = ["docker", "image", "ls", "--filter", "label=service=hello", "--format",
            IMAGE_LIST_FORMAT]  # fmt: skip

    async def body(pool: SshPool) -> tuple[Result, Result]:
        return await both(pool, server, argv)

    cli, api = with_pool(lab, body)
    assert cli.ok and api.ok and cli.stderr == api.stderr == ""
    assert sorted(api.stdout.splitlines()) == sorted(cli.stdout.splitlines())
    rows = api.stdout.splitlines()
    assert any(row.endswith(f"{lab.registry.address}/engd:<none>") for row in rows), rows
    assert any(row.endswith(" eng:lib") for row in rows), rows


def test_stop_and_tag_do_what_the_cli_does(lab: LabDoc, lab_ssh: LabSsh, server: str) -> None:
    reg = lab.registry.address

    async def body(pool: SshPool) -> list[Result]:
        host = pool.transport(server)
        commands = [
            Argv(["docker", "stop", "-t", "1", "eng-web-v1"]),
            Argv(["docker", "stop", "eng-web-v1"]),  # stopped already
            Argv(["docker", "tag", f"{reg}/eng:v1", f"{reg}/eng:tagged"]),
        ]
        results = []
        for command in commands:  # one after the other, as a batch runs them
            call = engine_call(command)
            assert call is not None
            answered = await host.engine(call)
            assert answered is not None
            results.append(answer(call, *answered))
        return results

    stopped, again, tagged = with_pool(lab, body)
    assert stopped == again == Result(0, "eng-web-v1\n", "")
    assert tagged == Result(0, "", "")
    state = lab_ssh(server, "docker", "inspect", "-f", "{{.State.Status}}", "eng-web-v1")
    assert state.stdout.strip() == "exited"
    ids = lab_ssh(
        server, "docker", "image", "inspect", "-f", "{{.Id}}", f"{reg}/eng:v1", f"{reg}/eng:tagged"
    ).stdout.split()
    assert len(ids) == 2 and ids[0] == ids[1]


def test_a_batch_gives_the_same_results_with_and_without_the_api(lab: LabDoc, server: str) -> None:
    commands = [
        Argv(["docker", "ps", "-a", "--filter", "label=service=eng", "--format", SURVEY]),
        Argv(["sh", "-c", "echo shell"]),
        Argv(["docker", "inspect", "--format", PROXY_STATE_FORMAT, "kamal-proxy"]),
    ]

    async def body(pool: SshPool) -> tuple[list[Result], int]:
        transport = pool.transport(server)
        real_engine = transport.engine
        answered = 0

        async def counting_engine(*args: Any, **kwargs: Any) -> Any:
            nonlocal answered
            result = await real_engine(*args, **kwargs)
            answered += result is not None
            return result

        transport.engine = counting_engine  # type: ignore[method-assign]
        return await run_batch(transport, commands, parallel=True), answered

    with_api, through_api = with_pool(lab, body)
    with_cli, through_cli = with_pool(lab, body, socket=None)
    no_socket, through_none = with_pool(lab, body, socket="/run/no-such-docker.sock")
    assert with_api == with_cli == no_socket
    # the same results, and really by both routes: the API answered only with its socket
    assert through_api > 0 and through_cli == 0 and through_none == 0
    assert with_api[1].stdout == "shell\n" and "eng-web-v1" in with_api[0].stdout


def test_an_sshd_that_refuses_the_socket_leaves_the_cli(
    lab: LabDoc, lab_ssh: LabSsh, server: str, tmp_path: Path
) -> None:
    """A second sshd on the server with streamlocal forwarding off (as some hardened servers
    have it): the channel is refused and the batch runs the CLI."""
    lab_ssh(
        server, "sh", "-c",
        "kill $(cat /run/sshd-2222.pid 2>/dev/null) 2>/dev/null; "
        "/usr/sbin/sshd -p 2222 -o AllowStreamLocalForwarding=no -o PidFile=/run/sshd-2222.pid",
    )  # fmt: skip
    try:
        known = tmp_path / "known_hosts"
        lines = Path(lab.ssh.known_hosts).read_text().splitlines()
        known.write_text(
            "".join(
                f"[{server}]:2222 {line.split(None, 1)[1]}\n"
                for line in lines
                if line.split(None, 1)[0] == server
            )
        )

        async def go() -> tuple[list[Result], object]:
            opts = dataclasses.replace(options(lab), port=2222, known_hosts=(str(known),))
            async with SshPool(opts) as pool:
                transport = pool.transport(server)
                results = await run_batch(
                    transport,
                    [Argv(["docker", "inspect", "--format", PROXY_STATE_FORMAT, "eng-web-v2"])],
                )
                call = engine_call(Argv(["docker", "stop", "x"]))
                assert call is not None
                return results, await transport.engine(call)

        results, refused = asyncio.run(go())
        assert refused is None
        assert results[0].stdout.split("\t")[1] == "false"
    finally:
        lab_ssh(server, "sh", "-c", "kill $(cat /run/sshd-2222.pid) 2>/dev/null || true")


def test_proxy_commands_reach_dockyard_proxy_through_its_volume(
    lab: LabDoc, lab_ssh: LabSsh, server: str, tmp_path: Path
) -> None:
    """dockyard-proxy run as Kamal runs it (its state in the kamal-proxy-config volume): the
    `docker exec kamal-proxy kamal-proxy ...` calls a deploy makes are answered through the
    socket in that volume, exactly as docker exec prints them; with the socket gone (the
    proxy stopped), docker exec again."""
    reg = lab.registry.address
    image = f"{reg}/dockyard-proxy:{PROXY_VERSION}"
    push_images(lab, tmp_path, lab_pushes(lab, [], proxy=build_proxy_image()))
    lab_ssh(
        server, "sh", "-c",
        f"docker rm -f kamal-proxy >/dev/null 2>&1; docker run -d --name kamal-proxy "
        f"--volume kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy {image} "
        "kamal-proxy run --http-port 8080 --https-port 8443 >/dev/null",
        timeout=300,
    )  # fmt: skip
    exec_ = ["docker", "exec", "kamal-proxy", "kamal-proxy"]
    calls = [
        [*exec_, "list"],
        [*exec_, "remove", "no-such-service"],
        [*exec_, "deploy", "web", "--target=eng-web-v1:80", "--bogus-flag"],
        [*exec_, "deploy", "web", "--target=127.0.0.1:1", "--deploy-timeout=1s", "--host=a.test"],
    ]

    async def body(pool: SshPool) -> list[tuple[Result, Result | None]]:
        transport = pool.transport(server)
        for _ in range(50):  # the proxy's socket comes up a moment after the container
            if await perform(transport, ProxyCall(("list",))) is not None:
                break
            await asyncio.sleep(0.1)
        compared = []
        for argv in calls:
            call = shortcut(Argv(argv))
            assert isinstance(call, ProxyCall)
            compared.append((await transport.run(Argv(argv)), await perform(transport, call)))
        return compared

    try:
        compared = with_pool(lab, body)
        for argv, (cli, door) in zip(calls, compared, strict=True):
            assert door is not None, f"not answered through the volume: {argv}"
            if argv[-1] == "--host=a.test":  # the probes' details differ run to run
                assert not cli.ok and not door.ok
                assert cli.stderr.splitlines()[0] == door.stderr.splitlines()[0]
            else:
                assert door == cli, argv
        assert compared[0][1] is not None and compared[0][1].stdout.startswith("Service")
        assert not compared[1][1].ok  # type: ignore[union-attr]
        lab_ssh(server, "docker", "stop", "kamal-proxy")

        async def stopped(pool: SshPool) -> Result | None:
            return await perform(pool.transport(server), ProxyCall(("list",)))

        assert with_pool(lab, stopped) is None  # no socket: the caller runs docker exec
    finally:
        lab_ssh(server, "sh", "-c", "docker rm -f kamal-proxy; docker volume rm -f "
                "kamal-proxy-config", check=False)  # fmt: skip
