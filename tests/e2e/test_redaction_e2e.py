"""URLs with credentials, wherever the gateway shows them: /admin/config, logs, ``edge check``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEST_PROTOS

from edge.cli import main
from edge.pipeline.auth import KeyRing
from edge.policy_config import IssuerConfig

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("redis_url", "fragments"),
    [
        # "@" inside the password: the old rule stopped at the first "@"
        ("redis://:hunter@2-secret@127.0.0.1:6399/0", ["hunter", "2-secret"]),
        ("redis://edge:hunter%402-secret@127.0.0.1:6399/0", ["hunter", "2-secret"]),
        # the password as a query parameter (redis-py reads ?password=)
        ("redis://127.0.0.1:6399/0?password=hunter2-secret", ["hunter", "2-secret"]),
        ("redis://127.0.0.1:6399/0?db=0&password=hunter@2-secret", ["hunter", "2-secret"]),
    ],
    ids=["at-in-userinfo", "encoded-at", "query", "at-in-query"],
)
async def test_admin_config_hides_the_redis_password(
    stack_factory: Any, redis_url: str, fragments: list[str]
) -> None:
    # backend redis: the gateway builds its Redis client from this URL (no limit is
    # configured, so it never connects)
    extra = {"rate_limiting": {"backend": "redis", "redis_url": redis_url}}
    async with stack_factory(**extra) as stack, stack.client() as client:
        answer = await client.get("/admin/config")
    assert answer.status_code == 200
    shown = answer.json()["rate_limiting"]["redis_url"]
    for fragment in fragments:
        assert fragment not in answer.text
    assert "***" in shown and "127.0.0.1:6399/0" in shown


async def test_a_failed_jwks_fetch_logs_no_credentials(caplog: pytest.LogCaptureFixture) -> None:
    """The warning names the URL, and aiohttp's error repeats it with its query."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://jwks:pw-s3cret@127.0.0.1:{port}/jwks?access_token=tok-s3cret&v=2"
    issuer = IssuerConfig(issuer="i", algorithms=["RS256"], jwks_url=url)
    try:
        with caplog.at_level(logging.WARNING, logger="edge.auth"):
            assert not await KeyRing([issuer]).refresh("i", unknown_kid=True)
    finally:
        server.close()
        await server.wait_closed()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "JWKS fetch from" in logged and "401" in logged
    assert "s3cret" not in logged
    assert "access_token=***&v=2" in logged


def test_edge_check_shows_urls_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = {
        "descriptors": {"proto_paths": [str(TEST_PROTOS)]},
        "upstreams": {"kitchen": {"address": "127.0.0.1:1"}},
        "services": {"*": {"upstream": "kitchen"}},
        "http_upstreams": {"web": {"url": "http://proxy:pw-s3cret@127.0.0.1:2"}},
        "proxy_routes": [{"prefix": "/web", "upstream": "web"}],
        "rate_limiting": {
            "backend": "redis",
            "redis_url": "redis://:p@ss-s3cret@cache:6379/0?password=q-s3cret",
        },
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr()
    assert "s3cret" not in out.out + out.err
    assert "http upstream web: http://proxy:***@127.0.0.1:2" in out.out
    assert "rate limiting: redis at redis://:***@cache:6379/0?password=***" in out.out
