"""The shapes world: a procedural world of one coloured shape on a plain background.

Every image is drawn from a `Scene` (shape, colour, background, position cell,
size, exact centre), so the ground truth of every generated frame is known and
the analyzer (`vidlab.world.analyzer`) can check a model against it exactly.

>>> scene = Scene("circle", "red", "white", "top left", "medium")
>>> tuple(render(scene).shape)
(3, 64, 64)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import cv2
import numpy as np
import torch

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # draw at 4x and area-downsample: anti-aliased edges

SHAPES = ("circle", "square", "triangle", "diamond")

# Foreground colours, chosen far apart in RGB and away from every background.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (245, 215, 30),
    "orange": (250, 140, 20),
    "purple": (140, 50, 190),
    "cyan": (40, 210, 230),
    "pink": (250, 130, 200),
}

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "navy": (20, 30, 100),
    "brown": (110, 65, 35),
    "beige": (225, 210, 165),
}

POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
# Half-extent of the shape in pixels at IMAGE_SIZE.
SIZES: dict[str, float] = {"small": 6.5, "medium": 8.5, "large": 10.5}

# Colour-shape combinations never shown in training: held out to test generalization.
HELD_OUT_COMBOS = frozenset({
    ("red", "triangle"), ("blue", "diamond"), ("yellow", "circle"),
    ("purple", "square"), ("cyan", "triangle"), ("pink", "circle"),
})


@dataclasses.dataclass(frozen=True)
class Scene:
    """Ground truth of one frame. `center` in pixels (x, y); None means the cell centre."""

    shape: str
    color: str
    background: str
    position: str
    size: str
    center: tuple[float, float] | None = None

    def __post_init__(self):
        for field, value, allowed in (
            ("shape", self.shape, SHAPES), ("color", self.color, tuple(COLORS)),
            ("background", self.background, tuple(BACKGROUNDS)),
            ("position", self.position, POSITIONS), ("size", self.size, tuple(SIZES)),
        ):
            if value not in allowed:
                raise ValueError(f"Scene.{field}={value!r} is not one of {list(allowed)}")

    @property
    def radius(self) -> float:
        return SIZES[self.size]

    def resolved_center(self, image_size: int = IMAGE_SIZE) -> tuple[float, float]:
        if self.center is not None:
            return self.center
        return cell_center(self.position, image_size)


def cell_center(position: str, image_size: int = IMAGE_SIZE) -> tuple[float, float]:
    """Pixel centre (x, y) of a named 3x3 grid cell."""
    index = POSITIONS.index(position)
    row, col = divmod(index, 3)
    cell = image_size / 3
    return ((col + 0.5) * cell, (row + 0.5) * cell)


def cell_of(x: float, y: float, image_size: int = IMAGE_SIZE) -> str:
    """Name of the 3x3 grid cell that contains pixel (x, y)."""
    cell = image_size / 3
    col = min(2, max(0, int(x // cell)))
    row = min(2, max(0, int(y // cell)))
    return POSITIONS[row * 3 + col]


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> np.ndarray | None:
    """Vertices (N, 2) of a polygonal shape with half-extent r, or None for a circle."""
    if shape == "circle":
        return None
    if shape == "square":
        s = r * 0.9
        return np.array([[cx - s, cy - s], [cx + s, cy - s], [cx + s, cy + s], [cx - s, cy + s]])
    if shape == "triangle":  # apex up, base down, fills its 2r x 2r box
        return np.array([[cx, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
    if shape == "diamond":
        return np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]])
    raise ValueError(f"shape={shape!r} is not one of {list(SHAPES)}")


def shape_mask(shape: str, cx: float, cy: float, r: float, height: int, width: int,
               supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Soft coverage mask (H, W) in [0, 1] of a shape, anti-aliased by supersampling."""
    s = supersample
    canvas = np.zeros((height * s, width * s), np.uint8)
    # pixel centres are at +0.5: map continuous coordinates onto the supersampled grid
    scx, scy, sr = cx * s - 0.5, cy * s - 0.5, r * s
    poly = shape_polygon(shape, scx, scy, sr)
    shift = 4  # sub-pixel precision for cv2 drawing
    if poly is None:
        cv2.circle(canvas, (round(scx * 2**shift), round(scy * 2**shift)), round(sr * 2**shift),
                   255, -1, lineType=cv2.LINE_8, shift=shift)
    else:
        cv2.fillPoly(canvas, [np.round(poly * 2**shift).astype(np.int32)], 255,
                     lineType=cv2.LINE_8, shift=shift)
    small = cv2.resize(canvas.astype(np.float32) / 255.0, (width, height), interpolation=cv2.INTER_AREA)
    return small


def render_array(scene: Scene, image_size: int = IMAGE_SIZE, background_image: np.ndarray | None = None,
                 radius: float | None = None) -> np.ndarray:
    """Render a scene as uint8 (H, W, 3); `radius` (pixels at image_size) overrides the size's."""
    cx, cy = scene.resolved_center(image_size)
    r = scene.radius * image_size / IMAGE_SIZE if radius is None else radius
    mask = shape_mask(scene.shape, cx, cy, r, image_size, image_size)[..., None]
    if background_image is None:
        bg = np.broadcast_to(np.array(BACKGROUNDS[scene.background], np.float32), (image_size, image_size, 3))
    else:
        bg = background_image.astype(np.float32)
    fg = np.array(COLORS[scene.color], np.float32)
    img = bg * (1 - mask) + fg * mask
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render(scene: Scene, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """Render a scene as a float tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(render_array(scene, image_size)).permute(2, 0, 1).float() / 255.0


def random_scene(rng: np.random.Generator, split: str = "train", jitter: float = 3.0,
                 image_size: int = IMAGE_SIZE) -> Scene:
    """Draw a scene. split='train' avoids HELD_OUT_COMBOS, 'heldout' uses only them, 'all' anything."""
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split={split!r} is not one of ['train', 'heldout', 'all']")
    while True:
        shape = SHAPES[rng.integers(len(SHAPES))]
        color = tuple(COLORS)[rng.integers(len(COLORS))]
        held = (color, shape) in HELD_OUT_COMBOS
        if split == "all" or (split == "heldout") == held:
            break
    background = tuple(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    position = POSITIONS[rng.integers(len(POSITIONS))]
    size = tuple(SIZES)[rng.integers(len(SIZES))]
    cx, cy = cell_center(position, image_size)
    r = SIZES[size] * image_size / IMAGE_SIZE
    dx, dy = rng.uniform(-jitter, jitter, 2)
    cx = float(np.clip(cx + dx, r, image_size - r))
    cy = float(np.clip(cy + dy, r, image_size - r))
    return Scene(shape, color, background, position, size, (cx, cy))


def iter_scenes(seed: int, n: int, split: str = "train") -> Iterator[Scene]:
    """n scenes, deterministic in seed."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield random_scene(rng, split)


def render_batch(scenes: list[Scene], image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """Render scenes as (N, 3, H, W) in [0, 1]."""
    return torch.stack([render(s, image_size) for s in scenes])


# ---- clips: the subject moves ---------------------------------------------------------------

DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1),
    "up left": (-1, -1), "up right": (1, -1), "down left": (-1, 1), "down right": (1, 1),
}
# the direction a clip read backwards moves in: 'left' <-> 'right', 'up left' <-> 'down right', ...
OPPOSITE: dict[str, str] = {d: next(k for k, v in DIRECTIONS.items() if v == (-x, -y))
                             for d, (x, y) in DIRECTIONS.items()}
# pixels per frame along the path: 'slowly' moves one latent cell (4 px) a frame, so knowing the
# direction changes what each frame must show; 'quickly' is 1.5x that. (At 1-2 px a frame, the
# first motion model could ignore the direction at almost no cost in its loss.)
SPEEDS: dict[str, float] = {"slowly": 4.0, "quickly": 6.0}


def background_texture(background: str, offset: tuple[float, float] = (0.0, 0.0),
                       image_size: int = IMAGE_SIZE, amplitude: float = 14.0) -> np.ndarray:
    """The named background with a low-contrast wave pattern, seen through a camera at `offset`.

    The pattern lives in world coordinates, so shifting `offset` by (dx, dy) pans the view by
    that many pixels; float (H, W, 3) in 0-255. The amplitude stays far below the analyzer's
    subject threshold, so the background is still read as its name.
    """
    y, x = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    x, y = x + offset[0], y + offset[1]
    wave = np.sin(2 * np.pi * x / 9.0) * np.sin(2 * np.pi * y / 11.0) + 0.5 * np.sin(2 * np.pi * (x + y) / 13.0)
    base = np.array(BACKGROUNDS[background], np.float32)
    return np.clip(base + amplitude / 1.5 * wave[..., None], 0, 255)


def clip_trajectory(scene: Scene, num_frames: int, direction: str | None = None, speed: str = "slowly",
                    growth: float = 0.0, camera: str | None = None,
                    image_size: int = IMAGE_SIZE) -> list[tuple[float, float, float, tuple[float, float]]]:
    """Ground truth of a clip: per frame (x, y, radius, camera offset) in screen pixels.

    The subject moves in `direction` at `speed`; a camera panning in `camera` at the same speed
    moves everything on screen the opposite way, subject included.
    """
    for name, value, allowed in (("direction", direction, DIRECTIONS), ("camera", camera, DIRECTIONS)):
        if value is not None and value not in allowed:
            raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")
    if speed not in SPEEDS:
        raise ValueError(f"speed={speed!r} is not one of {list(SPEEDS)}")
    step = SPEEDS[speed]

    def unit(name):
        dx, dy = DIRECTIONS[name] if name else (0.0, 0.0)
        norm = math.hypot(dx, dy) or 1.0
        return dx / norm, dy / norm

    (mx, my), (cx_, cy_) = unit(direction), unit(camera)
    x0, y0 = scene.resolved_center(image_size)
    r0 = scene.radius * image_size / IMAGE_SIZE
    out = []
    for i in range(num_frames):
        cam = (i * step * cx_, i * step * cy_)
        out.append((x0 + i * step * mx - cam[0], y0 + i * step * my - cam[1], max(2.0, r0 + growth * i), cam))
    return out


def render_clip(scene: Scene, num_frames: int, direction: str | None = None, speed: str = "slowly",
                growth: float = 0.0, image_size: int = IMAGE_SIZE, camera: str | None = None,
                textured: bool = False) -> torch.Tensor:
    """Frames (F, 3, H, W) of the scene's subject moving in `direction` at `speed`.

    growth: change of the half-extent in pixels per frame (negative shrinks).
    camera: the camera pans that way at `speed` (the view shifts, the subject moves the other
    way on screen); textured: a low-contrast pattern on the background, which makes a pan visible.
    """
    frames = []
    for x, y, r, cam in clip_trajectory(scene, num_frames, direction, speed, growth, camera, image_size):
        bg = background_texture(scene.background, cam, image_size) if textured else None
        img = render_array(dataclasses.replace(scene, center=(x, y)), image_size, background_image=bg, radius=r)
        frames.append(torch.from_numpy(img).permute(2, 0, 1).float() / 255.0)
    return torch.stack(frames)
