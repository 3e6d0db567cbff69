"""Data plane: pause/stop/drain gates, buffering limits, error pages, redirects, bad requests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from pathlib import Path
from typing import IO, Any

import pytest
from dataplane_support import (
    FakeRouter,
    FakeService,
    FakeTarget,
    get,
    origin_server,
    read_response,
    request,
    run,
    simple_setup,
    start_proxy,
)

from dockyard.proxy.contract import ServiceOptions


def test_pause_holds_requests_until_resume() -> None:
    with origin_server() as origin:
        router, service, _ = simple_setup(origin)
        service.state = "paused"

        async def go() -> None:
            server, _ = await start_proxy(router)
            pending = asyncio.ensure_future(request(server.port, get()))
            await asyncio.sleep(0.3)
            assert not pending.done()
            assert origin.requests == []
            service.set_state("running")
            resp = await pending
            await server.shutdown(1)
            assert resp.status == 200

        run(go())


def test_pause_past_max_pause_gives_504_and_stop_while_paused_gives_503() -> None:
    with origin_server() as origin:
        router, service, _ = simple_setup(origin)
        service.state = "paused"
        service.max_pause = 0.3

        async def go() -> None:
            server, lines = await start_proxy(router)
            expired = await request(server.port, get())
            service.max_pause = 5
            held = asyncio.ensure_future(request(server.port, get()))
            await asyncio.sleep(0.2)
            service.set_state("stopped", "Back at <noon>")
            stopped = await held
            await server.shutdown(1)
            assert expired.status == 504
            assert stopped.status == 503
            assert b"Back at &lt;noon&gt;" in stopped.body
            assert origin.requests == []
            assert [json.loads(x)["status"] for x in lines] == [504, 503]

        run(go())


def test_stop_page_uses_custom_template_and_health_path_passes_while_stopped(
    tmp_path: Path,
) -> None:
    (tmp_path / "503.html").write_text(
        "<p>{{ if .Message }}MSG={{ .Message }}{{ else }}generic{{ end }}</p>"
    )
    with origin_server() as origin:
        router, service, _ = simple_setup(origin, error_pages=tmp_path)
        service.set_state("stopped", "maintenance & co")

        async def go() -> None:
            server, _ = await start_proxy(router)
            page = await request(server.port, get("/anything"))
            health = await request(server.port, get("/up"))
            head_health = await request(
                server.port, b"HEAD /up HTTP/1.1\r\nHost: a\r\n\r\n", head_request=True
            )
            post_health = await request(
                server.port, b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
            )
            service.set_state("stopped", "")
            generic = await request(server.port, get("/anything"))
            await server.shutdown(1)
            assert page.status == 503 and page.body == b"<p>MSG=maintenance &amp; co</p>"
            assert health.status == 200 and health.body == b""
            assert head_health.status == 200
            assert post_health.status == 503
            assert generic.body == b"<p>generic</p>"
            assert origin.requests == []

        run(go())


def test_custom_error_page_for_404_falls_back_to_builtin_for_others(tmp_path: Path) -> None:
    (tmp_path / "502.html").write_text("custom bad gateway")
    router = FakeRouter()
    dead = FakeTarget("127.0.0.1", 1)
    router.add(FakeService("dead", [dead], ServiceOptions(error_pages=tmp_path)))

    async def go() -> None:
        server, _ = await start_proxy(router)
        r502 = await request(server.port, get())
        router.bindings[0][2].targets.clear()
        r503 = await request(server.port, get())
        await server.shutdown(1)
        assert r502.status == 502 and r502.body == b"custom bad gateway"
        assert r503.status == 503 and b"<html" in r503.body

    run(go())


def test_drain_cancel_gives_504_when_nothing_was_sent() -> None:
    with origin_server() as origin:
        router, _, target = simple_setup(origin)

        async def go() -> None:
            server, lines = await start_proxy(router)
            pending = asyncio.ensure_future(request(server.port, get("/slow?d=3")))
            for _ in range(100):
                if target.inflight:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            target.inflight[0].cancel()
            resp = await asyncio.wait_for(pending, 2)
            await server.shutdown(1)
            assert resp.status == 504
            assert json.loads(lines[0])["status"] == 504
            assert not target.inflight

        run(go())


def test_drain_cancel_closes_a_websocket_tunnel() -> None:
    with origin_server() as origin:
        router, _, target = simple_setup(origin)

        async def go() -> None:
            server, _ = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
            )
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            handle = target.inflight[0]
            assert handle.is_hijacked
            handle.cancel()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            await server.shutdown(1)
            assert handle.is_done

        run(go())


def spill_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prefixes of the temp files the proxy's body buffers open from now on."""
    opened: list[str] = []
    real = tempfile.TemporaryFile

    def recording(*args: Any, **kwargs: Any) -> IO[bytes]:
        if str(kwargs.get("prefix", "")).startswith("proxy-buffer-"):
            opened.append(kwargs["prefix"])
        return real(*args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(tempfile, "TemporaryFile", recording)
    return opened


def test_request_buffering_limits_413_and_spills_to_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    spilled = spill_files(monkeypatch)
    with origin_server() as origin:
        router, _, _ = simple_setup(
            origin, buffer_requests=True, buffer_memory=1000, max_request_body=50_000
        )

        async def go() -> None:
            server, _ = await start_proxy(router)
            small = await request(
                server.port, b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nsmall"
            )
            assert small.json()["len"] == 5 and spilled == []  # within buffer_memory: in RAM
            ok_body = b"x" * 40_000
            ok = await request(
                server.port,
                b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(ok_body)
                + ok_body,
            )
            assert spilled == ["proxy-buffer-"]  # past buffer_memory: the rest went to disk
            big = await request(
                server.port,
                b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 60000\r\n\r\n" + b"y" * 10,
            )
            chunk = b"z" * 30_000
            chunked_big = await request(
                server.port,
                b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2
                + b"0\r\n\r\n",
            )
            await server.shutdown(1)
            assert ok.status == 200 and ok.json()["len"] == 40_000
            assert ok.json()["sha"] == hashlib.sha256(ok_body).hexdigest()
            assert big.status == 413 and big.body == b"Request too large\n"
            assert chunked_big.status == 413
            assert [r for r in origin.requests if r[1] == "/upload"] == [("POST", "/upload")] * 2

        run(go())


def test_response_buffering_limit_gives_500_and_buffered_responses_get_a_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spilled = spill_files(monkeypatch)
    with origin_server() as origin:
        router, _, _ = simple_setup(
            origin, buffer_responses=True, buffer_memory=1000, max_response_body=100_000
        )

        async def go() -> None:
            server, _ = await start_proxy(router)
            small = await request(server.port, get("/big?n=500"))
            assert small.status == 200 and len(small.body) == 500
            assert spilled == []  # within buffer_memory: kept in RAM
            ok = await request(server.port, get("/big?n=90000"))
            assert spilled == ["proxy-buffer-"]  # past buffer_memory: the rest went to disk
            too_big = await request(server.port, get("/big?n=200000"))
            nolength = await request(server.port, get("/nolength"))
            await server.shutdown(1)
            assert ok.status == 200 and len(ok.body) == 90_000
            assert ok.body == bytes(i % 251 for i in range(90_000))
            assert too_big.status == 500
            assert nolength.body == b"until close"
            assert nolength.header("Content-Length") == "11"

        run(go())


def test_tls_redirect_and_canonical_host_redirect() -> None:
    with origin_server() as origin:
        router = FakeRouter()
        target = FakeTarget("127.0.0.1", origin.port)
        router.add(FakeService("tls", [target], ServiceOptions(tls=True)), host="secure.test")
        canon = ServiceOptions(canonical_host="www.example.test")
        router.add(FakeService("canon", [target], canon), host="example.test")
        router.add(FakeService("canon2", [target], canon), host="www.example.test")

        async def go() -> None:
            server, _ = await start_proxy(router)
            r1 = await request(server.port, get("/a?b=1", host="secure.test:8080"))
            r2 = await request(server.port, get("/x", host="example.test"))
            r3 = await request(server.port, get("/echo", host="www.example.test"))
            await server.shutdown(1)
            assert r1.status == 301 and r1.header("Location") == "https://secure.test/a?b=1"
            assert r1.header("Connection") == "close"
            assert r2.status == 301 and r2.header("Location") == "http://www.example.test/x"
            assert r3.status == 200

        run(go())


def test_malformed_requests_are_rejected_and_never_forwarded() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)
        cases = {
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n": 400,
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
            b"Content-Length: 4\r\n\r\n": 400,
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n": 400,
            b"GET /echo HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n": 400,
            b"GET /echo HTTP/1.1\r\n\r\n": 400,
            b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n": 400,
            b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n": 400,
            b"GET /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n": 400,
            b"GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n": 400,
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n": 414,
            b"GET /echo HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"b" * 70_000 + b"\r\n\r\n": 431,
        }

        async def go() -> None:
            server, lines = await start_proxy(router)
            for raw, status in cases.items():
                resp = await request(server.port, raw)
                assert resp.status == status, (raw[:60], resp.status)
                assert resp.header("Connection") == "close"
            await server.shutdown(1)
            assert origin.requests == []
            assert lines == []

        run(go())


def test_smuggled_request_in_body_is_not_forwarded_as_a_request() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)

        async def go() -> None:
            server, _ = await start_proxy(router)
            smuggle = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
            raw = (
                b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(smuggle)
                + smuggle
            )
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            resp = await read_response(reader)
            writer.close()
            await server.shutdown(1)
            assert resp.json()["len"] == len(smuggle)
            assert all(path != "/admin" for _, path in origin.requests)

        run(go())


def test_client_disconnect_is_logged_as_499_and_releases_the_target() -> None:
    with origin_server() as origin:
        router, _, target = simple_setup(origin)

        async def go() -> None:
            server, lines = await start_proxy(router)
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(get("/slow?d=1"))
            await writer.drain()
            for _ in range(100):
                if target.inflight:
                    break
                await asyncio.sleep(0.02)
            writer.close()
            for _ in range(100):
                if lines:
                    break
                await asyncio.sleep(0.02)
            await server.shutdown(1)
            assert json.loads(lines[0])["status"] == 499
            assert not target.inflight

        run(go())


def test_access_log_custom_headers_and_shutdown_closes_idle_connections() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(
            origin,
            log_request_headers=("X-Custom", "Cache-Control"),
            log_response_headers=("X-Origin", "Server"),
        )

        async def go() -> None:
            server, lines = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(get(extra="X-Custom: one\r\nx-custom: two\r\n"))
            await read_response(reader)
            await server.shutdown(2)
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
            entry = json.loads(lines[0])
            assert entry["req_x_custom"] == "one,two"
            assert entry["req_cache_control"] == ""
            assert entry["resp_x_origin"] == "yes"
            assert entry["resp_server"].startswith("BaseHTTP")
            keys = list(entry)
            assert keys[-4:] == [
                "req_x_custom",
                "req_cache_control",
                "resp_x_origin",
                "resp_server",
            ]

        run(go())


def test_writer_affinity_cookie_and_read_classification() -> None:
    with origin_server() as origin:
        extra: dict[str, object] = {"has_readers": True, "writer_affinity_timeout": 2.0}
        router, service, _ = simple_setup(origin, extra=extra)

        async def go() -> None:
            server, _ = await start_proxy(router)
            post = await request(
                server.port, b"POST /cookie HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
            )
            optout = await request(
                server.port,
                b"POST /cookie?optout=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            )
            read = await request(server.port, get("/cookie", extra="Cookie: x=1\r\n"))
            ws = await request(
                server.port,
                b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"\r\n",
            )
            await server.shutdown(1)
            cookies = [v for k, v in post.headers if k.lower() == "set-cookie"]
            writer = [c for c in cookies if c.startswith("kamal-writer=")]
            assert len(writer) == 1
            assert "Path=/" in writer[0] and "HttpOnly" in writer[0] and "Expires=" in writer[0]
            expiry_ms = int(writer[0].split("=", 1)[1].split(";")[0])
            import time

            assert 0 < expiry_ms / 1000 - time.time() <= 2.5
            assert all(k.lower() != "x-writer-affinity" for k, _ in optout.headers)
            assert not any(
                v.startswith("kamal-writer") for k, v in optout.headers if k == "Set-Cookie"
            )
            assert not any(v.startswith("kamal-writer") for _, v in read.headers)
            assert ws.status  # answered (the origin does not upgrade /echo)
            assert [p[0] for p in service.picks] == [False, False, True, False]
            assert service.picks[2][1] == "x=1"

        run(go())


def test_scope_cookie_paths_under_a_prefix() -> None:
    with origin_server() as origin:
        router = FakeRouter()
        target = FakeTarget("127.0.0.1", origin.port)
        opts = ServiceOptions(scope_cookie_paths=True)
        router.add(FakeService("app", [target], opts), host="app.test", prefix="/app")

        async def go() -> None:
            server, _ = await start_proxy(router)
            resp = await request(server.port, get("/app/cookie", host="app.test:8080"))
            await server.shutdown(1)
            cookies = [v for k, v in resp.headers if k.lower() == "set-cookie"]
            assert cookies == [
                "a=1; Path=/app/x",
                "b=2; Domain=other.test; Path=/",
                "c=3; Path=/app",
            ]

        run(go())


def test_spilled_request_and_response_bodies_survive_back_pressure() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(
            origin, buffer_requests=True, buffer_responses=True, buffer_memory=64 * 1024
        )
        size = 6 * 1024 * 1024

        async def go() -> None:
            import hashlib

            server, _ = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            payload = bytes(range(256)) * (size // 256)
            writer.write(b"PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
            writer.write(payload)
            await writer.drain()
            up = await read_response(reader)
            assert up.json() == {"len": size, "sha": hashlib.sha256(payload).hexdigest()}
            writer.write(get(f"/big?n={size}"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert b"Content-Length: %d" % size in head
            await asyncio.sleep(0.3)  # let the proxy hit the client's write limit
            body = await asyncio.wait_for(reader.readexactly(size), 10)
            writer.close()
            await server.shutdown(1)
            assert body == bytes(i % 251 for i in range(size))

        run(go(), timeout=60)


def test_acme_http01_answer_is_served_before_routing_with_or_without_port() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)
        seen: list[tuple[str, str]] = []

        def answer(host: str, path: str) -> bytes | None:
            seen.append((host, path))
            return b"tok.thumb" if path == "/.well-known/acme-challenge/tok" else None

        async def go() -> None:
            server, _ = await start_proxy(router, acme_http01=answer)
            with_port = await request(
                server.port, get("/.well-known/acme-challenge/tok", host="app.test:80")
            )
            without_port = await request(server.port, get("/.well-known/acme-challenge/tok"))
            unknown = await request(server.port, get("/.well-known/acme-challenge/other"))
            normal = await request(server.port, get("/echo"))
            await server.shutdown(1)
            assert (with_port.status, with_port.body) == (200, b"tok.thumb")
            assert (without_port.status, without_port.body) == (200, b"tok.thumb")
            assert unknown.body == b"origin 404"  # not ours: routed to the app
            assert normal.status == 200
            assert seen[:2] == [("app.test", "/.well-known/acme-challenge/tok")] * 2
            assert len(origin.requests) == 2  # only the unknown token and /echo reached it

        run(go())
