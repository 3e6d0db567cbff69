from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli import main
from dockyard.cli.app_cmd import command_words, parse_env, render
from dockyard.errors import DockyardError
from dockyard.flows.ops.base import Section

from .conftest import BASE


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(
        BASE + "aliases:\n  cfg: config\n  shell: app exec -i --reuse bash\n"
    )
    (tmp_path / "config" / "cache.conf").write_text("x\n")
    (tmp_path / ".kamal").mkdir()
    (tmp_path / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=p\nCACHE_PASSWORD=c\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VERSION", "v1")
    return tmp_path


def test_render_puts_each_hosts_output_under_its_title() -> None:
    text = render([Section("App Host: a", "a", "one\ntwo\n"), Section("App Host: b", "b", "")])
    assert text == "App Host: a\none\ntwo\n\nApp Host: b\n"


def test_command_words_join_and_split_like_the_remote_shell() -> None:
    assert command_words(["ls -la", "/tmp"]) == ["ls", "-la", "/tmp"]
    assert command_words(["sh", "-c", "'echo hi'"]) == ["sh", "-c", "echo hi"]
    assert parse_env(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(DockyardError, match="expected KEY=VALUE"):
        parse_env(["nope"])


def test_an_alias_runs_the_command_it_stands_for(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config"]) == 0
    direct = capsys.readouterr().out
    assert main(["cfg"]) == 0
    assert capsys.readouterr().out == direct != ""


def test_an_unknown_command_is_still_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["nonsense"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_unknown_accessory_is_a_clear_error_before_any_connection(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accessory", "boot", "db"]) == 2
    err = capsys.readouterr().err
    assert "no accessory named 'db'" in err and "cache" in err
    assert "Traceback" not in err


def test_exec_detach_with_reuse_is_refused_without_a_traceback(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["app", "exec", "--reuse", "--detach", "ls"]) == 1
    err = capsys.readouterr().err
    assert "--detach cannot be combined" in err and "Traceback" not in err


def test_global_options_are_accepted_by_the_ops_commands(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["app", "logs", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--hosts", "--roles", "--primary", "--grep", "--since", "--lines", "--follow"):
        assert flag in out
    assert main(["prune", "containers", "-h", "nohost*", "--retain", "2"]) == 2
    assert "No servers match --hosts nohost*" in capsys.readouterr().err


def test_help_of_the_ops_commands_imports_no_heavy_layer() -> None:
    # (Typer itself loads pydantic to coerce the parameters of any subcommand, so only our
    # own heavy layers are checked here; `dockyard --help` is checked in tests/unit/test_cli.)
    code = (
        "import sys; from dockyard.cli import main;"
        "[main([g, '--help']) for g in ('app', 'proxy', 'accessory', 'server', 'lock', 'prune')];"
        "heavy = [m for m in ('asyncssh', 'yaml', 'rich', 'dockyard.config', 'dockyard.flows')"
        " if m in sys.modules];"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
