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
  one deeper and its feed-forward wider without changing what it computes (a stage's `--num-layers`).
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


def grown_transformer(transformer, num_layers: int | None = None, ffn_dim: int | None = None, seed: int = 0):
    """The same `WanTransformer3DModel` grown deeper (`num_layers` blocks) and/or with a wider feed-forward
    (`ffn_dim`), computing what `transformer` computes until trained (to float rounding).

    The old blocks keep their weights, spread evenly among the new ones (4 -> 8: old blocks at 0, 2, 4, 6).
    A new block starts as an identity: the output projections of its two attentions and of its feed-forward
    are zero, so it adds nothing to the residual stream. A wider feed-forward's new hidden units have a
    random input projection and a zero output projection, so they add nothing either. Training moves the
    zeros first (their gradients are not zero), then everything behind them.
    """
    from diffusers import WanTransformer3DModel
    config = {k: v for k, v in transformer.config.items() if not k.startswith("_")}
    old_layers, old_ffn = config["num_layers"], config["ffn_dim"]
    num_layers, ffn_dim = num_layers or old_layers, ffn_dim or old_ffn
    if num_layers < old_layers or ffn_dim < old_ffn:
        raise ValueError(f"num_layers={num_layers}, ffn_dim={ffn_dim}: a model can only grow "
                         f"(it has num_layers={old_layers}, ffn_dim={old_ffn})")
    if (num_layers, ffn_dim) == (old_layers, old_ffn):
        raise ValueError(f"num_layers={num_layers}, ffn_dim={ffn_dim} is the model as it is: give more of either")
    torch.manual_seed(seed)
    grown = WanTransformer3DModel(**{**config, "num_layers": num_layers, "ffn_dim": ffn_dim})
    where = {i: i * num_layers // old_layers for i in range(old_layers)}  # old block -> its place in the grown one
    old = transformer.state_dict()
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


def grown_architecture(run_dir, stage: str, num_layers: int | None, ffn_dim: int | None) -> dict:
    """The growth a stage's run uses: as asked, recorded in `<run>/<stage>/grown.json` on a run's start;
    on a resume or an export (nothing asked) as recorded. Asking for another growth than the run's is refused."""
    path = Path(run_dir) / stage / GROWN_FILE
    recorded = json.loads(path.read_text()) if path.exists() else None
    asked = {k: v for k, v in (("num_layers", num_layers), ("ffn_dim", ffn_dim)) if v is not None}
    if not asked:
        return recorded or {}
    if recorded is not None and recorded != asked:
        raise ValueError(f"{path} says this run grew the transformer to {recorded}; asked {asked}: give the same "
                         "--num-layers / --ffn-dim, none, or a new --run-dir")
    if recorded is None and (Path(run_dir) / stage / "progress.json").exists():
        raise ValueError(f"{Path(run_dir) / stage} holds a run that did not grow the transformer; asked {asked}: "
                         "use a new --run-dir")
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
