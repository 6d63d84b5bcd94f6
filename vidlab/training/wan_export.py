"""Write a trained Wan-style run into the zoo as a whole `WanPipeline` folder (`<zoo>/wan/`).

The folder loads offline with `WanPipeline.from_pretrained(folder)` (safetensors): tokenizer,
UMT5 text encoder, transformer (EMA weights), frame-wise VAE whose config carries the latent
normalisation measured on the training pool, UniPC flow scheduler.
"""
from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from .common import export_target


def trained_pipeline(run_dir, use_ema: bool = True):
    """The text-conditioned run of `run_dir` as an in-memory WanPipeline."""
    from .wan import load_pool, load_vae, wan_stage
    from .wan_ladder import make_pipeline

    d = Path(run_dir) / "wan-text"
    stage = wan_stage(run_dir, "text", monitor_every=0)
    state = load_file(d / "state.safetensors")
    if use_ema and (d / "ema.safetensors").exists():
        state.update(load_file(d / "ema.safetensors"))
    stage.model.load_state_dict(state)
    model = stage.model.eval().requires_grad_(False)
    pool = load_pool(run_dir)
    from ..world.tokenizer import build_tokenizer
    return make_pipeline(model.transformer, build_tokenizer(), model.encoder, pool["channel_mean"],
                         pool["channel_std"], load_vae(run_dir))


def export_wan(run_dir, out_dir=None) -> Path:
    out = export_target(out_dir) / "wan"
    trained_pipeline(run_dir).save_pretrained(out, safe_serialization=True)
    return out
