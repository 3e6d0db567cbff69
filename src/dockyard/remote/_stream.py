"""Draining a byte stream into text, line by line, shared by the SSH and local backends."""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from typing import Protocol

from dockyard.remote.result import OutputCallback, OutputLine, Stdin, Stream

CHUNK = 65536


class ByteReader(Protocol):
    async def read(self, n: int = -1, /) -> bytes: ...


class ByteSink(Protocol):
    """Where a command's output bytes go (:class:`LineSplitter`, or the connection helper's
    forwarder)."""

    def feed(self, data: bytes, *, final: bool = False) -> None: ...


class LineSplitter:
    """Decode bytes incrementally (UTF-8, bad bytes replaced) and emit complete lines."""

    def __init__(self, host: str, stream: Stream, on_output: OutputCallback | None) -> None:
        self._host = host
        self._stream = stream
        self._on_output = on_output
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._parts: list[str] = []

    def feed(self, data: bytes, *, final: bool = False) -> None:
        text = self._decoder.decode(data, final=final)
        if text:
            self._parts.append(text)
        if self._on_output is None:
            return
        buffered = self._pending + text
        lines = buffered.split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._emit(line)
        if final and self._pending:
            self._emit(self._pending)
            self._pending = ""

    def _emit(self, line: str) -> None:
        assert self._on_output is not None
        self._on_output(OutputLine(self._host, self._stream, line.removesuffix("\r")))

    def text(self) -> str:
        return "".join(self._parts)


async def drain(reader: ByteReader, splitter: ByteSink) -> None:
    """Read until EOF, feeding the splitter."""
    while True:
        chunk = await reader.read(CHUNK)
        if not chunk:
            break
        splitter.feed(chunk)
    splitter.feed(b"", final=True)


async def stdin_chunks(stdin: Stdin | None) -> AsyncIterator[bytes]:
    """The chunks of a command's stdin, whether given as bytes or as an async iterable."""
    if stdin is None:
        return
    if isinstance(stdin, bytes | bytearray | memoryview):
        if stdin:
            yield bytes(stdin)
        return
    async for chunk in stdin:
        if chunk:
            yield bytes(chunk)
