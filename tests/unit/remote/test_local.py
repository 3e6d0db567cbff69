from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.remote.local import LocalTransport
from dockyard.remote.result import CommandTimeoutError, OutputLine, Result


def run(coro: object) -> Result:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_exit_status_and_outputs() -> None:
    result = run(LocalTransport().run(["sh", "-c", "echo out; echo err >&2; exit 7"]))
    assert result == Result(7, "out\n", "err\n")


def test_no_shell_interpretation() -> None:
    result = run(LocalTransport().run(["echo", "$HOME", "a;b", "`id`"]))
    assert result.stdout == "$HOME a;b `id`\n"


def test_streams_lines_to_callback_in_order() -> None:
    seen: list[OutputLine] = []
    script = "for i in 1 2 3; do echo line$i; done; printf tail; echo e1 >&2"
    result = run(LocalTransport("me").run(["sh", "-c", script], on_output=seen.append))
    out = [line.text for line in seen if line.stream == "stdout"]
    assert out == ["line1", "line2", "line3", "tail"]
    assert [line.text for line in seen if line.stream == "stderr"] == ["e1"]
    assert {line.host for line in seen} == {"me"}
    assert result.stdout == "line1\nline2\nline3\ntail"


def test_streaming_happens_before_exit(tmp_path: Path) -> None:
    """The command goes on only once the callback has seen its first line: without
    streaming it would never end (and time out)."""
    flag = tmp_path / "seen"
    seen: list[str] = []

    def on_output(line: OutputLine) -> None:
        seen.append(line.text)
        flag.touch()

    script = 'echo first; while [ ! -e "$1" ]; do sleep 0.01; done; echo second'
    result = run(
        LocalTransport().run(["sh", "-c", script, "sh", str(flag)], on_output=on_output, timeout=30)
    )
    assert seen == ["first", "second"]
    assert result == Result(0, "first\nsecond\n", "")


def test_stdin_is_fed_and_closed() -> None:
    assert run(LocalTransport().run(["cat"], stdin=b"abc\x00def")).stdout == "abc\x00def"
    # without stdin the command reads EOF at once rather than hanging
    assert run(LocalTransport().run(["cat"], timeout=5)).stdout == ""


def test_large_output_on_both_streams_does_not_deadlock() -> None:
    script = "head -c 300000 /dev/zero | tr '\\0' a; head -c 300000 /dev/zero | tr '\\0' b >&2"
    result = run(LocalTransport().run(["sh", "-c", script], timeout=20))
    assert len(result.stdout) == 300000
    assert len(result.stderr) == 300000


def test_timeout_kills_and_raises() -> None:
    # without the timeout, `sleep 10` would end normally and nothing would be raised
    with pytest.raises(CommandTimeoutError, match=r"timed out after 0\.3s on localhost: sleep 10"):
        run(LocalTransport().run(["sleep", "10"], timeout=0.3))


def test_env_is_added_to_the_environment() -> None:
    result = run(LocalTransport().run(["sh", "-c", 'echo "$FOO:$PATH"'], env={"FOO": "bar baz"}))
    assert result.stdout.startswith("bar baz:")
    assert os.environ.get("PATH", "") in result.stdout


def test_missing_program_is_127() -> None:
    result = run(LocalTransport().run(["definitely-not-a-program-xyz"]))
    assert result.exit_status == 127
    assert "not found" in result.stderr


def test_invalid_utf8_is_replaced() -> None:
    result = run(LocalTransport().run([sys.executable, "-c", "import os; os.write(1, b'a\\xffb')"]))
    assert result.stdout == "a\ufffdb"


def test_put_creates_parents_with_mode(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "secret.env"
    asyncio.run(LocalTransport().put(b"K=V\n", str(target), mode=0o640))
    assert target.read_bytes() == b"K=V\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    asyncio.run(LocalTransport().put(b"new", str(target)))
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.env"]  # no temp left


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    """A background child of the command (its own process group) dies with it."""
    pid_file = tmp_path / "child.pid"
    # (the child lets go of the pipes: nothing waits for it but the kill)
    script = f"sleep 300 >/dev/null 2>&1 & echo $! > {pid_file}; exec sleep 120"
    with pytest.raises(CommandTimeoutError):
        run(LocalTransport().run(["sh", "-c", script], timeout=1))
    child = int(pid_file.read_text())
    try:
        # SIGKILL went to the whole group before the error; the child is gone once the
        # kernel has delivered it (waited for, not timed: a survivor sleeps on for minutes)
        for _ in range(1000):
            if not _alive(child):
                break
            time.sleep(0.01)
        assert not _alive(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)  # the survivor this test started


def test_stdin_can_be_streamed_from_an_async_iterable() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(100):
            yield f"{i}\n".encode()
            await asyncio.sleep(0)

    result = run(LocalTransport().run(["wc", "-l"], stdin=chunks()))
    assert result.stdout.strip() == "100"


def test_stdin_stream_into_a_command_that_exits_early() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0)

    result = run(LocalTransport().run(["head", "-c", "10"], stdin=endless(), timeout=10))
    assert result == Result(0, "x" * 10, "")
