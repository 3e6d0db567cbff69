"""``df -P`` output (POSIX format) as the server probes read it: ``doctor``'s (``df -Pk``, in
KiB) and ``server stats``' (``df -P -B1``, in bytes), both of ``/`` and of Docker's root dir."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DfRow:
    """One filesystem as ``df -P`` reports it, sizes in bytes."""

    mount: str
    total: int
    used: int
    available: int

    @property
    def fraction(self) -> float:
        """The share in use (0.0 for a filesystem of no size)."""
        return self.used / self.total if self.total else 0.0


def parse_df(lines: Iterable[str], *, block_size: int) -> list[DfRow]:
    """The rows of ``df -P`` output, in order (one per path asked about, so the same mount
    may come twice); the header and any other line are skipped. ``block_size`` is the unit of
    the numbers: 1024 for ``df -Pk``, 1 for ``df -P -B1``.

    A row: ``Filesystem  blocks  Used  Available  Capacity  Mounted-on``."""
    rows: list[DfRow] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or not all(f.isdigit() for f in fields[1:4]):
            continue
        total, used, available = (int(f) * block_size for f in fields[1:4])
        rows.append(DfRow(" ".join(fields[5:]), total, used, available))
    return rows
