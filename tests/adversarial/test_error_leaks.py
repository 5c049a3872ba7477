"""Errors tell clients what went wrong, and keep addresses and exception text in the log."""

from __future__ import annotations

import logging
import re

import pytest
from conftest import make_config, run_gateway
from http_upstream import closed_port

from edge.errors import UpstreamStatus, scrub_addresses

pytestmark = pytest.mark.e2e

# an address, a port, a Python exception's name or repr
LEAKS = re.compile(r"127\.0\.0\.1|ipv4:|\d{4,5}\b|[A-Z]\w+Error\b|Traceback|\('|errno")


@pytest.mark.parametrize("client", ["lean", "grpcio"])
async def test_a_dead_grpc_upstream_is_503_without_its_address(
    client: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = closed_port()
    config = make_config(
        dead,
        extra={"upstreams": {"kitchen": {"address": f"127.0.0.1:{dead}", "client": client}}},
    )
    with caplog.at_level(logging.WARNING, logger="edge"):
        async with run_gateway(config) as gateway, gateway.client() as http:
            answer = await http.get("/v1/kitchen/x", headers={"x-request-id": "req-leak-1"})
            ready = await http.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["code"] == 14
    assert not LEAKS.search(body["message"]), body
    assert str(dead) not in ready.text
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert str(dead) in logged  # the operator still learns where it failed


async def test_a_dead_http_upstream_is_502_without_its_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = closed_port()
    config = make_config(
        closed_port(),
        extra={
            "http_upstreams": {"web": {"url": f"http://127.0.0.1:{dead}"}},
            "proxy_routes": [{"prefix": "/api", "upstream": "web"}],
        },
    )
    with caplog.at_level(logging.WARNING, logger="edge"):
        async with run_gateway(config) as gateway, gateway.client() as http:
            answer = await http.get("/api/x", headers={"x-request-id": "req-leak-2"})
    assert answer.status_code == 502
    body = answer.json()
    assert body["code"] == 14
    assert body["message"] == "HTTP upstream 'web' could not be reached"
    logged = [r.getMessage() for r in caplog.records if "req-leak-2" in r.getMessage()]
    assert logged and str(dead) in logged[0]


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:50051: "
            "Failed to connect to remote host: Connection refused",
            "failed to connect to all addresses; last error: UNKNOWN: <upstream>: "
            "Failed to connect to remote host: Connection refused",
        ),
        ("connect to 10.1.2.3:8443 failed", "connect to <upstream> failed"),
        ("connect to [::1]:50051 failed", "connect to <upstream> failed"),
        ("dns:///books.internal:443 unreachable", "<upstream> unreachable"),
        ("unix:/run/grpc.sock refused", "<upstream> refused"),
        ("books.svc.cluster.local:50051 refused", "<upstream> refused"),
        ("book 'shelves/1/books/2' not found", "book 'shelves/1/books/2' not found"),
        ("version 1.2 is not 1.3", "version 1.2 is not 1.3"),
    ],
)
def test_addresses_are_scrubbed_from_upstream_statuses(text: str, scrubbed: str) -> None:
    assert scrub_addresses(text) == scrubbed
    status = UpstreamStatus(14, text)
    assert status.message == scrubbed
    assert status.internal == (text if scrubbed != text else None)
