"""Monitoring a sweep: seed 000's slowdown alert within a run, and each point against the last run.

Slowdown alert: flag a run when points are > 20% slower than baseline three times in a row.

Baseline: the `baseline_seconds` given, or else the median wall time of the first
`baseline_points` ok points the monitor sees (points already done in the store count
first, in the order they finished, so a resumed sweep keeps its baseline). Those first
points set the baseline and are not themselves judged. Every later ok point is slow when
`seconds > (1 + threshold) * baseline`; `consecutive` slow points in a row raise one alert
and start a new streak; a point at or under the bound ends the streak. Failed points are
not observed (their time says nothing about generation speed).

>>> monitor = SlowdownMonitor(baseline_points=3)
>>> alerts = [monitor.observe(f"p{i}", s) for i, s in enumerate([1.0, 1.0, 1.0, 1.3, 1.5, 1.1, 1.3, 1.3, 1.3])]
>>> [a.point_ids for a in alerts if a]
[['p6', 'p7', 'p8']]
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

import pandas as pd


@dataclasses.dataclass(frozen=True)
class SlowdownAlert:
    """`consecutive` points in a row each more than `threshold` slower than the baseline."""

    point_ids: list[str]
    seconds: list[float]
    baseline_seconds: float
    threshold: float

    def __str__(self) -> str:
        ratios = ", ".join(f"{s / self.baseline_seconds:.2f}x" for s in self.seconds)
        return (f"slowdown: {len(self.point_ids)} points in a row > {1 + self.threshold:.2f}x the baseline "
                f"{self.baseline_seconds:#.3g} s ({ratios}): {', '.join(self.point_ids)}")


class SlowdownMonitor:
    """Feed ok points' wall times in the order they finish; `observe` returns an alert or None."""

    def __init__(self, baseline_seconds: float | None = None, baseline_points: int = 3,
                 threshold: float = 0.2, consecutive: int = 3):
        if baseline_seconds is not None and not baseline_seconds > 0:
            raise ValueError(f"baseline_seconds={baseline_seconds} must be > 0")
        if baseline_points < 1:
            raise ValueError(f"baseline_points={baseline_points} must be >= 1")
        if consecutive < 1:
            raise ValueError(f"consecutive={consecutive} must be >= 1")
        self.baseline_seconds = baseline_seconds
        self.baseline_points, self.threshold, self.consecutive = baseline_points, threshold, consecutive
        self._first: list[float] = []
        self._streak: list[tuple[str, float]] = []
        self.alerts: list[SlowdownAlert] = []

    def warm_up(self, seconds: list[float]) -> None:
        """Times of points finished before this run: they only help set the baseline."""
        for s in seconds:
            self._learn(s)

    def _learn(self, seconds: float) -> bool:
        """Count `seconds` toward the baseline; True while the baseline is still being set."""
        if self.baseline_seconds is not None:
            return False
        self._first.append(seconds)
        if len(self._first) == self.baseline_points:
            self.baseline_seconds = statistics.median(self._first)
        return True

    def observe(self, point_id: str, seconds: float) -> SlowdownAlert | None:
        if self._learn(seconds):
            return None
        if seconds <= (1 + self.threshold) * self.baseline_seconds:
            self._streak = []
            return None
        self._streak.append((point_id, seconds))
        if len(self._streak) < self.consecutive:
            return None
        alert = SlowdownAlert([p for p, _ in self._streak], [s for _, s in self._streak],
                              self.baseline_seconds, self.threshold)
        self._streak = []
        self.alerts.append(alert)
        return alert


HISTORY = "history.jsonl"  # one line a run_sweep call, in the store's root


def points_table(points, results: dict) -> pd.DataFrame:
    """One row a point a sweep call ran (in grid order): its id, index, status, attempts, wall time
    (its share of the batch when batched), peak memory and batch size."""
    rows = [{"point_id": p.point_id, "index": p.index, "status": r.status, "attempts": r.attempts,
             "wall_time_s": r.wall_time_s, "peak_memory_bytes": r.peak_memory_bytes, "batch_size": r.batch_size}
            for p in points if (r := results.get(p.point_id)) is not None]
    return pd.DataFrame(rows, columns=["point_id", "index", "status", "attempts", "wall_time_s",
                                       "peak_memory_bytes", "batch_size"])


def compare_with_last_run(report, root: str | Path, ratio: float = 1.5, executor: str = "") -> None:
    """Flag the points of `report` slower than the last run of the same sweep allows, then append
    this run to the store's history.

    A point's reference is its own time in the last run that computed it, else the median time
    of the points the last run computed. `time_ratio` = time / reference; `regression` when it is
    over `ratio`. Only ok points are judged. Sets report.points' last_run_wall_time_s, time_ratio
    and regression columns, report.regressions and report.last_run.
    """
    path = Path(root) / HISTORY
    runs = _read_history(path, report.name)
    last = next((r for r in reversed(runs) if r["points"]), None)
    table = report.points
    reference = []
    for row in table.itertuples():
        own = None if last is None else last["points"].get(row.point_id)
        reference.append(own if own is not None else (last["median_wall_time_s"] if last is not None else None))
    table["last_run_wall_time_s"] = reference
    table["time_ratio"] = [w / r if r else None for w, r in zip(table["wall_time_s"], reference)]
    table["regression"] = [s == "ok" and q is not None and q > ratio for s, q in zip(table["status"], table["time_ratio"])]
    report.regressions = list(table.loc[table["regression"], "point_id"])
    report.last_run = last
    ok = table[table["status"] == "ok"]
    entry = {"sweep": report.name, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "executor": executor, "computed": report.computed, "failed": report.failed,
             "median_wall_time_s": float(ok["wall_time_s"].median()) if len(ok) else None,
             "points": {pid: float(w) for pid, w in zip(ok["point_id"], ok["wall_time_s"])}}
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with path.open("a") as fh:  # one line a run; a torn last line is skipped when read, and ended here
        fh.write(("\n" if torn else "") + json.dumps(entry) + "\n")


def _read_history(path: Path, sweep: str) -> list[dict]:
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            run = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(run, dict) and run.get("sweep") == sweep and isinstance(run.get("points"), dict):
            runs.append(run)
    return runs
