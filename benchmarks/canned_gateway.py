"""The gateway with its gRPC client replaced by a canned reply: the cost of edge alone.

Served exactly like ``edge serve`` (same app, same Hypercorn settings, same event loop),
but the terminal step answers with a pre-serialized demo Book instead of calling the
upstream. Gateway minus this is what the grpc.aio client costs; this minus bare Hypercorn
is what routing, binding, JSON and the pipeline cost.

Run as ``python -m benchmarks.canned_gateway CONFIG``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Iterable
from pathlib import Path

from hypercorn.asyncio import serve

from edge import heap
from edge.app import create_app
from edge.call import Call, Reply
from edge.cli import hypercorn_config, run_with_loop
from edge.config import load_config
from edge.descriptors.registry import MethodInfo
from edgedemo.library.v1 import library_pb2 as pb

BOOK = pb.Book(
    name="shelves/1/books/1",
    title="The Left Hand of Darkness",
    author="Ursula K. Le Guin",
    genre=pb.GENRE_FICTION,
    page_count=304,
).SerializeToString()


class CannedTerminal:
    """Answers every call with BOOK, decoded per call as a real reply would be."""

    def open(self, routes: Iterable[tuple[str, MethodInfo]]) -> None:
        pass

    async def close(self) -> None:
        pass

    async def __call__(self, call: Call) -> Reply:
        assert call.method is not None  # a transcoded call always carries its method
        return Reply(call.method.output_type.FromString(BOOK))


async def run(config_file: Path) -> None:
    config = load_config(config_file)
    heap.enable()  # as edge serve does: the heap is frozen once started
    app = create_app(config, terminal=CannedTerminal())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, hypercorn_config(config), shutdown_trigger=stop.wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path)
    config_file = parser.parse_args().config
    run_with_loop(run(config_file), load_config(config_file).server.event_loop)


if __name__ == "__main__":
    main()
