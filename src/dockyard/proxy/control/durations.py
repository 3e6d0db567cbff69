"""Go duration syntax (`time.ParseDuration` / `Duration.String`), as kamal-proxy's flags use it.

Durations are carried as integer nanoseconds inside the control plane (exact, and the unit the
state file stores, as kamal-proxy does); `seconds()` converts for asyncio and the data plane.
"""

from __future__ import annotations

import re

NANOSECOND = 1
MICROSECOND = 1_000
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_UNITS: dict[str, int] = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "µs": MICROSECOND,  # U+00B5 micro sign
    "μs": MICROSECOND,  # U+03BC greek mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]+)")
_MAX = (1 << 63) - 1


class DurationError(ValueError):
    """The text is not a Go duration; the message matches Go's wording."""


def parse_duration(text: str) -> int:
    """Parse `30s`, `1m30s`, `500ms`, `1.5h`, `-2s`, `0` into nanoseconds, as Go does."""
    original = text
    sign = 1
    if text[:1] in ("+", "-"):
        if text[0] == "-":
            sign = -1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise DurationError(f'time: invalid duration "{original}"')
    total = 0
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            if re.fullmatch(r"\d+(\.\d*)?|\.\d+", text[pos:]):
                raise DurationError(f'time: missing unit in duration "{original}"')
            raise DurationError(f'time: invalid duration "{original}"')
        whole, frac, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not frac:
            raise DurationError(f'time: invalid duration "{original}"')
        if unit not in _UNITS:
            raise DurationError(f'time: unknown unit "{unit}" in duration "{original}"')
        scale = _UNITS[unit]
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // (10 ** len(frac))
        total += value
        if total > _MAX:
            raise DurationError(f'time: invalid duration "{original}"')
        pos = match.end()
    return sign * total


def _format_fraction(value: int, digits: int) -> str:
    """`value` split as integer.fraction with `digits` decimal places, trailing zeros dropped."""
    whole, frac = divmod(value, 10**digits)
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def format_duration(ns: int) -> str:
    """Render nanoseconds the way Go's `Duration.String` does: `3s`, `1m30s`, `500ms`, `1h0m0s`."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < SECOND:
        if ns < MICROSECOND:
            return f"{sign}{ns}ns"
        if ns < MILLISECOND:
            return f"{sign}{_format_fraction(ns, 3)}µs"
        return f"{sign}{_format_fraction(ns, 6)}ms"
    hours, rest = divmod(ns, HOUR)
    minutes, rest = divmod(rest, MINUTE)
    seconds = _format_fraction(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"


def seconds(ns: int) -> float:
    return ns / SECOND
