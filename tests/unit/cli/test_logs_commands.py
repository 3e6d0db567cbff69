"""`app logs`, `proxy logs` and `accessory logs` pass their options on to the flows: the log
lines (`logs`) or, with -f, the followed session (`follow_logs`, which takes no --since)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dockyard.cli import main
from dockyard.cli.options import GlobalOptions

Calls = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """The flows' `logs`/`follow_logs` record how they were called; run_flow runs the flow
    with a stand-in context (no config, no SSH)."""
    seen: Calls = []

    def recorder(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        """Stands in for ``real`` (async or not, as it is) and records the arguments it was
        called with, as ``real`` would bind them (keyword or positional alike)."""
        signature = inspect.signature(real)

        def record(ctx: object, *args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(ctx, *args, **kwargs).arguments
            seen.append((name, {k: v for k, v in bound.items() if k != "ctx"}))
            return []

        async def record_async(ctx: object, *args: Any, **kwargs: Any) -> Any:
            return record(ctx, *args, **kwargs)

        return record_async if inspect.iscoroutinefunction(real) else record

    for group in ("app", "proxy", "accessory"):
        flows = importlib.import_module(f"dockyard.flows.ops.{group}")
        monkeypatch.setattr(flows, "logs", recorder(f"{group}.logs", flows.logs))
        monkeypatch.setattr(flows, "follow_logs", recorder(f"{group}.follow", flows.follow_logs))

    def run_flow(opts: GlobalOptions, flow: Callable[[object], Awaitable[Any]], **_: Any) -> Any:
        import asyncio

        return asyncio.run(flow(object()))  # type: ignore[arg-type]

    for module in ("app_cmd", "proxy_cmd", "accessory_cmd"):
        monkeypatch.setattr(f"dockyard.cli.{module}.run_flow", run_flow)
    return seen


def test_app_logs(calls: Calls) -> None:
    assert main(["app", "logs", "-s", "5m", "-n", "7", "-g", "err", "--grep-options", "-i"]) == 0
    assert main(["app", "logs", "-f", "-T", "--container-id", "abc"]) == 0
    assert calls == [
        (
            "app.logs",
            {
                "since": "5m",
                "lines": 7,
                "grep": "err",
                "grep_options": "-i",
                "timestamps": True,
                "container_id": None,
            },
        ),
        (
            "app.follow",
            {
                "lines": None,
                "grep": None,
                "grep_options": None,
                "timestamps": False,
                "container_id": "abc",
            },
        ),
    ]


def test_proxy_and_accessory_logs(calls: Calls) -> None:
    assert main(["proxy", "logs", "-s", "1h", "-n", "3", "-T"]) == 0
    assert main(["proxy", "logs", "-f", "-g", "GET"]) == 0
    assert main(["accessory", "logs", "cache", "-n", "2", "--grep-options", "-v"]) == 0
    assert main(["accessory", "logs", "cache", "-f", "-s", "1h"]) == 0
    plain = {"grep": None, "grep_options": None, "timestamps": True}
    cache = {"name": "cache", **plain}
    assert calls == [
        ("proxy.logs", {**plain, "since": "1h", "lines": 3, "timestamps": False}),
        ("proxy.follow", {**plain, "grep": "GET"}),
        ("accessory.logs", {**cache, "since": None, "lines": 2, "grep_options": "-v"}),
        ("accessory.follow", cache),
    ]
