"""Where the control plane keeps its files, and the state file (JSON, written atomically).

The state file uses kamal-proxy v0.9.2's own layout (a JSON list of services, each with `name`,
`options`, `target_options`, `active_targets`, `active_readers`, `rollout_*`, `pause_controller`
{state 0/1/2, stop_message, fail_after}; durations as integer nanoseconds), so a config volume
can move between kamal-proxy and dockyard-proxy in either direction. Our own options (basic
auth, IP allowlist, client-IP header) are extra keys in `options`, written only when set; Go's
JSON decoder ignores them.
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
from dockyard.proxy.control.options import (
    ACME_DIRECTORY,
    ACME_STAGING_DIRECTORY,
    HealthCheckConfig,
    ServiceConfig,
)
from dockyard.proxy.quick import SOCKET_NAME  # the fast client finds the socket by it too

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


def _ns(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def config_to_state(cfg: ServiceConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """kamal-proxy's `options` and `target_options` objects for one service."""
    hc = cfg.health_check
    options = {
        "hosts": list(cfg.hosts),
        "path_prefixes": list(cfg.path_prefixes),
        "tls_enabled": cfg.tls_enabled,
        "tls_certificate_path": cfg.tls_certificate_path,
        "tls_private_key_path": cfg.tls_private_key_path,
        "tls_redirect": cfg.tls_redirect,
        "canonical_host": cfg.canonical_host,
        "acme_directory": cfg.acme_directory,
        "acme_cache_path": cfg.tls_acme_cache_path,
        "error_page_path": cfg.error_page_path,
        "strip_prefix": cfg.strip_path_prefix,
        "writer_affinity_timeout": cfg.writer_affinity_timeout,
        "read_targets_accept_websockets": cfg.read_targets_accept_websockets,
    }
    if cfg.has_gate:  # ours, not kamal-proxy's (which ignores unknown keys)
        options["basic_auth_user"] = cfg.basic_auth_user
        options["basic_auth_password_hash"] = cfg.basic_auth_password_hash
        options["allow_ips"] = list(cfg.allow_ips)
        options["client_ip_header"] = cfg.client_ip_header
    target_options = {
        "health_check_config": {
            "path": hc.path,
            "port": hc.port,
            "interval": hc.interval,
            "timeout": hc.timeout,
            "host": hc.host,
        },
        "response_timeout": cfg.target_timeout,
        "buffer_requests": cfg.buffer_requests,
        "buffer_responses": cfg.buffer_responses,
        "max_memory_buffer_size": cfg.buffer_memory,
        "max_request_body_size": cfg.max_request_body,
        "max_response_body_size": cfg.max_response_body,
        "log_request_headers": list(cfg.log_request_headers),
        "log_response_headers": list(cfg.log_response_headers),
        "forward_headers": cfg.effective_forward_headers,
        "scope_cookie_paths": cfg.scope_cookie_paths,
    }
    return options, target_options


def config_from_state(options: dict[str, Any], target_options: dict[str, Any]) -> ServiceConfig:
    """The inverse of `config_to_state`; missing or null fields take kamal-proxy's defaults."""
    d = ServiceConfig()
    hc = _dict(target_options.get("health_check_config"))
    dhc = d.health_check
    legacy_hosts = _strings(options.get("hosts"))
    directory = str(options.get("acme_directory") or "")
    return ServiceConfig(
        hosts=legacy_hosts,
        path_prefixes=_strings(options.get("path_prefixes")) or d.path_prefixes,
        strip_path_prefix=bool(options.get("strip_prefix", d.strip_path_prefix)),
        tls_enabled=bool(options.get("tls_enabled", False)),
        tls_staging=directory == ACME_STAGING_DIRECTORY,
        tls_acme_directory=""
        if directory in ("", ACME_DIRECTORY, ACME_STAGING_DIRECTORY)
        else directory,
        tls_certificate_path=str(options.get("tls_certificate_path") or ""),
        tls_private_key_path=str(options.get("tls_private_key_path") or ""),
        tls_acme_cache_path=str(options.get("acme_cache_path") or ""),
        tls_redirect=bool(options.get("tls_redirect", d.tls_redirect)),
        canonical_host=str(options.get("canonical_host") or ""),
        error_page_path=str(options.get("error_page_path") or ""),
        writer_affinity_timeout=_ns(
            options.get("writer_affinity_timeout"), d.writer_affinity_timeout
        ),
        read_targets_accept_websockets=bool(options.get("read_targets_accept_websockets")),
        health_check=HealthCheckConfig(
            path=str(hc.get("path") or dhc.path),
            port=_ns(hc.get("port"), 0),
            interval=_ns(hc.get("interval"), dhc.interval) or dhc.interval,
            timeout=_ns(hc.get("timeout"), dhc.timeout) or dhc.timeout,
            host=str(hc.get("host") or ""),
        ),
        target_timeout=_ns(target_options.get("response_timeout"), d.target_timeout),
        buffer_requests=bool(target_options.get("buffer_requests")),
        buffer_responses=bool(target_options.get("buffer_responses")),
        buffer_memory=_ns(target_options.get("max_memory_buffer_size"), d.buffer_memory)
        or d.buffer_memory,
        max_request_body=_ns(target_options.get("max_request_body_size"), 0),
        max_response_body=_ns(target_options.get("max_response_body_size"), 0),
        forward_headers=bool(target_options.get("forward_headers", True)),
        log_request_headers=_strings(target_options.get("log_request_headers")),
        log_response_headers=_strings(target_options.get("log_response_headers")),
        scope_cookie_paths=bool(target_options.get("scope_cookie_paths")),
        basic_auth_user=str(options.get("basic_auth_user") or ""),
        basic_auth_password_hash=str(options.get("basic_auth_password_hash") or ""),
        allow_ips=_strings(options.get("allow_ips")),
        client_ip_header=str(options.get("client_ip_header") or ""),
    ).normalized()


@dataclass(frozen=True, slots=True)
class SavedService:
    name: str
    config: ServiceConfig
    targets: tuple[str, ...]
    readers: tuple[str, ...]
    pause: dict[str, Any]
    rollout_targets: tuple[str, ...] = ()
    rollout_readers: tuple[str, ...] = ()
    rollout: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        options, target_options = config_to_state(self.config)
        return {
            "name": self.name,
            "options": options,
            "target_options": target_options,
            "active_targets": list(self.targets),
            "active_readers": list(self.readers),
            "rollout_targets": list(self.rollout_targets) or None,
            "rollout_readers": list(self.rollout_readers) or None,
            "pause_controller": self.pause,
            "rollout_controller": self.rollout,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SavedService:
        targets = _strings(data.get("active_targets"))
        if not targets and isinstance(data.get("active_target"), str):  # older layout
            targets = (data["active_target"],)
        options = _dict(data.get("options"))
        if "hosts" not in options and isinstance(data.get("hosts"), list):  # older layout
            options = {**options, "hosts": data["hosts"]}
        return cls(
            name=str(data["name"]),
            config=config_from_state(options, _dict(data.get("target_options"))),
            targets=targets,
            readers=_strings(data.get("active_readers")),
            pause=_dict(data.get("pause_controller")),
            rollout_targets=_strings(data.get("rollout_targets")),
            rollout_readers=_strings(data.get("rollout_readers")),
            rollout=data.get("rollout_controller")
            if isinstance(data.get("rollout_controller"), dict)
            else None,
        )


class StateFileError(ProxyError):
    pass


class StateStore:
    """Reads and atomically rewrites the state file (tmp + fsync + rename + fsync dir)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, services: list[SavedService]) -> None:
        data = [s.to_json() for s in services]
        payload = json.dumps(data, separators=(",", ":")).encode() + b"\n"
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
            entries = data.get("services") if isinstance(data, dict) else data
            if not isinstance(entries, list):
                raise ValueError("services is not a list")
            return [SavedService.from_json(entry) for entry in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise StateFileError(f"unable to decode state file {self.path}: {exc}") from exc
