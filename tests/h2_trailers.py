"""One h2c GET read to its end with the ``h2`` package, trailers included (httpx does not
expose HTTP trailers)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h2.events
from h2_client import h2_client


@dataclass
class H2Answer:
    status: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trailers: dict[str, str] | None = None  # None: the response had none
    ended: bool = False  # END_STREAM seen (not a reset, not a hang)
    reset: bool = False
    arrivals: list[tuple[float, bytes]] = field(default_factory=list)  # (time, DATA payload)


async def h2_get(
    port: int, path: str, headers: list[tuple[str, str]] | None = None, timeout: float = 10
) -> H2Answer:
    """GET ``path`` over h2c (prior knowledge) with ``headers`` added; read to the end."""
    answer = H2Answer()
    loop = asyncio.get_running_loop()
    async with h2_client(port) as client:
        conn = client.conn
        stream_id = conn.get_next_available_stream_id()
        request = [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "127.0.0.1"),
            (":path", path),
            *(headers or []),
        ]
        conn.send_headers(stream_id, request, end_stream=True)
        await client.flush()
        async with asyncio.timeout(timeout):
            while not (answer.ended or answer.reset):
                data = await client.reader.read(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if getattr(event, "stream_id", None) != stream_id:
                        continue
                    if isinstance(event, h2.events.ResponseReceived):
                        pairs = [(_text(k), _text(v)) for k, v in event.headers]
                        answer.status = dict(pairs)[":status"]
                        answer.headers = {k: v for k, v in pairs if not k.startswith(":")}
                    elif isinstance(event, h2.events.DataReceived):
                        answer.body += event.data
                        answer.arrivals.append((loop.time(), event.data))
                        conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    elif isinstance(event, h2.events.TrailersReceived):
                        answer.trailers = {_text(k): _text(v) for k, v in event.headers}
                    elif isinstance(event, h2.events.StreamEnded):
                        answer.ended = True
                    elif isinstance(event, h2.events.StreamReset):
                        answer.reset = True
                await client.flush()
    return answer


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value
