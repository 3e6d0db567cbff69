"""The fast path of dockyard-proxy's client subcommands.

Every deploy runs ``docker exec kamal-proxy kamal-proxy deploy ...`` on every host, so this
process's start-up is on the deploy's critical path. Importing argparse, the options'
dataclasses and building the whole parser cost about 90 ms of CPU per call (measured in the
proxy image); this module uses the standard library's ``json``, ``os`` and ``socket`` only.

It sends the command line as typed to the running server (the control call ``cli``), which
parses and checks it with the very parser of :mod:`dockyard.proxy.cli` (already loaded there)
and runs it, so flags, defaults and error messages are those of the full CLI. This process
connects, sends and prints the answer, ``Error: <message>`` with exit status 1 on failure, as
the full CLI does. Everything else goes to the full CLI: ``run``, help, an unknown command, no
server socket where this module looks, or a server that does not know the ``cli`` call.
"""

from __future__ import annotations

import json
import os
import socket
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs this process ~5 ms of its ~40
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

#: Subcommands the server can run from their command line (``run`` and help never).
CLIENT_COMMANDS = frozenset(
    {"deploy", "remove", "rm", "resume", "pause", "stop", "list", "ls", "rollout"}
)
SOCKET_NAME = "kamal-proxy.sock"
#: What the server needs of this process's environment to read the command line as it would.
PASSED_ENV = ("HOME", "XDG_CONFIG_HOME")
UNKNOWN_CALL = "unknown method 'cli'"


def handles(argv: Sequence[str]) -> bool:
    """Whether the fast path may try ``argv``."""
    return bool(argv) and argv[0] in CLIENT_COMMANDS and not ({"-h", "--help"} & set(argv))


def socket_path(env: Mapping[str, str]) -> str | None:
    """Where the server listens, as ``control.state.socket_path`` finds it; None when that
    depends on ``tempfile``'s checks (TMPDIR and friends), which the full CLI then makes."""
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime:
        return os.path.join(runtime, SOCKET_NAME)
    if any(env.get(name) for name in ("TMPDIR", "TEMP", "TMP")):
        return None
    return "/tmp/" + SOCKET_NAME


def format_table(rows: list[dict[str, str]], colour: bool) -> str:
    """``list``'s table: kamal-proxy's columns, plus ``Access`` when a service has a rule."""
    headers = ["Service", "Host", "Path", "Target", "State", "TLS"]
    keys = ["service", "host", "path", "target", "state", "tls"]
    if any(row.get("access") for row in rows):  # ours; kamal-proxy's columns otherwise
        headers.append("Access")
        keys.append("access")
    table = [headers] + [[str(row.get(k, "")) for k in keys] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    lines = []
    for index, line in enumerate(table):
        text = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
        if colour and index == 0:
            text = f"\x1b[1m{text}\x1b[0m"
        lines.append(text)
    return "\n".join(lines)


def connect(path: str) -> socket.socket:
    """A socket connected to the control socket at ``path``; OSError when that fails."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def exchange(sock: socket.socket, request: Mapping[str, Any]) -> bytes:
    """One control call on a connected socket (:func:`connect`): the request as a JSON line,
    the answer's line as received (empty when the server closed without one); the socket is
    closed after."""
    try:
        sock.sendall(json.dumps(request).encode() + b"\n")
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    finally:
        sock.close()
    return b"".join(chunks)


def ask(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The server's answer to the ``cli`` call, or None when the call did not reach a server
    that knows it (then nothing ran, and the full CLI takes over)."""
    path = socket_path(env)
    if path is None:
        return None
    params = {
        "argv": list(argv),
        "cwd": os.getcwd(),
        "env": {name: env[name] for name in PASSED_ENV if name in env},
    }
    try:
        sock = connect(path)
    except OSError:
        return None
    try:
        answer = json.loads(exchange(sock, {"method": "cli", "params": params}))
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return {"ok": False, "error": "malformed answer from the proxy server"}
    if not answer.get("ok") and answer.get("error") == UNKNOWN_CALL:
        return None
    return answer


def show(argv: Sequence[str], answer: Mapping[str, Any]) -> int:
    """Print the answer as the full CLI would; the exit status."""
    if not answer.get("ok"):
        print(f"Error: {answer.get('error', 'unknown error')}", file=sys.stderr)
        return 1
    if argv[0] in ("list", "ls"):
        rows = answer.get("result")
        print(format_table(rows if isinstance(rows, list) else [], sys.stdout.isatty()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if handles(args):
        answer = ask(args, os.environ)
        if answer is not None:
            return show(args, answer)
    from dockyard.proxy.cli import main as full

    return full(args)


if __name__ == "__main__":
    sys.exit(main())
