"""Where the running config came from, so a reload can read it again the same way.

``edge serve --config edge.yaml --bind ...`` reads the file, the environment
(``${VAR}``, ``EDGE__...``) and its command-line overrides; a reload must read all three
again, or a reload would silently drop ``--bind``. And some settings cannot change in a
running process: the listeners (Hypercorn binds its sockets, TLS context and HTTP/2
settings once), the worker count, the event loop, what is mounted at start (``/metrics``,
``/openapi.json``), the tracing exporter. ``keep_running`` carries those over from the
running config and names them, so a reload applies everything else and says what needs a
restart (Envoy's listeners and nginx's ``worker_processes`` behave the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.config import Config, load_config

# (section, key): settings read once, when the process starts
RESTART_ONLY: tuple[tuple[str, str], ...] = (
    ("server", "bind"),
    ("server", "workers"),
    ("server", "certfile"),
    ("server", "keyfile"),
    ("server", "ca_certs"),
    ("server", "loop"),
    ("server", "access_log"),
    ("server", "graceful_timeout"),
    ("server", "h2_reset_burst"),
    ("server", "h2_reset_rate"),
    ("admin", "bind"),
    ("websocket", "max_message_bytes"),
    ("websocket", "ping_interval"),
    ("observability", "metrics"),
    ("observability", "log_format"),
    ("observability", "tracing"),
    ("openapi", "enabled"),
)


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """The config file (None: the built-in demo config) and the command line's overrides."""

    path: Path | None = None
    server_overrides: Mapping[str, Any] = field(default_factory=dict)

    def load(self, env: Mapping[str, str] | None = None) -> Config:
        """Read and validate the config as ``edge serve`` did; raises ConfigError."""
        config = load_config(self.path, env)
        if self.server_overrides:
            server = config.server.model_copy(update=dict(self.server_overrides))
            config = config.model_copy(update={"server": server})
        return config


def keep_running(new: Config, running: Config) -> tuple[Config, list[str]]:
    """``new`` with the restart-only settings of ``running``, and the ones that differed."""
    changed: list[str] = []
    sections: dict[str, dict[str, Any]] = {}
    for section, key in RESTART_ONLY:
        was = getattr(getattr(running, section), key)
        if getattr(getattr(new, section), key) != was:
            changed.append(f"{section}.{key}")
            sections.setdefault(section, {})[key] = was
    if not sections:
        return new, changed
    update = {
        section: getattr(new, section).model_copy(update=values)
        for section, values in sections.items()
    }
    return new.model_copy(update=update), changed
