"""A server-streaming upstream for the streaming benchmark, in a process of its own.

Serves ``edgetest.v1.StreamService`` (tests/protos) with a ``Count`` that yields ticks as
fast as grpc takes them, or ``interval_seconds`` apart: ``count=2, interval_seconds=3600``
sends one tick at once and then holds the stream open for an hour, an open, quiet server
stream (a subscription) as the memory benchmark needs. Run as
``python -m benchmarks.stream_upstream PORT_FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc.aio

from benchmarks.upstream import serve_until_signalled
from edgetest.v1 import kitchen_pb2 as pb
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc


class Streams(pb_grpc.StreamServiceServicer):  # type: ignore[misc]
    async def Count(  # noqa: N802 - gRPC method name
        self, request: Any, context: Any
    ) -> AsyncIterator[Any]:
        padding = "x" * request.padding
        for index in range(request.count):
            yield pb.Tick(index=index, padding=padding)
            if request.interval_seconds and index + 1 < request.count:
                await asyncio.sleep(request.interval_seconds)


async def serve(port_file: Path) -> None:
    server = grpc.aio.server()
    pb_grpc.add_StreamServiceServicer_to_server(Streams(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await serve_until_signalled(server, port, port_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port_file", type=Path)
    asyncio.run(serve(parser.parse_args().port_file))


if __name__ == "__main__":
    main()
