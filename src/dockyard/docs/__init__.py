"""Dockyard's own reference text for each configuration section, shipped as package data.

The section names are the ones `kamal docs` accepts. Each section is a plain-text file
(`<section>.md`) listing every key with its type, default and meaning.
"""

from __future__ import annotations

from importlib import resources

from dockyard.errors import DockyardError

SECTIONS: tuple[str, ...] = (
    "accessory",
    "alias",
    "boot",
    "builder",
    "configuration",
    "env",
    "logging",
    "proxy",
    "registry",
    "role",
    "servers",
    "ssh",
    "sshkit",
)


class UnknownSectionError(DockyardError):
    layer = "docs"


def section_text(name: str) -> str:
    """The documentation of section `name`."""
    key = name.strip().lower()
    if key not in SECTIONS:
        raise UnknownSectionError(
            f"No documentation for {name!r}",
            hint=f"sections: {', '.join(SECTIONS)}",
        )
    return resources.files(__name__).joinpath(f"{key}.md").read_text(encoding="utf-8")
