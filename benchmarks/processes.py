"""The servers under test as child processes: start on free loopback ports, wait, always stop.

Each server runs in a process of its own so ``/proc`` charges its CPU to it alone, and in a
session of its own so stopping its process group also stops anything it spawned. The
kernel is asked to SIGTERM each child if this orchestrator dies first, so even a crash
(where ``finally`` never runs) leaves no server holding a port.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        """Raise with the end of the child's log if it has exited; a dead server's figures lie."""
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with {code}:\n{self.log_tail()}")


def free_port() -> int:
    """A loopback port that was free a moment ago (the child binds it straight away)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> Child:
    """Start ``argv`` in a new session, stdout and stderr to ``log_dir/name.log``.

    Output goes to a file, never a pipe: a pipe nobody reads fills and stalls the server
    mid-run. ``env`` is added to this process's environment.
    """
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return Child(name, process, log)


def spawn_edge(
    name: str, settings: Mapping[str, Any], log_dir: Path, cwd: Path, children: list[Child]
) -> Child:
    """``edge serve`` with ``settings`` (written to ``log_dir/name.yaml``: JSON is YAML),
    appended to ``children`` as soon as it exists, for the caller's ``finally`` to stop."""
    config = log_dir / f"{name}.yaml"
    config.write_text(json.dumps(settings))
    argv = [sys.executable, "-m", "edge.cli", "serve", "--config", str(config)]
    child = spawn(name, argv, log_dir, cwd)
    children.append(child)
    return child


def stop(child: Child, timeout: float = 5.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            # start_new_session made the child a group leader: its pgid is its pid.
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
        try:
            child.process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue
    child.process.wait()


def wait_for_file(child: Child, path: Path, timeout: float = 30.0) -> str:
    """The contents of ``path`` once the child has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check_alive()
        if path.exists():
            return path.read_text().strip()
        time.sleep(0.05)
    raise TimeoutError(f"{child.name} did not write {path} within {timeout}s:\n{child.log_tail()}")


def wait_for_http(
    child: Child, url: str, body: bytes | None = None, timeout: float = 30.0
) -> bytes:
    """Poll ``url`` until it answers 200 and return the body (POST when ``body`` is given).

    Checking the answer, not just the port, matters: a 404 served fast is a fine-looking
    benchmark of nothing.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        child.check_alive()
        request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                return bytes(reply.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{child.name}: {url} answered {exc.code}: {exc.read()!r}") from exc
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{child.name}: {url} not ready in {timeout}s ({last}):\n{child.log_tail()}")
