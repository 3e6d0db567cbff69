"""Sans-I/O HTTP core: framing, validation, incremental feeding, fuzzing (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.proxy.http.forward import (
    build_request_head,
    build_response_head,
    split_host_port,
    strip_prefix,
)
from dockyard.proxy.http.parser import (
    HttpError,
    RequestHead,
    RequestReader,
    ResponseHead,
    ResponseReader,
)

Event = tuple[object, ...]


class Recorder:
    """A RequestHandler/ResponseHandler that records events (bodies merged)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.heads: list[RequestHead] = []
        self.bodies: list[bytes] = []

    def _body(self, data: bytes) -> None:
        if self.events and self.events[-1][0] == "body":
            self.events[-1] = ("body", self.events[-1][1] + data)  # type: ignore[operator]
        else:
            self.events.append(("body", data))
        self.bodies[-1] += data

    def on_request(self, head: RequestHead) -> None:
        self.heads.append(head)
        self.bodies.append(b"")
        self.events.append(
            (
                "head",
                head.method,
                head.path,
                head.query,
                head.host,
                head.content_length,
                head.upgrade,
                tuple(head.lines),
                head.keep_alive,
            )
        )

    def on_request_body(self, data: bytes) -> None:
        self._body(data)

    def on_request_end(self) -> None:
        self.events.append(("end",))

    def on_response(self, head: ResponseHead) -> None:
        self.bodies.append(b"")
        self.events.append(("response", head.status, tuple(head.lines), head.content_length))

    def on_response_body(self, data: bytes) -> None:
        self._body(data)

    def on_response_end(self) -> None:
        self.events.append(("end",))


def feed_all(data: bytes, sizes: list[int] | None = None) -> tuple[list[Event], object]:
    """Feed `data` in pieces; returns (events, outcome) where outcome is an error status,
    leftover tunnel bytes, or None."""
    rec = Recorder()
    reader = RequestReader(rec)
    pieces: list[bytes] = []
    if sizes is None:
        pieces = [data]
    else:
        pos = 0
        for size in sizes:
            if pos >= len(data):
                break
            pieces.append(data[pos : pos + size])
            pos += size
        pieces.append(data[pos:])
    tunnel = b""
    upgraded = False
    for piece in pieces:
        try:
            rest = reader.feed(piece)
        except HttpError as exc:
            return rec.events, exc.status
        if rest is not None:
            upgraded = True
            tunnel += rest
    return rec.events, ("tunnel", tunnel) if upgraded else None


def parse_one(data: bytes) -> tuple[Recorder, object]:
    rec = Recorder()
    try:
        RequestReader(rec).feed(data)
    except HttpError as exc:
        return rec, exc.status
    return rec, None


# --- framing and validation --------------------------------------------------------------


def test_simple_request_head_fields() -> None:
    rec, outcome = parse_one(
        b"POST /a/b?x=1&y HTTP/1.1\r\nHost: example.test:8080\r\nContent-Length: 3\r\n"
        b"X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nCookie: a=1\r\nCookie: b=2\r\n"
        b"User-Agent: ua\r\nX-Request-ID: rid\r\n\r\nabc"
    )
    assert outcome is None
    head = rec.heads[0]
    assert (head.method, head.path, head.query) == ("POST", b"/a/b", b"x=1&y")
    assert head.host == b"example.test:8080"
    assert head.content_length == 3 and not head.chunked
    assert head.xff == [b"1.1.1.1", b"2.2.2.2"]
    assert head.cookie == b"a=1; b=2"
    assert head.user_agent == b"ua" and head.request_id == b"rid"
    assert rec.bodies == [b"abc"]
    assert rec.events[-1] == ("end",)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 1\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n  b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad\x00Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", 417),
        (b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 70000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 300 + b"\r\n", 431),
        (b"GET / HTTP/1.1\nHost: a\n\n", 400),
        (
            b"POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Content-Length: 5\r\n\r\nhello",
            400,
        ),  # an upgrade with a body: where the tunnel starts would be ambiguous
    ],
)
def test_rejected_requests(raw: bytes, status: int) -> None:
    rec, outcome = parse_one(raw)
    assert outcome == status
    assert rec.heads == []  # rejected before any request event


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1x\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    ],
)
def test_bad_chunks_fail_the_body(raw: bytes) -> None:
    """The head was valid (a streaming proxy may have started it); the body never completes."""
    events, outcome = feed_all(raw)
    assert outcome == 400
    assert ("end",) not in events


def test_http10_without_host_and_keep_alive_rules() -> None:
    rec, outcome = parse_one(b"GET / HTTP/1.0\r\n\r\n")
    assert outcome is None and rec.heads[0].host == b"" and not rec.heads[0].keep_alive
    rec, outcome = parse_one(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert rec.heads[0].keep_alive
    rec, outcome = parse_one(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /")
    assert outcome == 400  # nothing may follow a request that closes the connection
    assert len(rec.heads) == 1 and not rec.heads[0].keep_alive


@pytest.mark.parametrize("version", [b"1.0", b"1.1", b"2.0"])
@pytest.mark.parametrize(
    "connection",
    [
        b"",
        b"Connection: keep-alive\r\n",
        b"Connection: Keep-Alive\r\n",
        b"Connection: close\r\n",
        b"Connection: Upgrade\r\n",
        b"Connection: X-Trace, KEEP-ALIVE\r\n",
        b"Connection: close\r\nConnection: keep-alive\r\n",
    ],
)
def test_version_and_keep_alive_as_llhttp_reports_them(version: bytes, connection: bytes) -> None:
    """The reader names the version without asking httptools when it can (keep-alive with no
    keep-alive token means HTTP/1.1): the result must be what httptools says, for each
    version llhttp accepts and each Connection header, on a keep-alive connection too."""
    import httptools

    truth: list[tuple[str, bool]] = []

    class Truth:
        def on_headers_complete(self) -> None:
            truth.append((parser.get_http_version(), parser.should_keep_alive()))

    request = b"GET / HTTP/" + version + b"\r\nHost: a\r\n" + connection + b"\r\n"
    parser = httptools.HttpRequestParser(Truth())
    parser.feed_data(request)
    rec = Recorder()
    reader = RequestReader(rec)
    if version == b"2.0":  # llhttp parses it; the proxy answers 505
        with pytest.raises(HttpError) as caught:
            reader.feed(request)
        assert caught.value.status == 505
        return
    reader.feed(request)
    head = rec.heads[0]
    assert (head.version, head.keep_alive) == truth[0]
    if head.keep_alive:  # the next request on the connection, without a Connection header
        reader.feed(b"GET / HTTP/" + version + b"\r\nHost: a\r\n\r\n")
        expected_next = "1.1" if version == b"1.1" else version.decode()
        assert rec.heads[1].version == expected_next


def test_chunked_body_with_extensions_and_trailers() -> None:
    rec, outcome = parse_one(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer-X: 1\r\n\r\n"
    )
    assert outcome is None
    assert rec.heads[0].chunked and rec.bodies == [b"abcde"]


def test_pipelined_requests_and_upgrade_tail() -> None:
    data = (
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nFRAME"
    )
    events, outcome = feed_all(data)
    assert outcome == ("tunnel", b"FRAME")
    heads = [e for e in events if e[0] == "head"]
    assert [h[2] for h in heads] == [b"/1", b"/ws"]
    assert heads[1][6] == b"websocket"


def test_upgrade_header_without_connection_upgrade_is_a_plain_request() -> None:
    rec, outcome = parse_one(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
    assert outcome is None and rec.heads[0].upgrade == b""


# --- head builders -----------------------------------------------------------------------


def test_upstream_head_drops_hop_by_hop_and_sets_forwarding_headers() -> None:
    rec, _ = parse_one(
        b"GET /x?q HTTP/1.1\r\nHost: h\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\n"
        b"TE: trailers\r\n"
        b"Keep-Alive: 1\r\nForwarded: for=x\r\nX-Kamal-Target: spoof\r\nX-Keep: 2\r\n\r\n"
    )
    head = build_request_head(
        rec.heads[0],
        path=b"/x",
        peer_ip=b"10.0.0.1",
        scheme=b"http",
        target=b"web:3000",
        forward_headers=True,
        request_id=b"rid",
        body_framing=b"",
    )
    text = head.decode()
    assert text.startswith("GET /x?q HTTP/1.1\r\nHost: h\r\n")
    assert text.endswith("\r\n\r\n")
    lower = text.lower()
    for gone in ("x-drop", "te:", "keep-alive", "forwarded:", "connection", "spoof"):
        assert gone not in lower, gone
    assert "X-Keep: 2\r\n" in text
    assert "X-Request-ID: rid\r\n" in text
    assert "X-Forwarded-For: 10.0.0.1\r\n" in text
    assert "X-Forwarded-Host: h\r\n" in text
    assert "X-Forwarded-Proto: http\r\n" in text
    assert "X-Kamal-Target: web:3000\r\n" in text


def test_response_head_rewrites_framing() -> None:
    rec = Recorder()
    reader = ResponseReader(rec)
    reader.feed(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    )
    head = reader._head
    out = build_response_head(head, date=b"Date: D\r\n", chunked=True, close=True).decode()
    assert out.startswith("HTTP/1.1 200 OK\r\n")
    assert "X-Hop" not in out and "Keep-Alive" not in out
    assert out.count("Transfer-Encoding: chunked") == 1
    assert "Connection: close\r\n" in out and "Date: D\r\n" in out


def test_response_reader_head_1xx_and_close_delimited() -> None:
    rec = Recorder()
    reader = ResponseReader(rec)
    reader.head_request = True
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    assert rec.events[-1] == ("end",)
    rec2 = Recorder()
    r2 = ResponseReader(rec2)
    r2.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: a\r\n\r\npart")
    assert [e[1] for e in rec2.events if e[0] == "response"] == [100, 200]
    assert rec2.events[-1] == ("body", b"part")
    assert r2.feed_eof() is True
    assert rec2.events[-1] == ("end",)
    with pytest.raises(HttpError) as err:
        ResponseReader(Recorder()).feed(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
    assert err.value.status == 502


def test_closed_readers_deliver_nothing_more() -> None:
    rec = Recorder()
    reader = RequestReader(rec)
    reader.feed(b"GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    reader.close()
    assert reader.feed(b"cd") is None
    assert reader.feed(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n") is None
    assert [e[0] for e in rec.events] == ["head", "body"]
    rec2 = Recorder()
    r2 = ResponseReader(rec2)
    r2.feed(b"HTTP/1.1 200 OK\r\nContent-Type: a\r\n\r\npart")
    r2.close()
    assert r2.broken  # a pool must not reuse it
    assert r2.feed(b"more") is None
    r2.feed_eof()  # would end this close-delimited body, but the handler is detached
    assert rec2.events[-1] == ("body", b"part")


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n",
    ],
)
def test_an_upstream_closing_inside_a_framed_body_is_not_an_end(head: bytes) -> None:
    """EOF ends only a close-delimited body: a Content-Length or chunked body cut short is
    a truncated response (the data plane then aborts), never a complete one."""
    rec = Recorder()
    reader = ResponseReader(rec)
    reader.feed(head + b"hello")
    assert reader.feed_eof() is False
    assert ("end",) not in rec.events


def test_an_upstream_response_head_over_the_cap_is_a_502() -> None:
    rec = Recorder()
    reader = ResponseReader(rec, max_headers_size=1024)
    reader.feed(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 500 + b"\r\n")
    with pytest.raises(HttpError) as err:
        reader.feed(b"X-More: " + b"b" * 600 + b"\r\n")
    assert err.value.status == 502 and "too large" in str(err.value)
    assert reader.broken and rec.events == []
    # the cap is on what arrives before the head is complete: a body larger than it, after
    # the head, is fine
    ok = Recorder()
    big = ResponseReader(ok, max_headers_size=1024)
    big.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
    for _ in range(5):
        big.feed(b"x" * 1000)
    assert ok.events[-1] == ("end",) and len(ok.bodies[-1]) == 5000


def test_the_first_user_agent_is_the_one_logged() -> None:
    rec, outcome = parse_one(
        b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: first\r\nUser-Agent: second\r\n\r\n"
    )
    assert outcome is None
    head = rec.heads[0]
    assert head.user_agent == b"first"
    assert head.lines == [b"User-Agent: first\r\n", b"User-Agent: second\r\n"]  # both forwarded


def test_strip_prefix_and_host_port() -> None:
    assert strip_prefix(b"/app/show", "/app") == b"/show"
    assert strip_prefix(b"/app", "/app") == b"/"
    assert strip_prefix(b"/api/internal/x", "/api/internal") == b"/x"
    assert strip_prefix(b"/x", "/") == b"/x"
    assert split_host_port(b"example.test:8080") == "example.test"
    assert split_host_port(b"[::1]:80") == "[::1]"
    assert split_host_port(b"plain") == "plain"


# --- fuzzing -----------------------------------------------------------------------------

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ;=,/.", max_size=20)


@st.composite
def valid_requests(draw: st.DrawFn) -> bytes:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]))
        path = "/" + draw(st.text(alphabet="abc/%20xyz", max_size=15))
        if draw(st.booleans()):
            path += "?" + draw(st.text(alphabet="a=b&;c", max_size=10))
        headers = [f"Host: {draw(st.sampled_from(['a', 'app.test:8080', '[::1]:80']))}"]
        for _ in range(draw(st.integers(0, 4))):
            name = draw(token)
            if name.lower() in ("content-length", "transfer-encoding", "host", "expect", "upgrade"):
                continue
            headers.append(f"{name}: {draw(value).strip()}")
        body = draw(st.binary(max_size=64))
        framing = draw(st.sampled_from(["none", "length", "chunked"]))
        if framing == "length":
            headers.append(f"Content-Length: {len(body)}")
            payload = body
        elif framing == "chunked":
            headers.append("Transfer-Encoding: chunked")
            payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        else:
            payload = b""
        out.append(f"{method} {path} HTTP/1.1\r\n".encode() + "\r\n".join(headers).encode())
        out.append(b"\r\n\r\n" + payload)
    return b"".join(out)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_requests(), st.lists(st.integers(1, 20), max_size=40))
def test_incremental_feeding_is_equivalent(data: bytes, sizes: list[int]) -> None:
    whole = feed_all(data)
    assert whole[1] is None
    assert feed_all(data, sizes) == whole
    assert feed_all(data, [1] * len(data)) == whole


SMUGGLE_SEEDS = [
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n"
    b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 33\r\n\r\n"
    b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"21\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 33\r\n\r\n"
    b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SMUGGLE_SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.sampled_from(b" \t\r\n:;,0123456789aAzZ\x00\x7f-"))
        elif op == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [b"\r\n", b" ", b"\t", b"Transfer-Encoding: chunked\r\n",
                     b"Content-Length: 5\r\n", b"0\r\n\r\n", b"\n", b"chunked", b",",
                     b"Host: b\r\n"]
                )
            )  # fmt: skip
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 4))]
        elif op == "dup" and data:
            end = min(len(data), pos + draw(st.integers(1, 40)))
            data[pos:pos] = data[pos:end]
    return bytes(data)


def reframe(head: RequestHead, body: bytes) -> bytes:
    """What the data plane sends upstream for a streamed request: head + re-framed body."""
    if head.chunked:
        framing = b"Transfer-Encoding: chunked\r\n"
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        framing = b""
        payload = body
    return (
        build_request_head(
            head,
            path=head.path,
            peer_ip=b"127.0.0.1",
            scheme=b"http",
            target=b"t:1",
            forward_headers=True,
            request_id=b"r",
            body_framing=framing,
        )
        + payload
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.lists(st.integers(1, 30), max_size=20))
def test_mutations_never_crash_never_smuggle(data: bytes, sizes: list[int]) -> None:
    events, outcome = feed_all(data)
    # Only HttpError (a status) or a clean parse: any other exception fails the test.
    assert outcome is None or isinstance(outcome, int) or outcome[0] == "tunnel"  # type: ignore[index]
    # Split feeding sees the same requests and the same verdict.
    assert feed_all(data, sizes) == (events, outcome)
    rec, _ = parse_one(data)
    for i, head in enumerate(rec.heads):
        complete = i < len(rec.heads) - 1 or (events and events[-1] == ("end",))
        # framing is never ambiguous
        assert not (head.content_length >= 0 and head.chunked)
        if head.version == "1.1":
            assert head.host is not None
        if not complete:
            continue
        body = rec.bodies[i]
        if head.content_length >= 0:
            assert len(body) == head.content_length
        # What goes upstream parses back as exactly this one request with this body.
        upstream = Recorder()
        try:
            RequestReader(upstream).feed(reframe(head, body))
        except HttpError as exc:  # pragma: no cover - would be a proxy bug
            raise AssertionError(f"proxy produced an unparseable request: {exc}") from exc
        assert len(upstream.heads) == 1
        assert upstream.bodies == [body]
        assert upstream.heads[0].path == head.path


def _fields(cls: type) -> tuple[str, ...]:
    """The instance attributes of a slotted class, interpreted or compiled by mypyc (which
    drops `__slots__` and lists the attributes in `__mypyc_attrs__`)."""
    names: tuple[str, ...] = cls.__dict__.get("__slots__") or cls.__dict__["__mypyc_attrs__"]
    return names


def test_the_inlined_reset_after_a_head_leaves_the_state_reset_leaves() -> None:
    # on_headers_complete repeats _reset's body inline (hot path); a field added to one and
    # not the other would leak one request's state into the next on a keep-alive connection
    per_request = (
        "_url",
        "_header_bytes",
        "_header_count",
        "_host_count",
        "_te_seen",
        "_ka_token",
    )
    seen: list[dict[str, object]] = []

    class Snapshot(Recorder):
        def on_request(self, head: RequestHead) -> None:
            super().on_request(head)
            seen.append({name: getattr(reader, name) for name in per_request})
            fresh = reader._head
            seen.append({n: getattr(fresh, n) for n in _fields(RequestHead)})

    reader = RequestReader(Snapshot())
    reader.feed(
        b"POST /a?b HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n"
        b"X-One: 1\r\n\r\n0\r\n\r\n"
    )
    after_inline = seen
    reset = RequestReader(Recorder())
    reset._reset()
    expected = [
        {name: getattr(reset, name) for name in per_request},
        {n: getattr(reset._head, n) for n in _fields(RequestHead)},
    ]
    assert after_inline == expected
    # every slot _reset sets is among those compared
    assert set(_fields(RequestReader)) - set(per_request) - {"_head"} == {
        "_handler",
        "_max_count",
        "_max_headers",
        "_max_uri",
        "_parser",
        "_valid_host",
        "upgraded",
    }


def test_header_names_as_sent_classify_as_their_lower_case() -> None:
    """The spelling-keyed tables (no lower() for the usual names) agree with the lower-case
    ones, and an unusual spelling still finds its kind through lower()."""
    from dockyard.proxy.http import parser

    for as_sent, kinds in (
        (parser._REQUEST_AS_SENT, parser.REQUEST_KINDS),
        (parser._RESPONSE_AS_SENT, parser.RESPONSE_KINDS),
    ):
        assert set(kinds) <= set(as_sent)
        for name, kind in as_sent.items():
            assert kinds.get(name.lower(), parser.H_OTHER) == kind, name
    rec, outcome = parse_one(
        b"POST / HTTP/1.1\r\nhOsT: a\r\nCONTENT-LENGTH: 2\r\nX-Forwarded-FOR: 1.2.3.4\r\n\r\nok"
    )
    assert outcome is None
    head = rec.heads[0]
    assert (head.host, head.content_length, head.xff) == (b"a", 2, [b"1.2.3.4"])
