"""`load_secrets`: which files, in which order, and how `$(kamal secrets ...)` is evaluated.

The parity tests run the real Kamal 2.11 (`kamal secrets print`) on the same project and
compare its output with ours.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dockyard.config.secrets import load_secrets, secrets_files
from dockyard.errors import ConfigError

DEPLOY_YML = """\
service: app
image: app
servers: [127.0.0.1]
registry:
  server: localhost:5555
builder:
  arch: amd64
"""


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "project"
    (root / ".kamal").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "config/deploy.yml").write_text(DEPLOY_YML)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_common_then_main_file_later_wins_and_files_are_parsed_separately(
    tmp_path: Path,
) -> None:
    root = project(
        tmp_path,
        {
            ".kamal/secrets-common": "X=common\nSHARED=common\n",
            ".kamal/secrets": "SHARED=main\nY=$X\n",
            ".kamal/secrets.staging": "SHARED=staging\nZ=$KAMAL_DESTINATION\n",
        },
    )
    assert load_secrets(root, None) == {"X": "common", "SHARED": "main", "Y": ""}


def test_destination_reads_common_and_dest_file_but_not_the_plain_file(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            ".kamal/secrets-common": "X=common\n",
            ".kamal/secrets": "PLAIN=yes\n",
            ".kamal/secrets.staging": "SHARED=staging\nZ=$KAMAL_DESTINATION\n",
        },
    )
    assert load_secrets(root, "staging") == {"X": "common", "SHARED": "staging", "Z": "staging"}


def test_missing_files_and_custom_secrets_path(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    assert load_secrets(root, None) == {}
    (root / "conf").mkdir()
    (root / "conf/vault").write_text("A=1\n")
    assert load_secrets(root, None, "conf/vault") == {"A": "1"}
    assert secrets_files(root, "prod", "conf/vault") == [
        root / "conf/vault-common",
        root / "conf/vault.prod",
    ]


def test_file_values_override_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "from-env")
    monkeypatch.setenv("OTHER", "env-other")
    root = project(tmp_path, {".kamal/secrets": "TOKEN=from-file\nCOPY=$TOKEN\nO=$OTHER\n"})
    assert load_secrets(root, None) == {"TOKEN": "from-file", "COPY": "from-file", "O": "env-other"}


def test_kamal_secrets_fetch_and_extract_run_in_process(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            ".kamal/secrets": (
                "SECRETS=$(kamal secrets fetch --adapter test --account acme --from V A B)\n"
                "A=$(kamal secrets extract A ${SECRETS})\n"
                "B=$(dockyard secrets extract V/B $SECRETS)\n"
            )
        },
    )
    assert load_secrets(root, None) == {
        "SECRETS": r"\{\"V/A\":\"A/V\",\"V/B\":\"B/V\"\}",  # shell-escaped, as Kamal
        "A": "A/V",
        "B": "B/V",
    }


def test_kamal_secrets_errors_name_the_file_and_line(tmp_path: Path) -> None:
    root = project(
        tmp_path, {".kamal/secrets": 'OK=1\nX=$(kamal secrets extract NOPE \'{"A":"1"}\')\n'}
    )
    with pytest.raises(ConfigError, match=r"^\.kamal/secrets:2: Could not find secret NOPE$"):
        load_secrets(root, None)


def test_nested_kamal_calls_use_a_stand_in_when_kamal_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    root = project(
        tmp_path,
        {
            ".kamal/secrets": (
                "V=$(true && kamal secrets fetch -a test --account a XY | tr -d '{}')\nW=$(pwd)\n"
            )
        },
    )
    assert load_secrets(root, None) == {"V": '"XY":"YX"', "W": str(root)}


def test_the_stand_in_refuses_other_kamal_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    root = project(tmp_path, {".kamal/secrets": "V=$(true && kamal deploy)\n"})
    with pytest.raises(ConfigError, match="exited with status 127"):
        load_secrets(root, None)


def test_an_installed_kamal_comes_before_the_stand_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kamal").write_text('#!/bin/sh\necho real-kamal "$@"\n')
    (bin_dir / "kamal").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    root = project(tmp_path, {".kamal/secrets": "V=$(true && kamal secrets fetch x)\n"})
    assert load_secrets(root, None) == {"V": "real-kamal secrets fetch x"}


def test_failing_command_is_an_error_naming_the_file_and_line(tmp_path: Path) -> None:
    root = project(tmp_path, {".kamal/secrets": "A=1\nB=$(false)\n"})
    with pytest.raises(ConfigError) as exc:
        load_secrets(root, None)
    assert exc.value.message == ".kamal/secrets:2: the command `false` exited with status 1"


# -- parity with the real Kamal -----------------------------------------------------------------

PARITY_SECRETS = r"""
SECRETS=$(kamal secrets fetch --adapter test --account x A B/C LPARENdRPAREN)
A=$(kamal secrets extract A ${SECRETS})
C=$(kamal secrets extract C $SECRETS)
D=$(kamal secrets extract LPARENdRPAREN $SECRETS)
PLAIN=$(echo hi there)
SQ='single $A $(echo no)'
DQ="double $A ${A}x \$A \n tab\tq"
UQ=unquoted $A # comment
export EX=exported
ESC=\$(echo no)
NEST=$(echo $(echo nested))
EMPTY=
MULTI="line1
line2"
UQ2=a\nb\\c
DQ2="a\nb\\c\"d"
BR=${FOO:-default}
BR2=$A}
CMDV=$(echo $A ${A} \$SHELLVAR)
KEY.DOT=x
COLON: y
foo bar
LONE
CR=$(printf 'a\n\n')
SQML='a
b'
DOLLAR=$ $( x
DQEXP="cmd $(echo in dq)"
P=$(echo a \) b)
FROMENV=$PARITY_ENV
OVERRIDE=$PARITY_OVERRIDE
PARITY_OVERRIDE=file
AFTER=$PARITY_OVERRIDE
DEST=$KAMAL_DESTINATION
"""


def kamal_print(kamal: str, root: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [kamal, "secrets", "print", "--version=x", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("destination", [None, "staging"])
def test_same_values_as_kamal_secrets_print(
    kamal: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, destination: str | None
) -> None:
    files = {
        ".kamal/secrets-common": "COMMON=1\nCMN_OVERRIDDEN=common\n",
        ".kamal/secrets": PARITY_SECRETS + "CMN_OVERRIDDEN=main\n",
        ".kamal/secrets.staging": PARITY_SECRETS + "CMN_OVERRIDDEN=staging\n",
    }
    root = project(tmp_path, files)
    (root / "config/deploy.staging.yml").write_text("{}\n")
    env = {**os.environ, "PARITY_ENV": "from env", "PARITY_OVERRIDE": "env", "SHELLVAR": "sv"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = ("-d", destination) if destination else ()
    expected = kamal_print(kamal, root, env, *args)
    ours = "".join(f"{k}={v}\n" for k, v in load_secrets(root, destination).items())
    assert ours == expected


_TOKENS = [
    "a", "Z9", " ", "\t", "#", "'", '"', "\\", "\\n", "\\t", "$A", "${A}", "$B_1", "$", "{", "}",
    "\\$A", "$(echo x)", "\\$(echo y)", ":", "=", "é", "${A", "$A}", "  # note",
]  # fmt: skip


def _random_secrets_file(seed: int, lines: int = 60) -> str:
    """Dotenv text built from awkward pieces: quotes, escapes, comments, substitutions."""
    import random

    rng = random.Random(seed)
    out = ["A=first", "B_1='one'"]
    for n in range(lines):
        roll = rng.random()
        if roll < 0.08:
            out.append("# comment " + rng.choice(_TOKENS))
            continue
        if roll < 0.12:
            out.append("")
            continue
        key = rng.choice(["K", "A", "B_1", "KEY.X", "k_lower"]) + str(n % 7)
        lead = rng.choice(["", "", "  ", "export "])
        sep = rng.choice(["=", "=", "=", " = ", ": "])
        value = "".join(rng.choice(_TOKENS) for _ in range(rng.randint(0, 6)))
        if lead == "export ":
            value = "v" + value  # `export K=` with no value at all is an error in both
        quote = rng.choice(["", "", "'", '"'])
        out.append(f"{lead}{key}{sep}{quote}{value}{quote}")
    return "\n".join(out) + "\n"


def test_random_files_parse_like_kamal(kamal: str, tmp_path: Path) -> None:
    seeds = [11, 23, 37, 41]
    roots = {}
    for seed in seeds:
        root = project(tmp_path / str(seed), {".kamal/secrets": _random_secrets_file(seed)})
        roots[seed] = root
    env = {
        k: v for k, v in os.environ.items() if k not in ("A", "B_1", "K", "DOTENV_LINEBREAK_MODE")
    }
    procs = {
        seed: subprocess.Popen(
            [kamal, "secrets", "print", "--version=x"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed, root in roots.items()
    }
    for seed, proc in procs.items():
        expected, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:  # e.g. `export K=` with nothing after it: both must refuse
            assert "Dotenv::FormatError" in expected, expected
            with pytest.raises(ConfigError, match="has no value"):
                load_secrets(roots[seed], None)
            continue
        ours = "".join(f"{k}={v}\n" for k, v in load_secrets(roots[seed], None).items())
        assert ours == expected, f"seed {seed}"
