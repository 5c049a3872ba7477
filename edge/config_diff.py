"""What a reload would change: a new config beside the one a gateway is running.

``edge check --config new.yaml --against http://gateway:9901`` reads the running
gateway's ``/admin/config`` and ``/admin/routes`` and compares them with what the new file
would serve, before anyone reloads it: routes added, removed or sent elsewhere, upstreams
and proxy routes added, removed or changed, policies changed, and settings that would
wait for a restart. Both sides are compared as ``/admin/config`` shows them, secrets
redacted, so a changed secret shows no difference. Pure: the caller fetches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edge.config_source import RESTART_ONLY
from edge.routes import Routes

Row = Mapping[str, Any]


def route_rows(routes: Routes) -> list[dict[str, Any]]:
    """The routes as ``/admin/routes`` lists them, sorted by path and method."""
    return [
        {
            "method": route.http_method,
            "path": route.template,
            "rpc": route.method.full_name,
            "upstream": route.upstream,
            "timeout": route.timeout,
            "client_streaming": route.method.client_streaming,
            "server_streaming": route.method.server_streaming,
        }
        for route in sorted(routes.routes, key=lambda r: (r.template, r.http_method))
    ]


def _target(row: Row) -> str:
    return f"{row['rpc']} @ {row['upstream']}"


def _route_changes(running: Sequence[Row], new: Sequence[Row]) -> Iterable[str]:
    old = {(r["method"], r["path"]): r for r in running}
    now = {(r["method"], r["path"]): r for r in new}
    for key in sorted(now.keys() - old.keys()):
        yield f"route added: {key[0]} {key[1]} -> {_target(now[key])}"
    for key in sorted(old.keys() - now.keys()):
        yield f"route removed: {key[0]} {key[1]} (was {_target(old[key])})"
    for key in sorted(old.keys() & now.keys()):
        before, after = old[key], now[key]
        if _target(before) != _target(after):
            yield f"route changed: {key[0]} {key[1]}: {_target(before)} -> {_target(after)}"
        elif before.get("timeout") != after.get("timeout"):
            yield (
                f"route changed: {key[0]} {key[1]}: timeout "
                f"{before.get('timeout')} -> {after.get('timeout')}"
            )


def _differing_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted keys under which two dumps differ (a list or a value: its own key)."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys: list[str] = []
        for key in sorted(before.keys() | after.keys()):
            keys += _differing_keys(before.get(key), after.get(key), f"{prefix}{key}.")
        return keys
    return [] if before == after else [prefix.rstrip(".")]


def _named_changes(kind: str, running: Mapping[str, Any], new: Mapping[str, Any]) -> Iterable[str]:
    for name in sorted(new.keys() - running.keys()):
        yield f"{kind} added: {name}"
    for name in sorted(running.keys() - new.keys()):
        yield f"{kind} removed: {name}"
    for name in sorted(running.keys() & new.keys()):
        keys = _differing_keys(running[name], new[name])
        if keys:
            yield f"{kind} changed: {name} ({', '.join(keys)})"


def _listed_changes(
    kind: str, running: Mapping[str, Any], new: Mapping[str, Any], section: str, key: str
) -> Iterable[str]:
    """Entries of a list told apart by ``key`` (a proxy route's prefix, a policy's match)."""

    def by_key(config: Mapping[str, Any]) -> dict[str, Any]:
        return {str(item.get(key)): item for item in config.get(section, [])}

    yield from _named_changes(kind, by_key(running), by_key(new))


_SECTIONS_SHOWN = {"upstreams", "http_upstreams", "proxy_routes", "policies"}


def what_changes(
    running_config: Mapping[str, Any],
    running_routes: Sequence[Row],
    new_config: Mapping[str, Any],
    new_routes: Sequence[Row],
) -> list[str]:
    """One line per change a reload from the running config to the new one would make."""
    lines = list(_route_changes(running_routes, new_routes))
    for section in ("upstreams", "http_upstreams"):
        kind = section.rstrip("s").replace("_", " ")
        lines += _named_changes(kind, running_config.get(section, {}), new_config.get(section, {}))
    lines += _listed_changes("proxy route", running_config, new_config, "proxy_routes", "prefix")
    lines += _listed_changes("policy", running_config, new_config, "policies", "match")
    waits: list[str] = []
    for section in sorted(running_config.keys() | new_config.keys()):
        if section in _SECTIONS_SHOWN:
            continue
        keys = _differing_keys(running_config.get(section), new_config.get(section), f"{section}.")
        live = [key for key in keys if not _waits_for_restart(key)]
        waits += [key for key in keys if _waits_for_restart(key)]
        if live == [section]:  # the whole section (set, or unset)
            lines.append(f"{section} changed")
        elif live:
            lines.append(f"{section} changed: {', '.join(live)}")
    lines += [f"needs a restart (a reload keeps the running value): {key}" for key in waits]
    return lines


_RESTART_KEYS = tuple(f"{section}.{key}" for section, key in RESTART_ONLY)


def _waits_for_restart(key: str) -> bool:
    return any(key == name or key.startswith(name + ".") for name in _RESTART_KEYS)
