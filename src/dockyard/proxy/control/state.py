"""Where the control plane keeps its files, and the state file (JSON, written atomically).

Layout of `kamal-proxy.state` (durations in integer nanoseconds, as kamal-proxy stores them):

    {"services": [{"name": ..., "options": {...ServiceConfig...},
                   "active_targets": [...], "active_readers": [...],
                   "rollout_targets": [], "rollout_readers": [],
                   "pause_controller": {"state": 0|1|2, "stop_message": ..., "fail_after": ns},
                   "rollout_controller": null}]}
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import ProxyError
from dockyard.proxy.control.options import ServiceConfig

SOCKET_NAME = "kamal-proxy.sock"
STATE_NAME = "kamal-proxy.state"


def socket_path(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_RUNTIME_DIR/kamal-proxy.sock`, else `<tempdir>/kamal-proxy.sock`."""
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR", "")
    base = Path(runtime) if runtime else Path(tempfile.gettempdir())
    return base / SOCKET_NAME


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CONFIG_HOME/kamal-proxy`, else `$HOME/.config/kamal-proxy`."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg:
        return Path(xdg) / "kamal-proxy"
    home = env.get("HOME", "") or str(Path.home())
    return Path(home) / ".config" / "kamal-proxy"


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The config dir, created with mode 0700; the temp dir when it cannot be created."""
    path = config_dir(env)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return Path(tempfile.gettempdir())
    return path


@dataclass(frozen=True, slots=True)
class SavedService:
    name: str
    config: ServiceConfig
    targets: tuple[str, ...]
    readers: tuple[str, ...]
    pause: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "options": self.config.to_json(),
            "active_targets": list(self.targets),
            "active_readers": list(self.readers),
            "rollout_targets": [],
            "rollout_readers": [],
            "pause_controller": self.pause,
            "rollout_controller": None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SavedService:
        targets = data.get("active_targets")
        if targets is None and "active_target" in data:  # an older single-target layout
            targets = [data["active_target"]]
        options = data.get("options") or {}
        pause = data.get("pause_controller") or {}
        if not isinstance(options, dict) or not isinstance(pause, dict):
            raise ValueError("malformed service entry")
        return cls(
            name=str(data["name"]),
            config=ServiceConfig.from_json(options),
            targets=tuple(str(t) for t in targets or ()),
            readers=tuple(str(t) for t in data.get("active_readers") or ()),
            pause=pause,
        )


class StateFileError(ProxyError):
    pass


class StateStore:
    """Reads and atomically rewrites the state file (tmp + fsync + rename + fsync dir)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, services: list[SavedService]) -> None:
        data = {"services": [s.to_json() for s in services]}
        payload = json.dumps(data, indent=None, separators=(",", ":")).encode() + b"\n"
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load(self) -> list[SavedService] | None:
        """The saved services; None when there is no file. Raises `StateFileError` when the
        file cannot be decoded."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(f"unable to read state file {self.path}: {exc}") from exc
        try:
            data = json.loads(raw)
            entries = data["services"] if isinstance(data, dict) else data
            if not isinstance(entries, list):
                raise ValueError("services is not a list")
            return [SavedService.from_json(entry) for entry in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise StateFileError(f"unable to decode state file {self.path}: {exc}") from exc
