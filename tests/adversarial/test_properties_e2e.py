"""Property tests against the running gateway: arbitrary paths and headers, byte for byte.

One gateway (tests/recording.py: a public ``/api``, a protected ``/api/admin``, and the
kitchen gRPC upstream) runs on its own event loop in a thread for the whole module, and
hypothesis sends it raw HTTP/1.1 requests. For every request:

- the answer is never a 5xx (an exception that escaped, a crashed worker);
- a request without credentials never reaches the protected prefix: whatever the
  recording upstream received, read the way a lenient upstream would read it (every
  escape decoded, again and again, ``\\`` as ``/``, ``;`` parameters dropped, dot segments
  resolved, slashes merged), does not lie under ``/api/admin``;
- with a valid token, the upstream sees exactly one claim header value, the verified one,
  whatever spellings of it the client added.

Not modelled: an upstream that folds case (``/API/ADMIN``); routes are case-sensitive,
as in Envoy and nginx.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recording import Edge, start_edge, token

pytestmark = pytest.mark.e2e

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Quiet(Edge):
    """The running gateway, with a short repr: hypothesis prints a failing example's args."""

    def __repr__(self) -> str:
        return "<edge>"


@pytest.fixture(scope="module")
def edge() -> Iterator[Edge]:
    """The gateway, served on a loop of its own so that sync hypothesis tests can call it."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    held: dict[str, object] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        held["stop"] = stop
        async with start_edge() as running:
            held["edge"] = running
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the gateway did not start"
    try:
        running: Edge = held["edge"]  # type: ignore[assignment]
        yield Quiet(running.gateway, running.http, running.kitchen)
    finally:
        loop.call_soon_threadsafe(held["stop"].set)  # type: ignore[attr-defined]
        thread.join(30)
        loop.close()


def send(port: int, path: bytes, headers: list[tuple[bytes, bytes]] = ()) -> int:  # type: ignore[assignment]
    """One request exactly as given; the status code (0 when the connection just closed)."""
    lines = [b"GET " + path + b" HTTP/1.1", b"Host: edge.test", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    return int(match.group(1)) if match else 0


def lenient_reading(raw: str) -> str:
    """The path a lenient upstream could act on: everything an escape or a rule can hide."""
    path = raw.split("?", 1)[0]
    for _ in range(4):  # double (and triple) encoding
        path = unquote(path, errors="replace")
    path = path.replace("\\", "/")
    segments: list[str] = []
    for segment in path.split("/"):
        segment = segment.split(";", 1)[0]  # Tomcat-style path parameters
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def under_admin(path: str) -> bool:
    return path == "/api/admin" or path.startswith("/api/admin/")


SEGMENTS = st.sampled_from(
    [
        "api",
        "admin",
        "x",
        "",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        ".%2e",
        "%61dmin",
        "adm%69n",
        "%2561dmin",
        "admin%2F",
        "admin%2fx",
        "%5C",
        "admin%5Cx",
        "\\",
        "admin;x=1",
        ";",
        "%3B",
        "%00",
        "%",
        "%zz",
        "%25",
        "%252F",
        "%c0%ae",
        "~",
        "admin?",
        "admin#",
        "api%2Fadmin",
        "%2Fapi%2Fadmin",
    ]
) | st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=6)

PATHS = st.lists(SEGMENTS, min_size=1, max_size=7).map(lambda parts: "/" + "/".join(parts))


@PROPERTY_SETTINGS
@given(path=PATHS)
def test_no_path_without_a_token_reaches_the_protected_prefix(edge: Edge, path: str) -> None:
    before = len(edge.http.requests)
    status = send(edge.gateway.port, path.encode("latin-1"))
    assert status == 0 or status < 500, f"{path!r} answered {status}"
    for _, received, _ in edge.http.requests[before:]:
        assert not under_admin(lenient_reading(received)), (
            f"{path!r} reached the upstream as {received!r} without a token"
        )


CLAIM_SPELLINGS = st.sampled_from(
    [
        "X-User-Id",
        "x-user-id",
        "X_USER_ID",
        "x_user-id",
        "X-User_Id",
        "Grpc-Metadata-X-User-Id",
        "grpc-metadata-x_user_id",
        "X-User-Id ",
        "X-USER-ID",
    ]
)
TOKEN_CHARS = st.characters(
    codec="ascii", categories=["L", "N"], include_characters="!#$%&'*+-.^_`|~"
)
NAMES = CLAIM_SPELLINGS | st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=20)
VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
HEADERS = st.lists(st.tuples(NAMES, VALUES), max_size=8)


def encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.strip().encode()) for name, value in headers]


@PROPERTY_SETTINGS
@given(headers=HEADERS)
def test_arbitrary_headers_never_open_the_protected_prefix(
    edge: Edge, headers: list[tuple[str, str]]
) -> None:
    before = len(edge.http.requests)
    status = send(edge.gateway.port, b"/api/admin/x", encoded(headers))
    assert status in (400, 401), f"{headers!r} answered {status}"
    assert edge.http.requests[before:] == []


@PROPERTY_SETTINGS
@given(headers=HEADERS)
def test_the_upstream_sees_only_the_verified_claim_whatever_is_added(
    edge: Edge, headers: list[tuple[str, str]]
) -> None:
    before = len(edge.http.requests)
    sent = [*encoded(headers), (b"Authorization", f"Bearer {token()}".encode())]
    status = send(edge.gateway.port, b"/api/admin/x", sent)
    assert status == 0 or status < 500, f"{headers!r} answered {status}"
    if status != 200:
        assert edge.http.requests[before:] == []  # refused (a malformed header): not sent
        return
    [(_, _, received)] = edge.http.requests[before:]
    claims = [
        value
        for name, value in received
        if name.lower().replace("_", "-") in ("x-user-id", "grpc-metadata-x-user-id")
    ]
    assert claims == ["alice"], f"{headers!r} reached the upstream as {claims!r}"
