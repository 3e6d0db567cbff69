"""Sans-I/O HTTP/1.1 for the proxy: request/response framing and validation, head builders."""

from __future__ import annotations

from dockyard.proxy.http.parser import (
    HttpError,
    RequestHead,
    RequestReader,
    ResponseHead,
    ResponseReader,
)

__all__ = ["HttpError", "RequestHead", "RequestReader", "ResponseHead", "ResponseReader"]
