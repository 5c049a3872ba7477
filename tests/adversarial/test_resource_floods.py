"""Floods measured in what the gateway process keeps: resident memory and open descriptors.

The gateway runs in this test process (real Hypercorn on a loopback port), so its RSS and
its file descriptors are this process's (/proc/self). Each flood is sent, its clients
leave, and the process must come back to its baseline: descriptors to within a few, RSS
to within a bound far below what the flood would cost if it were kept.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest
from conftest import make_config, run_gateway
from kitchen_upstream import start_kitchen
from resources import open_fds, settled

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def keep_alive_client(port: int, tenants: range, filler: str) -> list[bytes]:
    """One connection sending a request per tenant, each answer read before the next."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses = []
    try:
        for tenant in tenants:
            writer.write(
                b"GET /v1/kitchen/x HTTP/1.1\r\nHost: edge.test\r\n"
                + f"X-Tenant: {tenant:08d}{filler}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            statuses.append(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()
    return statuses


async def test_a_flood_of_distinct_huge_limiter_keys_costs_bounded_memory() -> None:
    """2,400 requests, each with its own 60 KB X-Tenant value, on a limit keyed by it.

    Kept whole, the keys alone would be ~140 MB; with long key parts digested the store
    keeps a few hundred bytes a key.
    """
    server, port, _ = await start_kitchen()
    extra = {
        "policies": [
            {
                "match": ["edgetest.v1.KitchenService.Echo"],
                "rate_limits": [
                    {
                        "algorithm": "token_bucket",
                        "limit": 5,
                        "period": "60s",
                        "key": ["ip", "header:x-tenant"],
                    }
                ],
            }
        ]
    }
    filler = "t" * (60 * 1024)
    try:
        async with run_gateway(make_config(port, extra=extra)) as gateway:
            # first-call allocations (and a first burst of buffers) out of the way
            await keep_alive_client(gateway.port, range(0, 200), filler)
            gc.collect()
            rss_before, fds_before = rss(), open_fds()
            batches = [range(start, start + 300) for start in range(1000, 3400, 300)]
            answers = await asyncio.gather(
                *(keep_alive_client(gateway.port, batch, filler) for batch in batches)
            )
            # every tenant its own bucket: none limited
            assert {status for statuses in answers for status in statuses} == {b"200"}
            assert sum(len(statuses) for statuses in answers) == 2400
            gc.collect()
            grown = rss() - rss_before
            assert grown < 40 * MiB, f"RSS grew {grown / MiB:.0f} MiB for 2,400 keys"
            assert await settled(open_fds, fds_before) <= fds_before + 5
    finally:
        await server.stop(None)
