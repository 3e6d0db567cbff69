"""The host's apt sources, read at run time and turned into mmdebstrap mirror arguments.

Nothing in the repository names a mirror: the lab builds its Debian images from whatever
archive the host itself installs packages from.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError


@dataclass(frozen=True, slots=True)
class AptSource:
    """One archive: a URI, its suites and components, and the keyring that signs it."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None

    def mirror_lines(self) -> list[str]:
        """One-line `deb` entries (one per suite), as mmdebstrap takes them for MIRROR."""
        options = f"[signed-by={self.signed_by}] " if self.signed_by else ""
        comps = " ".join(self.components)
        return [f"deb {options}{self.uri} {suite} {comps}".rstrip() for suite in self.suites]


def _deb822_paragraphs(text: str) -> list[dict[str, str]]:
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key: str | None = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
            continue
        if raw[0] in " \t":
            if key is not None:  # continuation line (for example an embedded key block)
                current[key] += "\n" + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def parse_deb822(text: str) -> list[AptSource]:
    """Parse a `.sources` file (deb822 format); disabled and `deb-src`-only entries are dropped."""
    sources: list[AptSource] = []
    for para in _deb822_paragraphs(text):
        if "deb" not in para.get("types", "").split():
            continue
        if para.get("enabled", "yes").strip().lower() in ("no", "false", "0"):
            continue
        signed_by = para.get("signed-by", "").strip()
        # An embedded key block cannot be written as a one-line option: fall back to the
        # default keyrings, which is what apt itself does for an archive it knows.
        keyring = signed_by if signed_by and "\n" not in signed_by else None
        components = tuple(para.get("components", "").split())
        suites = tuple(para.get("suites", "").split())
        for uri in para.get("uris", "").split():
            if suites:
                sources.append(AptSource(uri, suites, components, keyring))
    return sources


_ONE_LINE = re.compile(r"^(?P<type>deb|deb-src)\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<rest>.+)$")


def parse_one_line(text: str) -> list[AptSource]:
    """Parse a classic `sources.list` (one-line format); `deb-src` lines are dropped."""
    sources: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = _ONE_LINE.match(line)
        if match is None or match["type"] != "deb":
            continue
        signed_by: str | None = None
        for opt in (match["opts"] or "").split():
            name, _, value = opt.partition("=")
            if name == "signed-by" and value:
                signed_by = value
        parts = shlex.split(match["rest"])
        if len(parts) < 2:
            continue
        sources.append(AptSource(parts[0], (parts[1],), tuple(parts[2:]), signed_by))
    return sources


def for_release(sources: Iterable[AptSource], codename: str) -> list[AptSource]:
    """Keep the suites of one release (`bookworm`, `bookworm-updates`, `bookworm-security`...).

    Third-party archives (their own suite names) are not part of a Debian base image.
    """
    kept: list[AptSource] = []
    seen: set[tuple[str, str]] = set()
    for src in sources:
        if src.uri.startswith("cdrom:"):
            continue
        suites = tuple(
            s
            for s in src.suites
            if (s == codename or s.startswith((codename + "-", codename + "/")))
            and (src.uri, s) not in seen
        )
        seen.update((src.uri, s) for s in suites)
        if suites:
            kept.append(AptSource(src.uri, suites, src.components or ("main",), src.signed_by))
    return kept


def read_os_codename(os_release: Path = Path("/etc/os-release")) -> str:
    """The host's release codename (`VERSION_CODENAME` in os-release)."""
    try:
        text = os_release.read_text()
    except OSError as exc:
        raise LabError(f"cannot read {os_release}: {exc}") from exc
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "VERSION_CODENAME" and value.strip().strip("\"'"):
            return value.strip().strip("\"'")
    raise LabError(f"{os_release} has no VERSION_CODENAME: cannot tell which release to build")


def read_host_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every `deb` entry of the host: sources.list, sources.list.d/*.list and *.sources."""
    sources: list[AptSource] = []
    main = etc_apt / "sources.list"
    if main.is_file():
        sources += parse_one_line(main.read_text())
    folder = etc_apt / "sources.list.d"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix == ".sources":
                sources += parse_deb822(path.read_text())
            elif path.suffix == ".list":
                sources += parse_one_line(path.read_text())
    return sources


def host_mirror_lines(codename: str, etc_apt: Path = Path("/etc/apt")) -> list[str]:
    """mmdebstrap MIRROR arguments for `codename`, from the host's own apt sources."""
    kept = for_release(read_host_sources(etc_apt), codename)
    if not kept:
        raise LabError(
            f"no apt source for {codename!r} in {etc_apt}/sources.list or sources.list.d/: "
            "the lab builds its base images from the host's own Debian archive"
        )
    return [line for src in kept for line in src.mirror_lines()]
