"""A body field's JSON must be an object when it is a message: never dropped for the path.

The demo's UpdateBook binds ``book.name`` from the path and the body to ``book``. A body of
``"x"``, ``[1, 2]``, ``3`` or ``true`` was replaced by the path's ``{"name": ...}`` and sent
upstream with an empty derived mask (AIP-134: update every field). Now it is a 400 before
the path is bound, in the words a body error uses; ``null`` is still an absent body
field, as json_format reads it.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pool

from edge.descriptors.http_rules import HttpRule
from edge.errors import BadRequest
from edge.routing.template import parse_template
from edge.transcode.binding import RequestBinder
from edge.transcode.field_values import set_path
from edge.transcode.json_codec import JsonCodec, JsonOptions
from edgedemo.library.v1 import library_pb2
from edgetest.v1 import kitchen_pb2

CODEC = JsonCodec(descriptor_pool.Default(), JsonOptions())
RULE = HttpRule("PATCH", parse_template("/v1/{book.name=shelves/*/books/*}"), "book", None)
UPDATE = RequestBinder(
    library_pb2.UpdateBookRequest, RULE, CODEC, raw_bodies=True, derive_update_mask=True
)
PATH = ((("book", "name"), "shelves/1/books/2"),)


PARSE_WORDS = "book: expected an object (edgedemo.library.v1.Book), got "
OUR_WORDS = "book: expected a JSON object: the path sets a field inside it"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'"x"', PARSE_WORDS + '"x"'),  # the parse's words, as with no path inside
        (b"[1, 2]", PARSE_WORDS + "an array"),
        (b"3", PARSE_WORDS + "3"),
        (b"true", PARSE_WORDS + "true"),
        (b"false", PARSE_WORDS + "false"),
        (b'""', OUR_WORDS),  # json_format reads "" and [] as an empty message
        (b"[]", OUR_WORDS),
    ],
)
def test_a_body_that_is_not_an_object_is_400(body: bytes, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        UPDATE.bind(PATH, "", body)
    assert caught.value.message == words
    assert caught.value.details[0]["fieldViolations"][0]["field"] == "book"


@pytest.mark.parametrize(
    ("body", "mask"), [(b"null", []), (b"{}", []), (b'{"title": "T"}', ["title"])]
)
def test_an_object_or_null_body_takes_the_path(body: bytes, mask: list[str]) -> None:
    message: Any = UPDATE.bind(PATH, "", body)
    assert message.book.name == "shelves/1/books/2"
    assert list(message.update_mask.paths) == mask


def test_set_path_never_replaces_a_value() -> None:
    data: dict[str, Any] = {"book": None}
    set_path(data, ("book", "name"), "n")
    assert data == {"book": {"name": "n"}}
    for held in ("x", [1], 3, True):
        with pytest.raises(TypeError, match="not an object"):
            set_path({"book": held}, ("book", "name"), "n")


def test_a_value_body_with_the_path_inside_is_400_too() -> None:
    """A Timestamp's JSON is a string json_format takes; with ``{timestamp.seconds}`` in the
    path it would still be replaced, so it is refused in the binder's own words."""
    rule = HttpRule("PATCH", parse_template("/v1/{timestamp.seconds}"), "timestamp", None)
    binder = RequestBinder(kitchen_pb2.Kitchen, rule, CODEC)
    with pytest.raises(BadRequest) as caught:
        binder.bind(((("timestamp", "seconds"), "5"),), "", b'"2024-01-01T00:00:00Z"')
    assert caught.value.message == (
        "timestamp: expected a JSON object: the path sets a field inside it"
    )
