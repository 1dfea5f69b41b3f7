"""The upload handler of .mbox/.eml imports (inbox/services/imports.py): the bytes go to a
temporary file on disk as they arrive (Django's TemporaryFileUploadHandler), and once they pass
RELAY_IMPORT_MAX_BYTES nothing more is written: the rest is read and dropped, and the view says
the files are too large (docs/reliability.md I-11)."""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler, SkipFile


class ImportSizeGuard(FileUploadHandler):
    """First in the chain: counts every file's bytes and skips the lot past `limit`."""

    def __init__(self, request, *, limit: int):
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.too_large = False

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > self.limit + 64 * 1024:
            self.too_large = True

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.too_large or self.received > self.limit:
            self.too_large = True
            raise SkipFile
        return raw_data

    def file_complete(self, file_size):
        return None
