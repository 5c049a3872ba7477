"""What a worker loads is what its config uses: heavy clients stay out until needed.

Each library below costs every worker megabytes of resident memory (PyJWT with
cryptography about 8.6 MiB, aiohttp about 8), which matters most where one worker holds
thousands of idle WebSockets. A fresh interpreter builds the gateway from a config and
reports which of them it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("jwt", "cryptography", "aiohttp", "redis", "opentelemetry")
_PROBE = """
import json, sys
from edge.app import create_app
from edge.config import parse_config
config = parse_config(json.loads(sys.argv[1]), base=sys.argv[2], env={})
create_app(config)
print(json.dumps([name for name in sys.argv[3:] if name in sys.modules]))
"""
PLAIN: dict[str, Any] = {
    "descriptors": {"proto_paths": [str(REPO / "protos")]},
    "upstreams": {"demo": {"address": "127.0.0.1:1"}},
    "services": {"*": {"upstream": "demo"}},
}
ISSUER = {
    "issuers": [
        {"issuer": "https://i.example", "algorithms": ["HS256"], "keys": [{"secret": "s" * 40}]}
    ]
}


def _loaded(config: dict[str, Any]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(config), str(REPO), *HEAVY],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (PLAIN, []),
        (PLAIN | {"auth": ISSUER}, ["jwt", "cryptography"]),
        (
            PLAIN
            | {
                "http_upstreams": {"web": {"url": "http://127.0.0.1:1"}},
                "proxy_routes": [{"prefix": "/web/", "upstream": "web"}],
            },
            [],  # edge's own HTTP/1.1 client: aiohttp loads only to fetch a JWKS
        ),
    ],
    ids=["plain", "with an issuer", "with a proxy route"],
)
def test_a_worker_loads_only_what_its_config_uses(
    config: dict[str, Any], expected: list[str]
) -> None:
    assert _loaded(config) == expected
