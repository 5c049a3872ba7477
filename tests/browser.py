"""Headless Chromium driven over the Chrome DevTools protocol, for the browser tests.

No browser-automation dependency: Chromium is started with ``--remote-debugging-port=0``,
its "DevTools listening" line gives the port, and a page is spoken to over its DevTools
WebSocket with the ``websockets`` library (``Page``).

Chromium is required: when the ``chromium`` binary is missing a test using it fails with
a clear message (``scripts/test`` installs Debian's package), unless
``EDGE_SKIP_BROWSER=1`` is set, in which case it is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)
_DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)")


def chromium_binary() -> str:
    binary = shutil.which("chromium")
    if binary is not None:
        return binary
    if os.environ.get("EDGE_SKIP_BROWSER") == "1":
        pytest.skip("chromium is not installed and EDGE_SKIP_BROWSER=1")
    pytest.fail(
        "the browser test needs the `chromium` binary on PATH: run scripts/test (it "
        "installs Debian's chromium) or `apt-get install chromium`; set EDGE_SKIP_BROWSER=1 "
        "to skip this test instead",
        pytrace=False,
    )


@contextlib.contextmanager
def chromium(folder: Path) -> Iterator[int]:
    """Headless Chromium on about:blank; yields its DevTools HTTP port.

    Chromium runs in its own session (process group), killed as a whole at the end, so no
    renderer or zygote outlives the test. Its stderr goes to a file (a pipe nobody drains
    could fill and stall the browser), read for the "DevTools listening" line.
    """
    binary = chromium_binary()
    log_path = folder / "stderr.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={folder / 'profile'}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        yield _wait_for_devtools(process, log_path)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def _wait_for_devtools(process: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        found = _DEVTOOLS_LINE.search(text)
        if found:
            return int(found.group(2))
        if process.poll() is not None:
            pytest.fail(f"chromium exited with {process.returncode}:\n{text[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"chromium printed no DevTools line in 30s:\n{text[-3000:]}")


class Page:
    """One browser page, spoken to over its DevTools WebSocket.

    Events that arrive while waiting for an answer are kept in ``events`` (after
    ``Network.enable``, for instance, every request the page makes).
    """

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ids = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one DevTools command and return its ``result`` (an error fails the test)."""
        self.ids += 1
        await self.socket.send(
            json.dumps({"id": self.ids, "method": method, "params": params or {}})
        )
        while True:  # answers carry the request's id; anything else is an event
            message = json.loads(await self.socket.recv())
            if message.get("id") == self.ids:
                break
            self.events.append(message)
        assert "error" not in message, message["error"]
        result: dict[str, Any] = message["result"]
        return result

    async def evaluate(self, expression: str) -> Any:
        """Evaluate a script, await the Promise it ends with, and return its value."""
        result = await self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        assert "exceptionDetails" not in result, json.dumps(result["exceptionDetails"], indent=1)
        return result["result"].get("value")

    async def navigate(self, url: str, timeout: float = 15) -> None:
        """Load ``url`` and wait until its document (and its scripts) finished loading."""
        await self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = await self.call(
                "Runtime.evaluate",
                {"expression": "[location.href, document.readyState]", "returnByValue": True},
            )
            value = state.get("result", {}).get("value")
            if value == [url, "complete"]:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{url} did not finish loading in {timeout}s")


@contextlib.asynccontextmanager
async def open_page(devtools_port: int) -> AsyncIterator[Page]:
    """The browser's first page target, over its DevTools WebSocket."""
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        targets = (await http.get(f"http://127.0.0.1:{devtools_port}/json")).json()
    pages = [t for t in targets if t["type"] == "page"]
    assert pages, f"no page target among {targets}"
    async with connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as cdp:
        yield Page(cdp)
