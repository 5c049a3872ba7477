"""Reply streams (and proxied bodies) that report their end once, for the layers that count."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class WatchedStream(Generic[Item]):
    """A reply stream whose end is reported exactly once, however it ends.

    A generator's ``finally`` would not run for a stream that is dropped before its first
    item (a WebSocket closed before the replies), leaking an in-flight count, a gauge and,
    when half-open, the breaker's only probe. Here ``finish`` is called on the last item
    (False: no failure), on an error (with ``classify``'s verdict), on ``aclose`` and, as a
    last resort, when the object is collected (both None: no outcome). ``first``, when
    given, is called once, with the first item (a breaker's probe takes its verdict there).
    """

    __slots__ = ("_classify", "_done", "_finish", "_first", "_stream")

    def __init__(
        self,
        stream: AsyncIterator[Item],
        finish: Callable[[bool | None], None],
        classify: Callable[[BaseException], bool | None],
        first: Callable[[], None] | None = None,
    ) -> None:
        self._stream = stream
        self._finish = finish
        self._classify = classify
        self._first = first
        self._done = False

    def __aiter__(self) -> WatchedStream[Item]:
        return self

    async def __anext__(self) -> Item:
        try:
            item = await self._stream.__anext__()
        except StopAsyncIteration:
            self._end(False)
            raise
        except BaseException as error:
            self._end(self._classify(error))
            raise
        if self._first is not None:
            first, self._first = self._first, None
            first()
        return item

    async def aclose(self) -> None:
        self._end(None)
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()

    def _end(self, outcome: bool | None) -> None:
        if not self._done:
            self._done = True
            self._finish(outcome)

    def __del__(self) -> None:
        self._end(None)
