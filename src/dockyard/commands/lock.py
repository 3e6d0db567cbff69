"""The deploy lock: a directory ``.kamal/lock-<service>[-<dest>]`` holding a ``details`` file.

Kamal runs ``mkdir <dir> && echo "<base64>" > <dir>/details``; the plain ``mkdir`` is the
mutex. We run the same two programs separately and feed the details through ``tee``'s stdin
instead of an ``echo`` with a redirect. Status is ``stat`` then ``cat`` with the base64 decoded
in Python (:func:`parse_details`) instead of piping into ``base64 -d``.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from datetime import datetime

from dockyard.commands.argv import Argv, argv
from dockyard.commands.paths import RUN_DIRECTORY, lock_directory

AUTOMATIC_MESSAGE = "Automatic deploy lock"


def details_file(service: str, destination: str | None) -> str:
    return posixpath.join(lock_directory(service, destination), "details")


def iso8601(moment: datetime) -> str:
    """UTC time as Ruby's ``Time#iso8601`` writes it: ``2026-11-28T09:00:00Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_details(message: str, version: str, *, locked_by: str, at: datetime) -> str:
    """The three-line details text (before base64)."""
    return f"Locked by: {locked_by} at {iso8601(at)}\nVersion: {version}\nMessage: {message}"


def encode_details(details: str) -> str:
    """Base64 as Ruby's ``Base64.encode64`` writes it: 60-character lines, each ending in \\n."""
    encoded = base64.b64encode(details.encode()).decode()
    return "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))


def parse_details(stdout: str) -> str:
    """Decode the ``details`` file content (what ``base64 -d`` printed for Kamal)."""
    try:
        return base64.b64decode("".join(stdout.split()), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return stdout.strip()


def ensure_locks_directory() -> Argv:
    return argv("mkdir", "-p", RUN_DIRECTORY)


def acquire(service: str, destination: str | None, details: str) -> tuple[Argv, Argv]:
    """``mkdir <dir>`` (fails when held), then write the base64 details (Kamal's echo adds \\n)."""
    return (
        argv("mkdir", lock_directory(service, destination)),
        Argv(("tee", details_file(service, destination)), stdin=encode_details(details) + "\n"),
    )


def release(service: str, destination: str | None) -> tuple[Argv, Argv]:
    return (
        argv("rm", details_file(service, destination)),
        argv("rm", "-r", lock_directory(service, destination)),
    )


def status(service: str, destination: str | None) -> tuple[Argv, Argv]:
    """``stat <dir>`` (fails when there is no lock), then ``cat <dir>/details``."""
    return (
        argv("stat", lock_directory(service, destination)),
        argv("cat", details_file(service, destination)),
    )


def is_contention(stderr: str) -> bool:
    """Whether a failed acquire means "someone else holds the lock" (Kamal's test)."""
    return "cannot create directory" in stderr
