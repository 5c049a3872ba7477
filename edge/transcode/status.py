"""The gRPC status <-> HTTP status table shared by grpc-gateway v2 and Envoy.

Kept as plain data so every ingress (HTTP, WebSocket, proxy) maps codes identically and
so the table itself can be tested row by row.
"""

from __future__ import annotations

from grpc import StatusCode

# grpc-gateway v2 runtime.HTTPStatusFromCode and Envoy's grpc_http1_bridge agree on these.
HTTP_STATUS_BY_GRPC_CODE: dict[int, int] = {
    0: 200,  # OK
    1: 499,  # CANCELLED (client closed request)
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}

GRPC_CODE_BY_NUMBER: dict[int, StatusCode] = {code.value[0]: code for code in StatusCode}


def http_status_for(code: int) -> int:
    """HTTP status for a numeric gRPC code; codes outside the enum are treated as UNKNOWN."""
    return HTTP_STATUS_BY_GRPC_CODE.get(code, 500)


def code_number(code: StatusCode) -> int:
    return int(code.value[0])
