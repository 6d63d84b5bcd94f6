"""Train the zoo's joint (Wan-style) video model in stages: draw single frames, then move from a given frame 0.

The model is the shipped `wan/` pipeline folder (transformer + UMT5 text encoder over the zoo's
frame-wise VAE, see `wan_parts`). Text-to-video with it is two passes of the one transformer
(`strategies.native.wan_two_pass`): frame 0 from the caption (`num_frames=1`), then the clip
with frame 0's latent held clean while the caption steers the motion. The stages train exactly
those two uses:

1. `frames`: single frames (`num_frames=1`, 64 tokens: 8x cheaper than a clip) through the same
   `WanTransformer3DModel`, text encoder trained with it: scenes with image captions and, a
   `first_share` of them, the first frames of in-frame pool clips with their clip captions (what
   pass 1 is asked: where a caption's motion starts).
2. `clips`: 8-frame clips (8 directions x 2 speeds, a tenth still), frame 0's latent given clean
   in the noisy input and the loss on frames 1-7; `frame_share` of a step's samples are single
   frames (as in `frames`) so drawing is not forgotten. The clips come from two latent pools:
   - `pool`: paths centred in the frame. The subject stays inside, so frame 0 sits on the side
     opposite the motion and gives the direction away: trained on these alone, the model moved
     the subject from where frame 0 put it and ignored the caption (measured, see the model card).
   - `pool_centre`: every clip's frame 0 at the centre, the subject free to leave the frame: from
     one frame 0 all 16 motions are possible, so only the caption says which (`centre_share` of
     the clips, read forwards from frame 0).

Both are flow matching (x_s = (1 - s) x_0 + s e, target e - x_0, s drawn with the sampler's
shift, the single frames' with `frame_shift`), subject latent cells weighted
(`common.cells_off_background`), the cells only the shape word decides weighted more where asked
(`shape_weight` on single scene frames, `clip_shape_weight` on every clip frame, placed by the pools'
subject centres per frame; `corner_weight` on both, on the cells where a square and a circle differ), EMA
weights exported. The data (`joint_data`) are encoded once per run folder. Each stage resumes from its checkpoint; a
stage starts from the weights named by `--init` (default: the shipped zoo's `wan/`, so a new session
carries on from what the last one shipped). Every
`monitor_every` steps a stage samples through the real `WanPipeline` and logs its rung's numbers
to `<run>/<stage>/monitor.jsonl`: `frames` the held-out image numbers (rung 0), `clips` the
ladder's motion numbers of two-pass clips.

    python -m vidlab.training.joint cache --run-dir checkpoints/joint
    python -m vidlab.training.joint clips --run-dir checkpoints/joint --steps 4000 [--centre-share ...]
    python -m vidlab.training.joint export clips --run-dir checkpoints/joint --out vidlab/zoo/shapes-tiny

The shipped stages' commands, with every value, are recipes (`vidlab.training.recipe show joint-...`).
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from .common import (MonitorLog, Stage, cells_off_background, drop_local_paths, export_target, rng_for,
                     run_summary, subject_weights, train_stage)
from .joint_data import Batches, build_data, default_init, load_parts
from .wan import WanTrainee, encode_captions, flow_sigmas
from .wan_parts import FLOW_SHIFT, TEXT_TOKENS, architecture, grown_architecture, grown_transformer
from ..world.captions import SHAPE_WORDS

STAGES = ("frames", "clips")
FIRST_FRAME = "clean"  # the contract of a model these stages trained: frame 0's latent is given clean
RECIPE_FILE = "vidlab_video.json"  # beside model_index.json in an exported `wan/` folder


# ---- the loss ---------------------------------------------------------------------------------

def flow_loss(model, tokenizer, x0: torch.Tensor, texts: list[str], subject_weight: float,
              first_frame_clean: bool = False, shape_cells: torch.Tensor | None = None,
              shape_weight: float = 1.0, shift: float = FLOW_SHIFT, corner_weight: float = 1.0) -> torch.Tensor:
    """Flow-matching loss of a (B, C, F, h, w) batch; with first_frame_clean, frame 0 is given as it is
    (not noised) and the loss counts frames 1.. only: the contract of the clip pass. Subject cells count
    `subject_weight` times, `shape_cells` (B, 1, F, h, w) at least `shape_weight` times (a second channel, the
    square/circle cells of `Batches(corner_cells=True)`, at least `corner_weight` times). Noise levels are
    drawn with the flow `shift` (larger: more of the loss at high noise, where the layout is decided)."""
    noise = torch.randn_like(x0)
    sigma = flow_sigmas(torch.rand(x0.shape[0]), shift).view(-1, 1, 1, 1, 1)
    xt = (1 - sigma) * x0 + sigma * noise
    if first_frame_clean:
        xt = torch.cat([x0[:, :, :1], xt[:, :, 1:]], dim=2)
    states = encode_captions(tokenizer, model.encoder, texts, TEXT_TOKENS)
    pred = model.transformer(xt, sigma.view(-1) * 1000, states, return_dict=False)[0]
    weight = subject_weights(cells_off_background(x0), subject_weight)
    if shape_cells is not None:
        weight = torch.maximum(weight, subject_weights(shape_cells[:, :1], shape_weight))
        if shape_cells.shape[1] > 1:
            weight = torch.maximum(weight, subject_weights(shape_cells[:, 1:], corner_weight))
    err = weight * (pred - (noise - x0)) ** 2
    return (err[:, :, 1:] if first_frame_clean else err).mean()


# The pair of shapes the model draws alike (round squares) and whose captions the text encoder keeps closest
# (`experiments/shape_word_states.py`): each surface form with its twin of the same paraphrase index.
CONFUSED_WORDS = {a: b for x, y in zip(SHAPE_WORDS["square"], SHAPE_WORDS["circle"]) for a, b in ((x, y), (y, x))}
CONFUSED_PATTERN = re.compile(r"\b(" + "|".join(CONFUSED_WORDS) + r")\b")


def state_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per caption, |a - b| / |a| over every token of (B, T, D) caption states (padding zero)."""
    return (a - b).flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1).clamp_min(1e-8)


def confused_twins(texts: list[str]) -> tuple[list[int], list[str]]:
    """The captions naming a square or a circle (their indices) and each with the other shape's word."""
    idx = [i for i, t in enumerate(texts) if CONFUSED_PATTERN.search(t)]
    return idx, [CONFUSED_PATTERN.sub(lambda m: CONFUSED_WORDS[m.group(1)], texts[i]) for i in idx]


def word_margin_loss(tokenizer, encoder, texts: list[str], margin: float) -> torch.Tensor:
    """How far short of `margin` the caption states of each square / circle caption and its twin (the other
    shape's word, nothing else changed) stay apart, by `state_distance`, averaged; zero with no such caption.
    It acts on the text encoder alone: the transformer gets the two words' states farther apart to draw from.
    Measured (model card): from 0.30 to 0.49 apart, and not one square more was drawn."""
    idx, twins = confused_twins(texts)
    if not idx:
        return torch.zeros(())
    states = encode_captions(tokenizer, encoder, [texts[i] for i in idx] + twins, TEXT_TOKENS)
    return torch.relu(margin - state_distance(states[:len(idx)], states[len(idx):])).mean()


# ---- the stages -----------------------------------------------------------------------------------

def joint_stage(run_dir, stage: str, init=None, seed: int = 0, batch: int = 64, clip_batch: int = 12,
                frame_share: float = 0.25, lr: float = 1e-3, subject_weight: float = 3.0,
                monitor_every: int = 500, centre_share: float = 0.5, first_share: float = 0.5,
                shape_weight: float = 1.0, frame_shift: float = FLOW_SHIFT, clip_shape_weight: float = 1.0,
                num_layers: int | None = None, ffn_dim: int | None = None, corner_weight: float = 1.0,
                word_margin: float = 0.0, word_margin_weight: float = 1.0, patch: int | None = None,
                square_share: float | None = None) -> Stage:
    """Stage `frames` or `clips` (see the module doc), started from the WanPipeline folder `init`.

    frames: `batch` single frames a step. clips: `clip_batch` anchored clips (`centre_share` of them
    from the centre pool) and, making `frame_share` of the step's samples, single frames (`first_share`
    of those clips' first frames under clip captions). `shape_weight` > 1: the scene frames' cells that only
    the shape word decides count that many times (`common.shape_difference_cells`). `frame_shift`: the flow
    shift of the single frames' noise levels (the clips keep the sampler's). `clip_shape_weight` > 1: the same
    for every clip frame's shape-deciding cells (from the pools' subject centres per frame). `corner_weight` > 1:
    on single and clip frames, the cells where a square and a circle of the subject's place and size differ
    count at least that many times (the two shapes most often confused).
    `num_layers` / `ffn_dim` / `patch`: grow init's transformer first, deeper, wider or with finer tokens
    (`wan_parts.grown_transformer`, kept by the run).
    `word_margin` > 0: `word_margin_weight` x `word_margin_loss` of the step's captions is added (the square and
    circle captions' states pushed at least that far apart).
    `square_share`: that share of the single scene frames are squares, the rest other shapes (None: as the cache
    draws them, about a quarter squares).
    """
    if not 0.0 <= frame_share < 1.0:
        raise ValueError(f"frame_share={frame_share} must be in [0, 1)")
    if not 0.0 <= centre_share <= 1.0:
        raise ValueError(f"centre_share={centre_share} must be in [0, 1]")
    if not 0.0 <= first_share <= 1.0:
        raise ValueError(f"first_share={first_share} must be in [0, 1]")
    if square_share is not None and not 0.0 <= square_share <= 1.0:
        raise ValueError(f"square_share={square_share} must be in [0, 1] (None: the scenes as the cache draws them)")
    for name, value in (("shape_weight", shape_weight), ("clip_shape_weight", clip_shape_weight),
                        ("corner_weight", corner_weight)):
        if value < 1.0:
            raise ValueError(f"{name}={value} must be >= 1 (1: no extra weight)")
    for name, value in (("word_margin", word_margin), ("word_margin_weight", word_margin_weight)):
        if value < 0.0:
            raise ValueError(f"{name}={value} must be >= 0 (word_margin 0: no margin term)")
    if frame_shift <= 0.0:
        raise ValueError(f"frame_shift={frame_shift} must be > 0 (1: noise levels uniform)")
    torch.manual_seed(seed)
    parts, model = trainee(run_dir, stage, init, num_layers, ffn_dim, patch)
    tokenizer, vae = parts["tokenizer"], parts["vae"]
    data = Batches(run_dir, vae, centre_share=centre_share if stage == "clips" else 0.0, first_share=first_share,
                   shape_cells=shape_weight != 1.0, corner_cells=corner_weight != 1.0,
                   clip_cells=stage == "clips" and (clip_shape_weight != 1.0 or corner_weight != 1.0),
                   square_share=square_share)
    n_frames = round(clip_batch * frame_share / (1 - frame_share)) if stage == "clips" else batch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    ema = {n: p.detach().clone() for n, p in model.named_parameters()}
    monitor = JointMonitor(run_dir, stage, parts, every=monitor_every)

    def margin(texts: list[str]) -> torch.Tensor:
        if word_margin == 0.0:
            return torch.zeros(())
        return word_margin_weight * word_margin_loss(tokenizer, model.encoder, texts, word_margin)

    def loss_fn(step):
        monitor.maybe_run(step, model, ema)
        rng = rng_for(seed + STAGES.index(stage) * 1000, step)
        torch.manual_seed(seed * 100003 + step)
        x_frames, t_frames, c_frames = data.single_frames(rng, n_frames)
        loss_frames = flow_loss(model, tokenizer, x_frames, t_frames, subject_weight, shape_cells=c_frames,
                                shape_weight=shape_weight, shift=frame_shift, corner_weight=corner_weight)
        if stage == "frames":
            return loss_frames + margin(t_frames)
        x_clips, t_clips, c_clips = data.clips(rng, clip_batch)
        loss_clips = flow_loss(model, tokenizer, x_clips, t_clips, subject_weight, first_frame_clean=True,
                               shape_cells=c_clips, shape_weight=clip_shape_weight, corner_weight=corner_weight)
        return (clip_batch * loss_clips + n_frames * loss_frames) / (clip_batch + n_frames) + margin(t_frames + t_clips)

    result = Stage(stage, model, opt, loss_fn, lr, ema=ema, warmup=100, save_every=100)
    result.monitor, result.parts = monitor, parts
    return result


def trainee(run_dir, stage: str, init=None, num_layers: int | None = None, ffn_dim: int | None = None,
            patch: int | None = None):
    """The parts of the WanPipeline folder `init` and the transformer + text encoder a stage trains, grown as
    the run was (`wan_parts.grown_transformer`); no data is read. A `stage` not in `STAGES` is refused."""
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r} is not one of {list(STAGES)}")
    parts = load_parts(init or default_init())
    current = architecture(parts["transformer"])
    grow = grown_architecture(run_dir, stage, num_layers, ffn_dim, patch, current)
    if any(current[k] != v for k, v in grow.items()):  # (an init already grown stays)
        parts["transformer"] = grown_transformer(parts["transformer"], **grow)
    return parts, WanTrainee(parts["transformer"], parts["text_encoder"]).train().requires_grad_(True)


class JointMonitor:
    """Every `every` steps: the EMA weights sampled through the real WanPipeline, the rung's numbers logged."""

    def __init__(self, run_dir, stage: str, parts: dict, every: int = 500):
        self.log = MonitorLog(Path(run_dir) / stage / "monitor.jsonl", every)
        self.stage, self.parts = stage, parts

    def maybe_run(self, step: int, model, ema: dict) -> None:
        row = self.log.maybe_run(step, model, ema, lambda m: rung_numbers(self.stage, pipeline_of(self.parts, m)))
        if row is not None:
            print(json.dumps(row), flush=True)


def pipeline_of(parts: dict, model):
    """A WanPipeline around the trainee's transformer and text encoder (shared, not copied)."""
    from diffusers import WanPipeline
    pipe = WanPipeline(**dict(parts, transformer=model.transformer, text_encoder=model.encoder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def rung_numbers(stage: str, pipe, n_images: int = 32, n_clips: int = 16) -> dict:
    """frames: rung 0 (held-out prompts, single frames); clips: rung 0, the clip pass alone from a given
    frame 0 (`wan_ladder.anchored_numbers`) and the ladder's motion numbers of two-pass clips."""
    from .wan_ladder import anchored_numbers, image_numbers, ladder_numbers
    numbers = {"rung0": image_numbers(pipe, n=n_images)}
    if stage == "clips":
        numbers["from_frame0"] = anchored_numbers(pipe, n=n_clips, steps=10)
        numbers["motion"] = ladder_numbers(pipe, "text", None, n=n_clips, steps=10, first_frame=FIRST_FRAME)
    return numbers


# ---- export -----------------------------------------------------------------------------------

def trained_pipeline(run_dir, stage: str, init=None, use_ema: bool = True):
    """The stage's weights (EMA by default) in a WanPipeline over the parts of `init`; needs only the stage's
    checkpoint folder, not the run's data."""
    parts, model = trainee(run_dir, stage, init)
    d = Path(run_dir) / stage
    if not (d / "state.safetensors").exists():
        raise FileNotFoundError(f"run_dir={str(run_dir)!r} has no {stage}/state.safetensors: train stage {stage} "
                                "there first")
    state = load_file(d / "state.safetensors")
    if use_ema and (d / "ema.safetensors").exists():
        state.update(load_file(d / "ema.safetensors"))
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return pipeline_of(parts, model)


def export_stage(run_dir, stage: str, out_dir=None, init=None, vae_dir=None) -> Path:
    """Write the stage's pipeline as <zoo>/wan (optionally with the VAE of `vae_dir`, e.g. a fine-tuned decoder)
    and its recipe file: stage and steps, and for `clips` that frame 0 is given clean (two-pass text-to-video)."""
    pipe = trained_pipeline(run_dir, stage, init)
    if vae_dir is not None:
        from diffusers import AutoencoderKLWan
        vae = AutoencoderKLWan.from_pretrained(vae_dir)
        vae.register_to_config(latents_mean=pipe.vae.config.latents_mean, latents_std=pipe.vae.config.latents_std)
        pipe.register_modules(vae=vae)
    out = export_target(out_dir) / "wan"
    pipe.save_pretrained(out, safe_serialization=True)
    drop_local_paths(out)
    progress = json.loads((Path(run_dir) / stage / "progress.json").read_text())
    recipe = {"first_frame": FIRST_FRAME} if stage == "clips" else {}  # a `frames` model has made no clip yet
    (out / RECIPE_FILE).write_text(json.dumps({**recipe, "stage": stage, "steps": progress["step"]}, indent=1) + "\n")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train the zoo's joint video model in stages (see module doc).")
    parser.add_argument("command", choices=["cache", *STAGES, "export"])
    parser.add_argument("stage", nargs="?", choices=STAGES, help="export: which stage's weights")
    parser.add_argument("--run-dir", default="checkpoints/joint")
    parser.add_argument("--init", default=None, help="the WanPipeline folder a stage starts from (default: the zoo's)")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=64, help="frames: single frames a step")
    parser.add_argument("--clip-batch", type=int, default=12, help="clips: anchored clips a step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--centre-share", type=float, default=0.5,
                        help="clips: share of clips from the centre pool (frame 0 at the centre)")
    parser.add_argument("--frame-share", type=float, default=0.25,
                        help="clips: share of a step's samples that are single frames")
    parser.add_argument("--first-share", type=float, default=0.5,
                        help="share of single frames that are clips' first frames under clip captions")
    parser.add_argument("--shape-weight", type=float, default=1.0,
                        help="how many times the cells only the shape word decides count (1: as other subject cells)")
    parser.add_argument("--clip-shape-weight", type=float, default=1.0,
                        help="clips: as --shape-weight, on every clip frame (needs pools cached with centres)")
    parser.add_argument("--corner-weight", type=float, default=1.0,
                        help="how many times the cells where a square and a circle differ count (square/circle scenes)")
    parser.add_argument("--frame-shift", type=float, default=FLOW_SHIFT,
                        help="flow shift of the single frames' noise levels (larger: more loss at high noise)")
    parser.add_argument("--word-margin", type=float, default=0.0,
                        help="push the square and circle captions' text states at least this far apart (0: off)")
    parser.add_argument("--word-margin-weight", type=float, default=1.0, help="the word margin term's weight")
    parser.add_argument("--num-layers", type=int, default=None, help="grow the init's transformer to N blocks")
    parser.add_argument("--ffn-dim", type=int, default=None, help="grow the init's transformer's feed-forward")
    parser.add_argument("--patch", type=int, default=None,
                        help="finer tokens: the init's transformer's spatial patch side made P (a divisor of its own)")
    parser.add_argument("--square-share", type=float, default=None,
                        help="share of the single scene frames that are squares (default: as the cache, about 1/4)")
    parser.add_argument("--monitor-every", type=int, default=500)
    parser.add_argument("--cache-frames", type=int, default=12_000, help="cache: single frames encoded")
    parser.add_argument("--cache-clips", type=int, default=4_000, help="cache: clips per pool encoded")
    parser.add_argument("--vae-dir", default=None, help="export: a VAE folder to ship instead of init's")
    parser.add_argument("--out", default=None, help="export: the zoo folder to write wan/ into")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.command == "cache":
        print(json.dumps(build_data(args.run_dir, args.init, args.cache_frames, args.cache_clips)))
        return
    if args.command == "export":
        if args.stage is None:
            parser.error("export needs the stage: export frames | export clips")
        print(export_stage(args.run_dir, args.stage, args.out, args.init, args.vae_dir))
        return
    stage = joint_stage(args.run_dir, args.command, args.init, batch=args.batch, clip_batch=args.clip_batch,
                        lr=args.lr, monitor_every=args.monitor_every, centre_share=args.centre_share,
                        frame_share=args.frame_share, first_share=args.first_share, shape_weight=args.shape_weight,
                        frame_shift=args.frame_shift, clip_shape_weight=args.clip_shape_weight,
                        num_layers=args.num_layers, ffn_dim=args.ffn_dim, corner_weight=args.corner_weight,
                        word_margin=args.word_margin, word_margin_weight=args.word_margin_weight, patch=args.patch,
                        square_share=args.square_share)
    result = train_stage(stage, args.run_dir, args.steps)
    print(run_summary(result, t0, stage=args.command))


if __name__ == "__main__":
    main()
