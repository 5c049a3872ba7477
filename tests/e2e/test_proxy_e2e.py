"""The plain HTTP proxy end to end: real Hypercorn gateway, real HTTP/WebSocket upstream."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from conftest import Gateway, make_config, run_gateway
from http_upstream import closed_port, serve_asgi, upstream_app
from websockets.exceptions import ConnectionClosed, InvalidStatus

from edge.app import create_app
from edge.call import Call, HttpRequest, Reply
from edge.pipeline.chain import Next

pytestmark = pytest.mark.e2e

BIG = 50 * 1024 * 1024


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    async with serve_asgi(upstream_app) as port:
        yield port


def proxy_config(port: int, routes: list[dict[str, Any]], **upstream: Any) -> Any:
    return make_config(
        closed_port(),  # the gRPC side is unused here
        extra={
            "http_upstreams": {"web": {"url": f"http://127.0.0.1:{port}", **upstream}},
            "proxy_routes": routes,
        },
    )


@contextlib.asynccontextmanager
async def proxy(port: int, routes: list[dict[str, Any]], **upstream: Any) -> AsyncIterator[Gateway]:
    async with run_gateway(proxy_config(port, routes, **upstream)) as gateway:
        yield gateway


def header(echo: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in echo["headers"] if n == name]


async def test_prefix_match_whole_segments_and_longest_prefix(upstream_port: int) -> None:
    routes = [
        {"prefix": "/api", "upstream": "web"},
        {"prefix": "/api/v2/", "upstream": "web", "rewrite_prefix": "/two"},
    ]
    async with proxy(upstream_port, routes) as gateway, gateway.client() as client:
        echo = (await client.get("/api")).json()
        assert echo["path"] == "/api"
        echo = (await client.get("/api/x/y")).json()
        assert echo["path"] == "/api/x/y"
        echo = (await client.get("/api/v2/books")).json()  # the longer prefix wins
        assert echo["path"] == "/two/books"
        echo = (await client.get("/api/v2")).json()
        assert echo["path"] == "/two"
        echo = (await client.get("/api/v2x")).json()  # not a whole segment: /api
        assert echo["path"] == "/api/v2x"
        missing = await client.get("/apix")  # not proxied: the gateway's own 404
        assert missing.status_code == 404
        assert missing.json()["code"] == 5
        assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_host_and_method_filters(upstream_port: int) -> None:
    routes = [
        {"prefix": "/h", "upstream": "web", "host": "api.example.com", "rewrite_prefix": "/api"},
        {"prefix": "/h", "upstream": "web", "methods": ["post"], "rewrite_prefix": "/posted"},
        {"prefix": "/m", "upstream": "web", "methods": ["GET", "DELETE"]},
    ]
    async with proxy(upstream_port, routes) as gateway, gateway.client() as client:
        on_host = await client.get("/h/1", headers={"host": "api.example.com:8443"})
        assert on_host.json()["path"] == "/api/1"
        posted = await client.post("/h/1", content=b"x")
        assert posted.json()["path"] == "/posted/1"
        assert (await client.get("/h/1")).status_code == 404  # neither host nor method
        assert (await client.delete("/m/2")).json()["method"] == "DELETE"
        assert (await client.put("/m/2")).status_code == 404


async def test_strip_prefix_query_and_encoded_path(upstream_port: int) -> None:
    routes = [
        {"prefix": "/s", "upstream": "web", "strip_prefix": True},
        {"prefix": "/r", "upstream": "web", "rewrite_prefix": "/v1/"},
    ]
    async with proxy(upstream_port, routes) as gateway, gateway.client() as client:
        echo = (await client.get("/s/a%20b/c?x=1&y=%20z&x=2")).json()
        assert echo["raw_path"] == "/a%20b/c"  # still encoded upstream
        assert (await client.get("/s/caf%C3%A9")).json()["raw_path"] == "/caf%C3%A9"
        assert echo["query"] == "x=1&y=%20z&x=2"
        assert (await client.get("/s")).json()["path"] == "/"
        assert (await client.get("/r/q?k=v")).json()["path"] == "/v1/q"


async def test_upstream_url_path_is_a_prefix(upstream_port: int) -> None:
    routes = [{"prefix": "/p", "upstream": "web", "strip_prefix": True}]
    config = make_config(
        closed_port(),
        extra={
            "http_upstreams": {"web": {"url": f"http://127.0.0.1:{upstream_port}/base/"}},
            "proxy_routes": routes,
        },
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        assert (await client.get("/p/x")).json()["path"] == "/base/x"


async def test_hop_by_hop_headers_dropped_and_forwarded_headers_set(upstream_port: int) -> None:
    routes = [{"prefix": "/", "upstream": "web"}]
    async with proxy(upstream_port, routes) as gateway, gateway.client() as client:
        reply = await client.get(
            "/any?hop=1",
            headers={
                "connection": "keep-alive, x-secret",
                "x-secret": "do not forward",
                "keep-alive": "timeout=5",
                "te": "trailers",
                "proxy-authorization": "Basic abc",
                "x-forwarded-for": "203.0.113.9",
                "x-forwarded-proto": "spoofed",
                "authorization": "Bearer t",
                "cookie": "a=1",
                "x-custom": "kept",
            },
        )
        echo = reply.json()
        names = {n for n, _ in echo["headers"]}
        for name in ("x-secret", "keep-alive", "te", "proxy-authorization", "upgrade"):
            assert name not in names, name
        assert header(echo, "x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]
        assert header(echo, "x-forwarded-proto") == ["http"]
        assert header(echo, "x-forwarded-host") == [f"127.0.0.1:{gateway.port}"]
        assert header(echo, "host") == [f"127.0.0.1:{upstream_port}"]
        assert header(echo, "authorization") == ["Bearer t"]
        assert header(echo, "cookie") == ["a=1"]
        assert header(echo, "x-custom") == ["kept"]
        # and the upstream's hop-by-hop response headers do not reach the client
        assert reply.headers["x-kept"] == "yes"
        for name in ("x-private", "keep-alive", "proxy-authenticate"):
            assert name not in reply.headers, name


async def test_large_bodies_streamed_both_ways_without_buffering(upstream_port: int) -> None:
    routes = [{"prefix": "/big", "upstream": "web"}]
    async with (
        proxy(upstream_port, routes) as gateway,
        httpx.AsyncClient(base_url=gateway.base_url, timeout=50) as client,
    ):
        block = bytes(range(256)) * 256  # 64 KiB
        expected = hashlib.sha256()
        for _ in range(BIG // len(block)):
            expected.update(block)

        async def upload() -> AsyncIterator[bytes]:
            for _ in range(BIG // len(block)):
                yield block

        tracemalloc.start()
        try:
            reply = await client.post("/big/up", content=upload())
            echo = reply.json()
            assert echo["body_bytes"] == BIG
            assert echo["body_sha256"] == expected.hexdigest()
            _, upload_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            received = 0
            async with client.stream("GET", f"/big/down?download={BIG}") as download:
                assert download.status_code == 200
                async for chunk in download.aiter_raw():
                    received += len(chunk)
            _, download_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert received == BIG
        # client, gateway and upstream all run in this process: together they must hold
        # a few chunks at a time, not the body (50 MiB)
        assert upload_peak < BIG / 10, upload_peak
        assert download_peak < BIG / 10, download_peak


async def test_upstream_down_is_502_with_status_body() -> None:
    routes = [{"prefix": "/", "upstream": "web"}]
    async with proxy(closed_port(), routes) as gateway, gateway.client() as client:
        reply = await client.get("/x")
        assert reply.status_code == 502
        body = reply.json()
        assert body["code"] == 14
        assert "web" in body["message"]
        assert reply.headers["content-type"] == "application/json"


async def test_slow_upstream_is_504_after_the_route_timeout(upstream_port: int) -> None:
    routes = [
        {"prefix": "/slow", "upstream": "web", "timeout": "300ms"},
        {"prefix": "/patient", "upstream": "web"},
    ]
    async with proxy(upstream_port, routes, timeout="5s") as gateway, gateway.client() as client:
        reply = await client.get("/slow?sleep=2")
        assert reply.status_code == 504
        assert reply.json()["code"] == 4
        assert (await client.get("/patient?sleep=0.5")).status_code == 200  # upstream's 5s


async def test_websocket_relay_text_binary_and_close_code(upstream_port: int) -> None:
    routes = [{"prefix": "/ws", "upstream": "web", "strip_prefix": True}]
    async with proxy(upstream_port, routes) as gateway:
        url = f"ws://127.0.0.1:{gateway.port}/ws/chat?room=1"
        async with websockets.connect(
            url, subprotocols=["chat.v1"], additional_headers={"authorization": "Bearer t"}
        ) as socket:
            assert socket.subprotocol == "chat.v1"
            hello = json.loads(await socket.recv())
            assert hello["path"] == "/chat"
            assert hello["query"] == "room=1"
            headers = dict(hello["headers"])
            assert headers["authorization"] == "Bearer t"
            assert headers["x-forwarded-for"] == "127.0.0.1"
            await socket.send("hello")
            assert await socket.recv() == "hello"
            await socket.send(b"\x00\x01binary")
            assert await socket.recv() == b"\x00\x01binary"
            await socket.send("close:4321")
            with pytest.raises(ConnectionClosed):
                await socket.recv()
            assert socket.close_code == 4321
            assert socket.close_reason == "bye"


async def test_websocket_client_close_code_reaches_upstream(upstream_port: int) -> None:
    routes = [{"prefix": "/", "upstream": "web"}]
    async with proxy(upstream_port, routes) as gateway:
        socket = await websockets.connect(f"ws://127.0.0.1:{gateway.port}/x")
        await socket.recv()
        await socket.close(4000, "done")
        assert socket.close_code == 4000  # the upstream echoed the closing handshake


async def test_websocket_refused_with_502_when_upstream_down() -> None:
    routes = [{"prefix": "/", "upstream": "web"}]
    async with proxy(closed_port(), routes) as gateway:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"ws://127.0.0.1:{gateway.port}/ws")
        assert refused.value.response.status_code == 502
        assert json.loads(refused.value.response.body or b"")["code"] == 14


async def test_websocket_not_relayed_when_route_disables_it(upstream_port: int) -> None:
    routes = [{"prefix": "/", "upstream": "web", "websocket": False}]
    async with proxy(upstream_port, routes) as gateway:
        with pytest.raises((InvalidStatus, ConnectionClosed, OSError)):
            async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/x") as socket:
                await socket.recv()


async def test_proxied_calls_go_through_the_pipeline_layers(upstream_port: int) -> None:
    seen: list[Call] = []

    async def recording(call: Call, next_: Next) -> Reply:
        seen.append(call)
        if call.metadata and ("x-deny", "1") in call.metadata:
            from edge.errors import EdgeError

            class Denied(EdgeError):
                grpc_code = 7

            raise Denied("denied by a layer")
        return await next_(call)

    config = proxy_config(upstream_port, [{"prefix": "/api", "upstream": "web"}])
    async with serve_asgi(create_app(config, layers=[recording])) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/api/x?q=1")).status_code == 200
            denied = await client.get("/api/x", headers={"x-deny": "1"})
            assert denied.status_code == 403
            assert denied.json() == {"code": 7, "message": "denied by a layer", "details": []}
        async with websockets.connect(f"ws://127.0.0.1:{port}/api/ws") as socket:
            await socket.recv()
    assert [c.route for c in seen] == ["proxy:/api"] * 3
    assert seen[0].upstream == "web"
    assert isinstance(seen[0].request, HttpRequest)
    assert seen[0].request.path == "/api/x"
    assert seen[0].request.query == b"q=1"
    assert seen[0].client == "127.0.0.1"
    assert seen[2].protocol == "websocket"


async def test_policies_apply_to_proxied_routes(upstream_port: int) -> None:
    """Auth and limits from config, not a test layer: the same policies as gRPC routes."""
    config = make_config(
        closed_port(),
        extra={
            "http_upstreams": {"web": {"url": f"http://127.0.0.1:{upstream_port}"}},
            "proxy_routes": [{"prefix": "/api", "upstream": "web"}],
            "auth": {"api_keys": {"keys": {"ci": "secret-key"}}},
            "policies": [
                {
                    "match": ["proxy:/api"],
                    "auth": {"require": "token"},
                    "rate_limits": [{"algorithm": "token_bucket", "limit": 2, "period": "60s"}],
                }
            ],
        },
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        anonymous = await client.get("/api/x")
        first = await client.get("/api/x", headers={"x-api-key": "secret-key"})
        second = await client.get("/api/x", headers={"x-api-key": "secret-key"})
        third = await client.get("/api/x", headers={"x-api-key": "secret-key"})
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == 16
    assert first.status_code == 200
    assert first.headers["ratelimit-remaining"] == "1"
    assert header(first.json(), "x-api-key") == []  # the key is not forwarded
    assert second.status_code == 200
    assert third.status_code == 429


async def test_upstream_failing_mid_body_is_not_a_complete_response(upstream_port: int) -> None:
    """The client must see a broken response at once, never a short one that looks whole."""
    import time

    import httpx

    async with proxy(upstream_port, [{"prefix": "/api", "upstream": "web"}]) as gateway:
        async with gateway.client() as client:
            started = time.perf_counter()
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/api/x?break_after=1000")
            elapsed = time.perf_counter() - started
            after = await client.get("/api/x")  # the gateway is fine
    assert elapsed < 3
    assert after.status_code == 200


async def test_several_endpoints_round_robin_and_eject_a_dead_one(upstream_port: int) -> None:
    dead = closed_port()
    config = make_config(
        closed_port(),
        extra={
            "http_upstreams": {
                "web": {
                    "urls": [f"http://127.0.0.1:{dead}", f"http://127.0.0.1:{upstream_port}"],
                    "eject_after": 2,
                    "eject_for": "60s",
                }
            },
            "proxy_routes": [{"prefix": "/api", "upstream": "web"}],
        },
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        statuses = [(await client.get("/api/x")).status_code for _ in range(10)]
    assert statuses.count(502) == 2  # the dead endpoint, tried until ejected
    assert statuses[-6:] == [200] * 6  # then only the live one


@pytest.mark.parametrize(
    ("path", "served"),
    [
        ("/public/../admin/x", "/admin/x"),
        ("/public/%2e%2e/admin/x", "/admin/x"),
        ("/public/.%2E/admin", "/admin"),
        ("/public/./x", "/public/x"),
        ("/public/a.b/..c/x", "/public/a.b/..c/x"),  # dots inside names are names
    ],
)
async def test_dot_segments_are_resolved_before_matching(
    upstream_port: int, path: str, served: str
) -> None:
    """The route that matches is the one the upstream serves (tests/adversarial has more)."""
    routes = [{"prefix": "/public", "upstream": "web"}, {"prefix": "/admin", "upstream": "web"}]
    async with proxy(upstream_port, routes) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 200")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["raw_path"] == served


async def test_encoded_slashes_pass_as_sent_when_the_config_keeps_them(upstream_port: int) -> None:
    config = proxy_config(
        upstream_port, [{"prefix": "/s", "upstream": "web", "strip_prefix": True}]
    )
    config = config.model_copy(
        update={"paths": config.paths.model_copy(update={"escaped_slashes": "keep"})}
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        echo = (await client.get("/s/a%2Fb/c")).json()
        refused = await client.get("/s/a;b")
    assert echo["raw_path"] == "/a%2Fb/c"
    assert refused.status_code == 400


async def test_proxied_websockets_follow_the_origin_allowlist(upstream_port: int) -> None:
    routes = [{"prefix": "/ws", "upstream": "web", "strip_prefix": True}]
    async with proxy(upstream_port, routes) as gateway:
        url = f"ws://127.0.0.1:{gateway.port}/ws/chat"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        async with websockets.connect(url, origin=f"http://127.0.0.1:{gateway.port}") as socket:  # type: ignore[arg-type]
            assert json.loads(await socket.recv())["path"] == "/chat"
    assert refused.value.response.status_code == 403


async def test_message_limits_apply_to_proxied_websockets(upstream_port: int) -> None:
    config = make_config(
        closed_port(),
        extra={
            "http_upstreams": {"web": {"url": f"http://127.0.0.1:{upstream_port}"}},
            "proxy_routes": [{"prefix": "/ws", "upstream": "web", "strip_prefix": True}],
            "policies": [
                {
                    "match": ["proxy:/ws"],
                    "limit_messages": [{"algorithm": "sliding_log", "limit": 2, "period": "60s"}],
                }
            ],
        },
    )
    async with run_gateway(config) as gateway:
        async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/ws/chat") as socket:
            await socket.recv()  # the upstream's hello
            for text in ("one", "two", "three"):
                await socket.send(text)
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    await socket.recv()
        assert socket.close_code == 1008


async def test_a_body_that_fails_after_a_good_status_counts_for_the_breaker(
    upstream_port: int,
) -> None:
    config = make_config(
        closed_port(),
        extra={
            "http_upstreams": {"web": {"url": f"http://127.0.0.1:{upstream_port}"}},
            "proxy_routes": [{"prefix": "/api", "upstream": "web"}],
            "breakers": {"default": {"consecutive_failures": 2, "cooldown": "60s"}},
        },
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/api/x?break_after=1000")
        refused = await client.get("/api/x")
    assert refused.status_code == 503
    assert refused.json()["code"] == 14
    assert "retry-after" in refused.headers


async def test_max_requests_counts_a_response_until_its_body_ends(upstream_port: int) -> None:
    config = make_config(
        closed_port(),
        extra={
            "http_upstreams": {"web": {"url": f"http://127.0.0.1:{upstream_port}"}},
            "proxy_routes": [{"prefix": "/api", "upstream": "web"}],
            "breakers": {"default": {"max_requests": 1}},
        },
    )
    async with run_gateway(config) as gateway, gateway.client() as client:
        async with client.stream("GET", "/api/x?download=50000000") as download:
            chunks = download.aiter_raw()  # held: a dropped iterator closes the response
            await anext(chunks)  # headers and a first chunk are in
            during = await client.get("/api/x")
        after = await client.get("/api/x")
    assert during.status_code == 503
    assert after.status_code == 200


async def test_clients_leaving_mid_body_do_not_count_against_the_upstream(
    upstream_port: int,
) -> None:
    # A load generator stopping, or users closing tabs, must not open the breaker: the
    # gateway closing the upstream response for them is not the upstream failing.
    config = one_failure_opens(upstream_port)
    async with run_gateway(config) as gateway, gateway.client() as client:
        for _ in range(3):
            async with client.stream("GET", "/api/x?download=50000000") as download:
                await anext(download.aiter_raw())  # then leave, the body unread
        web = await settled_breaker(client, "web")
        after = await client.get("/api/x")
    assert web["in_flight"] == 0
    assert web["state"] == "closed" and web["transitions"] == []
    assert after.status_code == 200


async def test_one_date_and_one_server_header_on_proxied_replies(upstream_port: int) -> None:
    async with proxy(upstream_port, [{"prefix": "/api", "upstream": "web"}]) as gateway:
        async with gateway.client() as client:
            response = await client.get("/api/x")
    assert response.status_code == 200
    assert len(response.headers.get_list("date")) == 1
    assert len(response.headers.get_list("server")) == 1


async def test_clients_leaving_mid_upload_do_not_count_against_the_upstream(
    upstream_port: int,
) -> None:
    config = one_failure_opens(upstream_port)
    async with run_gateway(config) as gateway, gateway.client() as client:
        for _ in range(2):  # a 1 MB upload announced, 20 KB sent, then the client leaves
            _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            head = b"POST /api/up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
            writer.write(head + b"a" * 20_000)
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            await writer.wait_closed()
        web = await settled_breaker(client, "web")
        after = await client.get("/api/x")
    assert web["in_flight"] == 0
    assert web["state"] == "closed" and web["transitions"] == []
    assert after.status_code == 200


def one_failure_opens(port: int) -> Any:
    """A proxy to the test upstream whose breaker opens on the first failure."""
    return make_config(
        closed_port(),
        extra={
            "http_upstreams": {"web": {"url": f"http://127.0.0.1:{port}"}},
            "proxy_routes": [{"prefix": "/api", "upstream": "web"}],
            "breakers": {"default": {"consecutive_failures": 1, "cooldown": "60s"}},
        },
    )


async def settled_breaker(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """The breaker's admin view once no call is in flight (disconnects are heard late)."""
    for _ in range(100):
        state = (await client.get("/admin/pipeline")).json()
        breaker: dict[str, Any] = next(b for b in state["breakers"] if b["upstream"] == name)
        if breaker["in_flight"] == 0:
            break
        await asyncio.sleep(0.02)
    return breaker


async def test_a_proxied_download_is_watched_without_a_task_of_its_own(upstream_port: int) -> None:
    """Over HTTP/1.1 the server tells the proxy when its client goes (``edge.on_disconnect``):
    no watcher task per request (that a client leaving still stops the upstream body is
    ``test_clients_leaving_mid_body_do_not_count_against_the_upstream``'s), and the
    gateway serves on."""
    routes = [{"prefix": "/api", "upstream": "web"}]
    async with proxy(upstream_port, routes) as gateway, gateway.client() as client:
        async with client.stream("GET", "/api/x?download=50000000") as download:
            await anext(download.aiter_raw())
            coroutines = [task.get_coro() for task in asyncio.all_tasks()]
            names = [getattr(coroutine, "__qualname__", "") for coroutine in coroutines]
            assert "_watch" not in names  # edge.ingress.asgi's disconnect watcher
        upload = await client.post("/api/x", content=b"x" * 1000)
        assert upload.status_code == 200
