"""The demo upstream: an in-memory LibraryService served with grpc.aio.

It uses the generated stubs in ``generated/``, as a real upstream would; the gateway in
front of it does not (it reads ``protos/`` at run time).
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from google.api import httpbody_pb2
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from edgedemo.library.v1 import library_pb2 as pb
from edgedemo.library.v1 import library_pb2_grpc as pb_grpc

_ABORT_DETAILS_KEY = "grpc-status-details-bin"
_MAX_INTERVAL_SECONDS = 10.0
_PAGES_PER_PIECE = 100
_MAX_PAGES_PER_PIECE = 10_000
_CSV_COLUMNS = ("name", "title", "author", "genre", "page_count", "tags")
LIBRARIAN = "librarian"
Context = grpc.aio.ServicerContext[Any, Any]


def _genre_name(value: int) -> str:
    """A genre's name, or its number for one this service does not know: proto3 enums are
    open, so a client may store any int32 (the JSON mapping prints such a value as a
    number too); Genre.Name would raise."""
    try:
        name: str = pb.Genre.Name(value)
    except ValueError:
        return str(value)
    return name


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
        token = request.page_token or "0"
        if not token.isascii() or not token.isdigit():  # only ones this service handed out
            await _invalid(context, "page_token", "is not a token from a previous page")
        start = int(token)
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
            stats.books_by_genre[_genre_name(book.genre)] += 1
        return stats

    async def StreamBooks(  # noqa: N802
        self, request: pb.StreamBooksRequest, context: Context
    ) -> AsyncIterator[pb.Book]:
        if not 0 <= request.interval_seconds <= _MAX_INTERVAL_SECONDS:
            await _invalid(
                context, "interval_seconds", f"must be between 0 and {_MAX_INTERVAL_SECONDS:g}"
            )
        books = [
            b
            for b in self._shelf(request.parent)
            if request.genre == pb.GENRE_UNSPECIFIED or b.genre == request.genre
        ]
        for index, book in enumerate(books):
            if index and request.interval_seconds:
                await asyncio.sleep(request.interval_seconds)
            yield book

    async def ExportShelf(  # noqa: N802
        self, request: pb.ExportShelfRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        """The shelf as a CSV file, one book a row: an HttpBody, served as it is."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
        writer.writerow(_CSV_COLUMNS)
        for book in self._shelf(request.parent):
            genre = _genre_name(book.genre)
            tags = ";".join(book.tags)
            writer.writerow((book.name, book.title, book.author, genre, book.page_count, tags))
        return httpbody_pb2.HttpBody(
            content_type="text/csv; charset=utf-8", data=out.getvalue().encode()
        )

    async def DownloadBook(  # noqa: N802
        self, request: pb.DownloadBookRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        """The book's text (made up: a line a page), ``pages_per_piece`` pages a message."""
        if not 0 <= request.interval_seconds <= _MAX_INTERVAL_SECONDS:
            await _invalid(
                context, "interval_seconds", f"must be between 0 and {_MAX_INTERVAL_SECONDS:g}"
            )
        if not 0 <= request.pages_per_piece <= _MAX_PAGES_PER_PIECE:
            await _invalid(
                context, "pages_per_piece", f"must be between 0 and {_MAX_PAGES_PER_PIECE}"
            )
        book = self.books.get(request.name)
        if book is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} does not exist")
        per_piece = request.pages_per_piece or _PAGES_PER_PIECE
        pages = max(book.page_count, 1)
        lines = [f"{book.title}\nby {book.author}\n\n"]
        for start in range(1, pages + 1, per_piece):
            if start > 1 and request.interval_seconds:
                await asyncio.sleep(request.interval_seconds)
            end = min(start + per_piece, pages + 1)
            lines.extend(f"Page {page} of {book.title}.\n" for page in range(start, end))
            yield httpbody_pb2.HttpBody(
                content_type="text/plain; charset=utf-8", data="".join(lines).encode()
            )
            lines = []

    async def ImportBooks(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.CreateBookRequest], context: Context
    ) -> pb.ImportBooksResponse:
        """All or none: every request is checked before any book is added."""
        staged: dict[str, pb.Book] = {}
        index = 0
        async for request in request_iterator:
            where = f"requests[{index}]"
            if not request.parent:
                await _invalid(context, f"{where}.parent", "is required")
            if not request.book.title:
                await _invalid(context, f"{where}.book.title", "is required")
            name = f"{request.parent}/books/{request.book_id or next(self._ids)}"
            if name in self.books or name in staged:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{name} already exists")
            book = pb.Book()
            book.CopyFrom(request.book)
            book.name = name
            book.create_time.CopyFrom(_now())
            staged[name] = book
            index += 1
        self.books.update(staged)
        return pb.ImportBooksResponse(books=staged.values())

    async def Discuss(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.Remark], context: Context
    ) -> AsyncIterator[pb.Remark]:
        """Answer each remark as it comes; a last word once the client half-closes."""
        heard = 0
        shelf = ""
        async for remark in request_iterator:
            if not remark.text.strip():
                await _invalid(context, "text", "is required")
            shelf = remark.shelf or shelf
            yield pb.Remark(shelf=shelf, speaker=LIBRARIAN, text=self._answer(shelf, remark, heard))
            heard += 1
        plural = "" if heard == 1 else "s"
        yield pb.Remark(
            shelf=shelf,
            speaker=LIBRARIAN,
            text=f"Closing time: {heard} remark{plural} heard. Good night.",
        )

    def _shelf(self, shelf: str) -> list[pb.Book]:
        return [b for name, b in sorted(self.books.items()) if name.startswith(shelf + "/")]

    def _answer(self, shelf: str, remark: pb.Remark, heard: int) -> str:
        """A book the remark mentions (by title or author's surname), else a suggestion."""
        books = self._shelf(shelf)
        if not books:
            return f"{shelf or 'This shelf'} is empty; nothing to talk about yet."
        text = remark.text.lower()
        words = set(re.findall(r"[\w']+", text))
        for book in books:
            surname = book.author.split()[-1].lower() if book.author else ""
            if (book.title and book.title.lower() in text) or surname in words:
                about = []
                if book.genre != pb.GENRE_UNSPECIFIED:
                    about.append(_genre_name(book.genre).removeprefix("GENRE_").lower())
                if book.page_count:
                    about.append(f"{book.page_count} pages")
                aside = f" ({', '.join(about)})" if about else ""
                return f"{book.title}, by {book.author}{aside}, is on {shelf}."
        book = books[heard % len(books)]
        return f"Nothing on {shelf} by that name; try {book.title}, by {book.author}."


async def start_library(address: str = "127.0.0.1:0") -> tuple[grpc.aio.Server, int]:
    """Start the demo upstream; returns the server and the port it bound."""
    server = grpc.aio.server()
    pb_grpc.add_LibraryServiceServicer_to_server(Library(), server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
