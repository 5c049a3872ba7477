"""Hot reload of descriptors: drop a .proto into ``protos/`` and it is served, no restart.

A reload compiles the whole set in a worker thread (never on the event loop), builds the
new routes, opens invokers for new methods, and then swaps the gateway's state with one
assignment: requests already running finish on the routes they started with, new ones see
the new routes. A reload whose set has a *new* problem (a file that compiled before and
no longer does, a new broken file, a conflicting rule) is refused: the last good set
keeps being served and the problem is reported (log, ``/admin/descriptors``, ``edge
check``). Problems the current set already had (a file broken since start-up) do not
block reloads of the others, nor do problems with what an upstream's reflection sent
(those files are left out alone; the problem is reported and logged).

Triggers: the watcher (polling, so it also sees Kubernetes ConfigMap symlink swaps and
network file systems), SIGHUP, ``POST /admin/reload``, and for upstreams with
``reflection: true`` every ``reflection_interval`` (a refresh is an ordinary reload, whose
sources include the upstreams' reflection; it runs beside the watcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from edge.config import Config
from edge.observability import metrics
from edge.pipeline.policy import PolicyIndex
from edge.routes import Routes, load_routes
from edge.state import StateHolder
from edge.upstream.grpc import GrpcTerminal

log = logging.getLogger("edge.reload")

WATCHED_SUFFIXES = (".proto", ".pb", ".binpb", ".desc", ".yaml", ".yml")


@dataclass(slots=True)
class ReloadStatus:
    generation: int = 1  # how many route sets have been served
    loaded_at: float = field(default_factory=time.time)
    last_attempt_at: float | None = None
    last_reason: str | None = None
    last_error: list[str] = field(default_factory=list)  # problems that blocked a reload
    reloads: int = 0
    failures: int = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "loaded_at": self.loaded_at,
            "last_attempt_at": self.last_attempt_at,
            "last_reason": self.last_reason,
            "last_error": self.last_error,
            "reloads": self.reloads,
            "failures": self.failures,
        }


@dataclass(frozen=True, slots=True)
class ReloadResult:
    applied: bool
    problems: tuple[str, ...]  # the new problems that blocked it, when not applied
    routes: int


# Problems with what an upstream's reflection sent (a file clashing with one on disk, more
# than edge takes): its files are left out on their own and the rest loads, so they are
# reported but do not refuse a reload, or one upstream could freeze every other change.
UPSTREAM_PROBLEM = "reflection from upstream "


def problem_subject(problem: str) -> str:
    """What a problem is about: its file for compile errors (whose line may move), else all."""
    head = problem.split(":", 1)[0]
    return head if head.endswith(WATCHED_SUFFIXES) else problem


def blocks_reload(problem: str) -> bool:
    """Whether a new problem refuses a reload: any but an upstream's reflection's."""
    return not problem.startswith(UPSTREAM_PROBLEM)


def snapshot_files(config: Config) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file a reload would read."""
    found: dict[str, tuple[int, int]] = {}
    roots = [*config.descriptors.proto_paths, *config.descriptors.include_paths]
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.suffix in WATCHED_SUFFIXES and path.is_file():
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    for path in config.descriptors.descriptor_sets:
        with contextlib.suppress(OSError):
            stat = Path(path).stat()
            found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return found


class Reloader:
    def __init__(
        self,
        config: Config,
        holder: StateHolder,
        terminal: GrpcTerminal | None,
        loader: Callable[[Config], Routes] = load_routes,
        policies: PolicyIndex | None = None,
    ) -> None:
        self.config = config
        self.holder = holder
        self.terminal = terminal
        self.policies = policies
        self.loader = loader
        self.status = ReloadStatus()
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[ReloadResult]] = set()
        self._watch_task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None

    async def reload(self, reason: str) -> ReloadResult:
        async with self._lock:  # one reload at a time; later triggers queue up
            self.status.last_attempt_at = time.time()
            self.status.last_reason = reason
            current = self.holder.current.routes
            try:
                routes = await asyncio.to_thread(self.loader, self.config)
            except Exception as exc:  # a reload must never take the gateway down
                log.exception("reload (%s) failed", reason)
                return self._refused([f"reload failed: {exc}"], current)
            known = {problem_subject(p) for p in current.problems}
            new_problems = [p for p in routes.problems if problem_subject(p) not in known]
            blocking = [p for p in new_problems if blocks_reload(p)]
            if blocking:
                return self._refused(blocking, current)
            for problem in new_problems:
                log.warning("reloaded with a problem from an upstream: %s", problem)
            if self.terminal is not None:
                self.terminal.open(routes.upstream_methods())
            if self.policies is not None:
                self.policies.set_sidecars(routes.sidecar_policies)
            self.holder.current = replace(self.holder.current, routes=routes)
            metrics.RELOADS.labels("applied").inc()
            self.status.generation += 1
            self.status.loaded_at = time.time()
            self.status.last_error = []
            self.status.reloads += 1
            log.info(
                "reloaded descriptors (%s): %d routes, generation %d",
                reason,
                len(routes.routes),
                self.status.generation,
            )
            return ReloadResult(True, (), len(routes.routes))

    def reload_soon(self, reason: str) -> None:
        """Reload in the background (from a signal handler), keeping the task referenced."""
        task = asyncio.create_task(self.reload(reason), name=f"edge-reload-{reason}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _refused(self, problems: list[str], current: Routes) -> ReloadResult:
        metrics.RELOADS.labels("refused").inc()
        self.status.failures += 1
        self.status.last_error = problems
        for problem in problems:
            log.error("reload refused, still serving the last good set: %s", problem)
        return ReloadResult(False, tuple(problems), len(current.routes))

    def start_watching(self, interval: float) -> None:
        """Reload by itself: on file changes, and to refresh upstreams' reflection."""
        self._watch_task = asyncio.create_task(self._watch(interval), name="edge-reload-watch")

    def start_refreshing(self) -> None:
        """Reload every ``reflection_interval`` (the shortest, if several upstreams reflect)."""
        intervals = [u.reflection_interval for u in self.config.upstreams.values() if u.reflection]
        if intervals and self._refresh_task is None:
            self._refresh_task = asyncio.create_task(
                self._refresh(min(intervals)), name="edge-reflection-refresh"
            )

    async def stop(self) -> None:
        for task in (self._watch_task, self._refresh_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watch_task = self._refresh_task = None

    async def _refresh(self, interval: float) -> None:
        # a refresh is a reload: the reflected sets are fetched again with everything else
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload("reflection refresh")
            except Exception:
                log.exception("reflection refresh error")

    async def _watch(self, interval: float) -> None:
        seen = await asyncio.to_thread(snapshot_files, self.config)
        while True:
            await asyncio.sleep(interval)
            try:
                now = await asyncio.to_thread(snapshot_files, self.config)
                if now == seen:
                    continue
                # wait for the writer to finish (editors and kubectl write in steps)
                await asyncio.sleep(min(0.5, interval))
                settled = await asyncio.to_thread(snapshot_files, self.config)
                if settled != now:
                    continue  # still changing: look again next round
                seen = settled
                await self.reload("files changed")
            except Exception:
                log.exception("descriptor watcher error")
