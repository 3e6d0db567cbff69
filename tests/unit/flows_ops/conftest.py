"""A project on disk and a DeployContext over a FakePool, for the operational flows."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config import Config
from tests.unit._flowkit import (
    NOW,
    PROJECT_HEAD,
    MakeConfig,
    load_project,
    make_ctx,
    run,
    stages_as_a_server_takes_them,
)

__all__ = [
    "BASE",
    "NOW",
    "MakeConfig",
    "make_config",
    "make_ctx",
    "run",
    "stages_as_a_server_takes_them",
    "without_lock_and_audit",
]

BASE = (
    PROJECT_HEAD
    + """proxy:
  app_port: 3000
accessories:
  cache:
    image: registry.test:5000/cache:7
    host: 10.0.0.4
    port: 6379
    cmd: cache-server --appendonly yes
    env:
      clear:
        MODE: primary
      secret:
        - CACHE_PASSWORD
    files:
      - config/cache.conf:/etc/cache.conf
    directories:
      - data:/data
    volumes:
      - cache-logs:/logs
"""
)

SECRETS = "KAMAL_REGISTRY_PASSWORD=s3cret\nCACHE_PASSWORD=pw\n"


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    def make(text: str = BASE, *, version: str | None = "v1") -> Config:
        return load_project(
            tmp_path,
            text,
            secrets=SECRETS,
            files={"config/cache.conf": "maxmemory 10mb\n"},
            version=version,
        )

    return make


def without_lock_and_audit(commands: list[list[str]]) -> list[list[str]]:
    """The calls a flow made, minus the deploy lock and audit bookkeeping."""
    kept = []
    for argv in commands:
        text = " ".join(argv)
        if "audit.log" in text or ".kamal/lock-" in text or argv == ["mkdir", "-p", ".kamal"]:
            continue
        kept.append(argv)
    return kept
