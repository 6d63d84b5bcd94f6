"""Refining the *packaged* zoo: more training for its UNet, VAE decoder and ControlNet.

The first recipe (`vidlab.training.from_scratch`) trains every part from scratch into a private run
folder. These stages start from the zoo shipped inside the package instead, so anyone can rerun
them from a clean install, and they keep the latent space where it is: the VAE's encoder is
never touched, so the UNet, the ControlNet and the motion adapter keep reading the same latents.

Why: img2img at strength 0.3 lost the shape of 7 in 100 init frames. Three were squares of a
colour held out of training (purple) that the VAE decoded as circles; four were squares the UNet
pinched or rounded while denoising. The subject covers about 6% of a frame, so a plain
denoising loss spends 94% of its weight on flat background.

Stages (each resumable, `python -m vidlab.training.refine STAGE`):
1. `latents`     the zoo VAE's posterior of 24,000 training scenes, cached once, with the zoo's
                 own scaling factor (so the refined UNet speaks the shipped latent space).
2. `unet`        the zoo UNet, denoising loss weighted x`subject_weight` on the latent cells the
                 subject touches (from the cached canny edges), EMA with warm-up.
3. `decoder`     the zoo VAE's decoder alone (encoder frozen), subject-weighted L1 + L2 on scenes
                 of every colour-shape combination: the decoder is a codec, it never sees a caption.
4. `controlnet`  the zoo ControlNet against the refined UNet.
`export` writes the refined parts (unet, controlnet, vae) into the zoo folder.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from .common import (Stage, diffusion_batch, export_target, load_cache, render_training_batch, rng_for,
                     subject_pixel_weights, subject_weights, train_stage)
from .from_scratch import cache_latents, controlnet_loss, load_unet

RUN_DIR = "checkpoints/shapes-tiny-refine"


def _zoo(base=None) -> Path:
    from vidlab.backends.presets import ZOO_PATH
    return Path(base or ZOO_PATH)


def _text(base):
    from .motion import load_text  # the tokenizer and text encoder only, not the whole pipeline
    tokenizer, text_encoder = load_text(base)
    return tokenizer, text_encoder.requires_grad_(False)


def cache_zoo_latents(run_dir, n: int = 24000, seed: int = 1, batch: int = 200, base=None) -> Path:
    """Stage 'latents': the packaged VAE's posterior of n training scenes, with its scaling factor."""
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(_zoo(base) / "vae").eval()
    return cache_latents(run_dir, n=n, seed=seed, batch=batch, vae=vae,
                         scaling_factor=float(vae.config.scaling_factor))


def outline_cells(edges: torch.Tensor, latent_size: int) -> torch.Tensor:
    """(B, 1, h, w) float mask of the latent cells an outline (B, H, W) uint8 touches, grown by one cell."""
    outline = edges.float().div(255)[:, None]                             # (B, 1, H, W)
    cells = F.adaptive_max_pool2d(outline, latent_size)                    # (B, 1, h, w)
    return F.max_pool2d(cells, 3, stride=1, padding=1)


def weighted_denoising_loss(pred, noise, timestep_weights, cells, subject_weight: float):
    """min-SNR-weighted epsilon MSE, each latent cell the subject touches counting `subject_weight` times."""
    w = subject_weights(cells, subject_weight)                             # (B, 1, h, w)
    per_sample = (w * (pred - noise) ** 2).mean(dim=(1, 2, 3)) / w.mean(dim=(1, 2, 3))
    return (timestep_weights * per_sample).mean()


def unet_stage(run_dir, batch: int = 64, lr: float = 3e-4, seed: int = 0, subject_weight: float = 4.0,
               base=None) -> Stage:
    """Stage 'unet': the zoo UNet, subject-weighted denoising loss, starting from the shipped weights."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    cache = load_cache(run_dir)
    tokenizer, text_encoder = _text(_zoo(base))
    unet = UNet2DConditionModel.from_pretrained(_zoo(base) / "unet")
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)
    ema = {k: v.detach().clone() for k, v in unet.named_parameters()}
    latent_size = cache["mean"].shape[-1]

    def loss_fn(step):
        rng = rng_for(seed, step)
        torch.manual_seed(seed * 100003 + step)
        noisy, t, noise, states, w, idx = diffusion_batch(cache, rng, batch, tokenizer, text_encoder)
        pred = unet(noisy, t, states).sample
        return weighted_denoising_loss(pred, noise, w, outline_cells(cache["edges"][idx], latent_size), subject_weight)

    return Stage("unet", unet, opt, loss_fn, lr, ema=ema, warmup=50, save_every=50)


def decoder_stage(run_dir, batch: int = 32, lr: float = 2e-4, seed: int = 0, subject_weight: float = 10.0,
                  base=None) -> Stage:
    """Stage 'decoder': the zoo VAE's decoder alone on scenes of every combination, encoder frozen."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL.from_pretrained(_zoo(base) / "vae")
    vae.requires_grad_(False)
    decoder = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in decoder:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(decoder, lr=lr, weight_decay=0.0)

    def loss_fn(step):
        x, m, _ = render_training_batch(rng_for(seed, step), batch, split="all")
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
        w = subject_pixel_weights(m, subject_weight)
        return (w * (rec - x).abs()).mean() + (w * (rec - x) ** 2).mean()

    return Stage("decoder", vae, opt, loss_fn, lr, warmup=20, save_every=50)


def controlnet_stage(run_dir, batch: int = 32, lr: float = 2e-4, seed: int = 0, use_ema: bool = False,
                     base=None) -> Stage:
    """Stage 'controlnet': the zoo ControlNet, trained on against the refined (frozen) UNet."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    cache = load_cache(run_dir)
    tokenizer, text_encoder = _text(_zoo(base))
    unet = load_unet(run_dir, use_ema).requires_grad_(False)
    controlnet = ControlNetModel.from_pretrained(_zoo(base) / "controlnet")
    opt = torch.optim.AdamW(controlnet.parameters(), lr=lr, weight_decay=1e-2)
    loss_fn = controlnet_loss(controlnet, unet, cache, tokenizer, text_encoder, batch, seed)
    return Stage("controlnet", controlnet, opt, loss_fn, lr, warmup=20, save_every=50)


def _save(model, folder: Path) -> None:
    """save_pretrained, without the local path from_pretrained recorded in the config."""
    model.save_pretrained(folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config.pop("_name_or_path", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def export_refined(run_dir, out_dir=None, use_ema: bool = False, base=None) -> list[str]:
    """Write every refined part that has a checkpoint into the zoo folder; returns their names."""
    from diffusers import AutoencoderKL, ControlNetModel

    run_dir, out = Path(run_dir), export_target(out_dir)
    written = []
    if (run_dir / "unet" / "state.safetensors").exists():
        _save(load_unet(run_dir, use_ema), out / "unet")
        written.append("unet")
    if (run_dir / "decoder" / "state.safetensors").exists():
        vae = AutoencoderKL.from_pretrained(_zoo(base) / "vae")
        vae.load_state_dict(load_file(run_dir / "decoder" / "state.safetensors"))
        _save(vae, out / "vae")
        written.append("vae")
    if (run_dir / "controlnet" / "state.safetensors").exists():
        controlnet = ControlNetModel.from_pretrained(_zoo(base) / "controlnet")
        controlnet.load_state_dict(load_file(run_dir / "controlnet" / "state.safetensors"))
        _save(controlnet, out / "controlnet")
        written.append("controlnet")
    return written


STAGES = {"unet": unet_stage, "decoder": decoder_stage, "controlnet": controlnet_stage}
DEFAULT_STEPS = {"unet": 900, "decoder": 800, "controlnet": 300}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Refine the packaged shapes-tiny zoo, stage by stage (resumable).")
    parser.add_argument("stage", choices=["latents", *STAGES, "export"])
    parser.add_argument("--run-dir", default=RUN_DIR)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-size", type=int, default=24000, help="latents: scenes encoded")
    parser.add_argument("--ema", action="store_true", help="export: the UNet's EMA instead of the raw weights")
    parser.add_argument("--out", default=None, help="export: target zoo folder (default: results/zoo/shapes-tiny, "
                        "a copy of the packaged zoo; pass vidlab/zoo/shapes-tiny to ship)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.stage == "latents":
        print(cache_zoo_latents(args.run_dir, n=args.cache_size))
        return
    if args.stage == "export":
        print(json.dumps({"written": export_refined(args.run_dir, args.out, use_ema=args.ema)}))
        return
    kwargs = {k: v for k, v in (("batch", args.batch), ("lr", args.lr)) if v is not None}
    stage = STAGES[args.stage](args.run_dir, seed=args.seed, **kwargs)
    result = train_stage(stage, args.run_dir, args.steps or DEFAULT_STEPS[args.stage])
    print(json.dumps({"stage": args.stage, "step": result["step"], "seconds": round(result["seconds"], 1),
                      "final_loss": float(np.mean(result["losses"][-50:]))}))


if __name__ == "__main__":
    main()
