"""Config errors naming the file, the key path (Kamal's `servers/web/hosts/1`) and the line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dockyard.errors import ConfigError

from ._source import KeyPath

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
