"""`edge serve` as a user runs it: a real process, one worker and several, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import TEST_PROTOS

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_answering(url: str, process: subprocess.Popen[bytes]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(300):
            if process.poll() is not None:
                raise AssertionError(f"edge serve exited with {process.returncode}")
            try:
                return await client.get(url)
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise AssertionError("edge serve never answered")


def served_count(exposition: str) -> float:
    from test_observability_e2e import sample

    return sample(
        exposition,
        "edge_requests_total",
        route="edgetest.v1.KitchenService.Echo",
        method="GET",
        status="200",
        protocol="http",
    )


@pytest.mark.parametrize("workers", [1, 2])
async def test_edge_serve(kitchen_upstream: Any, tmp_path: Path, workers: int) -> None:
    upstream_port, _ = kitchen_upstream
    port = free_port()
    config_file = tmp_path / "edge.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "server": {"bind": [f"127.0.0.1:{port}"], "workers": workers},
                "descriptors": {"proto_paths": [str(TEST_PROTOS)]},
                "upstreams": {"kitchen": {"address": f"127.0.0.1:{upstream_port}"}},
                "services": {"*": {"upstream": "kitchen"}},
            }
        )
    )
    env = {**os.environ, "EDGE__SERVER__GRACEFUL_TIMEOUT": "1s"}
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "serve", "--config", str(config_file)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            start_new_session=True,
        )
    try:
        response = await wait_answering(f"http://127.0.0.1:{port}/v1/kitchen/served", process)
        assert response.status_code == 200
        assert response.json() == {"stringValue": "served"}
        async with httpx.AsyncClient() as client:
            health = await client.get(f"http://127.0.0.1:{port}/healthz")
            assert health.json() == {"status": "ok"}
            for _ in range(19):  # 20 with the first: spread over the workers by the kernel
                await client.get(f"http://127.0.0.1:{port}/v1/kitchen/served")
            # every scrape reports the instance's total, whichever worker answers it
            for _ in range(3):
                async with httpx.AsyncClient() as fresh:  # a new connection: maybe another worker
                    scrape = (await fresh.get(f"http://127.0.0.1:{port}/metrics")).text
                assert served_count(scrape) == 20
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            code = await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    stderr = log.read_text()
    assert code == 0, stderr
    assert "Traceback" not in stderr


async def every_worker_at(base: str, generation: int, workers: int = 2) -> None:
    """Until each of ``workers`` processes reports ``generation`` (10 s at most)."""
    generations: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (len(generations) == workers and set(generations.values()) == {generation}):
        assert loop.time() < deadline, generations
        async with httpx.AsyncClient() as fresh:  # a new connection: either worker
            status = (await fresh.get(f"{base}/admin/descriptors")).json()["reload"]
        generations[status["worker"]] = status["generation"]


@dataclass
class Served:
    """``edge serve --workers 2`` running from a config file a test may rewrite."""

    base: str
    config: dict[str, Any]
    config_file: Path
    process: subprocess.Popen[bytes]

    def write(self) -> None:
        self.config_file.write_text(yaml.safe_dump(self.config))


@contextlib.asynccontextmanager
async def two_workers(
    upstream_port: int, tmp_path: Path, **descriptors: Any
) -> AsyncIterator[Served]:
    """Both workers serving (a SIGHUP before that would not be seen), stopped afterwards."""
    port = free_port()
    config: dict[str, Any] = {
        "server": {"bind": [f"127.0.0.1:{port}"], "workers": 2},
        "descriptors": {"proto_paths": [str(TEST_PROTOS)], "watch": False, **descriptors},
        "upstreams": {"kitchen": {"address": f"127.0.0.1:{upstream_port}"}},
        "services": {"*": {"upstream": "kitchen"}},
    }
    config_file = tmp_path / "edge.yaml"
    config_file.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "serve", "--config", str(config_file)],
        env={**os.environ, "EDGE__SERVER__GRACEFUL_TIMEOUT": "1s"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    served = Served(f"http://127.0.0.1:{port}", config, config_file, process)
    try:
        await wait_answering(f"{served.base}/healthz", process)
        await every_worker_at(served.base, 1)
        yield served
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise


async def test_sighup_to_the_supervisor_reloads_every_worker(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    async with two_workers(kitchen_upstream[0], tmp_path) as served:
        limit = [{"algorithm": "token_bucket", "limit": 1000, "period": "60s"}]
        served.config["policies"] = [{"match": ["*"], "rate_limits": limit}]
        served.write()
        os.kill(served.process.pid, signal.SIGHUP)  # the supervisor alone, as systemd does
        await every_worker_at(served.base, 2)
        for _ in range(10):  # and every worker serves the new policy
            async with httpx.AsyncClient() as fresh:
                answer = await fresh.get(f"{served.base}/v1/kitchen/reloaded")
            assert answer.headers["ratelimit-limit"] == "1000"
        assert served.process.poll() is None  # SIGHUP did not end the supervisor


async def test_an_admin_reload_reloads_every_worker_and_reports_each(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    async with two_workers(kitchen_upstream[0], tmp_path) as served:
        base, config = served.base, served.config
        limit = {"algorithm": "token_bucket", "limit": 9, "period": "1m"}
        config["policies"] = [{"match": ["*"], "rate_limits": [limit]}]
        served.write()
        async with httpx.AsyncClient(timeout=30) as client:
            applied = await client.post(f"{base}/admin/reload")
            assert applied.status_code == 200, applied.text
            body = applied.json()
            assert body["applied"] is True
            assert len({w["worker"] for w in body["workers"]}) == 2  # both, each once
            assert {w["generation"] for w in body["workers"]} == {2}
            config["upstreamz"] = {}  # a typo: every worker refuses it
            served.write()
            refused = await client.post(f"{base}/admin/reload")
            assert refused.status_code == 409, refused.text
            body = refused.json()
            assert body["applied"] is False and "upstreamz" in " ".join(body["problems"])
            assert [w["applied"] for w in body["workers"]] == [False, False]
            assert {w["generation"] for w in body["workers"]} == {2}  # still serving the last
        for _ in range(6):  # every worker serves the config both applied
            async with httpx.AsyncClient() as fresh:
                answer = await fresh.get(f"{base}/v1/kitchen/reloaded")
            assert answer.headers["ratelimit-limit"] == "9"
        async with httpx.AsyncClient(timeout=30) as client:  # back to the first config
            rolled = await client.post(f"{base}/admin/rollback")
            assert rolled.status_code == 200, rolled.text
            assert {w["generation"] for w in rolled.json()["workers"]} == {3}
        for _ in range(6):
            async with httpx.AsyncClient() as fresh:
                answer = await fresh.get(f"{base}/v1/kitchen/rolled-back")
            assert answer.status_code == 200 and "ratelimit-limit" not in answer.headers


async def test_with_several_workers_a_file_change_reloads_them_together(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    async with two_workers(
        kitchen_upstream[0], tmp_path, watch=True, watch_interval="100ms"
    ) as served:
        limit = {"algorithm": "token_bucket", "limit": 7, "period": "1m"}
        served.config["policies"] = [{"match": ["*"], "rate_limits": [limit]}]
        served.write()
        # one watcher (the first worker's) asks the supervisor: both reload, once each
        await every_worker_at(served.base, 2)
        async with httpx.AsyncClient() as client:
            status = (await client.get(f"{served.base}/admin/descriptors")).json()["reload"]
        assert status["reloads"] == 1


def listening_sockets(port: int) -> set[int]:
    """Inodes of the IPv4 TCP sockets listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            found.add(int(fields[9]))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")
async def test_each_worker_listens_on_a_socket_of_its_own(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    """So the kernel hashes new connections over the workers (edge.workers), rather than
    the first worker to wake taking a whole burst of them off one shared socket."""
    async with two_workers(kitchen_upstream[0], tmp_path) as served:
        port = int(served.base.rsplit(":", 1)[1])
        assert len(listening_sockets(port)) == 2
