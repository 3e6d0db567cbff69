"""`dockyard backup` on a real server: an SQLite database in a Docker volume, written to while
the backup runs; the copy is consistent and downloaded; `backup restore` puts it back while a
request loop runs through the proxy (no failed request), and again from the local copy once the
server's copy is gone. Tests run in file order and share one project (module fixture)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import (
    PYTHON,
    Project,
    build_proxy_image,
    deploy_yml,
    get,
    prepare_app,
)
from tests.integration.support import out as _out

pytestmark = pytest.mark.integration

CONTAINER = "hello-web-v1"  # the lab image is labelled service=hello
DB = "/data/app.sqlite3"
#: Runs in the app container: inserts rows into the database (WAL mode) for N seconds.
WRITER = """
import os, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
conn.commit()
end = time.monotonic() + float(sys.argv[2])
stop = sys.argv[3] if len(sys.argv) > 3 else None
while time.monotonic() < end and not (stop and os.path.exists(stop)):
    conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 500,))
    conn.commit()
conn.close()
if stop:
    open(stop + ".done", "w").close()
"""
EXTRA = """volumes:
  - hello-data:/data
deploy_timeout: 20
"""
COUNT = """
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM t").fetchone()[0])
"""


@dataclass
class BackupProject(Project):
    """The project, its one server and the local copies' directory."""

    address: str
    copies: Path


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[BackupProject]:
    build_proxy_image()
    server = lab.servers[0].address
    with tempfile.TemporaryDirectory(prefix="dockyard-backup-") as tmp:
        root = Path(tmp)
        app, env, ssh_config = prepare_app(lab, root, hello=("v1",))
        env["XDG_DATA_HOME"] = str(root / "xdg")
        (app / "config" / "deploy.yml").write_text(
            deploy_yml(lab, hosts=[server], ssh_config=ssh_config, extra=EXTRA)
        )
        copies = root / "xdg" / "dockyard" / "backups" / "hello"
        project = BackupProject(app, env, lab, server, copies)
        setup = project.dockyard("setup", "-P", "--version", "v1")
        assert setup.returncode == 0, _out(setup)
        try:
            yield project
        finally:
            project.dockyard("remove", "-y")


def _rows_in_container(lab_ssh: LabSsh, address: str) -> int:
    out = lab_ssh(address, "docker", "exec", CONTAINER, "python3", "-c", COUNT, DB).stdout
    return int(out.strip())


def _backup_ids(project: Project) -> list[str]:
    listed = project.dockyard("backup", "list")
    assert listed.returncode == 0, _out(listed)
    return [line[2:].split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()]


def test_backup_while_the_app_writes_is_consistent_and_downloaded(
    project: BackupProject, lab_ssh: LabSsh
) -> None:
    address = project.address
    lab_ssh(address, "docker", "exec", CONTAINER, "python3", "-c", WRITER, DB, "0.5")
    stop = "/tmp/stop-writer"
    lab_ssh(address, "docker", "exec", CONTAINER, "rm", "-f", stop, stop + ".done")
    # Writes until told to stop (at most 5 minutes): still writing when the backup is taken.
    lab_ssh(address, "docker", "exec", "-d", CONTAINER, "python3", "-c", WRITER, DB, "300", stop)
    time.sleep(1)
    taken = project.dockyard("backup", "--keep", "3")
    assert taken.returncode == 0, _out(taken)
    assert "Traceback" not in taken.stderr
    backup_id = taken.stdout.split()[1]
    local = project.copies / backup_id / "data__app.sqlite3"
    assert f"Copied to {project.copies / backup_id}" in taken.stdout
    copy = sqlite3.connect(local)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = copy.execute("SELECT count(*) FROM t").fetchone()[0]
    copy.close()
    assert rows > 0
    time.sleep(1)
    assert _rows_in_container(lab_ssh, address) > rows  # the copy is a snapshot of a moment
    lab_ssh(address, "docker", "exec", CONTAINER, "touch", stop)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = lab_ssh(address, "docker", "exec", CONTAINER, "ls", stop + ".done", check=False)
        if done.returncode == 0:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the writer did not stop")
    server_copy = f".kamal/backups/hello/{backup_id}"
    assert lab_ssh(address, "stat", "-c", "%a", server_copy).stdout.strip() == "700"
    assert backup_id in _backup_ids(project)
    (project.root / "backup_id").write_text(f"{backup_id} {rows}")


def test_restore_under_load_puts_the_snapshot_back_without_failed_requests(
    project: BackupProject, lab_ssh: LabSsh
) -> None:
    backup_id, rows = (project.root / "backup_id").read_text().split()
    url = f"http://{project.address}/"
    answers: list[tuple[int, str]] = []
    errors: list[str] = []
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "dockyard", "backup", "restore", backup_id, "-y"],
        env={**os.environ, **project.env},
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            answers.append(get(url, timeout=10))
        except OSError as exc:
            errors.append(repr(exc))
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out + err)[-4000:]
    assert errors == []
    assert len(answers) > 10, answers  # requests all along the restore, not one
    assert all(a == (200, "v1") for a in answers), answers[:5]
    assert _rows_in_container(lab_ssh, project.address) == int(rows)
    assert get(url, timeout=10) == (200, "v1")
    safety = [i for i in _backup_ids(project) if i.endswith("-before-restore")]
    assert safety, "the replaced data was backed up first"
    audit = lab_ssh(project.address, "cat", ".kamal/hello-audit.log").stdout
    assert f"Restored backup {backup_id}" in audit


def test_restore_from_the_local_copy_when_the_server_lost_it(
    project: BackupProject, lab_ssh: LabSsh
) -> None:
    backup_id, rows = (project.root / "backup_id").read_text().split()
    lab_ssh(project.address, "docker", "exec", CONTAINER, "python3", "-c", WRITER, DB, "0.5")
    lab_ssh(project.address, "rm", "-rf", f".kamal/backups/hello/{backup_id}")
    assert backup_id not in _backup_ids(project)
    restored = project.dockyard("backup", "restore", backup_id, "-y")
    assert restored.returncode == 0, _out(restored)
    assert _rows_in_container(lab_ssh, project.address) == int(rows)


def test_errors_are_clear(project: BackupProject) -> None:
    unknown = project.dockyard("backup", "restore", "20200101T000000Z", "-y")
    assert unknown.returncode != 0
    assert "neither" in unknown.stderr and "backup list" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bad = project.dockyard("backup", "--path", "relative/db.sqlite3")
    assert bad.returncode != 0 and "absolute file path" in bad.stderr
    missing = project.dockyard("backup", "--path", "/data/none.sqlite3")
    assert missing.returncode != 0
    assert "no such file in the container" in missing.stderr and "Traceback" not in missing.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
