"""The seam between the proxy's control plane and its data plane.

The control plane (router, services, targets, deploy/drain/health, pause/stop, state) implements
these protocols; the data plane (HTTP framing, client and upstream Protocols, buffering, error
pages, access log) only calls them. Neither side imports the other's modules, so each can be
tested alone: the data plane's tests use small in-test implementations of these protocols, and the
control plane's tests never open a client socket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from dockyard.proxy.http.parser import RequestHead

ServiceState = Literal["running", "paused", "stopped"]


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """Per-service options that shape how a request is handled (kamal-proxy's deploy flags).

    Durations are seconds. Sizes are bytes; 0 means unlimited.
    """

    hosts: tuple[str, ...] = ()
    path_prefixes: tuple[str, ...] = ("/",)
    strip_path_prefix: bool = True
    target_timeout: float = 30.0
    buffer_requests: bool = False
    buffer_responses: bool = False
    buffer_memory: int = 1 << 20
    max_request_body: int = 0
    max_response_body: int = 0
    forward_headers: bool = True
    log_request_headers: tuple[str, ...] = ()
    log_response_headers: tuple[str, ...] = ()
    error_pages: Path | None = None
    health_check_path: str = "/up"
    tls: bool = False
    tls_redirect: bool = True
    canonical_host: str = ""
    scope_cookie_paths: bool = False
    #: Basic auth / IP allowlist / client-IP header; None: no gate (the common, fast case).
    gate: AccessGate | None = None
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A gate's answer instead of proxying: 401 (with a WWW-Authenticate line) or 403."""

    status: int
    #: Extra raw header lines for the answer, each ending in CRLF.
    headers: bytes = b""
    #: Shown in the error page (the `{{ .Message }}` of a custom page).
    message: str = ""


class AccessGate(Protocol):
    """Per-service access rules checked before a request is proxied (basic auth, IP allowlist)
    and the client address to use (a trusted client-IP header such as CF-Connecting-IP)."""

    def client_ip(self, head: RequestHead, peer_ip: bytes) -> bytes:
        """The address of the client as this service trusts it (default: the TCP peer).

        The data plane uses it for the allowlist and as the address appended to
        X-Forwarded-For."""
        ...

    def check(self, head: RequestHead, client_ip: bytes) -> Refusal | None:
        """None lets the request through."""
        ...


class RequestMetrics(Protocol):
    """What the data plane reports per request (the control plane exposes it to Prometheus).

    Called on the hot path: implementations must be cheap (counter increments)."""

    def started(self, service: str) -> None:
        """A request was routed to `service` (in flight there until `finished`)."""

    def finished(self, service: str, method: str, status: int, seconds: float) -> None:
        """A request ended; `service` is "" when it matched none (then it never `started`)."""

    def upstream_error(self, service: str) -> None:
        """A target could not be reached or answered garbage (the client got a 502)."""


class RequestHandle(Protocol):
    """One in-flight request on one target, as the control plane tracks it for draining."""

    def hijacked(self) -> None:
        """The connection was upgraded (WebSocket...): a drain cancels it at once."""

    def done(self) -> None:
        """The request finished (or failed); the target no longer waits for it."""


class Target(Protocol):
    """One backend address of a service (`host:port`, as given to `--target`)."""

    @property
    def name(self) -> str: ...  # "host:port", also the X-Kamal-Target value

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    def begin_request(self, cancel: Callable[[], None]) -> RequestHandle | None:
        """Register a request about to be sent to this target.

        Returns None when the target is draining (the data plane answers 503). `cancel` is
        called by the control plane when a drain gives up on the request (the data plane then
        answers 504 if nothing was sent yet, else closes the client connection).
        """


class Service(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def options(self) -> ServiceOptions: ...

    @property
    def state(self) -> ServiceState: ...

    @property
    def stop_message(self) -> str: ...

    async def wait_until_running(self) -> ServiceState:
        """Hold a request while the service is paused.

        Returns "running" when it may proceed, "stopped" when it was stopped meanwhile (503 with
        the stop page), or "paused" when the pause outlasted --max-pause (504).
        """

    def pick_target(self, *, read: bool, cookies: str | None) -> Target | None:
        """Choose a healthy target for this request, or None (503: no healthy target)."""


@dataclass(frozen=True, slots=True)
class Match:
    service: Service
    #: The path prefix that matched (already normalised, e.g. "/api" or "/").
    prefix: str


class Router(Protocol):
    def match(self, host: str, path: str) -> Match | None:
        """Route by the request's Host (port already stripped) and path; None means 404."""
