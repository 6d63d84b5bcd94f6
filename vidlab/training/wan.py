"""The zoo's Wan-style joint video model from scratch, single-stage (the ladder's earlier designs), and its parts.

The shipped transformer now comes from the staged recipe (`training.joint`: frames, then clips
anchored on frame 0), which reuses this module's latent pool, captions and flow-matching pieces.

1. `vae` / `decoder`: the frame-wise `AutoencoderKLWan` (`wan_vae`), and its decoder fine-tuned.
2. `pool`: clips of 9 frames (training reads 8 of them) (8 directions x 2 speeds, a tenth still, a fifth growing or
   shrinking) rendered and encoded once into `pool.safetensors`; a clip read backwards is a clip
   of the opposite motion, so the pool counts twice.
3. `wan-label` / `wan-text`: the transformer by flow matching (x_t = (1 - s) x_0 + s e, target
   e - x_0, s drawn with the sampler's shift), conditioned on the motion class (the ladder's
   first rung) or on the caption through a UMT5 encoder trained with it (10% captions dropped
   for classifier-free guidance). Every `monitor_every` steps the run samples clips with the
   same `WanPipeline` the workbench uses and writes direction accuracy and caption sensitivity
   to `monitor.jsonl`: the ladder's numbers, as the run goes.

python -m vidlab.training.wan vae --steps 500; ... pool --clips 5000; ... train --conditioning text --steps 3000;
... export --out vidlab/zoo/shapes-tiny. Every stage resumes from its checkpoint. `... decoder --steps 900` and
`... export-decoder --out ZOO` fine-tune and ship the VAE's decoder alone (encoder frozen).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..world.captions import clip_caption
from ..world.clips import START_MODES, random_clip
from ..world.shapes import BACKGROUNDS, COLORS, DIRECTIONS, OPPOSITE, SHAPES, SIZES, SPEEDS, Scene
from .common import (MonitorLog, Stage, cells_off_background, export_target, only_rows_learn, rng_for, run_summary,
                     subject_weights, train_stage)
from .wan_parts import (FLOW_SHIFT, TEXT_TOKENS, LabelEncoder, motion_class, text_encoder_config, text_tokens,
                        transformer_config)
from .wan_vae import decoder_stage, default_vae_dir, export_decoder, load_vae, vae_stage

POOL_FRAMES = 9  # clips are rendered with a frame to spare: training reads 8 consecutive ones, from frame 0 or 1
TRAIN_FRAMES = 8
GROWTHS = (None, "grows", "shrinks")


# ---- stage 2: the latent pool -------------------------------------------------------------------

def clip_labels(clip) -> list[int]:
    s = clip.scene
    return [SHAPES.index(s.shape), list(COLORS).index(s.color), list(BACKGROUNDS).index(s.background),
            list(SIZES).index(s.size), list(DIRECTIONS).index(clip.direction) if clip.direction else -1,
            list(SPEEDS).index(clip.speed), GROWTHS.index(clip.growth)]


def pool_chunk(seed: int, first: int, n: int, start: str, p_growth: float) -> list:
    """The `n` clips of a pool's chunk that starts at clip `first`: deterministic, so a chunk can be drawn again."""
    rng = rng_for(seed, first)
    return [random_clip(rng, POOL_FRAMES, p_still=0.1, p_growth=p_growth, p_camera=0.0, start=start)
            for _ in range(n)]


def pool_centres(chunk: list) -> torch.Tensor:
    """(n, POOL_FRAMES, 2) each clip's subject centre per frame, in pixels."""
    return torch.tensor([[(x, y) for x, y, _, _ in clip.trajectory()] for clip in chunk], dtype=torch.float32)


def build_pool(run_dir, clips: int = 5000, seed: int = 1, batch_frames: int = 288, start: str = "fits",
               p_growth: float = 0.2, vae=None, name: str = "pool") -> Path:
    """Render and encode `clips` training clips (resumable in chunks); returns <name>.safetensors with the
    latents' `mean` and `std` (n, POOL_FRAMES, C, h, w), the clips' `labels` (`clip_labels`) and the subject's
    `centres` per frame (`pool_centres`; a chunk cached before centres were kept gets them by drawing its clips
    again, checked against its labels).

    start: where frame 0 lies (`random_clip`). 'centred': every path's midpoint within 8 px of the
    frame's centre. A clip caption names no position, so a model must otherwise draw the start
    anywhere the path fits: the ladder's first design measured that as the step the tiny model
    had not taken at a quarter of its budget (see the model card). 'centre': frame 0 at the centre
    whatever the motion (the subject may leave the frame), so only the caption says the direction.
    vae: the frame-wise VAE to encode with (default: the run's own `vae` stage).
    """
    out = Path(run_dir) / f"{name}.safetensors"
    parts = Path(run_dir) / f"{name}_parts"
    parts.mkdir(exist_ok=True)
    per_chunk = batch_frames // POOL_FRAMES
    tensors = []
    for c, first in enumerate(range(0, clips, per_chunk)):
        part = parts / f"{c:05d}.safetensors"
        chunk = pool_chunk(seed, first, min(per_chunk, clips - first), start, p_growth)
        labels = torch.tensor([clip_labels(c_) for c_ in chunk])
        if part.exists():
            cached = load_file(part)
            if not torch.equal(cached["labels"], labels):
                raise ValueError(f"{part} does not hold the clips of seed={seed}, start={start!r}, "
                                 f"p_growth={p_growth}: cache into a new run folder")
            tensors.append({**cached, "centres": pool_centres(chunk)})
            continue
        vae = vae if vae is not None else load_vae(run_dir)
        pixels = torch.cat([c_.render() for c_ in chunk]) * 2 - 1  # (n*F, 3, 64, 64)
        with torch.no_grad():
            post = vae.encode(pixels[:, :, None]).latent_dist
        shape = (len(chunk), POOL_FRAMES, *post.mean.shape[1:2], *post.mean.shape[3:])
        tensors.append({"mean": post.mean[:, :, 0].reshape(shape).contiguous(),
                        "std": post.std[:, :, 0].reshape(shape).contiguous(),
                        "labels": labels, "centres": pool_centres(chunk)})
        save_file(tensors[-1], part)
    pool = {k: torch.cat([t[k] for t in tensors]) for k in ("mean", "std", "labels", "centres")}
    save_file(pool, out)
    return out


def load_pool(run_dir) -> dict:
    pool = load_file(Path(run_dir) / "pool.safetensors")
    pool["channel_mean"] = pool["mean"].mean(dim=(0, 1, 3, 4))
    pool["channel_std"] = pool["mean"].std(dim=(0, 1, 3, 4))
    return pool


def caption_of(labels: list[int], reverse: bool = False) -> tuple[str, int]:
    """The caption and motion class of a pool clip (read backwards when `reverse`)."""
    shape, color, background, size, direction, speed, growth = labels
    direction = list(DIRECTIONS)[direction] if direction >= 0 else None
    speed, growth = list(SPEEDS)[speed], GROWTHS[growth]
    if reverse:
        direction = OPPOSITE[direction] if direction else None
        growth = {"grows": "shrinks", "shrinks": "grows"}.get(growth)
    scene = Scene(SHAPES[shape], list(COLORS)[color], list(BACKGROUNDS)[background], "center", list(SIZES)[size])
    return clip_caption(scene, direction, speed, growth), motion_class(direction, speed)


# ---- stage 3: the transformer -------------------------------------------------------------------

CONDITIONINGS = ("label", "text", "zoo-clip")


def encode_captions(tokenizer, text_encoder, texts: list[str], max_length: int = TEXT_TOKENS) -> torch.Tensor:
    """(B, max_length, D) states as WanPipeline makes them: padding positions set to zero."""
    tok = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True,
                    add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    states = text_encoder(tok.input_ids, tok.attention_mask).last_hidden_state
    return states * tok.attention_mask[..., None].to(states.dtype)


def build_text_encoder(tokenizer):
    from transformers import UMT5Config, UMT5EncoderModel
    return UMT5EncoderModel(UMT5Config(**text_encoder_config(len(tokenizer))))


def zoo_clip_encoder(tokenizer):
    """The ablation's text path: the zoo's CLIP text encoder, frozen but for the motion words' rows.

    This is how both AnimateDiff recipes conditioned their video models (`motion.motion_stage`):
    the image model's encoder, trained on static captions, with only the embeddings of words that
    clips alone use ('moves', 'go_left', 'quickly', ...) learning.
    """
    from ..backends.presets import ZOO_PATH
    from .motion import load_text, motion_word_ids
    _, encoder = load_text(ZOO_PATH)
    encoder.requires_grad_(False)
    only_rows_learn(encoder.get_input_embeddings().weight, motion_word_ids(tokenizer))
    return encoder


class WanTrainee(torch.nn.Module):
    """What the stage trains: the transformer and its condition encoder (text or label)."""

    def __init__(self, transformer, encoder):
        super().__init__()
        self.transformer = transformer
        self.encoder = encoder


def flow_sigmas(u: torch.Tensor, shift: float = FLOW_SHIFT) -> torch.Tensor:
    """Uniform draws -> noise levels with the sampler's shift (more time at high noise, where motion is set)."""
    return shift * u / (1 + (shift - 1) * u)


def wan_stage(run_dir, conditioning: str = "text", seed: int = 0, batch: int = 24, lr: float = 5e-4,
              caption_dropout: float = 0.1, monitor_every: int = 250, subject_weight: float = 1.0) -> Stage:
    """subject_weight: the flow-matching error on subject cells (`common.cells_off_background`) counts this many times;
    a subject is ~6% of a frame, and the background is learned first (see the model card's ladder)."""
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning={conditioning!r} is not one of {list(CONDITIONINGS)}")
    from diffusers import WanTransformer3DModel

    from ..world.tokenizer import build_tokenizer
    torch.manual_seed(seed)
    pool = load_pool(run_dir)
    tokenizer = build_tokenizer()
    encoder = {"text": build_text_encoder, "zoo-clip": zoo_clip_encoder}.get(conditioning, lambda _: LabelEncoder())(
        tokenizer)
    model = WanTrainee(WanTransformer3DModel(**transformer_config()), encoder)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # weight decay off for the ablation's frozen table: rows without gradient must stay as they are
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0 if conditioning == "zoo-clip" else 1e-2)
    ema = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    mu, sd = pool["channel_mean"].view(1, -1, 1, 1, 1), pool["channel_std"].view(1, -1, 1, 1, 1)
    name = f"wan-{conditioning}"
    monitor = Monitor(run_dir, name, conditioning, tokenizer, pool, every=monitor_every)

    def condition(texts_or_labels):
        if conditioning == "label":
            return model.encoder(torch.tensor(texts_or_labels))
        return encode_captions(tokenizer, model.encoder, texts_or_labels, text_tokens(conditioning))

    def loss_fn(step):
        monitor.maybe_run(step, model, ema)
        rng = rng_for(seed, step)
        torch.manual_seed(seed * 100003 + step)
        idx = torch.from_numpy(rng.integers(0, pool["mean"].shape[0], batch))
        reverse = rng.random(batch) < 0.5
        offset = rng.integers(0, POOL_FRAMES - TRAIN_FRAMES + 1, batch)
        z = pool["mean"][idx] + pool["std"][idx] * torch.randn_like(pool["mean"][idx])  # (B, F, C, h, w)
        z = torch.stack([(zi.flip(0) if r else zi)[o:o + TRAIN_FRAMES] for zi, r, o in zip(z, reverse, offset)])
        z = z.permute(0, 2, 1, 3, 4)
        x0 = (z - mu) / sd  # (B, C, F, h, w), as WanPipeline's latents_mean / latents_std define them
        drop = rng.random(batch) < caption_dropout
        conds = [caption_of(pool["labels"][i].tolist(), r) for i, r in zip(idx.tolist(), reverse)]
        if conditioning == "label":
            states = condition([model.encoder.null if d else k for (_, k), d in zip(conds, drop)])
        else:
            states = condition(["" if d else c for (c, _), d in zip(conds, drop)])
        noise = torch.randn_like(x0)
        sigma = flow_sigmas(torch.rand(batch)).view(-1, 1, 1, 1, 1)
        xt = (1 - sigma) * x0 + sigma * noise
        pred = model.transformer(xt, sigma.view(-1) * 1000, states, return_dict=False)[0]
        weight = subject_weights(cells_off_background(x0), subject_weight) if subject_weight != 1 else 1.0
        return (weight * (pred - (noise - x0)) ** 2).mean()

    stage = Stage(name, model, opt, loss_fn, lr, ema=ema, warmup=100, save_every=50)
    stage.monitor = monitor
    return stage


class Monitor:
    """Every `every` steps: sample clips with the EMA weights and log the ladder's numbers."""

    def __init__(self, run_dir, name, conditioning, tokenizer, pool, every: int = 250, n: int = 16):
        self.log = MonitorLog(Path(run_dir) / name / "monitor.jsonl", every)
        self.path = self.log.path
        self.conditioning, self.tokenizer, self.pool, self.n = conditioning, tokenizer, pool, n

    def maybe_run(self, step: int, model, ema: dict) -> None:
        from .wan_ladder import ladder_numbers
        self.log.maybe_run(step, model, ema, lambda m: ladder_numbers(self.pipeline(m), self.conditioning, m.encoder,
                                                                      n=self.n, steps=10))

    def pipeline(self, model):
        from .wan_ladder import make_pipeline
        return make_pipeline(model.transformer, self.tokenizer,
                             model.encoder if self.conditioning != "label" else None,
                             self.pool["channel_mean"], self.pool["channel_std"], vae=self.vae)

    @property
    def vae(self):
        if not hasattr(self, "_vae"):
            self._vae = load_vae(self.path.parent.parent)
        return self._vae


# ---- export ---------------------------------------------------------------------------------

def trained_pipeline(run_dir, conditioning: str = "text", use_ema: bool = True):
    """A run of `run_dir` as an in-memory WanPipeline, and its condition encoder (text encoder or labels)."""
    from ..world.tokenizer import build_tokenizer
    from .wan_ladder import make_pipeline

    d = Path(run_dir) / f"wan-{conditioning}"
    stage = wan_stage(run_dir, conditioning, monitor_every=0)
    state = load_file(d / "state.safetensors")
    if use_ema and (d / "ema.safetensors").exists():
        state.update(load_file(d / "ema.safetensors"))
    stage.model.load_state_dict(state)
    model = stage.model.eval().requires_grad_(False)
    pool = load_pool(run_dir)
    tokenizer = build_tokenizer()
    tokenizer.model_max_length = text_tokens(conditioning)  # what the encoder was trained to read
    text_encoder = model.encoder if conditioning != "label" else None
    pipe = make_pipeline(model.transformer, tokenizer, text_encoder, pool["channel_mean"], pool["channel_std"],
                         load_vae(run_dir))
    return pipe, model.encoder


def export_wan(run_dir, out_dir=None) -> Path:
    out = export_target(out_dir) / "wan"
    trained_pipeline(run_dir, "text")[0].save_pretrained(out, safe_serialization=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train the zoo's Wan-style video model (see module doc).")
    parser.add_argument("command", choices=["vae", "decoder", "pool", "train", "export", "export-decoder"])
    parser.add_argument("--run-dir", default="checkpoints/wan")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--clips", type=int, default=5000)
    parser.add_argument("--start", default="fits", choices=START_MODES, help="pool: where frame 0 lies (random_clip)")
    parser.add_argument("--p-growth", type=float, default=0.2, help="pool: share of clips that grow or shrink")
    parser.add_argument("--conditioning", choices=CONDITIONINGS, default="text",
                        help="'label': the motion class (rung a); 'text': a UMT5 trained with the model (rung b); "
                             "'zoo-clip': the zoo's frozen CLIP with motion rows trained (the AnimateDiff recipes' path)")
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--monitor-every", type=int, default=250)
    parser.add_argument("--subject-weight", type=float, default=1.0, help="train: weight of subject latent cells")
    parser.add_argument("--out", default=None, help="export: the zoo folder to write wan/ into")
    parser.add_argument("--vae-dir", default=None,
                        help="decoder: the trained VAE folder whose decoder is fine-tuned (default: the zoo's wan/vae)")
    parser.add_argument("--extra-res-blocks", type=int, default=0,
                        help="decoder, export-decoder: residual blocks added to the decoder, each starting as an "
                             "identity (wan_vae.deeper_vae)")
    parser.add_argument("--corner-weight", type=float, default=1.0,
                        help="decoder: how many times the pixels where a square and a circle differ count")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.command == "vae":
        result = train_stage(vae_stage(), args.run_dir, args.steps)
    elif args.command == "decoder":
        stage = decoder_stage(args.vae_dir or default_vae_dir(), extra_res_blocks=args.extra_res_blocks,
                              corner_weight=args.corner_weight)
        result = train_stage(stage, args.run_dir, args.steps)
    elif args.command == "export-decoder":
        print(export_decoder(args.run_dir, args.vae_dir or default_vae_dir(), args.out, args.extra_res_blocks))
        return
    elif args.command == "pool":
        print(build_pool(args.run_dir, args.clips, start=args.start, p_growth=args.p_growth))
        return
    elif args.command == "export":
        print(export_wan(args.run_dir, args.out))
        return
    else:
        stage = wan_stage(args.run_dir, args.conditioning, batch=args.batch, lr=args.lr,
                          monitor_every=args.monitor_every, subject_weight=args.subject_weight)
        result = train_stage(stage, args.run_dir, args.steps)
    print(run_summary(result, t0, command=args.command))


if __name__ == "__main__":
    main()
