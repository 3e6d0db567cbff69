"""Stale engine pid files are removed before dockerd starts (lab/host.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lab.host import remove_stale_pidfile


def test_pidfile_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    pidfile = tmp_path / "docker.pid"
    pidfile.write_text(f"{proc.pid}\n")
    assert remove_stale_pidfile(pidfile, "dockerd")
    assert not pidfile.exists()


def test_pidfile_of_another_program_is_removed(tmp_path: Path) -> None:
    # The pid was reused by something that is not dockerd (here: this test process).
    pidfile = tmp_path / "docker.pid"
    pidfile.write_text(str(os.getpid()))
    assert remove_stale_pidfile(pidfile, "dockerd")
    assert not pidfile.exists()


def test_pidfile_of_the_running_program_is_kept(tmp_path: Path) -> None:
    pidfile = tmp_path / "docker.pid"
    pidfile.write_text(str(os.getpid()))
    name = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert not remove_stale_pidfile(pidfile, name)
    assert pidfile.exists()


def test_garbage_or_missing_pidfile(tmp_path: Path) -> None:
    pidfile = tmp_path / "docker.pid"
    assert not remove_stale_pidfile(pidfile, "dockerd")  # nothing to remove
    pidfile.write_text("not a pid")
    assert remove_stale_pidfile(pidfile, "dockerd")
    assert not pidfile.exists()
