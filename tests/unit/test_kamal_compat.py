"""`dockyard config` against the real `kamal config` (Kamal 2.11) on the same files.

Every project under tests/fixtures/configs/valid must print the same data with both tools (Ruby's
`:symbol` keys normalised to plain strings); every project under .../invalid must fail with both,
with the same message (which names the same key, in Kamal's `servers/web/hosts/1` form).

A fixture project may have an `args` file: extra arguments (`-d staging`), or `--git` to run in a
git repository with one commit and no VERSION, so that both tools take the version from HEAD
(`--git-dirty`: the same plus an uncommitted file).
The Kamal binary is /work/main/.cache/kamal-venv/bin/kamal (scripts/lib.sh `ensure_kamal`); if it
is missing the tests are skipped, or fail when CI is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.cli import main

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "configs"
KAMAL = Path(os.environ.get("DOCKYARD_KAMAL_BIN", REPO / ".cache" / "kamal-venv" / "bin" / "kamal"))
VALID = sorted(p.name for p in (FIXTURES / "valid").iterdir() if p.is_dir())
INVALID = sorted(p.name for p in (FIXTURES / "invalid").iterdir() if p.is_dir())
CACHE = REPO / ".cache" / "kamal-compat"
VERSION = "compat-version-1"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Pair:
    kamal: Outcome
    dockyard: Outcome


def _kamal_available() -> bool:
    return KAMAL.exists() and os.access(KAMAL, os.X_OK)


def _prepare(kind: str, name: str, base: Path) -> tuple[Path, list[str], dict[str, str]]:
    project = base / kind / name
    shutil.copytree(FIXTURES / kind / name, project)
    args_file = project / "args"
    args = args_file.read_text().split() if args_file.exists() else []
    args_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VERSION", "KAMAL_DESTINATION")}
    env["DOCKYARD_TEST_HOST"] = "10.0.0.1"
    env.pop("DOCKYARD_TEST_MISSING", None)
    if "--git" in args or "--git-dirty" in args:
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "init", "-q"], cwd=project, check=True)
        subprocess.run([*git, "add", "."], cwd=project, check=True)
        subprocess.run([*git, "commit", "-q", "-m", "fixture"], cwd=project, check=True)
        if "--git-dirty" in args:
            # Uncommitted changes, but the build context is a git clone: no suffix in Kamal.
            (project / "untracked.txt").write_text("dirty\n")
        args = [a for a in args if a not in ("--git", "--git-dirty")]
    else:
        env["VERSION"] = VERSION
    return project, args, env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> Outcome:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return Outcome(done.returncode, ANSI.sub("", done.stdout), ANSI.sub("", done.stderr))


def _fixture_key(kind: str, name: str) -> str:
    digest = hashlib.sha256(str(KAMAL.stat().st_size).encode())
    for path in sorted((FIXTURES / kind / name).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(FIXTURES)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:32]


def _kamal(kind: str, name: str, project: Path, args: list[str], env: dict[str, str]) -> Outcome:
    """Run `kamal config`, reusing a cached outcome for unchanged fixtures (Kamal is slow).

    The cache (under .cache/, keyed by the fixture's files) holds Kamal's own output only;
    fixtures that take the version from git are never cached.
    """
    use_cache = "VERSION" in env and not os.environ.get("DOCKYARD_COMPAT_NO_CACHE")
    cache = CACHE / f"{_fixture_key(kind, name)}.json"
    if use_cache and cache.exists():
        return Outcome(**json.loads(cache.read_text()))
    outcome = _run([str(KAMAL), "config", *args], project, env)
    if use_cache:
        CACHE.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(outcome.__dict__))
    return outcome


def _dockyard(project: Path, args: list[str], env: dict[str, str]) -> Outcome:
    """Run `dockyard config` in this process (fast), in the project directory and environment."""
    saved_cwd, saved_env = Path.cwd(), dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.chdir(project)
        os.environ.clear()
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["config", *args])
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return Outcome(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Pair]:
    if not _kamal_available():
        if os.environ.get("CI"):
            pytest.fail(f"the Kamal binary is missing: {KAMAL} (run scripts/lib.sh ensure_kamal)")
        pytest.skip(f"the Kamal binary is missing: {KAMAL}")
    base = tmp_path_factory.mktemp("compat")
    cases = [("valid", n) for n in VALID] + [("invalid", n) for n in INVALID]
    projects = {case: _prepare(*case, base) for case in cases}
    # Kamal takes about a second per run: run those in parallel, Dockyard in-process.
    with ThreadPoolExecutor(max_workers=8) as pool:
        kamal = pool.map(lambda case: _kamal(*case, *projects[case]), cases)
        results = {
            case: Pair(k, _dockyard(*projects[case])) for case, k in zip(cases, kamal, strict=True)
        }
    return results


class _RubyYamlLoader(yaml.SafeLoader):
    """Reads Ruby's YAML output: `!ruby/object:...` values become plain mappings."""


def _ruby_object(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


_RubyYamlLoader.add_multi_constructor("!ruby/object:", _ruby_object)
_SYMBOL = re.compile(r"^:[A-Za-z_]\w*$")


def normalise(value: Any) -> Any:
    """Ruby's `:symbol` keys and values become plain strings."""
    if isinstance(value, dict):
        return {str(k).removeprefix(":"): normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str) and _SYMBOL.match(value):
        return value[1:]
    return value


def kamal_message(err: str) -> str:
    match = re.search(r"ERROR \([\w:]+\): (.*)", err)
    assert match, f"no ERROR line in kamal's output:\n{err}"
    return match.group(1).strip()


def dockyard_message(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert lines, f"no Error line in dockyard's stderr:\n{err}"
    message = lines[0].removeprefix("Error: ")
    # Dockyard adds where: `config/deploy.yml:12: ` before Kamal's own wording.
    return re.sub(r"^\S+\.yml(?::\d+)?: ", "", message)


def test_there_are_enough_fixtures() -> None:
    assert len(VALID) >= 25
    assert len(INVALID) >= 20


@pytest.mark.parametrize("name", VALID)
def test_valid_config_prints_the_same_data(
    name: str, outcomes: dict[tuple[str, str], Pair]
) -> None:
    pair = outcomes[("valid", name)]
    assert pair.kamal.code == 0, f"kamal failed on a fixture meant to be valid:\n{pair.kamal.err}"
    assert pair.dockyard.code == 0, f"dockyard failed:\n{pair.dockyard.err}"
    expected = normalise(yaml.load(pair.kamal.out, Loader=_RubyYamlLoader))
    actual = yaml.safe_load(pair.dockyard.out)
    assert actual == expected


@pytest.mark.parametrize("name", INVALID)
def test_invalid_config_fails_on_the_same_key(
    name: str, outcomes: dict[tuple[str, str], Pair]
) -> None:
    pair = outcomes[("invalid", name)]
    assert pair.kamal.code != 0, f"kamal accepted a fixture meant to be invalid:\n{pair.kamal.out}"
    assert pair.dockyard.code != 0, f"dockyard accepted it:\n{pair.dockyard.out}"
    assert "Traceback" not in pair.dockyard.err
    assert dockyard_message(pair.dockyard.err) == kamal_message(pair.kamal.out + pair.kamal.err)
