"""How round are the joint model's squares: circles, or squares just past the analyzer's line?

Pass 1 of the joint model (single frames, as rung 0) on `--n` square scenes (held-out or training colour-shape
combinations, sizes as drawn); the same scenes' ground-truth renders and their VAE round trips beside them. For each
frame the analyzer's template IoUs (`world.analyzer.shape_ious`): the square's margin is IoU(square) - IoU(circle),
> 0 where the frame is read as a square rather than a circle (1 - 0.785 = 0.21 for a large clean square;
a small rendered square's is smaller, its corners are few pixels). Reported per source and size: the share read as
squares, the margin's quartiles, and the share 'just round' (margin in [-0.05, 0): read as a circle, but within 0.05
of a square).

`--sampler` / `--flow-shift` sample pass 1 another way than the model's own scheduler (UniPC, order 2, flow shift 2):
'euler' (first order) or 'euler-stochastic' (each step's clean estimate noised afresh to the next level, noise
seeded by --seed), at the flow shift given (larger: more of the steps at high noise).

    python experiments/square_margin.py --model shapes-tiny-joint --n 96 --split train --out square_margin.json
"""
import argparse

import numpy as np
import torch

from eval_zoo import emit
from vidlab.backends import load_backend
from vidlab.training.wan_ladder import round_trips, single_frames
from vidlab.world.analyzer import analyze, shape_ious
from vidlab.world.captions import caption
from vidlab.world.shapes import SIZES, random_scene, render_batch

JUST_ROUND = 0.05
SAMPLERS = ("model", "euler", "euler-stochastic")


def use_sampler(pipe, sampler: str, flow_shift: float | None) -> None:
    """Give `pipe` the named scheduler (`SAMPLERS`; 'model': its own), at `flow_shift` if given (else the model's)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is not one of {list(SAMPLERS)}")
    if flow_shift is not None and flow_shift <= 0:
        raise ValueError(f"flow_shift={flow_shift} must be > 0")
    own = pipe.scheduler.config
    shift = own["flow_shift"] if flow_shift is None else flow_shift
    if sampler == "model":
        pipe.scheduler = type(pipe.scheduler).from_config(own, flow_shift=shift)
    else:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=own["num_train_timesteps"], shift=shift,
                                                         stochastic_sampling=sampler == "euler-stochastic")


def square_scenes(n: int, split: str, seed: int) -> list:
    """n scenes whose subject is a square (`random_scene`'s other draws kept)."""
    rng = np.random.default_rng([seed, 1])
    scenes = []
    while len(scenes) < n:
        scene = random_scene(rng, split)
        if scene.shape == "square":
            scenes.append(scene)
    return scenes


def margins(frames) -> tuple[list[float], list[bool]]:
    """Per frame: IoU(square) - IoU(circle) (nan without a subject), and whether the analyzer reads a square."""
    out, read = [], []
    for frame in frames:
        ious = shape_ious(frame)
        out.append(float("nan") if ious is None else ious["square"] - ious["circle"])
        read.append(analyze(frame).shape == "square")
    return out, read


def summary(margin: list[float], read: list[bool]) -> dict:
    m = np.asarray(margin, float)
    seen = m[~np.isnan(m)]
    return {"n": len(m), "read_square": float(np.mean(read)),
            "margin_quartiles": [float(q) for q in np.percentile(seen, [25, 50, 75])] if seen.size else None,
            "just_round": float(np.mean((m >= -JUST_ROUND) & (m < 0))),
            "round": float(np.mean(m < -JUST_ROUND)), "no_subject": float(np.mean(np.isnan(m)))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-tiny-joint", help="a preset or a zoo folder with a joint wan/")
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=2718)
    parser.add_argument("--split", default="train", choices=["heldout", "train"])
    parser.add_argument("--sampler", default="model", choices=SAMPLERS)
    parser.add_argument("--flow-shift", type=float, default=None, help="the sampler's flow shift (default: the model's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_backend(args.model).pipeline("wan")
    use_sampler(pipe, args.sampler, args.flow_shift)
    torch.manual_seed(args.seed)  # the stochastic sampler's fresh noise
    scenes = square_scenes(args.n, args.split, args.seed)
    rng = np.random.default_rng([args.seed, 2])
    prompts = [caption(s, rng=rng) for s in scenes]
    sources = {"ground_truth": render_batch(scenes), "vae_round_trip": round_trips(pipe.vae, scenes),
               "generated": single_frames(pipe, prompts, args.steps, args.guidance, args.seed)}
    result = {"model": args.model, "n": args.n, "split": args.split, "seed": args.seed, "guidance": args.guidance,
              "steps": args.steps, "sampler": args.sampler, "scheduler": type(pipe.scheduler).__name__,
              "flow_shift": args.flow_shift, "just_round_below": JUST_ROUND}
    for name, frames in sources.items():
        margin, read = margins(frames)
        result[name] = {"all": summary(margin, read),
                        **{size: summary([m for m, s in zip(margin, scenes) if s.size == size],
                                         [r for r, s in zip(read, scenes) if s.size == size]) for size in SIZES}}
    emit(result, args.out)


if __name__ == "__main__":
    main()
