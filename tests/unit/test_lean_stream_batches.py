"""Reading reply streams in batches of ready messages, and sends timed only when they wait.

``edge.ingress.transcoded_streams._Pull`` starts each ``__anext__`` by hand to learn
whether the next message is already there; one that suspends is kept and finished later
by ``finish_step``, as a task would. Random streams (messages ready, behind a future, or
behind a bare yield; ending well or with an error) must come out whole and in order,
each batch one message plus exactly the ready ones after it; a read left waiting must
see the reader's cancellation (and ``close``) as a cancelled task's read would. A
stream's send (``timed_send``) must pass a send that finishes at once straight through
and hold one that waits to its rule.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import ClientStalled, UpstreamStatus
from edge.ingress.asgi import timed_send
from edge.ingress.steps import finish_step
from edge.ingress.transcoded_streams import _DONE, _Pull


class Scripted:
    """A reply stream: each item is ready, behind a future set soon, or behind a yield."""

    def __init__(self, kinds: list[str], error: bool) -> None:
        self.kinds = kinds
        self.error = error
        self.index = 0
        self.seen: list[str] = []  # what the reads saw: "cancelled" when one was

    def __aiter__(self) -> Scripted:
        return self

    async def __anext__(self) -> bytes:
        index = self.index
        if index == len(self.kinds):
            if self.error:
                raise UpstreamStatus(13, "late")
            raise StopAsyncIteration
        kind = self.kinds[index]
        try:
            if kind == "future":
                future = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().call_soon(future.set_result, None)
                await future
            elif kind == "yield":
                await asyncio.sleep(0)
            elif kind == "never":
                await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.seen.append("cancelled")
            raise
        self.index += 1
        return b"%d" % index


@settings(max_examples=300, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["ready", "ready", "future", "yield"]), max_size=30),
    error=st.booleans(),
)
def test_batches_are_whole_in_order_and_cut_only_where_a_message_was_not_ready(
    kinds: list[str], error: bool
) -> None:
    async def run() -> None:
        stream = Scripted(kinds, error)
        pull = _Pull(stream, lambda message: message)
        batches: list[list[bytes]] = []
        raised: Any = None
        while pull.ended is None:
            try:
                batch = await pull.next_ready()
            except UpstreamStatus as failure:
                raised = failure
                break
            if batch:
                batches.append(batch)
        got = [item for batch in batches for item in batch]
        assert got == [b"%d" % i for i in range(len(kinds))]
        # a batch goes on while the next message is ready, and stops where it is not
        starts = [0] if batches else []
        for batch in batches[:-1]:
            starts.append(starts[-1] + len(batch))
        for start in starts[1:]:
            assert kinds[start] != "ready"
        for start, batch in zip(starts, batches, strict=True):
            assert all(kind == "ready" for kind in kinds[start + 1 : start + len(batch)])
        outcome = raised if raised is not None else pull.ended
        if error:
            assert isinstance(outcome, UpstreamStatus) and outcome.message == "late"
        else:
            assert outcome is _DONE

    asyncio.run(run())


def test_a_read_left_waiting_sees_the_readers_cancellation() -> None:
    async def run() -> None:
        stream = Scripted(["ready", "never"], False)
        pull = _Pull(stream, lambda message: message)
        assert await pull.next_ready() == [b"0"]  # the read of the second was started
        task = asyncio.create_task(pull.next_ready())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stream.seen == ["cancelled"]

    asyncio.run(run())


def test_close_ends_a_read_left_waiting_as_a_cancelled_task_would() -> None:
    async def run() -> None:
        stream = Scripted(["ready", "never"], False)
        pull = _Pull(stream, lambda message: message)
        assert await pull.next_ready() == [b"0"]
        pull.close()
        assert stream.seen == ["cancelled"]

    asyncio.run(run())


def test_finish_step_passes_a_futures_exception_to_the_step() -> None:
    async def step_body(future: asyncio.Future[None]) -> str:
        try:
            await future
        except ValueError:
            return "saw it"
        return "no"

    async def run() -> None:
        future = asyncio.get_running_loop().create_future()
        step = step_body(future)
        waiting = step.send(None)
        future.set_exception(ValueError())
        assert await finish_step(step, waiting) == "saw it"

    asyncio.run(run())


BODY = {"type": "websocket.send", "text": "x"}


def test_a_frame_taken_at_once_is_sent_without_the_timer() -> None:
    sent: list[Any] = []

    async def at_once(event: Any) -> None:
        sent.append(event)

    async def run() -> None:
        scope = {"type": "websocket", "extensions": {"edge.progress": _no_progress}}
        await timed_send(at_once, 0.05, scope)(BODY)
        assert sent == [BODY]

    asyncio.run(run())


def _no_progress() -> int:
    raise AssertionError("a frame taken at once needs no look at the socket's progress")


def test_a_frame_that_waits_is_held_to_the_send_timeout() -> None:
    resumed: list[str] = []

    async def stuck(event: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            resumed.append("cancelled")
            raise

    async def slow(event: Any) -> None:
        await asyncio.sleep(0.01)
        resumed.append("sent")

    async def run() -> None:
        aborted: list[int] = []
        scope = {"type": "websocket", "extensions": {"edge.abort": lambda: aborted.append(1)}}
        await timed_send(slow, 1.0, scope)(BODY)
        with pytest.raises(ClientStalled):
            await timed_send(stuck, 0.05, scope)(BODY)
        assert resumed == ["sent", "cancelled"]
        assert aborted == [1]

    asyncio.run(run())
