"""A warm SSH client process shared by consecutive commands (the client side).

Loading asyncssh and cryptography costs a Python process ~0.25 s, more than the SSH handshake
itself; for a short command such as ``dockyard app details`` that is a quarter of the run. So
the first command starts a helper process (:mod:`dockyard.remote.mux_server`) that has them
loaded, and every command after it, for ``DOCKYARD_SSH_PERSIST`` seconds of idleness (default
120; ``0`` turns the helper off), hands its SSH work to that process over a Unix socket instead
of loading them again.

Unlike OpenSSH's ControlPersist, connections are NOT shared between commands: each command
opens a *session* in the helper, which logs in to every host afresh (an ``SshPool`` of its own)
and closes those connections when the command ends (or dies: the session is a socket the helper
watches). So a command sees exactly what a direct login sees, e.g. a docker group added since
the last command, a changed host key, a new ``authorized_keys``.

Wire format: frames of one kind byte, a 4-byte big-endian length and the payload. A client
opens one connection per request; the first frame is ``Q`` with a JSON header; ``I`` frames
carry stdin (or upload) bytes, ``E`` ends them. The helper answers ``O`` / ``e`` (stdout /
stderr bytes, as they come), then ``R`` (JSON result) or ``X`` (JSON error). The socket lives in
a directory only the user can enter (``$XDG_RUNTIME_DIR/dockyard`` or ``/tmp/dockyard-UID``),
and the helper serves only peers with the user's uid.

When no helper can be used (no socket directory, it does not come up in time), the pool falls
back to a direct :class:`~dockyard.remote.ssh.SshPool` in this process; behaviour is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dockyard.errors import ConfigError, ConnectError, DockyardError, RemoteCommandError
from dockyard.remote._stream import LineSplitter, stdin_chunks
from dockyard.remote.argv import ArgvLike, command_stdin, display_command, remote_command
from dockyard.remote.fanout import HostOutcome, run_on_hosts
from dockyard.remote.options import SshOptions
from dockyard.remote.result import CommandTimeoutError, OutputCallback, Result, Stdin

if TYPE_CHECKING:
    from dockyard.remote.engine import EngineCall
    from dockyard.remote.ssh import SshPool

__all__ = [
    "DEFAULT_PERSIST",
    "FrameReader",
    "FrameStream",
    "MuxPool",
    "MuxTransport",
    "absolute_paths",
    "encode_error",
    "frame",
    "helper_socket",
    "make_pool",
    "options_from_json",
    "options_to_json",
    "persist_seconds",
    "socket_dir",
    "socket_path",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds an idle helper stays up when DOCKYARD_SSH_PERSIST is not set.
DEFAULT_PERSIST = 120.0
#: How long a command waits for a helper it started before doing its SSH work itself.
START_WAIT = 10.0
#: Largest frame either side accepts (stdin and output are sent in chunks well below it).
MAX_FRAME = 4 << 20
CHUNK = 256 << 10

_HEAD = struct.Struct(">cI")

# --------------------------------------------------------------------------- frames (sans-I/O)


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame: ``kind`` (one byte), the payload's length, the payload."""
    return _HEAD.pack(kind, len(payload)) + payload


def json_frame(kind: bytes, value: object) -> bytes:
    return frame(kind, json.dumps(value, separators=(",", ":")).encode())


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol."""


class FrameReader:
    """Splits a byte stream into frames: ``feed(data)`` returns the complete ones."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer += data
        frames: list[tuple[bytes, bytes]] = []
        while len(self._buffer) >= _HEAD.size:
            kind, size = _HEAD.unpack_from(self._buffer)
            if size > self._max:
                raise FrameError(f"frame of {size} bytes is over the {self._max} byte limit")
            end = _HEAD.size + size
            if len(self._buffer) < end:
                break
            frames.append((kind, bytes(self._buffer[_HEAD.size : end])))
            del self._buffer[:end]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)


class FrameStream:
    """Frames from an asyncio stream, one at a time; ``EOFError`` when the peer closed."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._frames = FrameReader()
        self._ready: list[tuple[bytes, bytes]] = []

    async def next(self) -> tuple[bytes, bytes]:
        while not self._ready:
            data = await self._reader.read(CHUNK)
            if not data:
                raise EOFError
            self._ready = self._frames.feed(data)
        return self._ready.pop(0)


# --------------------------------------------------------------------------- errors over the wire

_ERROR_KINDS: dict[str, type[DockyardError]] = {
    "connect": ConnectError,
    "timeout": CommandTimeoutError,
    "remote": RemoteCommandError,
    "error": DockyardError,
}


def encode_error(exc: DockyardError) -> dict[str, Any]:
    kind = "error"
    for name, cls in _ERROR_KINDS.items():
        if isinstance(exc, cls):
            kind = name
            break
    return {"kind": kind, "message": exc.message, "hint": exc.hint}


def decode_error(value: Mapping[str, Any]) -> DockyardError:
    cls = _ERROR_KINDS.get(str(value.get("kind")), DockyardError)
    hint = value.get("hint")
    return cls(str(value.get("message", "")), hint=None if hint is None else str(hint))


# --------------------------------------------------------------------------- settings


def persist_seconds(environ: Mapping[str, str]) -> float:
    """``DOCKYARD_SSH_PERSIST``: idle seconds of the helper; 0 (or off/no/false) turns it off."""
    raw = environ.get("DOCKYARD_SSH_PERSIST")
    if raw is None or raw.strip() == "":
        return DEFAULT_PERSIST
    text = raw.strip().lower()
    if text in ("off", "no", "false"):
        return 0.0
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(
            f"DOCKYARD_SSH_PERSIST: expected idle seconds (e.g. 120) or 0 to turn the SSH "
            f"helper off, got {raw!r}"
        )
    return value


def socket_dir(environ: Mapping[str, str]) -> Path | None:
    """A directory only this user can enter, for the helper's socket; None when there is none
    (then commands do their SSH work themselves)."""
    uid = os.getuid()
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        path = Path(runtime) / "dockyard"
    else:
        path = Path(tempfile.gettempdir()) / f"dockyard-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
        log.debug("not using %s for the SSH helper: not a private directory of uid %d", path, uid)
        return None
    return path


_CODE_FILES = (
    "mux.py",
    "mux_server.py",
    "ssh.py",
    "options.py",
    "argv.py",
    "_stream.py",
    "engine.py",
)


def _fingerprint(environ: Mapping[str, str]) -> str:
    """What a helper must share with its clients: this code (a changed file means a new
    helper), the interpreter, and the environment asyncssh reads (agent socket, home)."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _CODE_FILES:
        with contextlib.suppress(OSError):
            info = (here / name).stat()
            digest.update(f"{name}:{info.st_mtime_ns}:{info.st_size}\n".encode())
    for part in (sys.executable, environ.get("SSH_AUTH_SOCK", ""), environ.get("HOME", "")):
        digest.update(part.encode() + b"\n")
    return digest.hexdigest()[:16]


def socket_path(environ: Mapping[str, str]) -> Path | None:
    directory = socket_dir(environ)
    if directory is None:
        return None
    return directory / f"ssh-{_fingerprint(environ)}.sock"


def options_to_json(options: SshOptions) -> dict[str, Any]:
    return dataclasses.asdict(options)


def absolute_paths(options: SshOptions, cwd: str) -> SshOptions:
    """``options`` with relative key, known-hosts and config paths made absolute from ``cwd``
    (the helper runs elsewhere); ``~`` paths stay as they are (same user, same home)."""

    def fix(path: str) -> str:
        return path if path.startswith(("/", "~")) else os.path.join(cwd, path)

    config = options.config
    if isinstance(config, str):
        config = fix(config)
    elif isinstance(config, tuple):
        config = tuple(fix(p) for p in config)
    return dataclasses.replace(
        options,
        keys=tuple(fix(p) for p in options.keys),
        known_hosts=tuple(fix(p) for p in options.known_hosts),
        config=config,
    )


def options_from_json(value: Mapping[str, Any]) -> SshOptions:
    fields = {f.name for f in dataclasses.fields(SshOptions)}
    kwargs: dict[str, Any] = {}
    for name, item in value.items():
        if name not in fields:
            raise ValueError(f"unknown SSH option {name!r}")
        kwargs[name] = tuple(item) if isinstance(item, list) else item
    return SshOptions(**kwargs)


def helper_socket(environ: Mapping[str, str]) -> tuple[Path | None, float]:
    """The helper's socket and its idle seconds; no socket when DOCKYARD_SSH_PERSIST is 0 or
    there is no private directory for it."""
    persist = persist_seconds(environ)
    return (socket_path(environ) if persist > 0 else None), persist


def make_pool(options: SshOptions, environ: Mapping[str, str]) -> Any:
    """The pool a command uses: through the helper, unless DOCKYARD_SSH_PERSIST is 0 or
    ssh.log_level asks for asyncssh's own log (it belongs on this command's terminal)."""
    path, persist = (None, 0.0)
    if options.log_level.lower() not in ("debug", "info"):
        path, persist = helper_socket(environ)
    if path is None:
        from dockyard.remote.ssh import SshPool

        return SshPool(options)
    return MuxPool(options, path, persist=persist, environ=environ)


def prestart(environ: Mapping[str, str]) -> None:
    """Start the helper now if none runs, so that it loads while this command reads its
    config (it runs on the other core). Never fails: the pool falls back by itself."""
    try:
        path, persist = helper_socket(environ)
    except DockyardError:
        return
    if path is not None and not path.exists():
        _spawn(path, persist, environ)


#: Helpers this process started, by socket: a helper that dies before it listens is noticed
#: at once instead of after START_WAIT.
_STARTED: dict[Path, subprocess.Popen[bytes]] = {}


def _helper_argv(path: Path, persist: float) -> list[str]:
    return [sys.executable, "-m", "dockyard.remote.mux_server", str(path), f"{persist:g}"]


def _spawn(path: Path, persist: float, environ: Mapping[str, str]) -> None:
    log_file = path.with_suffix(".log")
    try:
        with open(log_file, "ab") as log_out:
            _STARTED[path] = subprocess.Popen(
                _helper_argv(path, persist),
                stdin=subprocess.DEVNULL,
                stdout=log_out,
                stderr=log_out,
                start_new_session=True,
                env=dict(environ),
                cwd="/",
            )
    except OSError as exc:
        log.debug("cannot start the SSH helper: %s", exc)


def _start_failed(path: Path) -> int | None:
    """The exit status of a helper this process started for ``path`` if it failed; None while
    it runs or when it exited 0 (another helper had the socket: wait for that one)."""
    proc = _STARTED.get(path)
    if proc is None:
        return None
    status = proc.poll()
    return status if status else None


# --------------------------------------------------------------------------- client


class MuxPool:
    """A :class:`~dockyard.remote.transport.HostPool` whose SSH work runs in the helper.

    The first use opens a session there (the helper logs in to hosts on demand with these
    options); the session ends with :meth:`close` or with this process.
    """

    def __init__(
        self,
        options: SshOptions,
        path: Path,
        *,
        persist: float = DEFAULT_PERSIST,
        environ: Mapping[str, str] | None = None,
        start_wait: float = START_WAIT,
    ) -> None:
        self.options = options
        self.path = path
        self.persist = persist
        self._environ = dict(os.environ if environ is None else environ)
        self._wire = absolute_paths(options, os.getcwd())
        self._start_wait = start_wait
        self._lock: asyncio.Lock | None = None
        self._session: str | None = None
        self._session_writer: asyncio.StreamWriter | None = None
        self._direct: SshPool | None = None
        self._closed = False

    # -- HostPool

    def transport(self, host: str) -> MuxTransport:
        return MuxTransport(self, host)

    @property
    def direct(self) -> bool:
        """Whether this pool fell back to doing its SSH work in this process."""
        return self._direct is not None

    async def connect_all(self, hosts: Sequence[str]) -> list[HostOutcome[None]]:
        session = await self._ensure()
        if session is None:
            assert self._direct is not None
            return await self._direct.connect_all(hosts)
        reply = await self._request({"op": "connect", "session": session, "hosts": list(hosts)})
        outcomes: list[HostOutcome[None]] = []
        for item in reply["outcomes"]:
            error = item.get("error")
            outcomes.append(
                HostOutcome(
                    str(item["host"]),
                    error=None if error is None else decode_error(error),
                    cancelled=bool(item.get("cancelled")),
                )
            )
        return outcomes

    async def on(
        self,
        hosts: Sequence[str],
        fn: Callable[[MuxTransport], Awaitable[T]],
        *,
        fail_fast: bool = False,
    ) -> list[HostOutcome[T]]:
        async def one(host: str) -> T:
            return await fn(self.transport(host))

        return await run_on_hosts(
            hosts, one, limit=self.options.max_concurrent_starts, fail_fast=fail_fast
        )

    @contextlib.asynccontextmanager
    async def reverse_forward(
        self,
        hosts: Sequence[str],
        *,
        remote_port: int,
        local_port: int,
        local_host: str = "localhost",
        remote_host: str = "127.0.0.1",
    ) -> AsyncIterator[None]:
        """:meth:`SshPool.reverse_forward <dockyard.remote.ssh.SshPool.reverse_forward>`, set up
        by the helper (on this machine, so ``local_host`` means the same) for as long as the
        block runs."""
        session = await self._ensure()
        if session is None:
            assert self._direct is not None
            async with self._direct.reverse_forward(
                hosts,
                remote_port=remote_port,
                local_port=local_port,
                local_host=local_host,
                remote_host=remote_host,
            ):
                yield
            return
        header = {
            "op": "forward",
            "session": session,
            "hosts": list(hosts),
            "remote_port": remote_port,
            "local_port": local_port,
            "local_host": local_host,
            "remote_host": remote_host,
        }
        async with self._held_request(header, what=" while forwarding a port"):
            yield

    @contextlib.asynccontextmanager
    async def _held_request(self, header: dict[str, Any], *, what: str) -> AsyncIterator[None]:
        """A request whose effect lasts while its connection stays open (after its R)."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.path))
        except OSError as exc:
            raise _helper_gone(self.path, what, exc) from exc
        try:
            writer.write(json_frame(b"Q", header))
            try:
                kind, payload = await FrameStream(reader).next()
            except (EOFError, OSError, FrameError) as exc:
                raise _helper_gone(self.path, what, exc) from exc
            if kind == b"X":
                raise decode_error(json.loads(payload))
            if kind != b"R":
                raise _helper_gone(self.path, what, FrameError(f"unexpected frame {kind!r}"))
            yield
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        self._closed = True
        if self._direct is not None:
            await self._direct.close()
        writer, self._session_writer = self._session_writer, None
        if writer is not None:
            # the helper closes the session's connections when this socket closes
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # -- internals

    async def _ensure(self) -> str | None:
        """The session id, opening the session (and starting the helper) on first use; None
        when this pool does its SSH work itself."""
        if self._closed:
            raise ConnectError("ssh: connection pool already closed")
        if self._session is not None or self._direct is not None:
            return self._session
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._session is None and self._direct is None:
                await self._open_session()
        return self._session

    async def _open_session(self) -> None:
        deadline = time.monotonic() + self._start_wait
        spawned = False
        delay = 0.005
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if not spawned:
                    if isinstance(exc, ConnectionRefusedError):
                        # a helper died without removing its socket
                        with contextlib.suppress(OSError):
                            self.path.unlink()
                    if not self.path.exists():
                        _spawn(self.path, self.persist, self._environ)
                    spawned = True
                failed = _start_failed(self.path)
                if failed is not None:
                    log_file = self.path.with_suffix(".log")
                    return self._fall_back(f"it exited with status {failed}; see {log_file}")
                if time.monotonic() >= deadline:
                    return self._fall_back("it did not start in time")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            except OSError as exc:
                return self._fall_back(str(exc))
            try:
                writer.write(
                    json_frame(b"Q", {"op": "open", "options": options_to_json(self._wire)})
                )
                # a helper that accepts but does not answer (stopped, hung) is passed over
                kind, payload = await asyncio.wait_for(FrameStream(reader).next(), self._start_wait)
            except TimeoutError:
                writer.close()
                return self._fall_back(f"it did not answer in {self._start_wait:g}s")
            except (OSError, EOFError, FrameError) as exc:
                writer.close()
                return self._fall_back(f"it closed the session ({exc or 'end of stream'})")
            if kind != b"R":
                writer.close()
                detail = json.loads(payload).get("message", "") if kind == b"X" else repr(kind)
                return self._fall_back(f"it refused the session: {detail}")
            self._session = str(json.loads(payload)["session"])
            self._session_writer = writer
            log.debug("ssh: session %s in the helper at %s", self._session, self.path)
            return None

    def _fall_back(self, why: str) -> None:
        from dockyard.remote.ssh import SshPool

        log.debug("ssh: not using the helper at %s (%s); connecting directly", self.path, why)
        self._direct = SshPool(self.options)

    async def _request(
        self,
        header: dict[str, Any],
        *,
        data: Stdin | None = None,
        out: LineSplitter | _Collect | None = None,
        err: LineSplitter | None = None,
        what: str = "",
    ) -> dict[str, Any]:
        """One request on its own connection: the header, then ``data`` as I frames and E
        (when ``header['stdin']``), streamed output to ``out`` / ``err``; the R payload."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.path))
        except OSError as exc:
            raise _helper_gone(self.path, what, exc) from exc
        feeder: asyncio.Task[None] | None = None
        try:
            writer.write(json_frame(b"Q", header))
            if header.get("stdin"):
                feeder = asyncio.ensure_future(_send_data(writer, data))
            frames = FrameStream(reader)
            while True:
                kind, payload = await frames.next()
                if kind == b"O" and out is not None:
                    out.feed(payload)
                elif kind == b"e" and err is not None:
                    err.feed(payload)
                elif kind == b"R":
                    return dict(json.loads(payload))
                elif kind == b"X":
                    raise decode_error(json.loads(payload))
        except (EOFError, OSError, FrameError) as exc:
            raise _helper_gone(self.path, what, exc) from exc
        finally:
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(BaseException):
                    await feeder
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _helper_gone(path: Path, what: str, exc: BaseException) -> ConnectError:
    return ConnectError(
        f"ssh: lost the SSH helper at {path}{what}: {exc or 'it closed the connection'}",
        hint="run the command again (DOCKYARD_SSH_PERSIST=0 does the SSH work in the command "
        "itself)",
    )


async def _send_data(writer: asyncio.StreamWriter, data: Stdin | None) -> None:
    async for chunk in stdin_chunks(data):
        for start in range(0, len(chunk), CHUNK):
            writer.write(frame(b"I", chunk[start : start + CHUNK]))
            await writer.drain()
    writer.write(frame(b"E"))
    await writer.drain()


class MuxTransport:
    """A :class:`~dockyard.remote.transport.Transport` for one host of a :class:`MuxPool`."""

    def __init__(self, pool: MuxPool, host: str) -> None:
        self._pool = pool
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
        session = await self._pool._ensure()
        if session is None:
            assert self._pool._direct is not None
            return await self._pool._direct.transport(self._host).run(
                argv, stdin=stdin, timeout=timeout, env=env, on_output=on_output
            )
        if stdin is None:
            stdin = command_stdin(argv)
        display = display_command(argv)
        out = LineSplitter(self._host, "stdout", on_output)
        err = LineSplitter(self._host, "stderr", on_output)
        header = {
            "op": "run",
            "session": session,
            "host": self._host,
            "command": remote_command(argv, env, timeout=timeout),
            "display": display,
            "timeout": timeout,
            "stdin": stdin is not None,
        }
        reply = await self._pool._request(
            header, data=stdin, out=out, err=err, what=f" while running {display}"
        )
        out.feed(b"", final=True)
        err.feed(b"", final=True)
        status = reply.get("status")
        return Result(None if status is None else int(status), out.text(), err.text())

    async def put(self, data: bytes, path: str, *, mode: int = 0o600) -> None:
        session = await self._pool._ensure()
        if session is None:
            assert self._pool._direct is not None
            return await self._pool._direct.transport(self._host).put(data, path, mode=mode)
        header = {
            "op": "put",
            "session": session,
            "host": self._host,
            "path": path,
            "mode": mode,
            "stdin": True,
        }
        await self._pool._request(header, data=bytes(data), what=f" while uploading {path}")
        return None

    async def get(self, path: str, local: Path) -> None:
        session = await self._pool._ensure()
        if session is None:
            assert self._pool._direct is not None
            return await self._pool._direct.transport(self._host).get(path, local)
        header = {
            "op": "get",
            "session": session,
            "host": self._host,
            "path": path,
            "local": str(Path(local).absolute()),
        }
        await self._pool._request(header, what=f" while downloading {path}")
        return None

    async def engine(
        self, call: EngineCall, *, timeout: float | None = None
    ) -> tuple[int, bytes] | None:
        """:meth:`SshTransport.engine <dockyard.remote.ssh.SshTransport.engine>` in the
        helper (the body travels as O frames)."""
        session = await self._pool._ensure()
        if session is None:
            assert self._pool._direct is not None
            return await self._pool._direct.transport(self._host).engine(call, timeout=timeout)
        header = {
            "op": "engine",
            "session": session,
            "host": self._host,
            "method": call.method,
            "path": call.path,
            "body": None if call.body is None else call.body.decode("latin-1"),
            "timeout": timeout,
        }
        body = _Collect()
        reply = await self._pool._request(
            header, out=body, what=f" while asking docker ({call.method} {call.path})"
        )
        status = reply.get("status")
        return None if status is None else (int(status), body.data())

    async def unix_call(
        self, path: str, data: bytes, *, timeout: float | None = None
    ) -> bytes | None:
        """:meth:`SshTransport.unix_call <dockyard.remote.ssh.SshTransport.unix_call>` in the
        helper (the answer travels as O frames)."""
        session = await self._pool._ensure()
        if session is None:
            assert self._pool._direct is not None
            transport = self._pool._direct.transport(self._host)
            return await transport.unix_call(path, data, timeout=timeout)
        header = {
            "op": "unix",
            "session": session,
            "host": self._host,
            "path": path,
            "data": data.decode("latin-1"),
            "timeout": timeout,
        }
        answer = _Collect()
        reply = await self._pool._request(header, out=answer, what=f" while talking to {path}")
        return answer.data() if reply.get("reached") else None

    async def close(self) -> None:
        return None


class _Collect:
    """The raw bytes of O frames (an Engine API answer's body)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def feed(self, data: bytes, final: bool = False) -> None:
        self._chunks.append(data)

    def data(self) -> bytes:
        return b"".join(self._chunks)
