"""Figures for videos and their metrics."""
from __future__ import annotations

import pandas as pd
import torch
from matplotlib.figure import Figure


def frame_strip(frames: torch.Tensor, max_frames: int = 8, title: str | None = None) -> Figure:
    """A row of (up to max_frames, evenly spaced) frames of a video (F, 3, H, W)."""
    n = frames.shape[0]
    idx = torch.linspace(0, n - 1, min(n, max_frames)).round().long().tolist()
    fig = Figure(figsize=(1.6 * len(idx), 1.9))
    axes = fig.subplots(1, len(idx), squeeze=False)[0]
    for ax, i in zip(axes, idx):
        ax.imshow(frames[i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_title(f"frame {i}", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_frame_metrics(table: pd.DataFrame, columns=("ssim_prev", "ssim_anchor", "psnr_prev", "psnr_anchor"),
                       title: str | None = None) -> Figure:
    """Per-frame similarity curves: SSIM (left axis) and PSNR (right axis) against frame index."""
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    twin = ax.twinx()
    for col in columns:
        if col not in table:
            continue
        target, style = (ax, "-") if col.startswith("ssim") else (twin, "--")
        target.plot(table["frame"], table[col], style, marker="o", ms=3, label=col)
    ax.set_xlabel("frame")
    ax.set_ylabel("SSIM")
    twin.set_ylabel("PSNR (dB)")
    lines = ax.get_legend_handles_labels()
    lines2 = twin.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower left")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_curve_with_ci(df: pd.DataFrame, x: str, y: str = "mean", low: str = "ci_low", high: str = "ci_high",
                       group: str | None = None, ax_labels: tuple[str, str] | None = None,
                       title: str | None = None) -> Figure:
    """A curve with its confidence band, one line per `group` value."""
    fig = Figure(figsize=(5.5, 3.2))
    ax = fig.subplots()
    groups = [(None, df)] if group is None else list(df.groupby(group))
    for name, part in groups:
        part = part.sort_values(x)
        ax.plot(part[x], part[y], marker="o", ms=3, label=None if name is None else f"{group}={name}")
        if low in part and high in part:
            ax.fill_between(part[x], part[low], part[high], alpha=0.2)
    ax.set_xlabel(ax_labels[0] if ax_labels else x)
    ax.set_ylabel(ax_labels[1] if ax_labels else y)
    if group is not None:
        ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
