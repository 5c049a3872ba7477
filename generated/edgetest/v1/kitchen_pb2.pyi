import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Flavour(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLAVOUR_UNSPECIFIED: _ClassVar[Flavour]
    FLAVOUR_SWEET: _ClassVar[Flavour]
    FLAVOUR_SOUR: _ClassVar[Flavour]
FLAVOUR_UNSPECIFIED: Flavour
FLAVOUR_SWEET: Flavour
FLAVOUR_SOUR: Flavour

class CountRequest(_message.Message):
    __slots__ = ("count", "interval_seconds", "fail_after", "fail_code", "padding")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FAIL_AFTER_FIELD_NUMBER: _ClassVar[int]
    FAIL_CODE_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    count: int
    interval_seconds: float
    fail_after: int
    fail_code: int
    padding: int
    def __init__(self, count: _Optional[int] = ..., interval_seconds: _Optional[float] = ..., fail_after: _Optional[int] = ..., fail_code: _Optional[int] = ..., padding: _Optional[int] = ...) -> None: ...

class Tick(_message.Message):
    __slots__ = ("index", "padding")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    index: int
    padding: str
    def __init__(self, index: _Optional[int] = ..., padding: _Optional[str] = ...) -> None: ...

class Number(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: int
    def __init__(self, value: _Optional[int] = ...) -> None: ...

class Total(_message.Message):
    __slots__ = ("sum", "count")
    SUM_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    sum: int
    count: int
    def __init__(self, sum: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class Line(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class Inner(_message.Message):
    __slots__ = ("label", "count")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    label: str
    count: int
    def __init__(self, label: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Nested(_message.Message):
    __slots__ = ("name", "inner", "inners")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INNER_FIELD_NUMBER: _ClassVar[int]
    INNERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    inner: Inner
    inners: _containers.RepeatedCompositeFieldContainer[Inner]
    def __init__(self, name: _Optional[str] = ..., inner: _Optional[_Union[Inner, _Mapping]] = ..., inners: _Optional[_Iterable[_Union[Inner, _Mapping]]] = ...) -> None: ...

class Kitchen(_message.Message):
    __slots__ = ("string_value", "int32_value", "int64_value", "uint32_value", "uint64_value", "sint64_value", "fixed64_value", "float_value", "double_value", "bool_value", "bytes_value", "enum_value", "nested", "repeated_string", "repeated_int64", "repeated_enum", "labels", "inner_by_id", "choice_text", "choice_number", "optional_int32", "timestamp", "duration", "field_mask", "int64_wrapper", "string_wrapper", "bool_wrapper", "struct_value", "value", "list_value", "any", "empty", "resource", "double_wrapper")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class InnerByIdEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: Inner
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[Inner, _Mapping]] = ...) -> None: ...
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT32_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    UINT32_VALUE_FIELD_NUMBER: _ClassVar[int]
    UINT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    SINT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    FIXED64_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    ENUM_VALUE_FIELD_NUMBER: _ClassVar[int]
    NESTED_FIELD_NUMBER: _ClassVar[int]
    REPEATED_STRING_FIELD_NUMBER: _ClassVar[int]
    REPEATED_INT64_FIELD_NUMBER: _ClassVar[int]
    REPEATED_ENUM_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INNER_BY_ID_FIELD_NUMBER: _ClassVar[int]
    CHOICE_TEXT_FIELD_NUMBER: _ClassVar[int]
    CHOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_INT32_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    FIELD_MASK_FIELD_NUMBER: _ClassVar[int]
    INT64_WRAPPER_FIELD_NUMBER: _ClassVar[int]
    STRING_WRAPPER_FIELD_NUMBER: _ClassVar[int]
    BOOL_WRAPPER_FIELD_NUMBER: _ClassVar[int]
    STRUCT_VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    EMPTY_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_WRAPPER_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int32_value: int
    int64_value: int
    uint32_value: int
    uint64_value: int
    sint64_value: int
    fixed64_value: int
    float_value: float
    double_value: float
    bool_value: bool
    bytes_value: bytes
    enum_value: Flavour
    nested: Nested
    repeated_string: _containers.RepeatedScalarFieldContainer[str]
    repeated_int64: _containers.RepeatedScalarFieldContainer[int]
    repeated_enum: _containers.RepeatedScalarFieldContainer[Flavour]
    labels: _containers.ScalarMap[str, str]
    inner_by_id: _containers.MessageMap[int, Inner]
    choice_text: str
    choice_number: int
    optional_int32: int
    timestamp: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    field_mask: _field_mask_pb2.FieldMask
    int64_wrapper: _wrappers_pb2.Int64Value
    string_wrapper: _wrappers_pb2.StringValue
    bool_wrapper: _wrappers_pb2.BoolValue
    struct_value: _struct_pb2.Struct
    value: _struct_pb2.Value
    list_value: _struct_pb2.ListValue
    any: _any_pb2.Any
    empty: _empty_pb2.Empty
    resource: str
    double_wrapper: _wrappers_pb2.DoubleValue
    def __init__(self, string_value: _Optional[str] = ..., int32_value: _Optional[int] = ..., int64_value: _Optional[int] = ..., uint32_value: _Optional[int] = ..., uint64_value: _Optional[int] = ..., sint64_value: _Optional[int] = ..., fixed64_value: _Optional[int] = ..., float_value: _Optional[float] = ..., double_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., bytes_value: _Optional[bytes] = ..., enum_value: _Optional[_Union[Flavour, str]] = ..., nested: _Optional[_Union[Nested, _Mapping]] = ..., repeated_string: _Optional[_Iterable[str]] = ..., repeated_int64: _Optional[_Iterable[int]] = ..., repeated_enum: _Optional[_Iterable[_Union[Flavour, str]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., inner_by_id: _Optional[_Mapping[int, Inner]] = ..., choice_text: _Optional[str] = ..., choice_number: _Optional[int] = ..., optional_int32: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., field_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., int64_wrapper: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ..., string_wrapper: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., bool_wrapper: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ..., struct_value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., list_value: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., any: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., empty: _Optional[_Union[_empty_pb2.Empty, _Mapping]] = ..., resource: _Optional[str] = ..., double_wrapper: _Optional[_Union[_wrappers_pb2.DoubleValue, _Mapping]] = ...) -> None: ...

class Inspection(_message.Message):
    __slots__ = ("metadata", "deadline_seconds", "request")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.ScalarMap[str, str]
    deadline_seconds: float
    request: Kitchen
    def __init__(self, metadata: _Optional[_Mapping[str, str]] = ..., deadline_seconds: _Optional[float] = ..., request: _Optional[_Union[Kitchen, _Mapping]] = ...) -> None: ...

class FailRequest(_message.Message):
    __slots__ = ("code", "message", "bad_field", "trailers", "headers", "times")
    class TrailersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BAD_FIELD_FIELD_NUMBER: _ClassVar[int]
    TRAILERS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    bad_field: str
    trailers: _containers.ScalarMap[str, str]
    headers: _containers.ScalarMap[str, str]
    times: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., bad_field: _Optional[str] = ..., trailers: _Optional[_Mapping[str, str]] = ..., headers: _Optional[_Mapping[str, str]] = ..., times: _Optional[int] = ...) -> None: ...

class SleepRequest(_message.Message):
    __slots__ = ("seconds",)
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: float
    def __init__(self, seconds: _Optional[float] = ...) -> None: ...
