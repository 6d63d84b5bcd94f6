"""How far apart the joint model's text encoder puts captions that differ in one word only: each pair of
shape words, against pairs of colour words (the colour is drawn right in 100% of frames) as the yardstick.

For `--n` training-split scenes, each caption is written once per shape (and once per colour of a fixed
set), same template and wording otherwise. For a pair of words a, b the distance is, per scene,

    |states(a) - states(b)| / |states(a)|      (Frobenius over every token, padding zero; `joint.state_distance`,
                                                the distance `--word-margin` trains on)

taken only where both captions tokenize to the same length (so no position is shifted); the count kept is
reported. A shape pair the encoder keeps close leaves the transformer little to tell the shapes apart by.

    python experiments/shape_word_states.py --model shapes-tiny-joint --n 128 --out shape_word_states.json
"""
import argparse
import dataclasses
import itertools

import numpy as np
import torch

from eval_zoo import emit
from shape_word_cells import same_wording
from vidlab.backends import load_backend
from vidlab.training.joint import state_distance
from vidlab.training.wan import encode_captions
from vidlab.training.wan_parts import TEXT_TOKENS
from vidlab.world.shapes import SHAPES, random_scene

YARDSTICK_COLORS = ("red", "blue", "green", "yellow")


def pair_distances(tokenizer, text_encoder, texts: dict[str, list[str]]) -> dict[str, dict]:
    """Per pair of `texts`' keys: median and quartiles of the relative state distance over the scenes whose two
    captions have the same token count, and how many those are."""
    with torch.no_grad():
        states = {k: encode_captions(tokenizer, text_encoder, v, TEXT_TOKENS) for k, v in texts.items()}
    lengths = {k: (s.abs().sum(-1) > 0).sum(-1) for k, s in states.items()}
    out = {}
    for a, b in itertools.combinations(texts, 2):
        same = lengths[a] == lengths[b]
        d = state_distance(states[a], states[b])[same].numpy()
        out[f"{a} / {b}"] = {"n": int(same.sum()), "median": float(np.median(d)) if len(d) else None,
                             "quartiles": [float(q) for q in np.percentile(d, [25, 75])] if len(d) else None}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-tiny-joint", help="a preset or a zoo folder with a joint wan/")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--seed", type=int, default=41)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_backend(args.model).pipeline("wan")
    rng = np.random.default_rng([args.seed, 1])
    scenes = [random_scene(rng, "train") for _ in range(args.n)]

    def written(field: str, value: str) -> list[str]:
        return same_wording([dataclasses.replace(s, **{field: value}) for s in scenes])

    shapes = pair_distances(pipe.tokenizer, pipe.text_encoder, {s: written("shape", s) for s in SHAPES})
    colours = pair_distances(pipe.tokenizer, pipe.text_encoder, {c: written("color", c) for c in YARDSTICK_COLORS})
    emit({"model": args.model, "n": args.n, "seed": args.seed, "shapes": shapes, "colours": colours}, args.out)


if __name__ == "__main__":
    main()
