"""Server reflection as a descriptor source: an upstream with reflection needs no .proto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from conftest import ROOT, TEST_PROTOS, make_config, run_gateway
from grpc_reflection.v1alpha import reflection, reflection_pb2
from kitchen_upstream import Kitchen
from test_errors_e2e import closed_port
from test_reload_e2e import eventually

from edge.config import Config, parse_config
from edge.descriptors.reflection import LAST_GOOD, ReflectionSource, fetch_reflection
from edge.descriptors.registry import load_registry
from edge.routes import load_routes
from edge.upstream_settings import UpstreamSettings
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

GREETER = """syntax = "proto3";
package greet.v1;
import "google/api/annotations.proto";

service Greeter {
  rpc Hello(HelloRequest) returns (HelloReply) {
    option (google.api.http) = { get: "/v1/hello/{name}" };
  }
  rpc Wave(HelloRequest) returns (HelloReply);  // no rule: the generic POST route
}
message HelloRequest { string name = 1; }
message HelloReply { string greeting = 1; }
"""

FAREWELL = """syntax = "proto3";
package greet.v1;
import "google/api/annotations.proto";
import "greeter.proto";

service Farewell {
  rpc Bye(HelloRequest) returns (HelloReply) {
    option (google.api.http) = { post: "/v1/bye" body: "*" };
  }
}
"""

V1_SERVICE = "grpc.reflection.v1.ServerReflection"


@pytest.fixture(autouse=True)
def fresh_reflection_cache() -> Iterator[None]:
    """The last good sets are per process: keep one test's from leaking into the next."""
    LAST_GOOD.clear()
    yield
    LAST_GOOD.clear()


def _handlers(folder: Path) -> tuple[Any, list[grpc.GenericRpcHandler], list[str]]:
    """Every service in ``folder``'s protos, answering ``<verb>, <name>``, from run-time types."""
    registry = load_registry([folder])
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for method in registry.methods.values():
        reply_type = method.output_type
        verb = method.name.lower()

        def answer(
            request: Any, context: Any, reply_type: Any = reply_type, verb: str = verb
        ) -> Any:
            return reply_type(greeting=f"{verb}, {request.name}")

        by_service.setdefault(method.service, {})[method.name] = (
            grpc.unary_unary_rpc_method_handler(
                answer,
                request_deserializer=method.input_type.FromString,
                response_serializer=reply_type.SerializeToString,
            )
        )
    handlers = [grpc.method_handlers_generic_handler(s, m) for s, m in by_service.items()]
    return registry.pool, handlers, sorted(by_service)


def _v1_handler(servicer: Any) -> grpc.GenericRpcHandler:
    """grpcio serves reflection only as v1alpha; v1 is the same messages under a new name."""
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": handler})


@contextlib.contextmanager
def reflecting_upstream(
    protos: dict[str, str],
    tmp_path: Path,
    *,
    port: int = 0,
    versions: Sequence[str] = ("v1alpha",),
) -> Iterator[int]:
    """A real gRPC server for the given protos, with reflection; the protos stay private.

    A thread-pool server, not grpc.aio: the gateway's first load runs synchronously in
    create_app (before the loop, in production), so an upstream sharing the test's event
    loop could not answer it.
    """
    folder = tmp_path / f"upstream-source-{len(protos)}"
    folder.mkdir(exist_ok=True)
    for name, text in protos.items():
        (folder / name).write_text(text)
    pool, handlers, services = _handlers(folder)
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(handlers)
    names = [*services, reflection.SERVICE_NAME, V1_SERVICE]
    if "v1alpha" in versions:
        reflection.enable_server_reflection(names, server, pool=pool)
    if "v1" in versions:
        servicer = reflection.ReflectionServicer(names, pool=pool)
        server.add_generic_rpc_handlers((_v1_handler(servicer),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield bound
    finally:
        server.stop(None).wait()


def gateway_config(tmp_path: Path, upstreams: dict[str, Any], **extra: Any) -> Config:
    """No .proto anywhere the gateway looks: an empty proto folder."""
    empty = tmp_path / "empty-protos"
    empty.mkdir(exist_ok=True)
    data = {"descriptors": {"proto_paths": [str(empty)], "watch": False}, "upstreams": upstreams}
    return parse_config({**data, **extra}, base=ROOT, env={})


async def test_a_reflection_only_upstream_is_served(tmp_path: Path) -> None:
    with reflecting_upstream({"greeter.proto": GREETER}, tmp_path) as port:
        config = gateway_config(
            tmp_path,
            {"greeter": {"address": f"127.0.0.1:{port}", "reflection": True}},
        )
        async with run_gateway(config) as gateway, gateway.client() as client:
            hello = await client.get("/v1/hello/ann")
            wave = await client.post("/greet.v1.Greeter/Wave", json={"name": "bob"})
            status = (await client.get("/admin/descriptors")).json()
            routes = (await client.get("/admin/routes")).json()
            openapi = (await client.get("/openapi.json")).json()
    assert hello.status_code == 200 and hello.json() == {"greeting": "hello, ann"}
    assert wave.status_code == 200 and wave.json() == {"greeting": "wave, bob"}
    # no services section: reflection routed the service to the upstream that offers it
    assert "greet.v1.Greeter" in status["services"] and status["unrouted"] == []
    assert status["problems"] == []
    assert "greeter.proto" in status["files"]
    assert {r["upstream"] for r in routes} == {"greeter"}
    # the reflection service itself is never routed
    assert not any("reflection" in r["rpc"] for r in routes)
    assert "/v1/hello/{name}" in openapi["paths"]


async def test_an_explicit_services_entry_wins_over_reflection(tmp_path: Path) -> None:
    with reflecting_upstream({"greeter.proto": GREETER}, tmp_path) as port:
        address = f"127.0.0.1:{port}"
        upstreams = {
            "greeter": {"address": address, "reflection": True},
            "elsewhere": {"address": address},
        }
        explicit = gateway_config(
            tmp_path, upstreams, services={"greet.v1.Greeter": {"upstream": "elsewhere"}}
        )
        star = gateway_config(tmp_path, upstreams, services={"*": {"upstream": "elsewhere"}})
        by_explicit = await asyncio.to_thread(load_routes, explicit)
        by_star = await asyncio.to_thread(load_routes, star)
    assert {r.upstream for r in by_explicit.routes} == {"elsewhere"}
    assert {r.upstream for r in by_star.routes} == {"greeter"}  # reflection beats "*"


async def test_an_unreachable_upstream_at_start_is_a_problem(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        kitchen = grpc.aio.server()
        pb_grpc.add_KitchenServiceServicer_to_server(Kitchen(), kitchen)
        kitchen_port = kitchen.add_insecure_port("127.0.0.1:0")
        await kitchen.start()
        stack.push_async_callback(kitchen.stop, None)
        config = make_config(
            kitchen_port,
            extra={
                "upstreams": {"gone": {"address": f"127.0.0.1:{closed_port()}", "reflection": True}}
            },
        )
        gateway = await stack.enter_async_context(run_gateway(config))
        client = await stack.enter_async_context(gateway.client())
        status = (await client.get("/admin/descriptors")).json()
        served = await client.get("/v1/kitchen/still")
    assert served.status_code == 200
    assert any(
        p.startswith("reflection from upstream gone failed: UNAVAILABLE")
        for p in status["problems"]
    )


async def test_outage_then_redeploy_with_a_new_service(tmp_path: Path) -> None:
    first = reflecting_upstream({"greeter.proto": GREETER}, tmp_path)
    port = first.__enter__()
    config = gateway_config(
        tmp_path, {"greeter": {"address": f"127.0.0.1:{port}", "reflection": True}}
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        try:
            assert (await client.get("/v1/hello/a")).status_code == 200
        finally:
            first.__exit__(None, None, None)
        # the upstream is down: a reload still applies and keeps its reflected routes
        during = await client.post("/admin/reload")
        status = (await client.get("/admin/descriptors")).json()
        routes = (await client.get("/admin/routes")).json()
        assert during.status_code == 200, during.json()
        assert any(r["rpc"] == "greet.v1.Greeter.Hello" for r in routes)
        assert any("reflection from upstream greeter failed" in n for n in status["notes"])
        assert status["problems"] == []
        # it comes back on the same address with one more service: a reload serves it
        both = {"greeter.proto": GREETER, "farewell.proto": FAREWELL}
        with reflecting_upstream(both, tmp_path, port=port):
            assert (await client.post("/v1/bye", json={"name": "c"})).status_code == 404
            after = await client.post("/admin/reload")
            assert after.status_code == 200, after.json()

            async def answered() -> bool:  # the channel may still be in reconnect backoff
                return (await client.post("/v1/bye", json={"name": "c"})).status_code != 503

            await eventually(answered)
            bye = await client.post("/v1/bye", json={"name": "c"})
            hello = await client.get("/v1/hello/d")
            status = (await client.get("/admin/descriptors")).json()
    assert bye.status_code == 200 and bye.json() == {"greeting": "bye, c"}
    assert hello.json() == {"greeting": "hello, d"}
    assert status["notes"] == [] and "greet.v1.Farewell" in status["services"]


async def test_reflection_is_refreshed_periodically(tmp_path: Path) -> None:
    first = reflecting_upstream({"greeter.proto": GREETER}, tmp_path)
    port = first.__enter__()
    stopped = False
    try:
        config = gateway_config(
            tmp_path,
            {
                "greeter": {
                    "address": f"127.0.0.1:{port}",
                    "reflection": True,
                    "reflection_interval": "200ms",
                }
            },
            descriptors={"proto_paths": [], "watch": True, "watch_interval": "10s"},
        )
        async with run_gateway(config) as gateway, gateway.client() as client:
            first.__exit__(None, None, None)  # redeployed below with one more service
            stopped = True
            both = {"greeter.proto": GREETER, "farewell.proto": FAREWELL}
            with reflecting_upstream(both, tmp_path, port=port):

                async def served() -> bool:
                    return (await client.post("/v1/bye", json={"name": "e"})).status_code == 200

                assert await eventually(served)
                status = (await client.get("/admin/descriptors")).json()
    finally:
        if not stopped:
            first.__exit__(None, None, None)
    assert status["reload"]["last_reason"] == "reflection refresh"


async def test_an_upstream_without_reflection_is_a_problem_and_the_rest_is_served(
    tmp_path: Path,
) -> None:
    on_disk = tmp_path / "protos"
    on_disk.mkdir()
    (on_disk / "greeter.proto").write_text(GREETER)
    with reflecting_upstream({"greeter.proto": GREETER}, tmp_path, versions=()) as port:
        config = gateway_config(
            tmp_path,
            {"greeter": {"address": f"127.0.0.1:{port}", "reflection": True}},
            descriptors={"proto_paths": [str(on_disk)], "watch": False},
            services={"*": {"upstream": "greeter"}},
        )
        async with run_gateway(config) as gateway, gateway.client() as client:
            status = (await client.get("/admin/descriptors")).json()
            hello = await client.get("/v1/hello/fine")
            reload = await client.post("/admin/reload")
    assert hello.status_code == 200
    assert status["problems"] == [
        "reflection from upstream greeter failed: "
        "the upstream implements neither grpc.reflection.v1 nor v1alpha"
    ]
    assert reload.status_code == 200  # the same problem again does not block reloads


@pytest.mark.parametrize(
    ("versions", "expected"),
    [(("v1alpha",), "v1alpha"), (("v1",), "v1"), (("v1", "v1alpha"), "v1")],
)
async def test_v1_first_then_v1alpha(
    tmp_path: Path, versions: tuple[str, ...], expected: str
) -> None:
    with reflecting_upstream({"greeter.proto": GREETER}, tmp_path, versions=versions) as port:
        source = ReflectionSource(UpstreamSettings("greeter", f"127.0.0.1:{port}"))
        found = await asyncio.to_thread(fetch_reflection, source)
    assert found.protocol == expected
    assert found.services == ("greet.v1.Greeter",)  # reflection itself is not routed
    names = {f.name for f in found.files.file}
    assert {"greeter.proto", "google/api/annotations.proto", "google/api/http.proto"} <= names


async def test_files_on_disk_and_reflected_merge(tmp_path: Path) -> None:
    """The same file from protoc on disk and from an upstream's runtime is no conflict."""
    server = grpc.aio.server()
    pb_grpc.add_KitchenServiceServicer_to_server(Kitchen(), server)
    reflection.enable_server_reflection(
        ["edgetest.v1.KitchenService", reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        config = make_config(
            port,
            protos=TEST_PROTOS,
            extra={"upstreams": {"kitchen": {"address": f"127.0.0.1:{port}", "reflection": True}}},
        )
        routes = await asyncio.to_thread(load_routes, config)
    finally:
        await server.stop(grace=None)
    assert routes.problems == []
    assert any(r.method.full_name == "edgetest.v1.KitchenService.Echo" for r in routes.routes)
