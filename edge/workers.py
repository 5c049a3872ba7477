"""Several workers, one config: a reload reaches every worker, and each says how it went.

With ``edge serve --workers N`` the workers are separate processes, each with its own
gateway; a reload must reach all of them, and an operator who asks one of them
(``POST /admin/reload``, answered by whichever worker the kernel hands the connection)
needs every worker's outcome, not one. The supervisor and its workers share a run folder:

* ``epoch``: how many reloads the supervisor has been asked for (by ``SIGHUP``). A worker
  started at one epoch that finds a later one once it can handle signals reloads then:
  a ``SIGHUP`` that reached it while it was still starting is not lost.
* ``worker-<index>.json``: each worker's last outcome (written after every attempt), which
  the worker answering ``POST /admin/reload`` waits on: it asks the supervisor to reload
  everyone, then reads until every worker has reported an attempt newer than the ones
  it saw before asking.

Files, not pipes: the supervisor's main thread only waits for its workers and handles
signals, and a file written whole and renamed into place is never read half written.

Each worker also gets listening sockets of its own (``listeners_per_worker``): the same
addresses, bound once per worker with ``SO_REUSEPORT``, so the kernel spreads new
connections over the workers instead of whichever event loop wakes first taking them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypercorn.config import Sockets

EPOCH = "epoch"
ROLLBACK_SIGNAL = signal.SIGUSR2  # to the supervisor, passed to every worker: roll back


def _write(path: Path, text: str) -> None:
    """Written whole, then renamed into place: a reader sees the old file or the new one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def read_epoch(folder: Path) -> int:
    try:
        return int((folder / EPOCH).read_text())
    except (OSError, ValueError):
        return 0


def bump_epoch(folder: Path) -> int:
    """The supervisor's side of a reload (from its signal handler): one more epoch."""
    epoch = read_epoch(folder) + 1
    _write(folder / EPOCH, str(epoch))
    return epoch


@dataclass(frozen=True, slots=True)
class WorkerGroup:
    """One worker's view of its group: where the group keeps its files, and who it is."""

    folder: Path
    index: int
    workers: int
    supervisor: int  # the supervisor's pid, which fans a SIGHUP out to every worker
    started_at_epoch: int = 0

    def missed_reload(self) -> bool:
        """Whether a reload was asked for since this worker was started."""
        return read_epoch(self.folder) > self.started_at_epoch

    def report(self, outcome: dict[str, Any]) -> None:
        _write(self.folder / f"worker-{self.index}.json", json.dumps(outcome))

    def reports(self) -> dict[int, dict[str, Any]]:
        """Every worker's last report, by index (a worker yet to report is missing)."""
        found: dict[int, dict[str, Any]] = {}
        for index in range(self.workers):
            with contextlib.suppress(OSError, ValueError):
                found[index] = json.loads((self.folder / f"worker-{index}.json").read_text())
        return found

    def reload_all(self) -> None:
        """Ask the supervisor to reload every worker, this one included."""
        os.kill(self.supervisor, signal.SIGHUP)

    def rollback_all(self) -> None:
        """Ask the supervisor to have every worker serve its previous config again."""
        os.kill(self.supervisor, ROLLBACK_SIGNAL)


def newer_reports(
    before: dict[int, dict[str, Any]], now: dict[int, dict[str, Any]], workers: int
) -> dict[int, dict[str, Any]] | None:
    """Every worker's report once each has made an attempt since ``before``; else None."""
    fresh = {}
    for index in range(workers):
        report = now.get(index)
        if report is None:
            return None
        seen = before.get(index, {}).get("attempts", -1)
        if report.get("attempts", 0) <= seen:
            return None
        fresh[index] = report
    return fresh


def listeners_per_worker(shared: Sockets, workers: int) -> list[Sockets]:
    """``workers`` sets of listeners: ``shared`` itself first, then siblings bound alike.

    Why: with one listening socket shared by every worker, each worker's event loop waits
    on the same socket, and asyncio and libuv (uvloop) both accept until the backlog is
    empty, so whichever loop wakes first takes a whole burst of connections. A client
    with long-lived keep-alive connections (a load balancer's pool, wrk's 32) is split
    once, at random: 0/32 in one run of ``benchmarks/scaling.py``, 16/16 in the next.
    A TCP socket bound with ``SO_REUSEPORT`` (Hypercorn sets it on the shared sockets
    when ``workers > 1``) can have siblings on the same address, one per worker; the
    kernel then hashes each new connection to one listening sibling: an even split in
    expectation, decided before any worker wakes, and no thundering herd.

    A sibling gets exactly the address its original was given (port 0 included), so a
    config's bind means what it did. What cannot have siblings is shared as before: Unix
    sockets, ``fd://`` sockets and QUIC's UDP sockets, and any socket without
    ``SO_REUSEPORT`` (another OS, or one worker). What it costs: a connection hashed to a
    busy worker waits for that worker even when another is idle (no work stealing, as
    with nginx's ``reuseport``); and a worker not yet listening gets none, so the spread
    starts once every worker serves.

    Raises ``OSError`` when a sibling cannot be bound; the caller closes what it holds.
    """
    sets = [shared]
    for _ in range(workers - 1):
        sets.append(
            Sockets(
                [_sibling(sock) for sock in shared.secure_sockets],
                [_sibling(sock) for sock in shared.insecure_sockets],
                list(shared.quic_sockets),
            )
        )
    return sets


def _sibling(original: socket.socket) -> socket.socket:
    """A new TCP socket bound where ``original`` is, or ``original`` when that cannot be."""
    if (
        original.family not in (socket.AF_INET, socket.AF_INET6)
        or original.type != socket.SOCK_STREAM
        or not hasattr(socket, "SO_REUSEPORT")
        or not original.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    ):
        return original
    sibling = socket.socket(original.family, original.type)
    try:
        for level, option in (
            (socket.IPPROTO_TCP, socket.TCP_NODELAY),
            (socket.SOL_SOCKET, socket.SO_REUSEADDR),
            (socket.SOL_SOCKET, socket.SO_REUSEPORT),
        ):
            sibling.setsockopt(level, option, original.getsockopt(level, option))
        if original.family == socket.AF_INET6:
            v6only = original.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            sibling.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        sibling.bind(original.getsockname())
        sibling.setblocking(False)
        sibling.set_inheritable(True)
    except OSError:
        sibling.close()
        raise
    return sibling
