"""HTTP/2 over TLS for the data plane: one asyncio Protocol per h2 client connection.

The HTTP/2 framing is the `h2` library's (server side, sans-I/O, like the rest of the proxy).
Each request stream is served by an ordinary HTTP/1.1 :class:`ClientConnection` of the HTTPS
plane, so routing, forwarding headers, buffering, error pages, timeouts, gates and the access log
are exactly those of HTTP/1.1:

* the stream's request is written to a fresh ``ClientConnection`` as an HTTP/1.1 request (method
  and ``:path`` in the request line, ``Host`` from ``:authority``, the other fields with
  Go-canonical names, body framed by its ``content-length`` or chunked);
* the ``ClientConnection`` sees an :class:`H2Stream` as its transport. What it writes there is an
  HTTP/1.1 response: parsed with ``httptools`` and sent as HEADERS (hop-by-hop fields dropped) and
  DATA frames, within the peer's flow-control windows;
* back-pressure crosses both ways: a stream whose window is exhausted (or a paused TLS transport)
  pauses the ``ClientConnection``'s writing, which pauses its upstream; the ``ClientConnection``
  pausing its reading stops the WINDOW_UPDATEs for that stream's request body.

Malformed requests (RFC 9113 §8.1.1, §8.2, §8.3): what `h2` checks itself (upper-case or
connection-specific fields, a TE other than ``trailers``, CR/LF/NUL, pseudo-header order and
presence, content-length against the DATA received) ends the connection with GOAWAY
PROTOCOL_ERROR, which RFC 9113 §5.4.1 allows for any stream error; a method that is not a token
or a ``:path`` with bytes HTTP/1.1 cannot carry resets the stream (PROTOCOL_ERROR); everything the
HTTP/1.1 reader refuses (bad Host, oversized fields, long URI...) gets its 4xx on the stream.
Nothing malformed reaches an upstream. CONNECT (and so RFC 8441 WebSockets) answers 501.

Shutdown: while the plane drains, a connection sends GOAWAY (NO_ERROR) when it next hears from
the client, refuses new streams and closes once its streams are done; when the listener's
shutdown ends, every remaining connection gets GOAWAY and is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable
from typing import Any, Final

import httptools
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from dockyard.proxy.dataplane.accesslog import json_escape
from dockyard.proxy.dataplane.server import (
    ClientConnection,
    ConnectionFactory,
    Plane,
    new_request_id,
    set_nodelay,
)

__all__ = [
    "CONNECTION_WINDOW",
    "MAX_CONCURRENT_STREAMS",
    "MAX_HEADER_LIST_SIZE",
    "STREAM_WINDOW",
    "H2Factory",
    "H2Session",
    "H2Stream",
    "h2_factory_for",
]

log = logging.getLogger("dockyard.proxy")

MAX_CONCURRENT_STREAMS: Final = 100
#: Receive window per stream and for the whole connection (request bodies in flight).
STREAM_WINDOW: Final = 1 << 20
CONNECTION_WINDOW: Final = 4 << 20
#: Above the HTTP/1.1 reader's 64 KiB cap on a request head, so that an oversized head gets the
#: same 431 as over HTTP/1.1; beyond this the HPACK decoder refuses the block (connection error).
MAX_HEADER_LIST_SIZE: Final = 128 * 1024
_DEFAULT_WINDOW: Final = 65535
#: Stream resets a client may send: a burst, then a steady rate per second. Beyond that the
#: connection ends with GOAWAY ENHANCE_YOUR_CALM (the "rapid reset" attack, CVE-2023-44487:
#: every reset stream costs a ClientConnection and maybe an upstream request).
#: Bytes queued for a client that does not read, beyond which its connection is dropped.
MAX_UNSENT = 4 << 20
RESET_BURST: Final = 200.0
RESET_RATE: Final = 50.0

#: Response fields that HTTP/2 forbids (RFC 9113 §8.2.2): dropped from the HTTP/1.1 response.
_HOP_BY_HOP: Final = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
        b"trailer",
    )
)
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
#: A request target HTTP/1.1 can carry: visible ASCII, no spaces (the reader checks the form).
_TARGET: Final = re.compile(rb"[!-~]+\Z")

_H1_PROTO: Final = ',"proto":"HTTP/1.1"'
_H2_PROTO: Final = ',"proto":"HTTP/2.0"'
_ID_KEY: Final = ',"request_id":'
_STATUS_KEY: Final = ',"status":'

_CANONICAL: dict[bytes, bytes] = {}


def canonical_name(name: bytes) -> bytes:
    """Go's canonical header key (``x-request-id`` -> ``X-Request-Id``), as Go's ReverseProxy
    (kamal-proxy) writes an HTTP/2 request's fields upstream. Memoised; names repeat."""
    known = _CANONICAL.get(name)
    if known is None:
        known = b"-".join(part[:1].upper() + part[1:] for part in name.split(b"-"))
        if len(_CANONICAL) < 4096:
            _CANONICAL[name] = known
    return known


class _ProtoLabel:
    """The plane's access log, wrapped: lines of requests that came over HTTP/2 say
    ``"proto":"HTTP/2.0"`` as kamal-proxy's do (the HTTP/1.1 machinery writes ``HTTP/1.1``).
    Requests are recognised by their request id, which the h2 side knows (it generates it when
    the client sent none)."""

    __slots__ = ("ids", "inner")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        #: JSON literal of a request id -> number of h2 requests in flight with it.
        self.ids: dict[str, int] = {}

    def __call__(self, line: str) -> None:
        ids = self.ids
        if ids:
            start = line.find(_ID_KEY)
            if start >= 0:
                start += len(_ID_KEY)
                end = line.find(_STATUS_KEY, start)
                if line[start:end] in ids:
                    line = line.replace(_H1_PROTO, _H2_PROTO, 1)
        self.inner(line)

    def add(self, key: str) -> None:
        self.ids[key] = self.ids.get(key, 0) + 1

    def remove(self, key: str) -> None:
        left = self.ids.get(key, 0) - 1
        if left > 0:
            self.ids[key] = left
        else:
            self.ids.pop(key, None)


class H2Factory:
    """The Protocol factory for connections that negotiated ``h2`` on one HTTPS listener."""

    def __init__(self, factory: ConnectionFactory) -> None:
        self.factory = factory
        plane = factory.plane
        self.plane: Plane = plane
        self.sessions: set[H2Session] = set()
        self.label: _ProtoLabel | None = None
        if plane.access_log is not None:
            current = plane.access_log
            self.label = current if isinstance(current, _ProtoLabel) else _ProtoLabel(current)
            plane.access_log = self.label
        self._watching = False

    def __call__(self) -> H2Session:
        if not self._watching:
            self._watching = True
            self.plane.spawn(self._watch())
        return H2Session(self)

    async def _watch(self) -> None:
        """Lives in the plane's tasks: the listener's shutdown cancels those once it is done
        waiting for requests, and then every h2 connection left gets GOAWAY and is closed."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            for session in list(self.sessions):
                session.close_now()


def h2_factory_for(factory: object) -> H2Factory | None:
    """An h2 Protocol factory sharing `factory`'s plane, when it is the data plane's
    :class:`ConnectionFactory`; None for anything else."""
    if isinstance(factory, ConnectionFactory):
        return H2Factory(factory)
    return None


class _HeadDone(Exception):
    """Raised inside the response parser once the head of a response to HEAD is in."""


class H2Stream(asyncio.Transport):
    """One request stream: the transport its :class:`ClientConnection` writes to, and the
    parser of the HTTP/1.1 response it writes."""

    __slots__ = (
        "chunked",
        "client",
        "client_lost",
        "closing",
        "ended",
        "head_done",
        "head_only",
        "head_pending",
        "held",
        "label_key",
        "parser",
        "pending",
        "read_paused",
        "remaining",
        "req_done",
        "resp_done",
        "resp_headers",
        "session",
        "status",
        "stream_id",
        "unacked",
        "write_paused",
    )

    def __init__(self, session: H2Session, stream_id: int, *, head_only: bool) -> None:
        super().__init__()
        self.session = session
        self.stream_id = stream_id
        self.client: ClientConnection | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.head_only = head_only
        self.head_done = False
        self.chunked = False
        #: Body bytes still expected by content-length (-1: not framed by content-length);
        #: `held`: the request's last byte(s), delivered when END_STREAM confirms the length.
        self.remaining = -1
        self.held = b""
        self.req_done = False
        self.resp_headers: list[tuple[bytes, bytes]] = []
        #: The final response head, parsed but not yet sent (see `write`).
        self.head_pending: list[tuple[bytes, bytes]] | None = None
        self.status = 0
        #: Response body bytes waiting for flow-control window.
        self.pending = bytearray()
        self.resp_done = False  # the whole response was parsed
        self.ended = False  # END_STREAM (or RST_STREAM) sent: nothing more to send
        self.closing = False
        self.client_lost = False
        self.read_paused = False
        self.write_paused = False
        self.unacked = 0  # request body bytes received but not yet acknowledged
        self.label_key = ""

    # asyncio.Transport (what the ClientConnection calls) ---------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.resp_done or self.ended or not data:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # (Not exc.__context__: when this write happens inside an except block of the
            # upstream's parser, the context is that block's exception.)
            if not self.head_done:
                self._broken(f"bad response from the HTTP/1.1 side: {exc}")
                return
            self._response_complete()
        except httptools.HttpParserError as exc:
            self._broken(f"bad response from the HTTP/1.1 side: {exc}")
            return
        # The callbacks only collected; send now, in as few frames as possible (a response
        # written at once goes out as HEADERS + DATA with END_STREAM, or HEADERS alone).
        head = self.head_pending
        if head is not None:
            self.head_pending = None
            self.session.send_headers(self, head, end_stream=self.resp_done and not self.pending)
        self.send_pending()
        self.session.flush()
        self.update_write_pause()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if not self.resp_done:
            # The HTTP/1.1 side gave up mid-response (upstream lost...): the stream is cut.
            self.reset(ErrorCodes.INTERNAL_ERROR)
        self._schedule_lost()

    def abort(self) -> None:
        self.closing = True
        if not self.resp_done or self.pending:
            self.reset(ErrorCodes.CANCEL)
        self._schedule_lost()

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return default  # the TLS socket is the session's, not this stream's
        transport = self.session.transport
        return transport.get_extra_info(name, default) if transport is not None else default

    def pause_reading(self) -> None:
        self.read_paused = True

    def resume_reading(self) -> None:
        if not self.read_paused:
            return
        self.read_paused = False
        if self.unacked:
            unacked, self.unacked = self.unacked, 0
            self.session.acknowledge(self.stream_id, unacked)
            self.session.flush()

    def is_reading(self) -> bool:
        return not self.read_paused

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # the peer's flow-control window is the limit

    def get_write_buffer_size(self) -> int:
        return len(self.pending)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def can_write_eof(self) -> bool:
        return False

    # httptools.HttpResponseParser callbacks ------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name not in _HOP_BY_HOP:
            self.resp_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        headers = [(b":status", b"%d" % status), *self.resp_headers]
        self.resp_headers = []
        if status < 200:
            if status != 101:  # 100 Continue, 103 Early Hints: informational HEADERS
                self.session.send_headers(self, headers, end_stream=False)
            return
        self.status = status
        self.head_pending = headers
        if self.head_only:
            self.head_done = True
            raise _HeadDone

    def on_body(self, data: bytes) -> None:
        if not self.ended:
            self.pending += data

    def on_message_complete(self) -> None:
        if self.status:  # not an informational response
            self._response_complete()

    # stream life -------------------------------------------------------------------------------

    def _response_complete(self) -> None:
        self.resp_done = True
        self._schedule_lost()

    def send_pending(self) -> None:
        """Send what the windows allow of the response body; END_STREAM goes with its last
        frame once the response is complete (or alone for an empty body)."""
        if self.ended or self.head_pending is not None:
            return
        pending = self.pending
        if pending:
            sent = self.session.send_data(self, pending, last=self.resp_done)
            del pending[:sent]
        elif self.resp_done:
            self.session.end_stream(self)
        if self.ended:
            self._maybe_gone()

    def update_write_pause(self) -> None:
        """Pause or resume the ClientConnection's writing (never called from parser callbacks:
        resuming may make it write again)."""
        client = self.client
        if client is None or self.client_lost:
            return
        want = bool(self.pending) or self.session.write_paused
        if want and not self.write_paused:
            self.write_paused = True
            client.pause_writing()
        elif not want and self.write_paused:
            self.write_paused = False
            client.resume_writing()

    def reset(self, code: ErrorCodes) -> None:
        if not self.ended:
            self.ended = True
            self.pending.clear()
            self.session.reset_stream(self, code)

    def _broken(self, reason: str) -> None:
        log.error("HTTP/2 stream %d: %s", self.stream_id, reason)
        self.resp_done = True
        self.reset(ErrorCodes.INTERNAL_ERROR)
        self._schedule_lost()
        self.session.flush()

    def _schedule_lost(self) -> None:
        if not self.client_lost:
            self.client_lost = True
            # As asyncio's transports do: connection_lost comes on a later loop turn, once the
            # ClientConnection has finished what it was doing when it wrote or closed.
            self.session.loop.call_soon(self._lost, None)

    def lose(self, exc: Exception | None) -> None:
        """The stream is gone (client reset, connection lost): tell the ClientConnection now."""
        self.ended = True
        self.pending.clear()
        if not self.client_lost:
            self.client_lost = True
            self._lost(exc)

    def _lost(self, exc: Exception | None) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.connection_lost(exc)
        self._maybe_gone()

    def _maybe_gone(self) -> None:
        """Forget the stream once its ClientConnection is gone and nothing is left to send."""
        if self.client is None and self.client_lost and self.ended:
            self.session.stream_gone(self)


class H2Session(asyncio.Protocol):
    """One HTTP/2 client connection (see the module docstring)."""

    __slots__ = (
        "conn",
        "factory",
        "goaway_sent",
        "loop",
        "plane",
        "receiving",
        "reset_budget",
        "reset_clock",
        "streams",
        "transport",
        "write_paused",
    )

    def __init__(self, factory: H2Factory) -> None:
        self.factory = factory
        self.plane = factory.plane
        self.loop = factory.plane.loop
        self.transport: asyncio.Transport | None = None
        # Inbound fields are validated by h2 (the malformed-request rules); what we send is
        # built here from a parsed HTTP/1.1 response (names lower-cased, connection-specific
        # fields dropped), so h2's outbound checks would only repeat that work.
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            normalize_inbound_headers=True,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = H2Connection(config=config)
        conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            },
        )
        conn.decoder.max_header_list_size = MAX_HEADER_LIST_SIZE
        self.conn = conn
        self.streams: dict[int, H2Stream] = {}
        self.write_paused = False
        self.goaway_sent = False
        self.receiving = False
        self.reset_budget = RESET_BURST
        self.reset_clock = 0.0

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.factory.sessions.add(self)
        if not self.plane.uvloop:  # uvloop sets TCP_NODELAY on every TCP socket itself
            set_nodelay(transport)
        conn = self.conn
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self.flush()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        try:
            events = conn.receive_data(data)
        except ProtocolError as exc:
            log.debug("HTTP/2 protocol error from the client: %s", exc)
            self.flush()  # h2 queued GOAWAY with the error code
            self._close_transport()
            return
        # h2 checks a frame's length only once the whole frame is in: a header announcing
        # 16 MB would have it buffer 16 MB. What is left buffered now is one incomplete frame;
        # refuse it as soon as its header shows it is larger than allowed.
        rest = getattr(conn.incoming_buffer, "_data", b"")
        if len(rest) >= 9 and int.from_bytes(rest[:3], "big") > conn.max_inbound_frame_size:
            log.debug("HTTP/2 frame larger than SETTINGS_MAX_FRAME_SIZE from the client")
            with contextlib.suppress(ProtocolError):
                conn.close_connection(ErrorCodes.FRAME_SIZE_ERROR)
            self.flush()
            self._close_transport()
            return
        self.receiving = True
        transport = self.transport
        try:
            for ev in events:
                if transport is None or transport.is_closing():
                    break  # closed while handling this batch (e.g. too many resets)
                self._event(ev)
        finally:
            self.receiving = False
        if self.plane.draining and not self.goaway_sent:
            self.send_goaway()
        self.flush()
        if self.goaway_sent and not self.streams:
            self._close_transport()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.factory.sessions.discard(self)
        self.transport = None
        for stream in list(self.streams.values()):
            stream.lose(exc)
        self.streams.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in self.streams.values():
            if not stream.write_paused and stream.client is not None and not stream.client_lost:
                stream.write_paused = True
                stream.client.pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            stream.update_write_pause()

    # events ----------------------------------------------------------------------------------

    def _event(self, ev: Event) -> None:
        if isinstance(ev, DataReceived):
            stream = self.streams.get(ev.stream_id or 0)
            size = ev.flow_controlled_length or 0
            if stream is None or stream.client is None or stream.client_lost or stream.closing:
                if size and ev.stream_id:
                    self.acknowledge(ev.stream_id, size)
                return
            data = ev.data or b""
            if data:
                if stream.chunked:
                    data = b"%x\r\n%s\r\n" % (len(data), data)
                elif stream.remaining > 0:
                    stream.remaining -= len(data)  # h2 refuses more than content-length
                    if stream.remaining == 0:
                        # Hold the last byte until END_STREAM confirms the length: a request
                        # whose DATA turns out longer never completes on the HTTP/1.1 side.
                        data, stream.held = data[:-1], data[-1:]
                if data:
                    stream.client.data_received(data)
            if size:
                if stream.read_paused:
                    stream.unacked += size
                else:
                    self.acknowledge(stream.stream_id, size)
        elif isinstance(ev, RequestReceived):
            self._request(ev)
        elif isinstance(ev, StreamEnded):
            stream = self.streams.get(ev.stream_id or 0)
            if stream is not None and not stream.req_done:
                stream.req_done = True
                if stream.client is not None and not stream.client_lost and not stream.closing:
                    if stream.chunked:
                        stream.client.data_received(b"0\r\n\r\n")
                    elif stream.held:
                        held, stream.held = stream.held, b""
                        stream.client.data_received(held)
        elif isinstance(ev, WindowUpdated):
            if ev.stream_id:
                stream = self.streams.get(ev.stream_id)
                if stream is not None:
                    stream.send_pending()
                    stream.update_write_pause()
            else:
                self._window_opened()
        elif isinstance(ev, RemoteSettingsChanged):
            if SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
                self._window_opened()
        elif isinstance(ev, StreamReset):
            stream = self.streams.get(ev.stream_id or 0)
            if stream is not None:
                stream.lose(None)
            if ev.remote_reset:
                self._count_reset()
        elif isinstance(ev, ConnectionTerminated):
            self.goaway_sent = True  # nothing new will come: close once the streams are done
        # PingReceived/SettingsAcknowledged/PriorityUpdated/TrailersReceived: h2 does the rest

    def _count_reset(self) -> None:
        now = self.loop.time()
        budget = min(RESET_BURST, self.reset_budget + (now - self.reset_clock) * RESET_RATE)
        self.reset_clock = now
        self.reset_budget = budget - 1.0
        if self.reset_budget < 0 and self.transport is not None:
            log.warning("HTTP/2 client resets streams too fast; closing the connection")
            with contextlib.suppress(ProtocolError):
                self.conn.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
            self.receiving = False
            self.flush()
            self.goaway_sent = True
            self._close_transport()

    def _window_opened(self) -> None:
        for stream in list(self.streams.values()):
            if stream.pending:
                stream.send_pending()
                stream.update_write_pause()

    def _request(self, ev: RequestReceived) -> None:
        stream_id = ev.stream_id or 0
        headers = ev.headers or []
        if self.goaway_sent or self.plane.draining:
            self.conn.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        method = path = authority = host = b""
        content_length: bytes | None = None
        request_id: bytes | None = None
        lines: list[bytes] = []
        for raw_name, raw_value in headers:
            name = bytes(raw_name)
            value = bytes(raw_value)
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                continue  # :scheme is checked by h2; :protocol only comes with CONNECT
            if name == b"host":
                host = value  # h2 checked that it equals :authority when both are present
                continue
            if name == b"content-length":
                if content_length is not None:
                    continue  # repeated with the same value (h2 refuses different ones)
                content_length = value
            elif name == b"x-request-id" and request_id is None:
                request_id = value
            lines.append(b"".join((canonical_name(name), b": ", value, b"\r\n")))
        if method == b"CONNECT":
            self._respond_directly(
                stream_id,
                501,
                b"501 Not Implemented: CONNECT (and WebSockets) over HTTP/2 is not supported\n",
            )
            return
        if not _TOKEN.match(method) or not _TARGET.match(path):
            self.conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        ended = ev.stream_ended is not None
        if ended and content_length is not None and int(content_length) != 0:
            # A body announced, none sent (RFC 9113 §8.1.1; h2 checks only DATA it receives).
            self.conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        stream = H2Stream(self, stream_id, head_only=method == b"HEAD")
        if request_id is None:
            request_id = new_request_id()
            lines.append(b"X-Request-Id: " + request_id + b"\r\n")
        if ended:
            stream.req_done = True
        elif content_length is None:
            stream.chunked = True
            lines.append(b"Transfer-Encoding: chunked\r\n")
        else:
            stream.remaining = int(content_length)  # digits only: h2 checked
        head = b"".join(
            (
                method,
                b" ",
                path,
                b" HTTP/1.1\r\nHost: ",
                authority or host,
                b"\r\n",
                *lines,
                b"\r\n",
            )
        )
        label = self.factory.label
        if label is not None:
            stream.label_key = json_escape(request_id.decode("utf-8", "replace"))
            label.add(stream.label_key)
        self.streams[stream_id] = stream
        client = self.factory.factory()
        stream.client = client
        client.connection_made(stream)
        if self.write_paused:
            stream.write_paused = True
            client.pause_writing()
        if stream.remaining == 0:
            # "content-length: 0" but more frames may follow: the head completes (the empty
            # body with it) only once END_STREAM shows that no DATA came.
            head, stream.held = head[:-2], head[-2:]
        client.data_received(head)

    def _respond_directly(self, stream_id: int, status: int, body: bytes) -> None:
        conn = self.conn
        conn.send_headers(
            stream_id,
            [
                (b":status", b"%d" % status),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
            ],
        )
        conn.send_data(stream_id, body, end_stream=True)
        with contextlib.suppress(ProtocolError):
            conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)  # do not wait for a request body

    # sending (called by the streams) -----------------------------------------------------------

    def send_headers(
        self, stream: H2Stream, headers: list[tuple[bytes, bytes]], *, end_stream: bool
    ) -> None:
        if stream.ended:
            return
        try:
            self.conn.send_headers(stream.stream_id, headers, end_stream=end_stream)
        except ProtocolError as exc:
            log.debug("HTTP/2 stream %d: cannot send headers: %s", stream.stream_id, exc)
            stream.ended = True
            return
        if end_stream:
            self._ended(stream)

    def send_data(self, stream: H2Stream, data: bytes | bytearray, *, last: bool) -> int:
        """Send as much of `data` as the windows allow; returns the number of bytes sent.
        `last`: `data` ends the response (END_STREAM on its last frame, if that is sent)."""
        conn = self.conn
        sid = stream.stream_id
        total = len(data)
        sent = 0
        view = memoryview(data)
        try:
            while sent < total:
                window = conn.local_flow_control_window(sid)
                if window <= 0:
                    break
                size = min(total - sent, window, conn.max_outbound_frame_size)
                end = last and sent + size == total
                conn.send_data(sid, bytes(view[sent : sent + size]), end_stream=end)
                sent += size
                if end:
                    self._ended(stream)
        except ProtocolError as exc:
            log.debug("HTTP/2 stream %d: cannot send data: %s", sid, exc)
            stream.ended = True
            return total
        finally:
            view.release()
        return sent

    def end_stream(self, stream: H2Stream) -> None:
        if stream.ended:
            return
        try:
            self.conn.end_stream(stream.stream_id)
        except ProtocolError as exc:
            log.debug("HTTP/2 stream %d: cannot end: %s", stream.stream_id, exc)
        self._ended(stream)

    def _ended(self, stream: H2Stream) -> None:
        """END_STREAM went out for `stream`."""
        stream.ended = True
        if not stream.req_done:
            # Answered before the request body ended: tell the client to stop sending.
            with contextlib.suppress(ProtocolError):
                self.conn.reset_stream(stream.stream_id, ErrorCodes.NO_ERROR)

    def reset_stream(self, stream: H2Stream, code: ErrorCodes) -> None:
        with contextlib.suppress(ProtocolError):
            self.conn.reset_stream(stream.stream_id, code)
        if not self.receiving:
            self.flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        with contextlib.suppress(ProtocolError):
            self.conn.acknowledge_received_data(size, stream_id)

    def stream_gone(self, stream: H2Stream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        label = self.factory.label
        if label is not None and stream.label_key:
            label.remove(stream.label_key)
            stream.label_key = ""
        if stream.unacked:
            unacked, stream.unacked = stream.unacked, 0
            self.acknowledge(stream.stream_id, unacked)
        if self.plane.draining and not self.goaway_sent:
            self.send_goaway()
        self.flush()
        if self.goaway_sent and not self.streams:
            self._close_transport()

    def flush(self) -> None:
        if self.receiving:
            return
        data = self.conn.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
            if self.write_paused and transport.get_write_buffer_size() > MAX_UNSENT:
                # The client does not read, yet keeps asking for answers (PING, SETTINGS...)
                # or opening windows: it is not going to catch up (Go's server closes such
                # connections too). Reading stays on, so a client busy writing never deadlocks.
                log.warning("HTTP/2 client does not read what it asks for; closing")
                transport.abort()

    # shutdown ----------------------------------------------------------------------------------

    def send_goaway(self) -> None:
        """A graceful GOAWAY (NO_ERROR): streams opened so far are served, later ones refused.
        Written by hand: h2's close_connection() would also stop the streams in flight."""
        if self.goaway_sent:
            return
        self.goaway_sent = True
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.conn.highest_inbound_stream_id
        frame.error_code = ErrorCodes.NO_ERROR
        data = self.conn.data_to_send() + frame.serialize()
        if self.transport is not None:
            self.transport.write(data)

    def close_now(self) -> None:
        """The listener is gone: GOAWAY, then close (streams still open are cut)."""
        if self.transport is None:
            return
        self.send_goaway()
        self._close_transport()

    def _close_transport(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
