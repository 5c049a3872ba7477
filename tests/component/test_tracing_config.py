"""Tracing is free when off (opentelemetry never imported) and exports when on.

Each case runs the app in a fresh interpreter, since ``sys.modules`` of the test process
already holds opentelemetry (the e2e tracing tests import it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from edge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# Builds the app from the config in argv[1], serves /healthz and an unknown path through
# the whole ASGI stack (observe middleware included), stops it, and prints the
# opentelemetry modules it loaded as the last line.
SCRIPT = """
import asyncio, json, sys
import edge.cli
from edge.app import create_app
from edge.config import parse_config

async def request(app, path):
    sent, done, first = [], asyncio.Event(), [True]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [(b"host", b"x")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
    async def receive():
        if first.pop() if first else False:
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # then the client goes away, once it has its answer
        return {"type": "http.disconnect"}
    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()
    await app(scope, receive, send)
    return sent[0]["status"]

async def main():
    app = create_app(parse_config(json.loads(sys.argv[1]), base=sys.argv[2], env={}))
    await app.startup()
    statuses = [await request(app, "/healthz"), await request(app, "/nowhere")]
    await app.shutdown()
    assert statuses == [200, 404], statuses

asyncio.run(main())
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")))
"""


def run_app(observability: dict[str, Any]) -> tuple[list[str], str]:
    config = {
        "descriptors": {"proto_paths": [str(ROOT / "tests" / "protos")]},
        "upstreams": {"kitchen": {"address": "127.0.0.1:9", "timeout": "1s"}},
        "services": {"*": {"upstream": "kitchen"}},
        "observability": {"access_log": True, **observability},
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(config), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    *before, last = done.stdout.strip().splitlines()
    return json.loads(last), "\n".join(before)


def test_tracing_off_imports_no_opentelemetry() -> None:
    modules, _ = run_app({"metrics": True, "tracing": {"exporter": "none"}})
    assert modules == []


def test_console_exporter_flushes_the_batch_on_shutdown() -> None:
    """The control for the test above, and the real (batched) export path."""
    modules, printed = run_app({"tracing": {"exporter": "console", "service_name": "gw"}})
    assert "opentelemetry.sdk.trace.export" in modules
    assert "opentelemetry.exporter.otlp.proto.grpc.trace_exporter" not in modules
    assert '"kind": "SpanKind.SERVER"' in printed  # exported by the shutdown flush
    assert '"url.path": "/nowhere"' in printed
    assert '"service.name": "gw"' in printed


def test_otlp_exporter_is_built_from_config() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from edge.config import TracingConfig
    from edge.observability.tracing import make_exporter

    exporter = make_exporter(TracingConfig(exporter="otlp", endpoint="http://127.0.0.1:4317"))
    try:
        assert isinstance(exporter, OTLPSpanExporter)
    finally:
        exporter.shutdown()


@pytest.mark.parametrize(
    ("tracing", "message"),
    [
        ({"exporter": "zipkin"}, "observability.tracing.exporter"),
        ({"sample_ratio": 1.5}, "observability.tracing.sample_ratio"),
        ({"samples": 1}, "observability.tracing.samples"),
    ],
)
def test_tracing_config_is_validated(tracing: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"observability": {"tracing": tracing}}, base=ROOT, env={})
