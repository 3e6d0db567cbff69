"""What the remote layer accepts as a command, and the one place it becomes a shell line.

A command is one of:

* a plain sequence of arguments: ``str`` parts, or secret-like parts (with ``reveal()``, whose
  ``str()`` is masked, or with ``raw()``/``display()``);
* an object with ``raw()`` (the real argument strings) and ``display()`` (masked), such as
  ``dockyard.commands.Argv``;
* an object with ``shell()`` (a ready, quoted shell line) and ``display()``, such as
  ``dockyard.commands.Pipeline`` or an ``Argv`` holding ``$PWD``-relative paths.

Flows and commands never quote for the transport: the SSH edge calls :func:`command_line` once.
An object may also carry ``stdin`` (``str`` or secret-like), used when ``run`` gets none.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

from dockyard.errors import RemoteCommandError

__all__ = [
    "PIPEFAIL",
    "REMOTE_KILL_GRACE",
    "ArgPart",
    "ArgvLike",
    "MaskedCommand",
    "ShellCommand",
    "command_line",
    "command_stdin",
    "display_args",
    "display_command",
    "is_pipeline",
    "local_args",
    "local_shell",
    "raw_args",
    "remote_command",
    "shell_join",
]


@runtime_checkable
class MaskedCommand(Protocol):
    """A command that knows its real argv and a display form with secrets masked."""

    def raw(self) -> Sequence[str]: ...

    def display(self) -> Sequence[str] | str: ...


@runtime_checkable
class ShellCommand(Protocol):
    """A command that renders itself as one quoted shell line (pipes, ``$PWD`` paths)."""

    def shell(self) -> str: ...

    def display(self) -> str: ...


@runtime_checkable
class Revealable(Protocol):
    """A secret-like argument: ``reveal()`` gives the value, ``str()`` the masked form."""

    def reveal(self) -> str: ...


@runtime_checkable
class SecretPart(Protocol):
    """A secret-like argument with ``raw()`` (the value) and ``display()`` (masked)."""

    def raw(self) -> str: ...

    def display(self) -> str: ...


ArgPart: TypeAlias = "str | Revealable | SecretPart"
ArgvLike: TypeAlias = "MaskedCommand | ShellCommand | Sequence[ArgPart]"


def _part_raw(part: object) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Revealable):
        return part.reveal()
    if isinstance(part, SecretPart):
        value = part.raw()
        if isinstance(value, str):
            return value
    raise TypeError(f"argv part must be str or secret-like, got {type(part).__name__}")


def _part_display(part: object) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, SecretPart):
        return part.display()
    if isinstance(part, Revealable):
        return str(part)
    raise TypeError(f"argv part must be str or secret-like, got {type(part).__name__}")


def _check_not_str(command: object) -> None:
    if isinstance(command, str | bytes):
        raise TypeError("a command is a sequence of arguments, not a string (no shell parsing)")


def raw_args(command: ArgvLike) -> list[str]:
    """The real argument list (secrets revealed): only for handing to a process.

    Raises ``TypeError`` for a shell-only command (it has no argument list).
    """
    _check_not_str(command)
    if isinstance(command, MaskedCommand):
        parts: Sequence[object] = command.raw()
    elif isinstance(command, ShellCommand):
        raise TypeError("a shell-only command has no argument list; use command_line()")
    else:
        parts = command
    args = [_part_raw(part) for part in parts]
    if not args:
        raise ValueError("empty command")
    return args


def shell_join(command: ArgvLike) -> str:
    """Quote the real argv into one POSIX shell command line."""
    return shlex.join(raw_args(command))


#: Put before a pipeline so that it fails when any stage fails, in shells that can (bash,
#: zsh, ksh, busybox ash); dash cannot, and there the test in a subshell fails quietly.
PIPEFAIL = "(set -o pipefail) 2>/dev/null && set -o pipefail; "


def is_pipeline(command: object) -> bool:
    """Whether the command is a pipeline of several stages (``dockyard.commands.Pipeline``)."""
    stages = getattr(command, "stages", None)
    return isinstance(stages, tuple | list) and len(stages) > 1


def command_line(command: ArgvLike) -> str:
    """The shell line for a remote shell: the command's own ``shell()`` if it has one (with
    :data:`PIPEFAIL` before a pipeline), else its argv quoted once with ``shlex.join``.
    The only quoting the remote layer does."""
    _check_not_str(command)
    if isinstance(command, ShellCommand):
        line = command.shell()
        if not line.strip():
            raise ValueError("empty command")
        return PIPEFAIL + line if is_pipeline(command) else line
    return shell_join(command)


def local_args(command: ArgvLike) -> list[str]:
    """Arguments for a local exec (no shell), or ``sh -c`` for shell-only commands.

    A command whose ``raw()`` cannot resolve without a remote home (``ValueError``) but that
    can render ``shell()`` also runs through ``sh -c``.
    """
    _check_not_str(command)
    if isinstance(command, MaskedCommand):
        try:
            return raw_args(command)
        except ValueError:
            if not isinstance(command, ShellCommand):
                raise
    if isinstance(command, ShellCommand):
        return [local_shell(), "-c", command_line(command)]
    return raw_args(command)


def local_shell() -> str:
    """bash when this machine has it (pipelines then fail when any stage fails), else sh."""
    return "bash" if shutil.which("bash") else "sh"


def command_stdin(command: ArgvLike) -> bytes | None:
    """Standard input the command carries itself (``.stdin``: str or secret-like), if any."""
    data = getattr(command, "stdin", None)
    if data is None or isinstance(command, list | tuple):
        return None
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, Revealable):
        return data.reveal().encode()
    return None


def display_args(command: ArgvLike) -> list[str]:
    """The argument list with secrets masked, for messages and logs."""
    if isinstance(command, MaskedCommand | ShellCommand):
        shown = command.display()
        if isinstance(shown, str):
            try:
                return shlex.split(shown)
            except ValueError:
                return [shown]
        return [str(part) for part in shown]
    return [_part_display(part) for part in command]


def display_command(command: ArgvLike) -> str:
    """A one-line, masked rendering of a command for messages."""
    if isinstance(command, MaskedCommand | ShellCommand):
        shown = command.display()
        if isinstance(shown, str):
            return shown
        return shlex.join(str(part) for part in shown)
    return shlex.join(_part_display(part) for part in command)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: Seconds the server-side guard waits beyond a command's timeout before killing it.
REMOTE_KILL_GRACE = 2.0


def remote_command(
    argv: ArgvLike, env: Mapping[str, str] | None = None, *, timeout: float | None = None
) -> str:
    """The command line sent over SSH: :func:`command_line`, with exported variables in front.

    Variables go in the line rather than through the SSH protocol because sshd accepts only the
    names its ``AcceptEnv`` lists. With a ``timeout`` the line runs under ``timeout -s KILL``
    (when the server has it) a little longer than the client waits: OpenSSH refuses signal
    requests for root sessions, so closing the channel alone would leave e.g. a hung
    ``docker pull`` running on the server.
    """
    line = command_line(argv)
    if env:
        for name in env:
            if not _ENV_NAME.match(name):
                raise RemoteCommandError(f"remote: bad environment variable name {name!r}")
        exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
        line = f"export {exports}; {line}"
    if timeout is not None:
        quoted = shlex.quote(line)
        limit = f"{max(timeout, 0) + REMOTE_KILL_GRACE:g}"
        # "$SHELL" is the login shell sshd would have run the line with.
        line = (
            "if command -v timeout >/dev/null 2>&1; "
            f'then exec timeout -s KILL {limit} "${{SHELL:-/bin/sh}}" -c {quoted}; '
            f"else eval {quoted}; fi"
        )
    return line
