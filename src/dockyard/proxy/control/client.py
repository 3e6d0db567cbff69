"""The blocking client side of the control protocol (see `rpc` for the wire format).

Kept free of asyncio and the router so that client subcommands start fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dockyard.errors import ProxyError
from dockyard.proxy.quick import connect, exchange


class RpcError(ProxyError):
    """The server answered with an error; the message is the server's."""


class ServerUnreachableError(ProxyError):
    pass


def call(path: Path, method: str, params: dict[str, Any] | None = None) -> Any:
    """One blocking call. Raises `ServerUnreachableError`, or `RpcError` with the server's
    message when the call failed there."""
    try:
        sock = connect(str(path))
    except OSError as exc:
        raise ServerUnreachableError(
            f"unable to reach the proxy server at {path}: {exc.strerror or exc}",
            hint="is `kamal-proxy run` running?",
        ) from exc
    raw = exchange(sock, {"method": method, "params": params or {}})
    if not raw:
        raise RpcError("the proxy server closed the connection without answering")
    try:
        response = json.loads(raw)
    except ValueError as exc:
        raise RpcError(f"malformed answer from the proxy server: {exc}") from exc
    if not isinstance(response, dict):
        raise RpcError("malformed answer from the proxy server")
    if not response.get("ok"):
        raise RpcError(str(response.get("error", "unknown error")))
    return response.get("result")
