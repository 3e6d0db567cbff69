"""Prometheus metrics: the counters, the text exposition parsed back, and `serve()` with a
metrics port scraped over HTTP after real requests through the data plane (loopback)."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request
from pathlib import Path

import pytest
from dataplane_support import get, origin_server, request, run

from dockyard.proxy.control.options import DeployRequest, ServiceConfig
from dockyard.proxy.control.server import RunSettings, serve
from dockyard.proxy.metrics import BUCKETS, ProxyMetrics, serve_metrics

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Text format 0.0.4 back into {(name, labels): value}; fails on any malformed line."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"family {name} declared twice"
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = _LINE.match(line)
        assert m is not None, f"malformed sample line {line!r}"
        name, labels_text, value = m.groups()
        labels: list[tuple[str, str]] = []
        if labels_text:
            pairs = _LABEL.findall(labels_text)
            rebuilt = ",".join(f'{k}="{v}"' for k, v in pairs)
            assert rebuilt == labels_text, f"malformed labels in {line!r}"
            for key, raw in pairs:
                unescaped = re.sub(r"\\(.)", lambda x: "\n" if x[1] == "n" else x[1], raw)
                labels.append((key, unescaped))
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, f"sample {name} without # TYPE"
        key = (name, frozenset(labels))
        assert key not in samples, f"duplicate series {key}"
        samples[key] = float(value)
    return samples


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_counters_histogram_and_escaping_round_trip() -> None:
    """kamal-proxy v0.9.2's families: `kamal_proxy_*`, labelled by service, method and the
    status code (not its class); in-flight per service."""
    m = ProxyMetrics(targets=lambda: [('we"b\\\n', "healthy", 2)])
    odd = 'we"b\\\n'
    for status, secs in ((200, 0.003), (200, 0.004), (404, 0.2), (502, 3.0), (101, 30.0)):
        m.started(odd)
        m.finished(odd, "GET", status, secs)
    m.finished("", "PROPFIND", 404, 0.005)  # unmatched service, method outside the standard set
    m.started(odd)  # still in flight
    m.started("other")
    m.finished("other", "POST", 201, 0.02)
    m.upstream_error(odd)
    m.deployed(odd, True)
    m.deployed(odd, False)
    m.deployed(odd, False)
    s = parse(m.render())
    req = "kamal_proxy_http_requests_total"
    assert sample(s, req, service=odd, method="GET", status="200") == 2
    assert sample(s, req, service=odd, method="GET", status="404") == 1
    assert sample(s, req, service=odd, method="GET", status="502") == 1
    assert sample(s, req, service=odd, method="GET", status="101") == 1
    assert sample(s, req, service="", method="OTHER", status="404") == 1
    assert sample(s, req, service="other", method="POST", status="201") == 1
    flight = "kamal_proxy_http_in_flight_requests"
    assert sample(s, flight, service=odd) == 1
    assert sample(s, flight, service="other") == 0
    assert not [key for key in s if key[0] == flight and ("service", "") in key[1]]
    assert sample(s, "dockyard_proxy_upstream_errors_total", service=odd) == 1
    assert sample(s, "dockyard_proxy_deploys_total", service=odd, result="success") == 1
    assert sample(s, "dockyard_proxy_deploys_total", service=odd, result="failure") == 2
    assert sample(s, "dockyard_proxy_targets", service=odd, state="healthy") == 2
    # Buckets are cumulative, `le` inclusive, +Inf equals _count; _sum is the total.
    name = "kamal_proxy_http_request_duration_seconds"
    ok = {"service": odd, "method": "GET", "status": "200"}
    buckets = [sample(s, f"{name}_bucket", **ok, le=_le(b)) for b in BUCKETS]
    expected = [sum(1 for x in (0.003, 0.004) if x <= b) for b in BUCKETS]
    assert buckets == expected
    assert buckets == sorted(buckets)
    assert sample(s, f"{name}_bucket", **ok, le="+Inf") == 2
    assert sample(s, f"{name}_count", **ok) == 2
    assert sample(s, f"{name}_sum", **ok) == pytest.approx(0.007)
    slow = {"service": odd, "method": "GET", "status": "101"}
    assert sample(s, f"{name}_bucket", **slow, le="10") == 0
    assert sample(s, f"{name}_bucket", **slow, le="+Inf") == 1
    none = {"service": "", "method": "OTHER", "status": "404"}
    assert sample(s, f"{name}_bucket", **none, le="0.005") == 1  # exactly on a bound
    assert sample(s, "process_resident_memory_bytes") > 1 << 20


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


def test_the_listener_answers_metrics_only() -> None:
    async def go() -> None:
        m = ProxyMetrics()
        m.started("web")
        m.finished("web", "GET", 200, 0.01)
        server = await serve_metrics(m, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ok = await request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await request(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", head_request=True)
        other = await request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        post = await request(
            port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        server.close()
        assert ok.status == 200
        assert ok.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
        s = parse(ok.body.decode())
        req = "kamal_proxy_http_requests_total"
        assert sample(s, req, service="web", method="GET", status="200") == 1
        assert head.status == 200 and head.body == b""
        assert other.status == 404 and post.status == 405

    run(go())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_a_metrics_port_counts_real_requests_and_deploys(tmp_path: Path) -> None:
    """`serve()` (what `run --metrics-port` calls): deploys over the control socket, requests
    through the HTTP listener, then a scrape over HTTP."""
    from dockyard.proxy.control.client import RpcError, call

    settings = RunSettings(
        http_port=_free_port(),
        https_port=_free_port(),
        metrics_port=_free_port(),
        bind="127.0.0.1",
        socket=tmp_path / "kamal-proxy.sock",
        state_file=tmp_path / "state" / "kamal-proxy.state",
    )
    with origin_server() as origin:

        async def go() -> None:
            stop = asyncio.Event()
            task = asyncio.ensure_future(serve(settings, stop))
            assert settings.socket is not None
            for _ in range(200):
                if settings.socket.exists():
                    break
                await asyncio.sleep(0.02)
            sock = settings.socket
            good = DeployRequest(
                "web",
                (f"127.0.0.1:{origin.port}",),
                config=ServiceConfig(hosts=("app.test",)),
                deploy_timeout=5_000_000_000,
            )
            await asyncio.to_thread(call, sock, "deploy", good.to_json())
            bad = DeployRequest(
                "web",
                ("127.0.0.1:1",),
                config=ServiceConfig(hosts=("app.test",)),
                deploy_timeout=300_000_000,
            )
            with pytest.raises(RpcError):
                await asyncio.to_thread(call, sock, "deploy", bad.to_json())
            port = settings.http_port
            for _ in range(3):
                assert (await request(port, get())).status == 200
            assert (await request(port, get("/status?c=503"))).status == 503
            assert (
                await request(
                    port, b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n"
                )
            ).status == 200
            assert (await request(port, get(host="nobody.test"))).status == 404

            def scrape() -> str:
                url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(url, timeout=5) as resp:
                    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                    return str(resp.read().decode())

            # A request being served counts in its service's in-flight gauge, and only there.
            flight = "kamal_proxy_http_in_flight_requests"
            slow = asyncio.ensure_future(request(port, get("/slow?d=2")))
            for _ in range(200):
                mid = parse(await asyncio.to_thread(scrape))
                if mid.get((flight, frozenset({("service", "web")}))) == 1:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the slow request never showed in flight")
            assert not slow.done()
            assert (await slow).status == 200
            s = parse(await asyncio.to_thread(scrape))
            stop.set()
            await task
            req = "kamal_proxy_http_requests_total"
            assert sample(s, req, service="web", method="GET", status="200") == 4  # with /slow
            assert sample(s, req, service="web", method="GET", status="503") == 1
            assert sample(s, req, service="web", method="POST", status="200") == 1
            assert sample(s, req, service="", method="GET", status="404") == 1
            count = "kamal_proxy_http_request_duration_seconds_count"
            assert sample(s, count, service="web", method="GET", status="200") == 4
            assert sample(s, count, service="web", method="POST", status="200") == 1
            assert sample(s, "kamal_proxy_http_in_flight_requests", service="web") == 0
            assert sample(s, "dockyard_proxy_deploys_total", service="web", result="success") == 1
            assert sample(s, "dockyard_proxy_deploys_total", service="web", result="failure") == 1
            assert sample(s, "dockyard_proxy_targets", service="web", state="healthy") == 1

        run(go(), timeout=40)


def test_no_metrics_port_means_no_metrics_object(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without --metrics-port the data plane gets metrics=None (its fast path)."""
    from dockyard.proxy import dataplane

    seen: list[object] = []
    real = dataplane.serve_http

    async def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("metrics"))
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dataplane, "serve_http", spy)
    settings = RunSettings(
        http_port=_free_port(),
        https_port=_free_port(),
        bind="127.0.0.1",
        socket=tmp_path / "kamal-proxy.sock",
        state_file=tmp_path / "state" / "kamal-proxy.state",
    )

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(serve(settings, stop))
        assert settings.socket is not None
        for _ in range(200):
            if settings.socket.exists():
                break
            await asyncio.sleep(0.02)
        stop.set()
        await task

    run(go())
    assert seen == [None]
