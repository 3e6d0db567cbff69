from __future__ import annotations

import subprocess
import sys

import pytest

from dockyard import __version__
from dockyard.cli import main
from dockyard.proxy.cli import main as proxy_main


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage: dockyard" in out
    assert "version" in out


def test_unknown_command_is_a_clear_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "No such command" in err
    assert "Traceback" not in err


def test_proxy_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        proxy_main(["--help"])
    assert exc.value.code == 0
    assert "dockyard-proxy" in capsys.readouterr().out


def test_help_does_not_import_heavy_layers() -> None:
    code = (
        "import sys; from dockyard.cli import main; main(['--help']);"
        "heavy = [m for m in ('asyncssh', 'pydantic', 'yaml', 'rich', 'dockyard.config')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_typer_exit_code_is_the_process_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    import dockyard.cli.app as app_module

    app = app_module.build_app()

    @app.command("fail-with-three")
    def fail() -> None:
        raise typer.Exit(3)

    monkeypatch.setattr(app_module, "build_app", lambda: app)
    assert main(["fail-with-three"]) == 3


def test_lazy_command_table_matches_what_the_modules_register() -> None:
    from dockyard.cli.register import COMMAND_MODULES, COMMANDS, load_module_commands

    registered: dict[str, tuple[str, str]] = {}
    for module in COMMAND_MODULES:
        for name, command in load_module_commands(module).items():
            first_paragraph = " ".join((command.help or "").split("\n\n")[0].split())
            registered[name] = (module, first_paragraph)
    assert registered == COMMANDS


def test_a_lazy_command_is_loaded_only_when_used(capsys: pytest.CaptureFixture[str]) -> None:
    code = (
        "import sys; from dockyard.cli import main; rc = main(['app', '--help']);"
        "print(rc, 'dockyard.cli.app_cmd' in sys.modules, 'dockyard.cli.proxy_cmd' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "Usage: dockyard app" in out
    assert out.strip().splitlines()[-1] == "0 True False"
