"""`edge serve` freezes its long-lived heap, and a reload's released generation is collected.

The freeze is what keeps full garbage collections (45 ms and more under load) out of the
tail latency (edge.heap); these tests hold the two halves a user relies on: it happens in
a real `edge serve`, and reloading does not pile generations up in the frozen heap.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import TEST_PROTOS
from test_cli_e2e import free_port, wait_answering

pytestmark = pytest.mark.e2e


def gauge(exposition: str, name: str) -> float:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", exposition, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


async def generation(client: httpx.AsyncClient, base: str) -> int:
    status = (await client.get(f"{base}/admin/descriptors")).json()["reload"]
    return int(status["generation"])


async def test_serve_freezes_its_heap_and_reloads_do_not_pile_up(
    kitchen_upstream: Any, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config: dict[str, Any] = {
        "server": {"bind": [f"127.0.0.1:{port}"], "graceful_timeout": "1s"},
        "descriptors": {"proto_paths": [str(TEST_PROTOS)], "watch": False},
        "upstreams": {"kitchen": {"address": f"127.0.0.1:{kitchen_upstream[0]}"}},
        "services": {"*": {"upstream": "kitchen"}},
    }
    config_file = tmp_path / "edge.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "serve", "--config", str(config_file)],
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            start_new_session=True,
        )
    try:
        await wait_answering(f"{base}/healthz", process)
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(50):  # some traffic: young collections happen and are timed
                assert (await client.get(f"{base}/v1/kitchen/x")).status_code == 200
            scrape = (await client.get(f"{base}/metrics")).text
            frozen_at_start = gauge(scrape, "edge_gc_frozen_objects")
            assert frozen_at_start > 10_000  # descriptors, routes, pipeline: all frozen
            assert 'edge_gc_pause_seconds_count{generation="2"}' in scrape
            for number in range(2, 6):  # each reload builds a whole new generation
                config["policies"] = [
                    {
                        "match": ["*"],
                        "rate_limits": [
                            {"algorithm": "token_bucket", "limit": 1000 + number, "period": "1m"}
                        ],
                    }
                ]
                config_file.write_text(yaml.safe_dump(config))
                assert (await client.post(f"{base}/admin/reload")).status_code == 200
                assert await generation(client, base) == number
                answer = await client.get(f"{base}/v1/kitchen/x")
                assert answer.headers["ratelimit-limit"] == str(1000 + number)
            for _ in range(100):  # the last release runs once the request above has ended
                if log.read_text().count("released") >= 4:
                    break
                await asyncio.sleep(0.05)
            frozen_after = gauge(
                (await client.get(f"{base}/metrics")).text, "edge_gc_frozen_objects"
            )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        await asyncio.to_thread(process.wait, 20)
    stderr = log.read_text()
    assert stderr.count("heap settled (generation") == 4, stderr
    # the frozen heap is one generation's size: the new ones were frozen in their turn
    # (the count is set by each settle) and the replaced ones were let go
    assert frozen_at_start * 0.8 < frozen_after < frozen_at_start * 1.3, (
        frozen_at_start,
        frozen_after,
    )
