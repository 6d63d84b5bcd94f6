"""Seed 000's slowdown alert: flag a run when points are > 20% slower than baseline three times in a row.

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
import statistics


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
