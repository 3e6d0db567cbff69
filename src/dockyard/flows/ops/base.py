"""Values the operational flows return for the CLI to render."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Section:
    """One block of output: a title (``App Host: 10.0.0.1``) and the text under it."""

    title: str
    host: str
    text: str


@dataclass(frozen=True, slots=True)
class Interactive:
    """An interactive command (``exec -i``, ``logs -f``): the local ``ssh -t`` argv the CLI
    replaces itself with, and the host it reaches."""

    argv: list[str]
    host: str


def first_line(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.strip():
            return line.strip()
    return None
