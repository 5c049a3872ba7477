"""edge's shortened h11 bookkeeping against stock h11: the same conversation, the same state.

Both connections are given the same random conversation (request bytes in random pieces,
end of input, the server's replies, bodies, ends, new cycles, closes and failures) and
after every step the result (event, bytes or error) and every piece of h11's state that
can change are compared: both roles' states, keep-alive, pending switches, the peer's
version, the request method, the 100-continue flag, and the reader and writer with their
own counters.
"""

from __future__ import annotations

from typing import Any

import h11
import pytest
from h11._readers import READERS
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ingress.h11_continue import ContinueOnRead
from edge.ingress.h11_fields import response_fields
from edge.ingress.h11_requests import read_request
from edge.ingress.h11_states import FastStates

BODY = b"0123456789"


@st.composite
def requests(draw: Any) -> bytes:
    """A request head and body, mostly the common kind, sometimes each unusual kind."""
    method = draw(st.sampled_from([b"GET", b"POST", b"POST", b"HEAD", b"CONNECT", b"PUT"]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0"]))
    fields = [b"Host: a"]
    body = b""
    framing = draw(st.sampled_from(["length"] * 4 + ["none", "chunked", "wrong"]))
    size = draw(st.integers(0, len(BODY)))
    if framing == "length":
        fields.append(b"Content-Length: %d" % size)
        body = BODY[:size]
    elif framing == "wrong":  # declared longer than sent: the next request is read as body
        fields.append(b"Content-Length: %d" % (size + 3))
        body = BODY[:size]
    elif framing == "chunked":
        fields.append(b"Transfer-Encoding: chunked")
        body = (b"%x\r\n%s\r\n" % (size, BODY[:size]) if size else b"") + b"0\r\n\r\n"
    extras = [
        b"Connection: close",
        b"Connection: keep-alive",
        b"Connection: Upgrade",
        b"Upgrade: websocket",
        b"Expect: 100-continue",
        b"Content-Length: 1, 1",
        b"X-Other: close",
        b"Expect: 100-Continue",
        b"Expect:",
        b"Connection:",
        b"Upgrade:",
        b"Connection: upgrade, close",
        b"Transfer-Encoding: chunked",
        b"Host: b",
    ]
    if draw(st.integers(0, 2)) == 0:
        fields += draw(st.lists(st.sampled_from(extras), min_size=1, max_size=2))
    head: bytes = method + b" / " + version + b"\r\n" + b"\r\n".join(fields) + b"\r\n\r\n"
    return head + body


replies = st.tuples(
    st.sampled_from([200, 200, 200, 404, 204, 304, 101, 100, 103, 500]),
    st.lists(
        st.sampled_from(
            [
                (b"content-length", b"4"),
                (b"content-length", b"4"),
                (b"content-length", b"0"),
                (b"Content-Type", b"application/json"),
                (b"transfer-encoding", b"chunked"),
                (b"connection", b"close"),
                (b"Connection", b"keep-alive"),
                (b"upgrade", b"h2c"),
                (b"host", b"x"),
            ]
        ),
        max_size=3,
    ),
)

steps = st.one_of(
    st.tuples(st.just("feed"), st.lists(requests(), min_size=1, max_size=2), st.integers(0, 60)),
    st.tuples(st.just("part"), requests(), st.integers(1, 60)),  # a head or body cut short
    st.tuples(st.just("next")),
    st.tuples(st.just("next")),
    st.tuples(st.just("reply"), replies),
    # as edge's GuardedH11Protocol.head makes them, and other ``_parsed`` replies
    st.tuples(
        st.just("parsed"),
        replies,
        st.sampled_from([b"", b"", b"OK", "OK"]),
        st.sampled_from([b"1.1", b"1.1", "1.1", b"1.0"]),
        st.sampled_from([int, int, float]),
    ),
    st.tuples(st.just("want")),
    st.tuples(st.just("data"), st.sampled_from([b"", b"ab", b"abcd", b"abcdef"])),
    st.tuples(st.just("end"), st.sampled_from([[], [(b"x-trailer", b"1")]])),
    st.tuples(st.just("cycle")),
    st.tuples(st.just("eof")),
    st.tuples(st.just("close")),
    st.tuples(st.just("failed")),
)


def _describe(part: Any) -> Any:
    """A reader or writer as a comparable value: its kind and its own counters."""
    if part is None or not hasattr(part, "__dict__"):
        return getattr(part, "__qualname__", part)
    return type(part).__name__, sorted(vars(part).items())


def _state(connection: h11.Connection) -> Any:
    cstate = connection._cstate
    return (
        dict(cstate.states),
        cstate.keep_alive,
        set(cstate.pending_switch_proposals),
        connection.their_http_version,
        connection._request_method,
        connection.client_is_waiting_for_100_continue,
        _describe(connection._reader),
        _describe(connection._writer),
        connection.trailing_data,
    )


def _event(event: Any) -> Any:
    if isinstance(event, h11.Request | h11.Response | h11.InformationalResponse):
        return type(event).__name__, repr(event), event.headers.raw_items()
    return repr(event)


def _step(connection: h11.Connection, step: tuple[Any, ...]) -> Any:
    kind = step[0]
    try:
        if kind == "feed":
            stream = b"".join(step[1])
            connection.receive_data(stream[: step[2]])
            connection.receive_data(stream[step[2] :])
            return None
        if kind == "part":
            connection.receive_data(step[1][: step[2]])
            return None
        if kind == "next":
            return _event(connection.next_event())
        if kind == "reply":
            status, fields = step[1]
            if status < 200:
                return connection.send(
                    h11.InformationalResponse(status_code=status, headers=fields)
                )
            return connection.send(h11.Response(status_code=status, headers=fields))
        if kind == "parsed":
            status, fields = step[1]
            reply = h11.Response(
                status_code=step[4](status) if status >= 200 else 200,
                headers=response_fields(fields) or fields,
                reason=step[2],
                http_version=step[3],
                _parsed=True,
            )
            return connection.send(reply)
        if kind == "want":  # the app read the body: a 100 Continue may now go
            connection.body_wanted = True  # type: ignore[attr-defined]
            return connection.they_are_waiting_for_100_continue
        if kind == "data":
            return connection.send(h11.Data(data=step[1]))
        if kind == "end":
            return connection.send(h11.EndOfMessage(headers=step[1]))
        if kind == "cycle":
            connection.start_next_cycle()
        elif kind == "eof":
            connection.receive_data(b"")
        elif kind == "close":
            connection.send(h11.ConnectionClosed())
        else:
            connection.send_failed()
        return None
    except Exception as exc:  # h11's errors, and its own bugs (an AttributeError on a
        # reply to an upgrade that was never proposed): the same on both sides
        return type(exc).__name__, str(exc), getattr(exc, "error_status_hint", None)


def _conversation(connection: h11.Connection, conversation: list[tuple[Any, ...]]) -> list[Any]:
    return [
        (_step(connection, step), _state(connection), connection.they_are_waiting_for_100_continue)
        for step in conversation
    ]


class PreChange(h11.Connection):
    """``ContinueOnRead`` as it was before ``FastStates``: stock h11 with edge's reader of
    request heads and its 100-continue rule, to hold the gateway's own class to."""

    body_wanted = False

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        return self.body_wanted and bool(super().they_are_waiting_for_100_continue)

    def _get_io_object(self, role: Any, event: Any, io_dict: Any) -> Any:
        if io_dict is READERS and role is h11.CLIENT and self.their_state is h11.IDLE:
            return read_request
        return super()._get_io_object(role, event, io_dict)


@settings(max_examples=3000, deadline=None)
@given(st.lists(steps, max_size=25), st.sampled_from([16384, 16384, 40]))
def test_a_conversation_leaves_h11_as_stock_h11_does(
    conversation: list[tuple[Any, ...]], limit: int
) -> None:
    """``limit``: h11's bound on a head still incomplete, small enough to be met here."""
    ours = _conversation(FastStates(h11.SERVER, max_incomplete_event_size=limit), conversation)
    stock = h11.Connection(h11.SERVER, max_incomplete_event_size=limit)
    assert ours == _conversation(stock, conversation)


@settings(max_examples=2000, deadline=None)
@given(st.lists(steps, max_size=25), st.sampled_from([16384, 16384, 40]))
def test_the_gateways_connection_behaves_as_before(
    conversation: list[tuple[Any, ...]], limit: int
) -> None:
    """``ContinueOnRead`` (edge's reader, the 100-continue rule and ``FastStates``) against
    the same without ``FastStates``."""
    ours = _conversation(ContinueOnRead(h11.SERVER, max_incomplete_event_size=limit), conversation)
    before = PreChange(h11.SERVER, max_incomplete_event_size=limit)
    assert ours == _conversation(before, conversation)


def test_a_client_connection_is_left_to_h11() -> None:
    """The shortcuts are a server's: as a client the class is stock h11, cycle after cycle."""
    connections = (FastStates(h11.CLIENT), h11.Connection(h11.CLIENT))
    seen: list[list[Any]] = [[], []]
    for connection, record in zip(connections, seen, strict=True):
        for _ in range(3):
            request = h11.Request(method="GET", target="/", headers=[("Host", "a")])
            record.append(connection.send(request) + connection.send(h11.EndOfMessage()))
            connection.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            record += [_event(connection.next_event()) for _ in range(3)]
            record.append(_state(connection))
            connection.start_next_cycle()
            record.append(_state(connection))
    assert seen[0] == seen[1]


@st.composite
def exchanges(draw: Any) -> list[tuple[Any, ...]]:
    """Whole keep-alive exchanges, in the order a server makes them, mostly common."""
    conversation: list[tuple[Any, ...]] = []
    for request in draw(st.lists(requests(), min_size=1, max_size=4)):
        conversation += [("feed", [request], draw(st.integers(0, 60)))]
        conversation += [("next",)] * draw(st.sampled_from([1, 1, 2, 3, 4]))
        status, fields = draw(replies)
        conversation += [("reply", (status, fields))]
        conversation += [("data", draw(st.sampled_from([b"", b"abcd"]))), ("end", [])]
        conversation += [("next",)] * draw(st.integers(0, 3)) + [("cycle",)]
    return conversation


@settings(max_examples=2000, deadline=None)
@given(exchanges())
def test_whole_exchanges_leave_h11_as_stock_h11_does(conversation: list[tuple[Any, ...]]) -> None:
    ours = _conversation(FastStates(h11.SERVER), conversation)
    assert ours == _conversation(h11.Connection(h11.SERVER), conversation)


def test_the_common_exchange_skips_h11s_bookkeeping(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the module: a keep-alive request and reply never reach h11's general
    transitions, nor its copy of the reply's head."""

    def refuse(*args: Any) -> None:
        raise AssertionError("took h11's general path")

    connection = ContinueOnRead(h11.SERVER)
    monkeypatch.setattr(h11.Connection, "_process_event", refuse)
    monkeypatch.setattr(h11.Connection, "_clean_up_response_headers_for_sending", refuse)
    monkeypatch.setattr(h11.Connection, "start_next_cycle", refuse)
    for _ in range(2):
        connection.receive_data(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
        assert type(connection.next_event()) is h11.Request
        assert connection.next_event() == h11.Data(data=b"{}")
        assert type(connection.next_event()) is h11.EndOfMessage
        head = connection.send(h11.Response(status_code=200, headers=[(b"content-length", b"2")]))
        assert head == b"HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\n"
        assert connection.send(h11.Data(data=b"{}")) == b"{}"
        assert connection.send(h11.EndOfMessage()) == b""
        assert connection.states == {h11.CLIENT: h11.DONE, h11.SERVER: h11.DONE}
        connection.start_next_cycle()
        assert connection.states == {h11.CLIENT: h11.IDLE, h11.SERVER: h11.IDLE}
