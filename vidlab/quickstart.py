"""The quickstart: one request on the offline zoo -> an MP4, a metrics table and a plot.

`python -m vidlab.quickstart --notebook notebooks/01_quickstart.ipynb --out results/quickstart`
runs the quickstart notebook headlessly with papermill (the README's main job);
without --notebook it runs the same steps in this process.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import pandas as pd
import torch

from .config import GenerationRequest
from .generate import generate
from .video import Video

DEFAULT_PROMPT = "a red circle in the top left on a white background"


def per_frame_table(video: Video) -> pd.DataFrame:
    """One row per frame: SSIM/PSNR to the previous frame and to frame 0, analyzer readings."""
    from .metrics import psnr_anchor, psnr_consecutive, ssim_anchor, ssim_consecutive
    from .world import analyze

    f = video.frames
    nan = torch.tensor([float("nan")])
    rows = {"frame": list(range(f.shape[0]))}
    if f.shape[0] > 1:
        rows["ssim_prev"] = torch.cat([nan, ssim_consecutive(f)]).tolist()
        rows["psnr_prev"] = torch.cat([nan, psnr_consecutive(f)]).tolist()
        rows["ssim_anchor"] = ssim_anchor(f).tolist()
        rows["psnr_anchor"] = psnr_anchor(f).tolist()
    attrs = [analyze(frame) for frame in f]
    for key in ("shape", "color", "background", "position"):
        rows[key] = [getattr(a, key) for a in attrs]
    return pd.DataFrame(rows)


def summary_table(video: Video, prompt: str | None = None) -> pd.DataFrame:
    """The video's summary metrics as a two-column table (metric, value)."""
    from .metrics import video_metrics

    starts = video.record.get("strategy_record", {}).get("segment_starts")
    metrics = video_metrics(video.frames, prompt=prompt, segment_starts=starts)
    metrics["seconds"] = video.record["timing"]["seconds"]
    return pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())})


def save_results(video: Video, out_dir: str | Path, prompt: str | None = None) -> dict[str, Path]:
    """Write video.mp4 (+ manifest), metrics.csv, frames.csv and metrics.png under out_dir."""
    from .viz import plot_frame_metrics

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"video": video.save(out / "video.mp4")}
    paths["manifest"] = paths["video"].with_suffix(".json")
    summary_table(video, prompt).to_csv(out / "metrics.csv", index=False)
    paths["metrics"] = out / "metrics.csv"
    frames = per_frame_table(video)
    frames.to_csv(out / "frames.csv", index=False)
    paths["per_frame"] = out / "frames.csv"
    fig = plot_frame_metrics(frames, title=f"{video.record['strategy']} — frame similarity")
    fig.savefig(out / "metrics.png", dpi=120)
    paths["plot"] = out / "metrics.png"
    return paths


def run_quickstart(out_dir: str | Path = "results/demo", prompt: str | None = None, strategy: str = "frame_chain",
                   seed: int = 42, duration: float = 1.0, fps: int = 16) -> dict[str, Path]:
    """Generate one video on the offline zoo and write its MP4, metrics table and plot."""
    prompt = prompt or DEFAULT_PROMPT
    request = GenerationRequest(prompt=prompt, duration=duration, fps=fps, seed=seed)
    video = generate(request, strategy=strategy, model="shapes-tiny")
    return save_results(video, out_dir, prompt)


def lab_command(notebook: str | Path) -> list[str]:
    """The command that opens `notebook` in JupyterLab: this Python's `jupyter lab`, with --allow-root
    when run as root (JupyterLab refuses root otherwise)."""
    jupyter = Path(sys.executable).with_name("jupyter")
    command = [str(jupyter) if jupyter.exists() else "jupyter", "lab", str(Path(notebook).resolve())]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", default=None, help="run this notebook with papermill instead")
    parser.add_argument("--out", default="results/quickstart")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if args.notebook:
        from .sweeps import rerun_notebook
        executed = rerun_notebook(args.notebook, {"out_dir": str(out)}, out_dir=out)
        print(f"executed notebook: {executed}")
        paths = json.loads((out / "paths.json").read_text())
    else:
        paths = {k: str(v) for k, v in run_quickstart(out).items()}
    for name, path in paths.items():
        print(f"{name}: {path}")
    if args.notebook:
        print(f"\nopen the notebook in JupyterLab: {shlex.join(lab_command(args.notebook))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
