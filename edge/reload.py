"""Live reload: the config file and the descriptors, read again and swapped in whole.

A reload reads the config file again (as ``edge serve`` read it: environment and command
line included), compiles the descriptors in a worker thread (never on the event loop),
builds the whole new gateway beside the running one (``edge.assembly``: pipeline,
channels, adapters), and only then swaps the state with one assignment. Requests, streams
and sockets already running finish on the config they started with; new ones see the new
one; the replaced generation lets go of what it alone held (channels to an upstream that
moved, say) when its last call ends (``edge.state.Generation``). What did not change is
kept, not rebuilt: warm channels, breaker state, limiter counters (``edge.leases``).

Anything wrong refuses the whole reload and changes nothing: a config that does not parse
or validate (the problem names the key, or the line and column), one that cannot be built
(a policy needing credentials nobody configured, an unreadable TLS file), a descriptor set
with a *new* problem (a file that compiled before and no longer does, a new broken file,
a conflicting rule). The problem is logged, counted (``edge_config_reload_total``) and
shown by ``/admin/descriptors``. Problems the current set already had (a file broken
since start-up) do not block reloads of the others, nor do problems with what an
upstream's reflection sent (those files are left out alone; the problem is reported and
logged). Settings read only at start (listeners, workers; ``edge.config_source``) keep
their running values, and the reload says they need a restart.

Triggers: the watcher (polling the config file and the descriptor files, so it also sees
Kubernetes ConfigMap symlink swaps and network file systems), SIGHUP, ``POST
/admin/reload``, and for upstreams with ``reflection: true`` every ``reflection_interval``
(a refresh is an ordinary reload, whose sources include the upstreams' reflection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import heap
from edge.config import Config
from edge.config_source import ConfigSource, keep_running
from edge.errors import ConfigError
from edge.leases import Lease, Shared
from edge.observability import metrics
from edge.routes import Routes, load_routes
from edge.state import GatewayState, StateHolder
from edge.workers import WorkerGroup

log = logging.getLogger("edge.reload")

WATCHED_SUFFIXES = (".proto", ".pb", ".binpb", ".desc", ".yaml", ".yml")


@dataclass(slots=True)
class ReloadStatus:
    loaded_at: float = field(default_factory=time.time)
    last_attempt_at: float | None = None
    last_reason: str | None = None
    last_error: list[str] = field(default_factory=list)  # problems that blocked a reload
    reloads: int = 0
    failures: int = 0
    # settings a reload changed that keep their running values until a restart
    restart_needed: list[str] = field(default_factory=list)

    def snapshot(self) -> dict[str, object]:
        return {
            "worker": os.getpid(),  # with --workers N, which one answered
            "loaded_at": self.loaded_at,
            "last_attempt_at": self.last_attempt_at,
            "last_reason": self.last_reason,
            "last_error": self.last_error,
            "reloads": self.reloads,
            "failures": self.failures,
            "restart_needed": self.restart_needed,
        }


@dataclass(frozen=True, slots=True)
class ReloadResult:
    applied: bool
    problems: tuple[str, ...]  # the new problems that blocked it, when not applied
    routes: int
    restart_needed: tuple[str, ...] = ()  # changed settings that wait for a restart


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


def snapshot_files(config: Config, config_file: Path | None = None) -> dict[str, tuple[int, ...]]:
    """(mtime_ns, size, inode) of every file a reload would read: the config file (through
    its symlinks: a ConfigMap update swaps them), the listener's certificate and key, and
    the descriptors."""
    found: dict[str, tuple[int, ...]] = {}
    # the config file, and the listener's certificate (renewed by a reload)
    for path in (config_file, config.server.certfile, config.server.keyfile):
        if path is None:
            continue
        with contextlib.suppress(OSError):
            stat = path.stat()
            found[str(path)] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    roots = [*config.descriptors.proto_paths, *config.descriptors.include_paths]
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.suffix in WATCHED_SUFFIXES and path.is_file():
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    found[str(path)] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    for path in config.descriptors.descriptor_sets:
        with contextlib.suppress(OSError):
            stat = Path(path).stat()
            found[str(path)] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    return found


# builds the gateway for a config (edge.assembly.assemble with the app's parts)
Assemble = Callable[[Config, Routes, Lease, int], Awaitable[GatewayState]]


class Reloader:
    """Reads, builds and swaps; one reload at a time, later triggers wait their turn."""

    def __init__(
        self,
        holder: StateHolder,
        assemble: Assemble,
        shared: Shared,
        source: ConfigSource | None = None,
        loader: Callable[[Config], Routes] = load_routes,
        applied: Callable[[Config], None] | None = None,
        group: WorkerGroup | None = None,
    ) -> None:
        self.holder = holder
        self.assemble = assemble
        self.shared = shared
        self.source = source  # None: the config given at start is kept (descriptors only)
        self.loader = loader
        self.applied = applied  # told of each config swapped in (log level, access log)
        self.group = group  # with --workers N: the files the group's workers share
        self.status = ReloadStatus()
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[ReloadResult]] = set()
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_interval: float | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._refresh_interval: float | None = None
        self.previous: Config | None = None  # the config served before the last swap

    @property
    def config(self) -> Config:
        return self.holder.current.config

    async def reload(self, reason: str, config: Config | None = None) -> ReloadResult:
        """Read the config again and apply it; ``config``: apply that one instead."""
        async with self._lock:  # one reload at a time; later triggers queue up
            result = await self._reload(reason, config)
            if self.group is not None:  # what the worker answering an admin reload reads
                await asyncio.to_thread(self.group.report, self.outcome(result))
            return result

    def outcome(self, result: ReloadResult | None = None) -> dict[str, object]:
        """This worker's last reload, as ``POST /admin/reload`` reports it per worker."""
        status = self.status
        return {
            "worker": os.getpid(),
            "attempts": status.reloads + status.failures,
            "generation": self.holder.current.life.number,
            "applied": result.applied if result is not None else True,
            "problems": list(result.problems) if result is not None else [],
            "restart_needed": list(result.restart_needed) if result is not None else [],
            "routes": len(self.holder.current.routes.routes),
        }

    async def rollback(self) -> ReloadResult:
        """Serve the config served before the last applied reload again (the descriptors
        read anew). Until the next reload: that reads the file again."""
        if self.previous is None:
            return ReloadResult(False, ("no earlier config to roll back to",), 0)
        return await self.reload("rollback", self.previous)

    async def _reload(self, reason: str, chosen: Config | None) -> ReloadResult:
        self.status.last_attempt_at = time.time()
        self.status.last_reason = reason
        running = self.holder.current
        current = running.routes
        try:
            config, restart = await self._read(self.config, chosen)
            routes = await asyncio.to_thread(self.loader, config)
        except ConfigError as exc:
            return self._refused([str(exc)], current)
        except Exception as exc:  # a reload must never take the gateway down
            log.exception("reload (%s) failed", reason)
            return self._refused([f"reload failed: {type(exc).__name__}"], current)
        known = {problem_subject(p) for p in current.problems}
        new_problems = [p for p in routes.problems if problem_subject(p) not in known]
        blocking = [p for p in new_problems if blocks_reload(p)]
        if blocking:
            return self._refused(blocking, current)
        lease = self.shared.lease()
        generation = running.life.number + 1
        try:
            state = await self.assemble(config, routes, lease, generation)
        except ConfigError as exc:
            await lease.release()
            return self._refused([str(exc)], current)
        except Exception as exc:
            await lease.release()
            log.exception("reload (%s) failed building the gateway", reason)
            return self._refused([f"reload failed: {type(exc).__name__}"], current)
        for problem in new_problems:
            log.warning("reloaded with a problem from an upstream: %s", problem)
        self.holder.current = state
        self.previous = running.config
        running.life.retire(state, lambda: _release(running))
        heap.settle("reload")  # the new generation's heap is long-lived now
        if self.applied is not None:
            self.applied(config)
        self._follow(config)
        metrics.RELOADS.labels("applied").inc()
        self.status.loaded_at = time.time()
        self.status.last_error = []
        self.status.reloads += 1
        self.status.restart_needed = restart
        for key in restart:
            log.warning("%s changed: it keeps its running value until a restart", key)
        log.info(
            "reloaded (%s): %d routes, generation %d",
            reason,
            len(routes.routes),
            generation,
        )
        return ReloadResult(True, (), len(routes.routes), tuple(restart))

    async def _read(self, running: Config, chosen: Config | None) -> tuple[Config, list[str]]:
        """The config to apply: ``chosen``, or the file read again (the running one,
        without a file), with the restart-only settings kept, and those that changed."""
        if chosen is not None:
            return keep_running(chosen, running)
        if self.source is None:
            return running, []
        return keep_running(await asyncio.to_thread(self.source.load), running)

    def snapshot(self) -> dict[str, object]:
        """The status, with the generation being served (how many configs have been)."""
        return {**self.status.snapshot(), "generation": self.holder.current.life.number}

    def reload_soon(self, reason: str) -> None:
        """Reload in the background (from a signal handler), keeping the task referenced."""
        self._soon(self.reload(reason), f"edge-reload-{reason}")

    def rollback_soon(self) -> None:
        self._soon(self.rollback(), "edge-rollback")

    def _soon(self, work: Coroutine[Any, Any, ReloadResult], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _refused(self, problems: list[str], current: Routes) -> ReloadResult:
        metrics.RELOADS.labels("refused").inc()
        self.status.failures += 1
        self.status.last_error = problems
        for problem in problems:
            log.error("reload refused, still serving the last good config: %s", problem)
        return ReloadResult(False, tuple(problems), len(current.routes))

    def start(self) -> None:
        """Reload by itself: on file changes, and to refresh upstreams' reflection."""
        self._follow(self.config)

    def _follow(self, config: Config) -> None:
        """The watcher and the reflection refresh as ``config`` asks (restarted on change)."""
        watch = config.descriptors.watch_interval if config.descriptors.watch else None
        if self.group is not None and self.group.index != 0:
            watch = None  # with --workers N, the first worker watches for all of them
        if watch != self._watch_interval:
            self._cancel(self._watch_task)
            self._watch_task = None
            if watch is not None:
                self._watch_task = asyncio.create_task(self._watch(watch), name="edge-watch")
            self._watch_interval = watch
        intervals = [u.reflection_interval for u in config.upstreams.values() if u.reflection]
        refresh = min(intervals) if intervals else None
        if refresh != self._refresh_interval:
            self._cancel(self._refresh_task)
            self._refresh_task = None
            if refresh is not None:
                self._refresh_task = asyncio.create_task(
                    self._refresh(refresh), name="edge-reflection-refresh"
                )
            self._refresh_interval = refresh

    @staticmethod
    def _cancel(task: asyncio.Task[None] | None) -> None:
        # not from inside itself: a reload run by the watcher may restart the watcher
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def stop(self) -> None:
        for task in (self._watch_task, self._refresh_task, *self._pending):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watch_task = self._refresh_task = None
        self._watch_interval = self._refresh_interval = None

    async def _refresh(self, interval: float) -> None:
        # a refresh is a reload: the reflected sets are fetched again with everything else
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload("reflection refresh")
            except Exception:
                log.exception("reflection refresh error")

    def _files(self) -> dict[str, tuple[int, ...]]:
        return snapshot_files(self.config, self.source.path if self.source else None)

    async def _watch(self, interval: float) -> None:
        seen = await asyncio.to_thread(self._files)
        while True:
            await asyncio.sleep(interval)
            try:
                now = await asyncio.to_thread(self._files)
                if now == seen:
                    continue
                # wait for the writer to finish (editors and kubectl write in steps)
                await asyncio.sleep(min(0.5, interval))
                settled = await asyncio.to_thread(self._files)
                if settled != now:
                    continue  # still changing: look again next round
                seen = settled
                if self.group is not None:
                    # the supervisor reloads every worker at once (this one too), so that
                    # workers do not each see the change at their own moment
                    self.group.reload_all()
                    continue
                await self.reload("files changed")
                if self._watch_task is not asyncio.current_task():
                    return  # that reload changed the interval: a new watcher took over
                # the files of the config now served (a reload may have moved the folders)
                seen = await asyncio.to_thread(self._files)
            except Exception:
                log.exception("reload watcher error")


async def _release(state: GatewayState) -> None:
    """Retire a replaced generation, then collect what it leaves (some of it is cycles)."""
    await retire(state)
    heap.settle(f"generation {state.life.number} released")


async def retire(state: GatewayState) -> None:
    """Let go of what a replaced generation held, once its last call has ended."""
    await state.pipeline.close()
    if state.lease is not None:
        await state.lease.release()
