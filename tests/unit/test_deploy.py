"""deploy/: what can be checked without a container engine or a cluster.

The manifests parse and say what docs/operations.md promises (replicas, probes, a grace period
above the drain, secrets by reference); the configs in them load and build their routes;
the ConfigMap's proto is the repository's; the container file copies only what exists;
nginx accepts nginx.conf (``nginx -t``: the machine's nginx, or Debian's unpacked into
.venv/nginx by scripts/test; skipped, saying so, where there is neither).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import load_config
from edge.routes import load_routes

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNPACKED_NGINX = ROOT / ".venv" / "nginx" / "usr" / "sbin" / "nginx"  # see scripts/test
KUBERNETES = DEPLOY / "kubernetes"
ENV = {
    "EDGE_JWT_SECRET": "s" * 32,
    "EDGE_ADMIN_TOKEN": "admin-token",
    "EDGE_REDIS_URL": "redis://redis:6379/0",
}


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None and "kind" in document and "metadata" in document:
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


def duration_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    assert match, text
    return float(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2]]


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 6
    for path in files:
        assert list(yaml.safe_load_all(path.read_text())), path


def test_the_deployment_drains_before_it_is_killed() -> None:
    found = manifests()
    deployment = found[("Deployment", "edge")]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    config = yaml.safe_load(found[("ConfigMap", "edge-config")]["data"]["edge.yaml"])
    drain = duration_seconds(config["server"]["graceful_timeout"])
    # preStop, then the drain, then exiting (Hypercorn's margin, closing channels)
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + drain + 5
    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container["env"]
        if "valueFrom" in e
    }
    assert secrets == dict.fromkeys(ENV, "edge-secrets")
    assert (
        found[("Service", "edge")]["spec"]["selector"]
        == deployment["spec"]["selector"]["matchLabels"]
    )


def test_the_configmap_config_loads_and_serves_its_protos(tmp_path: Path) -> None:
    found = manifests()
    config_map = found[("ConfigMap", "edge-config")]["data"]
    protos = found[("ConfigMap", "edge-protos")]["data"]
    deployment = found[("Deployment", "edge")]["spec"]["template"]["spec"]
    (volume,) = [v for v in deployment["volumes"] if v["name"] == "protos"]
    (container,) = deployment["containers"]
    assert container["args"] == ["serve", "--config", "/etc/edge/config/edge.yaml"]
    # no subPath: a ConfigMap update reaches a folder mount only, and is reloaded live
    assert all("subPath" not in mount for mount in container["volumeMounts"])
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "edge.yaml").write_text(config_map["edge.yaml"])
    for item in volume["configMap"]["items"]:  # the tree the pod sees under /etc/edge/protos
        target = tmp_path / "protos" / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(protos[item["key"]])
    assert {item["key"] for item in volume["configMap"]["items"]} == set(protos)
    config = load_config(tmp_path / "config" / "edge.yaml", env=ENV)
    assert config.rate_limiting.backend == "redis"
    assert config.rate_limiting.trusted_proxies
    routes = load_routes(config)
    assert routes.routes and not routes.problems


def test_the_configmap_proto_is_the_repository_proto() -> None:
    protos = manifests()[("ConfigMap", "edge-protos")]["data"]
    repository = ROOT / "protos" / "edgedemo" / "library" / "v1" / "library.proto"
    assert protos["library.proto"] == repository.read_text()


def test_the_container_config_loads(tmp_path: Path) -> None:
    shutil.copy(DEPLOY / "edge.yaml", tmp_path / "edge.yaml")
    shutil.copytree(ROOT / "protos", tmp_path / "protos")  # as COPY lays them out
    routes = load_routes(load_config(tmp_path / "edge.yaml", env={}))
    assert routes.routes and not routes.problems


def test_the_container_file() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    instructions = [
        line.split(None, 1)
        for line in text.replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    by_name: dict[str, list[str]] = {}
    for name, rest in instructions:
        by_name.setdefault(name.upper(), []).append(rest.strip())
    assert by_name["FROM"] == ["python:3.11-slim"]
    for copy in by_name["COPY"]:
        *sources, _target = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY source {source} does not exist"
    assert any("-c constraints.txt" in run for run in by_name["RUN"])
    (user,) = by_name["USER"]
    assert user not in ("root", "0")
    assert by_name["EXPOSE"] == ["8080"]
    assert "/healthz" in by_name["HEALTHCHECK"][0]
    assert by_name["ENTRYPOINT"] == ['["edge"]']
    assert by_name["CMD"] == ['["serve", "--config", "/etc/edge/edge.yaml"]']


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    places = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", str(UNPACKED_NGINX))
    nginx = shutil.which("nginx") or next((p for p in places if Path(p).exists()), None)
    if nginx is None:
        pytest.skip("nginx is not here (scripts/test unpacks Debian's into .venv/nginx)")
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    # the config as shipped, with its temp folders in tmp_path: an unpacked (not installed)
    # nginx has no /var/lib/nginx, where they are by default
    temps = "".join(
        f"    {kind}_temp_path {tmp_path / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    shipped = (DEPLOY / "nginx.conf").read_text()
    conf.write_text(re.sub(r"^http\s*\{\n", lambda m: m.group(0) + temps, shipped, flags=re.M))
    assert conf.read_text() != shipped
    pid = f"pid {tmp_path / 'nginx.pid'};"
    result = subprocess.run(
        [nginx, "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf), "-g", pid],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_nginx_config_has_the_proxy_settings() -> None:
    nginx_conf = (DEPLOY / "nginx.conf").read_text()
    for needed in (
        "keepalive 64",
        "proxy_http_version 1.1",
        "proxy_set_header Upgrade $http_upgrade",
        "proxy_set_header Connection $connection_upgrade",
        "proxy_buffering off",
        "proxy_request_buffering off",
        "proxy_read_timeout 1h",
        "X-Forwarded-For $proxy_add_x_forwarded_for",
        "X-Forwarded-Proto $scheme",
        "X-Forwarded-Host $host",
    ):
        assert needed in nginx_conf, needed
