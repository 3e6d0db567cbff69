"""`dockyard config`: the Kamal-shaped summary, `--full`, options, and errors on stderr."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from dockyard.cli import main

from .conftest import WriteProject

Enter = Callable[[Path], None]


@pytest.fixture
def in_project(monkeypatch: pytest.MonkeyPatch) -> Enter:
    def enter(root: Path) -> None:
        monkeypatch.chdir(root)
        monkeypatch.setenv("VERSION", "v1")
        monkeypatch.delenv("KAMAL_DESTINATION", raising=False)

    return enter


def test_summary(
    project: WriteProject, in_project: Enter, capsys: pytest.CaptureFixture[str]
) -> None:
    in_project(
        project(
            """
            servers:
              web: [h1]
              jobs: [h2]
            volumes: [/a:/b]
            logging: {driver: journald, options: {tag: "x y"}}
            ssh: {proxy: bastion}
            """
        )
    )
    assert main(["config"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data == {
        "roles": ["jobs", "web"],
        "hosts": ["h2", "h1"],
        "primary_host": "h1",
        "version": "v1",
        "repository": "acme/app",
        "absolute_image": "acme/app:v1",
        "service_with_version": "app-v1",
        "volume_args": ["--volume", "/a:/b"],
        "ssh_options": {
            "user": "root",
            "port": 22,
            "proxy": {"jump_proxies": "root@bastion"},
            "keepalive": True,
            "keepalive_interval": 30,
            "log_level": "fatal",
        },
        "sshkit": {},
        "builder": {"arch": "amd64"},
        "logging": ["--log-driver", '"journald"', "--log-opt", 'tag="x y"'],
    }


def test_options_config_file_destination_and_version(
    project: WriteProject, in_project: Enter, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project("servers: [h1]\n", files={"other/deploy.prod.yml": "servers: [h9]\n"})
    (root / "other" / "deploy.yml").write_text((root / "config" / "deploy.yml").read_text())
    in_project(root)
    assert main(["config", "-c", "other/deploy.yml", "-d", "prod", "--version", "abc"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert (data["hosts"], data["version"]) == (["h9"], "abc")


def test_secrets_never_printed(
    project: WriteProject, in_project: Enter, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(
        "servers: [h1]\nssh:\n  key_data: [SSH_KEY]\nenv:\n  secret: [DB_PASSWORD]\n",
        files={".kamal/secrets": "SSH_KEY=private-key-text\nDB_PASSWORD=hunter2\n"},
    )
    in_project(root)
    assert main(["config"]) == 0
    summary = capsys.readouterr().out
    assert yaml.safe_load(summary)["ssh_options"]["key_data"] == ["[REDACTED]"]
    assert main(["config", "--full"]) == 0
    full = capsys.readouterr().out
    for text in (summary, full):
        assert "private-key-text" not in text and "hunter2" not in text
    data = yaml.safe_load(full)
    assert data["roles"][0]["envs"]["h1"]["secrets"] == {"DB_PASSWORD": "DB_PASSWORD"}
    assert data["roles"][0]["container_prefix"] == "app-web"
    assert data["registry"]["password"] == {"name": "KAMAL_REGISTRY_PASSWORD"}


def test_errors_go_to_stderr_with_exit_code_2(
    project: WriteProject, in_project: Enter, capsys: pytest.CaptureFixture[str]
) -> None:
    in_project(project("servers:\n  web:\n    hosts: h1\n"))
    assert main(["config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "Error: config/deploy.yml:10: servers/web/hosts: should be an array\n"


def test_missing_file(
    tmp_path: Path, in_project: Enter, capsys: pytest.CaptureFixture[str]
) -> None:
    in_project(tmp_path)
    assert main(["config"]) == 2
    assert "Configuration file not found in" in capsys.readouterr().err


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "configs" / "valid"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()))
def test_full_view_of_every_valid_fixture(
    name: str,
    in_project: Enter,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    monkeypatch.setenv("DOCKYARD_TEST_HOST", "10.0.0.1")
    shutil.copytree(FIXTURES / name, tmp_path / name)
    in_project(tmp_path / name)
    args_file = tmp_path / name / "args"
    args = (
        [a for a in args_file.read_text().split() if not a.startswith("--git")]
        if (args_file.exists())
        else []
    )
    assert main(["config", "--full", *args]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["service"] and data["roles"] is not None
    for role in data["roles"]:
        assert set(role["envs"]) == set(role["hosts"])
