"""Every YAML config block in the README and docs/ must be a valid config: the docs stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edge.config import parse_config
from edge.sidecar import SidecarFile

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# ```yaml blocks, indented ones too (a block inside a list item)
_YAML_BLOCK = re.compile(r"^([ \t]*)```yaml\n(.*?)^\1```", re.M | re.S)


def _dedent(block: str, indent: str) -> str:
    """A block's lines without the indent of its fence."""
    return "".join(line.removeprefix(indent) for line in block.splitlines(keepends=True))


# (file, index in that file, text) for every block
BLOCKS = [
    (doc.relative_to(ROOT).as_posix(), index, _dedent(match.group(2), match.group(1)))
    for doc in DOCS
    for index, match in enumerate(_YAML_BLOCK.finditer(doc.read_text()))
]


def test_the_docs_have_config_blocks() -> None:
    assert len(BLOCKS) >= 3
    files = {name for name, _, _ in BLOCKS}
    # the configuration reference and the policies page hold the big examples
    assert {"docs/configuration.md", "docs/policies.md"} <= files


@pytest.mark.parametrize(
    "block", [text for _, _, text in BLOCKS], ids=[f"{name}-block{i}" for name, i, _ in BLOCKS]
)
def test_documented_config_block_is_valid(block: str) -> None:
    data = yaml.safe_load(block)
    if ".edge.yaml" in block.splitlines()[0]:  # a sidecar example, not a gateway config
        SidecarFile.model_validate(data)
        return
    # blocks show one section each; give the ones that refer to upstreams something to name
    data.setdefault("upstreams", {"library": {"address": "127.0.0.1:1"}})
    parse_config(data, base=Path("/tmp"), env={"EDGE_JWT_SECRET": "s", "EDGE_CI_KEY": "k"})
