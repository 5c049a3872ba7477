"""Talking to upstreams: gRPC channels and header/metadata mapping."""
