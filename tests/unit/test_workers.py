"""The files a supervisor and its workers share (reload epochs, each worker's outcome), and
the listening sockets each worker gets of its own."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from edge.workers import (
    WorkerGroup,
    bump_epoch,
    listeners_per_worker,
    newer_reports,
    read_epoch,
)


def group(folder: Path, index: int = 0, started_at_epoch: int = 0) -> WorkerGroup:
    return WorkerGroup(folder, index, 2, os.getpid(), started_at_epoch)


def test_a_reload_asked_for_while_a_worker_started_is_seen_by_it(tmp_path: Path) -> None:
    assert read_epoch(tmp_path) == 0
    worker = group(tmp_path, started_at_epoch=0)
    assert not worker.missed_reload()
    assert bump_epoch(tmp_path) == 1 and bump_epoch(tmp_path) == 2
    assert worker.missed_reload()
    assert not group(tmp_path, started_at_epoch=2).missed_reload()


def test_a_broken_epoch_file_counts_as_none(tmp_path: Path) -> None:
    (tmp_path / "epoch").write_text("not a number")
    assert read_epoch(tmp_path) == 0
    assert bump_epoch(tmp_path) == 1


def test_reports_are_read_back_per_worker_and_leave_no_partial_files(tmp_path: Path) -> None:
    first, second = group(tmp_path, 0), group(tmp_path, 1)
    assert first.reports() == {}
    first.report({"attempts": 0, "applied": True})
    second.report({"attempts": 3, "applied": False})
    first.report({"attempts": 1, "applied": True})  # replaces its earlier report
    assert first.reports() == {
        0: {"attempts": 1, "applied": True},
        1: {"attempts": 3, "applied": False},
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-0.json", "worker-1.json"]


def test_an_outcome_counts_only_once_every_worker_has_attempted_since() -> None:
    before = {0: {"attempts": 1}, 1: {"attempts": 4}}
    assert newer_reports(before, {0: {"attempts": 2}}, 2) is None  # worker 1 has not
    assert newer_reports(before, {0: {"attempts": 2}, 1: {"attempts": 4}}, 2) is None
    done = {0: {"attempts": 2}, 1: {"attempts": 5}}
    assert newer_reports(before, done, 2) == done
    # a worker that had not reported before counts from its first report
    assert newer_reports({}, {0: {"attempts": 0}, 1: {"attempts": 0}}, 2) is not None


def bound(workers: int, binds: list[str]) -> Sockets:
    """The sockets ``edge serve`` binds for ``workers`` (Hypercorn's create_sockets)."""
    config = HypercornConfig()
    config.bind = binds
    config.workers = workers
    return config.create_sockets()


def close_all(sets: list[Sockets]) -> None:
    for each in sets:
        for sock in (*each.secure_sockets, *each.insecure_sockets, *each.quic_sockets):
            sock.close()


def test_each_worker_gets_its_own_listener_on_the_same_address() -> None:
    shared = bound(3, ["127.0.0.1:0", "[::1]:0"] if socket.has_ipv6 else ["127.0.0.1:0"])
    sets = listeners_per_worker(shared, 3)
    try:
        assert sets[0] is shared and len(sets) == 3
        for position, original in enumerate(shared.insecure_sockets):
            siblings = [each.insecure_sockets[position] for each in sets]
            assert len({sock.fileno() for sock in siblings}) == 3  # three sockets
            assert {sock.getsockname()[:2] for sock in siblings} == {original.getsockname()[:2]}
            for sock in siblings:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                assert not sock.getblocking() and sock.get_inheritable()
    finally:
        close_all(sets)


def test_the_kernel_spreads_connections_over_the_listeners() -> None:
    """Each listener gets some of 64 connections (all on one: odds 2 in 2**64)."""
    sets = listeners_per_worker(bound(2, ["127.0.0.1:0"]), 2)
    listeners = [each.insecure_sockets[0] for each in sets]
    clients = []
    try:
        for sock in listeners:
            sock.listen(100)
        address = listeners[0].getsockname()
        clients = [socket.create_connection(address) for _ in range(64)]
        accepted = [0, 0]
        for index, sock in enumerate(listeners):  # loopback: queued once connect returns
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.accept()[0].close()
                    accepted[index] += 1
        assert sum(accepted) == 64 and min(accepted) > 0
    finally:
        for client in clients:
            client.close()
        close_all(sets)


def test_what_cannot_have_siblings_is_shared(tmp_path: Path) -> None:
    """Unix sockets, and sockets bound without SO_REUSEPORT (one worker), are shared."""
    unix = bound(2, [f"unix:{tmp_path / 'edge.sock'}"])
    plain = bound(1, ["127.0.0.1:0"])
    try:
        for shared in (unix, plain):
            sets = listeners_per_worker(shared, 2)
            assert sets[1].insecure_sockets == shared.insecure_sockets
    finally:
        close_all([unix, plain])
