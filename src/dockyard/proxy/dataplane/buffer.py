"""A body buffer that keeps the first bytes in memory and spills the rest to a temp file."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO


class BufferTooLarge(Exception):
    """More than the buffer's maximum was written."""


class SpillBuffer:
    """Append-only buffer: up to `memory` bytes in RAM, then a `proxy-buffer-*` temp file.

    `maximum` caps the total (0 means unlimited); exceeding it raises BufferTooLarge.
    """

    __slots__ = ("_chunks", "_file", "_in_memory", "maximum", "memory", "size")

    def __init__(self, *, memory: int, maximum: int = 0) -> None:
        self.memory = memory
        self.maximum = maximum
        self.size = 0
        self._in_memory = 0
        self._chunks: list[bytes] = []
        self._file: IO[bytes] | None = None

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> None:
        size = self.size + len(data)
        if self.maximum and size > self.maximum:
            raise BufferTooLarge
        self.size = size
        if self._file is None and self._in_memory + len(data) <= self.memory:
            self._chunks.append(data)
            self._in_memory += len(data)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="proxy-buffer-")  # noqa: SIM115
        self._file.write(data)

    def chunks(self, size: int = 256 * 1024) -> Iterator[bytes]:
        """Everything written, in order (memory part first, then the file in `size` pieces)."""
        yield from self._chunks
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            while True:
                piece = self._file.read(size)
                if not piece:
                    break
                yield piece

    def close(self) -> None:
        self._chunks = []
        if self._file is not None:
            self._file.close()
            self._file = None
