"""Hostile reflection: what an upstream sends about itself costs at most that upstream.

An upstream with ``reflection: true`` chooses the descriptors the gateway loads. It may
send 40 MB of them, or 5,001 files, or an import chain 1,500 files deep, or a copy of a
symbol the operator's protos on disk define. The gateway takes at most
``MAX_REFLECTED_BYTES`` and ``MAX_REFLECTED_FILES`` from one upstream (a problem naming it
beyond), walks any depth of imports without recursion, and leaves a clashing reflected file
out alone: the disk wins, the problem names the upstream and the symbol, and reloads of
everything else still apply.

The reflecting upstream here is a fake answering from descriptors the test makes
(grpcio's own reflection service recurses over imports, and could not serve the chain).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import TEST_PROTOS, make_config, run_gateway
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from edge.descriptors.reflection import LAST_GOOD, MAX_REFLECTED_BYTES, MAX_REFLECTED_FILES

pytestmark = pytest.mark.e2e

FD = descriptor_pb2.FieldDescriptorProto
File = descriptor_pb2.FileDescriptorProto


@pytest.fixture(autouse=True)
def fresh_reflection_cache() -> Iterator[None]:
    LAST_GOOD.clear()
    yield
    LAST_GOOD.clear()


def proto(
    name: str, package: str, *, imports: Sequence[str] = (), service: str = "", comment: str = ""
) -> File:
    """A small file: one message ``Msg``, maybe a service on it, maybe a long comment."""
    file = File(name=name, package=package, dependency=list(imports), syntax="proto3")
    file.message_type.add(name="Msg").field.add(
        name="value", number=1, type=FD.TYPE_STRING, label=FD.LABEL_OPTIONAL
    )
    if service:
        file.service.add(name=service).method.add(
            name="Get", input_type=f".{package}.Msg", output_type=f".{package}.Msg"
        )
    if comment:
        file.source_code_info.location.add(path=[4, 0], leading_comments=comment)
    return file


class FakeReflection:
    """grpc.reflection.v1alpha answering from ``files``, which the test may swap."""

    def __init__(self) -> None:
        self.files: dict[str, File] = {}
        self.answered = 0  # responses handed to grpc so far

    def serve(self, files: Sequence[File]) -> None:
        self.files = {file.name: file for file in files}

    def services(self) -> list[str]:
        return [
            f"{file.package}.{service.name}"
            for file in self.files.values()
            for service in file.service
        ]

    def closure(self, name: str) -> list[bytes]:
        """The file and everything it imports, without recursion."""
        found: dict[str, bytes] = {}
        pending = [name]
        while pending:
            current = pending.pop()
            if current in found or current not in self.files:
                continue
            found[current] = self.files[current].SerializeToString()
            pending.extend(self.files[current].dependency)
        return list(found.values())

    def answer(self, request: Any) -> Any:
        response = reflection_pb2.ServerReflectionResponse(original_request=request)
        kind = request.WhichOneof("message_request")
        if kind == "list_services":
            for service in self.services():
                response.list_services_response.service.add(name=service)
        elif kind == "file_containing_symbol":
            owner = next(
                (
                    file.name
                    for file in self.files.values()
                    for service in file.service
                    if f"{file.package}.{service.name}" == request.file_containing_symbol
                ),
                None,
            )
            if owner is None:
                response.error_response.error_code = grpc.StatusCode.NOT_FOUND.value[0]
            else:
                response.file_descriptor_response.file_descriptor_proto.extend(self.closure(owner))
        elif kind == "file_by_filename" and request.file_by_filename in self.files:
            response.file_descriptor_response.file_descriptor_proto.append(
                self.files[request.file_by_filename].SerializeToString()
            )
        else:
            response.error_response.error_code = grpc.StatusCode.NOT_FOUND.value[0]
        return response

    def info(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        for request in requests:
            self.answered += 1
            yield self.answer(request)


@contextlib.contextmanager
def fake_upstream(files: Sequence[File]) -> Iterator[tuple[int, FakeReflection]]:
    """A thread-pool server (the gateway's first load runs before the test's loop can
    answer anything) with the fake reflection service under v1 and v1alpha."""
    fake = FakeReflection()
    fake.serve(files)
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    handler = grpc.stream_stream_rpc_method_handler(
        fake.info,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for service in (
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ):
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {"ServerReflectionInfo": handler}),)
        )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, fake
    finally:
        server.stop(None).wait()


def config_with(kitchen_port: int, reflecting_port: int, folder: Path = TEST_PROTOS) -> Any:
    return make_config(
        kitchen_port,
        protos=folder,
        extra={
            "descriptors": {"watch": False},
            "upstreams": {"fake": {"address": f"127.0.0.1:{reflecting_port}", "reflection": True}},
        },
    )


async def test_more_than_max_bytes_is_refused_while_it_streams_in(kitchen_upstream: Any) -> None:
    port, _ = kitchen_upstream
    megabyte = " " + "x" * (1024 * 1024)
    count = 2 * MAX_REFLECTED_BYTES // (1024 * 1024)  # 64 files of 1 MiB each: 64 MiB
    files = [
        proto(f"big{i}.proto", f"big{i}", service="Big", comment=megabyte) for i in range(count)
    ]
    with fake_upstream(files) as (fake_port, fake):
        async with run_gateway(config_with(port, fake_port)) as gateway, gateway.client() as client:
            status = (await client.get("/admin/descriptors")).json()
            served = await client.get("/v1/kitchen/still-here")
    assert served.status_code == 200  # the disk's files are served
    assert status["problems"] == [
        "reflection from upstream fake failed: its descriptors exceed 32 MiB "
        "(MAX_REFLECTED_BYTES); none of them is used"
    ]
    assert not any(s.startswith("big") for s in status["services"])
    # abandoned mid-stream: 33 answers pass the bound, a few more were in flight
    assert fake.answered < count * 3 // 4


async def test_more_than_max_files_is_refused(kitchen_upstream: Any) -> None:
    port, _ = kitchen_upstream
    leaves = [proto(f"leaf{i}.proto", f"leaf{i}") for i in range(MAX_REFLECTED_FILES)]
    top = proto("top.proto", "top", imports=[leaf.name for leaf in leaves], service="Top")
    with fake_upstream([top, *leaves]) as (fake_port, _):
        async with run_gateway(config_with(port, fake_port)) as gateway, gateway.client() as client:
            status = (await client.get("/admin/descriptors")).json()
            served = await client.get("/v1/kitchen/still-here")
    assert served.status_code == 200
    assert status["problems"] == [
        f"reflection from upstream fake failed: it sends more than {MAX_REFLECTED_FILES} files "
        "(MAX_REFLECTED_FILES); none of them is used"
    ]


async def test_an_import_chain_of_1500_files_is_loaded_without_recursion(
    kitchen_upstream: Any,
) -> None:
    port, _ = kitchen_upstream
    files = [
        proto(
            f"chain/c{i}.proto",
            f"chain{i}",
            imports=[f"chain/c{i + 1}.proto"] if i < 1499 else [],
            service="Chain" if i == 0 else "",
        )
        for i in range(1500)
    ]
    with fake_upstream(files) as (fake_port, _):
        async with run_gateway(config_with(port, fake_port)) as gateway, gateway.client() as client:
            status = (await client.get("/admin/descriptors")).json()
            routes = (await client.get("/admin/routes")).json()
    assert status["problems"] == []
    assert "chain/c1499.proto" in status["files"]
    assert any(r["rpc"] == "chain0.Chain.Get" and r["upstream"] == "fake" for r in routes)


async def test_a_reflected_copy_of_a_symbol_on_disk_does_not_freeze_reloads(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    port, _ = kitchen_upstream
    folder = tmp_path / "protos"
    shutil.copytree(TEST_PROTOS, folder)
    greeter = proto("greet.proto", "greet.v1", service="Greeter")
    twin = proto("copy/kitchen.proto", "edgetest.v1", service="KitchenTwin")
    twin.message_type[0].name = "Kitchen"  # the disk's edgetest.v1.Kitchen, again
    twin.service[0].method[0].input_type = twin.service[0].method[0].output_type = (
        ".edgetest.v1.Kitchen"
    )
    with fake_upstream([greeter]) as (fake_port, fake):
        async with run_gateway(config_with(port, fake_port, folder)) as gateway:
            async with gateway.client() as client:
                assert (await client.get("/admin/descriptors")).json()["problems"] == []
                fake.serve([greeter, twin])  # the upstream now sends the clash
                clashing = await client.post("/admin/reload")
                (folder / "extra.proto").write_text(
                    'syntax = "proto3";\npackage extra.v1;\n'
                    "message E { string e = 1; }\nservice Extra { rpc Get(E) returns (E); }\n"
                )
                later = await client.post("/admin/reload")  # an unrelated change on disk
                status = (await client.get("/admin/descriptors")).json()
                served = await client.get("/v1/kitchen/still-here")
    assert clashing.status_code == 200, clashing.json()
    assert later.status_code == 200, later.json()
    assert "extra.v1.Extra" in status["services"]
    assert "greet.v1.Greeter" in status["services"]
    assert "edgetest.v1.KitchenTwin" not in status["services"]
    assert status["problems"] == [
        "reflection from upstream fake: copy/kitchen.proto: defines edgetest.v1.Kitchen, "
        "already defined by edgetest/v1/kitchen.proto on disk; edgetest/v1/kitchen.proto is used"
    ]
    assert served.status_code == 200 and served.json() == {"stringValue": "still-here"}
