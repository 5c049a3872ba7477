"""An answer given while the body is still arriving: sent whole, whatever the rest does."""

from __future__ import annotations

from typing import Any

import pytest

from edge.errors import ClientDisconnected, RequestTimeout
from edge.ingress.asgi import send_refusal

SCOPE = {"type": "http", "http_version": "1.1", "headers": []}


@pytest.mark.parametrize(
    "failure",
    [RequestTimeout("the body stalled"), ClientDisconnected("gone")],
    ids=["guard-timeout", "disconnect"],
)
async def test_a_body_that_fails_while_lingering_never_fails_the_answer(
    failure: Exception,
) -> None:
    """The request guard's timeout (or a hang-up) during the linger ends the linger only.

    Raised out of the app after the answer had been sent, it was reported by the server
    as an application error on a request that had been answered correctly.
    """
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if reads == 1:
            return {"type": "http.request", "body": b"x" * 10, "more_body": True}
        raise failure

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await send_refusal(SCOPE, receive, send, 401, b"{}", [(b"content-type", b"a/b")])
    assert sent[0]["status"] == 401
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"{}"
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert reads == 2
