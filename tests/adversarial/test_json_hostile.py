"""Hostile JSON at a real gateway: random bodies, query strings and path values.

Whatever arrives at a transcoded route (JSON of the request's shape with wrong types,
arbitrary JSON, bytes that are not JSON, NDJSON lines for a client stream, odd query
strings and path segments), the answer is a 200 or a 4xx, never a 5xx; every 4xx is a
``google.rpc.Status`` body whose message holds no Python exception text; and a unary
request the gateway refused never reached the upstream. Hypothesis drives a sync client
from a worker thread while the gateway serves on the test's loop, so one gateway serves
every example and the whole run takes a few seconds.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recording import Edge, start_edge

pytestmark = pytest.mark.e2e

LEAKS = re.compile(
    r"object of type|Traceback|<class|NoneType|Failed to parse|invalid literal|bytes-like"
    r"|has no attribute|not iterable|indices must|codec can't|\w+Error\b|Couldn't parse"
)

KITCHEN_KEYS = [
    *("stringValue", "int32Value", "int64_value", "uint64Value", "floatValue", "doubleValue"),
    *("boolValue", "bytesValue", "enumValue", "nested", "repeatedString", "repeatedEnum"),
    *("labels", "innerById", "choiceText", "choiceNumber", "timestamp", "duration"),
    *("fieldMask", "int64Wrapper", "structValue", "value", "listValue", "any", "empty"),
    *("mystery", "@type", ""),
]
TRICKS = [
    *(None, True, 0, -1, 2**31, 2**63, 2**64 - 1, 1.5, 1e39, -0.0, "", "x", "1", "1e3"),
    *("NaN", "nan", "Infinity", "FLAVOUR_SOUR", "FLAVOUR_NOPE", "AAEC", "a", "1.5s", "a_b"),
    *("2024-01-31T12:00:00Z", [], [1, None], {}, {"name": 1}, {"@type": "x"}, {"1": {}}),
    {"@type": "type.googleapis.com/google.protobuf.Int64Value"},
    {"@type": "type.googleapis.com/edgetest.v1.Inner", "count": "x"},
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(-1e300, 1e300)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)  # fmt: skip
fields = st.dictionaries(
    st.sampled_from(KITCHEN_KEYS), st.sampled_from(TRICKS) | json_values, max_size=4
)
bodies = st.one_of(
    fields.map(orjson.dumps),
    json_values.map(orjson.dumps),
    st.binary(max_size=12),
    st.sampled_from([b"", b"{", b'{"a":1,}', b"\xff\xfe", b'"\\ud800"', b"[" * 2000]),
)
query_keys = st.sampled_from([*KITCHEN_KEYS, "nested.name", "nested.inner.count", "a..b"])
query_values = st.sampled_from([str(t) for t in TRICKS]) | st.text(max_size=5)
queries = st.one_of(
    st.lists(st.tuples(query_keys, query_values), max_size=4).map(
        lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    ),
    st.text(st.sampled_from("ab=&%;+.[]0fF-_"), max_size=12),
)
segments = (st.sampled_from([str(t) for t in TRICKS]) | st.text(max_size=4)).map(
    lambda text: quote(text, safe="") or "x"
)

TYPED = [
    ["1", "-5", "1e3", "9223372036854775807", "0x1"],
    ["true", "t", "0", "FALSE", "yes"],
    ["FLAVOUR_SOUR", "2", "7", "FLAVOUR_NOPE"],
    ["1.5", "NaN", "-Infinity", "1e400", "nan"],
]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, bool]:
    """(method, path and query, body, unary): one request to a transcoded route."""
    kind = draw(st.sampled_from(["body", "nested", "query", "typed", "stream"]))
    query = draw(st.just("") | queries)
    if kind == "body":
        return "POST", f"/v1/kitchen?{query}", draw(bodies), True
    if kind == "nested":
        return "PATCH", f"/v1/kitchen/{draw(segments)}/nested?{query}", draw(bodies), True
    if kind == "query":
        return "GET", f"/v1/kitchen/{draw(segments)}?{query}", b"", True
    if kind == "typed":  # int64, bool, enum, double: mostly fitting, some not
        path = "/".join(draw(st.sampled_from(fitting) | segments) for fitting in TYPED)
        return "GET", f"/v1/typed/{path}?{query}", b"", True
    lines = draw(st.lists(bodies | st.just(b'{"value": "7"}'), min_size=1, max_size=3))
    return "POST", "/v1/sum", b"\n".join(lines), False


def check_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code < 400:
        return
    payload: Any = response.json()
    assert set(payload) == {"code", "message", "details"}, payload
    assert isinstance(payload["code"], int) and payload["code"] != 0
    assert payload["message"] and not LEAKS.search(payload["message"]), payload
    for detail in payload["details"]:
        assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        for violation in detail["fieldViolations"]:
            assert payload["message"].endswith(violation["description"])


def echoes(edge: Edge) -> int:
    """Echo calls the upstream received (a refused client stream may still be arriving)."""
    return sum(1 for method, _ in edge.kitchen.received if method.endswith("/Echo"))


def fuzz(edge: Edge, examples: int) -> None:
    """Run in a worker thread: the gateway keeps serving on the test's loop meanwhile."""
    with httpx.Client(base_url=edge.gateway.base_url, timeout=10) as http:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(request=requests())
        def answers_cleanly(request: tuple[str, str, bytes, bool]) -> None:
            method, target, body, unary = request
            reached = echoes(edge)
            response = http.request(
                method, target, content=body, headers={"content-type": "application/json"}
            )
            check_answer(response)
            if unary and response.status_code >= 400:
                assert echoes(edge) == reached, "a refused request went upstream"

        answers_cleanly()


async def test_hostile_json_gets_200_or_a_clean_4xx() -> None:
    async with start_edge() as edge:
        await asyncio.to_thread(fuzz, edge, 150)
        assert edge.kitchen.received  # some requests were good enough to be served
