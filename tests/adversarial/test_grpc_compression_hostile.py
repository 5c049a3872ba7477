"""Hostile compressed replies from an upstream: a clean gRPC error each, never a crash.

The upstream (tests/grpc_raw_upstream.py) answers with exactly the bytes a test gives it:
a Compressed-Flag without ``grpc-encoding``, an encoding gRPC does not name, corrupt
gzip, and a gzip bomb that inflates far past ``max_response_bytes``. Through both
clients the client gets the status grpc.aio gives (INTERNAL, or RESOURCE_EXHAUSTED for
the bomb) as its HTTP status with a ``google.rpc.Status`` body that names no address,
and the next call on the same connection works. The bomb must not be inflated: the lean
client's Python allocations during the call stay far below what inflating would take.
"""

from __future__ import annotations

import contextlib
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import make_config, run_gateway
from grpc_raw_upstream import CannedReply, RawUpstream, grpc_message, gzip_message, raw_upstream

from edgetest.v1 import kitchen_pb2 as pb

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
GOOD = pb.Kitchen(string_value="fine").SerializeToString()
GZIP = (("grpc-encoding", "gzip"),)


def bomb(size: int) -> bytes:
    """gzip of ``size`` zero bytes, made a MiB at a time (about 1 kB per MiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MiB)
    return b"".join([*(packer.compress(zeros) for _ in range(size // MiB)), packer.flush()])


@pytest.fixture(params=["grpcio", "lean"])
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def gateway_to(upstream: RawUpstream, client: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = {
        "address": f"127.0.0.1:{upstream.port}",
        "timeout": "5s",
        "client": client,
        "accept_compression": ["gzip"],
    }
    config = make_config(upstream.port, extra={"upstreams": {"kitchen": settings}})
    async with run_gateway(config) as running, running.client() as http:
        yield http


HOSTILE = {
    "flag without grpc-encoding": (
        CannedReply(gzip_message(GOOD)),
        500,
        13,
        "Compression bit set but no encoding configured",
    ),
    "flag with identity": (
        CannedReply(gzip_message(GOOD), (("grpc-encoding", "identity"),)),
        500,
        13,
        "Compression bit set but no encoding configured",
    ),
    "unknown encoding": (
        CannedReply(gzip_message(GOOD), (("grpc-encoding", "snappy"),)),
        500,
        13,
        "Stream removed (Error parsing 'grpc-encoding' metadata)",
    ),
    "unknown encoding on an error status": (
        CannedReply(b"", (("grpc-encoding", "br"),), (("grpc-status", "5"),)),
        500,
        13,
        "Stream removed (Error parsing 'grpc-encoding' metadata)",
    ),
    "gzip with a wrong checksum": (
        CannedReply(grpc_message(gzip.compress(GOOD)[:-8] + bytes(8), compressed=True), GZIP),
        500,
        13,
        "Decompression failed due to zlib error",
    ),
    "gzip cut inside its header": (
        CannedReply(grpc_message(b"\x1f\x8b\x08\x00garbage", compressed=True), GZIP),
        500,
        13,
        "Decompression failed due to data error",
    ),
    "truncated gzip": (
        CannedReply(grpc_message(gzip.compress(GOOD)[:-4], compressed=True), GZIP),
        500,
        13,
        "Decompression failed due to data error",
    ),
    "gzip with trailing bytes": (
        CannedReply(grpc_message(gzip.compress(GOOD) + b"tail", compressed=True), GZIP),
        500,
        13,
        "Decompression failed due to not all input consumed",
    ),
    "deflate data called gzip": (
        CannedReply(grpc_message(zlib.compress(GOOD), compressed=True), GZIP),
        500,
        13,
        "Decompression failed due to zlib error",
    ),
    "gzip bomb (256 MiB of zeros)": (
        CannedReply(grpc_message(bomb(256 * MiB), compressed=True), GZIP),
        429,
        8,
        "Decompressed message larger than max",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_compressed_replies_are_clean_errors(client: str, case: str) -> None:
    reply, http_status, code, message = HOSTILE[case]
    async with raw_upstream(reply) as upstream, gateway_to(upstream, client) as http:
        tracemalloc.start()
        try:
            response = await http.get("/v1/kitchen/x")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        upstream.reply = CannedReply(gzip_message(GOOD), GZIP)
        after = await http.get("/v1/kitchen/y")
    assert response.status_code == http_status, response.text
    assert response.json() == {"code": code, "message": message, "details": []}
    assert str(upstream.port) not in response.text
    assert after.status_code == 200 and after.json() == {"stringValue": "fine"}
    assert [r.headers[":path"] for r in upstream.received] == [
        "/edgetest.v1.KitchenService/Echo"
    ] * 2
    # grpc.aio inflates in C (not traced); the lean client's inflating is Python's. A
    # bounded inflate costs about max_response_bytes (4 MiB), the whole bomb 256 MiB.
    assert peak < 32 * MiB
