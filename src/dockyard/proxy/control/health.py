"""Health probes: `GET http://<target><path>` with `User-Agent: kamal-proxy`, redirects followed,
any 2xx is healthy. A minimal HTTP/1.1 client over asyncio streams (not the hot path).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from dockyard.errors import ProxyError
from dockyard.proxy.control.durations import seconds
from dockyard.proxy.control.options import HealthCheckConfig, TargetAddress

MAX_REDIRECTS = 10  # Go's default client stops after 10
_MAX_HEADER_BYTES = 64 * 1024


class HealthCheckFailed(ProxyError):
    """One probe failed; `url` and `reason` go into the `Healthcheck failed` log line."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(reason)
        self.url = url
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProbeResult:
    url: str
    status: int


Probe = Callable[[TargetAddress, HealthCheckConfig], Awaitable[ProbeResult]]


def probe_url(target: TargetAddress, config: HealthCheckConfig) -> str:
    port = config.port or target.port
    path = config.path if config.path.startswith("/") else "/" + config.path
    return f"http://{target.host}:{port}{path}"


async def http_get_status(url: str, host_header: str | None, timeout: float) -> int:
    """Status of `GET url` after following redirects, within `timeout` seconds overall."""
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                status, location = await _get_once(url, host_header)
                if status in (301, 302, 303, 307, 308) and location:
                    next_url = urljoin(url, location)
                    if urlsplit(next_url).scheme != "http":
                        raise HealthCheckFailed(url, f"unsupported redirect to {next_url}")
                    if urlsplit(next_url).netloc != urlsplit(url).netloc:
                        host_header = None
                    url = next_url
                    continue
                return status
            raise HealthCheckFailed(url, "stopped after 10 redirects")
    except TimeoutError:
        raise HealthCheckFailed(url, "request timed out") from None


async def _get_once(url: str, host_header: str | None) -> tuple[int, str | None]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        raise HealthCheckFailed(url, f"dial tcp {host}:{port}: {exc.strerror or exc}") from exc
    try:
        netloc = host_header or parts.netloc
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: kamal-proxy\r\n"
            "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise HealthCheckFailed(url, "response headers too large") from exc
        except asyncio.IncompleteReadError as exc:
            raise HealthCheckFailed(url, "unexpected EOF") from exc
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
        raise HealthCheckFailed(url, str(exc) or type(exc).__name__) from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def http_probe(target: TargetAddress, config: HealthCheckConfig) -> ProbeResult:
    """One health probe; raises `HealthCheckFailed` unless the final status is 2xx."""
    url = probe_url(target, config)
    status = await http_get_status(url, config.host or None, seconds(config.timeout))
    if not 200 <= status < 300:
        raise HealthCheckFailed(url, f"unexpected status ({status})")
    return ProbeResult(url=url, status=status)
