"""Durations and sizes as the configuration writes them, read in one place.

Every duration and size in ``edge.yaml``, in the ``*.edge.yaml`` sidecars and in
``EDGE__...`` overrides is read here, so a form valid for one key is valid for all.

**Durations** (seconds, as a float):

* a number: seconds (``30``, ``0.25``);
* a string: a decimal number (digits, optionally a fraction: ``1.5``, not ``.5`` or
  ``1e3``) followed by an optional unit, ``ms``, ``s``, ``m``, ``h`` or ``d``
  (milliseconds, seconds, minutes, hours, days; lower case only, so ``1M`` is never read
  as a minute or a month): ``250ms``, ``1.5s``, ``2m``, ``1h``, ``1d``; no unit means
  seconds. There is no ``us``: nothing the gateway times is finer than a millisecond,
  and ``0.5ms`` says it if ever needed.

**Sizes** (bytes, as an int):

* a whole number of bytes (``1048576``);
* a string: whole digits followed by an optional unit, any case: ``B``; ``KB``, ``MB``,
  ``GB`` are powers of 1000 (``512KB`` is 512,000 bytes); ``KiB``, ``MiB``, ``GiB`` powers
  of 1024 (``4MiB`` is 4,194,304 bytes). Fractions (``1.5MiB``) are refused.

Both: spaces may surround the number and the unit (``" 5 s "``); only ASCII digits;
negative values, NaN and infinities, empty strings and booleans (YAML's ``yes``) are
refused with a ``ValueError`` that shows the value and the accepted forms. Zero passes:
whether it is allowed is the field's business (``Field(gt=0)`` or ``ge=0``).

``Seconds``, ``SecondsOrZero`` and ``Bytes`` are the annotated types config models use:
the parser as a pydantic ``BeforeValidator`` (which ``edge.config``'s environment
overrides look for, to hand it the variable's text as written) and the field's bound.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, Field

DURATION_FORMS = (
    "a number of seconds, or a number with a unit ms, s, m, h or d (e.g. 250ms, 1.5s, 2m, 1h, 1d)"
)
SIZE_FORMS = (
    "a whole number of bytes, or one with a unit B, KB, MB, GB (x1000) or KiB, MiB, GiB "
    "(x1024) (e.g. 512KB, 4MiB, 1048576)"
)

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*", re.ASCII)
_SECONDS_PER = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"\s*([0-9]+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*", re.ASCII | re.IGNORECASE)
_BYTES_PER = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
_MAX_SIZE_DIGITS = 30  # far past any real size, and short of int()'s 4,300-digit refusal


def parse_duration(value: object) -> float:
    """A duration in seconds from a config value (see the module's docstring for forms).

    Raises ValueError naming the value for anything else: a bool, a negative or
    non-finite number, an empty or malformed string, a value of another type.
    """
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration: expected {DURATION_FORMS}")
        seconds = float(match.group(1)) * _SECONDS_PER[match.group(2) or "s"]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range
            seconds = math.inf
    else:
        raise ValueError(f"{value!r} is not a duration: expected {DURATION_FORMS}")
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a duration: it must be finite")
    if seconds < 0:
        raise ValueError(f"{value!r} is not a duration: it must not be negative")
    return seconds


def parse_size(value: object) -> int:
    """A size in bytes from a config value (see the module's docstring for forms).

    Raises ValueError naming the value for anything else: a bool, a negative, fractional
    or non-finite number, an empty or malformed string, a value of another type.
    """
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is None or len(match.group(1)) > _MAX_SIZE_DIGITS:
            raise ValueError(f"{value!r} is not a size: expected {SIZE_FORMS}")
        size = int(match.group(1)) * _BYTES_PER[(match.group(2) or "b").lower()]
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, float):
        if not value.is_integer():  # also NaN and the infinities
            raise ValueError(f"{value!r} is not a size: it must be a whole number of bytes")
        size = int(value)
    else:
        raise ValueError(f"{value!r} is not a size: expected {SIZE_FORMS}")
    if size < 0:
        raise ValueError(f"{value!r} is not a size: it must not be negative")
    return size


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
SecondsOrZero = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Bytes = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]
