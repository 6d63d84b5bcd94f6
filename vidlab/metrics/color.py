"""Colour drift: how far each frame's mean colour has moved from the anchor's, in CIELAB ΔE (CIE76).

sRGB -> CIELAB follows `skimage.color.rgb2lab` exactly (sRGB companding, the sRGB/D65 matrix,
white point D65 with the 2° observer (0.95047, 1.0, 1.08883), and CIE's 0.008856 / 7.787 knee).
ΔE is CIE76: the Euclidean distance in Lab (`skimage.color.deltaE_cie76`); a ΔE near 2.3 is a
just-noticeable difference.

>>> import torch
>>> rgb_to_lab(torch.tensor([1.0, 1.0, 1.0])).round().abs().tolist()       # white
[100.0, 0.0, 0.0]
>>> video = torch.zeros(2, 3, 8, 8); video[1, 0] = 1.0       # black, then red
>>> color_drift(video).round().tolist()
[0.0, 117.0]
"""
from __future__ import annotations

import math

import torch

from ._checks import check_reduction, check_video, resolve_anchor

_XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423],
                              [0.212671, 0.715160, 0.072169],
                              [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (..., 3) in [0, 1] -> CIELAB (..., 3) under D65 (L in [0, 100]), computed in float64."""
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"Expected `rgb` to have shape (..., 3), got {tuple(rgb.shape)}")
    c = rgb.detach().to(torch.float64)
    linear = torch.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = linear @ _XYZ_FROM_RGB.to(c.device).T / _WHITE_D65.to(c.device)
    f = torch.where(xyz > 0.008856, torch.pow(xyz.clamp_min(0), 1 / 3), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-1)


def delta_e_cie76(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIE76 colour difference: Euclidean distance of Lab colours (..., 3), broadcasting."""
    return torch.linalg.vector_norm(lab1 - lab2, dim=-1)


def _mean_colors(frames: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """Mean sRGB colour (F, 3) of each frame, or of its masked pixels (NaN where a mask is empty)."""
    if masks is None:
        return frames.detach().to(torch.float64).mean(dim=(2, 3))
    weights = masks.to(torch.float64)[:, None]                               # (F, 1, H, W)
    total = (frames.detach().to(torch.float64) * weights).sum(dim=(2, 3))    # (F, 3)
    count = weights.sum(dim=(2, 3))                                          # (F, 1)
    return total / count                                                     # 0/0 -> NaN for empty masks


def _check_mask(mask: torch.Tensor, name: str, shape: tuple[int, ...], layout: str) -> None:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        kind = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"Expected `{name}` to be a boolean tensor {layout}, got {kind}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"Expected `{name}` to have shape {shape} {layout}, got {tuple(mask.shape)}")


def color_drift(frames: torch.Tensor, anchor: int | torch.Tensor = 0, masks: torch.Tensor | None = None,
                anchor_mask: torch.Tensor | None = None, reduction: str = "none") -> torch.Tensor:
    """ΔE (CIE76) between each frame's mean colour and the anchor's: (F,) or its mean.

    The mean colour is the average sRGB value over the frame, or over `masks` (bool (F, H, W),
    e.g. the subject), converted to Lab. anchor: a frame index (default 0; its mask is masks[anchor])
    or a frame tensor (3, H, W) with an optional `anchor_mask` (H, W). A frame whose mask is empty
    gets NaN. With an index, the anchor's own entry (0) is left out of the mean; NaNs are left out too.
    """
    # 1. check inputs
    check_reduction(reduction)
    check_video(frames, min_frames=1 if isinstance(anchor, torch.Tensor) else 2)
    num_frames, _, height, width = frames.shape
    anchor_frame, index = resolve_anchor(frames, anchor)
    if masks is not None:
        _check_mask(masks, "masks", (num_frames, height, width), "(F, H, W)")
    if anchor_mask is not None:
        if index is not None:
            raise ValueError("anchor_mask is only for an anchor tensor; with an anchor index the mask is masks[anchor]")
        _check_mask(anchor_mask, "anchor_mask", (height, width), "(H, W)")
    # 2. mean colours -> Lab -> distance to the anchor's
    colors = _mean_colors(frames, masks)
    if index is not None:
        anchor_color = colors[index]
    else:
        anchor_color = _mean_colors(anchor_frame[None], None if anchor_mask is None else anchor_mask[None])[0]
    if anchor_color.isnan().any():
        raise ValueError("the anchor's mask is empty: no pixel to take the anchor colour from")
    drift = delta_e_cie76(rgb_to_lab(colors), rgb_to_lab(anchor_color))
    if reduction == "none":
        return drift
    kept = torch.arange(num_frames, device=drift.device) != (-1 if index is None else index)
    kept &= ~drift.isnan()
    return drift[kept].mean() if kept.any() else torch.tensor(math.nan, dtype=drift.dtype)
