"""The README's "Try the demo" curl lines, read as requests, for tests that replay them.

Generated clients (openapi-python-client, openapi-generator) are checked by making each unary
curl line's call through the client and comparing the answer with the curl line's own. The
reading lives here once so every such test replays the same lines the same way: a curl line
the README gains is a call every generated client must make.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from conftest import DEMO_PROTOS, ROOT, Gateway, make_config, run_gateway

from edge.demo.library import start_library

_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
STREAMING = (":stream", ":import", ":discuss", ":download")
REFUSED = ("PUT", "/v1/shelves/1/books")  # the 405 line: no operation to call


@dataclass(frozen=True)
class CurlRequest:
    """One curl line as the request it sends."""

    method: str
    url: str
    headers: dict[str, str]
    data: str | None


@asynccontextmanager
async def demo_stack() -> AsyncIterator[Gateway]:
    """A fresh demo (library upstream and gateway), as `scripts/demo` runs it."""
    server, port = await start_library()
    try:
        async with run_gateway(make_config(port, protos=DEMO_PROTOS)) as gateway:
            yield gateway
    finally:
        await server.stop(grace=None)


def curl_lines() -> Iterator[list[str]]:
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


def curl_request(words: list[str]) -> CurlRequest:
    """What a curl command line sends (the options the README uses)."""
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
    return CurlRequest(method, url, headers, data)


def unary_requests() -> Iterator[CurlRequest]:
    """The curl lines a generated client can send: unary, JSON, not the Connect protocol."""
    for words in curl_lines():
        request = curl_request(words)
        if urlsplit(request.url).path.endswith(STREAMING):
            continue
        if "connect-protocol-version" in request.headers:
            continue
        if request.data is not None:
            try:
                json.loads(request.data)
            except ValueError:
                continue  # malformed JSON: no client sends that
        yield request


async def send_as_curl(http: httpx.AsyncClient, request: CurlRequest) -> httpx.Response:
    """The curl line's request, sent as curl sends it, to the gateway ``http`` points at."""
    parts = urlsplit(request.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = dict(request.headers)
    if request.data is not None:  # what curl sends for -d without a content type
        headers.setdefault("content-type", "application/x-www-form-urlencoded")
    return await http.request(request.method, target, content=request.data, headers=headers)


def same(value: Any) -> Any:
    """The answer with its times (create, publish: now) made comparable."""
    if isinstance(value, dict):
        return {k: same(v) for k, v in value.items()}
    if isinstance(value, list):
        return [same(v) for v in value]
    if isinstance(value, str) and _TIME.match(value):
        return "<time>"
    return value


def find_operation(document: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, str]]:
    """The documented operation a request's method and path match, with its path values.

    Raises ``LookupError`` when no operation matches (the README's 405 line).
    """
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


def snake(name: str) -> str:
    """``pageSize`` as Python generators name it: ``page_size``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


# the README's unary operations every generated client must have called
README_OPERATIONS = frozenset(
    {
        "list_books", "get_book", "create_book", "update_book", "publish_book",
        "get_shelf_stats", "delete_book", "export_shelf",
    }
)  # fmt: skip


@asynccontextmanager
async def two_demos() -> AsyncIterator[tuple[Gateway, Gateway, dict[str, Any]]]:
    """Two fresh demos (one for curl's answers, one for the client's: each call changes
    the shelf it runs on) and the OpenAPI document the client is generated from."""
    async with demo_stack() as by_curl, demo_stack() as by_client:
        async with by_client.client() as http:
            document = (await http.get("/openapi.json")).json()
        yield by_curl, by_client, document


@contextmanager
def importable(folder: Path, package: str) -> Iterator[None]:
    """``package`` generated into ``folder``, importable here and forgotten afterwards."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
