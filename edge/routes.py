"""Building the gateway's routes from descriptors and config, once per load.

Everything a request needs besides its own bytes is decided here: which upstream, which
deadline, the request binder and response renderer for the rule. A route that cannot be
built (bad binding, conflicting template, no upstream) becomes a listed problem, never a
crash, and never takes other routes with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edge.config import Config
from edge.descriptors.http_rules import HttpRule
from edge.descriptors.registry import MethodInfo, Registry
from edge.routing.table import RouteConflict, RouteMatch, RouteTable
from edge.routing.template import parse_template
from edge.transcode.binding import BindingError, RequestBinder
from edge.transcode.json_codec import JsonCodec, JsonOptions
from edge.transcode.response import ResponseRenderer
from edge.upstream.grpc import UpstreamSettings, grpc_target, service_config


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


@dataclass(slots=True)
class Routes:
    """One consistent load: registry, compiled table and what went wrong."""

    registry: Registry
    table: RouteTable[TranscodeRoute]
    # WebSocket routes: /ws/package.Service/Method for every routed method, and each
    # HTTP rule's path (whatever its HTTP method) where that path is unambiguous
    ws_table: RouteTable[TranscodeRoute] = field(default_factory=RouteTable)
    routes: list[TranscodeRoute] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not wrong
    unrouted: list[str] = field(default_factory=list)  # services with no upstream

    def upstream_methods(self) -> list[tuple[str, MethodInfo]]:
        return list(
            {(r.upstream, r.method.full_name): (r.upstream, r.method) for r in self.routes}.values()
        )


def upstream_settings(config: Config) -> dict[str, UpstreamSettings]:
    settings = {}
    for name, upstream in config.upstreams.items():
        tls = upstream.tls
        settings[name] = UpstreamSettings(
            name=name,
            target=grpc_target(upstream.all_addresses),
            tls=tls is not None,
            ca_file=tls.ca if tls else None,
            cert_file=tls.cert if tls else None,
            key_file=tls.key if tls else None,
            server_name=tls.server_name if tls else None,
            max_send_bytes=upstream.max_request_bytes,
            max_receive_bytes=upstream.max_response_bytes,
            service_config=service_config(
                upstream.load_balancing,
                upstream.outlier_detection.model_dump() if upstream.outlier_detection else None,
            ),
        )
    return settings


def json_options(config: Config) -> JsonOptions:
    transcoding = config.transcoding
    return JsonOptions(
        ignore_unknown_fields=transcoding.unknown_fields == "ignore",
        emit_defaults=transcoding.emit_defaults,
        proto_field_names=transcoding.proto_field_names,
        enums_as_ints=transcoding.enums_as_ints,
    )


def build_routes(config: Config, registry: Registry) -> Routes:
    codec = JsonCodec(registry.pool, json_options(config))
    routes = Routes(registry=registry, table=RouteTable())
    routes.problems.extend(str(problem) for problem in registry.problems)
    generic = config.transcoding.generic_routes
    for service, methods in sorted(registry.services().items()):
        service_config = config.service_config(service)
        if service_config is None:
            routes.unrouted.append(service)
            continue
        for method in methods:
            method_config = config.methods.get(method.full_name)
            timeout = (
                (method_config.timeout if method_config else None)
                or service_config.timeout
                or config.upstreams[service_config.upstream].timeout
            )
            rules: list[HttpRule | None] = list(method.http_rules)
            if generic == "all" or (generic == "unannotated" and not rules):
                rules.append(None)
            for rule in rules:
                _add_route(routes, codec, config, method, rule, service_config.upstream, timeout)
            if config.websocket.enabled:
                upstream = service_config.upstream
                for ws_rule in [None, *method.http_rules]:
                    _add_ws_route(routes, codec, config, method, ws_rule, upstream, timeout)
    return routes


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


def _add_route(
    routes: Routes,
    codec: JsonCodec,
    config: Config,
    method: MethodInfo,
    rule: HttpRule | None,
    upstream: str,
    timeout: float | None,
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
                ignored_query=config.transcoding.ignored_query_parameters,
            ),
            renderer=ResponseRenderer(
                method.output_type, rule.response_body if rule else None, codec
            ),
            codec=codec,
        )
        routes.table.add(http_method, template, route)
    except (BindingError, RouteConflict) as exc:
        routes.problems.append(f"{method.full_name} ({http_method} {template.source}): {exc}")
        return
    routes.routes.append(route)


def load_routes(config: Config) -> Routes:
    from edge.descriptors.registry import load_registry

    descriptors = config.descriptors
    registry = load_registry(
        descriptors.proto_paths, descriptors.include_paths, descriptors.descriptor_sets
    )
    return build_routes(config, registry)
