"""A real grpc.aio upstream for the tests: echoes, inspects, fails and sleeps on request."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
from google.protobuf import any_pb2, empty_pb2
from google.rpc import error_details_pb2, status_pb2

from edgetest.v1 import kitchen_pb2 as pb
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc


class Kitchen(pb_grpc.KitchenServiceServicer):
    def __init__(self) -> None:
        self.seen: list[pb.Kitchen] = []
        self.cancelled = 0

    async def Echo(self, request: pb.Kitchen, context: grpc.aio.ServicerContext) -> pb.Kitchen:  # noqa: N802
        self.seen.append(request)
        return request

    async def Plain(self, request: pb.Kitchen, context: grpc.aio.ServicerContext) -> pb.Kitchen:  # noqa: N802
        return request

    async def Inspect(  # noqa: N802
        self, request: pb.Kitchen, context: grpc.aio.ServicerContext
    ) -> pb.Inspection:
        inspection = pb.Inspection(request=request)
        for key, value in context.invocation_metadata() or ():
            if isinstance(value, bytes):
                value = "bin:" + value.hex()
            inspection.metadata[key] = value
        remaining = context.time_remaining()
        inspection.deadline_seconds = remaining if remaining is not None else 0.0
        return inspection

    async def Fail(  # noqa: N802
        self, request: pb.FailRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        if request.headers:
            await context.send_initial_metadata(tuple(request.headers.items()))
        trailers: list[tuple[str, str | bytes]] = list(request.trailers.items())
        if request.bad_field:
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=request.bad_field, description="is bad"
                        )
                    ]
                )
            )
            status = status_pb2.Status(code=request.code, message=request.message, details=[detail])
            trailers.append(("grpc-status-details-bin", status.SerializeToString()))
        code = next(c for c in grpc.StatusCode if c.value[0] == request.code)
        await context.abort(code, request.message, trailing_metadata=tuple(trailers))
        raise AssertionError("abort returned")

    async def Sleep(  # noqa: N802
        self, request: pb.SleepRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            await asyncio.sleep(request.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return empty_pb2.Empty()


async def start_kitchen() -> tuple[grpc.aio.Server, int, Kitchen]:
    server = grpc.aio.server()
    kitchen = Kitchen()
    pb_grpc.add_KitchenServiceServicer_to_server(kitchen, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, kitchen
