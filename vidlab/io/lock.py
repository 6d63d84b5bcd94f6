"""An exclusive lock on an output folder, so two runs never write into one folder at once."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import UserError

LOCK_FILE = ".lock"


class FolderLockedError(UserError, RuntimeError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "run"):
    """Hold `<folder>/.lock` (flock) while the block runs; FolderLockedError naming the folder and the
    holder's pid if another process holds it. An OS lock, so a killed process releases it; where
    flock does not exist (Windows) nothing is locked."""
    folder = Path(folder)
    try:
        import fcntl
    except ImportError:
        yield folder
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise FolderLockedError(f"another {what} is writing into {folder} (lock held by pid "
                                    f"{fh.read().strip() or '?'}); wait for it, or choose another folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield folder
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
