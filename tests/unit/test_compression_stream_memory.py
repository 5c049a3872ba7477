"""What one open stream's compressor holds, gzip against brotli: the figures in
docs/compression.md ("A stream's memory") come from here.

``python tests/unit/test_compression_stream_memory.py`` prints them. They are measured as
the growth of the process's resident memory over a few hundred encoders, each having
compressed and flushed one message, in a fresh interpreter: tracemalloc cannot see them,
since libbrotli allocates with ``malloc`` (tracemalloc reports ~0.1 KiB per brotli encoder
and zlib's whole allocation, touched or not). The test asserts only the ordering the
defaults rest on, each by a wide margin, never a size: gzip's stream holds far less than
brotli's at the unary quality (4), and brotli's at the stream quality (5) less than at 4.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.compression.codecs import Encoding

ENCODERS = 400
MESSAGE = b'{"result":{"index":1,"name":"a book"}}\n'


def per_stream_kib(coding: bytes, level: int) -> float:
    """Resident KiB per open stream encoder (``coding`` at ``level``), in this process."""
    with open("/proc/self/statm") as statm:
        before = int(statm.read().split()[1])
    encoding = Encoding(coding, level)
    held = []
    for _ in range(ENCODERS):
        stream = encoding.stream()
        stream.chunk(MESSAGE)
        held.append(stream)
    with open("/proc/self/statm") as statm:
        after = int(statm.read().split()[1])
    return (after - before) * 4096 / ENCODERS / 1024


def measured(coding: bytes, level: int) -> float:
    """``per_stream_kib`` in a fresh interpreter: nothing freed earlier is reused."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
        "from test_compression_stream_memory import per_stream_kib;"
        f"print(per_stream_kib({coding!r}, {level}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_a_gzip_stream_holds_far_less_than_a_brotli_one() -> None:
    gzip, br4, br5 = measured(b"gzip", 6), measured(b"br", 4), measured(b"br", 5)
    assert gzip * 4 < br4, (gzip, br4)  # measured: ~43 against ~525 KiB
    assert br5 * 1.5 < br4, (br5, br4)  # ~273 against ~525 KiB


if __name__ == "__main__":
    for coding, levels in ((b"gzip", (1, 6, 9)), (b"br", (0, 1, 4, 5, 6, 9, 11))):
        for level in levels:
            print(f"{coding.decode()} {level}: {measured(coding, level):.0f} KiB per stream")
