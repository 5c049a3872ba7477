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
  or shell-style globs; the first matching key in a file wins, files in path order);
* ``default_policy`` and the transcoding settings apply to everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from edge.policy_config import AuthRequirement, LimitConfig, PolicyConfig, RetryConfig, _duration

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
    timeout: Annotated[float, BeforeValidator(_duration), Field(gt=0)] | None = None
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

    def policies(self, default: PolicyConfig) -> list[PolicyConfig]:
        """Policy configs for the entries that set policy, on top of the default policy."""
        out = []
        for entry in self.entries:
            settings = entry.settings
            if not settings.sets_policy:
                continue
            out.append(
                default.model_copy(
                    update={
                        "match": [entry.pattern],
                        "auth": settings.auth or default.auth,
                        "rate_limits": settings.rate_limits
                        if settings.rate_limits is not None
                        else default.rate_limits,
                        "limit_messages": settings.limit_messages
                        if settings.limit_messages is not None
                        else default.limit_messages,
                        "retry": settings.retry or default.retry,
                    }
                )
            )
        return out


def load_sidecars(roots: list[Path]) -> tuple[Sidecars, list[str]]:
    """Every ``*.edge.yaml`` below the proto folders; a bad file is a problem, not a crash."""
    entries: list[Sidecar] = []
    problems: list[str] = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob(f"*{SUFFIX}")):
            name = path.relative_to(root).as_posix()
            try:
                data = yaml.safe_load(path.read_text()) or {}
                sidecar = SidecarFile.model_validate(data)
            except (OSError, yaml.YAMLError) as exc:
                problems.append(f"{name}: cannot read: {exc}")
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
