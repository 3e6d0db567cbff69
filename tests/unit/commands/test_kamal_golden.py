"""Our builders against the commands the real Kamal 2.11 produced for the same configs.

The recording (``kamal_2_11.json``) is made by ``kamal_golden.py`` from Kamal's own command
classes. A recorded shell command is split into words the way a POSIX shell does (quotes and
backslashes, no expansion), and chains (``&&``, ``||``, ``;``) become a list of commands; our
argvs must equal those words.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dockyard.commands.argv import Argv

from .conftest import LoadConfig
from .kamal_golden import (
    CASES,
    CONFIGS,
    KAMAL_BIN,
    Case,
    fingerprint,
    generate,
    load_recording,
    shell_words,
)

RECORDED_FINGERPRINT, RECORDED = load_recording()
CHAIN_TOKENS = {"&&", "||", ";"}

# --- the one deliberate difference: log rotation by default -----------------------------------
# Where Kamal 2.11 writes only its default size cap (``--log-opt max-size=X``, no driver, no file
# count: no ``logging`` in the config, or the proxy's ``log_max_size``), Dockyard also rotates:
# it adds ``--log-opt max-file=5`` right after the size cap (DEFAULT_LOG_OPTIONS in
# commands/app.py, DEFAULT_LOG_MAX_FILE in commands/proxy.py). These are exactly the recorded
# cases where that happens; every other case must match Kamal word for word.
LOG_ROTATION_CASES = {
    "app run",
    "app run with destination and hostname",
    "app execute_in_new_container detached",
    "proxy run with run config",
    "proxy run without publish",
    "proxy start_or_run",
}
DOCKYARD_LOG_ROTATION = ("--log-opt", "max-file=5")


def has_kamal_default_size_cap_only(words: Sequence[str]) -> bool:
    caps = [i for i in range(len(words) - 1) if words[i] == "--log-opt"]
    return (
        len(caps) == 1
        and words[caps[0] + 1].startswith("max-size=")
        and "--log-driver" not in words
    )


def with_dockyard_log_rotation(words: Sequence[str]) -> list[str]:
    """Kamal's words with Dockyard's rotation default inserted after the size cap."""
    assert has_kamal_default_size_cap_only(words), words
    at = list(words).index("--log-opt") + 2
    return [*words[:at], *DOCKYARD_LOG_ROTATION, *words[at:]]


def expected_commands(case: Case, commands: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Kamal's commands for ``case``, with the documented log-rotation difference applied."""
    if case.name not in LOG_ROTATION_CASES:
        return commands
    return [tuple(with_dockyard_log_rotation(c)) if "--log-opt" in c else c for c in commands]


def test_log_rotation_cases_are_exactly_kamals_default_size_cap_ones() -> None:
    # The list above is not a free pass: it must name every recorded command that carries only
    # Kamal's size cap (and nothing else), so a new case cannot slip the difference in unseen.
    found = {
        c.name
        for c in CASES
        if c.kind == "argv"
        and any(has_kamal_default_size_cap_only(w) for w in split_chain(RECORDED[c.name]))
    }
    assert found == LOG_ROTATION_CASES


def test_with_dockyard_log_rotation_inserts_max_file_after_the_size_cap() -> None:
    assert with_dockyard_log_rotation(["run", "--log-opt", "max-size=10m", "img"]) == [
        "run", "--log-opt", "max-size=10m", "--log-opt", "max-file=5", "img",
    ]  # fmt: skip


@pytest.mark.parametrize("name", sorted(LOG_ROTATION_CASES))
def test_ours_is_kamals_argv_plus_the_rotation_default(name: str, load: LoadConfig) -> None:
    case = next(c for c in CASES if c.name == name)
    config = load(
        CONFIGS[case.config], case.destination, version=case.version, secrets=case.secrets
    )
    ours = as_commands(case.ours(config))
    kamal = split_chain(RECORDED[case.name])
    assert len(ours) == len(kamal)
    differing = [(o, k) for o, k in zip(ours, kamal, strict=True) if o != k]
    assert differing, "expected the rotation options to differ from Kamal's argv"
    for o, k in differing:
        # exactly two extra words, "--log-opt max-file=5", right after Kamal's size cap
        at = k.index("--log-opt") + 2
        assert o[:at] == k[:at]
        assert o[at : at + 2] == DOCKYARD_LOG_ROTATION
        assert o[at + 2 :] == k[at:]


def test_shell_words_follow_posix_double_quote_rules() -> None:
    assert shell_words('a "b \\$c \\"d\\" \\#e" \'f g\' h\\ i') == [
        "a",
        'b $c "d" \\#e',
        "f g",
        "h i",
    ]
    assert shlex.split('"\\$c"') != shell_words('"\\$c"')  # why shlex is not used


def split_chain(command: str) -> list[tuple[str, ...]]:
    commands: list[tuple[str, ...]] = [()]
    for word in shell_words(command):
        if word in CHAIN_TOKENS:
            commands.append(())
        else:
            commands[-1] = (*commands[-1], word)
    return commands


def as_commands(ours: Any) -> list[tuple[str, ...]]:
    if isinstance(ours, Argv):
        return [ours.plain()]
    assert isinstance(ours, Sequence)
    return [argv.plain() for argv in ours]


def test_recording_is_up_to_date_with_the_cases() -> None:
    # Fails when a case or config changed without regenerating (python -m ...kamal_golden).
    assert fingerprint() == RECORDED_FINGERPRINT


def test_every_case_was_recorded_without_error() -> None:
    assert sorted(RECORDED) == sorted(c.name for c in CASES)
    errors = {k: v for k, v in RECORDED.items() if isinstance(v, dict) and "error" in v}
    assert errors == {}


# Pipelines run under sh against a fake docker instead: see test_kamal_pipelines.py.
WORDS = [c for c in CASES if c.kind != "pipeline"]


@pytest.mark.parametrize("case", WORDS, ids=[c.name for c in WORDS])
def test_matches_kamal_2_11(case: Case, load: LoadConfig) -> None:
    config = load(
        CONFIGS[case.config], case.destination, version=case.version, secrets=case.secrets
    )
    ours = case.ours(config)
    recorded = RECORDED[case.name]
    if case.kind == "text" or case.kind == "env":
        assert ours == recorded
    else:
        assert as_commands(ours) == expected_commands(case, split_chain(recorded))


@pytest.mark.integration
@pytest.mark.skipif(not KAMAL_BIN.exists(), reason="needs the Kamal 2.11 binary")
def test_recording_matches_a_fresh_run_of_kamal() -> None:
    assert generate(out=None) == RECORDED


def sh_words(line: str, cwd: Path) -> list[str]:
    """The words a real ``sh`` makes of a command line (with ``$HOME`` and ``$PWD`` set)."""
    result = subprocess.run(
        ["sh", "-c", f"printf '%s\\0' {line}"],
        cwd=cwd,
        env={
            "HOME": "/home/deploy",
            "SSH_AUTH_SOCK": "/tmp/agent.sock",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split("\0")[:-1]


SINGLE = [
    c for c in CASES if c.kind == "argv" and not (set(shell_words(RECORDED[c.name])) & CHAIN_TOKENS)
]


@pytest.mark.parametrize("case", SINGLE, ids=[c.name for c in SINGLE])
def test_remote_shell_sees_the_same_words_as_for_kamal(
    case: Case, load: LoadConfig, tmp_path: Path
) -> None:
    # Stronger than word splitting: both lines go through a real shell, so ${HOME} expansion,
    # $PWD home paths and quoting must agree with Kamal's.
    config = load(
        CONFIGS[case.config], case.destination, version=case.version, secrets=case.secrets
    )
    ours = case.ours(config)
    command = ours if isinstance(ours, Argv) else ours[0]
    assert isinstance(command, Argv)
    kamal = sh_words(RECORDED[case.name], tmp_path)
    if case.name in LOG_ROTATION_CASES:
        kamal = with_dockyard_log_rotation(kamal)
    assert sh_words(command.shell(), tmp_path) == kamal
