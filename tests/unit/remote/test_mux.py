"""The SSH helper's protocol, client and server, over a real Unix socket with a scripted pool
in place of SSH (the lab tests run it against real servers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dockyard.errors import ConfigError, ConnectError, DockyardError, RemoteCommandError
from dockyard.remote import mux
from dockyard.remote._stream import ByteSink, stdin_chunks
from dockyard.remote.engine import EngineCall
from dockyard.remote.fanout import HostOutcome
from dockyard.remote.mux import (
    FrameError,
    FrameReader,
    MuxPool,
    absolute_paths,
    frame,
    options_from_json,
    options_to_json,
    persist_seconds,
    socket_dir,
)
from dockyard.remote.mux_server import Helper
from dockyard.remote.options import SshOptions
from dockyard.remote.result import CommandTimeoutError, OutputLine, Result, Stdin

# --------------------------------------------------------------------------- frames


def test_frames_survive_any_split_of_the_stream() -> None:
    frames = [(b"Q", b'{"op":"run"}'), (b"I", b""), (b"O", bytes(range(256)) * 3), (b"E", b"")]
    stream = b"".join(frame(kind, payload) for kind, payload in frames)
    for cut in range(len(stream) + 1):
        reader = FrameReader()
        got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert got == frames
        assert reader.pending == 0
    reader = FrameReader()
    one_by_one = [f for i in range(len(stream)) for f in reader.feed(stream[i : i + 1])]
    assert one_by_one == frames


def test_oversized_frame_is_refused_before_it_is_buffered() -> None:
    reader = FrameReader(max_frame=10)
    with pytest.raises(FrameError, match="11 bytes is over the 10 byte limit"):
        reader.feed(frame(b"I", b"x" * 11)[:5])


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (None, 120.0),
        ("", 120.0),
        ("0", 0.0),
        ("off", 0.0),
        ("No", 0.0),
        ("30", 30.0),
        ("2.5s", 2.5),
    ],
)
def test_persist_seconds(raw: str | None, seconds: float) -> None:
    environ = {} if raw is None else {"DOCKYARD_SSH_PERSIST": raw}
    assert persist_seconds(environ) == seconds


@pytest.mark.parametrize("raw", ["soon", "-1", "inf", "nan"])
def test_bad_persist_seconds_is_a_config_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"DOCKYARD_SSH_PERSIST: .*got '"):
        persist_seconds({"DOCKYARD_SSH_PERSIST": raw})


def test_options_cross_the_wire_unchanged() -> None:
    options = SshOptions(
        user="deploy",
        port=2222,
        keys=("~/.ssh/a", "/k/b"),
        key_data=("PEM",),
        known_hosts=("/kh",),
        config=("/c1", "/c2"),
        proxy="jump@bastion:22",
        max_channels=3,
    )
    assert options_from_json(options_to_json(options)) == options
    with pytest.raises(ValueError, match="unknown SSH option 'colour'"):
        options_from_json({"colour": "blue"})


def test_relative_paths_are_made_absolute_for_the_helper() -> None:
    options = SshOptions(
        keys=("keys/id", "~/.ssh/id", "/abs/id"), known_hosts=("kh",), config="cfg"
    )
    fixed = absolute_paths(options, "/project")
    assert fixed.keys == ("/project/keys/id", "~/.ssh/id", "/abs/id")
    assert fixed.known_hosts == ("/project/kh",)
    assert fixed.config == "/project/cfg"
    assert absolute_paths(SshOptions(config=True), "/p").config is True


def test_make_pool_uses_the_helper_unless_told_not_to(tmp_path: Path) -> None:
    from dockyard.remote.ssh import SshPool

    environ = {"XDG_RUNTIME_DIR": str(tmp_path)}
    pool = mux.make_pool(SshOptions(), environ)
    assert isinstance(pool, MuxPool) and pool.path.parent == tmp_path / "dockyard"
    off = {**environ, "DOCKYARD_SSH_PERSIST": "0"}
    assert isinstance(mux.make_pool(SshOptions(), off), SshPool)
    assert isinstance(mux.make_pool(SshOptions(log_level="debug"), environ), SshPool)


def test_socket_dir_is_private_and_a_shared_one_is_refused(tmp_path: Path) -> None:
    path = socket_dir({"XDG_RUNTIME_DIR": str(tmp_path)})
    assert path == tmp_path / "dockyard"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    path.chmod(0o755)
    assert socket_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) is None


# --------------------------------------------------------------------------- end to end


class ScriptTransport:
    def __init__(self, pool: ScriptPool, host: str) -> None:
        self.pool = pool
        self.host = host

    async def run_line(
        self,
        command: str,
        display: str,
        *,
        stdin: Stdin | None,
        timeout: float | None,
        out: ByteSink,
        err: ByteSink,
    ) -> int | None:
        self.pool.calls.append((self.host, command, display, timeout))
        data = b"".join([chunk async for chunk in stdin_chunks(stdin)])
        if command == "sleep":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.pool.cancelled.append(self.host)
                raise
        if command == "lost":
            raise ConnectError("ssh: lost the connection", hint="check the network")
        if command == "slow":
            raise CommandTimeoutError("command timed out after 1s")
        if command == "boom":
            raise RuntimeError("a bug")
        out.feed(f"ran {command} on {self.host}\n".encode())
        out.feed(b"stdin=" + data + b"\n")
        err.feed("warn é\n".encode()[:-2])  # a UTF-8 sequence split across chunks
        err.feed("é\n".encode()[1:])
        return 3 if command == "false" else 0

    async def put(self, data: bytes, path: str, *, mode: int = 0o600) -> None:
        if path.startswith("/forbidden"):
            raise RemoteCommandError(f"remote: cannot upload {path}")
        self.pool.uploads[path] = (data, mode)

    async def get(self, path: str, local: Path) -> None:
        local.write_bytes(f"content of {path}".encode())

    async def engine(
        self, call: EngineCall, *, timeout: float | None = None
    ) -> tuple[int, bytes] | None:
        self.pool.engine_calls.append((self.host, call.method, call.path, call.body, timeout))
        if self.host == "no-api":
            return None
        if self.host == "lost":
            raise ConnectError("ssh: lost the connection while asking docker")
        return 200, bytes(range(256)) * 3000  # every byte value, several frames

    async def unix_call(
        self, path: str, data: bytes, *, timeout: float | None = None
    ) -> bytes | None:
        self.pool.engine_calls.append((self.host, "unix", path, data, timeout))
        return None if path == "/nothing" else data[::-1] * 2


class ScriptPool:
    instances: ClassVar[list[ScriptPool]] = []

    def __init__(self, options: SshOptions) -> None:
        self.options = options
        self.calls: list[tuple[str, str, str, float | None]] = []
        self.cancelled: list[str] = []
        self.uploads: dict[str, tuple[bytes, int]] = {}
        self.closed = False
        self.forwards: list[tuple[tuple[str, ...], int, int, str]] = []
        self.forwards_closed = False
        self.engine_calls: list[tuple[str, str, str, bytes | None, float | None]] = []
        ScriptPool.instances.append(self)

    def transport(self, host: str) -> ScriptTransport:
        return ScriptTransport(self, host)

    async def connect_all(self, hosts: list[str]) -> list[HostOutcome[None]]:
        return [
            HostOutcome(h, error=ConnectError(f"ssh: cannot reach {h}", hint="is it up?"))
            if h.startswith("bad")
            else HostOutcome(h)
            for h in hosts
        ]

    @contextlib.asynccontextmanager
    async def reverse_forward(
        self, hosts: list[str], *, remote_port: int, local_port: int, **where: str
    ) -> AsyncIterator[None]:
        if remote_port == 1:
            raise ConnectError("ssh: h refused to forward 127.0.0.1:1")
        self.forwards.append((tuple(hosts), remote_port, local_port, where["local_host"]))
        try:
            yield
        finally:
            self.forwards_closed = True

    async def close(self) -> None:
        self.closed = True


@contextlib.asynccontextmanager
async def running_helper(tmp_path: Path) -> AsyncIterator[Helper]:
    ScriptPool.instances = []
    server = Helper(tmp_path / "h.sock", 60, pool_factory=ScriptPool)  # type: ignore[arg-type]
    task = asyncio.ensure_future(server.serve())
    for _ in range(200):
        if server.path.exists():
            break
        await asyncio.sleep(0.005)
    try:
        yield server
    finally:
        server._stop.set()
        await asyncio.wait_for(task, 5)


def with_helper(test: Callable[[Helper], Awaitable[None]], tmp_path: Path) -> None:
    async def go() -> None:
        async with running_helper(tmp_path) as server:
            await test(server)

    asyncio.run(go())


def pool_for(server: Helper, **kwargs: Any) -> MuxPool:
    return MuxPool(SshOptions(user="deploy", keys=("rel/key",)), server.path, **kwargs)


def test_run_streams_output_and_stdin_through_the_helper(tmp_path: Path) -> None:
    async def body(helper: Helper) -> None:
        pool = pool_for(helper)
        lines: list[OutputLine] = []

        async def chunks() -> AsyncIterator[bytes]:
            yield b"one "
            yield b"two"

        result = await pool.transport("h1").run(
            ["echo", "a b"], stdin=chunks(), env={"X": "1"}, timeout=5, on_output=lines.append
        )
        assert result.exit_status == 0
        assert result.stdout == "ran " + helper_call(0)[1] + " on h1\nstdin=one two\n"
        assert result.stderr == "warn é\n"
        assert [(line.host, line.stream, line.text) for line in lines] == [
            ("h1", "stdout", f"ran {helper_call(0)[1]} on h1"),
            ("h1", "stdout", "stdin=one two"),
            ("h1", "stderr", "warn é"),
        ]
        host, command, display, timeout = helper_call(0)
        assert (host, display, timeout) == ("h1", "echo 'a b'", 5)
        assert command.startswith("if command -v timeout") and "export X=1;" in command
        # the session's options arrived with relative paths made absolute
        assert ScriptPool.instances[0].options.keys == (os.path.join(os.getcwd(), "rel/key"),)
        assert not pool.direct
        failed = await pool.transport("h2").run(["false"], stdin=b"in")
        assert failed.exit_status == 3 and "stdin=in" in failed.stdout
        await pool.close()
        await until(lambda: ScriptPool.instances[0].closed)
        assert ScriptPool.instances[0].closed  # the session's connections close with the command
        assert helper.sessions == {}

    with_helper(body, tmp_path)


async def until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait (at most ``limit`` seconds) for ``condition``: the helper handles a closed socket
    a moment after the client closed it."""
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def helper_call(index: int) -> tuple[str, str, str, float | None]:
    return ScriptPool.instances[-1].calls[index]


def test_errors_come_back_as_the_same_dockyard_errors(tmp_path: Path) -> None:
    async def body(helper: Helper) -> None:
        pool = pool_for(helper)
        with pytest.raises(ConnectError) as lost:
            await pool.transport("h").run(["lost"])
        assert lost.value.message == "ssh: lost the connection"
        assert lost.value.hint == "check the network"
        with pytest.raises(CommandTimeoutError, match="timed out after 1s"):
            await pool.transport("h").run(["slow"])
        with pytest.raises(DockyardError, match="ssh helper: internal error: RuntimeError"):
            await pool.transport("h").run(["boom"])
        with pytest.raises(RemoteCommandError, match="cannot upload /forbidden/x"):
            await pool.transport("h").put(b"x", "/forbidden/x")
        outcomes = await pool.connect_all(["good", "bad-1"])
        assert [o.ok for o in outcomes] == [True, False]
        error = outcomes[1].error
        assert isinstance(error, ConnectError)
        assert (error.message, error.hint) == ("ssh: cannot reach bad-1", "is it up?")
        await pool.close()

    with_helper(body, tmp_path)


def test_put_and_get_go_through_the_helper(tmp_path: Path) -> None:
    async def body(helper: Helper) -> None:
        pool = pool_for(helper)
        big = os.urandom(700_000)  # several frames
        await pool.transport("h").put(big, ".kamal/env/x.env", mode=0o640)
        assert ScriptPool.instances[0].uploads[".kamal/env/x.env"] == (big, 0o640)
        target = tmp_path / "down" / "file"
        target.parent.mkdir()
        await pool.transport("h").get("/srv/db", target)
        assert target.read_bytes() == b"content of /srv/db"
        await pool.close()

    with_helper(body, tmp_path)


def test_engine_api_requests_go_through_the_helper(tmp_path: Path) -> None:
    async def body(helper: Helper) -> None:
        pool = pool_for(helper)
        call = EngineCall("POST", "/containers/a/stop?t=3", _unused, b'{"\xe9":1}')
        answered = await pool.transport("h").engine(call, timeout=7)
        assert answered == (200, bytes(range(256)) * 3000)
        assert ScriptPool.instances[0].engine_calls == [
            ("h", "POST", "/containers/a/stop?t=3", b'{"\xe9":1}', 7.0)
        ]
        assert await pool.transport("no-api").engine(call) is None
        sent = bytes(range(256)) * 2000
        assert await pool.transport("h").unix_call("/s.sock", sent, timeout=3) == sent[::-1] * 2
        assert ScriptPool.instances[0].engine_calls[-1] == ("h", "unix", "/s.sock", sent, 3.0)
        assert await pool.transport("h").unix_call("/nothing", b"x") is None
        with pytest.raises(ConnectError, match="lost the connection"):
            await pool.transport("lost").engine(call)
        await pool.close()

    with_helper(body, tmp_path)


def _unused(status: int, body: bytes) -> Result:
    raise AssertionError("the transport does not render")


def test_reverse_forwards_last_while_the_block_runs(tmp_path: Path) -> None:
    async def body(helper: Helper) -> None:
        pool = pool_for(helper)
        async with pool.reverse_forward(
            ["h1", "h2"], remote_port=5555, local_port=5555, local_host="127.0.0.1"
        ):
            script = ScriptPool.instances[0]
            assert script.forwards == [(("h1", "h2"), 5555, 5555, "127.0.0.1")]
            await asyncio.sleep(0.05)
            assert not script.forwards_closed
            assert (await pool.transport("h1").run(["pull"])).ok  # other requests meanwhile
        for _ in range(200):
            if script.forwards_closed:
                break
            await asyncio.sleep(0.005)
        assert script.forwards_closed
        with pytest.raises(ConnectError, match=r"refused to forward 127\.0\.0\.1:1"):
            async with pool.reverse_forward(["h1"], remote_port=1, local_port=1):
                pytest.fail("the block must not run when the forward failed")
        await pool.close()

    with_helper(body, tmp_path)


def test_a_command_whose_client_goes_away_is_stopped(tmp_path: Path) -> None:
    async def body(helper: Helper) -> None:
        pool = pool_for(helper)
        run = asyncio.ensure_future(pool.transport("h").run(["sleep"]))
        for _ in range(200):
            if ScriptPool.instances and ScriptPool.instances[0].calls:
                break
            await asyncio.sleep(0.005)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        for _ in range(200):
            if ScriptPool.instances[0].cancelled:
                break
            await asyncio.sleep(0.005)
        assert ScriptPool.instances[0].cancelled == ["h"]
        await pool.close()

    with_helper(body, tmp_path)


def test_sessions_are_separate_and_each_closes_its_own(tmp_path: Path) -> None:
    async def body(helper: Helper) -> None:
        first, second = pool_for(helper), pool_for(helper)
        await first.transport("h").run(["true"])
        await second.transport("h").run(["true"])
        assert len(ScriptPool.instances) == 2 and len(helper.sessions) == 2
        await first.close()
        await until(lambda: ScriptPool.instances[0].closed)
        assert [p.closed for p in ScriptPool.instances] == [True, False]
        assert (await second.transport("h").run(["true"])).ok
        await second.close()

    with_helper(body, tmp_path)


def test_without_a_helper_the_pool_does_its_ssh_work_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body() -> None:
        spawned: list[Path] = []
        monkeypatch.setattr(mux, "_spawn", lambda path, persist, environ: spawned.append(path))
        pool = MuxPool(SshOptions(), tmp_path / "none.sock", start_wait=0.05)
        outcomes = await pool.connect_all([])  # opens nothing, but decides
        assert outcomes == []
        assert spawned == [tmp_path / "none.sock"]
        assert pool.direct
        await pool.close()

    asyncio.run(body())


def test_a_helper_that_dies_at_start_is_noticed_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        mux, "_helper_argv", lambda path, persist: [sys.executable, "-c", "raise SystemExit(3)"]
    )

    async def body() -> None:
        # An hour's start_wait: only noticing the helper's exit can end connect_all before
        # the test's own guard (a hang guard, not a speed bound).
        pool = MuxPool(SshOptions(), tmp_path / "dies.sock", start_wait=3600)
        await asyncio.wait_for(pool.connect_all([]), 120)
        assert pool.direct
        await pool.close()

    asyncio.run(body())


def test_a_helper_that_does_not_answer_is_passed_over(tmp_path: Path) -> None:
    async def body() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # accepts, never answers

        path = tmp_path / "hung.sock"
        server = await asyncio.start_unix_server(silent, path=str(path))
        pool = MuxPool(SshOptions(), path, start_wait=0.3)
        await pool.connect_all([])
        assert pool.direct
        await pool.close()
        server.close()

    asyncio.run(body())


def test_an_idle_helper_exits_and_removes_its_socket(tmp_path: Path) -> None:
    async def body() -> None:
        server = Helper(tmp_path / "idle.sock", 0.2, pool_factory=ScriptPool)  # type: ignore[arg-type]
        task = asyncio.ensure_future(server.serve())
        await until(server.path.is_socket)  # it listened...
        await asyncio.wait_for(task, 5)  # ...then, idle, exited on its own
        assert not server.path.exists()

    asyncio.run(body())


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    async def body() -> None:
        path = tmp_path / "stale.sock"
        path.write_text("")
        server = Helper(path, 0.2, pool_factory=ScriptPool)  # type: ignore[arg-type]
        task = asyncio.ensure_future(server.serve())
        await until(path.is_socket)
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        await asyncio.wait_for(task, 5)

    asyncio.run(body())
