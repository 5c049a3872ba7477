"""The request body's idle timeout: armed only for a read that has to wait.

A unary request's body is nearly always in before the app reads it, and arming
``asyncio.timeout`` for that read cost about 4 us a request; the guard starts the read by
hand and only a read that suspends is timed (``edge.ingress.steps``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edge.errors import RequestTimeout
from edge.ingress import request_guard
from edge.ingress.request_guard import _Body


async def _nothing(message: Any) -> None:
    return None


async def test_a_body_already_in_is_read_without_a_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_timer(delay: float) -> Any:
        raise AssertionError("armed a timeout for a read that did not wait")

    monkeypatch.setattr(request_guard.asyncio, "timeout", no_timer)

    async def ready() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    body = _Body(ready, _nothing, 5.0, None)
    assert await body.receive() == {"type": "http.request", "body": b"{}", "more_body": False}


async def test_a_read_that_waits_is_timed_and_gets_its_message() -> None:
    arrived: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def later() -> dict[str, Any]:
        return await arrived

    body = _Body(later, _nothing, 5.0, None)
    reading = asyncio.ensure_future(body.receive())
    await asyncio.sleep(0)
    arrived.set_result({"type": "http.request", "body": b"x", "more_body": False})
    assert (await reading)["body"] == b"x"


async def test_a_stalled_body_still_times_out() -> None:
    async def never() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    body = _Body(never, _nothing, 0.05, None)
    with pytest.raises(RequestTimeout, match=r"stalled for 0\.05s"):
        await body.receive()


async def test_a_receive_that_is_not_a_coroutine_is_timed_too() -> None:
    """An app server may hand over any awaitable (a future here)."""
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    body = _Body(lambda: future, _nothing, 0.05, None)  # type: ignore[arg-type,return-value]
    with pytest.raises(RequestTimeout):
        await body.receive()
