"""A broken .proto next to good ones: the good routes are served, the problem is named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEST_PROTOS, make_config, run_gateway

pytestmark = pytest.mark.e2e

BROKEN = """syntax = "proto3";
package broken.v1;

message Oops {
  strin name = 1;
}
"""

IMPORTS_BROKEN = """syntax = "proto3";
package alsobroken.v1;
import "broken/v1/broken.proto";
message UsesOops { broken.v1.Oops oops = 1; }
"""


@pytest.fixture
def protos_with_broken(tmp_path: Path) -> Path:
    folder = tmp_path / "protos"
    shutil.copytree(TEST_PROTOS, folder)
    (folder / "broken" / "v1").mkdir(parents=True)
    (folder / "broken" / "v1" / "broken.proto").write_text(BROKEN)
    (folder / "uses_broken.proto").write_text(IMPORTS_BROKEN)
    return folder


async def test_broken_proto_leaves_good_routes_served(
    kitchen_upstream: Any, protos_with_broken: Path
) -> None:
    port, _ = kitchen_upstream
    config = make_config(port, protos=protos_with_broken)
    async with run_gateway(config) as gateway, gateway.client() as client:
        response = await client.get("/v1/kitchen/still-here")
        problems = gateway.app.extensions["edge.state"].current.routes.problems
    assert response.status_code == 200
    assert response.json() == {"stringValue": "still-here"}
    assert any(p.startswith("broken/v1/broken.proto:5:3:") and "strin" in p for p in problems)
    assert any("uses_broken.proto" in p or "broken/v1/broken.proto" in p for p in problems)


def run_check(config_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "check", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_config(folder: Path, protos: Path) -> Path:
    config_file = folder / "edge.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "descriptors": {"proto_paths": [str(protos)]},
                "upstreams": {"kitchen": {"address": "127.0.0.1:1"}},
                "services": {"edgetest.v1.KitchenService": {"upstream": "kitchen"}},
            }
        )
    )
    return config_file


def test_check_prints_routes(tmp_path: Path) -> None:
    result = run_check(write_config(tmp_path, TEST_PROTOS))
    assert result.returncode == 0, result.stderr
    assert (
        "GET    /v1/kitchen/{string_value}  ->  edgetest.v1.KitchenService.Echo @ kitchen"
        in result.stdout
    )
    assert "POST   /edgetest.v1.KitchenService/Plain" in result.stdout
    # which gRPC client makes the unary calls, and why
    assert "upstream kitchen: 127.0.0.1:1; unary calls by lean (client: auto -> lean)" in (
        result.stdout
    )
    assert ", 0 problems" in result.stderr


def test_check_names_file_line_and_problem(tmp_path: Path, protos_with_broken: Path) -> None:
    result = run_check(write_config(tmp_path, protos_with_broken))
    assert result.returncode == 1
    assert 'broken/v1/broken.proto:5:3: "strin" is not defined.' in result.stderr
    assert "/v1/kitchen/{string_value}" in result.stdout  # the good routes are still listed


def test_check_rejects_unknown_config_key(tmp_path: Path) -> None:
    config_file = tmp_path / "edge.yaml"
    config_file.write_text("upstreams:\n  a:\n    adress: 127.0.0.1:1\n")
    result = run_check(config_file)
    assert result.returncode == 2
    assert "upstreams.a.adress: Extra inputs are not permitted" in result.stderr
