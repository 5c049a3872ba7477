"""Credentials out of URLs: the table of forms, and properties over random passwords."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edge.config import parse_config
from edge.errors import ConfigError
from edge.pipeline.limiter_store import RedisLimiterStore
from edge.redaction import MASK, redact_text, redact_url, secret_parameter
from edge.redaction import redact_config as redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://user@host:6379/0", "redis://user@host:6379/0"),  # a name, no password
        ("redis://user:@host:6379/0", "redis://user:@host:6379/0"),  # an empty password
        # "@" in the password: the last "@" ends it
        ("redis://:p@ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:p@s@s@host", "redis://user:***@host"),
        ("redis://user:p%40ss@host", "redis://user:***@host"),
        # the other characters URL parsers split at: hidden all the same
        ("redis://:pa/ss#w?rd@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://:pass:word@host", "redis://:***@host"),
        # a password in the query
        ("redis://host:6379/0?password=secret", "redis://host:6379/0?password=***"),
        (
            "redis://host:6379/0?db=1&Password=secret&ssl_cert_reqs=none",
            "redis://host:6379/0?db=1&Password=***&ssl_cert_reqs=none",
        ),
        ("redis://host:6379/0?password=p@ss", "redis://host:6379/0?password=***"),
        ("redis://host?password=p@ss@x", "redis://host?password=***"),
        ("redis://u:pw@host/0?password=p@ss", "redis://u:***@host/0?password=***"),
        ("rediss://:pw@host?password=a#b&x=1", "rediss://:***@host?password=***&x=1"),
        (
            "unix:///run/redis.sock?password=secret&db=0",
            "unix:///run/redis.sock?password=***&db=0",
        ),
        # every name that looks secret, in any case
        (
            "https://idp/jwks?access_token=a&API_KEY=b&apikey=c&key=d&auth=e&Token=f&pwd=g"
            "&pass=h&secret=i&password=j",
            "https://idp/jwks?access_token=***&API_KEY=***&apikey=***&key=***&auth=***"
            "&Token=***&pwd=***&pass=***&secret=***&password=***",
        ),
        (
            "https://idp/jwks?client_secret=a&X-Amz-Signature=b&sig=c&redis.passwd=d"
            "&monkey=banana&keyboard=qwerty&tokens=2",
            "https://idp/jwks?client_secret=***&X-Amz-Signature=***&sig=***&redis.passwd=***"
            "&monkey=banana&keyboard=qwerty&tokens=2",
        ),
        ("https://idp/jwks?pass%77ord=s", "https://idp/jwks?pass%77ord=***"),  # encoded name
        ("https://idp/cb#access_token=abc&state=x", "https://idp/cb#access_token=***&state=x"),
        ("https://idp/jwks?x=1#token=abc", "https://idp/jwks?x=1#token=***"),
        ("https://idp/jwks?password=&x=1", "https://idp/jwks?password=&x=1"),  # nothing to hide
        ("https://idp/jwks?password", "https://idp/jwks?password"),
        # an "@" in a query value does not end a password that is not there
        ("https://idp:8443/jwks?login=a@b", "https://idp:8443/jwks?login=a@b"),
        # ...but one in a path after a ":" errs on the side of hiding
        ("https://host:8443/users/a@b/keys", "https://host:***@b/keys"),
        # not URLs, or nothing secret in them
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("dns:///upstream.internal:50051", "dns:///upstream.internal:50051"),
        ("edgetest.v1.*", "edgetest.v1.*"),
        ("not a url?", "not a url?"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting twice changes nothing more


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("PASSWORD", True),
        ("pass", True),
        ("pwd", True),
        ("secret", True),
        ("token", True),
        ("access_token", True),
        ("api_key", True),
        ("apikey", True),
        ("key", True),
        ("auth", True),
        ("client_secret", True),
        ("refresh-token", True),
        ("x.api.key", True),
        ("pass%77ord", True),
        ("db", False),
        ("keyboard", False),
        ("monkey", False),
        ("ssl_cert_reqs", False),
        ("author", False),
    ],
)
def test_secret_parameter_names(name: str, secret: bool) -> None:
    assert secret_parameter(name) is secret


def test_redact_text_finds_urls_in_messages() -> None:
    message = (
        "401, message='Unauthorized', url=URL('https://u:pw@idp/jwks?token=abc&x=1'); "
        "retrying redis://:p@ss@cache:6379/0 later"
    )
    assert redact_text(message) == (
        "401, message='Unauthorized', url=URL('https://u:***@idp/jwks?token=***&x=1'); "
        "retrying redis://:***@cache:6379/0 later"
    )
    assert redact_text("no url here: a@b, c:d") == "no url here: a@b, c:d"


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        ("redis://:hunter@2-secret@redis:6379/0", ["hunter", "2-secret"]),
        ("redis://user:hunter%402-secret@redis:6379/0", ["hunter", "2-secret"]),
        ("redis://redis:6379/0?password=hunter2-secret", ["hunter", "2-secret"]),
        ("redis://redis:6379/0?db=0&password=hunter@2-secret", ["hunter", "2-secret"]),
    ],
)
def test_admin_config_redaction(url: str, fragments: list[str]) -> None:
    """What /admin/config shows: the config dump through ``redact_config``."""
    dump = {"rate_limiting": {"backend": "redis", "redis_url": url}}
    shown = str(redact(dump))
    for fragment in fragments:
        assert fragment not in shown
    assert "redis:6379/0" in shown  # where it points stays readable


# -- properties: a random password, in the userinfo or in the query, never shows ----------

PASSWORDS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    min_size=4,
    max_size=24,
)
SCHEMES = st.sampled_from(["redis", "rediss", "http", "https"])
HOSTS = st.from_regex(r"[a-z][a-z0-9\-]{0,10}(\.[a-z]{2,5})?", fullmatch=True)
PORTS = st.sampled_from(["", ":6379", ":443", ":50051"])
PATHS = st.sampled_from(["", "/", "/0", "/15", "/.well-known/jwks.json"])
NAMES = st.from_regex(r"[a-z]{1,8}", fullmatch=True).filter(lambda n: not secret_parameter(n))
VALUES = st.from_regex(r"[A-Za-z0-9@:/.\-]{0,10}", fullmatch=True)
PARAMS = st.lists(st.tuples(NAMES, VALUES), max_size=3).map(
    lambda pairs: "&".join(f"{name}={value}" for name, value in pairs)
)
SECRET_NAMES = st.sampled_from(
    [
        *("password", "pass", "pwd", "secret", "token", "access_token", "api_key", "apikey"),
        *("key", "auth"),
    ]
).flatmap(lambda name: st.sampled_from([name, name.upper(), name.title()]))
# the documented limit: a password holding "?name=" reads as the start of a query
QUERY_START = re.compile(r"\?[\w.~%+\-]*=")


@given(
    password=PASSWORDS,
    scheme=SCHEMES,
    user=st.from_regex(r"[a-z0-9]{0,6}", fullmatch=True),
    host=HOSTS,
    port=PORTS,
    path=PATHS,
    query=PARAMS,
)
def test_a_userinfo_password_never_shows(
    password: str, scheme: str, user: str, host: str, port: str, path: str, query: str
) -> None:
    def url(secret: str) -> str:
        return f"{scheme}://{user}:{secret}@{host}{port}{path}" + (f"?{query}" if query else "")

    assume(password not in url(MASK))  # not a piece of the rest (or of the mask)
    assume(QUERY_START.search(password) is None)
    shown = redact_url(url(password))
    assert password not in shown
    assert shown == url(MASK)  # and nothing else changed


@given(
    password=PASSWORDS,
    scheme=SCHEMES,
    userinfo=st.sampled_from(["", "user@", "user:pw@", ":pw@"]),
    host=HOSTS,
    port=PORTS,
    path=PATHS,
    before=PARAMS,
    name=SECRET_NAMES,
    after=PARAMS,
)
def test_a_query_password_never_shows(
    password: str,
    scheme: str,
    userinfo: str,
    host: str,
    port: str,
    path: str,
    before: str,
    name: str,
    after: str,
) -> None:
    embedded = password.replace("&", "%26")  # as it must be written to stay one value

    def url(secret: str) -> str:
        query = "&".join(part for part in (before, f"{name}={secret}", after) if part)
        return f"{scheme}://{userinfo}{host}{port}{path}?{query}"

    assume(password not in url(MASK) and embedded not in url(MASK))
    shown = redact_url(url(embedded))
    assert password not in shown and embedded not in shown
    assert shown == redact_url(url(MASK))  # the same as if the secret were the mask


# -- the places that show a URL: config errors, the Redis store ---------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"http_upstreams": {"web": {"url": "http://u:pw-s3cret@host?token=tok-s3cret"}}},
        {"http_upstreams": {"web": {"url": "ftp://u:pw-s3cret@host/"}}},
        {"rate_limiting": {"redis_url": "redsi://:pw-s3cret@cache:6379/0"}},
        {"rate_limiting": {"redis_url": "cache:6379?password=pw-s3cret"}},
    ],
    ids=["http-query", "http-scheme", "redis-scheme", "redis-no-scheme"],
)
def test_config_errors_show_urls_redacted(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(data, base=Path("/tmp"), env={})
    assert "s3cret" not in str(raised.value)
    assert "***" in str(raised.value)


@pytest.mark.parametrize(
    "url",
    ["redis://:pw-s3cret@cache:port/0", "redis://:pw/s3cret@cache:6379/0", "redis://h/0?db=x"],
)
def test_an_unreadable_redis_url_is_a_config_error_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        RedisLimiterStore.from_url(url)
    assert "s3cret" not in str(raised.value)
    assert str(raised.value).startswith("rate_limiting.redis_url ")


# -- forms that are not a whole URL with a scheme: what config errors and CI logs quote ---


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # written without the scheme (the mistake "must be http://..." reports)
        ("webuser:pw@web.example:8080", "webuser:***@web.example:8080"),
        ("webuser:p@ss@web.example", "webuser:***@web.example"),
        ("http:/webuser:pw@web", "http:***@web"),  # one slash: from the start, as well
        ("u:pw@host?key=k&x=1", "u:***@host?key=***&x=1"),
        ("mailto:a@b", "mailto:***@b"),  # errs on the side of hiding
        ("read:books@v2", "read:***@v2"),
        # nothing to hide: no ":" before the "@", or white space in between (prose)
        ("user@host", "user@host"),
        ("a@b:c", "a@b:c"),
        ("Contact: team@example.com", "Contact: team@example.com"),
        ("cache:6379?password=pw", "cache:6379?password=***"),
    ],
)
def test_redact_url_without_a_scheme(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # PyYAML's quote of a line, cut short before the scheme
        ("  ... ple/jwks?access_token=abc: [", "  ... ple/jwks?access_token=*** ["),
        ("... en=abc&access_token=abc&v=2", "... en=abc&access_token=***&v=2"),
        ("...ssword=x#token=abc", "...ssword=x#token=***"),
        # a config error quoting a URL without its scheme
        (
            "url 'webuser:pw@web:8080' must be http://host[:port][/path] or https://...",
            "url 'webuser:***@web:8080' must be http://host[:port][/path] or https://...",
        ),
        # a URL as a key of the config, in an error's location
        (
            "http_upstreams.http://u:pw@web.url: Input should be a valid string",
            "http_upstreams.http://u:***@web.url: Input should be a valid string",
        ),
        ("(set by EDGE__X) a=1&b=2", "(set by EDGE__X) a=1&b=2"),
        ("library:50051, see #12 & co", "library:50051, see #12 & co"),
        ("", ""),
    ],
)
def test_redact_text_finds_secrets_that_are_not_whole_urls(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert redact_text(shown) == shown


@given(
    password=PASSWORDS.filter(lambda p: not any(c.isspace() or c in "'\"<>" for c in p)),
    user=st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True),
    host=HOSTS,
    port=PORTS,
    quote=st.sampled_from(["'", '"', " "]),
    slashes=st.sampled_from(["", "/", "//"]),
)
def test_a_scheme_less_password_in_a_message_never_shows(
    password: str, user: str, host: str, port: str, quote: str, slashes: str
) -> None:
    """A message quoting a URL written without its scheme, as a config error does."""
    password = f"{password[:2]}{slashes}{password[2:]}"
    url = f"{user}:{password}@{host}{port}"
    assume(password not in f"{user}:{MASK}@{host}{port}")
    assume(QUERY_START.search(password) is None)
    shown = redact_text(f"url {quote}{url}{quote} must be http://host")
    assert password not in shown
    assert f"{user}:{MASK}@{host}{port}" in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("u:a//b@host", "u:***@host"),  # a "//" in the password of a scheme-less URL
        ("see https://u:pw@x", "see https://u:***@x"),  # prose holding a URL
        ("//u:pw@host", "//u:***@host"),  # scheme-relative
    ],
)
def test_redact_url_tells_a_scheme_from_a_slash_in_a_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("data", "env"),
    [
        ({"http_upstreams": {"web": {"url": "webuser:pw-s3cret@web:8080"}}}, {}),
        ({"http_upstreams": {"web": {"url": "http:/webuser:pw-s3cret@web"}}}, {}),
        ({"http_upstreams": {"http://u:pw-s3cret@web?token=tok-s3cret": {"url": 1}}}, {}),
        ({}, {"EDGE__HTTP_UPSTREAMS__WEB__URL": "web:pw-s3cret@10.0.0.9:80"}),
        ({}, {"EDGE__SERVER__WORKERS": "http://u:pw-s3cret@host/?token=tok-s3cret"}),
    ],
    ids=["no-scheme", "one-slash", "url-as-name", "override-no-scheme", "override-scalar"],
)
def test_config_errors_redact_what_is_not_a_whole_url(
    data: dict[str, Any], env: dict[str, str]
) -> None:
    """The ConfigError itself, as reload logs it and /admin/reload answers it."""
    with pytest.raises(ConfigError) as raised:
        parse_config(data, base=Path("/tmp"), env=env)
    assert "s3cret" not in str(raised.value)
    assert "***" in str(raised.value)
