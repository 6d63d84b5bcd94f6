"""The standard summary table of one video: every metric as one flat dict (a row of a results table)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..world.analyzer import analyze_frames
from ..world.captions import shapes_world_reason
from ._checks import check_video
from .color import color_drift
from .image import SSIM_WINDOW, frame_similarity
from .temporal import flicker, seam_metrics, warp_error
from .world import (adherence_from_attributes, consistency_from_matches, consistency_score_1_to_5,
                    matches_reference, motion_adherence_from_attributes)


def video_metrics(frames: torch.Tensor, prompt: str | None = None, segment_starts: Sequence[int] | None = None,
                  anchor: int = 0) -> dict[str, float | str | int]:
    """Every standard metric of a video (F, 3, H, W) in [0, 1], F >= 2, H, W >= 11, as one flat dict.

    Always: num_frames; psnr_consecutive, ssim_consecutive, psnr_anchor, ssim_anchor (means; the
    anchor, frame 0 by default, left out of its own mean); flicker (VBench); warp_error with
    warp_error_type, warp_error_label ("classical-flow proxy (Farneback), not comparable with
    RAFT-based warp error") and warp_error_valid_fraction; color_drift and color_drift_max (ΔE76
    of the mean colour against the anchor's).
    With segment_starts, for m in psnr, ssim, flicker, warp_error: m_across_seam,
    m_within_segment, m_seam_difference (across - within), m_seam_ratio (across / within).
    shapes_world_metrics: 'applicable', or 'not applicable: <why>' (the prompt has words outside the
    shapes world or names no shape); then the shapes-world metrics below are absent, not scored.
    With a shapes-world prompt: adherence_<attribute> for each attribute it names, adherence
    (their mean), subject_consistency (against the anchor frame), subject_consistency_1_to_5 and
    attributes_constant (1.0 when every frame shows the anchor frame's shape, colour and background);
    where the prompt names a motion ('moves left'), motion_adherence (1.0 when the subject moves that
    way from the first frame to the last, nearest of the 8 directions).

    >>> from vidlab.world import Scene, render_clip
    >>> clip = render_clip(Scene("square", "blue", "white", "left", "medium"), 6, "right")
    >>> row = video_metrics(clip, prompt="a blue square on a white background", segment_starts=[0, 3])
    >>> row["adherence"], row["subject_consistency_1_to_5"], row["num_frames"]
    (1.0, 5.0, 6)
    """
    # 1. check inputs
    check_video(frames, min_frames=2, min_size=SSIM_WINDOW)
    if isinstance(anchor, bool) or not isinstance(anchor, int):
        raise TypeError(f"Expected `anchor` to be a frame index (int), got {type(anchor).__name__}")
    row: dict[str, float | str | int] = {"num_frames": int(frames.shape[0])}
    # 2. frame similarity, flicker, warp error, colour drift
    sims = frame_similarity(frames, anchor)  # checks the anchor index
    anchor_index = anchor % frames.shape[0]
    others = torch.arange(frames.shape[0], device=frames.device) != anchor_index
    for key, values in sims.items():
        row[key] = float(values[others].mean() if key.endswith("anchor") else values.mean())
    flicker_pairs = flicker(frames)
    row["flicker"] = float(flicker_pairs.mean())
    warp = warp_error(frames)
    row.update(warp.as_dict())
    drift = color_drift(frames, anchor)[others]
    row["color_drift"] = float(drift.mean())
    row["color_drift_max"] = float(drift.max())
    # 3. seams between segments
    if segment_starts is not None:
        per_pair = {"psnr": sims["psnr_consecutive"], "ssim": sims["ssim_consecutive"],
                    "flicker": flicker_pairs, "warp_error": warp.per_pair}
        for name, values in per_pair.items():
            seams = seam_metrics(values, segment_starts)
            row[f"{name}_across_seam"] = seams["across_seam"]
            row[f"{name}_within_segment"] = seams["within_segment"]
            row[f"{name}_seam_difference"] = seams["difference"]
            row[f"{name}_seam_ratio"] = seams["ratio"]
    # 4. shapes-world adherence and consistency (one analyzer pass), where the prompt is one
    not_applicable = shapes_world_reason(prompt) if prompt is not None else "no prompt given"
    row["shapes_world_metrics"] = "applicable" if not_applicable is None else f"not applicable: {not_applicable}"
    if not_applicable is None:
        attributes = analyze_frames(frames)
        for key, value in adherence_from_attributes(attributes, prompt).items():
            row["adherence" if key == "overall" else f"adherence_{key}"] = value
        consistency = consistency_from_matches(matches_reference(attributes, anchor_index), anchor_index)
        matched = matches_reference(attributes, anchor_index)
        row["subject_consistency"] = consistency
        row["subject_consistency_1_to_5"] = consistency_score_1_to_5(consistency)
        row["attributes_constant"] = float(bool(matched.all()))
        motion = motion_adherence_from_attributes(attributes, prompt)
        if motion is not None:
            row["motion_adherence"] = motion
    return row
