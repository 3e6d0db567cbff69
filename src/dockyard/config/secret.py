"""Secret values: a distinct type that never shows itself, and a lazy store that reads them.

Secrets are read from `.kamal/secrets*` only when a value is actually needed (as Kamal does), so
`dockyard config` and most commands never run the `$(...)` substitutions in those files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from dockyard.errors import ConfigError

REDACTED = "[REDACTED]"


class Secret:
    """A secret value. `str()` and `repr()` are masked; call `reveal()` where it is written out."""

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, {REDACTED!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self.name, self._value) == (other.name, other._value)

    def __hash__(self) -> int:
        return hash((self.name, self._value))


Loader = Callable[[Path, "str | None", str], dict[str, str]]


def _default_loader(root: Path, destination: str | None, secrets_path: str) -> dict[str, str]:
    try:
        from dockyard.config.secrets import load_secrets
    except ImportError as exc:  # pragma: no cover - only while secrets.py is not in the tree
        raise ConfigError(
            "Reading secrets is not available in this build (dockyard.config.secrets is missing)"
        ) from exc
    return load_secrets(root, destination, secrets_path)


class SecretStore:
    """Secrets of one project and destination, loaded once, on first use, behind a lock."""

    def __init__(
        self,
        root: Path,
        destination: str | None,
        secrets_path: str = ".kamal/secrets",
        *,
        loader: Loader | None = None,
    ) -> None:
        self.root = root
        self.destination = destination
        self.secrets_path = secrets_path
        self._loader: Loader = loader or _default_loader
        self._values: dict[str, str] | None = None
        self._lock = threading.Lock()

    @property
    def filenames(self) -> list[str]:
        """The files Kamal reads, in order (later values win)."""
        last = f"{self.secrets_path}.{self.destination}" if self.destination else self.secrets_path
        return [f"{self.secrets_path}-common", last]

    def _path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.root / path

    def _load(self) -> dict[str, str]:
        with self._lock:
            if self._values is None:
                self._values = dict(self._loader(self.root, self.destination, self.secrets_path))
            return self._values

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._load().get(name))

    def get(self, name: str) -> Secret:
        """The secret `name`; a ConfigError naming the files when it is absent."""
        values = self._load()
        if name not in values:
            existing = [f for f in self.filenames if self._path(f).exists()]
            if existing:
                raise ConfigError(f"Secret '{name}' not found in {', '.join(existing)}")
            raise ConfigError(
                f"Secret '{name}' not found, no secret files ({', '.join(self.filenames)}) provided"
            )
        return Secret(name, values[name])

    def reveal(self, name: str) -> str:
        return self.get(name).reveal()
