"""Operation ids and tags that read well as method and module names in generated clients
(pure).

Generators turn ``operationId`` into a method name and the tag into a module or class:
``edgedemo.library.v1.LibraryService.GetBook`` becomes
``edgedemo_library_v_1_library_service_get_book``. So an operation is named by its gRPC
method in lowerCamelCase (``getBook``; Python clients make it ``get_book``), qualified by
its service only where two services share a method name (``libraryServiceGetBook``). An
additional binding is the same name with its HTTP method (``updateBookPut``), or a number
when that is taken too; the first binding keeps the plain name. A tag is the service's
short name (``LibraryService``) unless two packages share it, then its full name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def service_short_name(full_name: str) -> str:
    return full_name.rpartition(".")[2]


class OperationNames:
    """Hands out unique operation ids and the tag of each service, for one document."""

    def __init__(self, methods: Iterable[tuple[str, str]]) -> None:
        """``methods``: (service full name, method name) of every route to be documented."""
        pairs = set(methods)
        services = {service for service, _ in pairs}
        self._shared_methods = {
            name for name, count in Counter(name for _, name in pairs).items() if count > 1
        }
        shorts = Counter(service_short_name(service) for service in services)
        self._tags = {
            service: service
            if shorts[service_short_name(service)] > 1
            else service_short_name(service)
            for service in services
        }
        self._used: set[str] = set()
        self._seen_methods: set[tuple[str, str]] = set()

    def tag(self, service: str) -> str:
        return self._tags.get(service, service)

    def operation_id(self, service: str, method: str, http_method: str) -> str:
        base = lower_camel(method)
        if method in self._shared_methods:
            base = lower_camel(service_short_name(service)) + method
            if base in self._used and (service, method) not in self._seen_methods:
                base = lower_camel(service.replace(".", "_")) + "_" + method
        first = (service, method) not in self._seen_methods
        self._seen_methods.add((service, method))
        candidates = [base] if first else []
        candidates.append(base + http_method.capitalize())
        for name in candidates:
            if name not in self._used:
                self._used.add(name)
                return name
        count = 2
        while f"{base}{count}" in self._used:
            count += 1
        self._used.add(f"{base}{count}")
        return f"{base}{count}"
