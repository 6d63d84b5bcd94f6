"""Figures of captured attention: word heat maps over a frame, over a video, animated, and frame × frame.

Heat maps are shown min-max normalized (0 = the word's least-attended pixel, 1 = its most), one
scale per word across all frames, so frames of a video are comparable.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import torch
import torch.nn.functional as F
from matplotlib.animation import FFMpegWriter, FuncAnimation, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def normalize_heat(heat: torch.Tensor) -> torch.Tensor:
    """Min-max normalize a heat map (any shape) to [0, 1]; a flat map becomes zeros."""
    lo, hi = heat.min(), heat.max()
    return (heat - lo) / (hi - lo) if hi > lo else torch.zeros_like(heat)


def _check_video(frames: torch.Tensor, heat: torch.Tensor) -> None:
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must have shape (F, 3, H, W), got {tuple(frames.shape)}")
    if heat.ndim != 3 or heat.shape[0] not in (1, frames.shape[0]):
        raise ValueError(f"heat must have shape (F, h, w) with F=1 or F={frames.shape[0]}, got {tuple(heat.shape)}")


def overlay_heat(frames: torch.Tensor, heat: torch.Tensor, alpha: float = 0.55, cmap: str = "jet") -> torch.Tensor:
    """Frames (F, 3, H, W) with heat (F or 1, h, w) blended on top as a colour map -> (F, 3, H, W) in [0, 1]."""
    _check_video(frames, heat)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be in [0, 1]")
    big = F.interpolate(normalize_heat(heat.float())[:, None], size=frames.shape[-2:], mode="bilinear",
                        align_corners=False)[:, 0].clamp(0, 1)  # (F, H, W)
    colours = torch.from_numpy(matplotlib.colormaps[cmap](big.numpy())[..., :3]).float().permute(0, 3, 1, 2)
    return ((1 - alpha) * frames.float() + alpha * colours).clamp(0, 1)


def _image(ax, frame: torch.Tensor, title: str | None = None) -> None:
    ax.imshow(frame.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)


def plot_word_heatmaps(frame: torch.Tensor, maps, words: list[str] | None = None, frame_index: int = 0,
                       alpha: float = 0.55) -> Figure:
    """The frame (3, H, W), then one heat overlay per word (default: every distinct word of the prompt)."""
    words = words if words is not None else list(dict.fromkeys(w.lower() for w in maps.names if w.isalnum()))
    if not -maps.num_frames <= frame_index < maps.num_frames:
        raise IndexError(f"frame_index={frame_index} is out of range for {maps.num_frames} frame(s)")
    fig = Figure(figsize=(1.6 * (len(words) + 1), 2.0))
    axes = fig.subplots(1, len(words) + 1, squeeze=False)[0]
    _image(axes[0], frame, "frame")
    for ax, word in zip(axes[1:], words):
        heat = maps[word][frame_index][None]
        _image(ax, overlay_heat(frame[None], heat, alpha)[0], word)
    fig.suptitle(maps.prompt, fontsize=9)
    return fig


def plot_word_strip(frames: torch.Tensor, maps, word: str, max_frames: int = 8, alpha: float = 0.55) -> Figure:
    """One word's heat over (up to max_frames, evenly spaced) frames of a video (F, 3, H, W)."""
    heat = maps[word]
    over = overlay_heat(frames, heat, alpha)
    n = frames.shape[0]
    idx = torch.linspace(0, n - 1, min(n, max_frames)).round().long().tolist()
    fig = Figure(figsize=(1.6 * len(idx), 2.0))
    axes = fig.subplots(1, len(idx), squeeze=False)[0]
    for ax, i in zip(axes, idx):
        _image(ax, over[i], f"frame {i}")
    fig.suptitle(f"{word!r} in: {maps.prompt}", fontsize=9)
    return fig


def plot_frame_attention(matrix: torch.Tensor, title: str | None = None) -> Figure:
    """A frame × frame attention matrix (F, F): row = query frame, column = attended frame."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must have shape (F, F), got {tuple(matrix.shape)}")
    fig = Figure(figsize=(3.6, 3.0))
    ax = fig.subplots()
    im = ax.imshow(matrix.float().numpy(), cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="attention mass")
    ax.set_xlabel("attended frame")
    ax.set_ylabel("query frame")
    ax.set_title(title or "frame × frame attention", fontsize=9)
    fig.tight_layout()
    return fig


def animate_overlay(frames: torch.Tensor, maps, word: str, fps: int = 8, alpha: float = 0.55) -> Figure:
    """An animated heat overlay of one word over a video; the Figure's `.animation` plays it.

    In a notebook: `HTML(fig.animation.to_jshtml())`; to a file: `save_animation(fig, "a.gif")`.
    """
    if not isinstance(fps, int) or fps < 1:
        raise ValueError(f"fps={fps!r} must be an integer >= 1")
    over = overlay_heat(frames, maps[word], alpha).permute(0, 2, 3, 1).numpy()  # (F, H, W, 3)
    fig = Figure(figsize=(2.6, 2.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.axis("off")
    shown = ax.imshow(over[0], interpolation="nearest")
    title = ax.set_title(f"{word!r}  frame 0", fontsize=8)

    def draw(i):
        shown.set_data(over[i])
        title.set_text(f"{word!r}  frame {i}")
        return shown, title

    fig.animation = FuncAnimation(fig, draw, frames=len(over), interval=1000 / fps, blit=False)
    fig.animation_fps = fps
    return fig


def save_animation(fig: Figure, path: str | os.PathLike) -> Path:
    """Write a Figure from `animate_overlay` to .gif (Pillow) or .mp4 (H.264 with vidlab's bundled ffmpeg)."""
    path = Path(path)
    animation = getattr(fig, "animation", None)
    if animation is None:
        raise ValueError("fig has no .animation: make it with animate_overlay")
    fps = getattr(fig, "animation_fps", 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        animation.save(path, writer=PillowWriter(fps=fps))
    elif path.suffix.lower() == ".mp4":
        import imageio_ffmpeg
        with matplotlib.rc_context({"animation.ffmpeg_path": imageio_ffmpeg.get_ffmpeg_exe()}):
            animation.save(path, writer=FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"]))
    else:
        raise ValueError(f"path={str(path)!r} must end in .gif or .mp4")
    return path


class AttentionExplorer:
    """An ipywidgets selector over one `AttentionRun`: word, layer group, step range, frame.

    Word, group and frame are read from the captured sums; a new step range re-runs the generation
    through `rerun(steps) -> AttentionRun` (cached per range). `render(...)` is the figure the
    widget shows, usable without widgets.
    """

    def __init__(self, run, rerun=None):
        self.runs = {None: run}
        self.rerun = rerun
        self.run = run

    def _run_for(self, steps):
        steps = None if steps is None or tuple(steps) == (0, self.run.num_inference_steps) else tuple(steps)
        if steps not in self.runs:
            if self.rerun is None:
                raise ValueError(f"steps={steps} needs a rerun function: AttentionExplorer(run, rerun=...)")
            self.runs[steps] = self.rerun(steps)
        return self.runs[steps]

    def render(self, word: str, group: str = "all", frame: int = 0, steps=None) -> Figure:
        run = self._run_for(steps)
        maps = run.capture.word_maps(group=None if group == "all" else group)
        f = min(frame, maps.num_frames - 1)
        fig = plot_word_heatmaps(run.frames[min(frame, len(run.frames) - 1)], maps, [word], frame_index=f)
        fig.suptitle(f"{word!r} · {group} · steps {steps or 'all'} · frame {frame}", fontsize=8)
        return fig

    def widget(self):
        """The selector: dropdowns, a step-range slider, a frame slider, and the figure below them."""
        import ipywidgets as w
        from IPython.display import display

        maps = self.run.capture.word_maps()
        n = self.run.num_inference_steps
        controls = dict(
            word=w.Dropdown(options=list(dict.fromkeys(maps.names)), description="word"),
            group=w.Dropdown(options=["all", *self.run.capture.groups()], description="layers"),
            steps=w.IntRangeSlider(value=(0, n), min=0, max=n, description="steps"),
            frame=w.IntSlider(value=0, min=0, max=max(0, len(self.run.frames) - 1), description="frame"))
        out = w.Output()

        def show(*_):
            with out:
                out.clear_output(wait=True)
                display(self.render(**{k: c.value for k, c in controls.items()}))

        for c in controls.values():
            c.observe(show, names="value")
        show()
        return w.VBox([w.HBox(list(controls.values())[:2]), w.HBox(list(controls.values())[2:]), out])
