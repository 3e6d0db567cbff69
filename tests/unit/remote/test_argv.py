from __future__ import annotations

import shlex
from dataclasses import dataclass

import pytest

from dockyard.remote.argv import (
    command_line,
    command_stdin,
    display_args,
    display_command,
    local_args,
    raw_args,
    shell_join,
)


@dataclass
class Secret:
    value: str

    def raw(self) -> str:
        return self.value

    def display(self) -> str:
        return "[REDACTED]"


@dataclass
class Argv:
    parts: list[str | Secret]

    def raw(self) -> list[str]:
        return [p if isinstance(p, str) else p.raw() for p in self.parts]

    def display(self) -> str:
        return shlex.join(p if isinstance(p, str) else p.display() for p in self.parts)


def test_plain_sequence_passes_through() -> None:
    assert raw_args(["docker", "ps", "-a"]) == ["docker", "ps", "-a"]
    assert raw_args(("echo", "")) == ["echo", ""]


def test_secret_parts_are_revealed_only_in_raw() -> None:
    argv = ["docker", "login", "-p", Secret("hunter2"), "reg"]
    assert raw_args(argv) == ["docker", "login", "-p", "hunter2", "reg"]
    assert display_args(argv) == ["docker", "login", "-p", "[REDACTED]", "reg"]
    assert "hunter2" not in display_command(argv)


def test_masked_command_object() -> None:
    argv = Argv(["docker", "run", "-e", Secret("TOKEN=abc"), "img"])
    assert raw_args(argv) == ["docker", "run", "-e", "TOKEN=abc", "img"]
    assert display_command(argv) == "docker run -e '[REDACTED]' img"
    assert display_args(argv) == ["docker", "run", "-e", "[REDACTED]", "img"]
    assert "abc" not in display_command(argv)


@pytest.mark.parametrize(
    "args",
    [
        ["echo", "a b", "c'd", 'e"f', "$HOME", "`x`", "a;b", "*", "", "\n", "-", "é"],
        ["sh", "-c", "echo $((1+2)) && exit 3"],
    ],
)
def test_shell_join_round_trips(args: list[str]) -> None:
    assert shlex.split(shell_join(args)) == args


def test_shell_join_quotes_metacharacters() -> None:
    assert shell_join(["echo", "a;rm -rf /"]) == "echo 'a;rm -rf /'"


def test_string_command_is_refused() -> None:
    with pytest.raises(TypeError, match="not a string"):
        raw_args("docker ps")


def test_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        raw_args([])


def test_bad_part_is_refused() -> None:
    with pytest.raises(TypeError, match="argv part"):
        raw_args(["echo", 3])  # type: ignore[list-item]


class RevealSecret:
    """Like dockyard.commands.Secret: reveal() gives the value, str() the mask."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "[REDACTED]"


class Pipeline:
    stdin = None

    def shell(self) -> str:
        return "docker logs x 2>&1 | grep -i 'secret token'"

    def display(self) -> str:
        return "docker logs x 2>&1 | grep -i [REDACTED]"


class WithStdin:
    def __init__(self, stdin: object) -> None:
        self.stdin = stdin

    def raw(self) -> list[str]:
        return ["docker", "login", "--password-stdin"]

    def display(self) -> str:
        return "docker login --password-stdin"


def test_reveal_style_secret_parts() -> None:
    argv = ["docker", "login", "-p", RevealSecret("pw"), "reg"]
    assert raw_args(argv)[3] == "pw"
    assert display_command(argv) == "docker login -p '[REDACTED]' reg"
    assert command_line(argv) == "docker login -p pw reg"


def test_shell_command_is_used_as_is_remotely_and_via_a_shell_locally() -> None:
    pipeline = Pipeline()
    assert command_line(pipeline) == pipeline.shell()
    assert local_args(pipeline)[1:] == ["-c", pipeline.shell()]
    assert local_args(pipeline)[0] in ("bash", "sh")
    assert "secret token" not in display_command(pipeline)
    with pytest.raises(TypeError, match="shell-only"):
        raw_args(pipeline)


def test_command_carried_stdin() -> None:
    assert command_stdin(WithStdin("pw\n")) == b"pw\n"
    assert command_stdin(WithStdin(RevealSecret("s"))) == b"s"
    assert command_stdin(WithStdin(None)) is None
    assert command_stdin(["cat"]) is None
