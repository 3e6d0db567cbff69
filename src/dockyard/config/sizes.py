"""Memory sizes as Docker writes them (``512m``, ``1g``, ``1.5GiB``, ``300MB``, bytes)."""

from __future__ import annotations

import re

__all__ = ["MIB", "human", "parse_size"]

MIB = 1024 * 1024
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": MIB,
    "mb": MIB,
    "mib": MIB,
    "g": 1024 * MIB,
    "gb": 1024 * MIB,
    "gib": 1024 * MIB,
    "t": 1024 * 1024 * MIB,
    "tb": 1024 * 1024 * MIB,
    "tib": 1024 * 1024 * MIB,
}


def parse_size(text: object) -> int | None:
    """``512m``, ``1g``, ``1.5GiB``, ``300MB``, ``123456`` -> bytes (binary units, as Docker's
    ``--memory`` and ``docker stats`` use them); None when it is not a size."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text if text >= 0 else None
    if not isinstance(text, str):
        return None
    match = _SIZE.match(text)
    if not match:
        return None
    factor = _UNITS.get(match.group(2).lower())
    if factor is None:
        return None
    return int(float(match.group(1)) * factor)


def human(size: int | float | None) -> str:
    """Bytes in binary units (``512 MiB``, ``1.9 GiB``); ``-`` when unknown."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB", "MiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover
