"""Several independent commands in one round trip.

The commands are quoted once each (:func:`command_line`) into a POSIX shell script that is
fed to ``bash -s`` (or ``sh -s``) on standard input, so the command lines, which may hold
secrets, do not show up in the remote process list. After each command the script prints a
marker with a random nonce, the command's index and its exit status on stdout, and a marker on
stderr; the outputs are split back into one :class:`Result` per command. Each command reads
its stdin from ``/dev/null``, or, when it carries stdin of its own, from a quoted
here-document inside the script.

With ``stages`` (one number per command, not decreasing) the commands of one stage run at the
same time, each with its output in a temporary directory, and the stages run one after the
other; the outputs are printed in command order once all have finished (so they are not
streamed as they come). ``parallel=True`` puts every command in one stage.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dockyard.remote._stream import LineSplitter
from dockyard.remote.argv import ArgvLike, command_line, command_stdin
from dockyard.remote.engine import (
    PING,
    PROXY_VOLUME_CALL,
    EngineCall,
    EngineUnavailable,
    ProxyCall,
    answer,
    proxy_socket,
    shortcut,
)
from dockyard.remote.result import OutputCallback, OutputLine, Result, Stream
from dockyard.remote.transport import Transport

__all__ = [
    "NOT_RUN",
    "BatchOutputFilter",
    "build_batch_script",
    "new_nonce",
    "perform",
    "run_batch",
    "run_one",
    "split_batch_output",
]

#: stderr of a command skipped because an earlier one failed (with ``stop_on_error``).
NOT_RUN = "not run: an earlier command in this batch failed\n"
#: stderr of a command that started but reported no status (the batch was cut short).
NO_STATUS = "the batch ended before this command reported its status\n"


def new_nonce() -> str:
    return f"DOCKYARD-{os.urandom(8).hex()}"


def build_batch_script(
    commands: Sequence[ArgvLike],
    nonce: str,
    *,
    stop_on_error: bool = False,
    stages: Sequence[int] | None = None,
) -> str:
    """The ``sh`` script that runs ``commands`` in order (or by ``stages``) and marks where each
    one ended."""
    if stages is not None:
        return _staged_script(commands, nonce, stages, stop_on_error=stop_on_error)
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


def _staged_script(
    commands: Sequence[ArgvLike], nonce: str, stages: Sequence[int], *, stop_on_error: bool
) -> str:
    """Each stage's commands in the background (outputs to files), wait for the stage, next
    stage (unless one failed and ``stop_on_error``); then every output, in command order."""
    if len(stages) != len(commands):
        raise ValueError("one stage number per command")
    if any(later < earlier for earlier, later in itertools.pairwise(stages)):
        raise ValueError("stage numbers must not decrease")
    lines = ["__dy_d=$(mktemp -d) || exit 97", "__dy_stop="]
    groups: dict[int, list[int]] = {}
    for index, stage in enumerate(stages):
        groups.setdefault(stage, []).append(index)
    for members in groups.values():
        lines.append('if [ -z "$__dy_stop" ]; then')
        for index in members:
            command = commands[index]
            files = f'>"$__dy_d/{index}.o" 2>"$__dy_d/{index}.e"'
            data = command_stdin(command)
            if data is None:
                lines.append(f"{{ {command_line(command)}\n}} </dev/null {files} &")
            else:
                lines.append(
                    _heredoc_command(
                        command_line(command), data, f"{nonce}_IN{index}", suffix=f" {files} &"
                    )
                )
            lines.append(f"__dy_p{index}=$!")
        for index in members:
            lines.append(f'wait "$__dy_p{index}"; __dy_s{index}=$?')
            if stop_on_error:
                lines.append(f'[ "$__dy_s{index}" -eq 0 ] || __dy_stop=1')
        lines.append("fi")
    for index in range(len(commands)):
        lines.append(f'if [ -n "${{__dy_s{index}+x}}" ]; then')
        lines.append(f'cat "$__dy_d/{index}.o"')
        lines.append(f"printf '\\n{nonce}:{index}:%d\\n' \"$__dy_s{index}\"")
        lines.append(f'cat "$__dy_d/{index}.e" >&2')
        lines.append(f"printf '\\n{nonce}:{index}\\n' >&2")
        lines.append("fi")
    lines.append('rm -rf "$__dy_d"')
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def _heredoc_command(line: str, data: bytes, delimiter: str, suffix: str = "") -> str:
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
    return f"{{ {line}\n}} <<'{delimiter}'{suffix}\n{text}{delimiter}"


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
    stages: Sequence[int] | None = None,
    parallel: bool = False,
) -> list[Result]:
    """Run ``commands`` on one host in one round trip; one Result per command, in order.

    With ``stop_on_error`` the batch stops at the first failure and later commands report
    :data:`NOT_RUN` (with ``stages``: at the end of the stage holding the failure).
    ``stages``/``parallel``: run commands side by side (module docstring). ``timeout`` covers
    the whole batch. A transport with ``batch_one_by_one`` (the fake) gets the commands one by
    one, in order, so flow tests see each argv.
    """
    if not commands:
        return []
    if parallel and stages is None:
        stages = [0] * len(commands)
    if getattr(transport, "batch_one_by_one", False):
        return await _run_each(
            transport, commands, stop_on_error, timeout, env, on_output, stages=stages
        )
    calls = [shortcut(command) for command in commands] if env is None else []
    if any(calls) and await _engine_ready(transport):
        return await _with_engine(
            transport, commands, calls, stop_on_error, timeout, on_output, stages=stages
        )
    return await _script(transport, commands, stop_on_error, timeout, env, on_output, stages)


async def _script(
    transport: Transport,
    commands: Sequence[ArgvLike],
    stop_on_error: bool,
    timeout: float | None,
    env: Mapping[str, str] | None,
    on_output: OutputCallback | None,
    stages: Sequence[int] | None,
) -> list[Result]:
    """The commands as one script, one round trip."""
    if stages is not None and len(commands) == 1:
        stages = None
    nonce = new_nonce()
    script = build_batch_script(commands, nonce, stop_on_error=stop_on_error, stages=stages)
    sink = None if on_output is None else BatchOutputFilter(on_output, nonce)
    result = await transport.run(
        _ScriptShell(len(commands)), stdin=script.encode(), timeout=timeout, env=env, on_output=sink
    )
    if stages is None:
        return split_batch_output(
            result.stdout, result.stderr, len(commands), nonce, stop_on_error=stop_on_error
        )
    results = split_batch_output(result.stdout, result.stderr, len(commands), nonce)
    if stop_on_error and any(not r.ok for r in results if r.exit_status is not None):
        # the stages after a failure did not start: their commands have no marker
        results = [Result(None, "", NOT_RUN) if r.exit_status is None else r for r in results]
    return results


# --------------------------------------------------------------------------- Engine API


async def perform(
    transport: Transport, call: EngineCall | ProxyCall, timeout: float | None = None
) -> Result | None:
    """The result of the CLI call that ``call`` stands for, without running the CLI; None
    when the host does not answer this way (then run the CLI)."""
    if isinstance(call, ProxyCall):
        volume = await perform(transport, PROXY_VOLUME_CALL, timeout)
        if volume is None or not volume.ok or not volume.stdout:
            return None
        path = proxy_socket(volume.stdout)
        data = await transport.unix_call(path, call.request(), timeout=timeout)
        return None if data is None else call.render(data)
    answered = await transport.engine(call, timeout=timeout)
    if answered is None:
        return None
    try:
        return answer(call, *answered)
    except EngineUnavailable:
        return None


def _emit(host: str, result: Result, on_output: OutputCallback | None) -> None:
    """Stream a result's lines as a command's output would have come."""
    if on_output is not None:
        LineSplitter(host, "stdout", on_output).feed(result.stdout.encode(), final=True)
        LineSplitter(host, "stderr", on_output).feed(result.stderr.encode(), final=True)


async def run_one(
    transport: Transport,
    command: ArgvLike,
    *,
    timeout: float | None = None,
    on_output: OutputCallback | None = None,
) -> Result:
    """``transport.run(command)``, or what it would print from the Engine API or the proxy's
    socket when ``command`` is one of the calls those answer (:mod:`dockyard.remote.engine`)."""
    call = shortcut(command)
    if call is not None and await _engine_ready(transport):
        result = await perform(transport, call, timeout)
        if result is not None:
            _emit(transport.host, result, on_output)
            return result
    return await transport.run(command, timeout=timeout, on_output=on_output)


async def _engine_ready(transport: Transport) -> bool:
    """Whether ``transport``'s host answers the Engine API (asked once per connection)."""
    answered = await transport.engine(PING)
    return answered is not None and answered[0] == 200


async def _with_engine(
    transport: Transport,
    commands: Sequence[ArgvLike],
    calls: Sequence[EngineCall | ProxyCall | None],
    stop_on_error: bool,
    timeout: float | None,
    on_output: OutputCallback | None,
    *,
    stages: Sequence[int] | None,
) -> list[Result]:
    """The batch with the recognized commands (``calls``) asked of the Engine API and the
    others in scripts, keeping the batch's order: without ``stages``, command by command
    (consecutive shell commands share one script, consecutive API queries are asked side by
    side: none changes what another sees); with them, stage by stage, the API calls of a stage
    side by side with one script of its other commands."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout

    def left() -> float | None:
        return None if deadline is None else max(0.001, deadline - loop.time())

    results: list[Result | None] = [None] * len(commands)

    async def shell(indices: Sequence[int], parallel: bool) -> None:
        if not indices:
            return
        part = await _script(
            transport,
            [commands[i] for i in indices],
            stop_on_error and not parallel,
            left(),
            None,
            on_output,
            [0] * len(indices) if parallel else None,
        )
        for index, result in zip(indices, part, strict=True):
            results[index] = result

    async def ask(index: int) -> bool:
        call = calls[index]
        assert call is not None
        result = await perform(transport, call, left())
        if result is None:
            return False
        _emit(transport.host, result, on_output)
        results[index] = result
        return True

    def failed() -> bool:
        return stop_on_error and any(r is not None and not r.ok for r in results)

    def query(call: EngineCall | ProxyCall | None) -> bool:
        return isinstance(call, EngineCall) and call.method == "GET"

    groups: list[list[int]] = []
    if stages is None:  # runs of shell commands, runs of API queries, each other call alone
        for index, call in enumerate(calls):
            if groups:
                last = calls[groups[-1][-1]]
                if (call is None and last is None) or (query(call) and query(last)):
                    groups[-1].append(index)
                    continue
            groups.append([index])
    else:
        for _, members in itertools.groupby(range(len(commands)), key=lambda i: stages[i]):
            groups.append(list(members))
    for group in groups:
        if failed():
            break
        asked = [i for i in group if calls[i] is not None]
        scripted = [i for i in group if calls[i] is None]
        parallel = stages is not None
        if not asked:
            await shell(scripted, parallel)
            continue
        done = await asyncio.gather(shell(scripted, parallel), *(ask(i) for i in asked))
        await shell([i for i, ok in zip(asked, done[1:], strict=True) if not ok], parallel)
        if stop_on_error and not parallel:  # queries asked side by side: none after a failure
            failures = [i for i in group if not (results[i] or Result(0, "", "")).ok]
            for index in group:
                if failures and index > failures[0]:
                    results[index] = Result(None, "", NOT_RUN)
    return [Result(None, "", NOT_RUN) if r is None else r for r in results]


async def _run_each(
    transport: Transport,
    commands: Sequence[ArgvLike],
    stop_on_error: bool,
    timeout: float | None,
    env: Mapping[str, str] | None,
    on_output: OutputCallback | None,
    *,
    stages: Sequence[int] | None = None,
) -> list[Result]:
    results: list[Result] = []
    failed = False
    for index, command in enumerate(commands):
        new_stage = stages is None or index == 0 or stages[index] != stages[index - 1]
        if failed and new_stage:
            results.extend(Result(None, "", NOT_RUN) for _ in commands[index:])
            break
        result = await transport.run(command, timeout=timeout, env=env, on_output=on_output)
        results.append(result)
        failed = failed or (stop_on_error and not result.ok)
    return results
