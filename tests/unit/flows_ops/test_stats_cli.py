"""``dockyard server stats`` end to end in the CLI, its flow driven by a FakePool: the table,
one JSON document (per refresh with --watch), the warnings and the exit code."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli import main, server_cmd
from dockyard.errors import ConnectError
from dockyard.flows.context import DeployContext, Selection
from dockyard.remote import FakePool, FakeTransport, Result

from .conftest import BASE, make_ctx, run
from .test_stats import DF, DOCKER_STATS, MEMINFO, STAT_1, STAT_2, _grep

FULL_DF = DF.replace(" 5000000000 15000000000", " 19000000000  1000000000")


def _unreachable(argv: list[str]) -> Result:
    raise ConnectError("ssh: cannot reach root@10.0.0.4:22: connection refused (fake)")


def _server(fake: FakeTransport) -> None:
    if fake.host == "10.0.0.4":
        fake.responder = _unreachable
        fake.default = None
        return
    fake.on(["cat", "/proc/stat"], Result(0, STAT_1, ""), Result(0, STAT_2, ""))
    fake.on(["docker", "stats"], Result(0, DOCKER_STATS, ""))
    fake.on(["cat", "/proc/loadavg"], Result(0, "0.10 0.20 0.30 1/100 5\n", ""))
    fake.on(["nproc"], Result(0, "2\n", ""))
    fake.on(["grep"], Result(0, _grep({"/proc/meminfo": MEMINFO}), ""))
    fake.on(["sh", "-c"], Result(0, FULL_DF if fake.host == "10.0.0.2" else DF, ""))


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[FakePool]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(BASE)
    (tmp_path / "config" / "cache.conf").write_text("x\n")
    (tmp_path / ".kamal").mkdir()
    (tmp_path / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=p\nCACHE_PASSWORD=c\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VERSION", "v1")
    pools: list[FakePool] = []

    def fake_run_flow(opts: Any, flow: Callable[[DeployContext], Awaitable[Any]], **_: Any) -> Any:
        from dockyard.config import load_config

        pool = FakePool(setup=_server)
        pools.append(pool)
        config = load_config(None, None, root=tmp_path, env={}, version="v1")
        selection = Selection.parse(opts.hosts, opts.roles, opts.primary)
        ctx, _events = make_ctx(config, pool, selection)
        return run(flow(ctx))

    monkeypatch.setattr(server_cmd, "run_flow", fake_run_flow)
    return pools


def test_stats_table_with_warnings(cli: list[FakePool], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "stats", "-h", "10.0.0.1,10.0.0.2"]) == 0
    out = capsys.readouterr().out
    assert "10.0.0.1" in out and "app-web-v2" in out and "kamal-proxy" in out
    assert "warning: 10.0.0.2: disk Docker root /var/lib/docker 95% full" in out
    assert "warning: 10.0.0.2: disk / 90% full" in out


def test_stats_json_and_an_unreachable_host(
    cli: list[FakePool], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["server", "stats", "--json"]) == 1  # 10.0.0.4 did not answer
    data = json.loads(capsys.readouterr().out)
    assert [h["host"] for h in data["hosts"]] == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert "connection refused" in data["hosts"][3]["error"]
    assert data["hosts"][3]["memory"] is None
    assert all(h["error"] is None for h in data["hosts"][:3])
    assert data["hosts"][0]["memory"]["source"] == "meminfo"


def test_stats_watch_prints_one_json_document_per_refresh(
    cli: list[FakePool], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dockyard.flows.ops import stats

    async def no_sleep(seconds: float) -> None:
        return None

    original = stats.watch

    async def quick_watch(ctx: DeployContext, show: Any, **kwargs: Any) -> int:
        assert kwargs["interval"] == 2.0
        return await original(ctx, show, **{**kwargs, "sleep": no_sleep})

    monkeypatch.setattr(stats, "watch", quick_watch)
    assert (
        main(["server", "stats", "--watch", "-n", "2", "--count", "3", "--json", "-h", "10.0.0.1"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(
        json.loads(line)["hosts"][0]["host"] == "10.0.0.1" for line in lines
    )
    assert len(cli) == 1  # one context (one set of SSH connections) for every refresh
