"""The CLI side of app boot, proxy boot/reboot, build create/remove/details/dev and registry
setup/remove/login/logout: options, confirmation, errors before any connection, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli import main

CONFIG = """service: hello
image: hello
servers:
  - 10.9.9.1
registry:
  server: {server}
{auth}builder:
  arch: amd64
"""
AUTH = """  username: bob
  password:
    - KAMAL_REGISTRY_PASSWORD
"""


def _project(root: Path, server: str = "registry.test:5000", auth: str = AUTH) -> Path:
    (root / "config").mkdir(exist_ok=True)
    (root / "config" / "deploy.yml").write_text(CONFIG.format(server=server, auth=auth))
    (root / ".kamal").mkdir(exist_ok=True)
    (root / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=p\n")
    return root


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VERSION", "v1")
    return _project(tmp_path)


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["app", "boot", "--help"], ["--version", "--hosts", "--roles"]),
        (["proxy", "boot", "--help"], ["--hosts"]),
        (["proxy", "reboot", "--help"], ["--rolling", "-y, --confirmed"]),
        (["build", "dev", "--help"], ["--output", "--no-cache"]),
        (["build", "create", "--help"], ["--config-file"]),
        (["build", "details", "--help"], ["--destination"]),
        (["registry", "setup", "--help"], ["-L, --skip-local", "-R, --skip-remote"]),
        (["registry", "login", "--help"], ["-L, --skip-local", "-R, --skip-remote"]),
        (["registry", "logout", "--help"], ["-L, --skip-local"]),
        (["registry", "remove", "--help"], ["-R, --skip-remote"]),
    ],
)
def test_each_new_command_takes_kamals_options(
    argv: list[str], flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    for flag in flags:
        assert flag in out, (argv, flag)


def test_build_group_keeps_push_pull_deliver(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--help"]) == 0
    out = capsys.readouterr().out
    for name in ("push", "pull", "deliver", "create", "remove", "details", "dev"):
        assert f"  {name} " in out


def test_proxy_reboot_asks_and_stops_when_not_confirmed(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("n\n"))
    assert main(["proxy", "reboot"]) == 0  # Kamal: "Aborted", nothing done, status 0
    captured = capsys.readouterr()
    assert "brief outage on each host. Are you sure?" in captured.out
    assert "Aborted" in captured.err


def test_registry_login_with_a_local_registry_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(_project(tmp_path, "localhost:5555", ""))
    assert main(["registry", "login"]) == 1
    err = capsys.readouterr().err
    assert "cannot use `registry login` with a local registry" in err
    assert "dockyard registry setup" in err and "Traceback" not in err


def test_help_of_the_new_groups_imports_no_heavy_layer() -> None:
    code = (
        "import sys; from dockyard.cli import main;"
        "[main([g, '--help']) for g in ('build', 'registry', 'proxy', 'app')];"
        "heavy = [m for m in ('asyncssh', 'yaml', 'rich', 'dockyard.config', 'dockyard.flows')"
        " if m in sys.modules];"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
