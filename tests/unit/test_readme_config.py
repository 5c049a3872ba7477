"""Every YAML config block in the README must be a valid config: the docs stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edge.config import parse_config
from edge.sidecar import SidecarFile

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_config_blocks() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_config_block_is_valid(block: str) -> None:
    data = yaml.safe_load(block)
    if ".edge.yaml" in block.splitlines()[0]:  # a sidecar example, not a gateway config
        SidecarFile.model_validate(data)
        return
    # blocks show one section each; give the ones that refer to upstreams something to name
    data.setdefault("upstreams", {"library": {"address": "127.0.0.1:1"}})
    parse_config(data, base=Path("/tmp"), env={"EDGE_JWT_SECRET": "s", "EDGE_CI_KEY": "k"})
