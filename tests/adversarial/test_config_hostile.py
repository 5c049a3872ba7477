"""Hostile configuration: environment overrides that YAML would misread, secrets in URLs.

Two ways a config used to betray its operator. ``EDGE__`` overrides were read as YAML, so
``EDGE__ADMIN__TOKEN='s3cr3t #2024'`` made the token ``s3cr3t``, and ``'#x'``, ``null``
or ``~`` turned it off (the admin endpoints then open to every loopback client: behind a
same-host proxy, everyone), while ``*x`` or ``!!python/...`` ended ``edge serve`` in a
traceback. And ``edge check``, whose output lands in CI logs, printed URLs with their
passwords where a config error quoted them: a URL written without its scheme, a YAML
error quoting the line of a ``jwks_url`` with ``?access_token=``, a URL used as a name.

Here the admin token is the string given, whatever it looks like, proved against a real
gateway; a hostile value for a typed key is refused by name, never with a traceback; and
no secret planted in a config, valid or not, reaches ``edge check``'s stdout or stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, TEST_PROTOS, run_gateway

from edge.cli import main
from edge.config import parse_config

pytestmark = pytest.mark.e2e

SECRET = "s3cret"  # in every planted password, token and key below


def config_data(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "descriptors": {"proto_paths": [str(TEST_PROTOS)], "watch": False},
        "upstreams": {"kitchen": {"address": "127.0.0.1:1"}},
        "services": {"*": {"upstream": "kitchen"}},
    }
    return {**data, **extra}


def write_config(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


# -- the admin token is what the environment says, character for character ---------------


@pytest.mark.parametrize(
    ("token", "near_misses"),
    [
        ("s3cr3t #2024", ["s3cr3t"]),  # YAML: "s3cr3t", the rest a comment
        ("#x", ["x"]),  # YAML: no token at all
        ("null", ["None"]),
        ("~", ["None"]),
        ("0123", ["83", "123"]),  # YAML 1.1: octal
        ("no", ["False", "false"]),  # YAML 1.1: a boolean
        ("*x", ["x"]),  # YAML: an alias, a traceback
    ],
)
async def test_the_admin_token_is_the_override_exactly(token: str, near_misses: list[str]) -> None:
    config = parse_config(config_data(), base=ROOT, env={"EDGE__ADMIN__TOKEN": token})
    assert config.admin.token == token
    async with run_gateway(config) as gateway, gateway.client() as client:
        # from loopback, where no token is needed only while there is none
        assert (await client.get("/admin/config")).status_code == 403
        for near in near_misses:
            answer = await client.get("/admin/config", headers={"authorization": f"Bearer {near}"})
            assert answer.status_code == 403, near
        answer = await client.get("/admin/config", headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 200


# -- a hostile value is refused by name: never a traceback, never a different value -------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("EDGE__SERVER__WORKERS", "many", "EDGE__SERVER__WORKERS: expected an integer, got 'many'"),
        ("EDGE__SERVER__WORKERS", "*x", "EDGE__SERVER__WORKERS: expected an integer, got '*x'"),
        ("EDGE__SERVER__WORKERS", "&anchor 4", "EDGE__SERVER__WORKERS: expected an integer"),
        ("EDGE__SERVER__WORKERS", "4 # four", "EDGE__SERVER__WORKERS: expected an integer"),
        ("EDGE__SERVER__WORKERS", "{", "EDGE__SERVER__WORKERS: expected an integer, got '{'"),
        ("EDGE__SERVER__WORKERS", "", "EDGE__SERVER__WORKERS: empty"),
        ("EDGE__SERVER__BIND", "[127.0.0.1:1", "EDGE__SERVER__BIND: expected a JSON array"),
        ("EDGE__WEBSOCKET__ALLOWED_ORIGINS", "[" * 50_000, "expected a JSON array"),
        ("EDGE__TRANSCODING__EMIT_DEFAULTS", "~", "expected true or false, got '~'"),
        ("EDGE__ADMIN__TOKN", "t", "EDGE__ADMIN__TOKN: admin has no key 'tokn'"),
        ("EDGE__ADMIN__TOKEN", "", "EDGE__ADMIN__TOKEN: empty"),
        (
            "EDGE__SERVER__WORKERS",
            "1\n2",
            "EDGE__SERVER__WORKERS: expected an integer, got '1\\n2'",
        ),
    ],
)
def test_edge_check_refuses_a_hostile_override_by_name(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["check", "--config", str(write_config(tmp_path, config_data()))]) == 2
    out, err = capsys.readouterr()
    assert message in err
    assert out == ""


def test_a_python_tag_in_an_override_is_refused_in_a_real_process(tmp_path: Path) -> None:
    """``!!python/object/apply`` was a ConstructorError traceback; it is plain text now."""
    marker = tmp_path / "ran"
    tag = f'!!python/object/apply:os.system ["touch {marker}"]'
    env = {**os.environ, "EDGE__SERVER__WORKERS": tag, "EDGE__ADMIN__TOKEN": tag}
    check = subprocess.run(
        [sys.executable, "-m", "edge.cli", "check", "--config", str(write_config(tmp_path, {}))],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert check.returncode == 2, check.stderr
    assert "EDGE__SERVER__WORKERS: expected an integer, got '!!python/object" in check.stderr
    assert "EDGE__ADMIN__TOKEN" not in check.stderr  # a string key: the text is a fine token
    assert "Traceback" not in check.stderr
    assert not marker.exists()


# -- edge check never prints a planted secret --------------------------------------------

VALID_URLS = {
    "http_upstreams": {"web": {"url": "http://webuser:pw-s3cret@127.0.0.1:2/base"}},
    "proxy_routes": [{"prefix": "/web", "upstream": "web"}],
    "auth": {
        "issuers": [
            {
                "issuer": "https://issuer.example",
                "algorithms": ["RS256"],
                "jwks_url": "https://jwks:pw-s3cret@issuer.example/keys?access_token=tok-s3cret"
                "&v=2&X-Amz-Signature=sig-s3cret",
            }
        ]
    },
    "rate_limiting": {
        "backend": "redis",
        "redis_url": "redis://:p@ss-s3cret@cache:6379/0?password=q-s3cret",
    },
}


def test_edge_check_shows_configured_urls_without_their_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE__HTTP_UPSTREAMS__WEB__URL", "https://web:env-s3cret@10.0.0.9")
    path = write_config(tmp_path, config_data(**VALID_URLS))
    assert main(["check", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert "http upstream web: https://web:***@10.0.0.9" in out
    assert (
        "issuer https://issuer.example: keys from https://jwks:***@issuer.example/keys"
        "?access_token=***&v=2&X-Amz-Signature=***"
    ) in out
    assert "rate limiting: redis at redis://:***@cache:6379/0?password=***" in out


JWKS_LINE = (
    "      jwks_url: https://issuer.example/a/rather/long/path/to/the/keys.json"
    "?access_token=tok-s3cret: ["
)

INVALID = {
    # the URL lacks its scheme: the message quotes it
    "no-scheme": config_data(http_upstreams={"web": {"url": "webuser:pw-s3cret@web:8080"}}),
    "one-slash": config_data(http_upstreams={"web": {"url": "http:/webuser:pw-s3cret@web"}}),
    # a query where none may be, with a password too
    "query": config_data(
        http_upstreams={"web": {"url": "http://webuser:pw-s3cret@web/?token=tok-s3cret"}}
    ),
    "urls": config_data(
        http_upstreams={"web": {"urls": ["http://w:pw-s3cret@a", "w:pw-s3cret@b:1?key=k-s3cret"]}}
    ),
    # a URL where a name goes: the key path quotes it
    "url-as-name": config_data(
        http_upstreams={"http://u:pw-s3cret@web?token=tok-s3cret": {"url": 1}}
    ),
    "redis-scheme": config_data(rate_limiting={"redis_url": "http://u:pw-s3cret@cache:6379"}),
    # a YAML syntax error: PyYAML quotes the line, cut where redaction cannot see a URL
    "yaml": (
        "auth:\n  issuers:\n    - issuer: https://issuer.example\n"
        f"      algorithms: [RS256]\n{JWKS_LINE}\n"
    ),
    "yaml-userinfo": "http_upstreams:\n  web:\n    url: http://u:pw-s3cret@web: [\n",
    # ...cut inside a long token: no "?", "=" or "@" left to tell it is one
    "yaml-cut": (
        "auth:\n  issuers:\n    - issuer: https://issuer.example\n      algorithms: [RS256]\n"
        f"      jwks_url: https://issuer.example/keys?access_token={'x' * 60}-s3cret: [\n"
    ),
}


@pytest.mark.parametrize("data", list(INVALID.values()), ids=list(INVALID))
def test_edge_check_refuses_a_config_without_printing_its_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any] | str
) -> None:
    assert main(["check", "--config", str(write_config(tmp_path, data))]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("edge: ")
    assert SECRET not in out + err
    if "not valid YAML" in err:  # where, without the line itself
        assert re.search(r"\(line \d+, column \d+\)$", err.strip())
    else:
        assert "***" in err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EDGE__SERVER__WORKERS", "http://u:pw-s3cret@host/?token=tok-s3cret"),
        ("EDGE__SERVER__BIND", '["127.0.0.1:1", "redis://:pw-s3cret@x"'),  # broken JSON
        ("EDGE__AUTH__API_KEYS__KEYS", '{"ci": "k-s3cret", '),
        ("EDGE__HTTP_UPSTREAMS__WEB__URL", "web:pw-s3cret@10.0.0.9:80"),
        ("EDGE__HTTP_UPSTREAMS__WEB__URLS", '["http://u:pw-s3cret@a/?sig=sig-s3cret"]'),
        ("EDGE__RATE_LIMITING__REDIS_URL", "cache:6379?password=pw-s3cret"),
    ],
)
def test_edge_check_refuses_an_override_without_printing_its_secrets(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["check", "--config", str(write_config(tmp_path, config_data()))]) == 2
    out, err = capsys.readouterr()
    assert name in err
    assert SECRET not in out + err


def test_edge_check_redacts_its_log_lines_too(tmp_path: Path) -> None:
    """A real process, so the log lines go where an operator sees them: stderr.

    An upstream named by a URL (its credentials and all) whose reflection fails: the
    name is in the route table, the upstream line, the reflection warning logged while
    loading, and the problem line.
    """
    name = "http://u:pw-s3cret@x?token=tok-s3cret"
    data = config_data(
        upstreams={name: {"address": "127.0.0.1:1", "reflection": True}},
        services={"*": {"upstream": name}},
    )
    check = subprocess.run(
        [sys.executable, "-m", "edge.cli", "check", "--config", str(write_config(tmp_path, data))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 1, check.stderr
    assert "WARNING edge.reflection: reflection from upstream http://u:***@x" in check.stderr
    assert "problem: reflection from upstream http://u:***@x?token=*** failed" in check.stderr
    assert "@ http://u:***@x?token=***" in check.stdout  # the route table
    assert SECRET not in check.stdout + check.stderr
