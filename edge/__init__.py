"""edge: a protocol-translating edge gateway (HTTP/JSON and WebSocket in, gRPC or HTTP out)."""

__version__ = "0.1.0"
