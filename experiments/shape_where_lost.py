"""Where does the joint model lose a subject's shape: deciding it (high noise) or drawing it (low noise)?

From each rendered frame's true latent, noised to a level s (x_s = (1 - s) x_0 + s e, the training
path), the model denoises back to s = 0 with the frame's caption (Euler over the flow, guidance 4,
about 20 steps for s = 1), the VAE decodes, and the analyzer reads the shape. s = 0 is the VAE round
trip alone; s = 1 is plain generation (the frame's latent plays no part). If the shape survives at
low s and is lost from some s on, the model cannot decide the shape from the caption at that noise;
if it is lost already at low s, the model's drawing (or the decoder) rounds it.

    python experiments/shape_where_lost.py --model shapes-tiny-joint|WAN_FOLDER [--split heldout] [--out where.json]
    python experiments/shape_where_lost.py --shape square --split train --guidance 2.5     # squares alone
"""
import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from vidlab.backends import load_backend
from vidlab.strategies.native import wan_decode, wan_latent_stats
from vidlab.training.wan import encode_captions
from vidlab.training.wan_ladder import share_by
from vidlab.training.wan_parts import TEXT_TOKENS
from vidlab.world.analyzer import analyze
from vidlab.world.captions import caption
from vidlab.world.shapes import SHAPES, SIZES, random_scene, render_batch

LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def denoise_from(pipe, x0, states, null, level: float, guidance: float, seed: int) -> torch.Tensor:
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    x = (1 - level) * x0 + level * noise
    steps = max(1, round(20 * level))
    grid = torch.linspace(level, 0.0, steps + 1) if level > 0 else torch.zeros(1)
    with torch.no_grad():
        for t, t_next in zip(grid[:-1], grid[1:]):
            time = torch.full((x.shape[0],), float(t) * 1000)
            cond = pipe.transformer(x, time, states, return_dict=False)[0]
            uncond = pipe.transformer(x, time, null, return_dict=False)[0]
            x = x + (t_next - t) * (uncond + guidance * (cond - uncond))
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-tiny-joint", help="a preset or a WanPipeline folder")
    parser.add_argument("--split", default="heldout", choices=["train", "heldout"])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--shape", default=None, choices=SHAPES, help="draw every scene as this shape")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if Path(args.model).is_dir():  # a WanPipeline folder, e.g. a stage's export before it ships
        from diffusers import WanPipeline
        pipe = WanPipeline.from_pretrained(args.model)
    else:
        pipe = load_backend(args.model).pipeline("wan")
    rng = np.random.default_rng([77, 3])
    scenes = [random_scene(rng, args.split) for _ in range(args.n)]
    if args.shape:  # the held-out split's colour-shape combos no longer hold: say `--split train`
        scenes = [dataclasses.replace(s, shape=args.shape) for s in scenes]
    mu, sd = wan_latent_stats(pipe.vae)
    with torch.no_grad():
        x0 = (pipe.vae.encode(render_batch(scenes)[:, :, None] * 2 - 1).latent_dist.mean - mu) / sd
        texts = [caption(s, rng=np.random.default_rng(i)) for i, s in enumerate(scenes)]
        states = encode_captions(pipe.tokenizer, pipe.text_encoder, texts, TEXT_TOKENS)
        null = encode_captions(pipe.tokenizer, pipe.text_encoder, [""] * len(texts), TEXT_TOKENS)
    rows = {}
    for level in LEVELS:
        x = denoise_from(pipe, x0, states, null, level, args.guidance, seed=int(level * 100))
        reads = [analyze(wan_decode(pipe, one[None])[0]) for one in x]
        right = [a.shape == s.shape for a, s in zip(reads, scenes)]
        rows[str(level)] = {"shape": float(np.mean(right)), "color": float(np.mean([a.color == s.color for a, s
                                                                                  in zip(reads, scenes)])),
                            "shape_by_size": share_by(right, scenes, "size", SIZES),
                            "read_as_circle": float(np.mean([a.shape == "circle" for a in reads])),
                            "asked_circle": float(np.mean([s.shape == "circle" for s in scenes]))}
        print(level, json.dumps(rows[str(level)]), flush=True)
    result = {"model": args.model, "split": args.split, "shape": args.shape, "n": args.n, "guidance": args.guidance,
              "levels": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
