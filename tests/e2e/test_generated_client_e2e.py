"""A Python client generated from the demo's own /openapi.json gets the README's answers.

``openapi-python-client`` generates a client from the document the running gateway serves,
as a new user would; the test then takes the README's "Try the demo" curl lines, finds for
each unary one the documented operation its method and URL match, and makes the same call
through the generated client: path parameters from the URL (``/v1/shelves/1/books/2`` is
``get_book(shelf="1", book="2")``), query parameters as keyword arguments, the body through
the generated model. Two demo stacks, fresh and alike, answer: one the curl lines sent as
written, the other the client. Each answer (status and JSON, times aside) must be the same.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from readme_curl import (
    README_OPERATIONS,
    REFUSED,
    find_operation,
    importable,
    same,
    send_as_curl,
    snake,
    two_demos,
    unary_requests,
)

pytestmark = pytest.mark.e2e
PACKAGE = "library_client"


def _generate(document: dict[str, Any], folder: Path) -> None:
    spec = folder / "openapi.json"
    spec.write_text(json.dumps(document))
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec),
         "--meta", "none", "--output-path", str(folder / PACKAGE)],
        capture_output=True, text=True, timeout=60, check=False, cwd=folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def _client_call(
    package: Any, document: dict[str, Any], method: str, url: str, data: str | None
) -> tuple[Any, dict[str, Any]]:
    parts = urlsplit(url)
    operation_id, path_values = find_operation(document, method, parts.path)
    module = importlib.import_module(f"{PACKAGE}.api.library_service.{snake(operation_id)}")
    signature = inspect.signature(module.sync_detailed)
    kwargs: dict[str, Any] = {snake(k): v for k, v in path_values.items()}
    for key, value in parse_qsl(parts.query):
        kwargs[snake(key)] = value
    for name, value in list(kwargs.items()):  # an enum query parameter takes the enum
        annotation = str(signature.parameters[name].annotation)
        enum_name = re.search(r"(\w+GenreType0)", annotation)
        if enum_name:
            models = importlib.import_module(f"{PACKAGE}.models")
            kwargs[name] = getattr(models, enum_name.group(1))(value)
    if data is not None:
        models = importlib.import_module(f"{PACKAGE}.models")
        annotation = str(signature.parameters["body"].annotation)
        names = [part.strip().rpartition(".")[2] for part in annotation.split("|")]
        model = next(getattr(models, name) for name in names if hasattr(models, name))
        kwargs["body"] = model.from_dict(json.loads(data))
    return module, kwargs


async def test_a_generated_client_gets_the_readme_answers(tmp_path: Path) -> None:
    async with two_demos() as (by_curl, by_client, document):
        _generate(document, tmp_path)
        with importable(tmp_path, PACKAGE):
            package = importlib.import_module(PACKAGE)
            client = package.Client(base_url=by_client.base_url, raise_on_unexpected_status=False)
            called: list[str] = []
            async with client, by_curl.client() as curl:
                for request in unary_requests():
                    method, url, data = request.method, request.url, request.data
                    try:
                        module, kwargs = _client_call(package, document, method, url, data)
                    except LookupError:
                        path = urlsplit(url).path
                        assert (method, path) == REFUSED, (method, path)
                        continue  # the 405 line: no operation to call
                    target = url.split("localhost:8080", 1)[1]
                    expected = await send_as_curl(curl, request)
                    got = await _call(module, client, kwargs)
                    called.append(module.__name__.rpartition(".")[2])
                    assert got.status_code == expected.status_code, (target, got.content)
                    if not expected.headers["content-type"].startswith("application/json"):
                        assert got.content == expected.content, target  # google.api.HttpBody
                        continue
                    assert same(json.loads(got.content)) == same(expected.json()), target
                    if got.status_code == 200 and got.parsed is not None:
                        parsed = got.parsed
                        if hasattr(parsed, "to_dict"):  # the model reads the answer back
                            assert same(parsed.to_dict()) == same(expected.json()), target
    assert set(called) >= README_OPERATIONS


async def _call(module: Any, client: Any, kwargs: dict[str, Any]) -> Any:
    response = await module.asyncio_detailed(client=client, **kwargs)
    assert isinstance(response.content, bytes)
    return response
