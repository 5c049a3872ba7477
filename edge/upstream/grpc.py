"""gRPC upstreams: one long-lived grpc.aio channel per upstream, one multicallable per method.

Channels and multicallables are made once when the app starts serving (grpc.aio objects
belong to the running event loop) and reused by every request. The terminal step turns
``grpc.aio.AioRpcError`` into ``UpstreamStatus`` here, at the boundary, so nothing past
this module knows grpc's exception types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import grpc.aio

from edge.call import Call, Reply
from edge.descriptors.registry import MethodInfo
from edge.errors import ConfigError, UpstreamStatus
from edge.transcode.status import code_number


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """What a channel needs; built from config at load time."""

    name: str
    target: str
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    max_send_bytes: int = 4 * 1024 * 1024
    max_receive_bytes: int = 4 * 1024 * 1024


def grpc_target(addresses: Sequence[str]) -> str:
    """A gRPC target for one or several ``host:port`` addresses (several: round-robin)."""
    if len(addresses) == 1:
        return addresses[0]
    return "ipv4:" + ",".join(addresses)


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def open_channel(settings: UpstreamSettings) -> grpc.aio.Channel:
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", settings.max_send_bytes),
        ("grpc.max_receive_message_length", settings.max_receive_bytes),
        ("grpc.primary_user_agent", "edge"),
        ("grpc.enable_retries", 0),  # retries are the pipeline's job, under its budget
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.lb_policy_name", "round_robin"),
    ]
    if settings.server_name:
        options.append(("grpc.ssl_target_name_override", settings.server_name))
    if not settings.tls:
        return grpc.aio.insecure_channel(settings.target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.ca_file),
        private_key=_read(settings.key_file),
        certificate_chain=_read(settings.cert_file),
    )
    return grpc.aio.secure_channel(settings.target, credentials, options=options)


class Terminal(Protocol):
    """The last step of the pipeline: owns upstream connections for the app's lifetime."""

    def open(self, routes: Iterable[tuple[str, MethodInfo]]) -> None: ...

    async def close(self) -> None: ...

    async def __call__(self, call: Call) -> Reply: ...


class GrpcTerminal:
    """The terminal step for transcoded calls: sends ``call.request`` to the upstream."""

    def __init__(self, upstreams: Mapping[str, UpstreamSettings]) -> None:
        self._settings = dict(upstreams)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._unary: dict[tuple[str, str], grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}

    def open(self, routes: Iterable[tuple[str, MethodInfo]]) -> None:
        """Create channels and multicallables; call from inside the running loop."""
        for upstream, method in routes:
            channel = self._channels.get(upstream)
            if channel is None:
                channel = open_channel(self._settings[upstream])
                self._channels[upstream] = channel
            key = (upstream, method.full_name)
            if key not in self._unary:
                self._unary[key] = channel.unary_unary(
                    method.grpc_path,
                    request_serializer=method.input_type.SerializeToString,
                    response_deserializer=method.output_type.FromString,
                )

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        self._unary.clear()
        for channel in channels.values():
            await channel.close(grace=None)

    async def __call__(self, call: Call) -> Reply:
        rpc = self._unary[(call.upstream, call.method.full_name)]
        response_call = rpc(call.request, timeout=call.timeout, metadata=call.metadata)
        try:
            message = await response_call
            initial = await response_call.initial_metadata()
            trailing = await response_call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            raise UpstreamStatus(
                code_number(exc.code()),
                exc.details() or exc.code().name,
                initial_metadata=_pairs(exc.initial_metadata()),
                trailing_metadata=_pairs(exc.trailing_metadata()),
            ) from exc
        return Reply(message, _pairs(initial), _pairs(trailing))


def _pairs(metadata: Any) -> tuple[tuple[str, str | bytes], ...]:
    return tuple((str(key), value) for key, value in metadata or ())
