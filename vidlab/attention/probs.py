"""Attention probabilities of one layer call, recomputed from its queries and keys, chunked.

The default processors (`AttnProcessor2_0`, the fused `FusedAttnProcessor2_0`, `WanAttnProcessor`)
call `scaled_dot_product_attention`, which never shows the probabilities. For a captured layer we
recompute the queries and keys exactly as the layer's processor does (fused projections,
q/k norms, Wan's rotary embedding), then softmax(q kᵀ · scale) a chunk of queries at a time,
so a long joint sequence (Wan: frames × height × width tokens) never needs its full N × N
matrix. Each chunk is reduced at once:

- `cross_heat`: query pixel × prompt token -> per-token heat maps (B, F, T, h, w);
- `frame_mass`: query token × key token of a joint sequence -> frame × frame mass (B, F, F);
- `temporal_mass`: per-pixel frame × frame attention of a motion module -> (B, F, F).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULT_CHUNK_BYTES = 64 * 2**20  # the largest probability chunk materialized at once


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on (B, N, heads, d): pairs (even, odd) rotated by the token's angles."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).type_as(x)


def _qk_diffusers_attention(attn, hidden_states, encoder_hidden_states, temb=None):
    """Queries and keys (B, heads, N, d) as `AttnProcessor2_0` / `FusedAttnProcessor2_0` make them."""
    x = hidden_states
    if attn.spatial_norm is not None:
        x = attn.spatial_norm(x, temb)
    if x.ndim == 4:  # (B, C, H, W) -> (B, HW, C)
        x = x.flatten(2).transpose(1, 2)
    if attn.group_norm is not None:
        x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
    fused = getattr(attn, "fused_projections", False)
    if encoder_hidden_states is None:
        query, key = (attn.to_qkv(x).chunk(3, dim=-1)[:2] if fused else (attn.to_q(x), attn.to_k(x)))
    else:
        context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        query = attn.to_q(x)
        key = attn.to_kv(context).chunk(2, dim=-1)[0] if fused else attn.to_k(context)
    b, heads = query.shape[0], attn.heads
    query = query.view(b, -1, heads, query.shape[-1] // heads).transpose(1, 2)
    key = key.view(b, -1, heads, key.shape[-1] // heads).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return query, key, attn.scale


def _qk_wan_attention(attn, hidden_states, encoder_hidden_states, rotary_emb=None):
    """Queries and keys (B, heads, N, d) as `WanAttnProcessor` makes them (text keys only for I2V)."""
    if attn.add_k_proj is not None:  # I2V: image tokens first, then the 512 text tokens (as Wan does)
        encoder_hidden_states = encoder_hidden_states[:, encoder_hidden_states.shape[1] - 512:]
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    if getattr(attn, "fused_projections", False):
        if not attn.is_cross_attention:
            query, key = attn.to_qkv(hidden_states).chunk(3, dim=-1)[:2]
        else:
            query, key = attn.to_q(hidden_states), attn.to_kv(context).chunk(2, dim=-1)[0]
    else:
        query, key = attn.to_q(hidden_states), attn.to_k(context)
    query = attn.norm_q(query).unflatten(2, (attn.heads, -1))  # (B, N, heads, d)
    key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
    if rotary_emb is not None:
        query, key = _rope(query, *rotary_emb), _rope(key, *rotary_emb)
    return query.transpose(1, 2), key.transpose(1, 2), query.shape[-1] ** -0.5


def qk_function(attn):
    """The function recomputing queries and keys of this attention module; None if unsupported."""
    from diffusers.models.attention_processor import Attention
    try:
        from diffusers.models.transformers.transformer_wan import WanAttention
    except ImportError:  # an older diffusers without Wan
        WanAttention = ()
    if isinstance(attn, WanAttention):
        return _qk_wan_attention
    if isinstance(attn, Attention):
        return _qk_diffusers_attention
    return None


def queries_keys(attn, hidden_states, encoder_hidden_states, extra=None, fn=None):
    """(query (B, heads, Nq, d), key (B, heads, Nk, d), scale) of one call of `attn`.

    fn: the module's recompute function (`qk_function(attn)`), when the caller already looked it up.
    """
    fn = fn or qk_function(attn)
    if fn is None:
        raise TypeError(f"attention module {type(attn).__name__} is not supported; "
                        "supported: diffusers Attention, WanAttention")
    return fn(attn, hidden_states, encoder_hidden_states, extra)


def probability_chunks(query, key, scale, mask=None, max_bytes: int = DEFAULT_CHUNK_BYTES):
    """Yield (start, probs (B, heads, c, Nk)) over chunks of queries, each at most `max_bytes`."""
    b, heads, n_q, _ = query.shape
    n_k = key.shape[2]
    chunk = max(1, max_bytes // (b * heads * n_k * 4))
    key_t = key.float().transpose(-1, -2)
    for start in range(0, n_q, chunk):
        scores = (query[:, :, start:start + chunk].float() @ key_t) * scale
        if mask is not None:  # additive, (B, heads, 1 or Nq, Nk)
            scores = scores + (mask if mask.shape[-2] == 1 else mask[..., start:start + chunk, :]).float()
        yield start, scores.softmax(dim=-1)


def grid_of(n: int, height: int, width: int) -> tuple[int, int]:
    """(h, w) of a layer holding n = h*w tokens of a (height, width) latent grid (any downsampling)."""
    factor = math.sqrt(height * width / n)
    for h in {math.ceil(height / factor), math.floor(height / factor), round(height / factor)}:
        if h > 0 and n % h == 0 and abs(n // h - width / factor) <= 1:
            return h, n // h
    raise ValueError(f"cannot lay out {n} query tokens on a grid of aspect {height}x{width}")


def cross_heat(query, key, scale, batch: int, frames: int, height: int, width: int, n_tokens: int,
               mask=None, max_bytes: int = DEFAULT_CHUNK_BYTES, peak: list | None = None) -> torch.Tensor:
    """Per-token heat (batch, frames, n_tokens, height, width), the mean over heads, from a cross-attention call.

    query rows are either batch*frames images of h*w pixels (UNet, per-frame) or batch joint
    sequences of frames*h*w tokens (Wan). Maps of a coarser layer are resized bilinearly.
    """
    rows, _, n_q, _ = query.shape
    per_frame = rows == batch * frames
    if not per_frame and rows != batch:
        raise ValueError(f"cross-attention has {rows} query rows; expected batch={batch} or batch*frames={batch * frames}")
    pixels = n_q if per_frame else n_q // frames
    h, w = grid_of(pixels, height, width)
    parts = []
    for _, probs in probability_chunks(query, key, scale, mask, max_bytes):
        if peak is not None:
            peak[0] = max(peak[0], probs.numel() * probs.element_size())
        parts.append(probs[..., :n_tokens].mean(dim=1))  # (rows, c, T)
    heat = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    heat = heat.view(batch * frames, h, w, n_tokens).permute(0, 3, 1, 2)  # (B*F, T, h, w)
    if (h, w) != (height, width):
        heat = F.interpolate(heat, size=(height, width), mode="bilinear", align_corners=False)
    return heat.reshape(batch, frames, n_tokens, height, width)


def frame_mass(query, key, scale, batch: int, frames: int, max_bytes: int = DEFAULT_CHUNK_BYTES,
               peak: list | None = None) -> torch.Tensor:
    """Joint spatio-temporal self-attention -> (batch, frames, frames): row i = where frame i's tokens look.

    Tokens are ordered frame-major (F, h, w), as Wan flattens its latent. Entry (i, j) is the
    attention mass a token of frame i gives to all tokens of frame j, averaged over the tokens of
    frame i and the heads; each row sums to 1.
    """
    rows, _, n, _ = query.shape
    if rows != batch or n % frames:
        raise ValueError(f"joint attention of {rows} rows x {n} tokens does not split into batch={batch}, frames={frames}")
    per_frame = n // frames
    out = torch.zeros(batch, frames, frames, dtype=torch.float32, device=query.device)
    for start, probs in probability_chunks(query, key, scale, None, max_bytes):
        if peak is not None:
            peak[0] = max(peak[0], probs.numel() * probs.element_size())
        to_frame = probs.unflatten(-1, (frames, per_frame)).sum(-1).mean(dim=1)  # (B, c, F)
        query_frame = torch.arange(start, start + probs.shape[2], device=query.device) // per_frame
        out.index_add_(1, query_frame, to_frame)
    return out / per_frame


def temporal_mass(query, key, scale, batch: int, max_bytes: int = DEFAULT_CHUNK_BYTES,
                  peak: list | None = None) -> torch.Tensor:
    """Motion-module attention over (batch*h*w, F) sequences -> (batch, F, F), the mean over pixels and heads.

    Sequences are short (F) and many (one per pixel), so chunks are taken over sequences.
    """
    rows, heads, frames, _ = query.shape
    if rows % batch:
        raise ValueError(f"temporal attention has {rows} rows, not a multiple of batch={batch}")
    out = torch.empty(rows, frames, frames, dtype=torch.float32, device=query.device)
    chunk = max(1, max_bytes // (heads * frames * frames * 4))
    for start in range(0, rows, chunk):
        rows_q, rows_k = query[start:start + chunk], key[start:start + chunk]
        (_, probs), = probability_chunks(rows_q, rows_k, scale, None, max_bytes=2**62)
        if peak is not None:
            peak[0] = max(peak[0], probs.numel() * probs.element_size())
        out[start:start + chunk] = probs.mean(dim=1)
    return out.view(batch, rows // batch, frames, frames).mean(dim=1)
