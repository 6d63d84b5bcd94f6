"""What caps the joint model's shapes: token size, depth, width or the loss, at equal CPU minutes on single frames.

Each arm is the joint model's `frames` stage from scratch (a fresh transformer and UMT5, the zoo's
Wan VAE and tokenizer, the same cached frame latents, batch, lr and seed) trained for the same
wall-clock minutes on this machine, then measured the same way:

- rung 0 through the real WanPipeline (`wan_ladder.image_numbers`: held-out prompts, single frames,
  20 steps, guidance 4, the analyzer's colour / shape / background / position);
- shape-word use: on rendered frames, the flow loss on the subject's latent cells with the caption's
  shape word swapped for another, over the loss with the true caption, at three noise levels (same
  noise). 1.0 means the shape word does not change the prediction. On held-out frames (the arms'
  measure) a swap always lands on a colour-shape combination seen in training, which a model renders
  better, so the ratio there under-reads; on training frames (`--measure`) every swap stays a seen one.

Measurements run at a third, two thirds and all of the budget; their time is not counted.
`--measure LABEL=DIR` measures trained WanPipeline folders (e.g. the zoo's `wan/` before and after a
stage) the same way, without training, and rung 0 on training colour-shape combinations too.

    python -m vidlab.training.joint cache --run-dir checkpoints/joint   # frame latents, subjects' centres
    python experiments/shape_capacity.py --data checkpoints/joint --minutes 12 --out shape_capacity.json
    python experiments/shape_capacity.py --data checkpoints/joint --arms --measure now=vidlab/zoo/shapes-tiny/wan
"""
import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from vidlab.training.common import cells_off_background, ema_step, ema_weights, rng_for
from vidlab.training.joint import Batches, default_init, flow_loss, load_parts, pipeline_of
from vidlab.training.wan import WanTrainee, build_text_encoder, encode_captions
from vidlab.training.wan_ladder import image_numbers
from vidlab.training.wan_parts import TEXT_TOKENS, transformer_config
from vidlab.world.captions import caption
from vidlab.world.shapes import HELD_OUT_COMBOS, SHAPES, random_scene, render_batch

ARMS = {  # overrides of the shipped transformer_config(), and the shape weight of the loss
    "shipped": ({}, 1.0),
    "tokens-2x2": ({"patch_size": (1, 2, 2)}, 1.0),          # 4x the tokens: 4x4 px a token instead of 8x8
    "deeper": ({"num_layers": 8, "ffn_dim": 512}, 1.0),      # what the shipped model can grow into without loss
    "wider": ({"num_attention_heads": 6, "ffn_dim": 512}, 1.0),  # width 192
    # the cells only the shape word decides (`common.shape_difference_cells`) count 10x: needs a frame
    # cache with the subjects' centres (`joint cache`)
    "shape-weight-10": ({}, 10.0),
}
NOISE_LEVELS = (0.3, 0.6, 0.9)


def fresh_model(arm: str, tokenizer, seed: int = 0) -> WanTrainee:
    from diffusers import WanTransformer3DModel
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(**{**transformer_config(), **ARMS[arm][0]})
    return WanTrainee(transformer, build_text_encoder(tokenizer))


def word_frames(vae, mu, sd, split: str = "heldout", n: int = 64, seed: int = 31):
    """n rendered frames of `split` (normalised latents), their captions and the same captions with another
    shape word (on 'train', one whose colour-shape combination is also a training one)."""
    rng = np.random.default_rng([seed, 1])
    scenes = [random_scene(rng, split) for _ in range(n)]
    with torch.no_grad():
        x0 = vae.encode(render_batch(scenes)[:, :, None] * 2 - 1).latent_dist.mean
    texts = [caption(s, rng=np.random.default_rng(i)) for i, s in enumerate(scenes)]
    swapped = []
    for i, s in enumerate(scenes):
        others = [o for o in SHAPES if o != s.shape and (split != "train" or (s.color, o) not in HELD_OUT_COMBOS)]
        swapped.append(caption(dataclasses.replace(s, shape=others[i % len(others)]), rng=np.random.default_rng(i)))
    return (x0 - mu) / sd, texts, swapped


def shape_word_use(model, tokenizer, x0, texts, swapped) -> dict:
    """Subject-cell flow loss with the shape word swapped over with the true caption, per noise level."""
    cells = cells_off_background(x0)
    out = {}
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(x0.shape, generator=gen)
    with torch.no_grad():
        for s in NOISE_LEVELS:
            xt = (1 - s) * x0 + s * noise
            losses = []
            for t in (texts, swapped):
                states = encode_captions(tokenizer, model.encoder, t, TEXT_TOKENS)
                pred = model.transformer(xt, torch.full((x0.shape[0],), s * 1000.0), states, return_dict=False)[0]
                losses.append(float((cells * (pred - (noise - x0)) ** 2).sum() / cells.sum() / x0.shape[1]))
            out[str(s)] = round(losses[1] / losses[0], 4)
    return out


def run_arm(arm: str, args, parts, held) -> dict:
    tokenizer, vae = parts["tokenizer"], parts["vae"]
    model = fresh_model(arm, tokenizer).train()
    n_params = sum(p.numel() for p in model.transformer.parameters())
    overrides, shape_weight = ARMS[arm]
    data = Batches(args.data, vae, first_share=0.0, shape_cells=shape_weight != 1.0)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    params = dict(model.named_parameters())
    ema = {k: p.detach().clone() for k, p in params.items()}
    budget = args.minutes * 60
    marks = [budget / 3, 2 * budget / 3, budget]
    rows, trained, step, losses = [], 0.0, 0, []
    while marks:
        t0 = time.time()
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 100)
        rng = rng_for(0, step)
        torch.manual_seed(step)
        x0, texts, cells = data.single_frames(rng, args.batch)
        loss = flow_loss(model, tokenizer, x0, texts, 3.0, shape_cells=cells, shape_weight=shape_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_step(ema, params, step, 0.995)
        losses.append(float(loss.detach()))
        step += 1
        trained += time.time() - t0
        if trained >= marks[0]:
            marks.pop(0)
            rows.append(measure(model, ema, parts, held, step, trained, losses, args))
            print(json.dumps({"arm": arm, **rows[-1]}), flush=True)
    return {"arm": arm, "overrides": {**{k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
                                      **({"shape_weight": shape_weight} if shape_weight != 1.0 else {})},
            "transformer_params": n_params, "rows": rows}


def measure(model, ema, parts, held, step, trained, losses, args) -> dict:
    with ema_weights(model, ema):
        rung0 = image_numbers(pipeline_of(parts, model), n=args.n)
        word = shape_word_use(model, parts["tokenizer"], *held)
    return {"step": step, "minutes": round(trained / 60, 2), "s_per_step": round(trained / step, 3),
            "loss_last100": round(float(np.mean(losses[-100:])), 4), "rung0": rung0, "shape_word_loss_ratio": word}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True,
                        help="a joint run folder holding frames.safetensors and pool.safetensors")
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS), help="none: only --measure")
    parser.add_argument("--minutes", type=float, default=12.0, help="training minutes per arm (measurements excluded)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n", type=int, default=64, help="prompts of rung 0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--measure", nargs="*", default=[], metavar="LABEL=DIR",
                        help="trained WanPipeline folders to measure the same way, without training")
    parser.add_argument("--out", default="shape_capacity.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = load_parts(default_init())
    from vidlab.strategies.native import wan_latent_stats
    mu, sd = wan_latent_stats(parts["vae"])
    held = word_frames(parts["vae"], mu, sd)
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else {"minutes": args.minutes, "arms": {}}
    for item in args.measure:
        label, folder = item.split("=", 1)
        trained = load_parts(folder)
        model = WanTrainee(trained["transformer"], trained["text_encoder"]).eval()
        seen = word_frames(parts["vae"], mu, sd, "train")
        pipe = pipeline_of(trained, model)
        done.setdefault("measured", {})[label] = {
            "folder": folder, "rung0": image_numbers(pipe, n=args.n),
            "rung0_train": image_numbers(pipe, n=args.n, split="train"),
            "shape_word_loss_ratio": shape_word_use(model, trained["tokenizer"], *held),
            "shape_word_loss_ratio_train": shape_word_use(model, trained["tokenizer"], *seen)}
        out.write_text(json.dumps(done, indent=1) + "\n")
    for arm in args.arms:
        if arm in done["arms"]:
            continue
        done["arms"][arm] = run_arm(arm, args, parts, held)
        out.write_text(json.dumps(done, indent=1) + "\n")


if __name__ == "__main__":
    main()
