"""The SSH helper process: ``python -m dockyard.remote.mux_server SOCKET PERSIST``.

Started by :mod:`dockyard.remote.mux` (which documents why and the wire format). It keeps
asyncssh loaded, serves the sessions of the commands that connect to ``SOCKET`` (one
:class:`~dockyard.remote.ssh.SshPool` per session, closed when the session's socket closes)
and exits after ``PERSIST`` seconds without any session or request. One helper per socket: a
second one started at the same time finds the lock taken and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError
from dockyard.remote.engine import EngineCall
from dockyard.remote.mux import (
    CHUNK,
    FrameError,
    FrameStream,
    encode_error,
    frame,
    json_frame,
    options_from_json,
)
from dockyard.remote.options import SshOptions
from dockyard.remote.ssh import SshPool

__all__ = ["Helper", "main"]

log = logging.getLogger("dockyard.ssh-helper")

#: Stdin chunks buffered per request before the helper stops reading from the client.
STDIN_QUEUE = 16


def _no_render(status: int, body: bytes) -> Any:
    raise AssertionError("the helper passes Engine API answers on; the client renders them")


def _send_output(writer: asyncio.StreamWriter, data: bytes) -> None:
    """``data`` to the client as O frames of at most CHUNK bytes."""
    out = _Forward(writer, b"O")
    for start in range(0, len(data), CHUNK):
        out.feed(data[start : start + CHUNK])


class _Forward:
    """A byte sink that sends what it is fed to the client as frames of one kind."""

    def __init__(self, writer: asyncio.StreamWriter, kind: bytes) -> None:
        self._writer = writer
        self._kind = kind

    def feed(self, data: bytes, *, final: bool = False) -> None:
        if data and not self._writer.is_closing():
            self._writer.write(frame(self._kind, data))


class Helper:
    """Serves sessions on ``path``; ``pool_factory`` makes each session's pool (the real
    :class:`SshPool`; unit tests pass a scripted one)."""

    def __init__(
        self,
        path: Path,
        persist: float,
        pool_factory: Callable[[SshOptions], SshPool] = SshPool,
    ) -> None:
        self.path = path
        self.persist = persist
        self.pool_factory = pool_factory
        self.sessions: dict[str, SshPool] = {}
        self.active = 0
        self.last = time.monotonic()
        self._stop = asyncio.Event()

    async def serve(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        mask = os.umask(0o077)
        try:
            server = await asyncio.start_unix_server(self._client, path=str(self.path))
        finally:
            os.umask(mask)
        os.chmod(self.path, 0o600)
        inode = self.path.stat().st_ino
        log.info(
            "serving on %s (pid %d, idle exit after %gs)", self.path, os.getpid(), self.persist
        )
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=min(1.0, self.persist / 4))
                if self.active == 0 and time.monotonic() - self.last > self.persist:
                    break
        finally:
            server.close()
            with contextlib.suppress(OSError):
                if self.path.stat().st_ino == inode:
                    self.path.unlink()
            pools = list(self.sessions.values())
            self.sessions.clear()
            for pool in pools:
                with contextlib.suppress(Exception):
                    await pool.close()

    # ------------------------------------------------------------------ requests

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.active += 1
        try:
            if not _same_user(writer):
                return
            frames = FrameStream(reader)
            kind, payload = await frames.next()
            if kind != b"Q":
                return
            await self._dispatch(_Request(json.loads(payload), frames, writer))
        except (EOFError, FrameError, ValueError, KeyError, TypeError, OSError) as exc:
            log.debug("dropped a client: %r", exc)
        finally:
            self.active -= 1
            self.last = time.monotonic()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, request: _Request) -> None:
        op = request.header.get("op")
        if op == "open":
            await self._session(request)
            return
        if op == "info":
            sessions = len(self.sessions)
            request.reply({"pid": os.getpid(), "sessions": sessions, "persist": self.persist})
            return
        if op == "exit":
            self._stop.set()
            request.reply({})
            return
        pool = self.sessions.get(str(request.header.get("session")))
        if pool is None:
            request.fail("connect", "ssh: the SSH helper has no such session")
            return
        handler = {
            "connect": self._connect,
            "run": self._run,
            "put": self._put,
            "get": self._get,
            "forward": self._forward,
            "engine": self._engine,
            "unix": self._unix,
        }.get(str(op))
        if handler is None:
            request.fail("error", f"ssh helper: unknown request {op!r}")
            return
        try:
            reply = await handler(request, pool)
        except DockyardError as exc:
            request.writer.write(json_frame(b"X", encode_error(exc)))
            return
        except _ClientGone:
            return
        except Exception as exc:  # a bug: say so rather than leave the client waiting
            log.exception("request %s failed", op)
            request.fail("error", f"ssh helper: internal error: {exc!r}")
            return
        if reply is not None:
            request.reply(reply)

    async def _connect(self, request: _Request, pool: SshPool) -> dict[str, Any]:
        outcomes = await pool.connect_all([str(h) for h in request.header["hosts"]])
        listed = [
            {
                "host": o.host,
                "error": None if o.error is None else encode_error(o.error),
                "cancelled": o.cancelled,
            }
            for o in outcomes
        ]
        return {"outcomes": listed}

    async def _run(self, request: _Request, pool: SshPool) -> dict[str, Any]:
        header = request.header
        transport = pool.transport(str(header["host"]))
        queue: asyncio.Queue[bytes | None] | None = None
        if header.get("stdin"):
            queue = asyncio.Queue(STDIN_QUEUE)
        timeout = header.get("timeout")
        run = asyncio.ensure_future(
            transport.run_line(
                str(header["command"]),
                str(header.get("display", "")),
                stdin=None if queue is None else _drain_queue(queue),
                timeout=None if timeout is None else float(timeout),
                out=_Forward(request.writer, b"O"),
                err=_Forward(request.writer, b"e"),
            )
        )
        watch = asyncio.ensure_future(_watch(request.frames, queue))
        try:
            await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                # the client went away (or broke the protocol): stop the command
                run.cancel()
                with contextlib.suppress(BaseException):
                    await run
                raise _ClientGone
            return {"status": run.result()}
        finally:
            for task in (run, watch):
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: the outcome was handled above
                task.cancel()

    async def _put(self, request: _Request, pool: SshPool) -> dict[str, Any]:
        chunks: list[bytes] = []
        while True:
            kind, payload = await request.frames.next()
            if kind == b"E":
                break
            if kind != b"I":
                raise FrameError(f"unexpected frame {kind!r} in an upload")
            chunks.append(payload)
        header = request.header
        transport = pool.transport(str(header["host"]))
        await transport.put(b"".join(chunks), str(header["path"]), mode=int(header["mode"]))
        return {}

    async def _get(self, request: _Request, pool: SshPool) -> dict[str, Any]:
        header = request.header
        transport = pool.transport(str(header["host"]))
        await transport.get(str(header["path"]), Path(str(header["local"])))
        return {}

    async def _engine(self, request: _Request, pool: SshPool) -> dict[str, Any]:
        header = request.header
        body = header.get("body")
        call = EngineCall(
            str(header["method"]),
            str(header["path"]),
            _no_render,
            None if body is None else str(body).encode("latin-1"),
        )
        timeout = header.get("timeout")
        answered = await pool.transport(str(header["host"])).engine(
            call, timeout=None if timeout is None else float(timeout)
        )
        if answered is None:
            return {"status": None}
        status, data = answered
        _send_output(request.writer, data)
        return {"status": status}

    async def _unix(self, request: _Request, pool: SshPool) -> dict[str, Any]:
        header = request.header
        timeout = header.get("timeout")
        data = await pool.transport(str(header["host"])).unix_call(
            str(header["path"]),
            str(header["data"]).encode("latin-1"),
            timeout=None if timeout is None else float(timeout),
        )
        if data is None:
            return {"reached": False}
        _send_output(request.writer, data)
        return {"reached": True}

    async def _forward(self, request: _Request, pool: SshPool) -> None:
        """Reverse forwards that last as long as the client keeps this request open."""
        header = request.header
        forwards = pool.reverse_forward(
            [str(h) for h in header["hosts"]],
            remote_port=int(header["remote_port"]),
            local_port=int(header["local_port"]),
            local_host=str(header["local_host"]),
            remote_host=str(header["remote_host"]),
        )
        async with forwards:
            request.reply({})
            await request.until_closed()

    async def _session(self, request: _Request) -> None:
        try:
            options = options_from_json(request.header["options"])
        except (DockyardError, ValueError, TypeError, KeyError) as exc:
            request.fail("error", exc.message if isinstance(exc, DockyardError) else str(exc))
            return
        session = os.urandom(8).hex()
        pool = self.pool_factory(options)
        self.sessions[session] = pool
        try:
            request.reply({"session": session})
            await request.until_closed()  # the session lasts until the client closes
        finally:
            self.sessions.pop(session, None)
            await pool.close()


@dataclass(frozen=True, slots=True)
class _Request:
    """One client connection: its header (the Q frame), the frames after it, the writer."""

    header: dict[str, Any]
    frames: FrameStream
    writer: asyncio.StreamWriter

    def reply(self, value: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(json_frame(b"R", value))

    def fail(self, kind: str, message: str) -> None:
        if not self.writer.is_closing():
            self.writer.write(json_frame(b"X", {"kind": kind, "message": message}))

    async def until_closed(self) -> None:
        """Wait for the client to close (anything it sends meanwhile is ignored)."""
        with contextlib.suppress(EOFError, FrameError, OSError):
            while True:
                await self.frames.next()


class _ClientGone(Exception):
    pass


async def _drain_queue(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while True:
        chunk = await queue.get()
        if chunk is None:
            return
        yield chunk


async def _watch(frames: FrameStream, queue: asyncio.Queue[bytes | None] | None) -> None:
    """Pass stdin frames on, then wait for the client to close (which ends the request)."""
    stdin_open = queue is not None
    try:
        while True:
            kind, payload = await frames.next()
            if stdin_open and queue is not None and kind == b"I":
                await queue.put(payload)
            elif stdin_open and queue is not None and kind == b"E":
                await queue.put(None)
                stdin_open = False
            else:
                raise FrameError(f"unexpected frame {kind!r}")
    except (EOFError, OSError):
        if stdin_open and queue is not None:
            queue.put_nowait(None)
        raise EOFError from None


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True  # the socket's directory is private to the user anyway
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m dockyard.remote.mux_server SOCKET PERSIST_SECONDS\n")
        return 2
    path, persist = Path(args[0]), float(args[1])
    # stdout/stderr go to SOCKET.log: problems only, so that it stays empty when all is well
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s ssh-helper[%(process)d] %(message)s"
    )
    lock_path = path.with_suffix(".lock")
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another helper serves this socket
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(Helper(path, persist).serve())
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        log_path = path.with_suffix(".log")
        with contextlib.suppress(OSError):
            if log_path.stat().st_size == 0:
                log_path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
