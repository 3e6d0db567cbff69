"""`dockyard config --migrate`: rewrite deploy.yml and its destination files into Kamal 2 form.

The files are edited in place with a round-trip YAML parser (ruamel.yaml), so comments, key
order, quoting and indentation survive; only the Kamal 1 forms that `dockyard.config.legacy`
reads are rewritten (per-role `volumes` become the role's `options/volume`, which Kamal 2.11
accepts). A form that cannot be rewritten (`traefik`, `multiarch: false` without an arch) is
an error naming the file and key, and then no file is written.

ERB is not rendered: a file is migrated as written, so ERB must sit where YAML allows it (in
values and comments), as it does in practice.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import ConfigError

from .legacy import MIGRATE_HINT, KeyPath, upgrade


@dataclass(frozen=True)
class Migration:
    """One file's rewrite: its old and new text (equal when there was nothing to change)."""

    file: Path
    before: str
    after: str
    notes: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self, label: str | None = None) -> str:
        name = label or str(self.file)
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile=f"a/{name}",
                tofile=f"b/{name}",
            )
        )


def config_files(config_file: Path, destination: str | None = None) -> list[Path]:
    """The base file, then its destination files (`deploy.<d>.yml`), all or just `destination`."""
    if destination is not None:
        from .loader import destination_file

        return [config_file, destination_file(config_file, destination)]
    pattern = f"{config_file.stem}.*{config_file.suffix}" if config_file.suffix else "*"
    siblings = sorted(
        p for p in config_file.parent.glob(pattern) if p != config_file and p.is_file()
    )
    return [config_file, *(p for p in siblings if p.name.startswith(f"{config_file.stem}."))]


def guess_indent(text: str) -> tuple[int, int]:
    """The file's mapping indent and block sequence offset (dash column past its parent key)."""
    mapping: int | None = None
    offset: int | None = None
    previous: tuple[int, str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if previous is not None and previous[1].endswith(":") and not previous[1].startswith("-"):
            delta = indent - previous[0]
            if stripped.startswith("- ") or stripped == "-":
                if offset is None and delta >= 0:
                    offset = delta
            elif mapping is None and delta > 0:
                mapping = delta
        previous = (indent, stripped)
    return mapping or 2, offset or 0


def _yaml_for(text: str) -> tuple[Any, Any]:
    from ruamel.yaml import YAML

    mapping, offset = guess_indent(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    return yaml, yaml.load(text)


def migrate_text(text: str, *, file: Path) -> Migration:
    """The Kamal 2 form of one file's text."""
    try:
        yaml, doc = _yaml_for(text)
    except Exception as exc:  # ruamel raises many error types; report them all the same way
        raise ConfigError(f"{file}: cannot migrate, not valid YAML as written: {exc}") from None
    if doc is None:
        return Migration(file, text, text, ())
    if not isinstance(doc, MutableMapping):
        raise ConfigError(f"{file}: should be a hash (a YAML mapping of configuration keys)")
    notes: list[str] = []

    def where(path: KeyPath) -> str:
        return "/".join(str(p) for p in path)

    def note(path: KeyPath, message: str) -> None:
        notes.append(f"{file}: {message.removesuffix(' ' + MIGRATE_HINT)}")

    def refuse(path: KeyPath, problem: str) -> Exception:
        return ConfigError(f"{file}: {where(path)}: {problem}")

    role_volumes = upgrade(doc, note, refuse)
    if not notes and not role_volumes:
        return Migration(file, text, text, ())  # nothing to rewrite: keep the file as it is
    notes += [
        f"{file}: servers/{role}/volumes written as servers/{role}/options/volume "
        "(the form Kamal 2.11 accepts)"
        for role in role_volumes
    ]
    out = io.StringIO()
    yaml.dump(doc, out)
    return Migration(file, text, out.getvalue(), tuple(notes))


def migrate_files(files: list[Path]) -> list[Migration]:
    """Migrate every existing file; nothing is written unless all of them can be migrated."""
    migrations: list[Migration] = []
    for file in files:
        if not file.exists():
            if not migrations:
                raise ConfigError(f"Configuration file not found in {file}")
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Cannot read {file}: {exc}") from None
        migrations.append(migrate_text(text, file=file))
    for migration in migrations:
        if migration.changed:
            migration.file.write_text(migration.after, encoding="utf-8")
    return migrations
