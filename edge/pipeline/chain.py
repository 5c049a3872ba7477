"""Composing policy layers around the terminal step, once, at start-up.

The layer contract follows aiohttp's client middlewares: a layer receives the call and
the rest of the chain; code before ``await next_(call)`` sees the request, code after
it sees the reply (or the exception). The chain is a plain closure nest built once, so
an empty pipeline costs nothing per request: it *is* the terminal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

from edge.call import Call, Reply

Next = Callable[[Call], Awaitable[Reply]]
Layer = Callable[[Call, Next], Awaitable[Reply]]


def build_chain(layers: Sequence[Layer], terminal: Next) -> Next:
    """``layers[0]`` is outermost; with no layers the terminal itself is returned."""
    chain = terminal
    for layer in reversed(layers):
        chain = _link(layer, chain)
    return chain


def _link(layer: Layer, next_: Next) -> Next:
    # a plain function handing back the layer's own awaitable: no coroutine of its own
    # per layer and call, so a link costs one Python call (the chain is five deep)
    def step(call: Call) -> Awaitable[Reply]:
        return layer(call, next_)

    return step


class _Done:
    """An awaitable that is already done: what a door returns when it decided at once, so
    the caller's ``await`` costs no coroutine, and a layer can tell (``is DONE``)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]  # ends at once, with None


DONE: Awaitable[None] = _Done()
