"""Golden tests: audit lines and log file (Kamal ``test/commands/auditor_test.rb``)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from dockyard.commands import audit
from dockyard.flows.context import audit_command

AT = datetime(2026, 11, 28, 9, 30, 5, tzinfo=UTC)


def record(tmp_path: Path, service: str, destination: str | None, line: str) -> dict[str, str]:
    """Run the flows' audit command in ``tmp_path`` (the SSH user's home); the files it wrote."""
    subprocess.run(list(audit_command(service, destination, line).raw()), cwd=tmp_path, check=True)
    return {
        path.relative_to(tmp_path).as_posix(): path.read_text()
        for path in tmp_path.rglob("*")
        if path.is_file()
    }


def test_record_appends_the_line_like_kamals_mkdir_and_echo(tmp_path: Path) -> None:
    # Kamal: mkdir -p .kamal && echo "<line>" >> .kamal/app-audit.log
    line = audit.audit_line("app removed container", recorded_at=AT, performer="ada@example.com")
    assert line == "[2026-11-28T09:30:05Z] [ada@example.com] app removed container"
    assert record(tmp_path, "app", None, line) == {".kamal/app-audit.log": line + "\n"}
    assert record(tmp_path, "app", None, line) == {".kamal/app-audit.log": (line + "\n") * 2}


def test_record_with_destination(tmp_path: Path) -> None:
    line = audit.audit_line(
        "app removed container", recorded_at=AT, performer="ada", destination="staging"
    )
    assert line == "[2026-11-28T09:30:05Z] [ada] [staging] app removed container"
    assert record(tmp_path, "app", "staging", line) == {".kamal/app-staging-audit.log": line + "\n"}


def test_record_with_role_and_call_details_in_order() -> None:
    line = audit.audit_line(
        "Booted app version 123",
        recorded_at=AT,
        performer="ada",
        details={"role": "web", "detail": "value", "version": "123", "service": "app"},
    )
    assert line == "[2026-11-28T09:30:05Z] [ada] [web] [value] Booted app version 123"


def test_reveal_tails_fifty_lines() -> None:
    assert audit.reveal("app", None) == ("tail", "-n", "50", ".kamal/app-audit.log")
    assert audit.reveal("app", "production") == (
        "tail",
        "-n",
        "50",
        ".kamal/app-production-audit.log",
    )
