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
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import DEMO_PROTOS, ROOT, Gateway, make_config, run_gateway

from edge.demo.library import start_library

pytestmark = pytest.mark.e2e
PACKAGE = "library_client"
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_STREAMING = (":stream", ":import", ":discuss", ":download")


@asynccontextmanager
async def _demo_stack() -> AsyncIterator[Gateway]:
    server, port = await start_library()
    try:
        async with run_gateway(make_config(port, protos=DEMO_PROTOS)) as gateway:
            yield gateway
    finally:
        await server.stop(grace=None)


def _curl_lines() -> Iterator[list[str]]:
    """The README's demo curl lines, split as the shell would, one command each."""
    readme = (ROOT / "README.md").read_text()
    heading = re.search(r"^#+ Try the demo$", readme, re.M)
    assert heading is not None
    block = re.search(r"```sh\n(.*?)```", readme[heading.end() :], re.S)
    assert block is not None
    pending = ""
    for line in block.group(1).replace("\\\n", " ").splitlines():
        pending += line + "\n"
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quoted body goes on over the next line
            continue
        pending = ""
        if "|" in words:  # what the output is piped to is not part of the request
            words = words[: words.index("|")]
        if words and words[0] == "curl":
            yield words


def _request(words: list[str]) -> tuple[str, str, dict[str, str], str | None]:
    method, data, headers, url = "GET", None, {}, ""
    args = iter(words[1:])
    for word in args:
        if word == "-X":
            method = next(args)
        elif word in ("-d", "--data-binary"):
            data = next(args)
            method = "POST" if method == "GET" else method
        elif word == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip().lower()] = value.strip()
        elif not word.startswith("-"):
            url = word if "://" in word else "http://" + word
    return method, url, headers, data


def _same(value: Any) -> Any:
    """The answer with its times (create, publish: now) made comparable."""
    if isinstance(value, dict):
        return {k: _same(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_same(v) for v in value]
    if isinstance(value, str) and _TIME.match(value):
        return "<time>"
    return value


def _generate(document: dict[str, Any], folder: Path) -> None:
    spec = folder / "openapi.json"
    spec.write_text(json.dumps(document))
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec),
         "--meta", "none", "--output-path", str(folder / PACKAGE)],
        capture_output=True, text=True, timeout=60, check=False, cwd=folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _operation(document: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, str]]:
    for template, item in document["paths"].items():
        names = re.findall(r"\{([^}]*)\}", template)
        pieces = re.split(r"\{[^}]*\}", template)
        regex = "([^/]+)".join(re.escape(p) for p in pieces)
        found = re.fullmatch(regex, path)
        if found and method.lower() in item:
            return item[method.lower()]["operationId"], dict(
                zip(names, found.groups(), strict=True)
            )
    raise LookupError(f"{method} {path} is not documented")


def _client_call(
    package: Any, document: dict[str, Any], method: str, url: str, data: str | None
) -> tuple[Any, dict[str, Any]]:
    parts = urlsplit(url)
    operation_id, path_values = _operation(document, method, parts.path)
    module = importlib.import_module(f"{PACKAGE}.api.library_service.{_snake(operation_id)}")
    signature = inspect.signature(module.sync_detailed)
    kwargs: dict[str, Any] = {_snake(k): v for k, v in path_values.items()}
    for key, value in parse_qsl(parts.query):
        kwargs[_snake(key)] = value
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
    async with AsyncExitStack() as stack:
        by_curl = await stack.enter_async_context(_demo_stack())
        by_client = await stack.enter_async_context(_demo_stack())
        async with by_client.client() as http:
            document = (await http.get("/openapi.json")).json()
        _generate(document, tmp_path)
        sys.path.insert(0, str(tmp_path))
        try:
            package = importlib.import_module(PACKAGE)
            client = package.Client(base_url=by_client.base_url, raise_on_unexpected_status=False)
            called: list[str] = []
            async with client, by_curl.client() as curl:
                for words in _curl_lines():
                    method, url, headers, data = _request(words)
                    path = urlsplit(url).path
                    if path.endswith(_STREAMING) or "connect-protocol-version" in headers:
                        continue
                    if data is not None:
                        try:
                            json.loads(data)
                        except ValueError:
                            continue  # malformed JSON: no client sends that
                    try:
                        module, kwargs = _client_call(package, document, method, url, data)
                    except LookupError:
                        assert (method, path) == ("PUT", "/v1/shelves/1/books"), (method, path)
                        continue  # the 405 line: no operation to call
                    target = url.split("localhost:8080", 1)[1]
                    if data is not None:  # what curl sends for -d without a content type
                        headers.setdefault("content-type", "application/x-www-form-urlencoded")
                    expected = await curl.request(method, target, content=data, headers=headers)
                    got = await _call(module, client, kwargs)
                    called.append(module.__name__.rpartition(".")[2])
                    assert got.status_code == expected.status_code, (target, got.content)
                    if not expected.headers["content-type"].startswith("application/json"):
                        assert got.content == expected.content, target  # google.api.HttpBody
                        continue
                    assert _same(json.loads(got.content)) == _same(expected.json()), target
                    if got.status_code == 200 and got.parsed is not None:
                        parsed = got.parsed
                        if hasattr(parsed, "to_dict"):  # the model reads the answer back
                            assert _same(parsed.to_dict()) == _same(expected.json()), target
        finally:
            sys.path.remove(str(tmp_path))
            for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
                del sys.modules[name]
    assert set(called) >= {
        "list_books", "get_book", "create_book", "update_book", "publish_book",
        "get_shelf_stats", "delete_book", "export_shelf",
    }  # fmt: skip


async def _call(module: Any, client: Any, kwargs: dict[str, Any]) -> Any:
    response = await module.asyncio_detailed(client=client, **kwargs)
    assert isinstance(response.content, bytes)
    return response
