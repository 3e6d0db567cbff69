"""The host's apt sources become mmdebstrap mirror arguments (lab/sources.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import LabError
from lab.sources import (
    AptSource,
    for_release,
    host_mirror_lines,
    parse_deb822,
    parse_one_line,
    read_os_codename,
)

DEB822 = """\
Types: deb deb-src
# a comment inside the paragraph
URIs: http://archive.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://archive.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://archive.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://third-party.example/repo
Suites: nodistro
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 abcdef
 -----END PGP PUBLIC KEY BLOCK-----
"""


def test_deb822_keeps_enabled_binary_entries_with_their_fields() -> None:
    sources = parse_deb822(DEB822)
    assert sources == [
        AptSource(
            "http://archive.example/debian",
            ("bookworm", "bookworm-updates"),
            ("main", "contrib"),
            "/usr/share/keyrings/debian-archive-keyring.gpg",
        ),
        AptSource(
            "http://archive.example/debian-security",
            ("bookworm-security",),
            ("main",),
            "/usr/share/keyrings/debian-archive-keyring.gpg",
        ),
        # An embedded key cannot be a one-line option: it is dropped, the entry kept.
        AptSource("http://third-party.example/repo", ("nodistro",), ("main",), None),
    ]


def test_deb822_several_uris_give_one_source_each() -> None:
    text = "Types: deb\nURIs: http://a.example/d http://b.example/d\nSuites: sid\n"
    assert [s.uri for s in parse_deb822(text)] == ["http://a.example/d", "http://b.example/d"]


def test_one_line_format_with_options_and_comments() -> None:
    text = """\
# the main archive
deb [arch=amd64 signed-by=/k.gpg] http://archive.example/debian bookworm main non-free
deb-src http://archive.example/debian bookworm main
deb http://archive.example/debian-security bookworm-security main  # trailing comment
deb cdrom:[Debian 12]/ bookworm main
broken line
"""
    sources = parse_one_line(text)
    assert sources[0] == AptSource(
        "http://archive.example/debian", ("bookworm",), ("main", "non-free"), "/k.gpg"
    )
    assert sources[1] == AptSource(
        "http://archive.example/debian-security", ("bookworm-security",), ("main",), None
    )
    assert len(sources) == 3  # the cdrom entry parses; for_release drops it


def test_for_release_keeps_only_the_codenames_suites_once() -> None:
    sources = [
        AptSource("http://a.example/debian", ("bookworm", "trixie"), ("main",)),
        AptSource("http://a.example/debian", ("bookworm",), ("main",)),  # duplicate
        AptSource("http://a.example/security", ("bookworm-security",), ()),
        AptSource("http://old.example/security", ("bookworm/updates",), ("main",)),
        AptSource("http://third.example/repo", ("nodistro",), ("main",)),
        AptSource("cdrom:[Debian]/", ("bookworm",), ("main",)),
    ]
    kept = for_release(sources, "bookworm")
    assert kept == [
        AptSource("http://a.example/debian", ("bookworm",), ("main",)),
        AptSource("http://a.example/security", ("bookworm-security",), ("main",)),
        AptSource("http://old.example/security", ("bookworm/updates",), ("main",)),
    ]


def test_mirror_lines_one_per_suite_with_signed_by() -> None:
    src = AptSource("http://a.example/debian", ("bookworm", "bookworm-updates"), ("main",), "/k")
    assert src.mirror_lines() == [
        "deb [signed-by=/k] http://a.example/debian bookworm main",
        "deb [signed-by=/k] http://a.example/debian bookworm-updates main",
    ]
    plain = AptSource("http://a.example/debian", ("bookworm",), ("main", "contrib"))
    assert plain.mirror_lines() == ["deb http://a.example/debian bookworm main contrib"]


def test_host_mirror_lines_reads_both_formats(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://one.example/debian bookworm main\n")
    folder = tmp_path / "sources.list.d"
    folder.mkdir()
    (folder / "debian.sources").write_text(DEB822)
    (folder / "extra.list").write_text("deb http://two.example/debian bookworm-backports main\n")
    (folder / "ignored.list.disabled").write_text("deb http://no.example/debian bookworm main\n")
    lines = host_mirror_lines("bookworm", tmp_path)
    assert lines == [
        "deb http://one.example/debian bookworm main",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://archive.example/debian bookworm main contrib",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://archive.example/debian bookworm-updates main contrib",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://archive.example/debian-security bookworm-security main",
        "deb http://two.example/debian bookworm-backports main",
    ]


def test_host_without_sources_for_the_release_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://one.example/debian trixie main\n")
    with pytest.raises(LabError, match="no apt source for 'bookworm'"):
        host_mirror_lines("bookworm", tmp_path)


def test_os_codename(tmp_path: Path) -> None:
    path = tmp_path / "os-release"
    path.write_text('NAME="Debian GNU/Linux"\nVERSION_CODENAME=bookworm\n')
    assert read_os_codename(path) == "bookworm"
    path.write_text('NAME="Something"\n')
    with pytest.raises(LabError, match="VERSION_CODENAME"):
        read_os_codename(path)
