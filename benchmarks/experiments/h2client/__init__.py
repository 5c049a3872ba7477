"""Prototype single-threaded asyncio gRPC unary clients, measured against grpc.aio (see README)."""
