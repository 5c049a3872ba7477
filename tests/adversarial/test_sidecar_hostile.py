"""Hostile sidecars: a ``*.edge.yaml`` dropped beside a proto cannot loosen the main config.

Whoever can write to a proto folder can drop a sidecar. With ``default_policy`` requiring
a token, a sidecar saying ``"*": {auth: public}`` must not open the gateway: the token
requirement holds, the refusal is an ordinary 401 that never reaches the upstream, and the
sidecar is reported (``/admin/descriptors``, ``edge check``) naming its file and the
method. Only ``sidecars_may_loosen`` in the main config lets a service's sidecars loosen.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEST_PROTOS, Gateway, make_config, run_gateway
from kitchen_upstream import Kitchen, start_kitchen
from recording import AUTH, token

from edge.cli import main

pytestmark = pytest.mark.e2e

SIDECAR = "edgetest/v1/hostile.edge.yaml"
INSPECT = "edgetest.v1.KitchenService.Inspect"
PUBLIC_EVERYWHERE: dict[str, Any] = {"methods": {"*": {"auth": {"require": "public"}}}}
NO_LIMITS: dict[str, Any] = {"methods": {INSPECT: {"rate_limits": []}}}
ONE_A_MINUTE: dict[str, Any] = {
    "rate_limits": [{"algorithm": "token_bucket", "limit": 1, "period": "60s"}]
}


def protos_with(tmp_path: Path, sidecar: dict[str, Any]) -> Path:
    folder = tmp_path / "protos"
    shutil.copytree(TEST_PROTOS, folder)
    (folder / SIDECAR).write_text(yaml.safe_dump(sidecar))
    return folder


def config_data(folder: Path, **extra: Any) -> dict[str, Any]:
    return {
        "descriptors": {"proto_paths": [str(folder)], "watch": False},
        "auth": AUTH,
        "default_policy": {"auth": {"require": "token"}},
        **extra,
    }


@contextlib.asynccontextmanager
async def gateway_with(
    tmp_path: Path, sidecar: dict[str, Any], **extra: Any
) -> AsyncIterator[tuple[Gateway, Kitchen]]:
    server, port, kitchen = await start_kitchen()
    try:
        folder = protos_with(tmp_path, sidecar)
        config = make_config(port, protos=folder, extra=config_data(folder, **extra))
        async with run_gateway(config) as gateway:
            yield gateway, kitchen
    finally:
        await server.stop(None)


def calls_to(kitchen: Kitchen, method: str) -> int:
    service, _, name = method.rpartition(".")
    return sum(1 for path, _ in kitchen.received if path == f"/{service}/{name}")


async def test_a_public_sidecar_does_not_open_a_token_route(tmp_path: Path) -> None:
    async with gateway_with(tmp_path, PUBLIC_EVERYWHERE) as (gateway, kitchen):
        async with gateway.client() as client:
            refused = await client.post("/v1/inspect", json={})
            generic = await client.post("/edgetest.v1.KitchenService/Plain", json={})
            reached = len(kitchen.received)
            served = await client.post(
                "/v1/inspect", json={}, headers={"authorization": f"Bearer {token()}"}
            )
            descriptors = (await client.get("/admin/descriptors")).json()
    assert refused.status_code == 401 and generic.status_code == 401
    assert refused.headers["content-type"] == "application/json"
    status = refused.json()  # google.rpc.Status
    assert status["code"] == 16 and status["message"] and status["details"] == []
    assert reached == 0  # nothing refused reached the upstream
    assert served.status_code == 200 and calls_to(kitchen, INSPECT) == 1
    problems = descriptors["problems"]
    assert f"{SIDECAR}: {INSPECT}: auth public would loosen default_policy's token" in "\n".join(
        problems
    )
    assert all(p.startswith(f"{SIDECAR}: edgetest.v1.") for p in problems)


async def test_the_main_config_may_let_a_service_loosen(tmp_path: Path) -> None:
    allowed = {"sidecars_may_loosen": ["edgetest.v1.KitchenService"]}
    async with gateway_with(tmp_path, PUBLIC_EVERYWHERE, **allowed) as (gateway, kitchen):
        async with gateway.client() as client:
            opened = await client.post("/v1/inspect", json={})
            other = await client.get("/v1/count/1", headers={"accept": "application/json"})
            problems = (await client.get("/admin/descriptors")).json()["problems"]
    assert opened.status_code == 200 and calls_to(kitchen, INSPECT) == 1
    assert other.status_code == 401  # StreamService is not listed: still a token
    assert calls_to(kitchen, "edgetest.v1.StreamService.Count") == 0
    assert all("KitchenService" not in p for p in problems)
    assert any("StreamService.Count: auth public would loosen" in p for p in problems)


@pytest.mark.parametrize(
    ("default_auth", "sidecar_auth", "scope", "status"),
    [
        # a sidecar asking for a token where the default wants a scope: the scope holds
        ({"require": "scopes", "scopes": ["kitchen.read"]}, {"require": "token"}, "", 403),
        # a different scope: both are needed
        (
            {"require": "scopes", "scopes": ["kitchen.read"]},
            {"require": "scopes", "scopes": ["kitchen.inspect"]},
            "kitchen.inspect",
            403,
        ),
        (
            {"require": "scopes", "scopes": ["kitchen.read"]},
            {"require": "scopes", "scopes": ["kitchen.inspect"]},
            "kitchen.read kitchen.inspect",
            200,
        ),
    ],
)
async def test_a_sidecar_cannot_drop_required_scopes(
    tmp_path: Path, default_auth: Any, sidecar_auth: Any, scope: str, status: int
) -> None:
    sidecar = {"methods": {INSPECT: {"auth": sidecar_auth}}}
    extra = {"default_policy": {"auth": default_auth}}
    async with gateway_with(tmp_path, sidecar, **extra) as (gateway, kitchen):
        async with gateway.client() as client:
            answer = await client.post(
                "/v1/inspect", json={}, headers={"authorization": f"Bearer {token(scope=scope)}"}
            )
    assert answer.status_code == status
    assert calls_to(kitchen, INSPECT) == (1 if status == 200 else 0)
    if status != 200:
        assert answer.json()["code"] == 7  # PERMISSION_DENIED, as a google.rpc.Status


@pytest.mark.parametrize(("allowed", "second"), [([], 429), (["edgetest.v1.*"], 200)])
async def test_a_sidecar_cannot_lift_the_default_rate_limit(
    tmp_path: Path, allowed: list[str], second: int
) -> None:
    extra: dict[str, Any] = {"default_policy": {"auth": {"require": "token"}, **ONE_A_MINUTE}}
    if allowed:
        extra["sidecars_may_loosen"] = allowed
    bearer = {"authorization": f"Bearer {token()}"}
    async with gateway_with(tmp_path, NO_LIMITS, **extra) as (gateway, kitchen):
        async with gateway.client() as client:
            # the default route spends the allowance; the sidecar's method shares it
            first = await client.post("/edgetest.v1.KitchenService/Plain", json={}, headers=bearer)
            then = await client.post("/v1/inspect", json={}, headers=bearer)
    assert first.status_code == 200
    assert then.status_code == second
    assert calls_to(kitchen, INSPECT) == (1 if second == 200 else 0)


def test_edge_check_fails_on_a_loosening_sidecar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = protos_with(tmp_path, PUBLIC_EVERYWHERE)
    data = config_data(
        folder,
        upstreams={"kitchen": {"address": "127.0.0.1:1"}},
        services={"*": {"upstream": "kitchen"}},
    )
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"problem: {SIDECAR}: {INSPECT}: auth public would loosen" in err
    data["sidecars_may_loosen"] = ["edgetest.v1.*"]
    path.write_text(yaml.safe_dump(data))
    assert main(["check", "--config", str(path)]) == 0


async def test_a_sidecar_dropped_at_run_time_is_refused_on_reload(tmp_path: Path) -> None:
    harmless = {"methods": {INSPECT: {"success_status": 200}}}
    async with gateway_with(tmp_path, harmless) as (gateway, kitchen):
        (tmp_path / "protos" / SIDECAR).write_text(yaml.safe_dump(PUBLIC_EVERYWHERE))
        async with gateway.client() as client:
            reload = await client.post("/admin/reload")
            refused = await client.post("/v1/inspect", json={})
    assert reload.status_code == 409  # the last good set keeps being served
    assert any(
        p.startswith(f"{SIDECAR}: {INSPECT}: auth public") for p in reload.json()["problems"]
    )
    assert refused.status_code == 401 and refused.json()["code"] == 16
    assert calls_to(kitchen, INSPECT) == 0
