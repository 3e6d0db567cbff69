"""A small project on disk for flow tests (config only; every remote call goes to FakePool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config import Config
from tests.unit._flowkit import MakeConfig, load_project

__all__ = ["BASE", "MakeConfig", "make_config"]

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

SECRETS = "KAMAL_REGISTRY_PASSWORD=s3cret\n"


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    def make(
        text: str = BASE, *, version: str | None = "v1", destination: str | None = None
    ) -> Config:
        return load_project(
            tmp_path, text, secrets=SECRETS, version=version, destination=destination
        )

    return make
