"""The policy pipeline's rows: a gateway that authenticates and rate-limits every request.

Two more ``edge serve`` processes run the plain gateway's config plus one HS256 issuer, a
policy requiring a token on every route and a per-subject token bucket far too large ever
to refuse (so every request pays for a full decision and none is turned away); one keeps
its limiter state in memory, the other in Redis. The orchestrator mints one long-lived
token and hands it to wrk through a per-run Lua script, checks before measuring that each
gateway answers 200 with the token and 401 without it (a fast 401 is a fine-looking
benchmark of nothing), and after every wrk run that nothing was refused: no non-2xx reply,
no limiter refusal and no Redis error quietly failed open.

The Redis is REDIS_URL when that is set, else a ``redis-server`` of the run's own on a free
port; keys go under a prefix unique to the run, and 127.0.0.1:6379 is never touched
unless REDIS_URL names it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from benchmarks.processes import Child, free_port, spawn, spawn_edge
from edge.config import HeadersConfig

ISSUER = "https://bench.edge.invalid"
SUBJECT = "bench"
# A fixed secret for a throwaway benchmark gateway on loopback, never for anything real.
SECRET = "edge-benchmark-hs256-secret-not-for-production-use"
TOKEN_LIFETIME_S = 7 * 24 * 3600
# So high that no run can reach it: the limiter decides every request and refuses none.
LIMIT_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class PipelineGateway:
    """One pipeline gateway and what wrk needs to drive it."""

    backend: str  # "memory" or "redis"
    child: Child
    url: str  # base URL, no path
    script: Path  # the wrk Lua script: POST, body, Authorization header
    status_file: Path  # where that script's done() writes wrk's count of non-2xx replies

    def check_run(self) -> None:
        """After a wrk run: RuntimeError unless every reply was 2xx and nothing failed open.

        A refused request costs the gateway far less than a served one, and a Redis error
        with ``on_backend_error: allow`` skips the round trip it is meant to measure, so
        either would flatter the row.
        """
        non_2xx = int(self.status_file.read_text().strip())
        self.status_file.unlink()  # a run that fails to write it must not pass on this one
        if non_2xx:
            raise RuntimeError(f"pipeline ({self.backend}): wrk saw {non_2xx} non-2xx replies")
        with urllib.request.urlopen(self.url + "/admin/pipeline", timeout=5) as reply:
            limiting = json.loads(reply.read())["rate_limiting"]
        if limiting["refused"] or limiting["backend_errors"]:
            raise RuntimeError(f"pipeline ({self.backend}): the rate limiter reported {limiting}")


def redis_binary() -> str | None:
    """The redis-server to start, None when REDIS_URL is set; RuntimeError if neither."""
    if os.environ.get("REDIS_URL"):
        return None
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    return path


def start_redis(children: list[Child], workdir: Path, cwd: Path) -> str:
    """REDIS_URL, or the URL of a fresh redis-server appended to ``children`` once spawned."""
    binary = redis_binary()
    if binary is None:
        return os.environ["REDIS_URL"]
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    redis = spawn("redis", argv, workdir, cwd)
    children.append(redis)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        redis.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"redis-server on port {port} did not answer PING:\n{redis.log_tail()}")


def pipeline_config(base: dict[str, Any], rate_limiting: dict[str, Any]) -> dict[str, Any]:
    """The plain gateway's config plus auth, a limit on every route and ``rate_limiting``.

    Breakers are left at their default (on), as they are in the plain gateway.
    """
    return base | {
        "auth": {
            "issuers": [
                {
                    "issuer": ISSUER,
                    "algorithms": ["HS256"],
                    "keys": [{"secret": SECRET}],
                }
            ]
        },
        "rate_limiting": rate_limiting,
        "policies": [
            {
                "match": ["*"],
                "auth": {"require": "token"},
                "rate_limits": [
                    {
                        "algorithm": "token_bucket",
                        "limit": LIMIT_PER_SECOND,
                        "period": "1s",
                        "key": ["sub"],
                    }
                ],
            }
        ],
    }


def redis_limiting(redis_url: str) -> dict[str, Any]:
    # A prefix of the run's own: a shared REDIS_URL may hold other keys, which stay untouched.
    return {"backend": "redis", "redis_url": redis_url, "redis_prefix": _unique_prefix()}


def _unique_prefix() -> str:
    return f"edge:bench:{uuid.uuid4().hex[:12]}:"


def mint_token() -> str:
    """One HS256 token for the whole run, valid for a week: expiry never ends a run."""
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": SUBJECT, "iat": now, "exp": now + TOKEN_LIFETIME_S}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def write_wrk_script(path: Path, body: bytes, token: str, status_file: Path) -> None:
    """Like ``wrk_post.lua`` plus the bearer token, and a done() that saves the non-2xx count.

    wrk's summary counts replies with a status above 399 in ``errors.status`` (the figure
    it prints as "Non-2xx or 3xx responses"); the file lets the orchestrator fail the run
    on it without parsing wrk's output twice.
    """
    lua = f"""-- Written by benchmarks/pipeline.py for one run: the transcoded POST with a token.
wrk.method = "POST"
wrk.body = {_lua_string(body.decode())}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {_lua_string("Bearer " + token)}

function done(summary, latency, requests)
  local out = assert(io.open({_lua_string(str(status_file))}, "w"))
  out:write(tostring(summary.errors.status), "\\n")
  out:close()
end
"""
    path.write_text(lua)


def _lua_string(text: str) -> str:
    """``text`` as a single-quoted Lua literal; ValueError for what would need escaping."""
    if not text.isascii() or any(c in text for c in "\\'\n\r"):
        raise ValueError(f"not a plain ASCII Lua string: {text!r}")
    return f"'{text}'"


def token_not_forwarded(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``Authorization`` no longer forwarded upstream.

    What the pipeline gateways do with the token once verified (``forward_authorization``
    is off by default): so the plain gateway given the same token does the same with it,
    and the two differ by the pipeline's own work only.
    """
    kept = [name for name in HeadersConfig().forward_request if name != "authorization"]
    return config | {"headers": {"forward_request": kept}}


def start_plain_with_token(
    config: dict[str, Any], token: str, body: bytes, workdir: Path, cwd: Path, children: list[Child]
) -> PipelineGateway:
    """The plain gateway again, driven with the pipeline rows' token: the same requests with
    the pipeline off, which the pipeline rows are judged against.

    Without it the pipeline's rows paid for the token's own bytes (a 200-byte header to
    parse and decode), which every request from a client with a token carries whether the
    gateway checks it or not. Here the token is neither checked nor forwarded (as the
    pipeline gateways do not forward it: ``token_not_forwarded``). A process of its own,
    serving only these requests, as each pipeline gateway does.
    """
    child = spawn_edge("plain-token", token_not_forwarded(config), workdir, cwd, children)
    script, status_file = workdir / "plain-token.lua", workdir / "plain-token.status"
    write_wrk_script(script, body, token, status_file)
    url = f"http://{config['server']['bind'][0]}"
    return PipelineGateway("off", child, url, script, status_file)


def start_gateway(
    backend: str,
    config: dict[str, Any],
    token: str,
    body: bytes,
    workdir: Path,
    cwd: Path,
    children: list[Child],
) -> PipelineGateway:
    """Spawn ``edge serve`` with ``config`` (its ``server.bind`` already set) and its script."""
    name = f"pipeline-{backend}"
    child = spawn_edge(name, config, workdir, cwd, children)
    script, status_file = workdir / f"{name}.lua", workdir / f"{name}.status"
    write_wrk_script(script, body, token, status_file)
    url = f"http://{config['server']['bind'][0]}"
    return PipelineGateway(backend, child, url, script, status_file)


def check_auth(gateway: PipelineGateway, path: str, body: bytes, token: str, expect: bytes) -> None:
    """Once the gateway answers: 200 (``expect`` in the body) with the token, 401 without."""
    deadline = time.monotonic() + 30
    while True:
        gateway.child.check_alive()
        status, reply = _post(gateway.url + path, body, token)
        if status is not None:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gateway.child.name}: not ready:\n{gateway.child.log_tail()}")
        time.sleep(0.1)
    if status != 200 or expect not in reply:
        raise RuntimeError(
            f"{gateway.child.name}: with the token, {path} answered {status}: {reply!r}"
        )
    status, reply = _post(gateway.url + path, body, None)
    if status != 401:
        raise RuntimeError(
            f"{gateway.child.name}: without a token, {path} answered {status}: {reply!r}"
        )


def _post(url: str, body: bytes, token: str | None) -> tuple[int | None, bytes]:
    """Status and body of one POST; status None when nothing answered (not up yet)."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            return reply.status, bytes(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, bytes(exc.read())
    except OSError:
        return None, b""
