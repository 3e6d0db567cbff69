"""Read dotenv files the way Kamal reads `.kamal/secrets*`.

Kamal parses its secrets files with the Ruby dotenv gem (3.x) and swaps in its own command
substitution. This module reproduces that behaviour, quirks included, because users' files were
written against it:

* Lines are `KEY=value`, `KEY: value` or `export KEY=value`; keys are letters, digits, `_`, `.`.
  Text the grammar does not recognise is skipped, as dotenv does; a bare `KEY` sets it to "".
* `'single quotes'` are literal. `"double quotes"` may span lines. An unquoted value ends at `#`.
* Outside single quotes a backslash drops itself before any character but `$` (so `\\t` is `t`).
  In double quotes `\\n` stays a backslash and an `n` unless `DOTENV_LINEBREAK_MODE=legacy` is set
  (in the file or the environment), which turns it into a newline, as in dotenv 3.
* `$(command)` runs through the shell and is replaced by its output less one trailing newline;
  `\\$(...)` is left alone. Before it runs, `$VAR`/`${VAR}` in the command are expanded.
* `$VAR` and `${VAR}` take earlier keys of the same file first, then the process environment,
  else "". The braces are optional on each side, as in dotenv (`${A` and `$A}` both work).
* Values in the file win over the process environment (Kamal parses with `overwrite: true`).

Errors are `ConfigError`s that name the file and line.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import ConfigError

__all__ = [
    "CommandRunner",
    "Location",
    "parse_dotenv",
    "read_dotenv",
    "run_in_shell",
    "substitute_variables",
]

# dotenv's line grammar. Ruby's `^`/`$` always work per line, hence MULTILINE; ASCII keeps `\s`
# and `\w` to the ASCII classes Ruby uses.
_LINE = re.compile(
    r"""
    (?:^|\A)
    \s*
    (?P<export>export\s+)?
    (?P<key>[\w.]+)
    (?:
      (?:\s*=\s*?|:\s+?)
      (?P<value>
        \s*'(?:\\'|[^'])*'
        |
        \s*"(?:\\"|[^"])*"
        |
        [^\#\n]+
      )?
    )?
    \s*
    (?:\#.*)?
    (?:$|\Z)
    """,
    re.VERBOSE | re.MULTILINE | re.ASCII,
)
_QUOTED = re.compile(r"(['\"])(.*)\1", re.DOTALL)
_UNESCAPE = re.compile(r"\\([^$])", re.DOTALL)
_VARIABLE = re.compile(r"(\\)?(\$)(?!\()\{?([A-Z0-9_]+)?\}?", re.IGNORECASE | re.ASCII)
_RUBY_STRIP = " \t\n\v\f\r\0"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a value comes from, for error messages: `path:line`."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


#: Runs the text of one `$(...)` (variables already expanded) and returns its raw output.
CommandRunner = Callable[[str, Location], str]


def run_in_shell(
    command: str,
    where: Location,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run `command` with `/bin/sh -c`, as Ruby's backticks do.

    Standard input and standard error stay connected to ours, so password prompts and error
    messages reach the user. Standard output is the value. Unlike Kamal, which silently uses
    whatever was printed, a non-zero exit status is an error.
    """
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command],
            stdout=subprocess.PIPE,
            cwd=cwd,
            env=None if env is None else dict(env),
            check=False,
        )
    except OSError as exc:
        raise ConfigError(f"{where}: could not run `{command}`: {exc}") from exc
    if proc.returncode != 0:
        raise ConfigError(
            f"{where}: the command `{command}` exited with status {proc.returncode}",
            hint="its error output, if any, is shown above; fix the command or the value",
        )
    return proc.stdout.decode("utf-8", errors="replace")


def read_dotenv(
    path: Path,
    *,
    environ: Mapping[str, str] | None = None,
    run_command: CommandRunner | None = None,
    display_name: str | None = None,
) -> dict[str, str]:
    """Parse the dotenv file at `path` (a UTF-8 byte-order mark is ignored)."""
    name = display_name or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the file: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{name}:{line}: the file is not valid UTF-8") from exc
    return parse_dotenv(text, path=name, environ=environ, run_command=run_command)


def parse_dotenv(
    text: str,
    *,
    path: str = "<string>",
    environ: Mapping[str, str] | None = None,
    run_command: CommandRunner | None = None,
) -> dict[str, str]:
    """Parse dotenv `text` into an ordered dict of keys and values.

    `environ` is the process environment used for `$VAR` look-ups (default: `os.environ`).
    `run_command` evaluates `$(...)` (default: `run_in_shell` in the current directory).
    """
    env = os.environ if environ is None else environ
    runner: CommandRunner = run_command or run_in_shell
    text = re.sub(r"\r\n?", "\n", text)
    values: dict[str, str] = {}
    for match in _LINE.finditer(text):
        key = match["key"]
        raw = match["value"]
        where = Location(path, text.count("\n", 0, match.start("key")) + 1)
        if match["export"] and raw is None:
            if key not in values:
                raise ConfigError(
                    f"{where}: `export {key}` has no value and {key} is not set earlier in "
                    "the file",
                    hint=f"write `export {key}=value`, or set {key} on an earlier line",
                )
            continue
        values[key] = _parse_value(raw or "", values, env, runner, where)
    return values


def substitute_variables(value: str, values: Mapping[str, str], environ: Mapping[str, str]) -> str:
    """Expand `$VAR`/`${VAR}` from `values`, then `environ`; `\\$VAR` loses its backslash."""

    def replace(match: re.Match[str]) -> str:
        if match[1]:
            return match[0][1:]
        name = match[3]
        if name is None:
            return match[0]
        if name in values:
            return values[name]
        return environ.get(name, "")

    return _VARIABLE.sub(replace, value)


def _parse_value(
    raw: str,
    values: dict[str, str],
    environ: Mapping[str, str],
    runner: CommandRunner,
    where: Location,
) -> str:
    value = raw.strip(_RUBY_STRIP)
    quote: str | None = None
    quoted = _QUOTED.fullmatch(value)
    if quoted:
        quote, value = quoted[1], quoted[2]
    if quote == '"':
        value = _expand_newlines(value, values, environ)
    if quote != "'":
        value = _UNESCAPE.sub(r"\1", value)
        value = _substitute_commands(value, values, environ, runner, where)
        value = substitute_variables(value, values, environ)
    return value


def _expand_newlines(value: str, values: Mapping[str, str], environ: Mapping[str, str]) -> str:
    mode = values.get("DOTENV_LINEBREAK_MODE") or environ.get("DOTENV_LINEBREAK_MODE")
    if mode == "legacy":
        return value.replace("\\n", "\n").replace("\\r", "\r")
    # Doubling the backslash lets the unescape step give back the two characters unchanged.
    return value.replace("\\n", "\\\\n").replace("\\r", "\\\\r")


def _substitute_commands(
    value: str,
    values: Mapping[str, str],
    environ: Mapping[str, str],
    runner: CommandRunner,
    where: Location,
) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        escaped = value.startswith("\\$(", i)
        if escaped or value.startswith("$(", i):
            open_at = i + 2 if escaped else i + 1
            end = _group_end(value, open_at)
            if end is not None:
                if escaped:
                    out.append(value[i + 1 : end])
                else:
                    command = substitute_variables(value[open_at + 1 : end - 1], values, environ)
                    out.append(_chomp(runner(command, where)))
                i = end
                continue
        out.append(value[i])
        i += 1
    return "".join(out)


def _group_end(text: str, start: int) -> int | None:
    """Index just past the `)` that closes the `(` at `start`, or None.

    A group holds at least one item: a backslash and the next character (not a newline), any
    character other than a parenthesis or backslash, or a nested group.
    """
    i = start + 1
    items = 0
    while i < len(text):
        char = text[i]
        if char == ")":
            return i + 1 if items else None
        if char == "\\":
            if i + 1 >= len(text) or text[i + 1] == "\n":
                return None
            i += 2
        elif char == "(":
            end = _group_end(text, i)
            if end is None:
                return None
            i = end
        else:
            i += 1
        items += 1
    return None


def _chomp(text: str) -> str:
    """Ruby's `String#chomp`: drop one trailing `\\r\\n`, `\\n` or `\\r`."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith(("\n", "\r")):
        return text[:-1]
    return text
