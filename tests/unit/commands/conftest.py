"""Build real configs the way Kamal's command tests do: a config hash, a destination, a version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.config import Config, load_config

LoadConfig = Callable[..., Config]


@pytest.fixture
def load(tmp_path: Path) -> LoadConfig:
    """``load(config_dict, destination=None, version="999", secrets="K=v\\n")`` -> Config."""

    def _load(
        raw: dict[str, Any],
        destination: str | None = None,
        *,
        version: str = "999",
        secrets: str | None = None,
        destination_raw: dict[str, Any] | None = None,
    ) -> Config:
        config_dir = tmp_path / "config"
        config_dir.mkdir(exist_ok=True)
        (config_dir / "deploy.yml").write_text(yaml.safe_dump(raw, sort_keys=False))
        if destination is not None:
            (config_dir / f"deploy.{destination}.yml").write_text(
                yaml.safe_dump(destination_raw or {}, sort_keys=False)
            )
        if secrets is not None:
            (tmp_path / ".kamal").mkdir(exist_ok=True)
            name = f"secrets.{destination}" if destination else "secrets"
            (tmp_path / ".kamal" / name).write_text(secrets)
        return load_config("config/deploy.yml", destination, root=tmp_path, env={}, version=version)

    return _load


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    """Show an ``Argv`` compared with a tuple as two plain lists, item by item."""
    from dockyard.commands.argv import Argv

    if op == "==" and isinstance(left, Argv) and isinstance(right, tuple | list):
        lines = ["Argv != expected argv:"]
        got, want = list(left.plain()), [str(x) for x in right]
        for index in range(max(len(got), len(want))):
            g = got[index] if index < len(got) else "<missing>"
            w = want[index] if index < len(want) else "<missing>"
            lines.append(f"{'  ' if g == w else '!!'} [{index}] {g!r} vs {w!r}")
        return lines
    return None
