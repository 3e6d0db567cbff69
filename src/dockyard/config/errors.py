"""Config errors naming the file, the key path (Kamal's `servers/web/hosts/1`) and the line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import ConfigError

from ._source import Document, KeyPath

#: Finds the file and line of a key path (or of its nearest known parent).
Locate = Callable[[KeyPath], "tuple[Path | None, int | None]"]


def kamal_path(path: KeyPath) -> str:
    """`("servers", "web", "hosts", 1)` -> `servers/web/hosts/1`, as Kamal names keys."""
    return "/".join(str(part) for part in path)


class ConfigValidationError(ConfigError):
    """An invalid value: where it is, and what was expected."""

    def __init__(
        self,
        problem: str,
        *,
        key_path: KeyPath = (),
        file: Path | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.key_path = key_path
        self.file = file
        self.line = line
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        context = kamal_path(key_path)
        super().__init__(f"{where}{context + ': ' if context else ''}{problem}", hint=hint)

    @property
    def kamal_key(self) -> str:
        """The key path as Kamal prints it before the colon in its own message."""
        return kamal_path(self.key_path)


@dataclass
class Locator:
    """Finds the file and line of a key path in the base or destination document."""

    documents: list[Document]
    root: Path

    def display(self, file: Path) -> Path:
        try:
            return file.relative_to(self.root)
        except ValueError:
            return file

    def __call__(self, path: KeyPath) -> tuple[Path | None, int | None]:
        for length in range(len(path), -1, -1):
            prefix = path[:length]
            for doc in reversed(self.documents):  # the destination file wins
                if prefix in doc.lines and (length > 0 or len(self.documents) == 1):
                    return self.display(doc.file), doc.lines[prefix]
        return self.display(self.documents[0].file), None


def error_at(locate: Locator, path: KeyPath, problem: str, **kw: Any) -> ConfigValidationError:
    file, line = locate(path)
    return ConfigValidationError(problem, key_path=path, file=file, line=line, **kw)


def plain_error(locate: Locator, problem: str, *, where: KeyPath = ()) -> ConfigValidationError:
    """An error Kamal words without a key path (cross-section checks)."""
    file, line = locate(where) if where else (locate.display(locate.documents[-1].file), None)
    return ConfigValidationError(problem, file=file, line=line)
