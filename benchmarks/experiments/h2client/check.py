"""Edge cases the demo upstream never exercises, against a real grpc.aio server in process.

Run as ``python -m benchmarks.experiments.h2client.check``. For each prototype client on
asyncio and on uvloop it checks: metadata both ways (``-bin`` included), an error with a
percent-encoded message and ``grpc-status-details-bin``, UNIMPLEMENTED, deadlines (the
stream is reset and the connection stays usable), cancellation, 1 MiB requests and 3 MiB
replies (flow control and frame splitting both ways), more calls than the server's
MAX_CONCURRENT_STREAMS, a reply over the 4 MiB limit, and a server stopping mid-call.
Prints one line per check; exits non-zero on the first failure.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import grpc.aio
from google.rpc import status_pb2

from .common import RpcError, StatusCode
from .h2lib import H2LibClient
from .handrolled import HandRolledClient

SERVICE = "test.Probe"
MESSAGE = "bad % input: ü"  # percent-encoded on the wire
DETAILS = status_pb2.Status(code=3, message=MESSAGE).SerializeToString()


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    received = {k: v for k, v in context.invocation_metadata() or ()}
    await context.send_initial_metadata((("x-initial", "yes"),))
    context.set_trailing_metadata(
        (("x-seen", str(received.get("x-user", ""))), ("x-raw-bin", received["x-raw-bin"]))
    )
    return request


async def _fail(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        MESSAGE,
        trailing_metadata=(("grpc-status-details-bin", DETAILS),),
    )
    raise AssertionError("unreachable")


async def _slow(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await asyncio.sleep(float(request.decode()))
    return b"late"


async def _big(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return bytes(int(request.decode()))


async def _serve(**options: int) -> tuple[grpc.aio.Server, int]:
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "Fail": grpc.unary_unary_rpc_method_handler(_fail),
        "Slow": grpc.unary_unary_rpc_method_handler(_slow),
        "Big": grpc.unary_unary_rpc_method_handler(_big),
    }
    server = grpc.aio.server(
        options=[
            *options.items(),
            ("grpc.max_receive_message_length", 16 << 20),
            ("grpc.max_send_message_length", 16 << 20),
        ]
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


Client = H2LibClient | HandRolledClient


async def _code_of(call: Coroutine[Any, Any, Any]) -> RpcError:
    try:
        await call
    except RpcError as error:
        return error
    raise AssertionError("call succeeded, expected an error")


def _path(method: str) -> bytes:
    return f"/{SERVICE}/{method}".encode()


async def check_metadata(client: Client) -> None:
    raw = bytes(range(256))
    reply = await client.unary(
        _path("Echo"), b"ping", timeout=5, metadata=(("x-user", "alice"), ("x-raw-bin", raw))
    )
    trailers = dict(reply.trailing_metadata)
    assert reply.message == b"ping"
    assert dict(reply.initial_metadata)[b"x-initial"] == b"yes"
    assert trailers[b"x-seen"] == b"alice", trailers
    echoed = trailers[b"x-raw-bin"]
    assert base64.b64decode(echoed + b"=" * (-len(echoed) % 4)) == raw


async def check_error_details(client: Client) -> None:
    error = await _code_of(client.unary(_path("Fail"), b"", timeout=5))
    assert error.code is StatusCode.INVALID_ARGUMENT, error
    assert error.message == MESSAGE, error.message
    assert error.details == DETAILS


async def check_unimplemented(client: Client) -> None:
    error = await _code_of(client.unary(_path("Nope"), b"", timeout=5))
    assert error.code is StatusCode.UNIMPLEMENTED, error


async def check_deadline(client: Client) -> None:
    error = await _code_of(client.unary(_path("Slow"), b"2", timeout=0.1))
    assert error.code is StatusCode.DEADLINE_EXCEEDED, error
    assert (await client.unary(_path("Echo"), b"after", metadata=_BIN)).message == b"after"


async def check_cancel(client: Client) -> None:
    task = asyncio.ensure_future(client.unary(_path("Slow"), b"2", timeout=5))
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("not cancelled")
    assert (await client.unary(_path("Echo"), b"after", metadata=_BIN)).message == b"after"


async def check_big(client: Client) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB: many frames, beyond the default 64 KiB window
    assert (await client.unary(_path("Echo"), payload, timeout=10, metadata=_BIN)).message == (
        payload
    )
    reply = await client.unary(_path("Big"), str(3 << 20).encode(), timeout=10)
    assert reply.message == bytes(3 << 20)


async def check_too_big(client: Client) -> None:
    error = await _code_of(client.unary(_path("Big"), str(5 << 20).encode(), timeout=10))
    assert error.code is StatusCode.RESOURCE_EXHAUSTED, error
    assert (await client.unary(_path("Echo"), b"after", metadata=_BIN)).message == b"after"


async def check_many(client: Client) -> None:
    replies = await asyncio.gather(
        *(client.unary(_path("Slow"), b"0.02", timeout=10) for _ in range(50))
    )
    assert all(r.message == b"late" for r in replies)


_BIN = (("x-raw-bin", b"\x00"),)
CHECKS: list[Callable[[Client], Coroutine[Any, Any, None]]] = [
    check_many,
    check_metadata,
    check_error_details,
    check_unimplemented,
    check_deadline,
    check_cancel,
    check_big,
    check_too_big,
    check_many,  # again, after resets: the server may still count reset streams as open
]


async def check_server_stop(cls: type[Client]) -> str:
    server, port = await _serve()
    client = await cls.connect("127.0.0.1", port)
    calls = [asyncio.ensure_future(client.unary(_path("Slow"), b"3", timeout=10)) for _ in range(3)]
    await asyncio.sleep(0.1)
    await server.stop(grace=None)
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
    codes = sorted({r.code.name if isinstance(r, RpcError) else repr(r) for r in results})
    assert all(isinstance(r, RpcError) for r in results), results
    late = await _code_of(client.unary(_path("Echo"), b"", timeout=1))
    client.close()
    return f"in-flight -> {codes}, next call -> {late.code.name}"


async def run_all() -> None:
    server, port = await _serve(**{"grpc.max_concurrent_streams": 4})
    try:
        for cls in (H2LibClient, HandRolledClient):
            client = await cls.connect("127.0.0.1", port)
            for check in CHECKS:
                await asyncio.wait_for(check(client), 20)
                print(f"  {cls.__name__:>16} {check.__name__}: ok")
            client.close()
            print(f"  {cls.__name__:>16} check_server_stop: {await check_server_stop(cls)}")
    finally:
        await server.stop(grace=None)


def main() -> None:
    import uvloop

    print("asyncio:")
    asyncio.run(run_all())
    print("uvloop:")
    uvloop.run(run_all())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
