"""Several independent commands in one round trip.

The commands are quoted once each (:func:`command_line`) into a POSIX shell script that is
fed to ``bash -s`` (or ``sh -s``) on standard input, so the command lines, which may hold
secrets, do not show up in the remote process list. After each command the script prints a
marker with a random nonce, the command's index and its exit status on stdout, and a marker on
stderr; the outputs are split back into one :class:`Result` per command. Each command reads
its stdin from ``/dev/null``, or, when it carries stdin of its own, from a quoted
here-document inside the script.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dockyard.remote.argv import ArgvLike, command_line, command_stdin
from dockyard.remote.fake import FakeTransport
from dockyard.remote.result import OutputCallback, OutputLine, Result, Stream
from dockyard.remote.transport import Transport

__all__ = [
    "NOT_RUN",
    "BatchOutputFilter",
    "build_batch_script",
    "new_nonce",
    "run_batch",
    "split_batch_output",
]

#: stderr of a command skipped because an earlier one failed (with ``stop_on_error``).
NOT_RUN = "not run: an earlier command in this batch failed\n"
#: stderr of a command that started but reported no status (the batch was cut short).
NO_STATUS = "the batch ended before this command reported its status\n"


def new_nonce() -> str:
    return f"DOCKYARD-{os.urandom(8).hex()}"


def build_batch_script(
    commands: Sequence[ArgvLike], nonce: str, *, stop_on_error: bool = False
) -> str:
    """The ``sh`` script that runs ``commands`` in order and marks where each one ended."""
    lines = []
    for index, command in enumerate(commands):
        data = command_stdin(command)
        # grouped, so that the redirection feeds the whole line (a pipeline's first stage too)
        if data is None:
            lines.append(f"{{ {command_line(command)}\n}} </dev/null")
        else:
            lines.append(_heredoc_command(command_line(command), data, f"{nonce}_IN{index}"))
        lines.append("__dockyard_status=$?")
        lines.append(f"printf '\\n{nonce}:{index}:%d\\n' \"$__dockyard_status\"")
        lines.append(f"printf '\\n{nonce}:{index}\\n' >&2")
        if stop_on_error:
            lines.append('[ "$__dockyard_status" -eq 0 ] || exit "$__dockyard_status"')
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def _heredoc_command(line: str, data: bytes, delimiter: str) -> str:
    """``line`` reading ``data`` from a quoted here-document (no expansion inside it).

    The data travels inside the script on the shell's stdin, never in a process's arguments
    (e.g. ``docker login --password-stdin``). A here-document always ends with a newline, so
    one is added to data that lacks it; data must be text without a line equal to the
    delimiter (the delimiter holds the batch's random nonce).
    """
    text = data.decode()
    if "\0" in text or delimiter in text.splitlines():
        raise ValueError("this stdin cannot be sent in a batch")
    if not text.endswith("\n"):
        text += "\n"
    return f"{{ {line}\n}} <<'{delimiter}'\n{text}{delimiter}"


def split_batch_output(
    stdout: str, stderr: str, count: int, nonce: str, *, stop_on_error: bool = False
) -> list[Result]:
    """Split a batch's combined output back into one Result per command.

    A command whose marker is missing gets exit status None (it was cut short); commands after
    it are reported as not run, as are those after a failure when ``stop_on_error``.
    """
    out_marker = re.compile(rf"\n{re.escape(nonce)}:(\d+):(-?\d+)\n")
    err_marker = re.compile(rf"\n{re.escape(nonce)}:(\d+)\n")
    out_pos = 0
    err_pos = 0
    results: list[Result] = []
    cut_short = False
    for index in range(count):
        if cut_short or (stop_on_error and results and not results[-1].ok):
            results.append(Result(None, "", NOT_RUN))
            cut_short = True
            continue
        out_match = out_marker.search(stdout, out_pos)
        if out_match is None or int(out_match.group(1)) != index:
            results.append(Result(None, stdout[out_pos:], stderr[err_pos:] or NO_STATUS))
            cut_short = True
            continue
        err_match = err_marker.search(stderr, err_pos)
        if err_match is not None and int(err_match.group(1)) == index:
            err_text = stderr[err_pos : err_match.start()]
            err_pos = err_match.end()
        else:
            err_text = stderr[err_pos:]
            err_pos = len(stderr)
        results.append(
            Result(int(out_match.group(2)), stdout[out_pos : out_match.start()], err_text)
        )
        out_pos = out_match.end()
    return results


@dataclass(frozen=True, slots=True)
class _ScriptShell:
    """The shell that reads the batch script on stdin: bash when the host has it (so that
    pipelines fail when any stage fails), else sh."""

    count: int

    def shell(self) -> str:
        return "if command -v bash >/dev/null 2>&1; then exec bash -s; else exec sh -s; fi"

    def display(self) -> str:
        return f"sh -s  # batch of {self.count} commands"


@dataclass
class BatchOutputFilter:
    """Passes output lines on, minus the batch markers and the blank line before each."""

    on_output: OutputCallback
    nonce: str
    _blank: dict[Stream, OutputLine | None] = field(default_factory=dict)

    def __call__(self, line: OutputLine) -> None:
        pending = self._blank.get(line.stream)
        if line.text.startswith(f"{self.nonce}:"):
            self._blank[line.stream] = None
            return
        if pending is not None:
            self.on_output(pending)
            self._blank[line.stream] = None
        if line.text == "":
            self._blank[line.stream] = line
            return
        self.on_output(line)


async def run_batch(
    transport: Transport,
    commands: Sequence[ArgvLike],
    *,
    stop_on_error: bool = False,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    on_output: OutputCallback | None = None,
) -> list[Result]:
    """Run ``commands`` on one host in one round trip; one Result per command, in order.

    With ``stop_on_error`` the batch stops at the first failure and later commands report
    :data:`NOT_RUN`. ``timeout`` covers the whole batch. A :class:`FakeTransport` gets the
    commands one by one, so flow tests see each argv.
    """
    if not commands:
        return []
    if isinstance(transport, FakeTransport):
        return await _run_each(transport, commands, stop_on_error, timeout, env, on_output)
    nonce = new_nonce()
    script = build_batch_script(commands, nonce, stop_on_error=stop_on_error)
    sink = None if on_output is None else BatchOutputFilter(on_output, nonce)
    result = await transport.run(
        _ScriptShell(len(commands)), stdin=script.encode(), timeout=timeout, env=env, on_output=sink
    )
    return split_batch_output(
        result.stdout, result.stderr, len(commands), nonce, stop_on_error=stop_on_error
    )


async def _run_each(
    transport: Transport,
    commands: Sequence[ArgvLike],
    stop_on_error: bool,
    timeout: float | None,
    env: Mapping[str, str] | None,
    on_output: OutputCallback | None,
) -> list[Result]:
    results: list[Result] = []
    failed = False
    for command in commands:
        if failed:
            results.append(Result(None, "", NOT_RUN))
            continue
        result = await transport.run(command, timeout=timeout, env=env, on_output=on_output)
        results.append(result)
        failed = stop_on_error and not result.ok
    return results
