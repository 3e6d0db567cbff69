"""Run argv on this machine: asyncio subprocess with an argument list, never a shell."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path

from dockyard.errors import RemoteCommandError
from dockyard.remote._stream import LineSplitter, drain, stdin_chunks
from dockyard.remote.argv import ArgvLike, command_stdin, display_command, local_args
from dockyard.remote.result import CommandTimeoutError, OutputCallback, Result, Stdin
from dockyard.remote.transport import CliOnly

__all__ = ["LocalTransport"]

log = logging.getLogger(__name__)


class LocalTransport(CliOnly):
    """A :class:`~dockyard.remote.transport.Transport` for the local machine."""

    def __init__(self, host: str = "localhost") -> None:
        self._host = host

    @property
    def host(self) -> str:
        return self._host

    async def run(
        self,
        argv: ArgvLike,
        *,
        stdin: Stdin | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        on_output: OutputCallback | None = None,
    ) -> Result:
        args = local_args(argv)
        log.debug("local %s: %s", self._host, display_command(argv))
        if stdin is None:
            stdin = command_stdin(argv)
        full_env = None if env is None else {**os.environ, **env}
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=full_env,
                start_new_session=True,  # its own process group, killed as a whole on timeout
            )
        except FileNotFoundError:
            return Result(127, "", f"{args[0]}: command not found\n")
        except PermissionError:
            return Result(126, "", f"{args[0]}: permission denied\n")
        except OSError as exc:
            raise RemoteCommandError(
                f"local: cannot start {display_command(argv)}: {exc.strerror or exc}"
            ) from exc

        out = LineSplitter(self._host, "stdout", on_output)
        err = LineSplitter(self._host, "stderr", on_output)

        async def feed_stdin() -> None:
            if proc.stdin is None:
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                async for chunk in stdin_chunks(stdin):
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
            proc.stdin.close()

        assert proc.stdout is not None and proc.stderr is not None
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(feed_stdin(), drain(proc.stdout, out), drain(proc.stderr, err))
                status = await proc.wait()
        except TimeoutError as exc:
            await _kill(proc)
            raise CommandTimeoutError(
                f"command timed out after {timeout:g}s on {self._host}: {display_command(argv)}",
                hint="raise the timeout or check why the command hangs",
            ) from exc
        except BaseException:
            await _kill(proc)
            raise
        return Result(status, out.text(), err.text())

    async def put(self, data: bytes, path: str, *, mode: int = 0o600) -> None:
        """Write ``data`` to ``path`` atomically with ``mode``, creating parent directories."""
        target = Path(path)
        try:
            await asyncio.to_thread(_write_file, target, data, mode)
        except OSError as exc:
            raise RemoteCommandError(f"local: cannot write {path}: {exc.strerror or exc}") from exc

    async def get(self, path: str, local: Path) -> None:
        """Copy ``path`` to ``local`` (the "remote" side is this machine)."""
        try:
            data = await asyncio.to_thread(Path(path).read_bytes)
            await asyncio.to_thread(_write_file, local, data, 0o600)
        except OSError as exc:
            raise RemoteCommandError(f"local: cannot copy {path}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        return None


def _write_file(target: Path, data: bytes, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.dockyard-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
