"""Health probes: `GET http://<target><path>` with `User-Agent: kamal-proxy`, redirects followed,
any 2xx is healthy. A minimal HTTP/1.1 client over asyncio streams (not the hot path).

Every probe's outcome is remembered per URL (`PROBES`), so that a deploy whose health gate
times out can say what the last probe saw and what usually causes it (`explain_unhealthy`):
kamal-proxy's bare "target failed to become healthy" is the most common complaint of its users.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urljoin, urlsplit

from dockyard.errors import ProxyError
from dockyard.proxy.control.durations import format_duration, seconds
from dockyard.proxy.control.options import HealthCheckConfig, TargetAddress

MAX_REDIRECTS = 10  # Go's default client stops after 10
_MAX_HEADER_BYTES = 64 * 1024


FailureKind = Literal[
    "refused", "dns", "unreachable", "timeout", "https_redirect", "redirects", "status", "not_http"
]


class HealthCheckFailed(ProxyError):
    """One probe failed; `url` and `reason` go into the `Healthcheck failed` log line, `kind`
    and `status` (the last HTTP status seen, 0 if none) into the deploy's error."""

    def __init__(
        self, url: str, reason: str, kind: FailureKind = "not_http", status: int = 0
    ) -> None:
        super().__init__(reason)
        self.url = url
        self.reason = reason
        self.kind: FailureKind = kind
        self.status = status


@dataclass(slots=True)
class ProbeOutcome:
    """The last probe of one URL."""

    url: str
    ok: bool
    reason: str = ""
    kind: FailureKind | None = None
    status: int = 0
    failures: int = 0  # failed probes in a row
    at: float = 0.0  # time.monotonic()


class ProbeHistory:
    """The last outcome per probed URL (bounded; the oldest entries go first)."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._outcomes: dict[str, ProbeOutcome] = {}
        #: Probes under way: url -> (phase, since); phase is "connecting" or "waiting".
        self._pending: dict[str, tuple[str, float]] = {}

    def get(self, url: str) -> ProbeOutcome | None:
        return self._outcomes.get(url)

    def pending(self, url: str) -> tuple[str, float] | None:
        """The phase of the probe of `url` under way, and since when (monotonic)."""
        return self._pending.get(url)

    def phase(self, url: str, phase: str) -> None:
        if phase == "connecting" or url not in self._pending:
            self._pending.pop(url, None)
            while len(self._pending) >= self.limit:
                del self._pending[next(iter(self._pending))]
        self._pending[url] = (phase, time.monotonic())

    def record(self, url: str, failure: HealthCheckFailed | None) -> None:
        self._pending.pop(url, None)
        previous = self._outcomes.pop(url, None)
        if failure is None:
            outcome = ProbeOutcome(url, True, at=time.monotonic())
        else:
            outcome = ProbeOutcome(
                url,
                False,
                failure.reason,
                failure.kind,
                failure.status,
                (previous.failures if previous is not None else 0) + 1,
                time.monotonic(),
            )
        self._outcomes[url] = outcome
        while len(self._outcomes) > self.limit:
            del self._outcomes[next(iter(self._outcomes))]


#: Filled by `http_probe`; read when a deploy's health gate fails.
PROBES: Final = ProbeHistory()


@dataclass(frozen=True, slots=True)
class ProbeResult:
    url: str
    status: int


Probe = Callable[[TargetAddress, HealthCheckConfig], Awaitable[ProbeResult]]


def probe_url(target: TargetAddress, config: HealthCheckConfig) -> str:
    port = config.port or target.port
    path = config.path if config.path.startswith("/") else "/" + config.path
    return f"http://{target.host}:{port}{path}"


async def http_get_status(
    url: str,
    host_header: str | None,
    timeout: float,
    on_phase: Callable[[str], None] | None = None,
) -> int:
    """Status of `GET url` after following redirects, within `timeout` seconds overall.
    `on_phase` hears "connecting" and "waiting" (request sent) for each hop."""
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                status, location = await _get_once(url, host_header, on_phase)
                if status in (301, 302, 303, 307, 308) and location:
                    next_url = urljoin(url, location)
                    if urlsplit(next_url).scheme != "http":
                        raise HealthCheckFailed(
                            url,
                            f"{status} redirect to {next_url}",
                            "https_redirect" if next_url.startswith("https:") else "status",
                            status,
                        )
                    if urlsplit(next_url).netloc != urlsplit(url).netloc:
                        host_header = None
                    url = next_url
                    continue
                return status
            raise HealthCheckFailed(url, "stopped after 10 redirects", "redirects", status)
    except TimeoutError:
        raise HealthCheckFailed(
            url, f"no answer within {format_duration(int(timeout * 1e9))}", "timeout"
        ) from None


async def _get_once(
    url: str, host_header: str | None, on_phase: Callable[[str], None] | None = None
) -> tuple[int, str | None]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if on_phase is not None:
        on_phase("connecting")
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        kind, text = _dial_error(exc)
        raise HealthCheckFailed(url, f"dial tcp {host}:{port}: {text}", kind) from exc
    try:
        netloc = host_header or parts.netloc
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: kamal-proxy\r\n"
            "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        await writer.drain()
        if on_phase is not None:
            on_phase("waiting")
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise HealthCheckFailed(url, "response headers too large") from exc
        except asyncio.IncompleteReadError as exc:
            raise HealthCheckFailed(url, "connection closed before an HTTP answer (EOF)") from exc
        if len(head) > _MAX_HEADER_BYTES:
            raise HealthCheckFailed(url, "response headers too large")
        lines = head.decode("latin-1").split("\r\n")
        status_parts = lines[0].split(" ", 2)
        if len(status_parts) < 2 or not status_parts[0].startswith("HTTP/"):
            raise HealthCheckFailed(url, "malformed HTTP response")
        try:
            status = int(status_parts[1])
        except ValueError as exc:
            raise HealthCheckFailed(url, "malformed HTTP status code") from exc
        location = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "location":
                location = value.strip()
        return status, location
    except OSError as exc:
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            raise HealthCheckFailed(url, "connection reset before an HTTP answer") from exc
        raise HealthCheckFailed(url, str(exc) or type(exc).__name__) from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _dial_error(exc: OSError) -> tuple[FailureKind, str]:
    if isinstance(exc, socket.gaierror):
        return "dns", f"no such host ({exc.strerror or exc})"
    code = exc.errno
    text = str(exc)
    if code == errno.ECONNREFUSED or (code is None and "Connect call failed" in text):
        return "refused", "connection refused"
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable", exc.strerror or text
    return "unreachable", exc.strerror or text or type(exc).__name__


async def http_probe(target: TargetAddress, config: HealthCheckConfig) -> ProbeResult:
    """One health probe; raises `HealthCheckFailed` unless the final status is 2xx."""
    url = probe_url(target, config)

    def on_phase(phase: str) -> None:
        PROBES.phase(url, phase)

    try:
        status = await http_get_status(url, config.host or None, seconds(config.timeout), on_phase)
        if not 200 <= status < 300:
            raise HealthCheckFailed(url, f"unexpected status ({status})", "status", status)
    except HealthCheckFailed as exc:
        PROBES.record(url, exc)
        raise
    PROBES.record(url, None)
    return ProbeResult(url=url, status=status)


# -- explaining a failed health gate ------------------------------------------------------------


def _causes(
    outcome: ProbeOutcome | None,
    target: TargetAddress,
    config: HealthCheckConfig,
    deploy_timeout: str,
    pending: str = "",
) -> list[str]:
    port = config.port or target.port
    path = config.path
    slow = (
        f"the app boots slower than the deploy timeout ({deploy_timeout}): raise it "
        "(--deploy-timeout; Kamal: deploy_timeout)"
    )
    if outcome is None:
        too_short = (
            f"each probe may take up to {format_duration(config.timeout)} "
            f"(--health-check-timeout), longer than the deploy timeout ({deploy_timeout}): "
            "raise --deploy-timeout (Kamal: deploy_timeout)"
        )
        if pending == "connecting":
            return [
                f"resolving {target.host} or connecting to it hangs: a container name that "
                "does not resolve (the container exited at boot: kamal app logs; or it is not "
                "on the proxy's network), or a firewall dropping packets",
                too_short,
            ]
        if pending == "waiting":
            return [
                f"the app accepted the connection but has not answered {path} yet: it may "
                "still be booting",
                slow,
                too_short,
            ]
        return [too_short]
    kind, status = outcome.kind, outcome.status
    if kind == "refused":
        return [
            f"nothing listens on port {port} of {target.host}: is {port} the app's port? "
            "(the port in --target; Kamal: proxy.app_port, default 80)",
            "the app listens on 127.0.0.1 only: make it bind 0.0.0.0 inside its container",
            "the app crashed or is still starting: check its logs (kamal app logs)",
            slow,
        ]
    if kind == "dns":
        return [
            f"no container or host named {target.host} on the proxy's network: the container "
            "exited at boot (check its logs: kamal app logs) or is not on the same network",
        ]
    if kind == "unreachable":
        return [f"{target.host} cannot be reached from the proxy: check networks and firewalls"]
    if kind == "timeout":
        return [
            f"the app accepted the connection but did not answer {path} within "
            f"{format_duration(config.timeout)}: it may still be booting or be overloaded",
            slow,
            "a slow health endpoint: raise --health-check-timeout (Kamal: "
            "proxy.healthcheck.timeout)",
        ]
    if kind == "https_redirect":
        return [
            f"{path} redirects to https: the app forces SSL (Rails: config.force_ssl). The "
            "proxy terminates TLS and probes over plain HTTP: set config.assume_ssl = true "
            f"and exclude the health path from the redirect (Rails: config.ssl_options = "
            f'{{ redirect: {{ exclude: ->(request) {{ request.path == "{path}" }} }} }})',
        ]
    if kind == "redirects":
        return [f"{path} redirects in a loop: it must answer 2xx itself"]
    if kind == "status" and 300 <= status < 400:
        return [f"{path} redirects ({status}) instead of answering 2xx; serve it directly"]
    if kind == "status" and status == 404:
        return [
            f"the app does not serve {path}: add that route, or point the check at one it "
            "serves (--health-check-path; Kamal: proxy.healthcheck.path)",
            "another app answers on this port: check the port in --target (Kamal: app_port)",
        ]
    if kind == "status" and status in (401, 403):
        return [
            f"{path} requires authentication or refuses the probe's Host header "
            f"({config.host or f'{target.host}:{port}'}); Rails' host authorization answers "
            "403 for unknown hosts: exclude the health path (config.host_authorization = "
            f'{{ exclude: ->(request) {{ request.path == "{path}" }} }}) or send an allowed '
            "Host with --health-check-host",
        ]
    if kind == "status" and status >= 500:
        return [
            f"the app fails on {path} ({status}): check its logs (kamal app logs), e.g. a "
            "missing secret, database or migration",
            slow,
        ]
    if kind == "status":
        return [f"{path} must answer 2xx; it answered {status}"]
    return [
        f"port {port} does not speak plain HTTP/1.1 (a TLS or non-HTTP port?): the proxy "
        "sends plain HTTP to its targets; check the port in --target (Kamal: proxy.app_port)",
    ]


def explain_unhealthy(
    targets: Iterable[TargetAddress],
    config: HealthCheckConfig,
    deploy_timeout_ns: int,
    history: ProbeHistory = PROBES,
) -> str:
    """What the probes of the targets that are not healthy saw, and what usually causes it."""
    deploy_timeout = format_duration(deploy_timeout_ns)
    lines: list[str] = []
    now = time.monotonic()
    since = now - seconds(deploy_timeout_ns) - 1.0
    for target in targets:
        url = probe_url(target, config)
        outcome = history.get(url)
        if outcome is not None and outcome.at < since:
            outcome = None  # from before this deploy
        if outcome is not None and outcome.ok:
            continue
        pending = history.pending(url) if outcome is None else None
        if pending is not None and pending[1] < since:
            pending = None
        if outcome is None and pending is not None:
            phase, started = pending
            doing = (
                f"connecting to {target.name}" if phase == "connecting" else "waiting for an answer"
            )
            lines.append(
                f"{target.name}: GET {url}: no probe finished (still {doing} after "
                f"{now - started:.1f}s)"
            )
        elif outcome is None:
            lines.append(f"{target.name}: GET {url}: no probe finished")
        else:
            lines.append(
                f"{target.name}: GET {url}: {outcome.reason} "
                f"({outcome.failures} failed probe{'s' if outcome.failures != 1 else ''}, "
                f"last {now - outcome.at:.1f}s ago)"
            )
        causes = _causes(outcome, target, config, deploy_timeout, pending[0] if pending else "")
        lines.append("  likely cause" + ("s:" if len(causes) > 1 else ":"))
        lines.extend(f"  - {cause}" for cause in causes)
    return "\n".join(lines)
