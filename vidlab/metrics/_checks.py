"""Input checks shared by the metrics: every error states what was expected and what was received."""
from __future__ import annotations

import torch


def check_video(frames, name: str = "frames", min_frames: int = 1, min_size: int = 1) -> torch.Tensor:
    """Check that `frames` is a video: float tensor (F, 3, H, W) with values in [0, 1].

    Returns the tensor unchanged. Raises TypeError / ValueError naming the expected and the received value.
    """
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"Expected `{name}` to be a torch.Tensor of shape (F, 3, H, W), got {type(frames).__name__}")
    if not frames.is_floating_point():
        raise TypeError(f"Expected `{name}` to be a floating point tensor in [0, 1], got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"Expected `{name}` to have shape (F, 3, H, W), got {tuple(frames.shape)}")
    if frames.shape[0] < min_frames:
        raise ValueError(f"Expected `{name}` to have at least {min_frames} frames (F, 3, H, W), "
                         f"got shape {tuple(frames.shape)}")
    if min(frames.shape[2:]) < min_size:
        raise ValueError(f"Expected `{name}` frames of at least {min_size}x{min_size} pixels, "
                         f"got shape {tuple(frames.shape)}")
    if frames.numel():
        lo, hi = float(frames.min()), float(frames.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise ValueError(f"Expected `{name}` values in [0, 1], got min={lo:.4g}, max={hi:.4g}")
    return frames


def check_reduction(reduction: str) -> None:
    if reduction not in ("none", "mean"):
        raise ValueError(f"reduction={reduction!r} is not one of ['none', 'mean']")


def check_choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not one of {list(allowed)}")


def resolve_anchor(frames: torch.Tensor, anchor) -> tuple[torch.Tensor, int | None]:
    """The anchor frame (3, H, W) and its index in `frames` (None when a tensor was given).

    anchor: an index into the frames (negative counts from the end) or a frame tensor (3, H, W).
    """
    num_frames = frames.shape[0]
    if isinstance(anchor, torch.Tensor):
        if anchor.shape != frames.shape[1:]:
            raise ValueError(f"Expected `anchor` to have shape {tuple(frames.shape[1:])} (3, H, W) like one frame, "
                             f"got {tuple(anchor.shape)}")
        check_video(anchor[None], name="anchor")
        return anchor.to(frames.dtype), None
    if isinstance(anchor, bool) or not isinstance(anchor, int):
        raise TypeError(f"Expected `anchor` to be a frame index (int) or a frame tensor (3, H, W), "
                        f"got {type(anchor).__name__}")
    if not -num_frames <= anchor < num_frames:
        raise ValueError(f"anchor={anchor} is not a frame index in [{-num_frames}, {num_frames - 1}]")
    index = anchor % num_frames
    return frames[index], index


def check_gap(gap, num_frames: int) -> int:
    if isinstance(gap, bool) or not isinstance(gap, int) or not 1 <= gap <= num_frames - 1:
        raise ValueError(f"gap={gap!r} is not a frame gap in [1, {num_frames - 1}] for {num_frames} frames")
    return gap
