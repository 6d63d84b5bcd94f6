"""Read a frame of the shapes world back into attributes.

Steps for one frame (3, H, W) in [0, 1]:
1. background: the median colour of a 2-pixel border ring, named by the nearest background;
2. subject mask: pixels far from the background colour, largest connected component;
3. subject colour: median of the mask's most distinct pixels; the mask is then refined to the
   pixels nearer the subject colour than the background (a blurry halo does not count);
4. shape: the template (circle, square, ...) drawn in the mask's bounding box with the best IoU;
5. refusal: a subject too small, too far from every named colour, or no template fitting well
   is reported as missing (`shape=None` / `color=None`) rather than guessed.

>>> from vidlab.world.shapes import Scene, render
>>> analyze(render(Scene("square", "blue", "white", "center", "large"))).shape
'square'
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch

from ..io.video import to_uint8
from .shapes import BACKGROUNDS, COLORS, DIRECTIONS, SHAPES, SIZES, cell_of, shape_mask

_FG = np.array(list(COLORS.values()), np.float32)
_BG = np.array(list(BACKGROUNDS.values()), np.float32)

MIN_AREA = 15            # pixels; smaller blobs are noise, not a subject
MAX_COLOR_DISTANCE = 75  # RGB distance beyond which a colour has no name
MIN_SHAPE_IOU = 0.62     # a mask that fits no template this well has no shape


@dataclasses.dataclass
class FrameAttributes:
    """What the analyzer reads from one frame. None means not found."""

    shape: str | None
    color: str | None
    background: str | None
    position: str | None
    size: str | None
    bbox: tuple[int, int, int, int] | None  # x0, y0, x1, y1 (inclusive)
    centroid: tuple[float, float] | None    # x, y in pixels
    area: int
    shape_iou: float

    @property
    def has_subject(self) -> bool:
        return self.centroid is not None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _to_uint8_hwc(frame) -> np.ndarray:
    if isinstance(frame, torch.Tensor):
        if frame.ndim != 3 or frame.shape[0] != 3:
            raise ValueError(f"frame must have shape (3, H, W), got {tuple(frame.shape)}")
        return to_uint8(frame.detach().float().clamp(0, 1)[None])[0]
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"frame array must have shape (H, W, 3), got {arr.shape}")
    return arr.astype(np.uint8)


def _nearest(color: np.ndarray, palette: np.ndarray, names: list[str]) -> tuple[str | None, float]:
    d = np.linalg.norm(palette - color[None], axis=1)
    i = int(d.argmin())
    return (names[i] if d[i] <= MAX_COLOR_DISTANCE else None), float(d[i])


def template_ious(mask: np.ndarray, bbox: tuple[int, int, int, int]) -> dict[str, float]:
    """Per shape: the IoU with `mask` of its template drawn in `bbox` (x0, y0, x1, y1, inclusive), as step 4
    of the module doc places it."""
    x0, y0, x1, y1 = bbox
    cx, cy = (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2
    r = max(x1 - x0 + 1, y1 - y0 + 1) / 2
    h, w = mask.shape
    ious = {}
    for shape in SHAPES:
        rr = r / 0.9 if shape == "square" else r
        tmpl = shape_mask(shape, cx, cy, rr, h, w, supersample=2) > 0.5
        union = np.logical_or(tmpl, mask).sum()
        ious[shape] = float(np.logical_and(tmpl, mask).sum() / union) if union else 0.0
    return ious


def _best_shape(mask: np.ndarray, bbox: tuple[int, int, int, int]) -> tuple[str | None, float]:
    ious = template_ious(mask, bbox)
    best = max(ious, key=ious.get)  # the first of SHAPES on a tie
    return (best if ious[best] >= MIN_SHAPE_IOU else None), ious[best]


def _bbox(ys: np.ndarray, xs: np.ndarray) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 (inclusive) of the pixels at rows `ys`, columns `xs` (as `np.nonzero` gives them)."""
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _subject(img: np.ndarray) -> tuple[str | None, str | None, np.ndarray | None]:
    """Steps 1-3 of the module doc on an (H, W, 3) float image: the background's name, the subject's colour name
    and its mask (None, None when no subject is found)."""
    # 1. background from the border ring
    ring = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3),
                           img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    bg_color = np.median(ring, axis=0)
    background, _ = _nearest(bg_color, _BG, list(BACKGROUNDS))
    # 2. candidate subject: far from the background, largest component
    dist_bg = np.linalg.norm(img - bg_color, axis=2)
    candidate = (dist_bg > 45).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    if n <= 1:
        return background, None, None
    k = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    component = labels == k
    if component.sum() < MIN_AREA:
        return background, None, None
    # 3. subject colour from the most distinct half of the component, then refine the mask
    d = dist_bg[component]
    core = img[component][d >= np.median(d)]
    fg_color = np.median(core, axis=0)
    color, _ = _nearest(fg_color, _FG, list(COLORS))
    dist_fg = np.linalg.norm(img - fg_color, axis=2)
    grown = cv2.dilate(component.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    mask = grown & (dist_fg < dist_bg)
    if mask.sum() < MIN_AREA:
        return background, None, None
    return background, color, mask


def analyze(frame) -> FrameAttributes:
    """Attributes of one frame: tensor (3, H, W) in [0, 1] or uint8 array (H, W, 3)."""
    img = _to_uint8_hwc(frame).astype(np.float32)
    w = img.shape[1]
    background, color, mask = _subject(img)
    if mask is None:
        return FrameAttributes(None, None, background, None, None, None, None, 0, 0.0)
    ys, xs = np.nonzero(mask)
    bbox = _bbox(ys, xs)
    centroid = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
    # 4. shape by template IoU; size from the half-extent
    shape, iou = _best_shape(mask, bbox)
    half = max(bbox[2] - bbox[0] + 1, bbox[3] - bbox[1] + 1) / 2 * 64 / w
    if shape == "square":  # a square's half-side is 0.9 of its nominal half-extent
        half /= 0.9
    size = min(SIZES, key=lambda s: abs(SIZES[s] - half))
    return FrameAttributes(shape, color, background, cell_of(*centroid, image_size=w), size,
                           bbox, centroid, len(xs), iou)


def shape_ious(frame) -> dict[str, float] | None:
    """Per shape: the IoU of its template with the frame's subject (what `analyze` reads the shape from: the
    best, if at least MIN_SHAPE_IOU); None when the frame has no subject. How near a frame is to being read as
    another shape: e.g. a square with rounded corners has a square IoU not far above its circle IoU."""
    _, _, mask = _subject(_to_uint8_hwc(frame).astype(np.float32))
    return None if mask is None else template_ious(mask, _bbox(*np.nonzero(mask)))


def analyze_frames(frames) -> list[FrameAttributes]:
    """Attributes of every frame of a video (F, 3, H, W)."""
    return [analyze(f) for f in frames]


def trajectory(frames) -> np.ndarray:
    """Subject centroids (F, 2) in pixels; NaN where a frame has no subject."""
    out = np.full((len(frames), 2), np.nan)
    for i, a in enumerate(analyze_frames(frames)):
        if a.centroid is not None:
            out[i] = a.centroid
    return out


def matches(attrs: FrameAttributes, wanted: dict[str, str | None],
            keys: tuple[str, ...] = ("shape", "color", "background", "position")) -> dict[str, bool]:
    """Per attribute: does the frame show what was asked? Attributes not asked are skipped."""
    return {k: getattr(attrs, k) == wanted[k] for k in keys if wanted.get(k) is not None}


def direction_of(displacement, still_px: float = 2.0) -> str | None:
    """The nearest of the 8 named directions to a displacement (x, y) in pixels; None below `still_px`.

    >>> direction_of((5.0, -4.0)), direction_of((1.0, 0.0))
    ('up right', None)
    """
    if float(np.hypot(*displacement)) < still_px:
        return None
    unit = {k: np.array(v, float) / np.hypot(*v) for k, v in DIRECTIONS.items()}
    return max(unit, key=lambda k: float(unit[k] @ np.asarray(displacement, float)))


def motion_direction(attributes) -> str | None:
    """The direction the subject moves from the first frame to the last (both must show it), or None."""
    first, last = attributes[0].centroid, attributes[-1].centroid
    if first is None or last is None:
        return None
    return direction_of(np.subtract(last, first))
