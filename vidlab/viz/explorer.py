"""An explorer over a results store: pick a point by its axis values, see its frames and metrics.

`explore_sweep(store_dir)` returns a `SweepExplorer`. Shown in a notebook it is an ipywidgets
panel (a slider or dropdown per axis with more than one value, the chosen point's frames and
metrics below); every display also carries a static rendering of the first point (PNG + HTML
table), which is what a frontend without widgets — papermill, nbconvert, a text console — shows.
Without ipywidgets installed it is the static rendering alone.

>>> explorer = explore_sweep("results/02_control_strength_sweep/store")            # doctest: +SKIP
>>> explorer.axes                                                                  # doctest: +SKIP
['options.controlnet_conditioning_scale', 'seed']
>>> explorer.figure(**{"options.controlnet_conditioning_scale": 1.5, "seed": 1})    # doctest: +SKIP
<Figure size ... with 9 Axes>
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from matplotlib.figure import Figure

DEFAULT_METRICS = ("ssim_consecutive", "psnr_consecutive", "flicker", "warp_error", "ssim_anchor", "color_drift",
                   "adherence", "subject_consistency", "subject_consistency_1_to_5", "change_followed",
                   "flicker_steady", "ssim_steady", "wall_time_s")


class SweepExplorer:
    """Points of one results store, addressable by their axis values (see the module docstring)."""

    def __init__(self, table: pd.DataFrame, store_dir: str | Path, axes: Sequence[str],
                 metrics: Sequence[str] = DEFAULT_METRICS, max_frames: int = 8):
        missing = [a for a in axes if a not in table.columns]
        if missing:
            raise ValueError(f"axes {missing} are not columns of the store's table {list(table.columns)}")
        if table.empty:
            raise ValueError(f"the results store {store_dir} has no finished point to explore")
        self.table, self.store_dir, self.axes = table, Path(store_dir), list(axes)
        self.metrics = [m for m in metrics if m in table.columns]
        self.max_frames = max_frames

    # ---- choosing a point ---------------------------------------------------------------------
    def values(self, axis: str) -> list:
        """The axis's values, sorted."""
        return sorted(self.table[axis].dropna().unique().tolist())

    @property
    def first(self) -> dict:
        return {axis: self.values(axis)[0] for axis in self.axes}

    def select(self, **axis_values) -> pd.Series | None:
        """The point (a table row) with these axis values (unnamed axes: their first value); None if none."""
        unknown = sorted(set(axis_values) - set(self.axes))
        if unknown:
            raise ValueError(f"{unknown} are not axes of this explorer; axes: {self.axes}")
        chosen = {**self.first, **axis_values}
        mask = pd.Series(True, index=self.table.index)
        for axis, value in chosen.items():
            mask &= self.table[axis] == value
        rows = self.table[mask]
        return rows.iloc[0] if len(rows) else None

    def frames(self, row: pd.Series) -> torch.Tensor | None:
        """The point's frames (F, 3, H, W), read back from its MP4 (lossy: metrics come from the store)."""
        from ..sweeps.store import VIDEO
        from ..io import read_mp4

        path = self.store_dir / "points" / row["point_id"] / VIDEO
        return read_mp4(path)[0] if path.exists() else None

    # ---- static rendering ---------------------------------------------------------------------
    def metrics_table(self, **axis_values) -> pd.DataFrame:
        """(metric, value) of the chosen point; a failed point shows its status and error."""
        row = self.select(**axis_values)
        if row is None:
            return pd.DataFrame({"metric": ["status"], "value": ["no point with these values"]})
        names = ["status"] + (self.metrics if row["status"] == "ok" else ["error"])
        return pd.DataFrame({"metric": names, "value": [row.get(n) for n in names]})

    def figure(self, **axis_values) -> Figure:
        """The chosen point's frames (up to max_frames, evenly spaced) above its metrics."""
        row = self.select(**axis_values)
        frames = self.frames(row) if row is not None and row["status"] == "ok" else None
        n = 0 if frames is None else min(frames.shape[0], self.max_frames)
        fig = Figure(figsize=(max(1.5 * n, 6.0), 3.6))
        grid = fig.add_gridspec(2, max(n, 1), height_ratios=[1.0, 0.9])
        if frames is not None:
            for slot, i in enumerate(torch.linspace(0, frames.shape[0] - 1, n).round().long().tolist()):
                ax = fig.add_subplot(grid[0, slot])
                ax.imshow(frames[i].permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_title(f"frame {i}", fontsize=7)
                ax.axis("off")
        text = fig.add_subplot(grid[1, :])
        text.axis("off")
        text.text(0, 1, _metrics_text(self.metrics_table(**axis_values)), va="top", family="monospace", fontsize=7)
        fig.suptitle(_title({**self.first, **axis_values}), fontsize=9)
        return fig

    def static_bundle(self, **axis_values) -> dict:
        """A display bundle of the chosen point: PNG, an HTML table with the image, and text."""
        buffer = io.BytesIO()
        self.figure(**axis_values).savefig(buffer, format="png", dpi=90)
        png = base64.b64encode(buffer.getvalue()).decode("ascii")
        table = self.metrics_table(**axis_values)
        title = _title({**self.first, **axis_values})
        page = (f"<div><b>{html.escape(title)}</b><br><img src='data:image/png;base64,{png}'/>"
                f"{table.to_html(index=False)}</div>")
        return {"image/png": png, "text/html": page, "text/plain": f"{title}\n{_metrics_text(table)}"}

    # ---- interactive --------------------------------------------------------------------------
    def widget(self):
        """An ipywidgets VBox: a control per axis with several values, the chosen point's rendering below."""
        import ipywidgets as widgets

        controls = {}
        for axis in self.axes:
            values = self.values(axis)
            if len(values) < 2:
                continue
            options = [(f"{v:g}" if isinstance(v, float) else str(v), v) for v in values]
            common = dict(options=options, value=values[0], description=axis.split(".")[-1],
                          style={"description_width": "initial"})
            controls[axis] = (widgets.SelectionSlider(continuous_update=False, **common)
                              if all(isinstance(v, (int, float)) for v in values) else widgets.Dropdown(**common))
        out = widgets.Output()

        def show(_change=None):
            chosen = {axis: c.value for axis, c in controls.items()}
            out.outputs = ({"output_type": "display_data", "data": self.static_bundle(**chosen), "metadata": {}},)

        for control in controls.values():
            control.observe(show, names="value")
        show()
        return widgets.VBox([*controls.values(), out])

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.static_bundle()
        try:
            bundle.update({k: v for k, v in self.widget()._repr_mimebundle_().items() if k != "text/plain"})
        except ImportError:  # no ipywidgets: the static rendering alone
            pass
        return bundle


def explore_sweep(store_dir: str | Path, axes: Sequence[str] | None = None,
                  metrics: Sequence[str] = DEFAULT_METRICS, max_frames: int = 8) -> SweepExplorer:
    """An explorer over the points of a results store (axes: the sweep axes, plus `strategy` when it varies)."""
    from ..sweeps.analysis import study_table

    table = study_table(store_dir)
    if axes is None:
        axes = list(table.attrs["axes"])
        if "strategy" in table and table["strategy"].nunique() > 1:
            axes.insert(0, "strategy")
    return SweepExplorer(table, store_dir, axes, metrics, max_frames)


def _title(chosen: dict) -> str:
    return ", ".join(f"{axis.split('.')[-1]}={value}" for axis, value in chosen.items())


def _metrics_text(table: pd.DataFrame) -> str:
    lines = []
    for name, value in zip(table["metric"], table["value"]):
        shown = f"{value:.4g}" if isinstance(value, float) and not math.isnan(value) else str(value)
        lines.append(f"{name:<28} {shown}")
    return "\n".join(lines)
