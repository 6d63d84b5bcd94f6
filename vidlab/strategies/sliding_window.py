"""sliding_window: a video longer than the model's native length, by overlapping windows.

Windows of the model's native length overlap by `overlap` frames; each window after the first
starts from the previous window's tail (video-to-video for AnimateDiff, image-to-video for Wan:
for a joint model trained with frame 0 given clean, that frame is held clean), and overlapping
frames are blended linearly. For AnimateDiff, `free_noise=True` uses diffusers' FreeNoise
(shared-noise long video) in one call instead.

`sliding_window_batch` makes window i of every seed in one call (`native.generate_clips`, each
seed anchored on its own previous window), each video bit-identical to its request made alone.
"""
from __future__ import annotations

import torch
from pydantic import Field
from tqdm.auto import tqdm

from ..config import GenerationRequest, Strict, check_seed_batch
from ..seeds import sub_seed
from .image_fields import consistency_knobs
from .events import Progress
from .native import generate_clips
from .video_fields import NoisePrior, keyframe_prompts, shared_noise_share


class SlidingWindowOptions(Strict):
    window: int | None = Field(None, ge=2, description="frames per window; None: the model's native length")
    overlap: int = Field(4, ge=0)
    free_noise: bool = Field(False, description="AnimateDiff only: diffusers' FreeNoise in one call")
    context_stride: int = Field(4, ge=1)
    strength: float | None = Field(None, gt=0.0, le=1.0, description="how much each window may change its start; "
                                   "None: from temporal_consistency")


def window_starts(total: int, window: int, overlap: int) -> list[int]:
    """Start frames of overlapping windows covering `total` frames; the last window ends at total.

    A video no longer than one window is that one window, whatever the overlap.
    """
    if total <= window:
        return [0]
    if overlap >= window:
        raise ValueError(f"overlap={overlap} must be < window={window}")
    step = window - overlap
    starts = list(range(0, total - window, step))
    return starts + [total - window]


def blend_windows(windows: list[torch.Tensor], starts: list[int], total: int) -> torch.Tensor:
    """Overlapping windows -> one video; in an overlap the weight ramps linearly from the old window to the new."""
    out = torch.zeros(total, *windows[0].shape[1:])
    weight = torch.zeros(total)
    for w, s in zip(windows, starts):
        n = w.shape[0]
        ramp = torch.ones(n)
        prev_end = max((s0 + windows[0].shape[0] for s0 in starts if s0 < s), default=s)
        k = max(0, prev_end - s)  # frames shared with the previous window
        if k:
            ramp[:k] = torch.linspace(0, 1, k + 2)[1:-1]
        nxt = [s1 for s1 in starts if s1 > s]
        if nxt and nxt[0] < s + n:
            m = s + n - nxt[0]
            ramp[n - m:] = torch.minimum(ramp[n - m:], torch.linspace(1, 0, m + 2)[1:-1])
        out[s:s + n] += ramp.view(-1, 1, 1, 1) * w
        weight[s:s + n] += ramp
    return out / weight.view(-1, 1, 1, 1)


def sliding_window(backend, request: GenerationRequest, options: dict, callback=None):
    """A video longer than the model's native length, by overlapping windows (or FreeNoise)."""
    ((frames, record),) = sliding_window_batch(backend, [request], options, callback)
    return frames, record


def sliding_window_batch(backend, requests: list[GenerationRequest], options: dict, callback=None):
    """One (frames, record) per request, the requests differing only in their seed: window i of
    every seed in one call (`generate_clips`, each seed anchored on its own previous window),
    each video bit-identical to `sliding_window` on its request alone. FreeNoise runs the seeds
    one after another (diffusers' FreeNoise path takes one video a call)."""
    opts = SlidingWindowOptions.model_validate(options)
    check_seed_batch(requests)
    request = requests[0]
    total = request.num_frames
    prompts = keyframe_prompts(backend, request)
    schedule = [prompts[max(k for k in prompts if k <= i)] for i in range(total)]
    window = opts.window or backend.preset.native_frames
    noise = NoisePrior(shared_noise_share(request.temporal_consistency))
    if opts.free_noise:
        if backend.video_design != "factorized":
            raise ValueError("free_noise=True needs an AnimateDiff model (diffusers' FreeNoise is AnimateDiff-only)")
        if total <= window:
            raise ValueError(f"free_noise needs more frames ({total}) than its context length (window={window})")
        clips = generate_clips(backend, request, prompts if len(prompts) > 1 else prompts[0], total,
                               [r.seed for r in requests], free_noise=True, context_length=window,
                               context_stride=opts.context_stride)
        Progress("sliding_window", "clip", 1, callback).done(0, torch.cat(clips))
        return [(frames, {"free_noise": True, "seed": r.seed, "context_length": window,
                          "context_stride": opts.context_stride, "prompts_by_frame": prompts})
                for r, frames in zip(requests, clips)]
    strength = opts.strength or consistency_knobs(request.temporal_consistency)["strength"]
    starts = window_starts(total, window, opts.overlap)
    windows, seeds, window_prompts = [], [], []  # windows[i]: window i of every seed
    progress = Progress("sliding_window", "window", len(starts), callback)
    for i, s in enumerate(tqdm(starts, desc="sliding_window", disable=len(starts) < 3, leave=False)):
        seeds.append([sub_seed(r.seed, "window", i) for r in requests])
        n = min(window, total)
        if windows:
            shared = windows[-1][0].shape[0] - (s - starts[i - 1])
            anchors = [w[-shared] if shared > 0 else w[-1] for w in windows[-1]]  # each seed's own
            first_new = s + max(0, shared)
        else:
            anchors, first_new = None, 0
        prompt = schedule[min(first_new, total - 1)]  # the prompt in effect at the window's first new frame
        clips = generate_clips(backend, request, prompt, n, seeds[-1], images=anchors, strength=strength, noise=noise)
        windows.append(clips)
        window_prompts.append(prompt)
        progress.done(i, torch.cat(clips))
    return [(blend_windows([w[b] for w in windows], starts, total),
             {"window": window, "overlap": opts.overlap, "window_starts": starts,
              "window_seeds": [seed[b] for seed in seeds], "window_prompts": window_prompts, "strength": strength,
              **noise.record()})
            for b in range(len(requests))]
