"""Figures of the studies (notebooks 02-04): curves with bands, the freeze/flicker trade-off, decay
beside seed 001, strategies side by side. Each takes a table from `vidlab.sweeps.analysis`
and returns a matplotlib Figure (no plt.show, no global state)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


# what a metric can be, so a confidence band never shows a value it cannot take (an SSIM band past 1),
# and the unit its axis names; by name prefix, the first match wins
METRIC_SCALES = (
    ("ssim", (-1.0, 1.0), "SSIM, 1 = identical"),
    ("psnr", (0.0, None), "PSNR (dB)"),
    ("flicker", (0.0, 1.0), "flicker score, 1 = none"),
    ("frame_change_255", (0.0, 255.0), "mean |Δframe| (0-255)"),
    ("warp_error_valid_fraction", (0.0, 1.0), "share of pixels with valid flow (0-1)"),
    ("warp_error", (0.0, None), "warp error (pixel values in 0-1)"),
    ("adherence", (0.0, 1.0), "prompt adherence (0-1, 1 = all read right)"),
    ("schedule_adherence", (0.0, 1.0), "adherence to each frame's prompt (0-1)"),
    ("change_followed", (0.0, 1.0), "frames showing the change (0-1)"),
    ("color_drift", (0.0, None), "colour drift (ΔE, CIE76)"),
    ("subject_consistency_1_to_5", (1.0, 5.0), "subject consistency (1-5)"),
    ("score_1_to_5", (1.0, 5.0), "score (1-5)"),
)


def metric_scale(metric: str) -> tuple[tuple[float | None, float | None], str]:
    """((lowest, highest) a metric can take, None where open; its axis label with unit) by name prefix.

    >>> metric_scale("ssim_anchor")
    ((-1.0, 1.0), 'SSIM, 1 = identical')
    """
    for prefix, bounds, label in METRIC_SCALES:
        if metric.startswith(prefix):
            return bounds, label
    return (None, None), metric


def _band(ax, part: pd.DataFrame, x: str, y: str = "mean", low: str = "ci_low", high: str = "ci_high",
          label: str | None = None, color=None, bounds: tuple[float | None, float | None] = (None, None)):
    """The mean curve and its confidence band, the band clipped to `bounds` (what the metric can take)."""
    part = part.sort_values(x)
    line, = ax.plot(part[x], part[y], marker="o", ms=3, label=label, color=color)
    if low in part and high in part:
        ax.fill_between(part[x], part[low].clip(*bounds), part[high].clip(*bounds), alpha=0.2, color=line.get_color())
    return line


def plot_metric_curves(curves: pd.DataFrame, x: str, metrics: Sequence[str] | None = None,
                       xlabel: str | None = None, title: str | None = None, ncols: int = 3) -> Figure:
    """One panel per metric of a `curves_over_seeds` table: mean against x with its confidence band."""
    metrics = list(metrics) if metrics is not None else list(dict.fromkeys(curves["metric"]))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(3.4 * min(ncols, len(metrics)), 2.6 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, min(ncols, len(metrics)), squeeze=False)).ravel()
    for ax, metric in zip(axes, metrics):
        bounds, unit = metric_scale(metric)
        _band(ax, curves[curves["metric"] == metric], x, bounds=bounds)
        ax.set_title(metric, fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xlabel(xlabel or x, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(metrics):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_freeze_flicker(tradeoff: pd.DataFrame, x: str = "options.controlnet_conditioning_scale",
                        xlabel: str = "control strength") -> Figure:
    """Left: frame change (flicker, 0-255) and frozen fraction against `x` (twin axes, bands); right: frozen
    against frame change."""
    fig = Figure(figsize=(9, 3.3))
    left, right = fig.subplots(1, 2)
    twin = left.twinx()
    a = _band(left, tradeoff, x, "frame_change_255", "frame_change_255_ci_low", "frame_change_255_ci_high",
              "frame change, steady pairs (0-255)", "tab:blue")
    b = _band(twin, tradeoff, x, "frozen", "frozen_ci_low", "frozen_ci_high", "frozen (change not followed)",
              "tab:red")
    left.set_xlabel(xlabel)
    left.set_ylabel("mean |Δframe|, steady pairs (0-255)")
    twin.set_ylabel("frozen fraction")
    twin.set_ylim(-0.05, 1.05)
    left.legend([a, b], [a.get_label(), b.get_label()], fontsize=7, loc="upper center")
    right.plot(tradeoff["frame_change_255"], tradeoff["frozen"], "o-", color="tab:purple", ms=4)
    for _, row in tradeoff.iterrows():
        right.annotate(f"{row[x]:g}", (row["frame_change_255"], row["frozen"]), fontsize=7, xytext=(3, 3),
                       textcoords="offset points")
    right.set_xlabel("mean |Δframe| (0-255; lower is steadier)")
    right.set_ylabel("frozen (lower follows the prompt)")
    right.set_ylim(-0.05, 1.05)
    right.set_title("trade-off; labels: " + xlabel, fontsize=9)
    fig.tight_layout()
    return fig


def plot_decay_beside_seed001(decay: pd.DataFrame) -> Figure:
    """Our 1-5 consistency score against segment count (band over seeds) and seed 001's table."""
    fig = Figure(figsize=(5.5, 3.3))
    ax = fig.subplots()
    _band(ax, decay, "segments", "score_1_to_5", "score_ci_low", "score_ci_high", "ours (shapes-tiny)")
    theirs = decay.dropna(subset=["seed001_score"])
    exact = theirs[theirs["seed001_relation"] == "="]
    below = theirs[theirs["seed001_relation"] == "<"]
    ax.plot(exact["segments"], exact["seed001_score"], "s", color="tab:orange", label="seed 001 (Wan2.2-5B)")
    if len(below):
        ax.plot(below["segments"], below["seed001_score"], "v", color="tab:orange", label="seed 001: below")
    ax.set_ylim(0.9, 5.2)
    ax.set_xlabel("segments")
    ax.set_ylabel("subject consistency (1-5)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_strategy_comparison(summary: pd.DataFrame, metrics: Sequence[str] = ("attributes_constant",
                                                                               "ssim_consecutive", "flicker",
                                                                               "subject_consistency")
                             ) -> Figure:
    """One bar panel per metric, one bar per strategy; a strategy with no video is marked 'unavailable'."""
    fig = Figure(figsize=(3.2 * len(metrics), 3.0))
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    names = summary["strategy"].tolist()
    for ax, metric in zip(axes, metrics):
        values = summary[metric].to_numpy(dtype=float)
        ax.bar(range(len(names)), np.nan_to_num(values), color="tab:blue")
        for i, (value, status) in enumerate(zip(values, summary["status"])):
            if np.isnan(value):
                ax.text(i, 0, status, rotation=90, ha="center", va="bottom", fontsize=7, color="tab:red")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=9)
    fig.tight_layout()
    return fig


def plot_frame_decay(curves: pd.DataFrame, seams: Sequence[int] = (), title: str | None = None) -> Figure:
    """One panel per metric of a `frame_curves` table: mean over seeds per frame with its band; the
    frames where a window starts (seams) marked by dashed lines."""
    metrics = list(dict.fromkeys(curves["metric"]))
    fig = Figure(figsize=(4.2 * len(metrics), 3.0))
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics):
        bounds, unit = metric_scale(metric)
        _band(ax, curves[curves["metric"] == metric], "frame", bounds=bounds)
        ax.set_ylabel(unit, fontsize=8)
        for i, seam in enumerate(seams):
            ax.axvline(seam, ls="--", lw=0.8, color="tab:red", label="window starts" if i == 0 else None)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        ax.tick_params(labelsize=7)
        if seams:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
