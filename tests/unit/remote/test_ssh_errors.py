"""Error translation and command-line building of the SSH backend (no network)."""

from __future__ import annotations

import asyncio
import shlex
import socket
from pathlib import Path

import asyncssh
import pytest

from dockyard.errors import ConnectError, RemoteCommandError
from dockyard.remote.options import SshOptions
from dockyard.remote.ssh import SshPool, remote_command, translate_connect_error


def translate(exc: BaseException, known_hosts: list[str] | None = None) -> str:
    error = translate_connect_error(
        exc, user="root", host="1.2.3.4", port=2222, known_hosts=known_hosts or [], timeout=5
    )
    assert isinstance(error, ConnectError)
    assert error.layer == "ssh"
    return error.render()


def test_refused() -> None:
    text = translate(ConnectionRefusedError(111, "Connection refused"))
    assert text.startswith("ssh: cannot reach root@1.2.3.4:2222: connection refused")
    assert "ssh.port" in text


def test_timeout() -> None:
    assert "timed out after 5s" in translate(TimeoutError())


def test_dns() -> None:
    text = translate(socket.gaierror(-2, "Name or service not known"))
    assert "cannot resolve host name" in text


def test_auth_refused() -> None:
    text = translate(asyncssh.PermissionDenied("Permission denied"))
    assert "authentication refused by root@1.2.3.4:2222" in text
    assert "authorized_keys" in text


def test_unknown_host_key_says_how_to_fix(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    text = translate(asyncssh.HostKeyNotVerifiable("Host key is not trusted"), [str(kh)])
    assert "host key of root@1.2.3.4:2222 is unknown" in text
    assert f"ssh-keyscan -p 2222 1.2.3.4 >> {kh}" in text


def test_changed_host_key_says_how_to_fix(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[1.2.3.4]:2222 {key.export_public_key().decode()}")
    text = translate(asyncssh.HostKeyNotVerifiable("Host key is not trusted"), [str(kh)])
    assert "has CHANGED" in text
    assert "ssh-keygen -R '[1.2.3.4]:2222'" in text


def test_remote_command_quotes_once_and_exports_env() -> None:
    line = remote_command(["docker", "run", "--name", "a b"], {"X": "it's"})
    assert line == "export X='it'\"'\"'s'; docker run --name 'a b'"
    assert shlex.split(line.split("; ", 1)[1]) == ["docker", "run", "--name", "a b"]
    with pytest.raises(RemoteCommandError, match="bad environment variable name"):
        remote_command(["true"], {"A-B": "x"})


def test_pool_reports_missing_key_file_before_connecting(tmp_path: Path) -> None:
    async def go() -> None:
        async with SshPool(SshOptions(keys=(str(tmp_path / "missing"),))) as pool:
            await pool.transport("127.0.0.1").run(["true"])

    with pytest.raises(ConnectError, match=r"ssh\.keys: file not found"):
        asyncio.run(go())


def test_pool_reports_bad_key_data() -> None:
    async def go() -> None:
        async with SshPool(SshOptions(key_data=("not a key",))) as pool:
            await pool.transport("127.0.0.1").run(["true"])

    with pytest.raises(ConnectError, match=r"ssh\.key_data\[0\] is not a usable private key"):
        asyncio.run(go())


def test_closed_pool_refuses() -> None:
    async def go() -> None:
        pool = SshPool()
        await pool.close()
        await pool.transport("127.0.0.1").run(["true"])

    with pytest.raises(ConnectError, match="already closed"):
        asyncio.run(go())


def test_remote_command_with_timeout_adds_a_server_side_guard() -> None:
    line = remote_command(["docker", "pull", "img:1"], timeout=10)
    words = shlex.split(line)
    assert "timeout" in words and "KILL" in words and "12" in words
    # the inner line is the command line, intact, as one argument of sh -c
    assert """exec timeout -s KILL 12 "${SHELL:-/bin/sh}" -c 'docker pull img:1';""" in line
    assert "else eval 'docker pull img:1'; fi" in line
    assert remote_command(["true"]) == "true"


def test_dns_failures_are_retried_then_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    attempts: list[str] = []

    async def failing_connect(**kwargs: object) -> None:
        attempts.append(str(kwargs["host"]))
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr("dockyard.remote.ssh.asyncssh.connect", failing_connect)

    async def go() -> None:
        options = SshOptions(dns_retries=2, known_hosts=(str(known_hosts),))
        async with SshPool(options) as pool:
            await pool.transport("web1.example").run(["true"])

    with pytest.raises(ConnectError, match="cannot resolve host name"):
        asyncio.run(go())
    assert attempts == ["web1.example"] * 3


def test_other_connect_failures_are_not_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    attempts = 0

    async def refused(**kwargs: object) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("dockyard.remote.ssh.asyncssh.connect", refused)

    async def go() -> None:
        async with SshPool(SshOptions(known_hosts=(str(known_hosts),))) as pool:
            await pool.transport("web1").run(["true"])

    with pytest.raises(ConnectError, match=r"cannot reach root@web1:22: connection refused"):
        asyncio.run(go())
    assert attempts == 1
