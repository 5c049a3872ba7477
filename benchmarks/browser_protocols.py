"""The browser protocols' rows: the same unary GetBook as gRPC-Web and as Connect.

Beside the JSON POST on the same gateway, so the three differ only in their framing:
gRPC-Web (binary, one length-prefixed message, the status in a trailer frame) and
Connect (a JSON body with ``Connect-Protocol-Version: 1``). Each costs no more CPU per
request than the JSON POST is the issue's target. wrk counts only HTTP statuses, and a
gRPC-Web error is a 200 with ``grpc-status`` in it, so each gateway is checked once with a
real request before it is measured: a fast error would be a fine-looking benchmark of
nothing.
"""

from __future__ import annotations

import struct
import urllib.request
from pathlib import Path

# GetBookRequest{name: "shelves/1/books/1"}: field 1, length-delimited
_GET_BOOK = b"\x0a\x11shelves/1/books/1"
GRPC_WEB_BODY = b"\x00" + struct.pack(">I", len(_GET_BOOK)) + _GET_BOOK
CONNECT_BODY = b'{"name":"shelves/1/books/1"}'


def _lua_string(data: bytes) -> str:
    """A Lua string literal holding ``data`` exactly (decimal escapes for every byte)."""
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


def write_scripts(workdir: Path) -> tuple[Path, Path]:
    """wrk scripts for the gRPC-Web and the Connect POST; (grpc_web, connect)."""
    grpc_web = workdir / "wrk_grpc_web.lua"
    grpc_web.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {_lua_string(GRPC_WEB_BODY)}\n"
        'wrk.headers["Content-Type"] = "application/grpc-web+proto"\n'
        'wrk.headers["X-Grpc-Web"] = "1"\n'
    )
    connect = workdir / "wrk_connect.lua"
    connect.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {_lua_string(CONNECT_BODY)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Connect-Protocol-Version"] = "1"\n'
    )
    return grpc_web, connect


def check(url: str) -> None:
    """One gRPC-Web and one Connect GetBook through ``url``; raises unless both succeed."""
    request = urllib.request.Request(
        url,
        data=GRPC_WEB_BODY,
        method="POST",
        headers={"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"},
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        body = reply.read()
        trailers = body.rpartition(b"\x80")[2].lower().replace(b" ", b"")
        if reply.headers.get("grpc-status") not in (None, "0") or b"grpc-status:0" not in trailers:
            raise RuntimeError(f"gRPC-Web GetBook failed: {reply.headers} {body!r}")
        if b"shelves/1/books/1" not in body:
            raise RuntimeError(f"gRPC-Web GetBook answered {body!r}")
    request = urllib.request.Request(
        url,
        data=CONNECT_BODY,
        method="POST",
        headers={"Content-Type": "application/json", "Connect-Protocol-Version": "1"},
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        body = reply.read()
        if reply.status != 200 or b"shelves/1/books/1" not in body:
            raise RuntimeError(f"Connect GetBook answered {reply.status}: {body!r}")
