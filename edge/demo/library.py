"""The demo upstream: an in-memory LibraryService served with grpc.aio.

It uses the generated stubs in ``generated/``, as a real upstream would; the gateway in
front of it does not (it reads ``protos/`` at run time).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from edgedemo.library.v1 import library_pb2 as pb
from edgedemo.library.v1 import library_pb2_grpc as pb_grpc

_ABORT_DETAILS_KEY = "grpc-status-details-bin"
Context = grpc.aio.ServicerContext[Any, Any]


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


async def _invalid(context: Context, field: str, problem: str) -> None:
    """Abort with INVALID_ARGUMENT and a google.rpc.BadRequest detail, as Google APIs do."""
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=problem)
            ]
        )
    )
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=f"{field}: {problem}", details=[detail]
    )
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        status.message,
        trailing_metadata=((_ABORT_DETAILS_KEY, status.SerializeToString()),),
    )


class Library(pb_grpc.LibraryServiceServicer):
    def __init__(self) -> None:
        self.books: dict[str, pb.Book] = {}
        self._ids = itertools.count(1)
        for title, author, genre, pages in (
            ("The Left Hand of Darkness", "Ursula K. Le Guin", pb.GENRE_FICTION, 304),
            ("The Guns of August", "Barbara W. Tuchman", pb.GENRE_HISTORY, 511),
            ("The Double Helix", "James D. Watson", pb.GENRE_SCIENCE, 256),
        ):
            name = f"shelves/1/books/{next(self._ids)}"
            self.books[name] = pb.Book(
                name=name,
                title=title,
                author=author,
                genre=genre,
                page_count=pages,
                create_time=_now(),
            )

    async def ListBooks(  # noqa: N802 - gRPC method names
        self, request: pb.ListBooksRequest, context: Context
    ) -> pb.ListBooksResponse:
        if request.page_size < 0:
            await _invalid(context, "page_size", "must not be negative")
        books = [
            b
            for name, b in sorted(self.books.items())
            if name.startswith(request.parent + "/")
            and (request.genre == pb.GENRE_UNSPECIFIED or b.genre == request.genre)
        ]
        start = int(request.page_token or 0)
        size = request.page_size or 50
        page = books[start : start + size]
        token = str(start + size) if start + size < len(books) else ""
        return pb.ListBooksResponse(books=page, next_page_token=token)

    async def GetBook(  # noqa: N802
        self, request: pb.GetBookRequest, context: Context
    ) -> pb.Book:
        book = self.books.get(request.name)
        if book is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} does not exist")
        return book

    async def CreateBook(  # noqa: N802
        self, request: pb.CreateBookRequest, context: Context
    ) -> pb.Book:
        if not request.book.title:
            await _invalid(context, "book.title", "is required")
        name = f"{request.parent}/books/{request.book_id or next(self._ids)}"
        if name in self.books:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{name} already exists")
        book = pb.Book()
        book.CopyFrom(request.book)
        book.name = name
        book.create_time.CopyFrom(_now())
        self.books[name] = book
        return book

    async def UpdateBook(  # noqa: N802
        self, request: pb.UpdateBookRequest, context: Context
    ) -> pb.Book:
        book = self.books.get(request.book.name)
        if book is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.book.name} does not exist")
        paths = list(request.update_mask.paths) or [
            f.name for f, _ in request.book.ListFields() if f.name != "name"
        ]
        fields = pb.Book.DESCRIPTOR.fields_by_name
        for path in paths:
            if path not in fields or path in ("name", "create_time"):
                await _invalid(context, "update_mask", f"cannot update {path!r}")
            book.ClearField(path)
            value = getattr(request.book, path)
            if fields[path].is_repeated:
                getattr(book, path).extend(value)
            elif fields[path].message_type is not None:
                if request.book.HasField(path):
                    getattr(book, path).CopyFrom(value)
            else:
                setattr(book, path, value)
        return book

    async def DeleteBook(  # noqa: N802
        self, request: pb.DeleteBookRequest, context: Context
    ) -> empty_pb2.Empty:
        if self.books.pop(request.name, None) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} does not exist")
        return empty_pb2.Empty()

    async def PublishBook(  # noqa: N802
        self, request: pb.PublishBookRequest, context: Context
    ) -> pb.PublishBookResponse:
        book = self.books.get(request.name)
        if book is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} does not exist")
        if book.HasField("publish_time"):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{request.name} is published")
        when = request.publish_time if request.HasField("publish_time") else _now()
        book.publish_time.CopyFrom(when)
        return pb.PublishBookResponse(book=book, publish_time=when)

    async def GetShelfStats(  # noqa: N802
        self, request: pb.GetShelfStatsRequest, context: Context
    ) -> pb.ShelfStats:
        prefix = f"shelves/{request.shelf}/books/"
        books = [b for name, b in self.books.items() if name.startswith(prefix)]
        stats = pb.ShelfStats(shelf=request.shelf, book_count=len(books))
        for book in books:
            stats.books_by_genre[pb.Genre.Name(book.genre)] += 1
        return stats


async def start_library(address: str = "127.0.0.1:0") -> tuple[grpc.aio.Server, int]:
    """Start the demo upstream; returns the server and the port it bound."""
    server = grpc.aio.server()
    pb_grpc.add_LibraryServiceServicer_to_server(Library(), server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
