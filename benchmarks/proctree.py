"""Who a multi-process server is, and which of its processes holds which connections.

``edge serve --workers N`` is a supervisor and N worker processes; its CPU is theirs
summed, and how well it scales depends on how the kernel handed wrk's connections to the
workers. Both are read from ``/proc``: the process tree from each task's ``children``
file, and each worker's established connections by matching the socket inodes in
``/proc/<pid>/fd`` against ``/proc/net/tcp`` and ``tcp6``. Linux only; no root needed for
processes of the same user.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

_ESTABLISHED = "01"


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children and so on (not ``pid`` itself), oldest first."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop(0)
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    if int(child) not in found:
                        found.append(int(child))
                        pending.append(int(child))
    return found


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def worker_pids(supervisor: int, workers: int) -> list[int]:
    """The pids serving requests: the process itself for one worker, else its spawned
    workers (multiprocessing's ``spawn_main``, not its resource tracker)."""
    if workers == 1:
        return [supervisor]
    return [
        pid
        for pid in descendants(supervisor)
        if "spawn_main" in command_line(pid) and "resource_tracker" not in command_line(pid)
    ]


def established_inodes(port: int, tables: Iterable[str]) -> set[int]:
    """Socket inodes of established connections whose local port is ``port``, from the
    text of ``/proc/net/tcp``-style tables (pure: the caller reads the files)."""
    inodes: set[int] = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _ESTABLISHED:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def connections_per_process(port: int, pids: list[int]) -> list[int]:
    """How many established connections to ``port`` each of ``pids`` holds, in order."""
    tables = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            tables.append(Path(name).read_text())
    served = established_inodes(port, tables)
    return [len(served & socket_inodes(pid)) for pid in pids]


def pin(pid: int, cores: set[int]) -> None:
    """Move every thread of ``pid`` (and of its descendants) onto ``cores``."""
    for process in (pid, *descendants(pid)):
        for task in Path(f"/proc/{process}/task").glob("*"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), cores)
