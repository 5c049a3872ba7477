"""Credentials out of URLs before a URL is shown: logs, errors, ``edge check``, /admin.

The gateway is configured with URLs that may carry credentials (the Redis URL of the
shared rate limiter, an issuer's JWKS URL, HTTP upstreams, the tracing collector), and it
shows them in several places. Every such place goes through ``redact_url`` (a whole URL)
or ``redact_text`` (a message that may hold URLs), one rule for all:

* **the userinfo password**: everything from the first ``:`` after ``//`` to the *last*
  ``@`` before the query. Passwords often hold a raw ``@``, ``/`` or ``#``
  (``redis://:p@ss@host``), which URL parsers then split in the wrong place; taking the
  last ``@`` hides all of it. The query starts at the first ``?`` followed by a parameter
  name and ``=``, so an ``@`` in a query value (``?password=p@ss``) is not taken for the
  end of a password. The user name stays: it says which account, and is not a secret.
* **secret query parameters**: the value of every query (or fragment) parameter whose
  name looks secret: ``password``, ``pass``, ``pwd``, ``secret``, ``token``,
  ``access_token``, ``api_key``, ``apikey``, ``key``, ``auth``, and any name whose last
  word (split at ``_``, ``-``, ``.``) is one of those or ``passwd``, ``signature``,
  ``sig``, ``credential`` (``client_secret``, ``X-Amz-Signature``), compared
  case-insensitively after percent-decoding. A secret value runs to the next ``&`` (a raw
  ``#`` in it is hidden too).

A URL written without its scheme (``webuser:pw@host:8080``, the very mistake a config
error reports) has its userinfo found the same way, from the start of the string, as long
as no white space comes before the ``@``.

``redact_text`` applies ``redact_url`` to every word of a message (a run of characters
between white space and quotes), so it also finds what is not a whole URL: a scheme-less
``user:pw@host``, and a secret parameter after any ``?``, ``&`` or ``#`` (a line of a file
cut short before its scheme, ``...jwks?access_token=abc``).

Both err on the side of hiding: a URL whose path holds an ``@`` after a ``:`` loses the
text between them as well (``https://host:8443/a@b`` shows ``https://host:***@b``), and
so does a word such as ``read:books@v2``. Pure functions of a string: no URL library
(which might normalise, or reject, exactly what must be hidden), never an exception.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

MASK = "***"

_SECRET_NAMES = frozenset(
    {"password", "pass", "pwd", "secret", "token", "access_token", "api_key", "apikey"}
    | {"key", "auth"}
)
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "token", "key", "apikey", "auth"}
    | {"signature", "sig", "credential", "credentials"}
)
_WORDS = re.compile(r"[_.\-]")
# where a query starts, for finding the end of the userinfo: "?name=" (a "?" inside a
# password is rarely followed by a name and "=")
_QUERY_START = re.compile(r"\?[\w.~%+\-]*=")
# a URL inside free text: a scheme, "//", and everything up to white space or a quote
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
# a word of free text: what a URL in it cannot extend past
_WORD = re.compile(r"[^\s'\"<>]+")
_SPACE = re.compile(r"\s")
_SCHEME = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*:)?")  # what may come before "//"


def secret_parameter(name: str) -> bool:
    """Whether a query parameter of this name carries a secret (see the module's rule)."""
    plain = unquote_plus(name).strip().lower()
    return plain in _SECRET_NAMES or _WORDS.split(plain)[-1] in _SECRET_WORDS


def redact_url(url: str) -> str:
    """``url`` with its userinfo password and secret query values replaced by ``***``.

    Anything is accepted, URL or not; a string with no ``?`` or ``#``, and no ``:``
    followed by an ``@``, comes back unchanged.
    """
    start = _userinfo_start(url)
    tail_from = 0
    if start is not None:
        anchor = _QUERY_START.search(url, start)
        at = url.rfind("@", start, anchor.start() if anchor else len(url))
        if at >= 0:
            colon = url.find(":", start, at)
            if 0 <= colon < at - 1:  # a password, not just "user:" before the "@"
                url = url[: colon + 1] + MASK + url[at:]
                at = colon + 1 + len(MASK)
            tail_from = at + 1
        else:
            tail_from = start
    starts = [i for i in (url.find("?", tail_from), url.find("#", tail_from)) if i >= 0]
    if not starts:
        return url
    tail = min(starts)
    return url[:tail] + _redact_parameters(url[tail:])


def _userinfo_start(url: str) -> int | None:
    """Where ``url``'s userinfo would begin; None where it cannot have one.

    After ``//`` when a scheme (or nothing) comes before it; else from the start, when no
    white space comes before the last ``@`` (a URL without its scheme, whose password may
    hold a ``//``); else after a ``//`` further on (prose holding a URL).
    """
    authority = url.find("//")
    query = url.find("?")
    if 0 <= query < authority:
        authority = -1  # a "//" in the query: no authority
    if authority >= 0 and _SCHEME.fullmatch(url, 0, authority):
        return authority + 2
    anchor = _QUERY_START.search(url)
    at = url.rfind("@", 0, anchor.start() if anchor else len(url))
    if at >= 0 and _SPACE.search(url, 0, at) is None:
        return 0
    return authority + 2 if authority >= 0 else None


def _redact_parameters(tail: str) -> str:
    """``?a=1&password=x#frag`` with secret values masked; ``tail`` starts at ``?``, ``#``
    or ``&``."""
    out: list[str] = []
    i, end = 0, len(tail)
    while i < end:
        out.append(tail[i])  # the delimiter: "?", "&" or "#"
        i += 1
        j = i
        while j < end and tail[j] not in "=&#":
            j += 1
        name = tail[i:j]
        out.append(name)
        i = j
        if i < end and tail[i] == "=":
            out.append("=")
            i += 1
            secret = secret_parameter(name)
            stops = "&" if secret else "&#"
            j = i
            while j < end and tail[j] not in stops:
                j += 1
            out.append(MASK if secret and j > i else tail[i:j])
            i = j
    return "".join(out)


_SECRET_KEYS = frozenset({"secret", "token", "password"})


def redact_config(value: Any, key: str = "") -> Any:
    """A config dump with secrets replaced: keys, tokens, passwords, API keys, and in every
    string, URL credentials (userinfo passwords, secret query values). What
    ``/admin/config`` shows, and what ``edge check --against`` compares."""
    if isinstance(value, dict):
        if key == "keys" and all(isinstance(v, str) for v in value.values()):
            return {k: "***" for k in value}  # api_keys.keys: name -> key
        return {k: redact_config(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_config(item, key) for item in value]
    if isinstance(value, str):
        if key in _SECRET_KEYS:
            return "***"
        return redact_url(value)
    return value


def redact_text(text: str) -> str:
    """``text`` (a log line, an exception's message) with every URL in it redacted.

    Word by word (see the module's rule): a URL in free text ends at white space or a
    quote, so a password holding one of those is only partly found; use ``redact_url`` on
    a value known to be a whole URL.
    """
    if not any(mark in text for mark in "@?&#"):
        return text  # nothing that could hide a secret
    return _WORD.sub(lambda match: _redact_word(match.group(0)), text)


def _redact_word(word: str) -> str:
    """One word of free text: the URLs in it, then any parameters it still holds."""
    found = _URL_IN_TEXT.search(word)
    # a URL inside the word is redacted on its own, unless a ":" comes before it: then
    # the word may be a scheme-less URL whose password holds "://" ("u:a://b@host"), and
    # only the whole word read as one URL hides all of the password
    if found and ":" not in word[: found.start()]:
        word = _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), word)
    else:
        word = redact_url(word)
    starts = [i for i in (word.find("?"), word.find("&"), word.find("#")) if i >= 0]
    if not starts:
        return word
    tail = min(starts)
    return word[:tail] + _redact_parameters(word[tail:])
