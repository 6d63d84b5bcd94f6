"""What the request's fields do to frames: control maps, camera warps, colour grade and coherence.

All functions take and return float tensors in [0, 1]: a frame (3, H, W) or frames (F, 3, H, W).

Documented mappings (seed 000's advanced parameters):
- camera_motion 'pan': the camera moves right, so content shifts left by
  `PAN_PX_PER_FRAME x motion_intensity x W/64` pixels per frame; 'zoom': the camera moves in,
  content scales by `1 + ZOOM_PER_FRAME x motion_intensity` per frame about the centre.
- temporal_consistency tc in [0.7, 1.0], with u = (tc - 0.7) / 0.3 in [0, 1]:
  ControlNet strength 0.8 + 0.7u (0.8 .. 1.5, seed 002's range); img2img strength 0.7 - 0.45u
  (0.7 .. 0.25, less change at higher consistency); colour coherence weight u (0 = off, 1 = each
  frame's LAB histogram fully matched to the first frame's).
- color_palette: one 3x3 colour matrix (a linear LUT) applied identically to every frame.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .. import io as video_io

PAN_PX_PER_FRAME = 2.0
ZOOM_PER_FRAME = 0.04
CANNY_THRESHOLDS = (50, 120)  # the zoo ControlNet was trained on these


def to_uint8(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) [0, 1] -> (H, W, 3) uint8 (values outside [0, 1] are clamped)."""
    return video_io.to_uint8(frame.detach().float().clamp(0, 1)[None])[0]


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return video_io.from_uint8(np.asarray(array)[None])[0]


# ---- control extractors: frame (3, H, W) -> control map (3, H, W) ---------------------------

def canny_edges(image_uint8_hwc: np.ndarray, low: int = CANNY_THRESHOLDS[0],
                high: int = CANNY_THRESHOLDS[1]) -> np.ndarray:
    """Canny edge map (H, W) uint8 in {0, 255} of an (H, W, 3) RGB image: what the zoo's ControlNet was
    trained on and what `frame_chain` conditions it with."""
    return cv2.Canny(cv2.cvtColor(image_uint8_hwc, cv2.COLOR_RGB2GRAY), low, high)


def canny_control(frame: torch.Tensor, low: int = CANNY_THRESHOLDS[0], high: int = CANNY_THRESHOLDS[1]) -> torch.Tensor:
    """Canny edges of a frame, as a 3-channel control image in {0, 1}."""
    edges = canny_edges(to_uint8(frame), low, high)
    return torch.from_numpy(edges).float().div(255).expand(3, -1, -1).clone()


CONTROL_EXTRACTORS = {"canny": canny_control}


# ---- camera motion --------------------------------------------------------------------------

def camera_matrix(camera_motion: str, motion_intensity: float, width: int, height: int) -> np.ndarray:
    """The 2x3 affine warp of one frame step."""
    if camera_motion == "static":
        return np.array([[1, 0, 0], [0, 1, 0]], np.float64)
    if camera_motion == "pan":
        dx = -PAN_PX_PER_FRAME * motion_intensity * width / 64
        return np.array([[1, 0, dx], [0, 1, 0]], np.float64)
    if camera_motion == "zoom":
        s = 1 + ZOOM_PER_FRAME * motion_intensity
        return cv2.getRotationMatrix2D((width / 2, height / 2), 0, s)
    raise ValueError(f"camera_motion={camera_motion!r} is not one of ['static', 'pan', 'zoom']")


def warp(frame: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """Apply a 2x3 affine warp to a frame; borders replicate (the background extends)."""
    if np.allclose(matrix, [[1, 0, 0], [0, 1, 0]]):
        return frame
    img = to_uint8(frame)
    h, w = img.shape[:2]
    out = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return from_uint8(out)


# ---- colour -----------------------------------------------------------------------------------

PALETTE_MATRICES = {
    "neutral": np.eye(3),
    # rows: output R, G, B as mixes of input R, G, B
    "warm": np.array([[1.08, 0.04, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.86]]),
    "cool": np.array([[0.88, 0.0, 0.0], [0.0, 1.0, 0.02], [0.0, 0.04, 1.1]]),
}


def color_grade(frames: torch.Tensor, palette: str) -> torch.Tensor:
    """Apply the palette's colour matrix identically to every frame (F, 3, H, W)."""
    if palette not in PALETTE_MATRICES:
        raise ValueError(f"color_palette={palette!r} is not one of {list(PALETTE_MATRICES)}")
    m = torch.tensor(PALETTE_MATRICES[palette], dtype=frames.dtype)
    return torch.einsum("oc,fchw->fohw", m, frames).clamp(0, 1)


def match_lab_histogram(frame: torch.Tensor, reference: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Match each LAB channel's histogram of `frame` to `reference`'s; blend by weight in [0, 1]."""
    if weight <= 0:
        return frame
    src = cv2.cvtColor(to_uint8(frame), cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(to_uint8(reference), cv2.COLOR_RGB2LAB)
    out = np.empty_like(src)
    for c in range(3):
        s_values, s_idx, s_counts = np.unique(src[..., c].ravel(), return_inverse=True, return_counts=True)
        r_values, r_counts = np.unique(ref[..., c].ravel(), return_counts=True)
        s_cdf = np.cumsum(s_counts) / s_counts.sum()
        r_cdf = np.cumsum(r_counts) / r_counts.sum()
        out[..., c] = np.interp(s_cdf, r_cdf, r_values)[s_idx].reshape(src.shape[:2]).round()
    matched = from_uint8(cv2.cvtColor(out.astype(np.uint8), cv2.COLOR_LAB2RGB))
    return (1 - weight) * frame + weight * matched


# ---- temporal consistency mapping ------------------------------------------------------------

def consistency_knobs(temporal_consistency: float) -> dict:
    """The documented mapping of temporal_consistency onto the strategies' knobs."""
    u = (temporal_consistency - 0.7) / 0.3
    return {"controlnet_conditioning_scale": round(0.8 + 0.7 * u, 4),
            "strength": round(0.7 - 0.45 * u, 4),
            "color_coherence": round(u, 4)}


# ---- transitions between segments -------------------------------------------------------------

def crossfade(a: torch.Tensor, b: torch.Tensor, weights=((0.7, 0.3), (0.4, 0.6))) -> torch.Tensor:
    """Blended frames between a and b: w_a * a + w_b * b for each (w_a, w_b) pair -> (K, 3, H, W)."""
    for i, (wa, wb) in enumerate(weights):
        if abs(wa + wb - 1) > 1e-6 or min(wa, wb) < 0:
            raise ValueError(f"crossfade weights[{i}]=({wa}, {wb}) must be >= 0 and sum to 1")
    return torch.stack([wa * a + wb * b for wa, wb in weights])


def flow_interpolate(a: torch.Tensor, b: torch.Tensor, times=(1 / 3, 2 / 3)) -> torch.Tensor:
    """Frames between a and b at fractional times by Farneback optical flow (no learned weights).

    Each in-between frame warps a forward by t*flow and b backward by (1-t)*flow, then blends
    them with weights (1-t, t).
    """
    ua, ub = to_uint8(a), to_uint8(b)
    ga, gb = cv2.cvtColor(ua, cv2.COLOR_RGB2GRAY), cv2.cvtColor(ub, cv2.COLOR_RGB2GRAY)
    args = (None, 0.5, 3, 9, 3, 5, 1.1, 0)
    flow_ab = cv2.calcOpticalFlowFarneback(ga, gb, *args)  # a(x) ~ b(x + flow_ab(x))
    flow_ba = cv2.calcOpticalFlowFarneback(gb, ga, *args)
    h, w = ga.shape
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).astype(np.float32)
    out = []
    for t in times:
        # frame at t samples a at x - t*flow_ab and b at x - (1-t)*flow_ba
        map_a = grid + t * flow_ba
        map_b = grid + (1 - t) * flow_ab
        wa = cv2.remap(ua, map_a[..., 0], map_a[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        wb = cv2.remap(ub, map_b[..., 0], map_b[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out.append((1 - t) * from_uint8(wa) + t * from_uint8(wb))
    return torch.stack(out)

