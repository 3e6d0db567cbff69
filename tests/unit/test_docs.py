"""`dockyard docs`: our own reference text, one section per `kamal docs` section."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dockyard.cli import main
from dockyard.docs import SECTIONS, section_text

REPO = Path(__file__).resolve().parents[2]
KEY_LINE = re.compile(r"^ {0,2}([a-z_\-]+) {2,}\(", re.MULTILINE)

# Keys in Kamal's examples that are wrappers, example names or example Docker options.
NOT_KEYS = {
    "accessories", "aliases", "boot", "builder", "env", "logging", "proxy", "registry",
    "servers", "ssh", "sshkit", "mysql", "app", "web", "workers", "console", "uname",
    "staging_deploy", "main_db_accessory", "secondary_db_accessory", "monitoring", "replica",
    "secondary_db", "cpus", "memory", "restart", "label",
}  # fmt: skip


# Sections whose keys are the user's own names (aliases, hosts) rather than fixed keys.
FREE_FORM = {"alias": "NAME  (string; none)", "servers": "HOST: TAG  (mapping with one key; none)"}


def documented_keys(section: str) -> set[str]:
    return set(KEY_LINE.findall(section_text(section)))


def test_the_sections_are_kamals() -> None:
    assert SECTIONS == (
        "accessory", "alias", "boot", "builder", "configuration", "env", "logging", "proxy",
        "registry", "role", "servers", "ssh", "sshkit",
    )  # fmt: skip


@pytest.mark.parametrize("section", SECTIONS)
def test_each_section_prints_and_documents_keys_with_defaults(
    section: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["docs", section]) == 0
    out = capsys.readouterr().out
    assert out == section_text(section)
    assert out.startswith(f"# {section}: ")
    if section in FREE_FORM:
        assert FREE_FORM[section] in out
    else:
        assert documented_keys(section), "a section lists at least one key"
    for line in out.splitlines():
        if KEY_LINE.match(line):
            # every key line states a type, and a default (or that it is required)
            assert re.search(r"\(.+; .+\)", line), line


def test_no_section_means_the_top_level(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs"]) == 0
    assert capsys.readouterr().out == section_text("configuration")


def test_unknown_section_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs", "proxies"]) == 1
    err = capsys.readouterr().err
    assert "No documentation for 'proxies'" in err
    assert "accessory, alias, boot, builder, configuration" in err


def test_top_level_keys_are_all_documented() -> None:
    keys = documented_keys("configuration")
    for key in ("service", "image", "registry", "servers", "env", "secrets_path",
                "retain_containers", "deploy_timeout", "drain_timeout", "run_directory",
                "hooks_output", "aliases"):  # fmt: skip
        assert key in keys


def _kamal() -> str | None:
    local = REPO / ".cache/kamal-venv/bin/kamal"
    return str(local) if local.is_file() else shutil.which("kamal")


@pytest.fixture(scope="module")
def kamal_docs() -> dict[str, str]:
    """`kamal docs SECTION` for every section, run side by side (Kamal starts slowly)."""
    kamal = _kamal()
    if kamal is None:
        reason = "the real Kamal is not installed (scripts/lib.sh ensure_kamal installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    procs = {
        section: subprocess.Popen(
            [kamal, "docs"] + ([] if section == "configuration" else [section]),
            stdout=subprocess.PIPE,
            text=True,
        )
        for section in SECTIONS
    }
    texts = {}
    for section, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        texts[section] = out
    return texts


@pytest.mark.parametrize("section", SECTIONS)
def test_every_key_in_kamals_docs_is_documented(section: str, kamal_docs: dict[str, str]) -> None:
    kamal_keys = set(re.findall(r"^\s*([a-z_]+):", kamal_docs[section], re.MULTILINE)) - NOT_KEYS
    assert kamal_keys or section in FREE_FORM, "Kamal's docs were read"
    assert kamal_keys - documented_keys(section) == set()
