"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every write goes to a temporary file in the destination's own folder (same filesystem,
so the rename is atomic), is flushed and fsync'ed, then `os.replace`d over the target;
the folder is fsync'ed too so the rename itself survives a power cut. A process killed
mid-write leaves only a temporary file whose name `is_temp` recognizes.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "a.json"
>>> atomic_write_json(target, {"x": 1})
>>> target.read_text()
'{\\n  "x": 1\\n}'
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"  # temporary names are ".tmp-<pid>-<name>"


def temp_path_for(path: Path) -> Path:
    """The temporary sibling a write of `path` goes through (unique per process)."""
    return path.parent / f"{TMP_MARK}{os.getpid()}-{path.name}"


def is_temp(path: Path) -> bool:
    """True for a leftover of an interrupted atomic write."""
    return path.name.startswith(TMP_MARK)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files (`temp_path_for`'s `.tmp-<pid>-<name>`) of processes that no longer run,
    e.g. a killed `vidlab generate`'s, from `folder`; a running process's stay. Returns what was removed."""
    removed = []
    for path in folder.glob(f"{TMP_MARK}*") if folder.is_dir() else []:
        pid = path.name[len(TMP_MARK):].split("-", 1)[0]
        if path.is_file() and pid.isdigit() and not _pid_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | Path):
    """Yield the temporary path to write `path` through; on success it is fsync'ed and moved over `path`
    (a reader sees the old file or the new one), on an error it is removed. For writers that want a
    file name (ffmpeg, safetensors, torch.save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, os.replace)."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj) -> None:
    """`obj` as indented JSON, atomically; values JSON cannot hold are written with str()."""
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())


def atomic_move(src: str | Path, dst: str | Path) -> None:
    """Move a finished file into place (same filesystem), fsync'ing it and the folder."""
    src, dst = Path(src), Path(dst)
    with open(src, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(src, dst)
    fsync_dir(dst.parent)
