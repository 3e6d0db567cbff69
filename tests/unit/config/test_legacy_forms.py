"""Kamal 1 forms (and per-role volumes) are read in their Kamal 2 form with a warning, or refused.

The issue's config (tests/fixtures/legacy/issue/config/deploy.yml) is the one Kamal 2.11 rejects
twice; tests/unit/config/test_migrate.py compares it with `kamal config` of its migrated form.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dockyard.cli import main
from dockyard.commands.app import run as app_run
from dockyard.config import ConfigError, load_config

from .conftest import WriteProject

REPO = Path(__file__).resolve().parents[3]
ISSUE = REPO / "tests" / "fixtures" / "legacy" / "issue"
ENV = {"VERSION": "1"}


def _argv_text(argv: object) -> str:
    return " ".join(str(part) for part in getattr(argv, "parts", argv))  # type: ignore[arg-type]


def test_issue_config_loads_with_one_warning_for_the_builder() -> None:
    config = load_config(root=ISSUE, env=ENV)
    assert config.builder.arch == ("amd64",)
    assert config.builder.remote is None  # the default Docker socket: a plain local build
    assert config.builder.local is None
    assert len(config.warnings) == 1
    warning = config.warnings[0]
    assert warning.startswith("config/deploy.yml:19: builder/local as a mapping")
    assert "builder: {arch: amd64}" in warning
    web = config.role("web")
    assert web is not None
    assert web.volumes == ("data:/rails/storage",)  # role volumes: no warning
    assert web.options == {"network": "private", "volume": ["data:/rails/storage"]}


def test_role_volumes_follow_the_top_level_ones_and_reach_docker_run(
    project: WriteProject,
) -> None:
    root = project(
        """
        volumes: [/shared:/shared]
        servers:
          web:
            hosts: [10.0.0.1]
            volumes: [data:/rails/storage, /x:/y]
          jobs:
            hosts: [10.0.0.2]
            options:
              volume: /opt:/opt
          cron:
            hosts: [10.0.0.3]
            options: {volume: [/a:/a], memory: 1g}
            volumes: [/b:/b]
        """
    )
    config = load_config(root=root, env=ENV)
    assert config.warnings == ()
    web, jobs = config.role("web"), config.role("jobs")
    assert web is not None and jobs is not None
    assert web.volumes == ("/shared:/shared", "data:/rails/storage", "/x:/y")
    assert jobs.volumes == ("/shared:/shared", "/opt:/opt")
    cron = config.role("cron")
    assert cron is not None and cron.volumes == ("/shared:/shared", "/a:/a", "/b:/b")
    assert cron.options["memory"] == "1g"
    text = _argv_text(app_run(config, web, "10.0.0.1"))
    for volume in ("/shared:/shared", "data:/rails/storage", "/x:/y"):
        assert f"--volume {volume}" in text or f'--volume "{volume}"' in text
    assert "/x:/y" not in _argv_text(app_run(config, jobs, "10.0.0.2"))


def test_role_volumes_must_be_a_list(project: WriteProject) -> None:
    root = project("servers:\n  web:\n    hosts: [10.0.0.1]\n    volumes: data:/x\n")
    with pytest.raises(ConfigError, match=r"yml:11: servers/web/volumes: should be an array"):
        load_config(root=root, env=ENV)


@pytest.mark.parametrize(
    ("builder", "expected", "form"),
    [
        (
            "local: {arch: arm64, host: 'ssh://root@10.0.0.9'}",
            {"arch": ("arm64",), "remote": "ssh://root@10.0.0.9", "local": False},
            "builder: {arch: arm64, remote: ssh://root@10.0.0.9, local: false}",
        ),
        (
            "remote: {arch: amd64, host: 'ssh://root@10.0.0.9'}",
            {"arch": ("amd64",), "remote": "ssh://root@10.0.0.9", "local": False},
            "builder: {arch: amd64, remote: ssh://root@10.0.0.9, local: false}",
        ),
        (
            "local: {arch: arm64, host: 'unix:///var/run/docker.sock'}\n"
            "  remote: {arch: amd64, host: 'ssh://root@10.0.0.9'}",
            {"arch": ("arm64", "amd64"), "remote": "ssh://root@10.0.0.9", "local": None},
            "builder: {arch: [arm64, amd64], remote: ssh://root@10.0.0.9}",
        ),
        (
            "multiarch: true",
            {"arch": ("amd64", "arm64"), "remote": None, "local": None},
            "builder: {arch: [amd64, arm64]}",
        ),
        (
            "arch: arm64\n  multiarch: false",
            {"arch": ("arm64",), "remote": None, "local": None},
            "builder: {arch: arm64}",
        ),
    ],
)
def test_kamal1_builder_forms_are_read_with_a_warning(
    project: WriteProject, builder: str, expected: dict[str, object], form: str
) -> None:
    root = project(
        f"service: app\nimage: acme/app\nregistry: {{username: a, password: [P]}}\n"
        f"servers: [10.0.0.1]\nbuilder:\n  {builder}\n",
        base=False,
    )
    config = load_config(root=root, env=ENV)
    got = {"arch": config.builder.arch, "remote": config.builder.remote}
    got["local"] = config.builder.local
    assert got == expected
    assert len(config.warnings) == 1 and form in config.warnings[0], config.warnings


def test_multiarch_false_without_arch_is_refused_with_the_form_to_write(
    project: WriteProject,
) -> None:
    root = project(
        "service: app\nimage: acme/app\nregistry: {username: a, password: [P]}\n"
        "servers: [10.0.0.1]\nbuilder:\n  multiarch: false\n",
        base=False,
    )
    with pytest.raises(ConfigError, match="replace `multiarch: false` with `arch: amd64`"):
        load_config(root=root, env=ENV)


def test_top_level_healthcheck_becomes_the_proxy_healthcheck(project: WriteProject) -> None:
    root = project(
        """
        servers: [10.0.0.1]
        healthcheck:
          path: /healthz
          port: 4000
          interval: 5s
          max_attempts: 7
        """
    )
    config = load_config(root=root, env=ENV)
    web = config.role("web")
    assert web is not None and web.proxy is not None
    assert web.proxy.app_port == 4000
    assert web.proxy.healthcheck.path == "/healthz"
    assert web.proxy.healthcheck.interval == 5
    (warning,) = config.warnings
    assert "proxy: {app_port: 4000, healthcheck: {path: /healthz, interval: 5}}" in warning
    assert "(dropped: max_attempts)" in warning


def test_traefik_is_refused_with_what_to_write(project: WriteProject) -> None:
    root = project("servers: [10.0.0.1]\ntraefik:\n  options: {publish: ['8080:8080']}\n")
    with pytest.raises(ConfigError) as info:
        load_config(root=root, env=ENV)
    message = str(info.value)
    # 7 base lines, servers on line 8: the error names the traefik key's own line
    assert message.startswith("config/deploy.yml:9: traefik: traefik was replaced by kamal-proxy")
    assert "proxy: {host: app.example.com" in message


def test_role_traefik_flag_and_renamed_keys_are_read(project: WriteProject) -> None:
    root = project(
        """
        primary_web_role: app
        stop_wait_time: 12
        servers:
          app: [10.0.0.1]
          api:
            hosts: [10.0.0.2]
            traefik: true
        proxy: {host: a.example.com}
        """
    )
    config = load_config(root=root, env=ENV)
    assert config.primary_role_name == "app"
    assert config.drain_timeout == 12
    api = config.role("api")
    assert api is not None and api.proxy is not None
    assert len(config.warnings) == 3
    assert any("servers/api/proxy: true" in w for w in config.warnings)
    assert any("primary_role: app" in w for w in config.warnings)


def test_secrets_only_in_dotenv_give_a_warning_with_the_move(project: WriteProject) -> None:
    root = project("servers: [10.0.0.1]\n", files={".env": "KAMAL_REGISTRY_PASSWORD=s3cret\n"})
    (warning,) = load_config(root=root, env=ENV).warnings
    assert "mv .env .kamal/secrets" in warning
    (root / ".kamal").mkdir()
    (root / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=s3cret\n")
    assert load_config(root=root, env=ENV).warnings == ()


def test_accessory_port_as_an_integer_is_already_kamal2(project: WriteProject) -> None:
    root = project(
        "servers: [10.0.0.1]\naccessories:\n  db:\n    image: mysql:8\n    host: 10.0.0.1\n"
        "    port: 3306\n"
    )
    config = load_config(root=root, env=ENV)
    assert config.warnings == ()
    db = config.accessory("db")
    assert db is not None and db.port == "3306:3306"  # as Kamal 1 and 2 publish it


def test_dockyard_config_prints_the_warnings_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(ISSUE, tmp_path / "p")
    monkeypatch.chdir(tmp_path / "p")
    monkeypatch.setenv("VERSION", "1")
    assert main(["config"]) == 0
    out, err = capsys.readouterr()
    assert err.count("Warning: ") == 1 and "builder/local" in err
    assert "Warning" not in out and "arch: amd64" in out


def test_a_form_in_a_destination_file_is_named_with_that_file(project: WriteProject) -> None:
    root = project(
        "servers: [10.0.0.1]\n",
        files={"config/deploy.staging.yml": "builder:\n  multiarch: true\n"},
    )
    config = load_config(destination="staging", root=root, env=ENV)
    assert config.builder.arch == ("amd64", "arm64")
    (warning,) = config.warnings
    assert warning.startswith("config/deploy.staging.yml:2: builder/multiarch")
    (root / "config" / "deploy.staging.yml").write_text("traefik:\n  args: {}\n")
    with pytest.raises(ConfigError, match=r"deploy\.staging\.yml:1.*write `proxy:` instead"):
        load_config(destination="staging", root=root, env=ENV)


def test_every_command_prints_the_kamal1_warnings_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dockyard.cli.options import GlobalOptions, load

    config = load(GlobalOptions(config_file=ISSUE / "config" / "deploy.yml", version="v1"))
    err = capsys.readouterr().err
    assert config.warnings
    assert err == "".join(f"Warning: {w}\n" for w in config.warnings)
