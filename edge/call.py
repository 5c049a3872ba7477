"""The protocol-neutral values that flow through the pipeline.

Every ingress (HTTP view, WebSocket handler) turns its request into a ``Call``; every
terminal step answers with a ``Reply`` or raises an ``EdgeError``. Policy layers see only
these two types, which is why no policy is ever written twice for two protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from edge.descriptors.registry import MethodInfo
from edge.upstream.headers import Metadata


@dataclass(slots=True)
class Call:
    method: MethodInfo
    upstream: str
    request: Message
    metadata: Metadata
    timeout: float | None  # seconds; None means no deadline
    protocol: str = "http"  # "http" or "websocket"
    client: str | None = None  # peer address, for limits and logs
    state: dict[str, Any] = field(default_factory=dict)  # scratch space for layers


@dataclass(slots=True)
class Reply:
    message: Message
    initial_metadata: Sequence[tuple[str, str | bytes]] = ()
    trailing_metadata: Sequence[tuple[str, str | bytes]] = ()
