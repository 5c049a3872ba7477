"""The demo LibraryService in a process of its own, so its CPU is never charged to the gateway.

Run as ``python -m benchmarks.upstream PORT_FILE``. It binds an ephemeral port (port 0,
so no other process can take it between choosing and binding), writes the port to
``PORT_FILE`` once serving, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
from pathlib import Path
from typing import Any

from edge.demo.library import start_library


def write_atomically(path: Path, text: str) -> None:
    """Write then rename, so a reader polling ``path`` never sees half a port number."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


async def serve(port_file: Path) -> None:
    server, port = await start_library("127.0.0.1:0")
    await serve_until_signalled(server, port, port_file)


async def serve_until_signalled(server: Any, port: int, port_file: Path) -> None:
    """Publish the port, then serve until SIGINT or SIGTERM (both benchmark upstreams).

    The heap made at start-up is frozen first, as ``edge serve`` freezes the gateway's
    (edge.heap). The upstream is not under test, but its pauses land in the gateway's
    latencies: unfrozen, its full collections took 12-16 ms under the POST's load and
    its loop lagged up to 15 ms; frozen, under 1 ms and 4 ms (gc.callbacks and a 5 ms
    loop-lag sampler, three 10 s wrk runs each). The issue's own figures were taken with
    a Go upstream, whose collector does not stop the world for that long.
    """
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    write_atomically(port_file, str(port))
    try:
        await stop.wait()
    finally:
        await server.stop(grace=0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port_file", type=Path)
    asyncio.run(serve(parser.parse_args().port_file))


if __name__ == "__main__":
    main()
