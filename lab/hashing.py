"""Content hashes of image inputs: an image is rebuilt only when its hash changes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

_SKIP_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".state"})
_SKIP_SUFFIXES = frozenset({".pyc", ".pyo"})


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    found: list[Path] = []
    for child in sorted(path.iterdir()):
        if child.is_dir():
            if child.name not in _SKIP_DIRS:
                found += _files(child)
        elif child.is_file() and child.suffix not in _SKIP_SUFFIXES:
            found.append(child)
    return found


def input_hash(root: Path, paths: Iterable[Path], extra: Mapping[str, str] | None = None) -> str:
    """A sha256 over the files under `paths` (names relative to `root`, contents, exec bit)
    and the `extra` values (build arguments, parent image hashes...).

    Paths that do not exist count as absent, so creating one changes the hash.
    """
    digest = hashlib.sha256()
    for key, value in sorted((extra or {}).items()):
        digest.update(f"extra:{key}={value}\0".encode())
    named: dict[str, Path] = {}
    for top in paths:
        for file in _files(Path(top)):
            try:
                name = file.relative_to(root).as_posix()
            except ValueError:
                name = file.as_posix()
            named[name] = file
    # Order by the hashed names, so that moving the checkout does not change the hash.
    for name, file in sorted(named.items()):
        executable = file.stat().st_mode & 0o111 != 0
        digest.update(f"file:{name}:{int(executable)}\0".encode())
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:32]
