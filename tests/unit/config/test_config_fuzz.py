"""Any mangled config gives a `ConfigError` (a message for the user) or a Config, never a crash."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.config import ConfigError, load_config
from dockyard.config.summary import full_view, kamal_summary

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "configs" / "valid"
BASES = [
    yaml.safe_load((FIXTURES / name / "config" / "deploy.yml").read_text())
    for name in (
        "roles_hash",
        "accessories_all_placements",
        "proxy_root_full",
        "proxy_roles",
        "proxy_run",
        "builder_remote",
        "ssh_full",
        "env_structured_tags",
        "top_level_misc",
        "logging",
    )
]
ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    7,
    1.5,
    "",
    "x",
    "25%",
    "localhost:5000",
    [],
    ["a"],
    [{"h": "t"}],
    [{"a": 1, "b": 2}],
    {},
    {"a": "b"},
    {"hosts": ["h"]},
    {"x-y": 1},
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _paths(item, (*prefix, index))
    return paths


def _mutate(document: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> None:
    parent: Any = document
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent["unexpected"] = value
    else:
        parent[last] = value


@st.composite
def mangled(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        _mutate(document, path, action, copy.deepcopy(draw(st.sampled_from(ODD_VALUES))))
    return document


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=mangled())
def test_mangled_configs_never_crash(tmp_path: Path, document: dict[str, Any]) -> None:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "deploy.yml").write_text(yaml.safe_dump(document))
    try:
        config = load_config(root=tmp_path, env={"VERSION": "v1", "PATH": "/usr/bin:/bin"})
    except ConfigError as exc:
        assert exc.message.startswith("config/deploy.yml"), exc.message
        return
    kamal_summary(config)
    full_view(config)


@pytest.mark.parametrize("base", range(len(BASES)))
def test_the_unmangled_bases_load(tmp_path: Path, base: int) -> None:
    (tmp_path / "config").mkdir()
    raw = BASES[base]
    (tmp_path / "config" / "deploy.yml").write_text(yaml.safe_dump(raw))
    config = load_config(root=tmp_path, env={"VERSION": "v1", "PATH": "/usr/bin:/bin"})
    assert config.service == raw["service"]
    assert config.image == raw["image"]
    servers = raw.get("servers")
    if isinstance(servers, dict):  # roles by name, as written
        assert {role.name for role in config.roles} == set(servers)
    assert {a.name for a in config.accessories} == set(raw.get("accessories") or {})
