"""The embedded broker (make run without REDIS_URL): kombu's filesystem transport, with each
task message written whole before a worker can see it.

kombu's own transport (kombu/transport/filesystem.py, 5.x) creates a message's file under its
final name, then locks it and writes the JSON. A worker listing the folder in between moves the
still-empty file away, fails to decode it ("Expecting value: line 1 column 1") and stops with an
unrecoverable error, and `make run` stops with it (bin/run ends the run when any process ends;
celery/kombu#1551). Seen every few minutes of a demo session.

Here a message is written under a name the transport's readers ignore (a leading dot: they take
only ``<stamp>_<uuid>.<queue>.msg``), flushed, and renamed into place, which is atomic within a
folder. A message file that still cannot be read (left by an older version, or a damaged disk)
is logged and set aside in ``<processed_folder>/unreadable`` instead of stopping the worker.
docs/reliability.md I-14.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        queue_find = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != queue_find:
                continue
            path = os.path.join(self.data_folder_in, name)
            taken = os.path.join(self._taken_folder(), name)
            try:
                # Whoever moves it first owns it (several workers share the folder).
                shutil.move(path, taken)
            except OSError:
                continue
            try:
                with open(taken, "rb") as file:
                    payload = file.read()
            except OSError as exc:
                raise ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            try:
                message = loads(bytes_to_str(payload))
            except ValueError:
                self._set_aside(taken, name, len(payload))
                continue
            if not self.store_processed:
                os.remove(taken)
            return message
        raise Empty()

    def _taken_folder(self) -> str:
        if self.store_processed:
            return self.processed_folder
        # Same file system as the queue folder, so the move is a rename and never a copy.
        folder = os.path.join(self.processed_folder, "taken")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        return folder

    def _set_aside(self, taken: str, name: str, size: int) -> None:
        folder = os.path.join(self.processed_folder, "unreadable")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.replace(taken, os.path.join(folder, name))
        logger.error(
            "broker message unreadable, set aside: file=%s bytes=%d folder=%s",
            name,
            size,
            folder,
        )


class Transport(filesystem.Transport):
    Channel = Channel
