"""Upstream connections: TLS and mutual TLS, message size limits, descriptor-set files."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from conftest import ROOT, TEST_PROTOS, make_config, run_gateway
from kitchen_upstream import Kitchen

from edge.descriptors.compiler import GOOGLEAPIS_ROOT, WELL_KNOWN_ROOT
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def tls_kitchen(cert: Path, key: Path, *, require_client_cert: bool) -> AsyncIterator[int]:
    server = grpc.aio.server()
    pb_grpc.add_KitchenServiceServicer_to_server(Kitchen(), server)
    credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=cert.read_bytes() if require_client_cert else None,
        require_client_auth=require_client_cert,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@pytest.fixture(params=["grpcio", "lean"])
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_tls_upstream(tls_files: Any, client: str) -> None:
    cert, key = tls_files
    async with tls_kitchen(cert, key, require_client_cert=False) as port:
        upstream = {"address": f"127.0.0.1:{port}", "client": client}
        trusted = make_config(
            port, extra={"upstreams": {"kitchen": {**upstream, "tls": {"ca": str(cert)}}}}
        )
        async with run_gateway(trusted) as gateway, gateway.client() as client:
            response = await client.get("/v1/kitchen/secure")
        assert response.json() == {"stringValue": "secure"}
        # plaintext against a TLS upstream fails cleanly, as unavailable
        async with run_gateway(make_config(port)) as gateway, gateway.client() as client:
            response = await client.get("/v1/kitchen/secure")
        assert response.status_code == 503
        assert response.json()["code"] == 14


async def test_mutual_tls_upstream(tls_files: Any, client: str) -> None:
    cert, key = tls_files
    async with tls_kitchen(cert, key, require_client_cert=True) as port:
        upstream = {"address": f"127.0.0.1:{port}", "client": client}
        tls = {"ca": str(cert), "cert": str(cert), "key": str(key)}
        with_cert = make_config(port, extra={"upstreams": {"kitchen": {**upstream, "tls": tls}}})
        async with run_gateway(with_cert) as gateway, gateway.client() as http:
            response = await http.get("/v1/kitchen/mutual")
        assert response.json() == {"stringValue": "mutual"}
        without_cert = make_config(
            port, extra={"upstreams": {"kitchen": {**upstream, "tls": {"ca": str(cert)}}}}
        )
        async with run_gateway(without_cert) as gateway, gateway.client() as http:
            response = await http.get("/v1/kitchen/mutual")
        assert response.status_code == 503


async def test_tls_server_name_is_the_name_verified(tls_files: Any, client: str) -> None:
    # The certificate names upstream.test (and 127.0.0.1); server_name says which to check.
    cert, key = tls_files
    async with tls_kitchen(cert, key, require_client_cert=False) as port:
        answers = []
        for name in ("upstream.test", "other.test"):
            tls = {"ca": str(cert), "server_name": name}
            upstream = {"address": f"127.0.0.1:{port}", "client": client, "tls": tls}
            config = make_config(port, extra={"upstreams": {"kitchen": upstream}})
            async with run_gateway(config) as gateway, gateway.client() as http:
                answers.append(await http.get("/v1/kitchen/named"))
    assert answers[0].json() == {"stringValue": "named"}
    assert answers[1].status_code == 503 and answers[1].json()["code"] == 14


async def test_lean_refuses_a_tls_upstream_without_h2_by_alpn(tls_files: Any) -> None:
    # gRPC over TLS needs ALPN h2; a TLS server that does not select it is not a gRPC server.
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        upstream = {"address": f"127.0.0.1:{port}", "client": "lean", "tls": {"ca": str(cert)}}
        config = make_config(port, extra={"upstreams": {"kitchen": upstream}})
        async with run_gateway(config) as gateway, gateway.client() as http:
            response = await http.get("/v1/kitchen/alpn")
    finally:
        server.close()
        await server.wait_closed()
    assert response.status_code == 503
    assert "ALPN" in response.json()["message"]


async def test_upstream_message_size_limits(kitchen_upstream: Any) -> None:
    port, _ = kitchen_upstream
    upstream = {
        "address": f"127.0.0.1:{port}",
        "max_request_bytes": 2000,
        "max_response_bytes": 2000,
    }
    config = make_config(port, extra={"upstreams": {"kitchen": upstream}})
    async with run_gateway(config) as gateway, gateway.client() as client:
        small = await client.post("/v1/kitchen", json={"stringValue": "x" * 1000})
        large = await client.post("/v1/kitchen", json={"stringValue": "x" * 3000})
    assert small.status_code == 200
    assert large.status_code == 429  # RESOURCE_EXHAUSTED, as the status table says
    assert large.json()["code"] == 8
    assert "larger than max" in large.json()["message"]


async def test_descriptor_set_file_as_source(kitchen_upstream: Any, tmp_path: Path) -> None:
    descriptor_set = tmp_path / "kitchen.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{TEST_PROTOS}",
            f"-I{WELL_KNOWN_ROOT}",
            f"-I{GOOGLEAPIS_ROOT}",
            "--include_imports",
            f"--descriptor_set_out={descriptor_set}",
            "edgetest/v1/kitchen.proto",
        ],
        check=True,
        cwd=ROOT,
    )
    port, _ = kitchen_upstream
    config = make_config(
        port, extra={"descriptors": {"proto_paths": [], "descriptor_sets": [str(descriptor_set)]}}
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        response = await client.get("/v1/kitchen/from-set")
    assert response.json() == {"stringValue": "from-set"}


class FailingKitchen(Kitchen):
    """An endpoint that accepts connections but fails every call: only ejection helps."""

    async def Echo(self, request: Any, context: Any) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.UNAVAILABLE, "this endpoint is broken")


async def test_outlier_detection_ejects_a_failing_endpoint(kitchen_upstream: Any) -> None:
    import asyncio

    good_port, good = kitchen_upstream
    bad = grpc.aio.server()
    pb_grpc.add_KitchenServiceServicer_to_server(FailingKitchen(), bad)
    bad_port = bad.add_insecure_port("127.0.0.1:0")
    await bad.start()
    upstream = {
        "addresses": [f"127.0.0.1:{bad_port}", f"127.0.0.1:{good_port}"],
        "outlier_detection": {"interval": "300ms", "request_volume": 4, "minimum_hosts": 2},
    }
    extra = {"upstreams": {"kitchen": upstream}, "breakers": {"default": {"enabled": False}}}
    statuses = []
    try:
        async with run_gateway(make_config(good_port, extra=extra)) as gateway:
            async with gateway.client() as client:
                for _ in range(40):
                    statuses.append((await client.get("/v1/kitchen/lb")).status_code)
                    await asyncio.sleep(0.03)
    finally:
        await bad.stop(grace=None)
    assert 503 in statuses[:10]  # round-robin reached the broken endpoint at first...
    assert statuses[-15:] == [200] * 15  # ...until it was ejected
    assert len(good.seen) >= 15
