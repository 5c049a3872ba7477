"""Proto comments by full name, read from the descriptors' source info (pure).

The compiler keeps ``source_code_info`` (``--include_source_info``), where each comment is
filed under a *path* of field numbers and indexes into the FileDescriptorProto. This
module walks each file once and turns those paths into the names the document builder
knows: ``pkg.Message``, ``pkg.Message.field``, ``pkg.Enum``, ``pkg.Enum.VALUE``,
``pkg.Service`` and ``pkg.Service.Method``. A file loaded without source info (a
descriptor set built without it) simply has no comments.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import descriptor_pb2

# Field numbers in descriptor.proto that make up source-info paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE = 2
_SERVICE_METHOD = 2


def _clean(text: str) -> str:
    """Strip the one space protoc leaves after ``//`` and the surrounding blank lines."""
    lines = [line[1:] if line.startswith(" ") else line for line in text.splitlines()]
    return "\n".join(lines).strip()


class Comments:
    """Full name -> the leading comment (else the trailing one) of that declaration."""

    def __init__(self, files: Mapping[str, descriptor_pb2.FileDescriptorProto]) -> None:
        self._by_name: dict[str, str] = {}
        for file in files.values():
            self._index_file(file)

    def get(self, full_name: str) -> str | None:
        return self._by_name.get(full_name)

    def _index_file(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        by_path: dict[tuple[int, ...], str] = {}
        for location in file.source_code_info.location:
            text = _clean(location.leading_comments or location.trailing_comments)
            if text:
                by_path[tuple(location.path)] = text
        if not by_path:
            return
        prefix = f"{file.package}." if file.package else ""

        def note(path: tuple[int, ...], name: str) -> None:
            text = by_path.get(path)
            if text is not None:
                self._by_name[name] = text

        def enum(
            proto: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], name: str
        ) -> None:
            note(path, name)
            for index, value in enumerate(proto.value):
                note((*path, _ENUM_VALUE, index), f"{name}.{value.name}")

        # messages nest (a descriptor set or a reflected file may nest them ~100 deep):
        # walked from a work list, not by recursion
        messages: list[tuple[descriptor_pb2.DescriptorProto, tuple[int, ...], str]] = [
            (message_proto, (_FILE_MESSAGE, index), prefix + message_proto.name)
            for index, message_proto in enumerate(file.message_type)
        ]
        while messages:
            proto, path, name = messages.pop()
            note(path, name)
            for index, field in enumerate(proto.field):
                note((*path, _MESSAGE_FIELD, index), f"{name}.{field.name}")
            for index, oneof in enumerate(proto.oneof_decl):
                note((*path, _MESSAGE_ONEOF, index), f"{name}.{oneof.name}")
            for index, nested in enumerate(proto.nested_type):
                messages.append((nested, (*path, _MESSAGE_NESTED, index), f"{name}.{nested.name}"))
            for index, enum_proto in enumerate(proto.enum_type):
                enum(enum_proto, (*path, _MESSAGE_ENUM, index), f"{name}.{enum_proto.name}")
        for index, enum_proto in enumerate(file.enum_type):
            enum(enum_proto, (_FILE_ENUM, index), prefix + enum_proto.name)
        for index, service in enumerate(file.service):
            name = prefix + service.name
            note((_FILE_SERVICE, index), name)
            for number, method in enumerate(service.method):
                note((_FILE_SERVICE, index, _SERVICE_METHOD, number), f"{name}.{method.name}")
