"""The adapters send the vendor CLIs the same arguments as Kamal's adapters, and make the same
JSON of the answers: the real Kamal and Dockyard each run against their own copy of a fake CLI,
and the recorded calls and printed JSON are compared."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli import main

from .conftest import FakeCli, FakeClis, answer


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


# name -> (program, {args: answer or [answers]}, fetch arguments, extra environment)
SCENARIOS: dict[str, tuple[str, dict[str, Any], list[str], dict[str, str]]] = {
    "1password-signed-in": (
        "op",
        {
            "account get --account acme": answer("{}"),
            "item get Item --vault Vault --format json --account acme "
            "--fields label=f1,label=sec.f2": answer(
                [
                    {"reference": "op://Vault/Item/f1", "value": "one"},
                    {"reference": "op://Vault/Item/sec/f2", "value": "two"},
                ]
            ),
            "item get Other --vault Vault --format json --account acme "
            "--fields label=password": answer(
                {"reference": "op://Vault/Other/password", "value": "pw"}
            ),
        },
        [
            "-a",
            "1password",
            "--account",
            "acme",
            "Vault/Item/f1",
            "Vault/Item/sec/f2",
            "Vault/Other",
        ],
        {},
    ),
    "1password-sign-in": (
        "op",
        {
            "account get --account acme": answer(code=1),
            "signin --account acme --force --raw": answer("TOKEN\n"),
            "*": answer({"reference": "op://V/I/password", "value": "pw"}),
        },
        ["-a", "1password", "--account", "acme", "--from", "V", "I"],
        {},
    ),
    "bitwarden-unlock": (
        "bw",
        {
            "status": [answer({"status": "locked"}), answer({"status": "unlocked"})],
            "unlock --raw": answer("SESSION"),
            "sync": answer("ok"),
            "get item app": answer(
                {"fields": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
            ),
            "get item db": answer({"login": {"password": "dbpw"}}),
        },
        ["-a", "bitwarden", "--account", "me@x", "app/A", "app/B", "db"],
        {},
    ),
    "bitwarden-sm-all": (
        "bws",
        {
            "project list": answer("[]"),
            "secret list proj": answer([{"key": "K", "value": "v"}]),
        },
        ["-a", "bitwarden-sm", "proj/all"],
        {},
    ),
    "aws": (
        "aws",
        {
            "*": answer(
                {
                    "SecretValues": [
                        {"Name": "app/db", "SecretString": '{"user": "u", "password": "p"}'},
                        {"Name": "app/plain", "SecretString": "text"},
                    ],
                    "Errors": [],
                }
            )
        },
        ["-a", "aws_secrets_manager", "--account", "prod", "--from", "app", "db", "plain"],
        {},
    ),
    "gcp": (
        "gcloud",
        {
            "auth list --format=json": answer([{"account": "me@x.com"}]),
            "*": answer({"payload": {"data": _b64("s3cret")}}),
        },
        ["-a", "gcp", "--account", "me@x.com|sa@p.iam", "proj/db/3", "token"],
        {},
    ),
    "doppler": (
        "doppler",
        {
            "me --json": answer("{}"),
            "*": answer({"A": {"computed": "1"}, "B": {"computed": "2"}}),
        },
        ["-a", "doppler", "--from", "web/prd", "A", "B"],
        {"DOPPLER_TOKEN": ""},
    ),
    "lastpass": (
        "lpass",
        {
            "status --color never": answer("Logged in as me@x.\n"),
            "*": answer(
                [{"fullname": "Shared/db", "password": "p1"}, {"fullname": "app", "password": "p2"}]
            ),
        },
        ["-a", "lastpass", "--account", "me@x", "Shared/db", "app"],
        {},
    ),
    "passbolt": (
        "passbolt",
        {
            "verify": answer(),
            'list folders --filter Name == "Prod" --json': answer(
                [{"id": "f1", "name": "Prod", "folder_parent_id": ""}]
            ),
            'list folders --filter Name == "db" && FolderParentID == "f1" --json': answer(
                [{"id": "f2", "name": "db", "folder_parent_id": "f1"}]
            ),
            "*": answer([{"name": "TOKEN", "password": "t"}, {"name": "PASS", "password": "p"}]),
        },
        ["-a", "passbolt", "TOKEN", "Prod/db/PASS"],
        {},
    ),
    "enpass": (
        "enpass-cli",
        {
            "*": answer(
                [
                    {"title": "App", "label": "API_KEY", "password": "k"},
                    {"title": "Db", "label": "", "password": "d"},
                ]
            )
        },
        ["-a", "enpass", "--from", "/vaults/primary", "App/API_KEY", "Db"],
        {},
    ),
}


def _install(bin_dir: Path, program: str, table: dict[str, Any]) -> FakeCli:
    bin_dir.mkdir(parents=True)
    fake = FakeClis(bin_dir)(program)
    for args, response in {**table, "--version": answer("1.0"), "version": answer("1.0")}.items():
        responses = response if isinstance(response, list) else [response]
        fake.on(args, *responses)
    return fake


def _calls(fake: FakeCli) -> list[tuple[list[str], str | None]]:
    """Recorded calls, without the installation probes Kamal makes (`--version`)."""
    return [
        (argv, session)
        for argv, session in zip(fake.calls(), fake.sessions(), strict=True)
        if argv not in (["--version"], ["version"])
    ]


def test_same_calls_and_json_as_kamal(
    kamal: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = {}
    for name, (program, table, args, extra_env) in SCENARIOS.items():
        theirs = _install(tmp_path / name / "kamal", program, table)
        env = {**os.environ, **extra_env, "PATH": f"{theirs.bin_dir}:/usr/bin:/bin"}
        proc = subprocess.Popen(
            [kamal, "secrets", "fetch", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        runs[name] = (theirs, proc)
    for name, (theirs, proc) in runs.items():
        program, table, args, extra_env = SCENARIOS[name]
        expected, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name}: {expected}"
        ours = _install(tmp_path / name / "dockyard", program, table)
        with monkeypatch.context() as patch:
            patch.setenv("PATH", str(ours.bin_dir))
            for key, value in extra_env.items():
                patch.setenv(key, value)
            assert main(["secrets", "fetch", *args]) == 0, name
        out = capsys.readouterr().out
        assert json.loads(out) == json.loads(expected), name
        assert out == expected, name
        assert _calls(ours) == [_kamal_bug_fixed(call) for call in _calls(theirs)], name


def _kamal_bug_fixed(call: tuple[list[str], str | None]) -> tuple[list[str], str | None]:
    """Kamal passes `op signin --raw`'s output with its newline, which its quoting turns into a
    literal backslash-n (`--session TOKEN\\n`). We strip the newline: the session works."""
    argv, session = call
    return [arg.removesuffix("\\n") if arg.startswith("TOKEN") else arg for arg in argv], session
