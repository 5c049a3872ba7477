"""What a reload may change, and what keeps its running value until a restart."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.config import parse_config
from edge.config_source import RESTART_ONLY, ConfigSource, keep_running

BASE = {"upstreams": {"u": {"address": "127.0.0.1:1"}}, "services": {"*": {"upstream": "u"}}}


def config(**sections: object) -> object:
    return parse_config({**BASE, **sections}, base=Path("/"), env={})


def test_listener_settings_keep_their_running_values_and_are_named() -> None:
    running = config(server={"bind": ["127.0.0.1:8080"], "workers": 2})
    new = config(
        server={"bind": ["0.0.0.0:9090"], "workers": 4, "send_timeout": "5s"},
        admin={"bind": "127.0.0.1:9901"},
    )
    applied, changed = keep_running(new, running)  # type: ignore[arg-type]
    assert changed == ["server.bind", "server.workers", "admin.bind"]
    assert applied.server.bind == ["127.0.0.1:8080"]
    assert applied.server.workers == 2
    assert applied.admin.bind is None
    assert applied.server.send_timeout == 5.0  # live settings of the same section apply


def test_a_config_changing_only_live_settings_is_applied_as_it_is() -> None:
    running = config()
    new = config(
        rate_limiting={"backend": "memory", "max_keys": 10},
        cors={"allow_origins": ["https://a.example"]},
    )
    applied, changed = keep_running(new, running)  # type: ignore[arg-type]
    assert changed == [] and applied is new


def test_every_restart_only_setting_exists() -> None:
    running = config()
    for section, key in RESTART_ONLY:
        assert hasattr(getattr(running, section), key), (section, key)


def test_the_source_reads_the_file_again_with_the_command_lines_overrides(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({**BASE, "server": {"bind": ["127.0.0.1:1"]}}))
    source = ConfigSource(path, {"bind": ["127.0.0.1:2"]})
    assert source.load(env={}).server.bind == ["127.0.0.1:2"]
    path.write_text(yaml.safe_dump({**BASE, "server": {"bind": ["127.0.0.1:3"], "workers": 3}}))
    again = source.load(env={})
    assert again.server.bind == ["127.0.0.1:2"]  # --bind still wins
    assert again.server.workers == 3
