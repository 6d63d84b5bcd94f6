"""The parts of the zoo's Wan-style video model: configs, the frame-wise VAE, the text or label encoder.

Seed 003's design is one transformer attending jointly over every (t, h, w) patch of a clip
(diffusers' `WanTransformer3DModel`, 3D RoPE). The zoo's copy is tiny and trained from scratch:

- VAE: an `AutoencoderKLWan` that patchifies 2x2 pixels (patch_size=2), no further down-sampling
  and no temporal compression (`temperal_downsample=[]`, `scale_factor_temporal=1`): latents
  (B, 4, F, 32, 32) for 64x64 frames. Every causal convolution's taps on past frames are zero
  and stay zero (`make_framewise`), so a frame's latent depends on that frame alone: a clip
  encodes as its frames one by one, and a reversed clip's latents are the reversed latents.
- transformer: 4 blocks of width 96, patches of (1, 4, 4) latent cells = 8x8 pixels, so a
  clip of 9 frames is 9 x 8 x 8 = 576 tokens in one attention. `grown_transformer` makes a trained
  one deeper and its feed-forward wider without changing what it computes (a stage's `--num-layers`),
  or its tokens finer, starting as it on the frame enlarged (`--patch 2`: 4x4 pixels a token).
- conditioning: a tiny `UMT5EncoderModel` over the zoo's word-level tokenizer (what `WanPipeline`
  expects), or for the ladder's first rung a `LabelEncoder`: one learned vector per motion class,
  fed through the same cross-attention path.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..world.shapes import DIRECTIONS, SPEEDS

LATENT_CHANNELS = 4
TEXT_DIM = 64
TEXT_TOKENS = 24  # max_sequence_length the zoo's Wan pipeline is called with (clip captions need <= 22)
FLOW_SHIFT = 2.0
GROWN_FILE = "grown.json"  # in a run's stage folder: the growth of the starting transformer that run trains


def vae_config() -> dict:
    """A 0.3 M-parameter `AutoencoderKLWan`: 2x2 patchify, one resolution, frames kept apart."""
    return dict(base_dim=16, decoder_base_dim=32, z_dim=LATENT_CHANNELS, dim_mult=[1], num_res_blocks=1,
                attn_scales=[], temperal_downsample=[], in_channels=12, out_channels=12, patch_size=2,
                scale_factor_temporal=1, scale_factor_spatial=2,
                latents_mean=[0.0] * LATENT_CHANNELS, latents_std=[1.0] * LATENT_CHANNELS)


def transformer_config() -> dict:
    """A 0.6 M-parameter `WanTransformer3DModel` (joint attention over all patches, 3D RoPE)."""
    return dict(patch_size=(1, 4, 4), num_attention_heads=3, attention_head_dim=32, in_channels=LATENT_CHANNELS,
                out_channels=LATENT_CHANNELS, text_dim=TEXT_DIM, freq_dim=64, ffn_dim=256, num_layers=4,
                cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64)


def grown_transformer(transformer, num_layers: int | None = None, ffn_dim: int | None = None, seed: int = 0,
                      patch: int | None = None):
    """The same `WanTransformer3DModel` grown deeper (`num_layers` blocks), with a wider feed-forward
    (`ffn_dim`) and/or finer tokens (`patch`: the spatial patch side, a divisor of the model's).

    Depth and width keep what `transformer` computes (to float rounding) until trained. The old blocks keep
    their weights, spread evenly among the new ones (4 -> 8: old blocks at 0, 2, 4, 6). A new block starts as
    an identity: the output projections of its two attentions and of its feed-forward are zero, so it adds
    nothing to the residual stream. A wider feed-forward's new hidden units have a random input projection and
    a zero output projection, so they add nothing either. Training moves the zeros first (their gradients are
    not zero), then everything behind them.

    Finer tokens (`finer_tokens`) start as the old model looking at the frame enlarged: on a latent y the
    grown model gives exactly the old model's output on y enlarged k times (nearest), averaged back over k x k
    cells, k = old patch / patch. Tokens and RoPE positions are then the same; only the scale is new.
    """
    from diffusers import WanTransformer3DModel
    config = {k: v for k, v in transformer.config.items() if not k.startswith("_")}
    current = architecture(transformer)
    asked = {k: v or current[k] for k, v in (("num_layers", num_layers), ("ffn_dim", ffn_dim), ("patch", patch))}
    check_growth(current, asked)
    if asked == current:
        raise ValueError(f"num_layers={asked['num_layers']}, ffn_dim={asked['ffn_dim']}, patch={asked['patch']} is "
                         "the model as it is: give more of either or a finer patch")
    torch.manual_seed(seed)
    num_layers, old_layers, p_t = asked["num_layers"], current["num_layers"], config["patch_size"][0]
    grown = WanTransformer3DModel(**{**config, "num_layers": num_layers, "ffn_dim": asked["ffn_dim"],
                                     "patch_size": [p_t, asked["patch"], asked["patch"]]})
    where = {i: i * num_layers // old_layers for i in range(old_layers)}  # old block -> its place in the grown one
    old = finer_tokens(transformer.state_dict(), current["patch"] // asked["patch"], p_t)
    new = grown.state_dict()
    with torch.no_grad():
        for key, value in old.items():
            if key.startswith("blocks."):
                _, i, rest = key.split(".", 2)
                key = f"blocks.{where[int(i)]}.{rest}"
            target = new[key]
            if target.shape != value.shape:  # the feed-forward's hidden width: old units first, new ones after
                if key.endswith("ffn.net.2.weight"):
                    target.zero_()  # the new units' output columns
                target[tuple(slice(0, n) for n in value.shape)].copy_(value)
            else:
                target.copy_(value)
        for j in sorted(set(range(num_layers)) - set(where.values())):
            block = grown.blocks[j]
            for linear in (block.attn1.to_out[0], block.attn2.to_out[0], block.ffn.net[-1]):
                linear.weight.zero_()
                linear.bias.zero_()
    return grown


def finer_tokens(state: dict, k: int, p_t: int = 1) -> dict:
    """A transformer's state with patches k times finer per side: each cell of the new patch embedding's kernel
    is the sum of the k x k old cells it stands for (a patch read as the old one enlarged k times), each value
    of the new output projection the mean of the k x k old ones (the old patch averaged back). k = 1: as it is."""
    if k == 1:
        return state
    state = dict(state)
    w = state["patch_embedding.weight"]  # (D, C, p_t, P, P)
    d, c, _, side, _ = w.shape
    state["patch_embedding.weight"] = w.view(d, c, p_t, side // k, k, side // k, k).sum((4, 6))
    for name in ("proj_out.weight", "proj_out.bias"):  # rows ordered (p_t, P, P, C) as the model unpatchifies
        v = state[name]
        rows = v.view(p_t, side // k, k, side // k, k, -1, *v.shape[1:])
        state[name] = rows.mean((2, 4)).reshape(-1, *v.shape[1:])
    return state


def architecture(transformer) -> dict:
    """What `grown_transformer` can change, as a run's growth names it: blocks, feed-forward, patch side."""
    c = transformer.config
    return {"num_layers": c.num_layers, "ffn_dim": c.ffn_dim, "patch": c.patch_size[-1]}


def check_growth(current: dict, asked: dict) -> None:
    """Refuse a growth `grown_transformer` cannot make from a model of `architecture` `current`: fewer blocks, a
    narrower feed-forward, or a patch side that is not a divisor of the current one."""
    shrinks = any(asked.get(k, current[k]) < current[k] for k in ("num_layers", "ffn_dim"))
    patch = asked.get("patch", current["patch"])
    if shrinks or not isinstance(patch, int) or patch < 1 or current["patch"] % patch:
        raise ValueError(f"{asked}: a model can only grow (it has num_layers={current['num_layers']}, "
                         f"ffn_dim={current['ffn_dim']}; patch must divide its {current['patch']})")


def grown_architecture(run_dir, stage: str, num_layers: int | None, ffn_dim: int | None,
                       patch: int | None = None, current: dict | None = None) -> dict:
    """The growth a stage's run uses: as asked, recorded in `<run>/<stage>/grown.json` on a run's start (checked
    first against the init's `architecture` `current` where given); on a resume or an export (nothing asked) as
    recorded. Asking for another growth than the run's is refused."""
    path = Path(run_dir) / stage / GROWN_FILE
    recorded = json.loads(path.read_text()) if path.exists() else None
    asked = {k: v for k, v in (("num_layers", num_layers), ("ffn_dim", ffn_dim), ("patch", patch)) if v is not None}
    if not asked:
        return recorded or {}
    if recorded is not None and recorded != asked:
        raise ValueError(f"{path} says this run grew the transformer to {recorded}; asked {asked}: give the same "
                         "--num-layers / --ffn-dim / --patch, none, or a new --run-dir")
    if recorded is None and (Path(run_dir) / stage / "progress.json").exists():
        raise ValueError(f"{Path(run_dir) / stage} holds a run that did not grow the transformer; asked {asked}: "
                         "use a new --run-dir")
    if recorded is None and current is not None:
        check_growth(current, asked)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asked) + "\n")
    return asked


def text_encoder_config(vocab_size: int) -> dict:
    """A 0.1 M-parameter UMT5 encoder (relative positions: any caption length)."""
    return dict(vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                relative_attention_num_buckets=16, relative_attention_max_distance=32, dropout_rate=0.0,
                feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=2, decoder_start_token_id=0,
                is_encoder_decoder=False, tie_word_embeddings=False)


def scheduler_config() -> dict:
    """UniPC with flow-matching sigmas, as the real Wan pipelines use (shift for 64x64 clips)."""
    return dict(num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True,
                flow_shift=FLOW_SHIFT, solver_order=2)


def make_framewise(vae) -> None:
    """Zero every causal convolution's taps on past frames: each frame is encoded and decoded alone.

    Trained on single frames, those taps would only ever see zero padding and keep their random
    start; zeroed, a frame's latent cannot depend on its neighbours. AdamW leaves zero weights
    with zero gradient at zero.
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d
    for module in vae.modules():
        if isinstance(module, WanCausalConv3d) and module.kernel_size[0] > 1:
            with torch.no_grad():
                module.weight[:, :, :-1].zero_()


def is_framewise(vae) -> bool:
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d
    return all(not m.weight[:, :, :-1].any() for m in vae.modules()
               if isinstance(m, WanCausalConv3d) and m.kernel_size[0] > 1)


# ---- the ladder's first rung: the motion as a class label ----------------------------------------

MOTION_CLASSES = ("still",) + tuple(f"{d}|{s}" for d in DIRECTIONS for s in SPEEDS)


def motion_class(direction: str | None, speed: str) -> int:
    """Index of a motion in MOTION_CLASSES ('still' for no direction)."""
    return MOTION_CLASSES.index(f"{direction}|{speed}" if direction else "still")


class LabelEncoder(torch.nn.Module):
    """One learned vector per motion class (+ a null class for guidance), as a 1-token 'caption'.

    Stands where the text encoder stands, so the transformer, its cross-attention and the
    sampler are exactly the text model's: only the path from the condition to those vectors differs.
    """

    def __init__(self, num_classes: int = len(MOTION_CLASSES), dim: int = TEXT_DIM):
        super().__init__()
        self.table = torch.nn.Embedding(num_classes + 1, dim)  # the last row: no label
        self.null = num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table(labels)[:, None]  # (B, 1, dim)


def text_tokens(conditioning: str) -> int:
    """Caption length the text path reads: the zoo's CLIP has 16 positions, the UMT5 any number."""
    from ..world.tokenizer import MAX_TOKENS
    return MAX_TOKENS if conditioning == "zoo-clip" else TEXT_TOKENS
