"""The data folder is private (docs/reliability.md C-29): it holds the SQLite database, raw
mail, attachments, the broker's messages and, outside production, generated keys, so only the
user Relay runs as may read it. Folders are 0700 and files 0600, whatever the umask.

Settings call ``private_dir`` on the data folder and its embedded parts at every start (so an
existing folder made world-readable by an older version is closed at once: nobody else can
even enter it); ``tighten_tree`` (``manage.py secure_data_dir``, run by bin/run) walks it and
fixes every file and folder inside. No Django imports: crm/settings.py uses it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600

log = logging.getLogger(__name__)


def _chmod(path: Path | str, mode: int) -> bool:
    """Set ``mode`` if group or others have any access; True when it changed something. A
    folder we do not own (a volume mounted by root) is left as it is."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
            return False
        os.chmod(path, mode)
        return True
    except FileNotFoundError:
        return False
    except PermissionError:
        log.warning("cannot make %s private: not its owner", path)
        return False


def make_dirs(path: Path | str) -> None:
    """``mkdir -p`` where every folder it creates is 0700 (os.makedirs gives the mode to the
    last one only)."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:  # a concurrent writer made it
            pass


def private_dir(path: Path | str, *, create: bool = True) -> Path:
    """Create ``path`` (and its missing parents) as 0700, or tighten it if it exists. With
    ``create=False`` (production, which makes no folders of its own) only the latter."""
    path = Path(path)
    if not create and not path.is_dir():
        return path
    try:
        make_dirs(path)
    except PermissionError:
        log.warning("cannot create %s", path)
        return path
    _chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path | str) -> Path:
    """Create ``path`` empty as 0600 if it is missing (so whatever opens it next, SQLite for
    one, keeps that mode for the file and the journals it derives from it), else tighten it."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE))
    except FileExistsError:
        _chmod(path, PRIVATE_FILE)
    except (FileNotFoundError, PermissionError):
        pass  # its folder is not ours to write: whoever made it decides
    return path


def write_private(path: Path | str, text: str) -> None:
    """Write a new file readable by its owner only from the first byte (no chmod after the
    fact, which would leave a moment when it is world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def tighten_tree(root: Path | str) -> int:
    """Make every folder under ``root`` 0700 and every file 0600; returns how many changed.
    Symbolic links are neither followed nor changed."""
    changed = 0
    root = Path(root)
    if not root.is_dir():
        return 0
    changed += _chmod(root, PRIVATE_DIR)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            changed += _chmod(os.path.join(folder, name), PRIVATE_DIR)
        for name in files:
            changed += _chmod(os.path.join(folder, name), PRIVATE_FILE)
    return changed
