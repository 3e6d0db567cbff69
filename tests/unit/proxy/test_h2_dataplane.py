"""HTTP/2 over TLS (ALPN h2) through the real HTTPS listener: TlsAcceptor + data plane + origin,
all on loopback. The same requests over HTTP/1.1 on the same port are the reference."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from dataplane_support import (
    FakeRouter,
    FakeService,
    FakeTarget,
    Origin,
    free_port,
    origin_server,
    read_response,
    run,
)
from h2.errors import ErrorCodes
from h2_support import H2Client, client_context, h2_client, h2_factory, https_proxy

from dockyard.proxy.contract import ServiceOptions

TLS = ServiceOptions(tls=True)


def tls_router(origin: Origin, **opts: Any) -> tuple[FakeRouter, FakeService]:
    router = FakeRouter()
    service = router.add(
        FakeService(
            "app", [FakeTarget("127.0.0.1", origin.port)], ServiceOptions(tls=True, **opts)
        ),
        host="app.test",
    )
    return router, service


async def http11(
    port: int, raw: bytes, host: str = "app.test", alpn: tuple[str, ...] = ("http/1.1",)
) -> Any:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(alpn), server_hostname=host
    )
    sslobj = writer.get_extra_info("ssl_object")
    negotiated = sslobj.selected_alpn_protocol()
    writer.write(raw)
    resp = await asyncio.wait_for(read_response(reader), 10)
    writer.close()
    return negotiated, resp


def upstream_headers(body: bytes | bytearray) -> dict[str, str]:
    return {k.lower(): v for k, v in json.loads(bytes(body))["headers"]}


def test_h2_and_http11_share_the_tls_port_and_forward_the_same_headers() -> None:
    with origin_server() as origin:
        router, _ = tls_router(origin)

        async def go() -> None:
            async with https_proxy(router) as proxy:
                async with h2_client(proxy.port) as client:
                    assert client.alpn == "h2"
                    h2 = await client.request(
                        "/echo?q=1",
                        headers=[
                            ("user-agent", "h2-test/1"),
                            ("x-forwarded-for", "1.2.3.4"),
                            ("cookie", "a=1"),
                            ("cookie", "b=2"),
                            ("x-custom", "v"),
                        ],
                    )
                alpn, h1 = await http11(
                    proxy.port,
                    b"GET /echo?q=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: h2-test/1\r\n"
                    b"X-Forwarded-For: 1.2.3.4\r\nCookie: a=1; b=2\r\nX-Custom: v\r\n\r\n",
                    alpn=("http/1.1",),
                )
                assert alpn == "http/1.1"
                # No ALPN at all: HTTP/1.1 too.
                none, plain = await http11(
                    proxy.port, b"GET /echo HTTP/1.1\r\nHost: app.test\r\n\r\n", alpn=()
                )
                assert none is None and plain.status == 200

            assert h2.status == h1.status == 200
            assert (
                h2.header("x-origin") == "yes" and h2.header("content-type") == "application/json"
            )
            assert all(name == name.lower() for name, _ in h2.headers)
            assert h2.header("connection") is None and h2.header("keep-alive") is None
            seen2, seen1 = upstream_headers(h2.body), upstream_headers(h1.body)
            assert json.loads(bytes(h2.body))["path"] == "/echo?q=1"
            for name in (
                "host",
                "user-agent",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-kamal-target",
                "cookie",
                "x-custom",
            ):
                assert seen2[name] == seen1[name], name
            assert seen2["x-forwarded-proto"] == "https"
            assert seen2["x-forwarded-for"] == "1.2.3.4, 127.0.0.1"
            assert seen2["cookie"] == "a=1; b=2"  # h2 cookie crumbs joined (RFC 9113 §8.2.3)
            for name in ("x-request-id", "x-request-start"):
                assert seen2[name] and seen2[name] != seen1[name]
            # The upstream gets Go-style canonical names, as kamal-proxy forwards h2 requests.
            names = [k for k, _ in json.loads(bytes(h2.body))["headers"]]
            assert "User-Agent" in names and "X-Custom" in names

        run(go())


def test_h2_routes_by_authority_and_path_prefix() -> None:
    with origin_server() as origin:
        router = FakeRouter()
        target = FakeTarget("127.0.0.1", origin.port)
        router.add(FakeService("app", [target], TLS), host="app.test")
        router.add(FakeService("api", [target], TLS), host="app.test", prefix="/api")
        router.add(FakeService("other", [target], TLS), host="other.test")

        async def go() -> None:
            async with https_proxy(router) as proxy:
                async with h2_client(proxy.port) as client:
                    a = await client.request("/echo")
                    b = await client.request("/api/echo?x=1")
                    c = await client.request("/echo", authority="other.test")
                    d = await client.request("/echo", authority="nowhere.test")
                lines = [json.loads(line) for line in proxy.lines]
            assert json.loads(bytes(a.body))["path"] == "/echo"
            assert json.loads(bytes(b.body))["path"] == "/echo?x=1"  # prefix stripped
            assert upstream_headers(c.body)["host"] == "other.test"
            assert d.status == 404
            assert [line["service"] for line in lines] == ["app", "api", "other", ""]

        run(go())


def test_many_concurrent_streams_on_one_connection() -> None:
    with origin_server() as origin:
        origin.socket.listen(128)  # (the test origin's default backlog is 5)
        router, _ = tls_router(origin)

        async def go() -> None:
            async with https_proxy(router) as proxy, h2_client(proxy.port) as client:
                # 8 streams held at the origin until the gate opens, all at once: they ran
                # side by side, not one after another
                held = [client.start("/gated") for _ in range(8)]
                for _ in range(500):
                    if origin.gated == 8:
                        break
                    await asyncio.sleep(0.02)
                assert origin.gated == 8
                # 40 more streams complete while those 8 are still held: not queued behind them
                quick = [client.start(f"/echo?i={i}") for i in range(40)]
                quick_resps = [await client.response(sid) for sid in quick]
                assert origin.gated == 8
                origin.gate.set()
                held_resps = [await client.response(sid) for sid in held]
            assert [r.status for r in held_resps] == [200] * 8
            assert all(bytes(r.body) == b"gate open" for r in held_resps)
            assert [json.loads(bytes(r.body))["path"] for r in quick_resps] == [
                f"/echo?i={i}" for i in range(40)
            ]

        run(go())


def test_large_bodies_both_ways_respect_flow_control() -> None:
    size = 5_000_000
    upload = hashlib.sha256(b"seed").digest() * (size // 32)
    with origin_server() as origin:
        router, _ = tls_router(origin)

        async def go() -> None:
            async with https_proxy(router) as proxy, h2_client(proxy.port) as client:
                up = await client.request("/upload", method="POST", body=upload)
                sid = client.start(f"/big?n={size}")
                down = await client.response(sid, timeout=30)
                # Chunked request body (no content-length) and one with content-length.
                sized = await client.request(
                    "/upload",
                    method="PUT",
                    body=upload[:200_000],
                    headers=[("content-length", "200000")],
                )
            assert up.status == 200
            assert json.loads(bytes(up.body)) == {
                "len": len(upload),
                "sha": hashlib.sha256(upload).hexdigest(),
            }
            assert down.status == 200 and down.ended and down.reset is None
            assert len(down.body) == size
            assert bytes(down.body) == bytes(i % 251 for i in range(size))
            assert json.loads(bytes(sized.body))["len"] == 200_000

        run(go(), 60)


def test_request_buffering_limit_gives_413_and_the_origin_sees_nothing() -> None:
    with origin_server() as origin:
        router, _ = tls_router(origin, buffer_requests=True, max_request_body=1000)

        async def go() -> None:
            async with https_proxy(router) as proxy, h2_client(proxy.port) as client:
                declared = await client.request(
                    "/upload", method="POST", body=b"x" * 5000,
                    headers=[("content-length", "5000")],
                )  # fmt: skip
                streamed = await client.request("/upload", method="POST", body=b"x" * 5000)
                small = await client.request("/upload", method="POST", body=b"x" * 999)
            assert declared.status == 413 and bytes(declared.body) == b"Request too large\n"
            assert streamed.status == 413
            assert small.status == 200 and json.loads(bytes(small.body))["len"] == 999
            assert origin.requests == [("POST", "/upload")]  # only the small one

        run(go())


def test_error_pages_over_h2(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "503.html").write_text("<p>custom 503 {{ .Message }}</p>\n")
    with origin_server() as origin:
        router = FakeRouter()
        router.add(
            FakeService("down", [FakeTarget("127.0.0.1", free_port())], TLS), host="app.test"
        )
        stopped = FakeService("stopped", [], ServiceOptions(tls=True, error_pages=pages))
        stopped.set_state("stopped", "back soon")
        router.add(stopped, host="other.test")
        router.add(FakeService("plain", [FakeTarget("127.0.0.1", origin.port)]), host="plain.test")

        async def go() -> None:
            async with https_proxy(router) as proxy, h2_client(proxy.port) as client:
                bad_gateway = await client.request("/echo")
                custom = await client.request("/echo", authority="other.test")
                no_tls = await client.request("/echo", authority="plain.test")
                missing = await client.request("/echo", authority="nowhere.test")
                head = await client.request("/echo", method="HEAD", authority="nowhere.test")
            assert bad_gateway.status == 502 and b"502" in bad_gateway.body
            assert custom.status == 503 and b"custom 503" in custom.body
            assert no_tls.status == 503  # an HTTPS request for a service without TLS
            assert (
                missing.status == 404
                and missing.header(
                    "content-type",
                )
                == "text/html; charset=utf-8"
            )
            assert int(missing.header("content-length") or 0) == len(missing.body) > 0
            assert head.status == 404 and head.body == b"" and head.ended
            assert origin.requests == []

        run(go())


def test_access_log_line_for_an_h2_request() -> None:
    with origin_server() as origin:
        router, _ = tls_router(origin)

        async def go() -> None:
            async with https_proxy(router) as proxy:
                async with h2_client(proxy.port) as client:
                    resp = await client.request(
                        "/echo?a=b", method="POST", body=b"hello",
                        headers=[("user-agent", "curl/8"), ("content-type", "text/plain"),
                                 ("content-length", "5")],
                    )  # fmt: skip
                    mine = await client.request("/echo", headers=[("x-request-id", "given-id")])
                _, h1 = await http11(
                    proxy.port, b"GET /echo HTTP/1.1\r\nHost: app.test\r\n\r\n", alpn=("http/1.1",)
                )
                lines = [json.loads(line) for line in proxy.lines]
            assert resp.status == 200 and mine.status == 200 and h1.status == 200
            entry = lines[0]
            assert list(entry)[:4] == ["time", "level", "msg", "host"]
            assert entry["msg"] == "Request" and entry["host"] == "app.test"
            assert entry["port"] == 443 and entry["scheme"] == "https"
            assert entry["proto"] == "HTTP/2.0"
            assert (
                entry["method"] == "POST" and entry["path"] == "/echo" and entry["query"] == "a=b"
            )
            assert entry["status"] == 200 and entry["service"] == "app"
            assert entry["req_content_length"] == 5 and entry["req_content_type"] == "text/plain"
            assert entry["user_agent"] == "curl/8" and entry["client_addr"] == "127.0.0.1"
            assert entry["resp_content_type"] == "application/json"
            assert entry["request_id"] == upstream_headers(resp.body)["x-request-id"]
            assert lines[1]["request_id"] == "given-id" and lines[1]["proto"] == "HTTP/2.0"
            assert upstream_headers(mine.body)["x-request-id"] == "given-id"
            assert lines[2]["proto"] == "HTTP/1.1"  # the HTTP/1.1 request on the same port

        run(go())


def test_head_chunked_and_buffered_responses_over_h2() -> None:
    with origin_server() as origin:
        router, _ = tls_router(origin, buffer_responses=True, buffer_requests=True)

        async def go() -> None:
            async with https_proxy(router) as proxy, h2_client(proxy.port) as client:
                head = await client.request("/big?n=1000", method="HEAD")
                chunked = await client.request("/chunked")
                buffered = await client.request("/big?n=300000")
                again = await client.request("/echo")
            assert head.status == 200 and head.header("content-length") == "1000"
            assert head.body == b"" and head.ended
            assert chunked.status == 200 and bytes(chunked.body) == b"hello chunked world"
            assert chunked.header("transfer-encoding") is None
            assert buffered.header("content-length") == "300000"
            assert bytes(buffered.body) == bytes(i % 251 for i in range(300000))
            assert again.status == 200

        run(go())


def test_expect_100_continue_over_h2() -> None:
    with origin_server() as origin:
        router, _ = tls_router(origin, buffer_requests=True)

        async def go() -> None:
            async with https_proxy(router) as proxy, h2_client(proxy.port) as client:
                sid = client.start(
                    "/continue", method="POST", end_stream=False,
                    headers=[("expect", "100-continue"), ("content-length", "4")],
                )  # fmt: skip
                for _ in range(500):
                    if client.responses[sid].interim:
                        break
                    await asyncio.sleep(0.02)
                interim = list(client.responses[sid].interim)
                await client.send_body(sid, b"data")
                resp = await client.response(sid)
            assert interim == [100]
            assert resp.status == 200 and json.loads(bytes(resp.body)) == {"len": 4}

        run(go())


def test_client_reset_cancels_the_request_and_the_connection_goes_on() -> None:
    with origin_server() as origin:
        router, service = tls_router(origin)

        async def go() -> None:
            async with https_proxy(router) as proxy:
                async with h2_client(proxy.port) as client:
                    sid = client.start("/slow?d=1")
                    await asyncio.sleep(0.2)
                    client.conn.reset_stream(sid, ErrorCodes.CANCEL)
                    client.flush()
                    await asyncio.sleep(0.1)
                    after = await client.request("/echo")
                    for _ in range(50):
                        if len(proxy.lines) >= 2:
                            break
                        await asyncio.sleep(0.02)
                statuses = sorted(json.loads(line)["status"] for line in proxy.lines)
            assert after.status == 200
            assert statuses == [200, 499]  # the reset stream is logged as a client gone away
            assert all(handle.is_done for handle in service.targets[0].handles)

        run(go())


def test_connect_and_websocket_over_h2_are_refused_with_501() -> None:
    with origin_server() as origin:
        router, _ = tls_router(origin)

        async def go() -> None:
            async with https_proxy(router) as proxy, h2_client(proxy.port, strict=False) as client:
                connect = await client.request(
                    raw=[(b":method", b"CONNECT"), (b":authority", b"app.test:443")]
                )
                ws = await client.request(
                    raw=[
                        (b":method", b"CONNECT"),
                        (b":protocol", b"websocket"),
                        (b":scheme", b"https"),
                        (b":path", b"/ws"),
                        (b":authority", b"app.test"),
                    ]
                )
                after = await client.request("/echo")
            assert connect.status == 501 and b"not supported" in connect.body
            assert ws.status == 501
            assert after.status == 200
            assert origin.requests == [("GET", "/echo")]

        run(go())


def test_shutdown_lets_streams_finish_then_sends_goaway() -> None:
    with origin_server() as origin:
        router, _ = tls_router(origin)

        async def go() -> None:
            async with https_proxy(router) as proxy:
                busy = await H2Client().connect(proxy.port)
                idle = await H2Client().connect(proxy.port)
                try:
                    assert (await idle.request("/echo")).status == 200
                    sid = busy.start("/slow?d=0.5")
                    await asyncio.sleep(0.1)
                    shutdown = asyncio.create_task(proxy.factory.shutdown(5))
                    resp = await busy.response(sid)
                    await asyncio.wait_for(shutdown, 5)
                    await asyncio.wait_for(busy.closed.wait(), 5)
                    await asyncio.wait_for(idle.closed.wait(), 5)
                finally:
                    await busy.close()
                    await idle.close()
            assert resp.status == 200 and bytes(resp.body) == b"slow done"
            assert busy.terminated == ErrorCodes.NO_ERROR
            assert idle.terminated == ErrorCodes.NO_ERROR

        run(go())


@pytest.mark.parametrize("plain_asyncio", [False, True], ids=["uvloop", "asyncio"])
def test_alpn_dispatch_works_on_both_event_loops(plain_asyncio: bool) -> None:
    with origin_server() as origin:
        router, _ = tls_router(origin)

        async def go() -> None:
            async with https_proxy(router) as proxy:
                async with h2_client(proxy.port) as client:
                    resps = await asyncio.gather(
                        *(client.request(f"/echo?i={i}") for i in range(5))
                    )
                _, h1 = await http11(
                    proxy.port, b"GET /echo HTTP/1.1\r\nHost: app.test\r\n\r\n", alpn=("http/1.1",)
                )
            assert [r.status for r in resps] == [200] * 5
            assert h1.status == 200

        run(go(), plain_asyncio=plain_asyncio)


def sessions(proxy: Any) -> list[Any]:
    return list(h2_factory(proxy).sessions)


def test_request_body_back_pressure_stops_acknowledging_data() -> None:
    """An upstream that does not read: the proxy pauses the stream's reading and stops
    acknowledging its DATA, so the client runs out of window instead of the proxy buffering
    the whole upload."""
    received = bytearray()
    gate = asyncio.Event()

    async def sluggish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await gate.wait()  # reads nothing until released
        while not received.endswith(b"0\r\n\r\n"):
            data = await reader.read(1 << 20)
            if not data:
                break
            received.extend(data)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def go() -> None:
        server = await asyncio.start_server(sluggish, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        router = FakeRouter()
        router.add(FakeService("app", [FakeTarget("127.0.0.1", port)], TLS), host="app.test")
        size = 40_000_000
        async with https_proxy(router) as proxy, h2_client(proxy.port) as client:
            sid = client.start("/upload", method="POST", end_stream=False)
            sender = asyncio.create_task(client.send_body(sid, b"z" * size))
            stream = None
            for _ in range(300):  # until the proxy paused the stream and its window is spent
                await asyncio.sleep(0.05)
                streams = sessions(proxy)[0].streams
                stream = streams.get(sid)
                window = client.conn.local_flow_control_window(sid)
                if stream is not None and stream.read_paused and window == 0:
                    break
            await asyncio.sleep(0.5)  # and it stays so
            assert stream is not None
            window = client.conn.local_flow_control_window(sid)
            stalled = not sender.done()
            paused = stream.read_paused
            gate.set()
            await asyncio.wait_for(sender, 30)
            resp = await client.response(sid, timeout=30)
        server.close()
        assert stalled and paused
        assert window == 0  # the proxy stopped granting window to this stream
        assert resp.status == 200
        body_len = len(received) - received.index(b"\r\n\r\n") - 4
        assert body_len > size  # everything arrived once the upstream read (chunk framing)

    run(go(), 60)


def test_response_back_pressure_pauses_the_upstream() -> None:
    """A client that stops granting window: the proxy buffers at most about one upstream read
    for the stream and pauses reading from the upstream."""
    with origin_server() as origin:
        router, _ = tls_router(origin)

        async def go() -> None:
            async with https_proxy(router) as proxy, h2_client(proxy.port) as client:
                acked: list[int] = []
                real_ack = client.conn.acknowledge_received_data

                def hold_ack(size: int, stream_id: int) -> None:
                    acked.append(size)  # swallowed: no WINDOW_UPDATE goes out

                client.conn.acknowledge_received_data = hold_ack  # type: ignore[method-assign,assignment]
                sid = client.start("/big?n=3000000")
                for _ in range(600):  # the origin builds the body first (slow on a busy box)
                    await asyncio.sleep(0.05)
                    streams = sessions(proxy)[0].streams
                    arrived = len(client.responses[sid].body)
                    if sid in streams and streams[sid].write_paused and arrived >= 65535:
                        break
                stream = sessions(proxy)[0].streams[sid]
                paused = stream.write_paused
                pending = len(stream.pending)
                got = len(client.responses[sid].body)
                await asyncio.sleep(0.5)
                still = len(client.responses[sid].body)
                client.conn.acknowledge_received_data = real_ack  # type: ignore[method-assign]
                real_ack(sum(acked), sid)
                client.flush()
                resp = await client.response(sid, timeout=60)
            assert paused
            assert got == still == 65535  # the client's initial window, no more
            assert pending < 1 << 20  # about one upstream read, not the 3 MB response
            assert len(resp.body) == 3_000_000 and resp.ended

        run(go(), 90)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_nghttp2_speaks_h2_to_the_proxy(tmp_path: Path) -> None:
    """Interop with an independent HTTP/2 implementation (curl + nghttp2): several requests
    multiplexed on one connection, and an upload."""
    upload = tmp_path / "upload.bin"
    upload.write_bytes(hashlib.sha256(b"curl").digest() * 40_000)  # 1.28 MB
    with origin_server() as origin:
        router, _ = tls_router(origin)

        async def go() -> tuple[str, str]:
            async with https_proxy(router) as proxy:
                resolve = f"app.test:{proxy.port}:127.0.0.1"
                base = f"https://app.test:{proxy.port}"
                common = ["curl", "-sk", "--http2", "--resolve", resolve, "--max-time", "20"]
                multi = await asyncio.create_subprocess_exec(
                    *common, "--parallel",
                    "-w", "%{http_version} %{http_code} %{num_connects}\\n",
                    *(arg for i in range(6) for arg in ("-o", "/dev/null", f"{base}/echo?i={i}")),
                    stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                post = await asyncio.create_subprocess_exec(
                    *common, "--data-binary", f"@{upload}", f"{base}/upload",
                    stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out_multi, _ = await multi.communicate()
                out_post, _ = await post.communicate()
                return out_multi.decode(), out_post.decode()

        multi, post = run(go(), 40)
    rows = [line.split() for line in multi.splitlines()]
    assert len(rows) == 6 and all(row[:2] == ["2", "200"] for row in rows)
    assert sum(int(row[2]) for row in rows) == 1  # one connection for all six
    assert json.loads(post) == {
        "len": upload.stat().st_size,
        "sha": hashlib.sha256(upload.read_bytes()).hexdigest(),
    }
