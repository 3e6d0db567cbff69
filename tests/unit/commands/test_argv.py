from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.commands.argv import (
    Argv,
    HomePath,
    Pipeline,
    Secret,
    ShellExpanded,
    argv,
    as_secret,
    docker,
    key_value_pairs,
    optionize,
    shell_expanded,
)


class ConfigSecret:
    """Stands in for ``dockyard.config.secret.Secret``: anything with ``reveal()``."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "[REDACTED]"


def test_docker_prepends_docker_and_drops_none() -> None:
    assert docker("ps", None, "-a") == ("docker", "ps", "-a")
    assert docker("ps", None, "-a") == ["docker", "ps", "-a"]


def test_equality_with_literals_reveals_secrets_and_shows_home_paths_as_pwd() -> None:
    command = argv("docker", "login", "-p", Secret("s3cret"), "-v", HomePath(".kamal/x:/y"))
    assert command == ("docker", "login", "-p", "s3cret", "-v", "$PWD/.kamal/x:/y")
    assert command != ("docker", "login", "-p", "[REDACTED]", "-v", "$PWD/.kamal/x:/y")


def test_display_masks_secrets_and_raw_reveals_them() -> None:
    command = docker("login", "-u", Secret("me"), "-p", Secret("pw"))
    assert command.display() == "docker login -u [REDACTED] -p [REDACTED]"
    assert command.raw() == ("docker", "login", "-u", "me", "-p", "pw")
    assert "pw" not in repr(command)
    assert "pw" not in str(command)
    assert command.has_secrets


def test_custom_redaction_like_kamal_build_args() -> None:
    command = docker("build", "--build-arg", Secret("TOKEN=abc", "TOKEN=[REDACTED]"))
    assert command.display() == "docker build --build-arg TOKEN=[REDACTED]"


def test_secret_like_values_from_config_become_secret_parts() -> None:
    command = docker("login", "-p", ConfigSecret("KAMAL_REGISTRY_PASSWORD", "hunter2"))
    assert isinstance(command.parts[3], Secret)
    assert command.raw()[-1] == "hunter2"
    assert "hunter2" not in command.display()


def test_as_secret_wraps_plain_values() -> None:
    assert as_secret("x").reveal() == "x"
    assert str(as_secret("x", "k=[REDACTED]")) == "k=[REDACTED]"


def test_shell_quotes_each_part_and_expands_only_home_paths() -> None:
    command = argv("echo", "a b", "$HOME", HomePath("dir with space/f"))
    assert command.shell() == "echo 'a b' '$HOME' \"$PWD\"/'dir with space/f'"


def test_raw_refuses_unresolved_home_paths() -> None:
    command = docker("run", "--volume", HomePath(".kamal/a:/b"))
    assert command.needs_home
    with pytest.raises(ValueError, match="with_home"):
        command.raw()
    resolved = command.with_home("/home/deploy/")
    assert not resolved.needs_home
    assert resolved.raw() == ("docker", "run", "--volume", "/home/deploy/.kamal/a:/b")
    assert command.raw(home="/root") == ("docker", "run", "--volume", "/root/.kamal/a:/b")


def test_argv_rejects_empty_and_foreign_parts() -> None:
    with pytest.raises(ValueError):
        Argv(())
    with pytest.raises(TypeError):
        Argv(("docker", 3))  # type: ignore[arg-type]


def test_stdin_is_part_of_identity_but_not_of_literal_equality() -> None:
    a = Argv(("tee", "f"), stdin="x\n")
    assert a == ("tee", "f")
    assert a != Argv(("tee", "f"), stdin="y\n")
    assert a.stdin_bytes() == b"x\n"
    assert hash(a) == hash(Argv(("tee", "f"), stdin="x\n"))
    assert hash(a) == hash(("tee", "f"))  # consistent with equality to a plain tuple


def test_pipeline_renders_stages_and_merges_stderr_of_the_first() -> None:
    pipeline = Pipeline((docker("logs", "c"), argv("grep", "it's")), merge_stderr=True)
    assert pipeline.shell() == "docker logs c 2>&1 | grep 'it'\"'\"'s'"
    with pytest.raises(ValueError):
        Pipeline(())


def test_optionize_like_kamal() -> None:
    options = optionize((("mount", "somewhere"), ("cap-add", True), ("dns", ["1", "2"])))
    assert options == ("--mount", "somewhere", "--cap-add", "--dns", "1", "--dns", "2")
    joined = optionize((("target", "c:80"), ("tls", True), ("x", None), ("b", False)), joined=True)
    assert joined == ("--target=c:80", "--tls", "--b=false")


def test_key_value_pairs_like_kamal_argumentize() -> None:
    pairs = key_value_pairs("--label", (("service", "app"), ("destination", None), ("x", False)))
    assert pairs == ("--label", "service=app", "--label", "destination", "--label", "x=false")


@given(
    st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00"), min_size=0), min_size=1)
)
def test_shell_rendering_round_trips_through_posix_word_splitting(parts: list[str]) -> None:
    command = Argv(["prog", *parts[:-1], Secret(parts[-1])])
    assert shlex.split(command.shell()) == list(command.raw())
    assert command.display().endswith("[REDACTED]")


def test_shell_expanded_values_render_like_kamal_escape_shell_value() -> None:
    assert shell_expanded("plain $HOME") == "plain $HOME"  # no braces: an ordinary str
    part = shell_expanded('A=${HOME}/x "q" `c` $y \\ ${B:-d}')
    assert isinstance(part, ShellExpanded)
    command = argv("docker", "run", "--env", part)
    assert command.plain()[-1] == 'A=${HOME}/x "q" `c` $y \\ ${B:-d}'
    assert command.shell() == 'docker run --env "A=${HOME}/x \\"q\\" \\`c\\` \\$y \\\\ ${B:-d}"'
    assert command.needs_shell
    with pytest.raises(ValueError, match="shell"):
        command.raw()


def test_key_value_pairs_mark_braced_values_for_the_shell() -> None:
    pairs = key_value_pairs("--env", (("A", "${X}"), ("B", "$X")))
    assert pairs == ("--env", ShellExpanded("A=${X}"), "--env", "B=$X")


def test_shell_expanded_with_variables_expands_every_dollar_reference() -> None:
    command = argv("x", ShellExpanded('default=$SSH_AUTH_SOCK "q" `c` \\', variables=True))
    assert command.shell() == 'x "default=$SSH_AUTH_SOCK \\"q\\" \\`c\\` \\\\"'
