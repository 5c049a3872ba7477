"""h11's state changes for the common exchange, made directly instead of worked out.

Every event h11 sends or receives goes through ``Connection._process_event``: it copies
the state dictionary, runs the transition tables, loops the state-triggered rules to a
fixed point, scans the header fields four or five times (``Connection``, ``Upgrade``,
``Expect``, ``Transfer-Encoding``, ``Content-Length``), then compares both states to pick
a new reader and writer. A request and its reply pass through it six times, and each
response is first copied by ``_clean_up_response_headers_for_sending`` after two more
scans. Measured in a loop, h11's share of one keep-alive request and reply was about
39 us, more than the gateway's own routing and binding; with this module (and
``response_fields``) about 20.

For the events almost every exchange is made of (a keep-alive HTTP/1.1 request without
``Upgrade``, ``Expect`` or ``Transfer-Encoding``, its body, a reply framed by
``Content-Length``, its body and end, and the start of the next cycle) the outcome of all
that is known in advance, so ``FastStates`` sets it: the same states, the same reader and
writer objects, the same flags. Any other event, state or field (CONNECT, HEAD, 1xx,
204/304, chunked, ``Connection``, HTTP/1.0, a pending protocol switch, a closed or failed
side) goes to h11's own code, unchanged. h11's checks before and after (its readers,
writers and error handling) still run: only the bookkeeping in between is shortened.
``next_event`` is h11's own, less its property look-ups, for every state. A reply whose
fields ``edge.ingress.h11_fields.response_fields`` built carries its framing and its field
lines from that one pass, so neither scan runs for it and its head is not formatted again.
``tests/unit/test_h11_states.py`` holds this to stock h11 on random conversations,
comparing every result and every piece of state after each step.
"""

from __future__ import annotations

from typing import Any

import h11
from h11 import (
    CLIENT,
    DONE,
    ERROR,
    IDLE,
    NEED_DATA,
    PAUSED,
    SEND_BODY,
    SEND_RESPONSE,
    SERVER,
    SWITCHED_PROTOCOL,
    LocalProtocolError,
    RemoteProtocolError,
)
from h11._readers import READERS, ContentLengthReader, expect_nothing
from h11._state import MIGHT_SWITCH_PROTOCOL
from h11._writers import ContentLengthWriter, write_any_response

from edge.ingress.h11_fields import FramedHeaders, NotedHeaders

_Data = h11.Data
_EndOfMessage = h11.EndOfMessage
_Request = h11.Request
_Response = h11.Response
# a client in these states can end its body without any state-triggered rule firing
# (h11's table moves a DONE client on only when the server is CLOSED or in ERROR), and
# likewise a server ending its reply while the client is in these
_SERVER_QUIET = (SEND_RESPONSE, SEND_BODY, DONE)
_CLIENT_QUIET = (SEND_BODY, DONE)
_DONE_READER = expect_nothing  # READERS[(CLIENT, DONE)]


def _framing_fields(headers: Any) -> tuple[bytes | None, bool]:
    """(Content-Length's value or None, whether a field changes h11's course).

    ``Connection`` (keep-alive), ``Upgrade`` (a switch), ``Expect`` (100-continue) and
    ``Transfer-Encoding`` (chunked framing) each make h11 do more than the common path
    does; h11 has already merged or refused repeated ``Content-Length`` fields, and made
    the value plain digits when it built the ``Headers`` (a hand-built one may hold a
    list, which the callers leave to h11).
    """
    if isinstance(headers, NotedHeaders):  # built in one pass that noted both
        return headers.length, headers.special
    length = None
    for _, name, value in headers._full_items:
        if name == b"content-length":
            length = value
        elif (
            name == b"connection"
            or name == b"upgrade"
            or name == b"expect"
            or name == b"transfer-encoding"
        ):
            return length, True
    return length, False


class FastStates(h11.Connection):
    """A server-side h11 connection whose common transitions skip h11's general machinery."""

    def next_event(self) -> Any:
        # h11's next_event and _extract_next_receive_event in one, for a server (whose
        # peer is the client), without their property look-ups and list of sentinels
        if self.our_role is not SERVER:
            return super().next_event()
        state = self._cstate.states[CLIENT]
        if state is ERROR:
            raise RemoteProtocolError("Can't receive data when peer state is ERROR")
        buffer = self._receive_buffer
        try:
            if (
                (state is DONE and buffer)
                or state is MIGHT_SWITCH_PROTOCOL
                or state is SWITCHED_PROTOCOL
            ):
                return PAUSED
            reader: Any = self._reader
            event = reader(buffer)
            if event is None and not buffer and self._receive_buffer_closed:
                event = reader.read_eof() if hasattr(reader, "read_eof") else h11.ConnectionClosed()
            if event is None:
                if len(buffer) > self._max_incomplete_event_size:
                    raise RemoteProtocolError("Receive buffer too long", error_status_hint=431)
                if self._receive_buffer_closed:
                    raise RemoteProtocolError("peer unexpectedly closed connection")
                return NEED_DATA
            self._process_event(CLIENT, event)
            return event
        except BaseException as exc:
            self._process_error(CLIENT)
            if isinstance(exc, LocalProtocolError):
                exc._reraise_as_remote_protocol_error()
            raise

    def send_with_data_passthrough(self, event: Any) -> list[bytes] | None:
        # h11's own, less one step for a reply whose fields came from ``response_fields``:
        # its head is written from the lines that pass made (``FramedHeaders.wire``), as
        # ``write_any_response`` would write them, instead of formatting every field again
        if (
            type(event) is not _Response
            or type(event.headers) is not FramedHeaders
            or self._writer is not write_any_response
            or self._cstate.states[self.our_role] is ERROR
        ):
            return super().send_with_data_passthrough(event)
        try:
            sent = self._clean_up_response_headers_for_sending(event)
            self._process_event(self.our_role, sent)
            headers = sent.headers
            if (
                type(headers) is not FramedHeaders
                or sent.http_version != b"1.1"
                or type(sent.status_code) is not int
            ):
                data: list[bytes] = []
                write_any_response(sent, data.append)
                return data
            return [b"HTTP/1.1 %d %s\r\n%s\r\n" % (sent.status_code, sent.reason, headers.wire)]
        except:  # as h11: any failure puts our side in ERROR
            self._process_error(self.our_role)
            raise

    def _clean_up_response_headers_for_sending(self, response: h11.Response) -> h11.Response:
        # h11 changes nothing in a keep-alive reply framed by Content-Length: it would
        # return a copy of ``response`` with the same fields (and with the status, reason
        # and version checked and made bytes, which a reply made with ``_parsed`` skipped)
        if (
            self._cstate.keep_alive
            and type(response) is _Response
            and type(response.status_code) is int
            and type(response.reason) is bytes
            and response.http_version == b"1.1"
        ):
            length, special = _framing_fields(response.headers)
            if length is not None and not special:
                return response
        return super()._clean_up_response_headers_for_sending(response)

    def _process_event(self, role: Any, event: Any) -> None:
        if self.our_role is SERVER and self._common(role, event):
            return
        super()._process_event(role, event)

    def _common(self, role: Any, event: Any) -> bool:
        """Make the state changes h11 would make for ``event`` if it is a common one."""
        cstate = self._cstate
        if not cstate.keep_alive or cstate.pending_switch_proposals:
            return False
        states = cstate.states
        kind = type(event)
        if kind is _Data:
            if states[role] is not SEND_BODY:
                return False
            if role is CLIENT:
                self.client_is_waiting_for_100_continue = False
            return True
        if kind is _EndOfMessage:
            if states[role] is not SEND_BODY:
                return False
            if role is CLIENT:
                if states[SERVER] not in _SERVER_QUIET:
                    return False
                states[CLIENT] = DONE
                self.client_is_waiting_for_100_continue = False
                self._reader = _DONE_READER
            else:
                if states[CLIENT] not in _CLIENT_QUIET:
                    return False
                states[SERVER] = DONE
                self._writer = None
            return True
        if kind is _Request:
            return role is CLIENT and self._request(event, states)
        if kind is _Response:
            return role is SERVER and self._response(event, states)
        return False

    def _request(self, request: h11.Request, states: dict[Any, Any]) -> bool:
        if (
            states[CLIENT] is not IDLE
            or states[SERVER] is not IDLE
            or request.http_version != b"1.1"
            or request.method == b"CONNECT"
        ):
            return False
        length, special = _framing_fields(request.headers)
        if special or (length is not None and not length.isdigit()):
            return False
        states[CLIENT] = SEND_BODY
        states[SERVER] = SEND_RESPONSE
        self._request_method = request.method
        self.their_http_version = request.http_version
        self._writer = write_any_response
        self._reader = ContentLengthReader(int(length) if length is not None else 0)
        return True

    def _response(self, response: h11.Response, states: dict[Any, Any]) -> bool:
        if (
            states[SERVER] is not SEND_RESPONSE
            or states[CLIENT] not in _CLIENT_QUIET
            or response.http_version != b"1.1"
            or response.status_code in (204, 304)
            or self._request_method in (b"HEAD", b"CONNECT")
        ):
            return False
        length, special = _framing_fields(response.headers)
        if length is None or special or not length.isdigit():
            return False
        states[SERVER] = SEND_BODY
        self.client_is_waiting_for_100_continue = False
        self._writer = ContentLengthWriter(int(length))
        return True

    def start_next_cycle(self) -> None:
        cstate = self._cstate
        states = cstate.states
        if (
            self.our_role is SERVER
            and states[CLIENT] is DONE
            and states[SERVER] is DONE
            and cstate.keep_alive
            and not cstate.pending_switch_proposals
            and not self.client_is_waiting_for_100_continue
        ):
            cstate.states = {CLIENT: IDLE, SERVER: IDLE}
            self._request_method = None
            self._writer = write_any_response
            self._reader = self._get_io_object(CLIENT, None, READERS)
            return
        super().start_next_cycle()
