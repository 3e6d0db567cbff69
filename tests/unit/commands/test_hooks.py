"""Golden tests: hook path and environment (Kamal ``test/commands/hook_test.rb``, §2.1)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dockyard.commands import hooks
from dockyard.commands.argv import Secret
from dockyard.flows.context import DeployContext
from dockyard.remote import FakePool

from .conftest import LoadConfig
from .kamal_golden import CONFIGS

AT = datetime(2026, 11, 28, 9, 30, 5, tzinfo=UTC)


def test_hook_path_default_and_custom_path(load: LoadConfig, tmp_path: Path) -> None:
    # Kamal runs `.kamal/hooks/foo` (or `<hooks_path>/foo`) from the project root; Dockyard
    # runs the same file by its absolute path, with the root as working directory.
    def hook_path(hooks_path: str | None) -> Path:
        raw = dict(CONFIGS["app"]) | ({"hooks_path": hooks_path} if hooks_path else {})
        return DeployContext(config=load(raw), pool=FakePool()).hook_path("foo")

    assert hook_path(None) == tmp_path / ".kamal/hooks/foo"
    assert hook_path("custom/hooks/path") == tmp_path / "custom/hooks/path/foo"
    assert hook_path("/etc/hooks") == Path("/etc/hooks/foo")


def test_env_minimal_matches_kamal() -> None:
    env = hooks.hook_env(
        service="app", version="123", destination=None, recorded_at=AT, performer="ada"
    )
    assert env == {
        "KAMAL_RECORDED_AT": "2026-11-28T09:30:05Z",
        "KAMAL_PERFORMER": "ada",
        "KAMAL_VERSION": "123",
        "KAMAL_SERVICE_VERSION": "app@123",
        "KAMAL_SERVICE": "app",
        "KAMAL_HOSTS": "",
    }


def test_env_full() -> None:
    env = hooks.hook_env(
        service="app",
        version="0123456789abcdef",
        destination="staging",
        recorded_at=AT,
        performer="ada",
        hosts=["1.1.1.1", "1.1.1.2"],
        roles=["web"],
        lock=True,
        command="deploy",
        subcommand=None,
        runtime=42,
        secrets={"DB_PASSWORD": Secret("pw"), "PLAIN": "x"},
    )
    assert env == {
        "KAMAL_RECORDED_AT": "2026-11-28T09:30:05Z",
        "KAMAL_PERFORMER": "ada",
        "KAMAL_DESTINATION": "staging",
        "KAMAL_VERSION": "0123456789abcdef",
        "KAMAL_SERVICE_VERSION": "app@0123456",
        "KAMAL_SERVICE": "app",
        "KAMAL_HOSTS": "1.1.1.1,1.1.1.2",
        "KAMAL_ROLES": "web",
        "KAMAL_LOCK": "true",
        "KAMAL_COMMAND": "deploy",
        "KAMAL_RUNTIME": "42",
        "DB_PASSWORD": "pw",
        "PLAIN": "x",
    }
    assert list(env)[:6] == [
        "KAMAL_RECORDED_AT",
        "KAMAL_PERFORMER",
        "KAMAL_DESTINATION",
        "KAMAL_VERSION",
        "KAMAL_SERVICE_VERSION",
        "KAMAL_SERVICE",
    ]


def test_service_version_does_not_abbreviate_uncommitted_versions() -> None:
    assert hooks.service_version("app", "abc1234def_uncommitted_0a1b") == (
        "app@abc1234def_uncommitted_0a1b"
    )
    assert hooks.service_version("app", None) == "app"
    assert (
        hooks.hook_env(
            service="app", version=None, destination=None, recorded_at=AT, performer="p", lock=False
        )["KAMAL_LOCK"]
        == "false"
    )


def test_secret_hooks() -> None:
    assert {"pre-connect", "pre-deploy", "post-deploy"} == hooks.SECRET_HOOKS


def test_performer_comes_from_git_email_or_whoami() -> None:
    assert hooks.git_user_email() == ("git", "config", "user.email")
    assert hooks.git_user_name() == ("git", "config", "user.name")
    assert hooks.whoami() == ("whoami",)
    assert hooks.performer("ada@example.com\n", "ada\n") == "ada@example.com"
    assert hooks.performer("  \n", "ada\n") == "ada"
