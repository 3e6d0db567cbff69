"""Reading one config file: the ERB forms used in practice, then YAML with line numbers.

The result is plain data plus a table from key path (`("servers", "web", "hosts", 1)`) to the
line where that node starts, so validation errors can point at the file and line.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import ConfigError

from ._ruby import ruby_str

KeyPath = tuple[str | int, ...]


class _UnsupportedErb(ConfigError):
    """An ERB form outside the supported subset (tolerated on a YAML comment line)."""


@dataclass
class Document:
    """One loaded file: its data and where each key path starts."""

    file: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- ERB

_TAG = re.compile(r"<%(?P<kind>=|#|-)?(?P<body>.*?)(?P<trim>-)?%>", re.DOTALL)
_STRING = r"""(?:"(?P<{0}dq>[^"\\]*)"|'(?P<{0}sq>[^'\\]*)')"""
_ENV_INDEX = re.compile(
    r"ENV\[\s*" + _STRING.format("k") + r"\s*\](?:\s*\|\|\s*" + _STRING.format("d") + ")?"
)
_ENV_FETCH = re.compile(
    r"ENV\.fetch\(\s*" + _STRING.format("k") + r"\s*(?:,\s*" + _STRING.format("d") + r"\s*)?\)"
    r"(?:\s*\{\s*" + _STRING.format("b") + r"\s*\})?"
)
_SHELL = re.compile(r"%x\((?P<p>.*)\)|%x\{(?P<b>.*)\}|`(?P<t>[^`]*)`", re.DOTALL)
_METHODS = re.compile(r"((?:\.(?:strip|chomp|rstrip|lstrip|to_s))*)\s*")
_SUPPORTED = (
    'ERB supports only <%= ENV["X"] %>, <%= ENV["X"] || "default" %>, <%= ENV.fetch("X") %>, '
    '<%= ENV.fetch("X", "default") %>, <%= ENV.fetch("X") { "default" } %>, <%= %x(command) %> '
    "and <%= `command` %> (optionally followed by .strip or .chomp)"
)


def _group(match: re.Match[str], prefix: str) -> str | None:
    for suffix in ("dq", "sq"):
        value = match.group(prefix + suffix)
        if value is not None:
            return value
    return None


def _apply_methods(value: str, methods: str) -> str:
    for method in filter(None, methods.split(".")):
        if method == "strip":
            value = value.strip()
        elif method == "lstrip":
            value = value.lstrip()
        elif method == "rstrip":
            value = value.rstrip()
        elif method == "chomp":
            value = value.removesuffix("\n").removesuffix("\r")
    return value


def _run_shell(command: str, *, cwd: Path, env: Mapping[str, str], where: str) -> str:
    try:
        done = subprocess.run(
            command,
            shell=True,
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise ConfigError(f"{where}: could not run `{command}`: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        raise ConfigError(
            f"{where}: command `{command}` failed with exit status {done.returncode}"
            + (f": {detail}" if detail else "")
        )
    return done.stdout


def _evaluate(expr: str, *, cwd: Path, env: Mapping[str, str], where: str) -> str:
    text = expr.strip()
    for pattern, kind in ((_ENV_FETCH, "fetch"), (_ENV_INDEX, "index"), (_SHELL, "shell")):
        match = pattern.match(text)
        if not match:
            continue
        tail = _METHODS.fullmatch(text[match.end() :])
        if tail is None:
            break
        if kind == "shell":
            command = next(g for g in match.group("p", "b", "t") if g is not None)
            value = _run_shell(command, cwd=cwd, env=env, where=where)
        else:
            name = _group(match, "k") or ""
            default = _group(match, "d")
            if kind == "fetch" and default is None:
                default = _group(match, "b")
            if name in env:
                value = env[name]
            elif default is not None:
                value = default
            elif kind == "index":
                value = ""  # nil renders as nothing
            else:
                raise ConfigError(
                    f"{where}: environment variable {name} is not set (ENV.fetch({name!r}))",
                    hint=f"export {name}=... or use ENV.fetch({name!r}, 'default')",
                )
        return _apply_methods(value, tail.group(1))
    raise _UnsupportedErb(f"{where}: unsupported ERB `<%= {text} %>`", hint=_SUPPORTED)


def _on_comment_line(text: str, match: re.Match[str]) -> bool:
    """The tag sits on one line whose first non-blank character is a YAML comment `#`."""
    if "\n" in match.group(0):
        return False
    line_start = text.rfind("\n", 0, match.start()) + 1
    return text[line_start : match.start()].lstrip(" \t").startswith("#")


def render_erb(
    text: str, *, file: Path, cwd: Path, env: Mapping[str, str]
) -> tuple[str, list[int]]:
    """Render the supported ERB forms; return the text and, per output line, the source line."""
    out: list[str] = []
    line_map: list[int] = []
    source_line = 1
    position = 0

    def emit(chunk: str, *, line: int | None = None) -> None:
        # Map every output line ended in `chunk` back to a source line: literal text advances
        # the source line by line; the output of a tag belongs to the tag's line.
        nonlocal source_line
        for _ in range(chunk.count("\n")):
            if line is None:
                line_map.append(source_line)
                source_line += 1
            else:
                line_map.append(line)
        out.append(chunk)

    for match in _TAG.finditer(text):
        literal = text[position : match.start()]
        emit(literal)
        tag_line = source_line
        where = f"{file}:{tag_line}"
        kind, body = match.group("kind"), match.group("body")
        try:
            if kind == "#":
                value = ""
            elif kind == "=":
                value = _evaluate(body, cwd=cwd, env=env, where=where)
            else:
                raise _UnsupportedErb(
                    f"{where}: unsupported ERB `{match.group(0).strip()}` (only <%= ... %> "
                    "output tags and <%# comments %> are supported)",
                    hint=_SUPPORTED,
                )
        except _UnsupportedErb:
            if not _on_comment_line(text, match):
                raise
            # Kamal would evaluate it, but its output lands inside a YAML comment and cannot
            # change the document (`kamal init` writes such a line): leave the tag as it is.
            value = match.group(0)
        emit(value, line=tag_line)
        # Newlines inside the tag itself advance the source line without producing output.
        source_line += match.group(0).count("\n")
        position = match.end()
        if match.group("trim") and text.startswith("\n", position):
            position += 1
            source_line += 1
    emit(text[position:])
    line_map.append(source_line)
    return "".join(out), line_map


# --------------------------------------------------------------------------- YAML


_INT_TAG = "tag:yaml.org,2002:int"


def _psych_sexagesimal(text: str) -> int | str:
    """A base-60 integer (`1:30`) as Ruby's Psych reads it, so values match Kamal's.

    Psych weights the parts 60^2, 60^1, 60^0 from the left whatever their number, so `3000:30`
    is 10801800 there (PyYAML says 180030); it reads more than three parts as a string.
    """
    parts = text.replace("_", "").split(":")
    if len(parts) > 3:
        return text
    weights = (3600, 60, 1)
    return sum(int(part) * weights[index] for index, part in enumerate(parts))


def _yaml_loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(
    text: str, *, file: Path, line_map: list[int] | None = None, shown: Path | None = None
) -> Document:
    """Parse YAML (anchors, aliases and `<<` merge keys included), recording line numbers.
    Errors name the file as `shown` (default: `file`)."""
    import yaml

    name = file if shown is None else shown

    def source_line(mark: Any) -> int:
        rendered = int(mark.line)
        if line_map and rendered < len(line_map):
            return line_map[rendered]
        return rendered + 1

    loader = _yaml_loader()(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}

        def build(node: Any, path: KeyPath) -> Any:
            lines.setdefault(path, source_line(node.start_mark))
            if isinstance(node, yaml.MappingNode):
                loader.flatten_mapping(node)
                result: dict[Any, Any] = {}
                for key_node, value_node in node.value:
                    key = loader.construct_object(key_node, deep=True)
                    if isinstance(key, (list, dict)):
                        raise ConfigError(
                            f"{name}:{source_line(key_node.start_mark)}: "
                            "a key must be a plain value"
                        )
                    key_str = key if isinstance(key, str) else ruby_str(key)
                    sub = (*path, key_str)
                    lines[sub] = source_line(key_node.start_mark)
                    result[key_str] = build(value_node, sub)
                return result
            if isinstance(node, yaml.SequenceNode):
                return [build(child, (*path, i)) for i, child in enumerate(node.value)]
            if node.tag == _INT_TAG and ":" in node.value:
                return _psych_sexagesimal(node.value)
            return loader.construct_object(node, deep=True)

        data = build(node, ()) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{name}:{source_line(mark)}" if mark is not None else str(name)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    return Document(file=file, data=data, lines=lines)


def load_document(file: Path, *, cwd: Path, env: Mapping[str, str]) -> Document:
    """Read, render and parse one file. A missing file is Kamal's "not found" error."""
    if not file.exists():
        raise ConfigError(f"Configuration file not found in {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read {file}: {exc}") from None
    # Errors name the file as the other config errors do: relative to the project.
    shown = file.relative_to(cwd) if file.is_relative_to(cwd) else file
    rendered, line_map = render_erb(text, file=shown, cwd=cwd, env=env)
    return parse_yaml(rendered, file=file, line_map=line_map, shown=shown)


def render_template(file: Path, *, env: Mapping[str, str], cwd: Path) -> str:
    """Render a local `*.erb` file (an accessory file) with the same ERB subset as deploy.yml.

    Kamal renders these with the accessory's env (secrets included) in `ENV`; pass that as `env`.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read {file}: {exc}") from None
    return render_erb(text, file=file, cwd=cwd, env=env)[0]
