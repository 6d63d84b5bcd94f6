"""Shapes-world clips: a subject that moves, grows or shrinks, or a camera that pans, with its caption.

The ground truth the video model trains on and is measured against: `random_clip` draws one whose
subject stays inside the frame throughout (or one that starts at the centre and may leave it), `Clip.render` draws its frames, `Clip.caption` says it.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .captions import clip_caption
from .shapes import DIRECTIONS, IMAGE_SIZE, SPEEDS, Scene, cell_of, clip_trajectory, random_scene, render_clip

GROWTH_PER_FRAME = 0.25  # pixels of half-extent per frame for 'grows' / 'shrinks'
CARDINAL = ("left", "right", "up", "down")
CENTRED_JITTER = 8.0  # px: how far a centred path's midpoint may lie from the frame's centre


@dataclasses.dataclass(frozen=True)
class Clip:
    """Ground truth of one clip; `scene.center` is the subject's centre in frame 0."""

    scene: Scene
    num_frames: int
    direction: str | None = None  # None: the subject stays still
    speed: str = "slowly"
    growth: str | None = None  # 'grows' | 'shrinks' | None
    camera: str | None = None  # pan direction; the background is textured when set

    @property
    def caption(self) -> str:
        return clip_caption(self.scene, self.direction, self.speed, self.growth, self.camera)

    @property
    def growth_px(self) -> float:
        return {"grows": GROWTH_PER_FRAME, "shrinks": -GROWTH_PER_FRAME, None: 0.0}[self.growth]

    def trajectory(self) -> list[tuple[float, float, float, tuple[float, float]]]:
        return clip_trajectory(self.scene, self.num_frames, self.direction, self.speed, self.growth_px, self.camera)

    def render(self) -> torch.Tensor:
        """Frames (F, 3, 64, 64) in [0, 1]."""
        return render_clip(self.scene, self.num_frames, self.direction, self.speed, self.growth_px,
                           camera=self.camera, textured=self.camera is not None)


def _start_range(radius: float, displacement: float, size: int = IMAGE_SIZE) -> tuple[float, float]:
    """Where a centre may start so the whole shape stays inside the frame along one axis."""
    return radius + 1 - min(0.0, displacement), size - radius - 1 - max(0.0, displacement)


START_MODES = ("fits", "centred", "centre")


def random_clip(rng: np.random.Generator, num_frames: int = 8, split: str = "train",
                p_still: float = 0.1, p_growth: float = 0.2, p_camera: float = 0.1,
                directions: tuple[str, ...] = tuple(DIRECTIONS), start: str = "fits",
                jitter: float = CENTRED_JITTER) -> Clip:
    """A clip of a subject drawn from `random_scene`; deterministic in rng.

    Motion that cannot fit in the frame at either speed (16 frames at 4 px a frame is 60 px)
    is dropped: the clip is then a still subject, and its caption says so.
    directions: the directions drawn from (a curriculum starts with the four cardinal ones).
    start: where frame 0 is, which the caption never says.
      'fits': anywhere the whole path stays inside the frame.
      'centred': the path's midpoint within `jitter` px of the frame's centre (where it fits): frame k
        is at centre + (k - (F - 1) / 2) x speed x direction, so frame 0 alone gives the direction away.
      'centre': frame 0 within `jitter` px of the centre whatever the motion, and the subject may
        leave the frame. In 64 px an 8-frame path that stays inside cannot start where the opposite
        path could, so only here does frame 0 say nothing of the direction: the caption alone does.
    """
    if start not in START_MODES:
        raise ValueError(f"start={start!r} is not one of {list(START_MODES)}")
    unknown = [d for d in directions if d not in DIRECTIONS]
    if unknown or not directions:
        raise ValueError(f"directions={list(directions)!r}: each must be one of {list(DIRECTIONS)}")
    scene = random_scene(rng, split)
    camera = direction = growth = None
    if rng.random() < p_camera:
        camera = directions[rng.integers(len(directions))]
    elif rng.random() >= p_still:
        direction = directions[rng.integers(len(directions))]
    speed = tuple(SPEEDS)[rng.integers(len(SPEEDS))]
    if rng.random() < p_growth:
        growth = ("grows", "shrinks")[rng.integers(2)]
    # the slow speed if the fast one cannot fit, then no motion at all
    if start == "centre":
        x, y = IMAGE_SIZE / 2 + rng.uniform(-jitter, jitter, 2)
        scene = dataclasses.replace(scene, position=cell_of(x, y), center=(float(x), float(y)))
        return Clip(scene, num_frames, direction, speed, growth, camera)
    for direction, camera, speed in ((direction, camera, speed), (direction, camera, "slowly"), (None, None, speed)):
        clip = Clip(scene, num_frames, direction, speed, growth, camera)
        path = clip.trajectory()
        (x0, y0, _, _), (x_last, y_last, _, _) = path[0], path[-1]
        r_max = max(r for _, _, r, _ in path)
        (xa, xb), (ya, yb) = _start_range(r_max, x_last - x0), _start_range(r_max, y_last - y0)
        if xa <= xb and ya <= yb:
            if start == "centred":  # the start whose path's midpoint is the centre, jittered, kept where the path fits
                mid_x, mid_y = IMAGE_SIZE / 2 - (x_last - x0) / 2, IMAGE_SIZE / 2 - (y_last - y0) / 2
                xa, xb = max(xa, mid_x - jitter), min(xb, mid_x + jitter)
                ya, yb = max(ya, mid_y - jitter), min(yb, mid_y + jitter)
                if xa > xb or ya > yb:
                    continue
            x, y = rng.uniform(xa, xb), rng.uniform(ya, yb)
            scene = dataclasses.replace(scene, position=cell_of(x, y), center=(float(x), float(y)))
            return dataclasses.replace(clip, scene=scene)
    raise ValueError(f"a {num_frames}-frame clip of a {scene.size} subject does not fit in {IMAGE_SIZE} pixels")
