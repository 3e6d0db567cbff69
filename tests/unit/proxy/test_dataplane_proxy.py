"""End-to-end data plane tests on loopback: real origin, real sockets, in-test control plane."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from dataplane_support import (
    FakeRouter,
    FakeService,
    FakeTarget,
    free_port,
    get,
    origin_server,
    read_response,
    request,
    run,
    simple_setup,
    start_proxy,
)

from dockyard.proxy.contract import ServiceOptions


def headers_of(info: dict[str, object]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in info["headers"]:  # type: ignore[attr-defined]
        out.setdefault(k.lower(), []).append(v)
    return out


def test_routes_and_rewrites_headers_like_kamal_proxy() -> None:
    with origin_server() as origin:
        router, _service, target = simple_setup(origin)

        async def go() -> None:
            server, lines = await start_proxy(router)
            raw = (
                b"GET /echo?a=1;b HTTP/1.1\r\nHost: app.test:8080\r\nUser-Agent: t/1\r\n"
                b"Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\n"
                b"Forwarded: for=1.1.1.1\r\nProxy-Connection: x\r\nX-Kamal-Target: spoof\r\n"
                b"X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\r\n"
            )
            resp = await request(server.port, raw)
            await server.shutdown(1)
            assert resp.status == 200
            assert resp.header("X-Origin") == "yes"
            assert resp.header("Date") is not None
            info = resp.json()
            h = headers_of(info)
            assert info["path"] == "/echo?a=1;b"
            assert h["host"] == ["app.test:8080"]
            assert h["x-forwarded-for"] == ["1.2.3.4, 127.0.0.1"]
            assert h["x-forwarded-proto"] == ["https"]
            assert h["x-forwarded-host"] == ["app.test:8080"]
            assert h["x-kamal-target"] == [target.name]
            assert re.fullmatch(
                r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                h["x-request-id"][0],
            )
            assert re.fullmatch(r"t=\d{13}", h["x-request-start"][0])
            for hop in ("x-secret", "keep-alive", "forwarded", "proxy-connection"):
                assert hop not in h, hop
            assert h["user-agent"] == ["t/1"]
            # access log line
            assert len(lines) == 1
            entry = json.loads(lines[0])
            assert list(entry)[:3] == ["time", "level", "msg"]
            assert entry["msg"] == "Request" and entry["level"] == "INFO"
            assert list(entry)[3:] == [
                "host", "port", "path", "request_id", "status", "service", "target",
                "duration", "method", "req_content_length", "req_content_type",
                "resp_content_length", "resp_content_type", "client_addr", "client_port",
                "remote_addr", "user_agent", "proto", "scheme", "query",
            ]  # fmt: skip
            assert entry["host"] == "app.test:8080"
            assert entry["path"] == "/echo" and entry["query"] == "a=1;b"
            assert entry["status"] == 200 and entry["service"] == "app"
            assert entry["target"] == target.name
            assert entry["request_id"] == h["x-request-id"][0]
            assert entry["remote_addr"] == "1.2.3.4" and entry["client_addr"] == "127.0.0.1"
            assert entry["resp_content_length"] == len(resp.body)
            assert entry["proto"] == "HTTP/1.1" and entry["scheme"] == "http"
            assert target.handles and all(hd.is_done for hd in target.handles)

        run(go())


def test_forward_headers_off_discards_incoming_values_and_keeps_request_id() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin, forward_headers=False)

        async def go() -> None:
            server, lines = await start_proxy(router)
            resp = await request(
                server.port,
                get(
                    extra="X-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Host: evil\r\n"
                    "X-Forwarded-Proto: https\r\nX-Request-ID: abc\r\nX-Request-Start: t=5\r\n"
                ),
            )
            await server.shutdown(1)
            h = headers_of(resp.json())
            assert h["x-forwarded-for"] == ["127.0.0.1"]
            assert h["x-forwarded-host"] == ["app.test"]
            assert h["x-forwarded-proto"] == ["http"]
            assert h["x-request-id"] == ["abc"]
            assert h["x-request-start"] == ["t=5"]
            assert json.loads(lines[0])["request_id"] == "abc"

        run(go())


def test_strip_prefix_and_404_for_unrouted() -> None:
    with origin_server() as origin:
        router = FakeRouter()
        target = FakeTarget("127.0.0.1", origin.port)
        router.add(FakeService("api", [target]), host="app.test", prefix="/api")
        keep = FakeService("keep", [target], ServiceOptions(strip_path_prefix=False))
        router.add(keep, host="app.test", prefix="/keep")

        async def go() -> None:
            server, _ = await start_proxy(router)
            port = server.port
            r1 = await request(port, get("/api/echo?x=1"))
            r2 = await request(port, get("/api"))
            r3 = await request(port, get("/keep/echo"))
            r4 = await request(port, get("/other"))
            r5 = await request(port, get("/api/echo", host="unknown.test"))
            await server.shutdown(1)
            assert r1.json()["path"] == "/echo?x=1"
            assert r2.json()["path"] == "/"
            assert r3.json()["path"] == "/keep/echo"
            assert r4.status == 404 and b"<html" in r4.body
            assert r4.header("Content-Type") == "text/html; charset=utf-8"
            assert r5.status == 404

        run(go())


def test_keep_alive_client_and_upstream_connection_reused() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)

        async def go() -> None:
            server, _ = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            conns = []
            for _ in range(5):
                writer.write(get())
                resp = await read_response(reader)
                assert resp.status == 200
                conns.append(resp.json()["conn"])
            # pipelined requests are answered in order
            writer.write(get("/echo?n=1") + get("/echo?n=2") + get("/echo?n=3"))
            paths = []
            for _ in range(3):
                resp = await read_response(reader)
                paths.append(resp.json()["path"])
            writer.close()
            assert server.pool.idle_count() == 1
            await server.shutdown(1)
            assert len(set(conns)) == 1, conns
            assert paths == ["/echo?n=1", "/echo?n=2", "/echo?n=3"]
            assert origin.connections == 1

        run(go())


def test_error_statuses_502_503_and_backend_errors_pass_through() -> None:
    with origin_server() as origin:
        router = FakeRouter()
        dead = FakeTarget("127.0.0.1", free_port())
        router.add(FakeService("dead", [dead]), host="dead.test")
        router.add(FakeService("none", []), host="none.test")
        draining = FakeTarget("127.0.0.1", origin.port, draining=True)
        router.add(FakeService("drain", [draining]), host="drain.test")
        good = FakeTarget("127.0.0.1", origin.port)
        router.add(FakeService("good", [good]), host="good.test")

        async def go() -> None:
            server, lines = await start_proxy(router)
            port = server.port
            r502 = await request(port, get(host="dead.test"))
            r503 = await request(port, get(host="none.test"))
            r503d = await request(port, get(host="drain.test"))
            r500 = await request(port, get("/status?c=500", host="good.test"))
            await server.shutdown(1)
            assert r502.status == 502 and b"<html" in r502.body
            assert r503.status == 503 and r503d.status == 503
            assert r500.status == 500 and r500.body == b"origin says 500"
            assert [json.loads(x)["status"] for x in lines] == [502, 503, 503, 500]

        run(go())


def test_chunked_request_and_response_and_close_delimited_body() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)

        async def go() -> None:
            server, lines = await start_proxy(router)
            port = server.port
            body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            up = await request(
                port,
                b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
            )
            ch = await request(port, get("/chunked"))
            nl = await request(port, get("/nolength"))
            await server.shutdown(1)
            assert up.json()["len"] == 11
            assert ch.status == 200 and ch.body == b"hello chunked world"
            assert ch.header("Transfer-Encoding") == "chunked"
            assert nl.body == b"until close" and nl.header("Transfer-Encoding") == "chunked"
            assert json.loads(lines[0])["req_content_length"] == -1

        run(go())


def test_head_request_has_no_body_and_connection_stays_usable() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)

        async def go() -> None:
            server, _ = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"HEAD /big?n=5000 HTTP/1.1\r\nHost: a\r\n\r\n")
            head = await read_response(reader, head_request=True)
            writer.write(get("/echo"))
            after = await read_response(reader)
            writer.close()
            # the pooled upstream connection survived the HEAD exchange and was reused
            await server.shutdown(1)
            assert head.status == 200 and head.header("Content-Length") == "5000"
            assert head.body == b""
            assert after.status == 200 and after.json()["method"] == "GET"
            assert origin.connections == 1

        run(go())


def test_expect_100_continue_is_relayed_from_the_origin() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)

        async def go() -> None:
            server, _ = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"POST /continue HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert interim.startswith(b"HTTP/1.1 100 Continue")
            writer.write(b"data")
            resp = await read_response(reader)
            writer.close()
            await server.shutdown(1)
            assert resp.status == 200 and resp.json() == {"len": 4}

        run(go())


def test_expect_100_continue_with_request_buffering_is_answered_by_the_proxy() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin, buffer_requests=True)

        async def go() -> None:
            server, _ = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert interim.startswith(b"HTTP/1.1 100 Continue")
            writer.write(b"data")
            resp = await read_response(reader)
            writer.close()
            await server.shutdown(1)
            assert resp.status == 200 and resp.json()["len"] == 4

        run(go())


def test_websocket_upgrade_is_tunnelled_and_marked_hijacked() -> None:
    with origin_server() as origin:
        router, _, target = simple_setup(origin)

        async def go() -> None:
            server, lines = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101 ")
            assert b"Upgrade: websocket" in head
            writer.write(b"ping frame")
            echoed = await asyncio.wait_for(reader.readexactly(10), 5)
            assert echoed == b"PING FRAME"
            assert target.handles[-1].is_hijacked
            writer.close()
            for _ in range(100):
                if lines:
                    break
                await asyncio.sleep(0.02)
            await server.shutdown(1)
            assert json.loads(lines[0])["status"] == 101
            assert target.handles[-1].is_done

        run(go())


def test_sse_is_streamed_without_buffering_even_with_response_buffering_on() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin, buffer_responses=True)

        async def go() -> None:
            server, _ = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(get("/sse"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert b"text/event-stream" in head
            first = await asyncio.wait_for(reader.readuntil(b"first\n\n"), 5)
            assert b"data: first" in first  # arrived before the origin finished
            origin.sse_gate.set()
            rest = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5)
            assert b"data: second" in rest
            writer.close()
            await server.shutdown(1)

        run(go())


def test_large_bodies_stream_both_ways_with_back_pressure() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)
        size = 8 * 1024 * 1024

        async def go() -> None:
            server, _ = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            payload = bytes(range(256)) * (size // 256)
            writer.write(
                b"PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(payload)
            )
            writer.write(payload)
            await writer.drain()
            up = await read_response(reader)
            import hashlib

            assert up.json() == {"len": size, "sha": hashlib.sha256(payload).hexdigest()}
            # download: read slowly so the proxy must pause reading from the origin
            writer.write(get(f"/big?n={size}"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert b"Content-Length: %d" % size in head
            client = next(iter(server.plane.clients))
            exchange = client.queue[0]
            assert exchange.upstream is not None and exchange.upstream.transport is not None
            upstream = exchange.upstream.transport
            for _ in range(600):  # until the client's socket is full and the proxy reacted
                if client.write_paused and not upstream.is_reading():
                    break
                await asyncio.sleep(0.05)
            # the client reads nothing: the proxy stopped reading from the origin
            assert client.write_paused
            assert not upstream.is_reading()
            got = 0
            while got < size:
                chunk = await asyncio.wait_for(reader.read(1 << 20), 5)
                assert chunk
                got += len(chunk)
            writer.close()
            await server.shutdown(1)
            assert got == size

        run(go(), timeout=60)


def test_an_upload_to_a_stalled_origin_pauses_reading_from_the_client() -> None:
    """Upload back-pressure: while the origin reads nothing, the proxy's writes to it back up
    and it stops reading the client's body (rather than buffering it all); once the origin
    reads, the whole body arrives intact."""
    size = 32 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    go_on = asyncio.Event()
    received: list[int] = []

    async def stalled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/up " in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        await go_on.wait()
        body = await reader.readexactly(size)
        received.append(len(body))
        ok = body == payload
        reply = b"intact" if ok else b"corrupt"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(reply), reply))
        await writer.drain()
        writer.close()

    async def go() -> None:
        origin = await asyncio.start_server(stalled, "127.0.0.1", 0)
        router = FakeRouter()
        target = FakeTarget("127.0.0.1", origin.sockets[0].getsockname()[1])
        router.add(FakeService("app", [target], ServiceOptions()))
        server, _ = await start_proxy(router)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PUT /store HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
        writer.write(payload)
        sending = asyncio.ensure_future(writer.drain())
        client = None
        for _ in range(600):  # until the proxy stopped reading the client's body
            client = next(iter(server.plane.clients), None)
            transport = client.transport if client is not None else None
            if transport is not None and not transport.is_reading():
                break
            await asyncio.sleep(0.05)
        assert client is not None and client.transport is not None
        assert not client.transport.is_reading()
        assert not sending.done()  # the rest of the body waits in the client's own buffers
        go_on.set()
        await asyncio.wait_for(sending, 30)
        resp = await read_response(reader)
        writer.close()
        await server.shutdown(1)
        origin.close()
        assert received == [size]
        assert resp.status == 200 and resp.body == b"intact"

    run(go(), timeout=60)


def test_target_timeout_gives_504() -> None:
    with origin_server() as origin:
        router, _, target = simple_setup(origin, target_timeout=0.3)

        async def go() -> None:
            server, lines = await start_proxy(router)
            resp = await request(server.port, get("/slow?d=2"))  # the origin would answer 200
            await server.shutdown(1)
            assert resp.status == 504 and b"<html" in resp.body
            assert json.loads(lines[0])["status"] == 504
            assert target.handles[0].is_done

        run(go())


async def one_shot_origin(replies: list[bytes]) -> tuple[asyncio.Server, list[int]]:
    """An origin that answers one request per connection and then closes it silently (no
    `Connection: close`): a pooled connection to it is stale by the time it is reused."""
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            served.append(1)
            writer.write(replies[min(len(served), len(replies)) - 1])
            await writer.drain()
            await asyncio.sleep(0.05)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, served


def test_stale_pooled_connection_is_retried_for_a_bodyless_request() -> None:
    async def go() -> None:
        reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        origin, served = await one_shot_origin([reply])
        port = origin.sockets[0].getsockname()[1]
        router = FakeRouter()
        router.add(FakeService("app", [FakeTarget("127.0.0.1", port)]))
        server, _ = await start_proxy(router)
        first = await request(server.port, get("/"))
        await asyncio.sleep(0.3)  # the origin has closed the pooled connection by now
        second = await request(server.port, get("/"))
        await server.shutdown(1)
        origin.close()
        assert first.status == 200 and second.status == 200 and second.body == b"ok"
        assert len(served) == 2

    run(go())


def test_garbage_from_the_origin_is_a_502() -> None:
    async def go() -> None:
        origin, _ = await one_shot_origin([b"NOT HTTP AT ALL\r\n\r\n"])
        port = origin.sockets[0].getsockname()[1]
        router = FakeRouter()
        router.add(FakeService("app", [FakeTarget("127.0.0.1", port)]))
        server, lines = await start_proxy(router)
        resp = await request(server.port, get("/"))
        await server.shutdown(1)
        origin.close()
        assert resp.status == 502
        assert json.loads(lines[0])["status"] == 502

    run(go())


def test_http10_client_gets_a_close_delimited_body_for_a_chunked_origin_response() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)

        async def go() -> None:
            server, _ = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /chunked HTTP/1.0\r\nHost: a\r\n\r\n")
            raw = await asyncio.wait_for(reader.read(), 5)  # the proxy closes at the end
            writer.close()
            await server.shutdown(1)
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert b"Transfer-Encoding" not in head and b"Connection: close" in head
            assert body == b"hello chunked world"

        run(go())


def test_shutdown_lets_an_in_flight_request_finish() -> None:
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)

        async def go() -> None:
            server, _ = await start_proxy(router)
            pending = asyncio.ensure_future(request(server.port, get("/slow?d=0.5")))
            await asyncio.sleep(0.2)
            await server.shutdown(5)
            resp = await pending
            assert resp.status == 200 and resp.body == b"slow done"
            assert resp.header("Connection") == "close"

        run(go())


@pytest.mark.parametrize("plain_asyncio", [False, True], ids=["uvloop", "asyncio"])
def test_a_listener_on_a_given_socket_accepts_in_batches_and_closes_it(
    plain_asyncio: bool,
) -> None:
    """`serve_http(sock=...)` (what `dockyard-proxy run` uses): a burst of connections is
    served, and shutdown stops listening."""
    router = FakeRouter()  # no service: the proxy answers 404 itself, no origin's pace counts

    async def go() -> None:
        server, _ = await start_proxy(router)
        assert type(server.server).__name__ == "_Listening"
        port = server.port
        responses = await asyncio.gather(*(request(port, get()) for _ in range(200)))
        assert {r.status for r in responses} == {404}
        await server.shutdown(1)
        with pytest.raises(OSError):
            await request(port, get())

    run(go(), plain_asyncio=plain_asyncio)


def test_on_idle_runs_once_the_listener_has_had_no_client_for_a_while() -> None:
    """After a burst the proxy gives freed heap back (`on_idle`): only once no client has
    been connected for `idle_delay`, never while one is, and again after the next burst."""
    with origin_server() as origin:
        router, _, _ = simple_setup(origin)
        idled: list[int] = []

        async def wait_for_idle(count: int) -> None:
            for _ in range(250):
                if len(idled) >= count:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"on_idle ran {len(idled)} times, not {count}")

        async def go() -> None:
            server, _ = await start_proxy(router, on_idle=lambda: idled.append(1), idle_delay=0.05)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(get())
            await read_response(reader)
            await asyncio.sleep(0.3)  # six idle delays with a client connected
            assert idled == []
            # the first client leaves while a second one is connected: still not idle
            second = await asyncio.open_connection("127.0.0.1", server.port)
            second[1].write(get())
            await read_response(second[0])
            writer.close()
            await asyncio.sleep(0.3)
            assert idled == []
            second[1].close()
            await wait_for_idle(1)
            # the next burst, then idle again
            assert (await request(server.port, get())).status == 200
            await wait_for_idle(2)
            await asyncio.sleep(0.2)
            assert len(idled) == 2  # once per idle spell, not on every tick
            await server.shutdown(1)

        run(go())


@pytest.mark.parametrize("plain_asyncio", [False, True], ids=["uvloop", "asyncio"])
def test_tcp_nodelay_on_client_and_upstream_sockets(plain_asyncio: bool) -> None:
    import socket

    with origin_server() as origin:
        router, _, _ = simple_setup(origin)

        async def go() -> None:
            server, _ = await start_proxy(router)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(get())
            await read_response(reader)
            client = next(iter(server.plane.clients))
            assert client.transport is not None
            csock = client.transport.get_extra_info("socket")
            up = server.pool.get(("127.0.0.1", origin.port))
            assert up is not None and up.transport is not None
            usock = up.transport.get_extra_info("socket")
            for sock in (csock, usock):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            up.close()  # taken out of the pool by get(): shutdown would not close it
            writer.close()
            await server.shutdown(1)

        run(go(), plain_asyncio=plain_asyncio)
