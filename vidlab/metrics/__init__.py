"""Metrics of generated videos: pure functions on frames (F, 3, H, W) in [0, 1].

- image: PSNR and SSIM between consecutive frames, frames Δt apart, and against an anchor;
- temporal: VBench flicker, Farneback warp error (a classical-flow proxy), seam metrics;
- color: colour drift in CIELAB ΔE (CIE76);
- world: shapes-world adherence and subject consistency, seed 001's 1-5 scale;
- curves: consistency-decay curves over seeds with Student-t confidence intervals;
- external: CLIP score, LPIPS, FVD from local weights, or MetricUnavailable;
- summary: `video_metrics`, the standard summary row of one video.

>>> import torch
>>> video = torch.rand(8, 3, 32, 32)
>>> sorted(video_metrics(video))[:3]
['color_drift', 'color_drift_max', 'flicker']
"""
from .color import color_drift, delta_e_cie76, rgb_to_lab
from .curves import gap_curve, gap_table, segment_curve, segment_table, summarize_over_seeds, t_interval
from .external import (EXTERNAL_METRICS, ExternalMetricResult, MetricUnavailable, MetricUnavailableError,
                       external_metric)
from .image import (frame_similarity, psnr_anchor, psnr_consecutive, psnr_gap, psnr_pairs, ssim_anchor,
                    ssim_consecutive, ssim_gap, ssim_pairs)
from .summary import video_metrics
from .temporal import WARP_ERROR_LABEL, WarpError, flicker, seam_metrics, seam_pair_mask, warp_error
from .world import (SEED001_DECAY_TABLE, adherence, consistency_score_1_to_5, subject_consistency,
                    subject_matches)

__all__ = [
    "color_drift", "delta_e_cie76", "rgb_to_lab",
    "gap_curve", "gap_table", "segment_curve", "segment_table", "summarize_over_seeds", "t_interval",
    "EXTERNAL_METRICS", "ExternalMetricResult", "MetricUnavailable", "MetricUnavailableError", "external_metric",
    "frame_similarity", "psnr_anchor", "psnr_consecutive", "psnr_gap", "psnr_pairs",
    "ssim_anchor", "ssim_consecutive", "ssim_gap", "ssim_pairs",
    "video_metrics",
    "WARP_ERROR_LABEL", "WarpError", "flicker", "seam_metrics", "seam_pair_mask", "warp_error",
    "SEED001_DECAY_TABLE", "adherence", "consistency_score_1_to_5", "subject_consistency", "subject_matches",
]
