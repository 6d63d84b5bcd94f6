"""PSNR and SSIM between frames of a video: consecutive pairs, pairs Δt apart, and against an anchor.

All functions take a video (F, 3, H, W) in [0, 1] (data range 1.0), compute the pairs batched
(whole tensors, in chunks of many pairs; no Python loop over frames) and return one value per pair
(`reduction="none"`) or their mean (`reduction="mean"`).

PSNR is `torchmetrics.functional.peak_signal_noise_ratio` per pair. Identical frames give +inf,
as in torchmetrics and scikit-image; the mean is then +inf too.

SSIM uses the window and constants of torchmetrics and scikit-image (Gaussian, sigma 1.5, 11 taps,
k1=0.01, k2=0.03, population covariance), but is computed here rather than by
`torchmetrics.functional.structural_similarity_index_measure`, for speed: that function blurs with
a grouped 11x11 `conv2d`, which on CPU is slower than a per-frame scikit-image loop (0.7-0.9x in
`experiments/bench_metrics.py`). Here the Gaussian, being separable, is applied as two matrix
products (H', H) @ x @ (W, W')^T (plain GEMMs); each frame's local mean and second moment are
blurred once even when the frame is in two pairs (consecutive and anchor); the SSIM map is built in
place, in cache-sized chunks. In float64 the values equal torchmetrics' to ~1e-14; in float32 they
are closer to the exact values than torchmetrics' own (frames are centred on 0.5 before the
moments, so E[x^2] - E[x]^2 cancels fewer digits). The dense products cost O(H + W) per pixel, so
on CPU this suits small frames best; on GPU any size is fine. `border_type` picks the convention:

- "valid" (default): the mean over pixels whose window lies inside the image, as in Wang et al. and
  `skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1.0)`;
- "reflect": reflect-pad, mean over every pixel, as `torchmetrics` does by default.

>>> import torch
>>> video = torch.rand(8, 3, 32, 32)
>>> ssim_consecutive(video).shape
torch.Size([7])
>>> round(float(ssim_anchor(video, anchor=0)[0]), 4)
1.0
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from ._checks import check_choice, check_gap, check_reduction, check_video, resolve_anchor

DATA_RANGE = 1.0
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_WINDOW = int(3.5 * SSIM_SIGMA + 0.5) * 2 + 1  # 11 taps, torchmetrics' and scikit-image's truncation
BORDER_TYPES = ("valid", "reflect")
# SSIM works through frames in chunks of about this many bytes of maps (at least _MIN_CHUNK_PAIRS
# frames): small enough to stay in cache on CPU, which measured faster than one big batch.
_CHUNK_BYTES = 4 * 2**20
_MIN_CHUNK_PAIRS = 8


# ---- reductions ---------------------------------------------------------------------------------

def _reduce(values: torch.Tensor, reduction: str, skip: int | None = None) -> torch.Tensor:
    """values (N,) -> (N,) or their mean; `skip` leaves one entry (the anchor itself) out of the mean."""
    if reduction == "none":
        return values
    if skip is not None:
        values = torch.cat([values[:skip], values[skip + 1:]])
    return values.mean()


def _check_pairs(preds: torch.Tensor, target: torch.Tensor) -> None:
    check_video(preds, "preds")
    check_video(target, "target")
    if preds.shape != target.shape:
        raise ValueError(f"Expected `preds` and `target` to have the same shape (N, 3, H, W), "
                         f"got {tuple(preds.shape)} and {tuple(target.shape)}")


# ---- PSNR ---------------------------------------------------------------------------------------

def _psnr(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR (N,) in dB of each pair (N, 3, H, W), data range 1.0."""
    return peak_signal_noise_ratio(preds, target, data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3))


def psnr_pairs(preds: torch.Tensor, target: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """PSNR in dB of each pair (preds[i], target[i]); both (N, 3, H, W) in [0, 1].

    >>> import torch
    >>> a = torch.full((2, 3, 8, 8), 0.5)
    >>> psnr_pairs(a, a + 0.1).round()  # MSE 0.01 -> 20 dB
    tensor([20., 20.])
    """
    check_reduction(reduction)
    _check_pairs(preds, target)
    return _reduce(_psnr(preds, target), reduction)


def psnr_gap(frames: torch.Tensor, gap: int, reduction: str = "none") -> torch.Tensor:
    """PSNR between frames t and t + gap for every t: (F - gap,) or its mean."""
    check_reduction(reduction)
    check_video(frames, min_frames=2)
    gap = check_gap(gap, frames.shape[0])
    return _reduce(_psnr(frames[gap:], frames[:-gap]), reduction)


def psnr_consecutive(frames: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """PSNR between consecutive frames (i, i + 1): (F - 1,) or its mean.

    >>> import torch
    >>> psnr_consecutive(torch.rand(5, 3, 16, 16)).shape
    torch.Size([4])
    """
    return psnr_gap(frames, 1, reduction)


def psnr_anchor(frames: torch.Tensor, anchor: int | torch.Tensor = 0, reduction: str = "none") -> torch.Tensor:
    """PSNR of every frame against an anchor: (F,) or its mean.

    anchor: a frame index (default 0, the first frame) or a frame tensor (3, H, W). With an index,
    the anchor's own entry is +inf and the mean leaves it out.
    """
    check_reduction(reduction)
    check_video(frames, min_frames=1 if isinstance(anchor, torch.Tensor) else 2)
    anchor_frame, index = resolve_anchor(frames, anchor)
    return _reduce(_psnr(frames, anchor_frame.expand_as(frames)), reduction, skip=index)


# ---- SSIM ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def _filter_matrix(n: int, border_type: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Matrix (n_out, n) applying the 1-D SSIM Gaussian along an axis of length n.

    The window is torchmetrics' and scikit-image's: sigma 1.5 truncated at 3.5 sigma (11 taps),
    normalized to sum 1. "valid": n_out = n - 10, windows wholly inside; "reflect": n_out = n, the
    axis reflect-padded (torch's "reflect": the edge pixel is not repeated) before filtering.
    """
    taps = np.arange(SSIM_WINDOW) - (SSIM_WINDOW - 1) // 2
    window = np.exp(-0.5 * (taps / SSIM_SIGMA) ** 2)
    window /= window.sum()
    n_out = n - SSIM_WINDOW + 1 if border_type == "valid" else n
    out = np.arange(n_out)[:, None]
    if border_type == "valid":
        src = out + taps[None] + (SSIM_WINDOW - 1) // 2
    else:
        src = np.abs(out + taps[None])                               # reflect at 0
        src = np.where(src > n - 1, 2 * (n - 1) - src, src)          # reflect at n - 1
    m = np.zeros((n_out, n))
    np.add.at(m, (np.broadcast_to(out, src.shape), src), np.broadcast_to(window, src.shape))
    return torch.from_numpy(m).to(dtype=dtype, device=device)


def _blur(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur (..., H, W) -> (..., H', W') as two matrix products."""
    return rows @ (x @ cols.T)


class _Moments(NamedTuple):
    """Local statistics of frames (N, C, H', W'): centred mean m, mean mu = m + 1/2, mu^2, variance."""

    m: torch.Tensor
    mu: torch.Tensor
    mu2: torch.Tensor
    var: torch.Tensor

    def select(self, frames: slice) -> "_Moments":
        return _Moments(*(t[frames] for t in self))


def _moments(mean_c: torch.Tensor, square_c: torch.Tensor) -> _Moments:
    """From blurred centred frames and their squares; variances clamped at 0 as in torchmetrics."""
    mu = mean_c + DATA_RANGE / 2
    return _Moments(mean_c, mu, mu * mu, square_c.addcmul_(mean_c, mean_c, value=-1).clamp_(min=0))


def _ssim_mean(a: _Moments, b: _Moments, cross_c: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (n,) of pairs with moments a, b (b may broadcast) and blurred centred products cross_c."""
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    contrast = cross_c.sub_(a.m * b.m).mul_(2).add_(c2)                           # 2 cov + c2, in place
    numerator = (a.mu * b.mu).mul_(2).add_(c1).mul_(contrast)                     # (2 mu_a mu_b + c1)(2 cov + c2)
    denominator = (a.mu2 + b.mu2).add_(c1).mul_((a.var + b.var).add_(c2))        # (mu_a^2 + mu_b^2 + c1)(...)
    return numerator.div_(denominator).flatten(1).mean(1)


def _ssim_frames(frames: torch.Tensor, gap: int | None, anchor: torch.Tensor | None,
                 border_type: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Mean SSIM of the pairs (t, t + gap), (F - gap,), and of every frame against `anchor` (3, H, W), (F,).

    Pairs are slices of the frames, so each frame's local mean and second moment are blurred once
    (3 maps per consecutive pair, not 5), the anchor's once for all frames. Work goes in chunks of
    frames of about _CHUNK_BYTES of maps, written into one buffer per chunk.
    """
    # 1. Gaussian matrices and the anchor's moments
    dtype = torch.float64 if frames.dtype == torch.float64 else torch.float32
    num_frames, channels, height, width = frames.shape
    rows = _filter_matrix(height, border_type, dtype, frames.device)  # (H', H)
    cols = _filter_matrix(width, border_type, dtype, frames.device)   # (W', W)
    if anchor is not None:
        anchor_c = anchor.to(dtype)[None] - DATA_RANGE / 2             # (1, C, H, W), centred
        blurred = _blur(torch.cat([anchor_c, anchor_c * anchor_c]), rows, cols)
        anchor_moments = _moments(blurred[:1], blurred[1:])
    per_frame_bytes = 4 * channels * height * width * torch.finfo(dtype).bits // 8
    chunk = max(_MIN_CHUNK_PAIRS, _CHUNK_BYTES // per_frame_bytes)
    num_starts = num_frames if anchor is not None else num_frames - gap
    gap_values, anchor_values = [], []
    for start in range(0, num_starts, chunk):
        # 2. the chunk's frames: pairs (t, t + gap) for t in [start, gap_end), anchor pairs for t in [start, end)
        end = min(start + chunk, num_starts)
        n_gap = max(0, min(end, num_frames - gap) - start) if gap else 0
        n_anchor = end - start if anchor is not None else 0
        if not gap:
            block, second = frames[start:end], None
        elif gap <= chunk:  # one contiguous block holds both frames of every pair
            block = frames[start:max(end, start + n_gap + gap)]
            second = slice(gap, gap + n_gap)
        else:               # two blocks, frames t and frames t + gap
            block = torch.cat([frames[start:end], frames[start + gap:start + gap + n_gap]])
            second = slice(end - start, end - start + n_gap)
        # 3. centred x, x^2, x_t x_{t+gap} and x_t x_anchor, blurred together
        block, u = block.to(dtype), block.shape[0]
        stack = torch.empty((2 * u + n_gap + n_anchor, channels, height, width), dtype=dtype, device=frames.device)
        x = torch.sub(block, DATA_RANGE / 2, out=stack[:u])
        torch.mul(x, x, out=stack[u:2 * u])
        if n_gap:
            torch.mul(x[:n_gap], x[second], out=stack[2 * u:2 * u + n_gap])
        if n_anchor:
            torch.mul(x[:n_anchor], anchor_c, out=stack[2 * u + n_gap:])
        maps = _blur(stack, rows, cols)                                    # (2U + n, C, H', W')
        # 4. SSIM of the pairs from the moments
        moments = _moments(maps[:u], maps[u:2 * u])
        if n_gap:
            gap_values.append(_ssim_mean(moments.select(slice(0, n_gap)), moments.select(second),
                                         maps[2 * u:2 * u + n_gap]))
        if n_anchor:
            anchor_values.append(_ssim_mean(moments.select(slice(0, n_anchor)), anchor_moments,
                                            maps[2 * u + n_gap:]))
    return (torch.cat(gap_values) if gap else None), (torch.cat(anchor_values) if anchor is not None else None)


def _check_ssim_inputs(frames: torch.Tensor, name: str, min_frames: int, border_type: str) -> None:
    check_choice("border_type", border_type, BORDER_TYPES)
    check_video(frames, name, min_frames=min_frames, min_size=SSIM_WINDOW)


def ssim_pairs(preds: torch.Tensor, target: torch.Tensor, border_type: str = "valid",
               reduction: str = "none") -> torch.Tensor:
    """SSIM of each pair (preds[i], target[i]); both (N, 3, H, W) in [0, 1], H, W >= 11.

    >>> import torch
    >>> a = torch.rand(2, 3, 16, 16)
    >>> ssim_pairs(a, a)
    tensor([1., 1.])
    """
    check_reduction(reduction)
    _check_ssim_inputs(preds, "preds", 1, border_type)
    _check_pairs(preds, target)
    values, _ = _ssim_frames(torch.cat([preds, target]), preds.shape[0], None, border_type)
    return _reduce(values, reduction)


def ssim_gap(frames: torch.Tensor, gap: int, border_type: str = "valid", reduction: str = "none") -> torch.Tensor:
    """SSIM between frames t and t + gap for every t: (F - gap,) or its mean."""
    check_reduction(reduction)
    _check_ssim_inputs(frames, "frames", 2, border_type)
    gap = check_gap(gap, frames.shape[0])
    values, _ = _ssim_frames(frames, gap, None, border_type)
    return _reduce(values, reduction)


def ssim_consecutive(frames: torch.Tensor, border_type: str = "valid", reduction: str = "none") -> torch.Tensor:
    """SSIM between consecutive frames (i, i + 1): (F - 1,) or its mean.

    >>> import torch
    >>> ssim_consecutive(torch.rand(5, 3, 16, 16), reduction="mean").shape
    torch.Size([])
    """
    return ssim_gap(frames, 1, border_type, reduction)


def ssim_anchor(frames: torch.Tensor, anchor: int | torch.Tensor = 0, border_type: str = "valid",
                reduction: str = "none") -> torch.Tensor:
    """SSIM of every frame against an anchor: (F,) or its mean.

    anchor: a frame index (default 0) or a frame tensor (3, H, W). With an index, the anchor's own
    entry is 1 and the mean leaves it out.
    """
    check_reduction(reduction)
    _check_ssim_inputs(frames, "frames", 1 if isinstance(anchor, torch.Tensor) else 2, border_type)
    anchor_frame, index = resolve_anchor(frames, anchor)
    _, values = _ssim_frames(frames, None, anchor_frame, border_type)
    return _reduce(values, reduction, skip=index)


def frame_similarity(frames: torch.Tensor, anchor: int | torch.Tensor = 0,
                     border_type: str = "valid") -> dict[str, torch.Tensor]:
    """PSNR and SSIM of consecutive pairs and against an anchor, in one batch.

    Returns {"psnr_consecutive": (F-1,), "ssim_consecutive": (F-1,), "psnr_anchor": (F,),
    "ssim_anchor": (F,)}, equal to the four separate functions; faster, because each frame's
    local mean and second moment are blurred once for both kinds of pair.

    >>> import torch
    >>> sims = frame_similarity(torch.rand(6, 3, 16, 16))
    >>> [tuple(v.shape) for v in sims.values()]
    [(5,), (5,), (6,), (6,)]
    """
    # 1. check inputs
    _check_ssim_inputs(frames, "frames", 2, border_type)
    anchor_frame, _ = resolve_anchor(frames, anchor)
    # 2. both kinds of pair in one pass over the frames
    consecutive, to_anchor = _ssim_frames(frames, 1, anchor_frame, border_type)
    return {
        "psnr_consecutive": _psnr(frames[1:], frames[:-1]),
        "ssim_consecutive": consecutive,
        "psnr_anchor": _psnr(frames, anchor_frame.expand_as(frames)),
        "ssim_anchor": to_anchor,
    }
