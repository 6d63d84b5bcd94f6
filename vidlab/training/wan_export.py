"""Write a trained Wan-style run into the zoo as a whole `WanPipeline` folder (`<zoo>/wan/`).

The folder loads offline with `WanPipeline.from_pretrained(folder)` (safetensors): tokenizer,
UMT5 text encoder, transformer (EMA weights), frame-wise VAE whose config carries the latent
normalisation measured on the training pool, UniPC flow scheduler.
"""
from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from .common import export_target


def trained_pipeline(run_dir, conditioning: str = "text", use_ema: bool = True):
    """A run of `run_dir` as an in-memory WanPipeline, and its condition encoder (text encoder or labels)."""
    from ..world.tokenizer import build_tokenizer
    from .wan import load_pool, load_vae, text_tokens, wan_stage
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
