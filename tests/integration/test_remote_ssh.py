"""The SSH transport against a real OpenSSH server that this module starts on loopback.

The server runs from a private config (``sshd -D -f``), with its own host key, an
authorized key generated here and ``MaxSessions 10``; it does not depend on the machine's own
sshd configuration and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest

from dockyard.commands.argv import Argv, HomePath, Pipeline, Secret
from dockyard.errors import ConnectError, RemoteCommandError
from dockyard.remote import (
    CommandTimeoutError,
    HostsFailedError,
    OutputLine,
    Result,
    SshOptions,
    SshPool,
    run_batch,
)
from tests.integration.support import unavailable

pytestmark = pytest.mark.integration

SSHD = "/usr/sbin/sshd"
T = TypeVar("T")


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    key: Path
    other_key: Path
    known_hosts: Path
    root: Path
    pid: int  # the listening sshd; each connection is served by a child of it

    def options(self, **changes: object) -> SshOptions:
        base = SshOptions(
            user=self.user,
            port=self.port,
            keys=(str(self.key),),
            keys_only=True,
            known_hosts=(str(self.known_hosts),),
            connect_timeout=10,
        )
        return replace(base, **changes)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(str(path) + ".pub")
    return key


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not os.access(SSHD, os.X_OK):
        unavailable("openssh-server (/usr/sbin/sshd) is not installed")
    root = tmp_path_factory.mktemp("sshd")
    host_key = root / "host_key"
    _write_key(host_key)
    client = root / "client_key"
    client_pub = _write_key(client).export_public_key().decode()
    other = root / "other_key"
    _write_key(other)
    (root / "authorized_keys").write_text(client_pub)
    if os.geteuid() == 0:
        # sshd's privilege separation directory (compiled in); harmless if it exists.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    sftp_server = next(
        (
            p
            for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server")
            if Path(p).exists()
        ),
        "internal-sftp",
    )
    log = root / "sshd.log"
    proc: subprocess.Popen[bytes] | None = None
    port = 0
    for _attempt in range(3):
        port = _free_port()
        config = root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {port}",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {root / 'authorized_keys'}",
                    f"PidFile {root / 'sshd.pid'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "AllowTcpForwarding yes",
                    "MaxSessions 10",
                    "MaxStartups 100",
                    f"Subsystem sftp {sftp_server}",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        with log.open("wb") as log_fh:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config), "-p", str(port), "-h", str(host_key)],
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_listening(port, proc, log)
            break
        except RuntimeError:
            proc.kill()
            proc.wait()
            proc = None
    if proc is None:
        pytest.fail(f"could not start sshd: {log.read_text()[-2000:]}")
    host_pub = (root / "host_key.pub").read_text().split()[:2]
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_pub)}\n")
    try:
        yield Sshd(port, getpass.getuser(), client, other, known_hosts, root, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def arun(factory: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(bounded())


def with_pool(options: SshOptions, body: Callable[[SshPool], Awaitable[T]]) -> T:
    async def go() -> T:
        async with SshPool(options) as pool:
            return await body(pool)

    return arun(go)


HOST = "127.0.0.1"


# --------------------------------------------------------------------------- commands


def test_run_exit_codes_and_output(sshd: Sshd) -> None:
    async def body(pool: SshPool) -> list[Result]:
        ssh = pool.transport(HOST)
        return [
            await ssh.run(["true"]),
            await ssh.run(["sh", "-c", "echo out; echo err >&2; exit 3"]),
            await ssh.run(["echo", "$HOME", "a;b", "it's", "`id`"]),
            await ssh.run(["no-such-program-xyz"]),
            await ssh.run(["sh", "-c", "kill -9 $$"]),
        ]

    ok, three, quoted, missing, killed = with_pool(sshd.options(), body)
    assert ok == Result(0, "", "")
    assert three == Result(3, "out\n", "err\n")
    assert quoted.stdout == "$HOME a;b it's `id`\n"  # quoted once: no remote expansion
    assert missing.exit_status == 127
    assert not killed.ok
    with pytest.raises(RemoteCommandError, match=r"command failed on 127\.0\.0\.1 \(exit 3\)"):
        three.check(HOST, ["sh", "-c", "..."])


def test_output_is_streamed_line_by_line_while_running(sshd: Sshd, tmp_path: Path) -> None:
    """A handshake, not a clock: the remote command (on this machine, through sshd) prints
    "one", then waits until the file `go` exists before it prints "two"; only our output
    callback creates `go`, when it sees "one". So "two" proves "one" reached us while the
    command was still running."""
    go = tmp_path / "go"
    seen: list[OutputLine] = []

    def on_output(line: OutputLine) -> None:
        seen.append(line)
        if line.text == "one":
            go.touch()

    script = (
        f"echo one; echo warn >&2; i=0; while [ ! -e {go} ] && [ $i -lt 300 ]; do sleep .05; "
        f"i=$((i+1)); done; if [ -e {go} ]; then echo two; else echo no-handshake; fi; "
        "printf three"
    )

    async def body(pool: SshPool) -> Result:
        return await pool.transport(HOST).run(["sh", "-c", script], on_output=on_output)

    result = with_pool(sshd.options(), body)
    assert result.stdout == "one\ntwo\nthree"
    lines = [(line.stream, line.text) for line in seen]
    assert lines.index(("stdout", "one")) < lines.index(("stdout", "two"))
    assert ("stderr", "warn") in lines and ("stdout", "three") in lines
    assert all(line.host == HOST for line in seen)


def test_stdin_and_env(sshd: Sshd) -> None:
    payload = "line 1\nsecret: ünïcode\n" * 2000

    async def body(pool: SshPool) -> tuple[Result, Result, Result]:
        ssh = pool.transport(HOST)
        return (
            await ssh.run(["cat"], stdin=payload.encode()),
            await ssh.run(["cat"], timeout=10),  # no stdin: EOF at once, no hang
            await ssh.run(["sh", "-c", 'echo "$A|$B"'], env={"A": "x y", "B": "it's $HOME"}),
        )

    echoed, empty, env = with_pool(sshd.options(), body)
    assert echoed.stdout == payload
    assert empty == Result(0, "", "")
    assert env.stdout == "x y|it's $HOME\n"


def test_stdin_streamed_in_chunks(sshd: Sshd) -> None:
    async def chunks(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"y" * 65536

    async def body(pool: SshPool) -> tuple[Result, Result]:
        ssh = pool.transport(HOST)
        counted = await ssh.run(["wc", "-c"], stdin=chunks(80), timeout=30)  # 5 MiB
        early = await ssh.run(["head", "-c", "5"], stdin=chunks(10_000), timeout=30)
        return counted, early

    counted, early = with_pool(sshd.options(), body)
    assert counted.stdout.strip() == str(80 * 65536)
    assert early == Result(0, "yyyyy", "")


def test_commands_values_over_ssh(sshd: Sshd) -> None:
    failing = Pipeline((Argv(["false"]), Argv(["cat"])))
    grep = Pipeline((Argv(["printf", "a\\nsecret\\n"]), Argv(["grep", Secret("secret")])))

    async def body(pool: SshPool) -> list[Result]:
        ssh = pool.transport(HOST)
        home = (await ssh.run(["sh", "-c", 'echo "$HOME"'])).stdout.strip()
        results = [
            await ssh.run(Argv(["echo", HomePath(".kamal/x")])),
            await ssh.run(failing),
            await ssh.run(failing, timeout=10),
            await ssh.run(grep),
            await ssh.run(Argv(["cat"], stdin=Secret("pw"))),
            *await run_batch(ssh, [failing, grep, Argv(["echo", HomePath("y")])]),
        ]
        assert results[0].stdout == f"{home}/.kamal/x\n"
        assert results[-1].stdout == f"{home}/y\n"
        return results

    results = with_pool(sshd.options(), body)
    # the login shell here is bash, so a failed early stage fails the pipeline
    assert [r.exit_status for r in results] == [0, 1, 1, 0, 0, 1, 0, 0]
    assert results[3].stdout == "secret\n"
    assert results[4].stdout == "pw"


def _running(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return found.stdout.split()


def test_timeout_stops_the_command_and_keeps_the_connection(sshd: Sshd) -> None:
    marker = f"{time.time() % 1000:.3f}"  # a sleep argument no other process uses

    async def body(pool: SshPool) -> Result:
        ssh = pool.transport(HOST)
        # the sleep lasts ~an hour: only the 0.5 s timeout can end this call
        with pytest.raises(CommandTimeoutError, match=r"timed out after 0\.5s on 127\.0\.0\.1"):
            await ssh.run(["sh", "-c", f"sleep 3{marker}; echo never"], timeout=0.5)
        return await ssh.run(["echo", "still here"], timeout=10)

    after = with_pool(sshd.options(), body)
    assert after.stdout == "still here\n"
    # The server-side guard kills the remote process tree soon after the client gave up.
    deadline = time.monotonic() + 10
    while _running(f"sleep 3{marker}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _running(f"sleep 3{marker}") == []


def _probe(root: Path, tag: str, wait_for: int = 0) -> list[str]:
    """A command that counts how many probes run at once (files in a shared directory).

    With ``wait_for`` it waits (up to 15 s) until that many probes are running, which proves
    they run in parallel however slow session start-up is on a loaded machine. It prints the
    count it saw and then the count just before it leaves.
    """
    script = (
        f'd={root / ("probe-" + tag)}; mkdir -p "$d"; touch "$d/$$"; '
        'n=$(ls "$d" | wc -l); i=0; '
        f'while [ "$n" -lt {wait_for} ] && [ $i -lt 300 ]; do '
        'sleep 0.05; i=$((i+1)); n=$(ls "$d" | wc -l); done; '
        'sleep 0.1; m=$(ls "$d" | wc -l); rm "$d/$$"; echo "$n $m"'
    )
    return ["sh", "-c", script]


def _parallel_probes(sshd: Sshd, tag: str, channels: int, total: int) -> list[Result]:
    async def body(pool: SshPool) -> list[Result]:
        ssh = pool.transport(HOST)
        await ssh.run(["true"])
        conn = pool._entries[HOST].conn
        # Channels are handed out in order: the first `channels` probes hold every slot
        # until they all run; the rest follow as slots free up.
        results = await asyncio.gather(
            *(ssh.run(_probe(sshd.root, tag, channels)) for _ in range(channels)),
            *(ssh.run(_probe(sshd.root, tag)) for _ in range(total - channels)),
        )
        assert pool.connected_hosts() == [HOST]
        assert pool._entries[HOST].conn is conn  # one connection for all of them
        return list(results)

    return with_pool(sshd.options(max_channels=channels), body)


def test_many_parallel_commands_share_one_connection_with_bounded_channels(sshd: Sshd) -> None:
    results = _parallel_probes(sshd, "ten", 10, 25)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    counts = [[int(n) for n in r.stdout.split()] for r in results]
    assert [seen for seen, _ in counts[:10]] == [10] * 10  # ten channels really at once
    assert max(max(pair) for pair in counts) <= 10  # and never more (MaxSessions 10)


def test_channel_limit_is_configurable(sshd: Sshd) -> None:
    results = _parallel_probes(sshd, "three", 3, 9)
    assert all(r.ok for r in results)
    counts = [[int(n) for n in r.stdout.split()] for r in results]
    assert [seen for seen, _ in counts[:3]] == [3] * 3
    assert max(max(pair) for pair in counts) <= 3


def test_batch_runs_in_one_round_trip(sshd: Sshd) -> None:
    seen: list[OutputLine] = []

    async def body(pool: SshPool) -> list[Result]:
        return await run_batch(
            pool.transport(HOST),
            [
                ["echo", "hello world"],
                ["sh", "-c", "echo bad >&2; exit 5"],
                ["printf", "%s", "no newline"],
                ["cat"],
                ["echo", "$USER"],
            ],
            on_output=seen.append,
        )

    results = with_pool(sshd.options(), body)
    assert results == [
        Result(0, "hello world\n", ""),
        Result(5, "", "bad\n"),
        Result(0, "no newline", ""),
        Result(0, "", ""),
        Result(0, "$USER\n", ""),
    ]
    texts = [line.text for line in seen]
    assert "hello world" in texts and "bad" in texts
    assert not any(text.startswith("DOCKYARD-") for text in texts)


def test_a_batch_runs_its_commands_in_one_remote_shell(sshd: Sshd) -> None:
    """One round trip, shown by structure rather than by a clock: the batch makes one `run`
    call on the connection, and its ten commands share one parent process on the server (the
    batch's shell), which no command run alone has."""
    commands = [["sh", "-c", "echo $PPID"] for _ in range(10)]

    async def body(pool: SshPool) -> tuple[list[str], list[str], int]:
        ssh = pool.transport(HOST)
        one_by_one = [(await ssh.run(command)).stdout for command in commands]
        calls = 0
        real_run = ssh.run

        async def counting_run(*args: Any, **kwargs: Any) -> Result:
            nonlocal calls
            calls += 1
            return await real_run(*args, **kwargs)

        ssh.run = counting_run  # type: ignore[method-assign]
        batched = [r.stdout for r in await run_batch(ssh, commands)]
        return one_by_one, batched, calls

    one_by_one, batched, calls = with_pool(sshd.options(), body)
    assert calls == 1
    assert all(p.strip().isdigit() for p in one_by_one + batched), (one_by_one, batched)
    assert len(set(batched)) == 1, batched
    assert batched[0] not in one_by_one, (batched, one_by_one)


# --------------------------------------------------------------------------- uploads


def test_sftp_put_with_mode_and_parents(sshd: Sshd) -> None:
    target = sshd.root / "uploads" / "deep" / "er" / "app.env"

    async def body(pool: SshPool) -> Result:
        ssh = pool.transport(HOST)
        await ssh.put(b"SECRET=1\n", str(target), mode=0o640)
        first = await ssh.run(["stat", "-c", "%a %s", str(target)])
        await ssh.put(b"SECRET=22\n", str(target))  # overwrite, default 0600
        assert first.stdout == "640 9\n"
        return await ssh.run(["stat", "-c", "%a %s", str(target)])

    second = with_pool(sshd.options(), body)
    assert second.stdout == "600 10\n"
    assert target.read_bytes() == b"SECRET=22\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["app.env"]  # no temp file left


def test_sftp_put_relative_path_lands_in_the_login_directory(sshd: Sshd) -> None:
    # Kamal's paths (.kamal/apps/...) are relative to the SSH user's home directory.
    relative = f".dockyard-remote-test-{os.getpid()}/env/app.env"

    async def body(pool: SshPool) -> Result:
        ssh = pool.transport(HOST)
        await ssh.put(b"A=1\n", relative)
        try:
            return await ssh.run(["sh", "-c", f'cat "$HOME/{relative}"'])
        finally:
            top = relative.split("/")[0]
            await ssh.run(["sh", "-c", f'rm -rf "$HOME/{top}"'])

    assert with_pool(sshd.options(), body).stdout == "A=1\n"


def test_sftp_put_failure_is_a_clear_error(sshd: Sshd) -> None:
    blocker = sshd.root / "a-file"
    blocker.write_text("x")

    async def body(pool: SshPool) -> None:
        await pool.transport(HOST).put(b"x", str(blocker / "child" / "f"))

    with pytest.raises(RemoteCommandError, match=r"cannot upload .*a-file/child/f to "):
        with_pool(sshd.options(), body)


# --------------------------------------------------------------------------- connecting


def test_unknown_host_key_is_refused_with_a_fix(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")

    async def body(pool: SshPool) -> None:
        await pool.transport(HOST).run(["true"])

    with pytest.raises(ConnectError) as info:
        with_pool(sshd.options(known_hosts=(str(empty),)), body)
    text = info.value.render()
    assert f"host key of {sshd.user}@127.0.0.1:{sshd.port} is unknown" in text
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1" in text
    assert not isinstance(info.value.__cause__, ConnectError)


def test_changed_host_key_is_refused_with_a_fix(sshd: Sshd, tmp_path: Path) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    stale = tmp_path / "known_hosts"
    stale.write_text(f"[127.0.0.1]:{sshd.port} {impostor}")

    async def body(pool: SshPool) -> None:
        await pool.transport(HOST).run(["true"])

    with pytest.raises(ConnectError, match="has CHANGED") as info:
        with_pool(sshd.options(known_hosts=(str(stale),)), body)
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in info.value.render()


def test_wrong_key_is_refused(sshd: Sshd) -> None:
    async def body(pool: SshPool) -> None:
        await pool.transport(HOST).run(["true"])

    with pytest.raises(ConnectError, match=r"authentication refused by .*127\.0\.0\.1") as info:
        with_pool(sshd.options(keys=(str(sshd.other_key),)), body)
    assert "authorized_keys" in info.value.render()


def test_encrypted_key_without_agent_is_a_clear_error(sshd: Sshd, tmp_path: Path) -> None:
    locked = tmp_path / "locked_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(locked), passphrase="secret")

    async def body(pool: SshPool) -> None:
        await pool.transport(HOST).run(["true"])

    with pytest.raises(ConnectError, match="cannot load a private key") as info:
        with_pool(sshd.options(keys=(str(locked),)), body)
    assert "ssh-agent" in info.value.render()


def test_unreachable_port_is_refused(sshd: Sshd) -> None:
    closed = _free_port()

    async def body(pool: SshPool) -> None:
        await pool.transport(HOST).run(["true"])

    # "connection refused", not a time-out: told apart by the message, not by a clock
    with pytest.raises(ConnectError, match=rf"cannot reach .*@127\.0\.0\.1:{closed}: connection"):
        with_pool(sshd.options(port=closed), body)


def test_callers_queued_behind_a_failed_connect_share_its_error(
    sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = 0
    real_connect = asyncssh.connect

    async def counting_connect(**kwargs: object) -> asyncssh.SSHClientConnection:
        nonlocal attempts
        attempts += 1
        return await real_connect(**kwargs)

    monkeypatch.setattr("dockyard.remote.ssh.asyncssh.connect", counting_connect)
    closed = _free_port()

    async def body(pool: SshPool) -> list[BaseException | Result]:
        ssh = pool.transport(HOST)
        return await asyncio.gather(*(ssh.run(["true"]) for _ in range(8)), return_exceptions=True)

    outcomes = with_pool(sshd.options(port=closed), body)
    assert all(isinstance(o, ConnectError) for o in outcomes)
    assert attempts == 1


def test_pool_on_fans_out_with_transports(sshd: Sshd) -> None:
    async def body(pool: SshPool) -> list[tuple[str, bool, str]]:
        outcomes = await pool.on([HOST, "127.0.0.2"], lambda ssh: ssh.run(["echo", ssh.host]))
        return [
            (o.host, o.ok, o.value.stdout if o.value else type(o.error).__name__) for o in outcomes
        ]

    assert with_pool(sshd.options(connect_timeout=5), body) == [
        (HOST, True, f"{HOST}\n"),
        ("127.0.0.2", False, "ConnectError"),
    ]


def test_connect_all_reports_each_host(sshd: Sshd) -> None:
    # 127.0.0.2 is loopback too, but sshd listens on 127.0.0.1 only.
    async def body(pool: SshPool) -> list[object]:
        outcomes = await pool.connect_all([HOST, "127.0.0.2", HOST])
        return [(o.host, o.ok, type(o.error).__name__) for o in outcomes]

    assert with_pool(sshd.options(), body) == [
        (HOST, True, "NoneType"),
        ("127.0.0.2", False, "ConnectError"),
    ]


def test_proxy_jump_through_a_bastion(sshd: Sshd) -> None:
    async def body(pool: SshPool) -> Result:
        return await pool.transport(HOST).run(["echo", "via jump"])

    options = sshd.options(proxy=f"{sshd.user}@127.0.0.1:{sshd.port}")
    assert with_pool(options, body).stdout == "via jump\n"


def test_inline_key_data(sshd: Sshd) -> None:
    async def body(pool: SshPool) -> Result:
        return await pool.transport(HOST).run(["echo", "inline"])

    options = sshd.options(keys=(), key_data=(sshd.key.read_text(),))
    assert with_pool(options, body).stdout == "inline\n"


def test_openssh_config_when_opted_in(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host web-alias\n  HostName 127.0.0.1\n  Port {sshd.port}\n")

    async def body(pool: SshPool) -> Result:
        return await pool.transport("web-alias").run(["echo", "aliased"])

    assert with_pool(sshd.options(config=(str(config),)), body).stdout == "aliased\n"
    # (without config=..., "web-alias" would go to DNS; tests keep off the network)


def test_reverse_forward_reaches_a_local_service(sshd: Sshd) -> None:
    remote_port = _free_port()

    async def body(pool: SshPool) -> tuple[bytes, bool]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"pong:" + await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        local_port = server.sockets[0].getsockname()[1]
        async with server:
            async with pool.reverse_forward(
                [HOST], remote_port=remote_port, local_port=local_port, local_host="127.0.0.1"
            ):
                # The "server" is this machine, so its forwarded port is reachable here too.
                reader, writer = await asyncio.open_connection("127.0.0.1", remote_port)
                writer.write(b"ping\n")
                answer = await reader.read()
                writer.close()
            try:
                await asyncio.open_connection("127.0.0.1", remote_port)
                closed = False
            except OSError:
                closed = True
        return answer, closed

    answer, closed = with_pool(sshd.options(), body)
    assert answer == b"pong:ping\n"
    assert closed  # the forward is gone after the block


def test_reverse_forward_refused_is_a_clear_error(sshd: Sshd) -> None:
    async def body(pool: SshPool) -> None:
        # the sshd's own port is taken, so the server cannot listen there
        async with pool.reverse_forward([HOST], remote_port=sshd.port, local_port=1):
            pass

    with pytest.raises(HostsFailedError, match=r"refused to forward 127\.0\.0\.1:\d+"):
        with_pool(sshd.options(), body)


def _drop_connections(sshd: Sshd) -> None:
    """Kill the sshd processes serving connections (not the listener), like a server reboot."""
    children = subprocess.run(
        ["pgrep", "-P", str(sshd.pid)], capture_output=True, text=True
    ).stdout.split()
    assert children, "no connection to drop"
    subprocess.run(["kill", "-9", *children], check=True)


def test_lost_connection_is_reported_and_reopened(sshd: Sshd) -> None:
    async def body(pool: SshPool) -> tuple[BaseException | Result, Result]:
        ssh = pool.transport(HOST)
        running = asyncio.create_task(ssh.run(["sleep", "20"], timeout=30))
        await asyncio.sleep(1.0)
        _drop_connections(sshd)
        try:
            lost: BaseException | Result = await running
        except ConnectError as exc:
            lost = exc
        await asyncio.sleep(0.2)
        return lost, await ssh.run(["echo", "back"])

    lost, after = with_pool(sshd.options(), body)
    assert isinstance(lost, ConnectError), lost
    assert "lost the connection" in lost.render() and "sleep 20" in lost.render()
    assert after.stdout == "back\n"  # a fresh connection was opened on next use


def test_idle_connection_is_replaced(sshd: Sshd) -> None:
    async def body(pool: SshPool) -> bool:
        ssh = pool.transport(HOST)
        await ssh.run(["true"])
        first = pool._entries[HOST].conn
        await asyncio.sleep(0.4)
        await ssh.run(["true"])
        second = pool._entries[HOST].conn
        return first is not second and first is not None and first.is_closed()

    assert with_pool(sshd.options(pool_idle_timeout=0.2), body)


def test_pool_close_closes_connections(sshd: Sshd) -> None:
    async def go() -> bool:
        pool = SshPool(sshd.options())
        await pool.transport(HOST).run(["true"])
        conn = pool._entries[HOST].conn
        await pool.close()
        return conn is not None and conn.is_closed()

    assert arun(go)


def test_fixture_server_also_accepts_the_openssh_client(sshd: Sshd) -> None:
    # Sanity: the server also works for the OpenSSH client, if installed (same options).
    ssh = shutil.which("ssh")
    if ssh is None:
        unavailable("no ssh client")
    done = subprocess.run(
        [
            ssh, "-F", "/dev/null", "-p", str(sshd.port), "-i", str(sshd.key),
            "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={sshd.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            f"{sshd.user}@127.0.0.1", "echo", "ok",
        ],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.stdout == "ok\n", done.stderr
