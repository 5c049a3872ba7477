"""The README's "Try the demo" curl lines, run as written against a real ``edge demo``.

The block is taken from the README itself, so the lines a new user copies are the lines
tested; only ``localhost:8080`` becomes the demo's ephemeral port. They run in order
(later lines rely on the book the earlier ones create), as one bash script that stops at
the first curl that fails, and what they print must show each line doing what its
comment says.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from http_upstream import closed_port

pytestmark = pytest.mark.e2e


def _demo_block() -> str:
    """The first ```sh block under the README's "Try the demo" heading (any level)."""
    readme = (ROOT / "README.md").read_text()
    heading = re.search(r"^#+ Try the demo$", readme, re.M)
    assert heading is not None, "the README lost its Try the demo section"
    match = re.search(r"```sh\n(.*?)```", readme[heading.end() :], re.S)
    assert match is not None, "the README lost its demo block"
    return match.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_demo_lines_work_as_written() -> None:
    port, upstream_port = closed_port(), closed_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "demo", "--bind", f"127.0.0.1:{port}",
         "--upstream-port", str(upstream_port), "--protos", str(ROOT / "protos")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        for _ in range(300):
            probe = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/healthz"],
                check=False,
            )
            if probe.returncode == 0:
                break
            assert demo.poll() is None, "edge demo exited"
            time.sleep(0.05)
        script = "set -e\n" + _demo_block().replace("localhost:8080", f"127.0.0.1:{port}")
        ran = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=120, check=False
        )
    finally:
        demo.terminate()
        log = demo.communicate(timeout=30)[0]
    out = ran.stdout
    assert ran.returncode == 0, ran.stderr + out
    assert "Traceback" not in log and "internal error" not in out
    assert '"genre":"GENRE_HISTORY"' in out  # the filtered, paged list
    assert re.search(r"HTTP/1.1 404 .*?\"code\":5", out, re.S)  # the missing book
    assert '"title":"Dune Messiah"' in out  # created, then its title alone changed
    assert '"fieldViolations"' in out  # google.rpc.BadRequest details
    assert "malformed JSON body" in out
    assert "HTTP/1.1 405" in out
    assert out.count('"result"') >= 6  # the NDJSON stream and the bidi answers
    assert "data: " in out  # the same stream as Server-Sent Events
    assert '{"code":"not_found"' in out  # the Connect call's error, in Connect's form
    assert '"author":"F. Herbert"' in out  # the PATCH without a mask
    assert re.search(r"content-encoding: gzip", out, re.I)  # the compressed stream, decoded
    assert "shelves/1/books/1,The Left Hand of Darkness" in out  # the CSV export
    assert "Page 1 of " in out  # the download's first piece
