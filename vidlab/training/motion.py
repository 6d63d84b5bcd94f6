"""The zoo's factorized video model: shapes-world clips, the image UNet with motion modules, all fine-tuned.

Stage 'motion' comes after the zoo's text-to-image stages and starts from the *packaged* zoo
(`vidlab/zoo/shapes-tiny`), so anyone can rerun it from a clean install:

1. data: `random_clip` draws a clip of 8 or 16 frames: the subject moves in one of 8 directions
   at one of two speeds or stays still, a fifth of clips grow or shrink, a tenth are a camera pan
   over a textured background; `clip_caption` says all of it. Colour-shape combinations in
   `HELD_OUT_COMBOS` never appear, so evaluation can use prompts the model has never seen.
2. model: `UNetMotionModel.from_unet2d(zoo UNet, MotionAdapter(...))`. Every motion module's
   output projection starts at zero, so at step 0 the model *is* the image model. Trained: every
   UNet weight, and the token embeddings of words only clips use ("moves", "up", "quickly",
   "pans", ...), which static captions never contain.
3. loss: epsilon prediction, one timestep per clip, min-SNR-5 (with the x0 weighting below SNR 1),
   noise offset, 10% caption dropout. Each batch holds 32 frames: 4 clips x 8 frames, every 4th
   step 2 clips x 16 frames (so the 16-frame windows of `sliding_window` stay in distribution).

`python -m vidlab.training.motion train` trains the shipped recipe (resumable); `export` writes
`video_unet/`, `text_encoder/` and `tokenizer/` into the zoo.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ..world.captions import POSITION_WORDS, SHAPE_WORDS, TEMPLATES, vocabulary
from ..world.clips import CARDINAL, random_clip
from ..world.shapes import BACKGROUNDS, COLORS, DIRECTIONS, SIZES
from ..world.tokenizer import MAX_TOKENS, build_tokenizer
from .common import Stage, add_noise, export_target, only_rows_learn, rng_for, scheduler_config, train_stage

CLIP_FRAMES = (8, 16)
FRAMES_PER_BATCH = 32
WEIGHTINGS = ("min_snr", "x0")
X0_WEIGHT_CAP = 20.0


# ---- the model -----------------------------------------------------------------------------

def motion_adapter_config() -> dict:
    """MotionAdapter matching the zoo UNet (block_out_channels (32, 64, 64), 1 layer per block)."""
    return dict(block_out_channels=(32, 64, 64), motion_layers_per_block=1, motion_num_attention_heads=4,
                motion_norm_num_groups=16, motion_max_seq_length=32, use_motion_mid_block=True)


def static_words() -> set[str]:
    """Words of the text-to-image captions; their embeddings stay frozen."""
    words = set(COLORS) | set(BACKGROUNDS) | set(SIZES)
    words |= {w for forms in POSITION_WORDS.values() for f in forms for w in f.split()}
    words |= {w for forms in SHAPE_WORDS.values() for w in forms}
    for t in TEMPLATES:
        words |= {w for w in t.replace(",", " , ").replace(":", " : ").split() if not w.startswith("{")}
    return words


def motion_word_ids(tokenizer) -> list[int]:
    """Token ids of the words only clip captions use (trained with the motion modules)."""
    frozen = static_words()
    return sorted(tokenizer.convert_tokens_to_ids(w) for w in vocabulary() if w not in frozen)


def extend_text_encoder(text_encoder, vocab_size: int, seed: int = 0):
    """Give the text encoder rows for words added to the tokenizer after it was trained.

    The new rows start at the mean embedding plus small noise (deterministic in seed); old rows
    are kept exactly.
    """
    emb = text_encoder.get_input_embeddings()
    old = emb.weight.shape[0]
    if old >= vocab_size:
        return text_encoder
    g = torch.Generator().manual_seed(seed)
    extra = emb.weight.detach().mean(0, keepdim=True) + 0.02 * torch.randn(vocab_size - old, emb.weight.shape[1],
                                                                            generator=g)
    new = torch.nn.Embedding(vocab_size, emb.weight.shape[1])
    with torch.no_grad():
        new.weight.copy_(torch.cat([emb.weight.detach(), extra]))
    text_encoder.set_input_embeddings(new)
    text_encoder.config.vocab_size = vocab_size
    return text_encoder


def zero_motion_outputs(unet_motion) -> None:
    """Zero each motion module's output projection: the untrained model equals the image model."""
    for name, module in unet_motion.named_modules():
        if "motion_modules" in name and name.endswith("proj_out") and isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)


class MotionTrainee(torch.nn.Module):
    """What the 'motion' stage trains: the UNet with motion modules and the text encoder."""

    def __init__(self, unet_motion, text_encoder):
        super().__init__()
        self.unet = unet_motion
        self.text_encoder = text_encoder


def load_text(base):
    """The zoo's tokenizer (rebuilt, with the added words) and text encoder."""
    from transformers import CLIPTextModel

    tokenizer = build_tokenizer()
    text_encoder = extend_text_encoder(CLIPTextModel.from_pretrained(Path(base) / "text_encoder"), len(tokenizer))
    return tokenizer, text_encoder.eval()


def load_base(base):
    """The zoo's VAE, tokenizer (rebuilt, with the added words), text encoder and UNet."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    base = Path(base)
    vae = AutoencoderKL.from_pretrained(base / "vae").eval().requires_grad_(False)
    tokenizer, text_encoder = load_text(base)
    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    return vae, tokenizer, text_encoder, unet.eval()


def timestep_weight(snr: torch.Tensor, weighting: str = "min_snr") -> torch.Tensor:
    """Weight of each clip's epsilon error given its signal-to-noise ratio (see motion_stage)."""
    w = torch.clamp(snr, max=5.0) / snr  # min-SNR-5
    if weighting == "x0":
        w = torch.maximum(w, torch.clamp(1 / snr, max=X0_WEIGHT_CAP))
    return w


def motion_stage(run_dir, base=None, lr: float = 1e-3, seed: int = 0, frames_per_batch: int = FRAMES_PER_BATCH,
                 noise_offset: float = 0.05, caption_dropout: float = 0.1, weighting: str = "x0",
                 unet_lr: float = 2e-4, curriculum_steps: int = 500, centred_fraction: float = 0.5) -> Stage:
    """The video model: motion modules on the zoo UNet (output projections zero: at step 0 it is the
    image model), every weight fine-tuned (spatial layers at unet_lr, motion modules at lr), exported as
    a diffusers `UNetMotionModel`. The defaults are the shipped video UNet's recipe.

    weighting: 'min_snr' (min-SNR-5 on the epsilon error) or 'x0' (also min-SNR-5 where SNR > 1;
    below, the epsilon error is weighted by 1/SNR up to 20, i.e. measured as an error of the clean clip).
    curriculum_steps: the first steps draw only the four cardinal directions, then all eight.
    centred_fraction: the share of clips whose path is centred (see `random_clip`); the rest start
    anywhere the path fits.
    The token embeddings of the motion words learn in every mode; every other word stays frozen.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r} is not one of {list(WEIGHTINGS)}")
    from diffusers import DDIMScheduler, MotionAdapter, UNetMotionModel

    from vidlab.backends.presets import ZOO_PATH

    torch.manual_seed(seed)
    vae, tokenizer, text_encoder, unet = load_base(base or ZOO_PATH)
    unet_motion = UNetMotionModel.from_unet2d(unet, MotionAdapter(**motion_adapter_config()))
    zero_motion_outputs(unet_motion)
    unet_motion.requires_grad_(True)
    text_encoder.requires_grad_(False)
    table = text_encoder.get_input_embeddings().weight
    only_rows_learn(table, motion_word_ids(tokenizer))
    model = MotionTrainee(unet_motion, text_encoder)
    motion_params = [p for n, p in unet_motion.named_parameters() if "motion_modules" in n]
    spatial_params = [p for n, p in unet_motion.named_parameters() if "motion_modules" not in n]
    # weight decay 0 on the table: rows without gradient then stay exactly as they were
    groups = [{"params": motion_params, "weight_decay": 1e-2},
              {"params": [table], "weight_decay": 0.0, "lr": lr},
              {"params": spatial_params, "weight_decay": 0.0, "lr": unet_lr}]
    opt = torch.optim.AdamW(groups, lr=lr)
    for g in opt.param_groups:  # run_loop scales every group's lr by its schedule
        g["lr_scale"] = g["lr"] / lr
    ema = {n: p.detach().clone() for n, p in model.named_parameters()
           if p.requires_grad and n.startswith("unet.")}
    alphas_cumprod = DDIMScheduler(**scheduler_config()).alphas_cumprod
    scale = vae.config.scaling_factor

    def loss_fn(step):
        rng = rng_for(seed, step)
        torch.manual_seed(seed * 100003 + step)
        num_frames = CLIP_FRAMES[1] if step % 4 == 3 else CLIP_FRAMES[0]
        batch = frames_per_batch // num_frames
        directions = CARDINAL if step < curriculum_steps else tuple(DIRECTIONS)
        clips = [random_clip(rng, num_frames, directions=directions,
                             start="centred" if rng.random() < centred_fraction else "fits") for _ in range(batch)]
        pixels = torch.cat([c.render() for c in clips]) * 2 - 1  # (B*F, 3, 64, 64)
        with torch.no_grad():
            post = vae.encode(pixels).latent_dist
            latents = (post.mean + post.std * torch.randn_like(post.mean)) * scale
        latents = latents.view(batch, num_frames, *latents.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, C, F, h, w)
        texts = ["" if rng.random() < caption_dropout else c.caption for c in clips]
        ids = tokenizer(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt").input_ids
        states = text_encoder(ids)[0]
        noise = torch.randn_like(latents) + noise_offset * torch.randn(batch, latents.shape[1], 1, 1, 1)
        t = torch.randint(0, 1000, (batch,))
        a = alphas_cumprod[t].view(-1, 1, 1, 1, 1)
        noisy = add_noise(latents, noise, a)
        # diffusers' UNetMotionModel takes text states per frame: (B*F, L, D)
        pred = unet_motion(noisy, t, states.repeat_interleave(num_frames, dim=0)).sample
        w = timestep_weight(a.view(-1) / (1 - a.view(-1)), weighting)
        return (w * ((pred - noise) ** 2).mean(dim=(1, 2, 3, 4))).mean()

    return Stage("motion", model, opt, loss_fn, lr, ema=ema, warmup=100, save_every=50)


def train_motion(run_dir, steps: int = 1600, base=None, seed: int = 0, **recipe) -> dict:
    """Train (or resume) the motion stage; `recipe`: `motion_stage`'s keywords (default: the shipped one)."""
    return train_stage(motion_stage(run_dir, base, seed=seed, **recipe), run_dir, steps)


def export_motion(run_dir, out_dir=None, base=None, use_ema: bool = True) -> Path:
    """Write the trained video model (`video_unet/`, a diffusers `UNetMotionModel` that
    `AnimateDiffPipeline(unet=...)` loads), the text encoder (with the motion words' embeddings) and the
    tokenizer into a zoo folder."""
    out = export_target(out_dir)
    d = Path(run_dir) / "motion"
    state = load_file(d / "state.safetensors")
    if use_ema and (d / "ema.safetensors").exists():
        state.update(load_file(d / "ema.safetensors"))
    stage = motion_stage(run_dir, base)
    stage.model.load_state_dict(state)
    stage.model.unet.requires_grad_(False).save_pretrained(out / "video_unet", safe_serialization=True)
    stage.model.text_encoder.requires_grad_(False).save_pretrained(out / "text_encoder", safe_serialization=True)
    build_tokenizer().save_pretrained(out / "tokenizer")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train the zoo's factorized video UNet on shapes-world clips "
                                                 "(defaults: the shipped recipe).")
    parser.add_argument("command", choices=["train", "export"])
    parser.add_argument("--run-dir", default="checkpoints/shapes-tiny")
    parser.add_argument("--base", default=None, help="zoo folder to start from (default: the packaged zoo)")
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames-per-batch", type=int, default=FRAMES_PER_BATCH)
    parser.add_argument("--out", default=None, help="export: target zoo folder (default: results/zoo/shapes-tiny, "
                        "a copy of the packaged zoo; pass vidlab/zoo/shapes-tiny to ship)")
    parser.add_argument("--weighting", choices=WEIGHTINGS, default="x0",
                        help="loss weighting over timesteps (see motion_stage)")
    parser.add_argument("--unet-lr", type=float, default=2e-4, help="learning rate of the spatial layers")
    parser.add_argument("--curriculum-steps", type=int, default=500,
                        help="steps that draw only the four cardinal directions before all eight")
    parser.add_argument("--centred-fraction", type=float, default=0.5,
                        help="share of clips whose path is centred in the frame (see random_clip)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "export":
        print(export_motion(args.run_dir, args.out, args.base))
        return
    result = train_motion(args.run_dir, args.steps, args.base, args.seed, lr=args.lr,
                          frames_per_batch=args.frames_per_batch, weighting=args.weighting, unet_lr=args.unet_lr,
                          curriculum_steps=args.curriculum_steps, centred_fraction=args.centred_fraction)
    print(json.dumps({"stage": "motion", "step": result["step"], "seconds": round(result["seconds"], 1),
                      "final_loss": float(np.mean(result["losses"][-50:]))}))


if __name__ == "__main__":
    main()
