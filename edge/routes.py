"""Building the gateway's routes from descriptors and config, once per load.

Everything a request needs besides its own bytes is decided here: which upstream, which
deadline, the request binder and response renderer for the rule. A route that cannot be
built (bad binding, conflicting template, no upstream) becomes a listed problem, never a
crash, and never takes other routes with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase

from edge.config import Config, ServiceConfig
from edge.descriptors.http_rules import HttpRule
from edge.descriptors.reflection import DEFAULT_DEADLINE, ReflectionSource, reflect_upstreams
from edge.descriptors.registry import MethodInfo, Registry
from edge.routing.table import RouteConflict, RouteMatch, RouteTable
from edge.routing.template import parse_template
from edge.sidecar import MethodSettings, SidecarPolicy, Sidecars, load_sidecars, sidecar_policy_for
from edge.transcode.binding import BindingError, RequestBinder
from edge.transcode.json_codec import JsonCodec, JsonOptions
from edge.transcode.response import ResponseRenderer
from edge.upstream_settings import upstream_settings


@dataclass(frozen=True, slots=True)
class TranscodeRoute:
    method: MethodInfo
    http_method: str
    template: str
    upstream: str
    timeout: float | None
    binder: RequestBinder
    renderer: ResponseRenderer
    codec: JsonCodec
    success_status: int = 200  # a sidecar may say 201 or 202
    stream_format: str | None = None  # a sidecar's default framing when Accept has none


@dataclass(slots=True)
class Routes:
    """One consistent load: registry, compiled table and what went wrong."""

    registry: Registry
    table: RouteTable[TranscodeRoute]
    # WebSocket routes: /ws/package.Service/Method for every routed method, and each
    # HTTP rule's path (whatever its HTTP method) where that path is unambiguous
    ws_table: RouteTable[TranscodeRoute] = field(default_factory=RouteTable)
    # every routed method at its gRPC path (/package.Service/Method), whatever its
    # annotations: what gRPC-Web and Connect calls address (the body is the whole message)
    rpcs: dict[str, TranscodeRoute] = field(default_factory=dict)
    rpc_services: frozenset[str] = frozenset()  # the services of ``rpcs`` (package.Service)
    routes: list[TranscodeRoute] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not wrong
    sidecar_policies: list[SidecarPolicy] = field(default_factory=list)
    unrouted: list[str] = field(default_factory=list)  # services with no upstream

    def upstream_methods(self) -> list[tuple[str, MethodInfo]]:
        return list(
            {(r.upstream, r.method.full_name): (r.upstream, r.method) for r in self.routes}.values()
        )


def json_options(config: Config) -> JsonOptions:
    transcoding = config.transcoding
    return JsonOptions(
        ignore_unknown_fields=transcoding.unknown_fields == "ignore",
        emit_defaults=transcoding.emit_defaults,
        proto_field_names=transcoding.proto_field_names,
        enums_as_ints=transcoding.enums_as_ints,
    )


def build_routes(
    config: Config,
    registry: Registry,
    sidecars: Sidecars | None = None,
    reflected: Mapping[str, str] | None = None,
) -> Routes:
    """Routes for every method; ``reflected`` maps services found by reflection to upstreams."""
    base_options = json_options(config)
    codecs = {base_options: JsonCodec(registry.pool, base_options)}
    routes = Routes(registry=registry, table=RouteTable())
    routes.problems.extend(str(problem) for problem in registry.problems)
    sidecars = sidecars or Sidecars()
    routes.sidecar_policies = sidecars.policies(config.default_policy)
    generic = config.transcoding.generic_routes
    for service, methods in sorted(registry.services().items()):
        service_config = route_service(config, service, reflected or {})
        if service_config is None:
            routes.unrouted.append(service)
            continue
        for method in methods:
            method_config = config.methods.get(method.full_name)
            settings = sidecars.for_method(method.full_name)
            if not _check_sidecar_policy(routes, config, method.full_name):
                continue
            timeout = (
                (method_config.timeout if method_config else None)
                or (settings.timeout if settings else None)
                or service_config.timeout
                or config.upstreams[service_config.upstream].timeout
            )
            options = _method_options(base_options, settings)
            codec = codecs.get(options) or codecs.setdefault(
                options, JsonCodec(registry.pool, options)
            )
            rules: list[HttpRule | None] = list(method.http_rules)
            if generic == "all" or (generic == "unannotated" and not rules):
                rules.append(None)
            for rule in rules:
                _add_route(
                    routes, codec, config, method, rule, service_config.upstream, timeout, settings
                )
            routes.rpcs[method.grpc_path] = TranscodeRoute(
                method=method,
                http_method="POST",
                template=method.grpc_path,
                upstream=service_config.upstream,
                timeout=timeout,
                binder=RequestBinder(method.input_type, None, codec, reject_unknown_query=False),
                renderer=ResponseRenderer(method.output_type, None, codec),
                codec=codec,
            )
            if config.websocket.enabled:
                upstream = service_config.upstream
                # /ws/pkg.Svc/Method for every method, unless generic routes are off
                generic_ws: list[HttpRule | None] = [] if generic == "none" else [None]
                for ws_rule in [*generic_ws, *method.http_rules]:
                    _add_ws_route(routes, codec, config, method, ws_rule, upstream, timeout)
    routes.rpc_services = frozenset(path[1:].partition("/")[0] for path in routes.rpcs)
    return routes


def _check_sidecar_policy(routes: Routes, config: Config, method: str) -> bool:
    """Report what the method's sidecar policy asks and does not get (a looser auth than
    ``default_policy`` is a problem, limits that add rather than replace are a note);
    False when the method must not be served at all."""
    entry = sidecar_policy_for(routes.sidecar_policies, method)
    if entry is None:
        return True
    wanted = entry.wanted_auth
    if wanted is not None and wanted.require != "public":
        if not (config.auth.issuers or config.auth.api_keys.keys):
            # fail closed: never serve a method whose owner asked for auth unchecked
            routes.problems.append(
                f"{entry.source}: {method}: its .edge.yaml requires auth, but the gateway "
                "has no auth issuers or api_keys; the method is not served"
            )
            return False
    if any(fnmatchcase(method, pattern) for p in config.policies for pattern in p.match):
        return True  # the config's own policy applies, not the sidecar's
    applied = entry.for_method(method, config.sidecars_may_loosen)
    routes.problems.extend(f"{entry.source}: {method}: {why}" for why in applied.refused)
    routes.notes.extend(f"{entry.source}: {method}: {note}" for note in applied.notes)
    return True


def _add_ws_route(
    routes: Routes,
    codec: JsonCodec,
    config: Config,
    method: MethodInfo,
    rule: HttpRule | None,
    upstream: str,
    timeout: float | None,
) -> None:
    """A WebSocket route: frames carry whole request messages; path variables override."""
    template = rule.template if rule is not None else parse_template("/ws" + method.grpc_path)
    try:
        route = TranscodeRoute(
            method=method,
            http_method="GET",
            template=template.source,
            upstream=upstream,
            timeout=timeout,
            binder=RequestBinder(
                method.input_type,
                replace(rule, body="*") if rule is not None else None,
                codec,
                reject_unknown_query=False,
            ),
            renderer=ResponseRenderer(
                method.output_type, rule.response_body if rule else None, codec
            ),
            codec=codec,
        )
        routes.ws_table.add("GET", template, route)
    except BindingError as exc:
        routes.problems.append(f"{method.full_name} (WebSocket {template.source}): {exc}")
    except RouteConflict:
        found = routes.ws_table.match("GET", template.shape)
        if isinstance(found, RouteMatch) and found.target.method is method:
            return  # the same method twice (an additional binding): nothing to say
        note = (
            f"WebSocket: {template.source} is bound by several methods; "
            f"{method.full_name} is reachable at /ws{method.grpc_path}"
        )
        if note not in routes.notes:
            routes.notes.append(note)


def _ignored_query(config: Config) -> list[str]:
    """Query parameters never bound: the configured ones and the credential parameters."""
    names = list(config.transcoding.ignored_query_parameters)
    for credential in (config.auth.token_query_parameter, config.auth.api_keys.query_parameter):
        if credential:
            names.append(credential)
    return names


def _method_options(base: JsonOptions, settings: MethodSettings | None) -> JsonOptions:
    json = settings.json_options if settings else None
    if json is None:
        return base
    return JsonOptions(
        ignore_unknown_fields=base.ignore_unknown_fields
        if json.unknown_fields is None
        else json.unknown_fields == "ignore",
        emit_defaults=base.emit_defaults if json.emit_defaults is None else json.emit_defaults,
        proto_field_names=base.proto_field_names
        if json.proto_field_names is None
        else json.proto_field_names,
        enums_as_ints=base.enums_as_ints if json.enums_as_ints is None else json.enums_as_ints,
    )


def _add_route(
    routes: Routes,
    codec: JsonCodec,
    config: Config,
    method: MethodInfo,
    rule: HttpRule | None,
    upstream: str,
    timeout: float | None,
    settings: MethodSettings | None = None,
) -> None:
    http_method = rule.method if rule is not None else "POST"
    template = rule.template if rule is not None else parse_template(method.grpc_path)
    try:
        route = TranscodeRoute(
            method=method,
            http_method=http_method,
            template=template.source,
            upstream=upstream,
            timeout=timeout,
            binder=RequestBinder(
                method.input_type,
                rule,
                codec,
                reject_unknown_query=config.transcoding.unknown_query_parameters == "reject",
                ignored_query=_ignored_query(config),
                raw_bodies=True,
                derive_update_mask=config.transcoding.patch_field_mask,
            ),
            renderer=ResponseRenderer(
                method.output_type, rule.response_body if rule else None, codec
            ),
            codec=codec,
            success_status=settings.success_status or 200 if settings else 200,
            stream_format=settings.stream_format if settings else None,
        )
        routes.table.add(http_method, template, route)
    except (BindingError, RouteConflict) as exc:
        routes.problems.append(f"{method.full_name} ({http_method} {template.source}): {exc}")
        return
    routes.routes.append(route)


def route_service(
    config: Config, service: str, reflected: Mapping[str, str]
) -> ServiceConfig | None:
    """Where a service goes: its own ``services`` entry, else the upstream whose reflection
    offers it, else ``*``; None (unrouted) when none applies. A reflected service keeps
    ``*``'s timeout."""
    explicit = config.services.get(service)
    if explicit is not None:
        return explicit
    default = config.services.get("*")
    upstream = reflected.get(service)
    if upstream is not None:
        return ServiceConfig(upstream=upstream, timeout=default.timeout if default else None)
    return default


def reflection_sources(config: Config) -> list[ReflectionSource]:
    """The upstreams with ``reflection: true``, in config order, with a short deadline."""
    settings = upstream_settings(config)
    return [
        ReflectionSource(
            settings[name], min(DEFAULT_DEADLINE, upstream.timeout or DEFAULT_DEADLINE)
        )
        for name, upstream in config.upstreams.items()
        if upstream.reflection
    ]


def load_routes(config: Config) -> Routes:
    """Everything a request needs, from the files and the upstreams' reflection (blocking)."""
    from edge.descriptors.registry import load_registry

    descriptors = config.descriptors
    reflection = reflect_upstreams(reflection_sources(config))
    registry = load_registry(
        descriptors.proto_paths,
        descriptors.include_paths,
        descriptors.descriptor_sets,
        reflected=reflection.sets,
    )
    sidecars, sidecar_problems = load_sidecars(descriptors.proto_paths)
    routes = build_routes(config, registry, sidecars, reflection.services)
    routes.problems.extend(sidecar_problems)
    routes.problems.extend(reflection.problems)
    routes.notes.extend(reflection.notes)
    return routes
