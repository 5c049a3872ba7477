"""What the gateway process holds, for the tests that check it comes back after a flood.

The gateway runs in the test process (real Hypercorn on a loopback port), so its open
descriptors and asyncio tasks are this process's.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def open_tasks() -> int:
    return len(asyncio.all_tasks())


async def settled(
    read: Callable[[], int], baseline: int, slack: int = 5, within: float = 10.0
) -> int:
    """``read()``, polled until within ``slack`` of ``baseline`` or ``within`` s have passed.

    The caller asserts on the value returned: a count still high at the deadline fails.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (count := read()) > baseline + slack and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return count
