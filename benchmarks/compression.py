"""What compression costs: CPU per KiB of JSON compressed, and nothing for who does not ask.

Two measurements, in process (no server, no upstream), rounds interleaved and the minimum
of each reported, as ``adapter_cost.py`` does:

* **Per KiB of JSON**: a listing of distinct demo Books (names, titles, counts varied
  with a fixed seed) of 1, 16 and 256 KiB compressed whole by the gateway's own encoders
  (gzip at ``gzip_level`` 6, br at ``brotli_quality`` 4, the defaults), and a stream of
  100 distinct ~160-byte SSE messages compressed and flushed one by one: microseconds per
  KiB (per message for the stream) and the compressed size as a share of the original.
* **The hot path**: the JSON POST of ``adapter_cost.py`` (canned upstream, its ~120-byte
  reply below ``min_size``) with compression not built at all, with the default config
  and no ``Accept-Encoding`` (what curl and most API clients send: one pass over the
  headers), and with ``Accept-Encoding: gzip, deflate, br`` (a browser: the wrapper is
  made, the reply is too small to compress). The first two should not differ beyond noise.

With ``--instructions`` the hot-path cases are counted by callgrind instead (as
``benchmarks.instructions`` does: two runs per case, the difference per extra call), a
figure that holds still on a busy machine, plus the browser's header with compression
not built (what one more header costs the rest of the gateway); slow, minutes per case.

Run as ``python -m benchmarks.compression``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from collections.abc import Callable
from functools import partial
from random import Random
from typing import Any

from google.protobuf import json_format

from benchmarks.adapter_cost import KINDS, REPO, _app, _call
from benchmarks.instructions import callgrind
from edge.compression.codecs import Encoding
from edge.state import LiveFront
from edgedemo.library.v1 import library_pb2 as pb


def _json_of(size: int, seed: int = 7) -> bytes:
    """A page of distinct books (names, titles, counts vary, as a real listing's do)."""
    words = "left hand of darkness dispossessed lathe heaven wizard earthsea tombs atuan".split()
    random = Random(seed)
    books = []
    total = 0
    while total < size:
        book = pb.Book(
            name=f"shelves/{random.randint(1, 99)}/books/{random.randint(1, 10**6)}",
            title=" ".join(random.choice(words) for _ in range(random.randint(2, 6))).title(),
            author=random.choice(["Ursula K. Le Guin", "Octavia E. Butler", "Iain M. Banks"]),
            genre=random.choice([pb.GENRE_FICTION, pb.GENRE_HISTORY, pb.GENRE_POETRY]),
            page_count=random.randint(80, 900),
        )
        books.append(json_format.MessageToJson(book, indent=None).encode())
        total += len(books[-1]) + 1
    return b'{"books":[' + b",".join(books) + b"]}"


def _best(run: Callable[[], object], repeat: int, rounds: int) -> float:
    """Seconds per call, the minimum over ``rounds`` of ``repeat`` calls."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeat):
            run()
        best = min(best, (time.process_time() - start) / repeat)
    return best


def codec_costs(rounds: int) -> list[tuple[str, str, float, float]]:
    """(coding, what, us per KiB or per message, compressed share)."""
    rows = []
    for name, level in ((b"gzip", 6), (b"br", 4)):
        encoding = Encoding(name, level)
        for kib in (1, 16, 256):
            data = _json_of(kib * 1024)
            repeat = max(3, 2000 // kib)
            seconds = _best(partial(encoding.whole, data), repeat, rounds)
            share = len(encoding.whole(data)) / len(data)
            rows.append(
                (name.decode(), f"{kib} KiB reply", seconds * 1e6 / (len(data) / 1024), share)
            )
        messages = [b"data: " + _json_of(1, seed=n)[10:-2] + b"\n\n" for n in range(100)]
        size = sum(map(len, messages)) // len(messages)

        def stream(encoding: Encoding = encoding, messages: list[bytes] = messages) -> None:
            encoder = encoding.stream()
            for message in messages:
                encoder.chunk(message)
            encoder.finish(b"")

        seconds = _best(stream, 20, rounds) / len(messages)
        encoder = encoding.stream()
        out = sum(len(encoder.chunk(message)) for message in messages)
        share = out / sum(map(len, messages))
        rows.append((name.decode(), f"SSE message (~{size} B)", seconds * 1e6, share))
    return rows


async def hot_path(calls: int, rounds: int) -> dict[str, float]:
    headers, body = KINDS["JSON POST"]
    built = _app()
    holder = _holder(built)
    with_rules = holder.current
    without = dataclasses.replace(with_rules, compression=None)
    browser = [*headers, (b"accept-encoding", b"gzip, deflate, br")]
    cases: dict[str, tuple[Any, list[tuple[bytes, bytes]]]] = {
        "compression not built": (without, headers),
        "default, no Accept-Encoding": (with_rules, headers),
        "default, Accept-Encoding: gzip, deflate, br": (with_rules, browser),
    }
    for state, sent in cases.values():  # warm up
        holder.current = state
        for _ in range(calls // 5):
            await _call(built, sent, body)
    cost: dict[str, float] = {}
    for _ in range(rounds):
        for case, (state, sent) in cases.items():
            holder.current = state
            start = time.process_time()
            for _ in range(calls):
                await _call(built, sent, body)
            per_call = (time.process_time() - start) / calls * 1e6
            cost[case] = min(cost.get(case, float("inf")), per_call)
    return cost


def _holder(asgi: Any) -> Any:
    """The app's StateHolder, found through the ASGI layers down to Quart."""
    layer = asgi
    while not hasattr(layer, "extensions"):
        if isinstance(layer, LiveFront):  # the state's own front door holds it
            return layer.holder
        layer = getattr(layer, "app", None) or getattr(layer, "fallback", None)
        if layer is None:
            raise RuntimeError("no Quart app under the ASGI layers")
        layer = getattr(layer, "__self__", layer)  # a bound asgi_app: its Quart app
    return layer.extensions["edge.state"]


_RUNNER = """
import asyncio, dataclasses, sys
sys.path.insert(0, {repo!r})
from benchmarks.adapter_cost import KINDS, REPO, _app, _call
from benchmarks.compression import _holder
async def main():
    asgi = _app()
    holder = _holder(asgi)
    if {off!r}:
        holder.current = dataclasses.replace(holder.current, compression=None)
    headers, body = KINDS["JSON POST"]
    headers = [*headers, *{extra!r}]
    for _ in range(200):
        await _call(asgi, headers, body)
    for _ in range({calls}):
        await _call(asgi, headers, body)
asyncio.run(main())
"""


_BROWSER = (b"accept-encoding", b"gzip, deflate, br")


def instructions(small: int, large: int) -> dict[str, float]:
    """Instructions per JSON POST, per hot-path case, counted by callgrind."""
    cases = {
        "compression not built": (True, []),
        "default, no Accept-Encoding": (False, []),
        "default, Accept-Encoding: gzip, deflate, br": (False, [_BROWSER]),
        # the same header with compression not built: what one more header costs elsewhere
        "not built, Accept-Encoding: gzip, deflate, br": (True, [_BROWSER]),
    }
    out = {}
    for case, (off, extra) in cases.items():
        runs = []
        for calls in (small, large):
            source = _RUNNER.format(repo=str(REPO), off=off, extra=extra, calls=calls)
            runs.append(callgrind(source))
        out[case] = (runs[1] - runs[0]) / (large - small)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="hot-path calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--instructions", action="store_true", help="count the hot path with callgrind"
    )
    args = parser.parse_args(argv)
    if args.instructions:
        counted = instructions(100, 400)
        base = counted["compression not built"]
        print("compression on the hot path: JSON POST in process, instructions per call")
        for case, value in counted.items():
            print(f"  {case:<44} {value:11,.0f}  ({value / base:.4f}x)")
        return 0
    print("compression: CPU per KiB of JSON (min of rounds)")
    for coding, what, micros, share in codec_costs(args.rounds):
        unit = "us/message" if what.startswith("SSE") else "us/KiB"
        print(f"  {coding:<4} {what:<22} {micros:7.2f} {unit:<10} size {share:6.1%}")
    cost = asyncio.run(hot_path(args.calls, args.rounds))
    base = cost["compression not built"]
    print("compression on the hot path: JSON POST in process, us/call (min of rounds)")
    for case, micros in cost.items():
        print(f"  {case:<44} {micros:7.1f}  ({micros / base:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
