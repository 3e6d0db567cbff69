"""Golden tests: the deploy lock (Kamal ``test/commands/lock_test.rb`` and §2.2 of kamal.md)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from dockyard.commands import lock

AT = datetime(2026, 11, 28, 9, 30, 5, tzinfo=UTC)


def test_lock_directory_with_and_without_destination() -> None:
    assert lock.status("app", "production")[0] == ("stat", ".kamal/lock-app-production")
    assert lock.status("app", None)[0] == ("stat", ".kamal/lock-app")


def test_status_is_stat_then_cat_decoded_in_python_instead_of_base64_pipe() -> None:
    stat, cat = lock.status("app", "production")
    assert stat == ("stat", ".kamal/lock-app-production")
    assert cat == ("cat", ".kamal/lock-app-production/details")


def test_acquire_is_mkdir_then_details_written_through_stdin_instead_of_echo_redirect() -> None:
    details = lock.lock_details("Hello", "123", locked_by="Ada", at=AT)
    mkdir, write = lock.acquire("app", "production", details)
    assert mkdir == ("mkdir", ".kamal/lock-app-production")
    assert write == ("tee", ".kamal/lock-app-production/details")
    # What Kamal's `echo "<Base64.encode64(details)>"` leaves in the file.
    assert write.stdin == lock.encode_details(details) + "\n"
    assert write.stdin_bytes() is not None


def test_details_text() -> None:
    assert lock.lock_details("Automatic deploy lock", "abc123", locked_by="Ada", at=AT) == (
        "Locked by: Ada at 2026-11-28T09:30:05Z\nVersion: abc123\nMessage: Automatic deploy lock"
    )


def test_encode_details_wraps_at_60_like_ruby_encode64() -> None:
    text = "Locked by: Someone With A Long Name at 2026-11-28T09:30:05Z\nVersion: 1\nMessage: m"
    encoded = lock.encode_details(text)
    lines = encoded.split("\n")
    assert lines[-1] == ""
    assert all(len(line) == 60 for line in lines[:-2])
    assert 0 < len(lines[-2]) <= 60
    assert base64.b64decode("".join(lines)).decode() == text


def test_parse_details_decodes_what_acquire_wrote() -> None:
    details = lock.lock_details("Hello", "123", locked_by="Ada", at=AT)
    assert lock.parse_details(lock.encode_details(details) + "\n") == details


def test_parse_details_falls_back_to_text_when_not_base64() -> None:
    assert lock.parse_details("not base64!\n") == "not base64!"


def test_release_removes_details_then_directory() -> None:
    rm_file, rm_dir = lock.release("app", "production")
    assert rm_file == ("rm", ".kamal/lock-app-production/details")
    assert rm_dir == ("rm", "-r", ".kamal/lock-app-production")


def test_ensure_locks_directory_and_contention() -> None:
    assert lock.ensure_locks_directory() == ("mkdir", "-p", ".kamal")
    assert lock.is_contention("mkdir: cannot create directory '.kamal/lock-app': File exists")
    assert not lock.is_contention("mkdir: permission denied")
