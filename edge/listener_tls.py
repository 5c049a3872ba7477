"""The listener's certificate, renewed on reload without a restart.

Hypercorn makes its TLS context once, when a worker starts serving, and hands it to
every listening socket; a reload cannot rebind those. But an ``SSLContext`` takes a new
certificate chain in place, and every handshake after that uses it, while the
connections already open keep theirs: exactly a certificate rotation (cert-manager, ACME
renewals). So the contexts Hypercorn makes are kept here (``EdgeHypercornConfig``
registers them), and a reload whose certificate or key files changed loads them into
each, after loading them into a scratch context first: a broken or mismatched pair is
refused and the running certificate stays.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from pathlib import Path

log = logging.getLogger("edge.tls")


def _digest(certfile: Path, keyfile: Path | None) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for path in (certfile, keyfile):
        digest.update(b"-" if path is None else path.read_bytes())
    return digest.digest()


class ListenerTls:
    """The listener's TLS contexts, and the certificate files they were loaded from."""

    __slots__ = ("_contexts", "_loaded")

    def __init__(self) -> None:
        self._contexts: list[ssl.SSLContext] = []
        self._loaded: bytes | None = None  # digest of the files now in the contexts

    def keep(self, context: ssl.SSLContext, certfile: Path, keyfile: Path | None) -> None:
        """A context Hypercorn made from these files (once per worker)."""
        self._contexts.append(context)
        if self._loaded is None:
            try:
                self._loaded = _digest(certfile, keyfile)
            except OSError:
                self._loaded = b""

    def renew(self, certfile: Path | None, keyfile: Path | None) -> bool:
        """Load the certificate files again if they changed: True when renewed.

        Raises ``ssl.SSLError`` or ``OSError`` (the running certificate kept) for files
        that cannot be read or do not make a pair.
        """
        if not self._contexts or certfile is None:
            return False
        digest = _digest(certfile, keyfile)
        if digest == self._loaded:
            return False
        scratch = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        scratch.load_cert_chain(certfile, keyfile)  # a broken pair fails here, harmlessly
        for context in self._contexts:
            context.load_cert_chain(certfile, keyfile)
        self._loaded = digest
        log.info("the listener's certificate was renewed from %s", certfile)
        return True
