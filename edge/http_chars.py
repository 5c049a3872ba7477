"""RFC 9110's character classes as byte sets, for ``bytes.translate(None, SET)`` checks.

``part.translate(None, TOKEN)`` deletes every token character, so an empty result means
``part`` is all token characters: one pass in C, where a regular expression steps byte by
byte. Shared by the reader of client request heads (``edge.ingress.h11_requests``) and
the reader of upstream replies (``edge.upstream.http1_wire``), so both hold to one grammar.
"""

from __future__ import annotations

TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VCHAR = bytes(range(0x21, 0x7F))  # visible ASCII
# what a field value may hold once its ends are stripped: visible characters, obs-text,
# and spaces or tabs (only between them, which stripping the ends guarantees)
FIELD_CHAR = VCHAR + bytes(range(0x80, 0x100)) + b" \t"
OWS = b" \t"  # optional whitespace around a field value
