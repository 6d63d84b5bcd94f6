"""Can the joint model draw a square's corners at all? Memorise a few square scenes, then draw them.

A probe, nothing ships from it. The `frames` stage (the shipped flags of `joint-frames-corners`: shape weight 10,
corner weight 30, flow shift 1; no clips' first frames) trains from `--init` on the first `--n` square scenes of
a frame cache only (`--data`: a run folder made by `joint cache`), for `--steps` steps; then the model before and
after draws each scene from its caption (2 seeds) and `square_margin` reads how round the squares are, beside
the scenes' ground truth and VAE round trips. If the memorised squares are drawn crisp (margin near the VAE's),
the model can represent a square's corners and what is missing is fit on the full data; if they stay just
round, the corners are lost in how the model predicts (its tokens or output head, or the loss), not in the data.

    python experiments/probe_square_memorise.py --data checkpoints/joint --run-dir /tmp/sq16 --n 16 --steps 600
"""
import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import WanPipeline
from safetensors.torch import load_file, save_file

from eval_zoo import emit
from square_margin import margins, summary
from vidlab.training.common import scenes_from_attrs, train_stage
from vidlab.training.joint import joint_stage, trained_pipeline
from vidlab.training.joint_data import default_init
from vidlab.training.wan_ladder import round_trips, single_frames
from vidlab.world.captions import caption
from vidlab.world.shapes import SHAPES, render_batch

SEEDS = (2718, 3141)


def square_subset(data, run_dir: Path, n: int) -> list:
    """Write `run_dir`/frames.safetensors with the first n square scenes of `data`'s cache (its pools linked, which
    the stage opens though no clip is drawn); their scenes, placed at the cached centres."""
    frames = load_file(Path(data) / "frames.safetensors")
    idx = (frames["attrs"][:, 0] == SHAPES.index("square")).nonzero()[:n, 0]
    if len(idx) < n:
        raise ValueError(f"n={n}: the frame cache in {data} has only {len(idx)} square scenes")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v[idx].contiguous() for k, v in frames.items()}, run_dir / "frames.safetensors")
    for name in ("pool", "pool_centre"):
        target = run_dir / f"{name}.safetensors"
        if not target.exists():
            target.symlink_to(Path(data).resolve() / f"{name}.safetensors")
    scenes = scenes_from_attrs(frames["attrs"][idx])
    return [dataclasses.replace(s, center=tuple(c)) for s, c in zip(scenes, frames["centre"][idx].tolist())]


def drawn(pipe, scenes: list, steps: int, guidance: float) -> dict:
    prompts = [caption(s, template=0) for s in scenes]
    frames = torch.cat([single_frames(pipe, prompts, steps, guidance, seed) for seed in SEEDS])
    return summary(*margins(frames))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="a run folder with the frame cache and pools (`joint cache`)")
    parser.add_argument("--run-dir", required=True, help="a scratch folder for the probe's run")
    parser.add_argument("--init", default=None, help="the WanPipeline folder to start from (default: the zoo's)")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    init = args.init or str(default_init())
    run_dir = Path(args.run_dir)
    for name in ("n", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: must be >= 1")
    if (run_dir / "frames").exists():
        parser.error(f"--run-dir {run_dir}: it already holds a frames run (the probe would resume it, not start from "
                     "--init); give a new scratch folder")
    scenes = square_subset(args.data, run_dir, args.n)
    before = WanPipeline.from_pretrained(init)
    result = {"init": init, "n": args.n, "steps": args.steps, "guidance": args.guidance, "seeds": list(SEEDS),
              "ground_truth": summary(*margins(render_batch(scenes))),
              "vae_round_trip": summary(*margins(round_trips(before.vae, scenes))),
              "before": drawn(before, scenes, args.sample_steps, args.guidance)}
    t0 = time.time()
    stage = joint_stage(run_dir, "frames", init, first_share=0.0, shape_weight=10.0, corner_weight=30.0,
                        frame_shift=1.0, monitor_every=0)
    train_stage(stage, run_dir, args.steps)
    result["train_minutes"] = round((time.time() - t0) / 60, 1)
    result["final_loss"] = float(np.mean(json.loads((run_dir / "frames" / "progress.json").read_text())["losses"][-50:]))
    result["after"] = drawn(trained_pipeline(run_dir, "frames", init), scenes, args.sample_steps, args.guidance)
    emit(result, args.out)


if __name__ == "__main__":
    main()
