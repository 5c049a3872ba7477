"""gRPC over WebSocket with a real WebSocket client: every RPC kind and the protocol's edges."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from edgetest.v1 import kitchen_pb2 as pb

pytestmark = pytest.mark.e2e

PROTOCOL = "edge.grpc-ws.v1"


def ws_url(stack: Any, path: str) -> str:
    return stack.gateway.base_url.replace("http://", "ws://") + path


def open_socket(stack: Any, path: str, **kwargs: Any) -> Any:
    kwargs.setdefault("subprotocols", [PROTOCOL])
    return connect(ws_url(stack, path), open_timeout=5, **kwargs)


async def frames_until_close(ws: ClientConnection, within: float = 10) -> list[Any]:
    """Every frame the gateway sends until it closes the socket; fails after ``within`` s."""
    frames: list[Any] = []
    async with asyncio.timeout(within):
        try:
            while True:
                frame = await ws.recv()
                frames.append(json.loads(frame) if isinstance(frame, str) else frame)
        except ConnectionClosed:
            return frames


async def until(condition: Callable[[], bool], within: float) -> bool:
    """Poll ``condition()`` until it holds or ``within`` seconds pass; its last value."""
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return condition()


async def settled(read: Callable[[], int], quiet: float, within: float) -> int:
    """``read()`` once it has not changed for ``quiet`` seconds; fails after ``within``.

    Load can only stretch how long a value takes to settle, so this is safe where "the
    value is the same 0.5 s after a 1 s sleep" is not.
    """
    deadline = time.monotonic() + within
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return value
    raise AssertionError(f"still changing after {within}s (at {value})")


OK = {"status": {"code": 0, "message": "", "details": []}, "trailers": {}}


async def test_unary_generic_path(stack: Any) -> None:
    async with open_socket(stack, "/ws/edgetest.v1.KitchenService/Echo") as ws:
        assert ws.subprotocol == PROTOCOL
        await ws.send(json.dumps({"message": {"stringValue": "hi", "int64Value": "5"}}))
        frames = await frames_until_close(ws)
    assert frames == [{"message": {"stringValue": "hi", "int64Value": "5"}}, OK]
    assert ws.close_code == 1000


async def test_unary_on_the_http_rule_path_binds_path_variables(stack: Any) -> None:
    async with open_socket(stack, "/v1/kitchen/from-path") as ws:
        await ws.send(json.dumps({"message": {"stringValue": "ignored", "boolValue": True}}))
        frames = await frames_until_close(ws)
    assert frames[0] == {"message": {"stringValue": "from-path", "boolValue": True}}


async def test_server_streaming(stack: Any) -> None:
    async with open_socket(stack, "/v1/count/3") as ws:
        await ws.send(json.dumps({"message": {}}))
        frames = await frames_until_close(ws)
    assert frames == [{"message": {}}, {"message": {"index": 1}}, {"message": {"index": 2}}, OK]
    assert ws.close_code == 1000


async def test_client_streaming(stack: Any) -> None:
    async with open_socket(stack, "/ws/edgetest.v1.StreamService/Sum") as ws:
        for value in (5, 6, 7):
            await ws.send(json.dumps({"message": {"value": value}}))
        await ws.send(json.dumps({"end": True}))
        frames = await frames_until_close(ws)
    assert frames == [{"message": {"sum": "18", "count": 3}}, OK]


async def test_bidi_with_replies_after_half_close(stack: Any) -> None:
    async with open_socket(stack, "/ws/edgetest.v1.StreamService/Shout") as ws:
        await ws.send(json.dumps({"message": {"text": "a"}}))
        assert json.loads(await ws.recv()) == {"message": {"text": "A"}}
        await ws.send(json.dumps({"message": {"text": "b"}}))
        assert json.loads(await ws.recv()) == {"message": {"text": "B"}}
        await ws.send(json.dumps({"end": True}))  # half-close: the server still answers
        frames = await frames_until_close(ws)
    assert frames == [{"message": {"text": "bye"}}, OK]
    assert ws.close_code == 1000


async def test_error_mid_stream_closes_with_the_status(stack: Any) -> None:
    async with open_socket(stack, "/v1/count/5?failAfter=2&failCode=9") as ws:
        await ws.send(json.dumps({"message": {"failAfter": 2, "failCode": 9}}))
        frames = await frames_until_close(ws)
    assert frames[:2] == [{"message": {}}, {"message": {"index": 1}}]
    assert frames[2] == {
        "status": {"code": 9, "message": "failed after 2 ticks", "details": []},
        "trailers": {},
    }
    assert ws.close_code == 4009
    assert ws.close_reason == "failed after 2 ticks"


async def test_unary_error_with_details_and_trailers(stack: Any) -> None:
    async with open_socket(stack, "/ws/edgetest.v1.KitchenService/Fail") as ws:
        request = {"code": 5, "message": "gone", "badField": "f", "trailers": {"x-t": "1"}}
        await ws.send(json.dumps({"message": request}))
        frames = await frames_until_close(ws)
    (status,) = frames
    assert status["status"]["code"] == 5
    assert status["status"]["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert status["trailers"] == {"x-t": "1"}
    assert ws.close_code == 4005


async def test_metadata_in_the_first_frame(stack: Any) -> None:
    async with open_socket(stack, "/ws/edgetest.v1.KitchenService/Inspect") as ws:
        metadata = {"authorization": "Bearer in-band", "x-tenant": "acme"}
        await ws.send(json.dumps({"metadata": metadata}))
        await ws.send(json.dumps({"message": {"stringValue": "m"}}))
        frames = await frames_until_close(ws)
    seen = frames[0]["message"]["metadata"]
    assert seen["authorization"] == "Bearer in-band"
    assert seen["x-tenant"] == "acme"


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/ws/edgetest.v1.KitchenService/Inspect?access_token=tok", {}),
        ("/ws/edgetest.v1.KitchenService/Inspect", {"subprotocols": [PROTOCOL, "edge.bearer.tok"]}),
    ],
)
async def test_token_forms(stack: Any, path: str, kwargs: dict[str, Any]) -> None:
    async with open_socket(stack, path, **kwargs) as ws:
        assert ws.subprotocol == PROTOCOL  # the token is never echoed back as the protocol
        await ws.send(json.dumps({"message": {}}))
        frames = await frames_until_close(ws)
    assert frames[0]["message"]["metadata"]["authorization"] == "Bearer tok"


async def test_token_cookie(stack_factory: Any) -> None:
    async with stack_factory(websocket={"token_cookie": "edge_token"}) as stack:
        async with open_socket(
            stack,
            "/ws/edgetest.v1.KitchenService/Inspect",
            additional_headers={"cookie": "theme=dark; edge_token=from-cookie"},
        ) as ws:
            await ws.send(json.dumps({"message": {}}))
            frames = await frames_until_close(ws)
    assert frames[0]["message"]["metadata"]["authorization"] == "Bearer from-cookie"


async def test_origin_refused_unless_allowed(stack_factory: Any) -> None:
    async with stack_factory() as stack:
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(
                stack, "/ws/edgetest.v1.KitchenService/Echo", origin="https://evil.example"
            ):
                pass
        assert refused.value.response.status_code == 403
        assert json.loads(refused.value.response.body)["code"] == 7
        same = stack.gateway.base_url  # same-origin is allowed by default
        async with open_socket(stack, "/ws/edgetest.v1.KitchenService/Echo", origin=same) as ws:
            await ws.send(json.dumps({"message": {}}))
            assert (await frames_until_close(ws))[-1] == OK
    async with stack_factory(websocket={"allowed_origins": ["https://app.example"]}) as stack:
        async with open_socket(
            stack, "/ws/edgetest.v1.KitchenService/Echo", origin="https://app.example"
        ) as ws:
            await ws.send(json.dumps({"message": {}}))
            assert (await frames_until_close(ws))[-1] == OK


async def test_subprotocol_is_required(stack: Any) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(stack, "/ws/edgetest.v1.KitchenService/Echo", subprotocols=None):
            pass
    assert refused.value.response.status_code == 400
    assert PROTOCOL in json.loads(refused.value.response.body)["message"]


async def test_large_messages_pass_and_the_limit_closes_1009(stack_factory: Any) -> None:
    async with stack_factory() as stack:  # default limit: 4 MiB, far above the usual 64 KB
        async with open_socket(stack, "/ws/edgetest.v1.KitchenService/Echo", max_size=None) as ws:
            await ws.send(json.dumps({"message": {"stringValue": "x" * 1_000_000}}))
            frames = await frames_until_close(ws)
        assert len(frames[0]["message"]["stringValue"]) == 1_000_000
    async with stack_factory(websocket={"max_message_bytes": "1KiB"}) as stack:
        async with open_socket(stack, "/ws/edgetest.v1.StreamService/Shout") as ws:
            await ws.send(json.dumps({"message": {"text": "x" * 2000}}))
            await frames_until_close(ws)
        assert ws.close_code == 1009


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ("not json", "malformed JSON"),
        ('{"message": {"noSuchField": 1}}', "noSuchField"),
        ('{"what": 1}', "unknown frame kind"),
        ('{"message": {}, "end": true}', "a frame is one of"),
    ],
)
async def test_bad_frames_end_the_call_with_invalid_argument(
    stack: Any, frame: str, problem: str
) -> None:
    async with open_socket(stack, "/ws/edgetest.v1.StreamService/Shout") as ws:
        await ws.send(frame)
        frames = await frames_until_close(ws)
    assert frames[-1]["status"]["code"] == 3
    assert problem in frames[-1]["status"]["message"]
    assert ws.close_code == 4003


async def test_closing_the_socket_cancels_the_upstream(stack: Any) -> None:
    streams = stack.kitchen.streams
    async with open_socket(stack, "/v1/count/1000") as ws:
        await ws.send(json.dumps({"message": {"intervalSeconds": 0.05}}))
        await ws.recv()
    await asyncio.wait_for(streams.cancelled.wait(), 5)
    assert streams.sent < 100


async def test_binary_protobuf_frames(stack: Any) -> None:
    async with open_socket(
        stack, "/ws/edgetest.v1.KitchenService/Echo", subprotocols=["edge.grpc-ws.v1.binary"]
    ) as ws:
        assert ws.subprotocol == "edge.grpc-ws.v1.binary"
        await ws.send(pb.Kitchen(string_value="raw", int64_value=7).SerializeToString())
        reply = await ws.recv()
        status = json.loads(await ws.recv())
    assert pb.Kitchen.FromString(reply) == pb.Kitchen(string_value="raw", int64_value=7)
    assert status == OK


async def test_a_socket_that_sends_nothing_is_closed_at_the_first_frame_timeout(
    stack_factory: Any,
) -> None:
    """Not held until the 300 s idle timeout: a socket that starts no call costs 500 ms."""
    async with stack_factory(websocket={"first_frame_timeout": "500ms"}) as stack:
        started = time.monotonic()
        async with open_socket(stack, "/ws/edgetest.v1.StreamService/Shout") as ws:
            frames = await frames_until_close(ws)  # sends nothing
        waited = time.monotonic() - started
    message = "no frame arrived within 0.5s to start the call"
    assert frames == [{"status": {"code": 3, "message": message, "details": []}, "trailers": {}}]
    assert ws.close_code == 4003
    assert ws.close_reason == message
    assert waited >= 0.5  # not before the timeout either (load can only make it later)
    assert stack.kitchen.received == []


async def test_idle_socket_is_closed(stack_factory: Any) -> None:
    async with stack_factory(websocket={"idle_timeout": "300ms"}) as stack:
        async with open_socket(stack, "/ws/edgetest.v1.StreamService/Shout") as ws:
            await ws.send(json.dumps({"message": {"text": "a"}}))
            assert json.loads(await ws.recv()) == {"message": {"text": "A"}}
            await frames_until_close(ws)  # then silence
        assert ws.close_code == 1001


async def test_slow_reader_backpressures_the_upstream(stack: Any) -> None:
    streams = stack.kitchen.streams
    # compression off: padding of one repeated letter would deflate to nothing; a short
    # close timeout: the gateway, stuck writing to a reader that stopped, cannot answer
    # the Close in time, and waiting for it proves nothing
    async with open_socket(
        stack, "/v1/count/2000", max_size=None, max_queue=1, compression=None, close_timeout=1
    ) as ws:
        await ws.send(json.dumps({"message": {"padding": 65536}}))
        await ws.recv()
        # a browser that stopped reading: the upstream stops too (held, not buffered)...
        held = await settled(lambda: streams.sent, quiet=0.5, within=20)
        assert held < 400  # bounded by socket and HTTP/2 windows, not 2000
        assert not streams.cancelled.is_set()
        # ...and goes on when the browser reads again, before the browser has read all that
        # was held. How many it must read first depends on the kernel's socket buffers (on
        # one machine 50 were enough, on another the upstream went on after 55-60), so the
        # test reads until it does rather than a fixed number.
        read = 0
        while streams.sent <= held:
            await asyncio.wait_for(ws.recv(), 10)
            read += 1
            assert read < held, f"read all {held} held messages and the upstream never went on"
            await asyncio.sleep(0)  # the gateway's turn to pass the window on
