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
import re
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
#: A host name's characters: printable ASCII without the space.
_HOST_CHARS: Final = re.compile(r"[!-~]+")


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
        body = _first_record_message(buf)
        if body is None:
            message = _handshake_message(buf)
            if message is NEED_MORE:
                return NEED_MORE
            body = message
        return _client_hello(body)
    except _Malformed:
        return None


def _first_record_message(buf: bytes) -> bytes | None:
    """The common case, without reassembly: the whole ClientHello inside the first record.
    None when that is not (yet) so; :func:`_handshake_message` then decides."""
    if len(buf) < 9 or buf[0] != _RECORD_HANDSHAKE or buf[1] != 0x03 or buf[2] > 0x04:
        return None
    length = buf[3] << 8 | buf[4]
    if length == 0 or length > _MAX_RECORD or buf[5] != _HANDSHAKE_CLIENT_HELLO:
        return None
    end = 9 + (buf[6] << 16 | buf[7] << 8 | buf[8])
    if end - 5 > MAX_CLIENT_HELLO or end - 5 > length or end > len(buf):
        return None
    return buf[9:end]


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


def _vector(body: bytes, pos: int, size: int, end: int) -> int:
    """Where the vector at ``pos`` (its length in ``size`` bytes) ends; it must fit in ``end``."""
    start = pos + size
    if start > end:
        raise _Malformed
    stop = start + int.from_bytes(body[pos:start], "big")
    if stop > end:
        raise _Malformed
    return stop


def _client_hello(body: bytes) -> ClientHello:
    """The ClientHello's fields walked by offset (it runs once per TLS connection: no reader
    object or copy per field). ``_Malformed`` when a length runs past its enclosing vector."""
    end = len(body)
    if end < 34 or body[0] != 0x03:  # legacy_version major (0x0301..0x0303), then the random
        raise _Malformed
    pos = _vector(body, 34, 1, end)  # legacy_session_id
    if pos - 35 > 32:
        raise _Malformed
    start = pos + 2
    pos = _vector(body, pos, 2, end)  # cipher_suites
    if pos == start or (pos - start) % 2:
        raise _Malformed
    start = pos + 1
    pos = _vector(body, pos, 1, end)  # legacy_compression_methods
    if pos == start:
        raise _Malformed
    if pos == end:  # no extensions at all (very old clients)
        return ClientHello(None, ())
    if _vector(body, pos, 2, end) != end:
        raise _Malformed
    pos += 2
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    seen: set[int] = set()
    while pos < end:
        if pos + 4 > end:
            raise _Malformed
        ext_type = body[pos] << 8 | body[pos + 1]
        stop = pos + 4 + (body[pos + 2] << 8 | body[pos + 3])
        if stop > end:
            raise _Malformed
        if ext_type in seen:
            raise _Malformed  # RFC 8446 §4.2: at most one extension of each type
        seen.add(ext_type)
        if ext_type == _EXT_SERVER_NAME:
            sni = _server_name(body[pos + 4 : stop])
        elif ext_type == _EXT_ALPN:
            alpn = _alpn(body[pos + 4 : stop])
        pos = stop
    return ClientHello(sni, alpn)


def _server_name(ext: bytes) -> str | None:
    end = len(ext)
    if not end:  # an empty server_name extension appears in ServerHellos, tolerate it here
        return None
    if _vector(ext, 0, 2, end) != end or end == 2:
        raise _Malformed
    pos = 2
    host: str | None = None
    while pos < end:
        if pos + 1 > end:
            raise _Malformed
        name_type = ext[pos]
        stop = _vector(ext, pos + 1, 2, end)
        name = ext[pos + 3 : stop]
        pos = stop
        if name_type != _SNI_HOST_NAME or host is not None:
            continue  # RFC 6066: one host_name; other name types are ignored
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError as exc:
            raise _Malformed from exc
        text = text.rstrip(".").lower()
        if not text or len(text) > 253 or not _HOST_CHARS.fullmatch(text):
            raise _Malformed
        host = text
    return host


def _alpn(ext: bytes) -> tuple[str, ...]:
    end = len(ext)
    if _vector(ext, 0, 2, end) != end or end == 2:
        raise _Malformed
    pos = 2
    out: list[str] = []
    while pos < end:
        stop = _vector(ext, pos, 1, end)
        if stop == pos + 1:
            raise _Malformed
        out.append(ext[pos + 1 : stop].decode("latin-1"))
        pos = stop
    return tuple(out)
