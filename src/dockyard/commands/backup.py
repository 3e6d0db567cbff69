"""SQLite backups: the shell scripts run on a server, and the parsers of what they print.

Pure functions, no I/O. A backup is a directory on the server,
``.kamal/backups/<service>[-<destination>]/<ID>/``, holding one consistent copy per SQLite
database file of the app container (taken online with SQLite's backup API: the ``sqlite3`` CLI
in the container, else Python's ``sqlite3`` module), a ``SHA256SUMS`` file and a ``MANIFEST``.
It lives outside ``.kamal/apps`` so that ``dockyard remove`` (and Kamal's) leaves backups alone.

MANIFEST lines (``key value...``): ``id ID``, ``created ISO-8601``, ``container NAME``,
``image IMAGE``, ``db PATH STORED_NAME`` (one per database).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime

from dockyard.commands.argv import Argv, argv
from dockyard.commands.paths import RUN_DIRECTORY, service_and_destination

BACKUPS_DIRECTORY = posixpath.join(RUN_DIRECTORY, "backups")
#: Files that look like SQLite databases when no --path is given.
DATABASE_PATTERNS = ("*.sqlite3", "*.sqlite", "*.db")
_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z(-[a-z0-9-]+)?")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/@+-]+")


class BackupInputError(ValueError):
    """A database path or backup ID that cannot be used (the message says why)."""


def backups_directory(service: str, destination: str | None) -> str:
    return posixpath.join(BACKUPS_DIRECTORY, service_and_destination(service, destination))


def new_id(now: datetime, suffix: str | None = None) -> str:
    """``20261128T093000Z`` (UTC), sortable; ``suffix`` marks e.g. a pre-restore copy."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{suffix}" if suffix else stamp


def check_id(backup_id: str) -> str:
    if not _ID.fullmatch(backup_id):
        raise BackupInputError(
            f"{backup_id!r} is not a backup ID (like 20261128T093000Z): "
            "`dockyard backup list` shows them"
        )
    return backup_id


def check_path(path: str) -> str:
    """A database path inside the container: absolute, no spaces or shell characters."""
    if not _SAFE_PATH.fullmatch(path) or "/../" in f"{path}/" or path.endswith("/"):
        raise BackupInputError(
            f"--path {path!r}: expected an absolute file path inside the container "
            "(letters, digits and . _ - / @ + only), e.g. /rails/storage/production.sqlite3"
        )
    return path


def stored_name(path: str) -> str:
    """The file name of a database's copy: its path with ``/`` turned into ``__``."""
    return path.strip("/").replace("/", "__")


# -- taking a backup ---------------------------------------------------------------------------

#: Runs inside the app container: `sh -c SCRIPT sh OUT DB...`. Copies each database with the
#: backup API, checks the copy's integrity, prints `db PATH NAME` per copy.
_IN_CONTAINER = r"""set -eu
out=$1; shift
mkdir -p "$out"
found=0
for db in "$@"; do
  [ -f "$db" ] || { echo "dockyard-backup: $db: no such file in the container" >&2; exit 3; }
  if [ "$(head -c 15 "$db")" != "SQLite format 3" ]; then
    echo "dockyard-backup: skipping $db: not an SQLite database" >&2
    continue
  fi
  name=$(printf '%s' "$db" | sed 's#^/##; s#/#__#g')
  if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 "$db" ".timeout 30000" ".backup '$out/$name'"
    check=$(sqlite3 "$out/$name" "PRAGMA integrity_check;")
  elif command -v python3 >/dev/null 2>&1; then
    check=$(python3 -c '
import sqlite3, sys
src = sqlite3.connect(sys.argv[1], timeout=30)
dst = sqlite3.connect(sys.argv[2])
src.backup(dst)
print(dst.execute("PRAGMA integrity_check").fetchone()[0])
dst.close()
src.close()
' "$db" "$out/$name")
  else
    echo "dockyard-backup: the app image has neither the sqlite3 CLI nor python3;" \
      "install sqlite3 in the image (e.g. apt-get install sqlite3)" >&2
    exit 4
  fi
  if [ "$check" != ok ]; then
    echo "dockyard-backup: integrity check of the copy of $db: $check" >&2
    exit 5
  fi
  found=1
  echo "db $db $name"
done
[ "$found" = 1 ] || { echo "dockyard-backup: no SQLite database among: $*" >&2; exit 3; }
"""

#: Runs inside the app container when no path is given: the candidate files under its mounts.
_FIND = (
    'for m in "$@"; do find "$m" -maxdepth 4 -type f \\( '
    + " -o ".join(f"-name '{p}'" for p in DATABASE_PATTERNS)
    + " \\) 2>/dev/null; done; true"
)


def take_script(
    *,
    container: str,
    directory: str,
    backup_id: str,
    created: str,
    paths: tuple[str, ...] = (),
    keep: int = 0,
) -> str:
    """The host-side script of one backup, one round trip: find the databases (unless
    ``paths``), copy them in the container, ``docker cp`` the copies out, checksum, write the
    manifest, keep the newest ``keep`` backups (0: keep all). Prints the manifest and the
    ``sha256  name`` lines, then ``size NAME BYTES`` per file."""
    for path in paths:
        check_path(path)
    check_id(backup_id)
    q = shlex.quote
    tmp = f"/tmp/dockyard-backup-{backup_id}"
    target = posixpath.join(directory, backup_id)
    lines = [
        "set -eu",
        "umask 077",  # the copies hold the app's data
        f"c={q(container)}",
        f"dir={q(target)}",
        f"tmp={q(tmp)}",
    ]
    if paths:
        lines.append(f"paths={q(' '.join(paths))}")
    else:
        lines += [
            "mounts=$(docker inspect -f '{{range .Mounts}}{{.Destination}} {{end}}' \"$c\")",
            '[ -n "$mounts" ] || { echo "dockyard-backup: $c has no volumes, so its data is lost '
            'at every deploy; name the database with --path" >&2; exit 3; }',
            f'paths=$(docker exec "$c" sh -c {q(_FIND)} sh $mounts | grep -v -- "-journal$" '
            "| sort | tr '\\n' ' ')",
            '[ -n "$paths" ] || { echo "dockyard-backup: no SQLite database (*.sqlite3, *.sqlite, '
            '*.db) under the volumes of $c ($mounts); name it with --path" >&2; exit 3; }',
        ]
    lines += [
        f'dbs=$(docker exec "$c" sh -c {q(_IN_CONTAINER)} sh "$tmp" $paths)',
        'mkdir -p "$dir"',
        'docker cp "$c:$tmp/." "$dir/" >/dev/null',
        'docker exec "$c" rm -rf "$tmp"',
        'image=$(docker inspect -f "{{.Config.Image}}" "$c")',
        "{",
        f"  echo id {q(backup_id)}",
        f"  echo created {q(created)}",
        '  echo container "$c"',
        '  echo image "$image"',
        '  printf "%s\\n" "$dbs"',
        '} > "$dir/MANIFEST"',
        '(cd "$dir" && sha256sum $(printf "%s\\n" "$dbs" | cut -d" " -f3) > SHA256SUMS)',
        'cat "$dir/MANIFEST"',
        'sed "s/^/sha256 /" "$dir/SHA256SUMS"',
        'for f in $(printf "%s\\n" "$dbs" | cut -d" " -f3); do '
        'echo size "$f" "$(wc -c < "$dir/$f")"; done',
    ]
    if keep > 0:
        parent = q(directory)
        lines.append(
            f"ls -1 {parent} | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z' | sort | head -n -{keep} "
            f'| while read -r old; do rm -rf {parent}/"$old"; echo pruned "$old"; done'
        )
    return "\n".join(lines) + "\n"


def take(
    *,
    container: str,
    directory: str,
    backup_id: str,
    created: str,
    paths: tuple[str, ...] = (),
    keep: int = 0,
) -> Argv:
    script = take_script(
        container=container,
        directory=directory,
        backup_id=backup_id,
        created=created,
        paths=paths,
        keep=keep,
    )
    return argv("sh", "-c", script)


# -- what the scripts print ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Database:
    path: str  # inside the container
    name: str  # file name of the copy
    sha256: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True)
class Backup:
    id: str
    created: str = ""
    container: str = ""
    image: str = ""
    databases: tuple[Database, ...] = ()
    pruned: tuple[str, ...] = field(default=())

    @property
    def size(self) -> int:
        return sum(db.size for db in self.databases)


def parse_take(stdout: str) -> Backup:
    """The output of :func:`take_script` (or ``list``'s per-backup block)."""
    info: dict[str, str] = {}
    dbs: list[tuple[str, str]] = []
    sums: dict[str, str] = {}
    sizes: dict[str, int] = {}
    pruned: list[str] = []
    for line in stdout.splitlines():
        key, _, rest = line.strip().partition(" ")
        if key == "db":
            path, _, name = rest.partition(" ")
            dbs.append((path, name.strip()))
        elif key == "sha256":
            digest, _, name = rest.partition(" ")
            sums[name.strip().lstrip("*")] = digest
        elif key == "size":
            name, _, count = rest.partition(" ")
            sizes[name] = int(count) if count.strip().isdigit() else 0
        elif key == "pruned":
            pruned.append(rest.strip())
        elif key in ("id", "created", "container", "image"):
            info[key] = rest.strip()
    return Backup(
        id=info.get("id", ""),
        created=info.get("created", ""),
        container=info.get("container", ""),
        image=info.get("image", ""),
        databases=tuple(
            Database(path, name, sums.get(name, ""), sizes.get(name, 0)) for path, name in dbs
        ),
        pruned=tuple(pruned),
    )


def list_script(directory: str) -> str:
    """Every backup on the host, newest first, as MANIFEST blocks separated by `--`."""
    d = shlex.quote(directory)
    return (
        f"[ -d {d} ] || exit 0\n"
        f"for b in $(ls -1 {d} | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z' | sort -r); do\n"
        f'  [ -f {d}/"$b"/MANIFEST ] || continue\n'
        f'  cat {d}/"$b"/MANIFEST\n'
        f'  [ -f {d}/"$b"/SHA256SUMS ] && sed "s/^/sha256 /" {d}/"$b"/SHA256SUMS\n'
        f'  for f in $(grep "^db " {d}/"$b"/MANIFEST | cut -d" " -f3); do '
        f'echo size "$f" "$(wc -c < {d}/"$b"/"$f")"; done\n'
        "  echo --\n"
        "done\n"
    )


def list_backups(directory: str) -> Argv:
    return argv("sh", "-c", list_script(directory))


def parse_list(stdout: str) -> list[Backup]:
    blocks: list[str] = []
    current: list[str] = []
    for line in stdout.splitlines():
        if line.strip() == "--":
            blocks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if any(line.strip() for line in current):
        blocks.append("\n".join(current))
    return [b for b in (parse_take(block) for block in blocks) if b.id]


# -- restoring --------------------------------------------------------------------------------


def restore_script(
    *, container: str, directory: str, backup: Backup, stop_timeout: int = 30
) -> str:
    """Stop the container, put each database copy back in its place through a helper
    container of the same image sharing its volumes (removing stale -wal/-shm/-journal files,
    which would otherwise be replayed onto the restored file), start the container again.
    If the copy fails, the container is started anyway and the script exits non-zero."""
    check_id(backup.id)
    q = shlex.quote
    source = posixpath.join(directory, backup.id)
    copies = []
    for db in backup.databases:
        path = q(check_path(db.path))
        tmp = q(db.path + ".dockyard-restore")
        # Runs as root in the helper; the restored file gets the owner and mode of the file it
        # replaces (or of its directory's owner, 0644, when the file is gone).
        copies.append(
            f"ref={path}; [ -e {path} ] || ref=$(dirname {path}); "
            f'own=$(stat -c %u:%g "$ref"); mode=$(stat -c %a {path} 2>/dev/null || echo 644); '
            f'cp /dockyard-restore/{q(db.name)} {tmp} && chown "$own" {tmp} && '
            f'chmod "$mode" {tmp} && mv -f {tmp} {path} && '
            f"rm -f {path}-wal {path}-shm {path}-journal"
        )
    inner = " && ".join(copies) if copies else "true"
    lines = [
        "set -u",
        f"c={q(container)}",
        f"src={q(source)}",
        '[ -f "$src/MANIFEST" ] || { echo "dockyard-backup: no backup at $src" >&2; exit 3; }',
        '(cd "$src" && sha256sum -c --quiet SHA256SUMS) || '
        '{ echo "dockyard-backup: the files of $src do not match their checksums" >&2; exit 5; }',
        'image=$(docker inspect -f "{{.Image}}" "$c") || exit 3',
        f'docker stop -t {int(stop_timeout)} "$c" >/dev/null || exit 6',
        'docker run --rm --volumes-from "$c" -v "$(cd "$src" && pwd)":/dockyard-restore:ro '
        '--user 0:0 --entrypoint sh "$image" -c '
        f"{q(inner)}",
        "status=$?",
        'docker start "$c" >/dev/null || status=7',
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


def restore(*, container: str, directory: str, backup: Backup, stop_timeout: int = 30) -> Argv:
    script = restore_script(
        container=container, directory=directory, backup=backup, stop_timeout=stop_timeout
    )
    return argv("sh", "-c", script)
