"""SSH backend: one asyncssh connection per host, many bounded channels on it.

:class:`SshPool` owns the connections (opened concurrently, reused for the whole run, closed
with the pool) and hands out one :class:`SshTransport` per host. Every asyncssh or socket
error is translated here into a ``ConnectError`` / ``RemoteCommandError`` that names the layer,
the host and what to do; asyncssh exceptions never leave this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from dockyard.errors import ConnectError, DockyardError, RemoteCommandError
from dockyard.remote._stream import ByteSink, LineSplitter, drain, stdin_chunks
from dockyard.remote.argv import (
    REMOTE_KILL_GRACE,
    ArgvLike,
    command_stdin,
    display_command,
    remote_command,
)
from dockyard.remote.engine import (
    PING,
    EngineCall,
    EngineUnavailable,
    ResponseReader,
    request_bytes,
)
from dockyard.remote.fanout import HostOutcome, raise_for_failures, run_on_hosts
from dockyard.remote.options import (
    LOG_LEVELS,
    JumpHost,
    SshOptions,
    check_files,
    connect_kwargs,
    format_target,
    resolve_known_hosts,
)
from dockyard.remote.result import CommandTimeoutError, OutputCallback, Result, Stdin

if TYPE_CHECKING:
    import asyncssh
else:  # without its 0.1-0.2 s search for the optional liboqs (see remote._asyncssh)
    from dockyard.remote._asyncssh import import_asyncssh

    asyncssh = import_asyncssh()

__all__ = [
    "REMOTE_KILL_GRACE",
    "SshPool",
    "SshTransport",
    "remote_command",
    "translate_connect_error",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# --------------------------------------------------------------------------- errors


def _host_key_is_known(known_hosts: list[str], host: str, port: int) -> bool:
    """Whether any trusted key is recorded for host:port (then the key has changed)."""
    if not known_hosts:
        return False
    try:
        trusted = asyncssh.match_known_hosts(known_hosts, host, host, None if port == 22 else port)
    except (OSError, ValueError, asyncssh.Error):
        return False
    return bool(trusted[0]) or bool(trusted[1])


def translate_connect_error(
    exc: BaseException,
    *,
    user: str,
    host: str,
    port: int,
    known_hosts: list[str],
    timeout: float | None = None,
    what: str = "",
) -> ConnectError:
    """Turn an error raised while connecting into a ConnectError a user can act on."""
    target = format_target(user, host, port)
    where = f"{what}{target}"
    files = ", ".join(known_hosts) or "no known_hosts file"
    keyscan = (
        f"ssh-keyscan -p {port} {host} >> {known_hosts[0] if known_hosts else '~/.ssh/known_hosts'}"
    )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        if _host_key_is_known(known_hosts, host, port):
            name = host if port == 22 else f"[{host}]:{port}"
            return ConnectError(
                f"ssh: host key of {where} has CHANGED since it was recorded in {files}",
                hint=(
                    "if the server was rebuilt, remove the old key with "
                    f"`ssh-keygen -R '{name}'` and add the new one with `{keyscan}` after "
                    "checking its fingerprint; otherwise someone may be intercepting the "
                    "connection"
                ),
            )
        return ConnectError(
            f"ssh: host key of {where} is unknown (not in {files})",
            hint=(
                f"check the server's key fingerprint, then add it with `{keyscan}` "
                "(or point ssh.known_hosts at a file that has it)"
            ),
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return ConnectError(
            f"ssh: authentication refused by {where}",
            hint=(
                f"check ssh.user ({user}) and ssh.keys, and that the public key is in "
                f"~{user}/.ssh/authorized_keys on the server"
            ),
        )
    if isinstance(exc, asyncssh.KeyImportError):
        return ConnectError(
            f"ssh: cannot load a private key for {where}: {exc}",
            hint="keys must be unencrypted or held by ssh-agent; check ssh.keys / ssh.key_data",
        )
    if isinstance(exc, TimeoutError):
        limit = f" after {timeout:g}s" if timeout else ""
        return ConnectError(
            f"ssh: cannot reach {where}: timed out{limit}",
            hint="check the address, the firewall and ssh.connect_timeout",
        )
    if isinstance(exc, socket.gaierror):
        return ConnectError(
            f"ssh: cannot reach {where}: cannot resolve host name ({exc.strerror or exc})",
            hint="check the host name in servers / ssh.proxy and your DNS",
        )
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(
            f"ssh: cannot reach {where}: connection refused",
            hint="is sshd running there, and is ssh.port right?",
        )
    if isinstance(exc, OSError):
        return ConnectError(
            f"ssh: cannot reach {where}: {exc.strerror or exc}",
            hint="check the address, the network route and the firewall",
        )
    if isinstance(exc, ValueError):
        return ConnectError(f"ssh: cannot connect to {where}: invalid SSH settings: {exc}")
    if isinstance(exc, asyncssh.DisconnectError):
        return ConnectError(f"ssh: connection to {where} failed: {exc.reason}")
    if isinstance(exc, asyncssh.Error):
        return ConnectError(f"ssh: connection to {where} failed: {exc.reason}")
    return ConnectError(f"ssh: connection to {where} failed: {exc}")


# --------------------------------------------------------------------------- pool


@dataclass
class _Entry:
    conn: asyncssh.SSHClientConnection | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    channels: asyncio.Semaphore | None = None
    active: int = 0
    last_used: float = 0.0
    #: The last connect failure and a counter of failures, so that callers who queued behind
    #: a failing attempt get its error instead of each waiting out another attempt.
    error: ConnectError | None = None
    failures: int = 0
    #: The Engine API over this connection: None until tried, then whether it answers;
    #: channels to the socket kept open between requests (HTTP keep-alive).
    engine: bool | None = None
    engine_idle: list[tuple[Any, Any]] = field(default_factory=list)


class SshPool:
    """One SSH connection per host, reused for the whole run.

    Use as ``async with SshPool(options) as pool:``; ``await pool.connect_all(hosts)`` opens
    the connections concurrently (at most ``max_concurrent_starts`` handshakes at a time) and
    reports per host; ``pool.transport(host)`` gives a Transport that connects on first use if
    needed. Channels per connection are bounded by ``max_channels`` (OpenSSH ``MaxSessions``
    defaults to 10). A connection idle for ``pool_idle_timeout`` or lost is reopened on next use.
    """

    def __init__(self, options: SshOptions | None = None) -> None:
        self.options = options or SshOptions()
        self._entries: dict[str, _Entry] = {}
        self._starts: asyncio.Semaphore | None = None
        self._jump: asyncssh.SSHClientConnection | None = None
        self._jump_lock: asyncio.Lock | None = None
        self._keys: list[asyncssh.SSHKey] | None = None
        self._prepared = False
        self._closed = False

    async def __aenter__(self) -> SshPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ public

    def transport(self, host: str) -> SshTransport:
        return SshTransport(self, host)

    def target(self, host: str) -> str:
        return self.options.target(host)

    async def connect_all(self, hosts: Sequence[str]) -> list[HostOutcome[None]]:
        """Open connections to every host concurrently; one outcome per host."""

        async def one(host: str) -> None:
            await self._connection(host)

        return await run_on_hosts(hosts, one, limit=len(hosts) or 1)

    async def on(
        self,
        hosts: Sequence[str],
        fn: Callable[[SshTransport], Awaitable[T]],
        *,
        fail_fast: bool = False,
    ) -> list[HostOutcome[T]]:
        """Run ``fn(transport)`` on every host in parallel (Kamal's ``on(hosts)``), at most
        ``max_concurrent_starts`` at a time; one outcome per host."""

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
        """While the block runs, ``remote_host:remote_port`` on every host leads back to
        ``local_host:local_port`` here (an SSH reverse forward, as Kamal does for a local
        registry during pulls). All forwards are set up before the block starts and closed
        after it; if any host fails, the others are closed and one error names each failure.
        """
        listeners: dict[str, asyncssh.SSHListener] = {}

        async def one(host: str) -> None:
            conn = await self._connection(host)
            try:
                listeners[host] = await conn.forward_remote_port(
                    remote_host, remote_port, local_host, local_port
                )
            except asyncssh.ChannelListenError as exc:
                raise ConnectError(
                    f"ssh: {self.target(host)} refused to forward {remote_host}:{remote_port} "
                    f"back to {local_host}:{local_port}: {exc}",
                    hint="the server needs AllowTcpForwarding yes, and the port must be free there",
                ) from exc
            except (OSError, asyncssh.Error) as exc:
                raise ConnectError(
                    f"ssh: lost the connection to {self.target(host)} while setting up a "
                    f"port forward: {_reason(exc)}"
                ) from exc

        try:
            outcomes = await run_on_hosts(hosts, one, limit=self.options.max_concurrent_starts)
            raise_for_failures(outcomes)
            yield
        finally:
            for listener in listeners.values():
                listener.close()
            for listener in listeners.values():
                with contextlib.suppress(Exception):
                    await listener.wait_closed()

    def connected_hosts(self) -> list[str]:
        return [
            h for h, e in self._entries.items() if e.conn is not None and not e.conn.is_closed()
        ]

    async def close(self) -> None:
        """Close every connection (and the jump host's) and wait until they are closed."""
        self._closed = True
        conns = [e.conn for e in self._entries.values() if e.conn is not None]
        for entry in self._entries.values():
            entry.conn = None
        if self._jump is not None:
            conns.append(self._jump)
            self._jump = None
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    # ------------------------------------------------------------------ internals

    def _prepare(self) -> None:
        if self._prepared:
            return
        check_files(self.options)
        keys: list[asyncssh.SSHKey] = []
        for index, pem in enumerate(self.options.key_data):
            try:
                keys.append(asyncssh.import_private_key(pem))
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise ConnectError(
                    f"ssh: ssh.key_data[{index}] is not a usable private key: {exc}"
                ) from exc
        self._keys = keys
        logging.getLogger("asyncssh").setLevel(LOG_LEVELS[self.options.log_level.lower()])
        self._starts = asyncio.Semaphore(self.options.max_concurrent_starts)
        self._jump_lock = asyncio.Lock()
        self._prepared = True

    def _entry(self, host: str) -> _Entry:
        entry = self._entries.get(host)
        if entry is None:
            entry = _Entry(channels=asyncio.Semaphore(self.options.max_channels))
            self._entries[host] = entry
        return entry

    def _expired(self, entry: _Entry) -> bool:
        if entry.conn is None or entry.conn.is_closed():
            return True
        idle = time.monotonic() - entry.last_used
        return entry.active == 0 and idle > self.options.pool_idle_timeout

    async def _connection(self, host: str) -> asyncssh.SSHClientConnection:
        if self._closed:
            raise ConnectError(f"ssh: connection pool already closed (host {host})")
        self._prepare()
        entry = self._entry(host)
        failures_before = entry.failures
        async with entry.lock:
            if entry.conn is not None and not self._expired(entry):
                return entry.conn
            if entry.error is not None and entry.failures != failures_before:
                raise ConnectError(entry.error.message, hint=entry.error.hint) from entry.error
            if entry.conn is not None:
                old, entry.conn = entry.conn, None
                old.close()
                entry.engine, entry.engine_idle = None, []
            try:
                entry.conn = await self._open(host)
            except ConnectError as exc:
                entry.error = exc
                entry.failures += 1
                raise
            entry.error = None
            entry.last_used = time.monotonic()
            return entry.conn

    async def _open(self, host: str) -> asyncssh.SSHClientConnection:
        opts = self.options
        known_hosts = resolve_known_hosts(opts)
        tunnel = await self._jump_connection(known_hosts)
        kwargs = connect_kwargs(opts, host, known_hosts=known_hosts, client_keys=self._keys)
        if tunnel is not None:
            kwargs["tunnel"] = tunnel
        assert self._starts is not None
        async with self._starts:
            return await self._connect(
                kwargs, user=opts.user, host=host, port=opts.port, known_hosts=known_hosts
            )

    async def _jump_connection(self, known_hosts: list[str]) -> asyncssh.SSHClientConnection | None:
        jump: JumpHost | None = self.options.jump
        if jump is None:
            return None
        assert self._jump_lock is not None
        async with self._jump_lock:
            if self._jump is not None and not self._jump.is_closed():
                return self._jump
            kwargs = connect_kwargs(
                self.options,
                jump.host,
                port=jump.port,
                user=jump.user,
                known_hosts=known_hosts,
                client_keys=self._keys,
            )
            kwargs.pop("proxy_command", None)
            self._jump = await self._connect(
                kwargs,
                user=jump.user,
                host=jump.host,
                port=jump.port,
                known_hosts=known_hosts,
                what="jump host ",
            )
            return self._jump

    async def _connect(
        self,
        kwargs: dict[str, Any],
        *,
        user: str,
        host: str,
        port: int,
        known_hosts: list[str],
        what: str = "",
    ) -> asyncssh.SSHClientConnection:
        """asyncssh.connect with DNS retries (backoff 0.1 s doubling to 2 s, plus jitter)."""
        attempt = 0
        while True:
            try:
                conn: asyncssh.SSHClientConnection = await asyncssh.connect(**kwargs)
                return conn
            except socket.gaierror as exc:
                if attempt < self.options.dns_retries:
                    delay = min(2.0, 0.1 * 2**attempt) + random.uniform(0, 0.1)
                    attempt += 1
                    log.debug("DNS lookup of %s failed (%s); retry in %.2fs", host, exc, delay)
                    await asyncio.sleep(delay)
                    continue
                raise translate_connect_error(
                    exc, user=user, host=host, port=port, known_hosts=known_hosts, what=what
                ) from exc
            except (OSError, TimeoutError, asyncssh.Error, ValueError) as exc:
                # ValueError: asyncssh's KeyImportError and its checks of the settings
                raise translate_connect_error(
                    exc,
                    user=user,
                    host=host,
                    port=port,
                    known_hosts=known_hosts,
                    timeout=self.options.connect_timeout,
                    what=what,
                ) from exc

    @contextlib.asynccontextmanager
    async def _channel(self, host: str) -> Any:
        """A connection with one channel slot reserved on it."""
        conn = await self._connection(host)
        entry = self._entry(host)
        assert entry.channels is not None
        async with entry.channels:
            entry.active += 1
            try:
                yield conn
            finally:
                entry.active -= 1
                entry.last_used = time.monotonic()


# --------------------------------------------------------------------------- transport


class SshTransport:
    """A :class:`~dockyard.remote.transport.Transport` for one host of an :class:`SshPool`."""

    def __init__(self, pool: SshPool, host: str) -> None:
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
        if stdin is None:
            stdin = command_stdin(argv)
        out = LineSplitter(self._host, "stdout", on_output)
        err = LineSplitter(self._host, "stderr", on_output)
        status = await self.run_line(
            remote_command(argv, env, timeout=timeout),
            display_command(argv),
            stdin=stdin,
            timeout=timeout,
            out=out,
            err=err,
        )
        return Result(status, out.text(), err.text())

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
        """Run an already rendered command line (:func:`remote_command`), feeding its output
        bytes to ``out`` / ``err``; the exit status. ``display`` names it in errors (masked).
        :meth:`run` is this plus rendering; the connection helper (``remote.mux_server``) calls
        it with lines rendered by the client."""
        log.debug("ssh %s: %s", self._host, display)
        target = self._pool.target(self._host)
        async with self._pool._channel(self._host) as conn:
            proc: asyncssh.SSHClientProcess[bytes] | None = None
            try:
                # The timeout covers opening the session and the command, not the wait for
                # a free channel.
                async with asyncio.timeout(timeout):
                    proc = await _open_session(conn, command, target)
                    await asyncio.gather(
                        _feed(proc, stdin), drain(proc.stdout, out), drain(proc.stderr, err)
                    )
                    await proc.wait_closed()
            except TimeoutError as exc:
                _stop(proc)
                raise CommandTimeoutError(
                    f"command timed out after {timeout:g}s on {self._host}: {display}",
                    hint="raise the timeout or check why the command hangs",
                ) from exc
            except (OSError, asyncssh.Error) as exc:
                _stop(proc)
                raise ConnectError(
                    f"ssh: lost the connection to {target} while running {display}: {_reason(exc)}"
                ) from exc
            except BaseException:
                _stop(proc)
                raise
            status = proc.exit_status
            if status is None and conn.is_closed():
                raise ConnectError(f"ssh: lost the connection to {target} while running {display}")
        return status

    async def put(self, data: bytes, path: str, *, mode: int = 0o600) -> None:
        """Upload over SFTP: parent dirs created, written to a temp file, chmod, renamed."""
        target = self._pool.target(self._host)
        remote = PurePosixPath(path)
        tmp = str(remote.with_name(f".{remote.name}.dockyard-{os.urandom(4).hex()}"))
        async with self._pool._channel(self._host) as conn:
            try:
                sftp = await _open_sftp(conn, target)
                async with sftp:
                    if str(remote.parent) not in ("", "/", "."):
                        await sftp.makedirs(str(remote.parent), exist_ok=True)
                    try:
                        async with sftp.open(
                            tmp, "wb", attrs=asyncssh.SFTPAttrs(permissions=0o600)
                        ) as fh:
                            await fh.write(data)
                        await sftp.chmod(tmp, mode)
                        await _replace(sftp, tmp, path)
                    except BaseException:
                        with contextlib.suppress(Exception):
                            await sftp.remove(tmp)
                        raise
            except asyncssh.SFTPError as exc:
                raise RemoteCommandError(
                    f"remote: cannot upload {path} to {target}: {exc.reason}",
                    hint="check that the SSH user may write there",
                ) from exc
            except DockyardError:
                raise
            except (OSError, asyncssh.Error) as exc:
                raise ConnectError(
                    f"ssh: lost the connection to {target} while uploading {path}: {_reason(exc)}"
                ) from exc

    async def get(self, path: str, local: Path) -> None:
        """Download ``path`` over SFTP into ``local`` (written to a temp file, then renamed)."""
        target = self._pool.target(self._host)
        tmp = local.with_name(f".{local.name}.dockyard-{os.urandom(4).hex()}")
        local.parent.mkdir(parents=True, exist_ok=True)
        async with self._pool._channel(self._host) as conn:
            try:
                sftp = await _open_sftp(conn, target)
                async with sftp:
                    await sftp.get(path, str(tmp))
                os.replace(tmp, local)
            except asyncssh.SFTPError as exc:
                raise RemoteCommandError(
                    f"remote: cannot download {path} from {target}: {exc.reason}",
                    hint="check that the file exists and the SSH user may read it",
                ) from exc
            except DockyardError:
                raise
            except (OSError, asyncssh.Error) as exc:
                raise ConnectError(
                    f"ssh: lost the connection to {target} while downloading {path}: {_reason(exc)}"
                ) from exc
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    async def engine(
        self, call: EngineCall, *, timeout: float | None = None
    ) -> tuple[int, bytes] | None:
        """The status and body of the host's Engine API answer to ``call``
        (:mod:`dockyard.remote.engine`); None when the API cannot be reached over this
        connection (then run the CLI). A failure to reach it is remembered for the
        connection's life."""
        socket_path = self._pool.options.docker_socket
        entry = self._pool._entry(self._host)
        if not socket_path or entry.engine is False:
            return None
        if (call.method, call.path) == (PING.method, PING.path) and entry.engine:
            return 200, b"OK"  # it answered on this connection already
        target = self._pool.target(self._host)
        conn = await self._pool._connection(self._host)
        try:
            async with asyncio.timeout(timeout):
                answered = await self._exchange(conn, entry, socket_path, call)
        except TimeoutError as exc:
            raise CommandTimeoutError(
                f"the Docker Engine API on {self._host} did not answer {call.method} "
                f"{call.path} within {timeout:g}s",
                hint="check that dockerd on the host is responsive (`docker info`)",
            ) from exc
        except EngineUnavailable as exc:
            log.debug("ssh %s: Engine API not used: %s", self._host, exc)
            entry.engine = False
            return None
        except (OSError, asyncssh.Error) as exc:
            raise ConnectError(
                f"ssh: lost the connection to {target} while asking docker "
                f"({call.method} {call.path}): {_reason(exc)}"
            ) from exc
        entry.engine = True
        entry.last_used = time.monotonic()
        return answered

    async def unix_call(
        self, path: str, data: bytes, *, timeout: float | None = None
    ) -> bytes | None:
        """Send ``data`` to the Unix socket ``path`` on the host (over the connection) and
        return all it answers until it closes; None when the socket cannot be reached (sshd
        refuses, nothing listens, no permission)."""
        if not self._pool.options.docker_socket:  # the same switch as the Engine API's
            return None
        target = self._pool.target(self._host)
        conn = await self._pool._connection(self._host)
        writer = None
        try:
            async with asyncio.timeout(timeout):
                try:
                    reader, writer = await conn.open_unix_connection(path)
                except asyncssh.ChannelOpenError as exc:
                    log.debug("ssh %s: %s not reachable: %s", self._host, path, exc.reason)
                    return None
                writer.write(data)
                chunks = []
                while chunk := await reader.read(65536):
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError as exc:
            raise CommandTimeoutError(
                f"{path} on {self._host} did not answer within {timeout:g}s",
                hint="raise the timeout or check why the command hangs",
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise ConnectError(
                f"ssh: lost the connection to {target} while talking to {path}: {_reason(exc)}"
            ) from exc
        finally:
            if writer is not None:
                writer.close()

    async def _exchange(
        self, conn: asyncssh.SSHClientConnection, entry: _Entry, socket_path: str, call: EngineCall
    ) -> tuple[int, bytes]:
        """One request on a kept channel (a fresh one when a kept one turns out closed)
        or on a new one; the channel is kept again when the answer allows it."""
        while True:
            fresh = not entry.engine_idle
            if fresh:
                try:
                    reader, writer = await conn.open_unix_connection(socket_path)
                except asyncssh.ChannelOpenError as exc:
                    raise EngineUnavailable(f"{socket_path}: {exc.reason}") from exc
            else:
                reader, writer = entry.engine_idle.pop()
            response = ResponseReader()
            try:
                writer.write(request_bytes(call))
                while not response.done:
                    data = await reader.read(65536)
                    if not data:
                        response.finish()
                    response.feed(data)
            except (EngineUnavailable, OSError, asyncssh.Error):
                writer.close()
                if fresh or response.status or response.body:
                    raise
                continue  # a kept channel the daemon had closed: once more on a new one
            except BaseException:
                writer.close()
                raise
            if response.keep_alive and len(entry.engine_idle) < ENGINE_IDLE_CHANNELS:
                entry.engine_idle.append((reader, writer))
            else:
                writer.close()
            return response.status, response.body

    async def close(self) -> None:
        """Transports share the pool's connection; closing the pool closes it."""
        return None


#: Channels to the Docker socket kept open per host between requests.
ENGINE_IDLE_CHANNELS = 4


#: Waits between attempts to open a channel the server refused. OpenSSH frees a finished
#: session only after the channel close has been processed, so a new channel opened right after
#: one closed can briefly exceed MaxSessions; a short retry absorbs that race.
CHANNEL_RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)


async def _open_session(
    conn: asyncssh.SSHClientConnection, command: str, target: str
) -> asyncssh.SSHClientProcess[bytes]:
    delays = iter(CHANNEL_RETRY_DELAYS)
    while True:
        try:
            proc: asyncssh.SSHClientProcess[bytes] = await conn.create_process(
                command, encoding=None
            )
            return proc
        except asyncssh.ChannelOpenError as exc:
            delay = next(delays, None)
            if delay is None or conn.is_closed():
                raise ConnectError(
                    f"ssh: {target} refused a new session: {exc.reason}",
                    hint="the server may allow fewer sessions per connection (MaxSessions) "
                    "than sshkit max_channels",
                ) from exc
            log.debug("%s refused a session (%s); retry in %.2fs", target, exc.reason, delay)
            await asyncio.sleep(delay)


async def _open_sftp(conn: asyncssh.SSHClientConnection, target: str) -> asyncssh.SFTPClient:
    delays = iter(CHANNEL_RETRY_DELAYS)
    while True:
        try:
            return await conn.start_sftp_client()
        except asyncssh.ChannelOpenError as exc:
            delay = next(delays, None)
            if delay is None or conn.is_closed():
                raise ConnectError(
                    f"ssh: {target} refused an SFTP session: {exc.reason}",
                    hint="is the sftp subsystem enabled in the server's sshd_config, and "
                    "does MaxSessions allow sshkit max_channels sessions?",
                ) from exc
            await asyncio.sleep(delay)


async def _replace(sftp: asyncssh.SFTPClient, tmp: str, path: str) -> None:
    try:
        await sftp.posix_rename(tmp, path)
    except asyncssh.SFTPOpUnsupported:
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            await sftp.remove(path)
        await sftp.rename(tmp, path)


async def _feed(proc: asyncssh.SSHClientProcess[bytes], stdin: Stdin | None) -> None:
    """Write stdin, then EOF. A command that exits before reading everything (``head``) closes
    its end: that is not an error; a lost connection shows up in the output drains."""
    try:
        async for chunk in stdin_chunks(stdin):
            proc.stdin.write(chunk)
            await proc.stdin.drain()
        proc.stdin.write_eof()
    except (BrokenPipeError, ConnectionResetError):
        pass


def _stop(proc: asyncssh.SSHClientProcess[bytes] | None) -> None:
    if proc is None:
        return
    with contextlib.suppress(Exception):
        proc.send_signal("KILL")
    with contextlib.suppress(Exception):
        proc.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return str(exc.reason)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
