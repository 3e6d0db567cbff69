"""Values the remote layer hands back: command results and streamed output lines."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from dockyard.errors import RemoteCommandError
from dockyard.remote.argv import ArgvLike, display_command

__all__ = [
    "CommandTimeoutError",
    "OutputCallback",
    "OutputLine",
    "Result",
    "Stdin",
    "Stream",
]

Stream: TypeAlias = Literal["stdout", "stderr"]

#: How many trailing stderr lines an error message quotes.
STDERR_TAIL_LINES = 10


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line of a command's output (without its newline), as it arrives."""

    host: str
    stream: Stream
    text: str


OutputCallback: TypeAlias = Callable[[OutputLine], None]

#: Standard input for a command: all at once, or streamed in chunks (e.g. ``docker save``).
Stdin: TypeAlias = "bytes | AsyncIterable[bytes]"


class CommandTimeoutError(RemoteCommandError):
    """A command ran past its deadline and was stopped."""


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join(kept)


@dataclass(frozen=True, slots=True)
class Result:
    """How a command ended. A non-zero exit is a value, not an exception.

    ``exit_status`` is None when the command ended without reporting one (connection lost,
    killed by a signal the server could not report as a status); that counts as failure.
    asyncssh reports death by signal as -1.
    """

    exit_status: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def describe_status(self) -> str:
        if self.exit_status is None:
            return "no exit status (connection lost or killed)"
        if self.exit_status == -1:
            return "killed by a signal"
        return f"exit {self.exit_status}"

    def check(self, host: str, argv: ArgvLike) -> Result:
        """Return self when the command succeeded, else raise RemoteCommandError.

        The message shows the masked command and the tail of stderr (or stdout when stderr is
        empty), never the raw argv.
        """
        if self.ok:
            return self
        message = f"command failed on {host} ({self.describe_status()}): {display_command(argv)}"
        tail = _tail(self.stderr) or _tail(self.stdout)
        if tail:
            message += "\n" + "\n".join(f"  | {line}" for line in tail.splitlines())
        raise RemoteCommandError(message)
