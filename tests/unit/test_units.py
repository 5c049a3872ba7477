"""Durations and sizes (edge/units.py): one reading for every key that takes them."""

from __future__ import annotations

import math
from pathlib import Path
from random import Random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import parse_config
from edge.errors import ConfigError
from edge.units import parse_duration, parse_size

DURATIONS: list[tuple[object, float]] = [
    (0, 0.0),
    (30, 30.0),
    (0.25, 0.25),
    ("0", 0.0),
    ("5", 5.0),
    ("250ms", 0.25),
    ("1.5s", 1.5),
    ("2m", 120.0),
    ("1h", 3600.0),
    ("1d", 86400.0),
    ("0.5ms", 0.0005),
    (" 5 s ", 5.0),  # spaces around the number and the unit, as before
    ("\t10m\n", 600.0),
    ("007s", 7.0),
]

NOT_DURATIONS: list[object] = [
    "",
    " ",
    "s",
    "soon",
    "-1s",
    "-1",
    "+1s",
    ".5s",
    "1.s",
    "1e3",
    "1e3s",
    "1us",  # no microseconds: see the module's docstring
    "1 ns",
    "1M",  # units are lower case: a month or a minute?
    "1S",
    "1H",
    "1 d s",
    "5s # five",
    "1,5s",
    "nan",
    "inf",
    "\u0661s",  # ARABIC-INDIC DIGIT ONE: only ASCII digits
    "1\u00a0s",  # a no-break space is not whitespace here
    True,
    False,
    None,
    -1,
    -0.5,
    math.nan,
    math.inf,
    -math.inf,
    10**400,  # past float's range
    [5],
    {"seconds": 5},
    b"5s",
]

SIZES: list[tuple[object, int]] = [
    (0, 0),
    (1048576, 1048576),
    (2.0, 2),  # a whole float, as pydantic's int took it
    ("0", 0),
    ("512", 512),
    ("512B", 512),
    ("512KB", 512_000),  # KB, MB, GB: powers of 1000
    ("4MB", 4_000_000),
    ("1GB", 1_000_000_000),
    ("512KiB", 512 * 1024),  # KiB, MiB, GiB: powers of 1024
    ("4MiB", 4 * 1024**2),
    ("1GiB", 1024**3),
    ("4mib", 4 * 1024**2),  # any case, as before
    ("4MIB", 4 * 1024**2),
    ("512kb", 512_000),
    ("1b", 1),
    (" 4 MiB ", 4 * 1024**2),
]

NOT_SIZES: list[object] = [
    "",
    " ",
    "MiB",
    "lots",
    "-1",
    "-1KB",
    "+1KB",
    "1.5MiB",  # whole numbers only
    "1e6",
    "4 M",
    "4Mi",
    "4TB",
    "4 MiB MiB",
    "\u0664MiB",
    "9" * 31,  # more digits than any size
    True,
    False,
    None,
    -1,
    2.5,
    -2.0,
    math.nan,
    math.inf,
    [1],
]


@pytest.mark.parametrize(("value", "expected"), DURATIONS)
def test_durations(value: object, expected: float) -> None:
    assert parse_duration(value) == expected
    assert type(parse_duration(value)) is float


@pytest.mark.parametrize("value", NOT_DURATIONS)
def test_not_durations(value: object) -> None:
    with pytest.raises(ValueError, match="is not a duration") as refused:
        parse_duration(value)
    message = str(refused.value)
    assert message.startswith(repr(value)[:50])  # names the value


@pytest.mark.parametrize(("value", "expected"), SIZES)
def test_sizes(value: object, expected: int) -> None:
    assert parse_size(value) == expected
    assert type(parse_size(value)) is int


@pytest.mark.parametrize("value", NOT_SIZES)
def test_not_sizes(value: object) -> None:
    with pytest.raises(ValueError, match="is not a size") as refused:
        parse_size(value)
    assert str(refused.value).startswith(repr(value)[:50])


def test_a_malformed_value_is_told_the_accepted_forms() -> None:
    with pytest.raises(ValueError) as duration:
        parse_duration("soon")
    assert str(duration.value) == (
        "'soon' is not a duration: expected a number of seconds, or a number with a unit "
        "ms, s, m, h or d (e.g. 250ms, 1.5s, 2m, 1h, 1d)"
    )
    with pytest.raises(ValueError) as size:
        parse_size("lots")
    assert "KiB" in str(size.value) and "512KB" in str(size.value)


DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}
SIZE_UNITS |= {"gb": 1000**3, "gib": 1024**3}
SPACE = st.text(alphabet=" \t\n", max_size=2)


@given(
    st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False),
    st.sampled_from(sorted(DURATION_UNITS)),
    SPACE,
    SPACE,
    SPACE,
)
def test_a_written_duration_reads_back(
    seconds: float, unit: str, before: str, between: str, after: str
) -> None:
    written = repr(seconds)
    if "e" in written:  # 1e-05: not a form the config takes
        written = f"{seconds:.6f}"
        seconds = float(written)
    assert parse_duration(f"{before}{written}{between}{unit}{after}") == (
        seconds * DURATION_UNITS[unit]
    )
    assert parse_duration(seconds) == seconds


@given(
    st.integers(min_value=0, max_value=10**15),
    st.sampled_from(sorted(SIZE_UNITS)),
    st.randoms(use_true_random=False),
    SPACE,
    SPACE,
)
def test_a_written_size_reads_back(
    size: int, unit: str, random: Random, before: str, between: str
) -> None:
    cased = "".join(c.upper() if random.random() < 0.5 else c for c in unit)
    assert parse_size(f"{before}{size}{between}{cased}") == size * SIZE_UNITS[unit]
    assert parse_size(size) == size
    assert parse_size(str(size)) == size


# --- the config's fields: every duration key takes every form ---

BASE: dict[str, Any] = {
    "upstreams": {"lib": {"address": "127.0.0.1:5000"}},
    "services": {"*": {"upstream": "lib"}},
}


def _upstream(**settings: Any) -> dict[str, Any]:
    return {**BASE, "upstreams": {"lib": {"address": "127.0.0.1:5000", **settings}}}


def test_a_day_is_a_timeout_as_it_is_a_limit_window() -> None:
    data = _upstream(timeout="1d")
    data["rate_limiting"] = {"redis_timeout": "1d"}
    data["default_policy"] = {
        "rate_limits": [{"algorithm": "token_bucket", "limit": 1, "period": "1d"}]
    }
    config = parse_config(data, base=Path("."), env={})
    assert config.upstreams["lib"].timeout == 86400.0
    assert config.rate_limiting.redis_timeout == 86400.0
    assert config.default_policy.rate_limits[0].period == 86400.0


def test_a_day_from_the_environment() -> None:
    env = {"EDGE__SERVER__GRACEFUL_TIMEOUT": "1d", "EDGE__TRANSCODING__MAX_BODY_BYTES": "1GiB"}
    config = parse_config(BASE, base=Path("."), env=env)
    assert config.server.graceful_timeout == 86400.0
    assert config.transcoding.max_body_bytes == 1024**3


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (True, "True is not a duration"),  # YAML's yes
        (-1, "-1 is not a duration: it must not be negative"),
        (math.inf, "inf is not a duration: it must be finite"),  # YAML's .inf
        (math.nan, "nan is not a duration: it must be finite"),
        ("0s", "greater than 0"),  # zero is the field's call
    ],
)
def test_a_timeout_refuses(value: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"upstreams\.lib\.timeout") as refused:
        parse_config(_upstream(timeout=value), base=Path("."), env={})
    assert problem in str(refused.value)


def test_a_zero_is_taken_where_the_field_allows_it() -> None:
    data = {**BASE, "default_policy": {"rate_limits": [_limit(max_delay="0ms")]}}
    config = parse_config(data, base=Path("."), env={})
    assert config.default_policy.rate_limits[0].max_delay == 0.0


def _limit(**settings: Any) -> dict[str, Any]:
    return {"algorithm": "leaky_bucket", "limit": 1, "mode": "queue", **settings}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (True, "True is not a size"),
        (-1, "-1 is not a size: it must not be negative"),
        (1.5, "1.5 is not a size: it must be a whole number of bytes"),
        ("1.5MiB", "'1.5MiB' is not a size"),
        ("0", "greater than 0"),
    ],
)
def test_a_size_refuses(value: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"upstreams\.lib\.max_request_bytes") as refused:
        parse_config(_upstream(max_request_bytes=value), base=Path("."), env={})
    assert problem in str(refused.value)
