"""Hostile .proto and sidecar files dropped beside good ones: each costs only itself.

Whoever can write to a proto folder can drop a file that passes the per-file check and
fails the whole-set compile (a field numbered in 19000-19999, a symbol another file
defines), one that crashes protoc itself (``additional_bindings`` nested a hundred deep
abort it; twenty thousand deep overflow its stack), message types that hold each other
600 deep, or a sidecar of 20,000 nested ``[``. ``edge check`` and a started gateway must
serve the other files and name the one at fault, with its line where protoc or the file
gives one; never print 0 routes, a traceback, or die.

The crash cases run ``edge check`` in a child process: today's fault would take the test
runner down with it otherwise.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEST_PROTOS, make_config, run_gateway

from edge.cli import main

pytestmark = pytest.mark.e2e

RESERVED = """syntax = "proto3";
package hostile.v1;

message Reserved {
  string fine = 1;
  string x = 19000;
}
service Hostile { rpc Get(Reserved) returns (Reserved); }
"""
IMPORTS_RESERVED = """syntax = "proto3";
package importer.v1;
// an import in a comment is no import: import "nothing.proto";
import "hostile/v1/reserved.proto";
message Uses { hostile.v1.Reserved reserved = 1; }
service Importer { rpc Get(Uses) returns (Uses); }
"""
# the kitchen proto's package and message again, under another name
TWIN = """syntax = "proto3";
package edgetest.v1;
message Kitchen { string other = 1; }
"""
# a line of edge check's route table: the good files' routes are there
KITCHEN_ROUTE = re.compile(
    r"^GET +/v1/kitchen/\{string_value\}  ->  edgetest\.v1\.KitchenService\.Echo @ kitchen$",
    re.MULTILINE,
)


def protos_with(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "protos"
    shutil.copytree(TEST_PROTOS, folder)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def config_file(tmp_path: Path, folder: Path, upstream: str = "127.0.0.1:1") -> Path:
    path = tmp_path / "edge.yaml"
    data = {
        "descriptors": {"proto_paths": [str(folder)], "watch": False},
        "upstreams": {"kitchen": {"address": upstream}},
        "services": {"*": {"upstream": "kitchen"}},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def routes_line(err: str) -> tuple[int, int]:
    """(routes, problems) from edge check's last line."""
    last = err.strip().splitlines()[-1]
    routes, problems = last.split(", ")
    return int(routes.split()[0]), int(problems.split()[0])


def test_edge_check_leaves_out_only_the_file_the_whole_compile_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = protos_with(
        tmp_path,
        {
            "hostile/v1/reserved.proto": RESERVED,
            "importer.proto": IMPORTS_RESERVED,
            "zz/twin.proto": TWIN,
        },
    )
    assert main(["check", "--config", str(config_file(tmp_path, folder))]) == 1
    out, err = capsys.readouterr()
    assert KITCHEN_ROUTE.search(out)  # the good files are served
    assert "hostile.v1" not in out and "importer.v1" not in out
    problems = [line for line in err.splitlines() if line.startswith("problem: ")]
    assert (
        "problem: hostile/v1/reserved.proto:6:14: Field numbers 19000 through 19999 are "
        "reserved for the protocol buffer library implementation." in problems
    )
    assert "problem: importer.proto:4:1: imports 'hostile/v1/reserved.proto', which has errors" in (
        problems
    )
    assert any(
        p.startswith("problem: zz/twin.proto:3:9: ") and "already defined" in p for p in problems
    )
    assert not any(p.startswith("problem: edgetest/") for p in problems)  # nobody else blamed
    routes, count = routes_line(err)
    assert routes > 20 and count == len(problems) == 3


async def test_a_started_gateway_serves_the_rest_and_lists_the_file_at_fault(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    port, _ = kitchen_upstream
    folder = protos_with(
        tmp_path, {"hostile/v1/reserved.proto": RESERVED, "importer.proto": IMPORTS_RESERVED}
    )
    config = make_config(port, protos=folder, extra={"descriptors": {"watch": False}})
    async with run_gateway(config) as gateway, gateway.client() as client:
        served = await client.get("/v1/kitchen/still-here")
        hostile = await client.post("/hostile.v1.Hostile/Get", json={})
        status = (await client.get("/admin/descriptors")).json()
    assert served.status_code == 200 and served.json() == {"stringValue": "still-here"}
    assert hostile.status_code == 404
    assert "edgetest/v1/kitchen.proto" in status["files"]
    assert "hostile/v1/reserved.proto" not in status["files"]
    assert any(
        p.startswith("hostile/v1/reserved.proto:6:14: Field numbers") for p in status["problems"]
    )
    assert any(p.startswith("importer.proto:4:1: imports") for p in status["problems"])


def nested_bindings(depth: int) -> str:
    """A method whose HTTP rule nests ``additional_bindings`` ``depth`` deep."""
    rule = '{ get: "/v1/a" ' + 'additional_bindings { get: "/v1/b" ' * depth + "}" * depth + " }"
    return (
        'syntax = "proto3";\npackage crash.v1;\nimport "google/api/annotations.proto";\n'
        "message E {}\n"
        f"service Crash {{ rpc Get(E) returns (E) {{ option (google.api.http) = {rule}; }} }}\n"
    )


def test_a_proto_that_crashes_protoc_costs_only_itself(tmp_path: Path) -> None:
    folder = protos_with(
        tmp_path,
        {
            "aborts.proto": nested_bindings(150),  # protoc: Check failed, SIGABRT
            "overflows.proto": nested_bindings(20_000),  # protoc's parser: SIGSEGV
            "uses_aborts.proto": 'syntax = "proto3";\nimport "aborts.proto";\nmessage U {}\n',
        },
    )
    check = subprocess.run(
        [sys.executable, "-m", "edge.cli", "check", "--config", str(config_file(tmp_path, folder))],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert check.returncode == 1, check.stderr[-2000:]  # not -6 (SIGABRT) or -11 (SIGSEGV)
    assert KITCHEN_ROUTE.search(check.stdout)
    problems = [line for line in check.stderr.splitlines() if line.startswith("problem: ")]
    assert "problem: aborts.proto: protoc died compiling it (SIGABRT)" in problems
    assert "problem: overflows.proto: protoc died reading it (SIGSEGV)" in problems
    assert "problem: uses_aborts.proto:2:1: imports 'aborts.proto', which has errors" in problems
    assert "Traceback" not in check.stderr
    assert routes_line(check.stderr)[0] > 20


def message_chain(depth: int, *, ring: bool) -> str:
    lines = ['syntax = "proto3";', "package deep.v1;", 'import "google/api/annotations.proto";']
    lines += [f"message M{i} {{ M{i + 1} next = 1; string value = 2; }}" for i in range(depth)]
    lines.append(f"message M{depth} {{ {'M0 back = 1;' if ring else 'string value = 1;'} }}")
    lines.append(
        "service Deep { rpc Get(M0) returns (M0) "
        '{ option (google.api.http) = { post: "/v1/deep" body: "*" }; } }'
    )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("depth", [250, 600])
async def test_a_deep_chain_of_messages_is_served_and_documented(
    kitchen_upstream: Any, tmp_path: Path, depth: int
) -> None:
    port, _ = kitchen_upstream
    folder = protos_with(tmp_path, {"deep.proto": message_chain(depth, ring=False)})
    config = make_config(port, protos=folder, extra={"descriptors": {"watch": False}})
    async with run_gateway(config) as gateway, gateway.client() as client:
        document = await client.get("/openapi.json")
        status = (await client.get("/admin/descriptors")).json()
        served = await client.get("/v1/kitchen/deep-too")
    assert status["problems"] == []
    assert document.status_code == 200
    schemas = document.json()["components"]["schemas"]
    assert schemas["deep.v1.M0"]["properties"]["next"]["anyOf"][0] == {
        "$ref": "#/components/schemas/deep.v1.M1"
    }
    assert f"deep.v1.M{depth}" in schemas
    assert "/v1/deep" in document.json()["paths"]
    assert served.status_code == 200


def test_a_ring_of_600_messages_costs_only_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = protos_with(tmp_path, {"deep.proto": message_chain(600, ring=True)})
    assert main(["check", "--config", str(config_file(tmp_path, folder))]) == 1
    out, err = capsys.readouterr()
    assert KITCHEN_ROUTE.search(out) and "/v1/deep  ->" not in out
    assert (
        "problem: deep.proto:604:1: message deep.v1.M600 holds a ring of more than 100 message "
        "types (or one that does); the file is left out" in err
    )


def test_a_sidecar_of_20000_nested_brackets_is_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = protos_with(tmp_path, {})
    (folder / "deep.edge.yaml").write_text("methods: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert main(["check", "--config", str(config_file(tmp_path, folder))]) == 1
    out, err = capsys.readouterr()
    assert KITCHEN_ROUTE.search(out)
    (problem,) = [line for line in err.splitlines() if line.startswith("problem: ")]
    assert problem.startswith("problem: deep.edge.yaml:1:")
    assert problem.endswith(": nested deeper than 32 levels")
