"""The ClientHello reader: real hellos from OpenSSL, built hellos, fragments, and fuzzing."""

from __future__ import annotations

import contextlib
import ssl
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.proxy.tls.clienthello import (
    MAX_CLIENT_HELLO,
    NEED_MORE,
    ClientHello,
    parse_client_hello,
)


def openssl_client_hello(server_hostname: str | None, alpn: list[str] | None) -> bytes:
    """The first flight Python's ssl (OpenSSL) sends as a client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_reads_sni_and_alpn_from_an_openssl_client_hello() -> None:
    data = openssl_client_hello("App.Example.COM", ["h2", "http/1.1"])
    assert parse_client_hello(data) == ClientHello("app.example.com", ("h2", "http/1.1"))
    sni, alpn = parse_client_hello(data)  # type: ignore[misc]  # it is a plain tuple too
    assert sni == "app.example.com"
    assert alpn == ("h2", "http/1.1")


def test_acme_validator_offer_and_no_alpn() -> None:
    data = openssl_client_hello("a.test", ["acme-tls/1"])
    assert parse_client_hello(data) == ClientHello("a.test", ("acme-tls/1",))
    assert parse_client_hello(openssl_client_hello("a.test", None)) == ClientHello("a.test", ())


def test_no_sni_when_the_client_sends_none() -> None:
    data = openssl_client_hello(None, ["http/1.1"])
    assert parse_client_hello(data) == ClientHello(None, ("http/1.1",))


def test_every_prefix_needs_more_and_byte_by_byte_feeding_works() -> None:
    data = openssl_client_hello("incremental.test", ["h2"])
    for end in range(len(data)):
        assert parse_client_hello(data[:end]) is NEED_MORE, end
    buf = bytearray()
    results = []
    for byte in data:
        buf.append(byte)
        results.append(parse_client_hello(buf))
    assert results[-1] == ClientHello("incremental.test", ("h2",))
    assert all(r is NEED_MORE for r in results[:-1])


def test_trailing_bytes_after_the_hello_are_ignored() -> None:
    data = openssl_client_hello("x.test", None) + b"\x17\x03\x03\x00\x05hello"
    assert parse_client_hello(data) == ClientHello("x.test", ())


def test_not_tls_is_rejected_at_once() -> None:
    assert parse_client_hello(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") is None
    assert parse_client_hello(b"G") is None
    assert parse_client_hello(b"\x80\x2e\x01\x00\x02") is None  # SSLv2-compatible hello
    assert parse_client_hello(b"\x16\x02") is None  # record version 2.x
    assert parse_client_hello(b"\x16\x03\x01\x00\x00") is None  # empty record
    assert parse_client_hello(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00") is None  # ServerHello


def test_empty_input_needs_more() -> None:
    assert parse_client_hello(b"") is NEED_MORE
    assert parse_client_hello(b"\x16\x03\x01") is NEED_MORE


def test_oversized_hello_is_refused_without_buffering() -> None:
    length = MAX_CLIENT_HELLO + 1
    data = b"\x16\x03\x01\x00\x04\x01" + length.to_bytes(3, "big")
    assert parse_client_hello(data) is None


# -- built hellos ------------------------------------------------------------------------------


def _vec(data: bytes, size: int) -> bytes:
    return len(data).to_bytes(size, "big") + data


def build_client_hello(
    sni: str | None,
    alpn: list[str],
    extra: list[tuple[int, bytes]],
    session_id: bytes = b"",
) -> bytes:
    """A ClientHello handshake message (type + length + body)."""
    exts = b""
    for ext_type, payload in extra:
        exts += struct.pack("!H", ext_type) + _vec(payload, 2)
    if sni is not None:
        names = b"\x00" + _vec(sni.encode(), 2)
        exts += struct.pack("!H", 0) + _vec(_vec(names, 2), 2)
    if alpn:
        protos = b"".join(_vec(p.encode(), 1) for p in alpn)
        exts += struct.pack("!H", 16) + _vec(_vec(protos, 2), 2)
    body = (
        b"\x03\x03"
        + bytes(32)
        + _vec(session_id, 1)
        + _vec(b"\x13\x01\x13\x02", 2)
        + _vec(b"\x00", 1)
        + _vec(exts, 2)
    )
    return b"\x01" + len(body).to_bytes(3, "big") + body


def in_records(message: bytes, sizes: list[int]) -> bytes:
    out = b""
    pos = 0
    i = 0
    while pos < len(message):
        size = sizes[i % len(sizes)] if sizes else len(message)
        chunk = message[pos : pos + size]
        out += b"\x16\x03\x01" + _vec(chunk, 2)
        pos += len(chunk)
        i += 1
    return out


hostnames = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True
)
protocols = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/.-", min_size=1, max_size=20),
    max_size=5,
)
# Extension types other than server_name (0) and ALPN (16), each at most once.
extras = st.dictionaries(
    st.integers(min_value=1, max_value=0xFFFF).filter(lambda t: t != 16),
    st.binary(max_size=64),
    max_size=5,
).map(lambda d: list(d.items()))


@given(
    sni=st.none() | hostnames,
    alpn=protocols,
    extra=extras,
    session_id=st.binary(max_size=32),
    sizes=st.lists(st.integers(min_value=1, max_value=300), max_size=4),
)
@settings(max_examples=120, deadline=None)
def test_built_hellos_in_any_fragmentation(
    sni: str | None,
    alpn: list[str],
    extra: list[tuple[int, bytes]],
    session_id: bytes,
    sizes: list[int],
) -> None:
    data = in_records(build_client_hello(sni, alpn, extra, session_id), sizes)
    assert parse_client_hello(data) == ClientHello(sni, tuple(alpn))
    for end in range(0, len(data), max(1, len(data) // 12)):
        assert parse_client_hello(data[:end]) is NEED_MORE


@given(st.binary(max_size=600))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = parse_client_hello(data)
    assert result is None or result is NEED_MORE or isinstance(result, ClientHello)


@given(st.binary(max_size=400))
@settings(max_examples=200, deadline=None)
def test_arbitrary_handshake_payload_in_a_record_never_raises(payload: bytes) -> None:
    data = b"\x16\x03\x01" + _vec(b"\x01" + len(payload).to_bytes(3, "big") + payload, 2)
    result = parse_client_hello(data)
    assert result is None or isinstance(result, ClientHello)


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_mutated_real_hello_never_raises(data: st.DataObject) -> None:
    hello = bytearray(openssl_client_hello_cached())
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        index = data.draw(st.integers(min_value=0, max_value=len(hello) - 1))
        hello[index] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(hello)))
    result = parse_client_hello(bytes(hello[:cut]))
    assert result is None or result is NEED_MORE or isinstance(result, ClientHello)
    if isinstance(result, ClientHello) and result.sni is not None:
        assert result.sni == result.sni.lower()
        assert all(33 <= ord(c) < 127 for c in result.sni)


_CACHED: list[bytes] = []


def openssl_client_hello_cached() -> bytes:
    if not _CACHED:
        _CACHED.append(openssl_client_hello("fuzz.example.test", ["h2", "http/1.1"]))
    return _CACHED[0]


def test_duplicate_extensions_are_malformed() -> None:
    message = build_client_hello("a.test", [], [(5, b""), (5, b"")])
    assert parse_client_hello(in_records(message, [])) is None


def test_non_ascii_server_name_is_malformed() -> None:
    names = b"\x00" + _vec("é.test".encode(), 2)
    message = build_client_hello(None, [], [(0, _vec(names, 2))])
    assert parse_client_hello(in_records(message, [])) is None
