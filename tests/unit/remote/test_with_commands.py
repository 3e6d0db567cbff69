"""The remote layer accepts dockyard.commands values as they are (Argv, Secret, Pipeline)."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil

import pytest

from dockyard.commands.argv import Argv, HomePath, Pipeline, Secret, docker
from dockyard.remote.argv import PIPEFAIL, command_line, command_stdin, display_command, local_args
from dockyard.remote.batch import build_batch_script, run_batch
from dockyard.remote.fake import FakeTransport
from dockyard.remote.local import LocalTransport
from dockyard.remote.result import Result
from dockyard.remote.ssh import remote_command


def test_argv_with_secret_is_quoted_once_and_masked() -> None:
    argv = docker("login", "-u", "me", "-p", Secret("p@ss word"), "reg:5000")
    line = command_line(argv)
    assert shlex.split(line) == ["docker", "login", "-u", "me", "-p", "p@ss word", "reg:5000"]
    assert "p@ss" not in display_command(argv)
    assert local_args(argv) == ["docker", "login", "-u", "me", "-p", "p@ss word", "reg:5000"]


def test_home_paths_expand_remotely() -> None:
    argv = docker("run", "-v", HomePath(".kamal/apps/x/env:/env"), "img")
    assert '"$PWD"/.kamal/apps/x/env:/env' in command_line(argv)
    assert remote_command(argv).startswith("docker run -v ")
    # locally there is no remote home, so it runs through sh and $PWD is expanded there
    assert local_args(argv)[1] == "-c"
    result = asyncio.run(LocalTransport().run(Argv(["echo", HomePath("x")])))
    assert result.stdout == f"{os.getcwd()}/x\n"


def test_pipeline_runs_through_a_shell() -> None:
    pipeline = Pipeline((Argv(["printf", "a\\nb\\n"]), Argv(["grep", Secret("b")])))
    result = asyncio.run(LocalTransport().run(pipeline))
    assert result == Result(0, "b\n", "")
    assert "[REDACTED]" in display_command(pipeline)


def test_argv_stdin_is_used_when_run_gets_none() -> None:
    argv = Argv(["cat"], stdin=Secret("from-argv"))
    assert command_stdin(argv) == b"from-argv"
    assert asyncio.run(LocalTransport().run(argv)).stdout == "from-argv"
    assert asyncio.run(LocalTransport().run(argv, stdin=b"explicit")).stdout == "explicit"


def test_fake_records_argv_line_and_masked_display() -> None:
    fake = FakeTransport()
    asyncio.run(fake.run(docker("login", "-p", Secret("pw"))))
    call = fake.calls[0]
    assert call.argv == ["docker", "login", "-p", "pw"]
    assert call.line == "docker login -p pw"
    assert call.display == ["docker", "login", "-p", "[REDACTED]"]


def test_batch_accepts_argv_values() -> None:
    script = build_batch_script([docker("ps"), docker("run", HomePath("a"))], "N")
    assert "{ docker ps\n} </dev/null" in script
    assert '{ docker run "$PWD"/a\n} </dev/null' in script


def test_batch_pipelines_read_their_own_first_stage() -> None:
    grep = Pipeline((Argv(["printf", "a\\nsecret\\n"]), Argv(["grep", "secret"])))
    results = asyncio.run(run_batch(LocalTransport(), [grep, Argv(["cat"])]))
    assert results == [Result(0, "secret\n", ""), Result(0, "", "")]


def test_pipeline_fails_when_an_early_stage_fails() -> None:
    # Kamal's contract for pipelines: a failed stage fails the whole command.
    failing = Pipeline((Argv(["false"]), Argv(["cat"])))
    assert command_line(failing).startswith(PIPEFAIL)
    if shutil.which("bash") is None:
        pytest.skip("no bash here")
    assert asyncio.run(LocalTransport().run(failing)).exit_status == 1
    passing = Pipeline((Argv(["echo", "ok"]), Argv(["cat"])))
    assert asyncio.run(LocalTransport().run(passing)) == Result(0, "ok\n", "")


def test_pipefail_prefix_is_harmless_in_dash() -> None:
    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("no dash here")
    line = command_line(Pipeline((Argv(["printf", "x"]), Argv(["cat"]))))
    assert asyncio.run(LocalTransport().run([dash, "-c", line])) == Result(0, "x", "")
