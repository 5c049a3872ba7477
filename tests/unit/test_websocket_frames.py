"""The grammar of edge.grpc-ws.v1 (pure): what a client frame may say, what ours look like."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.errors import BadRequest
from edge.ingress.websocket_frames import (
    BINARY_SUBPROTOCOL,
    RESERVED_METADATA,
    SUBPROTOCOL,
    EndFrame,
    MessageFrame,
    MetadataFrame,
    choose_subprotocol,
    close_reason,
    headers_frame,
    message_frame,
    metadata_json,
    parse_text_frame,
    status_frame,
)

HANDSHAKE_HAD_TOKEN = "the token was already given at the handshake"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ([SUBPROTOCOL], (SUBPROTOCOL, False)),
        ([BINARY_SUBPROTOCOL], (BINARY_SUBPROTOCOL, True)),
        ([SUBPROTOCOL, BINARY_SUBPROTOCOL], (BINARY_SUBPROTOCOL, True)),  # binary preferred
        (["edge.bearer.abc", SUBPROTOCOL], (SUBPROTOCOL, False)),
        (["graphql-ws"], None),
        ([], None),
        (["EDGE.GRPC-WS.V1"], None),  # subprotocol tokens are case-sensitive
    ],
)
def test_the_subprotocol_decides_binary_or_json(
    offered: list[str], chosen: tuple[str, bool] | None
) -> None:
    assert choose_subprotocol(offered) == chosen


@pytest.mark.parametrize(
    ("text", "first", "frame"),
    [
        ('{"message": {"name": "a"}}', False, MessageFrame(b'{"name":"a"}')),
        ('{"message": null}', True, MessageFrame(b"null")),
        ('{"end": true}', False, EndFrame()),
        ('{"metadata": {"X-Trace": "1"}}', True, MetadataFrame([("x-trace", "1")])),
        ('{"metadata": {}}', True, MetadataFrame([])),
        (
            '{"metadata": {"authorization": "Bearer t"}}',
            True,
            MetadataFrame([("authorization", "Bearer t")]),
        ),
    ],
)
def test_frames_that_parse(text: str, first: bool, frame: object) -> None:
    assert parse_text_frame(text, first=first, token_refusal=None) == frame


@pytest.mark.parametrize(
    ("text", "first", "says"),
    [
        ("not json", True, "malformed JSON frame"),
        ("[1]", True, "a frame is one of"),
        ('{"message": 1, "end": true}', True, "a frame is one of"),
        ("{}", True, "a frame is one of"),
        ('{"end": false}', True, "the half-close frame is"),
        ('{"end": 1}', True, "the half-close frame is"),
        ('{"hello": 1}', True, "unknown frame kind 'hello'"),
        ('{"metadata": {"a": "1"}}', False, "metadata may only come in the first frame"),
        ('{"metadata": ["a"]}', True, "metadata must be an object"),
        ('{"metadata": {"a": 1}}', True, "must be a string"),
        ('{"metadata": {"a": null}}', True, "must be a string"),
        ('{"metadata": {"Host": "evil"}}', True, "reserved"),
        ('{"metadata": {"x-forwarded-for": "1.2.3.4"}}', True, "reserved"),
        ('{"metadata": {"forwarded": "for=1.2.3.4"}}', True, "reserved"),
        ('{"metadata": {"grpc-timeout": "1S"}}', True, "reserved"),
        ('{"metadata": {":path": "/x"}}', True, "reserved"),
        ('{"metadata": {"trace-bin": "AA"}}', True, "binary (-bin) metadata"),
        ('{"metadata": {"Authorization": "Bearer t"}}', True, HANDSHAKE_HAD_TOKEN),
    ],
)
def test_hostile_or_malformed_frames_are_refused_by_name(text: str, first: bool, says: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_text_frame(text, first=first, token_refusal=HANDSHAKE_HAD_TOKEN)
    assert says in refused.value.message


def test_metadata_pairs_keep_their_order_and_lower_case_names() -> None:
    frame = parse_text_frame(
        '{"metadata": {"B": "2", "a": "1", "c": ""}}', first=True, token_refusal=None
    )
    assert frame == MetadataFrame([("b", "2"), ("a", "1"), ("c", "")])


def test_metadata_json_joins_repeats_encodes_bin_and_hides_grpc_keys() -> None:
    pairs: list[tuple[str, str | bytes]] = [
        ("x-a", "1"),
        ("x-a", "2"),
        ("trace-bin", b"\x00\xff"),
        ("grpc-status", "0"),
        (":status", "200"),
    ]
    assert metadata_json(pairs) == {"x-a": "1,2", "trace-bin": "AP8="}


def test_server_frames_are_the_documented_json() -> None:
    assert orjson.loads(headers_frame([("x-a", "1")])) == {"headers": {"x-a": "1"}}
    assert orjson.loads(message_frame(b'{"id":"7"}')) == {"message": {"id": "7"}}
    status = b'{"code":5,"message":"no","details":[]}'
    assert orjson.loads(status_frame(status)) == {
        "status": {"code": 5, "message": "no", "details": []}
    }
    assert orjson.loads(status_frame(status, [("x-t", "1")])) == {
        "status": {"code": 5, "message": "no", "details": []},
        "trailers": {"x-t": "1"},
    }
    assert orjson.loads(status_frame(status, ())) == {
        "status": {"code": 5, "message": "no", "details": []},
        "trailers": {},
    }


@given(st.text(max_size=200))
def test_close_reasons_fit_a_control_frame_and_stay_valid_utf8(message: str) -> None:
    reason = close_reason(message)
    encoded = reason.encode()
    assert len(encoded) <= 123
    assert message.startswith(reason)
    assert len(message.encode()) <= 123 or len(encoded) > 123 - 4  # cut only at the limit


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), st.text(max_size=20)))
def test_any_plain_metadata_object_round_trips(metadata: dict[str, str]) -> None:
    allowed = {
        k: v
        for k, v in metadata.items()
        if not k.startswith("grpc-") and not k.endswith("-bin") and k not in RESERVED_METADATA
    }
    text = orjson.dumps({"metadata": allowed}).decode()
    frame = parse_text_frame(text, first=True, token_refusal=None)
    assert isinstance(frame, MetadataFrame)
    assert dict(frame.pairs) == allowed
