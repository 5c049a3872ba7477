"""The lean gRPC client against a server that is not grpc C-core: @grpc/grpc-js on Node.

tests/e2e/test_lean_client_e2e.py holds the lean client to grpc.aio's answers from
grpc.aio (C-core) servers, whose HTTP/2 and HPACK are C-core's own. Here the lean client
(edge/upstream/lean.py, lean_channel.py) meets another HTTP/2 stack: the server is
``tests/peers/grpcjs/server.js``: grpc-js, whose HTTP/2 is Node's nghttp2, with its own
frame sizes, header encoding (a dynamic table, Huffman), ``grpc-message`` escaping
(``encodeURI``), trailers-only replies and shutdown. Every call is made twice, through a
``GrpcTerminal`` of each client, and the two results (reply, status code and message,
details, initial and trailing metadata) must be the same. Three differences this found
(a too-large reply losing its initial metadata, no limit on received metadata, a header
list over 64 KiB failing the whole connection) were fixed in lean.py.

The server's packages are pinned in tests/peers/grpcjs/package-lock.json and installed
once by ``npm ci`` (again only when the lock changes). scripts/test installs Debian's
nodejs and npm when they are missing, so a machine without them fails these tests rather
than silently losing the only interop check; ``EDGE_SKIP_INTEROP=1`` skips them instead.
A failed install fails them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import select
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import ROOT, TEST_PROTOS, make_config
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from edge.call import Call
from edge.descriptors.compiler import GOOGLEAPIS_ROOT, WELL_KNOWN_ROOT
from edge.descriptors.registry import MethodInfo
from edge.errors import UpstreamStatus
from edge.routes import load_routes
from edge.upstream.grpc import GrpcTerminal
from edge.upstream_settings import upstream_settings

pytestmark = pytest.mark.e2e

PEER = ROOT / "tests" / "peers" / "grpcjs"
CLIENTS = ("grpcio", "lean")
MiB = 1024 * 1024

Pairs = tuple[tuple[str, str | bytes], ...]


# -- the grpc-js server ---------------------------------------------------------------


@pytest.fixture(scope="session")
def grpcjs_installed() -> str:
    """node's path, once tests/peers/grpcjs/node_modules matches package-lock.json."""
    if os.environ.get("EDGE_SKIP_INTEROP") == "1":
        pytest.skip("EDGE_SKIP_INTEROP=1: the grpc-js interop tests are opted out")
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "node and npm are needed for the grpc-js peer (tests/peers/grpcjs): scripts/test "
            "installs them; set EDGE_SKIP_INTEROP=1 to skip these tests instead"
        )
    lock = hashlib.sha256((PEER / "package-lock.json").read_bytes()).hexdigest()
    stamp = PEER / "node_modules" / ".edge-installed-lock"
    if not stamp.is_file() or stamp.read_text() != lock:
        try:
            installed = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=PEER,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("npm ci in tests/peers/grpcjs took more than 10 minutes")
        if installed.returncode != 0:
            output = (installed.stdout + installed.stderr)[-4000:]
            pytest.fail(f"npm ci in tests/peers/grpcjs failed ({installed.returncode}):\n{output}")
        stamp.write_text(lock)
    return node


class Peer:
    """One server.js process: its port, and its stdin commands (see server.js)."""

    def __init__(self, node: str, log: Path, **env: str) -> None:
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [
                node,
                str(PEER / "server.js"),
                *map(str, (TEST_PROTOS, WELL_KNOWN_ROOT, GOOGLEAPIS_ROOT)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **env},
        )
        self.log = log
        try:
            self.port = int(self.line(15.0))
        except BaseException:
            self.close()
            raise

    @property
    def _stdout(self) -> IO[bytes]:
        assert self.process.stdout is not None
        return self.process.stdout

    def line(self, timeout: float) -> str:
        """The server's next stdout line (its stdout carries only whole lines)."""
        ready, _, _ = select.select([self._stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"server.js said nothing in {timeout} s; {self.log} has its log")
        text = self._stdout.readline().decode()
        if not text:
            raise AssertionError(f"server.js exited ({self.process.poll()}): see {self.log}")
        return text.strip()

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def cancelled(self) -> int:
        """How many Sleep calls the server has seen cancelled so far."""
        self.command("stats")
        return int(json.loads(self.line(5.0))["cancelled"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()  # server.js exits when stdin closes
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


@contextlib.contextmanager
def running_peer(node: str, folder: Path, **env: str) -> Iterator[Peer]:
    peer = Peer(node, folder / "server.log", **env)
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture(scope="session")
def peer(grpcjs_installed: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    with running_peer(grpcjs_installed, tmp_path_factory.mktemp("grpcjs")) as running:
        yield running


@pytest.fixture(scope="session")
def narrow_peer(grpcjs_installed: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """A grpc-js server allowing 8 concurrent streams per connection."""
    folder = tmp_path_factory.mktemp("grpcjs-narrow")
    with running_peer(grpcjs_installed, folder, PEER_MAX_STREAMS="8") as running:
        yield running


@pytest.fixture(scope="session")
def tls_peer(
    grpcjs_installed: str, tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path]
) -> Iterator[Peer]:
    """A grpc-js server over TLS (Node's TLS and ALPN), with the tests' certificate."""
    cert, key = tls_files
    folder = tmp_path_factory.mktemp("grpcjs-tls")
    with running_peer(
        grpcjs_installed, folder, PEER_TLS_CERT=str(cert), PEER_TLS_KEY=str(key)
    ) as running:
        yield running


# -- the same call through both clients ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Everything a caller of the terminal can see of one call."""

    code: int
    message: str  # the status message; "" when OK
    reply: Message | None
    initial: Pairs
    trailing: Pairs


@functools.cache
def kitchen_routes() -> list[tuple[str, MethodInfo]]:
    """The kitchen's methods, plus Echo under a service grpc-js does not serve (Missing)."""
    routes = load_routes(make_config(1)).upstream_methods()
    echo = next(m for _, m in routes if m.full_name == "edgetest.v1.KitchenService.Echo")
    return [*routes, ("kitchen", dataclasses.replace(echo, service="edgetest.v1.Missing"))]


class Client:
    """A GrpcTerminal for one client kind, and the kitchen's methods by name."""

    def __init__(self, kind: str, port: int, **upstream: Any) -> None:
        upstream = {
            "address": f"127.0.0.1:{port}",
            "timeout": "5s",
            "client": kind,
            "max_request_bytes": "8MiB",
            "max_response_bytes": "8MiB",
            **upstream,
        }
        config = make_config(port, extra={"upstreams": {"kitchen": upstream}})
        routes = kitchen_routes()  # the same message classes for both clients
        self.kind = kind
        self.methods = {
            "Missing" if m.service == "edgetest.v1.Missing" else m.name: m
            for _, m in routes
            if m.service in ("edgetest.v1.KitchenService", "edgetest.v1.Missing")
        }
        self.terminal = GrpcTerminal(upstream_settings(config))
        self.terminal.open(routes)

    def request(self, method: str, **fields: Any) -> Message:
        message: Message = self.methods[method].input_type(**fields)
        return message

    async def call(
        self,
        method: str,
        request: Message | None = None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
        timeout: float | None = 5.0,
    ) -> Outcome:
        info = self.methods[method]
        if request is None:
            request = info.input_type()
        call = Call(
            "kitchen", info.full_name, list(metadata), timeout, method=info, request=request
        )
        try:
            reply = await self.terminal(call)
        except UpstreamStatus as error:
            initial, trailing = error.initial_metadata, error.trailing_metadata
            return Outcome(error.grpc_code, error.message, None, dated(initial), dated(trailing))
        initial, trailing = reply.initial_metadata, reply.trailing_metadata
        return Outcome(0, "", reply.message, dated(initial), dated(trailing))


def dated(pairs: Sequence[tuple[str, str | bytes]]) -> Pairs:
    """``pairs`` with the value of Node's ``date`` header (the clock's) left out."""
    return tuple((key, "<date>" if key == "date" else value) for key, value in pairs)


@contextlib.asynccontextmanager
async def clients(port: int, **upstream: Any) -> AsyncIterator[dict[str, Client]]:
    opened: dict[str, Client] = {}
    try:
        for kind in CLIENTS:
            opened[kind] = Client(kind, port, **upstream)
        yield opened
    finally:
        for client in opened.values():
            await client.terminal.close()


@pytest.fixture
async def pair(peer: Peer) -> AsyncIterator[dict[str, Client]]:
    async with clients(peer.port) as opened:
        yield opened


async def same(pair: dict[str, Client], make: Callable[[Client], Awaitable[Any]]) -> Any:
    """Run ``make`` with each client; the results must be equal. Returns grpcio's."""
    results = {kind: await make(client) for kind, client in pair.items()}
    assert results["lean"] == results["grpcio"]
    return results["grpcio"]


# -- replies, statuses, details, metadata -----------------------------------------------


async def test_echo_round_trip(pair: dict[str, Client]) -> None:
    fields = {
        "string_value": "s é 🍕",
        "int64_value": -12,
        "uint64_value": 2**64 - 1,
        "double_value": float("inf"),
        "bytes_value": b"\x00\x01binary",
        "enum_value": 2,
        "labels": {"k": "v", "é": "ü"},
        "repeated_int64": [1, -1, 2**62],
    }
    outcome = await same(pair, lambda c: c.call("Echo", c.request("Echo", **fields)))
    assert outcome.code == 0
    assert outcome.reply == pair["grpcio"].request("Echo", **fields)


async def test_plain_empty_message(pair: dict[str, Client]) -> None:
    """An empty Kitchen is a 0-byte gRPC message, both ways."""
    outcome = await same(pair, lambda c: c.call("Plain"))
    assert outcome.code == 0 and outcome.reply is not None
    assert outcome.reply.ByteSize() == 0


def status_of(outcome: Outcome) -> status_pb2.Status:
    for key, value in outcome.trailing:
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            return status_pb2.Status.FromString(value)
    raise AssertionError(f"no grpc-status-details-bin in {outcome.trailing}")


def failing(code: int, message: str) -> Callable[[Client], Awaitable[Outcome]]:
    return lambda c: c.call("Fail", c.request("Fail", code=code, message=message))


async def test_every_status_code_and_message(pair: dict[str, Client]) -> None:
    """grpc-js escapes grpc-message with encodeURI; both clients must undo it the same way."""
    texts = [
        "failed {code}: 100% ü",
        "🍕 a/b?c&d=e#f ; %41 [x] 'q' \"dq\" \t tab\nline ~!*()",
        "",  # no message: it stays empty, as grpc.aio reports it
    ]
    for code in [*range(1, 17), 17, 99]:  # 17 and 99 are no status grpc knows: UNKNOWN
        for text in texts:
            message = text.format(code=code)
            outcome = await same(pair, failing(code, message))
            expected_code = code if code <= 16 else 2
            assert (outcome.code, outcome.reply) == (expected_code, None)
            assert outcome.message == message
            assert outcome.initial == ()  # trailers-only: one HEADERS frame with END_STREAM
            assert outcome.trailing == (("date", "<date>"),)


async def test_details_headers_and_trailers(pair: dict[str, Client]) -> None:
    request = {
        "code": 3,
        "message": "bad title ü",
        "bad_field": "book.title",
        "headers": {"x-shard": "7", "x-region": "eu"},
        "trailers": {"x-trace": "t1", "x-cost": "12"},
    }
    outcome = await same(pair, lambda c: c.call("Fail", c.request("Fail", **request)))
    assert (outcome.code, outcome.message) == (3, "bad title ü")
    assert set(outcome.initial) == {("x-shard", "7"), ("x-region", "eu"), ("date", "<date>")}
    assert {k: v for k, v in outcome.trailing if k.startswith("x-")} == {
        "x-trace": "t1",
        "x-cost": "12",
    }
    status = status_of(outcome)
    assert (status.code, status.message) == (3, "bad title ü")
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("book.title", "is bad")
    ]


async def test_metadata_echoed_as_headers_and_trailers(pair: dict[str, Client]) -> None:
    """Request metadata reaches grpc-js, and comes back in both header blocks, as sent."""
    every_byte = bytes(range(256))
    sent: list[tuple[str, str | bytes]] = [
        ("echo-plain", "v1"),
        ("echo-plain", "v2"),  # two fields: Node joins them ("v1, v2")
        ("echo-spaces", "a b=c;d, e"),
        ("echo-big", "x" * 5000),  # a long literal (Huffman-coded by Node's HPACK)
        ("echo-one-bin", b"\x00"),  # base64 padding: two "=", one "=", none
        ("echo-two-bin", b"\xff\xfe"),
        ("echo-three-bin", b"\x01\x02\x03"),
        ("echo-empty-bin", b""),
        ("echo-all-bin", every_byte),
        ("echo-twice-bin", b"first"),
        ("echo-twice-bin", b"second"),
        ("not-echoed", "z"),
    ]
    for round_ in range(3):  # again: by now Node's dynamic table holds these fields
        outcome = await same(
            pair,
            lambda c: c.call("Echo", c.request("Echo", string_value="m"), metadata=sent),
        )
        assert outcome.code == 0, round_
        echoed = dict(outcome.initial)
        assert echoed["echo-plain"] == "v1, v2"
        assert echoed["echo-spaces"] == "a b=c;d, e"
        assert echoed["echo-big"] == "x" * 5000
        assert echoed["echo-one-bin"] == b"\x00"
        assert echoed["echo-three-bin"] == b"\x01\x02\x03"
        assert echoed["echo-empty-bin"] == b""
        assert echoed["echo-all-bin"] == every_byte
        assert [v for k, v in outcome.initial if k == "echo-twice-bin"] == [b"first", b"second"]
        assert "not-echoed" not in echoed
        assert [p for p in outcome.initial if p[0] != "date"] == list(outcome.trailing)


async def test_request_metadata_and_deadline_reach_the_server(pair: dict[str, Client]) -> None:
    sent = [("tenant", "acme"), ("authorization", "Bearer abc"), ("blob-bin", b"\x00\xff\x10")]

    async def inspect(client: Client) -> dict[str, str]:
        outcome = await client.call("Inspect", client.request("Inspect"), sent, timeout=3.0)
        assert outcome.code == 0 and outcome.reply is not None
        assert 2.5 < outcome.reply.deadline_seconds <= 3.1  # C-core rounds up to 10 ms
        return {k: v for k, v in outcome.reply.metadata.items() if k != "user-agent"}

    seen = await same(pair, inspect)
    assert seen == {"tenant": "acme", "authorization": "Bearer abc", "blob-bin": "bin:00ff10"}


async def test_deadline_exceeded(pair: dict[str, Client], peer: Peer) -> None:
    """DEADLINE_EXCEEDED from both; the server learns of it and the channel lives on.

    Only the code is compared: grpc-js truncates ``grpc-timeout`` to whole milliseconds
    and ends the call itself ("Deadline exceeded", trailers-only) at about the moment the
    client's own timer fires ("Deadline Exceeded"), so which one a client reports is a
    race. grpcio's text then varies too: "Stream removed (Deadline Exceeded)", the
    server's "Deadline exceeded", and now and then "Deadline%20exceeded" (not decoded).
    """
    before = peer.cancelled()

    async def late(client: Client) -> tuple[int, bool, int]:
        slow = await client.call("Sleep", client.request("Sleep", seconds=3), timeout=0.2)
        after = await client.call("Echo", client.request("Echo", string_value="after"))
        return slow.code, "deadline" in slow.message.lower(), after.code

    assert await same(pair, late) == (4, True, 0)
    for _ in range(100):  # the server has let go of both calls
        if peer.cancelled() - before >= 2:
            break
        await asyncio.sleep(0.02)
    assert peer.cancelled() - before == 2


async def test_unknown_method_is_unimplemented(pair: dict[str, Client]) -> None:
    outcome = await same(pair, lambda c: c.call("Missing"))
    assert outcome.code == 12
    assert outcome.message == "The server does not implement the method /edgetest.v1.Missing/Echo"


async def test_cancelled_call_resets_its_stream(pair: dict[str, Client], peer: Peer) -> None:
    before = peer.cancelled()

    async def cancel(client: Client) -> tuple[bool, int]:
        task = asyncio.ensure_future(client.call("Sleep", client.request("Sleep", seconds=3)))
        await asyncio.sleep(0.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        after = await client.call("Echo")  # the connection lives on
        return task.cancelled(), after.code

    assert await same(pair, cancel) == (True, 0)
    for _ in range(100):  # RST_STREAM CANCEL reached grpc-js
        if peer.cancelled() - before >= 2:
            break
        await asyncio.sleep(0.02)
    assert peer.cancelled() - before == 2


# -- sizes, limits and concurrency ------------------------------------------------------


def pattern(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@pytest.mark.parametrize("size", [0, 1, 100 * 1024, 3 * MiB], ids=["0B", "1B", "100KiB", "3MiB"])
@pytest.mark.parametrize("direction", ["echo", "reply"])
async def test_message_sizes(pair: dict[str, Client], size: int, direction: str) -> None:
    """Payloads of 0 and 1 bytes, 100 KiB and 3 MiB, in the request or only in the reply.

    Big requests wait for grpc-js's flow-control windows (64 KiB at first) and go out in
    MAX_FRAME_SIZE pieces; big replies come in many DATA frames. An empty payload makes
    a 0-byte gRPC message.
    """
    payload = pattern(size)

    async def call(client: Client) -> Outcome:
        if direction == "echo":
            request = client.request("Echo", bytes_value=payload)
            return await client.call("Echo", request)
        return await client.call("Echo", metadata=[("reply-bytes", str(size))])

    outcome = await same(pair, call)
    assert outcome.code == 0 and outcome.reply is not None
    assert outcome.reply.bytes_value == payload
    assert (outcome.reply.ByteSize() == 0) == (size == 0)


async def test_message_size_limits(peer: Peer) -> None:
    """Too big to send (refused locally) and too big to receive: RESOURCE_EXHAUSTED.

    The texts differ in wording only: grpcio 1.85 says "CLIENT: Sent message larger than
    max (3003 vs. 2000)" and "Stream removed (CLIENT: Received message larger ...)".
    """

    async def limits(client: Client) -> list[tuple[int, str]]:
        sent = await client.call("Echo", client.request("Echo", bytes_value=b"x" * 3000))
        received = await client.call("Echo", metadata=[("reply-bytes", "5000")])
        fits = await client.call("Echo", metadata=[("reply-bytes", "3990")])
        return [
            (sent.code, "Sent message larger than max (3003 vs. 2000)" in sent.message),
            (received.code, "larger than max (5003 vs. 4000)" in received.message),
            (fits.code, fits.message == ""),
        ]

    async with clients(peer.port, max_request_bytes=2000, max_response_bytes=4000) as pair:
        assert await same(pair, limits) == [(8, True), (8, True), (0, True)]


@pytest.mark.parametrize("kind", ["grpcio", "lean"])
async def test_reply_too_large_keeps_initial_metadata(peer: Peer, kind: str) -> None:
    """grpc.aio's error still has the headers that came before the oversized message."""
    async with clients(peer.port, max_response_bytes=4000) as pair:
        client = pair[kind]
        outcome = await client.call("Echo", metadata=[("reply-bytes", "5000"), ("echo-x", "1")])
    assert outcome.code == 8
    assert outcome.initial == (("echo-x", "1"), ("date", "<date>"))


@pytest.mark.parametrize("kind", ["grpcio", "lean"])
async def test_received_metadata_over_16_kib_fails_the_call(
    pair: dict[str, Client], kind: str
) -> None:
    """grpc's hard limit on received metadata (grpc.absolute_max_metadata_size, 16 KiB).

    grpc-js echoes 17,000 bytes of request metadata back in both header blocks; grpc
    refuses the call with RESOURCE_EXHAUSTED ("received metadata size exceeds hard
    limit"). (Between the 8 KiB soft limit and 16 KiB grpc refuses at random.)
    """
    client = pair[kind]
    outcome = await client.call("Echo", metadata=[("echo-big", "y" * 17_000)])
    assert (outcome.code, outcome.reply) == (8, None)
    assert (await client.call("Echo")).code == 0  # only that call failed


@pytest.mark.parametrize("kind", ["grpcio", "lean"])
async def test_header_list_over_64_kib_fails_only_its_call(
    pair: dict[str, Client], kind: str
) -> None:
    """A reply whose header block is over 64 KiB fails that call, not its neighbours."""
    client = pair[kind]
    neighbour = asyncio.ensure_future(client.call("Sleep", client.request("Sleep", seconds=0.4)))
    await asyncio.sleep(0.1)
    big = [("echo-a", "y" * 35_000), ("echo-b", "z" * 35_000)]
    outcome = await client.call("Echo", metadata=big)
    assert (outcome.code, outcome.reply) == (8, None)
    assert (await neighbour).code == 0


@pytest.mark.parametrize("streams", ["unlimited", "8"])
async def test_200_concurrent_calls_on_one_channel(
    request: pytest.FixtureRequest, streams: str
) -> None:
    server: Peer = request.getfixturevalue("peer" if streams == "unlimited" else "narrow_peer")

    async def one(client: Client, index: int) -> Outcome:
        if index % 4 == 3:
            return await client.call("Sleep", client.request("Sleep", seconds=0.05))
        if index % 4 == 2:
            return await client.call("Fail", client.request("Fail", code=5, message=f"no {index}"))
        request = client.request("Echo", string_value=f"call {index}")
        return await client.call("Echo", request, metadata=[("echo-index", str(index))])

    async def many(client: Client) -> list[Outcome]:
        return await asyncio.gather(*(one(client, index) for index in range(200)))

    async with clients(server.port) as pair:
        outcomes = await same(pair, many)
    assert [o.code for o in outcomes] == [0, 0, 5, 0] * 50
    assert all(o.reply.string_value == f"call {i}" for i, o in enumerate(outcomes) if i % 4 < 2)


# -- a server going away ----------------------------------------------------------------


async def test_server_stopping_with_calls_in_flight(grpcjs_installed: str, tmp_path: Path) -> None:
    """tryShutdown (GOAWAY, listener closed), then forceShutdown a second later.

    Calls in flight that end within the grace finish; a new call, which needs a new
    connection, finds no listener: UNAVAILABLE. forceShutdown destroys the session with
    NGHTTP2_CANCEL: Node resets the open streams with RST_STREAM CANCEL (CANCELLED) and
    sends GOAWAY CANCEL; the last stream's reset has always been lost to the closing
    socket (UNAVAILABLE), for both clients alike.
    """

    async def stopping(client: Client, server: Peer) -> dict[str, list[int]]:
        def sleep(seconds: float) -> Awaitable[Outcome]:
            return client.call("Sleep", client.request("Sleep", seconds=seconds), timeout=10)

        warm = await client.call("Echo")
        quick = [asyncio.ensure_future(sleep(0.3)) for _ in range(5)]
        slow = [asyncio.ensure_future(sleep(8)) for _ in range(3)]
        await asyncio.sleep(0.15)  # all eight are on the server now
        server.command("stop 1000")
        await asyncio.sleep(0.1)
        during = await client.call("Echo")  # GOAWAY came; a new connection is refused
        finished = await asyncio.gather(*quick)
        forced = await asyncio.gather(*slow)
        assert server.line(5.0) == "stopped"
        after = await client.call("Echo")
        return {
            "warm": [warm.code],
            "during": [during.code],
            "quick": [o.code for o in finished],
            "slow": [o.code for o in forced],
            "after": [after.code],
        }

    results = {}
    for kind in CLIENTS:
        (tmp_path / kind).mkdir()
        with running_peer(grpcjs_installed, tmp_path / kind) as server:
            async with clients(server.port) as opened:
                results[kind] = await stopping(opened[kind], server)
    assert results["lean"] == results["grpcio"]
    slow = results["grpcio"].pop("slow")
    assert set(slow) <= {1, 14}, slow
    assert results["grpcio"] == {"warm": [0], "during": [14], "quick": [0] * 5, "after": [14]}


async def test_over_tls_both_clients_agree(tls_peer: Peer, tls_files: tuple[Path, Path]) -> None:
    """h2 over Node's TLS: ALPN, the certificate check, then the same calls as in h2c."""
    cert, _ = tls_files
    async with clients(tls_peer.port, tls={"ca": str(cert)}) as pair:
        echoed = await same(
            pair,
            lambda c: c.call("Echo", c.request("Echo", string_value="tls"), [("echo-x", "1")]),
        )
        big = await same(
            pair,
            lambda c: c.call("Echo", c.request("Echo", bytes_value=b"z" * 200_000)),
        )
        failed = await same(
            pair,
            lambda c: c.call(
                "Fail", c.request("Fail", code=5, message="nowhere é"), [("echo-y", "2")]
            ),
        )
    assert echoed.code == 0 and echoed.reply is not None
    assert echoed.reply.string_value == "tls"
    assert ("echo-x", "1") in echoed.initial
    assert big.code == 0
    assert (failed.code, failed.message) == (5, "nowhere é")
    # a name the certificate does not carry: UNAVAILABLE from both (each TLS stack words
    # its own message)
    async with clients(tls_peer.port, tls={"ca": str(cert), "server_name": "other.test"}) as pair:
        refused = {kind: await client.call("Echo") for kind, client in pair.items()}
    assert {kind: outcome.code for kind, outcome in refused.items()} == {"grpcio": 14, "lean": 14}
    assert "other.test" in refused["lean"].message
