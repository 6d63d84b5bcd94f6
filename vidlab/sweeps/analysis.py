"""Tables the notebooks read off a study's results: curves over seeds, the trade-off, decay, a comparison.

All take the table of `run_study` (or `study_table(store_dir)`): one row per point, with the
axis values, `status`, the metrics of `measure_point`, and `error`. Failed points are left out of
every mean and reported by `strategy_summary`; intervals are Student-t over seeds
(`vidlab.metrics.summarize_over_seeds`).

>>> table = pd.DataFrame({"status": ["ok"] * 4, "x": [0, 0, 1, 1], "ssim": [0.8, 0.9, 0.95, 0.97]})
>>> curves_over_seeds(table, "x", ["ssim"])[["metric", "x", "mean", "n"]].round(3).values.tolist()
[['ssim', 0, 0.85, 2], ['ssim', 1, 0.96, 2]]
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..metrics import SEED001_DECAY_TABLE, consistency_score_1_to_5, summarize_over_seeds, t_interval
from .store import ResultsStore

SEGMENT_COLUMN = re.compile(r"^segment_(\d+)_(.+)$")


def study_table(store_dir: str | Path) -> pd.DataFrame:
    """Every point in a results store with its `strategy`; `attrs["axes"]` lists the axis columns in order."""
    store = ResultsStore(store_dir)
    manifests = store.manifests()
    table = store.table()
    if len(table):
        strategy = {m["point_id"]: m["config"]["strategy"] for m in manifests}
        table.insert(1, "strategy", table["point_id"].map(strategy))
    table.attrs["axes"] = list(dict.fromkeys(k for m in manifests for k in m.get("axis_values", {})))
    table.attrs["store"] = str(store.root)
    return table


def ok_points(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["status"] == "ok"] if "status" in table else table


def curves_over_seeds(table: pd.DataFrame, x: str, metrics: Sequence[str], level: float = 0.95) -> pd.DataFrame:
    """Long table (metric, x, mean, std, n, ci_low, ci_high): each metric against `x`, over the ok points."""
    ok = ok_points(table)
    missing = [m for m in [x, *metrics] if m not in ok.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the table's columns {list(ok.columns)}")
    parts = [summarize_over_seeds(ok, x, value=m, level=level).assign(metric=m) for m in metrics]
    out = pd.concat(parts, ignore_index=True)
    return out[["metric", x, "mean", "std", "n", "ci_low", "ci_high"]]


# ---- 02: freeze against flicker -------------------------------------------------------------------
def freeze_flicker_table(table: pd.DataFrame, x: str = "options.controlnet_conditioning_scale",
                         level: float = 0.95) -> pd.DataFrame:
    """Per value of `x`: frame_change_255 (mean |frame i+1 - frame i| in 0-255 over the steady pairs, from
    VBench's flicker score: 255 x (1 - flicker_steady); not called 'flicker', which is the 0-1 score
    everywhere else) and frozen (1 - change_followed).

    Seed 002's trade-off: too little control flickers, too much freezes the video (a prompt change
    is not followed). Both with their Student-t interval over seeds; lower is better for both.
    """
    ok = ok_points(table).assign(frame_change_255=lambda t: 255 * (1 - t["flicker_steady"]),
                                 frozen=lambda t: 1 - t["change_followed"])
    rows = []
    for value, group in ok.groupby(x, sort=True):
        row = {x: value, "n": len(group)}
        for name in ("frame_change_255", "frozen"):
            ci = t_interval(group[name].to_numpy(), level)
            row.update({name: ci["mean"], f"{name}_ci_low": ci["ci_low"], f"{name}_ci_high": ci["ci_high"]})
        rows.append(row)
    return pd.DataFrame(rows)


# ---- 03: consistency decay against segment count -------------------------------------------------
def seed001_score(num_segments: int) -> tuple[float, str | None]:
    """Seed 001's 1-5 score for a segment count and its relation ('=' or '<'), or (NaN, None) if it has none.

    >>> seed001_score(4), seed001_score(9), seed001_score(3)
    ((4.3, '='), (3.0, '<'), (nan, None))
    """
    rows = sorted(SEED001_DECAY_TABLE, key=lambda r: r["min_segments"])
    for row in rows:
        if row["min_segments"] == num_segments or (row["relation"] == "<" and num_segments >= row["min_segments"]):
            return row["score"], row["relation"]
    return math.nan, None


def decay_table(table: pd.DataFrame, x: str = "options.num_segments", level: float = 0.95) -> pd.DataFrame:
    """One row per segment count: our subject consistency and its 1-5 score (with CI) beside seed 001's.

    score_1_to_5 = consistency_score_1_to_5(subject_consistency) per video, then averaged over
    seeds (the map is linear); its Student-t interval is clipped to the scale, [1, 5]. Also the mean
    SSIM and colour drift against frame 0.
    """
    ok = ok_points(table)
    rows = []
    for n, group in ok.groupby(x, sort=True):
        ci = t_interval(consistency_score_1_to_5(group["subject_consistency"].to_numpy(dtype=float, copy=True)), level)
        theirs, relation = seed001_score(int(n))
        rows.append({"segments": int(n), "n_seeds": len(group), "frames": int(group["num_frames"].iloc[0]),
                     "subject_consistency": float(group["subject_consistency"].mean()),
                     "score_1_to_5": ci["mean"], "score_ci_low": float(np.clip(ci["ci_low"], 1, 5)),
                     "score_ci_high": float(np.clip(ci["ci_high"], 1, 5)),
                     "ssim_anchor": float(group["ssim_anchor"].mean()),
                     "color_drift": float(group["color_drift"].mean()),
                     "seed001_score": theirs, "seed001_relation": relation})
    return pd.DataFrame(rows)


def segment_index_curves(table: pd.DataFrame, metrics: Sequence[str] = ("ssim", "subject_consistency"),
                         x: str = "options.num_segments", num_segments: int | None = None,
                         level: float = 0.95) -> pd.DataFrame:
    """Long table (metric, segment, mean, std, n, ci_low, ci_high) inside the videos with `num_segments`
    segments (default: the most): each segment's `segment_<k>_<metric>` over seeds."""
    ok = ok_points(table)
    num_segments = int(ok[x].max()) if num_segments is None else num_segments
    videos = ok[ok[x] == num_segments]
    parts = []
    for metric in metrics:
        columns = {int(m.group(1)): c for c in videos.columns
                   if (m := SEGMENT_COLUMN.match(c)) and m.group(2) == metric}
        if videos.empty or not columns:
            raise ValueError(f"no ok point with {x}={num_segments} has segment_<k>_{metric} columns")
        long = pd.DataFrame([{"segment": k, "value": float(value)}
                             for k in sorted(columns) for value in videos[columns[k]]])
        parts.append(summarize_over_seeds(long, "segment", level=level).assign(metric=metric))
    return pd.concat(parts, ignore_index=True)[["metric", "segment", "mean", "std", "n", "ci_low", "ci_high"]]


# ---- 04: strategies side by side -----------------------------------------------------------------
COMPARISON_METRICS = ("attributes_constant", "subject_consistency", "ssim_consecutive", "psnr_consecutive",
                      "flicker", "warp_error", "ssim_anchor", "adherence", "motion_adherence", "wall_time_s")


def strategy_summary(table: pd.DataFrame, strategies: Sequence[str] | None = None,
                     metrics: Sequence[str] = COMPARISON_METRICS) -> pd.DataFrame:
    """One row per strategy: status, points ok / failed, the mean of each metric, the first error.

    status: "ok" (every point made a video), "partial" (some failed), "unavailable" (none did: the
    model lacks a component the strategy needs, or the options do not fit; `error` says which).
    A strategy in `strategies` with no point at all in the table is "not run".
    """
    strategies = list(strategies) if strategies is not None else list(dict.fromkeys(table.get("strategy", [])))
    rows = []
    for name in strategies:
        points = table[table["strategy"] == name] if len(table) else table
        ok = points[points["status"] == "ok"] if len(points) else points
        failed = points[points["status"] == "failed"] if len(points) else points
        status = ("not run" if points.empty else "ok" if failed.empty else
                  "unavailable" if ok.empty else "partial")
        errors = failed["error"].dropna().unique().tolist() if len(failed) else []
        row = {"strategy": name, "status": status, "points_ok": len(ok), "points_failed": len(failed)}
        row.update({m: float(ok[m].mean()) if m in ok and len(ok) else np.nan for m in metrics})
        row["error"] = errors[0] if errors else None
        rows.append(row)
    return pd.DataFrame(rows)


def strategy_intervals(table: pd.DataFrame, strategies: Sequence[str] | None = None,
                       metrics: Sequence[str] = COMPARISON_METRICS, level: float = 0.95) -> pd.DataFrame:
    """Long table (strategy, metric, mean, std, n, ci_low, ci_high): each arm's metric over its ok videos
    (every seed x prompt), with a Student-t interval."""
    ok = ok_points(table)
    strategies = list(strategies) if strategies is not None else list(dict.fromkeys(ok.get("strategy", [])))
    rows = [{"strategy": name, "metric": m, **t_interval(ok.loc[ok["strategy"] == name, m].astype(float), level)}
            for name in strategies for m in metrics if m in ok]
    return pd.DataFrame(rows)


def paired_differences(table: pd.DataFrame, baseline: str, metrics: Sequence[str] = COMPARISON_METRICS,
                       level: float = 0.95) -> pd.DataFrame:
    """Each arm minus `baseline` on the same request (seed and prompt), with a Student-t interval of the
    paired differences; `decided`: 'higher' / 'lower' when the interval excludes 0, else 'not decided'."""
    ok = ok_points(table)
    keys = [k for k in ("seed", "prompt") if k in ok]
    base = ok[ok["strategy"] == baseline].set_index(keys)
    rows = []
    for name in dict.fromkeys(ok["strategy"]):
        if name == baseline:
            continue
        other = ok[ok["strategy"] == name].set_index(keys)
        shared = base.index.intersection(other.index)
        for m in metrics:
            if m not in ok:
                continue
            diff = other.loc[shared, m].astype(float) - base.loc[shared, m].astype(float)
            ci = t_interval(diff, level)
            decided = ("higher" if ci["ci_low"] > 0 else "lower" if ci["ci_high"] < 0 else "not decided")
            rows.append({"strategy": name, "baseline": baseline, "metric": m, **ci, "decided": decided})
    return pd.DataFrame(rows)


def frame_curves(table: pd.DataFrame, metrics: Sequence[str] = ("subject_match", "ssim_prev"),
                 level: float = 0.95) -> pd.DataFrame:
    """Per-frame curves over seeds from `frame_<t>_<metric>` columns: frame, metric, mean, CI, n.

    subject_match: the share of seeds whose frame t shows frame 0's subject (consistency decay);
    ssim_prev: SSIM of frame t with frame t - 1 (a dip at a window seam is a visible jump).
    """
    ok = ok_points(table)
    parts = []
    for metric in metrics:
        columns = sorted((c for c in ok.columns if c.startswith("frame_") and c.endswith(f"_{metric}")),
                         key=lambda c: int(c.split("_")[1]))
        if not columns:
            raise ValueError(f"no frame_<t>_{metric} columns in the table (points made by measure_point have them)")
        long = ok.melt(id_vars=["seed"], value_vars=columns, var_name="column", value_name="value")
        long["frame"] = long["column"].str.split("_").str[1].astype(int)
        parts.append(summarize_over_seeds(long, "frame", level=level).assign(metric=metric))
    return pd.concat(parts, ignore_index=True)


def seam_table(table: pd.DataFrame, metrics: Sequence[str] = ("ssim", "flicker", "warp_error"),
               level: float = 0.95) -> pd.DataFrame:
    """Across-seam against within-window means over seeds, one row per metric, with t intervals."""
    ok = ok_points(table)
    rows = []
    for m in metrics:
        for where in ("across_seam", "within_segment"):
            column = f"{m}_{where}"
            if column in ok:
                rows.append({"metric": m, "where": where, **t_interval(ok[column].dropna(), level)})
    return pd.DataFrame(rows)


# ---- writing ------------------------------------------------------------------------------------
def save_outputs(out_dir: str | Path, **items) -> dict[str, Path]:
    """Write each table as `<name>.csv` and each matplotlib Figure as `<name>.png` under out_dir."""
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, item in items.items():
        if isinstance(item, pd.DataFrame):
            paths[name] = out / f"{name}.csv"
            item.to_csv(paths[name], index=False)
        elif isinstance(item, Figure):
            paths[name] = out / f"{name}.png"
            item.savefig(paths[name], dpi=110)
        else:
            raise TypeError(f"{name}: expected a DataFrame or a matplotlib Figure, got {type(item).__name__}")
    return paths
