from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from dockyard.remote.batch import (
    NOT_RUN,
    BatchOutputFilter,
    build_batch_script,
    run_batch,
    split_batch_output,
)
from dockyard.remote.fake import FakeTransport
from dockyard.remote.local import LocalTransport
from dockyard.remote.result import OutputLine, Result

NONCE = "DOCKYARD-test"


def test_split_exact_outputs() -> None:
    stdout = f"a\n\n{NONCE}:0:0\nno newline\n{NONCE}:1:3\n\n{NONCE}:2:0\n"
    stderr = f"\n{NONCE}:0\nerr1\n\n{NONCE}:1\n\n{NONCE}:2\n"
    results = split_batch_output(stdout, stderr, 3, NONCE)
    assert results == [
        Result(0, "a\n", ""),
        Result(3, "no newline", "err1\n"),
        Result(0, "", ""),
    ]


def test_split_marks_cut_short_and_not_run() -> None:
    stdout = f"one\n\n{NONCE}:0:0\npartial"
    stderr = f"\n{NONCE}:0\nboom\n"
    results = split_batch_output(stdout, stderr, 3, NONCE)
    assert results[0] == Result(0, "one\n", "")
    assert results[1] == Result(None, "partial", "boom\n")
    assert results[2] == Result(None, "", NOT_RUN)
    assert not results[1].ok


def test_script_quotes_each_command_once() -> None:
    script = build_batch_script([["echo", "a b;c"], ["true"]], NONCE)
    assert "{ echo 'a b;c'\n} </dev/null" in script
    assert f"{NONCE}:1:" in script


class WithStdin:
    def __init__(self, argv: list[str], stdin: str) -> None:
        self.argv = argv
        self.stdin = stdin

    def raw(self) -> list[str]:
        return self.argv

    def display(self) -> str:
        return " ".join(self.argv)


def test_script_feeds_a_commands_own_stdin_from_a_quoted_heredoc() -> None:
    script = build_batch_script([WithStdin(["cat"], "p$ss `x`")], NONCE)
    assert "{ cat\n} <<'DOCKYARD-test_IN0'\np$ss `x`\nDOCKYARD-test_IN0" in script


def test_script_refuses_stdin_holding_the_delimiter() -> None:
    with pytest.raises(ValueError, match="stdin"):
        build_batch_script([WithStdin(["cat"], f"a\n{NONCE}_IN0\nb")], NONCE)


def test_run_batch_passes_stdin_to_its_command_only() -> None:
    async def go() -> list[Result]:
        return await run_batch(
            LocalTransport("box"),
            [
                ["echo", "before"],
                WithStdin(["cat"], "s3cret $HOME `id`\nline two"),
                ["cat"],
                ["echo", "after"],
            ],
        )

    results = asyncio.run(go())
    assert [r.stdout for r in results] == [
        "before\n",
        "s3cret $HOME `id`\nline two\n",
        "",
        "after\n",
    ]


def test_filter_drops_markers_and_their_blank_line() -> None:
    seen: list[OutputLine] = []
    sink = BatchOutputFilter(seen.append, NONCE)
    for text in ["a", "", f"{NONCE}:0:0", "", "", "b", "", f"{NONCE}:1:0"]:
        sink(OutputLine("h", "stdout", text))
    assert [line.text for line in seen] == ["a", "", "", "b"]


def test_run_batch_over_local_shell() -> None:
    seen: list[OutputLine] = []

    async def go() -> list[Result]:
        return await run_batch(
            LocalTransport("box"),
            [
                ["echo", "hello world"],
                ["sh", "-c", "echo oops >&2; exit 4"],
                ["printf", "%s", "no-newline"],
                ["cat"],  # stdin is /dev/null, must not eat the script
                ["echo", "$HOME;`id`"],
            ],
            on_output=seen.append,
        )

    results = asyncio.run(go())
    assert results == [
        Result(0, "hello world\n", ""),
        Result(4, "", "oops\n"),
        Result(0, "no-newline", ""),
        Result(0, "", ""),
        Result(0, "$HOME;`id`\n", ""),
    ]
    texts = [(line.stream, line.text) for line in seen]
    assert ("stdout", "hello world") in texts
    assert ("stderr", "oops") in texts
    assert all(NONCE[:8] not in text for _, text in texts)
    assert all(line.host == "box" for line in seen)


def test_run_batch_stop_on_error() -> None:
    async def go() -> list[Result]:
        return await run_batch(
            LocalTransport(),
            [["true"], ["false"], ["echo", "never"]],
            stop_on_error=True,
        )

    results = asyncio.run(go())
    assert [r.exit_status for r in results] == [0, 1, None]
    assert results[2].stderr == NOT_RUN


def test_run_batch_keeps_going_by_default() -> None:
    results = asyncio.run(run_batch(LocalTransport(), [["false"], ["echo", "after"]]))
    assert [r.exit_status for r in results] == [1, 0]
    assert results[1].stdout == "after\n"


def test_run_batch_on_fake_records_each_command() -> None:
    fake = FakeTransport().on(["docker", "ps"], Result(0, "c1\n", ""))
    results = asyncio.run(run_batch(fake, [["docker", "ps"], ["docker", "images"]]))
    assert fake.commands == [["docker", "ps"], ["docker", "images"]]
    assert results[0].stdout == "c1\n"


def test_empty_batch() -> None:
    fake = FakeTransport()
    assert asyncio.run(run_batch(fake, [])) == []
    assert fake.calls == []


def test_staged_batch_runs_a_stage_side_by_side_and_keeps_command_order() -> None:
    # each command of stage 1 waits for a file that a later one of the same stage writes:
    # only side-by-side execution finishes (the outputs still come back in command order)
    commands = [
        ["sh", "-c", 'd=$(mktemp -d) && echo "$d"'],
        [
            "sh",
            "-c",
            "for i in $(seq 50); do [ -e /tmp/$1 ] && exit 0; sleep 0.1; done; exit 9",
            "sh",
            f"dockyard-stage-{os.getpid()}",
        ],
        ["sh", "-c", "touch /tmp/$1; echo made >&2", "sh", f"dockyard-stage-{os.getpid()}"],
        WithStdin(["cat"], "fed\n"),
        ["sh", "-c", "exit 4"],
    ]
    try:
        results = asyncio.run(run_batch(LocalTransport(), commands, stages=[0, 1, 1, 1, 2]))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/tmp/dockyard-stage-{os.getpid()}")
    assert [r.exit_status for r in results] == [0, 0, 0, 0, 4]
    assert results[2].stderr == "made\n"
    assert results[3].stdout == "fed\n"


def test_staged_batch_stops_after_a_failed_stage() -> None:
    commands = [["sh", "-c", "exit 3"], ["echo", "same stage"], ["echo", "later"]]
    results = asyncio.run(
        run_batch(LocalTransport(), commands, stages=[0, 0, 1], stop_on_error=True)
    )
    assert results[0].exit_status == 3
    assert results[1] == Result(0, "same stage\n", "")
    assert results[2] == Result(None, "", NOT_RUN)


def test_staged_batch_on_fake_runs_in_order_and_stops_by_stage() -> None:
    fake = FakeTransport("h").on(["false"], Result(1, "", ""))
    commands = [["false"], ["echo", "a"], ["echo", "b"]]
    results = asyncio.run(run_batch(fake, commands, stages=[0, 0, 1], stop_on_error=True))
    assert [r.exit_status for r in results] == [1, 0, None]
    assert results[2].stderr == NOT_RUN


def test_stage_numbers_must_not_decrease() -> None:
    with pytest.raises(ValueError):
        build_batch_script([["a"], ["b"]], NONCE, stages=[1, 0])
