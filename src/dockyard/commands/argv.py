"""Command values: an argv with secret parts, a pipeline of argvs, and the ``docker`` helper.

An :class:`Argv` holds the literal arguments a program receives (what the remote shell would
hand to ``execve`` after unquoting), never shell syntax. Three kinds of part exist:

* ``str``: an ordinary argument;
* :class:`Secret`: an argument whose value must not be shown; ``display()`` prints its
  redaction (``[REDACTED]`` by default, or e.g. ``a=[REDACTED]`` for a build argument);
* :class:`HomePath`: a path relative to the remote login directory that the program needs as
  an absolute path (Docker bind mounts). Kamal writes these as ``$PWD/<path>`` and lets the
  remote shell expand them; :meth:`Argv.shell` renders the same expansion with everything else
  quoted, and :meth:`Argv.raw` resolves it against a known home directory.

Equality: two ``Argv`` compare by parts (and stdin); an ``Argv`` also equals a tuple or list of
``str`` whose items are the plain rendering of its parts (secrets revealed, home paths as
``$PWD/<path>``), so golden tests read like the command Kamal runs, minus the shell quoting.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, overload, runtime_checkable

REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class Secret:
    """A sensitive argument. ``str()``/``repr()`` never show the value; ``reveal()`` does."""

    value: str = field(repr=False)
    redaction: str = REDACTED

    def reveal(self) -> str:
        return self.value

    def __str__(self) -> str:
        return self.redaction

    def __repr__(self) -> str:
        return f"Secret({self.redaction!r})"


@dataclass(frozen=True, slots=True)
class HomePath:
    """A path below the remote login directory, rendered as an absolute path."""

    path: str

    def __str__(self) -> str:
        return f"$PWD/{self.path}"


@dataclass(frozen=True, slots=True)
class ShellExpanded:
    """A value in which the remote shell expands ``${NAME}`` references, as Kamal's quoting
    allows (``escape_shell_value`` leaves ``${...}`` alone). Everything else is literal.

    With ``variables``, every ``$NAME`` is expanded too (Kamal passes ``builder.ssh`` to the
    local shell unquoted, so ``default=$SSH_AUTH_SOCK`` works). Only :meth:`Argv.shell` can
    render it; :meth:`Argv.raw` refuses (run it through a shell).
    """

    text: str
    variables: bool = False

    def __str__(self) -> str:
        return self.text


_BRACED = re.compile(r"\$\{[^}]*\}")


def shell_expanded(text: str) -> str | ShellExpanded:
    """``text`` as a :class:`ShellExpanded` part when it holds a ``${...}``, else as is."""
    return ShellExpanded(text) if _BRACED.search(text) else text


def _double_quote(text: str, *, variables: bool = False) -> str:
    if variables:
        return '"' + re.sub(r'(["`\\\\])', r"\\\1", text) + '"'
    out: list[str] = []
    index = 0
    while index < len(text):
        braced = _BRACED.match(text, index)
        if braced:
            out.append(braced.group())
            index = braced.end()
            continue
        char = text[index]
        out.append("\\" + char if char in '\\"`$' else char)
        index += 1
    return '"' + "".join(out) + '"'


Part = str | Secret | HomePath | ShellExpanded


@runtime_checkable
class Revealable(Protocol):
    """Any secret-like value, e.g. ``dockyard.config.secret.Secret``."""

    def reveal(self) -> str: ...


def as_secret(value: str | Revealable, redaction: str = REDACTED) -> Secret:
    """Wrap a plain or secret-like value as an argv :class:`Secret` part."""
    if isinstance(value, Secret):
        return value if redaction == REDACTED else Secret(value.value, redaction)
    if isinstance(value, str):
        return Secret(value, redaction)
    return Secret(value.reveal(), redaction)


def _plain(part: Part) -> str:
    if isinstance(part, Secret):
        return part.reveal()
    return str(part)


def _quote(part: Part, *, reveal: bool) -> str:
    if isinstance(part, ShellExpanded):
        return _double_quote(part.text, variables=part.variables)
    if isinstance(part, HomePath):
        return '"$PWD"/' + shlex.quote(part.path)
    if isinstance(part, Secret):
        return shlex.quote(part.reveal()) if reveal else part.redaction
    return shlex.quote(part)


class Argv:
    """An immutable argv: one program and its literal arguments, optionally with stdin data."""

    __slots__ = ("_parts", "_stdin")

    def __init__(
        self, parts: Iterable[Part | Revealable], *, stdin: str | Secret | None = None
    ) -> None:
        converted: list[Part] = []
        for part in parts:
            if isinstance(part, str | Secret | HomePath | ShellExpanded):
                converted.append(part)
            elif isinstance(part, Revealable):
                converted.append(as_secret(part))
            else:
                raise TypeError(f"Argv parts must be str, Secret or HomePath, not {part!r}")
        if not converted:
            raise ValueError("an Argv needs at least a program name")
        self._parts: tuple[Part, ...] = tuple(converted)
        self._stdin = stdin

    @property
    def parts(self) -> tuple[Part, ...]:
        return self._parts

    @property
    def stdin(self) -> str | Secret | None:
        """Data the transport writes to the program's standard input, if any."""
        return self._stdin

    @property
    def program(self) -> str:
        return _plain(self._parts[0])

    @property
    def has_secrets(self) -> bool:
        return any(isinstance(p, Secret) for p in self._parts) or isinstance(self._stdin, Secret)

    def plain(self) -> tuple[str, ...]:
        """Parts as strings, secrets revealed, home paths as ``$PWD/<path>`` (for tests)."""
        return tuple(_plain(p) for p in self._parts)

    def raw(self, *, home: str | None = None) -> tuple[str, ...]:
        """The argv for a transport: secrets revealed and home paths resolved against ``home``.

        Raises ``ValueError`` when the argv holds a :class:`HomePath` and no ``home`` is given.
        """
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, ShellExpanded):
                raise ValueError(f"{part.text!r} must be expanded by a shell: use Argv.shell()")
            if isinstance(part, HomePath):
                if home is None:
                    raise ValueError(
                        f"{part} needs the remote home directory: call Argv.with_home() first"
                    )
                out.append(f"{home.rstrip('/')}/{part.path}")
            else:
                out.append(_plain(part))
        return tuple(out)

    @property
    def needs_shell(self) -> bool:
        """Whether only :meth:`shell` can render it (``${...}`` values the shell must expand)."""
        return any(isinstance(p, ShellExpanded) for p in self._parts)

    @property
    def needs_home(self) -> bool:
        """Whether :meth:`with_home` must be called before :meth:`raw` (home paths present)."""
        return any(isinstance(p, HomePath) for p in self._parts)

    def with_home(self, home: str) -> Argv:
        """The same argv with every :class:`HomePath` made absolute under ``home``."""
        base = home.rstrip("/")
        parts = [f"{base}/{p.path}" if isinstance(p, HomePath) else p for p in self._parts]
        return Argv(parts, stdin=self._stdin)

    def stdin_bytes(self) -> bytes | None:
        if self._stdin is None:
            return None
        text = self._stdin.reveal() if isinstance(self._stdin, Secret) else self._stdin
        return text.encode()

    def shell(self) -> str:
        """One shell word per part, quoted; home paths expand ``$PWD`` remotely. Reveals secrets."""
        return " ".join(_quote(p, reveal=True) for p in self._parts)

    def display(self) -> str:
        """The command as shown to a user or written to a log: secrets replaced by redactions."""
        return " ".join(_quote(p, reveal=False) for p in self._parts)

    def __add__(self, other: Iterable[Part]) -> Argv:
        return Argv((*self._parts, *other), stdin=self._stdin)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...

    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        """Items of :meth:`plain` (secrets revealed, home paths as ``$PWD/...``)."""
        return self.plain()[index]

    def __iter__(self) -> Iterator[Part]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Argv):
            return self._parts == other._parts and self._stdin == other._stdin
        if isinstance(other, tuple | list):
            return self.plain() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        # Consistent with equality to a plain tuple of strings.
        return hash(self.plain())

    def __repr__(self) -> str:
        stdin = "" if self._stdin is None else ", stdin=..."
        return f"Argv({self.display()!r}{stdin})"

    def __str__(self) -> str:
        return self.display()


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Programs joined stdout-to-stdin, for the few places a real pipe is needed.

    ``merge_stderr`` sends the first stage's stderr into the pipe as well (Kamal's ``2>&1``).
    A transport must treat the pipeline as failed when any stage fails.
    """

    stages: tuple[Argv, ...]
    merge_stderr: bool = False

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a Pipeline needs at least one stage")

    def _render(self, *, reveal: bool) -> str:
        rendered = [stage.shell() if reveal else stage.display() for stage in self.stages]
        if self.merge_stderr:
            rendered[0] += " 2>&1"
        return " | ".join(rendered)

    def shell(self) -> str:
        return self._render(reveal=True)

    def display(self) -> str:
        return self._render(reveal=False)

    def __str__(self) -> str:
        return self.display()


def argv(*parts: Part | Revealable | None) -> Argv:
    """An argv from parts, dropping ``None`` (the equivalent of Kamal's ``compact``)."""
    return Argv(p for p in parts if p is not None)


def docker(*parts: Part | Revealable | None) -> Argv:
    """``docker`` followed by the given parts, ``None`` parts dropped."""
    return argv("docker", *parts)


def key_value_pairs(
    flag: str, mapping: Iterable[tuple[str, str | bool | None]]
) -> tuple[Part, ...]:
    """``flag k=v ...`` per item; ``None``/empty gives a bare ``k``, ``False`` gives ``k=false``.

    This mirrors Kamal's ``argumentize`` for a hash. Its quoting lets the remote shell expand
    ``${...}`` in values, so such a value becomes a :class:`ShellExpanded` part.
    """
    out: list[Part] = []
    for key, value in mapping:
        if value is False:
            out.extend((flag, f"{key}=false"))
        elif value is True:
            out.extend((flag, f"{key}=true"))
        elif value is None or not value.strip():
            out.extend((flag, key))
        else:
            out.extend((flag, shell_expanded(f"{key}={value}")))
    return tuple(out)


OptionValue = str | int | float | bool | list[str] | list[int] | None


def optionize(
    options: Iterable[tuple[str, OptionValue]], *, joined: bool = False
) -> tuple[str, ...]:
    """Docker-style options from ``(name, value)`` pairs (Kamal's ``optionize``).

    ``True`` gives a bare ``--name``; a list repeats the option; other values give
    ``--name value`` or, with ``joined``, ``--name=value``. ``None`` values are skipped.
    """
    out: list[str] = []
    for name, value in options:
        values: list[object] = list(value) if isinstance(value, list) else [value]
        for item in values:
            if item is None:
                continue
            if item is True:
                out.append(f"--{name}")
            elif joined:
                out.append(f"--{name}={_scalar(item)}")
            else:
                out.extend((f"--{name}", _scalar(item)))
    return tuple(out)


def _scalar(value: object) -> str:
    if value is False:
        return "false"
    return str(value)
