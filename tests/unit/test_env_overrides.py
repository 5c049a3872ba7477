"""``EDGE__A__B=value`` overrides: read by the type of the key they set, never as YAML.

A YAML reading (the old one) cut ``s3cr3t #2024`` down to ``s3cr3t``, turned the admin
token off for ``null``, ``~`` and ``#x``, made ``0123`` the number 83 and ``no`` False, and
ended in a traceback for ``*x`` or ``!!python/...``. Here a string key takes the text as
given, every other kind of key takes only what fits it, and every refusal is a
ConfigError naming the variable.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import Config, parse_config
from edge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = {
    "upstreams": {"Library": {"address": "127.0.0.1:5000"}},
    "services": {"*": {"upstream": "Library"}},
    "http_upstreams": {"web": {"url": "http://127.0.0.1:9000"}},
}


def configured(**env: str) -> Config:
    return parse_config(BASE, base=Path("/srv"), env=env)


def refusal(**env: str) -> str:
    with pytest.raises(ConfigError) as raised:
        configured(**env)
    return str(raised.value)


HOSTILE_STRINGS = [
    "s3cr3t #2024",  # YAML: a comment, so "s3cr3t"
    "#",
    " #",
    "#x",  # YAML: nothing at all, so no token
    "null",
    "~",
    "Null",
    "NULL",
    "*alias",  # YAML: an undefined alias, a traceback
    "&anchor x",
    '!!python/object/apply:os.system ["id"]',  # YAML: a ConstructorError
    "!!binary aGk=",
    "{",
    "[",
    "[a, b]",
    "{a: 1}",
    "- item",
    ": x",
    "key: value",
    "%TAG ! tag:x",
    "'quoted'",
    '"double"',
    "0123",  # YAML 1.1: the octal number 83
    "0x1F",
    "1e3",
    "1_000",
    "12:30",  # YAML 1.1: a sexagesimal 750
    "yes",  # YAML 1.1 booleans
    "no",
    "on",
    "off",
    "y",
    "n",
    "true",
    "False",
    "2024-01-01",  # YAML: a date
    ".inf",
    "${OTHER}",  # not interpolated: used as the environment holds it
    "${OTHER:-fallback}",
    "line one\nline two",
    "tab\there",
    " padded ",
    "x" * 100_000,
    "ünïcödé ✓",
]


@pytest.mark.parametrize("value", HOSTILE_STRINGS, ids=range(len(HOSTILE_STRINGS)))
def test_a_string_key_takes_the_value_exactly(value: str) -> None:
    config = configured(
        EDGE__ADMIN__TOKEN=value,
        EDGE__RATE_LIMITING__REDIS_PREFIX=value,  # a string that cannot be null
        EDGE__AUTH__API_KEYS__KEYS__CI=value,  # a value of a dict of strings
        OTHER="expanded",
    )
    assert config.admin.token == value
    assert config.rate_limiting.redis_prefix == value
    assert config.auth.api_keys.keys == {"ci": value}


def test_a_path_key_takes_the_value_exactly() -> None:
    config = configured(EDGE__UPSTREAMS__LIBRARY__TLS__CA="ca #1.pem")
    tls = config.upstreams["Library"].tls
    assert tls is not None and tls.ca == Path("/srv/ca #1.pem")


@given(value=st.text(alphabet=st.characters(exclude_characters="\x00"), min_size=1))
def test_any_text_is_kept_as_the_admin_token(value: str) -> None:
    assert configured(EDGE__ADMIN__TOKEN=value).admin.token == value


@given(value=st.text(alphabet=st.characters(exclude_characters="\x00"), min_size=1))
def test_any_text_for_an_integer_is_taken_or_refused_by_name(value: str) -> None:
    try:
        workers = configured(EDGE__SERVER__WORKERS=value).server.workers
    except ConfigError as exc:
        assert "EDGE__SERVER__WORKERS" in str(exc)
    else:
        assert re.fullmatch(r"[+-]?[0-9]+", value) and workers == int(value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("EDGE__SERVER__WORKERS", "4", 4),
        ("EDGE__SERVER__WORKERS", "0004", 4),  # decimal, never octal
        ("EDGE__SERVER__H2_RESET_BURST", "null", None),  # int | None
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "true", True),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "TRUE", True),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "yes", True),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "on", True),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "1", True),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "False", False),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "no", False),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "off", False),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "0", False),
        ("EDGE__OBSERVABILITY__TRACING__SAMPLE_RATIO", "0.25", 0.25),
        ("EDGE__OBSERVABILITY__TRACING__SAMPLE_RATIO", "1", 1.0),
        ("EDGE__OBSERVABILITY__TRACING__SAMPLE_RATIO", ".5", 0.5),
        ("EDGE__OBSERVABILITY__TRACING__SAMPLE_RATIO", "5e-1", 0.5),
        ("EDGE__SERVER__GRACEFUL_TIMEOUT", "250ms", 0.25),  # durations as in the file
        ("EDGE__SERVER__GRACEFUL_TIMEOUT", "2", 2.0),
        ("EDGE__UPSTREAMS__LIBRARY__TIMEOUT", "1m", 60.0),
        ("EDGE__UPSTREAMS__LIBRARY__TIMEOUT", "null", None),  # Seconds | None
        ("EDGE__SERVER__BODY_IDLE_TIMEOUT", "null", None),
        ("EDGE__TRANSCODING__MAX_BODY_BYTES", "2MiB", 2 * 1024 * 1024),  # sizes too
        ("EDGE__SERVER__BODY_MIN_RATE", "512", 512),
        ("EDGE__SERVER__LOOP", "asyncio", "asyncio"),  # a Literal: a string
        ("EDGE__UPSTREAMS__LIBRARY__CLIENT", "grpcio", "grpcio"),
        ("EDGE__WEBSOCKET__TOKEN_QUERY_PARAMETER", "null", "null"),  # str | None: a string
    ],
)
def test_typed_keys_take_what_fits_them(name: str, value: str, expected: object) -> None:
    config = configured(**{name: value})
    found: Any = config
    for key in name.removeprefix("EDGE__").lower().split("__"):
        found = found[key.title()] if isinstance(found, dict) else getattr(found, key)
    assert found == expected
    assert type(found) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("EDGE__SERVER__WORKERS", "many", "EDGE__SERVER__WORKERS: expected an integer, got 'many'"),
        ("EDGE__SERVER__WORKERS", "4.0", "expected an integer, got '4.0'"),
        ("EDGE__SERVER__WORKERS", " 4", "expected an integer, got ' 4'"),
        ("EDGE__SERVER__WORKERS", "4 # four", "expected an integer, got '4 # four'"),
        ("EDGE__SERVER__WORKERS", "0x10", "expected an integer"),
        ("EDGE__SERVER__WORKERS", "1_000", "expected an integer"),
        ("EDGE__SERVER__WORKERS", "\u0663", "expected an integer"),  # an Arabic-Indic 3
        ("EDGE__SERVER__WORKERS", "null", "expected an integer, got 'null'"),  # not nullable
        ("EDGE__SERVER__WORKERS", "~", "expected an integer, got '~'"),
        ("EDGE__SERVER__WORKERS", "*x", "expected an integer, got '*x'"),
        ("EDGE__SERVER__WORKERS", "!!python/object/apply:os.system ['id']", "expected an"),
        ("EDGE__SERVER__WORKERS", "9" * 5000, "expected an integer, got '999"),  # int()'s limit
        ("EDGE__SERVER__H2_RESET_BURST", "~", "expected an integer, got '~'"),  # null is "null"
        ("EDGE__SERVER__WORKERS", "0", "server.workers: Input should be greater than or equal"),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "maybe", "expected true or false, got 'maybe'"),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "null", "expected true or false, got 'null'"),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "true # yes", "expected true or false"),
        ("EDGE__OBSERVABILITY__TRACING__SAMPLE_RATIO", "nan", "expected a number, got 'nan'"),
        ("EDGE__OBSERVABILITY__TRACING__SAMPLE_RATIO", "inf", "expected a number"),
        ("EDGE__OBSERVABILITY__TRACING__SAMPLE_RATIO", "1e999", "expected a number"),
        ("EDGE__OBSERVABILITY__TRACING__SAMPLE_RATIO", "2", "less than or equal to 1"),
        ("EDGE__SERVER__GRACEFUL_TIMEOUT", "soon", "'soon' is not a duration"),
        ("EDGE__SERVER__GRACEFUL_TIMEOUT", "null", "'null' is not a duration"),  # not nullable
        ("EDGE__SERVER__GRACEFUL_TIMEOUT", "5s # five", "is not a duration"),
        ("EDGE__UPSTREAMS__LIBRARY__TIMEOUT", "~", "'~' is not a duration"),
        ("EDGE__TRANSCODING__MAX_BODY_BYTES", "lots", "'lots' is not a size"),
        ("EDGE__SERVER__LOOP", "fast", "server.loop: Input should be 'auto', 'asyncio'"),
        ("EDGE__ADMIN__BIND", "127.0.0.1:x", "admin.bind needs host:port"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_naming_the_variable(
    name: str, value: str, message: str
) -> None:
    shown = refusal(**{name: value})
    assert message in shown
    assert name in shown
    assert len(shown) < 400  # a long value is cut short


@pytest.mark.parametrize(
    "name",
    ["EDGE__ADMIN__TOKEN", "EDGE__SERVER__WORKERS", "EDGE__WEBSOCKET__ALLOWED_ORIGINS"],
)
def test_an_empty_value_is_refused(name: str) -> None:
    """``EDGE__ADMIN__TOKEN=${UNSET}`` in a compose file must not turn a setting off."""
    assert f"{name}: empty; unset it to keep the file's value" in refusal(**{name: ""})


def test_lists_and_sections_take_json() -> None:
    config = configured(
        EDGE__WEBSOCKET__ALLOWED_ORIGINS='["http://localhost:3000", "https://app #1"]',
        EDGE__SERVER__BIND='["127.0.0.1:9090"]',
        EDGE__PROXY_ROUTES='[{"prefix": "/web", "upstream": "web"}]',
        EDGE__OPENAPI='{"title": "Library #1", "version": "0123"}',
        EDGE__BREAKERS__UPSTREAMS__LIBRARY='{"consecutive_failures": 2}',
    )
    assert config.websocket.allowed_origins == ["http://localhost:3000", "https://app #1"]
    assert config.server.bind == ["127.0.0.1:9090"]
    assert config.proxy_routes[0].prefix == "/web"
    assert (config.openapi.title, config.openapi.version) == ("Library #1", "0123")
    assert config.breakers.upstreams["library"].consecutive_failures == 2
    # a nullable list takes JSON null
    assert configured(EDGE__PROXY_ROUTES='[{"prefix": "/", "upstream": "web", "methods": null}]')


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("EDGE__SERVER__BIND", "127.0.0.1:9090", "expected a JSON array, got text that is not"),
        ("EDGE__SERVER__BIND", "[127.0.0.1:9090]", "expected a JSON array"),  # YAML flow
        ("EDGE__SERVER__BIND", '{"a": 1}', "expected a JSON array, got JSON of another kind"),
        ("EDGE__SERVER__BIND", "null", "expected a JSON array"),  # not nullable
        ("EDGE__SERVER__BIND", "[" * 100_000, "expected a JSON array"),  # recursion
        ("EDGE__SERVER__BIND", "[1]", "server.bind[0]: Input should be a valid string"),
        ("EDGE__OPENAPI", "title: x", "EDGE__OPENAPI: expected a JSON object"),
        ("EDGE__OPENAPI", '{"titel": "x"}', "openapi.titel: Extra inputs are not permitted"),
        ("EDGE__UPSTREAMS", "[]", "EDGE__UPSTREAMS: expected a JSON object"),
    ],
)
def test_json_that_does_not_fit_is_refused(name: str, value: str, message: str) -> None:
    shown = refusal(**{name: value})
    assert message in shown and name in shown


def test_broken_json_is_not_echoed() -> None:
    """It may be a section of secrets; the message says where it breaks, not what it holds."""
    shown = refusal(EDGE__AUTH__API_KEYS__KEYS='{"ci": "k-s3cret", "cd": ')
    assert "EDGE__AUTH__API_KEYS__KEYS: expected a JSON object" in shown
    assert "s3cret" not in shown


def test_a_refused_scalar_is_shown_redacted() -> None:
    shown = refusal(EDGE__SERVER__WORKERS="http://u:pw-s3cret@host/?token=t-s3cret")
    assert "EDGE__SERVER__WORKERS: expected an integer" in shown
    assert "s3cret" not in shown


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("EDGE__SERVER__WORKRS", "EDGE__SERVER__WORKRS: server has no key 'workrs'"),
        ("EDGE__SERVR__WORKERS", "EDGE__SERVR__WORKERS: the config has no key 'servr'"),
        ("EDGE__NOPE", "EDGE__NOPE: the config has no key 'nope'"),
        ("EDGE__UPSTREAMS__LIBRARY__ADRESS", "upstreams.Library has no key 'adress'"),
        ("EDGE__", "EDGE__: an empty key in the name"),
        ("EDGE__SERVER____WORKERS", "EDGE__SERVER____WORKERS: an empty key"),
        ("EDGE__SERVER__WORKERS__", "EDGE__SERVER__WORKERS__: an empty key"),
        ("EDGE__SERVER__WORKERS__MAX", "server.workers is a value, not a section"),
        ("EDGE__PROXY_ROUTES__0__PREFIX", "proxy_routes is a list; set it whole, as a JSON"),
        ("EDGE__AUTH__API_KEYS__KEYS__CI__X", "auth.api_keys.keys.ci is a value"),
    ],
)
def test_an_unknown_key_is_refused_naming_the_variable(name: str, message: str) -> None:
    assert message in refusal(**{name: "4"})


def test_every_bad_override_is_reported_at_once() -> None:
    shown = refusal(EDGE__SERVER__WORKERS="many", EDGE__NOPE="1", EDGE__ADMIN__TOKEN="")
    assert "EDGE__SERVER__WORKERS" in shown and "EDGE__NOPE" in shown
    assert "EDGE__ADMIN__TOKEN" in shown


def test_a_validation_error_names_the_variable_that_set_the_value() -> None:
    shown = refusal(EDGE__HTTP_UPSTREAMS__WEB__URL="http://web:9000/?q=1")
    assert "http_upstreams.web: Value error, url" in shown
    assert "(set by EDGE__HTTP_UPSTREAMS__WEB__URL)" in shown
    # a problem elsewhere is not blamed on it
    shown = refusal(EDGE__ADMIN__TOKEN="t", EDGE__SERVER__WORKERS="0")
    assert "(set by EDGE__SERVER__WORKERS)" in shown and "EDGE__ADMIN__TOKEN" not in shown


def test_keys_match_case_insensitively_and_keep_the_files_spelling() -> None:
    config = configured(
        EDGE__UPSTREAMS__library__ADDRESS="10.0.0.5:50051",
        EDGE__UPSTREAMS__OTHER__ADDRESS="10.0.0.6:50051",  # a new entry: lowercase
        edge__server__workers="3",  # not an override: the prefix is EDGE__
    )
    assert config.upstreams["Library"].address == "10.0.0.5:50051"
    assert config.upstreams["other"].address == "10.0.0.6:50051"
    assert config.server.workers == 1


def test_an_override_fills_in_a_section_the_file_leaves_null() -> None:
    data = {**BASE, "upstreams": {"Library": {"address": "a:1", "tls": None}}}
    config = parse_config(data, base=Path("/srv"), env={"EDGE__UPSTREAMS__LIBRARY__TLS__CA": "c"})
    tls = config.upstreams["Library"].tls
    assert tls is not None and tls.ca == Path("/srv/c")


def test_the_file_is_interpolated_the_overrides_are_not() -> None:
    data = {**BASE, "admin": {"token": "${ADMIN_TOKEN}"}}
    env = {"ADMIN_TOKEN": "from-file", "OTHER": "x"}
    assert parse_config(data, base=Path("/"), env=env).admin.token == "from-file"
    env["EDGE__ADMIN__TOKEN"] = "${OTHER}"
    assert parse_config(data, base=Path("/"), env=env).admin.token == "${OTHER}"


DOCUMENTED = sorted(
    {
        assignment
        for doc in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
        for snippet in re.findall(r"`([^`]*EDGE__[A-Z_]+=[^`]*)`", doc.read_text())
        for assignment in shlex.split(snippet)
        if assignment.startswith("EDGE__") and "=" in assignment and "<" not in assignment
    }
)


def test_the_documented_examples_are_found() -> None:
    assert "EDGE__SERVER__WORKERS=4" in DOCUMENTED
    assert 'EDGE__WEBSOCKET__ALLOWED_ORIGINS=["http://localhost:3000"]' in DOCUMENTED


@pytest.mark.parametrize("assignment", DOCUMENTED)
def test_the_documented_examples_work(assignment: str) -> None:
    name, _, value = assignment.partition("=")
    data = {**BASE, "upstreams": {"library": {"address": "127.0.0.1:1"}}}
    data["services"] = {"*": {"upstream": "library"}}
    parse_config(data, base=Path("/"), env={name: value, "EDGE_TOKEN": "t"})
