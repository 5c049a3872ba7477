"""Sans-IO helpers for the lean client's unit tests: a transport that keeps what is
written, and HTTP/2 frames built by hand."""

from __future__ import annotations

import asyncio
import struct
from typing import Any


class FakeTransport(asyncio.Transport):
    """Keeps every byte written; ``close`` only marks it closing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    size = len(payload)
    return struct.pack(">BHBBL", size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload
