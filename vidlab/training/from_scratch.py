"""Training recipes of the offline zoo (`shapes-tiny`), reproducible from a seed and resumable.

Stages, in order (each a function `train_<stage>(run_dir, steps=..., seed=...)`):
1. `vae`          AutoencoderKL 64x64x3 -> 16x16x4, L1 weighted x10 on subject pixels + tiny KL;
                  then `vae_decoder`: the decoder alone is fine-tuned with the encoder frozen, so
                  the latent space stays put while edges sharpen. Last (after `export`, from the
                  exported VAE) `vae_encoder`: the encoder alone against the frozen decoder; `export`
                  again writes it.
2. `text`         a word-level tokenizer and a small CLIPTextModel, pre-trained to name the
                  caption's attributes from its pooled tokens (so the UNet gets clean conditioning
                  from step one); frozen afterwards.
3. `latents`      every training image encoded once (posterior mean and std) and cached.
4. `unet`         UNet2DConditionModel, DDPM epsilon, min-SNR-5 weighting, noise offset,
                  10% caption dropout (for classifier-free guidance), EMA.
5. `controlnet`   ControlNetModel copied from the UNet, trained on canny edges of the same images.

Every stage writes `run_dir/<stage>/state.safetensors` (model), `optim.pt` (optimizer state, loaded
with `weights_only=True`) and `progress.json` every `save_every` steps; calling it again resumes.
`python -m vidlab.training.from_scratch --help` runs stages from the shell.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..strategies.image_fields import canny_edges
from ..world.shapes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, Scene, random_scene, render_array
from ..world.tokenizer import MAX_TOKENS, build_tokenizer
from .common import (EXPORT_DIR, Stage, diffusion_batch, load_cache, random_captions, render_training_batch, rng_for,
                     scene_attrs, scheduler_config, subject_pixel_weights, text_config, train_stage, unet_config,
                     vae_config)

ATTRIBUTES = {"shape": SHAPES, "color": tuple(COLORS), "background": tuple(BACKGROUNDS),
              "position": POSITIONS, "size": tuple(SIZES) + ("unspecified",)}


# ---- 1. VAE ----------------------------------------------------------------------------------

def vae_stage(run_dir, batch: int = 32, lr: float = 1e-3, seed: int = 0, decoder_only: bool = False,
              kl_weight: float = 1e-6) -> Stage:
    """The AutoencoderKL (stage 'vae'), or its decoder alone with the encoder frozen ('vae_decoder')."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_config())
    stage = "vae_decoder" if decoder_only else "vae"
    if decoder_only:  # start from the finished first stage, encoder frozen
        vae.load_state_dict(load_file(Path(run_dir) / "vae" / "state.safetensors"))
        for p in list(vae.encoder.parameters()) + list(vae.quant_conv.parameters()):
            p.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def loss_fn(step):
        x, m, _ = render_training_batch(rng_for(seed, step), batch)
        torch.manual_seed(seed * 100003 + step)
        post = vae.encode(x).latent_dist
        z = post.mean if decoder_only else post.sample()
        rec = vae.decode(z).sample
        w = subject_pixel_weights(m)
        loss = (w * (rec - x).abs()).mean() + (w * (rec - x) ** 2).mean()
        if not decoder_only:
            loss = loss + kl_weight * post.kl().mean()
        return loss

    return Stage(stage, vae, opt, loss_fn, lr)


def train_vae(run_dir, steps: int = 900, batch: int = 32, lr: float = 1e-3, seed: int = 0,
              decoder_only: bool = False) -> dict:
    """Train the VAE (or fine-tune its decoder) for `steps`, resuming from run_dir."""
    return train_stage(vae_stage(run_dir, batch, lr, seed, decoder_only), run_dir, steps)


def vae_encoder_stage(run_dir, batch: int = 32, lr: float = 3e-4, seed: int = 0, anchor_weight: float = 0.1,
                      base=None) -> Stage:
    """Stage 'vae_encoder': the packaged zoo VAE's encoder alone, decoder frozen.

    Small squares came back from the VAE with rounded corners (read as circles), and fine-tuning the
    decoder did not help: the corners are lost in the encoder. Training the encoder against the
    frozen decoder keeps the latent space the one the decoder (and so the UNet) reads; the anchor
    term, `anchor_weight` x the squared distance to the original encoder's latents (scaled units),
    keeps img2img latents where the UNet was trained.
    """
    from diffusers import AutoencoderKL

    from vidlab.backends.presets import ZOO_PATH

    torch.manual_seed(seed)
    vae = AutoencoderKL.from_pretrained(Path(base or ZOO_PATH) / "vae")
    frozen = AutoencoderKL.from_pretrained(Path(base or ZOO_PATH) / "vae").eval().requires_grad_(False)
    encoder = list(vae.encoder.parameters()) + list(vae.quant_conv.parameters())
    vae.requires_grad_(False)
    for p in encoder:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(encoder, lr=lr, weight_decay=0.0)
    scale = vae.config.scaling_factor

    def loss_fn(step):
        x, m, _ = render_training_batch(rng_for(seed, step), batch)
        z = vae.encode(x).latent_dist.mean
        with torch.no_grad():
            z_old = frozen.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
        w = subject_pixel_weights(m)
        anchor = ((z - z_old) * scale).pow(2).mean()
        return (w * (rec - x).abs()).mean() + (w * (rec - x) ** 2).mean() + anchor_weight * anchor

    return Stage("vae_encoder", vae, opt, loss_fn, lr, warmup=20, save_every=50)


def train_vae_encoder(run_dir, steps: int = 300, batch: int = 32, lr: float = 3e-4, seed: int = 0) -> dict:
    return train_stage(vae_encoder_stage(run_dir, batch, lr, seed), run_dir, steps)


def load_vae(run_dir):
    from diffusers import AutoencoderKL
    vae = AutoencoderKL(**vae_config())
    # the latest VAE stage run: encoder fine-tune > decoder fine-tune > first stage
    stage = next((s for s in ("vae_encoder", "vae_decoder") if (Path(run_dir) / s / "state.safetensors").exists()),
                 "vae")
    vae.load_state_dict(load_file(Path(run_dir) / stage / "state.safetensors"))
    return vae.eval()


# ---- 2. text encoder --------------------------------------------------------------------------

class AttributeHeads(torch.nn.Module):
    """Text encoder plus one linear head per attribute, reading the mean of the token states."""

    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder
        dim = text_encoder.config.hidden_size
        self.heads = torch.nn.ModuleDict({k: torch.nn.Linear(dim, len(v)) for k, v in ATTRIBUTES.items()})

    def forward(self, ids, attention):
        h = self.text_encoder(ids).last_hidden_state                      # (B, T, D)
        pooled = (h * attention[..., None]).sum(1) / attention.sum(1, keepdim=True)
        return {k: head(pooled) for k, head in self.heads.items()}


def scene_labels(scenes: list[Scene], sizes_named: list[bool]) -> dict[str, torch.Tensor]:
    labels = {k: torch.tensor([v.index(getattr(s, k)) for s in scenes]) for k, v in ATTRIBUTES.items() if k != "size"}
    labels["size"] = torch.tensor([ATTRIBUTES["size"].index(s.size if named else "unspecified")
                                   for s, named in zip(scenes, sizes_named)])
    return labels


def text_stage(run_dir, batch: int = 128, lr: float = 2e-3, seed: int = 0) -> Stage:
    """The text encoder, pre-trained to name every attribute of a caption (stage 'text')."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model = AttributeHeads(CLIPTextModel(CLIPTextConfig(**text_config(len(tokenizer)))))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)

    def loss_fn(step):
        rng = rng_for(seed, step)
        scenes = [random_scene(rng, "all") for _ in range(batch)]
        texts = random_captions(rng, scenes)
        tok = tokenizer(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
        logits = model(tok.input_ids, tok.attention_mask)
        named = [any(w in t.split() for w in SIZES) for t in texts]
        labels = scene_labels(scenes, named)
        return sum(F.cross_entropy(logits[k], labels[k]) for k in logits)

    return Stage("text", model, opt, loss_fn, lr, warmup=50)


def train_text(run_dir, steps: int = 600, batch: int = 128, lr: float = 2e-3, seed: int = 0) -> dict:
    return train_stage(text_stage(run_dir, batch, lr, seed), run_dir, steps)


def load_text_encoder(run_dir):
    from transformers import CLIPTextConfig, CLIPTextModel
    tokenizer = build_tokenizer()
    model = AttributeHeads(CLIPTextModel(CLIPTextConfig(**text_config(len(tokenizer)))))
    model.load_state_dict(load_file(Path(run_dir) / "text" / "state.safetensors"))
    return tokenizer, model.text_encoder.eval(), model


# ---- 3. latent cache ----------------------------------------------------------------------

def cache_latents(run_dir, n: int = 24000, seed: int = 1, batch: int = 200, vae=None,
                  scaling_factor: float | None = None) -> Path:
    """Encode n training scenes once; store posterior mean/std, scenes and canny edges.

    `vae` defaults to the run's own; `scaling_factor` to 1 / std of the cached means (a new latent
    space), or pass the existing VAE's to keep training in the latent space it already has.
    """
    out = Path(run_dir) / "latents.safetensors"
    if out.exists():
        return out
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    vae = vae if vae is not None else load_vae(run_dir)
    rng = np.random.default_rng(seed)
    means, stds, attrs, edges = [], [], [], []
    with torch.no_grad():
        for _ in tqdm(range(0, n, batch), desc="encode", mininterval=5):
            scenes = [random_scene(rng, "train") for _ in range(batch)]
            arrays = [render_array(s) for s in scenes]
            x = torch.from_numpy(np.stack(arrays).astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
            post = vae.encode(x).latent_dist
            means.append(post.mean)
            stds.append(post.std)
            edges.append(torch.from_numpy(np.stack([canny_edges(a) for a in arrays])))
            attrs.append(scene_attrs(scenes))
    mean = torch.cat(means)
    tensors = {"mean": mean, "std": torch.cat(stds), "attrs": torch.cat(attrs),
               "edges": torch.cat(edges),
               "scaling_factor": torch.tensor([scaling_factor or 1.0 / float(mean.std())])}
    save_file({k: v.contiguous() for k, v in tensors.items()}, out)
    return out


# ---- 4. UNet and 5. ControlNet ----------------------------------------------------------------

def unet_stage(run_dir, batch: int = 64, lr: float = 1e-3, seed: int = 0) -> Stage:
    """The UNet2DConditionModel on cached latents (stage 'unet')."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    cache = load_cache(run_dir)
    tokenizer, text_encoder, _ = load_text_encoder(run_dir)
    unet = UNet2DConditionModel(**unet_config())
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)
    ema = {k: v.detach().clone() for k, v in unet.named_parameters()}

    def loss_fn(step):
        rng = rng_for(seed, step)
        torch.manual_seed(seed * 100003 + step)
        noisy, t, noise, states, w, _ = diffusion_batch(cache, rng, batch, tokenizer, text_encoder)
        pred = unet(noisy, t, states).sample
        return (w * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()

    return Stage("unet", unet, opt, loss_fn, lr, ema=ema)


def train_unet(run_dir, steps: int = 2400, batch: int = 64, lr: float = 1e-3, seed: int = 0) -> dict:
    return train_stage(unet_stage(run_dir, batch, lr, seed), run_dir, steps)


def load_unet(run_dir, use_ema: bool = False):
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel(**unet_config())
    d = Path(run_dir) / "unet"
    state = load_file(d / "state.safetensors")
    if use_ema and (d / "ema.safetensors").exists():
        state.update(load_file(d / "ema.safetensors"))
    unet.load_state_dict(state)
    return unet.eval()


def controlnet_loss(controlnet, unet, cache: dict, tokenizer, text_encoder, batch: int, seed: int):
    """step -> min-SNR epsilon loss of the frozen UNet steered by the ControlNet from canny edges."""
    def loss_fn(step):
        rng = rng_for(seed, step)
        torch.manual_seed(seed * 100003 + step)
        noisy, t, noise, states, w, idx = diffusion_batch(cache, rng, batch, tokenizer, text_encoder)
        edges = cache["edges"][idx].float().div(255)[:, None].expand(-1, 3, -1, -1)  # (B, 3, H, W)
        down, mid = controlnet(noisy, t, states, controlnet_cond=edges, return_dict=False)
        pred = unet(noisy, t, states, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        return (w * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()
    return loss_fn


def controlnet_stage(run_dir, batch: int = 32, lr: float = 5e-4, seed: int = 0) -> Stage:
    """A canny ControlNetModel initialised from the (frozen) UNet (stage 'controlnet')."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    cache = load_cache(run_dir)
    tokenizer, text_encoder, _ = load_text_encoder(run_dir)
    unet = load_unet(run_dir).requires_grad_(False)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64))
    opt = torch.optim.AdamW(controlnet.parameters(), lr=lr, weight_decay=1e-2)
    loss_fn = controlnet_loss(controlnet, unet, cache, tokenizer, text_encoder, batch, seed)
    return Stage("controlnet", controlnet, opt, loss_fn, lr, save_every=50)


def train_controlnet(run_dir, steps: int = 800, batch: int = 32, lr: float = 5e-4, seed: int = 0) -> dict:
    return train_stage(controlnet_stage(run_dir, batch, lr, seed), run_dir, steps)


def load_controlnet(run_dir):
    from diffusers import ControlNetModel
    controlnet = ControlNetModel.from_unet(load_unet(run_dir), conditioning_embedding_out_channels=(16, 32, 64))
    controlnet.load_state_dict(load_file(Path(run_dir) / "controlnet" / "state.safetensors"))
    return controlnet.eval()


# ---- assembling the zoo -------------------------------------------------------------------------

def export_zoo(run_dir, out_dir) -> Path:
    """Write the trained stages as a diffusers-format pipeline folder (safetensors only)."""
    from diffusers import DDIMScheduler

    out = Path(out_dir)
    cache_scale = float(load_file(Path(run_dir) / "latents.safetensors")["scaling_factor"])
    vae = load_vae(run_dir)
    vae.register_to_config(scaling_factor=cache_scale)
    vae.save_pretrained(out / "vae", safe_serialization=True)
    tokenizer, text_encoder, _ = load_text_encoder(run_dir)
    text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(out / "tokenizer")
    load_unet(run_dir).save_pretrained(out / "unet", safe_serialization=True)
    DDIMScheduler(**scheduler_config()).save_pretrained(out / "scheduler")
    if (Path(run_dir) / "controlnet" / "state.safetensors").exists():
        load_controlnet(run_dir).save_pretrained(out / "controlnet", safe_serialization=True)
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
             "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
             "safety_checker": [None, None], "scheduler": ["diffusers", "DDIMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    return out


STAGES = {
    "vae": train_vae,
    "vae_decoder": lambda run_dir, **kw: train_vae(run_dir, decoder_only=True, **kw),
    "vae_encoder": train_vae_encoder,
    "text": train_text,
    "latents": cache_latents,
    "unet": train_unet,
    "controlnet": train_controlnet,
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train the shapes-tiny zoo, stage by stage (resumable).")
    parser.add_argument("stage", choices=list(STAGES) + ["export"])
    parser.add_argument("--run-dir", default="checkpoints/shapes-tiny")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--cache-size", type=int, default=None, help="latents: scenes encoded (default 24,000)")
    parser.add_argument("--out", default=None, help="export: target folder (default: results/zoo/shapes-tiny; "
                        "pass vidlab/zoo/shapes-tiny to ship)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.stage == "export":
        print(export_zoo(args.run_dir, args.out or EXPORT_DIR))
        return
    kwargs = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("lr", args.lr)) if v is not None}
    if args.stage != "latents":
        kwargs["seed"] = args.seed
    elif args.cache_size is not None:
        kwargs["n"] = args.cache_size
    result = STAGES[args.stage](args.run_dir, **kwargs)
    if isinstance(result, dict):
        print(json.dumps({"stage": args.stage, "step": result["step"], "seconds": round(result["seconds"], 1),
                          "final_loss": float(np.mean(result["losses"][-50:]))}))


if __name__ == "__main__":
    main()
