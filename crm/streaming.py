"""Streamed responses under an ASGI server, streamed for real (docs/reliability.md A-04).

Relay runs under uvicorn (bin/run, docker-compose). Django serves a `StreamingHttpResponse`
whose content is a plain (synchronous) iterator there by reading all of it into a list in a
thread first, with the warning "StreamingHttpResponse must consume synchronous iterators": a
50 MB attachment (`FileResponse`), a message's raw source (inbox/views/reading.py) or a static
file (whitenoise) would sit whole in the server's memory before its first byte went out.

`AsyncStreamingMiddleware`, first in MIDDLEWARE, gives such a response an asynchronous
iterator instead, which reads the original one in a worker thread a batch of blocks at a time
(never on the event loop, never more than `BATCH_BYTES` ahead of the client). Under WSGI it
does nothing: the server iterates the response itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest

# Read ahead per thread hop: FileResponse yields 4 KiB blocks, and a hop per block would cost
# more than the read.
BATCH_BYTES = 256 * 1024


def _take(iterator: Iterator[bytes]) -> list[bytes]:
    """The next blocks of `iterator`, up to BATCH_BYTES; empty at its end."""
    batch: list[bytes] = []
    size = 0
    for block in iterator:
        batch.append(block)
        size += len(block)
        if size >= BATCH_BYTES:
            break
    return batch


async def read_in_threads(iterator: Iterator[bytes]) -> AsyncIterator[bytes]:
    # Not thread-sensitive: a file read must not queue behind (or hold up) the one thread
    # Django runs the views' database work in.
    take = sync_to_async(_take, thread_sensitive=False)
    while batch := await take(iterator):
        for block in batch:
            yield block


class AsyncStreamingMiddleware:
    """Sync-only on purpose: Relay's other middleware is synchronous, so Django would call an
    async-capable one synchronously anyway; the request's class says whether an ASGI server
    will iterate the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            isinstance(request, ASGIRequest)
            and getattr(response, "streaming", False)
            and not response.is_async
        ):
            # The original iterator's closers (the open file) stay registered on the response
            # and run when the server closes it, also after a client went away mid-download.
            response.streaming_content = read_in_threads(response.streaming_content)
        return response
