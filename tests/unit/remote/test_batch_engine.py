"""run_batch with a transport that reaches the Engine API: recognized docker calls go to the
API, the rest to real local shell scripts, in the batch's order; a host without the API (or an
answer that cannot be read) gets the CLI. A fake ``docker`` on PATH stands for the CLI so that
the fallback is visible and harmless."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from dockyard.commands.argv import Argv
from dockyard.remote.batch import NOT_RUN, run_batch, run_one
from dockyard.remote.engine import EngineCall
from dockyard.remote.local import LocalTransport
from dockyard.remote.result import OutputLine, Result

PS = Argv(["docker", "ps", "-a", "--format", "{{.ID}} {{.Names}}"])
STOP = Argv(["docker", "stop", "app"])
LISTING = [{"Id": "f" * 64, "Names": ["/app"], "State": "running"}]


class EngineHost(LocalTransport):
    """Runs scripts locally for real; answers the API from ``answers`` (path -> status, body),
    logging every step in ``events``; ``reachable=False`` is a host without the API."""

    def __init__(
        self,
        events: list[str],
        answers: dict[str, tuple[int, bytes]],
        reachable: bool = True,
        sockets: dict[str, bytes] | None = None,
    ) -> None:
        super().__init__("box")
        self.events = events
        self.answers = answers
        self.reachable = reachable
        self.sockets = sockets or {}

    async def unix_call(
        self, path: str, data: bytes, *, timeout: float | None = None
    ) -> bytes | None:
        self.events.append(f"unix {path} {data.decode().strip()}")
        return self.sockets.get(path)

    async def run(self, argv, **kwargs):  # type: ignore[no-untyped-def]
        self.events.append("script")
        return await super().run(argv, **kwargs)

    async def engine(
        self, call: EngineCall, *, timeout: float | None = None
    ) -> tuple[int, bytes] | None:
        if not self.reachable:
            return None
        if call.path == "/_ping":
            return 200, b"OK"
        self.events.append(f"api {call.method} {call.path}")
        await asyncio.sleep(0)
        return self.answers.get(call.path.split("?")[0], (500, b'{"message":"unexpected"}'))


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``docker`` that prints ``cli: <args>`` (and fails for ``stop``), first on PATH."""
    tool = tmp_path / "bin" / "docker"
    tool.parent.mkdir()
    tool.write_text('#!/bin/sh\necho "cli: $*"\n[ "$1" != stop ]\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    return tool


def batch(host: EngineHost, commands: list[Argv], **kwargs: object) -> list[Result]:
    return asyncio.run(run_batch(host, commands, **kwargs))  # type: ignore[arg-type]


ANSWERS = {
    "/containers/json": (200, json.dumps(LISTING).encode()),
    "/containers/app/stop": (204, b""),
}


def test_recognized_calls_go_to_the_api_in_order(fake_docker: Path) -> None:
    events: list[str] = []
    host = EngineHost(events, ANSWERS)
    seen: list[OutputLine] = []
    commands = [Argv(["echo", "one"]), Argv(["echo", "two"]), STOP, Argv(["echo", "three"]), PS]
    results = batch(host, commands, on_output=seen.append)
    shown = ["one\n", "two\n", "app\n", "three\n", "ffffffffffff app\n"]
    assert [r.stdout for r in results] == shown
    assert all(r.ok for r in results)
    # the two echos share one script; the stop waits for it; the last echo waits for the stop
    assert events == [
        "script",
        "api POST /containers/app/stop",
        "script",
        "api GET /containers/json?all=1",
    ]
    assert [(line.host, line.text + "\n") for line in seen if line.text] == [
        ("box", text) for text in shown
    ]


def test_stop_on_error_holds_across_the_api_and_the_scripts(fake_docker: Path) -> None:
    events: list[str] = []
    host = EngineHost(
        events, {"/containers/app/stop": (404, b'{"message":"No such container: app"}')}
    )
    results = batch(host, [Argv(["echo", "a"]), STOP, Argv(["echo", "b"]), PS], stop_on_error=True)
    assert results[0].ok
    assert results[1] == Result(1, "", "Error response from daemon: No such container: app\n")
    assert results[2] == results[3] == Result(None, "", NOT_RUN)
    assert events == ["script", "api POST /containers/app/stop"]
    ended = batch(host, [STOP, Argv(["echo", "c"])], stop_on_error=False)
    assert ended[1].stdout == "c\n"


def test_a_stage_asks_the_api_beside_its_script(fake_docker: Path) -> None:
    events: list[str] = []
    host = EngineHost(events, ANSWERS)
    commands = [Argv(["sh", "-c", "exit 0"]), PS, Argv(["echo", "x"]), Argv(["echo", "y"])]
    results = batch(host, commands, stages=[0, 1, 1, 2], stop_on_error=True)
    assert [r.stdout for r in results] == ["", "ffffffffffff app\n", "x\n", "y\n"]
    assert events[0] == "script" and events[-1] == "script"
    assert sorted(events[1:3]) == ["api GET /containers/json?all=1", "script"]
    failing = [Argv(["sh", "-c", "exit 4"]), PS]
    results = batch(host, failing, stages=[0, 1], stop_on_error=True)
    assert results[0].exit_status == 4 and results[1] == Result(None, "", NOT_RUN)


def test_parallel_batch(fake_docker: Path) -> None:
    events: list[str] = []
    host = EngineHost(events, ANSWERS)
    results = batch(host, [Argv(["echo", "a"]), PS], parallel=True)
    assert [r.stdout for r in results] == ["a\n", "ffffffffffff app\n"]
    assert sorted(events) == ["api GET /containers/json?all=1", "script"]


def test_a_host_without_the_api_runs_the_whole_batch_as_one_script(fake_docker: Path) -> None:
    events: list[str] = []
    host = EngineHost(events, ANSWERS, reachable=False)
    results = batch(host, [Argv(["echo", "a"]), STOP, PS])
    assert [r.stdout for r in results] == [
        "a\n",
        "cli: stop app\n",
        "cli: ps -a --format {{.ID}} {{.Names}}\n",
    ]
    assert not results[1].ok  # the fake CLI's stop fails: its own status, as before
    assert events == ["script"]


def test_an_unreadable_answer_is_asked_of_the_cli(fake_docker: Path) -> None:
    events: list[str] = []
    host = EngineHost(events, {"/containers/json": (200, b"<html>")})
    results = batch(host, [PS, Argv(["echo", "b"])])
    assert results[0].stdout == "cli: ps -a --format {{.ID}} {{.Names}}\n"
    assert results[1].stdout == "b\n"


def test_env_keeps_the_batch_on_the_cli(fake_docker: Path) -> None:
    events: list[str] = []
    host = EngineHost(events, ANSWERS)
    results = batch(host, [PS], env={"X": "1"})
    assert results[0].stdout.startswith("cli: ps")
    assert events == ["script"]


PROXY_DEPLOY = Argv(
    ["docker", "exec", "kamal-proxy", "kamal-proxy", "deploy", "web", "--target=x:80"]
)
VOLUME = {"/volumes/kamal-proxy-config": (200, b'{"Mountpoint": "/vol/_data"}')}


def test_a_proxy_command_goes_to_the_socket_in_the_proxy_volume(fake_docker: Path) -> None:
    events: list[str] = []
    answered = {"/vol/_data/kamal-proxy.sock": b'{"ok": false, "error": "unhealthy"}\n'}
    host = EngineHost(events, VOLUME, sockets=answered)
    results = batch(host, [Argv(["echo", "a"]), PROXY_DEPLOY], stop_on_error=True)
    assert results[1] == Result(1, "", "Error: unhealthy\n")
    assert events == [
        "script",
        "api GET /volumes/kamal-proxy-config",
        'unix /vol/_data/kamal-proxy.sock {"method": "cli", "params": {"argv": ["deploy", "web", '
        '"--target=x:80"]}}',
    ]
    one = asyncio.run(run_one(host, PROXY_DEPLOY))
    assert one == Result(1, "", "Error: unhealthy\n")


@pytest.mark.parametrize(
    ("answers", "sockets"),
    [
        (VOLUME, {}),  # nothing listens there (another proxy, a stopped one)
        ({}, {}),  # no such volume
        (VOLUME, {"/vol/_data/kamal-proxy.sock": b"garbage"}),
    ],
)
def test_otherwise_the_proxy_command_runs_docker_exec(
    fake_docker: Path, answers: dict[str, tuple[int, bytes]], sockets: dict[str, bytes]
) -> None:
    host = EngineHost([], answers, sockets=sockets)
    results = batch(host, [PROXY_DEPLOY])
    assert results[0].stdout == "cli: exec kamal-proxy kamal-proxy deploy web --target=x:80\n"
    assert asyncio.run(run_one(host, PROXY_DEPLOY)).stdout == results[0].stdout


class CountingHost(EngineHost):
    """Also records how many API calls were in flight at once."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.flying = 0
        self.most = 0

    async def engine(
        self, call: EngineCall, *, timeout: float | None = None
    ) -> tuple[int, bytes] | None:
        if call.path == "/_ping":
            return await super().engine(call, timeout=timeout)
        self.flying += 1
        self.most = max(self.most, self.flying)
        await asyncio.sleep(0.02)
        try:
            return await super().engine(call, timeout=timeout)
        finally:
            self.flying -= 1


IMAGES = Argv(["docker", "image", "ls", "--format", "{{.ID}}"])


def test_consecutive_queries_are_asked_side_by_side(fake_docker: Path) -> None:
    host = CountingHost([], {**ANSWERS, "/images/json": (200, b"[]")})
    results = batch(host, [STOP, PS, IMAGES, Argv(["echo", "z"])])
    assert [r.ok for r in results] == [True] * 4
    assert host.most == 2  # the two listings; the stop went first, alone
    assert host.events.index("api POST /containers/app/stop") == 0


def test_a_failed_query_stops_the_queries_beside_it(fake_docker: Path) -> None:
    failing = {"/containers/json": (400, b'{"message":"bad filter"}'), "/images/json": (200, b"[]")}
    host = CountingHost([], failing)
    results = batch(host, [PS, IMAGES, Argv(["echo", "z"])], stop_on_error=True)
    assert results[0].stderr == "Error response from daemon: bad filter\n"
    assert results[1] == results[2] == Result(None, "", NOT_RUN)
    kept = batch(host, [PS, IMAGES], stop_on_error=False)
    assert kept[1] == Result(0, "", "")
