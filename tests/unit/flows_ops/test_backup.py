"""SQLite backups: the in-container copy script on a real database being written to, the
parsers, and the backup/restore flows' steps (FakePool)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dockyard.commands import backup as backup_commands
from dockyard.commands.backup import Backup, BackupInputError, Database
from dockyard.errors import ConfigError
from dockyard.flows.context import Selection
from dockyard.flows.ops import backup
from dockyard.remote import FakePool, FakeTransport, Result

from .conftest import BASE, NOW, MakeConfig, make_ctx, run

#: conftest's BASE without its accessory, with one web host (10.0.0.2 moves to the workers).
SINGLE = BASE.partition("accessories:")[0].replace(
    "    - 10.0.0.2\n  workers:\n    hosts:\n", "  workers:\n    hosts:\n      - 10.0.0.2\n"
)
DIRECTORY = ".kamal/backups/hello"
BACKUP_ID = "20261128T090000Z"


# -- the script that runs inside the container, on a real database ------------------------------


def _copy(
    tmp_path: Path, dbs: list[Path], *, no_sqlite_cli: bool = False
) -> subprocess.CompletedProcess[str]:
    env = None
    if no_sqlite_cli:
        # A PATH with sh, coreutils and python3 but no sqlite3 CLI: the Python fallback runs.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for tool in ("sh", "head", "sed", "mkdir", "printf"):
            found = shutil.which(tool)
            if found and not (bin_dir / tool).exists():
                (bin_dir / tool).symlink_to(found)
        # The real interpreter (a pyenv shim on PATH would need bash and more).
        (bin_dir / "python3").symlink_to(Path(sys.executable).resolve())
        env = {"PATH": str(bin_dir)}
    return subprocess.run(
        ["sh", "-c", backup_commands._IN_CONTAINER, "sh", str(tmp_path / "out"), *map(str, dbs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _writer(db: Path, stop: threading.Event, counter: list[int]) -> None:
    conn = sqlite3.connect(db, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
    conn.commit()
    while not stop.is_set():
        conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 200,))
        conn.commit()
        counter[0] += 1
    conn.close()


@pytest.mark.parametrize("no_sqlite_cli", [False, True], ids=["sqlite3-cli", "python3"])
def test_copy_is_consistent_while_the_app_writes(tmp_path: Path, no_sqlite_cli: bool) -> None:
    if not no_sqlite_cli and shutil.which("sqlite3") is None:
        pytest.skip("no sqlite3 CLI on this machine")
    db = tmp_path / "data" / "app.sqlite3"
    db.parent.mkdir()
    stop, counter = threading.Event(), [0]
    thread = threading.Thread(target=_writer, args=(db, stop, counter))
    thread.start()
    try:
        while counter[0] < 200:
            stop.wait(0.01)
        result = _copy(tmp_path, [db], no_sqlite_cli=no_sqlite_cli)
        during = counter[0]
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stderr
    name = backup_commands.stored_name(str(db))
    assert result.stdout.strip() == f"db {db} {name}"
    copy = sqlite3.connect(tmp_path / "out" / name)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = copy.execute("SELECT count(*) FROM t").fetchone()[0]
    assert 200 <= rows <= during + 1  # a snapshot taken while the writer kept going
    assert rows < counter[0]


def test_copy_skips_files_that_are_not_sqlite_and_fails_without_any(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("not a database, just text\n")
    result = _copy(tmp_path, [text])
    assert result.returncode == 3
    assert "not an SQLite database" in result.stderr
    assert "no SQLite database among" in result.stderr


def test_copy_of_a_missing_file_names_it(tmp_path: Path) -> None:
    result = _copy(tmp_path, [tmp_path / "gone.sqlite3"])
    assert result.returncode == 3
    assert "gone.sqlite3: no such file in the container" in result.stderr


# -- inputs and parsers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["relative.db", "/a b.db", "/x/../etc/passwd", "/data/$(rm).db", "/dir/", ""]
)
def test_unsafe_database_paths_are_refused(path: str) -> None:
    with pytest.raises(BackupInputError, match="absolute file path"):
        backup_commands.check_path(path)


def test_ids_sort_by_time_and_bad_ids_are_refused() -> None:
    assert backup_commands.new_id(NOW) == "20261128T090000Z"
    assert backup_commands.new_id(NOW, "before-restore") == "20261128T090000Z-before-restore"
    assert backup_commands.check_id("20261128T090000Z-before-restore")
    with pytest.raises(BackupInputError, match="backup list"):
        backup_commands.check_id("../../etc")


def test_take_output_and_list_output_parse_back() -> None:
    take_out = (
        f"id {BACKUP_ID}\ncreated 2026-11-28T09:00:00+00:00\ncontainer hello-web-v1\n"
        "image registry.test:5000/hello:v1\ndb /data/app.sqlite3 data__app.sqlite3\n"
        "sha256 abc123  data__app.sqlite3\nsize data__app.sqlite3 8192\npruned 20261120T000000Z\n"
    )
    parsed = backup_commands.parse_take(take_out)
    assert parsed == Backup(
        id=BACKUP_ID,
        created="2026-11-28T09:00:00+00:00",
        container="hello-web-v1",
        image="registry.test:5000/hello:v1",
        databases=(Database("/data/app.sqlite3", "data__app.sqlite3", "abc123", 8192),),
        pruned=("20261120T000000Z",),
    )
    listed = backup_commands.parse_list(
        take_out + "--\n" + take_out.replace(BACKUP_ID, "2") + "--\n"
    )
    assert [b.id for b in listed] == [BACKUP_ID, "2"]
    assert listed[0].size == 8192


def test_scripts_quote_what_they_are_given() -> None:
    script = backup_commands.take_script(
        container="hello-web-v1", directory=DIRECTORY, backup_id=BACKUP_ID, created="now",
        paths=("/data/app.sqlite3",), keep=3,
    )  # fmt: skip
    assert "umask 077" in script
    assert "paths=/data/app.sqlite3" in script
    assert "head -n -3" in script
    assert "docker inspect -f '{{range .Mounts}}" not in script  # no discovery with --path
    discovering = backup_commands.take_script(
        container="c", directory=DIRECTORY, backup_id=BACKUP_ID, created="now"
    )
    assert "{{range .Mounts}}" in discovering
    assert "head -n -" not in discovering  # keep=0: nothing pruned
    restore = backup_commands.restore_script(
        container="hello-web-v1",
        directory=DIRECTORY,
        backup=Backup(BACKUP_ID, databases=(Database("/data/app.sqlite3", "data__app.sqlite3"),)),
    )
    assert "sha256sum -c" in restore
    assert "rm -f /data/app.sqlite3-wal /data/app.sqlite3-shm" in restore
    assert 'docker start "$c"' in restore


def test_take_script_runs_under_sh_syntax_check() -> None:
    for script in (
        backup_commands.take_script(
            container="c", directory=DIRECTORY, backup_id=BACKUP_ID, created="now", keep=2
        ),
        backup_commands.list_script(DIRECTORY),
        backup_commands.restore_script(
            container="c",
            directory=DIRECTORY,
            backup=Backup(BACKUP_ID, databases=(Database("/d/a.db", "d__a.db"),)),
        ),
    ):
        check = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


# -- flows ------------------------------------------------------------------------------------

COPY = b"SQLite format 3\x00 pretend pages"
TAKE_OUT = (
    f"id {BACKUP_ID}\ncreated 2026-11-28T09:00:00+00:00\ncontainer hello-web-v1\nimage hello:v1\n"
    "db /data/app.sqlite3 data__app.sqlite3\n"
    f"sha256 {hashlib.sha256(COPY).hexdigest()}  data__app.sqlite3\nsize data__app.sqlite3 33\n"
)


def _is_backup_script(argv: list[str]) -> bool:
    """The backup/list/restore scripts (not the audit line, also an `sh -c`)."""
    return argv[:2] == ["sh", "-c"] and ("umask 077" in argv[2] or "MANIFEST" in argv[2])


def pool_commands(ctx: object, host: str) -> list[list[str]]:
    pool = ctx.pool  # type: ignore[attr-defined]
    assert isinstance(pool, FakePool)
    return pool.transports[host].commands


def _web_host(fake: FakeTransport) -> None:
    fake.on(["docker", "image", "ls"], Result(0, "img1\n", ""))
    fake.on(["docker", "ps", "--latest", "--quiet"], Result(0, "abc123\n", ""))
    fake.on(["docker", "ps", "--latest", "--format"], Result(0, "hello-web-v1\n", ""))
    fake.on(["docker", "container", "ls"], Result(0, "abc123def4567890\n", ""))
    fake.on(["sh", "-c"], Result(0, TAKE_OUT, ""))
    remote = f"{DIRECTORY}/{BACKUP_ID}"
    fake.files.update(
        {
            f"{remote}/MANIFEST": TAKE_OUT.encode(),
            f"{remote}/SHA256SUMS": b"",
            f"{remote}/data__app.sqlite3": COPY,
        }
    )


def test_backup_copies_on_the_server_then_downloads_and_checks(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    pool = FakePool(setup=_web_host)
    ctx, _ = make_ctx(make_config(SINGLE), pool)
    taken = run(backup.take(ctx, keep=5, local_root=tmp_path / "copies"))
    assert taken.host == "10.0.0.1"
    assert taken.local == tmp_path / "copies" / BACKUP_ID
    assert (taken.local / "data__app.sqlite3").read_bytes() == COPY
    scripts = [c[2] for c in pool.transports["10.0.0.1"].commands if _is_backup_script(c)]
    assert len(scripts) == 1  # one round trip copies, checksums and prunes
    assert "c=hello-web-v1" in scripts[0] and "head -n -5" in scripts[0]
    assert set(pool.transports) == {"10.0.0.1"}  # the workers' hosts are not touched


def test_a_corrupted_download_is_refused(make_config: MakeConfig, tmp_path: Path) -> None:
    def setup(fake: FakeTransport) -> None:
        _web_host(fake)
        fake.files[f"{DIRECTORY}/{BACKUP_ID}/data__app.sqlite3"] = COPY + b"flipped"

    ctx, _ = make_ctx(make_config(SINGLE), FakePool(setup=setup))
    with pytest.raises(backup.BackupError, match="does not match its checksum"):
        run(backup.take(ctx, local_root=tmp_path))


def test_server_side_failure_names_the_host_and_the_cause(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        _web_host(fake)
        fake.on(
            ["sh", "-c"],
            Result(4, "", "dockyard-backup: the app image has neither the sqlite3 CLI nor python3"),
        )

    ctx, _ = make_ctx(make_config(SINGLE), FakePool(setup=setup))
    with pytest.raises(backup.BackupError) as info:
        run(backup.take(ctx, download_copy=False))
    assert "backup on 10.0.0.1: copying the databases of hello-web-v1 failed" in str(info.value)
    assert "neither the sqlite3 CLI nor python3" in str(info.value)


def test_a_role_on_several_hosts_needs_one_picked(make_config: MakeConfig) -> None:
    ctx, _ = make_ctx(make_config(SINGLE), FakePool(), Selection.parse(None, "workers"))
    with pytest.raises(ConfigError, match="pick it with -h HOST"):
        run(backup.take(ctx))
    picked, _ = make_ctx(
        make_config(SINGLE), FakePool(setup=_web_host), Selection.parse("10.0.0.3", "workers")
    )
    taken = run(backup.take(picked, download_copy=False))
    assert taken.host == "10.0.0.3"
    assert any(_is_backup_script(c) for c in pool_commands(picked, "10.0.0.3"))


def test_restore_holds_requests_swaps_waits_for_health_and_resumes(
    make_config: MakeConfig,
) -> None:
    def setup(fake: FakeTransport) -> None:
        _web_host(fake)
        safety = TAKE_OUT.replace(BACKUP_ID, BACKUP_ID + "-before-restore")
        # list, the safety backup, the swap
        fake.on(
            ["sh", "-c"], Result(0, TAKE_OUT + "--\n", ""), Result(0, safety, ""), Result(0, "", "")
        )

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(SINGLE), pool)
    host, restored, safety = run(backup.restore(ctx, BACKUP_ID))
    assert (host, restored.id) == ("10.0.0.1", BACKUP_ID)
    assert safety.id == BACKUP_ID + "-before-restore"
    steps = []
    for argv in pool.transports["10.0.0.1"].commands:
        if _is_backup_script(argv):
            text = argv[2]
            steps.append(
                "list" if "sort -r" in text else "restore" if "sha256sum -c" in text else "take"
            )
        elif argv[:4] == ["docker", "exec", "kamal-proxy", "kamal-proxy"]:
            steps.append(f"proxy {argv[4]}")
    assert steps == ["list", "take", "proxy pause", "restore", "proxy deploy", "proxy resume"]


def test_a_failed_swap_still_resumes_the_proxy(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        _web_host(fake)
        fake.on(
            ["sh", "-c"],
            Result(0, TAKE_OUT + "--\n", ""),
            Result(0, TAKE_OUT, ""),
            Result(5, "", "dockyard-backup: the files of x do not match their checksums"),
        )

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(SINGLE), pool)
    with pytest.raises(backup.BackupError, match="do not match their checksums"):
        run(backup.restore(ctx, BACKUP_ID))
    proxy = [c[4] for c in pool.transports["10.0.0.1"].commands if c[:2] == ["docker", "exec"]]
    assert proxy == ["pause", "resume"]


def test_restore_of_an_unknown_backup_says_where_it_looked(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    def setup(fake: FakeTransport) -> None:
        _web_host(fake)
        fake.on(["sh", "-c"], Result(0, "", ""))

    ctx, _ = make_ctx(make_config(SINGLE), FakePool(setup=setup))
    with pytest.raises(ConfigError, match=r"neither 10\.0\.0\.1 nor this machine"):
        run(backup.restore(ctx, "20260101T000000Z", local_root=tmp_path))
