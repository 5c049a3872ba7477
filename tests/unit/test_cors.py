"""Tables and properties for the CORS core: config checks, origin matching, the answers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.cors_config import (
    DEFAULT_ALLOW_HEADERS,
    DEFAULT_EXPOSE_HEADERS,
    CorsConfig,
    normalise_origin,
)
from edge.ingress.cors import (
    CorsPolicy,
    CorsRules,
    compile_policy,
    is_preflight,
    label_response,
    private_network_requested,
)

# -- config: origins ------------------------------------------------------------------

NORMALISED = [
    ("https://app.example.com", "https://app.example.com"),
    ("HTTPS://APP.Example.COM", "https://app.example.com"),
    ("https://app.example.com:443", "https://app.example.com"),
    ("http://app.example.com:80", "http://app.example.com"),
    ("https://app.example.com:80", "https://app.example.com:80"),
    ("http://localhost:3000", "http://localhost:3000"),
    ("http://localhost:03000", "http://localhost:3000"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("http://[2001:DB8:0:0:0:0:0:1]", "http://[2001:db8::1]"),
    ("https://*.example.com", "https://*.example.com"),
    ("https://*.Example.com:8443", "https://*.example.com:8443"),
    ("https://*.example.com:443", "https://*.example.com"),
    ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
    ("chrome-extension://abcdefghijklmnop", "chrome-extension://abcdefghijklmnop"),
    ("capacitor://localhost", "capacitor://localhost"),
    ("null", "null"),
    ("*", "*"),
]


@pytest.mark.parametrize(("value", "origin"), NORMALISED, ids=[n[0] for n in NORMALISED])
def test_origins_are_normalised_to_the_browser_serialization(value: str, origin: str) -> None:
    assert normalise_origin(value) == origin


MALFORMED = [
    ("trailing-slash", "https://app.example.com/", "trailing slash"),
    ("path", "https://app.example.com/app", "path"),
    ("query", "https://app.example.com?x=1", "query"),
    ("fragment", "https://app.example.com#x", "fragment"),
    ("userinfo", "https://user@app.example.com", "userinfo"),
    ("userinfo-password", "https://u:p@app.example.com", "userinfo"),
    ("no-scheme", "app.example.com", "scheme"),
    ("bad-scheme", "1http://app.example.com", "scheme"),
    ("scheme-only", "https://", "host"),
    ("file", "file:///home/x", "null"),
    ("file-host", "file://host", "null"),
    ("port-zero", "https://app.example.com:0", "port"),
    ("port-too-big", "https://app.example.com:65536", "port"),
    ("port-letters", "https://app.example.com:http", "port"),
    ("empty-label", "https://app..example.com", "host"),
    ("trailing-dot", "https://app.example.com.", "host"),
    ("bad-char", "https://app$.example.com", "host"),
    ("space", "https://app example.com", "whitespace"),
    ("non-ascii", "https://bücher.example", "xn--"),
    ("star-in-middle", "https://app.*.example.com", "leading labels"),
    ("star-glued", "https://*example.com", "leading labels"),
    ("star-alone-host", "https://*", "leading labels"),
    ("star-tld", "https://*.com", "two labels"),
    ("star-ip", "https://*.0.0.1", "IP address"),
    ("star-ipv6", "https://*.[::1]", "host"),
    ("star-scheme", "*://app.example.com", "scheme"),
    ("bad-ipv4", "http://1.2.3.999", "IPv4"),
    ("bad-ipv6", "http://[::g]", "IPv6"),
    ("ipv6-zone", "http://[fe80::1%25eth0]", "IPv6"),
    ("empty", "", "scheme"),
]


@pytest.mark.parametrize(
    ("value", "said"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_origins_are_config_errors_naming_the_value(value: str, said: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalise_origin(value)
    assert repr(value) in str(caught.value)
    assert said in str(caught.value)
    with pytest.raises(ValidationError):
        CorsConfig(allow_origins=[value])


def test_config_defaults() -> None:
    config = CorsConfig()
    assert config.allow_origins == []
    assert config.allow_methods == ["GET", "POST", "PUT", "PATCH", "DELETE"]
    assert (
        "x-grpc-web" in config.allow_headers and "connect-protocol-version" in config.allow_headers
    )
    assert "grpc-status-details-bin" in config.expose_headers
    assert config.max_age == 600.0
    assert not config.allow_credentials and not config.allow_private_network


def test_config_normalises_lists() -> None:
    config = CorsConfig(
        allow_origins=["HTTPS://A.example.com", "https://a.example.com:443"],
        allow_methods=["get", "POST"],
        allow_headers=["Content-Type", "content-type", "X-Trace"],
        expose_headers=["Trailer-Cost"],
        max_age="2h",
    )
    assert config.allow_origins == ["https://a.example.com"]
    assert config.allow_methods == ["GET", "POST"]
    assert config.allow_headers == ["content-type", "x-trace"]
    assert config.expose_headers == ["trailer-cost"]
    assert config.max_age == 7200.0


@pytest.mark.parametrize(
    ("settings_", "said"),
    [
        ({"allow_origins": ["*"], "allow_credentials": True}, "allow_credentials"),
        ({"allow_origins": ["*", "https://a.example.com"]}, "list it alone"),
        ({"allow_methods": ["*"]}, "'*' is not supported"),
        ({"allow_headers": ["*"]}, "'*' is not supported"),
        ({"allow_headers": ["bad header"]}, "'bad header'"),
        ({"expose_headers": ["a:b"]}, "'a:b'"),
        ({"allow_methods": ["GE T"]}, "'GE T'"),
        ({"max_age": "-1s"}, "max_age"),
        ({"max_age": "soon"}, "soon"),
        ({"allow_origin": ["https://a.example.com"]}, "allow_origin"),
    ],
    ids=[
        "star-with-credentials",
        "star-with-others",
        "star-method",
        "star-header",
        "bad-header",
        "bad-expose",
        "bad-method",
        "negative-max-age",
        "bad-max-age",
        "unknown-key",
    ],
)
def test_config_errors(settings_: dict[str, object], said: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CorsConfig.model_validate(settings_)
    assert said in str(caught.value)


# -- origin matching ------------------------------------------------------------------

ALLOWED_LIST = ["https://app.example.com", "https://*.example.com", "http://localhost:3000"]

MATCHES = [
    ("exact", "https://app.example.com", True),
    ("one-label", "https://x.example.com", True),
    ("two-labels", "https://a.b.example.com", True),
    ("label-with-dash", "https://pr-12.example.com", True),
    ("localhost", "http://localhost:3000", True),
    ("apex-not-covered", "https://example.com", False),
    ("suffix-attack", "https://evil.example.com.attacker.net", False),
    ("tld-attack", "https://example.com.evil", False),
    ("glued", "https://xexample.com", False),
    ("glued-sub", "https://a.xexample.com", False),
    ("upper-case", "HTTPS://APP.EXAMPLE.COM", False),
    ("upper-host", "https://APP.example.com", False),
    ("other-scheme", "http://app.example.com", False),
    ("wildcard-other-scheme", "http://x.example.com", False),
    ("explicit-default-port", "https://app.example.com:443", False),
    ("wildcard-port", "https://x.example.com:8443", False),
    ("other-port", "http://localhost:3001", False),
    ("userinfo", "https://user@app.example.com", False),
    ("userinfo-wildcard", "https://evil.com@x.example.com", False),
    ("userinfo-in-label", "https://a@b.example.com", False),
    ("path", "https://app.example.com/", False),
    ("trailing-dot", "https://x.example.com.", False),
    ("empty-label", "https://.example.com", False),
    ("dots-only", "https://..example.com", False),
    ("null", "null", False),
    ("empty", "", False),
    ("newline", "https://app.example.com\r\nx: y", False),
    ("nul", "https://x.example.com\x00", False),
    ("huge", "https://" + "a." * 2000 + "example.com", False),
]


@pytest.mark.parametrize(
    ("origin", "allowed"), [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES]
)
def test_origin_matching(origin: str, allowed: bool) -> None:
    policy = compile_policy(CorsConfig(allow_origins=ALLOWED_LIST))
    assert policy.origin_allowed(origin) is allowed
    assert policy.origin_allowed(origin.encode("utf-8")) is allowed


def test_null_only_when_listed() -> None:
    assert not compile_policy(CorsConfig(allow_origins=["https://a.example.com"])).origin_allowed(
        "null"
    )
    assert compile_policy(CorsConfig(allow_origins=["null"])).origin_allowed("null")


def test_nothing_listed_allows_nothing() -> None:
    policy = compile_policy(CorsConfig())
    assert not policy.origin_allowed("https://a.example.com")
    assert not policy.preflight("https://a.example.com", "POST").allowed


label = st.from_regex(r"[a-z0-9_\-]{1,10}", fullmatch=True)
origin_text = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, labels, suffix, port: f"{scheme}://{'.'.join(labels)}{suffix}{port}",
        st.sampled_from(["https", "http", "HTTPS", "wss"]),
        st.lists(label, min_size=0, max_size=4),
        st.sampled_from([".example.com", "example.com", ".example.com.evil", ".EXAMPLE.com", ""]),
        st.sampled_from(["", ":443", ":8443", "/", "@x"]),
    ),
)


def reference_allowed(origin: str) -> bool:
    """The documented rule, written independently of the compiled regex."""
    if origin in ("https://app.example.com", "http://localhost:3000"):
        return True
    if not origin.startswith("https://") or not origin.endswith(".example.com"):
        return False
    labels = origin[len("https://") : -len(".example.com")].split(".")
    return all(re.fullmatch(r"[a-z0-9_\-]+", lab, re.ASCII) for lab in labels)


@settings(max_examples=500, deadline=None)
@given(origin_text)
def test_matching_follows_the_documented_rule_and_never_reflects_a_refused_origin(
    origin: str,
) -> None:
    policy = compile_policy(CorsConfig(allow_origins=ALLOWED_LIST))
    allowed = reference_allowed(origin)
    assert policy.origin_allowed(origin) is allowed
    headers = dict(policy.actual(origin))
    if allowed:
        assert headers[b"access-control-allow-origin"] == origin.encode()
    else:
        assert b"access-control-allow-origin" not in headers
    answer = policy.preflight(origin, "POST", "content-type")
    assert answer.allowed is allowed
    reflected = [v for k, v in answer.headers if k == b"access-control-allow-origin"]
    assert reflected == ([origin.encode()] if allowed else [])


# -- preflights -----------------------------------------------------------------------

ORIGIN = "https://app.example.com"
PREFLIGHT_VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def test_an_allowed_preflight() -> None:
    policy = compile_policy(CorsConfig(allow_origins=[ORIGIN], max_age=7200))
    answer = policy.preflight(ORIGIN, "POST", "content-type,x-grpc-web,x-user-agent")
    assert answer.allowed and answer.status == 204
    assert answer.headers == [
        (b"access-control-allow-origin", ORIGIN.encode()),
        (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE"),
        (b"access-control-allow-headers", ", ".join(DEFAULT_ALLOW_HEADERS).encode()),
        (b"access-control-max-age", b"7200"),
        (b"vary", PREFLIGHT_VARY),
    ]


PREFLIGHTS = [
    # (id, origin, method, request headers, private network, allowed)
    (
        "connect-es-unary",
        ORIGIN,
        "POST",
        "connect-protocol-version,connect-timeout-ms,content-type",
        False,
        True,
    ),
    ("grpc-web", ORIGIN, "POST", "content-type,grpc-timeout,x-grpc-web,x-user-agent", False, True),
    ("no-headers", ORIGIN, "DELETE", None, False, True),
    ("empty-headers", ORIGIN, "PUT", "", False, True),
    ("header-case", ORIGIN, "POST", "Content-Type, Authorization", False, True),
    ("ows-and-empty-items", ORIGIN, "POST", " content-type ,, x-request-id\t", False, True),
    ("bytes", ORIGIN.encode(), b"POST", b"content-type", False, True),
    ("refused-origin", "https://evil.example.net", "POST", "content-type", False, False),
    ("no-origin", None, "POST", None, False, False),
    ("method-not-listed", ORIGIN, "TRACE", None, False, False),
    ("method-case-sensitive", ORIGIN, "patch", None, False, False),
    ("no-method", ORIGIN, None, None, False, False),
    ("header-not-listed", ORIGIN, "POST", "content-type,x-secret", False, False),
    ("header-injection", ORIGIN, "POST", "content-type\r\nx: y", False, False),
    ("private-network-not-allowed", ORIGIN, "POST", None, True, False),
]


@pytest.mark.parametrize(
    ("origin", "method", "headers", "private", "allowed"),
    [p[1:] for p in PREFLIGHTS],
    ids=[p[0] for p in PREFLIGHTS],
)
def test_preflights(
    origin: str | bytes | None,
    method: str | bytes | None,
    headers: str | bytes | None,
    private: bool,
    allowed: bool,
) -> None:
    policy = compile_policy(CorsConfig(allow_origins=[ORIGIN]))
    answer = policy.preflight(origin, method, headers, private)
    assert answer.allowed is allowed
    if allowed:
        assert answer.status == 204
        assert (b"access-control-allow-origin", ORIGIN.encode()) in answer.headers
    else:
        # refused: 403 and no CORS header at all, but still Vary
        assert answer.status == 403
        assert answer.headers == [(b"vary", PREFLIGHT_VARY)]


def test_credentials_and_private_network() -> None:
    policy = compile_policy(
        CorsConfig(allow_origins=[ORIGIN], allow_credentials=True, allow_private_network=True)
    )
    answer = policy.preflight(ORIGIN, "POST", None, private_network=True)
    headers = dict(answer.headers)
    assert answer.allowed
    assert headers[b"access-control-allow-credentials"] == b"true"
    assert headers[b"access-control-allow-private-network"] == b"true"
    assert headers[b"vary"] == PREFLIGHT_VARY + b", Access-Control-Request-Private-Network"
    # not asked: not answered
    assert b"access-control-allow-private-network" not in dict(
        policy.preflight(ORIGIN, "POST").headers
    )


def test_any_origin_answers_star_without_vary_origin() -> None:
    policy = compile_policy(CorsConfig(allow_origins=["*"]))
    answer = policy.preflight("https://anyone.example.org", "GET")
    assert dict(answer.headers)[b"access-control-allow-origin"] == b"*"
    assert b"access-control-allow-credentials" not in dict(answer.headers)
    assert policy.preflight("null", "GET").allowed
    for origin in ("https://anyone.example.org", None):
        headers = policy.actual(origin)
        assert headers[0] == (b"access-control-allow-origin", b"*")
        assert b"vary" not in dict(headers)


def test_max_age_is_whole_seconds() -> None:
    policy = compile_policy(CorsConfig(allow_origins=[ORIGIN], max_age="1500ms"))
    assert dict(policy.preflight(ORIGIN, "GET").headers)[b"access-control-max-age"] == b"1"
    policy = compile_policy(CorsConfig(allow_origins=[ORIGIN], max_age=0))
    assert dict(policy.preflight(ORIGIN, "GET").headers)[b"access-control-max-age"] == b"0"


# -- actual responses -----------------------------------------------------------------


def test_actual_response_headers() -> None:
    policy = compile_policy(CorsConfig(allow_origins=[ORIGIN], allow_credentials=True))
    assert policy.actual(ORIGIN) == [
        (b"access-control-allow-origin", ORIGIN.encode()),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", ", ".join(DEFAULT_EXPOSE_HEADERS).encode()),
        (b"vary", b"Origin"),
    ]
    assert policy.actual("https://evil.example.net") == [(b"vary", b"Origin")]
    assert policy.actual(None) == [(b"vary", b"Origin")]


def test_no_expose_header_when_the_list_is_empty() -> None:
    policy = compile_policy(CorsConfig(allow_origins=[ORIGIN], expose_headers=[]))
    assert policy.actual(ORIGIN) == [
        (b"access-control-allow-origin", ORIGIN.encode()),
        (b"vary", b"Origin"),
    ]


def test_answers_are_fresh_lists() -> None:
    policy = CorsPolicy(CorsConfig(allow_origins=[ORIGIN]))
    first = policy.actual(ORIGIN)
    first.append((b"x", b"y"))
    assert (b"x", b"y") not in policy.actual(ORIGIN)
    answer = policy.preflight(ORIGIN, "GET")
    answer.headers.append((b"x", b"y"))
    assert (b"x", b"y") not in policy.preflight(ORIGIN, "GET").headers


# -- recognising preflights -----------------------------------------------------------

IS_PREFLIGHT = [
    (
        "preflight",
        "OPTIONS",
        [(b"origin", b"x"), (b"access-control-request-method", b"POST")],
        True,
    ),
    (
        "mixed-case-names",
        b"OPTIONS",
        [(b"Origin", b"x"), (b"Access-Control-Request-Method", b"GET")],
        True,
    ),
    ("no-request-method", "OPTIONS", [(b"origin", b"x")], False),
    ("no-origin", "OPTIONS", [(b"access-control-request-method", b"POST")], False),
    ("post", "POST", [(b"origin", b"x"), (b"access-control-request-method", b"POST")], False),
    (
        "lower-options",
        "options",
        [(b"origin", b"x"), (b"access-control-request-method", b"POST")],
        False,
    ),
]


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [p[1:] for p in IS_PREFLIGHT],
    ids=[p[0] for p in IS_PREFLIGHT],
)
def test_is_preflight(
    method: str | bytes, headers: list[tuple[bytes, bytes]], expected: bool
) -> None:
    assert is_preflight(method, headers) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"access-control-request-private-network", b"true")], True),
        ([(b"Access-Control-Request-Private-Network", b"true")], True),
        ([(b"access-control-request-private-network", b"false")], False),
        ([], False),
    ],
    ids=["true", "name-case", "false", "absent"],
)
def test_private_network_requested(headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert private_network_requested(headers) is expected


# -- which policy answers for a route, and how answers are labelled ------------------


def _rules() -> CorsRules:
    rules = CorsRules.of(
        CorsConfig(allow_origins=["https://global.example"]),
        [
            (["proxy:/open/*", "proxy:/open"], CorsConfig(allow_origins=["*"])),
            (["pkg.Svc.*"], None),  # a policy without cors: the global one
        ],
        CorsConfig(allow_origins=["https://default.example"]),
    )
    assert rules is not None
    return rules


@pytest.mark.parametrize(
    ("route", "origin"),
    [
        ("proxy:/open", "*"),
        ("proxy:/open/x", "*"),
        ("pkg.Svc.Get", "https://global.example"),
        ("other.Svc.Get", "https://default.example"),  # no policy matched: default_policy
        (None, "https://global.example"),  # nothing claimed the request: the global one
    ],
)
def test_the_first_matching_policy_decides_else_the_global_cors(
    route: str | None, origin: str
) -> None:
    policy = _rules().for_route(route)
    assert policy is not None
    allowed = policy.actual(origin if origin != "*" else "https://x.example")
    assert (b"access-control-allow-origin", origin.encode()) in allowed


def test_no_cors_anywhere_means_no_rules() -> None:
    assert CorsRules.of(None, [(["*"], None)], None) is None
    only_policy = CorsRules.of(None, [(["a"], CorsConfig(allow_origins=["*"]))], None)
    assert only_policy is not None
    assert only_policy.for_route("b") is None  # no global: other routes answer no CORS
    assert only_policy.for_route(None) is None


@pytest.mark.parametrize(
    ("response", "cors", "expected"),
    [
        (
            [(b"content-type", b"a/b")],
            [(b"access-control-allow-origin", b"https://o"), (b"vary", b"Origin")],
            [
                (b"content-type", b"a/b"),
                (b"access-control-allow-origin", b"https://o"),
                (b"vary", b"Origin"),
            ],
        ),
        (  # the upstream's own CORS headers go; Vary is merged, without repeats
            [
                (b"Access-Control-Allow-Origin", b"*"),
                (b"access-control-allow-credentials", b"true"),
                (b"vary", b"Accept-Encoding, origin"),
            ],
            [(b"vary", b"Origin")],
            [(b"vary", b"Accept-Encoding, origin")],
        ),
        ([], [], []),
    ],
)
def test_label_response(
    response: list[tuple[bytes, bytes]],
    cors: list[tuple[bytes, bytes]],
    expected: list[tuple[bytes, bytes]],
) -> None:
    assert label_response(response, cors) == expected
