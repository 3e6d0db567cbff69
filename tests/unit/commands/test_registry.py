"""Golden tests: registry commands (Kamal ``test/commands/registry_test.rb``)."""

from __future__ import annotations

from dockyard.commands import registry
from dockyard.commands.argv import Argv, Secret

from .conftest import LoadConfig


def test_login_sends_the_password_on_stdin_instead_of_in_argv() -> None:
    command = registry.login("hub.docker.com", "dhh", "secret")
    assert command == ("docker", "login", "hub.docker.com", "-u", "dhh", "--password-stdin")
    assert command is not None
    assert "secret" not in command.raw()
    assert command.stdin_bytes() == b"secret"
    assert command.display() == "docker login hub.docker.com -u [REDACTED] --password-stdin"


def test_login_without_server_targets_docker_hub() -> None:
    command = registry.login(None, "dhh", Secret("pw"))
    assert command == ("docker", "login", "-u", "dhh", "--password-stdin")
    assert command is not None and command.stdin_bytes() == b"pw"


def test_login_keeps_quotes_in_password_literal_instead_of_shell_escaping() -> None:
    # Kamal: -p "more-secret'\"" (a shell-escaped string); docker receives the bare value.
    command = registry.login("hub.docker.com", "dhh", Secret("more-secret'\""))
    assert isinstance(command, Argv)
    assert command.stdin_bytes() == b"more-secret'\""


def test_login_is_skipped_for_local_registry() -> None:
    assert registry.login("localhost:5000", "u", "p") is None


def test_logout() -> None:
    assert registry.logout("hub.docker.com") == ("docker", "logout", "hub.docker.com")
    assert registry.logout(None) == ("docker", "logout")


def test_local_registry_detection_follows_kamal_regex() -> None:
    assert registry.is_local("localhost:5000")
    assert not registry.is_local("localhost")  # /^localhost[:$]/ is a character class
    assert not registry.is_local("registry.example.com")
    assert not registry.is_local(None)
    assert registry.local_port("localhost:5000") == 5000
    assert registry.local_port("localhost:abc") == 0


def test_local_registry_setup_is_start_then_run_instead_of_or_chain() -> None:
    assert registry.start_local() == ("docker", "start", "kamal-docker-registry")
    assert registry.run_local(5000) == (
        "docker", "run", "--detach", "-p", "127.0.0.1:5000:5000",
        "--name", "kamal-docker-registry", "registry:3",
    )  # fmt: skip


def test_local_registry_remove() -> None:
    assert registry.remove_local() == (
        ("docker", "stop", "kamal-docker-registry"),
        ("docker", "rm", "kamal-docker-registry"),
    )


def test_login_for_resolves_secret_names_and_accessory_registries(load: LoadConfig) -> None:
    raw = {
        "service": "app",
        "image": "dhh/app",
        "registry": {"server": "hub.docker.com", "username": "dhh",
                     "password": ["KAMAL_REGISTRY_PASSWORD"]},
        "servers": ["1.1.1.1"],
        "builder": {"arch": "amd64"},
        "accessories": {
            "db": {
                "image": "mysql:8.0",
                "hosts": ["1.1.1.1"],
                "registry": {"server": "other.hub.docker.com", "username": ["DB_USER"],
                             "password": "pw"},
            }
        },
    }  # fmt: skip
    config = load(raw, secrets="KAMAL_REGISTRY_PASSWORD=more-secret'\"\nDB_USER=user\n")
    command = registry.login_for(config)
    assert command == ("docker", "login", "hub.docker.com", "-u", "dhh", "--password-stdin")
    assert command is not None
    assert command.stdin_bytes() == b"more-secret'\""
    assert "more-secret" not in command.display()
    db = config.accessory("db")
    assert db is not None
    db_login = registry.login_for(config, db.registry)
    assert db_login == ("docker", "login", "other.hub.docker.com", "-u", "user", "--password-stdin")
    assert db_login is not None and db_login.stdin_bytes() == b"pw"
    assert registry.logout_for(config, db.registry) == ("docker", "logout", "other.hub.docker.com")
    assert registry.logout_for(config) == ("docker", "logout", "hub.docker.com")


def test_login_for_local_registry_is_none(load: LoadConfig) -> None:
    raw = {
        "service": "app",
        "registry": {"server": "localhost:5000"},
        "servers": ["1.1.1.1"],
        "builder": {"arch": "amd64"},
    }
    assert registry.login_for(load(raw)) is None
