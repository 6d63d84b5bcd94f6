"""What one point of a sweep is measured by: `generate` on its config, then the video's metrics.

Both the one-at-a-time sweep loop (`sweep.py`) and the batched one (`batching.py`) use these, so
they live below both: neither module imports the other for them.
"""
from __future__ import annotations


def generate_point(config: dict) -> tuple[dict, object]:
    """The default point function: `vidlab.generate` on the point's config, then `video_metrics`."""
    from ..generate import generate
    from ..config import parse_request

    request = parse_request(config["request"])
    video = generate(request, strategy=config["strategy"], model=point_backend(config), **config["options"])
    return point_metrics(video, request.full_prompt()), video


def point_backend(config: dict):
    """The loaded Backend of a point's config: its model, and its `backend` block where the spec gave one."""
    from ..backends.spec import BackendSpec
    return BackendSpec(**config.get("backend", {}), model=config["model"]).load()


def point_metrics(video, prompt: str) -> dict:
    """`video_metrics` of a generated video, with the seams its strategy recorded."""
    from ..metrics import video_metrics

    record = video.record.get("strategy_record") or {}
    # seams: where segments start (segment_chain) or windows start (sliding_window)
    segment_starts = record.get("segment_starts") or record.get("window_starts")
    return video_metrics(video.frames, prompt=prompt, segment_starts=segment_starts)
