"""Smuggling and malformed requests over TLS, as HTTP/1.1 (ALPN http/1.1) and as HTTP/2 (ALPN h2),
through the real HTTPS listener. Every one is answered with an error (a 4xx, a stream reset or
a GOAWAY) and the origin never sees a request."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from dataplane_support import (
    FakeRouter,
    FakeService,
    FakeTarget,
    Origin,
    Response,
    origin_server,
    read_response,
    run,
)
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2_support import (
    H2Client,
    H2Response,
    Proxy,
    client_context,
    h2_client,
    h2_factory,
    https_proxy,
)

from dockyard.proxy.contract import ServiceOptions

T = TypeVar("T")
#: What the origin received: (method, path) per request.
Requests = list[tuple[str, str]]


def tls_router(origin: Origin, **opts: object) -> FakeRouter:
    router = FakeRouter()
    options = ServiceOptions(tls=True, **opts)  # type: ignore[arg-type]
    router.add(FakeService("app", [FakeTarget("127.0.0.1", origin.port)], options))
    return router


def proxy_exchange(
    scenario: Callable[[Proxy, FakeRouter], Awaitable[T]],
    *,
    timeout: float = 20.0,
    service: dict[str, object] | None = None,
) -> tuple[T, Requests]:
    """Run ``scenario(proxy, router)`` against the HTTPS listener in front of a fresh origin
    (``service``: the service's options besides tls); its result and what the origin
    received."""
    with origin_server() as origin:
        router = tls_router(origin, **(service or {}))

        async def go() -> T:
            async with https_proxy(router) as proxy:
                return await scenario(proxy, router)

        return run(go(), timeout), origin.requests


def h2_exchange(
    scenario: Callable[[H2Client], Awaitable[T]],
    *,
    strict: bool = True,
    service: dict[str, object] | None = None,
) -> tuple[T, Requests]:
    """:func:`proxy_exchange` over one HTTP/2 connection (``strict=False``: h2 lets us send
    what it would refuse)."""

    async def over_h2(proxy: Proxy, _router: FakeRouter) -> T:
        async with h2_client(proxy.port, strict=strict) as client:
            return await scenario(client)

    return proxy_exchange(over_h2, service=service)


# -- HTTP/1.1 inside TLS ----------------------------------------------------------------------
# The cases of the plain-HTTP parser tests (test_http_parser.py), sent to the HTTPS port.

H = b"Host: app.test\r\n"
SMUGGLED = b"GET /admin HTTP/1.1\r\n" + H + b"\r\n"

TLS_HTTP11_CASES = [
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx",
                 400, id="duplicate-content-length"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
                 400, id="cl-te"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                 b"Content-Length: 4\r\n\r\n0\r\n\r\n" + SMUGGLED,
                 400, id="te-cl"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400,
                 id="te-not-chunked"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n",
                 400, id="te-chunked-not-last"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, id="te-twice"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
                 400, id="te-space-before-colon"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400,
                 id="negative-content-length"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\n", 400,
                 id="content-length-list"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n  b\r\n\r\n", 400, id="obs-fold"),
    pytest.param(b"GET / HTTP/1.1\r\nHost : app.test\r\n\r\n", 400, id="space-before-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"Bad\x00Name: x\r\n\r\n", 400, id="nul-in-name"),
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="no-host"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"host: other.test\r\n\r\n", 400, id="two-hosts"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: app.test/b\r\n\r\n", 400, id="host-with-slash"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: app test\r\n\r\n", 400, id="host-with-space"),
    pytest.param(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
                 id="te-on-http10"),
    pytest.param(b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400, id="asterisk-form"),
    pytest.param(b"GET http://app.test/ HTTP/1.1\r\n" + H + b"\r\n", 400, id="absolute-form"),
    pytest.param(b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n", 400,
                 id="connect"),
    pytest.param(b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505, id="http2-version-in-http1"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"Expect: something\r\n\r\n", 417,
                 id="unknown-expectation"),
    pytest.param(b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414, id="long-uri"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X: " + b"y" * 70000 + b"\r\n\r\n", 431,
                 id="huge-header"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X: y\r\n" * 300 + b"\r\n", 431,
                 id="many-headers"),
    pytest.param(b"GET / HTTP/1.1\nHost: app.test\n\n", 400, id="bare-lf"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-1\r\n", 400,
                 id="negative-chunk-size"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1x\r\n", 400,
                 id="bad-chunk-size"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
                 400, id="chunk-longer-than-size"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                 b"ffffffffffffffffff\r\n", 400, id="chunk-size-overflow"),
]  # fmt: skip


def http11_exchange(raw: bytes, *, until_closed: bool) -> tuple[Response, bytes, Requests]:
    """``raw`` in one write (one TLS record, one read on the proxy's side) over TLS with ALPN
    http/1.1; the response, what followed it until the proxy closed (``until_closed``) and what
    the origin received."""

    async def scenario(proxy: Proxy, _router: FakeRouter) -> tuple[Response, bytes]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", proxy.port, ssl=client_context(("http/1.1",)), server_hostname="app.test"
        )
        writer.write(raw)
        resp = await asyncio.wait_for(read_response(reader), 10)
        rest = await asyncio.wait_for(reader.read(), 10) if until_closed else b""
        writer.close()
        if until_closed:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        return resp, rest

    (resp, rest), requests = proxy_exchange(scenario)
    return resp, rest, requests


@pytest.mark.parametrize(("raw", "status"), TLS_HTTP11_CASES)
def test_malformed_http11_inside_tls_is_refused_and_never_forwarded(
    raw: bytes, status: int
) -> None:
    resp, rest, requests = http11_exchange(raw, until_closed=True)
    assert resp.status == status
    assert resp.header("Connection") == "close"
    assert rest == b""  # the proxy closed the connection
    assert requests == []


def test_a_valid_request_inside_tls_is_forwarded() -> None:
    """The control for the suite above: the same connection setup does reach the origin."""
    raw = b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nhi"
    resp, _, requests = http11_exchange(raw, until_closed=False)
    assert resp.status == 200
    assert requests == [("POST", "/echo")]


# -- HTTP/2 ---------------------------------------------------------------------------------

BASE = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"app.test"),
    (b":path", b"/echo"),
]


def with_header(name: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    return [*BASE, (name, value)]


def without(name: bytes) -> list[tuple[bytes, bytes]]:
    return [h for h in BASE if h[0] != name]


def replaced(name: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    return [(n, value if n == name else v) for n, v in BASE]


def upload(content_length: int) -> list[tuple[bytes, bytes]]:
    """The request head of a POST /upload declaring ``content_length``."""
    return [(b":method", b"POST"), *BASE[1:3], (b":path", b"/upload"),
            (b"content-length", b"%d" % content_length)]  # fmt: skip


def open_stream(client: H2Client, headers: list[tuple[bytes, bytes]]) -> int:
    """HEADERS of a new stream, queued but not sent (DATA can follow in the same write)."""
    sid = client.conn.get_next_available_stream_id()
    client.responses[sid] = H2Response()
    client.conn.send_headers(sid, headers)
    return sid


GOAWAY = "goaway"  # connection error PROTOCOL_ERROR (RFC 9113 §5.4.1 allows it for stream errors)
RESET = "reset"  # RST_STREAM PROTOCOL_ERROR

H2_CASES = [
    pytest.param(with_header(b"X-Upper", b"1"), GOAWAY, id="uppercase-name"),
    pytest.param(with_header(b"connection", b"keep-alive"), GOAWAY, id="connection"),
    pytest.param(with_header(b"transfer-encoding", b"chunked"), GOAWAY, id="transfer-encoding"),
    pytest.param(with_header(b"upgrade", b"websocket"), GOAWAY, id="upgrade"),
    pytest.param(with_header(b"keep-alive", b"timeout=5"), GOAWAY, id="keep-alive"),
    pytest.param(with_header(b"proxy-connection", b"close"), GOAWAY, id="proxy-connection"),
    pytest.param(with_header(b"te", b"gzip"), GOAWAY, id="te-not-trailers"),
    pytest.param(without(b":method"), GOAWAY, id="no-method"),
    pytest.param(without(b":path"), GOAWAY, id="no-path"),
    pytest.param(without(b":scheme"), GOAWAY, id="no-scheme"),
    pytest.param(replaced(b":path", b""), GOAWAY, id="empty-path"),
    pytest.param([*BASE, (b":path", b"/other")], GOAWAY, id="duplicate-path"),
    pytest.param([(b"x-a", b"1"), *BASE], GOAWAY, id="pseudo-after-regular"),
    pytest.param(with_header(b":foo", b"bar"), GOAWAY, id="unknown-pseudo"),
    pytest.param(with_header(b":status", b"200"), GOAWAY, id="response-pseudo"),
    pytest.param(with_header(b"x-a", b"a\r\nx-b: b"), GOAWAY, id="crlf-in-value"),
    pytest.param(with_header(b"x-a", b"a\nb"), GOAWAY, id="lf-in-value"),
    pytest.param(with_header(b"x-a", b"a\x00b"), GOAWAY, id="nul-in-value"),
    pytest.param(with_header(b"x-a", b" padded"), GOAWAY, id="leading-space-in-value"),
    pytest.param(with_header(b"x a", b"1"), GOAWAY, id="space-in-name"),
    pytest.param(with_header(b"x:a", b"1"), GOAWAY, id="colon-in-name"),
    pytest.param(with_header(b"host", b"other.test"), GOAWAY, id="host-differs-from-authority"),
    pytest.param(with_header(b"content-length", b"1x"), GOAWAY, id="bad-content-length"),
    pytest.param(
        [*with_header(b"content-length", b"5"), (b"content-length", b"6")],
        GOAWAY,
        id="conflicting-content-lengths",
    ),
    pytest.param(
        [(b":method", b"POST"), *with_header(b"content-length", b"5")[1:]],
        RESET,
        id="content-length-without-data",
    ),
    pytest.param(replaced(b":method", b"GET /admin"), RESET, id="space-in-method"),
    pytest.param(replaced(b":path", b"/a b"), RESET, id="space-in-path"),
    pytest.param(replaced(b":path", b"/a\x7fb"), RESET, id="del-in-path"),
    pytest.param(replaced(b":authority", b"app test"), 400, id="bad-authority"),
    pytest.param(replaced(b":authority", b"user@app.test"), 400, id="userinfo-in-authority"),
    pytest.param(replaced(b":path", b"http://app.test/echo"), 400, id="absolute-path"),
    pytest.param(replaced(b":path", b"*"), 400, id="asterisk-path"),
    pytest.param(with_header(b"x-a", b"a\x01b"), 400, id="control-char-in-value"),
    pytest.param(with_header(b"x(a", b"1"), 400, id="non-token-name"),
    pytest.param(replaced(b":method", b"get"), 400, id="lowercase-method"),
    pytest.param(with_header(b"x-big", b"y" * 70000), 431, id="huge-header"),
    pytest.param(replaced(b":path", b"/" + b"x" * 9000), 414, id="long-path"),
    pytest.param(with_header(b"expect", b"something"), 417, id="unknown-expectation"),
]


async def outcome(client: H2Client, resp: H2Response) -> str | int:
    if resp.status:
        return resp.status
    if resp.reset is not None:
        assert resp.reset == ErrorCodes.PROTOCOL_ERROR
        return RESET
    await asyncio.wait_for(client.closed.wait(), 5)
    assert client.terminated == ErrorCodes.PROTOCOL_ERROR
    return GOAWAY


@pytest.mark.parametrize(("headers", "expected"), H2_CASES)
def test_malformed_h2_requests_are_refused_and_never_forwarded(
    headers: list[tuple[bytes, bytes]], expected: str | int
) -> None:
    async def scenario(client: H2Client) -> str | int:
        result = await outcome(client, await client.response(client.start(raw=headers)))
        if result != GOAWAY:  # a stream error leaves the connection usable
            assert (await client.request("/up")).status == 200
        return result

    result, requests = h2_exchange(scenario, strict=False)
    assert result == expected
    assert requests == ([] if result == GOAWAY else [("GET", "/up")])


@pytest.mark.parametrize("buffered", [False, True], ids=["streaming", "buffered"])
@pytest.mark.parametrize(("declared", "sent"), [(10, 5), (5, 10), (0, 1)])
def test_content_length_that_does_not_match_the_data_is_refused(
    buffered: bool, declared: int, sent: int
) -> None:
    """HEADERS and DATA in one write (streaming), or the body split across writes with request
    buffering on (Kamal's default): either way the origin never sees the request."""

    async def scenario(client: H2Client) -> str | int:
        sid = open_stream(client, upload(declared))
        if buffered:
            client.flush()
            await asyncio.sleep(0.05)
            with contextlib.suppress(ProtocolError):  # the server may be gone
                client.conn.send_data(sid, b"x" * (sent - 1))
                client.flush()
                await asyncio.sleep(0.05)
                client.conn.send_data(sid, b"x", end_stream=True)
        else:
            client.conn.send_data(sid, b"x" * sent, end_stream=True)
        client.flush()
        return await outcome(client, await client.response(sid))

    result, requests = h2_exchange(scenario, strict=False, service={"buffer_requests": buffered})
    assert result == GOAWAY
    assert requests == []


def test_te_trailers_is_allowed_and_not_forwarded() -> None:
    """The one TE value HTTP/2 allows is accepted; like every hop-by-hop field it stops here."""

    async def scenario(client: H2Client) -> H2Response:
        return await client.request("/echo", headers=[("te", "trailers")])

    resp, _ = h2_exchange(scenario)
    assert resp.status == 200
    names = {k.lower() for k, _ in json.loads(bytes(resp.body))["headers"]}
    assert "te" not in names


def test_a_zero_content_length_followed_by_data_is_refused_even_while_streaming() -> None:
    """The head of a "content-length: 0" request completes only at END_STREAM, so DATA that
    follows in a later read still stops it before it reaches the origin."""

    async def scenario(client: H2Client) -> str | int:
        sid = open_stream(client, upload(0))
        client.flush()
        await asyncio.sleep(0.1)
        client.conn.send_data(sid, b"GET /admin HTTP/1.1\r\n\r\n", end_stream=True)
        client.flush()
        return await outcome(client, await client.response(sid))

    result, requests = h2_exchange(scenario, strict=False)
    assert result == GOAWAY
    assert requests == []


@pytest.mark.parametrize("buffered", [False, True], ids=["streaming", "buffered"])
def test_matching_content_length_split_over_frames_and_reads_is_forwarded(buffered: bool) -> None:
    """The control: lengths that match, in several DATA frames and reads, with END_STREAM on
    its own empty frame, arrive whole (the held-back last byte is delivered)."""

    async def scenario(client: H2Client) -> list[H2Response]:
        results = []
        for body in (b"", b"abcdef"):
            sid = client.start(
                "/upload", method="POST", end_stream=False,
                headers=[("content-length", str(len(body)))],
            )  # fmt: skip
            await asyncio.sleep(0.05)
            for i in range(0, len(body), 2):
                await client.send_body(sid, body[i : i + 2], end_stream=False)
                await asyncio.sleep(0.02)
            await client.send_body(sid, b"", end_stream=True)
            results.append(await client.response(sid))
        return results

    results, requests = h2_exchange(scenario, service={"buffer_requests": buffered})
    assert [r.status for r in results] == [200, 200]
    assert [json.loads(bytes(r.body))["len"] for r in results] == [0, 6]
    assert requests == [("POST", "/upload"), ("POST", "/upload")]


def test_many_header_fields_get_431_and_a_continuation_flood_ends_the_connection() -> None:
    from hyperframe.frame import ContinuationFrame, HeadersFrame

    async def scenario(proxy: Proxy, _router: FakeRouter) -> tuple[int, int | None]:
        async with h2_client(proxy.port) as client:
            many = await client.request("/echo", headers=[(f"x-h{i}", "v") for i in range(300)])
        async with h2_client(proxy.port, strict=False) as client:
            block = client.conn.encoder.encode(BASE)
            first = HeadersFrame(1, data=block[:1])
            frames = [first.serialize()]
            frames += [ContinuationFrame(1, data=b"").serialize() for _ in range(100)]
            client.responses[1] = H2Response()
            client.write_raw(b"".join(frames))
            await asyncio.wait_for(client.closed.wait(), 10)
            return many.status, client.terminated

    (status, terminated), requests = proxy_exchange(scenario)
    assert status == 431
    assert terminated == ErrorCodes.PROTOCOL_ERROR
    assert requests == []


def test_rapid_reset_ends_the_connection_with_enhance_your_calm() -> None:
    async def scenario(proxy: Proxy, router: FakeRouter) -> int | None:
        async with h2_client(proxy.port) as client:
            for _ in range(400):
                sid = client.start("/slow?d=2")
                client.conn.reset_stream(sid, ErrorCodes.CANCEL)
            client.flush()
            await asyncio.wait_for(client.closed.wait(), 10)
            terminated = client.terminated
            await asyncio.sleep(0.2)
            lines = len(proxy.lines)
        # Streams were served (each logged as 499) until the reset budget ran out, not all.
        assert 150 <= lines < 350
        assert all(h.is_done for h in router.bindings[0][2].targets[0].handles)
        return terminated

    terminated, _ = proxy_exchange(scenario)
    assert terminated == ErrorCodes.ENHANCE_YOUR_CALM


def test_a_repeated_equal_content_length_is_forwarded_once() -> None:
    async def scenario(client: H2Client) -> H2Response:
        headers = [(b":method", b"POST"), *BASE[1:]]
        headers += [(b"content-length", b"2"), (b"content-length", b"2")]
        sid = client.start(raw=headers, end_stream=False)
        await client.send_body(sid, b"hi")
        return await client.response(sid)

    resp, _ = h2_exchange(scenario, strict=False)
    assert resp.status == 200
    info = json.loads(bytes(resp.body))
    lengths = [v for k, v in info["headers"] if k.lower() == "content-length"]
    assert lengths == ["2"] and info["body_len"] == 2


def test_garbage_frames_and_abrupt_closes_leave_the_proxy_healthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Frames that break the framing rules (oversized, on stream 0, out of sequence, a bad
    SETTINGS length, a zero window increment) and a client vanishing mid-upload: each ends its
    own connection only, with nothing logged as an unhandled error."""

    async def scenario(proxy: Proxy, _router: FakeRouter) -> tuple[int, list[int]]:
        for garbage in (
            b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"x" * 300,  # 16 MB DATA frame
            b"\x00\x00\x04\x00\x01\x00\x00\x00\x00abcd",  # DATA on stream 0
            b"\x00\x00\x00\x09\x04\x00\x00\x00\x01",  # CONTINUATION out of nowhere
            b"\x00\x00\x05\x04\x00\x00\x00\x00\x00abcde",  # SETTINGS, length 5
            b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00",  # WINDOW_UPDATE 0
        ):
            async with h2_client(proxy.port, strict=False) as client:
                client.write_raw(garbage)
                await asyncio.wait_for(client.closed.wait(), 10)
                assert client.terminated is not None and client.terminated != 0
        vanishing = await H2Client().connect(proxy.port)
        sid = vanishing.start("/upload", method="POST", end_stream=False)
        await vanishing.send_body(sid, b"x" * 100_000, end_stream=False)
        assert vanishing._writer is not None
        vanishing._writer.transport.abort()
        await vanishing.close()
        await asyncio.sleep(0.3)
        async with h2_client(proxy.port) as client:
            status = (await client.request("/up")).status
        return status, [json.loads(line)["status"] for line in proxy.lines]

    (status, statuses), _ = proxy_exchange(scenario)
    assert 499 in statuses  # the vanished upload was cancelled and logged
    assert status == 200
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == []


def test_a_client_that_floods_pings_and_reads_nothing_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every PING is answered; answers a client does not read pile up, and past a bound the
    proxy drops the connection (the bound is lowered here to keep the test short)."""
    from hyperframe.frame import PingFrame

    from dockyard.proxy.dataplane import h2conn

    monkeypatch.setattr(h2conn, "MAX_UNSENT", 256 * 1024)

    async def scenario(proxy: Proxy, _router: FakeRouter) -> tuple[bool, int]:
        client = await H2Client(strict=False).connect(proxy.port, rcvbuf=4096)
        assert client._task is not None and client._writer is not None
        client._task.cancel()  # read nothing from now on
        await asyncio.sleep(0.1)
        factory = h2_factory(proxy)
        assert len(factory.sessions) == 1
        session = next(iter(factory.sessions))
        assert session.transport is not None
        server_sock = session.transport.get_extra_info("socket")
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # (quicker)
        ping = PingFrame(0, opaque_data=b"12345678").serialize()
        writer = client._writer
        for _ in range(600):
            if not factory.sessions:
                break
            writer.write(ping * 1000)
            await asyncio.sleep(0.05)
        dropped = not factory.sessions
        writer.transport.abort()
        await client.close()
        async with h2_client(proxy.port) as other:
            status = (await other.request("/up")).status
        return dropped, status

    (dropped, status), _ = proxy_exchange(scenario, timeout=60)
    assert dropped
    assert status == 200  # other connections are unaffected


def sessions(proxy: object) -> list[object]:
    return list(h2_factory(proxy).sessions)  # type: ignore[arg-type]
