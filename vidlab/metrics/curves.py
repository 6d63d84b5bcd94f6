"""Consistency-decay curves over seeds, with confidence intervals.

Two curves, each from several videos (one per seed):

- against segment index: a per-frame metric against the anchor (frame 0), averaged over each
  segment's frames (the anchor itself left out) — how consistency decays as segments are chained;
- against frame gap Δt: a metric between frames t and t + Δt, averaged over t.

Each `*_table` returns the long table (one row per seed and x); `summarize_over_seeds` turns it
into mean, std (ddof=1), n and a two-sided Student-t confidence interval (default 95%):
mean ± t_{(1+level)/2, n-1} · std / √n, from `scipy.stats.t`. NaN values (e.g. a segment with no
subject) are left out of n; with n = 1 the std and interval are NaN.

>>> import torch
>>> videos = {seed: torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) for seed in (0, 1, 2)}
>>> curve = gap_curve(videos, gaps=[1, 2], metric="psnr")
>>> list(curve.columns)
['gap', 'mean', 'std', 'n', 'ci_low', 'ci_high']
>>> curve["n"].tolist()
[3, 3]
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from ._checks import check_video
from .color import color_drift
from .image import psnr_anchor, psnr_gap, ssim_anchor, ssim_gap
from .temporal import check_segment_starts
from .world import subject_matches

SEGMENT_METRICS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "ssim": lambda frames: ssim_anchor(frames, 0),
    "psnr": lambda frames: psnr_anchor(frames, 0),
    "color_drift": lambda frames: color_drift(frames, 0),
    "subject_consistency": lambda frames: subject_matches(frames, 0).double(),
}
GAP_METRICS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "ssim": lambda frames, gap: ssim_gap(frames, gap),
    "psnr": lambda frames, gap: psnr_gap(frames, gap),
}


def _as_seed_dict(videos) -> dict:
    """videos: a mapping seed -> video, or a sequence of videos (seeds 0, 1, ...)."""
    items = dict(videos) if isinstance(videos, Mapping) else dict(enumerate(videos))
    if not items:
        raise ValueError("Expected at least one video, got none")
    for seed, frames in items.items():
        check_video(frames, name=f"videos[{seed!r}]", min_frames=2)
    return items


def _metric(metric, table: dict, kind: str):
    if callable(metric):
        return metric
    if metric not in table:
        raise ValueError(f"{kind} metric={metric!r} is not one of {list(table)} (or a callable)")
    return table[metric]


def t_interval(values, level: float = 0.95) -> dict[str, float]:
    """Mean, std (ddof=1), n and the Student-t confidence interval of the finite-or-inf values (NaN dropped).

    >>> round(t_interval([1.0, 2.0, 3.0])["ci_low"], 4)  # 2 - 4.3027 * 1 / sqrt(3)
    -0.4841
    """
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} is not in (0, 1)")
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = x.size
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf((1 + level) / 2, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": n, "ci_low": mean - half, "ci_high": mean + half}


def summarize_over_seeds(table: pd.DataFrame, x: str, value: str = "value", level: float = 0.95) -> pd.DataFrame:
    """Per value of column `x`: mean, std, n and Student-t CI (`level`) of column `value` across rows (seeds)."""
    for column in (x, value):
        if column not in table.columns:
            raise ValueError(f"column {column!r} is not in the table's columns {list(table.columns)}")
    rows = [{x: key, **t_interval(group[value].to_numpy(), level)} for key, group in table.groupby(x, sort=True)]
    out = pd.DataFrame(rows, columns=[x, "mean", "std", "n", "ci_low", "ci_high"])
    out.attrs["ci"] = f"{level:.0%} Student t"
    return out


def segment_table(videos, segment_starts: Sequence[int] | Mapping, metric="ssim") -> pd.DataFrame:
    """Long table (seed, segment, value): a per-frame metric against frame 0, averaged per segment.

    videos: mapping seed -> video (F, 3, H, W), or a sequence (seeds 0, 1, ...). segment_starts:
    frame indices where segments start (frame 0 always starts segment 0), shared by all videos, or a
    mapping seed -> starts. metric: one of SEGMENT_METRICS ("ssim", "psnr", "color_drift",
    "subject_consistency") or a callable frames -> (F,) values against frame 0.
    """
    items = _as_seed_dict(videos)
    per_frame = _metric(metric, SEGMENT_METRICS, "segment")
    rows = []
    for seed, frames in items.items():
        num_frames = frames.shape[0]
        starts = segment_starts[seed] if isinstance(segment_starts, Mapping) else segment_starts
        bounds = sorted(set([0] + check_segment_starts(starts, num_frames))) + [num_frames]
        values = torch.as_tensor(per_frame(frames), dtype=torch.float64).cpu()
        if values.shape != (num_frames,):
            raise ValueError(f"Expected the segment metric to return shape ({num_frames},), got {tuple(values.shape)}")
        for segment, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            chunk = values[max(lo, 1):hi]  # frame 0 is the anchor itself
            value = float(chunk.mean()) if chunk.numel() else math.nan
            rows.append({"seed": seed, "segment": segment, "value": value})
    return pd.DataFrame(rows, columns=["seed", "segment", "value"])


def segment_curve(videos, segment_starts, metric="ssim", level: float = 0.95) -> pd.DataFrame:
    """Metric against segment index over seeds: (segment, mean, std, n, ci_low, ci_high).

    >>> import torch
    >>> videos = [torch.rand(8, 3, 16, 16) for _ in range(3)]
    >>> segment_curve(videos, segment_starts=[0, 4], metric="ssim")["segment"].tolist()
    [0, 1]
    """
    return summarize_over_seeds(segment_table(videos, segment_starts, metric), "segment", level=level)


def gap_table(videos, gaps: Sequence[int] | None = None, metric="ssim") -> pd.DataFrame:
    """Long table (seed, gap, value): a metric between frames t and t + gap, averaged over t.

    gaps: the Δt to evaluate (default 1 .. F - 1 of the shortest video). metric: "ssim", "psnr",
    or a callable (frames, gap) -> values of the pairs.
    """
    items = _as_seed_dict(videos)
    pair_metric = _metric(metric, GAP_METRICS, "gap")
    shortest = min(frames.shape[0] for frames in items.values())
    gaps = list(range(1, shortest)) if gaps is None else list(gaps)
    rows = [{"seed": seed, "gap": gap,
             "value": float(torch.as_tensor(pair_metric(frames, gap), dtype=torch.float64).mean())}
            for seed, frames in items.items() for gap in gaps]
    return pd.DataFrame(rows, columns=["seed", "gap", "value"])


def gap_curve(videos, gaps: Sequence[int] | None = None, metric="ssim", level: float = 0.95) -> pd.DataFrame:
    """Metric against frame gap Δt over seeds: (gap, mean, std, n, ci_low, ci_high)."""
    return summarize_over_seeds(gap_table(videos, gaps, metric), "gap", level=level)
