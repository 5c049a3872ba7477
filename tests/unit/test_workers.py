"""The files a supervisor and its workers share: reload epochs and each worker's outcome."""

from __future__ import annotations

import os
from pathlib import Path

from edge.workers import WorkerGroup, bump_epoch, newer_reports, read_epoch


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
