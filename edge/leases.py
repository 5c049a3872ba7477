"""Resources that outlive a configuration when the next one asks for the same thing.

A reload builds a whole new gateway beside the running one (``edge.assembly``), and the
old one keeps serving the calls, streams and sockets that started on it until they end.
Some of what both build is the same thing: a channel to an upstream whose settings did not
change, a Redis client, a proxy's connection pools. Building those twice would drop warm
connections on every reload and, for stateful things, lose their state. So each
generation takes them through a ``Lease`` on the app's one ``Shared`` pool, keyed by what
they are made from: the second generation to ask for the same key gets the same object,
and an object is closed only when the last generation holding it lets go (once its own
calls have ended), never while any generation can still use it.

Sans-IO apart from the closing, which is the caller's ``close`` coroutine.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger("edge.leases")

T = TypeVar("T")
Closer = Callable[[Any], Awaitable[None]]


@dataclass(slots=True)
class _Held:
    value: Any
    close: Closer
    holders: int


class Shared:
    """The app's pool: one object per key, counted by the leases holding it."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[Hashable, _Held] = {}

    def lease(self) -> Lease:
        return Lease(self)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)

    async def close(self) -> None:
        """Close everything still held (at shutdown: a stream's generation may hold some)."""
        held, self._held = self._held, {}
        for item in reversed(held.values()):
            try:
                await item.close(item.value)
            except Exception:
                log.exception("closing a shared resource failed")

    def _take(self, key: Hashable, make: Callable[[], T], close: Closer) -> T:
        held = self._held.get(key)
        if held is None:
            value = make()  # if this raises, nothing is held
            self._held[key] = _Held(value, close, 1)
            return value
        held.holders += 1
        kept: T = held.value
        return kept

    async def _let_go(self, key: Hashable) -> None:
        held = self._held[key]
        held.holders -= 1
        if held.holders > 0:
            return
        del self._held[key]
        try:
            await held.close(held.value)
        except Exception:  # one resource failing to close must not keep the others open
            log.exception("closing a shared resource failed")


class Lease:
    """What one generation holds from the pool; ``release`` lets go of all of it."""

    __slots__ = ("_keys", "_shared")

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        self._keys: list[Hashable] = []

    def take(self, key: Hashable, make: Callable[[], T], close: Closer) -> T:
        """The object for ``key``: the one already held, else ``make()``'s (closed with
        ``close`` once nobody holds it). A lease holds a key at most once."""
        if key in self._keys:
            held: T = self._shared._held[key].value
            return held
        value = self._shared._take(key, make, close)
        self._keys.append(key)
        return value

    async def release(self) -> None:
        keys, self._keys = self._keys, []
        for key in reversed(keys):
            await self._shared._let_go(key)
