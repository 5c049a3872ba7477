"""Graceful shutdown of a real `edge serve` process (one worker and two) on SIGTERM.

The signal goes to the main process only, as Kubernetes and `docker stop` send it. What
must hold: a stream in flight finishes, whole; a stream longer than the drain is cut at
the drain's end and its upstream call cancelled; an open WebSocket is closed with 1001
after an UNAVAILABLE status frame; new connections are refused; the exit status is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import TEST_PROTOS
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.signalled_at = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def terminate(self) -> None:
        self.signalled_at = time.monotonic()
        self.process.send_signal(signal.SIGTERM)  # the main process only

    async def exit_code(self, within: float) -> tuple[int, float]:
        code = await asyncio.to_thread(self.process.wait, within)
        return code, time.monotonic() - self.signalled_at


@contextlib.asynccontextmanager
async def edge_serve(
    upstream_port: int, folder: Path, *, workers: int = 1, graceful: str = "5s"
) -> AsyncIterator[Served]:
    port = free_port()
    config_file = folder / "edge.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "server": {
                    "bind": [f"127.0.0.1:{port}"],
                    "workers": workers,
                    "graceful_timeout": graceful,
                },
                "descriptors": {"proto_paths": [str(TEST_PROTOS)]},
                "upstreams": {"kitchen": {"address": f"127.0.0.1:{upstream_port}"}},
                "services": {"*": {"upstream": "kitchen"}},
            }
        )
    )
    log = folder / "stderr.log"
    with log.open("wb") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "serve", "--config", str(config_file)],
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            start_new_session=True,
        )
    served = Served(process, port, log)
    try:
        await _wait_answering(served)
        yield served
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


async def _wait_answering(served: Served) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(300):
            if served.process.poll() is not None:
                raise AssertionError(f"edge serve exited: {served.log.read_text()}")
            try:
                await client.get(f"{served.base_url}/healthz")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise AssertionError("edge serve never answered")


async def _refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


def _clean_log(served: Served) -> str:
    text = served.log.read_text()
    assert "Traceback" not in text, text
    return text


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_stream_in_flight_finishes_and_new_connections_are_refused(
    kitchen_upstream: Any, tmp_path: Path, workers: int
) -> None:
    upstream_port, _ = kitchen_upstream
    async with (
        edge_serve(upstream_port, tmp_path, workers=workers, graceful="20s") as served,
        httpx.AsyncClient(base_url=served.base_url, timeout=10) as client,
    ):
        lines: list[Any] = []
        url = "/v1/count/8?intervalSeconds=0.25"  # about 2 s of stream
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                lines.append(json.loads(line))
                if len(lines) == 1:
                    served.terminate()
                    await asyncio.sleep(0.3)
                    assert await _refuses_connections(served.port)
        code, elapsed = await served.exit_code(within=10)
    assert lines == [{"result": {}}, *({"result": {"index": i}} for i in range(1, 8))]
    assert code == 0, served.log.read_text()
    # waited for the stream's ~1.75 s, not the 20 s drain (wide: a loaded machine is slow)
    assert 1.2 < elapsed < 12.0
    assert "draining: 1 requests/streams in flight" in _clean_log(served)


async def test_a_stream_longer_than_the_drain_is_cut_and_its_upstream_cancelled(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    upstream_port, kitchen = kitchen_upstream
    async with (
        edge_serve(upstream_port, tmp_path, graceful="1s") as served,
        httpx.AsyncClient(base_url=served.base_url, timeout=10) as client,
    ):
        lines = 0
        with pytest.raises(httpx.RemoteProtocolError):  # the body ends short, visibly
            async with client.stream("GET", "/v1/count/200?intervalSeconds=0.05") as response:
                async for _ in response.aiter_lines():
                    lines += 1
                    if lines == 1:
                        served.terminate()
        code, elapsed = await served.exit_code(within=10)
        await asyncio.wait_for(kitchen.streams.cancelled.wait(), 5)
    assert code == 0, served.log.read_text()
    # cut at the 1 s drain, not after the stream's 10 s (wide: a loaded machine is slow)
    assert 0.9 < elapsed < 8.0
    assert 5 < lines < 150
    assert "cancelling 1 requests/streams still running" in _clean_log(served)


async def test_an_open_websocket_is_closed_1001_with_a_status_frame(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    upstream_port, kitchen = kitchen_upstream
    async with edge_serve(upstream_port, tmp_path, graceful="20s") as served:
        url = f"ws://127.0.0.1:{served.port}/v1/count/1000"  # a server stream over WebSocket
        async with connect(url, subprotocols=["edge.grpc-ws.v1"], open_timeout=5) as ws:
            await ws.send(json.dumps({"message": {"intervalSeconds": 0.05}}))
            assert json.loads(await ws.recv()) == {"message": {}}
            served.terminate()
            frames = []
            with contextlib.suppress(ConnectionClosed):
                while True:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        code, elapsed = await served.exit_code(within=10)
        await asyncio.wait_for(kitchen.streams.cancelled.wait(), 5)  # the upstream call too
    assert kitchen.streams.sent < 100
    assert all("message" in frame for frame in frames[:-1])
    assert frames[-1:] == [
        {
            "status": {"code": 14, "message": "the gateway is shutting down", "details": []},
            "trailers": {},
        }
    ]
    assert ws.close_code == 1001
    assert ws.close_reason == "the gateway is shutting down"
    assert code == 0, served.log.read_text()
    assert elapsed < 10.0  # a socket does not hold the 20 s drain open
    _clean_log(served)
