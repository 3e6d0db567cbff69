"""Pure builders for the heads the proxy writes: upstream requests, client responses, errors.

Header rules follow kamal-proxy v0.9.2 (Go's ReverseProxy with `SetXForwarded`):

* hop-by-hop headers (Connection and the headers it names, Keep-Alive, Proxy-*, TE, Trailer,
  Transfer-Encoding, Upgrade) and `Forwarded` are dropped; framing is re-added by the proxy;
* `X-Forwarded-For`: with forward-headers on, the client's values are kept and the peer IP is
  appended; off, only the peer IP;
* `X-Forwarded-Host` / `X-Forwarded-Proto`: the incoming value wins when forward-headers is on,
  else the request Host and the connection's scheme;
* `X-Request-ID` (UUIDv4) and `X-Request-Start: t=<unix ms>` are added only when absent;
* `X-Kamal-Target` is always set to the chosen target, replacing any incoming value;
* the Host header is preserved.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Final

from dockyard.proxy.http.parser import RequestHead, ResponseHead

_REASONS: Final[dict[int, bytes]] = {s.value: s.phrase.encode() for s in HTTPStatus}


_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    *("Jan", "Feb", "Mar", "Apr", "May", "Jun"),
    *("Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
)


def http_date(when: float) -> str:
    """An RFC 9110 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`). Written out here rather than
    with email.utils.formatdate: the data plane then never imports the email package."""
    t = time.gmtime(when)
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (  # noqa: UP031
        _DAYS[t.tm_wday],
        t.tm_mday,
        _MONTHS[t.tm_mon - 1],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"")


class DateCache:
    """The `Date` header value, formatted once per second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = b"Date: " + http_date(now).encode() + b"\r\n"
        return self._line


def _drop_named(lines: list[bytes], tokens: list[bytes]) -> list[bytes]:
    """Remove header lines whose name was listed in the Connection header."""
    kept = []
    for line in lines:
        name = line[: line.index(b":")].lower()
        if name not in tokens:
            kept.append(line)
    return kept


def build_request_head(
    head: RequestHead,
    *,
    path: bytes,
    peer_ip: bytes,
    scheme: bytes,
    target: bytes,
    forward_headers: bool,
    request_id: bytes,
    body_framing: bytes,
) -> bytes:
    """The head sent upstream. `path` is the (possibly prefix-stripped) path without query;
    `request_id` is the value to add when the client sent none (ignored otherwise);
    `body_framing` is the framing header line to add (b"" for none)."""
    lines = head.lines
    if head.connection_tokens:
        lines = _drop_named(lines, head.connection_tokens)
    host = head.host or target
    parts = [
        head.method.encode(),
        b" ",
        path,
        b"?" + head.query if head.query else b"",
        b" HTTP/1.1\r\nHost: ",
        host,
        b"\r\n",
        *lines,
        body_framing,
    ]
    if head.upgrade:
        parts.append(b"Connection: Upgrade\r\nUpgrade: " + head.upgrade + b"\r\n")
    if not head.request_id:
        parts.append(b"X-Request-ID: " + request_id + b"\r\n")
    if not head.has_request_start:
        parts.append(b"X-Request-Start: t=%d\r\n" % (time.time_ns() // 1_000_000))
    if forward_headers:
        xff = b", ".join(head.xff) + b", " + peer_ip if head.xff else peer_ip
        xfh = head.xfh or host
        xfp = head.xfp or scheme
    else:
        xff = peer_ip
        xfh = host
        xfp = scheme
    key = (xff, xfh, xfp, target)
    tail = _TAILS.get(key)
    if tail is None:
        tail = (
            b"X-Forwarded-For: %s\r\nX-Forwarded-Host: %s\r\nX-Forwarded-Proto: %s\r\n"
            b"X-Kamal-Target: %s\r\n\r\n" % key
        )
        if len(_TAILS) >= 4096:
            _TAILS.clear()
        _TAILS[key] = tail
    parts.append(tail)
    return b"".join(parts)


#: The closing forwarding headers of upstream heads, which repeat per client and target.
_TAILS: dict[tuple[bytes, bytes, bytes, bytes], bytes] = {}


_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


def status_line(status: int, reason: bytes) -> bytes:
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason or reason_phrase(status))
        if len(_STATUS_LINES) < 512:
            _STATUS_LINES[key] = line
    return line


def build_response_head(
    head: ResponseHead,
    *,
    date: bytes,
    chunked: bool,
    close: bool,
    extra: bytes = b"",
) -> bytes:
    """The head sent to the client for an upstream response. `date` is a full "Date: ...\\r\\n"
    line added when the upstream sent none; `chunked` adds chunked framing; `close` adds
    `Connection: close`."""
    lines = head.lines
    if head.connection_tokens:
        lines = _drop_named(lines, head.connection_tokens)
    parts = [status_line(head.status, head.reason), *lines]
    if not head.has_date:
        parts.append(date)
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if head.status == 101:
        parts.append(b"Connection: Upgrade\r\nUpgrade: " + head.upgrade + b"\r\n")
    elif close:
        parts.append(b"Connection: close\r\n")
    if extra:
        parts.append(extra)
    parts.append(b"\r\n")
    return b"".join(parts)


def build_simple_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes,
    date: bytes,
    close: bool,
    head_only: bool = False,
    extra: bytes = b"",
) -> bytes:
    """A complete response generated by the proxy itself (error pages, redirects, 200 health)."""
    parts = [status_line(status, b"")]
    if content_type:
        parts.append(b"Content-Type: " + content_type + b"\r\n")
    parts.append(extra)
    parts.append(date)
    parts.append(b"Content-Length: %d\r\n" % len(body))
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)


def strip_prefix(path: bytes, prefix: str) -> bytes:
    """Cut the matched path prefix (segment-aligned, as routing guaranteed); "" becomes "/"."""
    if prefix == "/" or not prefix:
        return path
    raw = prefix.encode()
    if path.startswith(raw):
        path = path[len(raw) :]
    if not path:
        return b"/"
    if not path.startswith(b"/"):
        return b"/" + path
    return path


def split_host_port(host: bytes) -> str:
    """The Host header without its port, as the router wants it."""
    text = host.decode("latin-1")
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1] if end >= 0 else text
    colon = text.rfind(":")
    if colon >= 0:
        return text[:colon]
    return text


def scope_set_cookie(value: bytes, prefix: str, host: str) -> bytes:
    """kamal-proxy's --scope-cookie-paths: a cookie whose Domain is empty or the request host
    gets its Path moved under the matched prefix (`/app` + `/x` -> `/app/x`)."""
    parts = [p.strip() for p in value.split(b";")]
    if not parts or b"=" not in parts[0]:
        return value
    domain = b""
    path = b""
    path_index = -1
    for i, attr in enumerate(parts[1:], 1):
        key, _, val = attr.partition(b"=")
        key = key.strip().lower()
        if key == b"domain":
            domain = val.strip().lstrip(b".")
        elif key == b"path":
            path = val.strip()
            path_index = i
    if domain and domain.decode("latin-1").lower() != host.lower():
        return value
    trimmed = path.strip(b"/")
    new_path = prefix.rstrip("/").encode() + (b"/" + trimmed if trimmed else b"")
    attr = b"Path=" + (new_path or b"/")
    if path_index >= 0:
        parts[path_index] = attr
    else:
        parts.append(attr)
    return b"; ".join(parts)


def rewrite_set_cookies(lines: list[bytes], prefix: str, host: str) -> list[bytes]:
    out = []
    for line in lines:
        colon = line.index(b":")
        if line[:colon].lower() == b"set-cookie":
            value = line[colon + 1 :].strip()
            line = line[: colon + 1] + b" " + scope_set_cookie(value, prefix, host) + b"\r\n"
        out.append(line)
    return out


def writer_affinity(lines: list[bytes], timeout: float, now: float) -> list[bytes]:
    """kamal-proxy's writer affinity on a response to a non-read request: add the
    `kamal-writer=<expiry ms>` cookie unless the backend sent `X-Writer-Affinity: false`; the
    opt-out header never reaches the client."""
    kept = []
    opt_out = False
    for line in lines:
        colon = line.index(b":")
        if line[:colon].lower() == b"x-writer-affinity":
            opt_out = opt_out or line[colon + 1 :].strip() == b"false"
            continue
        kept.append(line)
    if not opt_out:
        expires = now + timeout
        kept.append(
            b"Set-Cookie: kamal-writer=%d; Path=/; Expires=%s; HttpOnly\r\n"
            % (int(expires * 1000), http_date(int(expires) + 1).encode())
        )
    return kept
