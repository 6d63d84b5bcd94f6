"""The results store: one folder per point, written atomically, manifest last.

Layout under the store's root:

    sweep.json                      the spec of the last run_sweep over this store
    points/<point_id>/
        metrics.parquet             one-row table of the point's metrics (status ok)
        video.mp4, video.json       the video and its replay record, when the point made one
        manifest.json               config, status ok/failed, error + traceback, attempts,
                                    wall time, peak memory; written LAST

A point is *done* only when its manifest exists with status "ok": a process killed at
any moment leaves either a done point or one that will be computed again, plus perhaps
temporary files (`.tmp-*`) that readers ignore and `clean_temp` removes.

>>> import tempfile
>>> store = ResultsStore(tempfile.mkdtemp())
>>> store.table().shape
(0, 0)
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import time
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..io.atomic import TMP_MARK, atomic_move, atomic_write_bytes, atomic_write_json, is_temp
from ..io.lock import folder_lock
from .spec import Point


class DiskFullError(UserError, OSError):
    """The store's disk filled during a sweep: what is done is kept, the rest resumes on a rerun."""

MANIFEST = "manifest.json"
METRICS = "metrics.parquet"
VIDEO = "video.mp4"
STATUSES = ("ok", "failed")
REQUIRED_KEYS = ("point_id", "status", "attempts", "config")
SPEC = "sweep.json"
# the temporary names the store's own writes leave behind (atomic.temp_path_for, _save_video's staging)
_OWN_TEMP = re.compile(re.escape(TMP_MARK) + "(?:video|\\d+-(?:"
                       + "|".join(re.escape(n) for n in (MANIFEST, METRICS, VIDEO, "video.json", SPEC)) + "))")


class ResultsStore:
    """A folder of sweep results; safe to read while a sweep writes into it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.points_dir = self.root / "points"
        self.points_dir.mkdir(parents=True, exist_ok=True)

    def point_dir(self, point_id: str) -> Path:
        return self.points_dir / point_id

    # ---- reading -----------------------------------------------------------------
    def read_manifest(self, point_id: str) -> dict | None:
        """The point's manifest, or None when it has none (never started, or killed before the end)."""
        try:
            return json.loads((self.point_dir(point_id) / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def verify(self, point_id: str, videos: bool = True) -> tuple[dict | None, str | None]:
        """(manifest, problem): problem is None for a sound point, else why it cannot be trusted.

        Sound: the manifest parses, has every required key, and for an ok point every file it lists
        has the sha256 the manifest recorded (a manifest without checksums: its metrics must read).
        videos=False checks the metrics file only: what reading a table needs, without hashing MP4s.
        """
        path = self.point_dir(point_id) / MANIFEST
        if not path.exists():
            return None, None
        try:
            manifest = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return None, f"unreadable manifest ({type(err).__name__})"
        if not isinstance(manifest, dict):
            return None, "malformed manifest: not a JSON object"
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing or manifest.get("status") not in STATUSES:
            return None, f"malformed manifest: missing keys {missing}" if missing else \
                f"malformed manifest: status={manifest.get('status')!r}"
        if manifest["status"] != "ok":
            return manifest, None
        for name, digest in (manifest.get("files") or {}).items():
            if not videos and name != METRICS:
                continue
            file = self.point_dir(point_id) / name
            if not file.exists():
                return manifest, f"{name} is missing"
            if _sha256(file.read_bytes()) != digest:
                return manifest, f"{name} does not match its checksum (truncated or changed)"
        if not manifest.get("files") and manifest.get("metrics_file"):
            try:
                self.read_metrics(point_id)
            except Exception as err:  # noqa: BLE001 - pyarrow raises several kinds
                return manifest, f"{METRICS} does not read ({type(err).__name__})"
        return manifest, None

    def is_done(self, point_id: str) -> bool:
        manifest, problem = self.verify(point_id)
        return manifest is not None and problem is None and manifest["status"] == "ok"

    def manifests(self) -> list[dict]:
        """Every sound manifest in the store (ok and failed), in grid order; see `verify` (metrics
        checked, videos not: a sweep run checks those once, before it skips a point)."""
        out = []
        for folder in sorted(self.points_dir.iterdir()):
            if folder.is_dir() and not is_temp(folder):
                manifest, problem = self.verify(folder.name, videos=False)
                if manifest is not None and problem is None:
                    out.append(manifest)
        return sorted(out, key=lambda m: (m.get("index", 0), m["point_id"]))

    def read_metrics(self, point_id: str) -> dict:
        path = self.point_dir(point_id) / METRICS
        if not path.exists():
            return {}
        rows = pd.read_parquet(path).to_dict("records")
        return rows[0] if rows else {}

    def table(self, point_ids: list[str] | None = None, status: str | None = None) -> pd.DataFrame:
        """One row per finished point: point_id, status, axis values, metrics, wall time, memory, attempts, error.

        point_ids: keep only these (in this order); status: keep only "ok" or "failed" points.
        Metrics are read for ok points only; a metric named like a fixed column gets a 'metric.' prefix.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status={status!r} is not one of {list(STATUSES)}")
        manifests = {m["point_id"]: m for m in self.manifests()}
        ids = list(manifests) if point_ids is None else [i for i in point_ids if i in manifests]
        rows = []
        for pid in ids:
            m = manifests[pid]
            if status is not None and m["status"] != status:
                continue
            row = {"point_id": pid, "status": m["status"], **m.get("axis_values", {})}
            fixed = set(row) | {"wall_time_s", "peak_memory_bytes", "attempts", "error"}
            if m["status"] == "ok":
                for k, v in self.read_metrics(pid).items():
                    row[f"metric.{k}" if k in fixed else k] = v
            row.update(wall_time_s=m.get("wall_time_s"), peak_memory_bytes=m.get("peak_memory_bytes"),
                       attempts=m.get("attempts"), error=(m.get("error") or None))
            rows.append(row)
        return pd.DataFrame(rows)

    # ---- writing -----------------------------------------------------------------
    def save(self, point: Point, *, status: str, attempts: int, wall_time_s: float, memory: dict,
             metrics: dict | None = None, video=None, error: str | None = None, traceback: str | None = None,
             weights_hash: str = "", sweep: str = "", extra: dict | None = None) -> dict:
        """Write a point's files, each atomically, the manifest last (with their sha256); returns it.

        extra: more manifest fields (error kind, code identity, ...).
        """
        if status not in STATUSES:
            raise ValueError(f"status={status!r} is not one of {list(STATUSES)}")
        folder = self.point_dir(point.point_id)
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        if metrics is not None:
            buffer = io.BytesIO()
            pd.DataFrame([metrics]).to_parquet(buffer, index=False)
            atomic_write_bytes(folder / METRICS, buffer.getvalue())
            files[METRICS] = _sha256(buffer.getvalue())
        video_file = self._save_video(folder, video) if video is not None else None
        if video_file is not None:
            files.update({name: _sha256((folder / name).read_bytes()) for name in (video_file, "video.json")
                          if (folder / name).exists()})
        manifest = {
            "point_id": point.point_id, "index": point.index, "sweep": sweep, "weights_hash": weights_hash,
            "config": point.config, "axis_values": point.axis_values,
            "status": status, "error": error, "traceback": traceback, "attempts": attempts,
            "wall_time_s": round(wall_time_s, 6), **_memory_fields(memory),
            "metrics_file": METRICS if metrics is not None else None, "video_file": video_file,
            "files": files, **(extra or {}),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_json(folder / MANIFEST, manifest)
        return manifest

    def _save_video(self, folder: Path, video) -> str:
        """Video.save writes the MP4 and its JSON record; both go through a temp folder, then into place."""
        staging = folder / f"{TMP_MARK}video"
        shutil.rmtree(staging, ignore_errors=True)
        mp4 = Path(video.save(staging / VIDEO))
        for produced in sorted(staging.iterdir()):
            if not is_temp(produced):
                atomic_move(produced, folder / produced.name)
        shutil.rmtree(staging, ignore_errors=True)
        return mp4.name

    def write_spec(self, spec) -> None:
        """Keep the spec beside its results (overwritten by each run over this store)."""
        atomic_write_json(self.root / SPEC, spec.model_dump(mode="json"))

    @contextlib.contextmanager
    def exclusive(self):
        """Hold the store's lock file while a sweep runs: a second sweep on the same store is an error
        (`io.lock.FolderLockedError`). An OS lock, so a killed sweep releases it with its process."""
        with folder_lock(self.root, "sweep"):
            yield self

    def clean_temp(self) -> list[Path]:
        """Remove leftovers of the store's own interrupted writes; returns what was removed.

        Only names the store itself writes are removed (`.tmp-<pid>-<file>` for its files, and the
        `.tmp-video` staging folder), only in its root and in the point folders; anything else,
        a user's `.tmp-notes` included, stays. Call it only when no sweep is writing into the store.
        """
        removed = []
        folders = [self.root, self.points_dir, *(p for p in self.points_dir.iterdir() if p.is_dir())]
        candidates = [p for folder in folders for p in folder.iterdir() if _OWN_TEMP.fullmatch(p.name)]
        for path in sorted(candidates):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        return removed


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _memory_fields(memory: dict) -> dict:
    return {"peak_memory_bytes": memory.get("peak_memory_bytes"),
            "peak_memory_kind": memory.get("peak_memory_kind"), "memory": memory}
