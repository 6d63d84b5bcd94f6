"""What kind of shape errors the joint model's pass 1 makes, by subject size, beside what its VAE keeps.

Pass 1 (single frames from the caption, as rung 0) on `--n` prompts; for each frame the analyzer's
shape and the IoU of its best shape template (how cleanly *some* shape is drawn: a clean wrong shape
reads high, a blob between two shapes low). The same scenes' ground-truth renders give the IoU a
clean shape reaches, and their VAE round trips what the decoder alone keeps. Reported by size:

- generated: shape right; VAE round trip: shape right (the cap the decoder puts on any generator);
- the confusion tables asked -> read over all frames, generated and VAE round trip ('no subject': nothing
  far enough from the background and large enough; 'no shape': a subject whose mask fits no shape template
  to the analyzer's MIN_SHAPE_IOU);
- median template IoU of right and of wrong generated shapes, and of the ground truth.

    python experiments/shape_errors.py --model shapes-tiny-joint --n 256 --guidance 2.5 --out shape_errors.json
"""
import argparse
from collections import Counter

import numpy as np
import torch

from eval_zoo import emit
from vidlab.backends import load_backend
from vidlab.training.wan_ladder import round_trip_reads, rung0_frames
from vidlab.world.analyzer import analyze
from vidlab.world.shapes import SHAPES, SIZES, render_batch


UNREAD = ("no subject", "no shape")


def read_as(attrs) -> str:
    """The analyzer's shape, else why none was read (`UNREAD`)."""
    return attrs.shape or ("no shape" if attrs.has_subject else "no subject")


def median(values) -> float | None:
    return float(np.median(values)) if len(values) else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-tiny-joint", help="a preset or a zoo folder with a joint wan/")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=2718, help="prompts and noise (the evaluation's rung 0: 999)")
    parser.add_argument("--split", default="heldout", choices=["heldout", "train"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_backend(args.model).pipeline("wan")
    scenes, generated = rung0_frames(pipe, args.n, args.steps, args.guidance, args.seed, args.split)
    kept = round_trip_reads(pipe.vae, scenes)
    clean = [analyze(f) for f in render_batch(scenes)]
    by_size = {}
    for size in SIZES:
        idx = [i for i, s in enumerate(scenes) if s.size == size]
        right = [i for i in idx if generated[i].shape == scenes[i].shape]
        wrong = [i for i in idx if generated[i].shape != scenes[i].shape and generated[i].shape is not None]
        by_size[size] = {"n": len(idx), "generated": len(right) / len(idx),
                         "vae_round_trip": float(np.mean([kept[i].shape == scenes[i].shape for i in idx])),
                         "no_subject": sum(not generated[i].has_subject for i in idx) / len(idx),
                         "no_shape": sum(read_as(generated[i]) == "no shape" for i in idx) / len(idx),
                         "iou_right": median([generated[i].shape_iou for i in right]),
                         "iou_wrong": median([generated[i].shape_iou for i in wrong]),
                         "iou_ground_truth": median([clean[i].shape_iou for i in idx])}
    confusion = Counter((s.shape, read_as(g)) for s, g in zip(scenes, generated))
    vae_confusion = Counter((s.shape, read_as(k)) for s, k in zip(scenes, kept))
    result = {"model": args.model, "n": args.n, "split": args.split, "seed": args.seed, "guidance": args.guidance,
              "steps": args.steps, "generated": float(np.mean([g.shape == s.shape for g, s in zip(generated, scenes)])),
              "by_size": by_size,
              "confusion": {a: {b: confusion[(a, b)] for b in (*SHAPES, *UNREAD)} for a in SHAPES},
              "vae_confusion": {a: {b: vae_confusion[(a, b)] for b in (*SHAPES, *UNREAD)} for a in SHAPES}}
    emit(result, args.out)


if __name__ == "__main__":
    main()
