"""The HTTPS acceptor on real loopback sockets (no network beyond 127.0.0.1): ClientHello,
certificate choice, handshake, ALPN dispatch, refusals and timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest
from tls_support import MiniCA, loop_factories

from dockyard.proxy.tls.accept import PLAIN_HTTP_RESPONSE, TlsAcceptor
from dockyard.proxy.tls.context import TlsSelector
from dockyard.proxy.tls.manager import CertManager


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's TLS transport is not an asyncio.Transport subclass: no isinstance check.)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        sslobj = self.transport.get_extra_info("ssl_object")
        alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        self.transport.write(b"echo:" + data + f":{alpn}\n".encode())


@contextlib.asynccontextmanager
async def serving(selector: TlsSelector, hello_timeout: float = 1.0) -> AsyncIterator[int]:
    listen = socket.socket()
    listen.bind(("127.0.0.1", 0))
    listen.listen(16)
    acceptor = TlsAcceptor(selector, Echo, hello_timeout=hello_timeout, handshake_timeout=5.0)
    task = asyncio.create_task(acceptor.serve(listen))
    try:
        yield listen.getsockname()[1]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        listen.close()


async def ask(port: int, ctx: ssl.SSLContext, host: str) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=host, ssl_handshake_timeout=5
    )
    writer.write(b"hi")
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    return line


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_custom_and_acme_hosts_through_the_acceptor(
    tmp_path: Path, ca: MiniCA, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    manager = CertManager("https://acme.invalid/dir", tmp_path)
    manager.store.save("acme.test", ca.certified("acme.test"))  # issued earlier
    selector = TlsSelector(manager)
    selector.configure(
        acme_hosts=["acme.test"], certificates={"own.test": ca.certified("own.test")}
    )

    async def scenario() -> None:
        async with serving(selector) as port:
            assert await ask(port, ca.client_context(), "own.test") == b"echo:hi:h2\n"
            http11 = ca.client_context(("http/1.1",))
            assert await ask(port, http11, "acme.test") == b"echo:hi:http/1.1\n"
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await ask(port, ca.client_context(), "unknown.test")
            # Several at once, mixed hosts.
            lines = await asyncio.gather(
                *(ask(port, http11, h) for h in ["own.test", "acme.test"] * 10)
            )
            assert set(lines) == {b"echo:hi:http/1.1\n"}

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(scenario())


def test_plain_http_on_the_tls_port_gets_go_s_400(ca: MiniCA) -> None:
    selector = TlsSelector()
    selector.configure(certificates={"own.test": ca.certified("own.test")})

    async def scenario() -> bytes:
        async with serving(selector) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: own.test\r\n\r\n")
            try:
                data = await asyncio.wait_for(reader.read(), 5)
            except ConnectionResetError:  # closed with our request unread: RST, also fine
                data = b""
            writer.close()
            return data

    assert asyncio.run(scenario()) == PLAIN_HTTP_RESPONSE  # as Go's net/http answers


def test_other_garbage_on_the_tls_port_is_just_closed(ca: MiniCA) -> None:
    selector = TlsSelector()
    selector.configure(certificates={"own.test": ca.certified("own.test")})

    async def scenario() -> bytes:
        # an hour's hello timeout: only recognising the garbage can close this connection
        # before the test's hang guard
        async with serving(selector, hello_timeout=3600) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
            try:
                data = await asyncio.wait_for(reader.read(), 30)
            except ConnectionResetError:
                data = b""
            writer.close()
            return data

    assert asyncio.run(scenario()) == b""


def test_silent_client_is_dropped_after_the_hello_timeout(ca: MiniCA) -> None:
    selector = TlsSelector()
    selector.configure(certificates={"own.test": ca.certified("own.test")})

    async def silent(hello_timeout: float, wait: float) -> bytes | None:
        """What a client that sends nothing reads: b"" once dropped, None if still open."""
        async with serving(selector, hello_timeout=hello_timeout) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await asyncio.wait_for(reader.read(), wait)
            except TimeoutError:
                return None
            finally:
                writer.close()

    # dropped by a short hello timeout; kept by a long one over the same wait
    assert asyncio.run(silent(0.2, 30)) == b""
    assert asyncio.run(silent(3600, 1.0)) is None
