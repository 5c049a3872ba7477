"""The policy pipeline against real servers: auth over HTTP and WebSocket, limits, breakers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc.aio
import httpx
import jwt
import pytest
from conftest import make_config, run_gateway
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from http_upstream import closed_port
from hypercorn.asyncio import serve
from jwks import jwks_server as serve_jwks
from kitchen_upstream import Kitchen
from listening import wait_listening
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from edge.app import create_app
from edge.cli import hypercorn_config
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

ISSUER = "https://issuer.test"
SECRET = "a-test-secret-that-is-long-enough-for-hs256"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(algorithm: str = "HS256", kid: str = "hs", **claims: Any) -> str:
    payload = {"iss": ISSUER, "aud": "edge", "sub": "alice", "exp": time.time() + 60}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    key: Any = SECRET if algorithm == "HS256" else RSA_KEY
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def auth_extra(tmp_path: Path) -> dict[str, Any]:
    pem = tmp_path / "rs.pem"
    pem.write_bytes(
        RSA_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return {
        "auth": {
            "issuers": [
                {
                    "issuer": ISSUER,
                    "algorithms": ["HS256", "RS256"],
                    "audiences": ["edge"],
                    "keys": [{"kid": "hs", "secret": SECRET}, {"kid": "rs", "pem_file": str(pem)}],
                }
            ],
            "claims_to_metadata": {"x-user-id": "sub"},
            "api_keys": {"keys": {"ci": "key-123"}},
        },
        "headers": {"forward_request": ["authorization", "x-user-id", "x-request-id"]},
        "policies": [
            {"match": ["edgetest.v1.KitchenService.Inspect"], "auth": {"require": "token"}},
            {
                "match": ["edgetest.v1.KitchenService.Fail"],
                "auth": {"require": "scopes", "scopes": ["admin"]},
            },
            {
                "match": ["edgetest.v1.StreamService.*"],
                "auth": {"require": "token", "api_keys": False},
            },
        ],
    }


async def inspect(stack: Any, headers: dict[str, str]) -> Any:
    async with stack.client() as client:
        return await client.post("/v1/inspect", json={}, headers=headers)


async def test_missing_token_is_401_with_a_challenge(stack_factory: Any, auth_extra: Any) -> None:
    async with stack_factory(**auth_extra) as stack:
        response = await inspect(stack, {})
        async with stack.client() as client:
            public = await client.get("/v1/kitchen/open")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="edge"'
    assert response.json()["code"] == 16
    assert public.status_code == 200  # routes without a policy stay public


ATTACKS = {
    "alg none": lambda: jwt.encode(
        {"iss": ISSUER, "aud": "edge", "exp": time.time() + 60}, None, algorithm="none"
    ),
    "expired": lambda: token(exp=time.time() - 3600),
    "not yet valid": lambda: token(nbf=time.time() + 3600),
    "wrong issuer": lambda: token(iss="https://evil.test"),
    "wrong audience": lambda: token(aud="other"),
    "unknown kid": lambda: token(kid="nope"),
    "tampered": lambda: _tamper(token()),
    "malformed": lambda: "not.a.jwt",
    "hs256 with the rsa public key": lambda: _hs_with_public_key(),
}


def _tamper(good: str) -> str:
    header, payload, signature = good.split(".")
    return f"{header}.{payload[:-2]}AA.{signature}"


def _hs_with_public_key() -> str:
    import base64
    import hashlib
    import hmac

    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "kid": "rs"}).encode())
    body = b64(json.dumps({"iss": ISSUER, "aud": "edge", "exp": time.time() + 60}).encode())
    signature = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_attack_table_over_http(stack_factory: Any, auth_extra: Any, attack: str) -> None:
    async with stack_factory(**auth_extra) as stack:
        response = await inspect(stack, {"authorization": f"Bearer {ATTACKS[attack]()}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["code"] == 16


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_attack_table_over_websocket(
    stack_factory: Any, auth_extra: Any, attack: str
) -> None:
    async with stack_factory(**auth_extra) as stack:
        url = (
            stack.gateway.base_url.replace("http", "ws") + "/ws/edgetest.v1.KitchenService/Inspect"
        )
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                url,
                subprotocols=["edge.grpc-ws.v1"],
                additional_headers={"authorization": f"Bearer {ATTACKS[attack]()}"},
            ):
                pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["code"] == 16


async def test_verified_claims_go_upstream_and_forged_ones_do_not(
    stack_factory: Any, auth_extra: Any
) -> None:
    async with stack_factory(**auth_extra) as stack:
        response = await inspect(
            stack,
            {
                "authorization": f"Bearer {token('RS256', 'rs', sub='bob')}",
                "x-user-id": "mallory",  # allowlisted, but a claim header: stripped
                "grpc-metadata-x-user-id": "mallory",
                "x-request-id": "r1",
            },
        )
    assert response.status_code == 200, response.text
    metadata = response.json()["metadata"]
    assert metadata["x-user-id"] == "bob"
    assert "authorization" not in metadata  # not forwarded by default
    assert metadata["x-request-id"] == "r1"


async def test_scopes(stack_factory: Any, auth_extra: Any) -> None:
    async with stack_factory(**auth_extra) as stack, stack.client() as client:
        weak = await client.post(
            "/v1/fail",
            json={"code": 5, "message": "reached"},
            headers={"authorization": f"Bearer {token(scope='read')}"},
        )
        strong = await client.post(
            "/v1/fail",
            json={"code": 5, "message": "reached"},
            headers={"authorization": f"Bearer {token(scope='read admin')}"},
        )
    assert weak.status_code == 403
    assert weak.json()["code"] == 7
    assert 'error="insufficient_scope"' in weak.headers["www-authenticate"]
    assert 'scope="admin"' in weak.headers["www-authenticate"]
    assert strong.status_code == 404 and strong.json()["message"] == "reached"


async def test_api_keys(stack_factory: Any, auth_extra: Any) -> None:
    async with stack_factory(**auth_extra) as stack:
        good = await inspect(stack, {"x-api-key": "key-123"})
        bad = await inspect(stack, {"x-api-key": "key-124"})
        async with stack.client() as client:  # this policy does not take API keys
            stream = await client.get("/v1/count/1", headers={"x-api-key": "key-123"})
    assert good.status_code == 200
    assert "x-api-key" not in good.json()["metadata"]
    assert bad.status_code == 401
    assert stream.status_code == 401


async def test_websocket_token_forms(stack_factory: Any, auth_extra: Any) -> None:
    async with stack_factory(**auth_extra) as stack:
        base = stack.gateway.base_url.replace("http", "ws")
        url = base + "/ws/edgetest.v1.KitchenService/Inspect"
        # no token at the handshake: refused there, as over HTTP
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, subprotocols=["edge.grpc-ws.v1"]):
                pass
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["code"] == 16
        # as a subprotocol: checked at the handshake
        async with connect(
            url, subprotocols=["edge.grpc-ws.v1", f"edge.bearer.{token(sub='sp')}"]
        ) as ws:
            await ws.send(json.dumps({"message": {}}))
            reply = json.loads(await ws.recv())
        assert reply["message"]["metadata"]["x-user-id"] == "sp"
    async with stack_factory(**auth_extra, websocket={"first_frame_auth": True}) as stack:
        url = (
            stack.gateway.base_url.replace("http", "ws") + "/ws/edgetest.v1.KitchenService/Inspect"
        )
        # in the first frame: the handshake is accepted, the token checked with that frame
        async with connect(url, subprotocols=["edge.grpc-ws.v1"]) as ws:
            await ws.send(json.dumps({"metadata": {"authorization": f"Bearer {token(sub='ws')}"}}))
            await ws.send(json.dumps({"message": {}}))
            reply = json.loads(await ws.recv())
        assert reply["message"]["metadata"]["x-user-id"] == "ws"
        # no token anywhere: accepted (it could have come in the first frame), then 4016
        async with connect(url, subprotocols=["edge.grpc-ws.v1"]) as ws:
            await ws.send(json.dumps({"message": {}}))
            status = json.loads(await ws.recv())
            with contextlib.suppress(ConnectionClosed):
                await ws.recv()
        assert status["status"]["code"] == 16
        assert ws.close_code == 4016


async def test_rate_limit_headers_and_429(stack_factory: Any) -> None:
    extra = {
        "policies": [
            {
                "match": ["edgetest.v1.KitchenService.Echo"],
                "rate_limits": [
                    {"algorithm": "token_bucket", "limit": 3, "period": "60s", "key": ["ip"]},
                    {"algorithm": "sliding_window", "limit": 100, "period": "1h", "key": ["ip"]},
                ],
            }
        ]
    }
    async with stack_factory(**extra) as stack, stack.client() as client:
        responses = [await client.get("/v1/kitchen/r") for _ in range(4)]
        other = await client.post("/v1/inspect", json={})
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["ratelimit-remaining"] for r in responses[:3]] == ["2", "1", "0"]
    assert responses[0].headers["ratelimit-limit"] == "3"
    assert responses[0].headers["ratelimit-policy"] == "3;w=60, 100;w=3600"
    refused = responses[3]
    assert refused.json()["code"] == 8
    assert int(refused.headers["retry-after"]) >= 1
    assert "ratelimit-limit" not in other.headers  # other routes are not limited


async def test_a_server_stream_carries_its_one_limits_fields(stack_factory: Any) -> None:
    """One limit in memory (the path decided without a coroutine of its own): its fields go
    out with a streamed reply's headers too, and only on that route."""
    extra = {
        "policies": [
            {
                "match": ["edgetest.v1.StreamService.Count"],
                "rate_limits": [
                    {"algorithm": "token_bucket", "limit": 5, "period": "60s", "key": ["ip"]}
                ],
            }
        ]
    }
    async with stack_factory(**extra) as stack, stack.client() as client:
        streamed = [await client.get("/v1/count/2") for _ in range(2)]
        other = await client.post("/v1/inspect", json={})
    assert [r.status_code for r in streamed] == [200, 200]
    assert len(streamed[0].text.splitlines()) == 2  # the stream itself, both messages
    assert [r.headers["ratelimit-remaining"] for r in streamed] == ["4", "3"]
    assert streamed[0].headers["ratelimit-limit"] == "5"
    assert streamed[0].headers["ratelimit-policy"] == "5;w=60"
    assert "ratelimit-limit" not in other.headers


async def test_websocket_handshake_is_rate_limited(stack_factory: Any) -> None:
    extra = {
        "policies": [
            {
                "match": ["edgetest.v1.KitchenService.Echo"],
                "rate_limits": [{"algorithm": "sliding_log", "limit": 1, "period": "60s"}],
            }
        ]
    }
    async with stack_factory(**extra) as stack:
        url = stack.gateway.base_url.replace("http", "ws") + "/ws/edgetest.v1.KitchenService/Echo"
        async with connect(url, subprotocols=["edge.grpc-ws.v1"]) as ws:
            await ws.send(json.dumps({"message": {}}))
            await ws.recv()
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, subprotocols=["edge.grpc-ws.v1"]):
                pass
    assert refused.value.response.status_code == 429
    assert "retry-after" in refused.value.response.headers


async def test_admin_bind_serves_admin_on_its_own_listener_only(
    kitchen_upstream: tuple[int, Kitchen],
) -> None:
    """As `edge serve` runs it (hypercorn_config): two listeners, admin on one."""
    kitchen_port = kitchen_upstream[0]
    main_port, admin_port = closed_port(), closed_port()
    config = make_config(
        kitchen_port,
        extra={
            "server": {"bind": [f"127.0.0.1:{main_port}"]},
            "admin": {"bind": f"127.0.0.1:{admin_port}"},
        },
    )
    hc = hypercorn_config(config)
    hc.errorlog = hc.accesslog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(create_app(config), hc, shutdown_trigger=stop.wait))
    try:
        await wait_listening(admin_port, task)
        async with httpx.AsyncClient() as client:
            hidden = await client.get(f"http://127.0.0.1:{main_port}/admin/pipeline")
            served = await client.get(f"http://127.0.0.1:{admin_port}/admin/pipeline")
            api = await client.get(f"http://127.0.0.1:{main_port}/v1/kitchen/x")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert hidden.status_code == 404
    assert hidden.json() == {"code": 5, "message": "no route for this path", "details": []}
    assert served.status_code == 200 and "breakers" in served.json()
    assert api.status_code == 200


@contextlib.asynccontextmanager
async def kitchen_on(port: int) -> AsyncIterator[Kitchen]:
    server = grpc.aio.server()
    kitchen = Kitchen()
    pb_grpc.add_KitchenServiceServicer_to_server(kitchen, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield kitchen
    finally:
        await server.stop(grace=None)


async def test_breaker_opens_answers_alone_then_closes(kitchen_upstream: Any) -> None:
    from test_errors_e2e import closed_port

    port = closed_port()
    # unreachable_cooldown as long as cooldown: the upstream is back before the test looks
    breaker = {"consecutive_failures": 3, "cooldown": "1s", "unreachable_cooldown": "1s"}
    extra = {"breakers": {"default": {**breaker, "probes": 1}}}
    config = make_config(port, extra=extra)
    async with run_gateway(config) as gateway, gateway.client() as client:
        failures = [await client.get("/v1/kitchen/x") for _ in range(3)]
        assert [r.status_code for r in failures] == [503, 503, 503]
        async with kitchen_on(port) as kitchen:  # the upstream is back...
            open_answer = await client.get("/v1/kitchen/x")
            assert open_answer.status_code == 503  # ...but the breaker answers alone
            assert "circuit breaker is open" in open_answer.json()["message"]
            assert int(open_answer.headers["retry-after"]) >= 1
            assert kitchen.seen == []  # and the upstream was never asked
            snapshot = gateway.app.extensions["edge.state"].current.pipeline.snapshot()
            assert snapshot["breakers"][0]["state"] == "open"
            deadline = asyncio.get_running_loop().time() + 10
            while (probe := await client.get("/v1/kitchen/x")).status_code == 503:
                assert "circuit breaker is open" in probe.json()["message"]
                assert kitchen.seen == []  # refused alone until the cooldown is over
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            assert probe.status_code == 200  # cooldown over: one probe goes through
            assert len(kitchen.seen) == 1
            after = await client.get("/v1/kitchen/y")
            assert after.status_code == 200
            assert snapshot["breakers"][0]["state"] == "open"  # (the old snapshot)
            state = gateway.app.extensions["edge.state"].current.pipeline.snapshot()["breakers"][0]
            assert state["state"] == "closed"
            assert [t["to"] for t in state["transitions"]] == ["open", "half_open", "closed"]


async def test_client_errors_never_trip_the_breaker(stack_factory: Any) -> None:
    extra = {"breakers": {"default": {"consecutive_failures": 2}}}
    async with stack_factory(**extra) as stack, stack.client() as client:
        for _ in range(5):
            response = await client.post("/v1/fail", json={"code": 5, "message": "no"})
            assert response.status_code == 404
        assert (await client.get("/v1/kitchen/ok")).status_code == 200


async def test_in_flight_budget(stack_factory: Any) -> None:
    extra = {"breakers": {"default": {"max_requests": 2}}}
    async with stack_factory(**extra) as stack, stack.client() as client:
        slow = [
            asyncio.create_task(client.post("/v1/sleep", json={"seconds": 2})) for _ in range(2)
        ]
        pipeline = stack.gateway.app.extensions["edge.state"].current.pipeline
        deadline = asyncio.get_running_loop().time() + 1.5
        while pipeline.snapshot()["breakers"][0]["in_flight"] < 2:  # both slow calls are in
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        third = await client.get("/v1/kitchen/x")
        results = await asyncio.gather(*slow)
    assert third.status_code == 503
    assert "in flight" in third.json()["message"]
    assert [r.status_code for r in results] == [200, 200]


async def test_admin_endpoint_is_loopback_or_token(stack_factory: Any) -> None:
    async with stack_factory(admin={"token": "adm"}) as stack, stack.client() as client:
        refused = await client.get("/admin/pipeline")
        allowed = await client.get("/admin/pipeline", headers={"authorization": "Bearer adm"})
    assert refused.status_code == 403
    body = allowed.json()
    assert {b["upstream"] for b in body["breakers"]} == {"kitchen"}


def jwks_server(kids: list[str], max_age: int) -> contextlib.AbstractAsyncContextManager[str]:
    """A JWKS endpoint serving RSA_KEY under each kid in ``kids`` (read live)."""
    return serve_jwks(RSA_KEY, kids, max_age)


def jwks_policy(url: str) -> dict[str, Any]:
    issuer = {
        "issuer": ISSUER,
        "algorithms": ["RS256"],
        "audiences": ["edge"],
        "jwks_url": url,
        "jwks_min_refresh": "100ms",
    }
    return {
        "auth": {"issuers": [issuer]},
        "policies": [{"match": ["*"], "auth": {"require": "token"}}],
    }


def bearer(kid: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token('RS256', kid)}"}


async def test_jwks_rotation(kitchen_upstream: Any) -> None:
    """A token signed with a rotated-in key is accepted after one JWKS refetch."""
    kids = ["k1"]
    port, _ = kitchen_upstream
    async with jwks_server(kids, 600) as url:
        config = make_config(port, extra=jwks_policy(url))
        async with run_gateway(config) as gateway, gateway.client() as client:
            first = await client.get("/v1/kitchen/a", headers=bearer("k1"))
            kids[:] = ["k2"]
            await asyncio.sleep(0.15)
            rotated = await client.get("/v1/kitchen/b", headers=bearer("k2"))
            stale = await client.get("/v1/kitchen/c", headers=bearer("k1"))
    assert first.status_code == 200
    assert rotated.status_code == 200
    assert stale.status_code == 401  # k1 was rotated out with the refetch


async def test_websocket_message_limits_are_per_connection(stack_factory: Any) -> None:
    extra = {
        "policies": [
            {
                "match": ["edgetest.v1.StreamService.Shout"],
                "limit_messages": [{"algorithm": "sliding_log", "limit": 3, "period": "60s"}],
            }
        ]
    }
    async with stack_factory(**extra) as stack:
        url = stack.gateway.base_url.replace("http", "ws") + "/ws/edgetest.v1.StreamService/Shout"
        for _ in range(2):  # a second connection starts with its own allowance
            async with connect(url, subprotocols=["edge.grpc-ws.v1"]) as ws:
                for text in "abc":
                    await ws.send(json.dumps({"message": {"text": text}}))
                    assert json.loads(await ws.recv()) == {"message": {"text": text.upper()}}
                await ws.send(json.dumps({"message": {"text": "d"}}))
                final = json.loads(await ws.recv())
                with contextlib.suppress(ConnectionClosed):
                    await ws.recv()
            assert final["status"]["code"] == 8
            assert ws.close_code == 4008


def retry_policy(**retry: Any) -> dict[str, Any]:
    return {
        "policies": [{"match": ["edgetest.v1.KitchenService.Fail"], "retry": retry}],
        "breakers": {"default": {"enabled": False}},
    }


async def test_safe_routes_are_retried_on_unavailable(stack_factory: Any) -> None:
    async with stack_factory(**retry_policy(attempts=3, safe=True, backoff="10ms")) as stack:
        async with stack.client() as client:
            recovered = await client.post(
                "/v1/fail", json={"code": 14, "message": "flaky", "times": 2}
            )
            hopeless = await client.post("/v1/fail", json={"code": 14, "message": "down"})
            not_retried = await client.post(
                "/v1/fail", json={"code": 13, "message": "internal", "times": 1}
            )
        assert recovered.status_code == 200  # third attempt succeeded
        assert stack.kitchen.fail_calls["flaky"] == 3
        assert hopeless.status_code == 503
        assert stack.kitchen.fail_calls["down"] == 3  # attempts is the ceiling
        assert not_retried.status_code == 500  # INTERNAL is not a retry code
        assert stack.kitchen.fail_calls["internal"] == 1
        retries = stack.gateway.app.extensions["edge.state"].current.pipeline.snapshot()["retries"]
        assert retries["retried"] == 4


async def test_unsafe_routes_and_started_answers_are_not_retried(stack_factory: Any) -> None:
    async with stack_factory(**retry_policy(attempts=3, backoff="10ms")) as stack:
        async with stack.client() as client:  # Fail is not declared idempotent
            unsafe = await client.post("/v1/fail", json={"code": 14, "message": "u", "times": 1})
    assert unsafe.status_code == 503
    assert stack.kitchen.fail_calls["u"] == 1
    async with stack_factory(**retry_policy(attempts=3, safe=True, backoff="10ms")) as stack:
        async with stack.client() as client:  # metadata sent: the upstream had answered
            started = await client.post(
                "/v1/fail",
                json={"code": 14, "message": "s", "times": 1, "headers": {"x-a": "1"}},
            )
    assert started.status_code == 503
    assert stack.kitchen.fail_calls["s"] == 1


async def test_the_retry_budget_stops_retries(stack_factory: Any) -> None:
    extra = retry_policy(attempts=3, safe=True, backoff="10ms")
    extra["retry_budget"] = {"ratio": 0.0, "min_retries_per_second": 0.0}
    async with stack_factory(**extra) as stack, stack.client() as client:
        response = await client.post("/v1/fail", json={"code": 14, "message": "b", "times": 1})
    assert response.status_code == 503
    assert stack.kitchen.fail_calls["b"] == 1


async def test_a_per_route_breaker_leaves_other_routes_alone(stack_factory: Any) -> None:
    extra = {
        "breakers": {
            "default": {"enabled": False},
            "routes": {"edgetest.v1.KitchenService.Fail": {"consecutive_failures": 2}},
        }
    }
    async with stack_factory(**extra) as stack, stack.client() as client:
        for _ in range(2):
            await client.post("/v1/fail", json={"code": 14, "message": "down"})
        opened = await client.post("/v1/fail", json={"code": 14, "message": "down"})
        other = await client.get("/v1/kitchen/fine")
    assert "circuit breaker is open" in opened.json()["message"]
    assert stack.kitchen.fail_calls["down"] == 2
    assert other.status_code == 200


async def test_a_key_removed_from_the_jwks_stops_verifying(kitchen_upstream: Any) -> None:
    """Past the JWKS max-age the keys are refetched even without an unknown kid."""
    kids = ["k1"]
    port, _ = kitchen_upstream
    async with jwks_server(kids, 1) as url:
        config = make_config(port, extra=jwks_policy(url))
        async with run_gateway(config) as gateway, gateway.client() as client:
            assert (await client.get("/v1/kitchen/a", headers=bearer("k1"))).status_code == 200
            kids.clear()  # the issuer revokes k1
            await asyncio.sleep(1.2)  # past max-age=1
            deadline = asyncio.get_running_loop().time() + 5
            # the first call past max-age notices and refetches; soon k1 stops verifying
            while (await client.get("/v1/kitchen/b", headers=bearer("k1"))).status_code == 200:
                assert asyncio.get_running_loop().time() < deadline, "k1 still verifies"
                await asyncio.sleep(0.05)
            revoked = await client.get("/v1/kitchen/c", headers=bearer("k1"))
    assert revoked.status_code == 401


async def test_a_token_in_the_query_for_event_source(stack_factory: Any, auth_extra: Any) -> None:
    auth_extra["auth"]["token_query_parameter"] = "access_token"
    async with stack_factory(**auth_extra) as stack, stack.client() as client:
        response = await client.get(f"/v1/count/2?access_token={token()}")
    assert response.status_code == 200  # not a 400 for an unknown query parameter
    assert len(response.text.splitlines()) == 2


async def test_stream_budgets_are_released_however_streams_end(stack_factory: Any) -> None:
    extra = {"breakers": {"default": {"max_streams": 1}}}
    async with stack_factory(**extra) as stack:
        url = stack.gateway.base_url.replace("http", "ws") + "/v1/count/1000"
        for _ in range(3):  # each socket goes away mid-stream
            async with connect(url, subprotocols=["edge.grpc-ws.v1"]) as ws:
                await ws.send(json.dumps({"message": {"intervalSeconds": 0.05}}))
                first = json.loads(await ws.recv())
                assert "message" in first, first  # not refused: the budget was released
        async with stack.client() as client:
            for _ in range(2):  # HTTP streams cut short by the client
                async with client.stream("GET", "/v1/count/1000?intervalSeconds=0.05") as r:
                    async for _line in r.aiter_lines():
                        break

            async def released() -> bool:
                state = (await client.get("/admin/pipeline")).json()["breakers"][0]
                return bool(state["streams"] == 0 and state["in_flight"] == 0)

            for _ in range(50):
                if await released():
                    break
                await asyncio.sleep(0.05)
            assert await released()
