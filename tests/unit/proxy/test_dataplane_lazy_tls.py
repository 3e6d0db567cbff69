"""`dockyard-proxy run` keeps its TLS machinery (the `cryptography` package, ~9 MiB of RSS)
unloaded until something needs it: a TLS service, or a connection on the HTTPS port."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, socket, sys
    from pathlib import Path
    from dockyard.proxy.control.server import RunSettings, serve

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    async def main(tmp):
        http, https = free_port(), free_port()
        settings = RunSettings(
            http_port=http, https_port=https, bind="127.0.0.1",
            socket=Path(tmp) / "control.sock", state_file=Path(tmp) / "state.json",
        )
        stop = asyncio.Event()
        task = asyncio.create_task(serve(settings, stop))
        for _ in range(200):
            await asyncio.sleep(0.025)
            if (Path(tmp) / "control.sock").exists():
                break
        print("idle", "cryptography" in sys.modules)
        reader, writer = await asyncio.open_connection("127.0.0.1", https)
        writer.write(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
        answer = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        print("answer", answer.split(b"\\r\\n")[0].decode())
        print("after", "cryptography" in sys.modules)
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(main(sys.argv[1]))
    """
)


def test_tls_is_set_up_only_when_the_https_port_is_first_used(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert "idle False" in out  # started, listening on both ports, no TLS machinery
    # The pending connection is served by the acceptor set up for it: plain HTTP sent to the
    # HTTPS port gets Go's answer, as kamal-proxy gives it.
    assert "answer HTTP/1.0 400 Bad Request" in out
    assert "after True" in out
