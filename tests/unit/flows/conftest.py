"""A small project on disk for flow tests (config only; every remote call goes to FakePool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config import Config
from tests.unit._flowkit import (
    PROJECT_HEAD,
    MakeConfig,
    load_project,
    stages_as_a_server_takes_them,
)

__all__ = ["BASE", "MakeConfig", "make_config", "stages_as_a_server_takes_them"]

BASE = (
    PROJECT_HEAD
    + """proxy:
  app_port: 80
  run:
    registry: registry.test:5000
    repository: dockyard-proxy
    version: v0.9.2
"""
)

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
