"""Hostile sidecar files: a link out of the proto folder, a YAML error beside a secret, a
file too large. None is read past its bound, and no problem quotes a file's text.

A ``*.edge.yaml`` can be a symlink, and a YAML error message from PyYAML quotes the line it
stopped on: together they would print any file the gateway can read (``DB_PASSWORD: ...``)
into ``/admin/descriptors`` and the log. A sidecar whose link resolves outside its proto
folder is refused unread; a YAML error is reported as file, line, column and kind.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEST_PROTOS, make_config, run_gateway

from edge import routes as routes_module
from edge.cli import main
from edge.sidecar import MAX_SIDECAR_BYTES

pytestmark = pytest.mark.e2e

SECRET = "hunter2-do-not-print"
CREATED: dict[str, Any] = {"methods": {"edgetest.v1.KitchenService.Echo": {"success_status": 201}}}


def protos(tmp_path: Path) -> Path:
    folder = tmp_path / "protos"
    shutil.copytree(TEST_PROTOS, folder)
    return folder


async def served_status(port: int, folder: Path) -> tuple[int, list[str]]:
    """The status of a POST to Echo (201 when a sidecar applies), and the problems."""
    config = make_config(port, protos=folder, extra={"descriptors": {"watch": False}})
    async with run_gateway(config) as gateway, gateway.client() as client:
        created = await client.post("/v1/kitchen", json={"stringValue": "x"})
        problems = (await client.get("/admin/descriptors")).json()["problems"]
    return created.status_code, problems


async def test_a_sidecar_linking_outside_the_folder_is_not_read(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    port, _ = kitchen_upstream
    folder = protos(tmp_path)
    outside = tmp_path / "elsewhere" / "settings.yaml"
    outside.parent.mkdir()
    outside.write_text(yaml.safe_dump(CREATED) + f"# DB_PASSWORD: {SECRET}\n")
    (folder / "link.edge.yaml").symlink_to(outside)
    status, problems = await served_status(port, folder)
    assert status == 200  # its settings do not apply
    assert problems == ["link.edge.yaml: is a link to a file outside the proto folder; not read"]


async def test_a_link_inside_the_folder_is_followed(kitchen_upstream: Any, tmp_path: Path) -> None:
    """ConfigMap volumes are links into a ``..data`` folder of the same mount."""
    port, _ = kitchen_upstream
    folder = protos(tmp_path)
    (folder / "..data").mkdir()
    (folder / "..data" / "kitchen.yaml").write_text(yaml.safe_dump(CREATED))
    (folder / "kitchen.edge.yaml").symlink_to(Path("..data") / "kitchen.yaml")
    status, problems = await served_status(port, folder)
    assert status == 201 and problems == []


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "methods:\n  edgetest.v1.KitchenService.Echo: {success_status: 201\n"
            f"DB_PASSWORD: {SECRET}\n",
            "bad.edge.yaml:3:12: YAML ParserError: ",
        ),
        (f"DB_PASSWORD: {SECRET}\n\tAPI_KEY: x\n", "bad.edge.yaml:2:1: YAML ScannerError"),
        (
            f"methods: *{SECRET}\n",
            "bad.edge.yaml:1:10: YAML ComposerError: found undefined alias",
        ),
    ],
)
async def test_a_yaml_error_names_the_place_never_the_text(
    kitchen_upstream: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, where: str
) -> None:
    port, _ = kitchen_upstream
    folder = protos(tmp_path)
    (folder / "bad.edge.yaml").write_text(text)
    with caplog.at_level(logging.INFO):
        status, problems = await served_status(port, folder)
    assert status == 200
    (problem,) = problems
    assert problem.startswith(where)
    assert SECRET not in problem and "DB_PASSWORD" not in problem
    assert "bad.edge.yaml" in caplog.text and SECRET not in caplog.text


def test_edge_check_quotes_no_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = protos(tmp_path)
    (folder / "bad.edge.yaml").write_text(f"methods: [1, 2\nDB_PASSWORD: {SECRET}\n")
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "descriptors": {"proto_paths": [str(folder)]},
                "upstreams": {"kitchen": {"address": "127.0.0.1:1"}},
                "services": {"*": {"upstream": "kitchen"}},
            }
        )
    )
    assert main(["check", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert "problem: bad.edge.yaml:2:12: YAML ParserError" in err
    assert SECRET not in out + err


async def test_a_sidecar_over_the_size_bound_is_not_read(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    port, _ = kitchen_upstream
    folder = protos(tmp_path)
    padding = "# padding\n" * (MAX_SIDECAR_BYTES // 10 + 1)
    (folder / "big.edge.yaml").write_text(yaml.safe_dump(CREATED) + padding)
    status, problems = await served_status(port, folder)
    assert status == 200
    assert problems == ["big.edge.yaml: is larger than 256 KiB; not read"]


async def test_sidecars_are_parsed_off_the_event_loop_during_reload(
    kitchen_upstream: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow sidecar read (a network file system, a large file) holds up the reload, not
    the requests served meanwhile."""
    port, _ = kitchen_upstream
    folder = protos(tmp_path)
    (folder / "kitchen.edge.yaml").write_text(yaml.safe_dump(CREATED))
    real = routes_module.load_sidecars

    def slow(roots: list[Path]) -> Any:
        time.sleep(1.0)
        return real(roots)

    config = make_config(port, protos=folder, extra={"descriptors": {"watch": False}})
    async with run_gateway(config) as gateway, gateway.client() as client:
        monkeypatch.setattr(routes_module, "load_sidecars", slow)
        reload = asyncio.create_task(client.post("/admin/reload"))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        health = await client.get("/healthz")
        waited = time.monotonic() - started
        assert not reload.done()
        assert (await reload).status_code == 200
    assert health.status_code == 200
    assert waited < 0.5
