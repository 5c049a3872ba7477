"""Descriptors from gRPC server reflection: a service with reflection on needs no .proto.

For each upstream with ``reflection: true`` a load asks the upstream itself, over one
``ServerReflectionInfo`` stream per round: ``list_services``, then
``file_containing_symbol`` for each service, then ``file_by_filename`` for any import the
server has not sent yet, until the set is closed under imports. ``grpc.reflection.v1`` is
tried first and ``grpc.reflection.v1alpha`` on UNIMPLEMENTED (grpcio's own reflection
service, for one, only offers v1alpha). The two versions' messages are the same on the
wire (v1 is v1alpha renamed), so one set of message classes serves both paths.

The result is a FileDescriptorSet the registry merges like a descriptor-set file, plus
the services found, which are routed to that upstream unless ``services`` says otherwise.
The reflection and health services themselves are never fetched, so never routed.

Failure never fails a load: an upstream that is down, slow or without reflection becomes
a problem (or, when an earlier fetch succeeded, a note), and the last good set fetched
from that upstream keeps being used, so a restart of an upstream does not drop its routes.
That last good set is kept per process, keyed by upstream name and address.

What one upstream may send is bounded: ``MAX_REFLECTED_BYTES`` of distinct file
descriptors and ``MAX_REFLECTED_FILES`` files per fetch, counted as the answers stream in
(each answer is dropped once its new files are kept), so a server sending hundreds of
megabytes costs at most that much before the fetch is abandoned. Going over is a problem
naming the upstream, not a note, even when an earlier set is still served: it will not
go away by itself.

This is blocking I/O with a short deadline, on the *sync* grpc API: loads run in a worker
thread at reload and before the event loop at start-up, never on the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError

# grpcio-reflection ships the v1alpha messages, which are identical on the wire to v1's.
from grpc_reflection.v1alpha import reflection_pb2

from edge.descriptors.compiler import file_name_of
from edge.errors import EdgeError
from edge.upstream_settings import UpstreamSettings

log = logging.getLogger("edge.reflection")

V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
# Infrastructure services a server lists but no client of the gateway should reach.
UNROUTED_PREFIXES = ("grpc.reflection.", "grpc.health.v1.")
# The longest a fetch from one upstream may take (also capped by the upstream's timeout).
DEFAULT_DEADLINE = 5.0
_MAX_ROUNDS = 16  # import chains deeper than this are left to the registry to report
# The most one upstream's reflection may bring: distinct file descriptors, in bytes and in
# files. Far above what servers send for even a large API (runtimes drop comments: a few
# MiB, a few hundred files), far below what costs the gateway (60 files of 3.8 MB took
# 1.4 GiB of memory to load before these bounds).
MAX_REFLECTED_BYTES = 32 * 1024 * 1024
MAX_REFLECTED_FILES = 5_000

_Request: Any = reflection_pb2.ServerReflectionRequest
_Response: Any = reflection_pb2.ServerReflectionResponse


class ReflectionFailed(EdgeError):
    """An upstream's reflection service could not be used (down, slow, absent, broken)."""

    grpc_code = 14  # UNAVAILABLE
    # not a passing outage (the upstream sends more than edge takes): reported as a
    # problem even while an earlier set is still served
    lasting = False


class ReflectionTooLarge(ReflectionFailed):
    """An upstream's descriptors exceed MAX_REFLECTED_BYTES or MAX_REFLECTED_FILES."""

    lasting = True


@dataclass(frozen=True, slots=True)
class ReflectionSource:
    """An upstream to ask, and how long to give it."""

    upstream: UpstreamSettings
    deadline: float = DEFAULT_DEADLINE

    @property
    def key(self) -> tuple[str, str]:
        return (self.upstream.name, self.upstream.target)


@dataclass(frozen=True, slots=True)
class ReflectedSet:
    """What one successful fetch found: routable services and the files defining them."""

    upstream: str
    protocol: str  # "v1" or "v1alpha"
    services: tuple[str, ...]
    files: descriptor_pb2.FileDescriptorSet
    fetched_at: float
    # services the server listed but could not describe (NOT_FOUND and the like)
    missing: tuple[str, ...] = ()


@dataclass(slots=True)
class ReflectionLoad:
    """The reflection part of one load: sets to merge, service -> upstream, what went wrong."""

    # (upstream name, its files), in config order
    sets: list[tuple[str, descriptor_pb2.FileDescriptorSet]] = field(default_factory=list)
    services: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class ReflectionCache:
    """The last good set per upstream, so an outage keeps serving what was learned."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sets: dict[tuple[str, str], ReflectedSet] = {}

    def get(self, key: tuple[str, str]) -> ReflectedSet | None:
        with self._lock:
            return self._sets.get(key)

    def put(self, key: tuple[str, str], found: ReflectedSet) -> None:
        with self._lock:
            self._sets[key] = found

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()


LAST_GOOD = ReflectionCache()


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReflectionFailed(f"cannot read {path}: {exc.strerror}") from exc


def open_sync_channel(settings: UpstreamSettings) -> grpc.Channel:
    """A blocking channel to the upstream, with the same target and TLS as the gateway's."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.max_receive_bytes),
        ("grpc.primary_user_agent", "edge-reflection"),
        ("grpc.enable_retries", 0),
    ]
    if settings.service_config is not None:
        options.append(("grpc.service_config", settings.service_config))
    if settings.server_name:
        options.append(("grpc.ssl_target_name_override", settings.server_name))
    if not settings.tls:
        return grpc.insecure_channel(settings.target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.ca_file),
        private_key=_read(settings.key_file),
        certificate_chain=_read(settings.cert_file),
    )
    return grpc.secure_channel(settings.target, credentials, options=options)


class _Session:
    """Rounds of requests on one channel, under one overall deadline."""

    def __init__(self, channel: grpc.Channel, path: str, deadline_at: float) -> None:
        self._call = channel.stream_stream(
            path,
            request_serializer=_Request.SerializeToString,
            response_deserializer=_Response.FromString,
        )
        self._deadline_at = deadline_at

    def exchange(
        self, requests: Sequence[Any], each: Callable[[Any], None] | None = None
    ) -> list[Any]:
        """Send ``requests`` on one stream; the server answers each, in order.

        With ``each``, every answer is handed to it as it arrives and not kept (it may
        raise ReflectionFailed to abandon the stream); else the answers are returned.
        """
        remaining = self._deadline_at - time.monotonic()
        if remaining <= 0:
            raise ReflectionFailed("deadline exceeded")
        call = self._call(iter(requests), timeout=remaining)
        answers: list[Any] = []
        count = 0
        try:
            for answer in call:
                count += 1
                if each is None:
                    answers.append(answer)
                else:
                    each(answer)
        except ReflectionFailed:
            call.cancel()  # type: ignore[no-untyped-call]
            raise
        if count != len(requests):
            raise ReflectionFailed(
                f"{len(requests)} requests got {count} responses (protocol error)"
            )
        return answers


def _open_session(channel: grpc.Channel, deadline_at: float) -> tuple[str, _Session, list[str]]:
    """v1 if the server has it, else v1alpha; with the services it lists."""
    for protocol, path in (("v1", V1), ("v1alpha", V1ALPHA)):
        session = _Session(channel, path, deadline_at)
        try:
            (answer,) = session.exchange([_Request(list_services="")])
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                continue
            raise
        if answer.HasField("error_response"):
            raise ReflectionFailed(f"list_services: {answer.error_response.error_message}")
        return protocol, session, [s.name for s in answer.list_services_response.service]
    raise ReflectionFailed("the upstream implements neither grpc.reflection.v1 nor v1alpha")


@dataclass(slots=True)
class _Files:
    """The files fetched so far, within MAX_REFLECTED_BYTES and MAX_REFLECTED_FILES."""

    found: dict[str, descriptor_pb2.FileDescriptorProto] = field(default_factory=dict)
    size: int = 0

    def add(self, answer: Any) -> None:
        """Keep the answer's files not seen yet (a server may send each import again with
        every answer: those are recognised by name without being decoded)."""
        if answer.HasField("error_response"):
            return
        for raw in answer.file_descriptor_response.file_descriptor_proto:
            if file_name_of(raw) in self.found:
                continue
            proto = descriptor_pb2.FileDescriptorProto()
            try:
                proto.ParseFromString(raw)
            except DecodeError as exc:
                raise ReflectionFailed(f"a file descriptor does not decode: {exc}") from exc
            if proto.name in self.found:
                continue
            self.size += len(raw)
            if self.size > MAX_REFLECTED_BYTES:
                raise ReflectionTooLarge(
                    f"its descriptors exceed {MAX_REFLECTED_BYTES // 2**20} MiB "
                    "(MAX_REFLECTED_BYTES); none of them is used"
                )
            if len(self.found) >= MAX_REFLECTED_FILES:
                raise ReflectionTooLarge(
                    f"it sends more than {MAX_REFLECTED_FILES} files "
                    "(MAX_REFLECTED_FILES); none of them is used"
                )
            self.found[proto.name] = proto


def _local_file(name: str) -> descriptor_pb2.FileDescriptorProto | None:
    """A well-known or googleapis file this process has, for a server that does not send it."""
    try:
        found = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        return None
    proto = descriptor_pb2.FileDescriptorProto()
    found.CopyToProto(proto)
    return proto


def fetch_reflection(source: ReflectionSource, *, now: float | None = None) -> ReflectedSet:
    """Ask one upstream for its services and every file they need.

    Raises ReflectionFailed (or grpc.RpcError) when the upstream is unreachable, too slow,
    has no reflection service, or answers with something that is not a descriptor.
    """
    deadline_at = time.monotonic() + source.deadline
    with open_sync_channel(source.upstream) as channel:
        protocol, session, listed = _open_session(channel, deadline_at)
        wanted = sorted(s for s in set(listed) if not s.startswith(UNROUTED_PREFIXES))
        files = _Files()
        services: list[str] = []
        missing: list[str] = []
        if wanted:
            outcomes: list[bool] = []

            def by_symbol(answer: Any) -> None:
                outcomes.append(not answer.HasField("error_response"))
                files.add(answer)

            session.exchange([_Request(file_containing_symbol=s) for s in wanted], by_symbol)
            for service, found in zip(wanted, outcomes, strict=True):
                (services if found else missing).append(service)
        asked: set[str] = set(files.found)
        for _ in range(_MAX_ROUNDS):
            needed = sorted(
                {
                    dep
                    for f in files.found.values()
                    for dep in f.dependency
                    if dep not in files.found
                }
                - asked
            )
            if not needed:
                break
            asked.update(needed)
            session.exchange([_Request(file_by_filename=n) for n in needed], files.add)
            for name in needed:
                if name not in files.found and (local := _local_file(name)) is not None:
                    files.found[name] = local
    files_set = descriptor_pb2.FileDescriptorSet(file=list(files.found.values()))
    return ReflectedSet(
        upstream=source.upstream.name,
        protocol=protocol,
        services=tuple(services),
        files=files_set,
        fetched_at=time.time() if now is None else now,
        missing=tuple(missing),
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, EdgeError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _fetch_or_fail(source: ReflectionSource) -> ReflectedSet | Exception:
    try:
        return fetch_reflection(source)
    except (grpc.RpcError, EdgeError, ValueError, OSError) as exc:
        return exc


def reflect_upstreams(
    sources: Iterable[ReflectionSource], cache: ReflectionCache = LAST_GOOD
) -> ReflectionLoad:
    """Fetch from every source at once; failures fall back to that source's last good set.

    A service offered by several upstreams goes to the first one in config order (a note
    says so). Never raises for an upstream's failure.
    """
    sources = list(sources)
    load = ReflectionLoad()
    if not sources:
        return load
    with ThreadPoolExecutor(max_workers=min(8, len(sources))) as pool:
        outcomes = list(pool.map(_fetch_or_fail, sources))
    for source, outcome in zip(sources, outcomes, strict=True):
        name = source.upstream.name
        if isinstance(outcome, ReflectedSet):
            found: ReflectedSet | None = outcome
            cache.put(source.key, outcome)
            for service in outcome.missing:
                load.problems.append(
                    f"reflection from upstream {name}: service {service} is listed "
                    "but the server cannot describe it"
                )
        else:
            found = cache.get(source.key)
            failure = f"reflection from upstream {name} failed: {_describe(outcome)}"
            log.warning("%s", failure)
            if found is None:
                load.problems.append(failure)
            elif isinstance(outcome, ReflectionFailed) and outcome.lasting:
                load.problems.append(f"{failure}; still serving its last good set")
            else:
                ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(found.fetched_at))
                load.notes.append(
                    f"{failure}; still serving its {len(found.services)} services "
                    f"as reflected at {ago}"
                )
        if found is None:
            continue
        load.sets.append((name, found.files))
        for service in found.services:
            owner = load.services.setdefault(service, name)
            if owner != name:
                load.notes.append(
                    f"{service} is offered by upstreams {owner} and {name} (reflection); "
                    f"routed to {owner}: add a services entry to choose"
                )
    return load
