"""Per-method settings in ``*.edge.yaml`` files next to the protos."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEST_PROTOS, make_config, run_gateway

pytestmark = pytest.mark.e2e

SIDECAR = {
    "methods": {
        "edgetest.v1.KitchenService.Echo": {"success_status": 201, "json": {"emit_defaults": True}},
        "edgetest.v1.StreamService.Count": {"stream_format": "json"},
        "edgetest.v1.KitchenService.Inspect": {
            "auth": {"require": "token"},
            "rate_limits": [{"algorithm": "token_bucket", "limit": 1, "period": "60s"}],
        },
    }
}
API_KEYS = {"auth": {"api_keys": {"keys": {"team": "k"}}}}


def protos_with(tmp_path: Path, sidecar: Any) -> Path:
    folder = tmp_path / "protos"
    shutil.copytree(TEST_PROTOS, folder)
    (folder / "edgetest" / "v1" / "kitchen.edge.yaml").write_text(yaml.safe_dump(sidecar))
    return folder


def config(port: int, folder: Path, **extra: Any) -> Any:
    return make_config(port, protos=folder, extra={**API_KEYS, **extra})


async def test_sidecar_settings_apply(kitchen_upstream: Any, tmp_path: Path) -> None:
    port, _ = kitchen_upstream
    folder = protos_with(tmp_path, SIDECAR)
    async with run_gateway(config(port, folder)) as gateway, gateway.client() as client:
        created = await client.post("/v1/kitchen", json={"stringValue": "new"})
        streamed = await client.get("/v1/count/2")
        anonymous = await client.post("/v1/inspect", json={})
        first = await client.post("/v1/inspect", json={}, headers={"x-api-key": "k"})
        second = await client.post("/v1/inspect", json={}, headers={"x-api-key": "k"})
        other = await client.post("/edgetest.v1.KitchenService/Plain", json={})
    assert created.status_code == 201
    assert created.json()["int32Value"] == 0  # emit_defaults for this method only
    assert other.json() == {}  # ...not for the others
    assert streamed.headers["content-type"] == "application/json"
    assert streamed.json() == [{}, {"index": 1}]
    assert anonymous.status_code == 401
    assert first.status_code == 200 and second.status_code == 429


async def test_the_gateway_config_wins(kitchen_upstream: Any, tmp_path: Path) -> None:
    port, _ = kitchen_upstream
    folder = protos_with(tmp_path, SIDECAR)
    public = {"policies": [{"match": ["edgetest.v1.KitchenService.Inspect"]}]}
    timeout = {"methods": {"edgetest.v1.KitchenService.Inspect": {"timeout": "3s"}}}
    async with run_gateway(config(port, folder, **public, **timeout)) as gateway:
        async with gateway.client() as client:
            answers = [await client.post("/v1/inspect", json={}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]  # public, no sidecar limit
    assert answers[0].json()["deadlineSeconds"] <= 3.1


async def test_auth_required_without_credentials_fails_closed(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    port, _ = kitchen_upstream
    folder = protos_with(tmp_path, SIDECAR)
    plain = make_config(port, protos=folder)
    async with run_gateway(plain) as gateway, gateway.client() as client:
        refused = await client.post("/v1/inspect", json={})
        served = await client.get("/v1/kitchen/x")
        problems = gateway.app.extensions["edge.state"].current.routes.problems
    assert refused.status_code == 404
    assert served.status_code == 201
    assert any("Inspect: its .edge.yaml requires auth" in p for p in problems)


async def test_sidecars_reload_and_bad_ones_are_reported(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    port, _ = kitchen_upstream
    folder = protos_with(tmp_path, SIDECAR)
    sidecar = folder / "edgetest" / "v1" / "kitchen.edge.yaml"
    extra = {"descriptors": {"proto_paths": [str(folder)], "watch": False}}
    async with run_gateway(config(port, folder, **extra)) as gateway, gateway.client() as client:
        changed = {"methods": {"edgetest.v1.KitchenService.Echo": {"success_status": 202}}}
        sidecar.write_text(yaml.safe_dump(changed))
        assert (await client.post("/admin/reload")).status_code == 200
        assert (await client.post("/v1/kitchen", json={})).status_code == 202
        assert (await client.post("/v1/inspect", json={})).status_code == 200  # no auth now
        sidecar.write_text(
            "methods:\n  edgetest.v1.KitchenService.Echo:\n    success_status: 404\n"
        )
        refused = await client.post("/admin/reload")
        assert refused.status_code == 409
        assert "success_status" in refused.json()["problems"][0]
        assert (await client.post("/v1/kitchen", json={})).status_code == 202  # last good set
