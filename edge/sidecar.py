"""Per-method settings next to the protos: ``<name>.edge.yaml`` sidecar files.

Teams that own a .proto can say, in the same folder and the same change, how its methods
are exposed: the success status (201 Created, 202 Accepted — a long-standing request of
grpc-gateway users), the deadline, the auth requirement, rate limits, retries, the default
streaming format and JSON options. Sidecars reload with the protos.

Precedence, most specific last:

* the gateway config's ``policies`` win over sidecars for auth, limits and retries (the
  operator has the last word: a main-config policy whose ``match`` covers the method
  applies, and the sidecar's policy settings do not);
* the gateway config's ``methods.<name>.timeout`` wins over a sidecar's ``timeout``;
* otherwise a sidecar's settings apply to the methods its keys match (full method names
  or shell-style globs; the first matching key in a file wins, files in path order; for
  auth, limits and retries, the first matching key that sets any of them);
* ``default_policy`` and the transcoding settings apply to everything else.

A sidecar only ever tightens ``default_policy`` (``bound_policy``): its auth applies when
it is at least as strict, else the stricter of the two applies and the sidecar is reported
as a route problem; its rate limits are added to the default policy's, which keep
counting. The config's ``sidecars_may_loosen`` (globs over ``package.Service``) names the
services whose sidecars may do otherwise: set a looser auth, and replace the limits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.policy_config import AuthRequirement, LimitConfig, PolicyConfig, RetryConfig
from edge.units import Seconds

SUFFIX = ".edge.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JsonSettings(_Model):
    emit_defaults: bool | None = None
    proto_field_names: bool | None = None
    enums_as_ints: bool | None = None
    unknown_fields: Literal["reject", "ignore"] | None = None


class MethodSettings(_Model):
    success_status: int | None = Field(default=None, ge=200, le=299)
    timeout: Seconds | None = None
    auth: AuthRequirement | None = None
    rate_limits: list[LimitConfig] | None = None
    limit_messages: list[LimitConfig] | None = None
    retry: RetryConfig | None = None
    stream_format: Literal["ndjson", "sse", "json"] | None = None
    json_options: JsonSettings | None = Field(default=None, alias="json")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def sets_policy(self) -> bool:
        return any(
            value is not None
            for value in (self.auth, self.rate_limits, self.limit_messages, self.retry)
        )


class SidecarFile(_Model):
    methods: dict[str, MethodSettings] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sidecar:
    pattern: str
    settings: MethodSettings
    source: str


@dataclass(frozen=True, slots=True)
class Sidecars:
    entries: tuple[Sidecar, ...] = ()

    def for_method(self, full_name: str) -> MethodSettings | None:
        for entry in self.entries:
            if fnmatchcase(full_name, entry.pattern):
                return entry.settings
        return None

    def policies(self, default: PolicyConfig) -> list[SidecarPolicy]:
        """The entries that set policy, in order, each bounded by the default policy."""
        return [
            SidecarPolicy(
                entry.pattern,
                entry.source,
                entry.settings.auth,
                bound_policy(default, entry.settings, may_loosen=False),
                bound_policy(default, entry.settings, may_loosen=True),
            )
            for entry in self.entries
            if entry.settings.sets_policy
        ]


# -- what a sidecar may change: tighten the default policy, never loosen it --------------
#
# Auth, ordered by the credentials a requirement accepts (each level accepts a subset of
# the one before): public (anyone) < token with api_keys (a valid token or an API key)
# < token without api_keys (a valid token) < scopes S (a valid token holding S), and
# scopes S < scopes T when S is a subset of T (``require: scopes`` never takes an API
# key, so its api_keys flag changes nothing). Two scope sets where neither holds the
# other are not ordered; the stricter of the two is then a token holding both.


def _accepted(requirement: AuthRequirement) -> tuple[int, frozenset[str]]:
    """(level, scopes): 0 anyone, 1 a token or an API key, 2 a token holding the scopes."""
    if requirement.require == "public":
        return 0, frozenset()
    if requirement.require == "token":
        return (1 if requirement.api_keys else 2), frozenset()
    return 2, frozenset(requirement.scopes)


def at_least_as_strict(candidate: AuthRequirement, floor: AuthRequirement) -> bool:
    """Whether every call ``candidate`` admits is one ``floor`` admits as well."""
    level, scopes = _accepted(candidate)
    floor_level, floor_scopes = _accepted(floor)
    return level >= floor_level and scopes >= floor_scopes


def stricter_auth(floor: AuthRequirement, wanted: AuthRequirement) -> AuthRequirement:
    """The loosest requirement at least as strict as both (one of them, when ordered)."""
    if at_least_as_strict(wanted, floor):
        return wanted
    if at_least_as_strict(floor, wanted):
        return floor
    return AuthRequirement(require="scopes", scopes=sorted({*floor.scopes, *wanted.scopes}))


def describe_auth(requirement: AuthRequirement) -> str:
    if requirement.require == "scopes":
        return f"scopes [{', '.join(sorted(requirement.scopes))}]"
    if requirement.require == "token" and not requirement.api_keys:
        return "token (no API keys)"
    return requirement.require


@dataclass(frozen=True, slots=True)
class BoundedPolicy:
    """A sidecar key's policy as it applies: within the default policy, unless allowed.

    The limits are the sidecar's own; ``keep_default_limits`` says whether the default
    policy's limits (with their counters, shared with every route under the default
    policy) count as well.
    """

    auth: AuthRequirement
    rate_limits: tuple[LimitConfig, ...]
    limit_messages: tuple[LimitConfig, ...]
    keep_default_limits: bool
    keep_default_message_limits: bool
    retry: RetryConfig
    refused: tuple[str, ...] = ()  # what it asked and did not get: route problems
    notes: tuple[str, ...] = ()  # how it applies differently from what it says


def bound_policy(
    default: PolicyConfig, settings: MethodSettings, *, may_loosen: bool
) -> BoundedPolicy:
    """What a sidecar's auth, limits and retry come to on top of ``default`` (pure).

    Without ``may_loosen``: a looser auth does not apply (the stricter of the two does,
    and the attempt is in ``refused``), and the sidecar's limits add to the default's.
    With it: the sidecar's auth applies as written, and its limits replace the default's.
    A setting the sidecar leaves out is the default's either way.
    """
    refused: list[str] = []
    notes: list[str] = []
    auth = default.auth
    if settings.auth is not None:
        auth = settings.auth if may_loosen else stricter_auth(default.auth, settings.auth)
        if auth != settings.auth:
            refused.append(
                f"auth {describe_auth(settings.auth)} would loosen default_policy's "
                f"{describe_auth(default.auth)}, so {describe_auth(auth)} applies "
                "(sidecars_may_loosen can allow it for this service)"
            )
    keep: dict[str, bool] = {}
    for field, ours, theirs in (
        ("rate_limits", settings.rate_limits, default.rate_limits),
        ("limit_messages", settings.limit_messages, default.limit_messages),
    ):
        keep[field] = ours is None or not may_loosen
        if ours is not None and theirs and keep[field]:
            labels = ", ".join(
                limit.name or f"{limit.limit};w={limit.period:g}" for limit in theirs
            )
            notes.append(
                f"{field} add to default_policy's ({labels}), which still apply "
                "(sidecars_may_loosen lets a service's sidecars replace them)"
            )
    return BoundedPolicy(
        auth=auth,
        rate_limits=tuple(settings.rate_limits or ()),
        limit_messages=tuple(settings.limit_messages or ()),
        keep_default_limits=keep["rate_limits"],
        keep_default_message_limits=keep["limit_messages"],
        retry=settings.retry or default.retry,
        refused=tuple(refused),
        notes=tuple(notes),
    )


def may_loosen(services: Sequence[str], method: str) -> bool:
    """Whether the method's service (``pkg.Service`` of ``pkg.Service.Method``) is listed."""
    service = method.rpartition(".")[0]
    return any(fnmatchcase(service, pattern) for pattern in services)


@dataclass(frozen=True, slots=True)
class SidecarPolicy:
    """One sidecar key that sets policy: bounded, and as written (for allowed services)."""

    pattern: str
    source: str  # the file, relative to its proto folder
    wanted_auth: AuthRequirement | None  # as written (the fail-closed check reads it)
    bounded: BoundedPolicy
    loose: BoundedPolicy

    def for_method(self, method: str, services: Sequence[str]) -> BoundedPolicy:
        return self.loose if may_loosen(services, method) else self.bounded


def sidecar_policy_for(policies: Sequence[SidecarPolicy], method: str) -> SidecarPolicy | None:
    """The first policy-setting key that matches the method, as the pipeline picks it."""
    return next((p for p in policies if fnmatchcase(method, p.pattern)), None)


# What a sidecar may be: its size, and how deep its mappings and lists may nest (a real one
# nests about six deep; PyYAML composes documents by recursion, so twenty thousand
# nested "[" would otherwise end the load with RecursionError).
MAX_SIDECAR_BYTES = 256 * 1024
MAX_YAML_DEPTH = 32
# libyaml's parser when PyYAML has it (256 KiB: 0.6 s, against 4 s in pure Python)
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# quoted text in a PyYAML message is the file's own (a character, a tag, an alias name),
# except the grammar's own tokens: punctuation (',', '}') and token kinds ('<scalar>')
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_GRAMMAR = re.compile(r"<[a-z ]+>|[^\w\s]{1,3}")


def _unquoted(message: str) -> str:
    """The message with every quoted piece of the file replaced by an ellipsis."""
    return _QUOTED.sub(lambda m: m[0] if _GRAMMAR.fullmatch(m[0][1:-1]) else "…", message)


class YamlProblem(Exception):
    """A YAML document that cannot be used, described by place and kind only: never a
    fragment of the file, which could be anything (a sidecar may link to a secret).
    ``line`` and ``column`` are 1-based, 0 when the problem is the whole file."""

    def __init__(self, kind: str, line: int = 0, column: int = 0) -> None:
        super().__init__(kind)
        self.kind = kind
        self.line = line
        self.column = column

    def about(self, name: str) -> str:
        """The problem as reported: ``name:line:column: kind``."""
        where = f"{name}:{self.line}:{self.column}" if self.line else name
        return f"{where}: {self.kind}"


def _where(text: str, position: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    line_start = text.rfind("\n", 0, position) + 1
    return text.count("\n", 0, position) + 1, position - line_start + 1


def _yaml_problem(exc: yaml.YAMLError, text: str) -> YamlProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        kind = _unquoted(exc.problem or exc.context or "invalid YAML")[:120]
        if "maximum nesting depth" in kind:  # libyaml's own bound (1,000) came first
            kind = f"nested deeper than {MAX_YAML_DEPTH} levels"
        else:
            kind = f"YAML {type(exc).__name__}: {kind}"
        if mark is None:
            return YamlProblem(kind)
        return YamlProblem(kind, mark.line + 1, mark.column + 1)
    if isinstance(exc, yaml.reader.ReaderError):
        return YamlProblem("YAML ReaderError: unacceptable character", *_where(text, exc.position))
    return YamlProblem(f"YAML {type(exc).__name__}")


def load_yaml(text: str, max_depth: int = MAX_YAML_DEPTH) -> Any:
    """``yaml.safe_load``, with mappings and lists nested at most ``max_depth`` deep.

    The depth is checked on the event stream (the parser keeps a stack of states; only
    the composer recurses) before the document is composed. Raises YamlProblem,
    which says where and what kind of error, and never quotes the text.
    """
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    mark = event.start_mark
                    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
                    raise YamlProblem(f"nested deeper than {max_depth} levels", line, column)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_LOADER)  # a safe loader: plain data only
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc, text) from None


def _read_sidecar(path: Path, root: Path) -> str:
    """The text of a sidecar that is a file inside ``root`` (links are followed only as
    far as that: a ConfigMap's ``..data`` links stay inside, a link to /etc does not)."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise YamlProblem(f"cannot be read ({type(exc).__name__})") from None
    if not real.is_relative_to(root):
        raise YamlProblem("is a link to a file outside the proto folder; not read")
    if not real.is_file():
        raise YamlProblem("is not a file")
    try:
        with real.open("rb") as file:
            data = file.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise YamlProblem(f"cannot be read ({exc.strerror})") from None
    if len(data) > MAX_SIDECAR_BYTES:
        raise YamlProblem(f"is larger than {MAX_SIDECAR_BYTES // 1024} KiB; not read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", "replace")
        raise YamlProblem("not UTF-8", *_where(before, len(before))) from None


def load_sidecars(roots: list[Path]) -> tuple[Sidecars, list[str]]:
    """Every ``*.edge.yaml`` below the proto folders; a bad file is a problem, not a crash.

    Blocking (file reads, YAML parsing): called by ``load_routes``, which runs in a worker
    thread at reload. A sidecar linking outside its proto folder, larger than
    ``MAX_SIDECAR_BYTES`` or nested deeper than ``MAX_YAML_DEPTH`` is a problem, not read.
    """
    entries: list[Sidecar] = []
    problems: list[str] = []
    for root in roots:
        if not root.is_dir():
            continue
        real_root = root.resolve()
        for path in sorted(root.rglob(f"*{SUFFIX}")):
            name = path.relative_to(root).as_posix()
            try:
                data = load_yaml(_read_sidecar(path, real_root)) or {}
                sidecar = SidecarFile.model_validate(data)
            except YamlProblem as exc:
                problems.append(exc.about(name))
                continue
            except ValidationError as exc:
                for error in exc.errors():
                    where = ".".join(str(part) for part in error["loc"])
                    problems.append(f"{name}: {where}: {error['msg']}")
                continue
            entries.extend(
                Sidecar(pattern, settings, name) for pattern, settings in sidecar.methods.items()
            )
    return Sidecars(tuple(entries)), problems
