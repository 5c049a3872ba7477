"""Retries follow the proto's ``idempotency_level``, not the route's policy alone.

The upstream is tests/protos/edgetest/v1/retry.proto's RetryService: the same failing
call under each idempotency level. Every method's policy asks for three attempts without
``retry.safe``, so the proto alone decides: IDEMPOTENT and NO_SIDE_EFFECTS unary methods
are sent again after an UNAVAILABLE, a method with no level (or IDEMPOTENCY_UNKNOWN) is
sent once, and so is a stream whatever its level. The upstream counts attempts per key, so
each test sees exactly how many times its call reached it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from conftest import make_config, run_gateway

from edgetest.v1 import retry_pb2 as pb
from edgetest.v1 import retry_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e


class Flaky(pb_grpc.RetryServiceServicer):
    """Fails the first ``fail_times`` attempts of each key, then answers which attempt won."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    async def _attempt(self, request: pb.Attempt, context: grpc.aio.ServicerContext) -> pb.Attempts:
        count = self.attempts[request.key] = self.attempts.get(request.key, 0) + 1
        if count <= request.fail_times:
            code = next(c for c in grpc.StatusCode if c.value[0] == (request.code or 14))
            await context.abort(code, f"attempt {count} of {request.key} fails")
        return pb.Attempts(attempt=count)

    async def Replace(self, request: pb.Attempt, context: grpc.aio.ServicerContext) -> pb.Attempts:  # noqa: N802
        return await self._attempt(request, context)

    async def Read(self, request: pb.Attempt, context: grpc.aio.ServicerContext) -> pb.Attempts:  # noqa: N802
        return await self._attempt(request, context)

    async def Append(self, request: pb.Attempt, context: grpc.aio.ServicerContext) -> pb.Attempts:  # noqa: N802
        return await self._attempt(request, context)

    async def Charge(self, request: pb.Attempt, context: grpc.aio.ServicerContext) -> pb.Attempts:  # noqa: N802
        return await self._attempt(request, context)

    async def Watch(  # noqa: N802
        self, request: pb.Attempt, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Attempts]:
        yield await self._attempt(request, context)


@contextlib.asynccontextmanager
async def gateway_to_flaky(client: str) -> AsyncIterator[tuple[httpx.AsyncClient, Flaky]]:
    server = grpc.aio.server()
    flaky = Flaky()
    pb_grpc.add_RetryServiceServicer_to_server(flaky, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    extra: dict[str, Any] = {
        "upstreams": {
            "kitchen": {"address": f"127.0.0.1:{port}", "timeout": "5s", "client": client}
        },
        "policies": [
            {
                "match": ["edgetest.v1.RetryService.*"],
                "retry": {"attempts": 3, "codes": ["UNAVAILABLE"], "backoff": "10ms"},
            }
        ],
        "breakers": {"default": {"enabled": False}},  # every attempt reaches the upstream
    }
    try:
        async with run_gateway(make_config(port, extra=extra)) as gateway:
            async with gateway.client() as http:
                yield http, flaky
    finally:
        await server.stop(grace=None)


@pytest.fixture(params=["lean", "grpcio"])
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PUT", "/v1/retry/idempotent/k"),  # idempotency_level = IDEMPOTENT
        ("GET", "/v1/retry/no-side-effects/k"),  # idempotency_level = NO_SIDE_EFFECTS
    ],
)
async def test_declared_idempotent_methods_are_retried(client: str, method: str, url: str) -> None:
    async with gateway_to_flaky(client) as (http, flaky):
        if method == "GET":
            response = await http.get(url, params={"failTimes": 2})
        else:
            response = await http.request(method, url, json={"failTimes": 2})
    assert response.status_code == 200, response.text
    assert response.json() == {"attempt": 3}  # two UNAVAILABLEs, then the third attempt
    assert flaky.attempts == {"k": 3}


@pytest.mark.parametrize(
    "url",
    [
        "/v1/retry/unmarked/k",  # no idempotency_level
        "/v1/retry/unknown/k",  # idempotency_level = IDEMPOTENCY_UNKNOWN
    ],
)
async def test_methods_not_declared_idempotent_are_sent_once(client: str, url: str) -> None:
    async with gateway_to_flaky(client) as (http, flaky):
        response = await http.post(url, json={"failTimes": 1})
        again = await http.post(url, json={"failTimes": 1})
    assert response.status_code == 503  # the first attempt's UNAVAILABLE, not retried
    assert response.json()["code"] == 14
    assert again.status_code == 200 and again.json() == {"attempt": 2}  # a new call of its own
    assert flaky.attempts == {"k": 2}


async def test_a_declared_idempotent_method_gives_up_after_the_attempts(client: str) -> None:
    async with gateway_to_flaky(client) as (http, flaky):
        response = await http.get("/v1/retry/no-side-effects/k", params={"failTimes": 5})
    assert response.status_code == 503
    assert flaky.attempts == {"k": 3}  # attempts: 3 is the ceiling


async def test_only_the_configured_codes_are_retried(client: str) -> None:
    async with gateway_to_flaky(client) as (http, flaky):
        response = await http.put("/v1/retry/idempotent/k", json={"failTimes": 1, "code": 13})
    assert response.status_code == 500  # INTERNAL: not in codes, so not retried
    assert flaky.attempts == {"k": 1}


async def test_streams_are_never_retried_whatever_their_level() -> None:
    async with gateway_to_flaky("auto") as (http, flaky):
        response = await http.get("/v1/retry/stream/k", params={"failTimes": 1})
    assert response.status_code == 503  # failed before its first message: its own status
    assert flaky.attempts == {"k": 1}
