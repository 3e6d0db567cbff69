"""Docker env-file contents, escaped exactly as Kamal's ``Kamal::EnvFile`` writes them.

Each line is ``KEY=value``; ASCII runs of the value are Ruby-``dump``-escaped without the
surrounding quotes, then ``\\"`` and ``\\#`` are unescaped (Docker reads env files literally);
non-ASCII text is kept as is. An empty env gives a single newline (never an empty file).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from dockyard.commands.argv import Revealable, Secret
from dockyard.config._ruby import ruby_dump

_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")


def escape_value(value: str) -> str:
    parts: list[str] = []
    for run in _RUNS.findall(value):
        if run.isascii():
            parts.append(ruby_dump(run)[1:-1].replace('\\"', '"').replace("\\#", "#"))
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
