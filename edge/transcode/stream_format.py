"""Wire formats for server-streamed replies over HTTP (pure).

Three framings, picked by the client's ``Accept`` header:

* ``application/x-ndjson`` (the default): one ``{"result": <message>}`` line per message,
  grpc-gateway's envelope, so its clients work unchanged;
* ``text/event-stream``: one SSE event per message, for a browser ``EventSource``;
* ``application/json``: one JSON array written incrementally, as Envoy's transcoder does.

An error after the first message is written in-band as the stream's last item, so a
failure never looks like a short but successful stream: ``{"error": <Status>}`` as the
last NDJSON line or array element, or an ``event: error`` SSE event.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamFormat:
    content_type: bytes
    opening: bytes
    before_item: bytes  # before the second and later items
    item_prefix: bytes
    item_suffix: bytes
    error_prefix: bytes
    error_suffix: bytes
    closing: bytes

    def item(self, payload: bytes, *, first: bool) -> bytes:
        separator = b"" if first else self.before_item
        return separator + self.item_prefix + payload + self.item_suffix

    def error(self, status_json: bytes, *, first: bool) -> bytes:
        separator = b"" if first else self.before_item
        return separator + self.error_prefix + status_json + self.error_suffix


NDJSON = StreamFormat(
    content_type=b"application/x-ndjson",
    opening=b"",
    before_item=b"",
    item_prefix=b'{"result":',
    item_suffix=b"}\n",
    error_prefix=b'{"error":',
    error_suffix=b"}\n",
    closing=b"",
)
SSE = StreamFormat(
    content_type=b"text/event-stream",
    opening=b"",
    before_item=b"",
    item_prefix=b"data: ",
    item_suffix=b"\n\n",
    error_prefix=b"event: error\ndata: ",
    error_suffix=b"\n\n",
    closing=b"",
)
JSON_ARRAY = StreamFormat(
    content_type=b"application/json",
    opening=b"[",
    before_item=b",",
    item_prefix=b"",
    item_suffix=b"",
    error_prefix=b'{"error":',
    error_suffix=b"}",
    closing=b"]",
)


BY_NAME = {"ndjson": NDJSON, "sse": SSE, "json": JSON_ARRAY}


def choose_format(accept: str | None, default: str | None = None) -> StreamFormat:
    """The framing the client asked for; the route's default (NDJSON) unless it names one.

    Media ranges are taken in order of preference (``q``), so ``Accept:
    text/event-stream`` gets SSE and a plain ``*/*`` (curl, fetch) gets the default.
    """
    fallback = BY_NAME[default] if default else NDJSON
    if not accept:
        return fallback
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept.split(",")):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranked.append((-quality, index, media.strip().lower()))
    for negative_quality, _, media in sorted(ranked):
        if negative_quality == 0:
            break
        if media == "text/event-stream":
            return SSE
        if media in ("application/x-ndjson", "application/jsonl"):
            return NDJSON
        if media == "application/json":
            return JSON_ARRAY
    return fallback
