"""Instructions per call, counted by callgrind: a measure of edge's own cost that holds still.

Wall-clock CPU on a shared two-core machine scatters by 5-10% from run to run, more than
the differences worth knowing about here (one adapter against another, a commit against
the one before). valgrind's callgrind counts instructions instead, which repeat exactly
for the same code and inputs. Each figure is the in-process harness of
``adapter_cost.py`` (the gateway's ASGI app, canned upstream, no server) run twice under
callgrind, with ``--small`` and ``--large`` calls after the same warm-up; the difference
divided by the extra calls is one call's instructions, start-up and warm-up cancelled.
``--root`` measures another checkout's ``edge`` (an older commit, say) with this harness.
Slow: about a minute per run. Run as ``python -m benchmarks.instructions``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.adapter_cost import KINDS

REPO = Path(__file__).resolve().parents[1]
_RUNNER = """
import asyncio, sys
sys.path.insert(0, {repo!r})
import benchmarks  # this checkout's harness, whichever edge is measured
root = {root!r}
if root:
    sys.path[:0] = [root, root + "/generated"]
from benchmarks.adapter_cost import KINDS, _app, _call
async def main():
    asgi = _app()
    headers, body = KINDS[{kind!r}]
    for _ in range(200):
        await _call(asgi, headers, body)
    for _ in range({calls}):
        await _call(asgi, headers, body)
asyncio.run(main())
"""


def count(kind: str, calls: int, root: str) -> int:
    """Instructions of one harness run: start-up, warm-up and ``calls`` calls."""
    return callgrind(_RUNNER.format(root=root, repo=str(REPO), kind=kind, calls=calls))


def callgrind(source: str) -> int:
    """Instructions callgrind counts for one run of the Python program ``source``."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "run.py"
        script.write_text(source)
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={folder}/callgrind.out",
                sys.executable,
                str(script),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=400)
    parser.add_argument("--root", default="", help="another checkout whose edge to measure")
    args = parser.parse_args(argv)
    per_call = {}
    for kind in args.kinds:
        extra = count(kind, args.large, args.root) - count(kind, args.small, args.root)
        per_call[kind] = extra / (args.large - args.small)
    base = per_call.get("JSON POST")
    print(f"instructions per call in process (callgrind{', ' + args.root if args.root else ''})")
    for kind, value in per_call.items():
        ratio = f"  ({value / base:.3f}x the JSON POST)" if base else ""
        print(f"  {kind:<16} {value:11,.0f}{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
