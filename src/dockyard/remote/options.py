"""The SSH settings the remote layer needs, as one frozen value (defaults as in Kamal).

The config layer maps the ``ssh`` and ``sshkit`` sections of deploy.yml onto
:class:`SshOptions`. Turning it into asyncssh arguments is pure (:func:`connect_kwargs`), except
for :func:`resolve_known_hosts` and :func:`check_files`, which look at the file system.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import ConfigError, ConnectError
from dockyard.remote.engine import DOCKER_SOCKET

__all__ = [
    "LOG_LEVELS",
    "JumpHost",
    "SshOptions",
    "check_files",
    "connect_kwargs",
    "format_target",
    "interactive_ssh_argv",
    "parse_jump",
    "resolve_known_hosts",
]

#: ssh.log_level values (Kamal / net-ssh names) and the logging level used for asyncssh.
LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}

#: Known-hosts files used, when they exist, if ssh.known_hosts is not set.
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")


@dataclass(frozen=True, slots=True)
class JumpHost:
    user: str
    host: str
    port: int

    def target(self) -> str:
        return format_target(self.user, self.host, self.port)


def format_target(user: str, host: str, port: int) -> str:
    """``user@host:port``, with brackets around IPv6 addresses."""
    shown = f"[{host}]" if ":" in host else host
    return f"{user}@{shown}:{port}"


def _check_port(value: int, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{key}: port must be a whole number from 1 to 65535, got {value!r}")
    return value


def parse_jump(spec: str, *, default_user: str = "root") -> JumpHost:
    """Parse a jump host ``[user@]host[:port]`` (IPv6 as ``[addr]:port``); user defaults to root."""
    text = spec.strip()
    if not text:
        raise ConfigError("ssh.proxy: empty jump host")
    user = default_user
    if "@" in text:
        user, text = text.rsplit("@", 1)
        if not user:
            raise ConfigError(f"ssh.proxy: empty user in {spec!r}")
    port = 22
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ConfigError(f"ssh.proxy: missing ']' in {spec!r}")
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"ssh.proxy: expected ':port' after ']' in {spec!r}")
            port = _parse_port(rest[1:], spec)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _parse_port(port_text, spec)
    else:
        host = text
    if not host or any(ch.isspace() for ch in host):
        raise ConfigError(f"ssh.proxy: bad host in {spec!r}")
    return JumpHost(user, host, port)


def _parse_port(text: str, spec: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"ssh.proxy: port must be a number in {spec!r}")
    return _check_port(int(text), "ssh.proxy")


@dataclass(frozen=True, slots=True)
class SshOptions:
    """How to reach every host. Defaults follow Kamal 2 (user root, port 22, keepalive 30 s).

    ``config``: False (default) ignores OpenSSH config files; True reads ``~/.ssh/config``; a
    path or a tuple of paths names the files to read. (Kamal reads ``~/.ssh/config`` unless
    told not to; Dockyard reads it only when asked.) ``keepalive_interval`` 0 turns keepalives
    off. ``known_hosts``: files to trust; empty means the user's and
    the system's default files. Host key checking is never turned off.
    The last three fields come from Kamal's ``sshkit`` section.
    """

    user: str = "root"
    port: int = 22
    proxy: str | None = None
    proxy_command: str | None = None
    keys: tuple[str, ...] = ()
    key_data: tuple[str, ...] = field(default=(), repr=False)
    keys_only: bool = False
    config: bool | str | tuple[str, ...] = False
    log_level: str = "fatal"
    known_hosts: tuple[str, ...] = ()
    connect_timeout: float = 30.0
    keepalive_interval: float = 30.0
    max_channels: int = 10
    max_concurrent_starts: int = 30
    pool_idle_timeout: float = 900.0
    dns_retries: int = 3
    #: The Docker socket the Engine API is reached at over the connection (a few ``docker``
    #: queries go there instead of to the CLI: ``remote.engine``); None: always the CLI.
    docker_socket: str | None = DOCKER_SOCKET

    def __post_init__(self) -> None:
        if not self.user or any(ch.isspace() or ch == "@" for ch in self.user):
            raise ConfigError(f"ssh.user: not a valid user name: {self.user!r}")
        _check_port(self.port, "ssh.port")
        if self.proxy is not None and self.proxy_command is not None:
            raise ConfigError("ssh: set either proxy or proxy_command, not both")
        if self.proxy is not None:
            parse_jump(self.proxy)
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"ssh.log_level: unknown level {self.log_level!r} "
                f"(one of {', '.join(sorted(LOG_LEVELS))})"
            )
        for name in ("connect_timeout", "pool_idle_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"ssh.{name}: must be more than 0 seconds")
        if self.keepalive_interval < 0:
            raise ConfigError("ssh.keepalive_interval: must not be negative (0 turns it off)")
        for name in ("max_channels", "max_concurrent_starts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sshkit.{name}: must be at least 1")
        if self.dns_retries < 0:
            raise ConfigError("sshkit.dns_retries: must not be negative")

    @property
    def jump(self) -> JumpHost | None:
        return None if self.proxy is None else parse_jump(self.proxy)

    def target(self, host: str) -> str:
        return format_target(self.user, host, self.port)


def _expand(path: str) -> str:
    return os.path.expanduser(path)


def resolve_known_hosts(options: SshOptions) -> list[str]:
    """The known-hosts files to trust: the configured ones, else the defaults that exist."""
    if options.known_hosts:
        return [_expand(path) for path in options.known_hosts]
    return [path for path in map(_expand, DEFAULT_KNOWN_HOSTS) if Path(path).is_file()]


def config_paths(options: SshOptions) -> list[str]:
    if options.config is True:
        return [_expand("~/.ssh/config")]
    if options.config is False:
        return []
    if isinstance(options.config, str):
        return [_expand(options.config)]
    return [_expand(path) for path in options.config]


def check_files(options: SshOptions) -> None:
    """Fail early, naming the setting, when a configured file is missing or unreadable."""
    checks = [("ssh.keys", _expand(path)) for path in options.keys]
    checks += [("ssh.known_hosts", _expand(path)) for path in options.known_hosts]
    if not isinstance(options.config, bool):
        checks += [("ssh.config", path) for path in config_paths(options)]
    for key, path in checks:
        if not Path(path).is_file():
            raise ConnectError(f"ssh: {key}: file not found: {path}")
        if not os.access(path, os.R_OK):
            raise ConnectError(f"ssh: {key}: file not readable: {path}")


def _proxy_command(template: str, host: str, port: int, user: str) -> str:
    tokens = {"%h": host, "%p": str(port), "%r": user, "%%": "%"}
    out = []
    i = 0
    while i < len(template):
        pair = template[i : i + 2]
        if pair in tokens:
            out.append(tokens[pair])
            i += 2
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


def connect_kwargs(
    options: SshOptions,
    host: str,
    *,
    known_hosts: list[str],
    port: int | None = None,
    user: str | None = None,
    client_keys: list[Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``asyncssh.connect`` to reach ``host``.

    ``known_hosts`` is always a file list (or, when empty, b"": trust nothing), never None.
    ``client_keys`` are already imported keys from ``key_data``; key files are added to them.
    """
    port = options.port if port is None else port
    user = options.user if user is None else user
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "username": user,
        "known_hosts": list(known_hosts) if known_hosts else b"",
        "connect_timeout": options.connect_timeout,
        "keepalive_interval": options.keepalive_interval,
        "config": config_paths(options),
    }
    keys: list[Any] = list(client_keys or []) + [_expand(path) for path in options.keys]
    if keys:
        kwargs["client_keys"] = keys
    if options.keys_only:
        # Like OpenSSH IdentitiesOnly: the given (or default) key files, not the agent's keys.
        kwargs["agent_path"] = None
    if options.proxy_command is not None:
        kwargs["proxy_command"] = _proxy_command(options.proxy_command, host, port, user)
    return kwargs


def interactive_ssh_argv(
    options: SshOptions, host: str, command_line: str | None = None, *, tty: bool = True
) -> list[str]:
    """The local ``ssh`` argv for interactive use (``app exec -i``, ``logs -f``), with the
    same settings as the asyncssh connections: keys (``-i``), jump (``-J``) or proxy command,
    config files (``-F``, ``/dev/null`` when not opted in), ``IdentitiesOnly`` for keys_only,
    the known-hosts files, and the port. ``command_line`` is already quoted for the remote shell.
    """
    argv = ["ssh"]
    if tty:
        argv.append("-t")
    for key in options.keys:
        argv += ["-i", _expand(key)]
    jump = options.jump
    if jump is not None:
        argv += ["-J", jump.target()]
    if options.proxy_command is not None:
        argv += ["-o", f"ProxyCommand={options.proxy_command}"]
    paths = config_paths(options)
    if not paths:
        argv += ["-F", "/dev/null"]
    for path in paths:
        argv += ["-F", path]
    if options.keys_only:
        argv += ["-o", "IdentitiesOnly=yes"]
    if options.known_hosts:
        files = " ".join(_expand(path) for path in options.known_hosts)
        argv += ["-o", f"UserKnownHostsFile={files}"]
    argv += ["-o", f"ServerAliveInterval={options.keepalive_interval:g}"]
    argv += ["-o", f"ConnectTimeout={options.connect_timeout:g}"]
    argv += ["-p", str(options.port), f"{options.user}@{host}"]
    if command_line is not None:
        argv.append(command_line)
    return argv
