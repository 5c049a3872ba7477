"""A real grpc.aio upstream for the tests: echoes, inspects, fails and sleeps on request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2, empty_pb2
from google.rpc import error_details_pb2, status_pb2

from edgetest.v1 import kitchen_pb2 as pb
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc


class Kitchen(pb_grpc.KitchenServiceServicer):
    streams: Streams

    def __init__(self) -> None:
        # every call that reached this server, any service: (method path, all metadata
        # pairs as received, repeated keys included), so a test can prove a refused
        # request never got here and see every value a forged header tried to add
        self.received: list[tuple[str, list[tuple[str, str | bytes]]]] = []
        self.seen: list[pb.Kitchen] = []
        self.cancelled = 0
        self.fail_calls: dict[str, int] = {}

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
            if key in inspection.metadata:  # every value of a repeated key, as HTTP joins them
                value = f"{inspection.metadata[key]}, {value}"
            inspection.metadata[key] = value
        remaining = context.time_remaining()
        inspection.deadline_seconds = remaining if remaining is not None else 0.0
        return inspection

    async def Fail(  # noqa: N802
        self, request: pb.FailRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        calls = self.fail_calls[request.message] = self.fail_calls.get(request.message, 0) + 1
        if request.times and calls > request.times:
            return empty_pb2.Empty()
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
        await context.abort(_code(request.code), request.message, trailing_metadata=tuple(trailers))
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


class Streams(pb_grpc.StreamServiceServicer):
    """All four streaming kinds; records what it saw so tests can check cancellation."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.counting = 0  # Count calls running now
        self.sent = 0
        self.received: list[int] = []

    async def Count(  # noqa: N802
        self, request: pb.CountRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Tick]:
        # a cancel seen by grpc, whether the handler was sleeping (CancelledError here) or
        # blocked writing to a full stream (then only grpc's context knows)
        context.add_done_callback(self._count_done)
        self.counting += 1
        try:
            for index in range(request.count):
                if request.fail_code and index == request.fail_after:
                    await context.abort(_code(request.fail_code), f"failed after {index} ticks")
                yield pb.Tick(index=index, padding="x" * request.padding)
                self.sent += 1
                if request.interval_seconds:
                    await asyncio.sleep(request.interval_seconds)
            if request.fail_code and request.fail_after >= request.count:
                await context.abort(_code(request.fail_code), "failed at the end")
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.counting -= 1

    def _count_done(self, context: Any) -> None:
        if context.cancelled():
            self.cancelled.set()

    async def Sum(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.Number], context: grpc.aio.ServicerContext
    ) -> pb.Total:
        total = pb.Total()
        async for number in request_iterator:
            self.received.append(number.value)
            total.sum += number.value
            total.count += 1
        return total

    async def Shout(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.Line], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Line]:
        try:
            async for line in request_iterator:
                if line.text == "fail":
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to fail")
                yield pb.Line(text=line.text.upper())
            yield pb.Line(text="bye")
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def _code(number: int) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == number)


class _Recorder(grpc.aio.ServerInterceptor):
    def __init__(self, kitchen: Kitchen) -> None:
        self.kitchen = kitchen

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        self.kitchen.received.append((details.method, list(details.invocation_metadata or ())))
        return await continuation(details)


async def start_kitchen(port: int = 0) -> tuple[grpc.aio.Server, int, Kitchen]:
    """The kitchen on ``port`` (0: an ephemeral one; a test restarting an upstream reuses it)."""
    kitchen = Kitchen()
    server = grpc.aio.server(interceptors=[_Recorder(kitchen)])
    kitchen.streams = Streams()
    pb_grpc.add_KitchenServiceServicer_to_server(kitchen, server)
    pb_grpc.add_StreamServiceServicer_to_server(kitchen.streams, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port, kitchen
