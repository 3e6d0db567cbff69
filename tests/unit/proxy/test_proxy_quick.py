"""The client fast path (dockyard.proxy.quick) against a real control server: every command line
gives the same exit status, output and server state as the full CLI, and anything it cannot
run goes to the full CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from test_control_rpc import Harness, _loopback_only_probes  # noqa: F401  (autouse fixture)

from dockyard.proxy import cli, quick
from dockyard.proxy.control.client import call


def _run(
    main: Callable[[list[str]], int],
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _script(port: int) -> list[list[str]]:
    target = f"127.0.0.1:{port}"
    return [
        ["deploy", "web", f"--target={target}", "--host=app.test", "--path-prefix=/app",
         "--health-check-interval=100ms", "--deploy-timeout=5s", "--buffer-requests",
         "--log-request-header=Cache-Control,User-Agent"],
        ["ls"],
        ["deploy", "web", "--host=x.test"],  # no target
        ["deploy", "web", "other", f"--target={target}"],  # one service only
        ["deploy", "web", f"--target={target}", "--tls=maybe"],
        ["deploy", "web", f"--target={target}", "--max-request-body=10"],
        ["deploy", "web", f"--target={target}", "--nope"],
        ["deploy", "web", f"--target={target}", "--deploy-timeout=soon"],
        ["deploy", "b", f"--target={target}", "--host=app.test", "--path-prefix=/app"],
        ["pause", "web", "--drain-timeout=1s", "--max-pause=2s"],
        ["stop", "web", "--message", "Back at noon"],
        ["list"],
        ["resume", "web"],
        ["rollout", "set", "web", "--percent=10"],
        ["rollout", "deploy", "web", f"--target={target}"],
        ["rollout", "set", "web", "--percent=10", "--list=beta"],
        ["rollout"],
        ["rollout", "stop", "web"],
        ["rm", "web"],
        ["remove", "web"],
        ["ls"],
    ]  # fmt: skip


def test_the_fast_path_answers_as_the_full_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_full = cli.main

    def full(argv: list[str] | None = None) -> int:
        calls.append(" ".join(argv or []))
        return real_full(argv)

    seen: dict[str, list[tuple[int, str, str]]] = {}
    states: dict[str, object] = {}
    for name, main in (("full", cli.main), ("quick", quick.main)):
        with Harness(tmp_path / name) as h:
            monkeypatch.setenv("XDG_RUNTIME_DIR", str(h.socket.parent))
            monkeypatch.setattr(cli, "main", full)
            port = str(h.backend_port)  # each harness has its own backend: named alike
            seen[name] = [
                (code, out.replace(port, "PORT"), err.replace(port, "PORT"))
                for code, out, err in (_run(main, argv, capsys) for argv in _script(int(port)))
            ]
            states[name] = json.loads(h.state.read_text().replace(port, "PORT"))
    assert seen["quick"] == seen["full"]
    assert states["quick"] == states["full"]
    # the script's answers are real ones: successes, usage errors, server errors
    codes = [code for code, _, _ in seen["quick"]]
    assert codes.count(0) >= 10 and codes.count(1) >= 8
    errors = [err for _, _, err in seen["quick"] if err]
    assert 'Error: required flag(s) "target" not set\n' in errors
    assert "Error: service not found\n" in errors
    row = seen["quick"][1][1].split("\n")[1].split()
    assert row[:4] == ["web", "app.test", "/app", "127.0.0.1:PORT"]
    assert calls == []  # the fast path never needed the full CLI


def test_relative_certificate_paths_are_the_clients(tmp_path: Path) -> None:
    method, params = cli.parse_client(
        ["deploy", "web", "--target=a:80", "--host=x.test", "--tls",
         "--tls-certificate-path=certs/x.pem", "--tls-private-key-path=../k.pem"],
        {"HOME": str(tmp_path)},
        "/srv/app",
    )  # fmt: skip
    assert method == "deploy"
    assert params["config"]["tls_certificate_path"] == "/srv/app/certs/x.pem"
    assert params["config"]["tls_private_key_path"] == "/srv/k.pem"


@pytest.mark.parametrize(
    "argv", [["run"], ["deploy", "--help"], ["list", "-h"], ["bogus"], [], ["rollout", "--help"]]
)
def test_what_the_fast_path_leaves_to_the_full_cli(argv: list[str]) -> None:
    assert not quick.handles(argv)


def test_no_server_falls_back_to_the_full_cli_and_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert _run(quick.main, ["ls"], capsys) == _run(cli.main, ["ls"], capsys)
    assert "unable to reach the proxy server" in _run(quick.main, ["ls"], capsys)[2]


def test_a_server_without_the_cli_call_gets_the_full_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older server answers "unknown method": nothing ran, so the full CLI sends its own
    call."""
    path = tmp_path / quick.SOCKET_NAME
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    methods: list[str] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                request = json.loads(conn.makefile().readline())
                methods.append(request["method"])
                answer = (
                    {"ok": False, "error": "unknown method 'cli'"}
                    if request["method"] == "cli"
                    else {"ok": True, "result": []}
                )
                conn.sendall(json.dumps(answer).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    code, out, _ = _run(quick.main, ["list"], capsys)
    thread.join(5)
    server.close()
    assert (code, methods) == (0, ["cli", "list"])
    assert out.split() == ["Service", "Host", "Path", "Target", "State", "TLS"]


def test_help_through_the_socket_is_refused_and_the_server_lives_on(tmp_path: Path) -> None:
    with Harness(tmp_path) as h:
        from dockyard.proxy.control.client import RpcError

        with pytest.raises(RpcError, match="help is not available"):
            call(h.socket, "cli", {"argv": ["deploy", "--help"], "cwd": "/", "env": {}})
        with pytest.raises(RpcError, match="bad request"):
            call(h.socket, "cli", {"argv": "deploy", "env": {}})
        assert call(h.socket, "cli", {"argv": ["ls"], "cwd": "/", "env": {}}) == []


def test_the_fast_path_loads_neither_argparse_nor_the_options(tmp_path: Path) -> None:
    with Harness(tmp_path) as h:
        probe = (
            "import sys\n"
            "from dockyard.proxy import quick\n"
            "code = quick.main(['ls'])\n"
            "heavy = ('argparse', 'dataclasses', 'dockyard.proxy.cli', 'asyncio', 'typing')\n"
            "print(code, [m for m in heavy if m in sys.modules], file=sys.stderr)\n"
        )
        env = {**os.environ, "XDG_RUNTIME_DIR": str(h.socket.parent)}
        done = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=30
        )
    assert done.stderr.strip() == "0 []", done.stderr
    assert done.stdout.split()[:6] == ["Service", "Host", "Path", "Target", "State", "TLS"]
