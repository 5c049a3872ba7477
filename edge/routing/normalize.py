"""One normalised form of every request path (sans-IO).

A gateway that matches routes and policies on one spelling of a path while its upstream
resolves another can be walked around: ``/api/%61dmin`` is not ``/api/admin`` to a
string compare, but it is to any upstream that decodes. So the path is normalised once,
before anything looks at it, and everything after (the route tables, the policies, the
proxy) sees and forwards only that form. The rule follows RFC 3986 section 6.2.2 and
Envoy's ``normalize_path`` + ``merge_slashes``:

* the path must start with ``/``; control characters, spaces and ``#`` are refused;
* a ``%`` must start a two-digit hex escape (else refused); escapes of unreserved
  characters (letters, digits, ``-._~``) are decoded, every other escape is kept as sent;
* bytes outside ASCII are percent-encoded (so raw UTF-8 and its escaped form are one path);
* a backslash is a slash (as in Envoy and browsers' URL parsing);
* ``.`` and ``..`` segments are resolved (RFC 3986 5.2.4; ``..`` never climbs above the
  root), and runs of slashes are merged unless the config turns that off.

Encoded slashes (``%2F``, ``%5C``), path parameters (``;``) and double encoding
(``%25`` followed by hex) are kept by this rule: for transcoded routes they are data
(google.api.http decodes ``%2F`` inside a single-segment variable). Where an upstream
would read them as structure, on proxied routes, ``check_proxied_path`` decides.
"""

from __future__ import annotations

import re
from typing import Literal

EscapedSlashes = Literal["reject", "keep", "unescape"]


class BadPath(ValueError):
    """The path cannot be normalised, or is refused by a rule; the message is for clients."""


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
# Anything that makes the slow path necessary; a typical API path has none of these.
_NEEDS_WORK = re.compile(r"[%\\#\x00-\x20\x7f-\uffff]|//|/\.")
_ESCAPED_SLASH = re.compile(r"%(?:2[fF]|5[cC])")
_DOUBLE_ENCODED = re.compile(r"%25[0-9a-fA-F]{2}")


def normalize_path(raw: str, *, merge_slashes: bool = True) -> str:
    """The normalised form of a raw (still percent-encoded) path; raises BadPath.

    ``raw`` is the request target's path as sent, one character per byte (latin-1), and
    without its query. Idempotent: a normalised path normalises to itself.
    """
    if not raw.startswith("/"):
        raise BadPath("the request path must start with '/'")
    if _NEEDS_WORK.search(raw) is None:
        return raw
    return _resolve_segments(_canonical_characters(raw), merge_slashes)


def _canonical_characters(raw: str) -> str:
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        char = raw[i]
        if char == "%":
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise BadPath("the request path has a '%' that does not start a %XX escape")
            decoded = chr(int(pair, 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + pair)
            i += 3
            continue
        code = ord(char)
        if code <= 0x20 or code == 0x7F or char == "#":
            raise BadPath("the request path has a control character, a space or a '#'")
        if char == "\\":
            out.append("/")
        elif code > 0x7F:
            out.extend(f"%{byte:02X}" for byte in char.encode("latin-1", "replace"))
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _resolve_segments(path: str, merge_slashes: bool) -> str:
    """RFC 3986 5.2.4 remove_dot_segments on an absolute path, merging empty segments."""
    segments = path[1:].split("/")
    last = len(segments) - 1
    out: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "." or segment == "..":
            if segment == ".." and out:
                out.pop()
            if index == last:
                out.append("")  # /a/b/.. is /a/ : the result names a directory
            continue
        if segment == "" and merge_slashes and index != last:
            continue
        out.append(segment)
    return "/" + "/".join(out)


def check_proxied_path(
    path: str, *, escaped_slashes: EscapedSlashes, path_parameters: bool, merge_slashes: bool
) -> str:
    """The path a proxied request is matched on and forwarded with; raises BadPath.

    Upstreams differ in what they decode: some turn ``%2F`` into a separator, Java
    servers strip ``;params`` from segments, some decode twice. A proxy route's policy is
    only sound if the upstream serves the path that was matched, so what could be read two
    ways is refused (the defaults) or made unambiguous (``unescape`` decodes encoded slashes
    and backslashes into separators and normalises again, as Envoy's
    ``UNESCAPE_AND_FORWARD`` does).
    """
    if _ESCAPED_SLASH.search(path) is not None:
        if escaped_slashes == "reject":
            raise BadPath("encoded slashes (%2F, %5C) are not allowed in proxied paths")
        if escaped_slashes == "unescape":
            path = normalize_path(_ESCAPED_SLASH.sub("/", path), merge_slashes=merge_slashes)
    if not path_parameters and ";" in path:
        raise BadPath("path parameters (';') are not allowed in proxied paths")
    if _DOUBLE_ENCODED.search(path) is not None:
        raise BadPath("double-encoded characters (%25XX) are not allowed in proxied paths")
    return path
