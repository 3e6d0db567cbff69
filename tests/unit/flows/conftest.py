"""A small project on disk for flow tests (config only; every remote call goes to FakePool)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.config import Config, load_config

BASE = """service: hello
image: hello
servers:
  web:
    - 10.0.0.1
    - 10.0.0.2
  workers:
    hosts:
      - 10.0.0.3
    cmd: sleep infinity
registry:
  server: registry.test:5000
  username: bob
  password:
    - KAMAL_REGISTRY_PASSWORD
builder:
  arch: amd64
proxy:
  app_port: 80
  run:
    registry: registry.test:5000
    repository: dockyard-proxy
    version: v0.9.2
"""

MakeConfig = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    def make(
        text: str = BASE, *, version: str | None = "v1", destination: str | None = None
    ) -> Config:
        (tmp_path / "config").mkdir(exist_ok=True)
        (tmp_path / "config" / "deploy.yml").write_text(text)
        (tmp_path / ".kamal").mkdir(exist_ok=True)
        (tmp_path / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=s3cret\n")
        return load_config(None, destination, root=tmp_path, env={}, version=version)

    return make
