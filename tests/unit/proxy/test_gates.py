"""Access gates alone: basic auth, IP allowlist and the trusted client-IP header, on request
heads parsed by the real parser."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from dockyard.proxy.dataplane import gates
from dockyard.proxy.dataplane.gates import GateConfigError, ServiceGate, build_gate
from dockyard.proxy.http.parser import RequestHead, RequestReader

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


class _Heads:
    def __init__(self) -> None:
        self.heads: list[RequestHead] = []

    def on_request(self, head: RequestHead) -> None:
        self.heads.append(head)

    def on_request_body(self, data: bytes) -> None:
        pass

    def on_request_end(self) -> None:
        pass


def head(*lines: str) -> RequestHead:
    sink = _Heads()
    raw = "GET /x HTTP/1.1\r\nHost: app.test\r\n" + "".join(f"{x}\r\n" for x in lines) + "\r\n"
    RequestReader(sink).feed(raw.encode("latin-1"))
    assert len(sink.heads) == 1
    return sink.heads[0]


def basic(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_no_option_means_no_gate() -> None:
    assert build_gate("web") is None
    assert build_gate("web", allow=["10.0.0.0/8"]) is not None


def test_basic_auth_accepts_the_right_credentials_and_strips_them() -> None:
    gate = ServiceGate("web", user="admin", password_hash=HASH)
    h = head(basic("admin", "s3cret"), "X-Other: 1")
    assert gate.check(h, b"127.0.0.1") is None
    assert h.lines == [b"X-Other: 1\r\n"]  # not forwarded, not logged
    # The $2y$ spelling (htpasswd -B) verifies too.
    gate_y = ServiceGate("web", user="admin", password_hash="$2y$" + HASH[4:])
    assert gate_y.check(head(basic("admin", "s3cret")), b"127.0.0.1") is None


@pytest.mark.parametrize(
    "line",
    [
        None,  # missing
        basic("admin", "wrong"),
        basic("other", "s3cret"),
        "Authorization: Basic !!!not-base64!!!",
        "Authorization: Basic " + base64.b64encode(b"no-colon").decode(),
        "Authorization: Bearer abc",
        "Authorization: Basic",
        basic("admin", "x" * 100),  # bcrypt refuses > 72 bytes: a refusal, not an error
    ],
)
def test_basic_auth_refuses_with_401_and_a_realm(line: str | None) -> None:
    gate = ServiceGate('we"b', user="admin", password_hash=HASH)
    h = head(line) if line else head()
    refusal = gate.check(h, b"127.0.0.1")
    assert refusal is not None and refusal.status == 401
    assert refusal.headers == b'WWW-Authenticate: Basic realm="we\\"b", charset="UTF-8"\r\n'
    assert not any(x.lower().startswith(b"authorization") for x in h.lines)


def test_two_authorization_headers_are_refused() -> None:
    gate = ServiceGate("web", user="admin", password_hash=HASH)
    refusal = gate.check(head(basic("admin", "s3cret"), basic("admin", "s3cret")), b"1.2.3.4")
    assert refusal is not None and refusal.status == 401


def test_verified_and_refused_credentials_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return bool(real(password, hashed))

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    gate = ServiceGate("web", user="admin", password_hash=HASH)
    for _ in range(3):
        assert gate.check(head(basic("admin", "s3cret")), b"1.2.3.4") is None
        refusal = gate.check(head(basic("admin", "nope")), b"1.2.3.4")
        assert refusal is not None and refusal.status == 401
    assert calls == [b"s3cret", b"nope"]


def test_new_verifications_beyond_the_budget_get_429(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gates.time, "monotonic", lambda: 1000.0)
    gate = ServiceGate("web", user="admin", password_hash=HASH)
    statuses = []
    for i in range(gates.VERIFY_BUDGET + 2):
        refusal = gate.check(head(basic("admin", f"guess{i}")), b"1.2.3.4")
        statuses.append(refusal.status if refusal else 200)
    assert statuses == [401] * gates.VERIFY_BUDGET + [429, 429]
    monkeypatch.setattr(gates.time, "monotonic", lambda: 1001.0)
    assert gate.check(head(basic("admin", "s3cret")), b"1.2.3.4") is None


@pytest.mark.parametrize(
    ("allow", "address", "allowed"),
    [
        (["10.0.0.0/8"], b"10.1.2.3", True),
        (["10.0.0.0/8"], b"11.1.2.3", False),
        (["192.0.2.7"], b"192.0.2.7", True),
        (["192.0.2.7"], b"192.0.2.8", False),
        (["10.0.0.1/8"], b"10.200.0.1", True),  # host bits set: accepted as the network
        (["2001:db8::/32"], b"2001:db8:1::5", True),
        (["2001:db8::/32"], b"2001:db9::5", False),
        (["::1"], b"::1", True),
        (["10.0.0.0/8"], b"::ffff:10.0.0.5", True),  # IPv4-mapped peer on a dual-stack socket
        (["10.0.0.0/8", "::1"], b"::2", False),
        (["10.0.0.0/8"], b"garbage", False),
        (["10.0.0.0/8"], b"", False),
    ],
)
def test_allowlist(allow: list[str], address: bytes, allowed: bool) -> None:
    gate = ServiceGate("web", allow=allow)
    for _ in range(2):  # the second answer comes from the cache
        refusal = gate.check(head(), address)
        if allowed:
            assert refusal is None
        else:
            assert refusal is not None and refusal.status == 403 and refusal.headers == b""


def test_allowlist_is_checked_before_auth() -> None:
    gate = ServiceGate("web", user="admin", password_hash=HASH, allow=["10.0.0.0/8"])
    outside = gate.check(head(basic("admin", "s3cret")), b"192.0.2.1")
    assert outside is not None and outside.status == 403
    inside = gate.check(head(), b"10.0.0.1")
    assert inside is not None and inside.status == 401
    assert gate.check(head(basic("admin", "s3cret")), b"10.0.0.1") is None


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["CF-Connecting-IP: 203.0.113.9"], b"203.0.113.9"),
        (["cf-connecting-ip:   2001:DB8::1  "], b"2001:db8::1"),
        (["CF-Connecting-IP: garbage, 203.0.113.9"], b"203.0.113.9"),  # first valid one
        (["CF-Connecting-IP: not-an-ip"], b"10.9.9.9"),  # fallback: the TCP peer
        (["CF-Connecting-IP: 1.2.3.4.5"], b"10.9.9.9"),
        (["CF-Connecting-IP: [2001:db8::2]"], b"2001:db8::2"),
        (["CF-Connecting-IP: "], b"10.9.9.9"),
        (["X-Real-IP: 198.51.100.1"], b"10.9.9.9"),  # another header is not trusted
        ([], b"10.9.9.9"),
        (["CF-Connecting-IP: x", "CF-Connecting-IP: 198.51.100.2"], b"198.51.100.2"),
    ],
)
def test_client_ip_header(lines: list[str], expected: bytes) -> None:
    gate = ServiceGate("web", client_ip_header="CF-Connecting-IP")
    for _ in range(2):  # the second answer comes from the cache of parsed values
        assert gate.client_ip(head(*lines), b"10.9.9.9") == expected


def test_client_ip_from_x_forwarded_for_and_default_peer() -> None:
    gate = ServiceGate("web", client_ip_header="X-Forwarded-For")
    h = head("X-Forwarded-For: bogus, 203.0.113.5, 10.0.0.1")
    assert gate.client_ip(h, b"10.9.9.9") == b"203.0.113.5"
    no_header = ServiceGate("web", allow=["10.0.0.0/8"])
    assert no_header.client_ip(head("CF-Connecting-IP: 1.1.1.1"), b"10.9.9.9") == b"10.9.9.9"


def test_trusted_header_address_is_what_the_allowlist_sees() -> None:
    gate = ServiceGate("web", allow=["203.0.113.0/24"], client_ip_header="X-Real-IP")
    h = head("X-Real-IP: 203.0.113.77")
    ip = gate.client_ip(h, b"127.0.0.1")
    assert gate.check(h, ip) is None
    h2 = head("X-Real-IP: 198.51.100.1")
    refusal = gate.check(h2, gate.client_ip(h2, b"127.0.0.1"))
    assert refusal is not None and refusal.status == 403


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user": "admin"}, "must be given together"),
        ({"password_hash": HASH}, "must be given together"),
        ({"user": "a:b", "password_hash": HASH}, "must not contain ':'"),
        ({"user": "admin", "password_hash": "plaintext"}, "must be a bcrypt hash"),
        ({"user": "admin", "password_hash": "$2b$99$" + HASH[7:]}, "invalid bcrypt cost"),
        ({"allow": ["10.0.0.0/33"]}, "invalid --allow-ip value '10.0.0.0/33'"),
        ({"allow": ["example.com"]}, "invalid --allow-ip"),
        ({"client_ip_header": "Bad Header"}, "invalid --client-ip-header"),
    ],
)
def test_bad_options_are_refused_clearly(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(GateConfigError, match=message.replace("$", r"\$")):
        build_gate("web", **kwargs)  # type: ignore[arg-type]
