"""Shared fixtures: real servers on ephemeral loopback ports, never a fixed port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypercorn.asyncio import serve
from kitchen_upstream import Kitchen, start_kitchen
from listening import wait_listening

from edge.app import create_app
from edge.cli import hypercorn_config
from edge.config import Config, parse_config
from edge.config_source import ConfigSource
from edge.workers import WorkerGroup

ROOT = Path(__file__).resolve().parent.parent
TEST_PROTOS = ROOT / "tests" / "protos"
DEMO_PROTOS = ROOT / "protos"


@dataclass
class Gateway:
    base_url: str
    port: int
    config: Config
    app: Any

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=10, **kwargs)


@contextlib.asynccontextmanager
async def run_gateway(
    config: Config,
    *,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    source: ConfigSource | None = None,
    group: WorkerGroup | None = None,
) -> AsyncIterator[Gateway]:
    """Serve the gateway with real Hypercorn on a socket bound to port 0 (``source``: the
    file a reload reads again; ``group``: as one of ``edge serve --workers N``)."""
    app = create_app(config, source=source, group=group)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    hc = hypercorn_config(config)  # what `edge serve` gives Hypercorn, then the test's own
    hc.listener_tls = app.extensions["edge.listener_tls"]
    hc.bind = [f"fd://{sock.detach()}"]  # Hypercorn owns (and closes) the fd from here
    hc.graceful_timeout = 1
    hc.errorlog = None
    hc.accesslog = None
    scheme = "http"
    if certfile is not None:
        hc.certfile = str(certfile)
        hc.keyfile = str(keyfile)
        scheme = "https"
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, hc, shutdown_trigger=stop.wait))
    try:
        await wait_listening(port, task)
        yield Gateway(f"{scheme}://127.0.0.1:{port}", port, config, app)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def make_config(
    upstream_port: int,
    *,
    protos: Path = TEST_PROTOS,
    extra: Mapping[str, Any] | None = None,
) -> Config:
    data: dict[str, Any] = {
        "descriptors": {"proto_paths": [str(protos)]},
        "upstreams": {"kitchen": {"address": f"127.0.0.1:{upstream_port}", "timeout": "5s"}},
        "services": {"*": {"upstream": "kitchen"}},
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data, base=ROOT, env={})


@dataclass
class Stack:
    gateway: Gateway
    kitchen: Kitchen
    upstream_port: int

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return self.gateway.client(**kwargs)


@pytest.fixture
async def kitchen_upstream() -> AsyncIterator[tuple[int, Kitchen]]:
    server, port, kitchen = await start_kitchen()
    try:
        yield port, kitchen
    finally:
        await server.stop(grace=None)


@pytest.fixture
def stack_factory(
    kitchen_upstream: tuple[int, Kitchen],
) -> Callable[..., contextlib.AbstractAsyncContextManager[Stack]]:
    port, kitchen = kitchen_upstream

    @contextlib.asynccontextmanager
    async def factory(**extra: Any) -> AsyncIterator[Stack]:
        async with run_gateway(make_config(port, extra=extra)) as gateway:
            yield Stack(gateway, kitchen, port)

    return factory


@pytest.fixture
async def stack(
    stack_factory: Callable[..., contextlib.AbstractAsyncContextManager[Stack]],
) -> AsyncIterator[Stack]:
    async with stack_factory() as running:
        yield running


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    return self_signed(tmp_path_factory.mktemp("tls"))


def self_signed(folder: Path, name: str = "cert") -> tuple[Path, Path]:
    """A new self-signed certificate and key for 127.0.0.1 in ``folder`` (openssl CLI)."""
    import subprocess

    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:upstream.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def client_ssl_context(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


@contextlib.contextmanager
def redis_server(folder: Path, port: int | None = None) -> Any:
    """A redis-server of our own on a free (or the given) port; yields its URL."""
    import shutil
    import subprocess
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed and REDIS_URL is not set")
    if port is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(250):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """REDIS_URL when set; otherwise a redis-server of our own on a free port.

    Tests never assume 127.0.0.1:6379 exists or is empty: they use their own server or
    their own key prefix.
    """
    import os

    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def connect_clients() -> str:
    """connect-es and grpc-web installed for tests/peers/connect (npm ci + the bundle);
    skips under EDGE_SKIP_INTEROP=1."""
    from connect_peer import ensure_installed

    return ensure_installed()


@pytest.fixture(scope="session")
def wider_protos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test protos, plus a method and a service the gateway's copy does not have."""
    from talking_kitchen import write_wider_protos

    return write_wider_protos(tmp_path_factory.mktemp("protos"))
