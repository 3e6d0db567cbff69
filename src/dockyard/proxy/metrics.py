"""Prometheus metrics for `run --metrics-port N`: counters kept by the data plane (through
`contract.RequestMetrics`) and the control plane, served as text exposition format 0.0.4 on
`GET /metrics` by a small listener of its own.

Hand-written rather than `prometheus_client`: what is needed is a few dicts and one text
renderer, and `prometheus_client` costs about 2 MiB of RSS and 0.2 s of import (measured).

Families (kamal-proxy v0.9.2's names and labels where it has the metric, so its dashboards
work unchanged; ours are `dockyard_proxy_*`):

* `kamal_proxy_http_requests_total{service,method,status}`: counter; `status` is the response's
  code ("200"), `service` is "" for a request no service matched. Methods outside the standard
  set count as `OTHER`.
* `kamal_proxy_http_request_duration_seconds{service,method,status}`: histogram, Prometheus'
  default buckets.
* `kamal_proxy_http_in_flight_requests{service}`: gauge of the requests a service is serving.
* `dockyard_proxy_upstream_errors_total{service}`: targets unreachable or answering garbage.
* `dockyard_proxy_deploys_total{service,result}`: `result` is `success` or `failure`.
* `dockyard_proxy_targets{service,state}`: gauge of targets per health state at scrape time.
* `process_*`: resident memory, CPU seconds, open fds, start time.

The hot-path methods (`started`, `finished`, `upstream_error`) are dict and list increments.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Final

#: Prometheus' default histogram buckets (seconds).
BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: (service, state) -> number of targets, computed at scrape time.
TargetCounts = Callable[[], Iterable[tuple[str, str, int]]]


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


class ProxyMetrics:
    """Implements `contract.RequestMetrics`; also counts deploys and renders the exposition."""

    __slots__ = ("_deploys", "_durations", "_requests", "_upstream_errors", "in_flight", "targets")

    def __init__(self, targets: TargetCounts | None = None) -> None:
        #: service -> requests it is serving (kept at 0 once a service had one, as Go's gauge).
        self.in_flight: dict[str, int] = {}
        #: (service, method, status code) -> count.
        self._requests: dict[tuple[str, str, int], int] = {}
        self._durations: dict[tuple[str, str, int], _Histogram] = {}
        self._upstream_errors: dict[str, int] = {}
        self._deploys: dict[tuple[str, str], int] = {}
        self.targets = targets

    # -- contract.RequestMetrics (hot path) ------------------------------------------------------

    def started(self, service: str) -> None:
        in_flight = self.in_flight
        in_flight[service] = in_flight.get(service, 0) + 1

    def finished(self, service: str, method: str, status: int, seconds: float) -> None:
        if service:
            in_flight = self.in_flight
            in_flight[service] = in_flight.get(service, 1) - 1
        key = (service, method if method in METHODS else "OTHER", status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        hist = self._durations.get(key)
        if hist is None:
            hist = self._durations[key] = _Histogram()
        hist.counts[bisect_left(BUCKETS, seconds)] += 1
        hist.total += seconds

    def upstream_error(self, service: str) -> None:
        errors = self._upstream_errors
        errors[service] = errors.get(service, 0) + 1

    # -- control plane ---------------------------------------------------------------------------

    def deployed(self, service: str, ok: bool) -> None:
        key = (service, "success" if ok else "failure")
        self._deploys[key] = self._deploys.get(key, 0) + 1

    # -- exposition ------------------------------------------------------------------------------

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        name = "kamal_proxy_http_requests_total"
        family(name, "counter", "HTTP requests processed, by service, method and status code.")
        for (service, method, status), count in sorted(self._requests.items()):
            labels = _labels(service=service, method=method, status=str(status))
            out.append(f"{name}{{{labels}}} {count}")

        name = "kamal_proxy_http_request_duration_seconds"
        family(name, "histogram", "Duration of HTTP requests, by service, method and status code.")
        for (service, method, status), hist in sorted(self._durations.items()):
            labels = _labels(service=service, method=method, status=str(status))
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), hist.counts, strict=True):
                cumulative += count
                out.append(f'{name}_bucket{{{labels},le="{_number(bound)}"}} {cumulative}')
            out.append(f"{name}_sum{{{labels}}} {_number(hist.total)}")
            out.append(f"{name}_count{{{labels}}} {cumulative}")

        name = "kamal_proxy_http_in_flight_requests"
        family(name, "gauge", "Number of in-flight HTTP requests, by service.")
        for service, count in sorted(self.in_flight.items()):
            out.append(f"{name}{{{_labels(service=service)}}} {count}")

        name = "dockyard_proxy_upstream_errors_total"
        family(name, "counter", "Requests whose target could not be reached or answered garbage.")
        for service, count in sorted(self._upstream_errors.items()):
            out.append(f"{name}{{{_labels(service=service)}}} {count}")

        name = "dockyard_proxy_deploys_total"
        family(name, "counter", "Deploys by service and result (success or failure).")
        for (service, result), count in sorted(self._deploys.items()):
            out.append(f"{name}{{{_labels(service=service, result=result)}}} {count}")

        if self.targets is not None:
            name = "dockyard_proxy_targets"
            family(name, "gauge", "Targets of each service by health state.")
            for service, state, count in sorted(self.targets()):
                out.append(f"{name}{{{_labels(service=service, state=state)}}} {count}")

        out.extend(_process_lines())
        return "\n".join(out) + "\n"


_START_TIME = time.time()


def _process_lines() -> list[str]:
    lines = []
    try:
        with open("/proc/self/statm", "rb") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        lines += [
            "# HELP process_resident_memory_bytes Resident memory size in bytes.",
            "# TYPE process_resident_memory_bytes gauge",
            f"process_resident_memory_bytes {rss}",
        ]
    except (OSError, ValueError, IndexError):
        pass
    with contextlib.suppress(OSError):
        fds = len(os.listdir("/proc/self/fd"))
        lines += [
            "# HELP process_open_fds Number of open file descriptors.",
            "# TYPE process_open_fds gauge",
            f"process_open_fds {fds}",
        ]
    times = os.times()
    lines += [
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
        "# TYPE process_cpu_seconds_total counter",
        f"process_cpu_seconds_total {_number(round(times.user + times.system, 3))}",
        "# HELP process_start_time_seconds Start time of the process since unix epoch.",
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {_number(round(_START_TIME, 3))}",
    ]
    return lines


# -- the /metrics listener -----------------------------------------------------------------------

_READ_TIMEOUT: Final = 5.0
_MAX_HEAD: Final = 8192


async def _handle(
    metrics: ProxyMetrics, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        method = parts[0] if parts else b""
        path = parts[1].split(b"?", 1)[0] if len(parts) == 3 else b""
        if path != b"/metrics":
            status, body, ctype = "404 Not Found", b"404 page not found\n", "text/plain"
        elif method not in (b"GET", b"HEAD"):
            status, body, ctype = "405 Method Not Allowed", b"", "text/plain"
        else:
            status, body, ctype = "200 OK", metrics.render().encode(), CONTENT_TYPE
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + (body if method != b"HEAD" else b"")
        )
        with contextlib.suppress(OSError):
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def serve_metrics(metrics: ProxyMetrics, host: str, port: int) -> asyncio.Server:
    """Listen on host:port and answer `GET /metrics`; one request per connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handle(metrics, reader, writer)

    return await asyncio.start_server(handle, host, port, limit=_MAX_HEAD)
