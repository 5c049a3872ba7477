"""The lean client trusts what grpc.aio trusts when no CA is configured."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from edge.upstream.lean_channel import tls_context
from edge.upstream_settings import UpstreamSettings


def test_without_a_ca_the_roots_are_grpcs_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # grpc ships its roots (a slim image may have no system store); the env var overrides
    monkeypatch.delenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", raising=False)
    shipped = Path(grpc.__file__).parent / "_cython" / "_credentials" / "roots.pem"
    context = tls_context(UpstreamSettings(name="x", target="10.0.0.1:443", tls=True))
    assert shipped.is_file()
    assert len(context.get_ca_certs()) == shipped.read_text().count("BEGIN CERTIFICATE")
    assert context.get_ca_certs()


def test_the_roots_file_variable_is_honoured(
    monkeypatch: pytest.MonkeyPatch, tls_files: tuple[Path, Path]
) -> None:
    cert, _ = tls_files
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(cert))
    context = tls_context(UpstreamSettings(name="x", target="10.0.0.1:443", tls=True))
    assert len(context.get_ca_certs()) == 1
