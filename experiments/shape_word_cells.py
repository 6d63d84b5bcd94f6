"""How far the shape word moves the joint model's frame prediction at the cells where a square and a circle
differ, per noise level: does 'square' reach a square's corners, and when?

For `--n` training-split scenes drawn as squares, each is rendered twice, as a square and as a circle
(same colour, background, place and size), and both are encoded by the model's VAE (z_sq, z_ci). The
cells where the two drawings differ (`common.shape_difference_cells` with `CORNER_PAIR`, not grown: the
cells the training's `--corner-weight` weighs) are the only place the two words' right answers differ. At
noise level s the model's clean-frame estimate x0 = x_s - s v (flow matching, the training path) from each
true latent is projected onto d = z_sq - z_ci over those cells:

    squareness = <x0 - z_ci, d> / <d, d>      (1: a square's corners drawn; 0: a circle's)

for the caption with 'square', the same caption with 'circle', the empty caption, and classifier-free
guidance at `--guidance` with the square caption. The word's reach is squareness(square) - squareness(circle):
at low noise the noisy frame shows the corners and no word is needed; at high noise only the word can
put them there.

    python experiments/shape_word_cells.py --model shapes-tiny-joint --n 64 --out shape_word.json
"""
import argparse
import dataclasses

import numpy as np
import torch

from eval_zoo import emit
from vidlab.backends import load_backend
from vidlab.strategies.native import wan_latent_stats
from vidlab.training.common import CORNER_PAIR, scene_attrs, shape_difference_cells
from vidlab.training.wan import encode_captions
from vidlab.training.wan_parts import TEXT_TOKENS
from vidlab.world.captions import caption
from vidlab.world.shapes import SIZES, random_scene, render_batch

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def same_wording(scenes: list) -> list[str]:
    """Scene i's caption with template i % 4 and paraphrases drawn from seed i: two lists of variants of the
    same scenes (one field changed) get captions that differ in that field's word only."""
    return [caption(s, template=i % 4, rng=np.random.default_rng(i)) for i, s in enumerate(scenes)]


def squareness(x0: torch.Tensor, z_sq: torch.Tensor, z_ci: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Per scene: x0's projection onto z_sq - z_ci over `cells`, 0 at the circle and 1 at the square."""
    d = (z_sq - z_ci) * cells
    return ((x0 - z_ci) * d).flatten(1).sum(1) / (d * d).flatten(1).sum(1).clamp_min(1e-8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-tiny-joint", help="a preset or a zoo folder with a joint wan/")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--guidance", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_backend(args.model).pipeline("wan")
    rng = np.random.default_rng([args.seed, 1])
    squares = [dataclasses.replace(random_scene(rng, "train"), shape="square") for _ in range(args.n)]
    circles = [dataclasses.replace(s, shape="circle") for s in squares]
    texts = {"square": same_wording(squares), "circle": same_wording(circles)}
    mu, sd = wan_latent_stats(pipe.vae)
    with torch.no_grad():
        z = {name: ((pipe.vae.encode(render_batch(scenes)[:, :, None] * 2 - 1).latent_dist.mean - mu) / sd)
             for name, scenes in (("square", squares), ("circle", circles))}
        states = {name: encode_captions(pipe.tokenizer, pipe.text_encoder, t, TEXT_TOKENS) for name, t in texts.items()}
        states["empty"] = encode_captions(pipe.tokenizer, pipe.text_encoder, [""] * args.n, TEXT_TOKENS)
    centres = torch.tensor([s.resolved_center() for s in squares])
    cells = shape_difference_cells(scene_attrs(squares), centres, z["square"].shape[-1],
                                   against=CORNER_PAIR, grow=0)[:, :, None]          # (B, 1, 1, h, w)
    noise = torch.randn(z["square"].shape, generator=torch.Generator().manual_seed(args.seed))
    rows = {}
    for level in LEVELS:
        row = {}
        for start in ("square", "circle"):
            xs = (1 - level) * z[start] + level * noise
            time = torch.full((args.n,), level * 1000)
            with torch.no_grad():
                x0 = {w: xs - level * pipe.transformer(xs, time, s, return_dict=False)[0] for w, s in states.items()}
            x0["square_guided"] = x0["empty"] + args.guidance * (x0["square"] - x0["empty"])
            x0["circle_guided"] = x0["empty"] + args.guidance * (x0["circle"] - x0["empty"])
            sq = {w: squareness(v, z["square"], z["circle"], cells) for w, v in x0.items()}
            row[f"from_{start}"] = {w: float(v.mean()) for w, v in sq.items()}
            row[f"from_{start}"]["word_reach"] = float((sq["square"] - sq["circle"]).mean())
            row[f"from_{start}"]["word_reach_by_size"] = {
                size: float((sq["square"] - sq["circle"])[[s.size == size for s in squares]].mean()) for size in SIZES}
        rows[str(level)] = row
        print(level, {k: round(v["word_reach"], 3) for k, v in row.items()},
              {k: round(v["square_guided"], 3) for k, v in row.items()}, flush=True)
    emit({"model": args.model, "n": args.n, "guidance": args.guidance, "seed": args.seed,
          "cells_per_scene": float(cells.flatten(1).sum(1).mean()), "levels": rows}, args.out)


if __name__ == "__main__":
    main()
