"""Drop-in protos: new methods served without a restart, broken files never drop old routes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from conftest import TEST_PROTOS, make_config, run_gateway
from kitchen_upstream import Kitchen

from edge.descriptors.registry import load_registry
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

GREETER = """syntax = "proto3";
package greet.v1;
import "google/api/annotations.proto";

service Greeter {
  rpc Hello(HelloRequest) returns (HelloReply) {
    option (google.api.http) = { get: "/v1/hello/{name}" };
  }
}
message HelloRequest { string name = 1; }
message HelloReply { string greeting = 1; }
"""

BROKEN = 'syntax = "proto3";\npackage broken.v1;\nmessage Oops { strin name = 1; }\n'


def greeter_handler(folder: Path) -> grpc.GenericRpcHandler:
    """A Greeter upstream built from the .proto at run time, like the gateway does."""
    registry = load_registry([folder])
    method = registry.methods["greet.v1.Greeter.Hello"]
    reply_type = method.output_type

    async def hello(request: Any, context: Any) -> Any:
        return reply_type(greeting=f"hello, {request.name}")

    handler = grpc.unary_unary_rpc_method_handler(
        hello,
        request_deserializer=method.input_type.FromString,
        response_serializer=reply_type.SerializeToString,
    )
    return grpc.method_handlers_generic_handler("greet.v1.Greeter", {"Hello": handler})


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[int]:
    """The kitchen services plus a Greeter, on one port."""
    source = tmp_path / "greeter-source"
    source.mkdir()
    (source / "greeter.proto").write_text(GREETER)
    server = grpc.aio.server()
    pb_grpc.add_KitchenServiceServicer_to_server(Kitchen(), server)
    server.add_generic_rpc_handlers((greeter_handler(source),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    folder = tmp_path / "protos"
    shutil.copytree(TEST_PROTOS, folder)
    return folder


def config_for(port: int, folder: Path, **extra: Any) -> Any:
    descriptors = {"proto_paths": [str(folder)], "watch_interval": "200ms"}
    return make_config(port, extra={"descriptors": descriptors, **extra})


async def eventually(check: Any, timeout: float = 8.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


async def test_a_dropped_proto_is_served_without_restart(upstream: int, watched: Path) -> None:
    async with run_gateway(config_for(upstream, watched)) as gateway, gateway.client() as client:
        assert (await client.get("/v1/hello/ann")).status_code == 404
        (watched / "greeter.proto").write_text(GREETER)

        async def served() -> bool:
            return (await client.get("/v1/hello/ann")).status_code == 200

        assert await eventually(served)
        assert (await client.get("/v1/hello/ann")).json() == {"greeting": "hello, ann"}
        assert (await client.get("/v1/kitchen/still")).status_code == 200
        status = (await client.get("/admin/descriptors")).json()
    assert status["reload"]["generation"] >= 2
    assert "greeter.proto" in status["files"]


async def test_a_broken_proto_keeps_the_last_good_set(upstream: int, watched: Path) -> None:
    async with run_gateway(config_for(upstream, watched)) as gateway, gateway.client() as client:
        (watched / "broken.proto").write_text(BROKEN)

        async def refused() -> Any:
            status = (await client.get("/admin/descriptors")).json()
            return status["reload"]["failures"] >= 1 and status

        status = await eventually(refused)
        assert status, "the broken file was never noticed"
        assert any("broken.proto:3" in problem for problem in status["reload"]["last_error"])
        assert (await client.get("/v1/kitchen/old")).status_code == 200  # still served
        # fixing another file still applies: the broken one is only reported
        (watched / "greeter.proto").write_text(GREETER)
        manual = await client.post("/admin/reload")
        assert manual.status_code == 409  # broken.proto is still new to the served set
        (watched / "broken.proto").unlink()
        applied = await client.post("/admin/reload")
        assert applied.status_code == 200 and applied.json()["applied"]
        assert (await client.get("/v1/hello/x")).status_code == 200


async def test_reloads_under_load_lose_no_request(upstream: int, watched: Path) -> None:
    config = config_for(
        upstream, watched, descriptors={"proto_paths": [str(watched)], "watch": False}
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        statuses: list[int] = []

        async def steady() -> None:
            for _ in range(40):
                statuses.append((await client.get("/v1/kitchen/load")).status_code)

        async def reloads() -> int:
            applied = 0
            for _ in range(5):
                applied += (await client.post("/admin/reload")).json()["applied"]
                await asyncio.sleep(0.05)
            return applied

        results = await asyncio.gather(*(steady() for _ in range(6)), reloads())
    assert results[-1] == 5
    assert len(statuses) == 240
    assert set(statuses) == {200}


async def test_sighup_reloads(upstream: int, watched: Path) -> None:
    config = config_for(
        upstream, watched, descriptors={"proto_paths": [str(watched)], "watch": False}
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        (watched / "greeter.proto").write_text(GREETER)
        os.kill(os.getpid(), signal.SIGHUP)

        async def served() -> bool:
            return (await client.get("/v1/hello/hup")).status_code == 200

        assert await eventually(served, timeout=5)
        status = (await client.get("/admin/descriptors")).json()
    assert status["reload"]["last_reason"] == "SIGHUP"


async def test_explain(stack: Any) -> None:
    async with stack.client() as client:
        patch = await client.post(
            "/admin/explain",
            params={"method": "PATCH", "path": "/v1/kitchen/abc/nested", "query": "int32Value=3"},
            content=b'{"name": "n"}',
        )
        missing = await client.get("/admin/explain", params={"method": "GET", "path": "/nope"})
        wrong = await client.get(
            "/admin/explain", params={"method": "PUT", "path": "/v1/literal/items"}
        )
        bad = await client.get(
            "/admin/explain", params={"method": "GET", "path": "/v1/kitchen/a", "query": "x=1"}
        )
    answer = patch.json()
    assert answer["matched"] and answer["rpc"] == "edgetest.v1.KitchenService.Echo"
    assert answer["route"] == {"method": "PATCH", "path": "/v1/kitchen/{string_value}/nested"}
    assert answer["path_fields"] == {"string_value": "abc"}
    assert answer["body"] == "the field nested"
    assert answer["query_fields"] == {"int32Value": "int32_value"}
    assert answer["request"] == {
        "stringValue": "abc",
        "int32Value": 3,
        "nested": {"name": "n"},
        "fieldMask": "name",  # a PATCH's mask, derived from the body
    }
    assert missing.json() == {"matched": False, "status": 404, "reason": "no route for this path"}
    assert wrong.json()["status"] == 405
    assert bad.json()["status"] == 400
    assert "unknown query parameter" in bad.json()["error"]["message"]


async def test_admin_config_is_redacted(stack_factory: Any) -> None:
    extra = {
        "auth": {
            "issuers": [{"issuer": "i", "algorithms": ["HS256"], "keys": [{"secret": "s3cr3t"}]}],
            "api_keys": {"keys": {"ci": "k3y"}},
        },
        "rate_limiting": {"redis_url": "redis://user:pa55@redis:6379/0"},
    }
    async with stack_factory(**extra) as stack, stack.client() as client:
        text = (await client.get("/admin/config")).text
        routes = (await client.get("/admin/routes")).json()
    assert "s3cr3t" not in text and "k3y" not in text and "pa55" not in text
    assert '"secret":"***"' in text
    assert any(r["rpc"] == "edgetest.v1.KitchenService.Echo" for r in routes)


async def test_readiness(stack: Any, redis_url: str, kitchen_upstream: Any) -> None:
    from test_errors_e2e import closed_port

    async with stack.client() as client:
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["upstream:kitchen"] == "reachable (no health service)"
    assert alive.json() == {"status": "ok"}
    async with run_gateway(make_config(closed_port())) as gateway, gateway.client() as client:
        down = await client.get("/readyz")
    assert down.status_code == 503
    assert down.json()["checks"]["upstream:kitchen"].startswith("UNAVAILABLE")
    port, _ = kitchen_upstream
    extra = {
        "rate_limiting": {"backend": "redis", "redis_url": redis_url},
        "policies": [{"match": ["*"], "rate_limits": [{"algorithm": "token_bucket", "limit": 9}]}],
    }
    async with run_gateway(make_config(port, extra=extra)) as gateway, gateway.client() as client:
        with_redis = await client.get("/readyz")
    assert with_redis.json()["checks"]["redis"] == "reachable"


async def test_grpc_health_protocol_is_used(tmp_path: Path) -> None:
    """An upstream that says NOT_SERVING makes the gateway not ready."""
    status = {"value": b"\x08\x02"}  # NOT_SERVING

    async def check(request: bytes, context: Any) -> bytes:
        return status["value"]

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": grpc.unary_unary_rpc_method_handler(check)},
    )
    server = grpc.aio.server()
    pb_grpc.add_KitchenServiceServicer_to_server(Kitchen(), server)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with run_gateway(make_config(port)) as gateway, gateway.client() as client:
            not_serving = await client.get("/readyz")
            gateway.app.extensions["edge.readiness"].clear()
            status["value"] = b"\x08\x01"
            serving = await client.get("/readyz")
    finally:
        await server.stop(grace=None)
    assert not_serving.status_code == 503
    assert not_serving.json()["checks"]["upstream:kitchen"] == "not serving"
    assert serving.status_code == 200


async def test_a_request_in_flight_across_reloads_is_answered(upstream: int, watched: Path) -> None:
    """A slow upload still being read while the routes are swapped twice completes."""
    config = config_for(
        upstream, watched, descriptors={"proto_paths": [str(watched)], "watch": False}
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        started = asyncio.Event()

        async def slow_body() -> Any:
            yield b'{"stringValue":'
            started.set()
            await asyncio.sleep(0.6)  # the reloads happen now
            yield b' "slow"}'

        pending = asyncio.create_task(client.post("/v1/kitchen", content=slow_body()))
        await started.wait()
        for _ in range(2):
            assert (await client.post("/admin/reload")).json()["applied"]
        answer = await pending
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stringValue": "slow"}
