"""A real grpc.aio upstream for the mapping tests, and a gateway in front of it.

``MappingService`` (tests/mapping_protos) has no generated stubs: its message classes
come from the same descriptors the gateway loads, and the server is a generic handler.
Every request that reaches it is recorded, so a test sees exactly what was bound, and a
refused request is proven never to have arrived.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from conftest import ROOT, Gateway, make_config, run_gateway
from google.protobuf.message import Message

from edge.descriptors.registry import Registry, load_registry

MAPPING_PROTOS = ROOT / "tests" / "mapping_protos"
SERVICE = "edgetest.mapping.v1.MappingService"


def mapping_registry(root: Path = MAPPING_PROTOS) -> Registry:
    registry = load_registry([root])
    assert not registry.problems, registry.problems
    return registry


@dataclass
class MappingUpstream:
    registry: Registry
    received: list[tuple[str, Message]] = field(default_factory=list)

    def classes(self, method: str) -> tuple[type[Message], type[Message]]:
        info = next(m for m in self.registry.services()[SERVICE] if m.name == method)
        return info.input_type, info.output_type

    def last(self, method: str) -> Message:
        return next(m for name, m in reversed(self.received) if name == method)

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(method: str, answer: Callable[[Message], Message]) -> grpc.RpcMethodHandler:
            request_type, _ = self.classes(method)

            async def serve(request: Message, context: grpc.aio.ServicerContext) -> Message:
                self.received.append((method, request))
                return answer(request)

            return grpc.unary_unary_rpc_method_handler(
                serve,
                request_deserializer=request_type.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )

        _, receipt = self.classes("Upload")

        def from_upload(request: Any) -> Message:
            return receipt(content_type=request.content_type, data=request.data)

        def from_attach(request: Any) -> Message:
            return receipt(
                content_type=request.file.content_type,
                data=request.file.data,
                name=request.name,
                note=request.note,
                tags=list(request.tags),
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Upload": unary("Upload", from_upload),
                "Attach": unary("Attach", from_attach),
                "Lookup": unary("Lookup", lambda request: request),
            },
        )


@dataclass
class MappingStack:
    gateway: Gateway
    upstream: MappingUpstream

    def client(self, **kwargs: Any) -> Any:
        return self.gateway.client(**kwargs)


@contextlib.asynccontextmanager
async def mapping_stack(**extra: Any) -> AsyncIterator[MappingStack]:
    """The mapping upstream on an ephemeral port behind a real gateway (``extra``: config)."""
    upstream = MappingUpstream(mapping_registry())
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((upstream.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        config = make_config(port, protos=MAPPING_PROTOS, extra=extra)
        async with run_gateway(config) as gateway:
            yield MappingStack(gateway, upstream)
    finally:
        await server.stop(grace=None)
