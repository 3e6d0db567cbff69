"""`dockyard config --migrate` against the real Kamal 2.11.

The migrated files must pass `kamal config`, and `dockyard config` of the Kamal 1 files (read with
warnings) must print the same data as `kamal config` of the migrated ones. Tests needing Kamal
are skipped when its binary is missing, and fail when CI is set.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.cli import main

REPO = Path(__file__).resolve().parents[3]
LEGACY = REPO / "tests" / "fixtures" / "legacy"
KAMAL = Path(os.environ.get("DOCKYARD_KAMAL_BIN", REPO / ".cache" / "kamal-venv" / "bin" / "kamal"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _need_kamal() -> None:
    if not (KAMAL.exists() and os.access(KAMAL, os.X_OK)):
        if os.environ.get("CI"):
            pytest.fail(f"the Kamal binary is missing: {KAMAL}")
        pytest.skip(f"the Kamal binary is missing: {KAMAL}")


class _RubyLoader(yaml.SafeLoader):
    """Reads `kamal config` output (`!ruby/object` values become mappings)."""


_RubyLoader.add_multi_constructor(
    "!ruby/object:",
    lambda loader, _suffix, node: loader.construct_mapping(node, deep=True),
)


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).removeprefix(":"): _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, str) and re.fullmatch(r":[A-Za-z_]\w*", value):
        return value[1:]
    return value


def _kamal_config(project: Path, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("VERSION", "KAMAL_DESTINATION")}
    done = subprocess.run(
        [str(KAMAL), "config", "--version", "1", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, ANSI.sub("", done.stdout + done.stderr)
    return _normalise(yaml.load(done.stdout, Loader=_RubyLoader))


def _dockyard(project: Path, *args: str) -> tuple[int, str, str]:
    saved = Path.cwd()
    out, err = io.StringIO(), io.StringIO()
    try:
        os.chdir(project)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["config", *args])
    finally:
        os.chdir(saved)
    return code, out.getvalue(), err.getvalue()


def _copy(name: str, tmp_path: Path, label: str) -> Path:
    target = tmp_path / label
    shutil.copytree(LEGACY / name, target)
    return target


@pytest.mark.parametrize(
    ("name", "args"), [("issue", ()), ("many_forms", ()), ("many_forms", ("-d", "staging"))]
)
def test_dockyard_on_kamal1_files_matches_kamal_on_the_migrated_files(
    tmp_path: Path, name: str, args: tuple[str, ...]
) -> None:
    _need_kamal()
    original, migrated = _copy(name, tmp_path, "original"), _copy(name, tmp_path, "migrated")
    code, out, err = _dockyard(original, "--version", "1", *args)
    assert code == 0, err
    assert "Warning: " in err  # the Kamal 1 forms were noticed
    code, diff, _ = _dockyard(migrated, "--migrate")
    assert code == 0
    assert diff.startswith("--- a/config/deploy.yml")
    kamal = _kamal_config(migrated, *args)
    assert yaml.safe_load(out) == kamal
    # The migrated files are Kamal 2 form for Dockyard too: same data, no warnings.
    code, out_migrated, err_migrated = _dockyard(migrated, "--version", "1", *args)
    assert code == 0 and "Warning" not in err_migrated, err_migrated
    assert yaml.safe_load(out_migrated) == kamal


def test_migrate_keeps_comments_order_and_untouched_lines(tmp_path: Path) -> None:
    project = _copy("many_forms", tmp_path, "p")
    before = (project / "config" / "deploy.yml").read_text()
    code, diff, err = _dockyard(project, "--migrate")
    assert code == 0
    after = (project / "config" / "deploy.yml").read_text()
    for kept in (
        "# A Kamal 1 style config, as tutorials wrote them.\n",
        "# The primary role used to be called primary_web_role.\n",
        "  # Build on a remote arm box, like in the Kamal 1 docs.\n",
        "# seconds\n",
        '        - "shop_storage:/rails/storage" # SQLite lives here\n',  # quoting, comment
    ):
        assert kept in after
    keys = [line.split(":")[0] for line in after.splitlines() if re.match(r"^\w", line)]
    assert keys == [
        "service", "image", "primary_role", "drain_timeout", "servers", "proxy", "registry",
        "builder", "accessories",
    ]  # fmt: skip
    assert "traefik" not in after and "healthcheck:\n  path" not in after
    untouched = [line for line in before.splitlines() if line.startswith("    image: mysql")]
    assert untouched and untouched[0] in after
    assert "+drain_timeout: 20" in diff and "-stop_wait_time: 20" in diff
    assert "--- a/config/deploy.staging.yml" in diff
    assert err.count("Migrated: ") == 8
    # A second run has nothing to do and leaves the files alone.
    code, diff_again, err_again = _dockyard(project, "--migrate")
    assert code == 0 and diff_again == "" and "Nothing to migrate" in err_again
    assert (project / "config" / "deploy.yml").read_text() == after


def test_migrate_leaves_a_kamal2_file_byte_for_byte(tmp_path: Path) -> None:
    project = _copy("kamal_init", tmp_path, "p")
    before = (project / "config" / "deploy.yml").read_bytes()
    code, diff, err = _dockyard(project, "--migrate")
    assert code == 0 and diff == "" and "Nothing to migrate" in err
    assert (project / "config" / "deploy.yml").read_bytes() == before


def test_migrate_refuses_traefik_and_writes_no_file(tmp_path: Path) -> None:
    project = _copy("many_forms", tmp_path, "p")
    staging = project / "config" / "deploy.staging.yml"
    staging.write_text(staging.read_text() + "traefik:\n  args: {accesslog: true}\n")
    base_before = (project / "config" / "deploy.yml").read_text()
    code, diff, err = _dockyard(project, "--migrate")
    assert code != 0 and diff == ""
    assert "deploy.staging.yml: traefik:" in err and "write `proxy:` instead" in err
    assert "Traceback" not in err
    assert (project / "config" / "deploy.yml").read_text() == base_before


def test_migrate_missing_config_is_the_not_found_error(tmp_path: Path) -> None:
    code, _, err = _dockyard(tmp_path, "--migrate")
    assert code != 0 and "Configuration file not found" in err


FOUR_SPACES = """\
service: app
image: <%= ENV["IMAGE"] || "acme/app" %>
servers:
- 10.0.0.1
registry:
    username: acme
    password:
    - KAMAL_REGISTRY_PASSWORD
builder:
    local:
        arch: amd64
        host: unix:///var/run/docker.sock
env:
    clear:
        A: "<%= `echo hi`.strip %>"
"""


def test_migrate_keeps_the_file_indentation_and_erb(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(FOUR_SPACES)
    code, diff, _ = _dockyard(tmp_path, "--migrate")
    assert code == 0
    after = (tmp_path / "config" / "deploy.yml").read_text()
    assert after == FOUR_SPACES.replace(
        "    local:\n        arch: amd64\n        host: unix:///var/run/docker.sock\n",
        "    arch: amd64\n",
    )
    assert diff.count("\n-") == 3 and diff.count("\n+") == 2  # the two header lines aside


BUILDER_FORMS = {
    "local_host": "  local:\n    arch: arm64\n    host: ssh://root@10.0.0.9\n",
    "remote_only": "  remote:\n    arch: amd64\n    host: ssh://root@10.0.0.9\n",
    "local_and_remote": (
        "  local:\n    arch: arm64\n    host: unix:///var/run/docker.sock\n"
        "  remote:\n    arch: amd64\n    host: ssh://root@10.0.0.9\n"
    ),
    "multiarch_true": "  multiarch: true\n",
    "multiarch_false_with_arch": "  arch: arm64\n  multiarch: false\n",
}


@pytest.mark.parametrize("form", sorted(BUILDER_FORMS))
def test_each_kamal1_builder_form_migrates_to_what_kamal_accepts(tmp_path: Path, form: str) -> None:
    _need_kamal()
    text = (
        "service: app\nimage: acme/app\nservers:\n  - 10.0.0.1\n"
        "registry:\n  username: acme\n  password:\n    - KAMAL_REGISTRY_PASSWORD\n"
        f"builder:\n{BUILDER_FORMS[form]}"
    )
    for label in ("original", "migrated"):
        (tmp_path / label / "config").mkdir(parents=True)
        (tmp_path / label / "config" / "deploy.yml").write_text(text)
    code, out, err = _dockyard(tmp_path / "original", "--version", "1")
    assert code == 0 and err.count("Warning: ") == 1, err
    assert _dockyard(tmp_path / "migrated", "--migrate")[0] == 0
    assert yaml.safe_load(out) == _kamal_config(tmp_path / "migrated")
