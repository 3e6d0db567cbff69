"""The keep-alive hot path without sockets: fake transports around the real Protocols.

Checks what the hot-path shortcuts must not change: the access-log line (byte for byte, also
when its repeating fields change between requests on one connection), and the forwarded head.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
from typing import Any

from dockyard.proxy.contract import Match, ServiceOptions
from dockyard.proxy.dataplane.server import ClientConnection, Plane
from dockyard.proxy.dataplane.upstream import UpstreamConnection


class FakeTransport:
    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 51234)) -> None:
        self.out: list[bytes] = []
        self.peer = peer

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class Handle:
    done_count = 0

    def hijacked(self) -> None: ...

    def done(self) -> None:
        Handle.done_count += 1


class FakeTarget:
    name = "10.0.0.7:3000"
    host = "10.0.0.7"
    port = 3000

    def begin_request(self, cancel: object) -> Handle:
        return Handle()


class FakeService:
    def __init__(self, name: str) -> None:
        self.name = name
        self.options = ServiceOptions()
        self.state = "running"
        self.stop_message = ""
        self.target = FakeTarget()

    def pick_target(self, *, read: bool, cookies: str | None) -> FakeTarget:
        return self.target


class FakeRouter:
    def __init__(self) -> None:
        self.services = {"a.test": FakeService("app"), "b.test": FakeService("other")}

    def match(self, host: str, path: str) -> Match | None:
        service = self.services.get(host)
        return Match(service=service, prefix="/") if service else None  # type: ignore[arg-type]


RESP = (
    b"HTTP/1.1 200 OK\r\nDate: Sat, 28 Nov 2026 10:00:00 GMT\r\n"
    b"Content-Type: %s\r\nContent-Length: 2\r\n\r\nok"
)


def expected_line(entry: dict[str, Any], **fields: Any) -> str:
    """The line kamal-proxy writes, rebuilt from scratch (time and duration taken as logged)."""
    ordered = {
        "time": entry["time"],
        "level": "INFO",
        "msg": "Request",
        "host": fields["host"],
        "port": 80,
        "path": fields["path"],
        "request_id": entry["request_id"],
        "status": 200,
        "service": fields["service"],
        "target": "10.0.0.7:3000",
        "duration": entry["duration"],
        "method": fields["method"],
        "req_content_length": fields.get("req_len", 0),
        "req_content_type": fields.get("req_ct", ""),
        "resp_content_length": 2,
        "resp_content_type": fields["resp_ct"],
        "client_addr": fields.get("addr", "127.0.0.1"),
        "client_port": fields.get("port", "51234"),
        "remote_addr": fields.get("remote", fields.get("addr", "127.0.0.1")),
        "user_agent": fields.get("ua", ""),
        "proto": "HTTP/1.1",
        "scheme": "http",
        "query": fields.get("query", ""),
    }
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False) + "\n"


def logging_plane(lines: list[str]) -> Plane:
    """A plane on the running loop whose access-log lines go to ``lines``."""
    return Plane(
        FakeRouter(), asyncio.get_running_loop(), tls=False, log_port=80, access_log=lines.append
    )


def test_access_log_lines_follow_every_changed_field_on_one_connection() -> None:
    async def go() -> None:
        lines: list[str] = []
        plane = logging_plane(lines)
        client = ClientConnection(plane)
        ct = FakeTransport()
        client.connection_made(ct)  # type: ignore[arg-type]
        up = UpstreamConnection(plane.pool, ("10.0.0.7", 3000))
        ut = FakeTransport()
        up.connection_made(ut)  # type: ignore[arg-type]
        cases: list[tuple[bytes, bytes, dict[str, Any]]] = [
            (
                b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                b"text/plain",
                {"host": "a.test", "path": "/", "service": "app", "method": "GET"},
            ),
            (  # same repeating fields: the preformatted segments are reused
                b"GET /x?q=1 HTTP/1.1\r\nHost: a.test\r\n\r\n",
                b"text/plain",
                {"host": "a.test", "path": "/x", "query": "q=1", "service": "app"}
                | {"method": "GET"},
            ),
            (  # only the agent changes
                b"GET / HTTP/1.1\r\nHost: a.test\r\nUser-Agent: curl/8\r\n\r\n",
                b"text/plain",
                {"host": "a.test", "path": "/", "service": "app", "method": "GET", "ua": "curl/8"},
            ),
            (  # only the forwarded-for address changes
                b"GET / HTTP/1.1\r\nHost: a.test\r\nUser-Agent: curl/8\r\n"
                b"X-Forwarded-For: 5.6.7.8\r\n\r\n",
                b"text/plain",
                {"host": "a.test", "path": "/", "service": "app", "method": "GET"}
                | {"ua": "curl/8", "remote": "5.6.7.8"},
            ),
            (
                b'GET /%C3%A9%22 HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t"\xc3\xa9\r\n'
                b"X-Forwarded-For: 1.2.3.4\r\n\r\n",
                b"text/html",
                {"host": "a.test", "path": '/\u00e9"', "service": "app", "method": "GET"}
                | {"ua": 't"\u00e9', "remote": "1.2.3.4", "resp_ct": "text/html"},
            ),
            (
                b"POST /p HTTP/1.1\r\nHost: b.test:8080\r\nContent-Type: text/x\r\n"
                b"Content-Length: 3\r\n\r\nabc",
                b"text/html",
                {"host": "b.test:8080", "path": "/p", "service": "other", "method": "POST"}
                | {"req_len": 3, "req_ct": "text/x"},
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                b"text/plain",
                {"host": "a.test", "path": "/", "service": "app", "method": "GET"},
            ),
        ]
        for request, resp_ct, fields in cases:
            fields.setdefault("resp_ct", resp_ct.decode())
            plane.pool.put(up)
            client.data_received(request)
            assert ut.out[-1].startswith(request.split(b" ", 1)[0] + b" ")
            up.data_received(RESP % resp_ct)
            assert ct.out[-1].endswith(b"\r\n\r\nok")
            entry = json.loads(lines[-1])
            assert lines[-1] == expected_line(entry, **fields)
        assert len(lines) == len(cases)

    asyncio.run(go())


def test_access_log_lines_of_new_connections_carry_their_own_address_and_port() -> None:
    """The segments are shared between the plane's connections; each line still names its
    own client address and port."""

    async def go() -> None:
        lines: list[str] = []
        plane = logging_plane(lines)
        up = UpstreamConnection(plane.pool, ("10.0.0.7", 3000))
        ut = FakeTransport()
        up.connection_made(ut)  # type: ignore[arg-type]
        peers = [("127.0.0.1", 51234), ("127.0.0.1", 40000), ("10.1.2.3", 40001)]
        peers += [("127.0.0.1", 40002), ("::1", 40003)]
        for address, port in peers:
            client = ClientConnection(plane)
            client.connection_made(FakeTransport((address, port)))  # type: ignore[arg-type]
            plane.pool.put(up)
            client.data_received(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            up.data_received(RESP % b"text/plain")
            client.connection_lost(None)
            entry = json.loads(lines[-1])
            fields = {"host": "a.test", "path": "/", "service": "app", "method": "GET"}
            fields |= {"resp_ct": "text/plain", "addr": address, "port": str(port)}
            assert lines[-1] == expected_line(entry, **fields)
        assert len(lines) == len(peers)
        assert len(plane.log_segments) == 3  # one per client address

    asyncio.run(go())


def test_forwarded_head_carries_a_fresh_uuid4_and_the_target() -> None:
    async def go() -> None:
        plane = Plane(
            FakeRouter(),
            asyncio.get_running_loop(),
            tls=False,
            log_port=80,
            access_log=None,
        )
        client = ClientConnection(plane)
        client.connection_made(FakeTransport())  # type: ignore[arg-type]
        up = UpstreamConnection(plane.pool, ("10.0.0.7", 3000))
        ut = FakeTransport()
        up.connection_made(ut)  # type: ignore[arg-type]
        ids = []
        for _ in range(2):
            plane.pool.put(up)
            client.data_received(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            head = ut.out[-1].decode()
            assert "\r\nX-Kamal-Target: 10.0.0.7:3000\r\n" in head
            assert "\r\nX-Forwarded-For: 127.0.0.1\r\n" in head
            ids.append(head.split("X-Request-ID: ")[1].split("\r\n")[0])
            up.data_received(RESP % b"text/plain")
        assert ids[0] != ids[1]
        uuid4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
        assert all(uuid4.fullmatch(i) for i in ids)

    asyncio.run(go())


def test_http_date_matches_the_stdlib_imf_fixdate() -> None:
    from email.utils import formatdate

    from dockyard.proxy.http.forward import http_date

    for when in (0.0, 784111777.0, 951782400.5, 1764322554.999, 4102444800.0, 1709164800.0):
        assert http_date(when) == formatdate(when, usegmt=True)
    for day in range(0, 366 * 3, 17):
        when = 1700000000.0 + day * 86400 + day * 3671.25
        assert http_date(when) == formatdate(when, usegmt=True)


def test_closed_connections_leave_no_reference_cycles() -> None:
    """A connection's objects are freed when it closes, by reference counting alone: the
    cyclic garbage collector has nothing of ours to find (it used to take ~6% of the CPU of a
    connection-per-request load, collecting each closed connection's reader and parser)."""

    async def go() -> list[str]:
        plane = logging_plane([])
        for _ in range(20):
            client = ClientConnection(plane)
            client.connection_made(FakeTransport())  # type: ignore[arg-type]
            up = UpstreamConnection(plane.pool, ("10.0.0.7", 3000))
            up.connection_made(FakeTransport())  # type: ignore[arg-type]
            plane.pool.put(up)
            client.data_received(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            up.data_received(  # the origin closes its side after this response
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
            )
            up.connection_lost(None)
            client.connection_lost(None)
        del client, up
        await asyncio.sleep(0)
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            found = [type(o).__name__ for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        ours = ("Connection", "Reader", "Parser", "Exchange", "Head")
        return [name for name in found if name.endswith(ours)]

    gc.collect()
    gc.disable()
    try:
        left = asyncio.run(go())
    finally:
        gc.enable()
    assert left == []
