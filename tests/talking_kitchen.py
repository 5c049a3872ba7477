"""What the gRPC-Web and Connect end-to-end tests share: an upstream that talks back.

The kitchen (tests/kitchen_upstream.py) with metadata of its own: ``Plain`` sends initial
and trailing metadata, text and binary; ``Count`` ends with a trailer; ``Inspect`` counts
the calls that reach it; and ``RetryService.Read`` (NO_SIDE_EFFECTS, for Connect GET)
counts its reads. ``talking_stack`` serves them behind a real gateway.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from conftest import TEST_PROTOS, Gateway, make_config, run_gateway
from connect_peer import descriptor_set_for
from kitchen_upstream import Kitchen, Streams

from edgetest.v1 import kitchen_pb2 as pb
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc
from edgetest.v1 import retry_pb2, retry_pb2_grpc

KITCHEN = "edgetest.v1.KitchenService"
STREAMS = "edgetest.v1.StreamService"
RETRY = "edgetest.v1.RetryService"


class TalkingKitchen(Kitchen):
    """The kitchen whose Plain sends initial and trailing metadata, text and binary;
    it counts the Inspect calls that reach it."""

    inspected = 0

    async def Inspect(  # noqa: N802
        self, request: pb.Kitchen, context: grpc.aio.ServicerContext
    ) -> pb.Inspection:
        self.inspected += 1
        return await super().Inspect(request, context)

    async def Plain(  # noqa: N802
        self, request: pb.Kitchen, context: grpc.aio.ServicerContext
    ) -> pb.Kitchen:
        await context.send_initial_metadata((("x-initial", "one"), ("x-initial-bin", b"\x00\xff")))
        context.set_trailing_metadata((("x-trailer", "two"), ("x-trailer-bin", b"\x01\x02")))
        return request


class TalkingStreams(Streams):
    """Streams whose Count ends with a trailer saying how many ticks it sent."""

    async def Count(  # noqa: N802
        self, request: pb.CountRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Tick]:
        context.set_trailing_metadata((("x-ticks", str(request.count)),))
        async for tick in super().Count(request, context):
            yield tick


class Reads(retry_pb2_grpc.RetryServiceServicer):
    """RetryService.Read (NO_SIDE_EFFECTS) answering how many reads it has had."""

    def __init__(self) -> None:
        self.reads = 0

    async def Read(  # noqa: N802
        self, request: retry_pb2.Attempt, context: grpc.aio.ServicerContext
    ) -> retry_pb2.Attempts:
        self.reads += 1
        return retry_pb2.Attempts(attempt=self.reads)


@dataclass
class Stack:
    gateway: Gateway
    kitchen: TalkingKitchen
    reads: Reads


@contextlib.asynccontextmanager
async def talking_stack(**extra: Any) -> AsyncIterator[Stack]:
    """The talking kitchen, its streams and RetryService behind a gateway (``extra``:
    top-level config sections)."""
    kitchen = TalkingKitchen()
    kitchen.streams = TalkingStreams()
    reads = Reads()
    server = grpc.aio.server()
    pb_grpc.add_KitchenServiceServicer_to_server(kitchen, server)
    pb_grpc.add_StreamServiceServicer_to_server(kitchen.streams, server)
    retry_pb2_grpc.add_RetryServiceServicer_to_server(reads, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with run_gateway(make_config(port, extra=extra)) as gateway:
            yield Stack(gateway, kitchen, reads)
    finally:
        await server.stop(None)


def write_wider_protos(root: Path) -> Path:
    """The test protos under ``root``, plus a method and a service the gateway's copy lacks.

    A client built from these can call what the gateway never loaded.
    """
    shutil.copytree(TEST_PROTOS, root, dirs_exist_ok=True)
    kitchen = root / "edgetest" / "v1" / "kitchen.proto"
    text = kitchen.read_text()
    marker = "  rpc Plain(Kitchen) returns (Kitchen);\n"
    assert marker in text
    text = text.replace(marker, marker + "  rpc Missing(Kitchen) returns (Kitchen);\n")
    text += "\nservice GhostService {\n  rpc Boo(Kitchen) returns (Kitchen);\n}\n"
    kitchen.write_text(text)
    return root


def error_of(result: dict[str, Any], code: str) -> dict[str, Any]:
    """A client result's error, which must be the server's with this Connect code."""
    assert not result["ok"], result
    error: dict[str, Any] = result["error"]
    assert error["code"] == code, error
    assert error["cause"] is None, error  # the server's status, not a client-side failure
    return error


def kitchen_spec(
    transport: str,
    gateway: Gateway,
    service: str,
    method: str,
    request: dict[str, Any] | None = None,
    /,
    *,
    protos: Path = TEST_PROTOS,
    **extra: Any,
) -> dict[str, Any]:
    """A connect-es call (binary unless ``binary=False``), in the spec client.mjs reads;
    ``extra`` overrides any key, ``transport`` included."""
    out: dict[str, Any] = {
        "baseUrl": gateway.base_url,
        "transport": transport,
        "binary": True,
        "service": service,
        "method": method,
        "request": request or {},
        "descriptorSetBase64": base64.b64encode(descriptor_set_for(protos)).decode(),
        "timeoutMs": 10_000,
    }
    out.update(extra)
    return out
