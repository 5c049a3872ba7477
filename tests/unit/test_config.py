from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_config, parse_config
from edge.errors import ConfigError

BASE = {"upstreams": {"lib": {"address": "127.0.0.1:5000"}}, "services": {"*": {"upstream": "lib"}}}


def test_defaults_and_relative_paths() -> None:
    config = parse_config(BASE, base=Path("/srv/edge"), env={})
    assert config.descriptors.proto_paths == [Path("/srv/edge/protos")]
    assert config.server.bind == ["127.0.0.1:8080"]
    assert config.upstreams["lib"].timeout == 30.0
    assert config.transcoding.max_body_bytes == 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"upstreams": {"lib": {"adress": "x"}}},
            "upstreams.lib.adress: Extra inputs are not permitted",
        ),
        (
            {"upstreams": {"lib": {}}},
            "upstreams.lib: Value error, give exactly one of address or addresses",
        ),
        ({**BASE, "services": {"*": {"upstream": "nope"}}}, "services.*.upstream names 'nope'"),
        ({**BASE, "transcoding": {"max_body_bytes": "lots"}}, "transcoding.max_body_bytes"),
        ({**BASE, "transcoding": {"unknown_fields": "maybe"}}, "transcoding.unknown_fields"),
        (
            {**BASE, "upstreams": {"lib": {"address": "a", "timeout": "soon"}}},
            "upstreams.lib.timeout",
        ),
        (
            {**BASE, "upstreams": {"lib": {"address": "a", "tls": {"cert": "c.pem"}}}},
            "cert and key",
        ),
        ({**BASE, "server": {"workers": 0}}, "server.workers"),
    ],
)
def test_invalid_config_names_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base=Path("/"), env={})
    assert message in str(caught.value)


def test_units() -> None:
    data = {
        **BASE,
        "upstreams": {"lib": {"address": "a", "timeout": "250ms", "max_request_bytes": "2MiB"}},
        "transcoding": {"max_body_bytes": "512KB"},
    }
    config = parse_config(data, base=Path("/"), env={})
    assert config.upstreams["lib"].timeout == 0.25
    assert config.upstreams["lib"].max_request_bytes == 2 * 1024 * 1024
    assert config.transcoding.max_body_bytes == 512_000


def test_environment_interpolation_and_overrides() -> None:
    data = {
        "upstreams": {"lib": {"address": "${LIB_ADDR:-127.0.0.1:1}"}},
        "services": {"*": {"upstream": "lib"}},
    }
    env = {
        "LIB_ADDR": "10.1.2.3:50051",
        "EDGE__UPSTREAMS__LIB__TIMEOUT": "2s",
        "EDGE__TRANSCODING__EMIT_DEFAULTS": "true",
        "EDGE__SERVER__WORKERS": "3",
    }
    config = parse_config(data, base=Path("/"), env=env)
    assert config.upstreams["lib"].address == "10.1.2.3:50051"
    assert config.upstreams["lib"].timeout == 2.0
    assert config.transcoding.emit_defaults is True
    assert config.server.workers == 3
    assert parse_config(data, base=Path("/"), env={}).upstreams["lib"].address == "127.0.0.1:1"


def test_missing_environment_variable_is_named() -> None:
    data = {"upstreams": {"lib": {"address": "${NOPE}"}}}
    with pytest.raises(ConfigError, match=r"upstreams\.lib\.address: environment variable NOPE"):
        parse_config(data, base=Path("/"), env={})


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, env={})
    good = tmp_path / "good.yaml"
    good.write_text("upstreams:\n  lib:\n    address: a:1\ndescriptors:\n  proto_paths: [p]\n")
    assert load_config(good, env={}).descriptors.proto_paths == [tmp_path / "p"]


def test_admin_bind_must_be_a_port_of_its_own() -> None:
    base = {"server": {"bind": ["127.0.0.1:8080"]}}
    with pytest.raises(ConfigError, match=r"admin\.bind"):
        parse_config({**base, "admin": {"bind": "127.0.0.1:8080"}}, base=Path("."))
    with pytest.raises(ConfigError, match=r"admin\.bind"):  # told apart by port alone
        parse_config({**base, "admin": {"bind": "10.0.0.5:8080"}}, base=Path("."))
    with pytest.raises(ConfigError, match=r"admin\.bind"):
        parse_config({**base, "admin": {"bind": "127.0.0.1:0"}}, base=Path("."))
    config = parse_config({**base, "admin": {"bind": "127.0.0.1:9901"}}, base=Path("."))
    assert config.admin.port == 9901


@pytest.mark.parametrize(
    ("upstream", "lean"),
    [
        ({"address": "127.0.0.1:50051"}, True),
        ({"address": "localhost:50051"}, True),
        ({"address": "[::1]:50051"}, True),
        ({"addresses": ["10.0.0.1:50051", "10.0.0.2:50051"]}, True),
        # a name may stand for several records, which grpc.aio balances over and re-resolves
        ({"address": "library.default.svc:50051"}, False),
        ({"addresses": ["[::1]:50051", "[::2]:50051"]}, True),
        ({"address": "dns:///library:50051"}, False),
        ({"address": "unix:/run/library.sock"}, False),
        ({"address": "127.0.0.1:50051", "outlier_detection": {}}, False),  # grpcio's feature
        ({"address": "127.0.0.1:50051", "client": "grpcio"}, False),
        ({"address": "library:50051", "client": "lean"}, True),  # asked for: a name is fine
    ],
)
def test_client_auto_takes_lean_only_where_it_behaves_as_grpcio(
    upstream: dict[str, object], lean: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("grpc_proxy", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    data = {"upstreams": {"lib": upstream}, "services": {"*": {"upstream": "lib"}}}
    assert parse_config(data, base=Path("/"), env={}).upstreams["lib"].lean is lean


def test_client_auto_leaves_proxied_upstreams_to_grpcio(monkeypatch: pytest.MonkeyPatch) -> None:
    # grpc.aio sends its calls through the proxy these variables name; lean would not
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    data = {"upstreams": {"lib": {"address": "10.0.0.1:50051"}}}
    assert parse_config(data, base=Path("/"), env={}).upstreams["lib"].lean is False


@pytest.mark.parametrize(
    ("addresses", "problem"),
    [
        (["10.0.0.1:50051", "library:50051"], "IP addresses with ports"),
        (["localhost:1", "localhost:2"], "IP addresses with ports"),
        (["10.0.0.1:50051", "[::1]:50051"], "all IPv4 or all IPv6"),
    ],
)
def test_address_lists_are_what_grpc_takes(addresses: list[str], problem: str) -> None:
    data = {"upstreams": {"lib": {"addresses": addresses}}}
    with pytest.raises(ConfigError, match=problem):
        parse_config(data, base=Path("/"), env={})


def test_ipv6_address_lists_make_an_ipv6_target() -> None:
    from edge.upstream_settings import grpc_target

    assert grpc_target(["[::1]:1", "[::2]:2"]) == "ipv6:[::1]:1,[::2]:2"
    assert grpc_target(["10.0.0.1:1", "10.0.0.2:2"]) == "ipv4:10.0.0.1:1,10.0.0.2:2"
