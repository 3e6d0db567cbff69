"""The control protocol end to end: a real `RpcServer` on a temp Unix socket, driven by the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.proxy.cli import main
from dockyard.proxy.control.client import RpcError, call
from dockyard.proxy.control.router import ProxyRouter
from dockyard.proxy.control.rpc import RpcServer
from dockyard.proxy.control.state import StateStore


@pytest.fixture(autouse=True)
def _loopback_only_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Health probes of made-up target names never leave the machine (no DNS lookups)."""
    from dockyard.proxy.control import balancer
    from dockyard.proxy.control.health import HealthCheckFailed, probe_url

    real = balancer.http_probe

    async def guarded(target: Any, config: Any) -> Any:
        if target.host != "127.0.0.1":
            raise HealthCheckFailed(probe_url(target, config), "not loopback (test guard)")
        return await real(target, config)

    monkeypatch.setattr(balancer, "http_probe", guarded)


class Health:
    """A loopback HTTP server answering 200 to everything (a healthy target)."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()


class Harness:
    """Runs a router + RPC server (and one healthy backend) on an event loop in a thread."""

    def __init__(self, tmp: Path) -> None:
        self.socket = tmp / "run" / "kamal-proxy.sock"
        self.state = tmp / "config" / "kamal-proxy.state"
        self.loop = asyncio.new_event_loop()
        self.router = ProxyRouter(StateStore(self.state))
        self.rpc = RpcServer(self.router, self.socket)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.backend_port = 0

    def __enter__(self) -> Harness:
        self.thread.start()

        async def start() -> int:
            await self.rpc.start()
            self._health = await asyncio.start_server(Health().handle, "127.0.0.1", 0)
            port: int = self._health.sockets[0].getsockname()[1]
            return port

        self.backend_port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self.rpc.close()
            self._health.close()
            await self.router.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with Harness(tmp_path) as h:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(h.socket.parent))
        yield h


def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "kamal-proxy.sock").write_text("stale")
    with Harness(tmp_path) as h:
        assert call(h.socket, "list") == []


def test_deploy_list_pause_stop_resume_remove_round_trip(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{harness.backend_port}"
    assert (
        main(
            [
                "deploy",
                "web",
                f"--target={target}",
                "--host=app.test",
                "--path-prefix=/app",
                "--health-check-interval=100ms",
                "--deploy-timeout=5s",
            ]
        )
        == 0
    )
    assert main(["ls"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["Service", "Host", "Path", "Target", "State", "TLS"]
    assert out[1].split() == ["web", "app.test", "/app", target, "running", "no"]

    assert main(["pause", "web", "--drain-timeout=1s", "--max-pause=2s"]) == 0
    saved = json.loads(harness.state.read_text())[0]
    assert saved["pause_controller"]["state"] == 1
    assert saved["pause_controller"]["fail_after"] == 2_000_000_000
    assert main(["stop", "web", "--message", "Back at noon"]) == 0
    assert harness.router.service("web").stop_message == "Back at noon"
    assert main(["list"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert main(["resume", "web"]) == 0
    assert harness.router.service("web").state == "running"
    assert main(["rm", "web"]) == 0
    assert json.loads(harness.state.read_text()) == []
    assert main(["remove", "web"]) == 1
    assert capsys.readouterr().err == "Error: service not found\n"


def test_rollout_round_trip(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    target = f"127.0.0.1:{harness.backend_port}"
    assert main(["deploy", "web", f"--target={target}"]) == 0
    assert main(["rollout", "set", "web", "--percent=10"]) == 1
    assert capsys.readouterr().err == "Error: rollout target not set\n"
    assert main(["rollout", "deploy", "web", f"--target={target}"]) == 0
    assert main(["rollout", "set", "web", "--percent=10", "--list=beta"]) == 0
    saved = json.loads(harness.state.read_text())[0]
    assert saved["rollout_targets"] == [target]
    assert saved["rollout_controller"]["percentage"] == 10
    assert saved["rollout_controller"]["allowlist"] == ["beta"]
    assert main(["rollout", "stop", "web"]) == 0
    assert json.loads(harness.state.read_text())[0]["rollout_controller"] is None
    assert main(["rollout", "deploy", "nope", f"--target={target}"]) == 1
    assert capsys.readouterr().err == "Error: service not found\n"


def test_failed_deploy_message_comes_back_from_the_server(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    code = main(
        [
            "deploy",
            "web",
            f"--target=127.0.0.1:{dead}",
            "--deploy-timeout=300ms",
            "--health-check-interval=50ms",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err  # kamal-proxy's line, then what the probe saw and why
    assert err.startswith(
        "Error: target failed to become healthy within configured timeout (300ms)\n"
    )
    assert f"GET http://127.0.0.1:{dead}/up: dial tcp" in err
    assert harness.router.services == {}


def test_conflict_and_bad_target_errors(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{harness.backend_port}"
    assert main(["deploy", "a", f"--target={target}", "--host=x.test"]) == 0
    assert main(["deploy", "b", f"--target={target}", "--host=x.test"]) == 1
    assert "Error: host settings conflict with another service" in capsys.readouterr().err
    assert main(["deploy", "c", "--target=http://x:1"]) == 1
    assert "Error: invalid host pattern" in capsys.readouterr().err


def test_malformed_requests_get_an_error_answer(harness: Harness) -> None:
    import socket

    for payload in (b"not json\n", b'{"params": {}}\n', b'{"method": "remove"}\n'):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(harness.socket))
            s.sendall(payload)
            answer = json.loads(s.makefile().readline())
        assert answer["ok"] is False
        assert answer["error"].startswith("bad request")
    with pytest.raises(RpcError, match="unknown method"):
        call(harness.socket, "explode")
    with pytest.raises(RpcError, match="service not found"):
        call(harness.socket, "rollout_set", {"service": "x", "percent": 5})


def test_serve_restores_state_routes_requests_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`server.serve` (what `run` calls) in-process on loopback: restore, control socket, data
    plane, shutdown; once the last client left, the listener gives the freed heap back."""
    import http.client

    from dockyard.proxy.control import server as server_module
    from dockyard.proxy.control.server import RunSettings, serve

    trims: list[int] = []
    monkeypatch.setattr(server_module, "release_free_memory", lambda: bool(trims.append(1)))

    with socket_pair_port() as port, socket_pair_port() as https_port:
        pass
    settings = RunSettings(
        http_port=port,
        https_port=https_port,
        bind="127.0.0.1",
        socket=tmp_path / "kamal-proxy.sock",
        state_file=tmp_path / "kamal-proxy.state",
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        backend = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(Health().handle, "127.0.0.1", 0), loop
        ).result(5)
        target = f"127.0.0.1:{backend.sockets[0].getsockname()[1]}"
        for life in range(2):
            stop = asyncio.Event()
            running = asyncio.run_coroutine_threadsafe(serve(settings, stop), loop)
            deadline = time.monotonic() + 10
            while not settings.socket.exists():  # type: ignore[union-attr]
                assert time.monotonic() < deadline and not running.done()
                time.sleep(0.02)
            if life == 0:
                call(settings.socket, "deploy", {"service": "web", "targets": [target]})  # type: ignore[arg-type]
            else:  # restored from the state file written in the first life
                assert [r["service"] for r in call(settings.socket, "list")] == ["web"]  # type: ignore[arg-type]
            trimmed = len(trims)  # start-up gave its heap back too
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/anything")
            assert conn.getresponse().status == 200
            conn.close()
            deadline = time.monotonic() + 15  # the listener's idle delay is 2 s
            while len(trims) == trimmed:
                assert time.monotonic() < deadline, "no trim after the last client left"
                time.sleep(0.05)
            loop.call_soon_threadsafe(stop.set)
            running.result(15)
            assert not settings.socket.exists()  # type: ignore[union-attr]
        backend.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextlib.contextmanager
def socket_pair_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_serve_reports_a_busy_port_as_an_error(tmp_path: Path) -> None:
    import socket

    from dockyard.errors import ProxyError
    from dockyard.proxy.control.server import RunSettings, serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = RunSettings(
            http_port=busy.getsockname()[1],
            bind="127.0.0.1",
            socket=tmp_path / "kamal-proxy.sock",
            state_file=tmp_path / "kamal-proxy.state",
        )
        with pytest.raises(ProxyError, match=r"unable to listen on 127\.0\.0\.1:"):
            asyncio.run(serve(settings))


def test_run_opens_a_second_door_next_to_its_state(tmp_path: Path) -> None:
    """`serve` also listens in the state directory (a volume the host reaches); a `cli` call
    there without env or cwd is read with the server's own, as `docker exec` would run it."""
    from dockyard.proxy.control.server import RunSettings, serve

    with socket_pair_port() as port, socket_pair_port() as https_port:
        pass
    settings = RunSettings(
        http_port=port,
        https_port=https_port,
        bind="127.0.0.1",
        socket=tmp_path / "run" / "kamal-proxy.sock",
        state_file=tmp_path / "state" / "kamal-proxy.state",
    )
    door = tmp_path / "state" / "kamal-proxy.sock"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        stop = asyncio.Event()
        running = asyncio.run_coroutine_threadsafe(serve(settings, stop), loop)
        deadline = time.monotonic() + 10
        while not door.exists():
            assert time.monotonic() < deadline and not running.done()
            time.sleep(0.02)
        assert oct(door.stat().st_mode & 0o777) == "0o600"
        argv = ["deploy", "web", "--target=127.0.0.1:1", "--host=a.test", "--deploy-timeout=1s"]
        with pytest.raises(RpcError, match="target failed to become healthy"):
            call(door, "cli", {"argv": argv})
        assert call(door, "cli", {"argv": ["list"]}) == []  # the failed deploy left nothing
        with pytest.raises(RpcError, match=r"unrecognized arguments|unknown flag"):
            call(door, "cli", {"argv": ["list", "--bogus"]})
        loop.call_soon_threadsafe(stop.set)
        running.result(15)
        assert not door.exists() and not settings.socket.exists()  # type: ignore[union-attr]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_a_door_that_cannot_be_opened_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    router = ProxyRouter(StateStore(tmp_path / "s" / "state"))
    rpc = RpcServer(router, tmp_path / "main.sock", door=tmp_path / "file" / "door.sock")

    async def go() -> None:
        await rpc.start()
        assert call_path_exists(tmp_path / "main.sock")
        await rpc.close()
        await router.close()

    asyncio.run(go())
    assert not (tmp_path / "main.sock").exists()


def call_path_exists(path: Path) -> bool:
    import stat

    return path.exists() and stat.S_ISSOCK(path.stat().st_mode)


def test_each_control_call_ends_by_giving_freed_heap_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a call (once no other runs) the server returns the C heap's free pages."""
    from dockyard.proxy.control import rpc

    trims: list[int] = []
    monkeypatch.setattr(rpc, "release_free_memory", lambda: bool(trims.append(1)))
    assert call(harness.socket, "list") == []
    with pytest.raises(RpcError, match="service not found"):
        call(harness.socket, "remove", {"service": "nothing"})
    deadline = time.monotonic() + 5
    while len(trims) < 2 and time.monotonic() < deadline:  # after the answer went out
        time.sleep(0.01)
    assert len(trims) == 2


def test_release_free_memory_returns_the_heap_where_glibc_has_malloc_trim() -> None:
    import ctypes.util

    from dockyard.proxy.control.heap import release_free_memory

    glibc = ctypes.util.find_library("c") == "libc.so.6"
    assert release_free_memory() is glibc
    assert release_free_memory() is glibc  # the lookup is made once, the trim every time
