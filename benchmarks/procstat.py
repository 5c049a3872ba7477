"""CPU time of a process, read from ``/proc``, so a server's cost can be charged per request.

Throughput on a shared two-core machine moves with whatever else is running (including
the load generator); the CPU seconds a server burns to answer N requests barely do. The
counters cover every thread of the process, so grpc's C-core threads are charged to the
process that owns them. Linux only.
"""

from __future__ import annotations

import os

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of ``pid`` so far, in seconds (resolution ``1/SC_CLK_TCK``).

    Raises ``FileNotFoundError`` when the process has gone, which during a measurement
    means the server crashed: better to fail than to report a figure for half a run.
    """
    with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
        text = stat.read()
    # The command name (field 2) is in parentheses and may hold spaces; fields after the
    # last ")" start at field 3, so utime (14) and stime (15) are at offsets 11 and 12.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of several processes at (nearly) one instant, keyed like ``pids``."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()}
