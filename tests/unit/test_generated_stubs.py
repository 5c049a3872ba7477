"""The stubs in generated/ must match the protos they come from."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# version stamps vary with the grpcio-tools release, not with the protos
_VERSION_LINES = re.compile(
    r"^.*(Protobuf Python Version|GRPC_GENERATED_VERSION|ValidateProtobufRuntimeVersion).*$\n?",
    re.M,
)


def _normalised(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): _VERSION_LINES.sub("", p.read_text())
        for p in sorted(folder.rglob("*.py*"))
        if "__pycache__" not in p.parts
    }


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen"), str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    fresh = _normalised(tmp_path)
    committed = _normalised(ROOT / "generated")
    assert sorted(fresh) == sorted(committed), "run scripts/gen: files differ"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run scripts/gen: stale stubs {stale}"
