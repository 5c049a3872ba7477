"""HTTP content codings (gzip, br): negotiation, streaming encoders, bounded decoders.

Pure: nothing here touches a socket or the event loop. ``negotiate`` reads
``Accept-Encoding`` and ``Content-Encoding``; ``codecs`` compresses a reply whole or
message by message (each flushed, so a stream stays live) and decompresses a request body
in bounded pieces (so a bomb is refused by size, never inflated); ``config`` is the
``compression:`` section. The ASGI side that applies them is ``edge.ingress.compression``.
"""
