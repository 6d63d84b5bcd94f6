"""The zoo's frame-wise Wan VAE: trained from scratch (`vae_stage`), its decoder fine-tuned (`decoder_stage`).

`python -m vidlab.training.wan vae --steps 1300` trains it; `... wan decoder --steps 900` fine-tunes the
decoder of a trained VAE folder (the zoo's by default) with its encoder frozen, and `... wan
export-decoder --out ZOO` ships it as <zoo>/wan/vae.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from .common import (CORNER_PAIR, Stage, drop_local_paths, export_target, render_training_batch, rng_for, scene_attrs,
                     shape_difference_cells, subject_pixel_weights, subject_weights)
from .wan_parts import make_framewise, vae_config


def vae_stage(seed: int = 0, batch: int = 32, lr: float = 1e-3, kl_weight: float = 1e-6) -> Stage:
    from diffusers import AutoencoderKLWan
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**vae_config())
    make_framewise(vae)

    def loss_fn(step):
        torch.manual_seed(seed * 100003 + step)
        images, masks, _ = render_training_batch(rng_for(seed, step), batch)
        x = images[:, :, None]  # (B, 3, 1, 64, 64): frames as one-frame videos
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        w = subject_pixel_weights(masks)[:, :, None]
        err = rec - x
        return (w * (err.abs() + err ** 2)).mean() + kl_weight * post.kl().mean()

    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    return Stage("wan-vae", vae, opt, loss_fn, lr, warmup=50, save_every=50)


def deeper_vae(vae, extra_res_blocks: int = 1, seed: int = 0):
    """The same VAE with `extra_res_blocks` more residual blocks in every stack, each starting as an exact
    identity (its second convolution zero: the block returns its input), so until trained it encodes
    and decodes bit for bit as `vae` does. diffusers' `num_res_blocks` is shared by encoder and decoder:
    the encoder's new blocks are kept frozen as identities by `decoder_stage`, so the latents stay.
    """
    from diffusers import AutoencoderKLWan
    if extra_res_blocks < 1:
        raise ValueError(f"extra_res_blocks={extra_res_blocks}: give 1 or more (0 is the VAE as it is)")
    config = {k: v for k, v in vae.config.items() if not k.startswith("_")}
    config["num_res_blocks"] += extra_res_blocks
    torch.manual_seed(seed)
    deep = AutoencoderKLWan(**config)
    missing, unexpected = deep.load_state_dict(vae.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"the deeper VAE does not hold these weights of the VAE: {unexpected[:4]}")
    new_blocks = {key.rsplit(".", 2)[0] for key in missing if key.endswith("conv2.weight")}
    with torch.no_grad():
        for name in new_blocks:
            conv = deep.get_submodule(name).conv2
            conv.weight.zero_()
            conv.bias.zero_()
    make_framewise(deep)
    return deep


def corner_pixels(scenes: list, image_size: int = 64) -> torch.Tensor:
    """(B, 1, H, W) 1.0 on the pixels where each square or circle scene's subject and the other of the two
    shapes, same place and size, differ (a square's corners, a circle's rim), grown by one pixel; 0 elsewhere
    and on the other shapes (`common.shape_difference_cells` at pixel resolution)."""
    centres = torch.tensor([s.resolved_center(image_size) for s in scenes], dtype=torch.float32)
    return shape_difference_cells(scene_attrs(scenes), centres, latent_size=image_size, image_size=image_size,
                                  against=CORNER_PAIR)


def decoder_stage(vae_dir, seed: int = 5, batch: int = 32, lr: float = 5e-4, extra_res_blocks: int = 0,
                  corner_weight: float = 1.0) -> Stage:
    """Fine-tune the decoder of a trained frame-wise VAE (`vae_dir`: a diffusers folder), encoder frozen.

    The latent space stays exactly where it was, so every latent cache, pool and transformer trained
    on it stays valid; only what the latents decode to sharpens. The decoder reads posterior samples
    (what a generator's latents resemble), subject pixels weighted x10 (`subject_pixel_weights`).
    extra_res_blocks: first make the VAE deeper (`deeper_vae`); the whole decoder trains, its new blocks
    with it, while the encoder's new blocks stay frozen identities.
    corner_weight > 1: the pixels where a square and a circle differ (`corner_pixels`) count at least that many
    times (the round trip reads some squares as circles; measured at 30: no more squares kept than the same
    minutes without it, see the model card).
    """
    from diffusers import AutoencoderKLWan
    if corner_weight < 1.0:
        raise ValueError(f"corner_weight={corner_weight} must be >= 1 (1: no extra weight)")
    torch.manual_seed(seed)
    vae = AutoencoderKLWan.from_pretrained(vae_dir)
    if extra_res_blocks:
        vae = deeper_vae(vae, extra_res_blocks)
    vae.requires_grad_(False)
    trainable = [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]
    for p in trainable:
        p.requires_grad_(True)

    def loss_fn(step):
        torch.manual_seed(seed * 100003 + step)
        images, masks, scenes = render_training_batch(rng_for(seed, step), batch)
        x = images[:, :, None]  # (B, 3, 1, 64, 64)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        err = vae.decode(z).sample - x
        w = subject_pixel_weights(masks)
        if corner_weight != 1.0:
            w = torch.maximum(w, subject_weights(corner_pixels(scenes, x.shape[-1]), corner_weight))
        w = w[:, :, None]
        return (w * (err.abs() + err ** 2)).mean()

    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    stage = Stage("wan-decoder", vae, opt, loss_fn, lr, warmup=50, save_every=100)
    make_framewise(vae)  # already zero; a decoder tap on past frames must stay so (AdamW keeps zero at zero)
    return stage


def load_vae(run_dir):
    from diffusers import AutoencoderKLWan
    vae = AutoencoderKLWan(**vae_config())
    vae.load_state_dict(load_file(Path(run_dir) / "wan-vae" / "state.safetensors"))
    return vae.eval().requires_grad_(False)


def default_vae_dir() -> Path:
    from ..backends.presets import ZOO_PATH
    return Path(ZOO_PATH) / "wan" / "vae"


def export_decoder(run_dir, vae_dir, out_dir=None, extra_res_blocks: int = 0) -> Path:
    """The VAE of `vae_dir` with the fine-tuned decoder of `run_dir`, written as <zoo>/wan/vae
    (extra_res_blocks: as the run was trained with)."""
    stage = decoder_stage(vae_dir, extra_res_blocks=extra_res_blocks)
    state = load_file(Path(run_dir) / "wan-decoder" / "state.safetensors")
    if set(state) != set(stage.model.state_dict()):
        raise ValueError(f"{run_dir}: its decoder was not trained with extra_res_blocks={extra_res_blocks} on "
                         f"{vae_dir} (the weights' names differ); give the --extra-res-blocks it was trained with")
    stage.model.load_state_dict(state)
    out = export_target(out_dir) / "wan" / "vae"
    stage.model.save_pretrained(out, safe_serialization=True)
    drop_local_paths(out)  # a VAE loaded from a folder remembers it: no path of this machine is shipped
    return out
