"""What a finished sweep leaves to look at: `summary.csv` and `summary.png` in its store.

- summary.csv: one row per point of the store (axis values, status, every numeric metric, error),
  and where the `seed` axis repeats a setting, each metric's mean and Student-t interval over the
  seeds that share the point's other axis values (`<metric>_mean`, `<metric>_ci_low`, `_ci_high`,
  `seeds`).
- summary.png: each metric that varies over the store (a panel, its unit on the axis) against the
  first axis that is not the seed (the seed itself when it is the only axis), mean over seeds with
  its band. A metric equal at every point (say `num_frames`) and the per-frame columns
  (`frame_<k>_...`, the frame curves) stay in the CSV: a panel of them would tell nothing.

`run_sweep` writes both (atomically) at the end of every run, a resumed one included; `vidlab
summarize STORE` writes them for an existing store.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..io.atomic import atomic_write_bytes
from ..metrics import t_interval
from .analysis import ok_points, study_table

SUMMARY_CSV, SUMMARY_PNG = "summary.csv", "summary.png"
PER_FRAME = re.compile(r"^frame_\d+_")
SEED_AXIS = "seed"
NOT_METRICS = {"point_id", "strategy", "status", "error", "attempts", "wall_time_s", "peak_memory_bytes",
               "batch_size", "finished_at", "weights_hash"}


def summary_tables(table: pd.DataFrame, level: float = 0.95) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(the per-point summary, its axis columns, its metric columns) of a `study_table`."""
    axes = [a for a in table.attrs.get("axes", []) if a in table.columns]
    metrics = [c for c in table.columns if c not in NOT_METRICS and c not in axes
               and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
    keep = [c for c in ["point_id", *axes, "status", *metrics, "error"] if c in table.columns]
    summary = table[keep].copy()
    others = [a for a in axes if a != SEED_AXIS]
    if SEED_AXIS in axes and len(set(table[SEED_AXIS])) > 1:
        ok = ok_points(table)
        groups = ok.groupby(others, dropna=False, sort=False) if others else [((), ok)]
        rows = []
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            row = dict(zip(others, key), seeds=len(group))
            for m in metrics:
                ci = t_interval(group[m].to_numpy(dtype=np.float64), level)
                row.update({f"{m}_mean": ci["mean"], f"{m}_ci_low": ci["ci_low"], f"{m}_ci_high": ci["ci_high"]})
            rows.append(row)
        over_seeds = pd.DataFrame(rows)
        summary = summary.merge(over_seeds, on=others, how="left") if others else summary.assign(
            **over_seeds.iloc[0].to_dict())
    return summary, axes, metrics


def summary_panels(ok: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The metrics summary.png draws: those that vary over the ok points, per-frame columns left out;
    every one with a value where none varies (a one-point sweep still gets its figure)."""
    shown = [m for m in metrics if len(ok) and ok[m].notna().any() and not PER_FRAME.match(m)]
    return [m for m in shown if ok[m].nunique() > 1] or shown


def write_summary(store_dir: str | Path, level: float = 0.95) -> dict[str, Path]:
    """summary.csv and summary.png of the store (see the module doc); returns their paths. A store with no
    point yet gets the CSV (its header) and no plot."""
    store_dir = Path(store_dir)
    table = study_table(store_dir)
    summary, axes, metrics = summary_tables(table, level) if len(table) else (table, [], [])
    paths = {"csv": store_dir / SUMMARY_CSV}
    atomic_write_bytes(paths["csv"], summary.to_csv(index=False).encode())
    ok = ok_points(table) if len(table) else table
    x = next((a for a in axes if a != SEED_AXIS), SEED_AXIS if SEED_AXIS in axes else None)
    plotted = summary_panels(ok, metrics)
    if x is not None and plotted and len(ok):
        from .plots import plot_metric_curves
        from .analysis import curves_over_seeds
        curves = curves_over_seeds(ok, x, plotted, level)
        seeds = ok[SEED_AXIS].nunique() if SEED_AXIS in ok else 1
        fig = plot_metric_curves(curves, x, title=f"{store_dir.name}: mean over {seeds} seed(s), "
                                                 f"{level:.0%} Student-t band")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        paths["png"] = store_dir / SUMMARY_PNG
        atomic_write_bytes(paths["png"], buffer.getvalue())
    return paths
