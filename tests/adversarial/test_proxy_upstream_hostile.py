"""A hostile or broken HTTP upstream behind a proxy route: what reaches the client.

The upstream here writes raw bytes, so it can send what no framework would: fields that
would split the client's reply, a length and a chunked coding together, a head that never
ends, more body than it declares. Each is a 502 with a ``google.rpc.Status`` body and
nothing of the upstream's bytes, or the declared reply and no more; and the gateway keeps
serving the next request.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from conftest import make_config, run_gateway
from http_upstream import closed_port
from listening import loopback_server

pytestmark = pytest.mark.e2e


def raw_upstream(
    reply: bytes, *, endless: bytes = b""
) -> contextlib.AbstractAsyncContextManager[int]:
    """Answers every request with ``reply`` (then ``endless`` for ever, if given)."""

    async def serve(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: list[asyncio.StreamWriter]
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(reply)
                await writer.drain()
                while endless:
                    writer.write(endless)
                    await writer.drain()

    return loopback_server(serve, cancel=True)


def gateway_to(port: int) -> contextlib.AbstractAsyncContextManager:  # type: ignore[type-arg]
    return run_gateway(
        make_config(
            closed_port(),
            extra={
                "http_upstreams": {"web": {"url": f"http://127.0.0.1:{port}", "timeout": "5s"}},
                "proxy_routes": [{"prefix": "/", "upstream": "web"}],
            },
        )
    )


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nX-A: a\rInjected: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\x00\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX A: a\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2p1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
    ],
    ids=[
        "bare CR in a value",
        "NUL in a value",
        "space in a name",
        "length and chunked",
        "two lengths",
        "negative length",
        "unasked upgrade",
        "not HTTP/1.x",
        "not HTTP",
        "folded line",
    ],
)
async def test_a_reply_edge_cannot_pass_on_for_certain_is_a_502(reply: bytes) -> None:
    async with raw_upstream(reply) as port, gateway_to(port) as gateway:
        async with gateway.client() as client:
            answer = await client.get("/x")
            assert answer.status_code == 502
            assert answer.json()["code"] == 14
            assert "Injected" not in answer.headers and "folded" not in answer.text
            assert str(port) not in answer.text  # the upstream's address stays in the logs


async def test_a_head_that_never_ends_is_a_502_in_bounded_memory() -> None:
    async with (
        raw_upstream(b"HTTP/1.1 200 OK\r\n", endless=b"X-Pad: " + b"a" * 1000 + b"\r\n") as port,
        gateway_to(port) as gateway,
        gateway.client() as client,
    ):
        answer = await client.get("/x")
        assert answer.status_code == 502 and answer.json()["code"] == 14


async def test_a_body_beyond_its_length_is_cut_at_the_length_and_the_line_dropped() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\nX-Smuggled: 1\r\n\r\n"
    )
    async with raw_upstream(reply) as port, gateway_to(port) as gateway:
        async with gateway.client() as client:
            for _ in range(3):  # the extra bytes never answer the next request
                answer = await client.get("/x")
                assert (answer.status_code, answer.content) == (200, b"hi")
                assert "x-smuggled" not in answer.headers


async def test_a_chunked_body_that_breaks_mid_way_is_never_a_complete_reply() -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\nzz\r\n"
    async with raw_upstream(reply) as port, gateway_to(port) as gateway:
        async with gateway.client() as client:
            for _ in range(2):  # each reply is cut short, never a complete one; none crashes
                with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked"):
                    await client.get("/x")


async def test_a_flood_of_informational_replies_is_a_502_not_a_busy_loop() -> None:
    async with (
        raw_upstream(b"", endless=b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n") as port,
        gateway_to(port) as gateway,
        gateway.client() as client,
    ):
        async with asyncio.timeout(5):  # the read timeout is 5 s; a bounded count ends it first
            answer = await client.get("/x")
        assert answer.status_code == 502 and answer.json()["code"] == 14


@pytest.mark.parametrize(
    "head",
    [
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET /s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["POST with an empty body", "GET with Content-Length 0", "GET"],
)
async def test_a_client_leaving_an_endless_reply_closes_the_upstream(head: bytes) -> None:
    """A bodyless POST (as ``fetch`` sends) to a never-ending stream: the client leaves, the
    upstream connection must close (before, Content-Length: 0 left it streaming for ever)."""
    ended = asyncio.Event()

    async def endless(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: list[asyncio.StreamWriter]
    ) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while True:
                writer.write(b"5\r\ntick\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.02)
        except ConnectionError:
            pass
        finally:
            ended.set()
            writer.close()

    async with loopback_server(endless) as port, gateway_to(port) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(head)
        await reader.read(200)  # the reply has started
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(3):  # before the test's end aborts it: the gateway did
            await ended.wait()
