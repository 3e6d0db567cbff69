"""A failed health gate explains itself: the URL probed, what the last probe saw (refused,
timeout, redirect to https, 404, 500...) and the causes that match it. Real probes against
loopback backends; the deploy error goes through the control socket and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.proxy.control import health
from dockyard.proxy.control.durations import MILLISECOND, SECOND
from dockyard.proxy.control.health import (
    HealthCheckFailed,
    ProbeHistory,
    explain_unhealthy,
    http_probe,
)
from dockyard.proxy.control.options import DeployRequest, HealthCheckConfig, TargetAddress
from dockyard.proxy.control.router import ProxyRouter
from dockyard.proxy.control.rpc import dispatch

FAST = HealthCheckConfig(interval=30 * MILLISECOND, timeout=300 * MILLISECOND)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def answering(raw: bytes | None, *, close: bool = True) -> AsyncIterator[str]:
    """A loopback server answering every request with `raw` (None: never answers)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            if raw is None:
                await asyncio.sleep(10)
            else:
                writer.write(raw)
                await writer.drain()
        if close:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def reply(status: str, extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("raw", "kind", "status", "reason", "cause"),
    [
        (
            reply("301 Moved Permanently", "Location: https://app.test/up\r\n"),
            "https_redirect",
            301,
            "301 redirect to https://app.test/up",
            "config.assume_ssl = true",
        ),
        (reply("404 Not Found"), "status", 404, "unexpected status (404)", "--health-check-path"),
        (reply("500 Oops"), "status", 500, "unexpected status (500)", "kamal app logs"),
        (reply("403 Forbidden"), "status", 403, "unexpected status (403)", "host authorization"),
        (None, "timeout", 0, "no answer within 300ms", "raise --health-check-timeout"),
        (b"\x15\x03\x01\x00\x02\x02\x50", "not_http", 0, "", "does not speak plain HTTP"),
        (b"", "not_http", 0, "connection closed before an HTTP answer (EOF)", "plain HTTP"),
    ],
)
def test_each_failure_is_classified_and_explained(
    raw: bytes | None, kind: str, status: int, reason: str, cause: str
) -> None:
    async def go() -> None:
        history = ProbeHistory()
        async with answering(raw) as name:
            target = TargetAddress.parse(name)
            with pytest.raises(HealthCheckFailed) as exc:
                await http_probe(target, FAST)
            assert exc.value.kind == kind and exc.value.status == status
            if reason:
                assert exc.value.reason == reason
            history.record(exc.value.url, exc.value)
            text = explain_unhealthy([target], FAST, 5 * SECOND, history)
        first = text.splitlines()[0]
        assert first.startswith(f"{name}: GET http://{name}/up: ")
        assert "(1 failed probe, last " in first
        assert cause in text

    asyncio.run(go())


def test_connection_refused_names_the_port_and_the_usual_causes() -> None:
    async def go() -> None:
        target = TargetAddress.parse(f"127.0.0.1:{free_port()}")
        history = ProbeHistory()
        for _ in range(3):
            with pytest.raises(HealthCheckFailed) as exc:
                await http_probe(target, FAST)
            assert exc.value.kind == "refused"
            history.record(exc.value.url, exc.value)
        text = explain_unhealthy([target], FAST, 2 * SECOND, history)
        assert f"dial tcp {target.name}: connection refused (3 failed probes" in text
        assert f"nothing listens on port {target.port} of 127.0.0.1" in text
        assert "proxy.app_port" in text and "0.0.0.0" in text
        assert "raise it (--deploy-timeout; Kamal: deploy_timeout)" in text
        assert "deploy timeout (2s)" in text

    asyncio.run(go())


def test_an_unknown_host_is_a_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """No lookup leaves the machine: the resolver's answer is simulated."""

    async def no_such_host(host: str, port: int) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(health.asyncio, "open_connection", no_such_host)

    async def go() -> None:
        target = TargetAddress.parse("web-1234:3000")
        with pytest.raises(HealthCheckFailed) as exc:
            await http_probe(target, FAST)
        assert exc.value.kind == "dns"
        assert (
            exc.value.reason == "dial tcp web-1234:3000: no such host (Name or service not known)"
        )
        history = ProbeHistory()
        history.record(exc.value.url, exc.value)
        text = explain_unhealthy([target], FAST, SECOND, history)
        assert "no container or host named web-1234" in text

    asyncio.run(go())


def test_healthy_targets_are_left_out_and_a_target_never_probed_says_so() -> None:
    history = ProbeHistory()
    ok, silent = TargetAddress.parse("aa:80"), TargetAddress.parse("bb:80")
    history.record("http://aa:80/up", None)
    text = explain_unhealthy([ok, silent], FAST, 200 * MILLISECOND, history)
    assert "aa:80" not in text
    assert text.startswith("bb:80: GET http://bb:80/up: no probe finished")
    assert "each probe may take up to 300ms" in text


def test_history_is_bounded_and_counts_failures_in_a_row() -> None:
    history = ProbeHistory(limit=2)
    failure = HealthCheckFailed("http://x/up", "boom", "status", 500)
    history.record("http://x/up", failure)
    history.record("http://x/up", failure)
    x = history.get("http://x/up")
    assert x is not None and x.failures == 2
    history.record("http://x/up", None)
    history.record("http://x/up", failure)
    x = history.get("http://x/up")
    assert x is not None and x.failures == 1
    history.record("http://y/up", None)
    history.record("http://z/up", None)
    assert history.get("http://x/up") is None and history.get("http://z/up") is not None


def test_a_failed_deploy_keeps_kamal_proxys_first_line_then_explains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the deploy RPC (what the CLI calls): first line as kamal-proxy prints it, then
    the probe's URL and result for the failing target only, then the matching causes."""

    async def go() -> str:
        router = ProxyRouter()
        async with (
            answering(reply("200 OK")) as good,
            answering(reply("302 Found", "Location: https://app.test/up\r\n")) as bad,
        ):
            request = DeployRequest(
                "web",
                (good, bad),
                deploy_timeout=400 * MILLISECOND,
            )
            params = request.to_json()
            params["config"]["health_check"] = {
                "path": "/up",
                "interval": 50 * MILLISECOND,
                "timeout": 200 * MILLISECOND,
            }
            with pytest.raises(Exception) as exc:
                await dispatch(router, "deploy", params)
        await router.close()
        assert router.services == {}
        message: str = exc.value.message  # type: ignore[attr-defined]
        return message

    message = asyncio.run(go())
    lines = message.splitlines()
    assert lines[0] == "target failed to become healthy within configured timeout (400ms)"
    assert lines[1].startswith("127.0.0.1:") and "302 redirect to https://app.test/up" in lines[1]
    assert sum(1 for x in lines if "GET http://" in x) == 1  # the healthy target is not listed
    assert "config.force_ssl" in message and "assume_ssl" in message


def test_the_cli_prints_error_then_the_explanation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from dockyard.proxy.cli import main
    from dockyard.proxy.control.rpc import RpcServer

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    router = ProxyRouter()
    rpc = RpcServer(router, tmp_path / "kamal-proxy.sock")
    asyncio.run_coroutine_threadsafe(rpc.start(), loop).result(5)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    dead = free_port()
    try:
        code = main(
            [
                "deploy",
                "web",
                f"--target=127.0.0.1:{dead}",
                "--deploy-timeout=300ms",
                "--health-check-interval=50ms",
            ]
        )
    finally:
        asyncio.run_coroutine_threadsafe(rpc.close(), loop).result(5)
        asyncio.run_coroutine_threadsafe(router.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Error: target failed to become healthy within configured timeout (300ms)"
    assert err[1].startswith(f"127.0.0.1:{dead}: GET http://127.0.0.1:{dead}/up: dial tcp")
    assert "connection refused" in err[1]
    assert any(f"nothing listens on port {dead}" in x for x in err)


def test_a_probe_still_under_way_says_what_it_is_waiting_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deploy timeout shorter than a probe: the explanation says whether the probe was still
    connecting (name resolution, dropped packets) or waiting for the app's answer."""
    slow_probe = HealthCheckConfig(interval=SECOND, timeout=5 * SECOND)

    async def go() -> tuple[str, str]:
        async with answering(None) as name:  # accepts, never answers
            target = TargetAddress.parse(name)
            task = asyncio.ensure_future(http_probe(target, slow_probe))
            await asyncio.sleep(0.3)
            waiting = explain_unhealthy([target], slow_probe, 200 * MILLISECOND)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        hang = asyncio.Event()

        async def hanging(host: str, port: int) -> object:
            await hang.wait()
            raise AssertionError("not reached")

        monkeypatch.setattr(health.asyncio, "open_connection", hanging)
        target = TargetAddress.parse("gone-app:3000")
        task = asyncio.ensure_future(http_probe(target, slow_probe))
        await asyncio.sleep(0.3)
        connecting = explain_unhealthy([target], slow_probe, 200 * MILLISECOND)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return waiting, connecting

    waiting, connecting = asyncio.run(go())
    assert "no probe finished (still waiting for an answer after 0." in waiting
    assert "has not answered /up yet" in waiting
    assert "longer than the deploy timeout (200ms)" in waiting
    assert connecting.startswith(
        "gone-app:3000: GET http://gone-app:3000/up: no probe finished (still connecting to "
        "gone-app:3000 after 0."
    )
    assert "resolving gone-app or connecting to it hangs" in connecting
