from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Attempt(_message.Message):
    __slots__ = ("key", "fail_times", "code")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FAIL_TIMES_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    key: str
    fail_times: int
    code: int
    def __init__(self, key: _Optional[str] = ..., fail_times: _Optional[int] = ..., code: _Optional[int] = ...) -> None: ...

class Attempts(_message.Message):
    __slots__ = ("attempt",)
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    def __init__(self, attempt: _Optional[int] = ...) -> None: ...
