"""A replaced generation lets go of its resources exactly when its last call ends."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from edge.state import Generation, LiveFront, StateHolder


def state(front: Any, number: int) -> Any:
    return SimpleNamespace(front=front, life=Generation(number))


async def test_a_replaced_generation_is_released_after_its_last_call_and_not_before() -> None:
    finish = asyncio.Event()
    served: list[int] = []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        served.append(1)
        await finish.wait()

    async def quick(scope: Any, receive: Any, send: Any) -> None:
        served.append(2)

    old, new = state(slow, 1), state(quick, 2)
    holder = StateHolder(old)
    front = LiveFront(holder)

    async def in_its_own_task(scope: Any) -> None:  # as servers call an ASGI app
        await front(scope, None, None)

    call = asyncio.create_task(in_its_own_task({"type": "http"}))
    await asyncio.sleep(0)
    assert old.life.active == 1
    holder.current = new
    released: list[int] = []

    async def release() -> None:
        released.append(1)

    old.life.retire(new, release)
    await asyncio.create_task(in_its_own_task({"type": "http"}))  # to the new generation
    await asyncio.sleep(0.01)
    assert served == [1, 2] and released == []  # the old call still runs
    finish.set()
    await call
    await asyncio.sleep(0.01)
    assert released == [1] and old.life.active == 0 and new.life.active == 0


async def test_an_idle_generation_is_released_at_once_and_only_once() -> None:
    life = Generation(3)
    released: list[int] = []

    async def release() -> None:
        released.append(1)

    life.retire(state(None, 4), release)
    await asyncio.sleep(0.01)
    assert released == [1] and life.on_idle is None


async def test_the_lifespan_is_not_counted_as_a_call() -> None:
    """It lasts as long as the app: counted, no generation would ever be idle."""
    seen: list[int] = []

    async def front(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current.life.active)

    current = state(front, 1)
    live = LiveFront(StateHolder(current))
    await live({"type": "lifespan"}, None, None)
    await live({"type": "http"}, None, None)
    assert seen == [0, 1]
