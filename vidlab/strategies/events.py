"""The one event every strategy sends its callback, so a progress bar or a notebook listens to all alike.

>>> seen = []
>>> progress = Progress("frame_chain", "frame", total=2, callback=seen.append)
>>> progress.done(0, torch.zeros(1, 3, 4, 4))
>>> (seen[0].strategy, seen[0].unit, seen[0].index, seen[0].total, tuple(seen[0].preview.shape))
('frame_chain', 'frame', 0, 2, (1, 3, 4, 4))
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import torch

UNITS = ("frame", "segment", "window", "clip")


@dataclasses.dataclass(frozen=True)
class StrategyEvent:
    """A unit of a video finished: which strategy, which unit (frame, segment, window or the whole
    clip), its index of `total`, a preview of the frames it made (K, 3, H, W) in [0, 1], seconds
    since the strategy started, and the try (segment_chain redoes a rejected segment).

    In a batch of seeds (`vidlab.generate_batch`), frame_chain, native and sliding_window send one
    event a unit whose preview holds every seed's frames of it, seed after seed; segment_chain
    sends one a seed's segment, so a callback can reject that seed's segment alone."""

    strategy: str
    unit: str
    index: int
    total: int
    preview: torch.Tensor
    elapsed_s: float
    attempt: int = 0

    @property
    def fraction(self) -> float:
        """How much of the video is done, in [0, 1]."""
        return (self.index + 1) / self.total


class Progress:
    """Sends a StrategyEvent to `callback` (if any) each time a unit is done."""

    def __init__(self, strategy: str, unit: str, total: int, callback: Callable[[StrategyEvent], None] | None):
        if unit not in UNITS:
            raise ValueError(f"unit={unit!r} is not one of {list(UNITS)}")
        self.strategy, self.unit, self.total, self.callback = strategy, unit, total, callback
        self.t0 = time.perf_counter()

    def done(self, index: int, preview: torch.Tensor, attempt: int = 0) -> None:
        if self.callback is None:
            return
        if preview.ndim == 3:
            preview = preview[None]
        self.callback(StrategyEvent(self.strategy, self.unit, index, self.total, preview,
                                    time.perf_counter() - self.t0, attempt))
