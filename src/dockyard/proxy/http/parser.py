"""Sans-I/O HTTP/1.1 framing for the proxy: bytes in, callbacks (events) out.

`RequestReader` wraps llhttp (through httptools) for one client connection and adds the checks a
reverse proxy needs on top of it: exactly one valid Host, no Transfer-Encoding on HTTP/1.0,
origin-form targets only, and caps on the URI (414) and the header block (431). llhttp itself
rejects conflicting Content-Length/Transfer-Encoding, duplicate Content-Length, bad chunk sizes,
obsolete line folding and invalid tokens; every such failure surfaces as `HttpError(400)`.

`ResponseReader` frames responses read from an upstream connection (HEAD, 1xx, 101, 204/304,
close-delimited bodies).

Neither class touches a socket: feed bytes, receive calls on a handler object. The handler
protocols below are the "events"; tests use a recording handler.
"""

from __future__ import annotations

import re
from typing import Final, Protocol

import httptools

__all__ = [
    "HttpError",
    "RequestHandler",
    "RequestHead",
    "RequestReader",
    "ResponseHandler",
    "ResponseHead",
    "ResponseReader",
]

DEFAULT_MAX_URI: Final = 8 * 1024
DEFAULT_MAX_HEADERS_SIZE: Final = 64 * 1024
DEFAULT_MAX_HEADER_COUNT: Final = 256


class HttpError(Exception):
    """The peer sent something we refuse; `status` is the response to send (then close)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


# Header kinds (request side). Values are small ints: a dict lookup on the lower-cased name.
H_OTHER: Final = 0
H_HOST: Final = 1
H_CONNECTION: Final = 2
H_HOP: Final = 3
H_UPGRADE: Final = 4
H_TE: Final = 5  # Transfer-Encoding
H_FORWARDED: Final = 6
H_XFF: Final = 7
H_XFP: Final = 8
H_XFH: Final = 9
H_REQUEST_ID: Final = 10
H_REQUEST_START: Final = 11
H_KAMAL_TARGET: Final = 12
H_CONTENT_LENGTH: Final = 13
H_CONTENT_TYPE: Final = 14
H_USER_AGENT: Final = 15
H_COOKIE: Final = 16
H_EXPECT: Final = 17
H_DATE: Final = 18
H_SET_COOKIE: Final = 19

REQUEST_KINDS: Final[dict[bytes, int]] = {
    b"host": H_HOST,
    b"connection": H_CONNECTION,
    b"keep-alive": H_HOP,
    b"proxy-connection": H_HOP,
    b"proxy-authenticate": H_HOP,
    b"proxy-authorization": H_HOP,
    b"te": H_HOP,
    b"trailer": H_HOP,
    b"transfer-encoding": H_TE,
    b"upgrade": H_UPGRADE,
    b"forwarded": H_FORWARDED,
    b"x-forwarded-for": H_XFF,
    b"x-forwarded-proto": H_XFP,
    b"x-forwarded-host": H_XFH,
    b"x-request-id": H_REQUEST_ID,
    b"x-request-start": H_REQUEST_START,
    b"x-kamal-target": H_KAMAL_TARGET,
    b"content-length": H_CONTENT_LENGTH,
    b"content-type": H_CONTENT_TYPE,
    b"user-agent": H_USER_AGENT,
    b"cookie": H_COOKIE,
    b"expect": H_EXPECT,
}

RESPONSE_KINDS: Final[dict[bytes, int]] = {
    b"connection": H_CONNECTION,
    b"keep-alive": H_HOP,
    b"proxy-connection": H_HOP,
    b"proxy-authenticate": H_HOP,
    b"proxy-authorization": H_HOP,
    b"te": H_HOP,
    b"trailer": H_HOP,
    b"transfer-encoding": H_TE,
    b"upgrade": H_UPGRADE,
    b"content-length": H_CONTENT_LENGTH,
    b"content-type": H_CONTENT_TYPE,
    b"date": H_DATE,
    b"set-cookie": H_SET_COOKIE,
}

#: Header names that need no special handling, in the spellings clients and servers send.
_COMMON_OTHER: Final = (
    b"accept",
    b"accept-encoding",
    b"accept-language",
    b"accept-ranges",
    b"authorization",
    b"cache-control",
    b"content-encoding",
    b"etag",
    b"if-modified-since",
    b"if-none-match",
    b"last-modified",
    b"location",
    b"origin",
    b"pragma",
    b"referer",
    b"server",
    b"vary",
    b"x-content-type-options",
    b"x-frame-options",
    b"x-runtime",
)


def _as_sent(kinds: dict[bytes, int]) -> dict[bytes, int]:
    """`kinds` (plus the common other names) keyed by the lower-case and the Title-Case
    spellings, so the usual header name is classified without a `lower()` per header."""
    table = dict.fromkeys(_COMMON_OTHER, H_OTHER) | kinds
    return {spelling: kind for name, kind in table.items() for spelling in (name, name.title())}


#: Connection header values that name no other header (the common case, checked first).
_PLAIN_CONNECTION: Final = frozenset(
    (b"keep-alive", b"Keep-Alive", b"close", b"Close", b"upgrade", b"Upgrade", b"")
)

_REQUEST_AS_SENT: Final = _as_sent(REQUEST_KINDS)
_RESPONSE_AS_SENT: Final = _as_sent(RESPONSE_KINDS)

#: Method names as str, without a decode per request.
_METHODS: Final[dict[bytes, str]] = {
    m: m.decode()
    for m in (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"CONNECT")
}

# Go's httpguts.ValidHostHeader alphabet (RFC 3986 reg-name/IP-literal plus port).
_VALID_HOST = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]*\Z")


def joined_header(lines: list[bytes], name: str) -> str:
    """Comma-joined values of header `name` (case-insensitive) among raw header `lines`;
    "" when absent. Not hot."""
    key = name.lower().encode("latin-1")
    values = []
    for line in lines:
        colon = line.index(b":")
        if line[:colon].lower() == key:
            values.append(line[colon + 1 :].strip().decode("latin-1"))
    return ",".join(values)


def _named_headers(value: bytes, named: list[bytes] | None) -> list[bytes] | None:
    """`named` plus the header names a Connection header value lists (hop-by-hop headers to
    drop), beyond its keep-alive/close/upgrade tokens."""
    for token in value.lower().split(b","):
        token = token.strip()
        if token in (b"keep-alive", b"close", b"upgrade", b""):
            continue
        if named is None:
            named = []
        named.append(token)
    return named


class RequestHead:
    """One parsed request head. Header lines are kept raw, ready to forward."""

    __slots__ = (
        "connection_tokens",
        "content_length",
        "content_type",
        "cookie",
        "expect_continue",
        "has_request_start",
        "host",
        "kamal_target",
        "keep_alive",
        "lines",
        "method",
        "path",
        "query",
        "request_id",
        "upgrade",
        "user_agent",
        "version",
        "xff",
        "xfh",
        "xfp",
    )

    def __init__(self) -> None:
        self.method = ""
        self.path = b"/"
        self.query = b""  # without "?"; b"" when absent
        self.version = "1.1"
        self.host = b""
        self.connection_tokens: list[bytes] | None = None  # beyond keep-alive/close/upgrade
        self.content_length = -1  # -1: none; -2: chunked
        self.content_type = b""
        self.user_agent = b""
        self.cookie: bytes | None = None
        self.request_id = b""
        self.has_request_start = False
        self.kamal_target: list[bytes] | None = None
        self.xff: list[bytes] | None = None
        self.xfh = b""
        self.xfp = b""
        self.expect_continue = False
        self.upgrade = b""  # the Upgrade header value when the request asks for an upgrade
        self.keep_alive = True
        #: Raw header lines ("Name: value\r\n") to forward as they are.
        self.lines: list[bytes] = []

    @property
    def chunked(self) -> bool:
        return self.content_length == -2

    @property
    def has_body(self) -> bool:
        return self.content_length > 0 or self.content_length == -2

    def header(self, name: str) -> str:
        """Comma-joined values of a header (case-insensitive); "" when absent. Not hot."""
        return joined_header(self.lines, name)


class RequestHandler(Protocol):
    def on_request(self, head: RequestHead) -> None: ...

    def on_request_body(self, data: bytes) -> None: ...

    def on_request_end(self) -> None: ...


class RequestReader:
    """Incremental request framing for one client connection (keep-alive and pipelining)."""

    __slots__ = (
        "_handler",
        "_head",
        "_header_bytes",
        "_header_count",
        "_host_count",
        "_ka_token",
        "_max_count",
        "_max_headers",
        "_max_uri",
        "_parser",
        "_te_seen",
        "_url",
        "_valid_host",
        "upgraded",
    )

    def __init__(
        self,
        handler: RequestHandler,
        *,
        max_uri: int = DEFAULT_MAX_URI,
        max_headers_size: int = DEFAULT_MAX_HEADERS_SIZE,
        max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
    ) -> None:
        self._handler = handler
        self._max_uri = max_uri
        self._max_headers = max_headers_size
        self._max_count = max_header_count
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._valid_host: bytes | None = None
        self._reset()
        self.upgraded = False

    def feed(self, data: bytes) -> bytes | None:
        """Parse `data`. Returns the bytes after an accepted Upgrade/CONNECT head (to tunnel),
        else None. Raises HttpError for anything malformed; the connection must then close."""
        if self.upgraded:
            return data
        parser = self._parser
        if parser is None:  # closed
            return None
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded = True
            offset = int(exc.args[0])
            return data[offset:]
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, HttpError):
                raise cause from None
            raise
        except httptools.HttpParserError as exc:
            raise HttpError(400, str(exc) or "Bad Request") from None
        return None

    def close(self) -> None:
        """Drop the parser and the handler: the connection is gone. The parser holds bound
        methods of this reader and the handler holds the reader, so without this every closed
        connection would leave a reference cycle for the cyclic garbage collector (measured:
        about 6% of the CPU of a connection-per-request load went to collecting them)."""
        self._parser = None
        self._handler = DETACHED

    # httptools callbacks -------------------------------------------------------------------

    def _reset(self) -> None:
        """Ready for the next request head (instead of an on_message_begin callback)."""
        self._head = RequestHead()
        self._url = b""
        self._header_bytes = 0
        self._header_count = 0
        self._host_count = 0
        self._te_seen = False
        self._ka_token = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._max_uri:
            raise HttpError(414, "URI Too Long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # The byte cap bounds memory as the head arrives; the count is checked once the head
        # is complete (on_headers_complete).
        self._header_count += 1
        size = self._header_bytes + len(name) + len(value) + 4
        self._header_bytes = size
        if size > self._max_headers:
            raise HttpError(431, "Request Header Fields Too Large")
        kind = _REQUEST_AS_SENT.get(name)
        if kind is None:
            kind = REQUEST_KINDS.get(name.lower(), H_OTHER)
        # Branches in the order of how common the headers are.
        if kind == H_OTHER:
            self._head.lines.append(b"".join((name, b": ", value, b"\r\n")))
            return
        head = self._head
        if kind == H_HOST:
            self._host_count += 1
            head.host = value
        elif kind == H_USER_AGENT:
            if not head.user_agent:
                head.user_agent = value
            head.lines.append(b"".join((name, b": ", value, b"\r\n")))
        elif kind == H_COOKIE:
            head.cookie = value if head.cookie is None else head.cookie + b"; " + value
            head.lines.append(b"".join((name, b": ", value, b"\r\n")))
        elif kind == H_CONNECTION:
            if value not in _PLAIN_CONNECTION:
                head.connection_tokens = _named_headers(value, head.connection_tokens)
            if value.lower().find(b"keep-alive") >= 0:
                self._ka_token = True
        elif kind == H_CONTENT_TYPE:
            if not head.content_type:
                head.content_type = value
            head.lines.append(b"".join((name, b": ", value, b"\r\n")))
        elif kind == H_CONTENT_LENGTH:
            try:
                head.content_length = int(value)  # llhttp validated digits and duplicates
            except ValueError:
                raise HttpError(400, "Bad Request: invalid Content-Length") from None
            head.lines.append(b"".join((name, b": ", value, b"\r\n")))
        elif kind == H_XFF:
            if head.xff is None:
                head.xff = []
            head.xff.append(value)
        elif kind == H_XFP:
            if not head.xfp:
                head.xfp = value
        elif kind == H_XFH:
            if not head.xfh:
                head.xfh = value
        elif kind == H_REQUEST_ID:
            if not head.request_id:
                head.request_id = value
            head.lines.append(b"".join((name, b": ", value, b"\r\n")))
        elif kind == H_REQUEST_START:
            head.has_request_start = head.has_request_start or bool(value)
            head.lines.append(b"".join((name, b": ", value, b"\r\n")))
        elif kind == H_TE:
            # Only a single, final "chunked" coding is accepted (as Go's server does).
            if self._te_seen or value.strip().lower() != b"chunked":
                raise HttpError(400, "Bad Request: unsupported Transfer-Encoding")
            self._te_seen = True
        elif kind == H_UPGRADE:
            head.upgrade = value
        elif kind == H_KAMAL_TARGET:
            if head.kamal_target is None:
                head.kamal_target = []
            head.kamal_target.append(value)
        elif kind == H_EXPECT:
            if value.lower() == b"100-continue":
                head.expect_continue = True
            else:
                raise HttpError(417, "Expectation Failed")
        # H_HOP, H_FORWARDED: dropped

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None  # only called from inside feed()
        head = self._head
        method = parser.get_method()
        head.method = _METHODS.get(method) or method.decode("ascii")
        head.keep_alive = keep_alive = parser.should_keep_alive()
        # llhttp accepts only HTTP/0.9, 1.0, 1.1 and 2.0, and keeps a connection alive without
        # a "keep-alive" Connection token only for 1.1: that common case skips
        # get_http_version(), which formats a new string per call.
        head.version = version = (
            "1.1" if keep_alive and not self._ka_token else parser.get_http_version()
        )
        if self._header_count > self._max_count:
            raise HttpError(431, "Request Header Fields Too Large")
        url = self._url
        if not url.startswith(b"/"):
            raise HttpError(400, "Bad Request: unsupported request target")
        mark = url.find(b"?")
        if mark >= 0:
            head.path = url[:mark]
            head.query = url[mark + 1 :]
        else:
            head.path = url
        if version == "1.1":
            if self._host_count != 1:
                raise HttpError(400, "Bad Request: missing or repeated Host header")
        elif version == "1.0":
            if self._host_count > 1:
                raise HttpError(400, "Bad Request: repeated Host header")
            if self._te_seen:
                raise HttpError(400, "Bad Request: Transfer-Encoding on HTTP/1.0")
        else:
            raise HttpError(505, "HTTP Version Not Supported")
        host = head.host
        if host != self._valid_host:  # keep-alive requests repeat their Host
            if not _VALID_HOST.match(host):
                raise HttpError(400, "Bad Request: invalid Host header")
            self._valid_host = host
        if self._te_seen:
            head.content_length = -2  # llhttp accepts only a final "chunked" coding
        upgrade = parser.should_upgrade()
        if head.upgrade and not upgrade:
            head.upgrade = b""  # Upgrade without "Connection: upgrade" is not a request to switch
        if upgrade and head.has_body:
            raise HttpError(400, "Bad Request: upgrade with a body")
        # Ready for the next request head (the body of `_reset`, inlined: once per request).
        self._head = RequestHead()
        self._url = b""
        self._header_bytes = 0
        self._header_count = 0
        self._host_count = 0
        self._te_seen = False
        self._ka_token = False
        self._handler.on_request(head)

    def on_body(self, data: bytes) -> None:
        self._handler.on_request_body(data)

    def on_message_complete(self) -> None:
        self._handler.on_request_end()


class ResponseHead:
    """One parsed upstream response head."""

    __slots__ = (
        "connection_tokens",
        "content_length",
        "content_type",
        "has_date",
        "keep_alive",
        "lines",
        "reason",
        "set_cookie",
        "status",
        "te",
        "upgrade",
    )

    def __init__(self) -> None:
        self.status = 0
        self.reason = b""
        self.lines: list[bytes] = []
        self.connection_tokens: list[bytes] | None = None
        self.content_length = -1
        self.content_type = b""
        self.te = b""
        self.has_date = False
        self.set_cookie = False
        self.upgrade = b""
        self.keep_alive = True

    @property
    def chunked(self) -> bool:
        return bool(self.te)

    @property
    def block(self) -> bytes:
        return b"".join(self.lines)

    def header(self, name: str) -> str:
        return joined_header(self.lines, name)


class ResponseHandler(Protocol):
    def on_response(self, head: ResponseHead) -> None: ...

    def on_response_body(self, data: bytes) -> None: ...

    def on_response_end(self) -> None: ...


class _Detached:
    """The handler of a closed reader: events after the close go nowhere."""

    __slots__ = ()

    def on_request(self, head: RequestHead) -> None:
        pass

    def on_request_body(self, data: bytes) -> None:
        pass

    def on_request_end(self) -> None:
        pass

    def on_response(self, head: ResponseHead) -> None:
        pass

    def on_response_body(self, data: bytes) -> None:
        pass

    def on_response_end(self) -> None:
        pass


DETACHED: Final = _Detached()


class _HeadDone(Exception):
    """Raised inside the parser to stop after the head of a response to HEAD."""


class ResponseReader:
    """Incremental response framing for one upstream connection (no pipelining)."""

    __slots__ = (
        "_head",
        "_max_headers",
        "_parser",
        "_size",
        "_state",
        "broken",
        "handler",
        "head_request",
    )

    def __init__(self, handler: ResponseHandler, *, max_headers_size: int = 1 << 20) -> None:
        #: Receives the events; the data plane points it at the exchange using the connection.
        self.handler = handler
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._head = ResponseHead()
        self._size = 0
        self._state = 0  # 0: before a final head, 1: in the body, 2: complete
        self._max_headers = max_headers_size
        #: Set before feeding the response to a HEAD request: its body is empty whatever the
        #: framing headers say.
        self.head_request = False
        #: True once the parser cannot be reused (after HEAD, an upgrade or an error).
        self.broken = False

    def feed(self, data: bytes) -> bytes | None:
        """Parse upstream bytes. Returns the bytes after a 101 head (tunnel data), else None.
        Raises HttpError(502) when the upstream response is malformed."""
        if self._state == 0:
            self._size += len(data)
            if self._size > self._max_headers:
                self.broken = True
                raise HttpError(502, "upstream response head too large")
        parser = self._parser
        if parser is None:  # closed
            return None
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.broken = True
            return data[int(exc.args[0]) :]
        except httptools.HttpParserCallbackError as exc:
            self.broken = True
            cause = exc.__context__
            if isinstance(cause, _HeadDone):
                self._state = 2
                self.handler.on_response_end()
                return None
            if isinstance(cause, HttpError):
                raise cause from None
            raise HttpError(502, f"malformed response: {exc}") from None
        except httptools.HttpParserError as exc:
            self.broken = True
            raise HttpError(502, f"malformed response: {exc}") from None
        return None

    def close(self) -> None:
        """Drop the parser and the handler (see RequestReader.close): the connection is gone,
        or this reader is replaced."""
        self._parser = None
        self.broken = True
        self.handler = DETACHED

    def feed_eof(self) -> bool:
        """The upstream closed. True when that completed a close-delimited body."""
        head = self._head
        if self._state == 1 and head.content_length < 0 and not head.te:
            self._state = 2
            self.handler.on_response_end()
            return True
        return False

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = _RESPONSE_AS_SENT.get(name)
        if kind is None:
            kind = RESPONSE_KINDS.get(name.lower(), H_OTHER)
        # Branches in the order of how common the headers are.
        if kind == H_OTHER:
            self._head.lines.append(b"".join((name, b": ", value, b"\r\n")))
            return
        head = self._head
        if kind == H_DATE:
            head.has_date = True
            head.lines.append(b"".join((name, b": ", value, b"\r\n")))
        elif kind == H_CONTENT_TYPE:
            if not head.content_type:
                head.content_type = value
            head.lines.append(b"".join((name, b": ", value, b"\r\n")))
        elif kind == H_CONTENT_LENGTH:
            try:
                head.content_length = int(value)
            except ValueError:
                raise HttpError(502, "malformed response: Content-Length") from None
            head.lines.append(b"".join((name, b": ", value, b"\r\n")))
        elif kind == H_CONNECTION:
            if value not in _PLAIN_CONNECTION:
                head.connection_tokens = _named_headers(value, head.connection_tokens)
        elif kind == H_SET_COOKIE:
            head.set_cookie = True
            head.lines.append(b"".join((name, b": ", value, b"\r\n")))
        elif kind == H_TE:
            head.te = value
        elif kind == H_UPGRADE:
            head.upgrade = value
        # H_HOP: dropped

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None  # only called from inside feed()
        head = self._head
        head.status = parser.get_status_code()
        head.keep_alive = parser.should_keep_alive()
        if head.status >= 200:
            self._state = 1
        self.handler.on_response(head)
        if self.head_request and head.status >= 200:
            raise _HeadDone

    def on_body(self, data: bytes) -> None:
        self.handler.on_response_body(data)

    def on_message_complete(self) -> None:
        # Reset for the next response here (no on_message_begin callback).
        status = self._head.status
        self._head = ResponseHead()
        self._size = 0
        self._state = 0
        if status >= 200:
            self.handler.on_response_end()
