"""A download fed by a generator: Streamlit reads it chunk by chunk when the button is clicked."""
from __future__ import annotations

import io
from collections.abc import Iterator


class ChunkStream(io.RawIOBase):
    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self._pending = b""
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Only a rewind to where it already is (Streamlit seeks to 0 before reading)."""
        if (offset, whence) != (self._position, io.SEEK_SET):
            raise io.UnsupportedOperation("a chunk stream reads forward only")
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # io passes a bytearray or a memoryview; typeshed's Buffer has no slicing
        while not self._pending:
            try:
                self._pending = next(self._chunks).encode()
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._position += n
        return n
