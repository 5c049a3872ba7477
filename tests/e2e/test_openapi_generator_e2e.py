"""openapi-generator's Python client, made from the demo's /openapi.json, gets the README's answers.

The second generator after ``openapi-python-client`` (tests/e2e/test_generated_client_e2e.py):
the OpenAPI Generator project's ``python`` generator, the one most teams reach for, run from
the jar the PyPI package ``openapi-generator-cli`` bundles. It reads the document in its own
way (pydantic models with strict types, every ``$ref`` and ``anyOf`` resolved by its Java
parser), so a document both generate from and call through is not written for one tool.
Each unary README curl line (tests/readme_curl.py) is sent as written to one fresh demo and
made through the generated client against another: query values typed as the document says
(``pageSize=1`` is the integer 1), the body built as the generated model. Status and JSON
(times aside) must be the same, and a 200 must read back through the generated model.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.resources
import inspect
import json
import shutil
import subprocess
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from readme_curl import (
    README_OPERATIONS,
    REFUSED,
    CurlRequest,
    find_operation,
    importable,
    same,
    send_as_curl,
    snake,
    two_demos,
    unary_requests,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("java") is None, reason="openapi-generator needs java"),
]
PACKAGE = "library_oag"
GENERATE_SECONDS = 60  # one JVM run: about 3 s here


def _generate(document: dict[str, Any], folder: Path) -> None:
    """Run the bundled jar as ``openapi-generator-cli generate`` would; no docs, no tests."""
    spec = folder / "openapi.json"
    spec.write_text(json.dumps(document))
    jar = importlib.resources.files("openapi_generator_cli") / "openapi-generator.jar"
    java = shutil.which("java")
    assert java is not None
    started = time.monotonic()
    result = subprocess.run(
        [java, "-jar", str(jar), "generate", "--input-spec", str(spec),
         "--generator-name", "python", "--output", str(folder / "out"),
         "--package-name", PACKAGE,
         "--global-property", "apiDocs=false,modelDocs=false,apiTests=false,modelTests=false"],
        capture_output=True, text=True, timeout=GENERATE_SECONDS * 2, check=False, cwd=folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert time.monotonic() - started < GENERATE_SECONDS


def _typed(schema: dict[str, Any], value: str) -> Any:
    """A query value as the document's schema types it (strict pydantic takes no "1")."""
    kind = schema.get("type")
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if kind == "boolean":
        return value == "true"
    return value


def _client_call(
    api: Any, document: dict[str, Any], request: CurlRequest
) -> tuple[Any, dict[str, Any]]:
    parts = urlsplit(request.url)
    operation_id, path_values = find_operation(document, request.method, parts.path)
    method = getattr(api, snake(operation_id) + "_with_http_info")
    verb = request.method.lower()
    operation = next(
        item[verb]
        for item in document["paths"].values()
        if item.get(verb, {}).get("operationId") == operation_id
    )
    schemas = {p["name"]: p["schema"] for p in operation.get("parameters", [])}
    kwargs: dict[str, Any] = {snake(k): v for k, v in path_values.items()}
    for key, value in parse_qsl(parts.query):
        schema = schemas[key]
        if "$ref" in schema:
            name = schema["$ref"].rpartition("/")[2]
            schema = document["components"]["schemas"][name]
        kwargs[snake(key)] = _typed(schema, value)
    if request.data is not None:
        signature = inspect.signature(method)
        free = [n for n in signature.parameters if n not in kwargs and not n.startswith("_")]
        body = next(n for n in free if n not in {snake(k) for k in schemas})
        models = importlib.import_module(f"{PACKAGE}.models")
        annotation = str(signature.parameters[body].annotation)
        model = next(
            getattr(models, name)
            for name in dir(models)
            if not name.startswith("_") and f".{name}]" in annotation
        )
        data = json.loads(request.data)
        kwargs[body] = _only_given(model.from_dict(data), data)
    return method, kwargs


def _only_given(model: Any, data: dict[str, Any]) -> Any:
    """The model as a user writes it, ``Book(title=...)``: only the fields given are sent.

    The generated ``from_dict`` sets every property, absent ones to None, and since the
    document lets every field be null (proto3 JSON reads null as the default) the model
    sends them all as null; a PATCH without ``updateMask`` would then clear each of them
    (the gateway's mask, like grpc-gateway's, is the body's keys).
    """
    given = {}
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        if key in data:
            value = getattr(model, name)
            if hasattr(type(value), "model_fields") and isinstance(data[key], dict):
                value = _only_given(value, data[key])
            given[name] = value
    return type(model)(**given)


def _answer(method: Any, kwargs: dict[str, Any]) -> tuple[int, bytes, Any]:
    """Status, raw body and the generated model's reading of it (None for an error)."""
    exceptions = importlib.import_module(f"{PACKAGE}.exceptions")
    try:
        response = method(**kwargs)
    except exceptions.ApiException as error:
        return error.status, (error.body or "").encode(), None
    return response.status_code, response.raw_data, response.data


def _unset(value: Any) -> Any:
    """The model's dict without its nulls.

    The generated ``from_dict`` names every property, so ``to_dict`` writes each absent
    nullable one back as null; proto3 JSON reads a null field as an absent one.
    """
    if isinstance(value, dict):
        return {k: _unset(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_unset(v) for v in value]
    return value


async def test_an_openapi_generator_client_gets_the_readme_answers(tmp_path: Path) -> None:
    async with two_demos() as (by_curl, by_client, document), AsyncExitStack() as stack:
        _generate(document, tmp_path)
        with importable(tmp_path / "out", PACKAGE):
            package = importlib.import_module(PACKAGE)
            api_client = package.ApiClient(package.Configuration(host=by_client.base_url))
            # the client's own close is a no-op: its sockets go back with the pool
            stack.callback(api_client.rest_client.pool_manager.clear)
            api = package.LibraryServiceApi(api_client)
            called: list[str] = []
            async with by_curl.client() as curl:
                for request in unary_requests():
                    try:
                        method, kwargs = _client_call(api, document, request)
                    except LookupError:
                        path = urlsplit(request.url).path
                        assert (request.method, path) == REFUSED, (request.method, path)
                        continue
                    expected = await send_as_curl(curl, request)
                    # the generated client is blocking (urllib3): off the loop both demos run on
                    status, content, parsed = await asyncio.to_thread(_answer, method, kwargs)
                    called.append(method.__name__.removesuffix("_with_http_info"))
                    target = request.url
                    assert status == expected.status_code, (target, content)
                    if not expected.headers["content-type"].startswith("application/json"):
                        assert content == expected.content, target  # google.api.HttpBody
                        continue
                    assert same(json.loads(content)) == same(expected.json()), target
                    if status == 200 and hasattr(parsed, "to_dict"):
                        read_back = _unset(json.loads(parsed.to_json()))
                        assert same(read_back) == same(expected.json()), target
    assert set(called) >= README_OPERATIONS
