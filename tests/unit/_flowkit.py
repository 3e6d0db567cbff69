"""What the flow tests share: a project written to disk and loaded as a Config, and a
DeployContext over a FakePool (git identity answered locally, a fixed clock).

The `make_config` fixtures of tests/unit/flows and tests/unit/flows_ops use
:func:`load_project` with their own base config; tests import :func:`make_ctx` and :func:`run`
from here (or from the flows_ops conftest, which passes them on)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dockyard.config import Config, load_config
from dockyard.flows.context import DeployContext, Event, Selection
from dockyard.remote import FakePool, FakeTransport, Result
from dockyard.remote import batch as remote_batch

T = TypeVar("T")

#: The clock of every test context.
NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)

#: Where both packages' base configs start: three servers in two roles, a registry, a builder.
PROJECT_HEAD = """service: hello
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
"""

#: ``make_config(text=BASE, *, version="v1", ...)``: the project's Config.
MakeConfig = Callable[..., Config]


def load_project(
    root: Path,
    deploy_yml: str,
    *,
    secrets: str,
    files: Mapping[str, str] | None = None,
    version: str | None = "v1",
    destination: str | None = None,
) -> Config:
    """Write config/deploy.yml, the ``files`` (relative to ``root``) and .kamal/secrets under
    ``root``, then load the config as the CLI does (no environment)."""
    (root / "config").mkdir(exist_ok=True)
    (root / "config" / "deploy.yml").write_text(deploy_yml)
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    (root / ".kamal").mkdir(exist_ok=True)
    (root / ".kamal" / "secrets").write_text(secrets)
    return load_config(None, destination, root=root, env={}, version=version)


def make_ctx(
    config: Config, pool: FakePool, selection: Selection | None = None, **settings: Any
) -> tuple[DeployContext, list[Event]]:
    """A context over ``pool`` and the events it reports (``settings``: other DeployContext
    fields)."""
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
        **settings,
    )
    return ctx, events


def run(coro: Awaitable[T]) -> T:
    async def go() -> T:
        return await coro

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def stages_as_a_server_takes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A FakeTransport gets a batch's commands one by one, without the script that a server
    runs; that script refuses stage numbers that decrease (or do not match the commands), so
    the fake's batches are checked the same way first."""
    one_by_one = remote_batch._run_each

    async def checked(*args: Any, stages: Any = None) -> list[Result]:
        if stages is not None:
            commands, stop_on_error = args[1], args[2]
            remote_batch.build_batch_script(
                commands, "DOCKYARD-check", stop_on_error=stop_on_error, stages=stages
            )
        return await one_by_one(*args, stages=stages)

    monkeypatch.setattr(remote_batch, "_run_each", checked)
