"""Docker env-file contents, escaped exactly as Kamal's ``Kamal::EnvFile`` writes them.

Each line is ``KEY=value``; ASCII runs of the value are Ruby-``dump``-escaped without the
surrounding quotes, then ``\\"`` and ``\\#`` are unescaped (Docker reads env files literally);
non-ASCII text is kept as is. An empty env gives a single newline (never an empty file).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from dockyard.commands.argv import Revealable, Secret

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\f": "\\f",
    "\v": "\\v",
    "\b": "\\b",
    "\a": "\\a",
    "\x1b": "\\e",
}
_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")


def _dump_inner(text: str) -> str:
    """Ruby's ``String#dump`` of ASCII text, without the quotes."""
    out: list[str] = []
    for index, char in enumerate(text):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char == "#" and text[index + 1 : index + 2] in ("{", "$", "@"):
            out.append("\\#")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02X}")
        else:
            out.append(char)
    return "".join(out)


def escape_value(value: str) -> str:
    parts: list[str] = []
    for run in _RUNS.findall(value):
        if run.isascii():
            parts.append(_dump_inner(run).replace('\\"', '"').replace("\\#", "#"))
        else:
            parts.append(run)
    return "".join(parts)


def _reveal(value: str | Revealable) -> str:
    return value if isinstance(value, str) else value.reveal()


def contents(env: Mapping[str, str | Revealable] | Iterable[tuple[str, str | Revealable]]) -> str:
    """The file text for ``env`` (values may be secrets; they are revealed here, on purpose)."""
    items = env.items() if isinstance(env, Mapping) else env
    text = "".join(f"{key}={escape_value(_reveal(value))}\n" for key, value in items)
    return text or "\n"


def secret_contents(env: Mapping[str, str | Revealable]) -> Secret:
    """:func:`contents` wrapped as a :class:`Secret`, so it is never logged by accident."""
    return Secret(contents(env), redaction="[REDACTED env file]")
