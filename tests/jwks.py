"""A JWKS endpoint on a free loopback port, for tests of issuers that publish their keys."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig


@contextlib.asynccontextmanager
async def jwks_server(key: rsa.RSAPrivateKey, kids: list[str], max_age: int) -> AsyncIterator[str]:
    """Serves ``key``'s public half under each kid in ``kids`` (read at each request, so a
    test rotates keys by changing the list); yields the JWKS URL."""

    async def jwks_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        keys = [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"} for kid in kids]
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", f"max-age={max_age}".encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps({"keys": keys}).encode()})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    hc = HypercornConfig()
    hc.bind = [f"fd://{sock.detach()}"]
    stop = asyncio.Event()
    task = asyncio.create_task(serve(jwks_app, hc, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        yield f"http://127.0.0.1:{port}/jwks"
    finally:
        stop.set()
        await task
