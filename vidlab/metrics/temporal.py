"""Temporal metrics of a video (F, 3, H, W) in [0, 1]: flicker, warp error, and seams between segments.

>>> import torch
>>> video = torch.zeros(3, 3, 16, 16)
>>> video[1] = 0.2                       # frame 1 is brighter by 0.2 = 51 in 0-255 scale
>>> flicker(video)                       # (255 - 51) / 255 for both pairs
tensor([0.8000, 0.8000])
>>> seam_metrics(torch.tensor([1.0, 1.0, 0.5, 1.0]), segment_starts=[0, 3])["across_seam"]
0.5
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import cv2
import numpy as np
import torch

from ..io.video import to_uint8
from ._checks import check_choice, check_reduction, check_video

# ---- flicker ------------------------------------------------------------------------------------


def flicker(frames: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """VBench's temporal-flickering score of consecutive pairs: (F - 1,) or its mean; 1 means no flicker.

    As VBench defines it: MAE = mean absolute difference of frames i and i + 1 over pixels and
    channels in 0-255 scale, score = (255 - MAE) / 255. Our frames are floats, scaled by 255 without
    rounding to uint8 (VBench reads uint8 frames; the two agree on frames that are multiples of 1/255).
    The mean of the pair scores equals VBench's score of the mean MAE (the map is linear).
    """
    check_reduction(reduction)
    check_video(frames, min_frames=2)
    mae = (frames[1:] - frames[:-1]).abs().mul(255.0).flatten(1).mean(1)  # (F - 1,) in 0-255 scale
    score = (255.0 - mae) / 255.0
    return score if reduction == "none" else score.mean()


# ---- warp error ---------------------------------------------------------------------------------

WARP_ERROR_LABEL = "classical-flow proxy (Farneback), not comparable with RAFT-based warp error"
# OpenCV's Farneback parameters from its optical-flow tutorial.
FARNEBACK_PARAMS = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
# Forward-backward consistency (Sundaram et al. 2010, as in Ruder et al. 2016): a pixel is occluded when
# |w_b + w_f(p + w_b)|^2 > ALPHA * (|w_b|^2 + |w_f(p + w_b)|^2) + BETA  (BETA in pixels^2).
OCCLUSION_ALPHA = 0.01
OCCLUSION_BETA = 0.5
ERROR_TYPES = ("squared", "absolute")


@dataclasses.dataclass(frozen=True)
class WarpError:
    """Warp error of consecutive pairs; `label` says what kind of number it is.

    per_pair (F - 1,): error of frame t+1 against frame t warped onto it, over non-occluded pixels;
    NaN where no pixel survives the checks. valid_fraction (F - 1,): share of pixels used.
    """

    per_pair: torch.Tensor
    mean: float
    valid_fraction: torch.Tensor
    error_type: str
    label: str = WARP_ERROR_LABEL

    def as_dict(self) -> dict:
        return {"warp_error": self.mean, "warp_error_type": self.error_type, "warp_error_label": self.label,
                "warp_error_valid_fraction": float(self.valid_fraction.mean())}


def _to_numpy_frames(frames: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """float32 (F, H, W, 3) in [0, 1] and uint8 grey (F, H, W) for the flow."""
    rgb = frames.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in to_uint8(frames.detach().float().clamp(0, 1))]
    return rgb, np.stack(grey)


def _warp_pair(rgb_t: np.ndarray, rgb_next: np.ndarray, grey_t: np.ndarray, grey_next: np.ndarray,
               error_type: str) -> tuple[float, float]:
    """(error, valid fraction) of frame t+1 against frame t warped onto it."""
    h, w = grey_t.shape
    # 1. dense flow both ways: I_t(p) ~ I_{t+1}(p + w_f(p)) and I_{t+1}(p) ~ I_t(p + w_b(p))
    forward = cv2.calcOpticalFlowFarneback(grey_t, grey_next, None, **FARNEBACK_PARAMS)
    backward = cv2.calcOpticalFlowFarneback(grey_next, grey_t, None, **FARNEBACK_PARAMS)
    # 2. sample frame t (and the forward flow) where each pixel of frame t+1 came from
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = xs + backward[..., 0], ys + backward[..., 1]
    warped = cv2.remap(rgb_t, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    forward_at = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # 3. keep pixels that come from inside frame t and pass the forward-backward check
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    round_trip = np.sum((backward + forward_at) ** 2, axis=2)
    bound = OCCLUSION_ALPHA * (np.sum(backward ** 2, axis=2) + np.sum(forward_at ** 2, axis=2)) + OCCLUSION_BETA
    valid = inside & (round_trip <= bound)
    if not valid.any():
        return math.nan, 0.0
    diff = rgb_next[valid] - warped[valid]  # (N, 3)
    error = np.mean(diff ** 2) if error_type == "squared" else np.mean(np.abs(diff))
    return float(error), float(valid.mean())


def warp_error(frames: torch.Tensor, error_type: str = "squared") -> WarpError:
    """Warp error between consecutive frames — a classical-flow proxy (Farneback), not comparable
    with RAFT-based warp error.

    For each pair (t, t+1), OpenCV's Farneback flow (parameters `FARNEBACK_PARAMS`, on 8-bit grey
    frames) is computed forward and backward; frame t is warped onto frame t+1 along the backward
    flow (bilinear). Occluded pixels are dropped by the forward-backward consistency check
    |w_b + w_f(p + w_b)|^2 <= 0.01 (|w_b|^2 + |w_f(p + w_b)|^2) + 0.5 (Sundaram et al. 2010), and so
    are pixels whose source lies outside frame t. The error is the mean over kept pixels and the
    three channels, in [0, 1] colour units, of the squared difference (`error_type="squared"`, the
    form of Lai et al. 2018's E_warp) or of the absolute difference (`"absolute"`).

    >>> import torch
    >>> video = torch.rand(1, 3, 32, 32).repeat(3, 1, 1, 1)   # a still video
    >>> result = warp_error(video)
    >>> result.per_pair.shape, result.mean < 1e-4, result.label.startswith("classical-flow proxy")
    (torch.Size([2]), True, True)
    """
    check_choice("error_type", error_type, ERROR_TYPES)
    check_video(frames, min_frames=2)
    rgb, grey = _to_numpy_frames(frames)
    results = [_warp_pair(rgb[t], rgb[t + 1], grey[t], grey[t + 1], error_type) for t in range(len(rgb) - 1)]
    per_pair = torch.tensor([r[0] for r in results], dtype=torch.float64)
    valid = torch.tensor([r[1] for r in results], dtype=torch.float64)
    finite = per_pair[~per_pair.isnan()]
    mean = float(finite.mean()) if finite.numel() else math.nan
    return WarpError(per_pair=per_pair, mean=mean, valid_fraction=valid, error_type=error_type)


# ---- seams between segments ---------------------------------------------------------------------


def check_segment_starts(segment_starts: Sequence[int], num_frames: int) -> list[int]:
    starts = list(segment_starts)
    for s in starts:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s <= num_frames - 1:
            raise ValueError(f"segment_starts entry {s!r} is not a frame index in [0, {num_frames - 1}] "
                             f"for {num_frames} frames")
    if any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"segment_starts must be strictly increasing, got {starts}")
    return [int(s) for s in starts]


def seam_pair_mask(num_pairs: int, segment_starts: Sequence[int], seam_window: int = 0) -> torch.Tensor:
    """Boolean (num_pairs,): True for pairs (i, i+1) across a seam.

    Pair i crosses a seam when a segment starts at frame i + 1; with `seam_window` = w the w pairs
    on each side of it count too (e.g. the blended frames of a cross-fade). A start at frame 0 has
    no pair before it and is ignored.
    """
    if isinstance(seam_window, bool) or not isinstance(seam_window, int) or seam_window < 0:
        raise ValueError(f"seam_window={seam_window!r} is not an int >= 0")
    starts = check_segment_starts(segment_starts, num_pairs + 1)
    mask = torch.zeros(num_pairs, dtype=torch.bool)
    for s in starts:
        if s > 0:
            mask[max(0, s - 1 - seam_window):s + seam_window] = True
    return mask


def seam_metrics(per_pair, segment_starts: Sequence[int], seam_window: int = 0) -> dict[str, float]:
    """Split per-pair values (F - 1,) into pairs across a seam and pairs within a segment.

    per_pair: values of consecutive pairs (i, i+1), e.g. `ssim_consecutive(frames)` or
    `warp_error(frames).per_pair`. segment_starts: frame indices where a new segment starts
    (0 may be included). Returns the mean of each group (NaN values left out), their difference
    (across - within) and ratio (across / within), and the number of pairs in each group.

    >>> seam_metrics([0.9, 0.9, 0.6, 0.9, 0.9], segment_starts=[3])["difference"]
    -0.30000000000000004
    """
    values = torch.as_tensor(per_pair, dtype=torch.float64).detach().cpu()
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(f"Expected `per_pair` to have shape (F - 1,) with F >= 2, got {tuple(values.shape)}")
    across = seam_pair_mask(values.numel(), segment_starts, seam_window)

    def mean(x: torch.Tensor) -> float:
        x = x[~x.isnan()]
        return float(x.mean()) if x.numel() else math.nan

    across_mean, within_mean = mean(values[across]), mean(values[~across])
    return {
        "across_seam": across_mean,
        "within_segment": within_mean,
        "difference": across_mean - within_mean,
        "ratio": across_mean / within_mean if within_mean != 0 else math.nan,
        "num_across": int(across.sum()),
        "num_within": int((~across).sum()),
    }
