"""Hostile gRPC-Web requests: frames, base64 and bodies no client library would send.

The rules (docs/grpc-web-and-connect.md, ``edge/ingress/grpc_web.py``): every answer is
a gRPC-Web status, a Trailers-Only HTTP 200 (``grpc-status`` in the headers, empty body,
``content-length: 0``) when nothing was sent yet, except an unsupported content type,
415; a refused request never reaches the upstream (the kitchen's interceptor records
every call that does); a length prefix over the limit is refused from its five bytes,
before the message is read; text mode takes padded base64 chunks split anywhere; and the
gateway keeps serving afterwards. The bodies are hand-made, sent over raw HTTP/1.1 (so
chunk boundaries are exactly the test's) or by httpx over h2c.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from recording import Edge, answer_headers, start_edge, token

from edge.ingress.asgi import LINGER_IDLE_SECONDS
from edge.ingress.grpc_web import GrpcWebAdapter
from edgetest.v1 import kitchen_pb2 as pb

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LIMIT = 4096  # transcoding.max_body_bytes here: the largest request message
BINARY = "application/grpc-web+proto"
TEXT = "application/grpc-web-text"
ECHO = "/edgetest.v1.KitchenService/Echo"
COUNT = "/edgetest.v1.StreamService/Count"
INSPECT = "/edgetest.v1.KitchenService/Inspect"  # needs a token (recording.start_edge)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running() -> AsyncIterator[Edge]:
    async with start_edge(transcoding={"max_body_bytes": LIMIT}) as edge:
        yield edge


@pytest.fixture
def edge(running: Edge) -> Edge:
    """The module's gateway, its upstreams' records cleared for this test."""
    running.kitchen.received.clear()
    running.kitchen.seen.clear()
    running.kitchen.streams.cancelled.clear()
    return running


# -- the wire, written by hand ---------------------------------------------------------


def frame(data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def echo_frame(text: str = "hi") -> bytes:
    return frame(pb.Kitchen(string_value=text).SerializeToString())


def frames_of(body: bytes) -> list[tuple[int, bytes]]:
    """(flags, data) of each length-prefixed frame; fails on leftover bytes."""
    out = []
    while body:
        flags, length = struct.unpack(">BI", body[:5])
        assert len(body) >= 5 + length, body
        out.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return out


def one_reply(body: bytes) -> tuple[bytes, dict[str, str]]:
    """The one message and the trailers of a unary answer's body (binary)."""
    frames = frames_of(body)
    assert [flags for flags, _ in frames] == [0, 0x80], frames
    return frames[0][1], trailers_of(frames[1][1])


def unbase64(text: bytes) -> bytes:
    """A text-mode body: padded base64 chunks one after another, each decoded alone."""
    out = b""
    while text:
        end = 0
        while end < len(text):
            end += 4
            if b"=" in text[end - 4 : end]:
                break
        out += base64.b64decode(text[:end], validate=True)
        text = text[end:]
    return out


def trailers_of(data: bytes) -> dict[str, str]:
    lines = data.decode("ascii").split("\r\n")
    assert lines[-1] == "", data  # every line ends with CRLF, no blank line after
    return dict(line.split(": ", 1) for line in lines[:-1])


async def exchange(
    port: int,
    path: str,
    pieces: list[bytes],
    *,
    content_type: str = BINARY,
    headers: dict[str, str] | None = None,
    pause: float = 0.02,
) -> tuple[int, dict[str, str], list[bytes]]:
    """POST ``pieces`` as HTTP/1.1 chunks, one write each; the answer's status, headers and
    body chunks (as the server wrote them, for a chunked answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n"
            "transfer-encoding: chunked\r\nconnection: close\r\n"
        )
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        writer.write(head.encode() + b"\r\n")
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(pause)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read(-1)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return parse_answer(answer)


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], list[bytes]]:
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = answer_headers(answer)
    if headers.get("transfer-encoding") != "chunked":
        return status, headers, [rest] if rest else []
    chunks = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return status, headers, chunks
        chunks.append(rest[:size])
        rest = rest[size + 2 :]


def assert_trailers_only(
    status: int, headers: dict[str, str], body: list[bytes], code: int, http_status: int = 200
) -> str:
    """A Trailers-Only answer with ``code``; returns its grpc-message (not empty)."""
    assert status == http_status, (status, headers)
    assert headers["grpc-status"] == str(code), headers
    assert headers["content-type"].startswith("application/grpc-web"), headers
    assert headers["content-length"] == "0", headers
    assert body == [], body
    assert headers.get("grpc-message"), headers
    return headers["grpc-message"]


async def still_serving(edge: Edge) -> None:
    """A good call on a fresh connection after the hostile one."""
    status, headers, body = await exchange(edge.gateway.port, ECHO, [echo_frame("after")])
    assert status == 200, headers
    message, _ = one_reply(b"".join(body))
    assert pb.Kitchen.FromString(message).string_value == "after"


def reached_upstream(edge: Edge) -> list[str]:
    return [method for method, _ in edge.kitchen.received]


# -- text mode ---------------------------------------------------------------------------


async def test_text_body_split_anywhere(edge: Edge) -> None:
    message = echo_frame("split across chunks and paddings")
    # two padded base64 chunks (a client flushed mid-message), cut mid-group on the wire
    text = base64.b64encode(message[:7]) + base64.b64encode(message[7:])
    pieces = [text[:3], text[3:9], text[9:10], text[10:]]
    status, headers, body = await exchange(edge.gateway.port, ECHO, pieces, content_type=TEXT)
    assert status == 200, headers
    assert headers["content-type"] == "application/grpc-web-text+proto"
    reply, trailers = one_reply(unbase64(b"".join(body)))
    assert pb.Kitchen.FromString(reply).string_value == "split across chunks and paddings"
    assert trailers == {"grpc-status": "0"}


@pytest.mark.parametrize(
    "text",
    [
        b"AAAA AAI=",  # whitespace
        b"AAAA-_==",  # URL-safe alphabet
        b"A=AA",  # padding inside a group
        b"AAAAAAIKAA",  # ends mid-group
        b"\xff\xfe\xfd\xfc",
    ],
    ids=["space", "urlsafe", "inner-pad", "unfinished", "bytes"],
)
async def test_invalid_base64(edge: Edge, text: bytes) -> None:
    answer = await exchange(edge.gateway.port, ECHO, [text], content_type=TEXT)
    message = assert_trailers_only(*answer, code=13)
    assert "base64" in message
    assert reached_upstream(edge) == []
    await still_serving(edge)


async def test_text_response_streamed_one_padded_chunk_per_message(edge: Edge) -> None:
    request = frame(pb.CountRequest(count=3, interval_seconds=0.05).SerializeToString())
    status, headers, chunks = await exchange(
        edge.gateway.port, COUNT, [base64.b64encode(request)], content_type=TEXT
    )
    assert status == 200, headers
    assert headers["content-type"] == "application/grpc-web-text+proto"
    assert headers["x-accel-buffering"] == "no"
    # each write is complete base64 on its own, one frame each: flushed per message
    decoded = [frames_of(base64.b64decode(chunk, validate=True)) for chunk in chunks if chunk]
    assert [len(frames) for frames in decoded] == [1, 1, 1, 1]
    ticks = [pb.Tick.FromString(data).index for [(flags, data)] in decoded[:3]]
    assert ticks == [0, 1, 2]
    assert trailers_of(decoded[3][0][1]) == {"grpc-status": "0"}


async def test_binary_request_asking_for_a_text_answer(edge: Edge) -> None:
    status, headers, body = await exchange(
        edge.gateway.port, ECHO, [echo_frame("t")], headers={"accept": TEXT}
    )
    assert status == 200, headers
    assert headers["content-type"] == "application/grpc-web-text+proto"
    reply, _ = one_reply(unbase64(b"".join(body)))
    assert pb.Kitchen.FromString(reply).string_value == "t"


# -- frames ------------------------------------------------------------------------------


async def test_length_prefix_of_4_gib_is_refused_before_buffering(edge: Edge) -> None:
    """Five bytes claim 2^32-1: answered at once, the rest of the body never awaited."""
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    try:
        writer.write(
            f"POST {ECHO} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {BINARY}\r\n"
            "transfer-encoding: chunked\r\n\r\n".encode()
            + b"5\r\n\x00\xff\xff\xff\xff\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(5):  # the body never ends: the answer cannot wait for it
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    headers = answer_headers(head)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert headers["grpc-status"] == "8"  # RESOURCE_EXHAUSTED, as gRPC for an over-size message
    assert "4294967295" in headers["grpc-message"]
    assert reached_upstream(edge) == []
    await still_serving(edge)


async def test_message_over_the_limit(edge: Edge) -> None:
    big = frame(pb.Kitchen(string_value="x" * LIMIT).SerializeToString())
    answer = await exchange(edge.gateway.port, ECHO, [big[:100], big[100:]])
    assert_trailers_only(*answer, code=8)
    assert reached_upstream(edge) == []


async def test_body_over_the_limit_by_its_content_length(edge: Edge) -> None:
    async with edge.gateway.client() as client:
        response = await client.post(
            ECHO, content=b"\x00" * (LIMIT + 100), headers={"content-type": BINARY}
        )
    assert response.status_code == 200
    assert response.headers["grpc-status"] == "8"
    assert response.content == b""
    assert reached_upstream(edge) == []


async def test_message_at_the_limit_is_served(edge: Edge) -> None:
    message = pb.Kitchen(string_value="x" * (LIMIT - 4)).SerializeToString()
    assert len(message) <= LIMIT
    status, headers, body = await exchange(
        edge.gateway.port, ECHO, [base64.b64encode(frame(message))], content_type=TEXT
    )
    assert status == 200, headers
    reply, _ = one_reply(unbase64(b"".join(body)))
    assert reply == message


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (frame(b"", flags=0x01), 12, "compressed"),  # UNIMPLEMENTED, grpc-accept-encoding
        (frame(b"grpc-status: 0\r\n", flags=0x80), 13, "trailer frame"),
        (frame(b"", flags=0x02), 13, "flags"),
        # a request cardinality violation: UNIMPLEMENTED (gRPC's doc/statuscodes.md)
        (echo_frame("one") + echo_frame("two"), 12, "more than one message"),
        (echo_frame("one") + b"\x00\x00", 12, "more than one message"),
        (echo_frame("cut")[:-1], 13, "ends inside a message"),
        (b"", 12, "no message"),
        (frame(b"\xff\xff\xff"), 13, "not a valid edgetest.v1.Kitchen"),
    ],
    ids=["compressed", "trailer", "flag", "two", "two-started", "cut", "empty", "bad-proto"],
)
async def test_refused_frames(edge: Edge, body: bytes, code: int, words: str) -> None:
    started = time.monotonic()
    status, headers, chunks = await exchange(edge.gateway.port, ECHO, [body] if body else [])
    # the whole body was in: the answer ends at once, without waiting to drain more
    assert time.monotonic() - started < LINGER_IDLE_SECONDS
    message = assert_trailers_only(status, headers, chunks, code)
    assert words in message, message
    if words == "compressed":
        assert headers["grpc-accept-encoding"] == "identity"
    assert reached_upstream(edge) == []
    await still_serving(edge)


async def test_grpc_encoding_is_refused(edge: Edge) -> None:
    answer = await exchange(
        edge.gateway.port, ECHO, [echo_frame()], headers={"grpc-encoding": "gzip"}
    )
    assert "gzip" in assert_trailers_only(*answer, code=12)
    assert reached_upstream(edge) == []


# -- content types, methods, credentials -------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/grpc-web+json", "application/grpc-web+thrift", "application/grpc-web-text+json"],
)
async def test_other_codecs_are_415(edge: Edge, content_type: str) -> None:
    answer = await exchange(edge.gateway.port, ECHO, [echo_frame()], content_type=content_type)
    message = assert_trailers_only(*answer, code=12, http_status=415)
    assert content_type.rpartition("+")[2] in message
    assert reached_upstream(edge) == []


async def test_a_compressed_body_is_415(edge: Edge) -> None:
    answer = await exchange(
        edge.gateway.port, ECHO, [echo_frame()], headers={"content-encoding": "gzip"}
    )
    assert "gzip" in assert_trailers_only(*answer, code=12, http_status=415)
    assert answer[1]["accept-encoding"] == "identity"
    assert reached_upstream(edge) == []


async def test_unknown_method_of_a_known_service(edge: Edge) -> None:
    answer = await exchange(edge.gateway.port, "/edgetest.v1.KitchenService/Nope", [echo_frame()])
    message = assert_trailers_only(*answer, code=12)
    assert message == "unknown method Nope for service edgetest.v1.KitchenService"
    assert reached_upstream(edge) == []


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/ghost.v1.Ghost/Boo", "unknown service ghost.v1.Ghost"),
        ("/v1/inspect", "unknown service v1"),  # a JSON route's path: not a gRPC method
        ("/a/b/c", "no gRPC method at this path"),
        ("/healthz", "no gRPC method at this path"),
    ],
)
async def test_any_other_path_is_unimplemented(edge: Edge, path: str, words: str) -> None:
    """Not the JSON 404, which grpc-web reads as NOT_FOUND and which is sent without
    reading the body (over HTTP/1.1 a client still sending it then sees a broken pipe)."""
    answer = await exchange(edge.gateway.port, path, [echo_frame()])
    assert assert_trailers_only(*answer, code=12) == words
    assert reached_upstream(edge) == []
    assert edge.http.requests == []


async def test_a_path_the_proxy_takes_is_left_to_it(edge: Edge) -> None:
    holder = edge.gateway.app.extensions["edge.state"]
    adapter = GrpcWebAdapter(holder, proxied=lambda scope, path: path.startswith("/api/"))
    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", BINARY.encode())]}
    assert adapter.claim(scope, "/api/other.v1.Service/Call") is None
    unknown = adapter.claim(scope, "/other.v1.Service/Call")
    assert unknown is not None and unknown.route is None
    routed = adapter.claim(scope, ECHO)  # a routed method is served here, proxy or not
    assert routed is not None and routed.route is not None
    assert adapter.claim({**scope, "headers": []}, ECHO) is None  # not gRPC-Web


async def test_a_get_is_not_grpc_web(edge: Edge) -> None:
    async with edge.gateway.client() as client:
        response = await client.get(ECHO, headers={"content-type": BINARY})
    assert "grpc-status" not in response.headers  # the JSON side's answer (405 or 404)
    assert response.status_code in (404, 405)


async def test_credentials_are_checked_before_the_body_is_read(edge: Edge) -> None:
    """The 401 comes while the body is still on its way, and Inspect is never called."""
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    try:
        writer.write(
            f"POST {INSPECT} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {BINARY}\r\n"
            "content-length: 1000\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    headers = answer_headers(head)
    assert headers["grpc-status"] == "16"
    assert headers["www-authenticate"] == 'Bearer realm="edge"'
    assert reached_upstream(edge) == []
    good = await exchange(
        edge.gateway.port, INSPECT, [echo_frame()], headers={"authorization": f"Bearer {token()}"}
    )
    assert good[0] == 200 and "grpc-status" not in good[1]
    assert reached_upstream(edge) == ["/edgetest.v1.KitchenService/Inspect"]


async def test_malformed_grpc_timeout(edge: Edge) -> None:
    answer = await exchange(
        edge.gateway.port, ECHO, [echo_frame()], headers={"grpc-timeout": "soon"}
    )
    assert "grpc-timeout" in assert_trailers_only(*answer, code=3)
    assert reached_upstream(edge) == []


# -- status and metadata on the wire ------------------------------------------------------


async def test_upstream_status_is_escaped_and_details_pass_through(edge: Edge) -> None:
    failing = pb.FailRequest(
        code=9, message="naïve\r\nX-Injected: 1 100%", bad_field="f", trailers={"x-t": "v"}
    )
    status, headers, body = await exchange(
        edge.gateway.port, "/edgetest.v1.KitchenService/Fail", [frame(failing.SerializeToString())]
    )
    message = assert_trailers_only(status, headers, body, code=9)
    assert message == "na%C3%AFve%0D%0AX-Injected: 1 100%25"  # percent-encoded, one line
    assert "x-injected" not in headers
    assert headers["x-t"] == "v"  # (grpc itself refuses to send a value with CR LF)
    details = base64.b64decode(headers["grpc-status-details-bin"] + "==")
    assert b"type.googleapis.com/google.rpc.BadRequest" in details


async def test_stream_failing_midway_gets_a_trailer_frame(edge: Edge) -> None:
    request = pb.CountRequest(count=4, fail_after=2, fail_code=14)
    status, headers, chunks = await exchange(
        edge.gateway.port, COUNT, [frame(request.SerializeToString())]
    )
    assert status == 200 and "grpc-status" not in headers, headers
    frames = frames_of(b"".join(chunks))
    assert [flags for flags, _ in frames] == [0, 0, 0x80]
    assert trailers_of(frames[-1][1]) == {
        "grpc-status": "14",
        "grpc-message": "failed after 2 ticks",
    }


# -- a client that leaves ---------------------------------------------------------------


async def test_client_leaving_mid_stream_cancels_the_upstream(edge: Edge) -> None:
    request = frame(pb.CountRequest(count=1000, interval_seconds=0.05).SerializeToString())
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    writer.write(
        f"POST {COUNT} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {BINARY}\r\n"
        f"content-length: {len(request)}\r\n\r\n".encode()
        + request
    )
    await writer.drain()
    async with asyncio.timeout(5):
        await reader.readuntil(b"\r\n\r\n")
        await reader.read(1)  # a tick has come
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    async with asyncio.timeout(5):
        await edge.kitchen.streams.cancelled.wait()
    await still_serving(edge)


async def test_client_leaving_a_unary_call_cancels_the_upstream(edge: Edge) -> None:
    before = edge.kitchen.cancelled
    request = frame(pb.SleepRequest(seconds=10).SerializeToString())
    _, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    writer.write(
        f"POST /edgetest.v1.KitchenService/Sleep HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: {BINARY}\r\ncontent-length: {len(request)}\r\n\r\n".encode()
        + request
    )
    await writer.drain()
    for _ in range(250):  # until the upstream is sleeping on it
        if "/edgetest.v1.KitchenService/Sleep" in reached_upstream(edge):
            break
        await asyncio.sleep(0.02)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    for _ in range(250):
        if edge.kitchen.cancelled > before:
            break
        await asyncio.sleep(0.02)
    assert edge.kitchen.cancelled == before + 1


async def test_a_bad_frame_inside_a_client_stream(edge: Edge) -> None:
    numbers = [frame(pb.Number(value=n).SerializeToString()) for n in (1, 2)]
    pieces = [*numbers, frame(b"", flags=0x80)]
    answer = await exchange(edge.gateway.port, "/edgetest.v1.StreamService/Sum", pieces)
    assert "trailer frame" in assert_trailers_only(*answer, code=13)
    await still_serving(edge)


async def test_a_client_stream_over_http1(edge: Edge) -> None:
    # text mode, each message its own padded base64 chunk
    numbers = [base64.b64encode(frame(pb.Number(value=n).SerializeToString())) for n in (1, 2, 39)]
    status, headers, body = await exchange(
        edge.gateway.port,
        "/edgetest.v1.StreamService/Sum",
        numbers,
        content_type=TEXT,
    )
    assert status == 200, headers
    reply, trailers = one_reply(unbase64(b"".join(body)))
    assert pb.Total.FromString(reply) == pb.Total(sum=42, count=3)
    assert trailers == {"grpc-status": "0"}
    assert edge.kitchen.streams.received[-3:] == [1, 2, 39]


# -- HTTP/2 -----------------------------------------------------------------------------


async def test_over_h2c(edge: Edge) -> None:
    async with httpx.AsyncClient(
        base_url=edge.gateway.base_url, http1=False, http2=True, timeout=10
    ) as client:
        ok = await client.post(
            ECHO, content=base64.b64encode(echo_frame("h2")), headers={"content-type": TEXT}
        )
        refused = await client.post(
            ECHO, content=frame(b"", flags=0x80), headers={"content-type": BINARY}
        )
        stream = await client.post(
            COUNT,
            content=frame(pb.CountRequest(count=2).SerializeToString()),
            headers={"content-type": BINARY},
        )
    assert ok.http_version == "HTTP/2"
    reply, _ = one_reply(unbase64(ok.content))
    assert pb.Kitchen.FromString(reply).string_value == "h2"
    assert refused.status_code == 200
    assert refused.headers["grpc-status"] == "13"
    assert refused.content == b""
    assert [flags for flags, _ in frames_of(stream.content)] == [0, 0, 0x80]
