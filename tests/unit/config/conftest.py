"""Helpers for config tests: write a project (config/deploy.yml and friends) into a temp dir."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

BASE = """\
service: app
image: acme/app
registry:
  username: acme
  password: [KAMAL_REGISTRY_PASSWORD]
builder:
  arch: amd64
"""

WriteProject = Callable[..., Path]


@pytest.fixture
def project(tmp_path: Path) -> WriteProject:
    """`project(deploy_yaml, base=True, **files)`: write files under tmp_path, return it.

    Extra files are given as keyword arguments whose names use `__` for `/` and `_DOT_` for `.`,
    or through `files={"config/deploy.staging.yml": "..."}`.
    """

    def write(deploy: str, *, base: bool = True, files: dict[str, str] | None = None) -> Path:
        (tmp_path / "config").mkdir(exist_ok=True)
        body = (BASE if base else "") + textwrap.dedent(deploy).lstrip("\n")
        (tmp_path / "config" / "deploy.yml").write_text(body)
        for name, content in (files or {}).items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(content).lstrip("\n"))
        return tmp_path

    return write
