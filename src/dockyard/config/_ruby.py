"""The few Ruby value semantics Kamal's configuration relies on, written for Python values."""

from __future__ import annotations

import re
from typing import Any


def ruby_str(value: object) -> str:
    """`value.to_s` as Ruby prints YAML scalars: `true`, `3`, `0.5`, `""` for nil."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        text = repr(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            if "." not in mantissa:
                mantissa += ".0"
            sign = "-" if exponent.startswith("-") else "+"
            text = f"{mantissa}e{sign}{exponent.lstrip('+-').zfill(2)}"
        return text
    return str(value)


def present(value: object) -> bool:
    """ActiveSupport's `present?`: not nil, not false, not blank text, not an empty collection."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value.strip() != ""
    if isinstance(value, (list, tuple, dict, set)):
        return len(value) > 0
    return True


def deep_merge(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """ActiveSupport's `deep_merge`: hashes merge recursively, everything else in `other` wins."""
    merged = dict(base)
    for key, value in other.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_DUMP_ESCAPES = {
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
_DOLLAR_OUTSIDE_BRACES = re.compile(r"\$(?!\{[^}]*\})")
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")


def ruby_dump(text: str) -> str:
    """Ruby's `String#dump` for ASCII text: a double-quoted literal with escapes."""
    out = ['"']
    for index, char in enumerate(text):
        if char in _DUMP_ESCAPES:
            out.append(_DUMP_ESCAPES[char])
        elif char == "#" and text[index + 1 : index + 2] in ("{", "$", "@"):
            out.append("\\#")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def escape_shell_value(value: object) -> str:
    """Kamal's quoting of a value for the shell: dumped, with backticks and `$` escaped.

    `${...}` is left alone on purpose (the remote shell expands it); non-ASCII runs are kept as is.
    """
    parts = []
    for run in _ASCII_RUNS.findall(ruby_str(value)):
        if run.isascii():
            dumped = ruby_dump(run).replace("`", "\\`")
            parts.append(_DOLLAR_OUTSIDE_BRACES.sub(r"\\$", dumped))
        else:
            parts.append(run)
    return "".join(parts)
