"""A real grpc.aio upstream answering with ``google.api.HttpBody``, for the HttpBody and
trailers tests.

Its proto is written by ``write_body_protos`` (the gateway reads the ``.proto``, as it
would a real service's); the upstream's own message classes come from the same file,
compiled with grpc-tools' protoc into a private pool, so no stubs are generated for it.
Every call can fail after some messages with a chosen code and message, and ends with a
trailer ``x-checksum`` (and an initial ``x-origin``), so a test sees metadata cross.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import grpc_tools
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

PACKAGE = "edgetest.body.v1"
SERVICE = f"{PACKAGE}.BodyService"

BODY_PROTO = """
syntax = "proto3";
package edgetest.body.v1;

import "google/api/annotations.proto";
import "google/api/httpbody.proto";

service BodyService {
  rpc Get(BodyRequest) returns (google.api.HttpBody) {
    option (google.api.http) = { get: "/v1/body/{name}" };
  }
  rpc Pieces(BodyRequest) returns (stream google.api.HttpBody) {
    option (google.api.http) = { get: "/v1/pieces/{name}" };
  }
  rpc Wrapped(BodyRequest) returns (Wrapper) {
    option (google.api.http) = { get: "/v1/wrapped/{name}" response_body: "body" };
  }
  rpc WrappedPieces(BodyRequest) returns (stream Wrapper) {
    option (google.api.http) = { get: "/v1/wrapped-pieces/{name}" response_body: "body" };
  }
  rpc Ticks(BodyRequest) returns (stream Tick) {
    option (google.api.http) = { get: "/v1/ticks/{name}" };
  }
}

message BodyRequest {
  string name = 1;
  // messages to send
  int32 count = 2;
  // with fail_code set: fail after this many messages
  int32 fail_after = 3;
  int32 fail_code = 4;
  string fail_message = 5;
  double interval_seconds = 6;
  string content_type = 7;
  // bytes of data per message
  int32 size = 8;
}

message Wrapper {
  string note = 1;
  google.api.HttpBody body = 2;
}

message Tick {
  int32 index = 1;
}
"""


def write_body_protos(folder: Path) -> Path:
    """The upstream's proto in ``folder`` (a proto path for the gateway); returns ``folder``."""
    target = folder / "edgetest" / "body" / "v1"
    target.mkdir(parents=True, exist_ok=True)
    (target / "body.proto").write_text(BODY_PROTO)
    return folder


def _message_classes() -> dict[str, Any]:
    import google.api.annotations_pb2 as annotations

    wkt = Path(grpc_tools.__file__).parent / "_proto"
    googleapis = Path(annotations.__file__).parents[2]
    with tempfile.TemporaryDirectory() as raw:
        folder = write_body_protos(Path(raw))
        out = Path(raw) / "set.pb"
        code = protoc.main(
            [
                "protoc",
                f"-I{folder}",
                f"-I{wkt}",
                f"-I{googleapis}",
                "--include_imports",
                f"--descriptor_set_out={out}",
                "edgetest/body/v1/body.proto",
            ]
        )
        assert code == 0, "protoc failed on the HttpBody test proto"
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    names = (
        "google.api.HttpBody",
        f"{PACKAGE}.BodyRequest",
        f"{PACKAGE}.Wrapper",
        f"{PACKAGE}.Tick",
    )
    return {
        name.rsplit(".", 1)[-1]: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
        for name in names
    }


_CLASSES = _message_classes()
HttpBody = _CLASSES["HttpBody"]
BodyRequest = _CLASSES["BodyRequest"]
Wrapper = _CLASSES["Wrapper"]
Tick = _CLASSES["Tick"]


def piece(index: int, size: int) -> bytes:
    """The data of message ``index``: ``size`` bytes, binary (every byte value occurs)."""
    start = index * 7 % 256
    return (_BYTES * (size // 256 + 2))[start : start + size]


_BYTES = bytes(range(256))


class BodyUpstream:
    """Records how far each stream got, so a test can see a cancel reach the upstream."""

    def __init__(self) -> None:
        self.sent = 0
        self.running = 0  # streams whose handler has not returned
        self.cancelled = asyncio.Event()

    async def _begin(self, context: Any) -> None:
        await context.send_initial_metadata((("x-origin", "body-upstream"),))
        context.set_trailing_metadata((("x-checksum", "c0ffee"),))

    async def _fail_if(self, request: Any, context: Any, index: int) -> None:
        if request.fail_code and index == request.fail_after:
            await context.abort(
                grpc.StatusCode(_code(request.fail_code)),
                request.fail_message or f"failed after {index}",
                trailing_metadata=(("x-checksum", "partial"),),
            )

    def _body(self, request: Any, index: int) -> Any:
        return HttpBody(content_type=request.content_type, data=piece(index, request.size))

    async def get(self, request: Any, context: Any) -> Any:
        await self._begin(context)
        await self._fail_if(request, context, 0)
        return self._body(request, 0)

    async def wrapped(self, request: Any, context: Any) -> Any:
        await self._begin(context)
        await self._fail_if(request, context, 0)
        return Wrapper(note="not sent", body=self._body(request, 0))

    async def _stream(self, request: Any, context: Any, make: Any) -> AsyncIterator[Any]:
        # a cancel seen by grpc, whether the handler was sleeping (CancelledError here) or
        # blocked writing to a full stream (then only grpc's context knows)
        context.add_done_callback(self._done)
        self.running += 1
        await self._begin(context)
        try:
            for index in range(request.count):
                await self._fail_if(request, context, index)
                if index and request.interval_seconds:
                    await asyncio.sleep(request.interval_seconds)
                yield make(request, index)
                self.sent += 1
            await self._fail_if(request, context, request.count)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.running -= 1

    def _done(self, context: Any) -> None:
        if context.cancelled():
            self.cancelled.set()

    async def pieces(self, request: Any, context: Any) -> AsyncIterator[Any]:
        async for message in self._stream(request, context, self._body):
            yield message

    async def wrapped_pieces(self, request: Any, context: Any) -> AsyncIterator[Any]:
        def wrapped(r: Any, i: int) -> Any:
            return Wrapper(note="not sent", body=self._body(r, i))

        async for message in self._stream(request, context, wrapped):
            yield message

    async def ticks(self, request: Any, context: Any) -> AsyncIterator[Any]:
        async for message in self._stream(request, context, lambda r, i: Tick(index=i)):
            yield message


def _code(value: int) -> Any:
    return next(code for code in grpc.StatusCode if code.value[0] == value)


def _handler(upstream: BodyUpstream) -> grpc.GenericRpcHandler:
    def serialize(message: Any) -> bytes:
        return bytes(message.SerializeToString())

    unary = {"Get": upstream.get, "Wrapped": upstream.wrapped}
    streams = {
        "Pieces": upstream.pieces,
        "WrappedPieces": upstream.wrapped_pieces,
        "Ticks": upstream.ticks,
    }
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for name, function in unary.items():
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            function, request_deserializer=BodyRequest.FromString, response_serializer=serialize
        )
    for name, function in streams.items():
        handlers[name] = grpc.unary_stream_rpc_method_handler(
            function, request_deserializer=BodyRequest.FromString, response_serializer=serialize
        )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


@contextlib.asynccontextmanager
async def body_upstream() -> AsyncIterator[tuple[int, BodyUpstream]]:
    """The upstream on an ephemeral loopback port: (port, its recorder)."""
    upstream = BodyUpstream()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(upstream),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port, upstream
    finally:
        await server.stop(grace=None)
