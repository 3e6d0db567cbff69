"""The deploy commands' CLI surface: global options on every command, errors without
tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli import main

FLAGS = ("-v", "-q", "-h, --hosts", "-r, --roles", "-p, --primary", "-c, --config-file",
         "-d, --destination", "-H, --skip-hooks", "--version")  # fmt: skip


def test_every_deploy_command_takes_the_global_options(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["setup"], ["deploy"], ["redeploy"], ["rollback"], ["remove"],
                    ["build", "push"], ["build", "pull"], ["build", "deliver"]):  # fmt: skip
        assert main([*command, "--help"]) == 0
        out = capsys.readouterr().out
        for flag in FLAGS:
            assert flag in out, (command, flag)
    main(["rollback", "--help"])
    assert "[VERSION]" in capsys.readouterr().out


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dockyard", "deploy", "-P", "--version", "v1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: ")
    assert "deploy.yml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_role_filter_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(
        "service: s\nimage: s\nservers: [10.9.9.9]\nbuilder:\n  arch: amd64\n"
        "registry:\n  username: u\n  password: p\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "dockyard", "deploy", "-P", "--version", "v1", "-r", "db*"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "No --roles match for db*" in proc.stderr
    assert "Traceback" not in proc.stderr
