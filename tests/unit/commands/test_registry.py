"""Golden tests: registry commands (Kamal ``test/commands/registry_test.rb``)."""

from __future__ import annotations

from dockyard.commands import registry
from dockyard.commands.argv import Argv, Secret


def test_login_marks_both_credentials_secret() -> None:
    command = registry.login("hub.docker.com", "dhh", "secret")
    assert command == ("docker", "login", "hub.docker.com", "-u", "dhh", "-p", "secret")
    assert command is not None
    assert command.display() == "docker login hub.docker.com -u [REDACTED] -p [REDACTED]"


def test_login_without_server_targets_docker_hub() -> None:
    assert registry.login(None, "dhh", Secret("pw")) == ("docker", "login", "-u", "dhh", "-p", "pw")


def test_login_keeps_quotes_in_password_literal_instead_of_shell_escaping() -> None:
    # Kamal: -p "more-secret'\"" (a shell-escaped string); the program receives the bare value.
    command = registry.login("hub.docker.com", "dhh", Secret("more-secret'\""))
    assert isinstance(command, Argv)
    assert command.raw()[-1] == "more-secret'\""


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
