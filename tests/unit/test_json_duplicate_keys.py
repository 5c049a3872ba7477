"""The duplicate-key check of request bodies, against the standard library's own parser.

``duplicate_keys`` counts colons outside strings; the reference below sees every pair
``json`` parses. Hypothesis writes JSON texts whose objects may repeat keys (any
characters, quotes, backslashes and colons included) and whitespace anywhere allowed.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from edge.transcode.json_codec import duplicate_keys


def reference(text: str) -> bool:
    found = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        names = [name for name, _ in items]
        found = found or len(set(names)) != len(names)
        return dict(items)

    json.loads(text, object_pairs_hook=pairs)
    return found


KEYS = st.sampled_from(["a", "b", ":", '"', "\\", 'x":1', "é", ""]) | st.text(max_size=4)
SPACE = st.sampled_from(["", " ", "\n", "\t "])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=6).map(lambda t: t + ":")
)


@st.composite
def documents(draw: st.DrawFn, depth: int = 3) -> str:
    if depth == 0 or draw(st.booleans()):
        return json.dumps(draw(SCALARS))
    if draw(st.booleans()):
        items = draw(st.lists(documents(depth - 1), max_size=3))
        return "[" + ",".join(f"{draw(SPACE)}{item}{draw(SPACE)}" for item in items) + "]"
    pairs = draw(st.lists(st.tuples(KEYS, documents(depth - 1)), max_size=4))
    inner = ",".join(
        f"{draw(SPACE)}{json.dumps(key, ensure_ascii=draw(st.booleans()))}{draw(SPACE)}:"
        f"{draw(SPACE)}{value}"
        for key, value in pairs
    )
    return "{" + inner + "}"


@given(documents())
def test_agrees_with_the_standard_parser(text: str) -> None:
    body = text.encode()
    assert duplicate_keys(body, orjson.loads(body)) == reference(text)
