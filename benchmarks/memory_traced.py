"""What an idle WebSocket is made of: the gateway under tracemalloc, and the report on it.

``python -m benchmarks.memory_traced TRIGGER_DIR serve --config ...`` runs ``edge serve``
unchanged, with ``tracemalloc`` on from before the first import, and a thread that
answers requests dropped in ``TRIGGER_DIR``: for ``NAME.request`` it writes
``NAME.snapshot`` (a tracemalloc snapshot) and ``NAME.types.json`` (live objects by type,
from ``gc.get_objects``), then ``NAME.done``. The thread needs no help from the event
loop (uvloop drops the GIL while it waits), so nothing in ``edge/`` has to know about it.

``run_trace(n)`` (``python -m benchmarks.memory --trace N``) starts that gateway, takes a
snapshot, opens ``n`` idle WebSockets, takes another, and names what grew, per socket: by
allocation line, by the first caller outside the standard library (who asked for a task
or a buffer), by package, and by object type. tracemalloc sees only Python's allocator,
so the report sets its total beside the RSS growth; the rest is C (uvloop's handles and
buffers) and the allocator's slack. tracemalloc's own bookkeeping swells RSS, so RSS per
socket is the untraced run's figure, not this one's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tempfile
import threading
import time
import tracemalloc
import types
from collections import Counter
from pathlib import Path
from typing import Any

FRAMES = 16
_POLL_SECONDS = 0.1
_STDLIB = ("/asyncio/", "/contextlib.py", "/typing.py", "/functools.py", "/uuid.py", "/enum.py")


def _type_census() -> dict[str, int]:
    """Live objects by type, asyncio tasks by the coroutine they run (``task:NAME``) and
    suspended coroutines by name (``coro:NAME``): each holds a frame, often the largest
    part of what an idle socket costs."""
    census: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        census[f"{kind.__module__}.{kind.__qualname__}"] += 1
        if isinstance(obj, asyncio.Task) and not obj.done():
            census[f"task:{getattr(obj.get_coro(), '__qualname__', '?')}"] += 1
        elif isinstance(obj, types.CoroutineType):
            census[f"coro:{obj.__qualname__}"] += 1
    return dict(census)


def _answer(trigger_dir: Path) -> None:
    """Serve snapshot requests for as long as the process lives (a daemon thread)."""
    while True:
        for request in sorted(trigger_dir.glob("*.request")):
            name = request.stem
            request.unlink()
            tracemalloc.take_snapshot().dump(str(trigger_dir / f"{name}.snapshot"))
            (trigger_dir / f"{name}.types.json").write_text(json.dumps(_type_census()))
            (trigger_dir / f"{name}.done").write_text("done")
        time.sleep(_POLL_SECONDS)


def serve_traced(argv: list[str]) -> int:
    """``edge`` with ``argv`` (after the trigger directory), traced from the first import."""
    tracemalloc.start(FRAMES)
    trigger_dir = Path(argv[0])
    threading.Thread(target=_answer, args=(trigger_dir,), daemon=True, name="snapshots").start()
    from edge.cli import main

    return main(argv[1:])


# -- the orchestrator's side ---------------------------------------------------------------


def _snapshot(trigger_dir: Path, name: str, timeout: float = 120.0) -> tuple[Any, dict[str, int]]:
    (trigger_dir / f"{name}.request").write_text("")
    deadline = time.monotonic() + timeout
    done = trigger_dir / f"{name}.done"
    while not done.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no snapshot {name} within {timeout}s")
        time.sleep(0.1)
    snapshot = tracemalloc.Snapshot.load(str(trigger_dir / f"{name}.snapshot"))
    types = json.loads((trigger_dir / f"{name}.types.json").read_text())
    return snapshot, types


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3.", "/work/main/"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3." else tail
    return filename


def _caller(trace: tracemalloc.Trace) -> str:
    """The innermost frame outside the standard library: who asked for this memory."""
    for frame in reversed(trace.traceback):  # oldest call first: begin at the newest
        if "site-packages/" in frame.filename or "/edge/" in frame.filename:
            return f"{_short(frame.filename)}:{frame.lineno}"
        if not any(part in frame.filename for part in _STDLIB) and "/lib/python3." not in (
            frame.filename
        ):
            return f"{_short(frame.filename)}:{frame.lineno}"
    top = trace.traceback[-1]
    return f"{_short(top.filename)}:{top.lineno}"


def _package(filename: str) -> str:
    short = _short(filename)
    return short.split("/", 1)[0] if "/" in short else short


def _grown(before: Any, after: Any, key: Any) -> Counter[str]:
    """Bytes grown between the snapshots, summed by ``key(trace)``."""
    sizes: Counter[str] = Counter()
    for trace in after.traces:
        sizes[key(trace)] += trace.size
    for trace in before.traces:
        sizes[key(trace)] -= trace.size
    return sizes


def report_growth(
    before: Any,
    after: Any,
    types_before: dict[str, int],
    types_after: dict[str, int],
    sockets: int,
    rss_growth_kib: float,
    top: int = 15,
) -> str:
    """The growth between two snapshots, per socket, four ways."""
    traced = sum(t.size for t in after.traces) - sum(t.size for t in before.traces)
    lines = [
        f"tracemalloc: {traced / sockets / 1024:.1f} KiB per socket of Python allocations; "
        f"RSS grew {rss_growth_kib / sockets:.1f} KiB per socket under tracing "
        "(untraced: see the benchmark's table)",
        "",
        "by allocation line (bytes per socket, objects per socket):",
    ]
    for stat in after.compare_to(before, "lineno")[:top]:
        frame = stat.traceback[0]
        lines.append(
            f"  {stat.size_diff / sockets:>8.0f} B  {stat.count_diff / sockets:>5.1f}  "
            f"{_short(frame.filename)}:{frame.lineno}"
        )
    lines += ["", "by first caller outside the standard library (bytes per socket):"]
    for name, size in _grown(before, after, _caller).most_common(top):
        lines.append(f"  {size / sockets:>8.0f} B  {name}")
    lines += ["", "by package of the allocating line (bytes per socket):"]
    for name, size in _grown(
        before, after, lambda t: _package(t.traceback[-1].filename)
    ).most_common(top):
        lines.append(f"  {size / sockets:>8.0f} B  {name}")
    grown = Counter(
        {name: types_after.get(name, 0) - types_before.get(name, 0) for name in types_after}
    )
    lines += ["", "asyncio tasks by coroutine (per socket):"]
    for name, count in grown.most_common():
        if name.startswith("task:") and count > 0:
            lines.append(f"  {count / sockets:>6.2f}  {name.removeprefix('task:')}")
    lines += ["", "coroutines by name (per socket):"]
    for name, count in grown.most_common():
        if name.startswith("coro:") and count > 0:
            lines.append(f"  {count / sockets:>6.2f}  {name.removeprefix('coro:')}")
    lines += ["", "live objects by type (per socket):"]
    for name, count in grown.most_common(top + 10):
        if not name.startswith(("task:", "coro:")):
            lines.append(f"  {count / sockets:>6.2f}  {name}")
    return "\n".join(lines)


def run_trace(sockets: int) -> str:
    """Open ``sockets`` idle WebSockets on a traced gateway and say what they are made of."""
    from benchmarks.memory import _warm_up, clients, holding_stack, rss_kib, sample

    with tempfile.TemporaryDirectory(prefix="edge-memory-trace-") as tmp:
        workdir = Path(tmp)
        triggers = workdir / "triggers"
        triggers.mkdir()
        module = ["-m", "benchmarks.memory_traced", str(triggers)]
        with holding_stack(workdir, "traced", module, ready_timeout=180) as (gateway, bind):
            host, port = bind.split(":")
            asyncio.run(_warm_up(host, int(port), "ws-idle"))
            first = sample(gateway, f"http://{bind}")
            before, types_before = _snapshot(triggers, "before")
            rss_before = rss_kib(gateway.pid)
            with clients(workdir, bind, "ws-idle", sockets):
                time.sleep(1.0)
                rss_after = rss_kib(gateway.pid)
                after, types_after = _snapshot(triggers, "after")
                last = sample(gateway, f"http://{bind}")
    head = (
        f"{sockets:,} idle WebSockets on a traced worker: asyncio tasks "
        f"{first.tasks} -> {last.tasks} ({(last.tasks - first.tasks) / sockets:.1f} per socket)"
    )
    body = report_growth(before, after, types_before, types_after, sockets, rss_after - rss_before)
    return f"{head}\n{body}"


if __name__ == "__main__":
    sys.exit(serve_traced(sys.argv[1:]))
