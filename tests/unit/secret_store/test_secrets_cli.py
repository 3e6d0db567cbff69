"""`dockyard secrets fetch | extract | print` through the real CLI entry point."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dockyard.cli import main

from .conftest import FakeClis, answer


def test_fetch_prints_compact_json(capsys: pytest.CaptureFixture[str], fake_cli: FakeClis) -> None:
    fake_cli("aws").on(
        "secretsmanager batch-get-secret-value --secret-id-list prod/KEY --output json",
        answer({"SecretValues": [{"Name": "prod/KEY", "SecretString": "välue"}]}),
    )
    assert main(["secrets", "fetch", "-a", "aws_secrets_manager", "--from", "prod", "KEY"]) == 0
    assert capsys.readouterr().out == '{"prod/KEY":"välue"}\n'


def test_fetch_inline_is_shell_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secrets", "fetch", "--adapter=test", "--account", "a", "x y", "--inline"]) == 0
    assert capsys.readouterr().out == '\\{\\"x\\ y\\":\\"y\\ x\\"\\}\n'


def test_fetch_errors_are_messages_not_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secrets", "fetch", "-a", "1password", "X"]) == 1
    err = capsys.readouterr().err
    assert "needs --account" in err and "Traceback" not in err
    assert main(["secrets", "fetch", "X"]) == 2
    assert "--adapter" in capsys.readouterr().err


def test_extract_exact_key_then_suffix(capsys: pytest.CaptureFixture[str]) -> None:
    json_text = '{"vault/item/API_KEY":"k1","API":"exact","n":3}'
    assert main(["secrets", "extract", "API_KEY", json_text]) == 0
    assert main(["secrets", "extract", "API", json_text]) == 0
    assert main(["secrets", "extract", "n", json_text]) == 0
    assert capsys.readouterr().out == "k1\nexact\n3\n"
    assert main(["secrets", "extract", "KEY", json_text]) == 1
    assert capsys.readouterr().err == "Error: Could not find secret KEY\n"
    assert main(["secrets", "extract", "KEY", "not json"]) == 1
    assert "Could not read the secrets JSON" in capsys.readouterr().err


def test_print_shows_resolved_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config/deploy.yml").write_text(
        "service: app\nimage: app\nservers: [127.0.0.1]\nregistry:\n  server: localhost:5555\n"
        "builder:\n  arch: amd64\nsecrets_path: vault/secrets\n"
    )
    (tmp_path / "config/deploy.prod.yml").write_text("{}\n")
    (tmp_path / "vault").mkdir()
    (tmp_path / "vault/secrets").write_text("A=1\nB=$(echo two)\n")
    (tmp_path / "vault/secrets.prod").write_text("A=prod\n")
    monkeypatch.chdir(tmp_path)
    assert main(["secrets", "print"]) == 0
    assert capsys.readouterr().out == "A=1\nB=two\n"
    assert main(["secrets", "print", "-d", "prod"]) == 0
    assert capsys.readouterr().out == "A=prod\n"


PARITY_COMMANDS = [
    ["fetch", "-a", "test", "--account", "x", "A", "b c", "é/x", "tab\tq", 'quo"te'],
    ["fetch", "--adapter", "test", "--account", "x", "--from", "Vault/Item", "K1", "K2"],
    ["extract", "K2", '{"Vault/Item/K1":"1","Vault/Item/K2":"two"}'],
    ["extract", "K1", '{"K1":"exact","a/K1":"suffix"}'],
]


def test_output_matches_kamal(kamal: str, capsys: pytest.CaptureFixture[str]) -> None:
    procs = [
        subprocess.Popen([kamal, "secrets", *args], stdout=subprocess.PIPE, text=True)
        for args in PARITY_COMMANDS
    ]
    for args, proc in zip(PARITY_COMMANDS, procs, strict=True):
        expected, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        assert main(["secrets", *args]) == 0
        assert capsys.readouterr().out == expected, args
