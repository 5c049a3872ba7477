"""The settings of a gRPC upstream, as values: what a channel to it needs, read from config.

Built once per load from ``upstreams:`` and handed to whatever talks to the upstream: the
grpc.aio channels and the lean client (``edge.upstream``), and server reflection
(``edge.descriptors.reflection``). Kept out of ``edge.upstream`` so that the descriptors
and routes can name an upstream's settings without importing the clients, and the clients
can share them without importing one another. Pure: nothing here opens a connection or
reads a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.config import Config

# gRPC's compression algorithm names, in C-core's order (that of its grpc-accept-encoding)
COMPRESSION_ALGORITHMS = ("identity", "deflate", "gzip")


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
    # the channel's gRPC service config (load balancing, outlier detection), as JSON
    service_config: str | None = None
    # "lean": unary-unary calls go through edge.upstream.lean_channel, not grpc.aio
    client: Literal["grpcio", "lean"] = "grpcio"
    addresses: tuple[str, ...] = ()  # the host:port list behind target (the lean client's)
    load_balancing: str = "round_robin"
    # gRPC message compression (edge.upstream.compression): requests compressed with this
    # (None: not compressed); what the lean client advertises in grpc-accept-encoding,
    # identity first (grpc.aio advertises every algorithm it decodes, whatever this says)
    request_compression: str | None = None
    accept_compression: tuple[str, ...] = ("identity",)


def grpc_target(addresses: Sequence[str]) -> str:
    """A gRPC target for one or several ``host:port`` addresses (several: IP addresses of
    one family, which config validation guarantees)."""
    if len(addresses) == 1:
        return addresses[0]
    scheme = "ipv6:" if addresses[0].startswith("[") else "ipv4:"
    return scheme + ",".join(addresses)


def service_config(policy: str, outlier: Mapping[str, Any] | None) -> str:
    """gRPC service config JSON: the load-balancing policy, wrapped in outlier detection."""
    balancing: dict[str, Any] = {policy: {}}
    if outlier is not None:
        balancing = {
            "outlier_detection_experimental": {
                "interval": f"{outlier['interval']}s",
                "baseEjectionTime": f"{outlier['base_ejection_time']}s",
                "maxEjectionPercent": outlier["max_ejection_percent"],
                "failurePercentageEjection": {
                    "threshold": outlier["failure_percentage"],
                    "enforcementPercentage": 100,
                    "minimumHosts": outlier["minimum_hosts"],
                    "requestVolume": outlier["request_volume"],
                },
                "childPolicy": [balancing],
            }
        }
    return json.dumps({"loadBalancingConfig": [balancing]})


def accepted_compression(accept: Sequence[str], request: str | None) -> tuple[str, ...]:
    """The algorithms the lean client advertises to an upstream: identity, the configured
    ones and the request's, in C-core's order.

    The request's algorithm is among them because grpc.aio advertises the algorithm it
    compresses with too (as it does every one it decodes).
    """
    wanted = {"identity", *accept} | ({request} if request else set())
    return tuple(name for name in COMPRESSION_ALGORITHMS if name in wanted)


def upstream_settings(config: Config) -> dict[str, UpstreamSettings]:
    """Every gRPC upstream's settings, by name."""
    settings = {}
    for name, upstream in config.upstreams.items():
        tls = upstream.tls
        request = None if upstream.request_compression == "none" else upstream.request_compression
        settings[name] = UpstreamSettings(
            name=name,
            target=grpc_target(upstream.all_addresses),
            tls=tls is not None,
            ca_file=tls.ca if tls else None,
            cert_file=tls.cert if tls else None,
            key_file=tls.key if tls else None,
            server_name=tls.server_name if tls else None,
            max_send_bytes=upstream.max_request_bytes,
            max_receive_bytes=upstream.max_response_bytes,
            service_config=service_config(
                upstream.load_balancing,
                upstream.outlier_detection.model_dump() if upstream.outlier_detection else None,
            ),
            client="lean" if upstream.lean else "grpcio",
            addresses=tuple(upstream.all_addresses),
            load_balancing=upstream.load_balancing,
            request_compression=request,
            accept_compression=accepted_compression(upstream.accept_compression, request),
        )
    return settings
