"""Live configuration: the config file edited under steady load, applied without a restart.

A gateway serves from a config file while clients keep sending every kind of request
(unary calls, a server stream, an open WebSocket, proxied requests). The file is edited
and reloaded (``POST /admin/reload``, or the watcher seeing the file change): policies
tighten, a route starts requiring a token, the upstream moves to a second live server,
proxy routes come and go, a JWKS issuer is added. Every request sent is answered and
none with a 5xx, and each change shows on the first request after the reload. A broken
config (bad YAML, an unknown key, an unreadable TLS file, a route conflict) changes
nothing and is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from conftest import TEST_PROTOS, Gateway, run_gateway, self_signed
from cryptography.hazmat.primitives.asymmetric import rsa
from http_upstream import serve_asgi, upstream_app
from jwks import jwks_server
from kitchen_upstream import Kitchen, start_kitchen
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from edge.config_source import ConfigSource
from edge.workers import WorkerGroup, bump_epoch

pytestmark = pytest.mark.e2e

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWKS_ISSUER = "https://jwks.issuer.test"


@dataclass
class Load:
    """Clients that keep sending while the config changes; what they sent and got."""

    gateway: Gateway
    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    reconnects: int = 0  # sockets told to reconnect (1012) by a reload
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def unary(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            self.sent["unary"] += 1
            response = await client.get("/v1/kitchen/steady")
            self._answered("unary", response.status_code)

    async def stream(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            self.sent["stream"] += 1
            async with client.stream("GET", "/v1/count/10?intervalSeconds=0.05") as response:
                lines = [line async for line in response.aiter_lines() if line]
            self._answered("stream", response.status_code)
            if response.status_code == 200 and len(lines) != 10:
                self.failures.append(f"a stream ended after {len(lines)} of 10 messages")

    async def proxied(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            self.sent["proxied"] += 1
            response = await client.get("/web/steady")
            self._answered("proxied", response.status_code)

    async def socket(self) -> None:
        """One bidi stream open the whole time, as a well-behaved client keeps one: told to
        reconnect (1012, after a reload changed its route), it reconnects and sends again
        what had no answer."""
        url = self.gateway.base_url.replace("http", "ws") + "/ws/edgetest.v1.StreamService/Shout"
        pending = False  # a message sent and not answered yet (sent again after 1012)
        while True:
            async with connect(url, subprotocols=["edge.grpc-ws.v1"]) as ws:
                with contextlib.suppress(ConnectionClosed):
                    while pending or not self.stop.is_set():
                        if not pending:
                            self.sent["socket"] += 1
                        pending = True
                        await ws.send(json.dumps({"message": {"text": "steady"}}))
                        reply = json.loads(await ws.recv())
                        if "status" in reply:  # UNAVAILABLE, then the close
                            await ws.wait_closed()
                            break
                        pending = False
                        shout = reply == {"message": {"text": "STEADY"}}
                        self._answered("socket", 200 if shout else 500)
                        await asyncio.sleep(0.01)
                    else:  # stopped: end the stream as a client does
                        await ws.send(json.dumps({"end": True}))
                        assert json.loads(await ws.recv()) == {"message": {"text": "bye"}}
                        return
            if ws.close_code != 1012:
                self.failures.append(f"the socket closed with {ws.close_code}, not 1012")
                return
            self.reconnects += 1

    def _answered(self, kind: str, status: int) -> None:
        self.answered[kind] += 1
        self.statuses[status] += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        async with self.gateway.client() as client:
            tasks = [
                asyncio.create_task(job)
                for job in (
                    self.unary(client),
                    self.unary(client),
                    self.stream(client),
                    self.proxied(client),
                    self.socket(),
                )
            ]
            try:
                yield self
            finally:
                self.stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 20)

    def check(self) -> None:
        assert not self.failures, self.failures
        assert self.answered == self.sent, (self.sent, self.answered)
        assert all(status < 500 for status in self.statuses), self.statuses
        assert all(self.answered[kind] > 0 for kind in ("unary", "stream", "proxied", "socket"))


def config_data(kitchen_port: int, web_port: int, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "descriptors": {"proto_paths": [str(TEST_PROTOS)], "watch": False},
        "upstreams": {"kitchen": {"address": f"127.0.0.1:{kitchen_port}", "timeout": "5s"}},
        "services": {"*": {"upstream": "kitchen"}},
        "http_upstreams": {"web": {"url": f"http://127.0.0.1:{web_port}"}},
        "proxy_routes": [
            {"prefix": "/web", "upstream": "web"},
            {"prefix": "/old", "upstream": "web"},
        ],
        "auth": {"api_keys": {"keys": {"ci": "key-123"}}},
    }
    data.update(extra)
    return data


@dataclass
class World:
    path: Path
    kitchens: list[tuple[int, Kitchen]]
    web_port: int
    gateway: Gateway

    def write(self, data: dict[str, Any]) -> None:
        self.path.write_text(yaml.safe_dump(data))

    async def reload(self, client: httpx.AsyncClient, applied: bool = True) -> dict[str, Any]:
        response = await client.post("/admin/reload")
        assert response.status_code == (200 if applied else 409), response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    servers = [await start_kitchen() for _ in range(2)]
    path = tmp_path / "edge.yaml"
    try:
        async with serve_asgi(upstream_app) as web_port:
            data = config_data(servers[0][1], web_port)
            path.write_text(yaml.safe_dump(data))
            source = ConfigSource(path)
            async with run_gateway(source.load(), source=source) as gateway:
                kitchens = [(port, kitchen) for _, port, kitchen in servers]
                yield World(path, kitchens, web_port, gateway)
    finally:
        for server, _, _ in servers:
            await server.stop(grace=None)


def rs_token(issuer: str) -> str:
    claims = {"iss": issuer, "aud": "edge", "sub": "ada", "exp": int(time.time()) + 3600}
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})


async def test_each_change_applies_at_once_and_every_request_is_answered(world: World) -> None:
    (port_a, kitchen_a), (port_b, kitchen_b) = world.kitchens
    base = config_data(port_a, world.web_port)
    load = Load(world.gateway)
    async with jwks_server(KEY, ["k1"], 600) as jwks_url, load.running():
        async with world.gateway.client() as client:
            await asyncio.sleep(0.3)  # the load is flowing
            assert (await client.post("/v1/inspect", json={})).status_code == 200

            # a limit tightens: the first request after the reload is counted against it
            limits = [{"algorithm": "token_bucket", "limit": 2, "period": "60s", "key": ["ip"]}]
            policies = [{"match": ["edgetest.v1.KitchenService.Inspect"], "rate_limits": limits}]
            world.write({**base, "policies": policies})
            assert (await world.reload(client))["applied"] is True
            answers = [await client.post("/v1/inspect", json={}) for _ in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 429]
            assert answers[0].headers["ratelimit-limit"] == "2"

            # the same limit, reloaded again with something else changed: its counter stays
            policies[0]["auth"] = {"require": "token"}  # and the route now needs a token
            world.write({**base, "policies": policies})
            await world.reload(client)
            no_token = await client.post("/v1/inspect", json={})
            assert no_token.status_code == 401
            with_key = await client.post("/v1/inspect", json={}, headers={"x-api-key": "key-123"})
            assert with_key.status_code == 429  # the two calls before the reload still count

            # the upstream moves to a second live server
            moved = config_data(port_b, world.web_port)
            world.write(moved)
            await world.reload(client)
            before = len(kitchen_a.seen), len(kitchen_b.seen)
            echoed = await client.get("/v1/kitchen/moved")
            assert echoed.status_code == 200
            assert len(kitchen_b.seen) > before[1]
            assert not any(m.string_value == "moved" for m in kitchen_a.seen)

            # a proxy route added and one removed
            assert (await client.get("/new/x")).status_code == 404
            assert (await client.get("/old/x")).status_code == 200
            moved["proxy_routes"] = [
                {"prefix": "/web", "upstream": "web"},
                {"prefix": "/new", "upstream": "web"},
            ]
            world.write(moved)
            await world.reload(client)
            assert (await client.get("/new/x")).json()["path"] == "/new/x"
            assert (await client.get("/old/x")).status_code == 404

            # a JWKS issuer added: its tokens are accepted on the next request
            moved["policies"] = [
                {"match": ["edgetest.v1.KitchenService.Inspect"], "auth": {"require": "token"}}
            ]
            world.write(moved)
            await world.reload(client)
            bearer = {"authorization": f"Bearer {rs_token(JWKS_ISSUER)}"}
            assert (await client.post("/v1/inspect", json={}, headers=bearer)).status_code == 401
            issuer = {
                "issuer": JWKS_ISSUER,
                "algorithms": ["RS256"],
                "audiences": ["edge"],
                "jwks_url": jwks_url,
            }
            moved["auth"] = {**moved["auth"], "issuers": [issuer]}
            world.write(moved)
            await world.reload(client)
            assert (await client.post("/v1/inspect", json={}, headers=bearer)).status_code == 200
            await asyncio.sleep(0.3)  # the load runs on the last config too
    load.check()
    # the upstream's move changed the socket's route: it was told to reconnect, and did
    assert load.reconnects >= 1


def refused_reloads(exposition: str) -> float:
    from test_observability_e2e import sample

    return sample(exposition, "edge_config_reload_total", result="refused")


async def test_a_broken_config_changes_nothing_and_is_reported(
    world: World, tmp_path: Path
) -> None:
    port_a, kitchen_a = world.kitchens[0]
    base = config_data(port_a, world.web_port)
    conflicting = tmp_path / "conflicting"
    conflicting.mkdir()
    (conflicting / "clash.proto").write_text(
        'syntax = "proto3";\npackage clash.v1;\nimport "google/api/annotations.proto";\n'
        "service Clash {\n  rpc Echo(M) returns (M) {\n"
        '    option (google.api.http) = { get: "/v1/kitchen/{name}" };\n  }\n}\n'
        "message M { string name = 1; }\n"
    )
    broken: dict[str, str] = {
        "bad YAML": "upstreams: [unclosed\n",
        "an unknown key": yaml.safe_dump({**base, "upstreamz": {}}),
        "an unreadable TLS file": yaml.safe_dump(
            {
                **base,
                "upstreams": {
                    "kitchen": {
                        "address": f"127.0.0.1:{port_a}",
                        "tls": {"ca": str(tmp_path / "missing-ca.pem")},
                    }
                },
            }
        ),
        "a route conflict": yaml.safe_dump(
            {
                **base,
                "descriptors": {
                    "proto_paths": [str(TEST_PROTOS), str(conflicting)],
                    "watch": False,
                },
            }
        ),
    }
    expected = {
        "bad YAML": "(line 2, column 1)",
        "an unknown key": "upstreamz",
        "an unreadable TLS file": "missing-ca.pem",
        "a route conflict": "conflicts with",
    }
    load = Load(world.gateway)
    async with load.running(), world.gateway.client() as client:
        await asyncio.sleep(0.3)
        refused_before = refused_reloads((await client.get("/metrics")).text)
        for name, text in broken.items():
            world.path.write_text(text)
            refused = await world.reload(client, applied=False)
            assert any(expected[name] in problem for problem in refused["problems"]), (
                name,
                refused,
            )
            # nothing changed: the same routes, upstream and proxy routes answer
            assert (await client.get("/v1/kitchen/still")).status_code == 200
            assert (await client.get("/old/x")).status_code == 200
            status = (await client.get("/admin/descriptors")).json()["reload"]
            assert status["last_error"] == refused["problems"]
        # (the counter is the process's: other tests in it may have counted before)
        refused_after = refused_reloads((await client.get("/metrics")).text)
        assert refused_after - refused_before == len(broken)
        world.write(base)  # and a good config after them applies
        assert (await world.reload(client))["applied"] is True
        await asyncio.sleep(0.3)
    assert any(m.string_value == "still" for m in kitchen_a.seen)
    load.check()
    assert load.reconnects == 0  # refused reloads, and one that changed nothing, end no socket


async def test_the_watcher_applies_an_edited_file_within_a_second(world: World) -> None:
    port_a, _ = world.kitchens[0]
    data = config_data(port_a, world.web_port)
    data["descriptors"] = {**data["descriptors"], "watch": True, "watch_interval": "100ms"}
    async with world.gateway.client() as client:
        world.write(data)
        await world.reload(client)  # now watching, every 100 ms
        await asyncio.sleep(0.3)
        data["proxy_routes"] = [{"prefix": "/watched", "upstream": "web"}]
        # as a ConfigMap update does: a new file swapped in under the same name
        replacement = world.path.with_suffix(".new")
        replacement.write_text(yaml.safe_dump(data))
        replacement.replace(world.path)
        changed_at = time.monotonic()
        while (await client.get("/watched/x")).status_code != 200:
            assert time.monotonic() - changed_at < 1.0, "not applied within 1 s"
            await asyncio.sleep(0.02)
        assert (await client.get("/old/x")).status_code == 404


async def test_a_worker_that_missed_a_sighup_while_starting_reloads_once_serving(
    tmp_path: Path,
) -> None:
    server, port, _ = await start_kitchen()
    try:
        async with serve_asgi(upstream_app) as web_port:
            path = tmp_path / "edge.yaml"
            path.write_text(yaml.safe_dump(config_data(port, web_port)))
            source = ConfigSource(path)
            running = source.load()
            # the file changed and the supervisor was asked to reload before this worker
            # could take signals: the epoch says so
            data = config_data(port, web_port)
            data["proxy_routes"] = [{"prefix": "/late", "upstream": "web"}]
            path.write_text(yaml.safe_dump(data))
            folder = tmp_path / "run"
            folder.mkdir()
            bump_epoch(folder)
            group = WorkerGroup(folder, 0, 1, os.getpid(), started_at_epoch=0)
            async with run_gateway(running, source=source, group=group) as gateway:
                async with gateway.client() as client:
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + 5
                    while (await client.get("/late/x")).status_code != 200:
                        assert loop.time() < deadline, "the missed reload never happened"
                        await asyncio.sleep(0.05)
                report = group.reports()[0]
                assert report["generation"] == 2 and report["applied"] is True
    finally:
        await server.stop(grace=None)


async def test_edge_check_against_a_running_gateway_says_what_a_reload_would_change(
    world: World, tmp_path: Path
) -> None:
    port_a, _ = world.kitchens[0]
    new = config_data(port_a, world.web_port)
    new["proxy_routes"] = [{"prefix": "/web", "upstream": "web"}]  # /old goes
    new["upstreams"]["kitchen"]["max_response_bytes"] = "1MiB"
    new["server"] = {"bind": ["127.0.0.1:1"]}
    new_file = tmp_path / "new.yaml"
    new_file.write_text(yaml.safe_dump(new))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.cli", "check", "--config", str(new_file),
        "--against", world.gateway.base_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    report = out.decode().split(f"against {world.gateway.base_url}: ", 1)[1]
    assert report.splitlines() == [
        "3 changes",
        "  upstream changed: kitchen (max_response_bytes)",
        "  proxy route removed: /old",
        "  needs a restart (a reload keeps the running value): server.bind",
    ]
    async with world.gateway.client() as client:  # and nothing was reloaded by asking
        assert (await client.get("/old/x")).status_code == 200


async def open_shout(gateway: Gateway) -> Any:
    url = gateway.base_url.replace("http", "ws") + "/ws/edgetest.v1.StreamService/Shout"
    ws = await connect(url, subprotocols=["edge.grpc-ws.v1"])
    await ws.send(json.dumps({"message": {"text": "a"}}))
    assert json.loads(await ws.recv()) == {"message": {"text": "A"}}
    return ws


async def open_count(gateway: Gateway) -> Any:
    url = gateway.base_url.replace("http", "ws") + "/ws/edgetest.v1.StreamService/Count"
    ws = await connect(url, subprotocols=["edge.grpc-ws.v1"])
    await ws.send(json.dumps({"message": {"count": 1000, "intervalSeconds": 0.02}}))
    assert "message" in json.loads(await ws.recv())
    return ws


async def test_a_socket_whose_route_changed_is_told_to_reconnect_and_the_others_stay(
    world: World,
) -> None:
    port_a, _ = world.kitchens[0]
    data = config_data(port_a, world.web_port)
    async with world.gateway.client() as client:
        shout, count = await open_shout(world.gateway), await open_count(world.gateway)
        # Shout now needs a token; Count's route and policy are as they were
        policies = [{"match": ["edgetest.v1.StreamService.Shout"], "auth": {"require": "token"}}]
        world.write({**data, "policies": policies})
        await world.reload(client)
        status = json.loads(await shout.recv())
        assert status["status"]["code"] == 14  # UNAVAILABLE: reconnect
        await shout.wait_closed()
        assert shout.close_code == 1012
        for _ in range(5):  # the other socket keeps streaming on its generation
            assert "message" in json.loads(await count.recv())
        # and a client reconnecting gets the new policy: no token, no socket
        url = world.gateway.base_url.replace("http", "ws") + "/ws/edgetest.v1.StreamService/Shout"
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, subprotocols=["edge.grpc-ws.v1"])
        assert refused.value.response.status_code == 401
        await count.close()


async def test_reconnect_on_reload_never_keeps_every_socket(world: World) -> None:
    port_a, _ = world.kitchens[0]
    data = config_data(port_a, world.web_port)
    data["websocket"] = {"reconnect_on_reload": "never"}
    async with world.gateway.client() as client:
        world.write(data)
        await world.reload(client)
        shout = await open_shout(world.gateway)
        policies = [{"match": ["edgetest.v1.StreamService.Shout"], "auth": {"require": "token"}}]
        world.write({**data, "policies": policies})
        await world.reload(client)
        await asyncio.sleep(0.2)
        await shout.send(json.dumps({"message": {"text": "still"}}))
        assert json.loads(await shout.recv()) == {"message": {"text": "STILL"}}
        await shout.close()


async def served_certificate(port: int) -> bytes:
    """The certificate a new TLS connection to the gateway is shown (DER)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return der
    finally:
        writer.close()


async def test_a_renewed_listener_certificate_is_served_after_a_reload(tmp_path: Path) -> None:
    server, port, _ = await start_kitchen()
    first, second = self_signed(tmp_path, "first"), self_signed(tmp_path, "second")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "cert.pem", live / "key.pem"
    shutil.copy(first[0], cert)
    shutil.copy(first[1], key)
    try:
        async with serve_asgi(upstream_app) as web_port:
            data = config_data(port, web_port)
            data["server"] = {"certfile": str(cert), "keyfile": str(key)}
            path = tmp_path / "edge.yaml"
            path.write_text(yaml.safe_dump(data))
            source = ConfigSource(path)
            async with run_gateway(
                source.load(), source=source, certfile=cert, keyfile=key
            ) as gateway:
                assert await served_certificate(gateway.port) == pem_to_der(first[0])
                # renewed in place, as cert-manager or an ACME client does
                shutil.copy(second[0], cert)
                shutil.copy(second[1], key)
                async with gateway.client(verify=False) as client:
                    assert (await client.post("/admin/reload")).status_code == 200
                assert await served_certificate(gateway.port) == pem_to_der(second[0])
                # a broken pair is not loaded: the running certificate stays
                cert.write_text("not a certificate")
                async with gateway.client(verify=False) as client:
                    assert (await client.post("/admin/reload")).status_code == 200
                    assert (await client.get("/v1/kitchen/tls")).status_code == 200
                assert await served_certificate(gateway.port) == pem_to_der(second[0])
    finally:
        await server.stop(grace=None)


def pem_to_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


async def test_a_rollback_serves_the_config_before_the_last_reload(world: World) -> None:
    port_a, _ = world.kitchens[0]
    data = config_data(port_a, world.web_port)
    async with world.gateway.client() as client:
        nothing = await client.post("/admin/rollback")
        assert nothing.status_code == 409  # nothing served before
        assert nothing.json()["problems"] == ["no earlier config to roll back to"]
        data["proxy_routes"] = [{"prefix": "/new", "upstream": "web"}]
        world.write(data)
        await world.reload(client)
        assert (await client.get("/old/x")).status_code == 404
        rolled = await client.post("/admin/rollback")
        assert rolled.status_code == 200, rolled.text
        assert (await client.get("/old/x")).status_code == 200
        assert (await client.get("/new/x")).status_code == 404
        # the file still holds the new config: the next reload serves it again
        await world.reload(client)
        assert (await client.get("/new/x")).status_code == 200
