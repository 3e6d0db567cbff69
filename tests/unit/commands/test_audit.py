"""Golden tests: audit lines and log file (Kamal ``test/commands/auditor_test.rb``)."""

from __future__ import annotations

from datetime import UTC, datetime

from dockyard.commands import audit

AT = datetime(2026, 11, 28, 9, 30, 5, tzinfo=UTC)


def test_record_is_mkdir_then_append_through_stdin_instead_of_echo_redirect() -> None:
    line = audit.audit_line("app removed container", recorded_at=AT, performer="ada@example.com")
    assert line == "[2026-11-28T09:30:05Z] [ada@example.com] app removed container"
    mkdir, append = audit.record("app", None, line)
    assert mkdir == ("mkdir", "-p", ".kamal")
    assert append == ("tee", "-a", ".kamal/app-audit.log")
    assert append.stdin == line + "\n"


def test_record_with_destination() -> None:
    line = audit.audit_line(
        "app removed container", recorded_at=AT, performer="ada", destination="staging"
    )
    assert line == "[2026-11-28T09:30:05Z] [ada] [staging] app removed container"
    assert audit.record("app", "staging", line)[1] == ("tee", "-a", ".kamal/app-staging-audit.log")


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
