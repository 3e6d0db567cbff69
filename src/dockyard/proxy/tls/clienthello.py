"""A sans-I/O reader for the first flight of a TLS connection: the ClientHello.

The data plane peeks at the bytes a client sends on the HTTPS port *before* any TLS object exists,
so that it can learn the server name (SNI) and the offered ALPN protocols, await a certificate for
that name, and only then start the handshake with the right `ssl.SSLContext`.

`parse_client_hello(data)` follows the "event, need more, or reject" shape of our other readers:

* a :class:`ClientHello` ``(sni, alpn)`` once the whole handshake message is in ``data``;
* :data:`NEED_MORE` while ``data`` is a valid but incomplete prefix;
* ``None`` when ``data`` is not a TLS ClientHello (plain HTTP sent to the TLS port, an SSLv2
  hello, a malformed or oversized message). ``None`` is final: more bytes never fix it.

It never raises and never reads past the ClientHello, so it is safe on hostile input.
"""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

__all__ = ["MAX_CLIENT_HELLO", "NEED_MORE", "ClientHello", "NeedMore", "parse_client_hello"]

#: The largest ClientHello we accept (handshake body bytes). Real ones are well under 2 KiB,
#: even with post-quantum key shares; anything bigger is refused rather than buffered.
MAX_CLIENT_HELLO: Final = 64 * 1024

_RECORD_HANDSHAKE: Final = 0x16
_HANDSHAKE_CLIENT_HELLO: Final = 0x01
_MAX_RECORD: Final = 1 << 14  # TLSPlaintext.length limit (RFC 8446 §5.1)
_EXT_SERVER_NAME: Final = 0
_EXT_ALPN: Final = 16
_SNI_HOST_NAME: Final = 0


class NeedMore(enum.Enum):
    """The type of :data:`NEED_MORE` (a singleton, comparable with ``is``)."""

    NEED_MORE = "NEED_MORE"

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE: Final = NeedMore.NEED_MORE


class ClientHello(NamedTuple):
    """What the data plane needs from a ClientHello.

    ``sni`` is the requested host name in lower case without a trailing dot, or ``None`` when
    the client sent no server_name extension. ``alpn`` lists the offered protocols in the
    client's order (empty when there was no ALPN extension).
    """

    sni: str | None
    alpn: tuple[str, ...]


class _Malformed(Exception):
    """Internal: the bytes cannot be a ClientHello."""


def parse_client_hello(data: bytes | bytearray | memoryview) -> ClientHello | NeedMore | None:
    """Read the SNI and ALPN offer from the start of a TLS connection (see the module doc)."""
    buf = bytes(data)
    try:
        body = _handshake_message(buf)
        if body is NEED_MORE:
            return NEED_MORE
        return _client_hello(body)
    except _Malformed:
        return None


def _handshake_message(buf: bytes) -> bytes | NeedMore:
    """Reassemble the first handshake message from one or more handshake records."""
    handshake = bytearray()
    pos = 0
    wanted: int | None = None  # 4 + handshake body length, once the header is known
    while True:
        if pos >= len(buf):
            return NEED_MORE
        if buf[pos] != _RECORD_HANDSHAKE:
            raise _Malformed
        header = buf[pos : pos + 5]
        # legacy_record_version: 0x0300..0x0304 (any TLS/SSLv3 record layer value).
        if len(header) >= 2 and header[1] != 0x03:
            raise _Malformed
        if len(header) >= 3 and header[2] > 0x04:
            raise _Malformed
        if len(header) < 5:
            return NEED_MORE
        length = int.from_bytes(header[3:5], "big")
        if length == 0 or length > _MAX_RECORD:
            raise _Malformed
        fragment = buf[pos + 5 : pos + 5 + length]
        handshake += fragment
        if wanted is None and len(handshake) >= 1 and handshake[0] != _HANDSHAKE_CLIENT_HELLO:
            raise _Malformed
        if wanted is None and len(handshake) >= 4:
            body_length = int.from_bytes(handshake[1:4], "big")
            if body_length > MAX_CLIENT_HELLO:
                raise _Malformed
            wanted = 4 + body_length
        if wanted is not None and len(handshake) >= wanted:
            return bytes(handshake[4:wanted])
        if len(fragment) < length:
            return NEED_MORE
        pos += 5 + length


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise _Malformed
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> _Reader:
        return _Reader(self.take(self.uint(length_size)))

    @property
    def done(self) -> bool:
        return self.pos == len(self.data)


def _client_hello(body: bytes) -> ClientHello:
    r = _Reader(body)
    if r.take(1) != b"\x03":  # legacy_version major (0x0301..0x0303)
        raise _Malformed
    r.take(1 + 32)  # legacy_version minor, random
    if len(r.vector(1).data) > 32:  # legacy_session_id
        raise _Malformed
    suites = r.vector(2).data
    if not suites or len(suites) % 2:
        raise _Malformed
    if not r.vector(1).data:  # legacy_compression_methods
        raise _Malformed
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    if r.done:  # no extensions at all (very old clients)
        return ClientHello(None, ())
    extensions = r.vector(2)
    if not r.done:
        raise _Malformed
    seen: set[int] = set()
    while not extensions.done:
        ext_type = extensions.uint(2)
        ext = extensions.vector(2)
        if ext_type in seen:
            raise _Malformed  # RFC 8446 §4.2: at most one extension of each type
        seen.add(ext_type)
        if ext_type == _EXT_SERVER_NAME:
            sni = _server_name(ext)
        elif ext_type == _EXT_ALPN:
            alpn = _alpn(ext)
    return ClientHello(sni, alpn)


def _server_name(ext: _Reader) -> str | None:
    if ext.done:  # an empty server_name extension appears in ServerHellos, tolerate it here
        return None
    names = ext.vector(2)
    if not ext.done or names.done:
        raise _Malformed
    host: str | None = None
    while not names.done:
        name_type = names.uint(1)
        name = names.vector(2).data
        if name_type != _SNI_HOST_NAME or host is not None:
            continue  # RFC 6066: one host_name; other name types are ignored
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError as exc:
            raise _Malformed from exc
        text = text.rstrip(".").lower()
        if not text or len(text) > 253 or not all(33 <= ord(c) < 127 for c in text):
            raise _Malformed
        host = text
    return host


def _alpn(ext: _Reader) -> tuple[str, ...]:
    protocols = ext.vector(2)
    if not ext.done or protocols.done:
        raise _Malformed
    out: list[str] = []
    while not protocols.done:
        name = protocols.vector(1).data
        if not name:
            raise _Malformed
        out.append(name.decode("latin-1"))
    return tuple(out)
