"""A project on disk and a DeployContext over a FakePool, for the operational flows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from dockyard.config import Config, load_config
from dockyard.flows.context import DeployContext, Event, Selection
from dockyard.remote import FakePool, FakeTransport, Result

T = TypeVar("T")
NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)

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

MakeConfig = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    def make(text: str = BASE, *, version: str | None = "v1") -> Config:
        (tmp_path / "config").mkdir(exist_ok=True)
        (tmp_path / "config" / "deploy.yml").write_text(text)
        (tmp_path / "config" / "cache.conf").write_text("maxmemory 10mb\n")
        (tmp_path / ".kamal").mkdir(exist_ok=True)
        (tmp_path / ".kamal" / "secrets").write_text(
            "KAMAL_REGISTRY_PASSWORD=s3cret\nCACHE_PASSWORD=pw\n"
        )
        return load_config(None, None, root=tmp_path, env={}, version=version)

    return make


def make_ctx(
    config: Config, pool: FakePool, selection: Selection | None = None
) -> tuple[DeployContext, list[Event]]:
    events: list[Event] = []
    local = FakeTransport(host="local")
    local.on(["git", "config", "user.email"], Result(0, "dev@example.com\n", ""))
    local.on(["git", "config", "user.name"], Result(0, "Dev\n", ""))
    ctx = DeployContext(
        config=config,
        pool=pool,
        reporter=events.append,
        local=local,
        clock=lambda: NOW,
        selection=selection or Selection(),
    )
    return ctx, events


def run(coro: Awaitable[T]) -> T:
    async def go() -> T:
        return await coro

    return asyncio.run(go())


def without_lock_and_audit(commands: list[list[str]]) -> list[list[str]]:
    """The calls a flow made, minus the deploy lock and audit bookkeeping."""
    kept = []
    for argv in commands:
        text = " ".join(argv)
        if "audit.log" in text or ".kamal/lock-" in text or argv == ["mkdir", "-p", ".kamal"]:
            continue
        kept.append(argv)
    return kept
