"""The lab's sample app: a tiny HTTP/1.1 server on port 80 (standard library only).

GET /up answers 200 (500 in the `broken` variant); any other path answers the variant's name
(`v1`, `v2`, `hungry`, `broken`). Each response goes out in one write, keep-alive is honoured,
and SIGTERM ends the process at once. The `hungry` variant first allocates and touches
$HUNGRY_MB MB (default 450), to try memory limits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

VARIANT = os.environ.get("HELLO_VARIANT", "v1")
PORT = int(os.environ.get("PORT", "80"))
REASONS = {200: "OK", 400: "Bad Request", 500: "Internal Server Error"}
_ballast: list[bytearray] = []


def eat_memory(megabytes: int) -> None:
    block = bytearray(megabytes * 1024 * 1024)
    for offset in range(0, len(block), 4096):  # touch every page so it is really resident
        block[offset] = 1
    _ballast.append(block)


def response(status: int, body: bytes, *, keep_alive: bool, head: bool = False) -> bytes:
    headers = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
        "Content-Type: text/plain",
        f"Content-Length: {len(body)}",
        f"X-Hello-Variant: {VARIANT}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + (b"" if head else body)


def answer(method: str, path: str) -> tuple[int, bytes]:
    if path.split("?", 1)[0] == "/up":
        return (500, b"down") if VARIANT == "broken" else (200, b"OK")
    return 200, VARIANT.encode()


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                writer.write(response(400, b"bad request", keep_alive=False))
                return
            method, path, version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            length = int(headers.get("content-length", "0") or "0")
            if length:
                await reader.readexactly(length)
            keep_alive = headers.get("connection") != "close" and version == "HTTP/1.1"
            status, body = answer(method, path)
            writer.write(response(status, body, keep_alive=keep_alive, head=method == "HEAD"))
            await writer.drain()
            if not keep_alive:
                return
    except (ConnectionError, ValueError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve, host="0.0.0.0", port=PORT, reuse_address=True)
    print(f"hello {VARIANT} listening on :{PORT}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if VARIANT == "hungry":
        eat_memory(int(os.environ.get("HUNGRY_MB", "450")))
    asyncio.run(main())
