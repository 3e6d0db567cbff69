"""Access-log lines in kamal-proxy's format (Go slog JSON: time, level, msg, then attributes)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable

_ESCAPE = json.encoder.encode_basestring  # C-accelerated; returns "..."


class _Second:
    """The current second's text, `2026-11-29T04:50:00.`, made once per second."""

    __slots__ = ("secs", "text")

    def __init__(self) -> None:
        self.secs = -1
        self.text = ""


_SECOND = _Second()


def format_time(ns: int) -> str:
    """RFC 3339 with nanoseconds in UTC, trailing zeros trimmed (Go's RFC3339Nano)."""
    secs = ns // 1_000_000_000
    second = _SECOND
    if second.secs != secs:
        second.secs = secs
        second.text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(secs))
    # the nanoseconds as nine digits: 1 + nine zero-padded digits, then drop the 1
    digits = str(ns - secs * 1_000_000_000 + 1_000_000_000)
    if digits[-1] != "0":  # nothing to trim (nine in ten calls)
        return second.text + digits[1:] + "Z"
    digits = digits[1:].rstrip("0")
    return second.text + digits + "Z" if digits else second.text[:-1] + "Z"


json_escape: Callable[[str], str] = _ESCAPE


class AccessLogWriter:
    """Collects access-log lines and writes them to `fd` once per event-loop iteration."""

    __slots__ = ("_fd", "_lines", "_loop", "_scheduled")

    def __init__(self, fd: int = 1) -> None:
        self._fd = fd
        self._lines: list[str] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, line: str) -> None:
        self._lines.append(line)
        if not self._scheduled:
            self._scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._lines:
            return
        data = "".join(self._lines).encode("utf-8", "replace")
        self._lines.clear()
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                continue
            except OSError:
                return
            view = view[written:]
